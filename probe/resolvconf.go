package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Bounds of a resolv.conf, as glibc applies them: the first 3 nameservers,
// at most 6 search domains, ndots at most 15.
const (
	MaxNameservers   = 3
	MaxSearchDomains = 6
	maxNdots         = 15
)

// ResolvConf is what a stub resolver takes from a resolv.conf: the servers
// it asks (in order), the search list and ndots.
type ResolvConf struct {
	Servers []netip.AddrPort
	Search  []string
	Ndots   int
}

// ParseResolvConf parses resolv.conf contents (resolv.conf(5)): nameserver
// lines (IP literals; the first MaxNameservers count, as in glibc), the last
// search or domain line (at most MaxSearchDomains domains), and options
// ndots:N (default 1, at most 15). No nameserver means 127.0.0.1 and ::1,
// as glibc does. The file is a pod's, so hostile: a line that makes no
// sense is skipped, and only a file with nothing but junk is an error.
func ParseResolvConf(b []byte) (ResolvConf, error) {
	rc := ResolvConf{Ndots: 1}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), len(b)+1)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(rc.Servers) >= MaxNameservers {
				continue
			}
			a, err := netip.ParseAddr(f[1])
			if err != nil || a.Zone() != "" {
				continue
			}
			rc.Servers = append(rc.Servers, netip.AddrPortFrom(a.Unmap(), DefaultDNSPort))
		case "domain", "search":
			rc.Search = rc.Search[:0]
			for _, d := range f[1:] {
				d = strings.TrimSuffix(d, ".")
				if d == "" || len(d) > 253 || len(rc.Search) >= MaxSearchDomains {
					continue
				}
				rc.Search = append(rc.Search, d)
			}
		case "options":
			for _, o := range f[1:] {
				if v, ok := strings.CutPrefix(o, "ndots:"); ok {
					if n, err := strconv.Atoi(v); err == nil && n >= 0 {
						rc.Ndots = min(n, maxNdots)
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ResolvConf{}, fmt.Errorf("resolv.conf: %w", err)
	}
	if len(rc.Servers) == 0 {
		rc.Servers = []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), DefaultDNSPort),
			netip.AddrPortFrom(netip.IPv6Loopback(), DefaultDNSPort),
		}
	}
	return rc, nil
}

// DialFunc dials a DNS server: network is "udp" or "tcp".
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewStubResolver returns a Resolver that resolves names the way a stub
// resolver configured by rc does: each name is tried with the search
// domains (before the name itself when it has fewer than ndots dots, after
// it otherwise; a name ending in "." as is), each asked of rc's servers in
// order until one answers (NXDOMAIN is an answer: the next name is tried).
// Every socket comes from dial — for a pod, one that creates it in the
// pod's network namespace — and nil dial is an ordinary net.Dialer.
func NewStubResolver(rc ResolvConf, dial DialFunc) (*Resolver, error) {
	if len(rc.Servers) == 0 {
		return nil, errors.New("resolver: no nameserver")
	}
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	r := &Resolver{server: rc.Servers[0], search: rc.Search, ndots: rc.Ndots, stub: true}
	for _, s := range rc.Servers {
		addr := s.String()
		r.servers = append(r.servers, s)
		r.all = append(r.all, &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dial(ctx, network, addr)
			},
		})
	}
	r.r = r.all[0]
	return r, nil
}

// names is the search order of host: rooted names (trailing dot) for Go's
// resolver, which then applies no search list of its own.
func (r *Resolver) names(host string) []string {
	if strings.HasSuffix(host, ".") {
		return []string{host}
	}
	searched := make([]string, 0, len(r.search))
	for _, d := range r.search {
		searched = append(searched, host+"."+d+".")
	}
	if strings.Count(host, ".") >= r.ndots {
		return append([]string{host + "."}, searched...)
	}
	return append(searched, host+".")
}

// stubLookup is LookupNetIP of a stub resolver (NewStubResolver).
func (r *Resolver) stubLookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	var last error
	for _, name := range r.names(host) {
		for i, res := range r.all {
			ips, err := res.LookupNetIP(ctx, network, name)
			if err == nil && len(ips) > 0 {
				return ips, nil
			}
			if err == nil {
				err = &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true}
			}
			last = r.namedBy(err, r.servers[i])
			if ctx.Err() != nil {
				return nil, last
			}
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				break // an answer: try the next name, not the next server
			}
		}
	}
	var de *net.DNSError
	if errors.As(last, &de) && len(r.search) > 0 && !strings.HasSuffix(host, ".") {
		c := *de
		c.Name = fmt.Sprintf("%s (search %s, ndots %d)", host, strings.Join(r.search, " "), r.ndots)
		return nil, &c
	}
	return nil, last
}

func (r *Resolver) namedBy(err error, server netip.AddrPort) error {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return err
	}
	c := *de
	c.Server = server.String()
	return &c
}
