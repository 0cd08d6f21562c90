//go:build linux

package syn_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/syn"
)

// TestRTTAgainstCapture compares each probe's syn_rtt with the time between
// the same SYN and SYN/ACK in a tcpdump capture on the pod's interface
// (nanosecond pcap timestamps), and reports the error. The receive side uses
// the same kernel timestamp as the capture; the send side is the kernel's
// timestamp of the SYN entering the device queue (SOF_TIMESTAMPING_TX_SCHED),
// taken a moment before the capture's tap sees it, so the error is that
// moment: about a microsecond. The goal is under 20µs at p99.
func TestRTTAgainstCapture(t *testing.T) {
	l := lab.New(t)
	dst := netip.AddrPortFrom(l.DBIP, 3306)
	listen(t, l, l.DB, dst)
	pcap := filepath.Join(t.TempDir(), "syn.pcap")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Pod, "tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root",
		"--time-stamp-precision=nano", "-w", pcap, "tcp port 3306")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
		t.Logf("tcpdump: %s", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()

	const n = 500
	p, err := syn.New(target(t, l, dst), fast)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rtts := map[uint16]time.Duration{}
	reused := map[uint16]bool{} // a port used twice cannot be matched by port
	for range n {
		r := p.Probe(t.Context())
		if !r.Success() {
			t.Fatalf("probe: %s %q", r.Reason, r.Evidence)
		}
		if _, ok := rtts[r.Local.Port()]; ok {
			reused[r.Local.Port()] = true
		}
		rtts[r.Local.Port()] = r.Timings.SynRTT
		time.Sleep(2 * time.Millisecond)
	}
	stamped, unstamped := syn.SendStamps(p)
	t.Logf("%d SYNs timed by the kernel's send timestamp, %d by the clock", stamped, unstamped)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()

	wire, err := captureRTTs(pcap)
	if err != nil {
		t.Fatal(err)
	}
	var errs []time.Duration
	var sumProbe, sumWire time.Duration
	for port, rtt := range rtts {
		w, ok := wire[port]
		if !ok || reused[port] {
			continue
		}
		errs = append(errs, rtt-w)
		sumProbe += rtt
		sumWire += w
	}
	if fi, err := os.Stat(pcap); err == nil {
		t.Logf("capture: %d bytes, %d SYN/ACKs", fi.Size(), len(wire))
	}
	if len(errs) < n*9/10 {
		t.Fatalf("only %d of %d probes found in the capture", len(errs), n)
	}
	slices.Sort(errs)
	abs := make([]time.Duration, len(errs))
	for i, e := range errs {
		abs[i] = max(e, -e)
	}
	slices.Sort(abs)
	med, p90, p99, worst := abs[len(abs)/2], abs[len(abs)*9/10], abs[len(abs)*99/100], abs[len(abs)-1]
	summary := fmt.Sprintf("syn_rtt vs capture over %d probes: mean probe %s, mean wire %s; error (probe-wire) min %s median|err| %s p90|err| %s p99|err| %s max|err| %s",
		len(errs), sumProbe/time.Duration(len(errs)), sumWire/time.Duration(len(errs)), errs[0], med, p90, p99, worst)
	t.Log(summary)
	if out := os.Getenv("SYN_RTT_REPORT"); out != "" {
		os.WriteFile(out, []byte(summary+"\n"), 0o644)
	}
	// Both ends are kernel timestamps: every SYN must have been timed by
	// the kernel, and most errors are about a microsecond. The clock
	// before sendmsg, which timed SYNs before, gives 4 to 8µs at the
	// median and tens of µs at p90 on a loaded machine. The tail (about
	// 1 in 100 replies, timed 20 to 90µs after the capture saw them) moves
	// with the machine's load and is reported, not asserted: docs/syn.md
	// gives quiet-machine figures.
	if stamped < uint64(n) || unstamped != 0 {
		t.Errorf("%d of %d SYNs timed by the kernel's send timestamp, %d by the clock: want all by the kernel", stamped, n, unstamped)
	}
	if med > 3*time.Microsecond || p90 > 20*time.Microsecond {
		t.Errorf("median |error| %s, p90 %s: want under 3µs and 20µs", med, p90)
	}
	if errs[0] < -20*time.Microsecond {
		t.Errorf("a probe measured %s less than the wire: the send time is taken too late", -errs[0])
	}
}

// captureRTTs reads a nanosecond pcap (Ethernet) and returns, per local port
// of the pod, the time from its first SYN to the SYN/ACK.
func captureRTTs(file string) (map[uint16]time.Duration, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b23c4d {
		return nil, fmt.Errorf("%s: not a little-endian nanosecond pcap", file)
	}
	syns := map[uint16]time.Time{}
	isn := map[uint16]uint32{}
	twice := map[uint16]bool{} // SYNs of two connections from one port
	out := map[uint16]time.Duration{}
	for off := 24; off+16 <= len(b); {
		sec, nsec := binary.LittleEndian.Uint32(b[off:]), binary.LittleEndian.Uint32(b[off+4:])
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		pkt := b[off+16 : min(off+16+incl, len(b))]
		off += 16 + incl
		at := time.Unix(int64(sec), int64(nsec))
		if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 6 || len(ip) < ihl+20 {
			continue
		}
		tcp := ip[ihl:]
		sport, dport, flags := binary.BigEndian.Uint16(tcp), binary.BigEndian.Uint16(tcp[2:]), tcp[13]
		switch flags & 0x12 {
		case 0x02: // SYN from the pod
			seq := binary.BigEndian.Uint32(tcp[4:])
			if _, ok := syns[sport]; !ok {
				syns[sport], isn[sport] = at, seq
			} else if isn[sport] != seq {
				twice[sport] = true
			}
		case 0x12: // SYN/ACK to the pod
			if s, ok := syns[dport]; ok {
				if _, done := out[dport]; !done {
					out[dport] = at.Sub(s)
				}
			}
		}
	}
	for port := range twice {
		delete(out, port)
	}
	return out, nil
}
