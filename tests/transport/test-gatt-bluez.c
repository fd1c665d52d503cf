/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GATT server and client against a scripted bluetoothd (fake-bluez.h)
 * on a private bus: each test lists the calls our code must make, in
 * order, and what bluetoothd answers or does on its own.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake-bluez.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-client.h"
#include "tally-gatt-link.h"
#include "tally-gatt-scanner.h"
#include "tally-gatt-server.h"

#define ADAPTER            "/org/bluez/hci0"
#define DEV                ADAPTER "/dev_00_AA_01_01_00_01"
#define DEV_ADDRESS        "00:AA:01:01:00:01"
#define REMOTE_SVC         DEV "/service0010"
#define REMOTE_RX          REMOTE_SVC "/char0011"
#define REMOTE_TX          REMOTE_SVC "/char0013"
#define APP                "/org/tally/gatt/hci0"
#define APP_SVC            APP "/service0"
#define APP_RX             APP_SVC "/rx"
#define APP_TX             APP_SVC "/tx"
#define APP_ADV            APP "/adv0"
#define GATT_SERVICE_IFACE "org.bluez.GattService1"
#define ADV_IFACE          "org.bluez.LEAdvertisement1"
/* Adapter1.Modalias of BlueZ 5.76 (per-device sockets) and of 5.66. */
#define MODALIAS_5_76 "usb:v1D6Bp0246d054C"
#define MODALIAS_5_66 "usb:v1D6Bp0246d0542"

/* One private bus for the whole program (see tests/daemon/test-dbus.c). */
static GTestDBus *test_bus;

/* --- a link's side of the story -------------------------------------------------- */

typedef struct
{
  TallyLink *link;
  GPtrArray *fragments; /* GBytes */
  gboolean closed;
  GError *error;
} LinkWatch;

static void
watch_fragment (TallyLink *link, const guint8 *data, gsize len, gpointer user_data)
{
  LinkWatch *watch = user_data;

  g_ptr_array_add (watch->fragments, g_bytes_new (data, len));
}

static void
watch_closed (TallyLink *link, const GError *error, gpointer user_data)
{
  LinkWatch *watch = user_data;

  watch->closed = TRUE;
  if (error != NULL)
    watch->error = g_error_copy (error);
}

static LinkWatch *
watch_new (TallyLink *link)
{
  LinkWatch *watch = g_new0 (LinkWatch, 1);

  watch->link = tally_link_ref (link);
  watch->fragments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  tally_link_set_handlers (link, watch_fragment, watch_closed, watch, NULL);
  return watch;
}

static void
watch_free (LinkWatch *watch)
{
  if (watch == NULL)
    return;
  if (!watch->closed)
    tally_link_close (watch->link);
  tally_link_unref (watch->link);
  g_ptr_array_unref (watch->fragments);
  g_clear_error (&watch->error);
  g_free (watch);
}

static void
assert_fragment (LinkWatch *watch, guint index, const char *text)
{
  g_assert_cmpuint (watch->fragments->len, >, index);
  g_assert_cmpmem (g_bytes_get_data (watch->fragments->pdata[index], NULL),
                   g_bytes_get_size (watch->fragments->pdata[index]), text, strlen (text));
}

typedef struct
{
  FakeBluez *fake;
  GDBusConnection *payee_bus;
  GDBusConnection *payer_bus;

  TallyGattServer *server;
  GError *server_error;
  gboolean server_done;
  guint server_data_destroyed; /* times the server dropped its user_data */
  GPtrArray *payee_links; /* LinkWatch, in the order the server handed them out */

  gboolean connect_done;
  TallyLink *payer_link;
  GError *connect_error;
  guint8 failed_tag[TALLY_GATT_TAG_BYTES]; /* the last advertisement BlueZ refused */
  guint adverts_failed;
  TallyGattConnectInfo info;
  LinkWatch *payer;
} Fixture;

/* --- adapter: every call into the public tally-gatt-*.h API ---------------------- */

static void
on_payee_link (TallyGattServer *server, TallyLink *link, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->payee_links, watch_new (link));
}

static void
server_new_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Fixture *f = user_data;

  f->server = tally_gatt_server_new_finish (result, &f->server_error);
  f->server_done = TRUE;
}

static void
server_data_destroy (gpointer user_data)
{
  Fixture *f = user_data;

  f->server_data_destroyed++;
}

static void
api_server_start (Fixture *f, guint max_devices)
{
  tally_gatt_server_new_async (f->payee_bus, "hci0", max_devices, on_payee_link, f,
                               server_data_destroy, NULL, server_new_done, f);
}

/* The server lets go of its user_data exactly once, when its owner drops
 * it, and not before. */
static void
api_server_free (Fixture *f)
{
  if (f->server == NULL)
    return;
  g_assert_cmpuint (f->server_data_destroyed, ==, 0);
  g_clear_pointer (&f->server, tally_gatt_server_free);
  g_assert_cmpuint (f->server_data_destroyed, ==, 1);
}

static void
api_advertise (Fixture *f, const guint8 *tag)
{
  tally_gatt_server_advertise (f->server, tag);
}

static void
api_stop_advertising (Fixture *f)
{
  tally_gatt_server_stop_advertising (f->server);
}

static gboolean
api_is_advertising (Fixture *f)
{
  return tally_gatt_server_is_advertising (f->server);
}

static TallyGattServerMode
api_get_mode (Fixture *f)
{
  return tally_gatt_server_get_mode (f->server);
}

static void
connect_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Fixture *f = user_data;

  f->payer_link = tally_gatt_connect_finish (result, &f->info, &f->connect_error);
  f->connect_done = TRUE;
}

static void
api_connect (Fixture *f, const char *address, guint timeout_seconds)
{
  tally_gatt_connect_async (f->payer_bus, "hci0", address, timeout_seconds, NULL, connect_done, f);
}

/* --- fixture ---------------------------------------------------------------------- */

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  f->fake = fake_bluez_new (test_bus);
  f->payee_bus = fake_bluez_connect (f->fake);
  f->payer_bus = fake_bluez_connect (f->fake);
  f->payee_links = g_ptr_array_new_with_free_func ((GDestroyNotify) watch_free);
  fake_bluez_export (f->fake, ADAPTER, FAKE_ADAPTER_IFACE);
  fake_bluez_export (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE);
  fake_bluez_export (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE);
  fake_bluez_export (f->fake, DEV, FAKE_DEVICE_IFACE);
  fake_bluez_export (f->fake, REMOTE_RX, FAKE_CHRC_IFACE);
  fake_bluez_export (f->fake, REMOTE_TX, FAKE_CHRC_IFACE);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_assert_null (f->server);
  g_ptr_array_unref (f->payee_links);
  watch_free (f->payer);
  g_clear_pointer (&f->payer_link, tally_link_unref);
  g_clear_error (&f->server_error);
  g_clear_error (&f->connect_error);
  fake_bluez_free (f->fake);
  g_dbus_connection_close_sync (f->payee_bus, NULL, NULL);
  g_dbus_connection_close_sync (f->payer_bus, NULL, NULL);
  g_object_unref (f->payee_bus);
  g_object_unref (f->payer_bus);
}

static void
assert_string_arg (GVariant *params, guint index, const char *expected)
{
  g_autoptr (GVariant) child = g_variant_get_child_value (params, index);

  g_assert_cmpstr (g_variant_get_string (child, NULL), ==, expected);
}

/* --- the payee's script ------------------------------------------------------------- */

/* bluetoothd reads the application it is asked to register, as
 * doc/org.bluez.GattManager.rst has it, and checks what a payer needs. */
static void
check_application_objects (Fixture *f, const char *app_owner, TallyGattServerMode mode)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = fake_bluez_call (f->fake, app_owner, APP, FAKE_OM_IFACE,
                                                "GetManagedObjects", NULL, NULL, &error);
  g_autoptr (GVariant) objects = NULL;
  g_autoptr (GVariant) svc = NULL, rx = NULL, tx = NULL;
  const char *uuid = NULL, *service = NULL;
  g_autofree const char **flags = NULL;
  gboolean acquired;

  g_assert_no_error (error);
  objects = g_variant_get_child_value (reply, 0);
  g_assert_cmpuint (g_variant_n_children (objects), ==, 3);
  g_assert_true (g_variant_lookup (objects, APP_SVC, "@a{sa{sv}}", &svc));
  g_assert_true (g_variant_lookup (objects, APP_RX, "@a{sa{sv}}", &rx));
  g_assert_true (g_variant_lookup (objects, APP_TX, "@a{sa{sv}}", &tx));

  {
    g_autoptr (GVariant) props = g_variant_lookup_value (svc, GATT_SERVICE_IFACE, NULL);
    gboolean primary = FALSE;

    g_assert_true (g_variant_lookup (props, "UUID", "&s", &uuid));
    g_assert_cmpstr (uuid, ==, TALLY_GATT_SERVICE_UUID);
    g_assert_true (g_variant_lookup (props, "Primary", "b", &primary));
    g_assert_true (primary);
  }
  {
    g_autoptr (GVariant) props = g_variant_lookup_value (rx, FAKE_CHRC_IFACE, NULL);

    g_assert_true (g_variant_lookup (props, "UUID", "&s", &uuid));
    g_assert_cmpstr (uuid, ==, TALLY_GATT_RX_UUID);
    g_assert_true (g_variant_lookup (props, "Service", "&o", &service));
    g_assert_cmpstr (service, ==, APP_SVC);
    g_assert_true (g_variant_lookup (props, "Flags", "^a&s", &flags));
    /* "write": a payer's first fragment comes as a Write Request. */
    g_assert_cmpstrv (flags, ((const char *[]){ "write", "write-without-response", NULL }));
    g_clear_pointer (&flags, g_free);
    /* AcquireWrite only where BlueZ keeps a write socket per device. */
    g_assert_cmpint (g_variant_lookup (props, "WriteAcquired", "b", &acquired), ==,
                     mode == TALLY_GATT_SERVER_PER_DEVICE);
  }
  {
    g_autoptr (GVariant) props = g_variant_lookup_value (tx, FAKE_CHRC_IFACE, NULL);

    g_assert_true (g_variant_lookup (props, "UUID", "&s", &uuid));
    g_assert_cmpstr (uuid, ==, TALLY_GATT_TX_UUID);
    g_assert_true (g_variant_lookup (props, "Flags", "^a&s", &flags));
    g_assert_cmpstrv (flags, ((const char *[]){ "notify", NULL }));
    g_assert_true (g_variant_lookup (props, "NotifyAcquired", "b", &acquired));
  }
}

/* GetAll Adapter1 (the BlueZ version decides the mode), GetManagedObjects
 * (paired devices), RegisterApplication; returns the application's bus
 * name. */
static char *
script_server_registers (Fixture *f, const char *modalias, TallyGattServerMode mode)
{
  g_autoptr (GVariant) params = NULL;
  GDBusMethodInvocation *invocation;
  g_autofree char *owner = NULL;
  g_autofree const char **none = NULL;

  api_server_start (f, 2);
  params = fake_bluez_expect_reply (
    f->fake, ADAPTER, FAKE_PROPS_IFACE, "GetAll",
    g_variant_new_parsed ("({'Modalias': <%s>, 'Powered': <true>},)", modalias));
  assert_string_arg (params, 0, FAKE_ADAPTER_IFACE);
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, "/", FAKE_OM_IFACE, "GetManagedObjects",
                                    g_variant_new_parsed ("(@a{oa{sa{sv}}} {},)"));
  g_clear_pointer (&params, g_variant_unref);

  invocation =
    fake_bluez_expect_call (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE, "RegisterApplication");
  assert_string_arg (g_dbus_method_invocation_get_parameters (invocation), 0, APP);
  owner = g_strdup (g_dbus_method_invocation_get_sender (invocation));
  check_application_objects (f, owner, mode);
  g_dbus_method_invocation_return_value (invocation, NULL);

  FAKE_RUN_UNTIL (f->fake, f->server_done);
  g_assert_no_error (f->server_error);
  g_assert_nonnull (f->server);
  g_assert_cmpint (api_get_mode (f), ==, mode);
  return g_steal_pointer (&owner);
}

/* Freeing the server unregisters what it registered, in this order. */
static void
script_server_frees (Fixture *f, gboolean advertising)
{
  g_autoptr (GVariant) adv = NULL;
  g_autoptr (GVariant) app = NULL;

  api_server_free (f);
  if (advertising) {
    adv = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                   "UnregisterAdvertisement", NULL);
    assert_string_arg (adv, 0, APP_ADV);
  }
  app = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE, "UnregisterApplication",
                                 NULL);
  assert_string_arg (app, 0, APP);
}

static GVariant *
device_options (guint16 mtu)
{
  return g_variant_new_parsed ("({'device': <%o>, 'mtu': <%q>, 'link': <'LE'>},)", DEV, mtu);
}

/* bluetoothd's AcquireWrite / AcquireNotify on the payee's characteristic:
 * its end of the socket. */
static int
acquire_from_payee (Fixture *f,
                    const char *owner,
                    const char *path,
                    const char *method,
                    guint16 mtu)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GUnixFDList) fds = NULL;
  g_autoptr (GVariant) reply = fake_bluez_call (f->fake, owner, path, FAKE_CHRC_IFACE, method,
                                                device_options (mtu), &fds, &error);
  gint32 handle = -1;
  guint16 reply_mtu = 0;
  int fd;

  g_assert_no_error (error);
  g_variant_get (reply, "(hq)", &handle, &reply_mtu);
  g_assert_cmpint (handle, ==, 0);
  g_assert_cmpuint (reply_mtu, ==, mtu);
  g_assert_nonnull (fds);
  fd = g_unix_fd_list_get (fds, handle, &error);
  g_assert_no_error (error);
  return fd;
}

/* bluetoothd's WriteValue: a Write Command of the payer. */
static void
write_to_payee (Fixture *f, const char *owner, const guint8 *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  GVariant *options = g_variant_new_parsed (
    "{'device': <%o>, 'mtu': <uint16 23>, 'type': <'command'>, 'link': <'LE'>}", DEV);
  g_autoptr (GVariant) reply = fake_bluez_call (
    f->fake, owner, APP_RX, FAKE_CHRC_IFACE, "WriteValue",
    g_variant_new ("(@ay@a{sv})", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1),
                   options),
    NULL, &error);

  g_assert_no_error (error);
}

static void
assert_value (GVariant *changed, const char *text)
{
  g_autoptr (GVariant) value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
  gsize len = 0;
  const guint8 *data;

  g_assert_nonnull (value);
  data = g_variant_get_fixed_array (value, &len, 1);
  g_assert_cmpmem (data, len, text, strlen (text));
}

/* bluetoothd's Value change on the payer's remote tx: a notification
 * without AcquireNotify (b'' text would carry a trailing NUL). */
static void
emit_value_change (Fixture *f, const char *text)
{
  g_autoptr (GVariant) value =
    g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, text, strlen (text), 1));
  g_autofree char *printed = g_variant_print (value, TRUE);
  g_autofree char *changed = g_strdup_printf ("{'Value': <%s>}", printed);

  fake_bluez_emit_changed (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, changed);
}

/* Reads one packet from a non-blocking socket, running the main context
 * until it comes. */
static gsize
recv_packet (Fixture *f, int fd, guint8 *buf, gsize size)
{
  gint64 until = g_get_monotonic_time () + fake_bluez_get_wait_us (f->fake);
  ssize_t n;

  while ((n = recv (fd, buf, size, MSG_DONTWAIT)) < 0 && errno == EAGAIN &&
         g_get_monotonic_time () < until)
    fake_bluez_iterate (f->fake);
  g_assert_cmpint (n, >, 0);
  return (gsize) n;
}

/* --- the payee's tests -------------------------------------------------------------- */

static void
test_server_registers_application_and_advertisement (Fixture *f, gconstpointer data)
{
  const guint8 tag[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
  GDBusMethodInvocation *invocation;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) props = NULL;
  g_autoptr (GVariant) mfr = NULL;
  g_autofree const char **uuids = NULL;
  const char *type = NULL;

  g_assert_false (api_is_advertising (f));
  api_advertise (f, tag);
  invocation =
    fake_bluez_expect_call (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE, "RegisterAdvertisement");
  assert_string_arg (g_dbus_method_invocation_get_parameters (invocation), 0, APP_ADV);

  /* bluetoothd reads the advertisement (doc/org.bluez.LEAdvertisement.rst). */
  reply = fake_bluez_call (f->fake, owner, APP_ADV, FAKE_PROPS_IFACE, "GetAll",
                           g_variant_new ("(s)", ADV_IFACE), NULL, &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(@a{sv})", &props);
  g_assert_true (g_variant_lookup (props, "Type", "&s", &type));
  g_assert_cmpstr (type, ==, "peripheral");
  g_assert_true (g_variant_lookup (props, "ServiceUUIDs", "^a&s", &uuids));
  g_assert_cmpstrv (uuids, ((const char *[]){ TALLY_GATT_SERVICE_UUID, NULL }));
  mfr = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
  g_assert_nonnull (mfr);
  g_assert_cmpuint (g_variant_n_children (mfr), ==, 1);
  {
    guint16 company = 0;
    g_autoptr (GVariant) bytes = NULL;
    gsize len = 0;
    const guint8 *raw;

    g_variant_get_child (mfr, 0, "{qv}", &company, &bytes);
    g_assert_cmpuint (company, ==, TALLY_GATT_COMPANY_ID);
    raw = g_variant_get_fixed_array (bytes, &len, 1);
    g_assert_cmpmem (raw, len, tag, sizeof tag);
  }
  /* Per-device mode leaves the rotation slot to the kernel. */
  g_assert_false (g_variant_lookup (props, "Duration", "q", NULL));

  g_dbus_method_invocation_return_value (invocation, NULL);
  FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));

  api_stop_advertising (f);
  {
    g_autoptr (GVariant) params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                           "UnregisterAdvertisement", NULL);

    assert_string_arg (params, 0, APP_ADV);
  }
  g_assert_false (api_is_advertising (f));
  /* The answer reaches the server before it goes: nothing left to undo
   * but the application. */
  fake_bluez_expect_quiet (f->fake, 100);
  script_server_frees (f, FALSE);
}

static void
test_server_registration_refused_is_exists (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;

  api_server_start (f, 1);
  params = fake_bluez_expect_reply (
    f->fake, ADAPTER, FAKE_PROPS_IFACE, "GetAll",
    g_variant_new_parsed ("({'Modalias': <%s>, 'Powered': <true>},)", MODALIAS_5_66));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, "/", FAKE_OM_IFACE, "GetManagedObjects",
                                    g_variant_new_parsed ("(@a{oa{sa{sv}}} {},)"));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_error (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE,
                                    "RegisterApplication", "org.bluez.Error.AlreadyExists");
  FAKE_RUN_UNTIL (f->fake, f->server_done);
  g_assert_null (f->server);
  g_assert_error (f->server_error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  /* Nothing is left registered to undo. */
  fake_bluez_expect_quiet (f->fake, 200);
}

/* The ManufacturerData tag bluetoothd reads from the advertisement at
 * @path. */
static void
assert_advertised_tag (Fixture *f, const char *owner, const char *path, const guint8 *tag)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = fake_bluez_call (f->fake, owner, path, FAKE_PROPS_IFACE, "GetAll",
                                                g_variant_new ("(s)", ADV_IFACE), NULL, &error);
  g_autoptr (GVariant) props = NULL;
  g_autoptr (GVariant) mfr = NULL;
  g_autoptr (GVariant) bytes = NULL;
  guint16 company = 0;
  gsize len = 0;

  g_assert_no_error (error);
  g_variant_get (reply, "(@a{sv})", &props);
  mfr = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
  g_assert_nonnull (mfr);
  g_assert_cmpuint (g_variant_n_children (mfr), ==, 1);
  g_variant_get_child (mfr, 0, "{qv}", &company, &bytes);
  g_assert_cmpuint (company, ==, TALLY_GATT_COMPANY_ID);
  const guint8 *raw = g_variant_get_fixed_array (bytes, &len, 1);
  g_assert_cmpmem (raw, len, tag, TALLY_GATT_TAG_BYTES);
}

/* Several open requests: each tag in an advertisement instance of its own
 * (adv0, then adv1), one removed while the other stays on the air; with no
 * instance free (LEAdvertisingManager1.SupportedInstances 0) another is
 * refused with Policy before anything reaches BlueZ. */
static void
test_server_advertises_each_request_in_its_own_instance (Fixture *f, gconstpointer data)
{
  const guint8 tag_a[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  const guint8 tag_b[TALLY_GATT_TAG_BYTES] = { 0x4e, 0x5f, 0x60, 0x71 };
  const guint8 tag_c[TALLY_GATT_TAG_BYTES] = { 0x82, 0x93, 0xa4, 0xb5 };
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_a, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_a = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  assert_string_arg (reg_a, 0, APP_ADV);
  assert_advertised_tag (f, owner, APP_ADV, tag_a);

  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_b = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  assert_string_arg (reg_b, 0, APP "/adv1");
  assert_advertised_tag (f, owner, APP "/adv1", tag_b);
  /* The same tag again adds nothing. */
  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  fake_bluez_expect_quiet (f->fake, 100);

  tally_gatt_server_remove_advertisement (f->server, tag_a);
  g_autoptr (GVariant) unreg_a = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                          "UnregisterAdvertisement", NULL);
  assert_string_arg (unreg_a, 0, APP_ADV);
  fake_bluez_expect_quiet (f->fake, 100);
  g_assert_true (api_is_advertising (f));

  fake_bluez_emit_changed (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                           "{'SupportedInstances': <byte 0>, 'ActiveInstances': <byte 5>}");
  fake_bluez_expect_quiet (f->fake, 100);
  g_assert_false (tally_gatt_server_add_advertisement (f->server, tag_c, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  fake_bluez_expect_quiet (f->fake, 100);

  api_server_free (f);
  g_autoptr (GVariant) unreg_b = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                          "UnregisterAdvertisement", NULL);
  assert_string_arg (unreg_b, 0, APP "/adv1");
  g_autoptr (GVariant) app = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE,
                                                      "UnregisterApplication", NULL);
  assert_string_arg (app, 0, APP);
}

static void
on_advert_failed (TallyGattServer *server, const guint8 *tag, const GError *error,
                  gpointer user_data)
{
  Fixture *f = user_data;

  g_assert_nonnull (error);
  memcpy (f->failed_tag, tag, TALLY_GATT_TAG_BYTES);
  f->adverts_failed++;
}

/* BlueZ refuses the second request's advertisement (RegisterAdvertisement
 * fails): the owner hears of that tag, the instance is unexported at once
 * (no leak), the first stays on the air, and the next request takes a
 * fresh instance that does reach BlueZ. */
static void
test_server_refused_advertisement_is_reported_and_dropped (Fixture *f, gconstpointer data)
{
  const guint8 tag_a[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  const guint8 tag_b[TALLY_GATT_TAG_BYTES] = { 0x4e, 0x5f, 0x60, 0x71 };
  const guint8 tag_c[TALLY_GATT_TAG_BYTES] = { 0x82, 0x93, 0xa4, 0xb5 };
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
  g_autoptr (GError) error = NULL;

  tally_gatt_server_set_advert_failed_func (f->server, on_advert_failed);
  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_a, &error));
  g_autoptr (GVariant) reg_a = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  assert_string_arg (reg_a, 0, APP_ADV);
  FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));

  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_b =
    fake_bluez_expect_error (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE, "RegisterAdvertisement",
                             "org.bluez.Error.Failed");
  assert_string_arg (reg_b, 0, APP "/adv1");
  FAKE_RUN_UNTIL (f->fake, f->adverts_failed > 0);
  g_assert_cmpuint (f->adverts_failed, ==, 1);
  g_assert_cmpmem (f->failed_tag, TALLY_GATT_TAG_BYTES, tag_b, TALLY_GATT_TAG_BYTES);
  /* Its object is gone from the bus. */
  g_autoptr (GVariant) gone = fake_bluez_call (f->fake, owner, APP "/adv1", FAKE_PROPS_IFACE,
                                               "GetAll", g_variant_new ("(s)", ADV_IFACE), NULL,
                                               &error);
  g_assert_null (gone);
  g_assert_nonnull (error);
  g_clear_error (&error);
  /* Not tried again on its own; the first is still on the air. */
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_true (api_is_advertising (f));
  assert_advertised_tag (f, owner, APP_ADV, tag_a);

  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_c, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_c = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  assert_string_arg (reg_c, 0, APP "/adv2");
  assert_advertised_tag (f, owner, APP "/adv2", tag_c);
  g_assert_cmpuint (f->adverts_failed, ==, 1);

  api_server_free (f);
  for (guint i = 0; i < 2; i++) {
    g_autoptr (GVariant) unreg = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                          "UnregisterAdvertisement", NULL);
  }
  g_autoptr (GVariant) app = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_GATT_MANAGER_IFACE,
                                                      "UnregisterApplication", NULL);
  assert_string_arg (app, 0, APP);
}

/* The controller has one instance (SupportedInstances 1, ActiveInstances
 * 0, as BlueZ said before any was registered).  Once the first request
 * holds it a second is refused with Policy though BlueZ has not said so
 * again, and while the first is still being unregistered too; once it is
 * let go the second gets it. */
static void
test_server_counts_every_instance_it_holds_against_the_total (Fixture *f, gconstpointer data)
{
  const guint8 tag_a[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  const guint8 tag_b[TALLY_GATT_TAG_BYTES] = { 0x4e, 0x5f, 0x60, 0x71 };
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
  g_autoptr (GError) error = NULL;

  fake_bluez_emit_changed (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                           "{'SupportedInstances': <byte 1>, 'ActiveInstances': <byte 0>}");
  fake_bluez_expect_quiet (f->fake, 100);
  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_a, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_a = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));

  g_assert_false (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);
  fake_bluez_expect_quiet (f->fake, 100);

  tally_gatt_server_remove_advertisement (f->server, tag_a);
  GDBusMethodInvocation *unreg = fake_bluez_expect_call (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                         "UnregisterAdvertisement");
  g_assert_false (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);
  g_dbus_method_invocation_return_value (unreg, NULL);
  FAKE_RUN_UNTIL (f->fake, !api_is_advertising (f));
  fake_bluez_expect_quiet (f->fake, 100);

  g_assert_true (tally_gatt_server_add_advertisement (f->server, tag_b, &error));
  g_assert_no_error (error);
  g_autoptr (GVariant) reg_b = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                        "RegisterAdvertisement", NULL);
  assert_advertised_tag (f, owner, APP_ADV, tag_b);
  FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));
  script_server_frees (f, TRUE);
}

/* A central connects while a request is advertised and never writes: the
 * payee disconnects it once the idle deadline (tallyd sets it to
 * hello_timeout_seconds) passes, not before, and well before the default
 * 15 s (the fake waits at most 8 s for the call).  In exclusive mode
 * (BlueZ 5.66) it held the only slot meanwhile: advertising stops while
 * it is connected and comes back once it is gone. */
static void
silent_central_is_disconnected (Fixture *f, const char *modalias, TallyGattServerMode mode)
{
  const guint8 tag[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  g_autofree char *owner = script_server_registers (f, modalias, mode);
  gboolean exclusive = mode == TALLY_GATT_SERVER_EXCLUSIVE;

  fake_bluez_set_wait (f->fake, 8);
  tally_gatt_server_set_idle_timeout (f->server, 1);
  api_advertise (f, tag);
  g_autoptr (GVariant) reg = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                      "RegisterAdvertisement", NULL);
  FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));

  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <true>}");
  if (exclusive) {
    g_autoptr (GVariant) unreg = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                          "UnregisterAdvertisement", NULL);
    assert_string_arg (unreg, 0, APP_ADV);
  }
  /* Not before the deadline... */
  fake_bluez_expect_quiet (f->fake, 600);
  /* ...but at it. */
  g_autoptr (GVariant) disconnect =
    fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  g_assert_cmpuint (f->payee_links->len, ==, 0);
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <false>}");
  if (exclusive) {
    g_autoptr (GVariant) again = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADV_MANAGER_IFACE,
                                                          "RegisterAdvertisement", NULL);
    FAKE_RUN_UNTIL (f->fake, api_is_advertising (f));
  }
  fake_bluez_expect_quiet (f->fake, 100);
  script_server_frees (f, TRUE);
}

static void
test_server_silent_central_is_disconnected_per_device (Fixture *f, gconstpointer data)
{
  silent_central_is_disconnected (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
}

static void
test_server_silent_central_is_disconnected_exclusive (Fixture *f, gconstpointer data)
{
  silent_central_is_disconnected (f, MODALIAS_5_66, TALLY_GATT_SERVER_EXCLUSIVE);
}

static void
test_server_acquired_sockets_carry_fragments (Fixture *f, gconstpointer data)
{
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_76, TALLY_GATT_SERVER_PER_DEVICE);
  int notify_fd, write_fd;
  guint8 buf[512];
  gsize n;
  LinkWatch *payee;
  g_autoptr (GVariant) params = NULL;

  /* The payer subscribes first, then its first write acquires rx. */
  notify_fd = acquire_from_payee (f, owner, APP_TX, "AcquireNotify", 185);
  g_assert_cmpuint (f->payee_links->len, ==, 1);
  payee = f->payee_links->pdata[0];
  g_assert_cmpstr (tally_link_get_peer (payee->link), ==, "ble:" DEV_ADDRESS);
  /* A notification carries at most ATT MTU - 5 (docs/ble.md). */
  g_assert_cmpuint (tally_link_get_mtu (payee->link), ==, 180);
  write_fd = acquire_from_payee (f, owner, APP_RX, "AcquireWrite", 185);
  g_assert_cmpuint (f->payee_links->len, ==, 1);

  g_assert_cmpint (send (write_fd, "payer to payee", 14, 0), ==, 14);
  FAKE_RUN_UNTIL (f->fake, payee->fragments->len == 1);
  assert_fragment (payee, 0, "payer to payee");

  g_assert_true (tally_link_send (payee->link, (const guint8 *) "payee to payer", 14, NULL));
  n = recv_packet (f, notify_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "payee to payer", 14);

  /* The session over, the payee lets the device go. */
  tally_link_close (payee->link);
  payee->closed = TRUE;
  params = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  close (notify_fd);
  close (write_fd);
  script_server_frees (f, FALSE);
}

static void
test_server_write_value_and_value_changes_fallback (Fixture *f, gconstpointer data)
{
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_66, TALLY_GATT_SERVER_EXCLUSIVE);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) changed = NULL;
  g_autofree char *remote = NULL;
  LinkWatch *payee;

  /* Before 5.76 BlueZ's write socket is shared by every device: the
   * payee refuses it, and bluetoothd falls back to WriteValue. */
  reply = fake_bluez_call (f->fake, owner, APP_RX, FAKE_CHRC_IFACE, "AcquireWrite",
                           device_options (23), NULL, &error);
  g_assert_null (reply);
  remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.bluez.Error.NotPermitted");
  g_assert_cmpuint (f->payee_links->len, ==, 0);
  g_clear_error (&error);

  reply =
    fake_bluez_call (f->fake, owner, APP_TX, FAKE_CHRC_IFACE, "StartNotify", NULL, NULL, &error);
  g_assert_no_error (error);
  g_clear_pointer (&reply, g_variant_unref);

  write_to_payee (f, owner, (const guint8 *) "payer to payee", 14);
  g_assert_cmpuint (f->payee_links->len, ==, 1);
  payee = f->payee_links->pdata[0];
  FAKE_RUN_UNTIL (f->fake, payee->fragments->len == 1);
  assert_fragment (payee, 0, "payer to payee");

  /* Without a notify socket, a notification is a Value change. */
  g_assert_true (tally_link_send (payee->link, (const guint8 *) "payee to payer", 14, NULL));
  changed = fake_bluez_expect_value_changed (f->fake, APP_TX);
  assert_value (changed, "payee to payer");

  tally_link_close (payee->link);
  payee->closed = TRUE;
  g_clear_pointer (&reply, g_variant_unref);
  reply = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_server_frees (f, FALSE);
}

/* A payer's device gone in the middle of a payment: the payee's link
 * reports DISCONNECTED, whichever way bluetoothd says it. */
static void
server_loses_device (Fixture *f, gboolean removed)
{
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_66, TALLY_GATT_SERVER_EXCLUSIVE);
  LinkWatch *payee;

  write_to_payee (f, owner, (const guint8 *) "first half", 10);
  g_assert_cmpuint (f->payee_links->len, ==, 1);
  payee = f->payee_links->pdata[0];
  FAKE_RUN_UNTIL (f->fake, payee->fragments->len == 1);

  if (removed)
    fake_bluez_emit_removed (f->fake, DEV, FAKE_DEVICE_IFACE);
  else
    fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <false>}");
  FAKE_RUN_UNTIL (f->fake, payee->closed);
  g_assert_error (payee->error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (payee->error->message, "the device disconnected"));
  g_assert_cmpuint (payee->fragments->len, ==, 1);
  /* The device is gone already: nothing to disconnect. */
  fake_bluez_expect_quiet (f->fake, 200);
  script_server_frees (f, FALSE);
}

static void
test_server_device_removed_mid_payment_is_disconnected (Fixture *f, gconstpointer data)
{
  server_loses_device (f, TRUE);
}

static void
test_server_device_disconnected_mid_payment_is_disconnected (Fixture *f, gconstpointer data)
{
  server_loses_device (f, FALSE);
}

/* --- the payer's script ------------------------------------------------------------- */

/* Adapter1.Powered, then the first discovery. */
static void
script_client_starts (Fixture *f, const char *address, guint timeout_seconds)
{
  g_autoptr (GVariant) params = NULL;
  const char *iface = NULL, *name = NULL;

  api_connect (f, address, timeout_seconds);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_PROPS_IFACE, "Get",
                                    g_variant_new_parsed ("(<true>,)"));
  g_variant_get (params, "(&s&s)", &iface, &name);
  g_assert_cmpstr (iface, ==, FAKE_ADAPTER_IFACE);
  g_assert_cmpstr (name, ==, "Powered");
}

/* SetDiscoveryFilter for our service over LE, every report. */
static void
script_client_sets_filter (Fixture *f)
{
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) filter = NULL;
  g_autofree const char **uuids = NULL;
  const char *transport = NULL;
  gboolean duplicates = FALSE;

  params =
    fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "SetDiscoveryFilter", NULL);
  g_variant_get (params, "(@a{sv})", &filter);
  g_assert_true (g_variant_lookup (filter, "UUIDs", "^a&s", &uuids));
  g_assert_cmpstrv (uuids, ((const char *[]){ TALLY_GATT_SERVICE_UUID, NULL }));
  g_assert_true (g_variant_lookup (filter, "Transport", "&s", &transport));
  g_assert_cmpstr (transport, ==, "le");
  g_assert_true (g_variant_lookup (filter, "DuplicateData", "b", &duplicates));
  g_assert_true (duplicates);
}

/* StartDiscovery answered with @start_error (NULL: success). */
static void
script_client_starts_discovery (Fixture *f, const char *start_error)
{
  g_autoptr (GVariant) params = NULL;

  if (start_error != NULL)
    params =
      fake_bluez_expect_error (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery", start_error);
  else
    params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery", NULL);
}

static void
script_client_scans (Fixture *f, const char *start_error)
{
  script_client_sets_filter (f);
  script_client_starts_discovery (f, start_error);
  /* The reply reaches the client before whatever bluetoothd does next. */
  fake_bluez_expect_quiet (f->fake, 100);
}

/* The payee's advertising report; the client stops scanning and connects.
 * Returns the unanswered Connect. */
static GDBusMethodInvocation *
script_client_finds_payee (Fixture *f)
{
  g_autoptr (GVariant) params = NULL;

  fake_bluez_emit_added (f->fake, DEV, FAKE_DEVICE_IFACE,
                         "{'Address': <'" DEV_ADDRESS "'>, 'RSSI': <int16 -50>, "
                         "'UUIDs': <['" TALLY_GATT_SERVICE_UUID "']>, 'Connected': <false>}");
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  return fake_bluez_expect_call (f->fake, DEV, FAKE_DEVICE_IFACE, "Connect");
}

static void script_client_lists_service (Fixture *f, const char *const *rx_flags);

/* Connect answered; ServicesResolved read and true; our service listed,
 * its rx characteristic with @rx_flags. */
static void
script_client_resolves_with_flags (Fixture *f,
                                   GDBusMethodInvocation *connect,
                                   const char *const *rx_flags)
{
  g_autoptr (GVariant) params = NULL;
  const char *iface = NULL, *name = NULL;

  g_dbus_method_invocation_return_value (connect, NULL);
  params = fake_bluez_expect_reply (f->fake, DEV, FAKE_PROPS_IFACE, "Get",
                                    g_variant_new_parsed ("(<true>,)"));
  g_variant_get (params, "(&s&s)", &iface, &name);
  g_assert_cmpstr (iface, ==, FAKE_DEVICE_IFACE);
  g_assert_cmpstr (name, ==, "ServicesResolved");
  script_client_lists_service (f, rx_flags);
}

/* The same for a payee whose rx characteristic lists no Flags. */
static void
script_client_resolves (Fixture *f, GDBusMethodInvocation *connect)
{
  script_client_resolves_with_flags (f, connect, NULL);
}

/* GetManagedObjects lists our service under the device; @rx_flags (NULL:
 * no Flags property) are those of its rx characteristic. */
static void
script_client_lists_service (Fixture *f, const char *const *rx_flags)
{
  GVariantBuilder rx;
  g_autoptr (GVariant) params = NULL;

  g_variant_builder_init (&rx, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&rx, "{sv}", "UUID", g_variant_new_string (TALLY_GATT_RX_UUID));
  g_variant_builder_add (&rx, "{sv}", "Service", g_variant_new_object_path (REMOTE_SVC));
  if (rx_flags != NULL)
    g_variant_builder_add (&rx, "{sv}", "Flags", g_variant_new_strv (rx_flags, -1));
  params = fake_bluez_expect_reply (
    f->fake, "/", FAKE_OM_IFACE, "GetManagedObjects",
    g_variant_new_parsed (
      "({%o: {'org.bluez.GattService1': {'UUID': <%s>, 'Primary': <true>}},"
      "  %o: {'org.bluez.GattCharacteristic1': %@a{sv}},"
      "  %o: {'org.bluez.GattCharacteristic1': {'UUID': <%s>, 'Service': <%o>,"
      "                                                    'MTU': <uint16 185>}}},)",
      REMOTE_SVC, TALLY_GATT_SERVICE_UUID, REMOTE_RX, g_variant_builder_end (&rx), REMOTE_TX,
      TALLY_GATT_TX_UUID, REMOTE_SVC));
}

static void
script_client_resolves_listing (Fixture *f)
{
  script_client_lists_service (f, NULL);
}

/* AcquireNotify / AcquireWrite answered with one end of a fresh socket
 * pair; the other end is returned. */
static int
reply_with_socket (GDBusMethodInvocation *invocation, guint16 mtu)
{
  int pair[2];
  g_autoptr (GUnixFDList) fds = NULL;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), ==, 0);
  fds = g_unix_fd_list_new_from_array (&pair[1], 1);
  g_dbus_method_invocation_return_value_with_unix_fd_list (invocation,
                                                           g_variant_new ("(hq)", 0, mtu), fds);
  return pair[0];
}

/* AcquireNotify and AcquireWrite refused: StartNotify, writes through
 * WriteValue. */
static void
script_client_subscribes_by_fallback (Fixture *f)
{
  g_autoptr (GVariant) params = NULL;

  params = fake_bluez_expect_error (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify",
                                    "org.bluez.Error.NotSupported");
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "StartNotify", NULL);
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_error (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "AcquireWrite",
                                    "org.bluez.Error.NotSupported");
}

static void
run_until_connected (Fixture *f, guint attempts)
{
  FAKE_RUN_UNTIL (f->fake, f->connect_done);
  g_assert_no_error (f->connect_error);
  g_assert_nonnull (f->payer_link);
  g_assert_cmpuint (f->info.attempts, ==, attempts);
  g_assert_cmpstr (tally_link_get_peer (f->payer_link), ==, "ble:" DEV_ADDRESS);
  f->payer = watch_new (f->payer_link);
}

/* Closing the payer's link lets the device go (and the notifications, when
 * they came through StartNotify). */
static void
script_client_closes (Fixture *f, gboolean notify_fallback)
{
  g_autoptr (GVariant) stop = NULL;
  g_autoptr (GVariant) disconnect = NULL;

  tally_link_close (f->payer->link);
  f->payer->closed = TRUE;
  if (notify_fallback)
    stop = fake_bluez_expect_reply (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "StopNotify", NULL);
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
}

/* A whole first attempt up to the fallback subscription. */
static void
script_client_connects_by_fallback (Fixture *f)
{
  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 1);
}

/* --- the payer's tests -------------------------------------------------------------- */

static void
test_client_acquired_sockets_carry_fragments (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *invocation;
  int notify_fd, write_fd;
  guint8 buf[512];
  gsize n;

  script_client_starts (f, "ble:" DEV_ADDRESS, 30);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  /* Notifications first: the payee answers the first write at once. */
  invocation = fake_bluez_expect_call (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify");
  notify_fd = reply_with_socket (invocation, 185);
  invocation = fake_bluez_expect_call (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "AcquireWrite");
  write_fd = reply_with_socket (invocation, 185);
  run_until_connected (f, 1);

  g_assert_true (f->info.notify_fd);
  g_assert_true (f->info.write_fd);
  g_assert_cmpuint (f->info.att_mtu, ==, 185);
  g_assert_cmpuint (tally_link_get_mtu (f->payer_link), ==, 182);

  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "payer to payee", 14, NULL));
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "payer to payee", 14);
  g_assert_cmpint (send (notify_fd, "payee to payer", 14, 0), ==, 14);
  FAKE_RUN_UNTIL (f->fake, f->payer->fragments->len == 1);
  assert_fragment (f->payer, 0, "payee to payer");

  script_client_closes (f, FALSE);
  close (notify_fd);
  close (write_fd);
}

static void
test_client_falls_back_to_start_notify_and_write_value (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) value = NULL;
  g_autoptr (GVariant) options = NULL;
  const char *type = NULL;
  gsize len = 0;
  const guint8 *bytes;

  script_client_connects_by_fallback (f);
  g_assert_false (f->info.notify_fd);
  g_assert_false (f->info.write_fd);
  /* The MTU property of the characteristic stands in for the socket's. */
  g_assert_cmpuint (f->info.att_mtu, ==, 185);

  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "payer to payee", 14, NULL));
  params = fake_bluez_expect_reply (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "WriteValue", NULL);
  g_variant_get (params, "(@ay@a{sv})", &value, &options);
  bytes = g_variant_get_fixed_array (value, &len, 1);
  g_assert_cmpmem (bytes, len, "payer to payee", 14);
  /* A Write Command, as over the socket. */
  g_assert_true (g_variant_lookup (options, "type", "&s", &type));
  g_assert_cmpstr (type, ==, "command");

  emit_value_change (f, "payee to payer");
  FAKE_RUN_UNTIL (f->fake, f->payer->fragments->len == 1);
  assert_fragment (f->payer, 0, "payee to payer");

  script_client_closes (f, TRUE);
}

/* The rx Flags of a payee that takes a Write Request, and of an older one. */
static const char *const RX_WRITE_REQUEST[] = { "write", "write-without-response", NULL };
static const char *const RX_COMMANDS_ONLY[] = { "write-without-response", NULL };

/* Up to a ready link to a payee with @rx_flags, notifications through a
 * socket, which is returned. */
static int
script_client_connects_with_flags (Fixture *f, const char *const *rx_flags)
{
  GDBusMethodInvocation *invocation;
  int notify_fd;

  script_client_starts (f, "ble:" DEV_ADDRESS, 30);
  script_client_scans (f, NULL);
  script_client_resolves_with_flags (f, script_client_finds_payee (f), rx_flags);
  invocation = fake_bluez_expect_call (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify");
  notify_fd = reply_with_socket (invocation, 185);
  return notify_fd;
}

/* The next call is WriteValue of @text with option type @type; returned
 * unanswered. */
static GDBusMethodInvocation *
expect_write_value (Fixture *f, const char *text, const char *type)
{
  GDBusMethodInvocation *invocation =
    fake_bluez_expect_call (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "WriteValue");
  g_autoptr (GVariant) value = NULL;
  g_autoptr (GVariant) options = NULL;
  const char *got = NULL;
  gsize len = 0;
  const guint8 *bytes;

  g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(@ay@a{sv})", &value,
                 &options);
  bytes = g_variant_get_fixed_array (value, &len, 1);
  g_assert_cmpmem (bytes, len, text, strlen (text));
  g_assert_true (g_variant_lookup (options, "type", "&s", &got));
  g_assert_cmpstr (got, ==, type);
  return invocation;
}

static void
send_three_fragments (Fixture *f)
{
  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "fragment 0", 10, NULL));
  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "fragment 1", 10, NULL));
  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "fragment 2", 10, NULL));
}

/* bluetoothd keeps a Write Command that arrives while it acquires the
 * payee's socket as a pointer into its ATT buffer: a second one in that
 * time overwrites the first.  So the first fragment is a Write Request,
 * and nothing else leaves until the payee answered it; the payer's write
 * socket is acquired only then (BlueZ refuses WriteValue while one is). */
static void
test_client_first_fragment_is_acknowledged_before_the_next (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *request, *acquire;
  int notify_fd, write_fd;
  guint8 buf[512];
  gsize n;

  notify_fd = script_client_connects_with_flags (f, RX_WRITE_REQUEST);
  run_until_connected (f, 1);
  g_assert_false (f->info.write_fd);

  send_three_fragments (f);
  request = expect_write_value (f, "fragment 0", "request");
  /* Unanswered: fragments 1 and 2 wait. */
  fake_bluez_expect_quiet (f->fake, 300);
  g_assert_false (f->payer->closed);
  g_dbus_method_invocation_return_value (request, NULL);

  acquire = fake_bluez_expect_call (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "AcquireWrite");
  fake_bluez_expect_quiet (f->fake, 100);
  write_fd = reply_with_socket (acquire, 185);
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 1", 10);
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 2", 10);

  /* From now on a fragment leaves at once. */
  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "fragment 3", 10, NULL));
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 3", 10);
  g_assert_false (f->payer->closed);

  script_client_closes (f, FALSE);
  close (notify_fd);
  close (write_fd);
}

/* The payer's bluetoothd refusing AcquireWrite after the Write Request:
 * the rest goes as Write Commands through WriteValue. */
static void
test_client_first_fragment_acknowledged_then_write_value_commands (Fixture *f,
                                                                   gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;
  GDBusMethodInvocation *invocation;
  int notify_fd;

  notify_fd = script_client_connects_with_flags (f, RX_WRITE_REQUEST);
  run_until_connected (f, 1);

  send_three_fragments (f);
  invocation = expect_write_value (f, "fragment 0", "request");
  g_dbus_method_invocation_return_value (invocation, NULL);
  params = fake_bluez_expect_error (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "AcquireWrite",
                                    "org.bluez.Error.NotSupported");
  g_dbus_method_invocation_return_value (expect_write_value (f, "fragment 1", "command"), NULL);
  g_dbus_method_invocation_return_value (expect_write_value (f, "fragment 2", "command"), NULL);
  g_assert_false (f->payer->closed);

  script_client_closes (f, FALSE);
  close (notify_fd);
}

/* A payee refusing the first fragment: the link fails, saying so, and
 * nothing more is written. */
static void
test_client_first_fragment_refused_fails_the_link (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) disconnect = NULL;
  GDBusMethodInvocation *request;
  int notify_fd;

  notify_fd = script_client_connects_with_flags (f, RX_WRITE_REQUEST);
  run_until_connected (f, 1);

  send_three_fragments (f);
  request = expect_write_value (f, "fragment 0", "request");
  g_dbus_method_invocation_return_dbus_error (request, "org.bluez.Error.Failed",
                                              "Operation failed with ATT error: 0x03");
  FAKE_RUN_UNTIL (f->fake, f->payer->closed);
  g_assert_error (f->payer->error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (f->payer->error->message, "first fragment (Write Request) failed"));
  g_assert_nonnull (strstr (f->payer->error->message, "ATT error: 0x03"));
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  close (notify_fd);
}

/* A payee of an older Tally, whose rx takes Write Commands only: the
 * write socket at once, every fragment through it, no WriteValue. */
static void
test_client_payee_without_write_flag_gets_write_commands_only (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *invocation;
  int notify_fd, write_fd;
  guint8 buf[512];
  gsize n;

  notify_fd = script_client_connects_with_flags (f, RX_COMMANDS_ONLY);
  invocation = fake_bluez_expect_call (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "AcquireWrite");
  write_fd = reply_with_socket (invocation, 185);
  run_until_connected (f, 1);
  g_assert_true (f->info.write_fd);

  send_three_fragments (f);
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 0", 10);
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 1", 10);
  n = recv_packet (f, write_fd, buf, sizeof buf);
  g_assert_cmpmem (buf, n, "fragment 2", 10);
  fake_bluez_expect_quiet (f->fake, 100);

  script_client_closes (f, FALSE);
  close (notify_fd);
  close (write_fd);
}

static void
test_client_device_disconnected_mid_payment_is_disconnected (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) stop = NULL;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_connects_by_fallback (f);
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <false>}");
  FAKE_RUN_UNTIL (f->fake, f->payer->closed);
  g_assert_error (f->payer->error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (f->payer->error->message, "the payee disconnected"));
  /* What the attempt set up on the device is undone. */
  stop = fake_bluez_expect_reply (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "StopNotify", NULL);
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
}

/* --- the payer's retries ------------------------------------------------------------- */

/* Back-off before attempt 2 is at least 400 ms (BACKOFF_BASE_MS). */
#define FIRST_BACKOFF_MIN_MS 400

/* The rest of a second attempt, from its discovery to a ready link. */
static void
script_client_second_attempt (Fixture *f)
{
  fake_bluez_expect_quiet_since_last (f->fake, FIRST_BACKOFF_MIN_MS - 100);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 2);
  script_client_closes (f, TRUE);
}

static void
test_client_retries_when_discovery_is_dropped (Fixture *f, gconstpointer data)
{
  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  /* The adapter's discovery stopped under us: no StopDiscovery to send. */
  fake_bluez_emit_changed (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "{'Discovering': <false>}");
  script_client_second_attempt (f);
}

static void
test_client_retries_when_start_discovery_fails (Fixture *f, gconstpointer data)
{
  script_client_starts (f, "ble", 30);
  script_client_scans (f, "org.bluez.Error.NotReady");
  script_client_second_attempt (f);
}

static void
test_client_retries_when_connect_fails (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.Failed",
                                              "le-connection-abort-by-local");
  /* Also cancels a connection bluetoothd may still try to make. */
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_client_second_attempt (f);
}

static void
test_client_retries_after_disconnect_while_resolving (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  g_dbus_method_invocation_return_value (connect, NULL);
  params = fake_bluez_expect_reply (f->fake, DEV, FAKE_PROPS_IFACE, "Get",
                                    g_variant_new_parsed ("(<false>,)"));
  fake_bluez_expect_quiet (f->fake, 100);
  /* A payee serving another payer turns newcomers away like this. */
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <false>}");
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_client_second_attempt (f);
}

static void
test_client_asks_again_when_connect_in_progress (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.InProgress", "busy");
  /* The same step after 500 ms, in the same attempt. */
  fake_bluez_expect_quiet (f->fake, 400);
  connect = fake_bluez_expect_call (f->fake, DEV, FAKE_DEVICE_IFACE, "Connect");
  script_client_resolves (f, connect);
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 1);
  script_client_closes (f, TRUE);
}

static void
test_client_connect_in_progress_four_times_starts_over (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  for (guint i = 0; i < 4; i++) {
    g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.InProgress", "busy");
    connect = fake_bluez_expect_call (f->fake, DEV, FAKE_DEVICE_IFACE, "Connect");
  }
  /* CONNECT_ASKS used up: the fifth "busy" fails the attempt. */
  g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.InProgress", "busy");
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_client_second_attempt (f);
}

/* BlueZ 5.66 says "busy" as Failed "Operation already in progress". */
static void
test_client_asks_again_when_connect_already_in_progress (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.Failed",
                                              "Operation already in progress");
  fake_bluez_expect_quiet (f->fake, 400);
  connect = fake_bluez_expect_call (f->fake, DEV, FAKE_DEVICE_IFACE, "Connect");
  script_client_resolves (f, connect);
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 1);
  script_client_closes (f, TRUE);
}

/* Another client of bluetoothd connected the device first: as good as
 * ours. */
static void
test_client_already_connected_goes_on (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) params = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  g_dbus_method_invocation_return_dbus_error (connect, "org.bluez.Error.AlreadyConnected",
                                              "Already Connected");
  params = fake_bluez_expect_reply (f->fake, DEV, FAKE_PROPS_IFACE, "Get",
                                    g_variant_new_parsed ("(<true>,)"));
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, "/", FAKE_OM_IFACE, "GetManagedObjects",
                                    g_variant_new_parsed ("(@a{oa{sa{sv}}} {},)"));
  /* The service's objects trail ServicesResolved: InterfacesAdded brings
   * the client back to the list. */
  fake_bluez_expect_quiet (f->fake, 100);
  fake_bluez_emit_added (f->fake, REMOTE_SVC, GATT_SERVICE_IFACE,
                         "{'UUID': <'" TALLY_GATT_SERVICE_UUID "'>, 'Primary': <true>}");
  script_client_resolves_listing (f);
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 1);
  script_client_closes (f, TRUE);
}

static void
test_client_retries_when_start_notify_fails (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  params = fake_bluez_expect_error (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify",
                                    "org.bluez.Error.NotSupported");
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_error (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "StartNotify",
                                    "org.bluez.Error.Failed");
  /* Not subscribed: no StopNotify, only the disconnection. */
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_client_second_attempt (f);
}

static void
test_client_retries_after_disconnect_while_subscribing (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  fake_bluez_hold (f->fake,
                   fake_bluez_expect_call (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify"));
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'Connected': <false>}");
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_client_second_attempt (f);
}

static void
test_client_asks_again_when_notify_not_permitted (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;

  script_client_starts (f, "ble", 30);
  script_client_scans (f, NULL);
  script_client_resolves (f, script_client_finds_payee (f));
  /* The notify socket of an attempt before, not yet let go. */
  params = fake_bluez_expect_error (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, "AcquireNotify",
                                    "org.bluez.Error.NotPermitted");
  fake_bluez_expect_quiet (f->fake, 400);
  script_client_subscribes_by_fallback (f);
  run_until_connected (f, 1);
  script_client_closes (f, TRUE);
}

static void
test_client_connect_without_answer_times_out (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) disconnect = NULL;

  script_client_starts (f, "ble", 2);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  fake_bluez_hold (f->fake, connect);
  FAKE_RUN_UNTIL (f->fake, f->connect_done);
  g_assert_null (f->payer_link);
  g_assert_error (f->connect_error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (f->connect_error->message, "timed out while connecting"));
  /* The connection bluetoothd may still be making is cancelled. */
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
}

static void
count_sighting (TallyGattScanner *scanner, const TallyGattSighting *sighting, gpointer user_data)
{
  guint *seen = user_data;

  if (sighting->tagged && memcmp (sighting->tag, "\x0a\x1b\x2c\x3d", 4) == 0)
    (*seen)++;
}

/* bluetoothd keeps one discovery session per D-Bus client: a payer that
 * finds its payee while a scan of the same connection runs (tallyd's list
 * of stalls nearby) must not stop that scan; the last to stop does. */
static void
test_scanner_and_payer_share_one_discovery_session (Fixture *f, gconstpointer data)
{
  static const TallyGattScannerHandlers handlers = { .seen = count_sighting };
  g_autoptr (TallyGattScanner) scanner = tally_gatt_scanner_new (f->payer_bus, "hci0");
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) disconnect = NULL;
  guint seen = 0;

  tally_gatt_scanner_set_handlers (scanner, &handlers, &seen, NULL);
  tally_gatt_scanner_start (scanner);
  script_client_scans (f, NULL);
  g_assert_true (tally_gatt_scanner_is_running (scanner));

  /* The payer's own StartDiscovery: bluetoothd says this client discovers
   * already. */
  script_client_starts (f, "ble:0a1b2c3d", 2);
  script_client_sets_filter (f);
  params = fake_bluez_expect_error (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery",
                                    "org.bluez.Error.InProgress");
  fake_bluez_expect_quiet (f->fake, 100);
  fake_bluez_emit_added (f->fake, DEV, FAKE_DEVICE_IFACE,
                         "{'Address': <'" DEV_ADDRESS "'>, 'RSSI': <int16 -50>, "
                         "'UUIDs': <['" TALLY_GATT_SERVICE_UUID "']>, "
                         "'ManufacturerData': <{uint16 0xffff: <[byte 0x0a, 0x1b, 0x2c, 0x3d]>}>}");
  /* Found: straight to Connect, no StopDiscovery while the scan runs. */
  connect = fake_bluez_expect_call (f->fake, DEV, FAKE_DEVICE_IFACE, "Connect");
  fake_bluez_hold (f->fake, connect);
  FAKE_RUN_UNTIL (f->fake, seen == 1);
  FAKE_RUN_UNTIL (f->fake, f->connect_done);
  g_assert_error (f->connect_error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_true (tally_gatt_scanner_is_running (scanner));

  /* The scan was the last user of the session. */
  tally_gatt_scanner_stop (scanner);
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  g_assert_false (tally_gatt_scanner_is_running (scanner));
}

/* The app opening and closing its page: a scan stopped (or dropped) while
 * bluetoothd is still starting it.  bluetoothd has the StartDiscovery and
 * refuses StopDiscovery until it answers; the stop must follow the answer
 * or the radio scans for ever. */
static void
check_stop_while_starting_stops_discovery (Fixture *f, gboolean drop)
{
  TallyGattScanner *scanner = tally_gatt_scanner_new (f->payer_bus, "hci0");
  GDBusMethodInvocation *start;
  g_autoptr (GVariant) params = NULL;

  tally_gatt_scanner_start (scanner);
  script_client_sets_filter (f);
  start = fake_bluez_expect_call (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery");
  tally_gatt_scanner_stop (scanner);
  g_assert_false (tally_gatt_scanner_is_running (scanner));
  if (drop)
    g_clear_pointer (&scanner, tally_gatt_scanner_unref);
  fake_bluez_expect_quiet (f->fake, 100);
  g_dbus_method_invocation_return_value (start, NULL);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
  fake_bluez_expect_quiet (f->fake, 100);
  if (scanner != NULL) {
    g_assert_false (tally_gatt_scanner_is_running (scanner));
    tally_gatt_scanner_unref (scanner);
  }
}

static void
test_scanner_stopped_while_starting_stops_discovery (Fixture *f, gconstpointer data)
{
  check_stop_while_starting_stops_discovery (f, FALSE);
}

static void
test_scanner_dropped_while_starting_stops_discovery (Fixture *f, gconstpointer data)
{
  check_stop_while_starting_stops_discovery (f, TRUE);
}

/* Stopped and started again before bluetoothd answered the first start:
 * the session goes on, nothing stops it. */
static void
test_scanner_restarted_while_starting_keeps_discovering (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyGattScanner) scanner = tally_gatt_scanner_new (f->payer_bus, "hci0");
  GDBusMethodInvocation *start;
  g_autoptr (GVariant) params = NULL;

  tally_gatt_scanner_start (scanner);
  script_client_sets_filter (f);
  start = fake_bluez_expect_call (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery");
  tally_gatt_scanner_start (scanner);
  script_client_sets_filter (f);
  g_dbus_method_invocation_return_value (start, NULL);
  params = fake_bluez_expect_error (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery",
                                    "org.bluez.Error.InProgress");
  fake_bluez_expect_quiet (f->fake, 200);
  g_assert_true (tally_gatt_scanner_is_running (scanner));
  tally_gatt_scanner_stop (scanner);
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
}

typedef struct
{
  guint seen;
  gint16 rssi;
} RssiWatch;

static void
watch_rssi (TallyGattScanner *scanner, const TallyGattSighting *sighting, gpointer user_data)
{
  RssiWatch *watch = user_data;

  g_assert_true (sighting->has_rssi);
  watch->seen++;
  watch->rssi = sighting->rssi;
}

/* A device advertising as fast as it can (or a radio replaying adverts):
 * bluetoothd signals a change per report.  The scan reads the device once
 * and then follows its RSSI from the changes themselves; a device without
 * our service costs no call at all. */
static void
test_scanner_advert_flood_reads_device_once (Fixture *f, gconstpointer data)
{
  static const TallyGattScannerHandlers handlers = { .seen = watch_rssi };
  g_autoptr (TallyGattScanner) scanner = tally_gatt_scanner_new (f->payer_bus, "hci0");
  GDBusMethodInvocation *get_all;
  g_autoptr (GVariant) params = NULL;
  RssiWatch watch = { 0 };
  guint get_alls = 0;

  tally_gatt_scanner_set_handlers (scanner, &handlers, &watch, NULL);
  tally_gatt_scanner_start (scanner);
  script_client_scans (f, NULL);
  /* Another's device, its UUIDs in the change: nothing to read. */
  for (guint i = 0; i < 1000; i++)
    fake_bluez_emit_changed (f->fake, ADAPTER "/dev_00_AA_01_01_00_02", FAKE_DEVICE_IFACE,
                             "{'RSSI': <int16 -60>, 'UUIDs': <['0000180f-0000-1000-8000-"
                             "00805f9b34fb']>}");
  /* A cached device of ours, first heard through a change. */
  for (guint i = 0; i < 1000; i++) {
    g_autofree char *changed = g_strdup_printf ("{'RSSI': <int16 %d>}", -40 - (int) (i % 50));

    fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, changed);
  }
  get_all = fake_bluez_expect_call (f->fake, DEV, FAKE_PROPS_IFACE, "GetAll");
  get_alls++;
  g_dbus_method_invocation_return_value (
    get_all, g_variant_new_parsed ("({'Address': <'" DEV_ADDRESS "'>, 'RSSI': <int16 -45>, "
                                   "'UUIDs': <['" TALLY_GATT_SERVICE_UUID "']>, "
                                   "'ManufacturerData': <{uint16 0xffff: "
                                   "<[byte 0x0a, 0x1b, 0x2c, 0x3d]>}>},)"));
  FAKE_RUN_UNTIL (f->fake, watch.seen >= 1);
  g_assert_cmpint (watch.rssi, ==, -45);
  for (guint i = 0; i < 1000; i++) {
    g_autofree char *changed = g_strdup_printf ("{'RSSI': <int16 %d>}", -30 - (int) (i % 40));

    fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, changed);
  }
  fake_bluez_emit_changed (f->fake, DEV, FAKE_DEVICE_IFACE, "{'RSSI': <int16 -77>}");
  FAKE_RUN_UNTIL (f->fake, watch.rssi == -77);
  g_assert_cmpuint (watch.seen, ==, 1 + 1000 + 1);
  fake_bluez_expect_quiet (f->fake, 300);
  g_assert_cmpuint (get_alls, <=, 2);

  tally_gatt_scanner_stop (scanner);
  params = fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StopDiscovery", NULL);
}

static void
test_client_connect_without_answer_starts_over (Fixture *f, gconstpointer data)
{
  GDBusMethodInvocation *connect;
  g_autoptr (GVariant) disconnect = NULL;
  gint64 held;

  script_client_starts (f, "ble", 40);
  script_client_scans (f, NULL);
  connect = script_client_finds_payee (f);
  held = g_get_monotonic_time ();
  fake_bluez_hold (f->fake, connect);
  /* The Connect call's own 10 s timeout (CONNECT_TIMEOUT_MS) ends the
   * attempt: a busy payee stopped advertising. */
  disconnect = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  g_assert_cmpint (g_get_monotonic_time () - held, >=, 9 * G_USEC_PER_SEC);
  script_client_second_attempt (f);
}

/* The deadline falls while a discovery after a failed attempt waits: the
 * error says what went wrong last. */
static void
test_client_deadline_names_last_attempt (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) params = NULL;

  script_client_starts (f, "ble", 3);
  script_client_scans (f, NULL);
  /* The adapter switched off: bluetoothd ends every discovery. */
  fake_bluez_emit_changed (f->fake, ADAPTER, FAKE_ADAPTER_IFACE,
                           "{'Powered': <false>, 'Discovering': <false>}");
  params =
    fake_bluez_expect_reply (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "SetDiscoveryFilter", NULL);
  fake_bluez_hold (f->fake,
                   fake_bluez_expect_call (f->fake, ADAPTER, FAKE_ADAPTER_IFACE, "StartDiscovery"));
  FAKE_RUN_UNTIL (f->fake, f->connect_done);
  g_assert_null (f->payer_link);
  g_assert_error (f->connect_error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  g_assert_cmpstr (f->connect_error->message, ==,
                   "no payee at ble within the timeout; last attempt: discovery on hci0 stopped: "
                   "the adapter was switched off");
  /* Discovery never started this time: no StopDiscovery. */
  fake_bluez_expect_quiet (f->fake, 200);
}

/* Every attempt fails at StartDiscovery: attempt n + 1 comes after
 * n * 400 ms plus up to 600 ms of jitter (BACKOFF_BASE_MS,
 * BACKOFF_JITTER_MS), and the twelfth failure (MAX_ATTEMPTS) is the last. */
static void
test_client_backs_off_longer_and_gives_up_after_twelve_attempts (Fixture *f, gconstpointer data)
{
  gint64 failed = 0;

  script_client_starts (f, "ble", 60);
  for (guint attempt = 1; attempt <= 12; attempt++) {
    if (attempt > 1) {
      guint backoff_ms = (attempt - 1) * 400;
      gint64 waited_ms;

      fake_bluez_expect_quiet (f->fake, backoff_ms - 100);
      script_client_sets_filter (f);
      waited_ms = (g_get_monotonic_time () - failed) / 1000;
      g_test_message ("attempt %u came %" G_GINT64_FORMAT " ms after the last failed", attempt,
                      waited_ms);
      g_assert_cmpint (waited_ms, >=, backoff_ms);
      /* Jitter is under 600 ms; the rest is slack for a slow machine. */
      g_assert_cmpint (waited_ms, <, backoff_ms + 600 + 1500);
    } else {
      script_client_sets_filter (f);
    }
    script_client_starts_discovery (f, "org.bluez.Error.NotReady");
    failed = g_get_monotonic_time ();
  }
  FAKE_RUN_UNTIL (f->fake, f->connect_done);
  g_assert_null (f->payer_link);
  g_assert_error (f->connect_error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_nonnull (g_strstr_len (f->connect_error->message, -1, "gave up after 12 attempts"));
  fake_bluez_expect_quiet (f->fake, 200);
}

/* --- end to end ---------------------------------------------------------------------- */

static void
test_end_to_end_write_value_and_value_changes_carry_fragments (Fixture *f, gconstpointer data)
{
  g_autofree char *owner = script_server_registers (f, MODALIAS_5_66, TALLY_GATT_SERVER_EXCLUSIVE);
  g_autoptr (GVariant) params = NULL;
  g_autoptr (GVariant) value = NULL;
  g_autoptr (GVariant) changed = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  LinkWatch *payee;
  gsize len = 0;
  const guint8 *bytes;

  script_client_connects_by_fallback (f);
  reply =
    fake_bluez_call (f->fake, owner, APP_TX, FAKE_CHRC_IFACE, "StartNotify", NULL, NULL, &error);
  g_assert_no_error (error);

  /* Payer to payee: a WriteValue on bluetoothd's side of the payer becomes
   * one on the payee's application. */
  g_assert_true (tally_link_send (f->payer_link, (const guint8 *) "pay 5 EUR", 9, NULL));
  params = fake_bluez_expect_reply (f->fake, REMOTE_RX, FAKE_CHRC_IFACE, "WriteValue", NULL);
  g_variant_get (params, "(@ay@a{sv})", &value, NULL);
  bytes = g_variant_get_fixed_array (value, &len, 1);
  write_to_payee (f, owner, bytes, len);
  g_assert_cmpuint (f->payee_links->len, ==, 1);
  payee = f->payee_links->pdata[0];
  FAKE_RUN_UNTIL (f->fake, payee->fragments->len == 1);
  assert_fragment (payee, 0, "pay 5 EUR");

  /* Payee to payer: the application's Value change becomes one of the
   * payer's remote characteristic. */
  g_assert_true (tally_link_send (payee->link, (const guint8 *) "receipt 5 EUR", 13, NULL));
  changed = fake_bluez_expect_value_changed (f->fake, APP_TX);
  g_clear_pointer (&value, g_variant_unref);
  value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
  g_assert_nonnull (value);
  {
    g_autofree char *text = g_variant_print (changed, TRUE);

    fake_bluez_emit_changed (f->fake, REMOTE_TX, FAKE_CHRC_IFACE, text);
  }
  FAKE_RUN_UNTIL (f->fake, f->payer->fragments->len == 1);
  assert_fragment (f->payer, 0, "receipt 5 EUR");

  script_client_closes (f, TRUE);
  tally_link_close (payee->link);
  payee->closed = TRUE;
  g_clear_pointer (&params, g_variant_unref);
  params = fake_bluez_expect_reply (f->fake, DEV, FAKE_DEVICE_IFACE, "Disconnect", NULL);
  script_server_frees (f, FALSE);
}

int
main (int argc, char *argv[])
{
  int rc;

  g_test_init (&argc, &argv, NULL);

#define ADD(name, func) g_test_add (name, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/gatt/server/registers-application-and-advertisement",
       test_server_registers_application_and_advertisement);
  ADD ("/gatt/server/registration-refused-is-exists", test_server_registration_refused_is_exists);
  ADD ("/gatt/server/advertises-each-request-in-its-own-instance",
       test_server_advertises_each_request_in_its_own_instance);
  ADD ("/gatt/server/refused-advertisement-is-reported-and-dropped",
       test_server_refused_advertisement_is_reported_and_dropped);
  ADD ("/gatt/server/counts-every-instance-it-holds-against-the-total",
       test_server_counts_every_instance_it_holds_against_the_total);
  ADD ("/gatt/server/silent-central-is-disconnected-at-the-idle-deadline/per-device",
       test_server_silent_central_is_disconnected_per_device);
  ADD ("/gatt/server/silent-central-is-disconnected-at-the-idle-deadline/exclusive",
       test_server_silent_central_is_disconnected_exclusive);
  ADD ("/gatt/server/acquired-sockets-carry-fragments",
       test_server_acquired_sockets_carry_fragments);
  ADD ("/gatt/server/write-value-and-value-changes-without-sockets",
       test_server_write_value_and_value_changes_fallback);
  ADD ("/gatt/server/device-removed-mid-payment-is-disconnected",
       test_server_device_removed_mid_payment_is_disconnected);
  ADD ("/gatt/server/device-disconnected-mid-payment-is-disconnected",
       test_server_device_disconnected_mid_payment_is_disconnected);
  ADD ("/gatt/client/acquired-sockets-carry-fragments",
       test_client_acquired_sockets_carry_fragments);
  ADD ("/gatt/client/falls-back-to-start-notify-and-write-value",
       test_client_falls_back_to_start_notify_and_write_value);
  ADD ("/gatt/client/first-fragment-is-acknowledged-before-the-next",
       test_client_first_fragment_is_acknowledged_before_the_next);
  ADD ("/gatt/client/first-fragment-acknowledged-then-write-value-commands",
       test_client_first_fragment_acknowledged_then_write_value_commands);
  ADD ("/gatt/client/first-fragment-refused-fails-the-link",
       test_client_first_fragment_refused_fails_the_link);
  ADD ("/gatt/client/payee-without-write-flag-gets-write-commands-only",
       test_client_payee_without_write_flag_gets_write_commands_only);
  ADD ("/gatt/client/device-disconnected-mid-payment-is-disconnected",
       test_client_device_disconnected_mid_payment_is_disconnected);
  ADD ("/gatt/scanner/shares-one-discovery-session-with-the-payer",
       test_scanner_and_payer_share_one_discovery_session);
  ADD ("/gatt/scanner/stopped-while-starting-stops-discovery",
       test_scanner_stopped_while_starting_stops_discovery);
  ADD ("/gatt/scanner/dropped-while-starting-stops-discovery",
       test_scanner_dropped_while_starting_stops_discovery);
  ADD ("/gatt/scanner/restarted-while-starting-keeps-discovering",
       test_scanner_restarted_while_starting_keeps_discovering);
  ADD ("/gatt/scanner/advert-flood-reads-each-device-once",
       test_scanner_advert_flood_reads_device_once);
  ADD ("/gatt/client/retry/discovery-dropped-starts-over",
       test_client_retries_when_discovery_is_dropped);
  ADD ("/gatt/client/retry/start-discovery-failing-starts-over",
       test_client_retries_when_start_discovery_fails);
  ADD ("/gatt/client/retry/connect-failing-starts-over", test_client_retries_when_connect_fails);
  ADD ("/gatt/client/retry/disconnect-while-resolving-starts-over",
       test_client_retries_after_disconnect_while_resolving);
  ADD ("/gatt/client/retry/connect-in-progress-asks-again",
       test_client_asks_again_when_connect_in_progress);
  ADD ("/gatt/client/retry/connect-in-progress-five-times-starts-over",
       test_client_connect_in_progress_four_times_starts_over);
  ADD ("/gatt/client/retry/connect-already-in-progress-asks-again",
       test_client_asks_again_when_connect_already_in_progress);
  ADD ("/gatt/client/already-connected-goes-on", test_client_already_connected_goes_on);
  ADD ("/gatt/client/retry/start-notify-failing-starts-over",
       test_client_retries_when_start_notify_fails);
  ADD ("/gatt/client/retry/disconnect-while-subscribing-starts-over",
       test_client_retries_after_disconnect_while_subscribing);
  ADD ("/gatt/client/retry/notify-not-permitted-asks-again",
       test_client_asks_again_when_notify_not_permitted);
  ADD ("/gatt/client/connect-without-answer-times-out",
       test_client_connect_without_answer_times_out);
  ADD ("/gatt/client/retry/connect-without-answer-starts-over",
       test_client_connect_without_answer_starts_over);
  ADD ("/gatt/client/deadline-names-last-attempt", test_client_deadline_names_last_attempt);
  ADD ("/gatt/client/retry/backs-off-longer-and-gives-up-after-twelve-attempts",
       test_client_backs_off_longer_and_gives_up_after_twelve_attempts);
  ADD ("/gatt/end-to-end/write-value-and-value-changes-carry-fragments",
       test_end_to_end_write_value_and_value_changes_carry_fragments);
#undef ADD

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  rc = g_test_run ();
  g_test_dbus_down (test_bus);
  g_object_unref (test_bus);
  return rc;
}
