//go:build !linux

package netns

import "errors"

// NamedDir is where `ip netns add` keeps named namespaces.
const NamedDir = "/run/netns"

// Resolve is only supported on Linux.
func Resolve(spec string) (string, error) { return "", errors.ErrUnsupported }

// Check is only supported on Linux.
func Check(path string) error { return errors.ErrUnsupported }

// Do runs fn here when path is empty; namespaces exist only on Linux.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return errors.ErrUnsupported
}
