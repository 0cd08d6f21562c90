package idle_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/responder"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/idle"
)

// startHung runs, on both backends of l, a server whose application hangs:
// it answers the first `answer` lines of each connection as a responder
// would (CPR1 OK with the nonce), then reads and drops everything. Its kernel
// keeps ACKing what the client sends.
func startHung(t *testing.T, l *lab.Lab, answer int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		context.AfterFunc(ctx, func() { ln.Close() })
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				context.AfterFunc(ctx, func() { c.Close() })
				wg.Go(func() {
					defer c.Close()
					br := bufio.NewReader(c)
					for i := 0; ; i++ {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if i >= answer {
							continue // hung: the kernel ACKs, nobody answers
						}
						f := strings.Fields(line)
						if len(f) == 3 {
							fmt.Fprintf(c, "CPR1 OK %s %s %s\n", f[2], c.LocalAddr(), c.RemoteAddr())
						}
					}
				})
			}
		})
	}
}

// TestHungServerIsReplyTimeout (issue 13 item 7): the backend's kernel ACKs
// the request sent after the idle time but its application never answers,
// while a fresh connection is echoed. A session the path forgot cannot ACK
// data: this is a hung server (reply_timeout), not stale_session, and the
// evidence does not claim "no packet at all".
func TestHungServerIsReplyTimeout(t *testing.T) {
	l := lab.New(t)
	for _, tc := range []struct {
		name   string
		answer int
		cfg    idle.Config
		did    string
	}{
		{"client-first", 1, idle.Config{Mode: idle.ModeClientFirst}, "sent ECHO"},
		{"plain", 0, idle.Config{Mode: idle.ModePlain, Send: []byte("CPR1 ECHO x\n"), Expect: []byte("CPR1 OK x ")}, "wrote the payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startHung(t, l, tc.answer) // listeners closed when the subtest ends
			cfg := tc.cfg
			cfg.Idle, cfg.ReplyTimeout = 300*time.Millisecond, time.Second
			r := newProber(t, vipTarget(t, l), cfg).Probe(t.Context())
			logResult(t, r)
			if r.Reason != probe.ReasonReplyTimeout {
				t.Fatalf("reason %s, want reply_timeout", r.Reason)
			}
			ev := strings.Join(r.Evidence, "\n")
			for _, want := range []string{tc.did + " and got no reply in", "ACKed our request", "0 unacked, 0 retransmit(s) since the send", "hung"} {
				if !strings.Contains(ev, want) {
					t.Errorf("evidence lacks %q", want)
				}
			}
			for _, bad := range []string{"no packet at all", "forgot the idle session"} {
				if strings.Contains(ev, bad) {
					t.Errorf("evidence claims %q", bad)
				}
			}
		})
	}
}

// TestResponderRefusalIsAppError (issue 13 item 9): the responder's own
// refusals (ERR busy, ERR source_busy) are app_error naming the responder's
// limit, not `other` with "not a CPR1 line".
func TestResponderRefusalIsAppError(t *testing.T) {
	l := lab.New(t)
	for _, tc := range []struct {
		name string
		cfg  responder.Config
		want string
	}{
		{"busy", responder.Config{MaxConns: 1}, "responder at its connection limit"},
		{"source_busy", responder.Config{MaxPerSource: 1}, "responder refuses more connections from this source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startResponders(t, l, tc.cfg)
			tg, err := probe.ParseTarget(netip.AddrPortFrom(l.Backend1IP, port).String())
			if err != nil {
				t.Fatal(err)
			}
			tg.NetNS = l.Path(l.Pod)
			// A first probe holds the backend's only slot.
			hold, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Go(func() {
				newProber(t, tg, idle.Config{Idle: time.Minute}).Probe(hold)
			})
			defer func() { cancel(); wg.Wait() }()
			waitFor(t, func() bool {
				out, _ := l.Exec(t.Context(), l.Pod, "ss", "-Htn", "state", "established", "dst", tg.HostPort())
				return strings.Count(out, "\n") >= 1
			})
			time.Sleep(50 * time.Millisecond) // the hello exchange
			r := newProber(t, tg, idle.Config{Idle: 100 * time.Millisecond, ConnectTimeout: 2 * time.Second}).Probe(t.Context())
			logResult(t, r)
			if r.Reason != probe.ReasonAppError {
				t.Fatalf("reason %s, want app_error", r.Reason)
			}
			ev := strings.Join(r.Evidence, "\n")
			for _, want := range []string{tc.want, "ERR " + tc.name} {
				if !strings.Contains(ev, want) {
					t.Errorf("evidence lacks %q", want)
				}
			}
			if strings.Contains(ev, "not a CPR1 line") || strings.Contains(ev, "is a connprobe responder listening") {
				t.Errorf("evidence blames the protocol")
			}
			// The same through the search: the path is not down, the responder refuses.
			_, ferr := newProber(t, tg, idle.Config{}).Find(t.Context(), idle.FindOptions{MinIdle: 100 * time.Millisecond, MaxIdle: 200 * time.Millisecond})
			if ferr == nil || !strings.Contains(ferr.Error(), tc.want) {
				t.Errorf("Find error %v, want it to name %q", ferr, tc.want)
			}
		})
	}
}
