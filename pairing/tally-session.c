/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "tally-session-private.h"

#include <string.h>

#include "tally-hex.h"
#include "tally-peer.h"

/*
 * Key schedule and transcript (docs/protocol.md, "Handshake"):
 *
 *   N_a = 32 random bytes, C_a = H("handshake-commit", e_a || N_a)
 *   T0 = H("transcript-init", "")
 *   T1 = H("transcript", T0 || lp(Hello))          Hello carries C_a
 *   keys: crypto_kx, payer = client (e_a), payee = server (e_b)
 *   T2 = H("transcript", T1 || lp(e_b) || lp(OfferBody))
 *   sig_b = Ed25519(payee, "handshake-offer", T2)
 *   Offer.ciphertext = AEAD(k_payee->payer, n=0, ad=T1||e_b, OfferSealed)
 *   reveal = AEAD(k_payer->payee, n=0, ad=T2, RevealSealed {N_a})
 *   T2r = H("transcript", T2 || lp(N_a))
 *   code = BE32(H("comparison-code", T2r)[0..4]) mod 10^6
 *   T3 = H("transcript", T2r || lp(sig_b) || lp(PayBody))
 *   sig_a = Ed25519(payer, "handshake-pay", T3)
 *   pay = AEAD(k_payer->payee, n=1, ad=T2r, PaySealed)
 *   receipt = AEAD(k_payee->payer, n=1, ad=T3, ReceiptSealed)
 *
 * The commitment is what makes the code worth comparing: the payee fixes
 * its offer before it learns N_a, and the payer fixed N_a before it saw
 * the offer, so neither side (nor a relay playing either) can steer the
 * code; each attempt matches a chosen code with chance 10^-6.
 *
 * lp(x) is a big-endian u32 length followed by x.  AEAD is
 * ChaCha20-Poly1305-IETF with the 96-bit little-endian message counter as
 * nonce; each direction has its own key, so counters never collide.
 */

/*
 * This file holds the session's life, its state machine, the helpers
 * both sides share and the dispatch of incoming messages; each side's
 * handshake steps are in tally-session-payer.c and tally-session-payee.c.
 */

const char *
tally_session_role_to_string (TallySessionRole role)
{
  switch (role) {
  case TALLY_SESSION_ROLE_PAYER: return "payer";
  case TALLY_SESSION_ROLE_PAYEE: return "payee";
  }
  return "unknown";
}

const char *
tally_session_state_to_string (TallySessionState state)
{
  switch (state) {
  case TALLY_SESSION_STATE_IDLE: return "idle";
  case TALLY_SESSION_STATE_HELLO_SENT: return "hello-sent";
  case TALLY_SESSION_STATE_CONFIRMING: return "confirming";
  case TALLY_SESSION_STATE_PAY_SENT: return "pay-sent";
  case TALLY_SESSION_STATE_WAIT_HELLO: return "wait-hello";
  case TALLY_SESSION_STATE_OFFER_SENT: return "offer-sent";
  case TALLY_SESSION_STATE_WAIT_PAY: return "wait-pay";
  case TALLY_SESSION_STATE_DONE: return "done";
  case TALLY_SESSION_STATE_FAILED: return "failed";
  }
  return "unknown";
}

static void
wipe_secrets (TallySession *s)
{
  sodium_memzero (s->eph_sk, sizeof s->eph_sk);
  sodium_memzero (s->commit_nonce, sizeof s->commit_nonce);
  tally_session_keys_clear (&s->keys);
}

void
tally_session_enter_state (TallySession *s, TallySessionState state)
{
  if (s->state == state)
    return;
  g_debug ("session %p (%s): %s -> %s", (void *) s, tally_session_role_to_string (s->role),
           tally_session_state_to_string (s->state), tally_session_state_to_string (state));
  s->state = state;

  switch (state) {
  case TALLY_SESSION_STATE_DONE:
  case TALLY_SESSION_STATE_FAILED:
    /* Nothing more will be encrypted or decrypted. */
    wipe_secrets (s);
    break;
  case TALLY_SESSION_STATE_IDLE:
  case TALLY_SESSION_STATE_HELLO_SENT:
  case TALLY_SESSION_STATE_CONFIRMING:
  case TALLY_SESSION_STATE_PAY_SENT:
  case TALLY_SESSION_STATE_WAIT_HELLO:
  case TALLY_SESSION_STATE_OFFER_SENT:
  case TALLY_SESSION_STATE_WAIT_PAY: break;
  }
}

static TallySession *
session_new (TallyRegister *reg, TallySessionRole role, const TallyAcceptPolicy *policy)
{
  TallySession *s = g_new0 (TallySession, 1);
  s->reg = reg;
  s->role = role;
  if (policy != NULL)
    s->policy = *policy;
  crypto_kx_keypair (s->eph_pk, s->eph_sk);
  tally_hash ("transcript-init", NULL, 0, s->transcript);
  return s;
}

TallySession *
tally_session_new_payer (TallyRegister *reg, const TallyAcceptPolicy *policy)
{
  g_return_val_if_fail (reg != NULL, NULL);

  TallySession *s = session_new (reg, TALLY_SESSION_ROLE_PAYER, policy);
  /* N_a, drawn right after the ephemeral key and committed to in Hello. */
  randombytes_buf (s->commit_nonce, sizeof s->commit_nonce);
  s->state = TALLY_SESSION_STATE_IDLE;
  return s;
}

TallySession *
tally_session_new_payee (TallyRegister *reg,
                         gint64 amount,
                         const char *memo,
                         const TallyAcceptPolicy *policy,
                         guint64 now,
                         GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);

  /* Stored only once a payer's Hello asks for it (tally_session_payee_handle_hello):
   * a connection that never says Hello writes nothing to the register. */
  g_autoptr (Tally__PaymentRequest) request =
    tally_register_prepare_request (reg, amount, memo ? memo : "", now, error);
  if (request == NULL)
    return NULL;

  TallySession *s = session_new (reg, TALLY_SESSION_ROLE_PAYEE, policy);
  s->request = g_steal_pointer (&request);
  s->state = TALLY_SESSION_STATE_WAIT_HELLO;
  return s;
}

void
tally_session_set_request_tag (TallySession *s, const guint8 tag[static TALLY_REQUEST_TAG_BYTES])
{
  g_return_if_fail (s != NULL && tag != NULL);
  g_return_if_fail (s->state == TALLY_SESSION_STATE_IDLE ||
                    s->state == TALLY_SESSION_STATE_WAIT_HELLO);
  memcpy (s->request_tag, tag, TALLY_REQUEST_TAG_BYTES);
  s->has_request_tag = TRUE;
}

void
tally_session_free (TallySession *s)
{
  if (s == NULL)
    return;
  wipe_secrets (s);
  g_clear_pointer (&s->request, tally__payment_request_free);
  g_clear_pointer (&s->payee_certificate, tally__signed_envelope_free);
  g_clear_pointer (&s->receipt, g_bytes_unref);
  g_clear_error (&s->error);
  g_free (s->peer_id);
  g_free (s->peer_name);
  g_free (s);
}

/* --- helpers --- */

void
tally_session_transcript_mix (TallySession *s,
                              const guint8 *a,
                              gsize a_len,
                              const guint8 *b,
                              gsize b_len)
{
  TallyHash h;
  tally_hash_init (&h, "transcript", TALLY_HASH_BYTES);
  tally_hash_update (&h, s->transcript, TALLY_HASH_BYTES);
  tally_hash_update_prefixed (&h, a, a_len);
  if (b != NULL)
    tally_hash_update_prefixed (&h, b, b_len);
  tally_hash_final (&h, s->transcript);
}

/* C_a = H("handshake-commit", e_a || N_a) */
void
tally_session_make_commitment (const guint8 e_a[static EPHEM_BYTES],
                               const guint8 n_a[static TALLY_NONCE_BYTES],
                               guint8 out[static TALLY_HASH_BYTES])
{
  TallyHash h;
  tally_hash_init (&h, "handshake-commit", TALLY_HASH_BYTES);
  tally_hash_update (&h, e_a, EPHEM_BYTES);
  tally_hash_update (&h, n_a, TALLY_NONCE_BYTES);
  tally_hash_final (&h, out);
}

/* Over T2r, so only once N_a is known to both sides. */
void
tally_session_compute_code (TallySession *s)
{
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("comparison-code", s->transcript, TALLY_HASH_BYTES, h);
  guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
  g_snprintf (s->code, sizeof s->code, "%06u", v % 1000000u);
}

GBytes *
tally_session_pack_message (Tally__SessionMessage *m)
{
  return tally_message_pack (&m->base);
}

static GBytes *
error_message (TallyError code, const char *text)
{
  /* Our messages may quote what a peer sent; the peer checks the text. */
  g_autofree char *clean = tally_text_sanitize (text, TALLY_TEXT_MAX_BYTES);
  Tally__Error e = TALLY__ERROR__INIT;
  e.code = (guint32) code;
  e.message = clean;
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_ERROR;
  m.error = &e;
  return tally_session_pack_message (&m);
}

gboolean
tally_session_derive_keys (TallySession *s,
                           const guint8 peer_eph[static EPHEM_BYTES],
                           GError **error)
{
  memcpy (s->peer_eph, peer_eph, EPHEM_BYTES);
  return tally_session_keys_derive (&s->keys, s->role == TALLY_SESSION_ROLE_PAYER, s->eph_pk,
                                    s->eph_sk, peer_eph, error);
}

gboolean
tally_session_fail (TallySession *s,
                    GError *err,
                    GBytes **reply,
                    gboolean tell_peer,
                    GError **error)
{
  g_info ("session %p (%s) failed in %s: %s", (void *) s, tally_session_role_to_string (s->role),
          tally_session_state_to_string (s->state), err->message);
  if (tell_peer && reply != NULL)
    *reply = error_message (tally_error_code (err), err->message);
  g_clear_error (&s->error);
  s->error = g_error_copy (err);
  tally_session_enter_state (s, TALLY_SESSION_STATE_FAILED);
  g_propagate_error (error, err);
  return FALSE;
}

/* Applies a revocation list the peer gossiped to us (newer ones only). */
gboolean
tally_session_take_revocation_list (TallySession *s,
                                    const Tally__SignedEnvelope *list,
                                    GError **error)
{
  if (list == NULL)
    return TRUE;
  return tally_register_update_revocation_list (s->reg, list, error);
}

const Tally__SignedEnvelope *
tally_session_maybe_our_revocation_list (TallySession *s,
                                         guint64 peer_serial,
                                         Tally__SignedEnvelope **holder)
{
  if (tally_register_get_revocation_serial (s->reg) <= peer_serial)
    return NULL;
  g_autoptr (GBytes) b = tally_register_get_revocation_list (s->reg);
  if (b == NULL)
    return NULL;
  gsize len;
  const guint8 *d = g_bytes_get_data (b, &len);
  *holder = tally_envelope_decode (d, len, NULL);
  return *holder;
}

/* The peer check the register makes again before value moves (one rule,
 * in wallet/tally-peer.c), then the transcript signature over @data. */
Tally__RegisterCertificate *
tally_session_authenticate_peer (TallySession *s,
                                 const Tally__SignedEnvelope *cert_env,
                                 Tally__SignatureContext ctx,
                                 const guint8 *data,
                                 gsize len,
                                 const ProtobufCBinaryData *sig,
                                 guint64 now,
                                 GError **error)
{
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_register_check_peer (s->reg, cert_env, &s->policy, now, error);
  if (cert == NULL)
    return NULL;

  GError *local = NULL;
  if (!tally_verify_detached (ctx, data, len, sig->data, sig->len,
                              cert->register_public_key.data, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_TRANSCRIPT,
                 "peer's transcript signature does not verify: %s", local->message);
    g_error_free (local);
    return NULL;
  }
  g_free (s->peer_id);
  s->peer_id = tally_hex_encode (cert->register_id.data, TALLY_ID_BYTES);
  g_free (s->peer_name);
  s->peer_name = g_strdup (cert->display_name != NULL ? cert->display_name : "");
  return g_steal_pointer (&cert);
}

/* --- dispatch --- */

static gboolean
wrong_state (TallySession *s, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "%s is not expected by the %s in %s",
               what, tally_session_role_to_string (s->role),
               tally_session_state_to_string (s->state));
  return FALSE;
}

gboolean
tally_session_handle (TallySession *s,
                      const guint8 *data,
                      gsize len,
                      guint64 now,
                      GBytes **reply,
                      GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  g_return_val_if_fail (reply != NULL && *reply == NULL, FALSE);

  GError *local = NULL;

  if (s->state == TALLY_SESSION_STATE_DONE || s->state == TALLY_SESSION_STATE_FAILED) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "session already %s",
                 tally_session_state_to_string (s->state));
    return FALSE;
  }

  g_autoptr (Tally__SessionMessage) m = TALLY_UNPACK (Tally__SessionMessage, tally__session_message,
                                                      data, len, "session message", &local);
  if (m == NULL)
    return tally_session_fail (s, local, reply, TRUE, error);

  switch (m->msg_case) {
  case TALLY__SESSION_MESSAGE__MSG_ERROR: {
    TallyError code = tally_error_from_wire (m->error->code);
    local = g_error_new (TALLY_ERROR, code, "peer: %s (%s)",
                         m->error->message && *m->error->message ? m->error->message
                                                                 : "no reason given",
                         tally_error_to_string (code));
    s->refused_by_peer = TRUE;
    return tally_session_fail (s, local, reply, FALSE, error);
  }
  case TALLY__SESSION_MESSAGE__MSG_HELLO: {
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_WAIT_HELLO) {
      wrong_state (s, "hello", &local);
      return tally_session_fail (s, local, reply, TRUE, error);
    }
    *reply = tally_session_payee_handle_hello (s, m->hello, data, len, &local);
    if (*reply == NULL)
      return tally_session_fail (s, local, reply, TRUE, error);
    return TRUE;
  }
  case TALLY__SESSION_MESSAGE__MSG_OFFER:
    if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_HELLO_SENT) {
      wrong_state (s, "offer", &local);
      return tally_session_fail (s, local, reply, TRUE, error);
    }
    if (!tally_session_payer_check_offer (s, m->offer, now, &local))
      return tally_session_fail (s, local, reply, TRUE, error);
    *reply = tally_session_send_reveal (s);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_REVEAL:
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_OFFER_SENT) {
      wrong_state (s, "reveal", &local);
      return tally_session_fail (s, local, reply, TRUE, error);
    }
    if (!tally_session_payee_handle_reveal (s, &m->reveal, &local))
      return tally_session_fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_PAY:
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_WAIT_PAY) {
      wrong_state (s, "pay", &local);
      return tally_session_fail (s, local, reply, TRUE, error);
    }
    *reply = tally_session_payee_handle_pay (s, &m->pay, now, &local);
    if (*reply == NULL)
      return tally_session_fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
    if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_PAY_SENT) {
      wrong_state (s, "receipt", &local);
      return tally_session_fail (s, local, reply, TRUE, error);
    }
    if (!tally_session_payer_handle_receipt (s, &m->receipt, &local))
      return tally_session_fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE:
    break;
  }
  local = g_error_new (TALLY_ERROR, TALLY_ERROR_MALFORMED, "session message carries nothing");
  return tally_session_fail (s, local, reply, TRUE, error);
}

GBytes *
tally_session_abort (TallySession *s, TallyError code, const char *message)
{
  g_return_val_if_fail (s != NULL, NULL);

  if (s->state == TALLY_SESSION_STATE_DONE || s->state == TALLY_SESSION_STATE_FAILED)
    return NULL;
  GBytes *reply = NULL;
  tally_session_fail (s, g_error_new_literal (TALLY_ERROR, code, message ? message : "aborted"),
                      &reply, TRUE, NULL);
  return reply;
}

/* --- accessors --- */

TallySessionState
tally_session_get_state (TallySession *s)
{
  return s->state;
}

TallySessionRole
tally_session_get_role (TallySession *s)
{
  return s->role;
}

const guint8 *
tally_session_get_request_nonce (TallySession *s)
{
  if (s->role != TALLY_SESSION_ROLE_PAYEE || s->request == NULL)
    return NULL;
  return s->redelivery ? s->redelivered_nonce : s->request->nonce.data;
}

const char *
tally_session_get_comparison_code (TallySession *s)
{
  return s->code[0] ? s->code : NULL;
}

gint64
tally_session_get_amount (TallySession *s)
{
  if (s->redelivery)
    return s->permission_amount;
  return s->request && s->request->amount ? s->request->amount->value : 0;
}

const char *
tally_session_get_currency (TallySession *s)
{
  return s->request && s->request->amount ? s->request->amount->currency : NULL;
}

const char *
tally_session_get_memo (TallySession *s)
{
  /* The earlier request's memo travels only as a hash. */
  if (s->redelivery)
    return "";
  return s->request ? s->request->memo : NULL;
}

const char *
tally_session_get_peer_id (TallySession *s)
{
  return s->peer_id;
}

const char *
tally_session_get_peer_name (TallySession *s)
{
  return s->peer_name;
}

GBytes *
tally_session_get_receipt (TallySession *s)
{
  return s->receipt ? g_bytes_ref (s->receipt) : NULL;
}

guint64
tally_session_get_counter (TallySession *s)
{
  return s->counter;
}

gboolean
tally_session_is_redelivery (TallySession *s)
{
  return s->redelivery;
}

const GError *
tally_session_get_error (TallySession *s)
{
  return s->error;
}

gboolean
tally_session_is_refused_by_peer (TallySession *s)
{
  g_return_val_if_fail (s != NULL, FALSE);
  return s->state == TALLY_SESSION_STATE_FAILED && s->refused_by_peer;
}
