package realistiod

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// injectorServerName is the name the API server checks istiod's certificate against:
// the injector webhook calls Service istiod in the control plane namespace.
const injectorServerName = "istiod.istio-system.svc"

// injector is how the API server would call the cluster's injector: the path and the
// caBundle of its webhook.
type injector struct {
	path     string
	caBundle []byte
}

// clusterInjector reads the injector webhook of the cluster (MutatingWebhookConfiguration
// istio-sidecar-injector) and checks that it calls Service istio-system/istiod on 443.
func (e *env) clusterInjector() (injector, error) {
	mwc := &admissionregv1.MutatingWebhookConfiguration{}
	if err := e.data.Get(ctx(), client.ObjectKey{Name: "istio-sidecar-injector"}, mwc); err != nil {
		return injector{}, err
	}
	for _, w := range mwc.Webhooks {
		if !strings.HasSuffix(w.Name, "sidecar-injector.istio.io") {
			continue
		}
		s := w.ClientConfig.Service
		if s == nil || s.Namespace != ns || s.Name != "istiod" || ptr.Deref(s.Port, 443) != 443 {
			return injector{}, fmt.Errorf("webhook %s does not call Service %s/istiod on 443: %+v, url %v", w.Name, ns, s, ptr.Deref(w.ClientConfig.URL, ""))
		}
		return injector{path: ptr.Deref(s.Path, "/"), caBundle: w.ClientConfig.CABundle}, nil
	}
	return injector{}, fmt.Errorf("MutatingWebhookConfiguration istio-sidecar-injector has no Istio injection webhook")
}

// inject sends a Pod CREATE to istiod's webhook port over TLS, trusting only the
// webhook's caBundle, as the API server would, and returns the pod with the response's
// JSON patch applied.
func inject(addr string, inj injector, pod *corev1.Pod) (*corev1.Pod, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(inj.caBundle) {
		return nil, fmt.Errorf("the webhook's caBundle holds no certificate")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(fmt.Sprintf("review-%d", time.Now().UnixNano())),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: pod.Namespace,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: injectorServerName, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Post("https://"+addr+inj.path, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, out)
	}
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &answer); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w: %s", err, out)
	}
	r := answer.Response
	if r == nil || r.UID != review.Request.UID {
		return nil, fmt.Errorf("no response for the request: %s", out)
	}
	if !r.Allowed {
		return nil, fmt.Errorf("not allowed: %+v", r.Result)
	}
	if len(r.Patch) == 0 {
		return nil, fmt.Errorf("allowed without a patch: nothing injected")
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		return nil, fmt.Errorf("patch type %v", r.PatchType)
	}
	patched, err := applyJSONPatch(raw, r.Patch)
	if err != nil {
		return nil, err
	}
	injected := &corev1.Pod{}
	if err := json.Unmarshal(patched, injected); err != nil {
		return nil, err
	}
	return injected, nil
}

// applyJSONPatch applies an RFC 6902 patch of add, remove and replace operations (what
// Istio's injector sends).
func applyJSONPatch(doc, patch []byte) ([]byte, error) {
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, fmt.Errorf("decoding the patch: %w", err)
	}
	for _, op := range ops {
		var value any
		if op.Op != "remove" {
			if err := json.Unmarshal(op.Value, &value); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
			}
		}
		var err error
		if root, err = patchAt(root, pointer(op.Path), op.Op, value); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	return json.Marshal(root)
}

func pointer(p string) []string {
	if p == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts
}

// patchAt applies one operation at path below node and returns the new node.
func patchAt(node any, path []string, op string, value any) (any, error) {
	if len(path) == 0 {
		if op == "remove" {
			return nil, nil
		}
		return value, nil
	}
	key, rest := path[0], path[1:]
	switch n := node.(type) {
	case map[string]any:
		if len(rest) == 0 {
			switch op {
			case "add", "replace":
				n[key] = value
			case "remove":
				delete(n, key)
			default:
				return nil, fmt.Errorf("unsupported operation")
			}
			return n, nil
		}
		child, ok := n[key]
		if !ok {
			return nil, fmt.Errorf("no member %q", key)
		}
		v, err := patchAt(child, rest, op, value)
		n[key] = v
		return n, err
	case []any:
		if len(rest) == 0 {
			i := len(n)
			if key != "-" {
				var err error
				if i, err = strconv.Atoi(key); err != nil || i < 0 || i > len(n) {
					return nil, fmt.Errorf("bad index %q", key)
				}
			}
			switch op {
			case "add":
				n = append(n[:i], append([]any{value}, n[i:]...)...)
			case "replace":
				if i == len(n) {
					return nil, fmt.Errorf("index %d out of range", i)
				}
				n[i] = value
			case "remove":
				if i == len(n) {
					return nil, fmt.Errorf("index %d out of range", i)
				}
				n = append(n[:i], n[i+1:]...)
			default:
				return nil, fmt.Errorf("unsupported operation")
			}
			return n, nil
		}
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(n) {
			return nil, fmt.Errorf("bad index %q", key)
		}
		v, err := patchAt(n[i], rest, op, value)
		n[i] = v
		return n, err
	default:
		return nil, fmt.Errorf("%q is below a value that is neither an object nor an array", key)
	}
}

// appPod is an application pod of namespace default.
func appPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name},
			Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080, Name: "http"}}}}},
	}
}

// gatewayPod is a gateway pod as Istio's gateway chart (charts/gateway) makes it: the
// gateway template, injection asked for by label, and a container istio-proxy with
// image auto for the injector to fill in.
func gatewayPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway-1", Namespace: "default",
			Labels: map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "sidecar.istio.io/inject": "true"},
			Annotations: map[string]string{"inject.istio.io/templates": "gateway", "prometheus.io/port": "15020",
				"prometheus.io/scrape": "true", "prometheus.io/path": "/stats/prometheus"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "auto",
			Ports: []corev1.ContainerPort{{ContainerPort: 15090, Protocol: corev1.ProtocolTCP, Name: "http-envoy-prom"}}}}},
	}
}

// container finds a container by name among the pod's containers and init containers.
func container(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// checkPlainInjection checks what istiod injected into appPod: istio-proxy, as a
// container or as a native sidecar, and istio-init where the template has it, with the
// mesh's proxy resources and the local istiod as discovery and CA address.
func checkPlainInjection(p *corev1.Pod) error {
	proxy := container(p, "istio-proxy")
	if proxy == nil {
		return fmt.Errorf("no istio-proxy: containers %v, init containers %v", names(p.Spec.Containers), names(p.Spec.InitContainers))
	}
	native := ptr.Deref(proxy.RestartPolicy, "") == corev1.ContainerRestartPolicyAlways
	if !native && container(p, "istio-init") == nil {
		return fmt.Errorf("istio-proxy is no native sidecar and there is no istio-init: init containers %v", names(p.Spec.InitContainers))
	}
	if got := proxy.Resources.Requests.Cpu().String(); got != "50m" {
		return fmt.Errorf("istio-proxy requests cpu %s, not the mesh's 50m (global.proxy.resources)", got)
	}
	if got := proxy.Resources.Limits.Memory().String(); got != "256Mi" {
		return fmt.Errorf("istio-proxy limits memory %s, not the mesh's 256Mi (global.proxy.resources)", got)
	}
	return checkLocalIstiod(proxy)
}

// checkLocalIstiod checks that the proxy connects to, and gets its certificates from,
// the cluster's own istiod, and that it knows its cluster.
func checkLocalIstiod(proxy *corev1.Container) error {
	if got := envValue(proxy, "CA_ADDR"); got != localIstiod {
		return fmt.Errorf("CA_ADDR is %q, not %s", got, localIstiod)
	}
	var pc struct {
		DiscoveryAddress string `json:"discoveryAddress"`
	}
	if err := json.Unmarshal([]byte(envValue(proxy, "PROXY_CONFIG")), &pc); err != nil {
		return fmt.Errorf("PROXY_CONFIG: %w", err)
	}
	// The injector leaves out a discovery address equal to the agent's default, which
	// is the local istiod's (pkg/kube/inject/template.go cleanProxyConfig,
	// pkg/config/mesh DefaultProxyConfig); the mesh's own would be written out.
	if pc.DiscoveryAddress != "" && pc.DiscoveryAddress != localIstiod {
		return fmt.Errorf("PROXY_CONFIG's discoveryAddress is %q, not %s", pc.DiscoveryAddress, localIstiod)
	}
	if got := envValue(proxy, "ISTIO_META_CLUSTER_ID"); got != clusterID {
		return fmt.Errorf("ISTIO_META_CLUSTER_ID is %q, not %s", got, clusterID)
	}
	return nil
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// excludedOutbound reports whether the pod's traffic redirection excludes the port
// from outbound capture: istio-init's -o argument, or, where the template puts the
// redirection elsewhere, any argument or env of a container.
func excludedOutbound(p *corev1.Pod, port string) bool {
	if init := container(p, "istio-init"); init != nil {
		for i, a := range init.Args {
			if a == "-o" && i+1 < len(init.Args) && contains(strings.Split(init.Args[i+1], ","), port) {
				return true
			}
		}
		return false
	}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, a := range c.Args {
			if strings.Contains(a, port) {
				return true
			}
		}
		for _, e := range c.Env {
			if strings.Contains(e.Name, "EXCLUDE") && strings.Contains(e.Value, port) {
				return true
			}
		}
	}
	return false
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if strings.TrimSpace(x) == v {
			return true
		}
	}
	return false
}
