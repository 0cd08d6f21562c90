package main

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
)

// noNetRaw is the argv prefix that runs a command without CAP_NET_RAW (see
// probeCmdNoNetRaw).
func noNetRaw(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop CAP_NET_RAW: %v", err)
	}
	return []string{"/usr/bin/setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--"}
}

// TestServeWithoutNetRaw: `probe serve` without CAP_NET_RAW says so at start,
// once per SYN job, naming the capability and where deploy/ grants it;
// /-/ready is 503 with the reasons; the SYN jobs' attempts are prober faults
// (cause permission) that move no results, failures or success series — not
// even for an expect: fail job, which must not read "blocked as expected".
// A reload to a config without SYN jobs makes it ready.
func TestServeWithoutNetRaw(t *testing.T) {
	lab.RequirePriv(t)
	up := listen(t).Addr().String()
	down := closedPort(t)
	config := `
probes:
  - name: web
    interval: 100ms
    targets: {static: ["` + up + `"]}
  - name: syn-web
    kind: syn
    interval: 100ms
    timeout: 80ms
    targets: {static: ["` + up + `"]}
  - name: syn-deny
    kind: syn
    expect: fail
    interval: 100ms
    timeout: 80ms
    targets: {static: ["` + down + `"]}
`
	sp := startServeProcessIn(t, config, noNetRaw(t), "--web.enable-lifecycle")
	body := sp.waitForMetric(t, "permission faults of both syn jobs", time.Minute, func(b string) bool {
		return sumMetric(b, "connprobe_prober_faults_total", `job="syn-web"`, `cause="permission"`) >= 3 &&
			sumMetric(b, "connprobe_prober_faults_total", `job="syn-deny"`, `cause="permission"`) >= 3 &&
			sumMetric(b, "connprobe_probe_success", `job="web"`) == 1
	})
	for _, j := range []string{"syn-web", "syn-deny"} {
		sel := `job="` + j + `"`
		if f := sumMetric(body, "connprobe_probe_failures_total", sel); f != 0 {
			t.Errorf("%s: %v target failures for the prober's missing capability", j, f)
		}
		if n := sumMetric(body, "connprobe_probe_results_total", sel); n != 0 {
			t.Errorf("%s: %v results counted for attempts that could not be made", j, n)
		}
		if strings.Contains(body, `connprobe_probe_success{`+sel) {
			t.Errorf("%s: a success series without a single verdict:\n%s", j, grepLines(body, sel))
		}
	}
	if strings.Contains(body, `reason="permission"`) {
		t.Error(`reason="permission" is exported as a result: it is a prober fault`)
	}

	code, ready := sp.get(t, "/-/ready")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready = %d, want 503", code)
	}
	for _, want := range []string{"not ready: 2 job(s) cannot run", `probes[1] "syn-web"`, `probes[2] "syn-deny"`, "CAP_NET_RAW", "deploy/daemonset.yaml"} {
		if !strings.Contains(ready, want) {
			t.Errorf("/-/ready body lacks %q:\n%s", want, ready)
		}
	}
	if strings.Contains(ready, `"web"`) && !strings.Contains(ready, `"syn-web"`) {
		t.Errorf("/-/ready names the connect job:\n%s", ready)
	}
	logs := sp.logs.String()
	if n := strings.Count(logs, "msg=\"job cannot run"); n != 2 {
		t.Errorf("%d 'job cannot run' warnings at start, want one per SYN job", n)
	}
	for _, j := range []string{`probes[1] \"syn-web\"`, `probes[2] \"syn-deny\"`} {
		line := ""
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, j) {
				line = l
			}
		}
		if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "capability=CAP_NET_RAW") || !strings.Contains(line, "deploy/daemonset.yaml") {
			t.Errorf("no warning for %s naming CAP_NET_RAW and deploy/: %q", j, line)
		}
	}

	// Without the SYN jobs every job can run: ready.
	if err := os.WriteFile(sp.config, []byte("probes:\n  - name: web\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+sp.addr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := sp.get(t, "/-/ready"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("after a reload without SYN jobs: /-/ready = %d %q, want 200 ready", code, body)
	}
}

// TestServeReadyWithCapabilities: the same SYN jobs with CAP_NET_RAW are
// ready and probe (the control for TestServeWithoutNetRaw).
func TestServeReadyWithCapabilities(t *testing.T) {
	lab.RequirePriv(t)
	up := listen(t).Addr().String()
	rs := startServe(t, "probes:\n  - name: syn-web\n    kind: syn\n    interval: 100ms\n    timeout: 80ms\n    targets: {static: [\""+up+"\"]}\n", "")
	if code, body := rs.get(t, "/-/ready"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/-/ready = %d %q, want 200 ready", code, body)
	}
	rs.waitMetric(t, `connprobe_probe_success{job="syn-web",target="`+up+`"} 1`)
	if strings.Contains(rs.logs.String(), "job cannot run") {
		t.Errorf("a preflight warning with every capability:\n%s", rs.logs.String())
	}
}

// TestServeExpectFailIgnoresProberFaults: an expect: fail job whose attempts
// the prober cannot make (a source address not configured here: local_error)
// does not read "blocked as expected": no success, no failure, faults with
// cause local_resource. A job that lists the reasons that count as blocked
// fails on any other reason.
func TestServeExpectFailIgnoresProberFaults(t *testing.T) {
	down := closedPort(t)
	rs := startServe(t, `
probes:
  - name: deny-local-error
    expect: fail
    interval: 100ms
    connect: {source: 192.0.2.1}
    targets: {static: ["`+down+`"]}
  - name: deny-unreachable
    expect: {fail: [unreachable, syn_timeout]}
    interval: 100ms
    targets: {static: ["`+down+`"]}
  - name: deny-refused
    expect: {fail: [refused]}
    interval: 100ms
    targets: {static: ["`+down+`"]}
`, "")
	rs.waitMetric(t, `connprobe_probe_success{job="deny-refused",target="`+down+`"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="deny-unreachable",target="`+down+`"} 0`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body := rs.get(t, "/metrics")
		if sumMetric(body, "connprobe_prober_faults_total", `job="deny-local-error"`, `cause="local_resource"`) >= 3 {
			if strings.Contains(body, `connprobe_probe_success{job="deny-local-error"`) {
				t.Errorf("local_error read as blocked as expected:\n%s", grepLines(body, "deny-local-error"))
			}
			if f := sumMetric(body, "connprobe_probe_failures_total", `job="deny-local-error"`); f != 0 {
				t.Errorf("%v failures for the prober's own local_error", f)
			}
			if f := sumMetric(body, "connprobe_probe_failures_total", `job="deny-refused"`); f != 0 {
				t.Errorf("deny-refused: %v failures though every attempt was refused", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local_resource faults:\n%s", grepLines(body, "deny-local-error"))
		}
	}
}
