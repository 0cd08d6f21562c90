#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy, at the Kubernetes version
# that matches the project's client-go (go.mod: k8s.io/client-go v0.X.Y →
# k8s.io/kubernetes v1.X.Y), for the real-API-server tests (internal/kubetest).
# The binary is cached: a second run prints its path and builds nothing.
#
#   scripts/kube-apiserver.sh        build if missing, print the binary's path
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# replaces every staging module (k8s.io/api, k8s.io/apiserver, …) with a
# directory of its own tree. A throwaway module requires it and pins each
# staging module to its published v0.X.Y instead; the version string
# (`kube-apiserver --version`, /version) is set with -ldflags as the release
# build does.
set -euo pipefail
cd "$(dirname "$0")/.."
client=$(go list -m -f '{{.Version}}' k8s.io/client-go) # v0.37.2
kube=v1.${client#v0.}
minor=${client#v0.}
minor=${minor%%.*}
cache=${CONNPROBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connprobe}
bin=$cache/kube-apiserver-$kube
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "Kubernetes $kube"; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "kube-apiserver.sh: building kube-apiserver $kube (cached as $bin)" >&2
dir=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$kube" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "kube-apiserver.sh: cannot download k8s.io/kubernetes@$kube" >&2; exit 1; }
goversion=$(sed -n 's/^go //p' "$dir/go.mod")
{
	echo "module connprobe.invalid/kube-apiserver"
	echo
	echo "go $goversion"
	echo
	echo "require k8s.io/kubernetes $kube"
	echo
	echo "replace ("
	# Every staging module of the replace block, at its published version.
	sed -n '/^replace (/,/^)/p' "$dir/go.mod" |
		awk -v v="$client" '$1 ~ /^k8s\.io\// && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}'
	echo ")"
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
cd "$work"
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kube-apiserver@$kube" >&2
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
	k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "$bin"
