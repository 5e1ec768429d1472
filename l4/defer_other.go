//go:build !linux

package l4

import (
	"errors"
	"net"
)

// wakePair is Linux-only (it uses the abstract socket namespace); elsewhere
// loops run without deferred work and Loop.Defer returns false.
func wakePair() (*net.UnixConn, int, error) {
	return nil, -1, errors.New("l4: deferred work needs Linux")
}
