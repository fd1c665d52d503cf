/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "script.h"

#include <string.h>

#include "wallet-fixture.h"

#define EPH  SCRIPT_EPH_BYTES
#define KEYB SCRIPT_KEY_BYTES

/* --- the scripted peer ------------------------------------------------------- */

static void
script_start (Script *s, gboolean is_payer)
{
  s->is_payer = is_payer;
  s->commitment_len = TALLY_HASH_BYTES;
  /* T0 = H("transcript-init", "") */
  tally_hash ("transcript-init", NULL, 0, s->t);
  memcpy (s->t0, s->t, TALLY_HASH_BYTES);
}

void
script_init (Script *s, gboolean is_payer)
{
  memset (s, 0, sizeof *s);
  crypto_kx_keypair (s->eph_pk, s->eph_sk);
  randombytes_buf (s->commit_nonce, sizeof s->commit_nonce);
  script_start (s, is_payer);
}

void
script_init_seeded (Script *s, gboolean is_payer, const guint8 seed[crypto_kx_SEEDBYTES])
{
  memset (s, 0, sizeof *s);
  g_assert_cmpint (crypto_kx_seed_keypair (s->eph_pk, s->eph_sk, seed), ==, 0);
  script_start (s, is_payer);
}

static void
aead_clear (ScriptAead *a)
{
  g_clear_pointer (&a->ad, g_bytes_unref);
  g_clear_pointer (&a->plain, g_bytes_unref);
  g_clear_pointer (&a->ciphertext, g_bytes_unref);
}

void
script_clear (Script *s)
{
  g_clear_pointer (&s->offer, tally__offer_body_free);
  g_clear_pointer (&s->pay, tally__pay_body_free);
  g_clear_pointer (&s->receipt, tally__signed_envelope_free);
  g_clear_pointer (&s->offer_body, g_bytes_unref);
  g_clear_pointer (&s->pay_body, g_bytes_unref);
  aead_clear (&s->offer_aead);
  aead_clear (&s->reveal_aead);
  aead_clear (&s->pay_aead);
  aead_clear (&s->receipt_aead);
  sodium_memzero (s, sizeof *s);
}

/* T = H("transcript", T || lp(a) [|| lp(b)]) */
static void
script_mix (Script *s, const guint8 *a, gsize alen, const guint8 *b, gsize blen)
{
  TallyHash h;
  tally_hash_init (&h, "transcript", TALLY_HASH_BYTES);
  tally_hash_update (&h, s->t, TALLY_HASH_BYTES);
  tally_hash_update_prefixed (&h, a, alen);
  if (b != NULL)
    tally_hash_update_prefixed (&h, b, blen);
  tally_hash_final (&h, s->t);
}

/* The payer is crypto_kx's client, the payee its server. */
static void
script_keys (Script *s, const guint8 *peer_eph)
{
  memcpy (s->peer_eph, peer_eph, EPH);
  if (s->is_payer)
    g_assert_cmpint (crypto_kx_client_session_keys (s->rx, s->tx, s->eph_pk, s->eph_sk, peer_eph),
                     ==, 0);
  else
    g_assert_cmpint (crypto_kx_server_session_keys (s->rx, s->tx, s->eph_pk, s->eph_sk, peer_eph),
                     ==, 0);
}

/* C_a = H("handshake-commit", e_a || N_a) */
static void
script_commitment (const guint8 *e_a, const guint8 *n_a, guint8 out[TALLY_HASH_BYTES])
{
  guint8 in[EPH + TALLY_NONCE_BYTES];
  memcpy (in, e_a, EPH);
  memcpy (in + EPH, n_a, TALLY_NONCE_BYTES);
  tally_hash ("handshake-commit", in, sizeof in, out);
}

/* T2r = H("transcript", T2 || lp(N_a));
 * code = decimal6(BE32(H("comparison-code", T2r)[0..4]) mod 10^6) */
static void
script_code (Script *s)
{
  script_mix (s, s->commit_nonce, TALLY_NONCE_BYTES, NULL, 0);
  memcpy (s->t2r, s->t, TALLY_HASH_BYTES);
  tally_hash ("comparison-code", s->t2r, TALLY_HASH_BYTES, s->code_hash);
  guint32 v = ((guint32) s->code_hash[0] << 24) | ((guint32) s->code_hash[1] << 16) |
              ((guint32) s->code_hash[2] << 8) | s->code_hash[3];
  g_snprintf (s->code, sizeof s->code, "%06u", v % 1000000u);
}

/* The per-direction message counter as a 96-bit little-endian integer. */
static void
nonce_of (guint64 seq, guint8 n[SCRIPT_NONCE_BYTES])
{
  memset (n, 0, SCRIPT_NONCE_BYTES);
  for (int i = 0; i < 8; i++)
    n[i] = (guint8) (seq >> (8 * i));
}

static GBytes *
script_seal (Script *s, const guint8 *ad, gsize adlen, GBytes *plain, ScriptAead *rec)
{
  guint8 n[SCRIPT_NONCE_BYTES];
  nonce_of (s->tx_seq++, n);
  gsize len = g_bytes_get_size (plain);
  guint8 *out = g_malloc (len + crypto_aead_chacha20poly1305_IETF_ABYTES);
  unsigned long long clen;
  crypto_aead_chacha20poly1305_ietf_encrypt (out, &clen, g_bytes_get_data (plain, NULL), len, ad,
                                             adlen, NULL, n, s->tx);
  GBytes *ct = g_bytes_new_take (out, (gsize) clen);

  aead_clear (rec);
  memcpy (rec->nonce, n, sizeof n);
  rec->ad = g_bytes_new (ad, adlen);
  rec->plain = g_bytes_ref (plain);
  rec->ciphertext = g_bytes_ref (ct);
  return ct;
}

static GBytes *
script_open (Script *s, const ProtobufCBinaryData *ct, const guint8 *ad, gsize adlen,
             ScriptAead *rec)
{
  guint8 n[SCRIPT_NONCE_BYTES];
  nonce_of (s->rx_seq++, n);
  g_assert_cmpuint (ct->len, >=, crypto_aead_chacha20poly1305_IETF_ABYTES);
  guint8 *out = g_malloc (ct->len);
  unsigned long long mlen;
  g_assert_cmpint (crypto_aead_chacha20poly1305_ietf_decrypt (out, &mlen, NULL, ct->data, ct->len,
                                                              ad, adlen, n, s->rx),
                   ==, 0);
  GBytes *plain = g_bytes_new_take (out, (gsize) mlen);

  aead_clear (rec);
  memcpy (rec->nonce, n, sizeof n);
  rec->ad = g_bytes_new (ad, adlen);
  rec->plain = g_bytes_ref (plain);
  rec->ciphertext = g_bytes_new (ct->data, ct->len);
  return plain;
}

GBytes *
script_pack_session (Tally__SessionMessage *m)
{
  return tally_message_pack (&m->base);
}

Tally__SessionMessage *
script_unpack_session (GBytes *b)
{
  Tally__SessionMessage *m = TALLY_UNPACK (Tally__SessionMessage, tally__session_message,
                                           g_bytes_get_data (b, NULL), g_bytes_get_size (b),
                                           "session", NULL);
  g_assert_nonnull (m);
  return m;
}

static void
script_sign (Tally__SignatureContext ctx,
             const guint8 t[TALLY_HASH_BYTES],
             TallyRegister *signer,
             const guint8 *raw_sk,
             guint8 sig[TALLY_SIGNATURE_BYTES])
{
  if (signer != NULL)
    tally_register_sign (signer, ctx, t, TALLY_HASH_BYTES, sig);
  else
    tally_sign_detached (ctx, t, TALLY_HASH_BYTES, raw_sk, sig);
}

/* Payer, step 1. */
GBytes *
script_hello (Script *s, guint32 version, gsize eph_len)
{
  Tally__Hello h = TALLY__HELLO__INIT;
  h.version = version;
  h.ephemeral_public_key.data = s->eph_pk;
  h.ephemeral_public_key.len = eph_len;
  script_commitment (s->eph_pk, s->commit_nonce, s->commitment);
  h.commitment.data = s->commitment;
  h.commitment.len = s->commitment_len;
  h.request_tag.data = s->request_tag;
  h.request_tag.len = s->request_tag_len;
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  m.hello = &h;
  GBytes *out = script_pack_session (&m);
  /* T1 = H("transcript", T0 || lp(Hello as sent)) */
  script_mix (s, g_bytes_get_data (out, NULL), g_bytes_get_size (out), NULL, 0);
  memcpy (s->t1, s->t, TALLY_HASH_BYTES);
  return out;
}

/* Payer, step 2. */
void
script_take_offer (Script *s, GBytes *msg)
{
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_OFFER);
  g_assert_cmpuint (m->offer->ephemeral_public_key.len, ==, EPH);
  memcpy (s->t1, s->t, TALLY_HASH_BYTES);
  script_keys (s, m->offer->ephemeral_public_key.data);
  /* Offer: payee tx, nonce 0, ad = T1 || e_b */
  guint8 ad[TALLY_HASH_BYTES + EPH];
  memcpy (ad, s->t1, TALLY_HASH_BYTES);
  memcpy (ad + TALLY_HASH_BYTES, s->peer_eph, EPH);
  g_autoptr (GBytes) plain =
    script_open (s, &m->offer->ciphertext, ad, sizeof ad, &s->offer_aead);
  g_autoptr (Tally__OfferSealed) sealed =
    TALLY_UNPACK (Tally__OfferSealed, tally__offer_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "offer", NULL);
  g_assert_nonnull (sealed);
  /* T2 = H("transcript", T1 || lp(e_b) || lp(OfferBody)) */
  script_mix (s, s->peer_eph, EPH, sealed->body.data, sealed->body.len);
  memcpy (s->t2, s->t, TALLY_HASH_BYTES);
  g_assert_cmpuint (sealed->signature.len, ==, TALLY_SIGNATURE_BYTES);
  memcpy (s->offer_sig, sealed->signature.data, TALLY_SIGNATURE_BYTES);
  g_clear_pointer (&s->offer_body, g_bytes_unref);
  s->offer_body = g_bytes_new (sealed->body.data, sealed->body.len);
  g_clear_pointer (&s->offer, tally__offer_body_free);
  s->offer = TALLY_UNPACK (Tally__OfferBody, tally__offer_body, sealed->body.data,
                           sealed->body.len, "offer body", NULL);
  g_assert_nonnull (s->offer);
}

/* Payer, step 3. */
GBytes *
script_reveal (Script *s, const guint8 *nonce, gsize nonce_len)
{
  Tally__RevealSealed rs = TALLY__REVEAL_SEALED__INIT;
  rs.commit_nonce.data = (guint8 *) (nonce ? nonce : s->commit_nonce);
  rs.commit_nonce.len = nonce ? nonce_len : TALLY_NONCE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&rs.base);
  /* Reveal: payer tx, nonce 0, ad = T2 */
  g_autoptr (GBytes) ct = script_seal (s, s->t2, TALLY_HASH_BYTES, plain, &s->reveal_aead);
  script_code (s);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_REVEAL;
  m.reveal.data = (guint8 *) g_bytes_get_data (ct, &m.reveal.len);
  return script_pack_session (&m);
}

/* Payer, step 5. */
GBytes *
script_pay (Script *s,
            GBytes *certificate,
            GBytes *permission,
            TallyRegister *signer,
            const guint8 *raw_sk)
{
  g_autoptr (Tally__SignedEnvelope) cert = certificate ? fixture_envelope (certificate) : NULL;
  g_autoptr (Tally__SignedEnvelope) perm = fixture_envelope (permission);
  Tally__PayBody body = TALLY__PAY_BODY__INIT;
  body.payer_certificate = cert;
  body.permission = perm;
  body.payer_certificate_hash.data = s->cert_hash;
  body.payer_certificate_hash.len = cert ? 0 : TALLY_HASH_BYTES;
  body.redelivery = s->redelivery;
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);

  /* T3 = H("transcript", T2r || lp(sig_b) || lp(PayBody)) */
  memcpy (s->t2r, s->t, TALLY_HASH_BYTES);
  script_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES, g_bytes_get_data (body_bytes, NULL),
              g_bytes_get_size (body_bytes));
  memcpy (s->t3, s->t, TALLY_HASH_BYTES);
  script_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY, s->t3, signer, raw_sk,
               s->pay_sig);
  g_clear_pointer (&s->pay_body, g_bytes_unref);
  s->pay_body = g_bytes_ref (body_bytes);

  Tally__PaySealed sealed = TALLY__PAY_SEALED__INIT;
  sealed.body.data = (guint8 *) g_bytes_get_data (body_bytes, &sealed.body.len);
  sealed.signature.data = s->pay_sig;
  sealed.signature.len = TALLY_SIGNATURE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&sealed.base);
  /* Pay: payer tx, nonce 1, ad = T2r */
  g_autoptr (GBytes) ct = script_seal (s, s->t2r, TALLY_HASH_BYTES, plain, &s->pay_aead);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_PAY;
  m.pay.data = (guint8 *) g_bytes_get_data (ct, &m.pay.len);
  return script_pack_session (&m);
}

/* Payer, step 6. */
void
script_take_receipt (Script *s, GBytes *msg)
{
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_RECEIPT);
  /* Receipt: payee tx, nonce 1, ad = T3 */
  g_autoptr (GBytes) plain =
    script_open (s, &m->receipt, s->t3, TALLY_HASH_BYTES, &s->receipt_aead);
  g_autoptr (Tally__ReceiptSealed) sealed =
    TALLY_UNPACK (Tally__ReceiptSealed, tally__receipt_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "receipt", NULL);
  g_assert_nonnull (sealed);
  g_assert_nonnull (sealed->receipt);
  g_clear_pointer (&s->receipt, tally__signed_envelope_free);
  s->receipt = tally_envelope_copy (sealed->receipt);
}

/* Payee, step 2. */
GBytes *
script_offer_body (Script *s, GBytes *hello_msg, const Tally__OfferBody *body,
                   TallyRegister *signer, const guint8 *raw_sk)
{
  g_autoptr (Tally__SessionMessage) hm = script_unpack_session (hello_msg);
  g_assert_cmpint (hm->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_HELLO);
  script_mix (s, g_bytes_get_data (hello_msg, NULL), g_bytes_get_size (hello_msg), NULL, 0);
  memcpy (s->t1, s->t, TALLY_HASH_BYTES);
  script_keys (s, hm->hello->ephemeral_public_key.data);
  memset (s->commitment, 0, sizeof s->commitment);
  s->commitment_len = MIN (hm->hello->commitment.len, sizeof s->commitment);
  memcpy (s->commitment, hm->hello->commitment.data, s->commitment_len);

  g_autoptr (GBytes) body_bytes = tally_message_pack (&body->base);
  script_mix (s, s->eph_pk, EPH, g_bytes_get_data (body_bytes, NULL),
              g_bytes_get_size (body_bytes));
  memcpy (s->t2, s->t, TALLY_HASH_BYTES);
  script_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER, s->t2, signer, raw_sk,
               s->offer_sig);
  g_clear_pointer (&s->offer_body, g_bytes_unref);
  s->offer_body = g_bytes_ref (body_bytes);

  Tally__OfferSealed sealed = TALLY__OFFER_SEALED__INIT;
  sealed.body.data = (guint8 *) g_bytes_get_data (body_bytes, &sealed.body.len);
  sealed.signature.data = s->offer_sig;
  sealed.signature.len = TALLY_SIGNATURE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&sealed.base);
  guint8 ad[TALLY_HASH_BYTES + EPH];
  memcpy (ad, s->t1, TALLY_HASH_BYTES);
  memcpy (ad + TALLY_HASH_BYTES, s->eph_pk, EPH);
  g_autoptr (GBytes) ct = script_seal (s, ad, sizeof ad, plain, &s->offer_aead);

  Tally__Offer offer = TALLY__OFFER__INIT;
  offer.ephemeral_public_key.data = s->eph_pk;
  offer.ephemeral_public_key.len = EPH;
  offer.ciphertext.data = (guint8 *) g_bytes_get_data (ct, &offer.ciphertext.len);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_OFFER;
  m.offer = &offer;
  return script_pack_session (&m);
}

GBytes *
script_offer (Script *s, GBytes *hello_msg, GBytes *certificate, const Tally__PaymentRequest *req,
              TallyRegister *signer, const guint8 *raw_sk)
{
  g_autoptr (Tally__SignedEnvelope) cert = fixture_envelope (certificate);
  Tally__OfferBody body = TALLY__OFFER_BODY__INIT;
  body.payee_certificate = cert;
  body.request = (Tally__PaymentRequest *) req;
  return script_offer_body (s, hello_msg, &body, signer, raw_sk);
}

/* Payee, step 3. */
void
script_take_reveal (Script *s, GBytes *msg)
{
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_REVEAL);
  g_autoptr (GBytes) plain = script_open (s, &m->reveal, s->t2, TALLY_HASH_BYTES, &s->reveal_aead);
  g_autoptr (Tally__RevealSealed) rs =
    TALLY_UNPACK (Tally__RevealSealed, tally__reveal_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "reveal", NULL);
  g_assert_nonnull (rs);
  g_assert_cmpuint (rs->commit_nonce.len, ==, TALLY_NONCE_BYTES);
  memcpy (s->commit_nonce, rs->commit_nonce.data, TALLY_NONCE_BYTES);
  guint8 expect[TALLY_HASH_BYTES];
  script_commitment (s->peer_eph, s->commit_nonce, expect);
  s->commitment_ok =
    s->commitment_len == TALLY_HASH_BYTES && memcmp (expect, s->commitment, TALLY_HASH_BYTES) == 0;
  script_code (s);
}

/* Payee, step 5. */
void
script_take_pay (Script *s, GBytes *msg)
{
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_PAY);
  g_autoptr (GBytes) plain = script_open (s, &m->pay, s->t2r, TALLY_HASH_BYTES, &s->pay_aead);
  g_autoptr (Tally__PaySealed) sealed =
    TALLY_UNPACK (Tally__PaySealed, tally__pay_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "pay", NULL);
  g_assert_nonnull (sealed);
  script_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES, sealed->body.data, sealed->body.len);
  memcpy (s->t3, s->t, TALLY_HASH_BYTES);
  g_assert_cmpuint (sealed->signature.len, ==, TALLY_SIGNATURE_BYTES);
  memcpy (s->pay_sig, sealed->signature.data, TALLY_SIGNATURE_BYTES);
  g_clear_pointer (&s->pay_body, g_bytes_unref);
  s->pay_body = g_bytes_new (sealed->body.data, sealed->body.len);
  g_clear_pointer (&s->pay, tally__pay_body_free);
  s->pay = TALLY_UNPACK (Tally__PayBody, tally__pay_body, sealed->body.data, sealed->body.len,
                         "pay body", NULL);
  g_assert_nonnull (s->pay);
}

/* Payee, step 6. */
GBytes *
script_receipt (Script *s, GBytes *receipt)
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  Tally__ReceiptSealed rs = TALLY__RECEIPT_SEALED__INIT;
  rs.receipt = env;
  g_autoptr (GBytes) plain = tally_message_pack (&rs.base);
  g_autoptr (GBytes) ct = script_seal (s, s->t3, TALLY_HASH_BYTES, plain, &s->receipt_aead);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_RECEIPT;
  m.receipt.data = (guint8 *) g_bytes_get_data (ct, &m.receipt.len);
  return script_pack_session (&m);
}

gboolean
script_verify_peer (Script *s, const guint8 public_key[TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  g_autoptr (GError) local = NULL;
  gboolean ok;

  if (s->is_payer)
    ok = tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER, s->t2,
                                TALLY_HASH_BYTES, s->offer_sig, TALLY_SIGNATURE_BYTES, public_key,
                                &local);
  else
    ok = tally_verify_detached (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY, s->t3,
                                TALLY_HASH_BYTES, s->pay_sig, TALLY_SIGNATURE_BYTES, public_key,
                                &local);
  if (!ok)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_TRANSCRIPT, "%s transcript signature: %s",
                 s->is_payer ? "offer" : "pay", local->message);
  return ok;
}

/* --- the scripted peer against an honest session ------------------------------ */

void
payee_rig_init_offered (PayeeRig *r, TallyRegister *payee, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  script_init (&r->s, TRUE);
  r->payee = tally_session_new_payee (payee, amount, "tea", NULL, FIXTURE_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) hello = script_hello (&r->s, TALLY_PROTOCOL_VERSION, EPH);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (r->payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), FIXTURE_NOW, &offer, &error));
  g_assert_no_error (error);
  script_take_offer (&r->s, offer);
}

void
payee_rig_init (PayeeRig *r, TallyRegister *payee, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  payee_rig_init_offered (r, payee, amount);
  g_autoptr (GBytes) reveal = script_reveal (&r->s, NULL, 0);
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (r->payee, g_bytes_get_data (reveal, NULL),
                                       g_bytes_get_size (reveal), FIXTURE_NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (r->payee), ==, TALLY_SESSION_STATE_WAIT_PAY);
  g_assert_cmpstr (tally_session_get_comparison_code (r->payee), ==, r->s.code);
}

void
payee_rig_clear (PayeeRig *r)
{
  script_clear (&r->s);
  g_clear_pointer (&r->payee, tally_session_free);
}

void
payer_rig_init (PayerRig *r, TallyRegister *payer, TallyRegister *payee)
{
  g_autoptr (GError) error = NULL;
  script_init (&r->s, FALSE);
  r->payer = tally_session_new_payer (payer, NULL);
  r->hello = tally_session_start (r->payer, &error);
  g_assert_no_error (error);
  r->request = tally_register_new_request (payee, 900, "cake", FIXTURE_NOW, &error);
  g_assert_no_error (error);
}

void
payer_rig_clear (PayerRig *r)
{
  script_clear (&r->s);
  g_clear_pointer (&r->payer, tally_session_free);
  g_clear_pointer (&r->hello, g_bytes_unref);
  g_clear_pointer (&r->request, tally__payment_request_free);
}

/* --- the handshake vectors ----------------------------------------------------- */

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

/* "tally/v1/" || label || 0x00 || data: what a transcript signature signs. */
static void
add_signed_message (Builder *b, const char *name, Tally__SignatureContext ctx,
                    const guint8 t[TALLY_HASH_BYTES])
{
  const char *label = tally_context_label (ctx);
  GByteArray *m = g_byte_array_new ();
  g_byte_array_append (m, (const guint8 *) "tally/v1/", strlen ("tally/v1/"));
  g_byte_array_append (m, (const guint8 *) label, strlen (label) + 1);
  g_byte_array_append (m, t, TALLY_HASH_BYTES);
  g_autoptr (GBytes) bytes = g_byte_array_free_to_bytes (m);
  add_bytes (b, name, bytes);
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
set_bytes (ProtobufCBinaryData *field, const guint8 *data, gsize len)
{
  field->data = (guint8 *) data;
  field->len = len;
}

static GBytes *
sign_message (Tally__SignatureContext ctx, const ProtobufCMessage *msg, const Party *signer)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (ctx, data, len, signer->secret_key);
}

/* The fields of the core vectors' register certificate, for @reg, named
 * @display_name (NULL for none). */
static GBytes *
certify (const Party *issuer, const Party *reg, const char *display_name)
{
  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = 5000;
  limits.balance_cap = 20000;
  limits.max_offline_payments = 10;
  limits.max_offline_seconds = 604800;
  Tally__RegisterCertificate cert = TALLY__REGISTER_CERTIFICATE__INIT;
  set_bytes (&cert.register_public_key, reg->public_key, TALLY_PUBLIC_KEY_BYTES);
  set_bytes (&cert.register_id, reg->id, TALLY_ID_BYTES);
  cert.currency = (char *) SCRIPT_VECTORS_CURRENCY;
  cert.limits = &limits;
  cert.not_before = VECTORS_TIME;
  cert.not_after = VECTORS_TIME + 31536000;
  set_bytes (&cert.issuer_key_id, issuer->id, TALLY_ID_BYTES);
  cert.serial = 1;
  if (display_name != NULL)
    cert.display_name = (char *) display_name;
  return sign_message (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                       &cert.base, issuer);
}

static void
add_aead (Builder *b, const char *prefix, const ScriptAead *a)
{
  g_autofree char *n_nonce = g_strconcat (prefix, ".aead_nonce", NULL);
  g_autofree char *n_ad = g_strconcat (prefix, ".aead_ad", NULL);
  g_autofree char *n_ct = g_strconcat (prefix, ".ciphertext", NULL);
  add (b, n_nonce, a->nonce, sizeof a->nonce);
  add_bytes (b, n_ad, a->ad);
  add_bytes (b, n_ct, a->ciphertext);
}

static void
assert_same_aead (const ScriptAead *sealed, const ScriptAead *opened)
{
  g_assert_cmpmem (sealed->nonce, sizeof sealed->nonce, opened->nonce, sizeof opened->nonce);
  g_assert_true (g_bytes_equal (sealed->ad, opened->ad));
  g_assert_true (g_bytes_equal (sealed->plain, opened->plain));
  g_assert_true (g_bytes_equal (sealed->ciphertext, opened->ciphertext));
}

GPtrArray *
script_vectors_build (void)
{
  Builder b = { vector_list_new (), NULL };
  Party issuer, reg_a, reg_b;
  guint8 payer_seed[crypto_kx_SEEDBYTES], payee_seed[crypto_kx_SEEDBYTES];
  guint8 nonce[TALLY_NONCE_BYTES], genesis[TALLY_HASH_BYTES], memo_hash[TALLY_HASH_BYTES];
  guint8 permission_hash[TALLY_HASH_BYTES], shared[crypto_scalarmult_BYTES];
  Script payer, payee;
  g_autoptr (GError) error = NULL;

  party_init (&issuer, VECTORS_ISSUER_SEED, TRUE);
  party_init (&reg_a, VECTORS_REGISTER_A_SEED, FALSE);
  party_init (&reg_b, VECTORS_REGISTER_B_SEED, FALSE);
  memset (payer_seed, SCRIPT_VECTORS_PAYER_EPHEMERAL_SEED, sizeof payer_seed);
  memset (payee_seed, SCRIPT_VECTORS_PAYEE_EPHEMERAL_SEED, sizeof payee_seed);
  memset (nonce, SCRIPT_VECTORS_NONCE_BYTE, sizeof nonce);
  script_init_seeded (&payer, TRUE, payer_seed);
  script_init_seeded (&payee, FALSE, payee_seed);
  memset (payer.commit_nonce, SCRIPT_VECTORS_COMMIT_NONCE_BYTE, sizeof payer.commit_nonce);

  b.section = "handshake.ephemeral";
  add (&b, "payer.ephemeral_seed", payer_seed, sizeof payer_seed);
  add (&b, "payer.ephemeral_secret_key", payer.eph_sk, sizeof payer.eph_sk);
  add (&b, "payer.ephemeral_public_key", payer.eph_pk, sizeof payer.eph_pk);
  add (&b, "payee.ephemeral_seed", payee_seed, sizeof payee_seed);
  add (&b, "payee.ephemeral_secret_key", payee.eph_sk, sizeof payee.eph_sk);
  add (&b, "payee.ephemeral_public_key", payee.eph_pk, sizeof payee.eph_pk);

  /* The objects the handshake carries. */
  g_autoptr (GBytes) cert_a = certify (&issuer, &reg_a, SCRIPT_VECTORS_PAYER_NAME);
  g_autoptr (GBytes) cert_b = certify (&issuer, &reg_b, SCRIPT_VECTORS_PAYEE_NAME);

  Tally__Amount amount = TALLY__AMOUNT__INIT;
  amount.currency = (char *) SCRIPT_VECTORS_CURRENCY;
  amount.value = SCRIPT_VECTORS_AMOUNT;
  Tally__PaymentRequest request = TALLY__PAYMENT_REQUEST__INIT;
  set_bytes (&request.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  request.amount = &amount;
  set_bytes (&request.nonce, nonce, sizeof nonce);
  request.memo = (char *) SCRIPT_VECTORS_MEMO;
  request.created_at = SCRIPT_VECTORS_OFFER_TIME;
  request.expires_at = SCRIPT_VECTORS_OFFER_TIME + TALLY_REQUEST_LIFETIME_DEFAULT;
  g_autoptr (GBytes) request_body = tally_message_pack (&request.base);

  tally_chain_genesis (reg_a.id, genesis);
  tally_hash ("memo", SCRIPT_VECTORS_MEMO, strlen (SCRIPT_VECTORS_MEMO), memo_hash);
  Tally__DepositPermission permission = TALLY__DEPOSIT_PERMISSION__INIT;
  set_bytes (&permission.payer_register_id, reg_a.id, TALLY_ID_BYTES);
  set_bytes (&permission.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  set_bytes (&permission.payee_nonce, nonce, sizeof nonce);
  permission.amount = &amount;
  permission.counter = 1;
  set_bytes (&permission.chain_prev, genesis, sizeof genesis);
  permission.created_at = SCRIPT_VECTORS_PAY_TIME;
  permission.expires_at = request.expires_at;
  set_bytes (&permission.memo_hash, memo_hash, sizeof memo_hash);
  g_autoptr (GBytes) permission_env = sign_message (
    TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &permission.base, &reg_a);
  fixture_body_hash (permission_env, permission_hash);

  Tally__Receipt receipt = TALLY__RECEIPT__INIT;
  set_bytes (&receipt.payee_register_id, reg_b.id, TALLY_ID_BYTES);
  set_bytes (&receipt.payer_register_id, reg_a.id, TALLY_ID_BYTES);
  receipt.payer_counter = 1;
  set_bytes (&receipt.permission_hash, permission_hash, sizeof permission_hash);
  receipt.amount = &amount;
  receipt.received_at = SCRIPT_VECTORS_RECEIPT_TIME;
  receipt.permission_expires_at = permission.expires_at;
  g_autoptr (GBytes) receipt_env =
    sign_message (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &receipt.base, &reg_b);

  b.section = "handshake.objects";
  add_bytes (&b, "objects.payer_certificate", cert_a);
  add_bytes (&b, "objects.payee_certificate", cert_b);
  add_bytes (&b, "objects.payment_request", request_body);
  add_bytes (&b, "objects.deposit_permission", permission_env);
  add_bytes (&b, "objects.receipt", receipt_env);

  /* Round trip 1. */
  g_autoptr (GBytes) hello = script_hello (&payer, TALLY_PROTOCOL_VERSION, SCRIPT_EPH_BYTES);
  g_autoptr (Tally__SignedEnvelope) cert_b_env = fixture_envelope (cert_b);
  Tally__OfferBody offer_body = TALLY__OFFER_BODY__INIT;
  offer_body.payee_certificate = cert_b_env;
  offer_body.request = &request;
  offer_body.max_message = SCRIPT_VECTORS_MAX_MESSAGE;
  g_autoptr (GBytes) offer = script_offer_body (&payee, hello, &offer_body, NULL, reg_b.secret_key);
  script_take_offer (&payer, offer);
  g_assert_true (script_verify_peer (&payer, reg_b.public_key, &error));
  g_assert_no_error (error);
  /* The reveal, not answered. */
  g_autoptr (GBytes) reveal = script_reveal (&payer, NULL, 0);
  script_take_reveal (&payee, reveal);
  g_assert_true (payee.commitment_ok);

  /* Round trip 2. */
  g_autoptr (GBytes) pay = script_pay (&payer, cert_a, permission_env, NULL, reg_a.secret_key);
  script_take_pay (&payee, pay);
  g_assert_true (script_verify_peer (&payee, reg_a.public_key, &error));
  g_assert_no_error (error);
  g_autoptr (GBytes) receipt_msg = script_receipt (&payee, receipt_env);
  script_take_receipt (&payer, receipt_msg);

  /* Both ends agree on everything they derive. */
  g_assert_cmpmem (payer.t0, TALLY_HASH_BYTES, payee.t0, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.t1, TALLY_HASH_BYTES, payee.t1, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.t2, TALLY_HASH_BYTES, payee.t2, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.t2r, TALLY_HASH_BYTES, payee.t2r, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.commitment, TALLY_HASH_BYTES, payee.commitment, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.t3, TALLY_HASH_BYTES, payee.t3, TALLY_HASH_BYTES);
  g_assert_cmpmem (payer.rx, KEYB, payee.tx, KEYB);
  g_assert_cmpmem (payer.tx, KEYB, payee.rx, KEYB);
  g_assert_cmpstr (payer.code, ==, payee.code);
  g_assert_true (g_bytes_equal (payer.offer_body, payee.offer_body));
  g_assert_true (g_bytes_equal (payer.pay_body, payee.pay_body));
  assert_same_aead (&payee.offer_aead, &payer.offer_aead);
  assert_same_aead (&payer.reveal_aead, &payee.reveal_aead);
  assert_same_aead (&payer.pay_aead, &payee.pay_aead);
  assert_same_aead (&payee.receipt_aead, &payer.receipt_aead);
  g_autoptr (GBytes) receipt_got = tally_envelope_pack (payer.receipt);
  g_assert_true (g_bytes_equal (receipt_got, receipt_env));

  b.section = "handshake.hello";
  add (&b, "transcript.t0", payer.t0, TALLY_HASH_BYTES);
  add (&b, "payer.commit_nonce", payer.commit_nonce, TALLY_NONCE_BYTES);
  add (&b, "hello.commitment", payer.commitment, TALLY_HASH_BYTES);
  add_bytes (&b, "hello.message", hello);
  add (&b, "transcript.t1", payer.t1, TALLY_HASH_BYTES);

  b.section = "handshake.keys";
  g_assert_cmpint (crypto_scalarmult (shared, payer.eph_sk, payee.eph_pk), ==, 0);
  add (&b, "kx.shared_secret", shared, sizeof shared);
  add (&b, "payer.rx", payer.rx, KEYB);
  add (&b, "payer.tx", payer.tx, KEYB);
  add (&b, "payee.rx", payee.rx, KEYB);
  add (&b, "payee.tx", payee.tx, KEYB);

  b.section = "handshake.offer";
  add_bytes (&b, "offer.body", payee.offer_body);
  add (&b, "transcript.t2", payee.t2, TALLY_HASH_BYTES);
  add_signed_message (&b, "offer.signed_message",
                      TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER, payee.t2);
  add (&b, "offer.signature", payee.offer_sig, TALLY_SIGNATURE_BYTES);
  add_bytes (&b, "offer.sealed", payee.offer_aead.plain);
  add_aead (&b, "offer", &payee.offer_aead);
  add_bytes (&b, "offer.message", offer);

  b.section = "handshake.reveal";
  add_bytes (&b, "reveal.sealed", payer.reveal_aead.plain);
  add_aead (&b, "reveal", &payer.reveal_aead);
  add_bytes (&b, "reveal.message", reveal);
  add (&b, "transcript.t2r", payer.t2r, TALLY_HASH_BYTES);

  b.section = "handshake.comparison";
  add (&b, "comparison.hash", payer.code_hash, TALLY_HASH_BYTES);
  add (&b, "comparison.code", payer.code, SCRIPT_CODE_DIGITS);

  b.section = "handshake.pay";
  add_bytes (&b, "pay.body", payer.pay_body);
  add (&b, "transcript.t3", payer.t3, TALLY_HASH_BYTES);
  add_signed_message (&b, "pay.signed_message",
                      TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY, payer.t3);
  add (&b, "pay.signature", payer.pay_sig, TALLY_SIGNATURE_BYTES);
  add_bytes (&b, "pay.sealed", payer.pay_aead.plain);
  add_aead (&b, "pay", &payer.pay_aead);
  add_bytes (&b, "pay.message", pay);

  b.section = "handshake.receipt";
  add_bytes (&b, "receipt.sealed", payee.receipt_aead.plain);
  add_aead (&b, "receipt", &payee.receipt_aead);
  add_bytes (&b, "receipt.message", receipt_msg);

  script_clear (&payer);
  script_clear (&payee);
  sodium_memzero (&issuer, sizeof issuer);
  sodium_memzero (&reg_a, sizeof reg_a);
  sodium_memzero (&reg_b, sizeof reg_b);
  sodium_memzero (shared, sizeof shared);
  return b.out;
}

/* The digits again after the comparison code, as a device shows them. */
static char *
comparison_code_comment (const Vector *v, gpointer user_data)
{
  if (strcmp (v->name, "comparison.code") != 0)
    return NULL;

  gsize len;
  const char *digits = g_bytes_get_data (v->value, &len);
  return g_strdup_printf ("comparison code: %.*s", (int) len, digits);
}

char *
script_vectors_format (const GPtrArray *vectors)
{
  return vector_list_format (vectors, comparison_code_comment, NULL);
}
