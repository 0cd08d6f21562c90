package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/connprobe/connprobe/internal/lab"
)

var labSeq atomic.Int32

// prefix is a test lab prefix Sweep recognises (cpt<pid>-<hex>).
func prefix() string {
	return fmt.Sprintf("%s%d-%04x", lab.TestPrefix, os.Getpid(), 0xd000+labSeq.Add(1))
}

// TestIncidents replays each incident over IPv4 and IPv6 and checks what
// `probe lab incident NAME` prints: the reason connprobe must give and the
// decisive evidence, and that the lab is gone afterwards.
func TestIncidents(t *testing.T) {
	lab.RequirePriv(t)
	lab.Sweep(t.Context())
	for _, inc := range Incidents {
		for _, v6 := range []bool{false, true} {
			fam := "IPv4"
			if v6 {
				fam = "IPv6"
			}
			t.Run(inc.Name+"/"+fam, func(t *testing.T) {
				t.Parallel()
				p := prefix()
				var out strings.Builder
				err := inc.Run(t.Context(), &out, IncidentOptions{Prefix: p, V6: v6})
				t.Logf("\n%s", out.String())
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				got := out.String()
				if !strings.Contains(got, "connprobe says:    "+string(inc.Want)+"\n") {
					t.Errorf("output does not say %s", inc.Want)
				}
				for _, want := range inc.Decisive {
					if !strings.Contains(got, want) {
						t.Errorf("output lacks the decisive %q", want)
					}
				}
				for _, s := range []string{inc.Title, inc.Seen, inc.Change, inc.Deploy} {
					if strings.Contains(s, "incident") {
						t.Errorf("user-facing text cites an incident: %q", s)
					}
				}
				if left, _ := filepath.Glob("/run/netns/" + p + "*"); len(left) > 0 {
					t.Errorf("namespaces left: %v", left)
				}
			})
		}
	}
}
