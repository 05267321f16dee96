package render

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	readVerbs = []string{"get", "watch", "list"}
	allVerbs  = []string{"get", "watch", "list", "update", "patch", "create", "delete"}
	istioAPIs = []string{"config.istio.io", "security.istio.io", "networking.istio.io", "authentication.istio.io",
		"rbac.istio.io", "telemetry.istio.io", "extensions.istio.io"}
)

func rule(groups, resources, verbs []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs}
}

func one(s string) []string { return []string{s} }

// istiodClusterRules are istiod's cluster-wide permissions, as the chart grants them
// (templates/clusterrole.yaml of istio-discovery at each release tag).
func istiodClusterRules(v Version) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{
		rule(one("admissionregistration.k8s.io"), one("mutatingwebhookconfigurations"), []string{"get", "list", "watch", "update", "patch"}),
		rule(one("admissionregistration.k8s.io"), one("validatingwebhookconfigurations"), []string{"get", "list", "watch", "update"}),
		rule(istioAPIs, one("*"), readVerbs),
		rule(one("networking.istio.io"), one("workloadentries"), allVerbs),
	}
	switch {
	case v.AtLeast(24):
		// istiod writes the status of ServiceEntries, AuthorizationPolicies and Services.
		rules = append(rules,
			rule(one("networking.istio.io"), []string{"workloadentries/status", "serviceentries/status"}, allVerbs),
			rule(one("security.istio.io"), one("authorizationpolicies/status"), allVerbs),
			rule(one(""), one("services/status"), allVerbs))
	case v.AtLeast(23):
		rules = append(rules,
			rule(one("networking.istio.io"), one("workloadentries/status"), allVerbs),
			rule(one("networking.istio.io"), one("serviceentries/status"), []string{"get", "watch", "list", "update", "patch"}))
	default:
		rules = append(rules, rule(one("networking.istio.io"), one("workloadentries/status"), allVerbs))
	}
	rules = append(rules,
		rule(one("apiextensions.k8s.io"), one("customresourcedefinitions"), []string{"get", "list", "watch"}),
		rule(one(""), []string{"pods", "nodes", "services", "namespaces", "endpoints"}, []string{"get", "list", "watch"}),
		rule(one("discovery.k8s.io"), one("endpointslices"), []string{"get", "list", "watch"}),
		rule(one("networking.k8s.io"), []string{"ingresses", "ingressclasses"}, []string{"get", "list", "watch"}),
		rule(one("networking.k8s.io"), one("ingresses/status"), one("*")),
		rule(one(""), one("configmaps"), []string{"create", "get", "list", "watch", "update"}),
		rule(one("authentication.k8s.io"), one("tokenreviews"), one("create")),
		rule(one("authorization.k8s.io"), one("subjectaccessreviews"), one("create")),
	)
	return append(append(rules, gatewayAPIRules(v)...),
		rule(one(""), one("secrets"), readVerbs),
		rule(one("multicluster.x-k8s.io"), one("serviceexports"), []string{"get", "watch", "list", "create", "delete"}),
		rule(one("multicluster.x-k8s.io"), one("serviceimports"), readVerbs),
	)
}

// gatewayAPIRules are istiod's Gateway API (and inference extension) permissions.
// Before 1.24 it may write every resource of the Gateway API groups, networking.x-k8s.io
// included; from 1.24 only the status of the kinds it reconciles. 1.26 adds the
// experimental group gateway.networking.x-k8s.io, 1.27 ListenerSets (experimental until
// 1.30) and InferencePools (inference.networking.x-k8s.io, inference.networking.k8s.io
// from 1.28).
func gatewayAPIRules(v Version) []rbacv1.PolicyRule {
	gatewayClasses := rule(one("gateway.networking.k8s.io"), one("gatewayclasses"), []string{"create", "update", "patch", "delete"})
	if !v.AtLeast(24) {
		groups := []string{"networking.x-k8s.io", "gateway.networking.k8s.io"}
		return []rbacv1.PolicyRule{rule(groups, one("*"), readVerbs), rule(groups, one("*"), []string{"update", "patch"}), gatewayClasses}
	}
	statusVerbs := []string{"update", "patch"}
	status := []string{"backendtlspolicies/status", "gatewayclasses/status", "gateways/status", "grpcroutes/status",
		"httproutes/status", "referencegrants/status", "tcproutes/status", "tlsroutes/status", "udproutes/status"}
	if v.AtLeast(30) {
		status = append(status, "listenersets/status")
	}
	if !v.AtLeast(26) {
		return []rbacv1.PolicyRule{
			rule(one("gateway.networking.k8s.io"), one("*"), readVerbs),
			rule(one("gateway.networking.k8s.io"), status, statusVerbs),
			gatewayClasses,
		}
	}
	experimental := []string{"xbackendtrafficpolicies/status"}
	if v.AtLeast(27) && !v.AtLeast(30) {
		experimental = append(experimental, "xlistenersets/status")
	}
	rules := []rbacv1.PolicyRule{
		rule([]string{"gateway.networking.k8s.io", "gateway.networking.x-k8s.io"}, one("*"), readVerbs),
		rule(one("gateway.networking.x-k8s.io"), experimental, statusVerbs),
		rule(one("gateway.networking.k8s.io"), status, statusVerbs),
		gatewayClasses,
	}
	if v.AtLeast(27) {
		inference := "inference.networking.x-k8s.io"
		if v.AtLeast(28) {
			inference = "inference.networking.k8s.io"
		}
		rules = append(rules,
			rule(one(inference), one("inferencepools"), readVerbs),
			rule(one(inference), one("inferencepools/status"), statusVerbs))
	}
	return rules
}

// gatewayControllerRules let istiod deploy Gateway API gateways.
func gatewayControllerRules(v Version) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{rule(one("apps"), one("deployments"), allVerbs)}
	if v.AtLeast(26) {
		rules = append(rules,
			rule(one("autoscaling"), one("horizontalpodautoscalers"), allVerbs),
			rule(one("policy"), one("poddisruptionbudgets"), allVerbs))
	}
	return append(rules, rule(one(""), one("services"), allVerbs), rule(one(""), one("serviceaccounts"), allVerbs))
}

// istiodNamespaceRules: the Gateway dry-run that arms validation, the CA secret,
// configmap cleanup and leader-election leases.
func istiodNamespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		rule(one("networking.istio.io"), one("gateways"), one("create")),
		rule(one(""), one("secrets"), []string{"create", "get", "watch", "list", "update", "delete"}),
		rule(one(""), one("configmaps"), one("delete")),
		rule(one("coordination.k8s.io"), one("leases"), []string{"get", "update", "patch", "create"}),
	}
}

func (r *renderer) rbac() []any {
	ns := r.in.Namespace
	clusterRole := "istiod-clusterrole-" + ns
	gatewayRole := "istiod-gateway-controller-" + ns
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "istiod", Namespace: ns}}
	ref := func(kind, name string) rbacv1.RoleRef {
		return rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: kind, Name: name}
	}
	labels := r.labels(map[string]string{"app": "istiod", "release": "istiod"})
	return []any{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: clusterRole, Labels: labels}, Rules: istiodClusterRules(r.v)},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterRole, Labels: labels},
			RoleRef: ref("ClusterRole", clusterRole), Subjects: subject},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: gatewayRole, Labels: labels}, Rules: gatewayControllerRules(r.v)},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: gatewayRole, Labels: labels},
			RoleRef: ref("ClusterRole", gatewayRole), Subjects: subject},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: ns, Labels: labels}, Rules: istiodNamespaceRules()},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: ns, Labels: labels},
			RoleRef: ref("Role", "istiod"), Subjects: subject},
	}
}
