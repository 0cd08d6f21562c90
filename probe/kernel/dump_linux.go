package kernel

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe/netns"
)

// dialIn creates a netlink socket of family in the namespace at nsPath:
// only the socket() call runs inside (netns.Do); the socket keeps the
// namespace for life, so requests run on ordinary goroutines.
func dialIn(nsPath string, family int) (*netlink.Conn, error) {
	var c *netlink.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = netlink.Dial(family, nil)
		return err
	})
	return c, err
}

// Sockets dumps every TCP socket (IPv4 and IPv6) of the namespace at nsPath
// over sock_diag (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY), as ss -tan does.
func Sockets(nsPath string) ([]Socket, error) {
	c, err := dialIn(nsPath, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("kernel: sock_diag: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var out []Socket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
			Data:   diagRequest(fam),
		})
		if err != nil {
			return nil, fmt.Errorf("kernel: sock_diag dump: %w", err)
		}
		for _, m := range msgs {
			s, err := ParseDiagMsg(m.Data)
			if err != nil {
				return nil, fmt.Errorf("kernel: sock_diag: %w", err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Conntrack are a namespace's connection-tracking statistics, summed over
// CPUs (conntrack -S) plus the table's fill (conntrack -C).
type Conntrack struct {
	Entries, Max                          uint32
	Found, Invalid, Insert, InsertFailed  uint64
	Drop, EarlyDrop, Error, SearchRestart uint64
}

// ConntrackStats reads the conntrack statistics of the namespace at nsPath
// over ctnetlink.
func ConntrackStats(nsPath string) (Conntrack, error) {
	var c *conntrack.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = conntrack.Dial(nil)
		return err
	})
	if err != nil {
		return Conntrack{}, fmt.Errorf("kernel: conntrack: %w", err)
	}
	defer c.Close()
	var out Conntrack
	cpus, err := c.Stats()
	if err != nil {
		return Conntrack{}, fmt.Errorf("kernel: conntrack stats: %w", err)
	}
	for _, s := range cpus {
		out.Found += uint64(s.Found)
		out.Invalid += uint64(s.Invalid)
		out.Insert += uint64(s.Insert)
		out.InsertFailed += uint64(s.InsertFailed)
		out.Drop += uint64(s.Drop)
		out.EarlyDrop += uint64(s.EarlyDrop)
		out.Error += uint64(s.Error)
		out.SearchRestart += uint64(s.SearchRestart)
	}
	// The table's fill from the namespace's sysctls: ctnetlink's global
	// stats request (IPCTNL_MSG_CT_GET_STATS) got no answer on 6.18 and
	// hung the read; the sysctls hold the same two numbers.
	err = netns.Do(nsPath, func() error {
		for _, f := range []struct {
			name string
			dst  *uint32
		}{{"nf_conntrack_count", &out.Entries}, {"nf_conntrack_max", &out.Max}} {
			b, err := os.ReadFile("/proc/sys/net/netfilter/" + f.name)
			if err != nil {
				return err
			}
			n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = uint32(n)
		}
		return nil
	})
	if err != nil {
		return Conntrack{}, fmt.Errorf("kernel: conntrack count: %w", err)
	}
	return out, nil
}
