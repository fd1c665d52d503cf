#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Regenerates docs/screenshots/: tally-app at 360x720 (a phone) and
# 1280x800 (a desktop), each screen the AT-SPI test (tests/app/test-app.sh)
# passes through: home, receive with the QR code, the confirmation dialog
# and the history.  Checks that each receive screenshot's QR code decodes
# (zbarimg) to a tally:// request.  Look at every picture before committing.
#
#   scripts/app-screenshots.sh          (TALLY_BUILD_DIR: default build/)

set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$SRC/docs/screenshots
export TALLY_BUILD_DIR=${TALLY_BUILD_DIR:-$SRC/build}

command -v zbarimg >/dev/null ||
  { echo "zbarimg is missing (scripts/install-deps.sh --test: zbar-tools)" >&2; exit 1; }
mkdir -p "$OUT"
for geometry in 360x720 1280x800; do
  echo "== $geometry"
  rm -f -- "$OUT/$geometry"-*.png
  log=$(mktemp)
  if ! TALLY_APP_SCREENSHOTS=$OUT TALLY_APP_GEOMETRY=$geometry \
      bash "$SRC/tests/app/test-app.sh" >"$log" 2>&1; then
    grep -v '^ok ' "$log" >&2
    rm -f -- "$log"
    echo "app-screenshots: the app test failed at $geometry" >&2
    exit 1
  fi
  rm -f -- "$log"
  for name in home receive confirm history; do
    [ -s "$OUT/$geometry-$name.png" ] ||
      { echo "app-screenshots: no $geometry-$name.png" >&2; exit 1; }
  done
  uri=$(zbarimg -q --raw "$OUT/$geometry-receive.png" 2>/dev/null | head -n 1)
  case "$uri" in
    tally://pay\?*) echo "   the QR code reads $uri" ;;
    *) echo "app-screenshots: the QR code of $geometry-receive.png reads '$uri'" >&2; exit 1 ;;
  esac
done
ls -l "$OUT"
