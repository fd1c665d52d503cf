#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM: three payers (hci1, hci2, hci3) pay one stall (hci0) at the
# same time, each with its own session and payment object: the stall
# requests 3.00 with --payers 3.  With Debian 12's BlueZ 5.66 the stall
# serves one device at a time (exclusive mode, docs/ble.md) and stops
# advertising meanwhile; the others wait in Device1.Connect or are turned
# away, and retry until it is free.  Where btvirt fails the loser of two
# simultaneous connection attempts at once, the repairer (lib.sh) undoes
# what that leaves in the loser's kernel; check-three.sh then reads the
# capture.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

# The harness brings up two controllers; btvirt serves four in one radio.
restart_stack 4
start_repairer hci1 hci2 hci3

setup_issuer
start_daemon stall hci0
for p in p1 p2 p3; do
  start_daemon "$p" "hci${p#p}"
done
certify stall
for p in p1 p2 p3; do
  certify "$p" 10.00
done

for p in p1 p2 p3; do
  start_pay "$p" ble
done
wait_scanning hci1 hci2 hci3
start_request stall 3.00 "bus ticket" 3
ok "stall advertises $REQ_ADDRESS for three payers"
# Turned-away payers scan again; the kicker stands in for repeated
# advertisements (lib.sh).
start_kicker hci0
for p in p1 p2 p3; do
  wait_pay "$p"
done
wait_request stall
stop_kicker
grep -q '^Received 3 of 3 payment(s).' "$REQ_OUT" || fail "the stall's request: $(cat "$REQ_OUT")"
ok "stall: $(grep -c ': received 3.00 EUR from' "$REQ_OUT") receipts, $(tail -n 1 "$REQ_OUT")"

# Three payments, three payers, three different payment objects.
[ "$(grep -c ': received 3.00 EUR from' "$REQ_OUT")" = 3 ] || fail "not three receipts: $(cat "$REQ_OUT")"
[ "$(grep -o '^/org/tally/payment/[0-9]*' "$REQ_OUT" | sort -u | wc -l)" = 3 ] ||
  fail "not three payment objects: $(cat "$REQ_OUT")"
for p in p1 p2 p3; do
  grep -q "from ${RID[$p]}" "$REQ_OUT" || fail "no receipt from $p (${RID[$p]})"
done
ok "one payment object and one receipt per payer"
expect_balance stall 900
for p in p1 p2 p3; do
  expect_balance "$p" 700
done
hist=$(ctl stall --json history | jq -r '[.[] | select(.Kind == "received")] | length')
[ "$hist" = 3 ] || fail "the stall's history holds $hist received entries"
ok "the stall's history: 3 received entries"

stop_repairer
note "btvirt failed $(wc -l <"$REPAIRS") simultaneous connection attempt(s); controllers power-cycled: $(cut -d' ' -f1 "$REPAIRS" | tr '\n' ' ')"
refusals=$(grep -c 'refusing /org/bluez/hci0/dev_' "$T/stall.log" || true)
mode=$(grep -o '(\(exclusive\|per-device\) mode)' "$T/stall.log" | head -1)
note "stall $mode turned $refusals connection(s) away while serving another payer"
for p in p1 p2 p3; do
  note "$p: $(grep -o 'BLE payee .*' "$T/$p.log" | tail -n 1)"
  grep -o 'attempt [0-9]* failed (.*)' "$T/$p.log" | sed "s/^/#   $p: /" || true
done
timings | sed 's/^/# /'
ok "three payers paid one stall"
