#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test-package: the Debian packages of debian/ build from a copy of the
# source tree with dpkg-buildpackage, lintian finds no error in them, and,
# installed with dpkg -i into a throwaway root:
#   - postinst creates the system user tally and its directories;
#   - the installed tallyd.service passes systemd-analyze verify;
#   - tallyd, started as the installed unit starts it, runs as the user
#     tally on a system bus that runs on the installed bus configuration
#     (the policy org.tally.Tally.conf among it), with the real polkitd
#     reading the installed actions and rules;
#   - a payment between two installed daemons succeeds, over a UNIX
#     socket, with an issuer made by the installed tally-issuer;
#   - tally-issuer's postinst creates the user tally-issuer and
#     /var/lib/tally-issuer; tally-issuerd.service passes systemd-analyze
#     verify and is not enabled; once an issuer is made there as that
#     user, tally-issuerd runs as the unit runs it, as tally-issuer, from
#     the installed /etc/tally/tally-issuerd.conf, and answers GET /v1/keys
#     with 200;
#   - tally-app's installed desktop file passes desktop-file-validate and
#     its AppStream metainfo appstreamcli validate --no-net;
#   - dpkg --purge removes every file the packages installed.
# lintian's warnings and infos are shown as TAP comments.
# Afterwards nothing of it is on the machine: no tally package in dpkg's
# database, no user or group tally or tally-issuer, none of the packages' files.  TAP.
#
# The throwaway root is a mount namespace with an overlayfs over / whose
# upper layer is a temporary directory: dpkg and the maintainer scripts
# run for real in a chroot into the overlay, and every change they make
# lands in the upper layer, which is removed with the namespace.  The
# root's /run is a tmpfs of its own (the buses of the test live there, and
# no socket of the machine's is reachable), and policy-rc.d keeps the
# maintainer scripts from starting or reloading any service.
#
# Needs root (CI runs as root); skips otherwise.  TALLY_KEEP=1 keeps the
# temporary directory (the copy of the tree, build.log, the packages).
# docs/packaging.md.

set -u

SRC=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
PACKAGES=(tallyd tally-issuer tally-wireshark tally-app)

N=0
FAILED=0
ok() {
  N=$((N + 1))
  echo "ok $N - $1"
}
not_ok() {
  N=$((N + 1))
  FAILED=$((FAILED + 1))
  echo "not ok $N - $1"
  shift
  [ "$#" -eq 0 ] || printf '%s\n' "$@" | sed 's/^/# /'
}
bail() {
  echo "Bail out! $*"
  exit 1
}

# =========================================================================
# Inside the throwaway root: test-package.sh --inside DIR, run by the part
# below in the chroot.  DIR holds the .debs; each result is one line,
# "ok - ..." or "not ok - ...", followed by "# " lines, on stdout.
# =========================================================================
inside() {
  local D=$1
  local -a pids=()
  local log=/var/log/tally-test-package
  mkdir -p "$log"
  iok() { echo "ok - $1"; }
  inot_ok() {
    echo "not ok - $1"
    shift
    [ "$#" -eq 0 ] || printf '%s\n' "$@" | sed 's/^/# /'
  }
  icheck() { # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then iok "$what"; else inot_ok "$what"; fi
  }
  istop() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  }
  ibail() { # stops what it started, shows the logs
    echo "Bail out! $*"
    local f
    for f in "$log"/*; do
      [ -f "$f" ] && tail -n 20 "$f" | sed "s|^|# $(basename "$f"): |"
    done
    istop
    exit 1
  }
  trap istop EXIT

  # As in any chroot: the maintainer scripts start, stop and reload no
  # service (invoke-rc.d and deb-systemd-invoke ask policy-rc.d), so that
  # nothing reaches the machine's own daemons.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d

  # --- install --------------------------------------------------------------
  local out rc=0
  out=$(dpkg -i "$D"/tallyd_*.deb "$D"/tally-issuer_*.deb "$D"/tally-wireshark_*.deb \
    "$D"/tally-app_*.deb 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    iok "dpkg -i installs tallyd, tally-issuer, tally-wireshark and tally-app"
  else
    inot_ok "dpkg -i installs tallyd, tally-issuer, tally-wireshark and tally-app (status $rc)" "$out"
    ibail "the packages do not install"
  fi
  local p
  for p in tallyd tally-issuer tally-wireshark tally-app; do
    icheck "$p is installed and configured" \
      test "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed
  done

  # --- the app: its desktop file and AppStream metainfo as installed -------------
  local desktop=/usr/share/applications/org.tally.App.desktop
  local metainfo=/usr/share/metainfo/org.tally.App.metainfo.xml
  icheck "tally-app is installed as /usr/bin/tally-app" test -x /usr/bin/tally-app
  rc=0
  out=$(desktop-file-validate "$desktop" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    iok "desktop-file-validate accepts the installed $desktop"
  else
    inot_ok "desktop-file-validate accepts the installed $desktop (status $rc)" "$out"
  fi
  icheck "the installed desktop file runs the installed tally-app with the URI" \
    grep -Fqx "Exec=tally-app %u" "$desktop"
  rc=0
  out=$(appstreamcli validate --no-net "$metainfo" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    iok "appstreamcli validate --no-net accepts the installed $metainfo"
  else
    inot_ok "appstreamcli validate --no-net accepts the installed $metainfo (status $rc)" "$out"
  fi

  # --- the user and its directories, from postinst -----------------------------
  local pw
  pw=$(getent passwd tally)
  IFS=: read -r _ _ TALLY_UID TALLY_GID _ home shell <<<"$pw"
  if [ -n "$pw" ] && [ "$TALLY_UID" -lt 1000 ] && [ "$home" = /var/lib/tally ] &&
    [ "$shell" = /usr/sbin/nologin ] && [ "$(getent group tally | cut -d: -f3)" = "$TALLY_GID" ]; then
    iok "postinst creates the system user and group tally (uid $TALLY_UID, home /var/lib/tally, no login)"
  else
    inot_ok "postinst creates the system user and group tally" "passwd: $pw" \
      "group: $(getent group tally)"
    ibail "no user tally"
  fi
  local dir
  for dir in /var/lib/tally /run/tally; do
    icheck "postinst creates $dir, tally:tally 0750" \
      test "$(stat -c '%U:%G %a' "$dir" 2>&1)" = "tally:tally 750"
  done
  icheck "/etc/tally/tallyd.conf is a conffile of tallyd" \
    grep -qx ' /etc/tally/tallyd.conf [0-9a-f]*' <(dpkg-query -W -f='${Conffiles}\n' tallyd)

  # --- the unit -------------------------------------------------------------------
  local unit=/lib/systemd/system/tallyd.service
  rc=0
  out=$(systemd-analyze verify "$unit" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    iok "systemd-analyze verify accepts the installed $unit without a word"
  else
    inot_ok "systemd-analyze verify the installed $unit (status $rc)" "$out"
  fi

  # --- two system buses on the installed configuration, polkitd on each ---------
  # dbus-daemon --system reads /usr/share/dbus-1/system.conf, which takes
  # in every installed system.d policy: tallyd's, and polkitd's.  Bus A
  # listens where the system bus does (in this root's own /run), bus B,
  # for the payee, elsewhere.
  local bus_a=/run/dbus/system_bus_socket bus_b=/run/tally-test-bus-b
  mkdir -p /run/dbus
  rm -f "$bus_a" "$bus_b"
  dbus-daemon --system --nofork --nopidfile >"$log/bus-a.log" 2>&1 &
  pids+=($!)
  dbus-daemon --system --nofork --nopidfile --address="unix:path=$bus_b" \
    >"$log/bus-b.log" 2>&1 &
  pids+=($!)
  local i
  for ((i = 0; i < 100; i++)); do
    [ -S "$bus_a" ] && [ -S "$bus_b" ] && break
    sleep 0.05
  done
  [ -S "$bus_a" ] && [ -S "$bus_b" ] || ibail "dbus-daemon --system did not start"
  A="unix:path=$bus_a"
  B="unix:path=$bus_b"

  has_owner() { # ADDRESS NAME
    [ "$(DBUS_SYSTEM_BUS_ADDRESS=$1 gdbus call --system --dest org.freedesktop.DBus \
      --object-path /org/freedesktop/DBus --method org.freedesktop.DBus.NameHasOwner "$2" \
      2>/dev/null)" = "(true,)" ]
  }
  wait_owner() { # ADDRESS NAME
    for ((i = 0; i < 150; i++)); do
      has_owner "$1" "$2" && return 0
      sleep 0.1
    done
    return 1
  }
  local polkitd=/usr/lib/polkit-1/polkitd
  DBUS_SYSTEM_BUS_ADDRESS=$A "$polkitd" --no-debug </dev/null >"$log/polkitd-a.log" 2>&1 &
  pids+=($!)
  DBUS_SYSTEM_BUS_ADDRESS=$B "$polkitd" --no-debug </dev/null >"$log/polkitd-b.log" 2>&1 &
  pids+=($!)
  wait_owner "$A" org.freedesktop.PolicyKit1 && wait_owner "$B" org.freedesktop.PolicyKit1 ||
    ibail "polkitd did not take org.freedesktop.PolicyKit1"

  # --- the issuer, with the installed tally-issuer -------------------------------
  local I=/root/tally-test-issuer
  issuer() { tally-issuer --dir "$I" "$@" >>"$log/issuer.log" 2>&1; }
  issuer init --name "Package Test Issuer" --currency EUR || ibail "tally-issuer init"
  local key
  key=$(tally-issuer --dir "$I" key | tr -d '[:space:]')
  [[ "$key" =~ ^[0-9a-f]{64}$ ]] || ibail "tally-issuer key printed \"$key\""

  tally-issuer --dir "$I" key --out "$I/issuer-keys.bin" >>"$log/issuer.log" 2>&1 ||
    ibail "tally-issuer key --out"

  # --- the payer: the installed configuration as it is, started as the unit does --
  local exec_start user group
  exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
  user=$(sed -n 's/^User=//p' "$unit")
  group=$(sed -n 's/^Group=//p' "$unit")
  [ "$user" = tally ] && [ "$group" = tally ] && [ -n "$exec_start" ] ||
    ibail "tallyd.service has User=$user Group=$group ExecStart=$exec_start"
  # setpriv execs tallyd: $! is tallyd's process.
  local -a as_unit=(setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs
    --inh-caps=-all --bounding-set=-all)
  # shellcheck disable=SC2086 # ExecStart= is split into words as systemd does
  DBUS_SYSTEM_BUS_ADDRESS=$A "${as_unit[@]}" $exec_start </dev/null >"$log/payer.log" 2>&1 &
  local payer_pid=$!
  pids+=("$payer_pid")

  # --- the payee: a second installed tallyd, on bus B ----------------------------
  local payee_dir=/var/lib/tally-test-payee payee_sock=/run/tally/payee.sock
  install -d -o tally -g tally -m 0750 "$payee_dir"
  cat >/etc/tally/payee.conf <<EOF
[register]
dir=$payee_dir
issuer_key=$key

[transport]
listen=unix:$payee_sock
EOF
  DBUS_SYSTEM_BUS_ADDRESS=$B "${as_unit[@]}" /usr/sbin/tallyd --config /etc/tally/payee.conf \
    </dev/null >"$log/payee.log" 2>&1 &
  local payee_pid=$!
  pids+=("$payee_pid")

  wait_owner "$A" org.tally.Tally || ibail "the payer's tallyd did not take org.tally.Tally"
  wait_owner "$B" org.tally.Tally || ibail "the payee's tallyd did not take org.tally.Tally"

  # --- (b) who tallyd runs as ----------------------------------------------------
  local uids owner
  uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$payer_pid/status")
  if [ "$uids" = "$TALLY_UID $TALLY_UID $TALLY_UID $TALLY_UID" ]; then
    iok "tallyd runs as the user tally (/proc/$payer_pid/status Uid: $uids)"
  else
    inot_ok "tallyd runs as the user tally (uid $TALLY_UID)" "/proc/$payer_pid/status Uid: $uids"
  fi
  owner=$(DBUS_SYSTEM_BUS_ADDRESS=$A gdbus call --system --dest org.freedesktop.DBus \
    --object-path /org/freedesktop/DBus --method org.freedesktop.DBus.GetConnectionUnixUser \
    org.tally.Tally 2>&1)
  icheck "org.tally.Tally on the system bus belongs to the user tally" \
    test "$owner" = "(uint32 $TALLY_UID,)"
  # The installed policy lets nobody else own the name: uid 65534 is refused.
  out=$(DBUS_SYSTEM_BUS_ADDRESS=$A setpriv --reuid=65534 --regid=65534 --clear-groups \
    gdbus call --system --dest org.tally.Tally --object-path /org/tally/register \
    --method org.freedesktop.DBus.Properties.Get org.tally.Register1 Balance 2>&1)
  if [[ "$out" == *AccessDenied* ]]; then
    iok "the installed bus policy refuses a user outside the group tally"
  else
    inot_ok "the installed bus policy refuses a user outside the group tally" "$out"
  fi

  # --- a fresh install: nothing written by hand ------------------------------------
  ctl() { # ADDRESS ARGS...
    local addr=$1
    shift
    DBUS_SYSTEM_BUS_ADDRESS=$addr tallyctl "$@"
  }
  prop() { # ADDRESS NAME
    DBUS_SYSTEM_BUS_ADDRESS=$1 gdbus call --system --dest org.tally.Tally \
      --object-path /org/tally/register --method org.freedesktop.DBus.Properties.Get \
      org.tally.Register1 "$2" | sed -E "s/^\(<'?(.*)'?>,\)$/\1/; s/'$//"
  }
  out=$(ctl "$A" balance 2>&1)
  if [[ "$out" == "0.00 (no issuer yet: tallyctl issuer FILE"* ]]; then
    iok "a fresh install reaches tallyctl balance with no configuration written by hand"
  else
    inot_ok "a fresh install reaches tallyctl balance with no configuration written by hand" "$out"
  fi
  out=$(ctl "$A" issuer "$I/issuer-keys.bin" 2>&1)
  if [[ "$out" == "Issuer set."* ]] && [ "$(prop "$A" IssuerKey 2>/dev/null)" = "$key" ]; then
    iok "tallyctl issuer gives the fresh register its issuer"
  else
    inot_ok "tallyctl issuer gives the fresh register its issuer" "$out"
  fi

  # --- certificates and vouchers ---------------------------------------------------
  certify() { # ADDRESS ACCOUNT
    local pub id
    pub=$(prop "$1" PublicKey)
    id=$(prop "$1" RegisterId)
    issuer account-create "$2" || ibail "account-create $2"
    issuer deposit "$2" 100.00 || ibail "deposit $2"
    issuer certify --account "$2" --key "$pub" --out "$I/$2.cert" --max-payment 20.00 \
      --balance-cap 500.00 --max-payments 100 --max-offline-hours 72 --valid-days 30 ||
      ibail "certify $2"
    ctl "$1" certificate "$I/$2.cert" >>"$log/ctl.log" 2>&1 || ibail "install the certificate of $2"
    issuer voucher --register "$id" --amount 40.00 --out "$I/$2.voucher" || ibail "voucher $2"
    ctl "$1" load "$I/$2.voucher" >>"$log/ctl.log" 2>&1 || ibail "load the voucher of $2"
  }
  certify "$A" payer
  certify "$B" payee

  # --- the installed polkit files decide ---------------------------------------------
  # A member of the group tally, with no session: 50-tally.rules lets it
  # read the register; paying stays with org.tally.Tally.policy's defaults,
  # which give it nothing.  Without the rules file the read is refused
  # too, without polkit the bus policy alone would let both through.
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --groups tally tally-test-member || ibail "useradd tally-test-member"
  local member_read member_pay
  member_read=$(DBUS_SYSTEM_BUS_ADDRESS=$A setpriv --reuid=tally-test-member \
    --regid=tally-test-member --init-groups tallyctl balance 2>&1)
  member_pay=$(DBUS_SYSTEM_BUS_ADDRESS=$A setpriv --reuid=tally-test-member \
    --regid=tally-test-member --init-groups gdbus call --system --dest org.tally.Tally \
    --object-path /org/tally/register --method org.tally.Register1.Pay "unix:$payee_sock" "{}" 2>&1)
  if [[ "$member_read" == *40.00* ]] && [[ "$member_pay" == *org.tally.Error.NotAuthorized* ]]; then
    iok "polkitd with the installed rules lets a member of tally read the balance, not pay"
  else
    inot_ok "polkitd with the installed rules lets a member of tally read the balance, not pay" \
      "tallyctl balance: $member_read" "Pay: $member_pay"
  fi

  # --- (c) a payment between the two -------------------------------------------------
  ctl "$B" request 12.50 >"$log/request.out" 2>&1 &
  local req_pid=$!
  pids+=("$req_pid")
  for ((i = 0; i < 100; i++)); do
    grep -q '^Waiting for payer' "$log/request.out" 2>/dev/null && break
    sleep 0.05
  done
  local pay_rc=0 req_rc=0 pay_out
  pay_out=$(timeout 60 env DBUS_SYSTEM_BUS_ADDRESS="$A" tallyctl pay "unix:$payee_sock" --yes \
    </dev/null 2>&1) || pay_rc=$?
  wait "$req_pid" || req_rc=$?
  local payer_balance payee_balance
  payer_balance=$(prop "$A" Balance)
  payee_balance=$(prop "$B" Balance)
  if [ "$pay_rc" -eq 0 ] && [ "$req_rc" -eq 0 ] && [ "$payer_balance" = "int64 2750" ] &&
    [ "$payee_balance" = "int64 5250" ]; then
    iok "a payment of 12.50 EUR between the two installed daemons succeeds (40.00 -> 27.50, 40.00 -> 52.50)"
  else
    inot_ok "a payment of 12.50 EUR between the two installed daemons succeeds" \
      "pay: status $pay_rc: $pay_out" "request: status $req_rc: $(cat "$log/request.out")" \
      "balances: payer $payer_balance, payee $payee_balance" \
      "payer's tallyd: $(tail -n 5 "$log/payer.log")" "payee's tallyd: $(tail -n 5 "$log/payee.log")"
  fi

  # --- tally-issuerd, the system service of tally-issuer ------------------------------
  # Installed, neither enabled nor started (it needs an issuer first); once
  # the issuer is made in /var/lib/tally-issuer as the user tally-issuer,
  # it runs as the unit runs it, as that user, from the installed
  # configuration, and answers GET /v1/keys.
  local ipw IUID
  ipw=$(getent passwd tally-issuer)
  IFS=: read -r _ _ IUID _ _ home shell <<<"$ipw"
  if [ -n "$ipw" ] && [ "$IUID" -lt 1000 ] && [ "$home" = /var/lib/tally-issuer ] &&
    [ "$shell" = /usr/sbin/nologin ] && getent group tally-issuer >/dev/null; then
    iok "postinst creates the system user and group tally-issuer (uid $IUID, home /var/lib/tally-issuer, no login)"
  else
    inot_ok "postinst creates the system user and group tally-issuer" "passwd: $ipw"
    ibail "no user tally-issuer"
  fi
  icheck "postinst creates /var/lib/tally-issuer, tally-issuer:tally-issuer 0700" \
    test "$(stat -c '%U:%G %a' /var/lib/tally-issuer 2>&1)" = "tally-issuer:tally-issuer 700"
  icheck "/etc/tally/tally-issuerd.conf is a conffile of tally-issuer" \
    grep -qx ' /etc/tally/tally-issuerd.conf [0-9a-f]*' <(dpkg-query -W -f='${Conffiles}\n' tally-issuer)
  local iunit=/lib/systemd/system/tally-issuerd.service
  rc=0
  out=$(systemd-analyze verify "$iunit" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    iok "systemd-analyze verify accepts the installed $iunit without a word"
  else
    inot_ok "systemd-analyze verify the installed $iunit (status $rc)" "$out"
  fi
  icheck "tally-issuerd.service is neither enabled nor started by the package" \
    test ! -e /etc/systemd/system/multi-user.target.wants/tally-issuerd.service

  local iexec iuser igroup
  iexec=$(sed -n 's/^ExecStart=//p' "$iunit")
  iuser=$(sed -n 's/^User=//p' "$iunit")
  igroup=$(sed -n 's/^Group=//p' "$iunit")
  [ "$iuser" = tally-issuer ] && [ "$igroup" = tally-issuer ] && [ -n "$iexec" ] ||
    ibail "tally-issuerd.service has User=$iuser Group=$igroup ExecStart=$iexec"
  local -a as_issuer=(setpriv --reuid="$iuser" --regid="$igroup" --init-groups --no-new-privs
    --inh-caps=-all --bounding-set=-all)
  "${as_issuer[@]}" tally-issuer --dir /var/lib/tally-issuer init --name "Package Yen Bank" \
    --currency JPY >>"$log/issuer.log" 2>&1 || ibail "tally-issuer init as tally-issuer"
  # shellcheck disable=SC2086 # ExecStart= is split into words as systemd does
  "${as_issuer[@]}" $iexec </dev/null >"$log/issuerd.log" 2>&1 &
  local issuerd_pid=$!
  pids+=("$issuerd_pid")
  local listen status=
  listen=$(sed -n 's/^#\{0,1\}listen=//p' /etc/tally/tally-issuerd.conf)
  # HTTP by hand, with bash's /dev/tcp: no client to install.
  for ((i = 0; i < 100; i++)); do
    status=$( (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}" &&
      printf 'GET /v1/keys HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$listen" >&3 &&
      head -n 1 <&3) 2>/dev/null | tr -d '\r')
    [ -n "$status" ] && break
    sleep 0.1
  done
  if [[ "$status" == "HTTP/1.1 200"* ]]; then
    iok "tally-issuerd from the installed configuration answers GET /v1/keys on $listen with 200"
  else
    inot_ok "tally-issuerd from the installed configuration answers GET /v1/keys with 200" \
      "status line: $status" "$(tail -n 5 "$log/issuerd.log")"
  fi
  uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$issuerd_pid/status" 2>&1)
  icheck "tally-issuerd runs as the user tally-issuer (/proc/$issuerd_pid/status Uid: $uids)" \
    test "$uids" = "$IUID $IUID $IUID $IUID"

  istop
  pids=()
  trap - EXIT

  # --- purge ------------------------------------------------------------------------
  # Everything dpkg put down goes with --purge; the register's directory
  # stays (it holds value: docs/packaging.md), as do the user and group.
  local files
  files=$(dpkg -L tallyd tally-issuer tally-wireshark tally-app | sort -u | while read -r f; do
    [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"
  done)
  rm -f /etc/tally/payee.conf
  rc=0
  out=$(dpkg --purge tally-app tally-wireshark tally-issuer tallyd 2>&1) || rc=$?
  local left
  left=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done <<<"$files")
  if [ "$rc" -eq 0 ] && [ -z "$left" ] && [ ! -e /etc/tally/tallyd.conf ] &&
    [ ! -e /etc/tally/tally-issuerd.conf ] &&
    [ -z "$(dpkg-query -W -f='${db:Status-Status}\n' tallyd tally-issuer tally-wireshark tally-app 2>/dev/null |
      grep -v '^not-installed$')" ]; then
    iok "dpkg --purge removes every one of the $(wc -l <<<"$files") files the packages installed"
  else
    inot_ok "dpkg --purge removes every file the packages installed (status $rc)" "$out" \
      "left: $left"
  fi
}

if [ "${1:-}" = --inside ]; then
  inside "$2"
  exit 0
fi

# =========================================================================
# On the machine.
# =========================================================================
if [ "$(id -u)" -ne 0 ]; then
  echo "1..0 # SKIP needs root: installs the packages with dpkg into a throwaway root (a mount namespace with an overlayfs over /)"
  exit 0
fi
# Not skips: CI installs all of these (scripts/install-deps.sh --test).
for p in dpkg-buildpackage:dpkg-dev dh:debhelper lintian:lintian unshare:util-linux \
  setpriv:util-linux chroot:coreutils systemd-analyze:systemd dbus-daemon:dbus-daemon \
  gdbus:libglib2.0-bin git:git flock:util-linux desktop-file-validate:desktop-file-utils \
  appstreamcli:appstream; do
  command -v "${p%%:*}" >/dev/null || bail "${p%%:*} is missing (Debian package ${p#*:}; scripts/install-deps.sh --test)"
done
[ -x /usr/lib/polkit-1/polkitd ] || bail "polkitd is missing (Debian package polkitd)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  bail "the kernel has no overlayfs: the throwaway root needs it"

T=$(mktemp -d /tmp/tally-test-package.XXXXXX)
cleanup() {
  [ -n "${TALLY_KEEP:-}" ] || rm -rf -- "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- build ------------------------------------------------------------------------
# From a copy of the source tree as it is (committed or not, without
# build directories or anything .gitignore names), so that the build
# writes nothing into the tree under test.
mkdir "$T/src"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$T/src" -xf - ||
    bail "cannot copy the source tree"
else
  tar -C "$SRC" --exclude='./build*' -cf - . | tar -C "$T/src" -xf - ||
    bail "cannot copy the source tree"
fi
start=$(date +%s)
if (cd "$T/src" &&
  DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) \
  >"$T/build.log" 2>&1 </dev/null; then
  ok "dpkg-buildpackage -us -uc -b builds the packages ($(($(date +%s) - start)) s)"
else
  not_ok "dpkg-buildpackage -us -uc -b builds the packages" "$(tail -n 30 "$T/build.log")"
  bail "no packages to test"
fi
for p in "${PACKAGES[@]}" tallyd-dbgsym tally-issuer-dbgsym tally-app-dbgsym; do
  if compgen -G "$T/${p}_*.deb" >/dev/null; then ok "builds $p"; else not_ok "builds $p"; fi
done
changes=$(compgen -G "$T/tally_*.changes" | head -n 1)

# --- lintian ------------------------------------------------------------------------
lint=$(lintian --fail-on error --display-info "$changes" 2>&1)
rc=$?
lint=$(grep -v '^running with root privileges is not recommended!$' <<<"$lint")
if [ "$rc" -eq 0 ] && ! grep -q '^E:' <<<"$lint"; then
  ok "lintian reports no error ($(grep -c '^W:' <<<"$lint") warnings, $(grep -c '^I:' <<<"$lint") infos)"
  [ -z "$lint" ] || printf '%s\n' "$lint" | sed 's/^/# /'
else
  not_ok "lintian reports no error (status $rc)" "$lint"
fi

# The files the packages hold: none may be on the machine before or after.
package_files=$(for p in "${PACKAGES[@]}"; do
  dpkg-deb --fsys-tarfile "$T/${p}_"*.deb | tar -t | sed -n 's|^\./|/|; /[^/]$/p'
done | sort -u)

# tests/daemon/test-system-bus.sh creates the group tally and puts polkit
# files under /usr/share for as long as it runs; not at the same time.
exec 9>/tmp/tally-test-system-bus.lock
flock 9

machine_state() { # what the packages would change on the machine
  dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null |
    grep -v ' not-installed$'
  getent passwd tally
  getent group tally
  getent passwd tally-issuer
  getent group tally-issuer
  local f
  while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done <<<"$package_files"
  for f in /var/lib/tally /run/tally /etc/tally /var/lib/dpkg/info/tallyd.list \
    /var/lib/tally-issuer /var/lib/dpkg/info/tally-issuer.list; do
    [ -e "$f" ] && echo "$f"
  done
}
before=$(machine_state)
[ -z "$before" ] ||
  bail "Tally is installed on this machine already, so the test could not tell what it leaves behind: $before"

# --- the throwaway root -----------------------------------------------------------
cp "${BASH_SOURCE[0]}" "$T/test-package.sh"
mkdir "$T/upper" "$T/work" "$T/root"
start=$(date +%s)
unshare --mount --propagation private -- bash -c '
  set -e
  T=$1
  R=$T/root
  mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$R"
  mount -t proc proc "$R/proc"
  mount --rbind /sys "$R/sys"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o mode=755 tmpfs "$R/run"
  exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root \
    bash "$T/test-package.sh" --inside "$T"
' _ "$T" >"$T/inside.out" 2>"$T/inside.err"
rc=$?
while IFS= read -r line; do
  case "$line" in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) not_ok "${line#not ok - }" ;;
    "Bail out! "*) not_ok "in the throwaway root: ${line#Bail out! }" ;;
    *) echo "$line" ;;
  esac
done <"$T/inside.out"
if [ "$rc" -eq 0 ]; then
  ok "the throwaway root's part ran to its end ($(($(date +%s) - start)) s)"
else
  not_ok "the throwaway root's part ran to its end (status $rc)" "$(tail -n 20 "$T/inside.err")"
fi

# --- nothing stays --------------------------------------------------------------------
after=$(machine_state)
if [ -z "$after" ]; then
  ok "nothing stays on the machine: no tally package, no user or group tally or tally-issuer, none of the $(wc -l <<<"$package_files") files"
else
  not_ok "nothing stays on the machine" "$after"
fi

echo "1..$N"
[ "$FAILED" -eq 0 ]
