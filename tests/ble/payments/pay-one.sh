#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM: a payee (stall, hci0) and a payer (alice, hci1), each a
# tallyd with [transport] ble=true.  Alice pays 5.00 over Bluetooth LE; both
# see the receipt and the balances move.  Then a second payment to the
# request tag the stall advertises (ble:TAG).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

setup_issuer
start_daemon stall hci0
start_daemon alice hci1
certify stall
certify alice 40.00
grep -q 'exclusive mode\|per-device mode' "$T/stall.log" || fail "the stall logged no GATT mode"
note "stall: $(grep -o 'Bluetooth LE payee on .*' "$T/stall.log")"
# bluetoothd runs with Privacy = off here: both tallyds say how to fix it.
for name in stall alice; do
  grep -q "privacy: ${ADAPTER[$name]} has LE Privacy off: .* public address 00:AA:01:.*Privacy = device" \
    "$T/$name.log" || fail "$name did not warn that its public address is on the air"
done
ok "privacy warning: $(grep -o 'privacy: .*' "$T/stall.log")"
# ble_privacy=require: a third tallyd on the same adapter refuses to start.
mkdir -p "$DATA/strict"
cat >"$T/strict.conf" <<EOF
[register]
dir=$DATA/strict
issuer_key=$ISSUER_KEY
[dbus]
bus=session
name=org.tally.Strict
[transport]
listen=unix:$DATA/strict.sock
ble=true
adapter=hci0
ble_privacy=require
EOF
rc=0
timeout 30 "$TALLY_DAEMON" --config "$T/strict.conf" </dev/null >"$T/strict.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q '\[transport\] ble_privacy=require: hci0 has LE Privacy off: .*Privacy = device' "$T/strict.out" ||
  fail "ble_privacy=require started anyway (status $rc): $(cat "$T/strict.out")"
[ -z "$(ls -A "$DATA/strict")" ] || fail "the refused tallyd left files: $(ls -A "$DATA/strict")"
ok "ble_privacy=require refuses: $(grep -m1 "^tallyd: " "$T/strict.out")"
expect_balance stall 0
expect_balance alice 4000

# 1. "ble": the first payee found.  Alice scans before the stall advertises.
start_pay alice ble
wait_scanning hci1
start_request stall 5.00 coffee
ok "stall advertises $REQ_ADDRESS"
wait_pay alice
wait_request stall
grep -q '^Received 5.00 EUR from' "$REQ_OUT" || fail "the stall printed no receipt: $(cat "$REQ_OUT")"
ok "stall: $(grep '^Received' "$REQ_OUT")"
# The payer's prompt reads "Pay 5.00 EUR to NAME · code 123 456".
payer_code=$(sed -n 's/^Pay .* code \([0-9]\{3\}\) \([0-9]\{3\}\)$/\1\2/p' "$T/pay-alice.out")
payee_code=$(sed -n 's/^Comparison code: \([0-9]*\)$/\1/p' "$REQ_OUT")
[ -n "$payer_code" ] && [ "$payer_code" = "$payee_code" ] ||
  fail "comparison codes differ: alice '$payer_code', stall '$payee_code'"
ok "both sides show comparison code $payer_code"
expect_balance stall 500
expect_balance alice 3500

# 2. "ble:TAG": the tag of this request only.  The stall advertises first
# here, so advertising is toggled until alice's scan sees it.
start_request stall 2.50 tea
ok "stall advertises $REQ_ADDRESS"
start_kicker hci0
start_pay alice "$REQ_ADDRESS"
wait_pay alice
stop_kicker
wait_request stall
expect_balance stall 750
expect_balance alice 3250

# 3. Nobody waits and nothing advertises: the payer gives up with Timeout
# (a device BlueZ still caches from before does not count), nothing moves.
hcitool -i hci0 cmd 0x08 0x000a 00 >/dev/null 2>&1 || true
rc=0
ctl alice pay ble --yes --timeout 8 </dev/null >"$T/pay-nobody.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "paying with no payee advertising succeeded"
grep -q 'org.tally.Error.Timeout' "$T/pay-nobody.out" ||
  fail "expected Timeout, got: $(cat "$T/pay-nobody.out")"
ok "no payee advertising: $(grep -o 'org.tally.Error.Timeout.*' "$T/pay-nobody.out" | head -1)"
expect_balance alice 3250

# 4. A stale advertisement (the controller's last data switched on behind
# bluetoothd's back): the payer reaches the stall, which has no request and
# says so.
start_pay alice ble
wait_scanning hci1
hcitool -i hci0 cmd 0x08 0x000a 01 >/dev/null 2>&1 || true
rc=0
wait "${PAY_PID[alice]}" || rc=$?
[ "$rc" -ne 0 ] || fail "paying a payee without a request succeeded"
grep -q 'org.tally.Error.NotFound' "$T/pay-alice.out" ||
  fail "expected NotFound, got: $(cat "$T/pay-alice.out")"
ok "payee without a request: $(grep -o 'org.tally.Error.NotFound.*' "$T/pay-alice.out" | head -1)"
hcitool -i hci0 cmd 0x08 0x000a 00 >/dev/null 2>&1 || true
expect_balance alice 3250
expect_balance stall 750

timings | sed 's/^/# /'
ok "payments over Bluetooth LE done"
