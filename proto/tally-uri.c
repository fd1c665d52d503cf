/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-uri.h"

#include <stdlib.h>
#include <string.h>

#include "tally-core.h"
#include "tally-error.h"

void
tally_request_uri_free (TallyRequestUri *uri)
{
  if (uri == NULL)
    return;
  g_free (uri->address);
  g_free (uri->currency);
  g_free (uri->display_name);
  g_free (uri->tag);
  g_free (uri);
}

gboolean
tally_request_uri_is_uri (const char *text)
{
  return text != NULL && g_ascii_strncasecmp (text, TALLY_URI_SCHEME ":", 6) == 0;
}

/* --- field checks, shared by format and parse --- */

static gboolean
is_digits (const char *s)
{
  if (*s == '\0')
    return FALSE;
  for (; *s != '\0'; s++)
    if (!g_ascii_isdigit (*s))
      return FALSE;
  return TRUE;
}

static gboolean
check_ble (const char *tag, GError **error)
{
  gsize n = strlen (tag);
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isdigit (tag[i]) && !(tag[i] >= 'a' && tag[i] <= 'f'))
      goto bad;
  if (n == 8)
    return TRUE;
bad:
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
               "to: a Bluetooth request tag is 8 lower-case hex digits, not \"%s\"", tag);
  return FALSE;
}

static gboolean
check_tcp (const char *hostport, GError **error)
{
  const char *colon = strrchr (hostport, ':');
  if (colon == NULL || colon == hostport) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "to: tcp needs host:port");
    return FALSE;
  }
  for (const char *p = hostport; p < colon; p++)
    if (!g_ascii_isalnum (*p) && strchr ("-.:[]", *p) == NULL) {
      /* @hostport passed tally_text_check () and every byte before @p is
       * ASCII: @p starts a whole character, never half of one. */
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "to: character U+%04X is not allowed in a tcp host", g_utf8_get_char (p));
      return FALSE;
    }
  const char *port = colon + 1;
  if (!is_digits (port) || port[0] == '0' || strlen (port) > 5 || atoi (port) > 65535) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "to: tcp port \"%s\" is not a number from 1 to 65535", port);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_address (const char *to, TallyUriTransport *transport, GError **error)
{
  if (!tally_text_check (to, TALLY_URI_ADDRESS_MAX, "to", error))
    return FALSE;
  if (g_str_has_prefix (to, "ble:")) {
    *transport = TALLY_URI_TRANSPORT_BLE;
    return check_ble (to + 4, error);
  }
  if (g_str_has_prefix (to, "unix:")) {
    *transport = TALLY_URI_TRANSPORT_UNIX;
    if (to[5] != '/') {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "to: a unix path must be absolute");
      return FALSE;
    }
    return TRUE;
  }
  if (g_str_has_prefix (to, "tcp:")) {
    *transport = TALLY_URI_TRANSPORT_TCP;
    return check_tcp (to + 4, error);
  }
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
               "to: \"%s\" is not a ble:, unix: or tcp: address", to);
  return FALSE;
}

/* A "tag" field: 8 lower-case hex digits, and with a ble: @to the tag in
 * it (the field then adds nothing, but must not contradict). */
static gboolean
check_tag (const char *tag, const char *to, GError **error)
{
  gsize n = strlen (tag);
  gboolean hex = n == 8;
  for (gsize i = 0; hex && i < n; i++)
    hex = g_ascii_isdigit (tag[i]) || (tag[i] >= 'a' && tag[i] <= 'f');
  if (!hex) {
    g_autofree char *shown = g_strescape (tag, NULL);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "tag: \"%s\" is not 8 lower-case hex digits", shown);
    return FALSE;
  }
  if (g_str_has_prefix (to, "ble:") && strcmp (to + 4, tag) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "tag: %s differs from the tag in to",
                 tag);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_amount (gint64 amount, GError **error)
{
  if (amount <= 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount: %" G_GINT64_FORMAT " is not positive", amount);
    return FALSE;
  }
  if (amount > TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW,
                 "amount: %" G_GINT64_FORMAT " exceeds the maximum %" G_GINT64_FORMAT, amount,
                 TALLY_AMOUNT_MAX);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_currency (const char *currency, GError **error)
{
  if (tally_currency_is_valid (currency))
    return TRUE;
  /* Whoever made the URI chose these bytes: escaped, never raw. */
  g_autofree char *shown = g_strescape (currency ? currency : "", NULL);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
               "cur: \"%s\" is not 3 to 8 upper-case letters", shown);
  return FALSE;
}

static gboolean
check_name (const char *name, GError **error)
{
  g_autoptr (GError) local = NULL;
  if (tally_display_name_check (name, &local))
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "name: %s", local->message);
  return FALSE;
}

static gboolean
check_fields (const char *address,
              gint64 amount,
              const char *currency,
              guint64 expires_at,
              const char *display_name,
              TallyUriTransport *transport,
              GError **error)
{
  if (!check_address (address, transport, error) || !check_amount (amount, error) ||
      !check_currency (currency, error))
    return FALSE;
  if (expires_at == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "exp: must be after 1970");
    return FALSE;
  }
  return check_name (display_name, error);
}

/* --- format --- */

static void
append_encoded (GString *out, const char *key, const char *value)
{
  static const char hex[] = "0123456789ABCDEF";
  g_string_append_printf (out, "&%s=", key);
  for (const guchar *p = (const guchar *) value; *p != '\0'; p++) {
    if (g_ascii_isalnum (*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      g_string_append_c (out, (char) *p);
    } else {
      g_string_append_c (out, '%');
      g_string_append_c (out, hex[*p >> 4]);
      g_string_append_c (out, hex[*p & 15]);
    }
  }
}

char *
tally_request_uri_format (const char *address,
                          gint64 amount,
                          const char *currency,
                          guint64 expires_at,
                          const char *display_name,
                          GError **error)
{
  return tally_request_uri_format_tagged (address, NULL, amount, currency, expires_at, display_name,
                                          error);
}

char *
tally_request_uri_format_tagged (const char *address,
                                 const char *tag,
                                 gint64 amount,
                                 const char *currency,
                                 guint64 expires_at,
                                 const char *display_name,
                                 GError **error)
{
  g_return_val_if_fail (address != NULL, NULL);
  TallyUriTransport transport;
  if (!check_fields (address, amount, currency, expires_at, display_name, &transport, error) ||
      (tag != NULL && !check_tag (tag, address, error)))
    return NULL;

  GString *out = g_string_new (TALLY_URI_PREFIX);
  g_string_append_printf (out, "v=%d", TALLY_URI_VERSION);
  append_encoded (out, "to", address);
  g_string_append_printf (out, "&amount=%" G_GINT64_FORMAT "&cur=%s&exp=%" G_GUINT64_FORMAT, amount,
                          currency, expires_at);
  if (tag != NULL)
    append_encoded (out, "tag", tag);
  if (display_name != NULL && *display_name != '\0')
    append_encoded (out, "name", display_name);
  /* Unreachable with the limits above (at most about 700 bytes). */
  g_assert (out->len <= TALLY_URI_MAX_LEN);
  return g_string_free (out, FALSE);
}

/* --- parse --- */

static const char *const uri_keys[] = { "v", "to", "amount", "cur", "exp", "name", "tag" };
enum
{
  KEY_V,
  KEY_TO,
  KEY_AMOUNT,
  KEY_CUR,
  KEY_EXP,
  KEY_NAME,
  KEY_TAG, /* optional, like KEY_NAME */
  N_KEYS
};

static int
hex_value (char c)
{
  if (g_ascii_isdigit (c))
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Decodes the value @start..@end of field @key; @offset is where it sits in
 * the URI, for the messages. */
static char *
decode_value (const char *key, const char *start, const char *end, gsize offset, GError **error)
{
  GString *out = g_string_sized_new ((gsize) (end - start));
  for (const char *p = start; p < end; p++) {
    gsize at = offset + (gsize) (p - start);
    if (*p == '%') {
      int hi = end - p >= 3 ? hex_value (p[1]) : -1;
      int lo = end - p >= 3 ? hex_value (p[2]) : -1;
      if (hi < 0 || lo < 0) {
        g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                     "%s: '%%' at byte %" G_GSIZE_FORMAT " is not followed by two hex digits", key,
                     at);
        goto fail;
      }
      if (hi == 0 && lo == 0) {
        g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                     "%s: %%00 at byte %" G_GSIZE_FORMAT " encodes a NUL byte", key, at);
        goto fail;
      }
      g_string_append_c (out, (char) (hi * 16 + lo));
      p += 2;
    } else if (g_ascii_isalnum (*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      g_string_append_c (out, *p);
    } else {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "%s: byte 0x%02X at %" G_GSIZE_FORMAT " must be percent-encoded", key,
                   (guchar) *p, at);
      goto fail;
    }
  }
  return g_string_free (out, FALSE);
fail:
  g_string_free (out, TRUE);
  return NULL;
}

/* Splits the query into the seven known fields; the first unknown field's
 * name goes to @unknown, so that a later version is told apart from a
 * malformed URI. */
static gboolean
split_query (const char *text,
             const char *query,
             char *values[N_KEYS],
             char **unknown,
             GError **error)
{
  const char *p = query;
  for (;;) {
    const char *amp = strchr (p, '&');
    const char *end = amp ? amp : p + strlen (p);
    const char *eq = memchr (p, '=', (gsize) (end - p));
    if (eq == NULL || eq == p) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "field at byte %td is not key=value",
                   p - text);
      return FALSE;
    }
    g_autofree char *key = g_strndup (p, (gsize) (eq - p));
    int k = 0;
    while (k < N_KEYS && strcmp (key, uri_keys[k]) != 0)
      k++;
    if (k == N_KEYS) {
      if (*unknown == NULL)
        *unknown = g_strescape (key, NULL);
    } else if (values[k] != NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "field \"%s\" appears twice", key);
      return FALSE;
    } else {
      values[k] = decode_value (key, eq + 1, end, (gsize) (eq + 1 - text), error);
      if (values[k] == NULL)
        return FALSE;
    }
    if (amp == NULL)
      return TRUE;
    p = amp + 1;
  }
}

/* Canonical decimal: digits, no sign, no leading zero. */
static gboolean
parse_decimal (const char *key, const char *text, guint64 max, guint64 *out, GError **error)
{
  guint64 v = 0;
  gboolean ok = is_digits (text) && (text[0] != '0' || text[1] == '\0');
  for (const char *p = text; ok && *p != '\0'; p++) {
    if (v > (max - (guint64) (*p - '0')) / 10) {
      g_set_error (error, TALLY_ERROR,
                   strcmp (key, "amount") == 0 ? TALLY_ERROR_OVERFLOW : TALLY_ERROR_MALFORMED,
                   "%s: %s exceeds the maximum %" G_GUINT64_FORMAT, key, text, max);
      return FALSE;
    }
    v = v * 10 + (guint64) (*p - '0');
  }
  if (!ok) {
    g_autofree char *shown = g_strescape (text, NULL);
    g_set_error (error, TALLY_ERROR,
                 strcmp (key, "amount") == 0 ? TALLY_ERROR_INVALID_AMOUNT : TALLY_ERROR_MALFORMED,
                 "%s: \"%s\" is not a decimal integer without sign or leading zero", key, shown);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

static gboolean
check_structure (const char *text, GError **error)
{
  gsize len = strlen (text);
  if (len > TALLY_URI_MAX_LEN) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "URI is %" G_GSIZE_FORMAT " bytes, at most %d", len, TALLY_URI_MAX_LEN);
    return FALSE;
  }
  if (!g_str_has_prefix (text, TALLY_URI_SCHEME ":")) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "not a tally: URI");
    return FALSE;
  }
  if (!g_str_has_prefix (text, TALLY_URI_PREFIX)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "a request URI starts with \"" TALLY_URI_PREFIX "\"");
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_version (const char *v, GError **error)
{
  if (v == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "missing field \"v\"");
    return FALSE;
  }
  if (strcmp (v, "1") != 0) {
    g_autofree char *shown = g_strescape (v, NULL);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_VERSION,
                 "v: version \"%s\" is not supported (this reader knows 1)", shown);
    return FALSE;
  }
  return TRUE;
}

TallyRequestUri *
tally_request_uri_parse (const char *text, GError **error)
{
  g_return_val_if_fail (text != NULL, NULL);
  char *values[N_KEYS] = { NULL };
  TallyRequestUri *uri = NULL;
  g_autofree char *unknown = NULL;
  guint64 amount = 0, expires_at = 0;

  if (!check_structure (text, error) ||
      !split_query (text, text + strlen (TALLY_URI_PREFIX), values, &unknown, error) ||
      !check_version (values[KEY_V], error))
    goto out;
  if (unknown != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "unknown field \"%s\"", unknown);
    goto out;
  }
  for (int k = KEY_TO; k < KEY_NAME; k++)
    if (values[k] == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "missing field \"%s\"", uri_keys[k]);
      goto out;
    }
  if (values[KEY_NAME] != NULL && values[KEY_NAME][0] == '\0') {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "name: empty (leave the field out when the payee has no name)");
    goto out;
  }
  if (!parse_decimal ("amount", values[KEY_AMOUNT], (guint64) TALLY_AMOUNT_MAX, &amount, error) ||
      !parse_decimal ("exp", values[KEY_EXP], G_MAXINT64, &expires_at, error))
    goto out;

  TallyUriTransport transport;
  if (!check_fields (values[KEY_TO], (gint64) amount, values[KEY_CUR], expires_at, values[KEY_NAME],
                     &transport, error) ||
      (values[KEY_TAG] != NULL && !check_tag (values[KEY_TAG], values[KEY_TO], error)))
    goto out;
  uri = g_new0 (TallyRequestUri, 1);
  uri->version = TALLY_URI_VERSION;
  uri->transport = transport;
  uri->address = g_steal_pointer (&values[KEY_TO]);
  uri->amount = (gint64) amount;
  uri->currency = g_steal_pointer (&values[KEY_CUR]);
  uri->expires_at = expires_at;
  uri->display_name = values[KEY_NAME] ? g_steal_pointer (&values[KEY_NAME]) : g_strdup ("");
  if (values[KEY_TAG] != NULL)
    uri->tag = g_steal_pointer (&values[KEY_TAG]);
  else
    uri->tag = g_strdup (transport == TALLY_URI_TRANSPORT_BLE ? uri->address + 4 : "");
out:
  for (int k = 0; k < N_KEYS; k++)
    g_free (values[k]);
  return uri;
}

gboolean
tally_request_uri_check_offer (const TallyRequestUri *uri,
                               guint64 now,
                               gint64 amount,
                               const char *currency,
                               const char *display_name,
                               GError **error)
{
  g_return_val_if_fail (uri != NULL, FALSE);

  if (now >= uri->expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the request expired %" G_GUINT64_FORMAT " s ago", now - uri->expires_at);
    return FALSE;
  }
  if (g_strcmp0 (currency, uri->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "the payee asks for %s, the request said %s", currency ? currency : "",
                 uri->currency);
    return FALSE;
  }
  if (amount != uri->amount) {
    g_autofree char *got = tally_amount_format (amount, currency);
    g_autofree char *want = tally_amount_format (uri->amount, uri->currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH,
                 "the payee asks for %s, the request said %s", got, want);
    return FALSE;
  }
  if (g_strcmp0 (display_name ? display_name : "", uri->display_name) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the payee is certified as \"%s\", the request named \"%s\"",
                 display_name ? display_name : "", uri->display_name);
    return FALSE;
  }
  return TRUE;
}
