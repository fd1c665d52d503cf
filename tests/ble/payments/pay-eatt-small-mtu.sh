#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM with bluetoothd at ATT MTU 48 and five ATT bearers
# (eatt-small-mtu.conf): Enhanced ATT stays on, Offer, Pay and Receipt take
# many fragments each, and BlueZ sends Write Commands and notifications on
# whichever bearer is free.  The payment completes; check-eatt.sh then reads
# the capture and the links' fragment logs.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

setup_issuer
start_daemon stall hci0
start_daemon alice hci1
certify stall
certify alice 40.00

start_pay alice ble
wait_scanning hci1
start_request stall 12.34 "a memo long enough that every message but Hello takes many fragments"
wait_pay alice
wait_request stall
expect_balance stall 1234
expect_balance alice 2766
grep -q 'ATT MTU 48,' "$T/alice.log" || fail "alice's link did not run at ATT MTU 48"
grep -q 'session with ble:.*, ATT MTU 48,' "$T/stall.log" || fail "the stall's link did not run at ATT MTU 48"
ok "both links ran at ATT MTU 48"
timings | sed 's/^/# /'
