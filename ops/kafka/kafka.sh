#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback,
# assembled from Maven Central jars (ops/kafka/pom.xml) and run with the machine's Java 17.
#
#   ops/kafka/kafka.sh up|down|status|logs|reset [--secure]
#   ops/kafka/kafka.sh material --secure    # the secure profile's files only (docker compose)
#
# State lives under <repo>/.state/kafka (ignored by git): lib/ (the jars), data/ (log.dirs),
# server.properties, broker.log, broker.pid. `up` is idempotent; `down` stops only the broker
# whose pid it recorded. `up` appends to broker.log (the previous run's lines are the evidence
# of what happened to it) and rotates it first when it is larger than
# RADSTREAM_KAFKA_LOG_MAX_BYTES (default 50 MiB), keeping broker.log.1 .. broker.log.5.
# Port: RADSTREAM_KAFKA_PORT (default 9092), controller port
# RADSTREAM_KAFKA_CONTROLLER_PORT (default 9093).
#
# The secure profile (`--secure`, or RADSTREAM_KAFKA_PROFILE=secure; docs/security.md) is a
# second broker beside the plain one: state in .state/kafka-secure, default ports 9094/9095, one
# SASL_SSL listener (SCRAM-SHA-512 over TLS 1.2+), the StandardAuthorizer denying whatever no
# ACL allows. Its first `up` generates a CA, the broker's certificate (openssl) and a random
# password per SCRAM user (admin, and each principal of streams/acls.py), creates the users when
# formatting the storage (KIP-900), and writes one env file per user under
# .state/kafka-secure/clients/ (mode 600; `source` it to act as that principal). Every `up`
# then ensures the topics and applies the ACLs as admin with the project's radstream command
# (RADSTREAM_BIN, default <repo>/.venv/bin/radstream; `make setup` first), for the
# RADSTREAM_TOPIC_PREFIX / RADSTREAM_CONSUMER_GROUP_PREFIX in the environment.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ACTION="${1:-}"
PROFILE="${RADSTREAM_KAFKA_PROFILE:-plain}"
LINES=100
for arg in "${@:2}"; do
  case "$arg" in
    --secure) PROFILE=secure ;;
    *[!0-9]*|'') echo "kafka: unknown argument '$arg'" >&2; exit 2 ;;
    *) LINES="$arg" ;;
  esac
done
case "$PROFILE" in plain|secure) ;; *) echo "kafka: RADSTREAM_KAFKA_PROFILE must be plain or secure" >&2; exit 2 ;; esac
STATE_ROOT="${RADSTREAM_STATE_DIR:-$REPO/.state}"
# Both profiles run the same jars (ops/kafka/pom.xml), fetched once.
LIB="$STATE_ROOT/kafka/lib"
if [[ "$PROFILE" == secure ]]; then
  STATE="$STATE_ROOT/kafka-secure"
  PORT="${RADSTREAM_KAFKA_PORT:-9094}"
  CPORT="${RADSTREAM_KAFKA_CONTROLLER_PORT:-9095}"
else
  STATE="$STATE_ROOT/kafka"
  PORT="${RADSTREAM_KAFKA_PORT:-9092}"
  CPORT="${RADSTREAM_KAFKA_CONTROLLER_PORT:-9093}"
fi
TLS="$STATE/tls"
SECRETS="$STATE/secrets"
CLIENTS="$STATE/clients"
RADSTREAM_BIN="${RADSTREAM_BIN:-$REPO/.venv/bin/radstream}"
PIDFILE="$STATE/broker.pid"
LOG="$STATE/broker.log"
LOG_MAX_BYTES="${RADSTREAM_KAFKA_LOG_MAX_BYTES:-52428800}"
LOG_KEEP=5
# Small-machine JVM: the broker needs little heap for a single-node development cluster;
# SerialGC and C1-only JIT cut start-up time and memory on 2 cores.
JVM_OPTS="${RADSTREAM_KAFKA_JVM_OPTS:--Xms256m -Xmx512m -XX:MaxMetaspaceSize=192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}"

log() { printf 'kafka%s: %s\n' "$([[ "$PROFILE" == secure ]] && echo ' (secure)')" "$*" >&2; }

rotate_log() {
  [[ -f "$LOG" ]] || return 0
  (( $(stat -c %s "$LOG") > LOG_MAX_BYTES )) || return 0
  local i
  for (( i = LOG_KEEP - 1; i >= 1; i-- )); do
    [[ -f "$LOG.$i" ]] && mv -f "$LOG.$i" "$LOG.$((i + 1))"
  done
  mv -f "$LOG" "$LOG.1"
}

# shellcheck source=ops/ports.sh
source "$REPO/ops/ports.sh"
# shellcheck source=ops/processes.sh
source "$REPO/ops/processes.sh"

# Only a java process running kafka.Kafka counts.
running_pid() { pid_running_as "$PIDFILE" 'kafka.Kafka'; }

fetch_jars() {
  local stamp="$LIB/.pom.sha256" want
  want="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  command -v java >/dev/null || { log "java (>= 17) is required"; exit 1; }
  command -v mvn >/dev/null || { log "maven is required to fetch the broker jars"; exit 1; }
  log "fetching Kafka jars from Maven Central (first run only)"
  rm -rf "$LIB"; mkdir -p "$LIB"
  # -B and style.color=never turn Maven's colours off, yet its console library (Jansi 2, as in
  # Debian's Maven 3.8) still writes ANSI resets ("ESC[0m") to stdout and stderr; jansi.noreset
  # drops them. A JVM property, so MAVEN_OPTS: a -D argument is read after the console is set up.
  MAVEN_OPTS="${MAVEN_OPTS:+$MAVEN_OPTS }-Djansi.noreset=true" \
      mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIB" -DincludeScope=runtime
  echo "$want" >"$stamp"
}

write_plain_listeners() {
  cat >"$STATE/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
}

# ------------------------------------------------------------------ secure profile material
SCRAM_USERS() { "$RADSTREAM_BIN" topics acls --principals; }

secret() { cat "$SECRETS/$1.password"; }

make_secret() {  # a random password per user, generated once, readable by this user only
  [[ -s "$SECRETS/$1.password" ]] && return 0
  openssl rand -hex 24 >"$SECRETS/$1.password"
  chmod 600 "$SECRETS/$1.password"
}

make_tls() {  # a private CA and the broker's certificate for 127.0.0.1/localhost, once
  [[ -s "$TLS/broker.p12" ]] && return 0
  log "generating a CA and the broker's certificate"
  local days="${RADSTREAM_KAFKA_CERT_DAYS:-825}"
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$days" -subj "/CN=radstream local CA" \
      -keyout "$TLS/ca.key" -out "$TLS/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
  openssl req -newkey rsa:3072 -nodes -sha256 -subj "/CN=radstream-kafka" \
      -keyout "$TLS/broker.key" -out "$TLS/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
      "${RADSTREAM_KAFKA_CERT_SAN:+,$RADSTREAM_KAFKA_CERT_SAN}" >"$TLS/broker.ext"
  openssl x509 -req -in "$TLS/broker.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
      -CAcreateserial -days "$days" -sha256 -extfile "$TLS/broker.ext" -out "$TLS/broker.pem" \
      2>/dev/null
  make_secret keystore
  openssl pkcs12 -export -in "$TLS/broker.pem" -inkey "$TLS/broker.key" -name broker \
      -out "$TLS/broker.p12" -passout "file:$SECRETS/keystore.password"
  chmod 600 "$TLS"/*.key "$TLS/broker.p12"
}

write_secure_listeners() {
  local admin controller keystore
  admin="$(secret admin)"; controller="$(secret controller)"; keystore="$(secret keystore)"
  # The passwords are in this file: readable by this user only.
  install -m 600 /dev/null "$STATE/server.properties"
  cat >"$STATE/server.properties" <<EOF
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
# The controller listener stays on loopback, authenticated with a static PLAIN user: SCRAM
# users live in the metadata the controller serves, so the controller cannot rely on them.
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller" user_controller="$controller";
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$keystore
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
EOF
}

write_client_envs() {
  local user
  for user in admin $(SCRAM_USERS); do write_client_env "$user"; done
}

write_client_env() {  # one env file per SCRAM user: what a process of that role exports
  local user="$1"
  install -m 600 /dev/null "$CLIENTS/$user.env"
  cat >"$CLIENTS/$user.env" <<EOF
RADSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:$PORT
RADSTREAM_KAFKA__SECURITY_PROTOCOL=SASL_SSL
RADSTREAM_KAFKA__SASL_MECHANISM=SCRAM-SHA-512
RADSTREAM_KAFKA__SASL_USERNAME=$user
RADSTREAM_KAFKA__SASL_PASSWORD=$(secret "$user")
RADSTREAM_KAFKA__SSL_CAFILE=$TLS/ca.pem
RADSTREAM_KAFKA__MANAGE_TOPICS=false
EOF
}

prepare_secure() {
  [[ -x "$RADSTREAM_BIN" ]] || { log "$RADSTREAM_BIN is missing: run 'make setup' first"; exit 1; }
  command -v openssl >/dev/null || { log "openssl is required for the secure profile"; exit 1; }
  mkdir -p "$TLS" "$SECRETS" "$CLIENTS"
  chmod 700 "$TLS" "$SECRETS" "$CLIENTS"
  local user
  for user in admin controller $(SCRAM_USERS); do make_secret "$user"; done
  make_tls
}

scram_arguments() {  # --add-scram for admin and every principal (format time, KIP-900)
  local user
  for user in admin $(SCRAM_USERS); do
    printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n' "$user" "$(secret "$user")"
  done
}

grant_secure() {  # topics and ACLs for this deployment's prefixes, as the super user
  write_client_envs
  (
    set -a
    # shellcheck disable=SC1091
    source "$CLIENTS/admin.env"
    set +a
    "$RADSTREAM_BIN" topics ensure >/dev/null
    "$RADSTREAM_BIN" topics acls --apply >/dev/null
  ) || { log "could not create the topics or ACLs (see the line above)"; exit 1; }
  log "topics and ACLs in place; client settings in $CLIENTS/<principal>.env"
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
  if [[ "$PROFILE" == secure ]]; then write_secure_listeners; else write_plain_listeners; fi
  cat >>"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
controller.listener.names=CONTROLLER
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
    log "already running (pid $pid) on 127.0.0.1:$PORT"
    if [[ "$PROFILE" == secure ]]; then grant_secure; fi
    return 0
  fi
  if port_open "$PORT"; then
    log "port $PORT is in use by another process; set RADSTREAM_KAFKA_PORT or stop it"; exit 1
  fi
  fetch_jars
  [[ "$PROFILE" == secure ]] && prepare_secure
  write_config
  local cp="$LIB/*"   # quoted: the JVM expands the wildcard, not the shell
  if [[ ! -f "$STATE/data/meta.properties" ]]; then
    local cluster_id scram=()
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    [[ "$PROFILE" == secure ]] && mapfile -t scram < <(scram_arguments)
    # shellcheck disable=SC2086
    java $JVM_OPTS -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$STATE/server.properties" "${scram[@]}" >"$STATE/format.log" 2>&1 \
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
  # (SocketServer defers the acceptor), so a listening socket on the port means ready.
  for _ in $(seq 240); do
    if port_open "$PORT" && running_pid >/dev/null; then
      log "ready"
      if [[ "$PROFILE" == secure ]]; then grant_secure; fi
      return 0
    fi
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

case "$ACTION" in
  up) up ;;
  material)  # secure profile only: certificates, passwords and client env files, no broker
    [[ "$PROFILE" == secure ]] || { log "material is for the secure profile (--secure)"; exit 2; }
    prepare_secure
    write_client_envs
    log "certificates in $TLS, client settings in $CLIENTS/<principal>.env" ;;
  down) down ;;
  status) status ;;
  logs) tail -n "$LINES" "$LOG" ;;
  reset) down; rm -rf "$STATE/data" ;;
  *) echo "usage: $0 up|down|status|logs [N]|reset [--secure] | material --secure" >&2; exit 2 ;;
esac
