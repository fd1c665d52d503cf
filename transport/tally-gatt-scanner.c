/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-scanner.h"

#include <string.h>

#include "tally-bluez-private.h"
#include "tally-error.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-link.h"

/*
 * doc/org.bluez.Adapter.rst: SetDiscoveryFilter {UUIDs: [service],
 * Transport: le, DuplicateData: true}, StartDiscovery; the devices BlueZ
 * reports meanwhile (InterfacesAdded, or a change of RSSI,
 * ManufacturerData or UUIDs: a cached Device1 may be long gone); and
 * StopDiscovery.
 */

typedef enum
{
  SCAN_IDLE,
  SCAN_STARTING, /* SetDiscoveryFilter, StartDiscovery on their way */
  SCAN_RUNNING,
} ScanState;

/* A StartDiscovery on its way counts in its session: bluetoothd refuses
 * StopDiscovery while a StartDiscovery of the same client is pending, so a
 * scan stopped meanwhile leaves the stop to this call's answer. */
typedef struct StartCall
{
  TallyGattScanner *scanner; /* NULL once the scan stopped */
  GDBusConnection *bus;
  char *adapter_path;
  char *key;
} StartCall;

struct _TallyGattScanner
{
  gint ref_count;
  ScanState state;
  GDBusConnection *bus;
  char *adapter;
  char *adapter_path;
  GMainContext *context;
  GCancellable *calls; /* of this scan */
  gboolean counted;    /* holds a share of bluetoothd's session */
  StartCall *start;    /* the StartDiscovery this scan awaits */
  GHashTable *devices; /* object path -> Device, of this scan */
  TallyBluezWatch props_watch;
  TallyBluezWatch added_watch;
  TallyBluezWatch removed_watch;

  const TallyGattScannerHandlers *handlers;
  gpointer user_data;
  GDestroyNotify destroy;
};

static const char *
scan_state_to_string (ScanState state)
{
  switch (state) {
  case SCAN_IDLE: return "idle";
  case SCAN_STARTING: return "starting";
  case SCAN_RUNNING: return "running";
  }
  return "unknown";
}

static void
enter_state (TallyGattScanner *scanner, ScanState state)
{
  g_debug ("gatt scanner %s: %s -> %s", scanner->adapter, scan_state_to_string (scanner->state),
           scan_state_to_string (state));
  scanner->state = state;
}

const char *
tally_gatt_scan_end_to_string (TallyGattScanEnd end)
{
  switch (end) {
  case TALLY_GATT_SCAN_FILTER_REFUSED: return "filter-refused";
  case TALLY_GATT_SCAN_START_REFUSED: return "start-refused";
  case TALLY_GATT_SCAN_ADAPTER_STOPPED: return "adapter-stopped";
  }
  return "unknown";
}

/* --- bluetoothd's session, shared by the scanners of a connection --- */

G_LOCK_DEFINE_STATIC (sessions);
/* "bus-pointer adapter-path" -> GUINT count of the scanners in the
 * session and of the StartDiscovery calls on their way. */
static GHashTable *sessions;

static char *
session_key (TallyGattScanner *scanner)
{
  return g_strdup_printf ("%p %s", (void *) scanner->bus, scanner->adapter_path);
}

/* The count of @key after adding @delta (+1 or -1). */
static guint
session_add (const char *key, int delta)
{
  guint count;

  G_LOCK (sessions);
  if (sessions == NULL)
    sessions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  count = GPOINTER_TO_UINT (g_hash_table_lookup (sessions, key));
  count = delta < 0 ? (count > 0 ? count - 1 : 0) : count + 1;
  if (count == 0)
    g_hash_table_remove (sessions, key);
  else
    g_hash_table_insert (sessions, g_strdup (key), GUINT_TO_POINTER (count));
  G_UNLOCK (sessions);
  return count;
}

static void
session_join (TallyGattScanner *scanner)
{
  g_autofree char *key = session_key (scanner);

  if (scanner->counted)
    return;
  scanner->counted = TRUE;
  session_add (key, +1);
}

/* TRUE when @scanner was the last of its session. */
static gboolean
session_leave (TallyGattScanner *scanner)
{
  g_autofree char *key = session_key (scanner);

  if (!scanner->counted)
    return FALSE;
  scanner->counted = FALSE;
  return session_add (key, -1) == 0;
}

/* --- what a device report says --- */

/* TRUE when @props (a{sv}) lists our service among its UUIDs. */
static gboolean
has_service (GVariant *props)
{
  g_autofree const char **uuids = NULL;

  if (g_variant_lookup (props, "UUIDs", "^a&s", &uuids))
    for (guint i = 0; uuids[i] != NULL; i++)
      if (g_ascii_strcasecmp (uuids[i], TALLY_GATT_SERVICE_UUID) == 0)
        return TRUE;
  return FALSE;
}

static gboolean
read_sighting (const char *device, GVariant *props, TallyGattSighting *sighting)
{
  g_autoptr (GVariant) mfr = NULL;

  memset (sighting, 0, sizeof *sighting);
  if (!has_service (props))
    return FALSE;

  sighting->device = device;
  g_variant_lookup (props, "Address", "&s", &sighting->address);
  sighting->has_rssi = g_variant_lookup (props, "RSSI", "n", &sighting->rssi);
  mfr = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
  if (mfr != NULL) {
    GVariantIter iter;
    guint16 company;
    GVariant *value;

    g_variant_iter_init (&iter, mfr);
    while (g_variant_iter_next (&iter, "{qv}", &company, &value)) {
      g_autoptr (GVariant) owned = value;
      const guint8 *bytes;
      gsize len;

      if (company != TALLY_GATT_COMPANY_ID ||
          !g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
        continue;
      bytes = g_variant_get_fixed_array (value, &len, 1);
      if (len != TALLY_GATT_TAG_BYTES)
        continue;
      memcpy (sighting->tag, bytes, len);
      sighting->tagged = TRUE;
    }
  }
  return TRUE;
}

static void
report (TallyGattScanner *scanner, const char *device, GVariant *props)
{
  TallyGattSighting sighting;

  if (!read_sighting (device, props, &sighting) || scanner->handlers == NULL ||
      scanner->handlers->seen == NULL)
    return;
  tally_gatt_scanner_ref (scanner);
  scanner->handlers->seen (scanner, &sighting, scanner->user_data);
  tally_gatt_scanner_unref (scanner);
}

/* --- the devices of a scan --- */

/* BlueZ sends only what changed.  A device first heard through a change
 * (a cached Device1) is read once with GetAll; then the changes of a
 * device with our service are merged into what the scan knows, and those
 * of any other device are ignored unless its UUIDs change: an advert
 * flood costs bluetoothd no calls. */
typedef struct
{
  GVariant *props;  /* a{sv}, of a device with our service; NULL: another */
  gboolean reading; /* GetAll on its way: its answer carries every change
                     * bluetoothd signalled before it */
} Device;

static void
device_free (Device *device)
{
  g_clear_pointer (&device->props, g_variant_unref);
  g_free (device);
}

/* @props with the values of @changed: a new floating a{sv}. */
static GVariant *
merge_props (GVariant *props, GVariant *changed)
{
  GVariantBuilder merged;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_builder_init (&merged, G_VARIANT_TYPE_VARDICT);
  g_variant_iter_init (&iter, props);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value)) {
    g_autoptr (GVariant) owned = value;
    g_autoptr (GVariant) replaced = g_variant_lookup_value (changed, key, NULL);

    if (replaced == NULL)
      g_variant_builder_add (&merged, "{sv}", key, value);
  }
  g_variant_iter_init (&iter, changed);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value)) {
    g_autoptr (GVariant) owned = value;

    g_variant_builder_add (&merged, "{sv}", key, value);
  }
  return g_variant_builder_end (&merged);
}

/* What the scan knows of @path now: @props (taken, maybe floating), all
 * of them. */
static void
device_set (TallyGattScanner *scanner, Device *device, const char *path, GVariant *props)
{
  g_autoptr (GVariant) owned = g_variant_take_ref (props);

  g_clear_pointer (&device->props, g_variant_unref);
  if (has_service (owned)) {
    device->props = g_variant_ref (owned);
    report (scanner, path, owned);
  }
}

typedef struct
{
  TallyGattScanner *scanner;
  char *device;
} Candidate;

static void
device_props_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Candidate *candidate = user_data;
  TallyGattScanner *scanner = candidate->scanner;
  g_autofree char *path = candidate->device;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  GVariant *props = NULL;
  Device *device;

  g_free (candidate);
  /* Cancelled: @scanner may be gone. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || scanner->state == SCAN_IDLE)
    return;
  device = g_hash_table_lookup (scanner->devices, path);
  if (device == NULL) /* removed meanwhile */
    return;
  device->reading = FALSE;
  if (reply == NULL) {
    /* Gone, most likely; a later change asks again. */
    g_hash_table_remove (scanner->devices, path);
    return;
  }
  g_variant_get (reply, "(@a{sv})", &props);
  device_set (scanner, device, path, props);
}

/* A report seen now, whose properties BlueZ did not send along. */
static void
read_device (TallyGattScanner *scanner, Device *device, const char *path)
{
  Candidate *candidate = g_new0 (Candidate, 1);

  device->reading = TRUE;
  candidate->scanner = scanner;
  candidate->device = g_strdup (path);
  g_dbus_connection_call (scanner->bus, BLUEZ, path, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", DEVICE_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, -1, scanner->calls, device_props_done, candidate);
}

/* The device at @path, NULL when the scan follows too many already. */
static Device *
device_lookup (TallyGattScanner *scanner, const char *path, gboolean *is_new)
{
  Device *device = g_hash_table_lookup (scanner->devices, path);

  *is_new = device == NULL;
  if (device != NULL)
    return device;
  if (g_hash_table_size (scanner->devices) >= TALLY_GATT_SCANNER_MAX_DEVICES) {
    g_debug ("gatt scanner %s: %u devices followed, %s ignored", scanner->adapter,
             TALLY_GATT_SCANNER_MAX_DEVICES, path);
    return NULL;
  }
  device = g_new0 (Device, 1);
  g_hash_table_insert (scanner->devices, g_strdup (path), device);
  return device;
}

static void
on_device_changed (TallyGattScanner *scanner, const char *path, GVariant *changed)
{
  g_autoptr (GVariant) rssi = g_variant_lookup_value (changed, "RSSI", NULL);
  g_autoptr (GVariant) mfr = g_variant_lookup_value (changed, "ManufacturerData", NULL);
  g_autoptr (GVariant) uuids = g_variant_lookup_value (changed, "UUIDs", NULL);
  gboolean is_new;
  Device *device;

  if (rssi == NULL && mfr == NULL && uuids == NULL)
    return;
  device = device_lookup (scanner, path, &is_new);
  if (device == NULL || device->reading)
    return;
  if (device->props != NULL) {
    device_set (scanner, device, path, merge_props (device->props, changed));
    return;
  }
  /* Another's device, or one not read yet: read when it may be ours. */
  if (uuids != NULL ? has_service (changed) : is_new)
    read_device (scanner, device, path);
}

/* A StartDiscovery still on its way is stopped when it is answered. */
static void
forget_start (TallyGattScanner *scanner)
{
  if (scanner->start != NULL)
    scanner->start->scanner = NULL;
  scanner->start = NULL;
}

/* Cancels the calls of the scan that was: a new one starts afresh. */
static void
drop_calls (TallyGattScanner *scanner)
{
  g_cancellable_cancel (scanner->calls);
  g_clear_object (&scanner->calls);
  scanner->calls = g_cancellable_new ();
  g_hash_table_remove_all (scanner->devices);
}

static void
end_scan (TallyGattScanner *scanner, TallyGattScanEnd end, GError *error)
{
  g_autoptr (GError) owned = error;

  g_info ("gatt scanner %s: %s", scanner->adapter, error->message);
  drop_calls (scanner);
  forget_start (scanner);
  /* bluetoothd has no session left to stop after these. */
  session_leave (scanner);
  enter_state (scanner, SCAN_IDLE);
  if (scanner->handlers == NULL || scanner->handlers->ended == NULL)
    return;
  tally_gatt_scanner_ref (scanner);
  scanner->handlers->ended (scanner, end, error, scanner->user_data);
  tally_gatt_scanner_unref (scanner);
}

/* bluetoothd drops every discovery session when the adapter goes off, and
 * says nothing more to the session's owner: the Discovering property
 * going false is all there is. */
static void
on_adapter_changed (TallyGattScanner *scanner, GVariant *changed)
{
  gboolean discovering = TRUE, powered = TRUE;

  g_variant_lookup (changed, "Discovering", "b", &discovering);
  g_variant_lookup (changed, "Powered", "b", &powered);
  if (scanner->state != SCAN_RUNNING || (discovering && powered))
    return;
  end_scan (scanner, TALLY_GATT_SCAN_ADAPTER_STOPPED,
            g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "discovery on %s stopped%s",
                         scanner->adapter, powered ? "" : ": the adapter was switched off"));
}

static void
on_properties_changed (const char *path, const char *iface, GVariant *changed, gpointer user_data)
{
  TallyGattScanner *scanner = user_data;

  if (strcmp (iface, ADAPTER_IFACE) == 0 && strcmp (path, scanner->adapter_path) == 0) {
    on_adapter_changed (scanner, changed);
    return;
  }
  if (scanner->state == SCAN_IDLE || strcmp (iface, DEVICE_IFACE) != 0 ||
      !tally_bluez_is_adapter_device (scanner->adapter_path, path))
    return;
  on_device_changed (scanner, path, changed);
}

static void
on_interfaces_added (const char *object, GVariant *ifaces, gpointer user_data)
{
  TallyGattScanner *scanner = user_data;
  GVariant *props = NULL;
  gboolean is_new;
  Device *device;

  if (scanner->state == SCAN_IDLE || !tally_bluez_is_adapter_device (scanner->adapter_path, object))
    return;
  props = g_variant_lookup_value (ifaces, DEVICE_IFACE, NULL);
  if (props == NULL)
    return;
  device = device_lookup (scanner, object, &is_new);
  if (device != NULL) {
    device_set (scanner, device, object, props);
    return;
  }
  report (scanner, object, props);
  g_variant_unref (props);
}

static void
on_interfaces_removed (const char *object, const char *const *ifaces, gpointer user_data)
{
  TallyGattScanner *scanner = user_data;

  if (scanner->state == SCAN_IDLE ||
      !tally_bluez_is_adapter_device (scanner->adapter_path, object) ||
      !g_strv_contains (ifaces, DEVICE_IFACE))
    return;
  g_hash_table_remove (scanner->devices, object);
  if (scanner->handlers == NULL || scanner->handlers->lost == NULL)
    return;
  tally_gatt_scanner_ref (scanner);
  scanner->handlers->lost (scanner, object, scanner->user_data);
  tally_gatt_scanner_unref (scanner);
}

/* --- starting and stopping --- */

static StartCall *
start_call_new (TallyGattScanner *scanner)
{
  StartCall *call = g_new0 (StartCall, 1);

  call->scanner = scanner;
  call->bus = g_object_ref (scanner->bus);
  call->adapter_path = g_strdup (scanner->adapter_path);
  call->key = session_key (scanner);
  session_add (call->key, +1);
  return call;
}

static void
start_call_free (StartCall *call)
{
  g_object_unref (call->bus);
  g_free (call->adapter_path);
  g_free (call->key);
  g_free (call);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (StartCall, start_call_free)

/* The scan stopped before bluetoothd answered: a session it started that
 * nobody of this connection holds or is starting would scan forever. */
static void
start_abandoned (StartCall *call, gboolean started)
{
  if (session_add (call->key, -1) != 0 || !started)
    return;
  tally_bluez_call_ignoring (
    call->bus, call->adapter_path, ADAPTER_IFACE, "StopDiscovery",
    g_strdup_printf ("gatt scanner: StopDiscovery %s after a stopped start", call->adapter_path));
}

static void
start_discovery_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (StartCall) call = user_data;
  TallyGattScanner *scanner = call->scanner;
  g_autoptr (GError) error = NULL;
  g_autofree char *remote = NULL;
  g_autoptr (GVariant) reply = tally_bluez_call_finish (source, result, &remote, &error);

  if (scanner == NULL) {
    start_abandoned (call, reply != NULL);
    return;
  }
  scanner->start = NULL;
  /* Joined (or refused) first: the session never looks empty between. */
  if (reply != NULL || g_strcmp0 (remote, BLUEZ_ERROR_IN_PROGRESS) == 0)
    session_join (scanner);
  session_add (call->key, -1);
  if (reply == NULL) {
    /* InProgress: this client already discovers; it goes on. */
    if (g_strcmp0 (remote, BLUEZ_ERROR_IN_PROGRESS) != 0) {
      g_dbus_error_strip_remote_error (error);
      end_scan (scanner, TALLY_GATT_SCAN_START_REFUSED,
                g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "cannot discover on %s: %s",
                             scanner->adapter, error->message));
      return;
    }
  }
  enter_state (scanner, SCAN_RUNNING);
  g_info ("gatt scanner: scanning on %s", scanner->adapter);
}

static void
set_filter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  TallyGattScanner *scanner = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    g_dbus_error_strip_remote_error (error);
    end_scan (scanner, TALLY_GATT_SCAN_FILTER_REFUSED,
              g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                           "Bluetooth adapter %s: SetDiscoveryFilter: %s", scanner->adapter,
                           error->message));
    return;
  }
  /* Not cancellable: see StartCall. */
  scanner->start = start_call_new (scanner);
  g_dbus_connection_call (scanner->bus, BLUEZ, scanner->adapter_path, ADAPTER_IFACE,
                          "StartDiscovery", NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                          start_discovery_done, scanner->start);
}

void
tally_gatt_scanner_start (TallyGattScanner *scanner)
{
  GVariantBuilder filter;
  const char *uuids[] = { TALLY_GATT_SERVICE_UUID, NULL };

  g_return_if_fail (scanner != NULL);

  tally_gatt_scanner_stop (scanner);
  enter_state (scanner, SCAN_STARTING);
  g_variant_builder_init (&filter, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&filter, "{sv}", "UUIDs", g_variant_new_strv (uuids, -1));
  g_variant_builder_add (&filter, "{sv}", "Transport", g_variant_new_string ("le"));
  /* Every report, so a new request tag shows at once. */
  g_variant_builder_add (&filter, "{sv}", "DuplicateData", g_variant_new_boolean (TRUE));
  g_dbus_connection_call (scanner->bus, BLUEZ, scanner->adapter_path, ADAPTER_IFACE,
                          "SetDiscoveryFilter", g_variant_new ("(a{sv})", &filter), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, scanner->calls, set_filter_done, scanner);
}

void
tally_gatt_scanner_stop (TallyGattScanner *scanner)
{
  g_return_if_fail (scanner != NULL);

  if (scanner->state == SCAN_IDLE)
    return;
  drop_calls (scanner);
  forget_start (scanner);
  enter_state (scanner, SCAN_IDLE);
  if (session_leave (scanner))
    tally_bluez_call_ignoring (
      scanner->bus, scanner->adapter_path, ADAPTER_IFACE, "StopDiscovery",
      g_strdup_printf ("gatt scanner: StopDiscovery %s", scanner->adapter_path));
}

gboolean
tally_gatt_scanner_is_running (TallyGattScanner *scanner)
{
  g_return_val_if_fail (scanner != NULL, FALSE);
  return scanner->state == SCAN_RUNNING;
}

/* --- lifetime --- */

TallyGattScanner *
tally_gatt_scanner_new (GDBusConnection *system_bus, const char *adapter)
{
  TallyGattScanner *scanner;

  g_return_val_if_fail (G_IS_DBUS_CONNECTION (system_bus) && adapter != NULL, NULL);

  scanner = g_new0 (TallyGattScanner, 1);
  scanner->ref_count = 1;
  scanner->state = SCAN_IDLE;
  scanner->bus = g_object_ref (system_bus);
  scanner->adapter = g_strdup (adapter);
  scanner->adapter_path = tally_bluez_adapter_path (adapter);
  scanner->context = g_main_context_ref_thread_default ();
  scanner->calls = g_cancellable_new ();
  scanner->devices =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) device_free);
  tally_bluez_watch_properties (&scanner->props_watch, scanner->bus, NULL, on_properties_changed,
                                scanner, NULL);
  tally_bluez_watch_added (&scanner->added_watch, scanner->bus, on_interfaces_added, scanner, NULL);
  tally_bluez_watch_removed (&scanner->removed_watch, scanner->bus, on_interfaces_removed, scanner,
                             NULL);
  return scanner;
}

TallyGattScanner *
tally_gatt_scanner_ref (TallyGattScanner *scanner)
{
  g_return_val_if_fail (scanner != NULL, NULL);
  g_atomic_int_inc (&scanner->ref_count);
  return scanner;
}

void
tally_gatt_scanner_set_handlers (TallyGattScanner *scanner,
                                 const TallyGattScannerHandlers *handlers,
                                 gpointer user_data,
                                 GDestroyNotify destroy)
{
  g_return_if_fail (scanner != NULL);

  if (scanner->destroy != NULL)
    scanner->destroy (scanner->user_data);
  scanner->handlers = handlers;
  scanner->user_data = user_data;
  scanner->destroy = destroy;
}

void
tally_gatt_scanner_unref (TallyGattScanner *scanner)
{
  if (scanner == NULL || !g_atomic_int_dec_and_test (&scanner->ref_count))
    return;
  tally_gatt_scanner_stop (scanner);
  tally_gatt_scanner_set_handlers (scanner, NULL, NULL, NULL);
  g_cancellable_cancel (scanner->calls);
  tally_bluez_unwatch (&scanner->props_watch, scanner->bus);
  tally_bluez_unwatch (&scanner->added_watch, scanner->bus);
  tally_bluez_unwatch (&scanner->removed_watch, scanner->bus);
  g_clear_object (&scanner->calls);
  g_hash_table_unref (scanner->devices);
  g_object_unref (scanner->bus);
  g_main_context_unref (scanner->context);
  g_free (scanner->adapter);
  g_free (scanner->adapter_path);
  g_free (scanner);
}
