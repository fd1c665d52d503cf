#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Reads a decoded btmon capture (OUT/btmon.txt) and prints one line per ATT
# PDU that carried a Tally fragment, as one controller saw it, in capture
# order:
#
#   frag HCI TIME DIR OP CID HEADER
#
# DIR is rx or tx (as that controller saw it), OP write (Write Command to
# the rx characteristic) or notify ((Multiple) Handle Value Notification of
# the tx characteristic), CID the L2CAP channel (4: the fixed ATT channel;
# 64 and up: an Enhanced ATT bearer), HEADER the fragment's first byte in
# hex (kind in the high nibble, sequence number in the low one,
# docs/framing.md).  Before them, one line per Enhanced ATT bearer set up:
#
#   bearer HCI CID
#
# for every L2CAP channel on PSM 0x0027 (EATT) that a credit-based
# connection response accepted, named by the CID HCI uses.
#
#   btmon-frags.sh BTMON_TXT [HCI]      (HCI: hci0 unless given)
#
# btmon 5.66 decodes the first K-frame of an SDU, which holds the ATT
# header and the fragment's first bytes: enough here.  Exit status: 0 found
# our characteristics, 1 not, 2 usage.

set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 BTMON_TXT [HCI]" >&2; exit 2; }
file=$1
hci=${2:-hci0}
[ -r "$file" ] || { echo "btmon-frags: cannot read $file" >&2; exit 2; }

awk -v hci="$hci" '
  function flush(   dir) {
    if (!inblock || index(header, "[" hci "]") == 0)
      return
    dir = header ~ /^> ACL Data RX/ ? "rx" : header ~ /^< ACL Data TX/ ? "tx" : ""
    if (dir == "")
      return
    # A credit-based connection request on PSM 0x0027 names its source
    # CID(s); the response accepting it names the other end.  Requests
    # this controller sends carry its own CIDs, responses it sends too.
    # Both ends number their requests from 1: a request is known by its
    # direction and identifier, its response travels the other way.
    if (block ~ /L2CAP: (LE|Enhanced Credit) Connection Request/ && block ~ /PSM: 39 \(0x0027\)/)
      eatt_req[dir " " ident] = cids
    req = (dir == "rx" ? "tx" : "rx") " " ident
    if (block ~ /L2CAP: (LE|Enhanced Credit) Connection Response/ && (req in eatt_req) &&
        block ~ /Result: Connection successful/) {
      # Ours: the CIDs of the request we sent, or of the response we sent.
      n = split(dir == "rx" ? eatt_req[req] : cids, list, " ")
      for (i = 1; i <= n; i++)
        bearers[list[i]] = 1
      delete eatt_req[req]
    }
    if (op == "" || handle == "" || hdr == "")
      return
    if ((op == "write" && handle == rx) || (op == "notify" && handle == tx))
      frags[++nfrags] = sprintf("frag %s %s %s %s %d %s", hci, time, dir, op, cid, hdr)
  }
  /^[^ \t]/ {
    flush()
    inblock = 1; header = $0; block = $0 "\n"
    op = ""; handle = ""; hdr = ""; cid = 4; cids = ""; ident = ""; want_handle = 0; want_data = 0
    time = $NF
    next
  }
  {
    block = block $0 "\n"
    if ($0 ~ /Value Handle: 0x/) { last_value = $3 }
    if ($0 ~ /Value UUID: .*3e9bc08b-8b49-4fc8-ae66-5864293b3bbe/) rx = last_value
    if ($0 ~ /Value UUID: .*3e9bc08b-8b49-4fc8-ae66-5864293b3bbf/) tx = last_value
    if ($0 ~ /^ +Channel: [0-9]+ len/) cid = $2 + 0
    if ($0 ~ /L2CAP: .* ident [0-9]+ len/) { match($0, /ident [0-9]+/); ident = substr($0, RSTART + 6, RLENGTH - 6) }
    if ($0 ~ /^ +(Source|Destination) CID: [0-9]+/) cids = cids " " $NF
    if ($0 ~ /ATT: Write (Command \(0x52\)|Request \(0x12\)) len/) { op = "write"; want_handle = 1; next }
    if ($0 ~ /ATT: Handle (Multiple )?Value Notification \(0x(1b|23)\) len/) { op = "notify"; want_handle = 1; next }
    if (want_handle && $0 ~ /Handle: 0x/) { handle = $2; want_handle = 0; want_data = 1; next }
    if (want_data && $0 ~ /Data: [0-9a-f][0-9a-f]/) { hdr = substr($2, 1, 2); want_data = 0 }
  }
  END {
    flush()
    if (rx == "" || tx == "") { print "no Tally characteristics in the capture"; exit 1 }
    for (c in bearers)
      printf "bearer %s %s\n", hci, c
    for (i = 1; i <= nfrags; i++)
      print frags[i]
  }
' "$file"
