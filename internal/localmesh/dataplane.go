package localmesh

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// Network is the network of every cluster of the local mesh (global.network).
const Network = "network-1"

// MeshID is the mesh ID of every cluster of the local mesh (global.meshID).
const MeshID = "mesh1"

// The two flavours of control plane address Istio's remote profile gives a data-plane
// cluster: Service istio-system/istiod, which sidecars and the profile's webhooks use to
// reach the mesh's istiod.
const (
	// AddressExternalName: global.remotePilotAddress is a host name (MeshPilotHost), so
	// Service istiod is of type ExternalName; the injector calls the mesh's istiod by
	// URL (istiodRemote.injectionURL, MeshInjectionURL).
	AddressExternalName = switching.FlavourExternalName
	// AddressEndpointSlice: global.remotePilotAddress is an IP
	// (istiochart.DocumentationAddress), so Service istiod selects nothing and an
	// EndpointSlice holds the IP; the injector calls Service istiod.
	AddressEndpointSlice = switching.FlavourEndpointSlice
)

// MeshPilotHost is the remote pilot address of the ExternalName flavour: a loopback
// name, so that nothing leaves the machine.
const MeshPilotHost = "localhost"

// DataPlane is a data-plane cluster to start: its ID, the flavour of its control plane
// address (AddressExternalName or AddressEndpointSlice) and whether it has Istio's CRDs.
type DataPlane struct {
	ID      string
	Address string
	// IstioCRDs keeps the CustomResourceDefinitions Istio's base chart renders in the
	// remote profile (base.enableCRDTemplates, on by default), as a cluster installed
	// with istioctl or Helm has them. Without it the cluster has none of them (as with
	// base.excludedCRDs listing them all), so the operator installs them.
	IstioCRDs bool
}

// MeshInjectionURL is where the injector of a cluster of the ExternalName flavour sends
// pods (istiodRemote.injectionURL): the mesh istiod's injection path for the cluster and
// network, at a loopback port nothing listens on.
func MeshInjectionURL(clusterID string) string {
	return "https://127.0.0.1:1" + istiochart.InjectionPath(clusterID, Network)
}

// Gateways are the Istio gateway Deployments of every data-plane cluster, as
// "namespace/name".
var Gateways = []string{Namespace + "/istio-eastwestgateway", Namespace + "/istio-ingressgateway"}

// AppDeployment is an ordinary workload of every data-plane cluster.
const AppDeployment = "default/httpbin"

// RootCertConfigMap is where an istiod publishes its root certificate.
const RootCertConfigMap = "istio-ca-root-cert"

// dataPlaneObjects are what a data-plane cluster under the mesh control plane holds:
// the control plane namespace, led by the mesh's istiod; Istio's remote profile
// (rendered from Istio's base and istio-discovery charts) of the cluster's flavour; the
// mesh's root certificate as the mesh's istiod publishes it; the ingress and
// east-west gateways as Istio's gateway chart renders them; an ordinary workload.
func dataPlaneObjects(dp DataPlane, meshRoot []byte) ([]client.Object, error) {
	opts := istiochart.RemoteOptions{
		Namespace:         Namespace,
		ClusterID:         dp.ID,
		Network:           Network,
		MeshID:            MeshID,
		InjectionCABundle: meshRoot,
		CRDs:              dp.IstioCRDs,
	}
	switch dp.Address {
	case AddressExternalName:
		opts.RemotePilotAddress, opts.InjectionURL = MeshPilotHost, MeshInjectionURL(dp.ID)
	case AddressEndpointSlice:
		opts.RemotePilotAddress = istiochart.DocumentationAddress
	default:
		return nil, fmt.Errorf("cluster %s: unknown control plane address flavour %q (want %s or %s)",
			dp.ID, dp.Address, AddressExternalName, AddressEndpointSlice)
	}
	remote, err := istiochart.RemoteProfile(opts)
	if err != nil {
		return nil, fmt.Errorf("rendering Istio's remote profile for %s: %w", dp.ID, err)
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace,
			Annotations: map[string]string{switching.LeadAnnotation: MeshClusterID}}},
	}
	objs = append(objs, unstructuredObjects(remote)...)
	objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Namespace: Namespace},
		Data: map[string]string{"root-cert.pem": string(meshRoot)}})
	for _, gw := range []struct {
		name   string
		values map[string]any
	}{
		{"istio-ingressgateway", nil},
		{"istio-eastwestgateway", map[string]any{"networkGateway": Network}},
	} {
		rendered, err := istiochart.Render("gateway", gw.name, Namespace, gw.values)
		if err != nil {
			return nil, fmt.Errorf("rendering Istio's gateway chart for %s: %w", gw.name, err)
		}
		objs = append(objs, unstructuredObjects(rendered)...)
	}
	objs = append(objs, deployment("default", "httpbin", map[string]string{"app": "httpbin"}, "docker.io/mccutchen/go-httpbin:v2.15.0"))
	return objs, nil
}

// installDataPlane creates a data-plane cluster's objects.
func (c *Cluster) installDataPlane(ctx context.Context, meshRoot []byte) error {
	objs, err := dataPlaneObjects(DataPlane{ID: c.ID, Address: c.Address, IstioCRDs: c.istioCRDs}, meshRoot)
	if err != nil {
		return err
	}
	_, err = c.createAll(ctx, objs)
	return err
}

// createAll creates objects in order; one whose kind the API server does not serve
// (a CRD that is not installed) is skipped and returned.
func (c *Cluster) createAll(ctx context.Context, objs []client.Object) (skipped []client.Object, err error) {
	for _, o := range objs {
		err := c.Client.Create(ctx, o)
		if meta.IsNoMatchError(err) {
			skipped = append(skipped, o)
			continue
		}
		if err != nil {
			return skipped, fmt.Errorf("creating %s %s in %s: %w", kindOf(o), client.ObjectKeyFromObject(o), c.ID, err)
		}
	}
	return skipped, nil
}

func kindOf(o client.Object) string {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u.GetKind()
	}
	return fmt.Sprintf("%T", o)
}

func unstructuredObjects(objs []*unstructured.Unstructured) []client.Object {
	out := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o)
	}
	return out
}

func deployment(namespace, name string, labels map[string]string, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}
