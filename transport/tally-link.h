/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A link carries fragments between two peers: one write direction and one
 * notify direction, as a GATT characteristic pair does.  Implementations:
 * a local stream (tally-stream.h), an in-memory pair for tests
 * (tally-memlink.h), and BLE GATT (tally-gatt.h).  A TallyChannel
 * (tally-channel.h) turns a link into a message pipe with framing,
 * reassembly and its timeout.
 *
 * Lifetimes (docs/hacking.md): a link is reference counted; handlers come
 * as (callbacks, user_data, destroy) and destroy runs when they are
 * replaced or the link is freed.  A link lives on the thread-default
 * GMainContext of the thread that created it: its sources are attached
 * there and its callbacks run there, each with a reference held, so a
 * callback may drop the last reference of its own.
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
/* @destroy (may be NULL) gets @user_data when the handlers are replaced or
 * the link is freed. */
void tally_link_set_handlers (TallyLink *link,
                              TallyLinkFragmentFunc on_fragment,
                              TallyLinkClosedFunc on_closed,
                              gpointer user_data,
                              GDestroyNotify destroy);
gboolean tally_link_send (TallyLink *link, const guint8 *data, gsize len, GError **error);
void tally_link_close (TallyLink *link);
gsize tally_link_get_mtu (TallyLink *link);
void tally_link_set_mtu (TallyLink *link, gsize mtu);
const char *tally_link_get_peer (TallyLink *link);

G_END_DECLS
