package apply

import "k8s.io/apimachinery/pkg/runtime/schema"

// Stages of a write. The API server needs no order among most objects: a RoleBinding
// may name a Role that comes later, a Deployment a ServiceAccount. What needs one is
// what runs or admits: a pod reads its ConfigMaps, Secrets and ServiceAccount when it
// starts (istiod takes a self-signed CA if cacerts is not there yet), and a webhook
// should not point at a Service before its workload is written. So definitions come
// first, then configuration, then workloads, then admission; the objects of a stage
// go side by side. Helm installs kind by kind in the same broad order
// (helm.sh/helm/v4 pkg/release/v1/util/kind_sorter.go, written by pkg/kube batchPerform), one round trip per kind; stages cost one per
// stage.
const (
	stageDefinitions = iota
	stageConfiguration
	stageWorkloads
	stageAdmission
)

// writeStage is the stage of a kind.
func writeStage(gvk schema.GroupVersionKind) int {
	switch gvk.GroupKind() {
	case schema.GroupKind{Kind: "Namespace"}, schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		return stageDefinitions
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "DaemonSet"},
		schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"},
		schema.GroupKind{Group: "batch", Kind: "Job"}, schema.GroupKind{Group: "batch", Kind: "CronJob"},
		schema.GroupKind{Kind: "Pod"}:
		return stageWorkloads
	case schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"},
		schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"},
		schema.GroupKind{Group: "apiregistration.k8s.io", Kind: "APIService"}:
		return stageAdmission
	default:
		return stageConfiguration
	}
}
