package directory

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is a mailbox server's build number, such as Exchange's
// 15.2.1544.4 (major, minor, build, revision). Missing trailing components
// are zero; the zero Version means unknown.
type Version [4]uint16

// ParseVersion parses one to four dot-separated decimal components, each
// 0..65535: "15", "15.2", "15.2.1544.4". Leading zeros are allowed
// ("15.02.1544.004" is 15.2.1544.4); signs, spaces and empty components
// are not.
func ParseVersion(s string) (Version, error) {
	var v Version
	if s == "" {
		return v, errors.New("empty version")
	}
	parts := strings.Split(s, ".")
	if len(parts) > len(v) {
		return v, fmt.Errorf("more than %d components", len(v))
	}
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return v, fmt.Errorf("component %d (%q) is not a decimal number", i+1, p)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return v, fmt.Errorf("component %d (%s) is larger than 65535", i+1, p)
		}
		v[i] = uint16(n)
	}
	return v, nil
}

// Compare returns -1 if a is older than b, +1 if newer, 0 if equal,
// comparing components from the left.
func Compare(a, b Version) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return +1
		}
	}
	return 0
}

// String formats v with all four components, e.g. "15.2.1544.4".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v[0], v[1], v[2], v[3])
}
