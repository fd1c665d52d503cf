/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reassembly of arbitrary fragment streams.
 *
 * Input: byte 0 picks the MTU (20..512), byte 1 the reassembler's message
 * limit; then records of [clock byte][u16 length][fragment].  The clock
 * byte advances a synthetic monotonic clock by (byte & 0x7f) * 10 ms; with
 * the high bit set, tally_reassembler_check() runs before the push.
 *
 * Invariants:
 *  - a completed message is 1..limit bytes (never above 65535) and equals
 *    the payload bytes of the fragments since its FIRST (or of its ONLY);
 *  - it completes within the timeout of its FIRST;
 *  - TRUE without a message means busy, a message or an error means idle;
 *  - errors are FRAME_UNKNOWN, FRAME_OVERSIZE, FRAME_TRUNCATED or
 *    FRAME_TIMEOUT;
 *  - every completed message splits at the chosen MTU into fragments of at
 *    most MTU bytes that a fresh reassembler turns back into the message.
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

/* The message must survive a split at @mtu and a fresh reassembly. */
static void
check_round_trip (GBytes *message, gsize mtu, gsize limit)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *msg = g_bytes_get_data (message, &len);

  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, len, mtu, limit, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fragments);
  g_assert_cmpuint (fragments->len, >=, 1);
  if (len + 3 <= mtu)
    g_assert_cmpuint (fragments->len, ==, 1);
  else
    g_assert_cmpuint (fragments->len, ==, 2 + (len - (mtu - 3) - 1) / (mtu - 1));

  g_autoptr (TallyReassembler) r = tally_reassembler_new (limit, TIMEOUT_MS);
  for (guint i = 0; i < fragments->len; i++) {
    gsize flen;
    const guint8 *f = g_bytes_get_data (fragments->pdata[i], &flen);
    g_assert_cmpuint (flen, <=, mtu);
    g_assert_cmpuint (flen, >, header_len (f[0] >> 4));

    g_autoptr (GBytes) out = NULL;
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

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  FuzzInput in = { data, size };
  gsize mtu = TALLY_FRAME_MIN_MTU +
              (gsize) fuzz_input_u8 (&in) * (TALLY_FRAME_MAX_MTU - TALLY_FRAME_MIN_MTU) / 255;
  gsize limit = limits[fuzz_input_u8 (&in) % G_N_ELEMENTS (limits)];
  gsize effective = MIN (limit, (gsize) 65535);

  g_autoptr (TallyReassembler) r = tally_reassembler_new (limit, TIMEOUT_MS);
  /* What the fragments since the last FIRST carried, as the header in
   * tally-frame.h describes them. */
  g_autoptr (GByteArray) expect = g_byte_array_new ();
  gsize announced = 0;
  gint64 now = 0, started = 0;

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
        g_assert_cmpint (now - started, >, (gint64) TIMEOUT_MS * 1000);
        g_assert_false (tally_reassembler_is_busy (r));
        g_byte_array_set_size (expect, 0);
        g_clear_error (&error);
      }
    }

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
      g_byte_array_set_size (expect, 0);
      continue;
    }
    g_assert_no_error (error);

    /* Accepted: the header parses as documented. */
    g_assert_cmpuint (len, >=, 1);
    guint8 kind = fragment[0] >> 4;
    g_assert_true (kind >= TALLY_FRAME_FIRST && kind <= TALLY_FRAME_ONLY);
    g_assert_cmpuint (len, >=, header_len (kind));
    if (kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_ONLY) {
      g_byte_array_set_size (expect, 0);
      announced = ((gsize) fragment[1] << 8) | fragment[2];
      started = now;
    }
    gsize payload = len - header_len (kind);
    if (payload > 0)
      g_byte_array_append (expect, fragment + header_len (kind), (guint) payload);

    if (message == NULL) {
      g_assert_true (kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_MIDDLE);
      g_assert_true (tally_reassembler_is_busy (r));
      g_assert_cmpuint (expect->len, <=, announced);
      continue;
    }

    g_assert_true (kind == TALLY_FRAME_LAST || kind == TALLY_FRAME_ONLY);
    g_assert_false (tally_reassembler_is_busy (r));
    gsize mlen;
    const guint8 *m = g_bytes_get_data (message, &mlen);
    g_assert_cmpuint (mlen, >=, 1);
    g_assert_cmpuint (mlen, <=, effective);
    g_assert_cmpuint (mlen, ==, announced);
    g_assert_cmpmem (m, mlen, expect->data, expect->len);
    g_assert_cmpint (now - started, <=, (gint64) TIMEOUT_MS * 1000);
    check_round_trip (message, mtu, limit);
    g_byte_array_set_size (expect, 0);
  }
  return 0;
}
