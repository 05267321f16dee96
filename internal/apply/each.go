package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HashAnnotation holds the hash of the content an object was last applied with (the
// annotation itself left out). It makes an object that is already right recognisable
// from a metadata-only List, also to an operator that just started and remembers
// nothing, so a restart re-sends nothing.
const HashAnnotation = "istio.alibabacloud.com/applied-hash"

// ObjectError is the failure of one object.
type ObjectError struct {
	Kind, Namespace, Name string
	Err                   error
}

func (e *ObjectError) Error() string {
	where := e.Name
	if e.Namespace != "" {
		where = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("%s %s: %v", e.Kind, where, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Refused says the cluster turned a write down for what it is (invalid, forbidden by
// admission or RBAC, too large) or because a same-named object is not the operator's:
// sending it again changes nothing until someone acts.
func Refused(err error) bool {
	var notOwned *NotOwnedError
	return errors.As(err, &notOwned) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) ||
		apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsMethodNotSupported(err)
}

// Plan is what ApplyEach will send, worked out from a Snapshot without a request.
type Plan struct {
	writes []pending
	// Unchanged objects are in the cluster as they would be written.
	Unchanged int
	// NotOwned objects have a same-named object in the cluster that the operator did
	// not create; they are never written.
	NotOwned []*ObjectError
	// Unserved objects are of a kind the snapshot could not list (its CRD is not
	// served yet); they are not sent.
	Unserved int
}

// Writes is how many objects ApplyEach will send.
func (p *Plan) Writes() int { return len(p.writes) }

// PlanEach compares each object with its live metadata in the snapshot. An object is
// unchanged when the live one is the operator's, carries the object's labels and
// annotations (HashAnnotation included) and nobody changed its content since it was
// applied: its generation is the one this applier got back, or, for an object this
// applier never wrote (a restart), no other field manager owns anything but metadata.
func (a *Applier) PlanEach(cluster string, live *Snapshot, own Ownership, objs []client.Object) (*Plan, error) {
	p := &Plan{}
	for _, obj := range objs {
		gvk := obj.GetObjectKind().GroupVersionKind()
		u, hash, err := hashedCopy(obj)
		if err != nil {
			return nil, err
		}
		objs, listed := live.kinds[gvk]
		if !listed {
			p.Unserved++
			continue
		}
		found := objs[types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}]
		if found != nil && found.Labels[own.ManagedByKey] != own.ManagedByValue {
			p.NotOwned = append(p.NotOwned, &ObjectError{Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName(),
				Err: &NotOwnedError{Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}})
			continue
		}
		key := memoryKey(cluster, gvk, obj.GetNamespace(), obj.GetName())
		if found != nil && a.upToDate(key, hash, u, found) {
			p.Unchanged++
			continue
		}
		p.writes = append(p.writes, pending{key: key, hash: hash, obj: u, create: found == nil})
	}
	return p, nil
}

// unstructuredCopy is obj as an unstructured object that can be changed without
// changing obj.
func unstructuredCopy(obj client.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.DeepCopy(), nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: content}, nil
}

// hashedCopy is obj as it is sent: an unstructured copy with its HashAnnotation, and
// that hash.
func hashedCopy(obj client.Object) (*unstructured.Unstructured, string, error) {
	u, err := unstructuredCopy(obj)
	if err != nil {
		return nil, "", err
	}
	hash, err := contentHash(u)
	return u, hash, err
}

// contentHash strips what the server sets, hashes the rest and records the hash in
// HashAnnotation.
func contentHash(u *unstructured.Unstructured) (string, error) {
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	annotations := u.GetAnnotations()
	delete(annotations, HashAnnotation)
	u.SetAnnotations(annotations)
	raw, err := json.Marshal(u.Object) // map keys marshal sorted: the same content, the same hash
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:16])
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[HashAnnotation] = hash
	u.SetAnnotations(annotations)
	return hash, nil
}

func (a *Applier) upToDate(key, hash string, want *unstructured.Unstructured, live *metav1.PartialObjectMetadata) bool {
	if !contains(live.Labels, want.GetLabels()) || !contains(live.Annotations, want.GetAnnotations()) {
		return false
	}
	if last := a.remembered(key); last.hash == hash {
		return last.version == liveVersion(live)
	}
	if changedByOthers(live) {
		return false
	}
	a.remember(key, known(hash, live))
	return true
}

func contains(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// changedByOthers says another field manager owns content of the object (anything but
// metadata and status), which it can only have by changing it.
func changedByOthers(live *metav1.PartialObjectMetadata) bool {
	for _, m := range live.ManagedFields {
		if m.Manager == FieldOwner || m.Subresource != "" || m.FieldsV1 == nil {
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(m.FieldsV1.GetRawBytes(), &fields); err != nil {
			return true
		}
		for f := range fields {
			if f != "f:metadata" && f != "f:status" {
				return true
			}
		}
	}
	return false
}

// EachResult is what one ApplyEach did.
type EachResult struct {
	// Created and Updated objects were written.
	Created, Updated int
	// Failed writes, one error each; Refused tells those the cluster turned down.
	Failed []*ObjectError
	// NotSent writes were left when the context ended.
	NotSent int
}

// ApplyEach sends the plan's writes with server-side apply, workers at a time, each on
// its own: one that fails does not stop the others. What it does not reach before ctx
// ends is NotSent; what it wrote is recognised by the next plan, even of a new Applier.
func (a *Applier) ApplyEach(ctx context.Context, writer client.Client, p *Plan, workers int) EachResult {
	errs := make([]error, len(p.writes))
	sent := make([]bool, len(p.writes))
	workqueue.ParallelizeUntil(ctx, workers, len(p.writes), func(i int) {
		w := p.writes[i]
		sent[i] = true
		if err := writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(w.obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			errs[i] = err
			return
		}
		a.remember(w.key, known(w.hash, w.obj)) // w.obj now holds the server's answer
	})
	var res EachResult
	for i, w := range p.writes {
		switch {
		case !sent[i]:
			res.NotSent++
		case errs[i] != nil:
			res.Failed = append(res.Failed, &ObjectError{Kind: w.obj.GetKind(), Namespace: w.obj.GetNamespace(), Name: w.obj.GetName(), Err: errs[i]})
		case w.create:
			res.Created++
		default:
			res.Updated++
		}
	}
	return res
}
