// Package safefile reads files that may be hostile: files inside a pod's
// root filesystem (/proc/PID/root/…), config files and file_sd files whose
// path someone else controls. Every read
//
//   - opens the path with O_PATH first, so a FIFO cannot block the open and a
//     device node's driver never sees an open (a symlink to /dev/zero or
//     /dev/watchdog is harmless);
//   - accepts regular files only (fstat on that descriptor, then a reopen of
//     the same inode for reading: no window for a swap);
//   - reads at most a size cap (cap+1 bytes are read, so a file that grew
//     past its fstat size is still caught);
//   - ends when ctx does, even if the kernel does not return.
//
// ReadInRoot resolves the path inside a root directory with openat2(2)
// RESOLVE_IN_ROOT: "..", absolute symlinks and absolute paths all stay inside
// the root, as they would for a process chrooted there. This matters for
// /proc/PID/root: opened through it, an absolute symlink inside a container
// would otherwise resolve against the host's root, letting a pod make the
// agent read host files.
package safefile

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotRegular: the path is a FIFO, device, socket or directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the cap the caller set.
	ErrTooLarge = errors.New("file exceeds the size cap")
)

// maxPending bounds the reads in flight in this process, those abandoned
// because their ctx ended while the kernel had not returned included (a read
// on a hung FUSE or NFS mount cannot be interrupted, only abandoned). Once
// all are stuck, further reads wait for a slot until their ctx ends: a hung
// file system costs at most maxPending goroutines and descriptors, never an
// unbounded pile.
const maxPending = 16

var pending = make(chan struct{}, maxPending)

// withDeadline runs read on its own goroutine and returns when it is done
// or when ctx ends, whichever comes first. The goroutine owns its slot in
// pending and gives it back when the kernel returns; nothing waits for it
// after ctx ended, by design (see maxPending).
func withDeadline(ctx context.Context, name string, read func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, context.Cause(ctx))
	}
	select {
	case pending <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: %w (%d reads already stuck in the kernel)", name, context.Cause(ctx), maxPending)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() { // owned by the pending slot it holds; see maxPending
		defer func() { <-pending }()
		b, err := read(ctx)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // finished at the same moment: keep the answer
			return r.b, r.err
		default:
		}
		return nil, fmt.Errorf("read %s: %w", name, context.Cause(ctx))
	}
}

// readCapped reads r up to max bytes, checking ctx between chunks; more
// than max bytes is ErrTooLarge. hint is the expected size (fstat's; 0 for
// procfs files, which report none).
func readCapped(ctx context.Context, name string, r io.Reader, hint, max int64) ([]byte, error) {
	size := min(hint, max) + 1
	if size < 512 {
		size = 512
	}
	b := make([]byte, 0, size)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, context.Cause(ctx))
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
		room := min(int64(cap(b)-len(b)), max+1-int64(len(b)))
		n, err := r.Read(b[len(b) : len(b)+int(room)])
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			return nil, fmt.Errorf("%s: %w of %s", name, ErrTooLarge, FormatSize(max))
		}
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// FormatSize renders a byte count for messages: "16 MiB", "4 KiB", "300 B".
func FormatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
