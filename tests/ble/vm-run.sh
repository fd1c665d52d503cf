#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs COMMAND inside a QEMU guest with the real Bluetooth stack: Debian's
# kernel, btvirt LE controllers (two by default), dbus-daemon --system,
# bluetoothd and btmon.  See docs/ble-testing.md.
#
#   vm-run.sh [--out DIR] [--timeout S] [--controllers N] [--vm-dir DIR]
#             [--release bookworm|trixie] -- COMMAND [ARGS...]
#
#   --out DIR        output directory, shared read-write with the guest at the
#                    same path; COMMAND's working directory.  Default: a new
#                    directory under ${TMPDIR:-/tmp}.
#   --timeout S      COMMAND's time limit in guest seconds (default 180)
#   --controllers N  virtual LE controllers, 1 to 8 (default 2)
#   --vm-dir DIR     the VM prepared by vm-setup.sh (kernel and initramfs),
#                    default $TALLY_BLE_VM_DIR, else $TALLY_BUILD_ROOT/ble-vm
#                    (bookworm) or $TALLY_BUILD_ROOT/ble-vm-trixie
#   --release R      the Debian release whose kernel and bluez the guest runs
#                    (default $TALLY_BLE_RELEASE, else bookworm); the VM
#                    directory must have been prepared for it
#
# vm-run.sh never prepares the VM itself (that downloads a kernel package):
# run tests/ble/vm-setup.sh DIR first, as scripts/tally-dev test and
# scripts/tally-dev ble-setup do.  Without a prepared DIR it skips (77),
# naming that command, or fails (99) with TALLY_REQUIRE_BLE=1.
#
# The guest sees the host's root filesystem read-only, so COMMAND and
# everything it runs are host files named by absolute path; programs built on
# the host run as they are.  hci<k> has the address 00:AA:01:0<k>:00:0<k>
# (hci0 00:AA:01:00:00:00, hci1 00:AA:01:01:00:01); all are powered before
# COMMAND starts, in one simulated radio.
#
# OUT holds afterwards: command.log (COMMAND's stdout and stderr),
# btmon.snoop and btmon.txt (the HCI capture and its decoding), bluetoothd.log,
# btvirt.log, btmgmt-info.txt, dmesg.txt, console.log (the guest console),
# qemu.log and rc.
#
# Environment:
#   TALLY_SKIP_BLE=1              skip: exit 77 at once
#   TALLY_REQUIRE_BLE=1           a VM that is not prepared fails (99)
#                                 instead of skipping
#   TALLY_BLE_BLUETOOTHD_DEBUG=1  run bluetoothd with -d
#   TALLY_BLE_BLUETOOTHD_ARGS     more bluetoothd options, e.g. -E
#   TALLY_BLE_VM_MEM              guest memory in MiB (default 1024)
#   TALLY_BLE_READY_TIMEOUT       guest seconds to wait for both controllers
#                                 to be powered (default 60)
#   TALLY_BLE_VM_SLACK            host seconds allowed beyond --timeout for
#                                 boot and teardown (default 300)
# Variables named TALLY_*, G_*, MALLOC_* and *SAN_OPTIONS are passed on to
# COMMAND (and to nothing else in the guest).
#
# Exit status: COMMAND's, or
#   77  TALLY_SKIP_BLE=1, or the VM is not prepared (without
#       TALLY_REQUIRE_BLE=1)
#   97  the controllers were never powered (COMMAND did not run)
#   98  the VM died or exceeded its time limit
#   99  the VM cannot be run here (missing package, no kernel)
#   2   usage

set -euo pipefail

RC_SKIP=77
RC_NOT_POWERED=97
RC_VM_DIED=98
RC_CANNOT_RUN=99

say() { printf 'vm-run: %s\n' "$*"; }
die() {
  printf 'vm-run: error: %s\n' "$*" >&2
  exit "$RC_CANNOT_RUN"
}
usage() {
  echo "usage: $0 [--out DIR] [--timeout S] [--controllers N] [--vm-dir DIR] [--release bookworm|trixie] -- COMMAND [ARGS...]" >&2
  exit 2
}

if [ "${TALLY_SKIP_BLE:-0}" = 1 ]; then
  say "skipped: TALLY_SKIP_BLE=1"
  exit "$RC_SKIP"
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

out=
timeout_s=180
controllers=2
vm_dir=${TALLY_BLE_VM_DIR:-}
release=${TALLY_BLE_RELEASE:-bookworm}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --out) [ "$#" -ge 2 ] || usage; out=$2; shift 2 ;;
    --timeout) [ "$#" -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
    --controllers) [ "$#" -ge 2 ] || usage; controllers=$2; shift 2 ;;
    --vm-dir) [ "$#" -ge 2 ] || usage; vm_dir=$2; shift 2 ;;
    --release) [ "$#" -ge 2 ] || usage; release=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ "$#" -ge 1 ] || usage
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || usage
[[ "$controllers" =~ ^[1-8]$ ]] || usage
case "$release" in
  bookworm) vm_subdir=ble-vm; setup_args= ;;
  trixie) vm_subdir=ble-vm-trixie; setup_args="--release $release " ;;
  *) usage ;;
esac
if [ -z "$vm_dir" ] && [ -n "${TALLY_BUILD_ROOT:-}" ]; then
  vm_dir=$TALLY_BUILD_ROOT/$vm_subdir
fi
[ -n "$vm_dir" ] || die "no VM cache directory: pass --vm-dir, or set TALLY_BLE_VM_DIR or TALLY_BUILD_ROOT"

# The VM must have been prepared by this vm-setup.sh: its stamp holds the
# script's hash, so a changed script asks for a new preparation too.  A
# plain meson test must not reach the network, so the download is never
# started from here.
not_prepared() {
  local why=$1
  local how="prepare it with: bash $HERE/vm-setup.sh $setup_args$vm_dir"
  case "$vm_dir" in
    */build/ble-vm | */build/ble-vm-trixie) how+=" (or scripts/tally-dev ble-setup)" ;;
  esac
  if [ "${TALLY_REQUIRE_BLE:-0}" = 1 ]; then
    die "the BLE VM in $vm_dir $why; $how"
  fi
  say "skipped: the BLE VM in $vm_dir $why; $how (TALLY_REQUIRE_BLE=1 makes this a failure)"
  exit "$RC_SKIP"
}
vm_ready() {
  local stamp hash KPKG='' KERNEL='' INITRD='' MODULES='' RELEASE=bookworm BLUEZ_ROOT=''
  [ -f "$vm_dir/vm.conf" ] && [ -f "$vm_dir/setup.stamp" ] || not_prepared "is not prepared"
  # shellcheck source=/dev/null
  . "$vm_dir/vm.conf"
  [ -f "$KERNEL" ] && [ -f "$INITRD" ] && [ -f "$MODULES/modules.dep" ] ||
    not_prepared "is incomplete (vm.conf names files that are gone)"
  read -r stamp _ < "$vm_dir/setup.stamp" || true
  hash=$(sha256sum "$HERE/vm-setup.sh" | cut -d' ' -f1)
  [ "$stamp" = "$hash" ] || not_prepared "was prepared by another version of vm-setup.sh"
  [ "$RELEASE" = "$release" ] || not_prepared "holds $RELEASE, not $release"
  if [ -n "$BLUEZ_ROOT" ] && [ ! -x "$BLUEZ_ROOT/usr/libexec/bluetooth/bluetoothd" ]; then
    not_prepared "is incomplete (no bluetoothd in $BLUEZ_ROOT)"
  fi
  if [ -n "${TALLY_BLE_KERNEL_PKG:-}" ] && [ "$TALLY_BLE_KERNEL_PKG" != "$KPKG" ]; then
    not_prepared "holds $KPKG, not TALLY_BLE_KERNEL_PKG=$TALLY_BLE_KERNEL_PKG"
  fi
}
vm_ready

mem=${TALLY_BLE_VM_MEM:-1024}
ready_timeout=${TALLY_BLE_READY_TIMEOUT:-60}
slack=${TALLY_BLE_VM_SLACK:-300}

# The guest resolves a bare name on its PATH; a relative path would resolve
# against OUT there, so make it absolute here.
cmd=("$@")
case "${cmd[0]}" in
  /*) ;;
  */*) cmd[0]=$(cd "$(dirname "${cmd[0]}")" && pwd -P)/$(basename "${cmd[0]}") ;;
  *) ;;
esac

need() {
  local prog=$1 pkg=$2
  command -v "$prog" >/dev/null 2>&1 ||
    die "'$prog' not found: install the Debian package $pkg (scripts/install-deps.sh --test does), or set TALLY_SKIP_BLE=1 to skip the BLE tests"
}
need qemu-system-x86_64 qemu-system-x86
need btvirt bluez-test-tools
need btmon bluez
need btmgmt bluez
[ -x /usr/libexec/bluetooth/bluetoothd ] ||
  die "/usr/libexec/bluetooth/bluetoothd not found: install the Debian package bluez"
need dbus-daemon dbus-daemon
need timeout coreutils

# guest-init.sh travels on the kernel command line, which splits at spaces.
case "$HERE" in
  *[[:space:]]*) die "the source tree path '$HERE' contains white space; the guest cannot be told it" ;;
esac

BLUEZ_ROOT='' BLUEZ_VERSION=''
# shellcheck source=/dev/null
. "$vm_dir/vm.conf"
case "$BLUEZ_ROOT" in
  *[[:space:]]*) die "the bluez tree path '$BLUEZ_ROOT' contains white space" ;;
esac

if [ -z "$out" ]; then
  out=$(mktemp -d "${TMPDIR:-/tmp}/tally-ble.XXXXXX")
fi
mkdir -p -- "$out"
OUT=$(cd -- "$out" && pwd -P)
rm -f -- "$OUT"/{vm.env,rc,console.log,qemu.log,command.log,btmon.snoop,btmon.txt,btmon.log} \
         "$OUT"/{bluetoothd.log,btvirt.log,btmgmt-info.txt,dmesg.txt,lsmod.txt}

# Environment for COMMAND: the test's variables, nothing of the host's
# session (PATH, HOME, D-Bus addresses) that means something else in the guest.
fwd=()
while IFS= read -r name; do
  fwd+=("$name=${!name}")
done < <(compgen -e | grep -E '^(TALLY_[A-Z0-9_]*|G_[A-Z0-9_]*|MALLOC_[A-Z0-9_]*|[A-Z]*SAN_OPTIONS)$' || true)

{
  printf 'vm_out=%q\n' "$OUT"
  printf 'vm_kver=%q\n' "$KVER"
  printf 'vm_modules=%q\n' "$MODULES"
  printf 'vm_bluez_root=%q\n' "$BLUEZ_ROOT"
  printf 'vm_controllers=%q\n' "$controllers"
  printf 'vm_timeout=%q\n' "$timeout_s"
  printf 'vm_ready_timeout=%q\n' "$ready_timeout"
  printf 'vm_bluetoothd_debug=%q\n' "${TALLY_BLE_BLUETOOTHD_DEBUG:-0}"
  printf 'vm_bluetoothd_args=%q\n' "${TALLY_BLE_BLUETOOTHD_ARGS:-}"
  printf 'vm_cmd=('
  printf ' %q' "${cmd[@]}"
  printf ' )\n'
  printf 'vm_env=('
  [ "${#fwd[@]}" -eq 0 ] || printf ' %q' "${fwd[@]}"
  printf ' )\n'
} > "$OUT/vm.env"

# QEMU option values escape a comma by doubling it.
qarg() { printf '%s' "${1//,/,,}"; }

# /dev/kvm, where there is one, may be a paravirtual flavour that cannot boot
# a stock kernel, so the VM always uses TCG.  With -icount the guest clock
# follows executed instructions: a starved host slows the guest down but
# cannot make its timeouts fire early.
# shellcheck disable=SC2054 # commas separate QEMU suboptions
qemu=(qemu-system-x86_64
  -accel tcg,thread=single -icount shift=auto -smp 1 -cpu max -m "$mem"
  -nodefaults -no-user-config -display none -no-reboot
  -serial "file:$(qarg "$OUT/console.log")"
  -device virtio-rng-pci
  -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 tally_init=$HERE/guest-init.sh"
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$(qarg "$OUT"),mount_tag=out,security_model=none,multidevs=remap")

limit=$((timeout_s + slack))
say "booting ($release, kernel $KVER, bluez ${BLUEZ_VERSION:-of the host}, limit ${limit} s): ${cmd[*]}"
say "output in $OUT"
start=$SECONDS
qemu_rc=0
timeout -k 10 "$limit" "${qemu[@]}" < /dev/null > "$OUT/qemu.log" 2>&1 &
qpid=$!
trap 'kill -TERM "$qpid" 2>/dev/null' INT TERM HUP
wait "$qpid" || qemu_rc=$?
# A signal interrupts the first wait; the second collects the real status.
if kill -0 "$qpid" 2>/dev/null; then
  wait "$qpid" || qemu_rc=$?
fi
trap - INT TERM HUP
elapsed=$((SECONDS - start))

rc=$RC_VM_DIED
if [ -s "$OUT/rc" ]; then
  rc=$(cat "$OUT/rc")
  [[ "$rc" =~ ^[0-9]+$ ]] || rc=$RC_VM_DIED
elif [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
  say "the VM exceeded its limit of $limit s"
else
  say "the VM stopped without a result (qemu status $qemu_rc)"
fi

if [ -f "$OUT/command.log" ]; then
  echo "---- command output ($OUT/command.log)"
  cat "$OUT/command.log"
  echo "----"
fi
if [ "$rc" -ne 0 ]; then
  echo "---- guest console ($OUT/console.log)"
  # The console carries the firmware's and kernel's terminal control codes.
  sed -e 's/\x1bc//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' "$OUT/console.log" 2>/dev/null | tr -d '\r' || true
  if [ -s "$OUT/qemu.log" ]; then
    echo "---- qemu ($OUT/qemu.log)"
    cat "$OUT/qemu.log"
  fi
  echo "----"
  case $rc in
    "$RC_NOT_POWERED") say "the controllers were never powered: see $OUT/bluetoothd.log, $OUT/btvirt.log, $OUT/dmesg.txt" ;;
    "$RC_VM_DIED") ;;
    *) say "command failed; capture in $OUT/btmon.txt, bluetoothd in $OUT/bluetoothd.log" ;;
  esac
fi
say "exit status $rc after ${elapsed} s"
exit "$rc"
