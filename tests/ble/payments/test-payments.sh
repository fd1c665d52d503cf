#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs one guest script of tests/ble/payments in the BLE VM (ble_vm_run),
# then checks the decoded capture: the payee's rx characteristic received
# ATT Write Commands and its tx characteristic sent notifications, in every
# connection that carried a payment.  Prints ATT PDUs and bytes per
# connection.  The capture (btmon.txt, btmon.snoop) stays in OUTDIR.
#
#   test-payments.sh VM_RUN OUTDIR GUEST_SCRIPT TALLY_ISSUER TALLYD TALLYCTL
#                    [--conf BLUETOOTHD_CONF] [--check CHECK_SCRIPT]
#                    [--release bookworm|trixie]
#
# --conf: bluetoothd reads this main.conf instead of /etc/bluetooth/main.conf.
# --check: run with OUTDIR after the common checks; its status is the test's.
# --release: the Debian release whose kernel and bluez the VM runs (vm-run.sh).

set -euo pipefail

usage() {
  echo "usage: $0 VM_RUN OUTDIR GUEST_SCRIPT TALLY_ISSUER TALLYD TALLYCTL [--conf FILE] [--check SCRIPT] [--release R]" >&2
  exit 2
}
[ "$#" -ge 6 ] || usage
VM_RUN=$1 OUT=$2 SCRIPT=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
export TALLY_ISSUER=$4 TALLY_DAEMON=$5 TALLY_CTL=$6
shift 6
check=
vm_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --conf) [ "$#" -ge 2 ] || usage; export TALLY_BLE_BLUETOOTHD_ARGS="-f $2"; shift 2 ;;
    --check) [ "$#" -ge 2 ] || usage; check=$2; shift 2 ;;
    --release) [ "$#" -ge 2 ] || usage; vm_args+=(--release "$2"); shift 2 ;;
    *) usage ;;
  esac
done

rc=0
bash "$VM_RUN" --out "$OUT" --timeout 360 "${vm_args[@]}" -- "$SCRIPT" || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

stats=$(bash "$HERE/btmon-att.sh" "$OUT/btmon.txt" hci0) ||
  { echo "not ok - $OUT/btmon.txt: $stats"; exit 1; }
printf '# %s\n' "$stats"
read -r _ rx tx <<<"$(head -n 1 <<<"$stats")"
carried=$(grep -c '^conn ' <<<"$stats" || true)
[ "$carried" -ge 1 ] || { echo "not ok - no connection carried Tally traffic"; exit 1; }
while read -r _ conn _ writes _ wbytes _ notes _ nbytes; do
  [ "$writes" -ge 1 ] && [ "$notes" -ge 1 ] ||
    { echo "not ok - connection $conn: $writes writes to $rx, $notes notifications of $tx"; exit 1; }
done < <(grep '^conn ' <<<"$stats")
echo "ok - btmon shows ATT Write Commands to rx $rx and notifications of tx $tx in $carried connection(s)"
if [ -n "$check" ]; then
  bash "$check" "$OUT"
fi
