#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs in the BLE test VM (vm-run.sh), cwd = the output directory.  Proves
# that the stack the BLE transport relies on works: bluetoothd exposes both
# virtual controllers powered, root may own org.tally.* on the system bus,
# and hci1 discovers hci0's advertisement through bluetoothd's D-Bus API.
# test-smoke.sh then looks for that advertisement in the decoded capture.
#
#   smoke.sh ADV_NAME

set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 ADV_NAME" >&2
  exit 2
fi
ADV_NAME=$1

ADDR0=00:AA:01:00:00:00
ADDR1=00:AA:01:01:00:01
DEV0_ON_HCI1=/org/bluez/hci1/dev_${ADDR0//:/_}

# Guest uptime in each line, for reading timings off the log.
ok() { printf 'ok - %s [%s]\n' "$*" "$(cut -d' ' -f1 /proc/uptime)"; }
fail() {
  printf 'not ok - %s\n' "$*"
  for log in central.log peripheral.log; do
    [ -f "$log" ] && { echo "---- $log"; strip < "$log"; }
  done
  exit 1
}

strip() { sed -e 's/\x1b\[[0-9;]*[a-zA-Z]//g; s/\x01\|\x02//g' | tr -d '\r'; }

# prop PATH INTERFACE NAME: prints the property as gdbus formats it.
prop() {
  gdbus call --system --dest org.bluez --object-path "$1" \
    --method org.freedesktop.DBus.Properties.Get "$2" "$3"
}

# Two bluetoothctl sessions, each fed through a FIFO held open here (so
# neither sees end of input) and logging to NAME.log, read back with waits.
# The FIFOs live on the guest's tmpfs: the 9p share refuses special files.
FIFO_DIR=$(mktemp -d /run/smoke.XXXXXX)
declare -A CTL_FD CTL_PID
ctl_start() {
  local name=$1 fd
  mkfifo "$FIFO_DIR/$name"
  exec {fd}<> "$FIFO_DIR/$name"
  CTL_FD[$name]=$fd
  bluetoothctl < "$FIFO_DIR/$name" > "$name.log" 2>&1 &
  CTL_PID[$name]=$!
}
ctl() {
  local name=$1
  shift
  printf '%s\n' "$*" >&"${CTL_FD[$name]}"
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

# ctl_wait NAME SECONDS TEXT: waits until the session has printed TEXT.
ctl_printed() { strip < "$1.log" | grep -q -F -- "$2"; }
ctl_wait() { wait_for "$2" ctl_printed "$1" "$3"; }
ctl_stop() {
  local name
  for name in "${!CTL_PID[@]}"; do
    ctl "$name" quit 2>/dev/null || true
  done
  for name in "${!CTL_PID[@]}"; do
    timeout 5 tail -s 0.1 --pid="${CTL_PID[$name]}" -f /dev/null ||
      kill "${CTL_PID[$name]}" 2>/dev/null || true
  done
}
trap ctl_stop EXIT

# Both controllers, as bluetoothd presents them.
for i in 0 1; do
  want=ADDR$i
  got=$(prop "/org/bluez/hci$i" org.bluez.Adapter1 Address)
  [ "$got" = "(<'${!want}'>,)" ] || fail "hci$i has address $got, expected ${!want}"
  got=$(prop "/org/bluez/hci$i" org.bluez.Adapter1 Powered)
  [ "$got" = "(<true>,)" ] || fail "hci$i is not powered: $got"
done
n=$(btmgmt info | grep -c 'current settings: powered.* le ' || true)
[ "$n" = 2 ] || fail "btmgmt sees $n powered LE controllers, expected 2"
ok "hci0 ($ADDR0) and hci1 ($ADDR1) are powered LE controllers"

# tallyd may own its name on the system bus; a name outside org.tally may
# not (the default policy), so the allowance is the harness's.
request_name() {
  gdbus call --system --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.RequestName "$1" 0 2>&1 || true
}
got=$(request_name org.tally.Smoke)
[ "$got" = "(uint32 1,)" ] || fail "root could not own org.tally.Smoke: $got"
got=$(request_name org.example.Smoke)
grep -q -F 'AccessDenied' <<<"$got" || fail "root owned org.example.Smoke: $got"
ok "root may own org.tally.* on the system bus, and only that"

# btvirt reports an advertiser once, when advertising or scanning is
# switched on, and the kernel drops reports that arrive while discovery is
# still starting: the central scans first, the peripheral advertises then.
ctl_start central
ctl central "select $ADDR1"
ctl central "scan le"
ctl_wait central 20 "Controller $ADDR1 Discovering: yes" || fail "hci1 did not start discovery"
ok "hci1 is discovering"

ctl_start peripheral
ctl peripheral "select $ADDR0"
ctl peripheral "menu advertise"
ctl peripheral "name $ADV_NAME"
ctl peripheral "back"
ctl peripheral "advertise on"
ctl_wait peripheral 20 "Advertising object registered" || fail "hci0 could not register an advertisement"
ok "hci0 advertises as $ADV_NAME"

ctl_wait central 30 "Device $ADDR0" || fail "hci1 did not discover $ADDR0"
# The name may come in the scan response, after the device appeared.
has_name() {
  got=$(prop "$DEV0_ON_HCI1" org.bluez.Device1 Name 2>&1 || true)
  [ "$got" = "(<'$ADV_NAME'>,)" ]
}
wait_for 10 has_name || fail "$DEV0_ON_HCI1 has name $got, expected $ADV_NAME"
got=$(prop "$DEV0_ON_HCI1" org.bluez.Device1 AddressType)
[ "$got" = "(<'public'>,)" ] || fail "$DEV0_ON_HCI1 has address type $got, expected public"
ok "hci1 discovered $ADDR0 named $ADV_NAME through bluetoothd"

ctl peripheral "advertise off"
ctl central "scan off"
# bluetoothd's own property, not bluetoothctl's echo of it: bluetoothctl
# 5.82 printed the kernel's "discovering off" and, once, no [CHG] line
# within 10 s on a loaded host.
not_discovering() { [ "$(prop /org/bluez/hci1 org.bluez.Adapter1 Discovering 2>&1)" = "(<false>,)" ]; }
wait_for 10 not_discovering ||
  fail "hci1 did not stop discovery: Discovering is $(prop /org/bluez/hci1 org.bluez.Adapter1 Discovering 2>&1)"
ok "discovery and advertising stopped"
