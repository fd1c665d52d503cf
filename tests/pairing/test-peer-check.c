/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The handshake's side of the one peer check (wallet/tally-peer.h): for
 * the same certificate, a payer session refuses an offer with the very
 * error tally_register_spend gives, and a payee session refuses a pay
 * message with the very error tally_register_receive gives.  The scripted
 * peer of script.c carries the faulty certificate.
 */
#include <string.h>

#include "script.h"
#include "tally-peer.h"
#include "tally-session.h"
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

/* Feeds @msg to @session, expects it to fail and @reg to stay as it was;
 * returns the error. */
static GError *
session_refusal (TallySession *session, TallyRegister *reg, GBytes *msg)
{
  g_autofree char *before = fixture_register_dump (reg, TRUE);
  GError *error = NULL;
  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (session, g_bytes_get_data (msg, NULL),
                                        g_bytes_get_size (msg), NOW, &reply, &error));
  g_assert_nonnull (error);
  g_assert_cmpint (tally_session_get_state (session), ==, TALLY_SESSION_STATE_FAILED);
  g_autofree char *after = fixture_register_dump (reg, TRUE);
  g_assert_cmpstr (before, ==, after);
  return error;
}

static void
assert_same_error (const GError *session_error, const GError *register_error, int code)
{
  g_assert_error (session_error, TALLY_ERROR, code);
  g_assert_error (register_error, TALLY_ERROR, code);
  g_assert_cmpstr (session_error->message, ==, register_error->message);
}

static GBytes *
honest_permission (Fixture *f, const Tally__OfferBody *offer)
{
  g_autoptr (GError) error = NULL;
  GBytes *perm =
    tally_register_spend (f->payer, offer->payee_certificate, offer->request, NOW, &error);
  g_assert_no_error (error);
  return perm;
}

/* Payer, step 3: the scripted payer reveals its nonce to @payee, which
 * answers nothing. */
static void
deliver_reveal (Script *s, TallySession *payee)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reveal = script_reveal (s, NULL, 0);
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (reveal, NULL),
                                       g_bytes_get_size (reveal), NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
}

/* Payee side: a pay message carrying the payer's @cert fails in the
 * session as tally_register_receive fails with @policy. */
static void
assert_payee_session_agrees (Fixture *f, GBytes *cert, const TallyAcceptPolicy *policy, int code)
{
  g_autoptr (GError) error = NULL;
  Script s;
  script_init (&s, TRUE);
  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, 700, "tea", policy, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) hello = script_hello (&s, TALLY_PROTOCOL_VERSION, SCRIPT_EPH_BYTES);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), NOW, &offer, &error));
  g_assert_no_error (error);
  script_take_offer (&s, offer);
  deliver_reveal (&s, payee);

  g_autoptr (GBytes) perm = honest_permission (f, s.offer);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autoptr (Tally__SignedEnvelope) perm_env = fixture_envelope (perm);
  g_autoptr (GError) register_error = NULL;
  g_assert_null (tally_register_receive (f->payee, cert_env, perm_env, s.offer->request->nonce.data,
                                         policy, NOW, &register_error));

  g_autoptr (GBytes) pay = script_pay (&s, cert, perm, f->payer, NULL);
  g_autoptr (GError) session_error = session_refusal (payee, f->payee, pay);
  assert_same_error (session_error, register_error, code);
  script_clear (&s);
}

/* Payer side: an offer carrying the payee's @cert fails in the session as
 * tally_register_spend fails. */
static void
assert_payer_session_agrees (Fixture *f, GBytes *cert, int code)
{
  g_autoptr (GError) error = NULL;
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autoptr (GError) register_error = NULL;
  g_assert_null (tally_register_spend (f->payer, cert_env, r.request, NOW, &register_error));

  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, r.request, f->payee, NULL);
  g_autoptr (GError) session_error = session_refusal (r.payer, f->payer, offer);
  assert_same_error (session_error, register_error, code);
  payer_rig_clear (&r);
}

/* One test per requirement; @data is the FixturePeerFault. */
static void
test_session_refuses_faulty_peer_as_register_does (Fixture *f, gconstpointer data)
{
  FixturePeerFault fault = GPOINTER_TO_INT (data);
  int code = fixture_peer_fault_code (fault);

  /* The payee first, so the payer's revocation list (if any) comes later
   * and does not stop the honest permission. */
  g_autoptr (GBytes) payer_cert =
    fixture_peer_certificate (f->issuer, f->payer, f->payee, fault, NOW);
  assert_payee_session_agrees (f, payer_cert, NULL, code);

  g_autoptr (GBytes) payee_cert =
    fixture_peer_certificate (f->issuer, f->payee, f->payer, fault, NOW);
  assert_payer_session_agrees (f, payee_cert, code);
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

/* issued_at + the largest configurable age is past 2^64: the payer still
 * trusts its fresh list, as the register's own check does. */
static void
test_payer_revocation_age_near_cap_does_not_overflow (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = AGE_CAP };
  hold_revocation_list (f, f->payer, NOW - 10);

  g_autoptr (GError) error = NULL;
  Script s;
  script_init (&s, FALSE);
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, &policy);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__PaymentRequest) request =
    tally_register_new_request (f->payee, 900, "cake", NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  g_autoptr (GBytes) offer = script_offer (&s, hello, cert, request, f->payee, NULL);

  g_autoptr (GBytes) reply = NULL;
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), NOW, &reply, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_CONFIRMING);

  g_autoptr (Tally__SignedEnvelope) cert_env = fixture_envelope (cert);
  g_autoptr (Tally__RegisterCertificate) checked =
    tally_register_check_peer (f->payer, cert_env, &policy, NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (checked);
  script_clear (&s);
}

static void
test_payee_revocation_age_near_cap_does_not_overflow (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = AGE_CAP };
  hold_revocation_list (f, f->payee, NOW - 10);

  g_autoptr (GError) error = NULL;
  Script s;
  script_init (&s, TRUE);
  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, 700, "tea", &policy, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) hello = script_hello (&s, TALLY_PROTOCOL_VERSION, SCRIPT_EPH_BYTES);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), NOW, &offer, &error));
  g_assert_no_error (error);
  script_take_offer (&s, offer);
  deliver_reveal (&s, payee);
  g_autoptr (GBytes) perm = honest_permission (f, s.offer);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) pay = script_pay (&s, cert, perm, f->payer, NULL);

  g_autoptr (GBytes) receipt = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (pay, NULL), g_bytes_get_size (pay),
                                       NOW, &receipt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_DONE);
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 700);
  script_clear (&s);
}

static void
test_payee_refuses_revocation_list_older_than_policy (Fixture *f, gconstpointer data)
{
  const TallyAcceptPolicy policy = { .max_revocation_age = 3600 };
  hold_revocation_list (f, f->payee, NOW - 3601);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  assert_payee_session_agrees (f, cert, &policy, TALLY_ERROR_STALE_REVOCATION_LIST);
}

/* The session hands on the name the peer check accepted: the certified one,
 * or "" for a peer certified without one. */
static void
test_session_reports_certified_peer_name (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) named =
    fixture_certify_named (f->issuer, tally_register_get_public_key (f->payee), "Caf\u00e9 Lumen",
                           NULL, NOW - 10, NOW + FIXTURE_YEAR, 2);
  g_assert_true (tally_register_install_certificate (f->payee, g_bytes_get_data (named, NULL),
                                                     g_bytes_get_size (named), NOW, &error));
  g_assert_no_error (error);

  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_assert_null (tally_session_get_peer_name (r.payer));
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, named, r.request, f->payee, NULL);
  g_autoptr (GBytes) reply = NULL;
  g_assert_true (tally_session_handle (r.payer, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), NOW, &reply, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (tally_session_get_peer_name (r.payer), ==, "Caf\u00e9 Lumen");
  payer_rig_clear (&r);

  PayeeRig e;
  payee_rig_init (&e, f->payee, 700);
  g_autoptr (GBytes) perm = honest_permission (f, e.s.offer);
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) pay = script_pay (&e.s, payer_cert, perm, f->payer, NULL);
  g_autoptr (GBytes) receipt = NULL;
  g_assert_true (tally_session_handle (e.payee, g_bytes_get_data (pay, NULL),
                                       g_bytes_get_size (pay), NOW, &receipt, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (tally_session_get_peer_name (e.payee), ==, "");
  payee_rig_clear (&e);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD_FAULT(path, fault)                                                                     \
  g_test_add (path, Fixture, GINT_TO_POINTER (fault), setup,                                       \
              test_session_refuses_faulty_peer_as_register_does, teardown)
  ADD_FAULT ("/session/peer-check/refuses-revoked-peer", FIXTURE_PEER_REVOKED);
  ADD_FAULT ("/session/peer-check/refuses-peer-of-other-currency", FIXTURE_PEER_OTHER_CURRENCY);
  ADD_FAULT ("/session/peer-check/refuses-expired-peer", FIXTURE_PEER_EXPIRED);
  ADD_FAULT ("/session/peer-check/refuses-peer-not-yet-valid", FIXTURE_PEER_NOT_YET_VALID);
  ADD_FAULT ("/session/peer-check/refuses-peer-of-wrong-issuer", FIXTURE_PEER_WRONG_ISSUER);
  ADD_FAULT ("/session/peer-check/refuses-itself-as-peer", FIXTURE_PEER_ITSELF);
  ADD_FAULT ("/session/peer-check/refuses-peer-with-invalid-display-name",
             FIXTURE_PEER_BAD_DISPLAY_NAME);
#undef ADD_FAULT
#define ADD(path, fn) g_test_add (path, Fixture, NULL, setup, fn, teardown)
  ADD ("/session/peer-check/payer/revocation-age-near-cap-does-not-overflow",
       test_payer_revocation_age_near_cap_does_not_overflow);
  ADD ("/session/peer-check/payee/revocation-age-near-cap-does-not-overflow",
       test_payee_revocation_age_near_cap_does_not_overflow);
  ADD ("/session/peer-check/payee/refuses-revocation-list-older-than-policy",
       test_payee_refuses_revocation_list_older_than_policy);
  ADD ("/session/peer-check/reports-certified-peer-name", test_session_reports_certified_peer_name);
#undef ADD

  return g_test_run ();
}
