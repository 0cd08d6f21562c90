package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// redisProbe speaks RESP2: AUTH when the URL has a password, PING, then
// INFO server for the version. RESP is hand-written here on purpose: the Go
// Redis clients hide the connection behind a pool that runs its own
// HELLO/AUTH/CLIENT SETINFO sequence with fallbacks, where the probe needs
// each command and its answer on its one measured connection. Five
// commands' worth of RESP is smaller than that machinery.
type redisProbe struct {
	user, pass string
	db         int
}

func newRedis(t probe.Target, _ Config) (speaker, error) {
	p := &redisProbe{}
	u := t.URL
	if u == nil {
		return p, nil
	}
	if u.User != nil {
		// redis://:pass@host (requirepass) or redis://user:pass@host (ACL).
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
		if p.pass == "" && p.user != "" {
			// redis://pass@host: a lone name is taken as the requirepass password.
			p.user, p.pass = "", p.user
		}
	}
	if s := strings.Trim(u.Path, "/"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("redis database %q: want a number", s)
		}
		p.db = n
	}
	if len(u.Query()) > 0 {
		return nil, fmt.Errorf("redis options %q are not supported", u.RawQuery)
	}
	return p, nil
}

func (p *redisProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	br := bufio.NewReaderSize(c, 4096)
	var steps []string
	do := func(args ...string) (respValue, error) {
		if err := writeRESP(c, args...); err != nil {
			return respValue{}, fmt.Errorf("redis: write %s: %w", args[0], err)
		}
		c.wait("answer to " + args[0])
		v, err := readRESP(br, 0)
		if err != nil {
			return v, err
		}
		if v.kind == '-' {
			return v, &ServerError{Msg: v.str}
		}
		return v, nil
	}
	t0 := time.Now()
	if p.pass != "" {
		args := []string{"AUTH", p.pass}
		if p.user != "" {
			args = []string{"AUTH", p.user, p.pass}
		}
		if _, err := do(args...); err != nil {
			return err
		}
		steps = append(steps, "AUTH ok")
	}
	if p.db != 0 {
		if _, err := do("SELECT", strconv.Itoa(p.db)); err != nil {
			return err
		}
	}
	t1 := time.Now()
	v, err := do("PING")
	if err != nil {
		return err
	}
	if v.kind != '+' || v.str != "PONG" {
		return serverErrorf("PING answered %c%q, not +PONG", v.kind, v.str)
	}
	steps = append(steps, fmt.Sprintf("PONG in %s", probe.Round(time.Since(t1))))
	version := "Redis"
	if info, err := do("INFO", "server"); err == nil {
		for line := range strings.SplitSeq(info.str, "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				version = "Redis " + printable([]byte(s))
			}
		}
	} else {
		var se *ServerError
		if !errors.As(err, &se) {
			return err
		}
		// INFO can be renamed or forbidden (ACL): PONG already proved it alive.
		steps = append(steps, "INFO refused: "+se.Msg)
	}
	r.Evidencef("%s: %s (exchange %s)", version, strings.Join(steps, ", "), probe.Round(time.Since(t0)))
	return nil
}

func writeRESP(c *conn, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := c.Write([]byte(b.String()))
	return err
}

// respValue is one RESP2 reply: kind is '+', '-', ':', '$' or '*'; str holds
// simple strings, errors, integers and bulk strings; arrays are skipped.
type respValue struct {
	kind byte
	str  string
	null bool
}

// maxBulk bounds a bulk string we are willing to read (INFO is ~4 KiB):
// the answer's byte budget.
const maxBulk = MaxAnswer

// readRESP reads one reply. Malformed input is a ServerError (the server
// does not speak RESP); it never panics.
func readRESP(br *bufio.Reader, depth int) (respValue, error) {
	// The first byte says it: a server that is not Redis (one that speaks
	// first, like MySQL or SSH) may never send the newline.
	first, err := br.Peek(1)
	if err != nil {
		return respValue{}, fmt.Errorf("redis: read: %w", err)
	}
	if !strings.ContainsRune("+-:$*", rune(first[0])) {
		n := br.Buffered()
		head, _ := br.Peek(min(n, 64))
		return respValue{}, serverErrorf("not a Redis server: answered %q", printable(head))
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return respValue{}, serverErrorf("not a Redis reply: line longer than %d bytes", br.Size())
		}
		return respValue{}, fmt.Errorf("redis: read: %w", err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return respValue{}, serverErrorf("not a Redis reply: %q", printable(line))
	}
	v := respValue{kind: line[0], str: string(line[1 : len(line)-2])}
	switch v.kind {
	case '+', '-', ':':
		return v, nil
	case '$', '*':
		n, err := strconv.Atoi(v.str)
		if err != nil || n < -1 || n > maxBulk {
			return respValue{}, serverErrorf("not a Redis reply: %q", printable(line))
		}
		if n == -1 {
			return respValue{kind: v.kind, null: true}, nil
		}
		if v.kind == '*' {
			if depth > 4 {
				return respValue{}, serverErrorf("Redis reply nested too deep")
			}
			for range n {
				if _, err := readRESP(br, depth+1); err != nil {
					return respValue{}, err
				}
			}
			return respValue{kind: '*'}, nil
		}
		if depth > 0 {
			// An array's element: skipped, never allocated.
			if _, err := br.Discard(n + 2); err != nil {
				return respValue{}, fmt.Errorf("redis: read: %w", err)
			}
			return respValue{kind: '$'}, nil
		}
		b := make([]byte, n+2)
		if _, err := readFullBuf(br, b); err != nil {
			return respValue{}, fmt.Errorf("redis: read: %w", err)
		}
		return respValue{kind: '$', str: string(b[:n])}, nil
	}
	return respValue{}, serverErrorf("not a Redis reply: %q", printable(line))
}

func readFullBuf(br *bufio.Reader, b []byte) (int, error) {
	off := 0
	for off < len(b) {
		n, err := br.Read(b[off:])
		off += n
		if err != nil {
			return off, err
		}
	}
	return off, nil
}
