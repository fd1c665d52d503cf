#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks a Promela model with spin: generates the verifier (spin -a),
# compiles it, runs an exhaustive search and prints pan's state-space
# figures.  docs/reliability.md, "Model of the issuer's booking".
#
#   run-spin.sh MODEL [-DNAME[=VALUE]...]
#       passes when the search is complete and finds no error
#   run-spin.sh --expect-violation REGEX MODEL [-DNAME[=VALUE]...]
#       passes when pan finds an assertion violated whose text matches
#       REGEX (a variant that must break a property); prints the trail
#
# Fails when spin or a C compiler is missing, unless TALLY_SKIP_SPIN=1
# (then it skips, exit 77).

set -euo pipefail

die() { printf 'run-spin: %s\n' "$*" >&2; exit 1; }

expect=""
if [ "${1:-}" = "--expect-violation" ]; then
  [ $# -ge 2 ] || die "--expect-violation needs a pattern"
  expect=$2
  shift 2
fi
[ $# -ge 1 ] || die "usage: run-spin.sh [--expect-violation REGEX] MODEL [-D...]"
model=$1
shift
defines=("$@")
for d in "${defines[@]}"; do
  case "$d" in
    -D*) ;;
    *) die "only -D options may follow the model: $d" ;;
  esac
done
[ -r "$model" ] || die "cannot read $model"

cc=${CC:-cc}
if ! command -v spin >/dev/null 2>&1 || ! command -v "$cc" >/dev/null 2>&1; then
  if [ "${TALLY_SKIP_SPIN:-0}" = 1 ]; then
    echo "run-spin: spin or $cc missing, skipped (TALLY_SKIP_SPIN=1)"
    exit 77
  fi
  die "spin or $cc not found (scripts/install-deps.sh --test installs spin)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-spin.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$model" "$work/model.pml"
cd "$work"

echo "run-spin: spin -a ${defines[*]} $(basename "$model")"
spin -a "${defines[@]}" model.pml >spin.log 2>&1 || { cat spin.log; die "spin -a failed"; }

# SAFETY: assertions and invalid end states (no cycles); one process makes
# partial-order reduction pointless, so NOREDUCE saves its bookkeeping.
# No BITSTATE, no hash compaction: every state is stored exactly.
cflags=(-O2 -DSAFETY -DNOREDUCE -DNOBOUNDCHECK)
"$cc" "${cflags[@]}" -o pan pan.c 2>cc.log || { cat cc.log; die "compiling pan failed"; }

# -m: depth bound far above the model's depth (under 100), so that pan
# says so if it were ever reached; -w24: 16 Mi hash slots.
start=$(date +%s%N)
set +e
./pan -m10000 -w24 >pan.log 2>&1
status=$?
set -e
end=$(date +%s%N)

grep -E 'State-vector|depth reached|states, stored|states, matched|transitions|atomic steps|hash conflicts|total actual memory|elapsed time' pan.log |
  sed 's/^\(pan: \)*/pan: /'
ms=$(((end - start) / 1000000))
printf 'run-spin: pan exited %d after %d.%03d s (wall clock)\n' "$status" $((ms / 1000)) $((ms % 1000))

errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log | head -n 1)
[ -n "$errors" ] || { cat pan.log; die "pan printed no error count"; }

if [ -z "$expect" ]; then
  if [ "$errors" != 0 ] || [ "$status" != 0 ]; then
    cat pan.log
    if [ -f model.pml.trail ]; then
      echo "run-spin: counterexample:"
      spin -t "${defines[@]}" model.pml | grep -E 'MSC|assert|invalid' || true
    fi
    die "the model has an error"
  fi
  if grep -qE 'Search not completed|max search depth too small|out of memory' pan.log; then
    cat pan.log
    die "the search was incomplete"
  fi
  grep -q 'Full statespace search' pan.log || { cat pan.log; die "not a full state-space search"; }
  echo "run-spin: exhaustive search complete, no assertion violated, no invalid end state"
  exit 0
fi

violation=$(grep -m 1 'assertion violated' pan.log || true)
[ -n "$violation" ] || { cat pan.log; die "expected an assertion violated matching '$expect', pan found none"; }
echo "run-spin: $violation"
if ! printf '%s\n' "$violation" | grep -qE -- "$expect"; then
  die "the violated assertion does not match '$expect'"
fi
[ -f model.pml.trail ] || die "pan wrote no trail"
echo "run-spin: counterexample (registers 0 H1, 1 H2, 2 adversary; kind 0 permission,"
echo "run-spin: 1 defund; bundle masks: bit i is entry i; proof 1 counter reuse, 2 overdrawn):"
spin -t "${defines[@]}" model.pml | grep -E 'MSC|assert' | sed 's/^ *MSC: /  /'
echo "run-spin: the violation was found, as expected"
