/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The stall tests' fixture: stall-fixture.h. */
#include "stall-fixture.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>

#include "tally-register-private.h"

GTestDBus *stall_test_bus;

void
wait_until (gboolean (*done) (gpointer), gpointer data)
{
  gint64 give_up = g_get_monotonic_time () + WAIT_LIMIT_US;
  while (!done (data)) {
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (2 * 1000);
  }
}

/* --- the stall --- */

void
stall_start (Fixture *f, guint hello_timeout_seconds)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *reg_dir = g_build_filename (f->dir, "stall", NULL);
  tally_register_free (test_register_new (&f->issuer, reg_dir, 5000, 0));

  g_autoptr (TallyConfig) config = tally_config_new ();
  g_free (config->register_dir);
  config->register_dir = g_strdup (reg_dir);
  config->has_issuer_key = TRUE;
  memcpy (config->issuer_key, f->issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  g_free (config->listen);
  config->listen = g_strdup (f->listen);
  config->timeout_seconds = TIMEOUT_SECONDS;
  config->hello_timeout_seconds = hello_timeout_seconds;
  if (f->max_open_requests > 0)
    config->max_open_requests = f->max_open_requests;
  /* Pay () to a closed loopback port fails at once: finished payments. */
  config->targets.tcp_loopback = TRUE;

  f->stall = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  f->connection = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (stall_test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (tally_daemon_export (f->stall, f->connection, &error));
  g_assert_no_error (error);
}

void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  test_issuer_init (&f->issuer);
  f->dir = g_dir_make_tmp ("tally-test-stall-XXXXXX", &error);
  g_assert_no_error (error);
  f->socket_path = g_build_filename (f->dir, "stall.sock", NULL);
  f->listen = g_strdup_printf ("unix:%s", f->socket_path);
}

void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  tally_daemon_free (f->stall);
  if (f->connection != NULL) {
    g_dbus_connection_close_sync (f->connection, NULL, NULL);
    g_object_unref (f->connection);
  }
  while (g_main_context_iteration (NULL, FALSE))
    ;
  test_rm_rf (f->dir);
  g_free (f->dir);
  g_free (f->listen);
  g_free (f->socket_path);
  test_issuer_clear (&f->issuer);
}

gint64
stall_balance (Fixture *f)
{
  return tally_register_get_balance (tally_daemon_get_register (f->stall));
}

/* Payment requests the stall's register stored (nonce rows). */
guint
stall_nonces (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) nonces =
    tally_register_list_nonces (tally_daemon_get_register (f->stall), &error);
  g_assert_no_error (error);
  return nonces->len;
}

char *
stall_request (Fixture *f, guint payers)
{
  g_autoptr (GError) error = NULL;
  char *path = tally_daemon_request_payment (f->stall, getuid (), AMOUNT, "crowd", TIMEOUT_SECONDS,
                                             payers, &error);
  g_assert_no_error (error);
  return path;
}

/* --- the stall over the bus --- */

gboolean
call_done (gpointer data)
{
  return ((Call *) data)->result != NULL;
}

void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ((Call *) user_data)->result = g_object_ref (result);
}

/* Calls the stall over the bus from a client connection of its own, the
 * stall serving meanwhile. */
GVariant *
stall_call (Fixture *f,
            const char *path,
            const char *iface,
            const char *method,
            GVariant *params,
            const GVariantType *reply_type)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) client = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (stall_test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  Call call = { 0 };
  g_dbus_connection_call (client, g_dbus_connection_get_unique_name (f->connection), path, iface,
                          method, params, reply_type, G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                          store_result, &call);
  wait_until (call_done, &call);
  GVariant *reply = g_dbus_connection_call_finish (client, call.result, &error);
  g_object_unref (call.result);
  g_assert_no_error (error);
  g_dbus_connection_close_sync (client, NULL, NULL);
  return reply;
}

char *
object_string (Fixture *f, const char *path, const char *property)
{
  g_autoptr (GVariant) reply =
    stall_call (f, path, "org.freedesktop.DBus.Properties", "Get",
                g_variant_new ("(ss)", "org.tally.Payment1", property), G_VARIANT_TYPE ("(v)"));
  g_autoptr (GVariant) v = NULL;
  g_variant_get (reply, "(v)", &v);
  return g_variant_dup_string (v, NULL);
}

char *
object_state (Fixture *f, const char *path)
{
  return object_string (f, path, "State");
}

typedef struct
{
  Fixture *f;
  const char *path;
  const char *state;
} StateWait;

static gboolean
object_in_state (gpointer data)
{
  StateWait *w = data;
  g_autofree char *state = object_state (w->f, w->path);
  return strcmp (state, w->state) == 0;
}

void
wait_object_state (Fixture *f, const char *path, const char *state)
{
  StateWait w = { f, path, state };
  wait_until (object_in_state, &w);
}

/* --- honest payers --- */

static void
on_payer_confirm (TallyPayment *payment, gpointer user_data)
{
  Payer *p = user_data;
  p->confirming = TRUE;
  if (!p->hold)
    g_assert_true (tally_payment_confirm (payment, NULL));
}

static const TallyPaymentCallbacks payer_callbacks = {
  .confirm = on_payer_confirm,
};

void
payer_init (Fixture *f, Payer *p, const char *name)
{
  g_autofree char *dir = g_build_filename (f->dir, name, NULL);
  p->reg = test_register_new (&f->issuer, dir, 5000, PAYER_BALANCE);
}

void
payer_start (Fixture *f, Payer *p)
{
  static const TallyAcceptPolicy policy = { 0 };
  p->payment = tally_payment_new_payer (p->reg, &policy, TIMEOUT_SECONDS);
  tally_payment_set_callbacks (p->payment, &payer_callbacks, p, NULL);
  if (p->tagged)
    tally_payment_set_request_tag (p->payment, p->tag);
  tally_payment_connect (p->payment, f->listen);
}

void
payer_clear (Payer *p)
{
  if (p->payment != NULL) {
    tally_payment_set_callbacks (p->payment, NULL, NULL, NULL);
    g_clear_pointer (&p->payment, tally_payment_unref);
  }
  g_clear_pointer (&p->reg, tally_register_free);
}

gboolean
payer_finished (gpointer data)
{
  return tally_payment_is_finished (((Payer *) data)->payment);
}

gboolean
payer_confirming (gpointer data)
{
  return ((Payer *) data)->confirming;
}

gboolean
payer_confirming_or_finished (gpointer data)
{
  return payer_confirming (data) || payer_finished (data);
}

/* --- hostile connections --- */

static gboolean
hostile_drip (gpointer user_data)
{
  Hostile *h = user_data;
  /* A fragment of 200 bytes announced, then one byte at a time. */
  static const guint8 prefix[] = { 0x00, 0xc8 };
  static guint sent;
  guint8 byte = sent < sizeof prefix ? prefix[sent] : 0x5a;
  sent++;
  if (g_socket_send (h->socket, (const char *) &byte, 1, NULL, NULL) != 1) {
    h->drip = 0;
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

void
hostile_open (Fixture *f, Hostile *h, HostileKind kind)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (f->socket_path);
  h->kind = kind;
  h->socket =
    g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &error);
  g_assert_no_error (error);
  g_assert_true (g_socket_connect (h->socket, addr, NULL, &error));
  g_assert_no_error (error);
  g_socket_set_blocking (h->socket, FALSE);
  switch (kind) {
  case HOSTILE_SILENT: break;
  case HOSTILE_DRIP: h->drip = g_timeout_add (200, hostile_drip, h); break;
  case HOSTILE_JUNK: {
    guint8 junk[66] = { 0x00, 0x40 };
    for (guint i = 2; i < sizeof junk; i++)
      junk[i] = (guint8) (i * 37 + 11);
    g_assert_cmpint (g_socket_send (h->socket, (const char *) junk, sizeof junk, NULL, &error), ==,
                     (gssize) sizeof junk);
    break;
  }
  }
}

/* TRUE once the stall closed @h's connection (EOF or reset). */
gboolean
hostile_closed (gpointer data)
{
  Hostile *h = data;
  char buf[512];
  g_autoptr (GError) error = NULL;
  for (;;) {
    gssize n = g_socket_receive (h->socket, buf, sizeof buf, NULL, &error);
    if (n == 0)
      return TRUE;
    if (n < 0)
      return !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  }
}

void
hostile_clear (Hostile *h)
{
  if (h->drip != 0)
    g_source_remove (h->drip);
  h->drip = 0;
  if (h->socket != NULL)
    g_socket_close (h->socket, NULL);
  g_clear_object (&h->socket);
}
