#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Installs the Debian 12 packages needed to build Tally and run the demo,
# and with --test also those the test suite needs (sanitizer runtimes,
# fuzzers, valgrind, spin, tshark, polkitd, QEMU and BlueZ for the VM).
# Idempotent: when every package is already installed it does not touch
# apt at all.
#
#   scripts/install-deps.sh                 what building and the demo need
#   scripts/install-deps.sh --test          everything, for the whole test suite
#   scripts/install-deps.sh [--test] --check  only report what is missing (exit 1 if any)

set -euo pipefail

# Building Tally and running the payment scenario (scripts/demo.sh).
BUILD_PACKAGES=(
  build-essential
  meson
  ninja-build
  pkg-config
  python3
  libglib2.0-dev
  libglib2.0-dev-bin
  libglib2.0-bin
  libsodium-dev
  libprotobuf-c-dev
  protobuf-c-compiler
  libsqlite3-dev
  # tally-issuer's PostgreSQL store links libpq (issuer/tally-issuer-store-pg.c)
  libpq-dev
  # tallyd asks polkit about every D-Bus call (daemon/tally-dbus-auth.c)
  libpolkit-gobject-1-dev
  # tallyctl request --qr draws the request URI as a QR code, --qr-png
  # writes it as PNG (daemon/tallyctl-qr.c)
  libqrencode-dev
  libpng-dev
  # docs/man/*.scd are rendered into the man pages by the build
  scdoc
  # tally-issuerd, the online issuer, serves HTTP(S) on libsoup 3 and
  # speaks JSON to operators (issuer/tally-issuer-http.c)
  libsoup-3.0-dev
  libjson-glib-dev
  # the scenario's private buses
  dbus
  dbus-daemon
  dbus-bin
  # the scenario reads tallyctl's and tally-issuer's JSON
  jq
  # the scenario's operator opens accounts and reads the audit over
  # tally-issuerd's HTTP API (scripts/scenario.sh)
  curl
  ca-certificates
)

# The test suite, on top of the above.
TEST_PACKAGES=(
  sqlite3
  # the issuer suite runs against a real PostgreSQL server it starts with
  # initdb and pg_ctl (tests/issuer/with-postgresql.sh)
  postgresql
  # tests/daemon/test-system-bus.sh runs the real polkitd on a private bus
  polkitd
  clang
  llvm
  # libFuzzer and clang's sanitizer runtimes: only recommended by clang,
  # which --no-install-recommends skips (scripts/fuzz.sh)
  libclang-rt-14-dev
  # tools/tally.lua is tested with tshark (tests/tools)
  tshark
  valgrind
  # tests/model: the issuer's booking checked by the spin model checker
  spin
  # tests/install: systemd-analyze verify of tallyd.service, systemd-sysusers
  # of sysusers.d/tally.conf (only run against a throwaway root)
  systemd
  # tests/install: the installed bash completions are tried with
  # bash-completion's own helpers (_init_completion)
  bash-completion
  # tests/install: mandoc -T lint of the installed man pages
  mandoc
  git
  # tests/ble: a QEMU guest running the real Bluetooth stack on btvirt
  # controllers (docs/ble-testing.md)
  qemu-system-x86
  bluez
  bluez-test-tools
  busybox-static
  kmod
  iproute2
  util-linux
  # tests/e2e/test-uri-qr.sh reads the QR code tallyctl writes with zbarimg
  zbar-tools
  # tests/package: dpkg-buildpackage builds the .debs of debian/, lintian
  # checks them (docs/packaging.md)
  dpkg-dev
  debhelper
  fakeroot
  lintian
  # app/: tally-app, the GTK 4 / libadwaita client of tallyd.  Not in
  # BUILD_PACKAGES: -Dapp=auto skips it without them, but CI builds and
  # tests it (tests/app), and the Debian package tally-app needs them
  # (debian/control Build-Depends, tests/package)
  libgtk-4-dev
  libadwaita-1-dev
  # tests/app drives two tally-app windows under Xvfb through the
  # accessibility bus (at-spi-bus-launcher) with pyatspi
  xvfb
  at-spi2-core
  python3-pyatspi
  # the app's strings are marked for gettext (po/, meson i18n) and its
  # AppStream metainfo and desktop file are validated (tests/app)
  gettext
  appstream
  desktop-file-utils
)

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

check_only=0
PACKAGES=("${BUILD_PACKAGES[@]}")
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    --test) PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
    -h|--help)
      sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  say "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

say "missing: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
  exit 1
fi

if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [ "${ID:-}" != "debian" ] || [ "${VERSION_ID:-}" != "12" ]; then
    say "warning: written for Debian 12, this is ${PRETTY_NAME:-unknown}; trying anyway"
  fi
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these by hand: ${missing[*]}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    say "not root: using sudo"
  else
    die "not root and sudo is not installed.  Run this script as root
(e.g. 'su -c scripts/install-deps.sh'), or install these packages yourself:
  apt-get install ${missing[*]}"
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"

for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || die "package $pkg is still not installed"
done
say "installed: ${missing[*]}"
