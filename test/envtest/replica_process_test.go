package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshfleet/remote-istiod-operator/internal/manager"
)

// replicaEnv makes the test binary run one operator replica instead of the tests: the
// parent starts such children to kill them as the kubelet kills a container, with no
// lease release, no graceful shutdown and requests cut where they are.
const replicaEnv = "ENVTEST_REPLICA"

// replicaConfig is what a child needs to rebuild the replica's options. It crosses on
// the child's stdin, so the credentials are never written to a file.
type replicaConfig struct {
	Identity string
	Host     string
	TLS      rest.TLSClientConfig
}

func TestMain(m *testing.M) {
	if os.Getenv(replicaEnv) != "" {
		os.Exit(runReplicaProcess(os.Stdin))
	}
	os.Exit(m.Run())
}

// runReplicaProcess runs a replica until it is killed, or until its stdin ends, which
// means the parent is gone. It connects only to the API servers the parent started.
func runReplicaProcess(in io.Reader) int {
	var rc replicaConfig
	if err := json.NewDecoder(in).Decode(&rc); err != nil {
		fmt.Fprintln(os.Stderr, "reading the replica's config:", err)
		return 2
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)).WithName(rc.Identity))
	log := logf.Log.WithName("replica")
	c, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()
	if err := manager.AddToScheme(scheme); err != nil {
		log.Error(err, "building the scheme")
		return 1
	}
	cfg := &rest.Config{Host: rc.Host, TLSClientConfig: rc.TLS}
	opts, err := replicaOptions(cfg, rc.Identity)
	if err != nil {
		log.Error(err, "building the replica's options")
		return 1
	}
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		log.Error(err, "building the replica")
		return 1
	}
	if err := mgr.Start(c); err != nil {
		log.Error(err, "running the replica")
		return 1
	}
	return 0
}

// replicaProcess is a replica running as a child of the test process.
type replicaProcess struct {
	identity string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exited   chan struct{}
}

// startReplicaProcess starts a child replica, whose logs join the operator's (and its
// leak check); DeferCleanup kills and reaps it.
func startReplicaProcess(identity string) *replicaProcess {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), replicaEnv+"=1")
	out := io.MultiWriter(GinkgoWriter, &logs)
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(cmd.Start()).To(Succeed())
	p := &replicaProcess{identity: identity, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	DeferCleanup(p.kill)
	raw, err := json.Marshal(replicaConfig{Identity: identity, Host: operatorConfig.Host, TLS: operatorConfig.TLSClientConfig})
	Expect(err).NotTo(HaveOccurred())
	// Stdin stays open: the child lives no longer than this process.
	_, err = stdin.Write(raw)
	Expect(err).NotTo(HaveOccurred())
	return p
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *replicaProcess) kill() {
	_ = p.cmd.Process.Kill() // os.ErrProcessDone once it has exited
	Eventually(p.exited, 10*time.Second).Should(BeClosed())
	_ = p.stdin.Close()
}
