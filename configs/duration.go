package configs

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a Go duration string ("500ms", "10s", "2m"). A malformed value
// does not stop decoding: it is kept in Err and reported by Validate with
// its path, together with every other problem.
type Duration struct {
	D   time.Duration
	Raw string
	Err error
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	*d = Duration{Raw: n.Value}
	if n.Kind != yaml.ScalarNode {
		d.Err = fmt.Errorf("line %d: want a duration such as 10s", n.Line)
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.Err = fmt.Errorf("%q is not a duration (want e.g. 500ms, 10s, 2m)", n.Value)
		return nil
	}
	d.D = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) {
	if d.Raw != "" && d.D == 0 {
		return d.Raw, nil
	}
	return d.D.String(), nil
}

func (d Duration) set() bool { return d.Raw != "" || d.D != 0 }
