package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// dataPlaneView is what runs in a data-plane cluster, read from its API server.
type dataPlaneView struct {
	// istiod is the operator's istiod Deployment, nil when there is none.
	istiod *appsv1.Deployment
	// injectors and validators are the webhook configurations, with where each of
	// their webhooks sends requests.
	injectors, validators []webhookConfig
	// owned counts the objects that carry the operator's label.
	owned int
	// mirrored names the Istio configuration copies, as Kind namespace/name.
	mirrored []string
	// crds counts the Istio CRDs the operator installed.
	crds int
	// lead is the control plane namespace's topology.istio.io/controlPlaneClusters:
	// which istiod leads the cluster.
	lead string
	// restarts maps each Deployment but istiod to its restart annotation, "" when
	// it was never restarted.
	restarts map[string]string
	// address is Service istio-system/istiod, the cluster's control plane address.
	address addressView
	// settings are what the operator's istiod copied of the mesh istiod's settings,
	// nil when the operator has no mesh ConfigMap istio there.
	settings *meshSettings
}

// addressView is Service istio-system/istiod and the EndpointSlices labelled for it.
type addressView struct {
	exists       bool
	typ          corev1.ServiceType
	externalName string
	selector     map[string]string
	// slices holds the addresses of each EndpointSlice labelled for the Service.
	slices [][]string
}

// flavour names where the address leads: the two flavours of Istio's remote profile
// (localmesh.AddressExternalName, localmesh.AddressEndpointSlice), addressLocal, or
// addressNone and addressOther.
func (a addressView) flavour() string {
	switch {
	case !a.exists:
		return addressNone
	case a.typ == corev1.ServiceTypeExternalName:
		return localmesh.AddressExternalName
	case a.typ == corev1.ServiceTypeClusterIP && maps.Equal(a.selector, switching.LocalSelector) && len(a.slices) == 0:
		return addressLocal
	case len(a.selector) == 0 && len(a.slices) > 0:
		return localmesh.AddressEndpointSlice
	}
	return addressOther
}

const (
	addressNone  = "none"
	addressLocal = "local istiod"
	addressOther = "other"
)

// String says in words where the address leads.
func (a addressView) String() string {
	switch a.flavour() {
	case addressNone:
		return "no Service istio-system/istiod"
	case localmesh.AddressExternalName:
		return "ExternalName " + a.externalName + " (the mesh control plane)"
	case localmesh.AddressEndpointSlice:
		var addrs []string
		for _, s := range a.slices {
			addrs = append(addrs, strings.Join(s, ","))
		}
		return fmt.Sprintf("EndpointSlice: selector-less, %d EndpointSlice(s) to %s (the mesh control plane)", len(a.slices), strings.Join(addrs, " "))
	case addressLocal:
		return fmt.Sprintf("%s, selector %s (the cluster's own istiod)", a.typ, selectorString(a.selector))
	}
	return fmt.Sprintf("%s, selector %s, %d EndpointSlice(s)", a.typ, selectorString(a.selector), len(a.slices))
}

func selectorString(sel map[string]string) string {
	if len(sel) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

// meshSettings are the mesh istiod's own settings (localmesh.MeshValues) as the
// operator's ConfigMaps istio and istio-sidecar-injector of a cluster carry them.
type meshSettings struct {
	outboundTrafficPolicy string
	accessLogFile         string
	proxyMemoryLimit      string
}

type webhookConfig struct {
	name    string
	targets []string // one per webhook
}

func inspect(ctx context.Context, c *localmesh.Cluster) (*dataPlaneView, error) {
	v := &dataPlaneView{restarts: map[string]string{}}
	ns := &corev1.Namespace{}
	err := c.Client.Get(ctx, types.NamespacedName{Name: localmesh.Namespace}, ns)
	if err != nil {
		return nil, err
	}
	v.lead = ns.Annotations[switching.LeadAnnotation]
	deployments := &appsv1.DeploymentList{}
	if err := c.Client.List(ctx, deployments); err != nil {
		return nil, err
	}
	for i := range deployments.Items {
		d := &deployments.Items[i]
		if d.Namespace == localmesh.Namespace && d.Name == "istiod" {
			if d.Labels[render.ManagedByLabel] == render.ManagedByValue {
				v.istiod = d
			}
			continue
		}
		v.restarts[d.Namespace+"/"+d.Name] = d.Spec.Template.Annotations[switching.RestartAnnotation]
	}
	mutating := &admissionv1.MutatingWebhookConfigurationList{}
	if err := c.Client.List(ctx, mutating); err != nil {
		return nil, err
	}
	for _, mwc := range mutating.Items {
		wc := webhookConfig{name: mwc.Name}
		for _, w := range mwc.Webhooks {
			wc.targets = append(wc.targets, target(w.ClientConfig))
		}
		v.injectors = append(v.injectors, wc)
	}
	validating := &admissionv1.ValidatingWebhookConfigurationList{}
	if err := c.Client.List(ctx, validating); err != nil {
		return nil, err
	}
	for _, vwc := range validating.Items {
		wc := webhookConfig{name: vwc.Name}
		for _, w := range vwc.Webhooks {
			wc.targets = append(wc.targets, target(w.ClientConfig))
		}
		v.validators = append(v.validators, wc)
	}
	if v.address, err = readAddress(ctx, c); err != nil {
		return nil, err
	}
	if v.settings, err = readMeshSettings(ctx, c); err != nil {
		return nil, err
	}
	return v, v.countOwned(ctx, c)
}

// readAddress reads Service istio-system/istiod and its EndpointSlices.
func readAddress(ctx context.Context, c *localmesh.Cluster) (addressView, error) {
	var a addressView
	svc := &corev1.Service{}
	err := c.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: switching.AddressService}, svc)
	if apierrors.IsNotFound(err) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	a.exists, a.typ, a.externalName, a.selector = true, svc.Spec.Type, svc.Spec.ExternalName, svc.Spec.Selector
	list := &discoveryv1.EndpointSliceList{}
	if err := c.Client.List(ctx, list, client.InNamespace(localmesh.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: switching.AddressService}); err != nil {
		return a, err
	}
	for _, s := range list.Items {
		var addrs []string
		for _, ep := range s.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
		a.slices = append(a.slices, addrs)
	}
	return a, nil
}

// readMeshSettings reads the mesh's settings from the operator's mesh and injector
// ConfigMaps of a cluster; nil when the operator has no mesh ConfigMap there.
func readMeshSettings(ctx context.Context, c *localmesh.Cluster) (*meshSettings, error) {
	get := func(name string) (*corev1.ConfigMap, error) {
		cm := &corev1.ConfigMap{}
		err := c.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: name}, cm)
		if apierrors.IsNotFound(err) || (err == nil && cm.Labels[render.ManagedByLabel] != render.ManagedByValue) {
			return nil, nil
		}
		return cm, err
	}
	mesh, err := get("istio")
	if err != nil || mesh == nil {
		return nil, err
	}
	s := &meshSettings{}
	var meshConfig struct {
		AccessLogFile         string `json:"accessLogFile"`
		OutboundTrafficPolicy struct {
			Mode string `json:"mode"`
		} `json:"outboundTrafficPolicy"`
	}
	if err := yaml.Unmarshal([]byte(mesh.Data["mesh"]), &meshConfig); err != nil {
		return nil, fmt.Errorf("%s: ConfigMap istio: %w", c.ID, err)
	}
	s.outboundTrafficPolicy, s.accessLogFile = meshConfig.OutboundTrafficPolicy.Mode, meshConfig.AccessLogFile
	injector, err := get("istio-sidecar-injector")
	if err != nil {
		return nil, err
	}
	if injector != nil && injector.Data["values"] != "" {
		var values struct {
			Global struct {
				Proxy struct {
					Resources struct {
						Limits map[string]string `json:"limits"`
					} `json:"resources"`
				} `json:"proxy"`
			} `json:"global"`
		}
		if err := json.Unmarshal([]byte(injector.Data["values"]), &values); err != nil {
			return nil, fmt.Errorf("%s: ConfigMap istio-sidecar-injector: %w", c.ID, err)
		}
		s.proxyMemoryLimit = values.Global.Proxy.Resources.Limits["memory"]
	}
	return s, nil
}

// countOwned finds what the operator created: mirrored Istio configuration, Istio's
// CRDs, and istiod's objects.
func (v *dataPlaneView) countOwned(ctx context.Context, c *localmesh.Cluster) error {
	kinds := append(append(mirror.Kinds(), mirror.CRDGVK, corev1.SchemeGroupVersion.WithKind("Secret")), render.OwnedKinds...)
	for _, gvk := range kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		err := c.Client.List(ctx, list, client.MatchingLabels{render.ManagedByLabel: render.ManagedByValue})
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			continue // Istio's kinds exist only where their CRDs are installed
		}
		if err != nil {
			return err
		}
		v.owned += len(list.Items)
		switch {
		case gvk == mirror.CRDGVK:
			v.crds += len(list.Items)
		case slices.Contains(mirror.Kinds(), gvk):
			for _, item := range list.Items {
				v.mirrored = append(v.mirrored, fmt.Sprintf("%s %s/%s", gvk.Kind, item.Namespace, item.Name))
			}
		}
	}
	slices.Sort(v.mirrored)
	return nil
}

// target says where a webhook sends requests, as a URL.
func target(cc admissionv1.WebhookClientConfig) string {
	if cc.URL != nil {
		return *cc.URL
	}
	if cc.Service == nil {
		return "nowhere"
	}
	return fmt.Sprintf("https://%s.%s.svc:%d%s", cc.Service.Name, cc.Service.Namespace,
		ptr.Deref(cc.Service.Port, 443), ptr.Deref(cc.Service.Path, ""))
}

// serviceInjection and serviceValidation are the targets of webhooks that call
// Service istio-system/istiod: the local istiod's once the Service leads there, the
// mesh control plane's before. Paths may go on (Istio's remote profile injects at
// /inject/cluster/<id>/net/<network>).
var (
	serviceInjection  = target(switching.LocalInjection(localmesh.Namespace, nil))
	serviceValidation = "https://istiod." + localmesh.Namespace + ".svc:443/validate"
)

// meshInjection is where the remote profile's injector of a cluster sends pods before
// the switch: the mesh istiod's URL (ExternalName flavour), or Service istiod with the
// cluster's injection path (EndpointSlice flavour).
func meshInjection(id, address string) string {
	if address == localmesh.AddressExternalName {
		return localmesh.MeshInjectionURL(id)
	}
	return "https://istiod." + localmesh.Namespace + ".svc:443" + istiochart.InjectionPath(id, localmesh.Network)
}

// istiodAvailable reads whether a Deployment has all replicas of its spec available.
func istiodAvailable(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= want
}

// meshConfig reads the ASMMeshConfig named default.
func meshConfig(ctx context.Context, m *localmesh.Mesh) (*v1beta1.ASMMeshConfig, error) {
	mc := &v1beta1.ASMMeshConfig{}
	return mc, m.Mesh.Client.Get(ctx, types.NamespacedName{Name: v1beta1.DefaultName}, mc)
}
