/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fake-bluez.h"

#include <stdlib.h>
#include <string.h>

/* What of BlueZ's API (doc/org.bluez.*.rst) our code touches.  Properties
 * are declared so that GDBus accepts Get and GetAll for them; with no
 * get_property in the vtable the reads reach the script as calls. */
static const char fake_xml[] =
  "<node>"
  "  <interface name='" FAKE_OM_IFACE "'>"
  "    <method name='GetManagedObjects'>"
  "      <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
  "    </method>"
  "  </interface>"
  "  <interface name='" FAKE_ADAPTER_IFACE "'>"
  "    <method name='StartDiscovery'/>"
  "    <method name='StopDiscovery'/>"
  "    <method name='SetDiscoveryFilter'>"
  "      <arg name='filter' type='a{sv}' direction='in'/>"
  "    </method>"
  "    <property name='Powered' type='b' access='read'/>"
  "    <property name='Discovering' type='b' access='read'/>"
  "    <property name='Modalias' type='s' access='read'/>"
  "    <property name='Address' type='s' access='read'/>"
  "  </interface>"
  "  <interface name='" FAKE_GATT_MANAGER_IFACE "'>"
  "    <method name='RegisterApplication'>"
  "      <arg name='application' type='o' direction='in'/>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "    </method>"
  "    <method name='UnregisterApplication'>"
  "      <arg name='application' type='o' direction='in'/>"
  "    </method>"
  "  </interface>"
  "  <interface name='" FAKE_ADV_MANAGER_IFACE "'>"
  "    <method name='RegisterAdvertisement'>"
  "      <arg name='advertisement' type='o' direction='in'/>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "    </method>"
  "    <method name='UnregisterAdvertisement'>"
  "      <arg name='advertisement' type='o' direction='in'/>"
  "    </method>"
  "  </interface>"
  "  <interface name='" FAKE_DEVICE_IFACE "'>"
  "    <method name='Connect'/>"
  "    <method name='Disconnect'/>"
  "    <property name='Address' type='s' access='read'/>"
  "    <property name='Connected' type='b' access='read'/>"
  "    <property name='ServicesResolved' type='b' access='read'/>"
  "    <property name='RSSI' type='n' access='read'/>"
  "    <property name='UUIDs' type='as' access='read'/>"
  "    <property name='ManufacturerData' type='a{qv}' access='read'/>"
  "    <property name='Paired' type='b' access='read'/>"
  "    <property name='Trusted' type='b' access='read'/>"
  "  </interface>"
  "  <interface name='" FAKE_CHRC_IFACE "'>"
  "    <method name='WriteValue'>"
  "      <arg name='value' type='ay' direction='in'/>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "    </method>"
  "    <method name='AcquireWrite'>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "      <arg name='fd' type='h' direction='out'/>"
  "      <arg name='mtu' type='q' direction='out'/>"
  "    </method>"
  "    <method name='AcquireNotify'>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "      <arg name='fd' type='h' direction='out'/>"
  "      <arg name='mtu' type='q' direction='out'/>"
  "    </method>"
  "    <method name='StartNotify'/>"
  "    <method name='StopNotify'/>"
  "    <property name='UUID' type='s' access='read'/>"
  "    <property name='Value' type='ay' access='read'/>"
  "  </interface>"
  "</node>";

typedef struct
{
  /* A call (invocation set) or an application's PropertiesChanged. */
  GDBusMethodInvocation *invocation;
  char *sender;
  char *path;
  char *iface;
  char *member;
  GVariant *params;
  gint64 arrived; /* monotonic, when the fake saw it */
} FakeEvent;

struct _FakeBluez
{
  GTestDBus *bus;
  GDBusConnection *conn;
  GDBusNodeInfo *info;
  GArray *object_ids;
  guint app_signals;
  GQueue events;
  gint64 last_arrived; /* of the newest event */
  GPtrArray *held;
  GSource *tick;
  guint step;
  guint wait_seconds;
};

static void
fake_event_free (FakeEvent *event)
{
  g_clear_object (&event->invocation);
  g_free (event->sender);
  g_free (event->path);
  g_free (event->iface);
  g_free (event->member);
  g_clear_pointer (&event->params, g_variant_unref);
  g_free (event);
}

static char *
fake_event_describe (const FakeEvent *event)
{
  g_autofree char *params = g_variant_print (event->params, FALSE);

  return g_strdup_printf ("%s %s.%s on %s %s", event->invocation ? "call" : "signal", event->iface,
                          event->member, event->path, params);
}

static void
fake_queue (FakeBluez *fake,
            GDBusMethodInvocation *invocation,
            const char *sender,
            const char *path,
            const char *iface,
            const char *member,
            GVariant *params)
{
  FakeEvent *event = g_new0 (FakeEvent, 1);

  event->invocation = invocation;
  event->sender = g_strdup (sender);
  event->path = g_strdup (path);
  event->iface = g_strdup (iface);
  event->member = g_strdup (member);
  event->params = g_variant_ref (params);
  event->arrived = g_get_monotonic_time ();
  fake->last_arrived = event->arrived;
  g_queue_push_tail (&fake->events, event);
}

static void
fake_method_call (GDBusConnection *connection,
                  const char *sender,
                  const char *path,
                  const char *iface,
                  const char *method,
                  GVariant *params,
                  GDBusMethodInvocation *invocation,
                  gpointer user_data)
{
  FakeBluez *fake = user_data;

  /* Properties.Get (ss) and GetAll (s) name the interface read. */
  fake_queue (fake, invocation, sender, path, iface, method, params);
}

static void
fake_app_signal (GDBusConnection *connection,
                 const char *sender,
                 const char *path,
                 const char *iface,
                 const char *signal,
                 GVariant *params,
                 gpointer user_data)
{
  FakeBluez *fake = user_data;

  /* The stand-in's own signals come back to it too. */
  if (g_strcmp0 (sender, g_dbus_connection_get_unique_name (connection)) == 0)
    return;
  fake_queue (fake, NULL, sender, path, iface, signal, params);
}

static gboolean
fake_tick_cb (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

FakeBluez *
fake_bluez_new (GTestDBus *bus)
{
  FakeBluez *fake = g_new0 (FakeBluez, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  guint32 result = 0;

  fake->bus = g_object_ref (bus);
  fake->info = g_dbus_node_info_new_for_xml (fake_xml, &error);
  g_assert_no_error (error);
  fake->object_ids = g_array_new (FALSE, FALSE, sizeof (guint));
  fake->held = g_ptr_array_new_with_free_func (g_object_unref);
  fake->wait_seconds = 20;
  if (g_getenv ("FAKE_BLUEZ_WAIT") != NULL)
    fake->wait_seconds = atoi (g_getenv ("FAKE_BLUEZ_WAIT"));
  g_queue_init (&fake->events);
  /* Bounds each iteration so that waits notice their deadline. */
  fake->tick = g_timeout_source_new (50);
  g_source_set_callback (fake->tick, fake_tick_cb, NULL, NULL);
  g_source_attach (fake->tick, NULL);

  fake->conn = fake_bluez_connect (fake);
  reply = g_dbus_connection_call_sync (
    fake->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "RequestName", g_variant_new ("(su)", FAKE_BLUEZ_NAME, 4u), G_VARIANT_TYPE ("(u)"),
    G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(u)", &result);
  g_assert_cmpuint (result, ==, 1); /* primary owner */

  /* A GATT application's notifications: Value changes on its objects. */
  fake->app_signals = g_dbus_connection_signal_subscribe (
    fake->conn, NULL, FAKE_PROPS_IFACE, "PropertiesChanged", NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
    fake_app_signal, fake, NULL);
  fake_bluez_export (fake, "/", FAKE_OM_IFACE);
  return fake;
}

void
fake_bluez_free (FakeBluez *fake)
{
  /* Late calls of the code under test (fire-and-forget ones) reach the
   * queue before it is judged. */
  for (guint i = 0; i < 5; i++)
    while (g_main_context_iteration (NULL, FALSE))
      ;
  if (!g_queue_is_empty (&fake->events)) {
    g_autofree char *what = fake_event_describe (g_queue_peek_head (&fake->events));

    g_error ("fake-bluez after step %u: unexpected %s", fake->step, what);
  }
  for (guint i = 0; i < fake->held->len; i++)
    g_dbus_method_invocation_return_dbus_error (g_object_ref (fake->held->pdata[i]),
                                                "org.bluez.Error.Failed", "bluetoothd went away");
  g_ptr_array_unref (fake->held);
  g_dbus_connection_signal_unsubscribe (fake->conn, fake->app_signals);
  for (guint i = 0; i < fake->object_ids->len; i++)
    g_dbus_connection_unregister_object (fake->conn, g_array_index (fake->object_ids, guint, i));
  g_array_unref (fake->object_ids);
  g_dbus_connection_close_sync (fake->conn, NULL, NULL);
  g_object_unref (fake->conn);
  g_dbus_node_info_unref (fake->info);
  g_source_destroy (fake->tick);
  g_source_unref (fake->tick);
  g_object_unref (fake->bus);
  g_free (fake);
}

GDBusConnection *
fake_bluez_connect (FakeBluez *fake)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *conn = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (fake->bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);

  g_assert_no_error (error);
  g_dbus_connection_set_exit_on_close (conn, FALSE);
  return conn;
}

static const GDBusInterfaceVTable fake_vtable = { fake_method_call, NULL, NULL, { 0 } };

void
fake_bluez_export (FakeBluez *fake, const char *path, const char *iface)
{
  g_autoptr (GError) error = NULL;
  GDBusInterfaceInfo *info = g_dbus_node_info_lookup_interface (fake->info, iface);
  guint id;

  g_assert_nonnull (info);
  id = g_dbus_connection_register_object (fake->conn, path, info, &fake_vtable, fake, NULL, &error);
  g_assert_no_error (error);
  g_array_append_val (fake->object_ids, id);
}

void
fake_bluez_set_wait (FakeBluez *fake, guint seconds)
{
  fake->wait_seconds = seconds;
}

gint64
fake_bluez_get_wait_us (FakeBluez *fake)
{
  return (gint64) fake->wait_seconds * G_USEC_PER_SEC;
}

void
fake_bluez_iterate (FakeBluez *fake)
{
  g_main_context_iteration (NULL, TRUE);
}

/* The next event, or a failure naming @where and what step @fake is at. */
static FakeEvent *
fake_next (FakeBluez *fake, const char *where, const char *expected)
{
  gint64 until = g_get_monotonic_time () + fake_bluez_get_wait_us (fake);

  fake->step++;
  while (g_queue_is_empty (&fake->events) && g_get_monotonic_time () < until)
    fake_bluez_iterate (fake);
  if (g_queue_is_empty (&fake->events))
    g_error ("%s: fake-bluez step %u: expected %s, nothing came within %u s", where, fake->step,
             expected, fake->wait_seconds);
  return g_queue_pop_head (&fake->events);
}

GDBusMethodInvocation *
fake_bluez_expect_call_at (FakeBluez *fake,
                           const char *where,
                           const char *path,
                           const char *iface,
                           const char *method)
{
  g_autofree char *expected = g_strdup_printf ("call %s.%s on %s", iface, method, path);
  FakeEvent *event = fake_next (fake, where, expected);
  GDBusMethodInvocation *invocation;

  if (event->invocation == NULL || strcmp (event->path, path) != 0 ||
      strcmp (event->iface, iface) != 0 || strcmp (event->member, method) != 0) {
    g_autofree char *got = fake_event_describe (event);

    g_error ("%s: fake-bluez step %u: expected %s, got %s", where, fake->step, expected, got);
  }
  invocation = g_steal_pointer (&event->invocation);
  fake_event_free (event);
  return invocation;
}

GVariant *
fake_bluez_expect_reply_at (FakeBluez *fake,
                            const char *where,
                            const char *path,
                            const char *iface,
                            const char *method,
                            GVariant *reply)
{
  GDBusMethodInvocation *invocation = fake_bluez_expect_call_at (fake, where, path, iface, method);
  GVariant *params = g_variant_ref (g_dbus_method_invocation_get_parameters (invocation));

  g_dbus_method_invocation_return_value (invocation, reply);
  return params;
}

GVariant *
fake_bluez_expect_error_at (FakeBluez *fake,
                            const char *where,
                            const char *path,
                            const char *iface,
                            const char *method,
                            const char *name)
{
  GDBusMethodInvocation *invocation = fake_bluez_expect_call_at (fake, where, path, iface, method);
  GVariant *params = g_variant_ref (g_dbus_method_invocation_get_parameters (invocation));

  g_dbus_method_invocation_return_dbus_error (invocation, name, "scripted failure");
  return params;
}

void
fake_bluez_hold (FakeBluez *fake, GDBusMethodInvocation *invocation)
{
  g_ptr_array_add (fake->held, invocation);
}

GVariant *
fake_bluez_expect_value_changed_at (FakeBluez *fake, const char *where, const char *path)
{
  g_autofree char *expected = g_strdup_printf ("a Value change on %s", path);
  FakeEvent *event = fake_next (fake, where, expected);
  const char *iface = NULL;
  GVariant *changed = NULL;

  if (event->invocation == NULL && strcmp (event->path, path) == 0 &&
      g_variant_is_of_type (event->params, G_VARIANT_TYPE ("(sa{sv}as)")))
    g_variant_get (event->params, "(&s@a{sv}@as)", &iface, &changed, NULL);
  if (changed == NULL || strcmp (iface, FAKE_CHRC_IFACE) != 0) {
    g_autofree char *got = fake_event_describe (event);

    g_error ("%s: fake-bluez step %u: expected %s, got %s", where, fake->step, expected, got);
  }
  fake_event_free (event);
  return changed;
}

void
fake_bluez_expect_quiet_at (FakeBluez *fake, const char *where, guint ms)
{
  gint64 until = g_get_monotonic_time () + (gint64) ms * 1000;

  fake->step++;
  while (g_queue_is_empty (&fake->events) && g_get_monotonic_time () < until)
    fake_bluez_iterate (fake);
  if (!g_queue_is_empty (&fake->events)) {
    g_autofree char *got = fake_event_describe (g_queue_peek_head (&fake->events));

    g_error ("%s: fake-bluez step %u: expected quiet for %u ms, got %s", where, fake->step, ms,
             got);
  }
}

void
fake_bluez_expect_quiet_since_last_at (FakeBluez *fake, const char *where, guint ms)
{
  /* From the last call, not from now: a slow test (memcheck) must not eat
   * into the client's own back-off. */
  gint64 since = fake->last_arrived;
  gint64 until = since + (gint64) ms * 1000;

  fake->step++;
  while (g_queue_is_empty (&fake->events) && g_get_monotonic_time () < until)
    fake_bluez_iterate (fake);
  FakeEvent *next = g_queue_peek_head (&fake->events);
  if (next != NULL && next->arrived < until) {
    g_autofree char *got = fake_event_describe (next);

    g_error ("%s: fake-bluez step %u: expected quiet for %u ms after the last call, got %s "
             "after %" G_GINT64_FORMAT " ms",
             where, fake->step, ms, got, (next->arrived - since) / 1000);
  }
}

static void
fake_emit (FakeBluez *fake,
           const char *path,
           const char *iface,
           const char *signal,
           GVariant *params)
{
  g_autoptr (GError) error = NULL;

  g_dbus_connection_emit_signal (fake->conn, NULL, path, iface, signal, params, &error);
  g_assert_no_error (error);
  g_dbus_connection_flush_sync (fake->conn, NULL, &error);
  g_assert_no_error (error);
}

/* Not floating: the caller unrefs it. */
static GVariant *
parse_vardict (const char *text)
{
  g_autoptr (GError) error = NULL;
  GVariant *value = g_variant_parse (G_VARIANT_TYPE_VARDICT, text, NULL, NULL, &error);

  g_assert_no_error (error);
  return value;
}

void
fake_bluez_emit_changed (FakeBluez *fake, const char *path, const char *iface, const char *text)
{
  g_autoptr (GVariant) changed = parse_vardict (text);

  fake_emit (fake, path, FAKE_PROPS_IFACE, "PropertiesChanged",
             g_variant_new ("(s@a{sv}as)", iface, changed, NULL));
}

void
fake_bluez_emit_added (FakeBluez *fake, const char *path, const char *iface, const char *text)
{
  g_autoptr (GVariant) props = parse_vardict (text);
  GVariantBuilder ifaces;

  g_variant_builder_init (&ifaces, G_VARIANT_TYPE ("a{sa{sv}}"));
  g_variant_builder_add (&ifaces, "{s@a{sv}}", iface, props);
  fake_emit (fake, "/", FAKE_OM_IFACE, "InterfacesAdded",
             g_variant_new ("(oa{sa{sv}})", path, &ifaces));
}

void
fake_bluez_emit_removed (FakeBluez *fake, const char *path, const char *iface)
{
  const char *ifaces[] = { iface, NULL };

  fake_emit (fake, "/", FAKE_OM_IFACE, "InterfacesRemoved", g_variant_new ("(o^as)", path, ifaces));
}

typedef struct
{
  gboolean done;
  GVariant *reply;
  GUnixFDList *fds;
  GError *error;
} FakeCall;

static void
fake_call_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  FakeCall *call = user_data;

  call->reply = g_dbus_connection_call_with_unix_fd_list_finish (G_DBUS_CONNECTION (source),
                                                                 &call->fds, result, &call->error);
  call->done = TRUE;
}

GVariant *
fake_bluez_call (FakeBluez *fake,
                 const char *dest,
                 const char *path,
                 const char *iface,
                 const char *method,
                 GVariant *params,
                 GUnixFDList **fds_out,
                 GError **error)
{
  FakeCall call = { 0 };

  /* Asynchronously: the application answers from this main context. */
  g_dbus_connection_call_with_unix_fd_list (fake->conn, dest, path, iface, method, params, NULL,
                                            G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, fake_call_done,
                                            &call);
  FAKE_RUN_UNTIL (fake, call.done);
  if (fds_out != NULL)
    *fds_out = g_steal_pointer (&call.fds);
  g_clear_object (&call.fds);
  if (call.error != NULL)
    g_propagate_error (error, call.error);
  return call.reply;
}
