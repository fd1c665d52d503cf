/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-nearby.h"

#include <string.h>

#include "tally-clock.h"
#include "tally-dbus-generated.h"
#include "tally-error.h"
#include "tally-gatt-scanner.h"
#include "tally-hex.h"

/* One stall heard advertising a request tag. */
typedef struct
{
  TallyDBusNearby *nearby;
  TallyDBusStall1 *skeleton;
  char *tag;    /* 8 hex digits */
  char *device; /* BlueZ's object of the device that advertised it last */
  gint64 heard; /* monotonic, of the last report */
  GSource *stale;
} Stall;

/* One client's discovery. */
typedef struct
{
  guint watch; /* of its name */
  guint32 uid;
} Session;

struct _TallyDBusNearby
{
  GDBusConnection *connection;
  TallyDBusAuth *auth;
  TallyDBusObjects *objects;
  GMainContext *context;
  TallyGattScanner *scanner; /* NULL without Bluetooth LE */
  char *adapter;
  GHashTable *sessions; /* sender -> Session * */
  GHashTable *stalls;   /* tag -> Stall * */
  guint stale_ms;
  TallyDBusNearbyChangedFunc changed;
  gpointer user_data;
};

/* --- stalls --- */

static void
stall_free (Stall *stall)
{
  GDBusInterfaceSkeleton *skeleton = G_DBUS_INTERFACE_SKELETON (stall->skeleton);

  if (stall->stale != NULL) {
    g_source_destroy (stall->stale);
    g_source_unref (stall->stale);
  }
  tally_dbus_objects_remove (stall->nearby->objects, skeleton);
  if (g_dbus_interface_skeleton_get_connection (skeleton) != NULL)
    g_dbus_interface_skeleton_unexport (skeleton);
  g_object_unref (stall->skeleton);
  g_free (stall->tag);
  g_free (stall->device);
  g_free (stall);
}

static gboolean
stall_stale_cb (gpointer user_data)
{
  Stall *stall = user_data;

  g_info ("nearby: stall %s not heard for %u ms, removed", stall->tag, stall->nearby->stale_ms);
  /* Frees @stall, and destroys this source. */
  g_hash_table_remove (stall->nearby->stalls, stall->tag);
  return G_SOURCE_REMOVE;
}

static void
stall_arm (Stall *stall)
{
  if (stall->stale != NULL) {
    g_source_destroy (stall->stale);
    g_source_unref (stall->stale);
  }
  stall->stale = g_timeout_source_new (stall->nearby->stale_ms);
  g_source_set_callback (stall->stale, stall_stale_cb, stall, NULL);
  g_source_set_static_name (stall->stale, "[tally] nearby stall stale");
  g_source_attach (stall->stale, stall->nearby->context);
}

static void
stall_update (Stall *stall, const TallyGattSighting *sighting)
{
  TallyDBusStall1 *s = stall->skeleton;

  g_free (stall->device);
  stall->device = g_strdup (sighting->device);
  g_object_freeze_notify (G_OBJECT (s));
  tally_dbus_stall1_set_device_address (s, sighting->address ? sighting->address : "");
  if (sighting->has_rssi)
    tally_dbus_stall1_set_rssi (s, sighting->rssi);
  tally_dbus_stall1_set_last_seen (s, tally_now ());
  g_object_thaw_notify (G_OBJECT (s));
  stall->heard = g_get_monotonic_time ();
  stall_arm (stall);
}

static Stall *
stall_new (TallyDBusNearby *nearby, const char *tag, const TallyGattSighting *sighting)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_strconcat (TALLY_NEARBY_PATH_PREFIX, tag, NULL);
  g_autofree char *address = g_strconcat ("ble:", tag, NULL);
  Stall *stall = g_new0 (Stall, 1);

  stall->nearby = nearby;
  stall->tag = g_strdup (tag);
  stall->skeleton = tally_dbus_auth_skeleton_new (nearby->auth, TALLY_DBUS_TYPE_STALL1_SKELETON);
  tally_dbus_stall1_set_tag (stall->skeleton, tag);
  tally_dbus_stall1_set_address (stall->skeleton, address);
  stall_update (stall, sighting);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (stall->skeleton),
                                         nearby->connection, path, &error)) {
    g_warning ("cannot export %s: %s", path, error->message);
    g_source_destroy (stall->stale);
    g_source_unref (stall->stale);
    g_object_unref (stall->skeleton);
    g_free (stall->tag);
    g_free (stall->device);
    g_free (stall);
    return NULL;
  }
  tally_dbus_objects_add (nearby->objects, G_DBUS_INTERFACE_SKELETON (stall->skeleton));
  g_info ("nearby: stall %s (%s)", tag, sighting->address ? sighting->address : sighting->device);
  return stall;
}

/* The stall @device advertised before, when it advertises another tag or
 * is gone. */
static void
remove_device (TallyDBusNearby *nearby, const char *device, const char *keep_tag)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, nearby->stalls);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Stall *stall = value;

    if (g_strcmp0 (stall->device, device) == 0 && g_strcmp0 (stall->tag, keep_tag) != 0) {
      g_info ("nearby: stall %s gone from %s", stall->tag, device);
      g_hash_table_iter_remove (&iter);
    }
  }
}

/* The list is full: the stall heard least recently makes room for @tag. */
static void
evict_least_recent (TallyDBusNearby *nearby, const char *tag)
{
  GHashTableIter iter;
  gpointer value;
  Stall *oldest = NULL;

  g_hash_table_iter_init (&iter, nearby->stalls);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Stall *stall = value;

    if (oldest == NULL || stall->heard < oldest->heard)
      oldest = stall;
  }
  if (oldest == NULL)
    return;
  g_info ("nearby: %u stalls listed, %s (heard least recently) makes room for %s",
          TALLY_NEARBY_MAX_STALLS, oldest->tag, tag);
  g_hash_table_remove (nearby->stalls, oldest->tag);
}

static void
on_seen (TallyGattScanner *scanner, const TallyGattSighting *sighting, gpointer user_data)
{
  TallyDBusNearby *nearby = user_data;
  g_autofree char *tag = NULL;
  Stall *stall;

  /* A payee advertises only while a request waits, always with its tag. */
  if (!sighting->tagged)
    return;
  tag = tally_hex_encode (sighting->tag, TALLY_GATT_TAG_BYTES);
  remove_device (nearby, sighting->device, tag);
  stall = g_hash_table_lookup (nearby->stalls, tag);
  if (stall != NULL) {
    stall_update (stall, sighting);
    return;
  }
  if (g_hash_table_size (nearby->stalls) >= TALLY_NEARBY_MAX_STALLS)
    evict_least_recent (nearby, tag);
  stall = stall_new (nearby, tag, sighting);
  if (stall != NULL)
    g_hash_table_insert (nearby->stalls, stall->tag, stall);
}

static void
on_lost (TallyGattScanner *scanner, const char *device, gpointer user_data)
{
  remove_device (user_data, device, NULL);
}

/* --- sessions --- */

static void
set_discovering (TallyDBusNearby *nearby, gboolean on)
{
  if (on) {
    tally_gatt_scanner_start (nearby->scanner);
  } else {
    tally_gatt_scanner_stop (nearby->scanner);
    g_hash_table_remove_all (nearby->stalls);
  }
}

static void
end_all_sessions (TallyDBusNearby *nearby)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, nearby->sessions);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_bus_unwatch_name (((Session *) value)->watch);
  g_hash_table_remove_all (nearby->sessions);
}

static void
on_scan_ended (TallyGattScanner *scanner,
               TallyGattScanEnd end,
               const GError *error,
               gpointer user_data)
{
  TallyDBusNearby *nearby = user_data;

  /* bluetoothd dropped the discovery (the adapter went off, or refused
   * it): every session ends, as bluetoothd's own do. */
  g_message ("nearby: discovery on %s ended (%s): %s", nearby->adapter,
             tally_gatt_scan_end_to_string (end), error->message);
  end_all_sessions (nearby);
  g_hash_table_remove_all (nearby->stalls);
  if (nearby->changed != NULL)
    nearby->changed (FALSE, nearby->user_data);
}

static const TallyGattScannerHandlers scan_handlers = {
  .seen = on_seen,
  .lost = on_lost,
  .ended = on_scan_ended,
};

static void
end_session (TallyDBusNearby *nearby, const char *sender)
{
  Session *session = g_hash_table_lookup (nearby->sessions, sender);

  g_bus_unwatch_name (session->watch);
  g_hash_table_remove (nearby->sessions, sender);
  g_info ("nearby: %s stopped discovering", sender);
  if (g_hash_table_size (nearby->sessions) == 0) {
    set_discovering (nearby, FALSE);
    if (nearby->changed != NULL)
      nearby->changed (FALSE, nearby->user_data);
  }
}

static void
on_owner_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  TallyDBusNearby *nearby = user_data;

  if (!g_hash_table_contains (nearby->sessions, name))
    return;
  g_info ("nearby: %s left the bus", name);
  end_session (nearby, name);
}

static guint
count_sessions_of (TallyDBusNearby *nearby, guint32 uid)
{
  GHashTableIter iter;
  gpointer value;
  guint count = 0;

  g_hash_table_iter_init (&iter, nearby->sessions);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (((Session *) value)->uid == uid)
      count++;
  return count;
}

gboolean
tally_dbus_nearby_start (TallyDBusNearby *nearby, const char *sender, guint32 uid, GError **error)
{
  Session *session;

  g_return_val_if_fail (nearby != NULL && sender != NULL, FALSE);

  if (nearby->scanner == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_SUPPORTED,
                 "Bluetooth LE is off; set [transport] ble=true to discover stalls");
    return FALSE;
  }
  if (g_hash_table_contains (nearby->sessions, sender)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "%s already discovers", sender);
    return FALSE;
  }
  if (count_sessions_of (nearby, uid) >= TALLY_NEARBY_MAX_SESSIONS_PER_UID) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "user %u already discovers in %u sessions; stop one first", uid,
                 TALLY_NEARBY_MAX_SESSIONS_PER_UID);
    return FALSE;
  }
  if (g_hash_table_size (nearby->sessions) >= TALLY_NEARBY_MAX_SESSIONS) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY, "%u clients already discover",
                 TALLY_NEARBY_MAX_SESSIONS);
    return FALSE;
  }
  /* Like bluetoothd's discovery sessions: the session ends when its
   * client leaves the bus. */
  session = g_new0 (Session, 1);
  session->uid = uid;
  session->watch =
    g_bus_watch_name_on_connection (nearby->connection, sender, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
                                    on_owner_vanished, nearby, NULL);
  g_hash_table_insert (nearby->sessions, g_strdup (sender), session);
  g_info ("nearby: %s discovers on %s", sender, nearby->adapter);
  if (g_hash_table_size (nearby->sessions) == 1) {
    set_discovering (nearby, TRUE);
    if (nearby->changed != NULL)
      nearby->changed (TRUE, nearby->user_data);
  }
  return TRUE;
}

gboolean
tally_dbus_nearby_stop (TallyDBusNearby *nearby, const char *sender, GError **error)
{
  g_return_val_if_fail (nearby != NULL && sender != NULL, FALSE);

  if (nearby->scanner == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_SUPPORTED,
                 "Bluetooth LE is off; set [transport] ble=true to discover stalls");
    return FALSE;
  }
  if (!g_hash_table_contains (nearby->sessions, sender)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no discovery started by %s", sender);
    return FALSE;
  }
  end_session (nearby, sender);
  return TRUE;
}

gboolean
tally_dbus_nearby_is_discovering (TallyDBusNearby *nearby)
{
  g_return_val_if_fail (nearby != NULL, FALSE);
  return g_hash_table_size (nearby->sessions) > 0;
}

guint
tally_dbus_nearby_get_stall_count (TallyDBusNearby *nearby)
{
  g_return_val_if_fail (nearby != NULL, 0);
  return g_hash_table_size (nearby->stalls);
}

void
tally_dbus_nearby_set_stale_ms (TallyDBusNearby *nearby, guint ms)
{
  g_return_if_fail (nearby != NULL && ms > 0);
  nearby->stale_ms = ms;
}

/* --- lifetime --- */

TallyDBusNearby *
tally_dbus_nearby_new (GDBusConnection *connection,
                       TallyDBusAuth *auth,
                       TallyDBusObjects *objects,
                       GDBusConnection *system_bus,
                       const char *adapter,
                       TallyDBusNearbyChangedFunc changed,
                       gpointer user_data)
{
  TallyDBusNearby *nearby;

  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection) && auth != NULL && objects != NULL, NULL);
  g_return_val_if_fail (system_bus == NULL || adapter != NULL, NULL);

  nearby = g_new0 (TallyDBusNearby, 1);
  nearby->connection = g_object_ref (connection);
  nearby->auth = auth;
  nearby->objects = objects;
  nearby->context = g_main_context_ref_thread_default ();
  nearby->adapter = g_strdup (adapter);
  nearby->stale_ms = TALLY_NEARBY_STALE_SECONDS * 1000;
  nearby->sessions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  nearby->stalls =
    g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) stall_free);
  nearby->changed = changed;
  nearby->user_data = user_data;
  if (system_bus != NULL) {
    nearby->scanner = tally_gatt_scanner_new (system_bus, adapter);
    tally_gatt_scanner_set_handlers (nearby->scanner, &scan_handlers, nearby, NULL);
  }
  return nearby;
}

void
tally_dbus_nearby_free (TallyDBusNearby *nearby)
{
  if (nearby == NULL)
    return;
  end_all_sessions (nearby);
  if (nearby->scanner != NULL) {
    tally_gatt_scanner_set_handlers (nearby->scanner, NULL, NULL, NULL);
    tally_gatt_scanner_stop (nearby->scanner);
  }
  g_clear_pointer (&nearby->scanner, tally_gatt_scanner_unref);
  g_hash_table_unref (nearby->stalls);
  g_hash_table_unref (nearby->sessions);
  g_object_unref (nearby->connection);
  g_main_context_unref (nearby->context);
  g_free (nearby->adapter);
  g_free (nearby);
}
