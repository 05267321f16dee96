package testkubelet

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// PilotDiscovery finds Istio's pilot-discovery for a test: PILOT_DISCOVERY when it is
// set (make test sets it, so there a missing binary is an error, not a skip), else what
// hack/pilot-discovery.sh under repoRoot prints (it builds the binary once and caches
// it outside the clone; what it says while building goes to stderr). skip says that
// nothing asked for the binary and the script could not provide it.
func PilotDiscovery(repoRoot string) (path string, skip bool, err error) {
	if p, set := os.LookupEnv("PILOT_DISCOVERY"); set {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", false, fmt.Errorf("PILOT_DISCOVERY=%q is not a file: hack/pilot-discovery.sh did not build it (run it for its error)", p)
		}
		return p, false, nil
	}
	script, err := filepath.Abs(filepath.Join(repoRoot, "hack", "pilot-discovery.sh"))
	if err != nil {
		return "", true, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	out, err := cmd.Output()
	if err != nil {
		return "", true, fmt.Errorf("pilot-discovery not found: set PILOT_DISCOVERY or make hack/pilot-discovery.sh work (%w: %s)",
			err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), false, nil
}

// IstioVersion is the Istio release a pilot-discovery binary is, as the renderer
// spells it (1.31-dev gives 1.31.0).
func IstioVersion(binary string) (string, error) {
	out, err := exec.Command(binary, "version", "--short").Output()
	m := regexp.MustCompile(`\b1\.\d+`).FindString(string(out))
	if err != nil || m == "" {
		return "", fmt.Errorf("pilot-discovery version printed %q: %w", out, err)
	}
	if _, err := render.ParseVersion(m + ".0"); err != nil {
		return "", fmt.Errorf("pilot-discovery is Istio %s, which the renderer does not know: %w", m, err)
	}
	return m + ".0", nil
}
