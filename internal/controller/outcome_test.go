package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A pass ends early only when the cluster did not answer, not when it answered no.
func TestOutcomeUnansweredOnlyForALinkThatDidNotAnswer(t *testing.T) {
	var out outcome
	out.fail(fmt.Errorf("cluster c: istiod: %w", apierrors.NewConflict(schema.GroupResource{Resource: "deployments"}, "istiod", errors.New("changed"))))
	if out.unanswered() {
		t.Error("a conflict is an answer; the next phases must still run")
	}
	out.fail(fmt.Errorf("cluster c: switch: %w", context.DeadlineExceeded))
	if !out.unanswered() {
		t.Error("a request that ran out of time must end the pass")
	}
}
