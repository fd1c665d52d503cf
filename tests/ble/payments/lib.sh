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

SANITIZER_REPORT='ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:'
cleanup() {
  local rc=$? name reports
  stop_kicker
  stop_repairer
  for name in "${!PID[@]}"; do
    kill -CONT "${PID[$name]}" 2>/dev/null || true
    kill -TERM "${PID[$name]}" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    wait "${PID[$name]}" 2>/dev/null || true
  done
  # Built with -Db_sanitize: a report, leaks at exit included, fails the test.
  # (No process substitution: the guest has no /dev/fd.)
  reports=$(grep -l "$SANITIZER_REPORT" "$T"/*.log 2>/dev/null || true)
  if [ -n "$reports" ]; then
    printf 'not ok - sanitizer reports in %s\n' "$(tr '\n' ' ' <<<"$reports")"
    # shellcheck disable=SC2086 # one log per line, no blanks in their paths
    grep -h -A 30 "$SANITIZER_REPORT" $reports | head -n 120
    rc=1
  fi
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

# Extra [payment] and [transport] lines of a daemon's configuration, by name.
declare -A PAYMENT_EXTRA=() TRANSPORT_EXTRA=()

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
${TRANSPORT_EXTRA[$name]:-}

[payment]
allowed_targets=ble;unix:$DATA
${PAYMENT_EXTRA[$name]:-}
EOF
  "$TALLY_DAEMON" -v --config "$T/$name.conf" </dev/null >"$T/$name.log" 2>&1 &
  PID[$name]=$!
  echo "${PID[$name]}" >"$T/tallyd-$adapter.pid"
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
# So advertising goes off first, and back on only if, with it off (nothing
# can connect then), the stall is still unconnected and still advertising.
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
      if ! advertising "$hci" || connected_to "$hci"; then
        continue
      fi
      hcitool -i "$hci" cmd 0x08 0x000a 00 >/dev/null 2>&1 || true
      if advertising "$hci" && ! connected_to "$hci"; then
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

# Payers that hear the same advertisement connect at the same instant.
# btvirt (5.66) lets the first LE Create Connection through and answers the
# others at once with an LE Connection Complete of status 0x3e (Connection
# Failed to be Established), where a radio's initiator would go on until the
# next advertisement.  Linux 6.1 takes that completion for success: the
# status of an LE Meta event does not reach the command's waiter in
# hci_sync, which alone fails the attempt (hci_le_create_conn_sync,
# create_le_conn_complete), so the attempt stays pending.  Its LE Create
# Connection Cancel is refused (btvirt refuses every one: Command
# Disallowed), the connection object never goes, and every later connection
# from that controller finds it ("hcitool con": state 5, handle 3840) and
# times out.  Only powering the controller off drops it, and only once no
# L2CAP channel hangs on it: with bluetoothd's connecting ATT socket still
# open, power-off ends in a kernel BUG (list corruption in hci_chan_del).
#
# start_repairer ADAPTER...: the kernel's debug message for every LE
# Connection Complete (dynamic debug, hci_le_conn_complete_evt) names the
# controller and the status.  On 0x3e for one of ADAPTER..., the repairer
# waits until the kernel lists no L2CAP channel of that controller to the
# peer (bluetoothd closes it when the payer gives up its Connect, after
# 10 s), pauses the tallyd on that controller (SIGSTOP: a connection
# attempt it started now would hang on the stale one), looks again a
# second later (a Connect may have been on its way), switches the
# controller off and on through bluetoothd, and lets tallyd go on.  The
# payer, back to discovering by then, sees its discovery end and starts
# over, as after any failed attempt.  The repairs are listed in $REPAIRS:
# "ADAPTER PEER UPTIME".
REPAIRER='' REPAIR_DMESG='' REPAIRS=$T/repairs
L2CAP_CHANNELS=/sys/kernel/debug/bluetooth/l2cap
power() {
  gdbus call --system --dest org.bluez --object-path "/org/bluez/$1" \
    --method org.freedesktop.DBus.Properties.Set org.bluez.Adapter1 Powered "<$2>" >/dev/null
}
# l2cap_open LOCAL PEER: an L2CAP channel from LOCAL to PEER exists (the
# kernel prints addresses in lower case).
l2cap_open() { grep -qi "^$1 ([0-9]*) $2 " "$L2CAP_CHANNELS"; }
repair() {
  local hci=$1 peer local_addr end pid
  peer=$(hcitool -i "$hci" con | sed -n 's/.* LE \([0-9A-F:]*\) handle [0-9]* state 5 .*/\1/p' | head -n 1)
  [ -n "$peer" ] || { note "$hci: no pending connection after 0x3e"; return 0; }
  local_addr=$(hcitool dev | sed -n "s/^[[:space:]]*${hci}[[:space:]]*//p")
  note "$hci: btvirt failed an LE Create Connection to $peer at once (0x3e); repairing $hci"
  pid=$(cat "$T/tallyd-$hci.pid")
  end=$(($(date +%s) + 60))
  while :; do
    while l2cap_open "$local_addr" "$peer"; do
      [ "$(date +%s)" -lt "$end" ] || { note "$hci: the L2CAP channel to $peer stays; not repaired"; return 1; }
      sleep 0.2
    done
    kill -STOP "$pid"
    sleep 1
    l2cap_open "$local_addr" "$peer" || break
    kill -CONT "$pid"
  done
  power "$hci" false
  power "$hci" true
  kill -CONT "$pid"
  echo "$hci $peer $(now)" >>"$REPAIRS"
  note "$hci: power-cycled; $(hcitool -i "$hci" con | grep -c 'state 5' || true) pending connection(s) left"
}
start_repairer() {
  local control=/sys/kernel/debug/dynamic_debug/control fifo=/run/tally-repairer
  : >"$REPAIRS"
  [ -e "$control" ] || mount -t debugfs debugfs /sys/kernel/debug || true
  echo 'func hci_le_conn_complete_evt +p' 2>/dev/null >"$control" ||
    fail "cannot switch on the kernel's debug message for LE Connection Complete ($control)"
  [ -r "$L2CAP_CHANNELS" ] || fail "no $L2CAP_CHANNELS"
  rm -f "$fifo"
  mkfifo "$fifo"
  dmesg --follow-new >"$fifo" &
  REPAIR_DMESG=$!
  (
    set +e
    while read -r line; do
      [[ $line =~ \ (hci[0-9]+):\ status\ 0x3e$ ]] || continue
      [[ " $* " == *" ${BASH_REMATCH[1]} "* ]] && repair "${BASH_REMATCH[1]}"
    done <"$fifo"
  ) &
  REPAIRER=$!
}
stop_repairer() {
  local pid
  for pid in "$REPAIR_DMESG" "$REPAIRER"; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  REPAIRER='' REPAIR_DMESG=''
}

# start_request NAME AMOUNT MEMO [PAYERS]: tallyctl request in the
# background; sets REQ_PID, REQ_OUT and REQ_ADDRESS (the ble:TAG).
start_request() {
  local name=$1 amount=$2 memo=$3 payers=${4:-1} i
  # REQ_SUFFIX names the output of a second request open on the same stall.
  REQ_OUT=$T/request-$name${REQ_SUFFIX:-}.out
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
