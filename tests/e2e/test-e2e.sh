#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End to end: the scenario of scripts/demo.sh with the real programs, then
# checks of its outcome and two payments that must be refused.  Online
# through tally-issuerd, as the demo runs it; with --files the air-gapped
# way, certificates, vouchers, bundles and results as files.
#
#   test-e2e.sh [--files] TALLY_ISSUER TALLY_ISSUERD TALLYD TALLYCTL

set -euo pipefail

ARGS=("$@")
SCN_MODE=online
if [ "${1:-}" = --files ]; then
  SCN_MODE=files
  shift
fi
if [ "$#" -ne 4 ]; then
  echo "usage: $0 [--files] TALLY_ISSUER TALLY_ISSUERD TALLYD TALLYCTL" >&2
  exit 2
fi

SCN_SRC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../../scripts/scenario.sh
. "$SCN_SRC_ROOT/scripts/scenario.sh"
scn_private_bus "$0" "${ARGS[@]}"

TALLY_ISSUER=$1
TALLY_ISSUERD=$2
TALLYD=$3
TALLYCTL=$4
SCN_VERBOSE=${SCN_VERBOSE:-0}

ok() { printf 'ok - %s\n' "$*"; }

expect_balance() {
  local name=$1 want=$2
  scn_get_balance "$name"
  [ "$SCN_BAL" = "$want" ] ||
    scn_fail "$name's balance is $(scn_fmt "$SCN_BAL"), expected $(scn_fmt "$want")"
  ok "$name holds $(scn_fmt "$want") $SCN_CURRENCY"
}

expect_audit() {
  local field=$1 want=$2 got
  got=$(jq -c ".$field" <<<"$SCN_AUDIT_JSON")
  [ "$got" = "$want" ] || scn_fail "audit: $field is $got, expected $want (audit: $SCN_AUDIT_JSON)"
  ok "audit: $field = $want"
}

# expect_history NAME KIND:AMOUNT...: after reconciliation the register's
# history holds exactly these entries (amounts in minor units), each settled.
expect_history() {
  local name=$1
  shift
  scn_ctl "$name" --json history
  local json=$SCN_OUT want have
  want=$(printf '%s\n' "$@" | sort | paste -sd ' ')
  have=$(jq -r '.[] | "\(.Kind):\(.Amount)"' <<<"$json" | sort | paste -sd ' ')
  [ "$have" = "$want" ] || scn_fail "$name's history is '$have', expected '$want': $json"
  have=$(jq -r '[.[] | select(.State != "settled")] | length' <<<"$json")
  [ "$have" = 0 ] || scn_fail "$name has $have unsettled entries after reconciliation: $json"
  ok "$name's history: $want, all settled"
}

expect_error() {
  local what=$1 name=$2
  grep -q -F "$name" <<<"$SCN_OUT" || scn_fail "$what: expected $name, got: $SCN_OUT"
  ok "$what fails with $name"
}

scn_setup
scn_run_scenario

scn_say ""
scn_say "== Checks =="
expect_balance alice 2750
expect_balance bob 750
expect_balance carol 500
expect_audit balanced true
expect_audit in_flight 0
expect_audit issued 10000
expect_audit online 6000
expect_audit offline 4000
expect_history alice load:4000 spent:1250
expect_history bob received:1250 spent:500
expect_history carol received:500

# Alice holds 27.50 but her certificate allows at most 20.00 per payment.
scn_pay_expect_fail alice carol 25.00 "over the limit"
SCN_OUT=$SCN_PAYER_OUT
expect_error "a payment above the certified max-payment" org.tally.Error.LimitPayment
expect_balance alice 2750
expect_balance carol 500

if [ "$SCN_MODE" = files ]; then
  # The voucher alice loaded in step 3, once more.
  scn_run_expect_fail "$TALLYCTL" --name "${SCN_BUS[alice]}" load "$SCN_TMP/alice-voucher"
  expect_error "loading a voucher twice" org.tally.Error.VoucherReplay
  expect_balance alice 2750
else
  # Her top-up of step 3 came out of her account, once.
  scn_account_balance alice
  [ "$SCN_OUT" = "60.00 EUR" ] || scn_fail "alice's account holds $SCN_OUT, expected 60.00 EUR"
  ok "alice's account paid 40.00 EUR for her top-up, once"
fi

# The owner of a register has root: it stops bob's tallyd, writes a balance
# of 1,000,000.00 into the database, and defunds it.  The issuer credits
# only the 7.50 its evidence backs, proves the overdraft and revokes bob.
scn_say ""
scn_say "== Bob's owner edits his register and defunds 1,000,000.00 =="
kill -TERM "${SCN_PID[bob]}"
scn_wait_pid "${SCN_PID[bob]}" 10 || scn_fail "tallyd for bob did not stop"
unset "SCN_PID[bob]"
scn_run sqlite3 "$SCN_TMP/bob/register.db" "UPDATE register_state SET balance = 100000000"
scn_start_daemon bob
expect_balance bob 100000000
scn_ctl bob defund "$SCN_TMP/bob.defund"
if [ "$SCN_MODE" = files ]; then
  scn_ctl bob export "$SCN_TMP/bob-minted.bundle"
  scn_issuer reconcile "$SCN_TMP/bob-minted.bundle" --out "$SCN_TMP/bob-minted.result"
  grep -q -F "register is REVOKED" <<<"$SCN_OUT" || scn_fail "bob was not revoked: $SCN_OUT"
  grep -q -F "refused: 999992.50 EUR" <<<"$SCN_OUT" || scn_fail "the defund was not refused: $SCN_OUT"
  ok "the issuer refuses the 999,992.50 nothing backs and revokes bob"
else
  # The defund goes to the online account through the sync, like any other
  # evidence: the checks below read what the issuer booked, refused and
  # proved from tally-issuerd.  The sync goes through but brings bob the
  # news of his revocation, so tallyctl says so and fails.
  scn_run_expect_fail "$TALLYCTL" --name "${SCN_BUS[bob]}" sync
  grep -q -F "Synced with the issuer." <<<"$SCN_OUT" || scn_fail "bob's sync did not go through: $SCN_OUT"
  grep -q -F "the issuer has revoked this register" <<<"$SCN_OUT" ||
    scn_fail "tallyctl did not tell bob he is revoked: $SCN_OUT"
  ok "bob's sync goes through and tells him the issuer revoked his register"
fi
scn_account_balance bob
[ "$SCN_OUT" = "7.50 EUR" ] || scn_fail "bob's account holds $SCN_OUT, expected 7.50 EUR"
ok "bob's account is credited 7.50 EUR, what his evidence backs"
scn_fraud_proofs
[ "$(jq -r --arg id "${SCN_ID[bob]}" '[.[] | select(.register_id == $id and .kind == "overdrawn")] | length' <<<"$SCN_OUT")" = 1 ] ||
  scn_fail "no overdrawn proof names bob: $SCN_OUT"
ok "an overdrawn fraud proof names bob"
scn_fetch_audit
expect_audit identity true
expect_audit fraud_exposure 0
expect_audit refused 99999250
expect_audit revoked 1
expect_audit online 6750
# tally-issuerd and tally-issuer audit --json list the kinds as one array.
expect_audit "flagged[0].proof_kinds" '["overdrawn"]'

scn_say "All end-to-end checks passed."
