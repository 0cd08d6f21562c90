// Package netns is the only code in connprobe that changes a thread's network
// namespace. A probe enters a namespace only to create its sockets: a socket
// keeps the namespace it was created in for its whole life, so all I/O then
// runs on ordinary goroutines in the host namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe"
)

// NamedDir is where `ip netns add` keeps named namespaces.
const NamedDir = "/run/netns"

// Resolve turns a user's namespace spec into the path of a namespace file:
// "pid:N" is /proc/N/ns/net, a spec containing "/" is a path, anything else
// is a name under /run/netns. It checks that the file exists and is a network
// namespace. One that does not exist wraps ErrNotFound (with a hint of
// where to look); a namespace file whose namespace died wraps
// probe.ErrNetNSGone.
func Resolve(spec string) (string, error) {
	var path string
	switch {
	case spec == "":
		return "", errors.New("netns: empty namespace")
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(strings.TrimPrefix(spec, "pid:"))
		if err != nil || pid <= 0 {
			return "", fmt.Errorf("netns %q: pid:N wants a positive process id", spec)
		}
		path = fmt.Sprintf("/proc/%d/ns/net", pid)
	case strings.Contains(spec, "/"):
		path = spec
	default:
		path = filepath.Join(NamedDir, spec)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return "", fmt.Errorf("netns %q: %s: %w (%s)", spec, path, ErrNotFound, notFoundHint(spec))
	}
	if err := Check(path); err != nil {
		return "", fmt.Errorf("netns %q: %w", spec, err)
	}
	return path, nil
}

// notFoundHint says where the namespaces a spec of this form come from.
func notFoundHint(spec string) string {
	switch {
	case strings.HasPrefix(spec, "pid:"):
		return "no such process; probe netns ls lists pods' namespaces with a PID"
	case strings.Contains(spec, "/"):
		return "no such file"
	}
	return "no such name in " + NamedDir + "; ip netns list or probe netns ls shows the ones there are"
}

// Check verifies that path is (still) a network namespace.
func Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return openError(path, err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return os.NewSyscallError("fstatfs", err)
	}
	// Namespace files live on nsfs; a bind-mount target whose namespace died
	// (ip netns delete) reverts to a plain file on tmpfs.
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s: not a namespace file: %w", path, probe.ErrNetNSGone)
	}
	return nil
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%s: %w", path, probe.ErrNetNSGone)
	case errors.Is(err, os.ErrPermission):
		return &probe.PermissionError{Capability: "CAP_SYS_PTRACE (or root) to open another process's namespace", Op: "open " + path, Err: err}
	}
	return fmt.Errorf("netns: open %s: %w", path, err)
}

// Do runs fn with the calling goroutine's OS thread in the network namespace
// at path, then returns the thread to its own namespace. An empty path runs
// fn where we are. fn should only create sockets: it runs on a locked thread
// and anything it starts (goroutines) will not inherit the namespace.
//
// If the thread cannot be returned to its original namespace it stays locked,
// so the Go runtime terminates it when this goroutine exits instead of reusing
// a thread that sits in a foreign namespace (see vishvananda/netns, CNI pkg/ns).
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := vnetns.GetFromPath(path)
	if err != nil {
		return openError(path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	// A fresh goroutine owns the locked thread: if restoring fails we simply
	// never unlock it and the thread dies with the goroutine.
	go func() {
		errc <- doLocked(target, path, fn)
	}()
	return <-errc
}

func doLocked(target vnetns.NsHandle, path string, fn func() error) error {
	runtime.LockOSThread()
	origin, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: get current: %w", err)
	}
	defer origin.Close()
	if err := vnetns.Set(target); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			return &probe.PermissionError{Capability: "CAP_SYS_ADMIN", Op: "setns " + path, Err: os.NewSyscallError("setns", err)}
		}
		return fmt.Errorf("netns: enter %s: %w", path, os.NewSyscallError("setns", err))
	}
	ferr := fn()
	if err := vnetns.Set(origin); err != nil {
		// Leave the thread locked: the runtime discards it on goroutine exit.
		return errors.Join(ferr, fmt.Errorf("netns: restore: %w", os.NewSyscallError("setns", err)))
	}
	runtime.UnlockOSThread()
	return ferr
}
