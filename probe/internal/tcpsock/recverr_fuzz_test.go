//go:build linux

package tcpsock_test

import (
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe/internal/tcpsock"
)

// FuzzParseRecvErr: any control message parses or yields "" without a
// panic, allocating a bounded description whatever the input.
func FuzzParseRecvErr(f *testing.F) {
	// An IP_RECVERR: host unreachable from 10.0.0.1.
	ee := make([]byte, 16+16)
	binary.LittleEndian.PutUint32(ee, uint32(unix.EHOSTUNREACH))
	ee[4], ee[5], ee[6] = unix.SO_EE_ORIGIN_ICMP, 3, 1
	binary.LittleEndian.PutUint16(ee[16:], unix.AF_INET)
	copy(ee[20:], []byte{10, 0, 0, 1})
	seed := unixCmsg(unix.IPPROTO_IP, unix.IP_RECVERR, ee)
	f.Add(seed)
	f.Add(unixCmsg(unix.IPPROTO_IPV6, unix.IPV6_RECVERR, ee[:16]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got := tcpsock.ParseRecvErr(oob)
		if len(oob) > 0 && string(oob) == string(seed) && got == "" {
			t.Errorf("the seed IP_RECVERR parsed to nothing")
		}
		runtime.ReadMemStats(&after)
		if d, limit := after.TotalAlloc-before.TotalAlloc, uint64(len(oob)+8<<10); d > limit {
			t.Fatalf("allocated %d bytes for %d bytes of input, want at most %d", d, len(oob), limit)
		}
	})
}

// unixCmsg builds one control message: struct cmsghdr (len, level, type)
// in native byte order, then data, padded.
func unixCmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	n := unix.CmsgLen(len(data))
	off := 4
	if unix.SizeofCmsghdr == 16 { // 64-bit: size_t len
		binary.NativeEndian.PutUint64(b, uint64(n))
		off = 8
	} else {
		binary.NativeEndian.PutUint32(b, uint32(n))
	}
	binary.NativeEndian.PutUint32(b[off:], uint32(level))
	binary.NativeEndian.PutUint32(b[off+4:], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return b
}
