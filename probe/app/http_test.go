package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		str    string
	}{
		{"200", 200, 200, "200"},
		{"302", 302, 302, "302"},
		{"2xx", 200, 299, "2xx"},
		{"3XX", 300, 399, "3xx"},
		{" 5xx ", 500, 599, "5xx"},
	} {
		s, err := ParseStatus(tc.in)
		if err != nil || s.Lo != tc.lo || s.Hi != tc.hi || s.String() != tc.str {
			t.Errorf("ParseStatus(%q) = %+v %q, %v; want %d-%d %q", tc.in, s, s.String(), err, tc.lo, tc.hi, tc.str)
		}
	}
	for _, in := range []string{"", "6xx", "0xx", "99", "600", "20x", "2x", "abc", "-200", "+200", "2000"} {
		if s, err := ParseStatus(in); err == nil {
			t.Errorf("ParseStatus(%q) = %+v, want an error", in, s)
		}
	}
}

// httpServer serves the paths the expectation tests probe.
func httpServer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			w.Header().Set("Location", "https://login.example.test/start?next=%2Fhealthz")
			w.WriteHeader(http.StatusFound)
		case "/redirect-nowhere":
			w.WriteHeader(http.StatusMovedPermanently)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("backend pool exhausted"))
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/late-ok":
			// "ok" only after the first 4096 bytes: past what the probe reads.
			_, _ = w.Write([]byte(strings.Repeat("x", 5000) + "ok"))
		case "/huge":
			// Far more than the answer's budget: the probe reads its 4 KiB.
			_, _ = w.Write([]byte("status: ok\n"))
			chunk := []byte(strings.Repeat("y", 64<<10))
			for range 64 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			_, _ = w.Write([]byte("status: ok"))
		}
	})
}

func statuses(t *testing.T, ss ...string) []StatusRange {
	t.Helper()
	var out []StatusRange
	for _, s := range ss {
		r, err := ParseStatus(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestHTTPExpectations(t *testing.T) {
	srv := httptest.NewServer(httpServer())
	defer srv.Close()
	base := Config{Timeout: 5 * time.Second}
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	for _, tc := range []struct {
		name string
		path string
		cfg  Config
		want probe.Reason
		subs []string
		not  []string
	}{
		{"default: a redirect is an answer, and is reported", "/redirect", base, probe.ReasonOK,
			[]string{"HTTP/1.1 302 Found → Location: https://login.example.test/start?next=%2Fhealthz"}, nil},
		{"default: a redirect without Location says so", "/redirect-nowhere", base, probe.ReasonOK,
			[]string{"301 Moved Permanently → no Location header"}, nil},
		{"default: 404 is an answer", "/missing", base, probe.ReasonOK, []string{"404 Not Found"}, nil},
		{"default: 503 fails", "/down", base, probe.ReasonAppError, []string{"503 Service Unavailable: backend pool exhausted"}, nil},
		{"2xx refuses a redirect", "/redirect", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx") }), probe.ReasonAppError,
			[]string{"status 302, expected 2xx", "302 Found → Location: https://login.example.test/"}, nil},
		{"3xx accepts a redirect", "/redirect", with(func(c *Config) { c.ExpectStatus = statuses(t, "3xx") }), probe.ReasonOK,
			[]string{"302 Found → Location: https://login.example.test/"}, nil},
		{"302 accepts it", "/redirect", with(func(c *Config) { c.ExpectStatus = statuses(t, "302") }), probe.ReasonOK, nil, nil},
		{"301 does not", "/redirect", with(func(c *Config) { c.ExpectStatus = statuses(t, "301") }), probe.ReasonAppError,
			[]string{"status 302, expected 301"}, nil},
		{"2xx refuses a 503", "/down", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx") }), probe.ReasonAppError,
			[]string{"status 503, expected 2xx: backend pool exhausted", "HTTP/1.1 503 Service Unavailable (request written"}, nil},
		{"2xx refuses a 404", "/missing", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx") }), probe.ReasonAppError,
			[]string{"status 404, expected 2xx"}, nil},
		{"a list", "/missing", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx", "404") }), probe.ReasonOK, nil, nil},
		{"a list that misses", "/down", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx", "404") }), probe.ReasonAppError,
			[]string{"status 503, expected 2xx or 404"}, nil},
		{"5xx expected (a maintenance page)", "/down", with(func(c *Config) { c.ExpectStatus = statuses(t, "5xx") }), probe.ReasonOK,
			[]string{"503 Service Unavailable"}, nil},
		{"body contains", "/", with(func(c *Config) { c.ExpectBody = "ok" }), probe.ReasonOK,
			[]string{"HTTP/1.1 200 OK", `body contains "ok"`}, nil},
		{"body does not contain", "/", with(func(c *Config) { c.ExpectBody = "healthy" }), probe.ReasonAppError,
			[]string{`body did not contain "healthy" in its first 4096 bytes (10 byte(s) read): status: ok`, "HTTP/1.1 200 OK ("}, nil},
		{"body beyond the first 4096 bytes does not count", "/late-ok", with(func(c *Config) { c.ExpectBody = "ok" }), probe.ReasonAppError,
			[]string{`body did not contain "ok" in its first 4096 bytes (4096 byte(s) read)`}, nil},
		{"a huge body is read up to 4096 bytes", "/huge", with(func(c *Config) { c.ExpectBody = "status: ok" }), probe.ReasonOK,
			[]string{"4096 byte(s) of body"}, nil},
		{"status checked before the body", "/down", with(func(c *Config) { c.ExpectStatus = statuses(t, "2xx"); c.ExpectBody = "pool" }), probe.ReasonAppError,
			[]string{"status 503, expected 2xx"}, []string{"body did not", "body contains"}},
		{"body checked on an expected redirect", "/redirect", with(func(c *Config) { c.ExpectStatus = statuses(t, "3xx"); c.ExpectBody = "ok" }), probe.ReasonAppError,
			[]string{`body did not contain "ok"`, "→ Location:"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probeOnce(t, srv.URL+tc.path, "", tc.cfg)
			check(t, r, tc.want, tc.subs...)
			for _, s := range tc.not {
				if strings.Contains(strings.Join(r.Evidence[1:], "\n"), s) {
					t.Errorf("evidence %q mentions %q", r.Evidence, s)
				}
			}
		})
	}
}

// A hostile Location header is clipped and escaped in the evidence.
func TestHTTPRedirectLocationIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://x/"+strings.Repeat("a", 10000)+"\t\xff")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	r := probeOnce(t, srv.URL+"/", "", Config{Timeout: 5 * time.Second})
	check(t, r, probe.ReasonOK, "307 Temporary Redirect → Location: https://x/aaa")
	for _, e := range r.Evidence {
		if len(e) > 1000 || strings.ContainsAny(e, "\t\xff") {
			t.Errorf("evidence line of %d bytes: %.200q", len(e), e)
		}
	}
}

// writePEM writes der as a PEM CERTIFICATE file and returns its path.
func writePEM(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA is a self-signed CA that signed nothing the test servers use.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "some other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestHTTPSCAFileAndInsecure(t *testing.T) {
	// httptest's TLS server presents a self-signed certificate for 127.0.0.1.
	srv := httptest.NewTLSServer(httpServer())
	defer srv.Close()
	own := writePEM(t, srv.Certificate().Raw)
	other := writePEM(t, otherCA(t))

	pool, err := ReadCAFile(t.Context(), own)
	if err != nil {
		t.Fatal(err)
	}
	r := probeOnce(t, srv.URL+"/", "", Config{Timeout: 5 * time.Second, CAFile: own, RootCAs: pool, ExpectStatus: statuses(t, "2xx"), ExpectBody: "ok"})
	check(t, r, probe.ReasonOK, "TLS 1.3 in", "HTTP/1.1 200 OK")

	pool, err = ReadCAFile(t.Context(), other)
	if err != nil {
		t.Fatal(err)
	}
	r = probeOnce(t, srv.URL+"/", "", Config{Timeout: 5 * time.Second, CAFile: other, RootCAs: pool})
	check(t, r, probe.ReasonAppError, "certificate", "not trusted by ca_file "+other)

	r = probeOnce(t, srv.URL+"/", "", Config{Timeout: 5 * time.Second})
	check(t, r, probe.ReasonAppError, "certificate")

	r = probeOnce(t, srv.URL+"/redirect", "", Config{Timeout: 5 * time.Second, InsecureSkipVerify: true, ExpectStatus: statuses(t, "302")})
	check(t, r, probe.ReasonOK, "302 Found → Location:", "certificate not verified")
}

func TestReadCAFileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	_ = os.WriteFile(notPEM, []byte("hello, not a certificate\n"), 0o600)
	key := filepath.Join(dir, "key.pem")
	_ = os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600)
	broken := filepath.Join(dir, "broken.pem")
	_ = os.WriteFile(broken, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), 0o600)
	big := filepath.Join(dir, "big.pem")
	_ = os.WriteFile(big, make([]byte, MaxCAFile+1), 0o600)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		is         error
	}{
		{filepath.Join(dir, "missing.pem"), "no such file", os.ErrNotExist},
		{notPEM, "no PEM certificate", nil},
		{key, "no PEM certificate", nil},
		{broken, "certificate 1", nil},
		{big, "exceeds the size cap", safefile.ErrTooLarge},
		{fifo, "not a regular file", safefile.ErrNotRegular},
		{dir, "not a regular file", safefile.ErrNotRegular},
	} {
		pool, err := ReadCAFile(t.Context(), tc.path)
		if err == nil || pool != nil {
			t.Errorf("ReadCAFile(%s) = %v, %v; want an error", tc.path, pool, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadCAFile(%s): %v; want the path and %q", tc.path, err, tc.want)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("ReadCAFile(%s): %v is not %v", tc.path, err, tc.is)
		}
	}
}

func TestHTTPOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		target string
		cfg    Config
		want   string
	}{
		{"mysql://127.0.0.1:3306", Config{ExpectStatus: []StatusRange{{200, 299}}}, "expect_status applies to http:// and https:// targets, not mysql://"},
		{"redis://127.0.0.1:6379", Config{ExpectBody: "ok"}, "expect_body applies to http:// and https:// targets, not redis://"},
		{"http://127.0.0.1:80/", Config{CAFile: "/x.pem", RootCAs: x509.NewCertPool()}, "ca_file applies to https:// targets, not http://"},
		{"https://127.0.0.1:443/", Config{CAFile: "/x.pem"}, `ca_file "/x.pem" was not read`},
		{"https://127.0.0.1:443/", Config{ExpectStatus: []StatusRange{{600, 699}}}, "expect_status 600-699"},
		{"https://127.0.0.1:443/", Config{ExpectBody: strings.Repeat("a", 4097)}, "expect_body of 4097 bytes is longer than the 4096 bytes of body the probe reads"},
		{"https://127.0.0.1:443/", Config{CAFile: "/x.pem", RootCAs: x509.NewCertPool(), InsecureSkipVerify: true}, "ca_file and insecure_skip_verify exclude each other"},
	} {
		tg, err := probe.ParseTarget(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(tg, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s, %+v) = %v, want %q", tc.target, tc.cfg, err, tc.want)
		}
	}
}
