package deploy

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// parser directives dropped, backslash continuations joined.
func parseDockerfile(path string) ([]instruction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(strings.TrimSpace(s) + " ")
			continue
		}
		cur.WriteString(l)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s:%d: continuation at end of file", path, start)
	}
	return out, sc.Err()
}

// makeVar returns the value of `NAME := value` in the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `\s*:?=\s*(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("Makefile: no %s", name)
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	ins, err := parseDockerfile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	bin := makeVar(t, "BIN") // what `make build` writes, e.g. bin/probe
	type stage struct {
		image, name string
		ins         []instruction
	}
	var stages []*stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := &stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("line %d: %s before FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a build stage and a final one", len(stages))
	}
	pinned := regexp.MustCompile(`^[^:@]+(:[0-9][0-9A-Za-z.+-]*)?(@sha256:[0-9a-f]{64})?$`)
	for _, s := range stages {
		if s.image == "scratch" {
			continue
		}
		m := pinned.FindStringSubmatch(s.image)
		if m == nil || (m[1] == "" && m[2] == "") {
			t.Errorf("FROM %s: pin the base image to a version (name:1.2.3) or a digest", s.image)
		}
	}
	build, final := stages[0], stages[len(stages)-1]
	// The build stage runs `make build`, so the image holds what the
	// Makefile builds: static (CGO_ENABLED=0), -trimpath, with the
	// Kubernetes client linked (TAGS=kubernetes: the DaemonSet's config
	// discovers its targets from the API).
	var workdir string
	var makes, k8s bool
	for _, in := range build.ins {
		switch in.cmd {
		case "WORKDIR":
			workdir = in.args
		case "RUN":
			if strings.HasPrefix(in.args, "make build") {
				makes = true
				k8s = k8s || slices.Contains(strings.Fields(in.args), "TAGS=kubernetes")
			}
		}
	}
	if !makes {
		t.Errorf("build stage %q does not RUN make build", build.name)
	} else if !k8s {
		t.Errorf("build stage %q runs make build without TAGS=kubernetes: the image could not discover its targets", build.name)
	}
	mk, _ := os.ReadFile("../Makefile")
	if !strings.Contains(string(mk), "-tags '$(TAGS)'") {
		t.Error("make build does not pass TAGS to go build")
	}
	if !strings.Contains(string(mk), "CGO_ENABLED=0") {
		t.Error("make build does not set CGO_ENABLED=0: the scratch image needs a static binary")
	}
	if final.image != "scratch" && !strings.Contains(final.image, "distroless") {
		t.Errorf("final stage FROM %s: want scratch or distroless", final.image)
	}
	var copied, user, entry string
	for _, in := range final.ins {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && f[0] == "--from="+build.name {
				copied = f[1]
				entry = f[2]
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			if !strings.Contains(in.args, `"`+entry+`"`) {
				t.Errorf("ENTRYPOINT %s does not run the copied %s", in.args, entry)
			}
		}
	}
	if want := strings.TrimSuffix(workdir, "/") + "/" + bin; copied != want {
		t.Errorf("final stage copies %q, want %q (WORKDIR %s + Makefile BIN %s)", copied, want, workdir, bin)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: the image must default to a non-root user", user)
	}
}

func TestParseDockerfile(t *testing.T) {
	path := t.TempDir() + "/Dockerfile"
	os.WriteFile(path, []byte("# syntax=docker/dockerfile:1\nFROM a:1 AS b\n\nRUN x \\\n  y\n# c\ncopy a b\n"), 0o600)
	got, err := parseDockerfile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []instruction{{2, "FROM", "a:1 AS b"}, {4, "RUN", "x y"}, {7, "COPY", "a b"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	os.WriteFile(path, []byte("FROM a \\\n"), 0o600)
	if _, err := parseDockerfile(path); err == nil {
		t.Error("a dangling continuation parsed")
	}
}
