#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM: a stall (hci0) with two requests open at once
# ([payment] max_open_requests=2, two tills), each advertised in an
# advertisement instance of its own under its own tag; two payers (hci1,
# hci2) each pay one by its ble:TAG address, at the same time.  Each gets
# its own receipt for its own amount, and the stall holds the sum
# (docs/ble.md, docs/protocol.md 4.2).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

restart_stack 3
start_repairer hci1 hci2

PAYMENT_EXTRA[stall]="max_open_requests=2"
setup_issuer
start_daemon stall hci0
start_daemon p1 hci1
start_daemon p2 hci2
certify stall
certify p1 10.00
certify p2 10.00

REQ_SUFFIX=-till1 start_request stall 3.00 "till 1"
A_PID=$REQ_PID A_OUT=$REQ_OUT A_ADDRESS=$REQ_ADDRESS
REQ_SUFFIX=-till2 start_request stall 1.20 "till 2"
B_PID=$REQ_PID B_OUT=$REQ_OUT B_ADDRESS=$REQ_ADDRESS
[ "$A_ADDRESS" != "$B_ADDRESS" ] || fail "both requests advertise $A_ADDRESS"
ok "stall advertises $A_ADDRESS and $B_ADDRESS at once"
n=$(grep -c 'advertising .* with a request tag' "$T/stall.log" || true)
note "stall registered $n tagged advertisement(s) so far"

# The stall advertised first: advertising is toggled until the scans see it.
start_kicker hci0
start_pay p1 "$A_ADDRESS"
start_pay p2 "$B_ADDRESS"
wait_pay p1
wait_pay p2
stop_kicker
REQ_PID=$A_PID REQ_OUT=$A_OUT wait_request stall
REQ_PID=$B_PID REQ_OUT=$B_OUT wait_request stall

grep -q '^Paid 3.00 EUR' "$T/pay-p1.out" || fail "p1 did not pay 3.00: $(cat "$T/pay-p1.out")"
grep -q '^Paid 1.20 EUR' "$T/pay-p2.out" || fail "p2 did not pay 1.20: $(cat "$T/pay-p2.out")"
grep -q "^Received 3.00 EUR from ${RID[p1]}" "$A_OUT" || fail "till 1: $(cat "$A_OUT")"
grep -q "^Received 1.20 EUR from ${RID[p2]}" "$B_OUT" || fail "till 2: $(cat "$B_OUT")"
ok "each till was paid by the payer who named its tag"
expect_balance stall 420
expect_balance p1 700
expect_balance p2 880

stop_repairer
timings | sed 's/^/# /'
ok "two open requests paid over Bluetooth LE"
