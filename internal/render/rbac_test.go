package render

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// granted is the set of verbs rules grant on exactly this API group and resource (a
// rule for "*" does not count for a named resource).
func granted(rules []rbacv1.PolicyRule, group, resource string) []string {
	var verbs []string
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) {
			for _, v := range r.Verbs {
				if !slices.Contains(verbs, v) {
					verbs = append(verbs, v)
				}
			}
		}
	}
	slices.Sort(verbs)
	return verbs
}

// rbacBoundary is a permission the istio-discovery chart grants only from one release
// (and, if until is set, only before another), as templates/clusterrole.yaml reads at
// Istio's release tags.
type rbacBoundary struct {
	role            string // "istiod" or "gateway-controller"
	group, resource string
	verbs           []string
	from, until     int
}

var rbacBoundaries = []rbacBoundary{
	// 1.23: istiod writes ServiceEntry status (its own rule, without create/delete).
	{"istiod", "networking.istio.io", "serviceentries/status", []string{"get", "list", "patch", "update", "watch"}, 23, 0},
	// 1.24: serviceentries/status joins workloadentries/status, with every verb.
	{"istiod", "networking.istio.io", "serviceentries/status", []string{"create", "delete"}, 24, 0},
	{"istiod", "security.istio.io", "authorizationpolicies/status", allVerbs, 24, 0},
	{"istiod", "", "services/status", allVerbs, 24, 0},
	// 1.24 drops networking.x-k8s.io and narrows Gateway API writes to status; every
	// release reads the Gateway API.
	{"istiod", "gateway.networking.k8s.io", "*", readVerbs, 0, 0},
	{"istiod", "networking.x-k8s.io", "*", []string{"get", "list", "patch", "update", "watch"}, 0, 24},
	{"istiod", "gateway.networking.k8s.io", "*", []string{"patch", "update"}, 0, 24},
	{"istiod", "gateway.networking.k8s.io", "gateways/status", []string{"patch", "update"}, 24, 0},
	{"istiod", "gateway.networking.k8s.io", "httproutes/status", []string{"patch", "update"}, 24, 0},
	{"istiod", "gateway.networking.k8s.io", "backendtlspolicies/status", []string{"patch", "update"}, 24, 0},
	// 1.26: the experimental group gateway.networking.x-k8s.io.
	{"istiod", "gateway.networking.x-k8s.io", "*", readVerbs, 26, 0},
	{"istiod", "gateway.networking.x-k8s.io", "xbackendtrafficpolicies/status", []string{"patch", "update"}, 26, 0},
	{"gateway-controller", "autoscaling", "horizontalpodautoscalers", allVerbs, 26, 0},
	{"gateway-controller", "policy", "poddisruptionbudgets", allVerbs, 26, 0},
	// 1.27: experimental ListenerSets and InferencePools.
	{"istiod", "gateway.networking.x-k8s.io", "xlistenersets/status", []string{"patch", "update"}, 27, 30},
	{"istiod", "inference.networking.x-k8s.io", "inferencepools", readVerbs, 27, 28},
	{"istiod", "inference.networking.x-k8s.io", "inferencepools/status", []string{"patch", "update"}, 27, 28},
	// 1.28: InferencePools move to inference.networking.k8s.io.
	{"istiod", "inference.networking.k8s.io", "inferencepools", readVerbs, 28, 0},
	{"istiod", "inference.networking.k8s.io", "inferencepools/status", []string{"patch", "update"}, 28, 0},
	// 1.30: ListenerSets move to gateway.networking.k8s.io.
	{"istiod", "gateway.networking.k8s.io", "listenersets/status", []string{"patch", "update"}, 30, 0},
}

func (b rbacBoundary) String() string {
	name := fmt.Sprintf("%s %s/%s %s", b.role, b.group, b.resource, strings.Join(b.verbs, ","))
	if b.from != 0 {
		name += fmt.Sprintf(" from 1.%d", b.from)
	}
	if b.until != 0 {
		name += fmt.Sprintf(" until 1.%d", b.until)
	}
	return name
}

func (b rbacBoundary) applies(minor int) bool {
	return minor >= b.from && (b.until == 0 || minor < b.until)
}

// TestRBACVersionBoundaries checks, for every supported minor, that the rules the
// renderer gives on each permission that changed between releases are exactly those
// of the boundaries in force for that minor: present from the release that introduced
// them, absent before it and after the one that removed them.
func TestRBACVersionBoundaries(t *testing.T) {
	rulesOf := func(role string, v Version) []rbacv1.PolicyRule {
		if role == "gateway-controller" {
			return gatewayControllerRules(v)
		}
		return istiodClusterRules(v)
	}
	for _, b := range rbacBoundaries {
		t.Run(b.String(), func(t *testing.T) {
			for minor := OldestMinor; minor <= NewestMinor; minor++ {
				v := Version{Minor: minor}
				var want []string
				for _, o := range rbacBoundaries {
					if o.role == b.role && o.group == b.group && o.resource == b.resource && o.applies(minor) {
						want = append(want, o.verbs...)
					}
				}
				slices.Sort(want)
				want = slices.Compact(want)
				if got := granted(rulesOf(b.role, v), b.group, b.resource); !slices.Equal(got, want) {
					t.Errorf("1.%d: %s/%s verbs %v, want %v", minor, b.group, b.resource, got, want)
				}
			}
		})
	}
}
