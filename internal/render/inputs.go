// Package render turns one entry of an ASMMeshConfig into the objects of a complete
// istiod for one data-plane cluster, following Istio's istio-discovery chart for the
// Istio version in use. Rendering is pure: the same inputs always give the same objects,
// and nothing here talks to an API server.
package render

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// Labels the operator puts on everything it creates in a data-plane cluster. The
// cache of every remote cluster selects on ManagedByLabel, and pruning and cleanup
// find the operator's objects through both.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "remote-istiod-operator"
	ClusterIDLabel = "istio.alibabacloud.com/remote-cluster"
)

// Inputs are everything rendering depends on.
type Inputs struct {
	// ClusterID of the data-plane cluster (CLUSTER_ID of its istiod).
	ClusterID string
	// Entry is the cluster's entry of externalIstiodConfigurations.
	Entry v1beta1.ExternalIstiodConfiguration
	// Namespace of the control plane in the data-plane cluster.
	Namespace string
	// Version of Istio, for example 1.24.3.
	Version string
	// Hub the istiod image comes from.
	Hub string
	// MeshID and TrustDomain of the mesh.
	MeshID      string
	TrustDomain string
	// TrustDomainSet is true when the ASMMeshConfig names the trust domain itself
	// (spec.trustDomain): only then does it replace the trust domain of copied mesh
	// settings.
	TrustDomainSet bool
	// MeshSettings are the injector and mesh configuration of the cluster's istiod (the
	// mesh control plane's, or Istio's chart's); Render refuses inputs without them.
	MeshSettings MeshSettings
	// ForeignValidators is true when the cluster has Istio validation webhooks of the
	// mesh control plane (the remote profile's istiod-default-validator). istiod's
	// validation controller patches every validator labelled with its revision, so
	// the local istiod then runs without it and renders no validator of its own: the
	// switch points those validators at it, and the operator keeps their caBundle.
	ForeignValidators bool
	// CACertsFingerprint changes when istiod's signing CA (the cacerts Secret) does;
	// it is a pod template annotation so that a new CA rolls istiod.
	CACertsFingerprint string
}

// Settings are the operator's defaults for what the ASMMeshConfig leaves empty.
type Settings struct {
	Namespace string
	Hub       string
	// Version is the operator's --istio-version flag, empty unless set: the controller
	// uses it only where the ASMMeshConfig sets no spec.version and the mesh cluster runs
	// no istiod to take the version from, and otherwise the version of Istio's chart.
	Version     string
	TrustDomain string
	// IntermediateCALifetime and IntermediateCARenewBefore govern the intermediate CA
	// issued to each remote istiod.
	IntermediateCALifetime    time.Duration
	IntermediateCARenewBefore time.Duration
}

// InputsFor combines an ASMMeshConfig entry with the operator's settings.
func InputsFor(spec v1beta1.ASMMeshConfigSpec, clusterID string, settings Settings) Inputs {
	in := Inputs{
		ClusterID:      clusterID,
		Entry:          spec.ExternalIstiodConfigurations[clusterID],
		Namespace:      settings.Namespace,
		Version:        firstNonEmpty(spec.Version, settings.Version),
		Hub:            firstNonEmpty(spec.Hub, settings.Hub),
		MeshID:         spec.MeshID,
		TrustDomain:    firstNonEmpty(spec.TrustDomain, settings.TrustDomain, "cluster.local"),
		TrustDomainSet: spec.TrustDomain != "",
	}
	return in
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func (in Inputs) replicas() int32 {
	if in.Entry.Replicas != nil {
		return *in.Entry.Replicas
	}
	return 2
}

// resources are the entry's, or the chart's default requests (500m CPU, 2Gi memory).
func (in Inputs) resources() corev1.ResourceRequirements {
	if in.Entry.Resources != nil && (len(in.Entry.Resources.Requests) > 0 || len(in.Entry.Resources.Limits) > 0) {
		return *in.Entry.Resources.DeepCopy()
	}
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("500m"),
		corev1.ResourceMemory: resource.MustParse("2048Mi"),
	}}
}

// validate catches what the CRD schema cannot, so rendering never produces a broken set.
func (in Inputs) validate() error {
	if in.ClusterID == "" {
		return fmt.Errorf("cluster ID is empty")
	}
	if in.Namespace == "" {
		return fmt.Errorf("control plane namespace is empty")
	}
	if in.Hub == "" {
		return fmt.Errorf("no Istio hub: set spec.hub or the operator's --istio-hub flag")
	}
	if in.replicas() < 1 {
		return fmt.Errorf("replicas must be at least 1")
	}
	if res := in.Entry.Resources; res != nil {
		for name, request := range res.Requests {
			if limit, ok := res.Limits[name]; ok && request.Cmp(limit) > 0 {
				return fmt.Errorf("resources: the %s request %s exceeds its limit %s", name, request.String(), limit.String())
			}
		}
	}
	return nil
}
