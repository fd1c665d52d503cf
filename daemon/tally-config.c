/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-config.h"

#include <string.h>

#include "tally-hex.h"
#include "tally-sync.h"

/* The defaults that differ between a user's tallyd (development) and the
 * system's (an install: systemd's StateDirectory= and RuntimeDirectory=
 * of data/tallyd.service, the system bus). */
#define USER_DIR_TEXT      "$XDG_DATA_HOME/tally"
#define USER_LISTEN_TEXT   "unix:$XDG_RUNTIME_DIR/tally.sock"
#define SYSTEM_DIR_TEXT    TALLY_CONFIG_SYSTEM_STATE_DIR
#define SYSTEM_LISTEN_TEXT "unix:" TALLY_CONFIG_SYSTEM_RUNTIME_DIR "/tally.sock"

typedef struct
{
  const char *group;
  const char *key;
} KnownKey;

static const KnownKey known_keys[] = {
  { "register", "dir" },
  { "register", "issuer_key" },
  { "dbus", "bus" },
  { "dbus", "name" },
  { "dbus", "authorization" },
  { "transport", "listen" },
  { "transport", "ble" },
  { "transport", "adapter" },
  { "transport", "ble_privacy" },
  { "transport", "hello_timeout_seconds" },
  { "transport", "max_connections" },
  { "policy", "max_revocation_age_hours" },
  { "policy", "max_amount" },
  { "payment", "timeout_seconds" },
  { "payment", "allowed_targets" },
  { "payment", "keep_finished_seconds" },
  { "payment", "max_open_requests" },
  { "issuer", "url" },
  { "issuer", "ca_file" },
  { "issuer", "sync_interval_seconds" },
  { "issuer", "revocations_max_age_seconds" },
  { "issuer", "allow_plain_http" },
  { "issuer", "request_timeout_seconds" },
};

static TallyConfig *
config_new (void)
{
  TallyConfig *config = g_new0 (TallyConfig, 1);
  config->bus_name = g_strdup (TALLY_CONFIG_DEFAULT_BUS_NAME);
  config->timeout_seconds = TALLY_CONFIG_DEFAULT_TIMEOUT_SECONDS;
  config->keep_finished_seconds = TALLY_CONFIG_DEFAULT_KEEP_FINISHED;
  config->adapter = g_strdup (TALLY_CONFIG_DEFAULT_ADAPTER);
  config->ble_privacy = TALLY_PRIVACY_POLICY_WARN;
  config->hello_timeout_seconds = TALLY_CONFIG_DEFAULT_HELLO_TIMEOUT;
  config->max_connections = TALLY_CONFIG_DEFAULT_MAX_CONNECTIONS;
  config->max_open_requests = 1;
  config->sync_interval_seconds = TALLY_CONFIG_DEFAULT_SYNC_INTERVAL;
  config->request_timeout_seconds = TALLY_CONFIG_DEFAULT_REQUEST_TIMEOUT;
  config->revocations_max_age_seconds = TALLY_CONFIG_DEFAULT_REVOCATIONS_MAX_AGE;
  config->targets.ble = TRUE;
  config->targets.unix_dirs = g_strsplit (TALLY_CONFIG_DEFAULT_UNIX_TARGETS, ";", -1);
  return config;
}

TallyConfig *
tally_config_new (void)
{
  TallyConfig *config = config_new ();
  config->register_dir = g_build_filename (g_get_user_data_dir (), "tally", NULL);
  config->bus_type = G_BUS_TYPE_SESSION;
  config->authorization = TALLY_AUTHORIZATION_NONE;
  config->listen = g_strdup_printf ("unix:%s/tally.sock", g_get_user_runtime_dir ());
  return config;
}

TallyConfig *
tally_config_new_system (void)
{
  TallyConfig *config = config_new ();
  config->register_dir = g_strdup (TALLY_CONFIG_SYSTEM_STATE_DIR);
  config->bus_type = G_BUS_TYPE_SYSTEM;
  config->authorization = TALLY_AUTHORIZATION_POLKIT;
  config->listen = g_strdup (SYSTEM_LISTEN_TEXT);
  return config;
}

void
tally_config_free (TallyConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->register_dir);
  g_free (config->bus_name);
  g_free (config->listen);
  g_free (config->max_amount);
  g_free (config->adapter);
  g_strfreev (config->targets.unix_dirs);
  g_free (config->issuer_url);
  g_free (config->issuer_ca_file);
  g_free (config);
}

const char *
tally_authorization_to_string (TallyAuthorization authorization)
{
  switch (authorization) {
  case TALLY_AUTHORIZATION_NONE: return "none";
  case TALLY_AUTHORIZATION_POLKIT: return "polkit";
  }
  return NULL;
}

static gboolean
invalid (GError **error, const char *group, const char *key, const char *why)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "[%s] %s: %s", group, key, why);
  return FALSE;
}

/* Looks @key up; *value stays NULL when absent.  A key present but empty
 * is an error: silently falling back to a default hides typos. */
static gboolean
get_string (GKeyFile *kf, const char *group, const char *key, char **value, GError **error)
{
  *value = NULL;
  if (!g_key_file_has_key (kf, group, key, NULL))
    return TRUE;
  g_autoptr (GError) local = NULL;
  g_autofree char *v = g_key_file_get_string (kf, group, key, &local);
  if (v == NULL)
    return invalid (error, group, key, local->message);
  g_strstrip (v);
  if (*v == '\0')
    return invalid (error, group, key, "empty value");
  *value = g_steal_pointer (&v);
  return TRUE;
}

static gboolean
get_uint (GKeyFile *kf,
          const char *group,
          const char *key,
          guint64 max,
          gboolean *present,
          guint64 *value,
          GError **error)
{
  g_autofree char *text = NULL;
  *present = FALSE;
  if (!get_string (kf, group, key, &text, error))
    return FALSE;
  if (text == NULL)
    return TRUE;
  guint64 v;
  if (!g_ascii_string_to_unsigned (text, 10, 0, max, &v, NULL)) {
    g_autofree char *why = g_strdup_printf ("\"%s\" is not a whole number from 0 to %" G_GUINT64_FORMAT,
                                            text, max);
    return invalid (error, group, key, why);
  }
  *present = TRUE;
  *value = v;
  return TRUE;
}

/* An absolute path with no empty, "." or ".." component: the prefix test
 * of tally_pay_targets_allow () then means what it says. */
static gboolean
path_is_plain (const char *path)
{
  if (path[0] != '/' || path[1] == '\0')
    return FALSE;
  g_auto (GStrv) parts = g_strsplit (path + 1, "/", -1);
  for (gsize i = 0; parts[i] != NULL; i++)
    if (*parts[i] == '\0' || strcmp (parts[i], ".") == 0 || strcmp (parts[i], "..") == 0)
      return FALSE;
  return TRUE;
}

static gboolean
load_targets (TallyPayTargets *targets, GKeyFile *kf, GError **error)
{
  if (!g_key_file_has_key (kf, "payment", "allowed_targets", NULL))
    return TRUE;
  g_autoptr (GError) local = NULL;
  gsize n = 0;
  g_auto (GStrv) list = g_key_file_get_string_list (kf, "payment", "allowed_targets", &n, &local);
  if (list == NULL && local != NULL)
    return invalid (error, "payment", "allowed_targets", local->message);

  TallyPayTargets t = { 0 };
  g_autoptr (GPtrArray) dirs = g_ptr_array_new_with_free_func (g_free);
  for (gsize i = 0; i < n; i++) {
    g_autofree char *entry = g_strstrip (g_strdup (list[i]));
    if (*entry == '\0')
      continue;
    if (strcmp (entry, "ble") == 0) {
      t.ble = TRUE;
    } else if (strcmp (entry, "tcp:loopback") == 0) {
      t.tcp_loopback = TRUE;
    } else if (g_str_has_prefix (entry, "unix:")) {
      g_autofree char *dir = g_strdup (entry + 5);
      gsize len = strlen (dir);
      while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
      if (!path_is_plain (dir))
        return invalid (error, "payment", "allowed_targets",
                        "unix:DIR needs an absolute directory without \".\" or \"..\"");
      g_ptr_array_add (dirs, g_steal_pointer (&dir));
    } else {
      return invalid (error, "payment", "allowed_targets",
                      "expected entries ble, unix:/DIR or tcp:loopback");
    }
  }
  g_ptr_array_add (dirs, NULL);
  t.unix_dirs = (char **) g_ptr_array_free (g_steal_pointer (&dirs), FALSE);
  g_strfreev (targets->unix_dirs);
  *targets = t;
  return TRUE;
}

static gboolean
tcp_host_is_loopback (const char *hostport)
{
  /* tcp:HOST:PORT, HOST a literal address, IPv6 in brackets or not. */
  const char *colon = strrchr (hostport, ':');
  if (colon == NULL || colon == hostport)
    return FALSE;
  g_autofree char *host = g_strndup (hostport, (gsize) (colon - hostport));
  gsize len = strlen (host);
  if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
    host[len - 1] = '\0';
    memmove (host, host + 1, len - 1);
  }
  g_autoptr (GInetAddress) address = g_inet_address_new_from_string (host);
  return address != NULL && g_inet_address_get_is_loopback (address);
}

gboolean
tally_pay_targets_allow (const TallyPayTargets *targets, const char *address, GError **error)
{
  g_return_val_if_fail (targets != NULL && address != NULL, FALSE);

  if (strcmp (address, "ble") == 0 || g_str_has_prefix (address, "ble:")) {
    if (targets->ble)
      return TRUE;
  } else if (g_str_has_prefix (address, "unix:")) {
    const char *path = address + 5;
    if (!path_is_plain (path)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "\"%s\": a socket path must be absolute, without \".\" or \"..\"", address);
      return FALSE;
    }
    for (gsize i = 0; targets->unix_dirs != NULL && targets->unix_dirs[i] != NULL; i++) {
      const char *dir = targets->unix_dirs[i];
      gsize len = strlen (dir);
      if (strcmp (dir, "/") == 0 || (strncmp (path, dir, len) == 0 && path[len] == '/'))
        return TRUE;
    }
  } else if (g_str_has_prefix (address, "tcp:")) {
    if (targets->tcp_loopback && tcp_host_is_loopback (address + 4))
      return TRUE;
  }
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
               "\"%s\" is not allowed by [payment] allowed_targets", address);
  return FALSE;
}

static gboolean
check_keys (GKeyFile *kf, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
  for (gsize g = 0; groups[g] != NULL; g++) {
    g_auto (GStrv) keys = g_key_file_get_keys (kf, groups[g], NULL, NULL);
    for (gsize k = 0; keys != NULL && keys[k] != NULL; k++) {
      gboolean known = FALSE;
      for (gsize i = 0; i < G_N_ELEMENTS (known_keys); i++)
        if (strcmp (known_keys[i].group, groups[g]) == 0 &&
            strcmp (known_keys[i].key, keys[k]) == 0)
          known = TRUE;
      if (!known)
        return invalid (error, groups[g], keys[k], "unknown key (see tallyd --help)");
    }
  }
  return TRUE;
}

/* [register]: where the register lives and whose certificates it trusts. */
static gboolean
load_register_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  g_autofree char *dir = NULL, *issuer = NULL;

  if (!get_string (kf, "register", "dir", &dir, error))
    return FALSE;
  if (dir != NULL) {
    g_free (config->register_dir);
    config->register_dir = g_steal_pointer (&dir);
  }

  if (!get_string (kf, "register", "issuer_key", &issuer, error))
    return FALSE;
  if (issuer != NULL) {
    if (!tally_hex_decode (issuer, config->issuer_key, TALLY_PUBLIC_KEY_BYTES, NULL))
      return invalid (error, "register", "issuer_key",
                      "expected the issuer public key as 64 hex digits");
    config->has_issuer_key = TRUE;
  }
  return TRUE;
}

/* [dbus]: the bus, who may call, and the name we own there. */
static gboolean
load_dbus_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  g_autofree char *bus = NULL, *name = NULL, *authorization = NULL;

  if (!get_string (kf, "dbus", "bus", &bus, error))
    return FALSE;
  if (bus != NULL) {
    if (strcmp (bus, "session") == 0)
      config->bus_type = G_BUS_TYPE_SESSION;
    else if (strcmp (bus, "system") == 0)
      config->bus_type = G_BUS_TYPE_SYSTEM;
    else
      return invalid (error, "dbus", "bus", "expected \"session\" or \"system\"");
  }

  if (!get_string (kf, "dbus", "authorization", &authorization, error))
    return FALSE;
  if (authorization != NULL && strcmp (authorization, "polkit") == 0)
    config->authorization = TALLY_AUTHORIZATION_POLKIT;
  else if (authorization != NULL && strcmp (authorization, "none") == 0)
    config->authorization = TALLY_AUTHORIZATION_NONE;
  else if (authorization != NULL)
    return invalid (error, "dbus", "authorization", "expected \"polkit\" or \"none\"");
  else if (bus != NULL)
    /* The bus named here without a choice: the default for that bus. */
    config->authorization =
      config->bus_type == G_BUS_TYPE_SYSTEM ? TALLY_AUTHORIZATION_POLKIT : TALLY_AUTHORIZATION_NONE;
  /* polkit identifies callers by their system bus names only. */
  if (config->authorization == TALLY_AUTHORIZATION_POLKIT && config->bus_type != G_BUS_TYPE_SYSTEM)
    return invalid (error, "dbus", "authorization",
                    "polkit needs bus=system: it knows only the system bus's callers");

  if (!get_string (kf, "dbus", "name", &name, error))
    return FALSE;
  if (name != NULL) {
    if (!g_dbus_is_name (name) || g_dbus_is_unique_name (name))
      return invalid (error, "dbus", "name", "not a well-known D-Bus name");
    g_free (config->bus_name);
    config->bus_name = g_steal_pointer (&name);
  }
  return TRUE;
}

/* [transport]: where payers connect, and Bluetooth LE. */
/* [transport]: what one payer, or a crowd of connections, may hold. */
static gboolean
load_transport_limits (TallyConfig *config, GKeyFile *kf, GError **error)
{
  gboolean present;
  guint64 v;

  if (!get_uint (kf, "transport", "hello_timeout_seconds", TALLY_CONFIG_MAX_HELLO_TIMEOUT, &present,
                 &v, error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "transport", "hello_timeout_seconds", "must be at least 1");
    config->hello_timeout_seconds = (guint) v;
  }

  if (!get_uint (kf, "transport", "max_connections", TALLY_CONFIG_MAX_CONNECTIONS, &present, &v,
                 error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "transport", "max_connections", "must be at least 1");
    config->max_connections = (guint) v;
  }
  return TRUE;
}

static gboolean
load_transport_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  g_autofree char *listen = NULL, *ble = NULL, *adapter = NULL, *privacy = NULL;

  if (!get_string (kf, "transport", "listen", &listen, error))
    return FALSE;
  if (listen != NULL) {
    if (!g_str_has_prefix (listen, "unix:") && !g_str_has_prefix (listen, "tcp:"))
      return invalid (error, "transport", "listen",
                      "expected unix:/path/to/socket or tcp:HOST:PORT");
    g_free (config->listen);
    config->listen = g_steal_pointer (&listen);
  }

  if (!get_string (kf, "transport", "ble", &ble, error))
    return FALSE;
  if (ble != NULL) {
    if (strcmp (ble, "true") == 0)
      config->ble = TRUE;
    else if (strcmp (ble, "false") == 0)
      config->ble = FALSE;
    else
      return invalid (error, "transport", "ble", "expected \"true\" or \"false\"");
  }

  if (!get_string (kf, "transport", "adapter", &adapter, error))
    return FALSE;
  if (adapter != NULL) {
    /* A BlueZ adapter name: the last element of /org/bluez/hciN. */
    gboolean valid = g_str_has_prefix (adapter, "hci") && adapter[3] != '\0';
    for (const char *p = adapter + 3; valid && *p != '\0'; p++)
      valid = g_ascii_isdigit (*p);
    if (!valid)
      return invalid (error, "transport", "adapter", "expected a Bluetooth adapter name like hci0");
    g_free (config->adapter);
    config->adapter = g_steal_pointer (&adapter);
  }

  if (!get_string (kf, "transport", "ble_privacy", &privacy, error))
    return FALSE;
  if (privacy != NULL && !tally_privacy_policy_from_string (privacy, &config->ble_privacy))
    return invalid (error, "transport", "ble_privacy", "expected warn, require or off");
  return load_transport_limits (config, kf, error);
}

/* [policy]: what we refuse beyond the certified limits. */
static gboolean
load_policy_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  g_autofree char *max_amount = NULL;
  gboolean present;
  guint64 v;

  if (!get_uint (kf, "policy", "max_revocation_age_hours", G_MAXUINT64 / 3600, &present, &v,
                 error))
    return FALSE;
  if (present)
    config->policy.max_revocation_age = v * 3600;

  if (!get_string (kf, "policy", "max_amount", &max_amount, error))
    return FALSE;
  if (max_amount != NULL) {
    gint64 amount = 0;
    /* Written in the register's currency, which the certificate names and
     * a fresh register has not yet: checked here as an amount in some
     * currency, read for good by tallyd once it knows the currency.  The policy holds
     * it as two decimals read it, the usual exponent. */
    if (strcmp (max_amount, "0") != 0 && !tally_amount_parse_any (max_amount, NULL))
      return invalid (error, "policy", "max_amount",
                      "expected 0 or an amount in major units like 20, 20.50 or 20.500");
    if (strcmp (max_amount, "0") != 0 && tally_amount_parse (max_amount, NULL, &amount, NULL))
      config->policy.max_amount = amount;
    else
      config->policy.max_amount = 0;
    g_free (config->max_amount);
    config->max_amount = strcmp (max_amount, "0") != 0 ? g_steal_pointer (&max_amount) : NULL;
  }
  return TRUE;
}

/* [payment]: how long payments live and where Pay may connect. */
static gboolean
load_payment_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  gboolean present;
  guint64 v;

  if (!get_uint (kf, "payment", "timeout_seconds", 24 * 3600, &present, &v, error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "payment", "timeout_seconds", "must be at least 1");
    config->timeout_seconds = (guint) v;
  }

  if (!get_uint (kf, "payment", "keep_finished_seconds", TALLY_CONFIG_MAX_KEEP_FINISHED, &present,
                 &v, error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "payment", "keep_finished_seconds", "must be at least 1");
    config->keep_finished_seconds = (guint) v;
  }

  if (!get_uint (kf, "payment", "max_open_requests", TALLY_CONFIG_MAX_OPEN_REQUESTS, &present, &v,
                 error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "payment", "max_open_requests", "must be at least 1");
    config->max_open_requests = (guint) v;
  }
  return load_targets (&config->targets, kf, error);
}

/* [issuer]: the online issuer tallyd syncs with. */
static gboolean
load_issuer_group (TallyConfig *config, GKeyFile *kf, GError **error)
{
  g_autofree char *url = NULL, *ca_file = NULL, *plain = NULL;
  gboolean present;
  guint64 v;

  if (!get_string (kf, "issuer", "allow_plain_http", &plain, error))
    return FALSE;
  if (plain != NULL) {
    if (strcmp (plain, "true") == 0)
      config->allow_plain_http = TRUE;
    else if (strcmp (plain, "false") == 0)
      config->allow_plain_http = FALSE;
    else
      return invalid (error, "issuer", "allow_plain_http", "expected \"true\" or \"false\"");
  }

  if (!get_string (kf, "issuer", "url", &url, error))
    return FALSE;
  if (url != NULL) {
    g_autoptr (GError) local = NULL;
    if (!tally_sync_check_url (url, config->allow_plain_http, &local))
      return invalid (error, "issuer", "url", local->message);
    g_free (config->issuer_url);
    config->issuer_url = g_steal_pointer (&url);
  }

  if (!get_string (kf, "issuer", "ca_file", &ca_file, error))
    return FALSE;
  if (ca_file != NULL) {
    if (!g_path_is_absolute (ca_file))
      return invalid (error, "issuer", "ca_file", "expected an absolute path");
    g_free (config->issuer_ca_file);
    config->issuer_ca_file = g_steal_pointer (&ca_file);
  }

  if (!get_uint (kf, "issuer", "sync_interval_seconds", TALLY_CONFIG_MAX_SYNC_INTERVAL, &present,
                 &v, error))
    return FALSE;
  if (present) {
    if (v != 0 && v < TALLY_CONFIG_MIN_SYNC_INTERVAL)
      return invalid (error, "issuer", "sync_interval_seconds", "must be 0 or at least 10");
    config->sync_interval_seconds = (guint) v;
  }

  if (!get_uint (kf, "issuer", "request_timeout_seconds", TALLY_CONFIG_MAX_REQUEST_TIMEOUT,
                 &present, &v, error))
    return FALSE;
  if (present) {
    if (v == 0)
      return invalid (error, "issuer", "request_timeout_seconds", "must be 1 to 3600");
    config->request_timeout_seconds = (guint) v;
  }

  if (!get_uint (kf, "issuer", "revocations_max_age_seconds", TALLY_CONFIG_MAX_SYNC_INTERVAL,
                 &present, &v, error))
    return FALSE;
  if (present) {
    if (v != 0 && v < TALLY_CONFIG_MIN_SYNC_INTERVAL)
      return invalid (error, "issuer", "revocations_max_age_seconds", "must be 0 or at least 10");
    config->revocations_max_age_seconds = (guint) v;
  }
  return TRUE;
}

/* Group by group, in the order of tally_config_describe (); the first
 * bad key stops the load. */
static gboolean
load_key_file (TallyConfig *config, GKeyFile *kf, GError **error)
{
  return check_keys (kf, error) && load_register_group (config, kf, error) &&
         load_dbus_group (config, kf, error) && load_transport_group (config, kf, error) &&
         load_policy_group (config, kf, error) && load_payment_group (config, kf, error) &&
         load_issuer_group (config, kf, error);
}

gboolean
tally_config_load_data (TallyConfig *config, const char *data, GError **error)
{
  g_return_val_if_fail (config != NULL && data != NULL, FALSE);

  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  if (!g_key_file_load_from_data (kf, data, (gsize) -1, G_KEY_FILE_NONE, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "%s", local->message);
    return FALSE;
  }
  return load_key_file (config, kf, error);
}

gboolean
tally_config_load_file (TallyConfig *config, const char *path, GError **error)
{
  g_return_val_if_fail (config != NULL && path != NULL, FALSE);

  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, &local)) {
    gboolean missing = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    g_set_error (error, TALLY_ERROR, missing ? TALLY_ERROR_NOT_FOUND : TALLY_ERROR_INVALID_ARGUMENT,
                 "%s: %s", path, local->message);
    return FALSE;
  }
  if (!load_key_file (config, kf, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

/* The key reference, with the defaults that differ between user and system. */
#define DESCRIBE(DIR, BUS, AUTH, LISTEN)                                                           \
  "Configuration file keys (GKeyFile):\n"                                                          \
  "  [register]\n"                                                                                 \
  "    dir=PATH                     register directory; created on first start\n"                  \
  "                                 (default: " DIR ")\n"                                          \
  "    issuer_key=HEX               issuer public key, 64 hex digits; without it\n"                \
  "                                 the register waits for tallyctl issuer FILE\n"                 \
  "  [dbus]\n"                                                                                     \
  "    bus=session|system           bus to serve on (default: " BUS ")\n"                          \
  "    name=NAME                    well-known name (default: " TALLY_CONFIG_DEFAULT_BUS_NAME      \
  ")\n"                                                                                            \
  "    authorization=polkit|none    polkit: polkit authorizes every method call\n"                 \
  "                                 (org.tally.Tally.* actions); none: the bus\n"                  \
  "                                 policy alone (default: polkit on the system\n"                 \
  "                                 bus, none on the session bus; without [dbus]\n"                \
  "                                 bus: " AUTH ")\n"                                              \
  "  [transport]\n"                                                                                \
  "    listen=unix:PATH|tcp:HOST:PORT  where payers connect\n"                                     \
  "                                 (default: " LISTEN ")\n"                                       \
  "    ble=true|false               Bluetooth LE through BlueZ (system bus): advertise\n"          \
  "                                 while a request waits, pay ble addresses\n"                    \
  "                                 (default: false)\n"                                            \
  "    adapter=hciN                 Bluetooth adapter "                                            \
  "(default: " TALLY_CONFIG_DEFAULT_ADAPTER ")\n"                                                  \
  "    ble_privacy=warn|require|off  when the adapter would advertise and connect\n"            \
  "                                 from its public address (LE Privacy off):\n"                 \
  "                                 warn, refuse to start Bluetooth LE, or do not\n"             \
  "                                 check (default: warn)\n"                                     \
  "    hello_timeout_seconds=N      close a payer's link that sent no valid Hello\n"               \
  "                                 (or Reveal after the offer) within N seconds,\n"               \
  "                                 1 to 60 (default: 5)\n"                                        \
  "    max_connections=N            stream connections held at once; more are\n"                   \
  "                                 closed at once, 1 to 4096 (default: 64)\n"                     \
  "  [policy]\n"                                                                                   \
  "    max_revocation_age_hours=N   refuse payers when our revocation list is\n"                   \
  "                                 older than N hours (0: no limit)\n"                            \
  "    max_amount=AMOUNT            refuse single payments above AMOUNT in major\n"                \
  "                                 units of the register's currency, e.g. 20.00\n"                \
  "                                 EUR, 2000 JPY (0: only certified limits)\n"                    \
  "  [payment]\n"                                                                                  \
  "    timeout_seconds=N            a payment fails with Timeout after N seconds\n"                \
  "                                 (default: 60)\n"                                               \
  "    allowed_targets=LIST         where Pay may connect, ';'-separated: ble,\n"                  \
  "                                 unix:DIR (sockets under DIR), tcp:loopback\n"                  \
  "                                 (default: ble;unix:" TALLY_CONFIG_DEFAULT_UNIX_TARGETS ")\n"   \
  "    keep_finished_seconds=N      a finished payment leaves the bus N seconds\n"                 \
  "                                 after it finished, 1 to 3600 (default: 600)\n"                 \
  "    max_open_requests=N          payment requests open at once, each with its\n"                \
  "                                 own tag a payer names, 1 to 16 (default: 1)\n"                 \
  "  [issuer]\n"                                                                                   \
  "    url=URL                      the online issuer (tally-issuerd); when set,\n"                \
  "                                 tallyd reconciles with it by itself (default:\n"               \
  "                                 none: bundles and results go by hand)\n"                       \
  "    ca_file=PATH                 PEM certificates trusted for https instead of\n"               \
  "                                 the system's\n"                                                \
  "    sync_interval_seconds=N      sync at start, every N seconds, sooner before\n"               \
  "                                 the certificate's sync deadline, and when the\n"               \
  "                                 network comes back; 10 to 604800, or 0: only\n"                \
  "                                 on tallyctl sync (default: 3600)\n"                            \
  "    revocations_max_age_seconds=N with the automatic sync, sync when the\n"                     \
  "                                 revocation list is N seconds old (since\n"                     \
  "                                 issued or last fetched); 10 to 604800, or\n"                   \
  "                                 0: never for this (default: 86400)\n"                          \
  "    allow_plain_http=true|false  allow http:// to a host that is not loopback\n"                \
  "                                 (default: false)\n"                                            \
  "    request_timeout_seconds=N    the longest a sync, enrolment or top-up may\n"                 \
  "                                 take, retries included, 1 to 3600\n"                           \
  "                                 (default: 120)\n"

const char *
tally_config_describe (void)
{
  return DESCRIBE (USER_DIR_TEXT, "session", "none", USER_LISTEN_TEXT);
}

const char *
tally_config_describe_system (void)
{
  return DESCRIBE (SYSTEM_DIR_TEXT, "system", "polkit", SYSTEM_LISTEN_TEXT);
}
