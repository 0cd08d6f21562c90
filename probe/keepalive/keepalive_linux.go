package keepalive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/internal/tcpsock"
	"github.com/connprobe/connprobe/probe/netns"
)

// Prober holds one long connection to its target and reports, per Probe
// call, whether it is still alive and, when it ended, how.
type Prober struct {
	target probe.Target
	cfg    Config

	// The connection survives between Probe calls; nil when none is open.
	conn   *tcpsock.Conn
	born   time.Time // when the handshake completed
	local  netip.AddrPort
	remote netip.AddrPort
	got    int64 // bytes the server sent (discarded)
}

// New returns a Prober for t.
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("keepalive: %w", err)
	}
	if t.Port == 0 || t.Host == "" {
		return nil, fmt.Errorf("keepalive: target %q has no host or port", t.Name)
	}
	if a, ok := t.Addr(); ok && cfg.Source.IsValid() && a.Addr().Is4() != cfg.Source.Unmap().Is4() {
		return nil, fmt.Errorf("keepalive: source %s and target %s are of different address families", cfg.Source, t.Name)
	}
	return &Prober{target: t, cfg: cfg.WithDefaults()}, nil
}

// Close closes the held connection, if any.
func (p *Prober) Close() error {
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn = nil
	return err
}

// Age is how long the current connection has been open (0: none open).
func (p *Prober) Age() time.Duration {
	if p.conn == nil {
		return 0
	}
	return time.Since(p.born)
}

// Probe opens the connection when none is held, then watches it until the
// watch time or ctx's deadline passes (ok, with its age) or it ends (the
// reason it ended). One call, one result.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	p.probe(ctx, &r)
	r.Duration = time.Since(r.Start)
	if !r.Success() && r.Reason != probe.ReasonCanceled && errors.Is(context.Cause(ctx), context.Canceled) {
		r.Reason = probe.ReasonCanceled
	}
	return r
}

func (p *Prober) probe(ctx context.Context, r *probe.Result) {
	// An open socket pins its namespace: check the namespace still has a
	// name before anything else, and let go of it when it has not.
	if p.target.NetNS != "" {
		if err := netns.Check(p.target.NetNS); err != nil {
			if p.conn != nil {
				r.Evidencef("closed the connection (age %s) so the deleted namespace can be freed", probe.Round(time.Since(p.born)))
				r.Timings.Idle = time.Since(p.born)
				p.Close()
			}
			r.Fail(probe.PhaseSetup, err)
			return
		}
	}
	fresh := false
	if p.conn == nil {
		if !p.open(ctx, r) {
			return
		}
		fresh = true
	}
	r.Local, r.Remote = p.local, p.remote
	p.watch(ctx, r, fresh)
}

// open resolves, creates the socket in the target's namespace, sets the
// keep-alive options and connects.
func (p *Prober) open(ctx context.Context, r *probe.Result) bool {
	addr, ok := probe.ResolveFor(ctx, r, p.cfg.Resolver, p.target, p.cfg.Source, time.Time{})
	if !ok {
		return false
	}
	r.Remote = addr
	c, err := tcpsock.Open(p.target.NetNS, addr, tcpsock.Options{
		Source:      p.cfg.Source,
		UserTimeout: p.cfg.UserTimeout,
		KeepAlive:   tcpsock.KeepAlive{Idle: p.cfg.Idle, Interval: p.cfg.Interval, Count: p.cfg.Count},
	})
	if err != nil {
		r.Fail(probe.PhaseSetup, err)
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	t0 := time.Now()
	_, err = c.ConnectContext(cctx, addr)
	r.Timings.Handshake = time.Since(t0)
	if info, ierr := c.TCPInfo(); ierr == nil {
		r.Retransmits = int(info.Total_retrans)
	}
	if err != nil {
		c.Close()
		r.Fail(probe.PhaseHandshake, err)
		if r.Reason == probe.ReasonSynTimeout {
			r.Evidencef("%d SYN(s) sent over %s: no SYN/ACK, no RST, no ICMP", r.Retransmits+1, probe.Round(r.Timings.Handshake))
		}
		return false
	}
	p.conn, p.born, p.got = c, time.Now(), 0
	p.local, p.remote = c.LocalAddr(), addr
	r.Evidencef("opened %s -> %s in %s with keep-alive idle %s, interval %s, count %d%s (dead path detected after %s)",
		p.local, addr, probe.Round(r.Timings.Handshake), p.cfg.Idle, p.cfg.Interval, p.cfg.Count, userTimeoutNote(p.cfg), p.cfg.DeadAfter())
	return true
}

func userTimeoutNote(c Config) string {
	if c.UserTimeout > 0 {
		return fmt.Sprintf(", user timeout %s", c.UserTimeout)
	}
	return ""
}

// watch blocks in read until the watch ends or the connection does. The
// prober never writes, so on a healthy idle connection read only returns
// when the kernel tears the connection down (error), the peer sends FIN (0
// bytes), or the peer sends data (counted and discarded).
func (p *Prober) watch(ctx context.Context, r *probe.Result, fresh bool) {
	end := time.Now().Add(p.cfg.Watch)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	wctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	buf := make([]byte, 4096)
	var err error
	for {
		var n int
		n, err = p.conn.ReadContext(wctx, buf)
		p.got += int64(n)
		if n > 0 && err == nil {
			continue
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		break
	}
	age := time.Since(p.born)
	r.Timings.Idle = age
	info, ierr := p.conn.TCPInfo()
	if ierr == nil {
		r.Timings.RTT = time.Duration(info.Rtt) * time.Microsecond
	}

	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			// Shutdown, not the network; the connection is kept for the
			// next call (Close releases it).
			r.Reason, r.Phase = probe.ReasonCanceled, probe.PhaseKeepalive
			return
		}
		r.Reason, r.Phase = probe.ReasonOK, probe.PhaseKeepalive
		if !fresh {
			r.Evidencef("alive after %s", probe.Round(age))
		}
		if ierr == nil && info.Probes > 0 {
			// Alive but already probing: the path is going quiet.
			r.Evidencef("%d keep-alive probe(s) unanswered so far (of %d), backoff %d", info.Probes, p.cfg.Count, info.Backoff)
		}
		return
	}

	// The connection ended: say how, with what the kernel knew.
	r.Phase = probe.PhaseKeepalive
	r.Err = err
	switch {
	case errors.Is(err, io.EOF):
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer closed (FIN) after %s idle: a write now would draw an RST, then EPIPE (broken pipe)", probe.Round(age))
	case errors.Is(err, syscall.ETIMEDOUT):
		r.Reason = probe.ReasonKeepaliveTimeout
		sent := "keep-alive probe(s)"
		if ierr == nil {
			sent = fmt.Sprintf("%d keep-alive probe(s)", info.Probes)
		}
		if p.cfg.UserTimeout > 0 {
			// tcp_keepalive_timer: with TCP_USER_TIMEOUT set, the kernel
			// gives up once the user timeout has passed since the last
			// ACK and at least one probe is out; TCP_KEEPCNT is ignored.
			r.Evidencef("TCP_USER_TIMEOUT %s ended the connection after %s: %s %s apart after %s idle went unanswered (ETIMEDOUT; with a user timeout the kernel does not wait for TCP_KEEPCNT %d)",
				p.cfg.UserTimeout, probe.Round(age), sent, p.cfg.Interval, p.cfg.Idle, p.cfg.Count)
			break
		}
		if ierr != nil {
			sent = fmt.Sprintf("%d keep-alive probe(s)", p.cfg.Count)
		}
		r.Evidencef("TCP_KEEPCNT reached: the kernel gave up after %s: %s %s apart after %s idle went unanswered (ETIMEDOUT)",
			probe.Round(age), sent, p.cfg.Interval, p.cfg.Idle)
	case isReset(err) && ierr == nil && info.Probes == 0:
		// An RST that answers nothing we sent (no keep-alive probe was
		// out): the peer or a middlebox ended the idle connection on its
		// own, as a FIN would — the rule kind idle follows too.
		r.Reason = probe.ReasonPeerClosed
		r.Evidencef("peer aborted the connection (RST, not FIN) after %s idle, with no keep-alive probe out: a server or middlebox idle timeout", probe.Round(age))
	case isReset(err):
		// The RST answered a keep-alive probe (tcpi_probes counts probes
		// sent and not yet ACKed): a segment of ours was rejected — a NAT
		// entry re-balanced to another backend, a restarted peer.
		r.Reason = probe.ReasonReset
		what := "RST"
		if ierr == nil {
			what = fmt.Sprintf("RST in answer to keep-alive probe %d", info.Probes)
		}
		r.Evidencef("%s after %s idle (%s): the peer no longer knows the connection (restarted, or a NAT/IPVS entry expired and the probe reached another backend)",
			what, probe.Round(age), probe.Describe(err))
	default:
		r.Reason = probe.Classify(probe.InPhase(probe.PhaseKeepalive, err))
		if d := probe.Describe(err); d != "" {
			r.Evidence = append(r.Evidence, fmt.Sprintf("after %s: %s", probe.Round(age), d))
		}
	}
	if ierr == nil {
		r.Evidencef("tcp_info: state %s, keep-alive probes %d, backoff %d, retransmits %d, rtt %s, last data received %s ago",
			inet.TCPState(info.State), info.Probes, info.Backoff, info.Total_retrans,
			time.Duration(info.Rtt)*time.Microsecond, time.Duration(info.Last_data_recv)*time.Millisecond)
	}
	if p.got > 0 {
		r.Evidencef("server had sent %d byte(s) on the connection", p.got)
	}
	p.Close()
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}
