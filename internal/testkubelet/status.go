package testkubelet

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// desiredStatus is the Deployment's status as the deployment controller would write it
// for the current pod: every replica is the one process, so all are updated at once
// and ready (available after minReadySeconds) when it is.
func (k *Kubelet) desiredStatus(d *appsv1.Deployment, replicas int32) appsv1.DeploymentStatus {
	now := metav1.Now()
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation}
	p := k.pod
	rs := fmt.Sprintf("%s-%s", d.Name, templateHash(&d.Spec.Template))
	if p != nil && replicas > 0 {
		st.Replicas, st.UpdatedReplicas = replicas, replicas
		if p.ready && p.cmd != nil {
			st.ReadyReplicas = replicas
			if time.Since(p.since) >= time.Duration(d.Spec.MinReadySeconds)*time.Second {
				st.AvailableReplicas = replicas
			}
		}
		st.UnavailableReplicas = replicas - st.AvailableReplicas
	}
	available := corev1.ConditionFalse
	reason, msg := "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
	if st.AvailableReplicas >= replicas {
		available = corev1.ConditionTrue
		reason, msg = "MinimumReplicasAvailable", "Deployment has minimum availability."
	}
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
		Reason: "ReplicaSetUpdated", Message: fmt.Sprintf("ReplicaSet %q is progressing.", rs)}
	if st.AvailableReplicas >= replicas {
		progressing.Reason = "NewReplicaSetAvailable"
		progressing.Message = fmt.Sprintf("ReplicaSet %q has successfully progressed.", rs)
	} else if old := condition(d.Status.Conditions, appsv1.DeploymentProgressing); old != nil && d.Spec.ProgressDeadlineSeconds != nil &&
		old.Reason == "ReplicaSetUpdated" && time.Since(old.LastUpdateTime.Time) > time.Duration(*d.Spec.ProgressDeadlineSeconds)*time.Second {
		progressing.Status, progressing.Reason = corev1.ConditionFalse, "ProgressDeadlineExceeded"
		progressing.Message = fmt.Sprintf("ReplicaSet %q has timed out progressing.", rs)
	}
	st.Conditions = []appsv1.DeploymentCondition{
		{Type: appsv1.DeploymentAvailable, Status: available, Reason: reason, Message: msg},
		progressing,
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.LastUpdateTime, c.LastTransitionTime = now, now
		if old := condition(d.Status.Conditions, c.Type); old != nil {
			if old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
			if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
				c.LastUpdateTime = old.LastUpdateTime
			}
		}
	}
	return st
}

func condition(cs []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// writeStatus updates the Deployment's status when it differs from what it reads.
func (k *Kubelet) writeStatus(ctx context.Context, d *appsv1.Deployment, replicas int32) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		want := k.desiredStatus(d, replicas)
		if equality.Semantic.DeepEqual(d.Status, want) {
			return nil
		}
		d = d.DeepCopy()
		d.Status = want
		_, err := k.cs.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		if err == nil || !isConflict(err) {
			return err
		}
		fresh, gerr := k.cs.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		d = fresh
		return err
	})
}
