#!/usr/bin/env bash
# NSS (the crypto library of Firefox and Thunderbird) with a tpmvsc card:
#   1. a fresh NSS database with the module added (`modutil -add`) and listed;
#   2. the card's certificates (`certutil -L -h CARD`: u,u,u = its key is on the card)
#      and keys (`certutil -K -h CARD`);
#   3. a certificate request signed by the card key (`certutil -R -k CKA_ID`).
#
#   eval "$(tpmvsc simulator env)"             # or a real TPM
#   CARD=work bash examples/nss-certutil.sh
#
# Environment: CARD (required); KEY (the key's label, default "nss"; generated as ec-p256
# when the card has no such key); PIN_FILE (the PIN on its first line; default: the
# default PIN 12345678); TPMVSC_MODULE (default: the installed module); NSSDB (an NSS
# database directory, default: a new one in WORKDIR; ~/.pki/nssdb is the user's shared
# one, a Firefox profile directory holds Firefox's); WORKDIR (default: a new temp dir).
set -euo pipefail

: "${CARD:?set CARD to the card name}"
KEY=${KEY:-nss}
MODULE=${TPMVSC_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so}
export TSS2_LOG=${TSS2_LOG:-all+NONE}   # libtss2 would print every failed TPM command
WORKDIR=${WORKDIR:-$(mktemp -d)}
cd "$WORKDIR"
if [ -z "${PIN_FILE:-}" ]; then
    PIN_FILE=$WORKDIR/pin
    echo 12345678 > "$PIN_FILE"
fi
NSSDB=${NSSDB:-$WORKDIR/nssdb}

# (Not `tpmvsc keys | grep -q`: with pipefail, grep exiting early would fail the pipe.)
if ! grep -q "\"label\": \"$KEY\"" <<< "$(tpmvsc keys "$CARD" --json)"; then
    tpmvsc keygen "$CARD" --type ec-p256 --label "$KEY" --pin-file "$PIN_FILE"
fi

echo "== 1. the module in an NSS database"
if [ ! -f "$NSSDB/cert9.db" ]; then
    mkdir -p "$NSSDB"
    certutil -N -d "sql:$NSSDB" --empty-password
fi
modutil -dbdir "sql:$NSSDB" -add tpmvsc -libfile "$MODULE" -force   # -force: no "press enter"
modutil -dbdir "sql:$NSSDB" -list tpmvsc

echo "== 2. the card's certificates and keys (token name = card name)"
certutil -L -d "sql:$NSSDB" -h "$CARD" -f "$PIN_FILE"
certutil -K -d "sql:$NSSDB" -h "$CARD" -f "$PIN_FILE" | tee keys.txt

echo "== 3. a certificate request signed by the card key"
# certutil -K prints "<n> type CKA_ID label"; -k takes that CKA_ID (or a certificate
# nickname such as "$CARD:$KEY" once the key has a certificate).
CKA_ID=$(awk -v k="$KEY" '$1 == "<" && $NF == k { print $4 } $1 ~ /^<[0-9]+>$/ && $NF == k { print $3 }' keys.txt | head -n1)
[ -n "$CKA_ID" ] || { echo "certutil -K does not list key $KEY"; exit 1; }
certutil -R -d "sql:$NSSDB" -h "$CARD" -k "$CKA_ID" -s "CN=$CARD nss request,O=Example" \
    -f "$PIN_FILE" -o nss-request.der
openssl req -inform der -in nss-request.der -verify -noout -subject
