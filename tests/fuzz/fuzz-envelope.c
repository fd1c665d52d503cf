/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Signed envelopes and the objects the issuer signs.
 *
 * Input: byte 0 holds flags, the rest is a packed SignedEnvelope.
 *   bit 0   re-sign the body under the envelope's own context with the
 *           fixed issuer key, so the checks behind the signature run on
 *           fuzzed bodies too
 *   bit 1   with bit 0: sign with the other issuer's key instead
 *   bits 2-3  "now": FUZZ_NOW, 0, G_MAXUINT64 or FUZZ_NOW + 2 years
 *
 * Invariants:
 *  - decode refuses with MALFORMED, or the envelope packs, decodes and
 *    packs again to the same bytes, and tally_envelope_copy succeeds;
 *  - tally_envelope_verify fails with WRONG_CONTEXT for every context but
 *    the envelope's, and for that one with BAD_SIGNATURE or not at all;
 *    the same answer twice (the verified-signature cache), and a fresh
 *    signature by the issuer always verifies;
 *  - nothing verifies under a key that did not sign it;
 *  - tally_certificate_verify, tally_revocation_list_verify and
 *    tally_voucher_verify fail only with their documented codes, and what
 *    they return satisfies every property they promise; the certificate
 *    check with a time agrees with the one without;
 *  - tally_issuer_key_set_verify fails only with its documented codes, and
 *    a set it returns verifies under the key it names.
 */

#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#define FLAG_RESIGN       0x01
#define FLAG_OTHER_ISSUER 0x02

static const guint64 nows[] = { FUZZ_NOW, 0, G_MAXUINT64, FUZZ_NOW + 2 * FUZZ_YEAR };

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  return 0;
}

static gboolean
code_in (const GError *error, const TallyError *codes, gsize n)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (error->code == (gint) codes[i])
      return TRUE;
  return FALSE;
}

#define ASSERT_CODE_IN(error, ...)                                                                 \
  do {                                                                                             \
    static const TallyError codes_[] = { __VA_ARGS__ };                                            \
    if (!code_in ((error), codes_, G_N_ELEMENTS (codes_)))                                         \
      g_error ("unexpected error: %s (code %d)", (error) ? (error)->message : "none",              \
               (error) ? (error)->code : 0);                                                       \
  } while (0)

static void
check_round_trip (const Tally__SignedEnvelope *env)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (Tally__SignedEnvelope) again = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) repacked = tally_envelope_pack (again);
  g_assert_true (g_bytes_equal (packed, repacked));

  g_autoptr (Tally__SignedEnvelope) copy = tally_envelope_copy (env);
  g_assert_nonnull (copy);
  g_assert_cmpint (copy->context, ==, env->context);
  g_assert_cmpmem (copy->body.data, copy->body.len, env->body.data, env->body.len);
  g_assert_cmpmem (copy->signature.data, copy->signature.len, env->signature.data,
                   env->signature.len);

  guint8 h1[TALLY_HASH_BYTES], h2[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, h1);
  tally_envelope_body_hash (copy, h2);
  g_assert_cmpmem (h1, sizeof h1, h2, sizeof h2);
}

static gboolean
issuer_id_matches (const ProtobufCBinaryData *id, const guint8 issuer[TALLY_PUBLIC_KEY_BYTES])
{
  guint8 expect[TALLY_ID_BYTES];
  tally_key_id_from_key (issuer, expect);
  return id->len == TALLY_ID_BYTES && memcmp (id->data, expect, TALLY_ID_BYTES) == 0;
}

static void
check_certificate (const Tally__SignedEnvelope *env, const guint8 *issuer, guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) any_error = NULL;
  g_autoptr (Tally__RegisterCertificate) cert = tally_certificate_verify (env, issuer, now, &error);
  g_autoptr (Tally__RegisterCertificate) any =
    tally_certificate_verify_any_time (env, issuer, &any_error);

  if (any == NULL) {
    ASSERT_CODE_IN (any_error, TALLY_ERROR_MALFORMED, TALLY_ERROR_WRONG_CONTEXT,
                    TALLY_ERROR_BAD_SIGNATURE, TALLY_ERROR_WRONG_ISSUER);
    g_assert_null (cert);
    g_assert_error (error, TALLY_ERROR, any_error->code);
    return;
  }
  g_assert_no_error (any_error);
  g_assert_true (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE);
  g_assert_true (issuer_id_matches (&any->issuer_key_id, issuer));
  g_assert_cmpuint (any->register_public_key.len, ==, TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpuint (any->register_id.len, ==, TALLY_ID_BYTES);
  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (any->register_public_key.data, id);
  g_assert_cmpmem (id, sizeof id, any->register_id.data, any->register_id.len);
  g_assert_true (tally_currency_is_valid (any->currency));
  g_assert_nonnull (any->limits);
  g_assert_cmpint (any->limits->max_payment, >, 0);
  g_assert_cmpint (any->limits->max_payment, <=, TALLY_AMOUNT_MAX);
  g_assert_cmpint (any->limits->balance_cap, >, 0);
  g_assert_cmpint (any->limits->balance_cap, <=, TALLY_AMOUNT_MAX);
  g_assert_cmpuint (any->limits->max_offline_payments, >, 0);
  g_assert_cmpuint (any->limits->max_offline_seconds, >, 0);
  g_assert_cmpuint (any->not_before, <, any->not_after);

  if (now < any->not_before) {
    g_assert_null (cert);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_CERT_NOT_YET_VALID);
  } else if (now > any->not_after) {
    g_assert_null (cert);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_CERT_EXPIRED);
  } else {
    g_assert_no_error (error);
    g_assert_nonnull (cert);
    g_assert_cmpuint (cert->serial, ==, any->serial);
  }
}

static void
check_revocation_list (const Tally__SignedEnvelope *env, const guint8 *issuer)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__RevocationList) list = tally_revocation_list_verify (env, issuer, &error);
  if (list == NULL) {
    ASSERT_CODE_IN (error, TALLY_ERROR_MALFORMED, TALLY_ERROR_WRONG_CONTEXT,
                    TALLY_ERROR_BAD_SIGNATURE, TALLY_ERROR_WRONG_ISSUER);
    return;
  }
  g_assert_no_error (error);
  g_assert_true (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST);
  g_assert_true (issuer_id_matches (&list->issuer_key_id, issuer));
  for (gsize i = 0; i < list->n_revoked_register_ids; i++) {
    g_assert_cmpuint (list->revoked_register_ids[i].len, ==, TALLY_ID_BYTES);
    g_assert_true (tally_revocation_list_contains (list, list->revoked_register_ids[i].data));
  }
}

static void
check_voucher (const Tally__SignedEnvelope *env, const guint8 *issuer)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, issuer, &error);
  if (v == NULL) {
    ASSERT_CODE_IN (error, TALLY_ERROR_MALFORMED, TALLY_ERROR_WRONG_CONTEXT,
                    TALLY_ERROR_BAD_SIGNATURE, TALLY_ERROR_WRONG_ISSUER,
                    TALLY_ERROR_INVALID_AMOUNT, TALLY_ERROR_OVERFLOW);
    return;
  }
  g_assert_no_error (error);
  g_assert_true (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER);
  g_assert_true (issuer_id_matches (&v->issuer_key_id, issuer));
  g_assert_cmpuint (v->register_id.len, ==, TALLY_ID_BYTES);
  g_assert_cmpuint (v->sequence, >, 0);
  g_assert_nonnull (v->amount);
  g_assert_true (tally_currency_is_valid (v->amount->currency));
  g_assert_cmpint (v->amount->value, >, 0);
  g_assert_cmpint (v->amount->value, <=, TALLY_AMOUNT_MAX);
}

static void
check_issuer_key_set (const Tally__SignedEnvelope *env)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__IssuerKeySet) ks = tally_issuer_key_set_verify (env, &error);
  if (ks == NULL) {
    ASSERT_CODE_IN (error, TALLY_ERROR_MALFORMED, TALLY_ERROR_WRONG_CONTEXT,
                    TALLY_ERROR_BAD_SIGNATURE);
    return;
  }
  g_assert_no_error (error);
  g_assert_true (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET);
  g_assert_cmpuint (ks->public_key.len, ==, TALLY_PUBLIC_KEY_BYTES);
  g_assert_true (tally_envelope_verify (env, env->context, ks->public_key.data, NULL));
  g_assert_true (issuer_id_matches (&ks->key_id, ks->public_key.data));
  g_assert_true (tally_currency_is_valid (ks->currency));
}

/* Every context: WRONG_CONTEXT but for the envelope's own. Returns whether
 * the envelope verifies under @key in its own context. */
static gboolean
check_contexts (const Tally__SignedEnvelope *env, const guint8 *key)
{
  gboolean own_ok = FALSE;
  for (int c = TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET;
       c <= TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY; c++) {
    g_autoptr (GError) error = NULL;
    gboolean ok = tally_envelope_verify (env, (Tally__SignatureContext) c, key, &error);
    if ((int) env->context != c) {
      g_assert_false (ok);
      g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
      continue;
    }
    if (!ok)
      g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    else
      g_assert_no_error (error);
    /* The answer does not change once it is cached. */
    g_autoptr (GError) again_error = NULL;
    gboolean again = tally_envelope_verify (env, (Tally__SignatureContext) c, key, &again_error);
    g_assert_cmpint (again, ==, ok);
    own_ok = ok;
  }
  return own_ok;
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  if (size == 0)
    return 0;
  guint8 flags = data[0];
  guint64 now = nows[(flags >> 2) & 3];
  g_autoptr (GError) error = NULL;

  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data + 1, size - 1, &error);
  if (env == NULL) {
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    return 0;
  }
  g_assert_no_error (error);
  check_round_trip (env);

  const char *label = tally_context_label (env->context);
  gboolean resigned = FALSE;
  FuzzKey signer = (flags & FLAG_OTHER_ISSUER) != 0 ? FUZZ_KEY_OTHER_ISSUER : FUZZ_KEY_ISSUER;
  if ((flags & FLAG_RESIGN) != 0 && label != NULL) {
    g_autoptr (GBytes) signed_env = fuzz_sign (signer, env->context, env->body.data, env->body.len);
    g_clear_pointer (&env, tally__signed_envelope_free);
    env = fuzz_envelope (signed_env);
    resigned = TRUE;
  }

  const guint8 *issuer = fuzz_key_public (FUZZ_KEY_ISSUER);
  const guint8 *other = fuzz_key_public (FUZZ_KEY_OTHER_ISSUER);
  gboolean by_issuer = check_contexts (env, issuer);
  gboolean by_other = check_contexts (env, other);
  /* One signature, one key. */
  g_assert_false (by_issuer && by_other);
  if (resigned) {
    g_assert_true (signer == FUZZ_KEY_ISSUER ? by_issuer : by_other);
    g_assert_true (signer == FUZZ_KEY_ISSUER ? !by_other : !by_issuer);
  }

  check_certificate (env, issuer, now);
  check_certificate (env, other, now);
  check_revocation_list (env, issuer);
  check_revocation_list (env, other);
  check_voucher (env, issuer);
  check_voucher (env, other);
  check_issuer_key_set (env);
  return 0;
}
