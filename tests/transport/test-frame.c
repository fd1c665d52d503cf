/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "tally-frame.h"

#define TIMEOUT_MS 1000
#define T0         ((gint64) 5000000)

static guint8 *
make_message (gsize len, guint seed)
{
  guint8 *msg = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    msg[i] = (guint8) (i * 31 + seed + (i >> 8));
  return msg;
}

static const guint8 *
fragment_data (GPtrArray *fragments, guint i, gsize *len)
{
  return g_bytes_get_data (g_ptr_array_index (fragments, i), len);
}

/* Feeds every fragment and returns the message completed by the last one. */
static GBytes *
reassemble (TallyReassembler *r, GPtrArray *fragments)
{
  GBytes *message = NULL;

  for (guint i = 0; i < fragments->len; i++) {
    g_autoptr (GError) error = NULL;
    gsize len;
    const guint8 *data = fragment_data (fragments, i, &len);

    g_assert_null (message);
    g_assert_true (tally_reassembler_push (r, data, len, T0, &message, &error));
    g_assert_no_error (error);
    if (i + 1 < fragments->len) {
      g_assert_null (message);
      g_assert_true (tally_reassembler_is_busy (r));
    }
  }
  g_assert_nonnull (message);
  g_assert_false (tally_reassembler_is_busy (r));
  return message;
}

static void
check_fragment_layout (GPtrArray *fragments, gsize msg_len, gsize mtu)
{
  if (msg_len + 3 <= mtu) {
    gsize len;
    const guint8 *data = fragment_data (fragments, 0, &len);

    g_assert_cmpuint (fragments->len, ==, 1);
    g_assert_cmpuint (data[0], ==, TALLY_FRAME_ONLY << 4);
    g_assert_cmpuint (len, ==, msg_len + 3);
    return;
  }

  g_assert_cmpuint (fragments->len, >=, 2);
  for (guint i = 0; i < fragments->len; i++) {
    gsize len;
    const guint8 *data = fragment_data (fragments, i, &len);
    guint kind = data[0] >> 4;

    g_assert_cmpuint (len, <=, mtu);
    g_assert_cmpuint (data[0] & 0xf, ==, i & 0xf);
    if (i == 0) {
      g_assert_cmpuint (kind, ==, TALLY_FRAME_FIRST);
      g_assert_cmpuint (((gsize) data[1] << 8) | data[2], ==, msg_len);
      g_assert_cmpuint (len, ==, mtu);
    } else if (i + 1 == fragments->len) {
      g_assert_cmpuint (kind, ==, TALLY_FRAME_LAST);
      g_assert_cmpuint (len, >=, 2);
    } else {
      g_assert_cmpuint (kind, ==, TALLY_FRAME_MIDDLE);
      g_assert_cmpuint (len, ==, mtu);
    }
  }
}

static void
round_trip (TallyReassembler *r, gsize msg_len, gsize mtu)
{
  g_autofree guint8 *msg = make_message (msg_len, (guint) mtu);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (GBytes) message = NULL;

  fragments = tally_frame_split (msg, msg_len, mtu, 65535, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fragments);
  check_fragment_layout (fragments, msg_len, mtu);

  message = reassemble (r, fragments);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg, msg_len);
}

static void
test_split_round_trips_every_mtu (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (65535, TIMEOUT_MS);

  for (gsize mtu = 20; mtu <= 300; mtu++) {
    /* Every size up to two fragments, the boundaries of the next few
     * fragments, then a sweep up to 2000 bytes. */
    for (gsize len = 1; len <= 2 * mtu + 2; len++)
      round_trip (r, len, mtu);
    for (gsize k = 2; k <= 6; k++) {
      gsize boundary = (mtu - 3) + k * (mtu - 1);

      round_trip (r, boundary - 1, mtu);
      round_trip (r, boundary, mtu);
      round_trip (r, boundary + 1, mtu);
    }
    for (gsize len = 2 * mtu + 3; len <= 2000; len += 37)
      round_trip (r, len, mtu);
    round_trip (r, 2000, mtu);
  }
}

static void
test_split_uses_only_when_message_fits (void)
{
  guint8 msg[64] = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fits = NULL;
  g_autoptr (GPtrArray) spills = NULL;

  fits = tally_frame_split (msg, 17, 20, 100, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fits->len, ==, 1);
  g_assert_cmpuint (((guint8 *) g_bytes_get_data (g_ptr_array_index (fits, 0), NULL))[0], ==,
                    0x40);

  spills = tally_frame_split (msg, 18, 20, 100, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (spills->len, ==, 2);
  g_assert_cmpuint (((guint8 *) g_bytes_get_data (g_ptr_array_index (spills, 0), NULL))[0], ==,
                    0x10);
  g_assert_cmpuint (((guint8 *) g_bytes_get_data (g_ptr_array_index (spills, 1), NULL))[0], ==,
                    0x31);
  g_assert_cmpuint (g_bytes_get_size (g_ptr_array_index (spills, 1)), ==, 2);
}

/* The example in docs/framing.md: bytes 0x00..0x31 at MTU 20. */
static void
test_split_matches_documented_example (void)
{
  static const char *expected[] = {
    "100032000102030405060708090a0b0c0d0e0f10",
    "211112131415161718191a1b1c1d1e1f20212223",
    "32242526272829" "2a2b2c2d2e2f3031",
  };
  guint8 msg[50];
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;

  for (guint i = 0; i < sizeof msg; i++)
    msg[i] = (guint8) i;
  fragments = tally_frame_split (msg, sizeof msg, 20, TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < fragments->len; i++) {
    gsize len;
    const guint8 *data = fragment_data (fragments, i, &len);
    g_autoptr (GString) hex = g_string_new (NULL);

    for (gsize j = 0; j < len; j++)
      g_string_append_printf (hex, "%02x", data[j]);
    g_assert_cmpstr (hex->str, ==, expected[i]);
  }
}

static void
test_split_refuses_empty_message (void)
{
  guint8 msg[1] = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_null (tally_frame_split (msg, 0, 20, 100, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_split_refuses_mtu_out_of_range (void)
{
  guint8 msg[8] = { 0 };
  g_autoptr (GError) low = NULL;
  g_autoptr (GError) high = NULL;
  g_autoptr (GPtrArray) min = NULL;
  g_autoptr (GPtrArray) max = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_null (tally_frame_split (msg, sizeof msg, TALLY_FRAME_MIN_MTU - 1, 100, &low));
  g_assert_error (low, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_null (tally_frame_split (msg, sizeof msg, TALLY_FRAME_MAX_MTU + 1, 100, &high));
  g_assert_error (high, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);

  min = tally_frame_split (msg, sizeof msg, TALLY_FRAME_MIN_MTU, 100, &error);
  g_assert_no_error (error);
  max = tally_frame_split (msg, sizeof msg, TALLY_FRAME_MAX_MTU, 100, &error);
  g_assert_no_error (error);
}

static void
test_split_refuses_message_over_max (void)
{
  g_autofree guint8 *msg = make_message (101, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) at_limit = NULL;

  g_assert_null (tally_frame_split (msg, 101, 20, 100, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  g_clear_error (&error);

  at_limit = tally_frame_split (msg, 100, 20, 100, &error);
  g_assert_no_error (error);
  g_assert_nonnull (at_limit);
}

static void
test_split_caps_max_message_at_65535 (void)
{
  g_autofree guint8 *msg = make_message (65536, 7);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (GBytes) message = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000000, TIMEOUT_MS);

  g_assert_null (tally_frame_split (msg, 65536, 512, 1000000, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  g_clear_error (&error);

  fragments = tally_frame_split (msg, 65535, 512, 1000000, &error);
  g_assert_no_error (error);
  check_fragment_layout (fragments, 65535, 512);
  message = reassemble (r, fragments);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg, 65535);
}

static void
test_reassembly_accepts_message_at_max (void)
{
  g_autofree guint8 *msg = make_message (100, 3);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (GBytes) message = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  fragments = tally_frame_split (msg, 100, 20, 100, &error);
  g_assert_no_error (error);
  message = reassemble (r, fragments);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg, 100);
}

/* --- reassembly errors --------------------------------------------------------- */

static gboolean
push (TallyReassembler *r, const guint8 *data, gsize len, gint64 now, GBytes **out, GError **error)
{
  g_autoptr (GBytes) message = NULL;
  gboolean ok = tally_reassembler_push (r, data, len, now, &message, error);

  if (out != NULL)
    *out = g_steal_pointer (&message);
  return ok;
}

/* After any error the reassembler is empty and takes the next message. */
static void
assert_reset_and_usable (TallyReassembler *r)
{
  static const guint8 only[] = { 0x40, 0x00, 0x03, 'a', 'b', 'c' };
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;

  g_assert_false (tally_reassembler_is_busy (r));
  g_assert_true (push (r, only, sizeof only, T0, &message, &error));
  g_assert_no_error (error);
  g_assert_nonnull (message);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), "abc", 3);
}

static void
assert_message_contains (const GError *error, const char *needle)
{
  if (strstr (error->message, needle) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", error->message, needle);
}

/* FIRST (seq 0) announcing 40 bytes with 17 bytes of data. */
static void
push_first (TallyReassembler *r, guint16 total)
{
  guint8 first[20] = { 0x10, (guint8) (total >> 8), (guint8) total };
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;

  g_assert_true (push (r, first, sizeof first, T0, &message, &error));
  g_assert_no_error (error);
  g_assert_null (message);
  g_assert_true (tally_reassembler_is_busy (r));
}

static void
test_reassembly_rejects_unknown_kind (void)
{
  static const guint8 headers[] = { 0x00, 0x53, 0x5f, 0xf0 };
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  for (guint i = 0; i < G_N_ELEMENTS (headers); i++) {
    guint8 fragment[4] = { headers[i], 0x00, 0x01, 'x' };
    g_autoptr (GError) error = NULL;

    g_assert_false (push (r, fragment, sizeof fragment, T0, NULL, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
    assert_message_contains (error, "unknown kind");
    assert_reset_and_usable (r);
  }

  /* In the middle of a message too, and the partial message is dropped. */
  {
    static const guint8 bad[] = { 0x61, 'x' };
    g_autoptr (GError) error = NULL;

    push_first (r, 40);
    g_assert_false (push (r, bad, sizeof bad, T0, NULL, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
    assert_message_contains (error, "fragment 1: unknown kind 0x6");
    assert_reset_and_usable (r);
  }
}

static void
test_reassembly_rejects_middle_without_first (void)
{
  static const guint8 middle[] = { 0x21, 'x', 'y' };
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, middle, sizeof middle, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (error, "MIDDLE without a FIRST");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_last_without_first (void)
{
  static const guint8 last[] = { 0x31, 'x', 'y' };
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, last, sizeof last, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (error, "LAST without a FIRST");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_first_while_in_progress (void)
{
  static const guint8 first[] = { 0x10, 0x00, 0x28, 'x' };
  static const guint8 only[] = { 0x40, 0x00, 0x01, 'x' };
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) only_error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  push_first (r, 40);
  g_assert_false (push (r, first, sizeof first, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (error, "fragment 1: FIRST while a message of 40 bytes is in progress");
  assert_reset_and_usable (r);

  push_first (r, 40);
  g_assert_false (push (r, only, sizeof only, T0, NULL, &only_error));
  g_assert_error (only_error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (only_error, "ONLY while a message");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_oversize_announce (void)
{
  static const guint8 first[] = { 0x10, 0x00, 0x65, 'x' }; /* 101 */
  static const guint8 only[] = { 0x40, 0xff, 0xff, 'x' };
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) only_error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, first, sizeof first, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (error, "announces 101 bytes, limit 100");
  assert_reset_and_usable (r);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &only_error));
  g_assert_error (only_error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_data_beyond_announce (void)
{
  static const guint8 only[] = { 0x40, 0x00, 0x02, 'a', 'b', 'c' };
  static const guint8 first[] = { 0x10, 0x00, 0x02, 'a', 'b', 'c' };
  static const guint8 last[] = { 0x31, 'a', 'b', 'c', 'd' };
  g_autoptr (GError) only_error = NULL;
  g_autoptr (GError) first_error = NULL;
  g_autoptr (GError) last_error = NULL;
  guint8 short_first[] = { 0x10, 0x00, 0x14, 1,  2,  3,  4,  5,  6, 7,
                           8,    9,    10,   11, 12, 13, 14, 15, 16, 17 };
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &only_error));
  g_assert_error (only_error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (only_error, "more than the 2 announced");
  assert_reset_and_usable (r);

  g_assert_false (push (r, first, sizeof first, T0, NULL, &first_error));
  g_assert_error (first_error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_reset_and_usable (r);

  /* 20 announced, 17 in FIRST, LAST brings 4. */
  g_assert_true (push (r, short_first, sizeof short_first, T0, NULL, NULL));
  g_assert_false (push (r, last, sizeof last, T0, NULL, &last_error));
  g_assert_error (last_error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (last_error, "fragment 1: LAST carries 4 bytes, only 3 of the 20");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_zero_length (void)
{
  static const guint8 only[] = { 0x40, 0x00, 0x00 };
  static const guint8 first[] = { 0x10, 0x00, 0x00, 'x' };
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) first_error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (error, "announces a length of 0");
  assert_reset_and_usable (r);

  g_assert_false (push (r, first, sizeof first, T0, NULL, &first_error));
  g_assert_error (first_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_sequence_gap (void)
{
  g_autofree guint8 *msg = make_message (200, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  gsize len;
  const guint8 *data;

  fragments = tally_frame_split (msg, 200, 20, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, >, 6);

  /* Fragments 0..3 arrive, 4 is lost, 5 comes next. */
  for (guint i = 0; i < 4; i++) {
    data = fragment_data (fragments, i, &len);
    g_assert_true (push (r, data, len, T0, NULL, &error));
    g_assert_no_error (error);
  }
  data = fragment_data (fragments, 5, &len);
  g_assert_false (push (r, data, len, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (error, "fragment 4: sequence 5, expected 4");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_replayed_fragment (void)
{
  g_autofree guint8 *msg = make_message (100, 2);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  gsize len;
  const guint8 *data;

  fragments = tally_frame_split (msg, 100, 20, 1000, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 2; i++) {
    data = fragment_data (fragments, i, &len);
    g_assert_true (push (r, data, len, T0, NULL, &error));
  }
  data = fragment_data (fragments, 1, &len);
  g_assert_false (push (r, data, len, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (error, "fragment 2: sequence 1, expected 2");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_first_with_nonzero_sequence (void)
{
  static const guint8 only[] = { 0x43, 0x00, 0x01, 'x' };
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (error, "fragment 0: sequence 3, expected 0");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_short_fragment (void)
{
  static const guint8 first[] = { 0x10, 0x00 };
  static const guint8 only[] = { 0x40 };
  g_autoptr (GError) empty_error = NULL;
  g_autoptr (GError) first_error = NULL;
  g_autoptr (GError) only_error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, first, 0, T0, NULL, &empty_error));
  g_assert_error (empty_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_reset_and_usable (r);

  g_assert_false (push (r, first, sizeof first, T0, NULL, &first_error));
  g_assert_error (first_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (first_error, "FIRST of 2 bytes is shorter than its 3-byte header");
  assert_reset_and_usable (r);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &only_error));
  g_assert_error (only_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_data_short_of_announce (void)
{
  static const guint8 only[] = { 0x40, 0x00, 0x05, 'a', 'b' };
  static const guint8 last[] = { 0x31, 'a' };
  g_autoptr (GError) only_error = NULL;
  g_autoptr (GError) last_error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);

  g_assert_false (push (r, only, sizeof only, T0, NULL, &only_error));
  g_assert_error (only_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (only_error, "ONLY carries 2 bytes, 5 announced");
  assert_reset_and_usable (r);

  push_first (r, 40);
  g_assert_false (push (r, last, sizeof last, T0, NULL, &last_error));
  g_assert_error (last_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (last_error, "after 18 of 40 announced bytes");
  assert_reset_and_usable (r);
}

static void
test_reassembly_times_out_partial_message (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  gint64 deadline = T0 + (gint64) TIMEOUT_MS * 1000;

  g_assert_true (tally_reassembler_check (r, G_MAXINT64, &error));
  g_assert_no_error (error);

  push_first (r, 40);
  g_assert_true (tally_reassembler_check (r, deadline, &error));
  g_assert_no_error (error);
  g_assert_true (tally_reassembler_is_busy (r));

  g_assert_false (tally_reassembler_check (r, deadline + 1, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  assert_message_contains (error, "message of 40 bytes incomplete");
  assert_reset_and_usable (r);
}

static void
test_reassembly_times_out_on_late_fragment (void)
{
  static const guint8 middle[] = { 0x21, 1,  2,  3,  4,  5,  6,  7,  8,  9,
                                   10,   11, 12, 13, 14, 15, 16, 17, 18, 19 };
  static const guint8 last[] = { 0x32, 1, 2, 3, 4 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  gint64 deadline = T0 + (gint64) TIMEOUT_MS * 1000;

  /* At the deadline the fragment still counts... */
  push_first (r, 40);
  g_assert_true (push (r, middle, sizeof middle, deadline, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (push (r, last, sizeof last, deadline, &message, &error));
  g_assert_no_error (error);
  g_assert_nonnull (message);

  /* ...one microsecond later it does not. */
  push_first (r, 40);
  g_assert_false (push (r, middle, sizeof middle, deadline + 1, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  assert_reset_and_usable (r);
}

static void
test_reassembly_sequence_wraps_after_16 (void)
{
  g_autofree guint8 *msg = make_message (1000, 9);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (GBytes) message = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  gsize len;

  fragments = tally_frame_split (msg, 1000, 20, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, >, 33);
  g_assert_cmpuint (fragment_data (fragments, 16, &len)[0], ==, 0x20);
  g_assert_cmpuint (fragment_data (fragments, 33, &len)[0], ==, 0x21);
  message = reassemble (r, fragments);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg, 1000);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/frame/split/round-trips-every-mtu-20-to-300",
                   test_split_round_trips_every_mtu);
  g_test_add_func ("/frame/split/uses-only-when-message-fits",
                   test_split_uses_only_when_message_fits);
  g_test_add_func ("/frame/split/matches-documented-example",
                   test_split_matches_documented_example);
  g_test_add_func ("/frame/split/refuses-empty-message", test_split_refuses_empty_message);
  g_test_add_func ("/frame/split/refuses-mtu-out-of-range", test_split_refuses_mtu_out_of_range);
  g_test_add_func ("/frame/split/refuses-message-over-max", test_split_refuses_message_over_max);
  g_test_add_func ("/frame/split/caps-max-message-at-65535", test_split_caps_max_message_at_65535);
  g_test_add_func ("/frame/reassembly/accepts-message-at-max",
                   test_reassembly_accepts_message_at_max);
  g_test_add_func ("/frame/reassembly/rejects-unknown-kind", test_reassembly_rejects_unknown_kind);
  g_test_add_func ("/frame/reassembly/rejects-middle-without-first",
                   test_reassembly_rejects_middle_without_first);
  g_test_add_func ("/frame/reassembly/rejects-last-without-first",
                   test_reassembly_rejects_last_without_first);
  g_test_add_func ("/frame/reassembly/rejects-first-while-in-progress",
                   test_reassembly_rejects_first_while_in_progress);
  g_test_add_func ("/frame/reassembly/rejects-oversize-announce",
                   test_reassembly_rejects_oversize_announce);
  g_test_add_func ("/frame/reassembly/rejects-data-beyond-announce",
                   test_reassembly_rejects_data_beyond_announce);
  g_test_add_func ("/frame/reassembly/rejects-zero-length", test_reassembly_rejects_zero_length);
  g_test_add_func ("/frame/reassembly/rejects-sequence-gap", test_reassembly_rejects_sequence_gap);
  g_test_add_func ("/frame/reassembly/rejects-replayed-fragment",
                   test_reassembly_rejects_replayed_fragment);
  g_test_add_func ("/frame/reassembly/rejects-first-with-nonzero-sequence",
                   test_reassembly_rejects_first_with_nonzero_sequence);
  g_test_add_func ("/frame/reassembly/rejects-short-fragment",
                   test_reassembly_rejects_short_fragment);
  g_test_add_func ("/frame/reassembly/rejects-data-short-of-announce",
                   test_reassembly_rejects_data_short_of_announce);
  g_test_add_func ("/frame/reassembly/times-out-partial-message",
                   test_reassembly_times_out_partial_message);
  g_test_add_func ("/frame/reassembly/times-out-on-late-fragment",
                   test_reassembly_times_out_on_late_fragment);
  g_test_add_func ("/frame/reassembly/sequence-wraps-after-16",
                   test_reassembly_sequence_wraps_after_16);

  return g_test_run ();
}
