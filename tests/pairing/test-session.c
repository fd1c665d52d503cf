/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payment handshake over a socketpair.  Honest sessions talk to each
 * other; for hostile input, one side is the scripted peer of script.c,
 * written from docs/protocol.md (key schedule, transcript, AEAD), that can
 * forge any field.  Every refusal asserts its specific error, an Error
 * message back to the peer, and a register left exactly as it was.
 */

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tally-frame.h"
#include "script.h"
#include "tally-register-backend.h"
#include "tally-register-private.h"
#include "tally-session.h"
#include "wallet-fixture.h"

#define NOW  FIXTURE_NOW
#define EPH  SCRIPT_EPH_BYTES

/* --- socketpair plumbing --------------------------------------------------- */

typedef struct
{
  int fd[2]; /* [0] payer end, [1] payee end */
  gsize mtu; /* 0: one datagram per message; else framed on a stream */
  TallyReassembler *reasm[2];
  guint messages;
  gsize bytes;
} Wire;

static void
wire_init (Wire *w, gsize mtu)
{
  memset (w, 0, sizeof *w);
  w->mtu = mtu;
  g_assert_cmpint (socketpair (AF_UNIX, mtu ? SOCK_STREAM : SOCK_SEQPACKET, 0, w->fd), ==, 0);
  for (int i = 0; i < 2; i++)
    w->reasm[i] = tally_reassembler_new (TALLY_SESSION_MAX_MESSAGE, 5000);
}

static void
wire_clear (Wire *w)
{
  close (w->fd[0]);
  close (w->fd[1]);
  for (int i = 0; i < 2; i++)
    tally_reassembler_free (w->reasm[i]);
}

static void
write_all (int fd, const guint8 *p, gsize len)
{
  while (len > 0) {
    ssize_t n = write (fd, p, len);
    g_assert_cmpint (n, >, 0);
    p += n;
    len -= (gsize) n;
  }
}

static void
read_all (int fd, guint8 *p, gsize len)
{
  while (len > 0) {
    ssize_t n = read (fd, p, len);
    g_assert_cmpint (n, >, 0);
    p += n;
    len -= (gsize) n;
  }
}

/* Sends from end @from; a stream carries u16-length-prefixed fragments. */
static void
wire_send (Wire *w, int from, GBytes *msg)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (msg, &len);
  w->messages++;
  w->bytes += len;
  if (w->mtu == 0) {
    g_assert_cmpint (send (w->fd[from], data, len, 0), ==, (ssize_t) len);
    return;
  }
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) frags =
    tally_frame_split (data, len, w->mtu, TALLY_SESSION_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < frags->len; i++) {
    gsize flen;
    const guint8 *f = g_bytes_get_data (frags->pdata[i], &flen);
    guint8 hdr[2] = { (guint8) (flen >> 8), (guint8) flen };
    write_all (w->fd[from], hdr, 2);
    write_all (w->fd[from], f, flen);
  }
}

/* Receives at end @to. */
static GBytes *
wire_recv (Wire *w, int to)
{
  if (w->mtu == 0) {
    guint8 buf[TALLY_SESSION_MAX_MESSAGE];
    ssize_t n = recv (w->fd[to], buf, sizeof buf, 0);
    g_assert_cmpint (n, >, 0);
    return g_bytes_new (buf, (gsize) n);
  }
  for (;;) {
    guint8 hdr[2], frag[TALLY_FRAME_MAX_MTU];
    read_all (w->fd[to], hdr, 2);
    gsize flen = ((gsize) hdr[0] << 8) | hdr[1];
    g_assert_cmpuint (flen, <=, w->mtu);
    read_all (w->fd[to], frag, flen);
    g_autoptr (GError) error = NULL;
    GBytes *msg = NULL;
    g_assert_true (tally_reassembler_push (w->reasm[to], frag, flen, g_get_monotonic_time (), &msg,
                                           &error));
    g_assert_no_error (error);
    if (msg != NULL)
      return msg;
  }
}

/* --- registers ------------------------------------------------------------- */

typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  TallyRegister *payer;
  TallyRegister *payee;
  char *payer_dir;
  char *payee_dir;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  f->root = fixture_tmpdir ();
  f->payer_dir = g_build_filename (f->root, "payer", NULL);
  f->payee_dir = g_build_filename (f->root, "payee", NULL);
  f->payer = fixture_register_new (f->issuer, f->payer_dir, NULL, NOW);
  f->payee = fixture_register_new (f->issuer, f->payee_dir, NULL, NOW);
  fixture_register_fund (f->issuer, f->payer, 1, 10000, NOW);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->payer, tally_register_free);
  g_clear_pointer (&f->payee, tally_register_free);
  fixture_remove_tree (f->root);
  g_free (f->root);
  g_free (f->payer_dir);
  g_free (f->payee_dir);
  fixture_issuer_free (f->issuer);
}

/* --- honest payment -------------------------------------------------------- */

/* Returns the bytes of the five messages. */
static gsize
run_honest_payment (Fixture *f, gsize mtu)
{
  Wire w;
  wire_init (&w, mtu);
  g_autoptr (GError) error = NULL;
  gint64 balance_payer = tally_register_get_balance (f->payer);
  gint64 balance_payee = tally_register_get_balance (f->payee);
  guint64 counter = tally_register_get_counter (f->payer);

  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, 1250, "coffee", NULL, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);

  /* Round trip 1. */
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  wire_send (&w, 0, hello);
  g_autoptr (GBytes) hello_in = wire_recv (&w, 1);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello_in, NULL),
                                       g_bytes_get_size (hello_in), NOW, &offer, &error));
  g_assert_no_error (error);
  wire_send (&w, 1, offer);
  g_autoptr (GBytes) offer_in = wire_recv (&w, 0);
  /* The payee has no code before the reveal. */
  g_assert_null (tally_session_get_comparison_code (payee));
  g_autoptr (GBytes) reveal = NULL;
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (offer_in, NULL),
                                       g_bytes_get_size (offer_in), NOW, &reveal, &error));
  g_assert_no_error (error);
  g_assert_nonnull (reveal);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_CONFIRMING);

  /* The reveal, pipelined: nothing answers it. */
  wire_send (&w, 0, reveal);
  g_autoptr (GBytes) reveal_in = wire_recv (&w, 1);
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (reveal_in, NULL),
                                       g_bytes_get_size (reveal_in), NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_WAIT_PAY);

  /* What the agent is shown. */
  g_assert_cmpint (tally_session_get_amount (payer), ==, 1250);
  g_assert_cmpstr (tally_session_get_currency (payer), ==, FIXTURE_CURRENCY);
  g_assert_cmpstr (tally_session_get_memo (payer), ==, "coffee");
  g_autofree char *payee_id = tally_register_get_id_hex (f->payee);
  g_assert_cmpstr (tally_session_get_peer_id (payer), ==, payee_id);
  const char *code = tally_session_get_comparison_code (payer);
  g_assert_nonnull (code);
  g_assert_cmpuint (strlen (code), ==, TALLY_COMPARISON_CODE_DIGITS);
  g_assert_cmpstr (code, ==, tally_session_get_comparison_code (payee));

  /* Round trip 2. */
  g_autoptr (GBytes) pay = tally_session_confirm (payer, NOW, &error);
  g_assert_no_error (error);
  wire_send (&w, 0, pay);
  g_autoptr (GBytes) pay_in = wire_recv (&w, 1);
  g_autoptr (GBytes) receipt = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (pay_in, NULL),
                                       g_bytes_get_size (pay_in), NOW, &receipt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_DONE);
  wire_send (&w, 1, receipt);
  g_autoptr (GBytes) receipt_in = wire_recv (&w, 0);
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (receipt_in, NULL),
                                       g_bytes_get_size (receipt_in), NOW, &none, &error));
  g_assert_no_error (error);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_DONE);

  g_assert_cmpuint (w.messages, ==, 5);
  g_assert_cmpint (tally_register_get_balance (f->payer), ==, balance_payer - 1250);
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, balance_payee + 1250);
  g_assert_cmpuint (tally_session_get_counter (payer), ==, counter + 1);
  g_assert_cmpuint (tally_session_get_counter (payee), ==, counter + 1);
  g_autofree char *payer_id = tally_register_get_id_hex (f->payer);
  g_assert_cmpstr (tally_session_get_peer_id (payee), ==, payer_id);

  g_autoptr (GBytes) r1 = tally_session_get_receipt (payer);
  g_autoptr (GBytes) r2 = tally_session_get_receipt (payee);
  g_assert_true (g_bytes_equal (r1, r2));
  fixture_assert_conserved (f->payer);
  fixture_assert_conserved (f->payee);
  gsize bytes = w.bytes;
  wire_clear (&w);
  return bytes;
}

static void
test_pays_in_two_round_trips (Fixture *f, gconstpointer data)
{
  run_honest_payment (f, 0);
}

static void
test_pays_framed_at_smallest_mtu (Fixture *f, gconstpointer data)
{
  run_honest_payment (f, TALLY_FRAME_MIN_MTU);
}

static void
test_second_payment_sends_certificate_hash (Fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  gsize cold = run_honest_payment (f, 0);
  gsize warm = run_honest_payment (f, 0);
  /* The whole certificate gives way to a 32-byte hash; field tags and
   * varint lengths move the difference by a few bytes. */
  gsize saved = cold - warm;
  gsize cert_len = g_bytes_get_size (cert);
  g_assert_cmpuint (warm, <, cold);
  g_assert_cmpuint (saved, >=, cert_len - TALLY_HASH_BYTES - 4);
  g_assert_cmpuint (saved, <=, cert_len - TALLY_HASH_BYTES + 4);
}

/* Feeds @msg to @session and asserts refusal with @code, an Error reply
 * carrying that code, and @reg unchanged. */
static void
assert_refused (TallySession *session, TallyRegister *reg, GBytes *msg, TallyError code)
{
  g_autofree char *before = fixture_register_dump (reg, TRUE);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (session, g_bytes_get_data (msg, NULL),
                                        g_bytes_get_size (msg), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, (gint) code);
  g_assert_cmpint (tally_session_get_state (session), ==, TALLY_SESSION_STATE_FAILED);
  g_assert_false (tally_session_is_refused_by_peer (session));
  g_assert_nonnull (reply);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (reply);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_ERROR);
  g_assert_cmpuint (m->error->code, ==, (guint) code);
  g_autofree char *after = fixture_register_dump (reg, TRUE);
  g_assert_cmpstr (before, ==, after);
}

/* --- payee refuses hostile payers ------------------------------------------ */

/* A permission the honest payer register signs for the rig's request. */
static GBytes *
honest_permission (Fixture *f, PayeeRig *r)
{
  g_autoptr (GError) error = NULL;
  GBytes *perm =
    tally_register_spend (f->payer, r->s.offer->payee_certificate, r->s.offer->request, NOW,
                          &error);
  g_assert_no_error (error);
  return perm;
}

static void
test_payee_refuses_forged_permission_signature (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (perm);
  env->signature.data[5] ^= 0x40;
  g_autoptr (GBytes) forged = tally_envelope_pack (env);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, forged, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_BAD_SIGNATURE);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_certificate_from_wrong_issuer (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (FixtureIssuer) rogue = fixture_issuer_new (FIXTURE_CURRENCY);
  g_autoptr (GBytes) cert = fixture_certify (rogue, tally_register_get_public_key (f->payer), NULL,
                                             NOW - 10, NOW + FIXTURE_YEAR, 1);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_WRONG_ISSUER);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_expired_certificate (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = fixture_certify (f->issuer, tally_register_get_public_key (f->payer),
                                             NULL, NOW - 100, NOW - 1, 7);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_CERT_EXPIRED);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_revoked_payer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list =
    fixture_revocation_list (f->issuer, 2, NOW, tally_register_get_id (f->payer), NULL);
  g_autoptr (Tally__SignedEnvelope) list_env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (f->payee, list_env, &error));
  g_assert_no_error (error);

  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_REVOKED);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_transcript_signed_by_another_key (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  guint8 pk[32], sk[64];
  crypto_sign_keypair (pk, sk);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, NULL, sk);
  sodium_memzero (sk, sizeof sk);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_TRANSCRIPT);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_replayed_permission (Fixture *f, gconstpointer data)
{
  /* A permission the payee already credited, sent again in a new session
   * as if it were new. */
  g_autoptr (GBytes) old = fixture_pay (f->payer, f->payee, 300, "first", NOW, NULL);
  PayeeRig r;
  payee_rig_init (&r, f->payee, 300);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, old, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_REPLAY);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_new_permission_for_another_open_request (Fixture *f, gconstpointer data)
{
  /* Two requests open at the stall: a permission for the first may not be
   * slipped into the session that offers the second. */
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) other =
    tally_register_new_request (f->payee, 300, "", NOW, &error);
  g_assert_no_error (error);
  PayeeRig r;
  payee_rig_init (&r, f->payee, 900);
  g_autoptr (GBytes) permission =
    tally_register_spend (f->payer, r.s.offer->payee_certificate, other, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, permission, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_WRONG_NONCE);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_redelivery_of_offered_request (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 900);
  g_autoptr (GBytes) permission = honest_permission (f, &r);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  r.s.redelivery = TRUE;
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, permission, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_MALFORMED);
  payee_rig_clear (&r);
}

/* Hands @msg to @to and asserts it is taken; *reply gets the answer. */
static GBytes *
deliver (TallySession *to, GBytes *msg, guint64 now)
{
  g_autoptr (GError) error = NULL;
  GBytes *reply = NULL;
  g_assert_true (tally_session_handle (to, g_bytes_get_data (msg, NULL), g_bytes_get_size (msg),
                                       now, &reply, &error));
  g_assert_no_error (error);
  return reply;
}

/* A payer session that has opened @payee's offer and waits for its agent. */
static TallySession *
confirming_payer (Fixture *f, TallySession *payee, guint64 now)
{
  g_autoptr (GError) error = NULL;
  TallySession *payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) offer = deliver (payee, hello, now);
  g_autoptr (GBytes) reveal = deliver (payer, offer, now);
  g_assert_nonnull (reveal);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_CONFIRMING);
  g_autoptr (GBytes) none = deliver (payee, reveal, now);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_WAIT_PAY);
  return payer;
}

static void
test_payer_delivers_again_permission_whose_receipt_was_lost (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payee1 =
    tally_session_new_payee (f->payee, 700, "lunch", NULL, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer1 = confirming_payer (f, payee1, NOW);
  g_autoptr (GBytes) pay1 = tally_session_confirm (payer1, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) lost = deliver (payee1, pay1, NOW);
  g_autoptr (GBytes) abort1 = tally_session_abort (payer1, TALLY_ERROR_DISCONNECTED, "link lost");
  g_autoptr (GBytes) first_receipt = tally_session_get_receipt (payee1);
  g_assert_cmpint (tally_register_get_balance (f->payer), ==, 10000 - 700);
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 700);

  /* The next visit, for another request: the lost payment goes first. */
  g_autoptr (TallySession) payee2 =
    tally_session_new_payee (f->payee, 300, "dessert", NULL, NOW + 60, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer2 = confirming_payer (f, payee2, NOW + 60);
  g_autoptr (GBytes) pay2 = tally_session_redeliver (payer2, NOW + 60, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) receipt2 = deliver (payee2, pay2, NOW + 60);
  g_assert_cmpint (tally_session_get_state (payee2), ==, TALLY_SESSION_STATE_DONE);
  g_assert_true (tally_session_is_redelivery (payee2));
  g_autoptr (GBytes) none = deliver (payer2, receipt2, NOW + 60);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (payer2), ==, TALLY_SESSION_STATE_DONE);
  g_assert_true (tally_session_is_redelivery (payer2));

  /* Paid once, and both sides hold the same receipt. */
  g_autoptr (GBytes) second_receipt = tally_session_get_receipt (payer2);
  g_assert_true (g_bytes_equal (first_receipt, second_receipt));
  g_assert_cmpint (tally_register_get_balance (f->payer), ==, 10000 - 700);
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 700);
  g_autoptr (GBytes) pending =
    tally_register_get_pending (f->payer, tally_register_get_id (f->payee), NOW + 60, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (pending);
  g_clear_error (&error);

  /* The dessert request is still open. */
  g_autoptr (GPtrArray) nonces = tally_register_list_nonces (f->payee, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (nonces->len, ==, 2);
  TallyNonceRow *dessert = nonces->pdata[1];
  g_assert_cmpint (dessert->amount, ==, 300);
  g_assert_false (dessert->consumed);
  fixture_assert_conserved (f->payer);
  fixture_assert_conserved (f->payee);
}

static void
test_payer_has_nothing_to_deliver_again (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, 700, "lunch", NULL, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer = confirming_payer (f, payee, NOW);
  g_autoptr (GBytes) pay = tally_session_redeliver (payer, NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (pay);
  g_clear_error (&error);
  /* The agent can still pay the request. */
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_CONFIRMING);
  g_autoptr (GBytes) pay_now = tally_session_confirm (payer, NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (pay_now);
}

static void
test_payee_refuses_permission_for_another_payee (Fixture *f, gconstpointer data)
{
  g_autofree char *dir = g_build_filename (f->root, "third", NULL);
  g_autoptr (TallyRegister) third = fixture_register_new (f->issuer, dir, NULL, NOW);

  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  /* Same nonce and amount, but signed over to a third register. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) third_cert = tally_register_get_certificate (third);
  g_autoptr (Tally__SignedEnvelope) third_env = fixture_envelope (third_cert);
  Tally__PaymentRequest req = *r.s.offer->request;
  req.payee_register_id.data = (guint8 *) tally_register_get_id (third);
  g_autoptr (GBytes) perm = tally_register_spend (f->payer, third_env, &req, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_WRONG_PAYEE);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_changed_amount (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GError) error = NULL;
  Tally__PaymentRequest req = *r.s.offer->request;
  Tally__Amount amount = *req.amount;
  amount.value = 70; /* the payer signs for less than was asked */
  req.amount = &amount;
  g_autoptr (GBytes) perm =
    tally_register_spend (f->payer, r.s.offer->payee_certificate, &req, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_AMOUNT_MISMATCH);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_reused_counter_from_rolled_back_register (Fixture *f, gconstpointer data)
{
  /* Snapshot the payer, pay, then restore the snapshot and pay again:
   * the restored register signs a different permission with counter 1. */
  g_autofree char *snapshot = g_build_filename (f->root, "snapshot", NULL);
  g_clear_pointer (&f->payer, tally_register_free);
  fixture_copy_dir (f->payer_dir, snapshot);
  g_autoptr (GError) error = NULL;
  f->payer = tally_register_open (f->payer_dir, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) first = fixture_pay (f->payer, f->payee, 400, "one", NOW, NULL);

  g_autoptr (TallyRegister) clone = tally_register_open (snapshot, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_counter (clone), ==, 0);

  PayeeRig r;
  payee_rig_init (&r, f->payee, 500);
  g_autoptr (GBytes) perm =
    tally_register_spend (clone, r.s.offer->payee_certificate, r.s.offer->request, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = tally_register_get_certificate (clone);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, clone, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_COUNTER_REUSED);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_amount_over_payer_limit (Fixture *f, gconstpointer data)
{
  /* A payer register that ignores its own limit: its permission is signed
   * by hand with its key, for more than its certificate allows. */
  PayeeRig r;
  payee_rig_init (&r, f->payee, FIXTURE_MAX_PAYMENT + 1);
  const Tally__PaymentRequest *req = r.s.offer->request;
  guint8 genesis[TALLY_HASH_BYTES], memo[TALLY_HASH_BYTES];
  tally_chain_genesis (tally_register_get_id (f->payer), genesis);
  tally_hash ("memo", "tea", 3, memo);
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = (guint8 *) tally_register_get_id (f->payer);
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id = req->payee_register_id;
  p.payee_nonce = req->nonce;
  p.amount = req->amount;
  p.counter = 1;
  p.chain_prev.data = genesis;
  p.chain_prev.len = sizeof genesis;
  p.created_at = NOW;
  p.memo_hash.data = memo;
  p.memo_hash.len = sizeof memo;
  p.expires_at = req->expires_at;
  g_autoptr (GBytes) perm = fixture_register_sign_message (
    f->payer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p.base);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_LIMIT_PAYMENT);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_uncached_certificate_hash (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  fixture_body_hash (cert, r.s.cert_hash);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, NULL, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_NOT_FOUND);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_tampered_ciphertext (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  payee_rig_init (&r, f->payee, 700);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (msg);
  m->pay.data[m->pay.len / 2] ^= 1;
  g_autoptr (GBytes) tampered = script_pack_session (m);
  assert_refused (r.payee, f->payee, tampered, TALLY_ERROR_DECRYPT);
  payee_rig_clear (&r);
}

/* --- malformed and out-of-order messages ----------------------------------- */

static TallySession *
waiting_payee (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  TallySession *s = tally_session_new_payee (f->payee, 100, NULL, NULL, NOW, &error);
  g_assert_no_error (error);
  return s;
}

static void
test_refuses_garbage_bytes (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = waiting_payee (f);
  static const guint8 junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
  g_autoptr (GBytes) msg = g_bytes_new_static (junk, sizeof junk);
  assert_refused (payee, f->payee, msg, TALLY_ERROR_MALFORMED);
}

static void
test_refuses_empty_message (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = waiting_payee (f);
  g_autoptr (GBytes) msg = g_bytes_new_static ("", 0);
  assert_refused (payee, f->payee, msg, TALLY_ERROR_MALFORMED);
}

static void
test_refuses_unsupported_version (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = waiting_payee (f);
  Script s;
  script_init (&s, TRUE);
  g_autoptr (GBytes) msg = script_hello (&s, 2, EPH);
  assert_refused (payee, f->payee, msg, TALLY_ERROR_VERSION);
  script_clear (&s);
}

static void
test_refuses_short_ephemeral_key (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = waiting_payee (f);
  Script s;
  script_init (&s, TRUE);
  g_autoptr (GBytes) msg = script_hello (&s, TALLY_PROTOCOL_VERSION, 31);
  assert_refused (payee, f->payee, msg, TALLY_ERROR_MALFORMED);
  script_clear (&s);
}

/* X25519 public keys whose shared secret is all zeros with any secret:
 * points of order 1, 2, 4 and 8, and non-canonical or high-bit encodings
 * of them (protocol 4.1). */
static const guint8
  low_order_points[][32] = {
    { 0 },
    { 1 },
    { 0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
      0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
      0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00 },
    { 0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
      0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
      0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57 },
    { 0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
    { 0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
    { 0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
    { 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80 },
  };

static void
test_payee_refuses_low_order_ephemeral_key (Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS (low_order_points); i++) {
    g_autoptr (TallySession) payee = waiting_payee (f);
    Tally__Hello hello = TALLY__HELLO__INIT;
    hello.version = TALLY_PROTOCOL_VERSION;
    hello.ephemeral_public_key.data = (guint8 *) low_order_points[i];
    hello.ephemeral_public_key.len = sizeof low_order_points[i];
    Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
    m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
    m.hello = &hello;
    g_autoptr (GBytes) msg = tally_message_pack (&m.base);
    g_test_message ("point %zu", i);
    assert_refused (payee, f->payee, msg, TALLY_ERROR_MALFORMED);
  }
}

static void
test_payer_refuses_low_order_ephemeral_key (Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS (low_order_points); i++) {
    PayerRig r;
    payer_rig_init (&r, f->payer, f->payee);
    g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
    g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, r.request, f->payee, NULL);
    g_autoptr (Tally__SessionMessage) m = script_unpack_session (offer);
    memcpy (m->offer->ephemeral_public_key.data, low_order_points[i], 32);
    g_autoptr (GBytes) forged = script_pack_session (m);
    g_test_message ("point %zu", i);
    assert_refused (r.payer, f->payer, forged, TALLY_ERROR_MALFORMED);
    payer_rig_clear (&r);
  }
}

static void
test_refuses_message_in_wrong_state (Fixture *f, gconstpointer data)
{
  /* A second Hello after the offer went out. */
  PayeeRig r;
  payee_rig_init (&r, f->payee, 100);
  Script again;
  script_init (&again, TRUE);
  g_autoptr (GBytes) hello = script_hello (&again, TALLY_PROTOCOL_VERSION, EPH);
  assert_refused (r.payee, f->payee, hello, TALLY_ERROR_WRONG_STATE);
  script_clear (&again);
  payee_rig_clear (&r);

  /* A receipt sent to a payee. */
  g_autoptr (TallySession) payee = waiting_payee (f);
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  guint8 junk[40] = { 0 };
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_RECEIPT;
  m.receipt.data = junk;
  m.receipt.len = sizeof junk;
  g_autoptr (GBytes) receipt = script_pack_session (&m);
  assert_refused (payee, f->payee, receipt, TALLY_ERROR_WRONG_STATE);
}

static void
test_reports_peer_error_with_its_code (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payee = waiting_payee (f);
  g_autoptr (GBytes) abort_msg = tally_session_abort (payee, TALLY_ERROR_TIMEOUT, "too slow");
  g_assert_nonnull (abort_msg);
  g_assert_cmpint (tally_session_get_state (payee), ==, TALLY_SESSION_STATE_FAILED);

  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (payer, g_bytes_get_data (abort_msg, NULL),
                                        g_bytes_get_size (abort_msg), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "too slow"));
  g_assert_null (reply); /* nobody answers an error */
}

/* --- payer refuses hostile payees ------------------------------------------ */

static void
test_payer_refuses_offer_from_wrong_issuer (Fixture *f, gconstpointer data)
{
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (FixtureIssuer) rogue = fixture_issuer_new (FIXTURE_CURRENCY);
  g_autoptr (GBytes) cert = fixture_certify (rogue, tally_register_get_public_key (f->payee), NULL,
                                             NOW - 10, NOW + FIXTURE_YEAR, 1);
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, r.request, f->payee, NULL);
  assert_refused (r.payer, f->payer, offer, TALLY_ERROR_WRONG_ISSUER);
  payer_rig_clear (&r);
}

static void
test_payer_refuses_forged_offer_signature (Fixture *f, gconstpointer data)
{
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  guint8 pk[32], sk[64];
  crypto_sign_keypair (pk, sk);
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, r.request, NULL, sk);
  sodium_memzero (sk, sizeof sk);
  assert_refused (r.payer, f->payer, offer, TALLY_ERROR_TRANSCRIPT);
  payer_rig_clear (&r);
}

static void
test_payer_refuses_request_naming_another_payee (Fixture *f, gconstpointer data)
{
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  Tally__PaymentRequest req = *r.request;
  req.payee_register_id.data = (guint8 *) tally_register_get_id (f->payer);
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, &req, f->payee, NULL);
  assert_refused (r.payer, f->payer, offer, TALLY_ERROR_WRONG_PAYEE);
  payer_rig_clear (&r);
}

static void
test_payer_refuses_zero_amount (Fixture *f, gconstpointer data)
{
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  Tally__PaymentRequest req = *r.request;
  Tally__Amount zero = *req.amount;
  zero.value = 0;
  req.amount = &zero;
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, &req, f->payee, NULL);
  assert_refused (r.payer, f->payer, offer, TALLY_ERROR_INVALID_AMOUNT);
  payer_rig_clear (&r);
}

static void
test_payer_refuses_tampered_offer (Fixture *f, gconstpointer data)
{
  PayerRig r;
  payer_rig_init (&r, f->payer, f->payee);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payee);
  g_autoptr (GBytes) offer = script_offer (&r.s, r.hello, cert, r.request, f->payee, NULL);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (offer);
  m->offer->ciphertext.data[3] ^= 0x80;
  g_autoptr (GBytes) tampered = script_pack_session (m);
  assert_refused (r.payer, f->payer, tampered, TALLY_ERROR_DECRYPT);
  payer_rig_clear (&r);
}

static void
test_payer_refuses_amount_over_own_limit (Fixture *f, gconstpointer data)
{
  /* The offer is fine; the payer's register refuses at confirmation. */
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, FIXTURE_MAX_PAYMENT + 1, NULL, NULL, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), NOW, &offer, &error));
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), NOW, &none, &error));
  g_assert_no_error (error);
  g_autofree char *before = fixture_register_dump (f->payer, TRUE);
  g_autoptr (GBytes) pay = tally_session_confirm (payer, NOW, &error);
  g_assert_null (pay);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_FAILED);
  g_autofree char *after = fixture_register_dump (f->payer, TRUE);
  g_assert_cmpstr (before, ==, after);
  /* The payee learns why. */
  g_autoptr (GBytes) abort_msg = tally_session_abort (payer, TALLY_ERROR_LIMIT_PAYMENT, "x");
  g_assert_null (abort_msg); /* already failed: the caller sends its own */
}

static void
test_agent_rejection_spends_nothing (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payee = waiting_payee (f);
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), NOW, &offer, &error));
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), NOW, &none, &error));
  g_autofree char *before = fixture_register_dump (f->payer, TRUE);
  g_autoptr (GBytes) rejection = tally_session_abort (payer, TALLY_ERROR_REJECTED, "user said no");
  g_assert_nonnull (rejection);
  g_autofree char *after = fixture_register_dump (f->payer, TRUE);
  g_assert_cmpstr (before, ==, after);

  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (payee, g_bytes_get_data (rejection, NULL),
                                        g_bytes_get_size (rejection), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REJECTED);
  /* The payee failed on the payer's word, the payer on its own. */
  g_assert_true (tally_session_is_refused_by_peer (payee));
  g_assert_false (tally_session_is_refused_by_peer (payer));
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 0);
}

/* --- the commitment to N_a (protocol 4.2, Reveal) -------------------------- */

/* A payee that sent its offer and waits for the reveal; its code is not
 * shown yet. */
static void
offered_rig (PayeeRig *r, Fixture *f)
{
  payee_rig_init_offered (r, f->payee, 700);
  g_assert_cmpint (tally_session_get_state (r->payee), ==, TALLY_SESSION_STATE_OFFER_SENT);
  g_assert_null (tally_session_get_comparison_code (r->payee));
}

static void
test_payee_refuses_reveal_that_does_not_open_commitment (Fixture *f, gconstpointer data)
{
  /* What a payer (or a relay posing as one) that wants another code after
   * seeing the offer would have to send: another N_a than it committed to. */
  PayeeRig r;
  offered_rig (&r, f);
  guint8 other[TALLY_NONCE_BYTES];
  memcpy (other, r.s.commit_nonce, sizeof other);
  other[0] ^= 0x01;
  g_autoptr (GBytes) msg = script_reveal (&r.s, other, sizeof other);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_TRANSCRIPT);
  g_assert_null (tally_session_get_comparison_code (r.payee));
  payee_rig_clear (&r);
}

static void
test_payee_refuses_reveal_of_short_nonce (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  offered_rig (&r, f);
  g_autoptr (GBytes) msg = script_reveal (&r.s, r.s.commit_nonce, TALLY_NONCE_BYTES - 1);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_MALFORMED);
  g_assert_null (tally_session_get_comparison_code (r.payee));
  payee_rig_clear (&r);
}

static void
test_payee_refuses_tampered_reveal (Fixture *f, gconstpointer data)
{
  PayeeRig r;
  offered_rig (&r, f);
  g_autoptr (GBytes) reveal = script_reveal (&r.s, NULL, 0);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (reveal);
  m->reveal.data[4] ^= 0x10;
  g_autoptr (GBytes) tampered = script_pack_session (m);
  assert_refused (r.payee, f->payee, tampered, TALLY_ERROR_DECRYPT);
  g_assert_null (tally_session_get_comparison_code (r.payee));
  payee_rig_clear (&r);
}

/* A Reveal whose ciphertext nobody could open. */
static GBytes *
junk_reveal (void)
{
  guint8 junk[TALLY_NONCE_BYTES + 2 + crypto_aead_chacha20poly1305_IETF_ABYTES] = { 0 };
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_REVEAL;
  m.reveal.data = junk;
  m.reveal.len = sizeof junk;
  return script_pack_session (&m);
}

static void
test_refuses_reveal_before_offer (Fixture *f, gconstpointer data)
{
  /* A payee that has not offered yet: there is nothing to reveal to. */
  g_autoptr (TallySession) payee = waiting_payee (f);
  g_autoptr (GBytes) reveal = junk_reveal ();
  assert_refused (payee, f->payee, reveal, TALLY_ERROR_WRONG_STATE);
  g_assert_null (tally_session_get_comparison_code (payee));

  /* A payer never takes one. */
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  assert_refused (payer, f->payer, reveal, TALLY_ERROR_WRONG_STATE);
  g_assert_null (tally_session_get_comparison_code (payer));
}

static void
test_payee_refuses_pay_without_reveal (Fixture *f, gconstpointer data)
{
  /* The payer skips the reveal: the payee never showed a code, so it must
   * not take a permission. */
  PayeeRig r;
  offered_rig (&r, f);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->payer);
  g_autoptr (GBytes) perm = honest_permission (f, &r);
  g_autoptr (GBytes) msg = script_pay (&r.s, cert, perm, f->payer, NULL);
  assert_refused (r.payee, f->payee, msg, TALLY_ERROR_WRONG_STATE);
  g_assert_null (tally_session_get_comparison_code (r.payee));
  g_assert_cmpint (tally_register_get_balance (f->payee), ==, 0);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_duplicate_reveal (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  PayeeRig r;
  offered_rig (&r, f);
  g_autoptr (GBytes) reveal = script_reveal (&r.s, NULL, 0);
  g_autoptr (GBytes) none = deliver (r.payee, reveal, NOW);
  g_assert_null (none);
  g_assert_cmpint (tally_session_get_state (r.payee), ==, TALLY_SESSION_STATE_WAIT_PAY);
  g_assert_cmpstr (tally_session_get_comparison_code (r.payee), ==, r.s.code);
  assert_refused (r.payee, f->payee, reveal, TALLY_ERROR_WRONG_STATE);
  payee_rig_clear (&r);
}

static void
test_payee_refuses_hello_without_commitment (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = waiting_payee (f);
  Script s;
  script_init (&s, TRUE);
  s.commitment_len = 0;
  g_autoptr (GBytes) msg = script_hello (&s, TALLY_PROTOCOL_VERSION, EPH);
  assert_refused (payee, f->payee, msg, TALLY_ERROR_MALFORMED);
  script_clear (&s);
}

static void
test_codes_agree_only_over_the_revealed_nonce (Fixture *f, gconstpointer data)
{
  /* The payer's code is over T2r, which needs N_a: the same offer with
   * another N_a gives the payee another T2r, and the code the honest
   * session shows is the scripted payer's. */
  PayeeRig r;
  offered_rig (&r, f);
  guint8 t2[TALLY_HASH_BYTES];
  memcpy (t2, r.s.t2, sizeof t2);
  g_autoptr (GBytes) reveal = script_reveal (&r.s, NULL, 0);
  g_autoptr (GBytes) none = deliver (r.payee, reveal, NOW);
  g_assert_cmpstr (tally_session_get_comparison_code (r.payee), ==, r.s.code);

  /* The code over T2 alone, as before the commitment, differs. */
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("comparison-code", t2, sizeof t2, h);
  g_assert_true (memcmp (h, r.s.code_hash, sizeof h) != 0);
  payee_rig_clear (&r);
}

/* --- revocation gossip ----------------------------------------------------- */

static void
test_newer_revocation_list_travels_to_payer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = fixture_revocation_list (f->issuer, 5, NOW, NULL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (f->payee, env, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_revocation_serial (f->payer), <, 5);

  run_honest_payment (f, 0);
  g_assert_cmpuint (tally_register_get_revocation_serial (f->payer), ==, 5);
}

static void
test_newer_revocation_list_travels_to_payee (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = fixture_revocation_list (f->issuer, 6, NOW, NULL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (f->payer, env, &error));
  g_assert_no_error (error);

  run_honest_payment (f, 0);
  g_assert_cmpuint (tally_register_get_revocation_serial (f->payee), ==, 6);
}

static void
test_gossiped_revocation_stops_payment_to_revoked_payee (Fixture *f, gconstpointer data)
{
  /* The payee carries the very list that revokes it; the payer applies
   * gossip before it trusts the payee. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list =
    fixture_revocation_list (f->issuer, 9, NOW, tally_register_get_id (f->payee), NULL);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
  g_assert_true (tally_register_update_revocation_list (f->payee, env, &error));
  g_assert_no_error (error);

  g_autoptr (TallySession) payee =
    tally_session_new_payee (f->payee, 100, NULL, NULL, NOW, &error);
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), NOW, &offer, &error));
  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                        g_bytes_get_size (offer), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED);
  g_assert_cmpuint (tally_register_get_revocation_serial (f->payer), ==, 9);
  g_assert_cmpint (tally_register_get_balance (f->payer), ==, 10000);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/session/pays-in-two-round-trips-over-socketpair", test_pays_in_two_round_trips);
  ADD ("/session/pays-framed-at-smallest-mtu", test_pays_framed_at_smallest_mtu);
  ADD ("/session/payee/refuses-forged-permission-signature",
       test_payee_refuses_forged_permission_signature);
  ADD ("/session/payee/refuses-certificate-from-wrong-issuer",
       test_payee_refuses_certificate_from_wrong_issuer);
  ADD ("/session/payee/refuses-expired-certificate", test_payee_refuses_expired_certificate);
  ADD ("/session/payee/refuses-revoked-payer", test_payee_refuses_revoked_payer);
  ADD ("/session/payee/refuses-transcript-signed-by-another-key",
       test_payee_refuses_transcript_signed_by_another_key);
  ADD ("/session/payee/refuses-replayed-permission", test_payee_refuses_replayed_permission);
  ADD ("/session/payee/refuses-new-permission-for-another-open-request",
       test_payee_refuses_new_permission_for_another_open_request);
  ADD ("/session/payee/refuses-redelivery-of-offered-request",
       test_payee_refuses_redelivery_of_offered_request);
  ADD ("/session/redelivery/payer-delivers-again-permission-whose-receipt-was-lost",
       test_payer_delivers_again_permission_whose_receipt_was_lost);
  ADD ("/session/redelivery/payer-has-nothing-to-deliver-again",
       test_payer_has_nothing_to_deliver_again);
  ADD ("/session/payee/refuses-permission-for-another-payee",
       test_payee_refuses_permission_for_another_payee);
  ADD ("/session/payee/refuses-changed-amount", test_payee_refuses_changed_amount);
  ADD ("/session/payee/refuses-reused-counter-from-rolled-back-register",
       test_payee_refuses_reused_counter_from_rolled_back_register);
  ADD ("/session/payee/refuses-amount-over-payer-limit",
       test_payee_refuses_amount_over_payer_limit);
  ADD ("/session/payee/refuses-tampered-ciphertext", test_payee_refuses_tampered_ciphertext);
  ADD ("/session/payee/refuses-uncached-certificate-hash",
       test_payee_refuses_uncached_certificate_hash);
  ADD ("/session/cache/second-payment-sends-certificate-hash",
       test_second_payment_sends_certificate_hash);
  ADD ("/session/refuses-garbage-bytes", test_refuses_garbage_bytes);
  ADD ("/session/refuses-empty-message", test_refuses_empty_message);
  ADD ("/session/refuses-unsupported-version", test_refuses_unsupported_version);
  ADD ("/session/refuses-short-ephemeral-key", test_refuses_short_ephemeral_key);
  ADD ("/session/payee/refuses-low-order-ephemeral-key",
       test_payee_refuses_low_order_ephemeral_key);
  ADD ("/session/payer/refuses-low-order-ephemeral-key",
       test_payer_refuses_low_order_ephemeral_key);
  ADD ("/session/refuses-message-in-wrong-state", test_refuses_message_in_wrong_state);
  ADD ("/session/reports-peer-error-with-its-code", test_reports_peer_error_with_its_code);
  ADD ("/session/payer/refuses-offer-from-wrong-issuer",
       test_payer_refuses_offer_from_wrong_issuer);
  ADD ("/session/payer/refuses-forged-offer-signature", test_payer_refuses_forged_offer_signature);
  ADD ("/session/payer/refuses-request-naming-another-payee",
       test_payer_refuses_request_naming_another_payee);
  ADD ("/session/payer/refuses-zero-amount", test_payer_refuses_zero_amount);
  ADD ("/session/payer/refuses-tampered-offer", test_payer_refuses_tampered_offer);
  ADD ("/session/payer/refuses-amount-over-own-limit", test_payer_refuses_amount_over_own_limit);
  ADD ("/session/payer/agent-rejection-spends-nothing", test_agent_rejection_spends_nothing);
  ADD ("/session/commitment/payee-refuses-reveal-that-does-not-open-commitment",
       test_payee_refuses_reveal_that_does_not_open_commitment);
  ADD ("/session/commitment/payee-refuses-reveal-of-short-nonce",
       test_payee_refuses_reveal_of_short_nonce);
  ADD ("/session/commitment/payee-refuses-tampered-reveal", test_payee_refuses_tampered_reveal);
  ADD ("/session/commitment/refuses-reveal-before-offer", test_refuses_reveal_before_offer);
  ADD ("/session/commitment/payee-refuses-pay-without-reveal",
       test_payee_refuses_pay_without_reveal);
  ADD ("/session/commitment/payee-refuses-duplicate-reveal", test_payee_refuses_duplicate_reveal);
  ADD ("/session/commitment/payee-refuses-hello-without-commitment",
       test_payee_refuses_hello_without_commitment);
  ADD ("/session/commitment/codes-agree-only-over-the-revealed-nonce",
       test_codes_agree_only_over_the_revealed_nonce);
  ADD ("/session/gossip/newer-revocation-list-travels-to-payer",
       test_newer_revocation_list_travels_to_payer);
  ADD ("/session/gossip/newer-revocation-list-travels-to-payee",
       test_newer_revocation_list_travels_to_payee);
  ADD ("/session/gossip/revocation-stops-payment-to-revoked-payee",
       test_gossiped_revocation_stops_payment_to_revoked_payee);
#undef ADD

  return g_test_run ();
}
