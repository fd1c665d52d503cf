/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-memlink.h"

typedef struct _MemPair MemPair;

typedef struct
{
  MemPair *pair;
  TallyLink *link; /* NULL once destroyed */
  gboolean stopped; /* this end's I/O stopped */
  /* Inbound, from the other end. */
  GQueue inbox; /* GBytes */
  gboolean peer_closed;
  GSource *idle;
} MemEnd;

struct _MemPair
{
  gint ref_count;
  GMainContext *context;
  MemEnd ends[2];
};

static MemEnd *
mem_other (MemEnd *end)
{
  MemPair *pair = end->pair;

  return end == &pair->ends[0] ? &pair->ends[1] : &pair->ends[0];
}

static void
mem_end_cancel_idle (MemEnd *end)
{
  if (end->idle != NULL) {
    g_source_destroy (end->idle);
    g_clear_pointer (&end->idle, g_source_unref);
  }
}

static gboolean
mem_dispatch_cb (gpointer user_data)
{
  MemEnd *end = user_data;
  g_autoptr (TallyLink) link = tally_link_ref (end->link);

  g_clear_pointer (&end->idle, g_source_unref);

  /* Each callback may close or drop this end; re-check before the next. */
  while (!end->stopped && !g_queue_is_empty (&end->inbox)) {
    g_autoptr (GBytes) fragment = g_queue_pop_head (&end->inbox);
    gsize len;
    const guint8 *data = g_bytes_get_data (fragment, &len);

    tally_link_deliver (link, data, len);
  }
  if (!end->stopped && end->peer_closed)
    tally_link_closed (link, NULL);
  return G_SOURCE_REMOVE;
}

static void
mem_end_schedule (MemEnd *end)
{
  if (end->idle != NULL || end->stopped || end->link == NULL)
    return;
  end->idle = g_idle_source_new ();
  g_source_set_callback (end->idle, mem_dispatch_cb, end, NULL);
  g_source_set_static_name (end->idle, "[tally] mem link");
  g_source_attach (end->idle, end->pair->context);
}

static gboolean
mem_send (TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  MemEnd *end = tally_link_get_impl (link);
  MemEnd *other = mem_other (end);

  if (other->stopped) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "peer %s has closed the link",
                 tally_link_get_peer (link));
    return FALSE;
  }
  g_queue_push_tail (&other->inbox, g_bytes_new (data, len));
  mem_end_schedule (other);
  return TRUE;
}

static void
mem_close (TallyLink *link)
{
  MemEnd *end = tally_link_get_impl (link);
  MemEnd *other = mem_other (end);

  if (end->stopped)
    return;
  end->stopped = TRUE;
  mem_end_cancel_idle (end);
  g_queue_clear_full (&end->inbox, (GDestroyNotify) g_bytes_unref);

  /* Like a socket: what was sent before the close still arrives first. */
  if (!other->stopped) {
    other->peer_closed = TRUE;
    mem_end_schedule (other);
  }
}

static void
mem_pair_unref (MemPair *pair)
{
  if (--pair->ref_count > 0)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (pair->ends); i++) {
    mem_end_cancel_idle (&pair->ends[i]);
    g_queue_clear_full (&pair->ends[i].inbox, (GDestroyNotify) g_bytes_unref);
  }
  g_main_context_unref (pair->context);
  g_free (pair);
}

static void
mem_destroy (TallyLink *link)
{
  MemEnd *end = tally_link_get_impl (link);

  end->stopped = TRUE;
  mem_end_cancel_idle (end);
  end->link = NULL;
  mem_pair_unref (end->pair);
}

static const TallyLinkOps mem_link_ops = {
  .send = mem_send,
  .close = mem_close,
  .destroy = mem_destroy,
};

void
tally_mem_link_pair (gsize mtu, TallyLink **a, TallyLink **b)
{
  MemPair *pair;

  g_return_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU);
  g_return_if_fail (a != NULL && b != NULL);

  pair = g_new0 (MemPair, 1);
  pair->ref_count = 2;
  pair->context = g_main_context_ref_thread_default ();
  for (guint i = 0; i < G_N_ELEMENTS (pair->ends); i++) {
    pair->ends[i].pair = pair;
    g_queue_init (&pair->ends[i].inbox);
  }
  pair->ends[0].link = tally_link_new (&mem_link_ops, mtu, "mem:b", &pair->ends[0]);
  pair->ends[1].link = tally_link_new (&mem_link_ops, mtu, "mem:a", &pair->ends[1]);
  *a = pair->ends[0].link;
  *b = pair->ends[1].link;
}
