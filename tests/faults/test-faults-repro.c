/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Defects tally-faults found, each reduced to the few calls that show it.
 * A test here asserts the behaviour the protocol requires.  While a defect
 * stands, meson marks its test should_fail, so a fix turns it into a
 * failure to be noticed and the mark removed; a fixed one stays as a
 * regression test.
 */
#include <sqlite3.h>
#include <string.h>

#include "tally-issuer.h"
#include "tally-register.h"
#include "wallet-fixture.h"

#define T FIXTURE_NOW

/*
 * Found by: tally-faults --seed 1 --only 16 (step 36); fixed.
 *
 * A payer that acknowledges a receipt records that the payee caches "the
 * certificate we paid it with", so that its next payment to that payee
 * sends only the certificate's hash (protocol.md 4.2).  It recorded its
 * current certificate.  When the certificate was renewed between the spend
 * and the acknowledgement (a reconciliation while the receipt was lost,
 * then the receipt delivered again or returned by the issuer), the payee
 * held only the old one and refused every later payment from this payer
 * with NotFound.  The register now records the certificate it held when it
 * made the permission.
 */
static void
test_acknowledge_after_renewal (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FixtureIssuer) issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  g_autofree char *root = fixture_tmpdir ();
  g_autofree char *dir_a = g_build_filename (root, "payer", NULL);
  g_autofree char *dir_b = g_build_filename (root, "payee", NULL);
  g_autoptr (TallyRegister) payer = fixture_register_new (issuer, dir_a, NULL, T);
  g_autoptr (TallyRegister) payee = fixture_register_new (issuer, dir_b, NULL, T);
  fixture_register_fund (issuer, payer, 1, 5000, T);

  /* A payment whose receipt does not reach the payer. */
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (payee, 1000, "lost receipt", T + 1, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert_b = tally_register_get_certificate (payee);
  g_autoptr (Tally__SignedEnvelope) cert_b_env = fixture_envelope (cert_b);
  g_autoptr (GBytes) permission = tally_register_spend (payer, cert_b_env, req, T + 2, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert_a_old = tally_register_get_certificate (payer);
  g_autoptr (Tally__SignedEnvelope) cert_a_old_env = fixture_envelope (cert_a_old);
  g_autoptr (Tally__SignedEnvelope) permission_env = fixture_envelope (permission);
  g_autoptr (GBytes) receipt =
    tally_register_receive (payee, cert_a_old_env, permission_env, NULL, NULL, T + 3, &error);
  g_assert_no_error (error);

  /* The payer's certificate is renewed, as every reconciliation does. */
  Tally__Limits limits = fixture_limits ();
  g_autoptr (GBytes) renewed = fixture_certify (issuer, tally_register_get_public_key (payer),
                                                &limits, T, T + FIXTURE_YEAR, 2);
  gsize len;
  const guint8 *data = g_bytes_get_data (renewed, &len);
  g_assert_true (tally_register_install_certificate (payer, data, len, T + 4, &error));
  g_assert_no_error (error);

  /* The lost receipt arrives after all. */
  g_autoptr (Tally__SignedEnvelope) receipt_env = fixture_envelope (receipt);
  g_assert_true (tally_register_acknowledge (payer, receipt_env, &error));
  g_assert_no_error (error);

  /* Whenever the payer would send only the hash of its current
   * certificate, the payee must be able to look it up. */
  guint8 current[TALLY_HASH_BYTES];
  fixture_body_hash (renewed, current);
  g_autoptr (Tally__SignedEnvelope) cached =
    tally_register_lookup_certificate (payee, current, &error);
  if (tally_register_peer_has_certificate (payer, tally_register_get_id (payee)))
    g_assert_no_error (error);
  else
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);

  g_clear_pointer (&payer, tally_register_free);
  g_clear_pointer (&payee, tally_register_free);
  fixture_remove_tree (root);
}

/* --- a clone cashing out ---------------------------------------------------- */

static TallyRegister *
issued_register (TallyIssuer *issuer, const char *dir, const char *account, gint64 load)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, tally_issuer_get_public_key (issuer), &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_account_create (issuer, account, &error));
  g_assert_true (tally_issuer_deposit (issuer, account, 10000, &error));
  Tally__Limits limits = fixture_limits ();
  g_autoptr (GBytes) cert = tally_issuer_certify (issuer, tally_register_get_public_key (reg),
                                                  account, NULL, &limits, T, T + FIXTURE_YEAR, &error);
  g_assert_no_error (error);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (reg, data, len, T, &error));
  if (load > 0) {
    g_autoptr (GBytes) voucher =
      tally_issuer_sell_voucher (issuer, tally_register_get_id (reg), load, T, &error);
    g_assert_no_error (error);
    data = g_bytes_get_data (voucher, &len);
    g_assert_true (tally_register_load (reg, data, len, T, &error));
  }
  g_assert_no_error (error);
  return g_steal_pointer (&reg);
}

static void
reconcile (TallyIssuer *issuer, TallyRegister *reg, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bundle = tally_register_export_bundle (reg, now, &error);
  g_assert_no_error (error);
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  g_autoptr (GBytes) result = tally_issuer_reconcile (issuer, data, len, now, NULL, &error);
  g_assert_no_error (error);
  data = g_bytes_get_data (result, &len);
  g_assert_true (tally_register_apply_result (reg, data, len, now, &error));
  g_assert_no_error (error);
}

/*
 * Found by: the fork figures of tally-faults (the value forks created was
 * about twice the fraud exposure reported), reduced by hand.
 *
 * A register is copied; the original defunds its 1000; the copy pays 300
 * to an honest payee with the same counter (proven: CounterReused) and then
 * defunds its remaining 700 with the next counter, which extends the
 * copy's own chain.  The issuer used to credit both defunds: 1700 left a
 * register funded with 1000.  Now a defund is credited only up to the
 * register's evidence (protocol.md 5.5): the copy's 700 is refused, the
 * honest payee keeps its 300, and that 300 is the exposure reported.
 */
static void
test_clone_defunds_twice (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = fixture_tmpdir ();
  g_autofree char *dir_i = g_build_filename (root, "issuer", NULL);
  g_autofree char *dir_a = g_build_filename (root, "a", NULL);
  g_autofree char *dir_c = g_build_filename (root, "a-clone", NULL);
  g_autofree char *dir_b = g_build_filename (root, "b", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir_i, "Bank", FIXTURE_CURRENCY, T, &error);
  g_assert_no_error (error);

  g_autoptr (TallyRegister) a = issued_register (issuer, dir_a, "a", 1000);
  g_autoptr (TallyRegister) b = issued_register (issuer, dir_b, "b", 0);
  gint64 online_before;
  g_assert_true (tally_issuer_account_balance (issuer, "a", &online_before, &error));
  g_clear_pointer (&a, tally_register_free);
  fixture_copy_dir (dir_a, dir_c);
  a = tally_register_open (dir_a, &error);
  g_assert_no_error (error);
  g_autoptr (TallyRegister) c = tally_register_open (dir_c, &error);
  g_assert_no_error (error);

  g_autoptr (GBytes) defund_a = tally_register_defund (a, T + 10, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) permission = fixture_pay (c, b, 300, "from the copy", T + 20, NULL);
  g_autoptr (GBytes) defund_c = tally_register_defund (c, T + 30, &error);
  g_assert_no_error (error);

  TallyAudit before;
  g_assert_true (tally_issuer_audit (issuer, &before, &error));
  reconcile (issuer, a, T + 40);
  reconcile (issuer, b, T + 50);
  reconcile (issuer, c, T + 60);
  TallyAudit after;
  g_assert_true (tally_issuer_audit (issuer, &after, &error));
  g_assert_true (after.identity);
  g_assert_false (after.balanced);
  g_assert_cmpuint (after.fraud_proofs, >, 0);

  gint64 online_after;
  g_assert_true (tally_issuer_account_balance (issuer, "a", &online_after, &error));
  gint64 paid_out = online_after - online_before + 300; /* to the account and to b */
  gint64 over_spent = paid_out - 1000;
  g_test_message ("paid out %" G_GINT64_FORMAT " from 1000, fraud exposure %" G_GINT64_FORMAT,
                  paid_out, after.fraud_exposure - before.fraud_exposure);
  g_assert_cmpint (online_after - online_before, ==, 1000);
  g_assert_cmpint (over_spent, ==, after.fraud_exposure - before.fraud_exposure);
  g_assert_cmpint (after.refused - before.refused, ==, 700);

  g_clear_pointer (&a, tally_register_free);
  g_clear_pointer (&b, tally_register_free);
  g_clear_pointer (&c, tally_register_free);
  g_clear_pointer (&issuer, tally_issuer_free);
  fixture_remove_tree (root);
}

/* --- an owner cashing out an unbacked permission ------------------------------ */

/* What root does to a register it owns: raise the stored balance. */
static void
raise_balance (const char *dir, gint64 raise)
{
  g_autofree char *path = g_build_filename (dir, "register.db", NULL);
  g_autofree char *sql =
    g_strdup_printf ("UPDATE register_state SET balance = balance + %" G_GINT64_FORMAT, raise);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
}

/*
 * Found by: the owner adversary of tally-faults (check 7: an adversarial
 * register's account gained more than its defunds and its unheld
 * permissions could be backed by; tally-faults --seed 777 --only 593),
 * reduced by hand.
 *
 * The register is sold 1000 and pays all of it to an honest payee.  Its
 * owner raises the stored balance by 3000 and spends 3000 more to the
 * same payee, but never delivers the permission.  Its bundle lists the
 * permission: the issuer proves OVERDRAWN (deficit 3000) and revokes it.
 * The payee reconciles after the permission expired without it, and the
 * issuer reclaims it: the full 3000 goes to the owner's online account.
 * A defund claiming the same value would have been credited nothing
 * (evidence 1000 − 1000 − 3000 < 0), but a reclaim is credited without
 * asking the evidence, so the owner turns an edited number into 3000 of
 * online money it can withdraw.  The audit reports the 3000 as exposure
 * (the register's view is −3000), so the books say where it went, but
 * nothing stopped it.  Fixed: a reclaim is refunded only up to the
 * payer's evidence before the permission (protocol.md 5.1); here that is
 * nothing, and the 3000 go back to the register's view, refused.
 */
static void
test_reclaim_credits_unbacked_permission (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = fixture_tmpdir ();
  g_autofree char *dir_i = g_build_filename (root, "issuer", NULL);
  g_autofree char *dir_a = g_build_filename (root, "a", NULL);
  g_autofree char *dir_b = g_build_filename (root, "b", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir_i, "Bank", FIXTURE_CURRENCY, T, &error);
  g_assert_no_error (error);

  g_autoptr (TallyRegister) a = issued_register (issuer, dir_a, "a", 1000);
  g_autoptr (TallyRegister) b = issued_register (issuer, dir_b, "b", 0);
  gint64 online_before;
  g_assert_true (tally_issuer_account_balance (issuer, "a", &online_before, &error));

  g_autoptr (GBytes) honest = fixture_pay (a, b, 1000, "all it has", T + 10, NULL);
  g_clear_pointer (&a, tally_register_free);
  raise_balance (dir_a, 3000);
  a = tally_register_open (dir_a, &error);
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (a), ==, 3000);

  /* Spent, never delivered. */
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (b, 3000, "never delivered", T + 20, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert_b = tally_register_get_certificate (b);
  g_autoptr (Tally__SignedEnvelope) cert_b_env = fixture_envelope (cert_b);
  g_autoptr (GBytes) unbacked = tally_register_spend (a, cert_b_env, req, T + 20, &error);
  g_assert_no_error (error);

  reconcile (issuer, a, T + 30);
  g_autoptr (GPtrArray) flagged = tally_issuer_audit_registers (issuer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (flagged->len, ==, 1);
  const TallyAuditRegister *row = flagged->pdata[0];
  g_assert_true (row->revoked);
  g_assert_cmpint (row->deficit, ==, 3000);
  g_assert_true (row->proof_kinds & (1u << TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN));

  /* The payee reconciles past the expiry without it: reclaimed. */
  reconcile (issuer, b, T + 2 * 3600);
  TallyAudit audit;
  g_assert_true (tally_issuer_audit (issuer, &audit, &error));
  g_assert_true (audit.identity);
  gint64 online_after;
  g_assert_true (tally_issuer_account_balance (issuer, "a", &online_after, &error));
  g_test_message ("the owner's account gained %" G_GINT64_FORMAT " from an evidence of 1000 "
                  "all paid to b; exposure %" G_GINT64_FORMAT,
                  online_after - online_before, audit.fraud_exposure);
  /* Its evidence, 1000 sold, is held by b: nothing backs any online credit. */
  g_assert_cmpint (online_after - online_before, ==, 0);
  g_assert_cmpint (audit.refused, >=, 3000);

  g_clear_pointer (&a, tally_register_free);
  g_clear_pointer (&b, tally_register_free);
  g_clear_pointer (&issuer, tally_issuer_free);
  fixture_remove_tree (root);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/faults/repro/payer-assumes-payee-caches-certificate-renewed-after-spend",
                   test_acknowledge_after_renewal);
  g_test_add_func ("/faults/repro/clone-cashes-out-only-what-its-evidence-backs",
                   test_clone_defunds_twice);
  g_test_add_func ("/faults/repro/reclaim-refunds-only-what-the-payers-evidence-backs",
                   test_reclaim_credits_unbacked_permission);
  return g_test_run ();
}
