#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tallyd behind its system bus policy, for real: a private dbus-daemon of
# type system that includes daemon/org.tally.Tally.conf, tallyd running on
# it as root (payer, org.tally.Tally), a second tallyd as the payee, and
# clients that run as uid 65534 through setpriv, in group "tally" or in no
# group at all.  Proves that a non-member can neither read properties nor
# receive signals, that an agent of another uid never confirms a payment,
# and that the Timeout and target limits refuse with their errors.
#
# Needs root (CI runs as root); skips otherwise.  Creates the group "tally"
# when it is missing and always deletes it again.  TAP output.

set -u

BUILD=${TALLY_BUILD_ROOT:?TALLY_BUILD_ROOT is not set}
SRC=${TALLY_SOURCE_ROOT:?TALLY_SOURCE_ROOT is not set}
TALLYD=$BUILD/daemon/tallyd
TALLYCTL=$BUILD/daemon/tallyctl
ISSUER=$BUILD/issuer/tally-issuer
AGENT=$BUILD/tests/daemon/test-agent-helper
POLICY=$SRC/daemon/org.tally.Tally.conf
OTHER_UID=65534 # nobody

skip() {
  echo "1..0 # SKIP $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] ||
  skip "needs root: starts a system-type dbus-daemon, runs tallyd as root and clients as uid $OTHER_UID with setpriv"
for p in dbus-daemon setpriv gdbus groupadd groupdel getent flock; do
  command -v "$p" >/dev/null || skip "$p is missing"
done

# One run at a time on a machine: another run could delete the group
# "tally" it created while this one uses it.
exec 9>/tmp/tally-test-system-bus.lock
flock 9

T=$(mktemp -d /tmp/tally-test-system-bus.XXXXXX)
chmod 755 "$T"
PIDS=()
CREATED_GROUP=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  if [ "$CREATED_GROUP" -eq 1 ]; then
    groupdel tally || echo "# could not delete the group tally" >&2
  fi
  [ -n "${TALLY_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

N=0
FAILED=0
ok() {
  N=$((N + 1))
  echo "ok $N $1"
}
not_ok() {
  N=$((N + 1))
  FAILED=$((FAILED + 1))
  echo "not ok $N $1"
  shift
  printf '%s\n' "$@" | sed 's/^/# /'

}
bail() {
  echo "Bail out! $*"
  for f in "$T"/*.log; do
    [ -f "$f" ] && sed "s|^|# $(basename "$f"): |" "$f" | tail -20
  done
  exit 1
}

if ! getent group tally >/dev/null; then
  groupadd --system tally || bail "groupadd tally failed"
  CREATED_GROUP=1
fi
TALLY_GID=$(getent group tally | cut -d: -f3)

# Who calls: root, a member of "tally" and a user in no group.
as_member() { setpriv --reuid=$OTHER_UID --regid=$OTHER_UID --groups="$TALLY_GID" "$@"; }
as_stranger() { setpriv --reuid=$OTHER_UID --regid=$OTHER_UID --clear-groups "$@"; }

# --- the bus ------------------------------------------------------------------
# The default policy of /usr/share/dbus-1/system.conf, the policy under test,
# and one more name for the test's payee.
cat >"$T/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=$T/bus</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow own="org.tally.TestPayee"/>
    <allow send_destination="org.tally.TestPayee"/>
  </policy>
  <include>$POLICY</include>
</busconfig>
EOF
dbus-daemon --config-file="$T/bus.conf" --nofork --print-address=1 >"$T/bus.address" 2>"$T/bus.log" &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
  [ -S "$T/bus" ] && [ -s "$T/bus.address" ] && break
  sleep 0.05
done
[ -S "$T/bus" ] || bail "dbus-daemon did not start"
chmod 666 "$T/bus"
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$T/bus"

# --- the issuer and two daemons -----------------------------------------------
issuer() { "$ISSUER" --dir "$T/issuer" "$@" >>"$T/issuer.log" 2>&1; }
issuer init --name "Test Issuer" --currency EUR || bail "tally-issuer init"
ISSUER_KEY=$("$ISSUER" --dir "$T/issuer" key | tr -d '[:space:]')

start_tallyd() { # NAME BUSNAME
  cat >"$T/$1.conf" <<EOF
[register]
dir=$T/$1
issuer_key=$ISSUER_KEY

[dbus]
bus=system
name=$2

[transport]
listen=unix:$T/$1.sock

[payment]
allowed_targets=unix:$T
EOF
  "$TALLYD" --config "$T/$1.conf" </dev/null >"$T/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
  for ((i = 0; i < 100; i++)); do
    gdbus call --system --dest "$2" --object-path /org/tally/register \
      --method org.freedesktop.DBus.Peer.Ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  bail "tallyd $1 did not come up on the bus"
}

get_prop() { # BUSNAME PATH IFACE NAME  (as root)
  gdbus call --system --dest "$1" --object-path "$2" \
    --method org.freedesktop.DBus.Properties.Get "$3" "$4" | sed -E "s/^\(<'?(.*)'?>,\)$/\1/; s/'$//"
}

certify() { # NAME BUSNAME ACCOUNT
  local key id
  key=$(get_prop "$2" /org/tally/register org.tally.Register1 PublicKey)
  id=$(get_prop "$2" /org/tally/register org.tally.Register1 RegisterId)
  issuer account-create "$3" || bail "account-create $3"
  issuer deposit "$3" 100.00 || bail "deposit $3"
  issuer certify --account "$3" --key "$key" --out "$T/$1.cert" --max-payment 20.00 \
    --balance-cap 500.00 --max-payments 100 --max-offline-hours 72 --valid-days 30 ||
    bail "certify $1"
  "$TALLYCTL" --bus system --name "$2" certificate "$T/$1.cert" >>"$T/ctl.log" 2>&1 ||
    bail "install the certificate of $1"
  issuer voucher --register "$id" --amount 40.00 --out "$T/$1.voucher" || bail "voucher $1"
  "$TALLYCTL" --bus system --name "$2" load "$T/$1.voucher" >>"$T/ctl.log" 2>&1 ||
    bail "load the voucher of $1"
}

start_tallyd alice org.tally.Tally
start_tallyd bob org.tally.TestPayee
certify alice org.tally.Tally alice
certify bob org.tally.TestPayee bob

ALICE=(--system --dest org.tally.Tally --object-path /org/tally/register)

# --- who may read ---------------------------------------------------------------

out=$(as_stranger gdbus call "${ALICE[@]}" --method org.freedesktop.DBus.Properties.Get \
  org.tally.Register1 Balance 2>&1)
if [[ "$out" == *AccessDenied* ]]; then
  ok "policy/non-member-cannot-read-properties"
else
  not_ok "policy/non-member-cannot-read-properties" "Get Balance as uid $OTHER_UID: $out"
fi

out=$(as_stranger gdbus call "${ALICE[@]}" --method org.freedesktop.DBus.Properties.GetAll \
  org.tally.Register1 2>&1)
if [[ "$out" == *AccessDenied* ]]; then
  ok "policy/non-member-cannot-read-all-properties"
else
  not_ok "policy/non-member-cannot-read-all-properties" "GetAll as uid $OTHER_UID: $out"
fi

out=$(as_member gdbus call "${ALICE[@]}" --method org.freedesktop.DBus.Properties.Get \
  org.tally.Register1 Balance 2>&1)
if [[ "$out" == "(<int64 4000>,)" ]]; then
  ok "policy/member-of-tally-reads-properties"
else
  not_ok "policy/member-of-tally-reads-properties" "Get Balance as a member: $out"
fi

out=$(as_stranger gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay \
  "unix:$T/bob.sock" "{}" 2>&1)
if [[ "$out" == *AccessDenied* ]]; then
  ok "policy/non-member-cannot-pay"
else
  not_ok "policy/non-member-cannot-pay" "Pay as uid $OTHER_UID: $out"
fi

# --- who may listen ---------------------------------------------------------------
# Both monitors run while root pays below; a member's monitor must see the
# payment's signals, so that the stranger's silence means the policy and
# not a quiet daemon.
as_member gdbus monitor --system --dest org.tally.Tally >"$T/monitor-member.out" 2>&1 &
PIDS+=($!)
as_stranger gdbus monitor --system --dest org.tally.Tally >"$T/monitor-stranger.out" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
  grep -q "is owned by" "$T/monitor-member.out" && grep -q "is owned by" "$T/monitor-stranger.out" &&
    break
  sleep 0.05
done

# --- whose agent confirms ------------------------------------------------------------

# Waits for the payment at PATH on alice to end; prints its state.
wait_payment() {
  local state
  for ((i = 0; i < 200; i++)); do
    state=$(get_prop org.tally.Tally "$1" org.tally.Payment1 State)
    if [ "$state" = done ] || [ "$state" = failed ]; then
      echo "$state"
      return
    fi
    sleep 0.1
  done
  echo "$state"
}

# Bob requests; root pays him through alice with no agent of its own.
pay_bob_as_root() {
  "$TALLYCTL" --bus system --name org.tally.TestPayee request 1.00 >"$T/request.out" 2>&1 &
  local req=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "Waiting for payer" "$T/request.out" && break
    sleep 0.05
  done
  PAYMENT=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/bob.sock" "{}" |
    sed -nE "s|^\(objectpath '([^']+)',\)$|\1|p")
  STATE=$(wait_payment "$PAYMENT")
  wait "$req" 2>/dev/null
}

start_agent() { # OUTFILE [setpriv-prefix...]
  local out=$1
  shift
  "$@" "$AGENT" >"$out" 2>&1 &
  AGENT_PID=$!
  PIDS+=($AGENT_PID)
  for ((i = 0; i < 100; i++)); do
    grep -q registered "$out" && return 0
    sleep 0.05
  done
  bail "the agent did not register: $(cat "$out")"
}

start_agent "$T/agent-member.out" as_member
pay_bob_as_root
error=$(get_prop org.tally.Tally "$PAYMENT" org.tally.Payment1 Error)
message=$(get_prop org.tally.Tally "$PAYMENT" org.tally.Payment1 ErrorMessage)
caller=$(gdbus call --system --dest org.tally.Tally --object-path "$PAYMENT" \
  --method org.freedesktop.DBus.Properties.Get org.tally.Payment1 CallerUid)
if [ "$STATE" = failed ] && [ "$error" = org.tally.Error.Rejected ] &&
  [ "$message" = "no agent registered by uid 0" ] && ! grep -q confirm "$T/agent-member.out" &&
  [ "$caller" = "(<uint32 0>,)" ]; then
  ok "agent/another-uids-default-agent-never-confirms"
else
  not_ok "agent/another-uids-default-agent-never-confirms" "state $STATE, error $error: $message," \
    "CallerUid $caller, agent of uid $OTHER_UID said: $(tr '\n' ' ' <"$T/agent-member.out")"
fi
balance=$(get_prop org.tally.Tally /org/tally/register org.tally.Register1 Balance)
if [ "$balance" = "int64 4000" ]; then
  ok "agent/refused-payment-leaves-balance"
else
  not_ok "agent/refused-payment-leaves-balance" "balance $balance"
fi

start_agent "$T/agent-root.out"
ROOT_AGENT=$AGENT_PID
pay_bob_as_root
if [ "$STATE" = done ] && grep -q "confirm $PAYMENT" "$T/agent-root.out" &&
  ! grep -q confirm "$T/agent-member.out"; then
  ok "agent/same-uid-agent-confirms"
else
  not_ok "agent/same-uid-agent-confirms" "state $STATE; root's agent: $(tr '\n' ' ' <"$T/agent-root.out")" \
    "$(get_prop org.tally.Tally "$PAYMENT" org.tally.Payment1 ErrorMessage)"
fi

for ((i = 0; i < 100; i++)); do
  grep -q "ComparisonCode" "$T/monitor-member.out" && break
  sleep 0.05
done
if ! grep -q "ComparisonCode" "$T/monitor-member.out"; then
  not_ok "policy/non-member-receives-no-signals" "the member's monitor saw no payment either:" \
    "$(cat "$T/monitor-member.out")"
elif grep -q "PropertiesChanged" "$T/monitor-stranger.out"; then
  not_ok "policy/non-member-receives-no-signals" "uid $OTHER_UID saw:" \
    "$(cat "$T/monitor-stranger.out")"
else
  ok "policy/non-member-receives-no-signals"
fi

# --- limits, as a member ----------------------------------------------------------

out=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/bob.sock" \
  "{'Timeout': <uint32 301>}" 2>&1)
if [[ "$out" == *org.tally.Error.InvalidArgument* ]]; then
  ok "limits/timeout-over-300-s-is-invalid-argument"
else
  not_ok "limits/timeout-over-300-s-is-invalid-argument" "$out"
fi

out=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/../../run/dbus/system_bus_socket" "{}" 2>&1)
out2=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/bus.d/../x" "{}" 2>&1)
out3=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:/run/dbus/system_bus_socket" "{}" 2>&1)
out4=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "tcp:192.0.2.1:22" "{}" 2>&1)
if [[ "$out" == *org.tally.Error.InvalidArgument* && "$out2" == *org.tally.Error.InvalidArgument* &&
  "$out3" == *org.tally.Error.Policy* && "$out4" == *org.tally.Error.Policy* ]]; then
  ok "limits/pay-target-outside-allowed-targets-is-refused"
else
  not_ok "limits/pay-target-outside-allowed-targets-is-refused" "$out" "$out2" "$out3" "$out4"
fi

# --- release -----------------------------------------------------------------------

kill "$PID_alice"
wait "$PID_alice" 2>/dev/null
for ((i = 0; i < 50; i++)); do
  grep -q release "$T/agent-root.out" && grep -q release "$T/agent-member.out" && break
  sleep 0.05
done
if grep -q release "$T/agent-root.out" && grep -q release "$T/agent-member.out"; then
  ok "agent/release-sent-to-every-agent-when-tallyd-exits"
else
  not_ok "agent/release-sent-to-every-agent-when-tallyd-exits" \
    "root's agent: $(tr '\n' ' ' <"$T/agent-root.out")" \
    "member's agent: $(tr '\n' ' ' <"$T/agent-member.out")"
fi

echo "1..$N"
[ "$FAILED" -eq 0 ]
