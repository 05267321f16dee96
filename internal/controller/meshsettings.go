package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// The mesh control plane's ConfigMaps and istiod Deployment are read, through the mesh
// cluster's cache, in the control plane namespace only.
// +kubebuilder:rbac:groups="",namespace=istio-system,resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,namespace=istio-system,resources=deployments,verbs=get;list;watch

// Labels Istio puts on its injection webhook configurations.
const (
	revisionLabel = "istio.io/rev"
	tagLabel      = "istio.io/tag"
	// istiodContainer is the container of the istiod Deployment that runs pilot-discovery.
	istiodContainer = "discovery"
)

// revisionNames are the names Istio gives the objects of a revision: the injector and
// mesh ConfigMaps and the istiod Deployment; the default revision has no suffix.
func revisionNames(rev string) (injector, mesh, istiod string) {
	if rev == "" || rev == "default" {
		return "istio-sidecar-injector", "istio", "istiod"
	}
	return "istio-sidecar-injector-" + rev, "istio-" + rev, "istiod-" + rev
}

// injectorRevision is the revision whose settings a cluster's istiod copies: the one the
// cluster's injector of the mesh control plane serves (label istio.io/rev, default when
// unlabelled). With several, the one the default tag points at wins, then default, then
// the first by name; note says so.
func injectorRevision(injectors []admissionv1.MutatingWebhookConfiguration) (rev, note string) {
	revs := map[string]bool{}
	tagged := ""
	for _, mwc := range injectors {
		r := mwc.Labels[revisionLabel]
		if r == "" {
			r = "default"
		}
		revs[r] = true
		if mwc.Labels[tagLabel] == "default" {
			tagged = r
		}
	}
	var all []string
	for r := range revs {
		all = append(all, r)
	}
	sort.Strings(all)
	switch {
	case len(all) == 0:
		return "default", ", the cluster has no injector of the mesh control plane"
	case len(all) == 1:
		return all[0], ""
	case tagged != "":
		rev = tagged
	case revs["default"]:
		rev = "default"
	default:
		rev = all[0]
	}
	return rev, fmt.Sprintf(", of the revisions %s the cluster's injectors serve", strings.Join(all, ", "))
}

// imageTag is the tag of an image reference ("" when it has none, as with a digest only).
func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if colon := strings.LastIndex(image, ":"); colon > strings.LastIndex(image, "/") {
		return image[colon+1:]
	}
	return ""
}

// fillMeshSettings gives in the mesh control plane's own injector and mesh
// configuration, and its Istio version unless spec.version names one, and says in the
// cluster's status where each came from. A part the mesh cluster does not have (or that
// cannot be copied) keeps the operator's default.
func (r *ClusterReconciler) fillMeshSettings(ctx context.Context, w *clusterWork, in *render.Inputs) error {
	injectors, err := managedInjectors(ctx, w.remote.GetAPIReader())
	if err != nil {
		return fmt.Errorf("listing the injectors of cluster %s: %w", w.id, err)
	}
	rev, note := injectorRevision(injectors)
	ns := r.Settings.Namespace
	injectorName, meshName, istiodName := revisionNames(rev)

	var copied, from, defaults []string
	injector, err := r.meshConfigMap(ctx, injectorName)
	switch {
	case err != nil:
		return err
	case injector == nil:
		defaults = append(defaults, fmt.Sprintf("injector config is the operator's default: the mesh cluster has no ConfigMap %s/%s", ns, injectorName))
	default:
		data := render.InjectorData{Config: injector.Data["config"], Values: injector.Data["values"]}
		if err := render.CheckInjector(data); err != nil {
			defaults = append(defaults, fmt.Sprintf("injector config is the operator's default: ConfigMap %s/%s of the mesh cluster cannot be copied (%v)", ns, injectorName, err))
		} else {
			in.MeshSettings.Injector = &data
			copied, from = append(copied, "injector config"), append(from, ns+"/"+injectorName)
		}
	}
	mesh, err := r.meshConfigMap(ctx, meshName)
	switch {
	case err != nil:
		return err
	case mesh == nil:
		defaults = append(defaults, fmt.Sprintf("mesh config is the operator's default: the mesh cluster has no ConfigMap %s/%s", ns, meshName))
	default:
		data := render.MeshData{Mesh: mesh.Data["mesh"], MeshNetworks: mesh.Data["meshNetworks"]}
		if err := render.CheckMesh(data); err != nil {
			defaults = append(defaults, fmt.Sprintf("mesh config is the operator's default: ConfigMap %s/%s of the mesh cluster cannot be copied (%v)", ns, meshName, err))
		} else {
			in.MeshSettings.Mesh = &data
			copied, from = append(copied, "mesh config"), append(from, ns+"/"+meshName)
		}
	}

	parts := []string{fmt.Sprintf("nothing copied from the mesh control plane (revision %s%s)", rev, note)}
	if len(copied) > 0 {
		parts[0] = fmt.Sprintf("%s copied from %s (revision %s%s)", strings.Join(copied, " and "), strings.Join(from, " and "), rev, note)
	}
	parts = append(parts, defaults...)
	version, err := r.meshVersion(ctx, w, istiodName)
	if err != nil {
		return err
	}
	if version.value != "" {
		in.Version = version.value
	}
	parts = append(parts, fmt.Sprintf("Istio %s %s", in.Version, version.source))
	w.status.MeshSettings = strings.Join(parts, "; ")
	return nil
}

// meshConfigMap reads a ConfigMap of the mesh control plane from the mesh cluster's
// cache; nil when there is none.
func (r *ClusterReconciler) meshConfigMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := r.Local.Get(ctx, client.ObjectKey{Namespace: r.Settings.Namespace, Name: name}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s of the mesh cluster: %w", r.Settings.Namespace, name, err)
	}
	return cm, nil
}

type versionSource struct {
	// value replaces the rendered version; "" keeps spec.version or the flag's.
	value  string
	source string
}

// meshVersion is the Istio version of the mesh istiod (the tag of its discovery
// container), used unless spec.version names one; the operator's --istio-version flag
// is the last fallback.
func (r *ClusterReconciler) meshVersion(ctx context.Context, w *clusterWork, name string) (versionSource, error) {
	if w.mc.Spec.Version != "" {
		return versionSource{source: "from spec.version"}, nil
	}
	ns := r.Settings.Namespace
	flag := "from the operator's --istio-version flag: "
	dep := &appsv1.Deployment{}
	err := r.Local.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, dep)
	if apierrors.IsNotFound(err) {
		return versionSource{source: fmt.Sprintf("%sthe mesh cluster has no Deployment %s/%s", flag, ns, name)}, nil
	}
	if err != nil {
		return versionSource{}, fmt.Errorf("reading Deployment %s/%s of the mesh cluster: %w", ns, name, err)
	}
	image := ""
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == istiodContainer {
			image = c.Image
		}
	}
	if image == "" {
		return versionSource{source: fmt.Sprintf("%sDeployment %s/%s of the mesh cluster has no container %s", flag, ns, name, istiodContainer)}, nil
	}
	tag := imageTag(image)
	if _, err := render.ParseVersion(tag); err != nil {
		return versionSource{source: fmt.Sprintf("%sthe image %s of the mesh istiod %s/%s does not name a supported release (%v)", flag, image, ns, name, err)}, nil
	}
	return versionSource{value: tag, source: fmt.Sprintf("from the mesh istiod %s/%s", ns, name)}, nil
}

// everyClusterOnMeshSettings re-queues every cluster with an entry when the mesh
// control plane's ConfigMaps or istiod Deployment change.
func (r *ClusterReconciler) everyClusterOnMeshSettings(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []mcreconcile.Request {
		return r.entries(ctx)
	})
}

// meshSettingsChanged lets through the events of the objects fillMeshSettings reads, of
// any revision, in the control plane namespace, and of those only the changes of what
// it reads: ConfigMap data, the istiod image. Istio's leader election ConfigMaps, whose
// annotations change every few seconds, never wake a cluster.
func (r *ClusterReconciler) meshSettingsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return r.isMeshSettings(e.Object) },
		DeleteFunc: func(e event.DeleteEvent) bool { return r.isMeshSettings(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return r.isMeshSettings(e.ObjectNew) && meshSettingsContent(e.ObjectOld) != meshSettingsContent(e.ObjectNew)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func (r *ClusterReconciler) isMeshSettings(o client.Object) bool {
	if o.GetNamespace() != r.Settings.Namespace {
		return false
	}
	name := o.GetName()
	switch o.(type) {
	case *appsv1.Deployment:
		return name == "istiod" || strings.HasPrefix(name, "istiod-")
	case *corev1.ConfigMap:
		// istio-sidecar-injector[-<rev>] and istio[-<rev>]; a revision may be any name.
		return name == "istio" || strings.HasPrefix(name, "istio-")
	}
	return false
}

// meshSettingsContent is what fillMeshSettings reads of an object.
func meshSettingsContent(o client.Object) string {
	switch o := o.(type) {
	case *corev1.ConfigMap:
		raw, _ := json.Marshal(o.Data)
		return string(raw)
	case *appsv1.Deployment:
		var images []string
		for _, c := range o.Spec.Template.Spec.Containers {
			if c.Name == istiodContainer {
				images = append(images, c.Image)
			}
		}
		return strings.Join(images, ",")
	}
	return ""
}
