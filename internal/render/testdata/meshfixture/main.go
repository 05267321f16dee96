// Command meshfixture writes ../mesh-configmaps.yaml: the mesh ConfigMap istio and the
// injector ConfigMap istio-sidecar-injector exactly as Istio's istio-discovery chart
// renders them for a mesh control plane with custom meshConfig and proxy values. The
// render tests copy them into a data-plane cluster's istiod. Run it from
// internal/render after the istio.io/istio module in go.mod changes:
//
//	go run ./testdata/meshfixture
package main

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
)

// values are the mesh's own settings, every one of which a copy must keep, and the
// values of an external istiod that point at the mesh cluster, which a copy must not.
const values = `
meshConfig:
  trustDomain: mesh.example
  accessLogFile: /dev/stdout
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
  extensionProviders:
  - name: otel
    opentelemetry:
      service: opentelemetry-collector.observability.svc.cluster.local
      port: 4317
  defaultConfig:
    holdApplicationUntilProxyStarts: true
    proxyMetadata:
      ISTIO_META_DNS_CAPTURE: "true"
  serviceSettings:
  - settings:
      clusterLocal: true
    hosts:
    - "*.kube-system.svc.cluster.local"
global:
  externalIstiod: true
  caAddress: istiod.mesh.localhost:15012
  remotePilotAddress: 127.0.0.10
  logging:
    level: default:debug
  proxy:
    logLevel: warning
    componentLogLevel: misc:error
    resources:
      requests:
        cpu: 50m
        memory: 64Mi
      limits:
        cpu: "1"
        memory: 256Mi
  meshNetworks:
    network-1:
      endpoints:
      - fromRegistry: mesh
      gateways:
      - address: 127.0.0.20
        port: 15443
    network-2:
      endpoints:
      - fromRegistry: cluster-2
      gateways:
      - registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local
        port: 15443
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	v, err := istiochart.ParseValues(values)
	if err != nil {
		return err
	}
	objs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{
		ClusterID: "mesh", Network: "network-1", MeshID: "mesh-1", Tag: "1.28.3", Values: v,
	})
	if err != nil {
		return err
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# The mesh control plane's ConfigMaps as Istio's istio-discovery chart (%s, the\n"+
		"# istio.io/istio module in go.mod) renders them; written by go run ./testdata/meshfixture.\n", istiochart.Version())
	for _, name := range []string{"istio", "istio-sidecar-injector"} {
		cm := istiochart.Find(objs, "ConfigMap", istiochart.DefaultNamespace, name)
		if cm == nil {
			return fmt.Errorf("the chart rendered no ConfigMap %s", name)
		}
		raw, err := yaml.Marshal(cm.Object)
		if err != nil {
			return err
		}
		out.WriteString("---\n")
		out.Write(raw)
	}
	return os.WriteFile("testdata/mesh-configmaps.yaml", out.Bytes(), 0o644)
}
