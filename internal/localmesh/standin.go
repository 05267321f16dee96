package localmesh

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// StandInOptions say where a stand-in works and whom it tells.
type StandInOptions struct {
	// AllNamespaces rolls out the Deployments of every namespace (workloads such as
	// httpbin too), not only those of the control plane namespace.
	AllNamespaces bool
	// Logf is told the errors the stand-in meets; it goes on after each.
	Logf func(format string, args ...any)
	// RolledOut, when set, is told the Deployments just marked available, as
	// "namespace/name ready/replicas".
	RolledOut func(deployments []string)
	// Published, when set, is told each time the root certificate was published.
	Published func()
}

// RunStandIn does in c what envtest has nobody for, until ctx ends: what the
// Deployment controller and the kubelet would (every Deployment reports its replicas
// of its current generation available) and what the operator's istiod would once
// available (publish the root certificate of the cacerts the operator gave it in
// ConfigMap RootCertConfigMap). It watches rather than polls: many clusters may share
// two cores with the operator, and polling them would weigh on what is measured.
func (c *Cluster) RunStandIn(ctx context.Context, opts StandInOptions) {
	s := &standIn{c: c, opts: opts}
	if s.opts.Logf == nil {
		s.opts.Logf = func(string, ...any) {}
	}
	wc, err := client.NewWithWatch(c.Config, client.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		s.opts.Logf("%s: stand-in: %v", c.ID, err)
		return
	}
	var where []client.ListOption
	if !opts.AllNamespaces {
		where = append(where, client.InNamespace(Namespace))
	}
	for ctx.Err() == nil {
		list := &appsv1.DeploymentList{}
		if err := wc.List(ctx, list, where...); err != nil {
			s.retry(ctx, err)
			continue
		}
		var rolled []string
		for i := range list.Items {
			rolled = append(rolled, s.handle(ctx, &list.Items[i])...)
		}
		s.tell(rolled)
		// From the list's version on, so that no change between the two is missed.
		w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, append(where,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
		if err != nil {
			s.retry(ctx, err)
			continue
		}
		for ev := range w.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				s.tell(s.handle(ctx, d))
			}
		}
		w.Stop()
	}
}

type standIn struct {
	c    *Cluster
	opts StandInOptions
}

// retry reports err, unless ctx ended, and waits a second before the next list.
func (s *standIn) retry(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.opts.Logf("%s: stand-in: %v", s.c.ID, err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func (s *standIn) tell(rolled []string) {
	if len(rolled) > 0 && s.opts.RolledOut != nil {
		s.opts.RolledOut(rolled)
	}
}

// handle rolls d out and, when d is the operator's available istiod, publishes the
// root certificate; it returns d as RolledOut names it if it marked d available.
func (s *standIn) handle(ctx context.Context, d *appsv1.Deployment) []string {
	rolled, err := s.rollOut(ctx, d)
	if err != nil && ctx.Err() == nil {
		s.opts.Logf("%s: stand-in kubelet: %v", s.c.ID, err)
	}
	if d.Namespace == Namespace && d.Name == "istiod" && d.Labels[render.ManagedByLabel] == render.ManagedByValue &&
		d.Status.AvailableReplicas > 0 {
		published, err := s.publishRootCert(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logf("%s: stand-in istiod: %v", s.c.ID, err)
		}
		if published && s.opts.Published != nil {
			s.opts.Published()
		}
	}
	return rolled
}

// rollOut marks d fully available if its status is behind its spec. A conflict or
// a deletion meanwhile is no error: the watch brings the newer state.
func (s *standIn) rollOut(ctx context.Context, d *appsv1.Deployment) ([]string, error) {
	n := ptr.Deref(d.Spec.Replicas, 1)
	want := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if d.Status.ObservedGeneration == want.ObservedGeneration && d.Status.AvailableReplicas == n &&
		d.Status.UpdatedReplicas == n && d.Status.ReadyReplicas == n {
		return nil, nil
	}
	d.Status = want
	if err := s.c.Client.Status().Update(ctx, d); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return []string{fmt.Sprintf("%s/%s %d/%d", d.Namespace, d.Name, n, n)}, nil
}

// publishRootCert makes RootCertConfigMap hold the root certificate of the
// operator's cacerts, as istiod does when it starts; it reports whether it has.
func (s *standIn) publishRootCert(ctx context.Context) (bool, error) {
	cacerts := &corev1.Secret{}
	if err := s.c.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: "cacerts"}, cacerts); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Namespace: Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, s.c.Client, cm, func() error {
		cm.Data = map[string]string{"root-cert.pem": string(cacerts.Data[ca.RootCert])}
		return nil
	})
	return err == nil, err
}
