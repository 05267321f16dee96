// Package localapi starts the real kube-apiserver and etcd of envtest for tests, the
// demo and the benchmarks, so that nothing they do sends traffic off this machine.
//
// kube-apiserver calls a Service-backed webhook at the Service's ClusterIP. envtest's
// default Service range (10.0.0.0/24) is a private network range, so a switched
// cluster, whose webhooks lead to Service istio-system/istiod, would make the API server
// dial 10.0.0.x on every Istio write. Every API server started through this package
// allocates ClusterIPs from a loopback range instead: such calls go to 127.100.x.y (up to
// 127.103) and are refused at once. TestNoOtherEnvironments keeps every envtest API server of the
// repository going through here.
package localapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ServiceCIDR holds the Service ClusterIP ranges of every API server started here: a
// loopback range, which kube-apiserver accepts. Each API server gets a /24 of its own
// in it, so that two of them, in one test process or in test packages running side by
// side, never hand out the same ClusterIP: a test that serves a Service on its
// ClusterIP (the test kubelet's kube-proxy stand-in) then never answers another API
// server's calls.
const ServiceCIDR = "127.100.0.0/14"

// nextRange counts the /24s of ServiceCIDR handed out; it starts at a random one per
// process, so concurrent test processes are unlikely to meet.
var nextRange atomic.Uint32

func init() { nextRange.Store(uint32(rand.IntN(1024))) }

// New prepares env to run its API server with a loopback Service range of its own.
// Use it on every envtest.Environment before Start.
func New(env *envtest.Environment) *envtest.Environment {
	n := nextRange.Add(1) % 1024 // the /24s of a /14
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range",
		fmt.Sprintf("127.%d.%d.0/24", 100+n/256, n%256))
	return env
}

// Start starts env with the loopback Service range and checks that the API server
// really allocates from it.
func Start(ctx context.Context, env *envtest.Environment) (*rest.Config, error) {
	cfg, err := New(env).Start()
	if err != nil {
		return nil, err
	}
	if err := CheckServiceRange(ctx, cfg); err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return cfg, nil
}

// CheckServiceRange fails unless the API server at cfg allocates ClusterIPs from
// ServiceCIDR: it reads the ClusterIP of default/kubernetes, the first address of the
// range, which the API server creates a moment after it starts.
func CheckServiceRange(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, cidr, err := net.ParseCIDR(ServiceCIDR)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var svc *corev1.Service
	for {
		svc, err = cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server at %s never created Service default/kubernetes: %w", cfg.Host, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	ip := net.ParseIP(svc.Spec.ClusterIP)
	if ip == nil || !ip.IsLoopback() || !cidr.Contains(ip) {
		return fmt.Errorf("the API server at %s allocates ClusterIPs outside %s (default/kubernetes has %q): "+
			"start it through localapi so webhook calls stay on this machine", cfg.Host, ServiceCIDR, svc.Spec.ClusterIP)
	}
	return nil
}
