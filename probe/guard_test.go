package probe

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type panicProber struct{ v any }

func (p panicProber) Probe(context.Context) Result {
	var b []byte
	if p.v == nil {
		_ = b[:5][4] // a runtime error, like a library slicing a short packet
	}
	panic(p.v)
}
func (panicProber) Close() error { return nil }

type okProber struct{}

func (okProber) Probe(context.Context) Result { return Result{Reason: ReasonOK} }
func (okProber) Close() error                 { return nil }

func TestSafeProbeRecoversPanic(t *testing.T) {
	for _, tt := range []struct {
		name string
		v    any
		want string
	}{
		{"runtime error", nil, "panic in the probe: runtime error: slice bounds out of range"},
		{"panic with a string", "boom", "panic in the probe: boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := SafeProbe(t.Context(), panicProber{tt.v})
			if r.Reason != ReasonOther || r.Success() {
				t.Errorf("reason %s success %v, want other, false", r.Reason, r.Success())
			}
			if len(r.Evidence) != 1 || !strings.HasPrefix(r.Evidence[0], tt.want) {
				t.Errorf("evidence %q, want %q", r.Evidence, tt.want)
			}
			if strings.Contains(strings.Join(r.Evidence, ""), "goroutine") {
				t.Errorf("evidence %q carries the stack", r.Evidence)
			}
			if !errors.Is(r.Err, ErrPanic) {
				t.Errorf("err %v does not wrap ErrPanic", r.Err)
			}
			if !strings.Contains(r.Err.Error(), "guard_test.go") {
				t.Errorf("err %v lacks the stack for the log", r.Err)
			}
			if r.Start.IsZero() {
				t.Error("start not set")
			}
		})
	}
	if r := SafeProbe(t.Context(), okProber{}); r.Reason != ReasonOK || r.Err != nil {
		t.Errorf("a probe that does not panic: got %s %v", r.Reason, r.Err)
	}
}
