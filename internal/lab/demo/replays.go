package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/lab/paws"
	"github.com/connprobe/connprobe/internal/responder"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/kernel"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
)

func target(e *env, s string) (probe.Target, error) {
	t, err := probe.ParseTarget(s)
	if err != nil {
		return t, err
	}
	t.NetNS = e.l.Path(e.l.Pod)
	return t, nil
}

// ---------------------------------------------------------------------------
// kafka-close-wait: a broker that never closes the connections its clients
// gave up on.

var kafkaCloseWait = &Incident{
	Name:  "kafka-close-wait",
	Title: "Kafka consumers stall: the broker never closes connections its clients gave up on (CLOSE-WAIT)",
	Seen:  `after a node failover the surviving consumers stop consuming for ~2 min: "read tcp ...:9092: i/o timeout"; every dashboard green`,
	Change: "fix or restart the broker that leaks CLOSE-WAIT sockets (its request threads are stuck: take a thread dump); " +
		"alert on CLOSE-WAIT sockets per endpoint rather than on the broker's liveness",
	Deploy:   "a kind app job on kafka://broker:9092 (app_timeout) with the kernel audit on the broker's node (connprobe_kernel_stuck_sockets, CLOSE-WAIT)",
	Want:     probe.ReasonAppTimeout,
	Decisive: []string{"in CLOSE-WAIT", "3 socket(s)", "oldest in the state for at least"},
	replay: func(ctx context.Context, e *env) (finding, error) {
		const port = 9092
		ln, err := e.listen(e.l.DB, port)
		if err != nil {
			return finding{}, err
		}
		// The broker: its kernel accepts and ACKs, its request handlers
		// are stuck — it reads what clients send, never answers, and never
		// closes a connection, not even one the client closed (FIN): that
		// socket stays in CLOSE-WAIT until the process exits.
		e.wg.Go(func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
				e.wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
				context.AfterFunc(e.ctx, func() { c.Close() })
			}
		})
		broker := hostPort(e.a.DB, port)
		t, err := target(e, "kafka://"+broker)
		if err != nil {
			return finding{}, err
		}
		// Three consumers ask the broker, give up after their timeout and
		// close their connections.
		results := make([]probe.Result, 3)
		var wg sync.WaitGroup
		for i := range results {
			p, err := app.New(t, app.Config{Timeout: time.Second})
			if err != nil {
				return finding{}, err
			}
			wg.Go(func() { results[i] = probe.SafeProbe(ctx, p); p.Close() })
		}
		wg.Wait()
		// The audit of the broker's namespace, twice: the first sees the
		// sockets, the second knows how long they have sat there.
		aud := kernel.NewAuditor(500 * time.Millisecond)
		var a kernel.Audit
		for i := range 2 {
			if i > 0 {
				if err := sleep(ctx, 1100*time.Millisecond); err != nil {
					return finding{}, err
				}
			}
			socks, err := kernel.Sockets(e.l.Path(e.l.DB))
			if err != nil {
				return finding{}, err
			}
			a = aud.Observe(socks, time.Now())
		}
		f := finding{
			result: results[0],
			probe:  fmt.Sprintf("probe run --netns %s kafka://%s   and on the broker: probe lint node --netns %s --stuck-after 1s", e.l.Pod, broker, e.l.DB),
		}
		f.decisive = append(f.decisive, "app probe: "+Evidence(results[0]))
		for _, s := range a.Stuck {
			if s.State == kernel.CloseWait {
				f.decisive = append(f.decisive, "CLOSE-WAIT audit of the broker: "+s.String())
			}
		}
		var reasons []string
		for _, r := range results {
			reasons = append(reasons, string(r.Reason))
		}
		f.also = append(f.also, fmt.Sprintf("%d consumers probed the broker: %s; the TCP handshake itself succeeded (the broker's kernel accepts)", len(results), strings.Join(reasons, ", ")))
		return f, nil
	},
}

// ---------------------------------------------------------------------------
// keepalive-lost: a live-migration blackout longer than the server's
// keep-alive budget; the server closes, the client writes: broken pipe.

const (
	kaBlackout     = 5 * time.Second
	kaServerBudget = 2500 * time.Millisecond
)

var keepaliveLost = &Incident{
	Name:  "keepalive-lost",
	Title: "a host's live migration blacks out an idle Kafka connection; the server gives up on it; the client's next write: broken pipe",
	Seen:  `"write tcp ...:38742->...:9092: write: broken pipe" on a quiet connection with a TCP keep-alive every 5 s; the cluster healthy`,
	Change: "clients must reconnect on EPIPE/ECONNRESET (and on FIN while idle) instead of surfacing the error; " +
		"the server's keep-alive budget (idle + interval x count) should outlast a host's live-migration pause",
	Deploy:   "a kind keepalive job with the client's keep-alive settings against the broker (peer_closed / keepalive_timeout, with the connection's age)",
	Want:     probe.ReasonPeerClosed,
	Decisive: []string{"peer closed (FIN)", "broken pipe"},
	replay: func(ctx context.Context, e *env) (finding, error) {
		const port = 9092
		ln, err := e.listen(e.l.DB, port)
		if err != nil {
			return finding{}, err
		}
		var mu sync.Mutex
		var accepted int
		var serverLog []string
		e.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				accepted++
				mu.Unlock()
				context.AfterFunc(e.ctx, func() { c.Close() })
				e.wg.Go(func() {
					if msg := keepaliveServer(e.ctx, c.(*net.TCPConn), kaServerBudget); msg != "" {
						mu.Lock()
						serverLog = append(serverLog, msg)
						mu.Unlock()
					}
				})
			}
		})
		dst := hostPort(e.a.DB, port)
		t, err := target(e, dst)
		if err != nil {
			return finding{}, err
		}
		// The client as in the report: keep-alive after 1 s idle, every
		// second; its own budget (9 s) outlasts the blackout.
		long, err := keepalive.New(t, keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 8, Watch: 20 * time.Second})
		if err != nil {
			return finding{}, err
		}
		defer long.Close()
		// A client whose own budget (3 s) is shorter than the blackout.
		short, err := keepalive.New(t, keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2, Watch: 20 * time.Second})
		if err != nil {
			return finding{}, err
		}
		defer short.Close()
		// The application's own connection, which will write.
		var app net.Conn
		err = netns.Do(e.l.Path(e.l.Pod), func() error {
			d := net.Dialer{Timeout: 2 * time.Second, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 8}}
			var err error
			app, err = d.DialContext(ctx, "tcp", dst)
			return err
		})
		if err != nil {
			return finding{}, fmt.Errorf("keepalive-lost: client: %w", err)
		}
		defer app.Close()

		var rLong, rShort probe.Result
		var wg sync.WaitGroup
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		wg.Go(func() { rLong = long.Probe(pctx) })
		wg.Go(func() { rShort = short.Probe(pctx) })
		writeRes := make(chan string, 1)
		wg.Go(func() { writeRes <- writeAfterClose(pctx, app) })

		// Healthy idle time with keep-alives flowing, then the blackout:
		// every packet of the flows to the server dropped, both ways.
		for deadline := time.Now().Add(3 * time.Second); ; {
			mu.Lock()
			n := accepted
			mu.Unlock()
			if n >= 3 || time.Now().After(deadline) {
				break
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return finding{}, err
			}
		}
		if err := sleep(ctx, 1500*time.Millisecond); err != nil {
			return finding{}, err
		}
		black := time.Now()
		if err := e.l.Fault(ctx, lab.Fault{Kind: lab.Loss, Percent: 100, Dst: netip.AddrPortFrom(e.a.DB, port)}); err != nil {
			return finding{}, err
		}
		if err := sleep(ctx, kaBlackout); err != nil {
			return finding{}, err
		}
		if err := e.l.ClearFaults(context.WithoutCancel(ctx)); err != nil {
			return finding{}, err
		}
		blackFor := time.Since(black)
		wg.Wait()
		w := <-writeRes
		f := finding{
			result: rLong,
			probe:  fmt.Sprintf("probe run --netns %s --kind keepalive --ka-idle 1s --ka-interval 1s --ka-count 8 %s", e.l.Pod, dst),
		}
		f.decisive = append(f.decisive, "keep-alive probe: "+strings.Join(rLong.Evidence, "; "))
		f.decisive = append(f.decisive, "the application's write on its connection after the blackout: "+w)
		f.also = append(f.also, fmt.Sprintf("path blacked out for %s (every packet dropped both ways, as during a live migration); the server's keep-alive budget is %s", blackFor.Round(100*time.Millisecond), kaServerBudget))
		mu.Lock()
		if len(serverLog) > 0 {
			f.also = append(f.also, "server: "+serverLog[0])
		}
		mu.Unlock()
		f.also = append(f.also, fmt.Sprintf("a client whose own keep-alive budget (1s + 2 x 1s) is shorter than the blackout: %s: %s", rShort.Reason, Evidence(rShort)))
		if rShort.Reason != probe.ReasonKeepaliveTimeout {
			return f, fmt.Errorf("%w: the short-budget client got %s, want %s", ErrMismatch, rShort.Reason, probe.ReasonKeepaliveTimeout)
		}
		return f, nil
	},
}

// keepaliveServer is the server's side of keepalive-lost: it holds the
// connection with kernel keep-alive (after 1 s idle, every second) and, as
// the report's broker did, closes it with FIN once its keep-alives have gone
// unanswered for budget (tcp_info's last ACK received). It returns what it
// did, for the evidence.
func keepaliveServer(ctx context.Context, c *net.TCPConn, budget time.Duration) string {
	defer c.Close()
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 127}); err != nil {
		return ""
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return ""
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-tick.C:
		}
		var ti *unix.TCPInfo
		var gerr error
		if err := raw.Control(func(fd uintptr) { ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
			return ""
		}
		if ti.State != unix.BPF_TCP_ESTABLISHED {
			return ""
		}
		if quiet := time.Duration(ti.Last_ack_recv) * time.Millisecond; quiet > budget {
			msg := fmt.Sprintf("no answer to its keep-alives for %s (budget %s): closed the connection to %s with FIN", quiet.Round(100*time.Millisecond), budget, c.RemoteAddr())
			// close(2): FIN now (the kernel retransmits it until the
			// path is back); whatever the client sends later meets a
			// closed socket and draws an RST, as in the report.
			_ = c.Close()
			return msg
		}
	}
}

// writeAfterClose waits for the peer's FIN on c (read returns EOF), then
// writes as the application would and says what each write got.
func writeAfterClose(ctx context.Context, c net.Conn) string {
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "never saw the server's FIN: " + err.Error()
		}
	}
	var got []string
	for i := 1; i <= 3; i++ {
		_, err := c.Write([]byte("fetch\n"))
		if err != nil {
			got = append(got, fmt.Sprintf("write #%d: %v", i, errors.Unwrap(errors.Unwrap(err))))
			if errors.Is(err, syscall.EPIPE) {
				break
			}
		} else {
			got = append(got, fmt.Sprintf("write #%d: ok (the server answers it with RST)", i))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "FIN received; " + strings.Join(got, ", ")
}

// ---------------------------------------------------------------------------
// syn-retransmit-30s: SYN/ACKs lost on the way back; the node's port range
// overlaps the NodePort range and a failing connect may hang 127 s.

var synRetransmit30s = &Incident{
	Name:  "syn-retransmit-30s",
	Title: "handshakes that need SYN retransmissions: SYN/ACKs lost on the return path, ephemeral ports inside the NodePort range",
	Seen:  "some requests take 30+ s: the ingress logs a 502 after 31.7 s, then its retry succeeds",
	Change: "keep ephemeral ports out of the NodePort range (net.ipv4.ip_local_port_range above 32767, or ip_local_reserved_ports=30000-32767); " +
		"lower net.ipv4.tcp_syn_retries so a dead peer fails in seconds, not 127 s",
	Deploy:   "a kind connect job through the Service (syn_retransmitted with the retransmit count, connprobe_syn_retransmits) and probe lint node on each node",
	Want:     probe.ReasonSynRetransmitted,
	Decisive: []string{"handshake needed 1 SYN retransmit(s)", "net.ipv4.ip_local_port_range", "NodePort", "net.ipv4.tcp_syn_retries"},
	replay: func(ctx context.Context, e *env) (finding, error) {
		const port = 80
		for _, ns := range []string{e.l.Backend1, e.l.Backend2} {
			ln, err := e.listen(ns, port)
			if err != nil {
				return finding{}, err
			}
			e.wg.Go(func() { lab.Serve(ln, lab.Echo) })
		}
		vip := netip.AddrPortFrom(e.a.VIP, port)
		if err := e.l.Fault(ctx, lab.Fault{Kind: lab.FirstSYNACKDrop, Dst: vip}); err != nil {
			return finding{}, err
		}
		t, err := target(e, vip.String())
		if err != nil {
			return finding{}, err
		}
		p, err := connect.New(t, connect.Config{Timeout: 5 * time.Second})
		if err != nil {
			return finding{}, err
		}
		defer p.Close()
		r := probe.SafeProbe(ctx, p)
		f := finding{result: r, probe: fmt.Sprintf("probe run --netns %s %s   and: probe lint node --netns %s", e.l.Pod, vip, e.l.Pod)}
		f.decisive = append(f.decisive, fmt.Sprintf("connect: retx=%d in %s: %s", r.Retransmits, r.Duration.Round(time.Millisecond), Evidence(r)))
		s, err := kernel.ReadSysctls(e.l.Path(e.l.Pod))
		if err != nil {
			return f, err
		}
		for _, fd := range kernel.Lint(s, kernel.DefaultLintConfig) {
			switch fd.Key {
			case "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syn_retries":
				f.decisive = append(f.decisive, fmt.Sprintf("lint: %s = %s: %s", fd.Key, strings.Join(strings.Fields(fd.Value), "-"), fd.Problem))
			}
		}
		f.also = append(f.also, "the lab's node drops the first SYN/ACK of each connection on its way back; the client's retransmitted SYN draws a second one, which passes")
		return f, nil
	},
}

// ---------------------------------------------------------------------------
// stale-ipvs-6h: the Service forgets an idle session while the server
// thinks; its late reply leaves un-NATed and is reset; the client hangs.

const (
	staleTimeout = 3 * time.Second // the path's session timeout (IPVS 900 s, scaled)
	staleThink   = 4 * time.Second // the server's think time (30 min, scaled)
)

var staleIPVS6h = &Incident{
	Name:  "stale-ipvs-6h",
	Title: "a job hangs for hours: the Service VIP's session expired while the server worked; its late reply was reset",
	Seen:  "a 30-minute job ran for 6 h; the client sat on open connections waiting; the server had long finished",
	Change: "keep long requests' connections warm: TCP keep-alive (or app heartbeats) more often than the path's session timeout " +
		"(IPVS tcp timeout 900 s, nf_conntrack_tcp_timeout_established, a cloud NAT's idle timeout), or raise that timeout; give the client a read deadline",
	Deploy:   "a kind idle job in server-after-delay mode against a probe responder behind the Service, and --find-idle-timeout once per path",
	Want:     probe.ReasonStaleSession,
	Decisive: []string{"no packet at all from the server", "answered with RST", "idle timeout"},
	replay: func(ctx context.Context, e *env) (finding, error) {
		const port = 7700
		var logs [2]syncBuffer
		for i, ns := range []string{e.l.Backend1, e.l.Backend2} {
			ln, err := e.listen(ns, port)
			if err != nil {
				return finding{}, err
			}
			srv, err := responder.New(responder.Config{}, nil, slog.New(slog.NewTextHandler(&logs[i], nil)))
			if err != nil {
				return finding{}, err
			}
			e.wg.Go(func() { _ = srv.Serve(e.ctx, ln) })
		}
		if err := e.l.Fault(ctx, lab.Fault{Kind: lab.ConntrackTimeout, Timeout: staleTimeout}); err != nil {
			return finding{}, err
		}
		vip := netip.AddrPortFrom(e.a.VIP, port)
		t, err := target(e, vip.String())
		if err != nil {
			return finding{}, err
		}
		p, err := idle.New(t, idle.Config{Mode: idle.ModeServerAfterDelay, Idle: staleThink, ReplyTimeout: time.Second})
		if err != nil {
			return finding{}, err
		}
		defer p.Close()
		finder, err := idle.New(t, idle.Config{Mode: idle.ModeServerAfterDelay, ReplyTimeout: time.Second})
		if err != nil {
			return finding{}, err
		}
		defer finder.Close()
		var r probe.Result
		var b idle.Boundary
		var ferr error
		var wg sync.WaitGroup
		wg.Go(func() { r = probe.SafeProbe(ctx, p) })
		wg.Go(func() {
			b, ferr = finder.Find(ctx, idle.FindOptions{MinIdle: time.Second, MaxIdle: 6 * time.Second, Steps: 4, Resolution: time.Second})
		})
		wg.Wait()
		if ferr != nil {
			return finding{}, ferr
		}
		f := finding{result: r, probe: fmt.Sprintf("probe run --netns %s --kind idle --idle-mode server-after-delay --idle %s %s   and: --find-idle-timeout", e.l.Pod, staleThink, vip)}
		f.decisive = append(f.decisive, "idle probe: "+strings.Join(r.Evidence, "; "))
		var rst string
		for deadline := time.Now().Add(2 * time.Second); rst == "" && time.Now().Before(deadline); {
			for i := range logs {
				for _, line := range strings.Split(logs[i].String(), "\n") {
					if strings.Contains(line, "answered with RST") {
						rst = fmt.Sprintf("responder on backend%d: %s", i+1, line)
					}
				}
			}
			if rst == "" {
				_ = sleep(ctx, 50*time.Millisecond)
			}
		}
		if rst != "" {
			f.decisive = append(f.decisive, rst)
		}
		f.decisive = append(f.decisive, "path's idle timeout: "+b.String())
		f.also = append(f.also, fmt.Sprintf("the lab's node forgets an idle session after %s (nf_conntrack_tcp_timeout_established, standing for IPVS's 900 s); the server thinks %s", staleTimeout, staleThink))
		return f, nil
	},
}

// ---------------------------------------------------------------------------
// paws-nat: the database host drops SYNs whose timestamps went backwards
// per source address; pods behind one SNAT address lose SYNs at random.

var pawsNAT = &Incident{
	Name:  "paws-nat",
	Title: "pods behind one NAT address intermittently cannot connect to a database: the host drops SYNs whose timestamps went backwards (per-host PAWS)",
	Seen:  "telnet db 3306 from pods sometimes connects, sometimes not; ping always works; other nodes are fine",
	Change: "turn off per-host PAWS on the database host (net.ipv4.tcp_tw_recycle=0, gone since Linux 4.12) or on the middlebox doing it; " +
		"never combine it with clients behind NAT",
	Deploy:   "a kind syn job with paws: true against the database (paws_rejected), --explain on demand",
	Want:     probe.ReasonPAWSRejected,
	Decisive: []string{"older TSval", "got no answer", "kernel peer"},
	replay: func(ctx context.Context, e *env) (finding, error) {
		const port = 3306
		if _, err := e.listen(e.l.DB, port); err != nil {
			return finding{}, err
		}
		db := netip.AddrPortFrom(e.a.DB, port)
		if err := e.l.Fault(ctx, lab.Fault{Kind: lab.PAWS, Dst: db}); err != nil {
			return finding{}, err
		}
		em := paws.New()
		ready := make(chan error, 1)
		e.wg.Go(func() { ready <- em.Run(e.ctx, e.l.Path(e.l.DB), lab.PAWSQueue) })
		select {
		case err := <-ready:
			return finding{}, fmt.Errorf("paws emulator: %w", err)
		case <-time.After(100 * time.Millisecond): // bound before the first SYN
		}
		t, err := target(e, db.String())
		if err != nil {
			return finding{}, err
		}
		p, err := syn.New(t, syn.Config{Timeout: time.Second, Schedule: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}, PAWS: true, PAWSWait: 700 * time.Millisecond})
		if err != nil {
			return finding{}, err
		}
		defer p.Close()
		snap := kernel.Take(kernel.End{Role: "local", Name: e.l.Pod, NetNS: e.l.Path(e.l.Pod)}, kernel.End{Role: "peer", Name: e.l.DB, NetNS: e.l.Path(e.l.DB)})
		r := probe.SafeProbe(ctx, p)
		r.Evidence = append(r.Evidence, snap.Evidence(kernel.Own{SynRetrans: r.Retransmits})...)
		f := finding{result: r, probe: fmt.Sprintf("probe run --netns %s --paws --explain --peer-netns %s %s", e.l.Pod, e.l.DB, db)}
		for _, ev := range r.Evidence {
			if strings.Contains(ev, "TSval") || strings.HasPrefix(ev, "kernel ") {
				f.decisive = append(f.decisive, ev)
			}
		}
		acc, drop := em.Counts()
		f.also = append(f.also, fmt.Sprintf("the db's PAWS check (the lab's emulator of tcp_tw_recycle, an NFQUEUE consumer) accepted %d SYN(s), dropped %d with an older TSval", acc, drop),
			"it drops before TCP sees the SYN, as a middlebox would: the db's PAWS and ListenDrops counters stay flat; a kernel with tcp_tw_recycle counted such drops as PAWSPassive and ListenDrops (netstat -s: SYNs to LISTEN sockets dropped)")
		return f, nil
	},
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
