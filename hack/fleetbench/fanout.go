package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// fanOutRun is one run of figure 1 at one N.
type fanOutRun struct {
	// applied: from the change that adds every cluster until each reports Applied;
	// ready: until each is Ready (mirrored, istiod available, switched);
	// replicas: from a replicas change of every entry until each applied it.
	applied, ready, replicas time.Duration
	// cpuAdd and cpuReplicas are the operator's CPU seconds over those phases.
	cpuAdd, cpuReplicas float64
	// requests is the median over clusters of the requests each received while added.
	requests float64
	// latency is the mean time of the benchmark's probe reads through a link.
	latency float64
}

// fanOut runs figure 1: it adds the first n clusters to the ASMMeshConfig at once,
// changes their replicas, and removes them again, runs times for each n.
func fanOut(ctx context.Context, f *fleet, ns []int, runs int) (table, error) {
	t := table{Title: "Figure 1: fan-out convergence",
		Columns: []string{"N", "add: all Applied", "add: all Ready", "operator CPU (add)", "requests per cluster (add)", "probe read through a link (add)", "replicas change: all Applied", "operator CPU (replicas)", "T(N)/T(1) add", "T(N)/T(1) replicas"}}
	var base1, base2 float64
	for _, n := range ns {
		if err := f.registerUpTo(ctx, n); err != nil {
			return t, err
		}
		var applied, ready, replicas, cpuAdd, cpuRep, reqs, lat sample
		for run := range runs {
			r, err := fanOutOnce(ctx, f, n)
			if err != nil {
				return t, fmt.Errorf("with %d clusters, run %d: %w", n, run+1, err)
			}
			f.logf("figure 1, N=%d run %d: applied %s, ready %s, replicas %s, CPU %.1fs + %.1fs",
				n, run+1, r.applied, r.ready, r.replicas, r.cpuAdd, r.cpuReplicas)
			applied = append(applied, r.applied.Seconds())
			ready = append(ready, r.ready.Seconds())
			replicas = append(replicas, r.replicas.Seconds())
			cpuAdd = append(cpuAdd, r.cpuAdd)
			cpuRep = append(cpuRep, r.cpuReplicas)
			reqs = append(reqs, r.requests)
			lat = append(lat, r.latency)
		}
		a, p := applied.summary(), replicas.summary()
		f.applied[n] = a.Median
		if n == ns[0] {
			base1, base2 = a.Median, p.Median
		}
		t.Rows = append(t.Rows, []string{fmt.Sprint(n), a.cell(seconds), ready.summary().cell(seconds),
			cpuAdd.summary().cell(cpuSeconds), reqs.summary().cell(count), lat.summary().cell(seconds), p.cell(seconds), cpuRep.summary().cell(cpuSeconds),
			ratioCell(a.Median, base1, 1.5), ratioCell(p.Median, base2, 1.5)})
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("Median of %d runs (min–max). Ratios are of medians against the first N; the goal, T(8)/T(1) ≤ 1.5, applies at N = 8.", runs),
		"Applied and Ready are read from the ASMMeshConfig's status (every cluster at the new generation); after each phase the benchmark checks in every data-plane API server that the operator's istiod Deployment is there with the replicas asked for.",
		"Requests per cluster are those the operator sent to each data-plane cluster from the change until every cluster was Ready (median over clusters), watches included.",
		"The probe is the benchmark reading one Namespace of the last cluster through its far link every half second while the clusters are added (mean): "+
			"the link's round trip plus the API server's time. When it grows with N as T does, the API servers (the machine) set the pace, not the operator's scheduling.",
		"Operator CPU is the manager process's user+system time over the phase (/proc); the API servers are other processes.")
	return t, nil
}

func fanOutOnce(ctx context.Context, f *fleet, n int) (fanOutRun, error) {
	var r fanOutRun
	ids := f.ids(n)
	cpu0, err := f.op.cpuSeconds()
	if err != nil {
		return r, err
	}
	c0, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return r, err
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probed := make(chan float64, 1)
	go func() { probed <- f.probe(probeCtx, ids[len(ids)-1]) }()
	start := time.Now()
	gen, err := f.setEntries(ctx, ids, 1)
	if err != nil {
		return r, err
	}
	p, err := f.waitFor(ctx, start, ids, v1beta1.ConditionApplied, gen)
	if err != nil {
		return r, err
	}
	r.applied = p.latest()
	if p, err = f.waitFor(ctx, start, ids, v1beta1.ConditionReady, gen); err != nil {
		return r, err
	}
	r.ready = p.latest()
	cpu1, err := f.op.cpuSeconds()
	if err != nil {
		return r, err
	}
	c1, err := f.op.requestCounts(f.m.Mesh.Config.Host)
	if err != nil {
		return r, err
	}
	var perCluster sample
	added := c1.sub(c0)
	for _, id := range ids {
		perCluster = append(perCluster, sumValues(added[id]))
	}
	r.requests = perCluster.summary().Median
	stopProbe()
	r.latency = <-probed
	if err := f.checkApplied(ctx, ids, 1); err != nil {
		return r, err
	}
	start = time.Now()
	if gen, err = f.setEntries(ctx, ids, 2); err != nil {
		return r, err
	}
	if p, err = f.waitFor(ctx, start, ids, v1beta1.ConditionApplied, gen); err != nil {
		return r, err
	}
	r.replicas = p.latest()
	cpu2, err := f.op.cpuSeconds()
	if err != nil {
		return r, err
	}
	if err := f.checkApplied(ctx, ids, 2); err != nil {
		return r, err
	}
	r.cpuAdd, r.cpuReplicas = cpu1-cpu0, cpu2-cpu1
	if _, err := f.setEntries(ctx, nil, 1); err != nil {
		return r, err
	}
	return r, f.waitRemoved(ctx)
}

func sumValues(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

func cpuSeconds(v float64) string { return fmt.Sprintf("%.1f s", v) }
