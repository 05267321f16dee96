// Package testkubelet is a minimal stand-in for a kubelet (and the deployment
// controller) for tests against a real API server such as envtest's, which runs no
// pods. It runs the istiod of one Deployment as a real local pilot-discovery process.
//
// From the Deployment's pod template it takes the container named "discovery": its args
// and env (values, fieldRef, resourceFieldRef, ConfigMap and Secret keys, $(VAR)
// expansion) and its volumes (configMap, secret, emptyDir, downwardAPI and projected
// ones with serviceAccountToken, configMap, secret and downwardAPI sources), written
// under a per-pod root directory at each mount path relative to that root. The process
// runs with the root as working directory, because istiod reads its files through
// relative paths (./etc/cacerts, ./var/run/secrets/tokens/istio-token, ...). ConfigMap
// and Secret volumes are kept up to date while the process runs, and tokens are
// re-issued at 80% of their lifetime.
//
// istiod talks to the API server with a kubeconfig that holds a TokenRequest token of
// the pod's ServiceAccount (in place of the in-cluster config a pod would use), so the
// process has exactly the permissions the Deployment's RBAC grants; the administrator's
// credentials given to the kubelet never reach it. It listens on free loopback ports,
// passed with pilot-discovery's address flags (see Addresses). Standing in for
// kube-proxy, it forwards the loopback ClusterIP ports of the Services that select the
// pod to the process while it is ready, so the API server reaches istiod's webhooks.
//
// The kubelet polls istiod's readiness endpoint and writes the Deployment's status as
// the kubelet and deployment controller would together. A changed pod template restarts
// the process (stop, then start: there is no surge); deletion or scaling to 0 stops it.
// It runs one process however many replicas the Deployment asks for, and reports all
// of them as that process is. No Pod or ReplicaSet objects are created.
package testkubelet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// ContainerName is the container of the pod template that is run.
const ContainerName = "discovery"

// Options say what to run and where.
type Options struct {
	// Config is an administrator's config of the API server, used by the kubelet only.
	Config *rest.Config
	// Binary is the path of pilot-discovery.
	Binary string
	// Namespace and Name of the Deployment.
	Namespace, Name string
	// Dir holds the pod roots (one subdirectory per pod); a new temporary directory
	// when empty. It is left in place on Stop, for the logs.
	Dir string
	// NodeName is spec.nodeName of the pod ("testkubelet" when empty).
	NodeName string
	// Interval between two syncs (readiness probe, volumes, status); 500ms when zero.
	Interval time.Duration
	// GracePeriod between SIGTERM and SIGKILL on Stop and restarts; 10s when zero.
	GracePeriod time.Duration
	// Logf receives the kubelet's own events (starts, stops, errors); silent when nil.
	Logf func(format string, args ...any)
}

// Addresses are where the running istiod listens, as host:port on loopback.
type Addresses struct {
	// HTTP is the debug and readiness server (--httpAddr, 8080 in a pod).
	HTTP string
	// GRPC is plain-text xDS (--grpcAddr, 15010).
	GRPC string
	// SecureGRPC is xDS and the CA over TLS (--secureGRPCAddr, 15012).
	SecureGRPC string
	// HTTPS serves the injection and validation webhooks (--httpsAddr, 15017).
	HTTPS string
	// Monitoring serves metrics (--monitoringAddr, 15014).
	Monitoring string
	// CtrlZ is the ControlZ introspection page (--ctrlz_address and --ctrlz_port, 9876).
	CtrlZ string
}

// Kubelet runs one Deployment's istiod. Create it with Start.
type Kubelet struct {
	opts   Options
	cs     kubernetes.Interface
	cancel context.CancelFunc
	done   chan struct{}

	svc services

	mu      sync.Mutex
	pod     *pod
	started int // processes started, restarts included
	lastErr error
}

// pod is one incarnation of the pod template: a root directory and a process.
type pod struct {
	info       podInfo
	hash       string
	generation int64
	root       string
	logPath    string
	log        *os.File
	kubeconfig string
	mounts     []*mount
	addrs      Addresses
	// ports maps the container's ports (number and name) to the local address.
	ports    map[string]string
	args     []string
	env      []string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitedAt time.Time
	restarts int
	ready    bool
	// since is when the process became ready (for minReadySeconds).
	since time.Time
	// refreshed is when the volumes were last brought up to date.
	refreshed time.Time
}

// volumeResync is how often the volumes of a running pod are compared with their
// ConfigMaps and Secrets (a kubelet takes up to a minute).
const volumeResync = 2 * time.Second

// Start begins running the Deployment's istiod. The process starts as soon as the
// Deployment exists with at least one replica; Ready and Addresses tell when it runs.
func Start(opts Options) (*Kubelet, error) {
	if opts.Config == nil || opts.Binary == "" || opts.Namespace == "" || opts.Name == "" {
		return nil, errors.New("testkubelet: Config, Binary, Namespace and Name are required")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("testkubelet: %w", err)
	}
	if opts.Interval == 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.GracePeriod == 0 {
		opts.GracePeriod = 10 * time.Second
	}
	if opts.NodeName == "" {
		opts.NodeName = "testkubelet"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "testkubelet-")
		if err != nil {
			return nil, err
		}
		opts.Dir = dir
	}
	cs, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{opts: opts, cs: cs, cancel: cancel, done: make(chan struct{})}
	go k.run(ctx)
	return k, nil
}

// Stop ends the process (SIGTERM, then SIGKILL after the grace period) and the kubelet.
// The Deployment's status is left as it was last written.
func (k *Kubelet) Stop() {
	k.cancel()
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopPod()
	k.svc.close()
}

// Addresses of the running process; ok is false when none runs.
func (k *Kubelet) Addresses() (addrs Addresses, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pod == nil || k.pod.cmd == nil {
		return Addresses{}, false
	}
	return k.pod.addrs, true
}

// Ready reports whether the current process passes its readiness probe.
func (k *Kubelet) Ready() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pod != nil && k.pod.ready
}

// Root is the current pod's root directory ("" when there is no pod).
func (k *Kubelet) Root() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pod == nil {
		return ""
	}
	return k.pod.root
}

// Starts counts the processes started so far, restarts included.
func (k *Kubelet) Starts() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.started
}

// Err is the last error of the kubelet itself (a volume it could not write, a token it
// could not get), nil after a sync without one.
func (k *Kubelet) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// Logs returns the standard output and error of the current pod's process (of every
// run of it, restarts included), or of the last pod when none runs.
func (k *Kubelet) Logs() string {
	k.mu.Lock()
	path := ""
	if k.pod != nil {
		path = k.pod.logPath
	} else {
		path = k.lastLog()
	}
	k.mu.Unlock()
	if path == "" {
		return ""
	}
	raw, _ := os.ReadFile(path)
	return string(raw)
}

func (k *Kubelet) lastLog() string {
	matches, _ := filepath.Glob(filepath.Join(k.opts.Dir, "*", "istiod.log"))
	var newest string
	var at time.Time
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.ModTime().After(at) {
			newest, at = m, st.ModTime()
		}
	}
	return newest
}

func (k *Kubelet) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(k.opts.Interval)
	defer t.Stop()
	for {
		k.mu.Lock()
		err := k.syncOnce(ctx)
		k.lastErr = err
		k.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			k.opts.Logf("testkubelet %s/%s: %v", k.opts.Namespace, k.opts.Name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func templateHash(t *corev1.PodTemplateSpec) string {
	raw, _ := json.Marshal(t)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])[:10]
}

// syncOnce is one pass of the kubelet and the deployment controller. Called with mu held.
func (k *Kubelet) syncOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := k.cs.AppsV1().Deployments(k.opts.Namespace).Get(rctx, k.opts.Name, metav1.GetOptions{})
	if isNotFound(err) {
		k.stopPod()
		k.syncServices(rctx, nil)
		return nil
	}
	if err != nil {
		return err
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas == 0 || d.DeletionTimestamp != nil {
		k.stopPod()
		k.syncServices(rctx, nil)
		return k.writeStatus(rctx, d, replicas)
	}
	hash := templateHash(&d.Spec.Template)
	if k.pod != nil && k.pod.hash != hash {
		k.opts.Logf("testkubelet %s/%s: pod template changed (generation %d), restarting istiod", d.Namespace, d.Name, d.Generation)
		k.stopPod()
		k.syncServices(rctx, nil)
	}
	if k.pod == nil {
		p, err := k.newPod(d, hash)
		if err != nil {
			_ = k.writeStatus(rctx, d, replicas)
			return err
		}
		k.pod = p
	}
	p := k.pod
	p.generation = d.Generation
	var syncErr error
	if p.cmd == nil || time.Since(p.refreshed) >= volumeResync {
		if err := k.refresh(rctx, p); err != nil {
			syncErr = err
		} else {
			p.refreshed = time.Now()
		}
	}
	if p.cmd == nil {
		// Volumes first, as a kubelet mounts them before it starts the container.
		if syncErr == nil {
			syncErr = k.startProcess(p)
		}
	} else {
		select {
		case <-p.exited:
			p.ready = false
			// restartPolicy Always, with the kubelet's back-off (10s doubling, up to 5m).
			backoff := min(10*time.Second<<min(p.restarts, 5), 5*time.Minute)
			if time.Since(p.exitedAt) >= backoff {
				p.restarts++
				k.opts.Logf("testkubelet %s/%s: istiod exited (%v), restart %d", d.Namespace, d.Name, p.cmd.ProcessState, p.restarts)
				p.cmd = nil
				if syncErr == nil {
					syncErr = k.startProcess(p)
				}
			}
		default:
			k.probe(p)
		}
	}
	k.syncServices(rctx, p)
	if err := k.writeStatus(rctx, d, replicas); err != nil && syncErr == nil {
		syncErr = err
	}
	return syncErr
}

// newPod makes the pod's identity and root directory and resolves its container.
func (k *Kubelet) newPod(d *appsv1.Deployment, hash string) (*pod, error) {
	tmpl := d.Spec.Template.DeepCopy()
	var c *corev1.Container
	for i := range tmpl.Spec.Containers {
		if tmpl.Spec.Containers[i].Name == ContainerName {
			c = &tmpl.Spec.Containers[i]
		}
	}
	if c == nil {
		return nil, fmt.Errorf("the pod template of %s/%s has no container %q", d.Namespace, d.Name, ContainerName)
	}
	sa := tmpl.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	labels := map[string]string{"pod-template-hash": hash}
	for key, v := range tmpl.Labels {
		labels[key] = v
	}
	p := &pod{
		info: podInfo{
			name:      fmt.Sprintf("%s-%s-%s", d.Name, hash, hex.EncodeToString(suffix)[:5]),
			namespace: d.Namespace, uid: string(uuid.NewUUID()), serviceAccount: sa,
			nodeName: k.opts.NodeName, labels: labels, annotations: tmpl.Annotations, container: c,
		},
		hash: hash,
	}
	p.root = filepath.Join(k.opts.Dir, p.info.name)
	p.logPath = filepath.Join(p.root, "istiod.log")
	if err := os.MkdirAll(p.root, 0o755); err != nil {
		return nil, err
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range tmpl.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s has no volume", vm.Name)
		}
		dir := filepath.Join(p.root, filepath.Clean("/"+vm.MountPath))
		p.mounts = append(p.mounts, &mount{volume: v, mount: vm, dir: dir})
	}
	dirs := []string{kubeconfigDir}
	if tmpl.Spec.AutomountServiceAccountToken == nil || *tmpl.Spec.AutomountServiceAccountToken {
		dirs = append(dirs, "/var/run/secrets/kubernetes.io/serviceaccount")
	}
	for _, dir := range dirs {
		m, err := k.serviceAccountMount(p, dir)
		if err != nil {
			return nil, err
		}
		p.mounts = append(p.mounts, m)
	}
	return p, nil
}

// serviceAccountMount is a volume as a pod gets at /var/run/secrets/kubernetes.io/serviceaccount:
// a token of its ServiceAccount, the API server's CA and the namespace.
func (k *Kubelet) serviceAccountMount(p *pod, dir string) (*mount, error) {
	v := corev1.Volume{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
		}}}}
	cfg := k.opts.Config
	caData := cfg.CAData
	if len(caData) == 0 && cfg.CAFile != "" {
		raw, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		caData = raw
	}
	return &mount{volume: v, mount: corev1.VolumeMount{Name: v.Name, MountPath: dir}, dir: filepath.Join(p.root, dir),
		extra: map[string]file{"ca.crt": {data: caData, mode: 0o644}}}, nil
}

// refresh writes every volume that changed and, once, the kubeconfig.
func (k *Kubelet) refresh(ctx context.Context, p *pod) error {
	var errs []error
	for _, m := range p.mounts {
		changed, err := k.sync(ctx, &p.info, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", m.volume.Name, err))
			continue
		}
		if changed && p.cmd != nil {
			k.opts.Logf("testkubelet %s/%s: volume %s of pod %s updated", p.info.namespace, k.opts.Name, m.volume.Name, p.info.name)
		}
	}
	if err := k.writeKubeconfig(p); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// kubeconfigDir holds, under the pod root, the token, CA and kubeconfig istiod uses in
// place of a pod's in-cluster config.
const kubeconfigDir = "/var/run/testkubelet"

// writeKubeconfig writes the kubeconfig istiod uses in place of the in-cluster config:
// the API server's address and CA, and a tokenFile (which client-go re-reads) holding
// a ServiceAccount token the kubelet keeps fresh.
func (k *Kubelet) writeKubeconfig(p *pod) error {
	if p.kubeconfig != "" {
		return nil
	}
	dir := filepath.Join(p.root, kubeconfigDir)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: k.opts.Config.Host, CertificateAuthority: filepath.Join(dir, "ca.crt"),
		TLSServerName: k.opts.Config.ServerName}
	kc.AuthInfos["serviceaccount"] = &clientcmdapi.AuthInfo{TokenFile: filepath.Join(dir, "token")}
	kc.Contexts["serviceaccount"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "serviceaccount", Namespace: p.info.namespace}
	kc.CurrentContext = "serviceaccount"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return err
	}
	p.kubeconfig = path
	return nil
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", podIP+":0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// addressFlags are pilot-discovery's listening flags (pilot/cmd/pilot-discovery/app/cmd.go)
// with the container port each stands for.
var addressFlags = []struct {
	flag string
	port int32
	set  func(a *Addresses, addr string)
}{
	{"httpAddr", 8080, func(a *Addresses, s string) { a.HTTP = s }},
	{"grpcAddr", 15010, func(a *Addresses, s string) { a.GRPC = s }},
	{"secureGRPCAddr", 15012, func(a *Addresses, s string) { a.SecureGRPC = s }},
	{"httpsAddr", 15017, func(a *Addresses, s string) { a.HTTPS = s }},
	{"monitoringAddr", 15014, func(a *Addresses, s string) { a.Monitoring = s }},
}

// ownFlags are the flags the kubelet sets itself; the template's are dropped.
var ownFlags = map[string]bool{"httpAddr": true, "grpcAddr": true, "secureGRPCAddr": true, "httpsAddr": true,
	"monitoringAddr": true, "ctrlz_port": true, "ctrlz_address": true, "kubeconfig": true}

// stripFlags drops the given flags, in the --flag=value and --flag value forms.
func stripFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			name := strings.TrimLeft(a, "-")
			if eq := strings.IndexByte(name, '='); eq >= 0 {
				if ownFlags[name[:eq]] {
					continue
				}
			} else if ownFlags[name] {
				i++ // the value
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// startProcess resolves the container's env and args and starts pilot-discovery.
func (k *Kubelet) startProcess(p *pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := p.info.container
	env, values, err := k.resolveEnv(ctx, &p.info)
	if err != nil {
		return err
	}
	// KUBECONFIG: a file the pod has at that path (a mounted Secret) is used from the
	// pod root; otherwise a pod would fall back to its in-cluster config, which is the
	// kubelet's kubeconfig here.
	kubeconfig := p.kubeconfig
	if v, ok := values["KUBECONFIG"]; ok && v != "" {
		if inRoot := filepath.Join(p.root, filepath.Clean("/"+v)); fileExists(inRoot) {
			kubeconfig = inRoot
		}
	}
	env = setEnv(env, "KUBECONFIG", kubeconfig)
	env = setEnv(env, "HOME", p.root)
	if _, ok := values["PATH"]; !ok {
		env = setEnv(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}

	var args []string
	if len(c.Command) > 1 {
		args = append(args, c.Command[1:]...)
	}
	args = append(args, c.Args...)
	for i := range args {
		args[i] = expand(args[i], values)
	}
	args = stripFlags(args)

	p.addrs = Addresses{}
	p.ports = map[string]string{}
	for _, f := range addressFlags {
		addr, err := freePort()
		if err != nil {
			return err
		}
		f.set(&p.addrs, addr)
		args = append(args, "--"+f.flag+"="+addr)
		p.ports[strconv.Itoa(int(f.port))] = addr
	}
	ctrlz, err := freePort()
	if err != nil {
		return err
	}
	p.addrs.CtrlZ = ctrlz
	_, ctrlzPort, _ := net.SplitHostPort(ctrlz)
	args = append(args, "--ctrlz_address="+podIP, "--ctrlz_port="+ctrlzPort)
	for _, cp := range c.Ports {
		if addr, ok := p.ports[strconv.Itoa(int(cp.ContainerPort))]; ok && cp.Name != "" {
			p.ports[cp.Name] = addr
		}
	}

	if p.log == nil {
		p.log, err = os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
	}
	cmd := exec.Command(k.opts.Binary, args...)
	cmd.Dir = p.root
	cmd.Env = env
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	// Its own process group, so Stop reaches its children too; killed if the test dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", k.opts.Binary, err)
	}
	p.cmd, p.args, p.env = cmd, args, env
	p.exited = make(chan struct{})
	p.ready, p.since = false, time.Time{}
	exited := p.exited
	go func() {
		_ = cmd.Wait()
		// Read only after exited is closed (and before the next start).
		p.exitedAt = time.Now()
		close(exited)
	}()
	k.started++
	k.opts.Logf("testkubelet %s/%s: started istiod pod %s (pid %d) in %s, http %s", p.info.namespace, k.opts.Name,
		p.info.name, cmd.Process.Pid, p.root, p.addrs.HTTP)
	return nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

func setEnv(env []string, name, value string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return append(out, name+"="+value)
}

// stopPod ends the current pod's process and forgets the pod. Called with mu held.
func (k *Kubelet) stopPod() {
	p := k.pod
	if p == nil {
		return
	}
	k.pod = nil
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(k.opts.GracePeriod):
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.exited
			}
		}
		k.opts.Logf("testkubelet %s/%s: stopped istiod pod %s (%v)", p.info.namespace, k.opts.Name, p.info.name, p.cmd.ProcessState)
	}
	if p.log != nil {
		_ = p.log.Close()
	}
}

var probeClient = &http.Client{Timeout: time.Second}

// probe runs the container's readiness probe (an HTTP GET, such as istiod's /ready on
// its http port) against the local address of the probed port. A container without a
// readiness probe is ready once it runs.
func (k *Kubelet) probe(p *pod) {
	rp := p.info.container.ReadinessProbe
	ready := true
	if rp != nil && rp.HTTPGet != nil {
		addr, ok := p.ports[portKey(rp.HTTPGet.Port)]
		if !ok {
			ready = false
		} else {
			scheme := "http"
			if rp.HTTPGet.Scheme == corev1.URISchemeHTTPS {
				scheme = "https"
			}
			resp, err := probeClient.Get(scheme + "://" + addr + rp.HTTPGet.Path)
			if err != nil {
				ready = false
			} else {
				_ = resp.Body.Close()
				ready = resp.StatusCode >= 200 && resp.StatusCode < 400
			}
		}
	} else if rp != nil && rp.TCPSocket != nil {
		addr, ok := p.ports[portKey(rp.TCPSocket.Port)]
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		ready = ok && err == nil
		if conn != nil {
			_ = conn.Close()
		}
	}
	if ready && !p.ready {
		p.since = time.Now()
		k.opts.Logf("testkubelet %s/%s: istiod pod %s is ready", p.info.namespace, k.opts.Name, p.info.name)
	}
	p.ready = ready
}

func portKey(p intstr.IntOrString) string {
	if p.Type == intstr.String {
		return p.StrVal
	}
	return strconv.Itoa(p.IntValue())
}
