package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// +kubebuilder:rbac:groups="",namespace=istio-system,resources=configmaps,verbs=get;list;watch;create;update;delete

// Reasons about the switch record.
const (
	// ReasonSwitchRecordLost: the cluster is switched but neither it nor the mesh
	// cluster has the record of what the switch changed.
	ReasonSwitchRecordLost = "SwitchRecordLost"
	// ReasonSwitchRecordRestored: the record was restored from the mesh cluster's copy.
	ReasonSwitchRecordRestored = "SwitchRecordRestored"
	// ReasonInjectorReplaced: an injector the switch took over was deleted or
	// re-created by its owner since.
	ReasonInjectorReplaced = "InjectorReplaced"
	// ReasonValidatorReplaced (an event): a validator the switch took over was deleted or
	// re-created by its owner since; the cluster stays switched.
	ReasonValidatorReplaced = "ValidatorReplaced"
)

// errSwitchRecordLost holds a removal that has nothing to give back from.
var errSwitchRecordLost = errors.New("the switch record is lost")

// recordCopyKey is the mesh cluster's copy of a cluster's switch record.
func (r *ClusterReconciler) recordCopyKey(id string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.Settings.Namespace, Name: switching.CopyName(id)}
}

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

// loadRecordCopy reads the mesh cluster's copy of a cluster's switch record from the API
// server, nil when there is none.
func (r *ClusterReconciler) loadRecordCopy(ctx context.Context, id string) (*switching.State, error) {
	cm := &corev1.ConfigMap{}
	err := r.LocalReader.Get(ctx, r.recordCopyKey(id), cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the copy of the switch record of cluster %s: %w", id, err)
	}
	if cm.Labels[render.ClusterIDLabel] != id {
		return nil, nil // another cluster's whose ID maps to the same name: not ours
	}
	return switching.Decode(cm)
}

// keepRecordCopy makes the mesh cluster's copy equal to the record, which is what
// survives when the data-plane cluster loses its record. It writes only on a difference.
func (r *ClusterReconciler) keepRecordCopy(ctx context.Context, id string, st *switching.State) error {
	key := r.recordCopyKey(id)
	cached := &corev1.ConfigMap{}
	if err := r.Local.Get(ctx, key, cached); err == nil {
		if have, derr := switching.Decode(cached); derr == nil && switching.Same(have, st) && cached.Labels[render.ClusterIDLabel] == id {
			return nil
		}
	}
	data, err := st.Encode()
	if err != nil {
		return err
	}
	live := &corev1.ConfigMap{}
	err = r.LocalReader.Get(ctx, key, live)
	switch {
	case apierrors.IsNotFound(err):
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: ownership(id).Labels}, Data: data}
		err = r.Local.Create(ctx, cm)
	case err == nil:
		live.Labels, live.Data = ownership(id).Labels, data
		err = r.Local.Update(ctx, live)
	}
	if err != nil {
		return fmt.Errorf("keeping a copy of the switch record of cluster %s in the mesh cluster: %w", id, err)
	}
	return nil
}

// deleteRecordCopy removes the mesh cluster's copy once nothing of the switch is left.
func (r *ClusterReconciler) deleteRecordCopy(ctx context.Context, id string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: r.recordCopyKey(id).Name, Namespace: r.Settings.Namespace}}
	if err := r.Local.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting the copy of the switch record of cluster %s: %w", id, err)
	}
	return nil
}

// writeRecord creates the switch record in the data-plane cluster.
func (r *ClusterReconciler) writeRecord(ctx context.Context, w *clusterWork, st *switching.State) error {
	data, err := st.Encode()
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: switching.StateName, Namespace: r.Settings.Namespace, Labels: ownership(w.id).Labels},
		Data:       data,
	}
	return w.remote.GetClient().Create(ctx, cm)
}

// switchRecord reads the record of a switched cluster; when the data-plane cluster lost
// it, the mesh cluster's copy is written back there. nil when neither has one.
func (r *ClusterReconciler) switchRecord(ctx context.Context, w *clusterWork) (*switching.State, error) {
	st, err := r.loadSwitchState(ctx, w)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st, r.keepRecordCopy(ctx, w.id, st)
	}
	if st, err = r.loadRecordCopy(ctx, w.id); err != nil || st == nil {
		return nil, err
	}
	if err := r.writeRecord(ctx, w, st); err != nil {
		return nil, fmt.Errorf("restoring the switch record from the mesh cluster's copy: %w", err)
	}
	logf.FromContext(ctx).Info("restored the lost switch record from the mesh cluster's copy", "switchedAt", st.SwitchedAt)
	r.event(w, corev1.EventTypeWarning, ReasonSwitchRecordRestored, "the switch record %s/%s of cluster %s was lost; restored it from the mesh cluster's copy %s",
		r.Settings.Namespace, switching.StateName, w.id, r.recordCopyKey(w.id))
	return st, nil
}

// switchTraces lists the signs that the cluster is switched, read live.
func (r *ClusterReconciler) switchTraces(ctx context.Context, w *clusterWork) ([]string, error) {
	var t switching.Traces
	a, err := r.readAddress(ctx, w, false)
	if err != nil {
		return nil, err
	}
	if a.foreign() {
		t.Address = a.service
	}
	t.Namespace = &corev1.Namespace{}
	if err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, t.Namespace); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		t.Namespace = nil
	}
	for _, sel := range switching.GatewaySelectors() {
		list := &appsv1.DeploymentList{}
		if err := w.remote.GetAPIReader().List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("listing gateways: %w", err)
		}
		t.Gateways = append(t.Gateways, list.Items...)
	}
	return t.Found(w.id), nil
}

// lostRecordMessage explains a switched cluster without a record, and what to do.
func (r *ClusterReconciler) lostRecordMessage(w *clusterWork, traces []string) string {
	return fmt.Sprintf("cluster %s looks switched (%s) but has no switch record (ConfigMap %s/%s there) and the mesh cluster has no copy (%s): "+
		"the operator does not record switched objects as the originals, which a switch-back would restore pointing at a deleted istiod; "+
		"give Service istiod, the injectors and the namespace annotation back as Istio's remote profile has them (for example by re-installing the remote profile), "+
		"or restore the record, and the operator goes on",
		w.id, strings.Join(traces, "; "), r.Settings.Namespace, switching.StateName, r.recordCopyKey(w.id))
}
