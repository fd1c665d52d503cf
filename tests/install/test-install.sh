#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-install: meson install of the build directory into a throwaway
# DESTDIR lays down every file of a system install at its path, and
# nothing else; the unit passes systemd-analyze verify; sysusers creates
# the user tally; every program prints the project version; the default
# tallyd.conf lists exactly the keys daemon/tally-config.c knows, with the
# defaults the installed tallyd has; every man page renders without a
# warning; the bash completions parse, and complete commands when
# bash-completion loads them.  With app=yes (a build with tally-app,
# -Dapp), also the app, its desktop file (desktop-file-validate) and its
# AppStream metainfo (appstreamcli validate) and icon.  TAP.
#
#   test-install.sh BUILD_ROOT VERSION app=yes|no bindir=DIR sbindir=DIR
#     sysconfdir=DIR datadir=DIR mandir=DIR unitdir=DIR sysusersdir=DIR
#     tmpfilesdir=DIR wireshark_plugindir=DIR bashcompletiondir=DIR
#
# DIRs are absolute, as configured (tests/install/meson.build).  Nothing is
# installed on the machine; the DESTDIR is removed at exit.

set -euo pipefail

usage() {
  echo "usage: $0 BUILD_ROOT VERSION KEY=DIR..." >&2
  exit 2
}
[ "$#" -ge 2 ] || usage
BUILD=$1 VERSION=$2
shift 2
declare -A dir=()
app=
for arg in "$@"; do
  case "$arg" in
    app=yes|app=no) app=${arg#app=}; continue ;;
  esac
  [[ "$arg" == *=/* ]] || usage
  dir[${arg%%=*}]=${arg#*=}
done
for key in bindir sbindir sysconfdir datadir mandir unitdir sysusersdir tmpfilesdir \
           wireshark_plugindir bashcompletiondir; do
  [ -n "${dir[$key]:-}" ] || { echo "missing $key=DIR" >&2; usage; }
done
[ -n "$app" ] || { echo "missing app=yes|no" >&2; usage; }
SRC=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

D=$(mktemp -d "${TMPDIR:-/tmp}/tally-install.XXXXXX")
trap 'rm -rf -- "$D"' EXIT

if ! DESTDIR=$D meson install -C "$BUILD" --no-rebuild --quiet > "$D.log" 2>&1; then
  sed 's/^/# /' "$D.log"
  rm -f -- "$D.log"
  echo "Bail out! meson install --destdir failed"
  exit 1
fi
rm -f -- "$D.log"

unit=${dir[unitdir]}/tallyd.service
activation=${dir[datadir]}/dbus-1/system-services/org.tally.Tally.service
conf=${dir[sysconfdir]}/tally/tallyd.conf
sysusers=${dir[sysusersdir]}/tally.conf
tmpfiles=${dir[tmpfilesdir]}/tally.conf
issuerd_unit=${dir[unitdir]}/tally-issuerd.service
issuerd_conf=${dir[sysconfdir]}/tally/tally-issuerd.conf
issuer_sysusers=${dir[sysusersdir]}/tally-issuer.conf
issuer_tmpfiles=${dir[tmpfilesdir]}/tally-issuer.conf
man_pages=(
  "${dir[mandir]}/man8/tallyd.8"
  "${dir[mandir]}/man5/tallyd.conf.5"
  "${dir[mandir]}/man1/tallyctl.1"
  "${dir[mandir]}/man1/tally-issuer.1"
  "${dir[mandir]}/man8/tally-issuerd.8"
  "${dir[mandir]}/man5/org.tally.Tally.5"
)
completions=(
  "${dir[bashcompletiondir]}/tallyctl"
  "${dir[bashcompletiondir]}/tally-issuer"
)
expected=(
  "${dir[sbindir]}/tallyd"
  "${dir[bindir]}/tallyctl"
  "${dir[bindir]}/tally-issuer"
  "${dir[sbindir]}/tally-issuerd"
  "$unit"
  "$activation"
  "${dir[datadir]}/dbus-1/system.d/org.tally.Tally.conf"
  "${dir[datadir]}/dbus-1/interfaces/org.tally.xml"
  "${dir[datadir]}/polkit-1/actions/org.tally.Tally.policy"
  "${dir[datadir]}/polkit-1/rules.d/50-tally.rules"
  "$sysusers"
  "$tmpfiles"
  "$conf"
  "$issuerd_unit"
  "$issuer_sysusers"
  "$issuer_tmpfiles"
  "$issuerd_conf"
  "${dir[wireshark_plugindir]}/tally.lua"
  "${man_pages[@]}"
  "${completions[@]}"
)
app_desktop=${dir[datadir]}/applications/org.tally.App.desktop
app_metainfo=${dir[datadir]}/metainfo/org.tally.App.metainfo.xml
if [ "$app" = yes ]; then
  man_pages+=("${dir[mandir]}/man1/tally-app.1")
  expected+=(
    "${dir[mandir]}/man1/tally-app.1"
    "${dir[bindir]}/tally-app"
    "$app_desktop"
    "$app_metainfo"
    "${dir[datadir]}/icons/hicolor/scalable/apps/org.tally.App.svg"
  )
fi

# --- every file at its path, and no other -------------------------------------
for f in "${expected[@]}"; do
  check "installs $f" test -f "$D$f"
done
installed=$(cd "$D" && find . \( -type f -o -type l \) -printf '/%P\n' | sort)
wanted=$(printf '%s\n' "${expected[@]}" | sort)
if [ "$installed" = "$wanted" ]; then
  ok "installs nothing beyond the ${#expected[@]} files above"
else
  not_ok "installs exactly the files above"
  diff <(echo "$wanted") <(echo "$installed") | sed 's/^/# /' || true
fi
for f in "${dir[sbindir]}/tallyd" "${dir[bindir]}/tallyctl" "${dir[bindir]}/tally-issuer" \
         "${dir[sbindir]}/tally-issuerd"; do
  check "$f is executable" test -x "$D$f"
done
check "the dissector is tools/tally.lua" cmp -s "$SRC/tools/tally.lua" "$D${dir[wireshark_plugindir]}/tally.lua"

# --- --version ----------------------------------------------------------------
programs=("${dir[sbindir]}/tallyd" "${dir[bindir]}/tallyctl" "${dir[bindir]}/tally-issuer"
          "${dir[sbindir]}/tally-issuerd")
[ "$app" = no ] || programs+=("${dir[bindir]}/tally-app")
for prog in "${programs[@]}"; do
  name=$(basename "$prog")
  out=$("$D$prog" --version 2>&1) || true
  if [ "$out" = "$name $VERSION" ]; then
    ok "$name --version prints \"$name $VERSION\""
  else
    not_ok "$name --version prints \"$name $VERSION\", not \"$out\""
  fi
done

# --- the app's desktop file and AppStream metainfo ---------------------------------
if [ "$app" = yes ]; then
  for tool in desktop-file-validate appstreamcli; do
    command -v "$tool" > /dev/null ||
      not_ok "$tool is missing (scripts/install-deps.sh --test: desktop-file-utils, appstream)"
  done
  if command -v desktop-file-validate > /dev/null; then
    check "desktop-file-validate accepts org.tally.App.desktop" \
      desktop-file-validate "$D$app_desktop"
  fi
  check "org.tally.App.desktop opens tally:// URIs" \
    grep -Fqx "MimeType=x-scheme-handler/tally;" "$D$app_desktop"
  check "org.tally.App.desktop runs tally-app with the URI" \
    grep -Fqx "Exec=tally-app %u" "$D$app_desktop"
  if command -v appstreamcli > /dev/null; then
    if out=$(appstreamcli validate --no-net "$D$app_metainfo" 2>&1); then
      ok "appstreamcli validate accepts org.tally.App.metainfo.xml"
    else
      not_ok "appstreamcli validate accepts org.tally.App.metainfo.xml"
      sed 's/^/# /' <<<"$out"
    fi
  fi
fi

# --- the unit -----------------------------------------------------------------
unit_has() { grep -Fqx -- "$1" "$D$unit"; }
for line in "Type=dbus" "BusName=org.tally.Tally" \
            "ExecStart=${dir[sbindir]}/tallyd --config $conf" \
            "User=tally" "Group=tally" "StateDirectory=tally" "RuntimeDirectory=tally" \
            "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "NoNewPrivileges=yes" \
            "CapabilityBoundingSet=" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_BLUETOOTH"; do
  check "tallyd.service has $line" unit_has "$line"
done
check "tallyd.service grants no capability" \
  bash -c '! grep -E "^(CapabilityBoundingSet|AmbientCapabilities)=." "$1"' _ "$D$unit"

issuerd_unit_has() { grep -Fqx -- "$1" "$D$issuerd_unit"; }
for line in "ExecStart=${dir[sbindir]}/tally-issuerd --config $issuerd_conf" \
            "User=tally-issuer" "Group=tally-issuer" "StateDirectory=tally-issuer" \
            "StateDirectoryMode=0700" "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" \
            "PrivateDevices=yes" "NoNewPrivileges=yes" "CapabilityBoundingSet=" \
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"; do
  check "tally-issuerd.service has $line" issuerd_unit_has "$line"
done
check "tally-issuerd.service grants no capability" \
  bash -c '! grep -E "^(CapabilityBoundingSet|AmbientCapabilities)=." "$1"' _ "$D$issuerd_unit"

if command -v systemd-analyze > /dev/null 2>&1; then
  # Type=dbus needs dbus.socket: the machine's D-Bus units, copied into the
  # throwaway root, stand in for an installed dbus.
  mkdir -p "$D/lib/systemd/system"
  for u in dbus.socket dbus.service sysinit.target basic.target sockets.target shutdown.target; do
    for base in /lib/systemd/system /usr/lib/systemd/system; do
      if [ -f "$base/$u" ] && [ ! -e "$D/lib/systemd/system/$u" ]; then
        cp -- "$base/$u" "$D/lib/systemd/system/$u"
      fi
    done
  done
  for u in tallyd.service tally-issuerd.service; do
    rc=0
    out=$(systemd-analyze verify --man=no --root="$D" "$u" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
      ok "systemd-analyze verify accepts $u without a word"
    else
      not_ok "systemd-analyze verify $u (status $rc)"
      printf '%s\n' "$out" | sed 's/^/# /'
    fi
  done
else
  skip "systemd-analyze verify tallyd.service and tally-issuerd.service" \
    "systemd-analyze is missing (Debian package systemd)"
fi

# --- D-Bus activation -----------------------------------------------------------
act_has() { grep -Fqx -- "$1" "$D$activation"; }
for line in "[D-BUS Service]" "Name=org.tally.Tally" "Exec=/bin/false" "User=tally" \
            "SystemdService=tallyd.service"; do
  check "org.tally.Tally.service has $line" act_has "$line"
done
check "the activation file names the unit that is installed" \
  test -f "$D${dir[unitdir]}/$(sed -n 's/^SystemdService=//p' "$D$activation")"

# --- the user and the directories ---------------------------------------------------
if command -v systemd-sysusers > /dev/null 2>&1; then
  out=$(systemd-sysusers --dry-run --root="$D" "$D$sysusers" 2>&1) || true
  if grep -q "Creating user 'tally'" <<<"$out" && grep -q "Creating group 'tally'" <<<"$out"; then
    ok "systemd-sysusers creates the user and the group tally"
  else
    not_ok "systemd-sysusers creates the user and the group tally"
    printf '%s\n' "$out" | sed 's/^/# /'
  fi
  out=$(systemd-sysusers --dry-run --root="$D" "$D$issuer_sysusers" 2>&1) || true
  if grep -q "Creating user 'tally-issuer'" <<<"$out" &&
     grep -q "Creating group 'tally-issuer'" <<<"$out"; then
    ok "systemd-sysusers creates the user and the group tally-issuer"
  else
    not_ok "systemd-sysusers creates the user and the group tally-issuer"
    printf '%s\n' "$out" | sed 's/^/# /'
  fi
else
  skip "systemd-sysusers creates the user tally" "systemd-sysusers is missing (Debian package systemd)"
fi
tmp_has() { grep -Fqx -- "$1" "$D$tmpfiles"; }
for line in "d /var/lib/tally 0750 tally tally -" "d /run/tally 0750 tally tally -" \
            "d ${dir[sysconfdir]}/tally 0755 root root -"; do
  check "tmpfiles.d/tally.conf has \"$line\"" tmp_has "$line"
done

check "tmpfiles.d/tally-issuer.conf has \"d /var/lib/tally-issuer 0700 tally-issuer tally-issuer -\"" \
  grep -Fqx -- "d /var/lib/tally-issuer 0700 tally-issuer tally-issuer -" "$D$issuer_tmpfiles"

# --- the default configuration ---------------------------------------------------
# Its commented keys, as group.key, against known_keys[] of tally-config.c.
conf_keys=$(awk '/^\[[a-z]+\]$/ { g = substr($0, 2, length($0) - 2); next }
                 /^#[a-z_]+=/ { k = substr($0, 2); sub(/=.*/, "", k); print g "." k }' "$D$conf" | sort)
known_keys=$(sed -n '/^static const KnownKey known_keys/,/^};/s/^ *{ "\([a-z]*\)", "\([a-z_]*\)" },$/\1.\2/p' \
               "$SRC/daemon/tally-config.c" | sort)
if [ -n "$known_keys" ] && [ "$conf_keys" = "$known_keys" ]; then
  ok "tallyd.conf shows each of the $(wc -l <<<"$known_keys") keys tally-config.c knows, and no other"
else
  not_ok "tallyd.conf shows exactly the keys tally-config.c knows"
  diff <(echo "$known_keys") <(echo "$conf_keys") | sed 's/^/# /' || true
fi
check "tallyd.conf sets nothing: every key is a comment" \
  bash -c '! grep -Ev "^(#.*|\[[a-z]+\]|)$" "$1"' _ "$D$conf"

# tally-issuerd.conf: its keys, commented or set, against known_keys[] of
# tally-issuerd.c; only the issuer directory, which has no default, is set.
issuerd_conf_keys=$(awk '/^\[[a-z]+\]$/ { g = substr($0, 2, length($0) - 2); next }
                 /^#?[a-z_]+=/ { k = $0; sub(/^#/, "", k); sub(/=.*/, "", k); print g "." k }' \
                 "$D$issuerd_conf" | sort)
issuerd_known_keys=$(sed -n '/^} known_keys\[\] = {/,/^};/s/^ *{ "\([a-z]*\)", "\([a-z_]*\)" },$/\1.\2/p' \
                 "$SRC/issuer/tally-issuerd.c" | sort)
if [ -n "$issuerd_known_keys" ] && [ "$issuerd_conf_keys" = "$issuerd_known_keys" ]; then
  ok "tally-issuerd.conf shows each of the $(wc -l <<<"$issuerd_known_keys") keys tally-issuerd.c knows, and no other"
else
  not_ok "tally-issuerd.conf shows exactly the keys tally-issuerd.c knows"
  diff <(echo "$issuerd_known_keys") <(echo "$issuerd_conf_keys") | sed 's/^/# /' || true
fi
check "tally-issuerd.conf sets only [issuer] dir=/var/lib/tally-issuer" \
  test "$(grep -Ev '^(#.*|\[[a-z]+\]|)$' "$D$issuerd_conf")" = "dir=/var/lib/tally-issuer"

# The defaults it shows are the ones the installed tallyd has (-Ddefaults).
help=$("$D${dir[sbindir]}/tallyd" --help 2>&1) || true
for key in dir bus listen; do
  value=$(sed -n "s/^#$key=//p" "$D$conf")
  if [ -n "$value" ] && grep -qF -- "(default: $value)" <<<"$help"; then
    ok "tallyd.conf's default $key=$value is the installed tallyd's"
  else
    not_ok "tallyd.conf's default $key=\"$value\" is not in the installed tallyd --help"
  fi
done

# --- man pages ------------------------------------------------------------------
# groff with every warning on, and mandoc's lint where it is installed: a
# page that renders with a warning has a mistake in its source.
for page in "${man_pages[@]}"; do
  name=$(basename "$page")
  if command -v groff > /dev/null 2>&1; then
    out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$D$page" 2>&1) || true
    if [ -z "$out" ]; then
      ok "$name renders with groff -ww without a warning"
    else
      not_ok "$name renders with groff -ww without a warning"
      printf '%s\n' "$out" | sed 's/^/# /'
    fi
    text=$(LC_ALL=C.UTF-8 groff -man -Tutf8 "$D$page" 2> /dev/null | sed 's/.\x08//g') || true
    check "$name has NAME, SYNOPSIS or DESCRIPTION, and SEE ALSO" \
      bash -c 'grep -q "^NAME" <<<"$1" && grep -Eq "^(SYNOPSIS|DESCRIPTION)" <<<"$1" &&
               grep -q "^SEE ALSO" <<<"$1"' _ "$text"
    check "$name has no unfilled @placeholder@" bash -c '! grep -q "@[a-z_]*@" "$1"' _ "$D$page"
  else
    skip "$name renders with groff -ww" "groff is missing (Debian package groff-base)"
  fi
  if command -v mandoc > /dev/null 2>&1; then
    # scdoc starts every section with .PP after .SH, which mandoc reports
    # as "skipping paragraph macro"; every other warning counts.
    out=$(mandoc -T lint -W warning "$D$page" 2>&1 | grep -v 'WARNING: skipping paragraph macro') || true
    if [ -z "$out" ]; then ok "mandoc -T lint accepts $name"; else
      not_ok "mandoc -T lint accepts $name"
      printf '%s\n' "$out" | sed 's/^/# /'
    fi
  fi
done

# --- bash completions ---------------------------------------------------------------
for f in "${completions[@]}"; do
  check "$(basename "$f") completion passes bash -n" bash -n "$D$f"
done

# Completes "PROGRAM WORD..." (the last word is the one being completed)
# as bash-completion would: loads its helpers and the installed
# completion, asks complete -p for the function and prints COMPREPLY, one
# per line.
complete_words() { # COMPLETION_FILE WORD...
  local file=$1
  shift
  bash --norc --noprofile -c '
    source "$1" || exit 3
    source "$2" || exit 3
    shift 2
    spec=$(complete -p "$1" 2> /dev/null) || exit 4
    fn=$(sed -n "s/.*-F \([^ ]*\) .*/\1/p" <<<"$spec")
    [ -n "$fn" ] || exit 4
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"
  ' _ "$bash_completion" "$D$file" "$@"
}
bash_completion=
for f in /usr/share/bash-completion/bash_completion /etc/bash_completion; do
  if [ -f "$f" ]; then bash_completion=$f; break; fi
done
if [ -n "$bash_completion" ]; then
  ctl_completion=${dir[bashcompletiondir]}/tallyctl
  issuer_completion=${dir[bashcompletiondir]}/tally-issuer
  out=$(complete_words "$ctl_completion" tallyctl ba 2>&1) || true
  if [ "$out" = "balance" ]; then ok "tallyctl ba<TAB> completes to balance"; else
    not_ok "tallyctl ba<TAB> completes to balance, not \"$out\""
  fi
  out=$(complete_words "$ctl_completion" tallyctl --bus "" 2>&1 | sort | tr '\n' ' ') || true
  if [ "$out" = "session system " ]; then ok "tallyctl --bus <TAB> offers session and system"; else
    not_ok "tallyctl --bus <TAB> offers session and system, not \"$out\""
  fi
  out=$(complete_words "$ctl_completion" tallyctl load "$D${dir[bindir]}/tally-iss" 2>&1) || true
  if [ "$out" = "$D${dir[bindir]}/tally-issuer" ]; then ok "tallyctl load FILE<TAB> completes a file name"; else
    not_ok "tallyctl load FILE<TAB> completes a file name, not \"$out\""
  fi
  wanted=$(printf '%s\n' init key account-create deposit balance certify voucher reconcile revoke \
             lost refund-lost prune revocations fraud-proofs audit | sort)
  out=$(complete_words "$issuer_completion" tally-issuer "" 2>&1 | sort) || true
  if [ "$out" = "$wanted" ]; then ok "tally-issuer <TAB> offers its $(wc -l <<<"$wanted") commands"; else
    not_ok "tally-issuer <TAB> offers its commands"
    diff <(echo "$wanted") <(echo "$out") | sed 's/^/# /' || true
  fi
  out=$(complete_words "$issuer_completion" tally-issuer --dir /tmp certify --key-f 2>&1) || true
  if [ "$out" = "--key-file" ]; then ok "tally-issuer certify --key-f<TAB> completes to --key-file"; else
    not_ok "tally-issuer certify --key-f<TAB> completes to --key-file, not \"$out\""
  fi
else
  skip "the completions complete commands" "bash-completion is missing (Debian package bash-completion)"
fi

echo "1..$n"
exit "$failed"
