package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// healthAddr waits for serve's "serving health" log line and returns the
// address it names.
func (rs *runningServe) healthAddr(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`msg="serving health" address=(\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(rs.logs.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no health listener logged:\n%s", rs.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getPlain(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With --web.config.file requiring basic auth, a kubelet's httpGet probe
// (no credentials) gets 401 on the main listener; the health listener
// answers /healthz and /-/ready without auth, and serves nothing else.
func TestServeHealthListenerWithoutAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(web, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := listen(t).Addr().String()
	rs := startServeWith(t, "probes:\n  - name: web\n    targets: {static: [\""+up+"\"]}\n", func(f *serveFlags) {
		f.webConfig, f.health = web, "127.0.0.1:0"
	})
	for _, p := range []string{"/healthz", "/-/ready"} {
		if code, _ := rs.get(t, p); code != http.StatusUnauthorized {
			t.Errorf("main listener %s without credentials = %d, want 401", p, code)
		}
	}
	h := "http://" + rs.healthAddr(t)
	if code, body := getPlain(t, h+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("health listener /healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := getPlain(t, h+"/-/ready"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
		t.Errorf("health listener /-/ready = %d %q, want 200 ready", code, body)
	}
	for _, p := range []string{"/metrics", "/", "/api/v1/targets", "/-/reload"} {
		if code, _ := getPlain(t, h+p); code != http.StatusNotFound {
			t.Errorf("health listener %s = %d, want 404 (it serves health only)", p, code)
		}
	}
}

func TestServeHealthListenAddressChecked(t *testing.T) {
	for _, tt := range []struct{ health, listen, want string }{
		{"", ":9716", ""},
		{":9717", ":9716", ""},
		{"127.0.0.1:0", "127.0.0.1:0", ""},
		{":9716", ":9716", "same port"},
		{"localhost:9717", ":9716", "not an IP address"},
		{"9717", ":9716", "want [ip]:port"},
	} {
		err := checkHealthListen(tt.health, tt.listen)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkHealthListen(%q, %q) = %v, want %q", tt.health, tt.listen, err, tt.want)
		}
	}
}
