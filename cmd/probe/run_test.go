package main

import (
	"context"
	"testing"

	"github.com/connprobe/connprobe/internal/testlisten"
)

func TestRunExitStatus(t *testing.T) {
	ln := testlisten.Loopback(t, testlisten.Close)
	closedAddr := testlisten.ClosedAddr(t)

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"all attempts ok", []string{"run", "-c", "2", "-i", "10ms", ln.Addr().String()}, exitOK},
		{"json output", []string{"run", "-o", "json", "tcp://" + ln.Addr().String()}, exitOK},
		{"a refused attempt", []string{"run", ln.Addr().String(), closedAddr}, exitFailed},
		{"no target", []string{"run"}, exitUsage},
		{"unparsable target", []string{"run", "db"}, exitUsage},
		{"port 0", []string{"run", "127.0.0.1:0"}, exitUsage},
		{"negative timeout", []string{"run", "--timeout", "-1s", "127.0.0.1:1"}, exitUsage},
		{"zero interval", []string{"run", "-i", "0s", "127.0.0.1:1"}, exitUsage},
		{"negative count", []string{"run", "-c", "-1", "127.0.0.1:1"}, exitUsage},
		{"unknown namespace", []string{"run", "--netns", "connprobe-no-such-ns", "127.0.0.1:1"}, exitUsage},
		{"bad source", []string{"run", "--source", "nope", "127.0.0.1:1"}, exitUsage},
		{"bad escape", []string{"run", "--send", `\q`, "127.0.0.1:1"}, exitUsage},
		{"bad output", []string{"run", "-o", "xml", "127.0.0.1:1"}, exitUsage},
		{"unknown flag", []string{"run", "--bogus", "127.0.0.1:1"}, exitUsage},
		{"unknown kind", []string{"run", "--kind", "telepathy", "127.0.0.1:1"}, exitUsage},
		{"unknown command", []string{"fly"}, exitUsage},
		{"bad flag value", []string{"run", "-c", "many", "127.0.0.1:1"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(context.Background(), tt.args); got != tt.want {
				t.Errorf("probe %v: exit %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
