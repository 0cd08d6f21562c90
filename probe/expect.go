package probe

import (
	"errors"
	"slices"
)

// Expectation is what a job wants of its targets: that they answer (the
// default), or that they are blocked (Fail: a NetworkPolicy or firewall
// rule that must hold).
type Expectation struct {
	// Fail: the targets must NOT answer; an attempt that gets through is
	// the alarm.
	Fail bool
	// Blocked, with Fail, lists the reasons that count as blocked
	// (refused, unreachable, …); empty: every failure-class reason.
	Blocked []Reason
}

// Judge says whether an attempt with result r met the expectation. judged
// is false when r is not a verdict about the target: a prober fault
// (permission, local_error, prober_stalled, …) is neither success nor
// failure, and neither is a probe that panicked when a block is expected.
func (e Expectation) Judge(r *Result) (met, judged bool) {
	if r.Reason.ProberFault() {
		return false, false
	}
	if !e.Fail {
		return r.Success(), true
	}
	if r.Success() || r.Reason.Class() != ClassFailure {
		return false, true // it got through
	}
	if errors.Is(r.Err, ErrPanic) {
		return false, false // our bug, not proof of a block
	}
	return len(e.Blocked) == 0 || slices.Contains(e.Blocked, r.Reason), true
}

// String is "success", "fail", or "fail: refused,unreachable".
func (e Expectation) String() string {
	if !e.Fail {
		return "success"
	}
	if len(e.Blocked) == 0 {
		return "fail"
	}
	s := "fail: "
	for i, r := range e.Blocked {
		if i > 0 {
			s += ","
		}
		s += string(r)
	}
	return s
}
