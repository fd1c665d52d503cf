/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The payer's handshake steps (the key schedule is in tally-session.c). */

#include "tally-session-private.h"

#include <string.h>

#define MAX_MEMO 256

GBytes *
tally_session_start (TallySession *s, GError **error)
{
  g_return_val_if_fail (s != NULL, NULL);

  if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_IDLE) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "cannot start a %s session in %s",
                 tally_session_role_to_string (s->role), tally_session_state_to_string (s->state));
    return NULL;
  }

  Tally__Hello hello = TALLY__HELLO__INIT;
  hello.version = TALLY_PROTOCOL_VERSION;
  hello.ephemeral_public_key.data = s->eph_pk;
  hello.ephemeral_public_key.len = EPHEM_BYTES;
  hello.revocation_serial = tally_register_get_revocation_serial (s->reg);
  /* Step 1: N_a is fixed before any offer exists. */
  tally_session_make_commitment (s->eph_pk, s->commit_nonce, s->commitment);
  hello.commitment.data = s->commitment;
  hello.commitment.len = TALLY_HASH_BYTES;
  if (s->has_request_tag) {
    hello.request_tag.data = s->request_tag;
    hello.request_tag.len = TALLY_REQUEST_TAG_BYTES;
  }

  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  m.hello = &hello;
  GBytes *out = tally_session_pack_message (&m);
  /* T1 covers the first message exactly as it travels. */
  tally_session_transcript_mix (s, g_bytes_get_data (out, NULL), g_bytes_get_size (out), NULL, 0);
  tally_session_enter_state (s, TALLY_SESSION_STATE_HELLO_SENT);
  return out;
}

/* Handshake step 3, payer side: open N_a to the payee.  The offer is fixed
 * now, so the code the reveal completes was steered by nobody. */
GBytes *
tally_session_send_reveal (TallySession *s)
{
  Tally__RevealSealed rs = TALLY__REVEAL_SEALED__INIT;
  rs.commit_nonce.data = s->commit_nonce;
  rs.commit_nonce.len = TALLY_NONCE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&rs.base);
  /* Payer tx, nonce 0, ad = T2. */
  g_autoptr (GBytes) ct = tally_session_keys_seal (&s->keys, s->transcript, TALLY_HASH_BYTES, plain);

  tally_session_transcript_mix (s, s->commit_nonce, TALLY_NONCE_BYTES, NULL, 0);
  tally_session_compute_code (s);

  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_REVEAL;
  m.reveal.data = (guint8 *) g_bytes_get_data (ct, &m.reveal.len);
  tally_session_enter_state (s, TALLY_SESSION_STATE_CONFIRMING);
  return tally_session_pack_message (&m);
}

/* Handshake step 2, payer side: open and authenticate the payee's offer. */
gboolean
tally_session_payer_check_offer (TallySession *s,
                                 const Tally__Offer *offer,
                                 guint64 now,
                                 GError **error)
{
  if (offer->ephemeral_public_key.len != EPHEM_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "offer: ephemeral key is %zu bytes",
                 offer->ephemeral_public_key.len);
    return FALSE;
  }
  guint8 t1[TALLY_HASH_BYTES];
  memcpy (t1, s->transcript, sizeof t1);
  if (!tally_session_derive_keys (s, offer->ephemeral_public_key.data, error))
    return FALSE;

  guint8 ad[TALLY_HASH_BYTES + EPHEM_BYTES];
  memcpy (ad, t1, TALLY_HASH_BYTES);
  memcpy (ad + TALLY_HASH_BYTES, s->peer_eph, EPHEM_BYTES);
  g_autoptr (GBytes) plain = tally_session_keys_open (&s->keys, &offer->ciphertext, ad, sizeof ad, "offer", error);
  if (plain == NULL)
    return FALSE;

  gsize plain_len;
  const guint8 *plain_data = g_bytes_get_data (plain, &plain_len);
  g_autoptr (Tally__OfferSealed) sealed =
    TALLY_UNPACK (Tally__OfferSealed, tally__offer_sealed, plain_data, plain_len, "offer", error);
  if (sealed == NULL)
    return FALSE;
  g_autoptr (Tally__OfferBody) body = TALLY_UNPACK (
    Tally__OfferBody, tally__offer_body, sealed->body.data, sealed->body.len, "offer body", error);
  if (body == NULL)
    return FALSE;
  if (body->request == NULL || body->payee_certificate == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "offer: certificate or payment request missing");
    return FALSE;
  }

  tally_session_transcript_mix (s, s->peer_eph, EPHEM_BYTES, sealed->body.data, sealed->body.len);

  /* Gossip first: a newer list may revoke the very payee we talk to. */
  if (!tally_session_take_revocation_list (s, body->revocation_list, error))
    return FALSE;

  g_autoptr (Tally__RegisterCertificate) cert = tally_session_authenticate_peer (
    s, body->payee_certificate, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER,
    s->transcript, TALLY_HASH_BYTES, &sealed->signature, now, error);
  if (cert == NULL)
    return FALSE;

  const Tally__PaymentRequest *req = body->request;
  if (req->payee_register_id.len != TALLY_ID_BYTES ||
      memcmp (req->payee_register_id.data, cert->register_id.data, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "payment request names another payee than the certificate");
    return FALSE;
  }
  if (!tally_check_bytes (&req->nonce, TALLY_NONCE_BYTES, "request nonce", error) ||
      !tally_amount_check (req->amount, tally_register_get_currency (s->reg), error))
    return FALSE;
  if (s->policy.max_amount > 0 && req->amount->value > s->policy.max_amount) {
    const char *currency = tally_register_get_currency (s->reg);
    g_autofree char *asked = tally_amount_format (req->amount->value, currency);
    g_autofree char *limit = tally_amount_format (s->policy.max_amount, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "the request for %s is above our limit of %s per payment ([policy] max_amount)",
                 asked, limit);
    return FALSE;
  }
  if (req->memo != NULL && strlen (req->memo) > MAX_MEMO) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "memo longer than %d bytes", MAX_MEMO);
    return FALSE;
  }

  memcpy (s->offer_sig, sealed->signature.data, TALLY_SIGNATURE_BYTES);
  s->peer_revocation_serial = body->revocation_serial;
  g_autoptr (GBytes) req_bytes = tally_message_pack (&req->base);
  s->request = TALLY_UNPACK (Tally__PaymentRequest, tally__payment_request,
                             g_bytes_get_data (req_bytes, NULL), g_bytes_get_size (req_bytes),
                             "request", error);
  s->payee_certificate = tally_envelope_copy (body->payee_certificate);
  if (s->request == NULL)
    return FALSE;
  if (s->payee_certificate == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "offer: payee certificate");
    return FALSE;
  }
  return TRUE;
}

/* Handshake step 5, payer side: seal @permission, committed before, into
 * the Pay message. */
static GBytes *
send_pay (TallySession *s, GBytes *permission)
{
  g_autoptr (Tally__SignedEnvelope) perm_env = tally_envelope_decode (
    g_bytes_get_data (permission, NULL), g_bytes_get_size (permission), NULL);
  g_autoptr (Tally__DepositPermission) perm =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, perm_env->body.data,
                  perm_env->body.len, "permission", NULL);
  s->counter = perm->counter;
  s->permission_amount = perm->amount ? perm->amount->value : 0;

  g_autoptr (GBytes) cert_bytes = tally_register_get_certificate (s->reg);
  g_autoptr (Tally__SignedEnvelope) cert_env = tally_envelope_decode (
    g_bytes_get_data (cert_bytes, NULL), g_bytes_get_size (cert_bytes), NULL);
  g_autoptr (Tally__SignedEnvelope) rl_holder = NULL;

  Tally__PayBody body = TALLY__PAY_BODY__INIT;
  guint8 cert_hash[TALLY_HASH_BYTES];
  /* Warm cache: a payee that acknowledged this certificate keeps it. */
  if (tally_register_peer_has_certificate (s->reg, s->request->payee_register_id.data)) {
    tally_envelope_body_hash (cert_env, cert_hash);
    body.payer_certificate_hash.data = cert_hash;
    body.payer_certificate_hash.len = sizeof cert_hash;
  } else {
    body.payer_certificate = cert_env;
  }
  body.permission = perm_env;
  body.redelivery = s->redelivery;
  body.revocation_list = (Tally__SignedEnvelope *) tally_session_maybe_our_revocation_list (
    s, s->peer_revocation_serial, &rl_holder);
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);

  /* Pay: payer tx, nonce 1 (the reveal took 0), ad = T2r. */
  guint8 t2r[TALLY_HASH_BYTES];
  memcpy (t2r, s->transcript, sizeof t2r);
  tally_session_transcript_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES,
                                g_bytes_get_data (body_bytes, NULL), g_bytes_get_size (body_bytes));

  guint8 sig[TALLY_SIGNATURE_BYTES];
  tally_register_sign (s->reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
                       s->transcript, TALLY_HASH_BYTES, sig);

  Tally__PaySealed sealed = TALLY__PAY_SEALED__INIT;
  sealed.body.data = (guint8 *) g_bytes_get_data (body_bytes, &sealed.body.len);
  sealed.signature.data = sig;
  sealed.signature.len = sizeof sig;
  g_autoptr (GBytes) plain = tally_message_pack (&sealed.base);
  g_autoptr (GBytes) ct = tally_session_keys_seal (&s->keys, t2r, sizeof t2r, plain);

  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_PAY;
  m.pay.data = (guint8 *) g_bytes_get_data (ct, &m.pay.len);
  tally_session_enter_state (s, TALLY_SESSION_STATE_PAY_SENT);
  return tally_session_pack_message (&m);
}

static gboolean
check_confirming (TallySession *s, const char *what, GError **error)
{
  if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_CONFIRMING) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "nothing to %s in %s", what,
                 tally_session_state_to_string (s->state));
    return FALSE;
  }
  return TRUE;
}

GBytes *
tally_session_confirm (TallySession *s, guint64 now, GError **error)
{
  g_return_val_if_fail (s != NULL, NULL);

  if (!check_confirming (s, "confirm", error))
    return NULL;

  /* Handshake step 5: the permission is committed before it leaves. */
  GError *local = NULL;
  g_autoptr (GBytes) permission =
    tally_register_spend (s->reg, s->payee_certificate, s->request, now, &local);
  if (permission == NULL) {
    tally_session_fail (s, local, NULL, FALSE, error);
    return NULL;
  }
  return send_pay (s, permission);
}

GBytes *
tally_session_redeliver (TallySession *s, guint64 now, GError **error)
{
  g_return_val_if_fail (s != NULL, NULL);

  if (!check_confirming (s, "deliver again", error))
    return NULL;

  /* Protocol 4.4: an earlier permission to this payee that never got its
   * receipt goes again, instead of a new one; nothing is spent. */
  g_autoptr (GBytes) permission =
    tally_register_get_pending (s->reg, s->request->payee_register_id.data, now, error);
  if (permission == NULL)
    return NULL;
  s->redelivery = TRUE;
  return send_pay (s, permission);
}

/* Handshake step 6, payer side: the receipt closes the payment. */
gboolean
tally_session_payer_handle_receipt (TallySession *s, const ProtobufCBinaryData *ct, GError **error)
{
  g_autoptr (GBytes) plain = tally_session_keys_open (&s->keys, ct, s->transcript, TALLY_HASH_BYTES, "receipt", error);
  if (plain == NULL)
    return FALSE;
  g_autoptr (Tally__ReceiptSealed) sealed =
    TALLY_UNPACK (Tally__ReceiptSealed, tally__receipt_sealed, g_bytes_get_data (plain, NULL),
                  g_bytes_get_size (plain), "receipt", error);
  if (sealed == NULL)
    return FALSE;
  if (sealed->receipt == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "receipt missing");
    return FALSE;
  }
  g_autoptr (Tally__Receipt) r =
    TALLY_UNPACK (Tally__Receipt, tally__receipt, sealed->receipt->body.data,
                  sealed->receipt->body.len, "receipt", error);
  if (r == NULL)
    return FALSE;
  if (r->payer_counter != s->counter) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the receipt is for permission %" G_GUINT64_FORMAT ", not %" G_GUINT64_FORMAT,
                 r->payer_counter, s->counter);
    return FALSE;
  }
  if (!tally_register_acknowledge (s->reg, sealed->receipt, error))
    return FALSE;
  s->receipt = tally_envelope_pack (sealed->receipt);
  tally_session_enter_state (s, TALLY_SESSION_STATE_DONE);
  return TRUE;
}
