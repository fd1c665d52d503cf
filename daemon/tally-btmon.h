/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tallyd's log lines in the Bluetooth monitor: btmon prints them between
 * the HCI packets they explain ("= tallyd: ...") and saves them in its
 * btsnoop file.  docs/btmon.md has the workflow.
 *
 * A process bound to the kernel's HCI logging channel (CAP_NET_ADMIN) sends
 * one frame per datagram; the kernel checks it and hands it to every
 * monitor socket as a "user logging" packet.  The frame, as
 * hci_logging_frame() in net/bluetooth/hci_sock.c checks it, all integers
 * little-endian:
 *
 *   u16 opcode     0x0000
 *   u16 index      controller index, 0xffff for none
 *   u16 len        bytes after these 6
 *   u8  priority   syslog level, 0 (emergency) .. 7 (debug)
 *   u8  ident_len  bytes of ident including its NUL
 *   ident          NUL-terminated
 *   message        NUL-terminated, the frame's last byte
 *
 * Sending never blocks and never logs: a line the kernel does not take is
 * counted and dropped, so this is safe inside a GLogWriterFunc.
 */

#include <glib.h>

G_BEGIN_DECLS

#define TALLY_BTMON_INDEX_NONE  0xffff
#define TALLY_BTMON_HEADER_SIZE 6
/* HCI_MAX_FRAME_SIZE (HCI_MAX_ACL_SIZE + 4, include/net/bluetooth/hci.h):
 * the largest datagram an HCI socket accepts. */
#define TALLY_BTMON_FRAME_MAX   1028
/* ident_len is one byte and counts the NUL. */
#define TALLY_BTMON_IDENT_MAX   254

/*
 * Builds the frame for one log line into @frame and returns its length.
 * @priority is clamped to 0..7; a NULL @ident or @message counts as empty.
 * Trailing newlines of @message are dropped (btmon ends every line itself).
 * An ident longer than TALLY_BTMON_IDENT_MAX bytes, or a message that
 * would make the frame exceed TALLY_BTMON_FRAME_MAX, is cut at a UTF-8
 * character boundary.  Pure: no I/O.
 */
gsize tally_btmon_frame_encode (guint8 frame[static TALLY_BTMON_FRAME_MAX],
                                guint16 index,
                                int priority,
                                const char *ident,
                                const char *message);

/* The syslog priority GLib's journald writer gives @level (error 3,
 * critical and warning 4, message 5, info 6, debug 7). */
int tally_btmon_priority_from_log_level (GLogLevelFlags level);

typedef struct _TallyBtmon TallyBtmon;

/*
 * Opens and binds a socket on the HCI logging channel.  NOT_FOUND when the
 * kernel has no Bluetooth (no AF_BLUETOOTH) or no logging channel; FAILED
 * when the process lacks CAP_NET_ADMIN, or for any other failure, with the
 * system's message.  A caller that gets an error simply logs without btmon.
 */
TallyBtmon *tally_btmon_open (GError **error);

/* Sends to @fd, a datagram socket opened elsewhere (a test's socketpair, a
 * socket handed over by a service manager); takes it and makes it
 * non-blocking. */
TallyBtmon *tally_btmon_new_for_fd (int fd);

void tally_btmon_free (TallyBtmon *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyBtmon, tally_btmon_free)

/* Sends one line for no particular controller.  @m may be NULL (nothing
 * is sent), so a log writer can call it unconditionally. */
void tally_btmon_log (TallyBtmon *m, int priority, const char *ident, const char *message);

/*
 * Sends one structured GLib log record: its MESSAGE, prefixed with
 * "GLIB_DOMAIN: " when the domain is not @ident, at the priority of
 * @level.  For a GLogWriterFunc; @m may be NULL.
 */
void tally_btmon_log_fields (TallyBtmon *m,
                             const char *ident,
                             GLogLevelFlags level,
                             const GLogField *fields,
                             gsize n_fields);

/* Lines the kernel did not take (a full socket buffer, an error). */
guint tally_btmon_get_dropped (TallyBtmon *m);

G_END_DECLS
