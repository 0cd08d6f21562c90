package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a tiny authoritative DNS server on a loopback UDP port: it answers
// A/AAAA queries for the names it was given and NXDOMAIN for every other
// name. Tests and the demo resolve through it (Resolver) so nothing ever
// asks a real DNS server.
type DNS struct {
	conn    net.PacketConn
	records map[string][]netip.Addr // lower-case FQDN ("db.lab.") → addresses
	wg      sync.WaitGroup
}

// NewDNS starts a server on 127.0.0.1 answering for records (names with or
// without the trailing dot). Close stops it.
func NewDNS(records map[string][]netip.Addr) (*DNS, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: dns: %w", err)
	}
	return ServeDNS(c, records), nil
}

// ServeDNS is NewDNS on a socket the caller made: one at port 53 created
// inside a namespace, as the nameserver of a pod's resolv.conf (which
// names no port). Close closes c.
func ServeDNS(c net.PacketConn, records map[string][]netip.Addr) *DNS {
	d := &DNS{conn: c, records: map[string][]netip.Addr{}}
	for name, addrs := range records {
		d.records[fqdn(name)] = addrs
	}
	d.wg.Go(d.serve)
	return d
}

// Addr is the server's UDP address.
func (d *DNS) Addr() string { return d.conn.LocalAddr().String() }

// Close stops the server and waits for it.
func (d *DNS) Close() error {
	err := d.conn.Close()
	d.wg.Wait()
	return err
}

// Resolver returns a pure-Go resolver that sends every query to this server
// (never /etc/resolv.conf's servers; /etc/hosts is still consulted first, so
// use names that are not in it, such as *.lab.invalid).
func (d *DNS) Resolver() *net.Resolver {
	addr := d.Addr()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", addr)
		},
	}
}

func (d *DNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, err := d.answer(buf[:n])
		if err != nil {
			continue // malformed query: drop it, as a server would
		}
		_, _ = d.conn.WriteTo(resp, from)
	}
}

func (d *DNS) answer(q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, errors.New("want one question")
	}
	question := qs[0]
	addrs, known := d.records[strings.ToLower(question.Name.String())]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(question); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		rr := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch {
		case a.Is4() && question.Type == dnsmessage.TypeA:
			if err := b.AResource(rr, dnsmessage.AResource{A: a.As4()}); err != nil {
				return nil, err
			}
		case a.Is6() && !a.Is4In6() && question.Type == dnsmessage.TypeAAAA:
			if err := b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}
