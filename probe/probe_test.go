package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "db:3306", want: Target{Name: "db:3306", Scheme: "tcp", Host: "db", Port: 3306}},
		{in: "tcp://10.96.0.10:80", want: Target{Name: "tcp://10.96.0.10:80", Scheme: "tcp", Host: "10.96.0.10", Port: 80}},
		{in: "[fd00::1]:443", want: Target{Name: "[fd00::1]:443", Scheme: "tcp", Host: "fd00::1", Port: 443}},
		{in: "mysql://db", want: Target{Name: "mysql://db", Scheme: "mysql", Host: "db", Port: 3306}},
		{in: "", wantErr: "target: empty"},
		{in: "db", wantErr: `target "db": want host:port`},
		{in: "db:0", wantErr: `target "db:0": port 0 cannot be probed`},
		{in: "db:65536", wantErr: `port "65536" is not a number in 1-65535`},
		{in: "db:http", wantErr: `port "http" is not a number`},
		{in: ":80", wantErr: "missing host"},
		{in: "gopher://x", wantErr: "missing port"},
		{in: "tcp://", wantErr: "want scheme://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTarget(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.URL = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTarget(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	sys := func(op string, e syscall.Errno) error { return os.NewSyscallError(op, e) }
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{"nil is ok", nil, ReasonOK},
		{"RST to SYN", InPhase(PhaseHandshake, sys("connect", syscall.ECONNREFUSED)), ReasonRefused},
		{"ICMP host unreachable", InPhase(PhaseHandshake, sys("connect", syscall.EHOSTUNREACH)), ReasonUnreachable},
		{"ICMP net unreachable", InPhase(PhaseHandshake, sys("connect", syscall.ENETUNREACH)), ReasonUnreachable},
		{"handshake deadline", InPhase(PhaseHandshake, fmt.Errorf("connect: %w", context.DeadlineExceeded)), ReasonSynTimeout},
		{"kernel gave up on SYNs", InPhase(PhaseHandshake, sys("connect", syscall.ETIMEDOUT)), ReasonSynTimeout},
		{"reply deadline", InPhase(PhaseReply, os.ErrDeadlineExceeded), ReasonReplyTimeout},
		{"RST on established", InPhase(PhaseReply, sys("read", syscall.ECONNRESET)), ReasonReset},
		{"broken pipe", InPhase(PhaseSend, sys("write", syscall.EPIPE)), ReasonReset},
		{"FIN", InPhase(PhaseReply, io.EOF), ReasonPeerClosed},
		{"no such name", InPhase(PhaseResolve, &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}), ReasonDNSError},
		{"no free port", InPhase(PhaseHandshake, sys("connect", syscall.EADDRNOTAVAIL)), ReasonLocalError},
		{"too many files", InPhase(PhaseSetup, sys("socket", syscall.EMFILE)), ReasonLocalError},
		{"capability", InPhase(PhaseSetup, &PermissionError{Capability: "CAP_NET_RAW", Op: "socket", Err: syscall.EPERM}), ReasonPermission},
		{"EPERM at setup", InPhase(PhaseSetup, sys("setns", syscall.EPERM)), ReasonPermission},
		{"EPERM from a local firewall", InPhase(PhaseHandshake, sys("connect", syscall.EPERM)), ReasonUnreachable},
		{"namespace gone", fmt.Errorf("netns: %w", ErrNetNSGone), ReasonNetNSGone},
		{"shutdown", InPhase(PhaseHandshake, context.Canceled), ReasonCanceled},
		{"unknown", errors.New("boom"), ReasonOther},
		{"timeout without phase", os.ErrDeadlineExceeded, ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestReasonsClosedAndDocumented(t *testing.T) {
	seen := map[Reason]bool{}
	for _, d := range Reasons {
		if seen[d.Reason] {
			t.Errorf("reason %q listed twice", d.Reason)
		}
		seen[d.Reason] = true
		if d.Meaning == "" || d.Check == "" {
			t.Errorf("reason %q lacks Meaning or Check", d.Reason)
		}
		if strings.ToLower(string(d.Reason)) != string(d.Reason) || strings.ContainsAny(string(d.Reason), " -") {
			t.Errorf("reason %q is not a lower_snake label value", d.Reason)
		}
	}
	for _, r := range []Reason{ReasonOK, ReasonSynRetransmitted} {
		if !r.Success() {
			t.Errorf("%q.Success() = false, want true", r)
		}
	}
	if ReasonSynTimeout.Success() || Reason("nonsense").Known() {
		t.Error("failure reasons must not count as success; unknown reasons must not be known")
	}
}

func TestResultJSON(t *testing.T) {
	r := Result{
		Target: "10.96.0.10:80", Kind: "connect",
		Start:    time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Duration: 1500 * time.Millisecond, Reason: ReasonSynRetransmitted,
		Phase: PhaseDone, Retransmits: 1,
		Timings: Timings{Handshake: 1020 * time.Millisecond, RTT: 50 * time.Microsecond},
		Local:   netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.96.0.10:80"),
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"target":"10.96.0.10:80","kind":"connect","start":"2026-11-23T10:00:00Z","duration_seconds":1.5,"success":true,"reason":"syn_retransmitted","phase":"done","retransmits":1,"timings":{"handshake_seconds":1.02,"rtt_seconds":5e-05},"local":"10.0.0.2:40000","remote":"10.96.0.10:80","evidence":[]}`
	if got := string(b); got != want {
		t.Errorf("json:\n got %s\nwant %s", got, want)
	}
}

func TestResultFail(t *testing.T) {
	var r Result
	r.Fail(PhaseHandshake, os.NewSyscallError("connect", syscall.EHOSTUNREACH))
	if r.Reason != ReasonUnreachable || r.Success() || r.Phase != PhaseHandshake {
		t.Errorf("Fail: got reason %q success %v phase %q", r.Reason, r.Success(), r.Phase)
	}
	if len(r.Evidence) != 1 || !strings.HasPrefix(r.Evidence[0], "EHOSTUNREACH") {
		t.Errorf("evidence = %q, want the errno named", r.Evidence)
	}
}

func TestParseTargetErrorsNeverCarryThePassword(t *testing.T) {
	for _, in := range []string{
		"postgres://u:s3cret@h:99999/x",
		"postgres://u:s3cret@h:0/x",
		"mysql://u:s3cret@/x",
		"redis://u:s3cret@h:x%zz",
		"gopher://u:s3cret@h",
		"mysql://u:s3cret@h:3306:1/x",
		"mysql://u:s3cret@[::1/x",
		"://u:s3cret@h:1",
	} {
		_, err := ParseTarget(in)
		if err == nil {
			t.Errorf("ParseTarget(%q) = nil error, want one", in)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseTarget(%q) error shows the password: %v", in, err)
		}
	}
}

func TestRedactTarget(t *testing.T) {
	for in, want := range map[string]string{
		"mysql://u:p@h:1/x":         "mysql://u:xxxxx@h:1/x",
		"mysql://u@h:1/x":           "mysql://u@h:1/x",
		"mysql://u:p:q@r@h:1/x?a@b": "mysql://u:xxxxx@h:1/x?a@b",
		"h:1":                       "h:1",
		"http://h:1/a:b@c":          "http://h:1/a:b@c",
	} {
		if got := RedactTarget(in); got != want {
			t.Errorf("RedactTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseTarget: any string parses or fails without a panic, allocating
// in proportion to its length (a target comes from a config file or the
// Kubernetes API, not from a peer, but a bad one must not cost more).
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"db:3306", "[::1]:80", "mysql://u:p@db/x", "postgres://[fe80::1%25eth0]:5432", "redis://:@h", "tcp://h:0", "http://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = ParseTarget(s)
		runtime.ReadMemStats(&after)
		// The error text quotes the input: %q of invalid UTF-8 is 4 bytes a byte.
		if d, limit := after.TotalAlloc-before.TotalAlloc, uint64(64*len(s)+8<<10); d > limit {
			t.Fatalf("ParseTarget(%q) allocated %d bytes, want at most %d", s, d, limit)
		}
	})
}
