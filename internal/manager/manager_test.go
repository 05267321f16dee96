package manager

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

func TestCASettingsRenewBeforeTheirEnd(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		lifetime, renewBefore time.Duration
		ok                    bool
	}{
		{90 * day, 30 * day, true},
		{0, 0, true}, // the defaults
		{30 * day, 30 * day, false},
		{10 * day, 30 * day, false},
	} {
		err := CheckCASettings(render.Settings{IntermediateCALifetime: c.lifetime, IntermediateCARenewBefore: c.renewBefore})
		if (err == nil) != c.ok {
			t.Errorf("lifetime %s, renew before %s: %v", c.lifetime, c.renewBefore, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--intermediate-ca-renew-before") {
			t.Errorf("the error does not name the flag: %v", err)
		}
	}
}
