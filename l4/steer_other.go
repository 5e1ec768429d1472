//go:build !linux

package l4

import "errors"

var errNoSteering = errors.New("l4: handing connections over to another process needs Linux (SO_ATTACH_REUSEPORT_CBPF)")

// Steer is Linux only: see steer_linux.go.
func (s *Server) Steer(map[string]int) error { return errNoSteering }

// Unsteer is Linux only.
func (s *Server) Unsteer() error { return errNoSteering }

// BoundAddrs is Linux only.
func (s *Server) BoundAddrs() ([]string, error) { return nil, errNoSteering }

// MigrateRequests reports that the setting is unknown outside Linux.
func MigrateRequests() (on, known bool) { return false, false }
