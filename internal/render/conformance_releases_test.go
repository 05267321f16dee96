package render

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
)

// discoveryChartDir is the istio-discovery chart in Istio's source tree.
const discoveryChartDir = "manifests/charts/istio-control/istio-discovery"

// TestConformanceWithIstioReleases is TestConformanceWithIstioChart for the releases
// older than the module's: the istio-discovery chart of the first and the newest patch
// release of every minor from OldestMinor on, taken from a git clone of Istio
// (ISTIO_GIT_DIR, for example `git clone --bare https://github.com/istio/istio`), and
// compared with the operator's rendering of that release under the same allowed list.
// The module's chart cannot stand in for them: its compatibility profiles change
// defaults, not templates (TestCompatibilityProfilesChangeOnlyEnv).
func TestConformanceWithIstioReleases(t *testing.T) {
	gitDir := os.Getenv("ISTIO_GIT_DIR")
	if gitDir == "" {
		t.Skip("set ISTIO_GIT_DIR to a git clone of github.com/istio/istio to compare with the chart of each release")
	}
	allowed := loadAllowed(t)
	used := make([]bool, len(allowed))
	for minor := OldestMinor; minor < istiochart.Minor(); minor++ {
		for _, tag := range releaseTags(t, gitDir, minor) {
			t.Run(tag, func(t *testing.T) {
				in := conformanceInputs(tag)
				v, err := ParseVersion(tag)
				if err != nil {
					t.Fatal(err)
				}
				checkConformance(t, in, releaseChartObjects(t, gitDir, tag, releaseChartValues(t, in, v)), allowed, used)
			})
		}
	}
}

// releaseTags are the first and the newest patch release of 1.minor in the clone.
func releaseTags(t *testing.T, gitDir string, minor int) []string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", gitDir, "tag", "--list", fmt.Sprintf("1.%d.*", minor)).Output()
	if err != nil {
		t.Fatalf("listing the tags of %s: %v", gitDir, err)
	}
	release := regexp.MustCompile(fmt.Sprintf(`^1\.%d\.(\d+)$`, minor))
	newest := -1
	for _, tag := range strings.Fields(string(out)) {
		if m := release.FindStringSubmatch(tag); m != nil {
			if patch, _ := strconv.Atoi(m[1]); patch > newest {
				newest = patch
			}
		}
	}
	switch newest {
	case -1:
		t.Fatalf("%s has no release tag of Istio 1.%d", gitDir, minor)
		return nil
	case 0:
		return []string{fmt.Sprintf("1.%d.0", minor)}
	default:
		return []string{fmt.Sprintf("1.%d.0", minor), fmt.Sprintf("1.%d.%d", minor, newest)}
	}
}

// releaseChartValues are chartValues in the layout of the release's chart: before 1.24
// istiod's own values sit under pilot.
func releaseChartValues(t *testing.T, in Inputs, v Version) map[string]any {
	t.Helper()
	values := chartValues(t, in)
	if v.AtLeast(24) {
		return values
	}
	pilot := map[string]any{}
	for _, k := range []string{"autoscaleEnabled", "replicaCount", "resources", "env", "nodeSelector", "tolerations",
		"affinity", "topologySpreadConstraints"} {
		if x, ok := values[k]; ok {
			pilot[k] = x
			delete(values, k)
		}
	}
	values["pilot"] = pilot
	return values
}

// releaseChartObjects renders the istio-discovery chart of a release tag as `helm
// template istiod` does.
func releaseChartObjects(t *testing.T, gitDir, tag string, values map[string]any) map[string]map[string]any {
	t.Helper()
	raw, err := exec.Command("git", "--git-dir", gitDir, "archive", "--format=tar", tag, discoveryChartDir).Output()
	if err != nil {
		t.Fatalf("reading the chart of %s: %v", tag, err)
	}
	var files []*archive.BufferedFile
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(h.Name, discoveryChartDir+"/"), Data: data})
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatalf("loading the chart of %s: %v", tag, err)
	}
	conf := action.NewConfiguration()
	conf.SetLogger(slog.DiscardHandler)
	install := action.NewInstall(conf)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "istiod"
	install.Namespace = "istio-system"
	install.Replace = true
	rel, err := install.Run(c, values)
	if err != nil {
		t.Fatalf("rendering the chart of %s: %v", tag, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("unexpected release type %T", rel)
	}
	var rendered []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(r.Manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := decoder.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding the chart of %s: %v", tag, err)
		}
		if len(u.Object) > 0 {
			rendered = append(rendered, u)
		}
	}
	return typedObjects(t, rendered)
}
