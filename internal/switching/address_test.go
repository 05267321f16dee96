package switching

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func remoteService(typ corev1.ServiceType, externalName string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: AddressService, UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Type: typ, ExternalName: externalName}}
}

func slice(name, managedBy string) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-" + "name",
		Labels: map[string]string{discoveryv1.LabelServiceName: AddressService, discoveryv1.LabelManagedBy: managedBy}}}
}

func TestClassifyAddress(t *testing.T) {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: AddressService}} //nolint:staticcheck // Istio 1.22-1.27
	mirrored := ForeignSlices([]discoveryv1.EndpointSlice{slice("istiod-abc", "endpointslicemirroring-controller.k8s.io")})
	if len(mirrored) != 0 {
		t.Fatalf("a slice Kubernetes mirrors from Endpoints counted as foreign: %v", mirrored)
	}
	for _, tt := range []struct {
		name      string
		svc       *corev1.Service
		slices    []discoveryv1.EndpointSlice
		endpoints *corev1.Endpoints //nolint:staticcheck // Istio 1.22-1.27
		want      string
		wantErr   bool
	}{
		{name: "none", want: FlavourNone},
		{name: "host name", svc: remoteService(corev1.ServiceTypeExternalName, "istiod.mesh.example"), want: FlavourExternalName},
		{name: "IP, 1.28 and later", svc: remoteService(corev1.ServiceTypeClusterIP, ""),
			slices: ForeignSlices([]discoveryv1.EndpointSlice{slice("istiod", "Helm")}), want: FlavourEndpointSlice},
		{name: "IP, before 1.28", svc: remoteService(corev1.ServiceTypeClusterIP, ""), slices: mirrored, endpoints: ep, want: FlavourEndpoints},
		{name: "another control plane", svc: func() *corev1.Service {
			s := remoteService(corev1.ServiceTypeClusterIP, "")
			s.Spec.Selector = map[string]string{"app": "other"}
			return s
		}(), wantErr: true},
		{name: "leads nowhere", svc: remoteService(corev1.ServiceTypeClusterIP, ""), wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ClassifyAddress(tt.svc, tt.slices, tt.endpoints)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ClassifyAddress = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestAddressRoundTrip: the patches change only type, externalName and selector, lead
// to the local pods, and give back exactly what was recorded; a Service changed by
// somebody else is told apart from both.
func TestAddressRoundTrip(t *testing.T) {
	for _, svc := range []*corev1.Service{
		remoteService(corev1.ServiceTypeExternalName, "istiod.mesh.example"),
		remoteService(corev1.ServiceTypeClusterIP, ""),
	} {
		rec := RecordAddress(FlavourExternalName, svc, nil, nil)
		if rec.StateOf(svc) != AddressAsRecorded {
			t.Fatalf("%s: the recorded Service does not count as recorded", svc.Spec.Type)
		}
		local := svc.DeepCopy()
		applyPatch(t, local, ToLocal())
		if local.Spec.Type != corev1.ServiceTypeClusterIP || local.Spec.ExternalName != "" || local.Spec.Selector["app"] != "istiod" {
			t.Fatalf("%s: ToLocal gave %+v", svc.Spec.Type, local.Spec)
		}
		if rec.StateOf(local) != AddressLocal {
			t.Fatalf("%s: the switched Service does not count as local", svc.Spec.Type)
		}
		back := local.DeepCopy()
		applyPatch(t, back, rec.Back())
		if back.Spec.Type != svc.Spec.Type || back.Spec.ExternalName != svc.Spec.ExternalName || len(back.Spec.Selector) != 0 {
			t.Fatalf("%s: Back gave %+v, want %+v", svc.Spec.Type, back.Spec, svc.Spec)
		}
		changed := local.DeepCopy()
		changed.Spec.Selector = map[string]string{"app": "istiod-canary"}
		if rec.StateOf(changed) != AddressChanged {
			t.Fatalf("%s: a Service somebody re-pointed does not count as changed", svc.Spec.Type)
		}
	}
}

// applyPatch applies a merge patch the way the API server does, on JSON.
func applyPatch(t *testing.T, svc *corev1.Service, p ServicePatch) {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var patch map[string]any
	if err := json.Unmarshal(raw, &patch); err != nil {
		t.Fatal(err)
	}
	spec := patch["spec"].(map[string]any)
	if v, ok := spec["externalName"]; !ok || (v != nil && v.(string) == "") {
		t.Fatalf("the patch must set or clear externalName explicitly: %s", raw)
	}
	if v, ok := spec["selector"]; !ok {
		t.Fatalf("the patch must set or clear the selector explicitly: %s", raw)
	} else if v == nil {
		svc.Spec.Selector = nil
	} else {
		svc.Spec.Selector = map[string]string{}
		for k, val := range v.(map[string]any) {
			svc.Spec.Selector[k] = val.(string)
		}
	}
	svc.Spec.Type = corev1.ServiceType(spec["type"].(string))
	svc.Spec.ExternalName = ""
	if v := spec["externalName"]; v != nil {
		svc.Spec.ExternalName = v.(string)
	}
}

func TestSlicesOutOfPlayAndBack(t *testing.T) {
	s := slice("istiod", "Helm")
	if !TakeSliceOutOfPlay(&s) || s.Labels[discoveryv1.LabelServiceName] != "" {
		t.Fatalf("the slice still belongs to Service istiod: %v", s.Labels)
	}
	if TakeSliceOutOfPlay(&s) {
		t.Fatal("taking a slice out of play twice changed it twice")
	}
	if !PutSliceBack(&s) || s.Labels[discoveryv1.LabelServiceName] != AddressService || s.Labels[discoveryv1.LabelManagedBy] != "Helm" {
		t.Fatalf("the slice was not given back as it was: %v", s.Labels)
	}
}

// TestRemoteProfileWebhooksKeepTheirCall: an injector that already calls Service
// istiod (the remote profile's Service flavours) keeps its path and a caBundle that
// trusts the local istiod; one that calls by URL is re-pointed.
func TestRemoteProfileWebhooksKeepTheirCall(t *testing.T) {
	path := "/inject/cluster/cluster-2/net/network-2"
	viaService := admissionv1.WebhookClientConfig{CABundle: []byte("mesh-root\n"),
		Service: &admissionv1.ServiceReference{Namespace: "istio-system", Name: AddressService, Path: &path}}
	url := "https://127.0.0.1:1/inject"
	mwc := &admissionv1.MutatingWebhookConfiguration{Webhooks: []admissionv1.MutatingWebhook{
		{Name: "namespace.sidecar-injector.istio.io", ClientConfig: *viaService.DeepCopy()},
		{Name: "object.sidecar-injector.istio.io", ClientConfig: admissionv1.WebhookClientConfig{URL: &url, CABundle: []byte("mesh-root")}},
	}}
	if !PointInjectorAtLocal(mwc, "istio-system", []byte("mesh-root")) {
		t.Fatal("the URL webhook was not re-pointed")
	}
	if got := mwc.Webhooks[0].ClientConfig; *got.Service.Path != path || string(got.CABundle) != "mesh-root\n" {
		t.Fatalf("the webhook calling Service istiod changed: %+v", got)
	}
	if got := mwc.Webhooks[1].ClientConfig; got.URL != nil || got.Service == nil || got.Service.Name != AddressService {
		t.Fatalf("the URL webhook does not call Service istiod: %+v", got)
	}
	if PointInjectorAtLocal(mwc, "istio-system", []byte("mesh-root")) {
		t.Fatal("a second switch changed something")
	}
	// An independent root: only the caBundle changes.
	if !PointInjectorAtLocal(mwc, "istio-system", []byte("cluster-root")) || *mwc.Webhooks[0].ClientConfig.Service.Path != path ||
		string(mwc.Webhooks[0].ClientConfig.CABundle) != "cluster-root" {
		t.Fatalf("with another root: %+v", mwc.Webhooks[0].ClientConfig)
	}
}

func TestRolloutOf(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, total, available int32, token string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
		d.Spec.Replicas = &replicas
		d.Spec.Template.Annotations = map[string]string{RestartAnnotation: token}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, Replicas: total, AvailableReplicas: available}
		return d
	}
	for _, tt := range []struct {
		name string
		dep  *appsv1.Deployment
		want Rollout
	}{
		{"not seen by the controller yet", dep(3, 2, 2, 2, 2, 2, "back-1"), RolloutProgressing},
		{"old pods still there", dep(3, 3, 2, 2, 3, 2, "back-1"), RolloutProgressing},
		{"new pods not available", dep(3, 3, 2, 2, 2, 1, "back-1"), RolloutProgressing},
		{"done", dep(3, 3, 2, 2, 2, 2, "back-1"), RolloutDone},
		{"rolled again by somebody", dep(3, 2, 2, 0, 2, 2, "other"), RolloutDone},
		{"stuck", func() *appsv1.Deployment {
			d := dep(3, 3, 2, 1, 3, 2, "back-1")
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}
			return d
		}(), RolloutStuck},
	} {
		if got := RolloutOf(tt.dep, "back-1"); got != tt.want {
			t.Errorf("%s: RolloutOf = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestEndpointsGivenBack: the core Endpoints of Istio 1.22-1.27, which Kubernetes'
// endpoints controller rewrites while the Service has a selector, get their recorded
// addresses, labels and annotations back.
func TestEndpointsGivenBack(t *testing.T) {
	orig := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: AddressService, UID: "ep-uid", //nolint:staticcheck // Istio 1.22-1.27
		Labels: map[string]string{"app.kubernetes.io/name": "istiod"}},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.1"}}, //nolint:staticcheck // see above
			Ports: []corev1.EndpointPort{{Name: "tcp-istiod", Port: 15012}}}}} //nolint:staticcheck // see above
	rec := RecordAddress(FlavourEndpoints, remoteService(corev1.ServiceTypeClusterIP, ""), nil, orig)
	live := orig.DeepCopy()
	live.Subsets[0].Addresses[0].IP = "10.1.2.3"
	live.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "now"}
	if !rec.Endpoints.RestoreEndpoints(live) {
		t.Fatal("rewritten Endpoints were not given back")
	}
	if live.Subsets[0].Addresses[0].IP != "192.0.2.1" || len(live.Annotations) != 0 || live.Labels["app.kubernetes.io/name"] != "istiod" {
		t.Fatalf("Endpoints after giving back: %+v", live)
	}
	if rec.Endpoints.RestoreEndpoints(live) {
		t.Fatal("giving back twice changed them twice")
	}
}
