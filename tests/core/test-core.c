/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tally-core.h"
#include "tally-hex.h"
#include "tally-json.h"
#include "tally-keyfile.h"

#define LABEL_PREFIX "tally/v1/"
#define T0           ((guint64) 1767225600)
#define YEAR         ((guint64) 31536000)

#define CTX_PERMISSION  TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION
#define CTX_RECEIPT     TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT
#define CTX_CERTIFICATE TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE
#define CTX_VOUCHER     TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER
#define CTX_REVOCATION  TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST

typedef struct
{
  guint8 pk[TALLY_PUBLIC_KEY_BYTES];
  guint8 sk[TALLY_SECRET_KEY_BYTES];
  guint8 id[TALLY_ID_BYTES]; /* register id of pk */
  guint8 key_id[TALLY_ID_BYTES];
} Keys;

static void
keys_init (Keys *k, guint8 seed_byte)
{
  guint8 seed[crypto_sign_SEEDBYTES];
  memset (seed, seed_byte, sizeof seed);
  g_assert_cmpint (crypto_sign_seed_keypair (k->pk, k->sk, seed), ==, 0);
  tally_register_id_from_key (k->pk, k->id);
  tally_key_id_from_key (k->pk, k->key_id);
  sodium_memzero (seed, sizeof seed);
}

static void
keys_clear (Keys *k)
{
  sodium_memzero (k, sizeof *k);
}

/* BLAKE2b of "tally/v1/" || label || 0x00 || input, straight from libsodium. */
static void
raw_labelled_hash (const char *label, const void *input, gsize len, guint8 *out, gsize out_len)
{
  g_autoptr (GByteArray) m = g_byte_array_new ();
  g_byte_array_append (m, (const guint8 *) LABEL_PREFIX, strlen (LABEL_PREFIX));
  g_byte_array_append (m, (const guint8 *) label, strlen (label));
  g_byte_array_append (m, (const guint8 *) "", 1);
  if (len > 0)
    g_byte_array_append (m, input, len);
  g_assert_cmpint (crypto_generichash (out, out_len, m->data, m->len, NULL, 0), ==, 0);
}

static GBytes *
raw_signed_message (const char *label, const guint8 *body, gsize len)
{
  GByteArray *m = g_byte_array_new ();
  g_byte_array_append (m, (const guint8 *) LABEL_PREFIX, strlen (LABEL_PREFIX));
  g_byte_array_append (m, (const guint8 *) label, strlen (label) + 1);
  if (len > 0)
    g_byte_array_append (m, body, len);
  return g_byte_array_free_to_bytes (m);
}

static Tally__SignedEnvelope *
decode_bytes (GBytes *packed)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (GError) error = NULL;
  Tally__SignedEnvelope *env = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (env);
  return env;
}

static Tally__SignedEnvelope *
sign_message (Tally__SignatureContext ctx, const ProtobufCMessage *msg, const Keys *signer)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  g_autoptr (GBytes) packed = tally_envelope_sign (ctx, data, len, signer->sk);
  return decode_bytes (packed);
}

static void
set_bytes (ProtobufCBinaryData *field, const guint8 *data, gsize len)
{
  field->data = (guint8 *) data;
  field->len = len;
}

/* --- labelled hashing ---------------------------------------------------- */

static void
test_hash_matches_blake2b_construction (void)
{
  static const struct
  {
    const char *label;
    const char *input;
  } cases[] = {
    { "example", "" },
    { "example", "abc" },
    { "memo", "coffee" },
    { "chain", "a longer input that spans more than one line of text, 64+ bytes long!!" },
    { "", "empty label" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    guint8 expect[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES];
    gsize len = strlen (cases[i].input);

    raw_labelled_hash (cases[i].label, cases[i].input, len, expect, sizeof expect);
    tally_hash (cases[i].label, cases[i].input, len, got);
    g_assert_cmpmem (got, sizeof got, expect, sizeof expect);

    /* The incremental form gives the same bytes however the input is split. */
    for (gsize split = 0; split <= len; split++) {
      TallyHash h;
      guint8 inc[TALLY_HASH_BYTES];
      tally_hash_init (&h, cases[i].label, TALLY_HASH_BYTES);
      tally_hash_update (&h, cases[i].input, split);
      tally_hash_update (&h, cases[i].input + split, len - split);
      tally_hash_final (&h, inc);
      g_assert_cmpmem (inc, sizeof inc, expect, sizeof expect);
    }
  }
}

static void
test_hash_known_answer (void)
{
  /* BLAKE2b-256 of "tally/v1/example\0abc" from an independent BLAKE2b
   * implementation (Python hashlib); also published in
   * docs/test-vectors.md (hash.abc.output). */
  static const char expect_hex[] =
    "1ba746148bb4cd16957770b22ee6bdbb664c2f66cacd2c35ed17f9e067fff8f4";
  guint8 expect[TALLY_HASH_BYTES], raw[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES];
  static const guint8 preimage[] = "tally/v1/example\0abc";
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_hex_decode (expect_hex, expect, sizeof expect, &error));
  g_assert_no_error (error);
  crypto_generichash (raw, sizeof raw, preimage, sizeof preimage - 1, NULL, 0);
  g_assert_cmpmem (raw, sizeof raw, expect, sizeof expect);
  tally_hash ("example", "abc", 3, got);
  g_assert_cmpmem (got, sizeof got, expect, sizeof expect);
}

static void
test_hash_label_is_terminated (void)
{
  guint8 a[TALLY_HASH_BYTES], b[TALLY_HASH_BYTES];

  /* Without the 0x00 after the label these two would collide. */
  tally_hash ("ab", "c", 1, a);
  tally_hash ("a", "bc", 2, b);
  g_assert_true (memcmp (a, b, sizeof a) != 0);

  tally_hash ("receipt", "x", 1, a);
  tally_hash ("deposit-permission", "x", 1, b);
  g_assert_true (memcmp (a, b, sizeof a) != 0);
}

static void
test_hash_field_encodings (void)
{
  static const guint8 expect_input[] = {
    0x00, 0x00, 0x00, 0x00, 0x69, 0x55, 0xb9, 0x00, /* u64 1767225600, big-endian */
    0x00, 0x00, 0x00, 0x03, 'a',  'b',  'c',        /* u32 length, big-endian, bytes */
    0x00, 0x00, 0x00, 0x00,                         /* empty prefixed field */
  };
  guint8 expect[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES];
  TallyHash h;

  raw_labelled_hash ("example-fields", expect_input, sizeof expect_input, expect, sizeof expect);
  tally_hash_init (&h, "example-fields", TALLY_HASH_BYTES);
  tally_hash_update_u64 (&h, T0);
  tally_hash_update_prefixed (&h, "abc", 3);
  tally_hash_update_prefixed (&h, NULL, 0);
  tally_hash_final (&h, got);
  g_assert_cmpmem (got, sizeof got, expect, sizeof expect);
}

static void
test_hash_output_length_is_a_parameter (void)
{
  guint8 h16[16], h32[32], h64[64], raw16[16], raw64[64];
  TallyHash h;

  tally_hash_init (&h, "example", 16);
  tally_hash_update (&h, "abc", 3);
  tally_hash_final (&h, h16);
  raw_labelled_hash ("example", "abc", 3, raw16, sizeof raw16);
  g_assert_cmpmem (h16, sizeof h16, raw16, sizeof raw16);

  tally_hash_init (&h, "example", 64);
  tally_hash_update (&h, "abc", 3);
  tally_hash_final (&h, h64);
  raw_labelled_hash ("example", "abc", 3, raw64, sizeof raw64);
  g_assert_cmpmem (h64, sizeof h64, raw64, sizeof raw64);

  /* BLAKE2b binds the output length: a short hash is not a truncation. */
  tally_hash ("example", "abc", 3, h32);
  g_assert_true (memcmp (h16, h32, sizeof h16) != 0);
  g_assert_true (memcmp (h32, h64, sizeof h32) != 0);
}

/* --- identifiers and the hash chain -------------------------------------- */

static void
test_ids_register_id_is_labelled_hash16_of_key (void)
{
  Keys k;
  guint8 expect[TALLY_ID_BYTES];

  keys_init (&k, 0x02);
  raw_labelled_hash ("register-id", k.pk, sizeof k.pk, expect, sizeof expect);
  g_assert_cmpmem (k.id, sizeof k.id, expect, sizeof expect);
  keys_clear (&k);
}

static void
test_ids_key_id_is_labelled_hash16_of_key (void)
{
  Keys k;
  guint8 expect[TALLY_ID_BYTES];

  keys_init (&k, 0x01);
  raw_labelled_hash ("key-id", k.pk, sizeof k.pk, expect, sizeof expect);
  g_assert_cmpmem (k.key_id, sizeof k.key_id, expect, sizeof expect);
  /* The labels keep a register id and a key id of one key apart. */
  g_assert_true (memcmp (k.id, k.key_id, TALLY_ID_BYTES) != 0);
  keys_clear (&k);
}

static void
test_ids_differ_between_keys (void)
{
  Keys a, b;

  keys_init (&a, 0x02);
  keys_init (&b, 0x03);
  g_assert_true (memcmp (a.id, b.id, TALLY_ID_BYTES) != 0);
  g_assert_true (memcmp (a.key_id, b.key_id, TALLY_ID_BYTES) != 0);
  keys_clear (&a);
  keys_clear (&b);
}

static void
test_chain_genesis_is_labelled_hash_of_register_id (void)
{
  Keys k;
  guint8 expect[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES];

  keys_init (&k, 0x02);
  raw_labelled_hash ("chain-genesis", k.id, sizeof k.id, expect, sizeof expect);
  tally_chain_genesis (k.id, got);
  g_assert_cmpmem (got, sizeof got, expect, sizeof expect);
  keys_clear (&k);
}

static void
test_chain_next_hashes_prev_then_entry (void)
{
  guint8 prev[TALLY_HASH_BYTES], entry[TALLY_HASH_BYTES], both[2 * TALLY_HASH_BYTES];
  guint8 expect[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES], swapped[TALLY_HASH_BYTES];

  memset (prev, 0x11, sizeof prev);
  tally_hash ("deposit-permission", "body", 4, entry);
  memcpy (both, prev, TALLY_HASH_BYTES);
  memcpy (both + TALLY_HASH_BYTES, entry, TALLY_HASH_BYTES);
  raw_labelled_hash ("chain", both, sizeof both, expect, sizeof expect);

  tally_chain_next (prev, entry, got);
  g_assert_cmpmem (got, sizeof got, expect, sizeof expect);

  tally_chain_next (entry, prev, swapped);
  g_assert_true (memcmp (got, swapped, sizeof got) != 0);
}

/* --- envelopes ------------------------------------------------------------- */

static const char *const context_labels[] = {
  NULL,
  "issuer-key-set",
  "register-certificate",
  "load-voucher",
  "deposit-permission",
  "receipt",
  "revocation-list",
  "reconciliation-bundle",
  "reconciliation-result",
  "defund",
  "fraud-proof",
  "handshake-offer",
  "handshake-pay",
};

static void
test_envelope_context_labels (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (context_labels); i++)
    g_assert_cmpstr (tally_context_label ((Tally__SignatureContext) i), ==, context_labels[i]);
  g_assert_null (tally_context_label ((Tally__SignatureContext) G_N_ELEMENTS (context_labels)));
  g_assert_null (tally_context_label ((Tally__SignatureContext) 1000));
}

static const guint8 test_body[] = "a body that stands for any message";

static Tally__SignedEnvelope *
sign_test_body (Tally__SignatureContext ctx, const Keys *k)
{
  g_autoptr (GBytes) packed = tally_envelope_sign (ctx, test_body, sizeof test_body, k->sk);
  return decode_bytes (packed);
}

static void
test_envelope_round_trip (void)
{
  Keys k;
  g_autoptr (GError) error = NULL;

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);

  g_assert_cmpint (env->context, ==, CTX_PERMISSION);
  g_assert_cmpmem (env->body.data, env->body.len, test_body, sizeof test_body);
  g_assert_cmpuint (env->signature.len, ==, TALLY_SIGNATURE_BYTES);
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, k.pk, &error));
  g_assert_no_error (error);

  /* The signature is plain Ed25519 over "tally/v1/" || label || 0x00 || body. */
  g_autoptr (GBytes) m = raw_signed_message ("deposit-permission", test_body, sizeof test_body);
  gsize mlen;
  const guint8 *mdata = g_bytes_get_data (m, &mlen);
  g_assert_cmpint (crypto_sign_verify_detached (env->signature.data, mdata, mlen, k.pk), ==, 0);
  keys_clear (&k);
}

static void
test_envelope_pack_is_byte_identical (void)
{
  Keys k;

  keys_init (&k, 0x02);
  g_autoptr (GBytes) packed =
    tally_envelope_sign (CTX_RECEIPT, test_body, sizeof test_body, k.sk);
  g_autoptr (Tally__SignedEnvelope) env = decode_bytes (packed);
  g_autoptr (GBytes) again = tally_envelope_pack (env);
  g_assert_true (g_bytes_equal (packed, again));

  g_autoptr (Tally__SignedEnvelope) copy = tally_envelope_copy (env);
  g_assert_nonnull (copy);
  g_assert_true (copy != env);
  g_autoptr (GBytes) copied = tally_envelope_pack (copy);
  g_assert_true (g_bytes_equal (packed, copied));
  keys_clear (&k);
}

static void
test_envelope_refuses_flipped_body_bit (void)
{
  Keys k;

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);
  for (gsize bit = 0; bit < env->body.len * 8; bit++) {
    g_autoptr (GError) error = NULL;
    env->body.data[bit / 8] ^= (guint8) (1u << (bit % 8));
    g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, k.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    env->body.data[bit / 8] ^= (guint8) (1u << (bit % 8));
  }
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, k.pk, NULL));
  keys_clear (&k);
}

static void
test_envelope_refuses_flipped_signature_bit (void)
{
  Keys k;

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);
  for (gsize bit = 0; bit < env->signature.len * 8; bit++) {
    g_autoptr (GError) error = NULL;
    env->signature.data[bit / 8] ^= (guint8) (1u << (bit % 8));
    g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, k.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    env->signature.data[bit / 8] ^= (guint8) (1u << (bit % 8));
  }
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, k.pk, NULL));
  keys_clear (&k);
}

static void
test_envelope_remembered_verification_binds_key_body_and_signature (void)
{
  Keys a, b;

  keys_init (&a, 0x02);
  keys_init (&b, 0x03);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &a);
  /* Verified once, so remembered; every variation must still fail. */
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, a.pk, NULL));
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, a.pk, NULL));
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, b.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  }
  {
    g_autoptr (GError) error = NULL;
    env->body.data[0] ^= 1;
    g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, a.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    env->body.data[0] ^= 1;
  }
  {
    g_autoptr (GError) error = NULL;
    env->signature.data[63] ^= 0x10;
    g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, a.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
    env->signature.data[63] ^= 0x10;
  }
  g_assert_true (tally_envelope_verify (env, CTX_PERMISSION, a.pk, NULL));
  keys_clear (&a);
  keys_clear (&b);
}

static void
test_envelope_refuses_wrong_key (void)
{
  Keys a, b;
  g_autoptr (GError) error = NULL;

  keys_init (&a, 0x02);
  keys_init (&b, 0x03);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &a);
  g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, b.pk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  keys_clear (&a);
  keys_clear (&b);
}

static void
test_envelope_refuses_wrong_context (void)
{
  Keys k;
  g_autoptr (GError) error = NULL;

  keys_init (&k, 0x03);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_RECEIPT, &k);
  g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, k.pk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
  keys_clear (&k);
}

static void
test_envelope_refuses_relabelled_context (void)
{
  Keys k;
  g_autoptr (GError) error = NULL;

  /* Rewriting the context field does not carry the signature along: the
   * label is part of the signed bytes. */
  keys_init (&k, 0x03);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_RECEIPT, &k);
  env->context = CTX_PERMISSION;
  g_assert_false (tally_envelope_verify (env, CTX_PERMISSION, k.pk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  keys_clear (&k);
}

static void
test_envelope_refuses_unknown_context (void)
{
  Keys k;
  g_autoptr (GError) error = NULL;

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);
  env->context = (Tally__SignatureContext) 99;
  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  g_autoptr (Tally__SignedEnvelope) decoded = decode_bytes (packed);
  g_assert_false (tally_envelope_verify (decoded, CTX_PERMISSION, k.pk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
  keys_clear (&k);
}

static void
test_envelope_refuses_short_signature (void)
{
  static const gsize lengths[] = { 0, 1, 63, 65 };
  Keys k;

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);
  guint8 sig[TALLY_SIGNATURE_BYTES + 1];
  memcpy (sig, env->signature.data, TALLY_SIGNATURE_BYTES);
  sig[TALLY_SIGNATURE_BYTES] = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (lengths); i++) {
    g_autoptr (GError) error = NULL;
    Tally__SignedEnvelope copy = *env;
    set_bytes (&copy.signature, lengths[i] ? sig : NULL, lengths[i]);
    g_assert_false (tally_envelope_verify (&copy, CTX_PERMISSION, k.pk, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  }
  keys_clear (&k);
}

static void
test_envelope_refuses_missing (void)
{
  guint8 pk[TALLY_PUBLIC_KEY_BYTES] = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_false (tally_envelope_verify (NULL, CTX_PERMISSION, pk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
}

static void
test_envelope_decode_refuses_garbage (void)
{
  static const guint8 truncated_length[] = { 0x12, 0x10, 'a', 'b' }; /* body: 16 bytes promised */
  static const guint8 endless_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
  static const guint8 bad_wire_type[] = { 0x0f, 0x01 };
  static const guint8 lone_tag[] = { 0x1a };
  static const struct
  {
    const guint8 *data;
    gsize len;
  } cases[] = {
    { truncated_length, sizeof truncated_length },
    { endless_varint, sizeof endless_varint },
    { bad_wire_type, sizeof bad_wire_type },
    { lone_tag, sizeof lone_tag },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (Tally__SignedEnvelope) env =
      tally_envelope_decode (cases[i].data, cases[i].len, &error);
    g_assert_null (env);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  }

  /* A real envelope cut short by one byte. */
  Keys k;
  keys_init (&k, 0x02);
  g_autoptr (GBytes) packed =
    tally_envelope_sign (CTX_PERMISSION, test_body, sizeof test_body, k.sk);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) cut = tally_envelope_decode (data, len - 1, &error);
  g_assert_null (cut);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  keys_clear (&k);
}

static void
test_envelope_body_hash_is_labelled_by_context (void)
{
  Keys k;
  guint8 expect[TALLY_HASH_BYTES], got[TALLY_HASH_BYTES];

  keys_init (&k, 0x02);
  g_autoptr (Tally__SignedEnvelope) env = sign_test_body (CTX_PERMISSION, &k);
  raw_labelled_hash ("deposit-permission", test_body, sizeof test_body, expect, sizeof expect);
  tally_envelope_body_hash (env, got);
  g_assert_cmpmem (got, sizeof got, expect, sizeof expect);

  g_autoptr (Tally__SignedEnvelope) receipt = sign_test_body (CTX_RECEIPT, &k);
  tally_envelope_body_hash (receipt, got);
  g_assert_true (memcmp (got, expect, sizeof got) != 0);
  keys_clear (&k);
}

static void
test_envelope_detached_signature (void)
{
  Keys k;
  guint8 sig[TALLY_SIGNATURE_BYTES];
  static const guint8 transcript[TALLY_HASH_BYTES] = { 1, 2, 3 };
  g_autoptr (GError) error = NULL;

  keys_init (&k, 0x03);
  tally_sign_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER, transcript,
                       sizeof transcript, k.sk, sig);
  g_assert_true (tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER,
                                        transcript, sizeof transcript, sig, sizeof sig, k.pk,
                                        &error));
  g_assert_no_error (error);

  /* The same bytes signed for the other handshake direction do not pass. */
  g_assert_false (tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
                                         transcript, sizeof transcript, sig, sizeof sig, k.pk,
                                         &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  keys_clear (&k);
}

static void
test_message_unpack_refuses_garbage (void)
{
  static const guint8 garbage[] = { 0x0a, 0x7f, 0x00 };
  g_autoptr (GError) error = NULL;

  g_autoptr (Tally__RegisterCertificate) cert = TALLY_UNPACK (
    Tally__RegisterCertificate, tally__register_certificate, garbage, sizeof garbage,
    "certificate", &error);
  g_assert_null (cert);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_assert_nonnull (strstr (error->message, "certificate"));
}

/* An unknown field numbered 0 behind the two-byte tag 0x80 0x00: protobuf-c
 * 1.4 accepts it but packs it again as the single byte 0x00, which it
 * refuses.  Found by tests/fuzz/fuzz-envelope. */
static const guint8 field_zero[] = { 0x80, 0x00, 0x05 };

static GBytes *
append_bytes (GBytes *packed, const guint8 *extra, gsize extra_len)
{
  GByteArray *b = g_byte_array_new ();
  g_byte_array_append (b, g_bytes_get_data (packed, NULL), (guint) g_bytes_get_size (packed));
  g_byte_array_append (b, extra, (guint) extra_len);
  return g_byte_array_free_to_bytes (b);
}

static void
test_message_unpack_refuses_what_cannot_be_packed_again (void)
{
  Keys k;
  keys_init (&k, 0x02);
  g_autoptr (GBytes) packed =
    tally_envelope_sign (CTX_REVOCATION, test_body, sizeof test_body, k.sk);
  g_autoptr (GBytes) odd = append_bytes (packed, field_zero, sizeof field_zero);
  g_autoptr (GError) error = NULL;

  /* Accepted, it would be stored packed again and never decode: a register
   * holding such a gossiped revocation list could not be opened. */
  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (odd, NULL), g_bytes_get_size (odd), &error);
  g_assert_null (env);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_clear_error (&error);

  /* The same inside a message that carries envelopes. */
  g_autoptr (Tally__SignedEnvelope) good =
    tally_envelope_decode (g_bytes_get_data (packed, NULL), g_bytes_get_size (packed), &error);
  g_assert_no_error (error);
  Tally__PayBody body = TALLY__PAY_BODY__INIT;
  body.revocation_list = good;
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);
  /* Field 3 (revocation_list), length-delimited: tag, length, envelope. */
  g_autoptr (GByteArray) nested = g_byte_array_new ();
  guint8 head[2] = { 0x1a, (guint8) (g_bytes_get_size (packed) + sizeof field_zero) };
  g_assert_cmpuint (g_bytes_get_size (packed) + sizeof field_zero, <, 128);
  g_assert_cmpuint (g_bytes_get_size (body_bytes), ==, 2 + g_bytes_get_size (packed));
  g_byte_array_append (nested, head, sizeof head);
  g_byte_array_append (nested, g_bytes_get_data (odd, NULL), (guint) g_bytes_get_size (odd));
  g_autoptr (Tally__PayBody) pay = TALLY_UNPACK (Tally__PayBody, tally__pay_body, nested->data,
                                                 nested->len, "pay body", &error);
  g_assert_null (pay);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  keys_clear (&k);
}

static void
test_message_unpack_keeps_unknown_fields (void)
{
  Keys k;
  keys_init (&k, 0x02);
  g_autoptr (GBytes) packed =
    tally_envelope_sign (CTX_REVOCATION, test_body, sizeof test_body, k.sk);
  /* Field 15, varint 1: what a later protocol version might add. */
  static const guint8 field_15[] = { 0x78, 0x01 };
  g_autoptr (GBytes) newer = append_bytes (packed, field_15, sizeof field_15);
  g_autoptr (GError) error = NULL;

  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (newer, NULL), g_bytes_get_size (newer), &error);
  g_assert_no_error (error);
  g_assert_nonnull (env);
  g_assert_true (tally_envelope_verify (env, CTX_REVOCATION, k.pk, &error));
  g_assert_no_error (error);
  g_autoptr (GBytes) again = tally_envelope_pack (env);
  g_assert_true (g_bytes_equal (again, newer));
  keys_clear (&k);
}

/* --- certificates ---------------------------------------------------------- */

typedef struct
{
  Keys issuer;
  Keys other_issuer;
  Keys reg;
  Tally__Limits limits;
  Tally__RegisterCertificate cert;
} CertFixture;

static void
cert_fixture_init (CertFixture *f)
{
  keys_init (&f->issuer, 0x01);
  keys_init (&f->other_issuer, 0x11);
  keys_init (&f->reg, 0x02);

  tally__limits__init (&f->limits);
  f->limits.max_payment = 5000;
  f->limits.balance_cap = 20000;
  f->limits.max_offline_payments = 10;
  f->limits.max_offline_seconds = 604800;

  tally__register_certificate__init (&f->cert);
  set_bytes (&f->cert.register_public_key, f->reg.pk, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&f->cert.register_id, f->reg.id, TALLY_ID_BYTES);
  f->cert.currency = (char *) "EUR";
  f->cert.limits = &f->limits;
  f->cert.not_before = T0;
  f->cert.not_after = T0 + YEAR;
  set_bytes (&f->cert.issuer_key_id, f->issuer.key_id, TALLY_ID_BYTES);
  f->cert.serial = 1;
}

static void
cert_fixture_clear (CertFixture *f)
{
  sodium_memzero (f, sizeof *f);
}

static Tally__SignedEnvelope *
cert_sign (CertFixture *f, const Keys *signer)
{
  return sign_message (CTX_CERTIFICATE, &f->cert.base, signer);
}

static void
assert_cert_refused (CertFixture *f, const Keys *signer, guint64 now, gint code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = cert_sign (f, signer);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify (env, f->issuer.pk, now, &error);
  g_assert_null (cert);
  g_assert_error (error, TALLY_ERROR, code);
}

static void
test_certificate_accepts_valid (void)
{
  CertFixture f;
  static const guint64 times[] = { T0, T0 + 1, T0 + YEAR / 2, T0 + YEAR };

  cert_fixture_init (&f);
  g_autoptr (Tally__SignedEnvelope) env = cert_sign (&f, &f.issuer);
  for (gsize i = 0; i < G_N_ELEMENTS (times); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (Tally__RegisterCertificate) cert =
      tally_certificate_verify (env, f.issuer.pk, times[i], &error);
    g_assert_no_error (error);
    g_assert_nonnull (cert);
    g_assert_cmpmem (cert->register_id.data, cert->register_id.len, f.reg.id, TALLY_ID_BYTES);
    g_assert_cmpstr (cert->currency, ==, "EUR");
    g_assert_cmpint (cert->limits->max_payment, ==, 5000);
    g_assert_cmpuint (cert->serial, ==, 1);
  }
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_wrong_issuer (void)
{
  CertFixture f;

  cert_fixture_init (&f);
  /* Another issuer's certificate names that issuer. */
  set_bytes (&f.cert.issuer_key_id, f.other_issuer.key_id, TALLY_ID_BYTES);
  assert_cert_refused (&f, &f.other_issuer, T0 + 1, TALLY_ERROR_WRONG_ISSUER);
  /* Signed by our issuer but naming another one. */
  assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_WRONG_ISSUER);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_forged_issuer_key_id (void)
{
  CertFixture f;

  /* Naming our issuer does not help a certificate someone else signed. */
  cert_fixture_init (&f);
  assert_cert_refused (&f, &f.other_issuer, T0 + 1, TALLY_ERROR_BAD_SIGNATURE);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_expired (void)
{
  CertFixture f;

  cert_fixture_init (&f);
  assert_cert_refused (&f, &f.issuer, T0 + YEAR + 1, TALLY_ERROR_CERT_EXPIRED);
  assert_cert_refused (&f, &f.issuer, G_MAXUINT64, TALLY_ERROR_CERT_EXPIRED);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_not_yet_valid (void)
{
  CertFixture f;

  cert_fixture_init (&f);
  assert_cert_refused (&f, &f.issuer, T0 - 1, TALLY_ERROR_CERT_NOT_YET_VALID);
  assert_cert_refused (&f, &f.issuer, 0, TALLY_ERROR_CERT_NOT_YET_VALID);
  cert_fixture_clear (&f);
}

static void
test_certificate_any_time_ignores_window (void)
{
  CertFixture f;
  g_autoptr (GError) error = NULL;

  cert_fixture_init (&f);
  g_autoptr (Tally__SignedEnvelope) env = cert_sign (&f, &f.issuer);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (env, f.issuer.pk, &error);
  g_assert_no_error (error);
  g_assert_nonnull (cert);
  g_assert_cmpuint (cert->not_after, ==, T0 + YEAR);

  /* Everything but the window is still checked. */
  f.limits.max_payment = 0;
  g_autoptr (Tally__SignedEnvelope) bad = cert_sign (&f, &f.issuer);
  g_autoptr (Tally__RegisterCertificate) none =
    tally_certificate_verify_any_time (bad, f.issuer.pk, &error);
  g_assert_null (none);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_id_not_matching_key (void)
{
  CertFixture f;
  Keys other;

  cert_fixture_init (&f);
  keys_init (&other, 0x03);
  set_bytes (&f.cert.register_id, other.id, TALLY_ID_BYTES);
  assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
  keys_clear (&other);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_short_fields (void)
{
  CertFixture f;

  cert_fixture_init (&f);
  set_bytes (&f.cert.register_public_key, f.reg.pk, TALLY_PUBLIC_KEY_BYTES - 1);
  assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);

  cert_fixture_init (&f);
  set_bytes (&f.cert.register_id, f.reg.id, TALLY_ID_BYTES - 1);
  assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);

  cert_fixture_init (&f);
  set_bytes (&f.cert.issuer_key_id, NULL, 0);
  assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_invalid_limits (void)
{
  for (int which = 0; which < 7; which++) {
    CertFixture f;
    cert_fixture_init (&f);
    switch (which) {
    case 0: f.limits.max_payment = 0; break;
    case 1: f.limits.balance_cap = 0; break;
    case 2: f.limits.max_offline_payments = 0; break;
    case 3: f.limits.max_offline_seconds = 0; break;
    case 4: f.limits.max_payment = -1; break;
    case 5: f.limits.balance_cap = TALLY_AMOUNT_MAX + 1; break;
    case 6: f.cert.limits = NULL; break;
    }
    g_test_message ("limits case %d", which);
    assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
    cert_fixture_clear (&f);
  }
}

static void
test_certificate_refuses_bad_currency (void)
{
  static const char *const currencies[] = { "", "EU", "eur", "EU1", "ABCDEFGHI", "E R" };

  for (gsize i = 0; i < G_N_ELEMENTS (currencies); i++) {
    CertFixture f;
    cert_fixture_init (&f);
    f.cert.currency = (char *) currencies[i];
    g_test_message ("currency \"%s\"", currencies[i]);
    assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
    cert_fixture_clear (&f);
  }
}

static void
test_certificate_refuses_invalid_display_name (void)
{
  static const char *const names[] = {
    "0123456789012345678901234567890123456789012345678901234567890123X", /* 65 bytes */
    "Caf\xe9",                                                           /* Latin-1, not UTF-8 */
    "Bob's\tBakery",                                                     /* C0 control */
    "Bob\x7f",                                                           /* DEL */
    "Bob\xc2\x9b",                                                       /* C1 control */
    "Bob\u2029",                                                         /* paragraph separator */
    "Bob \u2066x",                                                       /* bidi isolate */
  };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++) {
    CertFixture f;
    cert_fixture_init (&f);
    f.cert.display_name = (char *) names[i];
    g_test_message ("display name #%zu", i);
    assert_cert_refused (&f, &f.issuer, T0 + 1, TALLY_ERROR_MALFORMED);
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_display_name_check (names[i], &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    cert_fixture_clear (&f);
  }
}

static void
test_certificate_accepts_display_name_or_none (void)
{
  /* None, one byte, 64 bytes, and non-Latin script. */
  static const char *const names[] = {
    "", "B", "0123456789012345678901234567890123456789012345678901234567890123",
    "Caf\u00e9 Lumen", "\u6674\u308c\u30d1\u30f3\u5c4b",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++) {
    CertFixture f;
    cert_fixture_init (&f);
    f.cert.display_name = (char *) names[i];
    g_autoptr (GError) error = NULL;
    g_autoptr (Tally__SignedEnvelope) env = cert_sign (&f, &f.issuer);
    g_autoptr (Tally__RegisterCertificate) cert =
      tally_certificate_verify (env, f.issuer.pk, T0 + 1, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (cert->display_name, ==, names[i]);
    cert_fixture_clear (&f);
  }
  g_assert_true (tally_display_name_check (NULL, NULL));
}

static void
test_certificate_refuses_empty_window (void)
{
  CertFixture f;

  cert_fixture_init (&f);
  f.cert.not_after = f.cert.not_before;
  assert_cert_refused (&f, &f.issuer, T0, TALLY_ERROR_MALFORMED);
  f.cert.not_after = f.cert.not_before - 1;
  assert_cert_refused (&f, &f.issuer, T0, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_wrong_context (void)
{
  CertFixture f;
  g_autoptr (GError) error = NULL;

  cert_fixture_init (&f);
  g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_VOUCHER, &f.cert.base, &f.issuer);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify (env, f.issuer.pk, T0 + 1, &error);
  g_assert_null (cert);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
  cert_fixture_clear (&f);
}

static void
test_certificate_refuses_garbage_body (void)
{
  CertFixture f;
  static const guint8 garbage[] = { 0x0a, 0x40, 0x01 };
  g_autoptr (GError) error = NULL;

  cert_fixture_init (&f);
  g_autoptr (GBytes) packed = tally_envelope_sign (CTX_CERTIFICATE, garbage, sizeof garbage,
                                                   f.issuer.sk);
  g_autoptr (Tally__SignedEnvelope) env = decode_bytes (packed);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify (env, f.issuer.pk, T0 + 1, &error);
  g_assert_null (cert);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  cert_fixture_clear (&f);
}

/* --- vouchers -------------------------------------------------------------- */

typedef struct
{
  Keys issuer;
  Keys other_issuer;
  Keys reg;
  Tally__Amount amount;
  Tally__LoadVoucher voucher;
} VoucherFixture;

static void
voucher_fixture_init (VoucherFixture *f)
{
  keys_init (&f->issuer, 0x01);
  keys_init (&f->other_issuer, 0x11);
  keys_init (&f->reg, 0x02);
  tally__amount__init (&f->amount);
  f->amount.currency = (char *) "EUR";
  f->amount.value = 10000;
  tally__load_voucher__init (&f->voucher);
  set_bytes (&f->voucher.register_id, f->reg.id, TALLY_ID_BYTES);
  f->voucher.sequence = 1;
  f->voucher.amount = &f->amount;
  f->voucher.issued_at = T0;
  set_bytes (&f->voucher.issuer_key_id, f->issuer.key_id, TALLY_ID_BYTES);
}

static void
assert_voucher_refused (VoucherFixture *f, const Keys *signer, gint code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_VOUCHER, &f->voucher.base, signer);
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, f->issuer.pk, &error);
  g_assert_null (v);
  g_assert_error (error, TALLY_ERROR, code);
}

static void
test_voucher_accepts_valid (void)
{
  VoucherFixture f;
  g_autoptr (GError) error = NULL;

  voucher_fixture_init (&f);
  g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_VOUCHER, &f.voucher.base, &f.issuer);
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, f.issuer.pk, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
  g_assert_cmpmem (v->register_id.data, v->register_id.len, f.reg.id, TALLY_ID_BYTES);
  g_assert_cmpuint (v->sequence, ==, 1);
  g_assert_cmpint (v->amount->value, ==, 10000);
  g_assert_cmpstr (v->amount->currency, ==, "EUR");
  sodium_memzero (&f, sizeof f);
}

static void
test_voucher_refuses_other_issuer (void)
{
  VoucherFixture f;

  voucher_fixture_init (&f);
  /* Signed by our issuer, naming another. */
  set_bytes (&f.voucher.issuer_key_id, f.other_issuer.key_id, TALLY_ID_BYTES);
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_WRONG_ISSUER);
  /* Signed by the issuer it names, which is not ours. */
  assert_voucher_refused (&f, &f.other_issuer, TALLY_ERROR_WRONG_ISSUER);
  sodium_memzero (&f, sizeof f);
}

static void
test_voucher_refuses_invalid_fields (void)
{
  VoucherFixture f;

  voucher_fixture_init (&f);
  f.amount.value = 0;
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_INVALID_AMOUNT);
  f.amount.value = -5;
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_INVALID_AMOUNT);
  f.amount.value = TALLY_AMOUNT_MAX + 1;
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_OVERFLOW);
  f.amount.value = 10000;
  f.voucher.amount = NULL;
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_INVALID_AMOUNT);
  f.voucher.amount = &f.amount;
  f.voucher.sequence = 0;
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_MALFORMED);
  f.voucher.sequence = 1;
  set_bytes (&f.voucher.register_id, f.reg.id, TALLY_ID_BYTES - 1);
  assert_voucher_refused (&f, &f.issuer, TALLY_ERROR_MALFORMED);
  sodium_memzero (&f, sizeof f);
}

static void
test_voucher_refuses_wrong_context (void)
{
  VoucherFixture f;
  g_autoptr (GError) error = NULL;

  voucher_fixture_init (&f);
  g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_REVOCATION, &f.voucher.base, &f.issuer);
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, f.issuer.pk, &error);
  g_assert_null (v);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
  sodium_memzero (&f, sizeof f);
}

/* --- revocation lists -------------------------------------------------------- */

static void
test_revocation_list_contains_listed_ids (void)
{
  Keys issuer, a, b, c;
  g_autoptr (GError) error = NULL;
  ProtobufCBinaryData ids[2];

  keys_init (&issuer, 0x01);
  keys_init (&a, 0x02);
  keys_init (&b, 0x03);
  keys_init (&c, 0x04);
  set_bytes (&ids[0], a.id, TALLY_ID_BYTES);
  set_bytes (&ids[1], b.id, TALLY_ID_BYTES);
  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  list.serial = 3;
  list.issued_at = T0;
  list.n_revoked_register_ids = 2;
  list.revoked_register_ids = ids;
  set_bytes (&list.issuer_key_id, issuer.key_id, TALLY_ID_BYTES);

  g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_REVOCATION, &list.base, &issuer);
  g_autoptr (Tally__RevocationList) got = tally_revocation_list_verify (env, issuer.pk, &error);
  g_assert_no_error (error);
  g_assert_nonnull (got);
  g_assert_cmpuint (got->serial, ==, 3);
  g_assert_true (tally_revocation_list_contains (got, a.id));
  g_assert_true (tally_revocation_list_contains (got, b.id));
  g_assert_false (tally_revocation_list_contains (got, c.id));
  g_assert_false (tally_revocation_list_contains (NULL, a.id));

  Tally__RevocationList empty = TALLY__REVOCATION_LIST__INIT;
  g_assert_false (tally_revocation_list_contains (&empty, a.id));
  keys_clear (&issuer);
  keys_clear (&a);
  keys_clear (&b);
  keys_clear (&c);
}

static void
test_revocation_list_contains_ignores_short_ids (void)
{
  guint8 id[TALLY_ID_BYTES];
  ProtobufCBinaryData entry;

  /* An entry shorter than 16 bytes is no match even when the bytes after
   * its end happen to complete the id: contains() must not read past it. */
  memset (id, 0x5a, sizeof id);
  g_autofree guint8 *buf = g_memdup2 (id, sizeof id);
  set_bytes (&entry, buf, 4);
  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  list.n_revoked_register_ids = 1;
  list.revoked_register_ids = &entry;
  g_assert_false (tally_revocation_list_contains (&list, id));
}

/* --- issuer key set --- */

static Tally__SignedEnvelope *
key_set_signed (const Keys *key, const Keys *signer, const char *currency)
{
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  set_bytes (&ks.public_key, key->pk, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&ks.key_id, key->key_id, TALLY_ID_BYTES);
  ks.currency = (char *) currency;
  ks.name = "Example Bank";
  ks.created_at = T0;
  return sign_message (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, &ks.base,
                       signer);
}

static void
test_issuer_key_set_verifies_under_its_own_key (void)
{
  Keys issuer;
  g_autoptr (GError) error = NULL;
  keys_init (&issuer, 0x01);
  g_autoptr (Tally__SignedEnvelope) env = key_set_signed (&issuer, &issuer, "EUR");
  g_autoptr (Tally__IssuerKeySet) ks = tally_issuer_key_set_verify (env, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ks);
  g_assert_cmpmem (ks->public_key.data, ks->public_key.len, issuer.pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpstr (ks->currency, ==, "EUR");
  g_assert_cmpstr (ks->name, ==, "Example Bank");
  keys_clear (&issuer);
}

static void
expect_key_set_refused (Tally__SignedEnvelope *env, TallyError code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__IssuerKeySet) ks = tally_issuer_key_set_verify (env, &error);
  g_assert_error (error, TALLY_ERROR, (gint) code);
  g_assert_null (ks);
}

static void
test_issuer_key_set_refuses_bad_sets (void)
{
  Keys issuer, other;
  keys_init (&issuer, 0x01);
  keys_init (&other, 0x11);

  g_test_message ("signed by another key than the one it names");
  g_autoptr (Tally__SignedEnvelope) foreign = key_set_signed (&issuer, &other, "EUR");
  expect_key_set_refused (foreign, TALLY_ERROR_BAD_SIGNATURE);

  g_test_message ("one flipped signature bit");
  g_autoptr (Tally__SignedEnvelope) flipped = key_set_signed (&issuer, &issuer, "EUR");
  flipped->signature.data[7] ^= 0x01;
  expect_key_set_refused (flipped, TALLY_ERROR_BAD_SIGNATURE);

  g_test_message ("signed as a revocation list");
  g_autoptr (Tally__SignedEnvelope) context = key_set_signed (&issuer, &issuer, "EUR");
  context->context = CTX_REVOCATION;
  expect_key_set_refused (context, TALLY_ERROR_WRONG_CONTEXT);

  g_test_message ("a currency that is no code");
  g_autoptr (Tally__SignedEnvelope) currency = key_set_signed (&issuer, &issuer, "eu");
  expect_key_set_refused (currency, TALLY_ERROR_MALFORMED);

  g_test_message ("a key id of another key");
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  set_bytes (&ks.public_key, issuer.pk, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&ks.key_id, other.key_id, TALLY_ID_BYTES);
  ks.currency = "EUR";
  g_autoptr (Tally__SignedEnvelope) key_id =
    sign_message (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, &ks.base, &issuer);
  expect_key_set_refused (key_id, TALLY_ERROR_MALFORMED);

  g_test_message ("a short public key");
  set_bytes (&ks.public_key, issuer.pk, TALLY_PUBLIC_KEY_BYTES - 1);
  set_bytes (&ks.key_id, issuer.key_id, TALLY_ID_BYTES);
  g_autoptr (Tally__SignedEnvelope) short_key =
    sign_message (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, &ks.base, &issuer);
  expect_key_set_refused (short_key, TALLY_ERROR_MALFORMED);

  keys_clear (&issuer);
  keys_clear (&other);
}

static void
test_revocation_list_refuses_bad_lists (void)
{
  Keys issuer, other, a;
  ProtobufCBinaryData ids[1];

  keys_init (&issuer, 0x01);
  keys_init (&other, 0x11);
  keys_init (&a, 0x02);
  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  list.serial = 1;
  list.n_revoked_register_ids = 1;
  list.revoked_register_ids = ids;

  {
    g_autoptr (GError) error = NULL;
    set_bytes (&ids[0], a.id, TALLY_ID_BYTES - 1);
    set_bytes (&list.issuer_key_id, issuer.key_id, TALLY_ID_BYTES);
    g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_REVOCATION, &list.base, &issuer);
    g_autoptr (Tally__RevocationList) got = tally_revocation_list_verify (env, issuer.pk, &error);
    g_assert_null (got);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  }
  {
    g_autoptr (GError) error = NULL;
    set_bytes (&ids[0], a.id, TALLY_ID_BYTES);
    set_bytes (&list.issuer_key_id, other.key_id, TALLY_ID_BYTES);
    g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_REVOCATION, &list.base, &issuer);
    g_autoptr (Tally__RevocationList) got = tally_revocation_list_verify (env, issuer.pk, &error);
    g_assert_null (got);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER);
  }
  {
    g_autoptr (GError) error = NULL;
    set_bytes (&list.issuer_key_id, issuer.key_id, TALLY_ID_BYTES);
    g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_REVOCATION, &list.base, &other);
    g_autoptr (Tally__RevocationList) got = tally_revocation_list_verify (env, issuer.pk, &error);
    g_assert_null (got);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (Tally__SignedEnvelope) env = sign_message (CTX_VOUCHER, &list.base, &issuer);
    g_autoptr (Tally__RevocationList) got = tally_revocation_list_verify (env, issuer.pk, &error);
    g_assert_null (got);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT);
  }
  keys_clear (&issuer);
  keys_clear (&other);
  keys_clear (&a);
}

/* --- amounts ----------------------------------------------------------------- */

static void
assert_amount_refused (const char *currency, gint64 value, const char *expect_currency, gint code)
{
  g_autoptr (GError) error = NULL;
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) currency;
  a.value = value;
  g_test_message ("amount %" G_GINT64_FORMAT " %s", value, currency);
  g_assert_false (tally_amount_check (&a, expect_currency, &error));
  g_assert_error (error, TALLY_ERROR, code);
}

static void
test_amount_check_accepts_positive_in_range (void)
{
  static const gint64 values[] = { 1, 1250, TALLY_AMOUNT_MAX };

  for (gsize i = 0; i < G_N_ELEMENTS (values); i++) {
    g_autoptr (GError) error = NULL;
    Tally__Amount a = TALLY__AMOUNT__INIT;
    a.currency = (char *) "EUR";
    a.value = values[i];
    g_assert_true (tally_amount_check (&a, "EUR", &error));
    g_assert_no_error (error);
    g_assert_true (tally_amount_check (&a, NULL, &error));
    g_assert_no_error (error);
  }
}

static void
test_amount_check_refuses_missing (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (tally_amount_check (NULL, "EUR", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_amount_check_refuses_zero_and_negative (void)
{
  assert_amount_refused ("EUR", 0, "EUR", TALLY_ERROR_INVALID_AMOUNT);
  assert_amount_refused ("EUR", -1, "EUR", TALLY_ERROR_INVALID_AMOUNT);
  assert_amount_refused ("EUR", G_MININT64, NULL, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_amount_check_refuses_above_max (void)
{
  assert_amount_refused ("EUR", TALLY_AMOUNT_MAX + 1, "EUR", TALLY_ERROR_OVERFLOW);
  assert_amount_refused ("EUR", G_MAXINT64, NULL, TALLY_ERROR_OVERFLOW);
}

static void
test_amount_check_refuses_currency_mismatch (void)
{
  assert_amount_refused ("USD", 100, "EUR", TALLY_ERROR_CURRENCY_MISMATCH);
  assert_amount_refused ("EURO", 100, "EUR", TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_amount_check_refuses_invalid_currency (void)
{
  assert_amount_refused ("", 100, NULL, TALLY_ERROR_INVALID_AMOUNT);
  assert_amount_refused ("eur", 100, "eur", TALLY_ERROR_INVALID_AMOUNT);
  assert_amount_refused ("E1R", 100, NULL, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_amount_add_sums_within_range (void)
{
  gint64 out = -1;
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_amount_add (1200, 50, &out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (out, ==, 1250);
  g_assert_true (tally_amount_add (1250, -1250, &out, &error));
  g_assert_cmpint (out, ==, 0);
  g_assert_true (tally_amount_add (TALLY_AMOUNT_MAX - 1, 1, &out, &error));
  g_assert_cmpint (out, ==, TALLY_AMOUNT_MAX);
  g_assert_true (tally_amount_add (TALLY_AMOUNT_MAX, -TALLY_AMOUNT_MAX, &out, &error));
  g_assert_cmpint (out, ==, 0);
  g_assert_no_error (error);
}

static void
test_amount_add_refuses_overflow (void)
{
  static const gint64 pairs[][2] = {
    { TALLY_AMOUNT_MAX, 1 },
    { TALLY_AMOUNT_MAX / 2 + 1, TALLY_AMOUNT_MAX / 2 },
    { TALLY_AMOUNT_MAX + 1, 0 },
    { 0, TALLY_AMOUNT_MAX + 1 },
    { G_MAXINT64, 1 },
    { G_MAXINT64, G_MAXINT64 },
    { G_MININT64, G_MAXINT64 },
    { 5, -TALLY_AMOUNT_MAX - 1 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (pairs); i++) {
    g_autoptr (GError) error = NULL;
    gint64 out = 77;
    g_test_message ("%" G_GINT64_FORMAT " + %" G_GINT64_FORMAT, pairs[i][0], pairs[i][1]);
    g_assert_false (tally_amount_add (pairs[i][0], pairs[i][1], &out, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW);
    g_assert_cmpint (out, ==, 77);
  }
}

static void
test_amount_add_refuses_negative_result (void)
{
  static const gint64 pairs[][2] = {
    { 0, -1 },
    { 1249, -1250 },
    { -1, 0 },
    { -TALLY_AMOUNT_MAX, 0 },
  };

  /* A balance never goes below zero: tally-core.c reports it as
   * INSUFFICIENT_FUNDS, the payer-side meaning of a negative result. */
  for (gsize i = 0; i < G_N_ELEMENTS (pairs); i++) {
    g_autoptr (GError) error = NULL;
    gint64 out = 77;
    g_test_message ("%" G_GINT64_FORMAT " + %" G_GINT64_FORMAT, pairs[i][0], pairs[i][1]);
    g_assert_false (tally_amount_add (pairs[i][0], pairs[i][1], &out, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS);
    g_assert_cmpint (out, ==, 77);
  }
}

static void
test_amount_parse_accepts_decimal (void)
{
  static const struct
  {
    const char *text;
    gint64 value;
  } cases[] = {
    { "12", 1200 },
    { "12.5", 1250 },
    { "12.50", 1250 },
    { "0.01", 1 },
    { "0.1", 10 },
    { "007", 700 },
    { "90071992547409.92", TALLY_AMOUNT_MAX },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gint64 out = -1;
    g_test_message ("\"%s\"", cases[i].text);
    g_assert_true (tally_amount_parse (cases[i].text, "EUR", &out, &error));
    g_assert_no_error (error);
    g_assert_cmpint (out, ==, cases[i].value);
  }
}

static void
test_amount_parse_refuses_invalid (void)
{
  static const char *const cases[] = {
    "0", "0.00", "0.0", "-1", "1.234", "abc", "", "1.", ".5", "+1", " 1", "1 ", "1,50",
    "1e3", "12.5x", "1..2", "0x10",
    "100000000000000000000",  /* past 64 bits */
    "90071992547410",         /* whole units just past TALLY_AMOUNT_MAX */
    "90071992547409.93",      /* minor units just past TALLY_AMOUNT_MAX */
    "90071992547409.99",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gint64 out = 77;
    g_test_message ("\"%s\"", cases[i]);
    g_assert_false (tally_amount_parse (cases[i], "EUR", &out, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  }

  g_autoptr (GError) error = NULL;
  gint64 out;
  g_assert_false (tally_amount_parse (NULL, "EUR", &out, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
}

static void
test_amount_format_two_minor_digits (void)
{
  static const struct
  {
    gint64 value;
    const char *text;
  } cases[] = {
    { 1250, "12.50 EUR" },
    { 1205, "12.05 EUR" },
    { 5, "0.05 EUR" },
    { 0, "0.00 EUR" },
    { 100, "1.00 EUR" },
    { -1250, "-12.50 EUR" },
    { -1, "-0.01 EUR" },
    { TALLY_AMOUNT_MAX, "90071992547409.92 EUR" },
    { G_MAXINT64, "92233720368547758.07 EUR" },
    { G_MININT64, "-92233720368547758.08 EUR" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *s = tally_amount_format (cases[i].value, "EUR");
    g_assert_cmpstr (s, ==, cases[i].text);
  }
}

static void
test_amount_format_parses_back (void)
{
  static const gint64 values[] = { 1, 9, 10, 99, 100, 101, 1250, 123456789, TALLY_AMOUNT_MAX };

  for (gsize i = 0; i < G_N_ELEMENTS (values); i++) {
    g_autoptr (GError) error = NULL;
    g_autofree char *s = tally_amount_format (values[i], "EUR");
    char *space = strchr (s, ' ');
    gint64 out = 0;
    g_assert_nonnull (space);
    *space = '\0';
    g_assert_true (tally_amount_parse (s, "EUR", &out, &error));
    g_assert_no_error (error);
    g_assert_cmpint (out, ==, values[i]);
  }
}

/* ISO 4217's exponents: the display and the typing follow them, the wire
 * does not (minor units everywhere). */
static void
test_amount_jpy_has_no_decimals (void)
{
  g_autofree char *s = tally_amount_format (1250, "JPY");
  g_autofree char *neg = tally_amount_format (-7, "JPY");
  g_autofree char *max = tally_amount_format (TALLY_AMOUNT_MAX, "JPY");
  g_autofree char *bare = tally_amount_format_value (1250, "JPY");
  g_assert_cmpstr (s, ==, "1250 JPY");
  g_assert_cmpstr (neg, ==, "-7 JPY");
  g_assert_cmpstr (max, ==, "9007199254740992 JPY");
  g_assert_cmpstr (bare, ==, "1250");

  g_autoptr (GError) error = NULL;
  gint64 out = 0;
  g_assert_true (tally_amount_parse ("1250", "JPY", &out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (out, ==, 1250);
  g_assert_true (tally_amount_parse ("9007199254740992", "JPY", &out, &error));
  g_assert_cmpint (out, ==, TALLY_AMOUNT_MAX);

  static const char *const refused[] = {
    "12.5", "12.50", "1250.0", "0", "12.", "9007199254740993"
  };
  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++) {
    g_autoptr (GError) e = NULL;
    out = 77;
    g_test_message ("\"%s\"", refused[i]);
    g_assert_false (tally_amount_parse (refused[i], "JPY", &out, &e));
    g_assert_error (e, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
    g_assert_cmpint (out, ==, 77);
  }
  g_autoptr (GError) e = NULL;
  g_assert_false (tally_amount_parse ("12.5", "JPY", &out, &e));
  g_assert_cmpstr (e->message, ==, "\"12.5\": JPY has no minor unit, write a whole number like 12");
}

static void
test_amount_kwd_has_three_decimals (void)
{
  g_autofree char *s = tally_amount_format (1250, "KWD");
  g_autofree char *small = tally_amount_format (5, "KWD");
  g_autofree char *max = tally_amount_format (TALLY_AMOUNT_MAX, "KWD");
  g_assert_cmpstr (s, ==, "1.250 KWD");
  g_assert_cmpstr (small, ==, "0.005 KWD");
  g_assert_cmpstr (max, ==, "9007199254740.992 KWD");

  static const struct
  {
    const char *text;
    gint64 value;
  } cases[] = { { "1.250", 1250 }, { "1.25", 1250 }, { "1.2", 1200 },
                { "1", 1000 },     { "0.001", 1 },   { "9007199254740.992", TALLY_AMOUNT_MAX } };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gint64 out = 0;
    g_test_message ("\"%s\"", cases[i].text);
    g_assert_true (tally_amount_parse (cases[i].text, "KWD", &out, &error));
    g_assert_no_error (error);
    g_assert_cmpint (out, ==, cases[i].value);
  }

  static const char *const refused[] = { "1.2345", "0.000", "9007199254740.993", "9007199254741" };
  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++) {
    g_autoptr (GError) e = NULL;
    gint64 out = 77;
    g_test_message ("\"%s\"", refused[i]);
    g_assert_false (tally_amount_parse (refused[i], "KWD", &out, &e));
    g_assert_error (e, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
    g_assert_cmpint (out, ==, 77);
  }
  g_autoptr (GError) e = NULL;
  gint64 out;
  g_assert_false (tally_amount_parse ("1.2345", "KWD", &out, &e));
  g_assert_cmpstr (e->message, ==, "\"1.2345\" has 4 decimals, KWD has 3");
}

static void
test_amount_exponents_follow_iso_4217 (void)
{
  static const char *const zero[] = { "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
                                      "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF" };
  static const char *const three[] = { "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND" };
  static const char *const four[] = { "CLF", "UYW" };
  /* Two: ISO codes, codes ISO 4217 does not list (3 to 8 letters), none. */
  static const char *const two[] = { "EUR", "USD", "CHF", "GBP", "ABCD", "ABCDEFGH", "JPYX", "" };

  for (gsize i = 0; i < G_N_ELEMENTS (zero); i++)
    g_assert_cmpuint (tally_currency_exponent (zero[i]), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS (three); i++)
    g_assert_cmpuint (tally_currency_exponent (three[i]), ==, 3);
  for (gsize i = 0; i < G_N_ELEMENTS (four); i++)
    g_assert_cmpuint (tally_currency_exponent (four[i]), ==, 4);
  for (gsize i = 0; i < G_N_ELEMENTS (two); i++) {
    g_test_message ("\"%s\"", two[i]);
    g_assert_cmpuint (tally_currency_exponent (two[i]), ==, 2);
  }
  g_assert_cmpuint (tally_currency_exponent (NULL), ==, 2);

  g_autofree char *clf = tally_amount_format (12345, "CLF");
  g_autofree char *eur = tally_amount_format_value (5, "EUR");
  g_assert_cmpstr (clf, ==, "1.2345 CLF");
  g_assert_cmpstr (eur, ==, "0.05");
}

static void
test_amount_format_parses_back_in_every_exponent (void)
{
  static const char *const currencies[] = { "JPY", "EUR", "KWD", "CLF", "ABCDEFGH" };
  static const gint64 values[] = { 1, 9, 10, 99, 100, 101, 1250, 123456789, TALLY_AMOUNT_MAX };

  for (gsize c = 0; c < G_N_ELEMENTS (currencies); c++)
    for (gsize i = 0; i < G_N_ELEMENTS (values); i++) {
      g_autoptr (GError) error = NULL;
      g_autofree char *s = tally_amount_format_value (values[i], currencies[c]);
      gint64 out = 0;
      g_test_message ("%s %s", s, currencies[c]);
      g_assert_true (tally_amount_parse (s, currencies[c], &out, &error));
      g_assert_no_error (error);
      g_assert_cmpint (out, ==, values[i]);
    }
}

/* Before the currency is known (tallyd's [policy] max_amount, tallyctl
 * request's first look), an amount in some currency: up to 4 decimals. */
static void
test_amount_parse_any_takes_up_to_four_decimals (void)
{
  static const char *const ok[] = { "12", "12.5", "1.250", "1.2345" };
  static const char *const bad[] = { "1.23456", "-1", "abc", "", "0", "1.", "90071992547410" };
  for (gsize i = 0; i < G_N_ELEMENTS (ok); i++)
    g_assert_true (tally_amount_parse_any (ok[i], NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_test_message ("\"%s\"", bad[i]);
    g_assert_false (tally_amount_parse_any (bad[i], &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  }
}

static void
test_currency_is_valid (void)
{
  static const char *const valid[] = { "EUR", "CHF", "ABCD", "ABCDEFGH" };
  static const char *const invalid[] = { "", "E", "EU", "ABCDEFGHI", "eur", "Eur", "EU1",
                                         "E R", "EUR ", "\xc3\x84UR", "EU-R" };

  for (gsize i = 0; i < G_N_ELEMENTS (valid); i++)
    g_assert_true (tally_currency_is_valid (valid[i]));
  for (gsize i = 0; i < G_N_ELEMENTS (invalid); i++) {
    g_test_message ("\"%s\"", invalid[i]);
    g_assert_false (tally_currency_is_valid (invalid[i]));
  }
  g_assert_false (tally_currency_is_valid (NULL));
}

/* --- hex --------------------------------------------------------------------- */

static void
test_hex_encode (void)
{
  static const guint8 data[] = { 0x00, 0x01, 0xab, 0xff, 0x7f };
  g_autofree char *hex = tally_hex_encode (data, sizeof data);
  g_autofree char *empty = tally_hex_encode (data, 0);

  g_assert_cmpstr (hex, ==, "0001abff7f");
  g_assert_cmpstr (empty, ==, "");
}

static void
test_hex_decode (void)
{
  static const guint8 expect[] = { 0x00, 0x01, 0xab, 0xff, 0x7f };
  guint8 out[sizeof expect];
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_hex_decode ("0001abff7f", out, sizeof out, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (out, sizeof out, expect, sizeof expect);

  memset (out, 0, sizeof out);
  g_assert_true (tally_hex_decode ("0001ABFF7F", out, sizeof out, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (out, sizeof out, expect, sizeof expect);
}

static void
test_hex_decode_refuses_wrong_length_or_digits (void)
{
  static const char *const cases[] = {
    "", "0001abff", "0001abff7f00", "0001abff7", "0001abff7g", "00 01abff7f", "0001abff7f ",
    "zz01abff7f",
  };
  guint8 out[5];

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_test_message ("\"%s\"", cases[i]);
    g_assert_false (tally_hex_decode (cases[i], out, sizeof out, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  }
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_hex_decode (NULL, out, sizeof out, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_hex_round_trip (void)
{
  guint8 data[64], back[64];

  for (gsize i = 0; i < sizeof data; i++)
    data[i] = (guint8) (i * 37 + 11);
  g_autofree char *hex = tally_hex_encode (data, sizeof data);
  g_assert_cmpuint (strlen (hex), ==, 2 * sizeof data);
  g_assert_true (tally_hex_decode (hex, back, sizeof back, NULL));
  g_assert_cmpmem (back, sizeof back, data, sizeof data);
}

/* --- key files --------------------------------------------------------------- */

typedef struct
{
  char *dir;
  char *path;
} TmpDir;

static void
tmp_dir_init (TmpDir *t)
{
  g_autoptr (GError) error = NULL;
  t->dir = g_dir_make_tmp ("tally-core-XXXXXX", &error);
  g_assert_no_error (error);
  t->path = g_build_filename (t->dir, "register.key", NULL);
}

static void
tmp_dir_clear (TmpDir *t)
{
  g_autofree char *tmp = g_strconcat (t->path, ".tmp", NULL);
  g_unlink (t->path);
  g_unlink (tmp);
  g_assert_cmpint (g_rmdir (t->dir), ==, 0);
  g_clear_pointer (&t->dir, g_free);
  g_clear_pointer (&t->path, g_free);
}

static void
write_file (const char *path, const void *data, gsize len, int mode)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_set_contents (path, data, (gssize) len, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (path, mode), ==, 0);
}

static void
test_key_file_write_read_round_trip (void)
{
  TmpDir t;
  Keys k;
  guint8 back[TALLY_SECRET_KEY_BYTES];
  g_autoptr (GError) error = NULL;
  struct stat st;

  tmp_dir_init (&t);
  keys_init (&k, 0x02);
  g_assert_true (tally_key_file_write (t.path, k.sk, &error));
  g_assert_no_error (error);

  g_assert_cmpint (g_stat (t.path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, TALLY_SECRET_KEY_BYTES);
  g_autofree char *tmp = g_strconcat (t.path, ".tmp", NULL);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  g_assert_true (tally_key_file_read (t.path, back, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (back, sizeof back, k.sk, sizeof k.sk);

  sodium_memzero (back, sizeof back);
  keys_clear (&k);
  tmp_dir_clear (&t);
}

static void
test_key_file_write_replaces_and_tightens_mode (void)
{
  TmpDir t;
  Keys a, b;
  guint8 back[TALLY_SECRET_KEY_BYTES];
  g_autoptr (GError) error = NULL;
  struct stat st;

  tmp_dir_init (&t);
  keys_init (&a, 0x02);
  keys_init (&b, 0x03);
  /* A stale, world-readable temporary file from an interrupted write. */
  g_autofree char *tmp = g_strconcat (t.path, ".tmp", NULL);
  write_file (tmp, "stale", 5, 0644);

  g_assert_true (tally_key_file_write (t.path, a.sk, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (t.path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  g_assert_true (tally_key_file_write (t.path, b.sk, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (t.path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_true (tally_key_file_read (t.path, back, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (back, sizeof back, b.sk, sizeof b.sk);

  sodium_memzero (back, sizeof back);
  keys_clear (&a);
  keys_clear (&b);
  tmp_dir_clear (&t);
}

static void
test_key_file_read_refuses_readable_by_others (void)
{
  static const int modes[] = { 0644, 0640, 0604, 0660, 0666, 0601 };
  TmpDir t;
  Keys k;

  tmp_dir_init (&t);
  keys_init (&k, 0x02);
  for (gsize i = 0; i < G_N_ELEMENTS (modes); i++) {
    g_autoptr (GError) error = NULL;
    guint8 back[TALLY_SECRET_KEY_BYTES];
    memset (back, 0xee, sizeof back);
    write_file (t.path, k.sk, sizeof k.sk, modes[i]);
    g_test_message ("mode %o", (unsigned) modes[i]);
    g_assert_false (tally_key_file_read (t.path, back, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
    /* Nothing of the key was read. */
    for (gsize j = 0; j < sizeof back; j++)
      g_assert_cmpuint (back[j], ==, 0xee);
  }
  keys_clear (&k);
  tmp_dir_clear (&t);
}

static void
test_key_file_read_refuses_wrong_size (void)
{
  static const gsize sizes[] = { 0, 1, TALLY_SECRET_KEY_BYTES - 1, TALLY_SECRET_KEY_BYTES + 1,
                                 2 * TALLY_SECRET_KEY_BYTES };
  guint8 data[2 * TALLY_SECRET_KEY_BYTES];
  TmpDir t;

  memset (data, 0x42, sizeof data);
  tmp_dir_init (&t);
  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autoptr (GError) error = NULL;
    guint8 back[TALLY_SECRET_KEY_BYTES];
    write_file (t.path, data, sizes[i], 0600);
    g_test_message ("%zu bytes", sizes[i]);
    g_assert_false (tally_key_file_read (t.path, back, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
    /* A partial read does not leave key material behind. */
    for (gsize j = 0; j < sizeof back; j++)
      g_assert_cmpuint (back[j], ==, 0);
  }
  tmp_dir_clear (&t);
}

/* A register or issuer key file is seed || public key; one whose public
 * half belongs to another key would sign with one key and claim another. */
static void
test_key_file_read_refuses_mismatched_halves (void)
{
  TmpDir t;
  Keys a, b;
  guint8 mixed[TALLY_SECRET_KEY_BYTES];
  g_autoptr (GError) error = NULL;

  tmp_dir_init (&t);
  keys_init (&a, 0x03);
  keys_init (&b, 0x04);
  memcpy (mixed, a.sk, crypto_sign_SEEDBYTES);
  memcpy (mixed + crypto_sign_SEEDBYTES, b.pk, TALLY_PUBLIC_KEY_BYTES);
  write_file (t.path, mixed, sizeof mixed, 0600);
  guint8 back[TALLY_SECRET_KEY_BYTES];
  g_assert_false (tally_key_file_read (t.path, back, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "corrupt"));
  /* Neither half is left behind. */
  for (gsize j = 0; j < sizeof back; j++)
    g_assert_cmpuint (back[j], ==, 0);
  sodium_memzero (mixed, sizeof mixed);
  keys_clear (&a);
  keys_clear (&b);
  tmp_dir_clear (&t);
}

static void
test_key_file_read_missing_is_not_found (void)
{
  TmpDir t;
  guint8 back[TALLY_SECRET_KEY_BYTES];
  g_autoptr (GError) error = NULL;

  tmp_dir_init (&t);
  g_assert_false (tally_key_file_read (t.path, back, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  tmp_dir_clear (&t);
}

static void
test_key_file_write_refuses_missing_directory (void)
{
  TmpDir t;
  Keys k;
  g_autoptr (GError) error = NULL;

  tmp_dir_init (&t);
  keys_init (&k, 0x02);
  g_autofree char *path = g_build_filename (t.dir, "missing", "register.key", NULL);
  g_assert_false (tally_key_file_write (path, k.sk, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  keys_clear (&k);
  tmp_dir_clear (&t);
}

/* --- errors ------------------------------------------------------------------ */

static void
test_error_every_code_has_a_distinct_name (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint code = 1; code <= TALLY_ERROR_LAST; code++) {
    const char *name = tally_error_to_string ((TallyError) code);
    g_test_message ("code %u", code);
    g_assert_nonnull (name);
    g_assert_cmpuint (strlen (name), >, 0);
    g_assert_false (g_hash_table_contains (seen, name));
    g_hash_table_add (seen, (gpointer) name);
  }
  g_assert_cmpuint (g_hash_table_size (seen), ==, TALLY_ERROR_LAST);
  g_assert_null (tally_error_to_string ((TallyError) 0));
  g_assert_null (tally_error_to_string ((TallyError) (TALLY_ERROR_LAST + 1)));
}

static void
test_error_from_wire_maps_unknown_to_failed (void)
{
  for (guint32 code = 1; code <= TALLY_ERROR_LAST; code++)
    g_assert_cmpint (tally_error_from_wire (code), ==, (gint) code);
  g_assert_cmpint (tally_error_from_wire (0), ==, TALLY_ERROR_FAILED);
  g_assert_cmpint (tally_error_from_wire (TALLY_ERROR_LAST + 1), ==, TALLY_ERROR_FAILED);
  g_assert_cmpint (tally_error_from_wire (1000), ==, TALLY_ERROR_FAILED);
  g_assert_cmpint (tally_error_from_wire (G_MAXUINT32), ==, TALLY_ERROR_FAILED);
}

static void
test_error_code_of_foreign_error_is_failed (void)
{
  g_autoptr (GError) ours = g_error_new (TALLY_ERROR, TALLY_ERROR_REVOKED, "revoked");
  g_autoptr (GError) io = g_error_new (G_FILE_ERROR, G_FILE_ERROR_NOENT, "missing");
  g_autoptr (GError) odd = g_error_new (TALLY_ERROR, 9999, "odd");

  g_assert_cmpint (tally_error_code (ours), ==, TALLY_ERROR_REVOKED);
  g_assert_cmpint (tally_error_code (io), ==, TALLY_ERROR_FAILED);
  g_assert_cmpint (tally_error_code (odd), ==, TALLY_ERROR_FAILED);
  g_assert_cmpint (tally_error_code (NULL), ==, TALLY_ERROR_FAILED);
}

static void
test_check_bytes (void)
{
  guint8 buf[TALLY_ID_BYTES] = { 0 };
  ProtobufCBinaryData field;
  g_autoptr (GError) error = NULL;

  set_bytes (&field, buf, sizeof buf);
  g_assert_true (tally_check_bytes (&field, TALLY_ID_BYTES, "id", &error));
  g_assert_no_error (error);
  set_bytes (&field, buf, sizeof buf - 1);
  g_assert_false (tally_check_bytes (&field, TALLY_ID_BYTES, "id", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_clear_error (&error);
  set_bytes (&field, NULL, 0);
  g_assert_false (tally_check_bytes (&field, TALLY_ID_BYTES, "id", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
}

static void
test_json_string_escapes_what_json_requires (void)
{
  g_autoptr (GString) out = g_string_new (NULL);
  tally_json_append_string (out, "a\"b\\c\n\t\x01\x7f caf\xc3\xa9");
  g_assert_cmpstr (out->str, ==, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f caf\xc3\xa9\"");
}

static void
test_text_check_refuses_bad_text (void)
{
  static const struct
  {
    const char *text;
    gboolean ok;
  } cases[] = {
    { "", TRUE },
    { "coffee", TRUE },
    { "caf\xc3\xa9 \xe2\x82\xac", TRUE }, /* café € */
    { "\xff\xfe\x41", FALSE },            /* not UTF-8 */
    { "\xc3", FALSE },                    /* cut sequence */
    { "\xed\xa0\x80", FALSE },            /* surrogate */
    { "a\nb", FALSE },                    /* C0 */
    { "a\x7f", FALSE },                   /* DEL */
    { "a\xc2\x85", FALSE },               /* C1 NEL */
    { "a\xe2\x80\xae"
      "b",
      FALSE }, /* U+202E */
    { "a\xe2\x81\xa6"
      "b",
      FALSE }, /* U+2066 */
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    gboolean ok = tally_text_check (cases[i].text, 64, "memo", &error);
    g_assert_cmpint (ok, ==, cases[i].ok);
    if (!ok)
      g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  }
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_text_check ("12345", 4, "memo", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
}

static void
test_text_sanitize_passes_check (void)
{
  static const char *inputs[] = { "\xff\xfe\x41", "a\nb\x1b[2J",
                                  "\xe2\x80\xae"
                                  "abc",
                                  "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac" };
  for (gsize i = 0; i < G_N_ELEMENTS (inputs); i++) {
    g_autofree char *clean = tally_text_sanitize (inputs[i], 7);
    g_assert_true (tally_text_check (clean, 7, "text", NULL));
  }
  g_autofree char *euros = tally_text_sanitize ("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 7);
  g_assert_cmpstr (euros, ==, "\xe2\x82\xac\xe2\x82\xac"); /* cut at a character */
  g_autofree char *lines = tally_text_sanitize ("a\nb", 64);
  g_assert_cmpstr (lines, ==, "a b");
}

static void
test_unpack_refuses_string_field_not_utf8 (void)
{
  /* The Error message of a peer, nested in a SessionMessage. */
  Tally__Error e = TALLY__ERROR__INIT;
  e.code = TALLY_ERROR_REJECTED;
  e.message = (char *) "no \xff";
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_ERROR;
  m.error = &e;
  g_autoptr (GBytes) wire = tally_message_pack (&m.base);
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SessionMessage) back =
    TALLY_UNPACK (Tally__SessionMessage, tally__session_message, g_bytes_get_data (wire, NULL),
                  g_bytes_get_size (wire), "session message", &error);
  g_assert_null (back);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_assert_nonnull (strstr (error->message, "UTF-8"));

  e.message = (char *) "no reason";
  g_autoptr (GBytes) good = tally_message_pack (&m.base);
  g_autoptr (Tally__SessionMessage) ok =
    TALLY_UNPACK (Tally__SessionMessage, tally__session_message, g_bytes_get_data (good, NULL),
                  g_bytes_get_size (good), "session message", NULL);
  g_assert_nonnull (ok);
  g_assert_cmpstr (ok->error->message, ==, "no reason");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

  g_test_add_func ("/core/hash/matches-blake2b-over-prefix-label-nul-input",
                   test_hash_matches_blake2b_construction);
  g_test_add_func ("/core/hash/matches-known-answer", test_hash_known_answer);
  g_test_add_func ("/core/text/refuses-invalid-utf8-control-and-bidi-characters",
                   test_text_check_refuses_bad_text);
  g_test_add_func ("/core/text/sanitized-text-passes-the-check", test_text_sanitize_passes_check);
  g_test_add_func ("/core/unpack/refuses-string-field-not-utf8",
                   test_unpack_refuses_string_field_not_utf8);
  g_test_add_func ("/core/hash/label-is-nul-terminated", test_hash_label_is_terminated);
  g_test_add_func ("/core/hash/field-helpers-use-big-endian", test_hash_field_encodings);
  g_test_add_func ("/core/hash/output-length-is-bound-into-hash",
                   test_hash_output_length_is_a_parameter);
  g_test_add_func ("/core/ids/register-id-is-labelled-hash16-of-key",
                   test_ids_register_id_is_labelled_hash16_of_key);
  g_test_add_func ("/core/ids/key-id-is-labelled-hash16-of-key",
                   test_ids_key_id_is_labelled_hash16_of_key);
  g_test_add_func ("/core/ids/differ-between-keys", test_ids_differ_between_keys);
  g_test_add_func ("/core/chain/genesis-is-labelled-hash-of-register-id",
                   test_chain_genesis_is_labelled_hash_of_register_id);
  g_test_add_func ("/core/chain/next-hashes-prev-then-entry",
                   test_chain_next_hashes_prev_then_entry);

  g_test_add_func ("/core/envelope/context-labels-match-wire-format",
                   test_envelope_context_labels);
  g_test_add_func ("/core/envelope/sign-verify-round-trip", test_envelope_round_trip);
  g_test_add_func ("/core/envelope/pack-is-byte-identical", test_envelope_pack_is_byte_identical);
  g_test_add_func ("/core/envelope/refuses-flipped-body-bit",
                   test_envelope_refuses_flipped_body_bit);
  g_test_add_func ("/core/envelope/refuses-flipped-signature-bit",
                   test_envelope_refuses_flipped_signature_bit);
  g_test_add_func ("/core/envelope/refuses-wrong-key", test_envelope_refuses_wrong_key);
  g_test_add_func ("/core/json/string-escapes-what-json-requires",
                   test_json_string_escapes_what_json_requires);
  g_test_add_func ("/core/envelope/remembered-verification-binds-key-body-and-signature",
                   test_envelope_remembered_verification_binds_key_body_and_signature);
  g_test_add_func ("/core/envelope/refuses-wrong-context", test_envelope_refuses_wrong_context);
  g_test_add_func ("/core/envelope/refuses-relabelled-context",
                   test_envelope_refuses_relabelled_context);
  g_test_add_func ("/core/envelope/refuses-unknown-context",
                   test_envelope_refuses_unknown_context);
  g_test_add_func ("/core/envelope/refuses-short-signature",
                   test_envelope_refuses_short_signature);
  g_test_add_func ("/core/envelope/refuses-missing-envelope", test_envelope_refuses_missing);
  g_test_add_func ("/core/envelope/decode-refuses-garbage", test_envelope_decode_refuses_garbage);
  g_test_add_func ("/core/envelope/body-hash-is-labelled-by-context",
                   test_envelope_body_hash_is_labelled_by_context);
  g_test_add_func ("/core/envelope/detached-signature-binds-context",
                   test_envelope_detached_signature);
  g_test_add_func ("/core/message/unpack-refuses-garbage", test_message_unpack_refuses_garbage);
  g_test_add_func ("/core/message/unpack-refuses-what-cannot-be-packed-again",
                   test_message_unpack_refuses_what_cannot_be_packed_again);
  g_test_add_func ("/core/message/unpack-keeps-unknown-fields",
                   test_message_unpack_keeps_unknown_fields);

  g_test_add_func ("/core/certificate/accepts-valid-within-window",
                   test_certificate_accepts_valid);
  g_test_add_func ("/core/certificate/refuses-wrong-issuer",
                   test_certificate_refuses_wrong_issuer);
  g_test_add_func ("/core/certificate/refuses-forged-issuer-key-id",
                   test_certificate_refuses_forged_issuer_key_id);
  g_test_add_func ("/core/certificate/refuses-expired", test_certificate_refuses_expired);
  g_test_add_func ("/core/certificate/refuses-not-yet-valid",
                   test_certificate_refuses_not_yet_valid);
  g_test_add_func ("/core/certificate/any-time-ignores-only-the-window",
                   test_certificate_any_time_ignores_window);
  g_test_add_func ("/core/certificate/refuses-id-not-matching-key",
                   test_certificate_refuses_id_not_matching_key);
  g_test_add_func ("/core/certificate/refuses-short-fields",
                   test_certificate_refuses_short_fields);
  g_test_add_func ("/core/certificate/refuses-zero-or-out-of-range-limits",
                   test_certificate_refuses_invalid_limits);
  g_test_add_func ("/core/certificate/refuses-bad-currency",
                   test_certificate_refuses_bad_currency);
  g_test_add_func ("/core/certificate/refuses-invalid-display-name",
                   test_certificate_refuses_invalid_display_name);
  g_test_add_func ("/core/certificate/accepts-display-name-or-none",
                   test_certificate_accepts_display_name_or_none);
  g_test_add_func ("/core/certificate/refuses-empty-validity-window",
                   test_certificate_refuses_empty_window);
  g_test_add_func ("/core/certificate/refuses-wrong-context",
                   test_certificate_refuses_wrong_context);
  g_test_add_func ("/core/certificate/refuses-garbage-body",
                   test_certificate_refuses_garbage_body);

  g_test_add_func ("/core/voucher/accepts-valid", test_voucher_accepts_valid);
  g_test_add_func ("/core/voucher/refuses-other-issuer", test_voucher_refuses_other_issuer);
  g_test_add_func ("/core/voucher/refuses-invalid-fields", test_voucher_refuses_invalid_fields);
  g_test_add_func ("/core/voucher/refuses-wrong-context", test_voucher_refuses_wrong_context);

  g_test_add_func ("/core/revocation/contains-listed-ids",
                   test_revocation_list_contains_listed_ids);
  g_test_add_func ("/core/revocation/contains-ignores-short-ids",
                   test_revocation_list_contains_ignores_short_ids);
  g_test_add_func ("/core/revocation/refuses-bad-lists", test_revocation_list_refuses_bad_lists);
  g_test_add_func ("/core/issuer-key-set/verifies-under-its-own-key",
                   test_issuer_key_set_verifies_under_its_own_key);
  g_test_add_func ("/core/issuer-key-set/refuses-bad-sets", test_issuer_key_set_refuses_bad_sets);

  g_test_add_func ("/core/amount/check-accepts-positive-in-range",
                   test_amount_check_accepts_positive_in_range);
  g_test_add_func ("/core/amount/check-refuses-missing", test_amount_check_refuses_missing);
  g_test_add_func ("/core/amount/check-refuses-zero-and-negative",
                   test_amount_check_refuses_zero_and_negative);
  g_test_add_func ("/core/amount/check-refuses-above-max-with-overflow",
                   test_amount_check_refuses_above_max);
  g_test_add_func ("/core/amount/check-refuses-currency-mismatch",
                   test_amount_check_refuses_currency_mismatch);
  g_test_add_func ("/core/amount/check-refuses-invalid-currency",
                   test_amount_check_refuses_invalid_currency);
  g_test_add_func ("/core/amount/add-sums-within-range", test_amount_add_sums_within_range);
  g_test_add_func ("/core/amount/add-refuses-overflow", test_amount_add_refuses_overflow);
  g_test_add_func ("/core/amount/add-refuses-negative-result",
                   test_amount_add_refuses_negative_result);
  g_test_add_func ("/core/amount/parse-accepts-up-to-two-decimals",
                   test_amount_parse_accepts_decimal);
  g_test_add_func ("/core/amount/parse-refuses-invalid-or-out-of-range",
                   test_amount_parse_refuses_invalid);
  g_test_add_func ("/core/amount/format-uses-two-minor-digits",
                   test_amount_format_two_minor_digits);
  g_test_add_func ("/core/amount/format-parses-back", test_amount_format_parses_back);
  g_test_add_func ("/core/amount/currency-is-3-to-8-upper-case-letters", test_currency_is_valid);
  g_test_add_func ("/core/amount/jpy-has-no-decimals", test_amount_jpy_has_no_decimals);
  g_test_add_func ("/core/amount/kwd-has-three-decimals", test_amount_kwd_has_three_decimals);
  g_test_add_func ("/core/amount/exponents-follow-iso-4217", test_amount_exponents_follow_iso_4217);
  g_test_add_func ("/core/amount/format-parses-back-in-every-exponent",
                   test_amount_format_parses_back_in_every_exponent);
  g_test_add_func ("/core/amount/parse-any-takes-up-to-four-decimals",
                   test_amount_parse_any_takes_up_to_four_decimals);

  g_test_add_func ("/core/hex/encode-lower-case", test_hex_encode);
  g_test_add_func ("/core/hex/decode-exact-length", test_hex_decode);
  g_test_add_func ("/core/hex/decode-refuses-wrong-length-or-digits",
                   test_hex_decode_refuses_wrong_length_or_digits);
  g_test_add_func ("/core/hex/round-trip", test_hex_round_trip);

  g_test_add_func ("/core/key-file/write-is-0600-and-reads-back",
                   test_key_file_write_read_round_trip);
  g_test_add_func ("/core/key-file/write-replaces-and-ignores-stale-temp-mode",
                   test_key_file_write_replaces_and_tightens_mode);
  g_test_add_func ("/core/key-file/read-refuses-readable-by-others",
                   test_key_file_read_refuses_readable_by_others);
  g_test_add_func ("/core/key-file/read-refuses-wrong-size",
                   test_key_file_read_refuses_wrong_size);
  g_test_add_func ("/core/key-file/read-refuses-mismatched-halves",
                   test_key_file_read_refuses_mismatched_halves);
  g_test_add_func ("/core/key-file/read-missing-is-not-found",
                   test_key_file_read_missing_is_not_found);
  g_test_add_func ("/core/key-file/write-refuses-missing-directory",
                   test_key_file_write_refuses_missing_directory);

  g_test_add_func ("/core/error/every-code-has-a-distinct-name",
                   test_error_every_code_has_a_distinct_name);
  g_test_add_func ("/core/error/from-wire-maps-unknown-codes-to-failed",
                   test_error_from_wire_maps_unknown_to_failed);
  g_test_add_func ("/core/error/code-of-foreign-error-is-failed",
                   test_error_code_of_foreign_error_is_failed);
  g_test_add_func ("/core/check-bytes/refuses-wrong-length", test_check_bytes);

  return g_test_run ();
}
