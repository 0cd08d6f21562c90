package configs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/internal/safefile"
)

// MaxConfigSize caps a config file: Load reads regular files only, at most
// this much (a path that is a FIFO or /dev/zero is an error, not a hang or
// an out-of-memory kill).
const MaxConfigSize = 16 << 20

// Load reads, decodes, defaults and validates the file at path; ctx ends
// the read (SIGTERM while the file's file system hangs).
func Load(ctx context.Context, path string) (*Config, error) {
	b, err := safefile.ReadFile(ctx, path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err == nil {
		err = c.readCAFiles(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes b strictly, applies the defaults and validates the result.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var decodeErr error
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, yamlError(err) // not YAML at all: nothing to validate
		}
		// Unknown fields and type errors leave the rest decoded: report
		// them together with every other problem.
		decodeErr = yamlError(err)
	}
	// yaml.v3 reads one document; a second would be silently ignored.
	// Empty ones (a trailing ---) are harmless.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if decodeErr == nil {
				decodeErr = yamlError(err)
			}
			break
		}
		if len(extra.Content) == 1 && extra.Content[0].ShortTag() == "!!null" && extra.Content[0].Value == "" {
			continue
		}
		decodeErr = errors.Join(decodeErr, fmt.Errorf("line %d: a second YAML document: a config is one document (remove the ---, or merge the jobs into one probes list)", extra.Line))
		break
	}
	c.ApplyDefaults()
	if err := errors.Join(decodeErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// yamlError rewrites yaml.v3's messages to name the problem without Go
// type names: "line 7: unknown field "colour"".
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var errs []error
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			errs = append(errs, fmt.Errorf("line %s: unknown field %q", m[1], m[2]))
			continue
		}
		errs = append(errs, errors.New(e))
	}
	return errors.Join(errs...)
}
