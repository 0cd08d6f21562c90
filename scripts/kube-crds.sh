#!/usr/bin/env bash
# Generates the prometheus-operator CRDs (ServiceMonitor, PrometheusRule, …)
# that deploy/ uses, from their Go types on the Go module proxy with
# controller-gen, for the real-API-server tests (internal/kubetest). The
# output is cached: a second run prints the directory and builds nothing.
#
#   scripts/kube-crds.sh        generate if missing, print the CRD directory
set -euo pipefail
operator=${PROMETHEUS_OPERATOR_VERSION:-v0.95.2}
tools=${CONTROLLER_TOOLS_VERSION:-v0.23.0}
cache=${CONNPROBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connprobe}
out=$cache/prometheus-operator-crds-$operator
if [ -s "$out/monitoring.coreos.com_servicemonitors.yaml" ] && [ -s "$out/monitoring.coreos.com_prometheusrules.yaml" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "kube-crds.sh: generating prometheus-operator $operator CRDs with controller-gen $tools (cached in $out)" >&2
gen=$cache/controller-gen-$tools
if [ ! -x "$gen" ]; then
	GOBIN=$work/bin go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$tools" >&2
	mv "$work/bin/controller-gen" "$gen"
fi
mod=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
dir=$(cd "$work" && go mod download -json "$mod@$operator" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "kube-crds.sh: cannot download $mod@$operator" >&2; exit 1; }
# controller-gen loads packages from a writable module: copy the sources.
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
(cd "$work/src" && GOFLAGS=-mod=mod "$gen" crd:crdVersions=v1,maxDescLen=0 paths=./v1/... output:crd:dir="$work/crds" >&2)
rm -rf "$out.tmp"
mv "$work/crds" "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
