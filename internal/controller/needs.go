package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// clusterNeeds are the clusters the operator must reach: every entry; every cluster
// with a status entry or a switch record copy, until its removal is done; and, while
// any entry has mutual access or a cluster may still hold the remote secrets it gave
// out (its MutualAccess condition, removed by the pass that revokes them), every
// cluster of the mesh, as mutual access gives an entry's istiod every other cluster
// with a remote secret. mc is nil when there is no ASMMeshConfig.
func clusterNeeds(mc *v1beta1.ASMMeshConfig, records []string) remotecluster.Needs {
	needs := remotecluster.Needs{IDs: map[string]bool{}}
	for _, id := range records {
		needs.IDs[id] = true
	}
	if mc == nil {
		return needs
	}
	for id, e := range mc.Spec.ExternalIstiodConfigurations {
		needs.IDs[id] = true
		if e.MutualAccess && mc.DeletionTimestamp == nil {
			needs.All = true
		}
	}
	for _, cs := range mc.Status.Clusters {
		needs.IDs[cs.ClusterID] = true
		for _, c := range cs.Conditions {
			if c.Type == v1beta1.ConditionMutualAccess {
				needs.All = true
			}
		}
	}
	return needs
}

// recordCopyHolders are the cluster IDs whose switch record the mesh cluster keeps a
// copy of.
func recordCopyHolders(ctx context.Context, c client.Reader, namespace string) ([]string, error) {
	list := &corev1.ConfigMapList{}
	if err := c.List(ctx, list, client.InNamespace(namespace),
		client.MatchingLabels{render.ManagedByLabel: render.ManagedByValue}, client.HasLabels{render.ClusterIDLabel}); err != nil {
		return nil, err
	}
	var ids []string
	for _, cm := range list.Items {
		if id := cm.Labels[render.ClusterIDLabel]; cm.Name == switching.CopyName(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// updateNeeds tells the provider which clusters to connect to.
func (r *MeshConfigReconciler) updateNeeds(ctx context.Context, mc *v1beta1.ASMMeshConfig) error {
	if r.Clusters == nil {
		return nil
	}
	records, err := recordCopyHolders(ctx, r.Client, r.Namespace)
	if err != nil {
		return err
	}
	r.Clusters.SetNeeds(ctx, clusterNeeds(mc, records))
	return nil
}
