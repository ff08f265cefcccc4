#!/usr/bin/env bash
# Installs everything tpmvsc needs on Debian 12 (bookworm): the TSS libraries to build
# against, swtpm for the simulator and the tests, tpm2-abrmd, and the PKCS#11 clients the
# interop tests drive. Idempotent: packages already present are left alone, and apt is
# only consulted when something is missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  build-essential pkg-config ca-certificates curl git
  libtss2-dev libtss2-tcti-tabrmd0 tpm2-abrmd tpm2-tools
  swtpm swtpm-tools dbus dbus-bin iproute2 strace
  opensc libnss3-tools gnutls-bin openssl openssh-client openssh-server p11-kit
  firefox-esr
  libtpm2-pkcs11-1 libtpm2-pkcs11-tools
  dpkg-dev man-db
)
backports_packages=(pkcs11-provider)

# bookworm-backports carries pkcs11-provider. Its mirror is whatever the machine's own
# debian.sources uses for bookworm, so no host name is written here.
add_backports() {
  local list=/etc/apt/sources.list.d/tpmvsc-backports.sources
  local src=/etc/apt/sources.list.d/debian.sources
  [ -f "$list" ] && return 0
  local uri=""
  if [ -f "$src" ]; then
    # First URIs line of the stanza whose Suites include plain "bookworm".
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ { if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$src")
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "setup: cannot find the Debian mirror in $src; add bookworm-backports by hand" >&2
    return 1
  fi
  $SUDO tee "$list" >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  NEED_UPDATE=1
}

missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

NEED_UPDATE=0
add_backports
want=$(missing "${packages[@]}")
want_bp=$(missing "${backports_packages[@]}")
if [ -n "$want$want_bp" ] || [ "$NEED_UPDATE" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if [ -n "$want" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $want
  fi
  if [ -n "$want_bp" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports $want_bp
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
