package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultName is the only ASMMeshConfig name the operator acts on.
const DefaultName = "default"

// ASMMeshConfigSpec says which data-plane clusters run their own istiod.
// +kubebuilder:validation:XValidation:rule="!(has(self.useDataPlaneKubeAPIForIstioResources) && self.useDataPlaneKubeAPIForIstioResources && has(self.externalIstiodConfigurations) && size(self.externalIstiodConfigurations) > 0)",message="spec.useDataPlaneKubeAPIForIstioResources conflicts with externalIstiodConfigurations: remote control planes read Istio resources from the mesh cluster; set useDataPlaneKubeAPIForIstioResources to false first, then add remote control planes"
// +kubebuilder:validation:XValidation:rule="!has(self.version) || !self.version.matches('^1[.][0-9]+[.]') || int(self.version.split('.')[1]) >= 22",message="spec.version: Istio versions older than 1.22 are not supported; set 1.22.0 or newer"
type ASMMeshConfigSpec struct {
	// ExternalIstiodConfigurations maps a cluster ID (the data key of the cluster's Istio
	// remote secret) to the istiod the operator runs in that cluster. Removing an entry
	// switches the cluster back to the mesh control plane and removes that istiod.
	// +optional
	// +kubebuilder:validation:MaxProperties=100
	// +kubebuilder:validation:XValidation:rule="self.all(id, size(id) <= 63)",message="cluster IDs (keys of externalIstiodConfigurations) must be at most 63 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(id, id.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="cluster IDs (keys of externalIstiodConfigurations) must be valid label values: letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	ExternalIstiodConfigurations map[string]ExternalIstiodConfiguration `json:"externalIstiodConfigurations,omitempty"`

	// Version of Istio the remote istiods run, for example 1.24.3. Defaults to the
	// operator's --istio-version flag. 1.22 or newer.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^1[.][0-9]+[.][0-9]+(-[0-9A-Za-z.-]+)?$')",message="spec.version must be an Istio release such as 1.24.3"
	Version string `json:"version,omitempty"`

	// Hub is the image registry the istiod image (<hub>/pilot:<version>) comes from.
	// Defaults to the operator's --istio-hub flag.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9._:]*[a-z0-9])?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$')",message="spec.hub must be an image registry path such as docker.io/istio, without a trailing slash or a tag"
	Hub string `json:"hub,omitempty"`

	// MeshID of the mesh, as the mesh control plane has it. Defaults to the trust domain's
	// mesh when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",message="spec.meshID must be a valid label value"
	MeshID string `json:"meshID,omitempty"`

	// UseDataPlaneKubeAPIForIstioResources lets Istio resources be written in data-plane
	// clusters and synced to the mesh ("use the Kubernetes API of data-plane clusters to
	// access Istio resources"). It conflicts with remote control planes, whose Istio
	// configuration is authored in the mesh cluster only, so it cannot be true while
	// externalIstiodConfigurations has entries.
	// +optional
	UseDataPlaneKubeAPIForIstioResources bool `json:"useDataPlaneKubeAPIForIstioResources,omitempty"`

	// AllowIndependentRootCA lets remote istiods start when the mesh cluster has no
	// cacerts Secret: each then signs with a root of its own, and workloads under the
	// mesh and the remote control planes do not trust each other. Off by default.
	// +optional
	AllowIndependentRootCA bool `json:"allowIndependentRootCA,omitempty"`

	// TrustDomain of the mesh's workload identities. Defaults to cluster.local.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.trustDomain must be a lower-case DNS name such as cluster.local"
	TrustDomain string `json:"trustDomain,omitempty"`
}

// ExternalIstiodConfiguration is the istiod of one data-plane cluster.
type ExternalIstiodConfiguration struct {
	// Replicas of istiod. A PodDisruptionBudget keeps one available when more than one.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	Replicas *int32 `json:"replicas,omitempty"`

	// Resources of the istiod container. Istio's defaults (500m CPU, 2Gi memory
	// requested) when empty.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector for istiod pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of istiod pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of istiod pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints of istiod pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PriorityClassName of istiod pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="priorityClassName must be the name of a PriorityClass (lower-case DNS name)"
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// MutualAccess gives this cluster's istiod read access to the other clusters of the
	// mesh (an Istio remote secret for each, scoped to Istio's reader role there), so
	// its workloads reach their services too. Off: they see only their own cluster's.
	// +optional
	MutualAccess bool `json:"mutualAccess,omitempty"`

	// KeepTrafficInCluster keeps the cluster's traffic to the listed hosts inside the
	// cluster (Istio's MeshConfig serviceSettings clusterLocal). Unset: traffic may cross
	// clusters as usual.
	// +optional
	KeepTrafficInCluster *TrafficRetention `json:"keepTrafficInCluster,omitempty"`

	// Network of this cluster in a multi-network mesh (topology.istio.io/network).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",message="network must be a valid label value"
	Network string `json:"network,omitempty"`
}

// TrafficRetention says which hosts' traffic stays inside the cluster.
type TrafficRetention struct {
	// Hosts whose traffic stays in the cluster, as Istio service hosts
	// (reviews.default.svc.cluster.local, *.bookinfo.svc.cluster.local). Empty means all
	// hosts.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Hosts []string `json:"hosts,omitempty"`
}

// Condition types of ASMMeshConfig and of each cluster in its status.
const (
	// ConditionReady is True when every remote control plane is ready.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator works towards the spec (kstatus).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when progress needs a person (kstatus).
	ConditionStalled = "Stalled"
	// ConditionConnected is True when the cluster's API server answers.
	ConditionConnected = "Connected"
	// ConditionApplied is True when every rendered object is in the cluster.
	ConditionApplied = "Applied"
	// ConditionIstiodReady is True when the istiod Deployment is available.
	ConditionIstiodReady = "IstiodReady"
	// ConditionConfigMirrored is True when the cluster holds a copy of every Istio
	// configuration object of the mesh cluster, and nothing else.
	ConditionConfigMirrored = "ConfigMirrored"
	// ConditionMeshTrust is True when the cluster's istiod signs with an intermediate
	// CA of the mesh CA.
	ConditionMeshTrust = "MeshTrust"
	// ConditionSwitched is True when the cluster's sidecar injection is served by its
	// own istiod.
	ConditionSwitched = "Switched"
)

// ClusterStatus is how far the operator got in one data-plane cluster.
type ClusterStatus struct {
	// ClusterID of the data-plane cluster.
	ClusterID string `json:"clusterID"`

	// ObservedGeneration of the ASMMeshConfig this entry describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Connected, Applied, IstiodReady and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// DesiredReplicas of istiod.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas,omitempty"`

	// ReadyReplicas of istiod.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// AppliedHash is the hash of the rendered objects last applied in full.
	// +optional
	AppliedHash string `json:"appliedHash,omitempty"`

	// MirroredObjects counts the Istio configuration objects mirrored into the cluster.
	// +optional
	MirroredObjects int32 `json:"mirroredObjects,omitempty"`

	// SwitchedAt is when injection moved to the cluster's own istiod.
	// +optional
	SwitchedAt *metav1.Time `json:"switchedAt,omitempty"`

	// GatewaysRestarted names the gateway Deployments (namespace/name) restarted for
	// the current switch.
	// +optional
	// +listType=atomic
	GatewaysRestarted []string `json:"gatewaysRestarted,omitempty"`

	// IstioVersion last applied.
	// +optional
	IstioVersion string `json:"istioVersion,omitempty"`
}

// ASMMeshConfigStatus is the observed state of the remote control planes.
type ASMMeshConfigStatus struct {
	// ObservedGeneration of the spec the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (all remote control planes ready), Reconciling and Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ControlPlanes reads "ready/desired", for example 1/2.
	// +optional
	ControlPlanes string `json:"controlPlanes,omitempty"`

	// ReadyControlPlanes counts the clusters whose istiod is ready.
	// +optional
	ReadyControlPlanes int32 `json:"readyControlPlanes,omitempty"`

	// DesiredControlPlanes counts the entries of externalIstiodConfigurations.
	// +optional
	DesiredControlPlanes int32 `json:"desiredControlPlanes,omitempty"`

	// Clusters has one entry per data-plane cluster the operator has work or leftovers in.
	// +optional
	// +listType=map
	// +listMapKey=clusterID
	Clusters []ClusterStatus `json:"clusters,omitempty"`
}

// ASMMeshConfig configures remote istiod control planes in data-plane clusters. Only the
// object named "default" takes effect.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=amc
// +kubebuilder:printcolumn:name="Control Planes",type=string,JSONPath=`.status.controlPlanes`,description="remote control planes ready/desired"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ASMMeshConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ASMMeshConfigSpec `json:"spec,omitempty"`
	// +optional
	Status ASMMeshConfigStatus `json:"status,omitempty"`
}

// ASMMeshConfigList is a list of ASMMeshConfig.
// +kubebuilder:object:root=true
type ASMMeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ASMMeshConfig `json:"items"`
}
