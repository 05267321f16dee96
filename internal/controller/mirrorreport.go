package controller

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// maxNamed bounds the objects a condition message names in each list.
const maxNamed = 5

// mirrorPass is what one mirror pass found and did.
type mirrorPass struct {
	cluster string
	// wanted is the number of copies the cluster should hold.
	wanted  int
	plan    *apply.Plan
	applied apply.EachResult
	pruned  apply.DeleteResult
	skipped []mirror.Skipped
	// unread are the kinds the mesh cluster could not be read for.
	unread map[string]error
}

// mirrored is the number of copies that are right in the cluster now.
func (p *mirrorPass) mirrored() int { return p.plan.Unchanged + p.applied.Created + p.applied.Updated }

// failures sorts what went wrong: refused writes (sending them again will not help),
// same-named objects of someone else, and whatever kept the pass from finishing.
func (p *mirrorPass) failures() (refused, notOwned, unfinished []string) {
	for _, f := range p.plan.NotOwned {
		notOwned = append(notOwned, fmt.Sprintf("%s %s/%s", f.Kind, f.Namespace, f.Name))
	}
	for _, f := range append(append([]*apply.ObjectError(nil), p.applied.Failed...), p.pruned.Failed...) {
		var notOwnedErr *apply.NotOwnedError
		switch {
		case errors.As(f.Err, &notOwnedErr):
			notOwned = append(notOwned, fmt.Sprintf("%s %s/%s", f.Kind, f.Namespace, f.Name))
		case apply.Refused(f.Err):
			refused = append(refused, fmt.Sprintf("%s %s/%s: %s", f.Kind, f.Namespace, f.Name, shortError(f.Err)))
		default:
			unfinished = append(unfinished, fmt.Sprintf("%s %s/%s: %s", f.Kind, f.Namespace, f.Name, shortError(f.Err)))
		}
	}
	kinds := make([]string, 0, len(p.unread))
	for kind := range p.unread {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		unfinished = append(unfinished, fmt.Sprintf("%s of the mesh cluster could not be read (%s), so its copies are neither written nor pruned", kind, shortError(p.unread[kind])))
	}
	if n := p.applied.NotSent + p.pruned.NotSent; n > 0 {
		unfinished = append(unfinished, fmt.Sprintf("%d writes were not sent before the pass's deadline", n))
	}
	if p.plan.Unserved > 0 {
		unfinished = append(unfinished, fmt.Sprintf("%d copies wait for their kind to be served by cluster %s (its CRD was just installed)", p.plan.Unserved, p.cluster))
	}
	return refused, notOwned, unfinished
}

func shortError(err error) string {
	msg := errorSummary(err)
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	return msg
}

// reportMirror sets ConfigMirrored from a pass, with a Warning event for each part of
// the message that is new since the last one, so a state that persists is announced
// once, not at every pass. It returns an error when the pass did not finish.
func (r *ClusterReconciler) reportMirror(w *clusterWork, p *mirrorPass) error {
	prev := ""
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionConfigMirrored); c != nil {
		prev = c.Message
	}
	w.status.MirroredObjects = int32(p.mirrored())
	refused, notOwned, unfinished := p.failures()

	var problems []string
	if len(refused) > 0 {
		problems = append(problems, fmt.Sprintf("cluster %s refused %d copies, tried again at every pass: %s", p.cluster, len(refused), strings.Join(refused[:min(len(refused), maxNamed)], "; ")+more(refused)))
	}
	if len(notOwned) > 0 {
		problems = append(problems, fmt.Sprintf("%d objects of the same name exist in cluster %s that the operator did not create, and it leaves them alone (delete them to have the mesh's copied): %s",
			len(notOwned), p.cluster, mirror.List(notOwned, maxNamed)))
	}
	refusedPart := strings.Join(problems, "; ")
	if refusedPart != "" && !strings.Contains(prev, refusedPart) {
		r.event(w, corev1.EventTypeWarning, ReasonCopiesRefused, "%s", refusedPart)
	}
	var warnings []string
	if part := skippedPart(p.cluster, p.skipped); part != "" {
		warnings = append(warnings, part)
		if !strings.Contains(prev, part) {
			r.event(w, corev1.EventTypeWarning, ReasonNamespaceMissing, "%s", part)
		}
	}
	if p.pruned.HeldBack > 0 {
		warnings = append(warnings, fmt.Sprintf("%d copies whose source is gone %s: at most %d are deleted at once and %d a minute after that, "+
			"so that a mass deletion in the mesh cluster (a CRD re-installed) does not reach the cluster at once; later passes delete them",
			p.pruned.HeldBack, heldBackMarker, apply.DeleteBurst, apply.DeletesPerMinute))
		if !strings.Contains(prev, heldBackMarker) {
			r.event(w, corev1.EventTypeWarning, ReasonPruneHeldBack, "%d copies in cluster %s whose source is gone are held back: at most %d are deleted a minute",
				p.pruned.HeldBack, p.cluster, apply.DeletesPerMinute)
		}
	}

	parts := func(head string, rest ...string) string {
		var out []string
		for _, s := range append([]string{head}, rest...) {
			if s != "" {
				out = append(out, s)
			}
		}
		return strings.Join(out, ". ")
	}
	progress := fmt.Sprintf("%d of %d Istio objects of the mesh cluster are mirrored into cluster %s", p.mirrored(), p.wanted, p.cluster)
	switch {
	case len(unfinished) > 0:
		why := strings.Join(unfinished[:min(len(unfinished), maxNamed)], "; ") + more(unfinished)
		w.set(v1beta1.ConditionConfigMirrored, false, ReasonMirrorFailed, "%s",
			parts(progress+"; the pass did not finish and is retried with backoff: "+why, refusedPart, strings.Join(warnings, ". ")))
		return fmt.Errorf("cluster %s: mirroring did not finish: %s", p.cluster, why)
	case refusedPart != "":
		metrics.MirrorSynced(p.cluster)
		w.set(v1beta1.ConditionConfigMirrored, false, ReasonCopiesRefused, "%s", parts(progress, refusedPart, strings.Join(warnings, ". ")))
	default:
		metrics.MirrorSynced(p.cluster)
		w.set(v1beta1.ConditionConfigMirrored, true, ReasonMirrored, "%s",
			parts(fmt.Sprintf("%d Istio objects of the mesh cluster are mirrored into cluster %s", p.mirrored(), p.cluster), strings.Join(warnings, ". ")))
	}
	return nil
}

// heldBackMarker is in the message while deletions are held back.
const heldBackMarker = "wait to be deleted"

func more(items []string) string {
	if len(items) <= maxNamed {
		return ""
	}
	return fmt.Sprintf(" and %d more", len(items)-maxNamed)
}

// skippedPart warns of the objects not mirrored for want of their namespace, and calls
// out those that configure the cluster's other namespaces too.
func skippedPart(cluster string, skipped []mirror.Skipped) string {
	if len(skipped) == 0 {
		return ""
	}
	var names, visible []string
	for _, s := range skipped {
		names = append(names, s.String())
		if s.Visible {
			visible = append(visible, s.String()+" ("+s.Why+")")
		}
	}
	part := fmt.Sprintf("%d objects are not mirrored because their namespace does not exist in cluster %s, which has no workloads there for them to configure: %s",
		len(skipped), cluster, mirror.List(names, maxNamed))
	if len(visible) > 0 {
		part += fmt.Sprintf("; but %d of them configure other namespaces too, so cluster %s's istiod lacks them: %s; create their namespace in cluster %s to have them mirrored",
			len(visible), cluster, mirror.List(visible, maxNamed), cluster)
	}
	return part
}
