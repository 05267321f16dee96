package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Snapshot is the metadata of every object of some kinds, read with one List per kind.
// As the reader of Apply and Prune it makes a pass over many objects cost a round trip
// per kind instead of one per object, which matters for a cluster far away; it is as
// fresh as the moment it was taken, unlike a cache that may lag. Kinds it did not list
// are read from the reader it was taken from.
type Snapshot struct {
	from  client.Reader
	kinds map[schema.GroupVersionKind]map[types.NamespacedName]*metav1.PartialObjectMetadata
}

// snapshotWorkers is how many kinds are listed at once: the Lists of a far cluster
// then cost about one round trip, not one per kind.
const snapshotWorkers = 16

// TakeSnapshot lists every object of kinds, in all namespaces. A kind the cluster does
// not serve is left out. mapper is the REST mapper reader uses (nil: unknown).
func TakeSnapshot(ctx context.Context, reader client.Reader, mapper meta.RESTMapper, kinds []schema.GroupVersionKind) (*Snapshot, error) {
	lists := make([]map[types.NamespacedName]*metav1.PartialObjectMetadata, len(kinds))
	errs := make([]error, len(kinds))
	listKind := func(k int) {
		gvk := kinds[k]
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := reader.List(ctx, list); err != nil {
			if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
				errs[k] = fmt.Errorf("listing %s: %w", gvk.Kind, err)
			}
			return
		}
		objs := make(map[types.NamespacedName]*metav1.PartialObjectMetadata, len(list.Items))
		for i := range list.Items {
			item := &list.Items[i]
			item.SetGroupVersionKind(gvk)
			objs[types.NamespacedName{Namespace: item.Namespace, Name: item.Name}] = item
		}
		lists[k] = objs
	}
	for _, wave := range waves(ctx, mapper, kinds) {
		workqueue.ParallelizeUntil(ctx, snapshotWorkers, len(wave), func(i int) { listKind(wave[i]) })
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // kinds left unlisted must not look empty
	}
	s := &Snapshot{from: reader, kinds: map[schema.GroupVersionKind]map[types.NamespacedName]*metav1.PartialObjectMetadata{}}
	for k, objs := range lists {
		if objs != nil {
			s.kinds[kinds[k]] = objs
		}
	}
	return s, nil
}

// waves orders the Lists of kinds. A REST mapper that has not seen a group version yet
// (controller-runtime's, right after the CRDs are installed) reads its discovery
// document once per lookup that misses, one lookup at a time, so kinds of one group
// version listed side by side would each read it, in series. So one kind of each group
// version is looked up first, and then every kind is listed at once: one round trip
// when the mapper knows them all, and one wait when a just-created kind's List is
// answered "429, retry after 1 s" (an API server's watch cache of a kind is made on
// the kind's first request). Without the mapper, one kind of each group version is
// listed first, then the others.
func waves(ctx context.Context, mapper meta.RESTMapper, kinds []schema.GroupVersionKind) [][]int {
	first, rest := firstOfEachGroupVersion(kinds)
	if mapper == nil {
		return [][]int{first, rest}
	}
	workqueue.ParallelizeUntil(ctx, snapshotWorkers, len(first), func(i int) {
		gvk := kinds[first[i]]
		_, _ = mapper.RESTMapping(gvk.GroupKind(), gvk.Version) // a kind it cannot map, its List reports
	})
	return [][]int{append(first, rest...)}
}

// firstOfEachGroupVersion splits the indexes of kinds into the first kind of each group
// version and the others.
func firstOfEachGroupVersion(kinds []schema.GroupVersionKind) (first, rest []int) {
	seen := map[schema.GroupVersion]bool{}
	for i, gvk := range kinds {
		if gv := gvk.GroupVersion(); !seen[gv] {
			seen[gv] = true
			first = append(first, i)
			continue
		}
		rest = append(rest, i)
	}
	return first, rest
}

// Get reads an object's metadata from the snapshot; obj must be a
// *metav1.PartialObjectMetadata of a listed kind, anything else is read from the
// underlying reader.
func (s *Snapshot) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return s.from.Get(ctx, key, obj, opts...)
	}
	gvk := m.GroupVersionKind()
	objs, listed := s.kinds[gvk]
	if !listed {
		return s.from.Get(ctx, key, obj, opts...)
	}
	found, ok := objs[key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, key.Name)
	}
	found.DeepCopyInto(m)
	return nil
}

// List returns the snapshot's objects of a listed kind that match the namespace and
// label selector of opts; list must be a *metav1.PartialObjectMetadataList.
func (s *Snapshot) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ml, ok := list.(*metav1.PartialObjectMetadataList)
	if !ok {
		return s.from.List(ctx, list, opts...)
	}
	listGVK := ml.GroupVersionKind()
	gvk := listGVK.GroupVersion().WithKind(strings.TrimSuffix(listGVK.Kind, "List"))
	objs, listed := s.kinds[gvk]
	if !listed {
		return s.from.List(ctx, list, opts...)
	}
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	sel := lo.LabelSelector
	if sel == nil {
		sel = labels.Everything()
	}
	ml.Items = ml.Items[:0]
	for _, o := range objs {
		if (lo.Namespace == "" || o.Namespace == lo.Namespace) && sel.Matches(labels.Set(o.Labels)) {
			ml.Items = append(ml.Items, *o.DeepCopy())
		}
	}
	return nil
}
