/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TallyPayment without D-Bus: a payer and a payee over an in-memory link,
 * the agent replaced by a callback.
 */
#include <string.h>

#include "script.h"
#include "tally-channel.h"
#include "tally-clock.h"
#include "tally-link.h"
#include "tally-memlink.h"
#include "tally-stream.h"
#include "tally-payment.h"
#include "test-util.h"

/* Generous: only reached when a test is broken. */
#define TEST_TIMEOUT_SECONDS 20

typedef enum
{
  AGENT_ACCEPT,
  AGENT_REJECT,
  AGENT_SILENT, /* never answers; the test acts instead */
} AgentAnswer;

typedef struct
{
  TestIssuer issuer;
  char *dir;
  TallyRegister *payer_reg;
  TallyRegister *payee_reg;
  AgentAnswer answer;
  guint confirm_calls;
  GPtrArray *payer_states;
  GPtrArray *payee_states;
  char *code_at_confirm;
} Fixture;

static void
fixture_set_up_limits (Fixture *f, gint64 max_payment)
{
  test_issuer_init (&f->issuer);
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("tally-test-payment-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *a = g_build_filename (f->dir, "payer", NULL);
  g_autofree char *b = g_build_filename (f->dir, "payee", NULL);
  f->payer_reg = test_register_new (&f->issuer, a, max_payment, 10000);
  f->payee_reg = test_register_new (&f->issuer, b, max_payment, 0);
  f->payer_states = g_ptr_array_new ();
  f->payee_states = g_ptr_array_new ();
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  fixture_set_up_limits (f, 5000);
}

static void
fixture_set_up_small_limit (Fixture *f, gconstpointer data)
{
  fixture_set_up_limits (f, 2000);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  /* Let lingering channels finish and idle frees run. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  tally_register_free (f->payer_reg);
  tally_register_free (f->payee_reg);
  test_rm_rf (f->dir);
  g_free (f->dir);
  g_ptr_array_unref (f->payer_states);
  g_ptr_array_unref (f->payee_states);
  g_free (f->code_at_confirm);
  test_issuer_clear (&f->issuer);
}

static void
record_state (TallyPayment *payment, GPtrArray *states)
{
  /* State names are static strings. */
  const char *state = tally_payment_state_to_string (tally_payment_get_state (payment));
  if (states->len == 0 || strcmp (g_ptr_array_index (states, states->len - 1), state) != 0)
    g_ptr_array_add (states, (gpointer) state);
}

static void
on_payer_changed (TallyPayment *payment, gpointer user_data)
{
  record_state (payment, ((Fixture *) user_data)->payer_states);
}

static void
on_payee_changed (TallyPayment *payment, gpointer user_data)
{
  record_state (payment, ((Fixture *) user_data)->payee_states);
}

static void
on_payer_confirm (TallyPayment *payment, gpointer user_data)
{
  Fixture *f = user_data;
  g_autoptr (GError) error = NULL;

  f->confirm_calls++;
  f->code_at_confirm = g_strdup (tally_payment_get_comparison_code (payment));
  switch (f->answer) {
  case AGENT_ACCEPT:
    /* May fail on the payer's own limits; the payment then fails. */
    tally_payment_confirm (payment, &error);
    break;
  case AGENT_REJECT:
    g_assert_true (tally_payment_reject (payment, TALLY_ERROR_REJECTED, "declined by the test",
                                         &error));
    g_assert_no_error (error);
    break;
  case AGENT_SILENT:
    break;
  }
}

static const TallyPaymentCallbacks payer_callbacks = {
  .changed = on_payer_changed,
  .confirm = on_payer_confirm,
};

static const TallyPaymentCallbacks payee_callbacks = {
  .changed = on_payee_changed,
};

static void
run_until_finished (TallyPayment *a, TallyPayment *b)
{
  while (!tally_payment_is_finished (a) || (b != NULL && !tally_payment_is_finished (b)))
    g_main_context_iteration (NULL, TRUE);
}

/* A payer and a payee for @amount, linked over a memory pair of @mtu. */
static void
start_pair (Fixture *f, gint64 amount, gsize mtu, TallyPayment **payer, TallyPayment **payee)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) la = NULL;
  g_autoptr (TallyLink) lb = NULL;

  *payee = tally_payment_new_payee (f->payee_reg, amount, "coffee", NULL, TEST_TIMEOUT_SECONDS,
                                    &error);
  g_assert_no_error (error);
  g_assert_cmpint (tally_payment_get_state (*payee), ==, TALLY_PAYMENT_STATE_WAITING);
  *payer = tally_payment_new_payer (f->payer_reg, NULL, TEST_TIMEOUT_SECONDS);
  g_assert_cmpint (tally_payment_get_state (*payer), ==, TALLY_PAYMENT_STATE_CONNECTING);
  tally_payment_set_callbacks (*payer, &payer_callbacks, f, NULL);
  tally_payment_set_callbacks (*payee, &payee_callbacks, f, NULL);

  tally_mem_link_pair (mtu, &la, &lb);
  g_assert_true (tally_payment_attach (*payee, lb, &error));
  g_assert_no_error (error);
  g_assert_true (tally_payment_attach (*payer, la, &error));
  g_assert_no_error (error);
}

static void
assert_states (GPtrArray *got, const char *const *want)
{
  g_autoptr (GString) got_text = g_string_new (NULL);
  g_autoptr (GString) want_text = g_string_new (NULL);
  for (guint i = 0; i < got->len; i++)
    g_string_append_printf (got_text, "%s ", (const char *) got->pdata[i]);
  for (guint i = 0; want[i] != NULL; i++)
    g_string_append_printf (want_text, "%s ", want[i]);
  g_assert_cmpstr (got_text->str, ==, want_text->str);
}

static void
test_completes_and_moves_balances (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;
  g_autofree char *payer_id = tally_register_get_id_hex (f->payer_reg);
  g_autofree char *payee_id = tally_register_get_id_hex (f->payee_reg);

  f->answer = AGENT_ACCEPT;
  /* A small MTU makes every message travel in several fragments. */
  start_pair (f, 1250, TALLY_FRAME_MIN_MTU, &payer, &payee);
  run_until_finished (payer, payee);

  g_assert_null (tally_payment_get_error (payer));
  g_assert_null (tally_payment_get_error (payee));
  g_assert_cmpint (tally_payment_get_state (payer), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (tally_payment_get_state (payee), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpuint (f->confirm_calls, ==, 1);

  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000 - 1250);
  g_assert_cmpint (tally_register_get_balance (f->payee_reg), ==, 1250);

  /* Both sides show the same code, and the payer saw it before saying yes. */
  const char *code = tally_payment_get_comparison_code (payer);
  g_assert_cmpuint (strlen (code), ==, TALLY_COMPARISON_CODE_DIGITS);
  g_assert_cmpstr (code, ==, tally_payment_get_comparison_code (payee));
  g_assert_cmpstr (code, ==, f->code_at_confirm);

  g_assert_cmpint (tally_payment_get_amount (payer), ==, 1250);
  g_assert_cmpint (tally_payment_get_amount (payee), ==, 1250);
  g_assert_cmpstr (tally_payment_get_currency (payer), ==, TEST_CURRENCY);
  g_assert_cmpstr (tally_payment_get_memo (payer), ==, "coffee");
  g_assert_cmpstr (tally_payment_get_peer (payer), ==, payee_id);
  g_assert_cmpstr (tally_payment_get_peer (payee), ==, payer_id);
  g_assert_cmpuint (tally_payment_get_counter (payer), ==, 1);
  g_assert_cmpuint (tally_payment_get_counter (payee), ==, 1);
  g_assert_nonnull (tally_payment_get_receipt (payer));
  g_assert_true (g_bytes_equal (tally_payment_get_receipt (payer),
                                tally_payment_get_receipt (payee)));

  const char *payer_want[] = {
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_HELLO_SENT),
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_CONFIRMING),
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_PAY_SENT),
    "done",
    NULL,
  };
  const char *payee_want[] = {
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_WAIT_HELLO),
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_OFFER_SENT),
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_WAIT_PAY),
    "done",
    NULL,
  };
  assert_states (f->payer_states, payer_want);
  assert_states (f->payee_states, payee_want);
}

static void
test_agent_rejection_leaves_balances (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;

  f->answer = AGENT_REJECT;
  start_pair (f, 1250, TALLY_STREAM_DEFAULT_MTU, &payer, &payee);
  run_until_finished (payer, payee);

  g_assert_cmpuint (f->confirm_calls, ==, 1);
  g_assert_cmpint (tally_payment_get_state (payer), ==, TALLY_PAYMENT_STATE_FAILED);
  g_assert_cmpint (tally_payment_get_state (payee), ==, TALLY_PAYMENT_STATE_FAILED);
  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_REJECTED);
  /* The payee learns why from the payer's Error message. */
  g_assert_error (tally_payment_get_error (payee), TALLY_ERROR, TALLY_ERROR_REJECTED);
  g_assert_null (tally_payment_get_receipt (payer));
  g_assert_cmpuint (tally_payment_get_counter (payer), ==, 0);

  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
  g_assert_cmpint (tally_register_get_balance (f->payee_reg), ==, 0);
  g_assert_cmpuint (tally_register_get_counter (f->payer_reg), ==, 0);
}

static void
on_fragment_close (TallyLink *link, const guint8 *data, gsize len, gpointer user_data)
{
  gboolean *got_hello = user_data;
  *got_hello = TRUE;
  tally_link_close (link);
}

static void
on_link_closed (TallyLink *link, const GError *error, gpointer user_data)
{
}

static void
test_disconnect_after_hello_fails_payer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) la = NULL;
  g_autoptr (TallyLink) lb = NULL;
  g_autoptr (TallyPayment) payer = tally_payment_new_payer (f->payer_reg, NULL, TEST_TIMEOUT_SECONDS);
  gboolean got_hello = FALSE;

  f->answer = AGENT_ACCEPT;
  tally_payment_set_callbacks (payer, &payer_callbacks, f, NULL);
  tally_mem_link_pair (TALLY_STREAM_DEFAULT_MTU, &la, &lb);
  /* A payee that hangs up as soon as the Hello arrives. */
  tally_link_set_handlers (lb, on_fragment_close, on_link_closed, &got_hello, NULL);
  g_assert_true (tally_payment_attach (payer, la, &error));
  g_assert_no_error (error);
  run_until_finished (payer, NULL);

  g_assert_true (got_hello);
  g_assert_cmpuint (f->confirm_calls, ==, 0);
  g_assert_cmpint (tally_payment_get_state (payer), ==, TALLY_PAYMENT_STATE_FAILED);
  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
  g_assert_cmpuint (tally_register_get_counter (f->payer_reg), ==, 0);
}

static void
test_refused_payer_fails_not_found (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) la = NULL;
  g_autoptr (TallyLink) lb = NULL;
  g_autoptr (TallyPayment) payer = tally_payment_new_payer (f->payer_reg, NULL, TEST_TIMEOUT_SECONDS);

  tally_payment_set_callbacks (payer, &payer_callbacks, f, NULL);
  tally_mem_link_pair (TALLY_STREAM_DEFAULT_MTU, &la, &lb);
  g_assert_true (tally_payment_attach (payer, la, &error));
  /* What the daemon does with a payer while no request waits. */
  tally_payment_refuse_link (lb, TALLY_ERROR_NOT_FOUND, "no payment requested");
  run_until_finished (payer, NULL);

  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
}

static void
test_cancel_while_confirming_tells_payee (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;

  f->answer = AGENT_SILENT;
  start_pair (f, 1250, TALLY_STREAM_DEFAULT_MTU, &payer, &payee);
  while (tally_payment_get_state (payer) != TALLY_PAYMENT_STATE_CONFIRMING &&
         !tally_payment_is_finished (payer))
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (tally_payment_get_state (payer), ==, TALLY_PAYMENT_STATE_CONFIRMING);

  g_assert_true (tally_payment_cancel (payer, &error));
  g_assert_no_error (error);
  run_until_finished (payer, payee);

  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_CANCELLED);
  g_assert_error (tally_payment_get_error (payee), TALLY_ERROR, TALLY_ERROR_CANCELLED);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
  g_assert_cmpint (tally_register_get_balance (f->payee_reg), ==, 0);

  /* Finished payments refuse another cancel or a late confirmation. */
  g_assert_false (tally_payment_cancel (payer, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  g_clear_error (&error);
  g_assert_false (tally_payment_confirm (payer, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
}

static void
test_over_limit_fails_both_sides (Fixture *f, gconstpointer data)
{
  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;

  /* The payer's certificate allows 20.00 per payment. */
  f->answer = AGENT_ACCEPT;
  start_pair (f, 2500, TALLY_STREAM_DEFAULT_MTU, &payer, &payee);
  run_until_finished (payer, payee);

  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT);
  g_assert_error (tally_payment_get_error (payee), TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
  g_assert_cmpint (tally_register_get_balance (f->payee_reg), ==, 0);
}

static void
test_waiting_request_times_out (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyPayment) payee =
    tally_payment_new_payee (f->payee_reg, 100, "", NULL, 1, &error);
  g_assert_no_error (error);
  tally_payment_set_callbacks (payee, &payee_callbacks, f, NULL);

  run_until_finished (payee, NULL);

  g_assert_error (tally_payment_get_error (payee), TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  const char *want[] = { "failed", NULL };
  assert_states (f->payee_states, want);
}

/* The timeout belongs to the context that was thread-default when the
 * payment was made, not to the global default. */
static void
test_times_out_on_its_own_context (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMainContext) context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  g_autoptr (TallyPayment) payee =
    tally_payment_new_payee (f->payee_reg, 100, "", NULL, 1, &error);
  g_assert_no_error (error);
  tally_payment_set_callbacks (payee, &payee_callbacks, f, NULL);

  while (!tally_payment_is_finished (payee))
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);

  g_assert_error (tally_payment_get_error (payee), TALLY_ERROR, TALLY_ERROR_TIMEOUT);
}

typedef struct
{
  TallyPayment *payment;
  guint destroyed;
} Holder;

static void
holder_drop_when_finished (TallyPayment *payment, gpointer user_data)
{
  Holder *h = user_data;

  if (tally_payment_is_finished (payment))
    g_clear_pointer (&h->payment, tally_payment_unref);
}

static void
holder_destroyed (gpointer user_data)
{
  ((Holder *) user_data)->destroyed++;
}

static const TallyPaymentCallbacks drop_callbacks = {
  .changed = holder_drop_when_finished,
};

/* The owner may drop its only reference from a callback; the destroy
 * notify runs when callbacks are replaced and when the payment goes. */
static void
test_owner_may_drop_payment_from_callback (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Holder h = { 0 };

  h.payment = tally_payment_new_payee (f->payee_reg, 100, "", NULL, 1, &error);
  g_assert_no_error (error);
  tally_payment_set_callbacks (h.payment, &payee_callbacks, &h, holder_destroyed);
  tally_payment_set_callbacks (h.payment, &drop_callbacks, &h, holder_destroyed);
  g_assert_cmpuint (h.destroyed, ==, 1);

  while (h.payment != NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (h.destroyed, ==, 2);
}

static void
test_attach_refuses_second_link (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;
  g_autoptr (TallyLink) la = NULL;
  g_autoptr (TallyLink) lb = NULL;

  f->answer = AGENT_SILENT;
  start_pair (f, 100, TALLY_STREAM_DEFAULT_MTU, &payer, &payee);
  tally_mem_link_pair (TALLY_STREAM_DEFAULT_MTU, &la, &lb);
  g_assert_false (tally_payment_attach (payee, lb, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  g_clear_error (&error);
  g_assert_false (tally_payment_attach (payer, la, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
}

static void
test_payer_delivers_pending_permission_without_asking_agent (Fixture *f, gconstpointer data)
{
  /* An earlier payment whose Pay message never reached the payee. */
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) earlier =
    tally_register_new_request (f->payee_reg, 700, "lunch", tally_now (), &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee_reg);
  g_autoptr (Tally__SignedEnvelope) cert_env =
    tally_envelope_decode (g_bytes_get_data (cert, NULL), g_bytes_get_size (cert), &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) lost = tally_register_spend (f->payer_reg, cert_env, earlier, tally_now (),
                                                  &error);
  g_assert_no_error (error);

  g_autoptr (TallyPayment) payer = NULL;
  g_autoptr (TallyPayment) payee = NULL;
  f->answer = AGENT_ACCEPT;
  start_pair (f, 1250, TALLY_FRAME_MIN_MTU, &payer, &payee);
  run_until_finished (payer, payee);

  g_assert_null (tally_payment_get_error (payer));
  g_assert_null (tally_payment_get_error (payee));
  g_assert_cmpuint (f->confirm_calls, ==, 0);
  g_assert_true (tally_payment_is_redelivery (payer));
  g_assert_true (tally_payment_is_redelivery (payee));
  g_assert_cmpint (tally_payment_get_amount (payer), ==, 700);
  g_assert_cmpint (tally_payment_get_amount (payee), ==, 700);
  g_assert_cmpuint (tally_payment_get_counter (payer), ==, 1);
  g_assert_true (g_bytes_equal (tally_payment_get_receipt (payer),
                                tally_payment_get_receipt (payee)));
  /* The earlier payment is paid once; the new request is not paid. */
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000 - 700);
  g_assert_cmpint (tally_register_get_balance (f->payee_reg), ==, 700);
  g_autoptr (GBytes) pending = tally_register_get_pending (
    f->payer_reg, tally_register_get_id (f->payee_reg), tally_now (), &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (pending);

  const char *payer_want[] = {
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_HELLO_SENT),
    tally_payment_state_to_string (TALLY_PAYMENT_STATE_PAY_SENT),
    "done",
    NULL,
  };
  assert_states (f->payer_states, payer_want);
}

/* A payee that answers the Hello with an offer it signed honestly, but
 * whose memo is the bytes ff fe 41: not UTF-8. */
typedef struct
{
  Fixture *f;
  Script script;
  TallyChannel *channel;
  gboolean offered;
} HostilePayee;

static void
on_hostile_message (TallyChannel *channel, GBytes *hello, gpointer user_data)
{
  HostilePayee *h = user_data;
  if (h->offered)
    return; /* the payer's Error */
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (h->f->payee_reg, 900, "cake", tally_now (), &error);
  g_assert_no_error (error);
  char *honest = req->memo;
  req->memo = (char *) "\xff\xfe\x41";
  g_autoptr (GBytes) cert = tally_register_get_certificate (h->f->payee_reg);
  g_autoptr (GBytes) offer = script_offer (&h->script, hello, cert, req, h->f->payee_reg, NULL);
  req->memo = honest;
  g_assert_true (tally_channel_send (channel, offer, &error));
  g_assert_no_error (error);
  h->offered = TRUE;
}

static void
on_hostile_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
}

static void
test_payer_refuses_memo_not_utf8 (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) la = NULL;
  g_autoptr (TallyLink) lb = NULL;
  HostilePayee h = { .f = f };

  script_init (&h.script, FALSE);
  tally_mem_link_pair (TALLY_STREAM_DEFAULT_MTU, &la, &lb);
  h.channel = tally_channel_new (lb, TALLY_SESSION_MAX_MESSAGE, 5000);
  tally_channel_set_handlers (h.channel, on_hostile_message, on_hostile_closed, &h, NULL);

  f->answer = AGENT_ACCEPT;
  TallyPayment *payer = tally_payment_new_payer (f->payer_reg, NULL, TEST_TIMEOUT_SECONDS);
  tally_payment_set_callbacks (payer, &payer_callbacks, f, NULL);
  g_assert_true (tally_payment_attach (payer, la, &error));
  g_assert_no_error (error);
  run_until_finished (payer, NULL);

  /* Refused before anything reached the agent, GLib or D-Bus; under
   * G_DEBUG=fatal-criticals (the test environment) a critical aborts. */
  g_assert_true (h.offered);
  g_assert_cmpint (tally_payment_get_state (payer), ==, TALLY_PAYMENT_STATE_FAILED);
  g_assert_error (tally_payment_get_error (payer), TALLY_ERROR, TALLY_ERROR_MALFORMED);
  g_assert_nonnull (strstr (tally_payment_get_error (payer)->message, "UTF-8"));
  g_assert_cmpuint (f->confirm_calls, ==, 0);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 10000);
  g_assert_true (g_utf8_validate (tally_payment_get_memo (payer), -1, NULL));
  tally_payment_unref (payer);
  tally_channel_unref (h.channel);
  script_clear (&h.script);

  /* The payer goes on paying honest payees. */
  TallyPayment *next_payer, *payee;
  start_pair (f, 700, TALLY_STREAM_DEFAULT_MTU, &next_payer, &payee);
  run_until_finished (next_payer, payee);
  g_assert_cmpint (tally_payment_get_state (next_payer), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (tally_register_get_balance (f->payer_reg), ==, 9300);
  tally_payment_unref (next_payer);
  tally_payment_unref (payee);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/payment/payer-refuses-payee-memo-not-utf8-and-keeps-running",
       test_payer_refuses_memo_not_utf8);
  ADD ("/daemon/payment/completes-and-moves-balances", test_completes_and_moves_balances);
  ADD ("/daemon/payment/agent-rejection-leaves-balances", test_agent_rejection_leaves_balances);
  ADD ("/daemon/payment/disconnect-after-hello-fails-payer-disconnected",
       test_disconnect_after_hello_fails_payer);
  ADD ("/daemon/payment/refused-payer-fails-not-found", test_refused_payer_fails_not_found);
  ADD ("/daemon/payment/cancel-while-confirming-tells-payee",
       test_cancel_while_confirming_tells_payee);
  ADD ("/daemon/payment/waiting-request-times-out", test_waiting_request_times_out);
  ADD ("/daemon/payment/times-out-on-its-own-context", test_times_out_on_its_own_context);
  ADD ("/daemon/payment/owner-may-drop-it-from-a-callback",
       test_owner_may_drop_payment_from_callback);
  ADD ("/daemon/payment/attach-refuses-second-link", test_attach_refuses_second_link);
  ADD ("/daemon/payment/payer-delivers-pending-permission-without-asking-agent",
       test_payer_delivers_pending_permission_without_asking_agent);
#undef ADD
  g_test_add ("/daemon/payment/over-certified-limit-fails-both-sides", Fixture, NULL,
              fixture_set_up_small_limit, test_over_limit_fails_both_sides, fixture_tear_down);

  return g_test_run ();
}
