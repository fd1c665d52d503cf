/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The request tag of the Hello (docs/protocol.md 4.2): a payer names the
 * payee request it answers; a payee session refuses a Hello naming
 * another, before it stores anything, and takes one naming none; the tag
 * is inside the transcript, so a relay that changes it breaks the offer.
 * The payer side is the scripted peer (script.c) or a real session.
 */

#include <string.h>

#include "script.h"
#include "tally-session.h"
#include "wallet-fixture.h"

#define NOW FIXTURE_NOW

static const guint8 TAG_A[TALLY_REQUEST_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
static const guint8 TAG_B[TALLY_REQUEST_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3e };

typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  TallyRegister *payer;
  TallyRegister *payee;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  f->root = fixture_tmpdir ();
  g_autofree char *payer_dir = g_build_filename (f->root, "payer", NULL);
  g_autofree char *payee_dir = g_build_filename (f->root, "payee", NULL);
  f->payer = fixture_register_new (f->issuer, payer_dir, NULL, NOW);
  f->payee = fixture_register_new (f->issuer, payee_dir, NULL, NOW);
  fixture_register_fund (f->issuer, f->payer, 1, 10000, NOW);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->payer, tally_register_free);
  g_clear_pointer (&f->payee, tally_register_free);
  fixture_remove_tree (f->root);
  g_free (f->root);
  fixture_issuer_free (f->issuer);
}

/* A payee session for request @tag, waiting for a Hello. */
static TallySession *
tagged_payee (Fixture *f, const guint8 *tag)
{
  g_autoptr (GError) error = NULL;
  TallySession *s = tally_session_new_payee (f->payee, 100, "till 1", NULL, NOW, &error);
  g_assert_no_error (error);
  if (tag != NULL)
    tally_session_set_request_tag (s, tag);
  return s;
}

/* A scripted Hello naming @tag_len bytes of @tag. */
static GBytes *
hello_naming (const guint8 *tag, gsize tag_len)
{
  Script s;
  script_init (&s, TRUE);
  memcpy (s.request_tag, tag, tag_len);
  s.request_tag_len = tag_len;
  GBytes *msg = script_hello (&s, TALLY_PROTOCOL_VERSION, SCRIPT_EPH_BYTES);
  script_clear (&s);
  return msg;
}

/* @session refuses @msg with @code, answers an Error with that code, and
 * the payee's register is as before. */
static void
assert_refused_unchanged (Fixture *f, TallySession *session, GBytes *msg, TallyError code)
{
  g_autofree char *before = fixture_register_dump (f->payee, TRUE);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (session, g_bytes_get_data (msg, NULL),
                                        g_bytes_get_size (msg), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, (gint) code);
  g_assert_nonnull (reply);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (reply);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_ERROR);
  g_assert_cmpuint (m->error->code, ==, (guint) code);
  g_autofree char *after = fixture_register_dump (f->payee, TRUE);
  g_assert_cmpstr (before, ==, after);
}

/* @session answers @msg with an Offer. */
static void
assert_offered (TallySession *session, GBytes *msg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reply = NULL;
  g_assert_true (tally_session_handle (session, g_bytes_get_data (msg, NULL),
                                       g_bytes_get_size (msg), NOW, &reply, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (reply);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_OFFER);
  g_assert_cmpint (tally_session_get_state (session), ==, TALLY_SESSION_STATE_OFFER_SENT);
}

static void
test_payee_refuses_hello_naming_another_request (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = tagged_payee (f, TAG_A);
  g_autoptr (GBytes) hello = hello_naming (TAG_B, sizeof TAG_B);
  assert_refused_unchanged (f, payee, hello, TALLY_ERROR_NOT_FOUND);
}

static void
test_payee_refuses_request_tag_of_wrong_size (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = tagged_payee (f, TAG_A);
  g_autoptr (GBytes) hello = hello_naming (TAG_A, 3);
  assert_refused_unchanged (f, payee, hello, TALLY_ERROR_MALFORMED);
}

static void
test_payee_takes_hello_naming_its_request (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = tagged_payee (f, TAG_A);
  g_autoptr (GBytes) hello = hello_naming (TAG_A, sizeof TAG_A);
  assert_offered (payee, hello);
}

/* Payers that predate the tag keep paying a payee with one request. */
static void
test_payee_takes_hello_naming_no_request (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = tagged_payee (f, TAG_A);
  g_autoptr (GBytes) hello = hello_naming (TAG_A, 0);
  assert_offered (payee, hello);
}

/* A payee session given no tag has no request a tag could name. */
static void
test_untagged_payee_refuses_any_tag (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payee = tagged_payee (f, NULL);
  g_autoptr (GBytes) hello = hello_naming (TAG_A, sizeof TAG_A);
  assert_refused_unchanged (f, payee, hello, TALLY_ERROR_NOT_FOUND);
}

static void
test_payer_hello_carries_its_tag (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  tally_session_set_request_tag (payer, TAG_A);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SessionMessage) m = script_unpack_session (hello);
  g_assert_cmpint (m->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_HELLO);
  g_assert_cmpmem (m->hello->request_tag.data, m->hello->request_tag.len, TAG_A, sizeof TAG_A);
}

/* A relay rewrites the tag of an honest payer's Hello so that another
 * request is offered: the offer is sealed over the Hello the payee saw,
 * and the payer, which hashed the Hello it sent, cannot open it. */
static void
test_offer_for_a_rewritten_tag_is_refused_by_the_payer (Fixture *f, gconstpointer data)
{
  g_autoptr (TallySession) payer = tally_session_new_payer (f->payer, NULL);
  tally_session_set_request_tag (payer, TAG_A);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);

  g_autoptr (Tally__SessionMessage) m = script_unpack_session (hello);
  memcpy (m->hello->request_tag.data, TAG_B, sizeof TAG_B);
  gsize len = tally__session_message__get_packed_size (m);
  guint8 *buf = g_malloc (len);
  tally__session_message__pack (m, buf);
  g_autoptr (GBytes) rewritten = g_bytes_new_take (buf, len);

  g_autoptr (TallySession) payee = tagged_payee (f, TAG_B);
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (rewritten, NULL),
                                       g_bytes_get_size (rewritten), NOW, &offer, &error));
  g_assert_no_error (error);

  g_autoptr (GBytes) reply = NULL;
  g_assert_false (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                        g_bytes_get_size (offer), NOW, &reply, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DECRYPT);
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_FAILED);
  g_assert_cmpint (tally_register_get_balance (f->payer), ==, 10000);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/pairing/session-tag/payee-refuses-hello-naming-another-request",
       test_payee_refuses_hello_naming_another_request);
  ADD ("/pairing/session-tag/payee-refuses-request-tag-of-wrong-size",
       test_payee_refuses_request_tag_of_wrong_size);
  ADD ("/pairing/session-tag/payee-takes-hello-naming-its-request",
       test_payee_takes_hello_naming_its_request);
  ADD ("/pairing/session-tag/payee-takes-hello-naming-no-request",
       test_payee_takes_hello_naming_no_request);
  ADD ("/pairing/session-tag/untagged-payee-refuses-any-tag", test_untagged_payee_refuses_any_tag);
  ADD ("/pairing/session-tag/payer-hello-carries-its-tag", test_payer_hello_carries_its_tag);
  ADD ("/pairing/session-tag/offer-for-a-rewritten-tag-is-refused-by-the-payer",
       test_offer_for_a_rewritten_tag_is_refused_by_the_payer);
#undef ADD
  return g_test_run ();
}
