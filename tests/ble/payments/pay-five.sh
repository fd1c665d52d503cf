#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM: five payers (hci1 .. hci5) pay one stall (hci0) at the same
# time, each with its own session and payment object: the stall requests
# 3.00 with --payers 5.  Written for BlueZ >= 5.76 (Debian 13), where the
# stall serves every device at once in per-device mode (docs/ble.md);
# check-own-handle.sh then proves from the capture that each notification
# went only to its own connection.  Each payer holds its own receipt and the
# stall's balance is the sum of the five.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

PAYERS=(p1 p2 p3 p4 p5)
ADAPTERS=(hci1 hci2 hci3 hci4 hci5)

# The harness brings up two controllers; btvirt serves six in one radio.
restart_stack 6
start_repairer "${ADAPTERS[@]}"

setup_issuer
# Under QEMU's emulated CPU, five payers connecting at once take longer than
# the default 5 s from connection to Hello (GATT discovery and the acquired
# sockets of five devices, one emulated core): the stall would turn honest
# payers away as silent ones.  The deadline itself is a unit-tested setting.
TRANSPORT_EXTRA[stall]=hello_timeout_seconds=60
start_daemon stall hci0
for p in "${PAYERS[@]}"; do
  start_daemon "$p" "hci${p#p}"
done
certify stall
for p in "${PAYERS[@]}"; do
  certify "$p" 10.00
done

for p in "${PAYERS[@]}"; do
  start_pay "$p" ble
done
wait_scanning "${ADAPTERS[@]}"
start_request stall 3.00 "bus ticket" 5
ok "stall advertises $REQ_ADDRESS for five payers"
start_kicker hci0
for p in "${PAYERS[@]}"; do
  wait_pay "$p"
done
wait_request stall
stop_kicker
grep -q '^Received 5 of 5 payment(s).' "$REQ_OUT" || fail "the stall's request: $(cat "$REQ_OUT")"
ok "stall: $(grep -c ': received 3.00 EUR from' "$REQ_OUT") receipts, $(tail -n 1 "$REQ_OUT")"

[ "$(grep -c ': received 3.00 EUR from' "$REQ_OUT")" = 5 ] || fail "not five receipts: $(cat "$REQ_OUT")"
[ "$(grep -o '^/org/tally/payment/[0-9]*' "$REQ_OUT" | sort -u | wc -l)" = 5 ] ||
  fail "not five payment objects: $(cat "$REQ_OUT")"
for p in "${PAYERS[@]}"; do
  grep -q "from ${RID[$p]}" "$REQ_OUT" || fail "no receipt from $p (${RID[$p]})"
done
ok "one payment object and one receipt per payer"
# The stall holds the sum of the five payments; each payer paid once.
expect_balance stall 1500
for p in "${PAYERS[@]}"; do
  expect_balance "$p" 700
done
hist=$(ctl stall --json history | jq -r '[.[] | select(.Kind == "received")] | length')
[ "$hist" = 5 ] || fail "the stall's history holds $hist received entries"
ok "the stall's history: 5 received entries"
for p in "${PAYERS[@]}"; do
  sent=$(ctl "$p" --json history | jq -r '[.[] | select(.Kind == "spent")] | length')
  [ "$sent" = 1 ] || fail "$p's history holds $sent spent entries"
done
ok "each payer's history: its own receipt, 1 spent entry"

stop_repairer
note "btvirt failed $(wc -l <"$REPAIRS") simultaneous connection attempt(s); controllers power-cycled: $(cut -d' ' -f1 "$REPAIRS" | tr '\n' ' ')"
refusals=$(grep -c 'refusing /org/bluez/hci0/dev_' "$T/stall.log" || true)
mode=$(grep -o '(\(exclusive\|per-device\) mode)' "$T/stall.log" | head -1)
note "stall $mode turned $refusals connection(s) away while serving another payer"
timings | sed 's/^/# /'
ok "five payers paid one stall"
