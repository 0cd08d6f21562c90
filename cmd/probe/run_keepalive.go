//go:build linux

package main

import (
	"time"

	"github.com/spf13/pflag"

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

// runKeepaliveConfig is kind keepalive's Config from `probe run` flags: one
// connection per target; each attempt watches it for --interval (so
// attempts follow each other without a gap).
func runKeepaliveConfig(c runSettings) (keepalive.Config, error) {
	return keepalive.Config{
		Idle: c.f.kaF.idle, Interval: c.f.kaF.interval, Count: c.f.kaF.count,
		UserTimeout: c.conn.UserTimeout, ConnectTimeout: c.conn.Timeout, Source: c.conn.Source, Resolver: c.conn.Resolver,
		Watch: c.f.interval,
	}, nil
}
