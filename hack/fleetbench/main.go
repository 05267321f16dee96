// Command fleetbench is `make bench`'s benchmark of the operator across many far
// clusters: it starts a local mesh (internal/localmesh: one mesh API server and N
// data-plane API servers, each behind a simulated far link), runs the manager built
// from ./cmd, measures the figures of docs/benchmarks.md and writes them there.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

type options struct {
	figures      map[string]bool
	ns           []int
	runs         int
	rtt          time.Duration
	mbits        float64
	timeout      time.Duration
	out          string
	churnN       int
	churnWindow  time.Duration
	isolationN   int
	isolationRun int
	memoryNs     []int
	unrelated    int
	parallelAPIs int
	istioCRDs    bool
	helmRuns     int
	helmNs       []int
	mirrorKs     []int
	driftRuns    int
}

func main() {
	var o options
	var figures, ns, memoryNs, mirrorKs, helmNs string
	flag.StringVar(&figures, "figures", "1,2,3,7,4,5,6", "Figures to run, comma-separated.")
	flag.StringVar(&ns, "n", "1,4,8,16", "Numbers of data-plane clusters for figure 1 (32 where memory and time allow).")
	flag.IntVar(&o.runs, "runs", 2, "Runs of figure 1 at each N; tables show the median, min and max.")
	flag.DurationVar(&o.rtt, "rtt", 100*time.Millisecond, "Round trip of each far link.")
	flag.Float64Var(&o.mbits, "bandwidth", 20, "Bandwidth of each far link, Mbit/s per direction (0: unlimited).")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "Longest wait for the operator in any step.")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file whose generated section is replaced with the results (empty: none).")
	flag.IntVar(&o.churnN, "churn-n", 8, "Clusters of figure 3.")
	flag.DurationVar(&o.churnWindow, "churn-window", time.Minute, "Steady-state window over which figure 3 counts watch streams opened.")
	flag.IntVar(&o.isolationN, "isolation-n", 8, "Clusters of figure 7, two of them behind broken links.")
	flag.IntVar(&o.isolationRun, "isolation-runs", 2, "Runs of each case of figure 7.")
	flag.StringVar(&memoryNs, "memory-n", "1,8,16", "Numbers of clusters figure 4 measures at.")
	flag.IntVar(&o.unrelated, "unrelated", 5000, "ConfigMaps and Secrets figure 4 creates in other namespaces of the mesh cluster (half each).")
	flag.IntVar(&o.helmRuns, "helm-runs", 1, "Runs of figure 2's Helm loop at each N of -helm-n (each run is N installs in series).")
	flag.StringVar(&helmNs, "helm-n", "1,4,8", "Numbers of clusters figure 2's Helm loop installs into, one after another (its goal is at N = 8; each N is N installs in series).")
	flag.IntVar(&o.parallelAPIs, "parallel-starts", 3, "API servers started at once.")
	flag.BoolVar(&o.istioCRDs, "istio-crds", true, "Data-plane clusters hold the CRDs of Istio's base chart, as its remote profile installs them "+
		"(false: none, so that every add installs them).")
	flag.StringVar(&mirrorKs, "mirror-objects", "100,1000,5000", "Istio objects figure 5 mirrors into a cluster, one count after the other.")
	flag.IntVar(&o.driftRuns, "drift-runs", 3, "Runs of each repair of figure 6.")
	flag.Parse()
	o.figures = map[string]bool{}
	for _, f := range strings.Split(figures, ",") {
		o.figures[strings.TrimSpace(f)] = true
	}
	var err error
	if o.ns, err = parseCounts(ns); err == nil {
		o.memoryNs, err = parseCounts(memoryNs)
	}
	if err == nil {
		o.mirrorKs, err = parseCounts(mirrorKs)
	}
	if err == nil {
		o.helmNs, err = parseCounts(helmNs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

// parseCounts reads a comma-separated list of growing positive numbers.
func parseCounts(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("%q: want growing positive numbers, comma-separated", list)
		}
		out = append(out, n)
	}
	return out, nil
}

// clusters is how many data-plane clusters the selected figures need.
func (o options) clusters() int {
	n := 0
	if o.figures["1"] {
		n = max(n, o.ns[len(o.ns)-1])
	}
	if o.figures["2"] {
		n = max(n, o.helmNs[len(o.helmNs)-1])
	}
	if o.figures["4"] {
		n = max(n, o.memoryNs[len(o.memoryNs)-1])
	}
	if o.figures["3"] {
		n = max(n, o.churnN)
	}
	if o.figures["7"] {
		n = max(n, o.isolationN)
	}
	if o.figures["5"] || o.figures["6"] {
		n = max(n, 1)
	}
	return n
}

func run(ctx context.Context, o options) (err error) {
	logf.SetLogger(logr.Discard())
	say := func(format string, args ...any) {
		fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	began := time.Now()
	machine := describeMachine()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "fleetbench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		raw, err := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest-assets.sh")).Output()
		if err != nil {
			return fmt.Errorf("hack/envtest-assets.sh: %w", err)
		}
		assets = strings.TrimSpace(string(raw))
	}
	built := make(chan error, 1)
	var binary string
	go func() {
		var err error
		binary, err = localmesh.BuildManager(ctx, root, tmp)
		built <- err
	}()
	// On a busy machine an API server can take longer than envtest's default 20 s.
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		if err := os.Setenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", "2m"); err != nil {
			return err
		}
	}
	n := o.clusters()
	var dps []localmesh.DataPlane
	for i := range n {
		addr := localmesh.AddressEndpointSlice
		if i%2 == 1 {
			addr = localmesh.AddressExternalName
		}
		dps = append(dps, localmesh.DataPlane{ID: fmt.Sprintf("cluster-%d", i+1), Address: addr, IstioCRDs: o.istioCRDs})
	}
	say("starting %d API servers (the mesh and %d data-plane clusters, links of %s round trip and %g Mbit/s) and building the manager",
		n+1, n, o.rtt, o.mbits)
	m, err := localmesh.Start(ctx, localmesh.Options{
		AssetsDir:         assets,
		MeshCRDDirs:       []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "internal", "mirror", "crds")},
		DataPlanes:        dps,
		LinkRTT:           o.rtt,
		LinkBandwidth:     int64(o.mbits * 1e6),
		Unregistered:      true,
		MaxParallelStarts: o.parallelAPIs,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, m.Stop()) }()
	apiRSS := apiServerRSS()
	say("mesh up in %s; API servers and etcds hold %s resident", time.Since(began).Round(time.Second), mib(apiRSS))
	if err := <-built; err != nil {
		return err
	}
	standIn, stopStandIn := context.WithCancel(ctx)
	defer stopStandIn()
	// In the control plane namespace only, and quietly but for errors: the output is
	// the figures.
	for _, dp := range m.DataPlanes {
		go dp.RunStandIn(standIn, localmesh.StandInOptions{Logf: say})
	}
	// No leader election: one replica, and acquiring the lease would delay its start.
	manager, err := m.StartManager(ctx, localmesh.ManagerOptions{Root: root, Binary: binary, Dir: tmp,
		Args: []string{"--leader-elect=false"}})
	if err != nil {
		return err
	}
	op := &operator{manager}
	defer func() {
		err = errors.Join(err, op.Stop())
		// The manager's log outlives the run, for a look at what limited a figure.
		if raw, e := os.ReadFile(op.LogPath); e == nil && os.MkdirAll(filepath.Join(root, "bin"), 0o755) == nil {
			err = errors.Join(err, os.WriteFile(filepath.Join(root, "bin", "fleetbench-manager.log"), raw, 0o644))
		}
	}()
	f := &fleet{m: m, op: op, logf: say, timeout: o.timeout, applied: map[int]float64{}, profiles: filepath.Join(root, "bin")}

	var tables []table
	for _, fig := range []struct {
		id  string
		run func() (table, error)
	}{
		{"1", func() (table, error) { return fanOut(ctx, f, o.ns, o.runs) }},
		{"2", func() (table, error) { return helmLoop(ctx, f, o.helmNs, o.helmRuns, f.applied) }},
		{"3", func() (table, error) { return churn(ctx, f, o.churnN, o.churnWindow) }},
		{"7", func() (table, error) { return isolation(ctx, f, o.isolationN, o.isolationRun) }},
		{"4", func() (table, error) { return memory(ctx, f, o.memoryNs, o.unrelated) }},
		{"5", func() (table, error) { return mirrorFigure(ctx, f, o.mirrorKs, o.mbits) }},
		{"6", func() (table, error) { return drift(ctx, f, o.driftRuns) }},
	} {
		if !o.figures[fig.id] {
			continue
		}
		figStart := time.Now()
		t, err := fig.run()
		if err != nil {
			return fmt.Errorf("figure %s: %w (manager log: %s)", fig.id, err, op.LogPath)
		}
		t.Notes = append(t.Notes, fmt.Sprintf("This figure took %s.", time.Since(figStart).Round(time.Second)))
		t.text(os.Stdout)
		tables = append(tables, t)
		// Written after each figure, so that a run cut short keeps what it measured.
		crds := "with the CRDs of Istio's base chart, as its remote profile installs them"
		if !o.istioCRDs {
			crds = "without Istio's CRDs, so that every add installs them"
		}
		setup := fmt.Sprintf("%d data-plane clusters, %s, each behind a far link of %s round trip and %g Mbit/s per direction; "+
			"the API servers and etcds held %s resident after start; the run took %s to here. Command: `fleetbench %s`.",
			n, crds, o.rtt, o.mbits, mib(apiRSS), time.Since(began).Round(time.Second), strings.Join(os.Args[1:], " "))
		if o.out != "" {
			if err := writeReport(filepath.Join(root, o.out), began, machine, setup, tables); err != nil {
				return err
			}
		}
	}
	return nil
}

func repoRoot() (string, error) {
	raw, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(raw))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("run from the repository: make bench, or go run ./hack/fleetbench")
	}
	return filepath.Dir(gomod), nil
}
