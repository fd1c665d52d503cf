/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The soft register: every refusal with its exact code and no trace on the
 * register, the payment paths between registers, reconciliation, defund,
 * persistence and the key file.
 */
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "tally-hex.h"
#include "tally-keyfile.h"
#include "tally-register-private.h"
#include "tally-register.h"
#include "wallet-fixture.h"

#define T FIXTURE_NOW

typedef struct
{
  char *dir;
  /* Kept apart from the register, which the checks close and reopen. */
  guint8 id[TALLY_ID_BYTES];
  TallyRegister *reg;
  GBytes *cert;
  Tally__SignedEnvelope *cert_env;
} Party;

/* Three certified registers; a holds 10000 from voucher 1. */
typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  Party a, b, c;
} World;

static void
party_setup (World *w, Party *p, const char *name)
{
  p->dir = g_build_filename (w->root, name, NULL);
  p->reg = fixture_register_new (w->issuer, p->dir, NULL, T);
  memcpy (p->id, tally_register_get_id (p->reg), TALLY_ID_BYTES);
  p->cert = tally_register_get_certificate (p->reg);
  p->cert_env = fixture_envelope (p->cert);
}

static void
party_clear (Party *p)
{
  g_clear_pointer (&p->reg, tally_register_free);
  g_clear_pointer (&p->cert, g_bytes_unref);
  g_clear_pointer (&p->cert_env, tally__signed_envelope_free);
  g_clear_pointer (&p->dir, g_free);
}

static void
world_setup (World *w, gconstpointer data)
{
  w->issuer = fixture_issuer_new (NULL);
  w->root = fixture_tmpdir ();
  party_setup (w, &w->a, "a");
  party_setup (w, &w->b, "b");
  party_setup (w, &w->c, "c");
  fixture_register_fund (w->issuer, w->a.reg, 1, 10000, T);
}

static void
world_teardown (World *w, gconstpointer data)
{
  party_clear (&w->a);
  party_clear (&w->b);
  party_clear (&w->c);
  fixture_remove_tree (w->root);
  g_free (w->root);
  fixture_issuer_free (w->issuer);
}

/* A register without a certificate, in its own directory. */
static TallyRegister *
uncertified (World *w, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (w->root, name, NULL);
  TallyRegister *reg = tally_register_create (dir, fixture_issuer_public_key (w->issuer), &error);
  g_assert_no_error (error);
  return reg;
}

static void
reopen (Party *p)
{
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&p->reg, tally_register_free);
  p->reg = tally_register_open (p->dir, &error);
  g_assert_no_error (error);
}

/* The register, in memory and on disk, is as @before described it. */
static void
assert_unchanged (Party *p, const char *before)
{
  g_autofree char *now = fixture_register_dump (p->reg, TRUE);
  g_assert_cmpstr (now, ==, before);
  reopen (p);
  g_autofree char *reopened = fixture_register_dump (p->reg, TRUE);
  g_assert_cmpstr (reopened, ==, before);
}

static char *
dump (Party *p)
{
  return fixture_register_dump (p->reg, TRUE);
}

static const guint8 *
id_of (Party *p)
{
  return p->id;
}

static GBytes *
tamper_signature (GBytes *packed)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (packed);
  g_assert_cmpuint (env->signature.len, >, 0);
  env->signature.data[0] ^= 0x01;
  return tally_envelope_pack (env);
}

static Tally__PaymentRequest *
request (Party *payee, gint64 amount, const char *memo, guint64 now)
{
  g_autoptr (GError) error = NULL;
  Tally__PaymentRequest *req = tally_register_new_request (payee->reg, amount, memo, now, &error);
  g_assert_no_error (error);
  g_assert_nonnull (req);
  return req;
}

static GBytes *
spend (Party *payer, Party *payee, const Tally__PaymentRequest *req, guint64 now)
{
  g_autoptr (GError) error = NULL;
  GBytes *permission = tally_register_spend (payer->reg, payee->cert_env, req, now, &error);
  g_assert_no_error (error);
  g_assert_nonnull (permission);
  return permission;
}

static GBytes *
receive (Party *payee, Party *payer, GBytes *permission, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  GBytes *receipt = tally_register_receive (payee->reg, payer->cert_env, env, NULL, NULL, now,
                                            &error);
  g_assert_no_error (error);
  g_assert_nonnull (receipt);
  return receipt;
}

/* Re-signs a (modified) message with @signer's register key. */
static GBytes *
resign (Party *signer, Tally__SignatureContext ctx, const ProtobufCMessage *msg)
{
  return fixture_register_sign_message (signer->reg, ctx, msg);
}

static Tally__DepositPermission *
decode_permission (GBytes *permission)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  Tally__DepositPermission *p = TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission,
                                              env->body.data, env->body.len, "permission", NULL);
  g_assert_nonnull (p);
  return p;
}

static Tally__Receipt *
decode_receipt (GBytes *receipt)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  Tally__Receipt *r =
    TALLY_UNPACK (Tally__Receipt, tally__receipt, env->body.data, env->body.len, "receipt", NULL);
  g_assert_nonnull (r);
  return r;
}

static gboolean
install (TallyRegister *reg, GBytes *cert, guint64 now, GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  return tally_register_install_certificate (reg, data, len, now, error);
}

static gboolean
load (TallyRegister *reg, GBytes *voucher, GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (voucher, &len);
  return tally_register_load (reg, data, len, T, error);
}

static gboolean
apply (TallyRegister *reg, GBytes *result, guint64 now, GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (result, &len);
  return tally_register_apply_result (reg, data, len, now, error);
}

static gboolean
update_list (TallyRegister *reg, GBytes *list, GError **error)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  return tally_register_update_revocation_list (reg, env, error);
}

static void
revoke_in (World *w, Party *holder, guint64 serial, const guint8 *id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = fixture_revocation_list (w->issuer, serial, T, id, NULL);
  g_assert_true (update_list (holder->reg, list, &error));
  g_assert_no_error (error);
}

static void
defund (Party *p, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) record = tally_register_defund (p->reg, now, &error);
  g_assert_no_error (error);
  g_assert_nonnull (record);
}

/* --- expected refusals, each leaving the register as it was --- */

static void
assert_install_fails (Party *p, GBytes *cert, guint64 now, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_assert_false (install (p->reg, cert, now, &error));
  g_assert_error (error, TALLY_ERROR, code);
  assert_unchanged (p, before);
}

static void
assert_load_fails (Party *p, GBytes *voucher, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_assert_false (load (p->reg, voucher, &error));
  g_assert_error (error, TALLY_ERROR, code);
  assert_unchanged (p, before);
}

static void
assert_request_fails (Party *p, gint64 amount, const char *memo, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (p->reg, amount, memo, T, &error);
  g_assert_error (error, TALLY_ERROR, code);
  g_assert_null (req);
  assert_unchanged (p, before);
}

static void
assert_spend_fails (Party *payer,
                    const Tally__SignedEnvelope *payee_cert,
                    const Tally__PaymentRequest *req,
                    guint64 now,
                    gint code)
{
  g_autofree char *before = dump (payer);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = tally_register_spend (payer->reg, payee_cert, req, now, &error);
  g_assert_error (error, TALLY_ERROR, code);
  g_assert_null (permission);
  assert_unchanged (payer, before);
}

static void
assert_receive_fails_with (Party *payee,
                           const Tally__SignedEnvelope *payer_cert,
                           GBytes *permission,
                           const TallyAcceptPolicy *policy,
                           guint64 now,
                           gint code)
{
  g_autofree char *before = dump (payee);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) receipt =
    tally_register_receive (payee->reg, payer_cert, env, NULL, policy, now, &error);
  g_assert_error (error, TALLY_ERROR, code);
  g_assert_null (receipt);
  assert_unchanged (payee, before);
}

static void
assert_receive_fails (World *w, GBytes *permission, gint code)
{
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, NULL, T, code);
}

static void
assert_acknowledge_fails (Party *payer, GBytes *receipt, gint code)
{
  g_autofree char *before = dump (payer);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_register_acknowledge (payer->reg, env, &error));
  g_assert_error (error, TALLY_ERROR, code);
  assert_unchanged (payer, before);
}

static void
assert_apply_fails (Party *p, GBytes *result, guint64 now, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_assert_false (apply (p->reg, result, now, &error));
  g_assert_error (error, TALLY_ERROR, code);
  assert_unchanged (p, before);
}

static void
assert_list_fails (Party *p, GBytes *list, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_assert_false (update_list (p->reg, list, &error));
  g_assert_error (error, TALLY_ERROR, code);
  assert_unchanged (p, before);
}

static void
assert_defund_fails (Party *p, gint code)
{
  g_autofree char *before = dump (p);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) record = tally_register_defund (p->reg, T, &error);
  g_assert_error (error, TALLY_ERROR, code);
  g_assert_null (record);
  assert_unchanged (p, before);
}

/* A register that is not one of the world's parties. */
static Party
extra_party (World *w, const char *name, gboolean certify, const Tally__Limits *limits)
{
  Party p = { 0 };
  p.dir = g_build_filename (w->root, name, NULL);
  if (certify) {
    p.reg = fixture_register_new (w->issuer, p.dir, limits, T);
    p.cert = tally_register_get_certificate (p.reg);
    p.cert_env = fixture_envelope (p.cert);
  } else {
    p.reg = uncertified (w, name);
  }
  memcpy (p.id, tally_register_get_id (p.reg), TALLY_ID_BYTES);
  return p;
}

/* ===== certificate ===== */

/* The proof of possession is the register key's signature over exactly the
 * issuer's enrolment statement for that account, and proves nothing for
 * another account or issuer. */
static void
test_enrolment_proof_signs_exactly_the_statement (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 proof[TALLY_SIGNATURE_BYTES];
  g_assert_true (tally_register_sign_enrolment (w->a.reg, "stall-42", proof, &error));
  g_assert_no_error (error);

  g_autoptr (GByteArray) statement = g_byte_array_new ();
  g_byte_array_append (statement, (const guint8 *) "tally-enrol-v1", 15);
  g_byte_array_append (statement, fixture_issuer_public_key (w->issuer), TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (statement, tally_register_get_public_key (w->a.reg), TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (statement, (const guint8 *) "stall-42", 8);
  g_assert_cmpint (crypto_sign_verify_detached (proof, statement->data, statement->len,
                                                tally_register_get_public_key (w->a.reg)),
                   ==, 0);
  /* Another account's statement: the proof does not verify. */
  statement->data[statement->len - 1] = '3';
  g_assert_cmpint (crypto_sign_verify_detached (proof, statement->data, statement->len,
                                                tally_register_get_public_key (w->a.reg)),
                   !=, 0);

  g_assert_false (tally_register_sign_enrolment (w->a.reg, "", proof, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (tally_register_sign_enrolment (w->a.reg, "evil\nname", proof, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Trusting no issuer, it signs nothing. */
  g_autofree char *dir = g_build_filename (w->root, "unbound", NULL);
  g_autoptr (TallyRegister) unbound = tally_register_create_unbound (dir, &error);
  g_assert_no_error (error);
  g_assert_false (tally_register_sign_enrolment (unbound, "stall-42", proof, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
}

static void
test_certificate_refuses_other_issuer (World *w, gconstpointer data)
{
  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) cert = fixture_certify (other, tally_register_get_public_key (w->a.reg), NULL,
                                             T - 10, T + FIXTURE_YEAR, 2);
  assert_install_fails (&w->a, cert, T, TALLY_ERROR_WRONG_ISSUER);
}

static void
test_certificate_refuses_bad_signature (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                             NULL, T - 10, T + FIXTURE_YEAR, 2);
  g_autoptr (GBytes) bad = tamper_signature (cert);
  assert_install_fails (&w->a, bad, T, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_certificate_refuses_expired (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                             NULL, T - 1000, T - 1, 2);
  assert_install_fails (&w->a, cert, T, TALLY_ERROR_CERT_EXPIRED);
}

static void
test_certificate_refuses_not_yet_valid (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                             NULL, T + 100, T + FIXTURE_YEAR, 2);
  assert_install_fails (&w->a, cert, T, TALLY_ERROR_CERT_NOT_YET_VALID);
}

static void
test_certificate_refuses_malformed (World *w, gconstpointer data)
{
  static const guint8 garbage[] = { 0xff, 0xff, 0xff, 0xff };
  g_autoptr (GBytes) not_envelope = g_bytes_new_static (garbage, sizeof garbage);
  assert_install_fails (&w->a, not_envelope, T, TALLY_ERROR_MALFORMED);

  g_autoptr (GBytes) body = g_bytes_new_static (garbage, sizeof garbage);
  g_autoptr (GBytes) signed_garbage = fixture_issuer_sign (
    w->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE, body);
  assert_install_fails (&w->a, signed_garbage, T, TALLY_ERROR_MALFORMED);
}

static void
test_certificate_refuses_another_registers_key (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->b.reg),
                                             NULL, T - 10, T + FIXTURE_YEAR, 2);
  assert_install_fails (&w->a, cert, T, TALLY_ERROR_WRONG_REGISTER);
}

static void
test_certificate_refuses_older_serial (World *w, gconstpointer data)
{
  /* Copied: the checks below reopen the register. */
  guint8 key[TALLY_PUBLIC_KEY_BYTES];
  memcpy (key, tally_register_get_public_key (w->a.reg), sizeof key);
  g_autoptr (GBytes) newer = fixture_certify (w->issuer, key, NULL, T - 10, T + FIXTURE_YEAR, 5);
  g_autoptr (GError) error = NULL;
  g_assert_true (install (w->a.reg, newer, T, &error));
  g_assert_no_error (error);

  g_autoptr (GBytes) same = fixture_certify (w->issuer, key, NULL, T - 20, T + FIXTURE_YEAR, 5);
  assert_install_fails (&w->a, same, T, TALLY_ERROR_REPLAY);
  g_autoptr (GBytes) older = fixture_certify (w->issuer, key, NULL, T - 10, T + FIXTURE_YEAR, 4);
  assert_install_fails (&w->a, older, T, TALLY_ERROR_REPLAY);
}

static void
test_certificate_refuses_currency_change (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert =
    fixture_certify_currency (w->issuer, tally_register_get_public_key (w->a.reg), "USD", NULL,
                              T - 10, T + FIXTURE_YEAR, 2);
  assert_install_fails (&w->a, cert, T, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_certificate_installs_newer_serial (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Tally__Limits limits = fixture_limits ();
  limits.max_payment = 77;
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                             &limits, T - 10, T + FIXTURE_YEAR, 2);
  g_assert_true (install (w->a.reg, cert, T + 50, &error));
  g_assert_no_error (error);

  const Tally__RegisterCertificate *info = tally_register_get_certificate_info (w->a.reg);
  g_assert_cmpuint (info->serial, ==, 2);
  g_assert_cmpint (info->limits->max_payment, ==, 77);
  /* Only the first certificate starts the offline clock. */
  g_assert_cmpuint (tally_register_get_last_reconciliation (w->a.reg), ==, T);
  g_autoptr (GBytes) held = tally_register_get_certificate (w->a.reg);
  g_assert_true (g_bytes_equal (held, cert));

  reopen (&w->a);
  g_assert_cmpuint (tally_register_get_certificate_info (w->a.reg)->serial, ==, 2);
}

static void
test_certificate_first_install_starts_offline_clock (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) d = uncertified (w, "d");
  g_assert_null (tally_register_get_certificate (d));
  g_assert_null (tally_register_get_certificate_info (d));
  g_assert_null (tally_register_get_currency (d));

  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (d), NULL,
                                             T - 10, T + FIXTURE_YEAR, 1);
  g_assert_true (install (d, cert, T + 42, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_last_reconciliation (d), ==, T + 42);
  g_assert_cmpstr (tally_register_get_currency (d), ==, FIXTURE_CURRENCY);
}

/* ===== load ===== */

static void
test_load_refuses_malformed_envelope (World *w, gconstpointer data)
{
  static const guint8 garbage[] = { 0xff, 0xff, 0xff, 0xff };
  g_autoptr (GBytes) bytes = g_bytes_new_static (garbage, sizeof garbage);
  assert_load_fails (&w->a, bytes, TALLY_ERROR_MALFORMED);
}

static void
test_load_refuses_bad_signature (World *w, gconstpointer data)
{
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->a), 2, 100, NULL);
  g_autoptr (GBytes) bad = tamper_signature (v);
  assert_load_fails (&w->a, bad, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_load_refuses_voucher_of_other_issuer (World *w, gconstpointer data)
{
  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) v = fixture_voucher (other, id_of (&w->a), 2, 100, NULL);
  assert_load_fails (&w->a, v, TALLY_ERROR_WRONG_ISSUER);
}

static void
test_load_refuses_without_certificate (World *w, gconstpointer data)
{
  Party d = extra_party (w, "d", FALSE, NULL);
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&d), 1, 100, NULL);
  assert_load_fails (&d, v, TALLY_ERROR_NO_CERTIFICATE);
  party_clear (&d);
}

static void
test_load_refuses_when_closed (World *w, gconstpointer data)
{
  defund (&w->a, T);
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->a), 2, 100, NULL);
  assert_load_fails (&w->a, v, TALLY_ERROR_WRONG_STATE);
}

static void
test_load_refuses_voucher_for_another_register (World *w, gconstpointer data)
{
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->b), 2, 100, NULL);
  assert_load_fails (&w->a, v, TALLY_ERROR_WRONG_REGISTER);
}

static void
test_load_refuses_other_currency (World *w, gconstpointer data)
{
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->a), 2, 100, "USD");
  assert_load_fails (&w->a, v, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_load_refuses_replayed_sequence (World *w, gconstpointer data)
{
  g_autoptr (GBytes) same = fixture_voucher (w->issuer, id_of (&w->a), 1, 10000, NULL);
  assert_load_fails (&w->a, same, TALLY_ERROR_VOUCHER_REPLAY);

  fixture_register_fund (w->issuer, w->a.reg, 3, 10, T);
  g_autoptr (GBytes) lower = fixture_voucher (w->issuer, id_of (&w->a), 2, 10, NULL);
  assert_load_fails (&w->a, lower, TALLY_ERROR_VOUCHER_REPLAY);
}

static void
test_load_refuses_balance_over_cap (World *w, gconstpointer data)
{
  g_autoptr (GBytes) v =
    fixture_voucher (w->issuer, id_of (&w->a), 2, FIXTURE_BALANCE_CAP - 10000 + 1, NULL);
  assert_load_fails (&w->a, v, TALLY_ERROR_LIMIT_BALANCE);

  /* Exactly up to the cap is fine. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) ok = fixture_voucher (w->issuer, id_of (&w->a), 2, FIXTURE_BALANCE_CAP - 10000,
                                           NULL);
  g_assert_true (load (w->a.reg, ok, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, FIXTURE_BALANCE_CAP);
}

static void
test_load_refuses_sum_past_amount_max (World *w, gconstpointer data)
{
  Tally__Limits limits = fixture_limits ();
  limits.balance_cap = TALLY_AMOUNT_MAX;
  Party d = extra_party (w, "d", TRUE, &limits);
  fixture_register_fund (w->issuer, d.reg, 1, TALLY_AMOUNT_MAX - 10, T);
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&d), 2, 20, NULL);
  assert_load_fails (&d, v, TALLY_ERROR_OVERFLOW);
  party_clear (&d);
}

static void
test_load_credits_voucher (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);

  /* Sequences only need to increase. */
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->a), 7, 250, NULL);
  g_assert_true (load (w->a.reg, v, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10250);
  g_assert_cmpuint (tally_register_get_counter (w->a.reg), ==, 0);

  g_autoptr (GPtrArray) history = tally_register_get_history (w->a.reg, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (history->len, ==, 2);
  TallyHistoryEntry *e = history->pdata[0];
  g_assert_cmpint (e->kind, ==, TALLY_ENTRY_LOAD);
  g_assert_cmpuint (e->sequence, ==, 7);
  g_assert_cmpint (e->amount, ==, 250);
  g_assert_null (e->peer);
  fixture_assert_conserved (w->a.reg);
}

/* ===== request ===== */

static void
test_request_refuses_without_certificate (World *w, gconstpointer data)
{
  Party d = extra_party (w, "d", FALSE, NULL);
  assert_request_fails (&d, 100, NULL, TALLY_ERROR_NO_CERTIFICATE);
  party_clear (&d);
}

static void
test_request_refuses_when_closed (World *w, gconstpointer data)
{
  defund (&w->a, T);
  assert_request_fails (&w->a, 100, NULL, TALLY_ERROR_WRONG_STATE);
}

static void
test_request_refuses_invalid_amount (World *w, gconstpointer data)
{
  assert_request_fails (&w->b, 0, NULL, TALLY_ERROR_INVALID_AMOUNT);
  assert_request_fails (&w->b, -5, NULL, TALLY_ERROR_INVALID_AMOUNT);
  assert_request_fails (&w->b, TALLY_AMOUNT_MAX + 1, NULL, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_request_refuses_long_or_invalid_memo (World *w, gconstpointer data)
{
  g_autofree char *long_memo = g_strnfill (257, 'm');
  assert_request_fails (&w->b, 100, long_memo, TALLY_ERROR_INVALID_ARGUMENT);
  assert_request_fails (&w->b, 100, "caf\xc3\x28", TALLY_ERROR_INVALID_ARGUMENT);

  g_autofree char *max_memo = g_strnfill (256, 'm');
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, max_memo, T);
  g_assert_cmpstr (req->memo, ==, max_memo);
}

static void
test_request_stores_fresh_nonce (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) one = request (&w->b, 1234, "bread", T + 3);
  g_autoptr (Tally__PaymentRequest) two = request (&w->b, 1234, "bread", T + 3);

  g_assert_cmpmem (one->payee_register_id.data, one->payee_register_id.len, id_of (&w->b),
                   TALLY_ID_BYTES);
  g_assert_cmpstr (one->amount->currency, ==, FIXTURE_CURRENCY);
  g_assert_cmpint (one->amount->value, ==, 1234);
  g_assert_cmpstr (one->memo, ==, "bread");
  g_assert_cmpuint (one->created_at, ==, T + 3);
  g_assert_cmpuint (one->nonce.len, ==, TALLY_NONCE_BYTES);
  g_assert_cmpuint (two->nonce.len, ==, TALLY_NONCE_BYTES);
  g_assert_true (memcmp (one->nonce.data, two->nonce.data, TALLY_NONCE_BYTES) != 0);

  reopen (&w->b);
  g_autoptr (GPtrArray) nonces = tally_register_list_nonces (w->b.reg, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (nonces->len, ==, 2);
  TallyNonceRow *n = nonces->pdata[0];
  g_assert_cmpmem (n->nonce, TALLY_NONCE_BYTES, one->nonce.data, one->nonce.len);
  g_assert_cmpint (n->amount, ==, 1234);
  g_assert_cmpstr (n->memo, ==, "bread");
  g_assert_false (n->consumed);
}

/* Storing a request drops the requests that expired uncredited (nothing
 * can be credited against them any more) in the same commit; a credited
 * one stays, so a replay of its permission is still refused, and so does
 * one not yet expired. */
static void
test_request_storing_drops_expired_uncredited_ones (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) paid = request (&w->b, 700, "paid", T);
  g_autoptr (GBytes) permission = spend (&w->a, &w->b, paid, T + 1);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T + 2);
  g_autoptr (Tally__PaymentRequest) stale = request (&w->b, 100, "stale", T);
  g_autoptr (GBytes) late = spend (&w->a, &w->b, stale, T + 1);
  g_autoptr (Tally__PaymentRequest) young = request (&w->b, 100, "young", T + 10);

  /* The moment stale (and paid) expire. */
  g_autoptr (Tally__PaymentRequest) fresh = request (&w->b, 100, "fresh", stale->expires_at);

  reopen (&w->b);
  g_autoptr (GPtrArray) nonces = tally_register_list_nonces (w->b.reg, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (nonces->len, ==, 3);
  const Tally__PaymentRequest *want[] = { paid, young, fresh };
  for (guint i = 0; i < nonces->len; i++) {
    TallyNonceRow *n = nonces->pdata[i];
    g_assert_cmpmem (n->nonce, TALLY_NONCE_BYTES, want[i]->nonce.data, want[i]->nonce.len);
    g_assert_cmpint (n->consumed, ==, i == 0);
  }

  /* The credited permission, delivered as new again, is still a replay. */
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  g_autoptr (GBytes) again =
    tally_register_receive (w->b.reg, w->a.cert_env, env, NULL, NULL, T + 3, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY);
  g_assert_null (again);
  g_clear_error (&error);
  /* The dropped request's permission, arriving late, is told Expired. */
  g_autoptr (Tally__SignedEnvelope) late_env = fixture_envelope (late);
  g_autoptr (GBytes) late_receipt = tally_register_receive (w->b.reg, w->a.cert_env, late_env, NULL,
                                                            NULL, stale->expires_at, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED);
  g_assert_null (late_receipt);
  g_assert_cmpint (tally_register_get_balance (w->b.reg), ==, 700);
}

/* ===== spend ===== */

static void
test_spend_refuses_when_closed (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  defund (&w->a, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_WRONG_STATE);
}

static void
test_spend_refuses_when_revoked (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  revoke_in (w, &w->a, 2, id_of (&w->a));
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_REVOKED);
}

static void
test_spend_refuses_without_certificate (World *w, gconstpointer data)
{
  Party d = extra_party (w, "d", FALSE, NULL);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&d, w->b.cert_env, req, T, TALLY_ERROR_NO_CERTIFICATE);
  party_clear (&d);
}

static void
test_spend_refuses_with_own_certificate_expired (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T + FIXTURE_YEAR + 1, TALLY_ERROR_CERT_EXPIRED);
}

static void
test_spend_refuses_payee_certificate_of_other_issuer (World *w, gconstpointer data)
{
  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) cert = fixture_certify (other, tally_register_get_public_key (w->b.reg), NULL,
                                             T - 10, T + FIXTURE_YEAR, 1);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, env, req, T, TALLY_ERROR_WRONG_ISSUER);
}

static void
test_spend_refuses_payee_certified_for_another_currency (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify_currency (
    w->issuer, tally_register_get_public_key (w->b.reg), "USD", NULL, T - 10, T + FIXTURE_YEAR, 2);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, env, req, T, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_spend_refuses_payee_certificate_with_bad_signature (World *w, gconstpointer data)
{
  g_autoptr (GBytes) bad = tamper_signature (w->b.cert);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (bad);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, env, req, T, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_spend_refuses_expired_payee_certificate (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->b.reg),
                                             NULL, T - 1000, T + 100, 2);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, env, req, T + 200, TALLY_ERROR_CERT_EXPIRED);
}

static void
test_spend_refuses_payee_certificate_not_yet_valid (World *w, gconstpointer data)
{
  g_autoptr (GBytes) cert = fixture_certify (w->issuer, tally_register_get_public_key (w->b.reg),
                                             NULL, T + 1000, T + FIXTURE_YEAR, 2);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  assert_spend_fails (&w->a, env, req, T, TALLY_ERROR_CERT_NOT_YET_VALID);
}

static void
test_spend_refuses_revoked_payee (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  revoke_in (w, &w->a, 2, id_of (&w->b));
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_REVOKED);
}

static void
test_spend_refuses_request_for_another_payee (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->c, 100, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_WRONG_PAYEE);
}

static void
test_spend_refuses_short_nonce (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  req->nonce.len = 16;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_MALFORMED);
}

static void
test_spend_refuses_other_currency (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  memcpy (req->amount->currency, "USD", 3);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_spend_refuses_invalid_amount (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  req->amount->value = 0;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_INVALID_AMOUNT);
  req->amount->value = -100;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_spend_refuses_amount_past_maximum (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  req->amount->value = TALLY_AMOUNT_MAX + 1;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_OVERFLOW);
}

static void
test_spend_refuses_amount_over_certified_limit (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, FIXTURE_MAX_PAYMENT + 1, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_LIMIT_PAYMENT);

  g_autoptr (Tally__PaymentRequest) at_limit = request (&w->b, FIXTURE_MAX_PAYMENT, NULL, T);
  g_autoptr (GBytes) permission = spend (&w->a, &w->b, at_limit, T);
}

static void
test_spend_refuses_past_offline_payment_count (World *w, gconstpointer data)
{
  for (guint i = 0; i < FIXTURE_MAX_OFFLINE_PAYMENTS; i++) {
    g_autoptr (GBytes) p = fixture_pay (w->a.reg, w->b.reg, 10, NULL, T + i, NULL);
  }
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==,
                    FIXTURE_MAX_OFFLINE_PAYMENTS);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T + 10);
  assert_spend_fails (&w->a, w->b.cert_env, req, T + 10, TALLY_ERROR_LIMIT_COUNT);
}

static void
test_spend_refuses_past_offline_time (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req =
    request (&w->b, 10, NULL, T + FIXTURE_MAX_OFFLINE_SECONDS - 10);
  assert_spend_fails (&w->a, w->b.cert_env, req, T + FIXTURE_MAX_OFFLINE_SECONDS + 1,
                      TALLY_ERROR_LIMIT_TIME);
  /* The last second of the window still pays. */
  g_autoptr (GBytes) permission = spend (&w->a, &w->b, req, T + FIXTURE_MAX_OFFLINE_SECONDS);
}

static void
test_spend_refuses_insufficient_funds (World *w, gconstpointer data)
{
  g_autoptr (GBytes) p1 = fixture_pay (w->a.reg, w->b.reg, 4000, NULL, T, NULL);
  g_autoptr (GBytes) p2 = fixture_pay (w->a.reg, w->b.reg, 4000, NULL, T, NULL);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 2001, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_INSUFFICIENT_FUNDS);
}

/* ===== payment happy paths ===== */

static void
test_payment_moves_value_between_registers (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 1500, "coffee", T + 5);
  const guint8 *genesis_head = tally_register_get_chain_head (w->a.reg);
  guint8 genesis[TALLY_HASH_BYTES];
  memcpy (genesis, genesis_head, sizeof genesis);
  guint8 expect_genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (id_of (&w->a), expect_genesis);
  g_assert_cmpmem (genesis, sizeof genesis, expect_genesis, sizeof expect_genesis);

  g_autoptr (GBytes) permission = spend (&w->a, &w->b, req, T + 6);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 8500);
  g_assert_cmpuint (tally_register_get_counter (w->a.reg), ==, 1);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 1);

  /* The permission: signed by a, next counter, bound to the old head. */
  g_autoptr (Tally__SignedEnvelope) penv = fixture_envelope (permission);
  g_assert_true (tally_envelope_verify (penv,
                                        TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
                                        tally_register_get_public_key (w->a.reg), &error));
  g_assert_no_error (error);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  g_assert_cmpmem (p->payer_register_id.data, p->payer_register_id.len, id_of (&w->a),
                   TALLY_ID_BYTES);
  g_assert_cmpmem (p->payee_register_id.data, p->payee_register_id.len, id_of (&w->b),
                   TALLY_ID_BYTES);
  g_assert_cmpmem (p->payee_nonce.data, p->payee_nonce.len, req->nonce.data, req->nonce.len);
  g_assert_cmpint (p->amount->value, ==, 1500);
  g_assert_cmpstr (p->amount->currency, ==, FIXTURE_CURRENCY);
  g_assert_cmpuint (p->counter, ==, 1);
  g_assert_cmpmem (p->chain_prev.data, p->chain_prev.len, genesis, sizeof genesis);
  g_assert_cmpuint (p->created_at, ==, T + 6);
  guint8 memo_hash[TALLY_HASH_BYTES];
  tally_hash ("memo", "coffee", 6, memo_hash);
  g_assert_cmpmem (p->memo_hash.data, p->memo_hash.len, memo_hash, sizeof memo_hash);

  guint8 entry[TALLY_HASH_BYTES], head[TALLY_HASH_BYTES];
  tally_envelope_body_hash (penv, entry);
  tally_chain_next (genesis, entry, head);
  g_assert_cmpmem (tally_register_get_chain_head (w->a.reg), TALLY_HASH_BYTES, head, sizeof head);

  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T + 7);
  g_assert_cmpint (tally_register_get_balance (w->b.reg), ==, 1500);
  g_assert_cmpuint (tally_register_get_counter (w->b.reg), ==, 0);
  g_autoptr (Tally__SignedEnvelope) renv = fixture_envelope (receipt);
  g_assert_true (tally_envelope_verify (renv, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                                        tally_register_get_public_key (w->b.reg), &error));
  g_assert_no_error (error);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  g_assert_cmpmem (r->payee_register_id.data, r->payee_register_id.len, id_of (&w->b),
                   TALLY_ID_BYTES);
  g_assert_cmpmem (r->payer_register_id.data, r->payer_register_id.len, id_of (&w->a),
                   TALLY_ID_BYTES);
  g_assert_cmpuint (r->payer_counter, ==, 1);
  g_assert_cmpmem (r->permission_hash.data, r->permission_hash.len, entry, sizeof entry);
  g_assert_cmpint (r->amount->value, ==, 1500);
  g_assert_cmpuint (r->received_at, ==, T + 7);
  g_autoptr (Tally__DepositPermission) perm = decode_permission (permission);
  g_assert_cmpuint (r->permission_expires_at, ==, perm->expires_at);

  g_autoptr (GPtrArray) nonces = tally_register_list_nonces (w->b.reg, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (nonces->len, ==, 1);
  g_assert_true (((TallyNonceRow *) nonces->pdata[0])->consumed);
  g_assert_cmpuint (((TallyNonceRow *) nonces->pdata[0])->consumed_at, ==, T + 7);

  g_autoptr (GPtrArray) bh = tally_register_get_history (w->b.reg, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bh->len, ==, 1);
  TallyHistoryEntry *got = bh->pdata[0];
  g_autofree char *a_hex = tally_register_get_id_hex (w->a.reg);
  g_assert_cmpint (got->kind, ==, TALLY_ENTRY_RECEIVED);
  g_assert_cmpint (got->state, ==, TALLY_ENTRY_STATE_ACKNOWLEDGED);
  g_assert_cmpint (got->amount, ==, 1500);
  g_assert_cmpuint (got->counter, ==, 1);
  g_assert_cmpstr (got->peer, ==, a_hex);
  g_assert_cmpstr (got->memo, ==, "coffee");

  g_autoptr (GPtrArray) before_ack = tally_register_get_history (w->a.reg, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (((TallyHistoryEntry *) before_ack->pdata[0])->state, ==,
                   TALLY_ENTRY_STATE_PENDING);

  g_assert_true (tally_register_acknowledge (w->a.reg, renv, &error));
  g_assert_no_error (error);
  g_autoptr (GPtrArray) ah = tally_register_get_history (w->a.reg, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ah->len, ==, 2);
  TallyHistoryEntry *sent = ah->pdata[0];
  g_autofree char *b_hex = tally_register_get_id_hex (w->b.reg);
  g_assert_cmpint (sent->kind, ==, TALLY_ENTRY_SPENT);
  g_assert_cmpint (sent->state, ==, TALLY_ENTRY_STATE_ACKNOWLEDGED);
  g_assert_cmpstr (sent->peer, ==, b_hex);
  g_assert_cmpuint (sent->counter, ==, 1);

  fixture_assert_conserved (w->a.reg);
  fixture_assert_conserved (w->b.reg);
  g_assert_cmpint (tally_register_get_balance (w->a.reg) + tally_register_get_balance (w->b.reg),
                   ==, 10000);
}

static void
test_payment_received_value_can_be_spent_onward (World *w, gconstpointer data)
{
  g_autoptr (GBytes) ab = fixture_pay (w->a.reg, w->b.reg, 3000, "first", T, NULL);
  g_autoptr (GBytes) bc = fixture_pay (w->b.reg, w->c.reg, 2000, "second", T + 1, NULL);
  g_autoptr (GBytes) ca = fixture_pay (w->c.reg, w->a.reg, 500, "third", T + 2, NULL);

  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 7500);
  g_assert_cmpint (tally_register_get_balance (w->b.reg), ==, 1000);
  g_assert_cmpint (tally_register_get_balance (w->c.reg), ==, 1500);
  g_assert_cmpuint (tally_register_get_counter (w->b.reg), ==, 1);
  g_assert_cmpuint (tally_register_get_counter (w->c.reg), ==, 1);
  fixture_assert_conserved (w->a.reg);
  fixture_assert_conserved (w->b.reg);
  fixture_assert_conserved (w->c.reg);

  /* b cannot pass on more than it received. */
  g_autoptr (Tally__PaymentRequest) req = request (&w->c, 1001, NULL, T + 3);
  assert_spend_fails (&w->b, w->c.cert_env, req, T + 3, TALLY_ERROR_INSUFFICIENT_FUNDS);
}

/* ===== acknowledge ===== */

/* a pays b 1500 at counter 1; b's receipt is not yet acknowledged. */
static GBytes *
paid_unacknowledged (World *w, GBytes **permission_out)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 1500, "x", T);
  g_autoptr (GBytes) permission = spend (&w->a, &w->b, req, T);
  GBytes *receipt = receive (&w->b, &w->a, permission, T);
  if (permission_out != NULL)
    *permission_out = g_steal_pointer (&permission);
  return receipt;
}

static void
test_acknowledge_refuses_malformed_receipt (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  static const guint8 garbage[] = { 0xff, 0xff, 0xff, 0xff };
  g_autoptr (GBytes) body = g_bytes_new_static (garbage, sizeof garbage);
  g_autoptr (GBytes) bad =
    fixture_register_sign (w->b.reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, body);
  assert_acknowledge_fails (&w->a, bad, TALLY_ERROR_MALFORMED);
}

static void
test_acknowledge_refuses_unknown_counter (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  r->payer_counter = 99;
  g_autoptr (GBytes) forged =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r->base);
  assert_acknowledge_fails (&w->a, forged, TALLY_ERROR_NOT_FOUND);
}

static void
test_acknowledge_refuses_receipt_for_another_payer (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  memcpy (r->payer_register_id.data, id_of (&w->c), TALLY_ID_BYTES);
  g_autoptr (GBytes) forged =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r->base);
  assert_acknowledge_fails (&w->a, forged, TALLY_ERROR_WRONG_REGISTER);
}

static void
test_acknowledge_refuses_bad_signature (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (GBytes) bad = tamper_signature (receipt);
  assert_acknowledge_fails (&w->a, bad, TALLY_ERROR_BAD_SIGNATURE);

  /* Signed by a register other than the payee of the permission. */
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  g_autoptr (GBytes) by_c =
    resign (&w->c, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r->base);
  assert_acknowledge_fails (&w->a, by_c, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_acknowledge_refuses_wrong_context (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  g_autoptr (GBytes) forged =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &r->base);
  assert_acknowledge_fails (&w->a, forged, TALLY_ERROR_WRONG_CONTEXT);
}

static void
test_acknowledge_refuses_receipt_naming_another_payee (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  memcpy (r->payee_register_id.data, id_of (&w->c), TALLY_ID_BYTES);
  g_autoptr (GBytes) forged =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r->base);
  assert_acknowledge_fails (&w->a, forged, TALLY_ERROR_WRONG_PAYEE);
}

static void
test_acknowledge_refuses_receipt_not_matching_permission (World *w, gconstpointer data)
{
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);

  g_autoptr (Tally__Receipt) wrong_hash = decode_receipt (receipt);
  wrong_hash->permission_hash.data[0] ^= 1;
  g_autoptr (GBytes) forged_hash =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &wrong_hash->base);
  assert_acknowledge_fails (&w->a, forged_hash, TALLY_ERROR_MALFORMED);

  g_autoptr (Tally__Receipt) wrong_amount = decode_receipt (receipt);
  wrong_amount->amount->value = 1499;
  g_autoptr (GBytes) forged_amount =
    resign (&w->b, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &wrong_amount->base);
  assert_acknowledge_fails (&w->a, forged_amount, TALLY_ERROR_MALFORMED);
}

static void
test_acknowledge_is_idempotent (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) receipt = paid_unacknowledged (w, NULL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  g_assert_true (tally_register_acknowledge (w->a.reg, env, &error));
  g_assert_no_error (error);

  g_autofree char *before = dump (&w->a);
  g_assert_true (tally_register_acknowledge (w->a.reg, env, &error));
  g_assert_no_error (error);
  assert_unchanged (&w->a, before);
}

/* ===== receive ===== */

/* b asks for @amount, a pays: the permission, not yet received. */
static GBytes *
pending_permission (World *w, gint64 amount, const char *memo, Tally__PaymentRequest **req_out)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, amount, memo, T);
  GBytes *permission = spend (&w->a, &w->b, req, T);
  if (req_out != NULL)
    *req_out = g_steal_pointer (&req);
  return permission;
}

static GBytes *
resign_permission (World *w, Party *signer, Tally__DepositPermission *p)
{
  return resign (signer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p->base);
}

static void
test_receive_refuses_when_closed (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  fixture_register_fund (w->issuer, w->b.reg, 1, 50, T);
  defund (&w->b, T);
  assert_receive_fails (w, permission, TALLY_ERROR_WRONG_STATE);
}

static void
test_receive_refuses_without_certificate (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  Party d = extra_party (w, "d", FALSE, NULL);
  assert_receive_fails_with (&d, w->a.cert_env, permission, NULL, T, TALLY_ERROR_NO_CERTIFICATE);
  party_clear (&d);
}

static void
test_receive_refuses_expired_payer_certificate (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, NULL, T + FIXTURE_YEAR + 1,
                             TALLY_ERROR_CERT_EXPIRED);
}

static void
test_receive_refuses_payer_certificate_of_other_issuer (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) cert = fixture_certify (other, tally_register_get_public_key (w->a.reg), NULL,
                                             T - 10, T + FIXTURE_YEAR, 1);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  assert_receive_fails_with (&w->b, env, permission, NULL, T, TALLY_ERROR_WRONG_ISSUER);
}

static void
test_receive_refuses_payer_certified_for_another_currency (World *w, gconstpointer data)
{
  /* The same key certified for USD: its permission says EUR all the same. */
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) cert = fixture_certify_currency (
    w->issuer, tally_register_get_public_key (w->a.reg), "USD", NULL, T - 10, T + FIXTURE_YEAR, 2);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (cert);
  assert_receive_fails_with (&w->b, env, permission, NULL, T, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_receive_refuses_revoked_payer (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  revoke_in (w, &w->b, 2, id_of (&w->a));
  assert_receive_fails (w, permission, TALLY_ERROR_REVOKED);
}

static void
test_receive_refuses_with_stale_revocation_list (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  TallyAcceptPolicy policy = { .max_revocation_age = 3600 };

  /* None held at all. */
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, &policy, T,
                             TALLY_ERROR_STALE_REVOCATION_LIST);

  g_autoptr (GBytes) old = fixture_revocation_list (w->issuer, 2, T - 3601, NULL);
  g_assert_true (update_list (w->b.reg, old, &error));
  g_assert_no_error (error);
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, &policy, T,
                             TALLY_ERROR_STALE_REVOCATION_LIST);

  g_autoptr (GBytes) fresh = fixture_revocation_list (w->issuer, 3, T - 3600, NULL);
  g_assert_true (update_list (w->b.reg, fresh, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  g_autoptr (GBytes) receipt =
    tally_register_receive (w->b.reg, w->a.cert_env, env, NULL, &policy, T, &error);
  g_assert_no_error (error);
  g_assert_nonnull (receipt);
}

static void
test_receive_refuses_permission_signed_by_another_key (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  g_autoptr (GBytes) by_c = resign_permission (w, &w->c, p);
  assert_receive_fails (w, by_c, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (GBytes) tampered = tamper_signature (permission);
  assert_receive_fails (w, tampered, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_receive_refuses_wrong_context (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  g_autoptr (GBytes) as_receipt =
    resign (&w->a, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &p->base);
  assert_receive_fails (w, as_receipt, TALLY_ERROR_WRONG_CONTEXT);
}

static void
test_receive_refuses_malformed_permission (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  static const guint8 garbage[] = { 0xff, 0xff, 0xff, 0xff };
  g_autoptr (GBytes) body = g_bytes_new_static (garbage, sizeof garbage);
  g_autoptr (GBytes) bad = fixture_register_sign (
    w->a.reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, body);
  assert_receive_fails (w, bad, TALLY_ERROR_MALFORMED);
}

static void
test_receive_refuses_permission_naming_another_payer (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  memcpy (p->payer_register_id.data, id_of (&w->c), TALLY_ID_BYTES);
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_WRONG_REGISTER);
}

static void
test_receive_refuses_permission_for_another_payee (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->c, 100, NULL, T);
  g_autoptr (GBytes) to_c = spend (&w->a, &w->c, req, T);
  assert_receive_fails (w, to_c, TALLY_ERROR_WRONG_PAYEE);
}

static void
test_receive_refuses_replayed_permission (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T);
  assert_receive_fails (w, permission, TALLY_ERROR_REPLAY);
}

static void
test_receive_refuses_reused_payer_counter (World *w, gconstpointer data)
{
  g_autoptr (GBytes) first = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, first, T);

  /* A second, different permission claiming counter 1 again. */
  g_autoptr (GBytes) second = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (second);
  g_assert_cmpuint (p->counter, ==, 2);
  p->counter = 1;
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_COUNTER_REUSED);
}

static void
test_receive_refuses_zero_counter_or_short_chain (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) zero = decode_permission (permission);
  zero->counter = 0;
  g_autoptr (GBytes) forged_zero = resign_permission (w, &w->a, zero);
  assert_receive_fails (w, forged_zero, TALLY_ERROR_MALFORMED);

  g_autoptr (Tally__DepositPermission) chain = decode_permission (permission);
  chain->chain_prev.len = 16;
  g_autoptr (GBytes) forged_chain = resign_permission (w, &w->a, chain);
  assert_receive_fails (w, forged_chain, TALLY_ERROR_MALFORMED);
}

static void
test_receive_refuses_unknown_nonce (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  randombytes_buf (p->payee_nonce.data, p->payee_nonce.len);
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_WRONG_NONCE);
}

static void
test_receive_refuses_consumed_nonce (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = NULL;
  g_autoptr (GBytes) first = pending_permission (w, 100, NULL, &req);
  /* The payer may sign twice for one request; the payee takes one. */
  g_autoptr (GBytes) second = spend (&w->a, &w->b, req, T);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, first, T);
  assert_receive_fails (w, second, TALLY_ERROR_REPLAY);
}

static void
test_receive_refuses_other_currency (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  memcpy (p->amount->currency, "USD", 3);
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_receive_refuses_invalid_amount (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  p->amount->value = -100;
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_receive_refuses_amount_different_from_request (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  req->amount->value = 90;
  g_autoptr (GBytes) underpaid = spend (&w->a, &w->b, req, T);
  assert_receive_fails (w, underpaid, TALLY_ERROR_AMOUNT_MISMATCH);
}

static void
test_receive_refuses_memo_different_from_request (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, "rent", NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  p->memo_hash.data[0] ^= 1;
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_MALFORMED);
}

static void
test_receive_refuses_amount_over_payer_limit (World *w, gconstpointer data)
{
  /* a itself never signs this; a tampered register could. */
  g_autoptr (Tally__PaymentRequest) big = request (&w->b, FIXTURE_MAX_PAYMENT + 1, NULL, T);
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  memcpy (p->payee_nonce.data, big->nonce.data, TALLY_NONCE_BYTES);
  p->amount->value = FIXTURE_MAX_PAYMENT + 1;
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_LIMIT_PAYMENT);
}

static void
test_receive_refuses_amount_over_policy (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  TallyAcceptPolicy policy = { .max_amount = 99 };
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, &policy, T, TALLY_ERROR_POLICY);
}

static void
test_receive_refuses_balance_over_cap (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  fixture_register_fund (w->issuer, w->b.reg, 1, FIXTURE_BALANCE_CAP - 99, T);
  assert_receive_fails (w, permission, TALLY_ERROR_LIMIT_BALANCE);
}

/* ===== revocation list ===== */

static void
test_revocation_refuses_bad_list (World *w, gconstpointer data)
{
  g_autoptr (GBytes) list = fixture_revocation_list (w->issuer, 2, T, NULL);
  g_autoptr (GBytes) bad = tamper_signature (list);
  assert_list_fails (&w->a, bad, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) foreign = fixture_revocation_list (other, 2, T, NULL);
  assert_list_fails (&w->a, foreign, TALLY_ERROR_WRONG_ISSUER);

  g_autoptr (GBytes) voucher = fixture_voucher (w->issuer, id_of (&w->a), 2, 1, NULL);
  assert_list_fails (&w->a, voucher, TALLY_ERROR_WRONG_CONTEXT);
}

static void
test_revocation_keeps_newest_list (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_assert_cmpuint (tally_register_get_revocation_serial (w->a.reg), ==, 0);
  g_assert_null (tally_register_get_revocation_list (w->a.reg));

  g_autoptr (GBytes) five = fixture_revocation_list (w->issuer, 5, T + 5, id_of (&w->c), NULL);
  g_assert_true (update_list (w->a.reg, five, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_revocation_serial (w->a.reg), ==, 5);
  g_assert_cmpuint (tally_register_get_revocation_issued_at (w->a.reg), ==, T + 5);
  g_autoptr (GBytes) held = tally_register_get_revocation_list (w->a.reg);
  g_assert_true (g_bytes_equal (held, five));

  g_autofree char *before = dump (&w->a);
  g_autoptr (GBytes) three = fixture_revocation_list (w->issuer, 3, T + 9, NULL);
  g_assert_true (update_list (w->a.reg, three, &error));
  g_assert_no_error (error);
  g_autoptr (GBytes) five_again = fixture_revocation_list (w->issuer, 5, T + 9, NULL);
  g_assert_true (update_list (w->a.reg, five_again, &error));
  g_assert_no_error (error);
  assert_unchanged (&w->a, before);

  /* The stored list still decides after reopening. */
  g_autoptr (Tally__PaymentRequest) req = request (&w->c, 10, NULL, T);
  assert_spend_fails (&w->a, w->c.cert_env, req, T, TALLY_ERROR_REVOKED);
}

static void
test_revocation_of_self_blocks_spending (World *w, gconstpointer data)
{
  revoke_in (w, &w->a, 2, id_of (&w->a));
  reopen (&w->a);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_REVOKED);
}

/* ===== sign ===== */

static void
test_sign_verifies_under_register_key (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  static const guint8 transcript[] = "transcript hash";
  guint8 sig[TALLY_SIGNATURE_BYTES];
  tally_register_sign (w->a.reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
                       transcript, sizeof transcript, sig);

  g_assert_true (tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
                                        transcript, sizeof transcript, sig, sizeof sig,
                                        tally_register_get_public_key (w->a.reg), &error));
  g_assert_no_error (error);
  g_assert_false (tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER,
                                         transcript, sizeof transcript, sig, sizeof sig,
                                         tally_register_get_public_key (w->a.reg), &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  g_clear_error (&error);
  g_assert_false (tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
                                         transcript, sizeof transcript, sig, sizeof sig,
                                         tally_register_get_public_key (w->b.reg), &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
}

/* ===== reconciliation ===== */

static Tally__ReconciliationBundle *
export_bundle (Party *p, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) packed = tally_register_export_bundle (p->reg, now, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (packed);
  g_assert_true (tally_envelope_verify (
    env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
    tally_register_get_public_key (p->reg), &error));
  g_assert_no_error (error);
  Tally__ReconciliationBundle *b =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, env->body.data,
                  env->body.len, "bundle", &error);
  g_assert_no_error (error);
  return b;
}

static void
assert_envelope_is (const Tally__SignedEnvelope *env, GBytes *packed)
{
  g_assert_nonnull (env);
  g_autoptr (GBytes) repacked = tally_envelope_pack (env);
  g_assert_true (g_bytes_equal (repacked, packed));
}

static void
test_bundle_refuses_without_certificate (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) d = uncertified (w, "d");
  g_autoptr (GBytes) bundle = tally_register_export_bundle (d, T, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE);
  g_assert_null (bundle);
}

static void
test_bundle_holds_every_unsettled_entry (World *w, gconstpointer data)
{
  g_autoptr (GBytes) voucher = fixture_voucher (w->issuer, id_of (&w->a), 1, 10000, NULL);
  g_autoptr (GBytes) receipt = NULL;
  g_autoptr (GBytes) first = fixture_pay (w->a.reg, w->b.reg, 1000, "one", T + 1, &receipt);
  g_autoptr (GBytes) second = pending_permission (w, 200, NULL, NULL);
  revoke_in (w, &w->a, 4, id_of (&w->c));

  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 60);
  g_assert_cmpmem (b->register_id.data, b->register_id.len, id_of (&w->a), TALLY_ID_BYTES);
  assert_envelope_is (b->certificate, w->a.cert);
  g_assert_cmpuint (b->counter, ==, 2);
  g_assert_cmpmem (b->chain_head.data, b->chain_head.len, tally_register_get_chain_head (w->a.reg),
                   TALLY_HASH_BYTES);
  g_assert_cmpint (b->balance, ==, 8800);
  g_assert_cmpuint (b->created_at, ==, T + 60);
  g_assert_cmpuint (b->revocation_serial, ==, 4);
  g_assert_cmpuint (b->n_spent, ==, 2);
  assert_envelope_is (b->spent[0]->permission, first);
  assert_envelope_is (b->spent[0]->receipt, receipt);
  assert_envelope_is (b->spent[1]->permission, second);
  g_assert_null (b->spent[1]->receipt);
  g_assert_cmpuint (b->n_received, ==, 0);
  g_assert_cmpuint (b->n_vouchers, ==, 1);
  assert_envelope_is (b->vouchers[0], voucher);

  g_autoptr (Tally__ReconciliationBundle) bb = export_bundle (&w->b, T + 60);
  g_assert_cmpuint (bb->counter, ==, 0);
  g_assert_cmpint (bb->balance, ==, 1000);
  g_assert_cmpuint (bb->n_spent, ==, 0);
  g_assert_cmpuint (bb->n_vouchers, ==, 0);
  g_assert_cmpuint (bb->n_received, ==, 1);
  assert_envelope_is (bb->received[0]->payer_certificate, w->a.cert);
  assert_envelope_is (bb->received[0]->permission, first);
  assert_envelope_is (bb->received[0]->receipt, receipt);
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (id_of (&w->b), genesis);
  g_assert_cmpmem (bb->chain_head.data, bb->chain_head.len, genesis, sizeof genesis);
}

static void
test_result_refuses_bad_result (World *w, gconstpointer data)
{
  static const guint8 garbage[] = { 0xff, 0xff, 0xff, 0xff };
  g_autoptr (GBytes) not_envelope = g_bytes_new_static (garbage, sizeof garbage);
  assert_apply_fails (&w->a, not_envelope, T, TALLY_ERROR_MALFORMED);

  FixtureResult fr = { .register_id = id_of (&w->a), .reconciled_at = T + 100 };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_autoptr (GBytes) bad = tamper_signature (result);
  assert_apply_fails (&w->a, bad, T + 100, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (FixtureIssuer) other = fixture_issuer_new (NULL);
  g_autoptr (GBytes) foreign = fixture_result (other, &fr);
  assert_apply_fails (&w->a, foreign, T + 100, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (GBytes) body = g_bytes_new_static (garbage, sizeof garbage);
  g_autoptr (GBytes) signed_garbage = fixture_issuer_sign (
    w->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT, body);
  assert_apply_fails (&w->a, signed_garbage, T + 100, TALLY_ERROR_MALFORMED);
}

static void
test_result_refuses_result_for_another_register (World *w, gconstpointer data)
{
  FixtureResult fr = { .register_id = id_of (&w->b), .reconciled_at = T + 100 };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  assert_apply_fails (&w->a, result, T + 100, TALLY_ERROR_WRONG_REGISTER);
}

static void
test_result_refuses_replayed_result (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  FixtureResult fr = { .register_id = id_of (&w->a), .reconciled_at = T + 100 };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + 100, &error));
  g_assert_no_error (error);

  assert_apply_fails (&w->a, result, T + 200, TALLY_ERROR_REPLAY);
  fr.reconciled_at = T + 50;
  g_autoptr (GBytes) older = fixture_result (w->issuer, &fr);
  assert_apply_fails (&w->a, older, T + 200, TALLY_ERROR_REPLAY);
}

static void
test_result_settles_and_resets_offline_count (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) first = fixture_pay (w->a.reg, w->b.reg, 1000, NULL, T + 1, NULL);
  g_autoptr (GBytes) second = pending_permission (w, 200, NULL, NULL);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 2);

  g_autoptr (GBytes) list = fixture_revocation_list (w->issuer, 7, T + 90, id_of (&w->c), NULL);
  Tally__Limits limits = fixture_limits ();
  limits.max_offline_payments = 9;
  g_autoptr (GBytes) renewed = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                                &limits, T, T + 2 * FIXTURE_YEAR, 2);
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = 1,
    .revocation_list = list,
    .renewed_certificate = renewed,
    .reconciled_at = T + 100,
    .settled_voucher_sequence = 1,
  };
  /* A voucher loaded after the bundle left must stay unsettled. */
  fixture_register_fund (w->issuer, w->a.reg, 2, 50, T + 95);
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + 101, &error));
  g_assert_no_error (error);

  reopen (&w->a);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 0);
  g_assert_cmpuint (tally_register_get_last_reconciliation (w->a.reg), ==, T + 100);
  g_assert_cmpuint (tally_register_get_revocation_serial (w->a.reg), ==, 7);
  g_assert_cmpuint (tally_register_get_certificate_info (w->a.reg)->serial, ==, 2);
  g_assert_cmpuint (tally_register_get_certificate_info (w->a.reg)->limits->max_offline_payments,
                    ==, 9);
  g_assert_false (tally_register_is_closed (w->a.reg));
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 8850);

  /* Counter 1 and voucher 1 are settled; counter 2 and voucher 2 still
   * travel. */
  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 102);
  g_assert_cmpuint (b->n_spent, ==, 1);
  assert_envelope_is (b->spent[0]->permission, second);
  g_assert_cmpuint (b->n_vouchers, ==, 1);
  g_autoptr (GPtrArray) history = tally_register_get_history (w->a.reg, 0, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < history->len; i++) {
    TallyHistoryEntry *e = history->pdata[i];
    TallyEntryState expect = e->kind == TALLY_ENTRY_SPENT && e->counter == 2
                               ? TALLY_ENTRY_STATE_PENDING
                             : e->kind == TALLY_ENTRY_LOAD && e->sequence == 2
                               ? TALLY_ENTRY_STATE_ACKNOWLEDGED
                               : TALLY_ENTRY_STATE_SETTLED;
    g_assert_cmpint (e->state, ==, expect);
  }

  /* The offline window restarts from the reconciliation. */
  g_autoptr (Tally__PaymentRequest) req =
    request (&w->b, 10, NULL, T + 100 + FIXTURE_MAX_OFFLINE_SECONDS - 1);
  g_autoptr (GBytes) late = spend (&w->a, &w->b, req, T + 100 + FIXTURE_MAX_OFFLINE_SECONDS);

  /* The payee settles what the issuer names. */
  guint8 hash[TALLY_HASH_BYTES];
  fixture_body_hash (first, hash);
  const guint8 *settled[] = { hash };
  FixtureResult fb = {
    .register_id = id_of (&w->b),
    .settled_received = settled,
    .n_settled_received = 1,
    .reconciled_at = T + 100,
  };
  g_autoptr (GBytes) bresult = fixture_result (w->issuer, &fb);
  g_assert_true (apply (w->b.reg, bresult, T + 101, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__ReconciliationBundle) bb = export_bundle (&w->b, T + 102);
  g_assert_cmpuint (bb->n_received, ==, 0);
}

static void
test_result_marks_register_revoked (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  FixtureResult fr = { .register_id = id_of (&w->a), .reconciled_at = T + 100, .revoked = TRUE };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + 100, &error));
  g_assert_no_error (error);
  reopen (&w->a);
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T + 100);
  assert_spend_fails (&w->a, w->b.cert_env, req, T + 100, TALLY_ERROR_REVOKED);
}

/* A result renewing the certificate at @serial, of @reconciled_at. */
static GBytes *
renewing_result (World *w, guint64 reconciled_at, guint64 settled_counter, guint64 serial)
{
  g_autoptr (GBytes) renewed = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                                NULL, T, T + 2 * FIXTURE_YEAR, serial);
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = settled_counter,
    .renewed_certificate = renewed,
    .reconciled_at = reconciled_at,
  };
  return fixture_result (w->issuer, &fr);
}

/* Protocol 5: two reconciliations within one second are both applied, in
 * the order of the certificate serials the issuer renews them with; only
 * the same result again, or an older one, is a replay. */
static void
test_result_applies_newer_result_of_the_same_second (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) first = renewing_result (w, T + 100, 0, 2);
  g_assert_true (apply (w->a.reg, first, T + 100, &error));
  g_assert_no_error (error);

  g_autoptr (GBytes) receipt = NULL;
  g_autoptr (GBytes) permission = fixture_pay (w->a.reg, w->b.reg, 1000, NULL, T + 100, &receipt);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 1);

  g_autoptr (GBytes) second = renewing_result (w, T + 100, 1, 3);
  g_assert_true (apply (w->a.reg, second, T + 100, &error));
  g_assert_no_error (error);
  reopen (&w->a);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 0);
  g_assert_cmpuint (tally_register_get_certificate_info (w->a.reg)->serial, ==, 3);
  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 100);
  g_assert_cmpuint (b->n_spent, ==, 0);

  /* The same results again, an older serial and no renewal are replays. */
  assert_apply_fails (&w->a, second, T + 100, TALLY_ERROR_REPLAY);
  assert_apply_fails (&w->a, first, T + 100, TALLY_ERROR_REPLAY);
  FixtureResult bare = { .register_id = id_of (&w->a), .reconciled_at = T + 100 };
  g_autoptr (GBytes) no_renewal = fixture_result (w->issuer, &bare);
  assert_apply_fails (&w->a, no_renewal, T + 100, TALLY_ERROR_REPLAY);

  /* A revocation in the same second is newer; after it nothing of that
   * second is. */
  bare.revoked = TRUE;
  g_autoptr (GBytes) revoking = fixture_result (w->issuer, &bare);
  g_assert_true (apply (w->a.reg, revoking, T + 100, &error));
  g_assert_no_error (error);
  assert_apply_fails (&w->a, revoking, T + 100, TALLY_ERROR_REPLAY);
  g_autoptr (GBytes) later_serial = renewing_result (w, T + 100, 1, 4);
  assert_apply_fails (&w->a, later_serial, T + 100, TALLY_ERROR_REPLAY);
}

/* ===== defund ===== */

static void
test_defund_refuses_without_certificate (World *w, gconstpointer data)
{
  Party d = extra_party (w, "d", FALSE, NULL);
  assert_defund_fails (&d, TALLY_ERROR_NO_CERTIFICATE);
  party_clear (&d);
}

static void
test_defund_refuses_when_closed (World *w, gconstpointer data)
{
  defund (&w->a, T);
  assert_defund_fails (&w->a, TALLY_ERROR_WRONG_STATE);
}

static void
test_defund_refuses_empty_register (World *w, gconstpointer data)
{
  assert_defund_fails (&w->b, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_defund_closes_register (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) paid = fixture_pay (w->a.reg, w->b.reg, 2500, NULL, T, NULL);
  guint8 prev[TALLY_HASH_BYTES];
  memcpy (prev, tally_register_get_chain_head (w->a.reg), sizeof prev);

  g_autoptr (GBytes) record = tally_register_defund (w->a.reg, T + 9, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (record);
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND,
                                        tally_register_get_public_key (w->a.reg), &error));
  g_assert_no_error (error);
  g_autoptr (Tally__DefundRecord) d = TALLY_UNPACK (Tally__DefundRecord, tally__defund_record,
                                                    env->body.data, env->body.len, "defund", NULL);
  g_assert_nonnull (d);
  g_assert_cmpmem (d->register_id.data, d->register_id.len, id_of (&w->a), TALLY_ID_BYTES);
  g_assert_cmpint (d->amount->value, ==, 7500);
  g_assert_cmpstr (d->amount->currency, ==, FIXTURE_CURRENCY);
  g_assert_cmpuint (d->counter, ==, 2);
  g_assert_cmpmem (d->chain_prev.data, d->chain_prev.len, prev, sizeof prev);
  g_assert_cmpuint (d->created_at, ==, T + 9);

  guint8 entry[TALLY_HASH_BYTES], head[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, entry);
  tally_chain_next (prev, entry, head);

  reopen (&w->a);
  g_assert_true (tally_register_is_closed (w->a.reg));
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 0);
  g_assert_cmpuint (tally_register_get_counter (w->a.reg), ==, 2);
  g_assert_cmpmem (tally_register_get_chain_head (w->a.reg), TALLY_HASH_BYTES, head, sizeof head);

  g_autoptr (GPtrArray) history = tally_register_get_history (w->a.reg, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (history->len, ==, 1);
  TallyHistoryEntry *e = history->pdata[0];
  g_assert_cmpint (e->kind, ==, TALLY_ENTRY_DEFUND);
  g_assert_cmpint (e->state, ==, TALLY_ENTRY_STATE_PENDING);
  g_assert_cmpint (e->amount, ==, 7500);
  g_assert_null (e->peer);
  fixture_assert_conserved (w->a.reg);

  /* The record travels to the issuer like a payment. */
  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 10);
  g_assert_cmpuint (b->n_spent, ==, 2);
  assert_envelope_is (b->spent[1]->permission, record);
  g_assert_null (b->spent[1]->receipt);
}

/* ===== history ===== */

static void
test_history_lists_newest_first_with_limit (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) p1 = fixture_pay (w->a.reg, w->b.reg, 100, NULL, T + 10, NULL);
  g_autoptr (GBytes) p2 = fixture_pay (w->b.reg, w->a.reg, 40, "back", T + 20, NULL);
  g_autoptr (GBytes) p3 = fixture_pay (w->a.reg, w->c.reg, 7, NULL, T + 30, NULL);

  g_autoptr (GPtrArray) all = tally_register_get_history (w->a.reg, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (all->len, ==, 4);
  static const TallyEntryKind kinds[] = { TALLY_ENTRY_SPENT, TALLY_ENTRY_RECEIVED,
                                          TALLY_ENTRY_SPENT, TALLY_ENTRY_LOAD };
  static const gint64 amounts[] = { 7, 40, 100, 10000 };
  for (guint i = 0; i < all->len; i++) {
    TallyHistoryEntry *e = all->pdata[i];
    g_assert_cmpint (e->kind, ==, kinds[i]);
    g_assert_cmpint (e->amount, ==, amounts[i]);
  }
  g_assert_cmpstr (((TallyHistoryEntry *) all->pdata[1])->memo, ==, "back");

  g_autoptr (GPtrArray) two = tally_register_get_history (w->a.reg, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (two->len, ==, 2);
  g_assert_cmpint (((TallyHistoryEntry *) two->pdata[1])->amount, ==, 40);

  g_assert_cmpstr (tally_entry_kind_to_string (TALLY_ENTRY_DEFUND), ==, "defund");
  g_assert_cmpstr (tally_entry_state_to_string (TALLY_ENTRY_STATE_SETTLED), ==, "settled");
}

/* ===== lifetime, persistence, key file, storage ===== */

static void
test_lifetime_create_refuses_existing_register (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) again =
    tally_register_create (w->a.dir, fixture_issuer_public_key (w->issuer), &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_null (again);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);
  reopen (&w->a);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);
}

static void
test_lifetime_open_refuses_empty_directory (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (w->root, "empty", NULL);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  g_autoptr (TallyRegister) reg = tally_register_open (dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (reg);
}

static void
test_lifetime_identity_derives_from_key (World *w, gconstpointer data)
{
  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (tally_register_get_public_key (w->a.reg), id);
  g_assert_cmpmem (tally_register_get_id (w->a.reg), TALLY_ID_BYTES, id, sizeof id);
  g_autofree char *hex = tally_register_get_id_hex (w->a.reg);
  g_autofree char *expect = tally_hex_encode (id, sizeof id);
  g_assert_cmpstr (hex, ==, expect);
  g_assert_cmpmem (tally_register_get_issuer_key (w->a.reg), TALLY_PUBLIC_KEY_BYTES,
                   fixture_issuer_public_key (w->issuer), TALLY_PUBLIC_KEY_BYTES);
  g_assert_true (memcmp (tally_register_get_id (w->a.reg), tally_register_get_id (w->b.reg),
                         TALLY_ID_BYTES) != 0);
}

static void
test_persistence_reopen_restores_state (World *w, gconstpointer data)
{
  g_autoptr (GBytes) p1 = fixture_pay (w->a.reg, w->b.reg, 1200, "lunch", T + 1, NULL);
  g_autoptr (GBytes) p2 = pending_permission (w, 300, NULL, NULL);
  g_autoptr (Tally__PaymentRequest) open_req = request (&w->b, 55, "later", T + 2);
  revoke_in (w, &w->a, 3, id_of (&w->c));
  FixtureResult fr = { .register_id = id_of (&w->b), .reconciled_at = T + 3 };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_autoptr (GError) error = NULL;
  g_assert_true (apply (w->b.reg, result, T + 3, &error));
  g_assert_no_error (error);

  g_autofree char *a_before = dump (&w->a);
  g_autofree char *b_before = dump (&w->b);
  guint8 a_key[TALLY_PUBLIC_KEY_BYTES];
  memcpy (a_key, tally_register_get_public_key (w->a.reg), sizeof a_key);

  reopen (&w->a);
  reopen (&w->b);
  g_autofree char *a_after = dump (&w->a);
  g_autofree char *b_after = dump (&w->b);
  g_assert_cmpstr (a_after, ==, a_before);
  g_assert_cmpstr (b_after, ==, b_before);
  g_assert_cmpmem (tally_register_get_public_key (w->a.reg), TALLY_PUBLIC_KEY_BYTES, a_key,
                   sizeof a_key);
  g_assert_cmpuint (tally_register_get_offline_payments (w->a.reg), ==, 2);
  g_assert_cmpstr (tally_register_get_currency (w->a.reg), ==, FIXTURE_CURRENCY);

  /* The reopened payee still honours its outstanding request. */
  g_autoptr (GBytes) paid = spend (&w->a, &w->b, open_req, T + 4);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, paid, T + 4);
}

static void
test_key_file_is_private (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (w->root, "nested", "reg", NULL);
  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, fixture_issuer_public_key (w->issuer), &error);
  g_assert_no_error (error);

  GStatBuf st;
  g_assert_cmpint (g_stat (dir, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  g_autofree char *key = g_build_filename (dir, "register.key", NULL);
  g_assert_cmpint (g_stat (key, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, TALLY_SECRET_KEY_BYTES);
  g_autofree char *db = g_build_filename (dir, "register.db", NULL);
  g_assert_cmpint (g_stat (db, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0077, ==, 0);
}

static void
test_key_file_refused_when_readable_by_others (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *key = g_build_filename (w->a.dir, "register.key", NULL);
  g_clear_pointer (&w->a.reg, tally_register_free);
  g_assert_cmpint (g_chmod (key, 0644), ==, 0);

  g_autoptr (TallyRegister) reg = tally_register_open (w->a.dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_null (reg);

  g_assert_cmpint (g_chmod (key, 0600), ==, 0);
  reopen (&w->a);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);
}

static void
test_key_file_of_another_register_is_refused (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *a_key = g_build_filename (w->a.dir, "register.key", NULL);
  g_autofree char *b_key = g_build_filename (w->b.dir, "register.key", NULL);
  g_clear_pointer (&w->a.reg, tally_register_free);
  g_autofree char *contents = NULL;
  gsize len;
  g_file_get_contents (b_key, &contents, &len, &error);
  g_assert_no_error (error);
  g_assert_true (tally_key_file_write (a_key, (const guint8 *) contents, &error));
  g_assert_no_error (error);
  sodium_memzero (contents, len);

  g_autoptr (TallyRegister) reg = tally_register_open (w->a.dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_null (reg);
}

/* --- an unbound register (no issuer_key yet) --- */

static TallyRegister *
unbound_register (World *w, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (w->root, name, NULL);
  TallyRegister *reg = tally_register_create_unbound (dir, &error);
  g_assert_no_error (error);
  g_assert_false (tally_register_has_issuer (reg));
  return reg;
}

static void
test_unbound_register_takes_nothing_signed (World *w, gconstpointer data)
{
  g_autoptr (TallyRegister) reg = unbound_register (w, "fresh");
  g_autoptr (GBytes) cert =
    fixture_certify (w->issuer, tally_register_get_public_key (reg), NULL, T, T + FIXTURE_YEAR, 1);
  g_autoptr (GBytes) voucher = fixture_voucher (w->issuer, tally_register_get_id (reg), 1, 100, NULL);
  g_autofree char *before = fixture_register_dump (reg, TRUE);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (cert, &len);
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_register_install_certificate (reg, bytes, len, T, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
    g_assert_nonnull (strstr (error->message, "no issuer"));
  }
  bytes = g_bytes_get_data (voucher, &len);
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_register_load (reg, bytes, len, T, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  }
  g_autofree char *after = fixture_register_dump (reg, TRUE);
  g_assert_cmpstr (before, ==, after);
}

static void
test_unbound_register_takes_issuer_once_and_keeps_it (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (w->root, "fresh", NULL);
  g_autoptr (TallyRegister) reg = unbound_register (w, "fresh");
  g_autoptr (GBytes) key_set = fixture_issuer_key_set (w->issuer);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (key_set, &len);
  g_assert_true (tally_register_set_issuer (reg, bytes, len, &error));
  g_assert_no_error (error);
  g_assert_true (tally_register_has_issuer (reg));
  g_assert_cmpmem (tally_register_get_issuer_key (reg), TALLY_PUBLIC_KEY_BYTES,
                   fixture_issuer_public_key (w->issuer), TALLY_PUBLIC_KEY_BYTES);

  /* Kept across a reopen; then certificates and vouchers verify. */
  g_clear_pointer (&reg, tally_register_free);
  reg = tally_register_open (dir, &error);
  g_assert_no_error (error);
  g_assert_true (tally_register_has_issuer (reg));
  g_autoptr (GBytes) cert =
    fixture_certify (w->issuer, tally_register_get_public_key (reg), NULL, T, T + FIXTURE_YEAR, 1);
  const guint8 *cert_bytes = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (reg, cert_bytes, len, T, &error));
  g_assert_no_error (error);
  fixture_register_fund (w->issuer, reg, 1, 700, T);
  g_assert_cmpint (tally_register_get_balance (reg), ==, 700);

  /* Never replaced, not even by the same issuer's set again. */
  g_autoptr (FixtureIssuer) rogue = fixture_issuer_new (FIXTURE_CURRENCY);
  g_autoptr (GBytes) rogue_set = fixture_issuer_key_set (rogue);
  GBytes *sets[] = { rogue_set, key_set };
  for (guint i = 0; i < G_N_ELEMENTS (sets); i++) {
    g_autoptr (GError) again = NULL;
    bytes = g_bytes_get_data (sets[i], &len);
    g_assert_false (tally_register_set_issuer (reg, bytes, len, &again));
    g_assert_error (again, TALLY_ERROR, TALLY_ERROR_EXISTS);
  }
  g_assert_cmpmem (tally_register_get_issuer_key (reg), TALLY_PUBLIC_KEY_BYTES,
                   fixture_issuer_public_key (w->issuer), TALLY_PUBLIC_KEY_BYTES);
}

static void
test_unbound_register_refuses_bad_key_set (World *w, gconstpointer data)
{
  g_autoptr (TallyRegister) reg = unbound_register (w, "fresh");
  g_autoptr (GBytes) key_set = fixture_issuer_key_set (w->issuer);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (key_set);
  env->signature.data[3] ^= 0x10;
  g_autoptr (GBytes) forged = tally_envelope_pack (env);
  g_autoptr (GBytes) voucher_shaped =
    fixture_voucher (w->issuer, tally_register_get_id (reg), 1, 100, NULL);
  static const guint8 junk[] = { 0x0a, 0xff, 0x01 };
  g_autoptr (GBytes) junk_bytes = g_bytes_new_static (junk, sizeof junk);
  struct
  {
    GBytes *input;
    TallyError code;
  } cases[] = {
    { forged, TALLY_ERROR_BAD_SIGNATURE },
    { voucher_shaped, TALLY_ERROR_WRONG_CONTEXT },
    { junk_bytes, TALLY_ERROR_MALFORMED },
  };
  g_autofree char *before = fixture_register_dump (reg, TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gsize len;
    const guint8 *bytes = g_bytes_get_data (cases[i].input, &len);
    g_test_message ("case %u", i);
    g_assert_false (tally_register_set_issuer (reg, bytes, len, &error));
    g_assert_error (error, TALLY_ERROR, (gint) cases[i].code);
    g_assert_false (tally_register_has_issuer (reg));
  }
  g_autofree char *after = fixture_register_dump (reg, TRUE);
  g_assert_cmpstr (before, ==, after);
}

static sqlite3 *
side_connection (Party *p)
{
  g_autofree char *path = g_build_filename (p->dir, "register.db", NULL);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  return db;
}

static void
test_storage_failed_statement_rolls_back (World *w, gconstpointer data)
{
  /* Another writer took counter 1 behind the register's back: the spend's
   * insert fails after the permission was signed. */
  sqlite3 *db = side_connection (&w->a);
  g_assert_cmpint (sqlite3_exec (db,
                                 "INSERT INTO spent (counter, kind, envelope, amount, created_at,"
                                 " state) VALUES (1, 'defund', x'00', 1, 0, 'settled')",
                                 NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_close (db);

  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 100, NULL, T);
  g_autofree char *before = dump (&w->a);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = tally_register_spend (w->a.reg, w->b.cert_env, req, T, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_null (permission);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);
  g_assert_cmpuint (tally_register_get_counter (w->a.reg), ==, 0);
  assert_unchanged (&w->a, before);
}

static void
test_storage_busy_database_is_storage_error (World *w, gconstpointer data)
{
  sqlite3 *db = side_connection (&w->a);
  g_assert_cmpint (sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL), ==, SQLITE_OK);

  g_autofree char *before = dump (&w->a);
  g_autoptr (GBytes) v = fixture_voucher (w->issuer, id_of (&w->a), 2, 100, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (load (w->a.reg, v, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000);

  g_assert_cmpint (sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
  assert_unchanged (&w->a, before);

  g_clear_error (&error);
  g_assert_true (load (w->a.reg, v, &error));
  g_assert_no_error (error);
}

/* ===== commit points ===== */

static void
record_point (const char *point, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup (point));
}

static void
test_commit_points_are_reported_in_order (World *w, gconstpointer data)
{
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func (g_free);
  tally_register_set_commit_hook (w->a.reg, record_point, seen);
  tally_register_set_commit_hook (w->b.reg, record_point, seen);
  g_autoptr (GBytes) paid = fixture_pay (w->a.reg, w->b.reg, 10, NULL, T, NULL);

  static const char *const expect[] = {
    "request:before-commit",     "request:after-commit", "spend:before-commit",
    "spend:after-commit",        "receive:before-commit", "receive:after-commit",
    "acknowledge:before-commit", "acknowledge:after-commit",
  };
  g_assert_cmpuint (seen->len, ==, G_N_ELEMENTS (expect));
  for (guint i = 0; i < seen->len; i++)
    g_assert_cmpstr (seen->pdata[i], ==, expect[i]);

  const char *const *points = tally_register_commit_points ();
  guint n = 0;
  while (points[n] != NULL)
    n++;
  g_assert_cmpuint (n, ==, 22);
  g_assert_true (g_strv_contains (points, "defund:after-commit"));
  g_assert_true (g_strv_contains (points, "export:before-commit"));
}

static void
test_receive_caches_payer_certificate (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 hash[TALLY_HASH_BYTES];
  fixture_body_hash (w->a.cert, hash);
  g_autoptr (Tally__SignedEnvelope) before = tally_register_lookup_certificate (w->b.reg, hash,
                                                                              &error);
  g_assert_null (before);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_autoptr (GBytes) perm = fixture_pay (w->a.reg, w->b.reg, 100, NULL, T + 1, NULL);
  reopen (&w->b);
  g_autoptr (Tally__SignedEnvelope) cached = tally_register_lookup_certificate (w->b.reg, hash,
                                                                              &error);
  g_assert_no_error (error);
  assert_envelope_is (cached, w->a.cert);
}

static void
test_acknowledge_records_that_payee_holds_our_certificate (World *w, gconstpointer data)
{
  g_assert_false (tally_register_peer_has_certificate (w->a.reg, w->b.id));
  g_autoptr (GBytes) pending = pending_permission (w, 100, NULL, NULL);
  /* A permission without a receipt proves nothing about the payee. */
  g_assert_false (tally_register_peer_has_certificate (w->a.reg, w->b.id));
  g_autoptr (GBytes) perm = fixture_pay (w->a.reg, w->b.reg, 100, NULL, T + 1, NULL);
  reopen (&w->a);
  g_assert_true (tally_register_peer_has_certificate (w->a.reg, w->b.id));
  g_assert_false (tally_register_peer_has_certificate (w->a.reg, w->c.id));

  /* A renewed certificate is news to every payee. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) renewed = fixture_certify (w->issuer, tally_register_get_public_key (w->a.reg),
                                                NULL, T, T + FIXTURE_YEAR, 2);
  g_assert_true (tally_register_install_certificate (w->a.reg, g_bytes_get_data (renewed, NULL),
                                                     g_bytes_get_size (renewed), T + 2, &error));
  g_assert_no_error (error);
  g_assert_false (tally_register_peer_has_certificate (w->a.reg, w->b.id));
}

/* ===== expiry, delivery again and reclaim (protocol 4.4) ===== */

static void
test_request_expires_after_its_lifetime (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T);
  g_assert_cmpuint (req->expires_at, ==, T + TALLY_REQUEST_LIFETIME_DEFAULT);
  tally_register_set_request_lifetime (w->b.reg, 120);
  g_autoptr (Tally__PaymentRequest) short_req = request (&w->b, 10, NULL, T);
  g_assert_cmpuint (short_req->expires_at, ==, T + 120);

  g_autoptr (GBytes) permission = spend (&w->a, &w->b, req, T);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  g_assert_cmpuint (p->expires_at, ==, req->expires_at);
}

static void
test_spend_refuses_expired_request (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T);
  assert_spend_fails (&w->a, w->b.cert_env, req, req->expires_at, TALLY_ERROR_EXPIRED);
}

static void
test_spend_refuses_request_without_expiry (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T);
  req->expires_at = 0;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_MALFORMED);
}

static void
test_spend_refuses_request_open_longer_than_allowed (World *w, gconstpointer data)
{
  g_autoptr (Tally__PaymentRequest) req = request (&w->b, 10, NULL, T);
  req->expires_at = T + TALLY_REQUEST_LIFETIME_MAX + 1;
  assert_spend_fails (&w->a, w->b.cert_env, req, T, TALLY_ERROR_POLICY);
}

static void
test_receive_refuses_expired_permission (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, NULL,
                             T + TALLY_REQUEST_LIFETIME_DEFAULT, TALLY_ERROR_EXPIRED);
}

static void
test_receive_refuses_permission_expiring_before_horizon (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  /* The payee told the issuer, by a bundle made after the expiry, that it
   * does not hold the permission; its clock now runs behind. */
  g_autoptr (GBytes) bundle =
    tally_register_export_bundle (w->b.reg, T + TALLY_REQUEST_LIFETIME_DEFAULT, &error);
  g_assert_no_error (error);
  reopen (&w->b);
  g_assert_cmpuint (tally_register_get_horizon (w->b.reg), ==, T + TALLY_REQUEST_LIFETIME_DEFAULT);
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, NULL, T + 5, TALLY_ERROR_EXPIRED);
}

static void
test_receive_refuses_expiry_other_than_request (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (Tally__DepositPermission) p = decode_permission (permission);
  p->expires_at += 60;
  g_autoptr (GBytes) forged = resign_permission (w, &w->a, p);
  assert_receive_fails (w, forged, TALLY_ERROR_MALFORMED);
}

static GBytes *
receive_again (Party *payee, Party *payer, GBytes *permission, guint64 now, GError **error)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  return tally_register_receive_again (payee->reg, payer->cert_env, env, NULL, now, error);
}

static void
test_receive_again_returns_same_receipt_and_changes_nothing (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T + 1);
  g_autofree char *before = dump (&w->b);

  g_autoptr (GBytes) again = receive_again (&w->b, &w->a, permission, T + 2, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (again, receipt));
  assert_unchanged (&w->b, before);
  g_assert_cmpint (tally_register_get_balance (w->b.reg), ==, 100);

  /* Without the redelivery flag the same bytes are a replay. */
  assert_receive_fails_with (&w->b, w->a.cert_env, permission, NULL, T + 2, TALLY_ERROR_REPLAY);
}

static void
test_receive_again_credits_permission_never_received (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive_again (&w->b, &w->a, permission, T + 1, &error);
  g_assert_no_error (error);
  g_assert_nonnull (receipt);
  g_assert_cmpint (tally_register_get_balance (w->b.reg), ==, 100);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  g_assert_true (tally_register_acknowledge (w->a.reg, env, &error));
  g_assert_no_error (error);
}

static void
test_receive_again_refuses_expired_permission_never_received (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autofree char *before = dump (&w->b);
  g_autoptr (GBytes) receipt =
    receive_again (&w->b, &w->a, permission, T + TALLY_REQUEST_LIFETIME_DEFAULT, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED);
  g_assert_null (receipt);
  assert_unchanged (&w->b, before);
}

static void
test_pending_names_oldest_unacknowledged_permission_to_payee (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) none = tally_register_get_pending (w->a.reg, id_of (&w->b), T, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (none);
  g_clear_error (&error);

  g_autoptr (GBytes) paid = fixture_pay (w->a.reg, w->b.reg, 10, NULL, T, NULL);
  g_autoptr (GBytes) first = pending_permission (w, 20, NULL, NULL);
  g_autoptr (GBytes) second = pending_permission (w, 30, NULL, NULL);
  g_autoptr (GBytes) got = tally_register_get_pending (w->a.reg, id_of (&w->b), T, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (got, first));

  g_autoptr (GBytes) to_c = tally_register_get_pending (w->a.reg, id_of (&w->c), T, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* Expired, it can no longer be delivered: it waits for the issuer. */
  g_autoptr (GBytes) late = tally_register_get_pending (
    w->a.reg, id_of (&w->b), T + TALLY_REQUEST_LIFETIME_DEFAULT, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (late);
}

static void
test_export_commits_horizon_before_bundle_leaves (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) b1 = tally_register_export_bundle (w->b.reg, T + 50, &error);
  g_assert_no_error (error);
  reopen (&w->b);
  g_assert_cmpuint (tally_register_get_horizon (w->b.reg), ==, T + 50);
  /* A clock that went back never lowers it. */
  g_autoptr (GBytes) b2 = tally_register_export_bundle (w->b.reg, T + 10, &error);
  g_assert_no_error (error);
  reopen (&w->b);
  g_assert_cmpuint (tally_register_get_horizon (w->b.reg), ==, T + 50);
}

static void
test_bundle_keeps_listing_unacknowledged_permission (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = 1,
    .reconciled_at = T + 100,
  };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + 101, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 102);
  g_assert_cmpuint (b->n_spent, ==, 1);
  assert_envelope_is (b->spent[0]->permission, permission);
  g_assert_null (b->spent[0]->receipt);
}

static TallyEntryState
spent_state (Party *p, guint64 counter)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) history = tally_register_get_history (p->reg, 0, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < history->len; i++) {
    TallyHistoryEntry *e = history->pdata[i];
    if (e->kind == TALLY_ENTRY_SPENT && e->counter == counter)
      return e->state;
  }
  g_assert_not_reached ();
}

static void
test_result_stores_receipt_returned_by_issuer (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T + 1);
  GBytes *receipts[] = { receipt };
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = 1,
    .reconciled_at = T + 100,
    .receipts = receipts,
    .n_receipts = 1,
  };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + 101, &error));
  g_assert_no_error (error);
  reopen (&w->a);
  g_assert_cmpint (spent_state (&w->a, 1), ==, TALLY_ENTRY_STATE_SETTLED);
  g_autoptr (Tally__ReconciliationBundle) b = export_bundle (&w->a, T + 102);
  g_assert_cmpuint (b->n_spent, ==, 0);
}

static void
test_result_refuses_returned_receipt_of_another_payee (World *w, gconstpointer data)
{
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) receipt = receive (&w->b, &w->a, permission, T + 1);
  g_autoptr (Tally__Receipt) r = decode_receipt (receipt);
  g_autoptr (GBytes) by_c = resign (&w->c, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                                    &r->base);
  GBytes *receipts[] = { by_c };
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = 1,
    .reconciled_at = T + 100,
    .receipts = receipts,
    .n_receipts = 1,
  };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  assert_apply_fails (&w->a, result, T + 101, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_result_marks_given_back_permission_reclaimed (World *w, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) permission = pending_permission (w, 100, NULL, NULL);
  g_autoptr (GBytes) kept = pending_permission (w, 50, NULL, NULL);
  guint8 hash[TALLY_HASH_BYTES];
  fixture_body_hash (permission, hash);
  const guint8 *reclaimed[] = { hash };
  FixtureResult fr = {
    .register_id = id_of (&w->a),
    .settled_counter = 2,
    .reconciled_at = T + TALLY_REQUEST_LIFETIME_DEFAULT + 100,
    .reclaimed = reclaimed,
    .n_reclaimed = 1,
  };
  g_autoptr (GBytes) result = fixture_result (w->issuer, &fr);
  g_assert_true (apply (w->a.reg, result, T + TALLY_REQUEST_LIFETIME_DEFAULT + 101, &error));
  g_assert_no_error (error);
  reopen (&w->a);
  g_assert_cmpint (spent_state (&w->a, 1), ==, TALLY_ENTRY_STATE_RECLAIMED);
  g_assert_cmpint (spent_state (&w->a, 2), ==, TALLY_ENTRY_STATE_PENDING);
  /* The value went to the online account, not back into the register. */
  g_assert_cmpint (tally_register_get_balance (w->a.reg), ==, 10000 - 150);
  g_autoptr (Tally__ReconciliationBundle) b =
    export_bundle (&w->a, T + TALLY_REQUEST_LIFETIME_DEFAULT + 102);
  g_assert_cmpuint (b->n_spent, ==, 1);
  assert_envelope_is (b->spent[0]->permission, kept);
  g_autoptr (GBytes) pending = tally_register_get_pending (w->a.reg, id_of (&w->b), T, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (pending, kept));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, World, NULL, world_setup, fn, world_teardown)

  ADD ("/register/certificate/refuses-other-issuer", test_certificate_refuses_other_issuer);
  ADD ("/register/enrolment/proof-signs-exactly-the-statement",
       test_enrolment_proof_signs_exactly_the_statement);
  ADD ("/register/receive/caches-payer-certificate", test_receive_caches_payer_certificate);
  ADD ("/register/acknowledge/records-that-payee-holds-our-certificate",
       test_acknowledge_records_that_payee_holds_our_certificate);
  ADD ("/register/certificate/refuses-bad-signature", test_certificate_refuses_bad_signature);
  ADD ("/register/certificate/refuses-expired", test_certificate_refuses_expired);
  ADD ("/register/certificate/refuses-not-yet-valid", test_certificate_refuses_not_yet_valid);
  ADD ("/register/certificate/refuses-malformed", test_certificate_refuses_malformed);
  ADD ("/register/certificate/refuses-another-registers-key",
       test_certificate_refuses_another_registers_key);
  ADD ("/register/certificate/refuses-older-serial", test_certificate_refuses_older_serial);
  ADD ("/register/certificate/refuses-currency-change", test_certificate_refuses_currency_change);
  ADD ("/register/certificate/installs-newer-serial", test_certificate_installs_newer_serial);
  ADD ("/register/certificate/first-install-starts-offline-clock",
       test_certificate_first_install_starts_offline_clock);

  ADD ("/register/load/refuses-malformed-envelope", test_load_refuses_malformed_envelope);
  ADD ("/register/load/refuses-bad-signature", test_load_refuses_bad_signature);
  ADD ("/register/load/refuses-voucher-of-other-issuer", test_load_refuses_voucher_of_other_issuer);
  ADD ("/register/load/refuses-without-certificate", test_load_refuses_without_certificate);
  ADD ("/register/load/refuses-when-closed", test_load_refuses_when_closed);
  ADD ("/register/load/refuses-voucher-for-another-register",
       test_load_refuses_voucher_for_another_register);
  ADD ("/register/load/refuses-other-currency", test_load_refuses_other_currency);
  ADD ("/register/load/refuses-replayed-sequence", test_load_refuses_replayed_sequence);
  ADD ("/register/load/refuses-balance-over-cap", test_load_refuses_balance_over_cap);
  ADD ("/register/load/refuses-sum-past-amount-max", test_load_refuses_sum_past_amount_max);
  ADD ("/register/load/credits-voucher", test_load_credits_voucher);

  ADD ("/register/request/refuses-without-certificate", test_request_refuses_without_certificate);
  ADD ("/register/request/refuses-when-closed", test_request_refuses_when_closed);
  ADD ("/register/request/refuses-invalid-amount", test_request_refuses_invalid_amount);
  ADD ("/register/request/refuses-long-or-invalid-memo", test_request_refuses_long_or_invalid_memo);
  ADD ("/register/request/stores-fresh-nonce", test_request_stores_fresh_nonce);
  ADD ("/register/request/storing-drops-expired-uncredited-ones",
       test_request_storing_drops_expired_uncredited_ones);

  ADD ("/register/spend/refuses-when-closed", test_spend_refuses_when_closed);
  ADD ("/register/spend/refuses-when-revoked", test_spend_refuses_when_revoked);
  ADD ("/register/spend/refuses-without-certificate", test_spend_refuses_without_certificate);
  ADD ("/register/spend/refuses-with-own-certificate-expired",
       test_spend_refuses_with_own_certificate_expired);
  ADD ("/register/spend/refuses-payee-certificate-of-other-issuer",
       test_spend_refuses_payee_certificate_of_other_issuer);
  ADD ("/register/spend/refuses-payee-certified-for-another-currency",
       test_spend_refuses_payee_certified_for_another_currency);
  ADD ("/register/receive/refuses-payer-certified-for-another-currency",
       test_receive_refuses_payer_certified_for_another_currency);
  ADD ("/register/spend/refuses-payee-certificate-with-bad-signature",
       test_spend_refuses_payee_certificate_with_bad_signature);
  ADD ("/register/spend/refuses-expired-payee-certificate",
       test_spend_refuses_expired_payee_certificate);
  ADD ("/register/spend/refuses-payee-certificate-not-yet-valid",
       test_spend_refuses_payee_certificate_not_yet_valid);
  ADD ("/register/spend/refuses-revoked-payee", test_spend_refuses_revoked_payee);
  ADD ("/register/spend/refuses-request-for-another-payee",
       test_spend_refuses_request_for_another_payee);
  ADD ("/register/spend/refuses-short-nonce", test_spend_refuses_short_nonce);
  ADD ("/register/spend/refuses-other-currency", test_spend_refuses_other_currency);
  ADD ("/register/spend/refuses-invalid-amount", test_spend_refuses_invalid_amount);
  ADD ("/register/spend/refuses-amount-past-maximum", test_spend_refuses_amount_past_maximum);
  ADD ("/register/spend/refuses-amount-over-certified-limit",
       test_spend_refuses_amount_over_certified_limit);
  ADD ("/register/spend/refuses-past-offline-payment-count",
       test_spend_refuses_past_offline_payment_count);
  ADD ("/register/spend/refuses-past-offline-time", test_spend_refuses_past_offline_time);
  ADD ("/register/spend/refuses-insufficient-funds", test_spend_refuses_insufficient_funds);

  ADD ("/register/payment/moves-value-between-registers",
       test_payment_moves_value_between_registers);
  ADD ("/register/payment/received-value-can-be-spent-onward",
       test_payment_received_value_can_be_spent_onward);

  ADD ("/register/acknowledge/refuses-malformed-receipt",
       test_acknowledge_refuses_malformed_receipt);
  ADD ("/register/acknowledge/refuses-unknown-counter", test_acknowledge_refuses_unknown_counter);
  ADD ("/register/acknowledge/refuses-receipt-for-another-payer",
       test_acknowledge_refuses_receipt_for_another_payer);
  ADD ("/register/acknowledge/refuses-bad-signature", test_acknowledge_refuses_bad_signature);
  ADD ("/register/acknowledge/refuses-wrong-context", test_acknowledge_refuses_wrong_context);
  ADD ("/register/acknowledge/refuses-receipt-naming-another-payee",
       test_acknowledge_refuses_receipt_naming_another_payee);
  ADD ("/register/acknowledge/refuses-receipt-not-matching-permission",
       test_acknowledge_refuses_receipt_not_matching_permission);
  ADD ("/register/acknowledge/is-idempotent", test_acknowledge_is_idempotent);

  ADD ("/register/receive/refuses-when-closed", test_receive_refuses_when_closed);
  ADD ("/register/receive/refuses-without-certificate", test_receive_refuses_without_certificate);
  ADD ("/register/receive/refuses-expired-payer-certificate",
       test_receive_refuses_expired_payer_certificate);
  ADD ("/register/receive/refuses-payer-certificate-of-other-issuer",
       test_receive_refuses_payer_certificate_of_other_issuer);
  ADD ("/register/receive/refuses-revoked-payer", test_receive_refuses_revoked_payer);
  ADD ("/register/receive/refuses-with-stale-revocation-list",
       test_receive_refuses_with_stale_revocation_list);
  ADD ("/register/receive/refuses-permission-signed-by-another-key",
       test_receive_refuses_permission_signed_by_another_key);
  ADD ("/register/receive/refuses-wrong-context", test_receive_refuses_wrong_context);
  ADD ("/register/receive/refuses-malformed-permission", test_receive_refuses_malformed_permission);
  ADD ("/register/receive/refuses-permission-naming-another-payer",
       test_receive_refuses_permission_naming_another_payer);
  ADD ("/register/receive/refuses-permission-for-another-payee",
       test_receive_refuses_permission_for_another_payee);
  ADD ("/register/receive/refuses-replayed-permission", test_receive_refuses_replayed_permission);
  ADD ("/register/receive/refuses-reused-payer-counter", test_receive_refuses_reused_payer_counter);
  ADD ("/register/receive/refuses-zero-counter-or-short-chain",
       test_receive_refuses_zero_counter_or_short_chain);
  ADD ("/register/receive/refuses-unknown-nonce", test_receive_refuses_unknown_nonce);
  ADD ("/register/receive/refuses-consumed-nonce", test_receive_refuses_consumed_nonce);
  ADD ("/register/receive/refuses-other-currency", test_receive_refuses_other_currency);
  ADD ("/register/receive/refuses-invalid-amount", test_receive_refuses_invalid_amount);
  ADD ("/register/receive/refuses-amount-different-from-request",
       test_receive_refuses_amount_different_from_request);
  ADD ("/register/receive/refuses-memo-different-from-request",
       test_receive_refuses_memo_different_from_request);
  ADD ("/register/receive/refuses-amount-over-payer-limit",
       test_receive_refuses_amount_over_payer_limit);
  ADD ("/register/receive/refuses-amount-over-policy", test_receive_refuses_amount_over_policy);
  ADD ("/register/receive/refuses-balance-over-cap", test_receive_refuses_balance_over_cap);

  ADD ("/register/revocation/refuses-bad-list", test_revocation_refuses_bad_list);
  ADD ("/register/revocation/keeps-newest-list", test_revocation_keeps_newest_list);
  ADD ("/register/revocation/of-self-blocks-spending", test_revocation_of_self_blocks_spending);

  ADD ("/register/sign/verifies-under-register-key", test_sign_verifies_under_register_key);

  ADD ("/register/bundle/refuses-without-certificate", test_bundle_refuses_without_certificate);
  ADD ("/register/bundle/holds-every-unsettled-entry", test_bundle_holds_every_unsettled_entry);
  ADD ("/register/result/refuses-bad-result", test_result_refuses_bad_result);
  ADD ("/register/result/refuses-result-for-another-register",
       test_result_refuses_result_for_another_register);
  ADD ("/register/result/refuses-replayed-result", test_result_refuses_replayed_result);
  ADD ("/register/result/settles-and-resets-offline-count",
       test_result_settles_and_resets_offline_count);
  ADD ("/register/result/marks-register-revoked", test_result_marks_register_revoked);
  ADD ("/register/result/applies-newer-result-of-the-same-second",
       test_result_applies_newer_result_of_the_same_second);
  ADD ("/register/request/expires-after-its-lifetime", test_request_expires_after_its_lifetime);
  ADD ("/register/spend/refuses-expired-request", test_spend_refuses_expired_request);
  ADD ("/register/spend/refuses-request-without-expiry", test_spend_refuses_request_without_expiry);
  ADD ("/register/spend/refuses-request-open-longer-than-allowed",
       test_spend_refuses_request_open_longer_than_allowed);
  ADD ("/register/receive/refuses-expired-permission", test_receive_refuses_expired_permission);
  ADD ("/register/receive/refuses-permission-expiring-before-horizon",
       test_receive_refuses_permission_expiring_before_horizon);
  ADD ("/register/receive/refuses-expiry-other-than-request",
       test_receive_refuses_expiry_other_than_request);
  ADD ("/register/receive-again/returns-same-receipt-and-changes-nothing",
       test_receive_again_returns_same_receipt_and_changes_nothing);
  ADD ("/register/receive-again/credits-permission-never-received",
       test_receive_again_credits_permission_never_received);
  ADD ("/register/receive-again/refuses-expired-permission-never-received",
       test_receive_again_refuses_expired_permission_never_received);
  ADD ("/register/pending/names-oldest-unacknowledged-permission-to-payee",
       test_pending_names_oldest_unacknowledged_permission_to_payee);
  ADD ("/register/export/commits-horizon-before-bundle-leaves",
       test_export_commits_horizon_before_bundle_leaves);
  ADD ("/register/export/keeps-listing-unacknowledged-permission",
       test_bundle_keeps_listing_unacknowledged_permission);
  ADD ("/register/result/stores-receipt-returned-by-issuer",
       test_result_stores_receipt_returned_by_issuer);
  ADD ("/register/result/refuses-returned-receipt-of-another-payee",
       test_result_refuses_returned_receipt_of_another_payee);
  ADD ("/register/result/marks-given-back-permission-reclaimed",
       test_result_marks_given_back_permission_reclaimed);

  ADD ("/register/defund/refuses-without-certificate", test_defund_refuses_without_certificate);
  ADD ("/register/defund/refuses-when-closed", test_defund_refuses_when_closed);
  ADD ("/register/defund/refuses-empty-register", test_defund_refuses_empty_register);
  ADD ("/register/defund/closes-register", test_defund_closes_register);

  ADD ("/register/history/lists-newest-first-with-limit",
       test_history_lists_newest_first_with_limit);

  ADD ("/register/lifetime/create-refuses-existing-register",
       test_lifetime_create_refuses_existing_register);
  ADD ("/register/lifetime/open-refuses-empty-directory",
       test_lifetime_open_refuses_empty_directory);
  ADD ("/register/lifetime/identity-derives-from-key", test_lifetime_identity_derives_from_key);
  ADD ("/register/persistence/reopen-restores-state", test_persistence_reopen_restores_state);
  ADD ("/register/key-file/is-private", test_key_file_is_private);
  ADD ("/register/key-file/refused-when-readable-by-others",
       test_key_file_refused_when_readable_by_others);
  ADD ("/register/unbound/takes-nothing-signed", test_unbound_register_takes_nothing_signed);
  ADD ("/register/unbound/takes-issuer-once-and-keeps-it",
       test_unbound_register_takes_issuer_once_and_keeps_it);
  ADD ("/register/unbound/refuses-bad-key-set", test_unbound_register_refuses_bad_key_set);
  ADD ("/register/key-file/of-another-register-is-refused",
       test_key_file_of_another_register_is_refused);
  ADD ("/register/storage/failed-statement-rolls-back", test_storage_failed_statement_rolls_back);
  ADD ("/register/storage/busy-database-is-storage-error",
       test_storage_busy_database_is_storage_error);
  ADD ("/register/commit-points/are-reported-in-order", test_commit_points_are_reported_in_order);

#undef ADD
  return g_test_run ();
}
