# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# Shared by the guest scripts of tests/ble/payments: an issuer, tallyd
# instances on a private session bus (their own API) using BlueZ on the
# guest's system bus, and helpers to pay over Bluetooth LE.
#
# Needs TALLY_ISSUER, TALLY_DAEMON and TALLY_CTL (absolute host paths) in the
# environment; runs as root in the VM with cwd = the output directory.

set -euo pipefail

CURRENCY=EUR
# Logs and outputs come back to the host; the SQLite stores stay in the
# guest's tmpfs (the 9p share does not do their locking).
T=$PWD/tally
DATA=$(mktemp -d /tmp/tally-ble.XXXXXX)
rm -rf "$T"
mkdir -p "$T"

declare -A PID=() BUSNAME=() ADAPTER=() RID=()

now() { cut -d' ' -f1 /proc/uptime; }
ok() { printf 'ok - %s [%s]\n' "$*" "$(now)"; }
note() { printf '# %s [%s]\n' "$*" "$(now)"; }
fail() {
  printf 'not ok - %s [%s]\n' "$*" "$(now)"
  dump_logs
  exit 1
}

dump_logs() {
  local f
  for f in "$T"/*.log "$T"/*.out; do
    [ -s "$f" ] || continue
    printf -- '---- %s (last 60 lines)\n' "$f"
    tail -n 60 "$f"
  done
}

# Re-executes the calling script under its own session bus for the tallyd
# APIs; BlueZ stays on the system bus.
private_bus() {
  if [ -z "${TALLY_BLE_IN_SESSION:-}" ]; then
    export TALLY_BLE_IN_SESSION=1
    exec dbus-run-session -- bash "$@"
  fi
}

cleanup() {
  local rc=$? name
  stop_kicker
  for name in "${!PID[@]}"; do
    kill -TERM "${PID[$name]}" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    wait "${PID[$name]}" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT

issuer() { "$TALLY_ISSUER" --dir "$DATA/issuer" "$@"; }
ctl() {
  local name=$1
  shift
  "$TALLY_CTL" --name "${BUSNAME[$name]}" "$@"
}

setup_issuer() {
  issuer init --name "BLE Test Issuer" --currency "$CURRENCY" >/dev/null
  ISSUER_KEY=$(issuer key | tr -d '[:space:]')
}

# start_daemon NAME ADAPTER
start_daemon() {
  local name=$1 adapter=$2 i
  BUSNAME[$name]=org.tally.${name^}
  ADAPTER[$name]=$adapter
  mkdir -p "$DATA/$name"
  cat >"$T/$name.conf" <<EOF
[register]
dir=$DATA/$name
issuer_key=$ISSUER_KEY

[dbus]
bus=session
name=${BUSNAME[$name]}

[transport]
listen=unix:$DATA/$name.sock
ble=true
adapter=$adapter
EOF
  "$TALLY_DAEMON" -v --config "$T/$name.conf" </dev/null >"$T/$name.log" 2>&1 &
  PID[$name]=$!
  for ((i = 0; i < 300; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || fail "tallyd $name exited at start"
    if ctl "$name" --json info >/dev/null 2>&1 &&
       grep -q 'Bluetooth LE payee on' "$T/$name.log"; then
      return 0
    fi
    sleep 0.1
  done
  fail "tallyd $name did not come up with Bluetooth LE on $adapter"
}

# certify NAME [LOAD_AMOUNT]
certify() {
  local name=$1 load=${2:-} key
  issuer account-create "$name" >/dev/null
  key=$(ctl "$name" --json key | jq -er .PublicKey)
  RID[$name]=$(ctl "$name" --json key | jq -er .RegisterId)
  issuer certify --account "$name" --key "$key" --out "$T/$name.cert" --max-payment 20.00 \
    --balance-cap 500.00 --max-payments 100 --max-offline-hours 72 --valid-days 30 >/dev/null
  ctl "$name" certificate "$T/$name.cert" >/dev/null
  if [ -n "$load" ]; then
    issuer deposit "$name" "$load" >/dev/null
    issuer voucher --register "${RID[$name]}" --amount "$load" --out "$T/$name.voucher" >/dev/null
    ctl "$name" load "$T/$name.voucher" >/dev/null
  fi
}

balance() { ctl "$1" --json balance | jq -er .Balance; }

expect_balance() {
  local name=$1 want=$2 got
  got=$(balance "$name")
  [ "$got" = "$want" ] || fail "$name holds $got, expected $want"
  ok "$name holds $want minor units"
}

discovering() {
  gdbus call --system --dest org.bluez --object-path "/org/bluez/$1" \
    --method org.freedesktop.DBus.Properties.Get org.bluez.Adapter1 Discovering 2>/dev/null |
    grep -q true
}

# wait_scanning ADAPTER...: every payer's scan is on, so the payee's
# advertisement, enabled next, reaches them (btvirt reports an advertiser
# once, when scanning or advertising is switched on).
wait_scanning() {
  local a i
  for a in "$@"; do
    for ((i = 0; i < 300; i++)); do
      discovering "$a" && break
      sleep 0.1
    done
    discovering "$a" || fail "$a never started discovery"
  done
}

# btvirt sends a report only when scanning or advertising is switched on,
# and the kernel drops one arriving while its discovery is still starting.
# A payer that scans again (after a payee turned it away) needs the
# advertiser to switch advertising off and on: what a real radio's
# repeated advertisements do by themselves.
# Only while bluetoothd holds our advertisement and nothing is connected
# to the stall: btvirt (5.66) gives every connection the handle 42, and a
# second connection to one controller corrupts the kernel's connection list.
KICKER=
advertising() {
  gdbus call --system --dest org.bluez --object-path "/org/bluez/$1" \
    --method org.freedesktop.DBus.Properties.Get org.bluez.LEAdvertisingManager1 \
    ActiveInstances 2>/dev/null | grep -q 'byte 0x0[1-9]'
}
connected_to() { hcitool -i "$1" con 2>/dev/null | grep -q 'LE '; }
start_kicker() {
  local hci=$1
  (
    while :; do
      sleep 1.5
      if advertising "$hci" && ! connected_to "$hci"; then
        hcitool -i "$hci" cmd 0x08 0x000a 00 >/dev/null 2>&1 || true
        hcitool -i "$hci" cmd 0x08 0x000a 01 >/dev/null 2>&1 || true
      fi
    done
  ) &
  KICKER=$!
}
stop_kicker() {
  if [ -n "$KICKER" ]; then
    kill "$KICKER" 2>/dev/null || true
    wait "$KICKER" 2>/dev/null || true
    KICKER=
  fi
}

# start_request NAME AMOUNT MEMO [PAYERS]: tallyctl request in the
# background; sets REQ_PID, REQ_OUT and REQ_ADDRESS (the ble:TAG).
start_request() {
  local name=$1 amount=$2 memo=$3 payers=${4:-1} i
  REQ_OUT=$T/request-$name.out
  ctl "$name" request "$amount" --memo "$memo" --payers "$payers" --timeout 150 \
    </dev/null >"$REQ_OUT" 2>&1 &
  REQ_PID=$!
  for ((i = 0; i < 300; i++)); do
    REQ_ADDRESS=$(sed -n 's/^Waiting for payer on .* and \(ble:[0-9a-f]*\)$/\1/p' "$REQ_OUT")
    [ -n "$REQ_ADDRESS" ] && return 0
    kill -0 "$REQ_PID" 2>/dev/null || fail "$name's request ended early: $(cat "$REQ_OUT")"
    sleep 0.1
  done
  fail "$name's request did not start: $(cat "$REQ_OUT")"
}

# start_pay NAME ADDRESS: tallyctl pay in the background; PAY_PID[NAME].
declare -A PAY_PID=()
start_pay() {
  local name=$1 address=$2
  ctl "$name" pay "$address" --yes --timeout 150 </dev/null >"$T/pay-$name.out" 2>&1 &
  PAY_PID[$name]=$!
}

wait_pay() {
  local name=$1 rc=0
  wait "${PAY_PID[$name]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "$name's payment failed (status $rc): $(cat "$T/pay-$name.out")"
  grep -q '^Paid ' "$T/pay-$name.out" || fail "$name printed no receipt: $(cat "$T/pay-$name.out")"
  ok "$name paid: $(grep '^Paid ' "$T/pay-$name.out")"
}

wait_request() {
  local name=$1 rc=0
  wait "$REQ_PID" || rc=$?
  [ "$rc" -eq 0 ] || fail "$name's request failed (status $rc): $(cat "$REQ_OUT")"
}

# The "ble timing" lines tallyd logs for each BLE payment.
timings() { grep -h 'ble timing' "$T"/*.log || true; }

# restart_stack N: btvirt with N controllers (hci0..hciN-1) in one virtual
# radio, and bluetoothd on them.  vm-run.sh starts two; this replaces its
# btvirt and bluetoothd (found by name: the only ones in the guest).  btmon
# follows the new controllers by itself.
restart_stack() {
  local n=$1 i pid
  for pid in $(pidof bluetoothd); do kill -INT "$pid"; done
  for ((i = 0; i < 100; i++)); do pidof bluetoothd >/dev/null || break; sleep 0.1; done
  for pid in $(pidof btvirt); do kill -TERM "$pid"; done
  for ((i = 0; i < 100; i++)); do [ -e /sys/class/bluetooth/hci0 ] || break; sleep 0.1; done
  btvirt -L "-l$n" >"$T/btvirt-$n.log" 2>&1 &
  for ((i = 0; i < 200; i++)); do [ -e "/sys/class/bluetooth/hci$((n - 1))" ] && break; sleep 0.1; done
  /usr/libexec/bluetooth/bluetoothd -n ${TALLY_BLE_BLUETOOTHD_ARGS:-} >"$T/bluetoothd-$n.log" 2>&1 &
  for ((i = 0; i < 600; i++)); do
    [ "$(timeout 5 btmgmt info 2>/dev/null | grep -c 'current settings: powered')" = "$n" ] && break
    sleep 0.1
  done
  [ "$(timeout 5 btmgmt info 2>/dev/null | grep -c 'current settings: powered')" = "$n" ] ||
    fail "$n controllers not powered after restarting btvirt"
  ok "btvirt runs $n controllers: $(ls /sys/class/bluetooth | tr '\n' ' ')"
}
