package testguard_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testguard"
)

// TestTrapCatchesSystemResolver runs each way of reaching the system
// resolver in a child process of this test binary and checks that the
// guard kills it with its message before any query leaves.
func TestTrapCatchesSystemResolver(t *testing.T) {
	if how := os.Getenv("TESTGUARD_CHILD"); how != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		switch how {
		case "lookup":
			_, _ = net.LookupHost("nope.connprobe.invalid")
		case "dial":
			_, _ = net.DialTimeout("tcp", "nope.connprobe.invalid:80", time.Second)
		case "http":
			_, _ = http.Get("http://nope.connprobe.invalid/")
		case "resolver":
			_, _ = net.DefaultResolver.LookupNetIP(ctx, "ip", "nope.connprobe.invalid")
		}
		os.Exit(0) // not reached when the guard works
	}
	for _, how := range []string{"lookup", "dial", "http", "resolver"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTrapCatchesSystemResolver$")
			cmd.Env = append(os.Environ(), "TESTGUARD_CHILD="+how)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), testguard.Message) {
				t.Fatalf("child exited with %v, want a panic %q; output:\n%s", err, testguard.Message, out)
			}
		})
	}
}

// TestHostsFileStillWorks: localhost comes from /etc/hosts, not from a
// DNS server, so tests that listen on "localhost" keep working.
func TestHostsFileStillWorks(t *testing.T) {
	if _, err := os.Stat("/etc/hosts"); err != nil {
		t.Skip("no /etc/hosts on this machine")
	}
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatalf("listen on localhost: %v", err)
	}
	ln.Close()
}

// forbidden are the package net identifiers that reach the system
// resolver when given a name.
var forbidden = map[string]string{
	"DefaultResolver": "the system resolver: use *probe.Resolver (nil is the system's, read in probe/resolve.go only)",
	"LookupHost":      "a system-resolver lookup",
	"LookupIP":        "a system-resolver lookup",
	"LookupAddr":      "a system-resolver lookup",
	"LookupCNAME":     "a system-resolver lookup",
	"LookupSRV":       "a system-resolver lookup",
	"LookupMX":        "a system-resolver lookup",
	"LookupNS":        "a system-resolver lookup",
	"LookupTXT":       "a system-resolver lookup",
	"LookupPort":      "a system-resolver lookup",
	"ResolveTCPAddr":  "a system-resolver lookup when given a name",
	"ResolveUDPAddr":  "a system-resolver lookup when given a name",
	"ResolveIPAddr":   "a system-resolver lookup when given a name",
}

// allowed are the files that may use a forbidden identifier or build a
// net.Resolver: the one Resolver of the code, the pod's stub resolver
// (each of its net.Resolvers dials one server of the pod's resolv.conf,
// never the machine's), the lab's fake DNS client (its Dial goes to its own
// loopback server), and the guard itself.
var allowed = map[string]bool{
	"probe/resolve.go":                true,
	"probe/resolvconf.go":             true,
	"internal/lab/dns.go":             true,
	"internal/testguard/testguard.go": true,
}

// TestNoSystemResolverInSource checks every non-test Go file of the module:
// no reference to net.DefaultResolver or the package-level lookups, and no
// net.Resolver literal, outside the allowed files. Together with the run
// time trap this covers what the trap cannot see: code no test runs, and a
// net.Resolver of its own that would read /etc/resolv.conf.
func TestNoSystemResolverInSource(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		netName := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "net" {
				netName = "net"
				if imp.Name != nil {
					netName = imp.Name.Name
				}
			}
		}
		if netName == "" || allowed[rel] {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != netName {
				return true
			}
			if why, bad := forbidden[sel.Sel.Name]; bad {
				t.Errorf("%s: net.%s: %s", fset.Position(sel.Pos()), sel.Sel.Name, why)
			}
			if sel.Sel.Name == "Resolver" {
				t.Errorf("%s: net.Resolver: build resolvers with probe.NewResolver (probe/resolve.go), so none reads /etc/resolv.conf's servers", fset.Position(sel.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s: wrong root?", checked, root)
	}
}

// TestEveryTestedPackageIsGuarded: each directory with tests has a test
// file that imports this package, so the trap is armed in every test
// binary (a new package cannot forget it).
func TestEveryTestedPackageIsGuarded(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	tested := map[string]bool{}  // dir → has tests
	guarded := map[string]bool{} // dir → a test file imports testguard
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.Dir(path)
		tested[dir] = true
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/connprobe/connprobe/internal/testguard" {
				guarded[dir] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range tested {
		if !guarded[dir] {
			rel, _ := filepath.Rel(root, dir)
			t.Errorf("%s has tests but none imports internal/testguard: add resolverguard_test.go (see internal/testguard)", rel)
		}
	}
}
