package syn

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nstest"
)

// TestSendTimestamp: a SYN's send time is the kernel's timestamp of the
// packet entering the device, read from the sending socket's error queue
// and taken by the SYN's ports, sequence number and TSval; a SYN the
// kernel holds (its neighbour unresolved) keeps the clock's time before
// sendmsg, and its timestamp, queued when the neighbour resolves later, is
// never taken for another SYN's. Retransmits (same ports and sequence
// number, another TSval) each get their own.
func TestSendTimestamp(t *testing.T) {
	pair, p := txPath(t)
	// send sends a SYN with seq and tsval to dst and returns the clock
	// around the call and the SYN as sent.
	send := func(dst netip.Addr, seq, tsval uint32) (before, after time.Time, s sentSYN, head uint64) {
		t.Helper()
		s, head, before = sendSYN(t, p, pair, dst, seq, tsval)
		return before, time.Now(), s, head
	}
	within := func(what string, at, before, after time.Time) {
		t.Helper()
		if at.Before(before) || at.After(after) {
			t.Errorf("%s: send time %s is outside its call (%s to %s)", what, at.Format(time.StampNano), before.Format(time.StampNano), after.Format(time.StampNano))
		}
	}

	// A SYN and its retransmit: two timestamps, one each, in order.
	b1, a1, s1, head := send(pair.ServerIP, 1000, 7)
	b2, a2, s2, _ := send(pair.ServerIP, 1000, 8)
	sent := []sentSYN{s1, s2}
	clock := sent[0].at
	p.settle(head, sent)
	if p.stamped.Load() != 2 || p.unstamped.Load() != 0 {
		t.Fatalf("stamped %d, unstamped %d: want both SYNs timed by the kernel", p.stamped.Load(), p.unstamped.Load())
	}
	if sent[0].at.Equal(clock) {
		t.Error("the first SYN kept the clock's time")
	}
	within("first SYN", sent[0].at, b1, a1)
	within("retransmit", sent[1].at, b2, a2)

	// An on-link address nobody answers ARP for: the SYN waits in the
	// neighbour's queue, so nothing is stamped during sendmsg.
	held := netip.AddrFrom4([4]byte{pair.ServerIP.As4()[0], pair.ServerIP.As4()[1], pair.ServerIP.As4()[2], 77})
	bh, ah, sh, headHeld := send(held, 2000, 9)
	heldSent := []sentSYN{sh}
	p.settle(headHeld, heldSent)
	if p.unstamped.Load() != 1 {
		t.Fatalf("unstamped %d: want the held SYN timed by the clock", p.unstamped.Load())
	}
	within("held SYN", heldSent[0].at, bh, ah)
	// The neighbour resolves: the held SYN leaves now and its timestamp
	// waits in the error queue.
	nstest.Exec(t, pair.Client, "ip", "neigh", "replace", held.String(), "lladdr", "02:00:00:00:00:77", "dev", "eth0", "nud", "permanent")
	time.Sleep(50 * time.Millisecond)
	b3, a3, s3, head3 := send(pair.ServerIP, 3000, 10)
	next := []sentSYN{s3}
	p.settle(head3, next)
	if p.stamped.Load() != 3 {
		t.Fatalf("stamped %d: want the SYN after the held one timed by the kernel", p.stamped.Load())
	}
	within("SYN after the held one", next[0].at, b3, a3)
	// The held SYN's own timestamp was read too, and is later than its
	// send: it left when the neighbour resolved.
	p.txMu.Lock()
	late, ok := p.stamps.take(stampKey{headHeld, 9})
	p.txMu.Unlock()
	if !ok || !late.After(ah) {
		t.Errorf("held SYN's timestamp %v (found %v): want one after its send at %s", late, ok, ah.Format(time.StampNano))
	}
}

// TestErrorQueueDrainedWhileUnanswered: SYNs nobody answers (no exchange
// takes their timestamps) do not fill the error queue, whose overflow would
// drop the timestamps of SYNs that are answered later.
func TestErrorQueueDrainedWhileUnanswered(t *testing.T) {
	pair, p := txPath(t)
	var head uint64
	var last sentSYN
	for i := range 5000 {
		last, head, _ = sendSYN(t, p, pair, pair.ServerIP, uint32(i), 1)
	}
	sent := []sentSYN{last}
	p.settle(head, sent)
	if p.stamped.Load() != 1 {
		t.Errorf("the last of 5000 unanswered SYNs got no kernel timestamp (stamped %d, unstamped %d): the error queue filled", p.stamped.Load(), p.unstamped.Load())
	}
}

// TestStampTableGrowsUnderPressure: the table starts small; timestamps
// overwritten before they are taken make it grow (to at most
// maxStampSlots), and it keeps what it held; timestamps nobody took for
// stampLife (unanswered SYNs) are overwritten without growing it.
func TestStampTableGrowsUnderPressure(t *testing.T) {
	t0 := time.Unix(1e6, 0)
	stale := newStampTable()
	for i := range 100 * minStampSlots {
		// One new SYN a second, never taken: each older than stampLife
		// by the time another lands on its slot, mostly.
		stale.put(stampKey{uint64(i) << 20, 1}, t0.Add(time.Duration(i)*time.Second))
	}
	if n := len(stale.slots); n > 2*minStampSlots {
		t.Errorf("%d slots after SYNs that were never answered: want the table left small", n)
	}

	// A steady 500 SYNs in flight: each step sends one and takes the one
	// sent 500 steps before. The table grows until nearly every
	// timestamp is still there when its answer comes.
	busy := newStampTable()
	const inFlight, steps = 500, 20000
	key := func(i int) stampKey { return stampKey{uint64(i)*7919 + 1, uint32(i)} }
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Microsecond) }
	found := 0
	for i := range steps {
		busy.put(key(i), at(i))
		if j := i - inFlight; j >= 0 {
			got, ok := busy.take(key(j))
			if ok && !got.Equal(at(j)) {
				t.Fatalf("timestamp %d: %s, want %s", j, got, at(j))
			}
			if ok && j >= steps-5000-inFlight {
				found++
			}
		}
	}
	if n := len(busy.slots); n < 4*minStampSlots || n > maxStampSlots {
		t.Errorf("%d slots for %d timestamps in flight: want the table grown, within %d", n, inFlight, maxStampSlots)
	}
	if found < 5000*95/100 {
		t.Errorf("%d of the last 5000 timestamps still there when taken: want 95 %%", found)
	}
}

// txPath is the send path of the client of a new namespace pair, with send
// timestamps on; released at cleanup.
func txPath(t *testing.T) (*nstest.Pair, *path) {
	t.Helper()
	pair := nstest.NewPair(t)
	p, err := acquire(nstest.Path(pair.Client), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.release)
	if !p.txStamps {
		t.Fatal("the kernel refused SO_TIMESTAMPING on the raw socket")
	}
	return pair, p
}

// sendSYN sends a SYN from the pair's client to dst port 9 with seq and
// tsval, and returns it as sent (its time the clock's before sendmsg), its
// TCP header's first 8 bytes, and the time just before the send call.
func sendSYN(t *testing.T, p *path, pair *nstest.Pair, dst netip.Addr, seq, tsval uint32) (sentSYN, uint64, time.Time) {
	t.Helper()
	var buf [synHeaderLen]byte
	seg, err := AppendSYN(buf[:0], SYN{
		Src: netip.AddrPortFrom(pair.ClientIP, PortLo), Dst: netip.AddrPortFrom(dst, 9), Seq: seq, TSval: tsval,
		MSS: 1460, Window: DefaultWindow,
	})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	at, err := p.send(seg, pair.ClientIP, dst, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sentSYN{at: at, tsval: tsval}, binary.BigEndian.Uint64(seg), before
}
