#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A request a phone can scan: bob's `tallyctl request --qr --qr-png --qr-svg`
# prints a tally:// URI and writes its QR code; zbarimg reads the PNG back
# to the same URI, and alice pays with the decoded URI over a UNIX socket.
# A URI whose amount differs from what bob's offer then says, and an
# expired one, pay nothing.
#
#   test-uri-qr.sh TALLY_ISSUER TALLYD TALLYCTL

set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 TALLY_ISSUER TALLYD TALLYCTL" >&2
  exit 2
fi

SCN_SRC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../../scripts/scenario.sh
. "$SCN_SRC_ROOT/scripts/scenario.sh"
scn_private_bus "$0" "$@"

TALLY_ISSUER=$1
TALLYD=$2
TALLYCTL=$3
SCN_VERBOSE=${SCN_VERBOSE:-0}
SCN_NAMES=(alice bob)

if ! command -v zbarimg >/dev/null; then
  echo "1..0 # SKIP zbarimg is missing: scripts/install-deps.sh --test installs zbar-tools"
  exit 77
fi

ok() { printf 'ok - %s\n' "$*"; }

expect_balance() {
  local name=$1 want=$2
  scn_get_balance "$name"
  [ "$SCN_BAL" = "$want" ] ||
    scn_fail "$name's balance is $(scn_fmt "$SCN_BAL"), expected $(scn_fmt "$want")"
  ok "$name holds $(scn_fmt "$want") $SCN_CURRENCY"
}

# start_request AMOUNT [OPTIONS...]: bob's request in the background, once
# it is shown in full; the URI goes to $REQ_URI.
start_request() {
  local amount=$1 i
  shift
  REQ_OUT=$SCN_TMP/request.out
  : >"$REQ_OUT"
  timeout 120 "$TALLYCTL" --name "${SCN_BUS[bob]}" request "$amount" "$@" \
    </dev/null >"$REQ_OUT" 2>"$SCN_TMP/request.err" &
  REQ_PID=$!
  # "Waiting for payer" comes last, after the URI, the QR code and its files.
  for ((i = 0; i < 200; i++)); do
    if grep -q '^Waiting for payer' "$REQ_OUT"; then
      REQ_URI=$(sed -n 's/^Request: //p' "$REQ_OUT")
      [ -n "$REQ_URI" ] || scn_fail "bob's request printed no URI: $(cat "$REQ_OUT")"
      return 0
    fi
    kill -0 "$REQ_PID" 2>/dev/null ||
      { cat "$REQ_OUT" "$SCN_TMP/request.err" >&2; scn_fail "bob's request ended early"; }
    sleep 0.1
  done
  scn_fail "bob's request printed no URI within 20 s"
}

# pay_uri URI: alice pays it; exit status in $PAY_RC, output in $SCN_OUT.
pay_uri() {
  PAY_RC=0
  SCN_OUT=$(timeout 120 "$TALLYCTL" --name "${SCN_BUS[alice]}" pay "$1" --yes </dev/null 2>&1) ||
    PAY_RC=$?
}

scn_setup
scn_issuer init --name "Tally Test Issuer" --currency "$SCN_CURRENCY"
scn_issuer key
SCN_ISSUER_KEY=$(tr -d '[:space:]' <<<"$SCN_OUT")
for name in alice bob; do
  scn_issuer account-create "$name"
done
scn_issuer deposit alice 100.00
for name in alice bob; do
  scn_start_daemon "$name"
  scn_ctl "$name" --json key
  SCN_ID[$name]=$(jq -er '.RegisterId' <<<"$SCN_OUT")
  key=$(jq -er '.PublicKey' <<<"$SCN_OUT")
  named=()
  [ -z "${SCN_DISPLAY_NAME[$name]:-}" ] || named=(--display-name "${SCN_DISPLAY_NAME[$name]}")
  scn_issuer certify --account "$name" --key "$key" --out "$SCN_TMP/$name.cert" "${named[@]}" \
    --max-payment "$SCN_MAX_PAYMENT" --balance-cap "$SCN_BALANCE_CAP" --max-payments 100 \
    --max-offline-hours 72 --valid-days 30
  scn_ctl "$name" certificate "$SCN_TMP/$name.cert"
done
scn_issuer voucher --register "${SCN_ID[alice]}" --amount 40.00 --out "$SCN_TMP/alice-voucher"
scn_ctl alice load "$SCN_TMP/alice-voucher"

# --- the request prints its URI and its QR code ---------------------------
png=$SCN_TMP/request.png
svg=$SCN_TMP/request.svg
start_request 12.50 --qr --qr-png "$png" --qr-svg "$svg" --timeout 60
sock_enc=$(jq -rn --arg s "${SCN_SOCK[bob]}" '$s | @uri' | sed 's/%2[fF]/%2F/g')
[[ "$REQ_URI" == "tally://pay?v=1&to=${sock_enc//%3a/%3A}&amount=1250&cur=EUR&exp="*"&name=Bob%27s%20Bakery" ]] ||
  scn_fail "request URI is not as specified: $REQ_URI"
ok "tallyctl request prints the request URI: $REQ_URI"
grep -q $'\u2588' "$REQ_OUT" || scn_fail "tallyctl request --qr drew no QR code: $(cat "$REQ_OUT")"
ok "tallyctl request --qr draws the QR code in half blocks"
# zbarimg reads no SVG here: rasterize its squares for it.
python3 - "$svg" "$SCN_TMP/svg.pgm" <<'PY'
import re, sys
text = open(sys.argv[1], encoding='utf-8').read()
size = int(re.search(r'viewBox="0 0 (\d+) (\d+)"', text).group(1))
dark = {(int(x), int(y)) for x, y in re.findall(r'M(\d+) (\d+)h1v1h-1z', text)}
s = 4
with open(sys.argv[2], 'wb') as out:
    out.write(b'P5 %d %d 255\n' % (size * s, size * s))
    for y in range(size):
        line = bytes(0 if (x, y) in dark else 255 for x in range(size) for _ in range(s))
        out.write(line * s)
PY
decoded=$(zbarimg --quiet --raw "$SCN_TMP/svg.pgm") || scn_fail "zbarimg cannot read the SVG's squares"
[ "$decoded" = "$REQ_URI" ] || scn_fail "the SVG QR code reads '$decoded', not '$REQ_URI'"
ok "tallyctl request --qr-svg writes an SVG that reads back as the printed URI"

# The terminal drawing, light modules as blocks, back to pixels for zbarimg.
python3 - "$REQ_OUT" "$SCN_TMP/terminal.pgm" <<'PY'
import sys
cells = set(' \u2580\u2584\u2588')
rows = [l.rstrip('\n') for l in open(sys.argv[1], encoding='utf-8')
        if l.strip('\n') and set(l.rstrip('\n')) <= cells]
px = []
for line in rows:
    px.append([255 if c in '\u2580\u2588' else 0 for c in line])
    px.append([255 if c in '\u2584\u2588' else 0 for c in line])
w, s = max(len(r) for r in px), 4
with open(sys.argv[2], 'wb') as out:
    out.write(b'P5 %d %d 255\n' % (w * s, len(px) * s))
    for r in px:
        line = bytes(v for v in r + [0] * (w - len(r)) for _ in range(s))
        out.write(line * s)
PY
decoded=$(zbarimg --quiet --raw "$SCN_TMP/terminal.pgm") ||
  scn_fail "zbarimg cannot read the terminal drawing: $(cat "$REQ_OUT")"
[ "$decoded" = "$REQ_URI" ] || scn_fail "the terminal QR code reads '$decoded', not '$REQ_URI'"
ok "the QR code drawn in the terminal reads back as the printed URI"

decoded=$(zbarimg --quiet --raw "$png") || scn_fail "zbarimg cannot read $png"
[ "$decoded" = "$REQ_URI" ] || scn_fail "the QR code reads '$decoded', not '$REQ_URI'"
ok "zbarimg reads the printed URI back from the PNG"

# --- paying with the decoded URI -------------------------------------------
pay_uri "$decoded"
rc=0
wait "$REQ_PID" || rc=$?
[ "$PAY_RC" -eq 0 ] || scn_fail "paying the decoded URI failed ($PAY_RC): $SCN_OUT"
[ "$rc" -eq 0 ] || scn_fail "bob's request failed ($rc): $(cat "$REQ_OUT" "$SCN_TMP/request.err")"
grep -qF "Pay 12.50 EUR to Bob's Bakery" <<<"$SCN_OUT" || scn_fail "alice's prompt: $SCN_OUT"
ok "tallyctl pay with the decoded URI pays bob over his UNIX socket"
expect_balance alice 2750
expect_balance bob 1250

# --- a URI that says another amount than the offer pays nothing ------------
start_request 3.00 --timeout 20
forged=$(sed 's/&amount=300&/\&amount=30\&/' <<<"$REQ_URI")
[ "$forged" != "$REQ_URI" ] || scn_fail "cannot forge the amount of $REQ_URI"
pay_uri "$forged"
wait "$REQ_PID" || true
[ "$PAY_RC" -ne 0 ] || scn_fail "paying 3.00 EUR on a URI that says 0.30 EUR succeeded"
grep -qF org.tally.Error.AmountMismatch <<<"$SCN_OUT" ||
  scn_fail "a mismatched amount must fail with AmountMismatch: $SCN_OUT"
ok "an offer for another amount than the URI says fails with AmountMismatch"
expect_balance alice 2750
expect_balance bob 1250

# --- an expired URI does not even connect ----------------------------------
expired=$(sed 's/&exp=[0-9]*/\&exp=1/' <<<"$REQ_URI")
[ "$expired" != "$REQ_URI" ] || scn_fail "cannot backdate $REQ_URI"
pay_uri "$expired"
[ "$PAY_RC" -ne 0 ] || scn_fail "an expired URI was paid"
grep -qF org.tally.Error.Expired <<<"$SCN_OUT" || scn_fail "expired URI: $SCN_OUT"
ok "an expired URI fails with Expired"

# --- a malformed URI names its fault ---------------------------------------
pay_uri "tally://pay?v=1&to=unix:/tmp/x&amount=1&cur=EUR&exp=1"
[ "$PAY_RC" -ne 0 ] || scn_fail "a malformed URI was accepted"
grep -qF "org.tally.Error.Malformed" <<<"$SCN_OUT" && grep -qF "must be percent-encoded" <<<"$SCN_OUT" ||
  scn_fail "malformed URI: $SCN_OUT"
ok "a malformed URI fails with Malformed and names the fault"
expect_balance alice 2750
