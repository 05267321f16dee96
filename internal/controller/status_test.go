package controller

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditionMessagesAreBounded(t *testing.T) {
	var conds []metav1.Condition
	long := strings.Repeat("é", maxConditionMessage) // two bytes each
	setCondition(&conds, 1, "Ready", false, "Unreachable", "%s", long)
	msg := conds[0].Message
	if len(msg) > maxConditionMessage || !utf8.ValidString(msg) || !strings.HasSuffix(msg, "(…)") {
		t.Errorf("a message of %d bytes became %d bytes (valid UTF-8: %v)", len(long), len(msg), utf8.ValidString(msg))
	}
	setCondition(&conds, 1, "Ready", true, "Ready", "short")
	if conds[0].Message != "short" {
		t.Errorf("a short message changed: %q", conds[0].Message)
	}
}
