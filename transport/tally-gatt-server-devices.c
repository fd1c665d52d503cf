/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-server-private.h"

#include <string.h>

#include "tally-bluez-private.h"
#include "tally-gatt-link.h"

/* The payee's view of BlueZ's devices: which are connected and served,
 * and the link of each payer's device, keyed by the "device" option BlueZ
 * passes with WriteValue, AcquireWrite and AcquireNotify. */

/* "/org/bluez/hci0/dev_00_AA_01_01_00_01" -> "ble:00:AA:01:01:00:01" */
static char *
device_peer_name (const char *device)
{
  const char *base = strrchr (device, '/');
  g_autofree char *address = NULL;

  if (base == NULL || !g_str_has_prefix (base + 1, "dev_"))
    return g_strdup (device);
  address = g_strdup (base + 1 + strlen ("dev_"));
  g_strdelimit (address, "_", ':');
  return g_strdup_printf ("ble:%s", address);
}

static gboolean
is_our_device (TallyGattServer *server, const char *path)
{
  return tally_bluez_is_adapter_device (server->adapter_path, path);
}

static void
disconnect_device (TallyGattServer *server, const char *device)
{
  tally_bluez_call_ignoring (server->bus, device, DEVICE_IFACE, "Disconnect",
                             g_strdup_printf ("disconnecting %s", device));
}

/* A notification the shared way may leave only while its device is the
 * only one connected; a per-device socket (BlueZ 5.76 on) reaches its
 * device alone. */
void
gatt_server_update_pause (TallyGattServer *server)
{
  g_autoptr (GPtrArray) connected = tally_gatt_devices_list_connected (server->devices);

  for (guint i = 0; i < connected->len; i++) {
    const char *device = connected->pdata[i];
    TallyLink *link = tally_gatt_devices_lookup (server->devices, device);
    gboolean isolated;

    if (link == NULL)
      continue;
    isolated = server->mode == TALLY_GATT_SERVER_PER_DEVICE && tally_gatt_link_has_tx_fd (link);
    tally_gatt_link_set_paused (link,
                                !isolated && !tally_gatt_devices_may_broadcast (server->devices, device));
  }
}

static void
cancel_idle_timer (TallyGattServer *server, const char *device)
{
  GSource *source = g_hash_table_lookup (server->idle_timers, device);

  if (source != NULL) {
    g_source_destroy (source);
    g_hash_table_remove (server->idle_timers, device);
  }
}

typedef struct
{
  TallyGattServer *server;
  char *device;
} IdleTimer;

static void
idle_timer_free (IdleTimer *timer)
{
  g_free (timer->device);
  g_free (timer);
}

static gboolean
idle_timer_cb (gpointer user_data)
{
  IdleTimer *timer = user_data;
  TallyGattServer *server = timer->server;
  g_autofree char *device = g_strdup (timer->device);

  /* Removing the entry destroys this source and @timer with it. */
  g_hash_table_remove (server->idle_timers, device);
  if (tally_gatt_devices_is_served (server->devices, device) &&
      tally_gatt_devices_lookup (server->devices, device) == NULL) {
    g_info ("gatt server %s: %s started no session within %u s, disconnecting it", server->adapter,
            device, server->idle_seconds);
    disconnect_device (server, device);
  }
  return G_SOURCE_REMOVE;
}

static void
start_idle_timer (TallyGattServer *server, const char *device)
{
  IdleTimer *timer = g_new0 (IdleTimer, 1);
  /* A device that connects but starts no session within this time gives
   * its slot back (tally_gatt_server_set_idle_timeout ()). */
  GSource *source = g_timeout_source_new_seconds (server->idle_seconds);

  cancel_idle_timer (server, device);
  timer->server = server;
  timer->device = g_strdup (device);
  g_source_set_callback (source, idle_timer_cb, timer, (GDestroyNotify) idle_timer_free);
  g_source_set_static_name (source, "[tally] gatt idle device");
  g_source_attach (source, server->context);
  g_hash_table_insert (server->idle_timers, g_strdup (device), source);
}

/* A device connected, or acted on our characteristics before we heard of
 * its connection.  FALSE when it is not served. */
static gboolean
device_connected (TallyGattServer *server, const char *device)
{
  gboolean known = tally_gatt_devices_is_served (server->devices, device);
  gboolean served;

  if (known)
    return TRUE;
  served = tally_gatt_devices_connected (server->devices, device);
  if (!served) {
    g_info ("gatt server %s: refusing %s: serving %u device(s), the most in %s mode",
            server->adapter, device, tally_gatt_devices_get_served_count (server->devices),
            tally_gatt_server_mode_to_string (server->mode));
    disconnect_device (server, device);
  } else {
    g_info ("gatt server %s: serving %s", server->adapter, device);
    start_idle_timer (server, device);
  }
  gatt_server_update_pause (server);
  gatt_server_adv_reconcile (server);
  return served;
}

static void
device_disconnected (TallyGattServer *server, const char *device)
{
  TallyLink *link;

  if (!tally_gatt_devices_is_served (server->devices, device) &&
      tally_gatt_devices_get_connected_count (server->devices) == 0)
    return;
  cancel_idle_timer (server, device);
  link = tally_gatt_devices_disconnected (server->devices, device);
  if (link != NULL) {
    /* The table's reference, held across the report. */
    tally_gatt_link_lost (link, "the device disconnected");
    tally_link_unref (link);
  }
  gatt_server_update_pause (server);
  /* A slot is free again. */
  gatt_server_adv_reconcile (server);
}

static gboolean
server_link_send (gpointer owner, TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  TallyGattServer *server = owner;
  g_autoptr (GError) local = NULL;
  GVariantBuilder changed;
  const char *device = tally_gatt_devices_find_link (server->devices, link);

  if (device == NULL || !tally_gatt_devices_may_broadcast (server->devices, device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                 "%s: a notification now would reach other devices too",
                 tally_link_get_peer (link));
    return FALSE;
  }

  g_variant_builder_init (&changed, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&changed, "{sv}", "Value",
                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1));
  if (!g_dbus_connection_emit_signal (server->bus, NULL, server->tx_path, PROPERTIES_IFACE,
                                      "PropertiesChanged",
                                      g_variant_new ("(sa{sv}as)", GATT_CHRC_IFACE, &changed, NULL),
                                      &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "notifying %s: %s",
                 tally_link_get_peer (link), local->message);
    return FALSE;
  }
  return TRUE;
}

static void
server_link_stopped (gpointer owner, TallyLink *link)
{
  TallyGattServer *server = owner;
  const char *device = tally_gatt_devices_find_link (server->devices, link);
  TallyLink *taken;

  if (device == NULL)
    return;
  g_info ("gatt server %s: session with %s over", server->adapter, device);
  /* The slot frees once BlueZ reports the disconnection. */
  disconnect_device (server, device);
  taken = tally_gatt_devices_take_link (server->devices, device);
  /* Inside the link's own close, whose caller holds a reference across it
   * (handle_acquire (), the link's I/O callbacks, the link's user). */
  tally_link_unref (taken);
}

static const TallyGattLinkOwner server_link_owner = {
  .send = server_link_send,
  .stopped = server_link_stopped,
};

/* The link of the device named in @options; *created tells whether it is
 * new, in which case the caller announces it once its sockets are set. */
TallyLink *
gatt_server_link_for_options (TallyGattServer *server,
                              GVariant *options,
                              gboolean *created,
                              GError **error)
{
  const char *device = NULL;
  guint16 att_mtu = 0;
  gsize mtu;
  TallyLink *link;
  g_autofree char *peer = NULL;

  *created = FALSE;
  if (!g_variant_lookup (options, "device", "&o", &device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "BlueZ named no device");
    return NULL;
  }
  if (!g_variant_lookup (options, "mtu", "q", &att_mtu))
    att_mtu = TALLY_GATT_ATT_MIN_MTU;
  /* The payee only notifies: what BlueZ can notify whole is the limit. */
  mtu = MAX (tally_gatt_notify_payload_for_att_mtu (att_mtu), (gsize) TALLY_FRAME_MIN_MTU);

  if (!device_connected (server, device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "%s is not served", device);
    return NULL;
  }

  link = tally_gatt_devices_lookup (server->devices, device);
  if (link != NULL) {
    if (mtu > tally_link_get_mtu (link))
      tally_link_set_mtu (link, mtu);
    return link;
  }

  peer = device_peer_name (device);
  link = tally_gatt_link_new (mtu, peer, &server_link_owner, server);
  if (!tally_gatt_devices_set_link (server->devices, device, link, error)) {
    tally_gatt_link_detach (link);
    tally_link_unref (link);
    return NULL;
  }
  /* The table holds the reference now. */
  tally_link_unref (link);
  cancel_idle_timer (server, device);
  g_info ("gatt server %s: session with %s, ATT MTU %u, %s mode", server->adapter, peer, att_mtu,
          tally_gatt_server_mode_to_string (server->mode));
  *created = TRUE;
  return link;
}

void
gatt_server_announce_link (TallyGattServer *server, TallyLink *link)
{
  g_autoptr (TallyLink) ref = tally_link_ref (link);

  gatt_server_update_pause (server);
  server->on_link (server, link, server->user_data);
}

/* --- BlueZ's devices ------------------------------------------------------------- */

/* Devices that are paired or trusted belong to the user (a keyboard, a
 * watch): the payee neither counts nor disconnects them.  Payers never
 * pair. */
static void
note_device_properties (TallyGattServer *server, const char *device, GVariant *props)
{
  gboolean paired = FALSE, trusted = FALSE, connected = FALSE;
  gboolean has_paired = g_variant_lookup (props, "Paired", "b", &paired);
  gboolean has_trusted = g_variant_lookup (props, "Trusted", "b", &trusted);
  gpointer old = NULL;
  gboolean known = g_hash_table_lookup_extended (server->paired, device, NULL, &old);
  gboolean personal = (has_paired && paired) || (has_trusted && trusted) ||
                      (known && !has_paired && !has_trusted && GPOINTER_TO_INT (old));

  g_hash_table_insert (server->paired, g_strdup (device), GINT_TO_POINTER (personal));

  if (!g_variant_lookup (props, "Connected", "b", &connected) || personal)
    return;
  if (connected) {
    /* Only while we serve: the daemon's own outgoing connections on this
     * adapter are none of the payee's business otherwise. */
    if (gatt_server_adv_wanted (server) ||
        tally_gatt_devices_get_served_count (server->devices) > 0)
      device_connected (server, device);
  } else {
    device_disconnected (server, device);
  }
}

static void
on_device_properties_changed (const char *path,
                              const char *iface,
                              GVariant *changed,
                              gpointer user_data)
{
  TallyGattServer *server = user_data;
  /* Held across reports to links' users, who may drop the server. */
  g_autoptr (TallyGattServer) ref = tally_gatt_server_ref (server);

  if (!is_our_device (server, path))
    return;
  if (strcmp (iface, DEVICE_IFACE) == 0)
    note_device_properties (server, path, changed);
}

static void
on_interfaces_added (const char *object, GVariant *ifaces, gpointer user_data)
{
  TallyGattServer *server = user_data;
  /* Held across reports to links' users, who may drop the server. */
  g_autoptr (TallyGattServer) ref = tally_gatt_server_ref (server);
  g_autoptr (GVariant) props = NULL;

  if (!is_our_device (server, object))
    return;
  props = g_variant_lookup_value (ifaces, DEVICE_IFACE, G_VARIANT_TYPE_VARDICT);
  if (props != NULL)
    note_device_properties (server, object, props);
}

static void
on_interfaces_removed (const char *object, const char *const *ifaces, gpointer user_data)
{
  TallyGattServer *server = user_data;
  /* Held across reports to links' users, who may drop the server. */
  g_autoptr (TallyGattServer) ref = tally_gatt_server_ref (server);

  if (!is_our_device (server, object) || !g_strv_contains (ifaces, DEVICE_IFACE))
    return;
  device_disconnected (server, object);
  g_hash_table_remove (server->paired, object);
}

void
gatt_server_drop_all_links (TallyGattServer *server, const char *why)
{
  g_autoptr (GPtrArray) connected = tally_gatt_devices_list_connected (server->devices);

  for (guint i = 0; i < connected->len; i++) {
    TallyLink *link = tally_gatt_devices_disconnected (server->devices, connected->pdata[i]);

    if (link != NULL) {
      tally_gatt_link_detach (link);
      tally_gatt_link_lost (link, why);
      tally_link_unref (link);
    }
  }
}

static void
on_bluez_appeared (GDBusConnection *connection,
                   const char *name,
                   const char *owner,
                   gpointer user_data)
{
  TallyGattServer *server = user_data;

  g_free (server->bluez_owner);
  server->bluez_owner = g_strdup (owner);
}

static void
on_bluez_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  TallyGattServer *server = user_data;
  g_autoptr (TallyGattServer) ref = tally_gatt_server_ref (server);

  g_clear_pointer (&server->bluez_owner, g_free);

  switch (server->state) {
  case SERVER_REGISTERED:
    break;
  case SERVER_STARTING:
  case SERVER_STOPPED:
    return;
  }
  g_warning ("gatt server %s: bluetoothd went away; BLE payments stop until tallyd restarts",
             server->adapter);
  gatt_server_drop_all_links (server, "bluetoothd went away");
  gatt_server_adv_forget_all (server);
  gatt_server_enter_state (server, SERVER_STOPPED);
}

/* How many advertising instances the controller has free. */
static void
on_adv_manager_changed (const char *path, const char *iface, GVariant *changed, gpointer user_data)
{
  TallyGattServer *server = user_data;

  if (strcmp (path, server->adapter_path) == 0 && strcmp (iface, ADV_MANAGER_IFACE) == 0)
    gatt_server_adv_note_manager (server, changed);
}

/* BlueZ's devices coming, changing and going, and bluetoothd itself. */
void
gatt_server_watch_bluez (TallyGattServer *server)
{
  tally_bluez_watch_properties (&server->props_watch, server->bus, DEVICE_IFACE,
                                on_device_properties_changed, server, NULL);
  tally_bluez_watch_properties (&server->adv_manager_watch, server->bus, ADV_MANAGER_IFACE,
                                on_adv_manager_changed, server, NULL);
  tally_bluez_watch_added (&server->added_watch, server->bus, on_interfaces_added, server, NULL);
  tally_bluez_watch_removed (&server->removed_watch, server->bus, on_interfaces_removed, server,
                             NULL);
  server->name_watch = g_bus_watch_name_on_connection (
    server->bus, BLUEZ, G_BUS_NAME_WATCHER_FLAGS_NONE, on_bluez_appeared, on_bluez_vanished, server,
    NULL);
}

void
gatt_server_unwatch_bluez (TallyGattServer *server)
{
  tally_bluez_unwatch (&server->props_watch, server->bus);
  tally_bluez_unwatch (&server->adv_manager_watch, server->bus);
  tally_bluez_unwatch (&server->added_watch, server->bus);
  tally_bluez_unwatch (&server->removed_watch, server->bus);
  if (server->name_watch != 0)
    g_bus_unwatch_name (server->name_watch);
  server->name_watch = 0;
}

/* The devices BlueZ knew before we watched it: which are the user's own. */
void
gatt_server_note_devices (TallyGattServer *server, GVariant *objects)
{
  GVariantIter iter;
  const char *path;
  GVariant *ifaces;

  g_variant_iter_init (&iter, objects);
  while (g_variant_iter_loop (&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
    g_autoptr (GVariant) props = NULL;
    gboolean paired = FALSE, trusted = FALSE;

    if (strcmp (path, server->adapter_path) == 0) {
      g_autoptr (GVariant) manager =
        g_variant_lookup_value (ifaces, ADV_MANAGER_IFACE, G_VARIANT_TYPE_VARDICT);
      if (manager != NULL)
        gatt_server_adv_note_manager (server, manager);
      continue;
    }
    if (!is_our_device (server, path))
      continue;
    props = g_variant_lookup_value (ifaces, DEVICE_IFACE, G_VARIANT_TYPE_VARDICT);
    if (props == NULL)
      continue;
    g_variant_lookup (props, "Paired", "b", &paired);
    g_variant_lookup (props, "Trusted", "b", &trusted);
    g_hash_table_insert (server->paired, g_strdup (path), GINT_TO_POINTER (paired || trusted));
  }
}
