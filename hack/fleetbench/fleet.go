package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// fleet is the local mesh with the operator running, and what the benchmark changes.
type fleet struct {
	m          *localmesh.Mesh
	op         *operator
	registered int // the first registered data-plane clusters have remote secrets
	logf       func(format string, args ...any)
	// timeout bounds every wait for the operator.
	timeout time.Duration
	// profiles is where figure 4 leaves the manager's heap profiles.
	profiles string
	// applied is figure 1's median time to all Applied by N, for figure 2's ratio.
	applied map[int]float64
}

// poll is how often the benchmark reads the ASMMeshConfig's status: one GET on the
// mesh API server, which is not behind a far link.
const poll = 100 * time.Millisecond

// ids are the IDs of the first n data-plane clusters.
func (f *fleet) ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = f.m.DataPlanes[i].ID
	}
	return out
}

// registerUpTo gives the first n data-plane clusters remote secrets and waits until
// the operator is quiet. It connects to a cluster only once an entry names it, so the
// change of the ASMMeshConfig that adds clusters includes connecting to them.
func (f *fleet) registerUpTo(ctx context.Context, n int) error {
	for ; f.registered < n; f.registered++ {
		if err := f.m.Register(ctx, f.m.DataPlanes[f.registered]); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(f.timeout)
	var last requests
	for stable := 0; stable < 20; { // two seconds without new requests
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not settle after %d remote secrets within %s", n, f.timeout)
		}
		c, err := f.op.requestCounts(f.m.Mesh.Config.Host)
		if err != nil {
			return err
		}
		if maps.EqualFunc(c, last, func(a, b map[string]float64) bool { return maps.Equal(a, b) }) {
			stable++
		} else {
			stable = 0
		}
		last = c
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
	return nil
}

// setEntries makes the ASMMeshConfig ask for a remote control plane with replicas in
// each of ids (none: no entries), and returns its new generation.
func (f *fleet) setEntries(ctx context.Context, ids []string, replicas int32) (int64, error) {
	entries := map[string]v1beta1.ExternalIstiodConfiguration{}
	for _, id := range ids {
		entries[id] = v1beta1.ExternalIstiodConfiguration{Replicas: ptr.To(replicas)}
	}
	mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	// The operator writes the object too (its finalizer, its status): retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := f.m.Mesh.Client.Get(ctx, client.ObjectKeyFromObject(mc), mc)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		mc.Spec.ExternalIstiodConfigurations = entries
		if err != nil {
			return f.m.Mesh.Client.Create(ctx, mc)
		}
		return f.m.Mesh.Client.Update(ctx, mc)
	})
	return mc.Generation, err
}

// touch changes an annotation of the ASMMeshConfig, which makes the operator
// reconcile every cluster: a forced resync.
func (f *fleet) touch(ctx context.Context) error {
	mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"fleetbench/resync":%q}}}`, time.Now().Format(time.RFC3339Nano))
	return f.m.Mesh.Client.Patch(ctx, mc, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// progress is when each cluster first reported a condition at a generation.
type progress map[string]time.Duration

// waitFor waits until every cluster of ids reports condition True for generation gen
// or later, and returns when each did, counted from start.
func (f *fleet) waitFor(ctx context.Context, start time.Time, ids []string, condition string, gen int64) (progress, error) {
	reached := progress{}
	deadline := start.Add(f.timeout)
	for len(reached) < len(ids) {
		mc := &v1beta1.ASMMeshConfig{}
		if err := f.m.Mesh.Client.Get(ctx, types.NamespacedName{Name: "default"}, mc); err != nil {
			return reached, err
		}
		now := time.Since(start)
		for _, st := range mc.Status.Clusters {
			if _, done := reached[st.ClusterID]; done || !slices.Contains(ids, st.ClusterID) {
				continue
			}
			c := meta.FindStatusCondition(st.Conditions, condition)
			if c != nil && c.Status == metav1.ConditionTrue && max(c.ObservedGeneration, st.ObservedGeneration) >= gen {
				reached[st.ClusterID] = now
			}
		}
		if time.Now().After(deadline) {
			return reached, fmt.Errorf("after %s only %d of %d clusters report %s at generation %d", f.timeout, len(reached), len(ids), condition, gen)
		}
		if err := sleep(ctx, poll); err != nil {
			return reached, err
		}
	}
	return reached, nil
}

// waitRemoved waits until the status lists no cluster: every removed entry switched
// back and cleaned up.
func (f *fleet) waitRemoved(ctx context.Context) error {
	deadline := time.Now().Add(f.timeout)
	for {
		mc := &v1beta1.ASMMeshConfig{}
		if err := f.m.Mesh.Client.Get(ctx, types.NamespacedName{Name: "default"}, mc); err != nil {
			return client.IgnoreNotFound(err)
		}
		if len(mc.Status.Clusters) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d clusters still in the status %s after their entries went", len(mc.Status.Clusters), f.timeout)
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// checkApplied reads, in each cluster's own API server, that the operator's istiod
// Deployment is there with the replicas asked for: what the status reported is what
// the data plane holds.
func (f *fleet) checkApplied(ctx context.Context, ids []string, replicas int32) error {
	for _, dp := range f.m.DataPlanes {
		if !slices.Contains(ids, dp.ID) {
			continue
		}
		d := &appsv1.Deployment{}
		if err := dp.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: "istiod"}, d); err != nil {
			return fmt.Errorf("%s: %w", dp.ID, err)
		}
		if d.Labels[render.ManagedByLabel] != render.ManagedByValue || ptr.Deref(d.Spec.Replicas, 1) != replicas {
			return fmt.Errorf("%s: istiod is not the operator's with %d replicas (labels %v, replicas %d)",
				dp.ID, replicas, d.Labels, ptr.Deref(d.Spec.Replicas, 1))
		}
	}
	return nil
}

// probe reads the control plane namespace of cluster id through its far link every
// half second until ctx ends, and returns the mean time of a read in seconds.
func (f *fleet) probe(ctx context.Context, id string) float64 {
	var c client.Client
	for _, dp := range f.m.DataPlanes {
		if dp.ID == id {
			cfg := rest.CopyConfig(dp.Config)
			cfg.Host = "https://" + dp.Link.Addr()
			var err error
			if c, err = client.New(cfg, client.Options{Scheme: dp.Client.Scheme()}); err != nil {
				return 0
			}
		}
	}
	var total time.Duration
	var n int
	for ctx.Err() == nil {
		start := time.Now()
		if err := c.Get(ctx, types.NamespacedName{Name: localmesh.Namespace}, &corev1.Namespace{}); err == nil {
			total += time.Since(start)
			n++
		}
		_ = sleep(ctx, 500*time.Millisecond)
	}
	if n == 0 {
		return 0
	}
	return total.Seconds() / float64(n)
}

// latest is the time by which every cluster had reached.
func (p progress) latest() time.Duration {
	var t time.Duration
	for _, d := range p {
		t = max(t, d)
	}
	return t
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// createAll creates object(from) to object(to-1) in the mesh cluster, 8 at once (its API
// server is local); objects already there are fine.
func createAll(ctx context.Context, c client.Client, from, to int, object func(i int) client.Object) error {
	errs := make([]error, to-from)
	workqueue.ParallelizeUntil(ctx, 8, to-from, func(i int) {
		errs[i] = client.IgnoreAlreadyExists(c.Create(ctx, object(from+i)))
	})
	return errors.Join(append(errs, ctx.Err())...)
}
