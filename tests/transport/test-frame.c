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

static void
assert_message_contains (const GError *error, const char *needle)
{
  if (strstr (error->message, needle) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", error->message, needle);
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

  for (gsize mtu = 18; mtu <= 300; mtu++) {
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

/* At the smallest MTU, 18, an ONLY carries up to 15 bytes. */
static void
test_split_uses_only_when_message_fits_at_mtu_18 (void)
{
  guint8 msg[64] = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fits = NULL;
  g_autoptr (GPtrArray) spills = NULL;

  fits = tally_frame_split (msg, 15, 18, 100, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fits->len, ==, 1);
  g_assert_cmpuint (g_bytes_get_size (g_ptr_array_index (fits, 0)), ==, 18);

  spills = tally_frame_split (msg, 16, 18, 100, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (spills->len, ==, 2);
  g_assert_cmpuint (g_bytes_get_size (g_ptr_array_index (spills, 0)), ==, 18);
  g_assert_cmpuint (((guint8 *) g_bytes_get_data (g_ptr_array_index (spills, 1), NULL))[0], ==,
                    0x31);
  g_assert_cmpuint (g_bytes_get_size (g_ptr_array_index (spills, 1)), ==, 2);
}

static char *
to_hex (const guint8 *data, gsize len)
{
  GString *hex = g_string_new (NULL);

  for (gsize j = 0; j < len; j++)
    g_string_append_printf (hex, "%02x", data[j]);
  return g_string_free (hex, FALSE);
}

/* The 50-byte message of docs/framing.md: bytes 0x00..0x31. */
static GPtrArray *
split_documented_message (gsize mtu)
{
  guint8 msg[50];
  g_autoptr (GError) error = NULL;
  GPtrArray *fragments;

  for (guint i = 0; i < sizeof msg; i++)
    msg[i] = (guint8) i;
  fragments = tally_frame_split (msg, sizeof msg, mtu, TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fragments);
  return fragments;
}

static void
assert_fragments_hex (GPtrArray *fragments, const char *const *expected, guint n_expected)
{
  g_assert_cmpuint (fragments->len, ==, n_expected);
  for (guint i = 0; i < fragments->len; i++) {
    gsize len;
    const guint8 *data = fragment_data (fragments, i, &len);
    g_autofree char *hex = to_hex (data, len);

    g_assert_cmpstr (hex, ==, expected[i]);
  }
}

/* The example in docs/framing.md at MTU 20. */
static void
test_split_matches_documented_example (void)
{
  static const char *const expected[] = {
    "100032000102030405060708090a0b0c0d0e0f10",
    "211112131415161718191a1b1c1d1e1f20212223",
    "32242526272829" "2a2b2c2d2e2f3031",
  };
  g_autoptr (GPtrArray) fragments = split_documented_message (20);

  assert_fragments_hex (fragments, expected, G_N_ELEMENTS (expected));
}

/* The example in docs/framing.md at the smallest MTU, 18. */
static void
test_split_matches_documented_example_at_mtu_18 (void)
{
  static const char *const expected[] = {
    "100032000102030405060708090a0b0c0d0e",
    "210f101112131415161718191a1b1c1d1e1f",
    "22202122232425262728292a2b2c2d2e2f30",
    "3331",
  };
  g_autoptr (GPtrArray) fragments = split_documented_message (18);

  assert_fragments_hex (fragments, expected, G_N_ELEMENTS (expected));
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

/* 18 is ATT MTU 23 less a Handle Multiple Value Notification's 5 bytes. */
static void
test_split_refuses_mtu_17 (void)
{
  g_autofree guint8 *msg = make_message (100, 4);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) at_18 = NULL;

  g_assert_null (tally_frame_split (msg, 100, 17, 1000, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  assert_message_contains (error, "MTU 17 is outside 18..512");
  g_clear_error (&error);

  at_18 = tally_frame_split (msg, 100, 18, 1000, &error);
  g_assert_no_error (error);
  check_fragment_layout (at_18, 100, 18);
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

/* Sequence 0 is the FIRST's; a MIDDLE or LAST there cannot be held for it. */
static void
test_reassembly_rejects_middle_without_first (void)
{
  static const guint8 middle[] = { 0x20, 'x', 'y' };
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
  static const guint8 last[] = { 0x30, 'x', 'y' };
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

/* Fragments 0..3 arrive; 11, seven ahead of 4, is held; 12, eight ahead,
 * is beyond the window. */
static void
test_reassembly_rejects_sequence_beyond_window (void)
{
  g_autofree guint8 *msg = make_message (400, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  gsize len;
  const guint8 *data;

  fragments = tally_frame_split (msg, 400, 20, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, >, 13);

  for (guint i = 0; i < 4; i++) {
    data = fragment_data (fragments, i, &len);
    g_assert_true (push (r, data, len, T0, NULL, &error));
    g_assert_no_error (error);
  }
  data = fragment_data (fragments, 4 + TALLY_FRAME_REORDER_WINDOW, &len);
  g_assert_true (push (r, data, len, T0, NULL, &error));
  g_assert_no_error (error);
  data = fragment_data (fragments, 4 + TALLY_FRAME_REORDER_WINDOW + 1, &len);
  g_assert_false (push (r, data, len, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (error, "fragment 4: sequence 12, expected 4..11");
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
  assert_message_contains (error, "fragment 2: sequence 1, expected 2..9");
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

/* --- reordering ---------------------------------------------------------------- */

/* A fragment of @kind whose data is @data_len copies of @fill. */
static GBytes *
make_fragment (TallyFrameKind kind, guint seq, guint16 total, gsize data_len, guint8 fill)
{
  gboolean long_header = kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_ONLY;
  gsize header = long_header ? 3 : 1;
  guint8 *buf = g_malloc (header + data_len);

  buf[0] = (guint8) ((kind << 4) | (seq & 0xf));
  if (long_header) {
    buf[1] = (guint8) (total >> 8);
    buf[2] = (guint8) total;
  }
  memset (buf + header, fill, data_len);
  return g_bytes_new_take (buf, header + data_len);
}

/* Pushes a fragment that must be taken without completing a message. */
static void
hold (TallyReassembler *r, GBytes *fragment, gint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (fragment, &len);

  g_assert_true (tally_reassembler_push (r, data, len, now, &message, &error));
  g_assert_no_error (error);
  g_assert_null (message);
  g_assert_true (tally_reassembler_is_busy (r));
}

/* Pushes a fragment that must complete a message, and returns it. */
static GBytes *
complete (TallyReassembler *r, GBytes *fragment, gint64 now)
{
  g_autoptr (GError) error = NULL;
  GBytes *message = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (fragment, &len);

  g_assert_true (tally_reassembler_push (r, data, len, now, &message, &error));
  g_assert_no_error (error);
  g_assert_nonnull (message);
  g_assert_false (tally_reassembler_is_busy (r));
  return message;
}

/* Pushes a fragment that must be refused, and returns the error. */
static GError *
refuse (TallyReassembler *r, GBytes *fragment, gint64 now)
{
  GError *error = NULL;
  g_autoptr (GBytes) message = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (fragment, &len);

  g_assert_false (tally_reassembler_push (r, data, len, now, &message, &error));
  g_assert_nonnull (error);
  g_assert_null (message);
  g_assert_false (tally_reassembler_is_busy (r));
  return error;
}

static char *
order_to_string (const guint *order, guint n)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s%u", i > 0 ? " " : "", order[i]);
  return g_string_free (s, FALSE);
}

/*
 * Feeds the fragments in @order.  The first fragment that arrives more than
 * the window ahead of the first one still missing must be refused with
 * FRAME_TRUNCATED; without one, every fragment is taken and the last to
 * arrive completes the message byte for byte.  Returns whether the order
 * stayed within the window.
 */
static gboolean
check_arrival_order (TallyReassembler *r,
                     GPtrArray *fragments,
                     const guint *order,
                     const guint8 *msg,
                     gsize msg_len)
{
  guint n = fragments->len;
  g_autofree gboolean *arrived = g_new0 (gboolean, n);
  guint missing = 0;

  for (guint i = 0; i < n; i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GBytes) message = NULL;
    gsize len;
    const guint8 *data = fragment_data (fragments, order[i], &len);
    gboolean within = order[i] - missing <= TALLY_FRAME_REORDER_WINDOW;
    gboolean ok = tally_reassembler_push (r, data, len, T0, &message, &error);

    if (ok != within || (i + 1 < n) != (message == NULL) ||
        (!ok && !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED))) {
      g_autofree char *text = order_to_string (order, n);

      g_error ("arrival order %s, fragment %u (arrival %u): %s, %s", text, order[i], i,
               ok ? "taken" : error->message, message != NULL ? "completed" : "no message");
    }
    if (!ok) {
      assert_reset_and_usable (r);
      return FALSE;
    }
    arrived[order[i]] = TRUE;
    while (missing < n && arrived[missing])
      missing++;
    if (message != NULL) {
      g_assert_false (tally_reassembler_is_busy (r));
      g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg,
                       msg_len);
    } else {
      g_assert_true (tally_reassembler_is_busy (r));
    }
  }
  return TRUE;
}

typedef struct
{
  TallyReassembler *r;
  GPtrArray *fragments;
  const guint8 *msg;
  gsize msg_len;
  guint order[16];
  guint64 orders;
} OrderWalk;

/* Every order in which no fragment arrives more than the window ahead of
 * the first missing one (@missing). */
static void
walk_orders (OrderWalk *w, guint depth, guint32 arrived, guint missing)
{
  guint n = w->fragments->len;

  if (depth == n) {
    g_assert_true (check_arrival_order (w->r, w->fragments, w->order, w->msg, w->msg_len));
    w->orders++;
    return;
  }
  for (guint i = missing; i < n && i <= missing + TALLY_FRAME_REORDER_WINDOW; i++) {
    guint32 now_arrived = arrived | (1u << i);
    guint next_missing = missing;

    if ((arrived & (1u << i)) != 0)
      continue;
    while (next_missing < n && (now_arrived & (1u << next_missing)) != 0)
      next_missing++;
    w->order[depth] = i;
    walk_orders (w, depth + 1, now_arrived, next_missing);
  }
}

/* 10 fragments at MTU 18: 15 + 8 * 17 + 9 bytes. */
#define WALK_FRAGMENTS 10
#define WALK_MESSAGE   160
/* Orders of 10 fragments within a window of 7: the 10! orders less those
 * where some fragment arrives 8 or 9 ahead of the first missing one. */
#define WALK_ORDERS 756000

static void
test_reassembly_reorders_every_order_within_window (void)
{
  g_autofree guint8 *msg = make_message (WALK_MESSAGE, 11);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  OrderWalk w = { 0 };

  fragments = tally_frame_split (msg, WALK_MESSAGE, 18, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, ==, WALK_FRAGMENTS);

  w.r = r;
  w.fragments = fragments;
  w.msg = msg;
  w.msg_len = WALK_MESSAGE;
  walk_orders (&w, 0, 0, 0);
  g_test_message ("%" G_GUINT64_FORMAT " arrival orders of %u fragments reassembled", w.orders,
                  WALK_FRAGMENTS);
  g_assert_cmpuint (w.orders, ==, WALK_ORDERS);
}

/* A random order that stays within the window: each arrival is drawn from
 * the missing fragments up to the window ahead of the first missing one. */
static void
random_order_within_window (GRand *rand, guint n, guint *order)
{
  g_autofree gboolean *arrived = g_new0 (gboolean, n);
  guint missing = 0;

  for (guint i = 0; i < n; i++) {
    guint candidates[TALLY_FRAME_REORDER_WINDOW + 1] = { 0 };
    guint n_candidates = 0;

    for (guint j = missing; j < n && j <= missing + TALLY_FRAME_REORDER_WINDOW; j++)
      if (!arrived[j])
        candidates[n_candidates++] = j;
    g_assert_cmpuint (n_candidates, >, 0);
    order[i] = candidates[g_rand_int_range (rand, 0, (gint32) n_candidates)];
    arrived[order[i]] = TRUE;
    while (missing < n && arrived[missing])
      missing++;
  }
}

#define RANDOM_SEED   0x7a11e5u
#define RANDOM_ROUNDS 2000

/* Long messages whose sequence numbers wrap, at several MTUs. */
static void
test_reassembly_reorders_random_orders_within_window (void)
{
  static const gsize mtus[] = { 18, 23, 100, 512 };
  g_autoptr (GRand) rand = g_rand_new_with_seed (RANDOM_SEED);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (65535, TIMEOUT_MS);

  g_test_message ("seed %u, %u orders per MTU", RANDOM_SEED, RANDOM_ROUNDS);
  for (guint m = 0; m < G_N_ELEMENTS (mtus); m++) {
    /* 40 fragments: sequence numbers wrap twice. */
    gsize msg_len = (mtus[m] - 3) + 38 * (mtus[m] - 1) + 5;
    g_autofree guint8 *msg = make_message (msg_len, (guint) m);
    g_autoptr (GError) error = NULL;
    g_autoptr (GPtrArray) fragments = tally_frame_split (msg, msg_len, mtus[m], 65535, &error);
    g_autofree guint *order = NULL;

    g_assert_no_error (error);
    g_assert_cmpuint (fragments->len, ==, 40);
    order = g_new (guint, fragments->len);
    for (guint round = 0; round < RANDOM_ROUNDS; round++) {
      random_order_within_window (rand, fragments->len, order);
      g_assert_true (check_arrival_order (r, fragments, order, msg, msg_len));
    }
  }
}

/* Orders drawn from all 10! arrive whole or fail at exactly the first
 * fragment beyond the window, with FRAME_TRUNCATED. */
static void
test_reassembly_random_orders_fail_exactly_beyond_window (void)
{
  g_autofree guint8 *msg = make_message (WALK_MESSAGE, 12);
  g_autoptr (GRand) rand = g_rand_new_with_seed (RANDOM_SEED + 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = NULL;
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  guint order[WALK_FRAGMENTS];
  guint within = 0, beyond = 0;

  fragments = tally_frame_split (msg, WALK_MESSAGE, 18, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, ==, WALK_FRAGMENTS);

  for (guint round = 0; round < 10 * RANDOM_ROUNDS; round++) {
    for (guint i = 0; i < WALK_FRAGMENTS; i++)
      order[i] = i;
    for (guint i = WALK_FRAGMENTS - 1; i > 0; i--) {
      guint j = (guint) g_rand_int_range (rand, 0, (gint32) i + 1);
      guint t = order[i];

      order[i] = order[j];
      order[j] = t;
    }
    if (check_arrival_order (r, fragments, order, msg, WALK_MESSAGE))
      within++;
    else
      beyond++;
  }
  g_test_message ("seed %u: %u orders within the window, %u beyond", RANDOM_SEED + 1, within,
                  beyond);
  /* About a fifth of all orders stay within the window (756000 of 10!). */
  g_assert_cmpuint (within, >, 0);
  g_assert_cmpuint (beyond, >, 0);
}

/* Each block of eight fragments arrives reversed, the blocks shifted by 0..7:
 * every fragment as far ahead as the window allows, across sequence wraps. */
static void
test_reassembly_reorders_across_sequence_wrap (void)
{
  gsize msg_len = 15 + 38 * 17 + 5;
  g_autofree guint8 *msg = make_message (msg_len, 13);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, msg_len, 18, 65535, &error);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (65535, TIMEOUT_MS);
  guint order[40];
  const guint block = TALLY_FRAME_REORDER_WINDOW + 1;

  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, ==, G_N_ELEMENTS (order));
  for (guint shift = 0; shift < block; shift++) {
    guint n = 0;

    /* Fragments 0..shift-1 reversed, then blocks of eight reversed. */
    for (guint start = 0; start < fragments->len;) {
      guint end = MIN (start == 0 && shift > 0 ? shift : start + block, fragments->len);

      for (guint i = end; i > start; i--)
        order[n++] = i - 1;
      start = end;
    }
    g_assert_cmpuint (n, ==, fragments->len);
    g_assert_true (check_arrival_order (r, fragments, order, msg, msg_len));
  }
}

/* Whatever was placed, a sequence number 8..15 ahead of the next one due
 * (that is, behind it or beyond the window) is refused. */
static void
test_reassembly_refuses_every_sequence_outside_window (void)
{
  g_autofree guint8 *msg = make_message (400, 14);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, 400, 18, 1000, &error);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);

  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, >, 20);
  for (guint placed = 0; placed < 20; placed++) {
    for (guint ahead = TALLY_FRAME_REORDER_WINDOW + 1; ahead < 16; ahead++) {
      guint seq = (placed + ahead) % 16;
      g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, seq, 0, 1, 0xee);
      g_autoptr (GError) refused = NULL;
      g_autofree char *expected =
        g_strdup_printf ("fragment %u: sequence %u, expected %u..%u", placed, seq, placed % 16,
                         (placed + TALLY_FRAME_REORDER_WINDOW) % 16);

      for (guint i = 0; i < placed; i++)
        hold (r, g_ptr_array_index (fragments, i), T0);
      refused = refuse (r, middle, T0);
      g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
      assert_message_contains (refused, expected);
      assert_reset_and_usable (r);
    }
  }
}

static void
test_reassembly_reassembles_after_delayed_first (void)
{
  g_autofree guint8 *msg = make_message (WALK_MESSAGE, 15);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, WALK_MESSAGE, 18, 1000, &error);
  g_autoptr (GPtrArray) short_fragments = tally_frame_split (msg, 60, 18, 1000, &error);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  g_autoptr (GBytes) message = NULL;
  g_autoptr (GBytes) short_message = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (fragments->len, ==, 10);

  /* Seven fragments overtake the FIRST; it places them all, 8 and 9 follow. */
  for (guint i = 1; i <= TALLY_FRAME_REORDER_WINDOW; i++)
    hold (r, g_ptr_array_index (fragments, i), T0);
  hold (r, g_ptr_array_index (fragments, 0), T0);
  hold (r, g_ptr_array_index (fragments, 8), T0);
  message = complete (r, g_ptr_array_index (fragments, 9), T0);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), msg,
                   WALK_MESSAGE);

  /* Every other fragment, the LAST included, before the FIRST: the FIRST
   * completes the message. */
  g_assert_cmpuint (short_fragments->len, ==, 4);
  for (guint i = short_fragments->len - 1; i > 0; i--)
    hold (r, g_ptr_array_index (short_fragments, i), T0);
  short_message = complete (r, g_ptr_array_index (short_fragments, 0), T0);
  g_assert_cmpmem (g_bytes_get_data (short_message, NULL), g_bytes_get_size (short_message), msg,
                   60);
}

static void
test_reassembly_refuses_eighth_fragment_before_first (void)
{
  g_autofree guint8 *msg = make_message (WALK_MESSAGE, 16);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) fragments = tally_frame_split (msg, WALK_MESSAGE, 18, 1000, &error);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (1000, TIMEOUT_MS);
  g_autoptr (GError) refused = NULL;

  g_assert_no_error (error);
  for (guint i = 1; i <= TALLY_FRAME_REORDER_WINDOW; i++)
    hold (r, g_ptr_array_index (fragments, i), T0);
  refused = refuse (r, g_ptr_array_index (fragments, TALLY_FRAME_REORDER_WINDOW + 1), T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (refused, "fragment 0: sequence 8, expected 0..7");
  assert_reset_and_usable (r);
}

/* Before the FIRST announces a length, the maximum bounds what is held. */
static void
test_reassembly_bounds_data_held_before_first (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) over = make_fragment (TALLY_FRAME_MIDDLE, 6, 0, 16, 6);
  g_autoptr (GBytes) at_limit = make_fragment (TALLY_FRAME_MIDDLE, 6, 0, 15, 6);
  g_autoptr (GError) refused = NULL;

  for (guint seq = 1; seq <= 5; seq++) {
    g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, seq, 0, 17, (guint8) seq);

    hold (r, middle, T0);
  }
  refused = refuse (r, over, T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (refused, "fragment 6: MIDDLE carries 16 bytes, with the 85 held before "
                                    "the FIRST more than the limit 100");
  assert_reset_and_usable (r);

  /* 5 * 17 + 15 = 100 is still held. */
  for (guint seq = 1; seq <= 5; seq++) {
    g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, seq, 0, 17, (guint8) seq);

    hold (r, middle, T0);
  }
  hold (r, at_limit, T0);
}

static void
test_reassembly_refuses_held_data_beyond_announce (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 40, 15, 0);
  g_autoptr (GBytes) second = make_fragment (TALLY_FRAME_MIDDLE, 2, 0, 17, 2);
  g_autoptr (GBytes) third = make_fragment (TALLY_FRAME_MIDDLE, 3, 0, 17, 3);
  g_autoptr (GError) refused = NULL;

  hold (r, first, T0);
  hold (r, second, T0);
  refused = refuse (r, third, T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (
    refused, "fragment 3: MIDDLE carries 17 bytes, only 8 of the 40 announced remain");
  assert_reset_and_usable (r);
}

static void
test_reassembly_refuses_first_announcing_less_than_held (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 40, 15, 0);
  g_autoptr (GBytes) one = make_fragment (TALLY_FRAME_MIDDLE, 1, 0, 17, 1);
  g_autoptr (GBytes) two = make_fragment (TALLY_FRAME_MIDDLE, 2, 0, 17, 2);
  g_autoptr (GError) refused = NULL;

  hold (r, two, T0);
  hold (r, one, T0);
  refused = refuse (r, first, T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  assert_message_contains (refused, "FIRST announces 40 bytes and carries 15, but 2 later "
                                    "fragments brought 34 already");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_only_while_fragments_held (void)
{
  static const guint8 only[] = { 0x40, 0x00, 0x01, 'x' };
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, 1, 0, 17, 1);
  g_autoptr (GError) error = NULL;

  hold (r, middle, T0);
  g_assert_false (push (r, only, sizeof only, T0, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (error, "fragment 0: ONLY while 1 later fragments of a message are held");
  assert_reset_and_usable (r);
}

static void
test_reassembly_rejects_second_first_while_fragments_held (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 100, 15, 0);
  g_autoptr (GBytes) third = make_fragment (TALLY_FRAME_MIDDLE, 3, 0, 17, 3);
  g_autoptr (GError) refused = NULL;

  hold (r, third, T0);
  hold (r, first, T0);
  refused = refuse (r, first, T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (refused, "fragment 1: FIRST while a message of 100 bytes is in progress "
                                    "(32 received)");
  assert_reset_and_usable (r);
}

/* The LAST ends the message: nothing may follow it, in either arrival order. */
static void
test_reassembly_rejects_fragment_after_last (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 100, 15, 0);
  g_autoptr (GBytes) last_2 = make_fragment (TALLY_FRAME_LAST, 2, 0, 5, 2);
  g_autoptr (GBytes) last_3 = make_fragment (TALLY_FRAME_LAST, 3, 0, 5, 3);
  g_autoptr (GBytes) last_4 = make_fragment (TALLY_FRAME_LAST, 4, 0, 5, 4);
  g_autoptr (GBytes) middle_4 = make_fragment (TALLY_FRAME_MIDDLE, 4, 0, 17, 4);
  g_autoptr (GError) after_last = NULL;
  g_autoptr (GError) before_held = NULL;
  g_autoptr (GError) second_last = NULL;
  g_autoptr (GError) later_last = NULL;

  /* A MIDDLE after a held LAST. */
  hold (r, first, T0);
  hold (r, last_3, T0);
  after_last = refuse (r, middle_4, T0);
  g_assert_error (after_last, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (after_last, "fragment 4: MIDDLE after the LAST, fragment 3");
  assert_reset_and_usable (r);

  /* A LAST before a held MIDDLE. */
  hold (r, first, T0);
  hold (r, middle_4, T0);
  before_held = refuse (r, last_2, T0);
  g_assert_error (before_held, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (before_held, "fragment 2: LAST, but fragment 4 arrived already");
  assert_reset_and_usable (r);

  /* Two LASTs, the earlier arriving second... */
  hold (r, first, T0);
  hold (r, last_4, T0);
  second_last = refuse (r, last_2, T0);
  g_assert_error (second_last, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (second_last, "fragment 2: a second LAST, fragment 4 is one");
  assert_reset_and_usable (r);

  /* ...and the later arriving second, before the FIRST. */
  hold (r, last_2, T0);
  later_last = refuse (r, last_4, T0);
  g_assert_error (later_last, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  assert_message_contains (later_last, "fragment 4: LAST after the LAST, fragment 2");
  assert_reset_and_usable (r);
}

/* A held LAST is judged when the gap before it fills. */
static void
test_reassembly_rejects_held_last_ending_early (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 40, 15, 0);
  g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, 1, 0, 17, 1);
  g_autoptr (GBytes) last = make_fragment (TALLY_FRAME_LAST, 2, 0, 5, 2);
  g_autoptr (GBytes) full_last = make_fragment (TALLY_FRAME_LAST, 2, 0, 8, 2);
  g_autoptr (GBytes) message = NULL;
  g_autoptr (GError) refused = NULL;
  guint8 expected[40];

  hold (r, first, T0);
  hold (r, last, T0);
  refused = refuse (r, middle, T0);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (refused, "fragment 2: LAST ends the message after 37 of 40 announced");
  assert_reset_and_usable (r);

  /* With the right length, the same order completes. */
  hold (r, first, T0);
  hold (r, full_last, T0);
  message = complete (r, middle, T0);
  memset (expected, 0, 15);
  memset (expected + 15, 1, 17);
  memset (expected + 32, 2, 8);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), expected,
                   sizeof expected);
}

static void
test_reassembly_rejects_duplicate_held_fragment (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 100, 15, 0);
  g_autoptr (GBytes) third = make_fragment (TALLY_FRAME_MIDDLE, 3, 0, 17, 3);
  g_autoptr (GBytes) third_as_last = make_fragment (TALLY_FRAME_LAST, 3, 0, 1, 3);
  g_autoptr (GError) after_first = NULL;
  g_autoptr (GError) before_first = NULL;

  hold (r, first, T0);
  hold (r, third, T0);
  after_first = refuse (r, third, T0);
  g_assert_error (after_first, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (after_first, "fragment 3: sequence 3 arrived twice");
  assert_reset_and_usable (r);

  hold (r, third, T0);
  before_first = refuse (r, third_as_last, T0);
  g_assert_error (before_first, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);
  assert_message_contains (before_first, "fragment 3: sequence 3 arrived twice");
  assert_reset_and_usable (r);
}

static void
test_reassembly_times_out_fragments_held_before_first (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) middle = make_fragment (TALLY_FRAME_MIDDLE, 2, 0, 17, 2);
  g_autoptr (GError) error = NULL;
  gint64 deadline = T0 + (gint64) TIMEOUT_MS * 1000;

  hold (r, middle, T0);
  g_assert_true (tally_reassembler_check (r, deadline, &error));
  g_assert_no_error (error);
  g_assert_true (tally_reassembler_is_busy (r));

  g_assert_false (tally_reassembler_check (r, deadline + 1, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  assert_message_contains (error, "message without its FIRST after 1000 ms: 17 bytes in 1 "
                                  "fragments held");
  assert_reset_and_usable (r);
}

static void
test_reassembly_times_out_held_fragments_after_first (void)
{
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) first = make_fragment (TALLY_FRAME_FIRST, 0, 100, 15, 0);
  g_autoptr (GBytes) second = make_fragment (TALLY_FRAME_MIDDLE, 2, 0, 17, 2);
  g_autoptr (GBytes) third = make_fragment (TALLY_FRAME_MIDDLE, 3, 0, 17, 3);
  g_autoptr (GError) refused = NULL;
  gint64 deadline = T0 + (gint64) TIMEOUT_MS * 1000;

  hold (r, first, T0);
  hold (r, second, deadline);
  refused = refuse (r, third, deadline + 1);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  assert_message_contains (refused, "message of 100 bytes incomplete after 1000 ms: 32 bytes in 2 "
                                    "fragments received");
  assert_reset_and_usable (r);
}

/* The clock starts with the message's first fragment to arrive, not with
 * its FIRST. */
static void
test_reassembly_times_out_from_first_arrival (void)
{
  g_autoptr (GPtrArray) fragments = split_documented_message (18);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (100, TIMEOUT_MS);
  g_autoptr (GBytes) message = NULL;
  g_autoptr (GError) refused = NULL;
  gint64 deadline = T0 + (gint64) TIMEOUT_MS * 1000;

  hold (r, g_ptr_array_index (fragments, 2), T0);
  hold (r, g_ptr_array_index (fragments, 0), T0 + 500 * 1000);
  hold (r, g_ptr_array_index (fragments, 3), deadline);
  message = complete (r, g_ptr_array_index (fragments, 1), deadline);
  g_assert_cmpuint (g_bytes_get_size (message), ==, 50);

  hold (r, g_ptr_array_index (fragments, 2), T0);
  hold (r, g_ptr_array_index (fragments, 0), T0 + 500 * 1000);
  hold (r, g_ptr_array_index (fragments, 3), deadline);
  refused = refuse (r, g_ptr_array_index (fragments, 1), deadline + 1);
  g_assert_error (refused, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  assert_reset_and_usable (r);
}

/* The reordering example of docs/framing.md: the MTU 18 split of bytes
 * 0x00..0x31 arrives as fragments 2, 3, 0, 1. */
static void
test_reassembly_matches_documented_reordering_example (void)
{
  g_autoptr (GPtrArray) fragments = split_documented_message (18);
  g_autoptr (TallyReassembler) r = tally_reassembler_new (TALLY_FRAME_DEFAULT_MAX_MESSAGE,
                                                          TIMEOUT_MS);
  g_autoptr (GBytes) message = NULL;
  guint8 expected[50];

  for (guint i = 0; i < sizeof expected; i++)
    expected[i] = (guint8) i;
  g_assert_cmpuint (fragments->len, ==, 4);
  hold (r, g_ptr_array_index (fragments, 2), T0);
  hold (r, g_ptr_array_index (fragments, 3), T0);
  hold (r, g_ptr_array_index (fragments, 0), T0);
  message = complete (r, g_ptr_array_index (fragments, 1), T0);
  g_assert_cmpmem (g_bytes_get_data (message, NULL), g_bytes_get_size (message), expected,
                   sizeof expected);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/frame/split/round-trips-every-mtu-18-to-300",
                   test_split_round_trips_every_mtu);
  g_test_add_func ("/frame/split/uses-only-when-message-fits",
                   test_split_uses_only_when_message_fits);
  g_test_add_func ("/frame/split/uses-only-when-message-fits-at-mtu-18",
                   test_split_uses_only_when_message_fits_at_mtu_18);
  g_test_add_func ("/frame/split/matches-documented-example",
                   test_split_matches_documented_example);
  g_test_add_func ("/frame/split/matches-documented-example-at-mtu-18",
                   test_split_matches_documented_example_at_mtu_18);
  g_test_add_func ("/frame/split/refuses-empty-message", test_split_refuses_empty_message);
  g_test_add_func ("/frame/split/refuses-mtu-out-of-range", test_split_refuses_mtu_out_of_range);
  g_test_add_func ("/frame/split/refuses-mtu-17", test_split_refuses_mtu_17);
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
  g_test_add_func ("/frame/reassembly/rejects-sequence-beyond-window",
                   test_reassembly_rejects_sequence_beyond_window);
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
  g_test_add_func ("/frame/reassembly/reorders-every-order-within-window",
                   test_reassembly_reorders_every_order_within_window);
  g_test_add_func ("/frame/reassembly/reorders-random-orders-within-window",
                   test_reassembly_reorders_random_orders_within_window);
  g_test_add_func ("/frame/reassembly/random-orders-fail-exactly-beyond-window",
                   test_reassembly_random_orders_fail_exactly_beyond_window);
  g_test_add_func ("/frame/reassembly/reorders-across-sequence-wrap",
                   test_reassembly_reorders_across_sequence_wrap);
  g_test_add_func ("/frame/reassembly/refuses-every-sequence-outside-window",
                   test_reassembly_refuses_every_sequence_outside_window);
  g_test_add_func ("/frame/reassembly/reassembles-after-delayed-first",
                   test_reassembly_reassembles_after_delayed_first);
  g_test_add_func ("/frame/reassembly/refuses-eighth-fragment-before-first",
                   test_reassembly_refuses_eighth_fragment_before_first);
  g_test_add_func ("/frame/reassembly/bounds-data-held-before-first",
                   test_reassembly_bounds_data_held_before_first);
  g_test_add_func ("/frame/reassembly/refuses-held-data-beyond-announce",
                   test_reassembly_refuses_held_data_beyond_announce);
  g_test_add_func ("/frame/reassembly/refuses-first-announcing-less-than-held",
                   test_reassembly_refuses_first_announcing_less_than_held);
  g_test_add_func ("/frame/reassembly/rejects-only-while-fragments-held",
                   test_reassembly_rejects_only_while_fragments_held);
  g_test_add_func ("/frame/reassembly/rejects-second-first-while-fragments-held",
                   test_reassembly_rejects_second_first_while_fragments_held);
  g_test_add_func ("/frame/reassembly/rejects-fragment-after-last",
                   test_reassembly_rejects_fragment_after_last);
  g_test_add_func ("/frame/reassembly/rejects-held-last-ending-early",
                   test_reassembly_rejects_held_last_ending_early);
  g_test_add_func ("/frame/reassembly/rejects-duplicate-held-fragment",
                   test_reassembly_rejects_duplicate_held_fragment);
  g_test_add_func ("/frame/reassembly/times-out-fragments-held-before-first",
                   test_reassembly_times_out_fragments_held_before_first);
  g_test_add_func ("/frame/reassembly/times-out-held-fragments-after-first",
                   test_reassembly_times_out_held_fragments_after_first);
  g_test_add_func ("/frame/reassembly/times-out-from-first-arrival",
                   test_reassembly_times_out_from_first_arrival);
  g_test_add_func ("/frame/reassembly/matches-documented-reordering-example",
                   test_reassembly_matches_documented_reordering_example);

  return g_test_run ();
}
