/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd (path in argv[1]) with [http] workers=2 on PostgreSQL (run
 * under with-postgresql.sh): reconciliations of different registers from
 * several client threads at once all succeed and balance, both worker
 * processes serve them, a killed worker is replaced, SIGTERM stops all.
 * And the SQLite store refuses more than one worker.
 */
#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include "issuerd-test-util.h"
#include "tally-clock.h"

#define THREADS   4
#define PAIRS     3 /* per thread */
#define DEPOSIT   100000
#define LOADED    2000
#define PAID      500
#define WAIT_USEC (20 * G_USEC_PER_SEC)

static const char *issuerd_path;

static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static GSubprocess *
spawn (const char *conf, const char *port_file, GSubprocessFlags flags)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (flags);
  g_subprocess_launcher_unsetenv (launcher, "TALLY_ISSUER_CRASH_AT");
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  GSubprocess *proc =
    port_file != NULL
      ? g_subprocess_launcher_spawn (launcher, &error, issuerd_path, "--config", conf,
                                     "--port-file", port_file, NULL)
      : g_subprocess_launcher_spawn (launcher, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  return proc;
}

static char *
write_conf (const char *tmp, guint workers)
{
  g_autoptr (GError) error = NULL;
  char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_autofree char *text =
    g_strdup_printf ("[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\nworkers=%u\n", workers);
  g_assert_true (g_file_set_contents (conf, text, -1, &error));
  g_assert_no_error (error);
  return conf;
}

/* The SQLite store takes one writer at a time: workers=2 is refused at
 * start with the reason, before anything listens. */
static void
test_sqlite_store_refuses_several_workers (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-workers-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_is_embedded (issuer));
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *conf = write_conf (tmp, 2);
  g_autofree char *port_file = g_build_filename (tmp, "port", NULL);

  g_autoptr (GSubprocess) proc = spawn (conf, port_file, G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "[http] workers=2 needs a PostgreSQL store"));
  g_assert_nonnull (strstr (err, "one process write at a time"));
  g_assert_false (g_file_test (port_file, G_FILE_TEST_EXISTS));
  test_remove_tree (tmp);
}

/* --- two workers on PostgreSQL --- */

typedef struct
{
  GBytes *payer; /* loaded, pays the payee */
  GBytes *payee; /* receives */
} Pair;

typedef struct
{
  char *base;
  Pair pairs[THREADS][PAIRS];
  GMutex lock;
  GHashTable *workers; /* X-Tally-Worker values seen (pids) */
  guint reconciled;
} Run;

static void
make_pair (TallyIssuer *issuer, guint64 now, Pair *pair)
{
  g_autoptr (GError) error = NULL;
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (TestRegister) a = test_register_new_uncertified ();
  g_autoptr (TestRegister) b = test_register_new_uncertified ();
  a->cert = tally_issuer_certify (issuer, a->pk, "alice", NULL, &limits, now, now + 86400, &error);
  g_assert_no_error (error);
  b->cert = tally_issuer_certify (issuer, b->pk, "bob", NULL, &limits, now, now + 86400, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) voucher = tally_issuer_sell_voucher (issuer, a->id, LOADED, now, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, PAID, now + 3600);
  g_autoptr (GBytes) r = test_receipt (b, p);
  g_autoptr (TestBundle) ba = test_bundle_new_at (a, now);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p, r);
  pair->payer = test_bundle_sign (ba);
  g_autoptr (TestBundle) bb = test_bundle_new_at (b, now);
  test_bundle_add_received (bb, a->cert, p, r);
  pair->payee = test_bundle_sign (bb);
}

/* One request on a connection of its own, so that either worker may
 * accept it; returns the worker that answered. */
static char *
post (Run *run, SoupSession *session, const char *path, GBytes *body, guint *status)
{
  g_autofree char *url = g_strconcat (run->base, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (body ? "POST" : "GET", url);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Connection", "close");
  if (body != NULL)
    soup_message_set_request_body_from_bytes (msg, "application/x-protobuf", body);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) answer = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  *status = soup_message_get_status (msg);
  SoupMessageHeaders *headers = soup_message_get_response_headers (msg);
  if (body != NULL)
    g_assert_cmpstr (soup_message_headers_get_one (headers, "X-Tally-Repeated"), ==, "no");
  const char *worker = soup_message_headers_get_one (headers, "X-Tally-Worker");
  g_assert_nonnull (worker);
  return g_strdup (worker);
}

static gpointer
client_thread (gpointer data)
{
  Run *run = data;
  static gint next;
  guint t = (guint) g_atomic_int_add (&next, 1);
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  for (guint i = 0; i < PAIRS; i++) {
    GBytes *bundles[] = { run->pairs[t][i].payer, run->pairs[t][i].payee };
    for (guint j = 0; j < G_N_ELEMENTS (bundles); j++) {
      guint status = 0;
      g_autofree char *worker = post (run, session, "/v1/reconcile", bundles[j], &status);
      g_assert_cmpuint (status, ==, SOUP_STATUS_OK);
      g_mutex_lock (&run->lock);
      g_hash_table_add (run->workers, g_steal_pointer (&worker));
      run->reconciled++;
      g_mutex_unlock (&run->lock);
    }
  }
  return NULL;
}

/* @pid's parent process, from /proc. */
static int
parent_of (const char *pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/stat", pid);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return -1;
  const char *end = strrchr (text, ')'); /* after the command name */
  g_assert_nonnull (end);
  int ppid = -1;
  g_assert_cmpint (sscanf (end + 1, " %*c %d", &ppid), ==, 1);
  return ppid;
}

static gboolean
process_gone (int pid)
{
  return kill (pid, 0) != 0 && errno == ESRCH;
}

static void
test_two_workers_reconcile_in_parallel (void)
{
  g_assert_true (test_store_is_pg ());
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-workers-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  Run run = { 0 };
  g_mutex_init (&run.lock);
  run.workers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  {
    g_autoptr (TallyIssuer) issuer = test_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
    g_assert_no_error (error);
    g_assert_false (tally_issuer_is_embedded (issuer));
    const char *names[] = { "alice", "bob" };
    for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
      g_assert_true (tally_issuer_account_create (issuer, names[i], &error));
      g_assert_true (tally_issuer_deposit (issuer, names[i], DEPOSIT, &error));
      g_assert_no_error (error);
    }
    guint64 now = tally_now ();
    for (guint t = 0; t < THREADS; t++)
      for (guint i = 0; i < PAIRS; i++)
        make_pair (issuer, now, &run.pairs[t][i]);
  }

  g_autofree char *conf = write_conf (tmp, 2);
  g_autofree char *port_file = g_build_filename (tmp, "port", NULL);
  g_autoptr (GSubprocess) proc = spawn (conf, port_file, G_SUBPROCESS_FLAGS_NONE);
  int daemon_pid = atoi (g_subprocess_get_identifier (proc));
  g_autofree char *port = NULL;
  for (guint i = 0; i < 400 && port == NULL; i++) {
    g_autofree char *text = NULL;
    if (g_file_get_contents (port_file, &text, NULL, NULL) && strchr (text, '\n') != NULL)
      port = g_steal_pointer (&text);
    else
      g_usleep (25 * 1000);
  }
  g_assert_nonnull (port);
  run.base = g_strdup_printf ("http://127.0.0.1:%u", (guint) g_ascii_strtoull (port, NULL, 10));

  /* Both workers up (each opens its own store connection first). */
  {
    g_autoptr (GHashTable) up = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
    gint64 deadline = g_get_monotonic_time () + WAIT_USEC;
    while (g_hash_table_size (up) < 2 && g_get_monotonic_time () < deadline) {
      guint status = 0;
      g_hash_table_add (up, post (&run, session, "/v1/keys", NULL, &status));
      g_assert_cmpuint (status, ==, SOUP_STATUS_OK);
      g_usleep (10 * 1000);
    }
    g_assert_cmpuint (g_hash_table_size (up), ==, 2);
  }

  GThread *threads[THREADS];
  for (guint t = 0; t < THREADS; t++)
    threads[t] = g_thread_new ("client", client_thread, &run);
  for (guint t = 0; t < THREADS; t++)
    g_thread_join (threads[t]);
  g_assert_cmpuint (run.reconciled, ==, THREADS * PAIRS * 2);

  /* Both workers answered, and both are the daemon's own children. */
  g_assert_cmpuint (g_hash_table_size (run.workers), ==, 2);
  GHashTableIter iter;
  gpointer key;
  g_hash_table_iter_init (&iter, run.workers);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_assert_cmpint (parent_of (key), ==, daemon_pid);

  /* Every payment booked once, across both processes. */
  {
    g_autoptr (TallyIssuer) issuer = tally_issuer_open (dir, &error);
    g_assert_no_error (error);
    TallyAudit audit;
    g_assert_true (tally_issuer_audit (issuer, &audit, &error));
    g_assert_no_error (error);
    g_assert_true (audit.identity);
    g_assert_cmpint (audit.issued, ==, 2 * DEPOSIT);
    g_assert_cmpint (audit.offline, ==, THREADS * PAIRS * LOADED);
    g_assert_cmpint (audit.online, ==, 2 * DEPOSIT - THREADS * PAIRS * LOADED);
    g_assert_cmpint (audit.in_flight, ==, 0);
    g_assert_cmpuint (audit.registers, ==, THREADS * PAIRS * 2);
  }

  /* A worker killed is replaced by a new process; the other goes on. */
  g_hash_table_iter_init (&iter, run.workers);
  g_assert_true (g_hash_table_iter_next (&iter, &key, NULL));
  int victim = atoi (key);
  g_assert_cmpint (kill (victim, SIGKILL), ==, 0);
  g_autoptr (GHashTable) after = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  gint64 deadline = g_get_monotonic_time () + WAIT_USEC;
  gboolean replaced = FALSE;
  while (!replaced && g_get_monotonic_time () < deadline) {
    guint status = 0;
    char *worker = post (&run, session, "/v1/keys", NULL, &status);
    g_assert_cmpuint (status, ==, SOUP_STATUS_OK);
    g_assert_cmpint (atoi (worker), !=, victim);
    replaced = !g_hash_table_contains (run.workers, worker);
    g_hash_table_add (after, worker);
    if (!replaced)
      g_usleep (20 * 1000);
  }
  g_assert_true (replaced);
  g_assert_true (process_gone (victim));

  /* SIGTERM reaches every worker; the parent exits 0 after them. */
  g_subprocess_send_signal (proc, SIGTERM);
  g_assert_true (g_subprocess_wait (proc, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  g_hash_table_iter_init (&iter, after);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_assert_true (process_gone (atoi (key)));

  for (guint t = 0; t < THREADS; t++)
    for (guint i = 0; i < PAIRS; i++) {
      g_bytes_unref (run.pairs[t][i].payer);
      g_bytes_unref (run.pairs[t][i].payee);
    }
  g_hash_table_unref (run.workers);
  g_mutex_clear (&run.lock);
  g_free (run.base);
  test_remove_tree (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_assert_cmpint (argc, ==, 2);
  issuerd_path = argv[1];

  g_test_add_func ("/issuerd/workers/sqlite-store-refuses-several-workers",
                   test_sqlite_store_refuses_several_workers);
  g_test_add_func ("/issuerd/workers/two-workers-reconcile-different-registers-in-parallel",
                   test_two_workers_reconcile_in_parallel);
  return g_test_run ();
}
