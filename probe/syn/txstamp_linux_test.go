package syn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nstest"
)

// TestSendTimestamp: a SYN's send time is the kernel's timestamp of the
// packet entering the device, read from the sending socket's error queue;
// a SYN the kernel holds (its neighbour unresolved) is timed by the clock
// before sendmsg, and its timestamp, queued when the neighbour resolves
// later, is never taken for the next SYN's.
func TestSendTimestamp(t *testing.T) {
	pair := nstest.NewPair(t)
	p, err := acquire(nstest.Path(pair.Client), false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	if !p.txStamps {
		t.Fatal("the kernel refused SO_TIMESTAMPING on the raw socket")
	}
	sb := newSendBuf()
	seq := uint32(1000)
	send := func(dst netip.Addr) (before, at, after time.Time) {
		t.Helper()
		seq += 1000
		sb.seg, err = AppendSYN(sb.seg[:0], SYN{
			Src: netip.AddrPortFrom(pair.ClientIP, PortLo), Dst: netip.AddrPortFrom(dst, 9), Seq: seq,
			MSS: 1460, Window: DefaultWindow,
		})
		if err != nil {
			t.Fatal(err)
		}
		before = time.Now()
		if at, err = p.send(sb, pair.ClientIP, dst); err != nil {
			t.Fatal(err)
		}
		return before, at, time.Now()
	}

	before, at, after := send(pair.ServerIP)
	if p.stamped.Load() != 1 || p.unstamped.Load() != 0 {
		t.Fatalf("stamped %d, unstamped %d: want the first SYN timed by the kernel", p.stamped.Load(), p.unstamped.Load())
	}
	if at.Before(before) || at.After(after) {
		t.Errorf("send time %s is outside the call (%s to %s)", at.Format(time.StampNano), before.Format(time.StampNano), after.Format(time.StampNano))
	}

	// An on-link address nobody answers ARP for: the SYN waits in the
	// neighbour's queue, so nothing is stamped during sendmsg.
	held := netip.AddrFrom4([4]byte{pair.ServerIP.As4()[0], pair.ServerIP.As4()[1], pair.ServerIP.As4()[2], 77})
	before, at, after = send(held)
	if p.unstamped.Load() != 1 {
		t.Fatalf("unstamped %d: want the held SYN timed by the clock", p.unstamped.Load())
	}
	if at.Before(before) || at.After(after) {
		t.Errorf("held SYN's time %s is outside the call", at.Format(time.StampNano))
	}
	// The neighbour resolves: the held SYN leaves now and its timestamp
	// waits in the error queue for the next send to read past.
	nstest.Exec(t, pair.Client, "ip", "neigh", "replace", held.String(), "lladdr", "02:00:00:00:00:77", "dev", "eth0", "nud", "permanent")
	time.Sleep(50 * time.Millisecond)
	before, at, after = send(pair.ServerIP)
	if p.stamped.Load() != 2 {
		t.Fatalf("stamped %d: want the SYN after the held one timed by the kernel", p.stamped.Load())
	}
	if p.errq.skipped != 1 {
		t.Errorf("%d timestamps skipped: want the held SYN's, read past once", p.errq.skipped)
	}
	if at.Before(before) || at.After(after) {
		t.Errorf("send time %s is outside the call (%s to %s): another SYN's timestamp taken", at.Format(time.StampNano), before.Format(time.StampNano), after.Format(time.StampNano))
	}
}
