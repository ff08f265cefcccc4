#!/usr/bin/env bash
# Builds the Debian package target/debian/tpmvsc_<version>_amd64.deb: the release
# binaries and module, man pages and shell completions generated from the clap
# definitions, then `cargo deb`. Sets the machine up first (idempotent), and installs
# cargo-deb when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install --locked cargo-deb
fi
cargo build --locked --release --bins --lib
cargo run --locked --release --example gen_docs -- target/docs
cargo deb --no-build --locked
ls -1 target/debian/tpmvsc_*.deb
