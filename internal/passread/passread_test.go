package passread

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
)

// farCluster is a cluster whose API reader counts its reads and takes a round trip
// for each.
type farCluster struct {
	cluster.Cluster
	c        client.Client
	reads    atomic.Int32
	inFlight atomic.Int32
	mu       sync.Mutex
	peak     int32
	fail     atomic.Int32 // reads left to fail with a server error
}

func (f *farCluster) GetAPIReader() client.Reader { return f.c }
func (f *farCluster) GetClient() client.Client    { return f.c }

func newFarCluster(t *testing.T, objs ...client.Object) *farCluster {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &farCluster{}
	trip := func() error {
		f.reads.Add(1)
		n := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		f.mu.Lock()
		f.peak = max(f.peak, n)
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		if f.fail.Add(-1) >= 0 {
			return apierrors.NewInternalError(context.DeadlineExceeded)
		}
		return nil
	}
	f.c = fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, o ...client.GetOption) error {
			if err := trip(); err != nil {
				return err
			}
			return c.Get(ctx, k, obj, o...)
		},
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
			if err := trip(); err != nil {
				return err
			}
			return c.List(ctx, l, o...)
		},
	}).Build()
	return f
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"a": "b"}}}
}

func configMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name}, Data: map[string]string{"k": name}}
}

func TestSharesReadsWithinAPass(t *testing.T) {
	ctx := context.Background()
	far := newFarCluster(t, namespace("istio-system"), configMap("a"))
	v := Begin(ctx, far, nil)
	defer v.End()
	for range 3 {
		ns := &corev1.Namespace{}
		if err := v.GetAPIReader().Get(ctx, types.NamespacedName{Name: "istio-system"}, ns); err != nil || ns.Labels["a"] != "b" {
			t.Fatalf("namespace: %v %v", ns.Labels, err)
		}
		ns.Labels["a"] = "changed by the caller" // a caller's copy is its own
		list := &corev1.ConfigMapList{}
		if err := v.GetAPIReader().List(ctx, list, client.InNamespace("istio-system")); err != nil || len(list.Items) != 1 {
			t.Fatalf("list: %d %v", len(list.Items), err)
		}
	}
	if n := far.reads.Load(); n != 2 {
		t.Errorf("%d live reads for one Get and one List made three times each, want 2", n)
	}
	// Another kind or options are other reads.
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := v.GetAPIReader().Get(ctx, types.NamespacedName{Name: "istio-system"}, meta); err != nil {
		t.Fatal(err)
	}
	if err := v.GetAPIReader().List(ctx, &corev1.ConfigMapList{}, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	if n := far.reads.Load(); n != 4 {
		t.Errorf("%d live reads, want 4: the metadata of the namespace and another namespace's list are reads of their own", n)
	}
}

func TestAWriteMakesThePassReadAgain(t *testing.T) {
	ctx := context.Background()
	far := newFarCluster(t, configMap("a"))
	v := Begin(ctx, far, nil)
	get := func() *corev1.ConfigMap {
		cm := &corev1.ConfigMap{}
		if err := v.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: "istio-system", Name: "a"}, cm); err != nil {
			t.Fatal(err)
		}
		return cm
	}
	get()
	cm := configMap("a")
	cm.Data["k"] = "new"
	if err := v.GetClient().Patch(ctx, cm, client.MergeFrom(configMap("a")), client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	get()
	if n := far.reads.Load(); n != 1 {
		t.Errorf("%d live reads after a dry run, want 1: a dry run changes nothing", n)
	}
	if err := v.GetClient().Patch(ctx, cm, client.MergeFrom(configMap("a"))); err != nil {
		t.Fatal(err)
	}
	if got := get(); got.Data["k"] != "new" || far.reads.Load() != 2 {
		t.Errorf("after a write: data %v after %d live reads, want the written data read again", got.Data, far.reads.Load())
	}
	// What was read after the first write is not handed to the next pass.
	if reads := v.End(); len(reads) != 1 {
		t.Errorf("%d reads learned, want the one made before the write", len(reads))
	}
}

func TestTheNextPassReadsSideBySideFirst(t *testing.T) {
	ctx := context.Background()
	far := newFarCluster(t, namespace("istio-system"), configMap("a"), configMap("b"))
	readAll := func(v *View) {
		t.Helper()
		for _, name := range []string{"a", "b"} {
			cm := &corev1.ConfigMap{}
			if err := v.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: "istio-system", Name: name}, cm); err != nil || cm.Data["k"] != name {
				t.Fatalf("%s: %v %v", name, cm.Data, err)
			}
		}
		err := v.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: "istio-system", Name: "absent"}, &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("absent: %v, want NotFound", err)
		}
		if err := v.GetAPIReader().Get(ctx, types.NamespacedName{Name: "istio-system"}, &corev1.Namespace{}); err != nil {
			t.Fatal(err)
		}
	}
	first := Begin(ctx, far, nil)
	readAll(first)
	learned := first.End()
	if far.peak != 1 || len(learned) != 4 {
		t.Fatalf("first pass: peak %d in flight, %d reads learned; want 1 and 4", far.peak, len(learned))
	}
	far.reads.Store(0)
	next := Begin(ctx, far, learned)
	defer next.End()
	readAll(next)
	if n := far.reads.Load(); n != 4 {
		t.Errorf("%d live reads in the next pass, want its 4, each once", n)
	}
	if far.peak < 4 {
		t.Errorf("at most %d reads in flight in the next pass, want its 4 side by side", far.peak)
	}
}

func TestFailedReadsAreNotShared(t *testing.T) {
	ctx := context.Background()
	far := newFarCluster(t, configMap("a"))
	v := Begin(ctx, far, nil)
	defer v.End()
	far.fail.Store(1)
	key := types.NamespacedName{Namespace: "istio-system", Name: "a"}
	if err := v.GetAPIReader().Get(ctx, key, &corev1.ConfigMap{}); !apierrors.IsInternalError(err) {
		t.Fatalf("first read: %v, want the server's error", err)
	}
	if err := v.GetAPIReader().Get(ctx, key, &corev1.ConfigMap{}); err != nil {
		t.Errorf("second read: %v, want it read again and found", err)
	}
}

func TestAPrefetchThatFailsIsReadAgain(t *testing.T) {
	ctx := context.Background()
	far := newFarCluster(t, configMap("a"))
	first := Begin(ctx, far, nil)
	if err := first.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: "istio-system", Name: "a"}, &corev1.ConfigMap{}); err != nil {
		t.Fatal(err)
	}
	learned := first.End()
	far.fail.Store(1) // the prefetch fails
	next := Begin(ctx, far, learned)
	defer next.End()
	cm := &corev1.ConfigMap{}
	if err := next.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: "istio-system", Name: "a"}, cm); err != nil || cm.Data["k"] != "a" {
		t.Errorf("after a failed prefetch: %v %v, want the object read again", cm.Data, err)
	}
}
