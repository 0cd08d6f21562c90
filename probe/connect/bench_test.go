package connect_test

import (
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
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
