# Loopback TCP ports for the services ops/ starts (sourced by kafka.sh and orthanc.sh).
#
# Both functions stay clear of the kernel's ephemeral port range. A port in it can be taken at
# any moment as the source port of some outgoing connection, and a client retrying a connect to
# such a port while nothing listens can connect to itself (TCP simultaneous open) — the ready
# check then says "up" for a service that cannot bind its port. tests/ports.py picks the same way.

# Whether something listens on the port, read from the kernel's socket tables (never by
# connecting, for the reason above).
port_open() { port_listed "$1" 0A; }   # 0A: TCP_LISTEN

# Whether a listening, connected or closing socket has the port as its local port (a socket
# that is only bound is not in the tables; a server binds and listens at once).
port_taken() { port_listed "$1"; }

# Whether /proc/net/tcp{,6} has a socket on local port $1, in state $2 (hex) when given.
port_listed() {
  awk -v port="$(printf ':%04X' "$1")" -v state="${2:-}" \
      'FNR > 1 && (state == "" || $4 == state) && substr($2, length($2) - 4) == port { found = 1 }
       END { exit !found }' \
      /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port no socket uses now, between 20000 and the start of the ephemeral range.
free_port() {
  local low port _
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  (( low > 20100 )) || low=32768
  for _ in $(seq 200); do
    port=$(( 20000 + RANDOM % (low - 20000) ))
    if ! port_taken "$port"; then echo "$port"; return 0; fi
  done
  echo "no free port between 20000 and $low" >&2; return 1
}
