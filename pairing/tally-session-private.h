/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A session's state and what its files share: tally-session.c (life,
 * state machine, shared helpers, dispatch), tally-session-payer.c and
 * tally-session-payee.c (each side's handshake steps).  Private to
 * pairing/: not installed, included by nothing outside it.
 */

#include "tally-session-keys.h"
#include "tally-session.h"

G_BEGIN_DECLS

#define EPHEM_BYTES TALLY_SESSION_EPHEM_BYTES

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

/* --- state machine (tally-session.c) --- */

/* The one place the state changes; logs every transition and wipes the
 * secrets on DONE and FAILED. */
void tally_session_enter_state (TallySession *s, TallySessionState state);
/* Records @err (taken), tells the peer when @tell_peer and @reply is
 * given, enters FAILED and propagates @err; returns FALSE. */
gboolean tally_session_fail (TallySession *s,
                             GError *err,
                             GBytes **reply,
                             gboolean tell_peer,
                             GError **error);

/* --- helpers both sides use (tally-session.c) --- */

/* T = H("transcript", T || lp(@a) [|| lp(@b)]) */
void tally_session_transcript_mix (TallySession *s,
                                   const guint8 *a,
                                   gsize a_len,
                                   const guint8 *b,
                                   gsize b_len);
void tally_session_make_commitment (const guint8 e_a[static EPHEM_BYTES],
                                    const guint8 n_a[static TALLY_NONCE_BYTES],
                                    guint8 out[static TALLY_HASH_BYTES]);
void tally_session_compute_code (TallySession *s);
GBytes *tally_session_pack_message (Tally__SessionMessage *m);
gboolean tally_session_derive_keys (TallySession *s,
                                    const guint8 peer_eph[static EPHEM_BYTES],
                                    GError **error);
gboolean tally_session_take_revocation_list (TallySession *s,
                                             const Tally__SignedEnvelope *list,
                                             GError **error);
/* Our revocation list when it is newer than @peer_serial, else NULL;
 * @holder owns it. */
const Tally__SignedEnvelope *
tally_session_maybe_our_revocation_list (TallySession *s,
                                         guint64 peer_serial,
                                         Tally__SignedEnvelope **holder);
Tally__RegisterCertificate *tally_session_authenticate_peer (TallySession *s,
                                                             const Tally__SignedEnvelope *cert_env,
                                                             Tally__SignatureContext ctx,
                                                             const guint8 *data,
                                                             gsize len,
                                                             const ProtobufCBinaryData *sig,
                                                             guint64 now,
                                                             GError **error);

/* --- the payer's steps (tally-session-payer.c), called by dispatch --- */

gboolean tally_session_payer_check_offer (TallySession *s,
                                          const Tally__Offer *offer,
                                          guint64 now,
                                          GError **error);
GBytes *tally_session_send_reveal (TallySession *s);
gboolean
tally_session_payer_handle_receipt (TallySession *s, const ProtobufCBinaryData *ct, GError **error);

/* --- the payee's steps (tally-session-payee.c), called by dispatch --- */

GBytes *tally_session_payee_handle_hello (TallySession *s,
                                          const Tally__Hello *hello,
                                          const guint8 *raw,
                                          gsize raw_len,
                                          GError **error);
gboolean
tally_session_payee_handle_reveal (TallySession *s, const ProtobufCBinaryData *ct, GError **error);
GBytes *tally_session_payee_handle_pay (TallySession *s,
                                        const ProtobufCBinaryData *ct,
                                        guint64 now,
                                        GError **error);

G_END_DECLS
