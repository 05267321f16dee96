package localmesh

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
)

// OperatorUser is who the operator authenticates as in the mesh cluster.
const OperatorUser = "remote-istiod-operator"

// OperatorNamespace is the operator's own namespace in config/default, where
// config/rbac grants it its leader lease.
const OperatorNamespace = "remote-istiod-operator-system"

// BuildManager builds the manager from root's ./cmd into dir as the Makefile does, and
// returns the binary's path.
func BuildManager(ctx context.Context, root, dir string) (string, error) {
	binary := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binary, "./cmd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager: %w\n%s", err, msg)
	}
	return binary, nil
}

// ManagerOptions say how to run the manager.
type ManagerOptions struct {
	// Root is the repository, for config/rbac/role.yaml.
	Root string
	// Binary is the manager, from BuildManager.
	Binary string
	// Dir holds the manager's kubeconfig and its log, manager.log.
	Dir string
	// Args are flags beyond the kubeconfig and the bind addresses.
	Args []string
	// StopTimeout is how long Stop waits after SIGTERM before it kills; 30 s if zero.
	StopTimeout time.Duration
}

// Manager is the operator's manager running as a child process, as it ships: its
// CPU time, memory and metrics are its own, apart from the API servers'.
type Manager struct {
	// LogPath is the manager's log, stdout and stderr.
	LogPath string
	// MetricsURL is the manager's metrics endpoint.
	MetricsURL string
	// PprofURL is the root of the manager's pprof endpoints (/debug/pprof/).
	PprofURL string

	cmd         *exec.Cmd
	exited      chan error
	stopTimeout time.Duration
	// opts and kubeconfig start it again (Restart).
	opts       ManagerOptions
	kubeconfig string
}

// StartManager runs the manager against the mesh cluster as a user bound to
// config/rbac's roles, as the Helm chart binds its ServiceAccount, and waits until
// its readiness probe answers.
func (m *Mesh) StartManager(ctx context.Context, opts ManagerOptions) (*Manager, error) {
	roles, err := os.ReadFile(filepath.Join(opts.Root, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	kubeconfig, err := m.Mesh.UserWithRoles(ctx, OperatorUser, roles)
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(opts.Dir, "operator.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	return launch(ctx, opts, kubeconfigPath)
}

// Relaunch starts a new manager process like op, which must have stopped, as the same
// user with the same flags, as a rolled pod would be: it remembers nothing of op.
func (op *Manager) Relaunch(ctx context.Context) (*Manager, error) {
	return launch(ctx, op.opts, op.kubeconfig)
}

// launch starts the manager process with a kubeconfig and waits until it is ready.
func launch(ctx context.Context, opts ManagerOptions, kubeconfigPath string) (*Manager, error) {
	metricsAddr, err := freeLocalAddress()
	if err != nil {
		return nil, err
	}
	probeAddr, err := freeLocalAddress()
	if err != nil {
		return nil, err
	}
	pprofAddr, err := freeLocalAddress()
	if err != nil {
		return nil, err
	}
	op := &Manager{LogPath: filepath.Join(opts.Dir, "manager.log"), MetricsURL: "http://" + metricsAddr + "/metrics",
		PprofURL: "http://" + pprofAddr + "/debug/pprof/",
		exited:   make(chan error, 1), stopTimeout: opts.StopTimeout, opts: opts, kubeconfig: kubeconfigPath}
	if op.stopTimeout == 0 {
		op.stopTimeout = 30 * time.Second
	}
	logFile, err := os.OpenFile(op.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // the child keeps its own descriptor
	args := append([]string{"--kubeconfig", kubeconfigPath,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr,
		"--pprof-bind-address", pprofAddr}, opts.Args...)
	op.cmd = exec.Command(opts.Binary, args...)
	op.cmd.Stdout, op.cmd.Stderr = logFile, logFile
	// Ctrl-C at the terminal must not reach the manager: the caller stops it in order,
	// as envtest does with its API servers.
	op.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := op.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	go func() { op.exited <- op.cmd.Wait() }()
	if err := op.waitReady(ctx, "http://"+probeAddr+"/readyz"); err != nil {
		return nil, errors.Join(err, op.Stop())
	}
	return op, nil
}

func (op *Manager) waitReady(ctx context.Context, url string) error {
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
			op.exited <- err // for Stop
			return fmt.Errorf("the manager exited (%w); the end of its log %s:\n%s", err, op.LogPath, op.LogTail(20))
		case <-deadline:
			return fmt.Errorf("the manager is not ready after a minute; the end of its log %s:\n%s", op.LogPath, op.LogTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pid is the manager's process id, for reading its use of the machine from /proc.
func (op *Manager) Pid() int { return op.cmd.Process.Pid }

// Stop asks the manager to shut down, as the kubelet would, and kills it if it has
// not within the stop timeout.
func (op *Manager) Stop() error {
	if err := op.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-op.exited:
		op.exited <- err // a second Stop returns the same
		var exit *exec.ExitError
		if errors.As(err, &exit) && !exit.Exited() {
			return nil // ended by the signal: the manager was not listening yet
		}
		return err
	case <-time.After(op.stopTimeout):
		_ = op.cmd.Process.Kill()
		err := <-op.exited
		op.exited <- err
		return errors.Join(fmt.Errorf("the manager did not stop within %s; killed it", op.stopTimeout), err)
	}
}

// LogTail returns the last lines of the manager's log.
func (op *Manager) LogTail(lines int) string {
	raw, err := os.ReadFile(op.LogPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
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
