#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs the Tally payment scenario with the programs in build/ and shows every
# command and what it printed.  Usually started by 'scripts/tally-dev demo',
# which builds first.
#
#   TALLY_BUILD_DIR=DIR   where the programs are (default: build/)
#   TALLY_KEEP=1          keep the temporary directory (issuer, registers,
#                         configuration files, tally-issuerd's and the
#                         daemons' logs) for a closer look

set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

# shellcheck source-path=SCRIPTDIR source=scenario.sh
. "$(dirname "${BASH_SOURCE[0]}")/scenario.sh"
scn_private_bus "$0" "$@"

SCN_VERBOSE=1
scn_setup
scn_say "Tally demo: an online issuer, three registers, two offline payments, one audit."
scn_say "Commands are shown as typed, with \$T for $SCN_TMP"
scn_say "and \$ISSUER for the address tally-issuerd listens on."
scn_run_scenario
scn_say ""
scn_say "Done: the registers enrolled, topped up and synced with tally-issuerd over HTTP;"
scn_say "alice paid bob over a UNIX socket, her prompt naming him by the display name"
scn_say "his certificate carries (\"${SCN_DISPLAY_NAME[bob]}\"); bob paid carol onward"
scn_say "offline, and the audit tally-issuerd serves balances."
