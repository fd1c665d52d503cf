/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tallyctl.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sodium.h>
#include <unistd.h>

/* --- info, balance, key --- */

static const struct
{
  const char *property;
  const char *label;
  char type; /* s, x (amount), t, T (time), D (duration), u, b */
} register_fields[] = {
  { "RegisterId", "Register", 's' },
  { "PublicKey", "Public key", 's' },
  { "IssuerKey", "Issuer key", 's' },
  { "Balance", "Balance", 'x' },
  { "Currency", "Currency", 's' },
  { "MaxPayment", "Max payment", 'x' },
  { "BalanceCap", "Balance cap", 'x' },
  { "MaxOfflinePayments", "Max offline payments", 'u' },
  { "MaxOfflineSeconds", "Max offline time", 'D' },
  { "OfflinePayments", "Offline payments", 'u' },
  { "CertificateExpiry", "Certificate expiry", 'T' },
  { "LastReconciliation", "Last reconciliation", 'T' },
  { "RevocationSerial", "Revocation serial", 't' },
  { "Closed", "Closed", 'b' },
  { "Revoked", "Revoked", 'b' },
  { "ListenAddress", "Listen address", 's' },
  { "IssuerUrl", "Issuer URL", 's' },
  { "SyncState", "Sync", 's' },
  { "LastSync", "Last sync", 'T' },
  { "LastSyncError", "Last sync error", 's' },
  { "SyncDeadline", "Sync deadline", 'T' },
};

/* The register's properties; NULL with the failure reported and its exit
 * code in *@rc. */
static GVariantDict *
register_properties (Ctl *ctl, int *rc)
{
  g_autoptr (GError) error = NULL;
  GVariantDict *props = get_all (ctl, REGISTER_PATH, REGISTER_IFACE, &error);
  if (props == NULL)
    *rc = report_gerror (ctl, error);
  return props;
}

/* A command that takes no arguments and shows the register's properties:
 * those properties, or NULL with the exit code in *@rc. */
static GVariantDict *
register_command (Ctl *ctl, int argc, char **argv, int *rc)
{
  if (!parse_command (ctl, NULL, &argc, &argv, rc) || !expect_args (ctl, argc, 0, rc))
    return NULL;
  return register_properties (ctl, rc);
}

/* Property @i of the register as people read it. */
static char *
register_field_text (GVariantDict *props, gsize i)
{
  const char *p = register_fields[i].property;
  const char *currency = dict_str (props, "Currency");
  switch (register_fields[i].type) {
  case 's': return g_strdup (*dict_str (props, p) ? dict_str (props, p) : "-");
  case 'x': return g_strstrip (tally_amount_format (dict_x (props, p), currency));
  case 't': return g_strdup_printf ("%" G_GUINT64_FORMAT, dict_t (props, p));
  case 'T': return format_time (dict_t (props, p));
  case 'D': return format_duration (dict_t (props, p));
  case 'u': return g_strdup_printf ("%u", dict_u (props, p));
  case 'b': return g_strdup (dict_b (props, p) ? "yes" : "no");
  default: g_assert_not_reached ();
  }
}

int
cmd_info (Ctl *ctl, int argc, char **argv)
{
  int rc;
  g_autoptr (GVariantDict) props = register_command (ctl, argc, argv, &rc);
  if (props == NULL)
    return rc;
  const char *names[G_N_ELEMENTS (register_fields) + 1] = { NULL };
  for (gsize i = 0; i < G_N_ELEMENTS (register_fields); i++)
    names[i] = register_fields[i].property;
  g_autoptr (GArray) shown = NULL;
  if (!select_fields (ctl, names, G_N_ELEMENTS (register_fields), &shown, &rc))
    return rc;
  if (ctl->json && ctl->fields == NULL) {
    print_json_dict (props);
    return EXIT_OK;
  }

  GVariantDict picked;
  g_variant_dict_init (&picked, NULL);
  for (guint k = 0; k < shown->len; k++) {
    gsize i = g_array_index (shown, guint, k);
    g_autofree char *text = register_field_text (props, i);
    g_autoptr (GVariant) value = g_variant_dict_lookup_value (props, names[i], NULL);
    if (ctl->json) {
      if (value != NULL)
        g_variant_dict_insert_value (&picked, names[i], value);
    } else if (ctl->terse) {
      g_autoptr (GString) row = g_string_new (NULL);
      terse_append (row, text);
      g_print ("%s\n", row->str);
    } else {
      g_autofree char *label = g_strdup_printf ("%s:", register_fields[i].label);
      g_print ("%-22s %s\n", label, text);
    }
  }
  if (ctl->json)
    print_json_dict (&picked);
  else
    g_variant_dict_clear (&picked);
  return EXIT_OK;
}

/* The balance in @props, the register's properties, after @prefix. */
static int
print_balance_of (Ctl *ctl, GVariantDict *props, const char *prefix)
{
  gint64 balance = dict_x (props, "Balance");
  const char *currency = dict_str (props, "Currency");
  g_autofree char *text = tally_amount_format (balance, currency);
  if (ctl->terse) {
    g_print ("%s\n", g_strstrip (text));
  } else if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "Balance", "x", balance);
    g_variant_dict_insert (&dict, "Currency", "s", currency);
    g_variant_dict_insert (&dict, "Formatted", "s", g_strstrip (text));
    print_json_dict (&dict);
  } else if (*dict_str (props, "IssuerKey") == '\0') {
    /* A fresh install: say what comes next. */
    g_print ("%s%s (no issuer yet: tallyctl issuer FILE, from tally-issuer key --out)\n", prefix,
             g_strstrip (text));
  } else if (*currency == '\0') {
    g_print ("%s%s (no certificate yet: tallyctl key, then tallyctl certificate FILE)\n", prefix,
             g_strstrip (text));
  } else {
    g_print ("%s%s\n", prefix, g_strstrip (text));
  }
  return EXIT_OK;
}

static int
print_balance (Ctl *ctl, const char *prefix)
{
  int rc;
  g_autoptr (GVariantDict) props = register_properties (ctl, &rc);
  return props != NULL ? print_balance_of (ctl, props, prefix) : rc;
}

int
cmd_balance (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  return print_balance (ctl, "");
}

int
cmd_key (Ctl *ctl, int argc, char **argv)
{
  int rc;
  g_autoptr (GVariantDict) props = register_command (ctl, argc, argv, &rc);
  if (props == NULL)
    return rc;
  if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "PublicKey", "s", dict_str (props, "PublicKey"));
    g_variant_dict_insert (&dict, "RegisterId", "s", dict_str (props, "RegisterId"));
    print_json_dict (&dict);
  } else {
    g_print ("%s\n", dict_str (props, "PublicKey"));
  }
  return EXIT_OK;
}

/* --- history --- */

/* First 8 hex digits of a register id: what people compare. */
#define SHORT_ID_CHARS 8

/* "Bob's Bakery (1a2b3c4d)", or the short id alone without a certified
 * name; "" without a peer. */
static char *
history_peer (GVariantDict *d)
{
  const char *id = dict_str (d, "Peer");
  const char *name = dict_str (d, "PeerName");
  g_autofree char *short_id = g_strndup (id, SHORT_ID_CHARS);
  if (*name == '\0')
    return g_steal_pointer (&short_id);
  return g_strdup_printf ("%s (%s)", name, short_id);
}

static char *
history_time (guint64 t, gboolean utc)
{
  g_autoptr (GDateTime) dt =
    utc ? g_date_time_new_from_unix_utc ((gint64) t) : g_date_time_new_from_unix_local ((gint64) t);
  if (dt == NULL)
    return g_strdup ("?");
  return g_date_time_format (dt, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S");
}

/* RFC 4180: quoted when it holds a comma, quote or line break, quotes
 * doubled.  A field a spreadsheet would take for a formula (=, +, -, @)
 * gets a leading apostrophe first: names and memos come from other people. */
static void
csv_field (GString *out, const char *field, gboolean last)
{
  gboolean formula = field[0] != '\0' && strchr ("=+-@", field[0]) != NULL;
  g_autofree char *safe = formula ? g_strconcat ("'", field, NULL) : g_strdup (field);
  if (strpbrk (safe, ",\"\r\n") == NULL) {
    g_string_append (out, safe);
  } else {
    g_string_append_c (out, '"');
    for (const char *p = safe; *p != '\0'; p++) {
      if (*p == '"')
        g_string_append_c (out, '"');
      g_string_append_c (out, *p);
    }
    g_string_append_c (out, '"');
  }
  g_string_append (out, last ? "\r\n" : ",");
}

/* The number of a history line: a load's voucher sequence, else the
 * counter. */
static guint64
history_number (GVariantDict *d)
{
  return strcmp (dict_str (d, "Kind"), "load") == 0 ? dict_t (d, "Sequence")
                                                    : dict_t (d, "Counter");
}

static void
history_csv (GVariant *entries, const char *currency)
{
  g_autoptr (GString) out = g_string_new (NULL);
  static const char *const header[] = {
    "time", "time_utc", "kind",    "state", "amount",     "currency",
    "peer", "peer_id",  "counter", "memo",  "receipt_id",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (header); i++)
    csv_field (out, header[i], i + 1 == G_N_ELEMENTS (header));
  for (gsize i = 0; i < g_variant_n_children (entries); i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    g_autofree char *local = history_time (dict_t (d, "Time"), FALSE);
    g_autofree char *utc = history_time (dict_t (d, "Time"), TRUE);
    g_autofree char *amount = tally_amount_format_value (dict_x (d, "Amount"), currency);
    g_autofree char *peer = history_peer (d);
    g_autofree char *number = g_strdup_printf ("%" G_GUINT64_FORMAT, history_number (d));
    const char *fields[] = {
      local,
      utc,
      dict_str (d, "Kind"),
      dict_str (d, "State"),
      amount,
      currency,
      peer,
      dict_str (d, "Peer"),
      number,
      dict_str (d, "Memo"),
      dict_str (d, "ReceiptId"),
    };
    for (gsize f = 0; f < G_N_ELEMENTS (fields); f++)
      csv_field (out, fields[f], f + 1 == G_N_ELEMENTS (fields));
  }
  fwrite (out->str, 1, out->len, stdout);
}

/* The keys of Register1.GetHistory (Amount in minor units, Time in Unix
 * seconds), and for people: TimeUtc, Value ("12.50"), Currency and
 * PeerLabel (name and short id). */
static void
history_json (GVariant *entries, const char *currency)
{
  GVariantBuilder builder;
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (gsize i = 0; i < g_variant_n_children (entries); i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    g_autofree char *utc = history_time (dict_t (d, "Time"), TRUE);
    g_autofree char *value = tally_amount_format_value (dict_x (d, "Amount"), currency);
    g_variant_dict_insert (d, "TimeUtc", "s", utc);
    g_variant_dict_insert (d, "Value", "s", value);
    g_variant_dict_insert (d, "Currency", "s", currency);
    if (*dict_str (d, "Peer") != '\0') {
      g_autofree char *peer = history_peer (d);
      g_variant_dict_insert (d, "PeerLabel", "s", peer);
    }
    g_variant_builder_add_value (&builder, g_variant_dict_end (d));
  }
  g_autoptr (GVariant) all = g_variant_ref_sink (g_variant_builder_end (&builder));
  g_autoptr (GString) out = g_string_new (NULL);
  json_value (out, all);
  g_print ("%s\n", out->str);
}

static void
history_table (GVariant *entries, const char *currency)
{
  gsize n = g_variant_n_children (entries);
  if (n == 0) {
    g_print ("No history.\n");
    return;
  }
  g_print ("%-19s %-8s %-12s %14s  %-6s %s\n", "Time", "Kind", "State", "Amount", "#",
           "Peer / memo");
  for (gsize i = 0; i < n; i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    /* Local time, and the certified name with the short id beside it. */
    g_autofree char *when = history_time (dict_t (d, "Time"), FALSE);
    g_autofree char *amount = tally_amount_format (dict_x (d, "Amount"), currency);
    g_autofree char *peer = history_peer (d);
    const char *memo = dict_str (d, "Memo");
    g_print ("%-19s %-8s %-12s %14s  %-6" G_GUINT64_FORMAT " %s%s%s\n", when, dict_str (d, "Kind"),
             dict_str (d, "State"), g_strstrip (amount), history_number (d), peer,
             *memo && *peer ? " " : "", memo);
  }
}

/* The columns --fields picks from, in their default order. */
static const char *const history_columns[] = {
  "time", "kind", "state", "amount", "number", "peer", "memo", NULL,
};

/* --terse and --fields: the chosen columns; with --terse no header and
 * fields split by ':', else a header and two spaces between fields. */
static int
history_fields (Ctl *ctl, GVariant *entries, const char *currency)
{
  int rc;
  g_autoptr (GArray) shown = NULL;
  if (!select_fields (ctl, history_columns, G_N_ELEMENTS (history_columns) - 1, &shown, &rc))
    return rc;
  g_autoptr (GString) row = g_string_new (NULL);
  for (guint k = 0; !ctl->terse && k < shown->len; k++)
    g_string_append_printf (row, "%s%s", k ? "  " : "",
                            history_columns[g_array_index (shown, guint, k)]);
  if (row->len > 0)
    g_print ("%s\n", row->str);
  for (gsize i = 0; i < g_variant_n_children (entries); i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    g_autofree char *amount = tally_amount_format (dict_x (d, "Amount"), currency);
    char *values[] = {
      history_time (dict_t (d, "Time"), FALSE),
      g_strdup (dict_str (d, "Kind")),
      g_strdup (dict_str (d, "State")),
      g_strdup (g_strstrip (amount)),
      g_strdup_printf ("%" G_GUINT64_FORMAT, history_number (d)),
      history_peer (d),
      g_strdup (dict_str (d, "Memo")),
    };
    G_STATIC_ASSERT (G_N_ELEMENTS (values) == G_N_ELEMENTS (history_columns) - 1);
    g_string_truncate (row, 0);
    for (guint k = 0; k < shown->len; k++) {
      const char *v = values[g_array_index (shown, guint, k)];
      g_string_append (row, k == 0 ? "" : ctl->terse ? ":" : "  ");
      if (ctl->terse)
        terse_append (row, v);
      else
        g_string_append (row, v);
    }
    g_print ("%s\n", row->str);
    for (gsize v = 0; v < G_N_ELEMENTS (values); v++)
      g_free (values[v]);
  }
  return EXIT_OK;
}

int
cmd_history (Ctl *ctl, int argc, char **argv)
{
  int limit = 20, rc;
  gboolean csv = FALSE;
  const GOptionEntry entries[] = {
    { "limit", 'n', 0, G_OPTION_ARG_INT, &limit, "Show at most N entries, newest first (0: all)",
      "N" },
    { "csv", 0, 0, G_OPTION_ARG_NONE, &csv,
      "Comma-separated values for bookkeeping: local and UTC time, kind, state, amount, "
      "currency, peer, counter, memo, receipt id",
      NULL },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  if (limit < 0)
    return usage_error (ctl, "--limit must be 0 or more");
  if (csv && ctl->json)
    return usage_error (ctl, "--csv and --json: choose one");
  if ((csv || ctl->json) && (ctl->terse || ctl->fields != NULL))
    return usage_error (ctl, "--terse and --fields shape the table, not --csv or --json");

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) currency_reply =
    call (ctl, REGISTER_PATH, PROPERTIES_IFACE, "Get",
          g_variant_new ("(ss)", REGISTER_IFACE, "Currency"), G_VARIANT_TYPE ("(v)"), &error);
  if (currency_reply == NULL)
    return report_gerror (ctl, error);
  g_autoptr (GVariant) currency_v = NULL;
  g_variant_get (currency_reply, "(v)", &currency_v);
  const char *currency = g_variant_get_string (currency_v, NULL);

  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "GetHistory", g_variant_new ("(u)", (guint32) limit),
          G_VARIANT_TYPE ("(aa{sv})"), &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  g_autoptr (GVariant) entries_v = g_variant_get_child_value (reply, 0);

  if (ctl->json) {
    history_json (entries_v, currency);
    return EXIT_OK;
  }
  if (csv) {
    history_csv (entries_v, currency);
    return EXIT_OK;
  }

  if (ctl->terse || ctl->fields != NULL)
    return history_fields (ctl, entries_v, currency);
  history_table (entries_v, currency);
  return EXIT_OK;
}

/* --- load, certificate, apply --- */

static int
send_file (Ctl *ctl, int argc, char **argv, const char *method, const char *done)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;

  g_autoptr (GBytes) bytes = NULL;
  if (!read_file (ctl, argv[1], &bytes, &rc))
    return rc;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, method, g_variant_new ("(@ay)", bytes_variant (bytes)),
          G_VARIANT_TYPE_UNIT, &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  if (!ctl->json)
    g_print ("%s\n", done);
  return print_balance (ctl, "Balance: ");
}

int
cmd_load (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "LoadVoucher", "Voucher loaded.");
}

int
cmd_issuer (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "SetIssuer", "Issuer set.");
}

int
cmd_certificate (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "InstallCertificate", "Certificate installed.");
}

int
cmd_apply (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "ApplyResult", "Reconciliation result applied.");
}

/* --- sync --- */

/* How long tallyctl waits for Sync: tallyd gives each request 30 s and
 * sends a bundle up to four times. */
#define SYNC_CALL_TIMEOUT_MS (180 * 1000)

int
cmd_sync (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;

  g_autoptr (GError) error = NULL;
  gboolean interactive = isatty (STDIN_FILENO);
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
    ctl->bus, ctl->owner, REGISTER_PATH, REGISTER_IFACE, "Sync", NULL, G_VARIANT_TYPE_UNIT,
    interactive ? G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION : G_DBUS_CALL_FLAGS_NONE,
    interactive ? G_MAXINT : SYNC_CALL_TIMEOUT_MS, NULL, &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  if (!ctl->json)
    g_print ("Synced with the issuer.\n");
  g_autoptr (GVariantDict) props = register_properties (ctl, &rc);
  if (props == NULL)
    return rc;
  rc = print_balance_of (ctl, props, "Balance: ");
  if (rc != EXIT_OK || !dict_b (props, "Revoked"))
    return rc;
  /* The sync went through, but the register is of no use offline any
   * more: its owner must hear it, and scripts must not take it as fine. */
  g_printerr ("tallyctl: the issuer has revoked this register: payees refuse it from now on "
              "(the issuer's audit names the reason)\n");
  return EXIT_FAIL;
}

/* Calls @method with @args, waiting as long as a sync may take. */
static GVariant *
call_online (Ctl *ctl, const char *method, GVariant *args, GError **error)
{
  gboolean interactive = isatty (STDIN_FILENO);
  return g_dbus_connection_call_sync (
    ctl->bus, ctl->owner, REGISTER_PATH, REGISTER_IFACE, method, args, G_VARIANT_TYPE_UNIT,
    interactive ? G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION : G_DBUS_CALL_FLAGS_NONE,
    interactive ? G_MAXINT : SYNC_CALL_TIMEOUT_MS, NULL, error);
}

/* The token in @path: 64 hex digits and at most white space around them. */
static char *
read_token (Ctl *ctl, const char *path, int *rc)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &text, &len, &error)) {
    *rc = usage_error (ctl, "--token-file: %s", error->message);
    return NULL;
  }
  g_strstrip (text);
  gboolean ok = strlen (text) == 64;
  for (const char *p = text; ok && *p != '\0'; p++)
    ok = g_ascii_isxdigit (*p);
  if (!ok) {
    sodium_memzero (text, len);
    g_free (text);
    *rc = usage_error (ctl, "--token-file %s: expected the account token, 64 hex digits", path);
    return NULL;
  }
  return text;
}

int
cmd_enroll (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *account = NULL, *token_file = NULL;
  int rc;
  const GOptionEntry entries[] = {
    { "account", 'a', 0, G_OPTION_ARG_STRING, &account, "The issuer account to enrol with",
      "NAME" },
    { "token-file", 'T', 0, G_OPTION_ARG_FILENAME, &token_file,
      "File holding the account's token (64 hex digits)", "FILE" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  if (account == NULL || token_file == NULL)
    return usage_error (ctl, "enroll needs --account NAME and --token-file FILE");
  char *token = read_token (ctl, token_file, &rc);
  if (token == NULL)
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call_online (ctl, "Enroll", g_variant_new ("(ss)", account, token), &error);
  sodium_memzero (token, strlen (token));
  g_free (token);
  if (reply == NULL)
    return report_gerror (ctl, error);
  if (!ctl->json)
    g_print ("Enrolled with account %s.\n", account);
  return print_balance (ctl, "Balance: ");
}

int
cmd_topup (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  gint64 amount;
  g_autoptr (GError) error = NULL;
  /* No amount in any currency is a usage error before tallyd is asked;
   * then the register's currency says how many decimals it may have. */
  if (!tally_amount_parse_any (argv[1], &error))
    return usage_error (ctl, "%s", error->message);
  g_autoptr (GVariantDict) props = register_properties (ctl, &rc);
  if (props == NULL)
    return rc;
  /* No certificate yet, no currency: tallyd says what is missing. */
  const char *currency = dict_str (props, "Currency");
  if (!tally_amount_parse (argv[1], *currency ? currency : NULL, &amount, &error))
    return usage_error (ctl, "%s", error->message);

  g_autoptr (GVariant) reply =
    call_online (ctl, "Topup", g_variant_new ("(t)", (guint64) amount), &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  if (!ctl->json)
    g_print ("Voucher bought and loaded.\n");
  return print_balance (ctl, "Balance: ");
}

/* --- export, defund --- */

static int
write_reply (Ctl *ctl, GVariant *reply, int fd, const char *path, const char *what)
{
  g_autoptr (GVariant) v = g_variant_get_child_value (reply, 0);
  gsize len;
  const guint8 *data = g_variant_get_fixed_array (v, &len, 1);
  gsize done = 0;
  while (done < len) {
    ssize_t n = write (fd, data + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_autofree char *msg = g_strdup_printf ("cannot write %s: %s", path, g_strerror (errno));
      return report_error (ctl, tally_error_to_name (TALLY_ERROR_STORAGE), msg);
    }
    done += (gsize) n;
  }
  gboolean to_stdout = strcmp (path, "-") == 0;
  /* A pipe cannot be synced; a file redirected to can. */
  if (fsync (fd) != 0 && !(to_stdout && (errno == EINVAL || errno == EROFS))) {
    g_autofree char *msg = g_strdup_printf ("cannot sync %s: %s", path, g_strerror (errno));
    return report_error (ctl, tally_error_to_name (TALLY_ERROR_STORAGE), msg);
  }
  if (to_stdout) {
    /* Standard output carries the bytes: the line goes to stderr. */
    g_printerr ("%s written to standard output (%zu bytes).\n", what, len);
  } else if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "File", "s", path);
    g_variant_dict_insert (&dict, "Bytes", "t", (guint64) len);
    print_json_dict (&dict);
  } else {
    g_print ("%s written to %s (%zu bytes).\n", what, path, len);
  }
  return EXIT_OK;
}

/* Opens @path before the call, so a value-moving reply always has a
 * place to go.  @exclusive refuses to overwrite. */
static int
open_output (Ctl *ctl, const char *path, gboolean exclusive, int *rc)
{
  int fd = g_open (path, O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC), 0600);
  if (fd < 0) {
    g_autofree char *msg = g_strdup_printf ("cannot create %s: %s", path, g_strerror (errno));
    *rc = report_error (ctl, tally_error_to_name (TALLY_ERROR_STORAGE), msg);
  }
  return fd;
}

/* Calls @method and writes the bytes it returns (@what) to the file
 * argv[1]; a failed call leaves no file behind. */
static int
receive_file (Ctl *ctl,
              int argc,
              char **argv,
              const char *method,
              gboolean exclusive,
              const char *what)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  gboolean to_stdout = strcmp (argv[1], "-") == 0;
  if (to_stdout && exclusive)
    /* A closed pipe would lose the only proof of the value moved online. */
    return usage_error (ctl, "the defund record goes to a new file, never to standard output");
  if (to_stdout && ctl->json)
    return usage_error (ctl, "--json and - both want standard output: choose one");
  int fd = to_stdout ? STDOUT_FILENO : open_output (ctl, argv[1], exclusive, &rc);
  if (fd < 0)
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, method, NULL, G_VARIANT_TYPE ("(ay)"), &error);
  rc = reply ? write_reply (ctl, reply, fd, argv[1], what) : report_gerror (ctl, error);
  if (to_stdout)
    return rc;
  close (fd);
  if (reply == NULL)
    g_unlink (argv[1]);
  return rc;
}

int
cmd_export (Ctl *ctl, int argc, char **argv)
{
  return receive_file (ctl, argc, argv, "ExportBundle", FALSE, "Reconciliation bundle");
}

int
cmd_defund (Ctl *ctl, int argc, char **argv)
{
  /* The record is the only proof of the value moved online: never
   * overwrite one, and have the file before the register closes. */
  return receive_file (ctl, argc, argv, "Defund", TRUE, "Defund record");
}
