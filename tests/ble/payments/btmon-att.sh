#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Reads a decoded btmon capture (OUT/btmon.txt) of a payee on hci0 and
# prints, for each LE connection to hci0, the ATT PDUs that carried Tally
# fragments: Write Commands to the rx characteristic and (Multiple) Handle
# Value Notifications of the tx characteristic, as hci0 saw them.
#
#   btmon-att.sh BTMON_TXT [HCI]
#
# Output: "handles RX TX", then one line per connection that carried any:
#   "conn N writes W write_bytes BW notifications M notification_bytes BM"
# Bytes are whole ATT PDUs (opcode included); over EATT a notification is
# one L2CAP SDU, its "sdu" length.  btmon 5.66 prints 128-bit UUIDs of
# attribute types byte-reversed, but the discovery responses forward.
#
# Exit status: 0 found our characteristics, 1 not, 2 usage.

set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 BTMON_TXT [HCI]" >&2; exit 2; }
file=$1
hci=${2:-hci0}
[ -r "$file" ] || { echo "btmon-att: cannot read $file" >&2; exit 2; }

awk -v hci="[$hci]" '
  function flush(   n) {
    if (!inblock || index(header, hci) == 0)
      return
    if (block ~ /LE (Enhanced )?Connection Complete/ && block ~ /Status: Success/) {
      conn++
      return
    }
    n = sdu > 0 ? sdu : attlen + 1
    if (header ~ /^> ACL Data RX/ && op == "write" && handle == rx) {
      writes[conn]++; wbytes[conn] += n; used[conn] = 1
    }
    if (header ~ /^< ACL Data TX/ && op == "notify" && handle == tx) {
      notes[conn]++; nbytes[conn] += n; used[conn] = 1
    }
  }
  /^[^ \t]/ {
    flush()
    inblock = 1; header = $0; block = $0 "\n"; op = ""; handle = ""; sdu = 0; attlen = 0
    next
  }
  {
    block = block $0 "\n"
    if ($0 ~ /Value Handle: 0x/) { last_value = $3 }
    if ($0 ~ /Value UUID: .*3e9bc08b-8b49-4fc8-ae66-5864293b3bbe/) rx = last_value
    if ($0 ~ /Value UUID: .*3e9bc08b-8b49-4fc8-ae66-5864293b3bbf/) tx = last_value
    if ($0 ~ /Channel: .* sdu [0-9]+/) {
      match($0, /sdu [0-9]+/); sdu = substr($0, RSTART + 4, RLENGTH - 4) + 0
    }
    if ($0 ~ /ATT: Write (Command \(0x52\)|Request \(0x12\)) len/) { op = "write"; attlen = $NF + 0; want_handle = 1; next }
    if ($0 ~ /ATT: Handle (Multiple )?Value Notification \(0x(1b|23)\) len/) {
      op = "notify"; attlen = $NF + 0; want_handle = 1; next
    }
    if (want_handle && $0 ~ /Handle: 0x/) { handle = $2; want_handle = 0 }
  }
  END {
    flush()
    if (rx == "" || tx == "") { print "no Tally characteristics in the capture"; exit 1 }
    print "handles " rx " " tx
    for (c = 0; c <= conn; c++)
      if (used[c])
        printf "conn %d writes %d write_bytes %d notifications %d notification_bytes %d\n",
          c, writes[c], wbytes[c], notes[c], nbytes[c]
  }
' "$file"
