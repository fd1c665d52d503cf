/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-payment.h"

#include "tally-channel.h"
#include "tally-clock.h"
#include "tally-stream.h"

/* After our last message (receipt or Error) the peer closes first; the
 * link stays open this long so closing cannot cut the message short. */
#define LINGER_MS 3000
/* A refused payer learnt all there is to know from one Error; its link
 * (and file descriptor) goes soon, whatever the peer does. */
#define REFUSE_LINGER_MS 250

/* Holds a channel open until the peer closes it or LINGER_MS pass.  The
 * channel owns it as its handlers' user data; it owns a reference on the
 * channel until it ends, which breaks that cycle. */
typedef struct
{
  TallyChannel *channel;
  GSource *timeout;
} Linger;

/* Weak link from a pending connect back to its payment. */
typedef struct
{
  TallyPayment *payment;
} ConnectData;

struct _TallyPayment
{
  gint ref_count;
  guint id;
  TallySessionRole role;
  TallyPaymentState state;
  TallyRegister *reg;
  TallySession *session;
  TallyChannel *channel;
  ConnectData *connecting;
  guint timeout_seconds;
  GMainContext *context; /* thread-default at creation: the timeout's */
  GSource *timeout;
  GError *error;
  gboolean refused_by_peer; /* failed on the peer's Error message */
  GBytes *receipt;
  char *peer_short_id; /* PeerName of a peer certified without a name */
  gboolean ended_here; /* timed out or cancelled by its owner, not by the peer */
  gboolean linked;     /* a link was attached, even if it is gone now */
  guint linger_ms;     /* after our last message: LINGER_MS, or less for a refusal */
  const TallyPaymentCallbacks *callbacks;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
};

const char *
tally_payment_state_to_string (TallyPaymentState state)
{
  switch (state) {
  case TALLY_PAYMENT_STATE_CONNECTING: return "connecting";
  case TALLY_PAYMENT_STATE_WAITING: return "waiting";
  case TALLY_PAYMENT_STATE_HELLO_SENT:
    return tally_session_state_to_string (TALLY_SESSION_STATE_HELLO_SENT);
  case TALLY_PAYMENT_STATE_CONFIRMING:
    return tally_session_state_to_string (TALLY_SESSION_STATE_CONFIRMING);
  case TALLY_PAYMENT_STATE_PAY_SENT:
    return tally_session_state_to_string (TALLY_SESSION_STATE_PAY_SENT);
  case TALLY_PAYMENT_STATE_WAIT_HELLO:
    return tally_session_state_to_string (TALLY_SESSION_STATE_WAIT_HELLO);
  case TALLY_PAYMENT_STATE_OFFER_SENT:
    return tally_session_state_to_string (TALLY_SESSION_STATE_OFFER_SENT);
  case TALLY_PAYMENT_STATE_WAIT_PAY:
    return tally_session_state_to_string (TALLY_SESSION_STATE_WAIT_PAY);
  case TALLY_PAYMENT_STATE_DONE: return tally_session_state_to_string (TALLY_SESSION_STATE_DONE);
  case TALLY_PAYMENT_STATE_FAILED:
    return tally_session_state_to_string (TALLY_SESSION_STATE_FAILED);
  }
  return "unknown";
}

static TallyPaymentState
state_from_session (TallySessionState state)
{
  switch (state) {
  case TALLY_SESSION_STATE_IDLE: return TALLY_PAYMENT_STATE_CONNECTING;
  case TALLY_SESSION_STATE_HELLO_SENT: return TALLY_PAYMENT_STATE_HELLO_SENT;
  case TALLY_SESSION_STATE_CONFIRMING: return TALLY_PAYMENT_STATE_CONFIRMING;
  case TALLY_SESSION_STATE_PAY_SENT: return TALLY_PAYMENT_STATE_PAY_SENT;
  case TALLY_SESSION_STATE_WAIT_HELLO: return TALLY_PAYMENT_STATE_WAIT_HELLO;
  case TALLY_SESSION_STATE_OFFER_SENT: return TALLY_PAYMENT_STATE_OFFER_SENT;
  case TALLY_SESSION_STATE_WAIT_PAY: return TALLY_PAYMENT_STATE_WAIT_PAY;
  case TALLY_SESSION_STATE_DONE: return TALLY_PAYMENT_STATE_DONE;
  case TALLY_SESSION_STATE_FAILED: return TALLY_PAYMENT_STATE_FAILED;
  }
  return TALLY_PAYMENT_STATE_FAILED;
}

static void
notify_changed (TallyPayment *p)
{
  if (p->callbacks != NULL && p->callbacks->changed != NULL) {
    tally_payment_ref (p);
    p->callbacks->changed (p, p->user_data);
    tally_payment_unref (p);
  }
}

static void
clear_timeout (TallyPayment *p)
{
  if (p->timeout != NULL) {
    g_source_destroy (p->timeout);
    g_clear_pointer (&p->timeout, g_source_unref);
  }
}

static void
enter_state (TallyPayment *p, TallyPaymentState state)
{
  if (p->state == state) {
    /* Same state, new facts (e.g. the payee's amount is known now). */
    notify_changed (p);
    return;
  }

  TallyPaymentState old = p->state;
  p->state = state;

  if (state == TALLY_PAYMENT_STATE_FAILED && p->error != NULL)
    g_info ("payment %u (%s): %s -> %s: %s", p->id, tally_session_role_to_string (p->role),
            tally_payment_state_to_string (old), tally_payment_state_to_string (state),
            p->error->message);
  else
    g_info ("payment %u (%s): %s -> %s", p->id, tally_session_role_to_string (p->role),
            tally_payment_state_to_string (old), tally_payment_state_to_string (state));

  if (tally_payment_is_finished (p))
    clear_timeout (p);

  /* The owner may drop its reference from either callback. */
  tally_payment_ref (p);
  notify_changed (p);

  if (state == TALLY_PAYMENT_STATE_CONFIRMING && p->callbacks != NULL &&
      p->callbacks->confirm != NULL)
    p->callbacks->confirm (p, p->user_data);
  tally_payment_unref (p);
}

/* --- channel teardown --- */

static void
linger_free (gpointer user_data)
{
  Linger *l = user_data;

  g_source_destroy (l->timeout);
  g_source_unref (l->timeout);
  tally_channel_unref (l->channel);
  g_free (l);
}

/* Dropping the handlers frees the Linger and with it the channel; from
 * inside the channel's callback, the channel's own reference keeps it
 * until the callback returns. */
static void
linger_finish (Linger *l)
{
  TallyChannel *channel = l->channel;

  tally_channel_close (channel);
  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
}

static gboolean
linger_timeout (gpointer user_data)
{
  linger_finish (user_data);
  return G_SOURCE_REMOVE;
}

static void
linger_on_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  /* The exchange is over; anything more from the peer is ignored. */
}

static void
linger_on_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  linger_finish (user_data);
}

/* Closes @channel (taken) now, or when @sent_final once the peer closed
 * it or @linger_ms passed: a message we just queued must not be cut off
 * by our own close. */
static void
release_channel (TallyChannel *channel, gboolean sent_final, guint linger_ms)
{
  Linger *l;

  if (!sent_final) {
    tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
    tally_channel_close (channel);
    tally_channel_unref (channel);
    return;
  }
  l = g_new0 (Linger, 1);
  l->channel = channel;
  l->timeout = g_timeout_source_new (linger_ms);
  g_source_set_callback (l->timeout, linger_timeout, l, NULL);
  g_source_set_static_name (l->timeout, "[tally] payment linger");
  g_source_attach (l->timeout, tally_channel_get_context (channel));
  tally_channel_set_handlers (channel, linger_on_message, linger_on_closed, l, linger_free);
}

static void
drop_channel (TallyPayment *p, gboolean sent_final)
{
  if (p->channel == NULL)
    return;
  release_channel (g_steal_pointer (&p->channel), sent_final, p->linger_ms);
}

/* Sends @msg when there is a channel; FALSE (and the reason) otherwise. */
static gboolean
send_message (TallyPayment *p, GBytes *msg, GError **error)
{
  if (p->channel == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "no connection to the peer");
    return FALSE;
  }
  return tally_channel_send (p->channel, msg, error);
}

/* A SessionMessage carrying an Error, for when no session produces one. */
static GBytes *
wire_error_new (TallyError code, const char *message)
{
  /* Our messages may quote what a peer sent; the peer checks the text. */
  g_autofree char *clean = tally_text_sanitize (message, TALLY_TEXT_MAX_BYTES);
  Tally__Error err = TALLY__ERROR__INIT;
  err.code = code;
  err.message = clean;
  Tally__SessionMessage msg = TALLY__SESSION_MESSAGE__INIT;
  msg.msg_case = TALLY__SESSION_MESSAGE__MSG_ERROR;
  msg.error = &err;
  return tally_message_pack (&msg.base);
}

/* Ends the payment with @error (taken).  @wire_error, when set, is the
 * Error message to give the peer first. */
static void
fail (TallyPayment *p, GError *error, GBytes *wire_error)
{
  g_assert (!tally_payment_is_finished (p));

  g_clear_error (&p->error);
  p->error = error;

  gboolean sent = FALSE;
  if (wire_error != NULL && p->channel != NULL) {
    g_autoptr (GError) send_error = NULL;
    sent = tally_channel_send (p->channel, wire_error, &send_error);
    if (!sent)
      g_debug ("payment %u: could not send the Error message: %s", p->id, send_error->message);
  }
  drop_channel (p, sent);

  if (p->connecting != NULL) {
    p->connecting->payment = NULL;
    p->connecting = NULL;
  }
  enter_state (p, TALLY_PAYMENT_STATE_FAILED);
}

/* Fails with @error (taken) when no link can carry an Error any more (or
 * none ever did): the session still aborts with @abort_message, which
 * moves it to FAILED, and the Error message it makes goes nowhere. */
static void
fail_unsent (TallyPayment *p, const char *abort_message, GError *error)
{
  g_autoptr (GBytes) unsent =
    tally_session_abort (p->session, tally_error_code (error), abort_message);

  fail (p, error, NULL);
}

/* Aborts the session with @code and fails with the same. */
static void
abort_with (TallyPayment *p, TallyError code, const char *message)
{
  g_autoptr (GBytes) wire = tally_session_abort (p->session, code, message);
  fail (p, g_error_new_literal (TALLY_ERROR, code, message), wire);
}

static gboolean
on_timeout (gpointer user_data)
{
  TallyPayment *p = user_data;
  g_clear_pointer (&p->timeout, g_source_unref);

  g_autofree char *message =
    g_strdup_printf ("payment timed out after %u seconds", p->timeout_seconds);
  p->ended_here = TRUE;
  abort_with (p, TALLY_ERROR_TIMEOUT, message);
  return G_SOURCE_REMOVE;
}

/* --- lifetime --- */

static TallyPayment *
payment_new (TallyRegister *reg, TallySessionRole role, guint timeout_seconds)
{
  static guint last_id;

  TallyPayment *p = g_new0 (TallyPayment, 1);
  p->ref_count = 1;
  p->id = ++last_id;
  p->role = role;
  p->reg = reg;
  p->timeout_seconds = timeout_seconds;
  p->linger_ms = LINGER_MS;
  p->context = g_main_context_ref_thread_default ();
  p->timeout = g_timeout_source_new_seconds (timeout_seconds);
  g_source_set_callback (p->timeout, on_timeout, p, NULL);
  g_source_set_static_name (p->timeout, "[tally] payment timeout");
  g_source_attach (p->timeout, p->context);
  return p;
}

TallyPayment *
tally_payment_new_payee (TallyRegister *reg,
                         gint64 amount,
                         const char *memo,
                         const TallyAcceptPolicy *policy,
                         guint timeout_seconds,
                         GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (timeout_seconds > 0, NULL);

  g_autoptr (TallySession) session =
    tally_session_new_payee (reg, amount, memo ? memo : "", policy, tally_now (), error);
  if (session == NULL)
    return NULL;

  TallyPayment *p = payment_new (reg, TALLY_SESSION_ROLE_PAYEE, timeout_seconds);
  p->session = g_steal_pointer (&session);
  p->state = TALLY_PAYMENT_STATE_WAITING;
  g_info ("payment %u (payee): request for %" G_GINT64_FORMAT " %s, waiting for a payer", p->id,
          amount, tally_payment_get_currency (p));
  return p;
}

TallyPayment *
tally_payment_new_payer (TallyRegister *reg, const TallyAcceptPolicy *policy, guint timeout_seconds)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (timeout_seconds > 0, NULL);

  TallyPayment *p = payment_new (reg, TALLY_SESSION_ROLE_PAYER, timeout_seconds);
  p->session = tally_session_new_payer (reg, policy);
  p->state = TALLY_PAYMENT_STATE_CONNECTING;
  return p;
}

TallyPayment *
tally_payment_ref (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, NULL);
  g_atomic_int_inc (&p->ref_count);
  return p;
}

void
tally_payment_unref (TallyPayment *p)
{
  if (p == NULL)
    return;
  if (!g_atomic_int_dec_and_test (&p->ref_count))
    return;
  clear_timeout (p);
  if (p->connecting != NULL)
    p->connecting->payment = NULL;
  if (p->channel != NULL && !tally_payment_is_finished (p)) {
    g_autoptr (GBytes) wire =
      tally_session_abort (p->session, TALLY_ERROR_CANCELLED, "payment discarded");
    gboolean sent = wire != NULL && tally_channel_send (p->channel, wire, NULL);
    drop_channel (p, sent);
  }
  drop_channel (p, FALSE);
  if (p->user_data_destroy != NULL)
    p->user_data_destroy (p->user_data);
  tally_session_free (p->session);
  g_main_context_unref (p->context);
  g_clear_error (&p->error);
  g_clear_pointer (&p->receipt, g_bytes_unref);
  g_free (p->peer_short_id);
  g_free (p);
}

void
tally_payment_set_callbacks (TallyPayment *p,
                             const TallyPaymentCallbacks *callbacks,
                             gpointer user_data,
                             GDestroyNotify destroy)
{
  g_return_if_fail (p != NULL);
  GDestroyNotify old_destroy = p->user_data_destroy;
  gpointer old_user_data = p->user_data;
  p->callbacks = callbacks;
  p->user_data = user_data;
  p->user_data_destroy = destroy;
  if (old_destroy != NULL)
    old_destroy (old_user_data);
}

/* --- the exchange --- */

/* Sends the message the session just made (@what names it, or NULL); a
 * link that cannot take it fails the payment as Disconnected and FALSE
 * returns. */
static gboolean
send_or_fail (TallyPayment *p, GBytes *message, const char *what)
{
  g_autoptr (GError) local = NULL;
  if (send_message (p, message, &local))
    return TRUE;
  g_autofree char *sending =
    what != NULL ? g_strdup_printf ("sending %s", what) : g_strdup ("sending");
  fail_unsent (p, local->message,
               g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "%s failed: %s", sending,
                            local->message));
  return FALSE;
}

/* Sends as above and follows the session's state. */
static void
send_and_follow (TallyPayment *p, GBytes *message, const char *what)
{
  if (send_or_fail (p, message, what))
    enter_state (p, state_from_session (tally_session_get_state (p->session)));
}

/* Payer, offer verified (protocol 4.4): a permission to this payee that lost
 * its receipt goes again first, without asking the agent, since nothing new
 * is spent.  TRUE when it did, or when the payment failed trying. */
static gboolean
redeliver_pending (TallyPayment *p)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) pay = tally_session_redeliver (p->session, tally_now (), &local);
  if (pay == NULL) {
    if (g_error_matches (local, TALLY_ERROR, TALLY_ERROR_NOT_FOUND))
      return FALSE;
    g_autoptr (GBytes) wire = tally_session_abort (p->session, tally_error_code (local),
                                                   local->message);
    fail (p, g_steal_pointer (&local), wire);
    return TRUE;
  }
  g_info ("payment %u: delivering again permission %" G_GUINT64_FORMAT
          ", which never got its receipt",
          p->id, tally_session_get_counter (p->session));
  send_and_follow (p, pay, "the permission again");
  return TRUE;
}

static void
on_channel_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  TallyPayment *p = user_data;
  g_autoptr (GBytes) reply = NULL;
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (message, &len);

  switch (p->state) {
  case TALLY_PAYMENT_STATE_HELLO_SENT:
  case TALLY_PAYMENT_STATE_PAY_SENT:
  case TALLY_PAYMENT_STATE_WAIT_HELLO:
  case TALLY_PAYMENT_STATE_OFFER_SENT:
  case TALLY_PAYMENT_STATE_WAIT_PAY:
  /* A message while the agent decides: the session refuses it. */
  case TALLY_PAYMENT_STATE_CONFIRMING:
    break;
  case TALLY_PAYMENT_STATE_CONNECTING:
  case TALLY_PAYMENT_STATE_WAITING:
  case TALLY_PAYMENT_STATE_DONE:
  case TALLY_PAYMENT_STATE_FAILED:
    g_debug ("payment %u: message in state %s ignored", p->id, tally_payment_state_to_string (p->state));
    return;
  }

  if (!tally_session_handle (p->session, data, len, tally_now (), &reply, &error)) {
    p->refused_by_peer = tally_session_is_refused_by_peer (p->session);
    fail (p, g_steal_pointer (&error), reply);
    return;
  }

  /* The payer's reveal goes out before its agent is shown the code. */
  if (reply != NULL && !send_or_fail (p, reply, NULL))
    return;

  TallyPaymentState next = state_from_session (tally_session_get_state (p->session));
  if (next == TALLY_PAYMENT_STATE_CONFIRMING && redeliver_pending (p))
    return;
  if (next == TALLY_PAYMENT_STATE_DONE) {
    p->receipt = tally_session_get_receipt (p->session);
    /* The payee just queued the receipt; the payer has nothing left to say. */
    drop_channel (p, p->role == TALLY_SESSION_ROLE_PAYEE);
  }
  enter_state (p, next);
}

static void
on_channel_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  TallyPayment *p = user_data;

  if (tally_payment_is_finished (p))
    return;

  g_autoptr (GError) why = NULL;
  if (error == NULL)
    why = g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "peer closed the connection in state %s",
                       tally_payment_state_to_string (p->state));
  else if (error->domain == TALLY_ERROR && error->code != TALLY_ERROR_FAILED)
    why = g_error_copy (error);
  else
    why = g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "connection lost: %s", error->message);

  /* The session decides what was committed; abort only moves it to FAILED.
   * Read the message before @why is handed over. */
  const char *abort_message = why->message;
  fail_unsent (p, abort_message, g_steal_pointer (&why));
}

gboolean
tally_payment_attach (TallyPayment *p, TallyLink *link, GError **error)
{
  g_return_val_if_fail (p != NULL && link != NULL, FALSE);

  TallyPaymentState expect =
    p->role == TALLY_SESSION_ROLE_PAYER ? TALLY_PAYMENT_STATE_CONNECTING : TALLY_PAYMENT_STATE_WAITING;
  if (p->state != expect || p->channel != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "payment is %s, not %s",
                 tally_payment_state_to_string (p->state), tally_payment_state_to_string (expect));
    return FALSE;
  }

  p->linked = TRUE;
  p->channel =
    tally_channel_new (link, TALLY_SESSION_MAX_MESSAGE, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_channel_set_handlers (p->channel, on_channel_message, on_channel_closed, p, NULL);
  g_info ("payment %u (%s): connected to %s", p->id, tally_session_role_to_string (p->role),
          tally_link_get_peer (link) ? tally_link_get_peer (link) : "peer");

  if (p->role == TALLY_SESSION_ROLE_PAYEE) {
    enter_state (p, state_from_session (tally_session_get_state (p->session)));
    return TRUE;
  }

  /* Payer step 1: Hello. */
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) hello = tally_session_start (p->session, &local);
  if (hello == NULL) {
    fail (p, g_steal_pointer (&local), NULL);
    return TRUE;
  }
  send_and_follow (p, hello, "Hello");
  return TRUE;
}

gboolean
tally_payment_attach_channel (TallyPayment *p, TallyChannel *channel, GBytes *first, GError **error)
{
  g_return_val_if_fail (p != NULL && channel != NULL && first != NULL, FALSE);

  if (p->role != TALLY_SESSION_ROLE_PAYEE || p->state != TALLY_PAYMENT_STATE_WAITING ||
      p->channel != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "payment is %s %s, not a waiting payee", tally_session_role_to_string (p->role),
                 tally_payment_state_to_string (p->state));
    return FALSE;
  }
  TallyLink *link = tally_channel_get_link (channel);
  p->linked = TRUE;
  p->channel = tally_channel_ref (channel);
  tally_channel_set_handlers (p->channel, on_channel_message, on_channel_closed, p, NULL);
  g_info ("payment %u (payee): connected to %s", p->id,
          tally_link_get_peer (link) ? tally_link_get_peer (link) : "peer");
  enter_state (p, state_from_session (tally_session_get_state (p->session)));
  /* enter_state () may have told the owner, which may have ended it. */
  if (!tally_payment_is_finished (p))
    on_channel_message (p->channel, first, p);
  return TRUE;
}

void
tally_payment_set_request_tag (TallyPayment *p, const guint8 tag[static TALLY_REQUEST_TAG_BYTES])
{
  g_return_if_fail (p != NULL && !p->linked);
  tally_session_set_request_tag (p->session, tag);
}

static void
on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree ConnectData *cd = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) link = tally_stream_connect_finish (result, &error);
  TallyPayment *p = cd->payment;

  if (p == NULL) {
    /* The payment ended while we connected. */
    if (link != NULL)
      tally_link_close (link);
    return;
  }
  p->connecting = NULL;

  if (link == NULL) {
    fail_unsent (p, error->message,
                 g_error_new_literal (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, error->message));
    return;
  }
  tally_payment_attach (p, link, NULL);
}

void
tally_payment_connect (TallyPayment *p, const char *address)
{
  g_return_if_fail (p != NULL && address != NULL);
  g_return_if_fail (p->role == TALLY_SESSION_ROLE_PAYER);
  g_return_if_fail (p->state == TALLY_PAYMENT_STATE_CONNECTING && p->connecting == NULL);

  g_info ("payment %u (payer): connecting to %s", p->id, address);
  p->connecting = g_new0 (ConnectData, 1);
  p->connecting->payment = p;
  tally_stream_connect_async (address, TALLY_STREAM_DEFAULT_MTU, NULL, on_connected, p->connecting);
}

gboolean
tally_payment_fail_connect (TallyPayment *p, const GError *reason, GError **error)
{
  g_return_val_if_fail (p != NULL && reason != NULL, FALSE);

  if (p->role != TALLY_SESSION_ROLE_PAYER || p->state != TALLY_PAYMENT_STATE_CONNECTING ||
      p->channel != NULL || p->connecting != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "payment is %s, not connecting",
                 tally_payment_state_to_string (p->state));
    return FALSE;
  }
  TallyError code = tally_error_code (reason);
  fail_unsent (p, reason->message, g_error_new_literal (TALLY_ERROR, code, reason->message));
  return TRUE;
}

static gboolean
check_confirming (TallyPayment *p, GError **error)
{
  if (p->role != TALLY_SESSION_ROLE_PAYER || p->state != TALLY_PAYMENT_STATE_CONFIRMING) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "payment is %s, not waiting for a confirmation",
                 tally_payment_state_to_string (p->state));
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_payment_confirm (TallyPayment *p, GError **error)
{
  g_return_val_if_fail (p != NULL, FALSE);
  if (!check_confirming (p, error))
    return FALSE;

  /* Payer step 3: spend (committed durably) and send the permission. */
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) pay = tally_session_confirm (p->session, tally_now (), &local);
  if (pay == NULL) {
    /* Tell the payee why (e.g. our limits), whether or not the session
     * already failed itself. */
    g_autoptr (GBytes) wire = tally_session_abort (p->session, tally_error_code (local),
                                                   local->message);
    if (wire == NULL)
      wire = wire_error_new (tally_error_code (local), local->message);
    if (error != NULL)
      *error = g_error_copy (local);
    fail (p, g_steal_pointer (&local), wire);
    return FALSE;
  }
  /* Spent and committed: when sending fails, the register keeps the
   * pending entry to deliver again or reconcile. */
  send_and_follow (p, pay, "the permission");
  return TRUE;
}

gboolean
tally_payment_reject (TallyPayment *p, TallyError code, const char *message, GError **error)
{
  g_return_val_if_fail (p != NULL, FALSE);
  if (!check_confirming (p, error))
    return FALSE;
  abort_with (p, code, message ? message : "payment rejected");
  return TRUE;
}

gboolean
tally_payment_cancel (TallyPayment *p, GError **error)
{
  g_return_val_if_fail (p != NULL, FALSE);
  if (tally_payment_is_finished (p)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "payment is already %s",
                 tally_payment_state_to_string (p->state));
    return FALSE;
  }
  p->ended_here = TRUE;
  abort_with (p, TALLY_ERROR_CANCELLED, "payment cancelled");
  return TRUE;
}

gboolean
tally_payment_abort (TallyPayment *p, TallyError code, const char *message, GError **error)
{
  g_return_val_if_fail (p != NULL && message != NULL, FALSE);
  if (tally_payment_is_finished (p)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "payment is already %s",
                 tally_payment_state_to_string (p->state));
    return FALSE;
  }
  /* Told why, the peer has nothing to wait for: its link goes soon. */
  p->linger_ms = REFUSE_LINGER_MS;
  abort_with (p, code, message);
  return TRUE;
}

gboolean
tally_payment_ended_here (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, FALSE);
  return p->ended_here;
}

gboolean
tally_payment_was_attached (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, FALSE);
  return p->linked;
}

/* --- refusing a payer --- */

void
tally_payment_refuse_link (TallyLink *link, TallyError code, const char *message)
{
  g_return_if_fail (link != NULL);

  tally_payment_refuse_channel (
    tally_channel_new (link, TALLY_SESSION_MAX_MESSAGE, TALLY_FRAME_DEFAULT_TIMEOUT_MS), code,
    message);
}

void
tally_payment_refuse_channel (TallyChannel *channel, TallyError code, const char *message)
{
  g_return_if_fail (channel != NULL);

  TallyLink *link = tally_channel_get_link (channel);
  g_autoptr (GBytes) wire = wire_error_new (code, message);
  g_autoptr (GError) error = NULL;
  gboolean sent = tally_channel_send (channel, wire, &error);
  if (!sent)
    g_debug ("refusing %s: %s", tally_link_get_peer (link) ? tally_link_get_peer (link) : "peer",
             error->message);
  release_channel (channel, sent, REFUSE_LINGER_MS);
}

/* --- properties --- */

guint
tally_payment_get_id (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, 0);
  return p->id;
}

TallySessionRole
tally_payment_get_role (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, TALLY_SESSION_ROLE_PAYER);
  return p->role;
}

TallyPaymentState
tally_payment_get_state (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, TALLY_PAYMENT_STATE_FAILED);
  return p->state;
}

gboolean
tally_payment_is_finished (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, TRUE);
  return p->state == TALLY_PAYMENT_STATE_DONE || p->state == TALLY_PAYMENT_STATE_FAILED;
}

gint64
tally_payment_get_amount (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, 0);
  return tally_session_get_amount (p->session);
}

const char *
tally_payment_get_currency (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, "");
  const char *c = tally_session_get_currency (p->session);
  if (c == NULL || *c == '\0')
    c = tally_register_get_currency (p->reg);
  return c ? c : "";
}

const char *
tally_payment_get_memo (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, "");
  const char *m = tally_session_get_memo (p->session);
  return m ? m : "";
}

const char *
tally_payment_get_peer (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, "");
  const char *id = tally_session_get_peer_id (p->session);
  return id ? id : "";
}

const char *
tally_payment_get_peer_name (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, "");
  const char *name = tally_session_get_peer_name (p->session);
  if (name == NULL)
    return "";
  if (*name != '\0')
    return name;
  /* No certified name: the first digits of the id, as the payee shows its own. */
  if (p->peer_short_id == NULL)
    p->peer_short_id = g_strndup (tally_payment_get_peer (p), TALLY_PAYMENT_SHORT_ID_DIGITS);
  return p->peer_short_id;
}

const char *
tally_payment_get_comparison_code (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, "");
  const char *code = tally_session_get_comparison_code (p->session);
  return code ? code : "";
}

gboolean
tally_payment_is_redelivery (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, FALSE);
  return tally_session_is_redelivery (p->session);
}

const guint8 *
tally_payment_get_request_nonce (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, NULL);
  return tally_session_get_request_nonce (p->session);
}

guint64
tally_payment_get_counter (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, 0);
  return tally_session_get_counter (p->session);
}

GBytes *
tally_payment_get_receipt (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, NULL);
  return p->receipt;
}

const GError *
tally_payment_get_error (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, NULL);
  return p->error;
}

gboolean
tally_payment_is_refused_by_peer (TallyPayment *p)
{
  g_return_val_if_fail (p != NULL, FALSE);
  return p->refused_by_peer;
}
