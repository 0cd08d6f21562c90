//go:build linux

package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/scheduler"
)

// idleBackground returns the scheduler.Job.Background of an idle job whose
// probes use cfg: with find_timeout, the periodic idle-timeout search of
// each target; nil without.
func idleBackground(j *configs.Job, cfg idle.Config, log *slog.Logger) (backgroundFunc, error) {
	fo, every, ok, err := j.Idle.Search(cfg)
	if err != nil || !ok {
		return nil, err
	}
	first := min(every, j.Interval.D)
	return func(ctx context.Context, t probe.Target, sink scheduler.TargetSink) {
		log := log.With("job", j.Name, "target", t.Name)
		rec, ok := scheduler.SinkAs[prometheus.IdleTimeoutRecorder](sink) // through the status Tee
		if !ok {
			log.Error("idle-timeout search cannot run: the target's sink records no idle-timeout boundary (no Prometheus exporter)")
			return
		}
		p, err := idle.New(t, cfg)
		if err != nil {
			log.Error("idle-timeout search cannot run", "err", err)
			return
		}
		rec.IdleTimeoutSearches()
		// The first search within one interval (staggered over targets),
		// then one every period, counted from the start of the last.
		timer := time.NewTimer(rand.N(first))
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			start := time.Now()
			sctx, cancel := context.WithTimeout(ctx, every)
			b, err := p.Find(sctx, fo)
			cancel()
			if ctx.Err() != nil {
				return // reload or shutdown: no result
			}
			switch {
			case err != nil:
				log.Warn("idle-timeout search failed; the last boundary stays", "err", err, "elapsed", time.Since(start).Round(time.Millisecond))
			case b.Untrusted != "":
				// The shortest loss is still a loss: export it, and say why
				// the boundary may be off.
				log.Warn("idle-timeout search: results contradict each other", "verdict", b.String(), "rounds", b.Rounds, "connections", b.Attempts, "elapsed", b.Elapsed.Round(time.Millisecond))
			default:
				log.Info("idle-timeout search", "verdict", b.String(), "rounds", b.Rounds, "connections", b.Attempts, "elapsed", b.Elapsed.Round(time.Millisecond))
			}
			rec.IdleTimeout(b.Survived, b.Lost, err != nil)
			timer.Reset(max(0, time.Until(start.Add(every))))
		}
	}, nil
}
