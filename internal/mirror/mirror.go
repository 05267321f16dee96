// Package mirror copies the mesh's Istio configuration, authored in the mesh cluster
// only, into the data-plane clusters that run their own istiod. It is pure: it turns
// source objects into the copies a cluster should hold; applying and pruning them is the
// applier's job.
package mirror

import (
	"bytes"
	_ "embed"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// istioCRDs are the CustomResourceDefinitions of the istio.io/api module in go.mod
// (`make istio-crds` copies them).
//
//go:embed crds/istio.yaml
var istioCRDs []byte

// CRDGVK is the kind of a CustomResourceDefinition.
var CRDGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// MirroredLabel marks copies, so the copy can be told from an object of the cluster.
const MirroredLabel = "istio.alibabacloud.com/mirrored-from"

var (
	crds  []*unstructured.Unstructured
	kinds []schema.GroupVersionKind
)

func init() {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(istioCRDs), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crds = append(crds, u)
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
		for _, v := range versions {
			version, _ := v.(map[string]any)
			if stored, _ := version["storage"].(bool); stored {
				kinds = append(kinds, schema.GroupVersionKind{Group: group, Version: version["name"].(string), Kind: kind})
			}
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].String() < kinds[j].String() })
}

// Kinds are every Istio configuration kind, at its storage version.
func Kinds() []schema.GroupVersionKind { return append([]schema.GroupVersionKind(nil), kinds...) }

// CRDs returns fresh copies of Istio's CustomResourceDefinitions.
func CRDs() []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, 0, len(crds))
	for _, c := range crds {
		out = append(out, c.DeepCopy())
	}
	return out
}

// Copy is what the data-plane cluster holds for one source object: its name,
// namespace, labels, annotations and spec, plus ownership labels; never its status,
// UID or other server-set fields.
func Copy(src *unstructured.Unstructured, ownership map[string]string) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range src.Object {
		if k != "metadata" && k != "status" {
			out.Object[k] = v
		}
	}
	out = out.DeepCopy()
	out.SetName(src.GetName())
	out.SetNamespace(src.GetNamespace())
	labels := map[string]string{}
	for k, v := range src.GetLabels() {
		labels[k] = v
	}
	for k, v := range ownership {
		labels[k] = v
	}
	labels[MirroredLabel] = "mesh"
	out.SetLabels(labels)
	annotations := map[string]string{}
	for k, v := range src.GetAnnotations() {
		if k != "kubectl.kubernetes.io/last-applied-configuration" {
			annotations[k] = v
		}
	}
	if len(annotations) > 0 {
		out.SetAnnotations(annotations)
	}
	return out
}

// Copies turns the mesh's objects into the copies for one cluster, keeping only those
// whose namespace exists there; it names those it skipped for that reason.
func Copies(sources []unstructured.Unstructured, namespaces map[string]bool, ownership map[string]string) ([]client.Object, []string) {
	out, skipped := Place(sources, namespaces, ownership)
	names := make([]string, 0, len(skipped))
	for _, s := range skipped {
		names = append(names, s.String())
	}
	return out, names
}

// Summary names up to three skipped objects.
func Summary(skipped []string) string { return List(skipped, 3) }

// List names up to limit items, then says how many more there are.
func List(items []string, limit int) string {
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:limit], ", "), len(items)-limit)
}
