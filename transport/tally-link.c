/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-link.h"

#include <string.h>

/*
 * Fragments and a peer's close that arrive before the user has set handlers
 * (between tally_stream_connect_finish() and tally_channel_set_handlers(), for
 * instance) are held and replayed from an idle callback once handlers are
 * set.  The bound keeps a peer from filling memory while nobody listens.
 */
#define LINK_HELD_MAX_BYTES (256 * 1024)

typedef enum
{
  /* I/O running. */
  LINK_OPEN,
  /* The peer closed or I/O failed; the report waits for handlers or for held
   * fragments to be replayed. */
  LINK_CLOSE_HELD,
  /* Closed and reported (or closed by the user): no callback fires. */
  LINK_CLOSED,
} LinkState;

struct _TallyLink
{
  gint ref_count;
  LinkState state;
  const TallyLinkOps *ops;
  gpointer impl;
  gsize mtu;
  char *peer;
  GMainContext *context;

  TallyLinkFragmentFunc on_fragment;
  TallyLinkClosedFunc on_closed;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
  gboolean has_handlers;

  GQueue held;       /* GBytes */
  gsize held_bytes;
  GError *held_error; /* for LINK_CLOSE_HELD; NULL for an orderly close */
  GSource *replay_source;
};

static const char *
link_state_to_string (LinkState state)
{
  switch (state) {
  case LINK_OPEN: return "open";
  case LINK_CLOSE_HELD: return "close-held";
  case LINK_CLOSED: return "closed";
  }
  return "unknown";
}

static void
link_drop_held (TallyLink *link)
{
  g_queue_clear_full (&link->held, (GDestroyNotify) g_bytes_unref);
  link->held_bytes = 0;
  g_clear_error (&link->held_error);
  if (link->replay_source != NULL) {
    g_source_destroy (link->replay_source);
    g_clear_pointer (&link->replay_source, g_source_unref);
  }
}

static void
link_enter_state (TallyLink *link, LinkState state)
{
  g_debug ("link %s: %s -> %s", link->peer, link_state_to_string (link->state),
           link_state_to_string (state));

  switch (state) {
  case LINK_OPEN:
    break;
  case LINK_CLOSE_HELD:
    break;
  case LINK_CLOSED:
    link_drop_held (link);
    break;
  }
  link->state = state;
}

/* Called on every transition out of LINK_OPEN, hence exactly once. */
static void
link_stop_io (TallyLink *link)
{
  link->ops->close (link);
}

TallyLink *
tally_link_new (const TallyLinkOps *ops, gsize mtu, const char *peer, gpointer impl)
{
  TallyLink *link;

  g_return_val_if_fail (ops != NULL && ops->send != NULL && ops->close != NULL, NULL);
  g_return_val_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU, NULL);

  link = g_new0 (TallyLink, 1);
  link->ref_count = 1;
  link->state = LINK_OPEN;
  link->ops = ops;
  link->impl = impl;
  link->mtu = mtu;
  link->peer = g_strdup (peer != NULL ? peer : "unknown");
  link->context = g_main_context_ref_thread_default ();
  g_queue_init (&link->held);
  g_debug ("link %s: created, MTU %" G_GSIZE_FORMAT, link->peer, mtu);
  return link;
}

gpointer
tally_link_get_impl (TallyLink *link)
{
  g_return_val_if_fail (link != NULL, NULL);

  return link->impl;
}

TallyLink *
tally_link_ref (TallyLink *link)
{
  g_return_val_if_fail (link != NULL, NULL);

  g_atomic_int_inc (&link->ref_count);
  return link;
}

void
tally_link_unref (TallyLink *link)
{
  if (link == NULL)
    return;
  if (!g_atomic_int_dec_and_test (&link->ref_count))
    return;

  tally_link_close (link);
  if (link->ops->destroy != NULL)
    link->ops->destroy (link);
  if (link->user_data_destroy != NULL)
    link->user_data_destroy (link->user_data);
  g_main_context_unref (link->context);
  g_free (link->peer);
  g_free (link);
}

static void
link_call_fragment (TallyLink *link, const guint8 *data, gsize len)
{
  tally_link_ref (link);
  link->on_fragment (link, data, len, link->user_data);
  tally_link_unref (link);
}

static void
link_report_closed (TallyLink *link, const GError *error)
{
  TallyLinkClosedFunc on_closed = link->on_closed;
  gpointer user_data = link->user_data;
  g_autoptr (GError) copy = error != NULL ? g_error_copy (error) : NULL;

  link_enter_state (link, LINK_CLOSED);
  if (on_closed != NULL) {
    tally_link_ref (link);
    on_closed (link, copy, user_data);
    tally_link_unref (link);
  }
}

static gboolean
link_replay_cb (gpointer user_data)
{
  TallyLink *link = user_data;

  g_clear_pointer (&link->replay_source, g_source_unref);
  tally_link_ref (link);

  while (link->has_handlers && !g_queue_is_empty (&link->held) && link->state != LINK_CLOSED) {
    g_autoptr (GBytes) fragment = g_queue_pop_head (&link->held);
    gsize len;
    const guint8 *data = g_bytes_get_data (fragment, &len);

    link->held_bytes -= len;
    if (link->on_fragment != NULL)
      link_call_fragment (link, data, len);
  }

  if (link->has_handlers && g_queue_is_empty (&link->held)) {
    switch (link->state) {
    case LINK_OPEN:
      break;
    case LINK_CLOSE_HELD: {
      g_autoptr (GError) error = g_steal_pointer (&link->held_error);

      link_report_closed (link, error);
      break;
    }
    case LINK_CLOSED:
      break;
    }
  }

  tally_link_unref (link);
  return G_SOURCE_REMOVE;
}

static void
link_schedule_replay (TallyLink *link)
{
  if (link->replay_source != NULL)
    return;
  link->replay_source = g_idle_source_new ();
  g_source_set_callback (link->replay_source, link_replay_cb, link, NULL);
  g_source_set_static_name (link->replay_source, "[tally] link replay");
  g_source_attach (link->replay_source, link->context);
}

static gboolean
link_must_hold (TallyLink *link)
{
  return !link->has_handlers || !g_queue_is_empty (&link->held);
}

void
tally_link_deliver (TallyLink *link, const guint8 *data, gsize len)
{
  g_return_if_fail (link != NULL);
  g_return_if_fail (data != NULL || len == 0);

  switch (link->state) {
  case LINK_OPEN:
    break;
  case LINK_CLOSE_HELD:
  case LINK_CLOSED:
    return;
  }

  if (link_must_hold (link)) {
    if (link->held_bytes + len > LINK_HELD_MAX_BYTES) {
      g_autoptr (GError) error = NULL;

      error = g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                           "peer %s sent more than %d bytes before the link was read", link->peer,
                           LINK_HELD_MAX_BYTES);
      tally_link_closed (link, error);
      return;
    }
    g_queue_push_tail (&link->held, g_bytes_new (data, len));
    link->held_bytes += len;
    return;
  }

  if (link->on_fragment != NULL)
    link_call_fragment (link, data, len);
}

void
tally_link_closed (TallyLink *link, const GError *error)
{
  g_return_if_fail (link != NULL);

  switch (link->state) {
  case LINK_OPEN:
    break;
  case LINK_CLOSE_HELD:
  case LINK_CLOSED:
    return;
  }

  if (error != NULL)
    g_debug ("link %s: closed: %s", link->peer, error->message);
  else
    g_debug ("link %s: closed by the peer", link->peer);

  if (link_must_hold (link)) {
    link->held_error = error != NULL ? g_error_copy (error) : NULL;
    link_enter_state (link, LINK_CLOSE_HELD);
    link_stop_io (link);
    return;
  }

  /* Stop I/O before the report, so the user may free the link from it. */
  tally_link_ref (link);
  link_enter_state (link, LINK_CLOSE_HELD);
  link_stop_io (link);
  link_report_closed (link, error);
  tally_link_unref (link);
}

void
tally_link_set_handlers (TallyLink *link,
                         TallyLinkFragmentFunc on_fragment,
                         TallyLinkClosedFunc on_closed,
                         gpointer user_data,
                         GDestroyNotify destroy)
{
  GDestroyNotify old_destroy;
  gpointer old_user_data;

  g_return_if_fail (link != NULL);

  old_destroy = link->user_data_destroy;
  old_user_data = link->user_data;
  link->on_fragment = on_fragment;
  link->on_closed = on_closed;
  link->user_data = user_data;
  link->user_data_destroy = destroy;
  link->has_handlers = on_fragment != NULL || on_closed != NULL;

  switch (link->state) {
  case LINK_OPEN:
    if (link->has_handlers && !g_queue_is_empty (&link->held))
      link_schedule_replay (link);
    break;
  case LINK_CLOSE_HELD:
    if (link->has_handlers)
      link_schedule_replay (link);
    break;
  case LINK_CLOSED:
    break;
  }

  /* Last: the old user data may hold the caller's reference. */
  if (old_destroy != NULL)
    old_destroy (old_user_data);
}

gboolean
tally_link_send (TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  g_return_val_if_fail (link != NULL, FALSE);
  g_return_val_if_fail (data != NULL && len > 0, FALSE);
  g_return_val_if_fail (len <= link->mtu, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (link->state) {
  case LINK_OPEN:
    break;
  case LINK_CLOSE_HELD:
  case LINK_CLOSED:
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "link to %s is closed",
                 link->peer);
    return FALSE;
  }
  return link->ops->send (link, data, len, error);
}

void
tally_link_close (TallyLink *link)
{
  g_return_if_fail (link != NULL);

  switch (link->state) {
  case LINK_OPEN:
    link_enter_state (link, LINK_CLOSED);
    link_stop_io (link);
    break;
  case LINK_CLOSE_HELD:
    link_enter_state (link, LINK_CLOSED);
    break;
  case LINK_CLOSED:
    break;
  }
}

gsize
tally_link_get_mtu (TallyLink *link)
{
  g_return_val_if_fail (link != NULL, 0);

  return link->mtu;
}

void
tally_link_set_mtu (TallyLink *link, gsize mtu)
{
  g_return_if_fail (link != NULL);
  g_return_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU);

  if (link->mtu != mtu)
    g_debug ("link %s: MTU %" G_GSIZE_FORMAT " -> %" G_GSIZE_FORMAT, link->peer, link->mtu, mtu);
  link->mtu = mtu;
}

const char *
tally_link_get_peer (TallyLink *link)
{
  g_return_val_if_fail (link != NULL, NULL);

  return link->peer;
}
