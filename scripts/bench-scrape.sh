#!/usr/bin/env bash
# /metrics scrape benchmark: BenchmarkScrape10k (exporters/prometheus) renders
# /metrics for 10,000 connect targets as text and as delimited protobuf,
# plain and gzipped, and through client_golang's protobuf path (what protobuf
# scrapes took before the series were streamed in protobuf too). Writes the
# "/metrics scrape at 10,000 targets" section of BENCHMARKS.md.
# Usage: scripts/bench-scrape.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
go test -run '^$' -bench 'BenchmarkScrape10k' -benchtime "${count}x" -benchmem ./exporters/prometheus | tee "$tmp/out"
grep -q '^PASS' "$tmp/out" || grep -q '^ok' "$tmp/out" || { echo "bench-scrape: benchmark failed" >&2; exit 1; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
rows=$(awk '/^BenchmarkScrape10k\// {
	name=$1; sub(/^BenchmarkScrape10k\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 2; i <= NF; i++) { if ($i == "ns/op") ns=$(i-1); if ($i == "bytes/scrape") by=$(i-1); if ($i == "B/op") al=$(i-1); if ($i == "allocs/op") n=$(i-1) }
	printf "| %s | %.1f ms | %d (%.2f MiB) | %.2f MiB, %d allocs |\n", name, ns/1e6, by, by/1048576, al/1048576, n
}' "$tmp/out")
ms() { awk -v n="$1" '$1 ~ "^BenchmarkScrape10k/"n"-" {for (i = 2; i <= NF; i++) if ($i == "ns/op") printf "%.1f", $(i-1)/1e6}' "$tmp/out"; }
ours=$(ms protobuf-gzip)
theirs=$(ms client_golang-protobuf-gzip)
speedup=$(awk -v a="$theirs" -v b="$ours" 'BEGIN{printf "%.0f", a/b}')
section=$(cat <<MD
## /metrics scrape at 10,000 targets

\`scripts/bench-scrape.sh ${count}\` (\`go test -run '^\$' -bench Scrape10k -benchtime ${count}x -benchmem ./exporters/prometheus\`)
on $(date -u +%Y-%m-%d), $(nproc) cores, load average ${load_before} before, ${load} after: one job of 10,000 connect
targets, each with one result, rendered by the /metrics handler as a scrape with \`Accept-Encoding: identity\`
and with \`gzip\` (what Prometheus sends), in the text format and in the delimited protobuf format (what
Prometheus asks for first with native histograms on). client_golang-protobuf-gzip is the same protobuf scrape
through client_golang's promhttp over Gather, the path protobuf scrapes took before the per-target series
were streamed in protobuf too.

| scrape | time per scrape | bytes sent per scrape | allocated per scrape |
|---|---:|---:|---:|
${rows}

- A gzipped protobuf scrape takes ${ours} ms here against ${theirs} ms through client_golang (${speedup}× faster).
- Both formats are streamed from the per-target counters: nothing holds the whole exposition (a protobuf
  family is sized in one pass over the series and written in a second). gzip is BestSpeed, client_golang's
  the default level: hence its smaller but much slower answer.
MD
)
python3 - "$section" <<'PY'
import re, sys
sec = sys.argv[1].rstrip() + "\n"
s = open("BENCHMARKS.md").read()
pat = r"^## /metrics scrape at 10,000 targets\n.*?(?=^## |\Z)"
if re.search(pat, s, re.M | re.S):
    s = re.sub(pat, lambda m: sec + "\n", s, flags=re.M | re.S)
else:
    s = s.rstrip() + "\n\n" + sec
open("BENCHMARKS.md", "w").write(s)
PY
echo "bench-scrape: wrote the /metrics scrape section of BENCHMARKS.md"
