#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's `prometheus` package into
# $QRANK_CI_HOME/prometheus/, once: the package is downloaded and unpacked, not installed, so no
# service is started and nothing outside $QRANK_CI_HOME changes. promtool parses the chart's
# alerts and dashboard (helm-check.sh); the server scrapes a running `qrank serve` in the
# dashboard's integration test (tests/tests/service_dashboard.rs), on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/lib.sh

PROMETHEUS_DEB=prometheus
dir="$QRANK_CI_HOME/prometheus"

if [ -x "$dir/prometheus" ] && [ -x "$dir/promtool" ]; then
    exit 0
fi
log "installing prometheus and promtool from Debian's $PROMETHEUS_DEB package into $dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0777 "$tmp" # apt's download user writes here
if ! (cd "$tmp" && apt-get download "$PROMETHEUS_DEB" >/dev/null 2>&1); then
    as_root apt-get update -qq
    (cd "$tmp" && apt-get download "$PROMETHEUS_DEB" >/dev/null)
fi
dpkg-deb -x "$tmp"/"$PROMETHEUS_DEB"_*.deb "$tmp/root"
mkdir -p "$dir"
install -m 0755 "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$dir/"
log "$("$dir/prometheus" --version 2>&1 | head -n 1)"
