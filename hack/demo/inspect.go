package main

import (
	"context"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
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
}

type webhookConfig struct {
	name    string
	targets []string // one per webhook
}

func inspect(ctx context.Context, c *localmesh.Cluster) (*dataPlaneView, error) {
	v := &dataPlaneView{restarts: map[string]string{}}
	ns := &corev1.Namespace{}
	if err := c.Client.Get(ctx, types.NamespacedName{Name: localmesh.Namespace}, ns); err != nil {
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
	return v, v.countOwned(ctx, c)
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

// localInjection and localValidation are the targets of webhooks served by the
// cluster's own istiod, as istiod's chart names them.
var (
	localInjection  = target(switching.LocalInjection(localmesh.Namespace, nil))
	localValidation = "https://istiod." + localmesh.Namespace + ".svc:443/validate"
)

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
