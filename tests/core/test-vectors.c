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

typedef struct
{
  GPtrArray *vectors; /* Vector, in document order */
  GString *block;     /* text of the tagged blocks, fences excluded */
  guint n_blocks;
} Published;

typedef struct
{
  guint missing;
  guint extra;
  guint changed;
  guint moved; /* right value under another section */
  guint duplicate;
} Comparison;

static char *document_path;

static void
published_free (Published *p)
{
  if (p == NULL)
    return;
  g_ptr_array_unref (p->vectors);
  g_string_free (p->block, TRUE);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Published, published_free)

static gboolean
valid_name (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!g_ascii_islower (*c) && !g_ascii_isdigit (*c) && *c != '_' && *c != '.' && *c != '-')
      return FALSE;
  return TRUE;
}

static GBytes *
decode_hex (const char *hex)
{
  gsize n = strlen (hex);
  if (n % 2 != 0)
    return NULL;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isxdigit (hex[i]))
      return NULL;
  guint8 *out = g_malloc (n / 2 + 1);
  size_t got = 0;
  if (sodium_hex2bin (out, n / 2, hex, n, NULL, &got, NULL) != 0 || got != n / 2) {
    g_free (out);
    return NULL;
  }
  return g_bytes_new_take (out, got);
}

/* Reads the "```core-vectors" blocks: "## section" lines, "name: hex" lines
 * and blank lines; anything else in them is an error. */
static Published *
parse_document (const char *text, GError **error)
{
  g_autoptr (Published) p = g_new0 (Published, 1);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autofree char *section = NULL;
  gboolean in_ours = FALSE, in_other = FALSE;

  p->vectors = g_ptr_array_new_with_free_func ((GDestroyNotify) vector_free);
  p->block = g_string_new (NULL);

  for (guint i = 0; lines[i] != NULL; i++) {
    const char *line = lines[i];
    guint lineno = i + 1;

    if (g_str_has_prefix (line, "```")) {
      if (in_ours) {
        in_ours = FALSE;
      } else if (in_other) {
        in_other = FALSE;
      } else if (strcmp (line + 3, VECTORS_FENCE_TAG) == 0) {
        in_ours = TRUE;
        p->n_blocks++;
        g_clear_pointer (&section, g_free);
      } else {
        in_other = TRUE;
      }
      continue;
    }
    if (!in_ours)
      continue;

    g_string_append (p->block, line);
    g_string_append_c (p->block, '\n');
    if (*line == '\0')
      continue;
    if (g_str_has_prefix (line, "## ")) {
      g_free (section);
      section = g_strdup (line + 3);
      if (!valid_name (section)) {
        g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "line %u: bad section \"%s\"",
                     lineno, section);
        return NULL;
      }
      continue;
    }

    const char *colon = strchr (line, ':');
    if (colon == NULL || (colon[1] != '\0' && (colon[1] != ' ' || colon[2] == '\0'))) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "line %u: expected \"name: hex\", got \"%s\"", lineno, line);
      return NULL;
    }
    g_autofree char *name = g_strndup (line, (gsize) (colon - line));
    const char *hex = colon[1] == '\0' ? "" : colon + 2;
    if (!valid_name (name) || section == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "line %u: bad vector name \"%s\" or no section before it", lineno, name);
      return NULL;
    }
    GBytes *value = decode_hex (hex);
    if (value == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "line %u: %s: bad hex", lineno,
                   name);
      return NULL;
    }
    Vector *v = g_new0 (Vector, 1);
    v->section = g_strdup (section);
    v->name = g_steal_pointer (&name);
    v->value = value;
    g_ptr_array_add (p->vectors, v);
  }
  if (in_ours) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "unterminated %s block",
                 VECTORS_FENCE_TAG);
    return NULL;
  }
  return g_steal_pointer (&p);
}

static Published *
load_document (void)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (document_path);
  g_file_get_contents (document_path, &text, NULL, &error);
  g_assert_no_error (error);
  Published *p = parse_document (text, &error);
  g_assert_no_error (error);
  g_assert_nonnull (p);
  return p;
}

static const Vector *
find (const GPtrArray *vectors, const char *name)
{
  for (guint i = 0; i < vectors->len; i++) {
    const Vector *v = g_ptr_array_index (vectors, i);
    if (strcmp (v->name, name) == 0)
      return v;
  }
  return NULL;
}

/* The published value of @name; fails the test when it is absent. */
static GBytes *
published_value (const Published *p, const char *name)
{
  const Vector *v = find (p->vectors, name);
  if (v == NULL)
    g_error ("%s: vector \"%s\" is not published", document_path, name);
  return v->value;
}

static char *
to_hex (GBytes *b)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (b, &len);
  return tally_hex_encode (data, len);
}

static Comparison
compare (const GPtrArray *expected, const GPtrArray *published)
{
  Comparison c = { 0 };
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < published->len; i++) {
    const Vector *v = g_ptr_array_index (published, i);
    if (!g_hash_table_add (seen, v->name)) {
      g_test_message ("published twice: %s", v->name);
      c.duplicate++;
    }
    if (find (expected, v->name) == NULL) {
      g_test_message ("published but not generated: %s", v->name);
      c.extra++;
    }
  }
  for (guint i = 0; i < expected->len; i++) {
    const Vector *e = g_ptr_array_index (expected, i);
    const Vector *v = find (published, e->name);
    if (v == NULL) {
      g_test_message ("generated but not published: %s", e->name);
      c.missing++;
      continue;
    }
    if (!g_bytes_equal (e->value, v->value)) {
      g_autofree char *want = to_hex (e->value);
      g_autofree char *got = to_hex (v->value);
      g_test_message ("%s differs:\n  core:      %s\n  published: %s", e->name, want, got);
      c.changed++;
    }
    if (strcmp (e->section, v->section) != 0) {
      g_test_message ("%s is under \"## %s\", expected \"## %s\"", e->name, v->section,
                      e->section);
      c.moved++;
    }
  }
  return c;
}

/* --- the document against the core ----------------------------------------- */

static void
test_document_has_one_block (void)
{
  g_autoptr (Published) p = load_document ();

  g_assert_cmpuint (p->n_blocks, ==, 1);
  g_assert_cmpuint (p->vectors->len, >, 0);
}

static void
test_no_vector_missing (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (Published) p = load_document ();
  Comparison c = compare (expected, p->vectors);

  g_assert_cmpuint (c.missing, ==, 0);
}

static void
test_no_vector_extra_or_duplicate (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (Published) p = load_document ();
  Comparison c = compare (expected, p->vectors);

  g_assert_cmpuint (c.extra, ==, 0);
  g_assert_cmpuint (c.duplicate, ==, 0);
}

static void
test_every_value_matches_core (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autoptr (Published) p = load_document ();
  Comparison c = compare (expected, p->vectors);

  g_assert_cmpuint (c.changed, ==, 0);
  g_assert_cmpuint (c.moved, ==, 0);
}

static void
test_block_is_generator_output (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autofree char *text = vectors_format (expected);
  g_autoptr (Published) p = load_document ();

  /* Pasted verbatim: only the fences surround it. */
  g_assert_cmpstr (p->block->str, ==, text);
}

/* --- the published values, checked on their own ----------------------------- */

static void
assert_bytes_equal (GBytes *got, GBytes *want, const char *what)
{
  if (!g_bytes_equal (got, want)) {
    g_autofree char *g = to_hex (got);
    g_autofree char *w = to_hex (want);
    g_error ("%s:\n  got:  %s\n  want: %s", what, g, w);
  }
}

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
  g_autoptr (Published) p = load_document ();

  for (gsize i = 0; i < G_N_ELEMENTS (parties); i++) {
    g_autofree char *n_seed = g_strconcat (parties[i], ".seed", NULL);
    g_autofree char *n_pk = g_strconcat (parties[i], ".public_key", NULL);
    g_autofree char *n_sk = g_strconcat (parties[i], ".secret_key", NULL);
    g_autofree char *n_id =
      g_strconcat (parties[i], i == 0 ? ".key_id" : ".register_id", NULL);
    GBytes *seed = published_value (p, n_seed);
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
    assert_bytes_equal (published_value (p, n_pk), b_pk, n_pk);
    assert_bytes_equal (published_value (p, n_sk), b_sk, n_sk);
    assert_bytes_equal (published_value (p, n_id), b_id, n_id);
    sodium_memzero (sk, sizeof sk);
  }
}

static void
test_published_hashes_match_preimages (void)
{
  g_autoptr (Published) p = load_document ();

  for (const char *const *c = vectors_hash_cases (); *c != NULL; c++) {
    g_autofree char *n_label = g_strdup_printf ("hash.%s.label", *c);
    g_autofree char *n_input = g_strdup_printf ("hash.%s.input", *c);
    g_autofree char *n_pre = g_strdup_printf ("hash.%s.preimage", *c);
    g_autofree char *n_out = g_strdup_printf ("hash.%s.output", *c);
    GBytes *out = published_value (p, n_out);
    gsize out_len = g_bytes_get_size (out);
    guint8 raw[crypto_generichash_BYTES_MAX];

    g_autoptr (GBytes) preimage =
      labelled (published_value (p, n_label), published_value (p, n_input));
    assert_bytes_equal (published_value (p, n_pre), preimage, n_pre);

    g_assert_cmpuint (out_len, >=, crypto_generichash_BYTES_MIN);
    g_assert_cmpuint (out_len, <=, crypto_generichash_BYTES_MAX);
    crypto_generichash (raw, out_len, g_bytes_get_data (preimage, NULL),
                        g_bytes_get_size (preimage), NULL, 0);
    g_autoptr (GBytes) b_raw = g_bytes_new (raw, out_len);
    assert_bytes_equal (out, b_raw, n_out);
  }
}

static void
test_published_signatures_verify (void)
{
  g_autoptr (Published) p = load_document ();
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
    GBytes *body = published_value (p, n_body);
    GBytes *msg = published_value (p, n_msg);
    GBytes *pk = published_value (p, n_pk);
    GBytes *sig = published_value (p, n_sig);
    GBytes *packed = published_value (p, n_env);
    g_autoptr (GError) error = NULL;

    g_test_message ("%s", name);
    g_assert_cmpuint (g_bytes_get_size (pk), ==, TALLY_PUBLIC_KEY_BYTES);
    g_assert_cmpuint (g_bytes_get_size (sig), ==, TALLY_SIGNATURE_BYTES);

    /* The signed bytes are the label, a 0x00 and the body... */
    g_autoptr (GBytes) label_bytes = g_bytes_new_static (label, strlen (label));
    g_autoptr (GBytes) expect_msg = labelled (label_bytes, body);
    assert_bytes_equal (msg, expect_msg, n_msg);

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
    assert_bytes_equal (env_body, body, n_body);
    assert_bytes_equal (env_sig, sig, n_sig);
    g_assert_true (tally_envelope_verify (env, envs[i].context, g_bytes_get_data (pk, NULL),
                                          &error));
    g_assert_no_error (error);

    guint8 hash[TALLY_HASH_BYTES];
    crypto_generichash (hash, sizeof hash, g_bytes_get_data (expect_msg, NULL),
                        g_bytes_get_size (expect_msg), NULL, 0);
    g_autoptr (GBytes) b_hash = g_bytes_new (hash, sizeof hash);
    assert_bytes_equal (published_value (p, n_hash), b_hash, n_hash);
  }
}

#define UNPACK_PUBLISHED(Type, prefix, p, name)                                                    \
  TALLY_UNPACK (Type, prefix, g_bytes_get_data (published_value ((p), (name)), NULL),              \
                g_bytes_get_size (published_value ((p), (name))), (name), NULL)

static void
assert_field (const ProtobufCBinaryData *field, const Published *p, const char *name)
{
  g_autoptr (GBytes) got = g_bytes_new (field->data, field->len);
  assert_bytes_equal (got, published_value (p, name), name);
}

static void
test_published_scenario_is_consistent (void)
{
  g_autoptr (Published) p = load_document ();
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
  GBytes *issuer_pk = published_value (p, "issuer.public_key");
  GBytes *cert_packed = published_value (p, "register_certificate.envelope");
  g_autoptr (Tally__SignedEnvelope) cert_env = tally_envelope_decode (
    g_bytes_get_data (cert_packed, NULL), g_bytes_get_size (cert_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RegisterCertificate) checked =
    tally_certificate_verify (cert_env, g_bytes_get_data (issuer_pk, NULL), VECTORS_TIME, &error);
  g_assert_no_error (error);
  g_assert_nonnull (checked);
  assert_field (&checked->register_id, p, "register_a.register_id");

  GBytes *voucher_packed = published_value (p, "load_voucher.envelope");
  g_autoptr (Tally__SignedEnvelope) voucher_env = tally_envelope_decode (
    g_bytes_get_data (voucher_packed, NULL), g_bytes_get_size (voucher_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__LoadVoucher) voucher_checked =
    tally_voucher_verify (voucher_env, g_bytes_get_data (issuer_pk, NULL), &error);
  g_assert_no_error (error);
  g_assert_nonnull (voucher_checked);

  GBytes *list_packed = published_value (p, "revocation_list.envelope");
  g_autoptr (Tally__SignedEnvelope) list_env = tally_envelope_decode (
    g_bytes_get_data (list_packed, NULL), g_bytes_get_size (list_packed), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RevocationList) list =
    tally_revocation_list_verify (list_env, g_bytes_get_data (issuer_pk, NULL), &error);
  g_assert_no_error (error);
  g_assert_nonnull (list);
  g_assert_false (tally_revocation_list_contains (
    list, g_bytes_get_data (published_value (p, "register_a.register_id"), NULL)));

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
  assert_bytes_equal (memo, published_value (p, "hash.memo.input"), "request memo");
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
  assert_bytes_equal (published_value (p, "chain.register_a.entry_1"),
                      published_value (p, "deposit_permission.body_hash"), "entry_1");
  assert_bytes_equal (published_value (p, "chain.register_a.entry_2"),
                      published_value (p, "defund_record.body_hash"), "entry_2");
}

/* --- the comparison itself can fail ------------------------------------------ */

static void
test_comparison_detects_differences (void)
{
  g_autoptr (GPtrArray) expected = vectors_build ();
  g_autofree char *text = vectors_format (expected);
  g_autoptr (GError) error = NULL;
  Comparison c;

  /* The generator's own output, fenced, compares clean. */
  g_autofree char *doc = g_strdup_printf ("# t\n\n```" VECTORS_FENCE_TAG "\n%s```\n", text);
  g_autoptr (Published) clean = parse_document (doc, &error);
  g_assert_no_error (error);
  c = compare (expected, clean->vectors);
  g_assert_cmpuint (c.missing + c.extra + c.changed + c.moved + c.duplicate, ==, 0);
  g_assert_cmpstr (clean->block->str, ==, text);

  /* One value changed, one dropped, one added, one repeated. */
  g_autoptr (Published) bad = parse_document (doc, &error);
  g_assert_no_error (error);
  Vector *changed = g_ptr_array_index (bad->vectors, 0);
  gsize len;
  guint8 *data = g_bytes_unref_to_data (changed->value, &len);
  data[0] ^= 1;
  changed->value = g_bytes_new_take (data, len);
  g_ptr_array_remove_index (bad->vectors, 1);
  Vector *extra = g_new0 (Vector, 1);
  extra->section = g_strdup ("keys");
  extra->name = g_strdup ("issuer.spare");
  extra->value = g_bytes_new ("x", 1);
  g_ptr_array_add (bad->vectors, extra);
  const Vector *last = g_ptr_array_index (bad->vectors, 5);
  Vector *dup = g_new0 (Vector, 1);
  dup->section = g_strdup ("elsewhere");
  dup->name = g_strdup (last->name);
  dup->value = g_bytes_ref (last->value);
  g_ptr_array_add (bad->vectors, dup);

  c = compare (expected, bad->vectors);
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
    g_autoptr (Published) p = parse_document (docs[i], &error);
    g_test_message ("%s", docs[i]);
    g_assert_null (p);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  }

  /* Other fenced blocks, and prose, are not vectors. */
  g_autoptr (GError) error = NULL;
  g_autoptr (Published) p = parse_document (
    "## keys\nissuer.seed: 01\n```\nissuer.seed: 02\n```\n```text\nx: 03\n```\n", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->vectors->len, ==, 0);
  g_assert_cmpuint (p->n_blocks, ==, 0);
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
