//go:build linux

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
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/lab/demo"
	"github.com/connprobe/connprobe/internal/lab/paws"
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
	// Emulators are the PAWS emulators `fault paws` started.
	Emulators []labServer `json:"emulators,omitempty"`
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
		newLabDemoCmd(), newLabIncidentCmd(), newLabServeCmd(), newLabPAWSCmd())
	return cmd
}

// labPrefix checks a lab name and returns its namespace name prefix. The
// name becomes part of namespace names (cpl-NAME-pod) and of the state
// file's path, so it is 1-16 characters of a-z, 0-9 and -, beginning and
// ending with a letter or digit: never empty (cpl--pod), never a path.
func labPrefix(name string) (string, error) {
	p := "cpl-" + name
	ok := len(name) >= 1 && len(name) <= 16 && lab.ValidPrefix(p) == nil &&
		name[0] != '-' && name[len(name)-1] != '-'
	if !ok {
		return "", usagef("--name %q: want 1-16 characters of a-z, 0-9 and -, beginning and ending with a letter or digit", name)
	}
	return p, nil
}

func statePath(name string) string { return filepath.Join(labStateDir, name+".json") }

func loadState(name string) (*labState, error) {
	if _, err := labPrefix(name); err != nil {
		return nil, err
	}
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
	fmt.Fprintf(tw, "  pod\t%s\t%s, %s\tdefault via %s, %s\n", l.Pod, l.PodIP, l.PodIP6, l.GatewayIP, l.GatewayIP6)
	fmt.Fprintf(tw, "  node\t%s\t%s, %s (+ IPv6 twins)\tService VIP %s and %s → backend1/backend2 (nft DNAT, any TCP port)\n", l.Router, l.GatewayIP, lab.BridgeIP, l.VIP, l.VIP6)
	fmt.Fprintf(tw, "  backend1\t%s\t%s, %s\t%s\n", l.Backend1, l.Backend1IP, l.Backend1IP6, servers)
	fmt.Fprintf(tw, "  backend2\t%s\t%s, %s\t%s\n", l.Backend2, l.Backend2IP, l.Backend2IP6, servers)
	fmt.Fprintf(tw, "  db\t%s\t%s, %s\t\n", l.DB, l.DBIP, l.DBIP6)
	tw.Flush()
	if !noServers {
		fmt.Fprintln(w, "the servers keep each connection until the client closes it (no idle timeout of their own)")
	}
	n := ""
	if st.Name != "lab" {
		n = " --name " + st.Name
	}
	v6 := netip.AddrPortFrom(l.VIP6, 80)
	fmt.Fprintf(w, "try:\n  probe run --netns %s %s:80 %s\n  probe lab fault%s syn-drop --dst %s:80 && probe run --netns %s --timeout 2s %s:80\n  probe lab incident stale-ipvs-6h\n  probe lab clear%s; probe lab down%s\n",
		l.Pod, l.VIP, v6, n, l.VIP, l.Pod, l.VIP, n, n)
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
	sub := []string{"lab", "serve"}
	for _, l := range listen {
		sub = append(sub, "--listen", l)
	}
	return startDetached(ctx, ns, sub)
}

// startDetached runs `probe SUB...` inside ns as a detached process and
// waits until it prints "ready".
func startDetached(ctx context.Context, ns string, sub []string) (int, error) {
	argv, err := serverArgv()
	if err != nil {
		return 0, fmt.Errorf("lab: server: %w", err)
	}
	args := append([]string{"netns", "exec", ns}, argv...)
	args = append(args, sub...)
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
	stopPIDs(st.Servers, "lab\x00serve\x00")
	stopEmulators(st)
}

// stopEmulators terminates the PAWS emulators of fault paws.
func stopEmulators(st *labState) {
	stopPIDs(st.Emulators, "lab\x00paws-emulator")
	st.Emulators = nil
}

func stopPIDs(ss []labServer, mark string) {
	for _, s := range ss {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
		if err != nil || !strings.Contains(string(b), mark) {
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
			if f.Kind == lab.PAWS {
				return faultPAWS(cmd.Context(), cmd.OutOrStdout(), st, f)
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

// faultPAWS queues the server's SYNs and starts a PAWS emulator in each
// namespace that needs one (once per namespace), then saves the state so
// clear and down find both.
func faultPAWS(ctx context.Context, w io.Writer, st *labState, f lab.Fault) error {
	before := len(st.Lab.PAWS)
	if err := st.Lab.Fault(ctx, f); err != nil {
		return err
	}
	var started []string
	for _, ns := range st.Lab.PAWSNamespaces() {
		if slices.ContainsFunc(st.Emulators, func(s labServer) bool { return s.NS == ns }) {
			continue
		}
		pid, err := startDetached(ctx, ns, []string{"lab", "paws-emulator"})
		if err != nil {
			return errors.Join(err, saveState(st))
		}
		st.Emulators = append(st.Emulators, labServer{NS: ns, PID: pid})
		started = append(started, ns)
	}
	if err := saveState(st); err != nil {
		return err
	}
	var nss []string
	for _, r := range st.Lab.PAWS[before:] {
		if !slices.Contains(nss, r.NS) {
			nss = append(nss, r.NS)
		}
	}
	fmt.Fprintf(w, "lab %q: fault %s: SYNs to %s go through a PAWS emulator (per-source TSval check)\n", st.Name, f, strings.Join(nss, ", "))
	if len(started) > 0 {
		fmt.Fprintf(w, "  emulator started in %s; probe lab clear stops it\n", strings.Join(started, ", "))
	}
	return nil
}

func parseDst(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--dst %q: want an address or address:port (IPv6 as [addr]:port)", s)
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
			stopEmulators(st)
			if err := st.Lab.ClearFaults(cmd.Context()); err != nil {
				return err
			}
			if err := saveState(st); err != nil {
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

func newLabDemoCmd() *cobra.Command {
	var timeout time.Duration
	var incidents bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Probe every connect-level fault (IPv4 and IPv6) and replay the five incidents, each in its own lab; tear everything down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usagef("--timeout %s must be positive", timeout)
			}
			if err := needRoot("demo"); err != nil {
				return err
			}
			o := demo.Options{Timeout: timeout}
			if incidents {
				o.Incidents = demo.Incidents
			}
			return demoErr(demo.Run(cmd.Context(), cmd.OutOrStdout(), o))
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "timeout of each connect probe")
	cmd.Flags().BoolVar(&incidents, "incidents", true, "also replay the five incidents")
	return cmd
}

func demoErr(err error) error {
	if errors.Is(err, demo.ErrMismatch) {
		return errFailed
	}
	return err
}

func newLabIncidentCmd() *cobra.Command {
	var v6 bool
	var list strings.Builder
	for _, inc := range demo.Incidents {
		fmt.Fprintf(&list, "  %-20s %s\n", inc.Name, inc.Title)
	}
	cmd := &cobra.Command{
		Use:   "incident NAME",
		Short: "Replay a production incident in a lab of its own: what was seen, what connprobe says and why, what to change",
		Long: "Build what the incident needs in a fresh lab (servers, faults, sysctls), run the probes a user would run,\n" +
			"print what the team saw at the time, what connprobe says (reason and decisive evidence) and what to change,\n" +
			"then tear the lab down. Exit status 1 when connprobe did not say what it must.\n\nIncidents:\n" + list.String(),
		Example: "  probe lab incident stale-ipvs-6h\n  probe lab incident paws-nat --ipv6",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("lab incident: want exactly one incident NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := demo.FindIncident(args[0])
			if err != nil {
				return usageError{err}
			}
			if err := needRoot("incident"); err != nil {
				return err
			}
			return demoErr(inc.Run(cmd.Context(), cmd.OutOrStdout(), demo.IncidentOptions{
				Prefix: fmt.Sprintf("cpinc%d", os.Getpid()), V6: v6}))
		},
	}
	cmd.Flags().BoolVar(&v6, "ipv6", false, "replay over the lab's IPv6 addresses")
	return cmd
}

// newLabPAWSCmd is the PAWS emulator `probe lab fault paws` starts in a
// server's namespace (hidden: an implementation detail of fault paws).
func newLabPAWSCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "paws-emulator",
		Short:  "Drop queued SYNs whose TCP timestamp went backwards per source, until terminated",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e := paws.New()
			errc := make(chan error, 1)
			go func() { errc <- e.Run(cmd.Context(), "", lab.PAWSQueue) }()
			select {
			case err := <-errc:
				return fmt.Errorf("lab paws: %w", err)
			case <-time.After(100 * time.Millisecond):
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			return <-errc
		},
	}
}
