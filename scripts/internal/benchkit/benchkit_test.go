package benchkit

import (
	"os/exec"
	"strings"
	"testing"
	"time"
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

// TestOthersSeesAnotherProcess: a process of someone else's spinning on a
// CPU through the window is other work of about a core.
func TestOthersSeesAnotherProcess(t *testing.T) {
	if _, err := BusySeconds(); err != nil {
		t.Fatal(err)
	}
	spin := exec.Command("sh", "-c", "while :; do :; done")
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { spin.Process.Kill(); spin.Wait() }()
	others := Others()
	t0 := time.Now()
	time.Sleep(time.Second)
	if got := others(0, time.Since(t0)); got < 0.6 {
		t.Errorf("others %.2f cores while a process spun, want about 1", got)
	}
}
