// Package manager wires the operator together: the mesh cluster's manager, the remote
// cluster provider and the controllers. The command and the tests share it, so the
// tests run exactly what ships.
package manager

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcmanager "sigs.k8s.io/multicluster-runtime/pkg/manager"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// DefaultIstioVersion is the default of the --istio-version flag: none. A cluster's
// istiod then runs spec.version, else the mesh istiod's version, else the version of
// Istio's chart in this build (1.<istiochart.Minor()>.0), the one version whose
// injection templates the operator has of its own.
const DefaultIstioVersion = ""

// GracefulShutdownTimeout is how long a stopping replica lets running reconciles
// finish: less than the 30 s termination grace period of config/manager and the chart,
// so the replica releases its lease itself instead of being killed holding it.
const GracefulShutdownTimeout = 25 * time.Second

// Options configure the operator.
type Options struct {
	Manager              ctrl.Options
	Scheme               *runtime.Scheme
	Settings             render.Settings
	Workers              int
	AllowExecCredentials bool
	// AllowInsecureRemoteConnections lets remote secrets skip TLS verification, use
	// plain HTTP or a proxy.
	AllowInsecureRemoteConnections bool
	// RemoteRateLimit limits the requests to each data-plane cluster.
	RemoteRateLimit remotecluster.RateLimit
}

// LocalCacheOptions keep the mesh cluster's cache to what the operator reads: the
// remote secrets of the control plane namespace, not every Secret of the cluster; and
// the ConfigMaps and Deployments of that namespace only, where the mesh control plane
// keeps its injector and mesh configuration and its istiod.
func LocalCacheOptions(namespace string) cache.Options {
	// A map each: the cache fills in its defaults per namespace, in place.
	inNamespace := func() map[string]cache.Config { return map[string]cache.Config{namespace: {}} }
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Namespaces: inNamespace(),
			Label:      labels.SelectorFromSet(labels.Set{remotecluster.RemoteSecretLabel: "true"}),
		},
		&corev1.ConfigMap{}:  {Namespaces: inNamespace()},
		&appsv1.Deployment{}: {Namespaces: inNamespace()},
	}}
}

// AddToScheme registers every type the operator reads or writes.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1beta1.AddToScheme} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// CheckCASettings refuses an intermediate CA renewal window that is not shorter than
// its lifetime: every intermediate would be due for renewal as soon as it is issued,
// and istiod would roll on every pass.
func CheckCASettings(s render.Settings) error {
	lifetime, renewBefore := s.IntermediateCALifetime, s.IntermediateCARenewBefore
	if lifetime > 0 && renewBefore > 0 && renewBefore >= lifetime {
		return fmt.Errorf("--intermediate-ca-renew-before (%s) must be shorter than --intermediate-ca-lifetime (%s): "+
			"every intermediate would be renewed as soon as it is issued", renewBefore, lifetime)
	}
	return nil
}

// RemoteOptions are the remote cluster provider's options from the operator's.
func RemoteOptions(opts Options) remotecluster.Options {
	return remotecluster.Options{
		Namespace:      opts.Settings.Namespace,
		ClusterOptions: controller.RemoteClusterOptions(opts.Scheme, opts.Settings.Namespace),
		Kubeconfigs:    remotecluster.KubeconfigPolicy{AllowExec: opts.AllowExecCredentials, AllowInsecure: opts.AllowInsecureRemoteConnections},
		RateLimit:      opts.RemoteRateLimit,
	}
}

// New builds the multicluster manager with the provider and controllers registered.
func New(cfg *rest.Config, opts Options) (mcmanager.Manager, error) {
	if opts.Workers < 1 {
		opts.Workers = 8
	}
	if err := CheckCASettings(opts.Settings); err != nil {
		return nil, err
	}
	provider := remotecluster.New(RemoteOptions(opts))
	// Istio configuration is read as unstructured objects; serve those from the cache
	// too, so mirroring reads no more than the watches already bring.
	opts.Manager.Client.Cache = &client.CacheOptions{Unstructured: true}
	mgr, err := mcmanager.New(cfg, provider, opts.Manager)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := provider.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up remote clusters: %w", err)
	}
	r := &controller.ClusterReconciler{
		Local:       mgr.GetLocalManager().GetClient(),
		Scheme:      opts.Scheme,
		Clusters:    provider,
		Applier:     apply.New(),
		Recorder:    mgr.GetLocalManager().GetEventRecorder("remote-istiod-operator"),
		Settings:    opts.Settings,
		LocalCache:  mgr.GetLocalManager().GetCache(),
		LocalReader: mgr.GetLocalManager().GetAPIReader(),
	}
	if err := r.SetupWithManager(mgr, opts.Workers); err != nil {
		return nil, fmt.Errorf("setting up controllers: %w", err)
	}
	return mgr, nil
}
