/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-model.h"

#include <glib/gi18n.h>
#include <string.h>

G_DEFINE_QUARK (tally - app - uri - error - quark, tally_app_uri_error)

#define URI_MAX          1024
#define ADDRESS_MAX      112
#define DISPLAY_NAME_MAX 64
#define URI_PREFIX       "tally://pay?"

void
tally_app_request_free (TallyAppRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->address);
  g_free (request->currency);
  g_free (request->display_name);
  g_free (request);
}

gboolean
tally_app_request_is_uri (const char *text)
{
  return text != NULL && g_str_has_prefix (text, "tally:");
}

static gboolean
unreserved (char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Percent-decodes a value; NULL on a raw reserved byte, a bad escape or %00. */
static char *
decode_value (const char *value, gsize len)
{
  GString *out = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++) {
    char c = value[i];
    if (unreserved (c)) {
      g_string_append_c (out, c);
      continue;
    }
    if (c != '%' || i + 2 >= len || !g_ascii_isxdigit (value[i + 1]) ||
        !g_ascii_isxdigit (value[i + 2])) {
      g_string_free (out, TRUE);
      return NULL;
    }
    int byte = g_ascii_xdigit_value (value[i + 1]) * 16 + g_ascii_xdigit_value (value[i + 2]);
    if (byte == 0) {
      g_string_free (out, TRUE);
      return NULL;
    }
    g_string_append_c (out, (char) byte);
    i += 2;
  }
  return g_string_free (out, FALSE);
}

/* Text people read: UTF-8 without control, line separator or bidirectional
 * override characters. */
static gboolean
plain_text (const char *s, gsize max)
{
  if (strlen (s) > max || !g_utf8_validate (s, -1, NULL))
    return FALSE;
  for (const char *p = s; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar u = g_utf8_get_char (p);
    if (g_unichar_iscntrl (u) || u == 0x2028 || u == 0x2029 || (u >= 0x202A && u <= 0x202E) ||
        (u >= 0x2066 && u <= 0x2069))
      return FALSE;
  }
  return TRUE;
}

/* A decimal integer without sign or leading zero, at most @max. */
static gboolean
parse_decimal (const char *s, guint64 max, guint64 *out)
{
  if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
    return FALSE;
  guint64 v = 0;
  for (const char *p = s; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
    guint d = (guint) (*p - '0');
    if (v > (max - d) / 10)
      return FALSE;
    v = v * 10 + d;
  }
  *out = v;
  return TRUE;
}

static gboolean
address_ok (const char *to)
{
  if (!plain_text (to, ADDRESS_MAX))
    return FALSE;
  if (g_str_has_prefix (to, "unix:/"))
    return TRUE;
  if (g_str_has_prefix (to, "tcp:"))
    return strchr (to + 4, ':') != NULL;
  if (g_str_has_prefix (to, "ble:")) {
    const char *tag = to + 4;
    if (strlen (tag) != 8)
      return FALSE;
    for (const char *p = tag; *p != '\0'; p++)
      if (!g_ascii_isxdigit (*p) || g_ascii_isupper (*p))
        return FALSE;
    return TRUE;
  }
  return FALSE;
}

static gboolean
currency_ok (const char *cur)
{
  gsize n = strlen (cur);
  if (n < 3 || n > 8)
    return FALSE;
  for (const char *p = cur; *p != '\0'; p++)
    if (!g_ascii_isupper (*p))
      return FALSE;
  return TRUE;
}

static gboolean
fail (GError **error, TallyAppUriError code, const char *message)
{
  g_set_error_literal (error, TALLY_APP_URI_ERROR, code, message);
  return FALSE;
}

/* Splits the query into @fields (key -> decoded value). */
static gboolean
read_fields (const char *query, GHashTable *fields, GError **error)
{
  static const char *const known[] = { "v", "to", "amount", "cur", "exp", "name", NULL };
  g_auto (GStrv) parts = g_strsplit (query, "&", -1);
  for (guint i = 0; parts[i] != NULL; i++) {
    const char *eq = strchr (parts[i], '=');
    if (eq == NULL || eq == parts[i])
      return fail (error, TALLY_APP_URI_ERROR_MALFORMED,
                   _ ("A field of the request is not key=value."));
    g_autofree char *key = g_strndup (parts[i], eq - parts[i]);
    char *value = decode_value (eq + 1, strlen (eq + 1));
    if (value == NULL)
      return fail (error, TALLY_APP_URI_ERROR_MALFORMED,
                   _ ("A field of the request is badly encoded."));
    if (g_hash_table_contains (fields, key)) {
      g_free (value);
      return fail (error, TALLY_APP_URI_ERROR_MALFORMED,
                   _ ("A field of the request appears twice."));
    }
    g_hash_table_insert (fields, g_steal_pointer (&key), value);
  }
  const char *v = g_hash_table_lookup (fields, "v");
  if (v == NULL)
    return fail (error, TALLY_APP_URI_ERROR_MALFORMED, _ ("The request has no version."));
  if (strcmp (v, "1") != 0)
    return fail (error, TALLY_APP_URI_ERROR_VERSION,
                 _ ("The request is of a later version; update the app."));
  GHashTableIter iter;
  gpointer key;
  g_hash_table_iter_init (&iter, fields);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (!g_strv_contains (known, key))
      return fail (error, TALLY_APP_URI_ERROR_MALFORMED, _ ("The request has an unknown field."));
  return TRUE;
}

TallyAppRequest *
tally_app_request_parse (const char *uri, GError **error)
{
  g_return_val_if_fail (uri != NULL, NULL);

  if (strlen (uri) > URI_MAX || !g_str_has_prefix (uri, URI_PREFIX) ||
      uri[strlen (URI_PREFIX)] == '\0') {
    fail (error, TALLY_APP_URI_ERROR_MALFORMED, _ ("This is not a Tally payment request."));
    return NULL;
  }
  g_autoptr (GHashTable) fields = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (!read_fields (uri + strlen (URI_PREFIX), fields, error))
    return NULL;

  const char *to = g_hash_table_lookup (fields, "to");
  const char *amount = g_hash_table_lookup (fields, "amount");
  const char *cur = g_hash_table_lookup (fields, "cur");
  const char *exp = g_hash_table_lookup (fields, "exp");
  const char *name = g_hash_table_lookup (fields, "name");
  if (to == NULL || amount == NULL || cur == NULL || exp == NULL ||
      (name != NULL && *name == '\0')) {
    fail (error, TALLY_APP_URI_ERROR_MALFORMED, _ ("The request lacks a field it needs."));
    return NULL;
  }
  guint64 a = 0, e = 0;
  if (!parse_decimal (amount, TALLY_APP_AMOUNT_MAX, &a) || a == 0 || !currency_ok (cur)) {
    fail (error, TALLY_APP_URI_ERROR_INVALID_AMOUNT, _ ("The request's amount is not valid."));
    return NULL;
  }
  if (!parse_decimal (exp, G_MAXINT64, &e) || e == 0 || !address_ok (to) ||
      (name != NULL && !plain_text (name, DISPLAY_NAME_MAX))) {
    fail (error, TALLY_APP_URI_ERROR_MALFORMED, _ ("The request is malformed."));
    return NULL;
  }
  TallyAppRequest *request = g_new0 (TallyAppRequest, 1);
  request->address = g_strdup (to);
  request->amount = (gint64) a;
  request->currency = g_strdup (cur);
  request->expires = (gint64) e;
  request->display_name = g_strdup (name != NULL ? name : "");
  return request;
}

gboolean
tally_app_request_check_offer (const TallyAppRequest *request,
                               gint64 now,
                               gint64 amount,
                               const char *currency,
                               const char *display_name,
                               char **reason)
{
  g_return_val_if_fail (request != NULL && reason != NULL, FALSE);

  if (now >= request->expires) {
    *reason = g_strdup (_ ("The payment request has expired."));
    return FALSE;
  }
  if (g_strcmp0 (currency, request->currency) != 0) {
    *reason = g_strdup_printf (_ ("The payee asks for %s, the request said %s."), currency,
                               request->currency);
    return FALSE;
  }
  if (amount != request->amount) {
    g_autofree char *got = tally_app_amount_format (amount, currency);
    g_autofree char *want = tally_app_amount_format (request->amount, request->currency);
    *reason = g_strdup_printf (_ ("The payee asks for %s, the request said %s."), got, want);
    return FALSE;
  }
  if (g_strcmp0 (display_name != NULL ? display_name : "", request->display_name) != 0) {
    *reason = g_strdup_printf (
      _ ("The payee is certified as \u201c%s\u201d, the request named \u201c%s\u201d."),
      display_name != NULL ? display_name : "", request->display_name);
    return FALSE;
  }
  return TRUE;
}

/* ISO 4217 currencies whose minor unit is not 1/100: the twin of
 * proto/tally-core.c's table (the app may only talk D-Bus, so it cannot
 * link the core): change both. */
static const struct
{
  char code[4];
  guint8 exponent;
} currency_exponents[] = {
  { "BHD", 3 }, { "BIF", 0 }, { "CLF", 4 }, { "CLP", 0 }, { "DJF", 0 }, { "GNF", 0 }, { "IQD", 3 },
  { "ISK", 0 }, { "JOD", 3 }, { "JPY", 0 }, { "KMF", 0 }, { "KRW", 0 }, { "KWD", 3 }, { "LYD", 3 },
  { "OMR", 3 }, { "PYG", 0 }, { "RWF", 0 }, { "TND", 3 }, { "UGX", 0 }, { "UYI", 0 }, { "UYW", 4 },
  { "VND", 0 }, { "VUV", 0 }, { "XAF", 0 }, { "XOF", 0 }, { "XPF", 0 },
};

guint
tally_app_currency_exponent (const char *currency)
{
  if (currency == NULL)
    return 2;
  for (gsize i = 0; i < G_N_ELEMENTS (currency_exponents); i++)
    if (strcmp (currency, currency_exponents[i].code) == 0)
      return currency_exponents[i].exponent;
  return 2;
}

static guint64
pow10_u64 (guint exponent)
{
  guint64 v = 1;
  for (guint i = 0; i < exponent; i++)
    v *= 10;
  return v;
}

gboolean
tally_app_amount_parse (const char *text, const char *currency, gint64 *out)
{
  g_return_val_if_fail (out != NULL, FALSE);

  if (text == NULL)
    return FALSE;
  guint exponent = tally_app_currency_exponent (currency);
  guint64 unit = pow10_u64 (exponent);
  g_autofree char *s = g_strstrip (g_strdup (text));
  const char *p = s;
  guint64 whole = 0, frac = 0;
  guint frac_digits = 0;
  for (; g_ascii_isdigit (*p); p++) {
    whole = whole * 10 + (guint64) (*p - '0');
    if (whole > (guint64) TALLY_APP_AMOUNT_MAX / unit)
      return FALSE;
  }
  if (p == s)
    return FALSE;
  if (*p == '.') {
    for (p++; g_ascii_isdigit (*p); p++) {
      if (++frac_digits > exponent)
        return FALSE;
      frac = frac * 10 + (guint64) (*p - '0');
    }
    if (frac_digits == 0)
      return FALSE;
    frac *= pow10_u64 (exponent - frac_digits);
  }
  if (*p != '\0')
    return FALSE;
  guint64 v = whole * unit + frac;
  if (v == 0 || v > (guint64) TALLY_APP_AMOUNT_MAX)
    return FALSE;
  *out = (gint64) v;
  return TRUE;
}

char *
tally_app_amount_format_value (gint64 amount, const char *currency)
{
  guint exponent = tally_app_currency_exponent (currency);
  guint64 unit = pow10_u64 (exponent);
  const char *sign = amount < 0 ? "-" : "";
  guint64 v = amount < 0 ? (guint64) (-(amount + 1)) + 1 : (guint64) amount;
  if (exponent == 0)
    return g_strdup_printf ("%s%" G_GUINT64_FORMAT, sign, v);
  return g_strdup_printf ("%s%" G_GUINT64_FORMAT ".%0*" G_GUINT64_FORMAT, sign, v / unit,
                          (int) exponent, v % unit);
}

char *
tally_app_amount_format (gint64 amount, const char *currency)
{
  g_autofree char *value = tally_app_amount_format_value (amount, currency);
  if (currency == NULL || *currency == '\0')
    return g_steal_pointer (&value);
  return g_strdup_printf ("%s %s", value, currency);
}

char *
tally_app_code_format (const char *code)
{
  if (code == NULL)
    return g_strdup ("");
  if (strlen (code) == 6)
    return g_strdup_printf ("%.3s %s", code, code + 3);
  return g_strdup (code);
}

const char *
tally_app_state_describe (const char *role, const char *state)
{
  gboolean payer = g_strcmp0 (role, "payer") == 0;

  if (state == NULL || *state == '\0')
    return "";
  if (strcmp (state, "waiting") == 0)
    return _ ("Waiting for the payer");
  if (strcmp (state, "connecting") == 0)
    return _ ("Connecting to the payee");
  if (strcmp (state, "hello-sent") == 0 || strcmp (state, "wait-hello") == 0 ||
      strcmp (state, "offer-sent") == 0)
    return payer ? _ ("Connected, checking the payee") : _ ("Payer connected");
  if (strcmp (state, "confirming") == 0)
    return _ ("Waiting for your confirmation");
  if (strcmp (state, "wait-pay") == 0)
    return _ ("Compare the code with the payer");
  if (strcmp (state, "pay-sent") == 0)
    return _ ("Sending the payment");
  if (strcmp (state, "done") == 0)
    return payer ? _ ("Paid") : _ ("Received");
  if (strcmp (state, "failed") == 0)
    return _ ("Failed");
  return state;
}

gboolean
tally_app_state_is_final (const char *state)
{
  return g_strcmp0 (state, "done") == 0 || g_strcmp0 (state, "failed") == 0;
}

static const struct
{
  const char *name;
  const char *text;
} error_texts[] = {
  { "org.tally.Error.Rejected", N_ ("Declined.") },
  { "org.tally.Error.Cancelled", N_ ("Cancelled.") },
  { "org.tally.Error.Timeout", N_ ("Timed out: nobody completed the payment in time.") },
  { "org.tally.Error.FrameTimeout", N_ ("Timed out: the other side stopped answering.") },
  { "org.tally.Error.Expired", N_ ("The payment request has expired.") },
  { "org.tally.Error.NotFound", N_ ("The payee has no payment request waiting.") },
  { "org.tally.Error.Disconnected", N_ ("The connection was lost.") },
  { "org.tally.Error.InsufficientFunds", N_ ("Not enough money in this register.") },
  { "org.tally.Error.LimitPayment", N_ ("The amount is above this register's limit per payment.") },
  { "org.tally.Error.LimitBalance", N_ ("The payee's register cannot hold that much.") },
  { "org.tally.Error.Policy", N_ ("This address may not be paid from here.") },
  { "org.tally.Error.NoCertificate", N_ ("This register has no certificate yet.") },
  { "org.tally.Error.AmountMismatch", N_ ("The payee asks for another amount than the request.") },
  { "org.tally.Error.CurrencyMismatch",
    N_ ("The payee asks for another currency than the request.") },
  { "org.tally.Error.WrongPayee", N_ ("The payee is not the one the request named.") },
  { "org.tally.Error.Exists", N_ ("A payment request is already waiting.") },
  { "org.tally.Error.NotAuthorized", N_ ("Not allowed: the system's policy (polkit) said no.") },
  { "org.freedesktop.DBus.Error.AccessDenied",
    N_ ("Not allowed: only members of the group \u201ctally\u201d may use this register.") },
};

char *
tally_app_error_describe (const char *error_name, const char *message)
{
  for (gsize i = 0; i < G_N_ELEMENTS (error_texts); i++)
    if (g_strcmp0 (error_name, error_texts[i].name) == 0)
      return g_strdup (_ (error_texts[i].text));
  if (message != NULL && *message != '\0')
    return g_strdup_printf (_ ("Failed: %s"), message);
  return g_strdup_printf (_ ("Failed (%s)."), error_name != NULL ? error_name : "?");
}

/* --- history as CSV --- */

static const char *
entry_str (GVariantDict *d, const char *key)
{
  const char *s = NULL;
  return g_variant_dict_lookup (d, key, "&s", &s) ? s : "";
}

static guint64
entry_t (GVariantDict *d, const char *key)
{
  guint64 v = 0;
  g_variant_dict_lookup (d, key, "t", &v);
  return v;
}

static char *
csv_time (guint64 t, gboolean utc)
{
  g_autoptr (GDateTime) dt =
    utc ? g_date_time_new_from_unix_utc ((gint64) t) : g_date_time_new_from_unix_local ((gint64) t);
  if (dt == NULL)
    return g_strdup ("?");
  return g_date_time_format (dt, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S");
}

/* Quoted when it holds a comma, quote or line break, quotes doubled; names
 * and memos come from other people, so one a spreadsheet would run as a
 * formula (=, +, -, @) gets a leading apostrophe first. */
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

char *
tally_app_history_csv (GVariant *entries, const char *currency)
{
  g_return_val_if_fail (
    entries != NULL && g_variant_is_of_type (entries, G_VARIANT_TYPE ("aa{sv}")), NULL);

  static const char *const header[] = {
    "time", "time_utc", "kind",    "state", "amount",     "currency",
    "peer", "peer_id",  "counter", "memo",  "receipt_id",
  };
  GString *out = g_string_new (NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (header); i++)
    csv_field (out, header[i], i + 1 == G_N_ELEMENTS (header));
  for (gsize i = 0; i < g_variant_n_children (entries); i++) {
    g_autoptr (GVariant) e = g_variant_get_child_value (entries, i);
    g_autoptr (GVariantDict) d = g_variant_dict_new (e);
    gint64 amount = 0;
    g_variant_dict_lookup (d, "Amount", "x", &amount);
    const char *kind = entry_str (d, "Kind");
    const char *id = entry_str (d, "Peer");
    const char *name = entry_str (d, "PeerName");
    g_autofree char *local = csv_time (entry_t (d, "Time"), FALSE);
    g_autofree char *utc = csv_time (entry_t (d, "Time"), TRUE);
    g_autofree char *value = tally_app_amount_format_value (amount, currency);
    g_autofree char *short_id = g_strndup (id, 8);
    g_autofree char *peer =
      *name != '\0' ? g_strdup_printf ("%s (%s)", name, short_id) : g_strdup (short_id);
    /* A load's number is its voucher sequence, else the counter. */
    guint64 n = strcmp (kind, "load") == 0 ? entry_t (d, "Sequence") : entry_t (d, "Counter");
    g_autofree char *number = g_strdup_printf ("%" G_GUINT64_FORMAT, n);
    const char *fields[] = {
      local,
      utc,
      kind,
      entry_str (d, "State"),
      value,
      currency != NULL ? currency : "",
      peer,
      id,
      number,
      entry_str (d, "Memo"),
      entry_str (d, "ReceiptId"),
    };
    for (gsize f = 0; f < G_N_ELEMENTS (fields); f++)
      csv_field (out, fields[f], f + 1 == G_N_ELEMENTS (fields));
  }
  return g_string_free (out, FALSE);
}

char *
tally_app_peer_label (const char *name, const char *id)
{
  if (name != NULL && *name != '\0')
    return g_strdup (name);
  if (id != NULL && *id != '\0')
    return g_strndup (id, 8);
  return g_strdup (_ ("unknown"));
}

char *
tally_app_sync_describe (guint32 offline_payments,
                         guint32 max_offline_payments,
                         guint64 last_reconciliation,
                         guint64 max_offline_seconds,
                         guint64 cert_expiry,
                         gint64 now)
{
  if (cert_expiry == 0)
    return g_strdup ("");
  guint64 deadline = cert_expiry;
  if (last_reconciliation > 0 && max_offline_seconds > 0 &&
      last_reconciliation <= G_MAXUINT64 - max_offline_seconds)
    deadline = MIN (deadline, last_reconciliation + max_offline_seconds);
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local ((gint64) MIN (deadline, G_MAXINT64));
  g_autofree char *when = dt != NULL ? g_date_time_format (dt, "%Y-%m-%d %H:%M") : g_strdup ("?");
  if (now >= 0 && (guint64) now >= deadline)
    return g_strdup_printf (_ ("%u of %u offline payments \u00b7 reconcile now: the deadline "
                               "passed on %s"),
                            offline_payments, max_offline_payments, when);
  return g_strdup_printf (_ ("%u of %u offline payments \u00b7 reconcile by %s"), offline_payments,
                          max_offline_payments, when);
}

static char *
local_time (guint64 when)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local ((gint64) MIN (when, G_MAXINT64));
  return dt != NULL ? g_date_time_format (dt, "%Y-%m-%d %H:%M") : g_strdup ("?");
}

char *
tally_app_online_describe (const char *sync_state, guint64 last_sync, const char *last_sync_error)
{
  if (sync_state == NULL || *sync_state == '\0' || strcmp (sync_state, "off") == 0)
    return g_strdup (_ ("No online issuer set up: reconcile with files."));
  if (strcmp (sync_state, "syncing") == 0)
    return g_strdup (_ ("Syncing with the issuer\u2026"));
  if (strcmp (sync_state, "failed") == 0) {
    /* "org.tally.Error.Disconnected: issuer unreachable at …": people
     * need the message, not the error name. */
    const char *message = last_sync_error != NULL ? last_sync_error : "";
    const char *colon = strstr (message, ": ");
    if (colon != NULL && g_str_has_prefix (message, "org."))
      message = colon + 2;
    return g_strdup_printf (_ ("The last sync failed (%s); tallyd will try again."),
                            *message != '\0' ? message : _ ("no reason given"));
  }
  if (last_sync == 0)
    return g_strdup (_ ("Online issuer set up; not synced yet."));
  g_autofree char *when = local_time (last_sync);
  return g_strdup_printf (_ ("Synced with the issuer on %s."), when);
}
