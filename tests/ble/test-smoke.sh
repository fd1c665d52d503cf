#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The BLE harness itself: boots the VM with smoke.sh, then checks that the
# decoded capture holds the advertising report hci1 received from hci0.
#
#   test-smoke.sh OUTDIR [bookworm|trixie]
#
# The second argument is the Debian release whose kernel and bluez the VM
# runs (vm-run.sh --release; default bookworm).
# Skips (77) with TALLY_SKIP_BLE=1 or when the VM is not prepared (vm-run.sh);
# a missing package fails.

set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 OUTDIR [bookworm|trixie]" >&2
  exit 2
fi
OUT=$1
RELEASE=${2:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# A name of this run only, so a stale capture cannot pass the check.
ADV_NAME=tally-smoke-$$

rc=0
bash "$HERE/vm-run.sh" --out "$OUT" --timeout 120 --release "$RELEASE" -- "$HERE/smoke.sh" "$ADV_NAME" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

if ! bash "$HERE/btmon-grep.sh" --hci hci1 "$OUT/btmon.txt" \
       'Advertising Report' 'Address: 00:AA:01:00:00:00' "Name (complete): $ADV_NAME"; then
  echo "not ok - $OUT/btmon.txt holds no advertising report from hci0 named $ADV_NAME on hci1"
  exit 1
fi
echo "ok - the capture holds hci0's advertising report as hci1 received it"
