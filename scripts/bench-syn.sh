#!/usr/bin/env bash
# SYN probe benchmark: SYN probe, connect probe, a send-only floor, hping3 and
# zmap against the same lab target (a listener in the lab's db namespace,
# reached from the pod through the node), and the SYN probe, the floor and
# zmap against a closed port of the same address (the db's kernel answers
# RST), N probes each, in one `go test -bench` run pinned to one core. With
# --base REV, the SYN probe of git revision REV is built too and run right
# after, in the same script run, for a before/after row. Writes the "SYN
# probe" section of BENCHMARKS.md (replacing an older one). Needs root (the
# lab), hping3 and zmap.
# Usage: scripts/bench-syn.sh [--base REV] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
base=""
if [ "${1:-}" = "--base" ]; then
	base=$2
	shift 2
fi
n=${1:-20000}
command -v hping3 >/dev/null || { echo "bench-syn: hping3 missing (apt-get install hping3)" >&2; exit 1; }
command -v zmap >/dev/null || { echo "bench-syn: zmap missing (apt-get install zmap)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
go test -c -o "$tmp/now.test" ./probe/syn/
if [ -n "$base" ]; then
	base=$(git rev-parse --short "$base")
	mkdir "$tmp/base"
	git archive "$base" | tar -x -C "$tmp/base"
	(cd "$tmp/base" && go test -c -o "$tmp/base.test" ./probe/syn/)
fi
bench() { # bench BINARY PATTERN
	(cd probe/syn && taskset -c 0 "$1" -test.run '^$' -test.bench "$2" -test.benchtime "${n}x" -test.cpu 1 -test.count 1)
}
# Other work during the run: the machine's busy CPU time (/proc/stat) less
# the benchmark's own (its process and every child it waited for: the lab's
# commands, hping3, zmap), as average cores over the run; over 0.25 cores
# (benchkit.OthersLimit) marks the table. The load average counts the
# benchmark itself, so it is shown but no longer judged.
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8+$9)/100}' /proc/stat; }
busy0=$(busy)
t0=$(date +%s.%N)
TIMEFORMAT='%U %S'
{ time bench "$tmp/now.test" '^BenchmarkProbes$' > "$out"; } 2> "$tmp/time"
t1=$(date +%s.%N)
busy1=$(busy)
cat "$out"
ours=$(tail -1 "$tmp/time" | awk '{print $1+$2}')
others=$(awk -v b0="$busy0" -v b1="$busy1" -v o="$ours" -v t0="$t0" -v t1="$t1" 'BEGIN{v=(b1-b0-o)/(t1-t0); if (v < 0) v = 0; printf "%.2f", v}')
grep -q '^PASS' "$out" || { echo "bench-syn: benchmark failed" >&2; exit 1; }
if [ -n "$base" ]; then
	bench "$tmp/base.test" '^BenchmarkProbes$/^syn$' | sed "s|^BenchmarkProbes/syn|BenchmarkProbes/syn-at-${base}|" | tee -a "$out"
	grep -q "^BenchmarkProbes/syn-at-${base}" "$out" || { echo "bench-syn: base benchmark failed" >&2; exit 1; }
fi

metric() { # metric LINE UNIT
	echo "$1" | awk -v u="$2" '{for (i = 2; i <= NF; i++) if ($i == u) print $(i-1)}'
}
row() { # row NAME: the benchmark's line for that row
	grep -E "^BenchmarkProbes/${1}[[:space:]]" "$out" || true
}
val() { # val NAME UNIT
	metric "$(row "$1")" "$2"
}
ratio() { # ratio A B: A/B to two places ("n/a" when B is not above 0)
	awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2f", a/b; else printf "n/a"}'
}
rows=""
names="syn"
[ -z "$base" ] || names+=" syn-at-${base}"
for name in $names syn-closed connect floor-send-only floor-send-only-closed hping3-iu100 hping3-iu1 zmap-open zmap-closed; do
	line=$(row "$name")
	[ -n "$line" ] || continue
	ans=$(metric "$line" "%answered")
	case $name in
	floor-*) ans="not read (no matching)" ;;
	zmap-*) ans="${ans} (zmap's own results: $(metric "$line" "%zmap-results"))" ;;
	esac
	rows+="| ${name} | $(metric "$line" probes/s) | $(metric "$line" cpu-ms/1000) | ${ans:-≥ 99 (the bench fails otherwise)} |"$'\n'
done
syn_cpu=$(val syn cpu-ms/1000)
ratio=$(ratio "$syn_cpu" "$(val connect cpu-ms/1000)")
syn_rate=$(val syn probes/s)
floor_cpu=$(val floor-send-only cpu-ms/1000)
bound=$(awk -v f="$floor_cpu" 'BEGIN{printf "%.0f", 1e6/f}')
own=$(awk -v a="$syn_cpu" -v f="$floor_cpu" 'BEGIN{d=a-f; if (d < 0.1*f) printf "within run-to-run noise (±15%%) of the floor"; else printf "about %.1f ms per 1000 above the floor", d}')
# The verdicts are computed, never written in: each goal says met or not.
met() { # met VALUE OP GOAL [NOT-MET-WORDS]
	awk -v v="$1" -v g="$3" -v op="$2" -v no="${4:-not met}" 'BEGIN{ok = (op == ">=" ? v >= g : v <= g); print (ok ? "met" : no)}'
}
cpu_verdict=$(met "$ratio" "<=" 0.33)
rate_verdict=$(met "$syn_rate" ">=" 50000 "not met here")
floor_ratio=$(ratio "$syn_rate" "$(val floor-send-only probes/s)")
floor_verdict=$(met "$floor_ratio" ">=" 0.8)
floor_ratio_closed=$(ratio "$(val syn-closed probes/s)" "$(val floor-send-only-closed probes/s)")
floor_verdict_closed=$(met "$floor_ratio_closed" ">=" 0.8)
zmap_ratio=$(ratio "$syn_rate" "$(val zmap-open probes/s)")
zmap_ratio_closed=$(ratio "$(val syn-closed probes/s)" "$(val zmap-closed probes/s)")
zmap_cpu=$(ratio "$syn_cpu" "$(val zmap-open cpu-ms/1000)")
zmap_cpu_closed=$(ratio "$(val syn-closed cpu-ms/1000)" "$(val zmap-closed cpu-ms/1000)")
zmap_fixed=$(val zmap-open fixed-cpu-ms)
load=$(cut -d' ' -f1-3 /proc/loadavg)
untrusted=$(awk -v o="$others" 'BEGIN{if (o > 0.25) printf "**Not to be trusted as absolute figures: other work used %.2f cores during the run (over 0.25); compare rows of this run with each other only.**", o}')

# RTT accuracy: TestRTTAgainstCapture (500 probes against a nanosecond
# tcpdump capture of the same packets, each probe's syn_rtt less the
# capture's SYN to SYN/ACK) three times; its p99 moves from run to run.
rtt_rows=""
for i in 1 2 3; do
	(cd probe/syn && SYN_RTT_REPORT="$tmp/rtt$i" "$tmp/now.test" -test.run '^TestRTTAgainstCapture$' -test.count 1 >"$tmp/rtt$i.log" 2>&1) ||
		{ cat "$tmp/rtt$i.log" >&2; echo "bench-syn: TestRTTAgainstCapture failed" >&2; exit 1; }
	rtt_rows+=$(awk -v run="$i" '{
		for (k = 1; k <= NF; k++) {
			if ($k == "over") n = $(k+1)
			if ($k == "wire") wire = $(k+1)
			if ($k == "median|err|") med = $(k+1)
			if ($k == "p90|err|") p90 = $(k+1)
			if ($k == "p99|err|") p99 = $(k+1)
			if ($k == "max|err|") mx = $(k+1)
		}
		sub(/;$/, "", wire)
		printf "| %s | %s | %s | %s | %s | %s | %s |\n", run, n, wire, med, p90, p99, mx
	}' "$tmp/rtt$i")$'\n'
done
rtt_p99_met=$(cat "$tmp"/rtt? | awk '{for (k = 1; k <= NF; k++) if ($k == "p99|err|") print $(k+1)}' |
	awk '{v=$1; u=1; if (v ~ /ms$/) u=1000; else if (v ~ /ns$/) u=0.001; gsub(/[^0-9.]/, "", v); if (v*u < 20) m++} END{printf "%d of %d", m, NR}')

section=$(cat <<MD
## SYN probe

\`scripts/bench-syn.sh${base:+ --base ${base}} ${n}\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r),
other work during the run ${others} cores (/proc/stat less the benchmark's own CPU), load average ${load_before} before, ${load} after
(the machine is shared: probes/s moves with the load, CPU per probe much less);
${untrusted}
pinned to one core (\`taskset -c 0\`, GOMAXPROCS=1). ${n} probes each against the same lab target
(listener in the db namespace, pod → node → bridge → db), 64 probes in flight for the Go probes;
the -closed rows and zmap-closed probe a port of the same address nothing listens on (the db's
kernel answers RST, so no SYN/ACK and no RST of ours), the others the open port.
CPU is the process's user+system time, which includes the lab's kernel work done in softirq on the
sending CPU (the target's SYN/ACK, our kernel's RST): the whole path runs on this one core.
${base:+syn-at-${base} is the SYN probe as of commit ${base}, built and run in the same script run.}
floor-send-only is not a probe: the same SYNs sent open loop with one sendto each, nothing read or
matched; its CPU is what the lab's kernel path (SYN through node and bridge, the target's SYN/ACK,
our kernel's RST; on the closed port the db's RST alone) plus the raw send cost per SYN.
zmap (2.1.1) runs in the pod's namespace with \`-P ${n}\` (N probes to the one target address, source
ports cycling through the SYN probe's range), no rate limit, all its threads on the benchmark's core;
its probes/s is over its send phase as its log stamps it (ms resolution), its CPU is the process's
less that of a one-probe zmap run (its fixed cost: ${zmap_fixed} ms here), its % answered is what
its capture took in (its metadata's pcap counters), and its own results (its validated answers) are
a lower bound: 2.1.1 rejects valid answers when the window of source ports wraps (see
probe/syn/zmap_bench_test.go).

| probe | probes/s | CPU ms per 1000 probes | % answered |
|---|---|---|---|
${rows}
- SYN probe CPU per probe / connect probe CPU per probe: **${ratio}** (target ≤ 0.33: ${cpu_verdict}).
- Throughput target ≥ 50k probes/s on one core with matching: **${rate_verdict}: ${syn_rate} probes/s**.
- SYN probe throughput / the send-only floor's: **${floor_ratio}** on the open port (target ≥ 0.8:
  ${floor_verdict}), **${floor_ratio_closed}** on the closed port (target ≥ 0.8: ${floor_verdict_closed}).
  The send-only floor costs ${floor_cpu} ms per 1000 SYNs on this core (open port), which bounds any
  prober to about ${bound} SYNs/s on one core in this lab even with no matching at all; the probe
  (matching, timers, result, receive path included) is ${own}. The lab's kernel path (node, bridge,
  the target's SYN/ACK, our kernel's RST) runs on the same core.
- SYN probe throughput / zmap's, the external reference: **${zmap_ratio}** on the open port,
  **${zmap_ratio_closed}** on the closed port; CPU per probe, SYN probe / zmap: **${zmap_cpu}** open,
  **${zmap_cpu_closed}** closed. zmap sends open loop with no deadline, retransmit or RTT per probe;
  the SYN probe keeps 64 probes in flight, each with its retransmit timer, RTT and result.

RTT accuracy: \`TestRTTAgainstCapture\` three times, each 500 SYN probes from the pod to the db's open
port against a tcpdump capture of the same packets on the pod's interface (\`--immediate-mode -U
--time-stamp-precision=nano\`), matched by source port: the error is each probe's syn_rtt less the
capture's time from its SYN to the SYN/ACK (both ends of syn_rtt are kernel timestamps: the SYN's as it
enters the device, the reply's on receive).

| run | probes matched | mean wire RTT | median error | p90 | p99 | max |
|---|---|---|---|---|---|---|
${rtt_rows}
- p99 under 20 µs (the performance issue's goal): **${rtt_p99_met} runs**.
MD
)
touch BENCHMARKS.md
python3 - "$section" <<'PY'
import re, sys
sec = sys.argv[1].rstrip() + "\n"
s = open("BENCHMARKS.md").read()
if re.search(r"^## SYN probe\n", s, re.M):
    s = re.sub(r"^## SYN probe\n.*?(?=^## |\Z)", sec + "\n", s, flags=re.M | re.S)
else:
    s = (s.rstrip() + "\n\n" if s.strip() else "# Benchmarks\n\n") + sec
open("BENCHMARKS.md", "w").write(s)
PY
echo "bench-syn: wrote the SYN probe section of BENCHMARKS.md"
