package main

import (
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	memcache "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// restGetter is the RESTClientGetter Helm's action.Configuration takes, for one
// cluster's rest.Config: what `helm --kube-context` builds from a kubeconfig, with
// discovery cached in memory for the getter's life (one install), not on disk.
type restGetter struct {
	cfg       *rest.Config
	namespace string
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

func newRESTGetter(cfg *rest.Config, namespace string) (*restGetter, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cached := memcache.NewMemCacheClient(dc)
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	return &restGetter{cfg: cfg, namespace: namespace, discovery: cached, mapper: mapper}, nil
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}

func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }

func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return namespaceConfig{g} }

// namespaceConfig is the kubeconfig side of restGetter: Helm's client asks it for the
// default namespace and the rest.Config.
type namespaceConfig struct{ g *restGetter }

func (c namespaceConfig) RawConfig() (clientcmdapi.Config, error) { return clientcmdapi.Config{}, nil }
func (c namespaceConfig) ClientConfig() (*rest.Config, error)     { return c.g.ToRESTConfig() }
func (c namespaceConfig) Namespace() (string, bool, error)        { return c.g.namespace, true, nil }
func (c namespaceConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}

// requestClasses counts the requests of one Helm client by what they are for, and
// the time they took (from the request until its body was closed).
type requestClasses struct {
	mu    sync.Mutex
	count map[string]int
	time  map[string]time.Duration
	// open is how many requests are in flight now, peak the most at once.
	open, peak int
}

// Classes of requests (classify).
const (
	classDiscovery = "discovery"
	classRelease   = "release"
	classObjects   = "objects"
)

// wrap is a rest.Config WrapTransport that counts each request.
func (r *requestClasses) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		class, start := classify(req.URL.Path), time.Now()
		r.begin()
		resp, err := rt.RoundTrip(req)
		if err != nil || resp.Body == nil {
			r.add(class, time.Since(start))
			return resp, err
		}
		resp.Body = &timedBody{ReadCloser: resp.Body, done: func() { r.add(class, time.Since(start)) }}
		return resp, nil
	})
}

func (r *requestClasses) begin() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open++
	r.peak = max(r.peak, r.open)
}

func (r *requestClasses) add(class string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open--
	if r.count == nil {
		r.count, r.time = map[string]int{}, map[string]time.Duration{}
	}
	r.count[class]++
	r.time[class] += d
}

// snapshot is the counts, times and peak so far.
func (r *requestClasses) snapshot() (map[string]int, map[string]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.count), maps.Clone(r.time), r.peak
}

// timedBody calls done once, when the body is closed.
type timedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// classify tells discovery (/version, /api, /apis and their group versions, OpenAPI),
// Helm's release storage (Secrets) and the release's objects apart by a request's path.
func classify(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case parts[0] == "version" || parts[0] == "openapi":
		return classDiscovery
	case parts[0] == "api" && len(parts) <= 2, parts[0] == "apis" && len(parts) <= 3:
		return classDiscovery
	}
	for i, p := range parts {
		if p == "secrets" && i > 0 {
			return classRelease
		}
	}
	return classObjects
}
