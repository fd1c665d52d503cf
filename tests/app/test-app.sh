#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-app: two tally-app windows, each on its own tallyd (the stream
# transport, set up as scripts/scenario.sh does: an issuer, certified
# registers, a loaded payer), under Xvfb with the accessibility bus up.
# tests/app/app-driver.py drives them through AT-SPI: the stall (bob,
# certified as "Bob's Bakery") asks for an amount, the payer (alice) pastes
# the request URI read from the stall's screen, both screens show the same
# comparison code, and the payer approves: both balances change.  A second
# round declines; in two more the payer pastes a URI that asks for less
# than the stall does, and one that is malformed, and the app refuses them
# without asking; a last one leaves the dialog unanswered until tallyd's
# timeout: none of these spends anything.  The daemons' own balances (tallyctl)
# must agree with the screens.  TAP.
#
#   test-app.sh          (TALLY_BUILD_DIR: the build directory, default build/)
#
# TALLY_APP=PROGRAM runs another tally-app (a valgrind wrapper, say), and
# TALLY_APP_TIMEOUT=SECONDS (default 30) is how long the driver waits for
# each change on a screen.
# TALLY_APP_GEOMETRY=WxH sizes both windows (and the screens); with
# TALLY_APP_SCREENSHOTS=DIR the driver also saves the screens it passes
# as DIR/WxH-NAME.png (scripts/app-screenshots.sh).  The stall's window is
# on Xvfb's screen 0, the payer's on screen 1, so that neither hides the
# other.
#
# Needs Xvfb, at-spi2-core (at-spi-bus-launcher), python3-pyatspi and
# dbus-run-session (scripts/install-deps.sh --test); a missing one fails
# the test with its name, it never skips.

set -euo pipefail

SRC=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
export TALLY_BUILD_DIR=${TALLY_BUILD_ROOT:-${TALLY_BUILD_DIR:-$SRC/build}}
# shellcheck source=scripts/scenario.sh
. "$SRC/scripts/scenario.sh"
scn_private_bus "$0" "$@"

SCN_NAMES=(alice bob)
# A confirmation nobody answers times out after this many seconds (the
# third round); long enough for a loaded CI machine to finish the others.
PAYMENT_TIMEOUT=30
SCN_PAYMENT_CONF="timeout_seconds=$PAYMENT_TIMEOUT"
TALLY_APP=${TALLY_APP:-$TALLY_BUILD_DIR/app/tally-app}
ATSPI_LAUNCHER=${ATSPI_LAUNCHER:-/usr/libexec/at-spi-bus-launcher}
PYTHON=/usr/bin/python3

missing() {
  echo "Bail out! $1 is missing: install it with scripts/install-deps.sh --test ($2)"
  exit 1
}
[ -x "$TALLY_APP" ] || missing "$TALLY_APP" "build with -Dapp=enabled: needs libgtk-4-dev, libadwaita-1-dev"
command -v Xvfb >/dev/null || missing Xvfb "package xvfb"
[ -x "$ATSPI_LAUNCHER" ] || missing "$ATSPI_LAUNCHER" "package at-spi2-core"
"$PYTHON" -c 'import pyatspi' 2>/dev/null || missing "pyatspi for $PYTHON" "package python3-pyatspi"
command -v gdbus >/dev/null || missing gdbus "package libglib2.0-bin"

declare -a EXTRA_PIDS=()
app_cleanup() {
  local rc=$? pid
  for pid in "${EXTRA_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${EXTRA_PIDS[@]}"; do
    scn_wait_pid "$pid" 5 || true
  done
  if [ "$rc" -ne 0 ] && [ -n "$SCN_TMP" ]; then
    for f in "$SCN_TMP"/app-*.log; do
      [ -s "$f" ] || continue
      printf '# --- %s (last 30 lines) ---\n' "$(basename "$f")"
      tail -n 30 "$f" | sed 's/^/# /'
    done
  fi
  (exit "$rc")
  scn_cleanup
}

scn_setup
trap app_cleanup EXIT
T=$SCN_TMP

# --- the display and the accessibility bus -----------------------------------
GEOMETRY=${TALLY_APP_GEOMETRY:-}
SCREEN=${GEOMETRY:-1280x800}
export TALLY_APP_FBDIR=$T
exec 5>"$T/display"
Xvfb -displayfd 5 -screen 0 "${SCREEN}x24" -screen 1 "${SCREEN}x24" -fbdir "$T" -nolisten tcp \
  >"$T/xvfb.log" 2>&1 &
EXTRA_PIDS+=($!)
exec 5>&-
for ((i = 0; i < 100; i++)); do
  [ -s "$T/display" ] && break
  sleep 0.1
done
[ -s "$T/display" ] || { cat "$T/xvfb.log"; scn_fail "Xvfb did not start"; }
DISPLAY=:$(tr -d '[:space:]' <"$T/display")
export DISPLAY

"$ATSPI_LAUNCHER" --launch-immediately >"$T/atspi.log" 2>&1 &
EXTRA_PIDS+=($!)
# Ready once it owns org.a11y.Bus (asked without activating it).
a11y_up() {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner org.a11y.Bus 2>/dev/null | grep -q true
}
for ((i = 0; i < 100; i++)); do
  a11y_up && break
  sleep 0.1
done
a11y_up || { cat "$T/atspi.log"; scn_fail "the accessibility bus did not come up"; }

# --- the registers, as scripts/scenario.sh sets them up -------------------------
scn_issuer init --name "Tally App Test Issuer" --currency "$SCN_CURRENCY"
scn_issuer key
SCN_ISSUER_KEY=$(tr -d '[:space:]' <<<"$SCN_OUT")
for name in "${SCN_NAMES[@]}"; do
  scn_issuer account-create "$name"
done
scn_issuer deposit alice 100.00
for name in "${SCN_NAMES[@]}"; do
  scn_start_daemon "$name"
  scn_ctl "$name" --json key
  SCN_ID[$name]=$(jq -er '.RegisterId' <<<"$SCN_OUT")
  key=$(jq -er '.PublicKey' <<<"$SCN_OUT")
  named=()
  [ -z "${SCN_DISPLAY_NAME[$name]:-}" ] || named=(--display-name "${SCN_DISPLAY_NAME[$name]}")
  scn_issuer certify --account "$name" --key "$key" --out "$T/$name.cert" "${named[@]}" \
    --max-payment "$SCN_MAX_PAYMENT" --balance-cap "$SCN_BALANCE_CAP" \
    --max-payments 100 --max-offline-hours 72 --valid-days 30
  scn_ctl "$name" certificate "$T/$name.cert"
done
scn_issuer voucher --register "${SCN_ID[alice]}" --amount 40.00 --out "$T/alice-voucher"
scn_ctl alice load "$T/alice-voucher"

# --- the two apps --------------------------------------------------------------
start_app() {
  local name=$1 screen=$2
  env DISPLAY="$DISPLAY.$screen" GTK_A11Y=atspi NO_AT_BRIDGE=0 GDK_BACKEND=x11 \
    GSK_RENDERER=cairo GSETTINGS_BACKEND=memory LC_ALL=C.UTF-8 LANGUAGE= \
    "$TALLY_APP" --session --bus-name "${SCN_BUS[$name]}" ${GEOMETRY:+--geometry "$GEOMETRY"} \
    >"$T/app-$name.log" 2>&1 &
  APP_PID=$!
  EXTRA_PIDS+=("$APP_PID")
}
start_app bob 0
bob_app=$APP_PID
start_app alice 1
alice_app=$APP_PID

rc=0
timeout 300 "$PYTHON" "$SRC/tests/app/app-driver.py" "$bob_app" "$alice_app" \
  "${SCN_DISPLAY_NAME[bob]}" approve:12.50 decline:7.25 tampered:5.00 \
  malformed:4.00 "timeout:3.00:$PAYMENT_TIMEOUT" |
  tee "$T/driver.tap" || rc=$?
n=$(grep -c '^\(not \)\{0,1\}ok ' "$T/driver.tap" || true)

# The daemons agree with the screens: one payment of 12.50, no other round
# spent anything.
scn_get_balance alice
alice_balance=$SCN_BAL
scn_get_balance bob
bob_balance=$SCN_BAL
n=$((n + 1))
if [ "$alice_balance" -eq 2750 ] && [ "$bob_balance" -eq 1250 ]; then
  echo "ok $n - tallyd: alice has 27.50 and bob 12.50 EUR: one payment, no other round spent anything"
else
  echo "not ok $n - tallyd: alice has $alice_balance, bob $bob_balance (want 2750, 1250)"
  rc=1
fi
n=$((n + 1))
spent=$("$TALLYCTL" --name "${SCN_BUS[alice]}" --json history --limit 0 |
  jq '[.[] | select(.Kind == "spent")] | length')
if [ "$spent" -eq 1 ]; then
  echo "ok $n - tallyd: alice's register lists exactly one spend"
else
  echo "not ok $n - tallyd: alice's register lists $spent spends, want 1"
  rc=1
fi
for name in bob alice; do
  n=$((n + 1))
  pid_var=${name}_app
  if kill -0 "${!pid_var}" 2>/dev/null; then
    echo "ok $n - $name's tally-app is still running"
  else
    echo "not ok $n - $name's tally-app exited"
    rc=1
  fi
done
echo "1..$n"
exit "$rc"
