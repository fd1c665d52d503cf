#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Prepares the BLE test VM in OUTDIR: Debian's stock kernel, unpacked (never
# installed on the host), and a busybox initramfs that mounts the host's root
# filesystem read-only over 9p under a tmpfs overlay and hands over to
# tests/ble/guest-init.sh.  See docs/ble-testing.md.
#
#   vm-setup.sh [--release bookworm|trixie] OUTDIR
#
# bookworm (the default) takes the kernel from the host's apt sources; the
# guest runs the host's bluez.  trixie takes Debian 13's kernel and bluez
# from deb.debian.org through a private apt configuration in OUTDIR/apt (the
# host's apt sources are never changed) and unpacks bluez with the libraries
# it needs into OUTDIR/bluez; the guest runs those binaries through that
# tree's dynamic loader, while tallyd and everything else stay the host's.
#
# Produces OUTDIR/kpkg (the unpacked linux-image package, with modules.dep),
# OUTDIR/initrd.gz and OUTDIR/vm.conf (RELEASE, KVER, KERNEL, INITRD, MODULES,
# and for trixie BLUEZ_ROOT and BLUEZ_VERSION).  A
# second call with the same script is a no-op.  Concurrent calls serialise on
# OUTDIR/.lock.
#
# Environment:
#   TALLY_BLE_KERNEL_PKG   kernel package to use instead of the one
#                          linux-image-amd64 depends on
#
# Exit status: 0 ready, 1 the VM cannot be prepared (the message says why),
# 2 usage.

set -euo pipefail

say() { printf 'vm-setup: %s\n' "$*"; }
die() { printf 'vm-setup: error: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: $0 [--release bookworm|trixie] OUTDIR" >&2
  exit 2
}
RELEASE=bookworm
if [ "${1:-}" = --release ]; then
  [ "$#" -ge 2 ] || usage
  RELEASE=$2
  shift 2
fi
case "$RELEASE" in
  bookworm | trixie) ;;
  *) usage ;;
esac
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
  usage
fi

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
mkdir -p -- "$1"
OUTDIR=$(cd -- "$1" && pwd -P)

# The modules the initramfs loads before it can reach the root filesystem:
# Debian builds virtio, 9p and overlayfs as modules.
INITRD_MODULES=(virtio_pci 9pnet_virtio 9p overlay)

need() {
  local prog=$1 pkg=$2
  command -v "$prog" >/dev/null 2>&1 ||
    die "'$prog' not found: install the Debian package $pkg (scripts/install-deps.sh --test does)"
}

need apt-get apt
need apt-cache apt
need dpkg dpkg
need depmod kmod
need modprobe kmod
need flock util-linux
need sha256sum coreutils
need gzip gzip
[ "$RELEASE" = bookworm ] || need dpkg-deb dpkg

# The initramfs runs before any shared library is reachable, so busybox must
# be the statically linked one.
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install the Debian package busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked: install the Debian package busybox-static"
fi

exec 9>"$OUTDIR/.lock"
flock -w 900 9 || die "another vm-setup has held $OUTDIR/.lock for 15 minutes"

STAMP=$OUTDIR/setup.stamp
SCRIPT_HASH=$(sha256sum "$SELF" | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ -f "$OUTDIR/vm.conf" ]; then
  # shellcheck source=/dev/null
  . "$OUTDIR/vm.conf"
  if [ "$(cat "$STAMP")" = "$SCRIPT_HASH $RELEASE ${TALLY_BLE_KERNEL_PKG:-$KPKG}" ] &&
     [ -f "$KERNEL" ] && [ -f "$INITRD" ] && [ -f "$MODULES/modules.dep" ]; then
    say "ready (cached): $RELEASE, kernel $KVER in $OUTDIR"
    exit 0
  fi
fi
rm -f -- "$STAMP"

# The other release's packages come from Debian's archive through an apt
# configuration of OUTDIR's own: its sources, lists and cache live in
# OUTDIR/apt, and nothing of the host's apt state is read or written.
APT_OPTS=()
if [ "$RELEASE" != bookworm ]; then
  PRIV=$OUTDIR/apt
  mkdir -p "$PRIV"/etc/apt/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} \
           "$PRIV"/var/lib/apt/lists/partial "$PRIV"/var/cache/apt/archives/partial \
           "$PRIV"/var/lib/dpkg
  : > "$PRIV/var/lib/dpkg/status"
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$KEYRING" ] || die "$KEYRING not found: install the Debian package debian-archive-keyring"
  echo "deb [signed-by=$KEYRING] ${TALLY_BLE_MIRROR:-http://deb.debian.org/debian} $RELEASE main" \
    > "$PRIV/etc/apt/sources.list"
  APT_OPTS=(-o "Dir=$PRIV" -o "Dir::Etc=$PRIV/etc/apt" -o "Dir::State=$PRIV/var/lib/apt"
            -o "Dir::State::status=$PRIV/var/lib/dpkg/status" -o "Dir::Cache=$PRIV/var/cache/apt"
            -o Debug::NoLocking=1 -o "APT::Sandbox::User=$(id -un)")
  if [ -z "$(find "$PRIV/var/lib/apt/lists" -maxdepth 1 -name '*_Packages*' -print -quit)" ] ||
     [ -z "$(find "$PRIV/var/lib/apt/lists" -maxdepth 1 -name '*_Packages*' -mtime -7 -print -quit)" ]; then
    say "apt-get update for $RELEASE (private configuration in $PRIV)"
    apt-get "${APT_OPTS[@]}" update -q ||
      die "apt-get update for $RELEASE from ${TALLY_BLE_MIRROR:-http://deb.debian.org/debian} failed (no network?)"
  fi
fi

# The concrete image package behind the linux-image-amd64 metapackage, e.g.
# linux-image-6.1.0-56-amd64.
resolve_kernel_pkg() {
  apt-cache "${APT_OPTS[@]}" depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9][^ ]*-amd64$/ { print $2; exit }'
}

KPKG=${TALLY_BLE_KERNEL_PKG:-}
if [ -z "$KPKG" ]; then
  KPKG=$(resolve_kernel_pkg)
  if [ -z "$KPKG" ] && [ "$RELEASE" != bookworm ]; then
    die "the $RELEASE archive has no linux-image-*-amd64 behind linux-image-amd64"
  fi
  if [ -z "$KPKG" ]; then
    say "apt knows no candidate for linux-image-amd64; running apt-get update"
    if [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
    elif command -v sudo >/dev/null 2>&1; then
      sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
    else
      die "apt knows no linux-image-amd64 and this user cannot run apt-get update"
    fi
    KPKG=$(resolve_kernel_pkg)
    [ -n "$KPKG" ] ||
      die "linux-image-amd64 has no linux-image-*-amd64 dependency in the apt sources; check /etc/apt/sources.list(.d)"
  fi
fi
say "kernel package: $KPKG"

WORK=$(mktemp -d "$OUTDIR/.work.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
# apt downloads as the unprivileged _apt user when that user may write here.
chmod 0755 "$WORK"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$WORK"
fi

# An unpacked tree of the same package is reused (only the initramfs changed).
if [ "$(cat "$OUTDIR/kpkg/.package" 2>/dev/null)" = "$KPKG" ]; then
  say "reusing $OUTDIR/kpkg"
else
  say "downloading $KPKG"
  (cd "$WORK" && apt-get "${APT_OPTS[@]}" download -q "$KPKG") ||
    die "apt-get download $KPKG failed (no network, or the package is gone from the mirror: try apt-get update)"
  DEB=$(find "$WORK" -maxdepth 1 -name "${KPKG}_*.deb" -print -quit)
  [ -n "$DEB" ] || die "apt-get download $KPKG left no .deb in $WORK"

  say "unpacking into $OUTDIR/kpkg"
  dpkg -x "$DEB" "$WORK/kpkg" || die "dpkg -x $DEB failed"
  rm -f -- "$DEB"
  # Debian 13's packages ship their modules under /usr (merged /usr); depmod
  # and modprobe -d look under lib/modules.
  if [ ! -d "$WORK/kpkg/lib/modules" ] && [ -d "$WORK/kpkg/usr/lib/modules" ]; then
    mkdir -p "$WORK/kpkg/lib"
    mv -- "$WORK/kpkg/usr/lib/modules" "$WORK/kpkg/lib/modules"
  fi

  mapfile -t kvers < <(find "$WORK/kpkg/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n')
  [ "${#kvers[@]}" -eq 1 ] || die "$KPKG ships ${#kvers[@]} module trees, expected one"
  [ -f "$WORK/kpkg/boot/vmlinuz-${kvers[0]}" ] || die "$KPKG ships no /boot/vmlinuz-${kvers[0]}"

  # The package's postinst would generate modules.dep; it is never run here.
  depmod -b "$WORK/kpkg" "${kvers[0]}" || die "depmod -b failed"
  echo "$KPKG" > "$WORK/kpkg/.package"

  rm -rf -- "$OUTDIR/kpkg"
  mv -- "$WORK/kpkg" "$OUTDIR/kpkg"
fi
KVER=$(find "$OUTDIR/kpkg/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n')
MODULES=$OUTDIR/kpkg/lib/modules/$KVER

# The release's bluez and every library its programs load, for its own
# dynamic loader (the release's libc6 brings it).  The tree is checked on
# the host: each program must resolve all its libraries inside it.
BLUEZ_PKGS=(bluez bluez-test-tools libc6 libglib2.0-0t64 libdbus-1-3 libreadline8t64
  libudev1 libasound2t64 libdw1t64 libelf1t64 zlib1g liblzma5 libbz2-1.0 libzstd1
  libtinfo6 libpcre2-8-0 libffi8 libmount1 libselinux1 libblkid1 libsystemd0 libcap2
  liblz4-1 libgcrypt20 libgpg-error0 libatomic1)
BLUEZ_PROGS=(usr/libexec/bluetooth/bluetoothd usr/bin/btvirt usr/bin/btmon usr/bin/btmgmt
  usr/bin/bluetoothctl)
BLUEZ_ROOT=
BLUEZ_VERSION=
if [ "$RELEASE" != bookworm ]; then
  BLUEZ_ROOT=$OUTDIR/bluez
  say "downloading $RELEASE's bluez and its libraries"
  mkdir -p "$WORK/debs" "$WORK/bluez"
  (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" download -q "${BLUEZ_PKGS[@]}") ||
    die "apt-get download of $RELEASE's ${BLUEZ_PKGS[*]} failed"
  for deb in "$WORK"/debs/*.deb; do
    dpkg-deb -x "$deb" "$WORK/bluez" || die "dpkg-deb -x $deb failed"
  done
  ld=$WORK/bluez/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
  libs=$WORK/bluez/usr/lib/x86_64-linux-gnu:$WORK/bluez/lib/x86_64-linux-gnu
  [ -x "$ld" ] || die "$RELEASE's libc6 brought no $ld"
  for prog in "${BLUEZ_PROGS[@]}"; do
    [ -x "$WORK/bluez/$prog" ] || die "$RELEASE's bluez has no /$prog"
    deps=$("$ld" --library-path "$libs" --list "$WORK/bluez/$prog") ||
      die "$RELEASE's /$prog cannot be loaded: $deps"
    if missing=$(grep -v -e "$WORK/bluez/" -e 'linux-vdso' <<<"$deps"); then
      die "$RELEASE's /$prog needs libraries outside its tree (add their packages to BLUEZ_PKGS): $missing"
    fi
  done
  BLUEZ_VERSION=$("$ld" --library-path "$libs" "$WORK/bluez/usr/libexec/bluetooth/bluetoothd" --version) ||
    die "$RELEASE's bluetoothd --version failed"
  rm -rf -- "$WORK/debs" "$BLUEZ_ROOT"
  mv -- "$WORK/bluez" "$BLUEZ_ROOT"
  say "bluez $BLUEZ_VERSION in $BLUEZ_ROOT"
fi

say "building the initramfs"
ROOT=$WORK/initrd
mkdir -p "$ROOT"/{bin,dev,proc,sys,lower,rw,newroot,modules}
cp -- "$BUSYBOX" "$ROOT/bin/busybox"

# modprobe prints the insmod lines in load order, dependencies first; a
# module shared by several appears once per user.
mapfile -t kos < <(modprobe -d "$OUTDIR/kpkg" -S "$KVER" --show-depends -a "${INITRD_MODULES[@]}" |
                     awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
[ "${#kos[@]}" -ge "${#INITRD_MODULES[@]}" ] ||
  die "modprobe could not resolve ${INITRD_MODULES[*]} in $KPKG"
: > "$ROOT/modules/order"
for ko in "${kos[@]}"; do
  name=$(basename "$ko")
  case "$name" in
    *.ko) cp -- "$ko" "$ROOT/modules/$name" ;;
    *.ko.xz) need xz xz-utils; name=${name%.xz}; xz -dc "$ko" > "$ROOT/modules/$name" ;;
    *.ko.zst) need zstd zstd; name=${name%.zst}; zstd -qdc "$ko" > "$ROOT/modules/$name" ;;
    *) die "unsupported module file $ko" ;;
  esac
  echo "$name" >> "$ROOT/modules/order"
done

# PID 1 of the initramfs.  The kernel passes the unknown cmdline parameter
# tally_init=PATH to it as an environment variable.
cat > "$ROOT/init" <<'EOF'
#!/bin/busybox sh
bb=/bin/busybox
fail() {
  echo "initrd: $*"
  $bb poweroff -f
}
$bb mount -t proc proc /proc
$bb mount -t devtmpfs dev /dev
while read -r m; do
  $bb insmod "/modules/$m" || fail "insmod $m failed"
done < /modules/order
$bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower ||
  fail "mounting the host root (9p) failed"
$bb mount -t tmpfs -o mode=0755 rw /rw
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "mounting the overlay failed"
[ -n "$tally_init" ] && [ -x "/newroot$tally_init" ] || fail "no guest init (tally_init=$tally_init)"
$bb umount /proc
$bb mount --move /dev /newroot/dev
exec $bb switch_root /newroot "$tally_init"
EOF
chmod 0755 "$ROOT/init"

(cd "$ROOT" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) > "$WORK/initrd.gz" ||
  die "packing the initramfs failed"
mv -- "$WORK/initrd.gz" "$OUTDIR/initrd.gz"

{
  printf 'RELEASE=%q\n' "$RELEASE"
  printf 'KPKG=%q\n' "$KPKG"
  printf 'KVER=%q\n' "$KVER"
  printf 'KERNEL=%q\n' "$OUTDIR/kpkg/boot/vmlinuz-$KVER"
  printf 'INITRD=%q\n' "$OUTDIR/initrd.gz"
  printf 'MODULES=%q\n' "$MODULES"
  printf 'BLUEZ_ROOT=%q\n' "$BLUEZ_ROOT"
  printf 'BLUEZ_VERSION=%q\n' "$BLUEZ_VERSION"
} > "$OUTDIR/vm.conf"
echo "$SCRIPT_HASH $RELEASE $KPKG" > "$STAMP"
say "ready: $RELEASE, kernel $KVER${BLUEZ_VERSION:+, bluez $BLUEZ_VERSION} in $OUTDIR"
