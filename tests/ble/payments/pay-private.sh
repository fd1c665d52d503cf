#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# In the BLE VM, with Privacy = device in bluetoothd's main.conf
# (private.conf): a stall (hci0) and a payer (alice, hci1) start without a
# privacy warning, alice pays two requests, more than one RPA lifetime apart,
# and check-private.sh reads the addresses on the air from the capture.
# The kernel's default RPA lifetime is 15 minutes and BlueZ 5.66 cannot set
# it, so this run sets it to the kernel's minimum, 30 s, in debugfs.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
private_bus "$0" "$@"

RPA_TIMEOUT=30
[ -e /sys/kernel/debug/bluetooth ] || mount -t debugfs debugfs /sys/kernel/debug
for hci in hci0 hci1; do
  echo "$RPA_TIMEOUT" >"/sys/kernel/debug/bluetooth/$hci/rpa_timeout" ||
    fail "cannot set $hci's RPA lifetime"
  # An RPA made at power-on keeps the lifetime it was made with.
  power "$hci" false
  power "$hci" true
done
timeout 5 btmgmt info >"$T/btmgmt-info.txt" 2>&1
grep -q 'current settings: .*privacy' "$T/btmgmt-info.txt" ||
  fail "bluetoothd did not switch privacy on: $(cat "$T/btmgmt-info.txt")"
ok "privacy on, RPA lifetime $RPA_TIMEOUT s on hci0 and hci1"

# The kernel answers READ_INFO on an untrusted management socket: tallyd
# needs AF_BLUETOOTH but no capability.  Checked with btmgmt (which reads
# the index list and READ_INFO) as nobody, without any capability.
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
  timeout 5 btmgmt --index 0 info >"$T/unprivileged-info.out" 2>&1 || true
grep -q 'current settings: .*privacy' "$T/unprivileged-info.out" ||
  fail "READ_INFO as nobody: $(cat "$T/unprivileged-info.out")"
ok "READ_INFO as nobody without capabilities: $(grep -m1 'current settings' "$T/unprivileged-info.out" | sed 's/^[[:space:]]*//')"

setup_issuer
start_daemon stall hci0
start_daemon alice hci1
for name in stall alice; do
  grep -q "${ADAPTER[$name]}: LE Privacy on" "$T/$name.log" ||
    fail "$name did not log LE Privacy on: $(grep -i privacy "$T/$name.log" || true)"
  if grep -q 'privacy:' "$T/$name.log"; then
    fail "$name warned about privacy: $(grep 'privacy:' "$T/$name.log")"
  fi
done
ok "stall and alice: $(grep -oh 'hci[01]: LE Privacy on.*' "$T/stall.log" "$T/alice.log" | tr '\n' ';')"
certify stall
certify alice 40.00

pay_request() {
  start_pay alice ble
  wait_scanning hci1
  start_request stall "$1" "$2"
  ok "stall advertises $REQ_ADDRESS"
  wait_pay alice
  wait_request stall
  grep -q "^Received $1 EUR from" "$REQ_OUT" || fail "the stall printed no receipt: $(cat "$REQ_OUT")"
}

pay_request 5.00 coffee
first=$(now)
expect_balance stall 500
# Past the RPA lifetime: the next advertisement takes a new address.
while [ "$(awk -v a="$(now)" -v b="$first" 'BEGIN { print (a - b > '"$RPA_TIMEOUT"' + 5) }')" = 0 ]; do
  sleep 1
done
pay_request 2.50 tea
expect_balance stall 750
expect_balance alice 3250
ok "two payments under LE Privacy done"
