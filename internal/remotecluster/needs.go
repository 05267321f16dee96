package remotecluster

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
)

// identityTimeout bounds the one read of a cluster's identity per connection.
const identityTimeout = 10 * time.Second

// SetNeeds says which clusters the operator works on. Clusters that became needed are
// connected at once, those no longer needed are disconnected (their caches stop); the
// others of the remote secrets stay listed but undialled.
func (p *Provider) SetNeeds(ctx context.Context, needs Needs) {
	p.mu.Lock()
	p.needs = needs
	type change struct {
		id string
		r  *remote
	}
	var changes []change
	for id, r := range p.clusters {
		if r.idle == needs.has(id) {
			changes = append(changes, change{id, r})
		}
	}
	p.mu.Unlock()
	for _, c := range changes {
		p.upsert(ctx, c.r.secret, c.id, c.r.kubeconfig)
	}
}

// dial builds the cluster's client and reads which API server it reaches.
func (p *Provider) dial(ctx context.Context, restCfg *rest.Config) (cluster.Cluster, string, error) {
	cl, err := cluster.New(restCfg, p.opts.ClusterOptions...)
	if err != nil {
		return nil, "", err
	}
	uid, err := kubeSystemUID(ctx, cl.GetAPIReader())
	if err != nil {
		return nil, "", err
	}
	return cl, uid, nil
}

// kubeSystemUID identifies a cluster by the UID of its kube-system Namespace, as
// istioctl does for a cluster's default name (istioctl/pkg/multicluster/cluster.go):
// two kubeconfigs reach one API server exactly when they read the same UID, whatever
// their URLs say. An API server that refuses it or lacks it gives "", unknown (a refused
// credential is then reported, and the client rebuilt once, by the cluster's probe as
// before); one that does not answer is an error, retried like any connection failure.
func kubeSystemUID(ctx context.Context, reader client.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	ns := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
	err := reader.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns)
	switch {
	case err == nil:
		return string(ns.UID), nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return "", nil
	default:
		return "", fmt.Errorf("reading Namespace %s: %w", metav1.NamespaceSystem, err)
	}
}

// MeshUID is the mesh cluster's kube-system Namespace UID, read once.
func (p *Provider) MeshUID(ctx context.Context) (string, error) {
	p.mu.RLock()
	uid, read := p.meshUID, p.meshUIDRead
	p.mu.RUnlock()
	if read {
		return uid, nil
	}
	uid, err := kubeSystemUID(ctx, p.mgr.GetLocalManager().GetAPIReader())
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.meshUID, p.meshUIDRead = uid, true
	p.mu.Unlock()
	return uid, nil
}
