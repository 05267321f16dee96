// Package access builds what mutual access needs: a reader identity in every other mesh
// cluster, scoped to what istiod reads there (Istio's reader role, without Secrets), and
// an Istio remote secret holding a kubeconfig for it. Never the operator's own
// credentials.
package access

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfleet/remote-istiod-operator/internal/names"
)

// ReaderForLabel names, on a reader identity in another cluster, the cluster whose
// istiod uses it.
const ReaderForLabel = "istio.alibabacloud.com/reader-for"

// IssuedAtAnnotation on a distributed remote secret says when its token was issued.
const IssuedAtAnnotation = "istio.alibabacloud.com/token-issued-at"

// ReaderName is the ServiceAccount, ClusterRole and ClusterRoleBinding that the istiod of
// cluster `reader` uses in another cluster.
func ReaderName(reader string) string { return names.ForCluster("remote-istiod-reader-", reader) }

// MeshConfigMap is the only ConfigMap a reader may read: the mesh config that istiod
// 1.29 and newer reads in every cluster it discovers, by name, for that cluster's trust
// domain (pilot/pkg/serviceregistry/kube/controller/multicluster.go, 1.29.0: "istio"
// for the default revision, which is the one the operator renders).
const MeshConfigMap = "istio"

// readerRules are what istiod reads in a cluster it discovers: Istio's reader role
// (manifests/charts/istio-control/istio-discovery/templates/reader-clusterrole.yaml)
// without Secrets and with one ConfigMap. Secrets there hold the cluster's intermediate
// CA key and other clusters' credentials; istiod reads them in another cluster only for
// credentialName lookups of proxies of that cluster (pilot/pkg/credentials/kube/
// multicluster.go, 1.30.3), which connect to their own istiod. Its refused Secret watch
// only delays that cluster's "synced" to PILOT_REMOTE_CLUSTER_TIMEOUT (SECURITY.md).
func readerRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"config.istio.io", "security.istio.io", "networking.istio.io", "authentication.istio.io",
			"rbac.istio.io", "telemetry.istio.io", "extensions.istio.io"}, Resources: []string{"*"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"endpoints", "pods", "services", "nodes", "replicationcontrollers",
			"namespaces"}, Verbs: read},
		// istiod lists and watches it with a metadata.name field selector, which the API
		// server authorizes against resourceNames.
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{MeshConfigMap}, Verbs: read},
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"workloadentries"}, Verbs: read},
		{APIGroups: []string{"networking.x-k8s.io", "gateway.networking.k8s.io"}, Resources: []string{"gateways"}, Verbs: read},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports", "serviceimports"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: read},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
}

// ReaderObjects are the reader identity of cluster `reader`'s istiod in another cluster.
func ReaderObjects(reader, namespace string, labels map[string]string) []metav1.Object {
	name := ReaderName(reader)
	meta := func(ns string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels} }
	return []metav1.Object{
		&corev1.ServiceAccount{ObjectMeta: meta(namespace)},
		&rbacv1.ClusterRole{ObjectMeta: meta(""), Rules: readerRules()},
		&rbacv1.ClusterRoleBinding{ObjectMeta: meta(""),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: namespace}}},
	}
}

// Kubeconfig reaches cluster `id` at the address and with the CA the operator uses,
// authenticated only by the reader's token.
func Kubeconfig(id string, server *rest.Config, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[id] = &clientcmdapi.Cluster{
		Server:                   server.Host,
		CertificateAuthorityData: server.CAData,
		TLSServerName:            server.ServerName,
		InsecureSkipTLSVerify:    server.Insecure,
	}
	cfg.AuthInfos[id] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[id] = &clientcmdapi.Context{Cluster: id, AuthInfo: id}
	cfg.CurrentContext = id
	return clientcmd.Write(*cfg)
}

// SecretName is the remote secret for cluster `id`, as istioctl create-remote-secret
// names it.
func SecretName(id string) string { return names.ForCluster("istio-remote-secret-", id) }
