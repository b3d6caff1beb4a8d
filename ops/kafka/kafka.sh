#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback,
# assembled from Maven Central jars (ops/kafka/pom.xml) and run with the machine's Java 17.
#
#   ops/kafka/kafka.sh up|down|status|logs
#
# State lives under <repo>/.state/kafka (ignored by git): lib/ (the jars), data/ (log.dirs),
# server.properties, broker.log, broker.pid. `up` is idempotent; `down` stops only the broker
# whose pid it recorded. `up` appends to broker.log (the previous run's lines are the evidence
# of what happened to it) and rotates it first when it is larger than
# RADSTREAM_KAFKA_LOG_MAX_BYTES (default 50 MiB), keeping broker.log.1 .. broker.log.5.
# Port: RADSTREAM_KAFKA_PORT (default 9092), controller port
# RADSTREAM_KAFKA_CONTROLLER_PORT (default 9093).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE="${RADSTREAM_STATE_DIR:-$REPO/.state}/kafka"
LIB="$STATE/lib"
PORT="${RADSTREAM_KAFKA_PORT:-9092}"
CPORT="${RADSTREAM_KAFKA_CONTROLLER_PORT:-9093}"
PIDFILE="$STATE/broker.pid"
LOG="$STATE/broker.log"
LOG_MAX_BYTES="${RADSTREAM_KAFKA_LOG_MAX_BYTES:-52428800}"
LOG_KEEP=5
# Small-machine JVM: the broker needs little heap for a single-node development cluster;
# SerialGC and C1-only JIT cut start-up time and memory on 2 cores.
JVM_OPTS="${RADSTREAM_KAFKA_JVM_OPTS:--Xms256m -Xmx512m -XX:MaxMetaspaceSize=192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}"

log() { printf 'kafka: %s\n' "$*" >&2; }

rotate_log() {
  [[ -f "$LOG" ]] || return 0
  (( $(stat -c %s "$LOG") > LOG_MAX_BYTES )) || return 0
  local i
  for (( i = LOG_KEEP - 1; i >= 1; i-- )); do
    [[ -f "$LOG.$i" ]] && mv -f "$LOG.$i" "$LOG.$((i + 1))"
  done
  mv -f "$LOG" "$LOG.1"
}

port_open() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  # Only a java process running kafka.Kafka counts: a recycled pid must not be mistaken for it.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka.Kafka'; then
    echo "$pid"; return 0
  fi
  return 1
}

fetch_jars() {
  local stamp="$LIB/.pom.sha256" want
  want="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  command -v java >/dev/null || { log "java (>= 17) is required"; exit 1; }
  command -v mvn >/dev/null || { log "maven is required to fetch the broker jars"; exit 1; }
  log "fetching Kafka jars from Maven Central (first run only)"
  rm -rf "$LIB"; mkdir -p "$LIB"
  mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIB" -DincludeScope=runtime
  echo "$want" >"$stamp"
}

write_config() {
  mkdir -p "$STATE"
  cat >"$STATE/log4j2.yaml" <<'EOF'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
      - name: kafka.log.LogCleaner
        level: WARN
EOF
  cat >"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$STATE/data
num.partitions=1
# 'radstream topics ensure' creates the pipeline's topics with their intended configs (workers
# run it at start-up); auto-creation stays on only for ad-hoc development and test topics.
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
# Single node: the internal topics cannot have the defaults' replication factor 3.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Lets the audit agent's transactions and tests resume quickly after a crash.
transaction.abort.timed.out.transaction.cleanup.interval.ms=10000
EOF
}

up() {
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on 127.0.0.1:$PORT"; return 0
  fi
  if port_open "$PORT"; then
    log "port $PORT is in use by another process; set RADSTREAM_KAFKA_PORT or stop it"; exit 1
  fi
  fetch_jars
  write_config
  local cp="$LIB/*"   # quoted: the JVM expands the wildcard, not the shell
  if [[ ! -f "$STATE/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    # shellcheck disable=SC2086
    java $JVM_OPTS -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$STATE/server.properties" >"$STATE/format.log" 2>&1 \
      || { cat "$STATE/format.log" >&2; exit 1; }
  fi
  log "starting broker on 127.0.0.1:$PORT"
  rotate_log
  printf '[%s] kafka.sh: starting broker on 127.0.0.1:%s\n' "$(date -u +%FT%TZ)" "$PORT" >>"$LOG"
  # shellcheck disable=SC2086
  nohup java $JVM_OPTS -Dlog4j2.configurationFile="$STATE/log4j2.yaml" -cp "$cp" \
      kafka.Kafka "$STATE/server.properties" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  # With a fixed port the broker opens its listener only once it is unfenced and ready
  # (SocketServer defers the acceptor), so a successful TCP connect means ready.
  for _ in $(seq 240); do
    if port_open "$PORT"; then log "ready"; return 0; fi
    if ! running_pid >/dev/null; then
      log "broker exited during start-up; last log lines:"; tail -n 60 "$LOG" >&2; exit 1
    fi
    sleep 0.25
  done
  log "broker did not open port $PORT within 60 s; last log lines:"; tail -n 60 "$LOG" >&2
  exit 1
}

down() {
  local pid
  if ! pid="$(running_pid)"; then log "not running"; rm -f "$PIDFILE"; return 0; fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid"   # Kafka's shutdown hook flushes logs and leaves the quorum cleanly
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "forcing stop"; kill -KILL "$pid"; fi
  rm -f "$PIDFILE"
}

status() {
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then echo "kafka: running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
    echo "kafka: starting (pid $pid)"; return 3
  fi
  echo "kafka: stopped"; return 3
}

# Sourced (tests call its functions): define only.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  logs) tail -n "${2:-100}" "$LOG" ;;
  reset) down; rm -rf "$STATE/data" ;;
  *) echo "usage: $0 up|down|status|logs [N]|reset" >&2; exit 2 ;;
esac
