package realistiod

import (
	"context"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/meshfleet/remote-istiod-operator/internal/sidecartest"
)

// The xDS type URLs, from the messages themselves.
var (
	clusterType = sidecartest.TypeURL(&clusterv3.Cluster{})
	routeType   = sidecartest.TypeURL(&routev3.RouteConfiguration{})
)

// fetch asks istiod's plain-text xDS port, over one ADS stream of go-control-plane's
// client, for resources of one type, and returns the first answer's resources decoded
// into messages made by newMsg.
func fetch[T proto.Message](addr, version, typ string, names []string, newMsg func() T) ([]T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	node, err := sidecartest.Sidecar{Version: version, ClusterID: clusterID, MeshID: meshID, Network: network, Name: "app-1", IP: "127.0.0.5"}.Node()
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names}); err != nil {
		return nil, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("receiving %s: %w", typ, err)
		}
		if resp.GetTypeUrl() != typ {
			continue
		}
		var out []T
		for _, a := range resp.GetResources() {
			m := newMsg()
			if err := a.UnmarshalTo(m); err != nil {
				return nil, fmt.Errorf("decoding a %s: %w", typ, err)
			}
			out = append(out, m)
		}
		_ = stream.CloseSend()
		return out, nil
	}
}
