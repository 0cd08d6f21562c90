package probe

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// ErrPanic marks the Err of a Result whose probe panicked: SafeProbe turned
// the panic into one failed attempt. Exporters count it as a prober fault.
var ErrPanic = errors.New("panic in the probe")

// SafeProbe runs p.Probe(ctx) and recovers a panic into one failed attempt:
// Reason other, the panic value in the evidence, and an Err that wraps
// ErrPanic and carries the stack for the log. Every caller that runs probes
// goes through it, so no byte a peer sends can take the process down, even
// through a client library that does not check its input.
//
// It recovers panics of the calling goroutine only; a probe that starts
// goroutines of its own must not let them panic.
func SafeProbe(ctx context.Context, p Prober) (res Result) {
	start := time.Now()
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		res = Result{
			Start:    start,
			Duration: time.Since(start),
			Reason:   ReasonOther,
			Evidence: []string{fmt.Sprintf("panic in the probe: %v", v)},
			Err:      fmt.Errorf("probe: %w: %v\n%s", ErrPanic, v, debug.Stack()),
		}
	}()
	return p.Probe(ctx)
}
