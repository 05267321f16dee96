// Package realistiod runs the operator end to end against a real istiod: the manager,
// in-process, against a mesh API server and a data-plane API server (Istio's remote
// profile, reached through a remote secret), and the istiod Deployment the operator
// renders run as a real pilot-discovery by the test kubelet. The tests then talk to that
// istiod as the API server and a sidecar would: its injection webhook over TLS, its
// debug endpoint, and xDS.
package realistiod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/onsi/gomega/gbytes"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
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
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/testkubelet"
)

const (
	ns = "istio-system"
	// clusterID is the data-plane cluster, meshClusterID the mesh cluster (the one the
	// remote profile's namespace annotation names as its leader).
	clusterID     = "cluster-2"
	meshClusterID = "mesh"
	network       = "network-1"
	meshID        = "mesh-1"
	// remoteOperatorGroup is the identity of the kubeconfig in the remote secret, bound
	// to config/remote's roles.
	remoteOperatorGroup = "remote-istiod-operator"
	// localIstiod is the discovery and CA address of the cluster's own istiod.
	localIstiod = "istiod.istio-system.svc:15012"
)

// meshValues are the mesh istiod's settings, installed with Istio's chart. They differ
// from the chart's defaults so that a data-plane istiod that did not copy them shows.
// The discovery address is where the mesh exposes its istiod to far clusters; the
// operator must point a cluster with its own istiod at that one instead.
const meshValues = `
meshConfig:
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
  defaultConfig:
    discoveryAddress: istiod.istio-system.mesh.localhost:15012
global:
  proxy:
    resources:
      requests:
        cpu: 50m
        memory: 64Mi
      limits:
        cpu: "1"
        memory: 256Mi
`

// env is what the tests share: both clusters, the operator, and the running istiod.
type env struct {
	version  string
	scheme   *runtime.Scheme
	mesh     client.Client
	meshEnv  *envtest.Environment
	data     client.Client
	dataEnv  *envtest.Environment
	meshCA   ca.Bundle
	kubelet  *testkubelet.Kubelet
	started  time.Time
	operator *gbytes.Buffer // the operator's log, for a failed test

	meshStopped bool
}

// pilotDiscovery finds the binary (see testkubelet.PilotDiscovery).
func pilotDiscovery(t *testing.T) string {
	p, skip, err := testkubelet.PilotDiscovery(filepath.Join("..", ".."))
	if skip {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// istioVersion is the release the binary is: the mesh istiod's image tag, which decides
// the version the operator renders for the cluster's istiod.
func istioVersion(t *testing.T, binary string) string {
	v, err := testkubelet.IstioVersion(binary)
	if err != nil {
		t.Skip(err)
	}
	return v
}

func podDir(t *testing.T) string {
	if dir := os.Getenv("TESTKUBELET_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// eventually polls cond until it returns nil, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(timeout).WithPolling(250*time.Millisecond).Should(gomega.Succeed(), what)
}

func ctx() context.Context { return context.Background() }

// setup starts both clusters and the operator, gives the data-plane cluster its own
// istiod through the ASMMeshConfig, and runs that istiod under the test kubelet.
func setup(t *testing.T) *env {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run through make test or set it to $(hack/envtest-assets.sh)")
	}
	binary := pilotDiscovery(t)
	e := &env{version: istioVersion(t, binary), started: time.Now(), operator: gbytes.NewBuffer(), scheme: runtime.NewScheme()}
	if err := manager.AddToScheme(e.scheme); err != nil {
		t.Fatal(err)
	}
	logf.SetLogger(zap.New(zap.WriteTo(e.operator), zap.UseDevMode(true)))

	// The mesh cluster: Istio's CRDs, the ASMMeshConfig CRD, the mesh CA.
	e.meshEnv = localapi.New(&envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases"),
			filepath.Join("..", "..", "internal", "mirror", "crds")},
		ErrorIfCRDPathMissing: true,
		// Test 5 stops it while the operator's watches are open, which kube-apiserver
		// waits out: kill it after a few seconds, as a cut link would end it.
		ControlPlaneStopTimeout: 5 * time.Second,
	})
	meshCfg, err := e.meshEnv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !e.meshStopped {
			_ = e.meshEnv.Stop()
		}
	})
	if e.mesh, err = client.New(meshCfg, client.Options{Scheme: e.scheme}); err != nil {
		t.Fatal(err)
	}
	create(t, e.mesh, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	e.meshCA = catest.MeshCACerts(365 * 24 * time.Hour)
	create(t, e.mesh, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: ns}, Data: e.meshCA})

	// The data-plane cluster: Istio's remote profile, pointing at the mesh istiod by IP.
	e.dataEnv = localapi.New(&envtest.Environment{})
	dataCfg, err := e.dataEnv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.dataEnv.Stop() })
	if e.data, err = client.New(dataCfg, client.Options{Scheme: e.scheme}); err != nil {
		t.Fatal(err)
	}
	if err := localapi.CheckServiceRange(ctx(), dataCfg); err != nil {
		t.Fatal(err)
	}
	create(t, e.data, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Annotations: map[string]string{"topology.istio.io/controlPlaneClusters": meshClusterID}}})
	profile, err := istiochart.RemoteProfile(istiochart.RemoteOptions{ClusterID: clusterID, Network: network, MeshID: meshID,
		RemotePilotAddress: istiochart.DocumentationAddress, InjectionCABundle: e.meshCA[ca.RootCert]})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range profile {
		create(t, e.data, o)
	}
	// The mesh istiod, which leads the cluster until the switch, published its root.
	create(t, e.data, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: ns},
		Data: map[string]string{"root-cert.pem": string(e.meshCA[ca.RootCert])}})
	grantRemoteRBAC(t, e.data)
	user, err := e.dataEnv.AddUser(envtest.User{Name: "operator", Groups: []string{remoteOperatorGroup}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The remote secret, as istioctl create-remote-secret writes it.
	create(t, e.mesh, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + clusterID, Namespace: ns,
		Labels:      map[string]string{remotecluster.RemoteSecretLabel: "true"},
		Annotations: map[string]string{"networking.istio.io/cluster": clusterID}},
		Data: map[string][]byte{clusterID: kubeconfig}})

	// The mesh istiod, from Istio's chart, with settings of its own.
	values, err := istiochart.ParseValues(meshValues)
	if err != nil {
		t.Fatal(err)
	}
	meshObjs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{ClusterID: meshClusterID, Network: network,
		MeshID: meshID, Tag: e.version, Values: values})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range meshObjs {
		create(t, e.mesh, o)
	}

	// The operator, with exactly the RBAC of config/rbac in the mesh cluster.
	startManager(t, e, restrictedOperatorConfig(t, e))

	// The switch restarts gateways; a gateway-less cluster has none. The cluster's
	// own istiod: one replica.
	create(t, e.mesh, &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
		Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
			clusterID: {Replicas: ptr.To[int32](1)}}}})

	e.kubelet, err = testkubelet.Start(testkubelet.Options{Config: dataCfg, Binary: binary, Namespace: ns, Name: "istiod",
		Dir: podDir(t), GracePeriod: 5 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.kubelet.Stop()
		if t.Failed() {
			t.Logf("istiod's log:\n%s", tail(e.kubelet.Logs(), 200))
			t.Logf("the operator's log:\n%s", tail(string(e.operator.Contents()), 200))
		}
	})
	t.Logf("both clusters and the operator up, istiod %s starting, after %s", e.version, time.Since(e.started).Round(time.Millisecond))
	return e
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(ctx(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func startManager(t *testing.T, e *env, cfg *rest.Config) {
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:   e.scheme,
		Settings: render.Settings{Namespace: ns, Hub: "docker.io/istio", Version: manager.DefaultIstioVersion},
		Workers:  2,
		Manager: ctrl.Options{
			Scheme:                 e.scheme,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Cache:                  manager.LocalCacheOptions(ns),
			Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(c); err != nil {
			t.Logf("the manager stopped: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Log("the manager did not stop within 30s")
		}
	})
}

// grantRemoteRBAC gives the remote secret's identity config/remote's rights.
func grantRemoteRBAC(t *testing.T, c client.Client) {
	subjects := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: remoteOperatorGroup}}
	if err := localmesh.GrantFile(ctx(), c, filepath.Join("..", "..", "config", "remote", "role.yaml"), subjects); err != nil {
		t.Fatal(err)
	}
}

// restrictedOperatorConfig binds config/rbac's roles to a user of the mesh cluster and
// returns that user's config.
func restrictedOperatorConfig(t *testing.T, e *env) *rest.Config {
	const user = "remote-istiod-operator"
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	if err := localmesh.GrantFile(ctx(), e.mesh, filepath.Join("..", "..", "config", "rbac", "role.yaml"), subjects); err != nil {
		t.Fatal(err)
	}
	u, err := e.meshEnv.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u.Config()
}

// condition is "Status/Reason: message" of the cluster's condition, "" while absent.
func (e *env) condition(typ string) string {
	mc := &v1beta1.ASMMeshConfig{}
	if err := e.mesh.Get(ctx(), client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil {
		return ""
	}
	for _, cs := range mc.Status.Clusters {
		if c := meta.FindStatusCondition(cs.Conditions, typ); cs.ClusterID == clusterID && c != nil {
			return fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return ""
}

// istiodAvailable says whether the data-plane cluster's istiod Deployment is Available
// with its current generation.
func (e *env) istiodAvailable() error {
	d := &appsv1.Deployment{}
	if err := e.data.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "istiod"}, d); err != nil {
		return err
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue && d.Status.ObservedGeneration == d.Generation {
			return nil
		}
	}
	return fmt.Errorf("Deployment istiod: generation %d, observed %d, available %d", d.Generation, d.Status.ObservedGeneration, d.Status.AvailableReplicas)
}

func (e *env) addresses(t *testing.T) testkubelet.Addresses {
	t.Helper()
	addrs, ok := e.kubelet.Addresses()
	if !ok {
		t.Fatal("istiod does not run")
	}
	return addrs
}
