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
  GMainContext *context;

  guint object_ids[5];
  TallyBluezWatch props_watch;
  TallyBluezWatch added_watch;
  TallyBluezWatch removed_watch;
  guint name_watch;
  char *bluez_owner; /* unique name of bluetoothd */
  guint notify_sessions; /* StartNotify minus StopNotify */

  AdvState adv_state;
  gboolean adv_wanted;
  gboolean adv_tagged_wanted;
  guint8 adv_tag_wanted[TALLY_GATT_TAG_BYTES];
  gboolean adv_tagged; /* what the exported advertisement says */
  guint8 adv_tag[TALLY_GATT_TAG_BYTES];
  GCancellable *adv_cancel;
  gboolean adv_registered;
};

/* tally-gatt-server.c */
void gatt_server_enter_state (TallyGattServer *server, ServerState state);

/* tally-gatt-server-app.c: the GATT application's objects */
gboolean gatt_server_export_objects (TallyGattServer *server, GError **error);

/* tally-gatt-server-advert.c */
extern const GDBusInterfaceVTable gatt_server_adv_vtable;
void gatt_server_adv_enter_state (TallyGattServer *server, AdvState state);
void gatt_server_adv_reconcile (TallyGattServer *server);

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
