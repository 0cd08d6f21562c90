package idle

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, want := range []Request{
		{Verb: VerbEcho, Nonce: "abc"},
		{Verb: VerbDelay, Delay: 1500 * time.Millisecond, Nonce: "n-1_x.y"},
	} {
		got, err := ParseRequest(want.String())
		if err != nil || got != want {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", want.String(), got, err, want)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, want := range []Reply{
		{Verb: VerbOK, Nonce: "n", Server: netip.MustParseAddrPort("10.0.0.1:80"), Client: netip.MustParseAddrPort("[fd00::1]:4000")},
		{Verb: VerbWait, Nonce: "n"},
		{Verb: VerbErr, Code: ErrBusy, Text: "connection limit reached"},
	} {
		got, err := ParseReply(want.String())
		if err != nil || got != want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v", want.String(), got, err, want)
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	for _, line := range []string{
		"", "\n", "CPR1\n", "CPR2 ECHO a\n", "CPR1 ECHO\n", "CPR1 ECHO a b\n", "CPR1 ECHO a/b\n",
		"CPR1 ECHO " + strings.Repeat("n", MaxNonce+1) + "\n", "CPR1 DELAY -1 a\n", "CPR1 DELAY 1.5 a\n",
		"CPR1 DELAY 99999999999 a\n", "CPR1 DELAY 10\n", "CPR1 ECHO \x00\n", strings.Repeat("x", MaxLine+1),
		"GET / HTTP/1.1\r\n",
	} {
		if r, err := ParseRequest(line); !errors.Is(err, ErrProto) {
			t.Errorf("ParseRequest(%q) = %+v, %v; want ErrProto", line, r, err)
		}
	}
}

func TestErrReplyIsBounded(t *testing.T) {
	line := Reply{Verb: VerbErr, Code: ErrMalformed, Text: strings.Repeat("x", 1000)}.String()
	if len(line) > MaxLine || !strings.HasSuffix(line, "\n") {
		t.Fatalf("ERR line of %d bytes, want <= %d ending in newline", len(line), MaxLine)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("CPR1 ECHO abc\n")
	f.Add("CPR1 DELAY 100 abc\n")
	f.Add("CPR1 OK n 10.0.0.1:80 10.0.0.2:5000\n")
	f.Add("CPR1 ERR busy too many\n")
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRequest(s); err == nil {
			if again, err := ParseRequest(r.String()); err != nil || again != r {
				t.Fatalf("request %q does not round-trip: %+v %v", s, again, err)
			}
		}
		if r, err := ParseReply(s); err == nil && r.Verb != VerbErr {
			if again, err := ParseReply(r.String()); err != nil || again != r {
				t.Fatalf("reply %q does not round-trip: %+v %v", s, again, err)
			}
		}
	})
}
