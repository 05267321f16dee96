package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

func TestClusterNeeds(t *testing.T) {
	mc := &v1beta1.ASMMeshConfig{Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
		"entry": {},
	}}, Status: v1beta1.ASMMeshConfigStatus{Clusters: []v1beta1.ClusterStatus{{ClusterID: "removing"}}}}
	needs := clusterNeeds(mc, []string{"recorded"})
	for _, id := range []string{"entry", "removing", "recorded"} {
		if !needs.IDs[id] {
			t.Errorf("%s is not needed: %+v", id, needs)
		}
	}
	if needs.All || needs.IDs["other"] {
		t.Errorf("a cluster nothing names is needed: %+v", needs)
	}
	if clusterNeeds(nil, nil).All || len(clusterNeeds(nil, []string{"recorded"}).IDs) != 1 {
		t.Error("without an ASMMeshConfig only switch record holders are needed")
	}

	mc.Spec.ExternalIstiodConfigurations["entry"] = v1beta1.ExternalIstiodConfiguration{MutualAccess: true}
	if !clusterNeeds(mc, nil).All {
		t.Error("mutual access needs every cluster of the mesh")
	}
	mc.Spec.ExternalIstiodConfigurations["entry"] = v1beta1.ExternalIstiodConfiguration{}
	mc.Status.Clusters[0].Conditions = []metav1.Condition{{Type: v1beta1.ConditionMutualAccess, Status: metav1.ConditionTrue}}
	if !clusterNeeds(mc, nil).All {
		t.Error("a cluster that may still hold remote secrets of its peers needs them until they are revoked")
	}
}
