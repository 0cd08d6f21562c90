package configs

import (
	"errors"

	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/syn"
)

// kindBlock is one row of the table of kinds: a kind a job may name, whether
// the job sets the kind's option block, and the block's conversion (its
// problems, for Validate).
type kindBlock struct {
	name  string
	set   func(*Job) bool
	check func(*Job) error
}

// kindBlocks is the table of kinds, in the order the docs list them.
// Adding a kind: its option block (XxxOptions with a Config method) as a
// field of Job, a Job.XxxConfig method, one row here, and one entry in the
// kinds table of cmd/probe (kinds.go).
var kindBlocks = []kindBlock{
	{connect.Kind, func(j *Job) bool { return j.Connect != nil }, func(j *Job) error { _, err := j.ConnectConfig(); return err }},
	{syn.Kind, func(j *Job) bool { return j.Syn != nil }, func(j *Job) error { _, err := j.SynConfig(); return err }},
	{app.Kind, func(j *Job) bool { return j.App != nil }, func(j *Job) error { _, err := j.AppConfig(); return err }},
	{idle.Kind, func(j *Job) bool { return j.Idle != nil }, func(j *Job) error {
		cfg, err := j.IdleConfig()
		_, _, _, serr := j.Idle.Search(cfg)
		return errors.Join(err, serr)
	}},
	{keepalive.Kind, func(j *Job) bool { return j.Keepalive != nil }, func(j *Job) error { _, err := j.KeepaliveConfig(); return err }},
}

// Kinds lists the probe kinds a job may name, in the order the docs list
// them.
func Kinds() []string {
	names := make([]string, len(kindBlocks))
	for i, k := range kindBlocks {
		names[i] = k.name
	}
	return names
}

// The typed Config of each kind for a job: its option block converted for
// the job's timeout, with the job's resolver. Validate has reported their
// errors; `probe serve` converts the block of the job's kind once more, to
// build the job.

// ConnectConfig returns the job's connect.Config.
func (j *Job) ConnectConfig() (connect.Config, error) {
	cfg, err := j.Connect.Config(j.Timeout.D)
	cfg.Resolver = j.DNSResolver()
	return cfg, err
}

// SynConfig returns the job's syn.Config.
func (j *Job) SynConfig() (syn.Config, error) {
	cfg, err := j.Syn.Config(j.Timeout.D)
	cfg.Resolver = j.DNSResolver()
	return cfg, err
}

// AppConfig returns the job's app.Config.
func (j *Job) AppConfig() (app.Config, error) {
	cfg, err := j.App.Config(j.Timeout.D)
	cfg.Resolver = j.DNSResolver()
	return cfg, err
}

// IdleConfig returns the job's idle.Config; its find_timeout search is
// j.Idle.Search.
func (j *Job) IdleConfig() (idle.Config, error) {
	cfg, err := j.Idle.Config(j.Timeout.D)
	cfg.Resolver = j.DNSResolver()
	return cfg, err
}

// KeepaliveConfig returns the job's keepalive.Config.
func (j *Job) KeepaliveConfig() (keepalive.Config, error) {
	cfg, err := j.Keepalive.Config(j.Timeout.D)
	cfg.Resolver = j.DNSResolver()
	return cfg, err
}
