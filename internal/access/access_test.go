package access

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation"
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

// grants says whether rule grants verb on resource of the core API group, to any
// object (names empty) or to the named one.
func grants(rule rbacv1.PolicyRule, verb, resource, name string) bool {
	anyOf := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	if !anyOf(rule.APIGroups, "") || !anyOf(rule.Resources, resource) || !anyOf(rule.Verbs, verb) {
		return false
	}
	return len(rule.ResourceNames) == 0 || (name != "" && slices.Contains(rule.ResourceNames, name))
}

func readerRole(t *testing.T) *rbacv1.ClusterRole {
	for _, o := range ReaderObjects("cluster-2", "istio-system", nil) {
		if role, ok := o.(*rbacv1.ClusterRole); ok {
			return role
		}
	}
	t.Fatal("no ClusterRole")
	return nil
}

// A reader token must not read the cluster's intermediate CA key (cacerts), the
// operator's token Secret or the remote secrets of the mesh cluster.
func TestReaderGrantsNothingOnSecrets(t *testing.T) {
	for _, rule := range readerRole(t).Rules {
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"} {
			for _, name := range []string{"", "cacerts", "istio-remote-secret-mesh"} {
				if grants(rule, verb, "secrets", name) {
					t.Errorf("rule %+v grants %s on secrets %q", rule, verb, name)
				}
			}
		}
	}
}

// ConfigMaps: only the mesh config istiod reads in the clusters it discovers.
func TestReaderReadsOnlyTheMeshConfigMap(t *testing.T) {
	var meshConfig bool
	for _, rule := range readerRole(t).Rules {
		for _, verb := range []string{"get", "list", "watch"} {
			if grants(rule, verb, "configmaps", "") || grants(rule, verb, "configmaps", "other") {
				t.Errorf("rule %+v grants %s on configmaps other than %s", rule, verb, MeshConfigMap)
			}
			if grants(rule, verb, "configmaps", MeshConfigMap) && verb == "watch" {
				meshConfig = true
			}
		}
	}
	if !meshConfig {
		t.Errorf("the reader cannot watch ConfigMap %s, which istiod 1.29+ reads in every cluster it discovers", MeshConfigMap)
	}
}

// TestNamesOfClusterIDsThatAreNotNames uses Istio's default cluster ID, "Kubernetes":
// every object and secret named after it must be a valid name, or mutual access with
// such a cluster fails for ever.
func TestNamesOfClusterIDsThatAreNotNames(t *testing.T) {
	for _, id := range []string{"Kubernetes", "east_1"} {
		for _, o := range ReaderObjects(id, "istio-system", map[string]string{ReaderForLabel: id}) {
			if errs := validation.IsDNS1123Subdomain(o.GetName()); len(errs) > 0 {
				t.Errorf("reader object for %q is named %q: %v", id, o.GetName(), errs)
			}
		}
		if errs := validation.IsDNS1123Subdomain(SecretName(id)); len(errs) > 0 {
			t.Errorf("the remote secret for %q is named %q: %v", id, SecretName(id), errs)
		}
	}
}
