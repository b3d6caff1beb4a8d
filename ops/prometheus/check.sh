#!/usr/bin/env bash
# Validate radstream's Prometheus files: rule syntax, rule unit tests and both scrape configs.
# Needs promtool (Debian: `apt-get install prometheus`); set PROMTOOL to use another binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PROMTOOL="${PROMTOOL:-promtool}"
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "promtool not found (apt-get install prometheus, or set PROMTOOL)" >&2
    exit 127
fi
"$PROMTOOL" check rules alerts.yml
"$PROMTOOL" test rules alerts_test.yml
"$PROMTOOL" check config prometheus.yml
# The Compose config names the rules by their path inside the container: check a copy that
# points at this folder's file instead.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/etc/prometheus/alerts.yml#$PWD/alerts.yml#" prometheus.docker.yml >"$tmp/prometheus.docker.yml"
"$PROMTOOL" check config "$tmp/prometheus.docker.yml"
