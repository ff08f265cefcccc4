#!/usr/bin/env bash
# OpenSSL 3 + pkcs11-provider with a key on a tpmvsc card, end to end:
#   1. sign a digest with the card key and verify it with the exported public key;
#   2. a CSR made by `openssl req` with the card key;
#   3. enrollment: `tpmvsc csr` → a throwaway local CA signs it → the certificate's public
#      key is the card key's → `tpmvsc import-cert` puts it on the card;
#   4. TLS on 127.0.0.1 with the card key as the server's key;
#   5. TLS with the card key as the client's key (client authentication).
#
#   eval "$(tpmvsc simulator env)"             # or a real TPM
#   CARD=work bash examples/openssl-sign-and-tls.sh
#
# Environment: CARD (required); KEY (the key's label, default "tls": generated as ec-p256
# when the card has no such key); PIN_FILE (the PIN on its first line; default: the
# default PIN 12345678); TPMVSC_MODULE (default: the installed module); PORT (default
# 8443; the client-auth server uses PORT+1); WORKDIR (default: a new temp dir).
set -euo pipefail

: "${CARD:?set CARD to the card name}"
KEY=${KEY:-tls}
PORT=${PORT:-8443}
export TPMVSC_MODULE=${TPMVSC_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so}
export TSS2_LOG=${TSS2_LOG:-all+NONE}   # libtss2 would print every failed TPM command
# Before the cd below: $0 may be a relative path.
CNF=$(cd "$(dirname "$0")" && pwd)/openssl-pkcs11-provider.cnf
WORKDIR=${WORKDIR:-$(mktemp -d)}
cd "$WORKDIR"
if [ -z "${PIN_FILE:-}" ]; then
    PIN_FILE=$WORKDIR/pin
    echo 12345678 > "$PIN_FILE"
fi
export TPMVSC_PIN_FILE=$PIN_FILE         # read by the .cnf below
# openssl with pkcs11-provider loaded: pkcs11: URIs name card objects.
p11ssl() { OPENSSL_CONF=$CNF openssl "$@"; }
PRIV="pkcs11:token=$CARD;object=$KEY;type=private"
PUB="pkcs11:token=$CARD;object=$KEY;type=public"

# (Not `tpmvsc keys | grep -q`: with pipefail, grep exiting early would fail the pipe.)
if ! grep -q "\"label\": \"$KEY\"" <<< "$(tpmvsc keys "$CARD" --json)"; then
    tpmvsc keygen "$CARD" --type ec-p256 --label "$KEY" --pin-file "$PIN_FILE"
fi

echo "== 1. sign with the card key, verify with its public key"
p11ssl pkey -pubin -in "$PUB" -pubout -out card.pub.pem
echo "data to sign" | openssl dgst -sha256 -binary -out digest
p11ssl pkeyutl -sign -inkey "$PRIV" -in digest -out digest.sig
openssl pkeyutl -verify -pubin -inkey card.pub.pem -in digest -sigfile digest.sig

echo "== 2. a certificate request made by openssl req with the card key"
p11ssl req -new -key "$PRIV" -subj "/CN=openssl-req" -out openssl.csr
openssl req -in openssl.csr -verify -noout

echo "== 3. enrollment: tpmvsc csr -> CA -> tpmvsc import-cert"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=Throwaway Test CA" -keyout ca.key -out ca.pem 2>/dev/null
tpmvsc csr "$CARD" --key "$KEY" --subject "CN=$CARD card,O=Example" \
    --san dns:localhost --out card.csr --pin-file "$PIN_FILE"
openssl x509 -req -in card.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -copy_extensions copy -out card.pem
openssl x509 -in card.pem -noout -pubkey > cert.pub.pem
cmp cert.pub.pem card.pub.pem && echo "certificate public key = card public key"
tpmvsc import-cert "$CARD" card.pem
tpmvsc certs "$CARD"

# Starts `openssl s_server ... -naccept 1 -www` in the background (log: $1.log) and
# waits until it listens: it answers one HTTP request with a status page and exits.
start_server() {
    local log=$1; shift
    "$@" -naccept 1 -www > "$log.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        grep -q '^ACCEPT' "$log.log" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log.log"; return 1; }
        sleep 0.1
    done
    echo "s_server did not start"; cat "$log.log"; return 1
}
trap '[ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
http_get() { printf 'GET / HTTP/1.0\r\n\r\n'; }

echo "== 4. TLS: the server key is on the card"
start_server card-server env OPENSSL_CONF="$CNF" openssl s_server -accept "127.0.0.1:$PORT" -key "$PRIV" -cert card.pem
http_get | timeout 60 openssl s_client -connect "127.0.0.1:$PORT" -CAfile ca.pem \
    -verify_return_error -verify_hostname localhost -quiet > card-server.out 2>&1 \
    || { cat card-server.out card-server.log; exit 1; }
wait "$SERVER_PID"
grep -q '^HTTP/1.0 200 ok' card-server.out && echo "server-side card key: handshake ok"

echo "== 5. TLS client authentication: the client key is on the card"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -out server.pem 2>/dev/null
start_server client-auth openssl s_server -accept "127.0.0.1:$((PORT + 1))" \
    -key server.key -cert server.pem -Verify 1 -CAfile ca.pem -verify_return_error
http_get | timeout 60 env OPENSSL_CONF="$CNF" openssl s_client \
    -connect "127.0.0.1:$((PORT + 1))" -CAfile ca.pem -verify_return_error \
    -key "$PRIV" -cert card.pem -quiet > client-auth.out 2>&1 \
    || { cat client-auth.out client-auth.log; exit 1; }
wait "$SERVER_PID"
grep -q '^Client certificate' client-auth.out
grep "^depth=0 .*CN = $CARD card" client-auth.log
echo "client-side card key: handshake ok, the server verified the card's certificate"
