/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-stream-private.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include <gio/gunixsocketaddress.h>

#define STREAM_PREFIX_BYTES 2 /* big-endian u16 fragment length */
#define STREAM_READ_CHUNK   4096
/* A peer that stops reading must not make us buffer without bound. */
#define STREAM_MAX_QUEUED (1024 * 1024)
/* How long a close waits for queued fragments to leave. */
#define STREAM_DRAIN_TIMEOUT_MS 2000

#define ADDRESS_USAGE "address must be unix:/path or tcp:host:port"

/* --- addresses -------------------------------------------------------------- */

void
tally_stream_address_clear (StreamAddress *addr)
{
  g_clear_pointer (&addr->path, g_free);
  g_clear_pointer (&addr->host, g_free);
}

gboolean
tally_stream_address_parse (const char *address,
                      gboolean allow_port_zero,
                      StreamAddress *out,
                      GError **error)
{
  const char *rest;
  const char *colon;
  g_autofree char *host = NULL;
  guint64 port;

  if (g_str_has_prefix (address, "unix:")) {
    rest = address + strlen ("unix:");
    if (*rest == '\0') {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "\"%s\" has an empty socket path: " ADDRESS_USAGE, address);
      return FALSE;
    }
    out->kind = ADDRESS_UNIX;
    out->path = g_strdup (rest);
    return TRUE;
  }

  if (!g_str_has_prefix (address, "tcp:")) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "\"%s\": " ADDRESS_USAGE,
                 address);
    return FALSE;
  }

  rest = address + strlen ("tcp:");
  colon = strrchr (rest, ':');
  if (colon == NULL || colon == rest) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\" lacks a host or a port: " ADDRESS_USAGE, address);
    return FALSE;
  }
  host = g_strndup (rest, colon - rest);
  if (host[0] == '[') {
    gsize host_len = strlen (host);

    if (host_len < 3 || host[host_len - 1] != ']') {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "\"%s\" has an unterminated IPv6 host: " ADDRESS_USAGE, address);
      return FALSE;
    }
    host[host_len - 1] = '\0';
    memmove (host, host + 1, host_len - 1);
  } else if (strchr (host, ':') != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\": an IPv6 host must be in brackets, tcp:[::1]:port", address);
    return FALSE;
  }
  if (!g_ascii_string_to_unsigned (colon + 1, 10, allow_port_zero ? 0 : 1, G_MAXUINT16, &port,
                                   NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\": port \"%s\" is not a number in %d..65535", address, colon + 1,
                 allow_port_zero ? 0 : 1);
    return FALSE;
  }

  out->kind = ADDRESS_TCP;
  out->host = g_steal_pointer (&host);
  out->port = (guint16) port;
  return TRUE;
}

char *
tally_stream_inet_address_describe (GInetSocketAddress *addr)
{
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (addr));

  if (g_inet_address_get_family (g_inet_socket_address_get_address (addr)) == G_SOCKET_FAMILY_IPV6)
    return g_strdup_printf ("tcp:[%s]:%u", ip, g_inet_socket_address_get_port (addr));
  return g_strdup_printf ("tcp:%s:%u", ip, g_inet_socket_address_get_port (addr));
}

/* Maps a GIO failure onto the TALLY_ERROR code callers act on. */
void
tally_stream_propagate_gio_error (GError **error, GError *gio_error, const char *what)
{
  TallyError code = TALLY_ERROR_DISCONNECTED;

  if (g_error_matches (gio_error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    code = TALLY_ERROR_CANCELLED;
  g_set_error (error, TALLY_ERROR, code, "%s: %s", what, gio_error->message);
}

/* --- stream link ------------------------------------------------------------ */

typedef enum
{
  STREAM_OPEN,
  /* Closed by the user or after an error: reads are cancelled, queued
   * fragments still leave, then the stream closes. */
  STREAM_DRAINING,
  STREAM_CLOSED,
} StreamState;

void
tally_stream_connection_count_release (ConnectionCount *count)
{
  g_rc_box_release (count);
}

/* Reference counted with g_rc_box: every asynchronous operation in flight
 * holds one, the link holds one until it is destroyed. */
typedef struct
{
  StreamState state;
  ConnectionCount *count; /* accepted by a listener: counted there */
  TallyLink *link; /* NULL once the link is destroyed */
  char *peer;
  GIOStream *stream;
  GCancellable *read_cancel;
  GCancellable *write_cancel;
  GMainContext *context;
  GSource *drain_timeout;

  gboolean reading;
  guint8 read_buf[STREAM_READ_CHUNK];
  GByteArray *rx;

  gboolean writing;
  GBytes *tx_inflight;
  GByteArray *tx_pending;
} StreamIO;

static const char *
stream_state_to_string (StreamState state)
{
  switch (state) {
  case STREAM_OPEN: return "open";
  case STREAM_DRAINING: return "draining";
  case STREAM_CLOSED: return "closed";
  }
  return "unknown";
}

static gboolean
stream_drain_timeout_cb (gpointer user_data)
{
  StreamIO *io = user_data;

  g_debug ("stream %s: queued fragments did not leave within %d ms, dropping them", io->peer,
           STREAM_DRAIN_TIMEOUT_MS);
  g_clear_pointer (&io->drain_timeout, g_source_unref);
  g_cancellable_cancel (io->write_cancel);
  return G_SOURCE_REMOVE;
}

static void
stream_clear_drain_timeout (StreamIO *io)
{
  if (io->drain_timeout != NULL) {
    g_source_destroy (io->drain_timeout);
    g_clear_pointer (&io->drain_timeout, g_source_unref);
  }
}

static void
stream_enter_state (StreamIO *io, StreamState state)
{
  g_autoptr (GError) error = NULL;

  g_debug ("stream %s: %s -> %s", io->peer, stream_state_to_string (io->state),
           stream_state_to_string (state));
  io->state = state;

  switch (state) {
  case STREAM_OPEN:
    break;
  case STREAM_DRAINING:
    g_cancellable_cancel (io->read_cancel);
    if (io->writing) {
      io->drain_timeout = g_timeout_source_new (STREAM_DRAIN_TIMEOUT_MS);
      g_source_set_callback (io->drain_timeout, stream_drain_timeout_cb, io, NULL);
      g_source_set_static_name (io->drain_timeout, "[tally] stream drain");
      g_source_attach (io->drain_timeout, io->context);
    }
    break;
  case STREAM_CLOSED:
    stream_clear_drain_timeout (io);
    g_byte_array_set_size (io->tx_pending, 0);
    if (!g_io_stream_close (io->stream, NULL, &error))
      g_debug ("stream %s: close: %s", io->peer, error->message);
    break;
  }
}

/* The stream may close only once no operation uses it. */
static void
stream_maybe_finish (StreamIO *io)
{
  switch (io->state) {
  case STREAM_OPEN:
  case STREAM_CLOSED:
    return;
  case STREAM_DRAINING:
    break;
  }
  if (!io->reading && !io->writing)
    stream_enter_state (io, STREAM_CLOSED);
}

static void
stream_io_clear (StreamIO *io)
{
  switch (io->state) {
  case STREAM_OPEN:
  case STREAM_DRAINING:
    stream_enter_state (io, STREAM_CLOSED);
    break;
  case STREAM_CLOSED:
    break;
  }
  g_clear_object (&io->stream);
  g_clear_object (&io->read_cancel);
  g_clear_object (&io->write_cancel);
  g_clear_pointer (&io->rx, g_byte_array_unref);
  g_clear_pointer (&io->tx_pending, g_byte_array_unref);
  g_clear_pointer (&io->tx_inflight, g_bytes_unref);
  g_clear_pointer (&io->context, g_main_context_unref);
  g_clear_pointer (&io->peer, g_free);
  if (io->count != NULL) {
    ConnectionCount *count = g_steal_pointer (&io->count);
    count->live--;
    if (count->released != NULL)
      count->released (count->user_data);
    tally_stream_connection_count_release (count);
  }
}

static StreamIO *
stream_io_acquire (StreamIO *io)
{
  return g_rc_box_acquire (io);
}

static void
stream_io_release (StreamIO *io)
{
  g_rc_box_release_full (io, (GDestroyNotify) stream_io_clear);
}

G_GNUC_PRINTF (3, 4)
static void
stream_fail (StreamIO *io, TallyError code, const char *format, ...)
{
  g_autoptr (GError) error = NULL;
  va_list args;

  va_start (args, format);
  error = g_error_new_valist (TALLY_ERROR, code, format, args);
  va_end (args);
  g_byte_array_set_size (io->tx_pending, 0);
  tally_link_closed (io->link, error);
}

static void stream_start_read (StreamIO *io);
static void stream_start_write (StreamIO *io);

/* Splits the byte stream at the u16 length prefixes. */
static void
stream_parse (StreamIO *io)
{
  gsize offset = 0;

  while (io->state == STREAM_OPEN && io->rx->len - offset >= STREAM_PREFIX_BYTES) {
    const guint8 *p = io->rx->data + offset;
    gsize len = ((gsize) p[0] << 8) | p[1];
    gsize mtu = tally_link_get_mtu (io->link);

    if (len == 0) {
      stream_fail (io, TALLY_ERROR_FRAME_TRUNCATED, "%s sent a fragment length of 0", io->peer);
      return;
    }
    if (len > mtu) {
      stream_fail (io, TALLY_ERROR_FRAME_OVERSIZE,
                   "%s sent a fragment of %" G_GSIZE_FORMAT " bytes, MTU %" G_GSIZE_FORMAT,
                   io->peer, len, mtu);
      return;
    }
    if (io->rx->len - offset - STREAM_PREFIX_BYTES < len)
      break;
    offset += STREAM_PREFIX_BYTES + len;
    tally_link_deliver (io->link, p + STREAM_PREFIX_BYTES, len);
  }

  switch (io->state) {
  case STREAM_OPEN:
    g_byte_array_remove_range (io->rx, 0, offset);
    break;
  case STREAM_DRAINING:
  case STREAM_CLOSED:
    break;
  }
}

static void
stream_read_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  StreamIO *io = user_data;
  g_autoptr (GError) error = NULL;
  gssize n;

  n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  io->reading = FALSE;

  switch (io->state) {
  case STREAM_OPEN:
    if (n < 0)
      stream_fail (io, TALLY_ERROR_DISCONNECTED, "reading from %s: %s", io->peer, error->message);
    else if (n == 0 && io->rx->len > 0)
      stream_fail (io, TALLY_ERROR_FRAME_TRUNCATED,
                   "%s closed the stream inside a fragment (%u bytes of it received)", io->peer,
                   io->rx->len);
    else if (n == 0)
      tally_link_closed (io->link, NULL);
    else {
      g_byte_array_append (io->rx, io->read_buf, (guint) n);
      stream_parse (io);
      if (io->state == STREAM_OPEN)
        stream_start_read (io);
    }
    break;
  case STREAM_DRAINING:
    stream_maybe_finish (io);
    break;
  case STREAM_CLOSED:
    break;
  }
  stream_io_release (io);
}

static void
stream_start_read (StreamIO *io)
{
  io->reading = TRUE;
  g_input_stream_read_async (g_io_stream_get_input_stream (io->stream), io->read_buf,
                             sizeof io->read_buf, G_PRIORITY_DEFAULT, io->read_cancel,
                             stream_read_cb, stream_io_acquire (io));
}

static void
stream_write_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  StreamIO *io = user_data;
  g_autoptr (GError) error = NULL;
  gboolean ok;

  ok = g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error);
  io->writing = FALSE;
  g_clear_pointer (&io->tx_inflight, g_bytes_unref);

  switch (io->state) {
  case STREAM_OPEN:
    if (!ok)
      stream_fail (io, TALLY_ERROR_DISCONNECTED, "writing to %s: %s", io->peer, error->message);
    else if (io->tx_pending->len > 0)
      stream_start_write (io);
    break;
  case STREAM_DRAINING:
    if (!ok) {
      g_debug ("stream %s: dropping queued fragments: %s", io->peer, error->message);
      g_byte_array_set_size (io->tx_pending, 0);
    }
    if (io->tx_pending->len > 0)
      stream_start_write (io);
    else
      stream_maybe_finish (io);
    break;
  case STREAM_CLOSED:
    break;
  }
  stream_io_release (io);
}

/* Everything queued since the last write goes out in one write, in order. */
static void
stream_start_write (StreamIO *io)
{
  gsize size;
  const guint8 *data;

  io->tx_inflight = g_byte_array_free_to_bytes (io->tx_pending);
  io->tx_pending = g_byte_array_new ();
  io->writing = TRUE;
  data = g_bytes_get_data (io->tx_inflight, &size);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (io->stream), data, size,
                                   G_PRIORITY_DEFAULT, io->write_cancel, stream_write_cb,
                                   stream_io_acquire (io));
}

static gboolean
stream_send (TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  StreamIO *io = tally_link_get_impl (link);
  guint8 prefix[STREAM_PREFIX_BYTES] = { (guint8) (len >> 8), (guint8) (len & 0xff) };
  gsize queued;

  switch (io->state) {
  case STREAM_OPEN:
    break;
  case STREAM_DRAINING:
  case STREAM_CLOSED:
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "stream to %s is closed",
                 io->peer);
    return FALSE;
  }

  queued = io->tx_pending->len + (io->tx_inflight != NULL ? g_bytes_get_size (io->tx_inflight) : 0);
  if (queued + sizeof prefix + len > STREAM_MAX_QUEUED) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                 "%s is not reading: %" G_GSIZE_FORMAT " bytes already queued", io->peer, queued);
    return FALSE;
  }

  g_byte_array_append (io->tx_pending, prefix, sizeof prefix);
  g_byte_array_append (io->tx_pending, data, (guint) len);
  if (!io->writing)
    stream_start_write (io);
  return TRUE;
}

static void
stream_close (TallyLink *link)
{
  StreamIO *io = tally_link_get_impl (link);

  switch (io->state) {
  case STREAM_OPEN:
    stream_enter_state (io, STREAM_DRAINING);
    stream_maybe_finish (io);
    break;
  case STREAM_DRAINING:
  case STREAM_CLOSED:
    break;
  }
}

static void
stream_destroy (TallyLink *link)
{
  StreamIO *io = tally_link_get_impl (link);

  io->link = NULL;
  stream_io_release (io);
}

static const TallyLinkOps stream_link_ops = {
  .send = stream_send,
  .close = stream_close,
  .destroy = stream_destroy,
};

/* Fragments are small and latency matters more than packet count. */
static void
stream_set_nodelay (GIOStream *stream)
{
  GSocket *socket;
  g_autoptr (GError) error = NULL;

  if (!G_IS_SOCKET_CONNECTION (stream))
    return;
  socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream));
  if (g_socket_get_family (socket) != G_SOCKET_FAMILY_IPV4 &&
      g_socket_get_family (socket) != G_SOCKET_FAMILY_IPV6)
    return;
  if (!g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, 1, &error))
    g_debug ("TCP_NODELAY: %s", error->message);
}

TallyLink *
tally_stream_link_new (GIOStream *stream, gsize mtu, const char *peer)
{
  StreamIO *io;

  g_return_val_if_fail (G_IS_IO_STREAM (stream), NULL);
  g_return_val_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU, NULL);

  stream_set_nodelay (stream);

  io = g_rc_box_new0 (StreamIO);
  io->state = STREAM_OPEN;
  io->peer = g_strdup (peer != NULL ? peer : "unknown");
  io->stream = g_object_ref (stream);
  io->read_cancel = g_cancellable_new ();
  io->write_cancel = g_cancellable_new ();
  io->context = g_main_context_ref_thread_default ();
  io->rx = g_byte_array_new ();
  io->tx_pending = g_byte_array_new ();
  io->link = tally_link_new (&stream_link_ops, mtu, io->peer, io);
  stream_start_read (io);
  return io->link;
}

void
tally_stream_link_count (TallyLink *link, ConnectionCount *count)
{
  StreamIO *io = tally_link_get_impl (link);

  g_return_if_fail (io->count == NULL);
  io->count = g_rc_box_acquire (count);
  count->live++;
}

/* --- connect ---------------------------------------------------------------- */

typedef struct
{
  gsize mtu;
  char *address;
} ConnectData;

static void
connect_data_free (ConnectData *data)
{
  g_free (data->address);
  g_free (data);
}

static void
connect_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ConnectData *data = g_task_get_task_data (task);
  g_autoptr (GSocketConnection) connection = NULL;
  g_autoptr (GError) local_error = NULL;
  GError *error = NULL;
  g_autofree char *what = NULL;

  connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &local_error);
  if (connection == NULL) {
    what = g_strdup_printf ("cannot connect to %s", data->address);
    tally_stream_propagate_gio_error (&error, local_error, what);
    g_task_return_error (task, error);
    return;
  }
  g_task_return_pointer (task,
                         tally_stream_link_new (G_IO_STREAM (connection), data->mtu, data->address),
                         (GDestroyNotify) tally_link_unref);
}

void
tally_stream_connect_async (const char *address,
                            gsize mtu,
                            GCancellable *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  g_auto (StreamAddress) addr = { 0 };
  g_autoptr (GSocketConnectable) connectable = NULL;
  g_autoptr (GSocketClient) client = NULL;
  ConnectData *data;
  GError *error = NULL;

  g_return_if_fail (address != NULL);
  g_return_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, tally_stream_connect_async);
  /* Cancellation is reported as TALLY_ERROR_CANCELLED by connect_cb. */
  g_task_set_check_cancellable (task, FALSE);

  if (!tally_stream_address_parse (address, FALSE, &addr, &error)) {
    g_task_return_error (task, error);
    return;
  }

  data = g_new0 (ConnectData, 1);
  data->mtu = mtu;
  data->address = g_strdup (address);
  g_task_set_task_data (task, data, (GDestroyNotify) connect_data_free);

  switch (addr.kind) {
  case ADDRESS_UNIX:
    connectable = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (addr.path));
    break;
  case ADDRESS_TCP:
    connectable = g_network_address_new (addr.host, addr.port);
    break;
  }

  client = g_socket_client_new ();
  g_socket_client_connect_async (client, connectable, cancellable, connect_cb,
                                 g_steal_pointer (&task));
}

TallyLink *
tally_stream_connect_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, tally_stream_connect_async), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
