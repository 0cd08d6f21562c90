package idle

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/connprobe/connprobe/probe"
)

// A mysql://user:pass@host:port target in plain mode logs in before the idle
// time and pings (COM_PING) after it: a database's wait_timeout only counts
// for logged-in sessions (an unauthenticated connection is closed after
// connect_timeout instead). The driver talks over a duplicate of the probe's
// own socket, so the idle watch still sees the server's FIN and when it came.

const mysqlNet = "connprobe-idle"

type ctxConnKey struct{}

var registerOnce sync.Once

func (p *Prober) mysqlConfig() (*mysql.Config, bool) {
	u := p.target.URL
	if p.target.Scheme != "mysql" || u == nil || u.User == nil || u.User.Username() == "" {
		return nil, false
	}
	mc := mysql.NewConfig()
	mc.User = u.User.Username()
	mc.Passwd, _ = u.User.Password()
	mc.Net = mysqlNet
	mc.Addr = p.target.HostPort()
	mc.DBName = strings.TrimPrefix(u.Path, "/")
	mc.MaxAllowedPacket = 4 << 20
	mc.Logger = nopLogger{}
	return mc, true
}

// mysqlLogin logs in over a duplicate of s's socket.
func (p *Prober) mysqlLogin(ctx context.Context, mc *mysql.Config, s *session) (driver.Conn, error) {
	registerOnce.Do(func() {
		mysql.RegisterDialContext(mysqlNet, func(ctx context.Context, _ string) (net.Conn, error) {
			nc, ok := ctx.Value(ctxConnKey{}).(net.Conn)
			if !ok {
				return nil, errors.New("idle: mysql: no connection in context")
			}
			return nc, nil
		})
	})
	nc, err := s.c.NetConn()
	if err != nil {
		return nil, fmt.Errorf("idle: mysql conn: %w", err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("idle: mysql: %w", err)
	}
	dc, err := conn.Connect(context.WithValue(ctx, ctxConnKey{}, nc))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("idle: mysql login: %w", err)
	}
	return dc, nil
}

// mysqlIdle: log in, idle, ping.
func (p *Prober) mysqlIdle(ctx context.Context, r *probe.Result, s *session, mc *mysql.Config, d time.Duration) *broke {
	lctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	t0 := time.Now()
	dc, err := p.mysqlLogin(lctx, mc, s)
	cancel()
	if err != nil {
		r.Fail(probe.PhaseApp, err)
		r.Evidencef("mysql login as %s failed: %v", mc.User, err)
		return nil
	}
	defer dc.Close()
	r.Timings.App = time.Since(t0)
	r.Evidencef("logged in to mysql as %s in %s", mc.User, probe.Round(r.Timings.App))
	if !p.idleFor(ctx, r, s, d, true) {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.ReplyTimeout)
	defer cancel()
	sent := tcpInfo(s.c)
	t1 := time.Now()
	err = dc.(driver.Pinger).Ping(pctx)
	r.Timings.Reply = time.Since(t1)
	if err == nil {
		r.Reason, r.Phase = probe.ReasonOK, probe.PhaseDone
		r.Evidencef("after %s idle, COM_PING answered in %s", probe.Round(r.Timings.Idle), probe.Round(r.Timings.Reply))
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	// The driver's error is generic (invalid connection): ask the socket.
	if serr := sockErr(s); serr != nil {
		err = serr
	}
	return p.describeBroke(s, err, r.Timings.Idle, r.Timings.Reply, &sent, "sent COM_PING")
}

// sockErr reads the socket's pending state without blocking: an RST's
// ECONNRESET, or io.EOF after a FIN.
func sockErr(s *session) error {
	var b [1]byte
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := s.read(ctx, b[:])
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

type nopLogger struct{}

func (nopLogger) Print(...any) {}
