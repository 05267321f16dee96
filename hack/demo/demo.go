package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// dataPlanes are the data-plane clusters of the local mesh, one of each flavour of
// control plane address Istio's remote profile installs; config/samples gives
// cluster-2 a remote control plane.
var dataPlanes = []localmesh.DataPlane{
	{ID: "cluster-1", Address: localmesh.AddressExternalName},
	{ID: "cluster-2", Address: localmesh.AddressEndpointSlice},
}

// istioConfig is Istio configuration authored in the mesh cluster, for the operator to
// mirror into the clusters with a remote control plane.
//
//go:embed istio-config.yaml
var istioConfig []byte

type options struct {
	once    bool
	timeout time.Duration
	// linkRTT is the round trip the far links to the data-plane clusters add.
	linkRTT time.Duration
}

// run starts the local mesh and the operator, applies the sample, waits for the
// outcome and reports it. With once it returns then, with an error when the outcome is
// wrong; otherwise it keeps everything running until ctx ends. Either way it stops
// everything it started and removes its files before it returns.
func run(ctx context.Context, opts options, w io.Writer) (err error) {
	logf.SetLogger(logr.Discard()) // the clients' own logs would drown the story
	out := &printer{w: w}
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "remote-istiod-demo-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()

	out.step("envtest's kube-apiserver and etcd")
	assets, err := envtestAssets(ctx, root, out)
	if err != nil {
		return err
	}
	out.line("using %s", assets)

	out.step("Starting the local mesh: API servers for %s, %s and %s; building the operator meanwhile",
		localmesh.MeshClusterID, dataPlanes[0].ID, dataPlanes[1].ID)
	type buildResult struct {
		binary string
		err    error
	}
	built := make(chan buildResult, 1)
	go func() {
		b, err := localmesh.BuildManager(ctx, root, tmp)
		built <- buildResult{b, err}
	}()
	m, err := localmesh.Start(ctx, localmesh.Options{
		AssetsDir:   assets,
		MeshCRDDirs: []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "internal", "mirror", "crds")},
		DataPlanes:  dataPlanes,
		LinkRTT:     opts.linkRTT,
		Progress:    func(msg string) { out.line("%s", msg) },
	})
	if err != nil {
		return errors.Join(err, (<-built).err)
	}
	defer func() {
		out.line("stopping the API servers")
		err = errors.Join(err, m.Stop())
	}()
	if _, err := m.Mesh.Create(ctx, istioConfig); err != nil {
		return err
	}
	out.line("mesh: Istio configuration to mirror (hack/demo/istio-config.yaml)")
	before := map[string]*dataPlaneView{}
	for _, dp := range m.DataPlanes {
		if before[dp.ID], err = inspect(ctx, dp); err != nil {
			return err
		}
		if err := checkInstalled(before[dp.ID], dp.ID, dp.Address); err != nil {
			return fmt.Errorf("%s is not installed as Istio's remote profile of its flavour: %w", dp.ID, err)
		}
	}
	build := await(built, "building the operator", out)
	if build.err != nil {
		return build.err
	}
	managerBinary := build.binary

	out.step("Starting the operator (%s) in the mesh cluster, with the RBAC of config/rbac", managerBinary)
	op, err := m.StartManager(ctx, localmesh.ManagerOptions{Root: root, Binary: managerBinary, Dir: tmp,
		Args: []string{
			// As installed: the lease in the operator's own namespace (config/rbac's Role).
			"--leader-election-namespace", localmesh.OperatorNamespace,
			// A console log for people, shown when the outcome is wrong.
			"--zap-devel",
		},
		StopTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer func() {
		out.line("stopping the operator")
		err = errors.Join(err, op.Stop())
	}()
	out.line("ready; its log: %s", op.LogPath)

	out.step("Applying config/samples")
	wanted, err := applySamples(ctx, root, m)
	if err != nil {
		return err
	}
	for _, dp := range dataPlanes {
		if wanted[dp.ID] {
			out.line("%s gets a remote control plane", dp.ID)
		} else {
			out.line("%s keeps the mesh control plane", dp.ID)
		}
	}

	standInCtx, stopStandIn := context.WithCancel(ctx)
	var standIn sync.WaitGroup
	for _, c := range m.Clusters() {
		standIn.Go(func() { runStandIn(standInCtx, c, out) })
	}
	defer func() {
		stopStandIn()
		standIn.Wait()
	}()

	out.step("Waiting for the operator (up to %s)", opts.timeout)
	outcome := waitForOutcome(ctx, m, wanted, before, opts.timeout, out)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := report(ctx, m, before, out); err != nil {
		return err
	}
	if opts.once {
		if outcome != nil {
			out.step("The end of the operator's log")
			out.lines(op.LogTail(40))
			return fmt.Errorf("unexpected outcome: %w", outcome)
		}
		out.step("Outcome as expected")
		return nil
	}
	if outcome != nil {
		out.step("The outcome is not what it should be: %v; see the operator's log %s", outcome, op.LogPath)
	}
	if err := explore(m, tmp, out); err != nil {
		return err
	}
	<-ctx.Done()
	out.step("Stopping")
	return nil
}

// explore writes a kubeconfig per cluster and says what to look at.
func explore(m *localmesh.Mesh, dir string, out *printer) error {
	paths := map[string]string{}
	for _, c := range m.Clusters() {
		raw, err := c.AdminKubeconfig()
		if err != nil {
			return err
		}
		paths[c.ID] = filepath.Join(dir, c.ID+".kubeconfig")
		if err := os.WriteFile(paths[c.ID], raw, 0o600); err != nil {
			return err
		}
	}
	out.step("The local mesh keeps running: explore it with kubectl (kubeconfigs in %s)", dir)
	meshKC, c1, c2 := paths[localmesh.MeshClusterID], paths[dataPlanes[0].ID], paths[dataPlanes[1].ID]
	for _, cmd := range []string{
		"kubectl --kubeconfig " + meshKC + " get asmmeshconfig",
		"kubectl --kubeconfig " + meshKC + " describe asmmeshconfig default",
		"kubectl --kubeconfig " + meshKC + " -n istio-system get cm istio -o yaml   # the mesh istiod's settings",
		"kubectl --kubeconfig " + c2 + " -n istio-system get deploy,svc,endpointslice,cm,secret",
		"kubectl --kubeconfig " + c2 + " -n istio-system get svc istiod -o yaml   # now leads to the local istiod",
		"kubectl --kubeconfig " + c2 + " get mutatingwebhookconfiguration istio-sidecar-injector -o yaml",
		"kubectl --kubeconfig " + c2 + " get virtualservices,destinationrules,peerauthentications -A",
		"kubectl --kubeconfig " + meshKC + " edit asmmeshconfig default   # add cluster-1: {} and watch it switch",
		"kubectl --kubeconfig " + c1 + " -n istio-system get svc istiod   # ExternalName localhost until it switches",
	} {
		out.line("%s", cmd)
	}
	out.line("The demo keeps marking Deployments available in place of a kubelet.")
	out.line("Press Ctrl-C to stop the operator and the API servers and remove %s.", dir)
	return nil
}

// await waits for a result, saying now and then that it still waits.
func await[T any](result <-chan T, what string, out *printer) T {
	start := time.Now()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case r := <-result:
			return r
		case <-tick.C:
			out.line("still %s (%s so far)", what, time.Since(start).Round(time.Second))
		}
	}
}

// printer writes the demo's output; the stand-in writes from its own goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

// step starts a section.
func (p *printer) step(format string, args ...any) {
	p.printf("\n==> "+format+"\n", args...)
}

// line is a detail of the current section.
func (p *printer) line(format string, args ...any) {
	p.printf("    "+format+"\n", args...)
}

// lines prints a block of text as details.
func (p *printer) lines(text string) {
	for _, l := range strings.Split(text, "\n") {
		p.line("%s", l)
	}
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintf(p.w, format, args...)
}

func (p *printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}
