package apply

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

var configMapGVK = corev1.SchemeGroupVersion.WithKind("ConfigMap")

func configMap(ns, name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

func TestSnapshotReadsEachKindOnce(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{"owner": "us"}
	var lists, gets atomic.Int32
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		configMap("a", "copy-1", ours), configMap("b", "copy-2", ours), configMap("a", "foreign", nil),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s"}},
	).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, l, o...)
		},
		Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, o ...client.GetOption) error {
			gets.Add(1)
			return c.Get(ctx, k, obj, o...)
		},
	}).Build()
	ctx := context.Background()
	snap, err := TakeSnapshot(ctx, c, nil, []schema.GroupVersionKind{configMapGVK})
	if err != nil {
		t.Fatal(err)
	}

	get := func(ns, name string) (*metav1.PartialObjectMetadata, error) {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(configMapGVK)
		return m, snap.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m)
	}
	if m, err := get("a", "copy-1"); err != nil || m.Labels["owner"] != "us" {
		t.Errorf("copy-1: %v %v", m.Labels, err)
	}
	// A foreign object of the same kind is there too, so Apply still refuses to take
	// it over.
	if m, err := get("a", "foreign"); err != nil || m.Name != "foreign" {
		t.Errorf("foreign: %v", err)
	}
	if _, err := get("b", "copy-1"); !apierrors.IsNotFound(err) {
		t.Errorf("an object not in the snapshot: %v, want NotFound", err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMapList"))
	if err := snap.List(ctx, list, client.MatchingLabels(ours), client.InNamespace("a")); err != nil || len(list.Items) != 1 || list.Items[0].Name != "copy-1" {
		t.Errorf("List by labels and namespace: %v %v", list.Items, err)
	}
	if lists.Load() != 1 || gets.Load() != 0 {
		t.Errorf("the API was asked %d lists and %d gets, want 1 and 0", lists.Load(), gets.Load())
	}

	// A kind the snapshot did not list is read from the API.
	s := &metav1.PartialObjectMetadata{}
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := snap.Get(ctx, client.ObjectKey{Namespace: "a", Name: "s"}, s); err != nil || gets.Load() != 1 {
		t.Errorf("unlisted kind: %v, gets %d", err, gets.Load())
	}
}

// orderReader records when Lists of each group version start and end.
type orderReader struct {
	client.Reader
	mu     sync.Mutex
	events []string // "start <group/version>" and "end <group/version>"
}

func (r *orderReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	gv := list.GetObjectKind().GroupVersionKind().GroupVersion().String()
	r.mu.Lock()
	r.events = append(r.events, "start "+gv)
	r.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a round trip
	r.mu.Lock()
	r.events = append(r.events, "end "+gv)
	r.mu.Unlock()
	return nil
}

// A REST mapper that misses a group version reads its discovery once per lookup, one
// at a time: the first List of each group version must end before the others of it
// start, while different group versions are listed side by side.
func TestSnapshotListsOneKindPerGroupVersionFirst(t *testing.T) {
	var kinds []schema.GroupVersionKind
	for _, gv := range []schema.GroupVersion{{Group: "networking.istio.io", Version: "v1"}, {Group: "security.istio.io", Version: "v1"}} {
		for _, k := range []string{"A", "B", "C", "D"} {
			kinds = append(kinds, gv.WithKind(k))
		}
	}
	r := &orderReader{}
	if _, err := TakeSnapshot(context.Background(), r, nil, kinds); err != nil {
		t.Fatal(err)
	}
	for _, gv := range []string{"networking.istio.io/v1", "security.istio.io/v1"} {
		starts, firstEnd := 0, -1
		for _, e := range r.events {
			switch e {
			case "start " + gv:
				starts++
				if starts == 2 && firstEnd < 0 {
					t.Errorf("a second List of %s started before the first ended: %v", gv, r.events)
				}
			case "end " + gv:
				if firstEnd < 0 {
					firstEnd = starts
				}
			}
		}
	}
	if r.events[1] != "start security.istio.io/v1" && r.events[1] != "start networking.istio.io/v1" {
		t.Errorf("the two group versions were not listed side by side: %v", r.events)
	}
}

// mappedReader is a reader and its REST mapper: it records each mapping looked up, and each List waits until every kind's List has
// started (or gives up after a while), so Lists sent in waves are seen.
type mappedReader struct {
	client.Reader
	meta.ResettableRESTMapper // only RESTMapping is called
	kinds                     int

	mu      sync.Mutex
	mapped  []string
	started int
	serial  bool // a List gave up waiting for the others
	cond    *sync.Cond
}

func (r *mappedReader) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started > 0 {
		r.serial = true // a lookup after a List began
	}
	r.mapped = append(r.mapped, gk.Group+"/"+versions[0])
	return &meta.RESTMapping{}, nil
}

func (r *mappedReader) List(_ context.Context, _ client.ObjectList, _ ...client.ListOption) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started++
	r.cond.Broadcast()
	deadline := time.Now().Add(2 * time.Second)
	for r.started < r.kinds && time.Now().Before(deadline) {
		go func() { time.Sleep(50 * time.Millisecond); r.cond.Broadcast() }()
		r.cond.Wait()
	}
	if r.started < r.kinds {
		r.serial = true
	}
	return nil
}

// With a REST mapper, one kind of each group version is looked up first (so that a
// mapper that misses reads each discovery document once), and then every kind is
// listed at once: one round trip, and one wait for an API server that answers a kind's
// first List with "retry after 1 s", not one per wave.
func TestSnapshotMapsEachGroupVersionThenListsAllAtOnce(t *testing.T) {
	var kinds []schema.GroupVersionKind
	for _, gv := range []schema.GroupVersion{{Group: "networking.istio.io", Version: "v1"}, {Group: "security.istio.io", Version: "v1"}} {
		for _, k := range []string{"A", "B", "C", "D"} {
			kinds = append(kinds, gv.WithKind(k))
		}
	}
	r := &mappedReader{kinds: len(kinds)}
	r.cond = sync.NewCond(&r.mu)
	if _, err := TakeSnapshot(context.Background(), r, r, kinds); err != nil {
		t.Fatal(err)
	}
	slices.Sort(r.mapped)
	if want := []string{"networking.istio.io/v1", "security.istio.io/v1"}; !slices.Equal(r.mapped, want) {
		t.Errorf("mappings looked up: %v, want one per group version %v", r.mapped, want)
	}
	if r.serial {
		t.Errorf("the Lists did not all go at once after the lookups")
	}
}
