package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultName is the only ASMMeshConfig name the operator acts on.
const DefaultName = "default"

// ASMMeshConfigSpec says which data-plane clusters of the mesh run their own istiod (a
// remote control plane), and the mesh-wide settings those istiods share: Istio version,
// image hub, mesh ID and trust domain. The mesh-wide settings apply to every entry of
// externalIstiodConfigurations; the mesh control plane itself is not changed by them.
// +kubebuilder:validation:XValidation:rule="!(has(self.useDataPlaneKubeAPIForIstioResources) && self.useDataPlaneKubeAPIForIstioResources && has(self.externalIstiodConfigurations) && size(self.externalIstiodConfigurations) > 0)",message="spec.useDataPlaneKubeAPIForIstioResources conflicts with externalIstiodConfigurations: remote control planes read Istio resources from the mesh cluster; set useDataPlaneKubeAPIForIstioResources to false first, then add remote control planes"
// +kubebuilder:validation:XValidation:rule="!has(self.version) || !self.version.matches('^1[.][0-9]+[.]') || int(self.version.split('.')[1]) >= 22",message="spec.version: Istio versions older than 1.22 are not supported; set 1.22.0 or newer"
// The upper bound is render.NewestMinor; internal/render's tests keep the two equal.
// +kubebuilder:validation:XValidation:rule="!has(self.version) || !self.version.matches('^1[.][0-9]+[.]') || int(self.version.split('.')[1]) <= 32",message="spec.version: Istio versions newer than 1.32 are not supported by this operator; set 1.32.x or older, or upgrade the operator"
type ASMMeshConfigSpec struct {
	// externalIstiodConfigurations maps the ID of a data-plane cluster to the istiod the
	// operator runs in it. The ID is the cluster's name in the mesh: the data key of its
	// Istio remote secret (a Secret labelled istio/multiCluster=true in the mesh cluster's
	// control plane namespace, as istioctl create-remote-secret writes it). It must be a
	// label value of at most 63 characters; at most 100 clusters. An entry may be empty
	// ({}) to take every default.
	//
	// Adding an entry makes the operator install istiod in that cluster's control plane
	// namespace, mirror the mesh's Istio configuration into the cluster and, once the
	// local istiod is ready, switch the cluster's sidecar injection to it and restart the
	// cluster's Istio gateways once. Until then injection stays with the mesh control
	// plane. Removing an entry switches injection back to the mesh control plane,
	// restarts the gateways once more and deletes everything the operator created in
	// that cluster, but for an Istio CRD or the control plane namespace that objects
	// others created need (reason ForeignObjects, until they are gone). A cluster that cannot be reached holds its removal, retried with
	// backoff and reported in its status entry, until it answers; one that is gone for
	// good can be given up with the annotation istio.alibabacloud.com/abandon-clusters.
	// If its remote secret is gone, nothing can be deleted there: the status entry says
	// what was left behind (reason LeftBehind) until the secret is back or the
	// annotation names the cluster. A cluster ID without a remote secret is reported as
	// Connected=False, reason RemoteSecretNotFound.
	// +optional
	// +kubebuilder:validation:MaxProperties=100
	// +kubebuilder:validation:XValidation:rule="self.all(id, size(id) <= 63)",message="cluster IDs (keys of externalIstiodConfigurations) must be at most 63 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(id, id.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="cluster IDs (keys of externalIstiodConfigurations) must be valid label values: letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	ExternalIstiodConfigurations map[string]ExternalIstiodConfiguration `json:"externalIstiodConfigurations,omitempty"`

	// version is the Istio release every remote istiod runs, for example 1.28.3: the tag
	// of the istiod (pilot) image and of the proxyv2 image of sidecars it injects, and the
	// release whose istio-discovery chart the operator follows when rendering istiod.
	// Unset: the release of the mesh control plane's istiod (its image tag), else the
	// operator's --istio-version flag if set, else the release of Istio's chart in the
	// operator. Use the release of the mesh control plane, or one within Istio's
	// supported version skew of it.
	//
	// Must be 1.MINOR.PATCH with an optional pre-release suffix (1.28.0-beta.1), and 1.22
	// or newer. A release newer than this operator build knows is reported as
	// Applied=False, reason RenderFailed. Changing it rolls istiod in every cluster;
	// sidecars get the new proxy when their pods are next created, the operator restarts
	// no workloads.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^1[.][0-9]+[.][0-9]+(-[0-9A-Za-z.-]+)?$')",message="spec.version must be an Istio release such as 1.24.3"
	Version string `json:"version,omitempty"`

	// hub is the registry path Istio's images are pulled from: istiod runs HUB/pilot:VERSION
	// and the sidecars it injects run HUB/proxyv2:VERSION, where VERSION is spec.version.
	// Unset: the operator's --istio-hub flag (docker.io/istio unless changed). Set it to a
	// registry or mirror the data-plane clusters can pull from. Lower-case, without a tag
	// or a trailing slash, for example registry.example.com:5000/istio. Changing it rolls
	// istiod; sidecars use the new hub when their pods are next created.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9._:]*[a-z0-9])?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$')",message="spec.hub must be an image registry path such as docker.io/istio, without a trailing slash or a tag"
	Hub string `json:"hub,omitempty"`

	// meshID is the mesh ID (Istio's global.meshID) the remote istiods and their sidecars
	// use. Set it to the mesh control plane's mesh ID, so that telemetry and multi-cluster
	// features see one mesh. Unset: Istio's default, the trust domain. Must be a label
	// value. A change updates istiod's mesh configuration; sidecars pick it up when their
	// pods are next injected.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",message="spec.meshID must be a valid label value"
	MeshID string `json:"meshID,omitempty"`

	// useDataPlaneKubeAPIForIstioResources is the mesh setting "use the Kubernetes API of
	// data-plane clusters to access Istio resources": Istio resources are written in
	// data-plane clusters and synced to the mesh. Remote control planes need the opposite
	// (Istio configuration is written in the mesh cluster only and mirrored out), so the
	// two are exclusive: true is refused while externalIstiodConfigurations has entries,
	// and entries are refused while it is true. To move to remote control planes, set it
	// to false first, then add entries. Default false.
	// +optional
	UseDataPlaneKubeAPIForIstioResources bool `json:"useDataPlaneKubeAPIForIstioResources,omitempty"`

	// allowIndependentRootCA lets remote istiods start when the mesh cluster has no
	// plugged-in CA (Secret cacerts in the control plane namespace). Normally the operator
	// issues each remote istiod an intermediate CA signed by that mesh CA, so workloads
	// under every control plane trust each other for mTLS, and without it no istiod is
	// applied to the cluster (Applied=False, reason NoMeshCA). With true, each remote istiod signs
	// with a self-signed root of its own instead: its workloads and the rest of the mesh
	// cannot talk mTLS to each other, which MeshTrust=False, reason IndependentRoot,
	// reports. Has no effect while the mesh cluster has cacerts. Default false.
	// +optional
	AllowIndependentRootCA bool `json:"allowIndependentRootCA,omitempty"`

	// trustDomain is the trust domain of workload identities issued by the remote istiods
	// (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT). Set it to the mesh control
	// plane's, or mTLS and authorization policies between the two planes fail.
	// Default cluster.local. A lower-case DNS name. Changing it changes the identity of
	// every workload under a remote control plane.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.trustDomain must be a lower-case DNS name such as cluster.local"
	TrustDomain string `json:"trustDomain,omitempty"`
}

// ExternalIstiodConfiguration is the istiod (remote control plane) the operator runs in
// one data-plane cluster: how many replicas, their resources and scheduling, and how the
// cluster takes part in the mesh (network, access to other clusters, cluster-local
// traffic). istiod is rendered from Istio's istio-discovery chart for spec.version and
// installed in the operator's control plane namespace (istio-system by default). Changing
// any pod setting rolls the istiod Deployment.
type ExternalIstiodConfiguration struct {
	// replicas is the number of istiod pods, 1 to 50, default 2. With more than one, a
	// PodDisruptionBudget keeps at least one available during node drains; with one there
	// is none, so drains are not blocked. The operator owns the count: no
	// HorizontalPodAutoscaler is installed, and a scaled Deployment is set back.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	Replicas *int32 `json:"replicas,omitempty"`

	// resources are the compute requests and limits of the istiod (discovery) container.
	// Unset or empty: Istio's defaults, requests of 500m CPU and 2Gi memory and no limits.
	// A request above its limit is reported as Applied=False, reason RenderFailed. istiod
	// sizes GOMAXPROCS from the CPU limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector restricts istiod pods to nodes with these labels, as a pod's
	// nodeSelector does. Unset: any node.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let istiod pods run on tainted nodes, as a pod's tolerations do; at
	// most 64. The operator always adds Istio's toleration of the cni.istio.io/not-ready
	// taint.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity sets node and pod (anti-)affinity of istiod pods, as a pod's affinity
	// does, for example to spread replicas across zones. Unset: none.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// topologySpreadConstraints spread istiod pods across zones or nodes, as a pod's
	// topologySpreadConstraints do; at most 16. Their labelSelector should match the
	// istiod pods' labels app=istiod, istio=pilot. Unset: none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// priorityClassName is the PriorityClass of istiod pods, for example
	// system-cluster-critical, so that istiod is not preempted by workloads. The class
	// must exist in the data-plane cluster, or the pods are not created. Unset: the
	// cluster's default priority.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="priorityClassName must be the name of a PriorityClass (lower-case DNS name)"
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// mutualAccess lets this cluster's istiod discover the services and endpoints of the
	// mesh's other data-plane clusters (every other cluster with a remote secret in the
	// mesh cluster), so workloads here can reach services there. Off (the default): they
	// see only their own cluster's services; workloads under the mesh control plane still
	// reach this cluster either way.
	//
	// On, the operator creates in each other cluster a ServiceAccount
	// remote-istiod-reader-ID with the rights of Istio's reader role, and gives this
	// cluster's istiod an Istio remote secret istio-remote-secret-OTHER with a token of
	// it (valid 24 hours, renewed after 12), never the operator's own credentials.
	// Turning it off deletes those secrets and reader identities.
	// +optional
	MutualAccess bool `json:"mutualAccess,omitempty"`

	// keepTrafficInCluster keeps requests from this cluster's sidecars to the given hosts
	// on endpoints inside this cluster (Istio's MeshConfig serviceSettings with
	// clusterLocal: true). {} keeps traffic to every host local; {hosts: [...]} only to
	// those. Unset: requests go to endpoints in every cluster this istiod discovers, its
	// own and, with mutualAccess, the others. The mesh control plane and other clusters
	// are not affected.
	// +optional
	KeepTrafficInCluster *TrafficRetention `json:"keepTrafficInCluster,omitempty"`

	// network is this cluster's network in a multi-network mesh: the name the mesh
	// control plane uses for it (topology.istio.io/network), a label value. The operator
	// labels the control plane namespace with it, puts the cluster's endpoints on it in
	// istiod's meshNetworks and sets it in sidecars injected from then on. A different
	// network label that someone else set on the namespace is left alone and reported as
	// Applied=False, reason ObjectNotOwned. Unset: single network; removing it removes
	// the label again.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",message="network must be a valid label value"
	Network string `json:"network,omitempty"`
}

// TrafficRetention says which hosts' traffic stays inside the data-plane cluster.
type TrafficRetention struct {
	// Hosts are checked by a pattern, not a CEL rule with a friendlier message: a rule
	// over every host of every entry exceeds the API server's cost budget.

	// hosts whose traffic stays in the cluster, as Istio service hostnames: fully
	// qualified (reviews.default.svc.cluster.local) or with a leading wildcard
	// (*.bookinfo.svc.cluster.local), lower case. Empty or unset: every host. At most
	// 64, each at most 253 characters, no duplicates.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
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
	// configuration object of the mesh cluster it can hold (objects of namespaces it
	// lacks are named in the message), and no copy whose source is gone, except those a
	// deletion budget holds back for a later pass.
	ConditionConfigMirrored = "ConfigMirrored"
	// ConditionMeshTrust is True when the cluster's istiod signs with an intermediate
	// CA of the mesh CA.
	ConditionMeshTrust = "MeshTrust"
	// ConditionSwitched is True when the cluster's sidecar injection is served by its
	// own istiod.
	ConditionSwitched = "Switched"
	// ConditionMutualAccess is True when the cluster's istiod holds a current remote
	// secret for every other connected cluster (only with mutualAccess). It does not
	// count towards Ready: a peer that cannot be reached costs discovery of that peer,
	// not this cluster's control plane.
	ConditionMutualAccess = "MutualAccess"
	// ConditionTrustDomainChanged is True, for the generation that did it, when the trust
	// domain of a switched cluster's istiod changed: every workload identity there
	// changes as its sidecars get new certificates. A warning, not part of Ready.
	ConditionTrustDomainChanged = "TrustDomainChanged"
)

// ClusterStatus is how far the operator got in one data-plane cluster: its conditions,
// istiod's replicas, what was last applied, and the switch of sidecar injection.
type ClusterStatus struct {
	// clusterID is the data-plane cluster this entry describes: its key in
	// spec.externalIstiodConfigurations and the data key of its Istio remote secret.
	ClusterID string `json:"clusterID"`

	// observedGeneration is the metadata.generation of the ASMMeshConfig that this entry
	// was last reconciled for. While it is lower than metadata.generation, the cluster
	// has not yet caught up with the latest spec.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions of this cluster, each with a reason and a message saying what to do:
	// Connected (its API server answers through the remote secret's kubeconfig), MeshTrust
	// (istiod signs with an intermediate CA of the mesh CA), Applied (every istiod object
	// is in the cluster), ConfigMirrored (the cluster holds a copy of every Istio
	// configuration object of the mesh cluster), IstiodReady (the istiod Deployment is
	// available), Switched (sidecar injection is served by the local istiod) and Ready
	// (Connected, Applied, ConfigMirrored, IstiodReady and Switched are all True; if
	// not, it carries the reason and message of the first that is not).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// desiredReplicas is the number of istiod replicas the entry asks for (its replicas,
	// default 2).
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas,omitempty"`

	// readyReplicas is the number of ready istiod pods, as the istiod Deployment in the
	// cluster reports it.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// appliedHash identifies the set of istiod objects (including its cacerts) last
	// applied to the cluster in full. It changes whenever what the operator renders
	// changes: a spec edit, a new Istio version, a renewed intermediate CA.
	// +optional
	AppliedHash string `json:"appliedHash,omitempty"`

	// trustDomain is the trust domain in the mesh config last applied to the cluster's
	// istiod (spec.trustDomain, else the mesh control plane's): the one its workload
	// certificates name. A change while the cluster is switched changes every workload
	// identity there at once; the operator warns (TrustDomainChanged) but goes ahead.
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// mirroredObjects is the number of Istio configuration objects (VirtualServices,
	// DestinationRules, AuthorizationPolicies and the like) of the mesh cluster that are
	// copied into this cluster. Objects whose namespace does not exist in the cluster are
	// not copied and are named in the ConfigMirrored condition.
	// +optional
	MirroredObjects int32 `json:"mirroredObjects,omitempty"`

	// switchedAt is when the cluster's sidecar injection moved to its own istiod, as
	// recorded in the ConfigMap remote-istiod-operator-switch of its control plane
	// namespace. Unset until the switch.
	// +optional
	SwitchedAt *metav1.Time `json:"switchedAt,omitempty"`

	// gatewaysRestarted lists, as namespace/name, the Istio gateway Deployments of the
	// cluster (labels istio=ingressgateway, egressgateway or eastwestgateway, and Gateway
	// API gateways deployed by istiod), each restarted once for the current switch so
	// that its pods connect to the local istiod.
	// +optional
	// +listType=atomic
	GatewaysRestarted []string `json:"gatewaysRestarted,omitempty"`

	// intermediateCAExpiresAt is when the intermediate CA the operator last issued for
	// the cluster's istiod (its cacerts Secret there) expires. It is kept here because
	// the mesh cluster holds no copy of that Secret: for a cluster that cannot be
	// reached, or was abandoned, it says until when that istiod can still sign
	// workload certificates that the mesh trusts. Unset where the operator issued none.
	// +optional
	IntermediateCAExpiresAt *metav1.Time `json:"intermediateCAExpiresAt,omitempty"`

	// istioVersion is the Istio release of the istiod last applied to the cluster. It
	// lags behind spec.version while an upgrade has not been applied.
	// +optional
	IstioVersion string `json:"istioVersion,omitempty"`

	// meshSettings says where the cluster's istiod got its injector configuration, its
	// mesh configuration and its Istio version: copied from the mesh control plane's
	// ConfigMaps istio-sidecar-injector and istio in the mesh cluster (of the revision
	// the cluster's injector serves, with only the per-cluster fields replaced), or
	// rendered from Istio's istio-discovery chart in the operator when the mesh cluster
	// has no such ConfigMap; and spec.version, the image of the mesh's istiod
	// Deployment, the operator's --istio-version flag, or the chart's release.
	// +optional
	MeshSettings string `json:"meshSettings,omitempty"`
}

// ASMMeshConfigStatus is the observed state of the remote control planes: kstatus
// conditions for the whole object, counts of ready control planes, and one entry per
// data-plane cluster.
type ASMMeshConfigStatus struct {
	// observedGeneration is the metadata.generation of the spec that the conditions and
	// counts describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions follow kstatus, so kubectl wait --for=condition=Ready works: Ready is
	// True when every cluster of spec.externalIstiodConfigurations is Ready for the
	// current generation; Reconciling is True while the operator is still working on
	// some; Stalled is True when a cluster needs a person to act, for example on a
	// missing remote secret or mesh CA, refused objects or conflicting settings. Messages
	// name the clusters concerned. An ASMMeshConfig not named default gets Ready=False
	// and Stalled=True, reason NotDefault.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// controlPlanes reads "ready/desired", for example 1/2: readyControlPlanes and
	// desiredControlPlanes, as kubectl get shows them.
	// +optional
	ControlPlanes string `json:"controlPlanes,omitempty"`

	// readyControlPlanes is the number of clusters whose entry in clusters is Ready for
	// the current generation: istiod running and sidecar injection switched to it.
	// +optional
	ReadyControlPlanes int32 `json:"readyControlPlanes,omitempty"`

	// desiredControlPlanes is the number of entries in spec.externalIstiodConfigurations.
	// +optional
	DesiredControlPlanes int32 `json:"desiredControlPlanes,omitempty"`

	// clusters has one entry per data-plane cluster, keyed by clusterID: every cluster of
	// spec.externalIstiodConfigurations, and a removed one until the operator has cleaned
	// it up.
	// +optional
	// +listType=map
	// +listMapKey=clusterID
	Clusters []ClusterStatus `json:"clusters,omitempty"`
}

// ASMMeshConfig runs Istio control planes (istiod) inside data-plane clusters of a
// multi-cluster mesh, managed from the mesh cluster, where this object lives. Each such
// remote control plane serves the sidecars of its own cluster, with the mesh's Istio
// configuration mirrored from the mesh cluster, so that the cluster keeps working when its
// link to the mesh cluster is slow or down. The object is cluster-scoped, and only the one
// named "default" takes effect.
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

	// spec says which data-plane clusters get their own istiod, and with what settings.
	// +optional
	Spec ASMMeshConfigSpec `json:"spec,omitempty"`
	// status is written by the operator: overall conditions and one entry per
	// data-plane cluster.
	// +optional
	Status ASMMeshConfigStatus `json:"status,omitempty"`
}

// ASMMeshConfigList is a list of ASMMeshConfig objects.
// +kubebuilder:object:root=true
type ASMMeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ASMMeshConfig `json:"items"`
}
