// Package localmesh runs a service mesh's clusters on this machine: a real
// kube-apiserver and etcd (envtest) for the mesh cluster and for each data-plane
// cluster, prepared as a mesh with a managed control plane has them: the mesh
// cluster's istiod and each data-plane cluster's remote profile are the objects Istio's
// own Helm charts render (internal/istiochart), not imitations of them. There is no
// kubelet: objects are stored and served, nothing runs.
//
// Nothing the API servers do leaves the machine: Services get loopback ClusterIPs
// (internal/localapi), webhook URLs and ExternalNames are loopback ones, and the only
// address in an EndpointSlice is istiochart.DocumentationAddress, which is never routed.
package localmesh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

// Namespace is the Istio control plane namespace in every cluster.
const Namespace = "istio-system"

// MeshClusterID names the mesh cluster in kubeconfigs.
const MeshClusterID = "mesh"

// meshCALifetime is long enough that no demo outlives it.
const meshCALifetime = 365 * 24 * time.Hour

// Options say what to start.
type Options struct {
	// AssetsDir holds the kube-apiserver and etcd binaries.
	AssetsDir string
	// MeshCRDDirs hold the CRDs the mesh cluster has (the operator's and Istio's).
	MeshCRDDirs []string
	// DataPlanes are the data-plane clusters.
	DataPlanes []DataPlane
	// LinkRTT is the round trip of the simulated far link (internal/farlink) through
	// which the remote secrets reach each data-plane cluster; 0 adds none.
	LinkRTT time.Duration
	// LinkBandwidth limits each far link to this many bits per second and direction;
	// 0 is unlimited.
	LinkBandwidth int64
	// Unregistered leaves the data-plane clusters out of the mesh: no remote secrets
	// are created, so a benchmark can add them one by one (Register).
	Unregistered bool
	// MaxParallelStarts bounds how many API servers start at once; 0 starts them all
	// together. On a small machine many at once overrun envtest's start timeout.
	MaxParallelStarts int
	// Progress, when set, is told about each step.
	Progress func(msg string)
}

// Mesh is the running mesh cluster and its data-plane clusters.
type Mesh struct {
	Mesh       *Cluster
	DataPlanes []*Cluster
	// CA is the mesh CA, as stored in the mesh cluster's istio-system/cacerts.
	CA ca.Bundle
}

// Cluster is one running API server and an administrator's client for it.
type Cluster struct {
	ID string
	// Address is the flavour of a data-plane cluster's control plane address
	// (AddressExternalName or AddressEndpointSlice) as installed; "" for the mesh.
	Address string
	Config  *rest.Config
	Client  client.Client
	// Link is the far link in front of a data-plane cluster's API server; remote
	// secrets reach the cluster through it.
	Link *farlink.Link
	env  *envtest.Environment
	// istioCRDs: the data-plane cluster was installed with Istio's CRDs
	// (DataPlane.IstioCRDs).
	istioCRDs bool
}

// Start starts every API server, prepares each cluster and registers the data-plane
// clusters with the mesh through Istio remote secrets. On error, what was started is
// stopped again.
func Start(ctx context.Context, opts Options) (*Mesh, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	scheme := runtime.NewScheme()
	if err := manager.AddToScheme(scheme); err != nil {
		return nil, err
	}
	m := &Mesh{Mesh: &Cluster{ID: MeshClusterID, env: localapi.New(&envtest.Environment{
		BinaryAssetsDirectory: opts.AssetsDir, CRDDirectoryPaths: opts.MeshCRDDirs, ErrorIfCRDPathMissing: true})}}
	for _, dp := range opts.DataPlanes {
		m.DataPlanes = append(m.DataPlanes, &Cluster{ID: dp.ID, Address: dp.Address, istioCRDs: dp.IstioCRDs,
			env: localapi.New(&envtest.Environment{BinaryAssetsDirectory: opts.AssetsDir})})
	}
	if err := m.startAll(scheme, opts.MaxParallelStarts, progress); err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	for _, dp := range m.DataPlanes {
		var err error
		if dp.Link, _, err = farlink.StartFor(dp.Config.Host); err != nil {
			return nil, errors.Join(err, m.Stop())
		}
		dp.Link.SetLatency(opts.LinkRTT)
		dp.Link.SetBandwidth(opts.LinkBandwidth)
		if opts.LinkRTT > 0 {
			progress(fmt.Sprintf("the operator reaches %s through a far link at %s with %s round trips", dp.ID, dp.Link.Addr(), opts.LinkRTT))
		}
	}
	if err := m.prepare(ctx, !opts.Unregistered, progress); err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	return m, nil
}

// startAll starts the API servers side by side, at most parallel at once (0: all):
// each takes some seconds.
func (m *Mesh) startAll(scheme *runtime.Scheme, parallel int, progress func(string)) error {
	all := m.Clusters()
	if parallel <= 0 {
		parallel = len(all)
	}
	slots := make(chan struct{}, parallel)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = c.start(scheme)
			if errs[i] == nil {
				progress(fmt.Sprintf("API server of %s is up at %s", c.ID, c.Config.Host))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *Mesh) prepare(ctx context.Context, register bool, progress func(string)) error {
	m.CA = catest.MeshCACerts(meshCALifetime)
	if err := m.Mesh.createNamespace(ctx, Namespace); err != nil {
		return err
	}
	cacerts := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: Namespace}, Data: m.CA}
	if err := m.Mesh.Client.Create(ctx, cacerts); err != nil {
		return fmt.Errorf("creating the mesh CA: %w", err)
	}
	progress("mesh: namespace istio-system, Istio's CRDs and the mesh CA (Secret istio-system/cacerts)")
	istiod, err := meshControlPlaneObjects()
	if err != nil {
		return err
	}
	skipped, err := m.Mesh.createAll(ctx, istiod)
	if err != nil {
		return err
	}
	progress(fmt.Sprintf("mesh: the mesh istiod, %d objects of Istio's istio-discovery chart (ConfigMaps istio and istio-sidecar-injector, "+
		"Deployment istiod with image %s/pilot:%s, ...), outboundTrafficPolicy %s, accessLogFile %s, proxy memory limit %s%s",
		len(istiod)-len(skipped), MeshHub, MeshIstioVersion, MeshOutboundTrafficPolicy, MeshAccessLogFile, MeshProxyMemoryLimit, skippedNote(skipped)))
	for _, dp := range m.DataPlanes {
		if err := dp.installDataPlane(ctx, m.CA[ca.RootCert]); err != nil {
			return fmt.Errorf("preparing %s: %w", dp.ID, err)
		}
		if !register {
			progress(fmt.Sprintf("%s: Istio's remote profile, control plane address %s; gateways of Istio's gateway chart; not registered",
				dp.ID, describeFlavour(dp)))
			continue
		}
		if err := m.Register(ctx, dp); err != nil {
			return err
		}
		progress(fmt.Sprintf("%s: Istio's remote profile, control plane address %s; gateways of Istio's gateway chart; registered with remote secret istio-system/%s",
			dp.ID, describeFlavour(dp), RemoteSecretName(dp.ID)))
	}
	return nil
}

// describeFlavour says how a data-plane cluster reaches the mesh control plane.
func describeFlavour(dp *Cluster) string {
	crds := ""
	if dp.istioCRDs {
		crds = " and Istio's CRDs"
	}
	if dp.Address == AddressExternalName {
		return fmt.Sprintf("Service istiod of type ExternalName %s, injector calling %s%s", MeshPilotHost, MeshInjectionURL(dp.ID), crds)
	}
	return fmt.Sprintf("selector-less Service istiod with an EndpointSlice (%s), injector calling Service istiod%s", istiochart.DocumentationAddress, crds)
}

func skippedNote(skipped []client.Object) string {
	if len(skipped) == 0 {
		return ""
	}
	var names []string
	for _, o := range skipped {
		names = append(names, kindOf(o)+" "+o.GetName())
	}
	return fmt.Sprintf("; skipped, as the API server does not serve their kinds: %s", strings.Join(names, ", "))
}

// Register adds a data-plane cluster to the mesh as istioctl create-remote-secret does,
// through the cluster's far link. Its user administers the cluster: the operator needs
// more than Istio's reader role there (docs/remote-permissions.md).
func (m *Mesh) Register(ctx context.Context, dp *Cluster) error {
	kubeconfig, err := dp.kubeconfigThrough(dp.Link, "remote-secret-"+dp.ID, "system:masters")
	if err != nil {
		return fmt.Errorf("registering %s: %w", dp.ID, err)
	}
	if err := m.Mesh.Client.Create(ctx, RemoteSecret(dp.ID, kubeconfig)); err != nil {
		return fmt.Errorf("registering %s: %w", dp.ID, err)
	}
	return nil
}

// Unregister removes a data-plane cluster's remote secret from the mesh.
func (m *Mesh) Unregister(ctx context.Context, dp *Cluster) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: RemoteSecretName(dp.ID), Namespace: Namespace}}
	return client.IgnoreNotFound(m.Mesh.Client.Delete(ctx, secret))
}

// RemoteSecretName is the name istioctl create-remote-secret gives a cluster's secret.
func RemoteSecretName(clusterID string) string { return "istio-remote-secret-" + clusterID }

// RemoteSecret is an Istio remote secret as istioctl create-remote-secret writes it.
func RemoteSecret(clusterID string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        RemoteSecretName(clusterID),
			Namespace:   Namespace,
			Labels:      map[string]string{remotecluster.RemoteSecretLabel: "true"},
			Annotations: map[string]string{"networking.istio.io/cluster": clusterID},
		},
		Data: map[string][]byte{clusterID: kubeconfig},
	}
}

// Clusters returns the mesh cluster first, then the data-plane clusters.
func (m *Mesh) Clusters() []*Cluster {
	return append([]*Cluster{m.Mesh}, m.DataPlanes...)
}

// Stop stops every API server (and etcd) that runs and removes its data.
func (m *Mesh) Stop() error {
	var errs []error
	for _, c := range m.Clusters() {
		if c.Link != nil {
			c.Link.Close()
		}
		errs = append(errs, c.env.Stop())
	}
	return errors.Join(errs...)
}

func (c *Cluster) start(scheme *runtime.Scheme) error {
	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("starting the API server of %s: %w", c.ID, err)
	}
	c.Config = cfg
	if err := localapi.CheckServiceRange(context.Background(), cfg); err != nil {
		return err
	}
	c.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	return err
}

func (c *Cluster) createNamespace(ctx context.Context, name string) error {
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return fmt.Errorf("creating namespace %s in %s: %w", name, c.ID, err)
	}
	return nil
}
