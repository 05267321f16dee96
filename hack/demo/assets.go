package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// progressEvery is how often a long wait says it is still waiting.
const progressEvery = 20 * time.Second

// repoRoot is the directory of the module the demo runs in: the manifests, the
// manager's source and the scripts are read from there.
func repoRoot(ctx context.Context) (string, error) {
	raw, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(raw))
	if err != nil || gomod == "" || gomod == "/dev/null" {
		return "", errors.New("run the demo from the repository: make demo, or go run ./hack/demo")
	}
	return filepath.Dir(gomod), nil
}

// envtestAssets returns the directory of kube-apiserver and etcd from
// hack/envtest-assets.sh: KUBEBUILDER_ASSETS when set, else the cache, else a build
// from their Go modules that takes minutes the first time. The script's messages are
// shown, and a line now and then while it builds.
func envtestAssets(ctx context.Context, root string, out *printer) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest-assets.sh"))
	cmd.Dir = root
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		forwardLines(stderr, out)
	}()
	done := make(chan error, 1)
	go func() {
		<-copied // Wait closes the pipe: read it to the end first
		done <- cmd.Wait()
	}()
	if err := await(done, "building kube-apiserver and etcd (only the first time)", out); err != nil {
		return "", fmt.Errorf("hack/envtest-assets.sh: %w", err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

func forwardLines(r io.Reader, out *printer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out.line("%s", sc.Text())
	}
}
