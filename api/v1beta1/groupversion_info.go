// Package v1beta1 is the operator's API, group istio.alibabacloud.com: the cluster-scoped
// ASMMeshConfig named "default", which says which data-plane clusters of the mesh get
// their own istiod, with what settings, and reports how far each one got.
// +kubebuilder:object:generate=true
// +groupName=istio.alibabacloud.com
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "istio.alibabacloud.com", Version: "v1beta1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ASMMeshConfig{}, &ASMMeshConfigList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
