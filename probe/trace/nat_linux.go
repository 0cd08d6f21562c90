package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/connprobe/connprobe/probe/netns"
)

// Place is a network namespace on this machine where the traced flow's
// conntrack entry may be: the node that NATs a Service VIP.
type Place struct {
	Name  string // for the verdict: "cpl-x-node", "host"
	NetNS string // namespace path; empty: this process's
}

// tcpStates names the kernel's enum tcp_conntrack
// (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// FindNAT looks up the conntrack entry of the flow local → remote in each
// place and returns the first that translates the destination (a DNAT: the
// node of a Service VIP), else the first entry found. The lookup is by the
// original tuple in a dump of each place's table (at most maxEntries). note
// says why nothing is returned.
func FindNAT(places []Place, local, remote netip.AddrPort) (nat *NAT, note string) {
	var plain *NAT
	var errs []error
	for _, pl := range places {
		n, err := lookup(pl, local, remote)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n == nil {
			continue
		}
		if n.DNAT(remote) {
			return n, ""
		}
		if plain == nil {
			plain = n
		}
	}
	if plain != nil {
		return plain, ""
	}
	if len(errs) > 0 && len(errs) == len(places) {
		return nil, fmt.Sprintf("no conntrack entry readable: %v", errors.Join(errs...))
	}
	return nil, fmt.Sprintf("no namespace on this machine (%d looked at) has a conntrack entry for %s → %s: the SYNs never reached a NAT here", len(places), local, remote)
}

// lookupTimeout bounds one conntrack query.
const lookupTimeout = 2 * time.Second

// maxEntries bounds the conntrack table a lookup dumps (about 200 bytes an
// entry in memory).
const maxEntries = 65536

func lookup(pl Place, local, remote netip.AddrPort) (*NAT, error) {
	var c *conntrack.Conn
	var count int
	err := netns.Do(pl.NetNS, func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		if err != nil {
			return nil // conntrack not loaded here: nothing to find
		}
		if count, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("nf_conntrack_count: %w", err)
		}
		if count == 0 || count > maxEntries {
			return nil
		}
		c, err = conntrack.Dial(nil)
		return err
	})
	if err == nil && count > maxEntries {
		return nil, fmt.Errorf("trace: conntrack in %s: %d entries, more than the %d this lookup reads", pl.Name, count, maxEntries)
	}
	if err == nil && c == nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trace: conntrack in %s: %w", pl.Name, err)
	}
	defer c.Close()
	// ctnetlink does not always answer (its global stats request hangs on
	// 6.18, see probe/kernel): closing the socket ends a read that waits
	// too long.
	stop := time.AfterFunc(lookupTimeout, func() { c.Close() })
	defer stop.Stop()
	// A dump, not a GET by tuple: ctnetlink answers a GET with one
	// message flagged NLM_F_MULTI and no NLMSG_DONE, which the netlink
	// library waits on for ever. The dump is bounded by the table size
	// checked above.
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("trace: conntrack dump in %s: %w", pl.Name, err)
	}
	i := slices.IndexFunc(flows, func(f conntrack.Flow) bool {
		o := f.TupleOrig
		return o.Proto.Protocol == 6 && o.IP.SourceAddress.Unmap() == local.Addr() && o.Proto.SourcePort == local.Port() &&
			o.IP.DestinationAddress.Unmap() == remote.Addr() && o.Proto.DestinationPort == remote.Port()
	})
	if i < 0 {
		return nil, nil // no such entry in this namespace: the common case
	}
	f := flows[i]
	n := &NAT{
		Where:   pl.Name,
		Backend: netip.AddrPortFrom(f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort),
		Replied: f.Status.SeenReply(),
		State:   "?",
	}
	if f.ProtoInfo.TCP != nil && int(f.ProtoInfo.TCP.State) < len(tcpStates) {
		n.State = tcpStates[f.ProtoInfo.TCP.State]
	}
	return n, nil
}
