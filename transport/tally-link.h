/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A link carries fragments between two peers: one write direction and one
 * notify direction, as a GATT characteristic pair does.  Implementations:
 * a local stream (UNIX socket or TCP on loopback), an in-memory pair for
 * tests, and BLE GATT.  A TallyChannel turns a link into a message pipe
 * with framing, reassembly and its timeout.
 *
 * Links and channels live on the thread-default GMainContext of the thread
 * that created them; callbacks run there.
 */

#include <gio/gio.h>

#include "tally-frame.h"

G_BEGIN_DECLS

typedef struct _TallyLink TallyLink;

typedef void (*TallyLinkFragmentFunc) (TallyLink *link,
                                       const guint8 *data,
                                       gsize len,
                                       gpointer user_data);
/* @error is NULL for an orderly close by the peer. */
typedef void (*TallyLinkClosedFunc) (TallyLink *link, const GError *error, gpointer user_data);

typedef struct
{
  /* Queues one fragment (len <= mtu) towards the peer. */
  gboolean (*send) (TallyLink *link, const guint8 *data, gsize len, GError **error);
  /* Stops I/O; no callback fires afterwards. */
  void (*close) (TallyLink *link);
  void (*destroy) (TallyLink *link);
} TallyLinkOps;

/* For implementations. */
TallyLink *tally_link_new (const TallyLinkOps *ops, gsize mtu, const char *peer, gpointer impl);
gpointer tally_link_get_impl (TallyLink *link);
void tally_link_deliver (TallyLink *link, const guint8 *data, gsize len);
void tally_link_closed (TallyLink *link, const GError *error);

/* For users. */
TallyLink *tally_link_ref (TallyLink *link);
void tally_link_unref (TallyLink *link);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyLink, tally_link_unref)
void tally_link_set_handlers (TallyLink *link,
                              TallyLinkFragmentFunc on_fragment,
                              TallyLinkClosedFunc on_closed,
                              gpointer user_data);
gboolean tally_link_send (TallyLink *link, const guint8 *data, gsize len, GError **error);
void tally_link_close (TallyLink *link);
gsize tally_link_get_mtu (TallyLink *link);
void tally_link_set_mtu (TallyLink *link, gsize mtu);
const char *tally_link_get_peer (TallyLink *link);

/* In-memory pair: what one side sends, the other receives from an idle
 * callback on the current thread-default main context. */
void tally_mem_link_pair (gsize mtu, TallyLink **a, TallyLink **b);

/* --- local stream transport ---
 *
 * Addresses: "unix:/path/to/socket" or "tcp:127.0.0.1:7000" (loopback or any
 * host:port GIO accepts).  On a byte stream each fragment travels as a
 * big-endian u16 length followed by the fragment.
 */
#define TALLY_STREAM_DEFAULT_MTU 244

TallyLink *tally_stream_link_new (GIOStream *stream, gsize mtu, const char *peer);

typedef struct _TallyStreamListener TallyStreamListener;
typedef void (*TallyStreamAcceptFunc) (TallyStreamListener *listener,
                                       TallyLink *link,
                                       gpointer user_data);
TallyStreamListener *tally_stream_listener_new (const char *address,
                                                gsize mtu,
                                                TallyStreamAcceptFunc on_accept,
                                                gpointer user_data,
                                                GError **error);
/* The address actually bound (a tcp port of 0 is resolved). */
const char *tally_stream_listener_get_address (TallyStreamListener *listener);
void tally_stream_listener_free (TallyStreamListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyStreamListener, tally_stream_listener_free)

void tally_stream_connect_async (const char *address,
                                 gsize mtu,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data);
TallyLink *tally_stream_connect_finish (GAsyncResult *result, GError **error);

/* --- channel: messages over a link --- */

typedef struct _TallyChannel TallyChannel;

typedef void (*TallyChannelMessageFunc) (TallyChannel *channel, GBytes *message, gpointer user_data);
/* Reassembly errors, timeouts and link closure; @error NULL for an orderly
 * close.  The channel is closed when this runs. */
typedef void (*TallyChannelClosedFunc) (TallyChannel *channel,
                                        const GError *error,
                                        gpointer user_data);

/* Takes a reference on @link. */
TallyChannel *tally_channel_new (TallyLink *link, gsize max_message, guint timeout_ms);
void tally_channel_free (TallyChannel *channel);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyChannel, tally_channel_free)
void tally_channel_set_handlers (TallyChannel *channel,
                                 TallyChannelMessageFunc on_message,
                                 TallyChannelClosedFunc on_closed,
                                 gpointer user_data);
gboolean tally_channel_send (TallyChannel *channel, GBytes *message, GError **error);
void tally_channel_close (TallyChannel *channel);
TallyLink *tally_channel_get_link (TallyChannel *channel);

G_END_DECLS
