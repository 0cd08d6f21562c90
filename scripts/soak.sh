#!/usr/bin/env bash
# Soak: probe serve for DURATION (default 20m) with 1,000 churned targets,
# hostile app servers, good, bad and aborted reloads and 5,000 idle HTTP
# clients; writes the "Soak" section of BENCHMARKS.md and fails when RSS,
# fds or goroutines grow, a healthy target fails or a scrape fails.
# Usage: scripts/soak.sh   (DURATION=5m N=1000 IDLE=5000 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true # the idle clients and the listeners
CGO_ENABLED=0 go build -trimpath -o bin/probe ./cmd/probe
go build -o bin/soak ./scripts/soak
./bin/soak -probe bin/probe -duration "${DURATION:-20m}" -n "${N:-1000}" -idle-clients "${IDLE:-5000}" -out BENCHMARKS.md
