package render

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"istio.io/istio/manifests"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
)

// The conformance tests compare what the operator renders for one cluster with what
// Istio's own istio-discovery chart (the one in the istio.io/istio module of go.mod,
// rendered with the Helm SDK through internal/istiochart) renders for the same values.
// Every difference must be listed, with its reason, in testdata/conformance-allowed.yaml;
// an entry that no longer matches anything fails the test too, so the list only ever
// holds differences that exist.

const allowedFile = "conformance-allowed.yaml"

// conformanceVersion is the Istio release of the module's charts.
func conformanceVersion() string { return fmt.Sprintf("1.%d.0", istiochart.Minor()) }

// conformanceInputs is one cluster whose entry sets every field the chart has a value
// for, so that each of them is compared.
func conformanceInputs(version string) Inputs {
	spec := v1beta1.ASMMeshConfigSpec{
		Version:     version,
		MeshID:      "mesh-1",
		TrustDomain: "example.org",
		ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
			"cluster-2": {
				Replicas: ptr.To[int32](3),
				Resources: &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
				},
				NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
				Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "mesh", Effect: corev1.TaintEffectNoSchedule}},
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64", "arm64"}}},
					}}},
				}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
					MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istiod"}},
				}},
				PriorityClassName: "system-cluster-critical",
				Network:           "network-2",
			},
		},
	}
	in := InputsFor(spec, "cluster-2", Settings{Namespace: "istio-system", Hub: "docker.io/istio", Version: version})
	in.MeshSettings = chartSettings(in) // where the mesh cluster has none to copy
	return in
}

// chartValues are ChartValues for in: the values that ask Istio's chart for what the
// operator renders.
func chartValues(t *testing.T, in Inputs) map[string]any {
	t.Helper()
	values, err := ChartValues(in)
	if err != nil {
		t.Fatal(err)
	}
	return values
}

// operatorObjects is everything the operator renders for in: the istiod set and the
// injection webhook, keyed by kind/namespace/name.
func operatorObjects(t *testing.T, in Inputs) map[string]map[string]any {
	t.Helper()
	scheme := testScheme(t)
	objs, err := Render(in, scheme)
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := InjectionWebhook(in, nil, scheme)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, o := range append(objs, mwc) {
		out[objectKey(o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName())] = plain(t, o)
	}
	return out
}

// chartObjects renders the istio-discovery chart. Each object goes through its Go type,
// as the operator's do, so that both sides are spelled alike (2048Mi and 2Gi, a port as
// a number or a string); a field the Go type does not know fails the test.
func chartObjects(t *testing.T, values map[string]any) map[string]map[string]any {
	t.Helper()
	rendered, err := istiochart.Render(istiochart.Discovery, "istiod", "istio-system", values)
	if err != nil {
		t.Fatal(err)
	}
	return typedObjects(t, rendered)
}

func typedObjects(t *testing.T, rendered []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	scheme := testScheme(t)
	out := map[string]map[string]any{}
	for _, u := range rendered {
		typed, err := scheme.New(u.GroupVersionKind())
		if err != nil {
			t.Fatalf("the chart renders %s, which the scheme lacks: %v", u.GroupVersionKind(), err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, typed, true); err != nil {
			t.Fatalf("chart %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		typed.GetObjectKind().SetGroupVersionKind(u.GroupVersionKind())
		out[objectKey(u.GetKind(), u.GetNamespace(), u.GetName())] = plain(t, typed.(client.Object))
	}
	return out
}

func objectKey(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

func plain(t *testing.T, o client.Object) map[string]any {
	t.Helper()
	raw, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// difference is one field where the chart and the operator disagree. A field one side
// lacks is reported at the outermost path the other side has.
type difference struct {
	Object, Path      string
	Chart, Operator   any
	ChartOnly, OpOnly bool
	Note              string
}

// absent marks the side of a difference that lacks the field.
type missing struct{}

func (d difference) String() string {
	show := func(v any) string {
		if _, ok := v.(missing); ok {
			return "(absent)"
		}
		raw, _ := json.Marshal(v)
		if len(raw) > 1000 {
			return string(raw[:1000]) + "…"
		}
		return string(raw)
	}
	s := fmt.Sprintf("%s %s\n    chart:    %s\n    operator: %s", d.Object, d.Path, show(d.Chart), show(d.Operator))
	if d.Note != "" {
		s += "\n    (" + d.Note + ")"
	}
	return s
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func fieldPath(parent, key string) string {
	if !plainKey.MatchString(key) {
		return parent + "['" + key + "']"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// compareObjects lists the differences between two objects of the same key. Lists of
// elements that all have distinct names (containers, env, ports, volumes, webhooks) are
// compared by name, as name=<name>, with a change of their order reported on the list;
// other lists of objects (rules) element by element, each differing element whole;
// lists of values (verbs, args) whole.
func compareObjects(object string, chart, operator any) []difference {
	var out []difference
	var walk func(p string, a, b any)
	walk = func(p string, a, b any) {
		switch av := a.(type) {
		case map[string]any:
			bv, ok := b.(map[string]any)
			if !ok {
				break
			}
			keys := slices.Sorted(maps.Keys(av))
			for k := range bv {
				if _, ok := av[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				ac, aok := av[k]
				bc, bok := bv[k]
				switch {
				case !bok:
					out = append(out, difference{Object: object, Path: fieldPath(p, k), Chart: ac, Operator: missing{}})
				case !aok:
					out = append(out, difference{Object: object, Path: fieldPath(p, k), Chart: missing{}, Operator: bc})
				default:
					walk(fieldPath(p, k), ac, bc)
				}
			}
			return
		case []any:
			bv, ok := b.([]any)
			if !ok {
				break
			}
			an, bn := names(av), names(bv)
			if an == nil || bn == nil {
				if !allMaps(av) || !allMaps(bv) {
					break // a list of values (verbs, args) differs as a whole
				}
				// Elements without names (rules, tolerations) differ whole, by position.
				for i := range max(len(av), len(bv)) {
					ip := p + "[" + strconv.Itoa(i) + "]"
					switch {
					case i >= len(bv):
						out = append(out, difference{Object: object, Path: ip, Chart: av[i], Operator: missing{}})
					case i >= len(av):
						out = append(out, difference{Object: object, Path: ip, Chart: missing{}, Operator: bv[i]})
					case !equalJSON(av[i], bv[i]):
						out = append(out, difference{Object: object, Path: ip, Chart: av[i], Operator: bv[i]})
					}
				}
				return
			}
			byName := func(l []any, ns []string) map[string]any {
				m := map[string]any{}
				for i, n := range ns {
					m[n] = l[i]
				}
				return m
			}
			am, bm := byName(av, an), byName(bv, bn)
			var aCommon, bCommon []string
			for _, n := range an {
				if _, ok := bm[n]; ok {
					aCommon = append(aCommon, n)
				}
			}
			for _, n := range bn {
				if _, ok := am[n]; ok {
					bCommon = append(bCommon, n)
				}
			}
			if !slices.Equal(aCommon, bCommon) {
				out = append(out, difference{Object: object, Path: p, Chart: an, Operator: bn, Note: "the same names in another order"})
			}
			for _, n := range an {
				np := p + "[name=" + n + "]"
				if bc, ok := bm[n]; ok {
					walk(np, am[n], bc)
				} else {
					out = append(out, difference{Object: object, Path: np, Chart: am[n], Operator: missing{}})
				}
			}
			for _, n := range bn {
				if _, ok := am[n]; !ok {
					out = append(out, difference{Object: object, Path: p + "[name=" + n + "]", Chart: missing{}, Operator: bm[n]})
				}
			}
			return
		}
		if !equalJSON(a, b) {
			out = append(out, difference{Object: object, Path: p, Chart: a, Operator: b})
		}
	}
	walk("", chart, operator)
	return out
}

func equalJSON(a, b any) bool {
	ar, _ := json.Marshal(a)
	br, _ := json.Marshal(b)
	return string(ar) == string(br)
}

func allMaps(l []any) bool {
	for _, e := range l {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// names are the names of a list's elements if every one has a distinct one, else nil.
func names(l []any) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, 0, len(l))
	seen := map[string]bool{}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil
		}
		n, ok := m["name"].(string)
		if !ok || n == "" || seen[n] {
			return nil
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// compareSets lists the differences between the chart's objects and the operator's:
// whole objects only one side renders (path ""), then field by field.
func compareSets(chart, operator map[string]map[string]any) []difference {
	var out []difference
	keys := slices.Sorted(maps.Keys(chart))
	for k := range operator {
		if _, ok := chart[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		c, cok := chart[k]
		o, ook := operator[k]
		switch {
		case !ook:
			out = append(out, difference{Object: k, Chart: "rendered", Operator: missing{}})
		case !cok:
			out = append(out, difference{Object: k, Chart: missing{}, Operator: "rendered"})
		default:
			out = append(out, compareObjects(k, c, o)...)
		}
	}
	return out
}

// allowedDifference is one entry of testdata/conformance-allowed.yaml.
type allowedDifference struct {
	// Object is kind/name, or kind/namespace/name; * stands for any text ("*" is every
	// object, "ClusterRole/*" every ClusterRole).
	Object string `json:"object"`
	// Path is the field, as the report spells it, and may use * as Object does; it
	// covers everything beneath it. Empty means the whole object.
	Path string `json:"path,omitempty"`
	// Chart, when set, is the only value the chart may have there.
	Chart any `json:"chart,omitempty"`
	// Reason says why the operator differs from the chart.
	Reason string `json:"reason"`
}

func (a allowedDifference) matches(d difference) bool {
	if !glob(a.Object, "").MatchString(d.Object) {
		return false
	}
	if a.Chart != nil && !equalJSON(a.Chart, d.Chart) {
		return false
	}
	return a.Path == "" || glob(a.Path, `([.\[].*)?`).MatchString(d.Path)
}

// glob matches s as a whole, * standing for any text, followed by the pattern rest.
func glob(s, rest string) *regexp.Regexp {
	return regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(s), `\*`, ".*") + rest + "$")
}

func loadAllowed(t *testing.T) []allowedDifference {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", allowedFile))
	if err != nil {
		t.Fatal(err)
	}
	var allowed []allowedDifference
	if err := yaml.UnmarshalStrict(raw, &allowed); err != nil {
		t.Fatalf("%s: %v", allowedFile, err)
	}
	for i, a := range allowed {
		if a.Object == "" || strings.TrimSpace(a.Reason) == "" {
			t.Fatalf("%s: entry %d needs an object and a reason", allowedFile, i+1)
		}
	}
	return allowed
}

// TestConformanceWithIstioChart compares the operator's rendering for the Istio release
// of the module's charts with that chart, object by object and field by field.
func TestConformanceWithIstioChart(t *testing.T) {
	allowed := loadAllowed(t)
	used := make([]bool, len(allowed))
	cases := map[string]func(*Inputs){
		"entry": func(*Inputs) {},
		// The chart's own defaults: no entry fields, a single network, replicas and
		// resources left to the operator's defaults.
		"defaults": func(in *Inputs) {
			in.Entry = v1beta1.ExternalIstiodConfiguration{}
			in.MeshID, in.TrustDomain = "", "cluster.local"
		},
		"one-replica": func(in *Inputs) { in.Entry.Replicas = ptr.To[int32](1) },
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			in := conformanceInputs(conformanceVersion())
			cases[name](&in)
			checkConformance(t, in, chartObjects(t, chartValues(t, in)), allowed, used)
		})
	}
	if t.Failed() {
		return
	}
	for i, a := range allowed {
		if !used[i] {
			t.Errorf("%s: entry %d (%s %s) matches no difference any more; remove it", allowedFile, i+1, a.Object, a.Path)
		}
	}
}

// checkConformance fails t for every difference between the chart's objects and the
// operator's rendering of in that allowed does not list, and marks the entries used.
func checkConformance(t *testing.T, in Inputs, chart map[string]map[string]any, allowed []allowedDifference, used []bool) {
	t.Helper()
	var unexpected []string
	for _, d := range compareSets(chart, operatorObjects(t, in)) {
		ok := false
		for i, a := range allowed {
			if a.matches(d) {
				used[i], ok = true, true
			}
		}
		if !ok {
			unexpected = append(unexpected, d.String())
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("the operator's rendering of Istio %s differs from Istio's istio-discovery chart in %d fields "+
			"that testdata/%s does not list; fix the renderer, or list the difference with its reason:\n  %s",
			in.Version, len(unexpected), allowedFile, strings.Join(unexpected, "\n  "))
	}
}

// TestCompatibilityProfilesChangeOnlyEnv renders the chart with each of its
// compatibilityVersion profiles. They are value overlays, not older templates: they
// set pilot env variables that give a newer istiod an older release's defaults (and
// ambient/CNI values this chart does not render). An istiod image of that older
// release has those defaults built in, which is why the operator, which runs the
// image of the version it is asked for, renders none of these variables; and why the
// templates of older releases are checked against Istio's release tags instead (the
// version boundaries of rbac_test.go and the golden files).
func TestCompatibilityProfilesChangeOnlyEnv(t *testing.T) {
	in := conformanceInputs(conformanceVersion())
	base := chartObjects(t, chartValues(t, in))
	envPath := "spec.template.spec.containers[name=discovery].env"
	for minor := 25; minor < istiochart.Minor(); minor++ {
		compat := fmt.Sprintf("1.%d", minor)
		t.Run(compat, func(t *testing.T) {
			values := chartValues(t, in)
			values["compatibilityVersion"] = compat
			profile := compatibilityProfile(t, compat)
			env, _, _ := unstructured.NestedMap(profile, "pilot", "env")
			if len(env) == 0 {
				t.Fatalf("profile %s sets no pilot env", compat)
			}
			for _, d := range compareSets(base, chartObjects(t, values)) {
				switch {
				case d.Object == "ConfigMap/istio-system/values":
					// The chart's record of the values it was given.
				case d.Object == "ConfigMap/istio-system/istio-sidecar-injector" && d.Path == "data.values":
					// The values the injection template reads record the same env.
					if !sameBesidesProfile(t, d.Chart, d.Operator, profile) {
						t.Errorf("compatibilityVersion %s changes the injector's values beyond its own: %s", compat, d)
					}
				case d.Object == "Deployment/istio-system/istiod" && d.Path == envPath:
					// The profile's variables are inserted among the others.
				case d.Object == "Deployment/istio-system/istiod" && strings.HasPrefix(d.Path, envPath+"[name="):
					name := strings.TrimSuffix(strings.TrimPrefix(d.Path, envPath+"[name="), "]")
					if _, ok := env[name]; !ok || !isMissing(d.Chart) {
						t.Errorf("compatibilityVersion %s: %s", compat, d)
					}
				default:
					t.Errorf("compatibilityVersion %s changes more than env: %s", compat, d)
				}
			}
		})
	}
}

// sameBesidesProfile reports whether two injector values documents are equal once
// every value the compatibility profile sets is taken out of them. The document holds
// the chart's values under pilot (the profile's pilot.env as pilot.env, its cni as
// pilot.cni).
func sameBesidesProfile(t *testing.T, a, b any, profile map[string]any) bool {
	t.Helper()
	parse := func(v any) map[string]any {
		s, _ := v.(string)
		out := map[string]any{}
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("injector values: %v", err)
		}
		for _, p := range leafPaths(profile, nil) {
			if p[0] == "pilot" {
				p = p[1:] // the chart takes the profile's pilot.env as env
			}
			removePath(out, append([]string{"pilot"}, p...))
		}
		return out
	}
	return len(compareObjects("", parse(a), parse(b))) == 0
}

func leafPaths(m map[string]any, prefix []string) [][]string {
	var out [][]string
	for k, v := range m {
		p := append(slices.Clone(prefix), k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, leafPaths(sub, p)...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

// removePath deletes the field at p and every map it leaves empty.
func removePath(m map[string]any, p []string) {
	sub, ok := m[p[0]]
	if !ok || len(p) == 1 {
		delete(m, p[0])
		return
	}
	if sm, ok := sub.(map[string]any); ok {
		removePath(sm, p[1:])
		if len(sm) == 0 {
			delete(m, p[0])
		}
	}
}

func isMissing(v any) bool { _, ok := v.(missing); return ok }

// compatibilityProfile is the values file of a compatibility profile of the module's
// istio-discovery chart.
func compatibilityProfile(t *testing.T, compat string) map[string]any {
	t.Helper()
	raw, err := fs.ReadFile(manifests.FS, "charts/istio-control/istio-discovery/files/profile-compatibility-version-"+compat+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	profile, err := istiochart.ParseValues(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	return profile
}
