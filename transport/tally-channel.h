/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A channel: messages over a TallyLink, with framing (tally-frame.h),
 * reassembly and its timeout.
 *
 * Reference counted like the link (docs/hacking.md, Lifetimes): handlers
 * are (callbacks, user_data, destroy), callbacks run on the thread-default
 * main context the channel was created on with a reference held, so a
 * callback may drop the last reference.  Freeing the channel closes it.
 */

#include <gio/gio.h>

#include "tally-link.h"

G_BEGIN_DECLS

typedef struct _TallyChannel TallyChannel;

typedef void (*TallyChannelMessageFunc) (TallyChannel *channel, GBytes *message, gpointer user_data);
/* Reassembly errors, timeouts and link closure; @error NULL for an orderly
 * close.  The channel is closed when this runs. */
typedef void (*TallyChannelClosedFunc) (TallyChannel *channel,
                                        const GError *error,
                                        gpointer user_data);

/* Takes a reference on @link. */
TallyChannel *tally_channel_new (TallyLink *link, gsize max_message, guint timeout_ms);
TallyChannel *tally_channel_ref (TallyChannel *channel);
void tally_channel_unref (TallyChannel *channel);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyChannel, tally_channel_unref)
/* @destroy (may be NULL) gets @user_data when the handlers are replaced or
 * the channel is freed. */
void tally_channel_set_handlers (TallyChannel *channel,
                                 TallyChannelMessageFunc on_message,
                                 TallyChannelClosedFunc on_closed,
                                 gpointer user_data,
                                 GDestroyNotify destroy);
gboolean tally_channel_send (TallyChannel *channel, GBytes *message, GError **error);
/* No callback fires afterwards. */
void tally_channel_close (TallyChannel *channel);
TallyLink *tally_channel_get_link (TallyChannel *channel);
GMainContext *tally_channel_get_context (TallyChannel *channel);

G_END_DECLS
