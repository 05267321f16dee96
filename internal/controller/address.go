package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// Reasons of switching back.
const (
	// ReasonAddressChanged: Service istiod was changed by somebody else since the switch.
	ReasonAddressChanged = "AddressChangedByOthers"
	// ReasonWaitingForGateways: istiod stays until the gateways rolled out again.
	ReasonWaitingForGateways = "WaitingForGateways"
)

// controlPlaneAddress is Service istiod of a cluster, read live, with its endpoints.
type controlPlaneAddress struct {
	service   *corev1.Service // nil when the cluster has none
	slices    []discoveryv1.EndpointSlice
	endpoints *corev1.Endpoints //nolint:staticcheck // Istio 1.22-1.27 write core Endpoints
}

// foreign reports whether the cluster has a Service istiod that is not the operator's.
func (a *controlPlaneAddress) foreign() bool {
	return a.service != nil && !ownedByOperator(a.service)
}

// readAddress reads Service istiod from the API server, not the cache, which holds only
// the operator's objects; with its endpoints when withEndpoints.
func (r *ClusterReconciler) readAddress(ctx context.Context, w *clusterWork, withEndpoints bool) (*controlPlaneAddress, error) {
	reader := w.remote.GetAPIReader()
	key := types.NamespacedName{Namespace: r.Settings.Namespace, Name: switching.AddressService}
	a := &controlPlaneAddress{service: &corev1.Service{}}
	if err := reader.Get(ctx, key, a.service); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Service %s: %w", key, err)
		}
		a.service = nil
		return a, nil
	}
	if !withEndpoints || !a.foreign() {
		return a, nil
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := reader.List(ctx, slices, client.InNamespace(key.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: switching.AddressService}); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of Service %s: %w", key, err)
	}
	a.slices = switching.ForeignSlices(slices.Items)
	a.endpoints = &corev1.Endpoints{} //nolint:staticcheck // see controlPlaneAddress
	if err := reader.Get(ctx, key, a.endpoints); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Endpoints %s: %w", key, err)
		}
		a.endpoints = nil
	}
	return a, nil
}

// withoutForeignAddress drops the rendered Service istiod when the cluster has one of
// its own (Istio's remote profile): that Service is the cluster's control plane
// address, which the switch makes lead to the local istiod instead of replacing it.
// A foreign Service that selects pods of another control plane stops the apply.
func (r *ClusterReconciler) withoutForeignAddress(ctx context.Context, w *clusterWork, objs []client.Object) ([]client.Object, error) {
	a, err := r.readAddress(ctx, w, false)
	if err != nil || !a.foreign() {
		return objs, err
	}
	if sel := a.service.Spec.Selector; a.service.Spec.Type != corev1.ServiceTypeExternalName && len(sel) > 0 && !maps.Equal(sel, switching.LocalSelector) {
		// Not the remote profile's (which selects nothing) nor switched by us: the
		// address of another control plane.
		return nil, &apply.NotOwnedError{Kind: "Service", Namespace: a.service.Namespace, Name: a.service.Name}
	}
	out := objs[:0:0]
	for _, obj := range objs {
		if _, ok := obj.(*corev1.Service); ok && obj.GetName() == switching.AddressService {
			continue
		}
		out = append(out, obj)
	}
	return out, nil
}

// recordAddress returns the record of a foreign Service istiod for the switch record,
// nil when the cluster has none.
func (r *ClusterReconciler) recordAddress(ctx context.Context, w *clusterWork) (*switching.AddressRecord, error) {
	a, err := r.readAddress(ctx, w, true)
	if err != nil || !a.foreign() {
		return nil, err
	}
	flavour, err := switching.ClassifyAddress(a.service, a.slices, a.endpoints)
	if err != nil {
		return nil, err
	}
	return switching.RecordAddress(flavour, a.service, a.slices, a.endpoints), nil
}

// serveAddress makes Service istiod lead to the local istiod's pods: it changes only
// the Service's type, externalName and selector, and takes the remote profile's
// EndpointSlices out of play so they do not split traffic with the local pods.
func (r *ClusterReconciler) serveAddress(ctx context.Context, w *clusterWork, rec *switching.AddressRecord) error {
	if rec == nil {
		return nil
	}
	svc, live, err := r.recordedService(ctx, w, rec)
	if err != nil || !live {
		return err
	}
	switch rec.StateOf(svc) {
	case switching.AddressChanged:
		// Not the remote profile's any more (an upgrade of it would be), nor ours:
		// somebody means it; the operator does not fight them.
		return fmt.Errorf("the Service %s/%s in cluster %s is %s, which is neither the local istiod nor the remote profile's %s: %w; "+
			"make it lead to one of them again", svc.Namespace, svc.Name, w.id, describeService(svc), describeAddress(rec), errAddressChanged)
	case switching.AddressAsRecorded:
		if err := r.patchService(ctx, w, svc, switching.ToLocal()); err != nil {
			return fmt.Errorf("making Service %s/%s lead to the local istiod: %w", svc.Namespace, svc.Name, err)
		}
		r.event(w, corev1.EventTypeNormal, ReasonSwitched, "Service %s/%s in cluster %s now leads to the local istiod (was %s)",
			svc.Namespace, svc.Name, w.id, describeAddress(rec))
	}
	return r.updateSlices(ctx, w, rec, switching.TakeSliceOutOfPlay, "taking EndpointSlice %s out of play")
}

// updateSlices changes each recorded EndpointSlice that is still the one recorded;
// change reports whether it changed anything.
func (r *ClusterReconciler) updateSlices(ctx context.Context, w *clusterWork, rec *switching.AddressRecord,
	change func(*discoveryv1.EndpointSlice) bool, failure string) error {
	for _, s := range rec.EndpointSlices {
		slice := &discoveryv1.EndpointSlice{}
		live, err := getRecordedIn(ctx, w, r.Settings.Namespace, s.Name, s.UID, slice)
		if err != nil {
			return err
		}
		if live && change(slice) {
			if err := w.remote.GetClient().Update(ctx, slice); err != nil {
				return fmt.Errorf(failure+": %w", s.Name, err)
			}
		}
	}
	return nil
}

// errAddressChanged stops a switch-back that would overwrite somebody else's change.
var errAddressChanged = errors.New("changed by somebody else since the switch")

// giveBackAddress makes Service istiod lead to the mesh control plane again, exactly
// as recorded. When somebody changed the Service since the switch, it is left as it
// is and errAddressChanged says so: restoring a stale copy could undo their fix.
func (r *ClusterReconciler) giveBackAddress(ctx context.Context, w *clusterWork, rec *switching.AddressRecord) error {
	if rec == nil {
		return nil
	}
	svc, live, err := r.recordedService(ctx, w, rec)
	if err != nil {
		return err
	}
	if live {
		switch rec.StateOf(svc) {
		case switching.AddressChanged:
			return fmt.Errorf("the Service %s/%s in cluster %s is %s: %w; make it lead to the mesh control plane again "+
				"(as the remote profile has it: %s) and the removal goes on", svc.Namespace, svc.Name, w.id, describeService(svc), errAddressChanged, describeAddress(rec))
		case switching.AddressLocal:
			if err := r.patchService(ctx, w, svc, rec.Back()); err != nil {
				return fmt.Errorf("giving Service %s/%s back to the mesh control plane: %w", svc.Namespace, svc.Name, err)
			}
			r.event(w, corev1.EventTypeNormal, ReasonSwitchedBack, "Service %s/%s in cluster %s leads to the mesh control plane again (%s)",
				svc.Namespace, svc.Name, w.id, describeAddress(rec))
		}
	}
	if err := r.updateSlices(ctx, w, rec, switching.PutSliceBack, "putting EndpointSlice %s back"); err != nil {
		return err
	}
	if rec.Endpoints != nil {
		ep := &corev1.Endpoints{} //nolint:staticcheck // see controlPlaneAddress
		live, err := getRecordedIn(ctx, w, r.Settings.Namespace, switching.AddressService, rec.Endpoints.UID, ep)
		if err != nil {
			return err
		}
		if live && rec.Endpoints.RestoreEndpoints(ep) {
			if err := w.remote.GetClient().Update(ctx, ep); err != nil {
				return fmt.Errorf("giving Endpoints %s back: %w", ep.Name, err)
			}
		}
	}
	return nil
}

// recordedService reads Service istiod; false when it is gone or was re-created, which
// leaves nothing of the switch's to keep up or give back.
func (r *ClusterReconciler) recordedService(ctx context.Context, w *clusterWork, rec *switching.AddressRecord) (*corev1.Service, bool, error) {
	svc := &corev1.Service{}
	live, err := getRecordedIn(ctx, w, r.Settings.Namespace, switching.AddressService, rec.UID, svc)
	return svc, live, err
}

// patchService sends a JSON merge patch of the switch's fields only, under the
// operator's field manager, so the Service's other fields keep their owners.
func (r *ClusterReconciler) patchService(ctx context.Context, w *clusterWork, svc *corev1.Service, p switching.ServicePatch) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return w.remote.GetClient().Patch(ctx, svc, client.RawPatch(types.MergePatchType, raw), client.FieldOwner(apply.FieldOwner))
}

// getRecordedIn is getRecorded for a namespaced object.
func getRecordedIn(ctx context.Context, w *clusterWork, namespace, name string, uid types.UID, obj client.Object) (bool, error) {
	err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return obj.GetUID() == uid, nil
}

// describeAddress says in words where the remote profile's Service led.
func describeAddress(rec *switching.AddressRecord) string {
	switch rec.Flavour {
	case switching.FlavourExternalName:
		return "ExternalName " + rec.ExternalName
	case switching.FlavourEndpointSlice:
		return fmt.Sprintf("selector-less, with %d EndpointSlice(s) to the mesh control plane", len(rec.EndpointSlices))
	case switching.FlavourEndpoints:
		return "selector-less, with Endpoints to the mesh control plane"
	}
	return rec.Flavour
}

func describeService(svc *corev1.Service) string {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "ExternalName " + svc.Spec.ExternalName
	}
	return fmt.Sprintf("%s with selector %v", svc.Spec.Type, svc.Spec.Selector)
}
