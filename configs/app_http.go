package configs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
)

// caFile is an app block's ca_file as Load read it: the pool for
// app.Config.RootCAs and the digest of the file, which goes into the job's
// Fingerprint so a reload after the CA file changed rebuilds the job.
type caFile struct {
	roots  *x509.CertPool
	sha256 string
}

// httpConfig converts the block's http(s):// options into cfg.
func (o *AppOptions) httpConfig(cfg *app.Config, errs []error) []error {
	for i, s := range o.ExpectStatus {
		r, err := app.ParseStatus(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("app.expect_status[%d]: %w", i, err))
			continue
		}
		cfg.ExpectStatus = append(cfg.ExpectStatus, r)
	}
	if o.ExpectStatus != nil && len(o.ExpectStatus) == 0 {
		errs = append(errs, errors.New("app.expect_status: empty (leave it out for the default: any status below 500)"))
	}
	cfg.ExpectBody = o.ExpectBody
	cfg.CAFile = o.CAFile
	cfg.RootCAs = o.ca.roots
	return errs
}

// checkStatic reports the static targets that the block's http(s)://-only
// options do not apply to (a discovered target is refused when its prober
// is built).
func (o *AppOptions) checkStatic(static []string, add func(format string, args ...any)) {
	if o == nil {
		return
	}
	for k, s := range static {
		t, err := probe.ParseTarget(s)
		if err != nil {
			continue // reported with the targets
		}
		var n []string
		if t.Scheme != "http" && t.Scheme != "https" {
			if len(o.ExpectStatus) > 0 {
				n = append(n, "expect_status")
			}
			if o.ExpectBody != "" {
				n = append(n, "expect_body")
			}
		}
		if o.CAFile != "" && t.Scheme != "https" {
			n = append(n, "ca_file")
		}
		if len(n) > 0 {
			add("app.%s: targets.static[%d] %q is not an %s URL", strings.Join(n, ", "), k, t.Name, want(n))
		}
	}
}

func want(n []string) string {
	if len(n) == 1 && n[0] == "ca_file" {
		return "https://"
	}
	return "http:// or https://"
}

// readCAFiles reads every app block's ca_file (app.ReadCAFile: a regular
// file of at most app.MaxCAFile, until ctx ends) and reports each one that
// cannot be read or holds no certificate, with the job's path.
func (c *Config) readCAFiles(ctx context.Context) error {
	var errs []error
	for i := range c.Probes {
		j := &c.Probes[i]
		if j.App == nil || j.App.CAFile == "" {
			continue
		}
		b, err := safefile.ReadFile(ctx, j.App.CAFile, app.MaxCAFile)
		if err != nil {
			err = fmt.Errorf("ca_file: %w", err)
		}
		var pool *x509.CertPool
		if err == nil {
			pool, err = app.ParseCAFile(j.App.CAFile, b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("probes[%d] %q: app.%w", i, j.Name, err))
			continue
		}
		sum := sha256.Sum256(b)
		j.App.ca = caFile{roots: pool, sha256: hex.EncodeToString(sum[:])}
	}
	return errors.Join(errs...)
}

// MarshalYAML renders the block for Job.Fingerprint, with the digest of
// the ca_file Load read.
func (o AppOptions) MarshalYAML() (any, error) {
	type plain AppOptions
	return struct {
		plain    `yaml:",inline"`
		CASHA256 string `yaml:"ca_file_sha256,omitempty"`
	}{plain(o), o.ca.sha256}, nil
}
