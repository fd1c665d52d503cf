/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A relay grinding the comparison code (docs/protocol.md §4.2, "Why the code
 * is worth comparing").
 *
 * The attacker holds a register the issuer certified, its own.  It runs two
 * legs: as payer to the real stall, which shows the code of that session
 * (the target), and as payee to the victim payer.  The victim compares the
 * code on its screen with the stall's and pays whoever its session is with.
 * The attacker sees the victim's Hello first and may try as many offers as
 * it likes before it sends one: here it varies OfferBody.max_message over
 * values whose varint is always five bytes, so that every candidate is the
 * same body with its last four bytes changed and the transcript hash of a
 * candidate costs one BLAKE2b block (libsodium's generichash, directly).
 *
 * - Against the code as it was, over T2 alone, the grind finds an offer
 *   whose code is the stall's within about 10^6 candidates: the test that
 *   shows this harness can fail.
 * - Against the code over T2r, which needs the payer's N_a (committed to in
 *   the Hello, revealed after the offer), 2^20 candidates evaluated under
 *   the attacker's best guess of N_a do not help: the victim's code is the
 *   target only by chance.
 * - Over many fresh sessions, each with a grind that would match the
 *   target in about one session of 60 under the old code, the victim shows
 *   the target at most once (10^-6 per session; the bound fails for the old
 *   code with overwhelming probability, and that is checked in the same
 *   run).
 *
 * Every candidate the attacker picks is then built for real (signed over
 * its T2, sealed) and handed to a real payer session, which accepts it: the
 * grind computes exactly the transcript the victim computes.
 */

#include <string.h>

#include "script.h"
#include "tally-session.h"
#include "wallet-fixture.h"

#define NOW       FIXTURE_NOW
#define CODE_MOD  1000000u
#define LABEL_PFX "tally/v1/"

/* max_message values with a five-byte varint: [2^28, 2^32). */
#define MAX_MESSAGE_BASE ((guint32) 1 << 28)

/* The single full grind against the committed code. */
#define FULL_GRIND ((guint32) 1 << 20)
/* The grind against the old code stops at a match; 2^24 candidates miss
 * with probability e^-16.7. */
#define OLD_GRIND_LIMIT ((guint32) 1 << 24)
/* Fresh sessions and the candidates per session: under the old code each
 * session matches with chance 1 - (1 - 10^-6)^2^14 = 1.6 %, about 16 of
 * 1000; under the committed one each matches with chance 10^-6. */
#define SESSIONS           1000
#define PER_SESSION_GRIND  ((guint32) 1 << 14)
#define MAX_COMMITTED_HITS 1 /* P(2 or more of 1000 at 10^-6) < 5e-7 */
#define MIN_OLD_CODE_HITS  2 /* P(1 or none at mean 16.3) < 2e-6 */

/* --- the grind, on libsodium's BLAKE2b ---------------------------------------- */

static void
labelled_init (crypto_generichash_state *st, const char *label)
{
  crypto_generichash_init (st, NULL, 0, TALLY_HASH_BYTES);
  crypto_generichash_update (st, (const guint8 *) LABEL_PFX, strlen (LABEL_PFX));
  crypto_generichash_update (st, (const guint8 *) label, strlen (label) + 1);
}

static void
update_lp_len (crypto_generichash_state *st, gsize len)
{
  guint8 be[4] = { (guint8) (len >> 24), (guint8) (len >> 16), (guint8) (len >> 8), (guint8) len };
  crypto_generichash_update (st, be, sizeof be);
}

static void
varint5 (guint32 v, guint8 out[5])
{
  g_assert_cmpuint (v, >=, MAX_MESSAGE_BASE);
  for (int i = 0; i < 4; i++)
    out[i] = (guint8) (((v >> (7 * i)) & 0x7f) | 0x80);
  out[4] = (guint8) (v >> 28);
}

typedef struct
{
  /* H("transcript", T1 || lp(e_b) || lp(body) ... absorbed up to the
   * varint of max_message */
  crypto_generichash_state t2_prefix;
  crypto_generichash_state mix_prefix;  /* H("transcript", ... */
  crypto_generichash_state code_prefix; /* H("comparison-code", ... */
} Grind;

/* @body is an OfferBody packed with max_message = MAX_MESSAGE_BASE, which
 * protobuf-c writes last: tag 0x28 and a five-byte varint. */
static void
grind_init (Grind *g, const guint8 t1[TALLY_HASH_BYTES], const guint8 *e_b, GBytes *body)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  guint8 tail[5];
  varint5 (MAX_MESSAGE_BASE, tail);
  g_assert_cmpuint (len, >, 6);
  g_assert_cmpuint (data[len - 6], ==, 0x28);
  g_assert_cmpmem (data + len - 5, 5, tail, 5);

  labelled_init (&g->t2_prefix, "transcript");
  crypto_generichash_update (&g->t2_prefix, t1, TALLY_HASH_BYTES);
  update_lp_len (&g->t2_prefix, SCRIPT_EPH_BYTES);
  crypto_generichash_update (&g->t2_prefix, e_b, SCRIPT_EPH_BYTES);
  update_lp_len (&g->t2_prefix, len);
  crypto_generichash_update (&g->t2_prefix, data, len - 5);
  labelled_init (&g->mix_prefix, "transcript");
  labelled_init (&g->code_prefix, "comparison-code");
}

/* T2 of the offer whose max_message is @m. */
static void
grind_t2 (const Grind *g, guint32 m, guint8 t2[TALLY_HASH_BYTES])
{
  crypto_generichash_state st = g->t2_prefix;
  guint8 v[5];
  varint5 (m, v);
  crypto_generichash_update (&st, v, sizeof v);
  crypto_generichash_final (&st, t2, TALLY_HASH_BYTES);
}

/* decimal6 (BE32 (H("comparison-code", t)[0..4]) mod 10^6), as a number. */
static guint32
grind_code_over (const Grind *g, const guint8 t[TALLY_HASH_BYTES])
{
  crypto_generichash_state st = g->code_prefix;
  guint8 h[TALLY_HASH_BYTES];
  crypto_generichash_update (&st, t, TALLY_HASH_BYTES);
  crypto_generichash_final (&st, h, sizeof h);
  guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
  return v % CODE_MOD;
}

/* The code as it was: over T2. */
static guint32
old_code (const Grind *g, const guint8 t2[TALLY_HASH_BYTES])
{
  return grind_code_over (g, t2);
}

/* The code now: over T2r = H("transcript", T2 || lp(N_a)).  Without N_a
 * there is nothing to evaluate. */
static guint32
committed_code (const Grind *g, const guint8 t2[TALLY_HASH_BYTES], const guint8 *n_a)
{
  crypto_generichash_state st = g->mix_prefix;
  guint8 t2r[TALLY_HASH_BYTES];
  crypto_generichash_update (&st, t2, TALLY_HASH_BYTES);
  update_lp_len (&st, TALLY_NONCE_BYTES);
  crypto_generichash_update (&st, n_a, TALLY_NONCE_BYTES);
  crypto_generichash_final (&st, t2r, sizeof t2r);
  return grind_code_over (g, t2r);
}

static guint32
code_value (const char *digits)
{
  g_assert_nonnull (digits);
  g_assert_cmpuint (strlen (digits), ==, TALLY_COMPARISON_CODE_DIGITS);
  return (guint32) g_ascii_strtoull (digits, NULL, 10);
}

/* --- the world ------------------------------------------------------------------ */

typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  TallyRegister *victim;   /* the payer, funded */
  TallyRegister *stall;    /* the payee the victim means to pay */
  TallyRegister *attacker; /* certified by the same issuer */
  Tally__SignedEnvelope *attacker_cert;
  Tally__PaymentRequest *attacker_request;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  f->root = fixture_tmpdir ();
  const char *names[] = { "victim", "stall", "attacker" };
  TallyRegister **regs[] = { &f->victim, &f->stall, &f->attacker };
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *dir = g_build_filename (f->root, names[i], NULL);
    *regs[i] = fixture_register_new (f->issuer, dir, NULL, NOW);
  }
  fixture_register_fund (f->issuer, f->victim, 1, 10000, NOW);
  g_autoptr (GBytes) cert = tally_register_get_certificate (f->attacker);
  f->attacker_cert = fixture_envelope (cert);
  f->attacker_request = tally_register_new_request (f->attacker, 1250, "coffee", NOW, &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->attacker_request, tally__payment_request_free);
  g_clear_pointer (&f->attacker_cert, tally__signed_envelope_free);
  g_clear_pointer (&f->victim, tally_register_free);
  g_clear_pointer (&f->stall, tally_register_free);
  g_clear_pointer (&f->attacker, tally_register_free);
  fixture_remove_tree (f->root);
  g_free (f->root);
  fixture_issuer_free (f->issuer);
}

static GBytes *
handle_ok (TallySession *s, GBytes *msg)
{
  g_autoptr (GError) error = NULL;
  GBytes *reply = NULL;
  g_assert_true (tally_session_handle (s, g_bytes_get_data (msg, NULL), g_bytes_get_size (msg), NOW,
                                       &reply, &error));
  g_assert_no_error (error);
  return reply;
}

/* The attacker's leg to the stall: it pays nothing, it only learns the
 * code the stall shows for that session. */
static guint32
stall_code (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) stall =
    tally_session_new_payee (f->stall, 1250, "coffee", NULL, NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallySession) leg = tally_session_new_payer (f->attacker, NULL);
  g_autoptr (GBytes) hello = tally_session_start (leg, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) offer = handle_ok (stall, hello);
  g_autoptr (GBytes) reveal = handle_ok (leg, offer);
  g_autoptr (GBytes) none = handle_ok (stall, reveal);
  g_assert_cmpstr (tally_session_get_comparison_code (stall), ==,
                   tally_session_get_comparison_code (leg));
  return code_value (tally_session_get_comparison_code (stall));
}

/* One session with the victim, up to the attacker's choice of offer. */
typedef struct
{
  TallySession *victim;
  GBytes *hello;
  Script s; /* the attacker as payee: e_b, session keys, transcript */
  guint8 t1[TALLY_HASH_BYTES];
  Grind grind;
} Leg;

static void
leg_init (Leg *l, Fixture *f)
{
  g_autoptr (GError) error = NULL;
  l->victim = tally_session_new_payer (f->victim, NULL);
  l->hello = tally_session_start (l->victim, &error);
  g_assert_no_error (error);
  script_init (&l->s, FALSE);

  /* T1 from the Hello as it travelled; the commitment inside it is all the
   * attacker knows of N_a. */
  guint8 t0[TALLY_HASH_BYTES];
  crypto_generichash_state st;
  labelled_init (&st, "transcript-init");
  crypto_generichash_final (&st, t0, sizeof t0);
  labelled_init (&st, "transcript");
  crypto_generichash_update (&st, t0, sizeof t0);
  update_lp_len (&st, g_bytes_get_size (l->hello));
  crypto_generichash_update (&st, g_bytes_get_data (l->hello, NULL), g_bytes_get_size (l->hello));
  crypto_generichash_final (&st, l->t1, sizeof l->t1);

  Tally__OfferBody body = TALLY__OFFER_BODY__INIT;
  body.payee_certificate = f->attacker_cert;
  body.request = f->attacker_request;
  body.max_message = MAX_MESSAGE_BASE;
  g_autoptr (GBytes) packed = tally_message_pack (&body.base);
  grind_init (&l->grind, l->t1, l->s.eph_pk, packed);
}

/* The attacker sends the offer with max_message @m, built for real; the
 * victim accepts it and answers with its Reveal.  Returns the victim's
 * code. */
static guint32
leg_offer (Leg *l, Fixture *f, guint32 m)
{
  Tally__OfferBody body = TALLY__OFFER_BODY__INIT;
  body.payee_certificate = f->attacker_cert;
  body.request = f->attacker_request;
  body.max_message = m;
  g_autoptr (GBytes) offer = script_offer_body (&l->s, l->hello, &body, f->attacker, NULL);

  /* The grind's transcript is the one the attacker signed. */
  guint8 t2[TALLY_HASH_BYTES];
  grind_t2 (&l->grind, m, t2);
  g_assert_cmpmem (l->s.t1, TALLY_HASH_BYTES, l->t1, TALLY_HASH_BYTES);
  g_assert_cmpmem (l->s.t2, TALLY_HASH_BYTES, t2, TALLY_HASH_BYTES);

  /* The victim verifies the signature over that T2 and reveals N_a. */
  g_autoptr (GBytes) reveal = handle_ok (l->victim, offer);
  g_assert_nonnull (reveal);
  g_assert_cmpint (tally_session_get_state (l->victim), ==, TALLY_SESSION_STATE_CONFIRMING);
  guint32 shown = code_value (tally_session_get_comparison_code (l->victim));

  /* With N_a in hand the attacker computes the very code shown: the
   * grind's code function is exact, it only lacked N_a. */
  script_take_reveal (&l->s, reveal);
  g_assert_true (l->s.commitment_ok);
  g_assert_cmpuint (committed_code (&l->grind, t2, l->s.commit_nonce), ==, shown);
  g_assert_cmpuint (code_value (l->s.code), ==, shown);
  return shown;
}

static void
leg_clear (Leg *l)
{
  g_clear_pointer (&l->victim, tally_session_free);
  g_clear_pointer (&l->hello, g_bytes_unref);
  script_clear (&l->s);
}

/* --- the tests ------------------------------------------------------------------ */

static void
test_grind_matches_stall_code_when_code_lacks_nonce (Fixture *f, gconstpointer data)
{
  /* The attack as it worked before the commitment: the code over T2. */
  guint32 target = stall_code (f);
  Leg l;
  leg_init (&l, f);

  gint64 start = g_get_monotonic_time ();
  guint32 found = 0, tries = 0;
  guint8 t2[TALLY_HASH_BYTES];
  for (guint32 i = 0; i < OLD_GRIND_LIMIT; i++) {
    grind_t2 (&l.grind, MAX_MESSAGE_BASE + i, t2);
    if (old_code (&l.grind, t2) == target) {
      found = MAX_MESSAGE_BASE + i;
      tries = i + 1;
      break;
    }
  }
  g_test_message ("old code: stall's %06u matched after %u candidates in %.2f s", target, tries,
                  (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC);
  g_assert_cmpuint (found, !=, 0);

  /* The victim accepts that offer: over the old formula it would have shown
   * the stall's code.  It shows the code over T2r instead. */
  guint32 shown = leg_offer (&l, f, found);
  grind_t2 (&l.grind, found, t2);
  guint8 h[TALLY_HASH_BYTES];
  tally_hash ("comparison-code", t2, sizeof t2, h);
  guint32 v = ((guint32) h[0] << 24) | ((guint32) h[1] << 16) | ((guint32) h[2] << 8) | h[3];
  g_assert_cmpuint (v % CODE_MOD, ==, target);
  g_test_message ("the victim shows %06u (the stall %06u)", shown, target);
  leg_clear (&l);
}

static void
test_grind_of_many_offers_misses_stall_code (Fixture *f, gconstpointer data)
{
  guint32 target = stall_code (f);
  Leg l;
  leg_init (&l, f);

  /* The attacker's best: a guess of N_a (it sees only C_a, a hash of it),
   * 2^20 offers evaluated under that guess and under the old formula, and
   * the offer that hits the target under the guess, else under the old
   * formula, else the first. */
  guint8 guess[TALLY_NONCE_BYTES];
  randombytes_buf (guess, sizeof guess);
  gint64 start = g_get_monotonic_time ();
  guint32 by_guess = 0, by_old = 0, guess_hits = 0, old_hits = 0;
  guint8 t2[TALLY_HASH_BYTES];
  for (guint32 i = 0; i < FULL_GRIND; i++) {
    guint32 m = MAX_MESSAGE_BASE + i;
    grind_t2 (&l.grind, m, t2);
    if (committed_code (&l.grind, t2, guess) == target) {
      guess_hits++;
      by_guess = by_guess ? by_guess : m;
    }
    if (old_code (&l.grind, t2) == target) {
      old_hits++;
      by_old = by_old ? by_old : m;
    }
  }
  guint32 pick = by_guess ? by_guess : by_old ? by_old : MAX_MESSAGE_BASE;
  g_test_message ("%u offers in %.2f s: %u hit %06u under the guessed N_a, %u under the old "
                  "code",
                  FULL_GRIND, (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC,
                  guess_hits, target, old_hits);

  guint32 shown = leg_offer (&l, f, pick);
  /* The guess is not N_a, so the code the attacker aimed with is not the
   * one the victim computes... */
  g_assert_true (memcmp (guess, l.s.commit_nonce, sizeof guess) != 0);
  grind_t2 (&l.grind, pick, t2);
  g_test_message ("picked max_message %u: aimed %06u, the victim shows %06u", pick,
                  committed_code (&l.grind, t2, guess), shown);
  /* ...and the victim's code is the stall's only by chance, 10^-6. */
  g_assert_cmpuint (shown, !=, target);
  leg_clear (&l);
}

static void
test_fresh_sessions_match_no_more_than_chance (Fixture *f, gconstpointer data)
{
  guint committed_hits = 0, old_hits = 0;
  gint64 start = g_get_monotonic_time ();

  for (guint k = 0; k < SESSIONS; k++) {
    guint32 target = randombytes_uniform (CODE_MOD);
    Leg l;
    leg_init (&l, f);
    /* The grind that wins under the old code, cut to this many offers. */
    guint32 pick = MAX_MESSAGE_BASE;
    gboolean old_match = FALSE;
    guint8 t2[TALLY_HASH_BYTES];
    for (guint32 i = 0; i < PER_SESSION_GRIND && !old_match; i++) {
      grind_t2 (&l.grind, MAX_MESSAGE_BASE + i, t2);
      if (old_code (&l.grind, t2) == target) {
        pick = MAX_MESSAGE_BASE + i;
        old_match = TRUE;
      }
    }
    guint32 shown = leg_offer (&l, f, pick);
    if (old_match)
      old_hits++;
    if (shown == target)
      committed_hits++;
    leg_clear (&l);
  }
  g_test_message ("%u sessions, %u offers each, %.2f s: the old code would have shown the "
                  "target in %u, the victim showed it in %u",
                  SESSIONS, PER_SESSION_GRIND,
                  (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC, old_hits,
                  committed_hits);
  /* The same grind beats the bound under the old code... */
  g_assert_cmpuint (old_hits, >=, MIN_OLD_CODE_HITS);
  /* ...and not under the committed one. */
  g_assert_cmpuint (committed_hits, <=, MAX_COMMITTED_HITS);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/adversarial/relay/grind-matches-stall-code-when-code-lacks-nonce",
       test_grind_matches_stall_code_when_code_lacks_nonce);
  ADD ("/adversarial/relay/grind-of-2^20-offers-misses-stall-code",
       test_grind_of_many_offers_misses_stall_code);
  ADD ("/adversarial/relay/fresh-sessions-match-no-more-than-chance",
       test_fresh_sessions_match_no_more_than_chance);
#undef ADD

  return g_test_run ();
}
