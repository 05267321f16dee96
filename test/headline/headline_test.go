// Package headline measures the product's reason to exist (docs/benchmarks-headline.md):
// the TCP connections and bytes that cross a data-plane cluster's link with P sidecars
// in it, before the switch (every sidecar holds its xDS stream to the mesh istiod
// across the link) and after it (the sidecars talk to the cluster's own istiod; only
// the operator and the mesh istiod's discovery of the cluster cross).
//
// It runs two real pilot-discovery processes (the mesh istiod and the cluster's own),
// two API servers and the operator, so it is a test that runs only when asked:
//
//	HEADLINE=1 go test ./test/headline -run TestHeadline -v -timeout 30m
//
// HEADLINE_P (default 10,100,1000), HEADLINE_RUNS (3), HEADLINE_WINDOW (15s) and
// HEADLINE_OUT (a Markdown file whose results section is rewritten) tune it.
package headline

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
)

// sample is what one window measured.
type sample struct {
	// Across the link in all (both farlinks): connections and bytes, during the sync
	// of the sidecars and during the stream of changes after it.
	conns                  int64
	syncBytes, changeBytes int64
	// By link: the sidecars' xDS link and the API link (the mesh istiod's discovery of
	// the cluster, and the operator).
	xdsConns, xdsBytes, apiConns, apiBytes int64
	sync                                   time.Duration
	changes                                int
	streams                                int64 // ADS streams the sidecars opened, retries included
	pushes                                 int64 // median responses per sidecar during the changes
}

func (s sample) bytes() int64 { return s.syncBytes + s.changeBytes }

type settings struct {
	ps     []int
	runs   int
	window time.Duration
	out    string
}

func settingsFromEnv(t *testing.T) settings {
	s := settings{ps: []int{10, 100, 1000}, runs: 3, window: 15 * time.Second, out: os.Getenv("HEADLINE_OUT")}
	if v := os.Getenv("HEADLINE_P"); v != "" {
		s.ps = nil
		for _, f := range strings.Split(v, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || p < 1 {
				t.Fatalf("HEADLINE_P=%q: %q is not a count of sidecars", v, f)
			}
			s.ps = append(s.ps, p)
		}
	}
	if v := os.Getenv("HEADLINE_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("HEADLINE_RUNS=%q", v)
		}
		s.runs = n
	}
	if v := os.Getenv("HEADLINE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			t.Fatalf("HEADLINE_WINDOW=%q", v)
		}
		s.window = d
	}
	return s
}

func TestHeadline(t *testing.T) {
	if os.Getenv("HEADLINE") == "" {
		t.Skip("the headline figure runs only with HEADLINE=1 (docs/benchmarks-headline.md)")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: set it to $(hack/envtest-assets.sh)")
	}
	s := settingsFromEnv(t)
	started := time.Now()
	load0 := loadAverage()
	b := setup(t)
	t.Logf("set up in %s: both API servers, the mesh istiod %s ready", time.Since(started).Round(time.Second), b.version)

	before, after := map[int][]sample{}, map[int][]sample{}
	// Before the switch: the sidecars reach the mesh istiod through xdsLink.
	for r := range s.runs {
		for _, p := range s.ps {
			m := b.window(t, b.xdsLink.Addr(), p, s.window)
			t.Logf("before, run %d, P=%d: %+v", r+1, p, m)
			// Feature: before the switch each sidecar holds its own connection across
			// the link. Fails if the sidecars did not cross it.
			if m.xdsConns < int64(p) {
				t.Errorf("before, P=%d: %d connections crossed the xDS link", p, m.xdsConns)
			}
			before[p] = append(before[p], m)
		}
	}
	b.switchCluster(t)
	addrs, _ := b.localIstiod.Addresses()
	for r := range s.runs {
		for _, p := range s.ps {
			m := b.window(t, addrs.GRPC, p, s.window)
			t.Logf("after, run %d, P=%d: %+v", r+1, p, m)
			// Feature: after the switch no sidecar crosses the link, and the mesh's
			// changes reach the cluster through the operator. Fails if sidecars still
			// used the link or nothing of the changes crossed it.
			if m.xdsConns != 0 || m.xdsBytes != 0 {
				t.Errorf("after, P=%d: the sidecars crossed the link: %d connections, %d bytes", p, m.xdsConns, m.xdsBytes)
			}
			if m.changeBytes == 0 {
				t.Errorf("after, P=%d: nothing crossed the link during %d changes", p, m.changes)
			}
			after[p] = append(after[p], m)
		}
	}
	table := tables(s, before, after)
	fmt.Println(table)
	if s.out != "" {
		header := fmt.Sprintf("Measured %s on %d CPUs (%s), Istio %s, load average %s at the start and %s at the end; "+
			"whole figure %s.", time.Now().UTC().Format("2006-01-02 15:04 MST"), numCPU(), goVersion(), b.version,
			load0, loadAverage(), time.Since(started).Round(time.Second))
		if note := os.Getenv("HEADLINE_NOTE"); note != "" {
			header += " " + note
		}
		if err := writeResults(s.out, header+"\n\n"+table); err != nil {
			t.Error(err)
		}
	}
}

// window measures one window: P sidecars connect to addr and sync, then the mesh's
// VirtualServices change once a second for the window's length; both links are read
// before, after the sync and at the end.
func (b *bench) window(t *testing.T, addr string, p int, length time.Duration) sample {
	t.Helper()
	links := []*farlink.Link{b.xdsLink, b.apiLink}
	// The previous window's sidecars are gone from the link before this one starts.
	eventually(t, 30*time.Second, "the xDS link idle", func() error {
		if o := b.xdsLink.Stats().Open; o != 0 {
			return fmt.Errorf("%d connections open", o)
		}
		return nil
	})
	start := stats(links)
	t0 := time.Now()
	f, err := startFleet(addr, b.version, p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.stop()
	// istiod admits about 25 new streams a second on 2 CPUs (PILOT_MAX_REQUESTS_PER_SECOND).
	if err := f.waitSynced(time.Minute + time.Duration(p)*100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m := sample{sync: time.Since(t0)}
	synced := stats(links)
	atSync := f.responses()
	m.changes = b.changes(t, length)
	if b.localIstiod != nil {
		b.waitMirrored(t)
	}
	settle(f, links)
	end := stats(links)
	atEnd := f.responses()
	m.streams = f.streams()

	got := make([]int64, len(atEnd))
	for i := range atEnd {
		got[i] = atEnd[i] - atSync[i]
	}
	m.pushes = median(got)
	// Feature: every sidecar keeps its stream subscribed and gets the mesh's changes
	// pushed. Fails if a sidecar only connected once or stopped ACKing.
	for i, n := range got {
		if n == 0 {
			t.Errorf("P=%d: sidecar %d got no push during %d changes", p, i, m.changes)
			break
		}
	}
	m.xdsConns, m.xdsBytes = crossed(start[0], end[0])
	m.apiConns, m.apiBytes = crossed(start[1], end[1])
	m.conns = m.xdsConns + m.apiConns
	m.syncBytes = bytesBetween(start, synced)
	m.changeBytes = bytesBetween(synced, end)
	return m
}

// settle waits until the last changes have crossed: nothing moved on the links and no
// sidecar got a response for a second (at most 30 s). Without it a window's last
// pushes, or the operator's last mirror passes, would be counted in the next window.
func settle(f *fleet, links []*farlink.Link) {
	total := func() int64 {
		var n int64
		for _, s := range stats(links) {
			n += s.BytesToServer + s.BytesToClient
		}
		for _, r := range f.responses() {
			n += r
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for prev := total(); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now := total()
		if now == prev {
			return
		}
		prev = now
	}
}

func stats(links []*farlink.Link) []farlink.Stats {
	out := make([]farlink.Stats, len(links))
	for i, l := range links {
		out[i] = l.Stats()
	}
	return out
}

// crossed is the connections that crossed a link in a window (those open at its start
// and those accepted in it) and the bytes, both ways.
func crossed(from, to farlink.Stats) (conns, bytes int64) {
	return from.Open + to.Connections - from.Connections,
		to.BytesToServer + to.BytesToClient - from.BytesToServer - from.BytesToClient
}

func bytesBetween(from, to []farlink.Stats) int64 {
	var n int64
	for i := range from {
		_, b := crossed(from[i], to[i])
		n += b
	}
	return n
}

// waitMirrored waits until the operator has copied the last change into the cluster.
func (b *bench) waitMirrored(t *testing.T) {
	changeMu.Lock()
	c := changeCount
	changeMu.Unlock()
	want := virtualService(c%services, c)
	eventually(t, time.Minute, "change "+fmt.Sprint(c)+" mirrored", func() error {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("networking.istio.io/v1")
		u.SetKind("VirtualService")
		if err := b.data.Get(ctx(), client.ObjectKeyFromObject(want), u); err != nil {
			return err
		}
		routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
		if len(routes) == 1 {
			if r, ok := routes[0].(map[string]any); ok {
				if v, _, _ := unstructured.NestedString(r, "headers", "request", "set", "x-change"); v == fmt.Sprint(c) {
					return nil
				}
			}
		}
		return fmt.Errorf("the copy's routes are %v", routes)
	})
}

// changeCount numbers the changes across windows, so each one is new.
var (
	changeMu    sync.Mutex
	changeCount int
)

// changes makes one change of a VirtualService of the mesh a second, round robin, one
// for every second of length, and returns how many it made. The count is fixed, not the
// time: on a loaded machine a slow write stretches the window rather than dropping a
// change, so that windows compare.
func (b *bench) changes(t *testing.T, length time.Duration) int {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for range int(length / time.Second) {
		changeMu.Lock()
		changeCount++
		c := changeCount
		changeMu.Unlock()
		vs := virtualService(c%services, c)
		patch, err := json.Marshal(map[string]any{"spec": vs.Object["spec"]})
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("networking.istio.io/v1")
		u.SetKind("VirtualService")
		u.SetNamespace("default")
		u.SetName(vs.GetName())
		if err := b.mesh.Patch(ctx(), u, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		n++
		<-tick.C
	}
	return n
}
