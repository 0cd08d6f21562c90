//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// newLogger builds the logger of serve and responder from --log.level and
// --log.format. In logfmt, a []string attribute (the problems of a bad
// config) is written one element per line; JSON writes it as an array.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "logfmt", "text":
		return slog.New(listLines{slog.NewTextHandler(w, o)}), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log.format %q: want logfmt or json", format)
}

// listLines is a logfmt handler that writes a record holding a []string
// attribute as one line without it (the list's length in its place), then
// one line per element, instead of a Go slice `problems="[a b c]"` that
// nobody can read when the elements are sentences.
type listLines struct{ slog.Handler }

func (h listLines) Handle(ctx context.Context, r slog.Record) error {
	var lists []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if _, ok := a.Value.Any().([]string); ok && a.Value.Kind() == slog.KindAny {
			lists = append(lists, a)
		}
		return true
	})
	if len(lists) == 0 {
		return h.Handler.Handle(ctx, r)
	}
	head := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if l, ok := a.Value.Any().([]string); ok && a.Value.Kind() == slog.KindAny {
			head.AddAttrs(slog.Int(a.Key, len(l)))
		} else {
			head.AddAttrs(a)
		}
		return true
	})
	if err := h.Handler.Handle(ctx, head); err != nil {
		return err
	}
	for _, a := range lists {
		l := a.Value.Any().([]string)
		for i, s := range l {
			line := slog.NewRecord(r.Time, r.Level, fmt.Sprintf("%s: %s %d of %d", r.Message, a.Key, i+1, len(l)), r.PC)
			line.AddAttrs(slog.String(a.Key, s))
			if err := h.Handler.Handle(ctx, line); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h listLines) WithAttrs(as []slog.Attr) slog.Handler { return listLines{h.Handler.WithAttrs(as)} }
func (h listLines) WithGroup(name string) slog.Handler    { return listLines{h.Handler.WithGroup(name)} }
