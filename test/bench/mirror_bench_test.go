package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// virtualServices are n VirtualServices of the mesh cluster, as the mirror reads them.
func virtualServices(n int) []unstructured.Unstructured {
	out := make([]unstructured.Unstructured, n)
	for i := range out {
		out[i].SetAPIVersion("networking.istio.io/v1")
		out[i].SetKind("VirtualService")
		out[i].SetNamespace("default")
		out[i].SetName(fmt.Sprintf("reviews-%d", i))
		out[i].Object["spec"] = map[string]any{
			"hosts": []any{fmt.Sprintf("reviews-%d.default.svc.cluster.local", i)},
			"http":  []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "reviews", "subset": "v2"}}}}},
		}
	}
	return out
}

// BenchmarkMirrorResync mirrors an unchanged set of Istio objects into a cluster that
// already holds the copies, the operator's way (cache and memory): the cost of the
// mirror on every resync, by number of objects. writes/op counts API server writes.
func BenchmarkMirrorResync(b *testing.B) {
	if cfg == nil {
		b.Skip("KUBEBUILDER_ASSETS is not set; run make bench")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writes atomic.Int64
	informers, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	cl := countingClient(b, &writes, informers)
	labels := map[string]string{render.ManagedByLabel: render.ManagedByValue}
	own := apply.Ownership{Labels: labels, ManagedByKey: render.ManagedByLabel, ManagedByValue: render.ManagedByValue}

	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			copies, _ := mirror.Copies(virtualServices(n), map[string]bool{"default": true}, labels)
			applier := apply.New()
			if _, err := applier.Apply(ctx, "cluster-2", cl, cl, own, copies); err != nil {
				b.Fatal(err)
			}
			writes.Store(0)
			b.ReportAllocs()
			for b.Loop() {
				copies, _ := mirror.Copies(virtualServices(n), map[string]bool{"default": true}, labels)
				if _, err := applier.Apply(ctx, "cluster-2", cl, cl, own, copies); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
		})
	}
}
