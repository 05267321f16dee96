package remotecluster

import (
	"strings"
	"testing"
)

// FuzzKubeconfig feeds kubeconfigs a remote secret could hold: parsing never panics,
// and every refusal says what is wrong without quoting the token the seeds carry.
// `make test` runs the seeds; `go test -fuzz FuzzKubeconfig ./internal/remotecluster`
// explores further.
func FuzzKubeconfig(f *testing.F) {
	for _, seed := range [][]byte{
		kubeconfig("{token: secret-token-value}"),
		kubeconfig("{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}"),
		kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/steal, args: [secret-token-value]}}"),
		kubeconfig("{auth-provider: {name: oidc, config: {id-token: secret-token-value}}}"),
		withCluster(`{server: "https://attacker.example", insecure-skip-tls-verify: true}`),
		withCluster(`{server: "http://127.0.0.1:6443"}`),
		withCluster(`{server: "https://127.0.0.1:6443", certificate-authority: /etc/ca.pem}`),
		[]byte("{not yaml: [secret-token-value"),
		[]byte("apiVersion: v1\nkind: Config\ncurrent-context: ''\n"),
		[]byte(""),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, policy := range []KubeconfigPolicy{{}, {AllowExec: true, AllowInsecure: true}} {
			cfg, err := restConfigFromKubeconfig("fuzz", data, policy)
			if err == nil {
				if cfg == nil || cfg.Host == "" {
					t.Fatalf("accepted without a server: %+v", cfg)
				}
				continue
			}
			msg := err.Error()
			if msg == "" {
				t.Fatal("a refusal without a message")
			}
			if strings.Contains(msg, "secret-token-value") {
				t.Fatalf("the refusal quotes the kubeconfig: %s", msg)
			}
		}
	})
}
