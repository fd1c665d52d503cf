#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# After pay-three.sh: proves from the capture that the stall (hci0, BlueZ
# 5.66, exclusive mode) held one connection at a time, that each of the
# three payments travelled in a connection of its own, and that its
# advertisement asked for the long rotation slot that keeps Linux from
# switching advertising back on while a payer is served
# (EXCLUSIVE_ADV_DURATION_S in transport/tally-gatt-server.c).
#
#   check-three.sh OUTDIR

set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
want_duration=600

# Every advertisement bluetoothd set up for the stall, with its Duration.
durations=$(awk '
  /^[^ \t]/ { inadv = ($0 ~ /MGMT Command: Add (Extended )?Adve/ && index($0, "[hci0]") > 0); next }
  inadv && /^ +Duration: / { print $2 }
' "$OUT/btmon.txt" | sort | uniq -c | sed 's/^ *//')
[ -n "$durations" ] || { echo "not ok - the stall never added an advertisement"; exit 1; }
if grep -qv " $want_duration\$" <<<"$durations"; then
  echo "not ok - stall advertisements with Duration (count, seconds): $(tr '\n' ' ' <<<"$durations")"
  exit 1
fi
echo "ok - every advertisement of the stall asked for a $want_duration s rotation slot ($(awk '{ n += $1 } END { print n }' <<<"$durations") added)"

# Connections of hci0: +1 on an LE Connection Complete with status
# Success, -1 on a Disconnect Complete with status Success.
most=$(awk '
  /^[^ \t]/ { flush(); hdr = $0; blk = ""; next }
  { blk = blk $0 "\n" }
  function flush() {
    if (index(hdr, "[hci0]") == 0)
      return
    if (blk ~ /LE (Enhanced )?Connection Complete/ && blk ~ /Status: Success/) {
      if (++open > most) most = open
    } else if (hdr ~ /Disconnect Complete/ && blk ~ /Status: Success/) {
      open--
    }
  }
  END { flush(); print most + 0 }
' "$OUT/btmon.txt")
[ "$most" -eq 1 ] || { echo "not ok - the stall held $most connections at once"; exit 1; }
echo "ok - the stall held one connection at a time"

carried=$(bash "$HERE/btmon-att.sh" "$OUT/btmon.txt" hci0 | grep -c '^conn ' || true)
[ "$carried" -ge 3 ] || { echo "not ok - only $carried connection(s) carried Tally traffic"; exit 1; }
echo "ok - $carried connections carried Tally traffic"
