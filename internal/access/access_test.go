package access

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestReaderCannotWrite(t *testing.T) {
	for _, o := range ReaderObjects("cluster-2", "istio-system", nil) {
		role, ok := o.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		for _, rule := range role.Rules {
			review := rule.Resources[0] == "tokenreviews" || rule.Resources[0] == "subjectaccessreviews"
			for _, verb := range rule.Verbs {
				readOnly := slices.Contains([]string{"get", "list", "watch"}, verb)
				if !readOnly && (verb != "create" || !review) {
					t.Errorf("reader may %s %v", verb, rule.Resources)
				}
			}
		}
		return
	}
	t.Fatal("no ClusterRole")
}

func TestKubeconfigCarriesOnlyTheToken(t *testing.T) {
	server := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{
		CAData: []byte("ca"), CertData: []byte("operator-cert"), KeyData: []byte("operator-key")}, BearerToken: "operator-token"}
	raw, err := Kubeconfig("cluster-1", server, "reader-token")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != server.Host || string(cfg.CAData) != "ca" || cfg.BearerToken != "reader-token" {
		t.Errorf("host %s ca %q token %q", cfg.Host, cfg.CAData, cfg.BearerToken)
	}
	if len(cfg.CertData) > 0 || len(cfg.KeyData) > 0 {
		t.Error("the operator's client certificate was handed out")
	}
}
