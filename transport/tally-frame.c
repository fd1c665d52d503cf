/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-frame.h"

#include <string.h>

/* The announced length is a u16, whatever the caller allows. */
#define FRAME_HARD_MAX_MESSAGE 65535
#define FRAME_HEADER_LONG      3 /* kind|seq, u16 total length */
#define FRAME_HEADER_SHORT     1 /* kind|seq */

static const char *
frame_kind_to_string (TallyFrameKind kind)
{
  switch (kind) {
  case TALLY_FRAME_FIRST: return "FIRST";
  case TALLY_FRAME_MIDDLE: return "MIDDLE";
  case TALLY_FRAME_LAST: return "LAST";
  case TALLY_FRAME_ONLY: return "ONLY";
  }
  return "unknown";
}

static gboolean
frame_kind_is_known (guint nibble)
{
  return nibble >= TALLY_FRAME_FIRST && nibble <= TALLY_FRAME_ONLY;
}

static gsize
effective_max_message (gsize max_message)
{
  return MIN (max_message, (gsize) FRAME_HARD_MAX_MESSAGE);
}

static GBytes *
fragment_new (TallyFrameKind kind,
              guint seq,
              gsize total,
              const guint8 *data,
              gsize data_len)
{
  gboolean long_header = kind == TALLY_FRAME_FIRST || kind == TALLY_FRAME_ONLY;
  gsize header = long_header ? FRAME_HEADER_LONG : FRAME_HEADER_SHORT;
  guint8 *buf = g_malloc (header + data_len);

  buf[0] = (guint8) ((kind << 4) | (seq & 0xf));
  if (long_header) {
    buf[1] = (guint8) (total >> 8);
    buf[2] = (guint8) (total & 0xff);
  }
  memcpy (buf + header, data, data_len);
  return g_bytes_new_take (buf, header + data_len);
}

GPtrArray *
tally_frame_split (const guint8 *msg, gsize len, gsize mtu, gsize max_message, GError **error)
{
  g_autoptr (GPtrArray) fragments = NULL;
  gsize limit = effective_max_message (max_message);
  gsize offset;
  guint seq = 0;

  g_return_val_if_fail (msg != NULL || len == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (len == 0) {
    g_set_error_literal (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                         "cannot frame an empty message");
    return NULL;
  }
  if (mtu < TALLY_FRAME_MIN_MTU || mtu > TALLY_FRAME_MAX_MTU) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "MTU %" G_GSIZE_FORMAT " is outside %d..%d", mtu, TALLY_FRAME_MIN_MTU,
                 TALLY_FRAME_MAX_MTU);
    return NULL;
  }
  if (len > limit) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE,
                 "message of %" G_GSIZE_FORMAT " bytes exceeds the limit of %" G_GSIZE_FORMAT
                 " bytes",
                 len, limit);
    return NULL;
  }

  fragments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  if (len + FRAME_HEADER_LONG <= mtu) {
    g_ptr_array_add (fragments, fragment_new (TALLY_FRAME_ONLY, 0, len, msg, len));
    return g_steal_pointer (&fragments);
  }

  offset = mtu - FRAME_HEADER_LONG;
  g_ptr_array_add (fragments, fragment_new (TALLY_FRAME_FIRST, seq++, len, msg, offset));
  while (len - offset > mtu - FRAME_HEADER_SHORT) {
    gsize chunk = mtu - FRAME_HEADER_SHORT;

    g_ptr_array_add (fragments, fragment_new (TALLY_FRAME_MIDDLE, seq++, len, msg + offset, chunk));
    offset += chunk;
  }
  g_ptr_array_add (fragments,
                   fragment_new (TALLY_FRAME_LAST, seq, len, msg + offset, len - offset));
  return g_steal_pointer (&fragments);
}

/* --- reassembly ------------------------------------------------------------ */

typedef enum
{
  REASSEMBLER_IDLE,
  REASSEMBLER_ASSEMBLING,
} ReassemblerState;

struct _TallyReassembler
{
  ReassemblerState state;
  gsize max_message;
  gint64 timeout_us;

  /* Current message, valid while ASSEMBLING. */
  guint8 *buf;
  gsize total;
  gsize received;
  guint fragments; /* received so far, names the next one in errors */
  gint64 start_us;
};

static const char *
reassembler_state_to_string (ReassemblerState state)
{
  switch (state) {
  case REASSEMBLER_IDLE: return "idle";
  case REASSEMBLER_ASSEMBLING: return "assembling";
  }
  return "unknown";
}

static void
reassembler_enter_state (TallyReassembler *r, ReassemblerState state)
{
  g_debug ("reassembler %p: %s -> %s", (void *) r, reassembler_state_to_string (r->state),
           reassembler_state_to_string (state));

  switch (state) {
  case REASSEMBLER_IDLE:
    g_clear_pointer (&r->buf, g_free);
    r->total = 0;
    r->received = 0;
    r->fragments = 0;
    r->start_us = 0;
    break;
  case REASSEMBLER_ASSEMBLING:
    break;
  }
  r->state = state;
}

TallyReassembler *
tally_reassembler_new (gsize max_message, guint timeout_ms)
{
  TallyReassembler *r;

  g_return_val_if_fail (max_message > 0, NULL);
  g_return_val_if_fail (timeout_ms > 0, NULL);

  r = g_new0 (TallyReassembler, 1);
  r->state = REASSEMBLER_IDLE;
  r->max_message = effective_max_message (max_message);
  r->timeout_us = (gint64) timeout_ms * 1000;
  return r;
}

void
tally_reassembler_free (TallyReassembler *r)
{
  if (r == NULL)
    return;
  g_free (r->buf);
  g_free (r);
}

gboolean
tally_reassembler_is_busy (TallyReassembler *r)
{
  g_return_val_if_fail (r != NULL, FALSE);

  return r->state == REASSEMBLER_ASSEMBLING;
}

gboolean
tally_reassembler_check (TallyReassembler *r, gint64 now_us, GError **error)
{
  g_return_val_if_fail (r != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (r->state) {
  case REASSEMBLER_IDLE:
    return TRUE;
  case REASSEMBLER_ASSEMBLING:
    if (now_us - r->start_us <= r->timeout_us)
      return TRUE;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT,
                 "message of %" G_GSIZE_FORMAT " bytes incomplete after %" G_GINT64_FORMAT
                 " ms: %" G_GSIZE_FORMAT " bytes in %u fragments received, limit %" G_GINT64_FORMAT
                 " ms",
                 r->total, (now_us - r->start_us) / 1000, r->received, r->fragments,
                 r->timeout_us / 1000);
    reassembler_enter_state (r, REASSEMBLER_IDLE);
    return FALSE;
  }
  return TRUE;
}

/* Every error leaves the reassembler empty so the next FIRST/ONLY starts clean. */
G_GNUC_PRINTF (4, 5)
static gboolean
reassembler_fail (TallyReassembler *r, GError **error, TallyError code, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  if (error != NULL)
    *error = g_error_new_valist (TALLY_ERROR, code, format, args);
  va_end (args);
  reassembler_enter_state (r, REASSEMBLER_IDLE);
  return FALSE;
}

static gboolean
reassembler_start (TallyReassembler *r,
                   TallyFrameKind kind,
                   guint seq,
                   const guint8 *fragment,
                   gsize len,
                   gint64 now_us,
                   GError **error)
{
  gsize total;
  gsize data_len;

  switch (r->state) {
  case REASSEMBLER_IDLE:
    break;
  case REASSEMBLER_ASSEMBLING:
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: %s while a message of %" G_GSIZE_FORMAT
                             " bytes is in progress (%" G_GSIZE_FORMAT " received)",
                             r->fragments, frame_kind_to_string (kind), r->total, r->received);
  }

  if (len < FRAME_HEADER_LONG)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment 0: %s of %" G_GSIZE_FORMAT
                             " bytes is shorter than its %d-byte header",
                             frame_kind_to_string (kind), len, FRAME_HEADER_LONG);
  if (seq != 0)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment 0: sequence %u, expected 0", seq);

  total = ((gsize) fragment[1] << 8) | fragment[2];
  data_len = len - FRAME_HEADER_LONG;
  if (total == 0)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment 0: %s announces a length of 0",
                             frame_kind_to_string (kind));
  if (total > r->max_message)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                             "fragment 0: %s announces %" G_GSIZE_FORMAT
                             " bytes, limit %" G_GSIZE_FORMAT,
                             frame_kind_to_string (kind), total, r->max_message);
  if (data_len > total)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                             "fragment 0: %s carries %" G_GSIZE_FORMAT
                             " bytes of data, more than the %" G_GSIZE_FORMAT " announced",
                             frame_kind_to_string (kind), data_len, total);
  if (kind == TALLY_FRAME_ONLY && data_len < total)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment 0: ONLY carries %" G_GSIZE_FORMAT
                             " bytes, %" G_GSIZE_FORMAT " announced",
                             data_len, total);

  r->buf = g_malloc (total);
  r->total = total;
  r->start_us = now_us;
  memcpy (r->buf, fragment + FRAME_HEADER_LONG, data_len);
  r->received = data_len;
  r->fragments = 1;
  reassembler_enter_state (r, REASSEMBLER_ASSEMBLING);
  return TRUE;
}

static gboolean
reassembler_continue (TallyReassembler *r,
                      TallyFrameKind kind,
                      guint seq,
                      const guint8 *fragment,
                      gsize len,
                      GError **error)
{
  gsize data_len = len - FRAME_HEADER_SHORT;
  guint expected;

  switch (r->state) {
  case REASSEMBLER_IDLE:
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment 0: %s without a FIRST", frame_kind_to_string (kind));
  case REASSEMBLER_ASSEMBLING:
    break;
  }

  expected = r->fragments & 0xf;
  if (seq != expected)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: sequence %u, expected %u", r->fragments, seq, expected);
  if (data_len > r->total - r->received)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                             "fragment %u: %s carries %" G_GSIZE_FORMAT
                             " bytes, only %" G_GSIZE_FORMAT " of the %" G_GSIZE_FORMAT
                             " announced remain",
                             r->fragments, frame_kind_to_string (kind), data_len,
                             r->total - r->received, r->total);
  if (kind == TALLY_FRAME_LAST && r->received + data_len < r->total)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: LAST ends the message after %" G_GSIZE_FORMAT
                             " of %" G_GSIZE_FORMAT " announced bytes",
                             r->fragments, r->received + data_len, r->total);

  memcpy (r->buf + r->received, fragment + FRAME_HEADER_SHORT, data_len);
  r->received += data_len;
  r->fragments++;
  return TRUE;
}

static GBytes *
reassembler_take_message (TallyReassembler *r)
{
  GBytes *message = g_bytes_new_take (g_steal_pointer (&r->buf), r->total);

  reassembler_enter_state (r, REASSEMBLER_IDLE);
  return message;
}

gboolean
tally_reassembler_push (TallyReassembler *r,
                        const guint8 *fragment,
                        gsize len,
                        gint64 now_us,
                        GBytes **message,
                        GError **error)
{
  guint nibble;
  guint seq;
  TallyFrameKind kind;

  g_return_val_if_fail (r != NULL, FALSE);
  g_return_val_if_fail (fragment != NULL || len == 0, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  *message = NULL;

  /* A stale partial message fails on its own, before the new fragment is judged. */
  if (!tally_reassembler_check (r, now_us, error))
    return FALSE;

  if (len < FRAME_HEADER_SHORT)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: empty, shorter than its 1-byte header", r->fragments);

  nibble = fragment[0] >> 4;
  seq = fragment[0] & 0xf;
  if (!frame_kind_is_known (nibble))
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: unknown kind 0x%x in header byte 0x%02x", r->fragments,
                             nibble, fragment[0]);
  kind = (TallyFrameKind) nibble;

  switch (kind) {
  case TALLY_FRAME_FIRST:
    return reassembler_start (r, kind, seq, fragment, len, now_us, error);
  case TALLY_FRAME_ONLY:
    if (!reassembler_start (r, kind, seq, fragment, len, now_us, error))
      return FALSE;
    *message = reassembler_take_message (r);
    return TRUE;
  case TALLY_FRAME_MIDDLE:
    return reassembler_continue (r, kind, seq, fragment, len, error);
  case TALLY_FRAME_LAST:
    if (!reassembler_continue (r, kind, seq, fragment, len, error))
      return FALSE;
    *message = reassembler_take_message (r);
    return TRUE;
  }
  return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN, "fragment %u: unknown kind 0x%x",
                           r->fragments, nibble);
}
