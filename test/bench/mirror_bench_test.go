package bench

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

var virtualServiceGVK = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}

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
// already holds the copies, with the applier's memory, by number of objects:
//   - reads=snapshot: the operator's way, one List per kind from the API server;
//   - reads=api: each copy read from the API server, one round trip per object across
//     the link to a far cluster;
//   - reads=cache: each copy read from an informer cache of the copies, which may lag.
//
// reads/op and writes/op count requests to the API server.
func BenchmarkMirrorResync(b *testing.B) {
	if cfg == nil {
		b.Skip("KUBEBUILDER_ASSETS is not set; run make bench")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counts, direct, cached := benchClients(ctx, b)
	labels := map[string]string{render.ManagedByLabel: render.ManagedByValue}
	own := apply.Ownership{Labels: labels, ManagedByKey: render.ManagedByLabel, ManagedByValue: render.ManagedByValue}

	for _, n := range []int{10, 100, 1000} {
		copies, _ := mirror.Copies(virtualServices(n), map[string]bool{"default": true}, labels)
		applier := apply.New()
		if _, err := applier.Apply(ctx, "cluster-2", direct, nil, direct, own, copies); err != nil {
			b.Fatal(err)
		}
		// The cache starts its informer on first use; that is not a resync's cost.
		if _, err := applier.Apply(ctx, "cluster-2", cached, direct, cached, own, copies); err != nil {
			b.Fatal(err)
		}
		snapshot := func() client.Reader {
			s, err := apply.TakeSnapshot(ctx, direct, nil, []schema.GroupVersionKind{virtualServiceGVK})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		for _, reads := range []struct {
			name   string
			reader func() client.Reader
		}{
			{"snapshot", snapshot},
			{"api", func() client.Reader { return direct }},
			{"cache", func() client.Reader { return cached }},
		} {
			b.Run(fmt.Sprintf("objects=%d/reads=%s", n, reads.name), func(b *testing.B) {
				counts.reset()
				b.ReportAllocs()
				for b.Loop() {
					copies, _ := mirror.Copies(virtualServices(n), map[string]bool{"default": true}, labels)
					if _, err := applier.Apply(ctx, "cluster-2", reads.reader(), nil, direct, own, copies); err != nil {
						b.Fatal(err)
					}
				}
				counts.report(b)
			})
		}
	}
}
