/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus API on a private bus: two daemons in this process (alice pays,
 * bob is paid), each on its own connection, and a client connection that
 * calls them and serves an agent.
 */
#include <string.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>

#include "script.h"
#include "tally-clock.h"
#include "tally-daemon.h"
#include "tally-channel.h"
#include "tally-hex.h"
#include "tally-link.h"
#include "tally-stream.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"
#include "test-util.h"

#define TIMEOUT_SECONDS 20

static const char *const register_properties[] = {
  "RegisterId", "PublicKey", "IssuerKey", "Balance", "Currency", "MaxPayment", "BalanceCap",
  "MaxOfflinePayments", "MaxOfflineSeconds", "OfflinePayments", "CertificateExpiry",
  "LastReconciliation", "RevocationSerial", "Closed", "ListenAddress", "DisplayName", NULL,
};

static const char *const payment_properties[] = {
  "Role", "State", "Amount", "Currency", "Memo", "Peer", "PeerName", "ComparisonCode", "Counter",
  "Receipt", "Error", "ErrorMessage", "ErrorFromPeer", "Address", "CallerUid", NULL,
};

typedef struct
{
  TallyDaemon *daemon;
  GDBusConnection *connection;
  char *listen;
} Node;

/* One private bus for the whole program: GLib 2.74 leaks the GTestDBus
 * watcher pipe into every dbus-daemon started after the first, so a failed
 * assertion would leave a daemon behind holding the test's output open. */
static GTestDBus *test_bus;

typedef struct
{
  TestIssuer issuer;
  char *dir;
  GDBusConnection *client;
  Node alice;
  Node bob;

  /* The client's agent. */
  TallyDBusAgent1 *agent;
  gboolean agent_accepts;
  guint agent_calls;
  guint agent_releases;
  gint64 agent_amount;
  char *agent_payee;
  char *agent_payee_name;
  char *agent_code;

  /* Register1 properties bob announced. */
  GPtrArray *bob_changed;
  guint bob_subscription;
} Fixture;

static GDBusConnection *
connect_bus (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *c = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

/* How long finished payments stay; 0: the default. */
static guint keep_finished_seconds;

/* Starts @node's daemon with the fixture issuer's key as [register]
 * issuer_key, or with none (a fresh install) when @issuer_key is FALSE. */
static void
node_start_with (Fixture *f, Node *node, const char *name, gboolean issuer_key)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_free (config->register_dir);
  config->register_dir = g_build_filename (f->dir, name, NULL);
  config->has_issuer_key = issuer_key;
  if (issuer_key)
    memcpy (config->issuer_key, f->issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  g_free (config->listen);
  config->listen = g_strdup_printf ("unix:%s/%s.sock", f->dir, name);
  config->timeout_seconds = TIMEOUT_SECONDS;
  if (keep_finished_seconds != 0)
    config->keep_finished_seconds = keep_finished_seconds;
  g_strfreev (config->targets.unix_dirs);
  config->targets.unix_dirs = g_strsplit (f->dir, ";", -1);
  node->listen = g_strdup (config->listen);

  node->daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  node->connection = connect_bus (f);
  g_assert_true (tally_daemon_export (node->daemon, node->connection, &error));
  g_assert_no_error (error);
}

static void
node_start (Fixture *f, Node *node, const char *name)
{
  node_start_with (f, node, name, TRUE);
}

static void
node_stop (Node *node)
{
  tally_daemon_free (node->daemon);
  g_dbus_connection_close_sync (node->connection, NULL, NULL);
  g_object_unref (node->connection);
  g_free (node->listen);
}

static const char *
node_name (Node *node)
{
  return g_dbus_connection_get_unique_name (node->connection);
}

static void
on_bob_register_changed (GDBusConnection *c,
                         const char *sender,
                         const char *path,
                         const char *iface,
                         const char *signal,
                         GVariant *params,
                         gpointer user_data)
{
  Fixture *f = user_data;
  const char *changed_iface;
  g_autoptr (GVariant) changed = NULL;
  g_autoptr (GVariant) invalidated = NULL;
  g_variant_get (params, "(&s@a{sv}@as)", &changed_iface, &changed, &invalidated);
  if (strcmp (changed_iface, "org.tally.Register1") != 0)
    return;
  GVariantIter iter;
  const char *key;
  g_variant_iter_init (&iter, changed);
  while (g_variant_iter_next (&iter, "{&sv}", &key, NULL))
    g_ptr_array_add (f->bob_changed, g_strdup (key));
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  test_issuer_init (&f->issuer);
  tally_dbus_error_register ();
  f->dir = g_dir_make_tmp ("tally-test-dbus-XXXXXX", &error);
  g_assert_no_error (error);
  f->client = connect_bus (f);
  node_start (f, &f->alice, "alice");
  node_start (f, &f->bob, "bob");

  f->bob_changed = g_ptr_array_new_with_free_func (g_free);
  f->bob_subscription = g_dbus_connection_signal_subscribe (
    f->client, node_name (&f->bob), "org.freedesktop.DBus.Properties", "PropertiesChanged",
    "/org/tally/register", NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_bob_register_changed, f, NULL);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_dbus_connection_signal_unsubscribe (f->client, f->bob_subscription);
  if (f->agent != NULL) {
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (f->agent));
    g_object_unref (f->agent);
  }
  node_stop (&f->alice);
  node_stop (&f->bob);
  g_dbus_connection_close_sync (f->client, NULL, NULL);
  g_object_unref (f->client);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  test_rm_rf (f->dir);
  g_free (f->dir);
  g_ptr_array_unref (f->bob_changed);
  g_free (f->agent_payee);
  g_free (f->agent_payee_name);
  g_free (f->agent_code);
  test_issuer_clear (&f->issuer);
}

/* --- calling from the client --- */

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* A method call that lets the daemons run while it waits. */
static GVariant *
call (Fixture *f,
      Node *node,
      const char *path,
      const char *iface,
      const char *method,
      GVariant *args,
      const char *reply_type,
      GError **error)
{
  GAsyncResult *result = NULL;
  g_dbus_connection_call (f->client, node_name (node), path, iface, method, args,
                          reply_type ? G_VARIANT_TYPE (reply_type) : NULL, G_DBUS_CALL_FLAGS_NONE,
                          -1, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  GVariant *reply = g_dbus_connection_call_finish (f->client, result, error);
  g_object_unref (result);
  return reply;
}

static GVariant *
get_property (Fixture *f, Node *node, const char *path, const char *iface, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (f, node, path, "org.freedesktop.DBus.Properties", "Get",
                                     g_variant_new ("(ss)", iface, name), "(v)", &error);
  g_assert_no_error (error);
  GVariant *value;
  g_variant_get (reply, "(v)", &value);
  return value;
}

static gint64
get_balance (Fixture *f, Node *node)
{
  g_autoptr (GVariant) v = get_property (f, node, "/org/tally/register", "org.tally.Register1",
                                         "Balance");
  return g_variant_get_int64 (v);
}

static char *
get_payment_string (Fixture *f, Node *node, const char *path, const char *name)
{
  g_autoptr (GVariant) v = get_property (f, node, path, "org.tally.Payment1", name);
  return g_variant_dup_string (v, NULL);
}

static gboolean
get_payment_bool (Fixture *f, Node *node, const char *path, const char *name)
{
  g_autoptr (GVariant) v = get_property (f, node, path, "org.tally.Payment1", name);
  return g_variant_get_boolean (v);
}

static void
send_blob (Fixture *f, Node *node, const char *method, GBytes *blob, GError **error)
{
  g_autoptr (GVariant) reply =
    call (f, node, "/org/tally/register", "org.tally.Register1", method,
          g_variant_new ("(@ay)", g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, blob, TRUE)),
          "()", error);
}

/* Certifies @node's register as @display_name (NULL for none) and loads
 * @balance, over D-Bus. */
static void
certify_named (Fixture *f, Node *node, gint64 max_payment, gint64 balance, const char *display_name)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = tally_daemon_get_register (node->daemon);
  g_autoptr (GBytes) cert =
    test_issuer_certify_named (&f->issuer, reg, max_payment, 1, display_name);
  send_blob (f, node, "InstallCertificate", cert, &error);
  g_assert_no_error (error);
  if (balance > 0) {
    g_autoptr (GBytes) voucher = test_issuer_voucher (&f->issuer, reg, 1, balance);
    send_blob (f, node, "LoadVoucher", voucher, &error);
    g_assert_no_error (error);
  }
}

static void
certify (Fixture *f, Node *node, gint64 max_payment, gint64 balance)
{
  certify_named (f, node, max_payment, balance, NULL);
}

static char *
request_payment (Fixture *f, gint64 amount, const char *memo, GError **error)
{
  g_autoptr (GVariant) reply =
    call (f, &f->bob, "/org/tally/register", "org.tally.Register1", "RequestPayment",
          g_variant_new ("(tsa{sv})", (guint64) amount, memo, NULL), "(o)", error);
  if (reply == NULL)
    return NULL;
  char *path;
  g_variant_get (reply, "(o)", &path);
  return path;
}

static char *
pay_bob (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call (f, &f->alice, "/org/tally/register", "org.tally.Register1", "Pay",
          g_variant_new ("(sa{sv})", f->bob.listen, NULL), "(o)", &error);
  g_assert_no_error (error);
  char *path;
  g_variant_get (reply, "(o)", &path);
  return path;
}

static gboolean
is_final (const char *state)
{
  return strcmp (state, "done") == 0 || strcmp (state, "failed") == 0;
}

/* Polls State between main loop iterations until done or failed. */
static char *
wait_final (Fixture *f, Node *node, const char *path)
{
  for (;;) {
    char *state = get_payment_string (f, node, path, "State");
    if (is_final (state))
      return state;
    g_free (state);
    /* The change may already have happened during the Get: never block. */
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (5 * 1000);
  }
}

/* Polls State until it is @state (never blocking, as wait_final). */
static void
wait_state (Fixture *f, Node *node, const char *path, const char *state)
{
  for (;;) {
    g_autofree char *now = get_payment_string (f, node, path, "State");
    if (strcmp (now, state) == 0)
      return;
    g_assert_false (is_final (now));
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (5 * 1000);
  }
}

/* --- the agent --- */

static gboolean
handle_confirm_payment (TallyDBusAgent1 *agent,
                        GDBusMethodInvocation *invocation,
                        const char *payment,
                        gint64 amount,
                        const char *currency,
                        const char *payee,
                        const char *code,
                        const char *payee_name,
                        gpointer user_data)
{
  Fixture *f = user_data;
  f->agent_calls++;
  f->agent_amount = amount;
  g_free (f->agent_payee);
  f->agent_payee = g_strdup (payee);
  g_free (f->agent_payee_name);
  f->agent_payee_name = g_strdup (payee_name);
  g_free (f->agent_code);
  f->agent_code = g_strdup (code);
  g_assert_cmpstr (currency, ==, TEST_CURRENCY);
  g_assert_true (g_str_has_prefix (payment, "/org/tally/payment/"));
  if (f->agent_accepts)
    tally_dbus_agent1_complete_confirm_payment (agent, invocation);
  else
    g_dbus_method_invocation_return_dbus_error (invocation, "org.tally.Error.Rejected",
                                                "the test says no");
  return TRUE;
}

static gboolean
handle_release (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  Fixture *f = user_data;
  f->agent_releases++;
  tally_dbus_agent1_complete_release (agent, invocation);
  return TRUE;
}

static void
register_agent (Fixture *f, GDBusConnection *connection, gboolean accepts)
{
  g_autoptr (GError) error = NULL;
  f->agent_accepts = accepts;
  f->agent = tally_dbus_agent1_skeleton_new ();
  g_signal_connect (f->agent, "handle-confirm-payment", G_CALLBACK (handle_confirm_payment), f);
  g_signal_connect (f->agent, "handle-release", G_CALLBACK (handle_release), f);
  g_assert_true (g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (f->agent),
                                                   connection, "/test/agent", &error));
  g_assert_no_error (error);

  GAsyncResult *result = NULL;
  g_dbus_connection_call (connection, node_name (&f->alice), "/org/tally",
                          "org.tally.AgentManager1", "RegisterAgent",
                          g_variant_new ("(o)", "/test/agent"), G_VARIANT_TYPE_UNIT,
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (connection, result, &error);
  g_object_unref (result);
  g_assert_no_error (error);
}

/* --- tests --- */

static void
test_introspection_lists_interfaces (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = call (f, &f->bob, "/org/tally/register",
                                     "org.freedesktop.DBus.Introspectable", "Introspect", NULL,
                                     "(s)", &error);
  g_assert_no_error (error);
  const char *xml;
  g_variant_get (reply, "(&s)", &xml);
  g_autoptr (GDBusNodeInfo) info = g_dbus_node_info_new_for_xml (xml, &error);
  g_assert_no_error (error);
  GDBusInterfaceInfo *reg = g_dbus_node_info_lookup_interface (info, "org.tally.Register1");
  g_assert_nonnull (reg);
  for (guint i = 0; register_properties[i] != NULL; i++)
    g_assert_nonnull (g_dbus_interface_info_lookup_property (reg, register_properties[i]));
  for (const char *const *m = (const char *const[]){ "RequestPayment", "Pay", "LoadVoucher",
                                                      "InstallCertificate", "ExportBundle",
                                                      "ApplyResult", "Defund", "GetHistory",
                                                      NULL };
       *m != NULL; m++)
    g_assert_nonnull (g_dbus_interface_info_lookup_method (reg, *m));

  g_autoptr (GVariant) root = call (f, &f->bob, "/org/tally", "org.freedesktop.DBus.Introspectable",
                                    "Introspect", NULL, "(s)", &error);
  g_assert_no_error (error);
  g_variant_get (root, "(&s)", &xml);
  g_autoptr (GDBusNodeInfo) root_info = g_dbus_node_info_new_for_xml (xml, &error);
  g_assert_no_error (error);
  GDBusInterfaceInfo *manager =
    g_dbus_node_info_lookup_interface (root_info, "org.tally.AgentManager1");
  g_assert_nonnull (manager);
  g_assert_nonnull (g_dbus_interface_info_lookup_method (manager, "RegisterAgent"));
  g_assert_nonnull (g_dbus_interface_info_lookup_method (manager, "UnregisterAgent"));
  g_assert_nonnull (g_dbus_interface_info_lookup_method (manager, "RequestDefaultAgent"));

  /* Payment objects appear under /org/tally/payment with Payment1. */
  certify (f, &f->bob, 5000, 0);
  g_autofree char *path = request_payment (f, 100, "tea", &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) payment = call (f, &f->bob, path, "org.freedesktop.DBus.Introspectable",
                                       "Introspect", NULL, "(s)", &error);
  g_assert_no_error (error);
  g_variant_get (payment, "(&s)", &xml);
  g_autoptr (GDBusNodeInfo) payment_info = g_dbus_node_info_new_for_xml (xml, &error);
  g_assert_no_error (error);
  GDBusInterfaceInfo *p = g_dbus_node_info_lookup_interface (payment_info, "org.tally.Payment1");
  g_assert_nonnull (p);
  for (guint i = 0; payment_properties[i] != NULL; i++)
    g_assert_nonnull (g_dbus_interface_info_lookup_property (p, payment_properties[i]));
  g_assert_nonnull (g_dbus_interface_info_lookup_method (p, "Cancel"));
}

static void
test_register_properties_read_back (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = tally_daemon_get_register (f->bob.daemon);
  g_autofree char *id = tally_register_get_id_hex (reg);
  g_autofree char *key = tally_hex_encode (tally_register_get_public_key (reg), TALLY_PUBLIC_KEY_BYTES);

  g_autoptr (GVariant) reply = call (f, &f->bob, "/org/tally/register",
                                     "org.freedesktop.DBus.Properties", "GetAll",
                                     g_variant_new ("(s)", "org.tally.Register1"), "(a{sv})",
                                     &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) all = g_variant_get_child_value (reply, 0);
  g_autoptr (GVariantDict) props = g_variant_dict_new (all);
  for (guint i = 0; register_properties[i] != NULL; i++)
    g_assert_true (g_variant_dict_contains (props, register_properties[i]));

  const char *s;
  gint64 x;
  gboolean b;
  g_assert_true (g_variant_dict_lookup (props, "RegisterId", "&s", &s));
  g_assert_cmpstr (s, ==, id);
  g_assert_true (g_variant_dict_lookup (props, "PublicKey", "&s", &s));
  g_assert_cmpstr (s, ==, key);
  g_assert_true (g_variant_dict_lookup (props, "ListenAddress", "&s", &s));
  g_assert_cmpstr (s, ==, f->bob.listen);
  g_assert_true (g_variant_dict_lookup (props, "Balance", "x", &x));
  g_assert_cmpint (x, ==, 0);
  g_assert_true (g_variant_dict_lookup (props, "Currency", "&s", &s));
  g_assert_cmpstr (s, ==, "");
  g_assert_true (g_variant_dict_lookup (props, "Closed", "b", &b));
  g_assert_false (b);

  /* Certificate and voucher over D-Bus show up in the properties, and the
   * changes are announced. */
  certify (f, &f->bob, 2000, 3000);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 3000);
  g_autoptr (GVariant) currency =
    get_property (f, &f->bob, "/org/tally/register", "org.tally.Register1", "Currency");
  g_assert_cmpstr (g_variant_get_string (currency, NULL), ==, TEST_CURRENCY);
  g_autoptr (GVariant) max_payment =
    get_property (f, &f->bob, "/org/tally/register", "org.tally.Register1", "MaxPayment");
  g_assert_cmpint (g_variant_get_int64 (max_payment), ==, 2000);
  g_autoptr (GVariant) expiry =
    get_property (f, &f->bob, "/org/tally/register", "org.tally.Register1", "CertificateExpiry");
  g_assert_cmpuint (g_variant_get_uint64 (expiry), >, tally_now ());

  gboolean saw_balance = FALSE;
  while (!saw_balance) {
    for (guint i = 0; i < f->bob_changed->len; i++)
      if (strcmp (f->bob_changed->pdata[i], "Balance") == 0)
        saw_balance = TRUE;
    if (!saw_balance)
      g_main_context_iteration (NULL, TRUE);
  }
}

static void
test_load_voucher_bad_blob_is_malformed (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) junk = g_bytes_new_static ("\xff\xff\xff not a voucher", 18);

  send_blob (f, &f->bob, "LoadVoucher", junk, &error);
  g_assert_nonnull (error);
  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.tally.Error.Malformed");
  /* The registered table turns the name back into the code. */
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 0);
}

static void
test_error_table_covers_every_code (void)
{
  g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);

  tally_dbus_error_register ();
  for (guint code = 1; code <= TALLY_ERROR_LAST; code++) {
    const char *name = tally_dbus_error_name ((TallyError) code);
    g_assert_nonnull (name);
    g_autofree char *want =
      g_strconcat ("org.tally.Error.", tally_error_to_string ((TallyError) code), NULL);
    g_assert_cmpstr (name, ==, want);
    g_assert_true (g_dbus_is_interface_name (name));
    g_assert_true (g_hash_table_add (names, (gpointer) name));

    /* Both directions through GDBus's registry. */
    g_autoptr (GError) local = g_error_new_literal (TALLY_ERROR, (gint) code, "x");
    g_autofree char *encoded = g_dbus_error_encode_gerror (local);
    g_assert_cmpstr (encoded, ==, name);
    g_autoptr (GError) decoded = g_dbus_error_new_for_dbus_error (name, "x");
    g_assert_error (decoded, TALLY_ERROR, (gint) code);
  }
  g_assert_cmpuint (g_hash_table_size (names), ==, TALLY_ERROR_LAST);
  g_assert_null (tally_dbus_error_name ((TallyError) 0));
  g_assert_null (tally_dbus_error_name ((TallyError) (TALLY_ERROR_LAST + 1)));

  g_autoptr (GError) other = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "x");
  g_assert_cmpstr (tally_dbus_error_name_for (other), ==, "org.tally.Error.Failed");
}

static void
test_second_request_is_exists (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->bob, 5000, 0);
  g_autofree char *path = request_payment (f, 750, "lunch", &error);
  g_assert_no_error (error);
  g_autofree char *state = get_payment_string (f, &f->bob, path, "State");
  g_assert_cmpstr (state, ==, "waiting");
  g_autofree char *role = get_payment_string (f, &f->bob, path, "Role");
  g_assert_cmpstr (role, ==, "payee");
  g_autofree char *memo = get_payment_string (f, &f->bob, path, "Memo");
  g_assert_cmpstr (memo, ==, "lunch");
  g_autoptr (GVariant) amount = get_property (f, &f->bob, path, "org.tally.Payment1", "Amount");
  g_assert_cmpint (g_variant_get_int64 (amount), ==, 750);

  g_autofree char *second = request_payment (f, 100, "", &error);
  g_assert_null (second);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_clear_error (&error);

  /* Cancelling the first frees the slot. */
  g_autoptr (GVariant) cancelled =
    call (f, &f->bob, path, "org.tally.Payment1", "Cancel", NULL, "()", &error);
  g_assert_no_error (error);
  g_autofree char *err = get_payment_string (f, &f->bob, path, "Error");
  g_assert_cmpstr (err, ==, "org.tally.Error.Cancelled");
  g_autofree char *third = request_payment (f, 100, "", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (third, !=, path);
}

static void
test_request_unknown_option_is_invalid_argument (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&options, "{sv}", "Colour", g_variant_new_string ("red"));

  certify (f, &f->bob, 5000, 0);
  g_autoptr (GVariant) reply =
    call (f, &f->bob, "/org/tally/register", "org.tally.Register1", "RequestPayment",
          g_variant_new ("(tsa{sv})", (guint64) 100, "", &options), "(o)", &error);
  g_assert_null (reply);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_pay_confirmed_by_agent_moves_balances (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->alice, 5000, 10000);
  certify_named (f, &f->bob, 5000, 0, "Caf\u00e9 Lumen");
  register_agent (f, f->client, TRUE);
  g_ptr_array_set_size (f->bob_changed, 0);

  g_autofree char *request = request_payment (f, 1250, "coffee beans", &error);
  g_assert_no_error (error);
  g_autofree char *payment = pay_bob (f);

  g_autofree char *payer_state = wait_final (f, &f->alice, payment);
  g_autofree char *payee_state = wait_final (f, &f->bob, request);
  g_assert_cmpstr (payer_state, ==, "done");
  g_assert_cmpstr (payee_state, ==, "done");

  g_assert_cmpuint (f->agent_calls, ==, 1);
  g_assert_cmpint (f->agent_amount, ==, 1250);
  g_autofree char *bob_id = tally_register_get_id_hex (tally_daemon_get_register (f->bob.daemon));
  g_autofree char *alice_id =
    tally_register_get_id_hex (tally_daemon_get_register (f->alice.daemon));
  g_assert_cmpstr (f->agent_payee, ==, bob_id);

  g_autofree char *payer_code = get_payment_string (f, &f->alice, payment, "ComparisonCode");
  g_autofree char *payee_code = get_payment_string (f, &f->bob, request, "ComparisonCode");
  g_assert_cmpstr (payer_code, ==, f->agent_code);
  g_assert_cmpstr (payer_code, ==, payee_code);
  g_autofree char *payer_peer = get_payment_string (f, &f->alice, payment, "Peer");
  g_autofree char *payee_peer = get_payment_string (f, &f->bob, request, "Peer");
  g_assert_cmpstr (payer_peer, ==, bob_id);
  g_assert_cmpstr (payee_peer, ==, alice_id);
  /* The payer and its agent read bob's certified name; alice has none, so
   * bob reads her short id. */
  g_assert_cmpstr (f->agent_payee_name, ==, "Caf\u00e9 Lumen");
  g_autofree char *payer_peer_name = get_payment_string (f, &f->alice, payment, "PeerName");
  g_autofree char *payee_peer_name = get_payment_string (f, &f->bob, request, "PeerName");
  g_assert_cmpstr (payer_peer_name, ==, "Caf\u00e9 Lumen");
  g_autofree char *alice_short = g_strndup (alice_id, 8);
  g_assert_cmpstr (payee_peer_name, ==, alice_short);
  g_autoptr (GVariant) receipt =
    get_property (f, &f->bob, request, "org.tally.Payment1", "Receipt");
  g_assert_cmpuint (g_variant_n_children (receipt), >, 0);
  g_autoptr (GVariant) counter = get_property (f, &f->bob, request, "org.tally.Payment1", "Counter");
  g_assert_cmpuint (g_variant_get_uint64 (counter), ==, 1);

  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000 - 1250);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 1250);

  gboolean saw_balance = FALSE;
  while (!saw_balance) {
    for (guint i = 0; i < f->bob_changed->len; i++)
      if (strcmp (f->bob_changed->pdata[i], "Balance") == 0)
        saw_balance = TRUE;
    if (!saw_balance)
      g_main_context_iteration (NULL, TRUE);
  }

  /* The register history has the payment on both sides. */
  g_autoptr (GVariant) history =
    call (f, &f->bob, "/org/tally/register", "org.tally.Register1", "GetHistory",
          g_variant_new ("(u)", 1), "(aa{sv})", &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) entries = g_variant_get_child_value (history, 0);
  g_assert_cmpuint (g_variant_n_children (entries), ==, 1);
  g_autoptr (GVariant) entry = g_variant_get_child_value (entries, 0);
  g_autoptr (GVariantDict) e = g_variant_dict_new (entry);
  const char *kind;
  gint64 amount;
  g_assert_true (g_variant_dict_lookup (e, "Kind", "&s", &kind));
  g_assert_cmpstr (kind, ==, tally_entry_kind_to_string (TALLY_ENTRY_RECEIVED));
  g_assert_true (g_variant_dict_lookup (e, "Amount", "x", &amount));
  g_assert_cmpint (amount, ==, 1250);
}

static void
test_pay_without_agent_is_rejected (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
  g_autofree char *request = request_payment (f, 1250, "", &error);
  g_assert_no_error (error);
  g_autofree char *payment = pay_bob (f);

  g_autofree char *payer_state = wait_final (f, &f->alice, payment);
  g_assert_cmpstr (payer_state, ==, "failed");
  /* Alice refused before her Pay, having proved nothing to bob: his
   * request does not end, its object waits for the next payer. */
  wait_state (f, &f->bob, request, "waiting");
  g_autofree char *payer_error = get_payment_string (f, &f->alice, payment, "Error");
  g_autofree char *payee_error = get_payment_string (f, &f->bob, request, "Error");
  g_autofree char *message = get_payment_string (f, &f->alice, payment, "ErrorMessage");
  g_assert_cmpstr (payer_error, ==, "org.tally.Error.Rejected");
  g_assert_cmpstr (payee_error, ==, "");
  g_autofree char *want = g_strdup_printf ("no agent registered by uid %u", (guint) getuid ());
  g_assert_cmpstr (message, ==, want);
  /* Alice's side refused: her failure is not from her peer. */
  g_assert_false (get_payment_bool (f, &f->alice, payment, "ErrorFromPeer"));
  g_assert_false (get_payment_bool (f, &f->bob, request, "ErrorFromPeer"));
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 0);
}

static void
test_agent_refusal_rejects_payment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
  register_agent (f, f->client, FALSE);
  g_autofree char *request = request_payment (f, 1250, "", &error);
  g_assert_no_error (error);
  g_autofree char *payment = pay_bob (f);

  g_autofree char *payer_state = wait_final (f, &f->alice, payment);
  g_assert_cmpstr (payer_state, ==, "failed");
  /* A refusal before the Pay ends only that handshake: bob's request
   * waits for the next payer. */
  wait_state (f, &f->bob, request, "waiting");
  g_assert_cmpuint (f->agent_calls, ==, 1);
  g_autofree char *payer_error = get_payment_string (f, &f->alice, payment, "Error");
  g_autofree char *payee_error = get_payment_string (f, &f->bob, request, "Error");
  g_assert_cmpstr (payer_error, ==, "org.tally.Error.Rejected");
  g_assert_cmpstr (payee_error, ==, "");
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 0);
}

static void
test_agent_dropped_when_owner_vanishes (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
  /* An agent on a connection that then goes away. */
  g_autoptr (GDBusConnection) gone = connect_bus (f);
  register_agent (f, gone, TRUE);
  g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (f->agent));
  g_clear_object (&f->agent);
  g_dbus_connection_close_sync (gone, NULL, &error);
  g_assert_no_error (error);

  g_autofree char *request = request_payment (f, 1250, "", &error);
  g_assert_no_error (error);
  g_autofree char *payment = pay_bob (f);
  g_autofree char *payer_state = wait_final (f, &f->alice, payment);
  g_assert_cmpstr (payer_state, ==, "failed");
  g_autofree char *message = get_payment_string (f, &f->alice, payment, "ErrorMessage");
  g_autofree char *want = g_strdup_printf ("no agent registered by uid %u", (guint) getuid ());
  g_assert_cmpstr (message, ==, want);
  g_assert_cmpuint (f->agent_calls, ==, 0);
}

/* --- a fresh install: no [register] issuer_key --- */

static char *
get_register_string (Fixture *f, Node *node, const char *name)
{
  g_autoptr (GVariant) v = get_property (f, node, "/org/tally/register", "org.tally.Register1", name);
  return g_variant_dup_string (v, NULL);
}

static void
expect_send_refused (Fixture *f, Node *node, const char *method, GBytes *blob, TallyError code)
{
  g_autoptr (GError) error = NULL;
  send_blob (f, node, method, blob, &error);
  g_assert_error (error, TALLY_ERROR, (gint) code);
}

static void
test_fresh_install_starts_and_takes_issuer_once (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Node carol = { 0 };
  node_start_with (f, &carol, "carol", FALSE);
  TallyRegister *reg = tally_daemon_get_register (carol.daemon);
  g_autofree char *none = get_register_string (f, &carol, "IssuerKey");
  g_assert_cmpstr (none, ==, "");
  g_assert_cmpint (get_balance (f, &carol), ==, 0);

  /* Nothing signed is taken before the issuer is. */
  g_autoptr (GBytes) cert = test_issuer_certify (&f->issuer, reg, 5000, 1);
  expect_send_refused (f, &carol, "InstallCertificate", cert, TALLY_ERROR_WRONG_STATE);
  g_autoptr (GBytes) key_set = test_issuer_key_set (&f->issuer);
  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (key_set, NULL), g_bytes_get_size (key_set), &error);
  g_assert_no_error (error);
  env->signature.data[0] ^= 0x80;
  g_autoptr (GBytes) forged = tally_envelope_pack (env);
  expect_send_refused (f, &carol, "SetIssuer", forged, TALLY_ERROR_BAD_SIGNATURE);
  g_autofree char *still_none = get_register_string (f, &carol, "IssuerKey");
  g_assert_cmpstr (still_none, ==, "");

  send_blob (f, &carol, "SetIssuer", key_set, &error);
  g_assert_no_error (error);
  g_autofree char *want = tally_hex_encode (f->issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *got = get_register_string (f, &carol, "IssuerKey");
  g_assert_cmpstr (got, ==, want);
  expect_send_refused (f, &carol, "SetIssuer", key_set, TALLY_ERROR_EXISTS);
  send_blob (f, &carol, "InstallCertificate", cert, &error);
  g_assert_no_error (error);

  /* Restarted, still without issuer_key: the register keeps its issuer. */
  node_stop (&carol);
  node_start_with (f, &carol, "carol", FALSE);
  g_autofree char *kept = get_register_string (f, &carol, "IssuerKey");
  g_assert_cmpstr (kept, ==, want);
  node_stop (&carol);
}

/* A register made before issuer_key was written takes it from the
 * configuration at the next start. */
static void
test_issuer_key_written_later_binds_register (Fixture *f, gconstpointer data)
{
  Node dave = { 0 };
  node_start_with (f, &dave, "dave", FALSE);
  node_stop (&dave);
  node_start_with (f, &dave, "dave", TRUE);
  g_autofree char *want = tally_hex_encode (f->issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *got = get_register_string (f, &dave, "IssuerKey");
  g_assert_cmpstr (got, ==, want);
  certify (f, &dave, 5000, 700);
  g_assert_cmpint (get_balance (f, &dave), ==, 700);
  node_stop (&dave);
}

static void
test_payer_without_request_gets_not_found (Fixture *f, gconstpointer data)
{
  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
  register_agent (f, f->client, TRUE);

  g_autofree char *payment = pay_bob (f);
  g_autofree char *state = wait_final (f, &f->alice, payment);
  g_assert_cmpstr (state, ==, "failed");
  g_autofree char *err = get_payment_string (f, &f->alice, payment, "Error");
  g_assert_cmpstr (err, ==, "org.tally.Error.NotFound");
  g_assert_true (get_payment_bool (f, &f->alice, payment, "ErrorFromPeer"));
  g_assert_cmpuint (f->agent_calls, ==, 0);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
}

static void
test_finished_payments_capped (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *first = NULL;

  certify (f, &f->bob, 5000, 0);
  for (guint i = 0; i < TALLY_DAEMON_MAX_PAYMENTS + 1; i++) {
    g_autofree char *path = request_payment (f, 100, "", &error);
    g_assert_no_error (error);
    g_autoptr (GVariant) reply =
      call (f, &f->bob, path, "org.tally.Payment1", "Cancel", NULL, "()", &error);
    g_assert_no_error (error);
    if (first == NULL)
      first = g_steal_pointer (&path);
  }
  g_assert_cmpuint (tally_daemon_get_payment_count (f->bob.daemon), ==, TALLY_DAEMON_MAX_PAYMENTS);

  /* The oldest finished payment went away with its object. */
  g_autoptr (GVariant) gone =
    call (f, &f->bob, first, "org.freedesktop.DBus.Properties", "Get",
          g_variant_new ("(ss)", "org.tally.Payment1", "State"), "(v)", &error);
  g_assert_null (gone);
  g_assert_nonnull (error);
}

static void
fixture_set_up_keep_one_second (Fixture *f, gconstpointer data)
{
  keep_finished_seconds = 1;
  fixture_set_up (f, data);
  keep_finished_seconds = 0;
}

/* Finished payments leave the bus after [payment] keep_finished_seconds,
 * however few there are; waiting ones stay. */
static void
test_finished_payment_leaves_bus_after_keep_time (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->bob, 5000, 0);
  g_autofree char *cancelled = request_payment (f, 100, "", &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) reply =
    call (f, &f->bob, cancelled, "org.tally.Payment1", "Cancel", NULL, "()", &error);
  g_assert_no_error (error);
  g_autofree char *waiting = request_payment (f, 100, "", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_daemon_get_payment_count (f->bob.daemon), ==, 2);

  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (tally_daemon_get_payment_count (f->bob.daemon) == 2 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_daemon_get_payment_count (f->bob.daemon), ==, 1);

  g_autoptr (GVariant) gone =
    call (f, &f->bob, cancelled, "org.freedesktop.DBus.Properties", "Get",
          g_variant_new ("(ss)", "org.tally.Payment1", "State"), "(v)", &error);
  g_assert_null (gone);
  g_assert_nonnull (error);
  g_autofree char *state = get_payment_string (f, &f->bob, waiting, "State");
  g_assert_cmpstr (state, ==, "waiting");
}

static char *
pay_with (Fixture *f, const char *address, GVariant *options, GError **error)
{
  g_autoptr (GVariant) reply = call (
    f, &f->alice, "/org/tally/register", "org.tally.Register1", "Pay",
    g_variant_new ("(s@a{sv})", address,
                   options ? options : g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
    "(o)", error);
  if (reply == NULL)
    return NULL;
  char *path;
  g_variant_get (reply, "(o)", &path);
  return path;
}

static GVariant *
timeout_option (guint32 seconds)
{
  GVariantBuilder b;
  g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&b, "{sv}", "Timeout", g_variant_new_uint32 (seconds));
  return g_variant_builder_end (&b);
}

static void
test_timeout_over_cap_is_invalid_argument (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);

  g_autofree char *pay =
    pay_with (f, f->bob.listen, timeout_option (TALLY_DAEMON_MAX_TIMEOUT + 1), &error);
  g_assert_null (pay);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_autofree char *huge = pay_with (f, f->bob.listen, timeout_option (G_MAXUINT32), &error);
  g_assert_null (huge);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_cmpuint (tally_daemon_get_payment_count (f->alice.daemon), ==, 0);

  g_autoptr (GVariant) reply = call (
    f, &f->bob, "/org/tally/register", "org.tally.Register1", "RequestPayment",
    g_variant_new ("(ts@a{sv})", (guint64) 100, "", timeout_option (TALLY_DAEMON_MAX_TIMEOUT + 1)),
    "(o)", &error);
  g_assert_null (reply);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* The cap itself is allowed. */
  g_autofree char *request = request_payment (f, 100, "", &error);
  g_assert_no_error (error);
  g_autofree char *at_cap =
    pay_with (f, f->bob.listen, timeout_option (TALLY_DAEMON_MAX_TIMEOUT), &error);
  g_assert_no_error (error);
  g_assert_nonnull (at_cap);
}

static void
test_pay_target_outside_allowed_targets_is_refused (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const char *address;
    gint code;
  } cases[] = {
    { "unix:/run/dbus/system_bus_socket", TALLY_ERROR_POLICY },
    { "tcp:192.0.2.1:22", TALLY_ERROR_POLICY },
    { "tcp:127.0.0.1:631", TALLY_ERROR_POLICY }, /* loopback, but not configured */
    { "unix:relative.sock", TALLY_ERROR_INVALID_ARGUMENT },
  };
  certify (f, &f->alice, 5000, 10000);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autofree char *path = pay_with (f, cases[i].address, NULL, &error);
    g_assert_null (path);
    g_assert_error (error, TALLY_ERROR, cases[i].code);
  }
  /* A path that climbs out of the allowed directory. */
  g_autoptr (GError) error = NULL;
  g_autofree char *climb = g_strdup_printf ("unix:%s/../x.sock", f->dir);
  g_autofree char *path = pay_with (f, climb, NULL, &error);
  g_assert_null (path);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (tally_daemon_get_payment_count (f->alice.daemon), ==, 0);
}

/* A UNIX socket that takes connections and never answers: the payer
 * waits for the offer until it times out or is cancelled. */
static GSocket *
silent_listener (const char *path)
{
  g_autoptr (GError) error = NULL;
  GSocket *socket =
    g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &error);
  g_assert_no_error (error);
  g_autoptr (GSocketAddress) address = g_unix_socket_address_new (path);
  g_assert_true (g_socket_bind (socket, address, TRUE, &error));
  g_assert_no_error (error);
  g_socket_set_listen_backlog (socket, 16);
  g_assert_true (g_socket_listen (socket, &error));
  g_assert_no_error (error);
  return socket;
}

static void
test_pays_in_progress_capped_per_uid (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *sock = g_build_filename (f->dir, "silent.sock", NULL);
  g_autoptr (GSocket) listener = silent_listener (sock);
  g_autofree char *address = g_strconcat ("unix:", sock, NULL);
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);

  certify (f, &f->alice, 5000, 10000);
  for (guint i = 0; i < TALLY_DAEMON_MAX_PAYS_PER_UID; i++) {
    char *path = pay_with (f, address, NULL, &error);
    g_assert_no_error (error);
    g_ptr_array_add (paths, path);
    g_autoptr (GVariant) uid = get_property (f, &f->alice, path, "org.tally.Payment1", "CallerUid");
    g_assert_cmpuint (g_variant_get_uint32 (uid), ==, getuid ());
  }
  g_autofree char *refused = pay_with (f, address, NULL, &error);
  g_assert_null (refused);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);

  /* One finished frees a place. */
  g_autoptr (GVariant) cancelled =
    call (f, &f->alice, paths->pdata[0], "org.tally.Payment1", "Cancel", NULL, "()", &error);
  g_assert_no_error (error);
  g_autofree char *again = pay_with (f, address, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (again);
}

static void
call_manager (Fixture *f, const char *method, const char *path, GError **error)
{
  g_autoptr (GVariant) reply = call (f, &f->alice, "/org/tally", "org.tally.AgentManager1", method,
                                     g_variant_new ("(o)", path), "()", error);
}

static void
test_default_agent_and_release (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  call_manager (f, "RequestDefaultAgent", "/test/agent", &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);

  register_agent (f, f->client, TRUE);
  call_manager (f, "RequestDefaultAgent", "/test/agent", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f->agent_releases, ==, 0);

  /* Unregistering tells the agent with Release. */
  call_manager (f, "UnregisterAgent", "/test/agent", &error);
  g_assert_no_error (error);
  while (f->agent_releases == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (f->agent_releases, ==, 1);

  /* And when the daemon goes away, every agent still registered hears it. */
  call_manager (f, "RegisterAgent", "/test/agent", &error);
  g_assert_no_error (error);
  tally_daemon_free (f->alice.daemon);
  f->alice.daemon = NULL;
  while (f->agent_releases == 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (f->agent_releases, ==, 2);
}

/* A payee at a socket of its own that answers the Hello with an offer
 * bob's register signed honestly, whose memo is the bytes ff fe 41. */
typedef struct
{
  TallyRegister *reg;
  Script script;
  TallyChannel *channel;
  gboolean offered;
} HostilePayee;

static void
on_hostile_message (TallyChannel *channel, GBytes *hello, gpointer user_data)
{
  HostilePayee *h = user_data;
  if (h->offered)
    return; /* the payer's Error */
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (h->reg, 900, "cake", tally_now (), &error);
  g_assert_no_error (error);
  char *honest = req->memo;
  req->memo = (char *) "\xff\xfe\x41";
  g_autoptr (GBytes) cert = tally_register_get_certificate (h->reg);
  g_autoptr (GBytes) offer = script_offer (&h->script, hello, cert, req, h->reg, NULL);
  req->memo = honest;
  g_assert_true (tally_channel_send (channel, offer, &error));
  g_assert_no_error (error);
  h->offered = TRUE;
}

static void
on_hostile_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
}

static void
on_hostile_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  HostilePayee *h = user_data;
  g_assert_null (h->channel);
  h->channel = tally_channel_new (link, TALLY_SESSION_MAX_MESSAGE, 5000);
  tally_channel_set_handlers (h->channel, on_hostile_message, on_hostile_closed, h, NULL);
}

static void
test_payee_memo_not_utf8_is_malformed (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  HostilePayee h = { .reg = tally_daemon_get_register (f->bob.daemon) };
  g_autofree char *address = g_strdup_printf ("unix:%s/hostile.sock", f->dir);

  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
  register_agent (f, f->client, TRUE);
  script_init (&h.script, FALSE);
  TallyStreamListener *listener =
    tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, on_hostile_accept, &h, NULL, &error);
  g_assert_no_error (error);

  /* Alice's Payment1 object would carry the memo to D-Bus; under
   * G_DEBUG=fatal-criticals (the test environment) a GLib critical
   * there aborts. */
  g_autofree char *payment = pay_with (f, address, NULL, &error);
  g_assert_no_error (error);
  g_autofree char *state = wait_final (f, &f->alice, payment);
  g_assert_cmpstr (state, ==, "failed");
  g_assert_true (h.offered);
  g_autofree char *err = get_payment_string (f, &f->alice, payment, "Error");
  g_assert_cmpstr (err, ==, "org.tally.Error.Malformed");
  g_autofree char *memo = get_payment_string (f, &f->alice, payment, "Memo");
  g_assert_cmpstr (memo, ==, "");
  g_assert_cmpuint (f->agent_calls, ==, 0);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);

  g_clear_pointer (&h.channel, tally_channel_unref);
  tally_stream_listener_unref (listener);
  script_clear (&h.script);

  /* Alice's daemon is still there and pays an honest payee. */
  g_autofree char *request = request_payment (f, 1250, "tea", &error);
  g_assert_no_error (error);
  g_autofree char *honest = pay_bob (f);
  g_autofree char *honest_state = wait_final (f, &f->alice, honest);
  g_assert_cmpstr (honest_state, ==, "done");
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000 - 1250);
}

/* --- the ObjectManager at / --- */

#define OBJECT_MANAGER "org.freedesktop.DBus.ObjectManager"

static GVariant *
get_managed_objects (Fixture *f, Node *node)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    call (f, node, "/", OBJECT_MANAGER, "GetManagedObjects", NULL, "(a{oa{sa{sv}}})", &error);
  g_assert_no_error (error);
  return g_variant_get_child_value (reply, 0);
}

/* The properties of @iface at @path in @objects (a{oa{sa{sv}}}), or NULL. */
static GVariantDict *
managed_properties (GVariant *objects, const char *path, const char *iface)
{
  g_autoptr (GVariant) interfaces = g_variant_lookup_value (objects, path, NULL);
  if (interfaces == NULL)
    return NULL;
  g_autoptr (GVariant) properties = g_variant_lookup_value (interfaces, iface, NULL);
  return properties ? g_variant_dict_new (properties) : NULL;
}

/* ObjectManager signals from bob, as (member, parameters). */
typedef struct
{
  GPtrArray *members;
  GPtrArray *parameters;
} Signals;

static void
on_manager_signal (GDBusConnection *c,
                   const char *sender,
                   const char *path,
                   const char *iface,
                   const char *signal,
                   GVariant *params,
                   gpointer user_data)
{
  Signals *signals = user_data;
  g_ptr_array_add (signals->members, g_strdup (signal));
  g_ptr_array_add (signals->parameters, g_variant_ref (params));
}

static guint
watch_manager (Fixture *f, Signals *signals)
{
  signals->members = g_ptr_array_new_with_free_func (g_free);
  signals->parameters = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  guint id = g_dbus_connection_signal_subscribe (f->client, node_name (&f->bob), OBJECT_MANAGER,
                                                 NULL, "/", NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                                 on_manager_signal, signals, NULL);
  /* The match rule reaches the bus before anything we call next. */
  g_autoptr (GVariant) ping =
    call (f, &f->bob, "/org/tally/register", "org.freedesktop.DBus.Peer", "Ping", NULL, "()", NULL);
  return id;
}

/* The parameters of the first @member signal, waiting up to 10 s. */
static GVariant *
wait_signal (Signals *signals, const char *member)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  for (;;) {
    for (guint i = 0; i < signals->members->len; i++)
      if (strcmp (signals->members->pdata[i], member) == 0)
        return signals->parameters->pdata[i];
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    g_main_context_iteration (NULL, TRUE);
  }
}

static void
unwatch_manager (Fixture *f, guint id, Signals *signals)
{
  g_dbus_connection_signal_unsubscribe (f->client, id);
  g_ptr_array_unref (signals->members);
  g_ptr_array_unref (signals->parameters);
}

static void
test_get_managed_objects_lists_register_and_payments (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  certify (f, &f->bob, 5000, 0);
  g_autofree char *path = request_payment (f, 250, "tea", &error);
  g_assert_no_error (error);

  g_autoptr (GVariant) objects = get_managed_objects (f, &f->bob);
  g_assert_cmpuint (g_variant_n_children (objects), ==, 2);
  g_autoptr (GVariantDict) reg =
    managed_properties (objects, "/org/tally/register", "org.tally.Register1");
  g_assert_nonnull (reg);
  for (guint i = 0; register_properties[i] != NULL; i++)
    g_assert_true (g_variant_dict_contains (reg, register_properties[i]));
  g_autofree char *id = tally_register_get_id_hex (tally_daemon_get_register (f->bob.daemon));
  const char *reg_id;
  g_assert_true (g_variant_dict_lookup (reg, "RegisterId", "&s", &reg_id));
  g_assert_cmpstr (reg_id, ==, id);

  g_autoptr (GVariantDict) payment = managed_properties (objects, path, "org.tally.Payment1");
  g_assert_nonnull (payment);
  for (guint i = 0; payment_properties[i] != NULL; i++)
    g_assert_true (g_variant_dict_contains (payment, payment_properties[i]));
  const char *state, *memo;
  gint64 amount;
  g_assert_true (g_variant_dict_lookup (payment, "State", "&s", &state));
  g_assert_cmpstr (state, ==, "waiting");
  g_assert_true (g_variant_dict_lookup (payment, "Amount", "x", &amount));
  g_assert_cmpint (amount, ==, 250);
  g_assert_true (g_variant_dict_lookup (payment, "Memo", "&s", &memo));
  g_assert_cmpstr (memo, ==, "tea");

  /* Alice has made no payment: her register alone. */
  g_autoptr (GVariant) alice = get_managed_objects (f, &f->alice);
  g_assert_cmpuint (g_variant_n_children (alice), ==, 1);
}

static void
test_interfaces_added_on_new_payment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Signals signals;

  certify (f, &f->bob, 5000, 0);
  guint id = watch_manager (f, &signals);
  g_autofree char *path = request_payment (f, 300, "cake", &error);
  g_assert_no_error (error);

  GVariant *added = wait_signal (&signals, "InterfacesAdded");
  const char *added_path;
  g_autoptr (GVariant) interfaces = NULL;
  g_variant_get (added, "(&o@a{sa{sv}})", &added_path, &interfaces);
  g_assert_cmpstr (added_path, ==, path);
  g_assert_cmpuint (g_variant_n_children (interfaces), ==, 1);
  g_autoptr (GVariant) properties =
    g_variant_lookup_value (interfaces, "org.tally.Payment1", G_VARIANT_TYPE_VARDICT);
  g_assert_nonnull (properties);
  gint64 amount;
  const char *memo, *role;
  g_assert_true (g_variant_lookup (properties, "Amount", "x", &amount));
  g_assert_cmpint (amount, ==, 300);
  g_assert_true (g_variant_lookup (properties, "Memo", "&s", &memo));
  g_assert_cmpstr (memo, ==, "cake");
  g_assert_true (g_variant_lookup (properties, "Role", "&s", &role));
  g_assert_cmpstr (role, ==, "payee");
  unwatch_manager (f, id, &signals);
}

/* keep_finished_seconds = 1 */
static void
test_interfaces_removed_when_payment_pruned (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Signals signals;

  certify (f, &f->bob, 5000, 0);
  g_autofree char *path = request_payment (f, 100, "", &error);
  g_assert_no_error (error);
  guint id = watch_manager (f, &signals);
  g_autoptr (GVariant) reply =
    call (f, &f->bob, path, "org.tally.Payment1", "Cancel", NULL, "()", &error);
  g_assert_no_error (error);

  GVariant *removed = wait_signal (&signals, "InterfacesRemoved");
  const char *removed_path;
  g_autofree const char **names = NULL;
  g_variant_get (removed, "(&o^a&s)", &removed_path, &names);
  g_assert_cmpstr (removed_path, ==, path);
  g_assert_cmpuint (g_strv_length ((char **) names), ==, 1);
  g_assert_cmpstr (names[0], ==, "org.tally.Payment1");
  g_assert_cmpuint (tally_daemon_get_payment_count (f->bob.daemon), ==, 0);

  g_autoptr (GVariant) objects = get_managed_objects (f, &f->bob);
  g_assert_cmpuint (g_variant_n_children (objects), ==, 1);
  g_autoptr (GVariantDict) gone = managed_properties (objects, path, "org.tally.Payment1");
  g_assert_null (gone);
  unwatch_manager (f, id, &signals);
}

/* --- tallyctl history for bookkeeping --- */

/* Runs the built tallyctl against @node on the test bus; its standard
 * output, after asserting that it succeeded. */
static char *
run_tallyctl (Node *node, const char *const *args)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tallyctl =
    g_build_filename (g_getenv ("TALLY_BUILD_ROOT"), "daemon", "tallyctl", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, tallyctl);
  g_ptr_array_add (argv, (gpointer) "--name");
  g_ptr_array_add (argv, (gpointer) node_name (node));
  for (; *args != NULL; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  g_autoptr (GSubprocess) proc =
    g_subprocess_newv ((const char *const *) argv->pdata, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_assert_no_error (error);
  /* The daemons answer it from this thread's main context. */
  GAsyncResult *result = NULL;
  g_subprocess_communicate_utf8_async (proc, NULL, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  char *out = NULL;
  g_subprocess_communicate_utf8_finish (proc, result, &out, NULL, &error);
  g_object_unref (result);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  return out;
}

/* The permission hash the payee's receipt at @path signs, in hex. */
static char *
receipt_permission_hash (Fixture *f, Node *node, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) receipt = get_property (f, node, path, "org.tally.Payment1", "Receipt");
  gsize len;
  const guint8 *data = g_variant_get_fixed_array (receipt, &len, 1);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__Receipt) r = tally__receipt__unpack (NULL, env->body.len, env->body.data);
  g_assert_nonnull (r);
  return tally_hex_encode (r->permission_hash.data, r->permission_hash.len);
}

static guint64
history_time_of (Fixture *f, Node *node)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) history = call (f, node, "/org/tally/register", "org.tally.Register1",
                                       "GetHistory", g_variant_new ("(u)", 1), "(aa{sv})", &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) entries = g_variant_get_child_value (history, 0);
  g_autoptr (GVariant) entry = g_variant_get_child_value (entries, 0);
  guint64 t = 0;
  g_assert_true (g_variant_lookup (entry, "Time", "t", &t));
  return t;
}

static char *
format_unix (guint64 t, gboolean utc, const char *format)
{
  g_autoptr (GDateTime) dt =
    utc ? g_date_time_new_from_unix_utc ((gint64) t) : g_date_time_new_from_unix_local ((gint64) t);
  return g_date_time_format (dt, format);
}

static void
assert_contains (const char *haystack, const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("'%s' is not in '%s'", needle, haystack);
}

/* One payment from a payer certified as «Lumen "Cafe", Ltd»: bob's CSV
 * line is exact (local and UTC time, amount, currency, the payer's name
 * with its short id, quoted, counter, state, memo and receipt id), and
 * both sides' JSON carry the same receipt id, the one the receipt signs,
 * and the other side's certified name. */
static void
test_history_csv_and_json_carry_a_payment_for_bookkeeping (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const char *name = "Lumen \"Cafe\", Ltd";

  certify_named (f, &f->alice, 5000, 10000, name);
  certify_named (f, &f->bob, 5000, 0, "Bob's Bakery");
  register_agent (f, f->client, TRUE);
  g_autofree char *request = request_payment (f, 1250, "-1 kg, \"fresh\"", &error);
  g_assert_no_error (error);
  g_autofree char *payment = pay_bob (f);
  g_autofree char *payer_state = wait_final (f, &f->alice, payment);
  g_autofree char *payee_state = wait_final (f, &f->bob, request);
  g_assert_cmpstr (payee_state, ==, "done");

  g_autofree char *receipt_id = receipt_permission_hash (f, &f->bob, request);
  g_autofree char *alice_id =
    tally_register_get_id_hex (tally_daemon_get_register (f->alice.daemon));
  g_autofree char *alice_short = g_strndup (alice_id, 8);
  guint64 t = history_time_of (f, &f->bob);
  g_autofree char *local = format_unix (t, FALSE, "%Y-%m-%d %H:%M:%S");
  g_autofree char *utc = format_unix (t, TRUE, "%Y-%m-%dT%H:%M:%SZ");

  g_autofree char *csv = run_tallyctl (&f->bob, (const char *const[]){ "history", "--csv", NULL });
  g_autofree char *want = g_strdup_printf (
    "time,time_utc,kind,state,amount,currency,peer,peer_id,counter,memo,receipt_id\r\n"
    "%s,%s,received,acknowledged,12.50," TEST_CURRENCY ",\"Lumen \"\"Cafe\"\", Ltd (%s)\",%s,1,"
    "\"'-1 kg, \"\"fresh\"\"\",%s\r\n",
    local, utc, alice_short, alice_id, receipt_id);
  g_assert_cmpstr (csv, ==, want);

  g_autofree char *bob_json =
    run_tallyctl (&f->bob, (const char *const[]){ "--json", "history", NULL });
  g_autofree char *want_id = g_strdup_printf ("\"ReceiptId\":\"%s\"", receipt_id);
  g_autofree char *want_time = g_strdup_printf ("\"TimeUtc\":\"%s\"", utc);
  g_autofree char *want_peer =
    g_strdup_printf ("\"PeerLabel\":\"Lumen \\\"Cafe\\\", Ltd (%s)\"", alice_short);
  assert_contains (bob_json, want_id);
  assert_contains (bob_json, want_time);
  assert_contains (bob_json, want_peer);
  assert_contains (bob_json, "\"PeerName\":\"Lumen \\\"Cafe\\\", Ltd\"");
  assert_contains (bob_json, "\"Value\":\"12.50\"");
  assert_contains (bob_json, "\"Currency\":\"" TEST_CURRENCY "\"");
  assert_contains (bob_json, "\"Amount\":1250");
  assert_contains (bob_json, "\"Counter\":1");
  assert_contains (bob_json, "\"State\":\"acknowledged\"");

  /* The payer's side names the same receipt. */
  g_autofree char *alice_json =
    run_tallyctl (&f->alice, (const char *const[]){ "--json", "history", NULL });
  assert_contains (alice_json, want_id);
  assert_contains (alice_json, "\"Kind\":\"spent\"");
  assert_contains (alice_json, "\"PeerName\":\"Bob's Bakery\"");
  assert_contains (alice_json, "\"Value\":\"12.50\"");
}

/* Register1.DisplayName is the name the issuer certified, what a GUI shows
 * as the owner's name and payers see as PeerName; empty before. */
static void
test_register_display_name_is_the_certified_one (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) before =
    get_property (f, &f->bob, "/org/tally/register", "org.tally.Register1", "DisplayName");
  g_assert_cmpstr (g_variant_get_string (before, NULL), ==, "");
  certify_named (f, &f->bob, 2000, 0, "Bob's Bakery");
  g_autoptr (GVariant) after =
    get_property (f, &f->bob, "/org/tally/register", "org.tally.Register1", "DisplayName");
  g_assert_cmpstr (g_variant_get_string (after, NULL), ==, "Bob's Bakery");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/dbus/introspection-lists-interfaces", test_introspection_lists_interfaces);
  ADD ("/daemon/dbus/register-properties-read-back", test_register_properties_read_back);
  ADD ("/daemon/dbus/register-display-name-is-the-certified-one",
       test_register_display_name_is_the_certified_one);
  ADD ("/daemon/dbus/load-voucher-bad-blob-is-malformed", test_load_voucher_bad_blob_is_malformed);
  ADD ("/daemon/dbus/second-request-is-exists", test_second_request_is_exists);
  ADD ("/daemon/dbus/request-unknown-option-is-invalid-argument",
       test_request_unknown_option_is_invalid_argument);
  ADD ("/daemon/dbus/pay-confirmed-by-agent-moves-balances",
       test_pay_confirmed_by_agent_moves_balances);
  ADD ("/daemon/dbus/pay-without-agent-is-rejected", test_pay_without_agent_is_rejected);
  ADD ("/daemon/dbus/fresh-install/starts-and-takes-issuer-once",
       test_fresh_install_starts_and_takes_issuer_once);
  ADD ("/daemon/dbus/fresh-install/issuer-key-written-later-binds-register",
       test_issuer_key_written_later_binds_register);
  ADD ("/daemon/dbus/agent-refusal-rejects-payment", test_agent_refusal_rejects_payment);
  ADD ("/daemon/dbus/agent-dropped-when-owner-vanishes", test_agent_dropped_when_owner_vanishes);
  ADD ("/daemon/dbus/payer-without-request-gets-not-found",
       test_payer_without_request_gets_not_found);
  ADD ("/daemon/dbus/finished-payments-capped-at-64", test_finished_payments_capped);
  ADD ("/daemon/dbus/timeout-over-300-s-is-invalid-argument",
       test_timeout_over_cap_is_invalid_argument);
  ADD ("/daemon/dbus/pay-target-outside-allowed-targets-is-refused",
       test_pay_target_outside_allowed_targets_is_refused);
  ADD ("/daemon/dbus/pays-in-progress-capped-per-uid", test_pays_in_progress_capped_per_uid);
  ADD ("/daemon/dbus/default-agent-and-release", test_default_agent_and_release);
  g_test_add ("/daemon/dbus/finished-payment-leaves-bus-after-keep-time", Fixture, NULL,
              fixture_set_up_keep_one_second, test_finished_payment_leaves_bus_after_keep_time,
              fixture_tear_down);
  ADD ("/daemon/dbus/payee-memo-not-utf8-is-malformed-and-daemon-keeps-running",
       test_payee_memo_not_utf8_is_malformed);
  ADD ("/daemon/dbus/object-manager/get-managed-objects-lists-register-and-payments",
       test_get_managed_objects_lists_register_and_payments);
  ADD ("/daemon/dbus/object-manager/interfaces-added-on-new-payment",
       test_interfaces_added_on_new_payment);
  g_test_add ("/daemon/dbus/object-manager/interfaces-removed-when-payment-pruned", Fixture, NULL,
              fixture_set_up_keep_one_second, test_interfaces_removed_when_payment_pruned,
              fixture_tear_down);
  ADD ("/daemon/tallyctl/history-csv-and-json-carry-a-payment-for-bookkeeping",
       test_history_csv_and_json_carry_a_payment_for_bookkeeping);
#undef ADD
  g_test_add_func ("/daemon/dbus/error-table-covers-every-code", test_error_table_covers_every_code);

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  int rc = g_test_run ();
  g_test_dbus_down (test_bus);
  g_object_unref (test_bus);
  return rc;
}
