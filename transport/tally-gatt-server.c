/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-server-private.h"

#include <stdio.h>
#include <string.h>

#include "tally-bluez-private.h"
#include "tally-gatt-link.h"

/*
 * The payee's side: a GATT application and an LE advertisement exported on
 * the system bus and registered with BlueZ (doc/org.bluez.GattManager.rst,
 * org.bluez.LEAdvertisingManager.rst).  The object layout follows BlueZ's
 * test/example-gatt-server:
 *
 *   APP              org.freedesktop.DBus.ObjectManager
 *   APP/service0     org.bluez.GattService1
 *   APP/service0/rx  org.bluez.GattCharacteristic1  write, write-without-response
 *   APP/service0/tx  org.bluez.GattCharacteristic1  notify
 *   APP/adv0         org.bluez.LEAdvertisement1
 *   APP/advN         org.bluez.LEAdvertisement1  one more per further open
 *                                               request (N >= 1)
 *
 * tally-gatt-server-app.c exports the GATT objects, tally-gatt-server-advert.c
 * the advertisement; tally-gatt-server-devices.c follows BlueZ's devices.
 * Each payer's device gets its own TallyLink, keyed by the "device" option
 * BlueZ passes with WriteValue, AcquireWrite and AcquireNotify.
 */

/* BlueZ 5.76 is the first to keep one notify socket per device and send
 * what is written to it to that device only. */
#define PER_DEVICE_BLUEZ_MAJOR 5
#define PER_DEVICE_BLUEZ_MINOR 76

const char *
tally_gatt_server_mode_to_string (TallyGattServerMode mode)
{
  switch (mode) {
  case TALLY_GATT_SERVER_EXCLUSIVE: return "exclusive";
  case TALLY_GATT_SERVER_PER_DEVICE: return "per-device";
  }
  return "unknown";
}

static const char *
server_state_to_string (ServerState state)
{
  switch (state) {
  case SERVER_STARTING: return "starting";
  case SERVER_REGISTERED: return "registered";
  case SERVER_STOPPED: return "stopped";
  }
  return "unknown";
}

void
gatt_server_enter_state (TallyGattServer *server, ServerState state)
{
  g_info ("gatt server %s: %s -> %s", server->adapter, server_state_to_string (server->state),
          server_state_to_string (state));
  server->state = state;
}

TallyGattServerMode
tally_gatt_server_mode_from_modalias (const char *modalias)
{
  unsigned int vendor, product, version;
  char tail;

  if (modalias == NULL)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  /* BlueZ's own Device ID unless main.conf overrides it: the version is
   * major in the high byte, minor in the low byte. */
  if (sscanf (modalias, "usb:v%4xp%4xd%4x%c", &vendor, &product, &version, &tail) != 3)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  if (vendor != 0x1d6b || product != 0x0246)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  if ((version >> 8) > PER_DEVICE_BLUEZ_MAJOR ||
      ((version >> 8) == PER_DEVICE_BLUEZ_MAJOR && (version & 0xff) >= PER_DEVICE_BLUEZ_MINOR))
    return TALLY_GATT_SERVER_PER_DEVICE;
  return TALLY_GATT_SERVER_EXCLUSIVE;
}

/* --- lifetime ------------------------------------------------------------------ */

static void
server_free (TallyGattServer *server)
{
  if (server->devices != NULL)
    gatt_server_drop_all_links (server, "the payee stopped serving Bluetooth LE");
  if (server->adv_cancel != NULL)
    g_cancellable_cancel (server->adv_cancel);
  for (guint i = 0; i < G_N_ELEMENTS (server->object_ids); i++)
    if (server->object_ids[i] != 0)
      g_dbus_connection_unregister_object (server->bus, server->object_ids[i]);
  gatt_server_unwatch_bluez (server);
  if (server->idle_timers != NULL) {
    GHashTableIter iter;
    GSource *source;

    g_hash_table_iter_init (&iter, server->idle_timers);
    while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &source))
      g_source_destroy (source);
    g_hash_table_destroy (server->idle_timers);
  }
  if (server->user_data_destroy != NULL)
    server->user_data_destroy (server->user_data);
  g_clear_pointer (&server->paired, g_hash_table_destroy);
  tally_gatt_devices_free (server->devices);
  g_clear_pointer (&server->adverts, g_ptr_array_unref);
  g_clear_object (&server->adv_cancel);
  g_clear_object (&server->bus);
  g_main_context_unref (server->context);
  g_free (server->adapter);
  g_free (server->adapter_path);
  g_free (server->app_path);
  g_free (server->service_path);
  g_free (server->rx_path);
  g_free (server->tx_path);
  g_free (server->adv_path);
  g_free (server->bluez_owner);
  g_free (server);
}

TallyGattServer *
tally_gatt_server_ref (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, NULL);

  g_atomic_int_inc (&server->ref_count);
  return server;
}

void
tally_gatt_server_unref (TallyGattServer *server)
{
  if (server == NULL)
    return;
  if (!g_atomic_int_dec_and_test (&server->ref_count))
    return;

  /* Fire and forget: BlueZ also cleans up when our connection goes. */
  gatt_server_adv_unregister_all (server);
  switch (server->state) {
  case SERVER_REGISTERED:
    g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, GATT_MANAGER_IFACE,
                            "UnregisterApplication", g_variant_new ("(o)", server->app_path),
                            NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
    gatt_server_enter_state (server, SERVER_STOPPED);
    break;
  case SERVER_STARTING:
  case SERVER_STOPPED:
    break;
  }
  server_free (server);
}

void
tally_gatt_server_free (TallyGattServer *server)
{
  tally_gatt_server_unref (server);
}

/* Owns the server until the start succeeds. */
typedef struct
{
  TallyGattServer *server;
} StartData;

static void
start_data_free (StartData *data)
{
  tally_gatt_server_unref (data->server);
  g_free (data);
}

static TallyGattServer *
start_server (GTask *task)
{
  return ((StartData *) g_task_get_task_data (task))->server;
}

/* A BlueZ call of the start failed: "@what: message". */
static void
start_fail (GTask *task, const GError *dbus_error, const char *what)
{
  GError *tally_error = NULL;

  tally_bluez_set_error (&tally_error, dbus_error, what);
  g_task_return_error (task, tally_error);
}

static void
register_application_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = start_server (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    g_autofree char *what =
      g_strdup_printf ("registering the GATT application on %s", server->adapter);

    start_fail (task, error, what);
    return;
  }
  gatt_server_enter_state (server, SERVER_REGISTERED);
  g_info ("gatt server %s: service %s registered, %s mode (up to %u device(s) at once)",
          server->adapter, TALLY_GATT_SERVICE_UUID, tally_gatt_server_mode_to_string (server->mode),
          server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1);
  /* Ours to free no more once returned. */
  ((StartData *) g_task_get_task_data (task))->server = NULL;
  g_task_return_pointer (task, server, (GDestroyNotify) tally_gatt_server_unref);
}

static void
bluez_objects_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = start_server (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply != NULL) {
    g_autoptr (GVariant) objects = g_variant_get_child_value (reply, 0);

    gatt_server_note_devices (server, objects);
  } else {
    g_debug ("gatt server %s: listing BlueZ's objects: %s", server->adapter, error->message);
  }

  g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, GATT_MANAGER_IFACE,
                          "RegisterApplication",
                          g_variant_new ("(o@a{sv})", server->app_path,
                                         g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, g_task_get_cancellable (task),
                          register_application_done, g_object_ref (task));
}

static void
adapter_props_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = start_server (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) props = NULL;
  const char *modalias = NULL;
  gboolean powered = FALSE;
  GError *tally_error = NULL;

  if (reply == NULL) {
    g_autofree char *what = g_strdup_printf ("Bluetooth adapter %s", server->adapter);

    start_fail (task, error, what);
    return;
  }
  g_variant_get (reply, "(@a{sv})", &props);
  g_variant_lookup (props, "Modalias", "&s", &modalias);
  g_variant_lookup (props, "Powered", "b", &powered);
  server->mode = tally_gatt_server_mode_from_modalias (modalias);
  server->devices = tally_gatt_devices_new (
    server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1);
  g_info ("gatt server %s: BlueZ %s, %s mode%s", server->adapter, modalias ? modalias : "(no Modalias)",
          tally_gatt_server_mode_to_string (server->mode), powered ? "" : ", adapter powered off");

  if (!gatt_server_export_objects (server, &tally_error)) {
    g_task_return_error (task, tally_error);
    return;
  }
  gatt_server_watch_bluez (server);

  g_dbus_connection_call (server->bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects", NULL,
                          G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, -1,
                          g_task_get_cancellable (task), bluez_objects_done, g_object_ref (task));
}

static TallyGattServer *
server_new (GDBusConnection *system_bus, const char *adapter, guint max_devices)
{
  TallyGattServer *server = g_new0 (TallyGattServer, 1);

  server->ref_count = 1;
  server->state = SERVER_STARTING;
  server->bus = g_object_ref (system_bus);
  server->adapter = g_strdup (adapter);
  server->adapter_path = tally_bluez_adapter_path (adapter);
  server->app_path = g_strdup_printf ("/org/tally/gatt/%s", adapter);
  server->service_path = g_strdup_printf ("%s/service0", server->app_path);
  server->rx_path = g_strdup_printf ("%s/rx", server->service_path);
  server->tx_path = g_strdup_printf ("%s/tx", server->service_path);
  server->adv_path = g_strdup_printf ("%s/adv0", server->app_path);
  server->max_devices = max_devices;
  server->idle_seconds = TALLY_GATT_SERVER_DEFAULT_IDLE_SECONDS;
  /* Every source and D-Bus callback of the server runs here. */
  server->context = g_main_context_ref_thread_default ();
  server->paired = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  server->idle_timers =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_source_unref);
  server->adv_cancel = g_cancellable_new ();
  server->adverts = g_ptr_array_new_with_free_func ((GDestroyNotify) gatt_server_advert_free);
  g_ptr_array_add (server->adverts, gatt_server_advert_new (server, server->adv_path));
  server->adv_free_instances = -1;
  return server;
}

void
tally_gatt_server_new_async (GDBusConnection *system_bus,
                             const char *adapter,
                             guint max_devices,
                             TallyGattServerLinkFunc on_link,
                             gpointer user_data,
                             GDestroyNotify user_data_destroy,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer callback_data)
{
  g_autoptr (GTask) task = NULL;
  GError *error = NULL;
  TallyGattServer *server;
  StartData *data;

  g_return_if_fail (G_IS_DBUS_CONNECTION (system_bus));
  g_return_if_fail (adapter != NULL && on_link != NULL && max_devices > 0);

  task = g_task_new (NULL, cancellable, callback, callback_data);
  g_task_set_source_tag (task, tally_gatt_server_new_async);

  if (!tally_bluez_check_adapter_name (adapter, &error)) {
    /* No server will ever call @on_link. */
    if (user_data_destroy != NULL)
      user_data_destroy (user_data);
    g_task_return_error (task, error);
    return;
  }

  server = server_new (system_bus, adapter, max_devices);
  server->on_link = on_link;
  server->user_data = user_data;
  server->user_data_destroy = user_data_destroy;
  data = g_new0 (StartData, 1);
  data->server = server;
  g_task_set_task_data (task, data, (GDestroyNotify) start_data_free);

  g_dbus_connection_call (system_bus, BLUEZ, server->adapter_path, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", ADAPTER_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, -1, cancellable, adapter_props_done,
                          g_steal_pointer (&task));
}

TallyGattServer *
tally_gatt_server_new_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, tally_gatt_server_new_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

TallyGattServerMode
tally_gatt_server_get_mode (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, TALLY_GATT_SERVER_EXCLUSIVE);

  return server->mode;
}

const char *
tally_gatt_server_get_adapter (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, NULL);

  return server->adapter;
}

void
tally_gatt_server_set_idle_timeout (TallyGattServer *server, guint seconds)
{
  g_return_if_fail (server != NULL && seconds > 0);

  server->idle_seconds = seconds;
}
