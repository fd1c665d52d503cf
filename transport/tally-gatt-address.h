/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Payee addresses over Bluetooth LE:
 *
 *   "ble"                    the first payee found
 *   "ble:0a1b2c3d"           the payee advertising this request tag (hex)
 *   "ble:AA:BB:CC:DD:EE:FF"  the payee with this device address
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* The per-request tag a payee advertises so that a payer can pick the
 * right stall: fresh random bytes for every request, never a static
 * identifier. */
#define TALLY_GATT_TAG_BYTES 4

typedef enum
{
  TALLY_GATT_TARGET_ANY,
  TALLY_GATT_TARGET_TAG,
  TALLY_GATT_TARGET_ADDRESS,
} TallyGattTargetKind;

typedef struct
{
  TallyGattTargetKind kind;
  guint8 tag[TALLY_GATT_TAG_BYTES];
  char address[18]; /* upper case, colon separated */
} TallyGattTarget;

/* TRUE for "ble" and "ble:..." (whether or not the rest is valid). */
gboolean tally_gatt_is_address (const char *address);
/* INVALID_ARGUMENT naming what is wrong. */
gboolean tally_gatt_address_parse (const char *address, TallyGattTarget *target, GError **error);
/* "ble:0a1b2c3d" */
char *tally_gatt_tag_to_address (const guint8 tag[static TALLY_GATT_TAG_BYTES]);
const char *tally_gatt_target_kind_to_string (TallyGattTargetKind kind);

G_END_DECLS
