/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tallyd's configuration file and the command-line surface of tallyd and
 * tallyctl that scripts rely on. */
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally-config.h"

#define ISSUER_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void
test_defaults (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_assert_cmpint (c->bus_type, ==, G_BUS_TYPE_SESSION);
  g_assert_cmpstr (c->bus_name, ==, "org.tally.Tally");
  g_assert_true (g_str_has_prefix (c->listen, "unix:"));
  g_assert_cmpuint (c->timeout_seconds, ==, 60);
  g_assert_cmpuint (c->keep_finished_seconds, ==, 600);
  g_assert_cmpuint (c->max_open_requests, ==, 1);
  g_assert_false (c->has_issuer_key);
  g_assert_cmpuint (c->policy.max_revocation_age, ==, 0);
  g_assert_cmpint (c->policy.max_amount, ==, 0);
  g_assert_cmpuint (c->request_timeout_seconds, ==, 120);
}

static void
test_reads_every_key (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_autoptr (GError) error = NULL;
  const char *text = "[register]\n"
                     "dir=/var/lib/tally\n"
                     "issuer_key=" ISSUER_HEX "\n"
                     "[dbus]\n"
                     "bus=system\n"
                     "name=org.tally.Alice\n"
                     "[transport]\n"
                     "listen=tcp:127.0.0.1:7000\n"
                     "[policy]\n"
                     "max_revocation_age_hours=48\n"
                     "max_amount=20.50\n"
                     "[payment]\n"
                     "timeout_seconds=30\n"
                     "keep_finished_seconds=5\n"
                     "max_open_requests=3\n";

  g_assert_true (tally_config_load_data (c, text, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (c->register_dir, ==, "/var/lib/tally");
  g_assert_true (c->has_issuer_key);
  g_assert_cmpuint (c->issuer_key[0], ==, 0x00);
  g_assert_cmpuint (c->issuer_key[1], ==, 0x11);
  g_assert_cmpuint (c->issuer_key[31], ==, 0xff);
  g_assert_cmpint (c->bus_type, ==, G_BUS_TYPE_SYSTEM);
  g_assert_cmpstr (c->bus_name, ==, "org.tally.Alice");
  g_assert_cmpstr (c->listen, ==, "tcp:127.0.0.1:7000");
  g_assert_cmpuint (c->policy.max_revocation_age, ==, 48 * 3600);
  g_assert_cmpint (c->policy.max_amount, ==, 2050);
  g_assert_cmpuint (c->timeout_seconds, ==, 30);
  g_assert_cmpuint (c->keep_finished_seconds, ==, 5);
  g_assert_cmpuint (c->max_open_requests, ==, 3);
}

typedef struct
{
  const char *text;
  const char *names; /* what the message must contain */
} BadConfig;

static const BadConfig bad_configs[] = {
  { "[dbus]\nbus=tcp\n", "[dbus] bus" },
  { "[dbus]\nname=:1.5\n", "[dbus] name" },
  { "[dbus]\nname=\n", "[dbus] name" },
  { "[dbus]\nbus=system\nauthorization=yes\n", "[dbus] authorization" },
  { "[dbus]\nauthorization=polkit\n", "[dbus] authorization" },
  { "[dbus]\nbus=session\nauthorization=polkit\n", "[dbus] authorization" },
  { "[register]\nissuer_key=abcd\n", "[register] issuer_key" },
  { "[transport]\nlisten=/tmp/sock\n", "[transport] listen" },
  { "[transport]\nlisten_address=unix:/tmp/sock\n", "[transport] listen_address" },
  { "[policy]\nmax_amount=-3\n", "[policy] max_amount" },
  { "[policy]\nmax_amount=1.23456\n", "[policy] max_amount" },
  { "[policy]\nmax_revocation_age_hours=two\n", "[policy] max_revocation_age_hours" },
  { "[payment]\ntimeout_seconds=0\n", "[payment] timeout_seconds" },
  { "[payment]\nkeep_finished_seconds=0\n", "[payment] keep_finished_seconds" },
  { "[payment]\nkeep_finished_seconds=3601\n", "[payment] keep_finished_seconds" },
  { "[payment]\nmax_open_requests=0\n", "[payment] max_open_requests" },
  { "[payment]\nmax_open_requests=17\n", "[payment] max_open_requests" },
  { "[paymnet]\ntimeout_seconds=5\n", "[paymnet] timeout_seconds" },
  { "[transport]\nhello_timeout_seconds=0\n", "[transport] hello_timeout_seconds" },
  { "[transport]\nhello_timeout_seconds=61\n", "[transport] hello_timeout_seconds" },
  { "[transport]\nmax_connections=0\n", "[transport] max_connections" },
  { "[transport]\nmax_connections=4097\n", "[transport] max_connections" },
  { "[transport]\nmax_connections=many\n", "[transport] max_connections" },
  { "[issuer]\nrequest_timeout_seconds=0\n", "[issuer] request_timeout_seconds" },
  { "[issuer]\nrequest_timeout_seconds=3601\n", "[issuer] request_timeout_seconds" },
};

static void
test_invalid_value_names_group_and_key (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_configs); i++) {
    g_autoptr (TallyConfig) c = tally_config_new ();
    g_autoptr (GError) error = NULL;
    g_test_message ("config: %s", bad_configs[i].text);
    g_assert_false (tally_config_load_data (c, bad_configs[i].text, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, bad_configs[i].names));
  }
}

/* max_amount is in the register's currency, which a fresh register does
 * not know yet: the text is kept for tallyd to read with the certified
 * currency (2000 JPY, 20.000 KWD); "0" is none. */
static void
test_max_amount_is_kept_for_the_register_currency (void)
{
  static const char *const texts[] = { "2000", "20.000", "20.5", "1.2345" };
  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++) {
    g_autoptr (TallyConfig) c = tally_config_new ();
    g_autoptr (GError) error = NULL;
    g_autofree char *text = g_strdup_printf ("[policy]\nmax_amount=%s\n", texts[i]);
    g_assert_true (tally_config_load_data (c, text, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (c->max_amount, ==, texts[i]);
  }
  g_autoptr (TallyConfig) none = tally_config_new ();
  g_assert_true (tally_config_load_data (none, "[policy]\nmax_amount=0\n", NULL));
  g_assert_null (none->max_amount);
  g_assert_cmpint (none->policy.max_amount, ==, 0);
}

/* polkit only on the system bus, where it is the default. */
static void
test_authorization_defaults_to_polkit_on_system_bus (void)
{
  static const struct
  {
    const char *text;
    TallyAuthorization expected;
  } cases[] = {
    { "", TALLY_AUTHORIZATION_NONE },
    { "[dbus]\nbus=session\n", TALLY_AUTHORIZATION_NONE },
    { "[dbus]\nbus=system\n", TALLY_AUTHORIZATION_POLKIT },
    { "[dbus]\nbus=system\nauthorization=polkit\n", TALLY_AUTHORIZATION_POLKIT },
    { "[dbus]\nbus=system\nauthorization=none\n", TALLY_AUTHORIZATION_NONE },
    { "[dbus]\nbus=session\nauthorization=none\n", TALLY_AUTHORIZATION_NONE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (TallyConfig) c = tally_config_new ();
    g_autoptr (GError) error = NULL;
    g_test_message ("config: %s", cases[i].text);
    g_assert_true (tally_config_load_data (c, cases[i].text, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (tally_authorization_to_string (c->authorization), ==,
                     tally_authorization_to_string (cases[i].expected));
  }
}

/* The limits a crowd meets: 5 s for a Hello and 64 connections unless
 * the file says otherwise. */
static void
test_transport_limits_default_and_read (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_autoptr (GError) error = NULL;
  g_assert_cmpuint (c->hello_timeout_seconds, ==, 5);
  g_assert_cmpuint (c->max_connections, ==, 64);
  g_assert_true (tally_config_load_data (
    c, "[transport]\nhello_timeout_seconds=60\nmax_connections=4096\n", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c->hello_timeout_seconds, ==, 60);
  g_assert_cmpuint (c->max_connections, ==, 4096);
}

static void
test_missing_file_is_not_found (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_config_load_file (c, "/nonexistent/tally.conf", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
}

/* --- the programs --- */

static char *
program (const char *name)
{
  const char *root = g_getenv ("TALLY_BUILD_ROOT");
  if (root == NULL)
    return NULL;
  return g_build_filename (root, "daemon", name, NULL);
}

/* Runs @argv; returns the exit status, output in *out and *err. */
static int
run (const char *const *argv, char **out, char **err)
{
  g_autoptr (GError) error = NULL;
  int status;
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &status,
                &error);
  g_assert_no_error (error);
  g_assert_true (WIFEXITED (status));
  return WEXITSTATUS (status);
}

static void
test_tallyd_invalid_config_exits_1 (void)
{
  g_autofree char *tallyd = program ("tallyd");
  if (tallyd == NULL) {
    g_test_skip ("TALLY_BUILD_ROOT is not set");
    return;
  }
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("tallyd-XXXXXX.conf", &path, &error);
  g_assert_no_error (error);
  close (fd);
  g_assert_true (g_file_set_contents (path, "[dbus]\nbus=carrier-pigeon\n", -1, &error));

  g_autofree char *out = NULL, *err = NULL;
  const char *argv[] = { tallyd, "--config", path, NULL };
  g_assert_cmpint (run (argv, &out, &err), ==, 1);
  g_assert_nonnull (strstr (err, "[dbus] bus"));
  g_unlink (path);
}

/* [issuer] revocations_max_age_seconds: a day unless set, 0 switches it
 * off, and an age below 10 s or above a week is refused by name. */
static void
test_revocations_max_age_is_read_and_bounded (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_autoptr (GError) error = NULL;
  g_assert_cmpuint (c->revocations_max_age_seconds, ==, 86400);
  g_assert_true (tally_config_load_data (c, "[issuer]\nrevocations_max_age_seconds=600\n", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c->revocations_max_age_seconds, ==, 600);
  g_assert_true (tally_config_load_data (c, "[issuer]\nrevocations_max_age_seconds=0\n", &error));
  g_assert_cmpuint (c->revocations_max_age_seconds, ==, 0);
  const char *bad[] = { "5", "604801", "-1", "soon" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (TallyConfig) b = tally_config_new ();
    g_autofree char *text = g_strdup_printf ("[issuer]\nrevocations_max_age_seconds=%s\n", bad[i]);
    g_assert_false (tally_config_load_data (b, text, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "[issuer] revocations_max_age_seconds"));
    g_assert_cmpuint (b->revocations_max_age_seconds, ==, 86400);
    g_clear_error (&error);
  }
}

static void
test_tallyd_help_documents_keys (void)
{
  g_autofree char *tallyd = program ("tallyd");
  if (tallyd == NULL) {
    g_test_skip ("TALLY_BUILD_ROOT is not set");
    return;
  }
  g_autofree char *out = NULL, *err = NULL;
  const char *argv[] = { tallyd, "--help", NULL };
  g_assert_cmpint (run (argv, &out, &err), ==, 0);
  for (const char *const *k =
         (const char *const[]){
           "issuer_key=", "bus=", "authorization=", "listen=", "max_revocation_age_hours=",
           "max_amount=", "timeout_seconds=", "--config", NULL };
       *k != NULL; k++)
    g_assert_nonnull (strstr (out, *k));
}

static void
test_tallyctl_usage_errors_exit_2 (void)
{
  g_autofree char *tallyctl = program ("tallyctl");
  if (tallyctl == NULL) {
    g_test_skip ("TALLY_BUILD_ROOT is not set");
    return;
  }
  g_autofree char *out = NULL, *err = NULL;
  const char *unknown[] = { tallyctl, "frobnicate", NULL };
  g_assert_cmpint (run (unknown, &out, &err), ==, 2);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  const char *none[] = { tallyctl, NULL };
  g_assert_cmpint (run (none, &out, &err), ==, 2);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  const char *bad_bus[] = { tallyctl, "--bus", "carrier", "info", NULL };
  g_assert_cmpint (run (bad_bus, &out, &err), ==, 2);
}

static void
test_tallyctl_help_lists_commands (void)
{
  g_autofree char *tallyctl = program ("tallyctl");
  if (tallyctl == NULL) {
    g_test_skip ("TALLY_BUILD_ROOT is not set");
    return;
  }
  g_autofree char *out = NULL, *err = NULL;
  const char *argv[] = { tallyctl, "--help", NULL };
  g_assert_cmpint (run (argv, &out, &err), ==, 0);
  for (const char *const *c = (const char *const[]){ "info", "balance", "request AMOUNT",
                                                      "pay ADDRESS", "history", "load FILE",
                                                      "certificate FILE", "export FILE",
                                                      "apply FILE", "defund FILE", "key", NULL };
       *c != NULL; c++)
    g_assert_nonnull (strstr (out, *c));

  /* A command's own --help needs no running daemon. */
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  const char *pay_help[] = { tallyctl, "pay", "--help", NULL };
  g_assert_cmpint (run (pay_help, &out, &err), ==, 0);
  g_assert_nonnull (strstr (out, "--yes"));
}

static void
expect_target (const TallyPayTargets *t, const char *address, gint code)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = tally_pay_targets_allow (t, address, &error);
  if (code == 0) {
    g_assert_no_error (error);
    g_assert_true (ok);
  } else {
    g_assert_false (ok);
    g_assert_error (error, TALLY_ERROR, code);
  }
}

static void
test_pay_targets_default_is_ble_and_run_tally (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  expect_target (&c->targets, "ble", 0);
  expect_target (&c->targets, "ble:0a1b2c3d", 0);
  expect_target (&c->targets, "unix:/run/tally/bob.sock", 0);
  expect_target (&c->targets, "unix:/run/tally/sub/bob.sock", 0);
  expect_target (&c->targets, "unix:/run/tallyX/bob.sock", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "unix:/run/tally", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "unix:/run/dbus/system_bus_socket", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "unix:/run/tally/../dbus/system_bus_socket",
                 TALLY_ERROR_INVALID_ARGUMENT);
  expect_target (&c->targets, "unix:/run/tally/./x", TALLY_ERROR_INVALID_ARGUMENT);
  expect_target (&c->targets, "unix:/run//tally/x", TALLY_ERROR_INVALID_ARGUMENT);
  expect_target (&c->targets, "unix:run/tally/x", TALLY_ERROR_INVALID_ARGUMENT);
  expect_target (&c->targets, "tcp:127.0.0.1:7000", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "tcp:192.0.2.1:22", TALLY_ERROR_POLICY);
}

static void
test_pay_targets_read_from_config (void)
{
  g_autoptr (TallyConfig) c = tally_config_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_config_load_data (
    c, "[payment]\nallowed_targets=unix:/srv/stalls/;tcp:loopback\n", &error));
  g_assert_no_error (error);
  expect_target (&c->targets, "ble", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "unix:/srv/stalls/a.sock", 0);
  expect_target (&c->targets, "unix:/run/tally/a.sock", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "tcp:127.0.0.1:7000", 0);
  expect_target (&c->targets, "tcp:127.8.9.10:7000", 0);
  expect_target (&c->targets, "tcp:[::1]:7000", 0);
  expect_target (&c->targets, "tcp:::1:7000", 0);
  expect_target (&c->targets, "tcp:localhost:7000", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "tcp:192.0.2.1:7000", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "tcp:0.0.0.0:7000", TALLY_ERROR_POLICY);

  /* Empty: Pay connects nowhere. */
  g_assert_true (tally_config_load_data (c, "[payment]\nallowed_targets=\n", &error));
  g_assert_no_error (error);
  expect_target (&c->targets, "ble", TALLY_ERROR_POLICY);
  expect_target (&c->targets, "unix:/srv/stalls/a.sock", TALLY_ERROR_POLICY);

  static const char *const bad[] = {
    "[payment]\nallowed_targets=tcp:0.0.0.0\n",
    "[payment]\nallowed_targets=unix:relative\n",
    "[payment]\nallowed_targets=unix:/srv/../etc\n",
    "[payment]\nallowed_targets=anywhere\n",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) local = NULL;
    g_assert_false (tally_config_load_data (c, bad[i], &local));
    g_assert_error (local, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (local->message, "allowed_targets"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/daemon/config/pay-targets-default-to-ble-and-run-tally",
                   test_pay_targets_default_is_ble_and_run_tally);
  g_test_add_func ("/daemon/config/pay-targets-read-from-allowed-targets",
                   test_pay_targets_read_from_config);
  g_test_add_func ("/daemon/config/defaults", test_defaults);
  g_test_add_func ("/daemon/config/revocations-max-age-is-read-and-bounded",
                   test_revocations_max_age_is_read_and_bounded);
  g_test_add_func ("/daemon/config/max-amount-is-kept-for-the-register-currency",
                   test_max_amount_is_kept_for_the_register_currency);
  g_test_add_func ("/daemon/config/reads-every-key", test_reads_every_key);
  g_test_add_func ("/daemon/config/invalid-value-names-group-and-key",
                   test_invalid_value_names_group_and_key);
  g_test_add_func ("/daemon/config/missing-file-is-not-found", test_missing_file_is_not_found);
  g_test_add_func ("/daemon/config/authorization-defaults-to-polkit-on-system-bus",
                   test_authorization_defaults_to_polkit_on_system_bus);
  g_test_add_func ("/daemon/tallyd/invalid-config-exits-1-naming-key",
                   test_tallyd_invalid_config_exits_1);
  g_test_add_func ("/daemon/tallyd/help-documents-config-keys", test_tallyd_help_documents_keys);
  g_test_add_func ("/daemon/tallyctl/usage-errors-exit-2", test_tallyctl_usage_errors_exit_2);
  g_test_add_func ("/daemon/tallyctl/help-lists-commands", test_tallyctl_help_lists_commands);
  g_test_add_func ("/daemon/config/transport-limits-default-and-read",
                   test_transport_limits_default_and_read);
  return g_test_run ();
}
