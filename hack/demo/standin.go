package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// rootCertConfigMap is where a running istiod publishes its root certificate.
const rootCertConfigMap = localmesh.RootCertConfigMap

// runStandIn does in a cluster what envtest has nobody for, until ctx ends: what the
// Deployment controller and the kubelet would (every Deployment, the mesh istiod of
// Istio's chart and the gateways included, reports its replicas of its current
// generation available) and what the operator's istiod would once started (publish
// the root certificate of the cacerts the operator gave it). The mesh istiod's root
// certificate in the data-plane clusters is localmesh's, as installed.
func runStandIn(ctx context.Context, c *localmesh.Cluster, out *printer) {
	announced := false
	_ = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if rolled, err := rollOut(ctx, c); err != nil {
			out.line("%s: stand-in kubelet: %v", c.ID, err)
		} else if len(rolled) > 0 {
			out.line("%s: in place of a kubelet, marked available: %s", c.ID, strings.Join(rolled, ", "))
		}
		if published, err := publishRootCert(ctx, c); err != nil {
			out.line("%s: stand-in istiod: %v", c.ID, err)
		} else if published && !announced {
			announced = true
			out.line("%s: in place of istiod, published its root certificate (of the cacerts the operator issued) in ConfigMap %s/%s",
				c.ID, localmesh.Namespace, rootCertConfigMap)
		}
		return false, nil
	})
}

// rollOut marks every Deployment whose status is behind its spec as fully available,
// and returns their names.
func rollOut(ctx context.Context, c *localmesh.Cluster) ([]string, error) {
	list := &appsv1.DeploymentList{}
	if err := c.Client.List(ctx, list); err != nil {
		return nil, err
	}
	var rolled []string
	for i := range list.Items {
		d := &list.Items[i]
		n := ptr.Deref(d.Spec.Replicas, 1)
		want := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		if d.Status.ObservedGeneration == want.ObservedGeneration && d.Status.AvailableReplicas == n &&
			d.Status.UpdatedReplicas == n && d.Status.ReadyReplicas == n {
			continue
		}
		d.Status = want
		if err := c.Client.Status().Update(ctx, d); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue // changed meanwhile: the next pass sees it
			}
			return rolled, err
		}
		rolled = append(rolled, fmt.Sprintf("%s/%s %d/%d", d.Namespace, d.Name, n, n))
	}
	return rolled, nil
}

// publishRootCert makes istio-ca-root-cert hold the root certificate of the
// operator's cacerts once the operator's istiod is available, as istiod does when it
// starts; it reports whether istiod has published.
func publishRootCert(ctx context.Context, c *localmesh.Cluster) (bool, error) {
	istiod := &appsv1.Deployment{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: "istiod"}, istiod); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if istiod.Labels[render.ManagedByLabel] != render.ManagedByValue || istiod.Status.AvailableReplicas == 0 {
		return false, nil
	}
	cacerts := &corev1.Secret{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: localmesh.Namespace, Name: "cacerts"}, cacerts); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: rootCertConfigMap, Namespace: localmesh.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, c.Client, cm, func() error {
		cm.Data = map[string]string{"root-cert.pem": string(cacerts.Data[ca.RootCert])}
		return nil
	})
	return err == nil, err
}
