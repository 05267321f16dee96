package render

import (
	"fmt"
	"regexp"
	"strconv"
)

// Supported Istio minor versions. NewestMinor follows the istio.io/api module this
// operator is built with (a test keeps the two in step).
const (
	OldestMinor = 22
	NewestMinor = 32
)

var versionPattern = regexp.MustCompile(`^1\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)

// Version is a parsed Istio release.
type Version struct {
	Minor int
	Raw   string
}

// ParseVersion accepts Istio releases 1.22 up to the newest one istio.io/api knows.
func ParseVersion(raw string) (Version, error) {
	m := versionPattern.FindStringSubmatch(raw)
	if m == nil {
		return Version{}, fmt.Errorf("istio version %q is not a release such as 1.24.3", raw)
	}
	minor, _ := strconv.Atoi(m[1])
	if minor < OldestMinor {
		return Version{}, fmt.Errorf("istio version %s is older than 1.%d, the oldest supported", raw, OldestMinor)
	}
	if minor > NewestMinor {
		return Version{}, fmt.Errorf("istio version %s is newer than 1.%d, the newest this operator knows; upgrade the operator", raw, NewestMinor)
	}
	return Version{Minor: minor, Raw: raw}, nil
}

// AtLeast reports whether the version is 1.minor or newer. Each chart difference
// between versions is one AtLeast call, next to the object it changes.
func (v Version) AtLeast(minor int) bool { return v.Minor >= minor }
