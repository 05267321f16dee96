package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
)

// isolation runs figure 7: n clusters are added at once, all healthy or with the
// first link refusing connections and the second hung, and the healthy others' time
// to converge is compared.
func isolation(ctx context.Context, f *fleet, n, runs int) (table, error) {
	t := table{Title: "Figure 7: isolation",
		Columns: []string{"links", "healthy clusters: all Applied", "all Ready", "operator CPU"}}
	if n < 3 {
		return t, errors.New("isolation needs at least 3 clusters")
	}
	if err := f.registerUpTo(ctx, n); err != nil {
		return t, err
	}
	ids := f.ids(n)
	healthy := ids[2:]
	var applied, ready, cpu [2]sample
	for run := range runs {
		for i, broken := range []bool{false, true} {
			a, r, c, err := isolationOnce(ctx, f, ids, healthy, broken)
			if err != nil {
				return t, fmt.Errorf("run %d (broken links: %t): %w", run+1, broken, err)
			}
			f.logf("figure 7, run %d, broken links %t: %d healthy clusters applied %s, ready %s, CPU %.1fs", run+1, broken, len(healthy), a, r, c)
			applied[i] = append(applied[i], a.Seconds())
			ready[i] = append(ready[i], r.Seconds())
			cpu[i] = append(cpu[i], c)
		}
	}
	names := []string{fmt.Sprintf("all %d up", n), fmt.Sprintf("%s refuses, %s hangs, %d up", ids[0], ids[1], n-2)}
	for i := range 2 {
		t.Rows = append(t.Rows, []string{names[i], applied[i].summary().cell(seconds), ready[i].summary().cell(seconds), cpu[i].summary().cell(cpuSeconds)})
	}
	t.Rows = append(t.Rows, []string{"ratio broken / all up",
		ratioCell(applied[1].summary().Median, applied[0].summary().Median, 1.2),
		ratioCell(ready[1].summary().Median, ready[0].summary().Median, 1.2), ""})
	t.Notes = append(t.Notes, fmt.Sprintf("Median of %d runs (min–max). Both cases add all %d clusters at once and time the same %d healthy ones; "+
		"with broken links, one link is down (connections refused, open ones cut) and one hung (connections accepted, nothing forwarded) from before the change.", runs, n, len(healthy)))
	return t, nil
}

func isolationOnce(ctx context.Context, f *fleet, ids, healthy []string, broken bool) (applied, ready time.Duration, cpu float64, err error) {
	links := []*farlink.Link{f.m.DataPlanes[0].Link, f.m.DataPlanes[1].Link}
	if broken {
		if err := errors.Join(links[0].SetMode(farlink.Down), links[1].SetMode(farlink.Hung)); err != nil {
			return 0, 0, 0, err
		}
	}
	defer func() {
		err = errors.Join(err, links[0].SetMode(farlink.Up), links[1].SetMode(farlink.Up))
		if _, e := f.setEntries(ctx, nil, 1); e != nil {
			err = errors.Join(err, e)
			return
		}
		err = errors.Join(err, f.waitRemoved(ctx))
	}()
	cpu0, err := f.op.cpuSeconds()
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	gen, err := f.setEntries(ctx, ids, 1)
	if err != nil {
		return 0, 0, 0, err
	}
	p, err := f.waitFor(ctx, start, healthy, v1beta1.ConditionApplied, gen)
	if err != nil {
		return 0, 0, 0, err
	}
	applied = p.latest()
	if p, err = f.waitFor(ctx, start, healthy, v1beta1.ConditionReady, gen); err != nil {
		return 0, 0, 0, err
	}
	ready = p.latest()
	cpu1, err := f.op.cpuSeconds()
	return applied, ready, cpu1 - cpu0, errors.Join(err, f.checkApplied(ctx, healthy, 1))
}
