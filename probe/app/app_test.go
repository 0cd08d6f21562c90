package app

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
)

// probeOnce runs one attempt against target from namespace nsPath.
func probeOnce(t *testing.T, target, nsPath string, cfg Config) probe.Result {
	t.Helper()
	tg, err := probe.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	tg.NetNS = nsPath
	p, err := New(tg, cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", target, err)
	}
	defer p.Close()
	r := p.Probe(t.Context())
	t.Logf("%s: reason=%s phase=%s handshake=%s app=%s retx=%d evidence=%q err=%v",
		target, r.Reason, r.Phase, r.Timings.Handshake, r.Timings.App, r.Retransmits, r.Evidence, r.Err)
	return r
}

// check fails unless r has reason want and its evidence mentions every
// one of subs.
func check(t *testing.T, r probe.Result, want probe.Reason, subs ...string) {
	t.Helper()
	if r.Reason != want {
		t.Errorf("%s: reason = %s, want %s (evidence %q, err %v)", r.Target, r.Reason, want, r.Evidence, r.Err)
	}
	if r.Success() != want.Success() {
		t.Errorf("%s: success = %v, want %v", r.Target, r.Success(), want.Success())
	}
	ev := strings.Join(r.Evidence, "\n")
	for _, s := range subs {
		if !strings.Contains(ev, s) {
			t.Errorf("%s: evidence %q does not mention %q", r.Target, r.Evidence, s)
		}
	}
	if r.Kind != Kind {
		t.Errorf("kind = %q, want %q", r.Kind, Kind)
	}
	switch {
	case want == probe.ReasonOK || want == probe.ReasonAppError || want == probe.ReasonAppTimeout:
		if r.Timings.Handshake <= 0 || r.Timings.App <= 0 {
			t.Errorf("%s: timings handshake=%s app=%s, want both measured", r.Target, r.Timings.Handshake, r.Timings.App)
		}
	case want == probe.ReasonSynTimeout || want == probe.ReasonRefused:
		if r.Timings.App != 0 || r.Phase != probe.PhaseHandshake {
			t.Errorf("%s: phase %s app=%s, want the handshake to end it", r.Target, r.Phase, r.Timings.App)
		}
	}
	if want == probe.ReasonOK && r.Phase != probe.PhaseDone {
		t.Errorf("%s: phase = %s, want done", r.Target, r.Phase)
	}
	if (want == probe.ReasonAppError || want == probe.ReasonAppTimeout) && r.Phase != probe.PhaseApp {
		t.Errorf("%s: phase = %s, want app", r.Target, r.Phase)
	}
}

func loop(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

func TestMariaDB(t *testing.T) {
	lab.RequirePriv(t)
	addr := loop(freePort(t))
	m := startMariaDB(t, "", addr, "--max-connections=10") // MariaDB's minimum
	version := strings.TrimSpace(m.sql(t, "SELECT VERSION()"))
	cfg := Config{Timeout: 5 * time.Second}

	t.Run("greeting has the version", func(t *testing.T) {
		r := probeOnce(t, "mysql://"+addr.String(), "", cfg)
		check(t, r, probe.ReasonOK, "server "+version, "greeting in")
	})
	t.Run("login and SELECT 1", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("mysql://%s:%s@%s/mysql", dbUser, dbPass, addr), "", cfg)
		check(t, r, probe.ReasonOK, version, "logged in as probe", "SELECT 1 = 1")
	})
	t.Run("wrong password is the server's access denied", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("mysql://%s:wrong@%s", dbUser, addr), "", cfg)
		check(t, r, probe.ReasonAppError, "ERROR 1045", "Access denied for user 'probe'")
	})
	t.Run("too many connections", func(t *testing.T) {
		// The earlier subtests' connections are closed, but the server
		// frees their slots asynchronously: wait until only this query's
		// own connection is counted, or the fill below races with them.
		waitThreadsConnected(t, m, 1)
		// Fill max_connections=10 with logged-in clients of the probe user.
		var held []driver.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range 10 {
			held = append(held, mysqlLogin(t, addr))
		}
		// A login now is refused after the greeting (one slot is kept for
		// SUPER users, so the greeting itself still comes).
		r := probeOnce(t, fmt.Sprintf("mysql://%s:%s@%s", dbUser, dbPass, addr), "", cfg)
		check(t, r, probe.ReasonAppError, "ERROR 1040", "Too many connections")

		// With the SUPER slot taken too, the server sends the error instead
		// of its greeting: even the probe without credentials sees it. The
		// refused login above frees its slot asynchronously: hold raw
		// connections until one gets the error instead of a greeting.
		// A slot freed between the fill and the probe gives the probe a
		// greeting: fill again and retry (a few times at most).
		for try := 0; ; try++ {
			full := false
			for range 20 {
				raw, err := net.Dial("tcp", addr.String())
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				buf := make([]byte, 256)
				n, err := raw.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n > 4 && buf[4] == 0xff {
					full = true
					break
				}
			}
			if !full {
				t.Fatal("20 more connections and the server still greets: it never got full")
			}
			r = probeOnce(t, "mysql://"+addr.String(), "", cfg)
			if r.Reason != probe.ReasonOK || try == 4 {
				break
			}
		}
		check(t, r, probe.ReasonAppError, "ERROR 1040", "Too many connections")
	})
}

// waitThreadsConnected waits until the server counts at most n client
// connections (the query's own included).
func waitThreadsConnected(t *testing.T, m *mariadb, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := strings.Fields(m.sql(t, "SHOW GLOBAL STATUS LIKE 'Threads_connected'"))
		if len(got) == 2 {
			if v, err := strconv.Atoi(got[1]); err == nil && v <= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("MariaDB still counts connections from earlier subtests: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mysqlLogin(t *testing.T, addr netip.AddrPort) driver.Conn {
	t.Helper()
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = dbUser, dbPass, "tcp", addr.String()
	mc.Logger = nopLogger{}
	c, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := c.Connect(t.Context())
	if err != nil {
		t.Fatalf("hold a connection: %v", err)
	}
	return dc
}

func TestPostgres(t *testing.T) {
	lab.RequirePriv(t)
	addr := loop(freePort(t))
	pg := startPostgres(t, "", addr)
	version := strings.TrimSpace(pg.sql(t, "SHOW server_version"))
	cfg := Config{Timeout: 5 * time.Second}

	t.Run("SSLRequest answered", func(t *testing.T) {
		r := probeOnce(t, "postgres://"+addr.String(), "", cfg)
		check(t, r, probe.ReasonOK, "SSLRequest answered", "PostgreSQL server")
	})
	t.Run("login and SELECT 1", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("postgres://%s:%s@%s/postgres", dbUser, dbPass, addr), "", cfg)
		check(t, r, probe.ReasonOK, "PostgreSQL "+version, "logged in as probe", "SELECT 1 = 1")
	})
	t.Run("wrong password is the server's FATAL", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("postgres://%s:wrong@%s/postgres", dbUser, addr), "", cfg)
		check(t, r, probe.ReasonAppError, "FATAL 28P01", `password authentication failed for user "probe"`)
	})
	t.Run("too many clients", func(t *testing.T) {
		pg.sql(t, "ALTER ROLE probe CONNECTION LIMIT 0")
		defer pg.sql(t, "ALTER ROLE probe CONNECTION LIMIT -1")
		r := probeOnce(t, fmt.Sprintf("postgres://%s:%s@%s/postgres", dbUser, dbPass, addr), "", cfg)
		check(t, r, probe.ReasonAppError, "FATAL 53300", "too many connections for role")
	})
}

func TestRedis(t *testing.T) {
	lab.RequirePriv(t)
	addr := loop(freePort(t))
	startRedis(t, "", addr, dbPass, "--maxclients", "3")
	cfg := Config{Timeout: 5 * time.Second}

	t.Run("AUTH and PING", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("redis://:%s@%s", dbPass, addr), "", cfg)
		check(t, r, probe.ReasonOK, "Redis 7", "AUTH ok", "PONG in")
	})
	t.Run("wrong password", func(t *testing.T) {
		r := probeOnce(t, fmt.Sprintf("redis://:wrong@%s", addr), "", cfg)
		check(t, r, probe.ReasonAppError, "WRONGPASS")
	})
	t.Run("no password", func(t *testing.T) {
		r := probeOnce(t, "redis://"+addr.String(), "", cfg)
		check(t, r, probe.ReasonAppError, "NOAUTH Authentication required")
	})
	t.Run("max clients", func(t *testing.T) {
		for range 3 {
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "PING\r\n")
			buf := make([]byte, 64)
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		r := probeOnce(t, fmt.Sprintf("redis://:%s@%s", dbPass, addr), "", cfg)
		check(t, r, probe.ReasonAppError, "max number of clients reached")
	})
}

func TestKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(4, "orders"), kfake.ClusterID("connprobe-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	r := probeOnce(t, "kafka://"+addrs[0], "", Config{Timeout: 5 * time.Second})
	check(t, r, probe.ReasonOK, "cluster connprobe-test", "3 broker(s)", "1 topic(s), 4 partition(s)")
	for _, a := range addrs {
		if !strings.Contains(strings.Join(r.Evidence, " "), a) {
			t.Errorf("evidence %q misses broker %s", r.Evidence, a)
		}
	}
}

func TestHTTP(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "backend pool exhausted", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(h)
	defer tlsSrv.Close()
	cfg := Config{Timeout: 5 * time.Second}

	r := probeOnce(t, srv.URL+"/healthz", "", cfg)
	check(t, r, probe.ReasonOK, "HTTP/1.1 200 OK", "request written in", "first byte after", "3 byte(s) of body")
	if r.Timings.Reply <= 0 || r.Timings.Send <= 0 {
		t.Errorf("send=%s reply=%s, want both measured", r.Timings.Send, r.Timings.Reply)
	}
	r = probeOnce(t, srv.URL+"/down", "", cfg)
	check(t, r, probe.ReasonAppError, "503 Service Unavailable", "backend pool exhausted")

	r = probeOnce(t, tlsSrv.URL+"/", "", Config{Timeout: 5 * time.Second, InsecureSkipVerify: true})
	check(t, r, probe.ReasonOK, "HTTP/1.1 200 OK", "TLS 1.3 in")
	// Without skipping verification the test certificate is refused: the
	// server answered, with a certificate we do not trust.
	r = probeOnce(t, tlsSrv.URL+"/", "", cfg)
	check(t, r, probe.ReasonAppError, "certificate")
}

func TestSilentServerIsAppTimeout(t *testing.T) {
	// Up in TCP terms, dead above it: reads and discards, never answers.
	a := testlisten.Loopback(t, testlisten.Silent).Addr().String()
	for _, tc := range []struct{ target, evidence string }{
		{"mysql://" + a, "server sent nothing: no greeting"},
		{"mysql://probe:x@" + a, "server sent nothing: no greeting"},
		{"postgres://" + a, "no answer to the SSLRequest"},
		{"postgres://probe:x@" + a + "/db", "no answer to the startup message"},
		{"redis://" + a, "no answer to PING"},
		{"kafka://" + a, "no answer to ApiVersions v3"},
		{"http://" + a + "/", "no HTTP response"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			r := probeOnce(t, tc.target, "", Config{Timeout: 700 * time.Millisecond})
			check(t, r, probe.ReasonAppTimeout, tc.evidence)
		})
	}
}

// TestDBHostNetworkFaults probes real servers in the lab's db namespace
// from the pod namespace: ok, then SYNs to the db dropped (syn_timeout),
// then the server stopped (refused).
func TestDBHostNetworkFaults(t *testing.T) {
	l := lab.New(t)
	pod, db := l.Path(l.Pod), l.Path(l.DB)
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(l.DBIP, port) }

	type target struct {
		name, url, okEvidence string
		stop                  func()
	}
	m := startMariaDB(t, db, at(3306))
	pg := startPostgres(t, db, at(5432))
	rd := startRedis(t, db, at(6379), dbPass)
	kafkaLn, err := l.Listen(l.DB, at(9092).String())
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return kafkaLn, nil }))
	if err != nil {
		t.Fatal(err)
	}
	stopKafka := sync.OnceFunc(kc.Close)
	defer stopKafka()

	targets := []target{
		{"mariadb", fmt.Sprintf("mysql://%s:%s@%s", dbUser, dbPass, at(3306)), "MariaDB", m.stop},
		{"postgres", fmt.Sprintf("postgres://%s:%s@%s/postgres", dbUser, dbPass, at(5432)), "PostgreSQL 1", pg.stop},
		{"redis", fmt.Sprintf("redis://:%s@%s", dbPass, at(6379)), "PONG", rd.stop},
		{"kafka", "kafka://" + at(9092).String(), "1 broker(s): 0=" + at(9092).String(), stopKafka},
	}
	cfg := Config{Timeout: 5 * time.Second}
	for _, tg := range targets {
		check(t, probeOnce(t, tg.url, pod, cfg), probe.ReasonOK, tg.okEvidence)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.Fault(ctx, lab.Fault{Kind: lab.SYNDrop, Dst: netip.AddrPortFrom(l.DBIP, 0)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, tg := range targets {
		wg.Go(func() {
			r := probeOnce(t, tg.url, pod, Config{Timeout: 1500 * time.Millisecond})
			check(t, r, probe.ReasonSynTimeout, "no SYN/ACK, no RST, no ICMP")
		})
	}
	wg.Wait()
	if err := l.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tg := range targets {
		tg.stop()
		r := probeOnce(t, tg.url, pod, cfg)
		check(t, r, probe.ReasonRefused, "RST in answer to the SYN")
	}
}
