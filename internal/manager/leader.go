package manager

import "os"

// LeaderElectionID names the Lease the replicas elect their leader with.
const LeaderElectionID = "remote-istiod-operator.istio.alibabacloud.com"

// The lease lives in the operator's own namespace, not in the control plane's, where
// istiod keeps its own leader leases: RBAC cannot limit create by name, so rights on
// leases in istio-system would reach istiod's. The Role is generated for config/rbac's
// namespace; the chart puts it into the release's.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=remote-istiod-operator-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=remote-istiod-operator-system,resources=leases,resourceNames=remote-istiod-operator.istio.alibabacloud.com,verbs=get;update

// PodNamespaceEnv is set from the downward API (metadata.namespace) by the chart and
// config/manager.
const PodNamespaceEnv = "POD_NAMESPACE"

// DefaultLeaderElectionNamespace is the operator's own namespace when it runs in a pod;
// empty elsewhere, where controller-runtime then asks for --leader-election-namespace.
func DefaultLeaderElectionNamespace() string { return os.Getenv(PodNamespaceEnv) }
