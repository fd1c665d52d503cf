/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-hex.h"

#include <sodium.h>
#include <string.h>

#include "tally-error.h"

char *
tally_hex_encode (const guint8 *data, gsize len)
{
  char *hex = g_malloc (len * 2 + 1);
  sodium_bin2hex (hex, len * 2 + 1, data, len);
  return hex;
}

gboolean
tally_hex_decode (const char *hex, guint8 *out, gsize len, GError **error)
{
  size_t got = 0;
  if (hex == NULL || strlen (hex) != len * 2 ||
      sodium_hex2bin (out, len, hex, len * 2, NULL, &got, NULL) != 0 || got != len) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "expected %zu hex digits", len * 2);
    return FALSE;
  }
  return TRUE;
}
