//go:build linux

package syn_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// benchWorkers is how many probes are in flight at once: enough to hide the
// ~50 µs lab RTT behind each other.
const benchWorkers = 64

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProbes probes one lab target (a listener in the db namespace,
// through the node) b.N times with the SYN probe, the connect probe, and
// hping3 -S at the same packet count, and reports for each: probes/s and
// CPU ms per 1000 probes (process user+system time; the lab's kernel work
// runs in softirq on the sending process's CPU and is counted with it). The
// SYN probe, the send-only floor and zmap also run against a closed port on
// the same db address (the db's kernel answers RST): the -closed rows. Run
// it pinned to one core: taskset -c 0 go test -bench Probes -cpu 1.
func BenchmarkProbes(b *testing.B) {
	l := lab.New(b)
	dst := netip.AddrPortFrom(l.DBIP, 3306)
	// Nothing listens on the closed port: the SYN meets the db's
	// tcp_v4_send_reset (no socket), no SYN/ACK and so no RST of ours.
	closed := netip.AddrPortFrom(l.DBIP, 3307)
	ln, err := l.Listen(l.DB, dst.String())
	if err != nil {
		b.Fatal(err)
	}
	// The connect probe completes handshakes: accept and close them so the
	// backlog never fills. The SYN probe never reaches accept.
	testlisten.Serve(b, ln, testlisten.Close)
	target := func(a netip.AddrPort) probe.Target {
		tg, err := probe.ParseTarget(a.String())
		if err != nil {
			b.Fatal(err)
		}
		tg.NetNS = l.Path(l.Pod)
		return tg
	}
	tg, tgClosed := target(dst), target(closed)

	if err := syn.SetRate(10_000_000, 10_000); err != nil {
		b.Fatal(err)
	}
	defer syn.SetRate(syn.DefaultRate, syn.DefaultBurst)

	// run probes with benchWorkers probers in flight; a probe is answered
	// when its reason is want (ok for an open port, refused for the RST of
	// a closed one): fewer than 99% answered fails the run.
	run := func(b *testing.B, want probe.Reason, newProber func() (probe.Prober, error)) {
		probers := make([]probe.Prober, benchWorkers)
		for i := range probers {
			p, err := newProber()
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			probers[i] = p
			p.Probe(b.Context()) // open the shared path outside the timing
		}
		var left atomic.Int64
		left.Store(int64(b.N))
		var answered atomic.Int64
		var reason atomic.Value
		b.ResetTimer()
		cpu0, t0 := cpuNow(), time.Now()
		var wg sync.WaitGroup
		for _, p := range probers {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if r := p.Probe(b.Context()); r.Reason == want {
						answered.Add(1)
					} else {
						reason.Store(fmt.Sprintf("%s %q", r.Reason, r.Evidence))
					}
				}
			})
		}
		wg.Wait()
		el, cpu := time.Since(t0), cpuNow()-cpu0
		b.StopTimer()
		if f := int64(b.N) - answered.Load(); f > int64(b.N)/100 {
			b.Fatalf("%d of %d probes did not end %s, e.g. %v", f, b.N, want, reason.Load())
		}
		reportRate(b, b.N, el, cpu)
		b.ReportMetric(float64(answered.Load())/float64(b.N)*100, "%answered")
	}
	newSyn := func(tg probe.Target) func() (probe.Prober, error) {
		return func() (probe.Prober, error) {
			return syn.New(tg, syn.Config{Timeout: 2 * time.Second, Schedule: []time.Duration{time.Second}})
		}
	}
	b.Run("syn", func(b *testing.B) { run(b, probe.ReasonOK, newSyn(tg)) })
	// The SYN probe classifies the closed port's RST as refused: that is
	// its answer here, and the row fails if it is anything else.
	b.Run("syn-closed", func(b *testing.B) { run(b, probe.ReasonRefused, newSyn(tgClosed)) })
	b.Run("connect", func(b *testing.B) {
		run(b, probe.ReasonOK, func() (probe.Prober, error) { return connect.New(tg, connect.Config{Timeout: 2 * time.Second}) })
	})
	// The floor is NOT a probe: it sends the same SYNs (fresh source
	// ports, one sendto each) open loop and never reads or matches an
	// answer. Its CPU is what the lab's kernel path costs per SYN (the SYN
	// through node and bridge, the target's SYN/ACK, our kernel's RST, all
	// in softirq on this core; for the closed port the target's RST alone)
	// plus the raw send itself: the part of a probe's cost no prober code
	// can remove, and so the bound on one-core throughput in this lab.
	floor := func(b *testing.B, dst netip.AddrPort) {
		var fd int
		if err := netns.Do(l.Path(l.Pod), func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		// Receive nothing: the floor pays no receive path.
		drop, _ := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
		prog := unix.SockFprog{Len: uint16(len(drop)), Filter: (*unix.SockFilter)(unsafe.Pointer(&drop[0]))}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			b.Fatal(err)
		}
		to := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
		seg := make([]byte, 0, 64)
		b.ResetTimer()
		cpu0, t0 := cpuNow(), time.Now()
		for i := range b.N {
			src := netip.AddrPortFrom(l.PodIP, uint16(syn.PortLo+i%(syn.PortHi-syn.PortLo+1)))
			seg, _ = syn.AppendSYN(seg[:0], syn.SYN{Src: src, Dst: dst, Seq: uint32(i), TSval: uint32(i), MSS: 1460, WScale: 7, Window: 64240})
			if err := unix.Sendto(fd, seg, 0, to); err != nil {
				b.Fatal(err)
			}
		}
		el, cpu := time.Since(t0), cpuNow()-cpu0
		b.StopTimer()
		reportRate(b, b.N, el, cpu)
	}
	b.Run("floor-send-only", func(b *testing.B) { floor(b, dst) })
	b.Run("floor-send-only-closed", func(b *testing.B) { floor(b, closed) })
	// hping3 sends open loop (it does not wait for an answer before the
	// next SYN). At -i u100 it still reads and counts every SYN/ACK; at
	// -i u1 (as fast as its usleep allows) it counts almost none.
	for _, interval := range []string{"u100", "u1"} {
		b.Run("hping3-i"+interval, func(b *testing.B) {
			cmd := exec.CommandContext(b.Context(), "ip", "netns", "exec", l.Pod, "hping3", "-q", "-S", "-I", "eth0",
				"-p", strconv.Itoa(int(dst.Port())), "-c", strconv.Itoa(b.N), "-i", interval, dst.Addr().String())
			b.ResetTimer()
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			el := time.Since(t0)
			b.StopTimer()
			if err != nil && cmd.ProcessState == nil {
				b.Fatalf("hping3: %v: %s", err, out)
			}
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`).FindSubmatch(out)
			if m == nil {
				b.Fatalf("hping3 output: %s", out)
			}
			sent, _ := strconv.Atoi(string(m[1]))
			got, _ := strconv.Atoi(string(m[2]))
			reportRate(b, sent, el, cpu)
			b.ReportMetric(float64(got)/float64(sent)*100, "%answered")
		})
	}
	b.Run("zmap-open", func(b *testing.B) { benchZmap(b, l, dst) })
	b.Run("zmap-closed", func(b *testing.B) { benchZmap(b, l, closed) })
}

// reportRate reports n probes (or packets) sent in el using cpu of CPU time
// as the rows of the SYN benchmark table read them: probes/s and CPU ms per
// 1000.
func reportRate(b *testing.B, n int, el, cpu time.Duration) {
	b.ReportMetric(float64(n)/el.Seconds(), "probes/s")
	b.ReportMetric(cpu.Seconds()*1000/float64(n)*1000, "cpu-ms/1000")
}
