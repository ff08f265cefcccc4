#!/usr/bin/env bash
# Sets up a Debian 12 machine (idempotent) and runs every test: unit tests and the
# integration tests, each against its own swtpm. One process per test (cargo nextest),
# because the PKCS#11 module is a per-process singleton configured by environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TSS2_LOG=all+NONE
cargo build --locked --all-targets
# The Debian package, for the test that installs and removes it (tests/package.rs).
bash scripts/package.sh
cargo nextest run --locked --no-fail-fast
