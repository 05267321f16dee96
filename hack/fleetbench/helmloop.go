package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Figure 2 installs Istio's istio-discovery chart into each cluster with the Helm SDK,
// as a user's loop over the fleet does, under a revision of its own: every object the
// chart renders carries the revision in its name (istiod-helmloop,
// istio-sidecar-injector-helmloop-istio-system, ...), so neither the remote profile's
// objects (Service istiod, the injector istio-sidecar-injector-istio-system) nor the
// operator's istiod are touched.
const (
	helmRevision = "helmloop"
	helmRelease  = "istiod-" + helmRevision
)

// helmRun is one loop over n clusters.
type helmRun struct {
	total    time.Duration
	installs []helmInstall
}

// helmInstall is what one install cost.
type helmInstall struct {
	took time.Duration
	// requests and requestTime by class (classify); peak requests in flight at once.
	requests    map[string]int
	requestTime map[string]time.Duration
	peak        int
	// bytes crossed the cluster's far link both ways.
	bytes int64
}

// helmValues are the values the operator renders cluster id's istiod with in figure 1
// (render.ChartValues of its entry, one replica), under Helm's own revision, with the
// mesh settings the operator copies from the mesh cluster's istiod (localmesh's), and
// without the chart's validator: the remote profile's istiod-default-validator is
// there, and the operator renders none beside it either (render.Inputs.ForeignValidators).
func helmValues(id string) (map[string]any, error) {
	spec := v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
		id: {Replicas: ptr.To[int32](1)}}}
	in := render.InputsFor(spec, id, render.Settings{Namespace: localmesh.Namespace, Hub: localmesh.MeshHub})
	in.Version = localmesh.MeshIstioVersion // the operator takes the mesh istiod's
	values, err := render.ChartValues(in)
	if err != nil {
		return nil, err
	}
	values["revision"] = helmRevision
	mesh := values["meshConfig"].(map[string]any)
	mesh["accessLogFile"] = localmesh.MeshAccessLogFile
	mesh["outboundTrafficPolicy"] = map[string]any{"mode": localmesh.MeshOutboundTrafficPolicy}
	global := values["global"].(map[string]any)
	global["configValidation"] = false
	global["proxy"] = map[string]any{"resources": map[string]any{
		"requests": map[string]any{"cpu": "50m", "memory": "64Mi"},
		"limits":   map[string]any{"cpu": "1", "memory": localmesh.MeshProxyMemoryLimit},
	}}
	return values, nil
}

// helmLoop runs figure 2: for each n, it installs the chart into the first n clusters
// one after the other, through their far links, runs times; then uninstalls the
// releases and checks that nothing of them is left. operator is figure 1's median
// time to all Applied by N, when figure 1 ran.
func helmLoop(ctx context.Context, f *fleet, ns []int, runs int, operator map[int]float64) (table, error) {
	t := table{Title: "Figure 2: the operator against a Helm loop",
		Columns: []string{"N", "Helm loop: N installs in series", "one install", "requests per install (discovery + release + objects)",
			"time in requests per install (discovery + release + objects)", "requests in flight at most", "bytes across the link per install",
			"operator: all Applied (figure 1)", "operator / Helm loop"}}
	c, err := istiochart.LoadChart(istiochart.Discovery)
	if err != nil {
		return t, err
	}
	if err := f.checkNoRelease(ctx, len(f.m.DataPlanes)); err != nil {
		return t, fmt.Errorf("before the first install: %w", err)
	}
	var perInstall []float64
	classes := []string{classDiscovery, classRelease, classObjects}
	for _, n := range ns {
		var loop, one, bytes, peak sample
		reqs, times := map[string]sample{}, map[string]sample{}
		for run := range runs {
			r, err := f.helmLoopOnce(ctx, c, n)
			// Uninstalled even after a failed install, so the next figure finds the clusters as they were.
			if err := errors.Join(err, f.helmUninstall(n), f.checkNoRelease(ctx, n)); err != nil {
				return t, fmt.Errorf("with %d clusters, run %d: %w", n, run+1, err)
			}
			f.logf("figure 2, N=%d run %d: %d installs in %s", n, run+1, n, r.total.Round(10*time.Millisecond))
			loop = append(loop, r.total.Seconds())
			for _, i := range r.installs {
				one = append(one, i.took.Seconds())
				var total float64
				var totalTime time.Duration
				for _, c := range classes {
					reqs[c] = append(reqs[c], float64(i.requests[c]))
					times[c] = append(times[c], i.requestTime[c].Seconds())
					total += float64(i.requests[c])
					totalTime += i.requestTime[c]
				}
				reqs[""] = append(reqs[""], total)
				times[""] = append(times[""], totalTime.Seconds())
				bytes = append(bytes, float64(i.bytes))
				peak = append(peak, float64(i.peak))
			}
		}
		perInstall = append(perInstall, one...)
		l := loop.summary()
		opCell, ratioText := "run figure 1 with it", "–"
		if op, ok := operator[n]; ok {
			opCell, ratioText = seconds(op), ratioCell(op, l.Median, 0.2)
		}
		med := func(m map[string]sample, c string, u unit) string { return u(m[c].summary().Median) }
		t.Rows = append(t.Rows, []string{fmt.Sprint(n), l.cell(seconds), one.summary().cell(seconds),
			fmt.Sprintf("%s (%s + %s + %s)", med(reqs, "", count), med(reqs, classDiscovery, count), med(reqs, classRelease, count), med(reqs, classObjects, count)),
			fmt.Sprintf("%s (%s + %s + %s)", med(times, "", seconds), med(times, classDiscovery, seconds), med(times, classRelease, seconds), med(times, classObjects, seconds)),
			count(peak.summary().Max), kib(bytes.summary().Median), opCell, ratioText})
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("Each row is %d run(s) of the loop (median, min–max): `helm install` of Istio's istio-discovery chart (the istio.io/istio module's, as internal/istiochart loads it) into the first N clusters one after the other, "+
			"with the Helm SDK (helm.sh/helm/v4 action.Install, server-side apply, Secret storage, no --wait: the wait strategy is hookOnly and the chart has no hooks), "+
			"each cluster reached through its far link with a client and discovery of its own, as a program looping over kubeconfigs has. "+
			"\"One install\" and the per-install columns are over all installs of the row.", runs),
		"The values are the operator's for that cluster in figure 1 (render.ChartValues, the conformance tests' values, one replica, the mesh settings of localmesh's mesh istiod), under revision `"+helmRevision+"`, "+
			"so that every object is named apart from the remote profile's and the operator's, and without the chart's validator (the operator renders none beside the remote profile's either). "+
			"The release is 15 objects: the 12 of the operator's istiod but the PodDisruptionBudget (the chart renders none for one replica), and the chart's values ConfigMap, reader ClusterRole and binding, and revision injection webhook.",
		"The operator's time is figure 1's \"add: all Applied\" median (every cluster applied, not waiting for availability either), for all N clusters added at once. The goal is operator / Helm loop ≤ 0.2 at N = 8.",
		"Requests are counted in the Helm client (discovery: /version, /api, /apis and their group versions, OpenAPI; release: its Secrets; objects: the rest), with the time each took until its body was closed: "+
			"when the sum of those times is the install's time and at most one request was in flight, the install is round trips in series. Bytes are the far link's counter over the install, both ways (internal/farlink Stats). "+
			"Installs in one process share its connection to a cluster (client-go keeps one transport per server and credentials): an install pays no TLS handshake once the process has connected.",
		"After each run the releases are uninstalled (directly, not timed) and the benchmark checks in each cluster's API server that no object of the release and no release Secret is left.")
	if len(perInstall) > 0 {
		s := sample(perInstall).summary()
		t.Notes = append(t.Notes, fmt.Sprintf("Over all %d installs: %s per install.", s.Runs, s.cell(seconds)))
	}
	return t, nil
}

func kib(v float64) string { return fmt.Sprintf("%.0f KiB", v/1024) }

// helmLoopOnce installs the release into the first n clusters, one after the other.
func (f *fleet) helmLoopOnce(ctx context.Context, c *chart.Chart, n int) (helmRun, error) {
	var r helmRun
	start := time.Now()
	for _, dp := range f.m.DataPlanes[:n] {
		values, err := helmValues(dp.ID)
		if err != nil {
			return r, err
		}
		cfg := rest.CopyConfig(dp.Config)
		cfg.Host = "https://" + dp.Link.Addr()
		counted := &requestClasses{}
		cfg.Wrap(counted.wrap)
		s0 := dp.Link.Stats()
		began := time.Now()
		if err := helmInstallOne(ctx, cfg, c, values); err != nil {
			return r, fmt.Errorf("%s: %w", dp.ID, err)
		}
		took, s1 := time.Since(began), dp.Link.Stats()
		i := helmInstall{took: took, bytes: s1.BytesToServer + s1.BytesToClient - s0.BytesToServer - s0.BytesToClient}
		i.requests, i.requestTime, i.peak = counted.snapshot()
		r.installs = append(r.installs, i)
	}
	r.total = time.Since(start)
	return r, nil
}

func helmConfiguration(cfg *rest.Config) (*action.Configuration, error) {
	conf := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	getter, err := newRESTGetter(cfg, localmesh.Namespace)
	if err != nil {
		return nil, err
	}
	// Helm's default storage driver: the release is a Secret in the release's namespace.
	return conf, conf.Init(getter, localmesh.Namespace, "secret")
}

func helmInstallOne(ctx context.Context, cfg *rest.Config, c *chart.Chart, values map[string]any) error {
	conf, err := helmConfiguration(cfg)
	if err != nil {
		return err
	}
	install := action.NewInstall(conf)
	install.ReleaseName = helmRelease
	install.Namespace = localmesh.Namespace
	install.WaitStrategy = kube.HookOnlyStrategy // no --wait
	install.Timeout = 5 * time.Minute
	_, err = install.RunWithContext(ctx, c, values)
	return err
}

// helmUninstall removes the release from the first n clusters, side by side, through
// their own API servers: it is not what the figure measures.
func (f *fleet) helmUninstall(n int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, dp := range f.m.DataPlanes[:n] {
		wg.Go(func() {
			conf, err := helmConfiguration(rest.CopyConfig(dp.Config))
			if err == nil {
				u := action.NewUninstall(conf)
				u.WaitStrategy = kube.HookOnlyStrategy
				u.IgnoreNotFound = true // a failed loop installs into only some clusters
				_, err = u.Run(helmRelease)
			}
			if err != nil {
				errs[i] = fmt.Errorf("uninstalling from %s: %w", dp.ID, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkNoRelease checks in the first n clusters' own API servers that nothing of the
// release is there: no release Secret and none of the objects the chart renders for it.
func (f *fleet) checkNoRelease(ctx context.Context, n int) error {
	for _, dp := range f.m.DataPlanes[:n] {
		secrets := &corev1.SecretList{}
		if err := dp.Client.List(ctx, secrets, client.InNamespace(localmesh.Namespace),
			client.MatchingLabels{"owner": "helm", "name": helmRelease}); err != nil {
			return err
		}
		if len(secrets.Items) > 0 {
			return fmt.Errorf("%s still has %d Secrets of release %s", dp.ID, len(secrets.Items), helmRelease)
		}
		values, err := helmValues(dp.ID)
		if err != nil {
			return err
		}
		objs, err := istiochart.Render(istiochart.Discovery, helmRelease, localmesh.Namespace, values)
		if err != nil {
			return err
		}
		var left []string
		for _, o := range objs {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(o.GroupVersionKind())
			err := dp.Client.Get(ctx, client.ObjectKeyFromObject(o), u)
			if err == nil {
				left = append(left, o.GetKind()+" "+o.GetName())
			} else if !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s: %w", dp.ID, err)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%s still has objects of release %s: %s", dp.ID, helmRelease, strings.Join(left, ", "))
		}
	}
	return nil
}
