#!/usr/bin/env bash
# Runs the whole suite with the race detector and fails if any test skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONNPROBE_REQUIRE_PRIV=1
# The real-API-server tests (internal/kubetest) run kube-apiserver built
# from the module proxy and CRDs generated from the prometheus-operator's Go
# types; both are cached under ~/.cache/connprobe, so only a fresh machine
# builds them (a few minutes, once).
CONNPROBE_KUBE_APISERVER=$(./scripts/kube-apiserver.sh)
CONNPROBE_KUBE_CRDS=$(./scripts/kube-crds.sh)
export CONNPROBE_KUBE_APISERVER CONNPROBE_KUBE_CRDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Every package in the image's build (-tags kubernetes: the Kubernetes
# client linked), then the command again in the default build without it.
go test -race -count=1 -timeout 30m -v -tags kubernetes ./... >"$log" 2>&1 || status=$?
go test -race -count=1 -timeout 30m -v ./cmd/probe >>"$log" 2>&1 || status=$?
grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|PASS|FAIL|ok|panic)' "$log" | grep -v '^=== RUN' | grep -vE '^\s*--- PASS' || true
if [ $status -ne 0 ]; then
	echo "--- failures (full log follows the summary) ---"
	# Each grep may find nothing: that must not end the script (pipefail).
	grep -E '^# |\.go:[0-9]+:[0-9]+: ' "$log" | head -60 || true # compile errors
	grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: |race detected|^WARNING: DATA RACE' "$log" | head -100 || true # t.Error/t.Log, races
	grep -B2 -A30 -E -- '--- FAIL|^panic|build failed|\[setup failed\]|^WARNING: DATA RACE' "$log" | head -600 || true
	cp "$log" /tmp/connprobe-test-last.log && echo "test: the whole log is in /tmp/connprobe-test-last.log"
	exit $status
fi
if grep -qE -- '--- SKIP' "$log"; then
	echo "test: some tests were skipped; every test must run here:" >&2
	grep -A3 -E -- '--- SKIP' "$log" >&2
	exit 1
fi
echo "test: all tests passed, none skipped"
