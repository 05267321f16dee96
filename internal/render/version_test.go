package render

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
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
