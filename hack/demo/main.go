// Command demo runs the operator on a local mesh: three envtest API servers (a mesh
// cluster and two data-plane clusters), the real manager binary, and config/samples.
// It shows the operator give cluster-2 its own istiod and switch it, leaves the mesh
// running for exploration with kubectl, and cleans up on Ctrl-C.
//
// Run it from the repository: make demo (or go run ./hack/demo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var opts options
	flag.BoolVar(&opts.once, "once", false,
		"Exit after showing the outcome: 0 when cluster-2 switched to its own istiod, cluster-1 is untouched and the ASMMeshConfig is Ready, 1 otherwise.")
	flag.DurationVar(&opts.timeout, "timeout", 3*time.Minute, "How long to wait for the operator to reach that outcome.")
	flag.DurationVar(&opts.linkRTT, "link-rtt", 0,
		"Round-trip time of the simulated far link between the operator and each data-plane cluster (for example 100ms).")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, opts, os.Stdout)
	stop()
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
