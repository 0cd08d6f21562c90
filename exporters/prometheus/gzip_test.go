package prometheus

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/common/expfmt"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

func TestScrapeIsGzippedWhenAccepted(t *testing.T) {
	e := New(Options{Version: "v1", NoRuntimeMetrics: true})
	job := &scheduler.Job{Name: "web", Kind: "connect"}
	for i := range 200 {
		e.Target(job, probe.Target{Name: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)}).Result(okResult())
	}
	e.Targets(job, 200)

	scrape := func(acceptEncoding string) (encoding string, body []byte) {
		t.Helper()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		w := httptest.NewRecorder()
		e.Handler().ServeHTTP(w, req)
		return w.Header().Get("Content-Encoding"), w.Body.Bytes()
	}
	_, plain := scrape("")
	for _, tt := range []struct {
		accept string
		gzip   bool
	}{
		{"gzip", true},
		{"gzip, deflate, br", true}, // what Go's and most clients send
		{"deflate, GZIP;q=0.5", true},
		{"identity", false},
		{"gzip;q=0", false},
		{"gzip; q=0.000", false},
		{"", false},
	} {
		enc, body := scrape(tt.accept)
		if got := enc == "gzip"; got != tt.gzip {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want gzip %v", tt.accept, enc, tt.gzip)
			continue
		}
		if !tt.gzip {
			if string(body) != string(plain) {
				t.Errorf("Accept-Encoding %q: body differs from the plain scrape", tt.accept)
			}
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("Accept-Encoding %q: %v", tt.accept, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: gunzip: %v", tt.accept, err)
		}
		if string(got) != string(plain) {
			t.Errorf("Accept-Encoding %q: gunzipped body differs from the plain scrape", tt.accept)
		}
		if len(body)*4 > len(plain) {
			t.Errorf("Accept-Encoding %q: %d bytes gzipped for %d plain: not compressed", tt.accept, len(body), len(plain))
		}
	}
}

// BenchmarkScrape10k renders /metrics for 10,000 targets, as text and
// delimited protobuf, each plain and gzipped, and reports the bytes sent per
// scrape (BENCHMARKS.md). client_golang-protobuf is the path protobuf
// scrapes took before WriteProto (promhttp over Gather), for comparison.
func BenchmarkScrape10k(b *testing.B) {
	e := New(Options{Version: "v1", NoRuntimeMetrics: true})
	job := &scheduler.Job{Name: "web", Kind: "connect"}
	for i := range 10000 {
		e.Target(job, probe.Target{Name: fmt.Sprintf("10.%d.%d.%d:8080", i/62500, i/250%250, i%250)}).Result(okResult())
	}
	e.Targets(job, 10000)
	proto := string(expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, c := range []struct {
		name, accept, enc string
		h                 http.Handler
	}{
		{"text", "", "identity", e.Handler()},
		{"text-gzip", "", "gzip", e.Handler()},
		{"protobuf", proto, "identity", e.Handler()},
		{"protobuf-gzip", proto, "gzip", e.Handler()},
		{"client_golang-protobuf-gzip", proto, "gzip", e.handler},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				req := httptest.NewRequest("GET", "/metrics", nil)
				req.Header.Set("Accept-Encoding", c.enc)
				if c.accept != "" {
					req.Header.Set("Accept", c.accept)
				}
				w := &countingWriter{h: make(map[string][]string)}
				c.h.ServeHTTP(w, req)
				n = w.n
			}
			b.ReportMetric(float64(n), "bytes/scrape")
		})
	}
}

// countingWriter is a ResponseWriter that keeps only the byte count.
type countingWriter struct {
	h http.Header
	n int
}

func (w *countingWriter) Header() http.Header         { return w.h }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func TestBuildInfoRevision(t *testing.T) {
	e := New(Options{Version: "v9", Revision: "0123abcd", NoRuntimeMetrics: true})
	w := httptest.NewRecorder()
	e.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if want := `connprobe_build_info{goversion="`; !bytes.Contains(w.Body.Bytes(), []byte(want)) ||
		!bytes.Contains(w.Body.Bytes(), []byte(`revision="0123abcd",version="v9"} 1`)) {
		t.Errorf("build_info does not carry the revision:\n%s", grepText(w.Body.String(), "build_info"))
	}
}

func grepText(s, sub string) string {
	var out []string
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if bytes.Contains(l, []byte(sub)) {
			out = append(out, string(l))
		}
	}
	return fmt.Sprint(out)
}
