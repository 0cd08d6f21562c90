package probe

import (
	"fmt"
	"testing"
)

func TestExpectationJudge(t *testing.T) {
	res := func(r Reason) *Result { return &Result{Reason: r} }
	panicked := &Result{Reason: ReasonOther, Err: fmt.Errorf("connect: %w", ErrPanic)}
	success := Expectation{}
	fail := Expectation{Fail: true}
	refusedOnly := Expectation{Fail: true, Blocked: []Reason{ReasonRefused, ReasonUnreachable}}
	for _, tt := range []struct {
		name        string
		e           Expectation
		r           *Result
		met, judged bool
	}{
		{"success: ok", success, res(ReasonOK), true, true},
		{"success: degraded ok", success, res(ReasonSynRetransmitted), true, true},
		{"success: refused", success, res(ReasonRefused), false, true},
		{"success: permission is the prober's", success, res(ReasonPermission), false, false},
		{"success: stalled is the prober's", success, res(ReasonProberStalled), false, false},
		{"success: a panic is a failure", success, panicked, false, true},
		{"fail: refused is blocked", fail, res(ReasonRefused), true, true},
		{"fail: syn_timeout is blocked", fail, res(ReasonSynTimeout), true, true},
		{"fail: ok got through", fail, res(ReasonOK), false, true},
		{"fail: degraded got through", fail, res(ReasonSynRetransmitted), false, true},
		{"fail: local_error is not a block", fail, res(ReasonLocalError), false, false},
		{"fail: permission is not a block", fail, res(ReasonPermission), false, false},
		{"fail: budget is not a block", fail, res(ReasonProberBudget), false, false},
		{"fail: stalled is not a block", fail, res(ReasonProberStalled), false, false},
		{"fail: canceled is not a block", fail, res(ReasonCanceled), false, false},
		{"fail: a panic is not a block", fail, panicked, false, false},
		{"fail list: refused", refusedOnly, res(ReasonRefused), true, true},
		{"fail list: unreachable", refusedOnly, res(ReasonUnreachable), true, true},
		{"fail list: syn_timeout is not the block asked for", refusedOnly, res(ReasonSynTimeout), false, true},
		{"fail list: permission", refusedOnly, res(ReasonPermission), false, false},
	} {
		met, judged := tt.e.Judge(tt.r)
		if met != tt.met || judged != tt.judged {
			t.Errorf("%s: got met=%v judged=%v, want met=%v judged=%v", tt.name, met, judged, tt.met, tt.judged)
		}
	}
	if got := refusedOnly.String(); got != "fail: refused,unreachable" {
		t.Errorf("String() = %q", got)
	}
}
