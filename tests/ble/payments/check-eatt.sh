#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# After pay-eatt-small-mtu.sh: proves from the capture that Enhanced ATT
# bearers were set up between payee (hci0) and payer (hci1) and carried
# Tally's Write Commands and notifications, and reports how the fragments
# of each message travelled (which bearers) and in which order each tallyd
# received them (its link's "rx fragment" debug lines).
#
#   check-eatt.sh OUTDIR
#
# Exit status 0 when EATT bearers carried both writes and notifications.

set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

frags=$(bash "$HERE/btmon-frags.sh" "$OUT/btmon.txt" hci0) ||
  { echo "not ok - $OUT/btmon.txt: $frags"; exit 1; }

bearers=$(awk '$1 == "bearer" { printf "%s%s", sep, $3; sep = "," }' <<<"$frags")
[ -n "$bearers" ] ||
  { echo "not ok - no Enhanced ATT bearer (L2CAP PSM 0x0027) was set up with hci0"; exit 1; }
echo "ok - Enhanced ATT bearers of hci0 (L2CAP CIDs): $bearers"

# Our PDUs per bearer and kind, as hci0 saw them.
awk '$1 == "frag" { n[$5 " " ($6 >= 64 ? "EATT CID " $6 : "fixed ATT channel")]++ }
     END { for (k in n) printf "# %s: %d %s\n", k, n[k], "PDUs" }' <<<"$frags" | sort
eatt_writes=$(awk '$1 == "frag" && $5 == "write" && $6 >= 64' <<<"$frags" | wc -l)
eatt_notes=$(awk '$1 == "frag" && $5 == "notify" && $6 >= 64' <<<"$frags" | wc -l)
if [ "$eatt_writes" -lt 1 ] || [ "$eatt_notes" -lt 1 ]; then
  echo "not ok - EATT bearers carried $eatt_writes Write Commands and $eatt_notes notifications of ours"
  exit 1
fi
echo "ok - EATT bearers carried $eatt_writes Write Commands and $eatt_notes notifications of ours"

# Messages: the protocol is lockstep, so a run of writes (or of
# notifications) in hci0's capture is one message.  The capture may miss
# packets of a burst (the monitor socket drops them when btmon falls
# behind), so these counts are a lower bound.
awk '
  function report() {
    if (n == 0)
      return
    printf "# capture, %s message %d: %d fragment(s) on CID(s) %s, sequence %s\n",
      op, ++msg[op], n, cids, seq
  }
  $1 != "frag" { next }
  $5 != op { report(); op = $5; n = 0; cids = ""; seq = ""; delete seen }
  {
    n++
    if (!($6 in seen)) { seen[$6] = 1; cids = cids (cids == "" ? "" : ",") $6 }
    seq = seq (seq == "" ? "" : " ") (index("0123456789abcdef", substr($7, 2, 1)) - 1)
  }
  END { report() }
' <<<"$frags"
interleaved=$(awk '
  $1 != "frag" { next }
  $5 != op { if (k > 1) m++; op = $5; k = 0; delete seen }
  !($6 in seen) { seen[$6] = 1; k++ }
  END { if (k > 1) m++; print m + 0 }
' <<<"$frags")
echo "# capture: $interleaved message(s) travelled on more than one ATT bearer"

# Arrival order at each tallyd.  A message is complete once its ONLY, or its
# FIRST, its LAST and every sequence number up to the LAST's have come; at
# ATT MTU 48 no message takes 16 fragments, so sequence numbers do not wrap.
for side in "stall:the payer's Write Commands" "alice:the payee's notifications"; do
  name=${side%%:*} what=${side#*:}
  log=$OUT/tally/$name.log
  [ -r "$log" ] || continue
  sed -n 's/.* rx fragment \([0-9a-f][0-9a-f]\), .*/\1/p' "$log" | awk -v who="$name" -v what="$what" '
    function done_msg(   i) {
      if (have_only) return 1
      if (!have_first || last < 0) return 0
      for (i = 0; i <= last; i++) if (!(i in got)) return 0
      return 1
    }
    {
      kind = substr($1, 1, 1); s = index("0123456789abcdef", substr($1, 2, 1)) - 1
      order = order (order == "" ? "" : " ") s
      if (kind == "4") have_only = 1
      if (kind == "1") have_first = 1
      if (kind == "3") last = s
      if (s < prev) reordered = 1
      prev = s; got[s] = 1; count++
      if (done_msg()) {
        printf "# %s received %s, message %d: %d fragment(s), %s: %s\n", who, what, ++m, count,
          reordered ? "REORDERED" : "in order", order
        if (reordered) r++
        order = ""; have_only = 0; have_first = 0; last = -1; prev = -1; count = 0
        reordered = 0; delete got
      }
    }
    BEGIN { last = -1; prev = -1 }
    END { printf "# %s: %d of %d message(s) arrived out of order\n", who, r, m }
  '
done
