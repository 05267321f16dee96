package main

import (
	"debug/elf"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshfleet/remote-istiod-operator/internal/manager"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
)

// TestBinaryIsStatic builds the manager as the Dockerfile does and checks that it needs
// no dynamic loader or shared library, so it runs on a distroless static image.
func TestBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", out, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, msg)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries: %v", libs)
	}
}

// TestRemoteRateLimitFlags checks that --remote-api-qps and --remote-api-burst reach
// the client configuration of a data-plane cluster.
func TestRemoteRateLimitFlags(t *testing.T) {
	for _, c := range []struct {
		args  []string
		qps   float32
		burst int
	}{
		{nil, remotecluster.DefaultQPS, remotecluster.DefaultBurst},
		{[]string{"--remote-api-qps=12.5", "--remote-api-burst=34"}, 12.5, 34},
	} {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		var opts manager.Options
		bindRemoteRateLimit(fs, &opts.RemoteRateLimit)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := remotecluster.New(manager.RemoteOptions(opts)).RESTConfig("c", []byte(testKubeconfig))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.RateLimiter == nil || cfg.RateLimiter.QPS() != c.qps || cfg.Burst != c.burst {
			t.Errorf("%v: QPS %g, burst %d; want %g and %d", c.args, cfg.QPS, cfg.Burst, c.qps, c.burst)
		}
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "0"},
		{[]string{"--pprof-bind-address=127.0.0.1:6060"}, "127.0.0.1:6060"},
	} {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		var cl commandLine
		cl.bind(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if got := cl.options(runtime.NewScheme()).Manager.PprofBindAddress; got != c.want {
			t.Errorf("%v: pprof at %q, want %q", c.args, got, c.want)
		}
	}
}

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`
