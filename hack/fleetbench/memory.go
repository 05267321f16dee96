package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// memory runs figure 4: the manager's heap and RSS with no cluster, with the mesh
// cluster holding unrelated ConfigMaps and Secrets, and with each n clusters connected
// and installed.
func memory(ctx context.Context, f *fleet, ns []int, unrelated int) (table, error) {
	t := table{Title: "Figure 4: memory per cluster",
		Columns: []string{"clusters connected and installed", "live heap", "RSS", "heap increase per added cluster"}}
	if err := f.registerExactly(ctx, 0); err != nil {
		return t, err
	}
	if _, err := f.setEntries(ctx, nil, 1); err != nil { // an ASMMeshConfig to touch
		return t, err
	}
	empty, err := f.memorySample(ctx, "0")
	if err != nil {
		return t, err
	}
	t.Rows = append(t.Rows, []string{"0", empty.heap.cell(mib), empty.rss.cell(mib), ""})
	f.logf("figure 4: creating %d unrelated ConfigMaps and Secrets in the mesh cluster", unrelated)
	if err := createUnrelated(ctx, f.m.Mesh.Client, unrelated); err != nil {
		return t, err
	}
	withUnrelated, err := f.memorySample(ctx, "unrelated")
	if err != nil {
		return t, err
	}
	t.Rows = append(t.Rows, []string{fmt.Sprintf("0, with %d unrelated objects in the mesh", unrelated),
		withUnrelated.heap.cell(mib), withUnrelated.rss.cell(mib), ""})
	prevN, prevHeap := 0, withUnrelated.heap.Median
	var firstHeap float64
	for _, n := range ns {
		if err := f.registerExactly(ctx, n); err != nil {
			return t, err
		}
		if _, err := f.installQuiet(ctx, f.ids(n)); err != nil {
			return t, err
		}
		s, err := f.memorySample(ctx, fmt.Sprint(n))
		if err != nil {
			return t, err
		}
		per := (s.heap.Median - prevHeap) / float64(n-prevN)
		f.logf("figure 4: %d clusters: heap %s, RSS %s", n, mib(s.heap.Median), mib(s.rss.Median))
		t.Rows = append(t.Rows, []string{fmt.Sprint(n), s.heap.cell(mib), s.rss.cell(mib), mib(per)})
		prevN, prevHeap = n, s.heap.Median
		if n == ns[0] {
			firstHeap = s.heap.Median
		}
		if _, err := f.setEntries(ctx, nil, 1); err != nil {
			return t, err
		}
		if err := f.waitRemoved(ctx); err != nil {
			return t, err
		}
	}
	// The first cluster brings one-off costs (Istio's charts, the mesh informers of
	// the mirror): the increase per cluster is measured from the first N on.
	slope := (prevHeap - firstHeap) / float64(prevN-ns[0])
	verdict := "meets goal"
	if slope >= 5<<20 {
		verdict = "misses goal"
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("Heap increase per added cluster from %d to %d clusters: %s (goal < 5 MiB: %s); each row's increase is against the row above, "+
			"the first cluster's includes what any installed cluster brings once.", ns[0], prevN, mib(slope), verdict),
		fmt.Sprintf("The %d unrelated objects (half ConfigMaps, half Secrets, 1 KiB of data each, in namespaces of their own) changed the heap by %s: "+
			"the mesh cluster's cache holds only istio-system's ConfigMaps and remote secrets.", unrelated, mib(withUnrelated.heap.Median-empty.heap.Median)),
		"Live heap is the manager's HeapAlloc right after a garbage collection it was made to run (pprof's heap?gc=1), with no reconcile in flight, "+
			"one reading per row; RSS from /proc at the same moment. Each N is measured installed, Ready and quiet; clusters beyond N have no remote secret. "+
			"The heap profiles are left in bin/fleetbench-heap-N.pb.gz (go tool pprof -base to compare two rows).")
	return t, nil
}

// memSample is the live heap and RSS at one moment.
type memSample struct{ heap, rss summary }

// memorySample reads the live heap of the quiet manager: the heap in use right after a
// garbage collection it is made to run (pprof's gc=1; runtime.GC returns once the
// collection has swept), and its RSS at the same moment. It leaves the heap profile
// in bin/fleetbench-heap-<name>.pb.gz, to read what the heap holds.
func (f *fleet) memorySample(ctx context.Context, name string) (memSample, error) {
	heap, err := f.op.liveHeap(ctx)
	if err != nil {
		return memSample{}, err
	}
	rss, err := f.op.rssBytes()
	if err != nil {
		return memSample{}, err
	}
	if err := f.op.saveHeapProfile(ctx, filepath.Join(f.profiles, "fleetbench-heap-"+name+".pb.gz")); err != nil {
		return memSample{}, err
	}
	return memSample{heap: sample{heap}.summary(), rss: sample{rss}.summary()}, nil
}

// registerExactly leaves the first n data-plane clusters registered and no others.
func (f *fleet) registerExactly(ctx context.Context, n int) error {
	for f.registered > n {
		f.registered--
		if err := f.m.Unregister(ctx, f.m.DataPlanes[f.registered]); err != nil {
			return err
		}
	}
	if n == 0 {
		_, err := f.quiet(ctx)
		return err
	}
	return f.registerUpTo(ctx, n)
}

// createUnrelated creates n ConfigMaps and Secrets, half each, in ten namespaces the
// operator has no business with.
func createUnrelated(ctx context.Context, c client.Client, n int) error {
	const namespaces = 10
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)}}
		if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			return err
		}
	}
	data := strings.Repeat("x", 1024)
	return createAll(ctx, c, 0, n, func(i int) client.Object {
		meta := metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Namespace: fmt.Sprintf("unrelated-%d", i%namespaces)}
		if i%2 == 1 {
			return &corev1.Secret{ObjectMeta: meta, Data: map[string][]byte{"data": []byte(data)}}
		}
		return &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"data": data}}
	})
}
