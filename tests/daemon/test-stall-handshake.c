/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stall's payers mid-handshake (stall-fixture.h): one that goes silent
 * after its Hello, one that refuses before its Pay, connections that never
 * say Hello, and one that spent, lost its link before the Pay, and comes
 * back to the same request.  Some speak the protocol by hand, a payer
 * session over a raw channel, to stop where an honest payment would not.
 */
#include <string.h>

#include "stall-fixture.h"
#include "tally-channel.h"
#include "tally-clock.h"
#include "tally-session.h"
#include "tally-stream.h"

/* --- a payer that goes silent mid-handshake, by hand --- */

typedef struct
{
  TallyLink *link;
  gboolean connected;
  guint messages;
  GBytes *last; /* the last message the stall sent */
  gboolean closed;
} RawPayer;

static void
on_raw_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RawPayer *raw = user_data;
  raw->link = tally_stream_connect_finish (result, NULL);
  raw->connected = TRUE;
}

static gboolean
raw_connected (gpointer data)
{
  return ((RawPayer *) data)->connected;
}

static gboolean
raw_closed (gpointer data)
{
  return ((RawPayer *) data)->closed;
}

static void
on_raw_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  RawPayer *raw = user_data;
  raw->messages++;
  g_clear_pointer (&raw->last, g_bytes_unref);
  raw->last = g_bytes_ref (message);
}

static gboolean
raw_got_message (gpointer data)
{
  return ((RawPayer *) data)->last != NULL;
}

static void
on_raw_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  ((RawPayer *) user_data)->closed = TRUE;
}

/* A payer sends one valid Hello, gets the offer, and then says nothing:
 * the stall closes its link at the next step's deadline (1 s here, the
 * request 30 s) and the request goes on, waiting, for a payer who pays. */
static void
test_payer_silent_after_hello_is_closed_at_the_step_deadline (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  Payer silent = { 0 }, payer = { 0 };
  payer_init (f, &silent, "silent");
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);

  TallySession *session = tally_session_new_payer (silent.reg, NULL);
  g_autoptr (GBytes) hello = tally_session_start (session, NULL);
  g_assert_nonnull (hello);
  RawPayer raw = { 0 };
  tally_stream_connect_async (f->listen, TALLY_STREAM_DEFAULT_MTU, NULL, on_raw_connected, &raw);
  wait_until (raw_connected, &raw);
  g_assert_nonnull (raw.link);
  TallyChannel *channel = tally_channel_new (raw.link, 8192, WAIT_LIMIT_US / 1000);
  tally_channel_set_handlers (channel, on_raw_message, on_raw_closed, &raw, NULL);
  g_assert_true (tally_channel_send (channel, hello, NULL));

  /* The offer came, and then the stall closed the link. */
  wait_until (raw_closed, &raw);
  g_assert_cmpuint (raw.messages, >=, 1);
  /* Not the request's timeout: the request waits on. */
  g_autofree char *state = object_state (f, request);
  g_assert_cmpstr (state, ==, "waiting");

  payer_start (f, &payer);
  wait_until (payer_finished, &payer);
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  tally_channel_close (channel);
  tally_channel_unref (channel);
  tally_link_unref (raw.link);
  g_clear_pointer (&raw.last, g_bytes_unref);
  tally_session_free (session);
  payer_clear (&silent);
  payer_clear (&payer);
}

/* A payer at wait-pay has proved nothing to the stall (its certificate
 * comes with its Pay, so the object shows no Peer): any peer able to
 * compute a Reveal gets that far.  One that refuses there, alone with
 * the request, does not end it: the request waits, and a payer pays it. */
static void
test_payer_refusing_before_pay_does_not_end_the_request (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer anon = { .hold = TRUE }, payer = { 0 };
  payer_init (f, &anon, "anon");
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);

  payer_start (f, &anon);
  wait_until (payer_confirming_or_finished, &anon);
  g_assert_true (anon.confirming);
  wait_object_state (f, request, "wait-pay");
  g_autofree char *peer = object_string (f, request, "Peer");
  g_assert_cmpstr (peer, ==, "");

  g_assert_true (tally_payment_reject (anon.payment, TALLY_ERROR_REJECTED, "not mine", NULL));
  wait_until (payer_finished, &anon);
  wait_object_state (f, request, "waiting");
  g_assert_cmpint (tally_register_get_balance (anon.reg), ==, PAYER_BALANCE);

  payer_start (f, &payer);
  wait_until (payer_finished, &payer);
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  payer_clear (&anon);
  payer_clear (&payer);
}

#define JUNK_CONNECTIONS 40

/* Connections that never send a valid Hello (junk, silent until their
 * deadline, dripping) store no payment request in the stall's register:
 * no nonce row, no durable commit.  The payer who then says Hello stores
 * one, and pays. */
static void
test_connections_without_hello_store_no_request (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  Payer payer = { 0 };
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);
  g_assert_cmpuint (stall_nonces (f), ==, 0);

  for (guint i = 0; i < JUNK_CONNECTIONS; i++) {
    Hostile h = { 0 };
    hostile_open (f, &h, HOSTILE_JUNK);
    wait_until (hostile_closed, &h);
    hostile_clear (&h);
  }
  Hostile silent = { 0 }, drip = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  hostile_open (f, &drip, HOSTILE_DRIP);
  wait_until (hostile_closed, &silent);
  wait_until (hostile_closed, &drip);
  wait_object_state (f, request, "waiting");
  g_assert_cmpuint (stall_nonces (f), ==, 0);

  payer_start (f, &payer);
  wait_until (payer_finished, &payer);
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpuint (stall_nonces (f), ==, 1);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  hostile_clear (&silent);
  hostile_clear (&drip);
  payer_clear (&payer);
}

/* A payer spends on a Payers=1 request and its link drops before its Pay
 * arrives: the permission is pending, the request still open.  When the
 * payer comes back to the same request it delivers that permission again:
 * the credit was spent on this request, so it fills it, and the next
 * payer finds no request (not a second credit for one payer's place). */
static void
test_redelivery_spent_on_this_request_counts_toward_payers (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer lost = { 0 }, next = { 0 };
  payer_init (f, &lost, "lost");
  payer_init (f, &next, "next");
  g_autofree char *request = stall_request (f, 1);

  /* The handshake by hand, up to the spend; the Pay never leaves. */
  g_autoptr (GError) error = NULL;
  TallySession *session = tally_session_new_payer (lost.reg, NULL);
  g_autoptr (GBytes) hello = tally_session_start (session, &error);
  g_assert_no_error (error);
  RawPayer raw = { 0 };
  tally_stream_connect_async (f->listen, TALLY_STREAM_DEFAULT_MTU, NULL, on_raw_connected, &raw);
  wait_until (raw_connected, &raw);
  g_assert_nonnull (raw.link);
  TallyChannel *channel = tally_channel_new (raw.link, 8192, WAIT_LIMIT_US / 1000);
  tally_channel_set_handlers (channel, on_raw_message, on_raw_closed, &raw, NULL);
  g_assert_true (tally_channel_send (channel, hello, NULL));
  wait_until (raw_got_message, &raw);
  g_autoptr (GBytes) reveal = NULL;
  gsize len;
  const guint8 *offer = g_bytes_get_data (raw.last, &len);
  g_assert_true (tally_session_handle (session, offer, len, tally_now (), &reveal, &error));
  g_assert_no_error (error);
  g_assert_true (tally_channel_send (channel, reveal, NULL));
  wait_object_state (f, request, "wait-pay");
  g_autoptr (GBytes) pay = tally_session_confirm (session, tally_now (), &error);
  g_assert_no_error (error);
  g_assert_nonnull (pay);
  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  tally_channel_close (channel);
  tally_channel_unref (channel);
  g_assert_cmpint (tally_register_get_balance (lost.reg), ==, PAYER_BALANCE - AMOUNT);
  wait_object_state (f, request, "waiting");

  /* Back to the same request: the pending permission goes again. */
  payer_start (f, &lost);
  wait_until (payer_finished, &lost);
  g_assert_cmpint (tally_payment_get_state (lost.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_true (tally_payment_is_redelivery (lost.payment));
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  wait_object_state (f, request, "done");

  /* The request took its one payer. */
  payer_start (f, &next);
  wait_until (payer_finished, &next);
  g_assert_error (tally_payment_get_error (next.payment), TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  g_assert_cmpint (tally_register_get_balance (next.reg), ==, PAYER_BALANCE);
  g_assert_cmpint (tally_register_get_balance (lost.reg), ==, PAYER_BALANCE - AMOUNT);

  tally_link_unref (raw.link);
  g_clear_pointer (&raw.last, g_bytes_unref);
  tally_session_free (session);
  payer_clear (&lost);
  payer_clear (&next);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  stall_test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (stall_test_bus);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/stall/payer-silent-after-hello-is-closed-at-the-step-deadline",
       test_payer_silent_after_hello_is_closed_at_the_step_deadline);
  ADD ("/daemon/stall/payer-refusing-before-pay-does-not-end-the-request",
       test_payer_refusing_before_pay_does_not_end_the_request);
  ADD ("/daemon/stall/connections-without-hello-store-no-request",
       test_connections_without_hello_store_no_request);
  ADD ("/daemon/stall/redelivery-spent-on-this-request-counts-toward-payers",
       test_redelivery_spent_on_this_request_counts_toward_payers);
#undef ADD

  int status = g_test_run ();
  g_test_dbus_down (stall_test_bus);
  g_object_unref (stall_test_bus);
  return status;
}
