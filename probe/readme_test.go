package probe

import (
	"os"
	"strings"
	"testing"
)

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
