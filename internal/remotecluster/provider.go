// Package remotecluster turns the mesh's Istio remote secrets into engaged
// multicluster-runtime clusters: one owner for every remote client and cache.
package remotecluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	mcmanager "sigs.k8s.io/multicluster-runtime/pkg/manager"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

// RemoteSecretLabel marks Istio remote secrets (istioctl create-remote-secret).
const RemoteSecretLabel = "istio/multiCluster"

// Options configure the provider.
type Options struct {
	// Namespace holds the remote secrets (the control plane namespace).
	Namespace string
	// ClusterOptions are passed to cluster.New for every remote cluster, for example a
	// cache restricted to the objects the operator owns.
	ClusterOptions []cluster.Option
	// Kubeconfigs says what the kubeconfigs of remote secrets may use.
	Kubeconfigs KubeconfigPolicy
	// RateLimit limits the requests to each cluster; zero is the default.
	RateLimit RateLimit
}

// State says whether a cluster ID can be used, and why not when it cannot.
type State struct {
	// Cluster is set when the cluster is engaged.
	Cluster cluster.Cluster
	// Secret is the remote secret the cluster ID comes from.
	Secret string
	// Problem explains why a cluster ID found in a remote secret cannot be used.
	Problem string
	// Connecting is set while a remote secret provides the cluster ID but the provider
	// has not engaged it yet, for example right after the operator started.
	Connecting bool
	// ConnectError is why the provider could not connect to the cluster yet; it keeps
	// retrying with capped backoff (at most a minute apart).
	ConnectError error
	// Idle is set when a remote secret provides the cluster ID but nothing needs the
	// cluster (SetNeeds), so the provider does not connect to it.
	Idle bool
	// UID identifies the API server the cluster's client reaches: the UID of its
	// kube-system Namespace, read once per connection; empty when it cannot be read.
	UID string
	// FirstConnected orders the cluster IDs by when the provider first connected each
	// to the API server UID names (lower is earlier; kept across rebuilt clients); 0
	// while not connected. Of two new IDs of one API server, the first connected keeps it.
	FirstConnected uint64
}

// Needs are the clusters the operator works on and so connects to: the others that
// remote secrets provide are listed, never dialled.
type Needs struct {
	// IDs are needed cluster IDs (entries, clusters still being removed).
	IDs map[string]bool
	// All makes every cluster of a remote secret needed (mutual access: a peer is
	// every other cluster of the mesh).
	All bool
}

func (n Needs) has(id string) bool { return n.All || n.IDs[id] }

type remote struct {
	secret     types.NamespacedName
	hash       string
	kubeconfig []byte
	problem    string
	// connectErr is why the last attempt to build the cluster's client failed; the
	// provider keeps retrying.
	connectErr error
	// reauthenticated is set once the client was rebuilt for a 401.
	reauthenticated bool
	// idle: listed from its secret, not connected, as nothing needs it.
	idle    bool
	uid     string
	cluster cluster.Cluster
	cancel  context.CancelFunc
}

// Provider engages one cluster per data key of the remote secrets, for the cluster IDs
// the operator needs (SetNeeds); it lists the others without connecting to them. It
// implements multicluster.Provider; cluster names are Istio cluster IDs.
type Provider struct {
	opts    Options
	log     logr.Logger
	mgr     mcmanager.Manager
	changes chan event.TypedGenericEvent[string]

	// running lives as long as the manager runs: the clusters' caches and watches are
	// tied to it, not to the reconcile that connected them.
	running context.Context

	mu       sync.RWMutex
	clusters map[string]*remote
	indexers []func(context.Context, cluster.Cluster) error
	// needs says which clusters to connect to; nothing until SetNeeds is first called.
	needs Needs
	// meshUID is the mesh cluster's kube-system Namespace UID once read ("" when the
	// operator may not read it).
	meshUID     string
	meshUIDRead bool
	// firstConnected numbers each cluster ID's first connection to an API server, in
	// order (State.FirstConnected); connections counts them.
	firstConnected map[string]connection
	connections    uint64
}

// connection is when (in order) a cluster ID was first connected to API server uid.
type connection struct {
	uid string
	seq uint64
}

var _ multicluster.Provider = &Provider{}

// New returns a provider; call SetupWithManager before the manager starts.
func New(opts Options) *Provider {
	return &Provider{
		opts:     opts,
		log:      ctrl.Log.WithName("remote-clusters"),
		changes:  make(chan event.TypedGenericEvent[string], 256),
		clusters: map[string]*remote{},

		firstConnected: map[string]connection{},
	}
}

// Changes receives a cluster ID whenever that cluster is engaged, replaced, disengaged
// or found unusable, so controllers reconcile it without polling.
func (p *Provider) Changes() <-chan event.TypedGenericEvent[string] { return p.changes }

// Get returns the engaged cluster with this ID.
func (p *Provider) Get(_ context.Context, name multicluster.ClusterName) (cluster.Cluster, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if r, ok := p.clusters[string(name)]; ok && r.cluster != nil {
		return r.cluster, nil
	}
	return nil, multicluster.ErrClusterNotFound
}

// Lookup reports what the remote secrets say about a cluster ID. It tells a cluster ID
// that no remote secret provides from one whose secret has not been processed yet.
func (p *Provider) Lookup(ctx context.Context, id string) (State, bool, error) {
	p.mu.RLock()
	r, ok := p.clusters[id]
	p.mu.RUnlock()
	if ok {
		p.mu.RLock()
		defer p.mu.RUnlock()
		st := State{Cluster: r.cluster, Secret: r.secret.Name, Problem: r.problem, ConnectError: r.connectErr, Idle: r.idle, UID: r.uid,
			Connecting: r.cluster == nil && r.problem == "" && r.connectErr == nil}
		if r.cluster != nil {
			st.FirstConnected = p.firstConnected[id].seq
		}
		return st, true, nil
	}
	secrets := &corev1.SecretList{}
	if err := p.mgr.GetLocalManager().GetClient().List(ctx, secrets, client.InNamespace(p.opts.Namespace),
		client.MatchingLabels{RemoteSecretLabel: "true"}); err != nil {
		return State{}, false, err
	}
	for _, s := range secrets.Items {
		if _, has := s.Data[id]; has && s.DeletionTimestamp == nil {
			return State{Secret: s.Name, Connecting: true}, true, nil
		}
	}
	return State{}, false, nil
}

// Engaged lists the cluster IDs with a usable client, sorted.
func (p *Provider) Engaged() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var ids []string
	for id, r := range p.clusters {
		if r.cluster != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// IndexField indexes a field on every engaged cluster, present and future.
func (p *Provider) IndexField(ctx context.Context, obj client.Object, field string, extract client.IndexerFunc) error {
	index := func(ctx context.Context, cl cluster.Cluster) error {
		return cl.GetFieldIndexer().IndexField(ctx, obj, field, extract)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.indexers = append(p.indexers, index)
	for id, r := range p.clusters {
		if r.cluster == nil {
			continue
		}
		if err := index(ctx, r.cluster); err != nil {
			return fmt.Errorf("indexing %s in cluster %s: %w", field, id, err)
		}
	}
	return nil
}

// SetupWithManager watches remote secrets through the mesh cluster's manager.
func (p *Provider) SetupWithManager(mgr mcmanager.Manager) error {
	p.mgr = mgr
	if err := mgr.GetLocalManager().Add(manager.RunnableFunc(func(ctx context.Context) error {
		p.mu.Lock()
		p.running = ctx
		p.mu.Unlock()
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	isRemoteSecret := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == p.opts.Namespace && o.GetLabels()[RemoteSecretLabel] == "true"
	})
	return ctrl.NewControllerManagedBy(mgr.GetLocalManager()).
		Named("remote-secrets").
		For(&corev1.Secret{}, builder.WithPredicates(isRemoteSecret)).
		Complete(p)
}

// Reconcile brings the engaged clusters in line with one remote secret.
func (p *Provider) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	secret := &corev1.Secret{}
	err := p.mgr.GetLocalManager().GetClient().Get(ctx, req.NamespacedName, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return ctrl.Result{}, err
	case secret.DeletionTimestamp != nil || secret.Labels[RemoteSecretLabel] != "true":
		secret = nil
	}
	var data map[string][]byte
	if secret != nil {
		data = secret.Data
	}

	// Cluster IDs this secret no longer provides are disconnected.
	for _, id := range p.idsFromSecret(req.NamespacedName) {
		if _, still := data[id]; !still {
			p.log.Info("remote secret no longer provides cluster; disconnecting", "cluster", id, "secret", req.Name)
			p.remove(ctx, id)
			p.mu.Lock()
			delete(p.firstConnected, id) // a secret that provides it again connects it as new
			p.mu.Unlock()
		}
	}
	ids := make([]string, 0, len(data))
	for id := range data {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p.upsert(ctx, req.NamespacedName, id, data[id])
	}
	return ctrl.Result{}, nil
}

func (p *Provider) idsFromSecret(name types.NamespacedName) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var ids []string
	for id, r := range p.clusters {
		if r.secret == name {
			ids = append(ids, id)
		}
	}
	return ids
}

func (p *Provider) upsert(ctx context.Context, secret types.NamespacedName, id string, kubeconfig []byte) {
	log := p.log.WithValues("cluster", id, "secret", secret.Name)
	sum := sha256.Sum256(kubeconfig)
	hash := hex.EncodeToString(sum[:])

	p.mu.RLock()
	existing, found := p.clusters[id]
	needed := p.needs.has(id)
	p.mu.RUnlock()
	if found && existing.secret != secret {
		// Two secrets claim one cluster ID; the first one keeps it, as with Istio.
		log.Info("cluster ID is provided by more than one remote secret; keeping the first", "kept", existing.secret.Name)
		return
	}
	if found && existing.hash == hash && existing.idle == !needed {
		return
	}
	if found {
		switch {
		case existing.hash != hash:
			log.Info("kubeconfig changed; rebuilding the cluster client")
		case needed:
			log.Info("cluster is needed; connecting")
		default:
			log.Info("cluster is no longer needed; disconnecting")
		}
		p.remove(ctx, id)
	}

	next := &remote{secret: secret, hash: hash, kubeconfig: kubeconfig, idle: !needed}
	if found {
		next.reauthenticated = existing.reauthenticated && existing.hash == hash
	}
	if !needed {
		// Listed, so that status can tell "no remote secret" from this, but no client,
		// no cache and no request: a remote secret can make the operator dial nothing
		// until an entry names its cluster ID.
		p.store(id, next)
		return
	}
	restCfg, err := p.RESTConfig(id, kubeconfig)
	if err != nil {
		next.problem = fmt.Sprintf("the kubeconfig for cluster %q in remote secret %s/%s cannot be used: %v", id, secret.Namespace, secret.Name, err)
		log.Info("remote secret has an unusable kubeconfig", "reason", err.Error())
		p.store(id, next)
		p.notify(ctx, id)
		return
	}
	clusterCtx, cancel := context.WithCancel(p.lifetime(ctx))
	next.cancel = cancel
	p.store(id, next)
	go p.connect(clusterCtx, log, id, next, restCfg)
	p.notify(ctx, id)
}

// Retry delays of a cluster whose API server cannot be reached: capped, so that a
// cluster is connected again within a minute of its link coming back.
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

// connect builds the cluster's client and cache, retrying with capped backoff while its
// API server cannot be reached (building them reads the API server's discovery), then
// starts the cache and engages the cluster. Removing the cluster cancels ctx.
func (p *Provider) connect(ctx context.Context, log logr.Logger, id string, next *remote, restCfg *rest.Config) {
	delay := firstRetry
	var cl cluster.Cluster
	var uid string
	for {
		var err error
		if cl, uid, err = p.dial(ctx, restCfg); err == nil {
			break
		}
		first := p.setConnectError(id, next, err)
		log.Info("cannot connect to the remote cluster; retrying", "after", delay, "reason", err.Error())
		if first {
			p.notify(ctx, id)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetry)
	}
	if err := p.runIndexers(ctx, cl); err != nil {
		log.Error(err, "indexing remote cluster")
	}
	if !p.setCluster(id, next, cl, uid) {
		return // replaced or removed meanwhile
	}
	go func() {
		if err := cl.Start(ctx); err != nil {
			log.Error(err, "remote cluster stopped")
		}
	}()
	// Engaging starts the controllers' watches in this cluster, and starting a watch
	// can wait for the cluster (unreachable, or refusing the list). It runs on its own,
	// so one such cluster never holds up the remote secrets of the others; removing the
	// cluster cancels it.
	go func() {
		if err := p.mgr.Engage(ctx, multicluster.ClusterName(id), cl); err != nil && ctx.Err() == nil {
			log.Error(err, "engaging remote cluster")
			return
		}
		log.Info("remote cluster engaged")
	}()
	p.notify(ctx, id)
}

// setConnectError records why the cluster cannot be connected; it reports whether
// this is news (the first failure, or a different kind of failure).
func (p *Provider) setConnectError(id string, r *remote, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clusters[id] != r {
		return false
	}
	news := r.connectErr == nil || ConnectFailure(r.connectErr) != ConnectFailure(err)
	r.connectErr = err
	return news
}

func (p *Provider) setCluster(id string, r *remote, cl cluster.Cluster, uid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clusters[id] != r {
		return false
	}
	r.cluster, r.connectErr, r.uid = cl, nil, uid
	if c, ok := p.firstConnected[id]; !ok || c.uid != uid {
		p.connections++
		p.firstConnected[id] = connection{uid: uid, seq: p.connections}
	}
	return true
}

// Reauthenticate rebuilds the client of a cluster whose API server refused its
// credentials (HTTP 401), once per kubeconfig: a client built again reads its
// credentials again. It reports whether it did; when it already had, the refusal
// stands until the remote secret changes.
func (p *Provider) Reauthenticate(ctx context.Context, id string) bool {
	p.mu.Lock()
	r, ok := p.clusters[id]
	if !ok || r.reauthenticated || r.cluster == nil || r.idle {
		p.mu.Unlock()
		return false
	}
	r.reauthenticated = true
	p.mu.Unlock()
	p.log.Info("the remote cluster refused the operator's credentials; rebuilding its client once", "cluster", id)
	p.remove(ctx, id)
	p.upsert(ctx, r.secret, id, r.kubeconfig)
	p.mu.Lock()
	if n, ok := p.clusters[id]; ok {
		n.reauthenticated = true
	}
	p.mu.Unlock()
	return true
}

// lifetime is the manager's run context once it runs, else ctx.
func (p *Provider) lifetime(ctx context.Context) context.Context {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.running != nil {
		return p.running
	}
	return ctx
}

func (p *Provider) runIndexers(ctx context.Context, cl cluster.Cluster) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, index := range p.indexers {
		if err := index(ctx, cl); err != nil {
			return err
		}
	}
	return nil
}

func (p *Provider) store(id string, r *remote) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clusters[id] = r
}

func (p *Provider) remove(ctx context.Context, id string) {
	p.mu.Lock()
	r, ok := p.clusters[id]
	delete(p.clusters, id)
	p.mu.Unlock()
	if !ok {
		return
	}
	if r.cancel != nil {
		r.cancel() // stops the cluster's cache and disengages its watches
	}
	metrics.ForgetConnection(id)
	p.notify(ctx, id)
}

func (p *Provider) notify(ctx context.Context, id string) {
	select {
	case p.changes <- event.TypedGenericEvent[string]{Object: id}:
	case <-ctx.Done():
	}
}
