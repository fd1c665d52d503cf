/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The authorization table of daemon/tally-dbus-auth.c against the
 * introspection data and daemon/org.tally.Tally.policy, and the
 * authorizing skeletons on a private bus without polkit
 * ([dbus] authorization=none).  tests/daemon/test-system-bus.sh asks the
 * real polkitd.
 */
#include <string.h>
#include <unistd.h>

#include "tally-dbus-auth.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"

#define PAYMENT_PATH "/org/tally/payment/1"

static GTestDBus *test_bus;

static GDBusInterfaceInfo *
served_interface (gsize i)
{
  switch (i) {
  case 0: return tally_dbus_register1_interface_info ();
  case 1: return tally_dbus_payment1_interface_info ();
  case 2: return tally_dbus_agent_manager1_interface_info ();
  default: return NULL;
  }
}

static char *
read_policy (void)
{
  const char *src = g_getenv ("TALLY_SOURCE_ROOT");
  g_autofree char *path =
    g_build_filename (src ? src : "..", "daemon", "org.tally.Tally.policy", NULL);
  g_autoptr (GError) error = NULL;
  char *text = NULL;
  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  return text;
}

static void
assert_action_in_policy (const char *policy, const char *action)
{
  g_autofree char *element = g_strdup_printf ("<action id=\"%s\">", action);
  g_test_message ("action %s", action);
  g_assert_nonnull (strstr (policy, element));
}

/* No method reaches a handler without a row, and no row names an action
 * polkit does not know. */
static void
test_every_method_and_property_read_has_a_policy_action (void)
{
  g_autofree char *policy = read_policy ();
  GDBusInterfaceInfo *info;

  for (gsize i = 0; (info = served_interface (i)) != NULL; i++) {
    for (GDBusMethodInfo **m = info->methods; m != NULL && *m != NULL; m++) {
      g_test_message ("%s.%s", info->name, (*m)->name);
      const char *action = tally_dbus_auth_lookup (info->name, (*m)->name, NULL);
      g_assert_nonnull (action);
      assert_action_in_policy (policy, action);
    }
    if (info->properties != NULL && info->properties[0] != NULL) {
      const char *action = tally_dbus_auth_lookup (info->name, NULL, NULL);
      g_assert_cmpstr (action, ==, TALLY_ACTION_READ);
      assert_action_in_policy (policy, action);
    }
  }
  g_assert_null (tally_dbus_auth_lookup ("org.tally.Register1", "Frobnicate", NULL));
  g_assert_null (tally_dbus_auth_lookup ("org.tally.Agent1", "ConfirmPayment", NULL));
}

/* GetManagedObjects returns every property of the register and the
 * payments: polkit decides it as it decides Properties.GetAll. */
static void
test_get_managed_objects_is_authorized_as_a_property_read (void)
{
  g_assert_cmpstr (
    tally_dbus_auth_lookup ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL), ==,
    tally_dbus_auth_lookup ("org.tally.Payment1", NULL, NULL));
  g_assert_cmpstr (
    tally_dbus_auth_lookup ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL), ==,
    TALLY_ACTION_READ);
}

/* The security review's list: each of these is its own action, none is
 * the read action a stall's service is granted. */
static void
test_money_moving_methods_need_their_own_actions (void)
{
  static const struct
  {
    const char *method;
    const char *action;
  } rows[] = {
    { "RequestPayment", TALLY_ACTION_REQUEST_PAYMENT },
    { "Pay", TALLY_ACTION_PAY },
    { "LoadVoucher", TALLY_ACTION_LOAD_VOUCHER },
    { "Topup", TALLY_ACTION_TOPUP },
    { "Defund", TALLY_ACTION_DEFUND },
    { "ApplyResult", TALLY_ACTION_RECONCILE },
    { "InstallCertificate", TALLY_ACTION_RECONCILE },
    { "ExportBundle", TALLY_ACTION_RECONCILE },
    { "GetHistory", TALLY_ACTION_READ },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (rows); i++) {
    const char *owner = "unset";
    g_assert_cmpstr (tally_dbus_auth_lookup ("org.tally.Register1", rows[i].method, &owner), ==,
                     rows[i].action);
    g_assert_null (owner);
  }

  const char *owner = NULL;
  g_assert_cmpstr (tally_dbus_auth_lookup ("org.tally.Payment1", "Cancel", &owner), ==,
                   TALLY_ACTION_ADMIN);
  g_assert_cmpstr (owner, ==, "caller-uid");
  g_autoptr (GTypeClass) klass = g_type_class_ref (TALLY_DBUS_TYPE_PAYMENT1_SKELETON);
  g_assert_nonnull (g_object_class_find_property (G_OBJECT_CLASS (klass), owner));
}

/* --- the skeletons on a private bus --- */

typedef struct
{
  GDBusConnection *server;
  GDBusConnection *client;
  TallyDBusAuth *auth;
  TallyDBusPayment1 *payment;
  guint cancels; /* handle-cancel ran */
} Fixture;

static GDBusConnection *
connect_bus (void)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *c = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

static gboolean
on_handle_cancel (TallyDBusPayment1 *skeleton,
                  GDBusMethodInvocation *invocation,
                  gpointer user_data)
{
  Fixture *f = user_data;
  f->cancels++;
  tally_dbus_payment1_complete_cancel (skeleton, invocation);
  return TRUE;
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  tally_dbus_error_register ();
  f->server = connect_bus ();
  f->client = connect_bus ();
  f->auth = tally_dbus_auth_new (TALLY_AUTHORIZATION_NONE, &error);
  g_assert_no_error (error);
  f->payment = tally_dbus_auth_skeleton_new (f->auth, TALLY_DBUS_TYPE_PAYMENT1_SKELETON);
  g_assert_true (TALLY_DBUS_IS_PAYMENT1_SKELETON (f->payment));
  tally_dbus_payment1_set_state (f->payment, "waiting");
  g_signal_connect (f->payment, "handle-cancel", G_CALLBACK (on_handle_cancel), f);
  g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (f->payment), f->server, PAYMENT_PATH,
                                    &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (f->payment));
  g_object_unref (f->payment);
  tally_dbus_auth_free (f->auth);
  g_object_unref (f->client);
  g_object_unref (f->server);
}

typedef struct
{
  GVariant *reply;
  GError *error;
  gboolean done;
} Reply;

static void
on_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Reply *r = user_data;
  r->reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &r->error);
  r->done = TRUE;
}

static GVariant *
call_sync (Fixture *f, const char *iface, const char *method, GVariant *args, GError **error)
{
  Reply r = { 0 };
  g_dbus_connection_call (f->client, g_dbus_connection_get_unique_name (f->server), PAYMENT_PATH,
                          iface, method, args, NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, on_reply,
                          &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  if (r.error != NULL)
    g_propagate_error (error, r.error);
  return r.reply;
}

/* Properties.Get and GetAll go through the table to the skeleton. */
static void
test_property_reads_pass_without_polkit (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  tally_dbus_payment1_set_caller_uid (f->payment, 4242);

  g_autoptr (GVariant) one =
    call_sync (f, "org.freedesktop.DBus.Properties", "Get",
               g_variant_new ("(ss)", "org.tally.Payment1", "CallerUid"), &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) uid = NULL;
  g_variant_get (one, "(v)", &uid);
  g_assert_cmpuint (g_variant_get_uint32 (uid), ==, 4242);

  g_autoptr (GVariant) all = call_sync (f, "org.freedesktop.DBus.Properties", "GetAll",
                                        g_variant_new ("(s)", "org.tally.Payment1"), &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) dict = g_variant_get_child_value (all, 0);
  const char *state = NULL;
  g_assert_true (g_variant_lookup (dict, "State", "&s", &state));
  g_assert_cmpstr (state, ==, "waiting");
  g_assert_true (g_variant_lookup (dict, "CallerUid", "u", NULL));

  /* Read-only stays read-only. */
  g_autoptr (GVariant) set = call_sync (
    f, "org.freedesktop.DBus.Properties", "Set",
    g_variant_new ("(ssv)", "org.tally.Payment1", "State", g_variant_new_string ("done")), &error);
  g_assert_null (set);
  g_assert_nonnull (error);
  g_assert_cmpstr (tally_dbus_payment1_get_state (f->payment), ==, "waiting");
}

static void
test_owner_cancels_own_payment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  tally_dbus_payment1_set_caller_uid (f->payment, getuid ());

  g_autoptr (GVariant) reply = call_sync (f, "org.tally.Payment1", "Cancel", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f->cancels, ==, 1);
}

/* Without polkit only root stands in for the admin action. */
static void
test_another_uids_cancel_needs_root_without_polkit (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  tally_dbus_payment1_set_caller_uid (f->payment, getuid () + 1);

  g_autoptr (GVariant) reply = call_sync (f, "org.tally.Payment1", "Cancel", NULL, &error);
  if (getuid () == 0) {
    g_assert_no_error (error);
    g_assert_cmpuint (f->cancels, ==, 1);
    return;
  }
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_AUTHORIZED);
  g_assert_cmpuint (f->cancels, ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/daemon/auth/every-method-and-property-read-has-a-policy-action",
                   test_every_method_and_property_read_has_a_policy_action);
  g_test_add_func ("/daemon/auth/get-managed-objects-is-authorized-as-a-property-read",
                   test_get_managed_objects_is_authorized_as_a_property_read);
  g_test_add_func ("/daemon/auth/money-moving-methods-need-their-own-actions",
                   test_money_moving_methods_need_their_own_actions);
#define ADD(name, func) g_test_add (name, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("/daemon/auth/property-reads-pass-without-polkit", test_property_reads_pass_without_polkit);
  ADD ("/daemon/auth/owner-cancels-own-payment", test_owner_cancels_own_payment);
  ADD ("/daemon/auth/another-uids-cancel-needs-root-without-polkit",
       test_another_uids_cancel_needs_root_without_polkit);
#undef ADD

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  int rc = g_test_run ();
  g_test_dbus_down (test_bus);
  g_object_unref (test_bus);
  return rc;
}
