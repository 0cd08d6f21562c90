package paws

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nfqueue"
)

// syn4 builds an IPv4 TCP packet from src with flags and, when ts, a
// timestamp option carrying tsval.
func syn4(src byte, flags byte, ts bool, tsval uint32) []byte {
	tcp := []byte{0xee, 0x48, 0x0c, 0xea, 0, 0, 0, 1, 0, 0, 0, 0, 5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0}
	if ts {
		tcp[12] = 8 << 4
		tcp = append(tcp, 1, 1, 8, 10)
		tcp = binary.BigEndian.AppendUint32(tcp, tsval)
		tcp = binary.BigEndian.AppendUint32(tcp, 0)
	}
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 1, src, 10, 244, 2, 20}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	return append(ip, tcp...)
}

func TestVerdict(t *testing.T) {
	now := time.Unix(1000, 0)
	e := New()
	e.now = func() time.Time { return now }
	steps := []struct {
		name string
		pkt  []byte
		want nfqueue.Verdict
	}{
		{"first SYN from a host", syn4(2, 0x02, true, 5000), nfqueue.Accept},
		{"newer TSval", syn4(2, 0x02, true, 6000), nfqueue.Accept},
		{"older TSval from the same host", syn4(2, 0x02, true, 5999), nfqueue.Drop},
		{"older TSval from another host", syn4(3, 0x02, true, 10), nfqueue.Accept},
		{"SYN without timestamps", syn4(2, 0x02, false, 0), nfqueue.Accept},
		{"older TSval on a non-SYN", syn4(2, 0x10, true, 1), nfqueue.Accept},
		{"TSval 0xfffffff0 is before 10 (serial arithmetic)", syn4(3, 0x02, true, 0xfffffff0), nfqueue.Drop},
		{"truncated", syn4(2, 0x02, true, 1)[:30], nfqueue.Accept},
	}
	for _, s := range steps {
		if got := e.Verdict(s.pkt); got != s.want {
			t.Errorf("%s: got %d, want %d", s.name, got, s.want)
		}
	}
	now = now.Add(pawsMSL)
	if got := e.Verdict(syn4(2, 0x02, true, 1)); got != nfqueue.Accept {
		t.Errorf("older TSval after TCP_PAWS_MSL: got %d, want accept", got)
	}
}

func FuzzVerdict(f *testing.F) {
	f.Add(syn4(2, 0x02, true, 5000))
	f.Add(syn4(2, 0x02, false, 0))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		e := New()
		e.Verdict(pkt)
		e.Verdict(pkt)
	})
}
