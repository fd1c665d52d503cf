/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payee's open request: every payer that connects gets a handshake of
 * its own (tally-daemon.h, tally_daemon_request_payment ()), the first
 * valid Pay takes the request, and its Payment1 object shows the oldest
 * handshake in progress.
 */
#include "tally-daemon-private.h"

#include <string.h>

#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-uri.h"

static void
handshake_clear_deadline (Handshake *h)
{
  if (h->step_deadline != NULL) {
    g_source_destroy (h->step_deadline);
    g_clear_pointer (&h->step_deadline, g_source_unref);
  }
}

static gboolean on_step_deadline (gpointer user_data);

/* Seconds a payer in @state has to bring its next message: until its Pay
 * every step has a deadline, so a payer that goes silent anywhere frees
 * its connection and handshake slot; 0 once it needs none. */
static guint
handshake_step_seconds (const Handshake *h, TallyPaymentState state)
{
  switch (state) {
  case TALLY_PAYMENT_STATE_WAIT_HELLO:
  case TALLY_PAYMENT_STATE_OFFER_SENT: return h->daemon->hello_timeout_seconds;
  case TALLY_PAYMENT_STATE_WAIT_PAY: return TALLY_DAEMON_CONFIRM_TIMEOUT_SECONDS;
  case TALLY_PAYMENT_STATE_CONNECTING:
  case TALLY_PAYMENT_STATE_WAITING:
  case TALLY_PAYMENT_STATE_HELLO_SENT:
  case TALLY_PAYMENT_STATE_CONFIRMING:
  case TALLY_PAYMENT_STATE_PAY_SENT:
  case TALLY_PAYMENT_STATE_DONE:
  case TALLY_PAYMENT_STATE_FAILED: return 0;
  }
  return 0;
}

/* Re-arms @h's deadline for @state, once per state it enters. */
static void
handshake_arm_deadline (Handshake *h, TallyPaymentState state)
{
  guint seconds = handshake_step_seconds (h, state);
  if (seconds == 0) {
    handshake_clear_deadline (h);
    return;
  }
  if (h->step_deadline != NULL && h->deadline_state == state)
    return;
  handshake_clear_deadline (h);
  h->deadline_state = state;
  h->step_deadline = g_timeout_source_new_seconds (seconds);
  g_source_set_callback (h->step_deadline, on_step_deadline, h, NULL);
  g_source_set_static_name (h->step_deadline, "[tally] handshake step deadline");
  g_source_attach (h->step_deadline, h->daemon->context);
}

static void
handshake_free (Handshake *h)
{
  handshake_clear_deadline (h);
  tally_payment_set_callbacks (h->payment, NULL, NULL, NULL);
  tally_payment_unref (h->payment);
  g_free (h);
}

void
daemon_request_free (DaemonRequest *request)
{
  if (request == NULL)
    return;
  g_ptr_array_unref (request->handshakes);
  g_hash_table_unref (request->nonces);
  g_free (request->memo);
  g_free (request->address);
  g_free (request->uri);
  g_free (request);
}

DaemonRequest *
daemon_request_of_object (TallyDaemon *d, DaemonPayment *dp)
{
  for (guint i = 0; d->requests != NULL && i < d->requests->len; i++) {
    DaemonRequest *r = d->requests->pdata[i];
    if (r->object == dp)
      return r;
  }
  return NULL;
}

/* No payer may connect any more: the handshakes still going are told
 * @code (ALREADY_PAID once the request took its payers), and advertising
 * stops. */
void
daemon_end_request (TallyDaemon *d, DaemonRequest *r, TallyError code, const char *message)
{
  g_return_if_fail (r != NULL && !r->ended);
  /* First: the handshakes' callbacks below see it ended. */
  r->ended = TRUE;
  g_message ("request at %s: no longer waiting for payers (%u of %u paid)", r->address, r->paid,
             r->payers);
  for (guint i = 0; i < r->handshakes->len; i++) {
    Handshake *h = r->handshakes->pdata[i];
    if (tally_payment_was_attached (h->payment) && !tally_payment_is_finished (h->payment)) {
      g_info ("payment %u: telling %s: %s", tally_payment_get_id (h->payment),
              tally_error_to_string (code), message);
      tally_payment_abort (h->payment, code, message, NULL);
    }
  }
  guint8 tag[TALLY_GATT_TAG_BYTES];
  gboolean advertised = r->tagged;
  memcpy (tag, r->tag, sizeof tag);
  g_ptr_array_remove (d->requests, r); /* frees it */
  /* The other open requests stay on the air. */
  if (d->gatt != NULL && advertised)
    tally_gatt_server_remove_advertisement (d->gatt, tag);
}

void
daemon_request_not_advertised (TallyDaemon *d, const guint8 *tag, const GError *error)
{
  DaemonRequest *r = NULL;
  for (guint i = 0; i < d->requests->len && r == NULL; i++) {
    DaemonRequest *open = d->requests->pdata[i];
    if (open->tagged && memcmp (open->tag, tag, TALLY_GATT_TAG_BYTES) == 0)
      r = open;
  }
  if (r == NULL)
    return;
  g_autofree char *message =
    g_strdup_printf ("the payment request cannot be advertised: %s", error->message);
  g_warning ("request at %s: %s", r->address, message);
  /* Its object fails with it: off the air, no payer finds it. */
  DaemonPayment *dp = r->object;
  g_autoptr (TallyPayment) lead = dp != NULL ? tally_payment_ref (dp->payment) : NULL;
  daemon_end_request (d, r, TALLY_ERROR_POLICY, message);
  if (lead != NULL && !tally_payment_is_finished (lead)) {
    tally_payment_abort (lead, TALLY_ERROR_POLICY, message, NULL);
    daemon_payment_update (dp);
  }
}

/* --- a request's handshakes --- */

static void on_handshake_changed (TallyPayment *payment, gpointer user_data);

static const TallyPaymentCallbacks handshake_callbacks = {
  .changed = on_handshake_changed,
};

/* Seconds until @r times out, at least 1. */
static guint
request_seconds_left (const DaemonRequest *r)
{
  gint64 left = r->deadline - g_get_monotonic_time ();
  return left <= G_USEC_PER_SEC ? 1 : (guint) ((left + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC);
}

/* A fresh payee session for @r (its own nonce), ending when @r does. */
static Handshake *
add_handshake (TallyDaemon *d, DaemonRequest *r, GError **error)
{
  TallyAcceptPolicy policy;
  if (!daemon_policy (d, &policy, error))
    return NULL;
  TallyPayment *payment =
    tally_payment_new_payee (d->reg, r->amount, r->memo, &policy, request_seconds_left (r), error);
  if (payment == NULL)
    return NULL;
  tally_payment_set_request_tag (payment, r->tag);
  Handshake *h = g_new0 (Handshake, 1);
  h->daemon = d;
  h->request = r;
  h->payment = payment;
  tally_payment_set_callbacks (payment, &handshake_callbacks, h, NULL);
  g_ptr_array_add (r->handshakes, h);
  return h;
}

static gboolean
handshake_in_progress (const Handshake *h)
{
  return tally_payment_was_attached (h->payment) && !tally_payment_is_finished (h->payment);
}

/* The oldest handshake of @r with a payer in it, other than @except. */
static Handshake *
request_oldest_in_progress (DaemonRequest *r, const Handshake *except)
{
  for (guint i = 0; i < r->handshakes->len; i++) {
    Handshake *h = r->handshakes->pdata[i];
    if (h != except && handshake_in_progress (h))
      return h;
  }
  return NULL;
}

gboolean
daemon_requests_in_handshake (TallyDaemon *d)
{
  for (guint i = 0; i < d->requests->len; i++)
    if (request_oldest_in_progress (d->requests->pdata[i], NULL) != NULL)
      return TRUE;
  return FALSE;
}

static guint
request_count_in_progress (DaemonRequest *r)
{
  guint n = 0;
  for (guint i = 0; i < r->handshakes->len; i++)
    n += handshake_in_progress (r->handshakes->pdata[i]);
  return n;
}

/* Frees @h and forgets it. */
static void
request_drop_handshake (DaemonRequest *r, Handshake *h)
{
  g_ptr_array_remove (r->handshakes, h);
}

/* @dp shows @payment from now on. */
static void
daemon_payment_show (DaemonPayment *dp, TallyPayment *payment)
{
  if (dp->payment != payment) {
    TallyPayment *old = dp->payment;
    dp->payment = tally_payment_ref (payment);
    tally_dbus_payment_set_payment (dp->object, payment);
    tally_payment_unref (old);
  }
  daemon_payment_update (dp);
}

/* The handshake @r's object shows next: the oldest in progress, else a
 * fresh placeholder.  NULL (and the request should end) when none can be
 * made. */
static Handshake *
request_next_lead (TallyDaemon *d, DaemonRequest *r, GError **error)
{
  Handshake *h = request_oldest_in_progress (r, NULL);
  return h != NULL ? h : add_handshake (d, r, error);
}

/* A fresh Payment1 object for the request's next payer. */
static gboolean
request_add_object (TallyDaemon *d, DaemonRequest *r, GError **error)
{
  Handshake *lead = request_next_lead (d, r, error);
  if (lead == NULL)
    return FALSE;
  DaemonPayment *dp =
    daemon_add_payment (d, tally_payment_ref (lead->payment), NULL, r->uid, error);
  if (dp == NULL)
    return FALSE;
  tally_dbus_payment_set_address (dp->object, r->address);
  tally_dbus_payment_set_request_uri (dp->object, r->uri);
  r->object = dp;
  return TRUE;
}

/* The nonces a request's handshakes offered, and whether a credit took
 * them: a permission delivered again for one of them pays this request. */
#define NONCE_ISSUED   GINT_TO_POINTER (1)
#define NONCE_CREDITED GINT_TO_POINTER (2)

/* @payment offered its request's nonce to a payer. */
static void
request_note_nonce (DaemonRequest *r, TallyPayment *payment)
{
  const guint8 *nonce = tally_payment_get_request_nonce (payment);
  g_autoptr (GBytes) key = g_bytes_new (nonce, TALLY_NONCE_BYTES);
  if (!g_hash_table_contains (r->nonces, key))
    g_hash_table_insert (r->nonces, g_steal_pointer (&key), NONCE_ISSUED);
}

/* Whether @payment's credit counts toward @r's payers: a new permission
 * does; one delivered again does when it names a nonce one of @r's own
 * handshakes offered and no credit took yet (an earlier request's, or one
 * whose receipt was only lost, does not). */
static gboolean
request_counts_credit (DaemonRequest *r, TallyPayment *payment)
{
  const guint8 *nonce = tally_payment_get_request_nonce (payment);
  g_autoptr (GBytes) key = g_bytes_new (nonce, TALLY_NONCE_BYTES);
  gpointer was = g_hash_table_lookup (r->nonces, key);
  gboolean counts = !tally_payment_is_redelivery (payment) || was == NONCE_ISSUED;
  if (was != NULL)
    g_hash_table_replace (r->nonces, g_steal_pointer (&key), NONCE_CREDITED);
  return counts;
}

/* @payment's credit counts toward @r: @r's object shows it, finished, as
 * the payment of @ble (started at @started, monotonic us); the request
 * ends once it took its payers, else a fresh object waits for the next. */
static void
request_credited (TallyDaemon *d,
                  DaemonRequest *r,
                  TallyPayment *payment,
                  gboolean ble,
                  gint64 started)
{
  DaemonPayment *dp = r->object;

  dp->ble = ble;
  dp->ble_started = started;
  daemon_payment_show (dp, payment);
  r->paid++;
  if (r->paid >= r->payers) {
    daemon_end_request (d, r, TALLY_ERROR_ALREADY_PAID, "the payment request was already paid");
    return;
  }
  /* The finished object is no longer the request's: adding the next one
   * may prune it, which must not end the request (nor free @r). */
  r->object = NULL;
  g_autoptr (GError) error = NULL;
  if (!request_add_object (d, r, &error)) {
    g_warning ("request at %s: cannot wait for the next payer: %s", r->address, error->message);
    daemon_end_request (d, r, TALLY_ERROR_CANCELLED, "the payment request ended");
    return;
  }
  g_message ("%s: waiting for the next payer on %s (%u of %u paid)", r->object->path, r->address,
             r->paid, r->payers);
}

/* The open request other than @r whose handshake offered the nonce
 * @payment's permission names and no credit took yet, or NULL. */
static DaemonRequest *
request_owning_nonce (TallyDaemon *d, DaemonRequest *r, TallyPayment *payment)
{
  const guint8 *nonce = tally_payment_get_request_nonce (payment);
  g_autoptr (GBytes) key = g_bytes_new (nonce, TALLY_NONCE_BYTES);
  for (guint i = 0; i < d->requests->len; i++) {
    DaemonRequest *other = d->requests->pdata[i];
    if (other != r && !other->ended && other->object != NULL &&
        g_hash_table_lookup (other->nonces, key) == NONCE_ISSUED) {
      g_hash_table_replace (other->nonces, g_steal_pointer (&key), NONCE_CREDITED);
      return other;
    }
  }
  return NULL;
}

/* A permission delivered again in a session of @r that does not count
 * for @r: @r's object never shows it (@r got nothing).  When it names the
 * nonce of another open request (spent on that one, its Pay lost), the
 * credit is that request's and shows on its object; else (an ended
 * request's, or one whose receipt was only lost) it shows on an object of
 * its own, which belongs to no request. */
static void
request_credit_elsewhere (TallyDaemon *d, DaemonRequest *r, TallyPayment *payment, Handshake *h)
{
  DaemonRequest *owner = request_owning_nonce (d, r, payment);
  if (owner != NULL) {
    g_message ("request at %s: a permission spent on it was delivered again under the tag of "
               "the request at %s",
               owner->address, r->address);
    request_credited (d, owner, payment, h->ble, h->started);
    return;
  }
  g_autoptr (GError) error = NULL;
  DaemonPayment *dp = daemon_add_payment (d, tally_payment_ref (payment), NULL, r->uid, &error);
  if (dp == NULL) {
    g_warning ("cannot show a permission delivered again: %s", error->message);
    return;
  }
  tally_dbus_payment_set_address (dp->object, r->address);
  dp->ble = h->ble;
  dp->ble_started = h->started;
  daemon_payment_update (dp);
  g_message ("%s: an earlier permission delivered again on %s; that request goes on waiting",
             dp->path, r->address);
}

/* @h's Pay was credited (or an earlier permission delivered again): the
 * credit shows on the object of the request it counts for (docs/dbus-api.md
 * Redelivered), and any other payer of a request it filled is told
 * ALREADY_PAID. */
static void
request_paid (TallyDaemon *d, DaemonRequest *r, Handshake *h)
{
  g_autoptr (TallyPayment) payment = tally_payment_ref (h->payment);
  gboolean ble = h->ble;
  gint64 started = h->started;

  /* A permission delivered again pays an earlier request, unless it was
   * spent on this one. */
  if (request_counts_credit (r, payment)) {
    request_drop_handshake (r, h);
    request_credited (d, r, payment, ble, started);
    return;
  }
  request_credit_elsewhere (d, r, payment, h);
  request_drop_handshake (r, h);
  /* @r (which may have ended meanwhile only if it was the owner, which it
   * is not) goes on: its object shows its next payer, if it showed this. */
  DaemonPayment *dp = r->object;
  if (dp == NULL || dp->payment != payment)
    return;
  g_autoptr (GError) error = NULL;
  Handshake *next = request_next_lead (d, r, &error);
  if (next == NULL) {
    g_warning ("request at %s: cannot wait for another payer: %s", r->address, error->message);
    daemon_end_request (d, r, TALLY_ERROR_CANCELLED, "the payment request ended");
    return;
  }
  daemon_payment_show (dp, next->payment);
}

/* The handshake @r's object shows failed.  It ends the request only when
 * it timed out with the request or was cancelled here: whatever a payer
 * does before its Pay is credited (until then it proved nothing) ends
 * only its own handshake, and the object shows another, or waits. */
static void
request_lead_failed (TallyDaemon *d, DaemonRequest *r, Handshake *h)
{
  TallyPayment *payment = h->payment;
  DaemonPayment *dp = r->object;
  const GError *why = tally_payment_get_error (payment);
  gboolean final = tally_payment_ended_here (payment);

  if (final) {
    g_autoptr (TallyPayment) keep = tally_payment_ref (payment);
    TallyError code = tally_error_code (why);
    g_autofree char *message = g_strdup (why->message);
    request_drop_handshake (r, h);
    daemon_payment_update (dp);
    daemon_end_request (d, r, code, message);
    return;
  }

  /* One line per connection a flood makes: not a message. */
  g_info ("%s: a payer's handshake ended (%s); the request goes on", dp->path, why->message);
  request_drop_handshake (r, h);
  g_autoptr (GError) error = NULL;
  Handshake *next = request_next_lead (d, r, &error);
  if (next == NULL) {
    g_warning ("request at %s: cannot wait for another payer: %s", r->address, error->message);
    daemon_payment_update (dp);
    daemon_end_request (d, r, TALLY_ERROR_CANCELLED, "the payment request ended");
    return;
  }
  daemon_payment_show (dp, next->payment);
}

static void
on_handshake_changed (TallyPayment *payment, gpointer user_data)
{
  Handshake *h = user_data;
  TallyDaemon *d = h->daemon;
  DaemonRequest *r = h->request;
  TallyPaymentState state = tally_payment_get_state (payment);

  /* Ended with the request: daemon_end_request () frees it. */
  if (r->ended)
    return;
  if (tally_payment_was_attached (payment))
    handshake_arm_deadline (h, state);
  if (state == TALLY_PAYMENT_STATE_OFFER_SENT)
    request_note_nonce (r, payment);

  gboolean lead = r->object != NULL && r->object->payment == payment;
  switch (state) {
  case TALLY_PAYMENT_STATE_DONE: request_paid (d, r, h); return;
  case TALLY_PAYMENT_STATE_FAILED:
    if (lead)
      request_lead_failed (d, r, h);
    else
      request_drop_handshake (r, h);
    return;
  case TALLY_PAYMENT_STATE_CONNECTING:
  case TALLY_PAYMENT_STATE_WAITING:
  case TALLY_PAYMENT_STATE_HELLO_SENT:
  case TALLY_PAYMENT_STATE_CONFIRMING:
  case TALLY_PAYMENT_STATE_PAY_SENT:
  case TALLY_PAYMENT_STATE_WAIT_HELLO:
  case TALLY_PAYMENT_STATE_OFFER_SENT:
  case TALLY_PAYMENT_STATE_WAIT_PAY: break;
  }
  if (lead)
    daemon_payment_update (r->object);
}

/* What a payer in @state was to send next. */
static const char *
handshake_awaited (TallyPaymentState state)
{
  switch (state) {
  case TALLY_PAYMENT_STATE_OFFER_SENT: return "Reveal";
  case TALLY_PAYMENT_STATE_WAIT_PAY: return "Pay";
  case TALLY_PAYMENT_STATE_WAIT_HELLO:
  case TALLY_PAYMENT_STATE_CONNECTING:
  case TALLY_PAYMENT_STATE_WAITING:
  case TALLY_PAYMENT_STATE_HELLO_SENT:
  case TALLY_PAYMENT_STATE_CONFIRMING:
  case TALLY_PAYMENT_STATE_PAY_SENT:
  case TALLY_PAYMENT_STATE_DONE:
  case TALLY_PAYMENT_STATE_FAILED: break;
  }
  return "Hello";
}

static gboolean
on_step_deadline (gpointer user_data)
{
  Handshake *h = user_data;
  guint seconds = handshake_step_seconds (h, h->deadline_state);
  const char *awaited = handshake_awaited (h->deadline_state);

  g_clear_pointer (&h->step_deadline, g_source_unref);
  g_info ("payment %u: no valid %s within %u s, closing", tally_payment_get_id (h->payment),
          awaited, seconds);
  g_autofree char *message = g_strdup_printf ("no valid %s within %u seconds", awaited, seconds);
  tally_payment_abort (h->payment, TALLY_ERROR_TIMEOUT, message, NULL);
  return G_SOURCE_REMOVE;
}

/* The request URI payers can scan (docs/protocol.md); "" when the
 * address cannot be written in one (a relative or overlong socket path).
 * A stream address names the request by a "tag" field once several may
 * be open (a "ble:" address holds the tag already); with one at a time
 * the URI stays as readers that predate the field accept it. */
static char *
request_uri (TallyDaemon *d, const DaemonRequest *r, guint timeout_seconds)
{
  const Tally__RegisterCertificate *cert = tally_register_get_certificate_info (d->reg);
  g_autoptr (GError) error = NULL;
  g_autofree char *tag =
    !r->tagged && d->max_open_requests > 1 ? tally_hex_encode (r->tag, sizeof r->tag) : NULL;
  char *uri = tally_request_uri_format_tagged (
    r->address, tag, r->amount, tally_register_get_currency (d->reg),
    tally_now () + timeout_seconds, cert ? cert->display_name : NULL, &error);
  if (uri == NULL)
    g_message ("no request URI for %s: %s", r->address, error->message);
  return uri ? uri : g_strdup ("");
}

/* Whether an open request has @tag: each names only one. */
static gboolean
request_tag_in_use (TallyDaemon *d, const guint8 tag[static TALLY_GATT_TAG_BYTES])
{
  for (guint i = 0; i < d->requests->len; i++)
    if (memcmp (((DaemonRequest *) d->requests->pdata[i])->tag, tag, TALLY_GATT_TAG_BYTES) == 0)
      return TRUE;
  return FALSE;
}

char *
tally_daemon_request_payment (TallyDaemon *d,
                              guint32 uid,
                              gint64 amount,
                              const char *memo,
                              guint timeout_seconds,
                              guint payers,
                              GError **error)
{
  g_return_val_if_fail (d != NULL && d->connection != NULL, NULL);
  g_return_val_if_fail (payers >= 1, NULL);

  /* Our own [policy] max_amount bounds what we ask for too: a payer would
   * otherwise sign a payment that our session then refuses. */
  TallyAcceptPolicy policy;
  if (!daemon_policy (d, &policy, error))
    return NULL;
  if (policy.max_amount > 0 && amount > policy.max_amount) {
    const char *currency = tally_register_get_currency (d->reg);
    g_autofree char *asked = tally_amount_format (amount, currency);
    g_autofree char *limit = tally_amount_format (policy.max_amount, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "%s is above our limit of %s per payment ([policy] max_amount)", asked, limit);
    return NULL;
  }

  /* Payers name the request they pay by its tag (docs/protocol.md 4.2). */
  if (d->requests->len >= d->max_open_requests) {
    DaemonRequest *open = d->requests->pdata[0];
    if (d->max_open_requests == 1)
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                   "payment request %s is still waiting for a payer",
                   open->object ? open->object->path : open->address);
    else
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                   "%u payment requests are waiting for payers ([payment] max_open_requests)",
                   d->requests->len);
    return NULL;
  }
  DaemonRequest *r = g_new0 (DaemonRequest, 1);
  r->amount = amount;
  r->uid = uid;
  r->memo = g_strdup (memo ? memo : "");
  r->deadline = g_get_monotonic_time () + (gint64) timeout_seconds * G_USEC_PER_SEC;
  r->payers = payers;
  r->handshakes = g_ptr_array_new_with_free_func ((GDestroyNotify) handshake_free);
  r->nonces =
    g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);
  /* Fresh for every request: lets a payer pick this request, and cannot
   * follow the device from one request to the next. */
  do
    randombytes_buf (r->tag, sizeof r->tag);
  while (request_tag_in_use (d, r->tag));
  if (d->gatt != NULL) {
    r->tagged = TRUE;
    r->address = tally_gatt_tag_to_address (r->tag);
  } else {
    r->address = g_strdup (tally_daemon_get_listen_address (d));
  }
  r->uri = request_uri (d, r, timeout_seconds);
  /* An advertisement of its own (docs/ble.md): refused before anything
   * exists when the controller has no instance free. */
  if (r->tagged && !tally_gatt_server_add_advertisement (d->gatt, r->tag, error)) {
    daemon_request_free (r);
    return NULL;
  }
  g_ptr_array_add (d->requests, r);

  if (!request_add_object (d, r, error)) {
    if (r->tagged)
      tally_gatt_server_remove_advertisement (d->gatt, r->tag);
    g_ptr_array_remove (d->requests, r);
    return NULL;
  }
  DaemonPayment *dp = r->object;
  g_autofree char *tag = tally_hex_encode (r->tag, sizeof r->tag);
  g_message ("%s (uid %u): requesting %" G_GINT64_FORMAT
             " %s from up to %u payer(s), tag %s, waiting on %s%s%s",
             dp->path, uid, amount, tally_payment_get_currency (dp->payment), payers, tag,
             tally_daemon_get_listen_address (d), d->gatt ? " and " : "",
             d->gatt ? r->address : "");
  tally_daemon_register_changed (d);
  return g_strdup (dp->path);
}

/* Gives @link a handshake of the open request: the placeholder its
 * object shows when no other payer is connected, else a fresh one.  The
 * link must bring each message up to its Pay in time
 * (handshake_step_seconds ()). */
void
daemon_take_payer (TallyDaemon *d, TallyLink *link, gboolean ble)
{
  const char *peer = tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer";

  if (d->requests->len == 0) {
    /* One line per connection a flood makes: not a message. */
    g_info ("refusing %s: no payment requested", peer);
    tally_payment_refuse_link (link, TALLY_ERROR_NOT_FOUND, "no payment requested");
    return;
  }
  /* Several may be open: its Hello's tag picks one (tally-daemon-route.c)
   * once it arrives, among the requests open then, even when only one was
   * open at the connection. */
  if (d->max_open_requests > 1) {
    daemon_route_payer (d, link, ble);
    return;
  }
  daemon_request_take_link (d, d->requests->pdata[0], link, NULL, NULL, ble);
}

/* Refuses the payer on @channel (taken) when it has one, else on @link. */
static void
refuse (TallyLink *link, TallyChannel *channel, TallyError code, const char *message)
{
  if (channel != NULL)
    tally_payment_refuse_channel (channel, code, message);
  else
    tally_payment_refuse_link (link, code, message);
}

/* A handshake of @r for a payer: the placeholder its object shows when no
 * other payer is connected, else a fresh one; NULL after refusing @link
 * (or @channel) with the reason. */
static Handshake *
request_handshake_for_payer (TallyDaemon *d,
                             DaemonRequest *r,
                             TallyLink *link,
                             TallyChannel *channel)
{
  const char *peer = tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer";

  Handshake *h = NULL;
  if (r->object != NULL && !tally_payment_was_attached (r->object->payment)) {
    for (guint i = 0; i < r->handshakes->len && h == NULL; i++)
      if (((Handshake *) r->handshakes->pdata[i])->payment == r->object->payment)
        h = r->handshakes->pdata[i];
  }
  if (h == NULL) {
    if (request_count_in_progress (r) >= TALLY_DAEMON_MAX_HANDSHAKES) {
      g_info ("refusing %s: %u payers already in their handshakes", peer,
              TALLY_DAEMON_MAX_HANDSHAKES);
      refuse (link, channel, TALLY_ERROR_POLICY, "too many payers at once; try again");
      return NULL;
    }
    g_autoptr (GError) error = NULL;
    h = add_handshake (d, r, &error);
    if (h == NULL) {
      g_warning ("refusing %s: %s", peer, error->message);
      refuse (link, channel, tally_error_code (error), error->message);
      return NULL;
    }
  }
  return h;
}

void
daemon_request_take_link (TallyDaemon *d,
                          DaemonRequest *r,
                          TallyLink *link,
                          TallyChannel *channel,
                          GBytes *first,
                          gboolean ble)
{
  const char *peer = tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer";
  Handshake *h = request_handshake_for_payer (d, r, link, channel);
  if (h == NULL)
    return;
  h->ble = ble;
  h->started = g_get_monotonic_time ();
  handshake_arm_deadline (h, TALLY_PAYMENT_STATE_WAIT_HELLO);
  g_debug ("payment %u: payer %s connected", tally_payment_get_id (h->payment), peer);

  g_autoptr (GError) error = NULL;
  gboolean taken = channel != NULL
                     ? tally_payment_attach_channel (h->payment, channel, first, &error)
                     : tally_payment_attach (h->payment, link, &error);
  if (!taken) {
    g_warning ("payment %u: cannot take %s: %s", tally_payment_get_id (h->payment), peer,
               error->message);
    refuse (link, channel, tally_error_code (error), error->message);
    return;
  }
  if (channel != NULL)
    tally_channel_unref (channel);
}
