package localmesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
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
	if err := grant(ctx, c.Client, roles, subjects); err != nil {
		return nil, err
	}
	return c.Kubeconfig(user)
}

// Bind binds a Role or ClusterRole to subjects, with a binding named after the role and
// the first subject (a role of Istio's chart may have a binding of its name already).
func Bind(ctx context.Context, c client.Client, role client.Object, subjects []rbacv1.Subject) error {
	kind := role.GetObjectKind().GroupVersionKind().Kind
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role.GetName()}
	meta := metav1.ObjectMeta{Name: role.GetName() + "-" + subjects[0].Name, Namespace: role.GetNamespace()}
	var binding client.Object
	switch kind {
	case "ClusterRole":
		binding = &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
	case "Role":
		binding = &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
	default:
		return fmt.Errorf("the RBAC manifest holds a %s, not a role", kind)
	}
	if err := c.Create(ctx, binding); err != nil {
		return fmt.Errorf("binding %s %s: %w", kind, role.GetName(), err)
	}
	return nil
}

// GrantFile creates the roles of an RBAC manifest file (config/rbac, config/remote) and
// binds each to subjects.
func GrantFile(ctx context.Context, c client.Client, path string, subjects []rbacv1.Subject) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	roles, err := DecodeManifests(raw)
	if err != nil {
		return err
	}
	return grant(ctx, c, roles, subjects)
}

func grant(ctx context.Context, c client.Client, roles []*unstructured.Unstructured, subjects []rbacv1.Subject) error {
	for _, role := range roles {
		// A Role lives in its namespace (the operator's own, for its leader lease), which
		// the installation creates first.
		if ns := role.GetNamespace(); ns != "" {
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); client.IgnoreAlreadyExists(err) != nil {
				return fmt.Errorf("creating namespace %s: %w", ns, err)
			}
		}
		if err := c.Create(ctx, role); err != nil {
			return fmt.Errorf("creating %s %s: %w", role.GetKind(), role.GetName(), err)
		}
		if err := Bind(ctx, c, role, subjects); err != nil {
			return err
		}
	}
	return nil
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
