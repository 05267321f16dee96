package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

// RateLimit is the client-side rate limit of the operator's requests to one cluster:
// one token bucket that every client of the cluster shares (its cache, its clients of
// each kind, discovery). client-go would give each kind's client a bucket of its own,
// so a limit per cluster would be as many limits as kinds, and a first mirror pass of
// one kind would wait on a bucket sized for a handful of requests.
type RateLimit struct {
	// QPS is the sustained rate; a negative one sends requests unthrottled, leaving
	// flow control to the API server (API Priority and Fairness).
	QPS float32
	// Burst is how many requests may go at once above QPS.
	Burst int
}

// The defaults of --remote-api-qps and --remote-api-burst let the operator's work go
// at the pace of a far link rather than of the limit: a mirror pass writes 16 copies at
// once, which through a 100 ms link is some 160 requests a second, and the first pass
// of 1,000 copies or an istiod install (about 150 requests) fits in the burst or
// nearly.
const (
	DefaultQPS   float32 = 200
	DefaultBurst int     = 400
)

// applyTo puts the limit on cfg, shared by every client built from cfg or a copy of it.
func (l RateLimit) applyTo(cfg *rest.Config) {
	if l.QPS == 0 && l.Burst == 0 {
		l = RateLimit{QPS: DefaultQPS, Burst: DefaultBurst}
	}
	cfg.QPS, cfg.Burst, cfg.RateLimiter = l.QPS, l.Burst, nil
	if l.QPS > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(l.QPS, max(l.Burst, 1))
	}
}

// RESTConfig is the client configuration the provider uses for cluster id with this
// kubeconfig of its remote secret: the kubeconfig as the policy allows it, with the
// provider's rate limit.
func (p *Provider) RESTConfig(id string, kubeconfig []byte) (*rest.Config, error) {
	cfg, err := restConfigFromKubeconfig(id, kubeconfig, p.opts.Kubeconfigs)
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests a second would make one reconcile of a cluster
	// (istiod, the mirror, the switch) take seconds.
	p.opts.RateLimit.applyTo(cfg)
	return cfg, nil
}

// RemoteRequestTimeout bounds every request to a remote API server but watches, so
// that a slow or unreachable cluster fails fast instead of holding a worker.
const RemoteRequestTimeout = 15 * time.Second

// KubeconfigPolicy says what a kubeconfig in a remote secret may use beyond inline
// credentials and CA data over verified TLS. A remote secret is data that anyone who can
// write Secrets in the control plane namespace controls; the operator's own identity
// there can read the mesh CA, so nothing in a kubeconfig may make it read local files,
// run commands, or send credentials where they could be read.
type KubeconfigPolicy struct {
	// AllowExec lets kubeconfigs run exec plugins and use auth providers.
	AllowExec bool
	// AllowInsecure lets kubeconfigs skip TLS verification, use plain HTTP, or go
	// through a proxy.
	AllowInsecure bool
}

// restConfigFromKubeconfig parses one kubeconfig from an Istio remote secret and
// refuses what the policy does not allow: files (tokenFile, client-certificate,
// client-key, certificate-authority: Istio's own secret controller refuses the first
// three, pkg/kube/util.go sanitizeKubeConfig), exec plugins and auth providers, and
// unless allowed insecure TLS, plain HTTP and proxies. Errors name the field, never
// its value or anything else of the kubeconfig.
func restConfigFromKubeconfig(id string, data []byte, policy KubeconfigPolicy) (*rest.Config, error) {
	raw, err := clientcmd.Load(data)
	if err != nil {
		return nil, errors.New("the kubeconfig is not valid YAML or JSON")
	}
	cfg := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{})
	rawCfg, err := cfg.RawConfig()
	if err != nil {
		return nil, errors.New("the kubeconfig cannot be read")
	}
	ctxName := rawCfg.CurrentContext
	kctx, ok := rawCfg.Contexts[ctxName]
	if !ok {
		return nil, fmt.Errorf("the kubeconfig's current-context %q does not exist", ctxName)
	}
	if err := checkPolicy(rawCfg.AuthInfos[kctx.AuthInfo], rawCfg.Clusters[kctx.Cluster], policy); err != nil {
		return nil, err
	}
	restCfg, err := cfg.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig is incomplete: %s", redactedReason(err))
	}
	// Not rest.Config.Timeout: it is the http.Client's timeout, which also ends every
	// watch stream after that long, so each informer would re-open its watch every 15s.
	// Watches need none: client-go's reflectors end them every 5-10 minutes, and its
	// HTTP/2 health check (ReadIdleTimeout 30s, PingTimeout 15s, in
	// k8s.io/apimachinery/pkg/util/net) closes a connection that stopped answering.
	restCfg.Timeout = 0
	restCfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return &requestDeadline{next: next, timeout: RemoteRequestTimeout, cluster: id}
	})
	restCfg.UserAgent = "remote-istiod-operator"
	return restCfg, nil
}

// redactedReason keeps clientcmd's validation message, which names fields and contexts
// but not credentials.
func redactedReason(err error) string {
	var invalid interface{ Errors() []error }
	if errors.As(err, &invalid) {
		return fmt.Sprintf("%d problem(s), first: %v", len(invalid.Errors()), invalid.Errors()[0])
	}
	return "it has no usable server or credentials"
}

// requestDeadline gives every request but a watch a deadline, and counts requests per
// verb so that churn across the link can be seen (remote_requests_total).
type requestDeadline struct {
	next    http.RoundTripper
	timeout time.Duration
	cluster string
}

func (t *requestDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	watch := isWatch(req)
	metrics.CountRemoteRequest(t.cluster, verb(req.Method, watch))
	if watch {
		return t.next.RoundTrip(uncompressed(req))
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	// The deadline covers reading the body too; it ends when the caller is done.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// uncompressed asks for a watch stream without gzip. Kubernetes 1.37 compresses
// WatchList streams (the WatchListCompression feature, on by default) for a client that
// accepts gzip, and Go's HTTP client then holds a gzip decoder of some 40 KB for the
// life of each stream, about 30 per cluster: most of what a cluster costs in memory
// after its caches. The streams carry small events and object metadata, so they lose
// little; gets and lists keep gzip, where it pays across a far link.
func uncompressed(req *http.Request) *http.Request {
	if req.Header.Get("Accept-Encoding") != "" {
		return req
	}
	req = req.Clone(req.Context())
	req.Header.Set("Accept-Encoding", "identity")
	return req
}

func isWatch(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	v := req.URL.Query().Get("watch")
	return v == "true" || v == "1"
}

func verb(method string, watch bool) string {
	switch {
	case watch:
		return "watch"
	case method == http.MethodGet:
		return "get"
	case method == http.MethodPost:
		return "create"
	case method == http.MethodPut:
		return "update"
	case method == http.MethodPatch:
		return "patch"
	case method == http.MethodDelete:
		return "delete"
	}
	return "other"
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// WrappedRoundTripper lets client-go see through this wrapper (utilnet.RoundTripperWrapper).
func (t *requestDeadline) WrappedRoundTripper() http.RoundTripper { return t.next }

// checkPolicy refuses the fields of the current context's user and cluster that the
// policy does not allow.
func checkPolicy(auth *clientcmdapi.AuthInfo, cluster *clientcmdapi.Cluster, policy KubeconfigPolicy) error {
	refuse := func(field, why string) error {
		return fmt.Errorf("the kubeconfig sets %s, which the operator refuses: %s", field, why)
	}
	const inline = "a remote secret must carry its credentials and CA inline"
	if auth != nil {
		switch {
		case auth.TokenFile != "":
			return refuse("users[].user.tokenFile", inline+" (token)")
		case auth.ClientCertificate != "":
			return refuse("users[].user.client-certificate", inline+" (client-certificate-data)")
		case auth.ClientKey != "":
			return refuse("users[].user.client-key", inline+" (client-key-data)")
		case auth.Exec != nil && !policy.AllowExec:
			return refuse("users[].user.exec", "use a token or client certificate, or start the operator with --allow-exec-credentials")
		case auth.AuthProvider != nil && !policy.AllowExec:
			return refuse("users[].user.auth-provider", "use a token or client certificate, or start the operator with --allow-exec-credentials")
		}
	}
	if cluster == nil {
		return nil // clientcmd says what is missing
	}
	const insecure = "start the operator with --allow-insecure-remote-connections to accept it"
	switch {
	case cluster.CertificateAuthority != "":
		return refuse("clusters[].cluster.certificate-authority", inline+" (certificate-authority-data)")
	case cluster.InsecureSkipTLSVerify && !policy.AllowInsecure:
		return refuse("clusters[].cluster.insecure-skip-tls-verify", "the operator would send its credentials to any server that answers; "+insecure)
	case cluster.ProxyURL != "" && !policy.AllowInsecure:
		return refuse("clusters[].cluster.proxy-url", "the proxy would see where the operator connects; "+insecure)
	case !strings.HasPrefix(cluster.Server, "https://") && !policy.AllowInsecure:
		return refuse("clusters[].cluster.server without https://", "credentials would cross the link in clear text; "+insecure)
	}
	return nil
}
