package configs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppKind(t *testing.T) {
	c, err := Parse([]byte(`
probes:
  - name: inferred
    targets: {static: ["mysql://probe:secret@10.0.0.5:3306", "https://10.0.0.6:8443/healthz"]}
  - name: block
    app: {source: 10.0.0.1, user_timeout: 2s, insecure_skip_verify: true}
    targets: {file_sd: {files: [apps.json]}}
  - name: mixed
    targets: {static: ["10.0.0.5:3306", "redis://10.0.0.7:6379"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"app", "app", "connect"} {
		if got := c.Probes[i].Kind; got != want {
			t.Errorf("probes[%d] %q: kind %q, want %q", i, c.Probes[i].Name, got, want)
		}
	}
	cfg, err := c.Probes[1].App.Config(c.Probes[1].Timeout.D)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.String() != "10.0.0.1" || cfg.UserTimeout != 2*time.Second || !cfg.InsecureSkipVerify || cfg.Timeout != DefaultTimeout {
		t.Errorf("app.Config = %+v", cfg)
	}
}

func TestAppKindProblems(t *testing.T) {
	_, err := Parse([]byte(`
probes:
  - name: bad
    kind: app
    app: {source: nope, user_timeout: soon}
    targets: {static: ["http://127.0.0.1:80/"]}
  - name: wrong-block
    kind: connect
    app: {}
    targets: {static: ["127.0.0.1:80"]}
`))
	want := strings.Join([]string{
		`probes[0] "bad": app.source "nope": not an IP address`,
		`probes[0] "bad": app.user_timeout: "soon" is not a duration (want e.g. 500ms, 10s, 2m)`,
		`probes[1] "wrong-block": option block "app" does not apply to kind "connect"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestKeepaliveKind(t *testing.T) {
	c, err := Parse([]byte(`
probes:
  - name: ka
    kind: keepalive
    interval: 10s
    timeout: 5s
    keepalive: {idle: 2s, interval: 1s, count: 3, user_timeout: 4s, watch: 2s, source: 10.0.0.1}
    targets: {static: ["10.96.0.10:9092"]}
  - name: ka-defaults
    kind: keepalive
    targets: {static: ["10.96.0.10:9092"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Probes[0].Keepalive.Config(c.Probes[0].Timeout.D)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Idle != 2*time.Second || cfg.Interval != time.Second || cfg.Count != 3 || cfg.UserTimeout != 4*time.Second ||
		cfg.Watch != 2*time.Second || cfg.ConnectTimeout != 5*time.Second || cfg.Source.String() != "10.0.0.1" {
		t.Errorf("keepalive.Config = %+v", cfg)
	}
	d, err := c.Probes[1].Keepalive.Config(c.Probes[1].Timeout.D)
	if err != nil {
		t.Fatal(err)
	}
	if d.ConnectTimeout != DefaultTimeout || d.WithDefaults().Watch != time.Second {
		t.Errorf("defaults: %+v", d)
	}

	_, err = Parse([]byte(`
probes:
  - name: ka
    kind: keepalive
    interval: 10s
    timeout: 2s
    keepalive: {idle: 1500ms, count: 200, watch: 2s, interval: often}
    targets: {static: ["10.96.0.10:9092"]}
`))
	want := strings.Join([]string{
		`probes[0] "ka": keepalive.interval: "often" is not a duration (want e.g. 500ms, 10s, 2m)`,
		`probes[0] "ka": keepalive: idle 1.5s must be whole seconds (the kernel's resolution)`,
		`probes[0] "ka": keepalive: count 200 must be between 1 and 127`,
		`probes[0] "ka": keepalive.watch 2s must be shorter than timeout 2s`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestKernelOptions(t *testing.T) {
	c, err := Parse([]byte("global: {kernel: {netns: [host, blue], stuck_after: 2m}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}]"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Global.Kernel; !k.FromJobs() || k.StuckAfter.D != 2*time.Minute || len(k.NetNS) != 2 {
		t.Errorf("kernel = %+v", k)
	}
	if (&Config{}).Global.Kernel.FromJobs() {
		t.Error("no kernel block exports the jobs' namespaces")
	}
	_, err = Parse([]byte("global: {kernel: {jobs: false, netns: [''], stuck_after: -1s}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}]"))
	want := "global: kernel.netns[0]: empty (want a name under /run/netns, a path, pid:N or host)\nglobal: kernel.stuck_after -1s must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestIdleFindTimeout(t *testing.T) {
	c, err := Parse([]byte(`
probes:
  - name: vip
    kind: idle
    interval: 30s
    timeout: 1m
    concurrency: 3
    idle: {idle: 20s, find_timeout: {max_idle: 10m}}
    targets: {static: ["10.96.0.10:7700"]}
  - name: no-search
    kind: idle
    interval: 30s
    timeout: 1m
    concurrency: 3
    idle: {idle: 20s}
    targets: {static: ["10.96.0.10:7700"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := c.Probes[0].Idle.Config(c.Probes[0].Timeout.D)
	fo, every, ok, err := c.Probes[0].Idle.Search(cfg)
	if err != nil || !ok || every != DefaultFindEvery || fo.MaxIdle != 10*time.Minute || fo.MinIdle != time.Second {
		t.Errorf("Search = %+v, %s, %v, %v", fo, every, ok, err)
	}
	if _, _, ok, err := c.Probes[1].Idle.Search(cfg); ok || err != nil {
		t.Errorf("no find_timeout block: ok %v err %v", ok, err)
	}

	_, err = Parse([]byte(`
probes:
  - name: vip
    kind: idle
    interval: 30s
    timeout: 1m
    concurrency: 3
    idle: {idle: 20s, find_timeout: {every: 10m, max_idle: 20m, min_idle: 30m}}
    targets: {static: ["10.96.0.10:7700"]}
  - name: short
    kind: idle
    interval: 30s
    timeout: 1m
    concurrency: 3
    idle: {idle: 20s, find_timeout: {every: 1m, max_idle: 2m, min_idle: 0s}}
    targets: {static: ["10.96.0.10:7700"]}
`))
	want := strings.Join([]string{
		`probes[0] "vip": idle.find_timeout.min_idle 30m0s must not exceed max_idle 20m0s`,
		`probes[0] "vip": idle.find_timeout.every 10m0s is shorter than one search round can take (20m19s: a connection idle max_idle 20m0s, reply, control connection)`,
		`probes[1] "short": idle.find_timeout.min_idle 0s must be positive`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	_, err = Parse([]byte(`
probes:
  - name: short
    kind: idle
    interval: 30s
    timeout: 1m
    concurrency: 3
    idle: {idle: 20s, find_timeout: {every: 1m, max_idle: 2m}}
    targets: {static: ["10.96.0.10:7700"]}
`))
	want = `probes[0] "short": idle.find_timeout.every 1m0s is shorter than one search round can take (2m19s: a connection idle max_idle 2m0s, reply, control connection)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// writeCA writes a self-signed CA certificate as PEM to dir/name.
func writeCA(t *testing.T, dir, name, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppHTTPOptions(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir, "ca.pem", "test CA")
	path := filepath.Join(dir, "c.yaml")
	doc := `
probes:
  - name: web
    app:
      expect_status: [200, 3xx, "404"]
      expect_body: '"status":"ok"'
      ca_file: ` + ca + `
    targets: {static: ["https://10.0.0.6:8443/healthz"]}
  - name: lb
    app: {insecure_skip_verify: true, expect_status: [2xx]}
    targets: {static: ["https://10.0.0.7/", "http://10.0.0.7/", "mysql://10.0.0.5:3306?tls=true"]}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(t.Context(), path)
	if err == nil {
		t.Fatal("expect_status with a mysql:// target accepted")
	}
	want := `probes[1] "lb": app.expect_status: targets.static[2] "mysql://10.0.0.5:3306?tls=true" is not an http:// or https:// URL`
	if !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
	}
	doc = strings.Replace(doc, `, "mysql://10.0.0.5:3306?tls=true"`, "", 1)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Probes[0].App.Config(c.Probes[0].Timeout.D)
	if err != nil {
		t.Fatal(err)
	}
	if c.Probes[0].Kind != "app" || len(cfg.ExpectStatus) != 3 || cfg.ExpectStatus[1].String() != "3xx" || cfg.ExpectStatus[2].Lo != 404 ||
		cfg.ExpectBody != `"status":"ok"` || cfg.CAFile != ca || cfg.RootCAs == nil || cfg.InsecureSkipVerify {
		t.Errorf("app.Config = %+v", cfg)
	}
	if cfg, _ := c.Probes[1].App.Config(c.Probes[1].Timeout.D); !cfg.InsecureSkipVerify || cfg.RootCAs != nil || cfg.ExpectStatus[0].String() != "2xx" {
		t.Errorf("lb: app.Config = %+v", cfg)
	}

	// A new CA in the same file changes the job's fingerprint: a reload
	// rebuilds the job with the new roots.
	fp := c.Probes[0].Fingerprint()
	if !strings.Contains(fp, "ca_file_sha256:") {
		t.Errorf("fingerprint without the CA digest:\n%s", fp)
	}
	writeCA(t, dir, "ca.pem", "rotated CA")
	c2, err := Load(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Probes[0].Fingerprint() == fp {
		t.Error("fingerprint unchanged after the CA file changed")
	}
	if c2.Probes[1].Fingerprint() != c.Probes[1].Fingerprint() {
		t.Error("fingerprint of a job without ca_file changed")
	}
	// The digest is no YAML key a config may set.
	if _, err := Parse([]byte("probes: [{name: a, app: {ca_file_sha256: x}, targets: {static: ['https://10.0.0.1/']}}]")); err == nil {
		t.Error("ca_file_sha256 accepted in a config")
	}
}
