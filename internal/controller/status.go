package controller

import (
	"context"
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

// Reasons of the conditions the operator sets. Each names what happened, and each
// message says what a person can do about it.
const (
	ReasonReady               = "Ready"
	ReasonIgnored             = "NotDefault"
	ReasonDeleting            = "Deleting"
	ReasonClustersNotReady    = "ClustersNotReady"
	ReasonRemoteSecretAbsent  = "RemoteSecretNotFound"
	ReasonInvalidKubeconfig   = "InvalidKubeconfig"
	ReasonUnreachable         = "Unreachable"
	ReasonForbidden           = "Forbidden"
	ReasonUnauthorized        = "Unauthorized"
	ReasonConnected           = "Connected"
	ReasonRenderFailed        = "RenderFailed"
	ReasonNotOwned            = "ObjectNotOwned"
	ReasonApplyRejected       = "ApplyRejected"
	ReasonApplied             = "Applied"
	ReasonRemoving            = "Removing"
	ReasonPending             = "Pending"
	ReasonAvailable           = "Available"
	ReasonProgressing         = "Progressing"
	ReasonConflictingSettings = "ConflictingSettings"
	// ReasonNoTemplateSource: neither the mesh control plane nor Istio's chart in this
	// operator has the injection templates of the Istio version in use.
	ReasonNoTemplateSource = "NoTemplateSource"
)

// stalledReasons need a person: the operator cannot make progress on its own.
var stalledReasons = map[string]bool{
	ReasonRemoteSecretAbsent: true, ReasonInvalidKubeconfig: true, ReasonForbidden: true,
	ReasonRenderFailed: true, ReasonNotOwned: true, ReasonApplyRejected: true, ReasonConflictingSettings: true,
	ReasonNoMeshCA: true, ReasonInvalidMeshCA: true, ReasonNoTemplateSource: true, ReasonCopiesRefused: true,
	ReasonLeftBehind: true, ReasonSwitchRecordLost: true, ReasonInjectorReplaced: true,
	ReasonMeshClusterEntry: true, ReasonDuplicateCluster: true,
}

// statusManager is the field manager of the aggregated status; every cluster's entry
// has its own (clusterStatusManager), so concurrent clusters never conflict.
const statusManager = "remote-istiod-operator"

func clusterStatusManager(id string) string { return "remote-istiod-operator/cluster/" + id }

// clusterStatus returns the entry for id, or nil.
func clusterStatus(mc *v1beta1.ASMMeshConfig, id string) *v1beta1.ClusterStatus {
	for i := range mc.Status.Clusters {
		if mc.Status.Clusters[i].ClusterID == id {
			return &mc.Status.Clusters[i]
		}
	}
	return nil
}

func setCondition(conds *[]metav1.Condition, gen int64, typ string, status bool, reason, format string, args ...any) {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: s, Reason: reason, Message: bounded(fmt.Sprintf(format, args...), maxConditionMessage), ObservedGeneration: gen,
	})
}

// maxConditionMessage bounds every condition message the operator writes, well below
// the API's 32768: the object holds one set of conditions per cluster, and a status
// write the API server refuses would leave an old Ready in place.
const maxConditionMessage = 2048

// bounded cuts s to at most n bytes, at a rune boundary, and says so.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = " (…)"
	cut := n - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

// statusApply builds the server-side apply request for the status fields one manager
// owns. fields is nil to give up all of them (the entry of a cluster that is gone).
func statusApply(mc *v1beta1.ASMMeshConfig, fields map[string]any) runtime.ApplyConfiguration {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(v1beta1.GroupVersion.String())
	u.SetKind("ASMMeshConfig")
	u.SetName(mc.Name)
	if fields != nil {
		u.Object["status"] = fields
	}
	return client.ApplyConfigurationFromUnstructured(u)
}

// applyClusterStatus writes one cluster's entry, or removes it when entry is nil. It
// writes nothing when the entry already reads so.
func applyClusterStatus(ctx context.Context, c client.Client, mc *v1beta1.ASMMeshConfig, id string, entry *v1beta1.ClusterStatus) error {
	metrics.ReportCluster(id, entry)
	prev := clusterStatus(mc, id)
	if (prev == nil && entry == nil) || (prev != nil && entry != nil && equality.Semantic.DeepEqual(*prev, *entry)) {
		return nil
	}
	var fields map[string]any
	if entry != nil {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(entry)
		if err != nil {
			return err
		}
		fields = map[string]any{"clusters": []any{content}}
	}
	return c.Status().Apply(ctx, statusApply(mc, fields), client.FieldOwner(clusterStatusManager(id)), client.ForceOwnership)
}

// countApplyError counts a reconcile whose Applied condition reports a failure; the
// reasons that only say work is under way are no errors.
func countApplyError(id, typ string, ok bool, reason string) {
	if typ == v1beta1.ConditionApplied && !ok && reason != ReasonPending && reason != ReasonRemoving {
		metrics.ApplyErrors.WithLabelValues(id, reason).Inc()
	}
}
