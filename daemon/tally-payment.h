/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One payment as the daemon runs it: a TallySession driven over a
 * TallyChannel, with the payment timeout and the states a D-Bus client
 * sees.  No D-Bus here; the owner learns about changes through callbacks
 * and answers the payer's confirmation with tally_payment_confirm () or
 * tally_payment_reject ().
 *
 * Payer:  connecting -> hello-sent -> confirming -> pay-sent -> done
 * Payee:  waiting -> wait-hello -> offer-sent -> wait-pay -> done
 *
 * The payee's comparison code appears only in wait-pay, once the payer's
 * reveal opened its commitment (docs/protocol.md 4.2); the payer sends its
 * reveal before it enters confirming.
 * Either side may end in failed; tally_payment_get_error () says why.
 *
 * The register is borrowed and must outlive the payment.  A payment is
 * reference counted (docs/hacking.md, Lifetimes); its timeout and its
 * callbacks run on the thread-default main context it was created on, with
 * a reference held, so a callback may drop the owner's reference.
 */

#include <gio/gio.h>

#include "tally-channel.h"
#include "tally-link.h"
#include "tally-register.h"
#include "tally-session.h"

G_BEGIN_DECLS

typedef struct _TallyPayment TallyPayment;

typedef enum
{
  TALLY_PAYMENT_STATE_CONNECTING, /* payer: connecting to the payee */
  TALLY_PAYMENT_STATE_WAITING,    /* payee: request made, no payer yet */
  TALLY_PAYMENT_STATE_HELLO_SENT,
  TALLY_PAYMENT_STATE_CONFIRMING,
  TALLY_PAYMENT_STATE_PAY_SENT,
  TALLY_PAYMENT_STATE_WAIT_HELLO, /* payee: payer connected */
  TALLY_PAYMENT_STATE_OFFER_SENT,
  TALLY_PAYMENT_STATE_WAIT_PAY, /* payee: reveal checked, code shown */
  TALLY_PAYMENT_STATE_DONE,
  TALLY_PAYMENT_STATE_FAILED,
} TallyPaymentState;

/* "connecting", "waiting", or tally_session_state_to_string () of the
 * matching session state. */
const char *tally_payment_state_to_string (TallyPaymentState state);

typedef struct
{
  /* Any property changed: state, amount, peer, comparison code... */
  void (*changed) (TallyPayment *payment, gpointer user_data);
  /* Payer: the offer verified; answer with confirm or reject. */
  void (*confirm) (TallyPayment *payment, gpointer user_data);
} TallyPaymentCallbacks;

/* Payee: creates the request now (durable nonce); state WAITING. */
TallyPayment *tally_payment_new_payee (TallyRegister *reg,
                                       gint64 amount,
                                       const char *memo,
                                       const TallyAcceptPolicy *policy,
                                       guint timeout_seconds,
                                       GError **error);
/* Payer: state CONNECTING until tally_payment_connect () or
 * tally_payment_start () gives it a link. */
TallyPayment *tally_payment_new_payer (TallyRegister *reg,
                                       const TallyAcceptPolicy *policy,
                                       guint timeout_seconds);
TallyPayment *tally_payment_ref (TallyPayment *payment);
/* The last reference of a payment still running aborts it: the peer is
 * told CANCELLED. */
void tally_payment_unref (TallyPayment *payment);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyPayment, tally_payment_unref)

/* @callbacks is borrowed and must outlive its use; @destroy (may be NULL)
 * gets @user_data when the callbacks are replaced or the payment is
 * freed. */
void tally_payment_set_callbacks (TallyPayment *payment,
                                  const TallyPaymentCallbacks *callbacks,
                                  gpointer user_data,
                                  GDestroyNotify destroy);

/* Payer: connects to a stream address, then starts as below. */
void tally_payment_connect (TallyPayment *payment, const char *address);
/* Payer: sends Hello over @link.  Payee: takes the link of the payer that
 * connected.  Either way the payment takes a reference on @link.
 * WRONG_STATE unless CONNECTING (payer) or WAITING (payee). */
gboolean tally_payment_attach (TallyPayment *payment, TallyLink *link, GError **error);
/* Payee: takes over @channel (a reference), whose payer already sent
 * @first (its Hello, read to learn which request it names), and handles
 * @first at once.  WRONG_STATE unless WAITING. */
gboolean tally_payment_attach_channel (TallyPayment *payment,
                                       TallyChannel *channel,
                                       GBytes *first,
                                       GError **error);
/* Before it is attached.  Payer: its Hello names the request with @tag.
 * Payee: the tag of its request; a Hello naming another is refused with
 * NOT_FOUND (tally_session_set_request_tag ()). */
void tally_payment_set_request_tag (TallyPayment *payment,
                                    const guint8 tag[static TALLY_REQUEST_TAG_BYTES]);

/* Payer, in CONNECTING without a link yet: the connection could not be
 * made (a transport the payment does not drive itself, such as BLE); the
 * payment fails with @reason's code.  WRONG_STATE otherwise. */
gboolean tally_payment_fail_connect (TallyPayment *payment, const GError *reason, GError **error);

/* Payer, in CONFIRMING: spend and send the permission. */
gboolean tally_payment_confirm (TallyPayment *payment, GError **error);
/* Payer, in CONFIRMING: refuse; the payee is told @code. */
gboolean tally_payment_reject (TallyPayment *payment,
                               TallyError code,
                               const char *message,
                               GError **error);
/* Either side, before DONE or FAILED: abort with CANCELLED. */
gboolean tally_payment_cancel (TallyPayment *payment, GError **error);

/* Either side, before DONE or FAILED: abort with @code and @message, which
 * the peer is told (e.g. ALREADY_PAID for a payer whose request another
 * payer took); the link then closes when the peer does, or after a
 * quarter of a second at most.  WRONG_STATE once finished. */
gboolean
tally_payment_abort (TallyPayment *payment, TallyError code, const char *message, GError **error);
/* TRUE once the payment timed out or was cancelled here
 * (tally_payment_cancel ()), rather than ended by the peer or the link. */
gboolean tally_payment_ended_here (TallyPayment *payment);
/* TRUE once tally_payment_attach () gave it a link. */
gboolean tally_payment_was_attached (TallyPayment *payment);

/* Unique in the process, from 1, in creation order. */
guint tally_payment_get_id (TallyPayment *payment);
TallySessionRole tally_payment_get_role (TallyPayment *payment);
TallyPaymentState tally_payment_get_state (TallyPayment *payment);
/* DONE or FAILED. */
gboolean tally_payment_is_finished (TallyPayment *payment);
/* 0 until the payer has seen the offer. */
gint64 tally_payment_get_amount (TallyPayment *payment);
/* The session's currency once known, else the register's, else "". */
const char *tally_payment_get_currency (TallyPayment *payment);
const char *tally_payment_get_memo (TallyPayment *payment);
/* Hex register id of the other side once authenticated, else "". */
const char *tally_payment_get_peer (TallyPayment *payment);
/* What people read for the other side once authenticated: the display name
 * its certificate carries, or the first TALLY_PAYMENT_SHORT_ID_DIGITS hex
 * digits of its id when it has none; "" before. */
#define TALLY_PAYMENT_SHORT_ID_DIGITS 8
const char *tally_payment_get_peer_name (TallyPayment *payment);
/* Six digits once known, else "". */
const char *tally_payment_get_comparison_code (TallyPayment *payment);
guint64 tally_payment_get_counter (TallyPayment *payment);
/* TRUE when the payment delivered again an earlier permission that never
 * got its receipt, instead of paying the request offered
 * (docs/protocol.md 4.4): amount and counter are that permission's. */
gboolean tally_payment_is_redelivery (TallyPayment *payment);
/* Payee: the nonce (TALLY_NONCE_BYTES) of the request the payment answers,
 * as tally_session_get_request_nonce (); NULL for a payer. */
const guint8 *tally_payment_get_request_nonce (TallyPayment *payment);
/* Packed receipt envelope once DONE, else NULL. */
GBytes *tally_payment_get_receipt (TallyPayment *payment);
/* Why the payment FAILED, else NULL. */
const GError *tally_payment_get_error (TallyPayment *payment);
/* TRUE when it FAILED on the peer's Error message (the other register
 * refused), FALSE when this side ended it or it has not failed. */
gboolean tally_payment_is_refused_by_peer (TallyPayment *payment);

/* Sends a wire Error to a payer nobody waits for and closes the link once
 * the peer had a chance to read it: when it closes, or after a quarter of
 * a second at most, so refused links do not pile up. */
void tally_payment_refuse_link (TallyLink *link, TallyError code, const char *message);
/* The same over a channel already made on the link (taken). */
void tally_payment_refuse_channel (TallyChannel *channel, TallyError code, const char *message);

G_END_DECLS
