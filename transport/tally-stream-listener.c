/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stream listener: its own accept loop, so that the connection cap and
 * running out of file descriptors pause it instead of spinning.
 */
#include "tally-stream-private.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

/* --- listener --------------------------------------------------------------- */

/* A failure to accept (EMFILE, ENFILE...) pauses accepting this long. */
#define LISTENER_RETRY_MS 250
/* One log line per this many seconds about refused or failed accepts. */
#define LISTENER_LOG_INTERVAL_US (10 * G_USEC_PER_SEC)

/* The pending accept's weak link back to its listener. */
typedef struct
{
  TallyStreamListener *listener; /* NULL once it is freed */
} Acceptor;

struct _TallyStreamListener
{
  gint ref_count;
  GSocketListener *sockets;
  GCancellable *cancel;
  GMainContext *context;
  Acceptor *acceptor; /* while an accept is pending */
  GSource *retry;     /* while paused after a failure */
  ConnectionCount *count;
  guint max_connections;
  gint64 log_last;  /* monotonic us of the last line about accepting */
  guint log_missed; /* failures or pauses since, not logged */
  gsize mtu;
  TallyStreamAcceptFunc on_accept;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
  char *address;   /* as bound */
  char *unix_path; /* removed again on free */
};

static char *
describe_incoming_peer (TallyStreamListener *listener, GSocketConnection *connection)
{
  g_autoptr (GSocketAddress) remote = NULL;
  g_autoptr (GCredentials) credentials = NULL;
  GSocket *socket = g_socket_connection_get_socket (connection);

  remote = g_socket_connection_get_remote_address (connection, NULL);
  if (remote != NULL && G_IS_INET_SOCKET_ADDRESS (remote))
    return tally_stream_inet_address_describe (G_INET_SOCKET_ADDRESS (remote));

  /* UNIX peers are anonymous; name them by their credentials. */
  credentials = g_socket_get_credentials (socket, NULL);
  if (credentials != NULL) {
    pid_t pid = g_credentials_get_unix_pid (credentials, NULL);
    uid_t uid = g_credentials_get_unix_user (credentials, NULL);

    return g_strdup_printf ("%s(pid=%d,uid=%u)", listener->address, (int) pid, (unsigned) uid);
  }
  return g_strdup (listener->address);
}

static void listener_accept_next (TallyStreamListener *listener);

/* At most one line per LISTENER_LOG_INTERVAL_US, with the count of what it
 * did not log: a flood must not flood the log too. */
G_GNUC_PRINTF (2, 3)
static void
listener_log_limited (TallyStreamListener *listener, const char *format, ...)
{
  gint64 now = g_get_monotonic_time ();
  if (listener->log_last != 0 && now - listener->log_last < LISTENER_LOG_INTERVAL_US) {
    listener->log_missed++;
    return;
  }
  va_list args;
  va_start (args, format);
  g_autofree char *what = g_strdup_vprintf (format, args);
  va_end (args);
  if (listener->log_missed > 0)
    g_message ("listener %s: %s (and %u more like it in the last %d s)", listener->address, what,
               listener->log_missed, (int) (LISTENER_LOG_INTERVAL_US / G_USEC_PER_SEC));
  else
    g_message ("listener %s: %s", listener->address, what);
  listener->log_last = now;
  listener->log_missed = 0;
}

static gboolean
listener_retry_cb (gpointer user_data)
{
  TallyStreamListener *listener = user_data;

  g_clear_pointer (&listener->retry, g_source_unref);
  listener_accept_next (listener);
  return G_SOURCE_REMOVE;
}

/* Accepting waits until a connection goes (at the cap) or a moment
 * passes (out of file descriptors): no busy loop either way. */
static void
listener_pause (TallyStreamListener *listener, guint retry_ms)
{
  if (retry_ms == 0 || listener->retry != NULL)
    return;
  listener->retry = g_timeout_source_new (retry_ms);
  g_source_set_callback (listener->retry, listener_retry_cb, listener, NULL);
  g_source_set_static_name (listener->retry, "[tally] listener retry");
  g_source_attach (listener->retry, listener->context);
}

static void
listener_connection_released (gpointer user_data)
{
  TallyStreamListener *listener = user_data;

  if (listener->acceptor == NULL && listener->retry == NULL)
    listener_accept_next (listener);
}

static void
listener_take (TallyStreamListener *listener, GSocketConnection *connection)
{
  g_autofree char *peer = describe_incoming_peer (listener, connection);
  g_autoptr (TallyLink) link = NULL;

  g_debug ("listener %s: connection from %s (%u open)", listener->address, peer,
           listener->count->live + 1);
  link = tally_stream_link_new (G_IO_STREAM (connection), listener->mtu, peer);
  tally_stream_link_count (link, listener->count);
  /* The callback borrows the link: it takes a reference to keep it, and the
   * connection closes when it does not. */
  tally_stream_listener_ref (listener);
  listener->on_accept (listener, link, listener->user_data);
  tally_stream_listener_unref (listener);
}

static void
listener_accept_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree Acceptor *acceptor = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) connection =
    g_socket_listener_accept_finish (G_SOCKET_LISTENER (source), result, NULL, &error);
  TallyStreamListener *listener = acceptor->listener;

  if (listener == NULL) {
    /* Freed meanwhile: a connection that came with it closes. */
    return;
  }
  listener->acceptor = NULL;
  if (connection == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    /* EMFILE, ENFILE, ENOBUFS...: the listening socket stays readable, so
     * retrying at once would spin. */
    listener_log_limited (listener, "cannot accept: %s; pausing %d ms", error->message,
                          LISTENER_RETRY_MS);
    listener_pause (listener, LISTENER_RETRY_MS);
    return;
  }
  tally_stream_listener_ref (listener);
  listener_take (listener, connection);
  g_clear_object (&connection);
  listener_accept_next (listener);
  tally_stream_listener_unref (listener);
}

/* Accepts the next connection, unless one is pending, accepting is paused,
 * or max_connections are open (a closing one resumes it). */
static void
listener_accept_next (TallyStreamListener *listener)
{
  if (listener->acceptor != NULL || listener->retry != NULL ||
      g_cancellable_is_cancelled (listener->cancel))
    return;
  if (listener->count->live >= listener->max_connections) {
    listener_log_limited (listener,
                          "%u connections open, the most allowed; not accepting more "
                          "until one closes",
                          listener->count->live);
    return;
  }
  listener->acceptor = g_new0 (Acceptor, 1);
  listener->acceptor->listener = listener;
  g_socket_listener_accept_async (listener->sockets, listener->cancel, listener_accept_cb,
                                  listener->acceptor);
}

/* Removes a socket file left by a process that is gone; refuses to touch a
 * live socket or anything that is not a socket. */
static gboolean
remove_stale_socket (const char *path, GError **error)
{
  GStatBuf st;
  g_autoptr (GSocket) probe = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GError) local_error = NULL;

  if (g_lstat (path, &st) != 0) {
    if (errno == ENOENT)
      return TRUE;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot inspect %s: %s", path,
                 g_strerror (errno));
    return FALSE;
  }
  if (!S_ISSOCK (st.st_mode)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "%s exists and is not a socket", path);
    return FALSE;
  }

  probe = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                        &local_error);
  if (probe == NULL) {
    tally_stream_propagate_gio_error (error, local_error, "cannot create a socket");
    return FALSE;
  }
  g_socket_set_blocking (probe, FALSE);
  addr = g_unix_socket_address_new (path);
  if (g_socket_connect (probe, addr, NULL, &local_error) ||
      g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_PENDING)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "another process listens on %s", path);
    return FALSE;
  }
  if (g_unlink (path) != 0 && errno != ENOENT) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot remove stale socket %s: %s", path,
                 g_strerror (errno));
    return FALSE;
  }
  g_debug ("removed stale socket %s", path);
  return TRUE;
}

static GSocketAddress *
resolve_listen_address (const StreamAddress *addr, GError **error)
{
  g_autoptr (GInetAddress) inet = NULL;

  switch (addr->kind) {
  case ADDRESS_UNIX: return g_unix_socket_address_new (addr->path);
  case ADDRESS_TCP: break;
  }

  inet = g_inet_address_new_from_string (addr->host);
  if (inet == NULL) {
    g_autoptr (GResolver) resolver = g_resolver_get_default ();
    g_autoptr (GError) local_error = NULL;
    GList *found;

    found = g_resolver_lookup_by_name (resolver, addr->host, NULL, &local_error);
    if (found == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "cannot resolve %s: %s",
                   addr->host, local_error->message);
      return NULL;
    }
    inet = g_object_ref (found->data);
    g_resolver_free_addresses (found);
  }
  return g_inet_socket_address_new (inet, addr->port);
}

TallyStreamListener *
tally_stream_listener_new (const char *address,
                           gsize mtu,
                           TallyStreamAcceptFunc on_accept,
                           gpointer user_data,
                           GDestroyNotify destroy,
                           GError **error)
{
  g_auto (StreamAddress) addr = { 0 };
  g_autoptr (GSocketAddress) bind_addr = NULL;
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;

  g_return_val_if_fail (address != NULL, NULL);
  g_return_val_if_fail (mtu >= TALLY_FRAME_MIN_MTU && mtu <= TALLY_FRAME_MAX_MTU, NULL);
  g_return_val_if_fail (on_accept != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!tally_stream_address_parse (address, TRUE, &addr, error))
    return NULL;
  if (addr.kind == ADDRESS_UNIX && !remove_stale_socket (addr.path, error))
    return NULL;
  bind_addr = resolve_listen_address (&addr, error);
  if (bind_addr == NULL)
    return NULL;

  listener = g_new0 (TallyStreamListener, 1);
  listener->ref_count = 1;
  listener->mtu = mtu;
  listener->on_accept = on_accept;
  listener->user_data = user_data;
  listener->sockets = g_socket_listener_new ();
  listener->cancel = g_cancellable_new ();
  listener->context = g_main_context_ref_thread_default ();
  listener->max_connections = TALLY_STREAM_DEFAULT_MAX_CONNECTIONS;
  listener->count = g_rc_box_new0 (ConnectionCount);
  listener->count->released = listener_connection_released;
  listener->count->user_data = listener;
  /* GLib's default backlog of 10 refuses a crowd of payers that connect at
   * once (EAGAIN on a unix socket) while tallyd is busy; queued in the
   * kernel they cost tallyd no descriptor until accepted. */
  g_socket_listener_set_backlog (listener->sockets, TALLY_STREAM_LISTEN_BACKLOG);

  if (!g_socket_listener_add_address (listener->sockets, bind_addr, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_DEFAULT, NULL, &bound, &local_error)) {
    g_set_error (error, TALLY_ERROR,
                 g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE)
                   ? TALLY_ERROR_EXISTS
                   : TALLY_ERROR_FAILED,
                 "cannot listen on %s: %s", address, local_error->message);
    return NULL;
  }

  switch (addr.kind) {
  case ADDRESS_UNIX:
    listener->unix_path = g_strdup (addr.path);
    listener->address = g_strdup_printf ("unix:%s", addr.path);
    /* Only this user may pay through the daemon. */
    if (g_chmod (addr.path, 0600) != 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot restrict %s: %s", addr.path,
                   g_strerror (errno));
      return NULL;
    }
    break;
  case ADDRESS_TCP:
    listener->address = tally_stream_inet_address_describe (G_INET_SOCKET_ADDRESS (bound));
    break;
  }

  listener_accept_next (listener);
  g_debug ("listener %s: listening, MTU %" G_GSIZE_FORMAT, listener->address, mtu);
  /* Only a listener that exists owns @user_data. */
  listener->user_data_destroy = destroy;
  return g_steal_pointer (&listener);
}

void
tally_stream_listener_set_max_connections (TallyStreamListener *listener, guint max_connections)
{
  g_return_if_fail (listener != NULL && max_connections > 0);

  listener->max_connections = max_connections;
  listener_accept_next (listener);
}

guint
tally_stream_listener_get_connections (TallyStreamListener *listener)
{
  g_return_val_if_fail (listener != NULL, 0);

  return listener->count->live;
}

const char *
tally_stream_listener_get_address (TallyStreamListener *listener)
{
  g_return_val_if_fail (listener != NULL, NULL);

  return listener->address;
}

TallyStreamListener *
tally_stream_listener_ref (TallyStreamListener *listener)
{
  g_return_val_if_fail (listener != NULL, NULL);

  g_atomic_int_inc (&listener->ref_count);
  return listener;
}

void
tally_stream_listener_unref (TallyStreamListener *listener)
{
  if (listener == NULL)
    return;
  if (!g_atomic_int_dec_and_test (&listener->ref_count))
    return;

  if (listener->acceptor != NULL)
    listener->acceptor->listener = NULL;
  g_cancellable_cancel (listener->cancel);
  g_clear_object (&listener->cancel);
  if (listener->retry != NULL) {
    g_source_destroy (listener->retry);
    g_clear_pointer (&listener->retry, g_source_unref);
  }
  /* Its links may live on; they no longer report to us. */
  listener->count->released = NULL;
  tally_stream_connection_count_release (listener->count);
  g_socket_listener_close (listener->sockets);
  g_object_unref (listener->sockets);
  g_main_context_unref (listener->context);
  if (listener->unix_path != NULL && g_unlink (listener->unix_path) != 0)
    g_debug ("cannot remove %s: %s", listener->unix_path, g_strerror (errno));
  if (listener->user_data_destroy != NULL)
    listener->user_data_destroy (listener->user_data);
  g_free (listener->unix_path);
  g_free (listener->address);
  g_free (listener);
}
