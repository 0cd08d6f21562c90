package configs

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/probe"
)

// Expect is a job's expectation: `expect: success` (the default), `expect:
// fail` (the targets must NOT answer: a NetworkPolicy or firewall rule that
// must block), or `expect: {fail: [refused, unreachable]}`, which counts only
// the listed reasons as blocked. Only verdicts about the network count as
// blocked (failure-class reasons); the prober's own faults (permission,
// local_error, prober_stalled, …) are neither success nor failure.
type Expect struct {
	Fail    bool
	Blocked []string // with Fail: the reasons that count as blocked; empty: every failure reason
	errs    []string // malformed values, reported by Validate with the job's path
}

// UnmarshalYAML implements yaml.Unmarshaler. A malformed value does not stop
// decoding: Validate reports it with every other problem.
func (e *Expect) UnmarshalYAML(n *yaml.Node) error {
	*e = Expect{}
	bad := func(format string, args ...any) { e.errs = append(e.errs, fmt.Sprintf(format, args...)) }
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case ExpectSuccess, "":
		case ExpectFail:
			e.Fail = true
		default:
			bad("expect %q: want %q, %q or {fail: [reasons]}", n.Value, ExpectSuccess, ExpectFail)
		}
	case yaml.MappingNode:
		e.Fail = true
		seen := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value != ExpectFail {
				bad("expect: line %d: unknown field %q (want fail: [reasons])", k.Line, k.Value)
				continue
			}
			seen = true
			if v.Kind != yaml.SequenceNode {
				bad("expect.fail: line %d: want a list of reasons such as [refused, unreachable]", v.Line)
				continue
			}
			if len(v.Content) == 0 {
				bad("expect.fail: the list is empty: name the reasons that count as blocked, or write expect: fail")
			}
			for k, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					bad("expect.fail[%d]: line %d: want a reason", k, it.Line)
					continue
				}
				e.Blocked = append(e.Blocked, it.Value)
			}
		}
		if !seen && len(e.errs) == 0 {
			bad("expect: want fail: [reasons]")
		}
	default:
		bad("expect: line %d: want %q, %q or {fail: [reasons]}", n.Line, ExpectSuccess, ExpectFail)
	}
	return nil
}

// MarshalYAML implements yaml.Marshaler (the job's fingerprint).
func (e Expect) MarshalYAML() (any, error) {
	switch {
	case !e.Fail:
		return ExpectSuccess, nil
	case len(e.Blocked) == 0:
		return ExpectFail, nil
	}
	return map[string][]string{ExpectFail: e.Blocked}, nil
}

// String is "success", "fail" or "fail: refused,unreachable".
func (e Expect) String() string { return e.Expectation().String() }

// Expectation converts a validated Expect.
func (e Expect) Expectation() probe.Expectation {
	x := probe.Expectation{Fail: e.Fail}
	for _, r := range e.Blocked {
		x.Blocked = append(x.Blocked, probe.Reason(r))
	}
	return x
}

// validate reports every problem of e.
func (e Expect) validate(add func(format string, args ...any)) {
	for _, s := range e.errs {
		add("%s", s)
	}
	for i, r := range e.Blocked {
		if err := CheckBlockedReason(r); err != nil {
			add("expect.fail[%d] %q: %v", i, r, err)
		}
	}
}

// CheckBlockedReason checks that r is a reason that can count as blocked:
// a known verdict about the network (class failure).
func CheckBlockedReason(r string) error {
	switch pr := probe.Reason(r); {
	case !pr.Known():
		return fmt.Errorf("not a reason; want one of %s", failureReasons())
	case pr.Class() != probe.ClassFailure:
		return fmt.Errorf("is %s, not a verdict about the network; want one of %s", classWords(pr.Class()), failureReasons())
	}
	return nil
}

func classWords(c probe.Class) string {
	switch c {
	case probe.ClassProber:
		return "the prober's own fault"
	case probe.ClassOK, probe.ClassDegraded:
		return "a success"
	}
	return string(c)
}

func failureReasons() string {
	var rs []string
	for _, d := range probe.Reasons {
		if d.Class == probe.ClassFailure {
			rs = append(rs, string(d.Reason))
		}
	}
	return strings.Join(rs, ", ")
}
