#!/usr/bin/env bash
# Generate TLS material for a private PostgreSQL cluster: a CA and a server certificate.
#
#   ops/postgres-tls.sh DIR [HOST_NAME ...]
#
# Writes DIR/ca.crt (give it to clients as RADSTREAM_DATABASE__SSLROOTCERT), DIR/ca.key (keep it
# offline), DIR/server.crt and DIR/server.key (0600: PostgreSQL refuses a key others can read).
# The server certificate names every HOST_NAME (default: localhost and 127.0.0.1) as a
# subjectAltName, which sslmode=verify-full checks against the host the client connects to.
# Start the server with: -c ssl=on -c ssl_cert_file=DIR/server.crt -c ssl_key_file=DIR/server.key
# Existing files are never overwritten. Needs openssl.
set -euo pipefail

die() { printf 'postgres-tls.sh: error: %s\n' "$*" >&2; exit 1; }

DIR="${1:-}"
[[ -n $DIR ]] || die "usage: ops/postgres-tls.sh DIR [HOST_NAME ...]"
shift
HOSTS=("$@")
if [[ ${#HOSTS[@]} -eq 0 ]]; then HOSTS=(localhost 127.0.0.1); fi
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
[[ -e $DIR/server.crt || -e $DIR/ca.crt ]] && die "$DIR already holds certificates"
mkdir -p "$DIR"

SAN=""
for host in "${HOSTS[@]}"; do
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entry="IP:$host"; else entry="DNS:$host"; fi
    SAN="${SAN:+$SAN,}$entry"
done

umask 077
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=radstream PostgreSQL CA" -keyout "$DIR/ca.key" -out "$DIR/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=${HOSTS[0]}" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 825 -out "$DIR/server.crt" \
    -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$SAN") \
    2>/dev/null
rm -f "$DIR/server.csr" "$DIR/ca.srl"
chmod 0644 "$DIR/ca.crt" "$DIR/server.crt"
chmod 0600 "$DIR/server.key" "$DIR/ca.key"
printf 'postgres-tls.sh: wrote %s/{ca.crt,ca.key,server.crt,server.key} for %s\n' "$DIR" "$SAN"
