// Package istiochart renders Istio's own Helm charts, the ones the istio.io/istio Go
// module embeds (istio.io/istio/manifests), with the Helm SDK, client side, as
// `helm template` does.
//
// It exists for two uses. Test fixtures: a data-plane cluster installed with Istio's
// remote profile, or a mesh cluster's own istiod, built from the objects Istio's
// charts render, never from hand-written imitations of them. And the conformance
// reference: what the operator renders for a copy of istiod is compared with what
// Istio's istio-discovery chart renders for the same values.
//
// The module is pinned in go.mod to one commit of Istio, so this package knows one
// Istio version (Version). The charts' version fields are placeholders (1.0.0) that
// Istio's release tooling replaces when it publishes them; Version is read from the
// charts' compatibility profiles instead. Older Istio defaults are reachable through
// the charts' own compatibilityVersion value (files/profile-compatibility-version-*.yaml),
// not by rendering an older chart: for the objects of an older release itself, the
// module has to be pinned to that release.
package istiochart

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"istio.io/istio/manifests"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Chart names of the two charts the fixtures use. Render also accepts every other
// chart of the module, by its directory name or its Chart.yaml name (Charts lists them).
const (
	// Base is charts/base: the CRDs, the istiod-default-validator and the reader
	// ServiceAccount.
	Base = "base"
	// Discovery is charts/istio-control/istio-discovery, published as istio/istiod.
	Discovery = "istio-discovery"
)

// crdTemplate is the template of Istio's base chart that renders its CRDs.
const crdTemplate = "templates/crds.yaml"

// chartsDir is where the module keeps its charts inside manifests.FS.
const chartsDir = "charts"

// Option changes how Render renders.
type Option func(*renderConfig)

type renderConfig struct {
	crds bool
}

// WithCRDs keeps the CustomResourceDefinitions a chart renders. Istio's base chart
// renders its CRDs as ordinary templates (base.enableCRDTemplates), so `helm template`
// prints them; without this option Render drops them, as the fixtures rarely want
// Istio's ~15 CRDs.
func WithCRDs() Option { return func(c *renderConfig) { c.crds = true } }

// Render renders one of the module's charts as `helm template releaseName chart
// --namespace namespace --values values` does: client side, with no API server, with
// the chart's profiles applied from values (profile, compatibilityVersion, platform).
// It returns the rendered objects sorted by kind, namespace and name; empty documents
// and NOTES are dropped, and so are CustomResourceDefinitions unless WithCRDs is given.
// values is not modified.
func Render(chartName, releaseName, namespace string, values map[string]any, opts ...Option) ([]*unstructured.Unstructured, error) {
	var cfg renderConfig
	for _, o := range opts {
		o(&cfg)
	}
	c, err := loadChart(chartName)
	if err != nil {
		return nil, err
	}
	if !cfg.crds {
		// The base chart's CRD template renders nothing but the CRDs, out of a 900 kB
		// file; skipping it leaves every other object as it is and saves most of the
		// rendering time.
		c.Templates = slices.DeleteFunc(c.Templates, func(f *common.File) bool {
			return f.Name == crdTemplate
		})
	}
	conf := action.NewConfiguration()
	conf.SetLogger(slog.DiscardHandler)
	install := action.NewInstall(conf)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.Replace = true
	install.IncludeCRDs = cfg.crds
	rel, err := install.Run(c, deepCopy(values))
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", chartName, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("rendering chart %s: unexpected release type %T", chartName, rel)
	}
	manifest := r.Manifest
	for _, h := range r.Hooks {
		manifest += "\n---\n" + h.Manifest
	}
	objs, err := decode([]byte(manifest))
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", chartName, err)
	}
	if !cfg.crds {
		objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
			return o.GetKind() == "CustomResourceDefinition"
		})
	}
	sortObjects(objs)
	return objs, nil
}

// Charts returns the directories, under the module's charts/, of every chart Render
// knows, such as "base" and "istio-control/istio-discovery".
func Charts() []string {
	idx, err := index()
	if err != nil {
		return nil
	}
	var dirs []string
	for _, d := range idx.dirs {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// Version is the Istio version of the embedded charts, as Istio's own build names a
// build of that source: "1.<minor>-dev". The charts' Chart.yaml say 1.0.0 until
// Istio's release tooling stamps a release into them, so the minor is the one after
// the newest compatibility profile the istio-discovery chart ships (a chart of 1.31
// ships profile-compatibility-version-1.30.yaml as its newest).
func Version() string {
	return fmt.Sprintf("1.%d-dev", Minor())
}

// Minor is the Istio minor version of the embedded charts (31 for Istio 1.31). It
// panics if the module's charts cannot be read, which only a broken module causes.
func Minor() int {
	idx, err := index()
	if err != nil {
		panic(err)
	}
	return idx.minor
}

// Find returns the object of kind, namespace and name among objs, or nil. namespace
// is "" for cluster-scoped objects.
func Find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

// ParseValues parses YAML as `helm --values` does, for the Values of the options.
func ParseValues(values string) (map[string]any, error) {
	out := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &out); err != nil {
		return nil, fmt.Errorf("parsing values: %w", err)
	}
	return out, nil
}

type chartIndex struct {
	// dirs maps the accepted chart names to their directory under charts/.
	dirs  map[string]string
	minor int
}

var index = sync.OnceValues(buildIndex)

// buildIndex finds every chart of the module and the Istio minor version they carry.
func buildIndex() (*chartIndex, error) {
	idx := &chartIndex{dirs: map[string]string{}}
	ambiguous := map[string]bool{}
	add := func(name, dir string) {
		if d, ok := idx.dirs[name]; ok && d != dir {
			ambiguous[name] = true
		}
		idx.dirs[name] = dir
	}
	err := fs.WalkDir(manifests.FS, chartsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "Chart.yaml" {
			return nil
		}
		data, err := fs.ReadFile(manifests.FS, p)
		if err != nil {
			return err
		}
		var meta chart.Metadata
		if err := yaml.Unmarshal(data, &meta); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		dir := strings.TrimPrefix(path.Dir(p), chartsDir+"/")
		add(dir, dir)
		add(path.Base(dir), dir)
		if meta.Name != "" {
			add(meta.Name, dir)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing the charts of istio.io/istio/manifests: %w", err)
	}
	for name := range ambiguous {
		delete(idx.dirs, name)
	}
	dir, ok := idx.dirs[Discovery]
	if !ok {
		return nil, fmt.Errorf("istio.io/istio/manifests has no %s chart", Discovery)
	}
	files, err := fs.Glob(manifests.FS, path.Join(chartsDir, dir, "files", "profile-compatibility-version-1.*.yaml"))
	if err != nil {
		return nil, err
	}
	newest := -1
	for _, f := range files {
		m := strings.TrimSuffix(strings.TrimPrefix(path.Base(f), "profile-compatibility-version-1."), ".yaml")
		if n, err := strconv.Atoi(m); err == nil && n > newest {
			newest = n
		}
	}
	if newest < 0 {
		return nil, fmt.Errorf("the %s chart ships no compatibility profiles to tell its version by", Discovery)
	}
	idx.minor = newest + 1
	return idx, nil
}

// LoadChart loads one of the module's charts as Render does, for a caller that
// installs it with the Helm SDK itself (hack/fleetbench's figure 2, a Helm loop).
func LoadChart(name string) (*chart.Chart, error) { return loadChart(name) }

// loadChart loads a chart from the module's embedded files, the way `helm` loads an
// unpacked chart directory.
func loadChart(name string) (*chart.Chart, error) {
	idx, err := index()
	if err != nil {
		return nil, err
	}
	dir, ok := idx.dirs[name]
	if !ok {
		return nil, fmt.Errorf("istio.io/istio/manifests has no chart %q (charts: %s)", name, strings.Join(Charts(), ", "))
	}
	root := path.Join(chartsDir, dir)
	var files []*archive.BufferedFile
	err = fs.WalkDir(manifests.FS, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := fs.ReadFile(manifests.FS, p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, root+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", name, err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", name, err)
	}
	return c, nil
}

// decode splits a rendered manifest into objects, dropping empty documents.
func decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := decoder.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decoding the manifest: %w", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// sortObjects orders objects by kind, namespace, name and apiVersion.
func sortObjects(objs []*unstructured.Unstructured) {
	slices.SortStableFunc(objs, compareObjects)
}

func compareObjects(a, b *unstructured.Unstructured) int {
	return cmp.Or(
		strings.Compare(a.GetKind(), b.GetKind()),
		strings.Compare(a.GetNamespace(), b.GetNamespace()),
		strings.Compare(a.GetName(), b.GetName()),
		strings.Compare(a.GetAPIVersion(), b.GetAPIVersion()),
	)
}

// deepCopy copies the maps and slices of values, so that rendering (Istio's templates
// unset and set keys of .Values) never reaches the caller's values.
func deepCopy(values map[string]any) map[string]any {
	if values == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = deepCopyValue(v)
	}
	return out
}

func deepCopyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return deepCopy(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopyValue(e)
		}
		return out
	default:
		return v
	}
}

// merge deep-merges src into dst, src winning, as a later `--values` file does.
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = deepCopyValue(v)
	}
	return dst
}
