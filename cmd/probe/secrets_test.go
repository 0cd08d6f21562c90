package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secret is a password that must never be printed: not in an error, a log
// line, a metric or an HTTP body.
const secret = "s3cret"

func TestRunNeverPrintsThePassword(t *testing.T) {
	for _, target := range []string{
		"postgres://u:" + secret + "@h:99999/x", // port out of range
		"mysql://u:" + secret + "@h:0/x",        // port 0
		"mysql://u:" + secret + "@/x",           // no host
		"redis://u:" + secret + "@h:x%zz",       // unparsable URL
		"gopher://u:" + secret + "@h",           // no default port
	} {
		stdout, stderr, code := probeCmd(t, "run", target)
		if code != exitUsage {
			t.Errorf("probe run %s: exit %d, want %d", target, code, exitUsage)
		}
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("probe run %s printed the password:\n%s%s", target, stdout, stderr)
		}
	}
}

func TestLintAndServeNeverPrintThePassword(t *testing.T) {
	bad := `
probes:
  - name: db
    interval: 1s
    targets: {static: ["postgres://u:` + secret + `@h:99999/x"]}
`
	path := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, path, bad)
	stdout, stderr, code := probeCmd(t, "lint", "--config", path)
	if code != exitUsage || !strings.Contains(stderr+stdout, "xxxxx") {
		t.Errorf("probe lint: exit %d, want %d and the redacted target:\n%s%s", code, exitUsage, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("probe lint printed the password:\n%s%s", stdout, stderr)
	}

	// A running serve with a password-bearing target, then a bad config
	// holding one: neither the metrics, the logs nor a reload answer show it.
	down := closedPort(t)
	rs := startServe(t, `
probes:
  - name: db
    interval: 100ms
    targets: {static: ["mysql://u:`+secret+`@`+down+`/x"]}
`, "")
	rs.waitMetric(t, `connprobe_probe_success{job="db",target="mysql://u:xxxxx@`+down+`/x"} 0`)
	writeFile(t, rs.config, bad)
	rs.hup <- os.Interrupt
	rs.waitMetric(t, "connprobe_config_last_reload_successful 0")
	_, metrics := rs.get(t, "/metrics")
	time.Sleep(100 * time.Millisecond)
	for what, s := range map[string]string{"/metrics": metrics, "the log": rs.logs.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the password:\n%s", what, grepAll(s, secret))
		}
	}
	if !strings.Contains(rs.logs.String(), "xxxxx@h:99999") {
		t.Errorf("the reload failure does not name the redacted target:\n%s", rs.logs.String())
	}
}
