// Package kernel reads what the kernel of a network namespace knows about
// TCP, read-only, always for a given namespace: the SNMP/netstat counters
// (ListenDrops, PAWS*, TCPTimeouts…), a socket-state audit over sock_diag
// (CLOSE-WAIT sockets nobody closes), conntrack statistics, and
// a lint of the sysctls behind port clashes with NodePorts and PAWS drops.
//
// Everything namespaced is read from a thread inside the namespace
// (probe/netns.Do): /proc/net is a symlink to /proc/self/net, and "self" is
// the thread-group leader, whose namespace is the host's, so the files are
// opened as /proc/thread-self/net/… on the locked thread; /proc/sys/net is
// resolved against the opening thread's namespace too; sock_diag and
// conntrack netlink sockets belong to the namespace they were created in.
package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/connprobe/connprobe/probe/netns"
)

// Counters are SNMP/netstat counters keyed "TcpExt.ListenDrops",
// "Tcp.RetransSegs", … Values are signed: /proc/net/snmp has Tcp.MaxConn -1.
type Counters map[string]int64

// ParseCounters parses /proc/net/netstat or /proc/net/snmp: pairs of lines
// "Prefix: name name …" then "Prefix: value value …". Malformed pairs are
// skipped, never a panic; the error reports the first one.
func ParseCounters(b []byte, into Counters) error {
	var first error
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var header []string
	var headerPrefix string
	line := 0
	for sc.Scan() {
		line++
		prefix, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			if first == nil && strings.TrimSpace(sc.Text()) != "" {
				first = fmt.Errorf("line %d: no \"Prefix:\"", line)
			}
			header = nil
			continue
		}
		fields := strings.Fields(rest)
		if header == nil || prefix != headerPrefix {
			header, headerPrefix = fields, prefix
			continue
		}
		if len(fields) != len(header) {
			if first == nil {
				first = fmt.Errorf("line %d: %s has %d values for %d names", line, prefix, len(fields), len(header))
			}
			header = nil
			continue
		}
		for i, f := range fields {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				// Counters are u64 in the kernel; clamp the impossible rest.
				u, uerr := strconv.ParseUint(f, 10, 64)
				if uerr != nil {
					if first == nil {
						first = fmt.Errorf("line %d: %s.%s: %q is not a number", line, prefix, header[i], f)
					}
					continue
				}
				v = int64(u >> 1)
			}
			into[prefix+"."+header[i]] = v
		}
		header = nil
	}
	if err := sc.Err(); err != nil && first == nil {
		first = err
	}
	return first
}

// ReadCounters reads /proc/net/netstat and /proc/net/snmp of the namespace
// at nsPath ("" = this process's).
func ReadCounters(nsPath string) (Counters, error) {
	c := Counters{}
	err := netns.Do(nsPath, func() error {
		for _, f := range []string{"netstat", "snmp"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			if err := ParseCounters(b, c); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel: counters: %w", err)
	}
	return c, nil
}

// Watched are the counters that explain failed connections, with what a
// rise means. They are the ones --explain reports and the collector exports.
var Watched = []struct {
	Key, Meaning string
}{
	{"TcpExt.ListenOverflows", "accept queue full: SYNs/ACKs to a listener dropped"},
	{"TcpExt.ListenDrops", "SYNs to LISTEN sockets dropped (any cause, netstat -s)"},
	{"TcpExt.TCPReqQFullDrop", "SYN queue full without syncookies: SYN dropped"},
	{"TcpExt.TCPReqQFullDoCookies", "SYN queue full: answered with a syncookie"},
	{"TcpExt.PAWSActive", "SYN/ACK dropped by PAWS (timestamp went backwards)"},
	{"TcpExt.PAWSEstab", "segment on an established connection dropped by PAWS"},
	{"TcpExt.PAWSTimewait", "packet to a TIME-WAIT socket rejected by PAWS"},
	{"TcpExt.TCPSynRetrans", "SYN or SYN/ACK retransmitted"},
	{"TcpExt.TCPTimeouts", "retransmission timer fired"},
	{"TcpExt.TCPAbortOnTimeout", "connection aborted: retransmissions or keep-alives unanswered"},
	{"TcpExt.TCPAbortOnData", "connection reset: data arrived after close"},
	{"TcpExt.TCPAbortOnClose", "connection reset: closed with unread data"},
	{"TcpExt.TCPKeepAlive", "keep-alive probes sent"},
	{"TcpExt.TCPBacklogDrop", "segment dropped: socket backlog full"},
	{"Tcp.AttemptFails", "connection attempts failed (SYN-SENT/SYN-RECV to CLOSED)"},
	{"Tcp.EstabResets", "established connections reset"},
	{"Tcp.RetransSegs", "segments retransmitted"},
	{"Tcp.InErrs", "segments received in error"},
	{"Tcp.OutRsts", "RSTs sent"},
}

// Change is a counter's rise between two readings.
type Change struct {
	Key     string
	Delta   int64
	Meaning string
}

// Delta returns the watched counters that rose from before to after, in
// Watched order.
func Delta(before, after Counters) []Change {
	var out []Change
	for _, w := range Watched {
		a, okA := after[w.Key]
		b, okB := before[w.Key]
		if !okA || !okB || a <= b {
			continue
		}
		out = append(out, Change{Key: w.Key, Delta: a - b, Meaning: w.Meaning})
	}
	return out
}

// FormatChanges renders changes as one evidence line:
// "ListenOverflows +3 (accept queue full…), ListenDrops +3 (…)".
func FormatChanges(cs []Change) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		name := c.Key[strings.IndexByte(c.Key, '.')+1:]
		parts = append(parts, fmt.Sprintf("%s +%d (%s)", name, c.Delta, c.Meaning))
	}
	return strings.Join(parts, ", ")
}

// Keys returns the sorted keys of c (for stable output).
func (c Counters) Keys() []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
