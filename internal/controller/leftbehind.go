package controller

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// Reasons of a removal that cannot clean up.
const (
	// ReasonAbandoned: a person gave up on the cluster's removal (the annotation).
	ReasonAbandoned = "Abandoned"
	// ReasonLeftBehind: no remote secret provides the cluster any more, so nothing
	// can be removed there.
	ReasonLeftBehind = "LeftBehind"
)

// intermediateExpiry is when the intermediate CA of an issued cacerts bundle expires.
func intermediateExpiry(b ca.Bundle) *metav1.Time {
	block, _ := pem.Decode(b[ca.CACert])
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return &metav1.Time{Time: cert.NotAfter}
}

// leftBehind says, from what the mesh cluster knows (the cluster's status entry and the
// copy of its switch record), what the operator leaves in a cluster it can no longer
// clean up, and until when its istiod can sign certificates the mesh trusts.
func leftBehind(cs *v1beta1.ClusterStatus, st *switching.State, namespace string, now time.Time) string {
	var parts []string
	if cs.AppliedHash != "" {
		version := ""
		if cs.IstioVersion != "" {
			version = " " + cs.IstioVersion
		}
		parts = append(parts, fmt.Sprintf("istiod%s in namespace %s and every object labelled %s=%s",
			version, namespace, render.ClusterIDLabel, cs.ClusterID))
	}
	switch {
	case st != nil:
		parts = append(parts, describeSwitch(st, namespace))
	case cs.SwitchedAt != nil:
		parts = append(parts, fmt.Sprintf("the switch of %s (the mesh cluster has no copy of its record)", cs.SwitchedAt.UTC().Format(time.RFC3339)))
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing the operator knows of")
	}
	out := "left behind there: " + strings.Join(parts, "; ")
	switch exp := cs.IntermediateCAExpiresAt; {
	case exp == nil:
		out += "; the operator issued no intermediate CA there"
	case exp.After(now):
		out += fmt.Sprintf("; the intermediate CA of its istiod (Secret %s/cacerts there) expires at %s", namespace, exp.UTC().Format(time.RFC3339))
	default:
		out += fmt.Sprintf("; the intermediate CA of its istiod (Secret %s/cacerts there) expired at %s", namespace, exp.UTC().Format(time.RFC3339))
	}
	return out
}

// describeSwitch names what a switch record says the switch changed and did not give back.
func describeSwitch(st *switching.State, namespace string) string {
	changed := []string{}
	if st.Address != nil {
		changed = append(changed, fmt.Sprintf("Service %s/istiod leads to that istiod (the remote profile had it %s)", namespace, describeAddress(st.Address)))
	}
	var names []string
	for _, rec := range st.Injectors {
		names = append(names, rec.Name)
	}
	for _, rec := range st.Validators {
		names = append(names, rec.Name)
	}
	if len(names) > 0 {
		changed = append(changed, "webhooks "+strings.Join(names, ", ")+" call it")
	}
	if st.Lead != nil {
		changed = append(changed, fmt.Sprintf("namespace %s names the cluster itself in %s", namespace, switching.LeadAnnotation))
	}
	out := "switched at " + st.SwitchedAt.UTC().Format(time.RFC3339)
	if len(changed) > 0 {
		out += ": " + strings.Join(changed, ", ")
	}
	return out
}

// nothingLeft reports whether the operator knows of nothing it put in the cluster:
// it never applied istiod in full there and never switched it.
func nothingLeft(cs *v1beta1.ClusterStatus, st *switching.State) bool {
	return cs.AppliedHash == "" && cs.SwitchedAt == nil && st == nil
}
