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
	corev1 "k8s.io/api/core/v1"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// TestDemo runs make demo's program to completion, as make demo DEMO_ONCE=1 does:
// run returns an error unless cluster-2 switched to its own istiod through its Service
// istiod, carrying the mesh istiod's settings, cluster-1 is as installed and the
// ASMMeshConfig is Ready.
func TestDemo(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set (make test sets it)")
	}
	// The demo builds the manager, which links Helm and Istio's charts: on a cold build
	// cache, with the other test packages compiling beside it on 2 cores, that alone
	// took over 4 minutes. The operator then has 2 minutes to reach the outcome.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var out bytes.Buffer
	// Each data-plane cluster sits behind a far link, as it would in production.
	err := run(ctx, options{once: true, timeout: 3 * time.Minute, linkRTT: 50 * time.Millisecond}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`the operator reaches cluster-2 through a far link at 127\.0\.0\.1:\d+ with 50ms round trips`),
		regexp.MustCompile(`(?m)^ +NAME +CONTROL PLANES +READY +REASON +AGE$`),
		regexp.MustCompile(`(?m)^ +default +1/1 +True +Ready +\d+s$`),
		regexp.MustCompile(`cluster-2 gets a remote control plane`),
		regexp.MustCompile(`mesh: the mesh istiod, \d+ objects of Istio's istio-discovery chart`),
		regexp.MustCompile(`injector istio-sidecar-injector +\d+ webhooks -> https://istiod\.istio-system\.svc:443/inject/cluster/cluster-2/net/network-1 \(Service istiod: the cluster's own istiod\)`),
		regexp.MustCompile(`injector istio-sidecar-injector +\d+ webhooks -> ` + regexp.QuoteMeta(localmesh.MeshInjectionURL("cluster-1")) + ` \(the mesh control plane, by URL\)`),
		regexp.MustCompile(`validator istiod-default-validator +1 webhook -> https://istiod\.istio-system\.svc:443/validate \(Service istiod: the cluster's own istiod\)`),
		regexp.MustCompile(`validator istiod-default-validator +1 webhook -> https://istiod\.istio-system\.svc:443/validate \(Service istiod: the mesh control plane\)`),
		// Each cluster's control plane address before and after: cluster-1 keeps its
		// ExternalName, cluster-2's selector-less Service now leads to its own istiod.
		regexp.MustCompile(`(?s)cluster-1:.*Service istiod before +ExternalName localhost \(the mesh control plane\)\n +Service istiod now +ExternalName localhost \(the mesh control plane\)`),
		regexp.MustCompile(`(?s)cluster-2:.*Service istiod before +EndpointSlice: selector-less, 1 EndpointSlice\(s\) to 192\.0\.2\.1 \(the mesh control plane\)\n +Service istiod now +ClusterIP, selector app=istiod,istio=pilot \(the cluster's own istiod\)`),
		regexp.MustCompile(`mesh settings +outboundTrafficPolicy REGISTRY_ONLY, accessLogFile /dev/stdout, proxy memory limit 256Mi`),
		regexp.MustCompile(`Switched +True +Switched +.*Service istio-system/istiod of Istio's remote profile \(selector-less, with 1 EndpointSlice\(s\) to the mesh control plane\) leads to it`),
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
// wrong: as installed, switched, or left alone.
func TestOutcomeChecks(t *testing.T) {
	replicas := int32(2)
	istiod := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &replicas},
		Status: appsv1.DeploymentStatus{AvailableReplicas: 2}}
	const id = "c"
	byIP := "https://istiod.istio-system.svc:443/inject/cluster/c/net/network-1"
	installed := func(address string) func() *dataPlaneView {
		return func() *dataPlaneView {
			v := &dataPlaneView{
				validators: []webhookConfig{{name: "istiod-default-validator", targets: []string{serviceValidation}}},
				lead:       localmesh.MeshClusterID,
				restarts:   map[string]string{localmesh.Gateways[0]: "", localmesh.Gateways[1]: "", localmesh.AppDeployment: ""},
			}
			if address == localmesh.AddressExternalName {
				v.address = addressView{exists: true, typ: corev1.ServiceTypeExternalName, externalName: localmesh.MeshPilotHost}
				v.injectors = []webhookConfig{{name: "istio-sidecar-injector", targets: []string{localmesh.MeshInjectionURL(id), localmesh.MeshInjectionURL(id)}}}
			} else {
				v.address = addressView{exists: true, typ: corev1.ServiceTypeClusterIP, slices: [][]string{{"192.0.2.1"}}}
				v.injectors = []webhookConfig{{name: "istio-sidecar-injector", targets: []string{byIP, byIP}}}
			}
			return v
		}
	}
	byName, bySlice := installed(localmesh.AddressExternalName), installed(localmesh.AddressEndpointSlice)
	switched := func() *dataPlaneView {
		v := bySlice()
		v.istiod = istiod
		v.lead = id
		v.address = addressView{exists: true, typ: corev1.ServiceTypeClusterIP, selector: map[string]string{"app": "istiod", "istio": "pilot"}}
		v.settings = &meshSettings{outboundTrafficPolicy: localmesh.MeshOutboundTrafficPolicy, accessLogFile: localmesh.MeshAccessLogFile,
			proxyMemoryLimit: localmesh.MeshProxyMemoryLimit}
		v.owned = 30
		v.restarts[localmesh.Gateways[0]], v.restarts[localmesh.Gateways[1]] = "switch-1", "switch-1"
		return v
	}
	// A cluster of the ExternalName flavour, switched: its injector was re-pointed
	// from the URL to Service istiod.
	switchedByName := func() *dataPlaneView {
		v := switched()
		v.injectors = []webhookConfig{{name: "istio-sidecar-injector", targets: []string{serviceInjection, serviceInjection}}}
		return v
	}

	for address, view := range map[string]func() *dataPlaneView{localmesh.AddressExternalName: byName, localmesh.AddressEndpointSlice: bySlice} {
		if err := checkInstalled(view(), id, address); err != nil {
			t.Fatalf("a cluster installed with the %s flavour fails: %v", address, err)
		}
		if err := checkDataPlane(view(), view(), false, id); err != nil {
			t.Fatalf("an untouched cluster of the %s flavour fails: %v", address, err)
		}
	}
	for name, v := range map[string]*dataPlaneView{"EndpointSlice": switched(), "ExternalName": switchedByName()} {
		if err := checkDataPlane(v, nil, true, id); err != nil {
			t.Fatalf("a switched cluster (%s) fails: %v", name, err)
		}
	}

	// As installed: checkInstalled(view, flavour).
	for name, c := range map[string]struct {
		view    func() *dataPlaneView
		address string
		edit    func(*dataPlaneView)
	}{
		"the flavours swapped":            {byName, localmesh.AddressEndpointSlice, func(*dataPlaneView) {}},
		"ExternalName to another host":    {byName, localmesh.AddressExternalName, func(v *dataPlaneView) { v.address.externalName = "istiod.mesh.example" }},
		"no Service istiod":               {bySlice, localmesh.AddressEndpointSlice, func(v *dataPlaneView) { v.address = addressView{} }},
		"no EndpointSlice":                {bySlice, localmesh.AddressEndpointSlice, func(v *dataPlaneView) { v.address.slices = nil }},
		"injector by URL, not by Service": {bySlice, localmesh.AddressEndpointSlice, func(v *dataPlaneView) { v.injectors[0].targets[0] = localmesh.MeshInjectionURL(id) }},
		"injector by Service, not by URL": {byName, localmesh.AddressExternalName, func(v *dataPlaneView) { v.injectors[0].targets[1] = byIP }},
		"validator elsewhere":             {byName, localmesh.AddressExternalName, func(v *dataPlaneView) { v.validators[0].targets[0] = "https://127.0.0.1:1/validate" }},
		"not led by the mesh":             {bySlice, localmesh.AddressEndpointSlice, func(v *dataPlaneView) { v.lead = "" }},
	} {
		v := c.view()
		c.edit(v)
		expectComplaint(t, "installed: "+name, checkInstalled(v, id, c.address))
	}

	// After the outcome: checkDataPlane(view, before, wanted).
	for name, c := range map[string]struct {
		view   func() *dataPlaneView
		edit   func(*dataPlaneView)
		wanted bool
	}{
		"no istiod":                          {switched, func(v *dataPlaneView) { v.istiod = nil }, true},
		"istiod not available":               {switched, func(v *dataPlaneView) { v.istiod = &appsv1.Deployment{Spec: istiod.Spec} }, true},
		"one webhook still by URL":           {switchedByName, func(v *dataPlaneView) { v.injectors[0].targets[1] = localmesh.MeshInjectionURL(id) }, true},
		"validator elsewhere":                {switched, func(v *dataPlaneView) { v.validators[0].targets[0] = "https://127.0.0.1:1/validate" }, true},
		"still led by the mesh":              {switched, func(v *dataPlaneView) { v.lead = localmesh.MeshClusterID }, true},
		"no injector":                        {switched, func(v *dataPlaneView) { v.injectors = nil }, true},
		"Service istiod still ExternalName":  {switched, func(v *dataPlaneView) { v.address = byName().address }, true},
		"Service istiod still selector-less": {switched, func(v *dataPlaneView) { v.address = bySlice().address }, true},
		"EndpointSlice still in play":        {switched, func(v *dataPlaneView) { v.address.slices = [][]string{{"192.0.2.1"}} }, true},
		"selector of other pods":             {switched, func(v *dataPlaneView) { v.address.selector = map[string]string{"app": "istiod"} }, true},
		"no Service istiod":                  {switched, func(v *dataPlaneView) { v.address = addressView{} }, true},
		"no mesh config of the operator's":   {switched, func(v *dataPlaneView) { v.settings = nil }, true},
		"outbound policy not the mesh's":     {switched, func(v *dataPlaneView) { v.settings.outboundTrafficPolicy = "ALLOW_ANY" }, true},
		"access log not the mesh's":          {switched, func(v *dataPlaneView) { v.settings.accessLogFile = "" }, true},
		"proxy resources not the mesh's":     {switched, func(v *dataPlaneView) { v.settings.proxyMemoryLimit = "1Gi" }, true},
		"a gateway not restarted":            {switched, func(v *dataPlaneView) { v.restarts[localmesh.Gateways[1]] = "" }, true},
		"the app restarted":                  {switched, func(v *dataPlaneView) { v.restarts[localmesh.AppDeployment] = "switch-1" }, true},
		"operator objects left":              {byName, func(v *dataPlaneView) { v.owned = 1 }, false},
		"injector moved":                     {byName, func(v *dataPlaneView) { v.injectors[0].targets[0] = serviceInjection }, false},
		"lead taken":                         {bySlice, func(v *dataPlaneView) { v.lead = id }, false},
		"validator moved":                    {bySlice, func(v *dataPlaneView) { v.validators[0].targets[0] = "https://127.0.0.1:1/validate" }, false},
		"Service istiod switched":            {bySlice, func(v *dataPlaneView) { v.address = switched().address }, false},
		"ExternalName switched":              {byName, func(v *dataPlaneView) { v.address = switched().address }, false},
		"EndpointSlice taken out of play":    {bySlice, func(v *dataPlaneView) { v.address.slices = nil }, false},
		"a deployment was restarted":         {byName, func(v *dataPlaneView) { v.restarts[localmesh.AppDeployment] = "x" }, false},
	} {
		v := c.view()
		c.edit(v)
		expectComplaint(t, name, checkDataPlane(v, c.view(), c.wanted, id))
	}

	// The Switched condition's message names the flavour of the address it switched.
	messages := map[string]string{
		localmesh.AddressExternalName: "cluster c is served by its own istiod since 2026-01-01T00:00:00Z: Service istio-system/istiod of Istio's remote profile " +
			"(ExternalName localhost) leads to it; its injectors called the mesh control plane by URL (istiodRemote.injectionURL) and now call Service istiod; gateways restarted: a",
		localmesh.AddressEndpointSlice: "cluster c is served by its own istiod since 2026-01-01T00:00:00Z: Service istio-system/istiod of Istio's remote profile " +
			"(selector-less, with 1 EndpointSlice(s) to the mesh control plane) leads to it; gateways restarted: a",
	}
	for address, msg := range messages {
		if err := checkSwitchMessage(msg, address); err != nil {
			t.Errorf("the Switched message of the %s flavour fails: %v", address, err)
		}
	}
	expectComplaint(t, "the message of the other flavour", checkSwitchMessage(messages[localmesh.AddressExternalName], localmesh.AddressEndpointSlice))
	expectComplaint(t, "the message of the other flavour", checkSwitchMessage(messages[localmesh.AddressEndpointSlice], localmesh.AddressExternalName))
	expectComplaint(t, "a message without the address", checkSwitchMessage("cluster c is served by its own istiod: Service istio-system/istiod is the operator's own; no gateways to restart",
		localmesh.AddressEndpointSlice))
}

func expectComplaint(t *testing.T, name string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: not noticed", name)
	} else if strings.TrimSpace(err.Error()) == "" {
		t.Errorf("%s: an empty complaint", name)
	}
}
