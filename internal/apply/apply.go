// Package apply writes rendered objects into a cluster with server-side apply under one
// field manager, skips requests it knows would change nothing, and prunes what the
// operator owns but no longer renders.
package apply

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldOwner is the one field manager the operator applies with.
const FieldOwner = "remote-istiod-operator"

// NotOwnedError says an object of the same name exists and the operator did not create
// it: the operator never takes over or deletes what it did not create.
type NotOwnedError struct{ Kind, Namespace, Name string }

func (e *NotOwnedError) Error() string {
	where := e.Name
	if e.Namespace != "" {
		where = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("%s %s already exists and was not created by the operator; remove it or switch the cluster off", e.Kind, where)
}

// Ownership decides which objects are the operator's in one cluster.
type Ownership struct {
	// Labels every owned object carries; pruning deletes only objects that have all.
	Labels map[string]string
	// ManagedByKey/Value mark objects any instance of the operator created.
	ManagedByKey, ManagedByValue string
}

func (o Ownership) owns(obj metav1.Object) bool {
	for k, v := range o.Labels {
		if obj.GetLabels()[k] != v {
			return false
		}
	}
	return true
}

// applied is what the applier knows of an object it last wrote or found as it wants it:
// the content's hash, the liveVersion and the resourceVersion it had then.
type applied struct{ hash, version, resourceVersion string }

// known is the applied record of an object as the API server returned or listed it.
func known(hash string, obj metav1.Object) applied {
	return applied{hash, liveVersion(obj), obj.GetResourceVersion()}
}

// pending is an object Apply is about to write; create when reader did not have it.
type pending struct {
	key, hash string
	obj       *unstructured.Unstructured
	create    bool
}

// confirmAbsent reads live for the objects about to be created: one metadata-only
// List per kind (in the one namespace they share, if they do). A foreign object of the
// same name stops the apply before anything is written; one of the operator's that
// the cache had not seen yet is simply applied again.
func confirmAbsent(ctx context.Context, live client.Reader, own Ownership, todo []pending) error {
	if live == nil {
		return nil
	}
	byKind := map[schema.GroupVersionKind][]*unstructured.Unstructured{}
	var kinds []schema.GroupVersionKind
	for _, p := range todo {
		if !p.create {
			continue
		}
		gvk := p.obj.GroupVersionKind()
		if _, seen := byKind[gvk]; !seen {
			kinds = append(kinds, gvk)
		}
		byKind[gvk] = append(byKind[gvk], p.obj)
	}
	errs := make([]error, len(kinds))
	workqueue.ParallelizeUntil(ctx, applyWorkers, len(kinds), func(i int) {
		errs[i] = confirmKindAbsent(ctx, live, own, kinds[i], byKind[kinds[i]])
	})
	return firstError(ctx, errs)
}

// confirmKindAbsent is confirmAbsent for the objects of one kind.
func confirmKindAbsent(ctx context.Context, live client.Reader, own Ownership, gvk schema.GroupVersionKind, objs []*unstructured.Unstructured) error {
	var opts []client.ListOption
	if ns := objs[0].GetNamespace(); ns != "" && sameNamespace(objs, ns) {
		opts = append(opts, client.InNamespace(ns))
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := live.List(ctx, list, opts...); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil // the kind is not served yet: nothing of it exists
		}
		return fmt.Errorf("listing %s: %w", gvk.Kind, err)
	}
	existing := map[string]*metav1.PartialObjectMetadata{}
	for i := range list.Items {
		existing[list.Items[i].Namespace+"/"+list.Items[i].Name] = &list.Items[i]
	}
	for _, obj := range objs {
		found, ok := existing[obj.GetNamespace()+"/"+obj.GetName()]
		if ok && found.GetLabels()[own.ManagedByKey] != own.ManagedByValue {
			return &NotOwnedError{Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
		}
	}
	return nil
}

func sameNamespace(objs []*unstructured.Unstructured, ns string) bool {
	for _, o := range objs {
		if o.GetNamespace() != ns {
			return false
		}
	}
	return true
}

// liveVersion identifies the state of an object that an apply could change. For
// objects with a generation it is the generation, so neither a status update (a
// Deployment's replicas, a CRD's conditions) nor metadata others add (the Deployment
// controller's revision annotation) counts as drift; the operator's own labels and
// annotations are compared on their own (upToDate). For the others it is the
// resourceVersion.
func liveVersion(obj metav1.Object) string {
	if obj.GetGeneration() == 0 {
		return "rv:" + obj.GetResourceVersion()
	}
	return fmt.Sprintf("gen:%d", obj.GetGeneration())
}

// Applier remembers the result of its last apply of each object, so a resync that finds
// the object unchanged since then sends nothing (see liveVersion). It is safe for
// concurrent use.
type Applier struct {
	mu   sync.Mutex
	last map[string]applied
	// budgets limit DeleteEach per cluster; clock is their time, real when nil.
	budgets map[string]flowcontrol.PassiveRateLimiter
	clock   clock.PassiveClock
}

// New returns an Applier with an empty memory.
func New() *Applier { return &Applier{last: map[string]applied{}} }

// Result counts what one Apply did: Applied objects were written, Created of them did
// not exist before, Unchanged needed no write.
type Result struct{ Applied, Created, Unchanged int }

// PruneResult counts what one Prune did: Deleted objects it deleted now, Remaining
// owned objects it does not keep and that still exist (those just deleted included).
type PruneResult struct{ Deleted, Remaining int }

func memoryKey(cluster string, gvk schema.GroupVersionKind, ns, name string) string {
	return fmt.Sprintf("%s|%s|%s|%s", cluster, gvk.String(), ns, name)
}

// Apply writes objs in order into a cluster. reader should be the cluster's cache;
// writer talks to its API server. An object reader does not have is looked up in
// live before it is created, because a cache that holds only the operator's objects
// cannot see a foreign object of the same name: live is read with one metadata-only
// List per kind of such objects, and a live object without the operator's label is
// never taken over (NotOwnedError). live may be nil when reader already sees every
// object (an API reader or a Snapshot). Every object that needs a write is first
// applied as a server-side dry run: when the cluster refuses any of them (admission,
// validation, an object the operator does not own), nothing is written, so a cluster
// is never left with half an istiod. An object that is as this content would leave it
// is not sent: see PlanEach for how that is told, also by an applier that remembers
// nothing.
func (a *Applier) Apply(ctx context.Context, cluster string, reader, live client.Reader, writer client.Client, own Ownership, objs []client.Object) (Result, error) {
	var res Result
	plans := make([]*pending, len(objs))
	errs := make([]error, len(objs))
	workqueue.ParallelizeUntil(ctx, applyWorkers, len(objs), func(i int) {
		plans[i], errs[i] = a.plan(ctx, cluster, reader, own, objs[i])
	})
	if err := firstError(ctx, errs); err != nil {
		return res, err
	}
	var todo []pending
	for _, p := range plans {
		if p == nil {
			res.Unchanged++
			continue
		}
		todo = append(todo, *p)
	}
	if err := confirmAbsent(ctx, live, own, todo); err != nil {
		return res, err
	}
	errs = make([]error, len(todo))
	workqueue.ParallelizeUntil(ctx, applyWorkers, len(todo), func(i int) {
		p := todo[i]
		if err := writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(p.obj.DeepCopy()),
			client.FieldOwner(FieldOwner), client.ForceOwnership, client.DryRunAll); err != nil {
			errs[i] = fmt.Errorf("%s %s: %w", p.obj.GetKind(), p.obj.GetName(), err)
		}
	})
	if err := firstError(ctx, errs); err != nil {
		return res, err
	}
	// Written stage by stage in the order given (see writeStage): the objects of one
	// stage side by side, a stage only once the one before it is written.
	for start := 0; start < len(todo); {
		end := start + 1
		for end < len(todo) && writeStage(todo[end].obj.GroupVersionKind()) == writeStage(todo[start].obj.GroupVersionKind()) {
			end++
		}
		batch := todo[start:end]
		errs := make([]error, len(batch))
		written := make([]bool, len(batch))
		workqueue.ParallelizeUntil(ctx, applyWorkers, len(batch), func(i int) {
			p := batch[i]
			if err := writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(p.obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				errs[i] = fmt.Errorf("%s %s: %w", p.obj.GetKind(), p.obj.GetName(), err)
				return
			}
			a.remember(p.key, known(p.hash, p.obj)) // p.obj now holds the server's answer
			written[i] = true
		})
		for i, p := range batch {
			if written[i] {
				res.Applied++
				if p.create {
					res.Created++
				}
			}
		}
		if err := firstError(ctx, errs); err != nil {
			return res, err
		}
		start = end
	}
	return res, nil
}

// applyWorkers bounds the requests one Apply has in flight, so that the round trips to
// a far cluster overlap instead of adding up: one istiod is about a dozen objects.
const applyWorkers = 16

// plan reads one object's live metadata and returns the write it needs, nil when none.
func (a *Applier) plan(ctx context.Context, cluster string, reader client.Reader, own Ownership, obj client.Object) (*pending, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	key := memoryKey(cluster, gvk, obj.GetNamespace(), obj.GetName())
	u, hash, err := hashedCopy(obj)
	if err != nil {
		return nil, err
	}
	found := &metav1.PartialObjectMetadata{}
	found.SetGroupVersionKind(gvk)
	err = reader.Get(ctx, client.ObjectKeyFromObject(obj), found)
	switch {
	case apierrors.IsNotFound(err):
		found = nil
	case err != nil:
		return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, obj.GetName(), err)
	case found.GetLabels()[own.ManagedByKey] != own.ManagedByValue:
		return nil, &NotOwnedError{Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	}
	// The same test as the mirror's: the applier's memory, or after a restart the hash
	// annotation and who changed the object since.
	if found != nil && a.upToDate(key, hash, u, found) {
		return nil, nil
	}
	return &pending{key: key, hash: hash, obj: u, create: found == nil}, nil
}

// firstError is the first of errs in order, or the context's error when it ended before
// every item was done.
func firstError(ctx context.Context, errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (a *Applier) remembered(key string) applied {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[key]
}

func (a *Applier) remember(key string, v applied) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last[key] = v
}

// AsApplied reports that obj, of kind gvk in a cluster, is at the resourceVersion at
// which the applier last wrote it or found it as it wants it: a watch event that
// brings it (a create or an update) is the echo of the operator's own write, and a
// pass would find nothing to do. A deletion is never one: a deleted object keeps the
// resourceVersion it had.
func (a *Applier) AsApplied(cluster string, gvk schema.GroupVersionKind, obj metav1.Object) bool {
	rv := obj.GetResourceVersion()
	return rv != "" && a.remembered(memoryKey(cluster, gvk, obj.GetNamespace(), obj.GetName())).resourceVersion == rv
}

// LastApplied reports that obj has the content of the applier's last write of it in the
// cluster (or of the object it last found there as it wanted it).
func (a *Applier) LastApplied(cluster string, obj client.Object) (bool, error) {
	_, hash, err := hashedCopy(obj)
	if err != nil {
		return false, err
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	return a.remembered(memoryKey(cluster, gvk, obj.GetNamespace(), obj.GetName())).hash == hash, nil
}

// Forget drops the memory of one cluster, for example when its client is replaced.
func (a *Applier) Forget(cluster string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.last {
		if len(k) > len(cluster) && k[:len(cluster)+1] == cluster+"|" {
			delete(a.last, k)
		}
	}
}

// Prune deletes the owned objects of the given kinds that keep does not name. reader
// lists (a cache is fine: a later pass catches what it had not seen yet).
func (a *Applier) Prune(ctx context.Context, cluster string, reader client.Reader, writer client.Client, own Ownership,
	kinds []schema.GroupVersionKind, keep []client.Object) (PruneResult, error) {
	var res PruneResult
	wanted := map[string]bool{}
	for _, o := range keep {
		wanted[memoryKey(cluster, o.GetObjectKind().GroupVersionKind(), o.GetNamespace(), o.GetName())] = true
	}
	for _, gvk := range kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := reader.List(ctx, list, client.MatchingLabels(own.Labels)); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue // the kind is not served (any more): nothing of it is left
			}
			return res, fmt.Errorf("listing %s: %w", gvk.Kind, err)
		}
		var doomed []*metav1.PartialObjectMetadata
		for i := range list.Items {
			item := &list.Items[i]
			if wanted[memoryKey(cluster, gvk, item.Namespace, item.Name)] || !own.owns(item) {
				continue
			}
			res.Remaining++
			if item.DeletionTimestamp == nil {
				item.SetGroupVersionKind(gvk)
				doomed = append(doomed, item)
			}
		}
		// The objects of one kind side by side, kind after kind in the order given (copies
		// before the definitions they need): a far cluster's removal of a thousand copies
		// then takes a round trip per applyWorkers copies, not one per copy.
		errs := make([]error, len(doomed))
		deleted := make([]bool, len(doomed))
		workqueue.ParallelizeUntil(ctx, applyWorkers, len(doomed), func(i int) {
			item := doomed[i]
			err := writer.Delete(ctx, item, client.Preconditions{UID: &item.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
			if err != nil && !apierrors.IsNotFound(err) {
				errs[i] = fmt.Errorf("deleting %s %s: %w", gvk.Kind, item.Name, err)
				return
			}
			deleted[i] = err == nil
			a.mu.Lock()
			delete(a.last, memoryKey(cluster, gvk, item.Namespace, item.Name))
			a.mu.Unlock()
		})
		for _, d := range deleted {
			if d {
				res.Deleted++
			}
		}
		if err := firstError(ctx, errs); err != nil {
			return res, err
		}
	}
	return res, nil
}
