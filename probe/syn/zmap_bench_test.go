//go:build linux

package syn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/syn"
	"golang.org/x/sys/unix"
)

// zmapMeta is the part of zmap 2.1.1's scan metadata (-m, JSON) the
// benchmark reads.
type zmapMeta struct {
	TotalSent      int64    `json:"total_sent"` // targets, not packets, in 2.1.1
	PacketStreams  int64    `json:"packet_streams"`
	SendToFailures int64    `json:"send_to_failures"`
	PcapRecv       int64    `json:"pcap_recv"`
	PcapDrop       int64    `json:"pcap_drop"`
	SuccessTotal   int64    `json:"success_total"` // validated SYN/ACKs, repeats included
	FailureTotal   int64    `json:"failure_total"` // validated RSTs
	Whitelisted    []string `json:"whitelisted_networks"`
	Blacklisted    []string `json:"blacklisted_networks"`
}

// zmapLog matches zmap's log lines that bracket its send phase (-v 5);
// 2.1.1 stamps them to the millisecond.
var zmapLog = regexp.MustCompile(`(?m)^\w{3} \d{2} (\d{2}:\d{2}:\d{2}\.\d{3}) \[TRACE\] send: send thread (started|\d+ finished)`)

// benchZmap sends b.N SYNs to dst with zmap 2.1.1 (Debian's), run in the
// lab's pod namespace, and reports probes/s, CPU ms per 1000 and the share
// answered, like the hping3 rows.
//
// zmap scans each address once; the only way 2.1.1 offers to send N SYNs
// to one address is --probes N (-P): N probes per target, probe i from
// source port first + (v + i) mod (number of ports), v a per-target value
// of its validation key. The range is the SYN probe's own (syn.PortLo to
// syn.PortHi, outside the pod's ip_local_port_range, so no connect-probe
// socket in TIME_WAIT owns one of its tuples), so zmap's SYNs take the same
// path through the node as the probe's, ports reused in the same cycle.
//
// What each flag is for (all lookups stay inside the lab):
//   - -C /dev/null, -b /dev/null: no /etc/zmap/zmap.conf, whose blacklist
//     holds 10.0.0.0/8 and so the whole lab; the target list "DB/32" alone
//     is the whitelist, and -n 1 caps the scan at that one address;
//   - -i eth0, -S the pod's address, -G the MAC of the node's interface that
//     holds the pod's default gateway: zmap writes Ethernet frames itself
//     and asks nothing of ARP or the host's routes;
//   - -T 1 --cores CPU: one send thread, and every zmap thread on the CPU
//     this benchmark runs on (zmap pins its threads itself, overriding
//     taskset: without --cores its sender went to core 1);
//   - -r 0: no rate limit, zmap's maximum;
//   - -c 1: a 1 s cooldown, enough for the answers to reach its capture
//     (with -c 0 it quits before it has read them all);
//   - -o /dev/null -m -: no per-host output (2.1.1 prints each address once:
//     one line whatever N), the scan metadata on stdout;
//   - -v 5 --disable-syslog: the send thread's start and end in the log,
//     nothing in the host's syslog.
//
// probes/s is over zmap's send phase as its log stamps it (send thread
// started to finished; millisecond resolution, so ±1 ms of the phase),
// without its start-up and the cooldown, as the Go rows time only their
// probes. CPU per probe is the zmap process's user+system time (rusage of
// the child) less that of a one-probe zmap run just before (its fixed cost,
// reported as fixed-cpu-ms: start-up, the 1 s cooldown's polling; ~25-50 ms
// here, so only runs of many probes make the difference meaningful).
//
// % answered counts what zmap's capture took in: pcap_recv - pcap_drop from
// its metadata, the packets its libpcap filter passed (a RST, or a SYN/ACK
// not sent by our own MAC; only the target answers in the lab), counted by
// the kernel whether or not zmap's receive thread has read them yet.
// zmap's own results are reported too (%zmap-results: success_total +
// failure_total, the answers that passed its validation), and they are a
// lower bound: 2.1.1 rejects valid answers when the -P window of source
// ports wraps past the end of the range (signed % in check_dst_port fails
// the ports before the wrap), which a one-address benchmark makes likely (N
// SYNs from a window that starts at a random one of 4536 ports), and
// answers in libpcap's last, unfinished TPACKET_V3 block when the cooldown
// ends are never read (a one-probe run with -c 1 often shows 0).
//
// No packet can leave the lab: the pod's only link is a veth to the lab's
// node, whose namespace has no default route (checked here before zmap
// runs), and the metadata must show the scan whitelisted the db address
// alone.
func benchZmap(b *testing.B, l *lab.Lab, dst netip.AddrPort) {
	if _, err := exec.LookPath("zmap"); err != nil {
		b.Fatalf("zmap missing (apt-get install zmap; scripts/install-deps.sh): %v", err)
	}
	gw := zmapGatewayMAC(b, l)
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		b.Fatal(err)
	}
	core := 0
	for !cpus.IsSet(core) {
		core++
	}
	zmap := func(n int) (m zmapMeta, sent int64, send, cpu time.Duration) {
		args := []string{"netns", "exec", l.Pod, "zmap",
			"-C", "/dev/null", "-b", "/dev/null", "--disable-syslog", "-q", "-v", "5",
			"-i", "eth0", "-S", l.PodIP.String(), "-G", gw,
			"-p", strconv.Itoa(int(dst.Port())), "-s", fmt.Sprintf("%d-%d", syn.PortLo, syn.PortHi),
			"-n", "1", "-P", strconv.Itoa(n), "-T", "1", "--cores", strconv.Itoa(core),
			"-r", "0", "-c", "1", "-o", "/dev/null", "-m", "-",
			netip.PrefixFrom(dst.Addr(), 32).String()}
		// Bounded: zmap's receive thread waits in libpcap; a run that
		// does not end is killed and fails the row.
		ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second+time.Duration(n)*100*time.Microsecond)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("ip %q: %v\n%s", args, err, stderr.Bytes())
		}
		if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
			b.Fatalf("zmap metadata: %v: %q", err, stdout.Bytes())
		}
		if want := []string{netip.PrefixFrom(dst.Addr(), 32).String()}; !slices.Equal(m.Whitelisted, want) {
			b.Fatalf("zmap scanned %q, want %q only", m.Whitelisted, want)
		}
		if m.TotalSent != 1 || m.PacketStreams != int64(n) {
			b.Fatalf("zmap sent to %d targets × %d probes, want 1 × %d", m.TotalSent, m.PacketStreams, n)
		}
		sent = m.TotalSent*m.PacketStreams - m.SendToFailures
		if sent <= 0 {
			b.Fatalf("zmap sent nothing (%d send failures)\n%s", m.SendToFailures, stderr.Bytes())
		}
		stamps := zmapLog.FindAllSubmatch(stderr.Bytes(), -1)
		if len(stamps) != 2 || string(stamps[0][2]) != "started" {
			b.Fatalf("zmap log: want the send thread's start and end, got %q\n%s", stamps, stderr.Bytes())
		}
		t0, err0 := time.Parse("15:04:05.000", string(stamps[0][1]))
		t1, err1 := time.Parse("15:04:05.000", string(stamps[1][1]))
		if err0 != nil || err1 != nil {
			b.Fatalf("zmap log times: %v %v", err0, err1)
		}
		send = t1.Sub(t0)
		if send < 0 { // past midnight
			send += 24 * time.Hour
		}
		send = max(send, time.Millisecond) // the log's resolution
		return m, sent, send, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	// zmap's fixed cost (start-up, the cooldown's polling): one probe.
	_, _, _, fixed := zmap(1)
	b.ResetTimer()
	m, sent, send, cpu := zmap(b.N)
	b.StopTimer()
	reportRate(b, int(sent), send, max(cpu-fixed, 0))
	b.ReportMetric(fixed.Seconds()*1000, "fixed-cpu-ms")
	b.ReportMetric(float64(m.PcapRecv-m.PcapDrop)/float64(sent)*100, "%answered")
	b.ReportMetric(float64(m.SuccessTotal+m.FailureTotal)/float64(sent)*100, "%zmap-results")
}

// zmapGatewayMAC returns the MAC zmap must address its frames to: that of
// the lab node's interface holding the pod's default gateway address. It
// also fails the benchmark unless the node has no default route, so that
// nothing zmap sends can leave the lab.
func zmapGatewayMAC(b *testing.B, l *lab.Lab) string {
	ipJSON := func(v any, args ...string) {
		out, err := exec.CommandContext(b.Context(), "ip", append([]string{"-j"}, args...)...).Output()
		if err != nil {
			b.Fatalf("ip %q: %v", args, err)
		}
		if err := json.Unmarshal(out, v); err != nil {
			b.Fatalf("ip %q: %v: %q", args, err, out)
		}
	}
	var out []json.RawMessage
	ipJSON(&out, "-n", l.Router, "-4", "route", "show", "default")
	if len(out) != 0 {
		b.Fatalf("lab node %s has a default route %s: zmap could send out of the lab", l.Router, out)
	}
	var routes []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	ipJSON(&routes, "-n", l.Pod, "-4", "route", "show", "default")
	if len(routes) != 1 || routes[0].Dev != "eth0" {
		b.Fatalf("pod %s: want one default route via eth0, got %+v", l.Pod, routes)
	}
	var links []struct {
		IfName   string `json:"ifname"`
		Address  string `json:"address"`
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	ipJSON(&links, "-n", l.Router, "addr", "show")
	for _, ln := range links {
		for _, a := range ln.AddrInfo {
			if a.Local == routes[0].Gateway && ln.Address != "" {
				return ln.Address
			}
		}
	}
	b.Fatalf("pod %s's gateway %s is no address of the lab node %s", l.Pod, routes[0].Gateway, l.Router)
	return ""
}
