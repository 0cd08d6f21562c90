package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/probe"
)

// File reads targets from files in Prometheus file_sd format, JSON or YAML
// by extension:
//
//	[{"targets": ["10.0.0.1:9092", "kafka-1:9092"], "labels": {"zone": "a"}}]
//
// Files are polled every Refresh (stat only; re-read when size or mtime
// changed), which also catches ConfigMap symlink swaps that inotify misses.
// A file that cannot be read or parsed keeps its previous targets; an entry
// that is not a valid target is logged and skipped. Labels are accepted and
// ignored: the series of a target are keyed by job and target alone.
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
	size    int64
	mtime   time.Time
	targets []probe.Target
	err     error // the last read failed; nil once a read works
}

// Run implements Source.
func (f *File) Run(ctx context.Context, update func([]probe.Target)) error {
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st := f.Health.Start(ctx, f.Job, "file_sd", strings.Join(f.Paths, ","))
	states := make(map[string]*fileState, len(f.Paths))
	var last []probe.Target
	first := true
	t := time.NewTicker(f.Refresh)
	defer t.Stop()
	for {
		changed := false
		var failed error // a file that newly failed on this pass
		for _, p := range f.Paths {
			st := states[p]
			if st == nil {
				st = &fileState{size: -1}
				states[p] = st
			}
			fi, err := os.Stat(p)
			if err != nil {
				if st.targets != nil || st.size != -2 {
					log.Warn("file_sd: cannot read file; its targets are dropped", "file", p, "err", err)
					changed = changed || st.targets != nil
					st.targets, st.size = nil, -2
					st.err = fmt.Errorf("file_sd: %w", err)
					failed = st.err
				}
				continue
			}
			if fi.Size() == st.size && fi.ModTime().Equal(st.mtime) {
				continue
			}
			ts, err := ReadFileSD(p, f.NetNS, log)
			st.size, st.mtime = fi.Size(), fi.ModTime()
			if err != nil {
				log.Warn("file_sd: keeping the previous targets", "file", p, "err", err)
				st.err, failed = err, err
				continue
			}
			st.targets, st.err = ts, nil
			changed = true
		}
		if failed != nil {
			st.Error(failed)
		} else if !slices.ContainsFunc(f.Paths, func(p string) bool { return states[p].err != nil }) {
			st.OK()
		}
		if changed || first {
			var all []probe.Target
			for _, p := range f.Paths {
				all = append(all, states[p].targets...)
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

// fileSDGroup is one entry of a file_sd file.
type fileSDGroup struct {
	Targets []string          `json:"targets" yaml:"targets"`
	Labels  map[string]string `json:"labels" yaml:"labels"`
}

// ReadFileSD parses one file_sd file. Invalid targets are logged and
// skipped; a malformed file is an error.
func ReadFileSD(path, netns string, log *slog.Logger) ([]probe.Target, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("file_sd: %w", err)
	}
	var groups []fileSDGroup
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&groups)
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		err = dec.Decode(&groups)
		if errors.Is(err, io.EOF) {
			err = nil
		}
	default:
		return nil, fmt.Errorf("file_sd %s: want a .json, .yaml or .yml file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("file_sd %s: %w", path, err)
	}
	var out []probe.Target
	for gi, g := range groups {
		for ti, s := range g.Targets {
			t, err := probe.ParseTarget(s)
			if err != nil {
				log.Warn("file_sd: skipping target", "file", path, "entry", fmt.Sprintf("[%d].targets[%d]", gi, ti), "err", err)
				continue
			}
			if t.NetNS == "" {
				t.NetNS = netns
			}
			out = append(out, t)
		}
	}
	return out, nil
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
