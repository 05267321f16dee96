package v1beta1

import "strings"

// AbandonClustersAnnotation, on the ASMMeshConfig, names cluster IDs (comma-separated)
// whose removal a person gave up on: a cluster that is gone for good while its remote
// secret stays in the mesh. It is honoured only for clusters that are being removed
// (their entry is no longer in spec.externalIstiodConfigurations, or the ASMMeshConfig
// is being deleted): the operator then stops trying to clean them up and says in their
// status entry what it left behind there and when their intermediate CA expires. A
// cluster ID that still has an entry is managed as usual.
const AbandonClustersAnnotation = "istio.alibabacloud.com/abandon-clusters"

// Abandons reports whether the AbandonClustersAnnotation names clusterID.
func (mc *ASMMeshConfig) Abandons(clusterID string) bool {
	for _, id := range strings.Split(mc.Annotations[AbandonClustersAnnotation], ",") {
		if strings.TrimSpace(id) == clusterID && clusterID != "" {
			return true
		}
	}
	return false
}
