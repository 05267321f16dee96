package switching

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// AddressService is the Service that is a data-plane cluster's control plane address
// in Istio's remote profile: sidecars are given istiod.<ns>.svc:15012 as discovery
// address, and the profile's injector and validator call this Service too.
const AddressService = "istiod"

// LocalSelector selects the pods of the local istiod, as the rendered Deployment
// labels them.
var LocalSelector = map[string]string{"app": "istiod", "istio": "pilot"}

// Flavours of a cluster's control plane address, as Istio's remote profile installs
// it (istio-discovery chart, remote-istiod-service.yaml and its endpoints templates).
const (
	// FlavourNone: there is no Service istiod; the operator renders its own.
	FlavourNone = "None"
	// FlavourExternalName: global.remotePilotAddress is a host name.
	FlavourExternalName = "ExternalName"
	// FlavourEndpointSlice: an IP, with an EndpointSlice (Istio 1.28 and later).
	FlavourEndpointSlice = "EndpointSlice"
	// FlavourEndpoints: an IP, with a core Endpoints object (Istio 1.22 to 1.27).
	FlavourEndpoints = "Endpoints"
)

// serviceNameLabel ties an EndpointSlice to its Service.
const serviceNameLabel = discoveryv1.LabelServiceName

// AddressRecord is the cluster's control plane address as it was before the switch:
// the fields of Service istiod the switch changes, and the endpoints it takes out of
// play, so both can be given back exactly.
type AddressRecord struct {
	Flavour      string             `json:"flavour"`
	UID          types.UID          `json:"uid"`
	Type         corev1.ServiceType `json:"type"`
	ExternalName string             `json:"externalName,omitempty"`
	Selector     map[string]string  `json:"selector,omitempty"`
	// EndpointSlices labelled for the Service; the switch removes that label from
	// them so they no longer split traffic with the local istiod's pods.
	EndpointSlices []ObjectRecord `json:"endpointSlices,omitempty"`
	// Endpoints is the core Endpoints object of the Service, whose addresses the
	// cluster's endpoints controller replaces once the Service has a selector.
	Endpoints *EndpointsRecord `json:"endpoints,omitempty"`
}

// ObjectRecord names one object by name and uid.
type ObjectRecord struct {
	Name string    `json:"name"`
	UID  types.UID `json:"uid"`
}

// EndpointsRecord is a core Endpoints object as it was.
type EndpointsRecord struct {
	UID         types.UID               `json:"uid"`
	Labels      map[string]string       `json:"labels,omitempty"`
	Annotations map[string]string       `json:"annotations,omitempty"`
	Subsets     []corev1.EndpointSubset `json:"subsets,omitempty"` //nolint:staticcheck // Istio 1.22-1.27 write core Endpoints
}

// controllerManaged are the managers of EndpointSlices that Kubernetes itself keeps:
// they follow the Service on their own and are never the switch's to change.
var controllerManaged = map[string]bool{"endpointslice-controller.k8s.io": true, "endpointslicemirroring-controller.k8s.io": true}

// ForeignSlices are the EndpointSlices of Service istiod that somebody wrote by hand
// (the remote profile's), leaving out those Kubernetes' controllers keep.
func ForeignSlices(slices []discoveryv1.EndpointSlice) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, s := range slices {
		if s.Labels[serviceNameLabel] == AddressService && !controllerManaged[s.Labels[discoveryv1.LabelManagedBy]] {
			out = append(out, s)
		}
	}
	return out
}

// ClassifyAddress tells the flavour of a foreign Service istiod and its endpoints
// (slices, from ForeignSlices, and endpoints may be nil). A Service that already selects pods is another
// control plane, which the switch must not take over: it returns an error saying so.
func ClassifyAddress(svc *corev1.Service, slices []discoveryv1.EndpointSlice, endpoints *corev1.Endpoints) (string, error) { //nolint:staticcheck // Istio 1.22-1.27 write core Endpoints
	if svc == nil {
		return FlavourNone, nil
	}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return FlavourExternalName, nil
	case len(svc.Spec.Selector) > 0:
		return "", fmt.Errorf("the Service %s/%s selects pods (%v): the cluster already runs a control plane of its own, not Istio's remote profile; "+
			"the operator does not take it over", svc.Namespace, svc.Name, svc.Spec.Selector)
	case len(slices) > 0:
		return FlavourEndpointSlice, nil
	case endpoints != nil:
		return FlavourEndpoints, nil
	}
	return "", fmt.Errorf("the Service %s/%s has neither a selector, an external name nor endpoints: it leads nowhere, "+
		"so it is not Istio's remote profile; fix or remove it", svc.Namespace, svc.Name)
}

// RecordAddress keeps what SwitchAddress is about to change.
func RecordAddress(flavour string, svc *corev1.Service, slices []discoveryv1.EndpointSlice, endpoints *corev1.Endpoints) *AddressRecord { //nolint:staticcheck // see ClassifyAddress
	rec := &AddressRecord{Flavour: flavour, UID: svc.UID, Type: svc.Spec.Type, ExternalName: svc.Spec.ExternalName,
		Selector: maps.Clone(svc.Spec.Selector)}
	for _, s := range slices {
		rec.EndpointSlices = append(rec.EndpointSlices, ObjectRecord{Name: s.Name, UID: s.UID})
	}
	if endpoints != nil {
		rec.Endpoints = &EndpointsRecord{UID: endpoints.UID, Labels: maps.Clone(endpoints.Labels),
			Annotations: maps.Clone(endpoints.Annotations), Subsets: endpoints.DeepCopy().Subsets}
	}
	return rec
}

// ServicePatch is a JSON merge patch of the only Service fields a switch changes.
type ServicePatch struct {
	Spec ServicePatchSpec `json:"spec"`
}

// ServicePatchSpec: a nil ExternalName or Selector clears the field.
type ServicePatchSpec struct {
	Type         corev1.ServiceType `json:"type"`
	ExternalName *string            `json:"externalName"`
	Selector     map[string]string  `json:"selector"`
}

// ToLocal is the patch that makes the address lead to the local istiod's pods. An
// ExternalName Service becomes a ClusterIP Service (the API server allocates the IP),
// with externalName cleared explicitly.
func ToLocal() ServicePatch {
	return ServicePatch{Spec: ServicePatchSpec{Type: corev1.ServiceTypeClusterIP, Selector: maps.Clone(LocalSelector)}}
}

// Back is the patch that gives the address back as recorded (an ExternalName Service
// loses the ClusterIP it was given, which the API server drops on its own).
func (rec *AddressRecord) Back() ServicePatch {
	p := ServicePatch{Spec: ServicePatchSpec{Type: rec.Type, Selector: maps.Clone(rec.Selector)}}
	if rec.ExternalName != "" {
		p.Spec.ExternalName = &rec.ExternalName
	}
	return p
}

// AddressState says where a live Service istiod leads compared with a record.
type AddressState int

const (
	// AddressAsRecorded: as before the switch.
	AddressAsRecorded AddressState = iota
	// AddressLocal: to the local istiod, as the switch left it.
	AddressLocal
	// AddressChanged: somewhere else; somebody changed it since the switch.
	AddressChanged
)

// StateOf compares the switch's fields of a live Service with the record.
func (rec *AddressRecord) StateOf(svc *corev1.Service) AddressState {
	s := svc.Spec
	switch {
	case s.Type == rec.Type && s.ExternalName == rec.ExternalName && equality.Semantic.DeepEqual(nonEmpty(s.Selector), nonEmpty(rec.Selector)):
		return AddressAsRecorded
	case s.Type == corev1.ServiceTypeClusterIP && s.ExternalName == "" && equality.Semantic.DeepEqual(s.Selector, LocalSelector):
		return AddressLocal
	}
	return AddressChanged
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// TakeSliceOutOfPlay removes the label that ties an EndpointSlice to Service istiod;
// it reports false when the slice no longer has it.
func TakeSliceOutOfPlay(slice *discoveryv1.EndpointSlice) bool {
	if slice.Labels[serviceNameLabel] != AddressService {
		return false
	}
	delete(slice.Labels, serviceNameLabel)
	return true
}

// PutSliceBack ties a recorded EndpointSlice to Service istiod again.
func PutSliceBack(slice *discoveryv1.EndpointSlice) bool {
	if slice.Labels[serviceNameLabel] == AddressService {
		return false
	}
	if slice.Labels == nil {
		slice.Labels = map[string]string{}
	}
	slice.Labels[serviceNameLabel] = AddressService
	return true
}

// RestoreEndpoints gives a core Endpoints object its recorded addresses, labels and
// annotations back; it reports whether anything changed.
func (r *EndpointsRecord) RestoreEndpoints(ep *corev1.Endpoints) bool { //nolint:staticcheck // see ClassifyAddress
	if equality.Semantic.DeepEqual(nonEmpty(ep.Labels), nonEmpty(r.Labels)) &&
		equality.Semantic.DeepEqual(nonEmpty(ep.Annotations), nonEmpty(r.Annotations)) &&
		equality.Semantic.DeepEqual(ep.Subsets, r.Subsets) {
		return false
	}
	ep.Labels, ep.Annotations, ep.Subsets = maps.Clone(r.Labels), maps.Clone(r.Annotations), r.DeepCopySubsets()
	return true
}

// DeepCopySubsets copies the recorded subsets.
func (r *EndpointsRecord) DeepCopySubsets() []corev1.EndpointSubset { //nolint:staticcheck // see Subsets
	out := make([]corev1.EndpointSubset, len(r.Subsets)) //nolint:staticcheck // see Subsets
	for i := range r.Subsets {
		r.Subsets[i].DeepCopyInto(&out[i])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
