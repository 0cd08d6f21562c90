package targets

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func targetNames(t *testing.T, b, path string) ([]string, error) {
	t.Helper()
	ts, err := ParseFileSD([]byte(b), path, "", nil)
	var names []string
	for _, x := range ts {
		names = append(names, x.Name)
	}
	return names, err
}

func TestParseFileSD(t *testing.T) {
	tests := []struct {
		name, path, in string
		want           []string
		wantErr        string
	}{
		{"json", "t.json", `[{"targets": ["127.0.0.1:1", "bogus", "[::1]:2"], "labels": {"zone": "a"}}]`, []string{"127.0.0.1:1", "[::1]:2"}, ""},
		{"json null", "t.json", `null`, nil, ""},
		{"json unknown field", "t.json", `[{"targetz": []}]`, nil, `json: unknown field "targetz"`},
		{"json trailing data", "t.json", `[] []`, nil, "data after the top-level list"},
		{"yaml", "t.yml", "- targets: ['127.0.0.1:1']\n  labels: {zone: a}\n- targets:\n  - 127.0.0.1:2\n", []string{"127.0.0.1:1", "127.0.0.1:2"}, ""},
		{"yaml empty", "t.yaml", "", nil, ""},
		{"yaml comments only", "t.yaml", "# nothing yet\n", nil, ""},
		{"yaml anchors", "t.yaml", "- targets: &t ['127.0.0.1:1']\n  labels: &l {zone: a}\n- targets: *t\n  labels: *l\n", []string{"127.0.0.1:1", "127.0.0.1:1"}, ""},
		{"yaml merge key in labels", "t.yaml", "- targets: ['127.0.0.1:1']\n  labels: {<<: {zone: a}, app: x}\n", []string{"127.0.0.1:1"}, ""},
		{"yaml unknown field", "t.yaml", "- targets: []\n  colour: red\n", nil, `line 2: unknown field "colour"`},
		{"yaml field twice", "t.yaml", "- targets: []\n  targets: []\n", nil, `line 2: field "targets" given twice`},
		{"yaml label twice", "t.yaml", "- labels: {a: b, a: c}\n", nil, `line 1: label "a" given twice`},
		{"yaml not a list", "t.yaml", "targets: []\n", nil, "line 1: want a list of {targets, labels}"},
		{"yaml target not a string", "t.yaml", "- targets: [[a]]\n", nil, "line 1: targets: want host:port, not a list or map"},
		{"yaml second document", "t.yaml", "- targets: []\n---\n- targets: ['127.0.0.1:1']\n", nil, "line 2: a second YAML document (a file_sd file is one list)"},
		{"yaml syntax", "t.yaml", "- targets: [\n", nil, "yaml: line 1: did not find expected node content"},
		{"extension", "t.txt", "[]", nil, "file_sd t.txt: want a .json, .yaml or .yml file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := targetNames(t, tt.in, tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slicesEqual(got, tt.want) {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// YAML that reflection-based decoding makes quadratic or explosive is
// parsed in bounded time and memory: thousands of duplicate label keys
// (yaml.v3's duplicate check builds an error per pair: 2 GB for 5000
// keys), and aliases multiplying a list.
func TestParseFileSDPathologicalYAML(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"duplicate label keys", "- labels: {" + strings.Repeat("a: b,", 20000) + "}", `label "a" given twice`},
		{"distinct label keys", "- labels: {" + labelKeys(20000) + "}", ""},
		{"alias bomb", aliasBomb(), "aliases expand too far"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			alloc := allocated(func() {
				_, err := ParseFileSD([]byte(tt.in), "t.yaml", "", nil)
				if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
			})
			if limit := allocBound(len(tt.in)); alloc > limit {
				t.Errorf("allocated %d bytes for %d bytes of input, want at most %d", alloc, len(tt.in), limit)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

func labelKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: v,", i)
	}
	return b.String()
}

// aliasBomb names a list of 1000 targets once and uses it 10000 times:
// ten million targets from 150 kB.
func aliasBomb() string {
	return "- targets: &a [" + strings.TrimSuffix(strings.Repeat("'127.0.0.1:1',", 1000), ",") + "]\n" +
		strings.Repeat("- targets: *a\n", 10000)
}

// allocBound is the allocation budget of ParseFileSD for n bytes of input:
// YAML node trees cost up to ~300 bytes per input byte (deeply nested
// flow lists), plus a fixed slack for the decoders' buffers and the fuzz
// worker's own goroutines.
func allocBound(n int) uint64 { return 400*uint64(n) + 2<<20 }

func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// FuzzParseFileSD: any bytes, JSON or YAML, give targets or an error,
// never a panic, in allocations bounded by allocBound. Seeds are in
// testdata/fuzz/FuzzParseFileSD.
func FuzzParseFileSD(f *testing.F) {
	f.Add([]byte(`[{"targets": ["127.0.0.1:1", "bogus"], "labels": {"zone": "a"}}]`), true)
	f.Add([]byte("- targets: &t ['127.0.0.1:1']\n- targets: *t\n  labels: {a: b}\n"), false)
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		if len(b) > MaxFileSDYAML {
			return // the reader never passes more
		}
		path := "f.yaml"
		if isJSON {
			path = "f.json"
		}
		var err error
		alloc := allocated(func() { _, err = ParseFileSD(b, path, "", nil) })
		if limit := allocBound(len(b)); alloc > limit {
			t.Errorf("allocated %d bytes for %d bytes of input (err %v), want at most %d", alloc, len(b), err, limit)
		}
	})
}
