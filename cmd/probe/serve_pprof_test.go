package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServePprofOptIn: Go's profiles are served only with
// --web.enable-pprof (they show the process's internals and cost CPU).
func TestServePprofOptIn(t *testing.T) {
	config := "probes:\n  - name: web\n    interval: 1s\n    timeout: 500ms\n    targets:\n      static: [\"127.0.0.1:9\"]\n"
	get := func(addr string) (int, string) {
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(b)
	}
	off := startServeProcess(t, config)
	if code, _ := get(off.addr); code != http.StatusNotFound {
		t.Errorf("without --web.enable-pprof: %d, want 404", code)
	}
	on := startServeProcess(t, config, "--web.enable-pprof")
	if code, body := get(on.addr); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("with --web.enable-pprof: %d %.80q, want 200 and a heap profile", code, body)
	}
}
