#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds the libFuzzer harnesses of tests/fuzz/ into build-fuzz/ (clang,
# AddressSanitizer, UndefinedBehaviorSanitizer) and runs each for a while
# over a working copy of its committed corpus.  docs/fuzzing.md.

set -euo pipefail

SRC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TALLY_FUZZ_BUILD_DIR:-$SRC_ROOT/build-fuzz}
CORPUS_ROOT=$SRC_ROOT/tests/fuzz/corpus
ALL_HARNESSES=(fuzz-frame fuzz-envelope fuzz-messages fuzz-session fuzz-receive fuzz-uri)

usage() {
  cat <<'EOF'
Usage: scripts/fuzz.sh [OPTIONS] [HARNESS...]

Builds build-fuzz/ with clang (-Dfuzzing=true, ASan and UBSan, libraries
instrumented with -fsanitize=fuzzer-no-link) and runs every harness, or
only those named (fuzz-frame, fuzz-envelope, fuzz-messages, fuzz-session,
fuzz-receive, fuzz-uri; the "fuzz-" may be left out).

Each harness fuzzes build-fuzz/fuzz-work/HARNESS/corpus/, a working corpus
that starts as a copy of tests/fuzz/corpus/HARNESS/ and keeps what earlier
runs found.  The committed corpus changes only with --merge.

Options:
  --seconds N   fuzz each harness for N seconds (default 60)
  --jobs J      run J fuzzing processes per harness in parallel (default 1)
  --merge       afterwards, add the working-corpus inputs that reach new
                coverage to tests/fuzz/corpus/HARNESS/
  --seeds       rewrite the generated seeds of tests/fuzz/corpus/ with
                make-seeds before fuzzing
  --build-only  configure and build, run nothing
  -h, --help    show this help

Prints per harness the executions, executions per second, corpus size and
crashes.  Exits non-zero when any harness crashed, leaked, timed out or
could not run; every reproducer's path is printed, and
  build-fuzz/tests/fuzz/HARNESS REPRODUCER
replays it.

Environment:
  TALLY_FUZZ_BUILD_DIR   build directory (default: build-fuzz)
  TALLY_FUZZ_ARGS        extra libFuzzer arguments for every harness
EOF
}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'fuzz.sh: error: %s\n' "$*" >&2; exit 2; }

SECONDS_EACH=60
JOBS=1
MERGE=0
SEEDS=0
BUILD_ONLY=0
HARNESSES=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --seconds)
      [ "$#" -ge 2 ] || die "--seconds needs a value"
      SECONDS_EACH=$2; shift ;;
    --seconds=*) SECONDS_EACH=${1#*=} ;;
    --jobs)
      [ "$#" -ge 2 ] || die "--jobs needs a value"
      JOBS=$2; shift ;;
    --jobs=*) JOBS=${1#*=} ;;
    --merge) MERGE=1 ;;
    --seeds) SEEDS=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *)
      name=${1#fuzz-}
      found=0
      for h in "${ALL_HARNESSES[@]}"; do
        if [ "$h" = "fuzz-$name" ]; then found=1; fi
      done
      [ "$found" -eq 1 ] || die "unknown harness: $1 (one of: ${ALL_HARNESSES[*]})"
      HARNESSES+=("fuzz-$name") ;;
  esac
  shift
done
[[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive integer"
[ "${#HARNESSES[@]}" -gt 0 ] || HARNESSES=("${ALL_HARNESSES[@]}")

# --- build --------------------------------------------------------------------

command -v clang >/dev/null 2>&1 || die "clang is not installed (scripts/install-deps.sh --test)"

# shellcheck disable=SC2054 # the comma belongs to the meson option
SETUP_OPTIONS=(
  -Dfuzzing=true
  -Db_sanitize=address,undefined
  -Db_lundef=false
  -Dbuildtype=debugoptimized
  # clang warns where gcc does not (g_autoptr locals kept only for their
  # cleanup); -Dwerror=true belongs to the gcc builds of scripts/tally-dev.
  -Dwerror=false
)

configure() {
  if [ -f "$BUILD/meson-private/coredata.dat" ]; then
    # The compiler of a build directory is fixed when it is set up.
    if grep -q '^C compiler for the host machine: clang ' "$BUILD/meson-logs/meson-log.txt" \
         2>/dev/null &&
       meson setup --reconfigure "$BUILD" "${SETUP_OPTIONS[@]}" >/dev/null; then
      return 0
    fi
    say "$BUILD is not a clang fuzzing build; setting it up anew"
  fi
  # What earlier runs found survives a new setup.
  local kept=
  if [ -e "$BUILD" ]; then
    if [ ! -d "$BUILD" ] || [ -e "$BUILD/.git" ]; then
      die "$BUILD exists and is not a build directory"
    fi
    if [ -d "$BUILD/fuzz-work" ]; then
      kept=$(mktemp -d "$BUILD.fuzz-work.XXXXXX")
      mv -- "$BUILD/fuzz-work" "$kept/"
    fi
    rm -rf -- "$BUILD"
  fi
  CC=clang meson setup "$BUILD" "${SETUP_OPTIONS[@]}" >/dev/null
  if [ -n "$kept" ]; then
    mv -- "$kept/fuzz-work" "$BUILD/"
    rmdir -- "$kept"
  fi
}

say "Building the fuzz harnesses in $BUILD"
configure
TARGETS=("${HARNESSES[@]}")
[ "$SEEDS" -eq 0 ] || TARGETS+=(make-seeds)
meson compile -C "$BUILD" "${TARGETS[@]}"

if [ "$SEEDS" -eq 1 ]; then
  say "Writing the generated seeds into $CORPUS_ROOT"
  "$BUILD/tests/fuzz/make-seeds" "$CORPUS_ROOT"
fi
[ "$BUILD_ONLY" -eq 0 ] || exit 0

# --- run ----------------------------------------------------------------------

# Registers live in tmpfs when there is room (a container's /dev/shm may
# be 64 MB); whatever a crashed harness leaves goes with this directory.
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [ -w /dev/shm ] && [ "${shm_free_kib:-0}" -ge $((1024 * 1024 * JOBS)) ]; then
  STATE=$(mktemp -d /dev/shm/tally-fuzz.XXXXXX)
else
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/tally-fuzz.XXXXXX")
fi
trap 'rm -rf -- "$STATE"' EXIT
export TALLY_FUZZ_STATE_DIR=$STATE

# A sanitizer report is a crash; a g_warning or g_critical aborts too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export G_SLICE=always-malloc
export G_DEBUG=fatal-criticals

count_files() {
  find "$1" -maxdepth 1 -type f | wc -l
}

# Sum (or max) of one "stat::NAME: value" line over the logs given.
stat_sum() {
  local name=$1
  shift
  awk -v n="stat::$name:" '$1 == n { s += $2 } END { print s + 0 }' "$@" 2>/dev/null || echo 0
}
stat_max() {
  local name=$1
  shift
  awk -v n="stat::$name:" '$1 == n && $2 > m { m = $2 } END { print m + 0 }' "$@" 2>/dev/null ||
    echo 0
}

SUMMARY=()
FAILED=0

run_harness() {
  local h=$1
  local bin=$BUILD/tests/fuzz/$h
  local work=$BUILD/fuzz-work/$h
  local corpus=$work/corpus
  local artifacts=$work/artifacts
  local committed=$CORPUS_ROOT/$h

  mkdir -p "$corpus" "$artifacts"
  if [ -d "$committed" ]; then
    cp -n -- "$committed"/* "$corpus"/ 2>/dev/null || true
  fi
  rm -f -- "$work"/fuzz-*.log "$work/run.log"
  local before
  before=$(count_files "$corpus")
  # Artifacts newer than this are this run's.
  touch "$work/run.start"

  local extra=()
  # protobuf-c itself carries no coverage; compare values instead.
  [ "$h" != fuzz-messages ] || extra+=(-use_value_profile=1)
  [ "$JOBS" -eq 1 ] || extra+=(-jobs="$JOBS" -workers="$JOBS")
  # shellcheck disable=SC2206
  extra+=(${TALLY_FUZZ_ARGS:-})

  say "[$h] fuzzing for ${SECONDS_EACH}s ($JOBS job(s)); log: $work/run.log"
  local started rc=0
  started=$(date +%s)
  (cd "$work" &&
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" "$corpus" \
      >"$work/run.log" 2>&1) || rc=$?
  local elapsed=$(($(date +%s) - started))

  local logs=("$work/run.log")
  if [ "$JOBS" -gt 1 ]; then
    shopt -s nullglob
    logs=("$work"/fuzz-*.log)
    shopt -u nullglob
    [ "${#logs[@]}" -gt 0 ] || logs=("$work/run.log")
  fi
  local execs rate rss after bytes
  execs=$(stat_sum number_of_executed_units "${logs[@]}")
  rate=$(stat_sum average_exec_per_sec "${logs[@]}")
  rss=$(stat_max peak_rss_mb "${logs[@]}")
  after=$(count_files "$corpus")
  bytes=$(find "$corpus" -maxdepth 1 -type f -printf '%s\n' |
    awk '{ s += $1 } END { printf "%.1f", s / 1024 }')

  local crashes=()
  while IFS= read -r f; do
    [ -z "$f" ] || crashes+=("$f")
  done < <(find "$artifacts" -maxdepth 1 -type f \
             \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
             -newer "$work/run.start" 2>/dev/null | sort)

  local line
  line=$(printf '[%s] %s executions in %ss, %s exec/s, corpus %s files (%s KiB, %+d), ' \
    "$h" "$execs" "$elapsed" "$rate" "$after" "$bytes" "$((after - before))")
  line+="peak RSS $rss MB, ${#crashes[@]} crash(es)"
  if [ "$rc" -ne 0 ] || [ "${#crashes[@]}" -gt 0 ]; then
    FAILED=1
    [ "${#crashes[@]}" -gt 0 ] || line+=", exit status $rc (see $work/run.log)"
    for f in "${crashes[@]}"; do
      line+=$'\n'"    reproducer: $f"$'\n'"    replay:     $bin $f"
    done
    grep -m 5 -E 'ERROR|assertion|tally-fuzz' "${logs[@]}" 2>/dev/null | sed 's/^/    /' || true
  fi
  echo "$line"
  SUMMARY+=("$line")

  if [ "$MERGE" -eq 1 ] && [ "$rc" -eq 0 ] && [ "${#crashes[@]}" -eq 0 ]; then
    mkdir -p "$committed"
    local n0 n1
    n0=$(count_files "$committed")
    "$bin" -merge=1 -artifact_prefix="$artifacts/" "$committed" "$corpus" \
      >"$work/merge.log" 2>&1 || { echo "[$h] merge failed, see $work/merge.log"; FAILED=1; }
    n1=$(count_files "$committed")
    echo "[$h] merged $((n1 - n0)) input(s) into $committed"
  fi
}

for h in "${HARNESSES[@]}"; do
  run_harness "$h"
done

say "Fuzzing summary"
for line in "${SUMMARY[@]}"; do
  echo "$line"
done
if [ "$FAILED" -ne 0 ]; then
  echo "fuzz.sh: FAILED"
  exit 1
fi
echo "fuzz.sh: no crashes"
