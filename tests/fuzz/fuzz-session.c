/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payment handshake with a man in the middle: a real payer session and
 * a real payee session over registers of this process, and the fuzz input
 * deciding what each side receives.
 *
 * Input:
 *   u16    amount - 1 the payee asks for
 *   u8     setup: bits 0-1 memo; bit 2 the payee's policy caps the amount
 *          below it; bit 3 the payer's does; bit 4 the payee wants a
 *          revocation list younger than a day; bit 5 the payer renews its
 *          certificate first (so the payee has not cached it); bit 6 the
 *          payee's request has a tag and the payer's Hello names it; bit 7
 *          the Hello names another tag (docs/protocol.md 4.2)
 *   steps, at most MAX_STEPS: u8 op, then its operands.  Deliveries go to
 *   the payee and the payer in turn, starting with the payee, which
 *   receives the payer's Hello.  What a side sent in its last turn that
 *   sent anything is a batch: the payer's Reveal and Pay travel together.
 *     op & 0x07   0-3 deliver the batch the other side sent last, in order
 *                 4   deliver a chunk of the input instead (u16 length)
 *                 5   deliver the batch with one byte of one message changed
 *                     (u16 offset, u8 xor)
 *                 6   deliver the batch with one message cut short (u16 length)
 *                 7   deliver again the last message this side received
 *     op & 0x08   first advance the clock by u8 hours (255: a year and a day)
 *     op & 0x10   the payer declines when asked to confirm after this step
 *     op & 0x20   the side whose turn it is aborts instead (u8 error code)
 *     op & 0x40   5 and 6 change the batch's last message, not its first
 *
 * Invariants, after every step:
 *  - a failing handle leaves the session FAILED with a TALLY_ERROR (or,
 *    for a finished session, WRONG_STATE and the state it had);
 *  - the payee's balance moved only if its session is DONE, by exactly the
 *    amount; the payer's only if it confirmed, by minus the amount; the
 *    payee is never DONE unless the payer confirmed, the payer never DONE
 *    unless the payee is, and then both hold the same receipt;
 *  - conservation: payer + payee balances + the amount in flight (spent,
 *    not yet received) never change;
 *  - every text a session shows (memo, currency, peer id, code, error
 *    message) is valid UTF-8, and all but the error message pass
 *    tally_text_check ();
 *  - a payer asked to confirm has sent its reveal and shows a comparison
 *    code, the payee's amount, currency, memo and register id, while the
 *    payee, which has not seen the reveal yet, shows no code;
 *  - the payee shows a code only once a reveal opened the Hello's
 *    commitment (WAIT_PAY on), and then the payer's;
 *  - a payer whose Hello names another request than the payee's never
 *    pays it, and the payee is never credited;
 *  - relaying every message untouched, without policies in the way or
 *    another request named, completes the payment on both sides.
 */

#include <string.h>

#include "fuzz-common.h"
#include "tally-session.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#define MAX_STEPS 12
#define FUNDS     ((gint64) 1 << 50)
/* Bounds the registers' databases on long runs. */
#define INPUTS_PER_REGISTER 10000

#define OP_ACTION  0x07
#define OP_CLOCK   0x08
#define OP_DECLINE 0x10
#define OP_ABORT   0x20
#define OP_LAST    0x40

#define SETUP_MEMO          0x03
#define SETUP_PAYEE_POLICY  0x04
#define SETUP_PAYER_POLICY  0x08
#define SETUP_REVOCATION    0x10
#define SETUP_RENEW         0x20
#define SETUP_TAG           0x40
#define SETUP_OTHER_TAG     0x80

static const guint8 payee_tag[TALLY_REQUEST_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
static const guint8 other_tag[TALLY_REQUEST_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3e };

enum
{
  PAYEE,
  PAYER,
};

static TallyRegister *payer_reg, *payee_reg;
static guint64 payer_serial;
static guint inputs;
static char long_memo[257];

static void payment_round (const guint8 *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  memset (long_memo, 'm', sizeof long_memo - 1);
  return 0;
}

static void
registers_setup (void)
{
  g_clear_pointer (&payer_reg, tally_register_free);
  g_clear_pointer (&payee_reg, tally_register_free);

  Tally__Limits limits = fuzz_limits ();
  payer_reg = fuzz_register_new ("payer", &limits);
  payee_reg = fuzz_register_new ("payee", &limits);
  payer_serial = 1;
  fuzz_register_fund (payer_reg, 1, FUNDS);

  /* The payer knows a list the payee has yet to hear of: gossip. */
  guint8 revoked[TALLY_ID_BYTES];
  fuzz_key_register_id (FUZZ_KEY_REVOKED_PAYER, revoked);
  g_autoptr (GBytes) list = fuzz_revocation_list (1, FUZZ_NOW, revoked, 1);
  g_autoptr (Tally__SignedEnvelope) list_env = fuzz_envelope (list);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_register_update_revocation_list (payer_reg, list_env, &error));
  g_assert_no_error (error);

  /* One honest payment: the payee has the payer's certificate cached,
   * as after any completed payment. */
  static const guint8 honest[] = { 0, 9, 0, 0, 0, 0, 0 };
  payment_round (honest, sizeof honest);
  g_assert_cmpint (tally_register_get_balance (payee_reg), ==, 10);
}

static void
renew_payer_certificate (void)
{
  g_autoptr (GError) error = NULL;
  Tally__Limits limits = fuzz_limits ();
  g_autoptr (GBytes) cert =
    fuzz_certify (tally_register_get_public_key (payer_reg), &limits, FUZZ_NOW - FUZZ_BEFORE,
                  FUZZ_NOW + FUZZ_YEAR, ++payer_serial);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (payer_reg, data, len, FUZZ_NOW, &error));
  g_assert_no_error (error);
}

typedef struct
{
  TallySession *s[2];
  GPtrArray *pending[2]; /* the batch last sent to each side */
  guint batch_step[2];   /* the step that batch was sent in, plus one */
  guint step;
  GBytes *received[2]; /* the message each side last received */
  gint64 amount;
  gint64 balance0[2];
  guint64 counter0[2];
  gboolean spent;
  guint64 now;
} Round;

static void
round_clear (Round *r)
{
  for (int i = 0; i < 2; i++) {
    g_clear_pointer (&r->s[i], tally_session_free);
    g_clear_pointer (&r->pending[i], g_ptr_array_unref);
    g_clear_pointer (&r->received[i], g_bytes_unref);
  }
}

static TallyRegister *
reg_of (int side)
{
  return side == PAYEE ? payee_reg : payer_reg;
}

static void
check_balances (Round *r)
{
  gboolean payee_done = tally_session_get_state (r->s[PAYEE]) == TALLY_SESSION_STATE_DONE;
  gboolean payer_done = tally_session_get_state (r->s[PAYER]) == TALLY_SESSION_STATE_DONE;
  gint64 payee = tally_register_get_balance (payee_reg);
  gint64 payer = tally_register_get_balance (payer_reg);

  g_assert_cmpint (payee, ==, r->balance0[PAYEE] + (payee_done ? r->amount : 0));
  g_assert_cmpint (payer, ==, r->balance0[PAYER] - (r->spent ? r->amount : 0));
  g_assert_cmpuint (tally_register_get_counter (payer_reg), ==,
                    r->counter0[PAYER] + (r->spent ? 1 : 0));
  g_assert_cmpuint (tally_register_get_counter (payee_reg), ==, r->counter0[PAYEE]);

  gint64 in_flight = r->spent && !payee_done ? r->amount : 0;
  g_assert_cmpint (payer + payee + in_flight, ==, r->balance0[PAYER] + r->balance0[PAYEE]);

  if (payee_done) {
    g_assert_true (r->spent);
    g_assert_cmpuint (tally_session_get_counter (r->s[PAYEE]), ==,
                      tally_session_get_counter (r->s[PAYER]));
  }
  if (payer_done) {
    g_assert_true (payee_done);
    g_autoptr (GBytes) a = tally_session_get_receipt (r->s[PAYER]);
    g_autoptr (GBytes) b = tally_session_get_receipt (r->s[PAYEE]);
    g_assert_nonnull (a);
    g_assert_nonnull (b);
    g_assert_true (g_bytes_equal (a, b));
  }
}

/* A message for @to, sent during the current step: a new batch on the
 * first one of the step. */
static void
send_to (Round *r, int to, GBytes *msg)
{
  if (r->pending[to] == NULL || r->batch_step[to] != r->step + 1) {
    g_clear_pointer (&r->pending[to], g_ptr_array_unref);
    r->pending[to] = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    r->batch_step[to] = r->step + 1;
  }
  g_ptr_array_add (r->pending[to], msg);
}

/* The payee's code appears only after a reveal opened the commitment, and
 * it is the payer's. */
static void
check_codes (Round *r)
{
  const char *payee_code = tally_session_get_comparison_code (r->s[PAYEE]);
  const char *payer_code = tally_session_get_comparison_code (r->s[PAYER]);
  TallySessionState payee_state = tally_session_get_state (r->s[PAYEE]);

  if (payee_state == TALLY_SESSION_STATE_WAIT_HELLO ||
      payee_state == TALLY_SESSION_STATE_OFFER_SENT)
    g_assert_null (payee_code);
  if (payee_state == TALLY_SESSION_STATE_WAIT_PAY || payee_state == TALLY_SESSION_STATE_DONE)
    g_assert_nonnull (payee_code);
  if (payee_code != NULL)
    g_assert_cmpstr (payee_code, ==, payer_code);
}

static void
check_error (const GError *error)
{
  g_assert_nonnull (error);
  g_assert_true (error->domain == TALLY_ERROR);
  g_assert_nonnull (tally_error_to_string ((TallyError) error->code));
}

/* Text a session took from its peer reaches logs and D-Bus: whatever
 * passed validation is UTF-8 without control characters. */
static void
check_text (const char *text)
{
  if (text == NULL)
    return;
  g_assert_true (g_utf8_validate (text, -1, NULL));
  g_assert_true (tally_text_check (text, G_MAXSIZE, "text", NULL));
}

static void
check_session_text (TallySession *s)
{
  const GError *error = tally_session_get_error (s);
  check_text (tally_session_get_memo (s));
  check_text (tally_session_get_currency (s));
  check_text (tally_session_get_peer_id (s));
  check_text (tally_session_get_comparison_code (s));
  if (error != NULL)
    g_assert_true (g_utf8_validate (error->message, -1, NULL));
}

/* Hands @msg to @side; its reply becomes what the other side is sent. */
static void
deliver (Round *r, int side, GBytes *msg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reply = NULL;
  TallySession *s = r->s[side];
  TallySessionState before = tally_session_get_state (s);
  gsize len;
  const guint8 *data = g_bytes_get_data (msg, &len);

  gboolean ok = tally_session_handle (s, data, len, r->now, &reply, &error);
  TallySessionState after = tally_session_get_state (s);
  if (ok) {
    g_assert_no_error (error);
    g_assert_true (after != TALLY_SESSION_STATE_FAILED);
  } else {
    check_error (error);
    if (before == TALLY_SESSION_STATE_DONE || before == TALLY_SESSION_STATE_FAILED) {
      g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
      g_assert_cmpint (after, ==, before);
      g_assert_null (reply);
    } else {
      g_assert_cmpint (after, ==, TALLY_SESSION_STATE_FAILED);
      const GError *stored = tally_session_get_error (s);
      g_assert_nonnull (stored);
      g_assert_cmpint (stored->code, ==, error->code);
    }
  }

  check_session_text (s);
  if (error != NULL)
    g_assert_true (g_utf8_validate (error->message, -1, NULL));

  g_clear_pointer (&r->received[side], g_bytes_unref);
  r->received[side] = g_bytes_ref (msg);
  if (reply != NULL)
    send_to (r, !side, g_steal_pointer (&reply));
}

/* The payer was asked: it must see what the payee asked for. */
static void
payer_decides (Round *r, gboolean decline)
{
  TallySession *payer = r->s[PAYER], *payee = r->s[PAYEE];
  if (tally_session_get_state (payer) != TALLY_SESSION_STATE_CONFIRMING)
    return;

  /* The reveal is on its way; the payee has no code until it arrives. */
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_OFFER_SENT);
  g_assert_null (tally_session_get_comparison_code (payee));
  g_assert_nonnull (tally_session_get_comparison_code (payer));
  g_assert_nonnull (r->pending[PAYEE]);
  g_assert_cmpuint (r->batch_step[PAYEE], ==, r->step + 1);
  g_assert_cmpint (tally_session_get_amount (payer), ==, r->amount);
  g_assert_cmpstr (tally_session_get_currency (payer), ==, FUZZ_CURRENCY);
  g_assert_cmpstr (tally_session_get_memo (payer), ==, tally_session_get_memo (payee));
  g_autofree char *payee_id = tally_register_get_id_hex (payee_reg);
  g_assert_cmpstr (tally_session_get_peer_id (payer), ==, payee_id);

  g_autoptr (GBytes) out = NULL;
  if (decline) {
    out = tally_session_abort (payer, TALLY_ERROR_REJECTED, "declined");
    g_assert_nonnull (out);
  } else {
    g_autoptr (GError) error = NULL;
    out = tally_session_confirm (payer, r->now, &error);
    if (out != NULL) {
      g_assert_no_error (error);
      g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_PAY_SENT);
      g_assert_cmpuint (tally_session_get_counter (payer), ==, r->counter0[PAYER] + 1);
      r->spent = TRUE;
    } else {
      /* Only a clock past our own certificate, or past the request's
       * expiry, stops an accepted offer. */
      g_assert_true (g_error_matches (error, TALLY_ERROR, TALLY_ERROR_CERT_EXPIRED) ||
                     (g_error_matches (error, TALLY_ERROR, TALLY_ERROR_EXPIRED) &&
                      r->now >= FUZZ_NOW + TALLY_REQUEST_LIFETIME_DEFAULT));
      g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_FAILED);
    }
  }
  if (out != NULL)
    send_to (r, PAYEE, g_steal_pointer (&out));
}

static GBytes *
mutated (GBytes *msg, guint16 offset, guint8 xor)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (msg, &len);
  if (len == 0)
    return g_bytes_ref (msg);
  guint8 *copy = g_memdup2 (data, len);
  copy[offset % len] ^= xor ? xor : 0x01;
  return g_bytes_new_take (copy, len);
}

static const char *
memo_choice (guint8 setup)
{
  switch (setup & SETUP_MEMO) {
  case 0: return "";
  case 1: return "coffee";
  case 2: return "caf\xc3\xa9 \xe2\x98\x95";
  default: return long_memo;
  }
}

static void
payment_round (const guint8 *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  FuzzInput in = { data, size };
  Round r = { 0 };

  r.amount = (gint64) fuzz_input_u16 (&in) + 1;
  guint8 setup = fuzz_input_u8 (&in);
  r.now = FUZZ_NOW;
  if ((setup & SETUP_RENEW) != 0)
    renew_payer_certificate ();

  TallyAcceptPolicy payee_policy = { 0 }, payer_policy = { 0 };
  if ((setup & SETUP_PAYEE_POLICY) != 0)
    payee_policy.max_amount = r.amount - 1 > 0 ? r.amount - 1 : 1;
  if ((setup & SETUP_PAYER_POLICY) != 0)
    payer_policy.max_amount = r.amount - 1 > 0 ? r.amount - 1 : 1;
  if ((setup & SETUP_REVOCATION) != 0)
    payee_policy.max_revocation_age = 24 * 3600;
  gboolean policies =
    (setup & (SETUP_PAYEE_POLICY | SETUP_PAYER_POLICY | SETUP_REVOCATION)) != 0;

  for (int i = 0; i < 2; i++) {
    r.balance0[i] = tally_register_get_balance (reg_of (i));
    r.counter0[i] = tally_register_get_counter (reg_of (i));
  }

  r.s[PAYEE] = tally_session_new_payee (payee_reg, r.amount, memo_choice (setup), &payee_policy,
                                        r.now, &error);
  g_assert_no_error (error);
  g_assert_nonnull (r.s[PAYEE]);
  r.s[PAYER] = tally_session_new_payer (payer_reg, &payer_policy);
  if ((setup & SETUP_TAG) != 0)
    tally_session_set_request_tag (r.s[PAYEE], payee_tag);
  gboolean other = (setup & SETUP_OTHER_TAG) != 0;
  if ((setup & (SETUP_TAG | SETUP_OTHER_TAG)) != 0)
    tally_session_set_request_tag (r.s[PAYER], other ? other_tag : payee_tag);
  GBytes *hello = tally_session_start (r.s[PAYER], &error);
  g_assert_no_error (error);
  g_assert_nonnull (hello);
  r.step = G_MAXUINT - 1; /* before step 0 */
  send_to (&r, PAYEE, hello);

  gboolean honest = !policies && !other;
  guint delivered = 0;
  for (guint step = 0; step < MAX_STEPS && !fuzz_input_done (&in); step++) {
    int side = step % 2 == 0 ? PAYEE : PAYER;
    guint8 op = fuzz_input_u8 (&in);
    r.step = step;

    if ((op & OP_CLOCK) != 0) {
      guint8 hours = fuzz_input_u8 (&in);
      r.now += hours == 255 ? FUZZ_YEAR + 24 * 3600 : (guint64) hours * 3600;
      honest = FALSE;
    }
    if ((op & OP_ABORT) != 0) {
      TallyError code = (TallyError) (fuzz_input_u8 (&in) % TALLY_ERROR_LAST + 1);
      TallySessionState before = tally_session_get_state (r.s[side]);
      g_autoptr (GBytes) out = tally_session_abort (r.s[side], code, "fuzz");
      if (before == TALLY_SESSION_STATE_DONE || before == TALLY_SESSION_STATE_FAILED) {
        g_assert_null (out);
      } else {
        g_assert_nonnull (out);
        g_assert_cmpint (tally_session_get_state (r.s[side]), ==, TALLY_SESSION_STATE_FAILED);
        send_to (&r, !side, g_steal_pointer (&out));
      }
      honest = FALSE;
      check_balances (&r);
      check_codes (&r);
      continue;
    }

    /* What this side is handed, in order; a copy, since delivering makes
     * the other side's next batch. */
    g_autoptr (GPtrArray) msgs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
    GPtrArray *batch = r.pending[side];
    guint target = batch != NULL && (op & OP_LAST) != 0 ? batch->len - 1 : 0;
    switch (op & OP_ACTION) {
    case 0:
    case 1:
    case 2:
    case 3:
      for (guint i = 0; batch != NULL && i < batch->len; i++)
        g_ptr_array_add (msgs, g_bytes_ref (batch->pdata[i]));
      break;
    case 4: {
      gsize len;
      const guint8 *chunk = fuzz_input_chunk (&in, &len);
      g_ptr_array_add (msgs, g_bytes_new (chunk, len));
      break;
    }
    case 5: {
      guint16 offset = fuzz_input_u16 (&in);
      guint8 xor = fuzz_input_u8 (&in);
      for (guint i = 0; batch != NULL && i < batch->len; i++)
        g_ptr_array_add (msgs, i == target ? mutated (batch->pdata[i], offset, xor)
                                           : g_bytes_ref (batch->pdata[i]));
      break;
    }
    case 6: {
      guint16 keep = fuzz_input_u16 (&in);
      for (guint i = 0; batch != NULL && i < batch->len; i++) {
        gsize len = g_bytes_get_size (batch->pdata[i]);
        g_ptr_array_add (
          msgs, i == target ? g_bytes_new_from_bytes (batch->pdata[i], 0, len > 0 ? keep % len : 0)
                            : g_bytes_ref (batch->pdata[i]));
      }
      break;
    }
    case 7:
      if (r.received[side] != NULL)
        g_ptr_array_add (msgs, g_bytes_ref (r.received[side]));
      break;
    }
    if ((op & OP_ACTION) > 3 || msgs->len == 0)
      honest = FALSE;

    for (guint i = 0; i < msgs->len; i++) {
      deliver (&r, side, msgs->pdata[i]);
      check_codes (&r);
    }
    if (msgs->len > 0)
      delivered++;
    if ((op & OP_DECLINE) != 0 &&
        tally_session_get_state (r.s[PAYER]) == TALLY_SESSION_STATE_CONFIRMING)
      honest = FALSE;
    payer_decides (&r, (op & OP_DECLINE) != 0);
    check_balances (&r);
    check_codes (&r);
  }

  /* Another request named: whatever else is delivered (a Hello made up
   * with the payee's tag opens an offer the payer cannot read), the payee
   * is never paid. */
  if (other) {
    g_assert_cmpint (tally_session_get_state (r.s[PAYEE]), !=, TALLY_SESSION_STATE_DONE);
    g_assert_cmpint (tally_register_get_balance (payee_reg), ==, r.balance0[PAYEE]);
  }
  if (honest && delivered >= 4) {
    g_assert_cmpint (tally_session_get_state (r.s[PAYEE]), ==, TALLY_SESSION_STATE_DONE);
    g_assert_cmpint (tally_session_get_state (r.s[PAYER]), ==, TALLY_SESSION_STATE_DONE);
  }
  check_balances (&r);
  round_clear (&r);
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  if (payer_reg == NULL || ++inputs % INPUTS_PER_REGISTER == 0)
    registers_setup ();
  payment_round (data, size);
  return 0;
}
