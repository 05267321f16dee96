package remotecluster

import (
	"strings"
	"testing"
)

const tokenKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: %s
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`

func kubeconfig(user string) []byte { return []byte(strings.Replace(tokenKubeconfig, "%s", user, 1)) }

func TestKubeconfigWithToken(t *testing.T) {
	cfg, err := restConfigFromKubeconfig(kubeconfig("{token: secret-token-value}"), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.Timeout != RemoteRequestTimeout {
		t.Errorf("host %s timeout %s", cfg.Host, cfg.Timeout)
	}
}

func TestKubeconfigErrorsNameNoSecret(t *testing.T) {
	for name, data := range map[string][]byte{
		"garbage":        []byte("{not yaml: [secret-token-value"),
		"no context":     []byte(strings.Replace(string(kubeconfig("{token: secret-token-value}")), "current-context: ctx", "current-context: other", 1)),
		"exec plugin":    kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/steal, args: [secret-token-value]}}"),
		"auth provider":  kubeconfig("{auth-provider: {name: oidc, config: {id-token: secret-token-value}}}"),
		"no server data": []byte("apiVersion: v1\nkind: Config\ncurrent-context: ''\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := restConfigFromKubeconfig(data, false)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "secret-token-value") || strings.Contains(err.Error(), "/bin/steal") {
				t.Errorf("error quotes the kubeconfig: %v", err)
			}
		})
	}
}

func TestExecAllowedWhenAsked(t *testing.T) {
	_, err := restConfigFromKubeconfig(kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/true, interactiveMode: Never}}"), true)
	if err != nil {
		t.Fatal(err)
	}
}
