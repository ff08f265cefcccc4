#!/usr/bin/env bash
# The main job on a machine without a TPM: set up (idempotent), build, start the
# simulator TPM, create virtual smart cards on it (both syntaxes), then the enrollment
# walkthrough on card "demo": a key generated in the TPM, a certificate request signed by
# it, a throwaway local CA that signs the request, the certificate imported next to its
# key; then the card at work: TLS handshakes with OpenSSL 3 + pkcs11-provider and an ssh
# login to a private sshd on 127.0.0.1 (examples/openssl-sign-and-tls.sh and
# examples/ssh-login.sh, run as they are); and finally the list of cards.
# The store is target/demo-store unless TPMVSC_STORE says otherwise, the scratch files
# (CA, requests, sshd config and logs) go to <store>-work (TPMVSC_DEMO_WORK); run it again
# to start over. Ports: SSH_PORT (default 2222), TLS_PORT and TLS_PORT+1 (default 8443).
# The simulator it starts is stopped again at the end (also on failure); set
# TPMVSC_DEMO_KEEP=1 to keep it running for your own commands afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
# TPMVSC_DEMO_BIN (used by the test suite) names already built binaries and skips the
# set-up and the release build.
if [ -n "${TPMVSC_DEMO_BIN:-}" ]; then
  bin="$TPMVSC_DEMO_BIN"
else
  bash scripts/setup.sh
  cargo build --release --locked
  bin=target/release
fi
bin=$(cd "$bin" && pwd)        # absolute: the examples run in their own directories
export PATH="$bin:$PATH"       # the examples call `tpmvsc`: this build's
export TPMVSC_STORE="${TPMVSC_STORE:-$PWD/target/demo-store}"
export TPMVSC_MODULE="$bin/libtpmvsc.so"
export TSS2_LOG=all+NONE
work="${TPMVSC_DEMO_WORK:-$TPMVSC_STORE-work}"
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
echo 12345678 > "$work/pin"    # the card's PIN (the default one)
export PIN_FILE="$work/pin"

echo "== starting the simulated TPM (state in $TPMVSC_STORE/simulator)"
eval "$(tpmvsc simulator start)"
if [ -z "${TPMVSC_DEMO_KEEP:-}" ]; then
  trap 'echo "== stopping the simulated TPM"; tpmvsc simulator stop' EXIT
else
  echo "(keeping the simulator: stop it with TPMVSC_STORE=$TPMVSC_STORE $bin/tpmvsc simulator stop)"
fi
echo "TPMVSC_TCTI=$TPMVSC_TCTI"

if tpmvsc info demo >/dev/null 2>&1; then
  echo "== removing the card of an earlier run"
  tpmvsc destroy demo --yes
fi
echo "== creating card 'demo' (default PIN 12345678, PUK 12345678, no admin key)"
tpmvsc create --name demo --puk default
echo "== the same with the Windows syntax"
if tpmvsc info win-demo >/dev/null 2>&1; then tpmvsc destroy win-demo --yes; fi
tpmvscmgr create /name win-demo /AdminKey RANDOM /PIN DEFAULT /generate
echo "== card details"
tpmvsc info demo

echo "== generating an EC P-256 key 'alice' inside the TPM, on card 'demo'"
tpmvsc keygen demo --type ec-p256 --label alice --pin-file "$PIN_FILE"
tpmvsc keys demo

# Steps 3-5 of this example are the enrollment (tpmvsc csr -> a throwaway CA signs it ->
# tpmvsc import-cert) and the TLS handshakes with the card key on either side.
echo "== enrollment and TLS with OpenSSL 3 + pkcs11-provider (examples/openssl-sign-and-tls.sh)"
mkdir -p "$work/tls"
CARD=demo KEY=alice PORT="${TLS_PORT:-8443}" WORKDIR="$work/tls" \
  bash "$PWD/examples/openssl-sign-and-tls.sh"

echo "== ssh login to a private sshd on 127.0.0.1 with the card key (examples/ssh-login.sh)"
mkdir -p "$work/ssh"
CARD=demo KEY=alice PORT="${SSH_PORT:-2222}" WORKDIR="$work/ssh" \
  bash "$PWD/examples/ssh-login.sh"

echo "== the certificate on card 'demo'"
tpmvsc certs demo
echo "== cards in the store"
tpmvsc list
