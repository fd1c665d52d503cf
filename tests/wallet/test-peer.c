/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The peer check (wallet/tally-peer.h) is one rule: tally_register_check_peer,
 * the payer's spend and the payee's receive and receive-again refuse the
 * same certificate with the same error, word for word, and leave the
 * register as it was.  The handshake's side of the same promise is in
 * tests/pairing/test-peer-check.c.
 */
#include <string.h>

#include "tally-peer.h"
#include "tally-register.h"
#include "wallet-fixture.h"

#define NOW FIXTURE_NOW

/* The largest age tallyd accepts: max_revocation_age_hours up to
 * G_MAXUINT64 / 3600 (daemon/tally-config.c). */
#define AGE_CAP ((G_MAXUINT64 / 3600) * 3600)

typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  TallyRegister *payer;
  TallyRegister *payee;
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  f->issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  f->root = fixture_tmpdir ();
  g_autofree char *payer_dir = g_build_filename (f->root, "payer", NULL);
  g_autofree char *payee_dir = g_build_filename (f->root, "payee", NULL);
  f->payer = fixture_register_new (f->issuer, payer_dir, NULL, NOW);
  f->payee = fixture_register_new (f->issuer, payee_dir, NULL, NOW);
  fixture_register_fund (f->issuer, f->payer, 1, 10000, NOW);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->payer, tally_register_free);
  g_clear_pointer (&f->payee, tally_register_free);
  fixture_remove_tree (f->root);
  g_free (f->root);
  fixture_issuer_free (f->issuer);
}

static void
assert_same_error (const GError *a, const GError *b, int code)
{
  g_assert_error (a, TALLY_ERROR, code);
  g_assert_error (b, TALLY_ERROR, code);
  g_assert_cmpstr (a->message, ==, b->message);
}

/* A request of the payee and the payer's honest permission for it. */
static GBytes *
honest_permission (Fixture *f, Tally__PaymentRequest **request)
{
  g_autoptr (GError) error = NULL;
  *request = tally_register_new_request (f->payee, 900, "cake", NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  GBytes *perm = tally_register_spend (f->payer, env, *request, NOW, &error);
  g_assert_no_error (error);
  return perm;
}

/* Payee side: the payer's @cert is refused alike by the peer check, receive
 * and receive-again, with @code. */
static void
assert_payee_callers_agree (Fixture *f, GBytes *cert, const TallyAcceptPolicy *policy, int code)
{
  g_autoptr (Tally__PaymentRequest) request = NULL;
  g_autoptr (GBytes) perm = honest_permission (f, &request);
  g_autoptr (Tally__SignedEnvelope) perm_env = fixture_envelope (perm);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autofree char *before = fixture_register_dump (f->payee, TRUE);

  g_autoptr (GError) check_error = NULL, receive_error = NULL, again_error = NULL;
  g_assert_null (tally_register_check_peer (f->payee, cert_env, policy, NOW, &check_error));
  g_assert_null (tally_register_receive (f->payee, cert_env, perm_env, request->nonce.data, policy,
                                         NOW, &receive_error));
  g_assert_null (
    tally_register_receive_again (f->payee, cert_env, perm_env, policy, NOW, &again_error));
  assert_same_error (check_error, receive_error, code);
  assert_same_error (check_error, again_error, code);

  g_autofree char *after = fixture_register_dump (f->payee, TRUE);
  g_assert_cmpstr (before, ==, after);
}

/* Payer side: the payee's @cert is refused alike by the peer check and
 * spend, with @code. */
static void
assert_payer_callers_agree (Fixture *f, GBytes *cert, int code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) request =
    tally_register_new_request (f->payee, 900, "cake", NOW, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autofree char *before = fixture_register_dump (f->payer, TRUE);

  g_autoptr (GError) check_error = NULL, spend_error = NULL;
  g_assert_null (tally_register_check_peer (f->payer, cert_env, NULL, NOW, &check_error));
  g_assert_null (tally_register_spend (f->payer, cert_env, request, NOW, &spend_error));
  assert_same_error (check_error, spend_error, code);

  g_autofree char *after = fixture_register_dump (f->payer, TRUE);
  g_assert_cmpstr (before, ==, after);
}

/* One test per requirement; @data is the FixturePeerFault. */
static void
test_refuses_faulty_peer (Fixture *f, gconstpointer data)
{
  FixturePeerFault fault = GPOINTER_TO_INT (data);
  int code = fixture_peer_fault_code (fault);

  /* The payee first, so the payer's revocation list (if any) comes later
   * and does not stop the honest permission. */
  g_autoptr (GBytes) payer_cert =
    fixture_peer_certificate (f->issuer, f->payer, f->payee, fault, NOW);
  assert_payee_callers_agree (f, payer_cert, NULL, code);

  g_autoptr (GBytes) payee_cert =
    fixture_peer_certificate (f->issuer, f->payee, f->payer, fault, NOW);
  assert_payer_callers_agree (f, payee_cert, code);
}

static void
hold_revocation_list (Fixture *f, TallyRegister *reg, guint64 issued_at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = fixture_revocation_list (f->issuer, 3, issued_at, NULL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (reg, env, &error));
  g_assert_no_error (error);
}

static void
test_revocation_age_near_cap_does_not_overflow (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = AGE_CAP };
  hold_revocation_list (f, f->payee, NOW - 10);
  /* issued_at + the cap is past 2^64: wrapped, it would lie in the past. */
  guint64 sum;
  g_assert_false (g_uint64_checked_add (&sum, NOW - 10, AGE_CAP));

  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (f->payer);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (payer_cert);
  g_autoptr (Tally__RegisterCertificate) checked =
    tally_register_check_peer (f->payee, cert_env, &policy, NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (checked);

  g_autoptr (Tally__PaymentRequest) request = NULL;
  g_autoptr (GBytes) perm = honest_permission (f, &request);
  g_autoptr (Tally__SignedEnvelope) perm_env = fixture_envelope (perm);
  g_autoptr (GBytes) receipt = tally_register_receive (f->payee, cert_env, perm_env,
                                                       request->nonce.data, &policy, NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (receipt);
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 900);
}

static void
test_refuses_revocation_list_older_than_policy (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = 3600 };
  hold_revocation_list (f, f->payee, NOW - 3601);
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (f->payer);
  assert_payee_callers_agree (f, payer_cert, &policy, TALLY_ERROR_STALE_REVOCATION_LIST);
}

static void
test_refuses_missing_revocation_list_under_policy (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = 3600 };
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (f->payer);
  assert_payee_callers_agree (f, payer_cert, &policy, TALLY_ERROR_STALE_REVOCATION_LIST);
}

static void
test_accepts_revocation_list_exactly_at_policy_age (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = 3600 };
  hold_revocation_list (f, f->payee, NOW - 3600);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (f->payer);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (payer_cert);
  g_autoptr (Tally__RegisterCertificate) checked =
    tally_register_check_peer (f->payee, cert_env, &policy, NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (checked);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD_FAULT(path, fault)                                                                     \
  g_test_add (path, Fixture, GINT_TO_POINTER (fault), setup, test_refuses_faulty_peer, teardown)
  ADD_FAULT ("/peer-check/refuses-revoked-peer", FIXTURE_PEER_REVOKED);
  ADD_FAULT ("/peer-check/refuses-peer-of-other-currency", FIXTURE_PEER_OTHER_CURRENCY);
  ADD_FAULT ("/peer-check/refuses-expired-peer", FIXTURE_PEER_EXPIRED);
  ADD_FAULT ("/peer-check/refuses-peer-not-yet-valid", FIXTURE_PEER_NOT_YET_VALID);
  ADD_FAULT ("/peer-check/refuses-peer-of-wrong-issuer", FIXTURE_PEER_WRONG_ISSUER);
  ADD_FAULT ("/peer-check/refuses-itself-as-peer", FIXTURE_PEER_ITSELF);
  ADD_FAULT ("/peer-check/refuses-peer-with-invalid-display-name", FIXTURE_PEER_BAD_DISPLAY_NAME);
#undef ADD_FAULT
#define ADD(path, fn) g_test_add (path, Fixture, NULL, setup, fn, teardown)
  ADD ("/peer-check/revocation-age-near-cap-does-not-overflow",
       test_revocation_age_near_cap_does_not_overflow);
  ADD ("/peer-check/refuses-revocation-list-older-than-policy",
       test_refuses_revocation_list_older_than_policy);
  ADD ("/peer-check/refuses-missing-revocation-list-under-policy",
       test_refuses_missing_revocation_list_under_policy);
  ADD ("/peer-check/accepts-revocation-list-exactly-at-policy-age",
       test_accepts_revocation_list_exactly_at_policy_age);
#undef ADD

  return g_test_run ();
}
