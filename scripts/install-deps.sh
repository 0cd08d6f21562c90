#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: the packages listed
# in .ci/packages.txt (only the missing ones) and nothing else. With the
# argument "demo", only those marked demo (what `make demo` needs).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-}
want=$(grep -v '^\s*#' .ci/packages.txt | awk -v tag="$tag" 'NF && (tag == "" || $2 == tag) {print $1}')
missing=()
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages ${missing[*]}; run as root" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
