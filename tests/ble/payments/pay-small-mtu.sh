#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM with bluetoothd at ATT MTU 48 (small-mtu.conf): a payment
# still goes through: writes of 45-byte fragments, notifications of 43.
# ATT MTU 23 itself is out of reach of two BlueZ 5.66 peers; the unit test
# /gatt/link/channel-carries-message-at-att-mtu-23 covers it.

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
start_request stall 12.34 "long memo so that the offer takes many fragments at this MTU"
wait_pay alice
wait_request stall
expect_balance stall 1234
expect_balance alice 2766
grep -q 'ATT MTU 48,' "$T/alice.log" || fail "alice's link did not run at ATT MTU 48"
grep -q 'session with ble:.*, ATT MTU 48,' "$T/stall.log" || fail "the stall's link did not run at ATT MTU 48"
ok "both links ran at ATT MTU 48 (45-byte writes, 43-byte notifications)"
timings | sed 's/^/# /'
