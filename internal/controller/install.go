package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// reconcileInstall brings a cluster with an entry in line with it, in phases that fail
// on their own: each reports on its own condition, and a phase that fails does not stop
// the ones after it. CA renewal, token renewal and switch upkeep therefore go on while
// the desired istiod cannot be rendered or applied; a running istiod keeps its CA, its
// configuration and its peers.
func (r *ClusterReconciler) reconcileInstall(ctx context.Context, w *clusterWork) (ctrl.Result, error) {
	if stop, err := r.admit(ctx, w); stop {
		return ctrl.Result{}, err
	}
	if res, err := r.connect(ctx, w); err != nil || w.remote == nil {
		return res, err
	}
	defer r.beginPass(ctx, w)()
	var out outcome
	trust := r.phaseTrust(ctx, w, &out)
	if out.unanswered() {
		return out.result()
	}
	istiod := r.phaseIstiod(ctx, w, trust, &out)
	r.noteTrustDomain(w, istiod)
	if out.unanswered() {
		return out.result()
	}
	present := istiod.applied || w.status.AppliedHash != "" // an istiod of the operator's runs there
	if present {
		out.fail(r.reconcileMirror(ctx, w))                                                         // sizes its deadline to its work
		_ = r.inPhase(ctx, func(ctx context.Context) error { r.observeIstiod(ctx, w); return nil }) // reports on IstiodReady
	}
	if out.unanswered() {
		return out.result()
	}
	switchKeep := r.phaseSwitch(ctx, w, istiod.in, present, &out)
	if out.unanswered() {
		return out.result()
	}
	secrets := r.phaseAccess(ctx, w, istiod.in.Entry.MutualAccess, present, &out)
	r.phasePrune(ctx, w, istiod, append(switchKeep, secrets...), &out)
	return out.result()
}

// outcome gathers the phases' errors and the earliest time one wants to look again.
type outcome struct {
	errs  []error
	after time.Duration
}

func (o *outcome) fail(err error) {
	if err != nil {
		o.errs = append(o.errs, err)
	}
}

func (o *outcome) retryAfter(d time.Duration) {
	if d > 0 && (o.after == 0 || d < o.after) {
		o.after = d
	}
}

// unanswered reports a phase that failed because the cluster did not answer (its link
// went down or hung during the pass): the phases after it would each wait for their
// deadline in turn, so the pass ends there, and the retry's probe reports the cluster.
func (o *outcome) unanswered() bool {
	for _, err := range o.errs {
		if remotecluster.Unanswered(err) {
			return true
		}
	}
	return false
}

// result backs off on any error; otherwise the cluster is looked at again when a phase
// asked for it, or at the resync.
func (o *outcome) result() (ctrl.Result, error) {
	if len(o.errs) > 0 {
		return ctrl.Result{}, errors.Join(o.errs...)
	}
	after := resyncInterval
	if o.after > 0 && o.after < after {
		after = o.after
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// inPhase runs one phase with a deadline of its own, so a hung cluster holds a worker
// for at most applyTimeout per phase.
func (r *ClusterReconciler) inPhase(ctx context.Context, phase func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return phase(ctx)
}

// admit records the cluster before anything lands in it, so deletion always knows
// where to clean up, and refuses specs that must not get a remote control plane.
func (r *ClusterReconciler) admit(ctx context.Context, w *clusterWork) (bool, error) {
	if clusterStatus(w.mc, w.id) == nil {
		w.set(v1beta1.ConditionApplied, false, ReasonPending, "about to apply istiod")
		if err := applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status); err != nil {
			return true, err
		}
	}
	if msg := conflictingSettings(w.mc.Spec); msg != "" {
		// The admission rules refuse this; an object stored before they existed still
		// must not get a remote control plane.
		w.set(v1beta1.ConditionApplied, false, ReasonConflictingSettings, "%s", msg)
		r.event(w, corev1.EventTypeWarning, ReasonConflictingSettings, "%s", msg)
		return true, nil
	}
	return false, nil
}

// trustResult is the cluster's CA: the cacerts Secret to apply (nil when none) and the
// fingerprint that rolls istiod when it changes; ok is false when istiod must not run.
type trustResult struct {
	cacerts     client.Object
	fingerprint string
	ok          bool
}

func (r *ClusterReconciler) phaseTrust(ctx context.Context, w *clusterWork, out *outcome) trustResult {
	var t trustResult
	err := r.inPhase(ctx, func(ctx context.Context) error {
		var err error
		t.cacerts, t.fingerprint, t.ok, err = r.reconcileTrust(ctx, w)
		return err
	})
	switch {
	case err != nil:
		out.fail(fmt.Errorf("cluster %s: trust: %w", w.id, err))
	case !t.ok:
		// A missing or broken mesh CA needs a person; look again now and then.
		out.retryAfter(30 * time.Second)
	}
	return t
}

// istiodResult is what the istiod phase rendered and whether it is applied.
type istiodResult struct {
	in      render.Inputs
	objs    []client.Object
	applied bool
}

// phaseIstiod renders istiod from the mesh's own settings and applies it. When it
// cannot render or apply, a renewed intermediate CA is still applied: istiod watches
// its mounted cacerts and takes a new intermediate of the same root without a restart
// (pilot/pkg/bootstrap/istio_ca.go, initCACertsWatcher and handleEvent, Istio 1.22+).
func (r *ClusterReconciler) phaseIstiod(ctx context.Context, w *clusterWork, trust trustResult, out *outcome) istiodResult {
	res := istiodResult{in: render.InputsFor(w.mc.Spec, w.id, r.Settings)}
	if !trust.ok {
		return res // reconcileTrust said why on Applied
	}
	err := r.inPhase(ctx, func(ctx context.Context) error { return r.applyIstiod(ctx, w, trust, &res) })
	if err != nil || !res.applied {
		out.fail(err)
		out.retryAfter(time.Minute)                             // a person's fix (an object removed, a version added) is looked for
		if trust.cacerts != nil && w.status.AppliedHash != "" { // an istiod of the operator's runs there
			out.fail(r.inPhase(ctx, func(ctx context.Context) error {
				_, err := r.Applier.Apply(ctx, w.id, w.remote.GetClient(), w.remote.GetAPIReader(), w.remote.GetClient(), ownership(w.id), []client.Object{trust.cacerts})
				return err
			}))
		}
	}
	return res
}

// applyIstiod renders and applies istiod. A problem a person must fix is reported on
// Applied and returns nil with res.applied false; errors are retried with backoff.
func (r *ClusterReconciler) applyIstiod(ctx context.Context, w *clusterWork, trust trustResult, res *istiodResult) error {
	log := logf.FromContext(ctx)
	in := &res.in
	if err := r.fillMeshSettings(ctx, w, in); err != nil { // the mesh control plane's injector and mesh config
		var noSource *noTemplateSourceError
		if errors.As(err, &noSource) {
			// Nothing to render istiod from: keep what the cluster has. A change of
			// spec.version or of the mesh control plane's ConfigMaps wakes the cluster.
			w.set(v1beta1.ConditionApplied, false, ReasonNoTemplateSource, "%v", err)
			r.event(w, corev1.EventTypeWarning, ReasonNoTemplateSource, "cluster %s: %v", w.id, err)
			return nil
		}
		return r.applyFailed(w, err)
	}
	in.CACertsFingerprint = trust.fingerprint
	foreignValidators, err := managedValidators(ctx, w.remote.GetAPIReader())
	if err != nil {
		return r.applyFailed(w, err)
	}
	in.ForeignValidators = len(foreignValidators) > 0
	w.status.DesiredReplicas = ptrOr(in.Entry.Replicas, 2)
	objs, err := render.Render(*in, r.Scheme)
	if err != nil {
		w.set(v1beta1.ConditionApplied, false, ReasonRenderFailed, "cannot render istiod: %v; fix the ASMMeshConfig", err)
		r.event(w, corev1.EventTypeWarning, ReasonRenderFailed, "cannot render istiod for cluster %s: %v", w.id, err)
		return nil // only a spec change can fix this
	}
	if objs, err = r.withoutForeignAddress(ctx, w, objs); err != nil {
		return r.applyFailed(w, err)
	}
	if trust.cacerts != nil {
		// istiod reads its CA at start: the Secret goes first.
		objs = append([]client.Object{trust.cacerts}, objs...)
	}
	hash := render.Hash(objs)
	if err := r.ensureNamespace(ctx, w); err != nil {
		return r.applyFailed(w, err)
	}
	if err := r.labelNetwork(ctx, w, in.Entry.Network); err != nil {
		return r.applyFailed(w, err)
	}
	applyTimer := metrics.StartApply(w.id)
	applied, err := r.Applier.Apply(ctx, w.id, w.remote.GetClient(), w.remote.GetAPIReader(), w.remote.GetClient(), ownership(w.id), objs)
	applyTimer.ObserveDuration()
	if err != nil {
		return r.applyFailed(w, err)
	}
	if applied.Applied > 0 {
		log.Info("applied istiod", "changed", applied.Applied, "unchanged", applied.Unchanged, "hash", hash)
		if w.status.AppliedHash != hash {
			r.event(w, corev1.EventTypeNormal, ReasonApplied, "applied istiod %s to cluster %s (%d objects changed)", in.Version, w.id, applied.Applied)
		}
	}
	w.status.AppliedHash = hash
	w.status.IstioVersion = in.Version
	w.set(v1beta1.ConditionApplied, true, ReasonApplied, "%d objects of istiod %s are applied", len(objs), in.Version)
	res.objs, res.applied = objs, true
	r.repairs.appliedIstiod(w.id, objs)
	return nil
}

// phaseSwitch moves injection to the local istiod once it is ready and keeps it there.
// It returns what the switch owns, which pruning keeps.
func (r *ClusterReconciler) phaseSwitch(ctx context.Context, w *clusterWork, in render.Inputs, present bool, out *outcome) []client.Object {
	if !present {
		return nil
	}
	var keep []client.Object
	err := r.inPhase(ctx, func(ctx context.Context) error {
		var err error
		keep, err = r.reconcileSwitch(ctx, w, in)
		return err
	})
	if err != nil {
		w.set(v1beta1.ConditionSwitched, false, ReasonUnreachable, "switching cluster %s failed; retrying with backoff: %s", w.id, errorSummary(err))
		out.fail(fmt.Errorf("cluster %s: switch: %w", w.id, err))
	}
	return keep
}

// phaseAccess gives the cluster's istiod remote secrets for the other clusters (or
// takes them back) and renews their tokens. It returns the secrets pruning keeps.
func (r *ClusterReconciler) phaseAccess(ctx context.Context, w *clusterWork, enabled, present bool, out *outcome) []client.Object {
	var secrets []client.Object
	err := r.inPhase(ctx, func(ctx context.Context) error {
		if err := r.sweepStaleGrants(ctx, w); err != nil {
			return err
		}
		var err error
		if secrets, err = r.reconcileAccess(ctx, w, enabled && present); err != nil {
			return err
		}
		_, err = r.Applier.Apply(ctx, w.id, w.remote.GetAPIReader(), nil, w.remote.GetClient(), ownership(w.id), secrets)
		return err
	})
	if err != nil {
		w.set(v1beta1.ConditionMutualAccess, false, ReasonUnreachable, "mutual access of cluster %s: %s", w.id, errorSummary(err))
		out.fail(fmt.Errorf("cluster %s: mutual access: %w", w.id, err))
		return nil
	}
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionMutualAccess); c != nil && c.Status != metav1.ConditionTrue {
		out.retryAfter(time.Minute) // a peer that was down is tried again soon, not at the resync
	}
	return secrets
}

// phasePrune deletes what the operator owns in the cluster and no longer wants. While
// istiod is not applied this pass, only distributed remote secrets are pruned: a spec
// that cannot be rendered must not take a running istiod away.
func (r *ClusterReconciler) phasePrune(ctx context.Context, w *clusterWork, istiod istiodResult, keep []client.Object, out *outcome) {
	if len(out.errs) > 0 {
		return // prune only after a pass that saw everything it keeps
	}
	own := ownership(w.id)
	kinds := append([]schema.GroupVersionKind{secretGVK}, render.OwnedKinds...)
	if !istiod.applied {
		kinds = []schema.GroupVersionKind{secretGVK}
		own.Labels = withLabel(own.Labels, remotecluster.RemoteSecretLabel, "true")
	}
	out.fail(r.inPhase(ctx, func(ctx context.Context) error {
		_, err := r.Applier.Prune(ctx, w.id, w.remote.GetClient(), w.remote.GetClient(), own, kinds, append(istiod.objs, keep...))
		if err != nil {
			err = r.applyFailed(w, err)
		}
		return err
	}))
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range labels {
		out[key] = val
	}
	return out
}
