/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-frame.h"

#include <string.h>

/* The announced length is a u16, whatever the caller allows. */
#define FRAME_HARD_MAX_MESSAGE 65535
#define FRAME_HEADER_LONG      3 /* kind|seq, u16 total length */
#define FRAME_HEADER_SHORT     1 /* kind|seq */
#define FRAME_SEQ_MODULO       16

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

/*
 * Fragments are placed in index order.  One that arrives up to
 * TALLY_FRAME_REORDER_WINDOW indices ahead of the next one due is held, by
 * its sequence number, until the gap before it fills; the FIRST is index 0,
 * so fragments that overtake it are held too (AWAITING_FIRST).  At most
 * TALLY_FRAME_REORDER_WINDOW fragments are held, and their data never
 * exceeds the announced length (or, before the FIRST, the maximum).
 */

typedef enum
{
  REASSEMBLER_IDLE,
  REASSEMBLER_AWAITING_FIRST,
  REASSEMBLER_ASSEMBLING,
} ReassemblerState;

typedef struct
{
  gboolean present;
  TallyFrameKind kind;
  guint8 *data;
  gsize len;
} HeldFragment;

struct _TallyReassembler
{
  ReassemblerState state;
  gsize max_message;
  gint64 timeout_us;

  /* Current message, valid unless IDLE. */
  gint64 start_us;                     /* arrival of its first fragment, whichever */
  guint placed;                        /* fragments placed: the index due next */
  HeldFragment held[FRAME_SEQ_MODULO]; /* by sequence number */
  guint held_count;
  gsize held_bytes;
  guint held_max_index; /* valid while held_count > 0 */
  gboolean have_last;   /* the LAST is held */
  guint last_index;

  /* Valid while ASSEMBLING: the FIRST is placed. */
  guint8 *buf;
  gsize total;
  gsize received; /* bytes placed */
};

static const char *
reassembler_state_to_string (ReassemblerState state)
{
  switch (state) {
  case REASSEMBLER_IDLE: return "idle";
  case REASSEMBLER_AWAITING_FIRST: return "awaiting-first";
  case REASSEMBLER_ASSEMBLING: return "assembling";
  }
  return "unknown";
}

static void
reassembler_clear (TallyReassembler *r)
{
  for (guint i = 0; i < FRAME_SEQ_MODULO; i++) {
    g_clear_pointer (&r->held[i].data, g_free);
    r->held[i].present = FALSE;
    r->held[i].len = 0;
  }
  r->held_count = 0;
  r->held_bytes = 0;
  r->held_max_index = 0;
  r->have_last = FALSE;
  r->last_index = 0;
  g_clear_pointer (&r->buf, g_free);
  r->total = 0;
  r->received = 0;
  r->placed = 0;
  r->start_us = 0;
}

static void
reassembler_enter_state (TallyReassembler *r, ReassemblerState state)
{
  g_debug ("reassembler %p: %s -> %s", (void *) r, reassembler_state_to_string (r->state),
           reassembler_state_to_string (state));

  switch (state) {
  case REASSEMBLER_IDLE:
    reassembler_clear (r);
    break;
  case REASSEMBLER_AWAITING_FIRST:
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
  reassembler_clear (r);
  g_free (r);
}

gboolean
tally_reassembler_is_busy (TallyReassembler *r)
{
  g_return_val_if_fail (r != NULL, FALSE);

  switch (r->state) {
  case REASSEMBLER_IDLE:
    return FALSE;
  case REASSEMBLER_AWAITING_FIRST:
  case REASSEMBLER_ASSEMBLING:
    return TRUE;
  }
  return FALSE;
}

gboolean
tally_reassembler_check (TallyReassembler *r, gint64 now_us, GError **error)
{
  g_return_val_if_fail (r != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (r->state) {
  case REASSEMBLER_IDLE:
    return TRUE;
  case REASSEMBLER_AWAITING_FIRST:
    if (now_us - r->start_us <= r->timeout_us)
      return TRUE;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT,
                 "message without its FIRST after %" G_GINT64_FORMAT " ms: %" G_GSIZE_FORMAT
                 " bytes in %u fragments held, limit %" G_GINT64_FORMAT " ms",
                 (now_us - r->start_us) / 1000, r->held_bytes, r->held_count,
                 r->timeout_us / 1000);
    break;
  case REASSEMBLER_ASSEMBLING:
    if (now_us - r->start_us <= r->timeout_us)
      return TRUE;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT,
                 "message of %" G_GSIZE_FORMAT " bytes incomplete after %" G_GINT64_FORMAT
                 " ms: %" G_GSIZE_FORMAT " bytes in %u fragments received, limit %" G_GINT64_FORMAT
                 " ms",
                 r->total, (now_us - r->start_us) / 1000, r->received + r->held_bytes,
                 r->placed + r->held_count, r->timeout_us / 1000);
    break;
  }
  reassembler_enter_state (r, REASSEMBLER_IDLE);
  return FALSE;
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

static GBytes *
reassembler_take_message (TallyReassembler *r)
{
  GBytes *message = g_bytes_new_take (g_steal_pointer (&r->buf), r->total);

  reassembler_enter_state (r, REASSEMBLER_IDLE);
  return message;
}

/* Appends the fragment due next; the caller checked that its data fits. */
static gboolean
reassembler_place (TallyReassembler *r,
                   TallyFrameKind kind,
                   const guint8 *data,
                   gsize data_len,
                   GBytes **message,
                   GError **error)
{
  if (kind == TALLY_FRAME_LAST && r->received + data_len < r->total)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: LAST ends the message after %" G_GSIZE_FORMAT
                             " of %" G_GSIZE_FORMAT " announced bytes",
                             r->placed, r->received + data_len, r->total);

  if (data_len > 0)
    memcpy (r->buf + r->received, data, data_len);
  r->received += data_len;
  r->placed++;
  if (kind == TALLY_FRAME_LAST)
    *message = reassembler_take_message (r);
  return TRUE;
}

/* Places the held fragments the last placement made due, in index order. */
static gboolean
reassembler_drain (TallyReassembler *r, GBytes **message, GError **error)
{
  while (r->state == REASSEMBLER_ASSEMBLING && r->held_count > 0) {
    HeldFragment *slot = &r->held[r->placed % FRAME_SEQ_MODULO];
    g_autofree guint8 *data = NULL;
    gsize data_len;
    TallyFrameKind kind;

    if (!slot->present)
      break;
    data = g_steal_pointer (&slot->data);
    data_len = slot->len;
    kind = slot->kind;
    slot->present = FALSE;
    slot->len = 0;
    r->held_count--;
    r->held_bytes -= data_len;
    if (!reassembler_place (r, kind, data, data_len, message, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
reassembler_start (TallyReassembler *r,
                   TallyFrameKind kind,
                   guint seq,
                   const guint8 *fragment,
                   gsize len,
                   gint64 now_us,
                   GBytes **message,
                   GError **error)
{
  gsize total;
  gsize data_len;

  switch (r->state) {
  case REASSEMBLER_IDLE:
    break;
  case REASSEMBLER_AWAITING_FIRST:
    /* Held fragments belong to a multi-fragment message, which an ONLY is not. */
    if (kind == TALLY_FRAME_ONLY)
      return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                               "fragment 0: ONLY while %u later fragments of a message are held",
                               r->held_count);
    break;
  case REASSEMBLER_ASSEMBLING:
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: %s while a message of %" G_GSIZE_FORMAT
                             " bytes is in progress (%" G_GSIZE_FORMAT " received)",
                             r->placed, frame_kind_to_string (kind), r->total,
                             r->received + r->held_bytes);
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
  if (r->held_bytes > total - data_len)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                             "fragment 0: FIRST announces %" G_GSIZE_FORMAT
                             " bytes and carries %" G_GSIZE_FORMAT ", but %u later fragments"
                             " brought %" G_GSIZE_FORMAT " already",
                             total, data_len, r->held_count, r->held_bytes);

  switch (r->state) {
  case REASSEMBLER_IDLE:
    r->start_us = now_us;
    break;
  case REASSEMBLER_AWAITING_FIRST:
  case REASSEMBLER_ASSEMBLING:
    break;
  }
  r->buf = g_malloc (total);
  r->total = total;
  if (data_len > 0)
    memcpy (r->buf, fragment + FRAME_HEADER_LONG, data_len);
  r->received = data_len;
  r->placed = 1;
  reassembler_enter_state (r, REASSEMBLER_ASSEMBLING);
  if (kind == TALLY_FRAME_ONLY) {
    *message = reassembler_take_message (r);
    return TRUE;
  }
  return reassembler_drain (r, message, error);
}

static gboolean
reassembler_continue (TallyReassembler *r,
                      TallyFrameKind kind,
                      guint seq,
                      const guint8 *fragment,
                      gsize len,
                      gint64 now_us,
                      GBytes **message,
                      GError **error)
{
  const guint8 *data = fragment + FRAME_HEADER_SHORT;
  gsize data_len = len - FRAME_HEADER_SHORT;
  guint ahead = (seq + FRAME_SEQ_MODULO - r->placed % FRAME_SEQ_MODULO) % FRAME_SEQ_MODULO;
  guint index = r->placed + ahead;
  HeldFragment *slot = &r->held[seq];

  /* Behind the next one due, or too far ahead to tell from behind. */
  if (ahead > TALLY_FRAME_REORDER_WINDOW)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: sequence %u, expected %u..%u", r->placed, seq,
                             r->placed % FRAME_SEQ_MODULO,
                             (r->placed + TALLY_FRAME_REORDER_WINDOW) % FRAME_SEQ_MODULO);
  if (index == 0)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment 0: %s without a FIRST", frame_kind_to_string (kind));
  if (slot->present)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_TRUNCATED,
                             "fragment %u: sequence %u arrived twice", index, seq);
  if (r->have_last && index > r->last_index)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: %s after the LAST, fragment %u", index,
                             frame_kind_to_string (kind), r->last_index);
  if (kind == TALLY_FRAME_LAST && r->have_last)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: a second LAST, fragment %u is one", index,
                             r->last_index);
  if (kind == TALLY_FRAME_LAST && r->held_count > 0 && r->held_max_index > index)
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: LAST, but fragment %u arrived already", index,
                             r->held_max_index);

  switch (r->state) {
  case REASSEMBLER_IDLE:
  case REASSEMBLER_AWAITING_FIRST:
    if (data_len > r->max_message - r->held_bytes)
      return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                               "fragment %u: %s carries %" G_GSIZE_FORMAT
                               " bytes, with the %" G_GSIZE_FORMAT
                               " held before the FIRST more than the limit %" G_GSIZE_FORMAT,
                               index, frame_kind_to_string (kind), data_len, r->held_bytes,
                               r->max_message);
    break;
  case REASSEMBLER_ASSEMBLING:
    if (data_len > r->total - r->received - r->held_bytes)
      return reassembler_fail (r, error, TALLY_ERROR_FRAME_OVERSIZE,
                               "fragment %u: %s carries %" G_GSIZE_FORMAT
                               " bytes, only %" G_GSIZE_FORMAT " of the %" G_GSIZE_FORMAT
                               " announced remain",
                               index, frame_kind_to_string (kind), data_len,
                               r->total - r->received - r->held_bytes, r->total);
    break;
  }

  if (ahead == 0) {
    if (!reassembler_place (r, kind, data, data_len, message, error))
      return FALSE;
    return reassembler_drain (r, message, error);
  }

  slot->present = TRUE;
  slot->kind = kind;
  slot->data = data_len > 0 ? g_memdup2 (data, data_len) : NULL;
  slot->len = data_len;
  if (r->held_count == 0 || index > r->held_max_index)
    r->held_max_index = index;
  r->held_count++;
  r->held_bytes += data_len;
  if (kind == TALLY_FRAME_LAST) {
    r->have_last = TRUE;
    r->last_index = index;
  }

  switch (r->state) {
  case REASSEMBLER_IDLE:
    r->start_us = now_us;
    reassembler_enter_state (r, REASSEMBLER_AWAITING_FIRST);
    break;
  case REASSEMBLER_AWAITING_FIRST:
  case REASSEMBLER_ASSEMBLING:
    break;
  }
  return TRUE;
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
                             "fragment %u: empty, shorter than its 1-byte header", r->placed);

  nibble = fragment[0] >> 4;
  seq = fragment[0] & 0xf;
  if (!frame_kind_is_known (nibble))
    return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN,
                             "fragment %u: unknown kind 0x%x in header byte 0x%02x", r->placed,
                             nibble, fragment[0]);
  kind = (TallyFrameKind) nibble;

  switch (kind) {
  case TALLY_FRAME_FIRST:
  case TALLY_FRAME_ONLY:
    return reassembler_start (r, kind, seq, fragment, len, now_us, message, error);
  case TALLY_FRAME_MIDDLE:
  case TALLY_FRAME_LAST:
    return reassembler_continue (r, kind, seq, fragment, len, now_us, message, error);
  }
  return reassembler_fail (r, error, TALLY_ERROR_FRAME_UNKNOWN, "fragment %u: unknown kind 0x%x",
                           r->placed, nibble);
}
