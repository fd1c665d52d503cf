/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A reconciliation checks every signature of a bundle before the store
 * transaction that books it (docs/scale.md, "Verify outside the lock"):
 * verifying needs no lock, and everything the booking depends on that may
 * change meanwhile is read again under the lock.  Runs on the store under
 * test (SQLite, or PostgreSQL through with-postgresql.sh).
 *
 * Holding the lock is another connection's open transaction
 * (tally_issuer_store_begin: on PostgreSQL the totals row FOR UPDATE, on
 * SQLite BEGIN IMMEDIATE).  The reconciling thread reports through the
 * issuer's commit hook; a wait for it is bounded only so that a regression
 * fails instead of hanging.
 */
#include <string.h>

#include "issuer-test-util.h"
#include "tally-issuer-store.h"

/* How long a reconciliation that needs no lock may take before the test
 * calls it stuck behind the lock. */
#define STUCK_AFTER (60 * G_TIME_SPAN_SECOND)

typedef TestIssuerFixture Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_setup (f, "tally-issuer-verify-XXXXXX");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_teardown (f);
}

/* --- helpers --- */

/* Another connection's open transaction: it holds the store's lock until
 * released. */
static TallyIssuerStore *
hold_lock (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (f->dir, "issuer.db", NULL);
  TallyIssuerStore *holder = tally_issuer_store_open (f->spec, path, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_store_begin (holder, &error));
  g_assert_no_error (error);
  return holder;
}

static void
release_lock (TallyIssuerStore *holder)
{
  tally_issuer_store_rollback (holder);
  tally_issuer_store_free (holder);
}

/* A reconciliation in a thread of its own, on a second issuer (its own
 * store connection), as a second tally-issuerd worker would run it. */
typedef struct
{
  TallyIssuer *issuer;
  GBytes *bundle;
  GMutex lock;
  GCond cond;
  gboolean verified; /* the hook saw reconcile:verified */
  gboolean done;     /* the call returned */
  GBytes *result;
  GError *error;
} Worker;

static void
worker_hook (const char *point, gpointer user_data)
{
  Worker *w = user_data;
  if (strcmp (point, "reconcile:verified") != 0)
    return;
  g_mutex_lock (&w->lock);
  w->verified = TRUE;
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->lock);
}

static gpointer
worker_run (gpointer data)
{
  Worker *w = data;
  gsize len;
  const guint8 *bytes = g_bytes_get_data (w->bundle, &len);
  GBytes *result = tally_issuer_reconcile_once (w->issuer, bytes, len, TEST_NOW, NULL, &w->error);
  g_mutex_lock (&w->lock);
  w->result = result;
  w->done = TRUE;
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->lock);
  return NULL;
}

/* Opening an issuer reads the store in a transaction of its own: done
 * before the lock is taken. */
static void
worker_init (Worker *w, Fixture *f, GBytes *bundle)
{
  g_autoptr (GError) error = NULL;
  *w = (Worker){ .bundle = bundle };
  g_mutex_init (&w->lock);
  g_cond_init (&w->cond);
  w->issuer = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  tally_issuer_set_commit_hook (w->issuer, worker_hook, w);
}

/* Waits until *@flag, or STUCK_AFTER; TRUE when it was set. */
static gboolean
worker_wait (Worker *w, const gboolean *flag)
{
  gint64 end = g_get_monotonic_time () + STUCK_AFTER;
  g_mutex_lock (&w->lock);
  while (!*flag && g_cond_wait_until (&w->cond, &w->lock, end))
    ;
  gboolean set = *flag;
  g_mutex_unlock (&w->lock);
  return set;
}

static void
worker_finish (Worker *w, GThread *thread)
{
  g_thread_join (thread);
  g_clear_pointer (&w->issuer, tally_issuer_free);
  g_mutex_clear (&w->lock);
  g_cond_clear (&w->cond);
}

/* @signed_bytes with one bit of its signature flipped: signed by nobody. */
static GBytes *
forge_signature (GBytes *signed_bytes)
{
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (signed_bytes);
  g_assert_cmpuint (env->signature.len, >, 0);
  env->signature.data[0] ^= 0x01;
  return tally_envelope_pack (env);
}

/* --- tests --- */

/* A forged bundle, and genuine bundles carrying a forged part (a spent
 * permission, a voucher, or a received entry's certificate, permission or
 * receipt), are refused while another connection holds the lock: the
 * refusal waits for nothing and books nothing. */
static void
test_verify_refuses_forgery_while_lock_is_held (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) mallory = test_register_new_uncertified ();
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p1, NULL);
  g_autoptr (GBytes) forged_bundle = test_bundle_sign_with (ba, mallory->sk);
  /* Signed by Bob, passed off as Alice's. */
  g_autoptr (GBytes) fake =
    test_sign_permission (b->sk, a->id, b->id, "EUR", 10, 2, a->head, TEST_EXPIRES_AT);
  g_autoptr (TestBundle) bf = test_bundle_new (a);
  test_bundle_add_spent (bf, fake, NULL);
  g_autoptr (GBytes) forged_entry = test_bundle_sign (bf);
  /* A voucher the issuer never signed. */
  g_autoptr (GBytes) fake_voucher = forge_signature (voucher);
  g_autoptr (TestBundle) bv = test_bundle_new (a);
  test_bundle_add_voucher (bv, fake_voucher);
  g_autoptr (GBytes) forged_voucher = test_bundle_sign (bv);
  /* Bob's received entries: Alice's certificate not signed by the
   * issuer, a permission Alice never signed under her certificate, and a
   * receipt Bob never signed. */
  g_autoptr (GBytes) p2 = test_permission (a, b, 500);
  g_autoptr (GBytes) r2 = test_receipt (b, p2);
  g_autoptr (GBytes) fake_cert = forge_signature (a->cert);
  g_autoptr (TestBundle) bc = test_bundle_new (b);
  test_bundle_add_received (bc, fake_cert, p2, r2);
  g_autoptr (GBytes) forged_cert = test_bundle_sign (bc);
  g_autoptr (GBytes) fake_p = forge_signature (p2);
  g_autoptr (GBytes) r_fake_p = test_receipt (b, fake_p);
  g_autoptr (TestBundle) bp = test_bundle_new (b);
  test_bundle_add_received (bp, a->cert, fake_p, r_fake_p);
  g_autoptr (GBytes) forged_permission = test_bundle_sign (bp);
  g_autoptr (GBytes) r_mallory = test_sign_receipt (mallory->sk, p2, 500);
  g_autoptr (TestBundle) br = test_bundle_new (b);
  test_bundle_add_received (br, a->cert, p2, r_mallory);
  g_autoptr (GBytes) forged_receipt = test_bundle_sign (br);
  TallyAudit before = test_audit (f->issuer);

  GBytes *forgeries[] = { forged_bundle, forged_entry,      forged_voucher,
                          forged_cert,   forged_permission, forged_receipt };
  for (guint i = 0; i < G_N_ELEMENTS (forgeries); i++) {
    Worker w;
    worker_init (&w, f, forgeries[i]);
    TallyIssuerStore *holder = hold_lock (f);
    GThread *thread = g_thread_new ("worker", worker_run, &w);
    gboolean done = worker_wait (&w, &w.done);
    release_lock (holder);
    worker_finish (&w, thread);
    g_assert_true (done);
    g_assert_false (w.verified);
    g_assert_error (w.error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    g_assert_null (w.result);
    g_test_message ("refused while locked: %s", w.error->message);
    g_clear_error (&w.error);
  }

  TallyAudit after = test_audit (f->issuer);
  g_assert_cmpint (after.issued, ==, before.issued);
  g_assert_cmpint (after.offline, ==, before.offline);
  g_assert_cmpint (after.in_flight, ==, before.in_flight);
  g_assert_cmpuint (after.revoked, ==, 0);
  g_assert_cmpuint (after.fraud_proofs, ==, 0);
}

/* A second worker verifies a genuine bundle (its own signature, its
 * voucher's, permission's and receipt's, the payer's certificate) while the
 * first holds the lock, then books it once the lock is free; the same
 * bundle again gets the same result bytes. */
static void
test_verify_checks_signatures_while_lock_is_held (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (GBytes) p2 = test_permission (a, b, 500);
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, p1, r1);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p1, r1);
  test_bundle_add_spent (ba, p2, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);

  GBytes *bundles[] = { bundle_b, bundle_a };
  for (guint i = 0; i < G_N_ELEMENTS (bundles); i++) {
    Worker w;
    worker_init (&w, f, bundles[i]);
    TallyIssuerStore *holder = hold_lock (f);
    GThread *thread = g_thread_new ("worker", worker_run, &w);
    gboolean verified = worker_wait (&w, &w.verified);
    /* Past verifying, the worker waits for the lock: nothing booked yet. */
    g_mutex_lock (&w.lock);
    gboolean done_while_locked = w.done;
    g_mutex_unlock (&w.lock);
    release_lock (holder);
    g_assert_true (worker_wait (&w, &w.done));
    worker_finish (&w, thread);
    g_assert_true (verified);
    g_assert_false (done_while_locked);
    g_assert_no_error (w.error);
    g_assert_nonnull (w.result);

    gboolean repeated = FALSE;
    g_autoptr (GError) error = NULL;
    gsize len;
    const guint8 *bytes = g_bytes_get_data (bundles[i], &len);
    g_autoptr (GBytes) again =
      tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW + 60, &repeated, &error);
    g_assert_no_error (error);
    g_assert_true (repeated);
    g_assert_true (g_bytes_equal (again, w.result));
    g_bytes_unref (w.result);
  }

  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 500);
  g_assert_cmpint (end.offline, ==, 2500);
  g_assert_cmpint (end.online, ==, 7000);
  g_assert_cmpuint (end.fraud_proofs, ==, 0);
  g_assert_true (end.balanced);
}

/* What the hook does between verifying and booking: it runs on a second
 * issuer, in the reconciling thread, before that thread begins its
 * transaction. */
typedef struct
{
  TallyIssuer *other;
  const TestRegister *reg; /* NULL: nothing happens meanwhile */
  gboolean certify;        /* certify reg for "bob", or else revoke it */
  guint ran;
} Meanwhile;

static void
meanwhile_hook (const char *point, gpointer user_data)
{
  Meanwhile *m = user_data;
  if (strcmp (point, "reconcile:verified") != 0)
    return;
  g_autoptr (GError) error = NULL;
  if (m->reg == NULL) {
    /* nothing */
  } else if (m->certify) {
    Tally__Limits limits;
    test_default_limits (&limits);
    g_autoptr (GBytes) cert = tally_issuer_certify (m->other, m->reg->pk, "bob", NULL, &limits,
                                                    TEST_NOW, TEST_NOW + 30 * 86400, &error);
    g_assert_nonnull (cert);
  } else {
    g_assert_true (tally_issuer_revoke (m->other, m->reg->id, TEST_NOW, &error));
  }
  g_assert_no_error (error);
  m->ran++;
}

static Tally__ReconciliationResult *
reconcile_with_meanwhile (Fixture *f, GBytes *bundle, Meanwhile *m)
{
  g_autoptr (GError) error = NULL;
  m->other = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  tally_issuer_set_commit_hook (f->issuer, meanwhile_hook, m);
  Tally__ReconciliationResult *result = test_reconcile (f->issuer, bundle, NULL);
  tally_issuer_set_commit_hook (f->issuer, NULL, NULL);
  g_clear_pointer (&m->other, tally_issuer_free);
  g_assert_cmpuint (m->ran, ==, 1);
  return result;
}

/* The payer carries the payee's receipt, but the payee is certified only
 * after the bundle verified: under the lock the issuer finds it, checks
 * the receipt against its key, and settles the payment, as if the whole
 * reconciliation had run after the certification. */
static void
test_verify_counts_receipt_of_payee_certified_meanwhile (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new_uncertified ();
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, r1);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);

  Meanwhile m = { .reg = b, .certify = TRUE };
  g_autoptr (Tally__ReconciliationResult) result = reconcile_with_meanwhile (f, bundle, &m);
  g_assert_nonnull (result);
  /* Settled: nothing in flight, the value moved from Alice's view to
   * Bob's. */
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.offline, ==, 3000);
  g_assert_true (end.balanced);
}

/* The payee is certified after the bundle verified, but the receipt the
 * payer carries is not its receipt for this permission: signed by another
 * key, or for another amount.  Under the lock the issuer checks it against
 * the payee's key now known and does not count it: the payment stays in
 * flight until the payee's own bundle settles it, and a receipt that does
 * not check is no error and no fraud. */
static void
test_verify_ignores_bad_receipt_of_payee_certified_meanwhile (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) mallory = test_register_new_uncertified ();
  for (guint i = 0; i < 2; i++) {
    g_autofree char *alice = g_strdup_printf ("alice%u", i);
    test_account_open (f->issuer, alice, 10000);
    if (i == 0)
      test_account_open (f->issuer, "bob", 0);
    g_autoptr (TestRegister) a = test_register_new (f->issuer, alice);
    g_autoptr (TestRegister) b = test_register_new_uncertified ();
    g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
    g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
    /* Mallory's signature, or Bob's over an amount the permission does
     * not pay. */
    g_autoptr (GBytes) r1 =
      i == 0 ? test_sign_receipt (mallory->sk, p1, 1000) : test_sign_receipt (b->sk, p1, 999);
    g_autoptr (TestBundle) ba = test_bundle_new (a);
    test_bundle_add_spent (ba, p1, r1);
    g_autoptr (GBytes) bundle = test_bundle_sign (ba);
    TallyAudit before = test_audit (f->issuer);

    Meanwhile m = { .reg = b, .certify = TRUE };
    g_autoptr (Tally__ReconciliationResult) result = reconcile_with_meanwhile (f, bundle, &m);
    g_assert_nonnull (result);
    TallyAudit end = test_audit (f->issuer);
    g_assert_cmpint (end.in_flight, ==, before.in_flight + 1000);
    g_assert_cmpint (end.offline, ==, before.offline - 1000);
    g_assert_cmpint (end.online, ==, before.online);
    g_assert_cmpuint (end.fraud_proofs, ==, 0);
    g_assert_true (end.balanced);
  }
}

/* The payer carries a good receipt of a payee still uncertified when the
 * issuer looks again under the lock: nothing to check it against, so the
 * payment stays in flight, and that is no error. */
static void
test_verify_keeps_receipt_of_payee_still_uncertified_in_flight (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new_uncertified ();
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, r1);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);

  Meanwhile m = { .reg = NULL };
  g_autoptr (Tally__ReconciliationResult) result = reconcile_with_meanwhile (f, bundle, &m);
  g_assert_nonnull (result);
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 1000);
  g_assert_cmpint (end.offline, ==, 2000);
  g_assert_cmpuint (end.fraud_proofs, ==, 0);
  g_assert_true (end.balanced);
}

/* A register revoked after its bundle verified is booked as revoked: its
 * result says so and renews no certificate. */
static void
test_verify_books_revocation_made_meanwhile (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);

  Meanwhile m = { .reg = a, .certify = FALSE };
  g_autoptr (Tally__ReconciliationResult) result = reconcile_with_meanwhile (f, bundle, &m);
  g_assert_true (result->revoked);
  g_assert_null (result->renewed_certificate);
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpuint (end.revoked, ==, 1);
  g_assert_cmpint (end.in_flight, ==, 1000);
  g_assert_true (end.balanced);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/verify/refuses-forgery-while-lock-is-held",
       test_verify_refuses_forgery_while_lock_is_held);
  /* On SQLite a writer waits for the lock only as long as its busy
   * timeout: proven where the wait has no bound. */
  if (test_store_is_pg ())
    ADD ("/issuer/verify/checks-signatures-while-lock-is-held",
         test_verify_checks_signatures_while_lock_is_held);
  ADD ("/issuer/verify/counts-receipt-of-payee-certified-meanwhile",
       test_verify_counts_receipt_of_payee_certified_meanwhile);
  ADD ("/issuer/verify/ignores-bad-receipt-of-payee-certified-meanwhile",
       test_verify_ignores_bad_receipt_of_payee_certified_meanwhile);
  ADD ("/issuer/verify/keeps-receipt-of-payee-still-uncertified-in-flight",
       test_verify_keeps_receipt_of_payee_still_uncertified_in_flight);
  ADD ("/issuer/verify/books-revocation-made-meanwhile",
       test_verify_books_revocation_made_meanwhile);
#undef ADD

  return g_test_run ();
}
