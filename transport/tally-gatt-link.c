/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-link.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>


/* A peer that stops taking notifications must not make us queue without
 * bound: a whole session is far below this. */
#define GATT_MAX_QUEUED (64 * 1024)

/* --- MTU ------------------------------------------------------------------------ */

gsize
tally_gatt_payload_for_att_mtu (guint att_mtu)
{
  if (att_mtu < TALLY_GATT_ATT_MIN_MTU)
    return 0;
  return MIN ((gsize) att_mtu - TALLY_GATT_ATT_HEADER, (gsize) TALLY_FRAME_MAX_MTU);
}

gsize
tally_gatt_notify_payload_for_att_mtu (guint att_mtu)
{
  if (att_mtu < TALLY_GATT_ATT_MIN_MTU)
    return 0;
  if (att_mtu < TALLY_FRAME_MIN_MTU + TALLY_GATT_ATT_HEADER + 2)
    return TALLY_FRAME_MIN_MTU;
  return MIN ((gsize) att_mtu - TALLY_GATT_ATT_HEADER - 2, (gsize) TALLY_FRAME_MAX_MTU);
}

/* --- the link ------------------------------------------------------------------- */

typedef enum
{
  GATT_IO_OPEN,
  GATT_IO_STOPPED,
} GattIOState;

typedef struct
{
  GattIOState state;
  TallyLink *link; /* borrowed: the link owns this */
  char *peer;
  const TallyGattLinkOwner *owner; /* NULL once detached */
  gpointer owner_data;
  GMainContext *context;

  int tx_fd;
  GSource *tx_watch; /* G_IO_OUT while the socket is full, HUP otherwise */
  int rx_fd;
  GSource *rx_watch;

  gboolean paused;
  GQueue tx_queue; /* GBytes */
  gsize tx_queued;
} GattIO;

static const char *
gatt_io_state_to_string (GattIOState state)
{
  switch (state) {
  case GATT_IO_OPEN: return "open";
  case GATT_IO_STOPPED: return "stopped";
  }
  return "unknown";
}

static void
gatt_io_clear_watch (GSource **watch)
{
  if (*watch != NULL) {
    g_source_destroy (*watch);
    g_clear_pointer (watch, g_source_unref);
  }
}

static void
gatt_io_close_fd (int *fd)
{
  if (*fd >= 0) {
    close (*fd);
    *fd = -1;
  }
}

static void
gatt_io_enter_state (GattIO *io, GattIOState state)
{
  g_debug ("gatt link %s: %s -> %s", io->peer, gatt_io_state_to_string (io->state),
           gatt_io_state_to_string (state));
  io->state = state;

  switch (state) {
  case GATT_IO_OPEN:
    break;
  case GATT_IO_STOPPED:
    gatt_io_clear_watch (&io->tx_watch);
    gatt_io_clear_watch (&io->rx_watch);
    gatt_io_close_fd (&io->tx_fd);
    gatt_io_close_fd (&io->rx_fd);
    g_queue_clear_full (&io->tx_queue, (GDestroyNotify) g_bytes_unref);
    io->tx_queued = 0;
    break;
  }
}

static void
gatt_io_fail (GattIO *io, TallyError code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
gatt_io_fail (GattIO *io, TallyError code, const char *format, ...)
{
  g_autoptr (GError) error = NULL;
  va_list args;

  va_start (args, format);
  error = g_error_new_valist (TALLY_ERROR, code, format, args);
  va_end (args);
  tally_link_closed (io->link, error);
}

typedef enum
{
  SENT,
  WOULD_BLOCK,
  SEND_FAILED,
} SendResult;

/* One fragment, one packet. */
static SendResult
gatt_io_send_now (GattIO *io, const guint8 *data, gsize len, GError **error)
{
  if (io->tx_fd < 0) {
    if (io->owner == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "link to %s has no owner",
                   io->peer);
      return SEND_FAILED;
    }
    return io->owner->send (io->owner_data, io->link, data, len, error) ? SENT : SEND_FAILED;
  }

  for (;;) {
    ssize_t n = send (io->tx_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (n >= 0 && (gsize) n == len)
      return SENT;
    if (n >= 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                   "BlueZ took %zd of %" G_GSIZE_FORMAT " bytes for %s", n, len, io->peer);
      return SEND_FAILED;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return WOULD_BLOCK;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "sending to %s: %s", io->peer,
                 g_strerror (errno));
    return SEND_FAILED;
  }
}

static void gatt_io_watch_tx (GattIO *io, GIOCondition condition);

/* Sends what is queued until the socket is full; FALSE once the link
 * failed. */
static gboolean
gatt_io_flush (GattIO *io)
{
  while (io->state == GATT_IO_OPEN && !io->paused && !g_queue_is_empty (&io->tx_queue)) {
    GBytes *fragment = g_queue_peek_head (&io->tx_queue);
    g_autoptr (GError) error = NULL;
    gsize len;
    const guint8 *data = g_bytes_get_data (fragment, &len);

    switch (gatt_io_send_now (io, data, len, &error)) {
    case SENT:
      g_queue_pop_head (&io->tx_queue);
      io->tx_queued -= len;
      g_bytes_unref (fragment);
      break;
    case WOULD_BLOCK:
      gatt_io_watch_tx (io, G_IO_OUT | G_IO_HUP | G_IO_ERR);
      return TRUE;
    case SEND_FAILED:
      tally_link_closed (io->link, error);
      return FALSE;
    }
  }
  if (io->state == GATT_IO_OPEN && io->tx_fd >= 0)
    gatt_io_watch_tx (io, G_IO_HUP | G_IO_ERR);
  return io->state == GATT_IO_OPEN;
}

static gboolean
gatt_io_tx_cb (int fd, GIOCondition condition, gpointer user_data)
{
  GattIO *io = user_data;
  g_autoptr (TallyLink) link = tally_link_ref (io->link);

  g_clear_pointer (&io->tx_watch, g_source_unref);
  if (condition & (G_IO_HUP | G_IO_ERR)) {
    gatt_io_fail (io, TALLY_ERROR_DISCONNECTED, "BlueZ closed the socket to %s", io->peer);
    return G_SOURCE_REMOVE;
  }
  gatt_io_flush (io);
  return G_SOURCE_REMOVE;
}

static void
gatt_io_watch_tx (GattIO *io, GIOCondition condition)
{
  gatt_io_clear_watch (&io->tx_watch);
  io->tx_watch = g_unix_fd_source_new (io->tx_fd, condition);
  g_source_set_callback (io->tx_watch, G_SOURCE_FUNC (gatt_io_tx_cb), io, NULL);
  g_source_set_static_name (io->tx_watch, "[tally] gatt tx");
  g_source_attach (io->tx_watch, io->context);
}

/* The header byte names the fragment (kind, sequence number): over
 * Enhanced ATT the order of these lines is the order BlueZ delivered. */
static void
gatt_io_deliver (GattIO *io, const guint8 *data, gsize len)
{
  if (len > 0)
    g_debug ("gatt link %s: rx fragment %02x, %" G_GSIZE_FORMAT " bytes", io->peer, data[0], len);
  tally_link_deliver (io->link, data, len);
}

static gboolean
gatt_io_rx_cb (int fd, GIOCondition condition, gpointer user_data)
{
  GattIO *io = user_data;
  g_autoptr (TallyLink) link = tally_link_ref (io->link);
  guint8 buf[TALLY_FRAME_MAX_MTU + 1];

  if (condition & G_IO_IN) {
    ssize_t n = recv (fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);

    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
      return G_SOURCE_CONTINUE;
    if (n < 0) {
      g_clear_pointer (&io->rx_watch, g_source_unref);
      gatt_io_fail (io, TALLY_ERROR_DISCONNECTED, "reading from %s: %s", io->peer,
                    g_strerror (errno));
      return G_SOURCE_REMOVE;
    }
    if (n == 0) {
      g_clear_pointer (&io->rx_watch, g_source_unref);
      gatt_io_fail (io, TALLY_ERROR_DISCONNECTED, "BlueZ closed the socket from %s", io->peer);
      return G_SOURCE_REMOVE;
    }
    if ((gsize) n > TALLY_FRAME_MAX_MTU) {
      g_clear_pointer (&io->rx_watch, g_source_unref);
      gatt_io_fail (io, TALLY_ERROR_FRAME_OVERSIZE,
                    "%s sent a fragment of %zd bytes, more than %d", io->peer, n,
                    TALLY_FRAME_MAX_MTU);
      return G_SOURCE_REMOVE;
    }
    gatt_io_deliver (io, buf, (gsize) n);
    /* Data first: a HUP raised with it is seen on the next round. */
    return io->state == GATT_IO_OPEN ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
  }

  g_clear_pointer (&io->rx_watch, g_source_unref);
  gatt_io_fail (io, TALLY_ERROR_DISCONNECTED, "BlueZ closed the socket from %s", io->peer);
  return G_SOURCE_REMOVE;
}

static gboolean
gatt_link_send (TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  GattIO *io = tally_link_get_impl (link);

  switch (io->state) {
  case GATT_IO_OPEN:
    break;
  case GATT_IO_STOPPED:
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "link to %s is closed", io->peer);
    return FALSE;
  }

  if (io->paused || !g_queue_is_empty (&io->tx_queue)) {
    if (io->tx_queued + len > GATT_MAX_QUEUED) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                   "%s takes no notifications: %" G_GSIZE_FORMAT " bytes already queued", io->peer,
                   io->tx_queued);
      return FALSE;
    }
    g_queue_push_tail (&io->tx_queue, g_bytes_new (data, len));
    io->tx_queued += len;
    return TRUE;
  }

  switch (gatt_io_send_now (io, data, len, error)) {
  case SENT:
    return TRUE;
  case WOULD_BLOCK:
    g_queue_push_tail (&io->tx_queue, g_bytes_new (data, len));
    io->tx_queued += len;
    gatt_io_watch_tx (io, G_IO_OUT | G_IO_HUP | G_IO_ERR);
    return TRUE;
  case SEND_FAILED:
    return FALSE;
  }
  return FALSE;
}

static void
gatt_link_close (TallyLink *link)
{
  GattIO *io = tally_link_get_impl (link);
  const TallyGattLinkOwner *owner = io->owner;

  switch (io->state) {
  case GATT_IO_OPEN:
    break;
  case GATT_IO_STOPPED:
    return;
  }

  /* What fits into the socket still leaves; the rest is dropped. */
  if (!io->paused) {
    while (!g_queue_is_empty (&io->tx_queue)) {
      g_autoptr (GBytes) fragment = g_queue_pop_head (&io->tx_queue);
      gsize len;
      const guint8 *data = g_bytes_get_data (fragment, &len);

      if (gatt_io_send_now (io, data, len, NULL) != SENT)
        break;
    }
  }
  gatt_io_enter_state (io, GATT_IO_STOPPED);
  io->owner = NULL;
  if (owner != NULL && owner->stopped != NULL)
    owner->stopped (io->owner_data, link);
}

static void
gatt_link_destroy (TallyLink *link)
{
  GattIO *io = tally_link_get_impl (link);

  switch (io->state) {
  case GATT_IO_OPEN:
    gatt_io_enter_state (io, GATT_IO_STOPPED);
    break;
  case GATT_IO_STOPPED:
    break;
  }
  g_main_context_unref (io->context);
  g_free (io->peer);
  g_free (io);
}

static const TallyLinkOps gatt_link_ops = {
  .send = gatt_link_send,
  .close = gatt_link_close,
  .destroy = gatt_link_destroy,
};

TallyLink *
tally_gatt_link_new (gsize mtu,
                     const char *peer,
                     const TallyGattLinkOwner *owner,
                     gpointer owner_data)
{
  GattIO *io;

  g_return_val_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU, NULL);
  g_return_val_if_fail (owner != NULL && owner->send != NULL, NULL);

  io = g_new0 (GattIO, 1);
  io->state = GATT_IO_OPEN;
  io->peer = g_strdup (peer != NULL ? peer : "unknown");
  io->owner = owner;
  io->owner_data = owner_data;
  io->context = g_main_context_ref_thread_default ();
  io->tx_fd = -1;
  io->rx_fd = -1;
  g_queue_init (&io->tx_queue);
  io->link = tally_link_new (&gatt_link_ops, mtu, io->peer, io);
  return io->link;
}

static GattIO *
gatt_io_from_link (TallyLink *link)
{
  g_return_val_if_fail (link != NULL, NULL);

  return tally_link_get_impl (link);
}

/* Puts FD in *SLOT in place of the socket there and its watch; a link no
 * longer open closes FD instead and says so. */
static gboolean
gatt_io_take_fd (GattIO *io, int fd, int *slot, GSource **watch)
{
  if (io->state != GATT_IO_OPEN) {
    close (fd);
    return FALSE;
  }
  gatt_io_clear_watch (watch);
  gatt_io_close_fd (slot);
  *slot = fd;
  return TRUE;
}

void
tally_gatt_link_take_tx_fd (TallyLink *link, int fd)
{
  GattIO *io = gatt_io_from_link (link);

  g_return_if_fail (fd >= 0);

  if (!gatt_io_take_fd (io, fd, &io->tx_fd, &io->tx_watch))
    return;
  g_debug ("gatt link %s: notifications/writes over a socket from now on", io->peer);
  gatt_io_flush (io);
}

void
tally_gatt_link_take_rx_fd (TallyLink *link, int fd)
{
  GattIO *io = gatt_io_from_link (link);

  g_return_if_fail (fd >= 0);

  if (!gatt_io_take_fd (io, fd, &io->rx_fd, &io->rx_watch))
    return;
  io->rx_watch = g_unix_fd_source_new (fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback (io->rx_watch, G_SOURCE_FUNC (gatt_io_rx_cb), io, NULL);
  g_source_set_static_name (io->rx_watch, "[tally] gatt rx");
  g_source_attach (io->rx_watch, io->context);
}

gboolean
tally_gatt_link_has_tx_fd (TallyLink *link)
{
  return gatt_io_from_link (link)->tx_fd >= 0;
}

gboolean
tally_gatt_link_has_rx_fd (TallyLink *link)
{
  return gatt_io_from_link (link)->rx_fd >= 0;
}

void
tally_gatt_link_receive (TallyLink *link, const guint8 *data, gsize len)
{
  GattIO *io = gatt_io_from_link (link);

  switch (io->state) {
  case GATT_IO_OPEN:
    break;
  case GATT_IO_STOPPED:
    return;
  }
  if (len > TALLY_FRAME_MAX_MTU) {
    gatt_io_fail (io, TALLY_ERROR_FRAME_OVERSIZE,
                  "%s sent a fragment of %" G_GSIZE_FORMAT " bytes, more than %d", io->peer, len,
                  TALLY_FRAME_MAX_MTU);
    return;
  }
  gatt_io_deliver (io, data, len);
}

void
tally_gatt_link_set_paused (TallyLink *link, gboolean paused)
{
  GattIO *io = gatt_io_from_link (link);

  if (io->paused == paused)
    return;
  g_debug ("gatt link %s: %s", io->peer, paused ? "paused" : "resumed");
  io->paused = paused;
  if (!paused && io->state == GATT_IO_OPEN) {
    g_autoptr (TallyLink) ref = tally_link_ref (link);

    gatt_io_flush (io);
  }
}

void
tally_gatt_link_lost (TallyLink *link, const char *why)
{
  GattIO *io = gatt_io_from_link (link);

  switch (io->state) {
  case GATT_IO_OPEN:
    break;
  case GATT_IO_STOPPED:
    return;
  }
  gatt_io_fail (io, TALLY_ERROR_DISCONNECTED, "%s: %s", io->peer, why);
}

void
tally_gatt_link_detach (TallyLink *link)
{
  GattIO *io = gatt_io_from_link (link);

  io->owner = NULL;
  io->owner_data = NULL;
}
