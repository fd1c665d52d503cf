/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "tally-session.h"

#include <string.h>

#include "tally-hex.h"
#include "tally-peer.h"
#include "tally-session-keys.h"

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

#define EPHEM_BYTES TALLY_SESSION_EPHEM_BYTES
#define MAX_MEMO    256

struct _TallySession
{
  TallyRegister *reg; /* borrowed */
  TallySessionRole role;
  TallySessionState state;
  TallyAcceptPolicy policy;

  guint8 eph_pk[EPHEM_BYTES];
  guint8 eph_sk[crypto_kx_SECRETKEYBYTES];
  guint8 peer_eph[EPHEM_BYTES];
  TallySessionKeys keys;

  guint8 transcript[TALLY_HASH_BYTES];
  guint8 offer_sig[TALLY_SIGNATURE_BYTES];
  guint8 commit_nonce[TALLY_NONCE_BYTES]; /* N_a: payer draws it, payee learns it */
  guint8 commitment[TALLY_HASH_BYTES];    /* C_a from the Hello */
  /* Payer: the tag its Hello names; payee: the tag of its request. */
  guint8 request_tag[TALLY_REQUEST_TAG_BYTES];
  gboolean has_request_tag;

  Tally__PaymentRequest *request;
  Tally__SignedEnvelope *payee_certificate; /* payer side */
  guint64 peer_revocation_serial;

  char code[TALLY_COMPARISON_CODE_DIGITS + 1];
  char *peer_id;
  char *peer_name; /* the peer certificate's display name, "" for none */
  GBytes *receipt;
  guint64 counter;
  gboolean redelivery;       /* the permission answers an earlier request */
  guint8 redelivered_nonce[TALLY_NONCE_BYTES]; /* that request's nonce */
  gint64 permission_amount; /* of the permission sent or received */
  GError *error;
  gboolean refused_by_peer; /* failed on the peer's Error message */
};

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

static void
enter_state (TallySession *s, TallySessionState state)
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

  /* Stored only once a payer's Hello asks for it (payee_handle_hello):
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

static void
transcript_mix (TallySession *s, const guint8 *a, gsize a_len, const guint8 *b, gsize b_len)
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
static void
make_commitment (const guint8 e_a[static EPHEM_BYTES],
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
static void
compute_code (TallySession *s)
{
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("comparison-code", s->transcript, TALLY_HASH_BYTES, h);
  guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
  g_snprintf (s->code, sizeof s->code, "%06u", v % 1000000u);
}

static GBytes *
pack_session_message (Tally__SessionMessage *m)
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
  return pack_session_message (&m);
}

static gboolean
derive_keys (TallySession *s, const guint8 peer_eph[static EPHEM_BYTES], GError **error)
{
  memcpy (s->peer_eph, peer_eph, EPHEM_BYTES);
  return tally_session_keys_derive (&s->keys, s->role == TALLY_SESSION_ROLE_PAYER, s->eph_pk,
                                    s->eph_sk, peer_eph, error);
}

static gboolean
fail (TallySession *s, GError *err, GBytes **reply, gboolean tell_peer, GError **error)
{
  g_info ("session %p (%s) failed in %s: %s", (void *) s, tally_session_role_to_string (s->role),
          tally_session_state_to_string (s->state), err->message);
  if (tell_peer && reply != NULL)
    *reply = error_message (tally_error_code (err), err->message);
  g_clear_error (&s->error);
  s->error = g_error_copy (err);
  enter_state (s, TALLY_SESSION_STATE_FAILED);
  g_propagate_error (error, err);
  return FALSE;
}

/* Applies a revocation list the peer gossiped to us (newer ones only). */
static gboolean
take_revocation_list (TallySession *s, const Tally__SignedEnvelope *list, GError **error)
{
  if (list == NULL)
    return TRUE;
  return tally_register_update_revocation_list (s->reg, list, error);
}

static const Tally__SignedEnvelope *
maybe_our_revocation_list (TallySession *s, guint64 peer_serial, Tally__SignedEnvelope **holder)
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
static Tally__RegisterCertificate *
authenticate_peer (TallySession *s,
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

/* --- payer --- */

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
  make_commitment (s->eph_pk, s->commit_nonce, s->commitment);
  hello.commitment.data = s->commitment;
  hello.commitment.len = TALLY_HASH_BYTES;
  if (s->has_request_tag) {
    hello.request_tag.data = s->request_tag;
    hello.request_tag.len = TALLY_REQUEST_TAG_BYTES;
  }

  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  m.hello = &hello;
  GBytes *out = pack_session_message (&m);
  /* T1 covers the first message exactly as it travels. */
  transcript_mix (s, g_bytes_get_data (out, NULL), g_bytes_get_size (out), NULL, 0);
  enter_state (s, TALLY_SESSION_STATE_HELLO_SENT);
  return out;
}

/* Handshake step 3, payer side: open N_a to the payee.  The offer is fixed
 * now, so the code the reveal completes was steered by nobody. */
static GBytes *
send_reveal (TallySession *s)
{
  Tally__RevealSealed rs = TALLY__REVEAL_SEALED__INIT;
  rs.commit_nonce.data = s->commit_nonce;
  rs.commit_nonce.len = TALLY_NONCE_BYTES;
  g_autoptr (GBytes) plain = tally_message_pack (&rs.base);
  /* Payer tx, nonce 0, ad = T2. */
  g_autoptr (GBytes) ct = tally_session_keys_seal (&s->keys, s->transcript, TALLY_HASH_BYTES, plain);

  transcript_mix (s, s->commit_nonce, TALLY_NONCE_BYTES, NULL, 0);
  compute_code (s);

  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_REVEAL;
  m.reveal.data = (guint8 *) g_bytes_get_data (ct, &m.reveal.len);
  enter_state (s, TALLY_SESSION_STATE_CONFIRMING);
  return pack_session_message (&m);
}

/* Handshake step 2, payer side: open and authenticate the payee's offer. */
static gboolean
payer_check_offer (TallySession *s, const Tally__Offer *offer, guint64 now, GError **error)
{
  if (offer->ephemeral_public_key.len != EPHEM_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "offer: ephemeral key is %zu bytes",
                 offer->ephemeral_public_key.len);
    return FALSE;
  }
  guint8 t1[TALLY_HASH_BYTES];
  memcpy (t1, s->transcript, sizeof t1);
  if (!derive_keys (s, offer->ephemeral_public_key.data, error))
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

  transcript_mix (s, s->peer_eph, EPHEM_BYTES, sealed->body.data, sealed->body.len);

  /* Gossip first: a newer list may revoke the very payee we talk to. */
  if (!take_revocation_list (s, body->revocation_list, error))
    return FALSE;

  g_autoptr (Tally__RegisterCertificate) cert = authenticate_peer (
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
  body.revocation_list =
    (Tally__SignedEnvelope *) maybe_our_revocation_list (s, s->peer_revocation_serial, &rl_holder);
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);

  /* Pay: payer tx, nonce 1 (the reveal took 0), ad = T2r. */
  guint8 t2r[TALLY_HASH_BYTES];
  memcpy (t2r, s->transcript, sizeof t2r);
  transcript_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES, g_bytes_get_data (body_bytes, NULL),
                  g_bytes_get_size (body_bytes));

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
  enter_state (s, TALLY_SESSION_STATE_PAY_SENT);
  return pack_session_message (&m);
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
    fail (s, local, NULL, FALSE, error);
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
static gboolean
payer_handle_receipt (TallySession *s, const ProtobufCBinaryData *ct, GError **error)
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
  enter_state (s, TALLY_SESSION_STATE_DONE);
  return TRUE;
}

/* --- payee --- */

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
static GBytes *
payee_handle_hello (TallySession *s, const Tally__Hello *hello, const guint8 *raw, gsize raw_len,
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
  transcript_mix (s, raw, raw_len, NULL, 0);
  guint8 t1[TALLY_HASH_BYTES];
  memcpy (t1, s->transcript, sizeof t1);
  if (!derive_keys (s, hello->ephemeral_public_key.data, error))
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
  body.revocation_list =
    (Tally__SignedEnvelope *) maybe_our_revocation_list (s, hello->revocation_serial, &rl_holder);
  body.max_message = TALLY_SESSION_MAX_MESSAGE;
  g_autoptr (GBytes) body_bytes = tally_message_pack (&body.base);

  transcript_mix (s, s->eph_pk, EPHEM_BYTES, g_bytes_get_data (body_bytes, NULL),
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
  enter_state (s, TALLY_SESSION_STATE_OFFER_SENT);
  return pack_session_message (&m);
}

/* Handshake step 3, payee side: N_a must open the Hello's commitment;
 * only then is there a code to show. */
static gboolean
payee_handle_reveal (TallySession *s, const ProtobufCBinaryData *ct, GError **error)
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
  make_commitment (s->peer_eph, rs->commit_nonce.data, expect);
  if (sodium_memcmp (expect, s->commitment, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_TRANSCRIPT,
                 "reveal: the nonce does not open the hello's commitment");
    return FALSE;
  }
  memcpy (s->commit_nonce, rs->commit_nonce.data, TALLY_NONCE_BYTES);
  transcript_mix (s, s->commit_nonce, TALLY_NONCE_BYTES, NULL, 0);
  compute_code (s);
  enter_state (s, TALLY_SESSION_STATE_WAIT_PAY);
  return TRUE;
}

/* Handshake step 5, payee side: authenticate the payer, credit, receipt. */
static GBytes *
payee_handle_pay (TallySession *s, const ProtobufCBinaryData *ct, guint64 now, GError **error)
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

  transcript_mix (s, s->offer_sig, TALLY_SIGNATURE_BYTES, sealed->body.data, sealed->body.len);

  if (!take_revocation_list (s, body->revocation_list, error))
    return NULL;

  g_autoptr (Tally__RegisterCertificate) cert = authenticate_peer (
    s, payer_cert, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY,
    s->transcript, TALLY_HASH_BYTES, &sealed->signature, now, error);
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
  enter_state (s, TALLY_SESSION_STATE_DONE);
  return pack_session_message (&m);
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
    return fail (s, local, reply, TRUE, error);

  switch (m->msg_case) {
  case TALLY__SESSION_MESSAGE__MSG_ERROR: {
    TallyError code = tally_error_from_wire (m->error->code);
    local = g_error_new (TALLY_ERROR, code, "peer: %s (%s)",
                         m->error->message && *m->error->message ? m->error->message
                                                                 : "no reason given",
                         tally_error_to_string (code));
    s->refused_by_peer = TRUE;
    return fail (s, local, reply, FALSE, error);
  }
  case TALLY__SESSION_MESSAGE__MSG_HELLO: {
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_WAIT_HELLO) {
      wrong_state (s, "hello", &local);
      return fail (s, local, reply, TRUE, error);
    }
    *reply = payee_handle_hello (s, m->hello, data, len, &local);
    if (*reply == NULL)
      return fail (s, local, reply, TRUE, error);
    return TRUE;
  }
  case TALLY__SESSION_MESSAGE__MSG_OFFER:
    if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_HELLO_SENT) {
      wrong_state (s, "offer", &local);
      return fail (s, local, reply, TRUE, error);
    }
    if (!payer_check_offer (s, m->offer, now, &local))
      return fail (s, local, reply, TRUE, error);
    *reply = send_reveal (s);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_REVEAL:
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_OFFER_SENT) {
      wrong_state (s, "reveal", &local);
      return fail (s, local, reply, TRUE, error);
    }
    if (!payee_handle_reveal (s, &m->reveal, &local))
      return fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_PAY:
    if (s->role != TALLY_SESSION_ROLE_PAYEE || s->state != TALLY_SESSION_STATE_WAIT_PAY) {
      wrong_state (s, "pay", &local);
      return fail (s, local, reply, TRUE, error);
    }
    *reply = payee_handle_pay (s, &m->pay, now, &local);
    if (*reply == NULL)
      return fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
    if (s->role != TALLY_SESSION_ROLE_PAYER || s->state != TALLY_SESSION_STATE_PAY_SENT) {
      wrong_state (s, "receipt", &local);
      return fail (s, local, reply, TRUE, error);
    }
    if (!payer_handle_receipt (s, &m->receipt, &local))
      return fail (s, local, reply, TRUE, error);
    return TRUE;
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE:
    break;
  }
  local = g_error_new (TALLY_ERROR, TALLY_ERROR_MALFORMED, "session message carries nothing");
  return fail (s, local, reply, TRUE, error);
}

GBytes *
tally_session_abort (TallySession *s, TallyError code, const char *message)
{
  g_return_val_if_fail (s != NULL, NULL);

  if (s->state == TALLY_SESSION_STATE_DONE || s->state == TALLY_SESSION_STATE_FAILED)
    return NULL;
  GBytes *reply = NULL;
  fail (s, g_error_new_literal (TALLY_ERROR, code, message ? message : "aborted"), &reply, TRUE,
        NULL);
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
