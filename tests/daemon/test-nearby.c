/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Register1.StartDiscovery/StopDiscovery: tallyd with Bluetooth LE against
 * the scripted bluetoothd of tests/transport (fake-bluez.h) on a private
 * bus that stands in for the system bus, and clients on their own
 * connections.  Each test lists what tallyd must ask bluetoothd, in order,
 * and reads the stalls from tallyd's ObjectManager signals.
 */
#include <string.h>

#include "fake-bluez.h"
#include "tally-daemon.h"
#include "tally-dbus-error.h"
#include "tally-gatt-link.h"
#include "test-util.h"

#define ADAPTER        "/org/bluez/hci0"
#define DEV            ADAPTER "/dev_00_AA_01_01_00_01"
#define DEV_ADDRESS    "00:AA:01:01:00:01"
#define OTHER          ADAPTER "/dev_00_AA_01_01_00_02"
#define APP            "/org/tally/gatt/hci0"
#define MODALIAS_5_76  "usb:v1D6Bp0246d054C"
#define TAG            "0a1b2c3d"
#define STALL_PATH     "/org/tally/nearby/tag_" TAG
#define STALL_IFACE    "org.tally.Stall1"
#define REGISTER_PATH  "/org/tally/register"
#define REGISTER_IFACE "org.tally.Register1"

/* bluetoothd's bus (the system bus) and tallyd's own, as in an install. */
static GTestDBus *system_bus;
static GTestDBus *api_bus;

typedef struct
{
  FakeBluez *fake;
  GDBusConnection *system; /* tallyd's, held so its last calls leave */
  char *dir;
  TallyDaemon *daemon;
  GDBusConnection *daemon_bus;
  GDBusConnection *client;
  guint subscription;
  GPtrArray *added;     /* object paths of InterfacesAdded */
  GPtrArray *removed;   /* object paths of InterfacesRemoved */
  GVariant *last_added; /* its interfaces */
} Fixture;

/* A connection to tallyd's bus. */
static GDBusConnection *
connect_bus (void)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *c = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (api_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

static void
on_manager_signal (GDBusConnection *connection,
                   const char *sender,
                   const char *path,
                   const char *iface,
                   const char *signal,
                   GVariant *params,
                   gpointer user_data)
{
  Fixture *f = user_data;
  const char *object = NULL;

  g_variant_get_child (params, 0, "&o", &object);
  if (strcmp (signal, "InterfacesAdded") == 0) {
    g_ptr_array_add (f->added, g_strdup (object));
    g_clear_pointer (&f->last_added, g_variant_unref);
    f->last_added = g_variant_get_child_value (params, 1);
  } else if (strcmp (signal, "InterfacesRemoved") == 0) {
    g_ptr_array_add (f->removed, g_strdup (object));
  }
}

static gboolean
has_path (GPtrArray *paths, const char *path)
{
  for (guint i = 0; i < paths->len; i++)
    if (strcmp (paths->pdata[i], path) == 0)
      return TRUE;
  return FALSE;
}

/* tallyd's GATT server comes up first: it reads the adapter, lists
 * bluetoothd's objects and registers its application. */
static void
script_daemon_starts (Fixture *f, gboolean ble)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_autoptr (GVariant) params = NULL;

  g_free (config->register_dir);
  config->register_dir = g_build_filename (f->dir, "stall", NULL);
  g_free (config->listen);
  config->listen = g_strdup_printf ("unix:%s/stall.sock", f->dir);
  config->ble = ble;
  /* The scripted bluetoothd has no kernel adapter behind it, so there is
   * no LE Privacy to read; test-mgmt and the VM's ble-pay-private test the
   * check itself. */
  config->ble_privacy = TALLY_PRIVACY_POLICY_OFF;
  f->daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  f->daemon_bus = connect_bus ();
  g_assert_true (tally_daemon_export (f->daemon, f->daemon_bus, &error));
  g_assert_no_error (error);
  if (!ble)
    return;
  params = fake_bluez_expect_reply (
    f->fake, ADAPTER, FAKE_PROPS_IFACE, "GetAll",
    g_variant_new_parsed ("({'Modalias': <%s>, 'Powered': <true>},)", MODALIAS_5_76));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, "/", FAKE_OM_IFACE, "GetManagedObjects",
                                    g_variant_new_parsed ("(@a{oa{sa{sv}}} {},)"));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE,
                                    "RegisterApplication", NULL);
  fake_bluez_expect_quiet (f->fake, 200);
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  f->fake = fake_bluez_new (system_bus);
  f->system = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, NULL);
  g_assert_nonnull (f->system);
  fake_bluez_export (f->fake, ADAPTER, FAKE_ADAPTER_IFACE);
  fake_bluez_export (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE);
  fake_bluez_export (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE);
  fake_bluez_export (f->fake, DEV, FAKE_DEVICE_IFACE);
  fake_bluez_export (f->fake, OTHER, FAKE_DEVICE_IFACE);
  f->dir = g_dir_make_tmp ("tally-nearby-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  f->added = g_ptr_array_new_with_free_func (g_free);
  f->removed = g_ptr_array_new_with_free_func (g_free);
  script_daemon_starts (f, GPOINTER_TO_INT (data) == 0);
  f->client = connect_bus ();
  f->subscription = g_dbus_connection_signal_subscribe (
    f->client, g_dbus_connection_get_unique_name (f->daemon_bus),
    "org.freedesktop.DBus.ObjectManager", NULL, "/", NULL, G_DBUS_SIGNAL_FLAGS_NONE,
    on_manager_signal, f, NULL);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;
  gboolean ble = GPOINTER_TO_INT (data) == 0;

  g_dbus_connection_signal_unsubscribe (f->client, f->subscription);
  tally_daemon_free (f->daemon);
  if (ble)
    params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE,
                                      "UnregisterApplication", NULL);
  fake_bluez_free (f->fake);
  g_dbus_connection_flush_sync (f->system, NULL, NULL);
  g_object_unref (f->system);
  g_dbus_connection_close_sync (f->daemon_bus, NULL, NULL);
  g_dbus_connection_close_sync (f->client, NULL, NULL);
  g_object_unref (f->daemon_bus);
  g_object_unref (f->client);
  g_ptr_array_unref (f->added);
  g_ptr_array_unref (f->removed);
  g_clear_pointer (&f->last_added, g_variant_unref);
  test_rm_rf (f->dir);
  g_free (f->dir);
}

/* A method of Register1 from @client, the main context running meanwhile
 * (the fake answers only while it iterates). */
typedef struct
{
  gboolean done;
  GVariant *reply;
  GError *error;
} CallResult;

static void
call_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CallResult *r = user_data;

  r->reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &r->error);
  r->done = TRUE;
}

static void
call_register_async (Fixture *f, GDBusConnection *client, const char *method, CallResult *r)
{
  memset (r, 0, sizeof *r);
  g_dbus_connection_call (client, g_dbus_connection_get_unique_name (f->daemon_bus), REGISTER_PATH,
                          REGISTER_IFACE, method, NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                          call_done, r);
}

/* The D-Bus error name @client got for @method (NULL: it succeeded). */
static char *
call_register (Fixture *f, GDBusConnection *client, const char *method)
{
  CallResult r;
  char *name = NULL;

  call_register_async (f, client, method, &r);
  FAKE_RUN_UNTIL (f->fake, r.done);
  if (r.error != NULL) {
    name = g_dbus_error_get_remote_error (r.error);
    g_error_free (r.error);
  }
  g_clear_pointer (&r.reply, g_variant_unref);
  return name;
}

/* Properties.Get, the main context running (tallyd answers on it). */
static GVariant *
get_property (Fixture *f, const char *path, const char *iface, const char *name)
{
  CallResult r = { 0 };
  GVariant *value = NULL;

  g_dbus_connection_call (f->client, g_dbus_connection_get_unique_name (f->daemon_bus), path,
                          "org.freedesktop.DBus.Properties", "Get",
                          g_variant_new ("(ss)", iface, name), G_VARIANT_TYPE ("(v)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, call_done, &r);
  FAKE_RUN_UNTIL (f->fake, r.done);
  g_assert_no_error (r.error);
  g_variant_get (r.reply, "(v)", &value);
  g_variant_unref (r.reply);
  return value;
}

static gboolean
is_discovering (Fixture *f)
{
  g_autoptr (GVariant) value = get_property (f, REGISTER_PATH, REGISTER_IFACE, "Discovering");
  return g_variant_get_boolean (value);
}

/* StartDiscovery from @client: tallyd filters on our service over LE and
 * starts bluetoothd's discovery before it answers. */
static void
script_starts_discovery (Fixture *f, GDBusConnection *client)
{
  CallResult r;
  g_autoptr (GVariant) filter = NULL;
  g_autoptr (GVariant) params = NULL;
  g_autofree const char **uuids = NULL;

  call_register_async (f, client, "StartDiscovery", &r);
  params =
    fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "SetDiscoveryFilter", NULL);
  g_variant_get (params, "(@a{sv})", &filter);
  g_assert_true (g_variant_lookup (filter, "UUIDs", "^a&s", &uuids));
  g_assert_cmpstrv (uuids, ((const char *[]){ TALLY_GATT_SERVICE_UUID, NULL }));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery", NULL);
  FAKE_RUN_UNTIL (f->fake, r.done);
  g_assert_no_error (r.error);
  g_clear_pointer (&r.reply, g_variant_unref);
  fake_bluez_expect_quiet (f->fake, 100);
}

/* bluetoothd reports a stall advertising TAG. */
static void
stall_advertises (Fixture *f, const char *device, gint16 rssi)
{
  g_autofree char *text =
    g_strdup_printf ("{'Address': <'" DEV_ADDRESS "'>, 'RSSI': <int16 %d>, "
                     "'UUIDs': <['" TALLY_GATT_SERVICE_UUID "']>, "
                     "'ManufacturerData': <{uint16 0xffff: <[byte 0x0a, 0x1b, 0x2c, 0x3d]>}>}",
                     rssi);

  fake_bluez_emit_added (f->fake, device, FAKE_DEVICE_IFACE, text);
}

static void
test_stall_advertising_appears_and_goes_with_its_device (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) stall = NULL;
  g_autoptr (GVariant) value = NULL;
  g_autoptr (GVariant) params = NULL;
  const char *s = NULL;
  gint16 rssi = 0;
  g_autofree char *error = NULL;

  g_assert_false (is_discovering (f));
  script_starts_discovery (f, f->client);
  g_assert_true (is_discovering (f));

  /* A device without our service, and one of ours with no tag, are no
   * stalls. */
  fake_bluez_emit_added (f->fake, OTHER, FAKE_DEVICE_IFACE,
                         "{'Address': <'00:AA:01:01:00:02'>, 'RSSI': <int16 -30>, "
                         "'UUIDs': <['0000180f-0000-1000-8000-00805f9b34fb']>}");
  stall_advertises (f, DEV, -50);
  FAKE_RUN_UNTIL (f->fake, f->added->len == 1);
  g_assert_cmpstr (f->added->pdata[0], ==, STALL_PATH);
  stall = g_variant_lookup_value (f->last_added, STALL_IFACE, G_VARIANT_TYPE_VARDICT);
  g_assert_nonnull (stall);
  g_assert_true (g_variant_lookup (stall, "Tag", "&s", &s));
  g_assert_cmpstr (s, ==, TAG);
  g_assert_true (g_variant_lookup (stall, "Address", "&s", &s));
  g_assert_cmpstr (s, ==, "ble:" TAG);
  g_assert_true (g_variant_lookup (stall, "DeviceAddress", "&s", &s));
  g_assert_cmpstr (s, ==, DEV_ADDRESS);
  g_assert_true (g_variant_lookup (stall, "RSSI", "n", &rssi));
  g_assert_cmpint (rssi, ==, -50);

  /* A later report (RSSI changed): the change itself carries the new
   * RSSI, nothing is asked of bluetoothd. */
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'RSSI': <int16 -40>}");
  fake_bluez_expect_quiet (f->fake, 200);
  value = get_property (f, STALL_PATH, STALL_IFACE, "RSSI");
  g_assert_cmpint (g_variant_get_int16 (value), ==, -40);
  g_assert_cmpuint (f->added->len, ==, 1);

  /* bluetoothd forgets the device: the stall goes at once. */
  fake_bluez_emit_removed (f->fake, DEV, FAKE_DEVICE_IFACE);
  FAKE_RUN_UNTIL (f->fake, f->removed->len == 1);
  g_assert_cmpstr (f->removed->pdata[0], ==, STALL_PATH);
  g_assert_cmpuint (tally_dbus_nearby_get_stall_count (tally_daemon_get_nearby (f->daemon)), ==, 0);

  g_clear_pointer (&params, g_variant_unref);
  error = call_register (f, f->client, "StopDiscovery");
  g_assert_null (error);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  g_assert_false (is_discovering (f));
}

static void
test_silent_stall_is_removed_after_the_timeout (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;
  gint64 seen;

  tally_dbus_nearby_set_stale_ms (tally_daemon_get_nearby (f->daemon), 500);
  script_starts_discovery (f, f->client);
  stall_advertises (f, DEV, -60);
  FAKE_RUN_UNTIL (f->fake, f->added->len == 1);
  seen = g_get_monotonic_time ();
  FAKE_RUN_UNTIL (f->fake, f->removed->len == 1);
  g_assert_cmpint (g_get_monotonic_time () - seen, >=, 400 * 1000);
  g_assert_cmpstr (f->removed->pdata[0], ==, STALL_PATH);
  /* Discovery goes on: only the stall went. */
  g_assert_true (is_discovering (f));
  fake_bluez_expect_quiet (f->fake, 100);
  g_free (call_register (f, f->client, "StopDiscovery"));
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
}

static void
test_discovery_stops_when_its_caller_leaves_the_bus (Fixture *f, gconstpointer data)
{
  g_autoptr (GDBusConnection) app = connect_bus ();
  g_autoptr (GVariant) params = NULL;

  script_starts_discovery (f, app);
  stall_advertises (f, DEV, -50);
  FAKE_RUN_UNTIL (f->fake, f->added->len == 1);
  g_dbus_connection_close_sync (app, NULL, NULL);
  /* As bluetoothd does for its own clients: the session ends with it. */
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  FAKE_RUN_UNTIL (f->fake, f->removed->len == 1);
  g_assert_cmpstr (f->removed->pdata[0], ==, STALL_PATH);
  g_assert_false (is_discovering (f));
}

static void
test_only_the_caller_that_started_discovery_stops_it (Fixture *f, gconstpointer data)
{
  g_autoptr (GDBusConnection) other = connect_bus ();
  g_autoptr (GVariant) params = NULL;
  g_autofree char *stop = NULL;
  g_autofree char *again = NULL;
  g_autofree char *stop_other = NULL;

  script_starts_discovery (f, f->client);
  stop = call_register (f, other, "StopDiscovery");
  g_assert_cmpstr (stop, ==, "org.tally.Error.NotFound");
  again = call_register (f, f->client, "StartDiscovery");
  g_assert_cmpstr (again, ==, "org.tally.Error.Exists");
  /* Nothing reached bluetoothd: discovery goes on. */
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_true (is_discovering (f));

  /* A second caller shares the scan; the first leaving does not end it. */
  g_assert_null (call_register (f, other, "StartDiscovery"));
  g_assert_null (call_register (f, f->client, "StopDiscovery"));
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_true (is_discovering (f));
  g_assert_null (call_register (f, other, "StopDiscovery"));
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  g_assert_false (is_discovering (f));
  stop_other = call_register (f, other, "StopDiscovery");
  g_assert_cmpstr (stop_other, ==, "org.tally.Error.NotFound");
}

static void
test_adapter_switched_off_ends_every_session (Fixture *f, gconstpointer data)
{
  g_autofree char *stop = NULL;

  script_starts_discovery (f, f->client);
  stall_advertises (f, DEV, -50);
  FAKE_RUN_UNTIL (f->fake, f->added->len == 1);
  fake_bluez_emit_changed (f->fake, ADAPTER, FAKE_ADAPTER_IFACE,
                           "{'Powered': <false>, 'Discovering': <false>}");
  FAKE_RUN_UNTIL (f->fake, f->removed->len == 1);
  g_assert_false (is_discovering (f));
  /* bluetoothd has no session left: nothing to stop, and the caller's
   * session is gone too. */
  stop = call_register (f, f->client, "StopDiscovery");
  g_assert_cmpstr (stop, ==, "org.tally.Error.NotFound");
  fake_bluez_expect_quiet (f->fake, 200);
}

/* A stall with tag 100000@i on its own device. */
static void
numbered_stall_advertises (Fixture *f, guint i)
{
  g_autofree char *device = g_strdup_printf (ADAPTER "/dev_00_AA_01_01_01_%02X", i);
  g_autofree char *text =
    g_strdup_printf ("{'RSSI': <int16 -50>, 'UUIDs': <['" TALLY_GATT_SERVICE_UUID "']>, "
                     "'ManufacturerData': <{uint16 0xffff: <[byte 0x10, 0x00, 0x00, %u]>}>}",
                     i);

  fake_bluez_emit_added (f->fake, device, FAKE_DEVICE_IFACE, text);
}

static char *
numbered_stall_path (guint i)
{
  return g_strdup_printf (TALLY_NEARBY_PATH_PREFIX "100000%02x", i);
}

/* One radio rotating addresses and tags fills the list: a real stall
 * heard after still shows, in place of the stall heard least recently. */
static void
test_full_list_replaces_the_stall_heard_least_recently (Fixture *f, gconstpointer data)
{
  TallyDBusNearby *nearby = tally_daemon_get_nearby (f->daemon);
  g_autofree char *evicted = numbered_stall_path (5);
  g_autofree char *newest = numbered_stall_path (TALLY_NEARBY_MAX_STALLS);
  g_autoptr (GVariant) params = NULL;

  script_starts_discovery (f, f->client);
  for (guint i = 0; i < TALLY_NEARBY_MAX_STALLS; i++)
    numbered_stall_advertises (f, i);
  FAKE_RUN_UNTIL (f->fake, f->added->len == TALLY_NEARBY_MAX_STALLS);
  /* All heard again but stall 5. */
  for (guint i = 0; i < TALLY_NEARBY_MAX_STALLS; i++)
    if (i != 5)
      numbered_stall_advertises (f, i);
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_cmpuint (f->removed->len, ==, 0);

  numbered_stall_advertises (f, TALLY_NEARBY_MAX_STALLS);
  FAKE_RUN_UNTIL (f->fake, f->added->len == TALLY_NEARBY_MAX_STALLS + 1);
  g_assert_cmpstr (f->added->pdata[TALLY_NEARBY_MAX_STALLS], ==, newest);
  FAKE_RUN_UNTIL (f->fake, f->removed->len == 1);
  g_assert_cmpstr (f->removed->pdata[0], ==, evicted);
  g_assert_cmpuint (tally_dbus_nearby_get_stall_count (nearby), ==, TALLY_NEARBY_MAX_STALLS);

  g_assert_null (call_register (f, f->client, "StopDiscovery"));
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
}

/* @n sessions of @uid, each on a connection of its own kept in @conns. */
static void
start_sessions_of (Fixture *f, GPtrArray *conns, guint32 uid, guint n)
{
  TallyDBusNearby *nearby = tally_daemon_get_nearby (f->daemon);

  for (guint i = 0; i < n; i++) {
    g_autoptr (GError) error = NULL;
    GDBusConnection *c = connect_bus ();

    g_ptr_array_add (conns, c);
    g_assert_true (
      tally_dbus_nearby_start (nearby, g_dbus_connection_get_unique_name (c), uid, &error));
    g_assert_no_error (error);
  }
}

static void
close_connection (gpointer data)
{
  g_dbus_connection_close_sync (data, NULL, NULL);
  g_object_unref (data);
}

/* Sessions are counted per UNIX user: a user at its share cannot start
 * more, other users still can, up to the total. */
static void
test_one_user_cannot_take_every_discovery_session (Fixture *f, gconstpointer data)
{
  TallyDBusNearby *nearby = tally_daemon_get_nearby (f->daemon);
  g_autoptr (GPtrArray) conns = g_ptr_array_new_with_free_func (close_connection);
  g_autoptr (GDBusConnection) spare = connect_bus ();
  g_autoptr (GDBusConnection) other = connect_bus ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) params = NULL;
  guint sessions;

  /* The first session (the test's own user, through D-Bus) starts the
   * scan. */
  script_starts_discovery (f, f->client);
  start_sessions_of (f, conns, 4242, TALLY_NEARBY_MAX_SESSIONS_PER_UID);
  g_assert_false (
    tally_dbus_nearby_start (nearby, g_dbus_connection_get_unique_name (spare), 4242, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);
  /* Another user is not locked out. */
  g_assert_null (call_register (f, other, "StartDiscovery"));
  sessions = 1 + TALLY_NEARBY_MAX_SESSIONS_PER_UID + 1;

  /* Up to the total, whatever the users. */
  for (guint32 uid = 5000; sessions < TALLY_NEARBY_MAX_SESSIONS; uid++) {
    guint n = MIN (TALLY_NEARBY_MAX_SESSIONS_PER_UID, TALLY_NEARBY_MAX_SESSIONS - sessions);

    start_sessions_of (f, conns, uid, n);
    sessions += n;
  }
  g_assert_false (
    tally_dbus_nearby_start (nearby, g_dbus_connection_get_unique_name (spare), 9999, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  fake_bluez_expect_quiet (f->fake, 100);
  g_assert_true (is_discovering (f));

  /* The last session to go stops the scan. */
  g_clear_pointer (&conns, g_ptr_array_unref);
  g_assert_null (call_register (f, other, "StopDiscovery"));
  g_assert_null (call_register (f, f->client, "StopDiscovery"));
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  g_assert_false (is_discovering (f));
}

static void
test_discovery_without_ble_is_not_supported (Fixture *f, gconstpointer data)
{
  g_autofree char *start = call_register (f, f->client, "StartDiscovery");
  g_autofree char *stop = call_register (f, f->client, "StopDiscovery");

  g_assert_cmpstr (start, ==, "org.tally.Error.NotSupported");
  g_assert_cmpstr (stop, ==, "org.tally.Error.NotSupported");
  g_assert_false (is_discovering (f));
  g_assert_false (has_path (f->added, STALL_PATH));
}

int
main (int argc, char *argv[])
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  tally_dbus_error_register ();

  /* BlueZ is on the system bus: here a private bus stands in for it. */
  system_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (system_bus);
  g_setenv ("DBUS_SYSTEM_BUS_ADDRESS", g_test_dbus_get_bus_address (system_bus), TRUE);
  api_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (api_bus);

#define ADD(name, func, ble)                                                                       \
  g_test_add (name, Fixture, GINT_TO_POINTER (ble ? 0 : 1), fixture_set_up, func, fixture_tear_down)
  ADD ("/nearby/stall-advertising-appears-and-goes-with-its-device",
       test_stall_advertising_appears_and_goes_with_its_device, TRUE);
  ADD ("/nearby/silent-stall-is-removed-after-the-timeout",
       test_silent_stall_is_removed_after_the_timeout, TRUE);
  ADD ("/nearby/discovery-stops-when-its-caller-leaves-the-bus",
       test_discovery_stops_when_its_caller_leaves_the_bus, TRUE);
  ADD ("/nearby/only-the-caller-that-started-discovery-stops-it",
       test_only_the_caller_that_started_discovery_stops_it, TRUE);
  ADD ("/nearby/adapter-switched-off-ends-every-session",
       test_adapter_switched_off_ends_every_session, TRUE);
  ADD ("/nearby/full-list-replaces-the-stall-heard-least-recently",
       test_full_list_replaces_the_stall_heard_least_recently, TRUE);
  ADD ("/nearby/one-user-cannot-take-every-discovery-session",
       test_one_user_cannot_take_every_discovery_session, TRUE);
  ADD ("/nearby/discovery-without-ble-is-not-supported",
       test_discovery_without_ble_is_not_supported, FALSE);
#undef ADD

  rc = g_test_run ();
  g_test_dbus_down (api_bus);
  g_object_unref (api_bus);
  g_test_dbus_down (system_bus);
  g_object_unref (system_bus);
  return rc;
}
