// Package demo is what `probe lab demo` and `probe lab incident` run: a
// table of connect-level scenarios (every fault of the lab, IPv4 and IPv6,
// probed at once in one lab) and replays of the five production incidents
// the prober exists for, each in a lab of its own, each told the same way:
// what the team saw at the time, what connprobe says and the evidence that
// decides it, and what to change.
//
// Every scenario runs the probe packages in-process with the configuration
// `probe run` would build for the command printed beside it, so a user can
// replay any of them by hand against `probe lab up`.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

// ErrMismatch is returned when a scenario or an incident was not classified
// as expected (already reported in the output).
var ErrMismatch = errors.New("demo: not every scenario classified as expected")

// Scenario is one row of the connect table.
type Scenario struct {
	Name  string
	Port  uint16
	Fault lab.FaultKind // "" none
	V6    bool          // probe the VIP's IPv6 twin
	Host  string        // target host instead of the VIP (DNS scenarios)
	Gone  bool          // probe from a namespace deleted after the prober was built
	Send  bool          // send "ping\n" and expect "pong"
	Want  probe.Reason
}

// faultRows are the healthy VIP and every connect-level fault, each on its
// own VIP port with the fault limited to that port: they run at once.
var faultRows = []Scenario{
	{Name: "healthy VIP", Port: 80, Want: probe.ReasonOK},
	{Name: "healthy VIP, request/reply", Port: 80, Send: true, Want: probe.ReasonOK},
	{Name: "first SYN dropped", Port: 81, Fault: lab.FirstSYNDrop, Want: probe.ReasonSynRetransmitted},
	{Name: "all SYNs dropped", Port: 82, Fault: lab.SYNDrop, Want: probe.ReasonSynTimeout},
	{Name: "SYN/ACK dropped on return", Port: 83, Fault: lab.SYNACKDrop, Want: probe.ReasonSynTimeout},
	{Name: "no listener", Port: 84, Want: probe.ReasonRefused},
	{Name: "reject with tcp reset", Port: 85, Fault: lab.Reset, Want: probe.ReasonRefused},
	{Name: "ICMP host-unreachable", Port: 86, Fault: lab.HostUnreachable, Want: probe.ReasonUnreachable},
	{Name: "ICMP admin-prohibited", Port: 87, Fault: lab.AdminProhibited, Want: probe.ReasonUnreachable},
	{Name: "ICMP net-unreachable", Port: 88, Fault: lab.NetUnreachable, Want: probe.ReasonUnreachable},
	{Name: "ICMP port-unreachable", Port: 89, Fault: lab.PortUnreachable, Want: probe.ReasonRefused},
	{Name: "server closed (FIN) before our send", Port: 90, Send: true, Want: probe.ReasonPeerClosed},
	{Name: "RST on the established connection", Port: 91, Fault: lab.ResetEstablished, Send: true, Want: probe.ReasonReset},
	{Name: "request dropped after handshake", Port: 92, Fault: lab.DropAfter, Send: true, Want: probe.ReasonReplyTimeout},
	{Name: "first SYN/ACK dropped on return", Port: 93, Fault: lab.FirstSYNACKDrop, Want: probe.ReasonSynRetransmitted},
}

// Scenarios is the connect table: every fault row over IPv4, then over
// IPv6 (the VIP's twin, the same fault limited to it), then the rows that
// are not about the path (DNS, a deleted namespace).
var Scenarios = func() []Scenario {
	var s []Scenario
	s = append(s, faultRows...)
	for _, r := range faultRows {
		r.V6 = true
		r.Name += " (IPv6)"
		s = append(s, r)
	}
	return append(s,
		Scenario{Name: "name does not resolve", Port: 80, Host: "nope.lab.invalid", Want: probe.ReasonDNSError},
		Scenario{Name: "name resolves to the VIP", Port: 80, Host: "web.lab.invalid", Want: probe.ReasonOK},
		Scenario{Name: "pod namespace deleted", Port: 80, Gone: true, Want: probe.ReasonNetNSGone},
	)
}()

// Options configure Run.
type Options struct {
	// Timeout of each connect probe (default 2s).
	Timeout time.Duration
	// Incidents to replay after the table (nil: none).
	Incidents []*Incident
	// Prefix of the namespaces (default cpdemo<pid>); incident labs add
	// -iN.
	Prefix string
}

// Run brings a lab up, probes every scenario at once, prints one table,
// replays the incidents (each in its own lab, all at once), tears every lab
// down and checks that no namespace is left — also when ctx is canceled
// (Ctrl-C). It returns ErrMismatch when something was not classified as
// expected.
func Run(ctx context.Context, w io.Writer, o Options) (err error) {
	t0 := time.Now()
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("cpdemo%d", os.Getpid())
	}
	defer func() {
		left, _ := filepath.Glob(filepath.Join("/run/netns", o.Prefix+"*"))
		if len(left) > 0 {
			// A lab whose Down failed, or a crash mid-way: remove what
			// is left before saying so.
			for _, p := range left {
				_ = exec.Command("ip", "netns", "delete", filepath.Base(p)).Run()
			}
			err = errors.Join(err, fmt.Errorf("lab demo: namespaces were left behind (now removed): %v", left))
			return
		}
		fmt.Fprintf(w, "all labs torn down: no namespace left; %s in all\n", report.FormatDuration(time.Since(t0)))
	}()

	// The incidents start first: they are the long part, and run while
	// the table's probes wait for their timeouts.
	type incidentRun struct {
		out strings.Builder
		err error
	}
	runs := make([]incidentRun, len(o.Incidents))
	var iwg sync.WaitGroup
	for i, inc := range o.Incidents {
		iwg.Go(func() {
			runs[i].err = inc.Run(ctx, &runs[i].out, IncidentOptions{Prefix: fmt.Sprintf("%s-i%d", o.Prefix, i)})
		})
	}

	terr := runTable(ctx, w, o)
	iwg.Wait()
	if len(o.Incidents) > 0 {
		fmt.Fprintf(w, "\nTHE FIVE INCIDENTS (each replayed in a lab of its own: probe lab incident NAME)\n")
	}
	bad := 0
	for i := range runs {
		fmt.Fprintf(w, "\n%s", runs[i].out.String())
		if runs[i].err != nil {
			bad++
			if !errors.Is(runs[i].err, ErrMismatch) {
				fmt.Fprintf(w, "  ERROR: %v\n", runs[i].err)
			}
		}
	}
	if len(o.Incidents) > 0 {
		if bad == 0 {
			fmt.Fprintf(w, "\nall %d incidents replayed and classified as expected\n", len(o.Incidents))
		} else {
			fmt.Fprintf(w, "\n%d of %d incidents were NOT replayed as expected\n", bad, len(o.Incidents))
		}
	}
	if ctx.Err() != nil {
		return errors.Join(terr, ctx.Err())
	}
	if terr != nil {
		return terr
	}
	if bad > 0 {
		return ErrMismatch
	}
	return nil
}

func runTable(ctx context.Context, w io.Writer, o Options) (err error) {
	t0 := time.Now()
	l, err := lab.Up(ctx, lab.Options{Prefix: o.Prefix})
	if err != nil {
		return err
	}
	gone := o.Prefix + "-gone"
	defer func() {
		_ = exec.Command("ip", "netns", "delete", gone).Run()
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	fmt.Fprintf(w, "%s (up in %s)\n", l, report.FormatDuration(time.Since(t0)))
	fmt.Fprintf(w, "IPv6 twins: pod %s → VIP %s → %s, %s; db %s\n\n", l.PodIP6, l.VIP6, l.Backend1IP6, l.Backend2IP6, l.DBIP6)

	// Servers on both backends, in this process.
	var wg sync.WaitGroup
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}()
	for _, ns := range []string{l.Backend1, l.Backend2} {
		for port := uint16(80); port <= 93; port++ {
			b := lab.Echo
			switch port {
			case 84:
				continue // nothing listens
			case 90:
				b = lab.FIN
			}
			ln, err := l.Listen(ns, fmt.Sprintf(":%d", port)) // both families
			if err != nil {
				return err
			}
			lns = append(lns, ln)
			wg.Go(func() { lab.Serve(ln, b) })
		}
	}
	dns, err := lab.NewDNS(map[string][]netip.Addr{"web.lab.invalid": {l.VIP}})
	if err != nil {
		return err
	}
	defer dns.Close()

	// A namespace that existed when the prober was built, deleted before
	// it probes: a pod that went away.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", gone).CombinedOutput(); err != nil {
		return fmt.Errorf("lab demo: ip netns add %s: %w: %s", gone, err, out)
	}
	probers := make([]*connect.Prober, len(Scenarios))
	for i, sc := range Scenarios {
		a := l.Family(sc.V6)
		vip := netip.AddrPortFrom(a.VIP, sc.Port)
		if sc.Fault != "" {
			if err := l.Fault(ctx, lab.Fault{Kind: sc.Fault, Dst: vip}); err != nil {
				return err
			}
		}
		host := a.VIP.String()
		if sc.Host != "" {
			host = sc.Host
		}
		t := probe.Target{Name: net.JoinHostPort(host, strconv.Itoa(int(sc.Port))), Scheme: "tcp", Host: host, Port: sc.Port, NetNS: l.Path(l.Pod)}
		if sc.Gone {
			t.NetNS = l.Path(gone)
		}
		cfg := connect.Config{Timeout: o.Timeout, Resolver: probe.NewResolver(netip.MustParseAddrPort(dns.Addr()))}
		if sc.Send {
			cfg.Send, cfg.Expect = []byte("ping\n"), []byte("pong")
		}
		if probers[i], err = connect.New(t, cfg); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", gone).CombinedOutput(); err != nil {
		return fmt.Errorf("lab demo: ip netns delete %s: %w: %s", gone, err, out)
	}

	results := make([]probe.Result, len(Scenarios))
	var pwg sync.WaitGroup
	for i, p := range probers {
		pwg.Go(func() { results[i] = probe.SafeProbe(ctx, p) })
	}
	pwg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFAULT (node netns)\tTARGET\tREASON\tRETX\tTIME\tEVIDENCE")
	bad := 0
	for i, sc := range Scenarios {
		r := results[i]
		fault := "-"
		if sc.Fault != "" {
			fault = string(sc.Fault)
		}
		reason := string(r.Reason)
		if r.Reason != sc.Want {
			bad++
			reason += " (WANT " + string(sc.Want) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", sc.Name, fault, r.Target, reason, r.Retransmits,
			report.FormatDuration(r.Duration), Evidence(r))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nDNS scenarios ask a fake DNS server on %s (the evidence names the server asked).\n", dns.Addr())
	if bad > 0 {
		fmt.Fprintf(w, "%d of %d scenarios were NOT classified as expected\n", bad, len(Scenarios))
		err = ErrMismatch
	} else {
		fmt.Fprintf(w, "all %d scenarios classified as expected, probed from %s\n", len(Scenarios), l.Pod)
	}
	fmt.Fprintf(w, "by hand: probe lab up; probe lab fault syn-drop --dst %s; probe run --netns cpl-lab-pod --timeout 2s %s; probe lab down\n",
		netip.AddrPortFrom(l.VIP6, 80), netip.AddrPortFrom(l.VIP6, 80))
	return err
}

// Evidence keeps a table row to one line: the evidence that explains the
// reason, without the "established" line of exchanges.
func Evidence(r probe.Result) string {
	ev := r.Evidence
	if len(ev) > 1 && strings.HasPrefix(ev[0], "established ") {
		ev = ev[1:]
	}
	if len(ev) > 1 && strings.HasPrefix(ev[0], "resolved ") && r.Success() {
		ev = ev[:1]
	}
	s := strings.Join(ev, "; ")
	if r.Reason == probe.ReasonNetNSGone && r.Err != nil {
		s = r.Err.Error()
	}
	return s
}
