/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Several open requests: a payer's link belongs to none of them until its
 * Hello names one by its tag (docs/protocol.md 4.2).  The router reads
 * that first message, makes the checks that come before the tag (version,
 * key, commitment, tag length: tally_session_check_hello ()), and hands
 * the link with the Hello to a handshake of the request named, whose
 * session checks the rest.  A refused link changed nothing: no request, nonce or
 * handshake was made for it.
 */
#include "tally-daemon-private.h"

#include <string.h>

#include "tally-channel.h"
#include "tally-hex.h"

typedef struct
{
  TallyDaemon *daemon;
  TallyChannel *channel;
  GSource *deadline;
  gboolean ble;
} DaemonRouter;

static void
router_free (DaemonRouter *rt)
{
  if (rt->deadline != NULL) {
    g_source_destroy (rt->deadline);
    g_source_unref (rt->deadline);
  }
  if (rt->channel != NULL) {
    tally_channel_set_handlers (rt->channel, NULL, NULL, NULL, NULL);
    tally_channel_close (rt->channel);
    tally_channel_unref (rt->channel);
  }
  g_free (rt);
}

/* Forgets @rt and returns its channel (ours to hand on). */
static TallyChannel *
router_release (DaemonRouter *rt)
{
  TallyChannel *channel = g_steal_pointer (&rt->channel);
  tally_channel_set_handlers (channel, NULL, NULL, NULL, NULL);
  g_ptr_array_remove (rt->daemon->routers, rt);
  router_free (rt);
  return channel;
}

static void
router_refuse (DaemonRouter *rt, TallyError code, const char *message)
{
  TallyLink *link = tally_channel_get_link (rt->channel);
  g_info ("refusing %s: %s (%s)",
          tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer", message,
          tally_error_to_string (code));
  tally_payment_refuse_channel (router_release (rt), code, message);
}

/* The open request the Hello in @first names; NULL after setting @error.
 * A first message that is no Hello goes to the oldest request, whose
 * session refuses it as it would with one request open.  A Hello is
 * checked as docs/protocol.md 4.2 orders it: its version, key, commitment
 * and tag length before its tag picks a request. */
static DaemonRequest *
route_pick (TallyDaemon *d, GBytes *first, GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (first, &len);
  g_autoptr (Tally__SessionMessage) m = TALLY_UNPACK (Tally__SessionMessage, tally__session_message,
                                                      data, len, "session message", NULL);

  if (m == NULL || m->msg_case != TALLY__SESSION_MESSAGE__MSG_HELLO)
    return d->requests->pdata[0];
  if (!tally_session_check_hello (m->hello, error))
    return NULL;
  /* The others ended while this link was being read: as with one open. */
  if (m->hello->request_tag.len == 0 && d->requests->len == 1)
    return d->requests->pdata[0];
  if (m->hello->request_tag.len == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REQUEST_UNNAMED,
                 "%u payment requests are open; the Hello must name one by its tag",
                 d->requests->len);
    return NULL;
  }
  for (guint i = 0; i < d->requests->len; i++) {
    DaemonRequest *r = d->requests->pdata[i];
    if (memcmp (r->tag, m->hello->request_tag.data, TALLY_GATT_TAG_BYTES) == 0)
      return r;
  }
  g_autofree char *hex = tally_hex_encode (m->hello->request_tag.data, TALLY_GATT_TAG_BYTES);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no open payment request has tag %s",
               hex);
  return NULL;
}

static void
on_router_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  DaemonRouter *rt = user_data;
  TallyDaemon *d = rt->daemon;
  g_autoptr (GError) error = NULL;

  /* The requests may have ended meanwhile. */
  if (d->requests->len == 0) {
    router_refuse (rt, TALLY_ERROR_NOT_FOUND, "no payment requested");
    return;
  }
  DaemonRequest *r = route_pick (d, message, &error);
  if (r == NULL) {
    router_refuse (rt, tally_error_code (error), error->message);
    return;
  }
  gboolean ble = rt->ble;
  TallyLink *link = tally_channel_get_link (channel);
  daemon_request_take_link (d, r, link, router_release (rt), message, ble);
}

static void
on_router_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  DaemonRouter *rt = user_data;
  g_debug ("a payer left before its Hello: %s", error ? error->message : "closed");
  g_ptr_array_remove (rt->daemon->routers, rt);
  router_free (rt);
}

static gboolean
on_router_deadline (gpointer user_data)
{
  DaemonRouter *rt = user_data;
  guint seconds = rt->daemon->hello_timeout_seconds;
  g_autofree char *message = g_strdup_printf ("no valid Hello within %u seconds", seconds);

  g_clear_pointer (&rt->deadline, g_source_unref);
  router_refuse (rt, TALLY_ERROR_TIMEOUT, message);
  return G_SOURCE_REMOVE;
}

void
daemon_route_payer (TallyDaemon *d, TallyLink *link, gboolean ble)
{
  if (d->routers->len >= TALLY_DAEMON_MAX_HANDSHAKES) {
    g_info ("refusing %s: %u payers not yet named a request",
            tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer",
            TALLY_DAEMON_MAX_HANDSHAKES);
    tally_payment_refuse_link (link, TALLY_ERROR_POLICY, "too many payers at once; try again");
    return;
  }
  DaemonRouter *rt = g_new0 (DaemonRouter, 1);
  rt->daemon = d;
  rt->ble = ble;
  rt->channel = tally_channel_new (link, TALLY_SESSION_MAX_MESSAGE, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_channel_set_handlers (rt->channel, on_router_message, on_router_closed, rt, NULL);
  rt->deadline = g_timeout_source_new_seconds (d->hello_timeout_seconds);
  g_source_set_callback (rt->deadline, on_router_deadline, rt, NULL);
  g_source_set_static_name (rt->deadline, "[tally] routing hello deadline");
  g_source_attach (rt->deadline, d->context);
  g_ptr_array_add (d->routers, rt);
}

void
daemon_routers_free (TallyDaemon *d)
{
  if (d->routers == NULL)
    return;
  while (d->routers->len > 0) {
    DaemonRouter *rt = g_ptr_array_steal_index (d->routers, d->routers->len - 1);
    router_free (rt);
  }
  g_clear_pointer (&d->routers, g_ptr_array_unref);
}
