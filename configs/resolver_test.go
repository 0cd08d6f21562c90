package configs

import (
	"strings"
	"testing"
)

// TestResolverOption: global.resolver is every job's unless the job names
// its own; it is part of the job's fingerprint (a reload that changes it
// restarts the job); a name or a bad address is refused with its path.
func TestResolverOption(t *testing.T) {
	c, err := Parse([]byte(`
global: {resolver: 10.96.0.10}
probes:
  - {name: inherits, targets: {static: ["db.shop:5432"]}}
  - {name: own, resolver: "[fd00::a]:5353", targets: {static: ["db.shop:5432"]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Probes[0].DNSResolver().String(); got != "10.96.0.10:53" {
		t.Errorf("inherited resolver %s, want 10.96.0.10:53", got)
	}
	if got := c.Probes[1].DNSResolver().String(); got != "[fd00::a]:5353" {
		t.Errorf("job resolver %s, want [fd00::a]:5353", got)
	}
	c2, err := Parse([]byte(`
global: {resolver: 10.96.0.11}
probes:
  - {name: inherits, targets: {static: ["db.shop:5432"]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Probes[0].Fingerprint() == c2.Probes[0].Fingerprint() {
		t.Error("a changed global.resolver leaves the job's fingerprint alone: a reload would keep the old resolver")
	}
	none, err := Parse([]byte(`probes: [{name: sys, targets: {static: ["db.shop:5432"]}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if r := none.Probes[0].DNSResolver(); r != nil {
		t.Errorf("no resolver set: %s, want the system's (nil)", r)
	}

	_, err = Parse([]byte(`
global: {resolver: dns.internal}
probes:
  - {name: bad, resolver: "10.0.0.1:0", targets: {static: ["db.shop:5432"]}}
`))
	want := []string{
		`global: resolver "dns.internal": want an IP address with an optional port (10.96.0.10, 10.96.0.10:53, [fd00::a]:53), not a name`,
		`probes[0] "bad": resolver "10.0.0.1:0": port 0`,
	}
	if err == nil {
		t.Fatalf("Parse accepted bad resolvers, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nwant a line %q", err, w)
		}
	}
}
