//go:build !kubernetes

package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// Without -tags kubernetes, a kubernetes block (a target source or a
// vantage pods_selector) is a clear per-block error, never silently no
// targets; `probe lint` says so too, as it loads a file the way serve would.
func TestKubernetesBlocksNeedTheKubernetesBuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`
probes:
  - name: vips
    targets:
      kubernetes: [{role: service}]
  - name: pods
    targets: {static: ["127.0.0.1:1"]}
    vantage: {pods_selector: {label_selector: app=web}}
`), 0o644)
	_, _, err := loadJobs(t.Context(), path, slog.New(slog.DiscardHandler))
	want := "config " + path + `: probes[0] "vips": targets.kubernetes[0]: ` + errNoKubernetes.Error() + "\n" +
		`probes[1] "pods": vantage.pods_selector: ` + errNoKubernetes.Error()
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if got := run(t.Context(), []string{"lint", "--config", "../../configs/kubernetes.yaml"}); got != exitUsage {
		t.Errorf("lint configs/kubernetes.yaml: exit %d, want %d", got, exitUsage)
	}
}
