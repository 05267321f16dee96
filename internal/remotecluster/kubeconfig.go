package remotecluster

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RemoteRequestTimeout bounds every request to a remote API server, so that a slow or
// unreachable cluster fails fast instead of holding a worker.
const RemoteRequestTimeout = 15 * time.Second

// restConfigFromKubeconfig parses one kubeconfig from an Istio remote secret. It refuses
// exec plugins and auth providers unless allowed: a remote secret is data anyone who can
// write Secrets in the control plane namespace controls, and an exec plugin would run a
// command of their choosing inside the operator. Errors never quote the kubeconfig.
func restConfigFromKubeconfig(data []byte, allowExec bool) (*rest.Config, error) {
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
	restCfg.Timeout = RemoteRequestTimeout
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
