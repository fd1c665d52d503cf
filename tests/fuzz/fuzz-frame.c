/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reassembly of arbitrary fragment streams, in any order.
 *
 * Input: byte 0 picks the MTU (18..512), byte 1 the reassembler's message
 * limit; then records of [clock byte][u16 length][fragment].  The clock
 * byte advances a synthetic monotonic clock by (byte & 0x7f) * 10 ms; with
 * the high bit set, tally_reassembler_check() runs before the push.
 *
 * Invariants:
 *  - a completed message is 1..limit bytes (never above 65535), as long as
 *    its FIRST announced, and equals the payloads of the fragments taken
 *    since the reassembler was last idle, put in index order: index k is
 *    the earliest-taken unused fragment with sequence number k mod 16 (the
 *    window of docs/framing.md keeps fragments k and k + 16 in order),
 *    index 0 is the FIRST or ONLY, the LAST (or ONLY) ends it, and every
 *    fragment taken is used;
 *  - it completes within the timeout of the first of those fragments;
 *  - what is held never exceeds the limit, nor the announced length once
 *    the FIRST is in;
 *  - TRUE without a message means busy, a message or an error means idle;
 *  - errors are FRAME_UNKNOWN, FRAME_OVERSIZE, FRAME_TRUNCATED or
 *    FRAME_TIMEOUT;
 *  - every completed message splits at the chosen MTU into fragments of at
 *    most MTU bytes that a fresh reassembler turns back into the message,
 *    in order and with every block of 8 fragments reversed (each fragment
 *    as far ahead as the window allows).
 */

#include <string.h>

#include "fuzz-common.h"
#include "tally-frame.h"

#define TIMEOUT_MS 1000
#define TICK_US    (10 * 1000)

static const gsize limits[] = {
  1, 20, 100, 512, 1000, TALLY_FRAME_DEFAULT_MAX_MESSAGE, 65535, 100000,
};

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  return 0;
}

static gsize
header_len (guint8 kind)
{
  return kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_ONLY ? 3 : 1;
}

/* Feeds @fragments in @order to a fresh reassembler; the last completes. */
static void
reassemble_in_order (GPtrArray *fragments, const guint *order, GBytes *message, gsize mtu,
                     gsize limit)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (limit, TIMEOUT_MS);

  for (guint i = 0; i < fragments->len; i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GBytes) out = NULL;
    gsize flen;
    const guint8 *f = g_bytes_get_data (fragments->pdata[order[i]], &flen);

    g_assert_cmpuint (flen, <=, mtu);
    g_assert_cmpuint (flen, >, header_len (f[0] >> 4));
    g_assert_true (tally_reassembler_push (r, f, flen, 0, &out, &error));
    g_assert_no_error (error);
    if (i + 1 < fragments->len) {
      g_assert_null (out);
    } else {
      g_assert_nonnull (out);
      g_assert_true (g_bytes_equal (out, message));
    }
  }
  g_assert_false (tally_reassembler_is_busy (r));
}

/* The message must survive a split at @mtu and a fresh reassembly. */
static void
check_round_trip (GBytes *message, gsize mtu, gsize limit)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *msg = g_bytes_get_data (message, &len);
  const guint block = TALLY_FRAME_REORDER_WINDOW + 1;

  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, len, mtu, limit, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fragments);
  g_assert_cmpuint (fragments->len, >=, 1);
  if (len + 3 <= mtu)
    g_assert_cmpuint (fragments->len, ==, 1);
  else
    g_assert_cmpuint (fragments->len, ==, 2 + (len - (mtu - 3) - 1) / (mtu - 1));

  g_autofree guint *order = g_new (guint, fragments->len);
  for (guint i = 0; i < fragments->len; i++)
    order[i] = i;
  reassemble_in_order (fragments, order, message, mtu, limit);

  for (guint start = 0; start < fragments->len; start += block) {
    guint end = MIN (start + block, fragments->len);
    for (guint i = start; i < end; i++)
      order[i] = end - 1 - (i - start);
  }
  reassemble_in_order (fragments, order, message, mtu, limit);
}

/* A fragment taken since the reassembler was last idle. */
typedef struct
{
  guint8 kind;
  guint8 seq;
  guint offset; /* of its payload in Model.payloads */
  guint len;
} Taken;

typedef struct
{
  GArray *taken;         /* Taken, in arrival order */
  GByteArray *payloads;  /* their payloads */
  gboolean have_first;
  gsize announced;
  gint64 started;        /* arrival of the first of them */
} Model;

static void
model_reset (Model *m)
{
  g_array_set_size (m->taken, 0);
  g_byte_array_set_size (m->payloads, 0);
  m->have_first = FALSE;
  m->announced = 0;
  m->started = 0;
}

/* The message the taken fragments make, by the rule in the header comment. */
static void
model_check_message (Model *m, GBytes *message)
{
  g_autofree gboolean *used = g_new0 (gboolean, m->taken->len);
  g_autoptr (GByteArray) rebuilt = g_byte_array_new ();
  guint n_used = 0;

  for (guint k = 0;; k++) {
    Taken *t = NULL;
    for (guint j = 0; j < m->taken->len && t == NULL; j++) {
      Taken *c = &g_array_index (m->taken, Taken, j);
      if (!used[j] && c->seq == k % 16) {
        used[j] = TRUE;
        t = c;
      }
    }
    g_assert_nonnull (t);
    n_used++;
    if (k == 0)
      g_assert_true (t->kind == TALLY_FRAME_FIRST || t->kind == TALLY_FRAME_ONLY);
    else
      g_assert_true (t->kind == TALLY_FRAME_MIDDLE || t->kind == TALLY_FRAME_LAST);
    if (t->len > 0)
      g_byte_array_append (rebuilt, m->payloads->data + t->offset, t->len);
    if (t->kind == TALLY_FRAME_LAST || t->kind == TALLY_FRAME_ONLY)
      break;
  }
  g_assert_cmpuint (n_used, ==, m->taken->len);

  gsize mlen;
  const guint8 *msg = g_bytes_get_data (message, &mlen);
  g_assert_cmpmem (msg, mlen, rebuilt->data, rebuilt->len);
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  FuzzInput in = { data, size };
  gsize mtu = TALLY_FRAME_MIN_MTU +
              (gsize) fuzz_input_u8 (&in) * (TALLY_FRAME_MAX_MTU - TALLY_FRAME_MIN_MTU) / 255;
  gsize limit = limits[fuzz_input_u8 (&in) % G_N_ELEMENTS (limits)];
  gsize effective = MIN (limit, (gsize) 65535);

  g_autoptr (TallyReassembler) r = tally_reassembler_new (limit, TIMEOUT_MS);
  g_autoptr (GArray) taken = g_array_new (FALSE, FALSE, sizeof (Taken));
  g_autoptr (GByteArray) payloads = g_byte_array_new ();
  Model model = { taken, payloads, FALSE, 0, 0 };
  gint64 now = 0;

  while (!fuzz_input_done (&in)) {
    g_autoptr (GError) error = NULL;
    guint8 clock = fuzz_input_u8 (&in);
    gsize len;
    const guint8 *fragment = fuzz_input_chunk (&in, &len);

    now += (gint64) (clock & 0x7f) * TICK_US;
    if ((clock & 0x80) != 0) {
      gboolean was_busy = tally_reassembler_is_busy (r);
      if (!tally_reassembler_check (r, now, &error)) {
        g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
        g_assert_true (was_busy);
        g_assert_cmpint (now - model.started, >, (gint64) TIMEOUT_MS * 1000);
        g_assert_false (tally_reassembler_is_busy (r));
        model_reset (&model);
        g_clear_error (&error);
      }
    }

    gboolean was_busy = tally_reassembler_is_busy (r);
    g_assert_true (was_busy == (model.taken->len > 0));
    g_autoptr (GBytes) message = NULL;
    gboolean ok = tally_reassembler_push (r, fragment, len, now, &message, &error);
    if (!ok) {
      g_assert_nonnull (error);
      g_assert_true (error->domain == TALLY_ERROR);
      g_assert_true (error->code == TALLY_ERROR_FRAME_UNKNOWN ||
                     error->code == TALLY_ERROR_FRAME_OVERSIZE ||
                     error->code == TALLY_ERROR_FRAME_TRUNCATED ||
                     error->code == TALLY_ERROR_FRAME_TIMEOUT);
      g_assert_null (message);
      g_assert_false (tally_reassembler_is_busy (r));
      model_reset (&model);
      continue;
    }
    g_assert_no_error (error);

    /* Taken: the header parses as documented. */
    g_assert_cmpuint (len, >=, 1);
    guint8 kind = fragment[0] >> 4;
    g_assert_true (kind >= TALLY_FRAME_FIRST && kind <= TALLY_FRAME_ONLY);
    g_assert_cmpuint (len, >=, header_len (kind));
    if (!was_busy)
      model.started = now;
    if (kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_ONLY) {
      g_assert_false (model.have_first);
      g_assert_cmpuint (fragment[0] & 0xf, ==, 0);
      model.have_first = TRUE;
      model.announced = ((gsize) fragment[1] << 8) | fragment[2];
    }
    Taken t = { kind, (guint8) (fragment[0] & 0xf), model.payloads->len,
                (guint) (len - header_len (kind)) };
    g_array_append_val (model.taken, t);
    if (t.len > 0)
      g_byte_array_append (model.payloads, fragment + header_len (kind), t.len);
    /* What is held stays bounded. */
    g_assert_cmpuint (model.payloads->len, <=, effective);
    if (model.have_first)
      g_assert_cmpuint (model.payloads->len, <=, model.announced);

    if (message == NULL) {
      g_assert_true (kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_MIDDLE ||
                     kind == TALLY_FRAME_LAST);
      g_assert_true (tally_reassembler_is_busy (r));
      continue;
    }

    g_assert_false (tally_reassembler_is_busy (r));
    g_assert_true (model.have_first);
    gsize mlen = g_bytes_get_size (message);
    g_assert_cmpuint (mlen, >=, 1);
    g_assert_cmpuint (mlen, <=, effective);
    g_assert_cmpuint (mlen, ==, model.announced);
    model_check_message (&model, message);
    g_assert_cmpint (now - model.started, <=, (gint64) TIMEOUT_MS * 1000);
    check_round_trip (message, mtu, limit);
    model_reset (&model);
  }
  return 0;
}
