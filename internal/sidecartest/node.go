// Package sidecartest describes simulated sidecars to a real istiod, for tests that talk
// xDS to it.
package sidecartest

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Sidecar is one simulated sidecar of Deployment app in namespace default.
type Sidecar struct {
	// Version is the Istio version the agent reports.
	Version string
	// ClusterID, MeshID and Network place the sidecar in the mesh.
	ClusterID, MeshID, Network string
	// Name is the pod's name; IP its address (a loopback one: it is only reported).
	Name, IP string
}

// Node is what Istio's agent sends as the Envoy node of the sidecar
// (pilot/pkg/model/context.go parses the ID, pkg/model/proxy.go the metadata).
func (s Sidecar) Node() (*corev3.Node, error) {
	md, err := structpb.NewStruct(map[string]any{
		"ISTIO_VERSION":     s.Version,
		"CLUSTER_ID":        s.ClusterID,
		"NAMESPACE":         "default",
		"MESH_ID":           s.MeshID,
		"NETWORK":           s.Network,
		"INSTANCE_IPS":      s.IP,
		"INTERCEPTION_MODE": "REDIRECT",
		"NAME":              s.Name,
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
		Id:            fmt.Sprintf("sidecar~%s~%s.default~default.svc.cluster.local", s.IP, s.Name),
		Cluster:       "app.default",
		Metadata:      md,
		UserAgentName: "envoy",
	}, nil
}

// LoopbackIP is the i-th of distinct loopback addresses (127.1.0.0 on), for sidecars
// that each need an address of their own.
func LoopbackIP(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/65536, i/256%256, i%256)
}

// TypeURL is the xDS type URL of a resource, from its message.
func TypeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}
