package apply

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestApplyNeverTakesOverForeignObjects: the reader is a cache that holds only the
// operator's objects, so it cannot see the remote profile's Service istiod; Apply must
// find it in the live cluster, refuse, and write nothing at all.
func TestApplyNeverTakesOverForeignObjects(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	own := Ownership{Labels: map[string]string{"managed-by": "us", "cluster": "c2"}, ManagedByKey: "managed-by", ManagedByValue: "us"}
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod",
		Labels: map[string]string{"managed-by": "Helm"}}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"}}
	var lists, writes atomic.Int32
	live := fake.NewClientBuilder().WithScheme(scheme).WithObjects(foreign).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, l, o...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, o ...client.ApplyOption) error {
			writes.Add(1)
			return c.Apply(ctx, obj, o...)
		},
	}).Build()
	cache := fake.NewClientBuilder().WithScheme(scheme).Build() // sees nothing foreign

	rendered := func(name string) client.Object {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name, Labels: own.Labels},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod"}, Ports: []corev1.ServicePort{{Name: "grpc", Port: 15012}}}}
		svc.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
		return svc
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio", Labels: own.Labels}}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))

	_, err := New().Apply(context.Background(), "c2", cache, live, live, own, []client.Object{cm, rendered("istiod")})
	var notOwned *NotOwnedError
	if !errors.As(err, &notOwned) || notOwned.Name != "istiod" || notOwned.Kind != "Service" {
		t.Fatalf("Apply over a foreign Service: err = %v, want NotOwnedError for Service istiod", err)
	}
	if writes.Load() != 0 {
		t.Fatalf("Apply wrote %d objects although one of them was foreign", writes.Load())
	}
	got := &corev1.Service{}
	if err := live.Get(context.Background(), client.ObjectKeyFromObject(foreign), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Type != corev1.ServiceTypeExternalName || got.Labels["managed-by"] != "Helm" {
		t.Fatalf("the foreign Service changed: %+v", got)
	}
	if lists.Load() != 2 {
		t.Fatalf("confirming absence took %d Lists, want one per kind (2)", lists.Load())
	}

	// Without the foreign object in the way, the same objects are created.
	lists.Store(0)
	res, err := New().Apply(context.Background(), "c2", cache, live, live, own, []client.Object{cm, rendered("istiod-local")})
	if err != nil {
		t.Fatalf("Apply of objects nobody has: %v", err)
	}
	if res.Created != 2 {
		t.Fatalf("created %d objects, want 2", res.Created)
	}
}
