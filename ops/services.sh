#!/usr/bin/env bash
# Start, stop or check the real services radstream needs on this machine:
# Apache Kafka (KRaft, from Maven Central jars) and PostgreSQL (Debian packages, private cluster).
#
#   ops/services.sh up|down|status
#
# Both keep their state under <repo>/.state. Set RADSTREAM_KAFKA_BOOTSTRAP / RADSTREAM_DATABASE_URL
# to use your own cluster instead; with RADSTREAM_EXTERNAL_SERVICES=1 this script does nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ "${RADSTREAM_EXTERNAL_SERVICES:-0}" == "1" ]]; then
  echo "services: RADSTREAM_EXTERNAL_SERVICES=1, using the configured external Kafka and PostgreSQL"
  exit 0
fi

case "${1:-}" in
  up)
    bash "$HERE/postgres.sh" up
    bash "$HERE/kafka/kafka.sh" up
    ;;
  down)
    bash "$HERE/kafka/kafka.sh" down
    bash "$HERE/postgres.sh" down
    ;;
  status)
    rc=0
    bash "$HERE/kafka/kafka.sh" status || rc=$?
    bash "$HERE/postgres.sh" status || rc=$?
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
