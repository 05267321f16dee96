package realistiod

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

func TestRealIstiod(t *testing.T) {
	e := setup(t)

	// Feature: the operator renders an istiod that a real pilot-discovery runs with
	// (its RBAC, volumes, flags and the copied mesh settings), reports it ready from the
	// Deployment's real readiness, and switches the cluster to it. Fails if istiod never
	// becomes ready, the switch does not happen, or istiod is refused anything by RBAC.
	t.Run("istiod becomes ready with the rendered config and the cluster switches to it", func(t *testing.T) {
		eventually(t, 2*time.Minute, "IstiodReady and Switched", func() error {
			ready, switched := e.condition(v1beta1.ConditionIstiodReady), e.condition(v1beta1.ConditionSwitched)
			if !strings.HasPrefix(ready, "True/") || !strings.HasPrefix(switched, "True/") {
				return fmt.Errorf("IstiodReady %q, Switched %q", ready, switched)
			}
			return nil
		})
		t.Logf("IstiodReady and Switched %s after start", time.Since(e.started).Round(time.Millisecond))
		if err := e.istiodAvailable(); err != nil {
			t.Error(err)
		}
		for _, line := range strings.Split(e.kubelet.Logs(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("istiod was refused: %s", line)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	inj, err := e.clusterInjector()
	if err != nil {
		t.Fatal(err)
	}
	webhook := e.addresses(t).HTTPS

	// Feature: sidecar injection by the cluster's own istiod, as the API server would
	// call it after the switch (the injector webhook's path, TLS trusted through its
	// caBundle), with the mesh's injector templates and values. Each case fails if the
	// webhook cannot be reached or trusted, or injects something other than the mesh's
	// injector would.
	t.Run("injection", func(t *testing.T) {
		t.Run("a plain pod gets istio-proxy with the mesh's proxy resources, pointing at the local istiod", func(t *testing.T) {
			p, err := inject(webhook, inj, appPod("app-1", nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := checkPlainInjection(p); err != nil {
				t.Error(err)
			}
			t.Logf("injected: init containers %v, containers %v", names(p.Spec.InitContainers), names(p.Spec.Containers))
		})
		t.Run("a gateway pod of Istio's gateway chart gets the gateway template", func(t *testing.T) {
			p, err := inject(webhook, inj, gatewayPod())
			if err != nil {
				t.Fatal(err)
			}
			proxy := container(p, "istio-proxy")
			if proxy == nil {
				t.Fatalf("no istio-proxy: %v", names(p.Spec.Containers))
			}
			if proxy.Image == "auto" || !strings.Contains(proxy.Image, "proxyv2") {
				t.Errorf("istio-proxy's image is %q, not the injector's proxy image", proxy.Image)
			}
			if !contains(proxy.Args, "router") {
				t.Errorf("istio-proxy's args %v are not a gateway's (proxy router)", proxy.Args)
			}
			if container(p, "istio-init") != nil {
				t.Error("a gateway got istio-init: the sidecar template was used")
			}
			if err := checkLocalIstiod(proxy); err != nil {
				t.Error(err)
			}
		})
		t.Run("annotation proxyCPU sets the proxy's CPU request", func(t *testing.T) {
			p, err := inject(webhook, inj, appPod("app-2", map[string]string{"sidecar.istio.io/proxyCPU": "300m"}))
			if err != nil {
				t.Fatal(err)
			}
			proxy := container(p, "istio-proxy")
			if proxy == nil {
				t.Fatal("no istio-proxy")
			}
			if got := proxy.Resources.Requests.Cpu().String(); got != "300m" {
				t.Errorf("istio-proxy requests cpu %s, not 300m", got)
			}
		})
		t.Run("annotation excludeOutboundPorts excludes the port from capture", func(t *testing.T) {
			p, err := inject(webhook, inj, appPod("app-3", map[string]string{"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}))
			if err != nil {
				t.Fatal(err)
			}
			if !excludedOutbound(p, "5432") {
				init := container(p, "istio-init")
				if init != nil {
					t.Errorf("istio-init's args %v do not exclude outbound port 5432", init.Args)
				} else {
					t.Errorf("no container excludes outbound port 5432")
				}
			}
		})
	})

	// Feature: the cluster's istiod runs with the mesh's mesh config (copied from the
	// mesh cluster's ConfigMap istio), only the discovery address pointing at itself.
	// Fails if the operator rendered its own mesh config or did not overlay the address.
	t.Run("debug endpoint mesh shows the mesh's REGISTRY_ONLY and the local discovery address", func(t *testing.T) {
		resp, err := http.Get("http://" + e.addresses(t).HTTP + "/debug/mesh")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var mesh struct {
			OutboundTrafficPolicy *struct {
				Mode string `json:"mode"`
			} `json:"outboundTrafficPolicy"`
			DefaultConfig struct {
				DiscoveryAddress string `json:"discoveryAddress"`
			} `json:"defaultConfig"`
		}
		if err := json.Unmarshal(raw, &mesh); err != nil {
			t.Fatalf("%s: %v: %s", resp.Status, err, raw)
		}
		// REGISTRY_ONLY is the enum's zero value, which istiod's JSON leaves out; the
		// default mesh config istiod would otherwise run with says ALLOW_ANY.
		if p := mesh.OutboundTrafficPolicy; p == nil || (p.Mode != "" && p.Mode != "REGISTRY_ONLY") {
			t.Errorf("outboundTrafficPolicy is %+v, not the mesh's REGISTRY_ONLY: %s", p, raw)
		}
		if mesh.DefaultConfig.DiscoveryAddress != localIstiod {
			t.Errorf("defaultConfig.discoveryAddress is %q, not %s", mesh.DefaultConfig.DiscoveryAddress, localIstiod)
		}
	})

	// Feature: the cluster's istiod serves its sidecars the cluster's own services
	// (CDS) and the mesh's Istio configuration, authored in the mesh cluster and
	// mirrored by the operator (RDS). Fails if istiod does not discover the cluster's
	// Services, or the VirtualService never reaches it.
	t.Run("xDS", func(t *testing.T) {
		httpbin := &corev1.Service{}
		httpbin.Namespace, httpbin.Name = "default", "httpbin"
		httpbin.Labels = map[string]string{"app": "httpbin"}
		httpbin.Spec.Selector = map[string]string{"app": "httpbin"}
		httpbin.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
		create(t, e.data, httpbin)
		vs := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
			"metadata": map[string]any{"name": "httpbin", "namespace": "default"},
			"spec": map[string]any{
				"hosts": []any{"httpbin.default.svc.cluster.local"},
				"http": []any{map[string]any{
					"name":  "authored-in-mesh",
					"match": []any{map[string]any{"uri": map[string]any{"prefix": "/from-mesh"}}},
					"route": []any{map[string]any{"destination": map[string]any{
						"host": "httpbin.default.svc.cluster.local", "port": map[string]any{"number": int64(80)}}}},
				}},
			},
		}}
		create(t, e.mesh, vs)
		grpcAddr := e.addresses(t).GRPC

		t.Run("CDS has the cluster's Service", func(t *testing.T) {
			const want = "outbound|80||httpbin.default.svc.cluster.local"
			eventually(t, 30*time.Second, "CDS "+want, func() error {
				clusters, err := fetch(grpcAddr, e.version, clusterType, nil, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
				if err != nil {
					return err
				}
				var got []string
				for _, c := range clusters {
					if c.GetName() == want {
						return nil
					}
					got = append(got, c.GetName())
				}
				return fmt.Errorf("clusters %v", got)
			})
		})
		t.Run("RDS route 80 has the route of the mesh's VirtualService", func(t *testing.T) {
			eventually(t, 30*time.Second, "route authored-in-mesh in RDS 80", func() error {
				routes, err := fetch(grpcAddr, e.version, routeType, []string{"80"}, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
				if err != nil {
					return err
				}
				var seen []string
				for _, rc := range routes {
					for _, vh := range rc.GetVirtualHosts() {
						for _, r := range vh.GetRoutes() {
							seen = append(seen, vh.GetName()+"/"+r.GetName())
							if r.GetName() == "authored-in-mesh" && r.GetMatch().GetPrefix() == "/from-mesh" &&
								r.GetRoute().GetCluster() == "outbound|80||httpbin.default.svc.cluster.local" {
								return nil
							}
						}
					}
				}
				return fmt.Errorf("routes %v", seen)
			})
		})
	})

	// Feature: the cluster's istiod is independent of the mesh cluster: with the mesh
	// API server gone (a cut link), it stays ready and new pods are still injected.
	// Fails if istiod, or the injection path, depends on the mesh cluster.
	t.Run("with the mesh API server stopped, istiod stays ready and injects", func(t *testing.T) {
		if err := e.meshEnv.Stop(); err != nil {
			t.Logf("stopping the mesh cluster: %v", err) // killed after ControlPlaneStopTimeout
		}
		e.meshStopped = true
		if err := e.mesh.Get(ctx(), client.ObjectKey{Name: ns}, &corev1.Namespace{}); err == nil {
			t.Fatal("the mesh API server still answers")
		}
		stopped := time.Now()
		for time.Since(stopped) < 10*time.Second {
			if !e.kubelet.Ready() {
				t.Fatalf("istiod is not ready %s after the mesh API server stopped", time.Since(stopped).Round(time.Millisecond))
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := e.istiodAvailable(); err != nil {
			t.Error(err)
		}
		p, err := inject(e.addresses(t).HTTPS, inj, appPod("app-4", nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPlainInjection(p); err != nil {
			t.Error(err)
		}
	})
	t.Logf("test took %s", time.Since(e.started).Round(time.Millisecond))
}
