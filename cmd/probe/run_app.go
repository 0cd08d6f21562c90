//go:build linux

package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
)

// appFlags are `probe run`'s flags of http(s):// app targets, the same
// options as serve's app block (expect_status, expect_body, ca_file,
// insecure_skip_verify).
type appFlags struct {
	expectStatus []string
	expectBody   string
	caFile       string
	insecure     bool
	roots        *x509.CertPool // --ca-file, read by runProbes (readCA)
}

func addAppFlags(fl *pflag.FlagSet, a *appFlags) {
	fl.StringSliceVar(&a.expectStatus, "expect-status", nil, "http(s):// targets: statuses that count as an answer, codes or classes (200,3xx); default: any status below 500")
	fl.StringVar(&a.expectBody, "expect-body", "", fmt.Sprintf("http(s):// targets: substring the first %d bytes of the body must contain", app.MaxBody))
	fl.StringVar(&a.caFile, "ca-file", "", "https:// targets: PEM file of the CAs to trust instead of the system's")
	fl.BoolVar(&a.insecure, "insecure", false, "https:// (and mysql:// tls=true, postgres://) targets: do not verify the server's certificate")
}

// readCA reads --ca-file, until ctx ends.
func (a *appFlags) readCA(ctx context.Context) error {
	if a.caFile == "" {
		return nil
	}
	roots, err := app.ReadCAFile(ctx, a.caFile)
	if err != nil {
		// "ca_file: open x: …", "ca_file x: no PEM certificate…"
		return usageError{fmt.Errorf("--ca-file%s", strings.TrimPrefix(err.Error(), "ca_file"))}
	}
	a.roots = roots
	return nil
}

// config adds the flags to cfg; errs lists the bad values.
func (a appFlags) config(cfg app.Config) (app.Config, []error) {
	var errs []error
	for _, s := range a.expectStatus {
		r, err := app.ParseStatus(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--expect-status: %w", err))
			continue
		}
		cfg.ExpectStatus = append(cfg.ExpectStatus, r)
	}
	if len(a.expectBody) > app.MaxBody {
		errs = append(errs, fmt.Errorf("--expect-body of %d bytes is longer than the %d bytes of body the probe reads", len(a.expectBody), app.MaxBody))
	}
	if a.caFile != "" && a.insecure {
		errs = append(errs, fmt.Errorf("--ca-file and --insecure exclude each other (one trusts a CA, the other any certificate)"))
	}
	cfg.ExpectBody, cfg.CAFile, cfg.RootCAs, cfg.InsecureSkipVerify = a.expectBody, a.caFile, a.roots, a.insecure
	return cfg, errs
}

// given names the flags given.
func (a appFlags) given() []string {
	var n []string
	if len(a.expectStatus) > 0 {
		n = append(n, "--expect-status")
	}
	if a.expectBody != "" {
		n = append(n, "--expect-body")
	}
	if a.caFile != "" {
		n = append(n, "--ca-file")
	}
	if a.insecure {
		n = append(n, "--insecure")
	}
	return n
}

// checkAppTarget refuses the app flags a target of kind k would ignore:
// they need kind app (a URL target under the default kind is app; kindFlags'
// rule, per target) and a scheme they apply to.
func checkAppTarget(a appFlags, k string, t probe.Target) error {
	if k != app.Kind {
		if n := a.given(); len(n) > 0 {
			return fmt.Errorf("target %q: %s needs kind app (an http(s):// target), not kind %s", t.Name, strings.Join(n, ", "), k)
		}
		return nil
	}
	var n []string
	var want string
	switch t.Scheme {
	case "https":
	case "http":
		if a.caFile != "" {
			n = append(n, "--ca-file")
		}
		if a.insecure {
			n = append(n, "--insecure")
		}
		want = "https:// targets"
	default:
		if len(a.expectStatus) > 0 {
			n = append(n, "--expect-status")
		}
		if a.expectBody != "" {
			n = append(n, "--expect-body")
		}
		if a.caFile != "" {
			n = append(n, "--ca-file")
		}
		want = "http(s):// targets"
		if a.insecure && t.Scheme != "mysql" && t.Scheme != "postgres" {
			n = append(n, "--insecure")
			want = "http(s):// targets (--insecure: https://, mysql://, postgres://)"
		}
	}
	if len(n) == 0 {
		return nil
	}
	return fmt.Errorf("target %q: %s: for %s, not %s://", t.Name, strings.Join(n, ", "), want, t.Scheme)
}
