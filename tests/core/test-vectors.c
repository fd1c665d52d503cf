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

  int ret = g_test_run ();
  g_free (document_path);
  return ret;
}
