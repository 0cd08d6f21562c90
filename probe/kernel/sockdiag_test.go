package kernel

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"
)

// diagMsg builds an inet_diag_msg as the kernel sends it, with a tcp_info
// attribute whose tcpi_last_data_recv is lastRecvMS.
func diagMsg(state State, local, remote netip.AddrPort, cookie uint64, lastRecvMS uint32) []byte {
	b := make([]byte, diagMsgLen)
	b[0] = unix.AF_INET
	if local.Addr().Is6() {
		b[0] = unix.AF_INET6
	}
	b[1] = byte(state)
	binary.BigEndian.PutUint16(b[4:], local.Port())
	binary.BigEndian.PutUint16(b[6:], remote.Port())
	l, r := local.Addr().As16(), remote.Addr().As16()
	if local.Addr().Is4() {
		a := local.Addr().As4()
		copy(b[8:], a[:])
		a = remote.Addr().As4()
		copy(b[24:], a[:])
	} else {
		copy(b[8:], l[:])
		copy(b[24:], r[:])
	}
	binary.NativeEndian.PutUint32(b[44:], uint32(cookie))
	binary.NativeEndian.PutUint32(b[48:], uint32(cookie>>32))
	binary.NativeEndian.PutUint32(b[68:], 4242)
	attr := make([]byte, 4+232)
	binary.NativeEndian.PutUint16(attr, uint16(len(attr)))
	binary.NativeEndian.PutUint16(attr[2:], inetDiagInfo)
	binary.NativeEndian.PutUint32(attr[4+52:], lastRecvMS)
	return append(b, attr...)
}

func TestParseDiagMsg(t *testing.T) {
	local := netip.MustParseAddrPort("10.0.0.2:9092")
	remote := netip.MustParseAddrPort("10.0.0.1:40000")
	got, err := ParseDiagMsg(diagMsg(CloseWait, local, remote, 1<<40|7, 90500))
	if err != nil {
		t.Fatal(err)
	}
	want := Socket{State: CloseWait, Local: local, Remote: remote, Cookie: 1<<40 | 7, Inode: 4242, LastDataRecv: 90500 * time.Millisecond}
	if diff := cmp.Diff(want, got, netipOpt); diff != "" {
		t.Errorf("ParseDiagMsg (-want +got):\n%s", diff)
	}
	v6 := netip.MustParseAddrPort("[fd00::2]:443")
	got, err = ParseDiagMsg(diagMsg(Established, v6, netip.MustParseAddrPort("[fd00::1]:5000"), 1, 0))
	if err != nil || got.Local != v6 {
		t.Errorf("IPv6: got %v, %v", got.Local, err)
	}
	if _, err := ParseDiagMsg(make([]byte, 10)); err == nil {
		t.Error("short message: want error")
	}
}

func FuzzParseDiagMsg(f *testing.F) {
	f.Add(diagMsg(CloseWait, netip.MustParseAddrPort("10.0.0.2:1"), netip.MustParseAddrPort("10.0.0.1:2"), 1, 5))
	f.Add(make([]byte, diagMsgLen+3))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseDiagMsg(b)
	})
}

func TestAuditorAges(t *testing.T) {
	srv := netip.MustParseAddrPort("10.0.0.2:9092")
	peer := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port) }
	cw := func(cookie uint64, port uint16, idle time.Duration) Socket {
		return Socket{State: CloseWait, Local: srv, Remote: peer(port), Cookie: cookie, LastDataRecv: idle}
	}
	a := NewAuditor(30 * time.Second)
	t0 := time.Unix(1000, 0)
	// First audit: nothing old by first-seen, but one socket idle for 40 s.
	listen := Socket{State: Listen, Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 9092), Cookie: 9}
	au := a.Observe([]Socket{listen, cw(1, 1, 40*time.Second), cw(2, 2, time.Second), {State: Established, Cookie: 3}}, t0)
	if got, want := au.ByState, map[State]int{CloseWait: 2, Established: 1, Listen: 1}; !cmp.Equal(got, want) {
		t.Errorf("ByState = %v, want %v", got, want)
	}
	if len(au.Stuck) != 1 || au.Stuck[0].Count != 1 || au.Stuck[0].Idle != 40*time.Second || au.Stuck[0].AgeKnown {
		t.Fatalf("first audit stuck = %v, want one idle 40s of unknown age", au.Stuck)
	}
	if got := au.Stuck[0].String(); !strings.Contains(got, "time in the state unknown (first audit)") || strings.Contains(got, "seen 0s ago") {
		t.Errorf("first audit says %q, want the age unknown, not 0s", got)
	}
	// 31 s later both are still there: first-seen age makes both stuck,
	// grouped by endpoint; socket 3 went away and is forgotten.
	au = a.Observe([]Socket{listen, cw(1, 1, 71*time.Second), cw(2, 2, 32*time.Second)}, t0.Add(31*time.Second))
	want := []Stuck{{State: CloseWait, Local: srv, Peer: peer(0).Addr(), Count: 2, Age: 31 * time.Second, AgeKnown: true, Idle: 71 * time.Second}}
	if diff := cmp.Diff(want, au.Stuck, netipOpt); diff != "" {
		t.Errorf("second audit (-want +got):\n%s", diff)
	}
	if _, ok := a.seen[3]; ok {
		t.Error("a socket that went away is still remembered")
	}
}

var netipOpt = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// A client whose server closed and that never closes its side keeps
// CLOSE-WAIT sockets from varying ephemeral ports to one server endpoint:
// they group by that endpoint, port included.
func TestAuditorGroupsClientSocketsByRemoteEndpoint(t *testing.T) {
	broker := netip.MustParseAddrPort("10.244.2.11:9092")
	other := netip.MustParseAddrPort("10.244.2.11:9093")
	cw := func(cookie uint64, local uint16, remote netip.AddrPort) Socket {
		return Socket{State: CloseWait, Local: netip.AddrPortFrom(netip.MustParseAddr("10.244.1.2"), local), Remote: remote, Cookie: cookie, LastDataRecv: time.Minute}
	}
	a := NewAuditor(time.Second)
	au := a.Observe([]Socket{cw(1, 34140, broker), cw(2, 34141, broker), cw(3, 40000, other)}, time.Unix(0, 0))
	want := []Stuck{
		{State: CloseWait, Peer: broker.Addr(), Remote: broker, Count: 2, Idle: time.Minute},
		{State: CloseWait, Peer: other.Addr(), Remote: other, Count: 1, Idle: time.Minute},
	}
	if diff := cmp.Diff(want, au.Stuck, netipOpt); diff != "" {
		t.Errorf("client-side groups (-want +got):\n%s", diff)
	}
	if got := au.Stuck[0].String(); !strings.Contains(got, "2 socket(s) in CLOSE-WAIT -> 10.244.2.11:9092 (this side is the client)") {
		t.Errorf("String() = %q", got)
	}
}
