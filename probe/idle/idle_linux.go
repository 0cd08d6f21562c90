package idle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/internal/tcpsock"
)

// Prober runs idle probes against one target.
type Prober struct {
	target probe.Target
	cfg    Config
	onIdle func(IdleStarted)
}

// OnIdle sets fn to be called, from the attempt's goroutine, each time an
// attempt's connection goes idle (`probe run` prints a line and heartbeats
// during long idle times). Set it before the first Probe.
func (p *Prober) OnIdle(fn func(IdleStarted)) { p.onIdle = fn }

func (p *Prober) idleStarted(s *session, d time.Duration) {
	if p.onIdle != nil {
		p.onIdle(IdleStarted{Local: s.local, Remote: s.remote, Server: s.server, Idle: d, At: time.Now()})
	}
}

// New returns a Prober for t.
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("idle: %w", err)
	}
	if t.Port == 0 || t.Host == "" {
		return nil, fmt.Errorf("idle: target %q has no host or port", t.Name)
	}
	p := &Prober{target: t, cfg: cfg.withDefaults()}
	_, login := p.mysqlConfig()
	if p.cfg.Mode == ModePlain && len(cfg.Send) == 0 && !login {
		return nil, errors.New("idle: mode plain needs a payload to send after the idle time (send), or a mysql://user:pass@host:port target")
	}
	if t.Scheme != "tcp" && !login {
		return nil, fmt.Errorf("idle: target %q: want a tcp target, or mysql://user:pass@host:port in mode plain", t.Name)
	}
	if a, ok := t.Addr(); ok && cfg.Source.IsValid() && a.Addr().Is4() != cfg.Source.Unmap().Is4() {
		return nil, fmt.Errorf("idle: source %s and target %s are of different address families", cfg.Source, t.Name)
	}
	return p, nil
}

// Target returns the probed target.
func (p *Prober) Target() probe.Target { return p.target }

// Config returns the prober's configuration with defaults applied.
func (p *Prober) Config() Config { return p.cfg }

// Close implements probe.Prober; a Prober holds no connection between attempts.
func (p *Prober) Close() error { return nil }

// Probe makes one attempt with the configured idle time.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	return p.ProbeIdle(ctx, p.cfg.Idle)
}

// ProbeIdle makes one attempt holding the connection idle for d.
func (p *Prober) ProbeIdle(ctx context.Context, d time.Duration) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	p.attempt(ctx, &r, d)
	r.Duration = time.Since(r.Start)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !r.Success() {
		r.Reason = probe.ReasonCanceled
	}
	return r
}

// session is one open connection to the target.
type session struct {
	c      *tcpsock.Conn
	local  netip.AddrPort
	remote netip.AddrPort
	server netip.AddrPort // the responder's own address, from its first OK
	buf    []byte         // bytes read and not yet consumed
}

func (s *session) Close() error { return s.c.Close() }

// broke describes how the idle connection broke after the idle time.
type broke struct {
	err  error  // what the read or write returned
	what string // one line of evidence: "RST (ECONNRESET) from 10.96.0.10:80 ..."
	// acked: the server's kernel ACKed what we sent after the idle time (no
	// reply though). A session the path forgot cannot ACK data, so this is
	// a hung server, whatever a control connection does.
	acked bool
}

func (p *Prober) attempt(ctx context.Context, r *probe.Result, d time.Duration) {
	addr, ok := probe.ResolveFor(ctx, r, p.cfg.Resolver, p.target, p.cfg.Source, time.Time{})
	if !ok {
		return
	}
	r.Remote = addr
	s, ok := p.open(ctx, r, addr, "")
	if !ok {
		return
	}
	defer s.Close()
	r.Local = s.local

	var b *broke
	switch p.cfg.Mode {
	case ModeClientFirst:
		b = p.clientFirst(ctx, r, s, d)
	case ModeServerAfterDelay:
		b = p.serverAfterDelay(ctx, r, s, d)
	case ModePlain:
		if mc, ok := p.mysqlConfig(); ok {
			b = p.mysqlIdle(ctx, r, s, mc, d)
		} else {
			b = p.plain(ctx, r, s, d)
		}
	}
	if ctx.Err() != nil {
		outOfTime(ctx, r, b, false)
		return
	}
	if b == nil {
		return
	}
	// The idle connection broke after the idle time. A fresh connection over
	// the same path, now, tells a forgotten session from a broken path.
	s.Close()
	p.judge(ctx, r, addr, d, b)
}

// outOfTime ends an attempt whose own time ran out (or that the prober
// cancelled) before it reached a verdict: never the ok its first handshake
// left. Cancelled, it is canceled; with the idle connection broken (b), it
// is what broke it (the ECHO's ENETUNREACH, RST, …); otherwise the
// deadline of the phase it was in (reply_timeout). judging says a control
// connection was under way.
func outOfTime(ctx context.Context, r *probe.Result, b *broke, judging bool) {
	cause := context.Cause(ctx)
	if cause == nil { // its deadline passed a moment ago (spent)
		cause = context.DeadlineExceeded
	}
	if r.Reason.Success() {
		r.Phase, r.Err = probe.PhaseReply, cause
		if b != nil && b.err != nil && !errors.Is(cause, context.Canceled) {
			r.Err = b.err
		}
		r.Reason = probe.Classify(probe.InPhase(r.Phase, r.Err))
	}
	switch {
	case judging:
		r.Evidencef("the attempt ended (%s) while the control connection was still trying: a forgotten session and a dead path could not be told apart", probe.Describe(cause))
	case b != nil:
		r.Evidence = append(r.Evidence, b.what)
		r.Evidencef("the attempt ended (%s) before a control connection could tell a forgotten session from a dead path", probe.Describe(cause))
	default:
		r.Evidencef("the attempt ended (%s) before the idle connection was checked", probe.Describe(cause))
	}
}

// spent reports whether ctx is done or its deadline has passed: a child
// context with the same deadline (the control connection's) may see it a
// moment before ctx does, and its failure is then the attempt's end, not
// the path's.
func spent(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// judge sets the reason of an attempt whose idle connection broke, from a
// fresh control connection's result.
func (p *Prober) judge(ctx context.Context, r *probe.Result, addr netip.AddrPort, d time.Duration, b *broke) {
	r.Err = b.err
	r.Evidence = append(r.Evidence, b.what)
	var ctl probe.Result
	cs, ok := p.open(ctx, &ctl, addr, "control: ")
	if ok {
		cs.Close()
	}
	if spent(ctx) {
		outOfTime(ctx, r, b, true)
		return
	}
	if b.acked {
		// The server's kernel took our request: the session was alive on the
		// path. The control connection is only context (through a VIP it may
		// well land on a healthy backend).
		r.Reason, r.Phase = probe.ReasonReplyTimeout, probe.PhaseReply
		for _, e := range ctl.Evidence {
			if !strings.HasPrefix(e, "control: ") {
				e = "control: " + e
			}
			r.Evidence = append(r.Evidence, e)
		}
		if !ok {
			r.Evidencef("control connection failed too (%s)", ctl.Reason)
		}
		r.Evidencef("the server's kernel took the request but no answer came: a hung server (or a proxy in front of it), not a forgotten session (a session the path forgot cannot ACK data)")
		return
	}
	if !ok {
		// The path is down, not (only) the session.
		r.Reason = ctl.Reason
		r.Phase = ctl.Phase
		r.Retransmits = ctl.Retransmits
		for _, e := range ctl.Evidence {
			if !strings.HasPrefix(e, "control: ") {
				e = "control: " + e
			}
			r.Evidence = append(r.Evidence, e)
		}
		r.Evidencef("control connection failed too (%s): the path is down, not just the idle session", ctl.Reason)
		return
	}
	r.Reason = probe.ReasonStaleSession
	r.Phase = probe.PhaseIdle
	r.Evidence = append(r.Evidence, ctl.Evidence...)
	r.Evidencef("the path forgot the idle session after %s idle (conntrack/IPVS/NAT entry expired?) while a fresh connection works", probe.Round(d))
}

// open connects to addr and, with a responder, checks it answers an ECHO.
// It records into r (the attempt's or the control's result) the handshake
// and its outcome; on failure r holds the reason.
func (p *Prober) open(ctx context.Context, r *probe.Result, addr netip.AddrPort, label string) (*session, bool) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	c, err := tcpsock.Open(p.target.NetNS, addr, tcpsock.Options{Source: p.cfg.Source})
	if err != nil {
		r.Fail(probe.PhaseSetup, err)
		return nil, false
	}
	t0 := time.Now()
	_, err = c.ConnectContext(ctx, addr)
	hs := time.Since(t0)
	if r.Timings.Handshake == 0 {
		r.Timings.Handshake = hs
	}
	if err != nil {
		r.Fail(probe.PhaseHandshake, err)
		if info, ierr := c.TCPInfo(); ierr == nil {
			r.Retransmits = int(info.Total_retrans)
		}
		r.Evidencef("%sconnect to %s failed after %s", label, addr, probe.Round(hs))
		c.Close()
		return nil, false
	}
	s := &session{c: c, local: c.LocalAddr(), remote: addr}
	if p.cfg.Mode == ModePlain {
		r.Evidencef("%sestablished %s -> %s in %s", label, s.local, addr, probe.Round(hs))
		r.Reason, r.Phase = probe.ReasonOK, probe.PhaseHandshake
		return s, true
	}
	t1 := time.Now()
	rep, err := s.exchange(ctx, Request{Verb: VerbEcho, Nonce: nonce()}, VerbOK)
	if re, ok := errors.AsType[*RefusedError](err); ok {
		refused(r, probe.PhaseReply, err, re, fmt.Sprintf("%sestablished %s -> %s in %s; ", label, s.local, addr, probe.Round(hs)))
		s.Close()
		return nil, false
	}
	if err != nil {
		r.Fail(probe.PhaseReply, err)
		r.Evidencef("%sestablished %s -> %s but the responder did not echo: is a connprobe responder listening there?", label, s.local, addr)
		s.Close()
		return nil, false
	}
	s.server = rep.Server
	r.Evidencef("%sestablished %s -> %s in %s; responder %s echoed in %s (it sees us as %s)",
		label, s.local, addr, probe.Round(hs), rep.Server, probe.Round(time.Since(t1)), rep.Client)
	r.Reason, r.Phase = probe.ReasonOK, probe.PhaseReply
	return s, true
}

// exchange sends req and reads the reply with verb want carrying req's nonce.
func (s *session) exchange(ctx context.Context, req Request, want Verb) (Reply, error) {
	if err := s.c.WriteContext(ctx, []byte(req.String())); err != nil {
		return Reply{}, fmt.Errorf("idle: send %s: %w", req.Verb, err)
	}
	return s.expect(ctx, req.Nonce, want)
}

// expect reads lines until the reply with verb want and nonce arrives.
func (s *session) expect(ctx context.Context, nonce string, want Verb) (Reply, error) {
	for {
		line, err := s.readLine(ctx)
		if err != nil {
			return Reply{}, fmt.Errorf("idle: read reply: %w", err)
		}
		rep, err := ParseReply(line)
		if err != nil {
			return Reply{}, fmt.Errorf("idle: reply: %w", err)
		}
		if rep.Verb == VerbErr {
			return rep, fmt.Errorf("idle: %w", &RefusedError{Code: rep.Code, Text: rep.Text})
		}
		if rep.Verb == want && rep.Nonce == nonce {
			return rep, nil
		}
		// A reply to something else (a stale nonce): keep reading.
	}
}

func (s *session) readLine(ctx context.Context) (string, error) {
	chunk := make([]byte, MaxLine)
	for {
		if i := bytes.IndexByte(s.buf, '\n'); i >= 0 {
			line := string(s.buf[:i+1])
			s.buf = s.buf[i+1:]
			return line, nil
		}
		if len(s.buf) >= MaxLine {
			return "", fmt.Errorf("line longer than %d bytes: %w", MaxLine, ErrProto)
		}
		n, err := s.read(ctx, chunk)
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			return "", err
		}
	}
}

// read reads once, bounded by ctx.
func (s *session) read(ctx context.Context, b []byte) (int, error) {
	return s.c.ReadContext(ctx, b)
}

// watch holds the connection idle until ctx's deadline, reading whatever
// the peer sends. It returns what was read and why it stopped early (nil
// when the idle time passed quietly): EOF when the peer sent FIN, ECONNRESET
// on an RST.
func (s *session) watch(ctx context.Context) ([]byte, error) {
	var got []byte
	chunk := make([]byte, 4096)
	for {
		n, err := s.read(ctx, chunk)
		if n > 0 && len(got) < 4096 {
			got = append(got, chunk[:min(n, 4096-len(got))]...)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return got, nil
		}
		return got, err
	}
}

// idleFor holds s idle for d. It reports false after recording the result
// when the connection ended during the idle time (FIN: peer_closed; RST:
// reset) or the attempt was canceled.
func (p *Prober) idleFor(ctx context.Context, r *probe.Result, s *session, d time.Duration, expectData bool) bool {
	p.idleStarted(s, d)
	t0 := time.Now()
	ictx, cancel := context.WithTimeout(ctx, d)
	got, err := s.watch(ictx)
	cancel()
	r.Timings.Idle = time.Since(t0)
	if len(got) > 0 && !expectData {
		r.Evidencef("unexpected %d byte(s) from the server during the idle time: %q", len(got), inet.Snippet(got))
	}
	if err == nil {
		return true
	}
	if ctx.Err() != nil {
		r.Fail(probe.PhaseIdle, ctx.Err())
		return false
	}
	r.Fail(probe.PhaseIdle, err)
	switch {
	case errors.Is(err, io.EOF):
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer closed the connection (FIN) after %s idle", probe.Round(r.Timings.Idle))
		if len(got) > 0 && expectData {
			r.Evidencef("it sent %d byte(s) while idle: %q", len(got), inet.Snippet(got))
		}
	case isReset(err):
		// Unsolicited: a stale NAT entry only produces an RST in answer to
		// our own segment. The peer (or a middlebox) ended the idle
		// connection itself, abortively — MariaDB's wait_timeout does this.
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer aborted the connection (RST, not FIN) after %s idle, before we sent anything: a server or middlebox idle timeout", probe.Round(r.Timings.Idle))
	}
	return false
}

// clientFirst: idle, then ECHO and expect the echo within the reply timeout.
func (p *Prober) clientFirst(ctx context.Context, r *probe.Result, s *session, d time.Duration) *broke {
	if !p.idleFor(ctx, r, s, d, false) {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.ReplyTimeout)
	defer cancel()
	sent := tcpInfo(s.c)
	t0 := time.Now()
	rep, err := s.exchange(rctx, Request{Verb: VerbEcho, Nonce: nonce()}, VerbOK)
	r.Timings.Reply = time.Since(t0)
	if err == nil {
		r.Reason, r.Phase = probe.ReasonOK, probe.PhaseDone
		r.Evidencef("after %s idle, responder %s echoed in %s", probe.Round(r.Timings.Idle), rep.Server, probe.Round(r.Timings.Reply))
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	if re, ok := errors.AsType[*RefusedError](err); ok {
		refused(r, probe.PhaseReply, err, re, fmt.Sprintf("after %s idle we sent ECHO and ", probe.Round(r.Timings.Idle)))
		return nil
	}
	return p.describeBroke(s, err, r.Timings.Idle, r.Timings.Reply, &sent, "sent ECHO")
}

// serverAfterDelay: ask the responder to reply after d, wait d + reply timeout.
func (p *Prober) serverAfterDelay(ctx context.Context, r *probe.Result, s *session, d time.Duration) *broke {
	hctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	req := Request{Verb: VerbDelay, Delay: d.Round(time.Millisecond), Nonce: nonce()}
	// The responder's delay runs from when it reads DELAY, which is after
	// we send it: timed from here, the wait is never shorter than asked
	// (timed from the WAIT line it was, by WAIT's trip back).
	t0 := time.Now()
	_, err := s.exchange(hctx, req, VerbWait)
	cancel()
	if re, ok := errors.AsType[*RefusedError](err); ok {
		refused(r, probe.PhaseSend, err, re, fmt.Sprintf("we asked for a reply after %s and ", req.Delay))
		return nil
	}
	if err != nil {
		r.Fail(probe.PhaseSend, err)
		r.Evidencef("the responder did not accept DELAY %s", req.Delay)
		return nil
	}
	// The WAIT line is the last thing the server should send for d: any
	// segment after it (other than the reply) is news.
	base := tcpInfo(s.c)
	p.idleStarted(s, d)
	wctx, cancel := context.WithTimeout(ctx, d+p.cfg.ReplyTimeout)
	defer cancel()
	rep, err := s.expect(wctx, req.Nonce, VerbOK)
	waited := time.Since(t0)
	r.Timings.Idle = min(waited, d)
	if err == nil {
		r.Timings.Reply = waited - r.Timings.Idle
		r.Reason, r.Phase = probe.ReasonOK, probe.PhaseDone
		r.Evidencef("responder %s replied after %s (asked for %s)", rep.Server, probe.Round(waited), req.Delay)
		return nil
	}
	if ctx.Err() != nil {
		r.Fail(probe.PhaseIdle, ctx.Err())
		return nil
	}
	switch {
	case errors.Is(err, io.EOF) && waited < d:
		r.Fail(probe.PhaseIdle, err)
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer closed the connection (FIN) after %s idle, before its delayed reply was due", probe.Round(waited))
		return nil
	case isReset(err) && waited < d:
		r.Fail(probe.PhaseIdle, err)
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer aborted the connection (RST, not FIN) after %s idle, before its delayed reply was due", probe.Round(waited))
		return nil
	}
	if re, ok := errors.AsType[*RefusedError](err); ok {
		refused(r, probe.PhaseIdle, err, re, fmt.Sprintf("after %s idle, waiting for the reply we asked for, ", probe.Round(waited)))
		return nil
	}
	// Nothing was sent since the WAIT: "acked" cannot be proven here, and
	// a responder that hung looks like a stale session from this side (its
	// delayed_replies_total{outcome="reset"} tells them apart).
	return p.describeBroke(s, err, d, waited-min(waited, d), &base, fmt.Sprintf("asked for a reply after %s", req.Delay))
}

// plain: idle (reading whatever the server volunteers), then Send, then
// Expect (or, without Expect, anything but an RST or FIN) within the reply timeout.
func (p *Prober) plain(ctx context.Context, r *probe.Result, s *session, d time.Duration) *broke {
	if !p.idleFor(ctx, r, s, d, true) {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.ReplyTimeout)
	defer cancel()
	sent := tcpInfo(s.c)
	t0 := time.Now()
	if err := s.c.WriteContext(rctx, p.cfg.Send); err != nil {
		return p.describeBroke(s, err, r.Timings.Idle, time.Since(t0), &sent, "wrote the payload")
	}
	var got []byte
	chunk := make([]byte, 4096)
	for {
		n, err := s.read(rctx, chunk)
		if n > 0 && len(got) < 64<<10 {
			got = append(got, chunk[:n]...)
		}
		done := len(p.cfg.Expect) == 0 && n > 0 || len(p.cfg.Expect) > 0 && bytes.Contains(got, p.cfg.Expect)
		if done || err != nil && len(p.cfg.Expect) == 0 && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			r.Timings.Reply = time.Since(t0)
			r.Reason, r.Phase = probe.ReasonOK, probe.PhaseDone
			if len(got) > 0 {
				r.Evidencef("after %s idle, the payload was answered in %s: %q", probe.Round(r.Timings.Idle), probe.Round(r.Timings.Reply), inet.Snippet(got))
			} else {
				r.Evidencef("after %s idle, the payload was accepted (no reply expected, no RST or FIN in %s)", probe.Round(r.Timings.Idle), probe.Round(r.Timings.Reply))
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.Timings.Reply = time.Since(t0)
			b := p.describeBroke(s, err, r.Timings.Idle, r.Timings.Reply, &sent, "wrote the payload")
			if len(got) > 0 {
				b.what += fmt.Sprintf("; got %q without the expected %q", inet.Snippet(got), p.cfg.Expect)
			}
			return b
		}
	}
}

// describeBroke says what the idle connection saw after the idle time:
// which address reset it, or, when nothing came back, whether the server's
// kernel at least ACKed what we sent (sent: TCP_INFO just before the send;
// for server-after-delay, just after the WAIT). Packets are counted only
// from then: what came during the idle time says nothing about the send.
func (p *Prober) describeBroke(s *session, err error, idle, waited time.Duration, sent *info, did string) *broke {
	via := ""
	if s.server.IsValid() && s.server != s.remote {
		via = fmt.Sprintf("; the idle connection had reached responder %s through %s", s.server, s.remote)
	}
	b := &broke{err: err}
	switch {
	case isReset(err):
		b.what = fmt.Sprintf("after %s idle we %s and got RST (%s) from %s %s later%s",
			probe.Round(idle), did, errnoName(err), s.remote, probe.Round(waited), via)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		b.what = fmt.Sprintf("after %s idle we %s and got EOF (FIN) from %s %s later%s", probe.Round(idle), did, s.remote, probe.Round(waited), via)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		b.what = fmt.Sprintf("after %s idle we %s and got no reply in %s", probe.Round(idle), did, probe.Round(waited))
		ti := tcpInfo(s.c)
		if sent == nil || !sent.ok || !ti.ok {
			b.what += fmt.Sprintf("; socket %s, %d unacked, %d retransmit(s)%s", ti.state, ti.unacked, ti.retrans, via)
			return b
		}
		segs, retrans := ti.segsIn-sent.segsIn, ti.retrans-sent.retrans
		switch {
		case ti.bytesAcked > sent.bytesAcked && ti.unacked == 0 && retrans == 0:
			// tcpi_last_ack_recv: milliseconds since the last ACK came.
			b.acked = true
			b.what += fmt.Sprintf(": the server's kernel ACKed our request %s after the send, but no answer came",
				probe.Round(max(0, ti.at.Add(-ti.lastAck).Sub(sent.at))))
		case segs == 0:
			b.what += ": no packet at all from the server since then"
		}
		b.what += fmt.Sprintf("; socket %s, %d unacked, %d retransmit(s) since the send, %d segment(s) in from the server%s",
			ti.state, ti.unacked, retrans, segs, via)
		return b
	default:
		b.what = fmt.Sprintf("after %s idle we %s and it failed: %s%s", probe.Round(idle), did, probe.Describe(err), via)
	}
	return b
}

// refused records a responder's ERR reply: the responder answered, so the
// network is fine and the fault is the responder's limit or our request —
// app_error, with what the refusal means (not "not a CPR1 line").
func refused(r *probe.Result, phase probe.Phase, err error, re *RefusedError, prefix string) {
	r.Phase, r.Err, r.Reason = phase, err, probe.ReasonAppError
	r.Evidencef("%sthe responder answered ERR %s (%s): %s", prefix, re.Code, re.Text, re.Meaning())
}

// info is the part of TCP_INFO the idle probe reports.
type info struct {
	ok         bool
	at         time.Time // when it was read
	state      string
	unacked    uint32
	retrans    uint32        // tcpi_total_retrans
	segsIn     int64         // tcpi_segs_in
	bytesAcked uint64        // tcpi_bytes_acked
	lastAck    time.Duration // tcpi_last_ack_recv: since the last ACK came
}

func tcpInfo(c *tcpsock.Conn) info {
	ti, err := c.TCPInfo()
	now := time.Now()
	if err != nil {
		return info{state: "unknown", at: now}
	}
	return info{ok: true, at: now, state: inet.TCPState(ti.State), unacked: ti.Unacked, retrans: ti.Total_retrans,
		segsIn: int64(ti.Segs_in), bytesAcked: ti.Bytes_acked, lastAck: time.Duration(ti.Last_ack_recv) * time.Millisecond}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

func errnoName(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	}
	return "ECONNABORTED"
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
