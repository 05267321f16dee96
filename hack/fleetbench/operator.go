package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// The manager runs as a child process (localmesh.Manager): its CPU time, RSS and
// heap are its own (the API servers and this program's polling are other processes
// or not in it), and its metrics endpoint gives the client-side request counts
// (remote_istiod_operator_remote_requests_total for the data-plane clusters,
// client-go's rest_client_requests_total for the mesh).
type operator struct{ *localmesh.Manager }

// cpuSeconds is the manager's user and system CPU time so far, from /proc.
func (op *operator) cpuSeconds() (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", op.Pid()))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are the 14th and 15th.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat %q", s)
	}
	var ticks float64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return ticks / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// rssBytes is the manager's resident set size, from /proc.
func (op *operator) rssBytes() (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", op.Pid()))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// metrics reads the manager's metrics endpoint.
func (op *operator) metrics() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(op.MetricsURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// requests are request counts by cluster and verb.
type requests map[string]map[string]float64

// sub is what r counted since other.
func (r requests) sub(other requests) requests {
	out := requests{}
	for c, verbs := range r {
		out[c] = map[string]float64{}
		for v, n := range verbs {
			out[c][v] = n - other[c][v]
		}
	}
	return out
}

// total sums the verbs over the clusters.
func (r requests) total(clusters []string, verbs ...string) float64 {
	var n float64
	for _, c := range clusters {
		for _, v := range verbs {
			n += r[c][v]
		}
	}
	return n
}

// writeVerbs are the verbs that change objects.
var writeVerbs = []string{"create", "update", "patch", "delete"}

// meshCluster keys the mesh cluster's requests.
const meshCluster = "(mesh)"

// requestCounts reads the client-side request counts: per data-plane cluster from
// remote_istiod_operator_remote_requests_total, and for the mesh from client-go's
// rest_client_requests_total at the mesh's host (its GETs are reads and watches).
func (op *operator) requestCounts(meshHost string) (requests, error) {
	fams, err := op.metrics()
	if err != nil {
		return nil, err
	}
	out := requests{}
	add := func(cluster, verb string, v float64) {
		if out[cluster] == nil {
			out[cluster] = map[string]float64{}
		}
		out[cluster][verb] += v
	}
	if f := fams["remote_istiod_operator_remote_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			add(label(m, "cluster"), label(m, "verb"), m.GetCounter().GetValue())
		}
	}
	meshVerbs := map[string]string{"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
	if f := fams["rest_client_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if label(m, "host") == meshHost {
				add(meshCluster, meshVerbs[label(m, "method")], m.GetCounter().GetValue())
			}
		}
	}
	return out, nil
}

// heapAfterGC is the manager's allocated heap and the time of its last garbage
// collection.
func (op *operator) heapAfterGC() (heap, lastGC float64, err error) {
	fams, err := op.metrics()
	if err != nil {
		return 0, 0, err
	}
	gauge := func(name string) (float64, error) {
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0, fmt.Errorf("the manager has no metric %s", name)
		}
		return f.GetMetric()[0].GetGauge().GetValue(), nil
	}
	heap, err = gauge("go_memstats_heap_alloc_bytes")
	if err != nil {
		return 0, 0, err
	}
	lastGC, err = gauge("go_memstats_last_gc_time_seconds")
	return heap, lastGC, err
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
