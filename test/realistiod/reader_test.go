package realistiod

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/access"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

// clusterSync is istiod's view of one cluster it reads (/debug/clusterz,
// pkg/cluster/debug.go).
type clusterSync struct {
	ID         string `json:"id"`
	SyncStatus string `json:"syncStatus"`
}

func (e *env) clusterz(t *testing.T) (map[string]string, error) {
	resp, err := http.Get("http://" + e.addresses(t).HTTP + "/debug/clusterz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var list []clusterSync
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", resp.Status, err, raw)
	}
	out := map[string]string{}
	for _, c := range list {
		out[c.ID] = c.SyncStatus
	}
	return out, nil
}

// hasCluster says whether CDS for a sidecar of the data-plane cluster has the outbound
// cluster of a Service.
func (e *env) hasCluster(t *testing.T, name string) error {
	clusters, err := fetch(e.addresses(t).GRPC, e.version, clusterType, nil, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	if err != nil {
		return err
	}
	for _, c := range clusters {
		if c.GetName() == name {
			return nil
		}
	}
	return fmt.Errorf("%d clusters, not %s", len(clusters), name)
}

// notReady says why istiod is not ready, nil once it is.
func (e *env) notReady() error {
	if e.kubelet.Ready() {
		return nil
	}
	if err := e.kubelet.Err(); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	return errors.New("not ready")
}

func TestSecretlessReader(t *testing.T) {
	e := setup(t)
	eventually(t, 2*time.Minute, "istiod ready", func() error {
		return e.notReady()
	})

	// The peer is the mesh cluster, registered like a data-plane cluster (README,
	// "Discovery between clusters"): it holds what a reader must never read, the
	// mesh CA key in istio-system/cacerts. Its Service is nowhere else.
	admin, err := e.meshEnv.AddUser(envtest.User{Name: "mesh-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	adminKubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	reviews := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
	create(t, e.mesh, reviews)
	create(t, e.mesh, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: access.SecretName(meshClusterID), Namespace: ns,
		Labels: map[string]string{remotecluster.RemoteSecretLabel: "true"}}, Data: map[string][]byte{meshClusterID: adminKubeconfig}})
	mc := &v1beta1.ASMMeshConfig{}
	if err := e.mesh.Get(ctx(), client.ObjectKey{Name: v1beta1.DefaultName}, mc); err != nil {
		t.Fatal(err)
	}
	entry := mc.Spec.ExternalIstiodConfigurations[clusterID]
	entry.MutualAccess = true
	mc.Spec.ExternalIstiodConfigurations[clusterID] = entry
	if err := e.mesh.Update(ctx(), mc); err != nil {
		t.Fatal(err)
	}

	// The remote secret the operator hands to cluster-2's istiod for the mesh cluster.
	held := &corev1.Secret{}
	eventually(t, time.Minute, "the remote secret for the mesh cluster in cluster-2", func() error {
		return e.data.Get(ctx(), client.ObjectKey{Namespace: ns, Name: access.SecretName(meshClusterID)}, held)
	})
	handedOut := time.Now()
	t.Logf("remote secret for %s handed out %s after start", meshClusterID, handedOut.Sub(e.started).Round(time.Millisecond))

	// Feature: the reader istiod is given reads no Secret of the peer. Fails if the
	// reader's role grants Secrets (the mesh CA key would be readable).
	t.Run("the handed-out token cannot read the mesh CA or any Secret", func(t *testing.T) {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(held.Data[meshClusterID])
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx(), "cacerts", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get secret %s/cacerts of the mesh cluster: %v, not Forbidden", ns, err)
		}
		if _, err := cs.CoreV1().Secrets("").List(ctx(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list secrets of the mesh cluster: %v, not Forbidden", err)
		}
		if _, err := cs.CoreV1().Services("default").Get(ctx(), "reviews", metav1.GetOptions{}); err != nil {
			t.Errorf("the reader cannot read Services: %v", err)
		}
	})

	// Feature: with a reader that has no Secret access, istiod still discovers the
	// peer's Services at once and serves them to the cluster's sidecars, and stays up.
	// Its Secret watch there is refused, so istiod reports the peer "syncing" until
	// PILOT_REMOTE_CLUSTER_TIMEOUT (30s) and "timeout" after; that is measured and
	// logged. Fails if discovery of the peer breaks, if istiod restarts (as it does with
	// PILOT_ENABLE_REMOTE_CREDENTIALS_CONTROLLER=false up to at least 1.31.0-rc.0), or
	// if istiod is refused anything but Secrets (the ConfigMap rule would be wrong).
	t.Run("istiod discovers the peer's Services at once and stays up", func(t *testing.T) {
		const want = "outbound|9080||reviews.default.svc.cluster.local"
		starts := e.kubelet.Starts()
		var served time.Duration
		var statuses []string // each sync status istiod reports, with when it was first seen
		var last string
		for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline) && (served == 0 || (last != "synced" && last != "timeout")); {
			if status, err := e.clusterz(t); err == nil {
				if s, ok := status[meshClusterID]; ok && s != last {
					statuses = append(statuses, fmt.Sprintf("%s at %s", s, time.Since(handedOut).Round(time.Millisecond)))
					last = s
				}
			}
			if served == 0 && e.hasCluster(t, want) == nil {
				served = time.Since(handedOut)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("after the remote secret was handed out: istiod's sync status of %s %v; %s in CDS at %s",
			meshClusterID, statuses, want, served.Round(time.Millisecond))
		if served == 0 || served > 15*time.Second {
			t.Errorf("%s reached CDS at %s: istiod does not discover the mesh cluster's Services through the reader", want, served)
		}
		if n := e.kubelet.Starts(); n != starts {
			t.Errorf("istiod restarted %d times with the peer", n-starts)
		}
		var refusals int
		for _, line := range strings.Split(e.kubelet.Logs(), "\n") {
			if !strings.Contains(strings.ToLower(line), "forbidden") {
				continue
			}
			if refusals++; !strings.Contains(line, `resource "secrets"`) {
				t.Errorf("istiod was refused more than Secrets: %s", line)
			}
		}
		t.Logf("istiod logged %d refused Secret list(s) of the peer", refusals)
	})

	// Feature: istiod starts and becomes ready while it holds the remote secret of a
	// peer whose reader has no Secret access (it rolls at each intermediate CA
	// renewal); the wait is measured. Fails if readiness waits on the refused watch
	// for good.
	t.Run("a restarted istiod becomes ready with the peer", func(t *testing.T) {
		starts := e.kubelet.Starts()
		patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"` +
			time.Now().UTC().Format(time.RFC3339) + `"}}}}}`)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istiod"}}
		if err := e.data.Patch(ctx(), d, client.RawPatch(types.StrategicMergePatchType, patch), client.FieldOwner("kubectl-rollout")); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		eventually(t, 30*time.Second, "a new istiod process", func() error {
			if e.kubelet.Starts() == starts {
				return fmt.Errorf("not restarted")
			}
			return nil
		})
		eventually(t, 2*time.Minute, "the restarted istiod ready", func() error {
			return e.notReady()
		})
		t.Logf("restarted istiod ready %s after the restart", time.Since(restarted).Round(time.Millisecond))
		eventually(t, 30*time.Second, "CDS of the restarted istiod", func() error {
			return e.hasCluster(t, "outbound|9080||reviews.default.svc.cluster.local")
		})
	})

	// Feature: a renewed reader token (the operator re-issues it after 12 hours) gives
	// istiod a new client for the peer, which syncs and keeps discovering. Fails if the
	// swap to the new client waits on a watch the reader is not allowed.
	t.Run("after the token is renewed, istiod still discovers new Services of the peer", func(t *testing.T) {
		tr, err := kubernetes.NewForConfigOrDie(e.meshEnv.Config).CoreV1().ServiceAccounts(ns).CreateToken(ctx(),
			access.ReaderName(clusterID), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.Load(held.Data[meshClusterID])
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range kc.AuthInfos {
			a.Token = tr.Status.Token
		}
		raw, err := clientcmd.Write(*kc)
		if err != nil {
			t.Fatal(err)
		}
		// The operator keeps a held token until it is half its lifetime old, so this
		// stands for its own renewal.
		renewed := held.DeepCopy()
		renewed.Data[meshClusterID] = raw
		if err := e.data.Update(ctx(), renewed); err != nil {
			t.Fatal(err)
		}
		rotated := time.Now()
		ratings := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ratings", Namespace: "default"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "ratings"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
		create(t, e.mesh, ratings)
		const want = "outbound|9080||ratings.default.svc.cluster.local"
		eventually(t, 60*time.Second, "CDS "+want, func() error { return e.hasCluster(t, want) })
		t.Logf("%s in CDS %s after the token was renewed", want, time.Since(rotated).Round(time.Millisecond))
		if err := e.hasCluster(t, "outbound|9080||reviews.default.svc.cluster.local"); err != nil {
			t.Errorf("the peer's earlier Service is gone after the renewal: %v", err)
		}
	})
	t.Logf("test took %s", time.Since(e.started).Round(time.Millisecond))
}
