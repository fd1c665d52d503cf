#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tallyd behind its system bus policy and polkit, for real: a private
# dbus-daemon of type system that includes daemon/org.tally.Tally.conf,
# polkitd on it with daemon/org.tally.Tally.policy and daemon/50-tally.rules,
# tallyd running on it as root (payer, org.tally.Tally), a second tallyd as
# the payee, and clients that run through setpriv as a user in group "tally"
# or as uid 65534 in no group at all.  Proves that a non-member can neither
# read properties nor receive signals, that an agent of another uid never
# confirms a payment, that the Timeout and target limits refuse with their
# errors, and that polkit decides every method: a member may read and
# request payments but not pay, load, defund, reconcile or cancel another
# user's payment, and root may do everything.
#
# Needs root (CI runs as root) and polkitd; skips otherwise.  It creates
# the group "tally" when it is missing, a user tally-test-member in it, and
# installs the policy and rules file where polkitd reads them, but only in
# a private mount namespace, on overlays over /etc and /usr/share/polkit-1:
# every change goes with the namespace, even when the test is killed and no
# EXIT trap runs.  TAP output.

set -u

BUILD=${TALLY_BUILD_ROOT:?TALLY_BUILD_ROOT is not set}
SRC=${TALLY_SOURCE_ROOT:?TALLY_SOURCE_ROOT is not set}
TALLYD=$BUILD/daemon/tallyd
TALLYCTL=$BUILD/daemon/tallyctl
ISSUER=$BUILD/issuer/tally-issuer
AGENT=$BUILD/tests/daemon/test-agent-helper
POLICY=$SRC/daemon/org.tally.Tally.conf
POLKITD=${POLKITD:-/usr/lib/polkit-1/polkitd}
POLKIT_ACTIONS=/usr/share/polkit-1/actions
POLKIT_RULES=/usr/share/polkit-1/rules.d
OTHER_UID=65534 # nobody
MEMBER=tally-test-member
MEMBER_MARK="tally test-system-bus"

skip() {
  echo "1..0 # SKIP $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] ||
  skip "needs root: starts a system-type dbus-daemon and polkitd, runs tallyd as root and clients as other uids with setpriv"
for p in dbus-daemon setpriv gdbus groupadd useradd userdel getent unshare mount umount; do
  command -v "$p" >/dev/null || skip "$p is missing"
done
[ -x "$POLKITD" ] || skip "polkitd is missing ($POLKITD; Debian package polkitd)"
[ -d "$POLKIT_ACTIONS" ] && [ -d "$POLKIT_RULES" ] || skip "no $POLKIT_ACTIONS or $POLKIT_RULES"

# Into a mount namespace of our own, where the overlays below stay: a run
# killed before its EXIT trap must not leave the group "tally" or polkit's
# files on the machine (the package test checks that none are there).
if [ -z "${TALLY_SYSTEM_BUS_NAMESPACE:-}" ]; then
  TALLY_SYSTEM_BUS_NAMESPACE=1 exec unshare --mount --propagation private -- bash "$0" "$@"
fi

T=$(mktemp -d /tmp/tally-test-system-bus.XXXXXX)
chmod 755 "$T"
PIDS=()
OVERLAYS=()

cleanup() {
  local pid dir
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  for dir in "${OVERLAYS[@]}"; do
    umount "$dir" || echo "# could not unmount the overlay on $dir" >&2
  done
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

# Writable views of /etc (users and groups) and of polkit's files, whose
# changes land in $T and vanish with the namespace.
overlay() { # DIR
  local upper
  upper=$T/overlay$(tr / - <<<"$1")
  mkdir -p "$upper/upper" "$upper/work" || bail "cannot make $upper"
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$upper/upper,workdir=$upper/work" "$1" ||
    bail "cannot mount an overlay on $1 (the test needs overlayfs)"
  OVERLAYS=("$1" "${OVERLAYS[@]}")
}
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  bail "the kernel has no overlayfs: the test changes /etc and polkit's files only on overlays"
overlay /etc
overlay /usr/share/polkit-1

if ! getent group tally >/dev/null; then
  groupadd --system tally || bail "groupadd tally failed"
fi

# polkit reads group membership from the user database, not from the
# caller's process: the member is a user of its own, in "tally".  One a
# killed run left behind carries the mark in its comment field.
if getent passwd "$MEMBER" >/dev/null; then
  [ "$(getent passwd "$MEMBER" | cut -d: -f5)" = "$MEMBER_MARK" ] ||
    bail "a user $MEMBER exists that this test did not create"
  userdel "$MEMBER" || bail "cannot delete the $MEMBER a killed run left"
fi
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
  --no-user-group --gid "$OTHER_UID" --groups tally --comment "$MEMBER_MARK" "$MEMBER" ||
  bail "useradd $MEMBER failed"
MEMBER_UID=$(id -u "$MEMBER")

# Who calls: root, a member of "tally" and a user in no group.
as_member() { setpriv --reuid="$MEMBER_UID" --regid="$OTHER_UID" --init-groups "$@"; }
as_stranger() { setpriv --reuid=$OTHER_UID --regid=$OTHER_UID --clear-groups "$@"; }

# --- polkit's files -------------------------------------------------------------
# Where the packages put them (on the overlay), so that polkitd reads
# exactly what is installed.
install_polkit_file() { # SRC DIR
  install -m 644 "$1" "$2/$(basename "$1")" || bail "cannot install $2/$(basename "$1")"
}
install_polkit_file "$SRC/daemon/org.tally.Tally.policy" "$POLKIT_ACTIONS"
install_polkit_file "$SRC/daemon/50-tally.rules" "$POLKIT_RULES"

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
  <!-- As /usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf;
       polkitd runs as the user polkitd once it has dropped root. -->
  <policy user="root">
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy user="polkitd">
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
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

# --- polkitd ----------------------------------------------------------------------
"$POLKITD" --no-debug </dev/null >"$T/polkitd.log" 2>&1 &
PIDS+=($!)
PID_polkitd=$!
for ((i = 0; i < 100; i++)); do
  [ "$(gdbus call --system --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner org.freedesktop.PolicyKit1 2>/dev/null)" = "(true,)" ] &&
    break
  sleep 0.1
done
kill -0 "$PID_polkitd" 2>/dev/null || bail "polkitd exited"
[ "$i" -lt 100 ] || bail "polkitd did not take org.freedesktop.PolicyKit1"

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

# gdbus prints a byte array as "([byte 0x.., ...],)", or as "(b'...',)"
# when the bytes happen to end in one NUL and hold no other: either way a
# reply that carries bytes, not an error.
is_bytes_reply() { [[ "$1" == "([byte 0x"* || "$1" == "(b'"* || "$1" == '(b"'* ]]; }

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

# GetManagedObjects at / returns every property at once: the same policy.
out=$(as_stranger gdbus call --system --dest org.tally.Tally --object-path / \
  --method org.freedesktop.DBus.ObjectManager.GetManagedObjects 2>&1)
if [[ "$out" == *AccessDenied* ]]; then
  ok "policy/non-member-cannot-get-managed-objects"
else
  not_ok "policy/non-member-cannot-get-managed-objects" "GetManagedObjects as uid $OTHER_UID: $out"
fi

out=$(as_member gdbus call --system --dest org.tally.Tally --object-path / \
  --method org.freedesktop.DBus.ObjectManager.GetManagedObjects 2>&1)
if [[ "$out" == *"objectpath '/org/tally/register'"* && "$out" == *"'Balance': <int64 4000>"* ]]; then
  ok "policy/member-of-tally-gets-managed-objects"
else
  not_ok "policy/member-of-tally-gets-managed-objects" "GetManagedObjects as a member: $out"
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
  # Not the previous request's line: the background shell truncates the
  # file only once it runs.
  rm -f "$T/request.out"
  "$TALLYCTL" --bus system --name org.tally.TestPayee request 1.00 >"$T/request.out" 2>&1 &
  local req=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "Waiting for payer" "$T/request.out" 2>/dev/null && break
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
    "CallerUid $caller, agent of uid $MEMBER_UID said: $(tr '\n' ' ' <"$T/agent-member.out")"
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

# The monitors watched alice: her payment objects appeared with
# InterfacesAdded at /, which carries their properties.
if ! grep -q "InterfacesAdded" "$T/monitor-member.out"; then
  not_ok "policy/non-member-receives-no-interfaces-added" "the member's monitor saw none either:" \
    "$(cat "$T/monitor-member.out")"
elif grep -q "InterfacesAdded" "$T/monitor-stranger.out"; then
  not_ok "policy/non-member-receives-no-interfaces-added" "uid $OTHER_UID saw:" \
    "$(cat "$T/monitor-stranger.out")"
else
  ok "policy/non-member-receives-no-interfaces-added"
fi

# --- limits ------------------------------------------------------------------------
# As root: a member may not Pay at all (below), and the limits hold for
# every uid polkit lets pay.

out=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/bob.sock" \
  "{'Timeout': <uint32 301>}" 2>&1)
if [[ "$out" == *org.tally.Error.InvalidArgument* ]]; then
  ok "limits/timeout-over-300-s-is-invalid-argument"
else
  not_ok "limits/timeout-over-300-s-is-invalid-argument" "$out"
fi

out=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/../../run/dbus/system_bus_socket" "{}" 2>&1)
out2=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:$T/bus.d/../x" "{}" 2>&1)
out3=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "unix:/run/dbus/system_bus_socket" "{}" 2>&1)
out4=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay "tcp:192.0.2.1:22" "{}" 2>&1)
if [[ "$out" == *org.tally.Error.InvalidArgument* && "$out2" == *org.tally.Error.InvalidArgument* &&
  "$out3" == *org.tally.Error.Policy* && "$out4" == *org.tally.Error.Policy* ]]; then
  ok "limits/pay-target-outside-allowed-targets-is-refused"
else
  not_ok "limits/pay-target-outside-allowed-targets-is-refused" "$out" "$out2" "$out3" "$out4"
fi

# --- polkit: what a member may not do -----------------------------------------------
# Every call below passes the bus policy (the caller is in "tally"), so a
# refusal is polkit's: org.tally.Error.NotAuthorized, before the handler
# runs and with the register as it was.

snapshot() { # of alice, as root
  gdbus call "${ALICE[@]}" --method org.freedesktop.DBus.Properties.GetAll org.tally.Register1
  gdbus call "${ALICE[@]}" --method org.tally.Register1.GetHistory 0
}

ALICE_ID=$(get_prop org.tally.Tally /org/tally/register org.tally.Register1 RegisterId)
issuer voucher --register "$ALICE_ID" --amount 5.00 --out "$T/alice-more.voucher" ||
  bail "second voucher for alice"
GARBAGE="[byte 0x01, 0x02, 0x03]"
before=$(snapshot)
declare -A refused
refused[Pay]=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Pay \
  "unix:$T/bob.sock" "{}" 2>&1)
refused[Defund]=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.Defund 2>&1)
refused[LoadVoucher]=$(as_member "$TALLYCTL" --bus system --json load "$T/alice-more.voucher" 2>&1)
refused[InstallCertificate]=$(as_member "$TALLYCTL" --bus system --json certificate \
  "$T/alice.cert" 2>&1)
refused[ApplyResult]=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.ApplyResult \
  "$GARBAGE" 2>&1)
refused[ExportBundle]=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.ExportBundle 2>&1)
after=$(snapshot)
for method in Pay Defund LoadVoucher InstallCertificate ApplyResult ExportBundle; do
  if [[ "${refused[$method]}" == *org.tally.Error.NotAuthorized* ]]; then
    ok "polkit/member-cannot-call-$method"
  else
    not_ok "polkit/member-cannot-call-$method" "${refused[$method]}"
  fi
done
if [ "$before" = "$after" ] && [ -n "$before" ]; then
  ok "polkit/refused-calls-leave-register-unchanged"
else
  not_ok "polkit/refused-calls-leave-register-unchanged" "before: $before" "after: $after"
fi

# --- polkit: what 50-tally.rules grants a member ----------------------------------------

out=$(as_member gdbus call "${ALICE[@]}" --method org.tally.Register1.GetHistory 1 2>&1)
out2=$(as_member "$TALLYCTL" --bus system --json info 2>&1)
if [[ "$out" == *"'Kind': <'"* ]] && [[ "$out2" == *'"Balance"'* ]]; then
  ok "polkit/member-reads-history-and-info"
else
  not_ok "polkit/member-reads-history-and-info" "GetHistory: $out" "info: $out2"
fi

request_as() { # [setpriv-prefix...]: RequestPayment of 1.00 on alice; prints the path
  "$@" gdbus call "${ALICE[@]}" --method org.tally.Register1.RequestPayment 100 "" "{}" 2>&1 |
    sed -nE "s|^\(objectpath '([^']+)',\)$|\1|p"
}
cancel_as() { # PATH [setpriv-prefix...]
  local path=$1
  shift
  "$@" gdbus call --system --dest org.tally.Tally --object-path "$path" \
    --method org.tally.Payment1.Cancel 2>&1
}
state_of() { get_prop org.tally.Tally "$1" org.tally.Payment1 State; }

MINE=$(request_as as_member)
caller=$(get_prop org.tally.Tally "$MINE" org.tally.Payment1 CallerUid)
if [ -n "$MINE" ] && [ "$caller" = "uint32 $MEMBER_UID" ] && [ "$(state_of "$MINE")" = waiting ]; then
  ok "polkit/member-requests-payment"
else
  not_ok "polkit/member-requests-payment" "path '$MINE', CallerUid $caller" "$(cat "$T/alice.log" | tail -3)"
fi
out=$(cancel_as "$MINE" as_member)
if [ "$out" = "()" ] && [ "$(state_of "$MINE")" = failed ]; then
  ok "polkit/member-cancels-own-payment"
else
  not_ok "polkit/member-cancels-own-payment" "$out" "state $(state_of "$MINE")"
fi

# --- polkit: another user's payment -----------------------------------------------------

ROOTS=$(request_as)
out=$(cancel_as "$ROOTS" as_member)
if [[ "$out" == *org.tally.Error.NotAuthorized* ]] && [ "$(state_of "$ROOTS")" = waiting ]; then
  ok "polkit/member-cannot-cancel-another-uids-payment"
else
  not_ok "polkit/member-cannot-cancel-another-uids-payment" "$out" "state $(state_of "$ROOTS")"
fi
cancel_as "$ROOTS" >/dev/null
MINE=$(request_as as_member)
out=$(cancel_as "$MINE")
if [ "$out" = "()" ] && [ "$(state_of "$MINE")" = failed ]; then
  ok "polkit/admin-cancels-another-uids-payment"
else
  not_ok "polkit/admin-cancels-another-uids-payment" "root cancelling $MINE: $out" \
    "state $(state_of "$MINE")"
fi

# --- polkit: root may do everything ----------------------------------------------------
# Root already installed certificates, loaded vouchers and paid above.

balance=$(get_prop org.tally.Tally /org/tally/register org.tally.Register1 Balance)
"$TALLYCTL" --bus system load "$T/alice-more.voucher" >>"$T/ctl.log" 2>&1
balance2=$(get_prop org.tally.Tally /org/tally/register org.tally.Register1 Balance)
out=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.ApplyResult "$GARBAGE" 2>&1)
out2=$(gdbus call "${ALICE[@]}" --method org.tally.Register1.ExportBundle 2>&1)
# The voucher the member could not load loads; a result that is no
# envelope reaches the register's own check.
if [ "$((${balance#int64 } + 500))" = "${balance2#int64 }" ] &&
  [[ "$out" == *org.tally.Error.Malformed* ]] && is_bytes_reply "$out2"; then
  ok "polkit/root-loads-reconciles-and-exports"
else
  not_ok "polkit/root-loads-reconciles-and-exports" "balance $balance -> $balance2" \
    "ApplyResult: $out" "ExportBundle: ${out2:0:80}"
fi
out=$(gdbus call --system --dest org.tally.TestPayee --object-path /org/tally/register \
  --method org.tally.Register1.Defund 2>&1)
closed=$(get_prop org.tally.TestPayee /org/tally/register org.tally.Register1 Closed)
if is_bytes_reply "$out" && [ "$closed" = true ]; then
  ok "polkit/root-defunds"
else
  not_ok "polkit/root-defunds" "$out" "Closed $closed"
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

# --- polkit away ---------------------------------------------------------------------
# Nobody to ask is a refusal, for root too.

kill "$PID_polkitd"
wait "$PID_polkitd" 2>/dev/null
out=$(gdbus call --system --dest org.tally.TestPayee --object-path /org/tally/register \
  --method org.freedesktop.DBus.Properties.Get org.tally.Register1 Balance 2>&1)
if [[ "$out" == *org.tally.Error.NotAuthorized* ]] && grep -q "cannot ask polkit" "$T/bob.log"; then
  ok "polkit/unreachable-polkit-refuses-even-root"
else
  not_ok "polkit/unreachable-polkit-refuses-even-root" "$out" "$(tail -3 "$T/bob.log")"
fi

echo "1..$N"
[ "$FAILED" -eq 0 ]
