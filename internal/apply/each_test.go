package apply

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

var testOwnership = Ownership{Labels: map[string]string{"managed-by": "us", "cluster": "c2"}, ManagedByKey: "managed-by", ManagedByValue: "us"}

// countingCluster is a fake cluster that counts writes and refuses to apply the objects
// named in refuse, as an admission policy would.
type countingCluster struct {
	client.WithWatch
	applies, deletes atomic.Int32
}

func newCountingCluster(t *testing.T, refuse map[string]bool, objs ...client.Object) *countingCluster {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := &countingCluster{}
	c.WithWatch = fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithReturnManagedFields().WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(ctx context.Context, cl client.WithWatch, obj runtime.ApplyConfiguration, o ...client.ApplyOption) error {
			c.applies.Add(1)
			name := obj.(interface{ GetName() string }).GetName()
			if refuse[name] {
				return apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, name, field.ErrorList{field.Forbidden(field.NewPath("metadata", "name"), "refused by policy")})
			}
			return cl.Apply(ctx, obj, o...)
		},
		Delete: func(ctx context.Context, cl client.WithWatch, obj client.Object, o ...client.DeleteOption) error {
			c.deletes.Add(1)
			return cl.Delete(ctx, obj, o...)
		},
	}).Build()
	return c
}

func copyNamed(name, value string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: testOwnership.Labels},
		Data: map[string]string{"value": value}}
	cm.SetGroupVersionKind(configMapGVK)
	return cm
}

func copiesNamed(n int) []client.Object {
	var out []client.Object
	for i := range n {
		out = append(out, copyNamed(fmt.Sprintf("copy-%d", i), "v1"))
	}
	return out
}

func plan(t *testing.T, a *Applier, c client.Reader, objs []client.Object) *Plan {
	t.Helper()
	live, err := TakeSnapshot(context.Background(), c, nil, []schema.GroupVersionKind{configMapGVK})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.PlanEach("c2", live, testOwnership, objs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestApplyEachFailsPerObject: a copy the cluster refuses and a copy whose name a
// foreign object holds are reported each on its own; every other copy is written.
func TestApplyEachFailsPerObject(t *testing.T) {
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "copy-3", Labels: map[string]string{"managed-by": "Helm"}}}
	c := newCountingCluster(t, map[string]bool{"copy-1": true}, foreign)
	a := New()
	p := plan(t, a, c, copiesNamed(6))
	if len(p.NotOwned) != 1 || p.NotOwned[0].Name != "copy-3" {
		t.Fatalf("not owned: %v, want copy-3", p.NotOwned)
	}
	res := a.ApplyEach(context.Background(), c, p, 4)
	if res.Created != 4 || len(res.Failed) != 1 || res.Failed[0].Name != "copy-1" || !Refused(res.Failed[0].Err) {
		t.Fatalf("created %d, failed %v; want 4 created and copy-1 refused", res.Created, res.Failed)
	}
	if c.applies.Load() != 5 {
		t.Errorf("%d applies, want 5: each copy but the foreign one's, the refused one included", c.applies.Load())
	}
	got := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(foreign), got); err != nil || got.Labels["managed-by"] != "Helm" || got.Data != nil {
		t.Errorf("the foreign object changed: %v %v", got, err)
	}
	for _, name := range []string{"copy-0", "copy-2", "copy-4", "copy-5"} {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &corev1.ConfigMap{}); err != nil {
			t.Errorf("%s was not written: %v", name, err)
		}
	}
}

// TestApplyEachStopsAtTheDeadline: what was not sent when the context ended is counted,
// not lost, and not reported as a failure of the cluster.
func TestApplyEachStopsAtTheDeadline(t *testing.T) {
	c := newCountingCluster(t, nil)
	a := New()
	p := plan(t, a, c, copiesNamed(5))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := a.ApplyEach(ctx, c, p, 2)
	if res.NotSent != 5 || c.applies.Load() != 0 {
		t.Fatalf("after the deadline: %+v, %d applies; want 5 not sent and none sent", res, c.applies.Load())
	}
}

// TestFreshApplierWritesNothingForUnchangedCopies: the hash annotation lets an applier
// that remembers nothing (an operator just restarted) see from a metadata-only List
// which copies are right, and still rewrite those changed since.
func TestFreshApplierWritesNothingForUnchangedCopies(t *testing.T) {
	c := newCountingCluster(t, nil)
	ctx := context.Background()
	if res := New().ApplyEach(ctx, c, plan(t, New(), c, copiesNamed(20)), 4); res.Created != 20 {
		t.Fatalf("first pass: %+v", res)
	}
	got := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "copy-0"}, got); err != nil || got.Annotations[HashAnnotation] == "" {
		t.Fatalf("copy-0 has no %s: %v %v", HashAnnotation, got.Annotations, err)
	}
	c.applies.Store(0)

	restarted := New()
	p := plan(t, restarted, c, copiesNamed(20))
	if p.Writes() != 0 || p.Unchanged != 20 {
		t.Fatalf("a fresh applier plans %d writes (%d unchanged), want 0 (20)", p.Writes(), p.Unchanged)
	}
	restarted.ApplyEach(ctx, c, p, 4)
	if c.applies.Load() != 0 {
		t.Fatalf("a fresh applier sent %d writes for unchanged copies", c.applies.Load())
	}

	// Someone edits one copy in the cluster, another loses its annotation, and the
	// mesh changes a third: exactly those three are written, by the applier that
	// remembers them and by one that does not.
	edit := func(name string, change func(*corev1.ConfigMap)) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, cm); err != nil {
			t.Fatal(err)
		}
		change(cm)
		if err := c.Update(ctx, cm, client.FieldOwner("kubectl-edit")); err != nil {
			t.Fatal(err)
		}
	}
	edit("copy-1", func(cm *corev1.ConfigMap) { cm.Data["value"] = "edited" })
	edit("copy-2", func(cm *corev1.ConfigMap) { delete(cm.Annotations, HashAnnotation) })
	want := copiesNamed(20)
	want[3] = copyNamed("copy-3", "v2")
	for name, a := range map[string]*Applier{"remembering": restarted, "fresh": New()} {
		if p := plan(t, a, c, want); p.Writes() != 3 {
			t.Errorf("%s applier: %d writes planned, want 3", name, p.Writes())
		}
	}
	restarted.ApplyEach(ctx, c, plan(t, restarted, c, want), 4)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "copy-1"}, got); err != nil || got.Data["value"] != "v1" {
		t.Errorf("the edited copy was not restored: %v %v", got.Data, err)
	}
	if p := plan(t, New(), c, want); p.Writes() != 0 {
		t.Errorf("after restoring, a fresh applier still plans %d writes", p.Writes())
	}
}

// TestDeleteEachKeepsToTheBudget: a mass deletion is held back beyond the budget and
// carried out as it refills; only the operator's objects that are not kept go.
func TestDeleteEachKeepsToTheBudget(t *testing.T) {
	var objs []client.Object
	for i := range DeleteBurst + 50 {
		objs = append(objs, copyNamed(fmt.Sprintf("gone-%03d", i), "v1"))
	}
	kept := copyNamed("kept", "v1")
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "foreign"}}
	c := newCountingCluster(t, nil, append(objs, kept, foreign)...)
	a := New()
	now := testingclock.NewFakeClock(time.Now())
	a.clock = now
	stale := func() []*metav1.PartialObjectMetadata {
		live, err := TakeSnapshot(context.Background(), c, nil, []schema.GroupVersionKind{configMapGVK})
		if err != nil {
			t.Fatal(err)
		}
		return Stale(live, testOwnership, []schema.GroupVersionKind{configMapGVK}, []client.Object{kept})
	}
	if s := stale(); len(s) != DeleteBurst+50 || s[0].Name != "gone-000" {
		t.Fatalf("stale: %d objects, first %s", len(s), s[0].Name)
	}
	res := a.DeleteEach(context.Background(), "c2", c, stale(), 8)
	if res.Deleted != DeleteBurst || res.HeldBack != 50 || int(c.deletes.Load()) != DeleteBurst {
		t.Fatalf("first pass: %+v after %d deletes; want %d deleted and 50 held back", res, c.deletes.Load(), DeleteBurst)
	}
	if res := a.DeleteEach(context.Background(), "c2", c, stale(), 8); res.Deleted != 0 || res.HeldBack != 50 {
		t.Fatalf("at once again: %+v, want all 50 held back", res)
	}
	now.Step(31 * time.Second) // a little over half a minute refills half the budget
	if res := a.DeleteEach(context.Background(), "c2", c, stale(), 8); res.Deleted != DeletesPerMinute/2 || res.HeldBack != 0 {
		t.Fatalf("half a minute later: %+v, want the last 50 deleted", res)
	}
	for _, o := range []client.Object{kept, foreign} {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), &corev1.ConfigMap{}); err != nil {
			t.Errorf("%s was deleted: %v", o.GetName(), err)
		}
	}
}
