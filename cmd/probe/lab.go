package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

// labStateDir holds one state file per lab started by `probe lab up`.
const labStateDir = "/run/connprobe-lab"

// labServers are the servers `probe lab up` runs on both backends.
var labServers = []string{":80=echo", ":90=fin"}

// labState is what `probe lab up` leaves for down, fault and clear.
type labState struct {
	Name    string      `json:"name"`
	Lab     *lab.Lab    `json:"lab"`
	Servers []labServer `json:"servers"`
}

type labServer struct {
	NS  string `json:"netns"`
	PID int    `json:"pid"`
}

func newLabCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Network-namespace lab: a pod, a node with a Service VIP, backends, a db; inject faults",
		Long: `The lab is a small Kubernetes-like network built from network namespaces on
this machine (needs root, iproute2 and nftables; conntrack for conntrack faults):

  pod 10.244.1.2 → node (Service VIP 10.96.0.10, nft DNAT to both backends,
  any TCP port) → bridge → backend1 10.244.2.11, backend2 10.244.2.12, db 10.244.2.20

Nothing is created in the host's namespace and nothing routes out of the lab.
See docs/lab.md.`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", "lab", "lab name (namespaces are cpl-NAME-pod, cpl-NAME-node, ...)")
	cmd.AddCommand(newLabUpCmd(&name), newLabDownCmd(&name), newLabFaultCmd(&name), newLabClearCmd(&name),
		newLabDemoCmd(), newLabServeCmd())
	return cmd
}

func labPrefix(name string) (string, error) {
	p := "cpl-" + name
	if err := lab.ValidPrefix(p); err != nil {
		return "", usagef("--name %q: want 1-16 characters of a-z, 0-9 and -", name)
	}
	return p, nil
}

func statePath(name string) string { return filepath.Join(labStateDir, name+".json") }

func loadState(name string) (*labState, error) {
	b, err := os.ReadFile(statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %q is not up (no %s): run probe lab up --name %s", name, statePath(name), name)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: read state: %w", err)
	}
	var st labState
	if err := json.Unmarshal(b, &st); err != nil || st.Lab == nil {
		return nil, fmt.Errorf("lab: state %s: malformed (remove it and run probe lab down): %v", statePath(name), err)
	}
	return &st, nil
}

func needRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("lab %s: needs root (network namespaces, nftables)", what)
	}
	return lab.CheckTools()
}

func newLabUpCmd(name *string) *cobra.Command {
	var noServers bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and start echo servers on the backends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := labPrefix(*name)
			if err != nil {
				return err
			}
			if err := needRoot("up"); err != nil {
				return err
			}
			if _, err := os.Stat(statePath(*name)); err == nil {
				return fmt.Errorf("lab %q is already up (%s); probe lab down --name %s first", *name, statePath(*name), *name)
			}
			t0 := time.Now()
			l, err := lab.Up(cmd.Context(), lab.Options{Prefix: prefix})
			if err != nil {
				return err
			}
			st := &labState{Name: *name, Lab: l}
			if !noServers {
				for _, ns := range []string{l.Backend1, l.Backend2} {
					pid, err := startServer(cmd.Context(), ns, labServers)
					if err != nil {
						stopServers(st)
						l.Down()
						return err
					}
					st.Servers = append(st.Servers, labServer{NS: ns, PID: pid})
				}
			}
			if err := saveState(st); err != nil {
				stopServers(st)
				l.Down()
				return err
			}
			printLab(cmd.OutOrStdout(), st, time.Since(t0), noServers)
			return nil
		},
	}
	cmd.Flags().BoolVar(&noServers, "no-servers", false, "do not start the backends' echo servers")
	return cmd
}

func saveState(st *labState) error {
	if err := os.MkdirAll(labStateDir, 0o755); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := os.WriteFile(statePath(st.Name), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

func printLab(w io.Writer, st *labState, took time.Duration, noServers bool) {
	l := st.Lab
	servers := "servers " + strings.Join(labServers, " ")
	if noServers {
		servers = "no servers"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "lab %q up in %s (state %s)\n", st.Name, report.FormatDuration(took), statePath(st.Name))
	fmt.Fprintf(tw, "  pod\t%s\t%s\tdefault via %s\n", l.Pod, l.PodIP, l.GatewayIP)
	fmt.Fprintf(tw, "  node\t%s\t%s, %s\tService VIP %s → backend1/backend2 (nft DNAT, any TCP port)\n", l.Router, l.GatewayIP, lab.BridgeIP, l.VIP)
	fmt.Fprintf(tw, "  backend1\t%s\t%s\t%s\n", l.Backend1, l.Backend1IP, servers)
	fmt.Fprintf(tw, "  backend2\t%s\t%s\t%s\n", l.Backend2, l.Backend2IP, servers)
	fmt.Fprintf(tw, "  db\t%s\t%s\t\n", l.DB, l.DBIP)
	tw.Flush()
	fmt.Fprintf(w, "try:\n  probe run --netns %s %s:80\n  probe lab fault syn-drop --dst %s:80 && probe run --netns %s --timeout 2s %s:80\n  probe lab clear; probe lab down\n",
		l.Pod, l.VIP, l.VIP, l.Pod, l.VIP)
}

// serverArgv is how this binary runs itself (tests re-execute the test
// binary instead).
var serverArgv = func() ([]string, error) {
	exe, err := os.Executable()
	return []string{exe}, err
}

// startServer runs `probe lab serve` inside ns as a detached process and
// waits until it listens.
func startServer(ctx context.Context, ns string, listen []string) (int, error) {
	argv, err := serverArgv()
	if err != nil {
		return 0, fmt.Errorf("lab: server: %w", err)
	}
	args := append([]string{"netns", "exec", ns}, argv...)
	args = append(args, "lab", "serve")
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	cmd := exec.Command("ip", args...)
	// Its own session: it outlives `probe lab up` and no terminal signal
	// reaches it; `probe lab down` stops it by pid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("lab: server: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: server in %s: %w", ns, err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(5 * time.Second):
		err = errors.New("not ready after 5s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, fmt.Errorf("lab: server in %s: %w: %s", ns, err, strings.TrimSpace(stderr.String()))
	}
	pid := cmd.Process.Pid
	// ip netns exec execs the server in place: pid is the server.
	cmd.Process.Release()
	return pid, nil
}

// stopServers terminates the lab's server processes, checking each pid is
// still our server (a pid may have been reused since).
func stopServers(st *labState) {
	for _, s := range st.Servers {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
		if err != nil || !strings.Contains(string(b), "lab\x00serve\x00") {
			continue
		}
		_ = syscall.Kill(s.PID, syscall.SIGTERM)
	}
}

func newLabDownCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's servers and delete its namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := labPrefix(*name)
			if err != nil {
				return err
			}
			if err := needRoot("down"); err != nil {
				return err
			}
			st, serr := loadState(*name)
			if serr == nil {
				stopServers(st)
			}
			// Remove whatever is left even without a state file.
			if err := lab.Remove(prefix); err != nil {
				return err
			}
			if err := os.Remove(statePath(*name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("lab: state: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q down\n", *name)
			return nil
		},
	}
}

func newLabFaultCmd(name *string) *cobra.Command {
	var dst string
	var f lab.Fault
	var kinds strings.Builder
	for _, k := range lab.FaultKinds {
		fmt.Fprintf(&kinds, "  %-18s %s\n", k.Kind, k.Doc)
	}
	cmd := &cobra.Command{
		Use:   "fault NAME",
		Short: "Inject a fault in the lab's node (faults add up; clear removes them)",
		Long:  "Inject a fault into TCP flows the pod opens, in the node namespace.\n\nFaults:\n" + kinds.String(),
		Example: `  probe lab fault first-syn-drop
  probe lab fault host-unreachable --dst 10.96.0.10:80
  probe lab fault loss --percent 20
  probe lab fault conntrack-timeout --timeout 10s`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("lab fault: want exactly one fault NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := lab.ParseFaultKind(args[0])
			if err != nil {
				return usageError{err}
			}
			f.Kind = k
			if dst != "" {
				if f.Dst, err = parseDst(dst); err != nil {
					return usageError{err}
				}
			}
			if err := f.Validate(); err != nil {
				return usageError{err}
			}
			st, err := loadState(*name)
			if err != nil {
				return err
			}
			if err := needRoot("fault"); err != nil {
				return err
			}
			if err := st.Lab.Fault(cmd.Context(), f); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q: fault %s injected in %s\n", *name, f, st.Lab.Router)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dst, "dst", "", "only flows to this address or address:port (the VIP before DNAT)")
	fl.IntVar(&f.Packets, "packets", 0, "N for reset-established and drop-after (default 2)")
	fl.IntVar(&f.Percent, "percent", 0, "loss percentage, 1-100")
	fl.DurationVar(&f.Timeout, "timeout", 0, "established conntrack timeout for conntrack-timeout")
	return cmd
}

func parseDst(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--dst %q: want an IPv4 address or address:port", s)
	}
	return netip.AddrPortFrom(a, 0), nil
}

func newLabClearCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "clear",
		Short: "Remove every injected fault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := loadState(*name)
			if err != nil {
				return err
			}
			if err := needRoot("clear"); err != nil {
				return err
			}
			if err := st.Lab.ClearFaults(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q: faults cleared\n", *name)
			return nil
		},
	}
}

// newLabServeCmd is the server `probe lab up` starts in each backend
// namespace (hidden: an implementation detail of up).
func newLabServeCmd() *cobra.Command {
	var listen []string
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "Run lab servers in the current network namespace until terminated",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lns []net.Listener
			defer func() {
				for _, ln := range lns {
					ln.Close()
				}
			}()
			var wg sync.WaitGroup
			for _, spec := range listen {
				addr, b, ok := strings.Cut(spec, "=")
				if !ok {
					return usagef("--listen %q: want ADDR=echo|fin", spec)
				}
				beh, err := lab.ParseBehaviour(b)
				if err != nil {
					return usageError{err}
				}
				lc := net.ListenConfig{KeepAlive: -1}
				ln, err := lc.Listen(cmd.Context(), "tcp", addr)
				if err != nil {
					return fmt.Errorf("lab serve: %w", err)
				}
				lns = append(lns, ln)
				wg.Go(func() { lab.Serve(ln, beh) })
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			<-cmd.Context().Done()
			for _, ln := range lns {
				ln.Close()
			}
			wg.Wait()
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "ADDR=BEHAVIOUR to serve (echo: pong per line; fin: close at once)")
	return cmd
}

// demoScenario is one row of `probe lab demo`.
type demoScenario struct {
	name   string
	port   uint16
	fault  lab.FaultKind // "" none
	host   string        // target host instead of the VIP (DNS scenarios)
	netns  string        // "gone": probe from a deleted namespace
	send   bool          // send "ping\n" and expect "pong"
	expect string        // expect only (a server greeting)
	want   probe.Reason
}

// demoScenarios: the healthy VIP and every connect-level fault, each on its
// own VIP port with the fault limited to that port, so they run at once.
var demoScenarios = []demoScenario{
	{name: "healthy VIP", port: 80, want: probe.ReasonOK},
	{name: "healthy VIP, request/reply", port: 80, send: true, want: probe.ReasonOK},
	{name: "first SYN dropped", port: 81, fault: lab.FirstSYNDrop, want: probe.ReasonSynRetransmitted},
	{name: "all SYNs dropped", port: 82, fault: lab.SYNDrop, want: probe.ReasonSynTimeout},
	{name: "SYN/ACK dropped on return", port: 83, fault: lab.SYNACKDrop, want: probe.ReasonSynTimeout},
	{name: "no listener", port: 84, want: probe.ReasonRefused},
	{name: "reject with tcp reset", port: 85, fault: lab.Reset, want: probe.ReasonRefused},
	{name: "ICMP host-unreachable", port: 86, fault: lab.HostUnreachable, want: probe.ReasonUnreachable},
	{name: "ICMP admin-prohibited", port: 87, fault: lab.AdminProhibited, want: probe.ReasonUnreachable},
	{name: "ICMP net-unreachable", port: 88, fault: lab.NetUnreachable, want: probe.ReasonUnreachable},
	{name: "ICMP port-unreachable", port: 89, fault: lab.PortUnreachable, want: probe.ReasonRefused},
	{name: "server closed (FIN) before our send", port: 90, send: true, want: probe.ReasonPeerClosed},
	{name: "RST on the established connection", port: 91, fault: lab.ResetEstablished, send: true, want: probe.ReasonReset},
	{name: "request dropped after handshake", port: 92, fault: lab.DropAfter, send: true, want: probe.ReasonReplyTimeout},
	{name: "name does not resolve", port: 80, host: "nope.lab.invalid", want: probe.ReasonDNSError},
	{name: "name resolves to the VIP", port: 80, host: "web.lab.invalid", want: probe.ReasonOK},
	{name: "pod namespace deleted", port: 80, netns: "gone", want: probe.ReasonNetNSGone},
}

func newLabDemoCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bring a lab up, probe the healthy VIP and every connect-level fault, print one table, tear it down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usagef("--timeout %s must be positive", timeout)
			}
			if err := needRoot("demo"); err != nil {
				return err
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "timeout of each probe")
	return cmd
}

func runDemo(ctx context.Context, w io.Writer, timeout time.Duration) (err error) {
	t0 := time.Now()
	prefix := fmt.Sprintf("cpdemo%d", os.Getpid())
	l, err := lab.Up(ctx, lab.Options{Prefix: prefix})
	if err != nil {
		return err
	}
	gone := prefix + "-gone"
	defer func() {
		_ = exec.Command("ip", "netns", "delete", gone).Run()
		derr := l.Down()
		left, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"*"))
		switch {
		case derr != nil:
			err = errors.Join(err, derr)
		case len(left) > 0:
			err = errors.Join(err, fmt.Errorf("lab demo: namespaces left behind: %v", left))
		default:
			fmt.Fprintf(w, "lab %s torn down: no namespace left (%s in all)\n", prefix, report.FormatDuration(time.Since(t0)))
		}
	}()
	fmt.Fprintf(w, "%s (up in %s)\n\n", l, report.FormatDuration(time.Since(t0)))

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
		for port := uint16(80); port <= 92; port++ {
			b := lab.Echo
			switch port {
			case 84:
				continue // nothing listens
			case 90:
				b = lab.FIN
			}
			ln, err := l.Listen(ns, fmt.Sprintf(":%d", port))
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
	resolver := probe.NewResolver(netip.MustParseAddrPort(dns.Addr()))

	// A namespace that existed when the prober was built, deleted before
	// it probes: a pod that went away.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", gone).CombinedOutput(); err != nil {
		return fmt.Errorf("lab demo: ip netns add %s: %w: %s", gone, err, out)
	}

	probers := make([]*connect.Prober, len(demoScenarios))
	for i, sc := range demoScenarios {
		vip := netip.AddrPortFrom(l.VIP, sc.port)
		if sc.fault != "" {
			if err := l.Fault(ctx, lab.Fault{Kind: sc.fault, Dst: vip}); err != nil {
				return err
			}
		}
		host := l.VIP.String()
		if sc.host != "" {
			host = sc.host
		}
		t := probe.Target{Name: net.JoinHostPort(host, strconv.Itoa(int(sc.port))), Scheme: "tcp", Host: host, Port: sc.port, NetNS: l.Path(l.Pod)}
		if sc.netns == "gone" {
			t.NetNS = l.Path(gone)
		}
		cfg := connect.Config{Timeout: timeout, Resolver: resolver}
		if sc.send {
			cfg.Send, cfg.Expect = []byte("ping\n"), []byte("pong")
		}
		if sc.expect != "" {
			cfg.Expect = []byte(sc.expect)
		}
		if probers[i], err = connect.New(t, cfg); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", gone).CombinedOutput(); err != nil {
		return fmt.Errorf("lab demo: ip netns delete %s: %w: %s", gone, err, out)
	}

	results := make([]probe.Result, len(demoScenarios))
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
	for i, sc := range demoScenarios {
		r := results[i]
		fault := "-"
		if sc.fault != "" {
			fault = string(sc.fault)
		}
		reason := string(r.Reason)
		if r.Reason != sc.want {
			bad++
			reason += " (WANT " + string(sc.want) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", sc.name, fault, r.Target, reason, r.Retransmits,
			report.FormatDuration(r.Duration), demoEvidence(r))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nDNS scenarios ask a fake DNS server on %s (the evidence names the server asked).\n", dns.Addr())
	if bad > 0 {
		fmt.Fprintf(w, "%d of %d scenarios were NOT classified as expected\n", bad, len(demoScenarios))
		err = errFailed
	} else {
		fmt.Fprintf(w, "all %d scenarios classified as expected, probed from %s\n", len(demoScenarios), l.Pod)
	}
	fmt.Fprintf(w, "by hand: probe lab up; probe lab fault syn-drop; probe run --netns cpl-lab-pod %s:80; probe lab down\n", l.VIP)
	return err
}

// demoEvidence keeps the table to one line per scenario: the evidence that
// explains the reason, without the "established" line of exchanges.
func demoEvidence(r probe.Result) string {
	ev := r.Evidence
	if len(ev) > 1 && strings.HasPrefix(ev[0], "established ") {
		ev = ev[1:]
	}
	if len(ev) > 1 && strings.HasPrefix(ev[0], "resolved ") && r.Success {
		ev = ev[:1]
	}
	s := strings.Join(ev, "; ")
	if r.Reason == probe.ReasonNetNSGone && r.Err != nil {
		s = r.Err.Error()
	}
	return s
}
