package idle

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The responder protocol (`probe responder`, package internal/responder) is
// line based so that it can be spoken by hand with nc. Every line is ASCII,
// at most MaxLine bytes including the terminating "\n", and starts with the
// version token "CPR1". A client sends one request at a time:
//
//	CPR1 ECHO <nonce>            reply at once:        CPR1 OK <nonce> <server> <client>
//	CPR1 DELAY <ms> <nonce>      acknowledge at once:  CPR1 WAIT <nonce>
//	                             then, <ms> later:     CPR1 OK <nonce> <server> <client>
//
// <server> is the address the responder's socket is bound to (the backend
// behind a Service VIP) and <client> the peer address it sees (after any
// SNAT); a prober uses them to say which backend an idle connection reached.
// A nonce is 1–64 characters of [A-Za-z0-9._-]; a reply must carry the nonce
// of its request, so a stray or replayed reply is never taken for the answer.
//
// A bad request, a delay above the responder's cap, any byte sent while a
// delayed reply is pending, or a connection over the responder's limits is
// answered with
//
//	CPR1 ERR <code> <text>
//
// and the responder closes the connection. Codes are the ErrCode constants.
const (
	ProtoVersion = "CPR1"
	// MaxLine is the longest line either side may send, "\n" included.
	MaxLine = 256
	// MaxNonce is the longest nonce.
	MaxNonce = 64
)

// Verb is a request or reply keyword.
type Verb string

// The protocol's verbs.
const (
	VerbEcho  Verb = "ECHO"  // request: reply now
	VerbDelay Verb = "DELAY" // request: reply after a delay
	VerbOK    Verb = "OK"    // reply carrying the request's nonce
	VerbWait  Verb = "WAIT"  // a DELAY was accepted; the OK follows later
	VerbErr   Verb = "ERR"   // the request was refused; the connection closes
)

// ErrCode is the bounded code of an ERR reply (also the responder's metric label).
type ErrCode string

// The ERR codes.
const (
	ErrMalformed    ErrCode = "malformed"      // not a CPR1 request line
	ErrTooLong      ErrCode = "too_long"       // line longer than MaxLine
	ErrDelayTooLong ErrCode = "delay_too_long" // DELAY above the responder's cap
	ErrBusy         ErrCode = "busy"           // too many connections in total
	ErrSourceBusy   ErrCode = "source_busy"    // too many connections from this source address
	ErrEarlyData    ErrCode = "early_data"     // bytes sent while a delayed reply was pending
	ErrIdle         ErrCode = "idle"           // connection idle past the responder's limit
)

// Request is a parsed client request.
type Request struct {
	Verb  Verb          // VerbEcho or VerbDelay
	Delay time.Duration // for VerbDelay, millisecond resolution
	Nonce string
}

// String renders the request as its wire line, "\n" included.
func (r Request) String() string {
	if r.Verb == VerbDelay {
		return fmt.Sprintf("%s %s %d %s\n", ProtoVersion, VerbDelay, r.Delay.Milliseconds(), r.Nonce)
	}
	return fmt.Sprintf("%s %s %s\n", ProtoVersion, r.Verb, r.Nonce)
}

// Reply is a parsed responder reply.
type Reply struct {
	Verb   Verb // VerbOK, VerbWait or VerbErr
	Nonce  string
	Server netip.AddrPort // OK only: the responder's own address
	Client netip.AddrPort // OK only: the client as the responder sees it
	Code   ErrCode        // ERR only
	Text   string         // ERR only
}

// String renders the reply as its wire line, "\n" included.
func (r Reply) String() string {
	switch r.Verb {
	case VerbOK:
		return fmt.Sprintf("%s %s %s %s %s\n", ProtoVersion, VerbOK, r.Nonce, r.Server, r.Client)
	case VerbWait:
		return fmt.Sprintf("%s %s %s\n", ProtoVersion, VerbWait, r.Nonce)
	}
	line := fmt.Sprintf("%s %s %s %s", ProtoVersion, VerbErr, r.Code, r.Text)
	if len(line) >= MaxLine {
		line = line[:MaxLine-1]
	}
	return line + "\n"
}

// ErrProto marks a line that does not follow the protocol.
var ErrProto = errors.New("not a CPR1 line")

// RefusedError is a responder's ERR reply: a well-formed refusal by the
// responder itself (a limit, or a request it rejects), not a protocol error.
type RefusedError struct {
	Code ErrCode
	Text string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("responder refused: ERR %s %s", e.Code, e.Text)
}

// Meaning says what the refusal means for the operator: which side of the
// responder to look at.
func (e *RefusedError) Meaning() string {
	switch e.Code {
	case ErrBusy:
		return "responder at its connection limit (probe responder --max-conns)"
	case ErrSourceBusy:
		return "responder refuses more connections from this source (probe responder --max-per-source; clients behind one SNAT address share it)"
	case ErrDelayTooLong:
		return "the idle time is above the responder's cap (probe responder --max-delay)"
	case ErrIdle:
		return "the responder closed the connection idle past its limit (probe responder --max-idle must exceed the probe's idle time)"
	case ErrEarlyData:
		return "the responder got bytes while a delayed reply was pending"
	}
	return "the responder rejected our request"
}

// ParseRequest parses one request line (with or without its "\n"). It never
// panics; errors wrap ErrProto.
func ParseRequest(line string) (Request, error) {
	f, err := fields(line)
	if err != nil {
		return Request{}, err
	}
	switch Verb(f[0]) {
	case VerbEcho:
		if len(f) != 2 {
			return Request{}, fmt.Errorf("ECHO wants 1 argument, got %d: %w", len(f)-1, ErrProto)
		}
		if err := checkNonce(f[1]); err != nil {
			return Request{}, err
		}
		return Request{Verb: VerbEcho, Nonce: f[1]}, nil
	case VerbDelay:
		if len(f) != 3 {
			return Request{}, fmt.Errorf("DELAY wants 2 arguments, got %d: %w", len(f)-1, ErrProto)
		}
		ms, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return Request{}, fmt.Errorf("DELAY %q: not a number of milliseconds: %w", f[1], ErrProto)
		}
		if err := checkNonce(f[2]); err != nil {
			return Request{}, err
		}
		return Request{Verb: VerbDelay, Delay: time.Duration(ms) * time.Millisecond, Nonce: f[2]}, nil
	}
	return Request{}, fmt.Errorf("unknown request %q: %w", snip(f[0]), ErrProto)
}

// ParseReply parses one reply line (with or without its "\n"). It never
// panics; errors wrap ErrProto.
func ParseReply(line string) (Reply, error) {
	f, err := fields(line)
	if err != nil {
		return Reply{}, err
	}
	switch Verb(f[0]) {
	case VerbOK:
		if len(f) != 4 {
			return Reply{}, fmt.Errorf("OK wants 3 arguments, got %d: %w", len(f)-1, ErrProto)
		}
		if err := checkNonce(f[1]); err != nil {
			return Reply{}, err
		}
		srv, err1 := netip.ParseAddrPort(f[2])
		cli, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil {
			return Reply{}, fmt.Errorf("OK: bad addresses %q %q: %w", snip(f[2]), snip(f[3]), ErrProto)
		}
		return Reply{Verb: VerbOK, Nonce: f[1], Server: srv, Client: cli}, nil
	case VerbWait:
		if len(f) != 2 {
			return Reply{}, fmt.Errorf("WAIT wants 1 argument, got %d: %w", len(f)-1, ErrProto)
		}
		if err := checkNonce(f[1]); err != nil {
			return Reply{}, err
		}
		return Reply{Verb: VerbWait, Nonce: f[1]}, nil
	case VerbErr:
		if len(f) < 2 {
			return Reply{}, fmt.Errorf("ERR without a code: %w", ErrProto)
		}
		return Reply{Verb: VerbErr, Code: ErrCode(snip(f[1])), Text: snip(strings.Join(f[2:], " "))}, nil
	}
	return Reply{}, fmt.Errorf("unknown reply %q: %w", snip(f[0]), ErrProto)
}

func fields(line string) ([]string, error) {
	if len(line) > MaxLine {
		return nil, fmt.Errorf("line of %d bytes exceeds %d: %w", len(line), MaxLine, ErrProto)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("non-printable byte 0x%02x: %w", c, ErrProto)
		}
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != ProtoVersion {
		return nil, fmt.Errorf("line %q: %w", snip(line), ErrProto)
	}
	return f[1:], nil
}

func checkNonce(n string) error {
	if n == "" || len(n) > MaxNonce {
		return fmt.Errorf("nonce of %d characters, want 1-%d: %w", len(n), MaxNonce, ErrProto)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("nonce %q: want [A-Za-z0-9._-]: %w", snip(n), ErrProto)
		}
	}
	return nil
}

func snip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
