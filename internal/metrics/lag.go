package metrics

import (
	"sync"
	"time"
)

// lag measures MirrorLag. The operator sees a change of the mesh's Istio configuration
// when its informer delivers it, and knows the change is in a cluster once a mirror pass
// that listed the sources after that moment has applied them. Per cluster it keeps the
// oldest change not yet applied: one observation per pass, its worst case.
var lag = &lagTracker{clusters: map[string]*clusterLag{}}

type lagTracker struct {
	mu       sync.Mutex
	clusters map[string]*clusterLag
}

type clusterLag struct {
	// oldest is the first change no completed pass included; zero when none.
	oldest time.Time
	// passStart is when the running pass listed the sources; sinceStart is the first
	// change after that, which the pass may have missed.
	passStart, sinceStart time.Time
}

// MeshConfigChanged records that a change of the mesh's Istio configuration was
// observed. Clusters that never began a mirror pass are not waiting for it: their first
// pass is an install, not a lag.
func MeshConfigChanged() {
	t := now()
	lag.mu.Lock()
	defer lag.mu.Unlock()
	for _, c := range lag.clusters {
		if c.oldest.IsZero() {
			c.oldest = t
		}
		if !c.passStart.IsZero() && c.sinceStart.IsZero() {
			c.sinceStart = t
		}
	}
}

// MirrorPassStarted is called right before a pass lists the mesh's configuration.
func MirrorPassStarted(id string) {
	t := now()
	lag.mu.Lock()
	defer lag.mu.Unlock()
	c := lag.clusters[id]
	if c == nil {
		c = &clusterLag{}
		lag.clusters[id] = c
	}
	c.passStart, c.sinceStart = t, time.Time{}
}

// MirrorSynced is called when the pass has applied what it listed. It observes the
// oldest change the pass included; a change that came during the pass waits for the next.
func MirrorSynced(id string) {
	t := now()
	lag.mu.Lock()
	defer lag.mu.Unlock()
	c := lag.clusters[id]
	if c == nil || c.passStart.IsZero() {
		return
	}
	if !c.oldest.IsZero() && !c.oldest.After(c.passStart) {
		MirrorLag.WithLabelValues(id).Observe(t.Sub(c.oldest).Seconds())
		c.oldest = c.sinceStart
	}
	c.passStart, c.sinceStart = time.Time{}, time.Time{}
}

func (l *lagTracker) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clusters, id)
}
