package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// TestDemo runs make demo's program to completion, as make demo DEMO_ONCE=1 does:
// run returns an error unless cluster-2 switched to its own istiod, cluster-1 is
// untouched and the ASMMeshConfig is Ready.
func TestDemo(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set (make test sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, options{once: true, timeout: 2 * time.Minute}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^ +NAME +CONTROL PLANES +READY +REASON +AGE$`),
		regexp.MustCompile(`(?m)^ +default +1/1 +True +Ready +\d+s$`),
		regexp.MustCompile(`cluster-2 gets a remote control plane`),
		regexp.MustCompile(`injector istio-sidecar-injector +4 webhooks -> https://istiod.istio-system.svc:443/inject \(the cluster's own istiod\)`),
		regexp.MustCompile(`injector istio-sidecar-injector +4 webhooks -> ` + regexp.QuoteMeta(localmesh.MeshIstiodURL("cluster-1"))),
		regexp.MustCompile(`validator istio-validator-istio-system +1 webhook -> https://istiod.istio-system.svc:443/validate \(the cluster's own istiod\)`),
		regexp.MustCompile(`Deployment istio-system/istio-ingressgateway +restarted for switch-`),
		regexp.MustCompile(`in place of a kubelet`),
		regexp.MustCompile(`Outcome as expected`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("the output has no match for %s:\n%s", want, out.String())
		}
	}
}

// TestOutcomeChecks shows that the outcome checks notice each way a cluster can be
// wrong.
func TestOutcomeChecks(t *testing.T) {
	replicas := int32(2)
	istiod := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &replicas},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 2}}
	switched := func() *dataPlaneView {
		return &dataPlaneView{
			istiod:     istiod,
			injectors:  []webhookConfig{{name: "istio-sidecar-injector", targets: []string{localInjection, localInjection}}},
			validators: []webhookConfig{{name: "istio-validator-istio-system", targets: []string{localValidation}}},
			owned:      30,
			lead:       "c",
			restarts: map[string]string{localmesh.Gateways[0]: "switch-1", localmesh.Gateways[1]: "switch-1",
				localmesh.AppDeployment: ""},
		}
	}
	untouched := func() *dataPlaneView {
		return &dataPlaneView{
			injectors:  []webhookConfig{{name: "istio-sidecar-injector", targets: []string{localmesh.MeshIstiodURL("c")}}},
			validators: []webhookConfig{{name: "istio-validator-istio-system", targets: []string{localmesh.MeshValidationURL}}},
			lead:       localmesh.MeshClusterID,
			restarts:   map[string]string{localmesh.Gateways[0]: "", localmesh.AppDeployment: ""},
		}
	}
	if err := checkDataPlane(switched(), true, "c"); err != nil {
		t.Fatalf("a switched cluster fails: %v", err)
	}
	if err := checkDataPlane(untouched(), false, "c"); err != nil {
		t.Fatalf("an untouched cluster fails: %v", err)
	}
	for name, c := range map[string]struct {
		view   func() *dataPlaneView
		edit   func(*dataPlaneView)
		wanted bool
	}{
		"no istiod":                  {switched, func(v *dataPlaneView) { v.istiod = nil }, true},
		"istiod not available":       {switched, func(v *dataPlaneView) { v.istiod = &appsv1.Deployment{Spec: istiod.Spec} }, true},
		"one webhook still remote":   {switched, func(v *dataPlaneView) { v.injectors[0].targets[1] = localmesh.MeshIstiodURL("c") }, true},
		"validator still remote":     {switched, func(v *dataPlaneView) { v.validators[0].targets[0] = localmesh.MeshValidationURL }, true},
		"still led by the mesh":      {switched, func(v *dataPlaneView) { v.lead = localmesh.MeshClusterID }, true},
		"no injector":                {switched, func(v *dataPlaneView) { v.injectors = nil }, true},
		"a gateway not restarted":    {switched, func(v *dataPlaneView) { v.restarts[localmesh.Gateways[1]] = "" }, true},
		"the app restarted":          {switched, func(v *dataPlaneView) { v.restarts[localmesh.AppDeployment] = "switch-1" }, true},
		"operator objects left":      {untouched, func(v *dataPlaneView) { v.owned = 1 }, false},
		"injector moved":             {untouched, func(v *dataPlaneView) { v.injectors[0].targets[0] = localInjection }, false},
		"lead taken":                 {untouched, func(v *dataPlaneView) { v.lead = "c" }, false},
		"validator moved":            {untouched, func(v *dataPlaneView) { v.validators[0].targets[0] = localValidation }, false},
		"a deployment was restarted": {untouched, func(v *dataPlaneView) { v.restarts[localmesh.AppDeployment] = "x" }, false},
	} {
		v := c.view()
		c.edit(v)
		if err := checkDataPlane(v, c.wanted, "c"); err == nil {
			t.Errorf("%s: not noticed", name)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%s: an empty complaint", name)
		}
	}
}
