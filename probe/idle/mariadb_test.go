package idle_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/idle"
)

// startMariaDB runs a real mariadbd in the lab's db namespace with the given
// wait_timeout and a user probe/pw allowed from anywhere; stopped on cleanup.
func startMariaDB(t *testing.T, l *lab.Lab, waitTimeout string) {
	t.Helper()
	for _, bin := range []string{"mariadb-install-db", "mariadbd", "mariadb"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed (apt-get install mariadb-server mariadb-client): %v", bin, err)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db",
		"--innodb-log-file-size=4M", "--innodb-buffer-pool-size=8M").CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "s.sock")
	cmd := exec.Command("ip", "netns", "exec", l.DB, "mariadbd", "--no-defaults", "--datadir="+data,
		"--socket="+sock, "--pid-file="+filepath.Join(dir, "pid"), "--user=root",
		"--bind-address="+l.DBIP.String(), "--port=3306", "--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=8M", "--innodb-log-file-size=4M", "--log-error="+filepath.Join(dir, "err.log"),
		"--wait-timeout="+waitTimeout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("mariadb", "--no-defaults", "-S", sock, "-uroot", "-e",
			"CREATE USER IF NOT EXISTS 'probe'@'%' IDENTIFIED BY 'pw'").CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadb did not come up: %v: %s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMariaDBWaitTimeout: a logged-in session idle past MariaDB's
// wait_timeout (2s) is ended by the server — MariaDB does it with an RST —
// and reported as peer_closed at ~2s; a shorter idle time is ok.
func TestMariaDBWaitTimeout(t *testing.T) {
	l := lab.New(t)
	startMariaDB(t, l, "2")
	tg, err := probe.ParseTarget("mysql://probe:pw@" + l.DBIP.String() + ":3306")
	if err != nil {
		t.Fatal(err)
	}
	tg.NetNS = l.Path(l.Pod)
	p := newProber(t, tg, idle.Config{Mode: idle.ModePlain, Idle: 4 * time.Second})

	r := p.ProbeIdle(t.Context(), time.Second)
	logResult(t, r)
	if r.Reason != probe.ReasonOK {
		t.Fatalf("1s idle: reason %s, want ok", r.Reason)
	}
	r = p.Probe(t.Context())
	logResult(t, r)
	if r.Reason != probe.ReasonPeerClosed || r.Phase != probe.PhaseIdle {
		t.Fatalf("4s idle: reason %s phase %s, want peer_closed in idle", r.Reason, r.Phase)
	}
	if r.Timings.Idle < 1900*time.Millisecond || r.Timings.Idle > 3*time.Second {
		t.Errorf("closed after %s idle, want ~2s (wait_timeout)", r.Timings.Idle)
	}
	if ev := strings.Join(r.Evidence, "\n"); !strings.Contains(ev, "logged in to mysql as probe") {
		t.Errorf("evidence lacks the login")
	}
}
