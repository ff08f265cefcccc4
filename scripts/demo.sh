#!/usr/bin/env bash
# The main job on a machine without a TPM: set up (idempotent), build, start the
# simulator TPM, create a virtual smart card on it, show it, and list the cards.
# The store is target/demo-store unless TPMVSC_STORE says otherwise; run it again to
# start over. Stop the simulator with: target/release/tpmvsc simulator stop
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
export TPMVSC_STORE="${TPMVSC_STORE:-$PWD/target/demo-store}"
export TSS2_LOG=all+NONE

echo "== starting the simulated TPM (state in $TPMVSC_STORE/simulator)"
eval "$($bin/tpmvsc simulator start)"
echo "TPMVSC_TCTI=$TPMVSC_TCTI"

if $bin/tpmvsc info demo >/dev/null 2>&1; then
  echo "== removing the card of an earlier run"
  $bin/tpmvsc destroy demo --yes
fi
echo "== creating card 'demo' (default PIN 12345678, PUK 12345678, no admin key)"
$bin/tpmvsc create --name demo --puk default
echo "== the same with the Windows syntax"
if $bin/tpmvsc info win-demo >/dev/null 2>&1; then $bin/tpmvsc destroy win-demo --yes; fi
$bin/tpmvscmgr create /name win-demo /AdminKey RANDOM /PIN DEFAULT /generate
echo "== card details"
$bin/tpmvsc info demo
echo "== cards in the store"
$bin/tpmvsc list
