/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-channel.h"

typedef enum
{
  CHANNEL_OPEN,
  CHANNEL_CLOSED,
} ChannelState;

struct _TallyChannel
{
  gint ref_count;
  ChannelState state;
  TallyLink *link;
  TallyReassembler *reassembler;
  gsize max_message;
  guint timeout_ms;
  GMainContext *context;
  GSource *timeout_source;

  TallyChannelMessageFunc on_message;
  TallyChannelClosedFunc on_closed;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
  gboolean attached; /* link handlers point at this channel */
};

static const char *
channel_state_to_string (ChannelState state)
{
  switch (state) {
  case CHANNEL_OPEN: return "open";
  case CHANNEL_CLOSED: return "closed";
  }
  return "unknown";
}

static void
channel_disarm_timeout (TallyChannel *channel)
{
  if (channel->timeout_source != NULL) {
    g_source_destroy (channel->timeout_source);
    g_clear_pointer (&channel->timeout_source, g_source_unref);
  }
}

static void
channel_enter_state (TallyChannel *channel, ChannelState state)
{
  g_debug ("channel %s: %s -> %s", tally_link_get_peer (channel->link),
           channel_state_to_string (channel->state), channel_state_to_string (state));
  channel->state = state;

  switch (state) {
  case CHANNEL_OPEN:
    break;
  case CHANNEL_CLOSED:
    channel_disarm_timeout (channel);
    if (channel->attached) {
      tally_link_set_handlers (channel->link, NULL, NULL, NULL, NULL);
      channel->attached = FALSE;
    }
    tally_link_close (channel->link);
    break;
  }
}

/* Closes and reports @error (NULL: orderly) exactly once. */
static void
channel_finish (TallyChannel *channel, const GError *error)
{
  switch (channel->state) {
  case CHANNEL_OPEN:
    break;
  case CHANNEL_CLOSED:
    return;
  }

  if (error != NULL)
    g_info ("channel %s: closing: %s", tally_link_get_peer (channel->link), error->message);
  channel_enter_state (channel, CHANNEL_CLOSED);
  if (channel->on_closed != NULL) {
    tally_channel_ref (channel);
    channel->on_closed (channel, error, channel->user_data);
    tally_channel_unref (channel);
  }
}

static gboolean
channel_timeout_cb (gpointer user_data)
{
  TallyChannel *channel = user_data;
  g_autoptr (GError) error = NULL;

  g_clear_pointer (&channel->timeout_source, g_source_unref);

  if (!tally_reassembler_check (channel->reassembler, g_get_monotonic_time (), &error)) {
    channel_finish (channel, error);
    return G_SOURCE_REMOVE;
  }
  /* The clock may read exactly the deadline; look again shortly. */
  if (tally_reassembler_is_busy (channel->reassembler)) {
    channel->timeout_source = g_timeout_source_new (1);
    g_source_set_callback (channel->timeout_source, channel_timeout_cb, channel, NULL);
    g_source_set_static_name (channel->timeout_source, "[tally] reassembly timeout");
    g_source_attach (channel->timeout_source, channel->context);
  }
  return G_SOURCE_REMOVE;
}

/* Armed when a message starts, so it fires once its deadline has passed. */
static void
channel_arm_timeout (TallyChannel *channel)
{
  channel_disarm_timeout (channel);
  channel->timeout_source = g_timeout_source_new (channel->timeout_ms + 1);
  g_source_set_callback (channel->timeout_source, channel_timeout_cb, channel, NULL);
  g_source_set_static_name (channel->timeout_source, "[tally] reassembly timeout");
  g_source_attach (channel->timeout_source, channel->context);
}

static void
channel_link_fragment_cb (TallyLink *link, const guint8 *data, gsize len, gpointer user_data)
{
  TallyChannel *channel = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = NULL;
  gboolean was_busy;

  switch (channel->state) {
  case CHANNEL_OPEN:
    break;
  case CHANNEL_CLOSED:
    return;
  }

  was_busy = tally_reassembler_is_busy (channel->reassembler);
  if (!tally_reassembler_push (channel->reassembler, data, len, g_get_monotonic_time (), &message,
                               &error)) {
    channel_finish (channel, error);
    return;
  }

  if (!tally_reassembler_is_busy (channel->reassembler))
    channel_disarm_timeout (channel);
  else if (!was_busy)
    channel_arm_timeout (channel);

  if (message != NULL && channel->on_message != NULL) {
    tally_channel_ref (channel);
    channel->on_message (channel, message, channel->user_data);
    tally_channel_unref (channel);
  }
}

static void
channel_link_closed_cb (TallyLink *link, const GError *error, gpointer user_data)
{
  TallyChannel *channel = user_data;
  g_autoptr (GError) truncated = NULL;

  switch (channel->state) {
  case CHANNEL_OPEN:
    break;
  case CHANNEL_CLOSED:
    return;
  }

  /* The link is closed already; the channel only reports. */
  channel->attached = FALSE;
  if (error == NULL && tally_reassembler_is_busy (channel->reassembler))
    truncated = g_error_new (TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED,
                             "%s closed the link in the middle of a message",
                             tally_link_get_peer (link));
  channel_finish (channel, truncated != NULL ? truncated : error);
}

TallyChannel *
tally_channel_new (TallyLink *link, gsize max_message, guint timeout_ms)
{
  TallyChannel *channel;

  g_return_val_if_fail (link != NULL, NULL);
  g_return_val_if_fail (max_message > 0, NULL);
  g_return_val_if_fail (timeout_ms > 0, NULL);

  channel = g_new0 (TallyChannel, 1);
  channel->ref_count = 1;
  channel->state = CHANNEL_OPEN;
  channel->link = tally_link_ref (link);
  channel->reassembler = tally_reassembler_new (max_message, timeout_ms);
  channel->max_message = max_message;
  channel->timeout_ms = timeout_ms;
  channel->context = g_main_context_ref_thread_default ();
  return channel;
}

TallyChannel *
tally_channel_ref (TallyChannel *channel)
{
  g_return_val_if_fail (channel != NULL, NULL);

  g_atomic_int_inc (&channel->ref_count);
  return channel;
}

void
tally_channel_unref (TallyChannel *channel)
{
  if (channel == NULL)
    return;
  if (!g_atomic_int_dec_and_test (&channel->ref_count))
    return;

  tally_channel_close (channel);
  if (channel->user_data_destroy != NULL)
    channel->user_data_destroy (channel->user_data);
  tally_link_unref (channel->link);
  tally_reassembler_free (channel->reassembler);
  g_main_context_unref (channel->context);
  g_free (channel);
}

/* The link is read only once handlers exist, so nothing that arrives in
 * between is lost: the link holds it until then. */
void
tally_channel_set_handlers (TallyChannel *channel,
                            TallyChannelMessageFunc on_message,
                            TallyChannelClosedFunc on_closed,
                            gpointer user_data,
                            GDestroyNotify destroy)
{
  GDestroyNotify old_destroy;
  gpointer old_user_data;

  g_return_if_fail (channel != NULL);

  old_destroy = channel->user_data_destroy;
  old_user_data = channel->user_data;
  channel->on_message = on_message;
  channel->on_closed = on_closed;
  channel->user_data = user_data;
  channel->user_data_destroy = destroy;

  switch (channel->state) {
  case CHANNEL_OPEN:
    if (!channel->attached) {
      channel->attached = TRUE;
      tally_link_set_handlers (channel->link, channel_link_fragment_cb, channel_link_closed_cb,
                               channel, NULL);
    }
    break;
  case CHANNEL_CLOSED:
    break;
  }

  /* Last: the old user data may hold the caller's reference. */
  if (old_destroy != NULL)
    old_destroy (old_user_data);
}

gboolean
tally_channel_send (TallyChannel *channel, GBytes *message, GError **error)
{
  g_autoptr (GPtrArray) fragments = NULL;
  gsize len;
  const guint8 *data;

  g_return_val_if_fail (channel != NULL, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (channel->state) {
  case CHANNEL_OPEN:
    break;
  case CHANNEL_CLOSED:
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "channel to %s is closed",
                 tally_link_get_peer (channel->link));
    return FALSE;
  }

  data = g_bytes_get_data (message, &len);
  fragments = tally_frame_split (data, len, tally_link_get_mtu (channel->link),
                                 channel->max_message, error);
  if (fragments == NULL)
    return FALSE;

  for (guint i = 0; i < fragments->len; i++) {
    gsize frag_len;
    const guint8 *frag = g_bytes_get_data (g_ptr_array_index (fragments, i), &frag_len);

    if (!tally_link_send (channel->link, frag, frag_len, error))
      return FALSE;
  }
  return TRUE;
}

void
tally_channel_close (TallyChannel *channel)
{
  g_return_if_fail (channel != NULL);

  switch (channel->state) {
  case CHANNEL_OPEN:
    channel_enter_state (channel, CHANNEL_CLOSED);
    break;
  case CHANNEL_CLOSED:
    break;
  }
}

TallyLink *
tally_channel_get_link (TallyChannel *channel)
{
  g_return_val_if_fail (channel != NULL, NULL);

  return channel->link;
}

GMainContext *
tally_channel_get_context (TallyChannel *channel)
{
  g_return_val_if_fail (channel != NULL, NULL);

  return channel->context;
}
