//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// Bounds of reading a pod's resolv.conf: a file in the pod, so hostile.
const (
	maxResolvConf     = 64 << 10
	resolvConfTimeout = 2 * time.Second
	maxPodPIDs        = 32 // processes tried for a root with etc/resolv.conf
)

// podVantage is where --pod NAMESPACE/NAME probes from: the pod's network
// namespace on this node and its resolver (its own resolv.conf, asked from
// inside that namespace).
type podVantage struct {
	ns       targets.Namespace
	resolver *probe.Resolver
	rc       probe.ResolvConf
	from     string // the file the resolver came from, for messages
}

// withServer is the pod's resolver with server in place of its
// nameservers (--resolver): the pod's search list and ndots, asked from
// inside the pod's namespace.
func (v *podVantage) withServer(server netip.AddrPort) (*probe.Resolver, error) {
	rc := v.rc
	rc.Servers = []netip.AddrPort{server}
	return probe.NewStubResolver(rc, dialIn(v.ns.Path))
}

// findPodNS finds the network namespace of pod id ("NAMESPACE/NAME") on
// this node with discovery d.
func findPodNS(ctx context.Context, d targets.Discovery, id string) (targets.Namespace, error) {
	pns, name, ok := strings.Cut(id, "/")
	if !ok || pns == "" || name == "" || strings.Contains(name, "/") {
		return targets.Namespace{}, usagef("--pod %q: want NAMESPACE/NAME", id)
	}
	uid, err := podUIDFromAPI(ctx, pns, name)
	if err != nil {
		return targets.Namespace{}, fmt.Errorf("--pod: %w", err)
	}
	n, err := d.FindPod(ctx, id, uid)
	if err != nil {
		return targets.Namespace{}, fmt.Errorf("--pod: %w", err)
	}
	return n, nil
}

// findPod finds pod id ("NAMESPACE/NAME") on this node with discovery d,
// and its resolver.
func findPod(ctx context.Context, d targets.Discovery, id string) (*podVantage, error) {
	n, err := findPodNS(ctx, d, id)
	if err != nil {
		return nil, err
	}
	rc, from, err := podResolvConf(ctx, d, n)
	if err != nil {
		return nil, fmt.Errorf("--pod %s: %w", id, err)
	}
	r, err := probe.NewStubResolver(rc, dialIn(n.Path))
	if err != nil {
		return nil, fmt.Errorf("--pod %s: %s: %w", id, from, err)
	}
	return &podVantage{ns: n, resolver: r, rc: rc, from: from}, nil
}

// podResolvConf reads the pod's /etc/resolv.conf inside the root of a
// process in its namespace (the sandbox's root is often empty: the first
// process whose root has the file counts). A file that is there but
// unreadable (a FIFO, too large, a symlink out) is an error, not skipped.
func podResolvConf(ctx context.Context, d targets.Discovery, n targets.Namespace) (probe.ResolvConf, string, error) {
	ctx, cancel := context.WithTimeout(ctx, resolvConfTimeout)
	defer cancel()
	pids, err := d.PIDs(ctx, n, maxPodPIDs)
	if err != nil {
		return probe.ResolvConf{}, "", err
	}
	proc := d.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	for _, pid := range pids {
		root := filepath.Join(proc, strconv.Itoa(pid), "root")
		b, err := safefile.ReadInRoot(ctx, root, "/etc/resolv.conf", maxResolvConf)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		from := root + "/etc/resolv.conf"
		if err != nil {
			return probe.ResolvConf{}, from, fmt.Errorf("pod resolv.conf: %w", err)
		}
		rc, err := probe.ParseResolvConf(b)
		if err != nil {
			return probe.ResolvConf{}, from, fmt.Errorf("%s: %w", from, err)
		}
		return rc, from, nil
	}
	return probe.ResolvConf{}, "", fmt.Errorf("no process in %s has an /etc/resolv.conf: give --resolver", n.Path)
}

// dialIn dials from inside network namespace path: the socket is created
// there (netns.Do), its I/O runs anywhere.
func dialIn(path string) probe.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.Do(path, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
