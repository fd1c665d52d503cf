#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# PID 1 of the BLE test VM, started by the initramfs of vm-setup.sh.  The root
# filesystem is the host's, read-only, under a tmpfs overlay.  The 9p share
# "out" is the run's output directory; vm-run.sh wrote vm.env into it.
#
# Brings up the Bluetooth stack on two virtual LE controllers, runs the
# command, decodes the capture while the controllers still exist, writes the
# command's status to OUT/rc and powers off.  Never exits: PID 1 exiting
# panics the kernel (the host would then report a dead VM).

# shellcheck disable=SC2154 # the vm_* variables come from vm.env

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
# The initramfs's hand-over parameter, of no use to anything started here.
unset tally_init
umask 022

# Status written to OUT/rc when the stack never came up; vm-run.sh knows it.
RC_NOT_POWERED=97

# btvirt gives controller k (hci<k>) the address 00:AA:01:<k>:00:<k>.
BTVIRT_ADDRS=()

uptime_s() { local u _; read -r u _ < /proc/uptime; echo "$u"; }
log() { printf '[guest %7s] %s\n' "$(uptime_s)" "$*"; }

poweroff_now() {
  sync
  /bin/busybox poweroff -f
  # Not reached; PID 1 must not return.
  while :; do sleep 60; done
}

# Microseconds on the guest clock.  Waits are bounded by deadlines, not by
# counted polls: under TCG every fork costs tens of milliseconds.
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }

# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds, for at most
# SECONDS.
wait_for() {
  local end=$(($(now_us) + $1 * 1000000))
  shift
  while :; do
    "$@" && return 0
    [ "$(now_us)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# stop PID SIGNAL SECONDS: signals a daemon, waits for it, SIGKILLs it
# after SECONDS.
not_running() { ! kill -0 "$1" 2>/dev/null; }
stop() {
  local pid=$1 sig=$2 secs=$3
  [ -n "$pid" ] || return 0
  kill "-$sig" "$pid" 2>/dev/null || return 0
  wait_for "$secs" not_running "$pid" || kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

# Every controller is known to the kernel's management interface, with
# btvirt's address, and powered.
controllers_powered() {
  local info addr
  info=$(timeout 5 btmgmt info 2>/dev/null) || return 1
  for addr in "${BTVIRT_ADDRS[@]}"; do
    grep -q -F "addr $addr " <<<"$info" || return 1
  done
  [ "$(grep -c 'current settings: powered' <<<"$info")" -eq "${#BTVIRT_ADDRS[@]}" ]
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755,nosuid,nodev run /run
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev shm /dev/shm
hostname blevm

# The output directory appears at its host path, so paths that name it mean
# the same inside and outside.
mkdir -p /run/tally-out
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /run/tally-out ||
   [ ! -r /run/tally-out/vm.env ]; then
  log "cannot mount the output directory"
  poweroff_now
fi
# vm.env sets vm_out, vm_kver, vm_modules, vm_controllers, vm_timeout,
# vm_ready_timeout, vm_bluetoothd_debug, vm_bluetoothd_args and the arrays
# vm_cmd and vm_env.
# shellcheck source=/dev/null
. /run/tally-out/vm.env
for ((k = 0; k < vm_controllers; k++)); do
  BTVIRT_ADDRS+=("$(printf '00:AA:01:%02X:00:%02X' "$k" "$k")")
done
OUT=$vm_out
if ! mkdir -p "$OUT" || ! mount --move /run/tally-out "$OUT"; then
  log "cannot move the output directory to $OUT"
  poweroff_now
fi

KVER=$(uname -r)
[ "$KVER" = "$vm_kver" ] || log "warning: running $KVER, modules are for $vm_kver"
mkdir -p "/lib/modules/$KVER"
mount --bind "$vm_modules" "/lib/modules/$KVER"
ip link set lo up 2>/dev/null
log "userspace up ($KVER)"

# Another release's bluez (vm-setup.sh --release): its programs replace the
# host's at their usual paths, in the overlay only, and run through that
# release's dynamic loader and libraries.  argv[0] stays the program's name,
# so pidof finds them.  Its D-Bus policy and main.conf replace the host's.
if [ -n "${vm_bluez_root:-}" ]; then
  bz=$vm_bluez_root
  for prog in /usr/libexec/bluetooth/bluetoothd /usr/bin/btvirt /usr/bin/btmon \
              /usr/bin/btmgmt /usr/bin/bluetoothctl; do
    rm -f "$prog"
    printf '#!/bin/bash\nexec -a %s %s --library-path %s %s "$@"\n' \
      "${prog##*/}" "$bz/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
      "$bz/usr/lib/x86_64-linux-gnu:$bz/lib/x86_64-linux-gnu" "$bz$prog" > "$prog"
    chmod 0755 "$prog"
  done
  mkdir -p /etc/bluetooth
  cp "$bz/etc/bluetooth/main.conf" /etc/bluetooth/main.conf
  cp "$bz/usr/share/dbus-1/system.d/bluetooth.conf" /etc/dbus-1/system.d/bluetooth.conf 2>/dev/null ||
    { mkdir -p /etc/dbus-1/system.d && cp "$bz/usr/share/dbus-1/system.d/bluetooth.conf" /etc/dbus-1/system.d/; }
  log "bluez $(/usr/libexec/bluetooth/bluetoothd --version 2>&1) from $bz"
fi

# btvirt opens an AF_ALG socket while the kernel waits for hci0's HCI Reset;
# a crypto module loaded on demand then takes longer than the kernel's 2 s
# command timeout ("hci0: Opcode 0x0c03 failed: -110").  Load them all now,
# with the Bluetooth core and the vhci driver.
if ! modprobe -a virtio_rng bluetooth hci_vhci bnep af_alg algif_hash algif_skcipher \
       ecb cmac ctr drbg ansi_cprng ecdh_generic sha512_generic sha3_generic; then
  log "modprobe failed"
fi

# Root may own org.tally.* names on the system bus (tallyd) and anyone may
# call them.  Written before the bus starts, so no ReloadConfig is needed.
mkdir -p /etc/dbus-1/system.d /run/dbus
cat > /etc/dbus-1/system.d/org.tally.conf <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own_prefix="org.tally"/>
  </policy>
  <policy context="default">
    <allow send_destination_prefix="org.tally"/>
  </policy>
</busconfig>
EOF
dbus-daemon --system --fork --nopidfile || log "dbus-daemon failed"
wait_for 10 test -S /run/dbus/system_bus_socket || log "no system bus socket"

btmon -w "$OUT/btmon.snoop" > "$OUT/btmon.log" 2>&1 &
BTMON=$!
# The btsnoop header is written once the monitor socket is open: from then
# on nothing the controllers do is missed.
wait_for 10 test -s "$OUT/btmon.snoop" || log "btmon did not start"

btvirt -L "-l$vm_controllers" > "$OUT/btvirt.log" 2>&1 &
BTVIRT=$!
last=hci$((vm_controllers - 1))
wait_for 20 test -e "/sys/class/bluetooth/$last" || log "btvirt created no $last"

# bluetoothd keeps pairings and device caches here; the host's must not leak in.
mkdir -p /var/lib/bluetooth
mount -t tmpfs -o mode=0700 bluetooth /var/lib/bluetooth

BTD_ARGS=(-n)
[ "${vm_bluetoothd_debug:-0}" = 1 ] && BTD_ARGS+=(-d)
# shellcheck disable=SC2206
BTD_ARGS+=(${vm_bluetoothd_args:-})
/usr/libexec/bluetooth/bluetoothd "${BTD_ARGS[@]}" > "$OUT/bluetoothd.log" 2>&1 &
BTD=$!

# Debian's main.conf has AutoEnable=true: bluetoothd powers them on.
if wait_for "$vm_ready_timeout" controllers_powered; then
  timeout 5 btmgmt info > "$OUT/btmgmt-info.txt" 2>&1
  ready=
  for ((k = 0; k < vm_controllers; k++)); do
    ready+=" hci$k ${BTVIRT_ADDRS[k]}"
  done
  log "controllers powered:$ready"

  # The command's stdin is a pipe that stays open and silent, like an idle
  # terminal: btmgmt quits at end of input before it prints a reply.
  mkfifo /run/idle-stdin
  exec 3<> /run/idle-stdin

  cd "$OUT" || poweroff_now
  log "running: ${vm_cmd[*]}"
  # The forwarded environment reaches the command only, not the daemons.
  timeout -k 10 "$vm_timeout" env "${vm_env[@]}" "${vm_cmd[@]}" \
    < /run/idle-stdin 3<&- > "$OUT/command.log" 2>&1
  rc=$?
  cd /
  case $rc in
    124 | 137) log "command timed out after ${vm_timeout} s (status $rc)" ;;
    *) log "command exited with status $rc" ;;
  esac
else
  timeout 5 btmgmt info > "$OUT/btmgmt-info.txt" 2>&1
  log "controllers not powered after ${vm_ready_timeout} s; not running the command"
  rc=$RC_NOT_POWERED
fi

stop "$BTMON" INT 10
# btmon 5.66 decodes connections with hci_devba(), which needs the hciN
# devices present and up, and segfaults otherwise: decode now, before
# bluetoothd powers them off and btvirt removes them.
timeout 120 btmon -r "$OUT/btmon.snoop" > "$OUT/btmon.txt" 2>&1 ||
  log "btmon -r failed with status $?"
log "capture decoded"

stop "$BTD" INT 10
stop "$BTVIRT" TERM 10
dmesg > "$OUT/dmesg.txt" 2>&1
lsmod > "$OUT/lsmod.txt" 2>&1

echo "$rc" > "$OUT/rc"
sync
umount "$OUT" 2>/dev/null
log "powering off"
poweroff_now
