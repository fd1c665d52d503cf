/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Local stream transport: a TallyLink over a byte stream.
 *
 * Addresses: "unix:/path/to/socket" or "tcp:127.0.0.1:7000" (loopback or any
 * host:port GIO accepts).  On a byte stream each fragment travels as a
 * big-endian u16 length followed by the fragment.
 */

#include <gio/gio.h>

#include "tally-link.h"

G_BEGIN_DECLS

#define TALLY_STREAM_DEFAULT_MTU 244
/* Connections a listener holds at once unless told otherwise. */
#define TALLY_STREAM_DEFAULT_MAX_CONNECTIONS 64
/* Connections the kernel queues for accept () (listen (2) backlog). */
#define TALLY_STREAM_LISTEN_BACKLOG 128

TallyLink *tally_stream_link_new (GIOStream *stream, gsize mtu, const char *peer);

typedef struct _TallyStreamListener TallyStreamListener;
/* @link is borrowed: take a reference to keep it; the connection closes
 * when nobody does. */
typedef void (*TallyStreamAcceptFunc) (TallyStreamListener *listener,
                                       TallyLink *link,
                                       gpointer user_data);
/* @destroy (may be NULL) gets @user_data when the listener is freed; a
 * listener that fails to start never owned it. */
TallyStreamListener *tally_stream_listener_new (const char *address,
                                                gsize mtu,
                                                TallyStreamAcceptFunc on_accept,
                                                gpointer user_data,
                                                GDestroyNotify destroy,
                                                GError **error);
/* A listener holds at most @max_connections connections: at the cap it
 * stops accepting until one closes, and new ones wait in the kernel's
 * backlog.  A failure to accept (out of file descriptors: EMFILE, ENFILE)
 * pauses accepting for a quarter of a second.  Either is logged at most
 * once per 10 seconds, with a count.  Memory per connection is bounded:
 * a 4 KiB read buffer, at most one fragment (the MTU) of unparsed input,
 * and at most 1 MiB of queued output. */
void tally_stream_listener_set_max_connections (TallyStreamListener *listener,
                                                guint max_connections);
/* Connections accepted and not yet closed. */
guint tally_stream_listener_get_connections (TallyStreamListener *listener);
/* The address actually bound (a tcp port of 0 is resolved). */
const char *tally_stream_listener_get_address (TallyStreamListener *listener);
TallyStreamListener *tally_stream_listener_ref (TallyStreamListener *listener);
void tally_stream_listener_unref (TallyStreamListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyStreamListener, tally_stream_listener_unref)

void tally_stream_connect_async (const char *address,
                                 gsize mtu,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data);
TallyLink *tally_stream_connect_finish (GAsyncResult *result, GError **error);

G_END_DECLS
