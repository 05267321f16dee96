package testkubelet

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podInfo is what a kubelet knows about the pod it runs: the fields the downward API
// and fieldRef can read.
type podInfo struct {
	name, namespace, uid string
	serviceAccount       string
	nodeName             string
	labels, annotations  map[string]string
	container            *corev1.Container
}

// podIP is the pod's address: the process listens on loopback only.
const podIP = "127.0.0.1"

func (p *podInfo) fieldValue(path string) (string, error) {
	switch path {
	case "metadata.name":
		return p.name, nil
	case "metadata.namespace":
		return p.namespace, nil
	case "metadata.uid":
		return p.uid, nil
	case "spec.serviceAccountName":
		return p.serviceAccount, nil
	case "spec.nodeName":
		return p.nodeName, nil
	case "status.podIP", "status.hostIP":
		return podIP, nil
	case "status.podIPs", "status.hostIPs":
		return podIP, nil
	case "metadata.labels":
		return formatMap(p.labels), nil
	case "metadata.annotations":
		return formatMap(p.annotations), nil
	}
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(path, prefix) && strings.HasSuffix(path, "']") {
			key := strings.TrimSuffix(strings.TrimPrefix(path, prefix), "']")
			if strings.HasPrefix(prefix, "metadata.labels") {
				return p.labels[key], nil
			}
			return p.annotations[key], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// formatMap prints labels or annotations as the downward API does: key="value" lines,
// sorted by key.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%s", k, strconv.Quote(m[k]))
	}
	return b.String()
}

// resourceValue resolves a resourceFieldRef as the kubelet does: the container's limit,
// or the node's capacity when it has none (this machine's CPUs and memory), or its
// request, rounded up to whole multiples of the divisor.
func (p *podInfo) resourceValue(sel *corev1.ResourceFieldSelector) (string, error) {
	c := p.container
	if sel.ContainerName != "" && sel.ContainerName != c.Name {
		return "", fmt.Errorf("resourceFieldRef of container %q is not supported", sel.ContainerName)
	}
	divisor := sel.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var q resource.Quantity
	switch sel.Resource {
	case "limits.cpu", "limits.memory", "limits.ephemeral-storage":
		name := corev1.ResourceName(strings.TrimPrefix(sel.Resource, "limits."))
		if l, ok := c.Resources.Limits[name]; ok {
			q = l
		} else {
			q = nodeCapacity(name)
		}
	case "requests.cpu", "requests.memory", "requests.ephemeral-storage":
		name := corev1.ResourceName(strings.TrimPrefix(sel.Resource, "requests."))
		if r, ok := c.Resources.Requests[name]; ok {
			q = r
		} else if l, ok := c.Resources.Limits[name]; ok {
			q = l
		}
	default:
		return "", fmt.Errorf("unsupported resourceFieldRef %q", sel.Resource)
	}
	if strings.HasSuffix(sel.Resource, ".cpu") {
		v := int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))
		if v == 0 && strings.HasPrefix(sel.Resource, "limits.") {
			v = 1
		}
		return strconv.FormatInt(v, 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

func nodeCapacity(name corev1.ResourceName) resource.Quantity {
	switch name {
	case corev1.ResourceCPU:
		return *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
	case corev1.ResourceMemory:
		return *resource.NewQuantity(memTotal(), resource.BinarySI)
	}
	return resource.Quantity{}
}

// memTotal is this machine's memory, from /proc/meminfo (8Gi when it cannot be read).
func memTotal() int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 8 << 30
}

// resolveEnv computes the container's environment as a kubelet would: envFrom first,
// then env in order, each value expanding $(VAR) references to variables defined
// before it.
func (k *Kubelet) resolveEnv(ctx context.Context, p *podInfo) ([]string, map[string]string, error) {
	c := p.container
	values := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := values[name]; !ok {
			order = append(order, name)
		}
		values[name] = value
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := k.cs.CoreV1().ConfigMaps(p.namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if optional(from.ConfigMapRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom ConfigMap %s: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := k.cs.CoreV1().Secrets(p.namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if optional(from.SecretRef.Optional) && isNotFound(err) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom Secret %s: %w", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for key, v := range s.Data {
				data[key] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		sortStrings(keys)
		for _, key := range keys {
			set(from.Prefix+key, data[key])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, values))
			continue
		}
		v, skip, err := k.envSource(ctx, p, e.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if !skip {
			set(e.Name, v)
		}
	}
	env := make([]string, 0, len(order))
	for _, name := range order {
		env = append(env, name+"="+values[name])
	}
	return env, values, nil
}

func (k *Kubelet) envSource(ctx context.Context, p *podInfo, src *corev1.EnvVarSource) (value string, skip bool, err error) {
	switch {
	case src.FieldRef != nil:
		v, err := p.fieldValue(src.FieldRef.FieldPath)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := p.resourceValue(src.ResourceFieldRef)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := k.cs.CoreV1().ConfigMaps(p.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if optional(ref.Optional) && isNotFound(err) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("reading ConfigMap %s: %w", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, ok := cm.BinaryData[ref.Key]; ok {
				return string(b), false, nil
			}
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("key %s not in ConfigMap %s", ref.Key, ref.Name)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := k.cs.CoreV1().Secrets(p.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if optional(ref.Optional) && isNotFound(err) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("reading Secret %s: %w", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("key %s not in Secret %s", ref.Key, ref.Name)
		}
		return string(v), false, nil
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

// expand replaces $(VAR) with the value of VAR when it is defined, and $$ with $, as
// Kubernetes does for env values, command and args; unknown references stay as written.
func expand(s string, values map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := values[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func optional(b *bool) bool { return b != nil && *b }
