package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

func meshConfigWith(gen int64, wanted []string, clusters ...v1beta1.ClusterStatus) *v1beta1.ASMMeshConfig {
	mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: gen}}
	mc.Spec.ExternalIstiodConfigurations = map[string]v1beta1.ExternalIstiodConfiguration{}
	for _, id := range wanted {
		mc.Spec.ExternalIstiodConfigurations[id] = v1beta1.ExternalIstiodConfiguration{}
	}
	mc.Status.Clusters = clusters
	return mc
}

func clusterEntry(id string, gen int64, ready bool, reason, message string) v1beta1.ClusterStatus {
	cs := v1beta1.ClusterStatus{ClusterID: id, ObservedGeneration: gen}
	setCondition(&cs.Conditions, gen, v1beta1.ConditionReady, ready, reason, "%s", message)
	return cs
}

func conditionOf(s aggregatedStatus, typ string) metav1.Condition {
	c := meta.FindStatusCondition(s.Conditions, typ)
	if c == nil {
		return metav1.Condition{}
	}
	return *c
}

func TestAggregate(t *testing.T) {
	tests := []struct {
		name                       string
		mc                         *v1beta1.ASMMeshConfig
		ready, reconciling, stalls bool
		controlPlanes              string
		mentions                   string
	}{
		{name: "no entries is ready", mc: meshConfigWith(1, nil), ready: true, controlPlanes: "0/0"},
		{name: "all clusters ready", controlPlanes: "2/2", ready: true,
			mc: meshConfigWith(3, []string{"a", "b"}, clusterEntry("a", 3, true, ReasonReady, "ok"), clusterEntry("b", 3, true, ReasonReady, "ok"))},
		{name: "a cluster of an older generation is still reconciling", controlPlanes: "1/2", reconciling: true, mentions: "b: not reconciled yet",
			mc: meshConfigWith(3, []string{"a", "b"}, clusterEntry("a", 3, true, ReasonReady, "ok"), clusterEntry("b", 2, true, ReasonReady, "ok"))},
		{name: "a cluster without status is reconciling", controlPlanes: "0/1", reconciling: true, mentions: "a: not reconciled yet",
			mc: meshConfigWith(1, []string{"a"})},
		{name: "a missing remote secret stalls", controlPlanes: "1/2", stalls: true, mentions: "no remote secret",
			mc: meshConfigWith(2, []string{"a", "b"}, clusterEntry("a", 2, true, ReasonReady, "ok"), clusterEntry("b", 2, false, ReasonRemoteSecretAbsent, "no remote secret"))},
		{name: "an unreachable cluster is retried, not stalled", controlPlanes: "0/1", reconciling: true, mentions: "did not answer",
			mc: meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, false, ReasonUnreachable, "did not answer"))},
		{name: "leftovers of a removed entry keep it reconciling", controlPlanes: "1/1", reconciling: true, mentions: "old: removing istiod",
			mc: meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, true, ReasonReady, "ok"), clusterEntry("old", 2, false, ReasonRemoving, "removing"))},
		{name: "an abandoned cluster holds nothing back", controlPlanes: "1/1", ready: true,
			mc: meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, true, ReasonReady, "ok"), clusterEntry("gone", 2, false, ReasonAbandoned, "abandoned"))},
		{name: "a removed cluster left behind without a remote secret needs a person", controlPlanes: "1/1", stalls: true, mentions: "gone: no remote secret",
			mc: meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, true, ReasonReady, "ok"), clusterEntry("gone", 2, false, ReasonLeftBehind, "no remote secret"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := aggregate(tt.mc)
			ready := conditionOf(s, v1beta1.ConditionReady)
			if (ready.Status == metav1.ConditionTrue) != tt.ready {
				t.Errorf("Ready = %s (%s)", ready.Status, ready.Message)
			}
			if got := conditionOf(s, v1beta1.ConditionReconciling).Status == metav1.ConditionTrue; got != tt.reconciling {
				t.Errorf("Reconciling = %v", got)
			}
			if got := conditionOf(s, v1beta1.ConditionStalled).Status == metav1.ConditionTrue; got != tt.stalls {
				t.Errorf("Stalled = %v", got)
			}
			if s.ControlPlanes != tt.controlPlanes {
				t.Errorf("ControlPlanes = %q, want %q", s.ControlPlanes, tt.controlPlanes)
			}
			if !strings.Contains(ready.Message, tt.mentions) {
				t.Errorf("Ready message %q does not mention %q", ready.Message, tt.mentions)
			}
			for _, c := range s.Conditions {
				if c.ObservedGeneration != tt.mc.Generation || c.Reason == "" || c.Message == "" {
					t.Errorf("condition %s lacks generation, reason or message: %+v", c.Type, c)
				}
			}
		})
	}
}

func TestAggregateKeepsTransitionTimes(t *testing.T) {
	mc := meshConfigWith(1, nil)
	first := aggregate(mc)
	mc.Status.Conditions = first.Conditions
	time.Sleep(1100 * time.Millisecond)
	second := aggregate(mc)
	if !conditionOf(first, v1beta1.ConditionReady).LastTransitionTime.Time.Equal(conditionOf(second, v1beta1.ConditionReady).LastTransitionTime.Time) {
		t.Error("an unchanged condition got a new transition time, so every resync would write status")
	}
}

func TestIgnoredStatusSaysWhatToDo(t *testing.T) {
	mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "other", Generation: 4}}
	s := ignoredStatus(mc)
	ready := conditionOf(s, v1beta1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || ready.Reason != ReasonIgnored || !strings.Contains(ready.Message, `"default"`) {
		t.Errorf("Ready = %+v", ready)
	}
	if conditionOf(s, v1beta1.ConditionStalled).Status != metav1.ConditionTrue {
		t.Error("an ignored object should be Stalled: only a person can fix it")
	}
}

func TestConflictingSettingsStopEveryCluster(t *testing.T) {
	spec := v1beta1.ASMMeshConfigSpec{UseDataPlaneKubeAPIForIstioResources: true}
	if msg := conflictingSettings(spec); msg != "" {
		t.Errorf("no entries, no conflict: %q", msg)
	}
	spec.ExternalIstiodConfigurations = map[string]v1beta1.ExternalIstiodConfiguration{"a": {}}
	if msg := conflictingSettings(spec); !strings.Contains(msg, "set it to false") {
		t.Errorf("conflict not explained: %q", msg)
	}
	spec.UseDataPlaneKubeAPIForIstioResources = false
	if msg := conflictingSettings(spec); msg != "" {
		t.Errorf("no conflict expected: %q", msg)
	}
	mc := meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, false, ReasonConflictingSettings, "conflict"))
	if conditionOf(aggregate(mc), v1beta1.ConditionStalled).Status != metav1.ConditionTrue {
		t.Error("a conflicting spec needs a person: Stalled")
	}
}

// TestAggregateSummarisesManyClusters shows that a hundred failing clusters give
// messages within the API's limits, grouped by reason, each reason with a few names.
func TestAggregateSummarisesManyClusters(t *testing.T) {
	var wanted []string
	var clusters []v1beta1.ClusterStatus
	for i := range 100 {
		id := fmt.Sprintf("cluster-%03d", i)
		wanted = append(wanted, id)
		reason, msg := ReasonUnreachable, "cannot reach the API server of cluster "+id+": "+strings.Repeat("the API server did not answer within 15s; ", 5)
		if i%4 == 0 {
			reason, msg = ReasonForbidden, "the kubeconfig in remote secret istio-remote-secret-"+id+" is not allowed to read namespace istio-system; grant it the permissions in docs/remote-permissions.md"
		}
		cs := v1beta1.ClusterStatus{ClusterID: id, ObservedGeneration: 3}
		setCondition(&cs.Conditions, 3, v1beta1.ConditionReady, false, reason, "%s", msg)
		clusters = append(clusters, cs)
	}
	s := aggregate(meshConfigWith(3, wanted, clusters...))
	ready := meta.FindStatusCondition(s.Conditions, v1beta1.ConditionReady)
	stalled := meta.FindStatusCondition(s.Conditions, v1beta1.ConditionStalled)
	for _, c := range []*metav1.Condition{ready, stalled} {
		if len(c.Message) > 4096 {
			t.Errorf("%s message has %d characters", c.Type, len(c.Message))
		}
	}
	for _, want := range []string{"75 clusters Unreachable: cluster-001, cluster-002, cluster-003, cluster-005, cluster-006 and 70 more",
		"25 clusters Forbidden: cluster-000, cluster-004", "docs/remote-permissions.md"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready does not say %q: %s", want, ready.Message)
		}
	}
	if !strings.Contains(stalled.Message, "25 clusters Forbidden") || strings.Contains(stalled.Message, "Unreachable") {
		t.Errorf("Stalled names the clusters that need a person: %s", stalled.Message)
	}
}
