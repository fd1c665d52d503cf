/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Several open requests per stall ([payment] max_open_requests): each has
 * its own tag, a payer names the one it pays in its Hello (the tag from
 * the request's tally:// URI), and the stall routes it there over one
 * listener (docs/protocol.md 4.2, docs/dbus-api.md RequestPayment).
 *
 * The stall is a real TallyDaemon on a UNIX socket; the payers are
 * payer-side payments over the stream transport, each with a register of
 * its own (stall-fixture.h).
 */
#include "stall-fixture.h"

#include <string.h>
#include <unistd.h>

#include "tally-hex.h"
#include "tally-uri.h"
#include "tally-channel.h"
#include "tally-clock.h"
#include "tally-core.h"
#include "tally-stream.h"

#define AMOUNT_B 300

typedef struct
{
  char *path;
  guint8 tag[TALLY_REQUEST_TAG_BYTES];
} OpenRequest;

/* RequestPayment of @amount with @memo; its object and the tag its URI
 * gives payers. */
static void
open_request (Fixture *f, OpenRequest *r, gint64 amount, const char *memo)
{
  g_autoptr (GError) error = NULL;
  r->path =
    tally_daemon_request_payment (f->stall, getuid (), amount, memo, TIMEOUT_SECONDS, 1, &error);
  g_assert_no_error (error);
  g_autofree char *text = object_string (f, r->path, "RequestUri");
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
  g_assert_no_error (error);
  g_assert_cmpint (uri->amount, ==, amount);
  g_assert_cmpuint (strlen (uri->tag), ==, 2 * TALLY_REQUEST_TAG_BYTES);
  g_assert_true (tally_hex_decode (uri->tag, r->tag, sizeof r->tag, &error));
  g_assert_no_error (error);
}

/* RequestPayment for @payers payers, as open_request (). */
static void
open_request_for (Fixture *f, OpenRequest *r, gint64 amount, const char *memo, guint payers)
{
  g_autoptr (GError) error = NULL;
  r->path = tally_daemon_request_payment (f->stall, getuid (), amount, memo, TIMEOUT_SECONDS,
                                          payers, &error);
  g_assert_no_error (error);
  g_autofree char *text = object_string (f, r->path, "RequestUri");
  g_autoptr (TallyRequestUri) uri = tally_request_uri_parse (text, &error);
  g_assert_no_error (error);
  g_assert_true (tally_hex_decode (uri->tag, r->tag, sizeof r->tag, &error));
  g_assert_no_error (error);
}

/* @path's Payment1 property @property. */
static GVariant *
object_value (Fixture *f, const char *path, const char *property)
{
  g_autoptr (GVariant) reply =
    stall_call (f, path, "org.freedesktop.DBus.Properties", "Get",
                g_variant_new ("(ss)", "org.tally.Payment1", property), G_VARIANT_TYPE ("(v)"));
  GVariant *v = NULL;
  g_variant_get (reply, "(v)", &v);
  return v;
}

static gboolean
object_bool (Fixture *f, const char *path, const char *property)
{
  g_autoptr (GVariant) v = object_value (f, path, property);
  return g_variant_get_boolean (v);
}

static gint64
object_int64 (Fixture *f, const char *path, const char *property)
{
  g_autoptr (GVariant) v = object_value (f, path, property);
  return g_variant_get_int64 (v);
}

static void
open_request_clear (OpenRequest *r)
{
  g_free (r->path);
}

static void
payer_name_request (Payer *p, const guint8 tag[static TALLY_REQUEST_TAG_BYTES])
{
  p->tagged = TRUE;
  memcpy (p->tag, tag, TALLY_REQUEST_TAG_BYTES);
}

/* The amount on @p's receipt, which must be its own payment's. */
static gint64
payer_receipt_amount (Payer *p)
{
  GBytes *packed = tally_payment_get_receipt (p->payment);
  g_assert_nonnull (packed);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, NULL);
  g_assert_nonnull (env);
  g_autoptr (Tally__Receipt) receipt =
    TALLY_UNPACK (Tally__Receipt, tally__receipt, env->body.data, env->body.len, "receipt", NULL);
  g_assert_nonnull (receipt);
  g_assert_nonnull (receipt->amount);
  return receipt->amount->value;
}

/* A payer speaking by hand over a raw channel. */
typedef struct
{
  TallyLink *link;
  gboolean connected;
  GBytes *last; /* the last message the stall sent */
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

static void
on_raw_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  RawPayer *raw = user_data;
  g_clear_pointer (&raw->last, g_bytes_unref);
  raw->last = g_bytes_ref (message);
}

static gboolean
raw_got_message (gpointer data)
{
  return ((RawPayer *) data)->last != NULL;
}

/* @reg spends on the open request tagged @tag by hand, and its link drops
 * before the Pay leaves: the permission is pending, the request open. */
static void
spend_and_drop_before_pay (Fixture *f, TallyRegister *reg, const guint8 *tag, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) session = tally_session_new_payer (reg, NULL);
  tally_session_set_request_tag (session, tag);
  g_autoptr (GBytes) hello = tally_session_start (session, &error);
  g_assert_no_error (error);
  RawPayer raw = { 0 };
  tally_stream_connect_async (f->listen, TALLY_STREAM_DEFAULT_MTU, NULL, on_raw_connected, &raw);
  wait_until (raw_connected, &raw);
  g_assert_nonnull (raw.link);
  TallyChannel *channel = tally_channel_new (raw.link, 8192, WAIT_LIMIT_US / 1000);
  tally_channel_set_handlers (channel, on_raw_message, NULL, &raw, NULL);
  g_assert_true (tally_channel_send (channel, hello, NULL));
  wait_until (raw_got_message, &raw);
  g_autoptr (GBytes) reveal = NULL;
  gsize len;
  const guint8 *offer = g_bytes_get_data (raw.last, &len);
  g_assert_true (tally_session_handle (session, offer, len, tally_now (), &reveal, &error));
  g_assert_no_error (error);
  g_assert_true (tally_channel_send (channel, reveal, NULL));
  wait_object_state (f, path, "wait-pay");
  g_autoptr (GBytes) pay = tally_session_confirm (session, tally_now (), &error);
  g_assert_no_error (error);
  g_assert_nonnull (pay);
  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  tally_channel_close (channel);
  tally_channel_unref (channel);
  tally_link_unref (raw.link);
  g_clear_pointer (&raw.last, g_bytes_unref);
  wait_object_state (f, path, "waiting");
}

static void
flag_set (gpointer data)
{
  *(gboolean *) data = TRUE;
}

static gboolean
flag_is_set (gpointer data)
{
  return *(gboolean *) data;
}

/* A raw link to the stall, connected; its channel is returned. */
static TallyChannel *
raw_connect (Fixture *f, RawPayer *raw)
{
  tally_stream_connect_async (f->listen, TALLY_STREAM_DEFAULT_MTU, NULL, on_raw_connected, raw);
  wait_until (raw_connected, raw);
  g_assert_nonnull (raw->link);
  TallyChannel *channel = tally_channel_new (raw->link, 8192, WAIT_LIMIT_US / 1000);
  tally_channel_set_handlers (channel, on_raw_message, NULL, raw, NULL);
  return channel;
}

/* Sends @hello on @channel and returns the error code the stall answers
 * with (its Error message); closes the link. */
static guint32
raw_send_hello_for_error (RawPayer *raw, TallyChannel *channel, Tally__Hello *hello)
{
  Tally__SessionMessage m = TALLY__SESSION_MESSAGE__INIT;
  m.msg_case = TALLY__SESSION_MESSAGE__MSG_HELLO;
  m.hello = hello;
  gsize len = tally__session_message__get_packed_size (&m);
  guint8 *buf = g_malloc (len);
  tally__session_message__pack (&m, buf);
  g_autoptr (GBytes) packed = g_bytes_new_take (buf, len);

  g_assert_true (tally_channel_send (channel, packed, NULL));
  wait_until (raw_got_message, raw);
  gsize reply_len;
  const guint8 *reply = g_bytes_get_data (raw->last, &reply_len);
  g_autoptr (Tally__SessionMessage) answer = TALLY_UNPACK (
    Tally__SessionMessage, tally__session_message, reply, reply_len, "session message", NULL);
  g_assert_nonnull (answer);
  g_assert_cmpint (answer->msg_case, ==, TALLY__SESSION_MESSAGE__MSG_ERROR);
  guint32 code = answer->error->code;
  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  tally_channel_close (channel);
  tally_channel_unref (channel);
  tally_link_unref (raw->link);
  g_clear_pointer (&raw->last, g_bytes_unref);
  return code;
}

/* Sends @hello on a raw link to the stall and returns the error code the
 * stall answers with. */
static guint32
raw_hello_error (Fixture *f, Tally__Hello *hello)
{
  RawPayer raw = { 0 };
  TallyChannel *channel = raw_connect (f, &raw);
  return raw_send_hello_for_error (&raw, channel, hello);
}

static void
setup_two (Fixture *f, gconstpointer data)
{
  fixture_set_up (f, data);
  f->max_open_requests = 2;
}

/* With two requests open, a Hello with an unknown tag or none that is
 * also wrong in what comes before the tag (docs/protocol.md 4.2: Version;
 * Malformed key, commitment or tag length; then NotFound; then
 * RequestUnnamed) gets the first error in that order, and changes
 * nothing. */
static void
test_hello_errors_come_in_the_documented_order (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  guint nonces = stall_nonces (f);
  guint8 key[32], commitment[32], unknown[TALLY_REQUEST_TAG_BYTES], odd_tag[3] = { 1, 2, 3 };
  randombytes_buf (key, sizeof key);
  randombytes_buf (commitment, sizeof commitment);
  memcpy (unknown, ra.tag, sizeof unknown);
  unknown[0] ^= 0xff;
  if (memcmp (unknown, rb.tag, sizeof unknown) == 0)
    unknown[1] ^= 0xff;

  for (guint tagged = 0; tagged <= 1; tagged++) {
    Tally__Hello hello = TALLY__HELLO__INIT;
    hello.version = 1;
    hello.ephemeral_public_key = (ProtobufCBinaryData) { sizeof key, key };
    hello.commitment = (ProtobufCBinaryData) { sizeof commitment, commitment };
    if (tagged)
      hello.request_tag = (ProtobufCBinaryData) { sizeof unknown, unknown };
    guint32 late = tagged ? TALLY_ERROR_NOT_FOUND : TALLY_ERROR_REQUEST_UNNAMED;
    g_assert_cmpuint (raw_hello_error (f, &hello), ==, late);

    hello.version = 2;
    hello.ephemeral_public_key.len = 31;
    g_assert_cmpuint (raw_hello_error (f, &hello), ==, TALLY_ERROR_VERSION);
    hello.version = 1;
    g_assert_cmpuint (raw_hello_error (f, &hello), ==, TALLY_ERROR_MALFORMED);
    hello.ephemeral_public_key.len = sizeof key;
    hello.commitment.len = 0;
    g_assert_cmpuint (raw_hello_error (f, &hello), ==, TALLY_ERROR_MALFORMED);
    hello.commitment.len = sizeof commitment;
    g_assert_cmpuint (raw_hello_error (f, &hello), ==, late);
  }
  /* A tag of the wrong length is Malformed, not NotFound. */
  Tally__Hello hello = TALLY__HELLO__INIT;
  hello.version = 1;
  hello.ephemeral_public_key = (ProtobufCBinaryData) { sizeof key, key };
  hello.commitment = (ProtobufCBinaryData) { sizeof commitment, commitment };
  hello.request_tag = (ProtobufCBinaryData) { sizeof odd_tag, odd_tag };
  g_assert_cmpuint (raw_hello_error (f, &hello), ==, TALLY_ERROR_MALFORMED);

  g_assert_cmpuint (stall_nonces (f), ==, nonces);
  g_autofree char *state_a = object_state (f, ra.path);
  g_autofree char *state_b = object_state (f, rb.path);
  g_assert_cmpstr (state_a, ==, "waiting");
  g_assert_cmpstr (state_b, ==, "waiting");
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* With max_open_requests 2 a link that connects while one request is
 * open belongs to none yet: a second request opens before its Hello, and
 * the Hello, naming none, is refused with RequestUnnamed (as it would be
 * had it connected after), not taken by the first request. */
static void
test_link_connected_with_one_request_open_must_name_one_once_two_are (Fixture *f,
                                                                     gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  RawPayer raw = { 0 };
  TallyChannel *channel = raw_connect (f, &raw);
  /* The stall takes the connection (before the fix: for till 1). */
  gboolean settled = FALSE;
  g_timeout_add_once (300, flag_set, &settled);
  wait_until (flag_is_set, &settled);
  open_request (f, &rb, AMOUNT_B, "till 2");
  guint nonces = stall_nonces (f);

  guint8 key[32], commitment[32];
  randombytes_buf (key, sizeof key);
  randombytes_buf (commitment, sizeof commitment);
  Tally__Hello hello = TALLY__HELLO__INIT;
  hello.version = 1;
  hello.ephemeral_public_key = (ProtobufCBinaryData) { sizeof key, key };
  hello.commitment = (ProtobufCBinaryData) { sizeof commitment, commitment };
  g_assert_cmpuint (raw_send_hello_for_error (&raw, channel, &hello), ==,
                    TALLY_ERROR_REQUEST_UNNAMED);
  g_assert_cmpuint (stall_nonces (f), ==, nonces);
  g_autofree char *state_a = object_state (f, ra.path);
  g_assert_cmpstr (state_a, ==, "waiting");
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* Two tills: two requests open at once, two payers pay different ones
 * concurrently, and each gets its own offer, receipt and amount. */
static void
test_two_open_requests_paid_concurrently (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  g_assert_true (memcmp (ra.tag, rb.tag, sizeof ra.tag) != 0);

  Payer a = { .hold = TRUE }, b = { .hold = TRUE };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  payer_name_request (&a, ra.tag);
  payer_name_request (&b, rb.tag);
  payer_start (f, &a);
  payer_start (f, &b);
  wait_until (payer_confirming, &a);
  wait_until (payer_confirming, &b);
  /* Each was offered the request it named. */
  g_assert_cmpint (tally_payment_get_amount (a.payment), ==, AMOUNT);
  g_assert_cmpstr (tally_payment_get_memo (a.payment), ==, "till 1");
  g_assert_cmpint (tally_payment_get_amount (b.payment), ==, AMOUNT_B);
  g_assert_cmpstr (tally_payment_get_memo (b.payment), ==, "till 2");

  g_assert_true (tally_payment_confirm (b.payment, NULL));
  g_assert_true (tally_payment_confirm (a.payment, NULL));
  wait_until (payer_finished, &a);
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (payer_receipt_amount (&a), ==, AMOUNT);
  g_assert_cmpint (payer_receipt_amount (&b), ==, AMOUNT_B);
  g_assert_cmpint (tally_register_get_balance (a.reg), ==, PAYER_BALANCE - AMOUNT);
  g_assert_cmpint (tally_register_get_balance (b.reg), ==, PAYER_BALANCE - AMOUNT_B);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT + AMOUNT_B);
  wait_object_state (f, ra.path, "done");
  wait_object_state (f, rb.path, "done");

  payer_clear (&a);
  payer_clear (&b);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* A payer naming a tag no open request has is refused with NotFound,
 * with two requests open (routed) and with one (its session): nothing is
 * stored, nothing moves, and the requests go on. */
static void
test_unknown_tag_is_refused_and_changes_nothing (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  guint8 unknown[TALLY_REQUEST_TAG_BYTES];
  memcpy (unknown, ra.tag, sizeof unknown);
  unknown[0] ^= 0xff;
  if (memcmp (unknown, rb.tag, sizeof unknown) == 0)
    unknown[1] ^= 0xff;
  guint nonces = stall_nonces (f);

  for (guint open = 2; open >= 1; open--) {
    Payer x = { 0 };
    g_autofree char *name = g_strdup_printf ("x%u", open);
    payer_init (f, &x, name);
    payer_name_request (&x, unknown);
    payer_start (f, &x);
    wait_until (payer_finished, &x);
    g_assert_error (tally_payment_get_error (x.payment), TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
    g_assert_false (x.confirming);
    g_assert_cmpint (tally_register_get_balance (x.reg), ==, PAYER_BALANCE);
    g_assert_cmpuint (stall_nonces (f), ==, nonces);
    g_assert_cmpint (stall_balance (f), ==, 0);
    g_autofree char *state = object_state (f, ra.path);
    g_assert_cmpstr (state, ==, "waiting");
    payer_clear (&x);
    if (open == 2) {
      /* One left: the request's own session refuses the tag. */
      g_autoptr (GVariant) reply =
        stall_call (f, rb.path, "org.tally.Payment1", "Cancel", NULL, G_VARIANT_TYPE_UNIT);
      wait_object_state (f, rb.path, "failed");
    }
  }

  /* The request the refused payers did not name is still payable. */
  Payer a = { 0 };
  payer_init (f, &a, "a");
  payer_name_request (&a, ra.tag);
  payer_start (f, &a);
  wait_until (payer_finished, &a);
  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  payer_clear (&a);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* Cancel on one request's object ends that request alone: a payer naming
 * it is refused with NotFound, the other request is paid. */
static void
test_cancelling_one_request_leaves_the_other_payable (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");

  g_autoptr (GVariant) reply =
    stall_call (f, ra.path, "org.tally.Payment1", "Cancel", NULL, G_VARIANT_TYPE_UNIT);
  wait_object_state (f, ra.path, "failed");
  g_autofree char *state_b = object_state (f, rb.path);
  g_assert_cmpstr (state_b, ==, "waiting");

  Payer late = { 0 }, b = { 0 };
  payer_init (f, &late, "late");
  payer_init (f, &b, "b");
  payer_name_request (&late, ra.tag);
  payer_name_request (&b, rb.tag);
  payer_start (f, &late);
  wait_until (payer_finished, &late);
  g_assert_error (tally_payment_get_error (late.payment), TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_cmpint (tally_register_get_balance (late.reg), ==, PAYER_BALANCE);

  payer_start (f, &b);
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (payer_receipt_amount (&b), ==, AMOUNT_B);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT_B);
  wait_object_state (f, rb.path, "done");

  payer_clear (&late);
  payer_clear (&b);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* A payer that names no request (one that predates tags) is refused with
 * RequestUnnamed while two are open, changing nothing; once only one is
 * open it pays that one, as before. */
static void
test_payer_without_tag_against_two_open_requests_is_refused (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  guint nonces = stall_nonces (f);

  Payer x = { 0 };
  payer_init (f, &x, "x");
  payer_start (f, &x);
  wait_until (payer_finished, &x);
  g_assert_error (tally_payment_get_error (x.payment), TALLY_ERROR, TALLY_ERROR_REQUEST_UNNAMED);
  g_assert_false (x.confirming);
  g_assert_cmpint (tally_register_get_balance (x.reg), ==, PAYER_BALANCE);
  g_assert_cmpuint (stall_nonces (f), ==, nonces);
  g_autofree char *state_a = object_state (f, ra.path);
  g_autofree char *state_b = object_state (f, rb.path);
  g_assert_cmpstr (state_a, ==, "waiting");
  g_assert_cmpstr (state_b, ==, "waiting");

  g_autoptr (GVariant) reply =
    stall_call (f, ra.path, "org.tally.Payment1", "Cancel", NULL, G_VARIANT_TYPE_UNIT);
  wait_object_state (f, ra.path, "failed");
  Payer old = { 0 };
  payer_init (f, &old, "old");
  payer_start (f, &old);
  wait_until (payer_finished, &old);
  g_assert_cmpint (tally_payment_get_state (old.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (payer_receipt_amount (&old), ==, AMOUNT_B);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT_B);

  payer_clear (&x);
  payer_clear (&old);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* A payer spent on one request and lost its Pay; it comes back naming the
 * other and delivers the permission again.  The credit was the first
 * request's: it fills that one (a payer naming it then finds nothing, so
 * it is never paid twice), and the request it named goes on waiting. */
static void
test_permission_delivered_again_under_another_tag_fills_its_own_request (Fixture *f,
                                                                         gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  Payer lost = { 0 }, late = { 0 }, a = { 0 };
  payer_init (f, &lost, "lost");
  payer_init (f, &late, "late");
  payer_init (f, &a, "a");

  spend_and_drop_before_pay (f, lost.reg, rb.tag, rb.path);
  g_assert_cmpint (tally_register_get_balance (lost.reg), ==, PAYER_BALANCE - AMOUNT_B);

  payer_name_request (&lost, ra.tag);
  payer_start (f, &lost);
  wait_until (payer_finished, &lost);
  g_assert_cmpint (tally_payment_get_state (lost.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_true (tally_payment_is_redelivery (lost.payment));
  g_assert_cmpint (payer_receipt_amount (&lost), ==, AMOUNT_B);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT_B);
  /* The request it was spent on finished with it. */
  wait_object_state (f, rb.path, "done");
  g_assert_true (object_bool (f, rb.path, "Redelivered"));
  g_assert_cmpint (object_int64 (f, rb.path, "Amount"), ==, AMOUNT_B);
  /* The request it named got nothing: its object still waits. */
  g_autofree char *named_state = object_state (f, ra.path);
  g_assert_cmpstr (named_state, ==, "waiting");

  payer_name_request (&late, rb.tag);
  payer_start (f, &late);
  wait_until (payer_finished, &late);
  g_assert_error (tally_payment_get_error (late.payment), TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_cmpint (tally_register_get_balance (late.reg), ==, PAYER_BALANCE);

  /* The request it named still takes its own payer. */
  payer_name_request (&a, ra.tag);
  payer_start (f, &a);
  wait_until (payer_finished, &a);
  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_false (tally_payment_is_redelivery (a.payment));
  g_assert_cmpint (payer_receipt_amount (&a), ==, AMOUNT);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT_B + AMOUNT);
  /* On the named request's own object, its first and only credit. */
  wait_object_state (f, ra.path, "done");
  g_assert_false (object_bool (f, ra.path, "Redelivered"));

  payer_clear (&lost);
  payer_clear (&late);
  payer_clear (&a);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* As above, but the request the permission was spent on takes two
 * payers: the credit still shows on that request's object (done,
 * Redelivered, its amount), which the next payer then replaces, and the
 * request it named, till 1, never shows it. */
static void
test_permission_delivered_again_under_another_tag_shows_on_its_own_request_only (
  Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request_for (f, &rb, AMOUNT_B, "till 2", 2);
  Payer lost = { 0 }, b = { 0 };
  payer_init (f, &lost, "lost");
  payer_init (f, &b, "b");

  spend_and_drop_before_pay (f, lost.reg, rb.tag, rb.path);
  payer_name_request (&lost, ra.tag);
  payer_start (f, &lost);
  wait_until (payer_finished, &lost);
  g_assert_cmpint (tally_payment_get_state (lost.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_true (tally_payment_is_redelivery (lost.payment));
  g_assert_cmpint (stall_balance (f), ==, AMOUNT_B);

  /* Till 2's object took it, one of its two payers. */
  wait_object_state (f, rb.path, "done");
  g_assert_true (object_bool (f, rb.path, "Redelivered"));
  g_assert_cmpint (object_int64 (f, rb.path, "Amount"), ==, AMOUNT_B);
  /* Till 1 received nothing and shows nothing. */
  g_autofree char *named_state = object_state (f, ra.path);
  g_assert_cmpstr (named_state, ==, "waiting");
  g_assert_false (object_bool (f, ra.path, "Redelivered"));

  /* Till 2 takes its second payer, and is full. */
  payer_name_request (&b, rb.tag);
  payer_start (f, &b);
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_false (tally_payment_is_redelivery (b.payment));
  g_assert_cmpint (stall_balance (f), ==, 2 * AMOUNT_B);
  g_autofree char *still = object_state (f, ra.path);
  g_assert_cmpstr (still, ==, "waiting");

  payer_clear (&lost);
  payer_clear (&b);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* A payer that predates tags connects while two requests are open (its
 * link waits for its Hello, no request's yet); one request is cancelled
 * before the Hello arrives: the Hello, naming none, goes to the one left
 * and is offered it, as with one request open from the start. */
static void
test_untagged_hello_after_others_ended_goes_to_the_one_left (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  Payer old = { 0 };
  payer_init (f, &old, "old");
  g_autoptr (GError) error = NULL;
  g_autoptr (TallySession) session = tally_session_new_payer (old.reg, NULL);
  g_autoptr (GBytes) hello = tally_session_start (session, &error);
  g_assert_no_error (error);

  RawPayer raw = { 0 };
  tally_stream_connect_async (f->listen, TALLY_STREAM_DEFAULT_MTU, NULL, on_raw_connected, &raw);
  wait_until (raw_connected, &raw);
  g_assert_nonnull (raw.link);
  TallyChannel *channel = tally_channel_new (raw.link, 8192, WAIT_LIMIT_US / 1000);
  tally_channel_set_handlers (channel, on_raw_message, NULL, &raw, NULL);
  /* Let the stall accept the link while both are open. */
  gint64 until = g_get_monotonic_time () + G_USEC_PER_SEC / 5;
  while (g_get_monotonic_time () < until)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (2 * 1000);

  g_autoptr (GVariant) reply =
    stall_call (f, ra.path, "org.tally.Payment1", "Cancel", NULL, G_VARIANT_TYPE_UNIT);
  wait_object_state (f, ra.path, "failed");
  g_assert_true (tally_channel_send (channel, hello, NULL));
  wait_until (raw_got_message, &raw);
  gsize len;
  const guint8 *offer = g_bytes_get_data (raw.last, &len);
  g_autoptr (GBytes) reveal = NULL;
  g_assert_true (tally_session_handle (session, offer, len, tally_now (), &reveal, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_session_get_amount (session), ==, AMOUNT_B);
  g_assert_cmpstr (tally_session_get_memo (session), ==, "till 2");

  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  tally_channel_close (channel);
  tally_channel_unref (channel);
  tally_link_unref (raw.link);
  g_clear_pointer (&raw.last, g_bytes_unref);
  payer_clear (&old);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* RequestPayment beyond [payment] max_open_requests is refused with
 * Exists, and the open requests are unchanged. */
static void
test_request_beyond_the_cap_is_refused (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  g_autoptr (GError) error = NULL;
  g_autofree char *third =
    tally_daemon_request_payment (f->stall, getuid (), 5, "till 3", TIMEOUT_SECONDS, 1, &error);
  g_assert_null (third);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_autofree char *state_a = object_state (f, ra.path);
  g_assert_cmpstr (state_a, ==, "waiting");
  open_request_clear (&ra);
  open_request_clear (&rb);
}

/* A link that sends nothing while two requests are open is closed at the
 * Hello deadline, and an honest payer gets through meanwhile. */
static void
test_silent_link_with_two_open_requests_is_closed (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  OpenRequest ra = { 0 }, rb = { 0 };
  open_request (f, &ra, AMOUNT, "till 1");
  open_request (f, &rb, AMOUNT_B, "till 2");
  Hostile silent = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  Payer b = { 0 };
  payer_init (f, &b, "b");
  payer_name_request (&b, rb.tag);
  payer_start (f, &b);
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_until (hostile_closed, &silent);
  g_autofree char *state_a = object_state (f, ra.path);
  g_assert_cmpstr (state_a, ==, "waiting");

  hostile_clear (&silent);
  payer_clear (&b);
  open_request_clear (&ra);
  open_request_clear (&rb);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  stall_test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (stall_test_bus);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, setup_two, fn, fixture_tear_down)
  ADD ("/daemon/stall-requests/two-open-requests-paid-concurrently",
       test_two_open_requests_paid_concurrently);
  ADD ("/daemon/stall-requests/unknown-tag-is-refused-and-changes-nothing",
       test_unknown_tag_is_refused_and_changes_nothing);
  ADD ("/daemon/stall-requests/cancelling-one-request-leaves-the-other-payable",
       test_cancelling_one_request_leaves_the_other_payable);
  ADD ("/daemon/stall-requests/payer-without-tag-against-two-open-requests-is-refused",
       test_payer_without_tag_against_two_open_requests_is_refused);
  ADD ("/daemon/stall-requests/link-connected-with-one-request-open-must-name-one-once-two-are",
       test_link_connected_with_one_request_open_must_name_one_once_two_are);
  ADD ("/daemon/stall-requests/hello-errors-come-in-the-documented-order",
       test_hello_errors_come_in_the_documented_order);
  ADD ("/daemon/stall-requests/permission-delivered-again-under-another-tag-fills-its-own-request",
       test_permission_delivered_again_under_another_tag_fills_its_own_request);
  ADD ("/daemon/stall-requests/permission-delivered-again-under-another-tag-shows-on-its-own-request-only",
       test_permission_delivered_again_under_another_tag_shows_on_its_own_request_only);
  ADD ("/daemon/stall-requests/untagged-hello-after-others-ended-goes-to-the-one-left",
       test_untagged_hello_after_others_ended_goes_to_the_one_left);
  ADD ("/daemon/stall-requests/request-beyond-the-cap-is-refused",
       test_request_beyond_the_cap_is_refused);
  ADD ("/daemon/stall-requests/silent-link-with-two-open-requests-is-closed",
       test_silent_link_with_two_open_requests_is_closed);
#undef ADD

  int status = g_test_run ();
  g_test_dbus_down (stall_test_bus);
  g_object_unref (stall_test_bus);
  return status;
}
