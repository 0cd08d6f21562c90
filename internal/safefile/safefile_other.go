//go:build !linux

package safefile

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ReadFile reads the regular file at path, at most max bytes, until ctx
// ends. Outside Linux the type check precedes the open (a FIFO swapped in
// between can still block the open until ctx ends).
func ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	return withDeadline(ctx, path, func(ctx context.Context) ([]byte, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is a %s: %w", path, fi.Mode().Type(), ErrNotRegular)
		}
		if fi.Size() > max {
			return nil, fmt.Errorf("%s: %w of %s (it has %d bytes)", path, ErrTooLarge, FormatSize(max), fi.Size())
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readCapped(ctx, path, f, fi.Size(), max)
	})
}

// ReadInRoot needs openat2(2): Linux only.
func ReadInRoot(ctx context.Context, root, path string, max int64) ([]byte, error) {
	return nil, fmt.Errorf("read %s in %s: %w", path, root, errors.ErrUnsupported)
}
