/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The GATT server's parts (tally-gatt-server*.c) and what they share:
 * private to transport/. */

#include "tally-bluez-private.h"
#include "tally-gatt-devices.h"
#include "tally-gatt-server.h"

G_BEGIN_DECLS

typedef enum
{
  ADV_IDLE,
  ADV_REGISTERING,
  ADV_ACTIVE,
  ADV_UNREGISTERING,
} AdvState;

/* One LE advertisement instance: APP/adv0, the first, exported with the
 * application; APP/advN (N >= 1) for each further open request. */
typedef struct
{
  TallyGattServer *server;
  char *path;
  guint object_id; /* its own registration; 0 for adv0 */
  AdvState state;
  gboolean wanted;
  gboolean tagged_wanted;
  guint8 tag_wanted[TALLY_GATT_TAG_BYTES];
  gboolean tagged; /* what the exported advertisement says */
  guint8 tag[TALLY_GATT_TAG_BYTES];
  gboolean registered;
  gboolean removed; /* not wanted again: freed once BlueZ let it go */
} GattAdvert;

typedef enum
{
  SERVER_STARTING,
  SERVER_REGISTERED,
  SERVER_STOPPED,
} ServerState;

struct _TallyGattServer
{
  gint ref_count;
  ServerState state;
  GDBusConnection *bus;
  char *adapter;
  char *adapter_path;
  char *app_path;
  char *service_path;
  char *rx_path;
  char *tx_path;
  char *adv_path;
  TallyGattServerMode mode;
  guint max_devices;
  TallyGattDevices *devices;
  GHashTable *paired;      /* device path -> GINT_TO_POINTER (paired or trusted) */
  GHashTable *idle_timers; /* device path -> GSource */
  guint idle_seconds;      /* a connected device's time to start a session */
  TallyGattServerLinkFunc on_link;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
  TallyGattServerAdvertFailedFunc on_advert_failed; /* with @user_data */
  GMainContext *context;

  guint object_ids[5];
  TallyBluezWatch props_watch;
  TallyBluezWatch added_watch;
  TallyBluezWatch removed_watch;
  guint name_watch;
  char *bluez_owner; /* unique name of bluetoothd */
  guint notify_sessions; /* StartNotify minus StopNotify */

  GPtrArray *adverts; /* GattAdvert *, adv0 first, always there */
  guint last_advert;  /* N of the newest APP/advN */
  /* LEAdvertisingManager1.SupportedInstances (instances still free), -1
   * while BlueZ has not said. */
  gint adv_free_instances;
  /* LEAdvertisingManager1.ActiveInstances (every advertiser's), and how
   * many of them were ours when BlueZ said so. */
  guint adv_active_instances;
  guint adv_ours_when_noted;
  TallyBluezWatch adv_manager_watch;
  GCancellable *adv_cancel;
};

/* tally-gatt-server.c */
void gatt_server_enter_state (TallyGattServer *server, ServerState state);

/* tally-gatt-server-app.c: the GATT application's objects */
gboolean gatt_server_export_objects (TallyGattServer *server, GError **error);
/* LEAdvertisement1, for the further instances tally-gatt-server-advert.c
 * exports. */
GDBusInterfaceInfo *gatt_server_adv_interface_info (void);

/* tally-gatt-server-advert.c */
extern const GDBusInterfaceVTable gatt_server_adv_vtable;
GattAdvert *gatt_server_advert_new (TallyGattServer *server, const char *path);
void gatt_server_advert_free (GattAdvert *advert);
/* adv0, which is exported with the application. */
GattAdvert *gatt_server_advert0 (TallyGattServer *server);
/* Whether any instance is wanted on the air. */
gboolean gatt_server_adv_wanted (TallyGattServer *server);
/* BlueZ forgot every advertisement (bluetoothd went away). */
void gatt_server_adv_forget_all (TallyGattServer *server);
/* Unregisters what is registered, without waiting (the server goes). */
void gatt_server_adv_unregister_all (TallyGattServer *server);
void gatt_server_adv_reconcile (TallyGattServer *server);
/* The adapter's LEAdvertisingManager1 properties, from GetManagedObjects
 * or PropertiesChanged. */
void gatt_server_adv_note_manager (TallyGattServer *server, GVariant *props);

/* tally-gatt-server-devices.c: devices and their links */
void gatt_server_watch_bluez (TallyGattServer *server);
void gatt_server_unwatch_bluez (TallyGattServer *server);
void gatt_server_note_devices (TallyGattServer *server, GVariant *objects);
void gatt_server_update_pause (TallyGattServer *server);
TallyLink *gatt_server_link_for_options (TallyGattServer *server,
                                         GVariant *options,
                                         gboolean *created,
                                         GError **error);
void gatt_server_announce_link (TallyGattServer *server, TallyLink *link);
void gatt_server_drop_all_links (TallyGattServer *server, const char *why);

G_END_DECLS
