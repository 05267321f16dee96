package controller

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// A repair puts back the objects that were changed or deleted in a cluster since its
// last pass, and nothing else: one object edited or deleted there costs a read and a
// write or two, not a pass over every kind (a probe, trust, istiod, Istio's CRDs and a
// List per Istio kind, the switch). It knows istiod's objects as the last pass applied
// them and the mesh's sources of the copies; for anything else, or when it cannot
// finish, it leaves the cluster to a pass, which also reports.
const repairRequestName = "repair"

// repairRetry is how soon a repair is tried again while a pass of its cluster runs.
const repairRetry = time.Second

func repairFor(id string) mcreconcile.Request {
	return mcreconcile.Request{ClusterName: multicluster.ClusterName(id),
		Request: reconcile.Request{NamespacedName: client.ObjectKey{Name: repairRequestName}}}
}

type objectKey struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

// repairs is what repairs know of each cluster. Passes and repairs of one cluster never
// run at once (begin), so a repair never writes an older object over a pass's newer one.
type repairs struct {
	// events queue a cluster's repair (repairFor); passes go to pass.
	events chan event.TypedGenericEvent[string]
	pass   func(id string)

	mu   sync.Mutex
	busy map[string]bool
	// dirty are the cluster's changed objects, with the resourceVersion each event
	// brought ("" for a deletion).
	dirty   map[string]map[objectKey]string
	applied map[string][]client.Object // istiod's objects as the cluster's last pass applied them, in order
}

func newRepairs(pass func(id string)) *repairs {
	return &repairs{events: make(chan event.TypedGenericEvent[string], 1024), pass: pass,
		busy: map[string]bool{}, dirty: map[string]map[objectKey]string{}, applied: map[string][]client.Object{}}
}

// begin, end, passBegins and appliedIstiod of a nil *repairs (a reconciler not set up
// with a manager, in unit tests) know nothing and hold nothing back.

// note records that an object of the cluster changed, to resourceVersion rv ("" when
// deleted), and queues the cluster's repair.
func (p *repairs) note(id string, gvk schema.GroupVersionKind, namespace, name, rv string) {
	p.mu.Lock()
	if p.dirty[id] == nil {
		p.dirty[id] = map[objectKey]string{}
	}
	p.dirty[id][objectKey{gvk, namespace, name}] = rv
	p.mu.Unlock()
	select {
	case p.events <- event.TypedGenericEvent[string]{Object: id}:
	default: // too many repairs queued: a pass puts back everything
		p.pass(id)
	}
}

// begin marks a pass or repair of the cluster running; false when one already is.
func (p *repairs) begin(id string) bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[id] {
		return false
	}
	p.busy[id] = true
	return true
}

func (p *repairs) end(id string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy, id)
}

// passBegins forgets what repairs knew of the cluster: the pass restores every object,
// and until it applies istiod (appliedIstiod) there is no applied set to repair from;
// a removal's pass leaves none.
func (p *repairs) passBegins(id string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.dirty, id)
	delete(p.applied, id)
}

// appliedIstiod records istiod's objects as a pass applied them.
func (p *repairs) appliedIstiod(id string, objs []client.Object) {
	if p == nil {
		return
	}
	copies := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		copies = append(copies, o.DeepCopyObject().(client.Object))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied[id] = copies
}

// take returns and clears the cluster's changed objects, and istiod's applied set.
func (p *repairs) take(id string) (map[objectKey]string, []client.Object) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dirty := p.dirty[id]
	delete(p.dirty, id)
	return dirty, p.applied[id]
}

// reconcileRepair puts back the cluster's changed objects, or leaves the cluster to a
// pass when it cannot.
func (r *ClusterReconciler) reconcileRepair(ctx context.Context, id string) (ctrl.Result, error) {
	if !r.repairs.begin(id) {
		return ctrl.Result{RequeueAfter: repairRetry}, nil
	}
	defer r.repairs.end(id)
	dirty, applied := r.repairs.take(id)
	r.dropEchoes(id, dirty)
	if len(dirty) == 0 {
		return ctrl.Result{}, nil
	}
	objs, ok := r.wantedNow(ctx, id, dirty, applied)
	if !ok {
		r.repairs.pass(id)
		return ctrl.Result{}, nil
	}
	state, found, err := r.Clusters.Lookup(ctx, id)
	if err != nil || !found || state.Cluster == nil {
		r.repairs.pass(id)
		return ctrl.Result{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	remote := state.Cluster
	res, err := r.Applier.Apply(ctx, id, remote.GetAPIReader(), nil, remote.GetClient(), ownership(id), objs)
	if err != nil {
		logf.FromContext(ctx).Info("repair not possible; leaving the cluster to a pass", "cluster", id, "error", errorSummary(err))
		r.repairs.pass(id)
		return ctrl.Result{}, nil
	}
	if res.Applied > 0 {
		logf.FromContext(ctx).Info("repaired objects changed in the cluster", "cluster", id, "restored", res.Applied, "unchanged", res.Unchanged)
		metrics.CountRepairs(id, res.Applied)
	}
	return ctrl.Result{}, nil
}

// dropEchoes drops the changes that were the operator's own writes after all: the watch
// may bring a write's event before the write's answer has told the applier its
// resourceVersion (ownWriteEcho), and by the repair it has.
func (r *ClusterReconciler) dropEchoes(id string, dirty map[objectKey]string) {
	for k, rv := range dirty {
		if rv != "" && r.ownWriteEcho(id, k.gvk, &metav1.ObjectMeta{Namespace: k.namespace, Name: k.name, ResourceVersion: rv}) {
			delete(dirty, k)
		}
	}
}

// wantedNow is each changed object as the cluster should have it: istiod's as its last
// pass applied them (in that order), copies from their sources in the mesh cluster's
// cache. ok is false when one is neither, or the cluster's entry is gone or going:
// pruning, removal and reporting are a pass's.
func (r *ClusterReconciler) wantedNow(ctx context.Context, id string, dirty map[objectKey]string, applied []client.Object) (objs []client.Object, ok bool) {
	mc := &v1beta1.ASMMeshConfig{}
	if err := r.Local.Get(ctx, client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil || mc.DeletionTimestamp != nil {
		return nil, false
	}
	if _, wanted := mc.Spec.ExternalIstiodConfigurations[id]; !wanted || len(applied) == 0 {
		return nil, false
	}
	left := len(dirty)
	for _, o := range applied {
		k := objectKey{o.GetObjectKind().GroupVersionKind(), o.GetNamespace(), o.GetName()}
		if _, changed := dirty[k]; changed {
			objs = append(objs, o)
			left--
			delete(dirty, k)
		}
	}
	if left == 0 {
		return objs, true
	}
	mirrored := map[schema.GroupVersionKind]bool{}
	for _, gvk := range mirror.Kinds() {
		mirrored[gvk] = true
	}
	for k := range dirty {
		if !mirrored[k.gvk] {
			return nil, false
		}
		src := &unstructured.Unstructured{}
		src.SetGroupVersionKind(k.gvk)
		if err := r.Local.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, src); err != nil {
			return nil, false // gone from the mesh (a pass prunes the copy) or unreadable
		}
		cp := mirror.Copy(src, ownership(id).Labels)
		// Only a copy as the last pass wrote it is put back: a source changed since is
		// the pass's to mirror (it is queued by the change), with its accounting.
		if same, err := r.Applier.LastApplied(id, cp); err != nil || !same {
			return nil, false
		}
		objs = append(objs, cp)
	}
	return objs, true
}
