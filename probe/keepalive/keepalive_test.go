package keepalive

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"zero takes defaults", Config{}, nil},
		{"lab settings", Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}, nil},
		{"fractional idle", Config{Idle: 1500 * time.Millisecond}, []string{"idle 1.5s must be whole seconds"}},
		{"too small and too many at once", Config{Interval: 10 * time.Millisecond, Count: 200, Watch: -1}, []string{
			"interval 10ms must be between 1s and 32767s", "count 200 must be between 1 and 127", "watch -1ns must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDeadAfter(t *testing.T) {
	c := Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}
	if got, want := c.DeadAfter(), 5*time.Second; got != want {
		t.Errorf("DeadAfter() = %s, want %s", got, want)
	}
	c.UserTimeout = 3 * time.Second
	if got, want := c.DeadAfter(), 3*time.Second; got != want {
		t.Errorf("DeadAfter() with user timeout = %s, want %s", got, want)
	}
}

// labCfg is the acceptance setting: keep-alive 2s/1s/3, one-second watches.
var labCfg = Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3, Watch: time.Second, ConnectTimeout: 2 * time.Second}

// setup returns a pair, a server that holds accepted connections (and runs
// onAccept on each), and a prober from the client namespace.
func setup(t *testing.T, onAccept func(net.Conn)) (*nstest.Pair, *Prober) {
	t.Helper()
	return setupCfg(t, labCfg, onAccept)
}

// setupCfg is setup with the prober's Config.
func setupCfg(t *testing.T, cfg Config, onAccept func(net.Conn)) (*nstest.Pair, *Prober) {
	t.Helper()
	p := nstest.NewPair(t)
	ln := nstest.Listen(t, p.Server, p.ServerIP.String()+":9000")
	testlisten.Serve(t, ln, testlisten.Func(func(ctx context.Context, c net.Conn) {
		if onAccept != nil {
			onAccept(c)
		}
		<-ctx.Done() // held until the test ends
	}))
	tgt, err := probe.ParseTarget(p.Addr(9000).String())
	if err != nil {
		t.Fatal(err)
	}
	tgt.NetNS = nstest.Path(p.Client)
	pr, err := New(tgt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	return p, pr
}

// untilEnd probes until a non-ok result or the limit, returning all results.
func untilEnd(t *testing.T, pr *Prober, limit time.Duration) []probe.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var rs []probe.Result
	for ctx.Err() == nil {
		r := pr.Probe(ctx)
		rs = append(rs, r)
		t.Logf("%s age=%s %q", r.Reason, r.Timings.Idle.Round(time.Millisecond), r.Evidence)
		if !r.Success() {
			return rs
		}
	}
	t.Fatalf("connection still alive after %s", limit)
	return nil
}

func TestHealthyReportsOKWithAge(t *testing.T) {
	_, pr := setup(t, nil)
	ctx := context.Background()
	var ages []time.Duration
	// 4 s > idle 2 s: keep-alive probes are sent and answered.
	for range 4 {
		r := pr.Probe(ctx)
		if r.Reason != probe.ReasonOK || !r.Success() {
			t.Fatalf("Probe() = %s %q, want ok", r.Reason, r.Evidence)
		}
		ages = append(ages, r.Timings.Idle)
	}
	if ages[3] < 3*time.Second || ages[3] > 5*time.Second {
		t.Errorf("age after 4 watches = %s, want ~4s", ages[3])
	}
	for i := 1; i < len(ages); i++ {
		if ages[i] <= ages[i-1] {
			t.Errorf("ages %v not increasing: the connection was not kept", ages)
		}
	}
}

func TestPathDroppedIsKeepaliveTimeout(t *testing.T) {
	p, pr := setup(t, nil)
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonOK {
		t.Fatalf("first Probe() = %s %q, want ok", r.Reason, r.Evidence)
	}
	// Drop everything the client sends from now on: keep-alive probes go
	// unanswered.
	nstest.Exec(t, p.Server, "nft", "add table inet ka; add chain inet ka in { type filter hook input priority 0; }; add rule inet ka in tcp dport 9000 drop")
	rs := untilEnd(t, pr, 12*time.Second)
	last := rs[len(rs)-1]
	if last.Reason != probe.ReasonKeepaliveTimeout {
		t.Fatalf("reason = %s %q, want keepalive_timeout", last.Reason, last.Evidence)
	}
	if age := last.Timings.Idle; age < 4500*time.Millisecond || age > 6500*time.Millisecond {
		t.Errorf("died after %s, want ~5s (idle 2s + 3 × 1s)", age)
	}
	if !strings.Contains(strings.Join(last.Evidence, "\n"), "tcp_info") {
		t.Errorf("evidence %q lacks tcp_info", last.Evidence)
	}
	// Some ok result before the end showed probes in flight.
	warned := false
	for _, r := range rs {
		if r.Success() && strings.Contains(strings.Join(r.Evidence, " "), "unanswered so far") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no ok result reported unanswered keep-alive probes before the timeout")
	}
	// The next call opens a new connection (the path is still dropped).
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonSynTimeout {
		t.Errorf("Probe() after the end = %s %q, want syn_timeout on a fresh connection", r.Reason, r.Evidence)
	}
}

func TestServerIdleCloseIsPeerClosed(t *testing.T) {
	const serverIdle = 3 * time.Second
	_, pr := setup(t, func(c net.Conn) {
		time.Sleep(serverIdle)
		c.Close()
	})
	rs := untilEnd(t, pr, 10*time.Second)
	last := rs[len(rs)-1]
	if last.Reason != probe.ReasonPeerClosed {
		t.Fatalf("reason = %s %q, want peer_closed", last.Reason, last.Evidence)
	}
	if age := last.Timings.Idle; age < serverIdle-200*time.Millisecond || age > serverIdle+500*time.Millisecond {
		t.Errorf("closed after %s, want ~%s (the server's idle timeout)", age, serverIdle)
	}
	if !strings.Contains(strings.Join(last.Evidence, " "), "broken pipe") {
		t.Errorf("evidence %q does not mention the broken pipe a write would hit", last.Evidence)
	}
}

func TestInjectedRSTIsReset(t *testing.T) {
	p, pr := setup(t, nil)
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonOK {
		t.Fatalf("first Probe() = %s %q, want ok", r.Reason, r.Evidence)
	}
	// The first keep-alive probe (after 2 s idle) is answered with an RST.
	nstest.Exec(t, p.Server, "nft", "add table inet ka; add chain inet ka in { type filter hook input priority 0; }; add rule inet ka in tcp dport 9000 reject with tcp reset")
	rs := untilEnd(t, pr, 8*time.Second)
	last := rs[len(rs)-1]
	if last.Reason != probe.ReasonReset {
		t.Fatalf("reason = %s %q, want reset", last.Reason, last.Evidence)
	}
	if ev := strings.Join(last.Evidence, " "); !strings.Contains(ev, "RST in answer to keep-alive probe 1") {
		t.Errorf("evidence %q does not tie the RST to the keep-alive probe", last.Evidence)
	}
	if age := last.Timings.Idle; age < 1500*time.Millisecond || age > 3500*time.Millisecond {
		t.Errorf("reset after %s, want ~2s (first keep-alive probe)", age)
	}
}

func TestNetNSGoneClosesConnection(t *testing.T) {
	p, pr := setup(t, nil)
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonOK {
		t.Fatalf("first Probe() = %s %q, want ok", r.Reason, r.Evidence)
	}
	// With the connection open (the server's accepted end stays open too).
	before := nstest.FDs(t)
	nstest.Run(t, "ip", "netns", "delete", p.Client)
	r := pr.Probe(context.Background())
	if r.Reason != probe.ReasonNetNSGone {
		t.Fatalf("Probe() after delete = %s %q, want netns_gone", r.Reason, r.Evidence)
	}
	if pr.Age() != 0 {
		t.Errorf("connection still held after netns_gone")
	}
	if after := nstest.FDs(t); after != before-1 {
		t.Errorf("fds %d -> %d, want %d: the prober's socket was not closed", before, after, before-1)
	}
	// And again: gone stays gone, nothing reopened.
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonNetNSGone {
		t.Errorf("second Probe() after delete = %s, want netns_gone", r.Reason)
	}
	if after := nstest.FDs(t); after != before-1 {
		t.Errorf("fds after a second probe %d, want %d", after, before-1)
	}
}

// TestUserTimeoutSaysWhatEndedIt (issue 21 item 12): with TCP_USER_TIMEOUT
// 3s the kernel gives up after one unanswered keep-alive probe, not after
// TCP_KEEPCNT 5: the evidence says the user timeout ended the connection
// and how many probes went out, not "5 keep-alive probes went unanswered".
func TestUserTimeoutSaysWhatEndedIt(t *testing.T) {
	cfg := labCfg
	cfg.Count, cfg.UserTimeout = 5, 3*time.Second
	p, pr := setupCfg(t, cfg, nil)
	if r := pr.Probe(context.Background()); r.Reason != probe.ReasonOK {
		t.Fatalf("first Probe() = %s %q, want ok", r.Reason, r.Evidence)
	}
	nstest.Exec(t, p.Server, "nft", "add table inet ka; add chain inet ka in { type filter hook input priority 0; }; add rule inet ka in tcp dport 9000 drop")
	rs := untilEnd(t, pr, 12*time.Second)
	last := rs[len(rs)-1]
	if last.Reason != probe.ReasonKeepaliveTimeout {
		t.Fatalf("reason = %s %q, want keepalive_timeout", last.Reason, last.Evidence)
	}
	ev := strings.Join(last.Evidence, "\n")
	if !strings.Contains(ev, "TCP_USER_TIMEOUT 3s ended the connection") || !strings.Contains(ev, "1 keep-alive probe(s) 1s apart") {
		t.Errorf("evidence %q does not say the user timeout ended it after 1 probe", last.Evidence)
	}
	if strings.Contains(ev, "5 keep-alive probe(s)") {
		t.Errorf("evidence %q claims the 5 probes of TCP_KEEPCNT", last.Evidence)
	}
	if age := last.Timings.Idle; age < 2500*time.Millisecond || age > 4500*time.Millisecond {
		t.Errorf("died after %s, want ~3s (the user timeout)", age)
	}
}

// TestServerRSTWhileIdleIsPeerClosed (issue 21 item 13): the server aborts
// the idle connection (SO_LINGER 0: RST) before any keep-alive probe went
// out. The RST answers nothing we sent: peer_closed, as kind idle says for
// the same event; an RST to a keep-alive probe stays reset
// (TestInjectedRSTIsReset).
func TestServerRSTWhileIdleIsPeerClosed(t *testing.T) {
	_, pr := setup(t, func(c net.Conn) {
		time.Sleep(time.Second)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	rs := untilEnd(t, pr, 6*time.Second)
	last := rs[len(rs)-1]
	if last.Reason != probe.ReasonPeerClosed {
		t.Fatalf("reason = %s %q, want peer_closed", last.Reason, last.Evidence)
	}
	if ev := strings.Join(last.Evidence, " "); !strings.Contains(ev, "RST, not FIN") || !strings.Contains(ev, "no keep-alive probe out") {
		t.Errorf("evidence %q does not say an unsolicited RST ended it", last.Evidence)
	}
	if age := last.Timings.Idle; age < 800*time.Millisecond || age > 1800*time.Millisecond {
		t.Errorf("aborted after %s, want ~1s", age)
	}
}
