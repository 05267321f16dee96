package testkubelet

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// services stands in for kube-proxy, for the Services of the Deployment's namespace
// that select the pod: it listens on each ClusterIP:port and forwards connections to
// the process's port while the pod is ready, as an endpoint is only then. This is how
// the API server reaches istiod's webhooks. ClusterIPs must be on loopback (an API
// server started with --service-cluster-ip-range in 127.0.0.0/8); others are skipped.
type services struct {
	mu        sync.Mutex
	listeners map[string]net.Listener // by ClusterIP:port
	targets   map[string]string       // ClusterIP:port -> local address of the ready pod
	failed    map[string]bool         // listeners that could not be opened (reported once)
}

func (s *services) target(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[key]
}

// sync opens listeners for new Service ports and points every one at the pod (or at
// nothing when p is nil or not ready).
func (k *Kubelet) syncServices(ctx context.Context, p *pod) {
	svcs, err := k.cs.CoreV1().Services(k.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	targets := map[string]string{}
	s := &k.svc
	for _, svc := range svcs.Items {
		ip := net.ParseIP(svc.Spec.ClusterIP)
		if ip == nil || !ip.IsLoopback() || len(svc.Spec.Selector) == 0 {
			continue
		}
		if p == nil || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.info.labels)) {
			continue
		}
		for _, port := range svc.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			key := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port.Port)))
			k.listen(key)
			tp := port.TargetPort
			if tp.IntValue() == 0 && tp.StrVal == "" {
				tp.IntVal = port.Port
			}
			if addr, ok := p.ports[portKey(tp)]; ok && p.ready {
				targets[key] = addr
			}
		}
	}
	s.mu.Lock()
	s.targets = targets
	s.mu.Unlock()
}

func (k *Kubelet) listen(key string) {
	s := &k.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners[key] != nil || s.failed[key] {
		return
	}
	l, err := net.Listen("tcp", key)
	if err != nil {
		if s.failed == nil {
			s.failed = map[string]bool{}
		}
		s.failed[key] = true
		k.opts.Logf("testkubelet %s/%s: cannot stand in for kube-proxy at %s: %v", k.opts.Namespace, k.opts.Name, key, err)
		return
	}
	if s.listeners == nil {
		s.listeners = map[string]net.Listener{}
	}
	s.listeners[key] = l
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go forward(conn, s.target(key))
		}
	}()
}

func forward(conn net.Conn, target string) {
	defer conn.Close()
	if target == "" {
		return // no ready endpoint: the connection is refused
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); closeWrite(conn); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (s *services) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		_ = l.Close()
	}
	s.listeners = nil
	s.targets = nil
}
