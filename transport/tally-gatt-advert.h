/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The payee's advertisement and its size.  Legacy advertising data is at
 * most 31 bytes, and the kernel adds a 3-byte Flags structure on an
 * LE-only controller.  Every other structure costs 2 bytes (length, type)
 * plus its data.
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* Manufacturer data carries the tag: the Bluetooth SIG's company
 * identifier for products that have none assigned yet.  Service data keyed
 * by our 128-bit UUID would not fit the legacy budget next to the UUID
 * list (tally_gatt_advertising_size ()). */
#define TALLY_GATT_COMPANY_ID 0xffff
#define TALLY_GATT_LEGACY_ADV_BYTES 31

typedef struct
{
  guint n_uuid128;              /* complete list of 128-bit service UUIDs */
  gsize service_data_uuid_bytes; /* 0: no service data; else 2, 4 or 16 */
  gsize service_data_bytes;
  gboolean manufacturer_data;    /* with its 2-byte company identifier */
  gsize manufacturer_data_bytes; /* after the company identifier */
  gsize local_name_bytes;        /* 0: no name */
} TallyGattAdvertising;

/* Ours: the service UUID, and the tag as manufacturer data when @tagged. */
void tally_gatt_advertising_init (TallyGattAdvertising *adv, gboolean tagged);
/* Bytes on air, Flags included. */
gsize tally_gatt_advertising_size (const TallyGattAdvertising *adv);
/* INVALID_ARGUMENT when the data exceeds TALLY_GATT_LEGACY_ADV_BYTES. */
gboolean tally_gatt_advertising_check (const TallyGattAdvertising *adv, GError **error);

G_END_DECLS
