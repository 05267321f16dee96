package remotecluster

import (
	"testing"

	"k8s.io/client-go/rest"
)

// TestRateLimitIsOnePerCluster checks that the provider's rate limit is on the client
// configuration of a cluster, and that every client built from it (client-go copies the
// configuration for each kind) draws from the same bucket.
func TestRateLimitIsOnePerCluster(t *testing.T) {
	p := New(Options{RateLimit: RateLimit{QPS: 7, Burst: 3}})
	cfg, err := p.RESTConfig("c", kubeconfig("{token: secret-token-value}"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != 7 || cfg.Burst != 3 || cfg.RateLimiter == nil || cfg.RateLimiter.QPS() != 7 {
		t.Fatalf("QPS %g, burst %d, limiter %v: want 7 and 3 in one limiter", cfg.QPS, cfg.Burst, cfg.RateLimiter)
	}
	a, b := rest.CopyConfig(cfg), rest.CopyConfig(cfg)
	for i := range 3 {
		if !a.RateLimiter.TryAccept() {
			t.Fatalf("request %d of the burst of 3 refused", i+1)
		}
	}
	if b.RateLimiter.TryAccept() {
		t.Error("a second client of the cluster has a bucket of its own: the burst was spent by the first")
	}
}

func TestRateLimitDefaultAndUnlimited(t *testing.T) {
	cfg, err := New(Options{}).RESTConfig("c", kubeconfig("{token: secret-token-value}"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimiter == nil || cfg.RateLimiter.QPS() != DefaultQPS || cfg.Burst != DefaultBurst {
		t.Errorf("without a limit set: QPS %g, burst %d; want the defaults %g and %d", cfg.QPS, cfg.Burst, DefaultQPS, DefaultBurst)
	}
	cfg, err = New(Options{RateLimit: RateLimit{QPS: -1}}).RESTConfig("c", kubeconfig("{token: secret-token-value}"))
	if err != nil {
		t.Fatal(err)
	}
	// client-go builds no limiter for a negative QPS.
	if cfg.RateLimiter != nil || cfg.QPS >= 0 {
		t.Errorf("negative QPS: limiter %v, QPS %g; want none", cfg.RateLimiter, cfg.QPS)
	}
}
