package probe

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's reasons table from Reasons")

// TestREADMEDocumentsEveryReason keeps the README's reason table true to the
// closed list.
func TestREADMEDocumentsEveryReason(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, d := range Reasons {
		row := "| `" + string(d.Reason) + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README.md: the reasons table has no row %q", row)
		}
	}
}

// TestREADMEReasonTableIsGenerated: the README's reasons table is
// ReasonTable, rendered from Reasons (go test ./probe -run READMEReason
// -update rewrites it).
func TestREADMEReasonTableIsGenerated(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const head = "| reason | success | what happened | what to check next |\n"
	start := strings.Index(readme, head)
	if start < 0 {
		t.Fatalf("README.md: no reasons table (header %q)", head)
	}
	end := start + strings.Index(readme[start:], "\n\n") + 1
	got, want := readme[start:end], ReasonTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's reasons table differs from ReasonTable (run go test ./probe -run READMEReason -update):\ngot:\n%s\nwant:\n%s", got, want)
}
