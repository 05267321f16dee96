package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// churn runs figure 3 with n clusters installed and Ready: the requests of a forced
// resync of every cluster, and the watch streams opened over a steady window.
func churn(ctx context.Context, f *fleet, n int, window time.Duration) (table, error) {
	t := table{Title: "Figure 3: zero churn",
		Columns: []string{"measure", "value", "goal"}}
	if err := f.registerUpTo(ctx, n); err != nil {
		return t, err
	}
	ids := f.ids(n)
	before, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return t, err
	}
	c0, err := f.installQuiet(ctx, ids)
	if err != nil {
		return t, err
	}
	f.logf("figure 3: %d clusters Ready and quiet; forcing a resync of every cluster", n)
	if err := f.touch(ctx); err != nil {
		return t, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil { // the fan-out delay coalesces for a second
		return t, err
	}
	c1, err := f.quiet(ctx)
	if err != nil {
		return t, err
	}
	resync := c1.sub(c0)
	var reads sample
	for _, id := range ids {
		reads = append(reads, resync[id]["get"])
	}
	f.logf("figure 3: resync done; watching the steady state for %s", window)
	if err := sleep(ctx, window); err != nil {
		return t, err
	}
	c2, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return t, err
	}
	steady := c2.sub(c1)
	installed := c0.sub(before)
	var watches, opened sample
	for _, id := range ids {
		watches = append(watches, steady[id]["watch"]/window.Minutes())
		opened = append(opened, installed[id]["watch"])
	}
	// The operator's informers in a data-plane cluster: its owned kinds, CRDs and the
	// Istio kinds the mirror watches (internal/controller/setup.go, mirror.go).
	informers := len(render.OwnedKinds) + 1 + len(mirror.Kinds())
	// client-go re-opens each informer's watch after a random 5 to 10 minutes.
	budget := float64(informers) / 5
	t.Rows = [][]string{
		{"writes of the resync, all data-plane clusters", count(resync.total(ids, writeVerbs...)), "0"},
		{"writes of the resync, mesh cluster (status included)", count(resync.total([]string{meshCluster}, writeVerbs...)), "0"},
		{"reads (get, list) of the resync per data-plane cluster", reads.summary().cell(count), "–"},
		{"requests of the resync to the mesh cluster (GET)", count(resync[meshCluster]["get"]), "–"},
		{fmt.Sprintf("writes in %s of steady state, all clusters", window), count(steady.total(slices.Concat(ids, []string{meshCluster}), writeVerbs...)), "0"},
		{"informers per data-plane cluster (owned kinds, CRDs, Istio kinds)", fmt.Sprint(informers), "–"},
		{"watch streams opened per data-plane cluster while it was installed", opened.summary().cell(count), "–"},
		{"watch streams opened per minute per data-plane cluster, steady state", watches.summary().cell(rate), fmt.Sprintf("≤ %s (informers / 5 min)", rate(budget))},
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("%d clusters, installed and Ready. A forced resync is an annotation change of the ASMMeshConfig, which the operator answers with a reconcile of every cluster; "+
			"its requests are counted from just before until the counts have been still for 5 s. Per-cluster values are the median over clusters (min–max).", n),
		"Counts are client-side, from the manager's metrics: data-plane clusters by verb; the mesh's GETs are reads and watch streams together.")
	if _, err := f.setEntries(ctx, nil, 1); err != nil {
		return t, err
	}
	return t, f.waitRemoved(ctx)
}

// installQuiet gives the clusters ids a remote control plane of one replica, waits
// until all are Ready and the operator has stopped sending requests, and returns
// its request counts then: the figures measure from a settled fleet.
func (f *fleet) installQuiet(ctx context.Context, ids []string) (requests, error) {
	start := time.Now()
	gen, err := f.setEntries(ctx, ids, 1)
	if err != nil {
		return nil, err
	}
	if _, err := f.waitFor(ctx, start, ids, v1beta1.ConditionReady, gen); err != nil {
		return nil, err
	}
	return f.quiet(ctx)
}

// quietFor is how long the operator's request counts must stay still to call it quiet.
const quietFor = 5 * time.Second

// quiet waits until the operator's request counts have not changed for quietFor, and
// returns them.
func (f *fleet) quiet(ctx context.Context) (requests, error) {
	deadline := time.Now().Add(f.timeout)
	last, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return nil, err
	}
	since := time.Now()
	for time.Since(since) < quietFor {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the operator did not stop sending requests within %s", f.timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
		c, err := f.op.requestCounts(f.m.Mesh.Config.Host)
		if err != nil {
			return nil, err
		}
		if !maps.EqualFunc(c, last, func(a, b map[string]float64) bool { return maps.Equal(a, b) }) {
			last, since = c, time.Now()
		}
	}
	return last, nil
}

func rate(v float64) string { return fmt.Sprintf("%.2f", v) }
