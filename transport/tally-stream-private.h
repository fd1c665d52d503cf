/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the stream link (tally-stream.c) and its listener
 * (tally-stream-listener.c) share.  Not for other files.
 */

#include "tally-stream.h"

G_BEGIN_DECLS

typedef enum
{
  ADDRESS_UNIX,
  ADDRESS_TCP,
} AddressKind;

typedef struct
{
  AddressKind kind;
  char *path; /* ADDRESS_UNIX */
  char *host; /* ADDRESS_TCP, without IPv6 brackets */
  guint16 port;
} StreamAddress;

void tally_stream_address_clear (StreamAddress *addr);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (StreamAddress, tally_stream_address_clear)
/* unix:PATH or tcp:HOST:PORT (a port of 0 only with @allow_port_zero). */
gboolean tally_stream_address_parse (const char *address,
                                     gboolean allow_port_zero,
                                     StreamAddress *out,
                                     GError **error);
/* "tcp:HOST:PORT", IPv6 hosts in brackets. */
char *tally_stream_inet_address_describe (GInetSocketAddress *addr);
/* Maps a GIO failure onto the TALLY_ERROR code callers act on. */
void tally_stream_propagate_gio_error (GError **error, GError *gio_error, const char *what);

/* Live connections of one listener, shared with its links (which may
 * outlive it). */
typedef struct
{
  guint live;
  void (*released) (gpointer user_data); /* a connection went; NULL once the listener is gone */
  gpointer user_data;
} ConnectionCount;

void tally_stream_connection_count_release (ConnectionCount *count);
/* @link (a stream link) is counted in @count until its state is freed. */
void tally_stream_link_count (TallyLink *link, ConnectionCount *count);

G_END_DECLS
