package install

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	operator "github.com/meshfleet/remote-istiod-operator/internal/manager"
)

const crdName = "asmmeshconfigs.istio.alibabacloud.com"

// TestInstallsOnAPIServer installs the chart with `helm install` into a real API server,
// uninstalls it, then applies config/default there: each must be accepted as it is and
// give the operator its rights.
func TestInstallsOnAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run make test, or set it to "$(hack/envtest-assets.sh)"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := localapi.New(&envtest.Environment{})
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// The mesh cluster already runs Istio in its control plane namespace.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}); err != nil {
		t.Fatal(err)
	}

	helm := helmConfiguration(t, env.KubeConfig)
	install := action.NewInstall(helm)
	install.ReleaseName = releaseName
	install.Namespace = operatorNS
	install.CreateNamespace = true
	install.WaitStrategy = kube.HookOnlyStrategy // no kubelet runs the pods here
	install.Timeout = time.Minute
	if _, err := install.RunWithContext(ctx, loadChart(t), nil); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	expectCRDEstablished(ctx, t, c)
	expectOperatorRights(ctx, t, c, "helm")

	uninstall := action.NewUninstall(helm)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	uninstall.Timeout = time.Minute
	if _, err := uninstall.Run(releaseName); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	// Helm never deletes what it installed from crds/, so ASMMeshConfigs survive.
	expectCRDEstablished(ctx, t, c)
	err = c.Get(ctx, client.ObjectKey{Name: releaseName}, &rbacv1.ClusterRole{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the ClusterRole outlived helm uninstall: %v", err)
	}

	for _, obj := range kustomizeBuild(t) {
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("kubectl"), client.ForceOwnership)
		if err != nil {
			t.Fatalf("applying %s %s from config/default: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	expectCRDEstablished(ctx, t, c)
	expectOperatorRights(ctx, t, c, "config/default")
}

// helmConfiguration points Helm's actions at the API server, as a kubeconfig file does for the CLI.
func helmConfiguration(t *testing.T, kubeconfig []byte) *action.Configuration {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &path
	namespace := operatorNS
	flags.Namespace = &namespace
	helm := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(t.Output(), nil)))
	if err := helm.Init(flags, operatorNS, "secret"); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return helm
}

func expectCRDEstablished(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: crdName}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established {
				return cond.Status == apiextensionsv1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s not Established: %v", crdName, err)
	}
}

// expectOperatorRights asks the API server's authorizer what the operator's ServiceAccount may do.
func expectOperatorRights(ctx context.Context, t *testing.T, c client.Client, installedBy string) {
	t.Helper()
	user := "system:serviceaccount:" + operatorNS + ":" + releaseName
	for _, check := range []struct {
		attrs authorizationv1.ResourceAttributes
		allow bool
	}{
		{authorizationv1.ResourceAttributes{Group: "istio.alibabacloud.com", Resource: "asmmeshconfigs", Verb: "watch"}, true},
		{authorizationv1.ResourceAttributes{Group: "istio.alibabacloud.com", Resource: "asmmeshconfigs", Subresource: "status", Verb: "patch"}, true},
		{authorizationv1.ResourceAttributes{Group: "networking.istio.io", Resource: "virtualservices", Verb: "list"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "istio-system", Resource: "secrets", Verb: "watch"}, true},
		// The leader lease: the operator's own, by name, in its own namespace; never
		// istiod's leases in the control plane namespace.
		{authorizationv1.ResourceAttributes{Namespace: operatorNS, Group: "coordination.k8s.io", Resource: "leases", Name: operator.LeaderElectionID, Verb: "update"}, true},
		{authorizationv1.ResourceAttributes{Namespace: operatorNS, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Namespace: operatorNS, Group: "coordination.k8s.io", Resource: "leases", Name: "someone-else", Verb: "update"}, false},
		{authorizationv1.ResourceAttributes{Namespace: operatorNS, Group: "coordination.k8s.io", Resource: "leases", Verb: "list"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "istio-system", Group: "coordination.k8s.io", Resource: "leases", Name: "istio-leader", Verb: "update"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "istio-system", Group: "coordination.k8s.io", Resource: "leases", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "istio-system", Resource: "configmaps", Verb: "patch"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "default", Resource: "secrets", Verb: "get"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "istio-system", Resource: "secrets", Verb: "delete"}, false},
	} {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts"}, ResourceAttributes: &check.attrs,
		}}
		if err := c.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != check.allow {
			t.Errorf("installed by %s, the operator may %s %s/%s in %q: %v, want %v",
				installedBy, check.attrs.Verb, check.attrs.Resource, check.attrs.Subresource, check.attrs.Namespace, review.Status.Allowed, check.allow)
		}
	}
}
