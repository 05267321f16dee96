// Package envtest runs the operator in-process against three real API servers: one
// mesh cluster and two data-plane clusters reached through Istio remote secrets.
package envtest

import (
	"context"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

const ns = "istio-system"

// operatorNS is the operator's own namespace in the mesh cluster, as config/rbac has it:
// its leader election lease lives there.
const operatorNS = "remote-istiod-operator-system"

var (
	scheme  = runtime.NewScheme()
	meshEnv *envtest.Environment
	mesh    client.Client
	remotes = map[string]*remoteCluster{}
	stopMgr context.CancelFunc
	// operatorConfig authenticates as the operator, with exactly the RBAC of
	// config/rbac, not as an administrator.
	operatorConfig *rest.Config
	// meshCA is the mesh cluster's plugged-in CA (cacerts).
	meshCA  map[string][]byte
	mgrDone chan struct{}
)

type remoteCluster struct {
	id     string
	env    *envtest.Environment
	client client.Client
	// initial is the cluster's inventory before the operator touched it.
	initial map[string]string
	// holdRollouts stops the rollout stand-in in this cluster.
	holdRollouts atomic.Bool
	// link is the simulated far link between the operator and this cluster's API
	// server: every kubeconfig handed to the operator goes through it.
	link *farlink.Link
	// linkURL is the API server's address through the link.
	linkURL string
}

func TestEnvtest(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "multi-cluster envtest suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, &logs)), zap.UseDevMode(true)))
	Expect(manager.AddToScheme(scheme)).To(Succeed())
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)

	meshEnv = localapi.New(&envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases"),
			filepath.Join("..", "..", "internal", "mirror", "crds")}, // the mesh cluster has Istio
		ErrorIfCRDPathMissing: true,
	})
	cfg, err := meshEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	mesh, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(mesh.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	Expect(mesh.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}})).To(Succeed())
	meshCA = catest.MeshCACerts(365 * 24 * time.Hour)
	rememberSecret(meshCA["ca-key.pem"])
	Expect(mesh.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: ns}, Data: meshCA})).To(Succeed())

	for _, id := range []string{"cluster-1", "cluster-2"} {
		rc := newDataPlane(id)
		remotes[id] = rc
		writeRemoteSecret("istio-remote-secret-"+id, map[string][]byte{id: rc.kubeconfig("operator", remoteOperatorGroup)})
	}
	operatorConfig = restrictedOperatorConfig()
	startManager()
	var rollCtx context.Context
	rollCtx, stopRollouts = context.WithCancel(context.Background())
	go rollOutGateways(rollCtx)
})

var _ = AfterSuite(func() {
	// The API servers stop even when a check below fails: they would outlive the test.
	defer func() {
		for _, rc := range remotes {
			rc.link.Close()
			_ = rc.env.Stop()
		}
		if meshEnv != nil {
			_ = meshEnv.Stop()
		}
	}()
	if stopRollouts != nil {
		stopRollouts()
	}
	if stopMgr != nil {
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
	}
	if mesh != nil {
		expectNoLeaks()
	}
})

func ctx() context.Context { return context.Background() }

// newDataPlane starts a data-plane cluster as a managed mesh has it: the control plane
// namespace, Istio's remote profile, the operator's rights, and a far link in front of
// its API server. Its inventory of "before" is taken; no remote secret is written yet.
func newDataPlane(id string) *remoteCluster {
	rc := &remoteCluster{id: id, env: localapi.New(&envtest.Environment{})}
	rcfg, err := rc.env.Start()
	Expect(err).NotTo(HaveOccurred())
	rc.client, err = client.New(rcfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	rc.link, rc.linkURL, err = farlink.StartFor(rcfg.Host)
	Expect(err).NotTo(HaveOccurred())
	// Data-plane clusters of a mesh already have the control plane namespace.
	Expect(rc.client.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Annotations: map[string]string{"topology.istio.io/controlPlaneClusters": meshClusterID}}})).To(Succeed())
	rc.installManagedDataPlane()
	rc.grantRemoteRBAC()
	// The API server creates the default/kubernetes Service and Endpoints on its own
	// a moment after it starts; the inventory of "before" must have them.
	Eventually(func() error {
		if err := rc.client.Get(ctx(), client.ObjectKey{Namespace: "default", Name: "kubernetes"}, &corev1.Service{}); err != nil {
			return err
		}
		return rc.client.Get(ctx(), client.ObjectKey{Namespace: "default", Name: "kubernetes"}, &corev1.Endpoints{}) //nolint:staticcheck // what the API server writes
	}).Should(Succeed())
	rc.initial = rc.inventory()
	return rc
}

// kubeconfig adds a user to the cluster's API server and returns a kubeconfig for it,
// as istioctl create-remote-secret would write one, reaching the API server through
// the cluster's far link.
func (rc *remoteCluster) kubeconfig(user string, groups ...string) []byte {
	if len(groups) == 0 {
		groups = []string{"system:masters"}
	}
	u, err := rc.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	Expect(err).NotTo(HaveOccurred())
	raw, err := u.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kc, err := clientcmd.Load(raw)
	Expect(err).NotTo(HaveOccurred())
	for _, c := range kc.Clusters {
		c.Server = rc.linkURL
	}
	raw, err = clientcmd.Write(*kc)
	Expect(err).NotTo(HaveOccurred())
	rememberKubeconfig(raw)
	return raw
}

func writeRemoteSecret(name string, data map[string][]byte) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels: map[string]string{"istio/multiCluster": "true"}}}
	_, err := ctrl.CreateOrUpdate(ctx(), mesh, s, func() error {
		s.Data = data
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
}

// operatorOptions are the manager's options as the suite runs it.
func operatorOptions() manager.Options {
	return manager.Options{
		Scheme:   scheme,
		Settings: render.Settings{Namespace: ns, Hub: "docker.io/istio", Version: manager.DefaultIstioVersion},
		Workers:  4,
		Manager: ctrl.Options{
			Scheme:                 scheme,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Cache:                  manager.LocalCacheOptions(ns),
			Controller:             config.Controller{SkipNameValidation: ptrTo(true)},
		},
	}
}

func startManager() {
	opts := operatorOptions()
	mgr, err := manager.New(operatorConfig, opts)
	Expect(err).NotTo(HaveOccurred())
	var c context.Context
	c, stopMgr = context.WithCancel(context.Background())
	mgrDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(c)).To(Succeed())
	}()
}

func ptrTo[T any](v T) *T { return &v }

// remoteOperatorGroup holds the identity of the kubeconfigs in the remote secrets; it is
// bound to config/remote's roles, so the operator has no more rights in a data-plane
// cluster than docs/remote-permissions.md lists.
const remoteOperatorGroup = "remote-istiod-operator"

// grantRemoteRBAC installs config/remote's roles in a data-plane cluster and binds them
// to remoteOperatorGroup.
func (rc *remoteCluster) grantRemoteRBAC() {
	subjects := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: remoteOperatorGroup}}
	Expect(localmesh.GrantFile(ctx(), rc.client, filepath.Join("..", "..", "config", "remote", "role.yaml"), subjects)).To(Succeed())
}

// restrictedOperatorConfig installs config/rbac's generated roles in the mesh cluster,
// binds them to a user of their own and returns that user's config: the manager then
// runs with no more rights than the installed operator.
func restrictedOperatorConfig() *rest.Config {
	const user = "remote-istiod-operator"
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	Expect(localmesh.GrantFile(ctx(), mesh, filepath.Join("..", "..", "config", "rbac", "role.yaml"), subjects)).To(Succeed())
	u, err := meshEnv.AddUser(envtest.User{Name: user}, nil)
	Expect(err).NotTo(HaveOccurred())
	return u.Config()
}
