package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

// RemoteRequestTimeout bounds every request to a remote API server but watches, so
// that a slow or unreachable cluster fails fast instead of holding a worker.
const RemoteRequestTimeout = 15 * time.Second

// restConfigFromKubeconfig parses one kubeconfig from an Istio remote secret. It refuses
// exec plugins and auth providers unless allowed: a remote secret is data anyone who can
// write Secrets in the control plane namespace controls, and an exec plugin would run a
// command of their choosing inside the operator. Errors never quote the kubeconfig.
func restConfigFromKubeconfig(id string, data []byte, allowExec bool) (*rest.Config, error) {
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
	if auth, ok := rawCfg.AuthInfos[kctx.AuthInfo]; ok && !allowExec {
		if auth.Exec != nil {
			return nil, errors.New("the kubeconfig uses an exec credential plugin, which the operator refuses (use a token or client certificate)")
		}
		if auth.AuthProvider != nil {
			return nil, errors.New("the kubeconfig uses an auth provider, which the operator refuses (use a token or client certificate)")
		}
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
	// client-go's default of 5 requests a second would make one reconcile of a cluster
	// (istiod, the mirror, the switch) take seconds.
	restCfg.QPS, restCfg.Burst = 50, 100
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
		return t.next.RoundTrip(req)
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
