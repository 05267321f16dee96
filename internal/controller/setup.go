package controller

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	mcbuilder "sigs.k8s.io/multicluster-runtime/pkg/builder"
	mcmanager "sigs.k8s.io/multicluster-runtime/pkg/manager"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// RemoteClusterOptions make every remote cluster's cache hold only the objects the
// operator owns there.
func RemoteClusterOptions(scheme *runtime.Scheme, namespace string) []cluster.Option {
	return []cluster.Option{func(o *cluster.Options) {
		o.Scheme = scheme
		o.Cache = cache.Options{
			Scheme:               scheme,
			DefaultLabelSelector: labels.SelectorFromSet(labels.Set{render.ManagedByLabel: render.ManagedByValue}),
			ByObject:             controlPlaneOnly(namespace),
		}
		o.Client = client.Options{Cache: &client.CacheOptions{Unstructured: false}}
	}}
}

// controlPlaneOnlyKinds are the kinds the operator writes only in the control plane
// namespace (Secrets: cacerts and distributed remote secrets; istiod's ConfigMaps,
// ServiceAccount, Role, RoleBinding and PodDisruptionBudget; the switch record): its
// identity may list and watch them only there (config/remote).
var controlPlaneOnlyKinds = []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{},
	&rbacv1.Role{}, &rbacv1.RoleBinding{}, &policyv1.PodDisruptionBudget{}}

func controlPlaneOnly(namespace string) map[client.Object]cache.ByObject {
	out := map[client.Object]cache.ByObject{}
	for _, obj := range controlPlaneOnlyKinds {
		out[obj] = cache.ByObject{Namespaces: map[string]cache.Config{namespace: {}}}
	}
	return out
}

// SetupWithManager registers both controllers.
func (r *ClusterReconciler) SetupWithManager(mgr mcmanager.Manager, workers int) error {
	if err := ctrl.NewControllerManagedBy(mgr.GetLocalManager()).
		Named("asmmeshconfig").
		For(&v1beta1.ASMMeshConfig{}).
		Complete(&MeshConfigReconciler{Client: mgr.GetLocalManager().GetClient(), Clusters: r.Clusters, Namespace: r.Settings.Namespace}); err != nil {
		return err
	}

	remoteOnly := []mcbuilder.WatchesOption{mcbuilder.WithEngageWithLocalCluster(false), mcbuilder.WithEngageWithProviderClusters(true)}
	meshOnly := []mcbuilder.WatchesOption{mcbuilder.WithEngageWithLocalCluster(true), mcbuilder.WithEngageWithProviderClusters(false)}
	b := mcbuilder.ControllerManagedBy(mgr).
		Named("remote-istiod").
		WithClusterNotFoundWrapper(false). // a cluster without a remote secret is reported, not dropped
		WithOptions(controller.TypedOptions[mcreconcile.Request]{
			MaxConcurrentReconciles: workers,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[mcreconcile.Request](time.Second, 2*time.Minute),
			SkipNameValidation:      mgr.GetLocalManager().GetControllerOptions().SkipNameValidation,
		}).
		Watches(&v1beta1.ASMMeshConfig{}, clustersOfMeshConfig,
			mcbuilder.WithEngageWithLocalCluster(true), mcbuilder.WithEngageWithProviderClusters(false),
			mcbuilder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&appsv1.Deployment{}, r.istiodDeploymentEvents(appsv1.SchemeGroupVersion.WithKind("Deployment")),
			append(remoteOnly, mcbuilder.WithPredicates(predicate.ResourceVersionChangedPredicate{}))...).
		// The mesh control plane's injector and mesh ConfigMaps and its istiod, which
		// every cluster's istiod copies (meshsettings.go).
		Watches(&corev1.ConfigMap{}, r.everyClusterOnMeshSettings, append(meshOnly, mcbuilder.WithPredicates(r.meshSettingsChanged()))...).
		Watches(&appsv1.Deployment{}, r.everyClusterOnMeshSettings, append(meshOnly, mcbuilder.WithPredicates(r.meshSettingsChanged()))...).
		WatchesRawSource(source.TypedChannel(r.Clusters.Changes(), handler.TypedFuncs[string, mcreconcile.Request]{
			GenericFunc: func(ctx context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
				q.Add(requestFor(e.Object))
				// A peer connected or gone changes what mutual access gives out: peers
				// are connected only once an entry asks for them, after its reconcile.
				for _, req := range r.mutualAccessEntries(ctx, e.Object) {
					enqueueFanOut(q, req)
				}
			},
		}))
	meshCA, err := r.watchMeshCA(mgr.GetLocalManager())
	if err != nil {
		return err
	}
	b = b.WatchesRawSource(meshCA)
	r.watches = newKindWatches(r.ownedObjectChanged)
	r.repairs = newRepairs(r.watches.send)
	b = b.WatchesRawSource(source.TypedChannel(r.repairs.events, handler.TypedFuncs[string, mcreconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			q.Add(repairFor(e.Object))
		},
	}))
	b = b.WatchesRawSource(source.TypedChannel(r.watches.events, handler.TypedFuncs[string, mcreconcile.Request]{
		GenericFunc: func(ctx context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			if e.Object != allClusters {
				q.Add(requestFor(e.Object))
				return
			}
			for _, req := range r.entries(ctx) {
				enqueueFanOut(q, req)
			}
		},
	}))
	for _, gvk := range append([]schema.GroupVersionKind{mirror.CRDGVK}, render.OwnedKinds...) {
		if gvk.Kind == "Deployment" {
			continue
		}
		obj := &metav1.PartialObjectMetadata{}
		obj.SetGroupVersionKind(gvk)
		b = b.WatchesMetadata(obj, r.ownedObjectEvents(gvk), remoteOnly...)
	}
	return b.Complete(r)
}

// fanOutDelay coalesces a burst of mesh changes into one reconcile per cluster.
const fanOutDelay = time.Second

// enqueueFanOut queues a cluster for a change of the mesh that concerns every cluster.
// A cluster that is backing off after an error is left to its retry, which reads the
// mesh as it is then: a mesh that changes often must not turn a few hung clusters into
// a stream of reconciles that each hold a worker until their deadline.
func enqueueFanOut(q workqueue.TypedRateLimitingInterface[mcreconcile.Request], req mcreconcile.Request) {
	if q.NumRequeues(req) > 0 {
		return
	}
	q.AddAfter(req, fanOutDelay)
}

func requestFor(id string) mcreconcile.Request {
	return mcreconcile.Request{ClusterName: multicluster.ClusterName(id),
		Request: reconcile.Request{NamespacedName: client.ObjectKey{Name: v1beta1.DefaultName}}}
}

// clustersOfMeshConfig fans an ASMMeshConfig event out to every cluster it names in
// its spec or still has status (leftovers) for.
func clustersOfMeshConfig(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []mcreconcile.Request {
		mc, ok := o.(*v1beta1.ASMMeshConfig)
		if !ok || mc.Name != v1beta1.DefaultName {
			return nil
		}
		seen := map[string]bool{}
		var reqs []mcreconcile.Request
		add := func(id string) {
			if !seen[id] {
				seen[id] = true
				reqs = append(reqs, requestFor(id))
			}
		}
		for id := range mc.Spec.ExternalIstiodConfigurations {
			add(id)
		}
		for _, cs := range mc.Status.Clusters {
			add(cs.ClusterID)
		}
		return reqs
	})
}

// entries are requests for every cluster that has an entry in the ASMMeshConfig.
func (r *ClusterReconciler) entries(ctx context.Context) []mcreconcile.Request {
	mc := &v1beta1.ASMMeshConfig{}
	if err := r.Local.Get(ctx, client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil {
		return nil
	}
	var reqs []mcreconcile.Request
	for id := range mc.Spec.ExternalIstiodConfigurations {
		reqs = append(reqs, requestFor(id))
	}
	return reqs
}

// mutualAccessEntries are requests for every other cluster whose entry has mutual
// access.
func (r *ClusterReconciler) mutualAccessEntries(ctx context.Context, except string) []mcreconcile.Request {
	mc := &v1beta1.ASMMeshConfig{}
	if err := r.Local.Get(ctx, client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil {
		return nil
	}
	var reqs []mcreconcile.Request
	for id, e := range mc.Spec.ExternalIstiodConfigurations {
		if e.MutualAccess && id != except {
			reqs = append(reqs, requestFor(id))
		}
	}
	return reqs
}

// sameCluster maps an owned object's event in a remote cluster to that cluster.
func sameCluster(name multicluster.ClusterName, _ cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, client.Object) []mcreconcile.Request {
		return []mcreconcile.Request{requestFor(string(name))}
	})
}
