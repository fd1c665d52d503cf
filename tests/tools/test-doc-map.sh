#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# docs/hacking.md maps one payment through the code as `dir/file.c:function`
# hops.  Every hop must name a function that is defined in that file, so
# the map cannot drift from the code it describes.  TAP output.
set -uo pipefail

root=${TALLY_SOURCE_ROOT:?TALLY_SOURCE_ROOT is not set}
doc="$root/docs/hacking.md"

# A hop never wraps: its backquotes hold one `file:function` token.
mapfile -t hops < <(grep -oE '`[a-z]+/[a-z0-9-]+\.c:[a-z_][a-z0-9_]*`' "$doc" | tr -d '`' | sort -u)

if [ "${#hops[@]}" -lt 20 ]; then
  echo "1..1"
  echo "not ok 1 hacking.md names at least 20 file:function hops (found ${#hops[@]})"
  exit 1
fi

echo "1..${#hops[@]}"
n=0
fail=0
for hop in "${hops[@]}"; do
  n=$((n + 1))
  file=${hop%%:*}
  fn=${hop#*:}
  # A definition starts a line with its name and " (" in this tree's style.
  if [ -f "$root/$file" ] && grep -qE "^${fn} \(" "$root/$file"; then
    echo "ok $n $hop is defined"
  else
    echo "not ok $n $hop is named in docs/hacking.md but not defined there"
    fail=1
  fi
done
exit $fail
