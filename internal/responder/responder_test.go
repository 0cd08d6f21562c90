package responder

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe/idle"
)

// start runs a responder on a loopback port until the test ends.
func start(t *testing.T, cfg Config) (string, *Server, *prometheus.Registry) {
	t.Helper()
	ln, err := Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), s, reg
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func readReply(t *testing.T, r *bufio.Reader) idle.Reply {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read reply: %v (got %q)", err, line)
	}
	rep, err := idle.ParseReply(line)
	if err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return rep
}

// closedAfter reports whether the server closed the connection (EOF or RST).
func closedAfter(t *testing.T, r *bufio.Reader) bool {
	t.Helper()
	_, err := r.ReadByte()
	return err == io.EOF || err != nil && strings.Contains(err.Error(), "reset")
}

func TestEchoAndDelay(t *testing.T) {
	addr, _, reg := start(t, Config{})
	c, r := dial(t, addr)
	fmt.Fprint(c, idle.Request{Verb: idle.VerbEcho, Nonce: "n1"}.String())
	rep := readReply(t, r)
	if rep.Verb != idle.VerbOK || rep.Nonce != "n1" || rep.Server.String() != addr || rep.Client.String() != c.LocalAddr().String() {
		t.Fatalf("echo reply %+v, want OK n1 %s %s", rep, addr, c.LocalAddr())
	}
	t0 := time.Now()
	fmt.Fprint(c, idle.Request{Verb: idle.VerbDelay, Delay: 300 * time.Millisecond, Nonce: "n2"}.String())
	if rep := readReply(t, r); rep.Verb != idle.VerbWait || rep.Nonce != "n2" {
		t.Fatalf("got %+v, want WAIT n2", rep)
	}
	if rep := readReply(t, r); rep.Verb != idle.VerbOK || rep.Nonce != "n2" {
		t.Fatalf("got %+v, want OK n2", rep)
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("delayed reply after %s, want >= 300ms", d)
	}
	c.Close()
	waitFor(t, func() bool {
		return testutil.ToFloat64(mustVec(t, reg, "connprobe_responder_delayed_replies_total", "delivered")) == 1
	})
}

// TestAcceptedSocketsHaveNoKeepAlive: keep-alive probes would refresh the
// NAT entry under test and hide the fault.
func TestAcceptedSocketsHaveNoKeepAlive(t *testing.T) {
	ln, err := Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ka int
	var gerr error
	_ = rc.Control(func(fd uintptr) { ka, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
	if gerr != nil || ka != 0 {
		t.Fatalf("SO_KEEPALIVE = %d (%v), want 0", ka, gerr)
	}
}

func TestBadRequestsGetErrorAndClose(t *testing.T) {
	addr, _, reg := start(t, Config{MaxDelay: time.Second})
	for _, tc := range []struct {
		name, send string
		code       idle.ErrCode
	}{
		{"garbage", "GET / HTTP/1.1\r\n", idle.ErrMalformed},
		{"unknown verb", "CPR1 FOO x\n", idle.ErrMalformed},
		{"bad nonce", "CPR1 ECHO a/b\n", idle.ErrMalformed},
		{"binary", "\x00\x01\x02\n", idle.ErrMalformed},
		{"too long", strings.Repeat("A", 1000), idle.ErrTooLong},
		{"delay above cap", "CPR1 DELAY 5000 x\n", idle.ErrDelayTooLong},
		{"early data", "CPR1 DELAY 900 x\nCPR1 ECHO y\n", idle.ErrEarlyData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dial(t, addr)
			fmt.Fprint(c, tc.send)
			rep := readReply(t, r)
			if rep.Verb == idle.VerbWait {
				rep = readReply(t, r)
			}
			if rep.Verb != idle.VerbErr || rep.Code != tc.code {
				t.Fatalf("got %+v, want ERR %s", rep, tc.code)
			}
			if !closedAfter(t, r) {
				t.Errorf("connection still open after ERR")
			}
		})
	}
	if got := testutil.ToFloat64(mustVec(t, reg, "connprobe_responder_errors_total", "malformed")); got != 4 {
		t.Errorf("errors_total{code=malformed} = %v, want 4", got)
	}
}

// TestSurvivesFloodAndLimits: a flood of bad requests and of connections
// over the limits is refused without hurting a well-behaved client, and
// every slot is given back afterwards.
func TestSurvivesFloodAndLimits(t *testing.T) {
	addr, s, reg := start(t, Config{MaxConns: 20, MaxPerSource: 10})
	// Hold 10 connections from 127.0.0.1: the per-source limit.
	var held []net.Conn
	for range 10 {
		c, r := dial(t, addr)
		fmt.Fprint(c, "CPR1 ECHO h\n")
		readReply(t, r)
		held = append(held, c)
	}
	// An 11th from the same source is refused.
	c, r := dial(t, addr)
	if rep := readReply(t, r); rep.Verb != idle.VerbErr || rep.Code != idle.ErrSourceBusy {
		t.Fatalf("11th connection got %+v, want ERR source_busy", rep)
	}
	c.Close()
	// Another source address (127.0.0.2) still gets in, up to the total limit.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
	var refusedTotal int
	for i := range 12 {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "CPR1 ECHO x\n")
		rep, err := idle.ParseReply(mustLine(t, bufio.NewReader(c)))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verb == idle.VerbErr {
			if rep.Code != idle.ErrBusy && rep.Code != idle.ErrSourceBusy {
				t.Fatalf("connection %d: %+v", i, rep)
			}
			refusedTotal++
		}
	}
	if refusedTotal == 0 {
		t.Fatal("no connection refused over MaxConns 20 with 22 attempts")
	}
	// Flood: many short connections sending garbage, in parallel.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Write([]byte("\xff\xfe garbage \x00\n"))
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		})
	}
	wg.Wait()
	// The held connections still work.
	for _, c := range held {
		fmt.Fprint(c, "CPR1 ECHO still\n")
	}
	for _, c := range held {
		line := mustLine(t, bufio.NewReader(c))
		if rep, err := idle.ParseReply(line); err != nil || rep.Verb != idle.VerbOK {
			t.Fatalf("held connection after flood: %q %v", line, err)
		}
		c.Close()
	}
	// Every slot comes back.
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.open <= 10 && s.perSource[mustAddr("127.0.0.1")] == 0
	})
	if got := testutil.ToFloat64(mustVec(t, reg, "connprobe_responder_connections_total", "busy")) +
		testutil.ToFloat64(mustVec(t, reg, "connprobe_responder_connections_total", "source_busy")); got < 2 {
		t.Errorf("refused connections counted %v, want >= 2", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestCloseIdleSendsFIN(t *testing.T) {
	addr, _, reg := start(t, Config{CloseIdle: 300 * time.Millisecond})
	c, r := dial(t, addr)
	fmt.Fprint(c, "CPR1 ECHO a\n")
	readReply(t, r)
	t0 := time.Now()
	_, err := r.ReadByte()
	if err != io.EOF {
		t.Fatalf("read after idle: %v, want EOF", err)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("closed after %s, want ~300ms", d)
	}
	waitFor(t, func() bool {
		return testutil.ToFloat64(mustCounter(t, reg, "connprobe_responder_idle_closes_total")) == 1
	})
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxDelay: -1, MaxConns: -1, MaxPerSource: -1, FirstRequest: -1, MaxIdle: -1, CloseIdle: -1}.Validate()
	for _, want := range []string{"max_delay", "max_conns", "max_per_source", "first_request_timeout", "max_idle", "close_idle"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v lacks %q", err, want)
		}
	}
}

func mustLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return line
}

func mustVec(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	return &oneSeries{reg: reg, name: name, label: label}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	return &oneSeries{reg: reg, name: name}
}

// oneSeries exposes one series of a gathered family, for testutil.ToFloat64.
type oneSeries struct {
	reg         *prometheus.Registry
	name, label string
}

func (o *oneSeries) Describe(ch chan<- *prometheus.Desc) {}
func (o *oneSeries) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := o.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != o.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if o.label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != o.label) {
				continue
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(o.name, "x", nil, nil), prometheus.UntypedValue, v)
			return
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestSilentConnectionsCannotLockOut: more connections than slots that never
// send a complete request (silent, or a line never finished) fill the
// responder, but only for FirstRequest: then each gets ERR idle and is
// closed, and probes get in again. A probe that sent its first request may
// stay idle (that is what it is for).
func TestSilentConnectionsCannotLockOut(t *testing.T) {
	const slots = 64
	first := 500 * time.Millisecond
	addr, s, reg := start(t, Config{MaxConns: slots, MaxPerSource: slots, FirstRequest: first})

	// A probe connects and sends its first request: it may idle after.
	probeConn, probeR := dial(t, addr)
	fmt.Fprint(probeConn, "CPR1 ECHO p1\n")
	readReply(t, probeR)

	// 80 silent connections from 4 sources (20 each), one trickling half a line.
	type silent struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []silent
	t0 := time.Now()
	for i := range 80 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%4))}, Timeout: time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if i == 0 {
			fmt.Fprint(c, "CPR1 EC") // never finished
		}
		conns = append(conns, silent{c, bufio.NewReader(c)})
	}
	// The slots are full: a new probe is refused.
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.open == slots
	})
	c, r := dial(t, addr)
	if rep := readReply(t, r); rep.Verb != idle.VerbErr || rep.Code != idle.ErrBusy {
		t.Fatalf("probe while silent connections hold every slot: %+v, want ERR busy", rep)
	}
	c.Close()

	// Each silent connection is refused at once (over the cap) or closed
	// with ERR idle after FirstRequest.
	idleClosed := 0
	for i, sc := range conns {
		rep := readReply(t, sc.r)
		if rep.Verb != idle.VerbErr || (rep.Code != idle.ErrIdle && rep.Code != idle.ErrBusy) {
			t.Fatalf("silent connection %d: %+v, want ERR idle or ERR busy", i, rep)
		}
		if rep.Code == idle.ErrIdle {
			idleClosed++
			if d := time.Since(t0); d < first*8/10 {
				t.Errorf("silent connection %d closed after %s, before the %s first-request timeout", i, d, first)
			}
		}
		if !closedAfter(t, sc.r) {
			t.Errorf("silent connection %d not closed after its ERR", i)
		}
	}
	if d := time.Since(t0); d > first+5*time.Second {
		t.Errorf("silent connections held their slots for %s, want about %s", d, first)
	}
	if idleClosed != slots-1 {
		t.Errorf("%d silent connections closed with ERR idle, want the %d that got a slot", idleClosed, slots-1)
	}
	// Probes get in again; the first probe, idle longer than FirstRequest
	// after its first request, still works.
	c, r = dial(t, addr)
	fmt.Fprint(c, "CPR1 ECHO p2\n")
	if rep := readReply(t, r); rep.Verb != idle.VerbOK {
		t.Fatalf("probe after the silent connections were closed: %+v, want OK", rep)
	}
	fmt.Fprint(probeConn, "CPR1 ECHO p1-again\n")
	if rep := readReply(t, probeR); rep.Verb != idle.VerbOK || rep.Nonce != "p1-again" {
		t.Fatalf("probe idle %s after its first request: %+v, want OK", time.Since(t0), rep)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "connprobe_responder_first_request_timeouts_total")); got != slots-1 {
		t.Errorf("first_request_timeouts_total = %v, want %d", got, slots-1)
	}
}
