package configs

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/syn"
)

// The option block of each kind (the table of kinds is kinds.go).

// ConnectOptions is the YAML option block of kind connect.
type ConnectOptions struct {
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// Send is written after the handshake.
	Send string `yaml:"send"`
	// Expect must appear in the reply.
	Expect string `yaml:"expect"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
}

// Config converts the block (nil: no options) into connect.Config for a job
// whose attempts last at most timeout.
func (o *ConnectOptions) Config(timeout time.Duration) (connect.Config, error) {
	cfg := connect.Config{Timeout: timeout}
	if o == nil {
		return cfg, nil
	}
	var errs []error
	cfg.Source, errs = parseSource("connect", o.Source, errs)
	cfg.Send = []byte(o.Send)
	cfg.Expect = []byte(o.Expect)
	if o.UserTimeout.Err != nil {
		errs = append(errs, fmt.Errorf("connect.user_timeout: %w", o.UserTimeout.Err))
	}
	cfg.UserTimeout = o.UserTimeout.D
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("connect: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// IdleOptions is the YAML option block of kind idle (docs/idle.md): hold a
// connection idle, then use it; a job needs timeout >= the attempt's length
// and concurrency ceil(timeout/interval) so a result arrives every interval.
type IdleOptions struct {
	// Mode: client-first (default), server-after-delay, plain.
	Mode string `yaml:"mode"`
	// Idle is how long each connection is held idle (default 30s).
	Idle Duration `yaml:"idle"`
	// ReplyTimeout bounds the answer after the idle time (default 2s).
	ReplyTimeout Duration `yaml:"reply_timeout"`
	// ConnectTimeout bounds the handshake and first echo (default 5s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// Send and Expect are for mode plain.
	Send   string `yaml:"send"`
	Expect string `yaml:"expect"`
	// FindTimeout, when set, also searches each target's idle timeout in
	// the background on a period and exports the survived/lost boundary.
	FindTimeout *FindTimeoutOptions `yaml:"find_timeout"`
}

// FindTimeoutOptions is a periodic idle-timeout search (idle.Prober.Find)
// of every target of an idle job: connections with different idle times in
// parallel, narrowed down to the boundary, exported as
// connprobe_idle_timeout_boundary_seconds{bound="survived|lost"}.
type FindTimeoutOptions struct {
	// Every is the period of the searches, from the start of one to the
	// next (default 1h); a search still running then is cut short. The
	// first search starts within one job interval.
	Every Duration `yaml:"every"`
	// MaxIdle is the longest idle time tried (default 20m).
	MaxIdle Duration `yaml:"max_idle"`
	// MinIdle is the shortest (default 1s).
	MinIdle Duration `yaml:"min_idle"`
}

// Defaults of find_timeout.
const (
	DefaultFindEvery   = time.Hour
	DefaultFindMaxIdle = 20 * time.Minute
)

// Search converts the find_timeout block of an idle job whose probes use
// cfg into the search's options and period; ok is false when the block is
// not set.
func (o *IdleOptions) Search(cfg idle.Config) (fo idle.FindOptions, every time.Duration, ok bool, err error) {
	if o == nil || o.FindTimeout == nil {
		return fo, 0, false, nil
	}
	f := o.FindTimeout
	var errs []error
	every, fo.MaxIdle, fo.MinIdle = DefaultFindEvery, DefaultFindMaxIdle, time.Second
	for _, d := range []struct {
		name string
		v    Duration
		dst  *time.Duration
	}{{"every", f.Every, &every}, {"max_idle", f.MaxIdle, &fo.MaxIdle}, {"min_idle", f.MinIdle, &fo.MinIdle}} {
		switch {
		case d.v.Err != nil:
			errs = append(errs, fmt.Errorf("idle.find_timeout.%s: %w", d.name, d.v.Err))
		case !d.v.set():
		case d.v.D <= 0:
			errs = append(errs, fmt.Errorf("idle.find_timeout.%s %s must be positive", d.name, d.v.D))
		default:
			*d.dst = d.v.D
		}
	}
	if len(errs) == 0 {
		if fo.MinIdle > fo.MaxIdle {
			errs = append(errs, fmt.Errorf("idle.find_timeout.min_idle %s must not exceed max_idle %s", fo.MinIdle, fo.MaxIdle))
		}
		if fo.MaxIdle > idle.MaxIdle {
			errs = append(errs, fmt.Errorf("idle.find_timeout.max_idle %s must be at most %s", fo.MaxIdle, idle.MaxIdle))
		}
		if need := cfg.AttemptDuration(fo.MaxIdle); every < need {
			errs = append(errs, fmt.Errorf("idle.find_timeout.every %s is shorter than one search round can take (%s: a connection idle max_idle %s, reply, control connection)", every, need, fo.MaxIdle))
		}
	}
	return fo, every, true, errors.Join(errs...)
}

// Config converts the block (nil: defaults) into idle.Config for a job whose
// attempts last at most timeout.
func (o *IdleOptions) Config(timeout time.Duration) (idle.Config, error) {
	var cfg idle.Config
	var errs []error
	if o != nil {
		cfg.Mode = idle.Mode(o.Mode)
		for _, d := range []struct {
			name string
			v    Duration
			dst  *time.Duration
		}{{"idle", o.Idle, &cfg.Idle}, {"reply_timeout", o.ReplyTimeout, &cfg.ReplyTimeout}, {"connect_timeout", o.ConnectTimeout, &cfg.ConnectTimeout}} {
			if d.v.Err != nil {
				errs = append(errs, fmt.Errorf("idle.%s: %w", d.name, d.v.Err))
			}
			*d.dst = d.v.D
		}
		cfg.Source, errs = parseSource("idle", o.Source, errs)
		cfg.Send, cfg.Expect = []byte(o.Send), []byte(o.Expect)
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("idle: %w", err))
	} else {
		d := cfg.Idle
		if d == 0 {
			d = idle.DefaultIdle
		}
		if need := cfg.AttemptDuration(d); timeout > 0 && timeout < need {
			errs = append(errs, fmt.Errorf("timeout %s is shorter than an idle attempt can take (%s: handshakes, idle %s, reply, control connection)", timeout, need, d))
		}
	}
	return cfg, errors.Join(errs...)
}

// AppOptions is the YAML option block of kind app (docs/app.md): after the
// TCP phase, speak the protocol of the target's URL scheme (mysql://,
// postgres://, redis://, kafka://, http://, https://).
type AppOptions struct {
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
	// InsecureSkipVerify turns off certificate verification for https://
	// (and TLS-enabled mysql/postgres targets).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ExpectStatus, ExpectBody and CAFile are for http(s):// targets
	// (app_http.go).
	ExpectStatus []string `yaml:"expect_status"`
	ExpectBody   string   `yaml:"expect_body"`
	CAFile       string   `yaml:"ca_file"`
	ca           caFile   // CAFile as Load read it
}

// Config converts the block (nil: no options) into app.Config for a job
// whose attempts last at most timeout.
func (o *AppOptions) Config(timeout time.Duration) (app.Config, error) {
	cfg := app.Config{Timeout: timeout}
	var errs []error
	if o != nil {
		cfg.Source, errs = parseSource("app", o.Source, errs)
		if o.UserTimeout.Err != nil {
			errs = append(errs, fmt.Errorf("app.user_timeout: %w", o.UserTimeout.Err))
		}
		cfg.UserTimeout = o.UserTimeout.D
		cfg.InsecureSkipVerify = o.InsecureSkipVerify
		errs = o.httpConfig(&cfg, errs)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			errs = append(errs, fmt.Errorf("app: %w", e))
		}
	}
	return cfg, errors.Join(errs...)
}

// KeepaliveOptions is the YAML option block of kind keepalive
// (docs/podnetns.md): each target's prober holds one connection with the
// kernel's keep-alive and, at every attempt, watches it for Watch; a
// connection that ended is reported once (keepalive_timeout, peer_closed,
// reset) and reopened at the next attempt.
type KeepaliveOptions struct {
	// Idle is TCP_KEEPIDLE (default 30s), whole seconds.
	Idle Duration `yaml:"idle"`
	// Interval is TCP_KEEPINTVL (default 5s), whole seconds.
	Interval Duration `yaml:"interval"`
	// Count is TCP_KEEPCNT (default 3).
	Count int `yaml:"count"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
	// ConnectTimeout bounds the handshake of a new connection (default:
	// the job's timeout).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Watch is how long each attempt watches the held connection (default
	// 1s); it must be shorter than the job's timeout.
	Watch Duration `yaml:"watch"`
	// Source is the local address to bind to.
	Source string `yaml:"source"`
}

// Config converts the block (nil: defaults) into keepalive.Config for a job
// whose attempts last at most timeout.
func (o *KeepaliveOptions) Config(timeout time.Duration) (keepalive.Config, error) {
	cfg := keepalive.Config{ConnectTimeout: timeout}
	var errs []error
	if o != nil {
		for _, d := range []struct {
			name string
			v    Duration
			dst  *time.Duration
		}{{"idle", o.Idle, &cfg.Idle}, {"interval", o.Interval, &cfg.Interval}, {"user_timeout", o.UserTimeout, &cfg.UserTimeout},
			{"connect_timeout", o.ConnectTimeout, &cfg.ConnectTimeout}, {"watch", o.Watch, &cfg.Watch}} {
			if d.v.Err != nil {
				errs = append(errs, fmt.Errorf("keepalive.%s: %w", d.name, d.v.Err))
				continue
			}
			if d.v.set() {
				*d.dst = d.v.D
			}
		}
		cfg.Count = o.Count
		cfg.Source, errs = parseSource("keepalive", o.Source, errs)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			errs = append(errs, fmt.Errorf("keepalive: %w", e))
		}
	}
	if w := cfg.WithDefaults().Watch; timeout > 0 && w >= timeout {
		errs = append(errs, fmt.Errorf("keepalive.watch %s must be shorter than timeout %s", w, timeout))
	}
	return cfg, errors.Join(errs...)
}

// SynOptions is the YAML option block of kind syn (raw half-open SYN probe;
// needs CAP_NET_RAW).
type SynOptions struct {
	// Source is the source address of the SYNs (default: the route's).
	Source string `yaml:"source"`
	// Retransmit lists when SYNs are retransmitted, as offsets from the
	// first SYN (default: the kernel's 1s,2s,3s,4s,5s,7s,11s,…).
	Retransmit []Duration `yaml:"retransmit"`
	// PAWS enables the older-TSval check after an answered SYN.
	PAWS bool `yaml:"paws"`
	// PAWSWait bounds the wait for an answer to the older-TSval SYN.
	PAWSWait Duration `yaml:"paws_wait"`
}

// Config converts the block (nil: no options) into syn.Config for a job
// whose attempts last at most timeout.
func (o *SynOptions) Config(timeout time.Duration) (syn.Config, error) {
	cfg := syn.Config{Timeout: timeout}
	if o == nil {
		return cfg, nil
	}
	var errs []error
	cfg.Source, errs = parseSource("syn", o.Source, errs)
	if o.Retransmit != nil {
		cfg.Schedule = []time.Duration{}
		for i, d := range o.Retransmit {
			if d.Err != nil {
				errs = append(errs, fmt.Errorf("syn.retransmit[%d]: %w", i, d.Err))
			}
			cfg.Schedule = append(cfg.Schedule, d.D)
		}
	}
	cfg.PAWS = o.PAWS
	if o.PAWSWait.Err != nil {
		errs = append(errs, fmt.Errorf("syn.paws_wait: %w", o.PAWSWait.Err))
	}
	cfg.PAWSWait = o.PAWSWait.D
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("syn: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// splitJoined undoes errors.Join so each problem gets its own path.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	return []error{err}
}

// parseSource parses a block's optional source address; a bad one is added
// to errs as "<block>.source %q: not an IP address".
func parseSource(block, s string, errs []error) (netip.Addr, []error) {
	if s == "" {
		return netip.Addr{}, errs
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s.source %q: not an IP address", block, s))
	}
	return a, errs
}
