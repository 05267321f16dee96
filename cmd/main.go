// The manager of remote-istiod-operator: it runs in the mesh cluster and keeps an
// istiod in every data-plane cluster named in the ASMMeshConfig "default".
package main

import (
	"flag"
	"os"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

func main() {
	var cl commandLine
	cl.bind(flag.CommandLine)
	// The time requests wait on the rate limit tells whether the limit fits the work.
	ctrlmetrics.RegisterRESTClientMetrics(ctrlmetrics.MetricRateLimiterLatency)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cl.zap)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	if err := manager.AddToScheme(scheme); err != nil {
		log.Error(err, "building scheme")
		os.Exit(1)
	}
	opts := cl.options(scheme)
	mgr, err := manager.New(ctrl.GetConfigOrDie(), opts)
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := mgr.GetLocalManager().AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "adding health check")
		os.Exit(1)
	}
	if err := mgr.GetLocalManager().AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "adding readiness check")
		os.Exit(1)
	}
	log.Info("starting", "namespace", opts.Settings.Namespace, "istioVersion", opts.Settings.Version)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// commandLine is what the manager's flags set.
type commandLine struct {
	opts        manager.Options
	metricsAddr string
	probeAddr   string
	pprofAddr   string
	leaderElect bool
	leaseNS     string
	zap         zap.Options
}

func (c *commandLine) bind(fs *flag.FlagSet) {
	opts := &c.opts
	fs.StringVar(&opts.Settings.Namespace, "control-plane-namespace", "istio-system",
		"Namespace of the Istio control plane: remote secrets are read from it in the mesh cluster, and istiod is installed into it in data-plane clusters.")
	fs.StringVar(&opts.Settings.Hub, "istio-hub", "docker.io/istio", "Default image registry of istiod when the ASMMeshConfig sets no spec.hub.")
	fs.StringVar(&opts.Settings.Version, "istio-version", manager.DefaultIstioVersion, "Istio version of the remote istiods when the ASMMeshConfig sets no spec.version and the mesh cluster runs no istiod to take it from; empty: the version of Istio's chart in this operator (1.N.0).")
	fs.DurationVar(&opts.Settings.IntermediateCALifetime, "intermediate-ca-lifetime", 90*24*time.Hour,
		"Lifetime of the intermediate CA issued to each remote istiod (never past the mesh CA's).")
	fs.DurationVar(&opts.Settings.IntermediateCARenewBefore, "intermediate-ca-renew-before", 30*24*time.Hour,
		"Renew an intermediate CA this long before it expires; istiod is rolled to pick it up.")
	fs.IntVar(&opts.Workers, "cluster-workers", 8, "How many data-plane clusters are reconciled at once.")
	fs.BoolVar(&opts.AllowExecCredentials, "allow-exec-credentials", false, "Let kubeconfigs in remote secrets run exec plugins and auth providers.")
	fs.BoolVar(&opts.AllowInsecureRemoteConnections, "allow-insecure-remote-connections", false,
		"Let kubeconfigs in remote secrets skip TLS verification (insecure-skip-tls-verify), use plain HTTP, or go through a proxy (proxy-url).")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "Address of the liveness and readiness probes.")
	fs.StringVar(&c.pprofAddr, "pprof-bind-address", "0",
		"Address of Go's pprof endpoints (/debug/pprof/: heap, CPU, goroutines), to see where memory and time go; 0 disables them. They serve no secret, but bind them to loopback or a port only operators reach.")
	fs.BoolVar(&c.leaderElect, "leader-elect", true, "Elect a leader so that only one replica acts at a time.")
	fs.StringVar(&c.leaseNS, "leader-election-namespace", manager.DefaultLeaderElectionNamespace(),
		"Namespace of the leader election lease: the operator's own (default: $POD_NAMESPACE, else the pod's service account namespace), never the control plane's.")
	bindRemoteRateLimit(fs, &opts.RemoteRateLimit)
	c.zap.BindFlags(fs)
}

// options are the manager's options from the flags.
func (c *commandLine) options(scheme *runtime.Scheme) manager.Options {
	opts := c.opts
	opts.Scheme = scheme
	opts.Manager = ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: c.metricsAddr},
		HealthProbeBindAddress:  c.probeAddr,
		PprofBindAddress:        c.pprofAddr,
		LeaderElection:          c.leaderElect,
		LeaderElectionID:        manager.LeaderElectionID,
		LeaderElectionNamespace: c.leaseNS,
		// A replica that stops hands the lease over at once instead of making the
		// other wait for it to expire.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptrTo(manager.GracefulShutdownTimeout),
		Cache:                         manager.LocalCacheOptions(opts.Settings.Namespace),
	}
	return opts
}

func ptrTo[T any](v T) *T { return &v }

// bindRemoteRateLimit binds the flags of the client-side rate limit of the requests to
// each data-plane cluster, as --kube-api-qps and --kube-api-burst do for one cluster in
// Flux and cluster-api's --clustercache-client-qps and -burst for workload clusters.
func bindRemoteRateLimit(fs *flag.FlagSet, limit *remotecluster.RateLimit) {
	limit.QPS, limit.Burst = remotecluster.DefaultQPS, remotecluster.DefaultBurst
	fs.Var((*float32Value)(&limit.QPS), "remote-api-qps",
		"Requests a second to each data-plane cluster, shared by all of the operator's clients of it; negative: no client-side limit (the API server's flow control still applies).")
	fs.IntVar(&limit.Burst, "remote-api-burst", limit.Burst, "Requests to each data-plane cluster that may go at once above --remote-api-qps.")
}

// float32Value is a flag.Value of a float32, as rest.Config's QPS is.
type float32Value float32

func (v *float32Value) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 32) }

func (v *float32Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return err
	}
	*v = float32Value(f)
	return nil
}
