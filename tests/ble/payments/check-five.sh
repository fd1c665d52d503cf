#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# After pay-five.sh: every notification went only to its own connection.
#
#   check-five.sh OUTDIR

set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
bash "$HERE/check-own-handle.sh" "$1" 5
