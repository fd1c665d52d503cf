/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The payee's side of Bluetooth LE: a GATT server and its advertisement,
 * exported on the system bus and registered with BlueZ; each payer's
 * device gets a TallyLink (tally-gatt-link.h). */

#include <gio/gio.h>

#include "tally-gatt-address.h"
#include "tally-link.h"

G_BEGIN_DECLS

typedef struct _TallyGattServer TallyGattServer;

/* A payer's device has a link.  The callback borrows it: it takes a
 * reference to keep it, and the link closes when it does not. */
typedef void (*TallyGattServerLinkFunc) (TallyGattServer *server,
                                         TallyLink *link,
                                         gpointer user_data);

/* BlueZ refused the advertisement of @tag (RegisterAdvertisement
 * failed): it is off the air and forgotten, and @tag is not advertised
 * until added again. */
typedef void (*TallyGattServerAdvertFailedFunc) (TallyGattServer *server,
                                                 const guint8 *tag,
                                                 const GError *error,
                                                 gpointer user_data);

typedef enum
{
  /* BlueZ before 5.76 (one notify socket for all devices, and before 5.69
   * one write socket too) or of unknown version: one device at a time,
   * writes through WriteValue so every fragment names its device. */
  TALLY_GATT_SERVER_EXCLUSIVE,
  /* BlueZ 5.76 or later: one write and one notify socket per device,
   * several devices at once. */
  TALLY_GATT_SERVER_PER_DEVICE,
} TallyGattServerMode;

const char *tally_gatt_server_mode_to_string (TallyGattServerMode mode);
/* From Adapter1.Modalias ("usb:v1D6Bp0246d054C" is BlueZ 5.76);
 * EXCLUSIVE unless it names BlueZ 5.76 or later. */
TallyGattServerMode tally_gatt_server_mode_from_modalias (const char *modalias);

/* Exports the application on @system_bus and registers it with
 * GattManager1 of @adapter ("hci0").  @max_devices bounds the devices
 * served at once in PER_DEVICE mode.  @on_link runs on the thread-default
 * main context of this call, as everything of the server does;
 * @user_data_destroy frees @user_data once the server is gone (or was
 * never made). */
void tally_gatt_server_new_async (GDBusConnection *system_bus,
                                  const char *adapter,
                                  guint max_devices,
                                  TallyGattServerLinkFunc on_link,
                                  gpointer user_data,
                                  GDestroyNotify user_data_destroy,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer callback_data);
TallyGattServer *tally_gatt_server_new_finish (GAsyncResult *result, GError **error);
TallyGattServer *tally_gatt_server_ref (TallyGattServer *server);
/* The last reference unregisters and unexports; every link reports
 * DISCONNECTED. */
void tally_gatt_server_unref (TallyGattServer *server);
/* The owner's tally_gatt_server_unref (). */
void tally_gatt_server_free (TallyGattServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyGattServer, tally_gatt_server_unref)

TallyGattServerMode tally_gatt_server_get_mode (TallyGattServer *server);
const char *tally_gatt_server_get_adapter (TallyGattServer *server);

/* A central that connects and starts no session (no write, no acquired
 * socket) within this many seconds is disconnected, in either mode, so a
 * silent one holds no slot for long. */
#define TALLY_GATT_SERVER_DEFAULT_IDLE_SECONDS 15
/* Sets that deadline for devices that connect from now on (> 0). */
void tally_gatt_server_set_idle_timeout (TallyGattServer *server, guint seconds);

/* Advertises the service with @tag (NULL: no tag) until stopped; a new
 * call replaces the advertisement.  Registration finishes in the
 * background; failures are logged and reported by
 * tally_gatt_server_is_advertising (). */
void tally_gatt_server_advertise (TallyGattServer *server, const guint8 *tag);
/* Advertises @tag as well, in an advertisement instance of its own (one
 * per open request; BlueZ's LEAdvertisingManager1 holds several).  POLICY
 * when the controller has no free instance left for it
 * (LEAdvertisingManager1.SupportedInstances, as BlueZ last reported it);
 * TRUE at once when @tag is already advertised. */
gboolean
tally_gatt_server_add_advertisement (TallyGattServer *server, const guint8 *tag, GError **error);
/* @func hears of every tagged advertisement BlueZ refused, with the
 * user_data of tally_gatt_server_new_async (); NULL: none does. */
void tally_gatt_server_set_advert_failed_func (TallyGattServer *server,
                                               TallyGattServerAdvertFailedFunc func);
/* Stops advertising @tag, leaving the others on the air. */
void tally_gatt_server_remove_advertisement (TallyGattServer *server, const guint8 *tag);
/* Stops every advertisement. */
void tally_gatt_server_stop_advertising (TallyGattServer *server);
gboolean tally_gatt_server_is_advertising (TallyGattServer *server);

G_END_DECLS
