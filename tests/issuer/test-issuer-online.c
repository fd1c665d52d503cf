/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer operations behind tally-issuerd: account tokens, enrolment by
 * proof of possession, vouchers bought with an account's credential, and
 * reconciliation that answers a resent bundle with the same bytes.
 */
#include <string.h>

#include "issuer-test-util.h"

typedef TestIssuerFixture Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_setup (f, "tally-issuer-online-XXXXXX");
  g_autoptr (GError) error = NULL;
  for (guint i = 0; i < 2; i++) {
    const char *name = i == 0 ? "alice" : "bob";
    g_assert_true (tally_issuer_account_create (f->issuer, name, &error));
    g_assert_true (tally_issuer_deposit (f->issuer, name, 10000, &error));
    g_assert_no_error (error);
  }
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_teardown (f);
}

static void
assert_audit_equal (const TallyAudit *a, const TallyAudit *b)
{
  g_assert_cmpint (a->issued, ==, b->issued);
  g_assert_cmpint (a->online, ==, b->online);
  g_assert_cmpint (a->offline, ==, b->offline);
  g_assert_cmpint (a->in_flight, ==, b->in_flight);
  g_assert_cmpint (a->fraud_exposure, ==, b->fraud_exposure);
  g_assert_cmpuint (a->registers, ==, b->registers);
  g_assert_cmpuint (a->revoked, ==, b->revoked);
  g_assert_cmpuint (a->fraud_proofs, ==, b->fraud_proofs);
  g_assert_cmpint (a->identity, ==, b->identity);
}

static void
assert_token (Fixture *f, const char *account, const guint8 *token, gsize len, gboolean valid)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = tally_issuer_account_token_check (f->issuer, account, token, len, &error);
  g_assert_cmpint (ok, ==, valid);
  if (!valid)
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_AUTHORIZED);
}

static void
test_token_opens_only_its_own_account (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 alice[TALLY_ACCOUNT_TOKEN_BYTES], bob[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (tally_issuer_account_token_new (f->issuer, "alice", alice, &error));
  g_assert_true (tally_issuer_account_token_new (f->issuer, "bob", bob, &error));
  g_assert_no_error (error);
  g_assert_false (memcmp (alice, bob, sizeof alice) == 0);

  assert_token (f, "alice", alice, sizeof alice, TRUE);
  assert_token (f, "bob", bob, sizeof bob, TRUE);
  assert_token (f, "bob", alice, sizeof alice, FALSE);
  assert_token (f, "alice", alice, sizeof alice - 1, FALSE);
  assert_token (f, "nobody", alice, sizeof alice, FALSE);

  /* A new token replaces the old one. */
  guint8 again[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (tally_issuer_account_token_new (f->issuer, "alice", again, &error));
  assert_token (f, "alice", alice, sizeof alice, FALSE);
  assert_token (f, "alice", again, sizeof again, TRUE);
}

static void
test_token_for_unknown_account_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_false (tally_issuer_account_token_new (f->issuer, "nobody", token, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  /* An account without a token is closed to every token. */
  memset (token, 0, sizeof token);
  assert_token (f, "alice", token, sizeof token, FALSE);
}

static GBytes *
enrol (Fixture *f,
       const TestRegister *reg,
       const char *account,
       const guint8 *proof,
       GError **error)
{
  Tally__Limits limits;
  test_default_limits (&limits);
  return tally_issuer_enrol (f->issuer, account, reg->pk, proof, &limits, TEST_NOW,
                             TEST_NOW + 7 * 86400, NULL, error);
}

static void
test_enrol_certifies_with_accounts_display_name (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (
    tally_issuer_account_set_display_name (f->issuer, "alice", "Alice's Bakery", &error));
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (GBytes) cert = enrol (f, reg, "alice", proof, &error);
  g_assert_no_error (error);

  g_autoptr (Tally__SignedEnvelope) env = test_envelope (cert);
  g_autoptr (Tally__RegisterCertificate) c =
    tally_certificate_verify (env, tally_issuer_get_public_key (f->issuer), TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (c->display_name, ==, "Alice's Bakery");
  g_assert_cmpmem (c->register_id.data, c->register_id.len, reg->id, sizeof reg->id);
  g_assert_cmpuint (test_audit (f->issuer).registers, ==, 1);
}

static void
test_enrol_refuses_bad_proof (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  TallyAudit before = test_audit (f->issuer);
  guint8 proof[TALLY_SIGNATURE_BYTES];

  /* Signed by another key. */
  test_enrol_proof (f->issuer, other, "alice", proof);
  g_autoptr (GError) e1 = NULL;
  g_assert_null (enrol (f, reg, "alice", proof, &e1));
  g_assert_error (e1, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);

  /* Signed for another account: a stolen proof does not move accounts. */
  test_enrol_proof (f->issuer, reg, "bob", proof);
  g_autoptr (GError) e2 = NULL;
  g_assert_null (enrol (f, reg, "alice", proof, &e2));
  g_assert_error (e2, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (GError) e3 = NULL;
  test_enrol_proof (f->issuer, reg, "nobody", proof);
  g_assert_null (enrol (f, reg, "nobody", proof, &e3));
  g_assert_error (e3, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);

  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
  g_assert_cmpuint (after.registers, ==, 0);
}

/* A register whose enrolment answer was lost sends it again: the same
 * register is certified anew for the same account, nothing else. */
static void
test_enrol_again_renews_the_same_register (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (GBytes) cert = enrol (f, reg, "alice", proof, &error);
  g_assert_no_error (error);

  TallyAudit before = test_audit (f->issuer);
  Tally__Limits limits;
  test_default_limits (&limits);
  gboolean renewed = FALSE;
  g_autoptr (GBytes) again =
    tally_issuer_enrol (f->issuer, "alice", reg->pk, proof, &limits, TEST_NOW + 60,
                        TEST_NOW + 7 * 86400, &renewed, &error);
  g_assert_no_error (error);
  g_assert_true (renewed);
  g_autoptr (Tally__SignedEnvelope) e1 = test_envelope (cert);
  g_autoptr (Tally__SignedEnvelope) e2 = test_envelope (again);
  g_autoptr (Tally__RegisterCertificate) c1 =
    tally_certificate_verify (e1, tally_issuer_get_public_key (f->issuer), TEST_NOW, &error);
  g_autoptr (Tally__RegisterCertificate) c2 =
    tally_certificate_verify (e2, tally_issuer_get_public_key (f->issuer), TEST_NOW + 60, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (c1->register_id.data, c1->register_id.len, c2->register_id.data,
                   c2->register_id.len);
  g_assert_cmpuint (c2->serial, >, c1->serial);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
}

/* The same key for another account, even with a valid proof for it: the
 * register stays its first account's. */
static void
test_enrol_refuses_a_key_enrolled_for_another_account (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (GBytes) cert = enrol (f, reg, "alice", proof, &error);
  g_assert_no_error (error);

  TallyAudit before = test_audit (f->issuer);
  test_enrol_proof (f->issuer, reg, "bob", proof);
  g_assert_null (enrol (f, reg, "bob", proof, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
}

static void
test_voucher_only_for_accounts_own_registers (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  TallyAudit before = test_audit (f->issuer);

  guint8 request[TALLY_VOUCHER_REQUEST_ID_BYTES];
  randombytes_buf (request, sizeof request);
  g_assert_null (tally_issuer_sell_voucher_to_account (f->issuer, "bob", reg->id, 1000, request,
                                                       TEST_NOW, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000);
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 10000);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);

  g_autoptr (GBytes) v = tally_issuer_sell_voucher_to_account (f->issuer, "alice", reg->id, 1000,
                                                               request, TEST_NOW, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 9000);
}

static void
test_voucher_request_retried_sells_once (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) other = test_register_new (f->issuer, "alice");
  guint8 request[TALLY_VOUCHER_REQUEST_ID_BYTES];
  randombytes_buf (request, sizeof request);
  gboolean repeated = TRUE;
  g_autoptr (GBytes) first = tally_issuer_sell_voucher_to_account (
    f->issuer, "alice", reg->id, 1000, request, TEST_NOW, &repeated, &error);
  g_assert_no_error (error);
  g_assert_false (repeated);
  TallyAudit after_first = test_audit (f->issuer);

  /* The answer was lost: the same request later gets the same voucher. */
  g_autoptr (GBytes) again = tally_issuer_sell_voucher_to_account (
    f->issuer, "alice", reg->id, 1000, request, TEST_NOW + 30, &repeated, &error);
  g_assert_no_error (error);
  g_assert_true (repeated);
  g_assert_true (g_bytes_equal (first, again));
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 9000);

  /* The same id for another amount or register is refused. */
  g_assert_null (tally_issuer_sell_voucher_to_account (f->issuer, "alice", reg->id, 2000, request,
                                                       TEST_NOW, &repeated, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY);
  g_clear_error (&error);
  g_assert_null (tally_issuer_sell_voucher_to_account (f->issuer, "alice", other->id, 1000, request,
                                                       TEST_NOW, &repeated, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&after_first, &after);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 9000);
}

/* A bundle with a voucher, a payment to @payee and a defund. */
static GBytes *
busy_bundle (Fixture *f, TestRegister *payer, const TestRegister *payee)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) voucher =
    tally_issuer_sell_voucher (f->issuer, payer->id, 5000, TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) p = test_permission (payer, payee, 1500);
  g_autoptr (GBytes) r = test_receipt (payee, p);
  g_autoptr (GBytes) d = test_defund (payer, 1000);
  g_autoptr (TestBundle) b = test_bundle_new (payer);
  test_bundle_add_voucher (b, voucher);
  test_bundle_add_spent (b, p, r);
  test_bundle_add_spent (b, d, NULL);
  return test_bundle_sign (b);
}

static void
test_reconcile_once_same_bundle_same_bytes (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (bundle, &len);

  gboolean repeated = TRUE;
  g_autoptr (GBytes) first =
    tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW + 10, &repeated, &error);
  g_assert_no_error (error);
  g_assert_false (repeated);
  g_autoptr (Tally__ReconciliationResult) res = test_result_open (f->issuer, first);
  g_assert_cmpuint (res->settled_counter, ==, 2);
  TallyAudit after_first = test_audit (f->issuer);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 5000 + 1000);

  /* Later, after a restart: the same bytes again, nothing booked twice. */
  g_clear_pointer (&f->issuer, tally_issuer_free);
  f->issuer = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) second =
    tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW + 20, &repeated, &error);
  g_assert_no_error (error);
  g_assert_true (repeated);
  g_assert_true (g_bytes_equal (first, second));
  TallyAudit after_second = test_audit (f->issuer);
  assert_audit_equal (&after_first, &after_second);
  g_assert_true (after_second.identity);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 5000 + 1000);
}

static void
test_reconcile_once_failure_keeps_nothing (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestBundle) tb = test_bundle_new (a);
  g_autoptr (GBytes) forged = test_bundle_sign_with (tb, b->sk);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (forged, &len);
  TallyAudit before = test_audit (f->issuer);

  for (guint i = 0; i < 2; i++) {
    g_autoptr (GError) error = NULL;
    gboolean repeated = TRUE;
    g_assert_null (
      tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW, &repeated, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    g_assert_false (repeated);
  }
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
}

static void
test_lost_register_revoked_by_its_owner_only (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  TallyAudit before = test_audit (f->issuer);

  g_assert_false (tally_issuer_report_lost (f->issuer, "bob", reg->id, TEST_NOW, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  TallyAudit after_refusal = test_audit (f->issuer);
  assert_audit_equal (&before, &after_refusal);
  g_assert_cmpuint (after_refusal.revoked, ==, 0);

  for (guint i = 0; i < 2; i++) {
    g_assert_true (tally_issuer_report_lost (f->issuer, "alice", reg->id, TEST_NOW, &error));
    g_assert_no_error (error);
    g_autoptr (GBytes) bytes = tally_issuer_get_revocation_list (f->issuer, &error);
    g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
    g_autoptr (Tally__RevocationList) list =
      tally_revocation_list_verify (env, tally_issuer_get_public_key (f->issuer), &error);
    g_assert_no_error (error);
    g_assert_true (tally_revocation_list_contains (list, reg->id));
    /* Reported twice, published once. */
    g_assert_cmpuint (list->serial, ==, 2);
  }
  g_assert_cmpuint (test_audit (f->issuer).revoked, ==, 1);
}

static GBytes *
buy (Fixture *f, TestRegister *reg, guint8 request_byte, guint64 now, gboolean *repeated)
{
  g_autoptr (GError) error = NULL;
  guint8 request[TALLY_VOUCHER_REQUEST_ID_BYTES];
  memset (request, request_byte, sizeof request);
  GBytes *v = tally_issuer_sell_voucher_to_account (f->issuer, "alice", reg->id, 100, request, now,
                                                    repeated, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
  return v;
}

static TallyPruneReport
prune (Fixture *f, guint64 now, guint64 keep)
{
  g_autoptr (GError) error = NULL;
  TallyPruneReport r;
  memset (&r, 0xaa, sizeof r);
  g_assert_true (tally_issuer_prune_kept (f->issuer, now, keep, &r, &error));
  g_assert_no_error (error);
  return r;
}

/* Kept answers older than the cut go; younger ones stay and still answer
 * retries; a bundle sent again after its result went books nothing. */
static void
test_prune_kept_answers_older_than_keep (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const guint64 day = 86400;
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (bundle, &len);
  gboolean repeated = TRUE;
  g_autoptr (GBytes) result =
    tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW + 10, &repeated, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) old_voucher = buy (f, a, 1, TEST_NOW + 20, &repeated);
  g_assert_false (repeated);
  g_autoptr (GBytes) new_voucher = buy (f, a, 2, TEST_NOW + 10 * day, &repeated);
  g_assert_false (repeated);

  /* Nothing is old enough yet. */
  TallyPruneReport r = prune (f, TEST_NOW + 10 * day, 30 * day);
  g_assert_cmpuint (r.pruned, ==, 0);
  g_assert_cmpuint (r.kept, ==, 3);
  g_assert_cmpuint (r.undated, ==, 0);

  r = prune (f, TEST_NOW + 10 * day, 5 * day);
  g_assert_cmpuint (r.pruned, ==, 2);
  g_assert_cmpuint (r.kept, ==, 1);
  r = prune (f, TEST_NOW + 10 * day, 5 * day);
  g_assert_cmpuint (r.pruned, ==, 0);
  g_assert_cmpuint (r.kept, ==, 1);

  /* The young voucher still answers its retry with the same bytes. */
  gint64 balance = test_balance (f->issuer, "alice");
  g_autoptr (GBytes) again = buy (f, a, 2, TEST_NOW + 10 * day, &repeated);
  g_assert_true (repeated);
  g_assert_true (g_bytes_equal (again, new_voucher));
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, balance);

  /* The old bundle again: a new result, but nothing booked twice. */
  TallyAudit before = test_audit (f->issuer);
  g_autoptr (GBytes) fresh =
    tally_issuer_reconcile_once (f->issuer, bytes, len, TEST_NOW + 10 * day, &repeated, &error);
  g_assert_no_error (error);
  g_assert_false (repeated);
  g_assert_false (g_bytes_equal (fresh, result));
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
  g_assert_true (after.identity);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, balance);
}

/* More kept rows than one batch (500 a transaction): every old one goes,
 * every young one stays, however the batches fall. */
static void
test_prune_more_than_a_batch (Fixture *f, gconstpointer data)
{
  const guint64 day = 86400;
  const guint n = 1250;
  guint old = 0, young = 0;
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  for (guint i = 0; i < n; i++) {
    g_autoptr (GError) error = NULL;
    guint8 request[TALLY_VOUCHER_REQUEST_ID_BYTES] = { 0 };
    /* Young and old interleaved in key order. */
    request[0] = (guint8) (i >> 8);
    request[1] = (guint8) i;
    gboolean repeated = TRUE;
    gboolean is_young = i % 8 == 0;
    guint64 at = is_young ? TEST_NOW + 10 * day : TEST_NOW;
    if (is_young)
      young++;
    else
      old++;
    g_autoptr (GBytes) v = tally_issuer_sell_voucher_to_account (f->issuer, "alice", a->id, 1,
                                                                 request, at, &repeated, &error);
    g_assert_no_error (error);
    g_assert_false (repeated);
  }
  g_assert_cmpuint (old, >, 2 * 500);
  TallyPruneReport r = prune (f, TEST_NOW + 10 * day, 5 * day);
  g_assert_cmpuint (r.pruned, ==, old);
  g_assert_cmpuint (r.kept, ==, young);
  g_assert_cmpuint (r.undated, ==, 0);
  r = prune (f, TEST_NOW + 10 * day, 5 * day);
  g_assert_cmpuint (r.pruned, ==, 0);
  g_assert_cmpuint (r.kept, ==, young);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/online/token/opens-only-its-own-account", test_token_opens_only_its_own_account);
  ADD ("/issuer/online/token/unknown-account-refused", test_token_for_unknown_account_refused);
  ADD ("/issuer/online/enrol/certifies-with-accounts-display-name",
       test_enrol_certifies_with_accounts_display_name);
  ADD ("/issuer/online/enrol/refuses-bad-proof-and-changes-nothing", test_enrol_refuses_bad_proof);
  ADD ("/issuer/online/enrol/again-renews-the-same-register",
       test_enrol_again_renews_the_same_register);
  ADD ("/issuer/online/enrol/refuses-a-key-enrolled-for-another-account",
       test_enrol_refuses_a_key_enrolled_for_another_account);
  ADD ("/issuer/online/voucher/only-for-accounts-own-registers",
       test_voucher_only_for_accounts_own_registers);
  ADD ("/issuer/online/voucher/retried-request-sells-once",
       test_voucher_request_retried_sells_once);
  ADD ("/issuer/online/lost/revoked-by-its-owner-only",
       test_lost_register_revoked_by_its_owner_only);
  ADD ("/issuer/online/reconcile-once/same-bundle-same-bytes-books-once",
       test_reconcile_once_same_bundle_same_bytes);
  ADD ("/issuer/online/reconcile-once/refused-bundle-keeps-nothing",
       test_reconcile_once_failure_keeps_nothing);
  ADD ("/issuer/online/prune/kept-answers-older-than-keep",
       test_prune_kept_answers_older_than_keep);
  ADD ("/issuer/online/prune/more-than-a-batch", test_prune_more_than_a_batch);
  return g_test_run ();
}
