package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// PAWSQueue is the NFQUEUE number the PAWS fault's rules queue SYNs to, in
// the server's namespace (queues are per namespace).
const PAWSQueue = 7

// PAWSRule is one NFQUEUE rule the PAWS fault installed in a server's
// namespace.
type PAWSRule struct {
	NS   string   `json:"netns"`
	Tool string   `json:"tool"` // iptables or ip6tables
	Args []string `json:"args"` // the rule after -I/-D INPUT
}

// pawsRule queues the SYNs to dst's server (the db when dst has no
// address; both backends for the VIP) to PAWSQueue, in the families dst
// names (both when none). --queue-bypass lets SYNs through while no
// emulator is bound, so the rule alone changes nothing. nft has no queue
// statement on this kernel (docs/lab.md), hence iptables-nft.
func (l *Lab) pawsRule(ctx context.Context, dst netip.AddrPort) error {
	var nss []string
	switch a := dst.Addr(); {
	case !a.IsValid():
		nss = []string{l.DB}
	case a == l.VIP || a == l.VIP6:
		nss = []string{l.Backend1, l.Backend2}
	default:
		ns := l.Owner(a)
		if ns == "" || ns == l.Pod || ns == l.Router {
			return fmt.Errorf("lab: fault paws: --dst %s is not a server of the lab (want the VIP, a backend or the db)", a)
		}
		nss = []string{ns}
	}
	for _, ns := range nss {
		for _, v6 := range []bool{false, true} {
			if a := dst.Addr(); a.IsValid() && a.Is6() != v6 {
				continue
			}
			tool := "iptables"
			if v6 {
				tool = "ip6tables"
			}
			args := []string{"-p", "tcp", "--syn"}
			if p := dst.Port(); p != 0 {
				args = append(args, "--dport", strconv.Itoa(int(p)))
			}
			args = append(args, "-j", "NFQUEUE", "--queue-num", strconv.Itoa(PAWSQueue), "--queue-bypass")
			if out, err := l.Exec(ctx, ns, append([]string{tool, "-w", "-I", "INPUT"}, args...)...); err != nil {
				return fmt.Errorf("lab: fault paws (needs the iptables package): %w: %s", err, out)
			}
			l.PAWS = append(l.PAWS, PAWSRule{NS: ns, Tool: tool, Args: args})
		}
	}
	return nil
}

// PAWSNamespaces lists the namespaces where the PAWS fault queues SYNs: an
// emulator must run in each (paws.Emulator.Run with PAWSQueue).
func (l *Lab) PAWSNamespaces() []string {
	var nss []string
	for _, r := range l.PAWS {
		if !slices.Contains(nss, r.NS) {
			nss = append(nss, r.NS)
		}
	}
	return nss
}

// clearPAWS removes the PAWS fault's rules.
func (l *Lab) clearPAWS(ctx context.Context) error {
	for _, r := range l.PAWS {
		if out, err := l.Exec(ctx, r.NS, append([]string{r.Tool, "-w", "-D", "INPUT"}, r.Args...)...); err != nil {
			return fmt.Errorf("lab: clear paws rule in %s: %w: %s", r.NS, err, out)
		}
	}
	l.PAWS = nil
	return nil
}
