package headline

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/onsi/gomega/gbytes"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/testkubelet"
)

const (
	ns            = "istio-system"
	clusterID     = "cluster-2"
	meshClusterID = "mesh"
	network       = "network-1"
	meshID        = "mesh-1"
	// remoteGroup is the group of the identity in the remote secret.
	remoteGroup = "remote-istiod-operator"
	// services is how many Services the data-plane cluster has (each with two
	// endpoints) and VirtualServices the mesh has (one per Service).
	services = 10
)

// bench is the figure's world: a mesh cluster with its istiod running, and one
// data-plane cluster installed with Istio's remote profile, whose link carries
// everything between the two.
type bench struct {
	version, binary string
	scheme          *runtime.Scheme
	mesh, data      client.Client
	meshCfg         *rest.Config
	dataCfg         *rest.Config
	dir             string

	// apiLink is in front of the data-plane API server: the mesh istiod's discovery of
	// the cluster and the operator reach it only through it (the remote secret names
	// it). xdsLink is in front of the mesh istiod's xDS port: the sidecars' way to the
	// mesh control plane before the switch.
	apiLink, xdsLink *farlink.Link

	meshIstiod, localIstiod *testkubelet.Kubelet
	operatorLog             *gbytes.Buffer
}

func ctx() context.Context { return context.Background() }

func setup(t *testing.T) *bench {
	binary, skip, err := testkubelet.PilotDiscovery(filepath.Join("..", ".."))
	if skip {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	version, err := testkubelet.IstioVersion(binary)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{version: version, binary: binary, scheme: runtime.NewScheme(), dir: os.Getenv("TESTKUBELET_DIR"),
		operatorLog: gbytes.NewBuffer()}
	if b.dir == "" {
		b.dir = t.TempDir()
	}
	if err := manager.AddToScheme(b.scheme); err != nil {
		t.Fatal(err)
	}
	logf.SetLogger(zap.New(zap.WriteTo(b.operatorLog)))

	meshEnv := localapi.New(&envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases"),
			filepath.Join("..", "..", "internal", "mirror", "crds")},
		ErrorIfCRDPathMissing: true, ControlPlaneStopTimeout: 5 * time.Second,
	})
	if b.meshCfg, err = meshEnv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meshEnv.Stop() })
	if b.mesh, err = client.New(b.meshCfg, client.Options{Scheme: b.scheme}); err != nil {
		t.Fatal(err)
	}
	dataEnv := localapi.New(&envtest.Environment{ControlPlaneStopTimeout: 5 * time.Second})
	if b.dataCfg, err = dataEnv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dataEnv.Stop() })
	if b.data, err = client.New(b.dataCfg, client.Options{Scheme: b.scheme}); err != nil {
		t.Fatal(err)
	}
	if err := localapi.CheckServiceRange(ctx(), b.dataCfg); err != nil {
		t.Fatal(err)
	}
	meshCA := catest.MeshCACerts(365 * 24 * time.Hour)
	b.setupData(t, meshCA)
	b.setupMesh(t, meshCA, dataEnv)
	b.workload(t)

	b.meshIstiod = b.startIstiod(t, b.meshCfg, "mesh")
	b.waitRegistry(t, b.meshIstiod, "the mesh istiod")
	addrs, _ := b.meshIstiod.Addresses()
	if b.xdsLink, err = farlink.Start(addrs.GRPC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.xdsLink.Close)
	return b
}

// setupData installs the remote profile, as realistiod does, and gives the remote
// secret's identity what it needs in the cluster: the operator's rights
// (config/remote) and those of Istio's reader, which the mesh istiod discovers the
// cluster with (istioctl create-remote-secret writes a kubeconfig for
// istio-reader-service-account; here one identity carries both, as
// docs/remote-permissions.md asks of the remote secret's identity).
func (b *bench) setupData(t *testing.T, meshCA ca.Bundle) {
	create(t, b.data, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Annotations: map[string]string{"topology.istio.io/controlPlaneClusters": meshClusterID}}})
	profile, err := istiochart.RemoteProfile(istiochart.RemoteOptions{ClusterID: clusterID, Network: network, MeshID: meshID,
		RemotePilotAddress: istiochart.DocumentationAddress, InjectionCABundle: meshCA[ca.RootCert]})
	if err != nil {
		t.Fatal(err)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: remoteGroup}}
	for _, o := range profile {
		create(t, b.data, o)
		if o.GetKind() == "ClusterRole" && strings.HasPrefix(o.GetName(), "istio-reader") {
			if err := localmesh.Bind(ctx(), b.data, o, subjects); err != nil {
				t.Fatal(err)
			}
		}
	}
	create(t, b.data, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: ns},
		Data: map[string]string{"root-cert.pem": string(meshCA[ca.RootCert])}})
	if err := localmesh.GrantFile(ctx(), b.data, filepath.Join("..", "..", "config", "remote", "role.yaml"), subjects); err != nil {
		t.Fatal(err)
	}
}

// setupMesh installs the mesh istiod's objects from Istio's chart, the mesh CA and the
// remote secret, whose kubeconfig leads through apiLink.
func (b *bench) setupMesh(t *testing.T, meshCA ca.Bundle, dataEnv *envtest.Environment) {
	create(t, b.mesh, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, b.mesh, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: ns}, Data: meshCA})
	objs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{ClusterID: meshClusterID, Network: network,
		MeshID: meshID, Tag: b.version})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		create(t, b.mesh, o)
	}
	var linkURL string
	if b.apiLink, linkURL, err = farlink.StartFor(b.dataCfg.Host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.apiLink.Close)
	user, err := dataEnv.AddUser(envtest.User{Name: "remote", Groups: []string{remoteGroup}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = linkURL
	}
	if raw, err = clientcmd.Write(*kc); err != nil {
		t.Fatal(err)
	}
	create(t, b.mesh, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + clusterID, Namespace: ns,
		Labels:      map[string]string{remotecluster.RemoteSecretLabel: "true"},
		Annotations: map[string]string{"networking.istio.io/cluster": clusterID}},
		Data: map[string][]byte{clusterID: raw}})
}

// workload gives the data-plane cluster Services with endpoints, and the mesh a
// VirtualService for each, so that a sidecar's configuration has some size.
func (b *bench) workload(t *testing.T) {
	for i := range services {
		name := fmt.Sprintf("svc-%d", i)
		create(t, b.data, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{"app": name}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
		// No controller writes EndpointSlices in envtest. The addresses are of
		// TEST-NET-1: nothing dials them, istiod only hands them out.
		create(t, b.data, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{fmt.Sprintf("192.0.2.%d", 2*i+10)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{fmt.Sprintf("192.0.2.%d", 2*i+11)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}})
		create(t, b.mesh, virtualService(i, 0))
	}
}

// virtualService is VirtualService svc-<i>, its one route setting header x-change to
// the change's number: each change is a new route for every sidecar.
func virtualService(i, change int) *unstructured.Unstructured {
	host := fmt.Sprintf("svc-%d.default.svc.cluster.local", i)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": fmt.Sprintf("svc-%d", i), "namespace": "default"},
		"spec": map[string]any{
			"hosts": []any{host},
			"http": []any{map[string]any{
				"name":    "main",
				"headers": map[string]any{"request": map[string]any{"set": map[string]any{"x-change": fmt.Sprint(change)}}},
				"route":   []any{map[string]any{"destination": map[string]any{"host": host, "port": map[string]any{"number": int64(80)}}}},
			}},
		},
	}}
}

func (b *bench) startIstiod(t *testing.T, cfg *rest.Config, which string) *testkubelet.Kubelet {
	dir := filepath.Join(b.dir, which)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kl, err := testkubelet.Start(testkubelet.Options{Config: cfg, Binary: b.binary, Namespace: ns, Name: "istiod",
		Dir: dir, GracePeriod: 5 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kl.Stop()
		if t.Failed() {
			t.Logf("the %s istiod's log:\n%s", which, tail(kl.Logs(), 100))
		}
	})
	return kl
}

// waitRegistry waits until istiod is ready and knows the data-plane cluster's Services.
func (b *bench) waitRegistry(t *testing.T, kl *testkubelet.Kubelet, what string) {
	eventually(t, 3*time.Minute, what+" ready with svc-0 of "+clusterID, func() error {
		if !kl.Ready() {
			return fmt.Errorf("not ready: %w", kl.Err())
		}
		addrs, _ := kl.Addresses()
		body, err := get("http://" + addrs.HTTP + "/debug/registryz")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "svc-0.default.svc.cluster.local") {
			return fmt.Errorf("svc-0 not in /debug/registryz")
		}
		return nil
	})
}

// switchCluster installs the product: the operator runs, the ASMMeshConfig gives the
// cluster its own istiod, which the test kubelet runs, and the cluster switches to it.
func (b *bench) switchCluster(t *testing.T) {
	start := time.Now()
	mgr, err := manager.New(b.meshCfg, manager.Options{
		Scheme:   b.scheme,
		Settings: render.Settings{Namespace: ns, Hub: "docker.io/istio", Version: manager.DefaultIstioVersion},
		Workers:  2,
		Manager: ctrl.Options{Scheme: b.scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			Cache: manager.LocalCacheOptions(ns), Controller: config.Controller{SkipNameValidation: ptr.To(true)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(c) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		if t.Failed() {
			t.Logf("the operator's log:\n%s", tail(string(b.operatorLog.Contents()), 100))
		}
		if dir := os.Getenv("TESTKUBELET_DIR"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, "operator.log"), b.operatorLog.Contents(), 0o644)
		}
	})
	create(t, b.mesh, &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
		Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
			clusterID: {Replicas: ptr.To[int32](1)}}}})
	b.localIstiod = b.startIstiod(t, b.dataCfg, "local")
	eventually(t, 3*time.Minute, "IstiodReady and Switched", func() error {
		ready, switched := b.condition(v1beta1.ConditionIstiodReady), b.condition(v1beta1.ConditionSwitched)
		if !strings.HasPrefix(ready, "True/") || !strings.HasPrefix(switched, "True/") {
			return fmt.Errorf("IstiodReady %q, Switched %q", ready, switched)
		}
		return nil
	})
	b.waitRegistry(t, b.localIstiod, "the local istiod")
	eventually(t, time.Minute, "the mesh's VirtualServices mirrored", func() error {
		l := &unstructured.UnstructuredList{}
		l.SetAPIVersion("networking.istio.io/v1")
		l.SetKind("VirtualServiceList")
		if err := b.data.List(ctx(), l, client.InNamespace("default")); err != nil {
			return err
		}
		if len(l.Items) != services {
			return fmt.Errorf("%d of %d", len(l.Items), services)
		}
		return nil
	})
	t.Logf("switched in %s", time.Since(start).Round(time.Millisecond))
}

// condition is "Status/Reason: message" of the cluster's condition, "" while absent.
func (b *bench) condition(typ string) string {
	mc := &v1beta1.ASMMeshConfig{}
	if err := b.mesh.Get(ctx(), client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil {
		return ""
	}
	for _, cs := range mc.Status.Clusters {
		if c := meta.FindStatusCondition(cs.Conditions, typ); cs.ClusterID == clusterID && c != nil {
			return fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return ""
}

func get(u string) (string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(ctx(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(timeout).WithPolling(250*time.Millisecond).Should(gomega.Succeed(), what)
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
