package app

// Real database servers for the tests: MariaDB, PostgreSQL and Redis from
// their Debian packages, started by the test itself (no systemd), each with
// its own data directory, optionally inside a network namespace (the
// process is started from a thread inside it, so it listens there).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe/netns"
)

// server is a database process started by a test.
type server struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	addr    netip.AddrPort
	dir     string
	log     *bytes.Buffer
	done    chan struct{}
	stopSig syscall.Signal
}

// start runs cmd, inside the namespace nsPath when not empty.
func startProcess(t testing.TB, name, nsPath string, cmd *exec.Cmd, stopSig syscall.Signal) *server {
	t.Helper()
	s := &server{t: t, name: name, cmd: cmd, log: &bytes.Buffer{}, done: make(chan struct{}), stopSig: stopSig}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = mergeAttr(cmd.SysProcAttr)
	// The child inherits the network namespace of the forking thread.
	if err := netns.Do(nsPath, cmd.Start); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, s.log.String())
		}
	})
	return s
}

func mergeAttr(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Setpgid = true
	a.Pdeathsig = syscall.SIGKILL // never outlive a killed test binary
	return a
}

// stop shuts the server down and waits for it to exit.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(s.stopSig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// waitTCP waits until addr accepts connections from namespace nsPath.
func waitTCP(t testing.TB, s *server, nsPath string, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var c net.Conn
		err := netns.Do(nsPath, func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
			return err
		})
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			t.Fatalf("%s exited before listening on %s:\n%s", s.name, addr, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 20s: %v\n%s", s.name, addr, err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) uint16 {
	t.Helper()
	return netip.MustParseAddrPort(testlisten.ClosedAddr(t)).Port()
}

func need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not installed (see .ci/packages.txt; scripts/install-deps.sh installs it): %v", b, err)
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// sharedDir is a per-process directory for server templates (kept between
// tests of one run, removed by TestMain).
var (
	sharedDirOnce sync.Once
	sharedDir     string
	sharedDirErr  error
)

func templateDir(t testing.TB) string {
	t.Helper()
	sharedDirOnce.Do(func() {
		sharedDir, sharedDirErr = os.MkdirTemp("", "connprobe-app-")
		if sharedDirErr == nil {
			// PostgreSQL runs as its own user and must reach its data below.
			sharedDirErr = os.Chmod(sharedDir, 0o755)
		}
	})
	if sharedDirErr != nil {
		t.Fatal(sharedDirErr)
	}
	return sharedDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// serverDir makes a fresh directory for one server under the shared dir,
// removed when the test ends.
func serverDir(t testing.TB, name string) string {
	t.Helper()
	d, err := os.MkdirTemp(templateDir(t), name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// --- MariaDB ---

const (
	dbUser = "probe"
	dbPass = "s3cret"
)

var (
	mariaTplOnce sync.Once
	mariaTpl     string
	mariaTplErr  string
)

// mariadbTemplate runs mariadb-install-db once per test binary; each
// server copies it (cheaper than a fresh install).
func mariadbTemplate(t testing.TB) string {
	t.Helper()
	need(t, "mariadb-install-db", "mariadbd", "mariadb")
	mariaTplOnce.Do(func() {
		d := filepath.Join(templateDir(t), "mariadb-template")
		out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+d,
			"--user=root", "--auth-root-authentication-method=normal", "--skip-test-db",
			"--innodb-log-file-size=4M", "--innodb-buffer-pool-size=8M").CombinedOutput()
		if err != nil {
			mariaTplErr = fmt.Sprintf("mariadb-install-db: %v\n%s", err, out)
			return
		}
		mariaTpl = d
	})
	if mariaTplErr != "" {
		t.Fatal(mariaTplErr)
	}
	return mariaTpl
}

type mariadb struct {
	*server
	sock string
}

// startMariaDB starts mariadbd on ip:port inside nsPath ("" = here) with a
// user probe/s3cret allowed from anywhere.
func startMariaDB(t testing.TB, nsPath string, addr netip.AddrPort, extra ...string) *mariadb {
	t.Helper()
	tpl := mariadbTemplate(t)
	dir := serverDir(t, "mariadb")
	data := filepath.Join(dir, "data")
	run(t, "cp", "-a", tpl, data)
	sock := filepath.Join(dir, "mysqld.sock")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + sock,
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--user=root",
		"--bind-address=" + addr.Addr().String(), "--port=" + strconv.Itoa(int(addr.Port())),
		// Never resolve client addresses (no DNS from tests).
		"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=8M",
		"--innodb-log-file-size=4M", "--log-error=" + filepath.Join(dir, "error.log")}, extra...)
	s := startProcess(t, "mariadbd", nsPath, exec.Command("mariadbd", args...), syscall.SIGTERM)
	m := &mariadb{server: s, sock: sock}
	m.addr = addr
	m.dir = dir
	waitTCP(t, s, nsPath, addr)
	m.sql(t, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT SELECT ON *.* TO '%s'@'%%';", dbUser, dbPass, dbUser))
	return m
}

func (m *mariadb) sql(t testing.TB, stmt string) string {
	t.Helper()
	return run(t, "mariadb", "--no-defaults", "-S", m.sock, "-uroot", "-N", "-e", stmt)
}

// --- PostgreSQL ---

func pgBin(t testing.TB, name string) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		t.Fatalf("PostgreSQL %s not found under /usr/lib/postgresql/*/bin (install postgresql, see .ci/packages.txt)", name)
	}
	return m[len(m)-1]
}

// pgUser returns the uid/gid the server must run as: PostgreSQL refuses to
// run as root.
func pgUser(t testing.TB) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("user postgres (created by the postgresql package): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

var (
	pgTplOnce sync.Once
	pgTpl     string
	pgTplErr  string
)

func postgresTemplate(t testing.TB) string {
	t.Helper()
	initdb := pgBin(t, "initdb")
	cred := pgUser(t)
	pgTplOnce.Do(func() {
		d := filepath.Join(templateDir(t), "postgres-template")
		pw := filepath.Join(templateDir(t), "pgpass.txt")
		if err := os.WriteFile(pw, []byte("postgres\n"), 0o644); err != nil {
			pgTplErr = err.Error()
			return
		}
		// initdb runs as postgres: give it an empty directory it owns.
		if err := os.Mkdir(d, 0o700); err != nil {
			pgTplErr = err.Error()
			return
		}
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			pgTplErr = err.Error()
			return
		}
		cmd := exec.Command(initdb, "-D", d, "-U", "postgres", "--pwfile="+pw, "-N",
			"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil {
			pgTplErr = fmt.Sprintf("initdb: %v\n%s", err, out)
			return
		}
		// initdb allows TCP logins from loopback only; the lab's pod is
		// 10.244.1.2.
		hba, err := os.OpenFile(filepath.Join(d, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = hba.WriteString("host all all 0.0.0.0/0 scram-sha-256\n")
			hba.Close()
		}
		if err != nil {
			pgTplErr = err.Error()
			return
		}
		pgTpl = d
	})
	if pgTplErr != "" {
		t.Fatal(pgTplErr)
	}
	return pgTpl
}

type postgres struct {
	*server
	sockDir string
}

// startPostgres starts postgres on addr inside nsPath with role probe/s3cret
// (scram-sha-256 over TCP).
func startPostgres(t testing.TB, nsPath string, addr netip.AddrPort, extra ...string) *postgres {
	t.Helper()
	tpl := postgresTemplate(t)
	cred := pgUser(t)
	dir := serverDir(t, "postgres")
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	run(t, "cp", "-a", tpl, data)
	args := append([]string{"-D", data, "-k", dir, "-h", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())),
		"-c", "fsync=off", "-c", "shared_buffers=8MB", "-c", "log_min_messages=warning"}, extra...)
	cmd := exec.Command(pgBin(t, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	// SIGINT: fast shutdown.
	s := startProcess(t, "postgres", nsPath, cmd, syscall.SIGINT)
	p := &postgres{server: s, sockDir: dir}
	p.addr = addr
	waitTCP(t, s, nsPath, addr)
	// The port opens before recovery ends ("the database system is
	// starting up"): wait until a query works.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := p.trySQL(t, "SELECT 1"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 20s: %v\n%s", err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.sql(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", dbUser, dbPass))
	return p
}

func (p *postgres) sql(t testing.TB, stmt string) string {
	t.Helper()
	out, err := p.trySQL(t, stmt)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *postgres) trySQL(t testing.TB, stmt string) (string, error) {
	t.Helper()
	psql := pgBin(t, "psql")
	cmd := exec.Command(psql, "-h", p.sockDir, "-p", strconv.Itoa(int(p.addr.Port())), "-U", "postgres", "-d", "postgres", "-Atc", stmt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pgUser(t)}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w\n%s", stmt, err, out)
	}
	return string(out), nil
}

// --- Redis ---

// startRedis starts redis-server on addr inside nsPath; pass "" for no
// password.
func startRedis(t testing.TB, nsPath string, addr netip.AddrPort, password string, extra ...string) *server {
	t.Helper()
	need(t, "redis-server")
	dir := serverDir(t, "redis")
	args := []string{"--bind", addr.Addr().String(), "--port", strconv.Itoa(int(addr.Port())),
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "no"}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	args = append(args, extra...)
	s := startProcess(t, "redis-server", nsPath, exec.Command("redis-server", args...), syscall.SIGTERM)
	s.addr = addr
	waitTCP(t, s, nsPath, addr)
	return s
}
