package localmesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
)

// Kubeconfig adds a user to the cluster's API server and returns a kubeconfig for it
// whose cluster, user and context are named after the cluster ID, as istioctl
// create-remote-secret names them.
func (c *Cluster) Kubeconfig(user string, groups ...string) ([]byte, error) {
	return c.kubeconfigThrough(nil, user, groups...)
}

// kubeconfigThrough is Kubeconfig with the API server reached through link, if any.
func (c *Cluster) kubeconfigThrough(link *farlink.Link, user string, groups ...string) ([]byte, error) {
	u, err := c.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s to %s: %w", user, c.ID, err)
	}
	cfg := u.Config()
	if link != nil {
		cfg.Host = "https://" + link.Addr()
	}
	return kubeconfigFor(c.ID, cfg)
}

// AdminKubeconfig returns a kubeconfig of a member of system:masters.
func (c *Cluster) AdminKubeconfig() ([]byte, error) {
	return c.Kubeconfig("admin", "system:masters")
}

func kubeconfigFor(name string, cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	return clientcmd.Write(*kc)
}

// UserWithRoles creates the roles and cluster roles of an RBAC manifest, binds each to
// a new user and returns that user's kubeconfig: a process run with it can do no more
// than the manifest grants.
func (c *Cluster) UserWithRoles(ctx context.Context, user string, rbacManifest []byte) ([]byte, error) {
	roles, err := DecodeManifests(rbacManifest)
	if err != nil {
		return nil, err
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for _, role := range roles {
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: role.GetKind(), Name: role.GetName()}
		meta := metav1.ObjectMeta{Name: role.GetName(), Namespace: role.GetNamespace()}
		var binding client.Object
		switch role.GetKind() {
		case "ClusterRole":
			binding = &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
		case "Role":
			binding = &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
		default:
			return nil, fmt.Errorf("the RBAC manifest holds a %s, not a role", role.GetKind())
		}
		if err := c.Client.Create(ctx, role); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", role.GetKind(), role.GetName(), err)
		}
		if err := c.Client.Create(ctx, binding); err != nil {
			return nil, fmt.Errorf("binding %s %s: %w", role.GetKind(), role.GetName(), err)
		}
	}
	return c.Kubeconfig(user)
}

// Create creates every object of a YAML manifest, as kubectl create -f does.
func (c *Cluster) Create(ctx context.Context, manifest []byte) ([]*unstructured.Unstructured, error) {
	objs, err := DecodeManifests(manifest)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if err := c.Client.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating %s %s in %s: %w", o.GetKind(), o.GetName(), c.ID, err)
		}
	}
	return objs, nil
}

// DecodeManifests reads the objects of a multi-document YAML manifest.
func DecodeManifests(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading manifest: %w", err)
		}
		if len(u.Object) > 0 { // an empty document between separators
			out = append(out, u)
		}
	}
}
