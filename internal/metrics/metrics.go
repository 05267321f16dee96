// Package metrics defines the operator's Prometheus metrics. They are registered on
// controller-runtime's registry, so the manager's metrics endpoint serves them next to
// controller-runtime's own. docs/metrics.md describes each one.
package metrics

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

const namespace = "remote_istiod_operator"

// Label names.
const (
	LabelCluster   = "cluster"
	LabelReason    = "reason"
	LabelOperation = "operation"
	LabelDirection = "direction"
	LabelVerb      = "verb"
)

// Operations of MirrorWrites.
const (
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

func gauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, []string{LabelCluster})
}

var (
	ClusterConnected = gauge("cluster_connected", "1 when the cluster's API server answers the operator (condition Connected), else 0.")
	ClusterReady     = gauge("cluster_ready", "1 when the cluster's remote control plane is ready (condition Ready), else 0.")
	ClusterSwitched  = gauge("cluster_switched",
		"1 when sidecar injection in the cluster is served by its own istiod (condition Switched), else 0.")
	IstiodDesiredReplicas = gauge("istiod_desired_replicas", "Replicas of istiod the cluster's entry asks for.")
	IstiodReadyReplicas   = gauge("istiod_ready_replicas", "Ready replicas of the cluster's istiod Deployment.")
	MirroredObjects       = gauge("mirrored_objects", "Copies of the mesh's Istio configuration objects in the cluster.")

	ApplyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "apply_duration_seconds",
		Help: "Time one server-side apply of the cluster's istiod objects takes (dry run and writes; short when nothing changed).",
		// From a no-op against the cache up to the apply timeout.
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 15),
	}, []string{LabelCluster})
	ApplyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "apply_errors_total",
		Help: "Reconciles that left the cluster's Applied condition False for an error, by the condition's reason.",
	}, []string{LabelCluster, LabelReason})
	MirrorWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "mirror_writes_total",
		Help: "Writes of copies of the mesh's Istio configuration into the cluster, by operation (create, update, delete).",
	}, []string{LabelCluster, LabelOperation})
	MirrorLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "mirror_lag_seconds",
		Help: "Time from the operator observing a change of the mesh's Istio configuration to the end of the cluster's " +
			"mirror pass that applied it.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 15),
	}, []string{LabelCluster})
	RemoteRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "remote_requests_total",
		Help: "Requests the operator sent to the cluster's API server, by verb (get, watch, create, update, patch, delete); " +
			"watch counts watch streams opened.",
	}, []string{LabelCluster, LabelVerb})
	Repairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "repairs_total",
		Help: "Objects changed or deleted in the cluster that a repair put back without a pass of the cluster.",
	}, []string{LabelCluster})
	GatewayRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "gateway_restarts_total",
		Help: "Gateway Deployments restarted in the cluster, by direction: switch (to the local istiod) or back.",
	}, []string{LabelCluster, LabelDirection})
)

// perCluster is every metric of a managed cluster: all but the connection's.
var perCluster = []*prometheus.MetricVec{
	ClusterConnected.MetricVec, ClusterReady.MetricVec, ClusterSwitched.MetricVec,
	IstiodDesiredReplicas.MetricVec, IstiodReadyReplicas.MetricVec, MirroredObjects.MetricVec,
	ApplyDuration.MetricVec, ApplyErrors.MetricVec, MirrorWrites.MetricVec, MirrorLag.MetricVec, GatewayRestarts.MetricVec,
	Repairs.MetricVec,
}

func init() {
	ctrlmetrics.Registry.MustRegister(ClusterConnected, ClusterReady, ClusterSwitched, IstiodDesiredReplicas,
		IstiodReadyReplicas, MirroredObjects, ApplyDuration, ApplyErrors, MirrorWrites, MirrorLag, GatewayRestarts,
		RemoteRequests, Repairs)
}

// ReportCluster sets the cluster's gauges from its status entry. A nil entry means the
// cluster is no longer managed: every series of it goes, so none is left stale.
func ReportCluster(id string, st *v1beta1.ClusterStatus) {
	if st == nil {
		ForgetCluster(id)
		return
	}
	ClusterConnected.WithLabelValues(id).Set(conditionValue(st.Conditions, v1beta1.ConditionConnected))
	ClusterReady.WithLabelValues(id).Set(conditionValue(st.Conditions, v1beta1.ConditionReady))
	ClusterSwitched.WithLabelValues(id).Set(conditionValue(st.Conditions, v1beta1.ConditionSwitched))
	IstiodDesiredReplicas.WithLabelValues(id).Set(float64(st.DesiredReplicas))
	IstiodReadyReplicas.WithLabelValues(id).Set(float64(st.ReadyReplicas))
	MirroredObjects.WithLabelValues(id).Set(float64(st.MirroredObjects))
}

func conditionValue(conds []metav1.Condition, typ string) float64 {
	if meta.IsStatusConditionTrue(conds, typ) {
		return 1
	}
	return 0
}

// ForgetCluster deletes every series of the cluster and what the mirror lag knows of it.
func ForgetCluster(id string) {
	for _, vec := range perCluster {
		vec.DeletePartialMatch(prometheus.Labels{LabelCluster: id})
	}
	lag.forget(id)
}

// StartApply times one apply of the cluster's istiod; call ObserveDuration when it returns.
func StartApply(id string) *prometheus.Timer {
	return prometheus.NewTimer(ApplyDuration.WithLabelValues(id))
}

// CountRepairs adds the objects one repair put back.
func CountRepairs(id string, n int) { Repairs.WithLabelValues(id).Add(float64(n)) }

// CountMirrorWrites adds one mirror pass's writes.
func CountMirrorWrites(id string, created, updated, deleted int) {
	for op, n := range map[string]int{OpCreate: created, OpUpdate: updated, OpDelete: deleted} {
		if n > 0 {
			MirrorWrites.WithLabelValues(id, op).Add(float64(n))
		}
	}
}

// CountGatewayRestarts adds n restarts done for token. The token's prefix ("switch" or
// "back", see switching.State) is the direction.
func CountGatewayRestarts(id, token string, n int) {
	direction, _, _ := strings.Cut(token, "-")
	GatewayRestarts.WithLabelValues(id, direction).Add(float64(n))
}

// ForgetConnection deletes the series of the operator's client for a cluster, when no
// remote secret provides the cluster any more. They outlive the cluster's entry: the
// client serves mutual access of other clusters too.
func ForgetConnection(id string) {
	RemoteRequests.DeletePartialMatch(prometheus.Labels{LabelCluster: id})
}

// CountRemoteRequest counts one request to the cluster's API server.
func CountRemoteRequest(id, verb string) {
	RemoteRequests.WithLabelValues(id, verb).Inc()
}

// now is replaced in tests.
var now = time.Now
