/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The payee's handshake steps (the key schedule is in tally-session.c). */

#include "tally-session-private.h"

#include <string.h>

#include "tally-hex.h"

/* The Hello names our request, or none (a payer that predates tags, or
 * that was told no tag): checked before anything is stored. */
static gboolean
payee_check_request_tag (TallySession *s, const ProtobufCBinaryData *tag, GError **error)
{
  if (tag->len == 0)
    return TRUE;
  if (tag->len != TALLY_REQUEST_TAG_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "hello: request tag is %zu bytes, not %d", tag->len, TALLY_REQUEST_TAG_BYTES);
    return FALSE;
  }
  if (!s->has_request_tag ||
      sodium_memcmp (tag->data, s->request_tag, TALLY_REQUEST_TAG_BYTES) != 0) {
    g_autofree char *hex = tally_hex_encode (tag->data, tag->len);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no open payment request has tag %s",
                 hex);
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_session_check_hello (const Tally__Hello *hello, GError **error)
{
  g_return_val_if_fail (hello != NULL, FALSE);

  if (hello->version != TALLY_PROTOCOL_VERSION) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_VERSION,
                 "protocol version %u is not supported (this side speaks %d)", hello->version,
                 TALLY_PROTOCOL_VERSION);
    return FALSE;
  }
  if (hello->ephemeral_public_key.len != EPHEM_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "hello: ephemeral key is %zu bytes",
                 hello->ephemeral_public_key.len);
    return FALSE;
  }
  /* Without a commitment the payer could choose N_a after our offer. */
  if (!tally_check_bytes (&hello->commitment, TALLY_HASH_BYTES, "hello: commitment", error))
    return FALSE;
  if (hello->request_tag.len != 0 && hello->request_tag.len != TALLY_REQUEST_TAG_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "hello: request tag is %zu bytes, not %d", hello->request_tag.len,
                 TALLY_REQUEST_TAG_BYTES);
    return FALSE;
  }
  return TRUE;
}

/* Handshake step 2, payee side: answer Hello with the signed, sealed offer. */
GBytes *
tally_session_payee_handle_hello (TallySession *s,
                                  const Tally__Hello *hello,
                                  const guint8 *raw,
                                  gsize raw_len,
                                  GError **error)
{
  if (!tally_session_check_hello (hello, error))
    return NULL;
  if (!payee_check_request_tag (s, &hello->request_tag, error))
    return NULL;
  g_autoptr (GBytes) cert_bytes = tally_register_get_certificate (s->reg);
  if (cert_bytes == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE, "this register has no certificate");
    return NULL;
  }
  /* The offer names the request's nonce: it must be durable before a
   * payer can answer it. */
  if (!tally_register_store_request (s->reg, s->request, error))
    return NULL;

  /* T1 covers the first message exactly as it travelled. */
  tally_session_transcript_mix (s, raw, raw_len, NULL, 0);
  guint8 t1[TALLY_HASH_BYTES];
  memcpy (t1, s->transcript, sizeof t1);
  if (!tally_session_derive_keys (s, hello->ephemeral_public_key.data, error))
    return NULL;
  s->peer_revocation_serial = hello->revocation_serial;
  memcpy (s->commitment, hello->commitment.data, TALLY_HASH_BYTES);

  g_autoptr (Tally__SignedEnvelope) cert_env = tally_envelope_decode (
    g_bytes_get_data (cert_bytes, NULL), g_bytes_get_size (cert_bytes), NULL);
  g_autoptr (Tally__SignedEnvelope) rl_holder = NULL;

  Tally__OfferBody body = TALLY__OFFER_BODY__INIT;
  body.payee_certificate = cert_env;
  body.request = s->request;
  body.revocation_serial = tally_register_get_revocation_serial (s->reg);
  body.revocation_list = (Tally__SignedEnvelope *) tally_session_maybe_our_revocation_list (
    s, hello->revocation_serial, &rl_holder);
  body.max_message = TALLY_SESSION_MAX_MESSAGE;
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);

  tally_session_transcript_mix (s, s->eph_pk, EPHEM_BYTES, g_bytes_get_data (body_bytes, NULL),
                                g_bytes_get_size (body_bytes));
  tally_register_sign (s->reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER,
                       s->transcript, TALLY_HASH_BYTES, s->offer_sig);

  Tally__OfferSealed sealed = TALLY__OFFER_SEALED__INIT;
  sealed.body.data = (guint8 *) g_bytes_get_data (body_bytes, &sealed.body.len);
  sealed.signature.data = s->offer_sig;
  sealed.signature.len = TALLY_SIGNATURE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&sealed.base);

  guint8 ad[TALLY_HASH_BYTES + EPHEM_BYTES];
  memcpy (ad, t1, TALLY_HASH_BYTES);
  memcpy (ad + TALLY_HASH_BYTES, s->eph_pk, EPHEM_BYTES);
  g_autoptr (GBytes) ct = tally_session_keys_seal (&s->keys, ad, sizeof ad, plain);

  /* No code yet: it waits for N_a, which the payer reveals next. */
  Tally__Offer offer = TALLY__OFFER__INIT;
  offer.ephemeral_public_key.data = s->eph_pk;
  offer.ephemeral_public_key.len = EPHEM_BYTES;
  offer.ciphertext.data = (guint8 *) g_bytes_get_data (ct, &offer.ciphertext.len);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_OFFER;
  m.offer = &offer;
  tally_session_enter_state (s, TALLY_SESSION_STATE_OFFER_SENT);
  return tally_session_pack_message (&m);
}

/* Handshake step 3, payee side: N_a must open the Hello's commitment;
 * only then is there a code to show. */
gboolean
tally_session_payee_handle_reveal (TallySession *s, const ProtobufCBinaryData *ct, GError **error)
{
  /* Payer tx, nonce 0, ad = T2. */
  g_autoptr (GBytes) plain = tally_session_keys_open (&s->keys, ct, s->transcript, TALLY_HASH_BYTES, "reveal", error);
  if (plain == NULL)
    return FALSE;
  g_autoptr (Tally__RevealSealed) rs =
    TALLY_UNPACK (Tally__RevealSealed, tally__reveal_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "reveal", error);
  if (rs == NULL)
    return FALSE;
  if (!tally_check_bytes (&rs->commit_nonce, TALLY_NONCE_BYTES, "reveal: nonce", error))
    return FALSE;
  guint8 expect[TALLY_HASH_BYTES];
  tally_session_make_commitment (s->peer_eph, rs->commit_nonce.data, expect);
  if (sodium_memcmp (expect, s->commitment, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_TRANSCRIPT,
                 "reveal: the nonce does not open the hello's commitment");
    return FALSE;
  }
  memcpy (s->commit_nonce, rs->commit_nonce.data, TALLY_NONCE_BYTES);
  tally_session_transcript_mix (s, s->commit_nonce, TALLY_NONCE_BYTES, NULL, 0);
  tally_session_compute_code (s);
  tally_session_enter_state (s, TALLY_SESSION_STATE_WAIT_PAY);
  return TRUE;
}

/* Handshake step 5, payee side: authenticate the payer, credit, receipt. */
GBytes *
tally_session_payee_handle_pay (TallySession *s,
                                const ProtobufCBinaryData *ct,
                                guint64 now,
                                GError **error)
{
  /* Payer tx, nonce 1, ad = T2r. */
  guint8 t2r[TALLY_HASH_BYTES];
  memcpy (t2r, s->transcript, sizeof t2r);
  g_autoptr (GBytes) plain = tally_session_keys_open (&s->keys, ct, t2r, sizeof t2r, "pay", error);
  if (plain == NULL)
    return NULL;
  g_autoptr (Tally__PaySealed) sealed =
    TALLY_UNPACK (Tally__PaySealed, tally__pay_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "pay", error);
  if (sealed == NULL)
    return NULL;
  g_autoptr (Tally__PayBody) body = TALLY_UNPACK (Tally__PayBody, tally__pay_body,
                                                  sealed->body.data, sealed->body.len,
                                                  "pay body", error);
  if (body == NULL)
    return NULL;
  g_autoptr (Tally__SignedEnvelope) cached = NULL;
  const Tally__SignedEnvelope *payer_cert = body->payer_certificate;
  if (payer_cert == NULL && body->payer_certificate_hash.len > 0) {
    if (!tally_check_bytes (&body->payer_certificate_hash, TALLY_HASH_BYTES,
                            "pay: certificate hash", error))
      return NULL;
    cached = tally_register_lookup_certificate (s->reg, body->payer_certificate_hash.data, error);
    if (cached == NULL) {
      g_prefix_error (error, "pay: payer certificate: ");
      return NULL;
    }
    payer_cert = cached;
  }
  if (payer_cert == NULL || body->permission == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "pay: certificate or permission missing");
    return NULL;
  }

  tally_session_transcript_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES, sealed->body.data,
                                sealed->body.len);

  if (!tally_session_take_revocation_list (s, body->revocation_list, error))
    return NULL;

  g_autoptr (Tally__RegisterCertificate) cert = tally_session_authenticate_peer (
    s, payer_cert, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY, s->transcript,
    TALLY_HASH_BYTES, &sealed->signature, now, error);
  if (cert == NULL)
    return NULL;

  /* A new permission answers the request offered in this session; one
   * delivered again answers an earlier one (protocol 4.4). */
  g_autoptr (Tally__DepositPermission) perm =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, body->permission->body.data,
                  body->permission->body.len, "permission", error);
  if (perm == NULL)
    return NULL;
  if (body->redelivery && perm->payee_nonce.len == s->request->nonce.len &&
      memcmp (perm->payee_nonce.data, s->request->nonce.data, s->request->nonce.len) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "pay: a permission delivered again answers the request just offered");
    return NULL;
  }

  /* The register re-verifies everything and commits before answering. */
  g_autoptr (GBytes) receipt =
    body->redelivery
      ? tally_register_receive_again (s->reg, payer_cert, body->permission, &s->policy, now, error)
      : tally_register_receive (s->reg, payer_cert, body->permission, s->request->nonce.data,
                                &s->policy, now, error);
  if (receipt == NULL)
    return NULL;
  s->counter = perm->counter;
  s->permission_amount = perm->amount->value;
  s->redelivery = body->redelivery;
  if (s->redelivery && perm->payee_nonce.len == TALLY_NONCE_BYTES)
    memcpy (s->redelivered_nonce, perm->payee_nonce.data, TALLY_NONCE_BYTES);
  if (s->redelivery)
    g_info ("permission %" G_GUINT64_FORMAT " of an earlier request delivered again; the "
            "request offered stays open", perm->counter);

  g_autoptr (Tally__SignedEnvelope) receipt_env = tally_envelope_decode (
    g_bytes_get_data (receipt, NULL), g_bytes_get_size (receipt), NULL);
  Tally__ReceiptSealed rs = TALLY__RECEIPT_SEALED__INIT;
  rs.receipt = receipt_env;
  g_autoptr (GBytes) rs_bytes = tally_message_pack (&rs.base);
  g_autoptr (GBytes) out = tally_session_keys_seal (&s->keys, s->transcript, TALLY_HASH_BYTES, rs_bytes);

  s->receipt = g_bytes_ref (receipt);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_RECEIPT;
  m.receipt.data = (guint8 *) g_bytes_get_data (out, &m.receipt.len);
  tally_session_enter_state (s, TALLY_SESSION_STATE_DONE);
  return tally_session_pack_message (&m);
}
