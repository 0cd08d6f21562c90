//go:build linux

package main

import (
	"log/slog"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/probe/syn"
)

// applySynRate sets the process-wide raw SYN budget (global.syn_rate) of the
// config about to run. A reload that keeps the rate keeps the running bucket.
func applySynRate(next, running *configs.Config, log *slog.Logger) {
	rate := next.Global.SynBudget()
	if running != nil && running.Global.SynBudget() == rate {
		return
	}
	// Validate has checked the rate is positive, so SetRate cannot fail.
	if err := syn.SetRate(rate, min(rate, syn.DefaultBurst)); err != nil {
		log.Error("syn_rate not applied", "err", err)
		return
	}
	log.Info("raw SYN budget", "packets_per_second", rate)
}
