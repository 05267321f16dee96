// Package passread gives one reconcile pass of a far cluster a view of it in which the
// pass's live reads cost as few round trips as they can. A pass reads the same objects
// in several phases (the control plane namespace, istiod's Service, the webhook
// configurations) and, when nothing changed, the same objects as the pass before it.
// Across a link of 100 ms each of those reads in series is a tenth of a second, and a
// resync of a cluster or the repair of one drifted object pays for all of them.
//
// So, within a pass, each live read is sent once and shared by the phases that make
// it, until the pass writes anything (after a write every read goes to the API server
// again); and the reads the previous pass made before its first write are sent side
// by side as the pass begins, so a pass that changes nothing reads the cluster in
// about one round trip. What a phase reads is still the API server's answer, read at
// most one pass earlier than it would otherwise have been; writes are checked by the
// API server as before (resource versions, server-side apply), and the cache a
// cluster's client reads from is untouched.
package passread

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
)

// MaxLearned bounds the reads a pass hands to the next one.
const MaxLearned = 64

// Reads are the reads a pass made before its first write, in order: what the next pass
// sends as it begins.
type Reads []read

// read is one Get or List: its key and an empty object of its type to read into.
type read struct {
	key   key
	proto client.Object     // for a Get
	list  client.ObjectList // for a List
	opts  []client.ListOption
}

// key tells reads apart: by Go type and kind (a Namespace read whole is not one read as
// metadata), by object or by the options of a List.
type key struct {
	typ  reflect.Type
	gvk  schema.GroupVersionKind
	ns   string
	name string
	list string // the List's options; empty for a Get
}

type entry struct {
	done chan struct{}
	obj  runtime.Object // the answer, when err is nil
	err  error          // nil or a NotFound: other errors are not shared
}

// View is a cluster as one pass sees it. Its API reader shares and prefetches reads;
// its client writes as the cluster's does and, on each write, forgets what was read.
type View struct {
	cluster.Cluster
	reader *reader
	client client.Client
	cancel context.CancelFunc
}

// Begin starts a pass of cl. The reads of last are sent at once, side by side; End
// stops those still in flight.
func Begin(ctx context.Context, cl cluster.Cluster, last Reads) *View {
	ctx, cancel := context.WithCancel(ctx)
	r := &reader{live: cl.GetAPIReader(), entries: map[key]*entry{}, seen: map[key]bool{}}
	v := &View{Cluster: cl, reader: r, client: &writer{Client: cl.GetClient(), reader: r}, cancel: cancel}
	for _, rd := range last {
		e := &entry{done: make(chan struct{})}
		r.entries[rd.key] = e
		go func() { _ = r.fetch(ctx, rd, e) }()
	}
	return v
}

// End stops the reads still in flight and returns the reads the pass made before its
// first write, for the next pass.
func (v *View) End() Reads {
	v.cancel()
	v.reader.mu.Lock()
	defer v.reader.mu.Unlock()
	return v.reader.learned
}

// GetAPIReader reads through the pass.
func (v *View) GetAPIReader() client.Reader { return v.reader }

// GetClient reads from the cluster's cache, as the cluster's client does, and writes
// to its API server; every write makes the pass read again.
func (v *View) GetClient() client.Client { return v.client }

type reader struct {
	live client.Reader

	mu      sync.Mutex
	entries map[key]*entry
	learned Reads        // the reads made before the first write
	seen    map[key]bool // keys in learned
	wrote   bool
}

func (r *reader) Get(ctx context.Context, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if len(opts) > 0 {
		return r.live.Get(ctx, k, obj, opts...)
	}
	rd := read{key: key{typ: reflect.TypeOf(obj), gvk: obj.GetObjectKind().GroupVersionKind(), ns: k.Namespace, name: k.Name},
		proto: emptyLike(obj).(client.Object)}
	return r.do(ctx, rd, obj)
}

func (r *reader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	if lo.Limit > 0 || lo.Continue != "" || lo.Raw != nil {
		return r.live.List(ctx, list, opts...) // pages and raw options are read as asked
	}
	var labels, fields string
	if lo.LabelSelector != nil {
		labels = lo.LabelSelector.String()
	}
	if lo.FieldSelector != nil {
		fields = lo.FieldSelector.String()
	}
	rd := read{key: key{typ: reflect.TypeOf(list), gvk: list.GetObjectKind().GroupVersionKind(), ns: lo.Namespace,
		list: fmt.Sprintf("list labels=%q fields=%q", labels, fields)},
		list: emptyLike(list).(client.ObjectList), opts: opts}
	return r.do(ctx, rd, list)
}

// do answers a read from the pass's entry for it, sending it when there is none.
func (r *reader) do(ctx context.Context, rd read, into runtime.Object) error {
	r.mu.Lock()
	e, found := r.entries[rd.key]
	if !found {
		e = &entry{done: make(chan struct{})}
		r.entries[rd.key] = e
	}
	if !r.wrote && !r.seen[rd.key] && len(r.learned) < MaxLearned {
		r.seen[rd.key] = true
		r.learned = append(r.learned, rd)
	}
	r.mu.Unlock()
	if !found {
		if err := r.fetch(ctx, rd, e); err != nil && !apierrors.IsNotFound(err) {
			return err // this read's own failure; the next one tries again
		}
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e.obj == nil && e.err == nil {
		// Not shared (an error other than NotFound, or the pass ended): read it now.
		return r.readLive(ctx, rd, into)
	}
	if e.err != nil {
		return e.err
	}
	reflect.ValueOf(into).Elem().Set(reflect.ValueOf(e.obj.DeepCopyObject()).Elem())
	return nil
}

// fetch sends one read and records its answer; an answer other than the object or
// NotFound is dropped, so that each phase that needs the read tries it itself.
func (r *reader) fetch(ctx context.Context, rd read, e *entry) error {
	defer close(e.done)
	var obj runtime.Object = rd.proto
	if rd.list != nil {
		obj = rd.list
	}
	obj = emptyLike(obj)
	err := r.readLive(ctx, rd, obj)
	switch {
	case err == nil:
		e.obj = obj
	case apierrors.IsNotFound(err):
		e.err = err
	default:
		r.forget(rd.key, e)
	}
	return err
}

func (r *reader) readLive(ctx context.Context, rd read, into runtime.Object) error {
	if rd.list != nil {
		return r.live.List(ctx, into.(client.ObjectList), rd.opts...)
	}
	return r.live.Get(ctx, client.ObjectKey{Namespace: rd.key.ns, Name: rd.key.name}, into.(client.Object))
}

func (r *reader) forget(k key, e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries[k] == e {
		delete(r.entries, k)
	}
}

// invalidate forgets every read: after a write of the pass, reads go to the API server again.
func (r *reader) invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wrote = true
	r.entries = map[key]*entry{}
}

// emptyLike is a new, empty object of obj's type and kind.
func emptyLike(obj runtime.Object) runtime.Object {
	out := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(runtime.Object)
	out.GetObjectKind().SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
	return out
}

// writer is the cluster's client; each write makes the pass's reads stale.
type writer struct {
	client.Client
	reader *reader
}

func (w *writer) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	defer w.reader.invalidate()
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writer) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	defer w.reader.invalidate()
	return w.Client.Update(ctx, obj, opts...)
}

func (w *writer) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if isDryRun(opts) {
		return w.Client.Patch(ctx, obj, patch, opts...)
	}
	defer w.reader.invalidate()
	return w.Client.Patch(ctx, obj, patch, opts...)
}

func (w *writer) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	o := &client.ApplyOptions{}
	o.ApplyOptions(opts)
	if len(o.DryRun) == 0 {
		defer w.reader.invalidate()
	}
	return w.Client.Apply(ctx, obj, opts...)
}

func (w *writer) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	defer w.reader.invalidate()
	return w.Client.Delete(ctx, obj, opts...)
}

func (w *writer) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	defer w.reader.invalidate()
	return w.Client.DeleteAllOf(ctx, obj, opts...)
}

func (w *writer) Status() client.SubResourceWriter {
	return &subWriter{SubResourceWriter: w.Client.Status(), reader: w.reader}
}

func (w *writer) SubResource(sub string) client.SubResourceClient {
	c := w.Client.SubResource(sub)
	return &subClient{SubResourceReader: c, subWriter: &subWriter{SubResourceWriter: c, reader: w.reader}}
}

func isDryRun(opts []client.PatchOption) bool {
	o := &client.PatchOptions{}
	o.ApplyOptions(opts)
	return len(o.DryRun) > 0
}

type subWriter struct {
	client.SubResourceWriter
	reader *reader
}

func (s *subWriter) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	defer s.reader.invalidate()
	return s.SubResourceWriter.Create(ctx, obj, sub, opts...)
}

func (s *subWriter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	defer s.reader.invalidate()
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *subWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	defer s.reader.invalidate()
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (s *subWriter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	defer s.reader.invalidate()
	return s.SubResourceWriter.Apply(ctx, obj, opts...)
}

// subClient reads a subresource as the cluster's client does and writes it as subWriter.
type subClient struct {
	client.SubResourceReader
	*subWriter
}
