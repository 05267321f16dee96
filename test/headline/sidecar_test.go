package headline

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfleet/remote-istiod-operator/internal/sidecartest"
)

// The xDS type URLs, from the messages themselves.
var (
	clusterType  = sidecartest.TypeURL(&clusterv3.Cluster{})
	listenerType = sidecartest.TypeURL(&listenerv3.Listener{})
	endpointType = sidecartest.TypeURL(&endpointv3.ClusterLoadAssignment{})
	routeType    = sidecartest.TypeURL(&routev3.RouteConfiguration{})
	hcmType      = sidecartest.TypeURL(&hcmv3.HttpConnectionManager{})
)

// names extracts from a CDS or LDS resource the EDS or RDS names it makes an Envoy
// subscribe to. Sidecars get byte-identical resources from one push, so the answers
// are kept by a hash of the resource rather than decoded once per sidecar.
type names struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    map[uint64][]string
}

func newNames() *names { return &names{seed: maphash.MakeSeed(), m: map[uint64][]string{}} }

func (n *names) of(a *anypb.Any) ([]string, error) {
	key := maphash.Bytes(n.seed, a.GetValue())
	n.mu.Lock()
	got, ok := n.m[key]
	n.mu.Unlock()
	if ok {
		return got, nil
	}
	var out []string
	switch a.GetTypeUrl() {
	case clusterType:
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		if c.GetType() == clusterv3.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			out = []string{name}
		}
	case listenerType:
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, err
		}
		chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				if f.GetTypedConfig().GetTypeUrl() != hcmType {
					continue
				}
				h := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					return nil, err
				}
				if r := h.GetRds().GetRouteConfigName(); r != "" {
					out = append(out, r)
				}
			}
		}
	}
	n.mu.Lock()
	n.m[key] = out
	n.mu.Unlock()
	return out, nil
}

// sidecar is one simulated Envoy: one gRPC connection (one TCP connection) and on it
// one delta ADS stream, as Istio's agent opens by default (ISTIO_DELTA_XDS). It
// subscribes to CDS and LDS (wildcard), then to the EDS and RDS names those carry,
// as Envoy does, and ACKs every response. A stream that fails (istiod's rate limit on
// new streams refuses some with ResourceExhausted) is opened again on the same
// connection after a jittered back-off.
type sidecar struct {
	conn  *grpc.ClientConn
	node  *corev3.Node
	names *names

	synced    chan struct{}
	syncOnce  sync.Once
	responses atomic.Int64
	streams   atomic.Int64
	lastErr   atomic.Pointer[string]
}

func (s *sidecar) run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		s.streams.Add(1)
		err := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		msg := err.Error()
		s.lastErr.Store(&msg)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *sidecar) stream(ctx context.Context) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(s.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: s.node, TypeUrl: clusterType}); err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: listenerType}); err != nil {
		return err
	}
	// What the resources of each wildcard type ask for, by resource name, and what the
	// sidecar subscribed to of each named type.
	wants := map[string]map[string][]string{clusterType: {}, listenerType: {}}
	subscribed := map[string]map[string]bool{endpointType: {}, routeType: {}}
	named := map[string]string{clusterType: endpointType, listenerType: routeType}
	seen := map[string]bool{}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.responses.Add(1)
		typ := resp.GetTypeUrl()
		if w, ok := wants[typ]; ok {
			for _, r := range resp.GetResources() {
				if w[r.GetName()], err = s.names.of(r.GetResource()); err != nil {
					return err
				}
			}
			for _, name := range resp.GetRemovedResources() {
				delete(w, name)
			}
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		seen[typ] = true
		if sub, ok := named[typ]; ok {
			if err := resubscribe(st, sub, wants[typ], subscribed[sub]); err != nil {
				return err
			}
		}
		if seen[clusterType] && seen[listenerType] &&
			(len(subscribed[endpointType]) == 0 || seen[endpointType]) && (len(subscribed[routeType]) == 0 || seen[routeType]) {
			s.syncOnce.Do(func() { close(s.synced) })
		}
	}
}

// resubscribe brings the subscription to typ in line with what the resources want, as
// a spontaneous delta request (no nonce) with the names added and removed.
func resubscribe(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, typ string,
	wants map[string][]string, have map[string]bool) error {
	want := map[string]bool{}
	for _, ns := range wants {
		for _, n := range ns {
			want[n] = true
		}
	}
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
	for n := range want {
		if !have[n] {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			have[n] = true
		}
	}
	for n := range have {
		if !want[n] {
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			delete(have, n)
		}
	}
	if len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) == 0 {
		return nil
	}
	return st.Send(req)
}

// fleet is P sidecars of one data-plane cluster, all talking to one address.
type fleet struct {
	sidecars []*sidecar
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startFleet(addr, version string, p int) (*fleet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel}
	nm := newNames()
	for i := range p {
		node, err := sidecartest.Sidecar{Version: version, ClusterID: clusterID, MeshID: meshID, Network: network,
			Name: fmt.Sprintf("app-%d", i), IP: sidecartest.LoopbackIP(i)}.Node()
		if err != nil {
			f.stop()
			return nil, err
		}
		// One ClientConn each: each sidecar holds a TCP connection of its own.
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			f.stop()
			return nil, err
		}
		s := &sidecar{conn: conn, node: node, names: nm, synced: make(chan struct{})}
		f.sidecars = append(f.sidecars, s)
		f.wg.Add(1)
		go func() { defer f.wg.Done(); s.run(ctx) }()
	}
	return f, nil
}

// waitSynced waits until every sidecar has had an answer to each of its subscriptions.
func (f *fleet) waitSynced(timeout time.Duration) error {
	deadline := time.After(timeout)
	for i, s := range f.sidecars {
		select {
		case <-s.synced:
		case <-deadline:
			n := 0
			for _, s := range f.sidecars {
				select {
				case <-s.synced:
					n++
				default:
				}
			}
			last := ""
			if e := f.sidecars[i].lastErr.Load(); e != nil {
				last = *e
			}
			return fmt.Errorf("%d of %d sidecars synced within %s; sidecar %d's last error: %q", n, len(f.sidecars), timeout, i, last)
		}
	}
	return nil
}

// responses is each sidecar's count of responses so far.
func (f *fleet) responses() []int64 {
	out := make([]int64, len(f.sidecars))
	for i, s := range f.sidecars {
		out[i] = s.responses.Load()
	}
	return out
}

// streams is how many streams the sidecars opened, retries included.
func (f *fleet) streams() int64 {
	var n int64
	for _, s := range f.sidecars {
		n += s.streams.Load()
	}
	return n
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
	for _, s := range f.sidecars {
		_ = s.conn.Close()
	}
}
