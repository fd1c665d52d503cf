/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vectors.h"

#include <string.h>

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

  party_clear (&issuer);
  party_clear (&reg_a);
  party_clear (&reg_b);
  return b.out;
}
