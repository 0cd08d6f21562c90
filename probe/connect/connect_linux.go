package connect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/internal/tcpsock"
)

// Kind is the probe kind name used in results and configs.
const Kind = "connect"

// Prober runs connect probes against one target.
type Prober struct {
	target probe.Target
	cfg    Config
}

// New returns a Prober for t. It validates cfg and the source address family.
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if t.Port == 0 || t.Host == "" {
		return nil, fmt.Errorf("connect: target %q has no host or port", t.Name)
	}
	if a, ok := t.Addr(); ok && cfg.Source.IsValid() && a.Addr().Is4() != cfg.Source.Unmap().Is4() {
		return nil, fmt.Errorf("connect: source %s and target %s are of different address families", cfg.Source, t.Name)
	}
	return &Prober{target: t, cfg: cfg}, nil
}

// Close implements probe.Prober; a connect prober holds nothing between attempts.
func (p *Prober) Close() error { return nil }

// Probe makes one attempt. The socket, not a goroutine, bounds it: the
// attempt's deadline is set on the socket and one context.AfterFunc wakes
// it on cancellation (tcpsock.Conn.Watch).
func (p *Prober) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	deadline := r.Start.Add(p.cfg.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	p.probe(ctx, deadline, &r)
	r.Duration = time.Since(r.Start)
	if !r.Success() && errors.Is(context.Cause(ctx), context.Canceled) {
		// The caller gave up (shutdown): not a network failure.
		r.Reason = probe.ReasonCanceled
	}
	return r
}

func (p *Prober) probe(ctx context.Context, deadline time.Time, r *probe.Result) {
	c, stop := p.establish(ctx, deadline, r)
	if c == nil {
		return
	}
	defer c.Close()
	defer stop()
	if len(p.cfg.Send) == 0 && len(p.cfg.Expect) == 0 {
		r.Phase = probe.PhaseDone
		return
	}
	if !p.exchange(c, r) {
		// The handshake's degraded success does not survive a failed exchange.
		return
	}
	r.Phase = probe.PhaseDone
}

// Establish runs the TCP phase of an attempt exactly as Probe does (resolve,
// socket in the target's netns, handshake, classification, TCP_INFO evidence)
// and records it in r. On success it returns the established connection as a
// net.Conn for an application protocol to speak over; r then has Phase
// handshake and Reason ok or syn_retransmitted. On failure it returns nil and
// r holds the classified failure. Send and Expect are not used. ctx bounds
// the attempt; the caller owns (and closes) the connection.
func (p *Prober) Establish(ctx context.Context, r *probe.Result) net.Conn {
	deadline, _ := ctx.Deadline()
	c, stop := p.establish(ctx, deadline, r)
	if c == nil {
		return nil
	}
	stop()
	defer c.Close()
	nc, err := c.NetConn()
	if err == nil {
		return nc
	}
	r.Fail(probe.PhaseSetup, fmt.Errorf("connect: hand over connection: %w", err))
	return nil
}

// establish resolves, creates the socket and completes the handshake,
// classifying into r; it returns the connected socket, watched with the
// attempt's deadline and cancellation until stop is called, or nil.
func (p *Prober) establish(ctx context.Context, deadline time.Time, r *probe.Result) (c *tcpsock.Conn, stop func() bool) {
	addr, ok := probe.ResolveFor(ctx, r, p.cfg.Resolver, p.target, p.cfg.Source, deadline)
	if !ok {
		return nil, nil
	}
	r.Remote = addr

	c, err := tcpsock.Open(p.target.NetNS, addr, tcpsock.Options{Source: p.cfg.Source, UserTimeout: p.cfg.UserTimeout})
	if err != nil {
		r.Fail(probe.PhaseSetup, err)
		return nil, nil
	}
	stop = c.Watch(ctx, deadline)

	t0 := time.Now()
	info, err := c.Connect(addr)
	r.Timings.Handshake = time.Since(t0)
	var ierr error
	if info == nil {
		info, ierr = c.TCPInfo()
	}
	if ierr == nil {
		r.Retransmits = int(info.Total_retrans)
		if info.Total_retrans == 0 && info.Retransmits > 0 {
			r.Retransmits = int(info.Retransmits)
		}
	}
	if err != nil {
		p.handshakeFailed(c, r, err)
		stop()
		c.Close()
		return nil, nil
	}
	r.Local = c.LocalAddr()
	if ierr == nil && r.Retransmits == 0 {
		// After a retransmitted SYN, Karn's rule leaves the kernel only a
		// TCP-timestamp sample, whose clock ticks in milliseconds: tcpi_rtt
		// then says 1 ms for a 60 µs path. Only a clean handshake's
		// figure is the path's RTT.
		r.Timings.RTT = time.Duration(info.Rtt) * time.Microsecond
	}
	r.Phase = probe.PhaseHandshake
	r.Reason = probe.ReasonOK
	if r.Retransmits > 0 {
		r.Reason = probe.ReasonSynRetransmitted
		r.Evidencef("handshake needed %d SYN retransmit(s): established after %s", r.Retransmits, probe.Round(r.Timings.Handshake))
	} else {
		// The line every healthy probe writes, built without fmt: one
		// allocation instead of five, thousands of times a second.
		b := make([]byte, 0, 96)
		b = append(b, "established "...)
		b = r.Local.AppendTo(b)
		b = append(b, " -> "...)
		b = addr.AppendTo(b)
		b = append(b, " in "...)
		b = append(b, probe.Round(r.Timings.Handshake).String()...)
		r.Evidence = append(r.Evidence, string(b))
	}
	return c, stop
}

// exchange writes Send and waits for Expect. It reports whether it succeeded.
func (p *Prober) exchange(c *tcpsock.Conn, r *probe.Result) bool {
	if len(p.cfg.Send) > 0 {
		t0 := time.Now()
		err := c.Write(p.cfg.Send)
		r.Timings.Send = time.Since(t0)
		if err != nil {
			r.Fail(probe.PhaseSend, err)
			return false
		}
	}
	t0 := time.Now()
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		if n > 0 {
			if len(buf)+n > 64<<10 {
				// Keep the tail: enough to find Expect across reads.
				keep := max(len(p.cfg.Expect), 1)
				buf = append(buf[:0], buf[len(buf)-min(keep, len(buf)):]...)
			}
			buf = append(buf, chunk[:n]...)
		}
		if len(p.cfg.Expect) == 0 && (n > 0 || err == nil) {
			// Anything back is a reply.
			break
		}
		if len(p.cfg.Expect) > 0 && bytes.Contains(buf, p.cfg.Expect) {
			break
		}
		if n == 0 && err == nil {
			err = errEOF
		}
		if err != nil {
			r.Timings.Reply = time.Since(t0)
			if isEOF(err) {
				err = errEOF
			}
			r.Fail(probe.PhaseReply, err)
			if len(buf) > 0 {
				r.Evidencef("got %d byte(s) without the expected %q: %q", len(buf), p.cfg.Expect, inet.Snippet(buf))
			}
			if ti, ierr := c.TCPInfo(); ierr == nil && r.Reason == probe.ReasonReplyTimeout {
				r.Evidencef("socket %s, %d unacked, %d retransmit(s) while waiting", inet.TCPState(ti.State), ti.Unacked, ti.Total_retrans-uint32(r.Retransmits))
			}
			return false
		}
	}
	r.Timings.Reply = time.Since(t0)
	r.Evidencef("reply in %s: %q", probe.Round(r.Timings.Reply), inet.Snippet(buf))
	return true
}

// handshakeFailed classifies a failed connect and adds what the kernel knows.
// An ICMP error leads: the errno connect() returns is the kernel's
// translation of it (ICMPv6 admin-prohibited becomes EACCES, which read
// first looks like a local permission problem).
func (p *Prober) handshakeFailed(c *tcpsock.Conn, r *probe.Result, err error) {
	n := len(r.Evidence)
	r.Fail(probe.PhaseHandshake, err)
	icmp := c.ICMP()
	if icmp != "" {
		errno := slices.Clone(r.Evidence[n:])
		r.Evidence = append(r.Evidence[:n], icmp)
		for _, e := range errno {
			if i := strings.Index(e, "): "); i > 0 {
				e = e[:i+1] // the errno's generic hint: the ICMP line says which
			}
			r.Evidencef("connect() failed with %s, the kernel's errno for that ICMP error", e)
		}
	}
	switch r.Reason {
	case probe.ReasonSynTimeout:
		r.Evidencef("%d SYN(s) sent over %s: no SYN/ACK, no RST, no ICMP", r.Retransmits+1, probe.Round(r.Timings.Handshake))
	case probe.ReasonRefused:
		if icmp == "" {
			r.Evidencef("RST in answer to the SYN after %s", probe.Round(r.Timings.Handshake))
		}
	}
}

var errEOF = fmt.Errorf("read: %w", io.EOF)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
