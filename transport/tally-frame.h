/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Framing: one message becomes one or more fragments no larger than the
 * link's MTU payload (down to 18 bytes: ATT MTU 23 less the 5 bytes of a
 * Handle Multiple Value Notification).  Sans-I/O: the caller passes the
 * clock, so the reassembly timeout is testable.
 *
 * Fragment header, byte 0: kind in the high nibble, sequence number (mod 16)
 * of the fragment within its message in the low nibble.
 *   0x1 FIRST, 0x2 MIDDLE, 0x3 LAST, 0x4 ONLY
 * FIRST and ONLY carry the total message length as a big-endian u16 in bytes
 * 1-2.  Any other kind is FRAME_UNKNOWN.
 *
 * With Enhanced ATT a message's fragments may arrive out of order: the
 * reassembler holds a fragment up to TALLY_FRAME_REORDER_WINDOW indices
 * ahead of the next one due (the FIRST included) and places it when the gap
 * fills.  docs/framing.md has the rule.
 */

#include <glib.h>

#include "tally-error.h" /* the FRAME_* codes it reports */

G_BEGIN_DECLS

#define TALLY_FRAME_MIN_MTU             18
#define TALLY_FRAME_MAX_MTU             512
#define TALLY_FRAME_DEFAULT_MAX_MESSAGE 8192
#define TALLY_FRAME_DEFAULT_TIMEOUT_MS  10000
/* How far ahead of the next fragment due (mod 16) a fragment may arrive. */
#define TALLY_FRAME_REORDER_WINDOW 7

typedef enum
{
  TALLY_FRAME_FIRST = 0x1,
  TALLY_FRAME_MIDDLE = 0x2,
  TALLY_FRAME_LAST = 0x3,
  TALLY_FRAME_ONLY = 0x4,
} TallyFrameKind;

/* Fragments @len bytes into a GPtrArray of GBytes, each at most @mtu bytes.
 * INVALID_ARGUMENT for an empty message or an MTU out of range,
 * FRAME_OVERSIZE above @max_message. */
GPtrArray *tally_frame_split (const guint8 *msg,
                              gsize len,
                              gsize mtu,
                              gsize max_message,
                              GError **error);

typedef struct _TallyReassembler TallyReassembler;

TallyReassembler *tally_reassembler_new (gsize max_message, guint timeout_ms);
void tally_reassembler_free (TallyReassembler *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyReassembler, tally_reassembler_free)

/*
 * Feeds one fragment received at @now_us (monotonic microseconds).
 * Returns TRUE and sets *message when a message completes (the fragment, or
 * the held ones it released, placed its LAST), TRUE with *message NULL while
 * more fragments are due, FALSE on error: FRAME_UNKNOWN (kind, or a second
 * FIRST/ONLY/LAST, or a fragment after the LAST), FRAME_OVERSIZE (more data
 * than announced or allowed), FRAME_TRUNCATED (short fragment, sequence
 * outside the window or repeated, LAST ending early, zero length) or
 * FRAME_TIMEOUT.  After an error the reassembler is empty again.
 */
gboolean tally_reassembler_push (TallyReassembler *r,
                                 const guint8 *fragment,
                                 gsize len,
                                 gint64 now_us,
                                 GBytes **message,
                                 GError **error);

/* FRAME_TIMEOUT when a partial message is older than the timeout, counted
 * from the arrival of its first fragment, whichever that was. */
gboolean tally_reassembler_check (TallyReassembler *r, gint64 now_us, GError **error);
/* TRUE while any fragment of an unfinished message is held. */
gboolean tally_reassembler_is_busy (TallyReassembler *r);

G_END_DECLS
