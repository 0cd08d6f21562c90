//go:build !linux

package kernel

import (
	"errors"
	"fmt"
)

// Sockets is only supported on Linux.
func Sockets(nsPath string) ([]Socket, error) {
	return nil, fmt.Errorf("kernel: sock_diag: %w", errors.ErrUnsupported)
}

// Conntrack are a namespace's connection-tracking statistics.
type Conntrack struct {
	Entries, Max                          uint32
	Found, Invalid, Insert, InsertFailed  uint64
	Drop, EarlyDrop, Error, SearchRestart uint64
}

// ConntrackStats is only supported on Linux.
func ConntrackStats(nsPath string) (Conntrack, error) {
	return Conntrack{}, fmt.Errorf("kernel: conntrack: %w", errors.ErrUnsupported)
}
