package benchkit

import (
	"strings"
	"testing"
)

func TestLoadVerdict(t *testing.T) {
	if v := LoadVerdict("0.30 0.41 0.34", "0.92 0.50 0.40", 2); v != "" {
		t.Errorf("quiet run marked: %q", v)
	}
	v := LoadVerdict("0.34 0.41 0.34", "2.59 1.21 0.65", 2)
	if !strings.Contains(v, "Not to be trusted") || !strings.Contains(v, "2.59") {
		t.Errorf("loaded run: %q, want it marked with the figure", v)
	}
	if v := LoadVerdict("", "garbage", 2); v != "" {
		t.Errorf("unreadable load marked: %q", v)
	}
}
