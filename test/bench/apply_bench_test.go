// Package bench measures the operator's work per data-plane cluster against a real API
// server (envtest), so that what a resync costs is a number, not a claim. Run with
// `make bench`, which compares the variants with benchstat.
package bench

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

var (
	cfg    *rest.Config
	scheme = runtime.NewScheme()
)

// TestMain starts one API server for every benchmark, when benchmarks run and
// envtest's binaries are there (make bench provides them); make test runs none.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" || flag.Lookup("test.bench").Value.String() == "" {
		os.Exit(m.Run()) // benchmarks skip themselves
	}
	if err := manager.AddToScheme(scheme); err != nil {
		panic(err)
	}
	// Istio's CRDs, for the mirror's copies.
	env := localapi.New(&envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "internal", "mirror", "crds")},
		ErrorIfCRDPathMissing: true})
	var err error
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// requests counts what a client asks the API server.
type requests struct{ reads, writes atomic.Int64 }

func (r *requests) reset() { r.reads.Store(0); r.writes.Store(0) }

func (r *requests) report(b *testing.B) {
	b.ReportMetric(float64(r.reads.Load())/float64(b.N), "reads/op")
	b.ReportMetric(float64(r.writes.Load())/float64(b.N), "writes/op")
}

// benchClients returns two counting clients of the API server: direct reads from it,
// cached from an informer cache that lives as long as ctx.
func benchClients(ctx context.Context, b *testing.B) (counts *requests, direct, cached client.Client) {
	counts = &requests{}
	informers, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	return counts, countingClient(b, counts, nil), countingClient(b, counts, informers)
}

// countingClient returns a client whose requests to the API server are counted; reads
// go to reader when it is set, else to the API server.
func countingClient(b *testing.B, counts *requests, reader cache.Cache) client.Client {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 1000, 1000
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet {
				counts.reads.Add(1)
			} else {
				counts.writes.Add(1)
			}
			return rt.RoundTrip(req)
		})
	}
	opts := client.Options{Scheme: scheme}
	if reader != nil {
		opts.Cache = &client.CacheOptions{Reader: reader}
	}
	cl, err := client.New(c, opts)
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func renderedIstiod(b *testing.B) []client.Object {
	spec := v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
		"cluster-2": {Replicas: ptrTo[int32](2), Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")}}}}}
	// A cluster of a mesh cluster without a control plane to copy: the version and the
	// injector and mesh ConfigMaps of Istio's chart, as the operator renders it.
	in := render.InputsFor(spec, "cluster-2", render.Settings{Namespace: "istio-system", Hub: "docker.io/istio"})
	in.Version = fmt.Sprintf("1.%d.0", istiochart.Minor())
	settings, err := controller.ChartMeshSettings(in)
	if err != nil {
		b.Fatal(err)
	}
	in.MeshSettings = settings
	objs, err := render.Render(in, scheme)
	if err != nil {
		b.Fatal(err)
	}
	return objs
}

// BenchmarkResyncIstiod applies an unchanged istiod to a cluster that already has it,
// as every periodic resync does:
//   - resync=operator: the operator's way, reading from the cluster's cache and
//     remembering what it last applied, so it compares and writes nothing;
//   - resync=uncached: the same, reading from the API server instead of a cache;
//   - resync=no-memory: without that memory, every object is dry-run and applied again.
//
// reads/op and writes/op count requests to the API server.
func BenchmarkResyncIstiod(b *testing.B) {
	if cfg == nil {
		b.Skip("KUBEBUILDER_ASSETS is not set; run make bench")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counts, direct, cached := benchClients(ctx, b)

	_ = direct.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}})
	own := apply.Ownership{Labels: map[string]string{render.ManagedByLabel: render.ManagedByValue},
		ManagedByKey: render.ManagedByLabel, ManagedByValue: render.ManagedByValue}
	objs := renderedIstiod(b)
	remembering := apply.New()
	if _, err := remembering.Apply(ctx, "cluster-2", direct, nil, direct, own, objs); err != nil {
		b.Fatal(err)
	}
	// The cache starts an informer per kind on first use; that is not a resync's cost.
	if _, err := remembering.Apply(ctx, "cluster-2", cached, direct, cached, own, objs); err != nil {
		b.Fatal(err)
	}

	for _, v := range []struct {
		name    string
		cl      client.Client
		applier func() *apply.Applier
	}{
		{"resync=operator", cached, func() *apply.Applier { return remembering }},
		{"resync=uncached", direct, func() *apply.Applier { return remembering }},
		{"resync=no-memory", direct, apply.New},
	} {
		b.Run(v.name, func(b *testing.B) {
			counts.reset()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.applier().Apply(ctx, "cluster-2", v.cl, nil, v.cl, own, objs); err != nil {
					b.Fatal(err)
				}
			}
			counts.report(b)
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
