/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tallyctl.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tally-hex.h"
#include "tally-json.h"

/* --- output --- */

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

void
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
void
print_json_dict (GVariantDict *dict)
{
  g_autoptr (GVariant) v = g_variant_ref_sink (g_variant_dict_end (dict));
  g_autoptr (GString) out = g_string_new (NULL);
  json_value (out, v);
  g_print ("%s\n", out->str);
}

/* Progress lines go to stdout, or stderr when stdout carries JSON. */
void
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

static gboolean
is_tally_error (const char *name, TallyError code)
{
  return g_strcmp0 (name, tally_error_to_name (code)) == 0;
}

int
exit_code_for (const char *name, gboolean from_peer, gboolean in_payment)
{
  if (name == NULL || *name == '\0')
    return EXIT_FAIL;
  if (from_peer)
    return EXIT_REFUSED;
  if (strcmp (name, DBUS_ERROR_NAME_HAS_NO_OWNER) == 0 ||
      strcmp (name, DBUS_ERROR_SERVICE_UNKNOWN) == 0 ||
      strcmp (name, "org.freedesktop.DBus.Error.NoServer") == 0 ||
      strcmp (name, "org.freedesktop.DBus.Error.Disconnected") == 0)
    return EXIT_ABSENT;
  if (is_tally_error (name, TALLY_ERROR_REJECTED) || is_tally_error (name, TALLY_ERROR_CANCELLED))
    return EXIT_DECLINED;
  if (is_tally_error (name, TALLY_ERROR_TIMEOUT) ||
      is_tally_error (name, TALLY_ERROR_FRAME_TIMEOUT) ||
      is_tally_error (name, TALLY_ERROR_EXPIRED))
    return EXIT_TIMEOUT;
  if (!in_payment && (is_tally_error (name, TALLY_ERROR_INVALID_ARGUMENT) ||
                      is_tally_error (name, TALLY_ERROR_INVALID_AMOUNT) ||
                      is_tally_error (name, TALLY_ERROR_MALFORMED) ||
                      strcmp (name, "org.freedesktop.DBus.Error.InvalidArgs") == 0))
    return EXIT_USAGE;
  return EXIT_FAIL;
}

int
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
  return exit_code_for (name, FALSE, FALSE);
}

/* Prints a failed call's D-Bus error name and message. */
int
report_gerror (Ctl *ctl, const GError *error)
{
  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  g_autofree char *message = tally_dbus_error_get_message (error);
  const char *name = remote;
  /* Our connection to the bus closed under the call: as good as no tallyd. */
  if (name == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED))
    name = "org.freedesktop.DBus.Error.Disconnected";
  if (name == NULL)
    name = tally_dbus_error_name_for (error);
  return report_error (ctl, name, message);
}

int
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

char *
format_time (guint64 t)
{
  if (t == 0)
    return g_strdup ("never");
  /* Local time for people; --json keeps the Unix seconds. */
  g_autoptr (GDateTime) dt = t <= G_MAXINT64 ? g_date_time_new_from_unix_local ((gint64) t) : NULL;
  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S %Z") : g_strdup ("?");
}

char *
format_duration (guint64 seconds)
{
  static const struct
  {
    guint64 seconds;
    const char *one, *many;
  } units[] = {
    { 86400, "day", "days" },
    { 3600, "hour", "hours" },
    { 60, "minute", "minutes" },
    { 1, "second", "seconds" },
  };
  if (seconds == 0)
    return g_strdup ("0 seconds");
  /* The two largest units that are not zero: "3 days", "1 day 2 hours";
   * the certificates' offline windows are whole hours. */
  g_autoptr (GString) out = g_string_new (NULL);
  guint parts = 0;
  for (gsize i = 0; i < G_N_ELEMENTS (units) && parts < 2; i++) {
    guint64 n = seconds / units[i].seconds;
    seconds %= units[i].seconds;
    if (n == 0)
      continue;
    g_string_append_printf (out, "%s%" G_GUINT64_FORMAT " %s", parts ? " " : "", n,
                            n == 1 ? units[i].one : units[i].many);
    parts++;
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* --- calls --- */

GVariant *
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

GVariantDict *
get_all (Ctl *ctl, const char *path, const char *iface, GError **error)
{
  g_autoptr (GVariant) reply = call (ctl, path, PROPERTIES_IFACE, "GetAll",
                                     g_variant_new ("(s)", iface), G_VARIANT_TYPE ("(a{sv})"), error);
  if (reply == NULL)
    return NULL;
  g_autoptr (GVariant) dict = g_variant_get_child_value (reply, 0);
  return g_variant_dict_new (dict);
}

const char *
dict_str (GVariantDict *d, const char *key)
{
  const char *s = NULL;
  if (!g_variant_dict_lookup (d, key, "&s", &s))
    return "";
  return s;
}

/* A payment's other side for people: "Bob's Bakery (f0cc...)" when its
 * certificate names it, else its hex id. */
char *
peer_label (GVariantDict *p)
{
  const char *id = dict_str (p, "Peer");
  const char *name = dict_str (p, "PeerName");
  if (*name == '\0' || g_str_has_prefix (id, name))
    return g_strdup (id);
  return g_strdup_printf ("%s (%s)", name, id);
}

gint64
dict_x (GVariantDict *d, const char *key)
{
  gint64 v = 0;
  g_variant_dict_lookup (d, key, "x", &v);
  return v;
}

guint64
dict_t (GVariantDict *d, const char *key)
{
  guint64 v = 0;
  g_variant_dict_lookup (d, key, "t", &v);
  return v;
}

guint32
dict_u (GVariantDict *d, const char *key)
{
  guint32 v = 0;
  g_variant_dict_lookup (d, key, "u", &v);
  return v;
}

gboolean
dict_b (GVariantDict *d, const char *key)
{
  gboolean v = FALSE;
  g_variant_dict_lookup (d, key, "b", &v);
  return v;
}

/* Standard input, whole, as long as it stays within STDIN_MAX bytes. */
static gboolean
read_stdin (char **data, gsize *len, GError **error)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  guint8 chunk[65536];
  for (;;) {
    ssize_t n = read (STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno),
                   "cannot read standard input: %s", g_strerror (errno));
      return FALSE;
    }
    if (n == 0)
      break;
    if (buf->len + (gsize) n > STDIN_MAX) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                   "standard input holds more than %u bytes", STDIN_MAX);
      return FALSE;
    }
    g_byte_array_append (buf, chunk, (guint) n);
  }
  *len = buf->len;
  *data = (char *) g_byte_array_free (g_steal_pointer (&buf), FALSE);
  return TRUE;
}

gboolean
read_file (Ctl *ctl, const char *path, GBytes **out, int *exit_code)
{
  g_autoptr (GError) error = NULL;
  char *data;
  gsize len;
  gboolean ok = strcmp (path, "-") == 0 ? read_stdin (&data, &len, &error)
                                        : g_file_get_contents (path, &data, &len, &error);
  if (!ok) {
    report_error (ctl, tally_error_to_name (TALLY_ERROR_NOT_FOUND), error->message);
    /* A file that cannot be read is the caller's input. */
    *exit_code = EXIT_USAGE;
    return FALSE;
  }
  *out = g_bytes_new_take (data, len);
  return TRUE;
}

GVariant *
bytes_variant (GBytes *bytes)
{
  return g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE);
}

/* Parses a command's options; argv[0] is the command name. */
gboolean
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
  /* The global options work after the command too (tallyctl balance
   * --json), listed by --help-global. */
  CtlGlobals after = { 0 };
  g_autofree GOptionEntry *global = ctl_global_entries (&after, entries);
  GOptionGroup *group = g_option_group_new ("global", "Options of every command:",
                                            "Show the options of every command", NULL, NULL);
  g_option_group_add_entries (group, global);
  g_option_context_add_group (context, group);
  g_autoptr (GError) error = NULL;
  gboolean parsed = g_option_context_parse (context, argc, argv, &error);
  if (parsed)
    *exit_code = ctl_start (ctl, &after);
  else
    *exit_code = usage_error (ctl, "%s", error->message);
  g_free (after.bus);
  g_free (after.name);
  g_free (after.fields);
  return parsed && *exit_code == EXIT_OK;
}

gboolean
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

gboolean
select_fields (Ctl *ctl, const char *const *names, gsize n, GArray **selected, int *rc)
{
  *selected = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint i = 0; ctl->fields == NULL && i < n; i++)
    g_array_append_val (*selected, i);
  for (char **f = ctl->fields; f != NULL && *f != NULL; f++) {
    guint i = 0;
    while (i < n && g_ascii_strcasecmp (*f, names[i]) != 0)
      i++;
    if (i == n) {
      g_autofree char *known = g_strjoinv (", ", (char **) names);
      g_clear_pointer (selected, g_array_unref);
      *rc = usage_error (ctl, "--fields: no field \"%s\" here; the fields are %s", *f, known);
      return FALSE;
    }
    g_array_append_val (*selected, i);
  }
  return TRUE;
}

void
terse_append (GString *row, const char *value)
{
  for (const char *p = value; *p != '\0'; p++) {
    if (*p == ':' || *p == '\\')
      g_string_append_c (row, '\\');
    if (*p == '\n')
      g_string_append (row, "\\n");
    else
      g_string_append_c (row, *p);
  }
}
