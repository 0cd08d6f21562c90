package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/connprobe/connprobe/configs"
)

// Readiness waits for every source a job's config names: one per dns
// entry, one for file_sd; a static-only job has none.
func TestDiscoverySources(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	cfg := `probes:
  - name: mixed
    kind: connect
    targets:
      static: ["127.0.0.1:1"]
      file_sd: {files: ["/nonexistent/a.json"]}
      dns:
        - {name: a.example.test., type: A, port: 80}
        - {name: _x._tcp.example.test., type: SRV}
  - name: static
    kind: connect
    targets:
      static: ["127.0.0.1:2"]
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := configs.Load(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"mixed": 3}, discoverySources(c)); diff != "" {
		t.Errorf("discoverySources (-want +got):\n%s", diff)
	}
}
