#!/usr/bin/env bash
# probe serve with the status history (this tree) next to a build without it
# (BASE, default 90ef163: the commit before it), N loopback connect targets
# at 1 s, in one run; also times the status page and the API at N. Writes the
# "Status history" section of BENCHMARKS.md. Usage: scripts/bench-status.sh [N]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-90ef163}
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$base" | tar -x -C "$tmp"
(cd "$tmp" && CGO_ENABLED=0 go build -trimpath -o probe-base ./cmd/probe)
CGO_ENABLED=0 go build -trimpath -o bin/probe ./cmd/probe
go build -o bin/benchserve ./scripts/benchserve
./bin/benchserve -probe bin/probe -blackbox "" -also "$tmp/probe-base" \
	-also-label "probe serve at $(git rev-parse --short "$base") (no history)" \
	-also-note "the build before the status history ($base)" -script "scripts/bench-status.sh" \
	-section "## Status history at ${1:-10000} targets" \
	-n "${1:-10000}" -warmup "${WARMUP:-5s}" -duration "${DURATION:-20s}" -out BENCHMARKS.md
