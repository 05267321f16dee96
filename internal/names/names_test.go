package names

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestForClusterGivesValidDistinctNames(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"Kubernetes", "cluster-1", "cluster_1", "Cluster-1", "a.b", "a-b", "A_B.c", "a_b", "A-b"} {
		name := ForCluster("remote-istiod-reader-", id)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%q gives %q: %v", id, name, errs)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%q and %q share the name %q", id, other, name)
		}
		seen[name] = id
	}
	if got := ForCluster("istio-remote-secret-", "cluster-1"); got != "istio-remote-secret-cluster-1" {
		t.Errorf("an ID that is a valid name must be kept as it is: %q", got)
	}
}
