package localmesh

import (
	"context"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// MeshIstiodURL is where the mesh control plane serves sidecar injection for a
// data-plane cluster, as Istio's remote profile configures it.
func MeshIstiodURL(clusterID string) string {
	return "https://istiod.mesh.example:15017/inject/cluster/" + clusterID + "/net/network-1"
}

// MeshValidationURL is where the remote profile sends validation (base.validationURL).
const MeshValidationURL = "https://istiod.mesh.example:15017/validate"

// Gateways are the Istio gateway Deployments of every data-plane cluster, as
// "namespace/name".
var Gateways = []string{Namespace + "/istio-eastwestgateway", Namespace + "/istio-ingressgateway"}

// AppDeployment is an ordinary workload of every data-plane cluster.
const AppDeployment = "default/httpbin"

// installManagedDataPlane puts into a data-plane cluster what Istio's remote profile
// installs there under a managed control plane: the control plane namespace, led by
// the mesh's istiod; the sidecar injector and the validator, which call the mesh's
// istiod; the mesh's root certificate as that istiod publishes it; the ingress and
// east-west gateways. An ordinary workload stands beside them.
func (c *Cluster) installManagedDataPlane(ctx context.Context, scheme *runtime.Scheme, meshRoot []byte) error {
	injector, err := managedInjector(c.ID, meshRoot, scheme)
	if err != nil {
		return err
	}
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace,
		Annotations: map[string]string{switching.LeadAnnotation: MeshClusterID}}}
	rootCert := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: Namespace},
		Data: map[string]string{"root-cert.pem": string(meshRoot)}}
	objs := []client.Object{namespace, injector, managedValidator(meshRoot), rootCert,
		gateway("istio-ingressgateway", "ingressgateway"),
		gateway("istio-eastwestgateway", "eastwestgateway"),
		deployment("default", "httpbin", map[string]string{"app": "httpbin"}, "docker.io/mccutchen/go-httpbin:v2.15.0"),
	}
	for _, o := range objs {
		if err := c.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// managedInjector is the remote profile's injector: Istio's webhooks and selectors,
// each calling the mesh's istiod by URL.
func managedInjector(clusterID string, meshRoot []byte, scheme *runtime.Scheme) (*admissionv1.MutatingWebhookConfiguration, error) {
	in := render.Inputs{ClusterID: clusterID, Namespace: Namespace, Version: manager.DefaultIstioVersion, Hub: "docker.io/istio"}
	obj, err := render.InjectionWebhook(in, meshRoot, scheme)
	if err != nil {
		return nil, err
	}
	mwc := obj.(*admissionv1.MutatingWebhookConfiguration)
	// Labels of the mesh control plane's installation, not of this operator.
	mwc.Labels = map[string]string{"app": "sidecar-injector", "istio.io/rev": "default", "release": "istio"}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionv1.WebhookClientConfig{URL: ptr.To(MeshIstiodURL(clusterID)), CABundle: meshRoot}
	}
	return mwc, nil
}

// managedValidator is the remote profile's validator of Istio configuration.
func managedValidator(meshRoot []byte) *admissionv1.ValidatingWebhookConfiguration {
	return &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-validator-istio-system", Labels: map[string]string{"app": "istiod", "istio.io/rev": "default"}},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:         "rev.validation.istio.io",
			ClientConfig: admissionv1.WebhookClientConfig{URL: ptr.To(MeshValidationURL), CABundle: meshRoot},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule: admissionv1.Rule{APIGroups: []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"},
					APIVersions: []string{"*"}, Resources: []string{"*"}},
			}},
			// Istio's chart starts with Ignore; istiod tightens it once it serves.
			FailurePolicy:           ptr.To(admissionv1.Ignore),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

func gateway(name, istioLabel string) *appsv1.Deployment {
	return deployment(Namespace, name, map[string]string{"app": name, "istio": istioLabel},
		"docker.io/istio/proxyv2:"+manager.DefaultIstioVersion)
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
