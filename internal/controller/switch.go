package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// Reasons of the Switched condition.
const (
	ReasonWaitingForIstiod   = "WaitingForIstiod"
	ReasonWaitingForRootCert = "WaitingForRootCert"
	ReasonSwitched           = "Switched"
	ReasonGatewaysRestarted  = "GatewaysRestarted"
	ReasonSwitchedBack       = "SwitchedBack"
)

// rootCertConfigMap is where istiod publishes its root certificate in every namespace.
const rootCertConfigMap = "istio-ca-root-cert"

// rootCert returns the local istiod's root certificate, nil until istiod published it.
func (r *ClusterReconciler) rootCert(ctx context.Context, w *clusterWork) ([]byte, error) {
	cm := &corev1.ConfigMap{}
	err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: r.Settings.Namespace, Name: rootCertConfigMap}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if pem := cm.Data["root-cert.pem"]; pem != "" {
		return []byte(pem), nil
	}
	return nil, nil
}

// reconcileSwitch moves injection to the local istiod once it is ready, keeps it there,
// and restarts the gateways once. It returns the objects the switch owns, which pruning
// must keep.
func (r *ClusterReconciler) reconcileSwitch(ctx context.Context, w *clusterWork, in render.Inputs) ([]client.Object, error) {
	ns := r.Settings.Namespace
	keep := []client.Object{stateKey(ns)}
	st, err := r.switchRecord(ctx, w)
	if err != nil {
		return keep, err
	}
	rootCert, err := r.rootCert(ctx, w)
	if err != nil {
		return keep, err
	}
	if st == nil {
		if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionIstiodReady); c == nil || c.Status != metav1.ConditionTrue {
			w.set(v1beta1.ConditionSwitched, false, ReasonWaitingForIstiod,
				"sidecar injection stays with the mesh control plane until istiod in cluster %s is ready", w.id)
			return keep, nil
		}
		if rootCert == nil {
			w.set(v1beta1.ConditionSwitched, false, ReasonWaitingForRootCert,
				"sidecar injection stays with the mesh control plane until istiod publishes its root certificate (ConfigMap %s/%s)", ns, rootCertConfigMap)
			return keep, nil
		}
		traces, err := r.switchTraces(ctx, w)
		if err != nil {
			return keep, err
		}
		if len(traces) > 0 {
			msg := r.lostRecordMessage(w, traces)
			w.set(v1beta1.ConditionSwitched, false, ReasonSwitchRecordLost, "%s", msg)
			r.event(w, corev1.EventTypeWarning, ReasonSwitchRecordLost, "%s", msg)
			return keep, nil
		}
		if st, err = r.recordSwitch(ctx, w); err != nil {
			return keep, err
		}
	}

	if err := r.takeLead(ctx, w, st); err != nil {
		return keep, err
	}
	if err := r.serveAddress(ctx, w, st.Address); err != nil {
		if errors.Is(err, errAddressChanged) {
			w.set(v1beta1.ConditionSwitched, false, ReasonAddressChanged, "%v", err)
			r.event(w, corev1.EventTypeWarning, ReasonAddressChanged, "%v", err)
			return keep, nil
		}
		return keep, err
	}
	own, lost, err := r.serveInjection(ctx, w, in, st, rootCert)
	if err != nil {
		return keep, err
	}
	keep = append(keep, own...)
	lostValidators, err := r.serveValidation(ctx, w, st, rootCert)
	if err != nil {
		return keep, err
	}
	restarted, err := r.restartGateways(ctx, w, st.SwitchToken())
	if err != nil {
		return keep, err
	}
	w.status.SwitchedAt = &metav1.Time{Time: st.SwitchedAt}
	w.status.GatewaysRestarted = restarted
	gateways := "no gateways to restart"
	if len(restarted) > 0 {
		gateways = "gateways restarted: " + strings.Join(restarted, ", ")
	}
	if len(lost) > 0 {
		msg := fmt.Sprintf("cluster %s switched at %s, but %s since: the operator gives back and keeps up only the injectors it recorded, "+
			"so injection there no longer follows the switch; to switch the cluster anew, remove its entry and add it again",
			w.id, st.SwitchedAt.UTC().Format("2006-01-02T15:04:05Z"), strings.Join(lost, "; "))
		w.set(v1beta1.ConditionSwitched, false, ReasonInjectorReplaced, "%s", msg)
		r.event(w, corev1.EventTypeWarning, ReasonInjectorReplaced, "%s", msg)
		return keep, nil
	}
	address := fmt.Sprintf("Service %s/istiod is the operator's own", ns)
	if st.Address != nil {
		address = fmt.Sprintf("Service %s/istiod of Istio's remote profile (%s) leads to it", ns, describeAddress(st.Address))
	}
	validation := ""
	if len(lostValidators) > 0 {
		// Injection still follows the switch, so the cluster is switched; validation by
		// those webhooks is whatever their owner set up, and a person should know.
		validation = fmt.Sprintf("; but %s since the switch, so it validates as its owner set it up, not with the local istiod",
			strings.Join(lostValidators, "; "))
		r.event(w, corev1.EventTypeWarning, ReasonValidatorReplaced, "cluster %s: %s since the switch; the operator gives back and keeps up only the validators it recorded",
			w.id, strings.Join(lostValidators, "; "))
	}
	w.set(v1beta1.ConditionSwitched, true, ReasonSwitched, "cluster %s is served by its own istiod since %s: %s%s; %s%s",
		w.id, st.SwitchedAt.UTC().Format("2006-01-02T15:04:05Z"), address, injectionURLNote(st), gateways, validation)
	return keep, nil
}

// recordSwitch writes the switch record before anything changes.
func (r *ClusterReconciler) recordSwitch(ctx context.Context, w *clusterWork) (*switching.State, error) {
	reader := w.remote.GetAPIReader()
	injectors, err := managedInjectors(ctx, reader)
	if err != nil {
		return nil, err
	}
	validators, err := managedValidators(ctx, reader)
	if err != nil {
		return nil, err
	}
	st := &switching.State{SwitchedAt: switching.Now()}
	for i := range injectors {
		st.Injectors = append(st.Injectors, switching.RecordInjector(&injectors[i]))
	}
	for i := range validators {
		st.Validators = append(st.Validators, switching.RecordValidator(&validators[i]))
	}
	ns := &corev1.Namespace{}
	if err := reader.Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, ns); err != nil {
		return nil, err
	}
	st.Lead = switching.RecordLead(ns)
	if st.Address, err = r.recordAddress(ctx, w); err != nil {
		return nil, err
	}
	// The mesh cluster's copy first: a record only the data-plane cluster has can be
	// lost with it.
	if err := r.keepRecordCopy(ctx, w.id, st); err != nil {
		return nil, err
	}
	if err := r.writeRecord(ctx, w, st); err != nil {
		return nil, fmt.Errorf("recording the switch: %w", err)
	}
	logf.FromContext(ctx).Info("switching injection to the local istiod", "managedInjectors", len(injectors), "managedValidators", len(validators))
	return st, nil
}

// restartGateways restarts every Istio gateway once for token and returns them all.
func (r *ClusterReconciler) restartGateways(ctx context.Context, w *clusterWork, token string) ([]string, error) {
	var names, restartedNow []string
	seen := map[string]bool{}
	for _, sel := range switching.GatewaySelectors() {
		list := &appsv1.DeploymentList{}
		if err := w.remote.GetAPIReader().List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("listing gateways: %w", err)
		}
		for i := range list.Items {
			dep := &list.Items[i]
			name := dep.Namespace + "/" + dep.Name
			if seen[name] {
				continue
			}
			seen[name] = true
			names = append(names, name)
			before := dep.DeepCopy()
			if !switching.MarkRestart(dep, token) {
				continue
			}
			if err := w.remote.GetClient().Patch(ctx, dep, client.MergeFrom(before)); err != nil {
				return nil, fmt.Errorf("restarting gateway %s: %w", name, err)
			}
			restartedNow = append(restartedNow, name)
		}
	}
	slices.Sort(names)
	if len(restartedNow) > 0 {
		logf.FromContext(ctx).Info("restarted gateways", "gateways", restartedNow, "for", token)
		metrics.CountGatewayRestarts(w.id, token, len(restartedNow))
		r.event(w, corev1.EventTypeNormal, ReasonGatewaysRestarted, "restarted gateways of cluster %s (%s): %s", w.id, token, strings.Join(restartedNow, ", "))
	}
	return names, nil
}

// switchBack gives injection back to the mesh control plane and restarts the gateways
// once more. Everything else the operator created is pruned afterwards.
func (r *ClusterReconciler) switchBack(ctx context.Context, w *clusterWork) error {
	st, err := r.loadSwitchState(ctx, w)
	if err == nil && st == nil {
		st, err = r.loadRecordCopy(ctx, w.id)
	}
	if err != nil {
		return err
	}
	if st == nil {
		traces, err := r.switchTraces(ctx, w)
		if err != nil || len(traces) == 0 {
			return err // never switched: nothing to give back
		}
		return fmt.Errorf("%w: %s", errSwitchRecordLost, r.lostRecordMessage(w, traces))
	}
	// The address first: sidecars reconnecting from now on reach the mesh control plane.
	if err := r.giveBackAddress(ctx, w, st.Address); err != nil {
		return err
	}
	if err := r.giveBackWebhooks(ctx, w, st); err != nil {
		return err
	}
	if len(st.Injectors) == 0 {
		// The operator's own injector goes before istiod does, so no pod is sent to
		// an istiod that is being removed.
		own := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"}}
		live := &admissionv1.MutatingWebhookConfiguration{}
		if err := w.remote.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(own), live); err == nil &&
			live.Labels[render.ManagedByLabel] == render.ManagedByValue && live.Labels[render.ClusterIDLabel] == w.id {
			if err := w.remote.GetClient().Delete(ctx, live, client.Preconditions{UID: &live.UID}); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	if err := r.giveBackLead(ctx, w, st); err != nil {
		return err
	}
	if _, err = r.restartGateways(ctx, w, st.BackToken()); err != nil {
		return err
	}
	return r.gatewaysRolledOut(ctx, w, st.BackToken())
}

// errGatewaysRollingOut holds the removal of istiod until the gateways restarted for
// the switch-back run new pods, which connect to the mesh control plane: old gateway
// pods would otherwise lose their istiod.
var errGatewaysRollingOut = errors.New("gateways are still rolling out")

// gatewaysRolledOut waits for the gateways' rollouts of token, as `kubectl rollout
// status` would; a gateway whose own progress deadline passed is not waited for, and
// said so in an event.
func (r *ClusterReconciler) gatewaysRolledOut(ctx context.Context, w *clusterWork, token string) error {
	var rolling []string
	for _, sel := range switching.GatewaySelectors() {
		list := &appsv1.DeploymentList{}
		if err := w.remote.GetAPIReader().List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return fmt.Errorf("listing gateways: %w", err)
		}
		for i := range list.Items {
			dep := &list.Items[i]
			switch switching.RolloutOf(dep, token) {
			case switching.RolloutProgressing:
				rolling = append(rolling, dep.Namespace+"/"+dep.Name)
			case switching.RolloutStuck:
				r.event(w, corev1.EventTypeWarning, ReasonGatewaysRestarted,
					"gateway %s/%s in cluster %s exceeded its progress deadline; its old pods lose their istiod when it goes", dep.Namespace, dep.Name, w.id)
			}
		}
	}
	if len(rolling) > 0 {
		slices.Sort(rolling)
		rolling = slices.Compact(rolling)
		return fmt.Errorf("%w: %s", errGatewaysRollingOut, strings.Join(rolling, ", "))
	}
	return nil
}

func stateKey(ns string) client.Object {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: switching.StateName, Namespace: ns}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return cm
}

// injectionURLNote names the remote profile's istiodRemote.injectionURL variant, whose
// injectors call the mesh control plane by URL and are re-pointed by the switch.
func injectionURLNote(st *switching.State) string {
	for _, rec := range st.Injectors {
		for _, h := range rec.Webhooks {
			if h.ClientConfig.URL != nil {
				return "; its injectors called the mesh control plane by URL (istiodRemote.injectionURL) and now call Service istiod"
			}
		}
	}
	return ""
}
