/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vectors.h"

#include <string.h>

#include "tally-frame.h"

#define LABEL_PREFIX "tally/v1/"

#define EUR "EUR"

typedef struct
{
  guint8 seed[crypto_sign_SEEDBYTES];
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 secret_key[TALLY_SECRET_KEY_BYTES];
  guint8 id[TALLY_ID_BYTES]; /* key id for the issuer, register id otherwise */
} Party;

typedef struct
{
  GPtrArray *out;
  const char *section;
} Builder;

static const VectorEnvelope envelopes[] = {
  { "issuer_key_set", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET },
  { "register_certificate", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE },
  { "load_voucher", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER },
  { "deposit_permission", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION },
  { "receipt", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT },
  { "revocation_list", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST },
  { "defund_record", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND },
  { "register_certificate_b", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE },
  { "reconciliation_bundle", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE },
  { "renewed_certificate", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE },
  { "reconciliation_result", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT },
  { "double_spend_permission_1", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION },
  { "double_spend_permission_2", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION },
  { "fraud_proof_counter_reused", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF },
  { "fraud_proof_chain_fork", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF },
  { "payee_bundle", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE },
  { "fraud_proof_late_receipt", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF },
  { "fraud_proof_overdrawn", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF },
  { "over_limit_permission", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION },
  { "fraud_proof_over_limit", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF },
};

static const char *const hash_cases[] = { "empty", "abc", "memo", "register-id", "fields", NULL };

const VectorEnvelope *
vectors_envelopes (gsize *n_envelopes)
{
  *n_envelopes = G_N_ELEMENTS (envelopes);
  return envelopes;
}

const char *const *
vectors_hash_cases (void)
{
  return hash_cases;
}

static void
add (Builder *b, const char *name, const void *data, gsize len)
{
  g_ptr_array_add (b->out, vector_new (b->section, name, data, len));
}

static void
add_bytes (Builder *b, const char *name, GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  add (b, name, data, len);
}

static void
party_init (Party *p, guint8 seed_byte, gboolean issuer)
{
  memset (p->seed, seed_byte, sizeof p->seed);
  crypto_sign_seed_keypair (p->public_key, p->secret_key, p->seed);
  if (issuer)
    tally_key_id_from_key (p->public_key, p->id);
  else
    tally_register_id_from_key (p->public_key, p->id);
}

static void
party_clear (Party *p)
{
  sodium_memzero (p, sizeof *p);
}

static void
add_party (Builder *b, const char *who, const Party *p, gboolean issuer)
{
  g_autofree char *seed = g_strconcat (who, ".seed", NULL);
  g_autofree char *pk = g_strconcat (who, ".public_key", NULL);
  g_autofree char *sk = g_strconcat (who, ".secret_key", NULL);
  g_autofree char *id = g_strconcat (who, issuer ? ".key_id" : ".register_id", NULL);

  add (b, seed, p->seed, sizeof p->seed);
  add (b, pk, p->public_key, sizeof p->public_key);
  add (b, sk, p->secret_key, sizeof p->secret_key);
  add (b, id, p->id, sizeof p->id);
}

/* "tally/v1/" || label || 0x00 || data, spelled out independently of the
 * core so the vectors document the construction. */
static GBytes *
labelled (const char *label, const guint8 *data, gsize len)
{
  GByteArray *m = g_byte_array_new ();
  g_byte_array_append (m, (const guint8 *) LABEL_PREFIX, strlen (LABEL_PREFIX));
  g_byte_array_append (m, (const guint8 *) label, strlen (label) + 1);
  if (len > 0)
    g_byte_array_append (m, data, len);
  return g_byte_array_free_to_bytes (m);
}

static void
add_hash_case (Builder *b,
               const char *name,
               const char *label,
               const guint8 *input,
               gsize input_len,
               gsize out_len)
{
  g_autofree char *n_label = g_strdup_printf ("hash.%s.label", name);
  g_autofree char *n_input = g_strdup_printf ("hash.%s.input", name);
  g_autofree char *n_pre = g_strdup_printf ("hash.%s.preimage", name);
  g_autofree char *n_out = g_strdup_printf ("hash.%s.output", name);
  g_autoptr (GBytes) preimage = labelled (label, input, input_len);
  guint8 out[crypto_generichash_BYTES_MAX];
  TallyHash h;

  tally_hash_init (&h, label, out_len);
  tally_hash_update (&h, input, input_len);
  tally_hash_final (&h, out);

  add (b, n_label, label, strlen (label));
  add (b, n_input, input, input_len);
  add_bytes (b, n_pre, preimage);
  add (b, n_out, out, out_len);
}

/* The hash section, including one input built with the field helpers. */
static void
build_hashes (Builder *b, const Party *reg_a)
{
  static const char abc[] = "abc";
  static const char memo[] = "coffee";

  b->section = "hash";
  add_hash_case (b, "empty", "example", NULL, 0, TALLY_HASH_BYTES);
  add_hash_case (b, "abc", "example", (const guint8 *) abc, strlen (abc), TALLY_HASH_BYTES);
  add_hash_case (b, "memo", "memo", (const guint8 *) memo, strlen (memo), TALLY_HASH_BYTES);
  add_hash_case (b, "register-id", "register-id", reg_a->public_key, TALLY_PUBLIC_KEY_BYTES,
                 TALLY_ID_BYTES);

  /* tally_hash_update_u64 (VECTORS_TIME), tally_hash_update_prefixed ("abc"). */
  guint8 fields[8 + 4 + 3];
  guint64 t = GUINT64_TO_BE ((guint64) VECTORS_TIME);
  guint32 n = GUINT32_TO_BE ((guint32) strlen (abc));
  memcpy (fields, &t, 8);
  memcpy (fields + 8, &n, 4);
  memcpy (fields + 12, abc, 3);

  g_autoptr (GBytes) preimage = labelled ("example-fields", fields, sizeof fields);
  guint8 out[TALLY_HASH_BYTES];
  TallyHash h;
  tally_hash_init (&h, "example-fields", TALLY_HASH_BYTES);
  tally_hash_update_u64 (&h, VECTORS_TIME);
  tally_hash_update_prefixed (&h, abc, strlen (abc));
  tally_hash_final (&h, out);

  add (b, "hash.fields.label", "example-fields", strlen ("example-fields"));
  add (b, "hash.fields.input", fields, sizeof fields);
  add_bytes (b, "hash.fields.preimage", preimage);
  add (b, "hash.fields.output", out, sizeof out);
}

/* Packs @msg, signs it under @ctx with @signer and records every stage.
 * Returns the decoded envelope. */
static Tally__SignedEnvelope *
add_signed (Builder *b,
            const char *name,
            Tally__SignatureContext ctx,
            const ProtobufCMessage *msg,
            const Party *signer)
{
  g_autofree char *n_body = g_strconcat (name, ".body", NULL);
  g_autofree char *n_msg = g_strconcat (name, ".signed_message", NULL);
  g_autofree char *n_pk = g_strconcat (name, ".public_key", NULL);
  g_autofree char *n_sig = g_strconcat (name, ".signature", NULL);
  g_autofree char *n_env = g_strconcat (name, ".envelope", NULL);
  g_autofree char *n_hash = g_strconcat (name, ".body_hash", NULL);
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize body_len;
  const guint8 *body_data = g_bytes_get_data (body, &body_len);
  g_autoptr (GBytes) signed_message = labelled (tally_context_label (ctx), body_data, body_len);
  g_autoptr (GBytes) packed = tally_envelope_sign (ctx, body_data, body_len, signer->secret_key);
  gsize env_len;
  const guint8 *env_data = g_bytes_get_data (packed, &env_len);
  Tally__SignedEnvelope *env = tally_envelope_decode (env_data, env_len, NULL);
  guint8 body_hash[TALLY_HASH_BYTES];

  g_assert_nonnull (env);
  tally_envelope_body_hash (env, body_hash);

  b->section = name;
  add_bytes (b, n_body, body);
  add_bytes (b, n_msg, signed_message);
  add (b, n_pk, signer->public_key, sizeof signer->public_key);
  add (b, n_sig, env->signature.data, env->signature.len);
  add_bytes (b, n_env, packed);
  add (b, n_hash, body_hash, sizeof body_hash);
  return env;
}

static void
set_bytes (ProtobufCBinaryData *field, const guint8 *data, gsize len)
{
  field->data = (guint8 *) data;
  field->len = len;
}

/* The signed objects of the scenario that later vectors carry. */
typedef struct
{
  const Party *issuer, *reg_a, *reg_b;
  Tally__SignedEnvelope *cert_a, *cert_b, *voucher, *permission, *receipt, *defund, *list;
  const guint8 *head2;
} Scenario;

static Tally__Limits
scenario_limits (void)
{
  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = 5000;
  limits.balance_cap = 20000;
  limits.max_offline_payments = 10;
  limits.max_offline_seconds = 604800;
  return limits;
}

static Tally__SignedEnvelope *
add_certificate (Builder *b,
                 const char *name,
                 const Party *issuer,
                 const Party *reg,
                 guint64 not_before,
                 guint64 serial)
{
  Tally__Limits limits = scenario_limits ();
  Tally__RegisterCertificate cert = TALLY__REGISTER_CERTIFICATE__INIT;
  set_bytes (&cert.register_public_key, reg->public_key, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&cert.register_id, reg->id, TALLY_ID_BYTES);
  cert.currency = (char *) EUR;
  cert.limits = &limits;
  cert.not_before = not_before;
  cert.not_after = not_before + 31536000;
  set_bytes (&cert.issuer_key_id, issuer->id, TALLY_ID_BYTES);
  cert.serial = serial;
  return add_signed (b, name, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                     &cert.base, issuer);
}

/* Register A's bundle after its payment and defund, and the issuer's
 * answer. */
/* Returns A's bundle, which an OVERDRAWN proof quotes. */
static Tally__SignedEnvelope *
build_reconciliation (Builder *b, const Scenario *sc)
{
  /* Register A, after its payment and its defund, exports its bundle. */
  Tally__SpentEntry paid = TALLY__SPENT_ENTRY__INIT;
  paid.permission = sc->permission;
  paid.receipt = sc->receipt;
  Tally__SpentEntry defunded = TALLY__SPENT_ENTRY__INIT;
  defunded.permission = sc->defund;
  Tally__SpentEntry *spent[] = { &paid, &defunded };
  Tally__SignedEnvelope *vouchers[] = { sc->voucher };
  Tally__ReconciliationBundle bundle = TALLY__RECONCILIATION_BUNDLE__INIT;
  set_bytes (&bundle.register_id, sc->reg_a->id, TALLY_ID_BYTES);
  bundle.certificate = sc->cert_a;
  bundle.counter = 2;
  set_bytes (&bundle.chain_head, sc->head2, TALLY_HASH_BYTES);
  bundle.balance = 0;
  bundle.n_spent = G_N_ELEMENTS (spent);
  bundle.spent = spent;
  bundle.n_vouchers = G_N_ELEMENTS (vouchers);
  bundle.vouchers = vouchers;
  bundle.created_at = VECTORS_TIME + 86460;
  bundle.revocation_serial = 2;
  g_autoptr (Tally__SignedEnvelope) bundle_env = add_signed (
    b, "reconciliation_bundle", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
    &bundle.base, sc->reg_a);
  guint8 bundle_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (bundle_env, bundle_hash);

  /* The issuer books it and answers, renewing A's certificate. */
  g_autoptr (Tally__SignedEnvelope) renewed =
    add_certificate (b, "renewed_certificate", sc->issuer, sc->reg_a, VECTORS_TIME + 86520, 2);
  Tally__ReconciliationResult result = TALLY__RECONCILIATION_RESULT__INIT;
  set_bytes (&result.register_id, sc->reg_a->id, TALLY_ID_BYTES);
  result.settled_counter = 2;
  result.revocation_list = sc->list;
  result.renewed_certificate = renewed;
  result.reconciled_at = VECTORS_TIME + 86520;
  set_bytes (&result.bundle_hash, bundle_hash, sizeof bundle_hash);
  result.settled_voucher_sequence = 1;
  g_autoptr (Tally__SignedEnvelope) result_env = add_signed (
    b, "reconciliation_result", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
    &result.base, sc->issuer);
  return g_steal_pointer (&bundle_env);
}

static Tally__SignedEnvelope *
add_fraud_proof (Builder *b,
                 const char *name,
                 const Party *issuer,
                 const Party *accused,
                 Tally__FraudKind kind,
                 Tally__SignedEnvelope *first,
                 Tally__SignedEnvelope *second,
                 guint64 detected_at,
                 gint64 deficit)
{
  Tally__FraudProof fp = TALLY__FRAUD_PROOF__INIT;
  fp.deficit = deficit;
  set_bytes (&fp.register_id, accused->id, TALLY_ID_BYTES);
  fp.kind = kind;
  fp.first = first;
  fp.second = second;
  fp.detected_at = detected_at;
  return add_signed (b, name, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, &fp.base,
                     issuer);
}

/* A restored from a copy made before its first payment and paid again:
 * counter 1 a second time, then counter 2 on that other chain. */
static void
build_double_spend (Builder *b, const Scenario *sc, const guint8 genesis[TALLY_HASH_BYTES])
{
  guint8 nonce1[TALLY_NONCE_BYTES], nonce2[TALLY_NONCE_BYTES], memo_hash[TALLY_HASH_BYTES];
  guint8 entry[TALLY_HASH_BYTES], head[TALLY_HASH_BYTES];
  for (gsize i = 0; i < TALLY_NONCE_BYTES; i++) {
    nonce1[i] = (guint8) (0x20 + i);
    nonce2[i] = (guint8) (0x40 + i);
  }
  tally_hash ("memo", "", 0, memo_hash);

  Tally__Amount amount1 = TALLY__AMOUNT__INIT;
  amount1.currency = (char *) EUR;
  amount1.value = 2000;
  Tally__DepositPermission p1 = TALLY__DEPOSIT_PERMISSION__INIT;
  set_bytes (&p1.payer_register_id, sc->reg_a->id, TALLY_ID_BYTES);
  set_bytes (&p1.payee_register_id, sc->reg_b->id, TALLY_ID_BYTES);
  set_bytes (&p1.payee_nonce, nonce1, sizeof nonce1);
  p1.amount = &amount1;
  p1.counter = 1;
  set_bytes (&p1.chain_prev, genesis, TALLY_HASH_BYTES);
  p1.created_at = VECTORS_TIME + 7300;
  set_bytes (&p1.memo_hash, memo_hash, sizeof memo_hash);
  p1.expires_at = VECTORS_TIME + 10800;
  g_autoptr (Tally__SignedEnvelope) env1 = add_signed (
    b, "double_spend_permission_1", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
    &p1.base, sc->reg_a);
  tally_envelope_body_hash (env1, entry);
  tally_chain_next (genesis, entry, head);

  Tally__Amount amount2 = TALLY__AMOUNT__INIT;
  amount2.currency = (char *) EUR;
  amount2.value = 500;
  Tally__DepositPermission p2 = p1;
  set_bytes (&p2.payee_nonce, nonce2, sizeof nonce2);
  p2.amount = &amount2;
  p2.counter = 2;
  set_bytes (&p2.chain_prev, head, sizeof head);
  p2.created_at = VECTORS_TIME + 7400;
  p2.expires_at = VECTORS_TIME + 10900;
  g_autoptr (Tally__SignedEnvelope) env2 = add_signed (
    b, "double_spend_permission_2", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
    &p2.base, sc->reg_a);

  g_autoptr (Tally__SignedEnvelope) reused = add_fraud_proof (
    b, "fraud_proof_counter_reused", sc->issuer, sc->reg_a,
    TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED, sc->permission, env1, VECTORS_TIME + 86580, 0);
  g_autoptr (Tally__SignedEnvelope) fork = add_fraud_proof (
    b, "fraud_proof_chain_fork", sc->issuer, sc->reg_a, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK,
    sc->permission, env2, VECTORS_TIME + 86580, 0);
}

/* B restored from a copy made before it credited the permission, exporting
 * at the permission's expiry a bundle that does not list it; the receipt
 * it signed before then proves the rollback. */
static void
build_late_receipt (Builder *b, const Scenario *sc)
{
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (sc->reg_b->id, genesis);
  Tally__ReconciliationBundle bundle = TALLY__RECONCILIATION_BUNDLE__INIT;
  set_bytes (&bundle.register_id, sc->reg_b->id, TALLY_ID_BYTES);
  bundle.certificate = sc->cert_b;
  set_bytes (&bundle.chain_head, genesis, sizeof genesis);
  bundle.created_at = VECTORS_TIME + 7200;
  g_autoptr (Tally__SignedEnvelope) bundle_env = add_signed (
    b, "payee_bundle", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
    &bundle.base, sc->reg_b);
  g_autoptr (Tally__SignedEnvelope) proof = add_fraud_proof (
    b, "fraud_proof_late_receipt", sc->issuer, sc->reg_b,
    TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT, sc->receipt, bundle_env, VECTORS_TIME + 86520, 0);
}

/* The proofs of protocol.md 5.5, as the issuer writes them: OVERDRAWN, had
 * the evidence behind A's bundle fallen 12.50 short of what it spent, and
 * OVER_LIMIT for a permission of 60.00 signed under a certificate that
 * allows 50.00, reported by A before B's receipt. */
static void
build_evidence_proofs (Builder *b, const Scenario *sc, Tally__SignedEnvelope *a_bundle)
{
  g_autoptr (Tally__SignedEnvelope) overdrawn = add_fraud_proof (
    b, "fraud_proof_overdrawn", sc->issuer, sc->reg_a, TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN,
    a_bundle, sc->defund, VECTORS_TIME + 86520, 1250);

  guint8 nonce[TALLY_NONCE_BYTES], memo_hash[TALLY_HASH_BYTES];
  for (gsize i = 0; i < TALLY_NONCE_BYTES; i++)
    nonce[i] = (guint8) (0x60 + i);
  tally_hash ("memo", "", 0, memo_hash);
  Tally__Amount amount = TALLY__AMOUNT__INIT;
  amount.currency = (char *) EUR;
  amount.value = 6000;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  set_bytes (&p.payer_register_id, sc->reg_a->id, TALLY_ID_BYTES);
  set_bytes (&p.payee_register_id, sc->reg_b->id, TALLY_ID_BYTES);
  set_bytes (&p.payee_nonce, nonce, sizeof nonce);
  p.amount = &amount;
  p.counter = 3;
  set_bytes (&p.chain_prev, sc->head2, TALLY_HASH_BYTES);
  p.created_at = VECTORS_TIME + 86600;
  set_bytes (&p.memo_hash, memo_hash, sizeof memo_hash);
  p.expires_at = VECTORS_TIME + 90200;
  g_autoptr (Tally__SignedEnvelope) permission = add_signed (
    b, "over_limit_permission", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
    &p.base, sc->reg_a);
  g_autoptr (Tally__SignedEnvelope) over = add_fraud_proof (
    b, "fraud_proof_over_limit", sc->issuer, sc->reg_a, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT,
    permission, NULL, VECTORS_TIME + 90300, 0);
}

/* Handshake bodies that carry what the first payment did not: a gossiped
 * revocation list, a certificate named by its hash, a permission delivered
 * again. */
/* A Hello naming the payee request with tag 0a1b2c3d (protocol.md 4.2),
 * with its commitment, and the T1 it starts: the tag is in the
 * transcript both handshake signatures cover. */
static void
build_request_tag (Builder *b, const guint8 e_pk[static crypto_kx_PUBLICKEYBYTES])
{
  static const guint8 tag[] = { 0x0a, 0x1b, 0x2c, 0x3d };
  guint8 n_a[TALLY_NONCE_BYTES], commitment[TALLY_HASH_BYTES];
  guint8 t0[TALLY_HASH_BYTES], t1[TALLY_HASH_BYTES];
  TallyHash h;

  memset (n_a, 0x05, sizeof n_a);
  tally_hash_init (&h, "handshake-commit", TALLY_HASH_BYTES);
  tally_hash_update (&h, e_pk, crypto_kx_PUBLICKEYBYTES);
  tally_hash_update (&h, n_a, sizeof n_a);
  tally_hash_final (&h, commitment);

  Tally__Hello hello = TALLY__HELLO__INIT;
  hello.version = TALLY_PROTOCOL_VERSION;
  set_bytes (&hello.ephemeral_public_key, e_pk, crypto_kx_PUBLICKEYBYTES);
  hello.revocation_serial = 1;
  set_bytes (&hello.commitment, commitment, sizeof commitment);
  set_bytes (&hello.request_tag, tag, sizeof tag);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  m.hello = &hello;
  g_autoptr (GBytes) hello_bytes = tally_message_pack (&m.base);

  tally_hash ("transcript-init", NULL, 0, t0);
  tally_hash_init (&h, "transcript", TALLY_HASH_BYTES);
  tally_hash_update (&h, t0, sizeof t0);
  tally_hash_update_prefixed (&h, g_bytes_get_data (hello_bytes, NULL),
                              g_bytes_get_size (hello_bytes));
  tally_hash_final (&h, t1);

  b->section = "request_tag";
  add (b, "request_tag.tag", tag, sizeof tag);
  add (b, "request_tag.commit_nonce", n_a, sizeof n_a);
  add_bytes (b, "request_tag.hello", hello_bytes);
  add (b, "request_tag.t1", t1, sizeof t1);
}

static void
build_handshake_bodies (Builder *b, const Scenario *sc, const Tally__PaymentRequest *request)
{
  guint8 seed[crypto_kx_SEEDBYTES], e_pk[crypto_kx_PUBLICKEYBYTES], e_sk[crypto_kx_SECRETKEYBYTES];
  memset (seed, 0x04, sizeof seed);
  crypto_kx_seed_keypair (e_pk, e_sk, seed);
  sodium_memzero (e_sk, sizeof e_sk);

  /* The payer holds list 1, the payee list 2, which it gossips. */
  Tally__Hello hello = TALLY__HELLO__INIT;
  hello.version = TALLY_PROTOCOL_VERSION;
  set_bytes (&hello.ephemeral_public_key, e_pk, sizeof e_pk);
  hello.revocation_serial = 1;
  Tally__SessionMessage hello_msg = TALLY__SESSION_MESSAGE__INIT;
  hello_msg.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  hello_msg.hello = &hello;
  g_autoptr (GBytes) hello_bytes = tally_message_pack (&hello_msg.base);

  Tally__OfferBody offer = TALLY__OFFER_BODY__INIT;
  offer.payee_certificate = sc->cert_b;
  offer.request = (Tally__PaymentRequest *) request;
  offer.revocation_serial = 2;
  offer.revocation_list = sc->list;
  offer.max_message = TALLY_FRAME_DEFAULT_MAX_MESSAGE;
  g_autoptr (GBytes) offer_bytes = tally_message_pack (&offer.base);

  b->section = "gossip";
  add_bytes (b, "gossip.hello", hello_bytes);
  add_bytes (b, "gossip.offer_body", offer_bytes);

  build_request_tag (b, e_pk);

  /* The payee holds A's certificate: its hash stands in for it. */
  guint8 cert_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (sc->cert_a, cert_hash);
  Tally__PayBody cached = TALLY__PAY_BODY__INIT;
  cached.permission = sc->permission;
  set_bytes (&cached.payer_certificate_hash, cert_hash, sizeof cert_hash);
  g_autoptr (GBytes) cached_bytes = tally_message_pack (&cached.base);
  b->section = "certificate_hash";
  add (b, "certificate_hash.hash", cert_hash, sizeof cert_hash);
  add_bytes (b, "certificate_hash.pay_body", cached_bytes);

  /* The permission that lost its receipt, in a later session. */
  Tally__PayBody again = TALLY__PAY_BODY__INIT;
  again.payer_certificate = sc->cert_a;
  again.permission = sc->permission;
  again.redelivery = TRUE;
  g_autoptr (GBytes) again_bytes = tally_message_pack (&again.base);
  b->section = "redelivery";
  add_bytes (b, "redelivery.pay_body", again_bytes);
}

/* Comparison code of the transcript H("example", BE64(i)) for the first
 * i whose code starts with a zero. */
static void
build_comparison (Builder *b)
{
  guint8 t2[TALLY_HASH_BYTES], h[TALLY_HASH_BYTES];
  char code[7];
  guint64 be;
  for (guint64 i = 0;; i++) {
    be = GUINT64_TO_BE (i);
    tally_hash ("example", &be, sizeof be, t2);
    tally_hash ("comparison-code", t2, sizeof t2, h);
    guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
    g_snprintf (code, sizeof code, "%06u", v % 1000000u);
    if (code[0] == '0')
      break;
  }
  b->section = "comparison";
  add (b, "comparison.index", &be, sizeof be);
  add (b, "comparison.t2", t2, sizeof t2);
  add (b, "comparison.hash", h, sizeof h);
  add (b, "comparison.code", code, 6);
}

/* An Error, and how the framing splits it at the smallest MTU. */
static void
build_error_and_frames (Builder *b)
{
  Tally__Error err = TALLY__ERROR__INIT;
  err.code = TALLY_ERROR_REJECTED;
  err.message = (char *) "the payer's agent declined the offer";
  Tally__SessionMessage msg = TALLY__SESSION_MESSAGE__INIT;
  msg.msg_case = TALLY__SESSION_MESSAGE__MSG_ERROR;
  msg.error = &err;
  g_autoptr (GBytes) packed = tally_message_pack (&msg.base);
  b->section = "error";
  add_bytes (b, "error.session_message", packed);

  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (GPtrArray) fragments =
    tally_frame_split (data, len, TALLY_FRAME_MIN_MTU, TALLY_FRAME_DEFAULT_MAX_MESSAGE, NULL);
  g_assert_nonnull (fragments);
  const guint8 mtu[2] = { 0, TALLY_FRAME_MIN_MTU };
  GByteArray *stream = g_byte_array_new ();
  b->section = "frame";
  add (b, "frame.mtu", mtu, sizeof mtu);
  add_bytes (b, "frame.message", packed);
  for (guint i = 0; i < fragments->len; i++) {
    g_autofree char *name = g_strdup_printf ("frame.fragment_%u", i);
    gsize flen;
    const guint8 *f = g_bytes_get_data (fragments->pdata[i], &flen);
    const guint8 prefix[2] = { (guint8) (flen >> 8), (guint8) flen };
    add (b, name, f, flen);
    g_byte_array_append (stream, prefix, sizeof prefix);
    g_byte_array_append (stream, f, flen);
  }
  g_autoptr (GBytes) stream_bytes = g_byte_array_free_to_bytes (stream);
  add_bytes (b, "frame.stream", stream_bytes);
}

/* Request URIs (docs/protocol.md §8): one per transport, the name in
 * UTF-8 and left out, and the amount at its maximum. */
static void
build_request_uris (Builder *b)
{
  static const struct
  {
    const char *name, *address, *currency, *display_name;
    gint64 amount;
  } cases[] = {
    { "request_uri.ble", "ble:0a1b2c3d", "EUR", "Bob's Bakery", 1250 },
    { "request_uri.unix", "unix:/run/tally/bob.sock", "EUR", "", 500 },
    { "request_uri.tcp", "tcp:[::1]:7000", "JPY", "Caf\u00e9 Lumen", TALLY_AMOUNT_MAX },
  };
  b->section = "request_uri";
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *uri =
      tally_request_uri_format (cases[i].address, cases[i].amount, cases[i].currency,
                                VECTORS_TIME + 7200, cases[i].display_name, NULL);
    g_assert_nonnull (uri);
    add (b, cases[i].name, uri, strlen (uri));
  }
  /* One of several requests open on a stream address, named by its tag. */
  g_autofree char *tagged = tally_request_uri_format_tagged (
    "unix:/run/tally/bob.sock", "0a1b2c3d", 500, "EUR", VECTORS_TIME + 7200, "", NULL);
  g_assert_nonnull (tagged);
  add (b, "request_uri.unix_tagged", tagged, strlen (tagged));
}

GPtrArray *
vectors_build (void)
{
  Builder b = { vector_list_new (), NULL };
  Party issuer, reg_a, reg_b;
  guint8 genesis[TALLY_HASH_BYTES], head1[TALLY_HASH_BYTES], head2[TALLY_HASH_BYTES];
  guint8 permission_hash[TALLY_HASH_BYTES], defund_hash[TALLY_HASH_BYTES];
  guint8 memo_hash[TALLY_HASH_BYTES];
  guint8 nonce[TALLY_NONCE_BYTES];
  guint8 revoked[2][TALLY_ID_BYTES];
  static const char memo[] = "coffee";

  party_init (&issuer, VECTORS_ISSUER_SEED, TRUE);
  party_init (&reg_a, VECTORS_REGISTER_A_SEED, FALSE);
  party_init (&reg_b, VECTORS_REGISTER_B_SEED, FALSE);
  for (gsize i = 0; i < sizeof nonce; i++)
    nonce[i] = (guint8) i;
  for (gsize i = 0; i < TALLY_ID_BYTES; i++) {
    revoked[0][i] = (guint8) (0xa0 + i);
    revoked[1][i] = (guint8) (0xb0 + i);
  }
  tally_hash ("memo", memo, strlen (memo), memo_hash);

  b.section = "keys";
  add_party (&b, "issuer", &issuer, TRUE);
  add_party (&b, "register_a", &reg_a, FALSE);
  add_party (&b, "register_b", &reg_b, FALSE);

  build_hashes (&b, &reg_a);

  /* Issuer key set, self-signed. */
  Tally__IssuerKeySet iks = TALLY__ISSUER_KEY_SET__INIT;
  set_bytes (&iks.public_key, issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&iks.key_id, issuer.id, TALLY_ID_BYTES);
  iks.currency = (char *) EUR;
  iks.name = (char *) "Tally Test Issuer";
  iks.created_at = VECTORS_TIME;
  g_autoptr (Tally__SignedEnvelope) iks_env =
    add_signed (&b, "issuer_key_set", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                &iks.base, &issuer);

  /* Register A's certificate. */
  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = 5000;
  limits.balance_cap = 20000;
  limits.max_offline_payments = 10;
  limits.max_offline_seconds = 604800;
  Tally__RegisterCertificate cert = TALLY__REGISTER_CERTIFICATE__INIT;
  set_bytes (&cert.register_public_key, reg_a.public_key, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&cert.register_id, reg_a.id, TALLY_ID_BYTES);
  cert.currency = (char *) EUR;
  cert.limits = &limits;
  cert.not_before = VECTORS_TIME;
  cert.not_after = VECTORS_TIME + 31536000;
  set_bytes (&cert.issuer_key_id, issuer.id, TALLY_ID_BYTES);
  cert.serial = 1;
  cert.display_name = (char *) "Caf\u00e9 Lumen";
  g_autoptr (Tally__SignedEnvelope) cert_env = add_signed (
    &b, "register_certificate", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
    &cert.base, &issuer);

  /* 100.00 EUR loaded into register A. */
  Tally__Amount load_amount = TALLY__AMOUNT__INIT;
  load_amount.currency = (char *) EUR;
  load_amount.value = 10000;
  Tally__LoadVoucher voucher = TALLY__LOAD_VOUCHER__INIT;
  set_bytes (&voucher.register_id, reg_a.id, TALLY_ID_BYTES);
  voucher.sequence = 1;
  voucher.amount = &load_amount;
  voucher.issued_at = VECTORS_TIME + 60;
  set_bytes (&voucher.issuer_key_id, issuer.id, TALLY_ID_BYTES);
  g_autoptr (Tally__SignedEnvelope) voucher_env =
    add_signed (&b, "load_voucher", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER,
                &voucher.base, &issuer);

  /* Register B asks for 12.50 EUR. */
  Tally__Amount pay_amount = TALLY__AMOUNT__INIT;
  pay_amount.currency = (char *) EUR;
  pay_amount.value = 1250;
  Tally__PaymentRequest request = TALLY__PAYMENT_REQUEST__INIT;
  set_bytes (&request.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  request.amount = &pay_amount;
  set_bytes (&request.nonce, nonce, sizeof nonce);
  request.memo = (char *) memo;
  request.created_at = VECTORS_TIME + 3600;
  request.expires_at = VECTORS_TIME + 7200;
  g_autoptr (GBytes) request_body = tally_message_pack (&request.base);
  b.section = "payment_request";
  add_bytes (&b, "payment_request.body", request_body);

  /* Register A's first spend: counter 1, extending the genesis head. */
  tally_chain_genesis (reg_a.id, genesis);
  Tally__DepositPermission permission = TALLY__DEPOSIT_PERMISSION__INIT;
  set_bytes (&permission.payer_register_id, reg_a.id, TALLY_ID_BYTES);
  set_bytes (&permission.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  set_bytes (&permission.payee_nonce, nonce, sizeof nonce);
  permission.amount = &pay_amount;
  permission.counter = 1;
  set_bytes (&permission.chain_prev, genesis, sizeof genesis);
  permission.created_at = VECTORS_TIME + 3605;
  set_bytes (&permission.memo_hash, memo_hash, sizeof memo_hash);
  permission.expires_at = request.expires_at;
  g_autoptr (Tally__SignedEnvelope) permission_env = add_signed (
    &b, "deposit_permission", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
    &permission.base, &reg_a);
  tally_envelope_body_hash (permission_env, permission_hash);
  tally_chain_next (genesis, permission_hash, head1);

  /* Register B acknowledges it. */
  Tally__Receipt receipt = TALLY__RECEIPT__INIT;
  set_bytes (&receipt.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  set_bytes (&receipt.payer_register_id, reg_a.id, TALLY_ID_BYTES);
  receipt.payer_counter = 1;
  set_bytes (&receipt.permission_hash, permission_hash, sizeof permission_hash);
  receipt.amount = &pay_amount;
  receipt.received_at = VECTORS_TIME + 3606;
  receipt.permission_expires_at = permission.expires_at;
  g_autoptr (Tally__SignedEnvelope) receipt_env = add_signed (
    &b, "receipt", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &receipt.base, &reg_b);

  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  ProtobufCBinaryData revoked_ids[2];
  set_bytes (&revoked_ids[0], revoked[0], TALLY_ID_BYTES);
  set_bytes (&revoked_ids[1], revoked[1], TALLY_ID_BYTES);
  list.serial = 2;
  list.issued_at = VECTORS_TIME + 7200;
  list.n_revoked_register_ids = G_N_ELEMENTS (revoked_ids);
  list.revoked_register_ids = revoked_ids;
  set_bytes (&list.issuer_key_id, issuer.id, TALLY_ID_BYTES);
  g_autoptr (Tally__SignedEnvelope) list_env =
    add_signed (&b, "revocation_list", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST,
                &list.base, &issuer);

  /* Register A returns the remaining 87.50 EUR: counter 2 on head 1. */
  Tally__Amount defund_amount = TALLY__AMOUNT__INIT;
  defund_amount.currency = (char *) EUR;
  defund_amount.value = 8750;
  Tally__DefundRecord defund = TALLY__DEFUND_RECORD__INIT;
  set_bytes (&defund.register_id, reg_a.id, TALLY_ID_BYTES);
  defund.amount = &defund_amount;
  defund.counter = 2;
  set_bytes (&defund.chain_prev, head1, sizeof head1);
  defund.created_at = VECTORS_TIME + 86400;
  g_autoptr (Tally__SignedEnvelope) defund_env = add_signed (
    &b, "defund_record", TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &defund.base, &reg_a);
  tally_envelope_body_hash (defund_env, defund_hash);
  tally_chain_next (head1, defund_hash, head2);

  b.section = "chain";
  add (&b, "chain.register_a.genesis", genesis, sizeof genesis);
  add (&b, "chain.register_a.entry_1", permission_hash, sizeof permission_hash);
  add (&b, "chain.register_a.head_1", head1, sizeof head1);
  add (&b, "chain.register_a.entry_2", defund_hash, sizeof defund_hash);
  add (&b, "chain.register_a.head_2", head2, sizeof head2);

  g_autoptr (Tally__SignedEnvelope) cert_b_env =
    add_certificate (&b, "register_certificate_b", &issuer, &reg_b, VECTORS_TIME, 1);
  Scenario sc = {
    .issuer = &issuer,
    .reg_a = &reg_a,
    .reg_b = &reg_b,
    .cert_a = cert_env,
    .cert_b = cert_b_env,
    .voucher = voucher_env,
    .permission = permission_env,
    .receipt = receipt_env,
    .defund = defund_env,
    .list = list_env,
    .head2 = head2,
  };
  g_autoptr (Tally__SignedEnvelope) a_bundle = build_reconciliation (&b, &sc);
  build_double_spend (&b, &sc, genesis);
  build_late_receipt (&b, &sc);
  build_evidence_proofs (&b, &sc, a_bundle);
  build_handshake_bodies (&b, &sc, &request);
  build_comparison (&b);
  build_error_and_frames (&b);
  build_request_uris (&b);

  party_clear (&issuer);
  party_clear (&reg_a);
  party_clear (&reg_b);
  return b.out;
}
