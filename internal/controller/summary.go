package controller

import (
	"fmt"
	"strings"
)

// problem is one cluster that is not ready, for the ASMMeshConfig's own conditions.
type problem struct{ id, reason, message string }

// Bounds of the summary: with a hundred failing clusters, listing each message would
// pass the API's limit on a condition message, the status write would be refused and
// an old Ready would stay.
const (
	idsPerReason   = 5
	summaryMessage = 300
)

// summarize says which clusters are not ready, by reason: one cluster with its
// message, several as "37 clusters Unreachable: a, b, c, d, e and 32 more (a: ...)".
func summarize(problems []problem) string {
	var reasons []string
	byReason := map[string][]problem{}
	for _, p := range problems {
		if _, seen := byReason[p.reason]; !seen {
			reasons = append(reasons, p.reason)
		}
		byReason[p.reason] = append(byReason[p.reason], p)
	}
	parts := make([]string, 0, len(reasons))
	for _, reason := range reasons {
		group := byReason[reason]
		first := group[0]
		if len(group) == 1 {
			parts = append(parts, first.id+": "+bounded(first.message, summaryMessage))
			continue
		}
		ids := make([]string, 0, idsPerReason)
		for _, p := range group[:min(len(group), idsPerReason)] {
			ids = append(ids, p.id)
		}
		list := strings.Join(ids, ", ")
		if more := len(group) - len(ids); more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		parts = append(parts, fmt.Sprintf("%d clusters %s: %s (%s: %s)", len(group), reason, list, first.id, bounded(first.message, summaryMessage)))
	}
	return strings.Join(parts, "; ")
}
