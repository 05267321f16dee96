package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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

// saveHeapProfile writes the manager's heap profile to path, for go tool pprof.
func (op *operator) saveHeapProfile(ctx context.Context, path string) error {
	body, err := op.pprof(ctx, "heap")
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, body)
	return errors.Join(err, out.Close())
}

// pprof reads one of the manager's pprof endpoints.
func (op *operator) pprof(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, op.PprofURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("pprof %s: %s", path, resp.Status)
	}
	return resp.Body, nil
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

// liveHeap makes the manager collect garbage and reads its HeapAlloc just after, from
// the runtime.MemStats that pprof's text heap profile ends with. What the handler
// allocates while it writes the profile is counted too: under 1 MiB.
func (op *operator) liveHeap(ctx context.Context) (float64, error) {
	body, err := op.pprof(ctx, "heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	defer func() { _ = body.Close() }()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.Join(errors.New("no HeapAlloc in the manager's heap profile"), sc.Err())
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
