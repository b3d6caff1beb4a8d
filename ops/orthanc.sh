#!/usr/bin/env bash
# A real DICOM peer for radstream's tests, demo and development: Orthanc (a PACS) and dcmtk
# (storescu, echoscu), from Debian's packages (installed when missing).
#
#   ops/orthanc.sh up|down|status|logs
#
# Orthanc runs as a plain process (never the packaged system service) with a generated
# configuration: its own HTTP and DICOM ports on 127.0.0.1 (free ports chosen at the first `up`
# and kept; ORTHANC_HTTP_PORT / ORTHANC_DICOM_PORT override them), AE title ORTHANC_AET (default
# ORTHANC), storage, index, log and pid under <repo>/.state/orthanc. radstream is registered as
# the modality "radstream" in both directions: Orthanc sends to it (/modalities/radstream/store)
# and accepts C-STORE from it (radstream's result reports). Its AE title and port follow
# RADSTREAM_DICOM__AE_TITLE / RADSTREAM_DICOM__PORT (defaults RADSTREAM, 11112); tests move the
# port at run time through Orthanc's REST API. `up` writes the ports to peer.env for the tests.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
STATE="${RADSTREAM_STATE_DIR:-$REPO/.state}/orthanc"
PIDFILE="$STATE/orthanc.pid"
LOG="$STATE/orthanc.log"
CONFIG="$STATE/orthanc.json"
PEER_ENV="$STATE/peer.env"
READY_TIMEOUT_SECONDS=60

log() { printf 'orthanc: %s\n' "$*" >&2; }
# shellcheck source=ops/ports.sh
source "$REPO/ops/ports.sh"
# shellcheck source=ops/processes.sh
source "$REPO/ops/processes.sh"

install_missing() {
  local need=()
  command -v Orthanc >/dev/null 2>&1 || [[ -x /usr/sbin/Orthanc ]] || need+=(orthanc)
  command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
  if ((${#need[@]})); then
    local sudo=""; [[ $EUID -ne 0 ]] && sudo="sudo"
    log "installing ${need[*]} from Debian's packages"
    $sudo apt-get update -qq
    # The package's own service is not started (no service manager here): we run Orthanc below.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

orthanc_bin() { command -v Orthanc 2>/dev/null || echo /usr/sbin/Orthanc; }

# Only an Orthanc process counts.
running_pid() { pid_running_as "$PIDFILE" 'Orthanc'; }

choose_ports() {
  # Ports chosen once are kept, so a restarted Orthanc is where the tests expect it.
  if [[ -f "$PEER_ENV" ]]; then
    # shellcheck disable=SC1090
    source "$PEER_ENV"
  fi
  HTTP_PORT="${ORTHANC_HTTP_PORT_OVERRIDE:-${ORTHANC_HTTP_PORT:-$(free_port)}}"
  DICOM_PORT="${ORTHANC_DICOM_PORT_OVERRIDE:-${ORTHANC_DICOM_PORT:-$(free_port)}}"
  AET="${ORTHANC_AET_OVERRIDE:-${ORTHANC_AET:-ORTHANC}}"
}

write_config() {
  mkdir -p "$STATE/storage" "$STATE/index"
  local radstream_aet="${RADSTREAM_DICOM__AE_TITLE:-RADSTREAM}"
  local radstream_port="${RADSTREAM_DICOM__PORT:-11112}"
  cat >"$CONFIG" <<JSON
{
  "Name": "radstream-test-pacs",
  "StorageDirectory": "$STATE/storage",
  "IndexDirectory": "$STATE/index",
  "HttpServerEnabled": true,
  "HttpPort": $HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": true,
  "DicomAet": "$AET",
  "DicomPort": $DICOM_PORT,
  "DicomCheckCalledAet": true,
  "DicomAlwaysAllowStore": false,
  "DicomAlwaysAllowEcho": true,
  "DicomModalitiesInDatabase": false,
  "DicomModalities": {
    "radstream": ["$radstream_aet", "127.0.0.1", $radstream_port]
  },
  "DicomScuTimeout": 10,
  "Plugins": [],
  "SaveJobs": false,
  "StableAge": 2,
  "ConcurrentJobs": 2
}
JSON
  cat >"$PEER_ENV" <<ENV
ORTHANC_HTTP_PORT=$HTTP_PORT
ORTHANC_DICOM_PORT=$DICOM_PORT
ORTHANC_AET=$AET
ENV
}

up() {
  install_missing
  mkdir -p "$STATE"
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"; cat "$PEER_ENV"; return 0
  fi
  # Explicit settings from the environment win over the ports remembered in peer.env.
  ORTHANC_HTTP_PORT_OVERRIDE="${ORTHANC_HTTP_PORT:-}"
  ORTHANC_DICOM_PORT_OVERRIDE="${ORTHANC_DICOM_PORT:-}"
  ORTHANC_AET_OVERRIDE="${ORTHANC_AET:-}"
  choose_ports
  for port in "$HTTP_PORT" "$DICOM_PORT"; do
    if port_open "$port"; then log "port $port is in use; set ORTHANC_HTTP_PORT / ORTHANC_DICOM_PORT"; exit 1; fi
  done
  write_config
  log "starting Orthanc: HTTP 127.0.0.1:$HTTP_PORT, DICOM $AET@127.0.0.1:$DICOM_PORT"
  nohup "$(orthanc_bin)" "$CONFIG" --logfile="$LOG" >"$STATE/stderr.log" 2>&1 </dev/null &
  local started=$!
  echo "$started" >"$PIDFILE"
  local tries=$((READY_TIMEOUT_SECONDS * 4))
  for _ in $(seq "$tries"); do
    if port_open "$HTTP_PORT" && port_open "$DICOM_PORT"; then log "ready"; cat "$PEER_ENV"; return 0; fi
    # kill -0, not running_pid: until the child has exec'd, its command line is still bash's.
    if ! kill -0 "$started" 2>/dev/null; then
      log "Orthanc exited during start-up; last log lines:"
      tail -n 40 "$LOG" "$STATE/stderr.log" >&2 2>/dev/null || true; exit 1
    fi
    sleep 0.25
  done
  log "Orthanc did not open its ports within ${READY_TIMEOUT_SECONDS} s"; tail -n 40 "$LOG" >&2 || true
  exit 1
}

down() {
  local pid
  if ! pid="$(running_pid)"; then log "not running"; rm -f "$PIDFILE"; return 0; fi
  log "stopping Orthanc (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "forcing stop"; kill -KILL "$pid"; fi
  rm -f "$PIDFILE"
}

status() {
  if pid="$(running_pid)"; then
    echo "orthanc: running (pid $pid)"; cat "$PEER_ENV"; return 0
  fi
  echo "orthanc: stopped"; return 3
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  logs) tail -n "${2:-100}" "$LOG" ;;
  *) echo "usage: $0 up|down|status|logs [N]" >&2; exit 2 ;;
esac
