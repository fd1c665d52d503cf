#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# ble-btmon-log: tallyd's log channel through the real kernel.  Boots the
# BLE VM with btmon-log-vm.sh, then requires its lines in the decoded
# capture, and, when tshark is installed, tools/tally.lua to read them
# from the btsnoop file.  In the guest, btmon also reads a capture of
# make-btsnoop.
#
#   test-btmon-log.sh OUTDIR BTMON_SEND MAKE_BTSNOOP
#
# Skips (77) like every VM test: with TALLY_SKIP_BLE=1, or when the VM is
# not prepared (vm-run.sh).

set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 OUTDIR BTMON_SEND MAKE_BTSNOOP" >&2
  exit 2
fi
OUT=$1
SEND=$(cd "$(dirname "$2")" && pwd -P)/$(basename "$2")
MAKE=$(cd "$(dirname "$3")" && pwd -P)/$(basename "$3")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)

# A token of this run only, so that a stale capture cannot pass.
TOKEN=run$$-$RANDOM

rc=0
bash "$ROOT/tests/ble/vm-run.sh" --out "$OUT" --timeout 120 -- \
  "$HERE/btmon-log-vm.sh" "$SEND" "$TOKEN" "$MAKE" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

grep_capture() {
  bash "$ROOT/tests/ble/btmon-grep.sh" "$OUT/btmon.txt" "$@" > /dev/null
}

failed=0
for line in "tallyd: btmon-log $TOKEN info" "tallyd: btmon-log $TOKEN error" \
            "tallyd: btmon-log $TOKEN long xxxxxxxx"; do
  if grep_capture "= $line"; then
    echo "ok - btmon shows '= $line'"
  else
    echo "not ok - $OUT/btmon.txt has no '= $line'"
    failed=1
  fi
done
if grep_capture "btmon-log $TOKEN denied"; then
  echo "not ok - a line sent without CAP_NET_ADMIN reached the monitor"
  failed=1
else
  echo "ok - nothing from the process without CAP_NET_ADMIN"
fi

if command -v tshark > /dev/null; then
  lines=$(tshark -n -X "lua_script:$ROOT/tools/tally.lua" -r "$OUT/btmon.snoop" \
            -Y "tally.log.ident == \"tallyd\"" -T fields -e tally.log.priority -e tally.log.message \
            2> /dev/null | grep -F "btmon-log $TOKEN" || true)
  # The long line, cut to the 1028-byte frame: 6 bytes of header, priority,
  # ident length, "tallyd" and its NUL, the message's NUL.
  long_len=$((1028 - 6 - 2 - 7 - 1))
  got=$(printf '%s\n' "$lines" | awk -F '\t' '{ print $1 "\t" substr($2, 1, 40) "\t" length($2) }')
  want=$(printf '6\tbtmon-log %s info\t%d\n3\tbtmon-log %s error\t%d\n6\t%s\t%d' \
           "$TOKEN" $((15 + ${#TOKEN})) "$TOKEN" $((16 + ${#TOKEN})) \
           "$(printf 'btmon-log %s long x%s' "$TOKEN" "$(printf 'x%.0s' $(seq 1 40))" | cut -c1-40)" \
           "$long_len")
  if [ "$got" = "$want" ]; then
    echo "ok - tools/tally.lua reads the three lines from btmon.snoop, the long one cut to $long_len bytes"
  else
    echo "not ok - tools/tally.lua read from btmon.snoop (priority, start, length):"
    printf '%s\n' "$got"
    echo "expected:"
    printf '%s\n' "$want"
    failed=1
  fi
else
  echo "ok - # SKIP tshark not installed: the dissector's view of btmon.snoop is not checked"
fi

exit "$failed"
