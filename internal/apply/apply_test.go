package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestApplyNeverTakesOverForeignObjects: the reader is a cache that holds only the
// operator's objects, so it cannot see the remote profile's Service istiod; Apply must
// find it in the live cluster, refuse, and write nothing at all.
func TestApplyNeverTakesOverForeignObjects(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	own := Ownership{Labels: map[string]string{"managed-by": "us", "cluster": "c2"}, ManagedByKey: "managed-by", ManagedByValue: "us"}
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod",
		Labels: map[string]string{"managed-by": "Helm"}}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"}}
	var lists, writes atomic.Int32
	live := fake.NewClientBuilder().WithScheme(scheme).WithObjects(foreign).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, l, o...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, o ...client.ApplyOption) error {
			writes.Add(1)
			return c.Apply(ctx, obj, o...)
		},
	}).Build()
	cache := fake.NewClientBuilder().WithScheme(scheme).Build() // sees nothing foreign

	rendered := func(name string) client.Object {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name, Labels: own.Labels},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod"}, Ports: []corev1.ServicePort{{Name: "grpc", Port: 15012}}}}
		svc.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
		return svc
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio", Labels: own.Labels}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))

	_, err := New().Apply(context.Background(), "c2", cache, live, live, own, []client.Object{cm, rendered("istiod")})
	var notOwned *NotOwnedError
	if !errors.As(err, &notOwned) || notOwned.Name != "istiod" || notOwned.Kind != "Service" {
		t.Fatalf("Apply over a foreign Service: err = %v, want NotOwnedError for Service istiod", err)
	}
	if writes.Load() != 0 {
		t.Fatalf("Apply wrote %d objects although one of them was foreign", writes.Load())
	}
	got := &corev1.Service{}
	if err := live.Get(context.Background(), client.ObjectKeyFromObject(foreign), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Type != corev1.ServiceTypeExternalName || got.Labels["managed-by"] != "Helm" {
		t.Fatalf("the foreign Service changed: %+v", got)
	}
	if lists.Load() != 2 {
		t.Fatalf("confirming absence took %d Lists, want one per kind (2)", lists.Load())
	}

	// Without the foreign object in the way, the same objects are created.
	lists.Store(0)
	res, err := New().Apply(context.Background(), "c2", cache, live, live, own, []client.Object{cm, rendered("istiod-local")})
	if err != nil {
		t.Fatalf("Apply of objects nobody has: %v", err)
	}
	if res.Created != 2 {
		t.Fatalf("created %d objects, want 2", res.Created)
	}
}

// TestFreshApplierResendsNothingToIstiod: Apply, istiod's way (a reader and dry runs),
// recognises objects it applied before a restart from their hash annotation, and still
// restores one that someone changed since.
func TestFreshApplierResendsNothingToIstiod(t *testing.T) {
	c := newCountingCluster(t, nil)
	ctx := context.Background()
	objs := func() []client.Object { return copiesNamed(5) }
	if res, err := New().Apply(ctx, "c2", c, nil, c, testOwnership, objs()); err != nil || res.Created != 5 {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	c.applies.Store(0)
	restarted := New()
	res, err := restarted.Apply(ctx, "c2", c, nil, c, testOwnership, objs())
	if err != nil || res.Unchanged != 5 || c.applies.Load() != 0 {
		t.Fatalf("a fresh applier: %+v, %v, %d applies (dry runs included); want all 5 unchanged and none sent", res, err, c.applies.Load())
	}

	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "copy-1"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["value"] = "edited"
	if err := c.Update(ctx, cm, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	if res, err := New().Apply(ctx, "c2", c, nil, c, testOwnership, objs()); err != nil || res.Applied != 1 || res.Unchanged != 4 {
		t.Fatalf("after an edit, a fresh applier: %+v, %v; want the edited object alone applied", res, err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "copy-1"}, cm); err != nil || cm.Data["value"] != "v1" {
		t.Fatalf("the edited object was not restored: %v %v", cm.Data, err)
	}
}

// TestMetadataOthersAddIsNotDrift: the Deployment controller annotates each rollout
// (deployment.kubernetes.io/revision) without changing the generation; that is not a
// reason to apply again, while a new generation or a lost label of the operator's is.
func TestMetadataOthersAddIsNotDrift(t *testing.T) {
	a := New()
	want := copyNamed("istiod", "v1")
	u, hash, err := hashedCopy(want)
	if err != nil {
		t.Fatal(err)
	}
	live := func(generation int64, edit func(*metav1.PartialObjectMetadata)) *metav1.PartialObjectMetadata {
		m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Generation: generation,
			Labels: map[string]string{}, Annotations: map[string]string{}}}
		for k, v := range u.GetLabels() {
			m.Labels[k] = v
		}
		for k, v := range u.GetAnnotations() {
			m.Annotations[k] = v
		}
		if edit != nil {
			edit(m)
		}
		return m
	}
	a.remember("k", known(hash, live(3, nil)))
	revised := func(m *metav1.PartialObjectMetadata) { m.Annotations["deployment.kubernetes.io/revision"] = "2" }
	if !a.upToDate("k", hash, u, live(3, revised)) {
		t.Error("an annotation the Deployment controller added counts as drift")
	}
	if a.upToDate("k", hash, u, live(4, revised)) {
		t.Error("a new generation (someone changed the spec) is not drift")
	}
	if a.upToDate("k", hash, u, live(3, func(m *metav1.PartialObjectMetadata) { delete(m.Labels, "cluster") })) {
		t.Error("a label of the operator's that was removed is not drift")
	}
}

// TestApplyOverlapsRoundTrips: to a far cluster each request is a round trip, so Apply
// sends its dry runs side by side, and its writes side by side within a kind, while a
// kind is written only once the kind before it is (as Helm installs).
func TestApplyOverlapsRoundTrips(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var inFlight atomic.Int32
	var mu sync.Mutex
	var maxDryRuns, maxWrites int32
	var events []string // "start Kind" and "end Kind" of each write, in order
	raise := func(peak *int32, n int32) {
		mu.Lock()
		defer mu.Unlock()
		*peak = max(*peak, n)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithReturnManagedFields().WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(ctx context.Context, cl client.WithWatch, obj runtime.ApplyConfiguration, o ...client.ApplyOption) error {
			opts := &client.ApplyOptions{}
			opts.ApplyOptions(o)
			kind := obj.(interface{ GetKind() string }).GetKind()
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			if len(opts.DryRun) > 0 {
				raise(&maxDryRuns, n)
			} else {
				raise(&maxWrites, n)
				mu.Lock()
				events = append(events, "start "+kind)
				mu.Unlock()
				defer func() { mu.Lock(); events = append(events, "end "+kind); mu.Unlock() }()
			}
			time.Sleep(30 * time.Millisecond) // a round trip
			return cl.Apply(ctx, obj, o...)
		},
	}).Build()
	objs := copiesNamed(4)
	for i := range 4 {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("svc-%d", i), Labels: testOwnership.Labels},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		svc.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
		objs = append(objs, svc)
	}
	for i := range 2 {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("d-%d", i), Labels: testOwnership.Labels}}
		d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
		objs = append(objs, d)
	}
	res, err := New().Apply(context.Background(), "c2", c, c, c, testOwnership, objs)
	if err != nil || res.Created != 10 {
		t.Fatalf("Apply: %+v, %v", res, err)
	}
	if maxDryRuns < 10 {
		t.Errorf("at most %d dry runs in flight, want all 10 side by side", maxDryRuns)
	}
	if maxWrites < 8 {
		t.Errorf("at most %d writes in flight, want the ConfigMaps and Services (one stage) side by side", maxWrites)
	}
	lastConfigEnd, firstDeploymentStart := -1, len(events)
	for i, e := range events {
		if e == "end ConfigMap" || e == "end Service" {
			lastConfigEnd = i
		}
		if e == "start Deployment" && i < firstDeploymentStart {
			firstDeploymentStart = i
		}
	}
	if firstDeploymentStart < lastConfigEnd {
		t.Errorf("a Deployment was written before its configuration was: %v", events)
	}
}

// Removing a far cluster's copies deletes the objects of a kind side by side, and a
// kind only once the one before it is gone (copies before their definitions).
func TestPruneDeletesSideBySideKindAfterKind(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var objs []client.Object
	for i := range 6 {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("cm-%d", i), Labels: testOwnership.Labels}})
	}
	for i := range 2 {
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("s-%d", i), Labels: testOwnership.Labels}})
	}
	var inFlight atomic.Int32
	var mu sync.Mutex
	var peak int32
	var events []string
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Delete: func(ctx context.Context, cl client.WithWatch, obj client.Object, o ...client.DeleteOption) error {
			kind := obj.GetObjectKind().GroupVersionKind().Kind
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			mu.Lock()
			peak = max(peak, n)
			events = append(events, "start "+kind)
			mu.Unlock()
			defer func() { mu.Lock(); events = append(events, "end "+kind); mu.Unlock() }()
			time.Sleep(20 * time.Millisecond) // a round trip
			return cl.Delete(ctx, obj, o...)
		},
	}).Build()
	kinds := []schema.GroupVersionKind{corev1.SchemeGroupVersion.WithKind("ConfigMap"), corev1.SchemeGroupVersion.WithKind("Secret")}
	res, err := New().Prune(context.Background(), "c2", c, c, testOwnership, kinds, nil)
	if err != nil || res.Deleted != 8 {
		t.Fatalf("Prune: %+v, %v", res, err)
	}
	if peak < 6 {
		t.Errorf("at most %d deletions in flight, want the 6 ConfigMaps side by side", peak)
	}
	lastConfigMapEnd, firstSecretStart := -1, len(events)
	for i, e := range events {
		if e == "end ConfigMap" {
			lastConfigMapEnd = i
		}
		if e == "start Secret" && i < firstSecretStart {
			firstSecretStart = i
		}
	}
	if firstSecretStart < lastConfigMapEnd {
		t.Errorf("a Secret was deleted before every ConfigMap was: %v", events)
	}
}

// TestAsAppliedKnowsItsOwnWrites: an object at the resourceVersion the applier's write
// got back is the echo of that write; after someone else's edit, or for an object the
// applier never wrote, it is not.
func TestAsAppliedKnowsItsOwnWrites(t *testing.T) {
	c := newCountingCluster(t, nil)
	ctx := context.Background()
	a := New()
	if _, err := a.Apply(ctx, "c2", c, nil, c, testOwnership, copiesNamed(1)); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "copy-0"}, cm); err != nil {
		t.Fatal(err)
	}
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	if !a.AsApplied("c2", gvk, cm) {
		t.Errorf("the object as the applier wrote it (resourceVersion %s) is not its own write", cm.ResourceVersion)
	}
	if a.AsApplied("c3", gvk, cm) || New().AsApplied("c2", gvk, cm) {
		t.Error("an object another cluster's or another applier's")
	}
	if same, err := a.LastApplied("c2", copiesNamed(1)[0]); err != nil || !same {
		t.Errorf("the content the applier wrote is not its last applied: %v", err)
	}
	if same, _ := a.LastApplied("c2", copyNamed("copy-0", "v2")); same {
		t.Error("other content counts as the applier's last applied")
	}
	cm.Data["value"] = "edited"
	if err := c.Update(ctx, cm, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	if a.AsApplied("c2", gvk, cm) {
		t.Errorf("an object someone edited (resourceVersion %s) counts as the applier's own write", cm.ResourceVersion)
	}
}
