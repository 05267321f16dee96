package mirror

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Skipped is a source object that gets no copy because its namespace does not exist in
// the cluster. Istio configuration in a namespace applies to the workloads of that
// namespace, and a namespace that does not exist has none, so most such objects
// configure nothing in the cluster. Visible ones do: see Place.
type Skipped struct {
	Kind, Namespace, Name string
	// Visible says the object configures workloads of other namespaces too, so the
	// cluster's istiod is missing it.
	Visible bool
	// Why says how it is visible.
	Why string
}

func (s Skipped) String() string { return fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name) }

// exportable are the kinds whose objects are visible to the sidecars of every namespace
// unless spec.exportTo says otherwise (Istio's default export is "*").
var exportable = map[string]bool{"VirtualService": true, "DestinationRule": true, "ServiceEntry": true}

// Place turns the mesh's objects into the copies for one cluster, keeping only those
// whose namespace exists there (cluster-scoped objects always). Of the objects it skips,
// it marks as Visible those that configure other namespaces: a VirtualService,
// DestinationRule or ServiceEntry whose exportTo is unset or names another namespace
// ("*" or a name other than its own, "." and "~"), and any Gateway, whose selector
// picks gateway pods in every namespace by default.
func Place(sources []unstructured.Unstructured, namespaces map[string]bool, ownership map[string]string) ([]client.Object, []Skipped) {
	var out []client.Object
	var skipped []Skipped
	for i := range sources {
		src := &sources[i]
		if ns := src.GetNamespace(); ns != "" && !namespaces[ns] {
			s := Skipped{Kind: src.GetKind(), Namespace: ns, Name: src.GetName()}
			s.Why, s.Visible = visibility(src)
			skipped = append(skipped, s)
			continue
		}
		out = append(out, Copy(src, ownership))
	}
	return out, skipped
}

func visibility(src *unstructured.Unstructured) (string, bool) {
	if src.GetKind() == "Gateway" {
		return "selects gateways of every namespace", true
	}
	if !exportable[src.GetKind()] {
		return "", false
	}
	exportTo, _, _ := unstructured.NestedStringSlice(src.Object, "spec", "exportTo")
	if len(exportTo) == 0 {
		return "exported to all namespaces by default", true
	}
	others := slices.DeleteFunc(exportTo, func(to string) bool { return to == "." || to == "~" || to == src.GetNamespace() })
	if len(others) > 0 {
		return fmt.Sprintf("exportTo %v", others), true
	}
	return "", false
}
