package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// operatorUser is who the operator authenticates as in the mesh cluster.
const operatorUser = "remote-istiod-operator"

// operatorNamespace is the operator's own namespace in config/default, where
// config/rbac grants it its leader lease.
const operatorNamespace = "remote-istiod-operator-system"

// buildManager builds the manager from ./cmd as the Makefile does.
func buildManager(ctx context.Context, root, dir string) (string, error) {
	binary := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binary, "./cmd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager: %w\n%s", err, msg)
	}
	return binary, nil
}

// operator is the manager process.
type operator struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan error
}

// startOperator runs the manager against the mesh cluster as a user bound to
// config/rbac's roles, and waits until its readiness probe answers.
func startOperator(ctx context.Context, root string, m *localmesh.Mesh, binary, dir string) (*operator, error) {
	roles, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	kubeconfig, err := m.Mesh.UserWithRoles(ctx, operatorUser, roles)
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(dir, "operator.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	metricsAddr, err := freeLocalAddress()
	if err != nil {
		return nil, err
	}
	probeAddr, err := freeLocalAddress()
	if err != nil {
		return nil, err
	}
	op := &operator{logPath: filepath.Join(dir, "manager.log"), exited: make(chan error, 1)}
	logFile, err := os.Create(op.logPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // the child keeps its own descriptor
	op.cmd = exec.Command(binary,
		"--kubeconfig", kubeconfigPath,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", probeAddr,
		// As installed: the lease in the operator's own namespace (config/rbac's Role).
		"--leader-election-namespace", operatorNamespace,
		"--zap-devel")
	op.cmd.Stdout, op.cmd.Stderr = logFile, logFile
	// Ctrl-C at the terminal must not reach the manager: the demo stops it in order,
	// as envtest does with its API servers.
	op.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := op.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	go func() { op.exited <- op.cmd.Wait() }()
	if err := op.waitReady(ctx, "http://"+probeAddr+"/readyz"); err != nil {
		return nil, errors.Join(err, op.stop())
	}
	return op, nil
}

func (op *operator) waitReady(ctx context.Context, url string) error {
	deadline := time.After(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-op.exited:
			op.exited <- err // for stop
			return fmt.Errorf("the manager exited (%w); the end of its log:\n%s", err, op.logTail(20))
		case <-deadline:
			return fmt.Errorf("the manager is not ready after a minute; the end of its log:\n%s", op.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop asks the manager to shut down, as the kubelet would, and kills it if it has
// not within ten seconds.
func (op *operator) stop() error {
	if err := op.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-op.exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) && !exit.Exited() {
			return nil // ended by the signal: the manager was not listening yet
		}
		return err
	case <-time.After(10 * time.Second):
		_ = op.cmd.Process.Kill()
		return fmt.Errorf("the manager did not stop within 10s; killed it")
	}
}

// freeLocalAddress picks a port on the loopback interface that nothing listens on.
func freeLocalAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// logTail returns the last lines of the manager's log.
func (op *operator) logTail(lines int) string {
	raw, err := os.ReadFile(op.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
