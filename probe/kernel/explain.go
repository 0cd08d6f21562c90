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

// Own is what the probe itself knows of its attempt, shown beside the
// namespace-wide counters so a reader can tell its share from other
// sockets' (another client retrying at the same time).
type Own struct {
	SynRetrans int // SYN retransmissions of this attempt (TcpExt.TCPSynRetrans)
}

// Evidence reads the counters again and renders, per end, the watched
// counters that rose since Take — or that none did, which is evidence too
// (no ListenDrops on the server: the SYNs never got there). The counters
// are the whole namespace's, every socket in it counted: each line says
// so, and the local end's TCPSynRetrans is shown beside own's figure.
func (s *Snapshot) Evidence(own Own) []string {
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
			out = append(out, fmt.Sprintf("kernel %s %s (namespace-wide): no TCP drop, PAWS, timeout or reset counter moved", e.Role, e.Name))
			continue
		}
		line := fmt.Sprintf("kernel %s %s (namespace-wide, every socket in it): %s", e.Role, e.Name, FormatChanges(cs))
		if e.Role == "local" {
			for _, c := range cs {
				if c.Key == "TcpExt.TCPSynRetrans" && c.Delta != int64(own.SynRetrans) {
					line += fmt.Sprintf("; this probe retransmitted %d SYN(s) of the %d: other sockets account for the rest", own.SynRetrans, c.Delta)
				}
			}
		}
		out = append(out, line)
	}
	return out
}

// FindPeer looks for the namespace on this machine that owns addr: the one
// of candidates with addr configured on one of its interfaces. It is how
// --explain sees the far end when both ends share a node (a lab, pods on
// one node); a VIP or a remote host has none, and ok is false. When more
// than one namespace has the address (the same private address in
// unrelated namespaces), the peer cannot be told: ok is false and
// ambiguous lists them, rather than a guess. A loopback address is never
// looked up: every namespace has one, and the peer of a loopback target is
// the prober's own namespace.
func FindPeer(addr netip.Addr, candidates []End) (peer End, ok bool, ambiguous []End) {
	if addr.Unmap().IsLoopback() {
		return End{}, false, nil
	}
	var found []End
	for _, c := range candidates {
		has := false
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
						has = true
					}
				}
			}
			return nil
		})
		if err == nil && has {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return End{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return End{}, false, found
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
