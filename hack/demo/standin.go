package main

import (
	"context"
	"strings"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// runStandIn runs localmesh's stand-in for the Deployment controller, the kubelet and
// the operator's istiod in c until ctx ends, and says what it does in their place:
// the reader should not take a Deployment marked available for one that runs. In
// every namespace, as a kubelet would: the mesh istiod of Istio's chart, the gateways
// and httpbin too. The mesh istiod's root certificate in the data-plane clusters is
// localmesh's, as installed.
func runStandIn(ctx context.Context, c *localmesh.Cluster, out *printer) {
	announced := false // the root certificate is published again on each change of istiod
	c.RunStandIn(ctx, localmesh.StandInOptions{
		AllNamespaces: true,
		Logf:          out.line,
		RolledOut: func(deployments []string) {
			out.line("%s: in place of a kubelet, marked available: %s", c.ID, strings.Join(deployments, ", "))
		},
		Published: func() {
			if !announced {
				announced = true
				out.line("%s: in place of istiod, published its root certificate (of the cacerts the operator issued) in ConfigMap %s/%s",
					c.ID, localmesh.Namespace, localmesh.RootCertConfigMap)
			}
		},
	})
}
