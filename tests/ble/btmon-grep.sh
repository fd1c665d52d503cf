#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Finds packets in a decoded btmon capture (vm-run.sh's OUT/btmon.txt).
#
#   btmon-grep.sh [--hci hciN] FILE TEXT...
#
# A packet is a header line ("> HCI Event: ... [hci1] 15.41") with its
# indented lines.  Prints every packet that contains each TEXT (fixed
# strings) and, with --hci, whose header names that controller.
#
# Exit status: 0 a packet matched, 1 none did, 2 usage or unreadable FILE.

set -euo pipefail

hci=
if [ "${1:-}" = --hci ]; then
  [ "$#" -ge 2 ] || { echo "usage: $0 [--hci hciN] FILE TEXT..." >&2; exit 2; }
  hci=$2
  shift 2
fi
if [ "$#" -lt 2 ]; then
  echo "usage: $0 [--hci hciN] FILE TEXT..." >&2
  exit 2
fi
file=$1
shift
[ -r "$file" ] || { echo "btmon-grep: cannot read $file" >&2; exit 2; }

# The texts travel in ARGV, not -v, so awk does not interpret backslashes.
awk -v hci="$hci" '
  BEGIN {
    n = ARGC - 2
    for (i = 1; i <= n; i++) {
      text[i] = ARGV[i + 1]
      delete ARGV[i + 1]
    }
    found = 0
  }
  function check(   i) {
    if (block == "")
      return
    if (hci != "" && index(header, "[" hci "]") == 0)
      return
    for (i = 1; i <= n; i++)
      if (index(block, text[i]) == 0)
        return
    printf "%s", block
    found++
  }
  /^[^ \t]/ { check(); header = $0; block = $0 "\n"; next }
  { block = block $0 "\n" }
  END { check(); exit found ? 0 : 1 }
' "$file" "$@"
