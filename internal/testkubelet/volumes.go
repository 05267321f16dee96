package testkubelet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// file is one file of a volume: its path inside the volume, content and mode.
type file struct {
	data []byte
	mode os.FileMode
}

// token is a ServiceAccount token the kubelet keeps fresh.
type token struct {
	issued   time.Time
	lifetime time.Duration
}

// mount is one volume mount of the container, materialised under the pod root and
// refreshed while the pod runs.
type mount struct {
	volume corev1.Volume
	mount  corev1.VolumeMount
	dir    string // absolute: root + mountPath
	// current is what was last written, to write only changes.
	current map[string]file
	// tokens by file name, for projected serviceAccountToken sources.
	tokens map[string]*token
	// extra files the kubelet adds to the volume (the CA of the API server).
	extra map[string]file
}

func sortStrings(s []string) { sort.Strings(s) }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func isConflict(err error) bool { return apierrors.IsConflict(err) }

func defaultMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m)
}

// keyFiles lays out the keys of a ConfigMap or Secret: every key, or only the listed
// items at their paths.
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode, optional bool, what string) (map[string]file, error) {
	out := map[string]file{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = file{data: v, mode: mode}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %s", what, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out[it.Path] = file{data: v, mode: m}
	}
	return out, nil
}

func (k *Kubelet) configMapData(ctx context.Context, ns, name string, opt bool) (map[string][]byte, error) {
	cm, err := k.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if opt && isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading ConfigMap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, nil
}

func (k *Kubelet) secretData(ctx context.Context, ns, name string, opt bool) (map[string][]byte, error) {
	s, err := k.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if opt && isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return s.Data, nil
}

// issueToken asks the TokenRequest API for a token of the pod's ServiceAccount. The
// token is not bound to a Pod object: there is none.
func (k *Kubelet) issueToken(ctx context.Context, p *podInfo, audiences []string, expiry int64) ([]byte, time.Duration, error) {
	tr, err := k.cs.CoreV1().ServiceAccounts(p.namespace).CreateToken(ctx, p.serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To(expiry)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("requesting a token of ServiceAccount %s/%s: %w", p.namespace, p.serviceAccount, err)
	}
	lifetime := time.Until(tr.Status.ExpirationTimestamp.Time)
	return []byte(tr.Status.Token), lifetime, nil
}

// files computes the volume's content now. Tokens are re-issued only at 80% of their
// lifetime, as the kubelet does.
func (k *Kubelet) files(ctx context.Context, p *podInfo, m *mount) (map[string]file, error) {
	v := m.volume.VolumeSource
	switch {
	case v.EmptyDir != nil:
		return nil, nil
	case v.ConfigMap != nil:
		data, err := k.configMapData(ctx, p.namespace, v.ConfigMap.Name, optional(v.ConfigMap.Optional))
		if err != nil {
			return nil, err
		}
		return keyFiles(data, v.ConfigMap.Items, defaultMode(v.ConfigMap.DefaultMode), optional(v.ConfigMap.Optional), "ConfigMap "+v.ConfigMap.Name)
	case v.Secret != nil:
		data, err := k.secretData(ctx, p.namespace, v.Secret.SecretName, optional(v.Secret.Optional))
		if err != nil {
			return nil, err
		}
		return keyFiles(data, v.Secret.Items, defaultMode(v.Secret.DefaultMode), optional(v.Secret.Optional), "Secret "+v.Secret.SecretName)
	case v.DownwardAPI != nil:
		return p.downwardFiles(v.DownwardAPI.Items, defaultMode(v.DownwardAPI.DefaultMode))
	case v.Projected != nil:
		out := map[string]file{}
		mode := defaultMode(v.Projected.DefaultMode)
		for _, src := range v.Projected.Sources {
			var part map[string]file
			var err error
			switch {
			case src.ServiceAccountToken != nil:
				part, err = k.tokenFile(ctx, p, m, src.ServiceAccountToken, mode)
			case src.ConfigMap != nil:
				var data map[string][]byte
				data, err = k.configMapData(ctx, p.namespace, src.ConfigMap.Name, optional(src.ConfigMap.Optional))
				if err == nil {
					part, err = keyFiles(data, src.ConfigMap.Items, mode, optional(src.ConfigMap.Optional), "ConfigMap "+src.ConfigMap.Name)
				}
			case src.Secret != nil:
				var data map[string][]byte
				data, err = k.secretData(ctx, p.namespace, src.Secret.Name, optional(src.Secret.Optional))
				if err == nil {
					part, err = keyFiles(data, src.Secret.Items, mode, optional(src.Secret.Optional), "Secret "+src.Secret.Name)
				}
			case src.DownwardAPI != nil:
				part, err = p.downwardFiles(src.DownwardAPI.Items, mode)
			default:
				err = fmt.Errorf("unsupported projected source")
			}
			if err != nil {
				return nil, err
			}
			for name, f := range part {
				out[name] = f
			}
		}
		for name, f := range m.extra {
			out[name] = f
		}
		return out, nil
	}
	return nil, fmt.Errorf("volume %s: unsupported volume type", m.volume.Name)
}

func (k *Kubelet) tokenFile(ctx context.Context, p *podInfo, m *mount, src *corev1.ServiceAccountTokenProjection, mode os.FileMode) (map[string]file, error) {
	expiry := int64(3600)
	if src.ExpirationSeconds != nil {
		expiry = *src.ExpirationSeconds
	}
	var audiences []string
	if src.Audience != "" {
		audiences = []string{src.Audience}
	}
	t := m.tokens[src.Path]
	if t != nil && time.Since(t.issued) < t.lifetime*8/10 {
		return map[string]file{src.Path: m.current[src.Path]}, nil
	}
	raw, lifetime, err := k.issueToken(ctx, p, audiences, expiry)
	if err != nil {
		return nil, err
	}
	if m.tokens == nil {
		m.tokens = map[string]*token{}
	}
	m.tokens[src.Path] = &token{issued: time.Now(), lifetime: lifetime}
	return map[string]file{src.Path: {data: raw, mode: mode}}, nil
}

func (p *podInfo) downwardFiles(items []corev1.DownwardAPIVolumeFile, mode os.FileMode) (map[string]file, error) {
	out := map[string]file{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = p.fieldValue(it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = p.resourceValue(it.ResourceFieldRef)
		default:
			err = fmt.Errorf("downwardAPI item %s has no source", it.Path)
		}
		if err != nil {
			return nil, err
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out[it.Path] = file{data: []byte(v), mode: m}
	}
	return out, nil
}

// sync brings a mounted volume up to date. Files are written as the kubelet's atomic
// writer does: into a new timestamped directory, published by renaming the ..data
// symlink, with each top-level entry a symlink through ..data, so a reader (istiod's
// file watchers) sees either the old or the new set, never a mix.
func (k *Kubelet) sync(ctx context.Context, p *podInfo, m *mount) (changed bool, err error) {
	want, err := k.files(ctx, p, m)
	if err != nil {
		return false, err
	}
	if m.volume.EmptyDir != nil {
		if m.current == nil {
			m.current = map[string]file{}
			return true, os.MkdirAll(m.dir, 0o755)
		}
		return false, nil
	}
	if m.mount.SubPath != "" {
		return k.syncSubPath(m, want)
	}
	if m.current != nil && sameFiles(m.current, want) {
		return false, nil
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return false, err
	}
	ts := filepath.Join(m.dir, fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), time.Now().UnixNano()%1e9))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return false, err
	}
	for name, f := range want {
		path := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(path, f.data, f.mode.Perm()); err != nil {
			return false, err
		}
	}
	tmpLink := filepath.Join(m.dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		return false, err
	}
	old, _ := os.Readlink(filepath.Join(m.dir, "..data"))
	if err := os.Rename(tmpLink, filepath.Join(m.dir, "..data")); err != nil {
		return false, err
	}
	top := map[string]bool{}
	for name := range want {
		top[strings.Split(filepath.ToSlash(name), "/")[0]] = true
	}
	for name := range top {
		link := filepath.Join(m.dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return false, err
		}
	}
	for name := range m.current {
		first := strings.Split(filepath.ToSlash(name), "/")[0]
		if !top[first] {
			_ = os.Remove(filepath.Join(m.dir, first))
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(m.dir, old))
	}
	m.current = want
	return true, nil
}

// syncSubPath writes one entry of the volume at the mount path. Like the kubelet's
// subPath mounts, it is written once and never updated.
func (k *Kubelet) syncSubPath(m *mount, want map[string]file) (bool, error) {
	if m.current != nil {
		return false, nil
	}
	m.current = want
	f, ok := want[m.mount.SubPath]
	if !ok {
		return true, os.MkdirAll(m.dir, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(m.dir), 0o755); err != nil {
		return false, err
	}
	return true, os.WriteFile(m.dir, f.data, f.mode.Perm())
}

func sameFiles(a, b map[string]file) bool {
	if len(a) != len(b) {
		return false
	}
	for name, f := range a {
		g, ok := b[name]
		if !ok || f.mode != g.mode || !bytes.Equal(f.data, g.data) {
			return false
		}
	}
	return true
}
