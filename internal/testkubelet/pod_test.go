package testkubelet_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/testkubelet"
)

// TestPod checks the pod mechanics without istiod: /bin/sh stands in for the binary
// (the address flags the kubelet appends become the script's unused positional
// parameters), records its environment and sleeps.
func TestPod(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run through make test or set it to $(hack/envtest-assets.sh)")
	}
	cfg, c, _ := startAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "pods"
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: ns}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mesh", Namespace: ns}, Data: map[string]string{"mesh": "v1", "other": "x"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "certs", Namespace: ns}, Data: map[string][]byte{"key.pem": []byte("secret")}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	labels := map[string]string{"app": "sleeper"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "workload",
					Containers: []corev1.Container{{
						Name: "discovery", Image: "example.com/sleeper",
						Args: []string{"-c", "env > env.txt; exec sleep 600", "$(POD_NAME)"},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_IP", "status.podIP"),
							fieldEnv("SA", "spec.serviceAccountName"),
							{Name: "NAME_AND_IP", Value: "$(POD_NAME)@$(POD_IP) $$(POD_IP) $(UNKNOWN)"},
							{Name: "MILLICORES", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
								Resource: "limits.cpu", Divisor: resource.MustParse("1m")}}},
							{Name: "CORES", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
								Resource: "limits.cpu", Divisor: resource.MustParse("1")}}},
							{Name: "MEMORY_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
								Resource: "requests.memory", Divisor: resource.MustParse("1Mi")}}},
							{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "certs"}, Key: "key.pem"}}},
							{Name: "FROM_CONFIGMAP", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "mesh"}, Key: "mesh"}}},
							{Name: "ABSENT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: ptr.To(true)}}},
							{Name: "KUBECONFIG", Value: "/var/run/secrets/remote/config"},
						},
						Resources: corev1.ResourceRequirements{
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")},
							Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/istio/config"},
							{Name: "certs", MountPath: "/etc/cacerts"},
							{Name: "tokens", MountPath: "/var/run/secrets/tokens"},
							{Name: "scratch", MountPath: "/tmp/scratch"},
							{Name: "remote", MountPath: "/var/run/secrets/remote"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "mesh"},
							Items:                []corev1.KeyToPath{{Key: "mesh", Path: "mesh"}}}}},
						{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "certs"}}},
						{Name: "tokens", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
							{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptr.To[int64](600), Path: "istio-token"}},
							{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
								{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}},
						}}}},
						{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "remote", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "istio-kubeconfig", Optional: ptr.To(true)}}},
					},
				},
			},
		},
	}
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	kl, err := testkubelet.Start(testkubelet.Options{Config: cfg, Binary: "/bin/sh", Namespace: ns, Name: "sleeper",
		Dir: podDir(t), GracePeriod: 2 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Stop()

	// Without a readiness probe the pod is ready once it runs; both replicas are the one process.
	eventually(t, 20*time.Second, "Deployment Available", func() error {
		got := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
			return err
		}
		if got.Status.AvailableReplicas != 2 || got.Status.ReadyReplicas != 2 || got.Status.UpdatedReplicas != 2 || got.Status.Replicas != 2 {
			return errors.New(formatStatus(got))
		}
		return nil
	})
	root := kl.Root()
	var env map[string]string
	eventually(t, 10*time.Second, "env.txt", func() error {
		raw, err := os.ReadFile(filepath.Join(root, "env.txt"))
		if err != nil || len(raw) == 0 {
			return fmt.Errorf("env.txt: %w", err)
		}
		env = map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		return nil
	})
	podName := filepath.Base(root)
	want := map[string]string{
		"POD_NAME": podName, "POD_IP": "127.0.0.1", "SA": "workload",
		"NAME_AND_IP": podName + "@127.0.0.1 $(POD_IP) $(UNKNOWN)",
		"MILLICORES":  "1500", "CORES": "2", "MEMORY_MI": "64",
		"FROM_SECRET": "secret", "FROM_CONFIGMAP": "v1",
		// The optional istio-kubeconfig Secret is absent: the kubelet's own kubeconfig.
		"KUBECONFIG": filepath.Join(root, "var/run/testkubelet/kubeconfig"),
		"HOME":       root,
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"ABSENT", "KUBEBUILDER_ASSETS", "PILOT_DISCOVERY"} {
		if v, ok := env[k]; ok {
			t.Errorf("env %s = %q is set", k, v)
		}
	}
	if !strings.HasPrefix(podName, "sleeper-") {
		t.Errorf("pod name %q", podName)
	}

	read := func(rel string) string {
		raw, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Error(err)
		}
		return string(raw)
	}
	if got := read("etc/istio/config/mesh"); got != "v1" {
		t.Errorf("mesh = %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/istio/config/other")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key not among the items was written: %v", err)
	}
	if got := read("etc/cacerts/key.pem"); got != "secret" {
		t.Errorf("key.pem = %q", got)
	}
	if got := read("var/run/secrets/tokens/labels"); !strings.Contains(got, `app="sleeper"`) {
		t.Errorf("labels = %q", got)
	}
	if st, err := os.Stat(filepath.Join(root, "tmp/scratch")); err != nil || !st.IsDir() {
		t.Errorf("emptyDir: %v", err)
	}

	cs := kubernetes.NewForConfigOrDie(cfg)
	t.Run("the projected token is the ServiceAccount's, for its audience", func(t *testing.T) {
		tr, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
			Token: read("var/run/secrets/tokens/istio-token"), Audiences: []string{"istio-ca"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Status.Authenticated || tr.Status.User.Username != "system:serviceaccount:pods:workload" {
			t.Errorf("token review: %+v", tr.Status)
		}
	})
	t.Run("the kubeconfig authenticates as the ServiceAccount", func(t *testing.T) {
		kcfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
		if err != nil {
			t.Fatal(err)
		}
		if len(kcfg.CertData) > 0 || len(kcfg.KeyData) > 0 || kcfg.CertFile != "" || kcfg.Username != "" {
			t.Errorf("the kubeconfig has credentials other than the token")
		}
		ssr, err := kubernetes.NewForConfigOrDie(kcfg).AuthenticationV1().SelfSubjectReviews().Create(ctx,
			&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if u := ssr.Status.UserInfo.Username; u != "system:serviceaccount:pods:workload" {
			t.Errorf("the kubeconfig is %q", u)
		}
	})
	t.Run("a changed ConfigMap reaches the running pod", func(t *testing.T) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mesh"}, cm); err != nil {
			t.Fatal(err)
		}
		cm.Data["mesh"] = "v2"
		if err := c.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "mesh v2", func() error {
			if got := read("etc/istio/config/mesh"); got != "v2" {
				return fmt.Errorf("mesh = %q", got)
			}
			return nil
		})
		if kl.Root() != root || kl.Starts() != 1 {
			t.Errorf("the process was restarted for a volume change")
		}
	})
	t.Run("an exited process is restarted", func(t *testing.T) {
		// The process runs in the pod root: find it by its working directory.
		pids, _ := filepath.Glob("/proc/[0-9]*/cwd")
		killed := false
		for _, p := range pids {
			if target, err := os.Readlink(p); err == nil && target == root {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				if proc, err := os.FindProcess(pid); err == nil && proc.Kill() == nil {
					killed = true
				}
			}
		}
		if !killed {
			t.Skip("could not find the process to kill")
		}
		eventually(t, 30*time.Second, "restarted", func() error {
			if kl.Starts() != 2 {
				return fmt.Errorf("starts = %d", kl.Starts())
			}
			return nil
		})
	})
}
