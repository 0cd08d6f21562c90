package configs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("glob examples: %v %v", files, err)
	}
	good, _ := filepath.Glob("testdata/good*.yaml")
	for _, f := range append(files, good...) {
		t.Run(f, func(t *testing.T) {
			c, err := Load(t.Context(), f)
			if err != nil {
				t.Fatalf("Load(%s): %v", f, err)
			}
			if len(c.Probes) == 0 {
				t.Fatalf("Load(%s): no jobs", f)
			}
		})
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"bad-unknown-field.yaml", `line 3: unknown field "colour"`},
		{"bad-unknown-and-timeout.yaml", "line 5: unknown field \"colour\"\n" +
			`probes[0] "web": timeout 5s must be shorter than interval 2s (or set concurrency to overlap attempts)`},
		{"bad-duplicate-job.yaml", `probes[1] "web": duplicate job name (first at probes[0])`},
		{"bad-timeout.yaml", `probes[2] "db": timeout 5s must be shorter than interval 2s (or set concurrency to overlap attempts)`},
		{"bad-syn-rate.yaml", `global: syn_rate 0 must be positive (packets/s for all raw SYNs of the prober; unset: 1000)`},
		{"bad-target.yaml", strings.Join([]string{
			`probes[0] "web": targets.static[0]: target "127.0.0.1": want host:port: missing port in address`,
			`probes[0] "web": targets.static[1]: target "127.0.0.1:http": port "http" is not a number in 1-65535`,
			`probes[0] "web": targets.static[2]: target "[::1]:0": port 0 cannot be probed`,
		}, "\n")},
		{"bad-duration.yaml", strings.Join([]string{
			`global: interval "10 seconds" is not a duration (want e.g. 500ms, 10s, 2m)`,
			`probes[0] "web": interval "5x" is not a duration (want e.g. 500ms, 10s, 2m)`,
		}, "\n")},
		{"bad-vantage.yaml", strings.Join([]string{
			`probes[0] "both": netns and vantage exclude each other (vantage probes from every matching namespace)`,
			`probes[1] "empty": vantage: neither pods, pods_selector nor netns: no namespace to probe from`,
			`probes[1] "empty": vantage.refresh_interval 0s must be positive`,
			`probes[2] "globs": vantage.pods[0] "web-*": want NAMESPACE/NAME (a glob such as shop/web-* or */*)`,
			`probes[2] "globs": vantage.pods[1] "shop/[x": bad glob: syntax error in pattern`,
			`probes[2] "globs": vantage.pods[2]: empty (want a NAMESPACE/NAME glob such as shop/web-*)`,
			`probes[2] "globs": vantage.netns[0] "/run/netns/blue": want a name glob under /run/netns, not a path`,
		}, "\n")},
		{"bad-vantage-selector.yaml", strings.Join([]string{
			`probes[0] "selector": vantage.pods_selector.label_selector "app in (web": unable to parse requirement: found '', expected: ',' or ')'`,
			`probes[0] "selector": vantage.pods_selector.namespaces[1]: empty`,
		}, "\n")},
		{"bad-expect.yaml", strings.Join([]string{
			`probes[0] "deny-ok": expect.fail[1] "ok": is a success, not a verdict about the network; want one of syn_timeout, paws_rejected, refused, unreachable, dns_error, netns_gone, reset, peer_closed, keepalive_timeout, reply_timeout, app_timeout, app_error, stale_session, other`,
			`probes[0] "deny-ok": expect.fail[2] "permission": is the prober's own fault, not a verdict about the network; want one of syn_timeout, paws_rejected, refused, unreachable, dns_error, netns_gone, reset, peer_closed, keepalive_timeout, reply_timeout, app_timeout, app_error, stale_session, other`,
			`probes[0] "deny-ok": expect.fail[3] "nonsense": not a reason; want one of syn_timeout, paws_rejected, refused, unreachable, dns_error, netns_gone, reset, peer_closed, keepalive_timeout, reply_timeout, app_timeout, app_error, stale_session, other`,
			`probes[1] "deny-typo": expect: line 6: unknown field "fial" (want fail: [reasons])`,
			`probes[2] "deny-scalar": expect.fail: line 9: want a list of reasons such as [refused, unreachable]`,
			`probes[3] "deny-empty": expect.fail: the list is empty: name the reasons that count as blocked, or write expect: fail`,
		}, "\n")},
		{"bad-refresh.yaml", strings.Join([]string{
			`probes[0] "files": targets.file_sd.refresh_interval 1ns is below the minimum 1s`,
			`probes[1] "dns": targets.dns[0].refresh_interval 500ms is below the minimum 1s`,
			`probes[1] "dns": targets.dns[1].refresh_interval -1s must be positive`,
			`probes[2] "vantage": vantage.refresh_interval 1ms is below the minimum 1s`,
		}, "\n")},
		{"bad-app-http.yaml", strings.Join([]string{
			`probes[0] "web": app.expect_status[1]: status "6xx": want a code 100-599 (302) or a class 1xx-5xx (2xx)`,
			`probes[0] "web": app.expect_status[2]: status "2x": want a code 100-599 (302) or a class 1xx-5xx (2xx)`,
			`probes[0] "web": app: ca_file and insecure_skip_verify exclude each other (one trusts a CA, the other trusts any certificate)`,
			`probes[0] "web": app.ca_file: targets.static[1] "http://127.0.0.1:8080/" is not an https:// URL`,
			`probes[1] "db": app.expect_status: empty (leave it out for the default: any status below 500)`,
			`probes[1] "db": app.expect_body: targets.static[0] "redis://127.0.0.1:6379" is not an http:// or https:// URL`,
		}, "\n")},
		{"bad-app-ca.yaml", strings.Join([]string{
			`probes[0] "web": app.ca_file: open testdata/no-such-ca.pem: no such file or directory`,
			`probes[1] "api": app.ca_file testdata/bad-app-ca.yaml: no PEM certificate (-----BEGIN CERTIFICATE-----) in its 346 bytes`,
		}, "\n")},
		{"bad-global-timeout.yaml", `global: timeout 5s must be shorter than interval 1s`},
		{"bad-two-documents.yaml", `line 4: a second YAML document: a config is one document (remove the ---, or merge the jobs into one probes list)`},
		{"bad-file-sd.yaml", strings.Join([]string{
			`probes[0] "files": targets.file_sd.files[0] "cm/[x.json": bad glob: syntax error in pattern`,
			`probes[0] "files": targets.file_sd.files[1] "targets.txt": want a .json, .yaml or .yml file (the extension says the format)`,
			`probes[0] "files": targets.file_sd.files[2] "cm/*": want a .json, .yaml or .yml file (the extension says the format)`,
			`probes[0] "files": targets.file_sd.files[3]: empty path`,
		}, "\n")},
		{"bad-slo.yaml", strings.Join([]string{
			`probes[0] "web": slo.objective 1 must be between 0 and 1, exclusive (0.999 allows 0.1 % bad attempts)`,
			`probes[0] "web": slo.latency 2s must be shorter than timeout 2s (no attempt could be slower)`,
			`probes[1] "db": slo.objective 0 must be between 0 and 1, exclusive (0.999 allows 0.1 % bad attempts)`,
			`probes[1] "db": slo.latency -1ms must be positive`,
			`probes[2] "api": slo.objective 99.9 must be between 0 and 1, exclusive (0.999 allows 0.1 % bad attempts)`,
			`probes[2] "api": slo.latency "fast" is not a duration (want e.g. 500ms, 10s, 2m)`,
			`probes[3] "empty": slo: neither objective nor latency (want e.g. slo: {objective: 0.999, latency: 100ms})`,
		}, "\n")},
		{"bad-many.yaml", strings.Join([]string{
			`probes[0]: name is required`,
			`probes[0]: concurrency -1 must be in 1-1000`,
			`probes[0]: expect "maybe": want "success", "fail" or {fail: [reasons]}`,
			`probes[0]: kind "smoke": want one of app, connect, idle, keepalive, syn`,
			`probes[0]: targets: none (want static, file_sd, dns or kubernetes)`,
			`probes[1] "dns": connect.source "nope": not an IP address`,
			`probes[1] "dns": targets.dns[0]: type "MX": want A, AAAA or SRV`,
			`probes[1] "dns": targets.dns[1]: port 0 must be in 1-65535 for type A`,
			`probes[1] "dns": targets.dns[1].server "localhost": want ip:port`,
		}, "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			_, err := Load(t.Context(), path)
			if err == nil {
				t.Fatalf("Load(%s) = nil error, want %q", path, tt.want)
			}
			want := "config " + path + ": " + tt.want
			if got := err.Error(); got != want {
				t.Errorf("Load(%s) error:\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
	// Every bad-*.yaml has a case above.
	bad, _ := filepath.Glob("testdata/bad-*.yaml")
	if len(bad) != len(tests) {
		t.Errorf("%d bad-*.yaml files, %d cases", len(bad), len(tests))
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`
global: {interval: 1s}
probes:
  - name: a
    targets: {static: ["127.0.0.1:1"], dns: [{name: x.test, port: 80}], file_sd: {files: [f.json]}}
  - name: long
    kind: connect
    interval: 10s
    timeout: 55s
    concurrency: 6
    targets: {static: ["127.0.0.1:1"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Probes[0]
	if a.Kind != "connect" || a.Interval.D != time.Second || a.Timeout.D != 800*time.Millisecond ||
		a.Concurrency != 1 || a.Expect.Fail {
		t.Errorf("defaults: got kind %q interval %s timeout %s concurrency %d expect %s",
			a.Kind, a.Interval.D, a.Timeout.D, a.Concurrency, a.Expect)
	}
	if d := a.Targets.DNS[0]; d.Type != "A" || d.RefreshInterval.D != DefaultDNSRefresh {
		t.Errorf("dns defaults: got %+v", d)
	}
	if f := a.Targets.FileSD; f.RefreshInterval.D != DefaultFileSDRefresh {
		t.Errorf("file_sd refresh: got %s", f.RefreshInterval.D)
	}
	if l := c.Probes[1]; l.Timeout.D != 55*time.Second || l.Concurrency != 6 {
		t.Errorf("long job: got timeout %s concurrency %d", l.Timeout.D, l.Concurrency)
	}
	if c.Probes[0].Fingerprint() == c.Probes[1].Fingerprint() {
		t.Error("different jobs share a fingerprint")
	}
}

func TestSLO(t *testing.T) {
	c, err := Parse([]byte(`
probes:
  - name: own
    timeout: 2s
    slo: {objective: 0.99, latency: 100ms}
    targets: {static: ["127.0.0.1:1"]}
  - name: latency-only
    slo: {latency: 1s}
    targets: {static: ["127.0.0.1:1"]}
  - name: default
    targets: {static: ["127.0.0.1:1"]}
  - name: short
    interval: 500ms
    timeout: 400ms
    targets: {static: ["127.0.0.1:1"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		job       string
		objective float64
		latency   time.Duration
	}{
		{"own", 0.99, 100 * time.Millisecond},
		{"latency-only", 0, time.Second},     // the rules' default objective
		{"default", 0, DefaultLatency},       // both defaults
		{"short", 0, 200 * time.Millisecond}, // half the timeout: below the default
	} {
		j := c.Job(tt.job)
		if got := j.ObjectiveRatio(); got != tt.objective {
			t.Errorf("%s: objective %v, want %v", tt.job, got, tt.objective)
		}
		if got := j.LatencyThreshold(); got != tt.latency {
			t.Errorf("%s: latency threshold %s, want %s", tt.job, got, tt.latency)
		}
	}
	if c.Job("own").Fingerprint() == c.Job("default").Fingerprint() {
		t.Error("the slo block is not part of the fingerprint: a reload would keep the old threshold")
	}
}

func TestConcurrencyBound(t *testing.T) {
	_, err := Parse([]byte(`
probes:
  - name: long
    interval: 10s
    timeout: 60s
    concurrency: 6
    targets: {static: ["127.0.0.1:1"]}
`))
	want := `probes[0] "long": timeout 1m0s must be shorter than interval 10s × concurrency 6 = 1m0s`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Parse(b) // must not panic
	})
}

func TestExpect(t *testing.T) {
	c, err := Load(t.Context(), "testdata/good-expect.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range c.Probes {
		got = append(got, j.Expect.String())
	}
	want := []string{"success", "fail", "fail: refused,unreachable"}
	if !slices.Equal(got, want) {
		t.Errorf("expectations %q, want %q", got, want)
	}
	// The list is part of the job's identity: changing it restarts the job.
	fps := map[string]bool{}
	for _, j := range c.Probes[1:] {
		fps[j.Fingerprint()] = true
	}
	if len(fps) != 2 {
		t.Error("expect: fail and expect: {fail: [...]} share a fingerprint")
	}
	if !strings.Contains(c.Probes[2].Fingerprint(), "refused") {
		t.Errorf("fingerprint lacks the reasons:\n%s", c.Probes[2].Fingerprint())
	}
}
