package safefile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ReadFile reads the regular file at path (symlinks followed, as open(2)
// does), at most max bytes, until ctx ends.
func ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	return withDeadline(ctx, path, func(ctx context.Context) ([]byte, error) {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return readPath(ctx, path, fd, max)
	})
}

// ReadInRoot reads the regular file at path resolved inside root, as if
// root were "/" (openat2 RESOLVE_IN_ROOT): "..", absolute paths and
// absolute symlinks never leave root, and magic links (/proc/self/…) are
// refused. root itself may be a magic link such as /proc/PID/root: it is
// opened by the caller's rules, then everything below it by the pod's. At
// most max bytes are read, until ctx ends. A kernel without openat2 (before
// 5.6) gets an error wrapping errors.ErrUnsupported, never an unsafe read.
func ReadInRoot(ctx context.Context, root, path string, max int64) ([]byte, error) {
	name := filepath.Join(root, path)
	return withDeadline(ctx, name, func(ctx context.Context) ([]byte, error) {
		rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: root, Err: err}
		}
		defer unix.Close(rfd)
		how := &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		var fd int
		for range 8 { // EAGAIN: a concurrent rename raced the lookup; retry
			fd, err = unix.Openat2(rfd, path, how)
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("open %s: openat2 needs Linux 5.6: %w", name, errors.ErrUnsupported)
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return readPath(ctx, name, fd, max)
	})
}

// readPath checks that the O_PATH descriptor fd is a regular file no larger
// than max, reopens that same inode for reading and reads it. It closes fd.
func readPath(ctx context.Context, name string, fd int, max int64) ([]byte, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if err := regular(name, &st, max); err != nil {
		return nil, err
	}
	// Reopening through /proc/self/fd opens the very inode checked above
	// (open(2), O_PATH), so nothing can be swapped in between. O_NONBLOCK and
	// O_NOCTTY are belt and braces: the file is regular.
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(rfd), name)
	defer f.Close()
	var st2 unix.Stat_t
	if err := unix.Fstat(rfd, &st2); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st2.Dev != st.Dev || st2.Ino != st.Ino {
		return nil, fmt.Errorf("reopen %s: a different file came back", name)
	}
	return readCapped(ctx, name, f, st.Size, max)
}

func regular(name string, st *unix.Stat_t, max int64) error {
	kind := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size > max {
			return fmt.Errorf("%s: %w of %s (it has %d bytes)", name, ErrTooLarge, FormatSize(max), st.Size)
		}
		return nil
	case unix.S_IFIFO:
		kind = "FIFO"
	case unix.S_IFCHR:
		kind = "character device"
	case unix.S_IFBLK:
		kind = "block device"
	case unix.S_IFDIR:
		kind = "directory"
	case unix.S_IFSOCK:
		kind = "socket"
	default:
		kind = "special file"
	}
	return fmt.Errorf("%s is a %s: %w", name, kind, ErrNotRegular)
}
