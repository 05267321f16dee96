package controller

import (
	"context"
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

// loadSwitchState reads the switch record of a cluster, nil when it has not switched.
func (r *ClusterReconciler) loadSwitchState(ctx context.Context, w *clusterWork) (*switching.State, error) {
	cm := &corev1.ConfigMap{}
	err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: r.Settings.Namespace, Name: switching.StateName}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return switching.Decode(cm)
}

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

// managedInjectors lists the injection webhooks of the mesh control plane: Istio
// injectors the operator did not create.
func managedInjectors(ctx context.Context, reader client.Reader) ([]admissionv1.MutatingWebhookConfiguration, error) {
	list := &admissionv1.MutatingWebhookConfigurationList{}
	if err := reader.List(ctx, list); err != nil {
		return nil, err
	}
	var out []admissionv1.MutatingWebhookConfiguration
	for _, mwc := range list.Items {
		if mwc.Labels[render.ManagedByLabel] != render.ManagedByValue && switching.IsIstioInjector(&mwc) {
			out = append(out, mwc)
		}
	}
	return out, nil
}

// reconcileSwitch moves injection to the local istiod once it is ready, keeps it there,
// and restarts the gateways once. It returns the objects the switch owns, which pruning
// must keep.
func (r *ClusterReconciler) reconcileSwitch(ctx context.Context, w *clusterWork, in render.Inputs) ([]client.Object, error) {
	ns := r.Settings.Namespace
	st, err := r.loadSwitchState(ctx, w)
	if err != nil {
		return nil, err
	}
	keep := []client.Object{stateKey(ns)}
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
		if st, err = r.recordSwitch(ctx, w); err != nil {
			return keep, err
		}
	}

	own, err := r.serveInjection(ctx, w, in, st, rootCert)
	if err != nil {
		return keep, err
	}
	keep = append(keep, own...)
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
	w.set(v1beta1.ConditionSwitched, true, ReasonSwitched, "sidecar injection in cluster %s is served by its own istiod since %s; %s",
		w.id, st.SwitchedAt.UTC().Format("2006-01-02T15:04:05Z"), gateways)
	return keep, nil
}

// recordSwitch writes the switch record before anything changes.
func (r *ClusterReconciler) recordSwitch(ctx context.Context, w *clusterWork) (*switching.State, error) {
	injectors, err := managedInjectors(ctx, w.remote.GetAPIReader())
	if err != nil {
		return nil, err
	}
	st := &switching.State{SwitchedAt: switching.Now()}
	for i := range injectors {
		st.Injectors = append(st.Injectors, switching.Record(&injectors[i]))
	}
	data, err := st.Encode()
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: switching.StateName, Namespace: r.Settings.Namespace, Labels: ownership(w.id).Labels},
		Data:       data,
	}
	if err := w.remote.GetClient().Create(ctx, cm); err != nil {
		return nil, fmt.Errorf("recording the switch: %w", err)
	}
	logf.FromContext(ctx).Info("switching injection to the local istiod", "managedInjectors", len(injectors))
	return st, nil
}

// serveInjection points the recorded injectors at the local istiod (one update per
// webhook configuration, so a pod is never matched by two injectors), or applies the
// operator's own injector when the cluster had none.
func (r *ClusterReconciler) serveInjection(ctx context.Context, w *clusterWork, in render.Inputs, st *switching.State, rootCert []byte) ([]client.Object, error) {
	if len(st.Injectors) == 0 {
		if rootCert == nil {
			return nil, nil // keep what is there until istiod publishes its root again
		}
		own, err := render.InjectionWebhook(in, rootCert, r.Scheme)
		if err != nil {
			return nil, err
		}
		if _, err := r.Applier.Apply(ctx, w.id, w.remote.GetClient(), w.remote.GetClient(), ownership(w.id), []client.Object{own}); err != nil {
			return nil, err
		}
		return []client.Object{own}, nil
	}
	for _, rec := range st.Injectors {
		mwc := &admissionv1.MutatingWebhookConfiguration{}
		err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: rec.Name}, mwc)
		if apierrors.IsNotFound(err) || (err == nil && mwc.UID != rec.UID) {
			continue // removed or replaced by its owner: nothing of ours to keep up
		}
		if err != nil {
			return nil, err
		}
		ca := rootCert
		if ca == nil && len(mwc.Webhooks) > 0 {
			ca = mwc.Webhooks[0].ClientConfig.CABundle
		}
		if switching.PointAtLocal(mwc, r.Settings.Namespace, ca) {
			if err := w.remote.GetClient().Update(ctx, mwc); err != nil {
				return nil, fmt.Errorf("pointing injector %s at the local istiod: %w", mwc.Name, err)
			}
			r.event(w, corev1.EventTypeNormal, ReasonSwitched, "injector %s in cluster %s now calls the local istiod", mwc.Name, w.id)
		}
	}
	return nil, nil
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
		r.event(w, corev1.EventTypeNormal, ReasonGatewaysRestarted, "restarted gateways of cluster %s (%s): %s", w.id, token, strings.Join(restartedNow, ", "))
	}
	return names, nil
}

// switchBack gives injection back to the mesh control plane and restarts the gateways
// once more. Everything else the operator created is pruned afterwards.
func (r *ClusterReconciler) switchBack(ctx context.Context, w *clusterWork) error {
	st, err := r.loadSwitchState(ctx, w)
	if err != nil || st == nil {
		return err
	}
	for _, rec := range st.Injectors {
		mwc := &admissionv1.MutatingWebhookConfiguration{}
		err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: rec.Name}, mwc)
		if apierrors.IsNotFound(err) || (err == nil && mwc.UID != rec.UID) {
			continue
		}
		if err != nil {
			return err
		}
		if switching.Restore(mwc, rec) {
			if err := w.remote.GetClient().Update(ctx, mwc); err != nil {
				return fmt.Errorf("giving injector %s back to the mesh control plane: %w", mwc.Name, err)
			}
			r.event(w, corev1.EventTypeNormal, ReasonSwitchedBack, "injector %s in cluster %s calls the mesh control plane again", mwc.Name, w.id)
		}
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
	_, err = r.restartGateways(ctx, w, st.BackToken())
	return err
}

func stateKey(ns string) client.Object {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: switching.StateName, Namespace: ns}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return cm
}
