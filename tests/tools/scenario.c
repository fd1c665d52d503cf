/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "scenario.h"

#include <string.h>
#include <syslog.h>

#include "tally-btmon.h"
#include "tally-frame.h"
#include "tally-gatt-link.h"

/* --- the traffic ------------------------------------------------------------ */

static void
message_free (gpointer data)
{
  ScenarioMessage *m = data;
  g_free (m->error_message);
  g_clear_pointer (&m->packed, g_bytes_unref);
  g_free (m);
}

static void
event_free (gpointer data)
{
  ScenarioEvent *e = data;
  g_free (e->ident);
  g_free (e->text);
  g_free (e->expect_framing_error);
  g_clear_pointer (&e->fragment, g_bytes_unref);
  g_free (e);
}

void
scenario_free (Scenario *scenario)
{
  if (scenario == NULL)
    return;
  g_ptr_array_unref (scenario->events);
  g_ptr_array_unref (scenario->messages);
  g_ptr_array_unref (scenario->connections);
  g_free (scenario);
}

gboolean
scenario_kind_from_string (const char *name, ScenarioKind *kind)
{
  if (g_strcmp0 (name, "default") == 0)
    *kind = SCENARIO_DEFAULT;
  else if (g_strcmp0 (name, "all-errors") == 0)
    *kind = SCENARIO_ALL_ERRORS;
  else if (g_strcmp0 (name, "no-discovery") == 0)
    *kind = SCENARIO_NO_DISCOVERY;
  else if (g_strcmp0 (name, "malformed") == 0)
    *kind = SCENARIO_MALFORMED;
  else if (g_strcmp0 (name, "reordered") == 0)
    *kind = SCENARIO_REORDERED;
  else
    return FALSE;
  return TRUE;
}

void
scenario_uuid_le (const char *uuid, guint8 out[16])
{
  guint8 be[16];
  gsize n = 0;

  for (const char *p = uuid; *p != '\0' && n < 16; p++) {
    if (*p == '-')
      continue;
    be[n++] = (guint8) (g_ascii_xdigit_value (p[0]) << 4 | g_ascii_xdigit_value (p[1]));
    p++;
  }
  g_assert_cmpuint (n, ==, 16);
  for (gsize i = 0; i < 16; i++)
    out[i] = be[15 - i];
}

static void
fill_pattern (guint8 *buf, gsize len, guint8 seed)
{
  for (gsize i = 0; i < len; i++)
    buf[i] = (guint8) (i * 37 + seed);
}

static const ScenarioConnection *
add_connection (Scenario *s, guint16 chandle, gboolean discovery, gboolean eatt)
{
  ScenarioConnection *c = g_new0 (ScenarioConnection, 1);
  c->chandle = chandle;
  c->discovery = discovery;
  c->eatt = eatt;
  const guint8 peer[6] = { 0x00, 0xaa, 0x01, 0x10, 0x00, (guint8) chandle };
  memcpy (c->peer, peer, sizeof peer);
  g_ptr_array_add (s->connections, c);

  ScenarioEvent *e = g_new0 (ScenarioEvent, 1);
  e->kind = SCENARIO_EVENT_CONNECT;
  e->connection = c;
  g_ptr_array_add (s->events, e);
  return c;
}

static void
add_disconnect (Scenario *s, const ScenarioConnection *c)
{
  ScenarioEvent *e = g_new0 (ScenarioEvent, 1);
  e->kind = SCENARIO_EVENT_DISCONNECT;
  e->connection = c;
  g_ptr_array_add (s->events, e);
}

static void
add_log (Scenario *s, int priority, const char *ident, const char *text)
{
  ScenarioEvent *e = g_new0 (ScenarioEvent, 1);
  e->kind = SCENARIO_EVENT_LOG;
  e->priority = priority;
  e->ident = g_strdup (ident);
  e->text = g_strdup (text);
  g_ptr_array_add (s->events, e);
}

static ScenarioMessage *
message_new (Tally__SessionMessage__MsgCase type, const ScenarioConnection *c, ScenarioRole role)
{
  ScenarioMessage *m = g_new0 (ScenarioMessage, 1);
  m->type = type;
  m->chandle = c->chandle;
  m->role = role;
  return m;
}

/* Packs @m as the SessionMessage it describes. */
static void
message_pack (ScenarioMessage *m)
{
  Tally__SessionMessage msg = TALLY__SESSION_MESSAGE__INIT;
  Tally__Hello hello = TALLY__HELLO__INIT;
  Tally__Offer offer = TALLY__OFFER__INIT;
  Tally__Error err = TALLY__ERROR__INIT;
  g_autofree guint8 *ciphertext = g_malloc (MAX (m->ciphertext_len, 1));

  fill_pattern (ciphertext, m->ciphertext_len, (guint8) m->type);
  msg.msg_case = m->type;
  switch (m->type) {
  case TALLY__SESSION_MESSAGE__MSG_HELLO:
    hello.version = m->version;
    hello.ephemeral_public_key.data = m->key;
    hello.ephemeral_public_key.len = sizeof m->key;
    hello.revocation_serial = m->revocation_serial;
    hello.commitment.data = m->commitment;
    hello.commitment.len = sizeof m->commitment;
    hello.request_tag.data = m->request_tag;
    hello.request_tag.len = m->request_tag_len;
    msg.hello = &hello;
    break;
  case TALLY__SESSION_MESSAGE__MSG_OFFER:
    offer.ephemeral_public_key.data = m->key;
    offer.ephemeral_public_key.len = sizeof m->key;
    offer.ciphertext.data = ciphertext;
    offer.ciphertext.len = m->ciphertext_len;
    msg.offer = &offer;
    break;
  case TALLY__SESSION_MESSAGE__MSG_REVEAL:
    msg.reveal.data = ciphertext;
    msg.reveal.len = m->ciphertext_len;
    break;
  case TALLY__SESSION_MESSAGE__MSG_PAY:
    msg.pay.data = ciphertext;
    msg.pay.len = m->ciphertext_len;
    break;
  case TALLY__SESSION_MESSAGE__MSG_RECEIPT:
    msg.receipt.data = ciphertext;
    msg.receipt.len = m->ciphertext_len;
    break;
  case TALLY__SESSION_MESSAGE__MSG_ERROR:
    err.code = m->error_code;
    err.message = m->error_message;
    msg.error = &err;
    break;
  case TALLY__SESSION_MESSAGE__MSG__NOT_SET:
  case _TALLY__SESSION_MESSAGE__MSG__CASE_IS_INT_SIZE:
    g_assert_not_reached ();
  }
  m->packed = tally_message_pack (&msg.base);
}

static ScenarioMessage *
hello_new (const ScenarioConnection *c, guint8 key_seed, guint64 serial)
{
  ScenarioMessage *m = message_new (TALLY__SESSION_MESSAGE__MSG_HELLO, c, SCENARIO_RX);
  m->version = TALLY_PROTOCOL_VERSION;
  fill_pattern (m->key, sizeof m->key, key_seed);
  fill_pattern (m->commitment, sizeof m->commitment, (guint8) (key_seed + 1));
  m->revocation_serial = serial;
  message_pack (m);
  return m;
}

/* A Hello naming the payee request tagged 0a1b2c3d (protocol.md 4.2). */
static ScenarioMessage *
hello_tagged_new (const ScenarioConnection *c, guint8 key_seed, guint64 serial)
{
  static const guint8 tag[] = { 0x0a, 0x1b, 0x2c, 0x3d };
  ScenarioMessage *m = hello_new (c, key_seed, serial);
  g_bytes_unref (m->packed);
  memcpy (m->request_tag, tag, sizeof tag);
  m->request_tag_len = sizeof tag;
  message_pack (m);
  return m;
}

static ScenarioMessage *
offer_new (const ScenarioConnection *c, guint8 key_seed, gsize ciphertext_len)
{
  ScenarioMessage *m = message_new (TALLY__SESSION_MESSAGE__MSG_OFFER, c, SCENARIO_TX);
  fill_pattern (m->key, sizeof m->key, key_seed);
  m->ciphertext_len = ciphertext_len;
  message_pack (m);
  return m;
}

static ScenarioMessage *
sealed_new (Tally__SessionMessage__MsgCase type, const ScenarioConnection *c, gsize len)
{
  gboolean from_payer =
    type == TALLY__SESSION_MESSAGE__MSG_REVEAL || type == TALLY__SESSION_MESSAGE__MSG_PAY;
  ScenarioRole role = from_payer ? SCENARIO_RX : SCENARIO_TX;
  ScenarioMessage *m = message_new (type, c, role);
  m->ciphertext_len = len;
  message_pack (m);
  return m;
}

static ScenarioMessage *
error_new (const ScenarioConnection *c, guint32 code, const char *text)
{
  ScenarioMessage *m = message_new (TALLY__SESSION_MESSAGE__MSG_ERROR, c, SCENARIO_TX);
  m->error_code = code;
  m->error_message = g_strdup (text);
  message_pack (m);
  return m;
}

static GPtrArray *
split (const ScenarioMessage *m, gsize mtu)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *fragments = tally_frame_split (g_bytes_get_data (m->packed, NULL),
                                            g_bytes_get_size (m->packed), mtu,
                                            TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  return fragments;
}

static ScenarioEvent *
push_fragment (Scenario *s, const ScenarioConnection *c, ScenarioRole role, gboolean eatt,
               GBytes *fragment, int message, int index, gboolean completes)
{
  ScenarioEvent *e = g_new0 (ScenarioEvent, 1);
  e->kind = SCENARIO_EVENT_FRAGMENT;
  e->connection = c;
  e->role = role;
  e->eatt = eatt;
  e->fragment = g_bytes_ref (fragment);
  e->message = message;
  e->index = index;
  e->completes = completes;
  g_ptr_array_add (s->events, e);
  return e;
}

/* Sends @m whole: it joins the expected messages. */
static void
send_message (Scenario *s, const ScenarioConnection *c, ScenarioMessage *m, gboolean eatt, gsize mtu)
{
  g_autoptr (GPtrArray) fragments = split (m, mtu);
  g_ptr_array_add (s->messages, m);
  int index = (int) s->messages->len - 1;
  for (guint i = 0; i < fragments->len; i++)
    push_fragment (s, c, m->role, eatt, fragments->pdata[i], index, (int) i,
                   i + 1 == fragments->len);
}

/* Sends two messages on two connections, fragment by fragment in turn. */
static void
send_interleaved (Scenario *s,
                  const ScenarioConnection *c1,
                  ScenarioMessage *m1,
                  const ScenarioConnection *c2,
                  ScenarioMessage *m2,
                  gsize mtu)
{
  g_autoptr (GPtrArray) f1 = split (m1, mtu);
  g_autoptr (GPtrArray) f2 = split (m2, mtu);
  g_ptr_array_add (s->messages, m1);
  int i1 = (int) s->messages->len - 1;
  g_ptr_array_add (s->messages, m2);
  int i2 = (int) s->messages->len - 1;
  for (guint i = 0; i < MAX (f1->len, f2->len); i++) {
    if (i < f1->len)
      push_fragment (s, c1, m1->role, FALSE, f1->pdata[i], i1, (int) i, i + 1 == f1->len);
    if (i < f2->len)
      push_fragment (s, c2, m2->role, FALSE, f2->pdata[i], i2, (int) i, i + 1 == f2->len);
  }
}

/* Sends @m without fragment @lost, as a capture that missed a packet
 * shows it; it does not join the expected messages. */
static void
send_with_loss (Scenario *s, const ScenarioConnection *c, ScenarioMessage *m, gsize mtu, guint lost)
{
  g_autoptr (GPtrArray) fragments = split (m, mtu);
  g_assert_cmpuint (lost, <, fragments->len);
  for (guint i = 0; i < fragments->len; i++)
    if (i != lost)
      push_fragment (s, c, m->role, FALSE, fragments->pdata[i], -1, (int) i, FALSE);
  message_free (m);
}

typedef enum
{
  ORDER_BLOCKS_REVERSED, /* every block of 8 reversed: each fragment as far ahead as allowed */
  ORDER_PAIRS_SWAPPED,   /* 1, 0, 3, 2, ... */
  ORDER_RANDOM,          /* each arrival drawn from the window ahead of the first missing */
} ScenarioOrder;

/* An arrival order of @n fragments that docs/framing.md's window allows. */
static void
arrival_order (ScenarioOrder kind, GRand *rng, guint n, guint *order)
{
  const guint block = TALLY_FRAME_REORDER_WINDOW + 1;
  g_autofree gboolean *arrived = g_new0 (gboolean, n);
  guint missing = 0;

  switch (kind) {
  case ORDER_BLOCKS_REVERSED:
    for (guint i = 0; i < n; i++) {
      guint start = i - i % block;
      guint end = MIN (start + block, n);
      order[i] = end - 1 - (i - start);
    }
    break;
  case ORDER_PAIRS_SWAPPED:
    for (guint i = 0; i < n; i++)
      order[i] = (i ^ 1u) < n ? i ^ 1u : i;
    break;
  case ORDER_RANDOM:
    for (guint i = 0; i < n; i++) {
      guint candidates[TALLY_FRAME_REORDER_WINDOW + 1] = { 0 };
      guint n_candidates = 0;
      for (guint j = missing; j < n && j <= missing + TALLY_FRAME_REORDER_WINDOW; j++)
        if (!arrived[j])
          candidates[n_candidates++] = j;
      g_assert_cmpuint (n_candidates, >, 0);
      order[i] = candidates[g_rand_int_range (rng, 0, (gint32) n_candidates)];
      arrived[order[i]] = TRUE;
      while (missing < n && arrived[missing])
        missing++;
    }
    break;
  }
}

/* Sends fragments @order[0..n-1] of @m split at @mtu, each on the bearer
 * that is free: the fixed ATT channel and the EATT channel in turn.  When
 * @whole, @m joins the expected messages and the last to arrive completes
 * it; otherwise @m is dropped after sending. */
static void
send_ordered (Scenario *s,
              const ScenarioConnection *c,
              ScenarioMessage *m,
              gsize mtu,
              const guint *order,
              guint n,
              gboolean whole)
{
  g_autoptr (GPtrArray) fragments = split (m, mtu);
  int message = -1;

  g_assert_true (c->eatt);
  g_assert_cmpuint (n, <=, fragments->len);
  if (whole) {
    g_assert_cmpuint (n, ==, fragments->len);
    g_ptr_array_add (s->messages, m);
    message = (int) s->messages->len - 1;
  }
  for (guint i = 0; i < n; i++)
    push_fragment (s, c, m->role, i % 2 == 1, fragments->pdata[order[i]], message, (int) order[i],
                   whole && i + 1 == n);
  if (!whole)
    message_free (m);
}

static void
send_reordered (Scenario *s,
                const ScenarioConnection *c,
                ScenarioMessage *m,
                gsize mtu,
                ScenarioOrder kind,
                GRand *rng)
{
  g_autoptr (GPtrArray) fragments = split (m, mtu);
  g_autofree guint *order = g_new (guint, fragments->len);

  arrival_order (kind, rng, fragments->len, order);
  send_ordered (s, c, m, mtu, order, fragments->len, TRUE);
}

static void
add_pause (Scenario *s, guint ms)
{
  ScenarioEvent *e = g_new0 (ScenarioEvent, 1);
  e->kind = SCENARIO_EVENT_PAUSE;
  e->pause_ms = ms;
  g_ptr_array_add (s->events, e);
}

static void
expect_framing_error (Scenario *s, char *error)
{
  ScenarioEvent *e = s->events->pdata[s->events->len - 1];
  g_assert_cmpint (e->kind, ==, SCENARIO_EVENT_FRAGMENT);
  g_free (e->expect_framing_error);
  e->expect_framing_error = error;
}

/* One fragment as it is, with what a reader must say about it. */
static void
send_raw (Scenario *s,
          const ScenarioConnection *c,
          const guint8 *data,
          gsize len,
          const char *framing_error,
          const char *complaint)
{
  g_autoptr (GBytes) fragment = g_bytes_new (data, len);
  ScenarioEvent *e = push_fragment (s, c, SCENARIO_RX, FALSE, fragment, -1, -1, FALSE);
  e->expect_framing_error = g_strdup (framing_error);
  e->expect_complaint = complaint;
}

#define SEND_RAW(s, c, framing_error, complaint, ...)                                              \
  G_STMT_START                                                                                     \
  {                                                                                                \
    static const guint8 raw_[] = { __VA_ARGS__ };                                                  \
    send_raw ((s), (c), raw_, sizeof raw_, (framing_error), (complaint));                          \
  }                                                                                                \
  G_STMT_END

/* Every rule of docs/framing.md's reassembly table broken once, then
 * SessionMessages that do not parse. */
static void
build_malformed (Scenario *s)
{
  const ScenarioConnection *a = add_connection (s, 0x0040, TRUE, FALSE);

  SEND_RAW (s, a, "fragment 0: unknown kind 0x5 in header byte 0x50", NULL, 0x50, 0x01);
  SEND_RAW (s, a, "fragment 0: FIRST of 2 bytes is shorter than its 3-byte header", NULL, 0x10,
            0x00);
  SEND_RAW (s, a, "fragment 0: ONLY announces a length of 0", NULL, 0x40, 0x00, 0x00);
  SEND_RAW (s, a, "fragment 0: ONLY carries 1 bytes, 5 announced", NULL, 0x40, 0x00, 0x05, 0x61);
  SEND_RAW (s, a, "fragment 0: ONLY carries 2 bytes of data, more than the 1 announced", NULL,
            0x40, 0x00, 0x01, 0x61, 0x62);
  SEND_RAW (s, a, "fragment 0: MIDDLE without a FIRST", NULL, 0x20, 0x61);
  SEND_RAW (s, a, "fragment 0: sequence 1, expected 0", NULL, 0x41, 0x00, 0x01, 0x61);
  SEND_RAW (s, a, "fragment 0: ONLY announces 8193 bytes, limit 8192", NULL, 0x40, 0x20, 0x01,
            0x61);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x04, 0x0a, 0x02);
  SEND_RAW (s, a, "fragment 1: MIDDLE carries 3 bytes, only 2 of the 4 announced remain", NULL,
            0x21, 0x08, 0x01, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x04, 0x0a, 0x02);
  SEND_RAW (s, a, "fragment 1: LAST ends the message after 3 of 4 announced bytes", NULL, 0x31,
            0x08);
  /* An unreadable fragment ends the message in progress. */
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x04, 0x0a, 0x02);
  SEND_RAW (s, a, "fragment 1: unknown kind 0x6 in header byte 0x61", NULL, 0x61);
  SEND_RAW (s, a, "fragment 0: LAST without a FIRST", NULL, 0x30, 0x08, 0x01);
  /* A FIRST cut short by the next FIRST: the second message completes. */
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x08, 0x0a);
  SEND_RAW (s, a, NULL, "abandoned after 1 bytes", 0x10, 0x00, 0x04, 0x0a, 0x02);
  SEND_RAW (s, a, NULL, NULL, 0x31, 0x08, 0x01);
  /* Fragments out of order (docs/framing.md, Reassembly), each rule once. */
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x40, 0x0a);
  SEND_RAW (s, a, "fragment 1: sequence 9, expected 1..8", NULL, 0x29, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x40, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x23, 0x00);
  SEND_RAW (s, a, "fragment 3: sequence 3 arrived twice", NULL, 0x23, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x40, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x33, 0x00);
  SEND_RAW (s, a, "fragment 4: MIDDLE after the LAST, fragment 3", NULL, 0x24, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x40, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x33, 0x00);
  SEND_RAW (s, a, "fragment 2: a second LAST, fragment 3 is one", NULL, 0x32, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x40, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x24, 0x00);
  SEND_RAW (s, a, "fragment 2: LAST, but fragment 4 arrived already", NULL, 0x32, 0x00);
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x05, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x22, 0x00, 0x00, 0x00);
  SEND_RAW (s, a, "fragment 3: MIDDLE carries 2 bytes, only 1 of the 5 announced remain", NULL,
            0x23, 0x00, 0x00);
  /* A held LAST that ends short is found when the gap before it fills. */
  SEND_RAW (s, a, NULL, NULL, 0x10, 0x00, 0x05, 0x0a);
  SEND_RAW (s, a, NULL, NULL, 0x32, 0x00);
  SEND_RAW (s, a, "fragment 2: LAST ends the message after 3 of 5 announced bytes", NULL, 0x21,
            0x00);
  /* Fragments that overtook their FIRST. */
  SEND_RAW (s, a, NULL, NULL, 0x21, 0x00, 0x00, 0x00);
  SEND_RAW (s, a,
            "fragment 0: FIRST announces 3 bytes and carries 1, but 1 later fragments brought 3 "
            "already",
            NULL, 0x10, 0x00, 0x03, 0x0a);
  /* An ONLY while fragments wait for their FIRST starts anew: hello v1. */
  SEND_RAW (s, a, NULL, NULL, 0x21, 0x00);
  SEND_RAW (s, a, NULL, "fragments held since frame", 0x40, 0x00, 0x04, 0x0a, 0x02, 0x08, 0x01);
  /* hello announces 5 bytes, 1 follows */
  SEND_RAW (s, a, NULL, "SessionMessage: field 1: length runs past the message", 0x40, 0x00, 0x03,
            0x0a, 0x05, 0x08);
  /* version as bytes, then an unknown field 9 */
  SEND_RAW (s, a, NULL, "Hello.version has wire type 2, expected 0", 0x40, 0x00, 0x07, 0x0a, 0x03,
            0x0a, 0x01, 0x07, 0x48, 0x01);
  /* revocation_serial as an 11-byte varint */
  SEND_RAW (s, a, NULL, "Hello: field 3: varint truncated or longer than 10 bytes", 0x40, 0x00,
            0x0e, 0x0a, 0x0c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01);
  SEND_RAW (s, a, NULL, "SessionMessage carries none of its fields", 0x40, 0x00, 0x02, 0x48, 0x01);
  SEND_RAW (s, a, NULL, "SessionMessage.hello has wire type 0, expected 2", 0x40, 0x00, 0x02, 0x08,
            0x01);
  add_disconnect (s, a);
}

/* Fixed, so that the capture is the same on every run. */
#define SCENARIO_REORDER_SEED 0x0de7a11u
/* Longer than tallyd's reassembly timeout. */
#define SCENARIO_STALL_MS (TALLY_FRAME_DEFAULT_TIMEOUT_MS + 1000)

/* Fragments at the smallest MTU over two bearers (the fixed ATT channel and
 * an EATT channel), so that one overtakes another: docs/framing.md,
 * Reassembly. */
static void
build_reordered (Scenario *s)
{
  const gsize mtu = TALLY_FRAME_MIN_MTU;
  g_autoptr (GRand) rng = g_rand_new_with_seed (SCENARIO_REORDER_SEED);
  g_autoptr (GPtrArray) fragments = NULL;

  /* A payment, each message in another order the window allows: the Hello
   * reversed, its FIRST last; the Offer's FIRST as late as it may be; the
   * pay message (sequence numbers wrap) at random. */
  const ScenarioConnection *c = add_connection (s, 0x0043, TRUE, TRUE);
  send_reordered (s, c, hello_new (c, 0x11, G_GUINT64_CONSTANT (0xfedcba9876543210)), mtu,
                  ORDER_BLOCKS_REVERSED, rng);
  send_reordered (s, c, offer_new (c, 0x22, 200), mtu, ORDER_BLOCKS_REVERSED, rng);
  send_reordered (s, c, sealed_new (TALLY__SESSION_MESSAGE__MSG_REVEAL, c, 52), mtu,
                  ORDER_PAIRS_SWAPPED, rng);
  send_reordered (s, c, sealed_new (TALLY__SESSION_MESSAGE__MSG_PAY, c, 300), mtu, ORDER_RANDOM,
                  rng);
  send_reordered (s, c, sealed_new (TALLY__SESSION_MESSAGE__MSG_RECEIPT, c, 100), mtu,
                  ORDER_PAIRS_SWAPPED, rng);
  add_disconnect (s, c);

  /* A link that reorders further than the window: fragment 9 right after
   * the FIRST, 8 ahead of fragment 1.  The message is lost; the next one,
   * reversed, arrives whole. */
  const ScenarioConnection *d = add_connection (s, 0x0044, TRUE, TRUE);
  ScenarioMessage *offer = offer_new (d, 0x33, 150);
  fragments = split (offer, mtu);
  g_assert_cmpuint (fragments->len, >, 9);
  static const guint beyond[] = { 0, 9 };
  send_ordered (s, d, offer, mtu, beyond, G_N_ELEMENTS (beyond), FALSE);
  expect_framing_error (s, g_strdup ("fragment 1: sequence 9, expected 1..8"));
  send_reordered (s, d, error_new (d, TALLY_ERROR_EXPIRED, "the permission expired"), mtu,
                  ORDER_BLOCKS_REVERSED, rng);

  /* A fragment whose FIRST never comes: the next message's FIRST, after
   * tallyd's timeout, reports it and starts afresh. */
  ScenarioMessage *stray = hello_new (d, 0x44, 1);
  g_clear_pointer (&fragments, g_ptr_array_unref);
  fragments = split (stray, mtu);
  guint n_frags = fragments->len;
  g_assert_cmpuint (n_frags, >=, 3);
  g_assert_cmpuint (n_frags, <=, 8);
  gsize stray_len = g_bytes_get_size (fragments->pdata[n_frags - 1]) - 1;
  const guint last_only[] = { n_frags - 1 };
  send_ordered (s, d, stray, mtu, last_only, G_N_ELEMENTS (last_only), FALSE);
  add_pause (s, SCENARIO_STALL_MS);
  guint in_order[8];
  for (guint i = 0; i < n_frags; i++)
    in_order[i] = i;
  send_ordered (s, d, hello_new (d, 0x55, 2), mtu, in_order, n_frags, TRUE);
  /* The FIRST is the n_frags-th fragment from the end; each took one
   * record, 1 ms apart. */
  ScenarioEvent *first = s->events->pdata[s->events->len - n_frags];
  g_assert_cmpint (first->index, ==, 0);
  first->expect_framing_error =
    g_strdup_printf ("message without its FIRST after %u ms: %" G_GSIZE_FORMAT
                     " bytes in 1 fragments held, limit %u ms",
                     SCENARIO_STALL_MS + 1, stray_len, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  add_disconnect (s, d);
}

Scenario *
scenario_new (ScenarioKind kind)
{
  Scenario *s = g_new0 (Scenario, 1);
  const gsize att_payload = tally_gatt_payload_for_att_mtu (SCENARIO_ATT_MTU);
  const gsize eatt_payload = tally_gatt_payload_for_att_mtu (SCENARIO_EATT_MTU);

  s->kind = kind;
  s->connections = g_ptr_array_new_with_free_func (g_free);
  s->messages = g_ptr_array_new_with_free_func (message_free);
  s->events = g_ptr_array_new_with_free_func (event_free);

  switch (kind) {
  case SCENARIO_DEFAULT: {
    add_log (s, LOG_NOTICE, "tallyd", "payer: connecting to ble");
    const ScenarioConnection *a = add_connection (s, 0x0040, TRUE, FALSE);
    const ScenarioConnection *b = add_connection (s, 0x0041, TRUE, FALSE);
    /* Two sessions at once: reassembly must keep them apart. */
    send_interleaved (s, a, hello_new (a, 0xa0, G_GUINT64_CONSTANT (0x0123456789abcdef)),
                      b, hello_new (b, 0xb0, 7), att_payload);
    send_message (s, a, offer_new (a, 0xc0, 100), FALSE, att_payload);
    /* The capture missed the MIDDLE of b's second Hello. */
    send_with_loss (s, b, hello_new (b, 0xd0, 8), att_payload, 1);
    send_message (s, b, error_new (b, TALLY_ERROR_REVOKED, "register revoked by the issuer"),
                  FALSE, att_payload);
    add_disconnect (s, b);
    send_message (s, a, sealed_new (TALLY__SESSION_MESSAGE__MSG_REVEAL, a, 52), FALSE, att_payload);
    send_message (s, a, sealed_new (TALLY__SESSION_MESSAGE__MSG_PAY, a, 64), FALSE, att_payload);
    send_message (s, a, sealed_new (TALLY__SESSION_MESSAGE__MSG_RECEIPT, a, 48), FALSE,
                  att_payload);
    add_disconnect (s, a);
    /* BlueZ to BlueZ: Enhanced ATT, Multiple Handle Value Notifications. */
    const ScenarioConnection *c = add_connection (s, 0x0042, TRUE, TRUE);
    send_message (s, c, hello_tagged_new (c, 0xe0, 9), TRUE, eatt_payload);
    send_message (s, c, offer_new (c, 0xf0, 600), TRUE, eatt_payload);
    send_message (s, c, error_new (c, TALLY_ERROR_CANCELLED, "cancelled by the user"), TRUE,
                  eatt_payload);
    add_disconnect (s, c);
    add_log (s, LOG_ERR, "tallyd", "payment failed: Cancelled: cancelled by the user");
    break;
  }
  case SCENARIO_ALL_ERRORS: {
    const ScenarioConnection *a = add_connection (s, 0x0040, TRUE, FALSE);
    for (guint32 code = 1; code <= TALLY_ERROR_LAST; code++) {
      g_autofree char *text = g_strdup_printf ("error %u", code);
      send_message (s, a, error_new (a, code, text), FALSE, att_payload);
    }
    /* A code from a newer peer. */
    send_message (s, a, error_new (a, 999, "error 999"), FALSE, att_payload);
    add_disconnect (s, a);
    break;
  }
  case SCENARIO_NO_DISCOVERY: {
    const ScenarioConnection *a = add_connection (s, 0x0040, FALSE, FALSE);
    send_message (s, a, hello_new (a, 0xa0, 3), FALSE, att_payload);
    send_message (s, a, error_new (a, TALLY_ERROR_VERSION, "unsupported protocol version"),
                  FALSE, att_payload);
    add_disconnect (s, a);
    break;
  }
  case SCENARIO_MALFORMED:
    build_malformed (s);
    break;
  case SCENARIO_REORDERED:
    build_reordered (s);
    break;
  }
  return s;
}

/* --- btsnoop, Linux monitor format ---------------------------------------------
 *
 * File header: "btsnoop\0", version 1, datalink 2001 (all big-endian).
 * Record: original length, included length, flags = index << 16 | opcode,
 * cumulative drops (u32 each), timestamp (i64, microseconds since year 0).
 * Opcodes and payloads as in BlueZ's src/shared/btsnoop.h.
 */

#define BTSNOOP_FORMAT_MONITOR       2001
#define MONITOR_NEW_INDEX            0
#define MONITOR_EVENT_PKT            3
#define MONITOR_ACL_TX_PKT           4
#define MONITOR_ACL_RX_PKT           5
#define MONITOR_OPEN_INDEX           8
#define MONITOR_INDEX_INFO           10
#define MONITOR_USER_LOGGING         13
/* 1970-01-01 in the btsnoop epoch, microseconds */
#define BTSNOOP_EPOCH_DELTA          G_GUINT64_CONSTANT (0x00dcddb30f2f8000)
/* 2024-01-01T00:00:00Z: a fixed start, so the file is reproducible */
#define SCENARIO_START_US            (G_GUINT64_CONSTANT (1704067200) * G_USEC_PER_SEC)

#define HCI_INDEX     0
#define L2CAP_CID_ATT 0x0004
#define L2CAP_CID_LE_SIGNALING 0x0005

/* ATT opcodes, Core 5.3 Vol 3 Part F 3.4 */
#define ATT_ERROR_RSP              0x01
#define ATT_EXCHANGE_MTU_REQ       0x02
#define ATT_EXCHANGE_MTU_RSP       0x03
#define ATT_FIND_INFORMATION_REQ   0x04
#define ATT_FIND_INFORMATION_RSP   0x05
#define ATT_READ_BY_TYPE_REQ       0x08
#define ATT_READ_BY_TYPE_RSP       0x09
#define ATT_READ_BY_GROUP_TYPE_REQ 0x10
#define ATT_READ_BY_GROUP_TYPE_RSP 0x11
#define ATT_WRITE_REQ              0x12
#define ATT_WRITE_RSP              0x13
#define ATT_HANDLE_VALUE_NTF       0x1b
#define ATT_MULTIPLE_HANDLE_VALUE_NTF 0x23
#define ATT_WRITE_CMD              0x52
#define ATT_ECODE_ATTR_NOT_FOUND   0x0a

#define GATT_PRIMARY_SERVICE 0x2800
#define GATT_CHARACTERISTIC  0x2803
#define GATT_CCC             0x2902
#define GATT_PROP_WRITE_WITHOUT_RESPONSE 0x04
#define GATT_PROP_NOTIFY                 0x10

/* LE signaling, Core 5.3 Vol 3 Part A 4.22, 4.23 */
#define L2CAP_LE_CREDIT_CONN_REQ 0x14
#define L2CAP_LE_CREDIT_CONN_RSP 0x15

typedef struct
{
  GByteArray *out;
  guint64 records;
  guint64 paused_us;
} Writer;

static void
put_u8 (GByteArray *b, guint8 v)
{
  g_byte_array_append (b, &v, 1);
}

static void
put_le16 (GByteArray *b, guint16 v)
{
  guint8 x[2] = { v & 0xff, v >> 8 };
  g_byte_array_append (b, x, 2);
}

static void
put_be32 (GByteArray *b, guint32 v)
{
  guint32 x = GUINT32_TO_BE (v);
  g_byte_array_append (b, (const guint8 *) &x, 4);
}

static void
put_be64 (GByteArray *b, guint64 v)
{
  guint64 x = GUINT64_TO_BE (v);
  g_byte_array_append (b, (const guint8 *) &x, 8);
}

static void
put_bytes (GByteArray *b, const void *data, gsize len)
{
  g_byte_array_append (b, data, (guint) len);
}

static void
put_uuid (GByteArray *b, const char *uuid)
{
  guint8 le[16];
  scenario_uuid_le (uuid, le);
  put_bytes (b, le, sizeof le);
}

/* A device address on the air, least significant byte first. */
static void
put_bdaddr (GByteArray *b, const guint8 addr[6])
{
  for (int i = 5; i >= 0; i--)
    put_u8 (b, addr[i]);
}

static void
record (Writer *w, guint16 index, guint16 opcode, const GByteArray *payload)
{
  guint32 len = payload != NULL ? payload->len : 0;
  guint64 ts = BTSNOOP_EPOCH_DELTA + SCENARIO_START_US + w->records * 1000 + w->paused_us;

  put_be32 (w->out, len);
  put_be32 (w->out, len);
  put_be32 (w->out, (guint32) index << 16 | opcode);
  put_be32 (w->out, 0);
  put_be64 (w->out, ts);
  if (len > 0)
    put_bytes (w->out, payload->data, len);
  w->records++;
}

/* One L2CAP basic frame in one ACL packet; @tx: from hci0 to the peer. */
static void
l2cap (Writer *w, const ScenarioConnection *c, gboolean tx, guint16 cid, const GByteArray *pdu)
{
  g_autoptr (GByteArray) acl = g_byte_array_new ();
  /* Packet boundary flag: 00 first non-flushable (host to controller),
   * 10 first automatically flushable (controller to host), as BlueZ and
   * the kernel use them on LE. */
  guint16 pb = tx ? 0x0000 : 0x2000;

  put_le16 (acl, c->chandle | pb);
  put_le16 (acl, (guint16) (pdu->len + 4));
  put_le16 (acl, (guint16) pdu->len);
  put_le16 (acl, cid);
  put_bytes (acl, pdu->data, pdu->len);
  record (w, HCI_INDEX, tx ? MONITOR_ACL_TX_PKT : MONITOR_ACL_RX_PKT, acl);
}

static void
att (Writer *w, const ScenarioConnection *c, gboolean tx, const GByteArray *pdu)
{
  l2cap (w, c, tx, L2CAP_CID_ATT, pdu);
}

/* One SDU on the connection's EATT channel, in K-frames of at most
 * SCENARIO_EATT_MPS bytes; the first starts with the SDU length. */
static void
eatt (Writer *w, const ScenarioConnection *c, gboolean tx, const GByteArray *sdu)
{
  guint16 cid = tx ? SCENARIO_EATT_REMOTE_CID : SCENARIO_EATT_LOCAL_CID;
  gsize off = 0;
  gboolean first = TRUE;

  g_assert_cmpuint (sdu->len, <=, SCENARIO_EATT_MTU);
  while (first || off < sdu->len) {
    g_autoptr (GByteArray) k = g_byte_array_new ();
    gsize room = SCENARIO_EATT_MPS;
    if (first) {
      put_le16 (k, (guint16) sdu->len);
      room -= 2;
    }
    gsize n = MIN (room, sdu->len - off);
    put_bytes (k, sdu->data + off, n);
    off += n;
    first = FALSE;
    l2cap (w, c, tx, cid, k);
  }
}

static GByteArray *
pdu_new (guint8 opcode)
{
  GByteArray *p = g_byte_array_new ();
  put_u8 (p, opcode);
  return p;
}

static void
att_not_found (Writer *w, const ScenarioConnection *c, guint8 request, guint16 handle)
{
  g_autoptr (GByteArray) rsp = pdu_new (ATT_ERROR_RSP);
  put_u8 (rsp, request);
  put_le16 (rsp, handle);
  put_u8 (rsp, ATT_ECODE_ATTR_NOT_FOUND);
  att (w, c, FALSE, rsp);
}

static void
write_connect (Writer *w, const ScenarioConnection *c)
{
  /* LE Connection Complete: we are the central. */
  g_autoptr (GByteArray) ev = g_byte_array_new ();
  put_u8 (ev, 0x3e); /* LE Meta */
  put_u8 (ev, 19);
  put_u8 (ev, 0x01); /* LE Connection Complete */
  put_u8 (ev, 0x00); /* success */
  put_le16 (ev, c->chandle);
  put_u8 (ev, 0x00); /* central */
  put_u8 (ev, 0x00); /* public address */
  put_bdaddr (ev, c->peer);
  put_le16 (ev, 0x0018); /* interval, 30 ms */
  put_le16 (ev, 0x0000); /* latency */
  put_le16 (ev, 0x0048); /* supervision timeout, 720 ms */
  put_u8 (ev, 0x00);     /* clock accuracy */
  record (w, HCI_INDEX, MONITOR_EVENT_PKT, ev);

  g_autoptr (GByteArray) mtu_req = pdu_new (ATT_EXCHANGE_MTU_REQ);
  put_le16 (mtu_req, SCENARIO_EATT_MTU);
  att (w, c, TRUE, mtu_req);
  g_autoptr (GByteArray) mtu_rsp = pdu_new (ATT_EXCHANGE_MTU_RSP);
  /* A payee that offers EATT is BlueZ, which answers with its own 517. */
  put_le16 (mtu_rsp, c->eatt ? SCENARIO_EATT_MTU : SCENARIO_ATT_MTU);
  att (w, c, FALSE, mtu_rsp);

  if (c->discovery) {
    /* Primary services */
    g_autoptr (GByteArray) group_req = pdu_new (ATT_READ_BY_GROUP_TYPE_REQ);
    put_le16 (group_req, 0x0001);
    put_le16 (group_req, 0xffff);
    put_le16 (group_req, GATT_PRIMARY_SERVICE);
    att (w, c, TRUE, group_req);
    g_autoptr (GByteArray) group_rsp = pdu_new (ATT_READ_BY_GROUP_TYPE_RSP);
    put_u8 (group_rsp, 20);
    put_le16 (group_rsp, SCENARIO_SERVICE_START);
    put_le16 (group_rsp, SCENARIO_SERVICE_END);
    put_uuid (group_rsp, TALLY_GATT_SERVICE_UUID);
    att (w, c, FALSE, group_rsp);
    g_autoptr (GByteArray) group_req2 = pdu_new (ATT_READ_BY_GROUP_TYPE_REQ);
    put_le16 (group_req2, SCENARIO_SERVICE_END + 1);
    put_le16 (group_req2, 0xffff);
    put_le16 (group_req2, GATT_PRIMARY_SERVICE);
    att (w, c, TRUE, group_req2);
    att_not_found (w, c, ATT_READ_BY_GROUP_TYPE_REQ, SCENARIO_SERVICE_END + 1);

    /* Characteristics: one declaration per response at ATT MTU 23. */
    const struct
    {
      guint16 start;
      guint16 decl;
      guint8 props;
      guint16 value;
      const char *uuid;
    } chars[] = {
      { SCENARIO_SERVICE_START, SCENARIO_RX_DECL, GATT_PROP_WRITE_WITHOUT_RESPONSE,
        SCENARIO_RX_HANDLE, TALLY_GATT_RX_UUID },
      { SCENARIO_RX_HANDLE, SCENARIO_TX_DECL, GATT_PROP_NOTIFY, SCENARIO_TX_HANDLE,
        TALLY_GATT_TX_UUID },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (chars); i++) {
      g_autoptr (GByteArray) req = pdu_new (ATT_READ_BY_TYPE_REQ);
      put_le16 (req, chars[i].start);
      put_le16 (req, SCENARIO_SERVICE_END);
      put_le16 (req, GATT_CHARACTERISTIC);
      att (w, c, TRUE, req);
      g_autoptr (GByteArray) rsp = pdu_new (ATT_READ_BY_TYPE_RSP);
      put_u8 (rsp, 21);
      put_le16 (rsp, chars[i].decl);
      put_u8 (rsp, chars[i].props);
      put_le16 (rsp, chars[i].value);
      put_uuid (rsp, chars[i].uuid);
      att (w, c, FALSE, rsp);
    }
    g_autoptr (GByteArray) type_req = pdu_new (ATT_READ_BY_TYPE_REQ);
    put_le16 (type_req, SCENARIO_TX_HANDLE);
    put_le16 (type_req, SCENARIO_SERVICE_END);
    put_le16 (type_req, GATT_CHARACTERISTIC);
    att (w, c, TRUE, type_req);
    att_not_found (w, c, ATT_READ_BY_TYPE_REQ, SCENARIO_TX_HANDLE);

    /* The tx characteristic's descriptor */
    g_autoptr (GByteArray) info_req = pdu_new (ATT_FIND_INFORMATION_REQ);
    put_le16 (info_req, SCENARIO_TX_CCC);
    put_le16 (info_req, SCENARIO_SERVICE_END);
    att (w, c, TRUE, info_req);
    g_autoptr (GByteArray) info_rsp = pdu_new (ATT_FIND_INFORMATION_RSP);
    put_u8 (info_rsp, 0x01); /* 16-bit UUIDs */
    put_le16 (info_rsp, SCENARIO_TX_CCC);
    put_le16 (info_rsp, GATT_CCC);
    att (w, c, FALSE, info_rsp);
  }

  /* Notifications on */
  g_autoptr (GByteArray) ccc = pdu_new (ATT_WRITE_REQ);
  put_le16 (ccc, SCENARIO_TX_CCC);
  put_le16 (ccc, 0x0001);
  att (w, c, TRUE, ccc);
  g_autoptr (GByteArray) ccc_rsp = pdu_new (ATT_WRITE_RSP);
  att (w, c, FALSE, ccc_rsp);

  if (c->eatt) {
    g_autoptr (GByteArray) req = g_byte_array_new ();
    put_u8 (req, L2CAP_LE_CREDIT_CONN_REQ);
    put_u8 (req, 1); /* identifier */
    put_le16 (req, 10);
    put_le16 (req, SCENARIO_EATT_PSM);
    put_le16 (req, SCENARIO_EATT_LOCAL_CID);
    put_le16 (req, SCENARIO_EATT_MTU);
    put_le16 (req, SCENARIO_EATT_MPS);
    put_le16 (req, 10); /* credits */
    l2cap (w, c, TRUE, L2CAP_CID_LE_SIGNALING, req);
    g_autoptr (GByteArray) rsp = g_byte_array_new ();
    put_u8 (rsp, L2CAP_LE_CREDIT_CONN_RSP);
    put_u8 (rsp, 1);
    put_le16 (rsp, 10);
    put_le16 (rsp, SCENARIO_EATT_REMOTE_CID);
    put_le16 (rsp, SCENARIO_EATT_MTU);
    put_le16 (rsp, SCENARIO_EATT_MPS);
    put_le16 (rsp, 10);
    put_le16 (rsp, 0x0000); /* success */
    l2cap (w, c, FALSE, L2CAP_CID_LE_SIGNALING, rsp);
  }
}

static void
write_disconnect (Writer *w, const ScenarioConnection *c)
{
  g_autoptr (GByteArray) ev = g_byte_array_new ();
  put_u8 (ev, 0x05); /* Disconnection Complete */
  put_u8 (ev, 4);
  put_u8 (ev, 0x00);
  put_le16 (ev, c->chandle);
  put_u8 (ev, 0x13); /* remote user terminated */
  record (w, HCI_INDEX, MONITOR_EVENT_PKT, ev);
}

static void
write_log (Writer *w, const ScenarioEvent *e)
{
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, e->priority, e->ident,
                                        e->text);
  /* btmon stores what the monitor socket delivers: the header becomes
   * the record's flags and length. */
  g_autoptr (GByteArray) payload = g_byte_array_new ();
  put_bytes (payload, frame + TALLY_BTMON_HEADER_SIZE, len - TALLY_BTMON_HEADER_SIZE);
  record (w, TALLY_BTMON_INDEX_NONE, MONITOR_USER_LOGGING, payload);
}

static void
write_fragment (Writer *w, const ScenarioEvent *e)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (e->fragment, &len);
  gboolean tx = e->role == SCENARIO_RX;
  guint16 handle = e->role == SCENARIO_RX ? SCENARIO_RX_HANDLE : SCENARIO_TX_HANDLE;
  g_autoptr (GByteArray) pdu = NULL;

  switch (e->role) {
  case SCENARIO_RX:
    pdu = pdu_new (ATT_WRITE_CMD);
    put_le16 (pdu, handle);
    break;
  case SCENARIO_TX:
    if (e->eatt) {
      /* BlueZ notifies over EATT with the multiple form, one tuple. */
      pdu = pdu_new (ATT_MULTIPLE_HANDLE_VALUE_NTF);
      put_le16 (pdu, handle);
      put_le16 (pdu, (guint16) len);
    } else {
      pdu = pdu_new (ATT_HANDLE_VALUE_NTF);
      put_le16 (pdu, handle);
    }
    break;
  }
  put_bytes (pdu, data, len);
  if (e->eatt)
    eatt (w, e->connection, tx, pdu);
  else
    att (w, e->connection, tx, pdu);
}

gboolean
scenario_write_btsnoop (const Scenario *scenario, const char *path, GError **error)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  Writer w = { .out = out };
  static const guint8 hci0[6] = { 0x00, 0xaa, 0x01, 0x00, 0x00, 0x00 };

  put_bytes (out, "btsnoop\0", 8);
  put_be32 (out, 1);
  put_be32 (out, BTSNOOP_FORMAT_MONITOR);

  g_autoptr (GByteArray) new_index = g_byte_array_new ();
  put_u8 (new_index, 0x00); /* primary controller */
  put_u8 (new_index, 0x00); /* virtual bus */
  put_bdaddr (new_index, hci0);
  put_bytes (new_index, "hci0\0\0\0\0", 8);
  record (&w, HCI_INDEX, MONITOR_NEW_INDEX, new_index);
  record (&w, HCI_INDEX, MONITOR_OPEN_INDEX, NULL);
  g_autoptr (GByteArray) info = g_byte_array_new ();
  put_bdaddr (info, hci0);
  put_le16 (info, 0x05f1); /* The Linux Foundation */
  record (&w, HCI_INDEX, MONITOR_INDEX_INFO, info);

  for (guint i = 0; i < scenario->events->len; i++) {
    const ScenarioEvent *e = scenario->events->pdata[i];
    switch (e->kind) {
    case SCENARIO_EVENT_CONNECT:
      write_connect (&w, e->connection);
      break;
    case SCENARIO_EVENT_LOG:
      write_log (&w, e);
      break;
    case SCENARIO_EVENT_FRAGMENT:
      write_fragment (&w, e);
      break;
    case SCENARIO_EVENT_DISCONNECT:
      write_disconnect (&w, e->connection);
      break;
    case SCENARIO_EVENT_PAUSE:
      w.paused_us += (guint64) e->pause_ms * 1000;
      break;
    }
  }

  return g_file_set_contents (path, (const char *) out->data, out->len, error);
}
