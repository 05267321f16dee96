package controller

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// reported runs reportMirror on one pass and returns the condition, the events it
// recorded and the error.
func reported(t *testing.T, w *clusterWork, p *mirrorPass) (metav1.Condition, []string, error) {
	t.Helper()
	rec := events.NewFakeRecorder(10)
	r := &ClusterReconciler{Recorder: rec}
	err := r.reportMirror(w, p)
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionConfigMirrored)
	if c == nil {
		t.Fatal("no ConfigMirrored condition")
	}
	return *c, got, err
}

func newWork() *clusterWork {
	return &clusterWork{id: "cluster-2", mc: &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 1}}}
}

// TestMissingNamespacesAreAWarning: objects whose namespace the cluster lacks leave
// ConfigMirrored True (so Ready can be True), are named, the ones visible to other
// namespaces called out, with one event while the set stays the same.
func TestMissingNamespacesAreAWarning(t *testing.T) {
	w := newWork()
	pass := &mirrorPass{cluster: "cluster-2", wanted: 3, plan: &apply.Plan{Unchanged: 3}, skipped: []mirror.Skipped{
		{Kind: "Sidecar", Namespace: "only-in-mesh", Name: "default"},
		{Kind: "ServiceEntry", Namespace: "only-in-mesh", Name: "external", Visible: true, Why: "exported to all namespaces by default"},
	}}
	c, evs, err := reported(t, w, pass)
	if err != nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonMirrored {
		t.Fatalf("condition %s/%s, err %v; want True/%s", c.Status, c.Reason, err, ReasonMirrored)
	}
	for _, want := range []string{"3 Istio objects", "Sidecar only-in-mesh/default", "1 of them configure other namespaces", "ServiceEntry only-in-mesh/external (exported"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
	if len(evs) != 1 || !strings.Contains(evs[0], ReasonNamespaceMissing) {
		t.Errorf("events %v, want one %s", evs, ReasonNamespaceMissing)
	}
	if _, evs, _ := reported(t, w, pass); len(evs) != 0 {
		t.Errorf("the same set again recorded %v", evs)
	}
	pass.skipped = pass.skipped[:1]
	if _, evs, _ := reported(t, w, pass); len(evs) != 1 {
		t.Errorf("a changed set recorded %v, want one event", evs)
	}
}

// TestRefusedCopiesAreNamedAndNotRetriedInAHurry: the pass finishes (nil, so the rest
// of the reconcile goes on) with ConfigMirrored False naming the refused copy and the
// foreign same-named object.
func TestRefusedCopiesAreNamedAndNotRetriedInAHurry(t *testing.T) {
	refusal := apierrors.NewForbidden(schema.GroupResource{Group: "networking.istio.io", Resource: "virtualservices"}, "mirror-refused", nil)
	pass := &mirrorPass{cluster: "cluster-2", wanted: 10,
		plan:    &apply.Plan{Unchanged: 7, NotOwned: []*apply.ObjectError{{Kind: "Sidecar", Namespace: "default", Name: "theirs"}}},
		applied: apply.EachResult{Created: 1, Failed: []*apply.ObjectError{{Kind: "VirtualService", Namespace: "default", Name: "mirror-refused", Err: refusal}}}}
	c, evs, err := reported(t, newWork(), pass)
	if err != nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonCopiesRefused {
		t.Fatalf("condition %s/%s, err %v; want False/%s and no error", c.Status, c.Reason, err, ReasonCopiesRefused)
	}
	for _, want := range []string{"8 of 10", "VirtualService default/mirror-refused", "Sidecar default/theirs"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
	if len(evs) != 1 || !strings.Contains(evs[0], ReasonCopiesRefused) {
		t.Errorf("events %v", evs)
	}
}

// TestUnfinishedPassIsRetried: writes the deadline cut off, a copy that timed out and a
// kind the mesh cluster could not be read for make the pass an error, retried with
// backoff.
func TestUnfinishedPassIsRetried(t *testing.T) {
	pass := &mirrorPass{cluster: "cluster-2", wanted: 1000,
		plan:    &apply.Plan{Unchanged: 100},
		applied: apply.EachResult{Created: 500, NotSent: 399, Failed: []*apply.ObjectError{{Kind: "VirtualService", Namespace: "default", Name: "slow", Err: context.DeadlineExceeded}}},
		unread:  map[string]error{"Sidecar": context.DeadlineExceeded}}
	c, _, err := reported(t, newWork(), pass)
	if err == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonMirrorFailed {
		t.Fatalf("condition %s/%s, err %v; want False/%s and an error", c.Status, c.Reason, err, ReasonMirrorFailed)
	}
	for _, want := range []string{"600 of 1000", "399 writes were not sent", "VirtualService default/slow: timed out", "Sidecar of the mesh cluster could not be read"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
}

// TestHeldBackDeletionsAreAnnouncedOnce: deletions beyond the budget are a warning,
// announced by one event while they last.
func TestHeldBackDeletionsAreAnnouncedOnce(t *testing.T) {
	w := newWork()
	pass := &mirrorPass{cluster: "cluster-2", plan: &apply.Plan{}, pruned: apply.DeleteResult{Deleted: apply.DeleteBurst, HeldBack: 900}}
	c, evs, err := reported(t, w, pass)
	if err != nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "900 copies whose source is gone") {
		t.Fatalf("condition %s/%s %q, err %v", c.Status, c.Reason, c.Message, err)
	}
	if len(evs) != 1 || !strings.Contains(evs[0], ReasonPruneHeldBack) {
		t.Errorf("events %v", evs)
	}
	pass.pruned = apply.DeleteResult{Deleted: 2, HeldBack: 898}
	if _, evs, _ := reported(t, w, pass); len(evs) != 0 {
		t.Errorf("a second pass still holding back recorded %v", evs)
	}
}
