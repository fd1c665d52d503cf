#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-cli-docs: the man pages and bash completions cannot drift from the
# programs.  Every command that tallyctl --help (tally-issuer --help)
# lists is documented in tallyctl(1) (tally-issuer(1)) and offered by the
# completion; so is every option of the program and of each command, as
# its --help lists it.  tallyd(8) names every option of tallyd --help, and
# tallyd.conf(5) every key daemon/tally-config.c knows, in its group;
# tally-issuerd(8) every option of tally-issuerd --help, and every key
# tally-issuerd.c reads, as the default tally-issuerd.conf does.  TAP.
#
#   test-cli-docs.sh SOURCE_ROOT TALLYCTL TALLY_ISSUER TALLYD TALLY_ISSUERD
#
# The completions are driven through bash-completion's helpers; without
# bash-completion those checks are skipped.

set -euo pipefail

[ "$#" -eq 5 ] || { echo "usage: $0 SOURCE_ROOT TALLYCTL TALLY_ISSUER TALLYD TALLY_ISSUERD" >&2; exit 2; }
SRC=$1 TALLYCTL=$2 ISSUER=$3 TALLYD=$4 ISSUERD=$5

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

bash_completion=
for f in /usr/share/bash-completion/bash_completion /etc/bash_completion; do
  if [ -f "$f" ]; then bash_completion=$f; break; fi
done

# The commands of a --help: the first word of each line of its
# "Commands:" block.
help_commands() {
  sed -n '/^Commands:$/,/^$/{/^  [a-z]/{s/^  \([a-z-]*\).*/\1/;p}}'
}
# The long options of a --help, without GOption's own --help*.
help_options() {
  sed -n 's/^ *\(-[A-Za-z?], \)\{0,1\}--\([a-z][a-z-]*\).*/--\2/p' | grep -v '^--help' | sort -u
}
# COMPREPLY for "PROGRAM WORD...", the last word being completed.
complete_words() { # COMPLETION_FILE WORD...
  local file=$1
  shift
  bash --norc --noprofile -c '
    source "$1" && source "$2" || exit 3
    shift 2
    fn=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"
  ' _ "$bash_completion" "$file" "$@" | grep -v '^$' | sort -u
}
# Whether the scdoc page shows WORD in bold (*WORD*), at the start of a
# line for a command.
man_has_command() { grep -Eq "^\*$2\*( |$)" "$1"; }
man_has_option() { grep -Fq "*$2*" "$1"; }

# check_program NAME PROGRAM MAN_PAGE COMPLETION [PRE_ARGS...]
check_program() {
  local name=$1 prog=$2 page=$3 completion=$4
  shift 4
  local help commands
  help=$("$prog" --help)
  commands=$(help_commands <<<"$help")
  if [ -z "$commands" ]; then
    not_ok "$name --help lists its commands"
    return
  fi
  ok "$name --help lists $(wc -l <<<"$commands") commands"

  local missing=() cmd opt
  for cmd in $commands; do
    man_has_command "$page" "$cmd" || missing+=("$cmd")
  done
  if [ "${#missing[@]}" -eq 0 ]; then ok "$(basename "$page") documents every command of $name --help"
  else not_ok "$(basename "$page") lacks the commands: ${missing[*]}"; fi

  missing=()
  for opt in $(help_options <<<"$help"); do
    man_has_option "$page" "$opt" || missing+=("$opt")
  done
  for cmd in $commands; do
    for opt in $("$prog" "$@" "$cmd" --help | help_options); do
      man_has_option "$page" "$opt" || missing+=("$cmd $opt")
    done
  done
  if [ "${#missing[@]}" -eq 0 ]; then ok "$(basename "$page") documents every option of $name and its commands"
  else not_ok "$(basename "$page") lacks the options: ${missing[*]}"; fi

  if [ -z "$bash_completion" ]; then
    skip "the $name completion offers every command and option" \
      "bash-completion is missing (Debian package bash-completion)"
    return
  fi
  local got
  got=$(complete_words "$completion" "$name" "")
  if [ "$got" = "$(sort <<<"$commands")" ]; then ok "$name <TAB> offers exactly the commands of $name --help"
  else
    not_ok "$name <TAB> offers exactly the commands of $name --help"
    diff <(sort <<<"$commands") <(echo "$got") | sed 's/^/# /' || true
  fi
  got=$(complete_words "$completion" "$name" "--" | grep -v '^--help$' || true)
  if [ "$got" = "$(help_options <<<"$help")" ]; then ok "$name --<TAB> offers exactly the options of $name --help"
  else
    not_ok "$name --<TAB> offers exactly the options of $name --help"
    diff <(help_options <<<"$help") <(echo "$got") | sed 's/^/# /' || true
  fi
  missing=()
  for cmd in $commands; do
    got=$(complete_words "$completion" "$name" "$cmd" "--" | grep -v '^--help$' || true)
    [ "$got" = "$("$prog" "$@" "$cmd" --help | help_options)" ] || missing+=("$cmd")
  done
  if [ "${#missing[@]}" -eq 0 ]; then ok "$name COMMAND --<TAB> offers exactly the options of $name COMMAND --help"
  else not_ok "$name COMMAND --<TAB> differs from COMMAND --help for: ${missing[*]}"; fi
}

check_program tallyctl "$TALLYCTL" "$SRC/docs/man/tallyctl.1.scd" "$SRC/data/bash-completion/tallyctl"
check_program tally-issuer "$ISSUER" "$SRC/docs/man/tally-issuer.1.scd" "$SRC/data/bash-completion/tally-issuer"

# --- tallyd(8), tally-issuerd(8) and tallyd.conf(5) -------------------------------
for daemon in "tallyd:$TALLYD" "tally-issuerd:$ISSUERD"; do
  name=${daemon%%:*} prog=${daemon#*:}
  missing=()
  opts=$("$prog" --help | help_options)
  for opt in $opts; do
    man_has_option "$SRC/docs/man/$name.8.scd" "$opt" || missing+=("$opt")
  done
  if [ -z "$opts" ]; then not_ok "$name --help lists its options"
  elif [ "${#missing[@]}" -eq 0 ]; then ok "$name.8.scd documents every option of $name --help"
  else not_ok "$name.8.scd lacks the options: ${missing[*]}"; fi
done

known_keys=$(sed -n '/^static const KnownKey known_keys/,/^};/s/^ *{ "\([a-z]*\)", "\([a-z_]*\)" },$/\1.\2/p' \
               "$SRC/daemon/tally-config.c" | sort)
# Each "*key*=" line of the page, as group.key under its "# [group]" heading.
man_keys=$(awk '/^# \[[a-z]+\]$/ { g = substr($2, 2, length($2) - 2); next }
                /^# / { g = "" }
                g != "" && /^\*[a-z_]+\*=/ { k = $0; sub(/^\*/, "", k); sub(/\*=.*/, "", k); print g "." k }' \
             "$SRC/docs/man/tallyd.conf.5.scd" | sort)
if [ -n "$known_keys" ] && [ "$known_keys" = "$man_keys" ]; then
  ok "tallyd.conf.5.scd documents the $(wc -l <<<"$known_keys") keys tally-config.c knows, each in its group, and no other"
else
  not_ok "tallyd.conf.5.scd documents exactly the keys tally-config.c knows"
  diff <(echo "$known_keys") <(echo "$man_keys") | sed 's/^/# /' || true
fi

# tally-issuerd(8): each *key*= under its *[group]* of CONFIGURATION, as
# group.key, against known_keys[] of tally-issuerd.c (which refuses any
# other key) and the keys of the default data/tally-issuerd.conf.in.
issuerd_known=$(sed -n '/^} known_keys\[\] = {/,/^};/s/^ *{ "\([a-z]*\)", "\([a-z_]*\)" },$/\1.\2/p' \
                  "$SRC/issuer/tally-issuerd.c" | sort)
issuerd_man=$(awk '/^# / { g = "" }
                   /^\*\[[a-z]+\]\*$/ { g = substr($0, 3, length($0) - 4); next }
                   g != "" { s = $0
                             while (match(s, /\*[a-z_]+\*=/)) {
                               print g "." substr(s, RSTART + 1, RLENGTH - 3); s = substr(s, RSTART + RLENGTH)
                             } }' "$SRC/docs/man/tally-issuerd.8.scd" | sort -u)
issuerd_conf=$(awk '/^\[[a-z]+\]$/ { g = substr($0, 2, length($0) - 2); next }
                    /^#?[a-z_]+=/ { k = $0; sub(/^#/, "", k); sub(/=.*/, "", k); print g "." k }' \
                 "$SRC/data/tally-issuerd.conf.in" | sort)
if [ -n "$issuerd_known" ] && [ "$issuerd_known" = "$issuerd_man" ]; then
  ok "tally-issuerd.8.scd documents the $(wc -l <<<"$issuerd_known") keys tally-issuerd.c knows, each in its group, and no other"
else
  not_ok "tally-issuerd.8.scd documents exactly the keys tally-issuerd.c knows"
  diff <(echo "$issuerd_known") <(echo "$issuerd_man") | sed 's/^/# /' || true
fi
# Every environment variable tally-issuerd reads (its test hook included)
# under ENVIRONMENT in tally-issuerd(8).
issuerd_env=$(sed -n 's/^#define [A-Z_]*_ENV *"\([A-Z_]*\)"$/\1/p' "$SRC/issuer/tally-issuerd.c" | sort)
issuerd_env_man=$(awk '/^# ENVIRONMENT/ { on = 1; next } /^# / { on = 0 }
                       on && /^\*[A-Z_]+\*/ { v = $0; sub(/^\*/, "", v); sub(/\*.*/, "", v); print v }' \
                    "$SRC/docs/man/tally-issuerd.8.scd" | sort)
if [ -n "$issuerd_env" ] && [ "$issuerd_env" = "$issuerd_env_man" ]; then
  ok "tally-issuerd.8.scd documents the environment tally-issuerd.c reads: $(echo $issuerd_env)"
else
  not_ok "tally-issuerd.8.scd documents exactly the environment tally-issuerd.c reads"
  diff <(echo "$issuerd_env") <(echo "$issuerd_env_man") | sed 's/^/# /' || true
fi
if [ -n "$issuerd_known" ] && [ "$issuerd_known" = "$issuerd_conf" ]; then
  ok "data/tally-issuerd.conf.in shows the $(wc -l <<<"$issuerd_known") keys tally-issuerd.c knows, and no other"
else
  not_ok "data/tally-issuerd.conf.in shows exactly the keys tally-issuerd.c knows"
  diff <(echo "$issuerd_known") <(echo "$issuerd_conf") | sed 's/^/# /' || true
fi
# tally-issuerd --help names each key too.
missing=()
help=$("$ISSUERD" --help)
for gk in $issuerd_known; do
  grep -Eq "(^| )${gk#*.}=" <<<"$help" || missing+=("$gk")
done
if [ "${#missing[@]}" -eq 0 ]; then ok "tally-issuerd --help names every key it reads"
else not_ok "tally-issuerd --help lacks the keys: ${missing[*]}"; fi

echo "1..$n"
exit "$failed"
