package apply

import (
	"context"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The deletion budget of one cluster: at most DeleteBurst deletions at once, refilled at
// DeletesPerMinute. A mass deletion in the mesh cluster (a CRD re-installed, a namespace
// emptied by mistake) then reaches a cluster over minutes, not in one pass, and what
// comes back in the meantime is never deleted.
const (
	DeleteBurst      = 100
	DeletesPerMinute = 100
)

// Stale returns the operator's objects of kinds in the snapshot that keep does not name,
// sorted by kind, namespace and name; objects already being deleted are left out.
func Stale(live *Snapshot, own Ownership, kinds []schema.GroupVersionKind, keep []client.Object) []*metav1.PartialObjectMetadata {
	wanted := map[string]bool{}
	for _, o := range keep {
		wanted[memoryKey("", o.GetObjectKind().GroupVersionKind(), o.GetNamespace(), o.GetName())] = true
	}
	var out []*metav1.PartialObjectMetadata
	for _, gvk := range kinds {
		for _, item := range live.kinds[gvk] {
			if wanted[memoryKey("", gvk, item.Namespace, item.Name)] || !own.owns(item) || item.DeletionTimestamp != nil {
				continue
			}
			out = append(out, item)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// DeleteResult is what one DeleteEach did.
type DeleteResult struct {
	Deleted int
	// HeldBack deletions exceeded the cluster's budget; a later pass makes them.
	HeldBack int
	Failed   []*ObjectError
	// NotSent deletions were left when the context ended.
	NotSent int
}

// DeleteEach deletes objs, workers at a time, each on its own, as far as the cluster's
// deletion budget goes (see DeleteBurst). A deletion is conditional on the UID it was
// listed with, so an object re-created meanwhile stays.
func (a *Applier) DeleteEach(ctx context.Context, cluster string, writer client.Client, objs []*metav1.PartialObjectMetadata, workers int) DeleteResult {
	budget := a.deleteBudget(cluster)
	n := 0
	for n < len(objs) && budget.TryAccept() {
		n++
	}
	res := DeleteResult{HeldBack: len(objs) - n}
	errs := make([]error, n)
	sent := make([]bool, n)
	workqueue.ParallelizeUntil(ctx, workers, n, func(i int) {
		item := objs[i]
		sent[i] = true
		err := writer.Delete(ctx, item, client.Preconditions{UID: &item.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			errs[i] = err
			return
		}
		a.mu.Lock()
		delete(a.last, memoryKey(cluster, item.GroupVersionKind(), item.Namespace, item.Name))
		a.mu.Unlock()
	})
	for i := range n {
		item := objs[i]
		switch {
		case !sent[i]:
			res.NotSent++
		case errs[i] != nil:
			res.Failed = append(res.Failed, &ObjectError{Kind: item.Kind, Namespace: item.Namespace, Name: item.Name, Err: errs[i]})
		default:
			res.Deleted++
		}
	}
	return res
}

func (a *Applier) deleteBudget(cluster string) flowcontrol.PassiveRateLimiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.budgets == nil {
		a.budgets = map[string]flowcontrol.PassiveRateLimiter{}
	}
	b := a.budgets[cluster]
	if b == nil {
		c := a.clock
		if c == nil {
			c = clock.RealClock{}
		}
		b = flowcontrol.NewTokenBucketPassiveRateLimiterWithClock(DeletesPerMinute/60.0, DeleteBurst, c)
		a.budgets[cluster] = b
	}
	return b
}
