/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tally-core.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"
#include "tally-hex.h"
#include "tally-json.h"

#define EXIT_OK      0
#define EXIT_FAIL    1
#define EXIT_USAGE   2

#define REGISTER_PATH        "/org/tally/register"
#define AGENT_MANAGER_PATH   "/org/tally"
#define REGISTER_IFACE       "org.tally.Register1"
#define AGENT_MANAGER_IFACE  "org.tally.AgentManager1"
#define PAYMENT_IFACE        "org.tally.Payment1"
#define PROPERTIES_IFACE     "org.freedesktop.DBus.Properties"

typedef struct _Ctl Ctl;

typedef struct
{
  const char *name;
  const char *args;
  const char *summary;
  const char *example;
  int (*run) (Ctl *ctl, int argc, char **argv);
} Command;

struct _Ctl
{
  GDBusConnection *bus;
  const char *bus_label;
  const char *name;
  char *owner; /* unique name of the tallyd we talk to */
  gboolean json;
  const Command *command;

  /* Following a payment (request, pay). */
  GMainLoop *loop;
  int exit_code;
  char *payment_path;
  GVariantDict *payment;
  gboolean code_printed;
  guint props_subscription;
  guint owner_watch;
  gboolean cancel_sent;

  /* Following the payments of a request for several payers. */
  GHashTable *request_payments; /* path -> GVariantDict */
  char *request_address;
  guint payers;
  guint payers_done;
  guint payers_failed;
  gboolean request_over; /* a payment failed before any payer took it */

  /* The agent of pay. */
  gboolean yes;
  TallyDBusAgent1 *agent;
  char *agent_path;
  GDBusMethodInvocation *pending_confirm;
  int tty_fd;
  gboolean tty_owned;
  guint tty_watch;
  GString *tty_line;
};

/* --- output --- */

static void json_value (GString *out, GVariant *value);

static void
json_dict (GString *out, GVariant *dict)
{
  GVariantIter iter;
  GVariant *entry;
  gboolean first = TRUE;

  g_string_append_c (out, '{');
  g_variant_iter_init (&iter, dict);
  while ((entry = g_variant_iter_next_value (&iter)) != NULL) {
    g_autoptr (GVariant) key = g_variant_get_child_value (entry, 0);
    g_autoptr (GVariant) val = g_variant_get_child_value (entry, 1);
    if (!first)
      g_string_append_c (out, ',');
    first = FALSE;
    if (g_variant_is_of_type (key, G_VARIANT_TYPE_STRING)) {
      tally_json_append_string (out, g_variant_get_string (key, NULL));
    } else {
      g_autofree char *k = g_variant_print (key, FALSE);
      tally_json_append_string (out, k);
    }
    g_string_append_c (out, ':');
    json_value (out, val);
    g_variant_unref (entry);
  }
  g_string_append_c (out, '}');
}

static void
json_value (GString *out, GVariant *value)
{
  const GVariantType *type = g_variant_get_type (value);

  switch (g_variant_classify (value)) {
  case G_VARIANT_CLASS_BOOLEAN:
    g_string_append (out, g_variant_get_boolean (value) ? "true" : "false");
    return;
  case G_VARIANT_CLASS_BYTE:
    g_string_append_printf (out, "%u", g_variant_get_byte (value));
    return;
  case G_VARIANT_CLASS_INT16:
    g_string_append_printf (out, "%d", g_variant_get_int16 (value));
    return;
  case G_VARIANT_CLASS_UINT16:
    g_string_append_printf (out, "%u", g_variant_get_uint16 (value));
    return;
  case G_VARIANT_CLASS_INT32:
    g_string_append_printf (out, "%d", g_variant_get_int32 (value));
    return;
  case G_VARIANT_CLASS_UINT32:
    g_string_append_printf (out, "%u", g_variant_get_uint32 (value));
    return;
  case G_VARIANT_CLASS_INT64:
    g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (value));
    return;
  case G_VARIANT_CLASS_UINT64:
    g_string_append_printf (out, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
    return;
  case G_VARIANT_CLASS_DOUBLE:
    g_string_append_printf (out, "%.17g", g_variant_get_double (value));
    return;
  case G_VARIANT_CLASS_STRING:
  case G_VARIANT_CLASS_OBJECT_PATH:
  case G_VARIANT_CLASS_SIGNATURE:
    tally_json_append_string (out, g_variant_get_string (value, NULL));
    return;
  case G_VARIANT_CLASS_VARIANT: {
    g_autoptr (GVariant) inner = g_variant_get_variant (value);
    json_value (out, inner);
    return;
  }
  case G_VARIANT_CLASS_ARRAY:
    if (g_variant_type_equal (type, G_VARIANT_TYPE_BYTESTRING)) {
      gsize len;
      const guint8 *data = g_variant_get_fixed_array (value, &len, 1);
      g_autofree char *hex = tally_hex_encode (data ? data : (const guint8 *) "", len);
      tally_json_append_string (out, hex);
      return;
    }
    if (g_variant_type_is_dict_entry (g_variant_type_element (type))) {
      json_dict (out, value);
      return;
    }
    g_string_append_c (out, '[');
    for (gsize i = 0; i < g_variant_n_children (value); i++) {
      g_autoptr (GVariant) child = g_variant_get_child_value (value, i);
      if (i > 0)
        g_string_append_c (out, ',');
      json_value (out, child);
    }
    g_string_append_c (out, ']');
    return;
  case G_VARIANT_CLASS_MAYBE:
  case G_VARIANT_CLASS_TUPLE:
  case G_VARIANT_CLASS_DICT_ENTRY:
  case G_VARIANT_CLASS_HANDLE:
    break;
  }
  g_autofree char *text = g_variant_print (value, FALSE);
  tally_json_append_string (out, text);
}

/* Prints one JSON object from an a{sv}. */
static void
print_json_dict (GVariantDict *dict)
{
  g_autoptr (GVariant) v = g_variant_ref_sink (g_variant_dict_end (dict));
  g_autoptr (GString) out = g_string_new (NULL);
  json_value (out, v);
  g_print ("%s\n", out->str);
}

/* Progress lines go to stdout, or stderr when stdout carries JSON. */
G_GNUC_PRINTF (2, 3)
static void
progress (Ctl *ctl, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *line = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (ctl->json)
    g_printerr ("%s\n", line);
  else
    g_print ("%s\n", line);
}

static int
report_error (Ctl *ctl, const char *name, const char *message)
{
  if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "Error", "s", name);
    g_variant_dict_insert (&dict, "ErrorMessage", "s", message);
    print_json_dict (&dict);
  } else {
    g_printerr ("tallyctl %s: %s: %s\n", ctl->command ? ctl->command->name : "", name, message);
  }
  return EXIT_FAIL;
}

/* Prints a failed call's D-Bus error name and message. */
static int
report_gerror (Ctl *ctl, const GError *error)
{
  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  g_autofree char *message = tally_dbus_error_get_message (error);
  const char *name = remote;
  if (name == NULL)
    name = tally_dbus_error_name_for (error);
  return report_error (ctl, name, message);
}

static int
usage_error (Ctl *ctl, const char *format, ...) G_GNUC_PRINTF (2, 3);

static int
usage_error (Ctl *ctl, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (ctl->command != NULL)
    g_printerr ("tallyctl %s: %s\nTry tallyctl %s --help.\n", ctl->command->name, msg,
                ctl->command->name);
  else
    g_printerr ("tallyctl: %s\nTry tallyctl --help.\n", msg);
  return EXIT_USAGE;
}

static char *
format_time (guint64 t)
{
  if (t == 0)
    return g_strdup ("never");
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc ((gint64) t);
  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S UTC") : g_strdup ("?");
}

/* --- calls --- */

static GVariant *
call (Ctl *ctl,
      const char *path,
      const char *iface,
      const char *method,
      GVariant *args,
      const GVariantType *reply_type,
      GError **error)
{
  /* At a terminal polkit may ask for a password (docs/dbus-api.md), which
   * takes longer than the usual reply timeout. */
  gboolean interactive = isatty (STDIN_FILENO);
  return g_dbus_connection_call_sync (
    ctl->bus, ctl->owner, path, iface, method, args, reply_type,
    interactive ? G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION : G_DBUS_CALL_FLAGS_NONE,
    interactive ? G_MAXINT : -1, NULL, error);
}

static GVariantDict *
get_all (Ctl *ctl, const char *path, const char *iface, GError **error)
{
  g_autoptr (GVariant) reply = call (ctl, path, PROPERTIES_IFACE, "GetAll",
                                     g_variant_new ("(s)", iface), G_VARIANT_TYPE ("(a{sv})"), error);
  if (reply == NULL)
    return NULL;
  g_autoptr (GVariant) dict = g_variant_get_child_value (reply, 0);
  return g_variant_dict_new (dict);
}

static const char *
dict_str (GVariantDict *d, const char *key)
{
  const char *s = NULL;
  if (!g_variant_dict_lookup (d, key, "&s", &s))
    return "";
  return s;
}

/* A payment's other side for people: "Bob's Bakery (f0cc...)" when its
 * certificate names it, else its hex id. */
static char *
peer_label (GVariantDict *p)
{
  const char *id = dict_str (p, "Peer");
  const char *name = dict_str (p, "PeerName");
  if (*name == '\0' || g_str_has_prefix (id, name))
    return g_strdup (id);
  return g_strdup_printf ("%s (%s)", name, id);
}

static gint64
dict_x (GVariantDict *d, const char *key)
{
  gint64 v = 0;
  g_variant_dict_lookup (d, key, "x", &v);
  return v;
}

static guint64
dict_t (GVariantDict *d, const char *key)
{
  guint64 v = 0;
  g_variant_dict_lookup (d, key, "t", &v);
  return v;
}

static guint32
dict_u (GVariantDict *d, const char *key)
{
  guint32 v = 0;
  g_variant_dict_lookup (d, key, "u", &v);
  return v;
}

static gboolean
dict_b (GVariantDict *d, const char *key)
{
  gboolean v = FALSE;
  g_variant_dict_lookup (d, key, "b", &v);
  return v;
}

static gboolean
read_file (Ctl *ctl, const char *path, GBytes **out, int *exit_code)
{
  g_autoptr (GError) error = NULL;
  char *data;
  gsize len;
  if (!g_file_get_contents (path, &data, &len, &error)) {
    *exit_code = report_error (ctl, tally_error_to_name (TALLY_ERROR_NOT_FOUND), error->message);
    return FALSE;
  }
  *out = g_bytes_new_take (data, len);
  return TRUE;
}

static GVariant *
bytes_variant (GBytes *bytes)
{
  return g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE);
}

/* Parses a command's options; argv[0] is the command name. */
static gboolean
parse_command (Ctl *ctl, const GOptionEntry *entries, int *argc, char ***argv, int *exit_code)
{
  g_autofree char *param = g_strdup_printf ("%s%s%s", ctl->command->name,
                                            ctl->command->args[0] ? " " : "", ctl->command->args);
  g_autoptr (GOptionContext) context = g_option_context_new (param);
  g_autofree char *summary = g_strdup_printf ("%s\n\nExample:\n  %s", ctl->command->summary,
                                              ctl->command->example);
  g_option_context_set_summary (context, summary);
  if (entries != NULL)
    g_option_context_add_main_entries (context, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (context, argc, argv, &error)) {
    *exit_code = usage_error (ctl, "%s", error->message);
    return FALSE;
  }
  return TRUE;
}

static gboolean
expect_args (Ctl *ctl, int argc, int n, int *exit_code)
{
  /* argv[0] is the command. */
  if (argc - 1 < n) {
    *exit_code = usage_error (ctl, "missing argument: %s", ctl->command->args);
    return FALSE;
  }
  if (argc - 1 > n) {
    *exit_code = usage_error (ctl, "too many arguments");
    return FALSE;
  }
  return TRUE;
}

/* --- info, balance, key --- */

static const struct
{
  const char *property;
  const char *label;
  char type; /* s, x (amount), t, T (time), u, b */
} register_fields[] = {
  { "RegisterId", "Register", 's' },
  { "PublicKey", "Public key", 's' },
  { "Balance", "Balance", 'x' },
  { "Currency", "Currency", 's' },
  { "MaxPayment", "Max payment", 'x' },
  { "BalanceCap", "Balance cap", 'x' },
  { "MaxOfflinePayments", "Max offline payments", 'u' },
  { "MaxOfflineSeconds", "Max offline seconds", 't' },
  { "OfflinePayments", "Offline payments", 'u' },
  { "CertificateExpiry", "Certificate expiry", 'T' },
  { "LastReconciliation", "Last reconciliation", 'T' },
  { "RevocationSerial", "Revocation serial", 't' },
  { "Closed", "Closed", 'b' },
  { "ListenAddress", "Listen address", 's' },
};

static int
cmd_info (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) props = get_all (ctl, REGISTER_PATH, REGISTER_IFACE, &error);
  if (props == NULL)
    return report_gerror (ctl, error);
  if (ctl->json) {
    print_json_dict (props);
    return EXIT_OK;
  }

  const char *currency = dict_str (props, "Currency");
  for (gsize i = 0; i < G_N_ELEMENTS (register_fields); i++) {
    const char *p = register_fields[i].property;
    g_autofree char *text = NULL;
    switch (register_fields[i].type) {
    case 's': text = g_strdup (*dict_str (props, p) ? dict_str (props, p) : "-"); break;
    case 'x': text = g_strstrip (tally_amount_format (dict_x (props, p), currency)); break;
    case 't': text = g_strdup_printf ("%" G_GUINT64_FORMAT, dict_t (props, p)); break;
    case 'T': text = format_time (dict_t (props, p)); break;
    case 'u': text = g_strdup_printf ("%u", dict_u (props, p)); break;
    case 'b': text = g_strdup (dict_b (props, p) ? "yes" : "no"); break;
    default: g_assert_not_reached ();
    }
    g_autofree char *label = g_strdup_printf ("%s:", register_fields[i].label);
    g_print ("%-22s %s\n", label, text);
  }
  return EXIT_OK;
}

static int
print_balance (Ctl *ctl, const char *prefix)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) props = get_all (ctl, REGISTER_PATH, REGISTER_IFACE, &error);
  if (props == NULL)
    return report_gerror (ctl, error);

  gint64 balance = dict_x (props, "Balance");
  const char *currency = dict_str (props, "Currency");
  g_autofree char *text = tally_amount_format (balance, currency);
  if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "Balance", "x", balance);
    g_variant_dict_insert (&dict, "Currency", "s", currency);
    g_variant_dict_insert (&dict, "Formatted", "s", g_strstrip (text));
    print_json_dict (&dict);
  } else {
    g_print ("%s%s\n", prefix, g_strstrip (text));
  }
  return EXIT_OK;
}

static int
cmd_balance (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  return print_balance (ctl, "");
}

static int
cmd_key (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) props = get_all (ctl, REGISTER_PATH, REGISTER_IFACE, &error);
  if (props == NULL)
    return report_gerror (ctl, error);
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

static int
cmd_history (Ctl *ctl, int argc, char **argv)
{
  int limit = 20, rc;
  const GOptionEntry entries[] = {
    { "limit", 'n', 0, G_OPTION_ARG_INT, &limit, "Show at most N entries, newest first (0: all)",
      "N" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  if (limit < 0)
    return usage_error (ctl, "--limit must be 0 or more");

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
    /* An array of entries, each with the keys of Register1.GetHistory. */
    g_autoptr (GString) out = g_string_new (NULL);
    json_value (out, entries_v);
    g_print ("%s\n", out->str);
    return EXIT_OK;
  }

  gsize n = g_variant_n_children (entries_v);
  if (n == 0) {
    g_print ("No history.\n");
    return EXIT_OK;
  }
  g_print ("%-23s %-8s %-12s %14s  %-6s %s\n", "Time", "Kind", "State", "Amount", "#", "Peer / memo");
  for (gsize i = 0; i < n; i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries_v, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    const char *kind = dict_str (d, "Kind");
    g_autofree char *when = format_time (dict_t (d, "Time"));
    g_autofree char *amount = tally_amount_format (dict_x (d, "Amount"), currency);
    guint64 number = strcmp (kind, "load") == 0 ? dict_t (d, "Sequence") : dict_t (d, "Counter");
    const char *memo = dict_str (d, "Memo");
    g_print ("%-23s %-8s %-12s %14s  %-6" G_GUINT64_FORMAT " %s%s%s\n", when, kind,
             dict_str (d, "State"), g_strstrip (amount), number, dict_str (d, "Peer"),
             *memo ? " " : "", memo);
  }
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

static int
cmd_load (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "LoadVoucher", "Voucher loaded.");
}

static int
cmd_certificate (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "InstallCertificate", "Certificate installed.");
}

static int
cmd_apply (Ctl *ctl, int argc, char **argv)
{
  return send_file (ctl, argc, argv, "ApplyResult", "Reconciliation result applied.");
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
  if (fsync (fd) != 0) {
    g_autofree char *msg = g_strdup_printf ("cannot sync %s: %s", path, g_strerror (errno));
    return report_error (ctl, tally_error_to_name (TALLY_ERROR_STORAGE), msg);
  }
  if (ctl->json) {
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

static int
cmd_export (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  int fd = open_output (ctl, argv[1], FALSE, &rc);
  if (fd < 0)
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (ctl, REGISTER_PATH, REGISTER_IFACE, "ExportBundle", NULL,
                                     G_VARIANT_TYPE ("(ay)"), &error);
  rc = reply ? write_reply (ctl, reply, fd, argv[1], "Reconciliation bundle")
             : report_gerror (ctl, error);
  close (fd);
  if (reply == NULL)
    g_unlink (argv[1]);
  return rc;
}

static int
cmd_defund (Ctl *ctl, int argc, char **argv)
{
  int rc;
  if (!parse_command (ctl, NULL, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  /* The record is the only proof of the value moved online: never
   * overwrite one, and have the file before the register closes. */
  int fd = open_output (ctl, argv[1], TRUE, &rc);
  if (fd < 0)
    return rc;

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "Defund", NULL, G_VARIANT_TYPE ("(ay)"), &error);
  rc = reply ? write_reply (ctl, reply, fd, argv[1], "Defund record") : report_gerror (ctl, error);
  close (fd);
  if (reply == NULL)
    g_unlink (argv[1]);
  return rc;
}

/* --- following a payment --- */

static void
finish (Ctl *ctl, int exit_code)
{
  ctl->exit_code = exit_code;
  g_main_loop_quit (ctl->loop);
}

static void
payment_outcome (Ctl *ctl)
{
  GVariantDict *p = ctl->payment;
  const char *state = dict_str (p, "State");
  const char *role = dict_str (p, "Role");
  gboolean payer = strcmp (role, "payer") == 0;

  const char *code = dict_str (p, "ComparisonCode");
  if (*code && !ctl->code_printed) {
    ctl->code_printed = TRUE;
    if (!payer)
      progress (ctl, "Comparison code: %s", code);
  }

  gboolean done = strcmp (state, "done") == 0;
  gboolean failed = strcmp (state, "failed") == 0;
  if (!done && !failed)
    return;

  g_autofree char *amount = tally_amount_format (dict_x (p, "Amount"), dict_str (p, "Currency"));
  g_autofree char *peer = peer_label (p);
  if (ctl->json) {
    /* The Payment1 properties, plus its path. */
    g_autoptr (GVariant) all = g_variant_dict_end (p);
    g_variant_ref_sink (all);
    g_variant_dict_unref (ctl->payment);
    ctl->payment = g_variant_dict_new (all);
    GVariantDict dict;
    g_variant_dict_init (&dict, all);
    g_variant_dict_insert (&dict, "Payment", "s", ctl->payment_path);
    print_json_dict (&dict);
  } else if (done && payer && dict_b (p, "Redelivered")) {
    g_print ("Delivered again the earlier payment of %s to %s, counter %" G_GUINT64_FORMAT
             ", which had lost its receipt: it is paid now.  The new request is not paid yet; "
             "pay again.\n",
             g_strstrip (amount), peer, dict_t (p, "Counter"));
  } else if (done && payer) {
    g_print ("Paid %s to %s, counter %" G_GUINT64_FORMAT ".\n", g_strstrip (amount),
             peer, dict_t (p, "Counter"));
  } else if (done && dict_b (p, "Redelivered")) {
    g_print ("Received again the earlier payment of %s from %s, counter %" G_GUINT64_FORMAT
             ", whose receipt had been lost.  This request is still open.\n",
             g_strstrip (amount), peer, dict_t (p, "Counter"));
  } else if (done) {
    g_print ("Received %s from %s, counter %" G_GUINT64_FORMAT ".\n", g_strstrip (amount),
             peer, dict_t (p, "Counter"));
  } else {
    g_printerr ("Payment failed: %s: %s\n", dict_str (p, "Error"), dict_str (p, "ErrorMessage"));
  }
  finish (ctl, done ? EXIT_OK : EXIT_FAIL);
}

static void
merge_properties (Ctl *ctl, GVariant *changed)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  g_variant_iter_init (&iter, changed);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    g_variant_dict_insert_value (ctl->payment, key, value);
}

static void
on_properties_changed (GDBusConnection *bus,
                       const char *sender,
                       const char *path,
                       const char *iface,
                       const char *signal,
                       GVariant *params,
                       gpointer user_data)
{
  Ctl *ctl = user_data;
  const char *changed_iface;
  g_autoptr (GVariant) changed = NULL;
  g_autofree const char **invalidated = NULL;

  if (ctl->payment == NULL || !g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (params, "(&s@a{sv}^a&s)", &changed_iface, &changed, &invalidated);
  if (strcmp (changed_iface, PAYMENT_IFACE) != 0)
    return;
  merge_properties (ctl, changed);
  payment_outcome (ctl);
}

static void
on_owner_vanished (GDBusConnection *bus, const char *name, gpointer user_data)
{
  Ctl *ctl = user_data;
  report_error (ctl, tally_error_to_name (TALLY_ERROR_DISCONNECTED), "tallyd went away");
  finish (ctl, EXIT_FAIL);
}

static gboolean
on_interrupt (gpointer user_data)
{
  Ctl *ctl = user_data;
  if (ctl->payment_path == NULL || ctl->cancel_sent) {
    finish (ctl, EXIT_FAIL);
    return G_SOURCE_CONTINUE;
  }
  /* The failed state, with Cancelled, ends the wait. */
  ctl->cancel_sent = TRUE;
  g_dbus_connection_call (ctl->bus, ctl->owner, ctl->payment_path, PAYMENT_IFACE, "Cancel", NULL,
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
  return G_SOURCE_CONTINUE;
}

/* Follows the payment at @path until done or failed. */
static int
follow_payment (Ctl *ctl, const char *path)
{
  ctl->payment_path = g_strdup (path);
  ctl->props_subscription = g_dbus_connection_signal_subscribe (
    ctl->bus, ctl->owner, PROPERTIES_IFACE, "PropertiesChanged", path, PAYMENT_IFACE,
    G_DBUS_SIGNAL_FLAGS_NONE, on_properties_changed, ctl, NULL);

  /* Read after subscribing: together they miss no change. */
  g_autoptr (GError) error = NULL;
  ctl->payment = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (ctl->payment == NULL)
    return report_gerror (ctl, error);

  ctl->exit_code = -1;
  payment_outcome (ctl);
  if (ctl->exit_code < 0) {
    guint sigint = g_unix_signal_add (SIGINT, on_interrupt, ctl);
    guint sigterm = g_unix_signal_add (SIGTERM, on_interrupt, ctl);
    g_main_loop_run (ctl->loop);
    g_source_remove (sigint);
    g_source_remove (sigterm);
  }
  return ctl->exit_code;
}

/* --- following a request for several payers --- */

static void
request_payment_outcome (Ctl *ctl, const char *path, GVariantDict *p, const char *old_state)
{
  const char *state = dict_str (p, "State");
  gboolean done = strcmp (state, "done") == 0;
  gboolean failed = strcmp (state, "failed") == 0;

  if (!done && !failed)
    return;
  if (old_state != NULL && (strcmp (old_state, "done") == 0 || strcmp (old_state, "failed") == 0))
    return;

  g_autofree char *amount = tally_amount_format (dict_x (p, "Amount"), dict_str (p, "Currency"));
  if (done) {
    ctl->payers_done++;
    g_autofree char *peer = peer_label (p);
    progress (ctl, "%s: received %s from %s, counter %" G_GUINT64_FORMAT " (comparison code %s).",
              path, g_strstrip (amount), peer, dict_t (p, "Counter"),
              dict_str (p, "ComparisonCode"));
  } else {
    ctl->payers_failed++;
    /* Nobody took it: the request waits for no one any more. */
    if (old_state != NULL && strcmp (old_state, "waiting") == 0)
      ctl->request_over = TRUE;
    progress (ctl, "%s: failed: %s: %s", path, dict_str (p, "Error"), dict_str (p, "ErrorMessage"));
  }

  guint finished = ctl->payers_done + ctl->payers_failed;
  gboolean all_finished = TRUE;
  GHashTableIter iter;
  GVariantDict *other;
  g_hash_table_iter_init (&iter, ctl->request_payments);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &other)) {
    const char *s = dict_str (other, "State");
    if (strcmp (s, "done") != 0 && strcmp (s, "failed") != 0)
      all_finished = FALSE;
  }
  if (finished < ctl->payers && !(ctl->request_over && all_finished))
    return;

  if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "Address", "s", ctl->request_address);
    g_variant_dict_insert (&dict, "Payers", "u", ctl->payers);
    g_variant_dict_insert (&dict, "Done", "u", ctl->payers_done);
    g_variant_dict_insert (&dict, "Failed", "u", ctl->payers_failed);
    print_json_dict (&dict);
  } else {
    g_print ("Received %u of %u payment(s).\n", ctl->payers_done, ctl->payers);
  }
  finish (ctl, ctl->payers_done == ctl->payers ? EXIT_OK : EXIT_FAIL);
}

/* Adopts @path when it is a payment of our request (same Address). */
static GVariantDict *
request_track (Ctl *ctl, const char *path)
{
  GVariantDict *p = g_hash_table_lookup (ctl->request_payments, path);
  if (p != NULL)
    return p;
  g_autoptr (GError) error = NULL;
  p = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (p == NULL)
    return NULL;
  if (strcmp (dict_str (p, "Address"), ctl->request_address) != 0 ||
      strcmp (dict_str (p, "Role"), "payee") != 0) {
    g_variant_dict_unref (p);
    return NULL;
  }
  g_hash_table_insert (ctl->request_payments, g_strdup (path), p);
  return p;
}

static void
on_request_properties_changed (GDBusConnection *bus,
                               const char *sender,
                               const char *path,
                               const char *iface,
                               const char *signal,
                               GVariant *params,
                               gpointer user_data)
{
  Ctl *ctl = user_data;
  const char *changed_iface;
  g_autoptr (GVariant) changed = NULL;
  g_autofree const char **invalidated = NULL;

  if (!g_str_has_prefix (path, "/org/tally/payment/") ||
      !g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (params, "(&s@a{sv}^a&s)", &changed_iface, &changed, &invalidated);
  if (strcmp (changed_iface, PAYMENT_IFACE) != 0)
    return;
  gboolean known = g_hash_table_contains (ctl->request_payments, path);
  GVariantDict *p = request_track (ctl, path);
  if (p == NULL)
    return;
  g_autofree char *old_state = g_strdup (dict_str (p, "State"));
  if (known) {
    GVariantIter iter;
    const char *key;
    GVariant *value;
    g_variant_iter_init (&iter, changed);
    while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
      g_variant_dict_insert_value (p, key, value);
  } else {
    /* Read whole just now; its state before this change is unknown. */
    g_clear_pointer (&old_state, g_free);
  }
  request_payment_outcome (ctl, path, p, old_state);
}

/* Follows every payment of a request for @payers payers, the first at
 * @path, until @payers are done or the request waits no more. */
static int
follow_request (Ctl *ctl, const char *path, guint payers)
{
  ctl->payers = payers;
  ctl->request_payments =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_dict_unref);
  ctl->props_subscription = g_dbus_connection_signal_subscribe (
    ctl->bus, ctl->owner, PROPERTIES_IFACE, "PropertiesChanged", NULL, PAYMENT_IFACE,
    G_DBUS_SIGNAL_FLAGS_NONE, on_request_properties_changed, ctl, NULL);

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) first = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (first == NULL)
    return report_gerror (ctl, error);
  ctl->request_address = g_strdup (dict_str (first, "Address"));
  ctl->payment_path = g_strdup (path);
  if (request_track (ctl, path) == NULL)
    return report_error (ctl, TALLY_DBUS_ERROR_FAILED, "the request's payment vanished");

  ctl->exit_code = -1;
  guint sigint = g_unix_signal_add (SIGINT, on_interrupt, ctl);
  guint sigterm = g_unix_signal_add (SIGTERM, on_interrupt, ctl);
  g_main_loop_run (ctl->loop);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_clear_pointer (&ctl->request_payments, g_hash_table_unref);
  g_clear_pointer (&ctl->request_address, g_free);
  return ctl->exit_code;
}

static int
cmd_request (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *memo = NULL;
  int timeout = 0, payers = 1, rc;
  const GOptionEntry entries[] = {
    { "memo", 'm', 0, G_OPTION_ARG_STRING, &memo, "What the payment is for", "TEXT" },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
      "Give up after SECONDS (default: tallyd's [payment] timeout_seconds)", "SECONDS" },
    { "payers", 'p', 0, G_OPTION_ARG_INT, &payers,
      "Let N payers pay this amount, each with its own payment (default: 1)", "N" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  if (payers < 1 || payers > 16)
    return usage_error (ctl, "--payers must be from 1 to 16");

  gint64 amount;
  g_autoptr (GError) error = NULL;
  if (!tally_amount_parse (argv[1], &amount, &error))
    return usage_error (ctl, "%s", error->message);
  if (timeout < 0)
    return usage_error (ctl, "--timeout must be positive");

  g_autoptr (GVariant) address_reply =
    call (ctl, REGISTER_PATH, PROPERTIES_IFACE, "Get",
          g_variant_new ("(ss)", REGISTER_IFACE, "ListenAddress"), G_VARIANT_TYPE ("(v)"), &error);
  if (address_reply == NULL)
    return report_gerror (ctl, error);
  g_autoptr (GVariant) address = NULL;
  g_variant_get (address_reply, "(v)", &address);

  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (timeout > 0)
    g_variant_builder_add (&options, "{sv}", "Timeout", g_variant_new_uint32 ((guint32) timeout));
  if (payers > 1)
    g_variant_builder_add (&options, "{sv}", "Payers", g_variant_new_uint32 ((guint32) payers));
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "RequestPayment",
          g_variant_new ("(tsa{sv})", (guint64) amount, memo ? memo : "", &options),
          G_VARIANT_TYPE ("(o)"), &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  const char *path;
  g_variant_get (reply, "(&o)", &path);

  /* The request's own address, "ble:TAG" when the payee advertises it. */
  g_autoptr (GVariant) own_reply =
    call (ctl, path, PROPERTIES_IFACE, "Get", g_variant_new ("(ss)", PAYMENT_IFACE, "Address"),
          G_VARIANT_TYPE ("(v)"), NULL);
  g_autoptr (GVariant) own = NULL;
  if (own_reply != NULL)
    g_variant_get (own_reply, "(v)", &own);
  const char *listen = g_variant_get_string (address, NULL);
  const char *request_address = own != NULL ? g_variant_get_string (own, NULL) : listen;
  if (strcmp (request_address, listen) != 0)
    progress (ctl, "Waiting for payer on %s and %s", listen, request_address);
  else
    progress (ctl, "Waiting for payer on %s", listen);
  if (payers > 1)
    return follow_request (ctl, path, (guint) payers);
  return follow_payment (ctl, path);
}

/* --- the agent of pay --- */

static void
stop_prompt (Ctl *ctl)
{
  g_clear_handle_id (&ctl->tty_watch, g_source_remove);
  if (ctl->tty_owned && ctl->tty_fd >= 0)
    close (ctl->tty_fd);
  ctl->tty_fd = -1;
  ctl->tty_owned = FALSE;
  if (ctl->tty_line != NULL)
    g_string_free (g_steal_pointer (&ctl->tty_line), TRUE);
}

static void
answer_confirm (Ctl *ctl, gboolean yes)
{
  GDBusMethodInvocation *inv = g_steal_pointer (&ctl->pending_confirm);
  stop_prompt (ctl);
  if (inv == NULL)
    return;
  if (yes) {
    tally_dbus_agent1_complete_confirm_payment (ctl->agent, inv);
  } else {
    progress (ctl, "Declined.");
    g_dbus_method_invocation_return_dbus_error (inv, tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "declined by the user");
  }
}

static gboolean
on_tty (int fd, GIOCondition condition, gpointer user_data)
{
  Ctl *ctl = user_data;
  char buf[256];
  ssize_t n = read (fd, buf, sizeof buf);

  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    /* End of input answers no. */
    ctl->tty_watch = 0;
    answer_confirm (ctl, FALSE);
    return G_SOURCE_REMOVE;
  }
  g_string_append_len (ctl->tty_line, buf, n);
  char *nl = strchr (ctl->tty_line->str, '\n');
  if (nl == NULL)
    return G_SOURCE_CONTINUE;
  *nl = '\0';
  g_strstrip (ctl->tty_line->str);
  gboolean yes = g_ascii_strcasecmp (ctl->tty_line->str, "y") == 0 ||
                 g_ascii_strcasecmp (ctl->tty_line->str, "yes") == 0;
  ctl->tty_watch = 0;
  answer_confirm (ctl, yes);
  return G_SOURCE_REMOVE;
}

static gboolean
handle_confirm_payment (TallyDBusAgent1 *agent,
                        GDBusMethodInvocation *invocation,
                        const char *payment,
                        gint64 amount,
                        const char *currency,
                        const char *payee,
                        const char *comparison_code,
                        const char *payee_name,
                        gpointer user_data)
{
  Ctl *ctl = user_data;

  if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), ctl->owner) != 0) {
    g_dbus_method_invocation_return_dbus_error (invocation,
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "not from our tallyd");
    return TRUE;
  }
  if (ctl->pending_confirm != NULL) {
    g_dbus_method_invocation_return_dbus_error (invocation,
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "already asking about another payment");
    return TRUE;
  }

  g_autofree char *text = tally_amount_format (amount, currency);
  /* The payer checks the name and the code against the payee's screen
   * before saying yes; the code reads in two groups of three. */
  g_autofree char *code = strlen (comparison_code) == 6
                            ? g_strdup_printf ("%.3s %s", comparison_code, comparison_code + 3)
                            : g_strdup (comparison_code);
  g_autofree char *line =
    g_strdup_printf ("Pay %s to %s \u00b7 code %s", g_strstrip (text),
                     *payee_name != '\0' ? payee_name : payee, code);
  /* Ours now: answer_confirm () or Cancel () replies to it. */
  ctl->pending_confirm = invocation;
  if (ctl->yes) {
    progress (ctl, "%s", line);
    answer_confirm (ctl, TRUE);
    return TRUE;
  }

  ctl->tty_fd = open ("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  ctl->tty_owned = ctl->tty_fd >= 0;
  if (ctl->tty_fd < 0)
    ctl->tty_fd = STDIN_FILENO;
  g_autofree char *prompt = g_strdup_printf ("%s\nConfirm? [y/N] ", line);
  if (ctl->tty_owned) {
    if (write (ctl->tty_fd, prompt, strlen (prompt)) < 0)
      g_printerr ("%s", prompt);
  } else {
    g_printerr ("%s", prompt);
  }
  ctl->tty_line = g_string_new (NULL);
  ctl->tty_watch = g_unix_fd_add (ctl->tty_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_tty, ctl);
  return TRUE;
}

static gboolean
handle_agent_cancel (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  Ctl *ctl = user_data;
  if (ctl->pending_confirm != NULL) {
    progress (ctl, "\nConfirmation cancelled by tallyd.");
    stop_prompt (ctl);
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&ctl->pending_confirm),
                                                tally_error_to_name (TALLY_ERROR_CANCELLED),
                                                "cancelled by tallyd");
  }
  tally_dbus_agent1_complete_cancel (agent, invocation);
  return TRUE;
}

static int
cmd_pay (Ctl *ctl, int argc, char **argv)
{
  int timeout = 0, rc;
  const GOptionEntry entries[] = {
    { "yes", 'y', 0, G_OPTION_ARG_NONE, &ctl->yes, "Confirm without asking", NULL },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
      "Give up after SECONDS (default: tallyd's [payment] timeout_seconds)", "SECONDS" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  if (timeout < 0)
    return usage_error (ctl, "--timeout must be positive");

  g_autoptr (GError) error = NULL;
  ctl->agent_path = g_strdup_printf ("/org/tally/ctl/agent%ld", (long) getpid ());
  ctl->agent = tally_dbus_agent1_skeleton_new ();
  g_signal_connect (ctl->agent, "handle-confirm-payment", G_CALLBACK (handle_confirm_payment), ctl);
  g_signal_connect (ctl->agent, "handle-cancel", G_CALLBACK (handle_agent_cancel), ctl);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (ctl->agent), ctl->bus,
                                         ctl->agent_path, &error))
    return report_error (ctl, TALLY_DBUS_ERROR_FAILED, error->message);

  g_autoptr (GVariant) reg = call (ctl, AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "RegisterAgent",
                                   g_variant_new ("(o)", ctl->agent_path), NULL, &error);
  if (reg == NULL)
    return report_gerror (ctl, error);

  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (timeout > 0)
    g_variant_builder_add (&options, "{sv}", "Timeout", g_variant_new_uint32 ((guint32) timeout));
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "Pay", g_variant_new ("(sa{sv})", argv[1], &options),
          G_VARIANT_TYPE ("(o)"), &error);
  if (reply == NULL)
    rc = report_gerror (ctl, error);
  else {
    const char *path;
    g_variant_get (reply, "(&o)", &path);
    if (g_str_has_prefix (argv[1], "ble"))
      progress (ctl, "Looking for the payee %s over Bluetooth LE", argv[1]);
    else
      progress (ctl, "Connecting to %s", argv[1]);
    rc = follow_payment (ctl, path);
  }

  g_autoptr (GVariant) unreg = call (ctl, AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "UnregisterAgent",
                                     g_variant_new ("(o)", ctl->agent_path), NULL, NULL);
  return rc;
}

/* --- main --- */

static const Command commands[] = {
  { "info", "", "Show every property of the register.", "tallyctl info", cmd_info },
  { "balance", "", "Show the balance.", "tallyctl balance", cmd_balance },
  { "request", "AMOUNT", "Request a payment and wait for a payer (or --payers N) to pay it.",
    "tallyctl request 5.00 --memo 'coffee' --payers 3", cmd_request },
  { "pay", "ADDRESS",
    "Pay the request waiting at a payee's address: unix:PATH, tcp:HOST:PORT, ble (the first "
    "payee found over Bluetooth LE), ble:TAG (the payee advertising that request tag) or "
    "ble:AA:BB:CC:DD:EE:FF (that device).",
    "tallyctl pay ble:0a1b2c3d", cmd_pay },
  { "history", "", "List register entries, newest first.", "tallyctl history --limit 10",
    cmd_history },
  { "load", "FILE", "Load value from an issuer voucher.", "tallyctl load voucher.bin", cmd_load },
  { "certificate", "FILE", "Install the issuer's certificate for this register.",
    "tallyctl certificate register.cert", cmd_certificate },
  { "export", "FILE", "Write a reconciliation bundle for the issuer.",
    "tallyctl export bundle.bin", cmd_export },
  { "apply", "FILE", "Apply the issuer's reconciliation result.", "tallyctl apply result.bin",
    cmd_apply },
  { "defund", "FILE", "Move the whole balance back online and close the register.",
    "tallyctl defund defund.bin", cmd_defund },
  { "key", "", "Print the register public key (hex) for certification.", "tallyctl key",
    cmd_key },
};

static char *
describe_commands (void)
{
  GString *s = g_string_new ("Commands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_autofree char *head = g_strdup_printf ("%s %s", commands[i].name, commands[i].args);
    g_string_append_printf (s, "  %-20s %s\n", head, commands[i].summary);
  }
  g_string_append (s, "\nExamples:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    g_string_append_printf (s, "  %s\n", commands[i].example);
  g_string_append (s, "  tallyctl --name org.tally.Alice --json balance\n"
                      "\nRun tallyctl COMMAND --help for a command's options.\n"
                      "Exit status: 0 success, 1 failure, 2 usage error.");
  return g_string_free (s, FALSE);
}

static int
resolve_owner (Ctl *ctl)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
    ctl->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "GetNameOwner", g_variant_new ("(s)", ctl->name), G_VARIANT_TYPE ("(s)"),
    G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply == NULL) {
    g_autofree char *msg =
      g_strdup_printf ("tallyd is not running as %s on the %s bus", ctl->name, ctl->bus_label);
    return report_error (ctl, tally_error_to_name (TALLY_ERROR_NOT_FOUND), msg);
  }
  g_variant_get (reply, "(s)", &ctl->owner);
  return EXIT_OK;
}

int
main (int argc, char **argv)
{
  g_autofree char *bus = NULL;
  g_autofree char *name = NULL;
  gboolean json = FALSE;
  const GOptionEntry entries[] = {
    { "bus", 'b', 0, G_OPTION_ARG_STRING, &bus, "Bus of tallyd: session (default) or system",
      "BUS" },
    { "name", 'n', 0, G_OPTION_ARG_STRING, &name, "Bus name of tallyd (default: org.tally.Tally)",
      "NAME" },
    { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print one JSON object, for scripts", NULL },
    { NULL },
  };
  Ctl ctl = { .tty_fd = -1 };
  g_autoptr (GError) error = NULL;

  setlocale (LC_ALL, "");
  /* Scripts read "Waiting for payer" while we wait. */
  setvbuf (stdout, NULL, _IOLBF, 0);

  g_autoptr (GOptionContext) context = g_option_context_new ("COMMAND [ARGS…]");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_strict_posix (context, TRUE);
  g_option_context_set_summary (context, "Control tallyd, the Tally offline payment daemon.");
  g_autofree char *description = describe_commands ();
  g_option_context_set_description (context, description);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    return usage_error (&ctl, "%s", error->message);
  if (argc < 2)
    return usage_error (&ctl, "no command given");

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      ctl.command = &commands[i];
  if (ctl.command == NULL)
    return usage_error (&ctl, "unknown command \"%s\"", argv[1]);

  ctl.json = json;
  ctl.name = name ? name : "org.tally.Tally";
  if (!g_dbus_is_name (ctl.name))
    return usage_error (&ctl, "\"%s\" is not a D-Bus name", ctl.name);
  GBusType bus_type;
  if (bus == NULL || strcmp (bus, "session") == 0) {
    bus_type = G_BUS_TYPE_SESSION;
    ctl.bus_label = "session";
  } else if (strcmp (bus, "system") == 0) {
    bus_type = G_BUS_TYPE_SYSTEM;
    ctl.bus_label = "system";
  } else {
    return usage_error (&ctl, "--bus must be session or system");
  }

  /* Per-command --help works without a bus. */
  gboolean wants_help = FALSE;
  for (int i = 2; i < argc; i++)
    if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0 ||
        strcmp (argv[i], "-?") == 0)
      wants_help = TRUE;

  tally_dbus_error_register ();
  if (!wants_help) {
    ctl.bus = g_bus_get_sync (bus_type, NULL, &error);
    if (ctl.bus == NULL) {
      g_autofree char *msg = g_strdup_printf ("cannot connect to the %s bus: %s", ctl.bus_label,
                                              error->message);
      return report_error (&ctl, tally_error_to_name (TALLY_ERROR_DISCONNECTED), msg);
    }
    int rc = resolve_owner (&ctl);
    if (rc != EXIT_OK) {
      g_object_unref (ctl.bus);
      return rc;
    }
    ctl.loop = g_main_loop_new (NULL, FALSE);
    ctl.owner_watch = g_bus_watch_name_on_connection (ctl.bus, ctl.owner,
                                                      G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
                                                      on_owner_vanished, &ctl, NULL);
  }

  int rc = ctl.command->run (&ctl, argc - 1, argv + 1);

  stop_prompt (&ctl);
  if (ctl.pending_confirm != NULL)
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&ctl.pending_confirm),
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "tallyctl is exiting");
  if (ctl.owner_watch != 0)
    g_bus_unwatch_name (ctl.owner_watch);
  if (ctl.props_subscription != 0)
    g_dbus_connection_signal_unsubscribe (ctl.bus, ctl.props_subscription);
  if (ctl.agent != NULL) {
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (ctl.agent));
    g_object_unref (ctl.agent);
  }
  if (ctl.bus != NULL)
    g_dbus_connection_flush_sync (ctl.bus, NULL, NULL);
  g_clear_pointer (&ctl.payment, g_variant_dict_unref);
  g_clear_pointer (&ctl.loop, g_main_loop_unref);
  g_clear_object (&ctl.bus);
  g_free (ctl.owner);
  g_free (ctl.payment_path);
  g_free (ctl.agent_path);
  return rc;
}
