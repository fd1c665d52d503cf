/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The payment handshake, sans-I/O.  Five messages, two round trips from
 * "connected" to "receipt in hand" (the reveal is not answered):
 *
 *   payer                                   payee
 *   Hello {e_a, revocation serial, C_a} ---->
 *                                    <----  Offer {e_b, AEAD(OfferSealed)}
 *   AEAD(RevealSealed {N_a})         ---->  (checks C_a, shows the code)
 *   (agent confirms amount, payee, comparison code)
 *   AEAD(PaySealed)                  ---->
 *                                    <----  AEAD(ReceiptSealed)
 *
 * docs/protocol.md defines the transcript, key schedule and comparison code.
 * The caller moves bytes; the session never touches a socket or main loop.
 */

#include <glib.h>

#include "tally-core.h"
#include "tally-register.h"

G_BEGIN_DECLS

typedef struct _TallySession TallySession;

typedef enum
{
  TALLY_SESSION_ROLE_PAYER,
  TALLY_SESSION_ROLE_PAYEE,
} TallySessionRole;

const char *tally_session_role_to_string (TallySessionRole role);

typedef enum
{
  TALLY_SESSION_STATE_IDLE,       /* payer: not started */
  TALLY_SESSION_STATE_HELLO_SENT, /* payer: waiting for the offer */
  TALLY_SESSION_STATE_CONFIRMING, /* payer: offer verified, agent asked */
  TALLY_SESSION_STATE_PAY_SENT,   /* payer: permission out, waiting for receipt */
  TALLY_SESSION_STATE_WAIT_HELLO, /* payee: request ready */
  TALLY_SESSION_STATE_OFFER_SENT, /* payee: waiting for the payer's reveal */
  TALLY_SESSION_STATE_WAIT_PAY,   /* payee: reveal checked, code shown */
  TALLY_SESSION_STATE_DONE,       /* receipt sent (payee) or held (payer) */
  TALLY_SESSION_STATE_FAILED,
} TallySessionState;

const char *tally_session_state_to_string (TallySessionState state);

#define TALLY_COMPARISON_CODE_DIGITS 6

/* Largest session message either side sends; announced in the offer. */
#define TALLY_SESSION_MAX_MESSAGE 8192

/* Payer side, over @reg.  @policy applies to the payee's revocation list
 * age and amount (may be NULL). */
TallySession *tally_session_new_payer (TallyRegister *reg, const TallyAcceptPolicy *policy);

/* Payee side: checks the payment request and draws its nonce now; the
 * request is stored durably only when a payer's Hello arrives, so a
 * connection that sends none writes nothing to the register. */
TallySession *tally_session_new_payee (TallyRegister *reg,
                                       gint64 amount,
                                       const char *memo,
                                       const TallyAcceptPolicy *policy,
                                       guint64 now,
                                       GError **error);

void tally_session_free (TallySession *session);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySession, tally_session_free)

/* Bytes of a request tag: the payee's name for one of its open requests,
 * advertised over BLE and written in its tally:// URI. */
#define TALLY_REQUEST_TAG_BYTES 4

/* Before the Hello.  Payer: its Hello names the request with @tag.
 * Payee: the tag of this session's request; a Hello naming another is
 * refused with NOT_FOUND before anything is stored (one naming none is
 * taken).  docs/protocol.md 4.2. */
void tally_session_set_request_tag (TallySession *session,
                                    const guint8 tag[static TALLY_REQUEST_TAG_BYTES]);

/* Payee: the checks of a Hello that need no request, in the order of
 * docs/protocol.md 4.2: VERSION; MALFORMED when the ephemeral key or the
 * commitment is not 32 bytes or a request tag is present and not
 * TALLY_REQUEST_TAG_BYTES.  The payee session makes them first; a payee
 * that picks a session by the tag makes them before it looks at the tag. */
gboolean tally_session_check_hello (const Tally__Hello *hello, GError **error);

/* Payer: the Hello message. WRONG_STATE unless IDLE. */
GBytes *tally_session_start (TallySession *session, GError **error);

/*
 * Handles one SessionMessage from the peer.  On success *reply is the next
 * message to send, or NULL when there is none (payee now WAIT_PAY, payer
 * DONE).  A payer that took the offer is CONFIRMING and *reply is its
 * Reveal: send it before the agent is shown the code.
 * On failure the session is FAILED, no register state changed unless the
 * error says otherwise, and *reply (when set) is an Error message to send
 * to the peer before closing.  A peer's Error arrives as that error, with
 * its code.
 */
gboolean tally_session_handle (TallySession *session,
                               const guint8 *data,
                               gsize len,
                               guint64 now,
                               GBytes **reply,
                               GError **error);

/* Payer, in CONFIRMING: the agent said yes.  Spends (committed durably)
 * and returns the Pay message. */
GBytes *tally_session_confirm (TallySession *session, guint64 now, GError **error);

/* Payer, in CONFIRMING: instead of paying the offered request, delivers
 * again our oldest permission to this payee that never got its receipt
 * (docs/protocol.md 4.4) and returns the Pay message.  Nothing is spent;
 * the receipt that comes back settles that earlier payment, and the
 * offered request stays open.  NOT_FOUND, with the session still
 * CONFIRMING, when there is no such permission. */
GBytes *tally_session_redeliver (TallySession *session, guint64 now, GError **error);

/* Either side: give up.  Returns the Error message to send (or NULL when
 * the session is already finished); the session becomes FAILED. */
GBytes *tally_session_abort (TallySession *session, TallyError code, const char *message);

TallySessionState tally_session_get_state (TallySession *session);
TallySessionRole tally_session_get_role (TallySession *session);

/* Six decimal digits, available from CONFIRMING (payer, once the offer is
 * verified and the reveal made) or WAIT_PAY (payee, once the reveal opened
 * the Hello's commitment) on; NULL before. */
const char *tally_session_get_comparison_code (TallySession *session);
gint64 tally_session_get_amount (TallySession *session);
const char *tally_session_get_currency (TallySession *session);
const char *tally_session_get_memo (TallySession *session);
/* Hex register id of the peer once authenticated, else NULL. */
const char *tally_session_get_peer_id (TallySession *session);
/* Display name the issuer certified for the peer once authenticated ("" when
 * it has none), else NULL.  The peer check has validated it. */
const char *tally_session_get_peer_name (TallySession *session);
/* Packed receipt envelope once DONE. */
GBytes *tally_session_get_receipt (TallySession *session);
/* The payer's counter of the permission once it exists, else 0. */
guint64 tally_session_get_counter (TallySession *session);
/* TRUE once the Pay message carried a permission delivered again: the
 * payment it settles is an earlier one, and the offered request (payee)
 * is still open.  The amount is then the permission's and the memo "". */
gboolean tally_session_is_redelivery (TallySession *session);
/* Payee: the TALLY_NONCE_BYTES nonce of the request this session's payment
 * answers: the one offered, or once DONE with a redelivery, the earlier
 * one the permission names.  NULL for a payer. */
const guint8 *tally_session_get_request_nonce (TallySession *session);

/* The error that failed the session, or NULL. */
const GError *tally_session_get_error (TallySession *session);
/* TRUE when the session failed because the peer sent an Error message: the
 * other register refused, not this one. */
gboolean tally_session_is_refused_by_peer (TallySession *session);

G_END_DECLS
