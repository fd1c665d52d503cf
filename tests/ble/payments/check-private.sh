#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# After pay-private.sh: proves from the capture that neither controller's
# public address went on the air.  Every advertising report, scan response
# and connection complete on hci0 (the stall) and hci1 (alice) names a
# random resolvable address, every advertisement, scan and connection
# attempt asked for a random own address, no packet names a controller's
# public address, and the stall advertised from a different address for
# each of the two requests.
#
#   check-private.sh OUTDIR

set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
TXT=$OUT/btmon.txt
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
GREP=$HERE/../btmon-grep.sh
fail() { echo "not ok - $*"; exit 1; }

# The controllers' public addresses, as btmgmt read them in the guest.
publics=$(sed -n 's/^hci[0-9]*:.*addr \([0-9A-F:]*\) .*/\1/p;s/^[[:space:]]*addr \([0-9A-F:]*\) .*/\1/p' \
  "$OUT/tally/btmgmt-info.txt" | sort -u)
[ "$(wc -l <<<"$publics")" -eq 2 ] || fail "expected two public addresses in btmgmt-info.txt, got: $publics"
echo "# public addresses: $(tr '\n' ' ' <<<"$publics")"

# Every packet that names a peer's address on the air, on either controller.
air=$( { bash "$GREP" "$TXT" 'LE Advertising Report' || true
         bash "$GREP" "$TXT" 'LE Connection Complete' || true
         bash "$GREP" "$TXT" 'LE Enhanced Connection Complete' || true
         bash "$GREP" "$TXT" 'LE Extended Advertising Report' || true; } )
reports=$(grep -c 'Address type: \|Peer address type: ' <<<"$air" || true)
[ "$reports" -ge 4 ] || fail "only $reports addresses in advertising reports and connections"
if grep -q 'ddress type: Public' <<<"$air"; then
  fail "a public address type on the air: $(grep -m3 -B3 'ddress type: Public' <<<"$air")"
fi
nonres=$(grep -E '^ +(Peer )?[Aa]ddress: ' <<<"$air" | grep -v '(Resolvable)' || true)
[ -z "$nonres" ] || fail "addresses on the air that are not resolvable private ones: $(sort -u <<<"$nonres" | head -5)"
echo "ok - $reports addresses in advertising reports, scan responses and connections, all random resolvable"

# What each controller asked for as its own address.
own=$(grep -E '^ +Own address type: ' "$TXT" | sort | uniq -c || true)
[ -n "$own" ] || fail "no advertising, scan or connection parameters in the capture"
grep -v 'Random' <<<"$own" && fail "own address types other than random: $own"
echo "ok - own address type always random: $(sed 's/^ *//' <<<"$own" | tr '\n' ';')"

# No packet from the moment tallyd ran names a public address.  (The
# controllers' own setup, before bluetoothd powered them, reads them.)
for addr in $publics; do
  hits=$(grep -c -F "$addr" <<<"$air" || true)
  [ "$hits" -eq 0 ] || fail "$addr appears $hits times in reports and connections"
done
echo "ok - neither public address appears in any advertising report, scan response or connection"

# The stall's advertisements as alice heard them: Tally's 16-byte UUID with
# the request tag, one address per request.
stall_addrs=$(bash "$GREP" --hci hci1 "$TXT" 'LE Advertising Report' 'ADV_IND' 'Company: internal use' |
  sed -n 's/^ *Address: \([0-9A-F:]*\) (Resolvable)$/\1/p' | uniq)
echo "# the stall advertised from: $(tr '\n' ' ' <<<"$stall_addrs")"
distinct=$(sort -u <<<"$stall_addrs" | grep -c . || true)
[ "$distinct" -ge 2 ] || fail "the stall advertised both requests from one address: $stall_addrs"
echo "ok - the stall's advertising address changed between the requests ($distinct addresses)"

# Alice's address as the stall saw it connect, one per payment.
payer_addrs=$(bash "$GREP" --hci hci0 "$TXT" 'LE Connection Complete (0x01)' 'Role: Peripheral' |
  sed -n 's/^ *Peer address: \([0-9A-F:]*\) (Resolvable)$/\1/p')
echo "# alice connected from: $(tr '\n' ' ' <<<"$payer_addrs")"
distinct=$(sort -u <<<"$payer_addrs" | grep -c . || true)
[ "$distinct" -ge 2 ] || fail "alice connected for both payments from one address: $payer_addrs"
echo "ok - alice's address changed between the payments ($distinct addresses)"
