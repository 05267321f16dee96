package main

import (
	"context"
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
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// runStandIn does in a data-plane cluster what envtest has nobody for, as hack/demo's
// stand-in does, until ctx ends: every Deployment of the control plane namespace (the
// operator's istiod, the gateways) reports its replicas of its current generation
// available, and once the operator's istiod is available its root certificate is
// published as istiod would. It watches rather than polls: many clusters share two
// cores with the operator, and polling them would weigh on the figures.
func runStandIn(ctx context.Context, c *localmesh.Cluster, logf func(string, ...any)) {
	wc, err := client.NewWithWatch(c.Config, client.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		logf("%s: stand-in: %v", c.ID, err)
		return
	}
	for ctx.Err() == nil {
		list := &appsv1.DeploymentList{}
		if err := wc.List(ctx, list, client.InNamespace(localmesh.Namespace)); err != nil {
			_ = sleep(ctx, time.Second)
			continue
		}
		for i := range list.Items {
			rollOut(ctx, c, &list.Items[i], logf)
		}
		w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(localmesh.Namespace),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			_ = sleep(ctx, time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				rollOut(ctx, c, d, logf)
			}
		}
		w.Stop()
	}
}

// rollOut marks a Deployment whose status is behind its spec as fully available.
func rollOut(ctx context.Context, c *localmesh.Cluster, d *appsv1.Deployment, logf func(string, ...any)) {
	n := ptr.Deref(d.Spec.Replicas, 1)
	want := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if d.Status.ObservedGeneration != want.ObservedGeneration || d.Status.AvailableReplicas != n ||
		d.Status.UpdatedReplicas != n || d.Status.ReadyReplicas != n {
		d.Status = want
		if err := c.Client.Status().Update(ctx, d); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			logf("%s: stand-in kubelet: %v", c.ID, err)
		}
	}
	if d.Name == "istiod" && d.Labels[render.ManagedByLabel] == render.ManagedByValue {
		if err := publishRootCert(ctx, c); err != nil && ctx.Err() == nil {
			logf("%s: stand-in istiod: %v", c.ID, err)
		}
	}
}

// publishRootCert makes istio-ca-root-cert hold the root certificate of the
// operator's cacerts, as istiod does when it starts.
func publishRootCert(ctx context.Context, c *localmesh.Cluster) error {
	cacerts := &corev1.Secret{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: "cacerts"}, cacerts); err != nil {
		return client.IgnoreNotFound(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: localmesh.RootCertConfigMap, Namespace: localmesh.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, c.Client, cm, func() error {
		cm.Data = map[string]string{"root-cert.pem": string(cacerts.Data[ca.RootCert])}
		return nil
	})
	return err
}
