/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The payee's device table: one session per connected device.  A
 * notification sent the shared way (a Value property change, or BlueZ's
 * single notify socket before 5.76) reaches every subscribed device, so it
 * may leave only while its device is the only one connected; in exclusive
 * mode the table admits one device at a time so that this holds.
 */

#include <gio/gio.h>

#include "tally-link.h"

G_BEGIN_DECLS

typedef struct _TallyGattDevices TallyGattDevices;

TallyGattDevices *tally_gatt_devices_new (guint max_served);
void tally_gatt_devices_free (TallyGattDevices *devices);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyGattDevices, tally_gatt_devices_free)

/* A device connected.  TRUE when it is served (now or already); FALSE when
 * every slot is taken and it must be disconnected. */
gboolean tally_gatt_devices_connected (TallyGattDevices *devices, const char *device);
/* The device disconnected; its link, if any, is returned (owned by the
 * caller) and removed. */
TallyLink *tally_gatt_devices_disconnected (TallyGattDevices *devices, const char *device);
gboolean tally_gatt_devices_is_served (TallyGattDevices *devices, const char *device);
guint tally_gatt_devices_get_connected_count (TallyGattDevices *devices);
guint tally_gatt_devices_get_served_count (TallyGattDevices *devices);

/* The link of a served device, or NULL. */
TallyLink *tally_gatt_devices_lookup (TallyGattDevices *devices, const char *device);
/* Stores @link (a reference is taken) for @device.  WRONG_STATE when the
 * device is not served, EXISTS when it has a link. */
gboolean tally_gatt_devices_set_link (TallyGattDevices *devices,
                                      const char *device,
                                      TallyLink *link,
                                      GError **error);
/* Forgets the link of @device (it stays served while connected); the
 * caller gets the reference back, or NULL. */
TallyLink *tally_gatt_devices_take_link (TallyGattDevices *devices, const char *device);
/* The served device whose link is @link, or NULL. */
const char *tally_gatt_devices_find_link (TallyGattDevices *devices, TallyLink *link);
/* TRUE when a notification every subscriber sees may go to @device: it is
 * served and no other device is connected. */
gboolean tally_gatt_devices_may_broadcast (TallyGattDevices *devices, const char *device);
/* The connected devices, served or not. */
GPtrArray *tally_gatt_devices_list_connected (TallyGattDevices *devices);

G_END_DECLS
