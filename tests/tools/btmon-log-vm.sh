#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Guest side of ble-btmon-log: runs inside the BLE VM (tests/ble/vm-run.sh),
# where the kernel has Bluetooth and btmon is capturing.
#
#   btmon-log-vm.sh BTMON_SEND TOKEN [MAKE_BTSNOOP]
#
# BTMON_SEND is the built tests/tools/btmon-send.  Sends, through
# daemon/tally-btmon.c:
#   "= tallyd: btmon-log TOKEN info"       priority 6
#   "= tallyd: btmon-log TOKEN error"      priority 3
#   "= tallyd: btmon-log TOKEN long ..."   a message cut to the frame limit
# and checks that without CAP_NET_ADMIN opening the channel fails with
# TallyError Failed naming the capability.  The host then looks for the
# lines in OUT/btmon.txt, which the guest decodes after this script.
#
# With MAKE_BTSNOOP (the built tests/tools/make-btsnoop), also checks that
# btmon reads the capture it writes; btmon 5.66 can only do that where the
# controllers exist (docs/ble-testing.md, pitfall 5).
#
# Prints "ok - ..." or "not ok - ..." per check; exit status 0 when all
# passed.

set -uo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 BTMON_SEND TOKEN [MAKE_BTSNOOP]" >&2
  exit 2
fi
send=$1
token=$2
make_btsnoop=${3:-}
failed=0

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; failed=1; }

if out=$("$send" --priority 6 tallyd "btmon-log $token info" 2>&1); then
  ok "a line at priority 6 was taken: $out"
else
  not_ok "sending a line failed (status $?): $out"
fi

if out=$("$send" --priority 3 tallyd "btmon-log $token error" 2>&1); then
  ok "a line at priority 3 was taken: $out"
else
  not_ok "sending a line at priority 3 failed (status $?): $out"
fi

# 1500 characters: the kernel refuses datagrams above its frame limit, so
# this passes only if the message was cut to fit.
long=$(printf 'x%.0s' $(seq 1 1500))
if out=$("$send" tallyd "btmon-log $token long $long" 2>&1); then
  ok "an over-long line was cut to a frame the kernel takes: $out"
else
  not_ok "an over-long line was refused (status $?): $out"
fi

# Root without CAP_NET_ADMIN in its bounding set loses it across exec.
if command -v setpriv > /dev/null; then
  out=$(setpriv --bounding-set=-net_admin -- "$send" tallyd "btmon-log $token denied" 2>&1)
  rc=$?
  if [ "$rc" -eq 3 ] && [[ "$out" == Failed:*CAP_NET_ADMIN* ]]; then
    ok "without CAP_NET_ADMIN: $out"
  else
    not_ok "without CAP_NET_ADMIN expected status 3 and 'Failed: ... CAP_NET_ADMIN', got $rc: $out"
  fi
else
  echo "ok - # SKIP setpriv (util-linux) not found"
fi

if [ -n "$make_btsnoop" ]; then
  if ! out=$("$make_btsnoop" generated.btsnoop 2>&1); then
    not_ok "make-btsnoop failed: $out"
  elif ! btmon -r generated.btsnoop > generated.txt 2>&1; then
    not_ok "btmon -r generated.btsnoop failed (status $?), see generated.txt"
  else
    missing=
    for text in "= tallyd: payer: connecting to ble" "LE Connection Complete (0x01)" \
                "ATT: Write Command (0x52) len 22" "ATT: Handle Value Notification (0x1b) len 22" \
                "[PSM 39 mode LE Flow Control (0x80)]" "ATT: Handle Multiple Value Notification (0x23)" \
                "= tallyd: payment failed: Cancelled: cancelled by the user"; do
      grep -qF -- "$text" generated.txt || missing="$missing '$text'"
    done
    if [ -z "$missing" ]; then
      ok "btmon reads make-btsnoop's capture: log lines, connections, ATT and EATT"
    else
      not_ok "btmon's reading of make-btsnoop's capture lacks:$missing (generated.txt)"
    fi
  fi
fi

exit "$failed"
