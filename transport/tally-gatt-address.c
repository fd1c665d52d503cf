/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-address.h"

#include <string.h>

#include "tally-error.h"
#include "tally-hex.h"

#define ADDRESS_USAGE "expected ble, ble:TAG (8 hex digits) or ble:AA:BB:CC:DD:EE:FF"

gboolean
tally_gatt_is_address (const char *address)
{
  g_return_val_if_fail (address != NULL, FALSE);

  return strcmp (address, "ble") == 0 || g_str_has_prefix (address, "ble:");
}

static gboolean
parse_device_address (const char *text, char out[18])
{
  if (strlen (text) != 17)
    return FALSE;
  for (guint i = 0; i < 17; i++) {
    if (i % 3 == 2) {
      if (text[i] != ':')
        return FALSE;
    } else if (!g_ascii_isxdigit (text[i])) {
      return FALSE;
    }
    out[i] = g_ascii_toupper (text[i]);
  }
  out[17] = '\0';
  return TRUE;
}

gboolean
tally_gatt_address_parse (const char *address, TallyGattTarget *target, GError **error)
{
  const char *rest;

  g_return_val_if_fail (address != NULL && target != NULL, FALSE);

  memset (target, 0, sizeof *target);
  if (strcmp (address, "ble") == 0) {
    target->kind = TALLY_GATT_TARGET_ANY;
    return TRUE;
  }
  if (!g_str_has_prefix (address, "ble:")) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "\"%s\": " ADDRESS_USAGE,
                 address);
    return FALSE;
  }
  rest = address + strlen ("ble:");

  if (strlen (rest) == 2 * TALLY_GATT_TAG_BYTES) {
    if (!tally_hex_decode (rest, target->tag, TALLY_GATT_TAG_BYTES, NULL)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "\"%s\": the tag \"%s\" is not 8 hex digits", address, rest);
      return FALSE;
    }
    target->kind = TALLY_GATT_TARGET_TAG;
    return TRUE;
  }
  if (parse_device_address (rest, target->address)) {
    target->kind = TALLY_GATT_TARGET_ADDRESS;
    return TRUE;
  }
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "\"%s\": " ADDRESS_USAGE, address);
  return FALSE;
}

char *
tally_gatt_tag_to_address (const guint8 tag[static TALLY_GATT_TAG_BYTES])
{
  g_autofree char *hex = tally_hex_encode (tag, TALLY_GATT_TAG_BYTES);

  return g_strdup_printf ("ble:%s", hex);
}

const char *
tally_gatt_target_kind_to_string (TallyGattTargetKind kind)
{
  switch (kind) {
  case TALLY_GATT_TARGET_ANY: return "any";
  case TALLY_GATT_TARGET_TAG: return "tag";
  case TALLY_GATT_TARGET_ADDRESS: return "address";
  }
  return "unknown";
}
