package probe

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProbeImportsNoUpperLayer keeps the import direction of README.md's
// "Code layout": the probe packages are the bottom layer, so none of them
// may import, even indirectly, the scheduler, the exporters, the command or
// the config schema.
func TestProbeImportsNoUpperLayer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const mod = "github.com/connprobe/connprobe/"
	// Run from this package's directory: ./... is probe and every package under it.
	out, err := exec.CommandContext(ctx, "go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	upper := []string{"scheduler", "exporters", "cmd", "configs"}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], mod+"probe") {
			t.Fatalf("go list listed %q, want only packages under probe/", line)
		}
		n++
		for _, dep := range f[1:] {
			for _, u := range upper {
				if dep == mod+u || strings.HasPrefix(dep, mod+u+"/") {
					t.Errorf("%s imports %s: probe packages must not import %s/ (README.md, Code layout)", strings.TrimPrefix(f[0], mod), strings.TrimPrefix(dep, mod), u)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list found %d probe packages, want the whole probe/ tree", n)
	}
}
