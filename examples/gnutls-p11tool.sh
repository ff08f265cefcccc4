#!/usr/bin/env bash
# GnuTLS tools with a tpmvsc card:
#   1. `p11tool --list-tokens` / `--list-all`: the card and its public objects;
#   2. `certtool --generate-request` with the card key (a PKCS#10 request for a CA);
#   3. a certificate written to the card (`p11tool --write`) and read back.
#
#   eval "$(tpmvsc simulator env)"             # or a real TPM
#   CARD=work bash examples/gnutls-p11tool.sh
#
# Environment: CARD (required); KEY (the key's label, default "gnutls"; generated as
# ec-p256 when the card has no such key); PIN_FILE (the PIN on its first line; default:
# the default PIN 12345678); TPMVSC_MODULE (default: the installed module; once
# registered with p11-kit (`sudo tpmvsc install`) --provider can be left out);
# WORKDIR (default: a new temp dir).
set -euo pipefail

: "${CARD:?set CARD to the card name}"
KEY=${KEY:-gnutls}
MODULE=${TPMVSC_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so}
export TSS2_LOG=${TSS2_LOG:-all+NONE}   # libtss2 would print every failed TPM command
WORKDIR=${WORKDIR:-$(mktemp -d)}
cd "$WORKDIR"
if [ -z "${PIN_FILE:-}" ]; then
    PIN_FILE=$WORKDIR/pin
    echo 12345678 > "$PIN_FILE"
fi
GNUTLS_PIN=$(head -n1 "$PIN_FILE")      # the GnuTLS tools take the PIN from here
export GNUTLS_PIN
TOKEN="pkcs11:token=$CARD"
PRIV="$TOKEN;object=$KEY;type=private"

# (Not `tpmvsc keys | grep -q`: with pipefail, grep exiting early would fail the pipe.)
if ! grep -q "\"label\": \"$KEY\"" <<< "$(tpmvsc keys "$CARD" --json)"; then
    tpmvsc keygen "$CARD" --type ec-p256 --label "$KEY" --pin-file "$PIN_FILE"
fi

echo "== 1. tokens and objects"
p11tool --provider "$MODULE" --list-tokens
p11tool --provider "$MODULE" --list-all "$TOKEN"

echo "== 2. a certificate request signed by the card key"
cat > request.tmpl <<TMPL
cn = "$CARD certtool request"
organization = "Example"
signing_key
tls_www_client
TMPL
certtool --provider "$MODULE" --generate-request --load-privkey "$PRIV" \
    --template request.tmpl --outfile certtool.csr
openssl req -in certtool.csr -verify -noout -subject

echo "== 3. a certificate written to the card and read back"
# Self-signed by the card key, so the certificate belongs to a key on the card.
certtool --provider "$MODULE" --generate-self-signed --load-privkey "$PRIV" \
    --template request.tmpl --outfile selfsigned.pem
# --id: the key's CKA_ID, so that NSS, ssh and pkcs11-provider pair the certificate with
# its key (p11tool would otherwise take the SHA-1 of the certificate's SubjectPublicKeyInfo).
KEY_ID=$(p11tool --provider "$MODULE" --list-all "$TOKEN;object=$KEY;type=public" \
    | awk '$1 == "ID:" { gsub(":", "", $2); print $2; exit }')
p11tool --provider "$MODULE" --login --write --load-certificate selfsigned.pem \
    --label "$KEY-selfsigned" --id "$KEY_ID" "$TOKEN"
p11tool --provider "$MODULE" --list-all-certs "$TOKEN"
p11tool --provider "$MODULE" --export "$TOKEN;object=$KEY-selfsigned;type=cert" > readback.pem
openssl x509 -in readback.pem -noout -fingerprint -sha256 > readback.fp
openssl x509 -in selfsigned.pem -noout -fingerprint -sha256 > selfsigned.fp
cmp readback.fp selfsigned.fp && echo "certificate read back from the card: identical"
