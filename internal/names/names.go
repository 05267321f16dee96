// Package names derives Kubernetes object names from Istio cluster IDs. A cluster ID
// is any label value (Istio's default is "Kubernetes"), while object names must be
// lower-case DNS names.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// ForCluster is prefix followed by the cluster ID, made a valid object name (a DNS
// subdomain, as Secrets, ServiceAccounts, ConfigMaps and RBAC objects need): upper
// case lowered, '_' turned into '-'. An ID that needed changing gets a short
// hash of itself appended, so two IDs never share a name ("a_b" and "a-b"). An ID that
// is already a valid name is used as it is, so names of existing objects stay.
func ForCluster(prefix, clusterID string) string {
	safe := strings.ReplaceAll(strings.ToLower(clusterID), "_", "-")
	if safe == clusterID {
		return prefix + safe
	}
	sum := sha256.Sum256([]byte(clusterID))
	return prefix + safe + "-" + hex.EncodeToString(sum[:4])
}
