package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// meshIstiodURL is where cluster-1's injector calls the mesh control plane: Istio's
// remote profile with istiodRemote.injectionURL, at a loopback port nothing listens on.
func meshIstiodURL(id string) string {
	return "https://127.0.0.1:1/inject/cluster/" + id + "/net/network-1"
}

// remoteProfile is what Istio's remote profile installs in a data-plane cluster,
// rendered from Istio's own charts: cluster-1 reaches the mesh control plane by host
// name (a Service istiod of type ExternalName) and injects through a URL; cluster-2
// by IP (a selector-less Service istiod with an EndpointSlice), injecting through that
// Service. Both trust the mesh root for injection; base's istiod-default-validator
// calls Service istiod.
func remoteProfile(id string) []*unstructured.Unstructured {
	opts := istiochart.RemoteOptions{ClusterID: id, Network: "network-1", InjectionCABundle: []byte("mesh-root")}
	if id == "cluster-1" {
		opts.RemotePilotAddress, opts.InjectionURL = "localhost", meshIstiodURL(id)
	} else {
		opts.RemotePilotAddress = istiochart.DocumentationAddress
	}
	objs, err := istiochart.RemoteProfile(opts)
	Expect(err).NotTo(HaveOccurred())
	return objs
}

// meshInjector is where a cluster's injector sends pods before the switch.
func meshInjector(rc *remoteCluster) string {
	if rc.id == "cluster-1" {
		return meshIstiodURL(rc.id)
	}
	return "service/istio-system/istiod ca=mesh-root"
}

// address says where Service istiod, the cluster's control plane address, leads:
// "ExternalName <host>", or "ClusterIP <selector>" and how many EndpointSlices are
// labelled for it.
func (rc *remoteCluster) address() string {
	svc := &corev1.Service{}
	Expect(rc.client.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod"}, svc)).To(Succeed())
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "ExternalName " + svc.Spec.ExternalName
	}
	slices := &discoveryv1.EndpointSliceList{}
	Expect(rc.client.List(ctx(), slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: "istiod"})).To(Succeed())
	return fmt.Sprintf("%s %v slices=%d", svc.Spec.Type, svc.Spec.Selector, len(slices.Items))
}

// localAddress is Service istiod leading to the local istiod's pods.
const localAddress = "ClusterIP map[app:istiod istio:pilot] slices=0"

// meshClusterID is the cluster ID of the mesh control plane, which the remote profile
// names in topology.istio.io/controlPlaneClusters so that it leads the cluster.
const meshClusterID = "mesh"

// validators lists where each Istio validation webhook configuration sends requests.
func (rc *remoteCluster) validators() map[string]string {
	list := &admissionv1.ValidatingWebhookConfigurationList{}
	Expect(rc.client.List(ctx(), list)).To(Succeed())
	out := map[string]string{}
	for _, vwc := range list.Items {
		for _, w := range vwc.Webhooks {
			if w.ClientConfig.URL != nil {
				out[vwc.Name] = *w.ClientConfig.URL
			} else {
				s := w.ClientConfig.Service
				out[vwc.Name] = "service/" + s.Namespace + "/" + s.Name + ptr.Deref(s.Path, "") + " ca=" + string(w.ClientConfig.CABundle)
			}
		}
	}
	return out
}

// lead is the control plane namespace's topology.istio.io/controlPlaneClusters.
func (rc *remoteCluster) lead() string {
	n := &corev1.Namespace{}
	Expect(rc.client.Get(ctx(), client.ObjectKey{Name: ns}, n)).To(Succeed())
	return n.Annotations[switching.LeadAnnotation]
}

// installManagedDataPlane puts into a data-plane cluster what a mesh with a managed
// control plane has there: the remote profile's injector, which calls the mesh's istiod,
// an ingress and an east-west gateway, a Gateway API gateway, and an ordinary workload.
func (rc *remoteCluster) installManagedDataPlane() {
	for _, obj := range remoteProfile(rc.id) {
		Expect(rc.client.Create(ctx(), obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	// The mesh's istiod publishes its root certificate in every namespace it controls.
	Expect(rc.client.Create(ctx(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: ns},
		Data: map[string]string{"root-cert.pem": "mesh-root"}})).To(Succeed())

	Expect(rc.client.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gateways"}})).To(Succeed())
	for _, d := range []struct{ namespace, name, labelKey, labelValue string }{
		{ns, "istio-ingressgateway", "istio", "ingressgateway"},
		{ns, "istio-eastwestgateway", "istio", "eastwestgateway"},
		{"gateways", "bookinfo-gateway-istio", "gateway.istio.io/managed", "istio.io-gateway-controller"},
		{"default", "httpbin", "app", "httpbin"},
	} {
		Expect(rc.client.Create(ctx(), deployment(d.namespace, d.name, map[string]string{d.labelKey: d.labelValue, "app": d.name}))).To(Succeed())
	}
}

func deployment(namespace, name string, lbls map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: lbls},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/" + name}}},
			},
		},
	}
}

// gatewayNames are the Deployments the operator must restart, and only those.
var gatewayNames = []string{"gateways/bookinfo-gateway-istio", "istio-system/istio-eastwestgateway", "istio-system/istio-ingressgateway"}

// restarts returns each Deployment's restart annotation and generation.
func (rc *remoteCluster) restarts() map[string]string {
	out := map[string]string{}
	list := &appsv1.DeploymentList{}
	Expect(rc.client.List(ctx(), list)).To(Succeed())
	for _, d := range list.Items {
		if d.Name == "istiod" {
			continue
		}
		out[d.Namespace+"/"+d.Name] = fmt.Sprintf("%s@%d", d.Spec.Template.Annotations[switching.RestartAnnotation], d.Generation)
	}
	return out
}

// injectionCase is a pod in a namespace, with labels Istio's injection looks at.
type injectionCase struct {
	name             string
	nsLabels, labels map[string]string
	injected         bool
}

var injectionCases = []injectionCase{
	{"namespace istio-injection=enabled", map[string]string{"istio-injection": "enabled"}, nil, true},
	{"namespace istio.io/rev=default", map[string]string{"istio.io/rev": "default"}, nil, true},
	{"pod sidecar.istio.io/inject=true", nil, map[string]string{"sidecar.istio.io/inject": "true"}, true},
	{"pod istio.io/rev=default", nil, map[string]string{"istio.io/rev": "default"}, true},
	{"pod opted out in an injected namespace", map[string]string{"istio-injection": "enabled"}, map[string]string{"sidecar.istio.io/inject": "false"}, false},
	{"plain pod in a plain namespace", nil, nil, false},
}

// injectors lists, per case, where every matching injection webhook in the cluster
// would send the pod: the URL of the mesh istiod, or service/<ns>/<name>.
func (rc *remoteCluster) injectors() map[string][]string {
	list := &admissionv1.MutatingWebhookConfigurationList{}
	Expect(rc.client.List(ctx(), list)).To(Succeed())
	out := map[string][]string{}
	for _, c := range injectionCases {
		out[c.name] = []string{}
		for _, mwc := range list.Items {
			for _, w := range mwc.Webhooks {
				if !selects(w.NamespaceSelector, c.nsLabels) || !selects(w.ObjectSelector, c.labels) {
					continue
				}
				target := ""
				if w.ClientConfig.URL != nil {
					target = *w.ClientConfig.URL
				} else {
					target = "service/" + w.ClientConfig.Service.Namespace + "/" + w.ClientConfig.Service.Name + " ca=" + string(w.ClientConfig.CABundle)
				}
				out[c.name] = append(out[c.name], target)
			}
		}
	}
	return out
}

func selects(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	Expect(err).NotTo(HaveOccurred())
	return s.Matches(labels.Set(set))
}

// expectOneInjector checks that each pod that Istio injects is sent to exactly one
// injector, target, and that no other pod is sent anywhere.
func (rc *remoteCluster) expectOneInjector(target string) {
	got := rc.injectors()
	for _, c := range injectionCases {
		if c.injected {
			Expect(got[c.name]).To(Equal([]string{target}), c.name)
		} else {
			Expect(got[c.name]).To(BeEmpty(), c.name)
		}
	}
}

func localInjector(rc *remoteCluster) string {
	return "service/istio-system/istiod ca=local-root-of-" + rc.id
}

// inventory reads every object of every listable kind from the cluster's API server,
// without what the API server itself keeps changing (resource versions, managed
// fields, generations, status) and without the gateways' restart annotation.
func (rc *remoteCluster) inventory() map[string]string {
	disc, err := discovery.NewDiscoveryClientForConfig(rc.env.Config)
	Expect(err).NotTo(HaveOccurred())
	dyn, err := dynamic.NewForConfig(rc.env.Config)
	Expect(err).NotTo(HaveOccurred())
	resources, err := disc.ServerPreferredResources()
	Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for _, group := range resources {
		gv, err := schema.ParseGroupVersion(group.GroupVersion)
		Expect(err).NotTo(HaveOccurred())
		for _, res := range group.APIResources {
			if !strings.Contains(strings.Join(res.Verbs, ","), "list") || strings.Contains(res.Name, "/") ||
				res.Kind == "Event" || res.Kind == "Lease" {
				continue // events and leases are the API server's own traffic
			}
			list, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx(), metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				continue // the API of a CRD deleted since discovery: it has no objects left
			}
			Expect(err).NotTo(HaveOccurred(), res.Name)
			for _, item := range list.Items {
				if res.Kind == "ConfigMap" && item.GetName() == "istio-ca-root-cert" {
					continue // written by whichever istiod controls the cluster, not by the operator
				}
				out[res.Kind+"/"+item.GetNamespace()+"/"+item.GetName()] = normalized(item)
			}
		}
	}
	return out
}

func normalized(u unstructured.Unstructured) string {
	for _, f := range []string{"resourceVersion", "managedFields", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations", switching.RestartAnnotation)
	if ann, ok, _ := unstructured.NestedMap(u.Object, "spec", "template", "metadata", "annotations"); ok && len(ann) == 0 {
		unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations")
	}
	raw, err := json.Marshal(u.Object)
	Expect(err).NotTo(HaveOccurred())
	return string(raw)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// keyDifference names the keys only one of the two inventories has, "+" for after and
// "-" for before.
func keyDifference(after, before map[string]string) []string {
	var out []string
	for k := range after {
		if _, ok := before[k]; !ok {
			out = append(out, "+"+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, "-"+k)
		}
	}
	sort.Strings(out)
	return out
}

// stopRollouts ends rollOutGateways.
var stopRollouts context.CancelFunc

// rollOutGateways stands in for the Deployment controller of the data-plane clusters,
// which envtest does not run: every Deployment other than istiod (whose readiness the
// tests set themselves) is reported rolled out, as its new pods would be, unless the
// cluster holds its rollouts. Errors, such as a stopped API server, are ignored.
func rollOutGateways(c context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.Done():
			return
		case <-tick.C:
		}
		for _, rc := range remotes {
			if rc.holdRollouts.Load() {
				continue
			}
			rc.rollOut(c)
		}
	}
}

func (rc *remoteCluster) rollOut(c context.Context) {
	c, cancel := context.WithTimeout(c, 2*time.Second)
	defer cancel()
	list := &appsv1.DeploymentList{}
	if err := rc.client.List(c, list); err != nil {
		return
	}
	for i := range list.Items {
		d := &list.Items[i]
		if d.Namespace == ns && d.Name == "istiod" {
			continue
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		done := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		if equality.Semantic.DeepEqual(d.Status, done) {
			continue
		}
		d.Status = done
		_ = rc.client.Status().Update(c, d)
	}
}

// expectAsBefore checks that the cluster is as it was before the operator came, object
// for object, apart from what inventory leaves out (the gateways' restart annotation).
func (rc *remoteCluster) expectAsBefore() {
	// Deleting a CRD takes the API server a moment (its objects, then its API).
	Eventually(func() []string { return keyDifference(rc.inventory(), rc.initial) }).Should(BeEmpty())
	after := rc.inventory()
	var changed []string
	for _, k := range keys(rc.initial) {
		if v := after[k]; v != rc.initial[k] {
			changed = append(changed, k+"\n  before: "+rc.initial[k]+"\n  after:  "+v)
		}
	}
	Expect(changed).To(BeEmpty(), "objects changed")
}
