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
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
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
// cannot be copied) comes from Istio's istio-discovery chart in this build, which has
// the templates of its own Istio minor only: for another version it returns a
// *noTemplateSourceError and fills nothing.
func (r *ClusterReconciler) fillMeshSettings(ctx context.Context, w *clusterWork, in *render.Inputs) error {
	injectors, err := managedInjectors(ctx, w.remote.GetAPIReader())
	if err != nil {
		return fmt.Errorf("listing the injectors of cluster %s: %w", w.id, err)
	}
	rev, note := injectorRevision(injectors)
	ns := r.Settings.Namespace
	injectorName, meshName, istiodName := revisionNames(rev)

	version, err := r.meshVersion(ctx, w, istiodName)
	if err != nil {
		return err
	}
	in.Version = version.value

	// missing says, for each part the mesh cluster cannot give, why not.
	var copied, from, missing []string
	var settings render.MeshSettings
	injector, err := r.meshConfigMap(ctx, injectorName)
	switch {
	case err != nil:
		return err
	case injector == nil:
		missing = append(missing, fmt.Sprintf("injector config %s: the mesh cluster has no ConfigMap %s/%s", chartFallback, ns, injectorName))
	default:
		data := render.InjectorData{Config: injector.Data["config"], Values: injector.Data["values"]}
		if err := render.CheckInjector(data); err != nil {
			missing = append(missing, fmt.Sprintf("injector config %s: ConfigMap %s/%s of the mesh cluster cannot be copied (%v)", chartFallback, ns, injectorName, err))
		} else {
			settings.Injector = &data
			copied, from = append(copied, "injector config"), append(from, ns+"/"+injectorName)
		}
	}
	mesh, err := r.meshConfigMap(ctx, meshName)
	switch {
	case err != nil:
		return err
	case mesh == nil:
		missing = append(missing, fmt.Sprintf("mesh config %s: the mesh cluster has no ConfigMap %s/%s", chartFallback, ns, meshName))
	default:
		data := render.MeshData{Mesh: mesh.Data["mesh"], MeshNetworks: mesh.Data["meshNetworks"]}
		if err := render.CheckMesh(data); err != nil {
			missing = append(missing, fmt.Sprintf("mesh config %s: ConfigMap %s/%s of the mesh cluster cannot be copied (%v)", chartFallback, ns, meshName, err))
		} else {
			settings.Mesh = &data
			copied, from = append(copied, "mesh config"), append(from, ns+"/"+meshName)
		}
	}

	parts := []string{fmt.Sprintf("nothing copied from the mesh control plane (revision %s%s)", rev, note)}
	if len(copied) > 0 {
		parts[0] = fmt.Sprintf("%s copied from %s (revision %s%s)", strings.Join(copied, " and "), strings.Join(from, " and "), rev, note)
	}
	versionPart := fmt.Sprintf("Istio %s %s", in.Version, version.source)
	_, versionErr := render.ParseVersion(in.Version)
	// A version that is no supported release is Render's to report (RenderFailed).
	if len(missing) > 0 && versionErr == nil {
		if !chartHasTemplates(in.Version) {
			lacks := missingConfigMaps(settings.Injector == nil, settings.Mesh == nil, ns, injectorName, meshName)
			w.status.MeshSettings = strings.Join(append(parts,
				fmt.Sprintf("no source for Istio %s: the mesh cluster has no usable %s, and Istio's %s chart in this operator is %s",
					in.Version, strings.Join(lacks, " and "), istiochart.Discovery, istiochart.Version()),
				versionPart), "; ")
			return &noTemplateSourceError{version: in.Version, versionSource: version.source, lacks: lacks}
		}
		chart, err := ChartMeshSettings(*in)
		if err != nil {
			return fmt.Errorf("rendering the injector and mesh ConfigMaps of Istio's %s chart %s: %w", istiochart.Discovery, istiochart.Version(), err)
		}
		if settings.Injector == nil {
			settings.Injector = chart.Injector
		}
		if settings.Mesh == nil {
			settings.Mesh = chart.Mesh
		}
		parts = append(parts, missing...)
	}
	in.MeshSettings = settings
	w.status.MeshSettings = strings.Join(append(parts, versionPart), "; ")
	return nil
}

// chartFallback says where a part the mesh cluster cannot give comes from.
var chartFallback = fmt.Sprintf("from Istio's %s chart %s in this operator", istiochart.Discovery, istiochart.Version())

// missingConfigMaps names the ConfigMaps of the mesh control plane that are missing or
// cannot be copied.
func missingConfigMaps(injector, mesh bool, ns, injectorName, meshName string) []string {
	var out []string
	if injector {
		out = append(out, ns+"/"+injectorName)
	}
	if mesh {
		out = append(out, ns+"/"+meshName)
	}
	return out
}

// noTemplateSourceError says that neither the mesh control plane nor Istio's chart in
// this build has the injection templates and mesh config of the Istio version in use.
type noTemplateSourceError struct {
	version, versionSource string
	// lacks are the mesh control plane's ConfigMaps the mesh cluster does not have (or
	// that cannot be copied).
	lacks []string
}

func (e *noTemplateSourceError) Error() string {
	v, _ := render.ParseVersion(e.version)
	minor := fmt.Sprintf("1.%d", v.Minor)
	return fmt.Sprintf("no injection templates and mesh config for Istio %s (%s): the mesh cluster has no usable ConfigMap %s of the mesh control plane, "+
		"and Istio's %s chart in this operator is %s, which has only those of Istio 1.%d; "+
		"set spec.version to 1.%d.x, or install Istio %s in the mesh cluster (its istiod's ConfigMaps are then copied); nothing new is applied until then",
		e.version, e.versionSource, strings.Join(e.lacks, " and "), istiochart.Discovery, istiochart.Version(), istiochart.Minor(),
		istiochart.Minor(), minor)
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
	// value is the Istio version the cluster's istiod runs.
	value  string
	source string
}

// meshVersion is the Istio version a cluster's istiod runs: spec.version; else the
// version of the mesh istiod (the tag of its discovery container); else the operator's
// --istio-version flag when it is set; else the version of Istio's chart in this build
// (chartVersion).
func (r *ClusterReconciler) meshVersion(ctx context.Context, w *clusterWork, name string) (versionSource, error) {
	if v := w.mc.Spec.Version; v != "" {
		return versionSource{value: v, source: "from spec.version"}, nil
	}
	ns := r.Settings.Namespace
	fallback := func(why string) versionSource {
		if r.Settings.Version != "" {
			return versionSource{value: r.Settings.Version, source: "from the operator's --istio-version flag: " + why}
		}
		return versionSource{value: chartVersion(), source: fmt.Sprintf("from Istio's %s chart %s in this operator: %s", istiochart.Discovery, istiochart.Version(), why)}
	}
	dep := &appsv1.Deployment{}
	err := r.Local.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, dep)
	if apierrors.IsNotFound(err) {
		return fallback(fmt.Sprintf("the mesh cluster has no Deployment %s/%s", ns, name)), nil
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
		return fallback(fmt.Sprintf("Deployment %s/%s of the mesh cluster has no container %s", ns, name, istiodContainer)), nil
	}
	tag := imageTag(image)
	if _, err := render.ParseVersion(tag); err != nil {
		return fallback(fmt.Sprintf("the image %s of the mesh istiod %s/%s does not name a supported release (%v)", image, ns, name, err)), nil
	}
	return versionSource{value: tag, source: fmt.Sprintf("from the mesh istiod %s/%s", ns, name)}, nil
}

// everyClusterOnMeshSettings re-queues every cluster with an entry when the mesh
// control plane's ConfigMaps or istiod Deployment change.
func (r *ClusterReconciler) everyClusterOnMeshSettings(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	fanOut := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
		for _, req := range r.entries(ctx) {
			enqueueFanOut(q, req)
		}
	}
	return handler.TypedFuncs[client.Object, mcreconcile.Request]{
		CreateFunc: func(ctx context.Context, _ event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			fanOut(ctx, q)
		},
		UpdateFunc: func(ctx context.Context, _ event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			fanOut(ctx, q)
		},
		DeleteFunc: func(ctx context.Context, _ event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[mcreconcile.Request]) {
			fanOut(ctx, q)
		},
	}
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
