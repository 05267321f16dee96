package realistiod

import (
	"context"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The xDS type URLs, from the messages themselves.
var (
	clusterType = typeURL(&clusterv3.Cluster{})
	routeType   = typeURL(&routev3.RouteConfiguration{})
)

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// sidecarNode is what Istio's agent sends as the Envoy node of a sidecar of pod app-1
// in namespace default of the cluster (pilot/pkg/model/context.go parses the ID,
// pkg/model/proxy.go the metadata).
func sidecarNode(version string) (*corev3.Node, error) {
	md, err := structpb.NewStruct(map[string]any{
		"ISTIO_VERSION":     version,
		"CLUSTER_ID":        clusterID,
		"NAMESPACE":         "default",
		"MESH_ID":           meshID,
		"NETWORK":           network,
		"INSTANCE_IPS":      "127.0.0.5",
		"INTERCEPTION_MODE": "REDIRECT",
		"NAME":              "app-1",
		"WORKLOAD_NAME":     "app",
		"SERVICE_ACCOUNT":   "default",
		"NODE_NAME":         "testkubelet",
		"OWNER":             "kubernetes://apis/apps/v1/namespaces/default/deployments/app",
		"LABELS":            map[string]any{"app": "app"},
	})
	if err != nil {
		return nil, err
	}
	return &corev3.Node{
		Id:            "sidecar~127.0.0.5~app-1.default~default.svc.cluster.local",
		Cluster:       "app.default",
		Metadata:      md,
		UserAgentName: "envoy",
	}, nil
}

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
	node, err := sidecarNode(version)
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
