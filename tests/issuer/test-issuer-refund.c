/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lost-register refund (issuer/tally-issuer-refund.c,
 * docs/threat-model.md 2): a register its owner reported lost is refunded
 * to the account once its lost-register window has passed, once, at the
 * issuer's own view of it; value that surfaces later from its payees is
 * credited to them and taken back from the account up to the refund, and
 * what is beyond is exposure.  Every step leaves the audit's identity
 * holding.
 */
#include <sqlite3.h>
#include <string.h>

#include "faults-vfs.h"
#include "issuer-test-util.h"

#define VOUCHER 5000

typedef struct
{
  char *tmp;
  char *dir;
  TallyIssuer *issuer;
  TestRegister *alice; /* the register alice reports lost */
  TestRegister *bob;   /* a stall alice's register paid */
  guint64 due;         /* alice's register's refund_due once reported */
} Fixture;

/* No value created or lost: the identity holds and every view is its
 * evidence; with @balanced, no exposure either. */
static TallyAudit
assert_audit (Fixture *f, gboolean balanced)
{
  TallyAudit a = test_audit (f->issuer);
  g_assert_true (a.identity);
  g_assert_cmpuint (a.views_unbacked, ==, 0);
  g_assert_cmpint (a.balanced, ==, balanced);
  return a;
}

/* The audit's row for @id. */
static TallyAuditRegister
audit_register (Fixture *f, const guint8 *id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = tally_issuer_audit_registers (f->issuer, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < rows->len; i++) {
    TallyAuditRegister *r = rows->pdata[i];
    if (memcmp (r->register_id, id, TALLY_ID_BYTES) == 0) {
      TallyAuditRegister out = *r;
      out.account = NULL;
      return out;
    }
  }
  g_assert_not_reached ();
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuer-refund-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir = g_build_filename (f->tmp, "issuer", NULL);
  f->issuer = test_issuer_create (f->dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 2; i++) {
    const char *name = i == 0 ? "alice" : "bob";
    g_assert_true (tally_issuer_account_create (f->issuer, name, &error));
    g_assert_true (tally_issuer_deposit (f->issuer, name, 10000, &error));
    g_assert_no_error (error);
  }
  f->alice = test_register_new (f->issuer, "alice");
  f->bob = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) v =
    tally_issuer_sell_voucher (f->issuer, f->alice->id, VOUCHER, TEST_NOW, &error);
  g_assert_no_error (error);
  /* Certified for 30 days (test_register_new ()). */
  f->due = TEST_NOW + 30 * 86400 + TALLY_ISSUER_PERMISSION_LIFETIME_MAX;
  g_assert_cmpuint (tally_issuer_lost_refund_due (TEST_NOW, TEST_NOW + 30 * 86400), ==, f->due);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->alice, test_register_free);
  g_clear_pointer (&f->bob, test_register_free);
  g_clear_pointer (&f->issuer, tally_issuer_free);
  test_remove_tree (f->tmp);
  g_free (f->dir);
  g_free (f->tmp);
}

static void
report_lost (Fixture *f, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_report_lost (f->issuer, "alice", f->alice->id, now, &error));
  g_assert_no_error (error);
}

static TallyRefundReport
refund (Fixture *f, guint64 now)
{
  g_autoptr (GError) error = NULL;
  TallyRefundReport r;
  memset (&r, 0xaa, sizeof r);
  g_assert_true (tally_issuer_refund_lost (f->issuer, now, &r, &error));
  g_assert_no_error (error);
  return r;
}

/* Bob's bundle, made at @at and booked at @at, crediting him with
 * @permissions that alice's register signed: the payee's halves. */
static void
bob_reconciles (Fixture *f, GPtrArray *permissions, guint64 at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestBundle) b = test_bundle_new_at (f->bob, at);
  for (guint i = 0; i < permissions->len; i++) {
    g_autoptr (GBytes) receipt = test_receipt (f->bob, permissions->pdata[i]);
    test_bundle_add_received (b, f->alice->cert, permissions->pdata[i], receipt);
  }
  g_autoptr (GBytes) signed_bundle = test_bundle_sign (b);
  gsize len;
  const guint8 *data = g_bytes_get_data (signed_bundle, &len);
  TallyReconcileReport report;
  g_autoptr (GBytes) result = tally_issuer_reconcile (f->issuer, data, len, at, &report, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  g_assert_cmpuint (report.received_new, ==, permissions->len);
}

/* Permissions alice's register signed to bob before it was lost, expiring
 * within the window as every permission must. */
static GPtrArray *
alice_pays_bob (Fixture *f, const gint64 *amounts, guint n)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (out, test_permission (f->alice, f->bob, amounts[i]));
  return out;
}

static void
test_refund_not_before_window_passes (Fixture *f, gconstpointer data)
{
  report_lost (f, TEST_NOW);
  assert_audit (f, TRUE);

  TallyRefundReport r = refund (f, f->due - 1);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpint (r.refunded_amount, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 1);
  g_assert_cmpuint (r.next_due, ==, f->due);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpuint (row.lost_at, ==, TEST_NOW);
  g_assert_cmpuint (row.refund_due, ==, f->due);
  g_assert_cmpuint (row.refunded_at, ==, 0);
  g_assert_cmpint (row.view, ==, VOUCHER);
  assert_audit (f, TRUE);

  /* Reporting it again later does not move the window. */
  report_lost (f, f->due - 10);
  r = refund (f, f->due - 1);
  g_assert_cmpuint (r.refunded, ==, 0);

  r = refund (f, f->due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, VOUCHER);
  g_assert_cmpuint (r.waiting, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  row = audit_register (f, f->alice->id);
  g_assert_cmpint (row.view, ==, 0);
  g_assert_cmpint (row.refunded, ==, VOUCHER);
  g_assert_cmpuint (row.refunded_at, ==, f->due);
  assert_audit (f, TRUE);
}

/* Nothing is refunded at @early, nor a second before @due; all of it at
 * @due. */
static void
assert_refund_due (Fixture *f, guint64 early, guint64 due)
{
  g_assert_cmpuint (early, <, due);
  TallyRefundReport r = refund (f, early);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 1);
  g_assert_cmpuint (r.next_due, ==, due);
  g_assert_cmpuint (audit_register (f, f->alice->id).refund_due, ==, due);
  r = refund (f, due - 1);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
  r = refund (f, due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, VOUCHER);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  assert_audit (f, TRUE);
}

static void
test_older_longer_certificate_delays_refund (Fixture *f, gconstpointer data)
{
  /* The operator shortened the policy: alice's register is certified
   * again, a day later, for 7 days.  The 30-day certificate it was given
   * first is still valid until TEST_NOW + 30 days, and payees take it. */
  g_autoptr (GError) error = NULL;
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GBytes) shorter =
    tally_issuer_certify (f->issuer, f->alice->pk, "alice", NULL, &limits, TEST_NOW + 86400,
                          TEST_NOW + 8 * 86400, &error);
  g_assert_no_error (error);
  g_assert_nonnull (shorter);
  report_lost (f, TEST_NOW + 2 * 86400);

  /* Not when the newest certificate and its permissions have expired, but
   * when the oldest, longer one and every permission under it have. */
  guint64 newest_expired = TEST_NOW + 8 * 86400 + TALLY_ISSUER_PERMISSION_LIFETIME_MAX;
  assert_refund_due (f, newest_expired, f->due);
}

static void
test_renewed_certificate_delays_refund (Fixture *f, gconstpointer data)
{
  /* An empty bundle renews the register's certificate for another 30 days
   * from when it reconciles. */
  g_autoptr (GError) error = NULL;
  guint64 at = TEST_NOW + 5 * 86400;
  g_autoptr (TestBundle) b = test_bundle_new_at (f->alice, at);
  g_autoptr (GBytes) signed_bundle = test_bundle_sign (b);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (signed_bundle, &len);
  TallyReconcileReport report;
  g_autoptr (GBytes) result = tally_issuer_reconcile (f->issuer, bytes, len, at, &report, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  report_lost (f, at + 60);

  assert_refund_due (f, f->due, at + 30 * 86400 + TALLY_ISSUER_PERMISSION_LIFETIME_MAX);
}

static void
test_refund_window_starts_no_earlier_than_report (Fixture *f, gconstpointer data)
{
  /* Reported long after every certificate expired: the refund still waits
   * a permission's lifetime from the report. */
  guint64 lost_at = f->due + 10 * 86400;
  report_lost (f, lost_at);
  assert_refund_due (f, lost_at, lost_at + TALLY_ISSUER_PERMISSION_LIFETIME_MAX);
}

static void
test_refund_never_for_register_not_reported_lost (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  /* Revoked by the operator, not reported lost: its value stays put. */
  g_assert_true (tally_issuer_revoke (f->issuer, f->alice->id, TEST_NOW, &error));
  g_assert_no_error (error);
  TallyRefundReport r = refund (f, G_MAXUINT64 - 1);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
  assert_audit (f, TRUE);
}

static void
test_refund_paid_once_across_runs_and_reopen (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  report_lost (f, TEST_NOW);
  TallyRefundReport r = refund (f, f->due);
  g_assert_cmpuint (r.refunded, ==, 1);
  TallyAudit first = assert_audit (f, TRUE);

  r = refund (f, f->due + 1);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpint (r.refunded_amount, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 0);

  /* A new process on the same store (the refund and its mark are one
   * transaction: either both are there or neither). */
  g_clear_pointer (&f->issuer, tally_issuer_free);
  f->issuer = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  r = refund (f, f->due + 86400);
  g_assert_cmpuint (r.refunded, ==, 0);
  report_lost (f, f->due + 86400);
  r = refund (f, f->due + 2 * 86400);
  g_assert_cmpuint (r.refunded, ==, 0);

  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  TallyAudit again = assert_audit (f, TRUE);
  g_assert_cmpint (again.online, ==, first.online);
  g_assert_cmpint (again.offline, ==, first.offline);
}

static void
test_refund_is_issuers_view_not_owners_claim (Fixture *f, gconstpointer data)
{
  /* The register paid bob 1200 and never reconciled; bob did, before the
   * refund.  The owner would claim the 5000 the register was loaded with. */
  const gint64 amounts[] = { 1200 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 1);
  report_lost (f, TEST_NOW);
  bob_reconciles (f, paid, TEST_NOW + 3600);
  assert_audit (f, TRUE);

  TallyRefundReport r = refund (f, f->due);
  g_assert_cmpint (r.refunded_amount, ==, VOUCHER - 1200);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 1200);
  assert_audit (f, TRUE);

  /* The register's own bundle, brought in after the refund, defunds what
   * it says it holds: nothing of that reaches the account again. */
  g_autoptr (GError) error = NULL;
  g_autoptr (TestBundle) b = test_bundle_new_at (f->alice, f->due + 10);
  test_bundle_add_spent (b, paid->pdata[0], NULL);
  g_autoptr (GBytes) defund = test_defund (f->alice, VOUCHER - 1200);
  test_bundle_add_spent (b, defund, NULL);
  g_autoptr (GBytes) signed_bundle = test_bundle_sign (b);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (signed_bundle, &len);
  TallyReconcileReport report;
  g_autoptr (GBytes) result =
    tally_issuer_reconcile (f->issuer, bytes, len, f->due + 20, &report, &error);
  g_assert_no_error (error);
  g_assert_cmpint (report.refused, ==, VOUCHER - 1200);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 1200);
  assert_audit (f, TRUE);
}

static void
test_late_payment_credited_to_payee_and_taken_from_refund (Fixture *f, gconstpointer data)
{
  const gint64 amounts[] = { 1500 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 1);
  report_lost (f, TEST_NOW);
  refund (f, f->due);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);

  /* Bob reconciles only now: he is credited in full, and the account that
   * got the refund gives the 1500 back. */
  bob_reconciles (f, paid, f->due + 100);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 1500);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpint (row.view, ==, 0);
  g_assert_cmpint (row.refunded, ==, VOUCHER);
  g_assert_cmpint (row.recovered, ==, 1500);
  g_assert_cmpint (row.exposure, ==, 0);
  TallyAudit a = assert_audit (f, TRUE);
  g_assert_cmpint (a.fraud_exposure, ==, 0);
  /* Bob holds the payment in his register's view. */
  g_assert_cmpint (a.offline, ==, 1500);
}

static void
test_late_value_beyond_refund_is_exposure (Fixture *f, gconstpointer data)
{
  /* Paid out to bob: 4000, then 2000 more than the register held. */
  const gint64 amounts[] = { 2000, 2000, 3000 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 3);
  report_lost (f, TEST_NOW);
  refund (f, f->due);

  bob_reconciles (f, paid, f->due + 100);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpint (row.recovered, ==, VOUCHER);
  g_assert_cmpint (row.view, ==, -2000);
  g_assert_cmpint (row.exposure, ==, 2000);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpint (a.fraud_exposure, ==, 2000);
  g_assert_cmpint (a.offline, ==, 7000);
}

static void
test_late_value_taken_only_from_what_account_holds (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const gint64 amounts[] = { 1500 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 1);
  report_lost (f, TEST_NOW);
  refund (f, f->due);
  /* Alice loads the refund onto her new register, keeping 500. */
  g_autoptr (TestRegister) spare = test_register_new (f->issuer, "alice");
  g_autoptr (GBytes) v =
    tally_issuer_sell_voucher (f->issuer, spare->id, 10000 - 500, f->due + 1, &error);
  g_assert_no_error (error);

  bob_reconciles (f, paid, f->due + 100);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 0);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpint (row.recovered, ==, 500);
  g_assert_cmpint (row.exposure, ==, 1000);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpint (a.fraud_exposure, ==, 1000);
}

static void
test_negative_view_refunds_nothing (Fixture *f, gconstpointer data)
{
  /* The register's payees surfaced more than it held before the refund:
   * nothing is refunded, and the shortfall is exposure. */
  const gint64 amounts[] = { 3000, 3000 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 2);
  report_lost (f, TEST_NOW);
  bob_reconciles (f, paid, TEST_NOW + 3600);
  TallyRefundReport r = refund (f, f->due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpint (a.fraud_exposure, ==, 1000);
}

/* Runs @sql on the issuer's store behind its back: the PostgreSQL store
 * its issuer.conf names, or its SQLite database. */
static void
tamper (Fixture *f, const char *sql)
{
  g_autofree char *conf = g_build_filename (f->dir, "issuer.conf", NULL);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  if (g_key_file_load_from_file (kf, conf, G_KEY_FILE_NONE, NULL)) {
    g_autofree char *spec = g_key_file_get_string (kf, "issuer", "store", NULL);
    g_assert_true (g_str_has_prefix (spec, "postgresql:"));
    g_free (test_pg_run (spec + strlen ("postgresql:"), sql));
    return;
  }
  g_autofree char *db_path = g_build_filename (f->dir, "issuer.db", NULL);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (db_path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
}

/* Each register is refunded in its own transaction: one whose refund
 * fails (its account, raised behind the issuer's back, would pass
 * TALLY_AMOUNT_MAX) is skipped and reported, and the others are refunded;
 * it is tried again on the next run. */
static void
test_one_failing_refund_blocks_no_other (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = tally_issuer_sell_voucher (f->issuer, f->bob->id, 1000, TEST_NOW, &error);
  g_assert_no_error (error);
  report_lost (f, TEST_NOW);
  g_assert_true (tally_issuer_report_lost (f->issuer, "bob", f->bob->id, TEST_NOW, &error));
  g_assert_no_error (error);
  g_autofree char *raise =
    g_strdup_printf ("UPDATE accounts SET balance = %" G_GINT64_FORMAT " WHERE name = 'alice'",
                     TALLY_AMOUNT_MAX - VOUCHER + 1);
  tamper (f, raise);

  TallyRefundReport r = refund (f, f->due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, 1000);
  g_assert_cmpuint (r.failed, ==, 1);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, TALLY_AMOUNT_MAX - VOUCHER + 1);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpuint (row.refunded_at, ==, 0);
  g_assert_cmpint (row.view, ==, VOUCHER);

  /* Once the account is back in range, the next run refunds it. */
  tamper (f, "UPDATE accounts SET balance = 5000 WHERE name = 'alice'");
  r = refund (f, f->due + 1);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpuint (r.failed, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 5000 + VOUCHER);
  g_assert_cmpuint (audit_register (f, f->alice->id).refunded_at, ==, f->due + 1);
}

/* A register revoked without a lost_at, as every register reported lost
 * before store version 5 is: never refunded until it is reported again,
 * and then refunded once its window from that report passes
 * (docs/issuer-store.md). */
static void
test_revoked_register_is_refunded_once_reported_lost (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_revoke (f->issuer, f->alice->id, TEST_NOW, &error));
  g_assert_no_error (error);
  TallyRefundReport r = refund (f, f->due + 86400);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);

  guint64 reported = f->due + 86400;
  report_lost (f, reported);
  guint64 due = tally_issuer_lost_refund_due (reported, TEST_NOW + 30 * 86400);
  r = refund (f, due - 1);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpuint (r.waiting, ==, 1);
  r = refund (f, due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, VOUCHER);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  assert_audit (f, TRUE);
}

/* Mallory holds the keys of both registers: alice's signs bob's a payment
 * above its limit (test_default_limits ()), tainted once booked. */
static GPtrArray *
alice_pays_bob_over_limit (Fixture *f)
{
  const gint64 amounts[] = { 5001 };
  return alice_pays_bob (f, amounts, 1);
}

static void
report_bob_lost (Fixture *f, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_report_lost (f->issuer, "bob", f->bob->id, now, &error));
  g_assert_no_error (error);
}

/* Booked before the refund: the tainted payment is in bob's view, but a
 * defund could not take it out, and neither does the refund. */
static void
test_tainted_value_is_never_refunded (Fixture *f, gconstpointer data)
{
  g_autoptr (GPtrArray) paid = alice_pays_bob_over_limit (f);
  bob_reconciles (f, paid, TEST_NOW + 3600);
  g_assert_cmpint (audit_register (f, f->bob->id).view, ==, 5001);
  report_bob_lost (f, TEST_NOW + 3600);
  TallyRefundReport r = refund (f, f->due + 3600);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
  TallyAuditRegister row = audit_register (f, f->bob->id);
  g_assert_cmpint (row.refunded, ==, 0);
  /* Frozen in the revoked register's view, where the audit shows it. */
  g_assert_cmpint (row.view, ==, 5001);
  g_assert_true (row.revoked);
  assert_audit (f, FALSE);
  /* Nor on a later run. */
  r = refund (f, f->due + 7200);
  g_assert_cmpuint (r.refunded, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
}

/* Surfacing after the refund: settled against the account only as far as
 * bob's untainted evidence backs it, which is nothing. */
static void
test_tainted_value_is_never_refunded_after_refund (Fixture *f, gconstpointer data)
{
  g_autoptr (GPtrArray) paid = alice_pays_bob_over_limit (f);
  report_bob_lost (f, TEST_NOW);
  TallyRefundReport r = refund (f, f->due);
  g_assert_cmpuint (r.refunded, ==, 1);
  g_assert_cmpint (r.refunded_amount, ==, 0);

  bob_reconciles (f, paid, f->due + 100);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
  TallyAuditRegister row = audit_register (f, f->bob->id);
  g_assert_cmpint (row.refunded, ==, 0);
  g_assert_cmpint (row.view, ==, 5001);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpint (a.online, ==, 20000 - VOUCHER);
}

/* The register's own bundle, signed with its key, made at @at and booked
 * at @at: the payments in @paid, each with bob's receipt. */
static TallyReconcileReport
alice_reconciles (Fixture *f, GPtrArray *paid, guint64 at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestBundle) b = test_bundle_new_at (f->alice, at);
  for (guint i = 0; i < paid->len; i++) {
    g_autoptr (GBytes) receipt = test_receipt (f->bob, paid->pdata[i]);
    test_bundle_add_spent (b, paid->pdata[i], receipt);
  }
  g_autoptr (GBytes) signed_bundle = test_bundle_sign (b);
  gsize len;
  const guint8 *data = g_bytes_get_data (signed_bundle, &len);
  TallyReconcileReport report;
  g_autoptr (GBytes) result = tally_issuer_reconcile (f->issuer, data, len, at, &report, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  return report;
}

/* Alice spends the refund on a new register, all but @keep. */
static void
alice_spends_refund (Fixture *f, gint64 keep, guint64 at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) spare = test_register_new (f->issuer, "alice");
  g_autoptr (GBytes) v = tally_issuer_sell_voucher (
    f->issuer, spare->id, test_balance (f->issuer, "alice") - keep, at, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
}

static void
test_refund_shortfall_is_exposure_not_fraud (Fixture *f, gconstpointer data)
{
  /* The register paid bob 1500 of the 5000 it held, within its evidence.
   * It was refunded 5000; alice spent that before bob reconciled. */
  const gint64 amounts[] = { 1500 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 1);
  report_lost (f, TEST_NOW);
  refund (f, f->due);
  alice_spends_refund (f, 0, f->due + 1);
  bob_reconciles (f, paid, f->due + 100);

  /* Its own bundle comes in after: it spent 1500 of 5000, no overdraw.
   * What the refund paid and could not take back is exposure, named
   * against the register, with no fraud proof. */
  TallyReconcileReport report = alice_reconciles (f, paid, f->due + 200);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpuint (row.proofs, ==, 0);
  g_assert_cmpint (row.deficit, ==, 0);
  g_assert_cmpint (row.refunded, ==, VOUCHER);
  g_assert_cmpint (row.recovered, ==, 0);
  g_assert_cmpint (row.view, ==, -1500);
  g_assert_cmpint (row.exposure, ==, 1500);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpuint (a.fraud_proofs, ==, 0);
  g_assert_cmpint (a.fraud_exposure, ==, 1500);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 0);
}

static void
test_refunded_register_overdraw_still_proven (Fixture *f, gconstpointer data)
{
  /* The register signed 7000 to bob holding 5000: 2000 beyond anything it
   * ever held, whatever the refund did.  The refund paid 5000 (bob came
   * only after) and alice spent it. */
  const gint64 amounts[] = { 2000, 2000, 3000 };
  g_autoptr (GPtrArray) paid = alice_pays_bob (f, amounts, 3);
  report_lost (f, TEST_NOW);
  refund (f, f->due);
  alice_spends_refund (f, 0, f->due + 1);
  bob_reconciles (f, paid, f->due + 100);

  TallyReconcileReport report = alice_reconciles (f, paid, f->due + 200);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  TallyAuditRegister row = audit_register (f, f->alice->id);
  g_assert_cmpuint (row.proofs, ==, 1);
  g_assert_true (row.proof_kinds & (1u << TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN));
  /* The deficit is the register's own, 2000, not the 7000 the refund left
   * unrecovered. */
  g_assert_cmpint (row.deficit, ==, 2000);
  g_assert_cmpint (row.exposure, ==, 7000);
  TallyAudit a = assert_audit (f, FALSE);
  g_assert_cmpint (a.fraud_exposure, ==, 7000);
}

/* SQLite only: the disk fills at every write of the refund's transaction
 * in turn.  Each failed run leaves nothing paid and nothing marked; the run
 * that gets through pays once, and nothing pays again. */
static void
test_refund_once_whatever_write_fails (Fixture *f, gconstpointer data)
{
  report_lost (f, TEST_NOW);
  TallyAudit before = assert_audit (f, TRUE);
  guint failures = 0;
  for (guint writes = 0;; writes++) {
    g_assert_cmpuint (writes, <, 1000);
    g_autoptr (GError) error = NULL;
    TallyRefundReport r = { 0 };
    faults_vfs_arm (f->tmp, writes);
    gboolean ok = tally_issuer_refund_lost (f->issuer, f->due, &r, &error);
    guint refused = faults_vfs_refused ();
    faults_vfs_disarm ();
    if (ok) {
      g_assert_no_error (error);
      g_assert_cmpuint (refused, ==, 0);
      g_assert_cmpuint (r.refunded, ==, 1);
      break;
    }
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
    g_assert_cmpuint (refused, >, 0);
    failures++;
    g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - VOUCHER);
    TallyAuditRegister row = audit_register (f, f->alice->id);
    g_assert_cmpuint (row.refunded_at, ==, 0);
    g_assert_cmpint (row.view, ==, VOUCHER);
    TallyAudit after = assert_audit (f, TRUE);
    g_assert_cmpint (after.online, ==, before.online);
  }
  /* The commit writes at least once: the loop saw a failure. */
  g_assert_cmpuint (failures, >, 0);
  g_test_message ("the refund failed at %u write(s) before it got through", failures);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  TallyRefundReport again = refund (f, f->due + 1);
  g_assert_cmpuint (again.refunded, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  assert_audit (f, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/refund/not-before-window-passes", test_refund_not_before_window_passes);
  ADD ("/issuer/refund/an-older-longer-certificate-delays-the-refund",
       test_older_longer_certificate_delays_refund);
  ADD ("/issuer/refund/a-renewed-certificate-delays-the-refund",
       test_renewed_certificate_delays_refund);
  ADD ("/issuer/refund/window-starts-no-earlier-than-the-report",
       test_refund_window_starts_no_earlier_than_report);
  ADD ("/issuer/refund/never-for-register-not-reported-lost",
       test_refund_never_for_register_not_reported_lost);
  ADD ("/issuer/refund/paid-once-across-runs-and-reopen",
       test_refund_paid_once_across_runs_and_reopen);
  ADD ("/issuer/refund/is-issuers-view-not-owners-claim",
       test_refund_is_issuers_view_not_owners_claim);
  ADD ("/issuer/refund/late-payment-credited-to-payee-and-taken-from-refund",
       test_late_payment_credited_to_payee_and_taken_from_refund);
  ADD ("/issuer/refund/late-value-beyond-refund-is-exposure",
       test_late_value_beyond_refund_is_exposure);
  ADD ("/issuer/refund/late-value-taken-only-from-what-account-holds",
       test_late_value_taken_only_from_what_account_holds);
  ADD ("/issuer/refund/negative-view-refunds-nothing", test_negative_view_refunds_nothing);
  ADD ("/issuer/refund/refund-shortfall-is-exposure-not-fraud",
       test_refund_shortfall_is_exposure_not_fraud);
  ADD ("/issuer/refund/tainted-value-is-never-refunded", test_tainted_value_is_never_refunded);
  ADD ("/issuer/refund/one-failing-refund-blocks-no-other",
       test_one_failing_refund_blocks_no_other);
  ADD ("/issuer/refund/revoked-register-is-refunded-once-reported-lost",
       test_revoked_register_is_refunded_once_reported_lost);
  ADD ("/issuer/refund/tainted-value-is-never-refunded-after-refund",
       test_tainted_value_is_never_refunded_after_refund);
  ADD ("/issuer/refund/refunded-register-overdraw-still-proven",
       test_refunded_register_overdraw_still_proven);
  if (!test_store_is_pg ()) {
    /* Before any store opens: every SQLite connection goes through it. */
    faults_vfs_install ();
    ADD ("/issuer/refund/once-whatever-write-fails", test_refund_once_whatever_write_fails);
  }
  return g_test_run ();
}
