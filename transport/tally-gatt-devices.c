/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-devices.h"

#include "tally-core.h"

typedef struct
{
  char *device;
  gboolean served;
  TallyLink *link;
} DeviceEntry;

struct _TallyGattDevices
{
  guint max_served;
  GHashTable *entries; /* device path -> DeviceEntry */
};

static void
device_entry_free (DeviceEntry *entry)
{
  g_free (entry->device);
  g_clear_pointer (&entry->link, tally_link_unref);
  g_free (entry);
}

TallyGattDevices *
tally_gatt_devices_new (guint max_served)
{
  TallyGattDevices *devices;

  g_return_val_if_fail (max_served > 0, NULL);

  devices = g_new0 (TallyGattDevices, 1);
  devices->max_served = max_served;
  devices->entries =
    g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) device_entry_free);
  return devices;
}

void
tally_gatt_devices_free (TallyGattDevices *devices)
{
  if (devices == NULL)
    return;
  g_hash_table_destroy (devices->entries);
  g_free (devices);
}

gboolean
tally_gatt_devices_connected (TallyGattDevices *devices, const char *device)
{
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && device != NULL, FALSE);

  entry = g_hash_table_lookup (devices->entries, device);
  if (entry != NULL)
    return entry->served;

  entry = g_new0 (DeviceEntry, 1);
  entry->device = g_strdup (device);
  entry->served = tally_gatt_devices_get_served_count (devices) < devices->max_served;
  g_hash_table_insert (devices->entries, entry->device, entry);
  g_debug ("device %s connected, %s", device, entry->served ? "served" : "not served: no slot");
  return entry->served;
}

TallyLink *
tally_gatt_devices_disconnected (TallyGattDevices *devices, const char *device)
{
  DeviceEntry *entry;
  TallyLink *link;

  g_return_val_if_fail (devices != NULL && device != NULL, NULL);

  entry = g_hash_table_lookup (devices->entries, device);
  if (entry == NULL)
    return NULL;
  link = g_steal_pointer (&entry->link);
  g_hash_table_remove (devices->entries, device);
  g_debug ("device %s disconnected", device);
  return link;
}

gboolean
tally_gatt_devices_is_served (TallyGattDevices *devices, const char *device)
{
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && device != NULL, FALSE);

  entry = g_hash_table_lookup (devices->entries, device);
  return entry != NULL && entry->served;
}

guint
tally_gatt_devices_get_connected_count (TallyGattDevices *devices)
{
  g_return_val_if_fail (devices != NULL, 0);

  return g_hash_table_size (devices->entries);
}

guint
tally_gatt_devices_get_served_count (TallyGattDevices *devices)
{
  GHashTableIter iter;
  DeviceEntry *entry;
  guint n = 0;

  g_return_val_if_fail (devices != NULL, 0);

  g_hash_table_iter_init (&iter, devices->entries);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &entry))
    if (entry->served)
      n++;
  return n;
}

TallyLink *
tally_gatt_devices_lookup (TallyGattDevices *devices, const char *device)
{
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && device != NULL, NULL);

  entry = g_hash_table_lookup (devices->entries, device);
  return entry != NULL ? entry->link : NULL;
}

gboolean
tally_gatt_devices_set_link (TallyGattDevices *devices,
                             const char *device,
                             TallyLink *link,
                             GError **error)
{
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && device != NULL && link != NULL, FALSE);

  entry = g_hash_table_lookup (devices->entries, device);
  if (entry == NULL || !entry->served) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "device %s is not served: another payer holds the payee", device);
    return FALSE;
  }
  if (entry->link != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "device %s already has a session", device);
    return FALSE;
  }
  entry->link = tally_link_ref (link);
  return TRUE;
}

TallyLink *
tally_gatt_devices_take_link (TallyGattDevices *devices, const char *device)
{
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && device != NULL, NULL);

  entry = g_hash_table_lookup (devices->entries, device);
  return entry != NULL ? g_steal_pointer (&entry->link) : NULL;
}

const char *
tally_gatt_devices_find_link (TallyGattDevices *devices, TallyLink *link)
{
  GHashTableIter iter;
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL && link != NULL, NULL);

  g_hash_table_iter_init (&iter, devices->entries);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &entry))
    if (entry->link == link)
      return entry->device;
  return NULL;
}

gboolean
tally_gatt_devices_may_broadcast (TallyGattDevices *devices, const char *device)
{
  g_return_val_if_fail (devices != NULL && device != NULL, FALSE);

  return tally_gatt_devices_is_served (devices, device) && g_hash_table_size (devices->entries) == 1;
}

GPtrArray *
tally_gatt_devices_list_connected (TallyGattDevices *devices)
{
  GPtrArray *list = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  DeviceEntry *entry;

  g_return_val_if_fail (devices != NULL, list);

  g_hash_table_iter_init (&iter, devices->entries);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &entry))
    g_ptr_array_add (list, g_strdup (entry->device));
  return list;
}
