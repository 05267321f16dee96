package controller

import (
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"
)

func TestFanOutLeavesBackingOffClustersToTheirRetry(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[mcreconcile.Request](time.Hour, time.Hour))
	defer q.ShutDown()
	healthy, hung := requestFor("healthy"), requestFor("hung")
	q.AddRateLimited(hung) // its last reconcile failed: it waits an hour
	for range 10 {
		enqueueFanOut(q, healthy)
		enqueueFanOut(q, hung)
	}
	if q.Len() != 0 {
		t.Fatalf("a fan-out is coalesced for %s first, queue has %d", fanOutDelay, q.Len())
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if q.Len() != 1 {
		t.Fatalf("ten changes must give one reconcile of the healthy cluster and none of the hung one, queue has %d", q.Len())
	}
	if got, _ := q.Get(); got != healthy {
		t.Fatalf("queued %v", got)
	}
}
