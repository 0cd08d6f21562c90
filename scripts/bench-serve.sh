#!/usr/bin/env bash
# probe serve vs blackbox_exporter: N loopback connect targets at 1 s, side
# by side in one run; writes the "probe serve vs blackbox_exporter" section of
# BENCHMARKS.md. Usage: scripts/bench-serve.sh [N,N,...]   (default 1000,5000,10000)
# For each N: the floor (the kernel work of the connects alone), probe serve
# with kind connect and with kind syn on the same targets, each again with
# GOMAXPROCS as deploy/daemonset.yaml sets it, then both builds:
# the default one (bin/probe) and the image's, with the Kubernetes client
# linked (-tags kubernetes). ALSO=path/to/other/probe, ALSO_LABEL and
# ALSO_NOTE measure another build (an older commit) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus-blackbox-exporter >/dev/null; then
	echo "bench-serve: installing prometheus-blackbox-exporter" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-blackbox-exporter >/dev/null
fi
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || true # 2N+ fds; keep the current limit when it cannot be raised
CGO_ENABLED=0 go build -trimpath -o bin/probe ./cmd/probe
CGO_ENABLED=0 go build -trimpath -tags kubernetes -o bin/probe-kubernetes ./cmd/probe
go build -o bin/benchserve ./scripts/benchserve
# probe serve also runs as the DaemonSet runs it: GOMAXPROCS from its limits.cpu.
procs=$(awk '/limits:/ {l = 1} l && $1 == "cpu:" {gsub(/"/, "", $2); print $2; exit}' deploy/daemonset.yaml)
case "$procs" in
'' | *[!0-9]*) echo "bench-serve: deploy/daemonset.yaml limits.cpu is ${procs:-missing}, not a whole number of CPUs" >&2; exit 1 ;;
esac
./bin/benchserve -deployed-procs "$procs" -probe bin/probe -blackbox "$(command -v prometheus-blackbox-exporter)" \
	-also "${ALSO:-bin/probe-kubernetes}" -also-label "${ALSO_LABEL:-probe serve (-tags kubernetes)}" \
	-also-note "${ALSO_NOTE:-the same commit built with -tags kubernetes, as the image is (make build TAGS=kubernetes)}" \
	-syn -n "${1:-1000,5000,10000}" -warmup "${WARMUP:-5s}" -duration "${DURATION:-20s}" -out BENCHMARKS.md
