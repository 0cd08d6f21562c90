package connect_test

import (
	"net"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
	"golang.org/x/sys/unix"
)

// BenchmarkProbeLoopback measures one successful connect probe end to end
// (socket, handshake, TCP_INFO, evidence, close) against a loopback
// listener that accepts and closes: the per-probe cost of `probe serve`.
// Run with -cpu 1,2 and -benchmem; the listener's accept loop shares the CPU.
func BenchmarkProbeLoopback(b *testing.B) {
	ln := testlisten.Loopback(b, testlisten.Close)
	tg, err := probe.ParseTarget(ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p, err := connect.New(tg, connect.Config{Timeout: 2 * time.Second})
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if r := p.Probe(b.Context()); !r.Success() {
				b.Errorf("probe failed: %s %v", r.Reason, r.Err)
				return
			}
		}
	})
}

// BenchmarkFloorLoopback is the floor BenchmarkProbeLoopback is measured
// against: exactly the kernel work of one connect probe and nothing else
// (socket, a blocking connect, close) on the same kind of listener. The
// probe's cost is read as a ratio to it, measured in the same run.
func BenchmarkFloorLoopback(b *testing.B) {
	ln := testlisten.Loopback(b, testlisten.Close)
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Error(err)
				return
			}
			if err := unix.Connect(fd, sa); err != nil {
				unix.Close(fd)
				b.Error(err)
				return
			}
			unix.Close(fd)
		}
	})
}

// TestProbeAllocations: a successful connect probe's allocations stay
// within budget (the socket's os.File and its poller registration, the
// watch, the result's evidence line). Every allocation is paid again at
// each of thousands of probes a second, in CPU and in GC work.
func TestProbeAllocations(t *testing.T) {
	// Never accepted: the backlog completes the handshakes, and nothing
	// but the probe allocates.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tg, err := probe.ParseTarget(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := connect.New(tg, connect.Config{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const budget = 8
	n := testing.AllocsPerRun(50, func() {
		if r := p.Probe(ctx); !r.Success() {
			t.Fatalf("probe failed: %s %v", r.Reason, r.Err)
		}
	})
	t.Logf("%.1f allocations per probe", n)
	if n > budget {
		t.Errorf("%.1f allocations per probe, budget %d", n, budget)
	}
}
