#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM, for BlueZ >= 5.76 (per-device mode): three payers (hci1,
# hci2, hci3) are in their handshakes with one stall (hci0) at the same
# time.  Each connects in turn and stops at its owner's confirmation, with
# the stall's code on screen, until all three are connected; then the three
# owners confirm at once and three Pays meet the one request (--payers 3).
#
# The connections are made one after another on purpose: btvirt fails the
# loser of two LE Create Connections at the same instant, and after that
# gave a second connection to the stall the handle of a live one (docs/ble.md,
# version matrix).  A radio does neither; the sessions themselves still
# overlap, which is what per-device mode must keep apart.
# check-own-handle.sh then reads the capture.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

PAYERS=(p1 p2 p3)
restart_stack 4

setup_issuer
start_daemon stall hci0
for p in "${PAYERS[@]}"; do
  start_daemon "$p" "hci${p#p}"
done
certify stall
for p in "${PAYERS[@]}"; do
  certify "$p" 10.00
done

start_request stall 3.00 "bus ticket" 3
ok "stall advertises $REQ_ADDRESS for three payers"

# Each payer's confirmation is answered through a FIFO this script holds
# open: tallyctl reads its answer from standard input (no terminal here).
# The FIFOs live in the guest's own /run: $T is the host's, shared in, and
# takes none.
FIFOS=$(mktemp -d /run/tally-confirm.XXXXXX)
declare -A CONFIRM_FD=()
for p in "${PAYERS[@]}"; do
  mkfifo "$FIFOS/$p"
  exec {fd}<>"$FIFOS/$p"
  CONFIRM_FD[$p]=$fd
  ctl "$p" pay "$REQ_ADDRESS" --timeout 150 <"$FIFOS/$p" >"$T/pay-$p.out" 2>&1 &
  PAY_PID[$p]=$!
  for ((i = 0; i < 600; i++)); do
    grep -q 'Confirm? \[y/N\]' "$T/pay-$p.out" && break
    kill -0 "${PAY_PID[$p]}" 2>/dev/null || fail "$p's payment ended early: $(cat "$T/pay-$p.out")"
    sleep 0.1
  done
  grep -q 'Confirm? \[y/N\]' "$T/pay-$p.out" || fail "$p never asked to confirm: $(cat "$T/pay-$p.out")"
  ok "$p is connected and asks its owner: $(grep -o 'Pay .*code [0-9 ]*' "$T/pay-$p.out")"
done

links=$(hcitool -i hci0 con | grep -c ' LE ' || true)
[ "$links" -eq 3 ] || fail "the stall holds $links LE connections, expected 3: $(hcitool -i hci0 con)"
ok "the stall holds three payers in their handshakes at once"

for p in "${PAYERS[@]}"; do
  echo y >&"${CONFIRM_FD[$p]}"
done
for p in "${PAYERS[@]}"; do
  wait_pay "$p"
done
wait_request stall
grep -q '^Received 3 of 3 payment(s).' "$REQ_OUT" || fail "the stall's request: $(cat "$REQ_OUT")"
[ "$(grep -c ': received 3.00 EUR from' "$REQ_OUT")" = 3 ] || fail "not three receipts: $(cat "$REQ_OUT")"
[ "$(grep -o '^/org/tally/payment/[0-9]*' "$REQ_OUT" | sort -u | wc -l)" = 3 ] ||
  fail "not three payment objects: $(cat "$REQ_OUT")"
for p in "${PAYERS[@]}"; do
  grep -q "from ${RID[$p]}" "$REQ_OUT" || fail "no receipt from $p (${RID[$p]})"
done
ok "one payment object and one receipt per payer"
expect_balance stall 900
for p in "${PAYERS[@]}"; do
  expect_balance "$p" 700
done
ok "three overlapping payments done"
