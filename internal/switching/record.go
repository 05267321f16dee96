package switching

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/meshfleet/remote-istiod-operator/internal/names"
)

// copyPrefix starts the name of the copy of a cluster's switch record that the operator
// keeps in the mesh cluster, so a record lost in the data-plane cluster can be recovered.
const copyPrefix = StateName + "-"

// CopyName is the name of the mesh cluster's copy of a cluster's switch record. Cluster
// IDs are label values (upper case and '_' allowed), ConfigMap names are not: such IDs
// are lower-cased, '_' becomes '-', and a hash of the ID keeps two of them apart.
func CopyName(clusterID string) string { return names.ForCluster(copyPrefix, clusterID) }

// Same reports whether two records describe the same switch with the same content.
func Same(a, b *State) bool {
	return a != nil && b != nil && a.SwitchedAt.Equal(b.SwitchedAt) &&
		equality.Semantic.DeepEqual(a.Injectors, b.Injectors) && equality.Semantic.DeepEqual(a.Validators, b.Validators) &&
		equality.Semantic.DeepEqual(a.Lead, b.Lead) && equality.Semantic.DeepEqual(a.Address, b.Address)
}

// Traces are what a switch leaves in a cluster that only a switch does: they tell a
// cluster that is switched but has lost its record from one that never switched.
type Traces struct {
	// Address is the remote profile's Service istiod (nil when the cluster has none,
	// or it is the operator's own).
	Address *corev1.Service
	// Namespace is the control plane namespace.
	Namespace *corev1.Namespace
	// Gateways are the cluster's Istio gateway Deployments.
	Gateways []appsv1.Deployment
}

// Found lists, in words, the signs that clusterID is switched. Recording the live
// objects as "before the switch" then would be a lie: giving them back would leave the
// cluster calling an istiod that is about to be deleted.
func (t Traces) Found(clusterID string) []string {
	var found []string
	if svc := t.Address; svc != nil && svc.Spec.Type != corev1.ServiceTypeExternalName && maps.Equal(svc.Spec.Selector, LocalSelector) {
		// The remote profile's Service selects nothing; the switch makes it select the
		// local istiod's pods.
		found = append(found, fmt.Sprintf("Service %s/%s selects the local istiod's pods (%v)", svc.Namespace, svc.Name, svc.Spec.Selector))
	}
	if ns := t.Namespace; ns != nil && ns.Annotations[LeadAnnotation] == clusterID {
		found = append(found, fmt.Sprintf("namespace %s names the cluster itself in %s", ns.Name, LeadAnnotation))
	}
	var gateways []string
	for _, dep := range t.Gateways {
		// A switch marks each gateway switch-<time>, its switch-back back-<time>.
		if v := dep.Spec.Template.Annotations[RestartAnnotation]; strings.HasPrefix(v, "switch-") {
			gateways = append(gateways, dep.Namespace+"/"+dep.Name+" ("+v+")")
		}
	}
	if len(gateways) > 0 {
		slices.Sort(gateways)
		found = append(found, fmt.Sprintf("gateways were restarted for a switch and not since: %s", strings.Join(gateways, ", ")))
	}
	return found
}
