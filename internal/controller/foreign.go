package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// ReasonForeignObjects: the removal left an Istio CRD the operator installed, or the
// control plane namespace it created, because objects the operator did not create are
// of that kind or in that namespace, and deleting it would delete them.
const ReasonForeignObjects = "ForeignObjects"

// foreignCheckTimeout bounds the look into the namespace: discovery and one List per
// kind.
const foreignCheckTimeout = 30 * time.Second

// removeCRDs deletes the Istio CRDs the operator installed in the cluster, except one
// that has custom resources the operator did not create. kept describes what it left
// and why; remaining counts CRDs still being deleted.
func (r *ClusterReconciler) removeCRDs(ctx context.Context, w *clusterWork) (kept []string, remaining int, err error) {
	kinds := map[string]schema.GroupVersionKind{}
	for _, gvk := range mirror.Kinds() {
		for _, crd := range mirror.CRDs() {
			group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
			if group == gvk.Group && kind == gvk.Kind {
				kinds[crd.GetName()] = gvk
			}
		}
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(mirror.CRDGVK.GroupVersion().WithKind("CustomResourceDefinitionList"))
	if err := w.remote.GetAPIReader().List(ctx, list, client.MatchingLabels(ownership(w.id).Labels)); err != nil {
		return nil, 0, fmt.Errorf("listing CRDs: %w", err)
	}
	for i := range list.Items {
		crd := &list.Items[i]
		if crd.DeletionTimestamp != nil {
			remaining++
			continue
		}
		gvk, known := kinds[crd.Name]
		if !known {
			kept = append(kept, fmt.Sprintf("CustomResourceDefinition %s (not one of Istio's the operator knows)", crd.Name))
			continue
		}
		foreign, err := foreignOfKind(ctx, w.remote.GetAPIReader(), gvk)
		if err != nil {
			return nil, 0, err
		}
		if foreign != "" {
			kept = append(kept, fmt.Sprintf("CustomResourceDefinition %s (%s)", crd.Name, foreign))
			continue
		}
		crd.SetGroupVersionKind(mirror.CRDGVK)
		if err := w.remote.GetClient().Delete(ctx, crd, client.Preconditions{UID: &crd.UID}); client.IgnoreNotFound(err) != nil {
			return nil, 0, fmt.Errorf("deleting CustomResourceDefinition %s: %w", crd.Name, err)
		}
		remaining++
	}
	return kept, remaining, nil
}

// foreignOfKind describes the custom resources of gvk that the operator did not create,
// "" when there are none. The operator's own copies are gone by now.
func foreignOfKind(ctx context.Context, reader client.Reader, gvk schema.GroupVersionKind) (string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := reader.List(ctx, list); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return "", nil
		}
		return "", fmt.Errorf("listing %s: %w", gvk.Kind, err)
	}
	var names []string
	for i := range list.Items {
		if list.Items[i].Labels[render.ManagedByLabel] != render.ManagedByValue {
			names = append(names, list.Items[i].Namespace+"/"+list.Items[i].Name)
		}
	}
	return describeForeign(names, gvk.Kind), nil
}

func describeForeign(names []string, what string) string {
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	const shown = 3
	more := ""
	if len(names) > shown {
		more = fmt.Sprintf(" and %d more", len(names)-shown)
		names = names[:shown]
	}
	return fmt.Sprintf("%s the operator did not create: %s%s", what, strings.Join(names, ", "), more)
}

// deleteOwnNamespace deletes the control plane namespace if the operator created it and
// nobody else put anything in it. kept describes why it stays, "" when it went or was
// never the operator's.
func (r *ClusterReconciler) deleteOwnNamespace(ctx context.Context, w *clusterWork) (kept string, err error) {
	ns := &corev1.Namespace{}
	err = w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, ns)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if ns.Labels[render.ClusterIDLabel] != w.id || ns.Labels[render.ManagedByLabel] != render.ManagedByValue {
		return "", nil // the namespace was there before the operator came
	}
	if ns.DeletionTimestamp != nil {
		return "", nil
	}
	foreign, err := foreignInNamespace(ctx, w.remote.GetConfig(), ns.Name)
	if err != nil {
		return "", err
	}
	if foreign != "" {
		return fmt.Sprintf("namespace %s (%s)", ns.Name, foreign), nil
	}
	return "", client.IgnoreNotFound(w.remote.GetClient().Delete(ctx, ns, client.Preconditions{UID: &ns.UID}))
}

// Kinds whose objects in the namespace are bookkeeping of the API server or of
// controllers (events, endpoints of Services, leader leases), never what keeps a
// namespace in use.
var bookkeepingKinds = map[schema.GroupKind]bool{
	{Kind: "Event"}: true, {Group: "events.k8s.io", Kind: "Event"}: true,
	{Kind: "Endpoints"}: true, {Group: "discovery.k8s.io", Kind: "EndpointSlice"}: true,
	{Group: "coordination.k8s.io", Kind: "Lease"}: true,
}

// leaderAnnotation marks a ConfigMap that holds a leader election record (istiod's).
const leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"

// ownedByNobodyElse tells objects that are not someone else's: the operator's own (still
// being deleted), objects with an owner (they go with it), and those Kubernetes and
// Istio put into every namespace.
func ownedByNobodyElse(gk schema.GroupKind, o *metav1.PartialObjectMetadata) bool {
	switch {
	case o.Labels[render.ManagedByLabel] == render.ManagedByValue, len(o.OwnerReferences) > 0, o.DeletionTimestamp != nil:
		return true
	case gk == schema.GroupKind{Kind: "ConfigMap"}:
		_, leader := o.Annotations[leaderAnnotation]
		return leader || o.Name == "kube-root-ca.crt" || o.Name == rootCertConfigMap
	case gk == schema.GroupKind{Kind: "ServiceAccount"}:
		return o.Name == "default"
	}
	return false
}

// foreignInNamespace describes what others put in the namespace, "" when nothing: every
// listable namespaced kind the cluster serves is listed there (metadata only). A kind
// it cannot list counts as foreign: what it cannot see, it must not delete.
func foreignInNamespace(ctx context.Context, cfg *rest.Config, namespace string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, foreignCheckTimeout)
	defer cancel()
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = foreignCheckTimeout
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", err
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	lists, err := disco.ServerPreferredNamespacedResources()
	var unlisted []string
	if err != nil {
		var failed *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &failed) {
			return "", fmt.Errorf("discovering the kinds of namespace %s: %w", namespace, err)
		}
		for gv := range failed.Groups {
			unlisted = append(unlisted, gv.String())
		}
	}
	var found []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			gk := schema.GroupKind{Group: gv.Group, Kind: res.Kind}
			if strings.Contains(res.Name, "/") || bookkeepingKinds[gk] || !hasVerb(res.Verbs, "list") {
				continue
			}
			items, err := mc.Resource(gv.WithResource(res.Name)).Namespace(namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				unlisted = append(unlisted, gk.String())
				continue
			}
			for i := range items.Items {
				if !ownedByNobodyElse(gk, &items.Items[i]) {
					found = append(found, res.Kind+" "+items.Items[i].Name)
				}
			}
		}
	}
	out := describeForeign(found, "objects")
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		out = strings.TrimPrefix(out+"; ", "; ") + "kinds it could not list there: " + strings.Join(unlisted, ", ")
	}
	return out, nil
}

func hasVerb(verbs metav1.Verbs, verb string) bool {
	for _, v := range verbs {
		if v == verb {
			return true
		}
	}
	return false
}
