package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

// fixtureLabel marks the mesh's Istio objects figures 5 and 6 create; copies keep it.
var fixtureLabel = map[string]string{"fleetbench/mirror": "true"}

// fixtureKinds are the kinds of the fixture, created in turn: the mirror writes each
// kind through a client of its own.
var fixtureKinds = []schema.GroupVersionKind{
	{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
	{Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule"},
	{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry"},
}

// mirrorParallel is how many copies a mirror pass writes at once (mirrorWorkers,
// internal/controller/mirror.go).
const mirrorParallel = 16

// fixtureObject is the i-th object of the fixture, in namespace default, which every
// cluster has: a VirtualService, DestinationRule or ServiceEntry for a host of its own.
func fixtureObject(i int) *unstructured.Unstructured {
	gvk := fixtureKinds[i%len(fixtureKinds)]
	name := fmt.Sprintf("bench-%05d", i)
	host := name + ".default.svc.cluster.local"
	var spec map[string]any
	switch gvk.Kind {
	case "VirtualService":
		spec = map[string]any{"hosts": []any{host}, "http": []any{map[string]any{
			"timeout": "5s", "route": []any{map[string]any{"destination": map[string]any{"host": host, "port": map[string]any{"number": int64(8080)}}}}}}}
	case "DestinationRule":
		spec = map[string]any{"host": host, "trafficPolicy": map[string]any{
			"connectionPool": map[string]any{"tcp": map[string]any{"maxConnections": int64(100)}}}}
	default:
		spec = map[string]any{"hosts": []any{name + ".example.com"}, "location": "MESH_EXTERNAL", "resolution": "DNS",
			"ports": []any{map[string]any{"number": int64(443), "name": "tls", "protocol": "TLS"}}}
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace("default")
	u.SetName(name)
	u.SetLabels(fixtureLabel)
	return u
}

// createFixture creates objects from..to-1 of the fixture in the mesh cluster.
func createFixture(ctx context.Context, c client.Client, from, to int) error {
	return createAll(ctx, c, from, to, func(i int) client.Object { return fixtureObject(i) })
}

// deleteFixture deletes the fixture from the mesh cluster.
func deleteFixture(ctx context.Context, c client.Client) error {
	var errs []error
	for _, gvk := range fixtureKinds {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		errs = append(errs, c.DeleteAllOf(ctx, u, client.InNamespace("default"), client.MatchingLabels(fixtureLabel)))
	}
	return errors.Join(errs...)
}

// removeFixture deletes the fixture and its copies and removes the cluster's entry.
// Removing an entry with its copies in place would delete them one after the other
// through the link (Applier.Prune): the copies are deleted in the cluster's API
// server directly first, right after their sources, so the operator finds neither.
func (f *fleet) removeFixture(ctx context.Context) error {
	dp := f.m.DataPlanes[0]
	if err := deleteFixture(ctx, f.m.Mesh.Client); err != nil {
		return err
	}
	for _, gvk := range fixtureKinds {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		err := dp.Client.DeleteAllOf(ctx, u, client.InNamespace("default"), client.MatchingLabels(fixtureLabel))
		if err != nil && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if _, err := f.setEntries(ctx, nil, 1); err != nil {
		return err
	}
	return f.waitRemoved(ctx)
}

// countCopies counts the fixture's copies in a data-plane cluster, read from its API
// server directly (not through the link).
func countCopies(ctx context.Context, dp *localmesh.Cluster) (int, error) {
	n := 0
	for _, gvk := range fixtureKinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		err := dp.Client.List(ctx, list, client.InNamespace("default"), client.MatchingLabels(fixtureLabel),
			client.HasLabels{mirror.MirroredLabel})
		// Before the operator installed Istio's CRDs, or after it removed them (the
		// client's discovery may remember them).
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += len(list.Items)
	}
	return n, nil
}

// mirrorRun is one row pair of figure 5.
type mirrorRun struct {
	k int
	// first: from adding the entry until the cluster held all copies; span: from the
	// first copy to the last; status: until ConfigMirrored was True at the generation.
	first, span, status time.Duration
	reqs, spanReqs      map[string]float64
	bytes, spanBytes    farlink.Stats
	latency             float64
	// resync: from the new process's start until its first reconcile of the cluster
	// reported the mirrored copies.
	resync      time.Duration
	resyncReqs  map[string]float64
	resyncBytes farlink.Stats
	// waited and resyncWaited are the seconds requests to the cluster waited on the
	// client-side rate limit, summed over requests.
	waited, resyncWaited float64
}

// mirrorFigure runs figure 5: for each count, the first mirror pass into one cluster
// across its link, and the resync after an operator restart.
func mirrorFigure(ctx context.Context, f *fleet, counts []int, bandwidth float64) (table, error) {
	t := table{Title: "Figure 5: mirror across the link",
		Columns: []string{"objects", "pass", "time", "requests to the cluster", "writes", "bytes to the cluster / back",
			"waited on the rate limit (sum)", "rate limit would allow", "bandwidth would allow", "round trips would allow", "closest limit"}}
	if err := f.registerUpTo(ctx, 1); err != nil {
		return t, err
	}
	for _, k := range counts {
		r, err := mirrorOnce(ctx, f, k)
		if err != nil {
			return t, fmt.Errorf("with %d objects: %w", k, err)
		}
		f.logf("figure 5, %d objects: all copies %s after the entry (copies %s first to last), resync after restart %s with %.0f writes",
			k, r.first, r.span, r.resync, sumVerbs(r.resyncReqs, writeVerbs...))
		t.Rows = append(t.Rows, r.firstRow(bandwidth), r.resyncRow(bandwidth))
	}
	qps, burst := remotecluster.DefaultQPS, remotecluster.DefaultBurst
	t.Notes = append(t.Notes,
		fmt.Sprintf("One cluster; the objects are VirtualServices, DestinationRules and ServiceEntries in turn, in namespace default, created in the mesh cluster before its entry. "+
			"First pass: from adding the entry (which connects the cluster and installs its istiod first, and Istio's CRDs where the cluster lacks them) until the cluster's API server, read directly, "+
			"holds every copy; in brackets, from its first copy to its last (the mirror's writes), and until the status reported ConfigMirrored True at the new generation with every copy."),
		fmt.Sprintf("Resync: the manager is stopped (SIGTERM) and a new process started; time from its start to its last request to the cluster before %s without any "+
			"(its first reconcile: connecting, istiod, the mirror's pass, the switch), and every request it sent to the cluster until then.", quietFor),
		fmt.Sprintf("What each limit would allow, for the first copy to the last: the rate limit, the writes beyond the burst at %g requests a second (burst %d, the manager's defaults); "+
			"the bandwidth, the larger direction's bytes at %g Mbit/s; round trips, the writes at %d at once, each taking the probe's read time through the link. "+
			"For the resync, the requests in series. The closest limit is the one whose time is nearest the measured one (ratio measured/limit).", qps, burst, bandwidth, mirrorParallel),
		"Requests are counted by the operator's client (remote_requests_total), bytes on the far link; the API servers' own time adds to every round trip. "+
			"The wait on the rate limit is client-go's rest_client_rate_limiter_duration_seconds for the cluster, summed over requests (16 waiting at once add up 16 times).")
	return t, nil
}

func mirrorOnce(ctx context.Context, f *fleet, k int) (r mirrorRun, err error) {
	r.k = k
	id, dp := f.m.DataPlanes[0].ID, f.m.DataPlanes[0]
	mesh := f.m.Mesh.Client
	if err := createFixture(ctx, mesh, 0, k); err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, f.removeFixture(ctx)) }()
	c0, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return r, err
	}
	s0 := dp.Link.Stats()
	w0, err := f.op.limiterWait(dp.Link.Addr())
	if err != nil {
		return r, err
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probed := make(chan float64, 1)
	go func() { probed <- f.probe(probeCtx, id) }()
	start := time.Now()
	gen, err := f.setEntries(ctx, []string{id}, 1)
	if err != nil {
		return r, err
	}
	var firstAt time.Time
	var cFirst requests
	var sFirst farlink.Stats
	deadline := start.Add(f.timeout)
	for r.first == 0 || r.status == 0 {
		if time.Now().After(deadline) {
			n, _ := countCopies(ctx, dp)
			return r, fmt.Errorf("after %s the cluster holds %d of %d copies (mirrored reported: %t)", f.timeout, n, k, r.status > 0)
		}
		n, err := countCopies(ctx, dp)
		if err != nil {
			return r, err
		}
		now := time.Now()
		if n > 0 && firstAt.IsZero() {
			firstAt, sFirst = now, dp.Link.Stats()
			if cFirst, err = f.op.requestCounts(f.m.Mesh.Config.Host); err != nil {
				return r, err
			}
		}
		if n == k && r.first == 0 {
			r.first, r.span = now.Sub(start), now.Sub(firstAt)
			c1, err := f.op.requestCounts(f.m.Mesh.Config.Host)
			if err != nil {
				return r, err
			}
			r.reqs, r.spanReqs = c1.sub(c0)[id], c1.sub(cFirst)[id]
			s1 := dp.Link.Stats()
			r.bytes, r.spanBytes = statsSub(s1, s0), statsSub(s1, sFirst)
			w1, err := f.op.limiterWait(dp.Link.Addr())
			if err != nil {
				return r, err
			}
			r.waited = w1 - w0
		}
		if r.status == 0 && f.mirroredAt(ctx, id, gen, k) {
			r.status = now.Sub(start)
		}
		if err := sleep(ctx, poll); err != nil {
			return r, err
		}
	}
	stopProbe()
	r.latency = <-probed
	if _, err := f.waitFor(ctx, start, []string{id}, v1beta1.ConditionReady, gen); err != nil {
		return r, err
	}
	if _, err := f.quiet(ctx); err != nil {
		return r, err
	}
	f.logf("figure 5, %d objects: ConfigMirrored at the generation %s after the entry; restarting the operator", k, r.status)
	if err := f.op.Stop(); err != nil {
		return r, err
	}
	s2 := dp.Link.Stats()
	launched := time.Now()
	next, err := f.op.Relaunch(ctx)
	if err != nil {
		return r, err
	}
	f.op.Manager = next
	// The resync is over when the new process stops sending requests to the cluster: its
	// last request is the end of its first reconcile (a pass that finds every copy right
	// logs nothing and changes no status).
	c3, last, err := f.lastRequest(ctx, id)
	if err != nil {
		return r, err
	}
	if done, err := f.op.reconciles(); err != nil || done == 0 {
		return r, errors.Join(err, errors.New("the restarted operator finished no reconcile"))
	}
	r.resync = last.Sub(launched)
	if r.resyncWaited, err = f.op.limiterWait(dp.Link.Addr()); err != nil {
		return r, err
	}
	r.resyncReqs, r.resyncBytes = c3, statsSub(dp.Link.Stats(), s2)
	if n, err := countCopies(ctx, dp); err != nil || n != k {
		return r, errors.Join(err, fmt.Errorf("after the restart the cluster holds %d of %d copies", n, k))
	}
	return r, nil
}

// mirroredAt says whether the cluster's status reports ConfigMirrored True at gen with
// at least k copies.
func (f *fleet) mirroredAt(ctx context.Context, id string, gen int64, k int) bool {
	mc := &v1beta1.ASMMeshConfig{}
	if err := f.m.Mesh.Client.Get(ctx, client.ObjectKey{Name: "default"}, mc); err != nil {
		return false
	}
	for _, st := range mc.Status.Clusters {
		for _, c := range st.Conditions {
			if st.ClusterID == id && c.Type == v1beta1.ConditionConfigMirrored && c.Status == metav1.ConditionTrue &&
				c.ObservedGeneration >= gen && int(st.MirroredObjects) >= k {
				return true
			}
		}
	}
	return false
}

func (r mirrorRun) firstRow(mbits float64) []string {
	writes := sumVerbs(r.spanReqs, writeVerbs...)
	bounds := map[string]float64{
		"rate limit":  math.Max(0, writes-float64(remotecluster.DefaultBurst)) / float64(remotecluster.DefaultQPS),
		"bandwidth":   bandwidthTime(r.spanBytes, mbits),
		"round trips": math.Ceil(writes/mirrorParallel) * r.latency,
	}
	return []string{fmt.Sprint(r.k), "first",
		fmt.Sprintf("%s (copies %s first to last; ConfigMirrored %s)", seconds(r.first.Seconds()), seconds(r.span.Seconds()), seconds(r.status.Seconds())),
		verbs(r.reqs), count(sumVerbs(r.reqs, writeVerbs...)),
		fmt.Sprintf("%s / %s", mb(r.bytes.BytesToServer), mb(r.bytes.BytesToClient)), seconds(r.waited),
		seconds(bounds["rate limit"]), seconds(bounds["bandwidth"]), seconds(bounds["round trips"]),
		closest(r.span.Seconds(), bounds)}
}

func (r mirrorRun) resyncRow(mbits float64) []string {
	n := sumVerbs(r.resyncReqs, "get", "create", "update", "patch", "delete")
	bounds := map[string]float64{
		"rate limit":  math.Max(0, n-float64(remotecluster.DefaultBurst)) / float64(remotecluster.DefaultQPS),
		"bandwidth":   bandwidthTime(r.resyncBytes, mbits),
		"round trips": n * r.latency,
	}
	return []string{fmt.Sprint(r.k), "resync after restart", seconds(r.resync.Seconds()),
		verbs(r.resyncReqs), fmt.Sprintf("%s (goal 0)", count(sumVerbs(r.resyncReqs, writeVerbs...))),
		fmt.Sprintf("%s / %s", mb(r.resyncBytes.BytesToServer), mb(r.resyncBytes.BytesToClient)), seconds(r.resyncWaited),
		seconds(bounds["rate limit"]), seconds(bounds["bandwidth"]), seconds(bounds["round trips"]) + " (in series)",
		closest(r.resync.Seconds(), bounds)}
}

// closest names the limit whose time is nearest measured, with their ratio; limits of
// no time (or none at all) cannot be it.
func closest(measured float64, bounds map[string]float64) string {
	best, ratio := "", 0.0
	names := make([]string, 0, len(bounds))
	for name := range bounds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		b := bounds[name]
		if b <= 0.01 {
			continue
		}
		if best == "" || math.Abs(math.Log(measured/b)) < math.Abs(math.Log(ratio)) {
			best, ratio = name, measured/b
		}
	}
	if best == "" {
		return "–"
	}
	return fmt.Sprintf("%s (%.1f×)", best, ratio)
}

func bandwidthTime(s farlink.Stats, mbits float64) float64 {
	if mbits <= 0 {
		return 0
	}
	return float64(max(s.BytesToServer, s.BytesToClient)) * 8 / (mbits * 1e6)
}

func statsSub(a, b farlink.Stats) farlink.Stats {
	return farlink.Stats{Connections: a.Connections - b.Connections, BytesToServer: a.BytesToServer - b.BytesToServer,
		BytesToClient: a.BytesToClient - b.BytesToClient}
}

func sumVerbs(m map[string]float64, vs ...string) float64 {
	var n float64
	for _, v := range vs {
		n += m[v]
	}
	return n
}

// verbs lists request counts by verb, in a fixed order.
func verbs(m map[string]float64) string {
	var parts []string
	for _, v := range []string{"get", "watch", "create", "update", "patch", "delete", "other"} {
		if m[v] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", v, m[v]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

// limiterWait is the seconds the manager's requests to host waited on client-go's
// rate limiter, summed (rest_client_rate_limiter_duration_seconds).
func (op *operator) limiterWait(host string) (float64, error) {
	fams, err := op.metrics()
	if err != nil {
		return 0, err
	}
	var sum float64
	if fam := fams["rest_client_rate_limiter_duration_seconds"]; fam != nil {
		for _, m := range fam.GetMetric() {
			if label(m, "host") == host {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum, nil
}

// lastRequest waits until the operator has sent no request to the cluster for quietFor,
// and returns its counts for the cluster and when they last changed (read every 50 ms).
func (f *fleet) lastRequest(ctx context.Context, id string) (map[string]float64, time.Time, error) {
	var last map[string]float64
	changed := time.Now()
	for time.Since(changed) < quietFor {
		if time.Since(changed) > f.timeout {
			return nil, changed, fmt.Errorf("the operator did not stop sending requests within %s", f.timeout)
		}
		c, err := f.op.requestCounts(f.m.Mesh.Config.Host)
		if err != nil {
			return nil, changed, err
		}
		if !maps.Equal(c[id], last) {
			last, changed = c[id], time.Now()
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, changed, err
		}
	}
	return last, changed, nil
}

// reconciles is how many reconciles of a cluster the manager finished without error
// (most ask to come again later: the periodic resync).
func (op *operator) reconciles() (float64, error) { return op.reconcileCount(false) }

// reconcilesAll counts every reconcile of a cluster the manager finished, errors too.
func (op *operator) reconcilesAll() (float64, error) { return op.reconcileCount(true) }

func (op *operator) reconcileCount(withErrors bool) (float64, error) {
	fams, err := op.metrics()
	if err != nil {
		return 0, err
	}
	var n float64
	if fam := fams["controller_runtime_reconcile_total"]; fam != nil {
		for _, m := range fam.GetMetric() {
			if label(m, "controller") == "remote-istiod" && (withErrors || label(m, "result") != "error") {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n, nil
}
