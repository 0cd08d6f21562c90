package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/keepalive"
)

// keepaliveFlags are the flags of `probe run --kind keepalive`.
type keepaliveFlags struct {
	idle, interval time.Duration
	count          int
}

func addKeepaliveFlags(fl *pflag.FlagSet, f *keepaliveFlags) {
	fl.DurationVar(&f.idle, "ka-idle", keepalive.DefaultIdle, "kind keepalive: TCP_KEEPIDLE, idle time before the first keep-alive probe")
	fl.DurationVar(&f.interval, "ka-interval", keepalive.DefaultInterval, "kind keepalive: TCP_KEEPINTVL, time between unanswered probes")
	fl.IntVar(&f.count, "ka-count", keepalive.DefaultCount, "kind keepalive: TCP_KEEPCNT, unanswered probes before the kernel gives up")
}

// newKeepaliveProber holds one connection per target; each attempt watches
// it for --interval (so attempts follow each other without a gap).
func newKeepaliveProber(t probe.Target, f runFlags, cfg connect.Config) (probe.Prober, error) {
	return keepalive.New(t, keepalive.Config{
		Idle: f.kaF.idle, Interval: f.kaF.interval, Count: f.kaF.count,
		UserTimeout: cfg.UserTimeout, ConnectTimeout: cfg.Timeout, Source: cfg.Source,
		Watch: f.interval,
	})
}
