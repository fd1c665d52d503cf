# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# The Tally payment scenario, shared by scripts/demo.sh (verbose, for people)
# and tests/e2e/test-e2e.sh (quiet, with assertions).  Source it, then call
# scn_setup and scn_run_scenario.
#
#   1. an issuer is created and served by tally-issuerd on loopback; the
#      operator opens the accounts alice, bob and carol over its API
#   2. three registers (alice, bob, carol) enrol online (tallyctl enroll)
#   3. alice tops her register up from her account (tallyctl topup)
#   4. alice pays bob over a local stream transport (UNIX socket)
#   5. bob pays part of it onward to carol, still offline
#   6. every register syncs (tallyctl sync) and the audit, fetched from
#      tally-issuerd, balances
#
# With SCN_MODE=files the same scenario runs the way an air-gapped issuer
# works: no tally-issuerd, certificates and vouchers as files from
# tally-issuer, bundles exported, reconciled and applied by hand.
#
# Input (environment):
#   TALLY_ISSUER, TALLY_ISSUERD,     the programs; default: from
#   TALLYD, TALLYCTL                 $TALLY_BUILD_DIR (default: build/)
#   SCN_MODE=online|files            default online
#   TALLY_KEEP=1                     keep the temporary directory
#   TALLY_WRAP                       run every program under this command,
#                                    e.g. "valgrind --error-exitcode=99 -q"
#   SCN_VERBOSE=1                    print every command and its output
#   SCN_PAYMENT_CONF                 lines added to each tallyd's [payment]
#
# Everything runs on a private session bus: the entry scripts re-execute
# themselves under dbus-run-session (scn_private_bus).

SCN_SRC_ROOT=${SCN_SRC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SCN_VERBOSE=${SCN_VERBOSE:-0}
SCN_MODE=${SCN_MODE:-online}
SCN_CURRENCY=EUR
SCN_NAMES=(alice bob carol)

# Certified limits.  max-payment is below alice's balance after step 4, so
# the over-limit payment in the e2e test fails on the limit, not on funds.
SCN_MAX_PAYMENT=20.00
SCN_BALANCE_CAP=500.00

# Certified display names: bob runs a stall, and payers see its trading
# name instead of his register id.
declare -A SCN_DISPLAY_NAME=([bob]="Bob's Bakery")

declare -A SCN_PID=()      # tallyd process per register
declare -A SCN_BUS=()      # bus name per register
declare -A SCN_SOCK=()     # listen address per register
declare -A SCN_ID=()       # register id (hex)
SCN_ISSUERD_PID=           # tally-issuerd, in online mode
SCN_ISSUER_URL=            # its http://127.0.0.1:PORT
SCN_TMP=
SCN_STEP=0

# --- output ------------------------------------------------------------------

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  SCN_BOLD=$'\e[1m' SCN_DIM=$'\e[2m' SCN_RED=$'\e[31m' SCN_GREEN=$'\e[32m' SCN_OFF=$'\e[0m'
else
  SCN_BOLD='' SCN_DIM='' SCN_RED='' SCN_GREEN='' SCN_OFF=''
fi

scn_log() {
  if [ "$SCN_VERBOSE" = 1 ]; then
    printf '%s\n' "$*"
  fi
  if [ -n "$SCN_TMP" ]; then
    printf '%s\n' "$*" >>"$SCN_TMP/scenario.log"
  fi
}

# A numbered step heading; always printed.
scn_step() {
  SCN_STEP=$((SCN_STEP + 1))
  printf '\n%s== Step %d: %s ==%s\n' "$SCN_BOLD" "$SCN_STEP" "$*" "$SCN_OFF"
  [ -z "$SCN_TMP" ] || printf '== Step %d: %s ==\n' "$SCN_STEP" "$*" >>"$SCN_TMP/scenario.log"
}

# Always printed.
scn_say() {
  printf '%s\n' "$*"
  [ -z "$SCN_TMP" ] || printf '%s\n' "$*" >>"$SCN_TMP/scenario.log"
}

scn_fail() {
  printf '%sFAILED: %s%s\n' "$SCN_RED" "$*" "$SCN_OFF" >&2
  [ -z "$SCN_TMP" ] || printf 'FAILED: %s\n' "$*" >>"$SCN_TMP/scenario.log"
  exit 1
}

# Shows a command the way a person would type it: programs by their short
# name, paths inside the temporary directory as $T/...
scn_show_cmd() {
  local word out=
  for word in "$@"; do
    case "$word" in
      "$TALLY_ISSUER") word=tally-issuer ;;
      "$TALLY_ISSUERD") word=tally-issuerd ;;
      "$TALLYCTL") word=tallyctl ;;
      "$TALLYD") word=tallyd ;;
    esac
    word=${word//$SCN_TMP/\$T}
    [ -z "$SCN_ISSUER_URL" ] || word=${word//$SCN_ISSUER_URL/\$ISSUER}
    case "$word" in
      *\'*\"*|*\"*\'*) word="'${word//\'/\'\\\'\'}'" ;;
      *\'*) word="\"$word\"" ;;
      *[[:space:]]*|*[\"{}]*|'') word="'$word'" ;;
    esac
    out+="${out:+ }$word"
  done
  scn_log "${SCN_DIM}\$ ${out}${SCN_OFF}"
}

# Runs a command, logs it and its output; fails the scenario when it fails.
# Its stdout is left in $SCN_OUT.
scn_run() {
  scn_show_cmd "$@"
  local rc=0
  SCN_OUT=$("$@" 2>"$SCN_TMP/stderr") || rc=$?
  if [ -n "$SCN_OUT" ]; then
    scn_log "$SCN_OUT"
  fi
  if [ "$rc" -eq 0 ] && [ -s "$SCN_TMP/stderr" ]; then
    scn_log "$(cat "$SCN_TMP/stderr")"
  fi
  if [ "$rc" -ne 0 ]; then
    cat "$SCN_TMP/stderr" >&2
    cat "$SCN_TMP/stderr" >>"$SCN_TMP/scenario.log"
    scn_fail "exit status $rc: $(scn_show_cmd_plain "$@")"
  fi
}

# Like scn_run, but its output goes only to the log file.
scn_run_quiet() {
  local saved=$SCN_VERBOSE
  SCN_VERBOSE=0
  scn_run "$@"
  SCN_VERBOSE=$saved
}

# Printed only in quiet mode, where commands and their output are not.
scn_note() {
  if [ "$SCN_VERBOSE" = 1 ]; then
    [ -z "$SCN_TMP" ] || printf '%s\n' "$*" >>"$SCN_TMP/scenario.log"
  else
    scn_say "$@"
  fi
}

# Runs a command that must fail; its stdout and stderr are left in $SCN_OUT.
scn_run_expect_fail() {
  scn_show_cmd "$@"
  local rc=0
  SCN_OUT=$("$@" 2>&1) || rc=$?
  scn_log "$SCN_OUT"
  if [ "$rc" -eq 0 ]; then
    scn_fail "expected failure, got success: $(scn_show_cmd_plain "$@")"
  fi
}

scn_show_cmd_plain() {
  local saved=$SCN_VERBOSE
  SCN_VERBOSE=1
  scn_show_cmd "$@" | sed "s/\x1b\[[0-9;]*m//g"
  SCN_VERBOSE=$saved
}

# --- programs and the private bus -----------------------------------------

scn_find_programs() {
  local build=${TALLY_BUILD_DIR:-$SCN_SRC_ROOT/build}
  : "${TALLY_ISSUER:=$build/issuer/tally-issuer}"
  : "${TALLY_ISSUERD:=$build/issuer/tally-issuerd}"
  : "${TALLYD:=$build/daemon/tallyd}"
  : "${TALLYCTL:=$build/daemon/tallyctl}"
  local p
  for p in "$TALLY_ISSUER" "$TALLYD" "$TALLYCTL"; do
    [ -x "$p" ] || scn_fail "$p is missing; build first (scripts/tally-dev build)"
  done
  command -v jq >/dev/null || scn_fail "jq is missing (scripts/install-deps.sh)"
  if [ -n "${TALLY_WRAP:-}" ]; then
    scn_wrap_programs
  fi
  export TALLY_ISSUER TALLY_ISSUERD TALLYD TALLYCTL
}

# Runs every program under $TALLY_WRAP (e.g. valgrind): small scripts stand
# in for them, so the rest of the scenario needs no change.
scn_wrap_programs() {
  local dir var real
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-wrap.XXXXXX")
  for var in TALLY_ISSUER TALLY_ISSUERD TALLYD TALLYCTL; do
    real=${!var}
    printf '#!/bin/sh\nexec %s %q "$@"\n' "$TALLY_WRAP" "$real" >"$dir/$(basename "$real")"
    chmod +x "$dir/$(basename "$real")"
    printf -v "$var" '%s' "$dir/$(basename "$real")"
  done
  SCN_WRAP_DIR=$dir
}

# Re-executes the calling script under its own session bus, once, so the
# registers' bus names never meet another session's.  Call it first with
# the script's own path and arguments.
scn_private_bus() {
  if [ -n "${SCN_IN_PRIVATE_BUS:-}" ]; then
    return 0
  fi
  command -v dbus-run-session >/dev/null ||
    { echo "dbus-run-session is missing (scripts/install-deps.sh)" >&2; exit 1; }
  export SCN_IN_PRIVATE_BUS=1
  # dbus-daemon warns when it may not raise its fd limit; harmless.
  exec dbus-run-session -- bash "$@" 2> >(grep -v --line-buffered 'Failed to set fd limit' >&2)
}

# --- setup and teardown --------------------------------------------------------

scn_cleanup() {
  local rc=$?
  local name pid status
  for name in "${!SCN_PID[@]}"; do
    pid=${SCN_PID[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "${!SCN_PID[@]}"; do
    pid=${SCN_PID[$name]}
    status=0
    scn_wait_pid "$pid" 10 || status=$?
    if [ "$status" -ne 0 ]; then
      # A daemon that crashed or failed its sanitizer checks on exit fails
      # the run, whatever happened before.
      printf '%stallyd for %s exited with status %d%s\n' "$SCN_RED" "$name" "$status" "$SCN_OFF" >&2
      [ "$rc" -ne 0 ] || rc=1
    fi
  done
  SCN_PID=()
  if [ -n "$SCN_ISSUERD_PID" ]; then
    kill -TERM "$SCN_ISSUERD_PID" 2>/dev/null || true
    status=0
    scn_wait_pid "$SCN_ISSUERD_PID" 10 || status=$?
    if [ "$status" -ne 0 ]; then
      printf '%stally-issuerd exited with status %d%s\n' "$SCN_RED" "$status" "$SCN_OFF" >&2
      [ "$rc" -ne 0 ] || rc=1
    fi
    SCN_ISSUERD_PID=
  fi
  if [ "$rc" -ne 0 ] && [ -n "$SCN_TMP" ] && [ -d "$SCN_TMP" ]; then
    if [ "$SCN_VERBOSE" != 1 ] && [ -s "$SCN_TMP/scenario.log" ]; then
      printf '\n--- scenario commands and output (last 60 lines) ---\n' >&2
      tail -n 60 "$SCN_TMP/scenario.log" >&2
    fi
    for name in issuerd "${SCN_NAMES[@]}"; do
      if [ -s "$SCN_TMP/$name.log" ]; then
        printf '\n--- %s.log (last 40 lines) ---\n' "$name" >&2
        tail -n 40 "$SCN_TMP/$name.log" >&2
      fi
    done
  fi
  if [ -n "$SCN_TMP" ] && [ -d "$SCN_TMP" ]; then
    if [ "${TALLY_KEEP:-0}" = 1 ]; then
      printf '\nKept the scenario directory: %s\n' "$SCN_TMP" >&2
    else
      rm -rf -- "$SCN_TMP"
    fi
  fi
  [ -z "${SCN_WRAP_DIR:-}" ] || rm -rf -- "$SCN_WRAP_DIR"
  exit "$rc"
}

# Waits up to @secs seconds for a child to exit; returns its status, or
# kills it and returns 124.
scn_wait_pid() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      return $?
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 124
}

scn_setup() {
  scn_find_programs
  SCN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tally-scenario.XXXXXX")
  : >"$SCN_TMP/scenario.log"
  trap scn_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# --- helpers -------------------------------------------------------------------

scn_capitalize() { printf '%s%s' "$(tr '[:lower:]' '[:upper:]' <<<"${1:0:1}")" "${1:1}"; }

scn_issuer() { scn_run "$TALLY_ISSUER" --dir "$SCN_TMP/issuer" "$@"; }

scn_ctl() {
  local name=$1
  shift
  scn_run "$TALLYCTL" --name "${SCN_BUS[$name]}" "$@"
}

# The ISO 4217 exponent of currency $1: the same table as
# proto/tally-core.c tally_currency_exponent ().
scn_exponent() {
  case $1 in
  BIF | CLP | DJF | GNF | ISK | JPY | KMF | KRW | PYG | RWF | UGX | UYI | VND | VUV | XAF | XOF | XPF)
    echo 0 ;;
  BHD | IQD | JOD | KWD | LYD | OMR | TND) echo 3 ;;
  CLF | UYW) echo 4 ;;
  *) echo 2 ;;
  esac
}

# Minor units of $SCN_CURRENCY to "12.50" ("1250" for JPY, "1.250" for KWD).
scn_fmt() {
  local v=$1 sign='' e unit
  e=$(scn_exponent "$SCN_CURRENCY")
  if [ "$v" -lt 0 ]; then sign=-; v=$((-v)); fi
  if [ "$e" -eq 0 ]; then
    printf '%s%d' "$sign" "$v"
    return
  fi
  unit=$((10 ** e))
  printf '%s%d.%0*d' "$sign" $((v / unit)) "$e" $((v % unit))
}

# Balance of a register in minor units, read through tallyctl --json, into
# $SCN_BAL.
scn_get_balance() {
  local out
  out=$("$TALLYCTL" --name "${SCN_BUS[$1]}" --json balance) ||
    scn_fail "tallyctl balance for $1 failed"
  SCN_BAL=$(jq -er '.Balance' <<<"$out") ||
    scn_fail "tallyctl --json balance for $1: no Balance in: $out"
}

scn_show_balances() {
  local name line=
  for name in "${SCN_NAMES[@]}"; do
    [ -n "${SCN_PID[$name]:-}" ] || continue
    scn_get_balance "$name"
    line+=$(printf '%s %s %s   ' "$name" "$(scn_fmt "$SCN_BAL")" "$SCN_CURRENCY")
  done
  scn_say "  balances: $line"
}

scn_start_daemon() {
  local name=$1
  local cap
  cap=$(scn_capitalize "$name")
  SCN_BUS[$name]=org.tally.$cap
  SCN_SOCK[$name]=unix:$SCN_TMP/$name.sock
  mkdir -p "$SCN_TMP/$name"
  cat >"$SCN_TMP/$name.conf" <<EOF
[register]
dir=$SCN_TMP/$name
issuer_key=$SCN_ISSUER_KEY

[dbus]
bus=session
name=${SCN_BUS[$name]}

[transport]
listen=${SCN_SOCK[$name]}

[payment]
allowed_targets=unix:$SCN_TMP
EOF
  # More [payment] keys of a caller's own, e.g. a shorter timeout_seconds.
  if [ -n "${SCN_PAYMENT_CONF:-}" ]; then
    printf '%s\n' "$SCN_PAYMENT_CONF" >>"$SCN_TMP/$name.conf"
  fi
  # The online issuer; the scenario syncs with tallyctl sync at the step
  # that says so, not on a timer, so that every step shows what it changed.
  if [ -n "$SCN_ISSUER_URL" ]; then
    printf '\n[issuer]\nurl=%s\nsync_interval_seconds=0\n' "$SCN_ISSUER_URL" >>"$SCN_TMP/$name.conf"
  fi
  scn_show_cmd "$TALLYD" --config "$SCN_TMP/$name.conf" '&'
  "$TALLYD" --config "$SCN_TMP/$name.conf" </dev/null >"$SCN_TMP/$name.log" 2>&1 &
  SCN_PID[$name]=$!

  # Ready once it owns its bus name.
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "${SCN_PID[$name]}" 2>/dev/null ||
      { wait "${SCN_PID[$name]}" || true; unset "SCN_PID[$name]"; cat "$SCN_TMP/$name.log" >&2;
        scn_fail "tallyd for $name exited during start-up"; }
    if "$TALLYCTL" --name "${SCN_BUS[$name]}" --json info >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  scn_fail "tallyd for $name did not appear on the bus within 20 s"
}

# scn_pay PAYER PAYEE AMOUNT MEMO
#
# The payee asks for the amount (tallyctl request blocks until the payment
# ends); once its request waits, the payer connects to the payee's socket
# and pays.  Both sides print the comparison code of the handshake; the two
# must match.  Leaves both outputs in $SCN_PAYEE_OUT / $SCN_PAYER_OUT.
scn_pay() {
  local payer=$1 payee=$2 amount=$3 memo=$4
  local req_out=$SCN_TMP/request-$payee.out req_err=$SCN_TMP/request-$payee.err

  scn_show_cmd "$TALLYCTL" --name "${SCN_BUS[$payee]}" request "$amount" --memo "$memo" '&'
  timeout 120 "$TALLYCTL" --name "${SCN_BUS[$payee]}" request "$amount" --memo "$memo" \
    </dev/null >"$req_out" 2>"$req_err" &
  local req_pid=$!

  scn_wait_request "$payee" "$req_pid" "$req_out"

  local pay_rc=0
  scn_show_cmd "$TALLYCTL" --name "${SCN_BUS[$payer]}" pay "${SCN_SOCK[$payee]}" --yes
  SCN_PAYER_OUT=$(timeout 120 "$TALLYCTL" --name "${SCN_BUS[$payer]}" pay "${SCN_SOCK[$payee]}" \
    --yes </dev/null 2>&1) || pay_rc=$?
  local req_rc=0
  wait "$req_pid" || req_rc=$?
  SCN_PAYEE_OUT=$(cat "$req_out" "$req_err")

  scn_log "${SCN_DIM}-- $payer (payer):${SCN_OFF}"
  scn_log "$SCN_PAYER_OUT"
  scn_log "${SCN_DIM}-- $payee (payee):${SCN_OFF}"
  scn_log "$SCN_PAYEE_OUT"

  [ "$pay_rc" -eq 0 ] || scn_fail "$payer's payment to $payee failed (exit status $pay_rc)"
  [ "$req_rc" -eq 0 ] || scn_fail "$payee's payment request failed (exit status $req_rc)"

  local payer_code payee_code
  payer_code=$(scn_comparison_code "$SCN_PAYER_OUT")
  payee_code=$(scn_comparison_code "$SCN_PAYEE_OUT")
  [ -n "$payer_code" ] || scn_fail "$payer's tallyctl printed no comparison code"
  [ -n "$payee_code" ] || scn_fail "$payee's tallyctl printed no comparison code"
  scn_say "  comparison code on $payer's side: $payer_code"
  scn_say "  comparison code on $payee's side: $payee_code"
  [ "$payer_code" = "$payee_code" ] || scn_fail "the comparison codes differ"

  # The payer's prompt names a payee certified with a display name by it.
  local payee_name=${SCN_DISPLAY_NAME[$payee]:-}
  if [ -n "$payee_name" ]; then
    grep -qF "Pay $amount $SCN_CURRENCY to $payee_name " <<<"$SCN_PAYER_OUT" ||
      scn_fail "$payer's prompt does not name $payee as \"$payee_name\""
    scn_say "  $payer's prompt: $(grep -F "Pay $amount $SCN_CURRENCY to" <<<"$SCN_PAYER_OUT" | head -n 1)"
  fi
}

# Starts a payment that must fail on the payer's side.  Leaves the payer's
# output (stdout and stderr) in $SCN_PAYER_OUT and the payee's in
# $SCN_PAYEE_OUT; the payee's request may fail or time out.
scn_pay_expect_fail() {
  local payer=$1 payee=$2 amount=$3 memo=$4
  local req_out=$SCN_TMP/request-$payee.out req_err=$SCN_TMP/request-$payee.err

  scn_show_cmd "$TALLYCTL" --name "${SCN_BUS[$payee]}" request "$amount" --memo "$memo" '&'
  timeout 120 "$TALLYCTL" --name "${SCN_BUS[$payee]}" request "$amount" --memo "$memo" \
    </dev/null >"$req_out" 2>"$req_err" &
  local req_pid=$!
  scn_wait_request "$payee" "$req_pid" "$req_out"

  local pay_rc=0
  scn_show_cmd "$TALLYCTL" --name "${SCN_BUS[$payer]}" pay "${SCN_SOCK[$payee]}" --yes
  SCN_PAYER_OUT=$(timeout 120 "$TALLYCTL" --name "${SCN_BUS[$payer]}" pay "${SCN_SOCK[$payee]}" \
    --yes </dev/null 2>&1) || pay_rc=$?
  local req_rc=0
  wait "$req_pid" || req_rc=$?
  SCN_PAYEE_OUT=$(cat "$req_out" "$req_err")
  scn_log "$SCN_PAYER_OUT"
  scn_log "$SCN_PAYEE_OUT"
  [ "$pay_rc" -ne 0 ] || scn_fail "$payer's payment of $amount to $payee succeeded but must fail"
  [ "$req_rc" -ne 0 ] || scn_fail "$payee's request for $amount succeeded but must fail"
}

# Waits until the payee's request waits for a payer: tallyctl request prints
# "Waiting for payer on ADDRESS" once RequestPayment has returned.
scn_wait_request() {
  local payee=$1 pid=$2 out=$3 i
  for ((i = 0; i < 200; i++)); do
    if grep -q '^Waiting for payer' "$out" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" || rc=$?
      cat "$out" "${out%.out}.err" >&2
      scn_fail "$payee's tallyctl request ended before a payer came (exit status $rc)"
    fi
    sleep 0.1
  done
  scn_fail "$payee's payment request did not start within 20 s"
}

# The six-digit comparison code in tallyctl's output: the payer's
# "Pay ... · code 123 456", the payee's "Comparison code: 123456".
scn_comparison_code() {
  sed -n 's/.*[Cc]ode:\{0,1\} *\([0-9][0-9 ]*[0-9]\).*/\1/p' <<<"$1" | head -n 1 | tr -d ' '
}

# --- the online issuer ---------------------------------------------------------

# Starts tally-issuerd on the issuer in $SCN_TMP/issuer, on 127.0.0.1 and a
# port the kernel picks (it writes the port to --port-file once listening),
# with a random operator token.  Sets $SCN_ISSUER_URL.
scn_start_issuerd() {
  [ -x "$TALLY_ISSUERD" ] || scn_fail "$TALLY_ISSUERD is missing; build first (scripts/tally-dev build)"
  command -v curl >/dev/null || scn_fail "curl is missing (scripts/install-deps.sh)"
  (umask 077 && head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$SCN_TMP/operator.token")
  (umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$SCN_TMP/operator.token")" \
    >"$SCN_TMP/operator.header")
  cat >"$SCN_TMP/issuerd.conf" <<EOF
[issuer]
dir=$SCN_TMP/issuer

[http]
listen=127.0.0.1:0
operator_token_file=$SCN_TMP/operator.token

[enrol]
max_payment=$SCN_MAX_PAYMENT
balance_cap=$SCN_BALANCE_CAP
max_payments=100
max_offline_hours=72
valid_days=30
EOF
  scn_log "${SCN_DIM}\$ cat \$T/issuerd.conf${SCN_OFF}"
  scn_log "$(sed "s|$SCN_TMP|\$T|g" "$SCN_TMP/issuerd.conf")"
  scn_show_cmd "$TALLY_ISSUERD" --config "$SCN_TMP/issuerd.conf" --port-file "$SCN_TMP/issuerd.port" '&'
  "$TALLY_ISSUERD" --config "$SCN_TMP/issuerd.conf" --port-file "$SCN_TMP/issuerd.port" \
    </dev/null >"$SCN_TMP/issuerd.log" 2>&1 &
  SCN_ISSUERD_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$SCN_ISSUERD_PID" 2>/dev/null ||
      { wait "$SCN_ISSUERD_PID" || true; SCN_ISSUERD_PID=; cat "$SCN_TMP/issuerd.log" >&2;
        scn_fail "tally-issuerd exited during start-up"; }
    if [ -s "$SCN_TMP/issuerd.port" ]; then
      SCN_ISSUER_URL=http://127.0.0.1:$(tr -d '[:space:]' <"$SCN_TMP/issuerd.port")
      scn_say "  tally-issuerd serves \$ISSUER = $SCN_ISSUER_URL"
      return 0
    fi
    sleep 0.1
  done
  scn_fail "tally-issuerd wrote no port within 20 s"
}

# scn_operator METHOD PATH [JSON]: the operator API with the operator's
# token; the answer (JSON) is left in $SCN_OUT.
scn_operator() {
  local method=$1 path=$2 body=${3:-}
  local args=(curl -sS --fail-with-body -H "@$SCN_TMP/operator.header" -X "$method")
  [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data "$body")
  scn_run "${args[@]}" "$SCN_ISSUER_URL$path"
}

# scn_open_account NAME [DISPLAY_NAME]: the operator opens an online
# account; its token goes to $SCN_TMP/NAME.token (0600) for tallyctl enroll.
scn_open_account() {
  local name=$1 display=${2:-} body
  if [ -n "$display" ]; then
    body=$(jq -cn --arg n "$name" --arg d "$display" '{name: $n, display_name: $d}')
  else
    body=$(jq -cn --arg n "$name" '{name: $n}')
  fi
  scn_operator POST /v1/operator/accounts "$body"
  (umask 077 && jq -er '.token' <<<"$SCN_OUT" >"$SCN_TMP/$name.token") ||
    scn_fail "no token in the answer for account $name: $SCN_OUT"
}

# The issuer's audit as JSON, into $SCN_AUDIT_JSON: from tally-issuerd
# online, from tally-issuer audit --json with files.
scn_fetch_audit() {
  if [ "$SCN_MODE" = online ]; then
    scn_operator GET /v1/operator/audit
  else
    scn_run_quiet "$TALLY_ISSUER" --dir "$SCN_TMP/issuer" audit --json
  fi
  SCN_AUDIT_JSON=$SCN_OUT
}

# An account's balance as "7.50 EUR", into $SCN_OUT.
scn_account_balance() {
  if [ "$SCN_MODE" = online ]; then
    scn_operator GET "/v1/operator/accounts/$1"
    local v
    v=$(jq -er '.balance' <<<"$SCN_OUT") || scn_fail "no balance for account $1: $SCN_OUT"
    SCN_OUT="$(scn_fmt "$v") $SCN_CURRENCY"
  else
    scn_issuer balance "$1"
  fi
}

# The fraud proofs as a JSON array of {register_id, kind, ...}, into $SCN_OUT.
scn_fraud_proofs() {
  if [ "$SCN_MODE" = online ]; then
    scn_operator GET /v1/operator/fraud-proofs
    SCN_OUT=$(jq -c '.fraud_proofs' <<<"$SCN_OUT")
  else
    scn_issuer fraud-proofs --json
  fi
}

# --- the scenario ------------------------------------------------------------

# The air-gapped way (SCN_MODE=files): certificates, vouchers, bundles and
# results go between the issuer and the registers as files.
scn_run_scenario_files() {
  local name

  scn_step "The issuer is created"
  scn_issuer init --name "Tally Demo Issuer" --currency "$SCN_CURRENCY"
  scn_issuer key
  SCN_ISSUER_KEY=$(tr -d '[:space:]' <<<"$SCN_OUT")
  [[ "$SCN_ISSUER_KEY" =~ ^[0-9a-f]{64}$ ]] || scn_fail "tally-issuer key printed '$SCN_OUT'"
  scn_note "  issuer public key: $SCN_ISSUER_KEY"
  for name in "${SCN_NAMES[@]}"; do
    scn_issuer account-create "$name"
  done
  scn_issuer deposit alice 100.00
  scn_note "  online accounts alice, bob and carol; alice deposited 100.00 $SCN_CURRENCY"

  scn_step "Three registers are created and certified (alice, bob, carol)"
  for name in "${SCN_NAMES[@]}"; do
    scn_start_daemon "$name"
  done
  for name in "${SCN_NAMES[@]}"; do
    scn_ctl "$name" --json key
    SCN_ID[$name]=$(jq -er '.RegisterId' <<<"$SCN_OUT") || scn_fail "no RegisterId for $name"
    local key
    key=$(jq -er '.PublicKey' <<<"$SCN_OUT") || scn_fail "no PublicKey for $name"
    local named=()
    [ -z "${SCN_DISPLAY_NAME[$name]:-}" ] || named=(--display-name "${SCN_DISPLAY_NAME[$name]}")
    scn_issuer certify --account "$name" --key "$key" --out "$SCN_TMP/$name.cert" \
      "${named[@]}" --max-payment "$SCN_MAX_PAYMENT" --balance-cap "$SCN_BALANCE_CAP" \
      --max-payments 100 --max-offline-hours 72 --valid-days 30
    scn_ctl "$name" certificate "$SCN_TMP/$name.cert"
    scn_say "  $name: register ${SCN_ID[$name]} certified${named[1]:+ as \"${named[1]}\"} (max payment $SCN_MAX_PAYMENT, cap $SCN_BALANCE_CAP)"
  done
  scn_show_balances

  scn_step "Alice buys a 40.00 $SCN_CURRENCY voucher and loads her register"
  scn_issuer voucher --register "${SCN_ID[alice]}" --amount 40.00 --out "$SCN_TMP/alice-voucher"
  scn_ctl alice load "$SCN_TMP/alice-voucher"
  scn_show_balances

  scn_step "Alice pays Bob 12.50 $SCN_CURRENCY over a UNIX socket (tallyd to tallyd)"
  scn_pay alice bob 12.50 "coffee beans"
  scn_show_balances

  scn_step "Bob pays Carol 5.00 $SCN_CURRENCY onward, still offline"
  scn_pay bob carol 5.00 "bus ticket"
  scn_show_balances

  scn_step "Everyone reconciles at the issuer; the audit"
  for name in "${SCN_NAMES[@]}"; do
    scn_ctl "$name" export "$SCN_TMP/$name.bundle"
    scn_issuer reconcile "$SCN_TMP/$name.bundle" --out "$SCN_TMP/$name.result"
    [ -z "$SCN_OUT" ] || scn_note "  $(head -n 1 <<<"$SCN_OUT")"
    scn_ctl "$name" apply "$SCN_TMP/$name.result"
  done
  scn_show_balances
  scn_ctl bob history

  # audit exits 1 when the books do not balance; say so rather than just
  # "exit status 1".
  local rc=0
  scn_show_cmd "$TALLY_ISSUER" --dir "$SCN_TMP/issuer" audit
  SCN_OUT=$("$TALLY_ISSUER" --dir "$SCN_TMP/issuer" audit 2>&1) || rc=$?
  scn_say "$SCN_OUT"
  [ "$rc" -eq 0 ] || scn_fail "the issuer's books do not balance (tally-issuer audit: exit status $rc)"
  scn_run_quiet "$TALLY_ISSUER" --dir "$SCN_TMP/issuer" audit --json
  SCN_AUDIT_JSON=$SCN_OUT
  [ "$(jq -r '.balanced' <<<"$SCN_AUDIT_JSON")" = true ] ||
    scn_fail "the issuer's books do not balance: $SCN_AUDIT_JSON"
  scn_say "${SCN_GREEN}  The books balance.${SCN_OFF}"
}

# The online way: tally-issuerd on loopback, the registers enrol, top up and
# sync over HTTP, the audit comes from the service.
scn_run_scenario_online() {
  local name

  scn_step "The issuer is created and served online; the operator opens three accounts"
  scn_issuer init --name "Tally Demo Issuer" --currency "$SCN_CURRENCY"
  scn_issuer key
  SCN_ISSUER_KEY=$(tr -d '[:space:]' <<<"$SCN_OUT")
  [[ "$SCN_ISSUER_KEY" =~ ^[0-9a-f]{64}$ ]] || scn_fail "tally-issuer key printed '$SCN_OUT'"
  scn_note "  issuer public key: $SCN_ISSUER_KEY"
  scn_start_issuerd
  for name in "${SCN_NAMES[@]}"; do
    scn_open_account "$name" "${SCN_DISPLAY_NAME[$name]:-}"
  done
  scn_operator POST /v1/operator/accounts/alice/deposit '{"amount": 10000}'
  scn_note "  online accounts alice, bob and carol; alice deposited 100.00 $SCN_CURRENCY"

  scn_step "Three registers enrol online with their account tokens (alice, bob, carol)"
  for name in "${SCN_NAMES[@]}"; do
    scn_start_daemon "$name"
  done
  for name in "${SCN_NAMES[@]}"; do
    scn_run_quiet "$TALLYCTL" --name "${SCN_BUS[$name]}" --json key
    SCN_ID[$name]=$(jq -er '.RegisterId' <<<"$SCN_OUT") || scn_fail "no RegisterId for $name"
    scn_ctl "$name" enroll --account "$name" --token-file "$SCN_TMP/$name.token"
    local shown=${SCN_DISPLAY_NAME[$name]:-}
    scn_say "  $name: register ${SCN_ID[$name]} enrolled${shown:+ as \"$shown\"} (max payment $SCN_MAX_PAYMENT, cap $SCN_BALANCE_CAP)"
  done
  scn_show_balances

  scn_step "Alice tops her register up with 40.00 $SCN_CURRENCY from her account"
  scn_ctl alice topup 40.00
  scn_show_balances

  scn_step "Alice pays Bob 12.50 $SCN_CURRENCY over a UNIX socket (tallyd to tallyd)"
  scn_pay alice bob 12.50 "coffee beans"
  scn_show_balances

  scn_step "Bob pays Carol 5.00 $SCN_CURRENCY onward, still offline"
  scn_pay bob carol 5.00 "bus ticket"
  scn_show_balances

  scn_step "Everyone syncs with tally-issuerd; the audit, fetched from the service"
  for name in "${SCN_NAMES[@]}"; do
    scn_ctl "$name" sync
  done
  scn_show_balances
  scn_ctl bob history

  scn_fetch_audit
  local field line=
  for field in issued online offline in_flight; do
    line+="${line:+, }${field/_/ } $(scn_fmt "$(jq -er ".$field" <<<"$SCN_AUDIT_JSON")") $SCN_CURRENCY"
  done
  scn_say "  the audit tally-issuerd serves: $line"
  scn_say "  online + offline + in flight = issued: $(jq -r '.identity' <<<"$SCN_AUDIT_JSON")"
  [ "$(jq -r '.balanced' <<<"$SCN_AUDIT_JSON")" = true ] ||
    scn_fail "the issuer's books do not balance: $SCN_AUDIT_JSON"
  scn_say "${SCN_GREEN}  The books balance.${SCN_OFF}"
}

scn_run_scenario() {
  case "$SCN_MODE" in
    online) scn_run_scenario_online ;;
    files) scn_run_scenario_files ;;
    *) scn_fail "SCN_MODE must be online or files, not '$SCN_MODE'" ;;
  esac
}
