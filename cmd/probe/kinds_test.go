package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/connprobe/connprobe/configs"
)

// TestKindsTable: the kinds serve and run build are the kinds a config may
// name, in the same order, and each kind's run flags exist.
func TestKindsTable(t *testing.T) {
	if diff := cmp.Diff(configs.Kinds(), kindNames()); diff != "" {
		t.Errorf("cmd/probe kinds vs configs.Kinds (-configs +cmd):\n%s", diff)
	}
	fl := newRunCmd().Flags()
	for _, n := range kindFlagNames() {
		if fl.Lookup(n) == nil {
			t.Errorf("kinds table names flag --%s, which probe run does not have", n)
		}
	}
	if got, want := (unknownKindError{"ping"}).Error(), `kind "ping": want connect, syn, app, idle or keepalive`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
