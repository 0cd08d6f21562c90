package configs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/safefile"
)

// A config path that is a FIFO, a device or a huge file is an error at
// once: no hang with SIGTERM ignored, no read until the OOM killer.
func TestLoadRefusesNonRegularAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxConfigSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tt := range []struct {
		path string
		want error
		text string
	}{
		{fifo, safefile.ErrNotRegular, "config: " + fifo + " is a FIFO: not a regular file"},
		{zero, safefile.ErrNotRegular, "config: " + zero + " is a character device: not a regular file"},
		{huge, safefile.ErrTooLarge, "config: " + huge + ": file exceeds the size cap of 16 MiB (it has 16777217 bytes)"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		_, err := Load(ctx, tt.path)
		cancel()
		if !errors.Is(err, tt.want) || err.Error() != tt.text {
			t.Errorf("Load(%s) = %v\nwant %s", tt.path, err, tt.text)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Load(%s) took %s", tt.path, took)
		}
	}
	// A canceled ctx (SIGTERM) ends a load.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Load(ctx, "example.yaml"); !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("canceled: %v", err)
	}
}
