#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# After a payment script with several payers on BlueZ >= 5.76 (per-device
# mode): proves from the capture that every notification the stall (hci0)
# sent went only to its own connection.  For each ATT (Multiple) Handle
# Value Notification hci0 sent, btmon names the connection handle it went
# out on and prints its value; the LE Connection Complete of that handle
# names the peer.  Each value must have arrived at that peer's controller,
# and at no other controller; each payer controller must have received at
# least one; and every notification a payer received must be one hci0 sent
# on a connection to that payer.  btvirt gives hci<k> the address
# 00:AA:01:<k>:00:<k> (tests/ble/vm-run.sh).
#
#   check-own-handle.sh OUTDIR PAYERS
#
# PAYERS: the payers are hci1 .. hciPAYERS.

set -euo pipefail
[ "$#" -eq 2 ] && [[ "$2" =~ ^[1-7]$ ]] || { echo "usage: $0 OUTDIR PAYERS(1-7)" >&2; exit 2; }
OUT=$1
PAYERS=$2

# One line per notification: "sent hci0 HANDLE PEER VALUE" for hci0's, and
# "got hciK HANDLE - VALUE" for those the others received.
events=$(awk '
  function flush(   i) {
    if (hdr == "")
      return
    if (blk ~ /LE (Enhanced )?Connection Complete/ && blk ~ /Status: Success/ && chandle != "")
      peer[hci, chandle] = caddr
    if (nvals > 0 && hdr ~ /ACL Data (TX|RX): Handle [0-9]+/) {
      for (i = 1; i <= nvals; i++) {
        if (hdr ~ /^< ACL Data TX/ && hci == "hci0")
          print "sent", hci, ahandle, ((hci, ahandle) in peer ? peer[hci, ahandle] : "unknown"), vals[i]
        else if (hdr ~ /^> ACL Data RX/ && hci != "hci0")
          print "got", hci, ahandle, "-", vals[i]
      }
    }
  }
  /^[^ \t]/ {
    flush()
    hdr = $0; blk = ""; nvals = 0; innote = 0; chandle = ""; caddr = ""; ahandle = ""
    hci = ""
    if (match(hdr, /\[hci[0-9]+\]/)) hci = substr(hdr, RSTART + 1, RLENGTH - 2)
    if (match(hdr, /Handle [0-9]+/)) ahandle = substr(hdr, RSTART + 7, RLENGTH - 7)
    next
  }
  {
    blk = blk $0 "\n"
    if ($0 ~ /^ +Handle: [0-9]+$/) chandle = $2
    if ($0 ~ /^ +Peer address: /) caddr = $3
    if ($0 ~ /ATT: Handle (Multiple )?Value Notification/) innote = 1
    if (innote && $0 ~ /^ +(Data(\[[0-9]+\])?|Value): [0-9a-f]+$/) vals[++nvals] = $NF
  }
  END { flush() }
' "$OUT/btmon.txt")

sent=$(grep -c '^sent ' <<<"$events" || true)
[ "$sent" -ge "$PAYERS" ] || { echo "not ok - the stall sent $sent notification(s) for $PAYERS payers"; exit 1; }

fail=0
declare -A per_payer=()
while read -r _ _ handle peer value; do
  k=
  for ((i = 1; i <= PAYERS; i++)); do
    [ "$peer" = "$(printf '00:AA:01:%02X:00:%02X' "$i" "$i")" ] && k=$i
  done
  if [ -z "$k" ]; then
    echo "not ok - a notification went out on handle $handle to $peer, not a payer"
    fail=1
    continue
  fi
  at=$(awk -v v="$value" '$1 == "got" && $5 == v { print $2 }' <<<"$events" | sort -u | tr '\n' ' ')
  if [ "$at" != "hci$k " ]; then
    echo "not ok - a notification sent on handle $handle to hci$k ($peer) arrived at: ${at:-nowhere}"
    fail=1
  fi
  per_payer[$k]=$((${per_payer[$k]:-0} + 1))
done < <(grep '^sent ' <<<"$events")

# Nothing a payer received came from a connection to another payer.
while read -r _ hci handle _ value; do
  from=$(awk -v v="$value" '$1 == "sent" && $5 == v { print $4 }' <<<"$events" | sort -u)
  k=${hci#hci}
  if [ "$from" != "$(printf '00:AA:01:%02X:00:%02X' "$k" "$k")" ]; then
    echo "not ok - $hci received on handle $handle a notification hci0 sent to: ${from:-nobody}"
    fail=1
  fi
done < <(grep '^got ' <<<"$events")

summary=
for ((i = 1; i <= PAYERS; i++)); do
  [ "${per_payer[$i]:-0}" -ge 1 ] || { echo "not ok - hci$i received no notification"; fail=1; }
  summary+=" hci$i:${per_payer[$i]:-0}"
done
[ "$fail" -eq 0 ] || exit 1
echo "ok - each of the stall's $sent notifications arrived only at the payer its connection handle leads to (per payer:$summary)"
