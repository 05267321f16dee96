package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

const tokenKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}
users:
- name: u
  user: %s
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`

func kubeconfig(user string) []byte { return []byte(strings.Replace(tokenKubeconfig, "%s", user, 1)) }

func TestKubeconfigWithToken(t *testing.T) {
	cfg, err := restConfigFromKubeconfig("c", kubeconfig("{token: secret-token-value}"), KubeconfigPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.Timeout != 0 || cfg.WrapTransport == nil {
		t.Errorf("host %s timeout %s", cfg.Host, cfg.Timeout)
	}
}

func TestKubeconfigErrorsNameNoSecret(t *testing.T) {
	for name, data := range map[string][]byte{
		"garbage":        []byte("{not yaml: [secret-token-value"),
		"no context":     []byte(strings.Replace(string(kubeconfig("{token: secret-token-value}")), "current-context: ctx", "current-context: other", 1)),
		"exec plugin":    kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/steal, args: [secret-token-value]}}"),
		"auth provider":  kubeconfig("{auth-provider: {name: oidc, config: {id-token: secret-token-value}}}"),
		"no server data": []byte("apiVersion: v1\nkind: Config\ncurrent-context: ''\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := restConfigFromKubeconfig("c", data, KubeconfigPolicy{})
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "secret-token-value") || strings.Contains(err.Error(), "/bin/steal") {
				t.Errorf("error quotes the kubeconfig: %v", err)
			}
		})
	}
}

// withCluster is a token kubeconfig whose cluster entry is the given YAML.
func withCluster(cluster string) []byte {
	return []byte(strings.Replace(strings.Replace(tokenKubeconfig, "%s", "{token: secret-token-value}", 1),
		`{server: "https://127.0.0.1:6443", certificate-authority-data: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}`, cluster, 1))
}

// TestKubeconfigRefusesFilesAndInsecureConnections shows each field a hostile remote
// secret could use to read the operator's files or send its credentials elsewhere is
// refused by name, without quoting the value.
func TestKubeconfigRefusesFilesAndInsecureConnections(t *testing.T) {
	for _, c := range []struct {
		field string
		data  []byte
		// insecure is set for what --allow-insecure-remote-connections accepts.
		insecure bool
	}{
		{"tokenFile", kubeconfig("{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}"), false},
		{"client-certificate", kubeconfig("{client-certificate: /etc/secret-path/cert.pem, client-key-data: c2VjcmV0}"), false},
		{"client-key", kubeconfig("{client-certificate-data: c2VjcmV0, client-key: /etc/secret-path/key.pem}"), false},
		{"certificate-authority", withCluster(`{server: "https://127.0.0.1:6443", certificate-authority: /etc/secret-path/ca.pem}`), false},
		{"insecure-skip-tls-verify", withCluster(`{server: "https://attacker.example", insecure-skip-tls-verify: true}`), true},
		{"proxy-url", withCluster(`{server: "https://127.0.0.1:6443", certificate-authority-data: "LS0t", proxy-url: "http://secret-proxy.example:3128"}`), true},
		{"without https://", withCluster(`{server: "http://127.0.0.1:6443"}`), true},
	} {
		t.Run(c.field, func(t *testing.T) {
			_, err := restConfigFromKubeconfig("c", c.data, KubeconfigPolicy{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("the refusal does not name %s: %v", c.field, err)
			}
			for _, value := range []string{"secret-path", "secret-token-value", "secret-proxy", "attacker", "/var/run"} {
				if strings.Contains(err.Error(), value) {
					t.Errorf("the refusal quotes the kubeconfig (%s): %v", value, err)
				}
			}
			_, err = restConfigFromKubeconfig("c", c.data, KubeconfigPolicy{AllowInsecure: true, AllowExec: true})
			if c.insecure && err != nil {
				t.Errorf("refused although insecure connections are allowed: %v", err)
			}
			if !c.insecure && err == nil {
				t.Error("a file is accepted when insecure connections are allowed: files are never read")
			}
		})
	}
}

func TestExecAllowedWhenAsked(t *testing.T) {
	_, err := restConfigFromKubeconfig("c", kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/true, interactiveMode: Never}}"), KubeconfigPolicy{AllowExec: true})
	if err != nil {
		t.Fatal(err)
	}
}

// slowServer answers after delay.
func slowServer(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
			_, _ = io.WriteString(w, "{}")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRequestsButWatchesHaveADeadline(t *testing.T) {
	s := slowServer(t, 300*time.Millisecond)
	id := "deadline-test"
	rt := &requestDeadline{next: http.DefaultTransport, timeout: 100 * time.Millisecond, cluster: id}
	do := func(query string) error {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/namespaces"+query, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := do(""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a list slower than the deadline must fail with it, got %v", err)
	}
	if err := do("?watch=true"); err != nil {
		t.Fatalf("a watch must outlive the request deadline (client-go's reflector ends it), got %v", err)
	}
	if got := testutil.ToFloat64(metrics.RemoteRequests.WithLabelValues(id, "watch")); got != 1 {
		t.Errorf("watch streams counted: %v", got)
	}
	if got := testutil.ToFloat64(metrics.RemoteRequests.WithLabelValues(id, "get")); got != 1 {
		t.Errorf("reads counted: %v", got)
	}
}

func TestWatchesAskForNoCompression(t *testing.T) {
	seen := make(chan string, 2)
	s := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen <- r.URL.RawQuery + " " + r.Header.Get("Accept-Encoding")
	}))
	t.Cleanup(s.Close)
	// Go's transport adds Accept-Encoding: gzip to a request that has none.
	rt := &requestDeadline{next: http.DefaultTransport, timeout: time.Second, cluster: "gzip-test"}
	for _, query := range []string{"", "watch=true"} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/namespaces?"+query, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	if got := <-seen; got != " gzip" {
		t.Errorf("a list must keep gzip across the link, it asked %q", got)
	}
	if got := <-seen; got != "watch=true identity" {
		t.Errorf("a watch must ask for no compression, it asked %q", got)
	}
}

func TestDescribeFailureSaysWhatDidNotAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	_, err = http.Get("http://" + addr + "/api")
	if got := DescribeFailure(err); got != "the API server at "+addr+" refused the connection" {
		t.Errorf("refused: %q", got)
	}
	if ConnectFailure(err) != FailureUnreachable {
		t.Errorf("a refused connection is %s", ConnectFailure(err))
	}
	unauthorized := apierrors.NewUnauthorized("Unauthorized")
	if ConnectFailure(fmt.Errorf("discovery: %w", unauthorized)) != FailureUnauthorized {
		t.Error("a wrapped 401 must be Unauthorized")
	}
	if ConnectFailure(apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "x", errors.New("no"))) != FailureForbidden {
		t.Error("a 403 must be Forbidden")
	}
}

// TestUnansweredIsALinkNotAnAnswer: a refused connection and a request out of time are
// a link that did not answer; an API server's refusal or conflict is an answer.
func TestUnansweredIsALinkNotAnAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, refused := http.Get("http://" + addr + "/api")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("trust: %w", refused), true},
		{errors.Join(errors.New("apply"), fmt.Errorf("get: %w", context.DeadlineExceeded)), true},
		{apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "x", errors.New("no")), false},
		{apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "x", errors.New("changed")), false},
		{nil, false},
	} {
		if got := Unanswered(c.err); got != c.want {
			t.Errorf("Unanswered(%v) = %t", c.err, got)
		}
	}
}

// TestStatusMessageHidesBodiesThatAreNotKubernetes shows an internal endpoint's answer,
// reached through a hostile kubeconfig, does not end up in status.
func TestStatusMessageHidesBodiesThatAreNotKubernetes(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "internal-metadata-token: secret-body-value")
	}))
	defer s.Close()
	cfg := &rest.Config{Host: s.URL}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = clientset.CoreV1().Namespaces().Get(context.Background(), "istio-system", metav1.GetOptions{})
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), "secret-body-value") {
		t.Fatalf("client-go no longer quotes bodies; this test proves nothing: %v", err)
	}
	if got := DescribeFailure(err); strings.Contains(got, "secret-body-value") || !strings.Contains(got, "HTTP 403") {
		t.Errorf("the condition message would be %q", got)
	}
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "istio-system")
	if got := DescribeFailure(notFound); got != notFound.Status().Message {
		t.Errorf("a Kubernetes status keeps its message: %q", got)
	}
}
