package controller

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

// Finalizer holds an ASMMeshConfig until every cluster is clean: owner references
// cannot reach into other clusters.
const Finalizer = "istio.alibabacloud.com/remote-istiod-cleanup"

// MeshConfigReconciler owns the ASMMeshConfig as a whole: the finalizer, objects that
// are not "default", and the aggregated Ready condition. The clusters' own work is
// done by ClusterReconciler.
type MeshConfigReconciler struct {
	Client client.Client
	// Clusters is told which clusters the operator needs (needs.go).
	Clusters *remotecluster.Provider
	// Namespace is the control plane namespace, where switch record copies are.
	Namespace string
}

// +kubebuilder:rbac:groups=istio.alibabacloud.com,resources=asmmeshconfigs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=istio.alibabacloud.com,resources=asmmeshconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=istio.alibabacloud.com,resources=asmmeshconfigs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",namespace=istio-system,resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile keeps the finalizer and the aggregated status.
func (r *MeshConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mc := &v1beta1.ASMMeshConfig{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		if apierrors.IsNotFound(err) && req.Name == v1beta1.DefaultName {
			return ctrl.Result{}, r.updateNeeds(ctx, nil)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if mc.Name != v1beta1.DefaultName {
		return ctrl.Result{}, r.writeStatus(ctx, mc, ignoredStatus(mc))
	}
	if err := r.updateNeeds(ctx, mc); err != nil {
		return ctrl.Result{}, err
	}
	if mc.DeletionTimestamp != nil {
		if len(mc.Status.Clusters) > 0 {
			return ctrl.Result{}, r.writeStatus(ctx, mc, aggregate(mc))
		}
		if controllerutil.RemoveFinalizer(mc, Finalizer) {
			return ctrl.Result{}, r.Client.Update(ctx, mc)
		}
		return ctrl.Result{}, nil
	}
	if controllerutil.AddFinalizer(mc, Finalizer) {
		if err := r.Client.Update(ctx, mc); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, r.writeStatus(ctx, mc, aggregate(mc))
}

// aggregatedStatus holds the fields MeshConfigReconciler owns.
type aggregatedStatus struct {
	ObservedGeneration   int64              `json:"observedGeneration"`
	Conditions           []metav1.Condition `json:"conditions"`
	ControlPlanes        string             `json:"controlPlanes"`
	ReadyControlPlanes   int32              `json:"readyControlPlanes"`
	DesiredControlPlanes int32              `json:"desiredControlPlanes"`
}

func ignoredStatus(mc *v1beta1.ASMMeshConfig) aggregatedStatus {
	s := aggregatedStatus{ObservedGeneration: mc.Generation, Conditions: slices.Clone(mc.Status.Conditions)}
	msg := fmt.Sprintf("only the ASMMeshConfig named %q is acted on; move this spec there and delete %q", v1beta1.DefaultName, mc.Name)
	setCondition(&s.Conditions, mc.Generation, v1beta1.ConditionReady, false, ReasonIgnored, "%s", msg)
	setCondition(&s.Conditions, mc.Generation, v1beta1.ConditionStalled, true, ReasonIgnored, "%s", msg)
	setCondition(&s.Conditions, mc.Generation, v1beta1.ConditionReconciling, false, ReasonIgnored, "%s", msg)
	return s
}

// aggregate derives the kstatus conditions from the clusters' entries: Ready when every
// entry's cluster is Ready for the current generation; Stalled when one needs a person;
// Reconciling otherwise.
func aggregate(mc *v1beta1.ASMMeshConfig) aggregatedStatus {
	gen := mc.Generation
	s := aggregatedStatus{ObservedGeneration: gen, Conditions: slices.Clone(mc.Status.Conditions)}
	ids := make([]string, 0, len(mc.Spec.ExternalIstiodConfigurations))
	for id := range mc.Spec.ExternalIstiodConfigurations {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.DesiredControlPlanes = int32(len(ids))

	var waiting, stalled []problem
	for _, id := range ids {
		cs := clusterStatus(mc, id)
		var ready *metav1.Condition
		if cs != nil {
			ready = meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionReady)
		}
		switch {
		case ready == nil || cs.ObservedGeneration != gen:
			waiting = append(waiting, problem{id, ReasonPending, "not reconciled yet"})
		case ready.Status == metav1.ConditionTrue:
			s.ReadyControlPlanes++
		case stalledReasons[ready.Reason]:
			stalled = append(stalled, problem{id, ready.Reason, ready.Message})
		default:
			waiting = append(waiting, problem{id, ready.Reason, ready.Message})
		}
	}
	for _, cs := range mc.Status.Clusters {
		if _, wanted := mc.Spec.ExternalIstiodConfigurations[cs.ClusterID]; wanted {
			continue
		}
		switch ready := meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionReady); {
		case ready != nil && (ready.Reason == ReasonAbandoned || ready.Reason == ReasonForeignObjects):
			// A person gave the cluster up, or only others' objects hold what is left
			// there; the entry only says what that is.
		case ready != nil && stalledReasons[ready.Reason]:
			stalled = append(stalled, problem{cs.ClusterID, ready.Reason, ready.Message})
		default:
			waiting = append(waiting, problem{cs.ClusterID, ReasonRemoving, "removing istiod"})
		}
	}
	s.ControlPlanes = fmt.Sprintf("%d/%d", s.ReadyControlPlanes, s.DesiredControlPlanes)

	problems := summarize(append(slices.Clone(stalled), waiting...))
	switch {
	case mc.DeletionTimestamp != nil:
		setCondition(&s.Conditions, gen, v1beta1.ConditionReady, false, ReasonDeleting, "removing istiod from every cluster: %s", problems)
		setCondition(&s.Conditions, gen, v1beta1.ConditionReconciling, true, ReasonDeleting, "removing istiod from every cluster")
		setCondition(&s.Conditions, gen, v1beta1.ConditionStalled, false, ReasonDeleting, "removing istiod from every cluster")
	case len(stalled) == 0 && len(waiting) == 0:
		setCondition(&s.Conditions, gen, v1beta1.ConditionReady, true, ReasonReady, "%s remote control planes are ready", s.ControlPlanes)
		setCondition(&s.Conditions, gen, v1beta1.ConditionReconciling, false, ReasonReady, "nothing left to do")
		setCondition(&s.Conditions, gen, v1beta1.ConditionStalled, false, ReasonReady, "nothing left to do")
	case len(stalled) > 0:
		setCondition(&s.Conditions, gen, v1beta1.ConditionReady, false, ReasonClustersNotReady, "%s remote control planes ready; %s", s.ControlPlanes, problems)
		setCondition(&s.Conditions, gen, v1beta1.ConditionStalled, true, ReasonClustersNotReady, "needs attention: %s", summarize(stalled))
		setCondition(&s.Conditions, gen, v1beta1.ConditionReconciling, len(waiting) > 0, ReasonClustersNotReady, "%d clusters in progress", len(waiting))
	default:
		setCondition(&s.Conditions, gen, v1beta1.ConditionReady, false, ReasonClustersNotReady, "%s remote control planes ready; %s", s.ControlPlanes, problems)
		setCondition(&s.Conditions, gen, v1beta1.ConditionReconciling, true, ReasonClustersNotReady, "%s", problems)
		setCondition(&s.Conditions, gen, v1beta1.ConditionStalled, false, ReasonClustersNotReady, "no cluster needs attention")
	}
	return s
}

func (r *MeshConfigReconciler) writeStatus(ctx context.Context, mc *v1beta1.ASMMeshConfig, s aggregatedStatus) error {
	current := aggregatedStatus{
		ObservedGeneration: mc.Status.ObservedGeneration, Conditions: mc.Status.Conditions,
		ControlPlanes: mc.Status.ControlPlanes, ReadyControlPlanes: mc.Status.ReadyControlPlanes,
		DesiredControlPlanes: mc.Status.DesiredControlPlanes,
	}
	if equality.Semantic.DeepEqual(current, s) {
		return nil
	}
	fields, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&s)
	if err != nil {
		return err
	}
	return r.Client.Status().Apply(ctx, statusApply(mc, fields), client.FieldOwner(statusManager), client.ForceOwnership)
}
