package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestProblemsOnePerLine(t *testing.T) {
	problems := []string{`probes[0] "web": timeout 5s must be shorter than interval 2s`, `probes[1] "db": targets: none`}
	var text bytes.Buffer
	log, err := newLogger("info", "logfmt", &text)
	if err != nil {
		t.Fatal(err)
	}
	log.Error("reload failed; the previous config keeps running", "file", "c.yaml", "problems", problems)
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("logfmt: %d lines, want a head and one per problem:\n%s", len(lines), text.String())
	}
	if !strings.Contains(lines[0], "file=c.yaml problems=2") || strings.Contains(text.String(), "[probes") {
		t.Errorf("head line %q: want the problem count, never a Go slice", lines[0])
	}
	for i, p := range problems {
		if !strings.Contains(lines[i+1], "problems "+string(rune('1'+i))+" of 2") || !strings.Contains(lines[i+1], strings.ReplaceAll(p, `"`, `\"`)) {
			t.Errorf("line %d = %q, want problem %d: %q", i+1, lines[i+1], i+1, p)
		}
	}

	var js bytes.Buffer
	log, _ = newLogger("info", "json", &js)
	log.Error("reload failed; the previous config keeps running", "problems", problems)
	var rec struct{ Problems []string }
	if err := json.Unmarshal(js.Bytes(), &rec); err != nil || len(rec.Problems) != 2 {
		t.Errorf("json: %v %q, want one record with an array of 2", err, js.String())
	}
}

func TestResponderLogFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"responder", "--log.level", "loud", "--listen", "127.0.0.1:0"}, exitUsage},
		{[]string{"responder", "--log.format", "xml", "--listen", "127.0.0.1:0"}, exitUsage},
		{[]string{"responder", "--log-level", "loud", "--listen", "127.0.0.1:0"}, exitUsage}, // the old spelling still works
	} {
		if _, stderr, code := probeCmd(t, tt.args...); code != tt.want {
			t.Errorf("probe %v: exit %d, want %d: %s", tt.args, code, tt.want, stderr)
		}
	}
}
