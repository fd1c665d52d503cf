/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Issuer benchmark: reconciliation throughput on the store under test
 * (SQLite, or PostgreSQL when TALLY_TEST_PG_CONNINFO is set, as
 * tests/issuer/with-postgresql.sh sets it), each figure next to floors
 * measured in the same run:
 *
 *  - bundles and payments booked per second through
 *    tally_issuer_reconcile_once (), the call tally-issuerd makes, by one or
 *    more workers, each with its own connection, on bundles signed
 *    beforehand (signing is the devices' work, not the issuer's);
 *  - raw Ed25519 verifications per second on this machine, and what they
 *    allow in payments per second when every payment costs two (the payer's
 *    permission, the payee's receipt) and every bundle one more;
 *  - where a reconciliation's time goes, from the issuer's commit hook:
 *    its CPU before the store's lock (decoding, every signature verified),
 *    and its CPU and wall time from asking for the lock to the commit
 *    (booking, signing the result; the wall time includes waiting for the
 *    lock and for the server);
 *  - store transactions per second on the same store: empty ones
 *    (begin/commit: on PostgreSQL that includes the lock on the totals row
 *    every issuer operation takes) and ones writing one row.
 *
 * Only prints; never asserts a time.
 *
 * Usage: bench-issuer [--bundles N] [--payments M] [--workers W]
 */

#include <string.h>
#include <time.h>

#include "issuer-test-util.h"
#include "tally-issuer-store.h"

#define AMOUNT 100
#define STALLS 8

static double
now_s (void)
{
  return (double) g_get_monotonic_time () / G_USEC_PER_SEC;
}

static double
cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Ed25519 verifications per second of a permission-sized message. */
static double
verify_rate (void)
{
  guint8 pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  guint8 msg[200], sig[crypto_sign_BYTES];
  crypto_sign_keypair (pk, sk);
  randombytes_buf (msg, sizeof msg);
  crypto_sign_detached (sig, NULL, msg, sizeof msg, sk);
  sodium_memzero (sk, sizeof sk);
  guint n = 0;
  double start = now_s (), t;
  do {
    for (guint i = 0; i < 100; i++)
      g_assert_cmpint (crypto_sign_verify_detached (sig, msg, sizeof msg, pk), ==, 0);
    n += 100;
  } while ((t = now_s () - start) < 0.5);
  return n / t;
}

/* Transactions per second on a second connection to the issuer's store;
 * with @write, each writes one meta row. */
static double
transaction_rate (const char *spec, const char *path, gboolean write)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (spec, path, FALSE, &error);
  g_assert_no_error (error);
  guint8 value[8] = { 0 };
  guint n = 0;
  double start = now_s (), t;
  do {
    g_assert_true (tally_issuer_store_begin (store, &error));
    if (write) {
      memcpy (value, &n, sizeof n);
      g_autoptr (GBytes) v = g_bytes_new (value, sizeof value);
      g_assert_true (tally_issuer_store_meta_set (store, "bench-floor", v, &error));
    }
    g_assert_true (tally_issuer_store_commit (store, &error));
    g_assert_no_error (error);
    n++;
  } while ((t = now_s () - start) < 1.0);
  return n / t;
}

static double
thread_cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

typedef struct
{
  const char *dir;
  GPtrArray *bundles; /* GBytes, this worker's */
  guint booked;
  double mark_cpu, mark_wall; /* at the last commit point */
  double verify_cpu;          /* reconcile:begin to reconcile:verified */
  double book_cpu, book_wall; /* reconcile:verified to reconcile:committed */
} Worker;

/* Runs in the worker's thread, at each of its issuer's commit points. */
static void
worker_hook (const char *point, gpointer user_data)
{
  Worker *w = user_data;
  double cpu = thread_cpu_s (), wall = now_s ();
  if (strcmp (point, "reconcile:verified") == 0) {
    w->verify_cpu += cpu - w->mark_cpu;
  } else if (strcmp (point, "reconcile:committed") == 0) {
    w->book_cpu += cpu - w->mark_cpu;
    w->book_wall += wall - w->mark_wall;
  } else if (strcmp (point, "reconcile:begin") != 0) {
    return;
  }
  w->mark_cpu = cpu;
  w->mark_wall = wall;
}

static gpointer
worker_run (gpointer data)
{
  Worker *w = data;
  g_autoptr (GError) error = NULL;
  /* Its own issuer, hence its own store connection, as each worker of a
   * tally-issuerd on PostgreSQL would have. */
  g_autoptr (TallyIssuer) issuer = tally_issuer_open (w->dir, &error);
  g_assert_no_error (error);
  tally_issuer_set_commit_hook (issuer, worker_hook, w);
  for (guint i = 0; i < w->bundles->len; i++) {
    gsize len;
    const guint8 *data_ = g_bytes_get_data (w->bundles->pdata[i], &len);
    gboolean repeated = TRUE;
    g_autoptr (GBytes) result =
      tally_issuer_reconcile_once (issuer, data_, len, TEST_NOW + 3600, &repeated, &error);
    g_assert_no_error (error);
    g_assert_nonnull (result);
    g_assert_false (repeated);
    w->booked++;
  }
  return NULL;
}

/* One bundle per payer: its voucher and @payments payments to the stalls,
 * each with the stall's receipt, so each books settled. */
static GPtrArray *
make_bundles (TallyIssuer *issuer, guint n_bundles, guint payments)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *bundles = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GPtrArray) stalls =
    g_ptr_array_new_with_free_func ((GDestroyNotify) test_register_free);
  for (guint s = 0; s < STALLS; s++)
    g_ptr_array_add (stalls, test_register_new (issuer, "stalls"));
  for (guint b = 0; b < n_bundles; b++) {
    g_autoptr (TestRegister) payer = test_register_new (issuer, "payers");
    g_autoptr (GBytes) voucher =
      tally_issuer_sell_voucher (issuer, payer->id, (gint64) payments * AMOUNT, TEST_NOW, &error);
    g_assert_no_error (error);
    g_autoptr (TestBundle) bundle = test_bundle_new (payer);
    test_bundle_add_voucher (bundle, voucher);
    for (guint p = 0; p < payments; p++) {
      const TestRegister *stall = stalls->pdata[(b + p) % STALLS];
      g_autoptr (GBytes) permission = test_permission (payer, stall, AMOUNT);
      g_autoptr (GBytes) receipt = test_receipt (stall, permission);
      test_bundle_add_spent (bundle, permission, receipt);
    }
    g_ptr_array_add (bundles, test_bundle_sign (bundle));
  }
  return bundles;
}

int
main (int argc, char **argv)
{
  gint n_bundles = 200, payments = 10, workers = 1;
  const GOptionEntry entries[] = {
    { "bundles", 0, 0, G_OPTION_ARG_INT, &n_bundles, "Bundles to reconcile (default 200)", "N" },
    { "payments", 0, 0, G_OPTION_ARG_INT, &payments, "Payments per bundle (default 10)", "M" },
    { "workers", 0, 0, G_OPTION_ARG_INT, &workers, "Reconciling threads (default 1)", "W" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- issuer reconciliation benchmark");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || n_bundles < 1 || payments < 1 ||
      payments > 100 || workers < 1 || workers > 64) {
    g_printerr ("bench-issuer: %s\n",
                error ? error->message : "bad --bundles, --payments or --workers");
    return 2;
  }
  g_assert_cmpint (sodium_init (), >=, 0);

  g_autofree char *tmp = g_dir_make_tmp ("tally-bench-issuer-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autofree char *spec = test_store_spec_new ();
  g_autofree char *db = g_build_filename (dir, "issuer.db", NULL);
  g_autoptr (TallyIssuer) issuer =
    tally_issuer_create_with_store (dir, spec, "Bench Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  const char *accounts[] = { "payers", "stalls" };
  for (guint i = 0; i < G_N_ELEMENTS (accounts); i++) {
    g_assert_true (tally_issuer_account_create (issuer, accounts[i], &error));
    g_assert_true (tally_issuer_deposit (issuer, accounts[i], (gint64) 1 << 50, &error));
    g_assert_no_error (error);
  }
  g_autoptr (GPtrArray) bundles = make_bundles (issuer, (guint) n_bundles, (guint) payments);
  g_clear_pointer (&issuer, tally_issuer_free);

  g_autofree Worker *w = g_new0 (Worker, workers);
  g_autofree GThread **threads = g_new0 (GThread *, workers);
  for (gint i = 0; i < workers; i++) {
    w[i].dir = dir;
    w[i].bundles = g_ptr_array_new ();
  }
  for (guint b = 0; b < bundles->len; b++)
    g_ptr_array_add (w[b % (guint) workers].bundles, bundles->pdata[b]);

  double cpu0 = cpu_s (), t0 = now_s ();
  for (gint i = 0; i < workers; i++)
    threads[i] = g_thread_new ("reconcile", worker_run, &w[i]);
  guint booked = 0;
  double verify_cpu = 0, book_cpu = 0, book_wall = 0;
  for (gint i = 0; i < workers; i++) {
    g_thread_join (threads[i]);
    booked += w[i].booked;
    verify_cpu += w[i].verify_cpu;
    book_cpu += w[i].book_cpu;
    book_wall += w[i].book_wall;
    g_ptr_array_unref (w[i].bundles);
  }
  double elapsed = now_s () - t0, cpu = cpu_s () - cpu0;
  g_assert_cmpuint (booked, ==, bundles->len);

  /* Every payment booked once, and the books balance. */
  issuer = tally_issuer_open (dir, &error);
  g_assert_no_error (error);
  TallyAudit audit;
  g_assert_true (tally_issuer_audit (issuer, &audit, &error));
  g_assert_no_error (error);
  g_assert_true (audit.balanced);
  g_assert_cmpint (audit.offline, ==, (gint64) n_bundles * payments * AMOUNT);

  double verifies = verify_rate ();
  double tx_empty = transaction_rate (spec, db, FALSE);
  double tx_write = transaction_rate (spec, db, TRUE);
  double per_payment = 2.0 + 1.0 / payments;

  printf ("store: %s; %u CPU(s) online; %d worker(s)\n",
          g_str_has_prefix (spec, "postgresql:") ? "PostgreSQL" : "SQLite", g_get_num_processors (),
          workers);
  printf ("reconciled %u bundles of %d payments in %.2f s (%.2f s CPU in this process)\n", booked,
          payments, elapsed, cpu);
  printf ("  %.0f bundles/s, %.0f payments/s; %.0f µs CPU per payment in this process\n",
          booked / elapsed, booked * payments / elapsed, cpu * 1e6 / (booked * payments));
  double n_payments = (double) booked * payments;
  printf ("  before the lock: %.0f µs CPU per payment; lock to commit: %.0f µs CPU, %.0f µs wall "
          "per payment\n",
          verify_cpu * 1e6 / n_payments, book_cpu * 1e6 / n_payments, book_wall * 1e6 / n_payments);
  printf ("floor: %.0f Ed25519 verifies/s on one core = %.0f payments/s at %.1f verifies each\n",
          verifies, verifies / per_payment, per_payment);
  printf ("floor: %.0f empty transactions/s, %.0f one-row transactions/s on the same store\n",
          tx_empty, tx_write);

  g_clear_pointer (&issuer, tally_issuer_free);
  test_remove_tree (tmp);
  return 0;
}
