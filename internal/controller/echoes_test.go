package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
)

// TestEchoesOfOwnWritesWakeNoPass: the create and update events that bring an object as
// the operator's apply left it queue nothing; someone's edit and any deletion queue the
// cluster.
func TestEchoesOfOwnWritesWakeNoPass(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme).WithReturnManagedFields().Build()
	r := &ClusterReconciler{Applier: apply.New()}
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

	h := r.sameClusterUnlessEcho(gvk)("cluster-1", nil)
	queued := func(send func(workqueue.TypedRateLimitingInterface[mcreconcile.Request])) int {
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[mcreconcile.Request]())
		defer q.ShutDown()
		send(q)
		return q.Len()
	}
	for _, tc := range []struct {
		name string
		send func(workqueue.TypedRateLimitingInterface[mcreconcile.Request])
		want int
	}{
		{"the create of the operator's write", func(q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			h.Create(ctx, event.TypedCreateEvent[client.Object]{Object: written}, q)
		}, 0},
		{"an update to the operator's write", func(q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			h.Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: edited, ObjectNew: written}, q)
		}, 0},
		{"someone's edit", func(q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			h.Update(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: written, ObjectNew: edited}, q)
		}, 1},
		{"the deletion of the operator's write", func(q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			h.Delete(ctx, event.TypedDeleteEvent[client.Object]{Object: written}, q)
		}, 1},
	} {
		if got := queued(tc.send); got != tc.want {
			t.Errorf("%s: %d requests queued, want %d", tc.name, got, tc.want)
		}
	}
	// The same object in another cluster is not this cluster's write.
	other := r.sameClusterUnlessEcho(gvk)("cluster-2", nil)
	if got := queued(func(q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
		other.Create(ctx, event.TypedCreateEvent[client.Object]{Object: written}, q)
	}); got != 1 {
		t.Errorf("another cluster's create: %d requests queued, want 1", got)
	}
}
