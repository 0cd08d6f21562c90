#!/usr/bin/env bash
# Runs every benchmark script; each rewrites its own section of BENCHMARKS.md.
# Go micro-benchmarks: go test -run '^$' -bench . ./probe/syn ./exporters/prometheus ./scheduler/...
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/bench-serve.sh
./scripts/bench-syn.sh
./scripts/bench-scrape.sh
