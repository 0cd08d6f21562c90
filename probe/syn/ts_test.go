package syn

import (
	"net/netip"
	"testing"
	"unsafe"
)

// TestNextTSRisesPerDestination: the TSvals a prober sends to one
// destination always rise, also many in one millisecond and with more
// destinations in rotation than it remembers; and a prober remembers no
// more than lastTSKept of them.
func TestNextTSRisesPerDestination(t *testing.T) {
	p := &Prober{}
	last := map[netip.Addr]uint32{}
	for round := range 50 {
		for d := range lastTSKept + 4 {
			dst := netip.AddrFrom4([4]byte{10, 0, 0, byte(d)})
			ts := p.nextTS(dst)
			if prev, ok := last[dst]; ok && int32(ts-prev) < 0 {
				t.Fatalf("round %d, %s: TSval %d after %d", round, dst, ts, prev)
			}
			if d < lastTSKept/2 {
				// Sent again at once: strictly higher.
				if again := p.nextTS(dst); int32(again-ts) <= 0 {
					t.Fatalf("round %d, %s: TSval %d right after %d", round, dst, again, ts)
				}
				ts = p.lastTSOf(dst)
			}
			last[dst] = ts
		}
	}
	if len(p.lastTS) > lastTSKept {
		t.Errorf("%d destinations remembered, at most %d", len(p.lastTS), lastTSKept)
	}
}

// TestProberSize: serve holds one Prober per SYN target (10k of them at the
// scale the benchmarks run): what a Prober carries before its first probe
// stays small.
func TestProberSize(t *testing.T) {
	if n := unsafe.Sizeof(Prober{}); n > 512 {
		t.Errorf("a Prober is %d bytes, want at most 512 (rare things allocated when needed)", n)
	}
}
