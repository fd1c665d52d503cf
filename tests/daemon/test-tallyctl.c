/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The built tallyctl against two daemons in this process on a private bus
 * (alice pays, bob is paid): its exit status for each kind of failure, and
 * the messages that say what to do.
 */
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "tally-daemon.h"
#include "tally-dbus-error.h"
#include "test-util.h"

#define TIMEOUT_SECONDS 20

/* The exit status tallyctl documents (daemon/tallyctl.h, docs/dbus-api.md). */
enum
{
  STATUS_OK = 0,
  STATUS_FAIL = 1,
  STATUS_INVALID_INPUT = 2,
  STATUS_DECLINED = 3,
  STATUS_TIMED_OUT = 4,
  STATUS_DAEMON_ABSENT = 5,
  STATUS_REFUSED_BY_PEER = 6,
};

typedef struct
{
  TallyDaemon *daemon;
  GDBusConnection *connection;
  char *listen;
} Node;

/* One private bus for the whole program (see test-dbus.c). */
static GTestDBus *test_bus;

typedef struct
{
  TestIssuer issuer;
  char *dir;
  GDBusConnection *client;
  Node alice;
  Node bob;
  const char *max_amount; /* [policy] max_amount of nodes started next, NULL: none */
} Fixture;

typedef struct
{
  int status;
  char *out;
  char *err;
  GBytes *out_bytes; /* stdout as it came, for binary output */
} Run;

static void
run_clear (Run *run)
{
  g_free (run->out);
  g_free (run->err);
  g_bytes_unref (run->out_bytes);
}

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

/* @issuer_key FALSE: a fresh install, no [register] issuer_key. */
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
  config->max_amount = g_strdup (f->max_amount);
  g_strfreev (config->targets.unix_dirs);
  config->targets.unix_dirs = g_strsplit (f->dir, ";", -1);
  node->listen = g_strdup (config->listen);

  node->daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  node->connection = connect_bus ();
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
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* A method call that lets the daemons run while it waits. */
static GVariant *
call (Fixture *f, Node *node, const char *method, GVariant *args, const char *reply_type)
{
  g_autoptr (GError) error = NULL;
  GAsyncResult *result = NULL;
  g_dbus_connection_call (f->client, node_name (node), "/org/tally/register", "org.tally.Register1",
                          method, args, G_VARIANT_TYPE (reply_type), G_DBUS_CALL_FLAGS_NONE, -1,
                          NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  GVariant *reply = g_dbus_connection_call_finish (f->client, result, &error);
  g_object_unref (result);
  g_assert_no_error (error);
  return reply;
}

static gint64
get_balance (Fixture *f, Node *node)
{
  g_autoptr (GError) error = NULL;
  GAsyncResult *result = NULL;
  g_dbus_connection_call (
    f->client, node_name (node), "/org/tally/register", "org.freedesktop.DBus.Properties", "Get",
    g_variant_new ("(ss)", "org.tally.Register1", "Balance"), G_VARIANT_TYPE ("(v)"),
    G_DBUS_CALL_FLAGS_NONE, -1, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (f->client, result, &error);
  g_object_unref (result);
  g_assert_no_error (error);
  g_autoptr (GVariant) value = NULL;
  g_variant_get (reply, "(v)", &value);
  return g_variant_get_int64 (value);
}

static void
send_blob (Fixture *f, Node *node, const char *method, GBytes *blob)
{
  g_autoptr (GVariant) reply =
    call (f, node, method,
          g_variant_new ("(@ay)", g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, blob, TRUE)),
          "()");
}

/* Certifies @node's register for payments up to @max_payment and loads
 * voucher 1 of @balance when not 0. */
static void
certify (Fixture *f, Node *node, gint64 max_payment, gint64 balance)
{
  TallyRegister *reg = tally_daemon_get_register (node->daemon);
  g_autoptr (GBytes) cert = test_issuer_certify (&f->issuer, reg, max_payment, 1);
  send_blob (f, node, "InstallCertificate", cert);
  if (balance > 0) {
    g_autoptr (GBytes) voucher = test_issuer_voucher (&f->issuer, reg, 1, balance);
    send_blob (f, node, "LoadVoucher", voucher);
  }
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  test_issuer_init (&f->issuer);
  if (data != NULL)
    f->issuer.currency = data; /* the registers' currency, e.g. "JPY" */
  tally_dbus_error_register ();
  f->dir = g_dir_make_tmp ("tally-test-tallyctl-XXXXXX", &error);
  g_assert_no_error (error);
  f->client = connect_bus ();
  node_start (f, &f->alice, "alice");
  node_start (f, &f->bob, "bob");
  certify (f, &f->alice, 5000, 10000);
  certify (f, &f->bob, 5000, 0);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  node_stop (&f->alice);
  node_stop (&f->bob);
  g_dbus_connection_close_sync (f->client, NULL, NULL);
  g_object_unref (f->client);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  test_rm_rf (f->dir);
  g_free (f->dir);
  test_issuer_clear (&f->issuer);
}

/* Without a controlling terminal, tallyctl pay reads its answer from stdin. */
static void
leave_terminal (gpointer user_data)
{
  setsid ();
}

/* Runs the built tallyctl with @args (NULL-terminated), @input on its
 * stdin, the test bus as both session and system bus. */
static void
run_tallyctl_bytes (Run *run, GBytes *input, const char *const *args)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tallyctl =
    g_build_filename (g_getenv ("TALLY_BUILD_ROOT"), "daemon", "tallyctl", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, tallyctl);
  for (; *args != NULL; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);

  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                               G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "DBUS_SYSTEM_BUS_ADDRESS",
                                g_test_dbus_get_bus_address (test_bus), TRUE);
  /* Its messages in UTF-8 whatever the test's locale. */
  g_subprocess_launcher_setenv (launcher, "LC_ALL", "C.UTF-8", TRUE);
  g_subprocess_launcher_set_child_setup (launcher, leave_terminal, NULL, NULL);
  g_autoptr (GSubprocess) proc =
    g_subprocess_launcher_spawnv (launcher, (const char *const *) argv->pdata, &error);
  g_assert_no_error (error);
  /* The daemons answer it from this thread's main context. */
  GAsyncResult *result = NULL;
  g_subprocess_communicate_async (proc, input, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_autoptr (GBytes) err = NULL;
  g_subprocess_communicate_finish (proc, result, &run->out_bytes, &err, &error);
  g_object_unref (result);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  run->status = g_subprocess_get_exit_status (proc);
  gsize len;
  const char *data = g_bytes_get_data (run->out_bytes, &len);
  run->out = g_strndup (data, len);
  data = g_bytes_get_data (err, &len);
  run->err = g_strndup (data, len);
  g_test_message ("tallyctl exited %d\nstdout: %s\nstderr: %s", run->status, run->out, run->err);
}

static void
run_tallyctl (Run *run, const char *input, const char *const *args)
{
  g_autoptr (GBytes) bytes = g_bytes_new (input ? input : "", input ? strlen (input) : 0);
  run_tallyctl_bytes (run, bytes, args);
}

static void
assert_contains (const char *haystack, const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("'%s' is not in '%s'", needle, haystack);
}

/* A request for 5.00 EUR waiting at bob. */
static void
bob_requests (Fixture *f)
{
  g_autoptr (GVariant) reply = call (f, &f->bob, "RequestPayment",
                                     g_variant_new ("(tsa{sv})", (guint64) 500, "", NULL), "(o)");
}

static char *
write_voucher (Fixture *f, Node *node, guint64 sequence, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = tally_daemon_get_register (node->daemon);
  g_autoptr (GBytes) voucher = test_issuer_voucher (&f->issuer, reg, sequence, amount);
  char *path = g_strdup_printf ("%s/voucher-%" G_GUINT64_FORMAT ".bin", f->dir, sequence);
  gsize len;
  const char *data = g_bytes_get_data (voucher, &len);
  g_assert_true (g_file_set_contents (path, data, (gssize) len, &error));
  g_assert_no_error (error);
  return path;
}

/* --- one test per exit status --- */

static void
test_success_is_0 (Fixture *f, gconstpointer data)
{
  Run run = { 0 };
  run_tallyctl (&run, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "balance", NULL });
  g_assert_cmpint (run.status, ==, STATUS_OK);
  g_assert_cmpstr (run.out, ==, "100.00 " TEST_CURRENCY "\n");
  run_clear (&run);
}

static void
test_other_failure_is_1 (Fixture *f, gconstpointer data)
{
  /* Voucher 1 is loaded already: VoucherReplay, none of the kinds above. */
  g_autofree char *voucher = write_voucher (f, &f->alice, 1, 10000);
  Run run = { 0 };
  run_tallyctl (&run, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "load", voucher, NULL });
  g_assert_cmpint (run.status, ==, STATUS_FAIL);
  assert_contains (run.err, "org.tally.Error.VoucherReplay");
  run_clear (&run);
}

static void
test_invalid_input_is_2 (Fixture *f, gconstpointer data)
{
  g_autofree char *garbage = g_build_filename (f->dir, "garbage.bin", NULL);
  g_autofree char *missing = g_build_filename (f->dir, "missing.bin", NULL);
  g_assert_true (g_file_set_contents (garbage, "not a voucher", -1, NULL));
  const char *name = node_name (&f->alice);
  const char *const *cases[] = {
    (const char *const[]){ "--name", name, "balance", "extra", NULL }, /* usage */
    (const char *const[]){ "--name", name, "frobnicate", NULL },       /* no such command */
    (const char *const[]){ "--name", name, "request", "1.2.3", NULL }, /* bad amount */
    (const char *const[]){ "--name", name, "load", missing, NULL },    /* unreadable file */
    (const char *const[]){ "--name", name, "load", garbage, NULL },    /* Malformed from tallyd */
    (const char *const[]){ "--name", name, "pay", "tally://pay?x", NULL }, /* bad request URI */
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    Run run = { 0 };
    run_tallyctl (&run, NULL, cases[i]);
    g_assert_cmpint (run.status, ==, STATUS_INVALID_INPUT);
    run_clear (&run);
  }
  /* Nothing was loaded. */
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
}

/* --- messages that help --- */

/* Loading voucher 1 again names it; an older one than the last loaded
 * says so; neither changes the balance. */
static void
test_voucher_loaded_twice_says_already_loaded (Fixture *f, gconstpointer data)
{
  g_autofree char *first = write_voucher (f, &f->alice, 1, 10000);
  Run run = { 0 };
  run_tallyctl (&run, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "load", first, NULL });
  g_assert_cmpint (run.status, ==, STATUS_FAIL);
  assert_contains (run.err, "org.tally.Error.VoucherReplay: voucher 1 was already loaded\n");
  run_clear (&run);

  g_autofree char *third = write_voucher (f, &f->alice, 3, 100);
  g_autofree char *second = write_voucher (f, &f->alice, 2, 100);
  Run load3 = { 0 };
  run_tallyctl (&load3, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "load", third, NULL });
  g_assert_cmpint (load3.status, ==, STATUS_OK);
  run_clear (&load3);
  Run load2 = { 0 };
  run_tallyctl (&load2, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "load", second, NULL });
  g_assert_cmpint (load2.status, ==, STATUS_FAIL);
  assert_contains (load2.err, "voucher 2 is older than voucher 3, the last one loaded");
  run_clear (&load2);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10100);
}

/* A payment above the payer's certified limit and a voucher past the
 * balance cap say so in amounts, not minor units; nothing moves. */
static void
test_limits_in_errors_read_as_amounts (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) reply = call (f, &f->bob, "RequestPayment",
                                     g_variant_new ("(tsa{sv})", (guint64) 6000, "", NULL), "(o)");
  Run pay = { 0 };
  run_tallyctl (
    &pay, NULL,
    (const char *const[]){ "--name", node_name (&f->alice), "pay", f->bob.listen, "--yes", NULL });
  g_assert_cmpint (pay.status, ==, STATUS_FAIL);
  assert_contains (pay.err, "org.tally.Error.LimitPayment: 60.00 " TEST_CURRENCY
                            " is above the certified limit of 50.00 " TEST_CURRENCY " per payment");
  run_clear (&pay);

  g_autofree char *voucher = write_voucher (f, &f->alice, 2, 95000);
  Run load = { 0 };
  run_tallyctl (&load, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "load", voucher, NULL });
  g_assert_cmpint (load.status, ==, STATUS_FAIL);
  assert_contains (load.err,
                   "org.tally.Error.LimitBalance: the balance would be 1050.00 " TEST_CURRENCY
                   ", above the certified cap of 1000.00 " TEST_CURRENCY);
  run_clear (&load);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
}

/* The same in yen, which has no minor unit (ISO 4217): the limit, the
 * balance and what tallyctl takes are whole yen, and "12.5" is refused
 * before anything is asked for.  The fixture certifies 5000 minor units
 * per payment and loads 10000: 5000 JPY and 10000 JPY. */
static void
test_jpy_amounts_have_no_decimals (Fixture *f, gconstpointer data)
{
  g_autoptr (GVariant) reply = call (f, &f->bob, "RequestPayment",
                                     g_variant_new ("(tsa{sv})", (guint64) 6000, "", NULL), "(o)");
  Run pay = { 0 };
  run_tallyctl (
    &pay, NULL,
    (const char *const[]){ "--name", node_name (&f->alice), "pay", f->bob.listen, "--yes", NULL });
  g_assert_cmpint (pay.status, ==, STATUS_FAIL);
  assert_contains (pay.err, "org.tally.Error.LimitPayment: 6000 JPY"
                            " is above the certified limit of 5000 JPY per payment");
  run_clear (&pay);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);

  Run balance = { 0 };
  run_tallyctl (&balance, NULL,
                (const char *const[]){ "--name", node_name (&f->alice), "balance", NULL });
  g_assert_cmpint (balance.status, ==, STATUS_OK);
  g_assert_cmpstr (balance.out, ==, "10000 JPY\n");
  run_clear (&balance);

  Run request = { 0 };
  run_tallyctl (&request, NULL,
                (const char *const[]){ "--name", node_name (&f->bob), "request", "12.5", NULL });
  g_assert_cmpint (request.status, ==, STATUS_INVALID_INPUT);
  assert_contains (request.err, "\"12.5\": JPY has no minor unit, write a whole number like 12");
  run_clear (&request);
}

/* tallyd reads [policy] max_amount in its register's currency once the
 * certificate names it: "2500.5" is no yen amount and keeps tallyd from
 * starting; "3000" is 3000 JPY, and the payer refuses a request above it,
 * in yen, before it signs anything. */
static void
test_jpy_max_amount_is_read_in_yen (Fixture *f, gconstpointer data)
{
  node_stop (&f->alice);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_assert_true (tally_config_load_data (config, "[policy]\nmax_amount=2500.5\n", &error));
  g_free (config->register_dir);
  config->register_dir = g_build_filename (f->dir, "alice", NULL);
  g_free (config->listen);
  config->listen = g_strdup_printf ("unix:%s/alice-again.sock", f->dir);
  TallyDaemon *refused = tally_daemon_new (config, &error);
  g_assert_null (refused);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  g_assert_cmpstr (error->message, ==,
                   "[policy] max_amount: \"2500.5\": JPY has no minor unit, write a whole number "
                   "like 12");

  f->max_amount = "3000";
  node_start (f, &f->alice, "alice");
  g_autoptr (GVariant) reply = call (f, &f->bob, "RequestPayment",
                                     g_variant_new ("(tsa{sv})", (guint64) 4000, "", NULL), "(o)");
  Run pay = { 0 };
  run_tallyctl (
    &pay, NULL,
    (const char *const[]){ "--name", node_name (&f->alice), "pay", f->bob.listen, "--yes", NULL });
  g_assert_cmpint (pay.status, ==, STATUS_FAIL);
  assert_contains (pay.err, "the request for 4000 JPY is above our limit of 3000 JPY per payment");
  run_clear (&pay);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
}

/* A payee does not ask for more than its own [policy] max_amount: a payer
 * would sign a payment that the payee's session then refuses. */
static void
test_request_above_own_max_amount_is_refused (Fixture *f, gconstpointer data)
{
  node_stop (&f->bob);
  f->max_amount = "30";
  node_start (f, &f->bob, "bob");
  Run request = { 0 };
  run_tallyctl (&request, NULL,
                (const char *const[]){ "--name", node_name (&f->bob), "request", "40", NULL });
  g_assert_cmpint (request.status, ==, STATUS_FAIL);
  assert_contains (request.err, "org.tally.Error.Policy: 40.00 " TEST_CURRENCY
                                " is above our limit of 30.00 " TEST_CURRENCY " per payment");
  run_clear (&request);
  g_assert_cmpint (get_balance (f, &f->bob), ==, 0);
}

/* --- - for standard input and output --- */

/* load - reads the voucher from stdin, export - writes the bundle to
 * stdout with its line on stderr and no file named "-"; --json with
 * export -, and defund -, are usage errors. */
static void
test_dash_is_stdin_and_stdout_for_files (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = tally_daemon_get_register (f->alice.daemon);
  g_autoptr (GBytes) voucher = test_issuer_voucher (&f->issuer, reg, 2, 250);
  const char *name = node_name (&f->alice);
  Run load = { 0 };
  run_tallyctl_bytes (&load, voucher, (const char *const[]){ "--name", name, "load", "-", NULL });
  g_assert_cmpint (load.status, ==, STATUS_OK);
  assert_contains (load.out, "Voucher loaded.");
  run_clear (&load);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10250);

  g_autofree char *cwd = g_get_current_dir ();
  g_assert_no_errno (chdir (f->dir));
  Run export = { 0 };
  run_tallyctl (&export, NULL, (const char *const[]){ "--name", name, "export", "-", NULL });
  g_assert_no_errno (chdir (cwd));
  g_assert_cmpint (export.status, ==, STATUS_OK);
  assert_contains (export.err, "Reconciliation bundle written to standard output (");
  gsize len;
  const guint8 *bundle = g_bytes_get_data (export.out_bytes, &len);
  g_assert_cmpuint (len, >, 0);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (bundle, len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (env);
  g_autofree char *dash = g_build_filename (f->dir, "-", NULL);
  g_assert_false (g_file_test (dash, G_FILE_TEST_EXISTS));
  run_clear (&export);

  Run json = { 0 };
  run_tallyctl (&json, NULL,
                (const char *const[]){ "--name", name, "--json", "export", "-", NULL });
  g_assert_cmpint (json.status, ==, STATUS_INVALID_INPUT);
  g_assert_cmpuint (g_bytes_get_size (json.out_bytes), ==, 0);
  run_clear (&json);

  /* The defund record never goes down a pipe: refused, register open. */
  Run defund = { 0 };
  run_tallyctl (&defund, NULL, (const char *const[]){ "--name", name, "defund", "-", NULL });
  g_assert_cmpint (defund.status, ==, STATUS_INVALID_INPUT);
  g_assert_cmpuint (g_bytes_get_size (defund.out_bytes), ==, 0);
  run_clear (&defund);
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10250);
}

/* The payer's user answers no at the prompt. */
static void
test_declined_is_3 (Fixture *f, gconstpointer data)
{
  bob_requests (f);
  Run run = { 0 };
  run_tallyctl (
    &run, "n\n",
    (const char *const[]){ "--name", node_name (&f->alice), "pay", f->bob.listen, NULL });
  g_assert_cmpint (run.status, ==, STATUS_DECLINED);
  assert_contains (run.err, "Confirm? [y/N]");
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
  run_clear (&run);
}

/* Nobody pays a request within its timeout. */
static void
test_timed_out_is_4 (Fixture *f, gconstpointer data)
{
  Run run = { 0 };
  run_tallyctl (&run, NULL,
                (const char *const[]){ "--name", node_name (&f->bob), "request", "5.00",
                                       "--timeout", "1", NULL });
  g_assert_cmpint (run.status, ==, STATUS_TIMED_OUT);
  assert_contains (run.err, "org.tally.Error.Timeout");
  run_clear (&run);
}

/* No tallyd owns the name: the session-bus message says to run it, the
 * system-bus one how to start the service. */
static void
test_daemon_absent_is_5 (Fixture *f, gconstpointer data)
{
  Run run = { 0 };
  run_tallyctl (&run, NULL, (const char *const[]){ "--name", "org.tally.Nobody", "balance", NULL });
  g_assert_cmpint (run.status, ==, STATUS_DAEMON_ABSENT);
  assert_contains (run.err, "tallyd is not running as org.tally.Nobody on the session bus "
                            "\u2014 run tallyd");
  run_clear (&run);

  Run sys = { 0 };
  run_tallyctl (&sys, NULL,
                (const char *const[]){ "--bus", "system", "--name", "org.tally.Nobody", "--json",
                                       "balance", NULL });
  g_assert_cmpint (sys.status, ==, STATUS_DAEMON_ABSENT);
  assert_contains (sys.out, "\"Error\":\"org.freedesktop.DBus.Error.NameHasNoOwner\"");
  assert_contains (sys.out, "on the system bus \u2014 start it with `systemctl start tallyd`");
  run_clear (&sys);
}

/* A register made without issuer_key: balance says what comes next, and
 * `tallyctl issuer` gives it its issuer once. */
static void
test_fresh_install_balance_says_what_comes_next (Fixture *f, gconstpointer data)
{
  Node carol = { 0 };
  node_start_with (f, &carol, "carol", FALSE);
  const char *name = node_name (&carol);
  g_autoptr (GBytes) key_set = test_issuer_key_set (&f->issuer);
  g_autofree char *path = g_build_filename (f->dir, "issuer-keys.bin", NULL);
  g_assert_true (g_file_set_contents (path, g_bytes_get_data (key_set, NULL),
                                      (gssize) g_bytes_get_size (key_set), NULL));

  Run fresh = { 0 };
  run_tallyctl (&fresh, NULL, (const char *const[]){ "--name", name, "balance", NULL });
  g_assert_cmpint (fresh.status, ==, STATUS_OK);
  assert_contains (fresh.out, "0.00 (no issuer yet: tallyctl issuer FILE");
  run_clear (&fresh);

  Run set = { 0 };
  run_tallyctl (&set, NULL, (const char *const[]){ "--name", name, "issuer", path, NULL });
  g_assert_cmpint (set.status, ==, STATUS_OK);
  assert_contains (set.out, "Issuer set.");
  assert_contains (set.out, "(no certificate yet: tallyctl key, then tallyctl certificate FILE)");
  run_clear (&set);

  Run again = { 0 };
  run_tallyctl (&again, NULL, (const char *const[]){ "--name", name, "issuer", path, NULL });
  g_assert_cmpint (again.status, ==, STATUS_FAIL);
  assert_contains (again.err, "org.tally.Error.Exists: the register already trusts issuer");
  run_clear (&again);
  node_stop (&carol);
}

/* --- a CLI that fits its neighbours --- */

static void
expect_run (const char *const *args, int status, const char *out)
{
  Run run = { 0 };
  run_tallyctl (&run, NULL, args);
  g_assert_cmpint (run.status, ==, status);
  if (out != NULL)
    g_assert_cmpstr (run.out, ==, out);
  run_clear (&run);
}

static void
expect_usage (const char *const *args, const char *err)
{
  Run run = { 0 };
  run_tallyctl (&run, NULL, args);
  g_assert_cmpint (run.status, ==, STATUS_INVALID_INPUT);
  g_assert_null (run.out);
  assert_contains (run.err, err);
  run_clear (&run);
}

static void
test_global_options_work_after_the_command (Fixture *f, gconstpointer data)
{
  const char *alice = node_name (&f->alice);
  Run json = { 0 };
  run_tallyctl (&json, NULL, (const char *const[]){ "balance", "--name", alice, "--json", NULL });
  g_assert_cmpint (json.status, ==, STATUS_OK);
  assert_contains (json.out, "\"Formatted\":\"100.00 EUR\"");
  run_clear (&json);
  expect_run ((const char *const[]){ "--name", "org.tally.Nobody", "balance", "-n", alice, NULL },
              STATUS_OK, "100.00 EUR\n");
  /* After the command its own short options win: history -n is --limit. */
  Run limited = { 0 };
  run_tallyctl (&limited, NULL,
                (const char *const[]){ "--name", alice, "history", "-n", "1", "-t", NULL });
  g_assert_cmpint (limited.status, ==, STATUS_OK);
  g_auto (GStrv) lines = g_strsplit (g_strchomp (limited.out), "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 1);
  run_clear (&limited);
}

static void
test_terse_and_fields_print_values_for_scripts (Fixture *f, gconstpointer data)
{
  const char *alice = node_name (&f->alice);
  expect_run ((const char *const[]){ "--name", alice, "-t", "-f", "balance,Currency", "info", NULL },
              STATUS_OK, "100.00 EUR\nEUR\n");
  expect_run ((const char *const[]){ "--name", alice, "balance", "--terse", NULL }, STATUS_OK,
              "100.00 EUR\n");
  expect_run ((const char *const[]){ "--name", alice, "--json", "-f", "Balance", "info", NULL },
              STATUS_OK, "{\"Balance\":10000}\n");
  expect_run ((const char *const[]){ "--name", alice, "-t", "-f", "kind,state,amount,number",
                                     "history", NULL },
              STATUS_OK, "load:acknowledged:100.00 EUR:1\n");
  expect_run ((const char *const[]){ "--name", alice, "-f", "kind,amount", "history", NULL },
              STATUS_OK, "kind  amount\nload  100.00 EUR\n");

  /* What cannot be shaped so is refused before anything happens. */
  Run bad = { 0 };
  run_tallyctl (&bad, NULL, (const char *const[]){ "--name", alice, "-f", "nope", "info", NULL });
  g_assert_cmpint (bad.status, ==, STATUS_INVALID_INPUT);
  assert_contains (bad.err, "no field \"nope\" here; the fields are RegisterId, PublicKey");
  run_clear (&bad);
  expect_usage ((const char *const[]){ "--name", alice, "--json", "--terse", "balance", NULL },
                "--json and --terse: choose one");
  expect_usage ((const char *const[]){ "--name", alice, "--terse", "request", "1.00", NULL },
                "--terse applies to info, balance, key and history");
  expect_usage ((const char *const[]){ "--name", alice, "-f", "kind", "history", "--csv", NULL },
                "--terse and --fields shape the table, not --csv or --json");
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
}

static void
test_info_says_durations_in_words (Fixture *f, gconstpointer data)
{
  expect_run ((const char *const[]){ "--name", node_name (&f->alice), "-t", "-f",
                                     "MaxOfflineSeconds", "info", NULL },
              STATUS_OK, "3 days\n");
}

/* Bob has no request: his daemon refuses the payer with NotFound. */
static void
test_refused_by_peer_is_6 (Fixture *f, gconstpointer data)
{
  Run run = { 0 };
  run_tallyctl (
    &run, NULL,
    (const char *const[]){ "--name", node_name (&f->alice), "pay", f->bob.listen, "--yes", NULL });
  g_assert_cmpint (run.status, ==, STATUS_REFUSED_BY_PEER);
  assert_contains (run.err, "org.tally.Error.NotFound");
  g_assert_cmpint (get_balance (f, &f->alice), ==, 10000);
  run_clear (&run);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/tallyctl/exit-status/success-is-0", test_success_is_0);
  ADD ("/daemon/tallyctl/exit-status/other-failure-is-1", test_other_failure_is_1);
  ADD ("/daemon/tallyctl/exit-status/invalid-input-is-2", test_invalid_input_is_2);
  ADD ("/daemon/tallyctl/exit-status/declined-is-3", test_declined_is_3);
  ADD ("/daemon/tallyctl/exit-status/timed-out-is-4", test_timed_out_is_4);
  ADD ("/daemon/tallyctl/exit-status/daemon-absent-is-5-and-says-how-to-start-it",
       test_daemon_absent_is_5);
  ADD ("/daemon/tallyctl/exit-status/refused-by-peer-is-6", test_refused_by_peer_is_6);
  ADD ("/daemon/tallyctl/cli/global-options-work-after-the-command",
       test_global_options_work_after_the_command);
  ADD ("/daemon/tallyctl/cli/terse-and-fields-print-values-for-scripts",
       test_terse_and_fields_print_values_for_scripts);
  ADD ("/daemon/tallyctl/cli/info-says-durations-in-words", test_info_says_durations_in_words);
  ADD ("/daemon/tallyctl/fresh-install/balance-says-what-comes-next",
       test_fresh_install_balance_says_what_comes_next);
  ADD ("/daemon/tallyctl/message/voucher-loaded-twice-says-already-loaded",
       test_voucher_loaded_twice_says_already_loaded);
  ADD ("/daemon/tallyctl/message/limits-in-errors-read-as-amounts",
       test_limits_in_errors_read_as_amounts);
  g_test_add ("/daemon/tallyctl/message/jpy-amounts-have-no-decimals", Fixture, "JPY",
              fixture_set_up, test_jpy_amounts_have_no_decimals, fixture_tear_down);
  ADD ("/daemon/tallyctl/message/request-above-own-max-amount-is-refused",
       test_request_above_own_max_amount_is_refused);
  g_test_add ("/daemon/tallyctl/message/jpy-max-amount-is-read-in-yen", Fixture, "JPY",
              fixture_set_up, test_jpy_max_amount_is_read_in_yen, fixture_tear_down);
  ADD ("/daemon/tallyctl/dash-is-stdin-and-stdout-for-files",
       test_dash_is_stdin_and_stdout_for_files);
#undef ADD

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  int rc = g_test_run ();
  g_test_dbus_down (test_bus);
  g_object_unref (test_bus);
  return rc;
}
