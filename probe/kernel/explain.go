package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/connprobe/connprobe/probe/netns"
)

// End is one end of a probed path whose kernel counters can be read.
type End struct {
	Role  string // "local" or "peer"
	Name  string // how evidence names the namespace ("host", "pod-a")
	NetNS string // namespace path; "" = this process's namespace
}

// Snapshot holds counters of the ends taken before a probe.
type Snapshot struct {
	ends   []End
	before []Counters
	errs   []error
}

// Take reads the counters of every end now.
func Take(ends ...End) *Snapshot {
	s := &Snapshot{ends: ends, before: make([]Counters, len(ends)), errs: make([]error, len(ends))}
	for i, e := range ends {
		s.before[i], s.errs[i] = ReadCounters(e.NetNS)
	}
	return s
}

// Evidence reads the counters again and renders, per end, the watched
// counters that rose since Take — or that none did, which is evidence too
// (no ListenDrops on the server: the SYNs never got there).
func (s *Snapshot) Evidence() []string {
	var out []string
	for i, e := range s.ends {
		if s.errs[i] != nil {
			out = append(out, fmt.Sprintf("kernel counters of %s %s unreadable: %v", e.Role, e.Name, s.errs[i]))
			continue
		}
		after, err := ReadCounters(e.NetNS)
		if err != nil {
			out = append(out, fmt.Sprintf("kernel counters of %s %s unreadable: %v", e.Role, e.Name, err))
			continue
		}
		cs := Delta(s.before[i], after)
		if len(cs) == 0 {
			out = append(out, fmt.Sprintf("kernel %s %s: no TCP drop, PAWS, timeout or reset counter moved", e.Role, e.Name))
			continue
		}
		out = append(out, fmt.Sprintf("kernel %s %s: %s", e.Role, e.Name, FormatChanges(cs)))
	}
	return out
}

// FindPeer looks for the namespace on this machine that owns addr: the
// first of candidates with addr configured on one of its interfaces. It is
// how --explain sees the far end when both ends share a node (a lab, pods
// on one node); a VIP or a remote host has none, and ok is false.
func FindPeer(addr netip.Addr, candidates []End) (End, bool) {
	for _, c := range candidates {
		found := false
		err := netns.Do(c.NetNS, func() error {
			// net.InterfaceAddrs opens its rtnetlink socket on this
			// (locked) thread, so it lists the namespace's addresses.
			as, err := net.InterfaceAddrs()
			if err != nil {
				return err
			}
			for _, a := range as {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.Unmap() {
						found = true
					}
				}
			}
			return nil
		})
		if err == nil && found {
			return c, true
		}
	}
	return End{}, false
}

// NamedNamespaces lists /run/netns as Ends (the candidates FindPeer needs
// when no discovery ran).
func NamedNamespaces() []End {
	es, _ := os.ReadDir(netns.NamedDir)
	var out []End
	for _, e := range es {
		out = append(out, End{Role: "peer", Name: e.Name(), NetNS: filepath.Join(netns.NamedDir, e.Name())})
	}
	return out
}
