package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// series counts the series of the operator's metrics that name cluster id, as the
// manager's endpoint would serve them.
func series(t *testing.T, id string) int {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), namespace+"_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == LabelCluster && l.GetValue() == id {
					n++
				}
			}
		}
	}
	return n
}

func condition(typ string, status metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: "Test"}
}

func TestReportClusterMirrorsTheStatusEntry(t *testing.T) {
	id := "report"
	t.Cleanup(func() { ForgetCluster(id) })
	ReportCluster(id, &v1beta1.ClusterStatus{
		ClusterID: id,
		Conditions: []metav1.Condition{
			condition(v1beta1.ConditionConnected, metav1.ConditionTrue),
			condition(v1beta1.ConditionReady, metav1.ConditionFalse),
			condition(v1beta1.ConditionSwitched, metav1.ConditionTrue),
		},
		DesiredReplicas: 3, ReadyReplicas: 2, MirroredObjects: 7,
	})
	for name, c := range map[string]struct {
		vec  *prometheus.GaugeVec
		want float64
	}{
		"connected": {ClusterConnected, 1}, "ready": {ClusterReady, 0}, "switched": {ClusterSwitched, 1},
		"desired": {IstiodDesiredReplicas, 3}, "ready replicas": {IstiodReadyReplicas, 2}, "mirrored": {MirroredObjects, 7},
	} {
		if got := testutil.ToFloat64(c.vec.WithLabelValues(id)); got != c.want {
			t.Errorf("%s = %v, want %v", name, got, c.want)
		}
	}

	// A condition that is missing reads as not true.
	ReportCluster(id, &v1beta1.ClusterStatus{ClusterID: id})
	if got := testutil.ToFloat64(ClusterConnected.WithLabelValues(id)); got != 0 {
		t.Errorf("connected without a condition = %v, want 0", got)
	}
}

func TestMetricsAreServedWithTheirDocumentedNames(t *testing.T) {
	id := "names"
	t.Cleanup(func() { ForgetCluster(id) })
	ReportCluster(id, &v1beta1.ClusterStatus{ClusterID: id, DesiredReplicas: 2})
	CountGatewayRestarts(id, "switch-20260101T000000Z", 1)
	const want = `
# HELP remote_istiod_operator_gateway_restarts_total Gateway Deployments restarted in the cluster, by direction: switch (to the local istiod) or back.
# TYPE remote_istiod_operator_gateway_restarts_total counter
remote_istiod_operator_gateway_restarts_total{cluster="names",direction="switch"} 1
# HELP remote_istiod_operator_istiod_desired_replicas Replicas of istiod the cluster's entry asks for.
# TYPE remote_istiod_operator_istiod_desired_replicas gauge
remote_istiod_operator_istiod_desired_replicas{cluster="names"} 2
`
	if err := testutil.GatherAndCompare(ctrlmetrics.Registry, strings.NewReader(want),
		"remote_istiod_operator_gateway_restarts_total", "remote_istiod_operator_istiod_desired_replicas"); err != nil {
		t.Error(err)
	}
}

func TestCountersCountByLabel(t *testing.T) {
	id := "counters"
	t.Cleanup(func() { ForgetCluster(id) })
	CountMirrorWrites(id, 2, 1, 0)
	CountMirrorWrites(id, 1, 0, 3)
	for op, want := range map[string]float64{OpCreate: 3, OpUpdate: 1, OpDelete: 3} {
		if got := testutil.ToFloat64(MirrorWrites.WithLabelValues(id, op)); got != want {
			t.Errorf("mirror writes %s = %v, want %v", op, got, want)
		}
	}
	CountGatewayRestarts(id, "switch-20260101T000000Z", 3)
	CountGatewayRestarts(id, "back-20260101T000000Z", 2)
	if got := testutil.ToFloat64(GatewayRestarts.WithLabelValues(id, "switch")); got != 3 {
		t.Errorf("switch restarts = %v, want 3", got)
	}
	if got := testutil.ToFloat64(GatewayRestarts.WithLabelValues(id, "back")); got != 2 {
		t.Errorf("back restarts = %v, want 2", got)
	}
	StartApply(id).ObserveDuration()
	if got := testutil.CollectAndCount(ApplyDuration, "remote_istiod_operator_apply_duration_seconds"); got < 1 {
		t.Errorf("apply duration series = %d, want at least 1", got)
	}
}

func TestForgetClusterDeletesEverySeriesOfTheClusterOnly(t *testing.T) {
	gone, kept := "gone", "kept"
	t.Cleanup(func() { ForgetCluster(kept) })
	for _, id := range []string{gone, kept} {
		ReportCluster(id, &v1beta1.ClusterStatus{ClusterID: id})
		StartApply(id).ObserveDuration()
		ApplyErrors.WithLabelValues(id, "Unreachable").Inc()
		CountMirrorWrites(id, 1, 1, 1)
		CountGatewayRestarts(id, "back-20260101T000000Z", 1)
		MirrorPassStarted(id)
		MeshConfigChanged()
		MirrorSynced(id)
		MirrorPassStarted(id)
		MirrorSynced(id)
	}
	// 6 gauges, the histograms, 1 error reason, 3 operations, 1 direction.
	if got := series(t, gone); got != 13 {
		t.Fatalf("series of %s before = %d, want 13", gone, got)
	}
	ReportCluster(gone, nil)
	if got := series(t, gone); got != 0 {
		t.Errorf("series of %s after = %d, want 0", gone, got)
	}
	if got := series(t, kept); got != 13 {
		t.Errorf("series of %s after = %d, want 13", kept, got)
	}
	lag.mu.Lock()
	_, tracked := lag.clusters[gone]
	lag.mu.Unlock()
	if tracked {
		t.Errorf("the mirror lag still tracks %s", gone)
	}
}

// clock makes now return a time the test moves.
func clock(t *testing.T) *time.Time {
	t.Helper()
	c := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now = func() time.Time { return c }
	t.Cleanup(func() { now = time.Now })
	return &c
}

func lagSamples(t *testing.T, id string) (count uint64, sum float64) {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != namespace+"_mirror_lag_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == id {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func TestMirrorLagIsFromObservedChangeToTheSyncThatIncludedIt(t *testing.T) {
	id := "lag"
	t.Cleanup(func() { ForgetCluster(id) })
	c := clock(t)
	step := func(d time.Duration) { *c = c.Add(d) }

	MeshConfigChanged() // before the cluster's first pass: that pass installs, it lags nothing
	MirrorPassStarted(id)
	step(time.Second)
	MirrorSynced(id)
	if n, _ := lagSamples(t, id); n != 0 {
		t.Fatalf("samples after the first pass = %d, want 0", n)
	}

	MeshConfigChanged()
	step(2 * time.Second)
	MeshConfigChanged() // later changes do not hide the oldest
	step(time.Second)
	MirrorPassStarted(id)
	step(time.Second)
	MeshConfigChanged() // during the pass: it may not have been listed
	step(time.Second)
	MirrorSynced(id)
	if n, sum := lagSamples(t, id); n != 1 || sum != 5 {
		t.Fatalf("after the second pass: %d samples summing %vs, want 1 of 5s", n, sum)
	}

	step(time.Second)
	MirrorPassStarted(id)
	step(time.Second)
	MirrorSynced(id)
	if n, sum := lagSamples(t, id); n != 2 || sum != 5+3 {
		t.Fatalf("after the third pass: %d samples summing %vs, want 2 summing 8s", n, sum)
	}

	MirrorPassStarted(id) // nothing changed: nothing to observe
	MirrorSynced(id)
	if n, _ := lagSamples(t, id); n != 2 {
		t.Fatalf("samples after a pass without changes = %d, want 2", n)
	}

	MeshConfigChanged()
	step(time.Second)
	MirrorPassStarted(id) // this pass fails: no MirrorSynced
	step(time.Second)
	MirrorPassStarted(id)
	step(time.Second)
	MirrorSynced(id)
	if n, sum := lagSamples(t, id); n != 3 || sum != 5+3+3 {
		t.Fatalf("after a failed and a good pass: %d samples summing %vs, want 3 summing 11s", n, sum)
	}
}
