package controller

import (
	"context"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

func ownedByOperator(obj client.Object) bool {
	return obj.GetLabels()[render.ManagedByLabel] == render.ManagedByValue
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
		if !ownedByOperator(&mwc) && switching.IsIstioInjector(&mwc) {
			out = append(out, mwc)
		}
	}
	return out, nil
}

// managedValidators lists the validation webhooks of the mesh control plane, such as
// the remote profile's istio-validator and istiod-default-validator.
func managedValidators(ctx context.Context, reader client.Reader) ([]admissionv1.ValidatingWebhookConfiguration, error) {
	list := &admissionv1.ValidatingWebhookConfigurationList{}
	if err := reader.List(ctx, list); err != nil {
		return nil, err
	}
	var out []admissionv1.ValidatingWebhookConfiguration
	for _, vwc := range list.Items {
		if !ownedByOperator(&vwc) && switching.IsIstioValidator(&vwc) {
			out = append(out, vwc)
		}
	}
	return out, nil
}

// getRecorded reads the live object of a record; false when it was removed or
// replaced by its owner, which leaves nothing of the switch's to keep up or give back.
func getRecorded(ctx context.Context, reader client.Reader, name string, uid types.UID, obj client.Object) (bool, error) {
	err := reader.Get(ctx, types.NamespacedName{Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return obj.GetUID() == uid, nil
}

// serveInjection points the recorded injectors at the local istiod (one update per
// webhook configuration, so a pod is never matched by two injectors), or applies the
// operator's own injector when the cluster had none. It also says which recorded
// injectors are no longer the ones recorded.
func (r *ClusterReconciler) serveInjection(ctx context.Context, w *clusterWork, in render.Inputs, st *switching.State, rootCert []byte) (own []client.Object, lost []string, err error) {
	if len(st.Injectors) == 0 {
		if rootCert == nil {
			return nil, nil, nil // keep what is there until istiod publishes its root again
		}
		own, err := render.InjectionWebhook(in, rootCert, r.Scheme)
		if err != nil {
			return nil, nil, err
		}
		if _, err := r.Applier.Apply(ctx, w.id, w.remote.GetClient(), w.remote.GetAPIReader(), w.remote.GetClient(), ownership(w.id), []client.Object{own}); err != nil {
			return nil, nil, err
		}
		return []client.Object{own}, nil, nil
	}
	for _, rec := range st.Injectors {
		mwc := &admissionv1.MutatingWebhookConfiguration{}
		live, err := getRecorded(ctx, w.remote.GetAPIReader(), rec.Name, rec.UID, mwc)
		if err != nil {
			return nil, nil, err
		}
		if !live {
			lost = append(lost, describeLost("injector", rec, mwc.UID))
			continue
		}
		if len(mwc.Webhooks) == 0 {
			continue
		}
		if switching.PointInjectorAtLocal(mwc, r.Settings.Namespace, caOr(rootCert, mwc.Webhooks[0].ClientConfig.CABundle)) {
			if err := w.remote.GetClient().Update(ctx, mwc); err != nil {
				return nil, nil, fmt.Errorf("pointing injector %s at the local istiod: %w", mwc.Name, err)
			}
			r.event(w, corev1.EventTypeNormal, ReasonSwitched, "injector %s in cluster %s now calls the local istiod", mwc.Name, w.id)
		}
	}
	return nil, lost, nil
}

// describeLost says what became of a recorded webhook configuration that is not live:
// found is the UID getRecorded read, empty when it is gone.
func describeLost(what string, rec switching.WebhookConfigRecord, found types.UID) string {
	if found == "" {
		return fmt.Sprintf("%s %s was deleted", what, rec.Name)
	}
	return fmt.Sprintf("%s %s was re-created by its owner (uid %s, recorded %s)", what, rec.Name, found, rec.UID)
}

// serveValidation points the mesh control plane's validation webhooks at the local
// istiod, which from now on is the one that reads the cluster's Istio configuration. It
// says which recorded validators are no longer the ones recorded: those call whatever
// their owner made them call, usually the mesh control plane across the link.
func (r *ClusterReconciler) serveValidation(ctx context.Context, w *clusterWork, st *switching.State, rootCert []byte) (lost []string, err error) {
	for _, rec := range st.Validators {
		vwc := &admissionv1.ValidatingWebhookConfiguration{}
		live, err := getRecorded(ctx, w.remote.GetAPIReader(), rec.Name, rec.UID, vwc)
		if err != nil {
			return nil, err
		}
		if !live {
			lost = append(lost, describeLost("validator", rec, vwc.UID))
			continue
		}
		if len(vwc.Webhooks) == 0 {
			continue
		}
		if switching.PointValidatorAtLocal(vwc, r.Settings.Namespace, caOr(rootCert, vwc.Webhooks[0].ClientConfig.CABundle)) {
			if err := w.remote.GetClient().Update(ctx, vwc); err != nil {
				return nil, fmt.Errorf("pointing validator %s at the local istiod: %w", vwc.Name, err)
			}
			r.event(w, corev1.EventTypeNormal, ReasonSwitched, "validator %s in cluster %s now calls the local istiod", vwc.Name, w.id)
		}
	}
	return lost, nil
}

// giveBackWebhooks returns the recorded injectors, then the validators, to the mesh
// control plane as they were. A webhook somebody else re-pointed since the switch is
// left as they made it, and a warning event says so.
func (r *ClusterReconciler) giveBackWebhooks(ctx context.Context, w *clusterWork, st *switching.State) error {
	reader := w.remote.GetAPIReader()
	ns := r.Settings.Namespace
	// What the switch and its upkeep wrote into caBundles; a caBundle that holds
	// something else was changed by somebody else.
	localRoot, err := r.rootCert(ctx, w)
	if err != nil {
		return err
	}
	for _, rec := range st.Injectors {
		mwc := &admissionv1.MutatingWebhookConfiguration{}
		live, err := getRecorded(ctx, reader, rec.Name, rec.UID, mwc)
		if err != nil {
			return err
		}
		if !live {
			continue // removed or re-created by its owner: nothing of the switch's is left
		}
		changed, others := switching.RestoreInjector(mwc, rec, ns, localRoot)
		if err := r.giveBack(ctx, w, mwc, "injector", changed, others); err != nil {
			return err
		}
	}
	for _, rec := range st.Validators {
		vwc := &admissionv1.ValidatingWebhookConfiguration{}
		live, err := getRecorded(ctx, reader, rec.Name, rec.UID, vwc)
		if err != nil {
			return err
		}
		if !live {
			continue // removed or re-created by its owner: nothing of the switch's is left
		}
		changed, others := switching.RestoreValidator(vwc, rec, ns, localRoot)
		if err := r.giveBack(ctx, w, vwc, "validator", changed, others); err != nil {
			return err
		}
	}
	return nil
}

// giveBack writes a restored webhook configuration and reports what it found.
func (r *ClusterReconciler) giveBack(ctx context.Context, w *clusterWork, obj client.Object, what string, changed bool, others []string) error {
	if len(others) > 0 {
		r.event(w, corev1.EventTypeWarning, ReasonAddressChanged, "%s %s in cluster %s: webhooks %s were changed by somebody else since the switch; left as they are",
			what, obj.GetName(), w.id, strings.Join(others, ", "))
	}
	if !changed {
		return nil
	}
	if err := w.remote.GetClient().Update(ctx, obj); err != nil {
		return fmt.Errorf("giving %s %s back to the mesh control plane: %w", what, obj.GetName(), err)
	}
	r.event(w, corev1.EventTypeNormal, ReasonSwitchedBack, "%s %s in cluster %s calls the mesh control plane again", what, obj.GetName(), w.id)
	return nil
}

func caOr(rootCert, current []byte) []byte {
	if rootCert != nil {
		return rootCert
	}
	return current
}
