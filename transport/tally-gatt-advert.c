/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-advert.h"

#include <string.h>

#include "tally-core.h"
#include "tally-gatt-address.h"

#define AD_STRUCTURE_HEADER 2 /* length and type */
#define AD_FLAGS_BYTES      3
#define AD_COMPANY_ID_BYTES 2

void
tally_gatt_advertising_init (TallyGattAdvertising *adv, gboolean tagged)
{
  g_return_if_fail (adv != NULL);

  memset (adv, 0, sizeof *adv);
  adv->n_uuid128 = 1;
  adv->manufacturer_data = tagged;
  adv->manufacturer_data_bytes = tagged ? TALLY_GATT_TAG_BYTES : 0;
}

gsize
tally_gatt_advertising_size (const TallyGattAdvertising *adv)
{
  gsize size = AD_FLAGS_BYTES;

  g_return_val_if_fail (adv != NULL, 0);

  if (adv->n_uuid128 > 0)
    size += AD_STRUCTURE_HEADER + 16 * (gsize) adv->n_uuid128;
  if (adv->service_data_uuid_bytes > 0)
    size += AD_STRUCTURE_HEADER + adv->service_data_uuid_bytes + adv->service_data_bytes;
  if (adv->manufacturer_data)
    size += AD_STRUCTURE_HEADER + AD_COMPANY_ID_BYTES + adv->manufacturer_data_bytes;
  if (adv->local_name_bytes > 0)
    size += AD_STRUCTURE_HEADER + adv->local_name_bytes;
  return size;
}

gboolean
tally_gatt_advertising_check (const TallyGattAdvertising *adv, GError **error)
{
  gsize size;

  g_return_val_if_fail (adv != NULL, FALSE);

  if (adv->service_data_uuid_bytes != 0 && adv->service_data_uuid_bytes != 2 &&
      adv->service_data_uuid_bytes != 4 && adv->service_data_uuid_bytes != 16) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "service data UUIDs have 2, 4 or 16 bytes, not %" G_GSIZE_FORMAT,
                 adv->service_data_uuid_bytes);
    return FALSE;
  }
  size = tally_gatt_advertising_size (adv);
  if (size > TALLY_GATT_LEGACY_ADV_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "advertising data of %" G_GSIZE_FORMAT " bytes (Flags included) exceeds the "
                 "legacy limit of %d",
                 size, TALLY_GATT_LEGACY_ADV_BYTES);
    return FALSE;
  }
  return TRUE;
}
