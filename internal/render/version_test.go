package render

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// TestNewestMinorFollowsIstioAPI keeps NewestMinor equal to the Istio release of the
// istio.io/api module in go.mod.
func TestNewestMinorFollowsIstioAPI(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse("go.mod", raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range mod.Require {
		if req.Mod.Path == "istio.io/api" {
			var major, minor int
			if _, err := fmt.Sscanf(strings.TrimPrefix(req.Mod.Version, "v"), "%d.%d", &major, &minor); err != nil {
				t.Fatalf("cannot read istio.io/api version %s", req.Mod.Version)
			}
			if minor != NewestMinor {
				t.Errorf("istio.io/api is %s but NewestMinor is %d", req.Mod.Version, NewestMinor)
			}
			return
		}
	}
	t.Fatal("istio.io/api is not required in go.mod")
}

func TestInvalidResourcesAreRefusedBeforeRendering(t *testing.T) {
	in := sampleInputs("1.28.3")
	in.Entry.Resources.Limits = in.Entry.Resources.Requests.DeepCopy()
	in.Entry.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if _, err := Render(in, testScheme(t)); err == nil || !strings.Contains(err.Error(), "memory request 2Gi exceeds its limit 1Gi") {
		t.Fatalf("err = %v", err)
	}
}

// TestAdmissionBoundsFollowTheRenderer keeps the CRD's CEL bounds on spec.version equal
// to the minors the renderer supports: a version admission accepts must render.
func TestAdmissionBoundsFollowTheRenderer(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "istio.alibabacloud.com_asmmeshconfigs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, v := range crd.Spec.Versions {
		for _, rule := range v.Schema.OpenAPIV3Schema.Properties["spec"].XValidations {
			rules = append(rules, rule.Rule+" "+rule.Message)
		}
	}
	all := strings.Join(rules, "\n")
	for _, want := range []string{
		fmt.Sprintf("int(self.version.split('.')[1]) >= %d", OldestMinor),
		fmt.Sprintf("int(self.version.split('.')[1]) <= %d", NewestMinor),
		fmt.Sprintf("older than 1.%d are not supported", OldestMinor),
		fmt.Sprintf("newer than 1.%d are not supported", NewestMinor),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the CRD has no %q: set the bounds in api/v1beta1's markers to OldestMinor and NewestMinor and run make manifests", want)
		}
	}
}
