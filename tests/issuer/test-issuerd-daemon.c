/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd as a program (path in argv[1]): started from a
 * configuration on an ephemeral port, used over HTTP and HTTPS, stopped with
 * SIGTERM; and the configurations it must refuse.  Also the listening rules
 * and the error table of the library it is built on.
 */
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "issuerd-test-util.h"
#include "tally-hex.h"

static const char *issuerd_path;

static void
test_plain_http_only_on_loopback (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (issuer, NULL);
  g_autoptr (GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (any, 0);
  g_assert_false (tally_issuer_http_listen (http, addr, FALSE, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_assert_cmpuint (tally_issuer_http_get_port (http), ==, 0);
  g_clear_pointer (&http, tally_issuer_http_unref);
  g_clear_pointer (&issuer, tally_issuer_free);
  test_remove_tree (tmp);
}

static void
test_error_table_covers_every_code (void)
{
  for (guint code = 1; code <= TALLY_ERROR_LAST; code++) {
    guint status = tally_issuer_http_status_for_error ((TallyError) code);
    g_assert_cmpuint (status, >=, 400);
    g_assert_cmpuint (status, <, 600);
  }
  g_assert_cmpuint (tally_issuer_http_status_for_error (TALLY_ERROR_NOT_AUTHORIZED), ==, 401);
  g_assert_cmpuint (tally_issuer_http_status_for_error (TALLY_ERROR_STORAGE), ==, 500);
}

/* --- HTTPS --- */

static char *
tls_file (const char *name)
{
  const char *root = g_getenv ("TALLY_SOURCE_ROOT");
  g_assert_nonnull (root);
  return g_build_filename (root, "tests", "issuer", "data", name, NULL);
}

/* A session that trusts exactly the test certificate. */
static SoupSession *
tls_session (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *pem = tls_file ("tls-localhost.pem");
  g_autoptr (GTlsDatabase) db = g_tls_file_database_new (pem, &error);
  g_assert_no_error (error);
  return soup_session_new_with_options ("tls-database", db, "timeout", 10, NULL);
}

static void
test_https_with_configured_certificate (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autofree char *pem = tls_file ("tls-localhost.pem");
  g_autofree char *key = tls_file ("tls-localhost.key");
  g_autoptr (GTlsCertificate) cert = g_tls_certificate_new_from_files (pem, key, &error);
  g_assert_no_error (error);

  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (issuer, cert);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (http, addr, FALSE, &error));
  g_assert_no_error (error);
  g_autofree char *url = tally_issuer_http_get_url (http);
  g_assert_true (g_str_has_prefix (url, "https://127.0.0.1:"));

  IssuerdFixture f = { 0 };
  f.base = g_strdup_printf ("https://127.0.0.1:%u", tally_issuer_http_get_port (http));
  f.session = tls_session ();
  g_autoptr (IssuerdResponse) r = issuerd_request (&f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (r, SOUP_STATUS_OK);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (issuer);
  g_assert_true (g_bytes_equal (r->body, key_set));
  g_clear_object (&f.session);
  g_free (f.base);

  g_clear_pointer (&http, tally_issuer_http_unref);
  g_clear_pointer (&issuer, tally_issuer_free);
  test_remove_tree (tmp);
}

static void
async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static gboolean
flag_set (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Over TLS too, a client sending a byte every 300 ms, more often than the
 * idle timeout of 1 s, is cut off by the request's deadline. */
static void
test_https_trickling_client_cut_off (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autofree char *pem = tls_file ("tls-localhost.pem");
  g_autofree char *key = tls_file ("tls-localhost.key");
  g_autoptr (GTlsCertificate) cert = g_tls_certificate_new_from_files (pem, key, &error);
  g_assert_no_error (error);
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (issuer, cert);
  tally_issuer_http_set_request_timeout (http, 1);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (http, addr, FALSE, &error));
  guint16 port = tally_issuer_http_get_port (http);

  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn =
    g_socket_client_connect_to_host (client, "127.0.0.1", port, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (GSocketConnectable) identity = g_network_address_new ("localhost", port);
  g_autoptr (GIOStream) tls = g_tls_client_connection_new (G_IO_STREAM (conn), identity, &error);
  g_assert_no_error (error);
  g_autoptr (GTlsDatabase) db = g_tls_file_database_new (pem, &error);
  g_assert_no_error (error);
  g_tls_connection_set_database (G_TLS_CONNECTION (tls), db);
  g_autoptr (GAsyncResult) handshake = NULL;
  g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT, NULL, async_done,
                                    &handshake);
  while (handshake == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_tls_connection_handshake_finish (G_TLS_CONNECTION (tls), handshake, &error));
  g_assert_no_error (error);

  gint64 start = g_get_monotonic_time ();
  GOutputStream *out = g_io_stream_get_output_stream (tls);
  static const char head[] = "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n";
  g_assert_true (g_output_stream_write_all (out, head, strlen (head), NULL, NULL, &error));
  g_autoptr (GAsyncResult) read = NULL;
  char buf[256];
  g_input_stream_read_async (g_io_stream_get_input_stream (tls), buf, sizeof buf,
                             G_PRIORITY_DEFAULT, NULL, async_done, &read);
  guint sent = 0;
  while (read == NULL && g_get_monotonic_time () - start < 8 * G_USEC_PER_SEC) {
    gboolean tick = FALSE;
    g_timeout_add (300, flag_set, &tick);
    while (!tick)
      g_main_context_iteration (NULL, TRUE);
    if (read == NULL && g_output_stream_write (out, "a", 1, NULL, NULL) == 1)
      sent++;
  }
  g_assert_nonnull (read);
  gssize got = g_input_stream_read_finish (g_io_stream_get_input_stream (tls), read, NULL);
  g_assert_cmpint (got, <=, 0);
  g_assert_cmpuint (sent, >=, 2);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC / 2);

  g_clear_object (&tls);
  g_clear_pointer (&http, tally_issuer_http_unref);
  g_clear_pointer (&issuer, tally_issuer_free);
  test_remove_tree (tmp);
}

/* --- the daemon --- */

static char *
wait_for_file (const char *path)
{
  for (guint i = 0; i < 200; i++) {
    char *text = NULL;
    if (g_file_get_contents (path, &text, NULL, NULL) && strchr (text, '\n') != NULL)
      return text;
    g_free (text);
    g_usleep (50 * 1000);
  }
  g_assert_not_reached ();
}

static void
test_daemon_serves_and_stops_on_sigterm (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (issuer);
  g_clear_pointer (&issuer, tally_issuer_free);

  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_autofree char *port_file = g_build_filename (tmp, "port", NULL);
  g_assert_true (g_file_set_contents (conf,
                                      "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                      "max_body_bytes=4096\n",
                                      -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, issuerd_path, "--config", conf,
                      "--port-file", port_file, NULL);
  g_assert_no_error (error);
  g_autofree char *port = wait_for_file (port_file);

  IssuerdFixture f = { 0 };
  f.base = g_strdup_printf ("http://127.0.0.1:%u", (guint) g_ascii_strtoull (port, NULL, 10));
  f.session = soup_session_new ();
  g_autoptr (IssuerdResponse) r = issuerd_request (&f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (r, SOUP_STATUS_OK);
  g_assert_true (g_bytes_equal (r->body, key_set));
  /* No operator token is configured: the operator endpoints are off. */
  g_autoptr (IssuerdResponse) op =
    issuerd_request (&f, "GET", "/v1/operator/audit", NULL, NULL, NULL, NULL);
  issuerd_assert_refused (op, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_NOT_AUTHORIZED);
  g_clear_object (&f.session);
  g_free (f.base);

  g_subprocess_send_signal (proc, SIGTERM);
  g_assert_true (g_subprocess_wait (proc, NULL, &error));
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  test_remove_tree (tmp);
}

static void
test_daemon_serves_https (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *pem = tls_file ("tls-localhost.pem");
  g_autofree char *key = tls_file ("tls-localhost.key");
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_autofree char *port_file = g_build_filename (tmp, "port", NULL);
  g_autofree char *token_file = g_build_filename (tmp, "operator.token", NULL);
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  randombytes_buf (token, sizeof token);
  g_autofree char *token_hex = tally_hex_encode (token, sizeof token);
  g_assert_true (
    g_file_set_contents_full (token_file, token_hex, -1, G_FILE_SET_CONTENTS_NONE, 0600, &error));
  g_autofree char *text = g_strdup_printf ("[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                           "tls_certificate=%s\ntls_key=%s\n"
                                           "operator_token_file=operator.token\n",
                                           pem, key);
  g_assert_true (g_file_set_contents (conf, text, -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, issuerd_path, "--config", conf,
                      "--port-file", port_file, NULL);
  g_assert_no_error (error);
  g_autofree char *port = wait_for_file (port_file);

  IssuerdFixture f = { 0 };
  f.base = g_strdup_printf ("https://127.0.0.1:%u", (guint) g_ascii_strtoull (port, NULL, 10));
  f.session = tls_session ();
  g_autoptr (IssuerdResponse) r =
    issuerd_request (&f, "GET", "/v1/revocations", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (r, SOUP_STATUS_OK);
  /* The operator token from the file (a path relative to the config). */
  g_autoptr (IssuerdResponse) audit =
    issuerd_request (&f, "GET", "/v1/operator/audit", token_hex, NULL, NULL, NULL);
  g_assert_cmpuint (audit->status, ==, SOUP_STATUS_OK);
  g_clear_object (&f.session);
  g_free (f.base);

  g_subprocess_send_signal (proc, SIGTERM);
  g_assert_true (g_subprocess_wait (proc, NULL, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  test_remove_tree (tmp);
}

static void
test_daemon_refuses_world_readable_operator_token (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *token_file = g_build_filename (tmp, "operator.token", NULL);
  g_assert_true (g_file_set_contents_full (
    token_file, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", -1,
    G_FILE_SET_CONTENTS_NONE, 0644, &error));
  g_assert_cmpint (g_chmod (token_file, 0644), ==, 0);
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_assert_true (g_file_set_contents (
    conf, "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\noperator_token_file=operator.token\n",
    -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "open to every user"));
  test_remove_tree (tmp);
}

/* Starts tally-issuerd on an issuer in @tmp with operator_token_file=
 * operator.token, as the caller left that path; it must refuse to start.
 * Returns what it said. */
static char *
daemon_refusal_with_token_file (const char *tmp)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_assert_true (g_file_set_contents (
    conf, "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\noperator_token_file=operator.token\n",
    -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  return err;
}

static void
test_daemon_reads_operator_token_only_from_private_regular_file (void)
{
  static const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  g_autoptr (GError) error = NULL;

  /* A symbolic link, even to a private file, is not followed. */
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *real = g_build_filename (tmp, "real.token", NULL);
  g_autofree char *token_file = g_build_filename (tmp, "operator.token", NULL);
  g_assert_true (g_file_set_contents_full (real, hex, -1, G_FILE_SET_CONTENTS_NONE, 0600, &error));
  g_assert_cmpint (symlink ("real.token", token_file), ==, 0);
  g_autofree char *err = daemon_refusal_with_token_file (tmp);
  g_assert_nonnull (strstr (err, "symbolic link"));
  test_remove_tree (tmp);

  /* A pipe is no file to read a token from (and would block). */
  g_autofree char *tmp2 = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *fifo = g_build_filename (tmp2, "operator.token", NULL);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_autofree char *err2 = daemon_refusal_with_token_file (tmp2);
  g_assert_nonnull (strstr (err2, "not a regular file"));
  test_remove_tree (tmp2);

  /* A file that cannot be opened is an error, not a file without mode. */
  g_autofree char *tmp3 = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *err3 = daemon_refusal_with_token_file (tmp3);
  g_assert_nonnull (strstr (err3, "cannot read"));
  test_remove_tree (tmp3);

  /* Group-readable is fine; a token followed by more than white space is
   * not. */
  g_autofree char *tmp4 = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *long_file = g_build_filename (tmp4, "operator.token", NULL);
  g_autofree char *longer = g_strconcat (hex, "\n", hex, NULL);
  g_assert_true (
    g_file_set_contents_full (long_file, longer, -1, G_FILE_SET_CONTENTS_NONE, 0640, &error));
  g_autofree char *err4 = daemon_refusal_with_token_file (tmp4);
  g_assert_nonnull (strstr (err4, "64 hex digits"));
  test_remove_tree (tmp4);
}

static void
test_daemon_refuses_plain_http_off_loopback (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_assert_true (
    g_file_set_contents (conf, "[issuer]\ndir=issuer\n[http]\nlisten=0.0.0.0:0\n", -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "plain HTTP"));
  test_remove_tree (tmp);
}

/* Runs tally-issuerd on a JPY issuer with @text as its configuration:
 * its exit status, and its standard error in *@err. */
static int
run_with_config (const char *text, char **err)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Yen Bank", "JPY", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_assert_true (g_file_set_contents (conf, text, -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, err, &error));
  test_remove_tree (tmp);
  return g_subprocess_get_exit_status (proc);
}

/* A key tally-issuerd does not read is a mistake, not a silent default. */
static void
test_daemon_refuses_unknown_config_key (void)
{
  g_autofree char *err = NULL;
  g_assert_cmpint (run_with_config ("[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                    "max_conections=5\n",
                                    &err),
                   ==, 1);
  g_assert_nonnull (strstr (err, "[http] max_conections: unknown key"));
}

/* [enrol] amounts are in the issuer's currency: no decimals for yen. */
static void
test_daemon_reads_enrol_amounts_in_the_issuer_currency (void)
{
  g_autofree char *err = NULL;
  g_assert_cmpint (run_with_config ("[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                    "[enrol]\nmax_payment=20.50\n",
                                    &err),
                   ==, 1);
  g_assert_nonnull (strstr (err, "[enrol] max_payment must be a positive amount such as 2000 JPY"));
  g_assert_nonnull (strstr (err, "JPY has no minor unit"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_assert_cmpint (argc, ==, 2);
  issuerd_path = argv[1];
  g_test_add_func ("/issuerd/listen/plain-http-only-on-loopback", test_plain_http_only_on_loopback);
  g_test_add_func ("/issuerd/errors/every-code-has-a-status", test_error_table_covers_every_code);
  g_test_add_func ("/issuerd/daemon/serves-and-stops-on-sigterm",
                   test_daemon_serves_and_stops_on_sigterm);
  g_test_add_func ("/issuerd/https/serves-with-configured-certificate",
                   test_https_with_configured_certificate);
  g_test_add_func ("/issuerd/daemon/serves-https-from-config", test_daemon_serves_https);
  g_test_add_func ("/issuerd/https/trickling-client-cut-off-by-request-deadline",
                   test_https_trickling_client_cut_off);
  g_test_add_func ("/issuerd/daemon/refuses-world-readable-operator-token",
                   test_daemon_refuses_world_readable_operator_token);
  g_test_add_func ("/issuerd/daemon/reads-operator-token-only-from-private-regular-file",
                   test_daemon_reads_operator_token_only_from_private_regular_file);
  g_test_add_func ("/issuerd/daemon/refuses-unknown-config-key",
                   test_daemon_refuses_unknown_config_key);
  g_test_add_func ("/issuerd/daemon/reads-enrol-amounts-in-the-issuer-currency",
                   test_daemon_reads_enrol_amounts_in_the_issuer_currency);
  g_test_add_func ("/issuerd/daemon/refuses-plain-http-off-loopback",
                   test_daemon_refuses_plain_http_off_loopback);
  return g_test_run ();
}
