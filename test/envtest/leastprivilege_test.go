package envtest

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/manager"
)

// may asks a cluster's authorizer whether user (in groups) may do what attrs say.
func may(c client.Client, user string, groups []string, attrs authorizationv1.ResourceAttributes) bool {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups, ResourceAttributes: &attrs}}
	Expect(c.Create(ctx(), review)).To(Succeed())
	return review.Status.Allowed
}

type right struct {
	attrs authorizationv1.ResourceAttributes
	allow bool
}

func expectRights(c client.Client, user string, groups []string, rights []right) {
	GinkgoHelper()
	for _, r := range rights {
		Expect(may(c, user, groups, r.attrs)).To(Equal(r.allow), "%s %s/%s %q in %q", r.attrs.Verb, r.attrs.Group, r.attrs.Resource, r.attrs.Name, r.attrs.Namespace)
	}
}

// The suite's operator runs with exactly the shipped roles (config/rbac in the mesh
// cluster, config/remote in every data-plane cluster); these are the rights the issue
// named too broad, checked against the same API servers.
var _ = Describe("least privilege", func() {
	It("keeps the leader lease to the operator's own, in its own namespace, away from istiod's", func() {
		lease := func(namespace, name, verb string) authorizationv1.ResourceAttributes {
			return authorizationv1.ResourceAttributes{Namespace: namespace, Group: "coordination.k8s.io", Resource: "leases", Name: name, Verb: verb}
		}
		expectRights(mesh, "remote-istiod-operator", nil, []right{
			{lease(operatorNS, manager.LeaderElectionID, "get"), true},
			{lease(operatorNS, manager.LeaderElectionID, "update"), true},
			{lease(operatorNS, "", "create"), true},
			{lease(operatorNS, "another-lease", "update"), false},
			{lease(operatorNS, "", "list"), false},
			{lease(operatorNS, manager.LeaderElectionID, "delete"), false},
			// istiod's leader leases in the control plane namespace.
			{lease(ns, "istio-leader", "get"), false},
			{lease(ns, "istio-leader", "update"), false},
			{lease(ns, "", "create"), false},
			{lease(ns, "istio-leader", "delete"), false},
		})
	})

	It("writes in a data-plane cluster only where it must", func() {
		res := func(namespace, group, resource, name, verb string) authorizationv1.ResourceAttributes {
			return authorizationv1.ResourceAttributes{Namespace: namespace, Group: group, Resource: resource, Name: name, Verb: verb}
		}
		rbac := "rbac.authorization.k8s.io"
		crds := "apiextensions.k8s.io"
		expectRights(remotes["cluster-1"].client, "operator", []string{remoteOperatorGroup}, []right{
			// Namespaces: only the control plane's is changed or deleted.
			{res("", "", "namespaces", ns, "delete"), true},
			{res("", "", "namespaces", ns, "patch"), true},
			{res("", "", "namespaces", "default", "delete"), false},
			{res("", "", "namespaces", "default", "patch"), false},
			// ConfigMaps, Services, ServiceAccounts: written in the control plane namespace only.
			{res(ns, "", "configmaps", "", "create"), true},
			{res("default", "", "configmaps", "", "create"), false},
			{res("default", "", "configmaps", "any", "get"), false},
			{res("default", "", "configmaps", "istio", "get"), true}, // the mesh config, as Istio's reader role reads it
			{res("default", "", "services", "kubernetes", "patch"), false},
			{res("default", "", "services", "kubernetes", "delete"), false},
			{res("default", "", "serviceaccounts", "default", "delete"), false},
			{res("default", "", "serviceaccounts", "", "create"), false},
			{res("default", "", "secrets", "", "list"), false},
			// Deployments: gateways anywhere are restarted (patched), never created or deleted.
			{res("default", "apps", "deployments", "httpbin", "patch"), true},
			{res("default", "apps", "deployments", "httpbin", "delete"), false},
			{res("default", "apps", "deployments", "", "create"), false},
			{res(ns, "apps", "deployments", "istiod", "delete"), true},
			// Roles: bind and escalate only istiod's own.
			{res("", rbac, "clusterroles", "cluster-admin", "bind"), false},
			{res("", rbac, "clusterroles", "cluster-admin", "escalate"), false},
			{res("", rbac, "clusterroles", "istiod-clusterrole-istio-system", "bind"), true},
			{res("", rbac, "clusterroles", "istiod-gateway-controller-istio-system", "escalate"), true},
			{res(ns, rbac, "roles", "istiod", "escalate"), true},
			{res(ns, rbac, "roles", "other", "bind"), false},
			{res("default", rbac, "roles", "", "create"), false},
			{res("default", rbac, "rolebindings", "", "create"), false},
			// CRDs: only Istio's are changed or deleted.
			{res("", crds, "customresourcedefinitions", "virtualservices.networking.istio.io", "delete"), true},
			{res("", crds, "customresourcedefinitions", "widgets.example.com", "delete"), false},
			{res("", crds, "customresourcedefinitions", "widgets.example.com", "patch"), false},
		})
	})
})
