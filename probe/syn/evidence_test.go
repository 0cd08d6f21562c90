//go:build linux

package syn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// TestAnswerLines: the lines of the two common answers, built without fmt,
// read as they always did.
func TestAnswerLines(t *testing.T) {
	p := &Prober{}
	t0 := time.Unix(1000, 0)
	remote := netip.MustParseAddrPort("10.0.0.7:443")
	sent := []sentSYN{{at: t0, tsval: 123456}}

	var ok probe.Result
	p.classify(&ok, outcome{sent: sent, reply: &arrival{Reply: Reply{Kind: ReplySynAck, Remote: remote}, at: t0.Add(42 * time.Microsecond)}})
	if ok.Reason != probe.ReasonOK || len(ok.Evidence) != 1 || ok.Evidence[0] != "SYN/ACK from 10.0.0.7:443 in 42µs (TSval 123456)" {
		t.Errorf("SYN/ACK: %s %q", ok.Reason, ok.Evidence)
	}

	var rst probe.Result
	p.classify(&rst, outcome{sent: sent, answered: 0, reply: &arrival{Reply: Reply{Kind: ReplyRST, Remote: remote}, at: t0.Add(1500 * time.Microsecond)}})
	if rst.Reason != probe.ReasonRefused || len(rst.Evidence) != 1 || rst.Evidence[0] != "RST from 10.0.0.7:443 in answer to SYN #1 after 1.5ms" {
		t.Errorf("RST: %s %q", rst.Reason, rst.Evidence)
	}
	if rst.Err == nil || rst.Err.Error() != "syn: RST from 10.0.0.7:443" {
		t.Errorf("RST error %v, want syn: RST from 10.0.0.7:443", rst.Err)
	}
}
