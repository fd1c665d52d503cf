/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tallyd configuration, a GKeyFile:
 *
 *   [register]  dir=PATH  issuer_key=HEX
 *   [dbus]      bus=session|system  name=org.tally.Tally  authorization=polkit|none
 *   [transport] listen=unix:/path | tcp:HOST:PORT  ble=true|false  adapter=hci0
 *               ble_privacy=warn|require|off
 *               hello_timeout_seconds=5  max_connections=64
 *   [policy]    max_revocation_age_hours=0  max_amount=0
 *   [payment]   timeout_seconds=60  allowed_targets=ble;unix:/run/tally
 *               keep_finished_seconds=600  max_open_requests=1
 *   [issuer]    url=https://HOST  ca_file=PATH  sync_interval_seconds=3600
 *               allow_plain_http=false  request_timeout_seconds=120
 */

#include <gio/gio.h>

#include "tally-core.h"
#include "tally-mgmt.h"
#include "tally-register.h"

G_BEGIN_DECLS

#define TALLY_CONFIG_DEFAULT_BUS_NAME        "org.tally.Tally"
#define TALLY_CONFIG_DEFAULT_TIMEOUT_SECONDS 60
#define TALLY_CONFIG_DEFAULT_ADAPTER         "hci0"
#define TALLY_CONFIG_DEFAULT_UNIX_TARGETS    "/run/tally"
#define TALLY_CONFIG_DEFAULT_KEEP_FINISHED   600
#define TALLY_CONFIG_MAX_KEEP_FINISHED       3600
#define TALLY_CONFIG_DEFAULT_HELLO_TIMEOUT   5
#define TALLY_CONFIG_MAX_HELLO_TIMEOUT       60
#define TALLY_CONFIG_DEFAULT_MAX_CONNECTIONS 64
#define TALLY_CONFIG_MAX_CONNECTIONS         4096
#define TALLY_CONFIG_MAX_OPEN_REQUESTS       16
#define TALLY_CONFIG_DEFAULT_SYNC_INTERVAL   3600
#define TALLY_CONFIG_MIN_SYNC_INTERVAL       10
#define TALLY_CONFIG_MAX_SYNC_INTERVAL       (7 * 24 * 3600)
#define TALLY_CONFIG_DEFAULT_REQUEST_TIMEOUT 120
#define TALLY_CONFIG_MAX_REQUEST_TIMEOUT     3600
/* [issuer] revocations_max_age_seconds: 0 or 10 .. a week. */
#define TALLY_CONFIG_DEFAULT_REVOCATIONS_MAX_AGE (24 * 3600)
/* The register and the socket with -Ddefaults=system (systemd's
 * StateDirectory=tally and RuntimeDirectory=tally). */
#define TALLY_CONFIG_SYSTEM_STATE_DIR        "/var/lib/tally"
#define TALLY_CONFIG_SYSTEM_RUNTIME_DIR      "/run/tally"

/*
 * Where Pay may connect ([payment] allowed_targets), so that whoever may
 * call Pay cannot make the daemon connect anywhere:
 *   ble        any Bluetooth LE address form
 *   unix:DIR   UNIX sockets under the absolute directory DIR
 *   tcp:loopback  TCP to a literal loopback address (127.0.0.0/8, ::1)
 */
typedef struct
{
  gboolean ble;
  char **unix_dirs; /* NULL-terminated, without trailing '/' */
  gboolean tcp_loopback;
} TallyPayTargets;

/*
 * Who decides whether a D-Bus caller may call a method ([dbus]
 * authorization, daemon/tally-dbus-auth.h):
 *   POLKIT  polkit, per method (the default on the system bus)
 *   NONE    the bus alone: whoever may send to tallyd may call every
 *           method (the default on the session bus, whose only caller is
 *           its own user)
 */
typedef enum
{
  TALLY_AUTHORIZATION_NONE,
  TALLY_AUTHORIZATION_POLKIT,
} TallyAuthorization;

const char *tally_authorization_to_string (TallyAuthorization authorization);

typedef struct
{
  char *register_dir;
  gboolean has_issuer_key;
  guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES];
  GBusType bus_type;
  char *bus_name;
  TallyAuthorization authorization;
  char *listen;
  /* Bluetooth LE through BlueZ on the system bus: payee (advertising while
   * a request waits) and payer ("ble" addresses). */
  gboolean ble;
  char *adapter;
  /* What to do when the adapter would put its public address on the air
   * (transport/tally-mgmt.h). */
  TallyPrivacyPolicy ble_privacy;
  /* A payer's link that has sent no valid Hello this long is closed. */
  guint hello_timeout_seconds;
  /* Stream connections held at once; more are closed as they come. */
  guint max_connections;
  TallyAcceptPolicy policy;
  /* [policy] max_amount as written (NULL: none), in the register's
   * currency's units (2500 JPY, 25.00 EUR): tallyd reads it once it knows
   * the currency. */
  char *max_amount;
  guint timeout_seconds;
  /* A finished payment leaves the bus this long after it finished. */
  guint keep_finished_seconds;
  /* RequestPayment calls that may wait at once, each with its own tag. */
  guint max_open_requests;
  TallyPayTargets targets;
  /* [issuer]: the online issuer (docs/issuer-api.md), NULL for none:
   * tallyd syncs by itself (daemon/tally-sync.h). */
  char *issuer_url;
  char *issuer_ca_file;
  gboolean allow_plain_http;
  guint sync_interval_seconds; /* 0: only when asked (Register1.Sync) */
  guint request_timeout_seconds; /* a whole sync, enrolment or top-up */
  guint revocations_max_age_seconds; /* a sync falls due; 0: never for this */
} TallyConfig;

/* A user's defaults (development, -Ddefaults=user): register under the
 * user data dir, session bus (no polkit), a UNIX socket in the user runtime
 * dir, Bluetooth LE off (adapter hci0), no extra policy, 60 s payments, Pay
 * to Bluetooth LE and to sockets under /run/tally. */
TallyConfig *tally_config_new (void);
/* The system's (an install, -Ddefaults=system): the same, but the register
 * in /var/lib/tally, the system bus (polkit) and /run/tally/tally.sock. */
TallyConfig *tally_config_new_system (void);
void tally_config_free (TallyConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyConfig, tally_config_free)

/* Overrides the defaults with the keys in @path.  INVALID_ARGUMENT names
 * the group and key at fault; NOT_FOUND when the file is missing. */
gboolean tally_config_load_file (TallyConfig *config, const char *path, GError **error);
gboolean tally_config_load_data (TallyConfig *config, const char *data, GError **error);

/* Whether Pay may connect to @address; POLICY naming the key otherwise,
 * INVALID_ARGUMENT for a UNIX path that is not absolute and plain (no
 * "." or ".." component, no empty one). */
gboolean
tally_pay_targets_allow (const TallyPayTargets *targets, const char *address, GError **error);

/* The key reference for --help, with a user's defaults or the system's. */
const char *tally_config_describe (void);
const char *tally_config_describe_system (void);

G_END_DECLS
