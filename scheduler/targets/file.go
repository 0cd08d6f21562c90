package targets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
)

// Size caps of a file_sd file. Parsing YAML costs up to ~150 times the
// file's size in allocations (a flow list of one-letter items), JSON about
// 15 times, hence the smaller cap for YAML: convert a large file to JSON.
const (
	MaxFileSDJSON = 4 << 20
	MaxFileSDYAML = 1 << 20
)

// maxSkipWarnings is how many invalid entries of one file are logged one
// by one on a read; the rest are counted in one line.
const maxSkipWarnings = 10

// File reads targets from files in Prometheus file_sd format, JSON or YAML
// by extension:
//
//	[{"targets": ["10.0.0.1:9092", "kafka-1:9092"], "labels": {"zone": "a"}}]
//
// Each of Paths is a path or a glob (path/filepath.Match syntax, "cm/*.json"
// as in Prometheus), expanded again on every poll so files that appear or
// vanish are followed. Every Refresh each file is read again (regular files
// only, up to MaxFileSDJSON or MaxFileSDYAML) and its content hash compared
// with the last read: a change is seen whatever the file's size and mtime
// (cp -p, rsync -t, tar keep the mtime), and a ConfigMap's "..data" symlink
// swap is followed because the path is resolved anew each time.
//
// A file that cannot be read (not a regular file, too large) or parsed
// keeps its previous targets; a file that is gone, or no longer matched by
// its glob, drops them; an entry that is not a valid target is logged and
// skipped. Labels are accepted and ignored: the series of a target are
// keyed by job and target alone. Repeated warnings are rate-limited.
type File struct {
	Paths   []string
	Refresh time.Duration
	NetNS   string // set on every target (a path), may be empty
	Log     *slog.Logger
	// Health, when set, is told whether the files could be read (as
	// source "file_sd" of Job).
	Health *Health
	Job    string
}

type fileState struct {
	hash    [sha256.Size]byte
	read    bool // hash is set
	targets []probe.Target
	err     error // the last read failed; nil once a read works
}

// Run implements Source.
func (f *File) Run(ctx context.Context, update func([]probe.Target)) error {
	log := newLimitedLog(f.Log)
	health := f.Health.Start(ctx, f.Job, "file_sd", strings.Join(f.Paths, ","))
	states := make(map[string]*fileState)
	var last []probe.Target
	first := true
	t := time.NewTicker(f.Refresh)
	defer t.Stop()
	for {
		files, problems := ExpandFileSD(f.Paths)
		for _, p := range problems {
			log.Warn("file_sd: "+p.Problem, "pattern", p.Pattern)
		}
		changed := false
		var failed error // a file that failed on this pass
		for p, st := range states {
			if !slices.Contains(files, p) {
				delete(states, p) // no longer matched by its glob
				changed = changed || st.targets != nil
			}
		}
		for _, p := range files {
			st := states[p]
			if st == nil {
				st = &fileState{}
				states[p] = st
			}
			b, err := safefile.ReadFile(ctx, p, maxFileSD(p))
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, fs.ErrNotExist):
				if st.targets != nil || st.read {
					log.Warn("file_sd: file gone; its targets are dropped", "file", p)
				}
				changed = changed || st.targets != nil
				newly := st.err == nil // counted once, not every refresh
				*st = fileState{err: fmt.Errorf("file_sd: %w", err)}
				if newly {
					failed = st.err
				}
				continue
			case err != nil:
				log.Warn("file_sd: cannot read file; keeping its previous targets", "file", p, "err", err)
				if st.err == nil {
					failed = fmt.Errorf("file_sd: %w", err)
				}
				st.err = fmt.Errorf("file_sd: %w", err)
				continue
			}
			h := sha256.Sum256(b)
			if st.read && h == st.hash {
				continue
			}
			st.hash, st.read = h, true
			ts, err := ParseFileSD(b, p, f.NetNS, log.log)
			if err != nil {
				log.Warn("file_sd: keeping the previous targets", "file", p, "err", err)
				st.err, failed = err, err
				continue
			}
			st.targets, st.err = ts, nil
			changed = true
		}
		if failed != nil {
			health.Error(failed)
		} else if !slices.ContainsFunc(files, func(p string) bool { st := states[p]; return st != nil && st.err != nil }) {
			health.OK()
		}
		if changed || first {
			var all []probe.Target
			for _, p := range files {
				if st := states[p]; st != nil {
					all = append(all, st.targets...)
				}
			}
			if first || !sameTargets(all, last) {
				update(all)
				last = all
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PatternProblem is a file_sd pattern that yields no file now.
type PatternProblem struct {
	Pattern, Problem string
}

// ExpandFileSD expands file_sd paths and globs into the files they name
// now, in order (a glob's matches sorted), each once. A glob matching
// nothing, or only directories, is a problem; a plain path is returned as
// it is, whether or not it exists (the reader reports it).
func ExpandFileSD(patterns []string) (files []string, problems []PatternProblem) {
	for _, pat := range patterns {
		if !hasMeta(pat) {
			if !slices.Contains(files, pat) {
				files = append(files, pat)
			}
			continue
		}
		matches, err := filepath.Glob(pat)
		if err != nil {
			problems = append(problems, PatternProblem{pat, "bad glob: " + err.Error()})
			continue
		}
		n := 0
		for _, m := range matches {
			if isDir(m) || slices.Contains(files, m) {
				continue // a directory such as a ConfigMap's ..data
			}
			files = append(files, m)
			n++
		}
		if n == 0 && len(matches) == 0 {
			problems = append(problems, PatternProblem{pat, "pattern matches no file"})
		} else if n == 0 {
			problems = append(problems, PatternProblem{pat, "pattern matches no file, only directories or files already listed"})
		}
	}
	return files, problems
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// maxFileSD is the size cap of a file_sd file by its extension.
func maxFileSD(path string) int64 {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return MaxFileSDJSON
	}
	return MaxFileSDYAML
}

// fileSDGroup is one entry of a file_sd file.
type fileSDGroup struct {
	Targets []string          `json:"targets" yaml:"targets"`
	Labels  map[string]string `json:"labels" yaml:"labels"`
}

// ReadFileSD reads (safefile: regular files only, capped by extension) and
// parses one file_sd file.
func ReadFileSD(ctx context.Context, path, netns string, log *slog.Logger) ([]probe.Target, error) {
	b, err := safefile.ReadFile(ctx, path, maxFileSD(path))
	if err != nil {
		return nil, fmt.Errorf("file_sd: %w", err)
	}
	return ParseFileSD(b, path, netns, log)
}

// ParseFileSD parses the content b of the file_sd file path (its extension
// says JSON or YAML). Invalid targets are logged and skipped; a malformed
// file is an error. Its allocations are bounded by a constant times len(b)
// (FuzzParseFileSD): YAML is parsed to a node tree and walked by our own
// code, aliases counted as they expand, never decoded by reflection (whose
// duplicate-key check is quadratic).
func ParseFileSD(b []byte, path, netns string, log *slog.Logger) ([]probe.Target, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var groups []fileSDGroup
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		groups, err = parseFileSDJSON(b)
	case ".yaml", ".yml":
		groups, err = parseFileSDYAML(b)
	default:
		return nil, fmt.Errorf("file_sd %s: want a .json, .yaml or .yml file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("file_sd %s: %w", path, err)
	}
	var out []probe.Target
	skipped := 0
	for gi, g := range groups {
		for ti, s := range g.Targets {
			t, err := probe.ParseTarget(s)
			if err != nil {
				if skipped++; skipped <= maxSkipWarnings {
					log.Warn("file_sd: skipping target", "file", path, "entry", fmt.Sprintf("[%d].targets[%d]", gi, ti), "err", err)
				}
				continue
			}
			if t.NetNS == "" {
				t.NetNS = netns
			}
			out = append(out, t)
		}
	}
	if skipped > maxSkipWarnings {
		log.Warn("file_sd: more invalid targets skipped", "file", path, "count", skipped-maxSkipWarnings)
	}
	return out, nil
}

func parseFileSDJSON(b []byte) ([]fileSDGroup, error) {
	var groups []fileSDGroup
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&groups); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the top-level list")
	}
	return groups, nil
}

func parseFileSDYAML(b []byte) ([]fileSDGroup, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil // empty file: no targets
	} else if err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("line %d: a second YAML document (a file_sd file is one list)", max(extra.Line, 1))
	}
	w := &nodeWalker{budget: len(b) + 4096}
	return w.groups(&doc)
}

// nodeWalker turns a file_sd YAML node tree into groups. budget bounds the
// nodes visited, aliases expanded included: an alias may be used as often
// as the file's size allows, never to multiply it.
type nodeWalker struct {
	budget int
}

func (w *nodeWalker) visit(n *yaml.Node) (*yaml.Node, error) {
	for n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode {
		if w.budget--; w.budget < 0 {
			return nil, errors.New("aliases expand too far")
		}
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return nil, fmt.Errorf("line %d: malformed document", n.Line)
		}
	}
	if w.budget--; w.budget < 0 {
		return nil, errors.New("aliases expand too far")
	}
	return n, nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func (w *nodeWalker) groups(doc *yaml.Node) ([]fileSDGroup, error) {
	n, err := w.visit(doc)
	if err != nil {
		return nil, err
	}
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: want a list of {targets, labels}", n.Line)
	}
	var out []fileSDGroup
	for _, item := range n.Content {
		g, err := w.group(item)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (w *nodeWalker) group(item *yaml.Node) (fileSDGroup, error) {
	var g fileSDGroup
	n, err := w.visit(item)
	if err != nil {
		return g, err
	}
	if isNull(n) {
		return g, nil
	}
	if n.Kind != yaml.MappingNode {
		return g, fmt.Errorf("line %d: want {targets, labels}", n.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := w.visit(n.Content[i])
		if err != nil {
			return g, err
		}
		if k.Kind != yaml.ScalarNode {
			return g, fmt.Errorf("line %d: want a field name", k.Line)
		}
		if seen[k.Value] {
			return g, fmt.Errorf("line %d: field %q given twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		v, err := w.visit(n.Content[i+1])
		if err != nil {
			return g, err
		}
		switch k.Value {
		case "targets":
			if g.Targets, err = w.strings(v); err != nil {
				return g, err
			}
		case "labels":
			if err := w.labels(v); err != nil {
				return g, err
			}
		default:
			return g, fmt.Errorf("line %d: unknown field %q", k.Line, k.Value)
		}
	}
	return g, nil
}

func (w *nodeWalker) strings(n *yaml.Node) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: targets: want a list of host:port", n.Line)
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := w.visit(c)
		if err != nil {
			return nil, err
		}
		if s.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: targets: want host:port, not a list or map", s.Line)
		}
		out = append(out, s.Value)
	}
	return out, nil
}

// labels checks the shape of a labels map (name: value, YAML merge keys
// allowed); the labels are not used.
func (w *nodeWalker) labels(n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.SequenceNode { // the value of a merge key: a list of maps
		for _, c := range n.Content {
			m, err := w.visit(c)
			if err != nil {
				return err
			}
			if err := w.labels(m); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: labels: want a map of name: value", n.Line)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := w.visit(n.Content[i])
		if err != nil {
			return err
		}
		v, err := w.visit(n.Content[i+1])
		if err != nil {
			return err
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			if err := w.labels(v); err != nil {
				return err
			}
			continue
		}
		if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: labels: want name: value", k.Line)
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: label %q given twice", k.Line, k.Value)
		}
		seen[k.Value] = true
	}
	return nil
}

func sameTargets(a, b []probe.Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].NetNS != b[i].NetNS {
			return false
		}
	}
	return true
}
