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
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

const tokenKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
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
	cfg, err := restConfigFromKubeconfig("c", kubeconfig("{token: secret-token-value}"), false)
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
			_, err := restConfigFromKubeconfig("c", data, false)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "secret-token-value") || strings.Contains(err.Error(), "/bin/steal") {
				t.Errorf("error quotes the kubeconfig: %v", err)
			}
		})
	}
}

func TestExecAllowedWhenAsked(t *testing.T) {
	_, err := restConfigFromKubeconfig("c", kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/true, interactiveMode: Never}}"), true)
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
