package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
)

// TestEchoesOfOwnWritesWakeNothing: the create and update events that bring an object
// as the operator's apply left it ask for nothing; someone's edit and any deletion ask
// for a repair of that object.
func TestEchoesOfOwnWritesWakeNothing(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme).WithReturnManagedFields().Build()
	r := &ClusterReconciler{Applier: apply.New(), watches: newKindWatches(nil)}
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio"}, Data: map[string]string{"mesh": "{}"}}
	cm.SetGroupVersionKind(gvk)
	if _, err := r.Applier.Apply(ctx, "cluster-1", c, nil, c, ownership("cluster-1"), []client.Object{cm}); err != nil {
		t.Fatal(err)
	}
	written := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cm), written); err != nil {
		t.Fatal(err)
	}
	edited := written.DeepCopy()
	edited.Data["mesh"] = "edited"
	if err := c.Update(ctx, edited); err != nil {
		t.Fatal(err)
	}

	h := r.ownedObjectEvents(gvk)("cluster-1", nil)
	noted := func(send func()) int {
		r.repairs = newRepairs(r.watches.send)
		send()
		dirty, _ := r.repairs.take("cluster-1")
		return len(dirty)
	}
	for _, tc := range []struct {
		name string
		send func()
		want int
	}{
		{"the create of the operator's write", func() { h.Create(ctx, event.TypedCreateEvent[client.Object]{Object: written}, nil) }, 0},
		{"an update to the operator's write", func() {
			h.Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: edited, ObjectNew: written}, nil)
		}, 0},
		{"someone's edit", func() {
			h.Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: written, ObjectNew: edited}, nil)
		}, 1},
		{"the deletion of the operator's write", func() { h.Delete(ctx, event.TypedDeleteEvent[client.Object]{Object: written}, nil) }, 1},
	} {
		if got := noted(tc.send); got != tc.want {
			t.Errorf("%s: %d objects to repair, want %d", tc.name, got, tc.want)
		}
	}
	// The same object in another cluster is not this cluster's write.
	other := r.ownedObjectEvents(gvk)("cluster-2", nil)
	r.repairs = newRepairs(r.watches.send)
	other.Create(ctx, event.TypedCreateEvent[client.Object]{Object: written}, nil)
	if dirty, _ := r.repairs.take("cluster-2"); len(dirty) != 1 {
		t.Errorf("another cluster's create: %d objects to repair, want 1", len(dirty))
	}

	// An echo that came before the write's answer is told by the repair.
	key := objectKey{gvk, written.Namespace, written.Name}
	dirty := map[objectKey]string{key: written.ResourceVersion}
	r.dropEchoes("cluster-1", dirty)
	if len(dirty) != 0 {
		t.Errorf("the echo of the operator's write is still to repair: %v", dirty)
	}
	for _, rv := range []string{edited.ResourceVersion, ""} {
		dirty := map[objectKey]string{key: rv}
		r.dropEchoes("cluster-1", dirty)
		if len(dirty) != 1 {
			t.Errorf("a change to resourceVersion %q (an edit; \"\" a deletion) was dropped as an echo", rv)
		}
	}
}
