package switching

import (
	"istio.io/api/annotation"
	corev1 "k8s.io/api/core/v1"
)

// LeadAnnotation, on a data-plane cluster's control plane namespace, lists the
// clusters whose istiod may lead that cluster: only an external istiod whose cluster
// ID is listed (or "*") runs the namespace controller (istio-ca-root-cert) and the
// injection webhook's caBundle patcher there. An istiod always leads its own cluster
// and never reads the annotation for it. istiod reads it when it connects to the
// cluster, not continuously.
var LeadAnnotation = annotation.TopologyControlPlaneClusters.Name

// RecordLead keeps the annotation as it is before the switch.
func RecordLead(ns *corev1.Namespace) *AnnotationRecord {
	v, ok := ns.Annotations[LeadAnnotation]
	return &AnnotationRecord{Present: ok, Value: v}
}

// TakeLead names the cluster's own istiod as the only control plane that leads it, so
// a mesh istiod that reconnects stops writing there. It reports whether anything
// changed.
func TakeLead(ns *corev1.Namespace, clusterID string) bool {
	if v, ok := ns.Annotations[LeadAnnotation]; ok && v == clusterID {
		return false
	}
	if ns.Annotations == nil {
		ns.Annotations = map[string]string{}
	}
	ns.Annotations[LeadAnnotation] = clusterID
	return true
}

// RestoreLead puts the annotation back as recorded; a nil record leaves it alone.
func RestoreLead(ns *corev1.Namespace, rec *AnnotationRecord) bool {
	if rec == nil {
		return false
	}
	v, ok := ns.Annotations[LeadAnnotation]
	switch {
	case rec.Present && (!ok || v != rec.Value):
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[LeadAnnotation] = rec.Value
		return true
	case !rec.Present && ok:
		delete(ns.Annotations, LeadAnnotation)
		return true
	}
	return false
}
