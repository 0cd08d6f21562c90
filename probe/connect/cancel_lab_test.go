package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

// TestLabAttemptEnds checks the three ways a handshake that gets no answer
// (SYNs dropped) ends: the config's timeout, the caller's deadline, and the
// caller's cancel. The socket, not a goroutine, holds the deadline, so each
// must still end on time and read as before: a ctx error under the op name.
func TestLabAttemptEnds(t *testing.T) {
	t.Parallel()
	lab.RequirePriv(t)
	l := lab.New(t)
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop}); err != nil {
		t.Fatal(err)
	}
	target := l.DBIP.String() + ":3306"
	tests := []struct {
		name    string
		timeout time.Duration // Config.Timeout
		ctx     func() (context.Context, context.CancelFunc)
		reason  probe.Reason
		err     string
		within  time.Duration // the attempt ends after about this long
	}{
		{
			name:    "config timeout",
			timeout: 400 * time.Millisecond,
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) },
			reason:  probe.ReasonSynTimeout,
			err:     "connect: context deadline exceeded",
			within:  400 * time.Millisecond,
		},
		{
			name:    "caller deadline",
			timeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), 400*time.Millisecond)
			},
			reason: probe.ReasonSynTimeout,
			err:    "connect: context deadline exceeded",
			within: 400 * time.Millisecond,
		},
		{
			name:    "caller cancel",
			timeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(400*time.Millisecond, cancel)
				return ctx, cancel
			},
			reason: probe.ReasonCanceled,
			err:    "connect: context canceled",
			within: 400 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := podProber(t, l, target, connect.Config{Timeout: tt.timeout})
			ctx, cancel := tt.ctx()
			defer cancel()
			r := p.Probe(ctx)
			if r.Reason != tt.reason || r.Success() {
				t.Fatalf("reason %s success %v, want %s; evidence %q, err %v", r.Reason, r.Success(), tt.reason, r.Evidence, r.Err)
			}
			if r.Err == nil || r.Err.Error() != tt.err {
				t.Errorf("err %v, want %q", r.Err, tt.err)
			}
			if tt.reason == probe.ReasonCanceled && !errors.Is(r.Err, context.Canceled) {
				t.Errorf("err %v does not wrap context.Canceled", r.Err)
			}
			if r.Duration < tt.within-50*time.Millisecond || r.Duration > tt.within+time.Second {
				t.Errorf("attempt took %s, want about %s", r.Duration, tt.within)
			}
		})
	}
}
