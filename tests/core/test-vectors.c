/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Checks docs/test-vectors.md against the core: every published vector is
 * regenerated from the fixed seeds and must match byte for byte, none may
 * be missing or extra, and every published signature must verify under the
 * published key with plain libsodium.
 *
 * The document is $TALLY_SOURCE_ROOT/docs/test-vectors.md, or the path given
 * as the only argument.
 */

#include <string.h>

#include "tally-frame.h"
#include "vectors.h"

#define LABEL_PREFIX "tally/v1/"

static char *document_path;

static VectorDoc *
load_document (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (document_path);
  VectorDoc *doc = vector_doc_load (document_path, VECTORS_FENCE_TAG, &error);
  g_assert_no_error (error);
  g_assert_nonnull (doc);
  return doc;
}

static VectorDoc *
parse_document (const char *text, GError **error)
{
  return vector_doc_parse (text, VECTORS_FENCE_TAG, error);
}

static VectorComparison
compare (const GPtrArray *expected, const GPtrArray *published)
{
  return vector_list_compare (expected, published, "core");
}

/* --- the document against the core ----------------------------------------- */

static void
test_document_has_one_block (void)
{
  g_autoptr (VectorDoc) p = load_document ();

  g_assert_cmpuint (vector_doc_get_n_blocks (p), ==, 1);
  g_assert_cmpuint (vector_doc_get_vectors (p)->len, >, 0);
}

static void
test_no_vector_missing (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (VectorDoc) p = load_document ();
  VectorComparison c = compare (expected, vector_doc_get_vectors (p));

  g_assert_cmpuint (c.missing, ==, 0);
}

static void
test_no_vector_extra_or_duplicate (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (VectorDoc) p = load_document ();
  VectorComparison c = compare (expected, vector_doc_get_vectors (p));

  g_assert_cmpuint (c.extra, ==, 0);
  g_assert_cmpuint (c.duplicate, ==, 0);
}

static void
test_every_value_matches_core (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (VectorDoc) p = load_document ();
  VectorComparison c = compare (expected, vector_doc_get_vectors (p));

  g_assert_cmpuint (c.changed, ==, 0);
  g_assert_cmpuint (c.moved, ==, 0);
}

static void
test_block_is_generator_output (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autofree char *text = vector_list_format (expected, NULL, NULL);
  g_autoptr (VectorDoc) p = load_document ();

  /* Pasted verbatim: only the fences surround it. */
  g_assert_cmpstr (vector_doc_get_block (p), ==, text);
}

/* --- the published values, checked on their own ----------------------------- */

static GBytes *
labelled (GBytes *label, GBytes *input)
{
  GByteArray *m = g_byte_array_new ();
  gsize len;
  const guint8 *data = g_bytes_get_data (label, &len);

  g_byte_array_append (m, (const guint8 *) LABEL_PREFIX, strlen (LABEL_PREFIX));
  g_byte_array_append (m, data, len);
  g_byte_array_append (m, (const guint8 *) "", 1);
  data = g_bytes_get_data (input, &len);
  if (len > 0)
    g_byte_array_append (m, data, len);
  return g_byte_array_free_to_bytes (m);
}

static void
test_published_keys_derive_from_seeds (void)
{
  static const char *const parties[] = { "issuer", "register_a", "register_b" };
  g_autoptr (VectorDoc) p = load_document ();

  for (gsize i = 0; i < G_N_ELEMENTS (parties); i++) {
    g_autofree char *n_seed = g_strconcat (parties[i], ".seed", NULL);
    g_autofree char *n_pk = g_strconcat (parties[i], ".public_key", NULL);
    g_autofree char *n_sk = g_strconcat (parties[i], ".secret_key", NULL);
    g_autofree char *n_id =
      g_strconcat (parties[i], i == 0 ? ".key_id" : ".register_id", NULL);
    GBytes *seed = vector_doc_value (p, n_seed);
    guint8 pk[TALLY_PUBLIC_KEY_BYTES], sk[TALLY_SECRET_KEY_BYTES], id[TALLY_ID_BYTES];

    g_assert_cmpuint (g_bytes_get_size (seed), ==, crypto_sign_SEEDBYTES);
    crypto_sign_seed_keypair (pk, sk, g_bytes_get_data (seed, NULL));
    if (i == 0)
      tally_key_id_from_key (pk, id);
    else
      tally_register_id_from_key (pk, id);

    g_autoptr (GBytes) b_pk = g_bytes_new (pk, sizeof pk);
    g_autoptr (GBytes) b_sk = g_bytes_new (sk, sizeof sk);
    g_autoptr (GBytes) b_id = g_bytes_new (id, sizeof id);
    vector_assert_bytes_equal (vector_doc_value (p, n_pk), b_pk, n_pk);
    vector_assert_bytes_equal (vector_doc_value (p, n_sk), b_sk, n_sk);
    vector_assert_bytes_equal (vector_doc_value (p, n_id), b_id, n_id);
    sodium_memzero (sk, sizeof sk);
  }
}

static void
test_published_hashes_match_preimages (void)
{
  g_autoptr (VectorDoc) p = load_document ();

  for (const char *const *c = vectors_hash_cases (); *c != NULL; c++) {
    g_autofree char *n_label = g_strdup_printf ("hash.%s.label", *c);
    g_autofree char *n_input = g_strdup_printf ("hash.%s.input", *c);
    g_autofree char *n_pre = g_strdup_printf ("hash.%s.preimage", *c);
    g_autofree char *n_out = g_strdup_printf ("hash.%s.output", *c);
    GBytes *out = vector_doc_value (p, n_out);
    gsize out_len = g_bytes_get_size (out);
    guint8 raw[crypto_generichash_BYTES_MAX];

    g_autoptr (GBytes) preimage =
      labelled (vector_doc_value (p, n_label), vector_doc_value (p, n_input));
    vector_assert_bytes_equal (vector_doc_value (p, n_pre), preimage, n_pre);

    g_assert_cmpuint (out_len, >=, crypto_generichash_BYTES_MIN);
    g_assert_cmpuint (out_len, <=, crypto_generichash_BYTES_MAX);
    crypto_generichash (raw, out_len, g_bytes_get_data (preimage, NULL),
                        g_bytes_get_size (preimage), NULL, 0);
    g_autoptr (GBytes) b_raw = g_bytes_new (raw, out_len);
    vector_assert_bytes_equal (out, b_raw, n_out);
  }
}

static void
test_published_signatures_verify (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  gsize n;
  const VectorEnvelope *envs = vectors_envelopes (&n);

  for (gsize i = 0; i < n; i++) {
    const char *name = envs[i].name;
    const char *label = tally_context_label (envs[i].context);
    g_autofree char *n_body = g_strconcat (name, ".body", NULL);
    g_autofree char *n_msg = g_strconcat (name, ".signed_message", NULL);
    g_autofree char *n_pk = g_strconcat (name, ".public_key", NULL);
    g_autofree char *n_sig = g_strconcat (name, ".signature", NULL);
    g_autofree char *n_env = g_strconcat (name, ".envelope", NULL);
    g_autofree char *n_hash = g_strconcat (name, ".body_hash", NULL);
    GBytes *body = vector_doc_value (p, n_body);
    GBytes *msg = vector_doc_value (p, n_msg);
    GBytes *pk = vector_doc_value (p, n_pk);
    GBytes *sig = vector_doc_value (p, n_sig);
    GBytes *packed = vector_doc_value (p, n_env);
    g_autoptr (GError) error = NULL;

    g_test_message ("%s", name);
    g_assert_cmpuint (g_bytes_get_size (pk), ==, TALLY_PUBLIC_KEY_BYTES);
    g_assert_cmpuint (g_bytes_get_size (sig), ==, TALLY_SIGNATURE_BYTES);

    /* The signed bytes are the label, a 0x00 and the body... */
    g_autoptr (GBytes) label_bytes = g_bytes_new_static (label, strlen (label));
    g_autoptr (GBytes) expect_msg = labelled (label_bytes, body);
    vector_assert_bytes_equal (msg, expect_msg, n_msg);

    /* ...under plain Ed25519... */
    g_assert_cmpint (crypto_sign_verify_detached (g_bytes_get_data (sig, NULL),
                                                  g_bytes_get_data (msg, NULL),
                                                  g_bytes_get_size (msg),
                                                  g_bytes_get_data (pk, NULL)),
                     ==, 0);

    /* ...and the envelope carries exactly that context, body and signature. */
    gsize env_len;
    const guint8 *env_data = g_bytes_get_data (packed, &env_len);
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (env_data, env_len, &error);
    g_assert_no_error (error);
    g_assert_cmpint (env->context, ==, envs[i].context);
    g_autoptr (GBytes) env_body = g_bytes_new (env->body.data, env->body.len);
    g_autoptr (GBytes) env_sig = g_bytes_new (env->signature.data, env->signature.len);
    vector_assert_bytes_equal (env_body, body, n_body);
    vector_assert_bytes_equal (env_sig, sig, n_sig);
    g_assert_true (tally_envelope_verify (env, envs[i].context, g_bytes_get_data (pk, NULL),
                                          &error));
    g_assert_no_error (error);

    guint8 hash[TALLY_HASH_BYTES];
    crypto_generichash (hash, sizeof hash, g_bytes_get_data (expect_msg, NULL),
                        g_bytes_get_size (expect_msg), NULL, 0);
    g_autoptr (GBytes) b_hash = g_bytes_new (hash, sizeof hash);
    vector_assert_bytes_equal (vector_doc_value (p, n_hash), b_hash, n_hash);
  }
}

#define UNPACK_PUBLISHED(Type, prefix, p, name)                                                    \
  TALLY_UNPACK (Type, prefix, g_bytes_get_data (vector_doc_value ((p), (name)), NULL),             \
                g_bytes_get_size (vector_doc_value ((p), (name))), (name), NULL)

static void
assert_field (const ProtobufCBinaryData *field, const VectorDoc *p, const char *name)
{
  g_autoptr (GBytes) got = g_bytes_new (field->data, field->len);
  vector_assert_bytes_equal (got, vector_doc_value (p, name), name);
}

static void
test_published_scenario_is_consistent (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  g_autoptr (GError) error = NULL;

  g_autoptr (Tally__RegisterCertificate) cert = UNPACK_PUBLISHED (
    Tally__RegisterCertificate, tally__register_certificate, p, "register_certificate.body");
  g_autoptr (Tally__LoadVoucher) voucher =
    UNPACK_PUBLISHED (Tally__LoadVoucher, tally__load_voucher, p, "load_voucher.body");
  g_autoptr (Tally__PaymentRequest) request =
    UNPACK_PUBLISHED (Tally__PaymentRequest, tally__payment_request, p, "payment_request.body");
  g_autoptr (Tally__DepositPermission) permission = UNPACK_PUBLISHED (
    Tally__DepositPermission, tally__deposit_permission, p, "deposit_permission.body");
  g_autoptr (Tally__Receipt) receipt =
    UNPACK_PUBLISHED (Tally__Receipt, tally__receipt, p, "receipt.body");
  g_autoptr (Tally__DefundRecord) defund =
    UNPACK_PUBLISHED (Tally__DefundRecord, tally__defund_record, p, "defund_record.body");
  g_assert_nonnull (cert);
  g_assert_nonnull (voucher);
  g_assert_nonnull (request);
  g_assert_nonnull (permission);
  g_assert_nonnull (receipt);
  g_assert_nonnull (defund);

  /* The certificate passes the core's own checks at the base time. */
  GBytes *issuer_pk = vector_doc_value (p, "issuer.public_key");
  GBytes *cert_packed = vector_doc_value (p, "register_certificate.envelope");
  g_autoptr (Tally__SignedEnvelope) cert_env = tally_envelope_decode (
    g_bytes_get_data (cert_packed, NULL), g_bytes_get_size (cert_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RegisterCertificate) checked =
    tally_certificate_verify (cert_env, g_bytes_get_data (issuer_pk, NULL), VECTORS_TIME, &error);
  g_assert_no_error (error);
  g_assert_nonnull (checked);
  assert_field (&checked->register_id, p, "register_a.register_id");

  GBytes *voucher_packed = vector_doc_value (p, "load_voucher.envelope");
  g_autoptr (Tally__SignedEnvelope) voucher_env = tally_envelope_decode (
    g_bytes_get_data (voucher_packed, NULL), g_bytes_get_size (voucher_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__LoadVoucher) voucher_checked =
    tally_voucher_verify (voucher_env, g_bytes_get_data (issuer_pk, NULL), &error);
  g_assert_no_error (error);
  g_assert_nonnull (voucher_checked);

  GBytes *list_packed = vector_doc_value (p, "revocation_list.envelope");
  g_autoptr (Tally__SignedEnvelope) list_env = tally_envelope_decode (
    g_bytes_get_data (list_packed, NULL), g_bytes_get_size (list_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RevocationList) list =
    tally_revocation_list_verify (list_env, g_bytes_get_data (issuer_pk, NULL), &error);
  g_assert_no_error (error);
  g_assert_nonnull (list);
  g_assert_false (tally_revocation_list_contains (
    list, g_bytes_get_data (vector_doc_value (p, "register_a.register_id"), NULL)));

  /* The payment answers the request and starts register A's chain. */
  assert_field (&permission->payer_register_id, p, "register_a.register_id");
  assert_field (&permission->payee_register_id, p, "register_b.register_id");
  assert_field (&request->payee_register_id, p, "register_b.register_id");
  g_assert_cmpmem (permission->payee_nonce.data, permission->payee_nonce.len, request->nonce.data,
                   request->nonce.len);
  g_assert_cmpint (permission->amount->value, ==, request->amount->value);
  g_assert_cmpstr (permission->amount->currency, ==, request->amount->currency);
  g_assert_cmpuint (permission->counter, ==, 1);
  assert_field (&permission->chain_prev, p, "chain.register_a.genesis");
  assert_field (&permission->memo_hash, p, "hash.memo.output");
  g_autoptr (GBytes) memo = g_bytes_new_static (request->memo, strlen (request->memo));
  vector_assert_bytes_equal (memo, vector_doc_value (p, "hash.memo.input"), "request memo");
  assert_field (&permission->memo_hash, p, "hash.memo.output");

  /* The receipt names the permission by its body hash. */
  assert_field (&receipt->permission_hash, p, "deposit_permission.body_hash");
  assert_field (&receipt->payee_register_id, p, "register_b.register_id");
  g_assert_cmpuint (receipt->payer_counter, ==, permission->counter);
  g_assert_cmpint (receipt->amount->value, ==, permission->amount->value);

  /* The defund takes the next counter on the next head and returns the rest. */
  g_assert_cmpuint (defund->counter, ==, 2);
  assert_field (&defund->chain_prev, p, "chain.register_a.head_1");
  g_assert_cmpint (defund->amount->value, ==, voucher->amount->value - permission->amount->value);

  /* The chain entries are the body hashes of the signed entries. */
  vector_assert_bytes_equal (vector_doc_value (p, "chain.register_a.entry_1"),
                             vector_doc_value (p, "deposit_permission.body_hash"), "entry_1");
  vector_assert_bytes_equal (vector_doc_value (p, "chain.register_a.entry_2"),
                             vector_doc_value (p, "defund_record.body_hash"), "entry_2");
}

static void
assert_envelope_is (const Tally__SignedEnvelope *env, const VectorDoc *p, const char *name)
{
  g_autofree char *n_body = g_strconcat (name, ".body", NULL);
  g_assert_nonnull (env);
  assert_field (&env->body, p, n_body);
}

/* BLAKE2b-256 of the labelled preimage, with plain libsodium. */
static void
plain_hash (const char *label, const guint8 *data, gsize len, guint8 out[TALLY_HASH_BYTES])
{
  g_autoptr (GBytes) l = g_bytes_new (label, strlen (label));
  g_autoptr (GBytes) in = g_bytes_new (data, len);
  g_autoptr (GBytes) preimage = labelled (l, in);
  crypto_generichash (out, TALLY_HASH_BYTES, g_bytes_get_data (preimage, NULL),
                      g_bytes_get_size (preimage), NULL, 0);
}

static void
test_published_frames_reassemble (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  GBytes *message = vector_doc_value (p, "frame.message");
  GBytes *mtu_bytes = vector_doc_value (p, "frame.mtu");
  g_assert_cmpuint (g_bytes_get_size (mtu_bytes), ==, 2);
  const guint8 *m = g_bytes_get_data (mtu_bytes, NULL);
  gsize mtu = ((gsize) m[0] << 8) | m[1];
  vector_assert_bytes_equal (message, vector_doc_value (p, "error.session_message"),
                             "frame.message");

  /* The sender splits the message into exactly the published fragments... */
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) split =
    tally_frame_split (g_bytes_get_data (message, NULL), g_bytes_get_size (message), mtu,
                       TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (split->len, ==, 3);
  g_autoptr (TallyReassembler) r =
    tally_reassembler_new (TALLY_FRAME_DEFAULT_MAX_MESSAGE, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  g_autoptr (GByteArray) stream = g_byte_array_new ();
  g_autoptr (GBytes) whole = NULL;
  for (guint i = 0; i < split->len; i++) {
    g_autofree char *name = g_strdup_printf ("frame.fragment_%u", i);
    GBytes *published = vector_doc_value (p, name);
    vector_assert_bytes_equal (split->pdata[i], published, name);
    gsize len;
    const guint8 *f = g_bytes_get_data (published, &len);
    g_assert_cmpuint (len, <=, mtu);
    /* FIRST 0x1, MIDDLE 0x2, LAST 0x3 in the high nibble; index low. */
    g_assert_cmpuint (f[0], ==, ((i == 0 ? 1 : i + 1 == split->len ? 3 : 2) << 4) | i);
    const guint8 prefix[2] = { (guint8) (len >> 8), (guint8) len };
    g_byte_array_append (stream, prefix, sizeof prefix);
    g_byte_array_append (stream, f, len);
    /* ...and the receiver puts them back together. */
    g_assert_null (whole);
    g_assert_true (tally_reassembler_push (r, f, len, 0, &whole, &error));
    g_assert_no_error (error);
  }
  g_assert_nonnull (whole);
  vector_assert_bytes_equal (whole, message, "reassembled message");
  g_autoptr (GBytes) stream_bytes = g_bytes_new (stream->data, stream->len);
  vector_assert_bytes_equal (stream_bytes, vector_doc_value (p, "frame.stream"), "frame.stream");
}

static void
test_published_error_decodes (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  g_autoptr (Tally__SessionMessage) m =
    UNPACK_PUBLISHED (Tally__SessionMessage, tally__session_message, p, "error.session_message");
  g_assert_nonnull (m);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_ERROR);
  g_assert_cmpuint (m->error->code, ==, TALLY_ERROR_REJECTED);
  g_assert_cmpstr (tally_error_to_string (tally_error_from_wire (m->error->code)), ==, "Rejected");
}

static void
test_published_reconciliation_is_consistent (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  g_autoptr (GError) error = NULL;
  const guint8 *issuer_pk = g_bytes_get_data (vector_doc_value (p, "issuer.public_key"), NULL);
  g_autoptr (Tally__ReconciliationBundle) bundle = UNPACK_PUBLISHED (
    Tally__ReconciliationBundle, tally__reconciliation_bundle, p, "reconciliation_bundle.body");
  g_autoptr (Tally__ReconciliationResult) result = UNPACK_PUBLISHED (
    Tally__ReconciliationResult, tally__reconciliation_result, p, "reconciliation_result.body");
  g_assert_nonnull (bundle);
  g_assert_nonnull (result);

  /* The bundle carries the scenario's signed objects, and its head. */
  assert_field (&bundle->register_id, p, "register_a.register_id");
  assert_envelope_is (bundle->certificate, p, "register_certificate");
  g_assert_cmpuint (bundle->n_spent, ==, 2);
  assert_envelope_is (bundle->spent[0]->permission, p, "deposit_permission");
  assert_envelope_is (bundle->spent[0]->receipt, p, "receipt");
  assert_envelope_is (bundle->spent[1]->permission, p, "defund_record");
  g_assert_null (bundle->spent[1]->receipt);
  g_assert_cmpuint (bundle->n_received, ==, 0);
  g_assert_cmpuint (bundle->n_vouchers, ==, 1);
  assert_envelope_is (bundle->vouchers[0], p, "load_voucher");
  g_assert_cmpuint (bundle->counter, ==, 2);
  assert_field (&bundle->chain_head, p, "chain.register_a.head_2");
  g_assert_cmpint (bundle->balance, ==, 0);

  /* The result names it by its body hash and settles all of it. */
  assert_field (&result->bundle_hash, p, "reconciliation_bundle.body_hash");
  assert_field (&result->register_id, p, "register_a.register_id");
  g_assert_cmpuint (result->settled_counter, ==, bundle->counter);
  g_assert_cmpuint (result->settled_voucher_sequence, ==, 1);
  g_assert_false (result->revoked);
  assert_envelope_is (result->revocation_list, p, "revocation_list");
  assert_envelope_is (result->renewed_certificate, p, "renewed_certificate");
  g_autoptr (Tally__RegisterCertificate) renewed = tally_certificate_verify (
    result->renewed_certificate, issuer_pk, result->reconciled_at, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (renewed->serial, ==, 2);
  assert_field (&renewed->register_id, p, "register_a.register_id");
}

static Tally__SignedEnvelope *
published_envelope (const VectorDoc *p, const char *name)
{
  g_autofree char *n_env = g_strconcat (name, ".envelope", NULL);
  GBytes *packed = vector_doc_value (p, n_env);
  return tally_envelope_decode (g_bytes_get_data (packed, NULL), g_bytes_get_size (packed), NULL);
}

/* A proof the issuer signed against @accused, whose two entries the
 * accused signed. */
static Tally__FraudProof *
checked_proof (const VectorDoc *p, const char *name, Tally__FraudKind kind, const char *accused)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = published_envelope (p, name);
  const guint8 *issuer_pk = g_bytes_get_data (vector_doc_value (p, "issuer.public_key"), NULL);
  g_assert_true (tally_envelope_verify (
    env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, issuer_pk, &error));
  g_assert_no_error (error);
  Tally__FraudProof *fp =
    TALLY_UNPACK (Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len, name, NULL);
  g_assert_nonnull (fp);
  g_assert_cmpint (fp->kind, ==, kind);
  g_autofree char *n_id = g_strconcat (accused, ".register_id", NULL);
  g_autofree char *n_pk = g_strconcat (accused, ".public_key", NULL);
  assert_field (&fp->register_id, p, n_id);
  const guint8 *pk = g_bytes_get_data (vector_doc_value (p, n_pk), NULL);
  g_assert_nonnull (fp->first);
  g_assert_nonnull (fp->second);
  g_assert_true (tally_verify_detached (fp->first->context, fp->first->body.data,
                                        fp->first->body.len, fp->first->signature.data,
                                        fp->first->signature.len, pk, &error));
  g_assert_true (tally_verify_detached (fp->second->context, fp->second->body.data,
                                        fp->second->body.len, fp->second->signature.data,
                                        fp->second->signature.len, pk, &error));
  g_assert_no_error (error);
  return fp;
}

static Tally__DepositPermission *
permission_of (const Tally__SignedEnvelope *env)
{
  g_assert_cmpint (env->context, ==,
                   TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION);
  Tally__DepositPermission *d = TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission,
                                              env->body.data, env->body.len, "permission", NULL);
  g_assert_nonnull (d);
  return d;
}

static void
test_published_fraud_proofs_convict_the_signer (void)
{
  g_autoptr (VectorDoc) p = load_document ();

  /* Counter reused: two different permissions with one counter. */
  g_autoptr (Tally__FraudProof) reused = checked_proof (
    p, "fraud_proof_counter_reused", TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED, "register_a");
  assert_envelope_is (reused->first, p, "deposit_permission");
  assert_envelope_is (reused->second, p, "double_spend_permission_1");
  g_autoptr (Tally__DepositPermission) r1 = permission_of (reused->first);
  g_autoptr (Tally__DepositPermission) r2 = permission_of (reused->second);
  g_assert_cmpuint (r1->counter, ==, r2->counter);
  g_assert_false (
    reused->first->body.len == reused->second->body.len &&
    memcmp (reused->first->body.data, reused->second->body.data, reused->first->body.len) == 0);

  /* Chain fork: the entry after the first does not extend it. */
  g_autoptr (Tally__FraudProof) fork = checked_proof (
    p, "fraud_proof_chain_fork", TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, "register_a");
  assert_envelope_is (fork->first, p, "deposit_permission");
  assert_envelope_is (fork->second, p, "double_spend_permission_2");
  g_autoptr (Tally__DepositPermission) f1 = permission_of (fork->first);
  g_autoptr (Tally__DepositPermission) f2 = permission_of (fork->second);
  g_assert_cmpuint (f2->counter, ==, f1->counter + 1);
  guint8 entry[TALLY_HASH_BYTES], after[TALLY_HASH_BYTES];
  plain_hash ("deposit-permission", fork->first->body.data, fork->first->body.len, entry);
  guint8 step[2 * TALLY_HASH_BYTES];
  memcpy (step, f1->chain_prev.data, TALLY_HASH_BYTES);
  memcpy (step + TALLY_HASH_BYTES, entry, TALLY_HASH_BYTES);
  plain_hash ("chain", step, sizeof step, after);
  assert_field (&f1->chain_prev, p, "chain.register_a.genesis");
  g_assert_cmpmem (after, sizeof after,
                   g_bytes_get_data (vector_doc_value (p, "chain.register_a.head_1"), NULL),
                   TALLY_HASH_BYTES);
  g_assert_false (memcmp (f2->chain_prev.data, after, TALLY_HASH_BYTES) == 0);

  /* Late receipt: a receipt for a permission that expired by the time of
   * the payee's own bundle, which does not list it. */
  g_autoptr (Tally__FraudProof) late = checked_proof (
    p, "fraud_proof_late_receipt", TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT, "register_b");
  assert_envelope_is (late->first, p, "receipt");
  assert_envelope_is (late->second, p, "payee_bundle");
  g_autoptr (Tally__Receipt) receipt = TALLY_UNPACK (
    Tally__Receipt, tally__receipt, late->first->body.data, late->first->body.len, "receipt", NULL);
  g_autoptr (Tally__ReconciliationBundle) bundle =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle,
                  late->second->body.data, late->second->body.len, "bundle", NULL);
  g_assert_nonnull (receipt);
  g_assert_nonnull (bundle);
  assert_field (&bundle->register_id, p, "register_b.register_id");
  g_assert_cmpuint (receipt->permission_expires_at, >, 0);
  g_assert_cmpuint (receipt->permission_expires_at, <=, bundle->created_at);
  for (gsize i = 0; i < bundle->n_received; i++) {
    guint8 h[TALLY_HASH_BYTES];
    tally_envelope_body_hash (bundle->received[i]->permission, h);
    g_assert_false (memcmp (h, receipt->permission_hash.data, TALLY_HASH_BYTES) == 0);
  }
}

/* The proofs of protocol.md 5.5: OVERDRAWN quotes the judged bundle and
 * entry with the deficit; OVER_LIMIT a permission above the certificate's
 * max_payment, signed by the accused register, with no receipt yet. */
static void
test_published_evidence_proofs_quote_the_signer (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  g_autoptr (Tally__FraudProof) over = checked_proof (
    p, "fraud_proof_overdrawn", TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN, "register_a");
  assert_envelope_is (over->first, p, "reconciliation_bundle");
  assert_envelope_is (over->second, p, "defund_record");
  g_assert_cmpint (over->deficit, ==, 1250);

  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = published_envelope (p, "fraud_proof_over_limit");
  const guint8 *issuer_pk = g_bytes_get_data (vector_doc_value (p, "issuer.public_key"), NULL);
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF,
                                        issuer_pk, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__FraudProof) limit = TALLY_UNPACK (
    Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len, "over-limit", NULL);
  g_assert_nonnull (limit);
  g_assert_cmpint (limit->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT);
  assert_field (&limit->register_id, p, "register_a.register_id");
  assert_envelope_is (limit->first, p, "over_limit_permission");
  g_assert_null (limit->second);
  g_autoptr (Tally__DepositPermission) perm = permission_of (limit->first);
  g_autoptr (Tally__SignedEnvelope) cert_env = published_envelope (p, "register_certificate");
  g_autoptr (Tally__RegisterCertificate) cert = TALLY_UNPACK (
    Tally__RegisterCertificate, tally__register_certificate, cert_env->body.data,
    cert_env->body.len, "certificate", NULL);
  g_assert_nonnull (cert);
  g_assert_cmpint (perm->amount->value, >, cert->limits->max_payment);
  const guint8 *pk = g_bytes_get_data (vector_doc_value (p, "register_a.public_key"), NULL);
  g_assert_true (tally_envelope_verify (
    limit->first, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, pk, &error));
  g_assert_no_error (error);
}

static void
test_published_handshake_bodies_are_consistent (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  g_autoptr (GError) error = NULL;
  const guint8 *issuer_pk = g_bytes_get_data (vector_doc_value (p, "issuer.public_key"), NULL);

  /* Gossip: the payee's list is newer than the payer's and travels. */
  g_autoptr (Tally__SessionMessage) hello =
    UNPACK_PUBLISHED (Tally__SessionMessage, tally__session_message, p, "gossip.hello");
  g_autoptr (Tally__OfferBody) offer =
    UNPACK_PUBLISHED (Tally__OfferBody, tally__offer_body, p, "gossip.offer_body");
  g_assert_nonnull (hello);
  g_assert_nonnull (offer);
  g_assert_cmpint (hello->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_HELLO);
  g_assert_cmpuint (hello->hello->revocation_serial, ==, 1);
  g_assert_cmpuint (offer->revocation_serial, >, hello->hello->revocation_serial);
  g_autoptr (Tally__RevocationList) list =
    tally_revocation_list_verify (offer->revocation_list, issuer_pk, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->serial, ==, offer->revocation_serial);
  assert_envelope_is (offer->payee_certificate, p, "register_certificate_b");
  g_assert_cmpuint (offer->max_message, ==, TALLY_FRAME_DEFAULT_MAX_MESSAGE);
  g_autoptr (GBytes) request = tally_message_pack (&offer->request->base);
  vector_assert_bytes_equal (request, vector_doc_value (p, "payment_request.body"), "request");

  /* A Hello naming its request: the tag is in T1. */
  g_autoptr (Tally__SessionMessage) tagged =
    UNPACK_PUBLISHED (Tally__SessionMessage, tally__session_message, p, "request_tag.hello");
  g_assert_nonnull (tagged);
  g_assert_cmpint (tagged->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_HELLO);
  g_autoptr (GBytes) tag =
    g_bytes_new (tagged->hello->request_tag.data, tagged->hello->request_tag.len);
  vector_assert_bytes_equal (tag, vector_doc_value (p, "request_tag.tag"), "request_tag");
  g_autoptr (GBytes) tagged_key =
    g_bytes_new (tagged->hello->ephemeral_public_key.data, tagged->hello->ephemeral_public_key.len);
  g_autoptr (GBytes) gossip_key =
    g_bytes_new (hello->hello->ephemeral_public_key.data, hello->hello->ephemeral_public_key.len);
  vector_assert_bytes_equal (tagged_key, gossip_key, "e_a");
  GBytes *n_a = vector_doc_value (p, "request_tag.commit_nonce");
  guint8 commit[TALLY_HASH_BYTES], t0[TALLY_HASH_BYTES], t1[TALLY_HASH_BYTES];
  TallyHash th;
  tally_hash_init (&th, "handshake-commit", TALLY_HASH_BYTES);
  tally_hash_update (&th, tagged->hello->ephemeral_public_key.data,
                     tagged->hello->ephemeral_public_key.len);
  tally_hash_update (&th, g_bytes_get_data (n_a, NULL), g_bytes_get_size (n_a));
  tally_hash_final (&th, commit);
  g_assert_cmpmem (tagged->hello->commitment.data, tagged->hello->commitment.len, commit,
                   sizeof commit);
  GBytes *hello_bytes = vector_doc_value (p, "request_tag.hello");
  tally_hash ("transcript-init", NULL, 0, t0);
  tally_hash_init (&th, "transcript", TALLY_HASH_BYTES);
  tally_hash_update (&th, t0, sizeof t0);
  tally_hash_update_prefixed (&th, g_bytes_get_data (hello_bytes, NULL),
                              g_bytes_get_size (hello_bytes));
  tally_hash_final (&th, t1);
  g_autoptr (GBytes) b_t1 = g_bytes_new (t1, sizeof t1);
  vector_assert_bytes_equal (b_t1, vector_doc_value (p, "request_tag.t1"), "request_tag.t1");

  /* Certificate cache: the hash of A's certificate body stands in for it. */
  guint8 hash[TALLY_HASH_BYTES];
  GBytes *cert_body = vector_doc_value (p, "register_certificate.body");
  plain_hash ("register-certificate", g_bytes_get_data (cert_body, NULL),
              g_bytes_get_size (cert_body), hash);
  g_autoptr (GBytes) b_hash = g_bytes_new (hash, sizeof hash);
  vector_assert_bytes_equal (vector_doc_value (p, "certificate_hash.hash"), b_hash,
                             "certificate_hash.hash");
  g_autoptr (Tally__PayBody) cached =
    UNPACK_PUBLISHED (Tally__PayBody, tally__pay_body, p, "certificate_hash.pay_body");
  g_assert_nonnull (cached);
  g_assert_null (cached->payer_certificate);
  assert_field (&cached->payer_certificate_hash, p, "certificate_hash.hash");
  assert_envelope_is (cached->permission, p, "deposit_permission");
  g_assert_false (cached->redelivery);

  /* Delivered again: the whole certificate, the same permission, the flag. */
  g_autoptr (Tally__PayBody) again =
    UNPACK_PUBLISHED (Tally__PayBody, tally__pay_body, p, "redelivery.pay_body");
  g_assert_nonnull (again);
  assert_envelope_is (again->payer_certificate, p, "register_certificate");
  assert_envelope_is (again->permission, p, "deposit_permission");
  g_assert_cmpuint (again->payer_certificate_hash.len, ==, 0);
  g_assert_true (again->redelivery);
}

static void
test_published_comparison_code_keeps_its_leading_zero (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  GBytes *index = vector_doc_value (p, "comparison.index");
  GBytes *t2 = vector_doc_value (p, "comparison.t2");
  guint8 h[TALLY_HASH_BYTES];

  plain_hash ("example", g_bytes_get_data (index, NULL), g_bytes_get_size (index), h);
  g_assert_cmpmem (h, sizeof h, g_bytes_get_data (t2, NULL), g_bytes_get_size (t2));
  plain_hash ("comparison-code", g_bytes_get_data (t2, NULL), g_bytes_get_size (t2), h);
  g_autoptr (GBytes) b_h = g_bytes_new (h, sizeof h);
  vector_assert_bytes_equal (vector_doc_value (p, "comparison.hash"), b_h, "comparison.hash");

  guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
  g_autofree char *code = g_strdup_printf ("%06u", v % 1000000u);
  g_assert_cmpuint (v % 1000000u, <, 100000u);
  g_assert_cmpint (code[0], ==, '0');
  g_autoptr (GBytes) b_code = g_bytes_new (code, 6);
  vector_assert_bytes_equal (vector_doc_value (p, "comparison.code"), b_code, "comparison.code");
}

/* The published request URIs parse to the fields docs/protocol.md §8 gives
 * them, and a writer gives back the same bytes. */
static void
test_published_request_uris_parse_and_round_trip (void)
{
  g_autoptr (VectorDoc) p = load_document ();
  static const struct
  {
    const char *name, *address, *currency, *display_name;
    gint64 amount;
    TallyUriTransport transport;
  } cases[] = {
    { "request_uri.ble", "ble:0a1b2c3d", "EUR", "Bob's Bakery", 1250, TALLY_URI_TRANSPORT_BLE },
    { "request_uri.unix", "unix:/run/tally/bob.sock", "EUR", "", 500, TALLY_URI_TRANSPORT_UNIX },
    { "request_uri.tcp", "tcp:[::1]:7000", "JPY", "Caf\u00e9 Lumen", TALLY_AMOUNT_MAX,
      TALLY_URI_TRANSPORT_TCP },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    GBytes *value = vector_doc_value (p, cases[i].name);
    g_autofree char *text = g_strndup (g_bytes_get_data (value, NULL), g_bytes_get_size (value));
    g_autoptr (GError) error = NULL;
    g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
    g_assert_no_error (error);
    g_assert_cmpint (uri->transport, ==, cases[i].transport);
    g_assert_cmpstr (uri->address, ==, cases[i].address);
    g_assert_cmpint (uri->amount, ==, cases[i].amount);
    g_assert_cmpstr (uri->currency, ==, cases[i].currency);
    g_assert_cmpuint (uri->expires_at, ==, VECTORS_TIME + 7200);
    g_assert_cmpstr (uri->display_name, ==, cases[i].display_name);
    g_autofree char *again = tally_request_uri_format (uri->address, uri->amount, uri->currency,
                                                       uri->expires_at, uri->display_name, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (again, ==, text);
  }

  /* The tagged one names its request; written again with its tag. */
  GBytes *value = vector_doc_value (p, "request_uri.unix_tagged");
  g_autofree char *text = g_strndup (g_bytes_get_data (value, NULL), g_bytes_get_size (value));
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (uri->address, ==, "unix:/run/tally/bob.sock");
  g_assert_cmpstr (uri->tag, ==, "0a1b2c3d");
  g_autofree char *again = tally_request_uri_format_tagged (
    uri->address, uri->tag, uri->amount, uri->currency, uri->expires_at, uri->display_name, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (again, ==, text);
}

/* --- the comparison itself can fail ------------------------------------------ */

static void
test_comparison_detects_differences (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autofree char *text = vector_list_format (expected, NULL, NULL);
  g_autoptr (GError) error = NULL;
  VectorComparison c;

  /* The generator's own output, fenced, compares clean. */
  g_autofree char *doc = g_strdup_printf ("# t\n\n```" VECTORS_FENCE_TAG "\n%s```\n", text);
  g_autoptr (VectorDoc) clean = parse_document (doc, &error);
  g_assert_no_error (error);
  c = compare (expected, vector_doc_get_vectors (clean));
  g_assert_cmpuint (c.missing + c.extra + c.changed + c.moved + c.duplicate, ==, 0);
  g_assert_cmpstr (vector_doc_get_block (clean), ==, text);

  /* One value changed, one dropped, one added, one repeated. */
  g_autoptr (VectorDoc) bad = parse_document (doc, &error);
  g_assert_no_error (error);
  Vector *changed = g_ptr_array_index (vector_doc_get_vectors (bad), 0);
  gsize len;
  guint8 *data = g_bytes_unref_to_data (changed->value, &len);
  data[0] ^= 1;
  changed->value = g_bytes_new_take (data, len);
  g_ptr_array_remove_index (vector_doc_get_vectors (bad), 1);
  Vector *extra = g_new0 (Vector, 1);
  extra->section = g_strdup ("keys");
  extra->name = g_strdup ("issuer.spare");
  extra->value = g_bytes_new ("x", 1);
  g_ptr_array_add (vector_doc_get_vectors (bad), extra);
  const Vector *last = g_ptr_array_index (vector_doc_get_vectors (bad), 5);
  Vector *dup = g_new0 (Vector, 1);
  dup->section = g_strdup ("elsewhere");
  dup->name = g_strdup (last->name);
  dup->value = g_bytes_ref (last->value);
  g_ptr_array_add (vector_doc_get_vectors (bad), dup);

  c = compare (expected, vector_doc_get_vectors (bad));
  g_assert_cmpuint (c.changed, ==, 1);
  g_assert_cmpuint (c.missing, ==, 1);
  g_assert_cmpuint (c.extra, ==, 1);
  g_assert_cmpuint (c.duplicate, ==, 1);
}

static void
test_parser_refuses_stray_lines (void)
{
  static const char *const docs[] = {
    "```core-vectors\n## keys\nissuer.seed 0101\n```\n",
    "```core-vectors\n## keys\nissuer.seed: 010\n```\n",
    "```core-vectors\n## keys\nissuer.seed: zz\n```\n",
    "```core-vectors\nissuer.seed: 01\n```\n",
    "```core-vectors\n## keys\nIssuer.Seed: 01\n```\n",
    "```core-vectors\n## keys\nissuer.seed: 01\n",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (docs); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (VectorDoc) p = parse_document (docs[i], &error);
    g_test_message ("%s", docs[i]);
    g_assert_null (p);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  }

  /* Other fenced blocks, and prose, are not vectors. */
  g_autoptr (GError) error = NULL;
  g_autoptr (VectorDoc) p = parse_document (
    "## keys\nissuer.seed: 01\n```\nissuer.seed: 02\n```\n```text\nx: 03\n```\n", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (vector_doc_get_vectors (p)->len, ==, 0);
  g_assert_cmpuint (vector_doc_get_n_blocks (p), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

  if (argc > 2) {
    g_printerr ("usage: %s [docs/test-vectors.md]\n", argv[0]);
    return 2;
  }
  if (argc == 2)
    document_path = g_strdup (argv[1]);
  else if (g_getenv ("TALLY_SOURCE_ROOT") != NULL)
    document_path =
      g_build_filename (g_getenv ("TALLY_SOURCE_ROOT"), "docs", "test-vectors.md", NULL);

  g_test_add_func ("/core/vectors/parser-refuses-stray-lines", test_parser_refuses_stray_lines);
  g_test_add_func ("/core/vectors/comparison-detects-differences",
                   test_comparison_detects_differences);
  g_test_add_func ("/core/vectors/document-has-one-block", test_document_has_one_block);
  g_test_add_func ("/core/vectors/no-vector-missing", test_no_vector_missing);
  g_test_add_func ("/core/vectors/no-vector-extra-or-duplicate",
                   test_no_vector_extra_or_duplicate);
  g_test_add_func ("/core/vectors/every-value-matches-core", test_every_value_matches_core);
  g_test_add_func ("/core/vectors/block-is-verbatim-generator-output",
                   test_block_is_generator_output);
  g_test_add_func ("/core/vectors/keys-derive-from-published-seeds",
                   test_published_keys_derive_from_seeds);
  g_test_add_func ("/core/vectors/hashes-are-blake2b-of-published-preimages",
                   test_published_hashes_match_preimages);
  g_test_add_func ("/core/vectors/signatures-verify-under-published-keys",
                   test_published_signatures_verify);
  g_test_add_func ("/core/vectors/scenario-is-consistent", test_published_scenario_is_consistent);
  g_test_add_func ("/core/vectors/frames-split-and-reassemble-as-published",
                   test_published_frames_reassemble);
  g_test_add_func ("/core/vectors/error-decodes-as-published", test_published_error_decodes);
  g_test_add_func ("/core/vectors/result-answers-the-published-bundle",
                   test_published_reconciliation_is_consistent);
  g_test_add_func ("/core/vectors/fraud-proofs-convict-the-signer",
                   test_published_fraud_proofs_convict_the_signer);
  g_test_add_func ("/core/vectors/evidence-proofs-quote-the-signer",
                   test_published_evidence_proofs_quote_the_signer);
  g_test_add_func ("/core/vectors/handshake-bodies-are-consistent",
                   test_published_handshake_bodies_are_consistent);
  g_test_add_func ("/core/vectors/comparison-code-keeps-its-leading-zero",
                   test_published_comparison_code_keeps_its_leading_zero);
  g_test_add_func ("/core/vectors/request-uris-parse-and-round-trip",
                   test_published_request_uris_parse_and_round_trip);

  int ret = g_test_run ();
  g_free (document_path);
  return ret;
}
