/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client.h"

#include <string.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "tally-bluez-private.h"
#include "tally-gatt-address.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-link.h"

/*
 * The payer's side (doc/org.bluez.Adapter.rst, org.bluez.Device.rst,
 * org.bluez.GattCharacteristic.rst):
 *
 *   SetDiscoveryFilter {UUIDs: [service], Transport: le}, StartDiscovery
 *   a device advertising the service (and the tag, or the address) that
 *     BlueZ reports during this discovery: a cached one may be long gone
 *   StopDiscovery, Device1.Connect, wait for ServicesResolved
 *   tx: AcquireNotify (socket and ATT MTU), else StartNotify + Value changes
 *   rx: AcquireWrite (socket and ATT MTU), else WriteValue type "command"
 *
 * A disconnect or a failure on the way starts over from discovery, a
 * bounded number of times, after a back-off that grows with the attempts
 * and carries jitter, so that payers turned away together do not come back
 * together.  BlueZ answering "busy" (a Connect under way, the notify socket
 * of an attempt before not yet let go) asks the same step again shortly.
 * Once the link is handed out, a disconnect is TALLY_ERROR_DISCONNECTED on
 * it, and closing the link disconnects.
 */

#define MAX_ATTEMPTS          12
/* A payee that took another payer stops advertising: rather than wait on
 * a connection that may not come, look again. */
#define CONNECT_TIMEOUT_MS    10000
#define RESOLVE_TIMEOUT_S     20
/* BlueZ busy: the same step again after ASK_AGAIN_MS, at most this often
 * in one attempt. */
#define ASK_AGAIN_MS          500
#define CONNECT_ASKS          4
#define NOTIFY_ASKS           6
/* Back-off before attempt n + 1: n * BASE plus up to JITTER. */
#define BACKOFF_BASE_MS       400
#define BACKOFF_JITTER_MS     600

typedef enum
{
  CONNECT_STARTING,
  CONNECT_DISCOVERING,
  CONNECT_CONNECTING,
  CONNECT_RESOLVING,
  CONNECT_SUBSCRIBING,
  CONNECT_OPENING,
  CONNECT_BACKING_OFF,
  CONNECT_READY,
  CONNECT_FAILED,
} ConnectState;

typedef struct _ClientConn ClientConn;

/* What the attempt does next when its timer fires. */
typedef void (*ConnStep) (ClientConn *conn);

struct _ClientConn
{
  ConnectState state;
  GDBusConnection *bus;
  char *adapter;
  char *adapter_path;
  char *address;
  TallyGattTarget target;
  GMainContext *context;

  GTask *task; /* while connecting */
  GCancellable *calls; /* our D-Bus calls; cancelled on failure */
  gulong cancel_id;
  GSource *deadline;
  GSource *timer; /* runs timer_step: back-off, asking again, resolve timeout */
  ConnStep timer_step;
  GSource *cancel_idle;
  guint props_subscription;
  guint added_subscription;

  guint attempt;
  GError *last_error;
  gboolean discovering;
  char *device;
  char *peer;
  gboolean connected;
  char *rx_path;
  char *tx_path;
  guint att_mtu;
  int notify_fd;
  int write_fd;
  gboolean notify_fallback;
  guint connect_asks;
  guint notify_asks;

  TallyLink *link; /* once ready, borrowed: the link owns us */
  TallyGattConnectInfo info;
};

static const char *
connect_state_to_string (ConnectState state)
{
  switch (state) {
  case CONNECT_STARTING: return "starting";
  case CONNECT_DISCOVERING: return "discovering";
  case CONNECT_CONNECTING: return "connecting";
  case CONNECT_RESOLVING: return "resolving";
  case CONNECT_SUBSCRIBING: return "subscribing";
  case CONNECT_OPENING: return "opening";
  case CONNECT_BACKING_OFF: return "backing-off";
  case CONNECT_READY: return "ready";
  case CONNECT_FAILED: return "failed";
  }
  return "unknown";
}

static void
conn_enter_state (ClientConn *conn, ConnectState state)
{
  g_debug ("gatt client %s (%s): %s -> %s", conn->address, conn->adapter,
           connect_state_to_string (conn->state), connect_state_to_string (state));
  conn->state = state;
}

static void
clear_source (GSource **source)
{
  if (*source != NULL) {
    g_source_destroy (*source);
    g_clear_pointer (source, g_source_unref);
  }
}

static void
close_fd (int *fd)
{
  if (*fd >= 0) {
    close (*fd);
    *fd = -1;
  }
}

static void
conn_free (ClientConn *conn)
{
  clear_source (&conn->deadline);
  clear_source (&conn->timer);
  clear_source (&conn->cancel_idle);
  if (conn->calls != NULL)
    g_cancellable_cancel (conn->calls);
  if (conn->props_subscription != 0)
    g_dbus_connection_signal_unsubscribe (conn->bus, conn->props_subscription);
  if (conn->added_subscription != 0)
    g_dbus_connection_signal_unsubscribe (conn->bus, conn->added_subscription);
  close_fd (&conn->notify_fd);
  close_fd (&conn->write_fd);
  g_clear_object (&conn->calls);
  g_clear_error (&conn->last_error);
  g_clear_object (&conn->bus);
  g_main_context_unref (conn->context);
  g_free (conn->adapter);
  g_free (conn->adapter_path);
  g_free (conn->address);
  g_free (conn->device);
  g_free (conn->peer);
  g_free (conn->rx_path);
  g_free (conn->tx_path);
  g_free (conn);
}

static void
ignore_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree char *what = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL)
    g_debug ("gatt client: %s: %s", what, error->message);
}

static void
call_ignoring (ClientConn *conn, const char *path, const char *iface, const char *method)
{
  g_dbus_connection_call (conn->bus, BLUEZ, path, iface, method, NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, ignore_reply,
                          g_strdup_printf ("%s %s", method, path));
}

static void
stop_discovery (ClientConn *conn)
{
  if (!conn->discovering)
    return;
  conn->discovering = FALSE;
  call_ignoring (conn, conn->adapter_path, ADAPTER_IFACE, "StopDiscovery");
}

/* Undoes what the current attempt set up on the device. */
static void
release_device (ClientConn *conn)
{
  close_fd (&conn->notify_fd);
  close_fd (&conn->write_fd);
  if (conn->notify_fallback && conn->tx_path != NULL)
    call_ignoring (conn, conn->tx_path, GATT_CHRC_IFACE, "StopNotify");
  conn->notify_fallback = FALSE;
  /* Also cancels a connection BlueZ still tries to make. */
  if (conn->device != NULL)
    call_ignoring (conn, conn->device, DEVICE_IFACE, "Disconnect");
  conn->connected = FALSE;
  g_clear_pointer (&conn->device, g_free);
  g_clear_pointer (&conn->peer, g_free);
  g_clear_pointer (&conn->rx_path, g_free);
  g_clear_pointer (&conn->tx_path, g_free);
  conn->att_mtu = 0;
  conn->connect_asks = 0;
  conn->notify_asks = 0;
}

static void
conn_fail (ClientConn *conn, GError *error)
{
  g_autoptr (GTask) task = g_steal_pointer (&conn->task);

  g_info ("gatt client %s: %s", conn->address, error->message);
  conn_enter_state (conn, CONNECT_FAILED);
  g_cancellable_cancel (conn->calls);
  stop_discovery (conn);
  release_device (conn);
  if (conn->cancel_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), conn->cancel_id);
  conn->cancel_id = 0;
  g_task_return_error (task, error);
  conn_free (conn);
}

static gboolean
is_cancelled (const GError *error)
{
  return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static char *
bluez_error_name (const GError *error)
{
  return g_dbus_error_get_remote_error (error);
}

static void start_discovery (ClientConn *conn);

static gboolean
timer_cb (gpointer user_data)
{
  ClientConn *conn = user_data;
  ConnStep step = conn->timer_step;

  g_clear_pointer (&conn->timer, g_source_unref);
  conn->timer_step = NULL;
  step (conn);
  return G_SOURCE_REMOVE;
}

/* @step in @ms, replacing whatever the timer was to do. */
static void
conn_schedule (ClientConn *conn, guint ms, ConnStep step)
{
  clear_source (&conn->timer);
  conn->timer_step = step;
  conn->timer = g_timeout_source_new (ms);
  g_source_set_callback (conn->timer, timer_cb, conn, NULL);
  g_source_set_static_name (conn->timer, "[tally] gatt client timer");
  g_source_attach (conn->timer, conn->context);
}

/* BlueZ answered @remote, a "busy" that ends by itself: @step again after
 * ASK_AGAIN_MS.  FALSE when @remote is no such answer or @asks reached
 * @max in this attempt. */
static gboolean
conn_ask_again (ClientConn *conn,
                const char *remote,
                const char *busy_name,
                guint *asks,
                guint max,
                ConnStep step)
{
  if (g_strcmp0 (remote, busy_name) != 0 || *asks >= max)
    return FALSE;
  (*asks)++;
  g_debug ("gatt client %s: %s while %s, asking again (%u of %u)", conn->address, remote,
           connect_state_to_string (conn->state), *asks, max);
  conn_schedule (conn, ASK_AGAIN_MS, step);
  return TRUE;
}

/* Starts over from discovery, or fails once the attempts are used up.
 * @error (taken) says what went wrong this time. */
static void
conn_retry (ClientConn *conn, GError *error)
{
  g_cancellable_cancel (conn->calls);
  g_clear_object (&conn->calls);
  conn->calls = g_cancellable_new ();
  stop_discovery (conn);
  release_device (conn);
  g_clear_error (&conn->last_error);
  conn->last_error = error;

  if (conn->attempt >= MAX_ATTEMPTS) {
    conn_fail (conn, g_error_new (TALLY_ERROR, conn->last_error->code, "gave up after %u attempts: %s",
                                  conn->attempt, conn->last_error->message));
    return;
  }
  g_info ("gatt client %s: attempt %u failed (%s), trying again", conn->address, conn->attempt,
          error->message);
  conn_enter_state (conn, CONNECT_BACKING_OFF);
  conn_schedule (conn,
                 BACKOFF_BASE_MS * conn->attempt + g_random_int_range (0, BACKOFF_JITTER_MS),
                 start_discovery);
}

static gboolean
deadline_cb (gpointer user_data)
{
  ClientConn *conn = user_data;

  g_clear_pointer (&conn->deadline, g_source_unref);
  switch (conn->state) {
  case CONNECT_DISCOVERING:
  case CONNECT_BACKING_OFF:
    if (conn->last_error != NULL)
      conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                    "no payee at %s within the timeout; last attempt: %s",
                                    conn->address, conn->last_error->message));
    else
      conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                    "no payee at %s found on %s within the timeout", conn->address,
                                    conn->adapter));
    break;
  case CONNECT_STARTING:
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
    conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                  "connecting to %s timed out while %s", conn->address,
                                  connect_state_to_string (conn->state)));
    break;
  case CONNECT_READY:
  case CONNECT_FAILED:
    break;
  }
  return G_SOURCE_REMOVE;
}

static gboolean
cancel_idle_cb (gpointer user_data)
{
  ClientConn *conn = user_data;

  g_clear_pointer (&conn->cancel_idle, g_source_unref);
  conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "connecting to %s cancelled",
                                conn->address));
  return G_SOURCE_REMOVE;
}

static void
on_cancelled (GCancellable *cancellable, gpointer user_data)
{
  ClientConn *conn = user_data;

  /* Not from inside the cancellable's handler, which may run in another
   * thread. */
  if (conn->cancel_idle != NULL)
    return;
  conn->cancel_idle = g_idle_source_new ();
  g_source_set_callback (conn->cancel_idle, cancel_idle_cb, conn, NULL);
  g_source_set_static_name (conn->cancel_idle, "[tally] gatt client cancel");
  g_source_attach (conn->cancel_idle, conn->context);
}

/* --- the link, once ready ------------------------------------------------------- */

static void
write_value_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (TallyLink) link = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL && !is_cancelled (error)) {
    g_autoptr (GError) copy = g_error_copy (error);
    g_autofree char *why = NULL;

    g_dbus_error_strip_remote_error (copy);
    why = g_strdup_printf ("WriteValue failed: %s", copy->message);
    tally_gatt_link_lost (link, why);
  }
}

static gboolean
client_link_send (gpointer owner, TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  ClientConn *conn = owner;
  GVariantBuilder options;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  /* Write Command: the same ATT procedure a socket from AcquireWrite uses. */
  g_variant_builder_add (&options, "{sv}", "type", g_variant_new_string ("command"));
  g_dbus_connection_call (conn->bus, BLUEZ, conn->rx_path, GATT_CHRC_IFACE, "WriteValue",
                          g_variant_new ("(@aya{sv})",
                                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len,
                                                                    1),
                                         &options),
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, write_value_done,
                          tally_link_ref (link));
  return TRUE;
}

static void
client_link_stopped (gpointer owner, TallyLink *link)
{
  ClientConn *conn = owner;

  g_info ("gatt client %s: link closed, disconnecting %s", conn->address,
          conn->device ? conn->device : "");
  conn->link = NULL;
  /* Writes still queued in BlueZ leave before the disconnection. */
  release_device (conn);
  conn_free (conn);
}

static const TallyGattLinkOwner client_link_owner = {
  .send = client_link_send,
  .stopped = client_link_stopped,
};

static void
conn_ready (ClientConn *conn)
{
  g_autoptr (GTask) task = g_steal_pointer (&conn->task);
  gsize mtu = tally_gatt_payload_for_att_mtu (conn->att_mtu);
  TallyGattConnectInfo *info;

  if (mtu < TALLY_FRAME_MIN_MTU)
    mtu = TALLY_FRAME_MIN_MTU;
  clear_source (&conn->deadline);
  clear_source (&conn->timer);
  if (conn->cancel_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), conn->cancel_id);
  conn->cancel_id = 0;

  conn->info.ready = g_get_monotonic_time ();
  conn->info.attempts = conn->attempt;
  conn->info.att_mtu = conn->att_mtu;
  conn->info.notify_fd = conn->notify_fd >= 0;
  conn->info.write_fd = conn->write_fd >= 0;
  conn->link = tally_gatt_link_new (mtu, conn->peer, &client_link_owner, conn);
  if (conn->notify_fd >= 0) {
    tally_gatt_link_take_rx_fd (conn->link, conn->notify_fd);
    conn->notify_fd = -1;
  }
  if (conn->write_fd >= 0) {
    tally_gatt_link_take_tx_fd (conn->link, conn->write_fd);
    conn->write_fd = -1;
  }
  conn_enter_state (conn, CONNECT_READY);
  g_info ("gatt client %s: ready on %s after %u attempt(s): ATT MTU %u, notify via %s, write via "
          "%s",
          conn->address, conn->peer, conn->attempt, conn->att_mtu,
          conn->info.notify_fd ? "socket" : "Value changes",
          conn->info.write_fd ? "socket" : "WriteValue");

  info = g_new (TallyGattConnectInfo, 1);
  *info = conn->info;
  g_task_set_task_data (task, info, g_free);
  g_task_return_pointer (task, conn->link, (GDestroyNotify) tally_link_unref);
}

/* --- write, notify ---------------------------------------------------------------- */

static gboolean
take_acquired (ClientConn *conn,
               GObject *source,
               GAsyncResult *result,
               int *fd_out,
               GError **error)
{
  g_autoptr (GUnixFDList) fds = NULL;
  g_autoptr (GVariant) reply = NULL;
  gint32 handle;
  guint16 mtu;

  reply = g_dbus_connection_call_with_unix_fd_list_finish (G_DBUS_CONNECTION (source), &fds, result,
                                                           error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(hq)", &handle, &mtu);
  if (fds == NULL || handle < 0 || handle >= g_unix_fd_list_get_length (fds)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "BlueZ sent no socket");
    return FALSE;
  }
  *fd_out = g_unix_fd_list_get (fds, handle, error);
  if (*fd_out < 0)
    return FALSE;
  if (mtu > conn->att_mtu)
    conn->att_mtu = mtu;
  return TRUE;
}

static void
acquire_write_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;

  if (!take_acquired (conn, source, result, &conn->write_fd, &error)) {
    if (is_cancelled (error))
      return;
    /* A peer without WriteAcquired support: WriteValue, type command. */
    g_info ("gatt client %s: AcquireWrite: %s; writing through WriteValue", conn->address,
            error->message);
  }
  conn_ready (conn);
}

static void
open_write (ClientConn *conn)
{
  conn_enter_state (conn, CONNECT_OPENING);
  g_dbus_connection_call_with_unix_fd_list (
    conn->bus, BLUEZ, conn->rx_path, GATT_CHRC_IFACE, "AcquireWrite",
    g_variant_new ("(@a{sv})", g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
    G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, conn->calls, acquire_write_done,
    conn);
}

static void
start_notify_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    g_autofree char *remote = NULL;

    if (is_cancelled (error))
      return;
    remote = bluez_error_name (error);
    g_dbus_error_strip_remote_error (error);
    conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                   "StartNotify on %s: %s%s%s", conn->peer, error->message,
                                   remote ? " " : "", remote ? remote : ""));
    return;
  }
  conn->notify_fallback = TRUE;
  open_write (conn);
}

static void subscribe (ClientConn *conn);

static void
acquire_notify_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;

  if (!take_acquired (conn, source, result, &conn->notify_fd, &error)) {
    g_autofree char *remote = NULL;

    if (is_cancelled (error))
      return;
    remote = bluez_error_name (error);
    /* Our socket of an attempt before, which BlueZ has not let go yet. */
    if (conn_ask_again (conn, remote, "org.bluez.Error.NotPermitted", &conn->notify_asks,
                        NOTIFY_ASKS, subscribe))
      return;
    g_info ("gatt client %s: AcquireNotify: %s; using StartNotify", conn->address,
            error->message);
    g_dbus_connection_call (conn->bus, BLUEZ, conn->tx_path, GATT_CHRC_IFACE, "StartNotify", NULL,
                            NULL, G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, start_notify_done,
                            conn);
    return;
  }
  open_write (conn);
}

static void
subscribe (ClientConn *conn)
{
  conn_enter_state (conn, CONNECT_SUBSCRIBING);
  /* Notifications first: the payee answers our first write at once. */
  g_dbus_connection_call_with_unix_fd_list (
    conn->bus, BLUEZ, conn->tx_path, GATT_CHRC_IFACE, "AcquireNotify",
    g_variant_new ("(@a{sv})", g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
    G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, conn->calls, acquire_notify_done,
    conn);
}

/* --- services -------------------------------------------------------------------- */

static void
resolve_timed_out (ClientConn *conn)
{
  conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                 "%s resolved no Tally service within %d s", conn->peer,
                                 RESOLVE_TIMEOUT_S));
}

static void
objects_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) objects = NULL;
  g_autofree char *service = NULL;
  GVariantIter iter;
  const char *path;
  GVariant *ifaces;

  if (reply == NULL && is_cancelled (error))
    return;
  /* Several lookups may be in flight; the first to find the service wins. */
  if (conn->state != CONNECT_RESOLVING)
    return;
  if (reply == NULL) {
    conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                   "listing BlueZ's objects: %s", error->message));
    return;
  }
  objects = g_variant_get_child_value (reply, 0);

  /* Our primary service under the device, then its two characteristics. */
  /* g_variant_iter_next, not _loop: leaving a _loop early leaks its last
   * values. */
  g_variant_iter_init (&iter, objects);
  while (service == NULL && g_variant_iter_next (&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
    g_autoptr (GVariant) owned = ifaces;
    g_autoptr (GVariant) props = g_variant_lookup_value (ifaces, GATT_SERVICE_IFACE, NULL);
    const char *uuid = NULL;

    if (props != NULL && g_str_has_prefix (path, conn->device) &&
        g_variant_lookup (props, "UUID", "&s", &uuid) &&
        g_ascii_strcasecmp (uuid, TALLY_GATT_SERVICE_UUID) == 0)
      service = g_strdup (path);
  }
  if (service != NULL) {
    g_variant_iter_init (&iter, objects);
    while (g_variant_iter_loop (&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
      g_autoptr (GVariant) props = g_variant_lookup_value (ifaces, GATT_CHRC_IFACE, NULL);
      const char *uuid = NULL, *owner = NULL;

      if (props == NULL || !g_variant_lookup (props, "UUID", "&s", &uuid) ||
          !g_variant_lookup (props, "Service", "&o", &owner) || strcmp (owner, service) != 0)
        continue;
      if (g_ascii_strcasecmp (uuid, TALLY_GATT_RX_UUID) == 0) {
        g_free (conn->rx_path);
        conn->rx_path = g_strdup (path);
      } else if (g_ascii_strcasecmp (uuid, TALLY_GATT_TX_UUID) == 0) {
        guint16 mtu = 0;

        g_free (conn->tx_path);
        conn->tx_path = g_strdup (path);
        if (g_variant_lookup (props, "MTU", "q", &mtu) && mtu > conn->att_mtu)
          conn->att_mtu = mtu;
      }
    }
  }

  if (conn->rx_path == NULL || conn->tx_path == NULL) {
    /* The objects may trail ServicesResolved; InterfacesAdded brings us
     * back here, the timer bounds the wait. */
    g_debug ("gatt client %s: Tally service not (yet) under %s", conn->address, conn->device);
    return;
  }
  clear_source (&conn->timer);
  conn->info.resolved = g_get_monotonic_time ();
  g_info ("gatt client %s: service resolved on %s", conn->address, conn->peer);
  subscribe (conn);
}

static void
find_service (ClientConn *conn)
{
  g_dbus_connection_call (conn->bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects", NULL,
                          G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, -1,
                          conn->calls, objects_done, conn);
}

static void
resolved_prop_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) value = NULL;

  if (reply == NULL) {
    if (is_cancelled (error))
      return;
    conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "%s: %s", conn->peer,
                                   error->message));
    return;
  }
  g_variant_get (reply, "(v)", &value);
  if (conn->state == CONNECT_RESOLVING && g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN) &&
      g_variant_get_boolean (value))
    find_service (conn);
}

/* --- connect --------------------------------------------------------------------- */

static void do_connect (ClientConn *conn);

static void
connect_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autofree char *remote = NULL;

  if (reply == NULL) {
    if (is_cancelled (error))
      return;
    remote = bluez_error_name (error);
    /* Another connect to it is under way (ours or another client's); 5.66
     * also says so as Failed "Operation already in progress". */
    if (g_strcmp0 (remote, "org.bluez.Error.Failed") == 0 &&
        strstr (error->message, "already in progress") != NULL) {
      g_free (remote);
      remote = g_strdup ("org.bluez.Error.InProgress");
    }
    if (conn_ask_again (conn, remote, "org.bluez.Error.InProgress", &conn->connect_asks,
                        CONNECT_ASKS, do_connect))
      return;
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
      /* Busy with another payer (it stopped advertising), or gone. */
      conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                     "%s accepted no connection within %d s", conn->peer,
                                     CONNECT_TIMEOUT_MS / 1000));
      return;
    }
    if (g_strcmp0 (remote, "org.bluez.Error.AlreadyConnected") != 0) {
      g_dbus_error_strip_remote_error (error);
      conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                     "cannot connect to %s: %s (%s)", conn->peer, error->message,
                                     remote ? remote : "no BlueZ error name"));
      return;
    }
  }
  conn->connected = TRUE;
  conn->info.connected = g_get_monotonic_time ();
  g_info ("gatt client %s: connected to %s", conn->address, conn->peer);
  conn_enter_state (conn, CONNECT_RESOLVING);
  conn_schedule (conn, RESOLVE_TIMEOUT_S * 1000, resolve_timed_out);
  g_dbus_connection_call (conn->bus, BLUEZ, conn->device, PROPERTIES_IFACE, "Get",
                          g_variant_new ("(ss)", DEVICE_IFACE, "ServicesResolved"),
                          G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, -1, conn->calls,
                          resolved_prop_done, conn);
}

static void
do_connect (ClientConn *conn)
{
  conn_enter_state (conn, CONNECT_CONNECTING);
  g_dbus_connection_call (conn->bus, BLUEZ, conn->device, DEVICE_IFACE, "Connect", NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, CONNECT_TIMEOUT_MS, conn->calls, connect_done,
                          conn);
}

/* --- discovery ------------------------------------------------------------------- */

static gboolean
device_matches (ClientConn *conn, GVariant *props)
{
  g_autofree const char **uuids = NULL;
  const char *address = NULL;
  g_autoptr (GVariant) mfr = NULL;
  gboolean has_service = FALSE;
  const guint8 *bytes;
  gsize len;

  if (g_variant_lookup (props, "UUIDs", "^a&s", &uuids))
    for (guint i = 0; uuids[i] != NULL; i++)
      if (g_ascii_strcasecmp (uuids[i], TALLY_GATT_SERVICE_UUID) == 0)
        has_service = TRUE;
  if (!has_service)
    return FALSE;

  switch (conn->target.kind) {
  case TALLY_GATT_TARGET_ANY:
    return TRUE;
  case TALLY_GATT_TARGET_ADDRESS:
    return g_variant_lookup (props, "Address", "&s", &address) &&
           g_ascii_strcasecmp (address, conn->target.address) == 0;
  case TALLY_GATT_TARGET_TAG:
    mfr = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
    if (mfr == NULL)
      return FALSE;
    {
      GVariantIter iter;
      guint16 company;
      GVariant *value;

      g_variant_iter_init (&iter, mfr);
      while (g_variant_iter_next (&iter, "{qv}", &company, &value)) {
        g_autoptr (GVariant) owned = value;

        if (company != TALLY_GATT_COMPANY_ID || !g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
          continue;
        bytes = g_variant_get_fixed_array (value, &len, 1);
        if (len == TALLY_GATT_TAG_BYTES && memcmp (bytes, conn->target.tag, len) == 0)
          return TRUE;
      }
    }
    return FALSE;
  }
  return FALSE;
}

static void
choose_device (ClientConn *conn, const char *device, GVariant *props)
{
  const char *address = NULL;

  g_free (conn->device);
  conn->device = g_strdup (device);
  g_variant_lookup (props, "Address", "&s", &address);
  g_free (conn->peer);
  conn->peer = g_strdup_printf ("ble:%s", address ? address : device);
  conn->info.discovered = g_get_monotonic_time ();
  g_info ("gatt client %s: found %s", conn->address, conn->peer);
  stop_discovery (conn);
  do_connect (conn);
}

typedef struct
{
  ClientConn *conn;
  char *device;
} Candidate;

static void
device_props_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Candidate *candidate = user_data;
  ClientConn *conn = candidate->conn;
  g_autofree char *device = candidate->device;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) props = NULL;

  g_free (candidate);
  /* Cancelled: @conn may be gone. */
  if (reply == NULL || conn->state != CONNECT_DISCOVERING)
    return;
  g_variant_get (reply, "(@a{sv})", &props);
  if (device_matches (conn, props))
    choose_device (conn, device, props);
}

/* Only what BlueZ reports during our discovery counts: a device object
 * can outlive the payee's advertising by a long time. */
static void
consider_device (ClientConn *conn, const char *device, GVariant *props)
{
  Candidate *candidate;

  if (props != NULL) {
    if (device_matches (conn, props))
      choose_device (conn, device, props);
    return;
  }
  candidate = g_new0 (Candidate, 1);
  candidate->conn = conn;
  candidate->device = g_strdup (device);
  g_dbus_connection_call (conn->bus, BLUEZ, device, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", DEVICE_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, device_props_done, candidate);
}

static gboolean
is_adapter_device (ClientConn *conn, const char *path)
{
  gsize len = strlen (conn->adapter_path);

  return strncmp (path, conn->adapter_path, len) == 0 && g_str_has_prefix (path + len, "/dev_") &&
         strchr (path + len + 1, '/') == NULL;
}

static void
on_device_changed (ClientConn *conn, const char *path, GVariant *changed)
{
  gboolean flag;

  switch (conn->state) {
  case CONNECT_DISCOVERING:
    /* A report seen now: RSSI, advertising data or UUIDs updated. */
    {
      g_autoptr (GVariant) rssi = g_variant_lookup_value (changed, "RSSI", NULL);
      g_autoptr (GVariant) mfr = g_variant_lookup_value (changed, "ManufacturerData", NULL);
      g_autoptr (GVariant) uuids = g_variant_lookup_value (changed, "UUIDs", NULL);

      if (rssi != NULL || mfr != NULL || uuids != NULL)
        consider_device (conn, path, NULL);
    }
    return;
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_READY:
    break;
  case CONNECT_STARTING:
  case CONNECT_BACKING_OFF:
  case CONNECT_FAILED:
    return;
  }
  if (conn->device == NULL || strcmp (path, conn->device) != 0)
    return;

  if (g_variant_lookup (changed, "Connected", "b", &flag) && !flag) {
    switch (conn->state) {
    case CONNECT_READY:
      tally_gatt_link_lost (conn->link, "the payee disconnected");
      return;
    case CONNECT_CONNECTING:
      /* Connect's own reply says how it failed. */
      return;
    case CONNECT_RESOLVING:
    case CONNECT_SUBSCRIBING:
    case CONNECT_OPENING:
      /* A payee busy with another payer turns newcomers away like this. */
      conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                     "%s disconnected while %s", conn->peer,
                                     connect_state_to_string (conn->state)));
      return;
    case CONNECT_STARTING:
    case CONNECT_DISCOVERING:
    case CONNECT_BACKING_OFF:
    case CONNECT_FAILED:
      return;
    }
  }
  if (conn->state == CONNECT_RESOLVING && g_variant_lookup (changed, "ServicesResolved", "b", &flag) &&
      flag)
    find_service (conn);
}

/* bluetoothd drops every discovery session when the adapter goes off, and
 * says nothing more to the session's owner: the Discovering property
 * going false is all there is. */
static void
on_adapter_changed (ClientConn *conn, GVariant *changed)
{
  gboolean discovering = TRUE, powered = TRUE;

  switch (conn->state) {
  case CONNECT_DISCOVERING:
    break;
  case CONNECT_STARTING:
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_BACKING_OFF:
  case CONNECT_READY:
  case CONNECT_FAILED:
    return;
  }
  g_variant_lookup (changed, "Discovering", "b", &discovering);
  g_variant_lookup (changed, "Powered", "b", &powered);
  if (!conn->discovering || (discovering && powered))
    return;
  conn->discovering = FALSE;
  conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "discovery on %s stopped%s",
                                 conn->adapter, powered ? "" : ": the adapter was switched off"));
}

static void
on_properties_changed (GDBusConnection *connection,
                       const char *sender,
                       const char *path,
                       const char *interface_name,
                       const char *signal_name,
                       GVariant *parameters,
                       gpointer user_data)
{
  ClientConn *conn = user_data;
  const char *iface;
  g_autoptr (GVariant) changed = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (parameters, "(&s@a{sv}@as)", &iface, &changed, NULL);

  if (strcmp (iface, DEVICE_IFACE) == 0 && is_adapter_device (conn, path)) {
    on_device_changed (conn, path, changed);
    return;
  }
  if (strcmp (iface, ADAPTER_IFACE) == 0 && strcmp (path, conn->adapter_path) == 0) {
    on_adapter_changed (conn, changed);
    return;
  }
  /* Notifications without AcquireNotify: each Value change is one. */
  if (strcmp (iface, GATT_CHRC_IFACE) == 0 && conn->state == CONNECT_READY &&
      conn->notify_fallback && conn->tx_path != NULL && strcmp (path, conn->tx_path) == 0) {
    g_autoptr (GVariant) value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
    gsize len;
    const guint8 *data;

    if (value == NULL)
      return;
    data = g_variant_get_fixed_array (value, &len, 1);
    if (len > 0)
      tally_gatt_link_receive (conn->link, data, len);
  }
}

static void
on_interfaces_added (GDBusConnection *connection,
                     const char *sender,
                     const char *path,
                     const char *interface_name,
                     const char *signal_name,
                     GVariant *parameters,
                     gpointer user_data)
{
  ClientConn *conn = user_data;
  const char *object;
  g_autoptr (GVariant) ifaces = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    return;
  g_variant_get (parameters, "(&o@a{sa{sv}})", &object, &ifaces);

  switch (conn->state) {
  case CONNECT_DISCOVERING:
    if (is_adapter_device (conn, object)) {
      g_autoptr (GVariant) props = g_variant_lookup_value (ifaces, DEVICE_IFACE, NULL);

      if (props != NULL)
        consider_device (conn, object, props);
    }
    break;
  case CONNECT_RESOLVING:
    /* Our service's objects appearing after ServicesResolved. */
    if (conn->device != NULL && g_str_has_prefix (object, conn->device))
      find_service (conn);
    break;
  case CONNECT_STARTING:
  case CONNECT_CONNECTING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_BACKING_OFF:
  case CONNECT_READY:
  case CONNECT_FAILED:
    break;
  }
}

static void
start_discovery_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autofree char *remote = NULL;

  if (reply == NULL) {
    if (is_cancelled (error))
      return;
    remote = bluez_error_name (error);
    /* InProgress: this client already discovers; it goes on. */
    if (g_strcmp0 (remote, "org.bluez.Error.InProgress") != 0) {
      g_dbus_error_strip_remote_error (error);
      conn_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                     "cannot discover on %s: %s", conn->adapter, error->message));
      return;
    }
  }
  conn->discovering = TRUE;
  g_info ("gatt client %s: scanning on %s", conn->address, conn->adapter);
}

static void
set_filter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    if (is_cancelled (error))
      return;
    g_dbus_error_strip_remote_error (error);
    conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                  "Bluetooth adapter %s: SetDiscoveryFilter: %s", conn->adapter,
                                  error->message));
    return;
  }
  g_dbus_connection_call (conn->bus, BLUEZ, conn->adapter_path, ADAPTER_IFACE, "StartDiscovery",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, conn->calls,
                          start_discovery_done, conn);
}

static void
start_discovery (ClientConn *conn)
{
  GVariantBuilder filter;
  const char *uuids[] = { TALLY_GATT_SERVICE_UUID, NULL };

  conn->attempt++;
  conn_enter_state (conn, CONNECT_DISCOVERING);
  g_variant_builder_init (&filter, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&filter, "{sv}", "UUIDs", g_variant_new_strv (uuids, -1));
  g_variant_builder_add (&filter, "{sv}", "Transport", g_variant_new_string ("le"));
  /* Every report, so a new request tag shows at once. */
  g_variant_builder_add (&filter, "{sv}", "DuplicateData", g_variant_new_boolean (TRUE));
  g_dbus_connection_call (conn->bus, BLUEZ, conn->adapter_path, ADAPTER_IFACE,
                          "SetDiscoveryFilter", g_variant_new ("(a{sv})", &filter), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, set_filter_done, conn);
}

static void
adapter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) powered = NULL;

  if (reply == NULL) {
    if (is_cancelled (error))
      return;
    g_dbus_error_strip_remote_error (error);
    conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                  "no Bluetooth adapter %s: %s", conn->adapter, error->message));
    return;
  }
  g_variant_get (reply, "(v)", &powered);
  if (!g_variant_is_of_type (powered, G_VARIANT_TYPE_BOOLEAN) || !g_variant_get_boolean (powered)) {
    conn_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                  "Bluetooth adapter %s is powered off", conn->adapter));
    return;
  }
  start_discovery (conn);
}

void
tally_gatt_connect_async (GDBusConnection *system_bus,
                          const char *adapter,
                          const char *address,
                          guint timeout_seconds,
                          GCancellable *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  GError *error = NULL;
  ClientConn *conn;

  g_return_if_fail (G_IS_DBUS_CONNECTION (system_bus));
  g_return_if_fail (adapter != NULL && address != NULL && timeout_seconds > 0);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, tally_gatt_connect_async);
  g_task_set_check_cancellable (task, FALSE);

  conn = g_new0 (ClientConn, 1);
  if (!tally_gatt_address_parse (address, &conn->target, &error)) {
    g_free (conn);
    g_task_return_error (task, error);
    return;
  }
  if (!g_dbus_is_member_name (adapter) || strchr (adapter, '/') != NULL) {
    g_free (conn);
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                             "\"%s\" is not an adapter name like hci0", adapter);
    return;
  }

  conn->state = CONNECT_STARTING;
  conn->bus = g_object_ref (system_bus);
  conn->adapter = g_strdup (adapter);
  conn->adapter_path = g_strdup_printf ("/org/bluez/%s", adapter);
  conn->address = g_strdup (address);
  conn->context = g_main_context_ref_thread_default ();
  conn->calls = g_cancellable_new ();
  conn->notify_fd = -1;
  conn->write_fd = -1;
  conn->info.started = g_get_monotonic_time ();
  conn->task = g_steal_pointer (&task);

  conn->props_subscription = g_dbus_connection_signal_subscribe (
    system_bus, BLUEZ, PROPERTIES_IFACE, "PropertiesChanged", NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
    on_properties_changed, conn, NULL);
  conn->added_subscription = g_dbus_connection_signal_subscribe (
    system_bus, BLUEZ, OBJECT_MANAGER_IFACE, "InterfacesAdded", "/", NULL,
    G_DBUS_SIGNAL_FLAGS_NONE, on_interfaces_added, conn, NULL);

  conn->deadline = g_timeout_source_new_seconds (timeout_seconds);
  g_source_set_callback (conn->deadline, deadline_cb, conn, NULL);
  g_source_set_static_name (conn->deadline, "[tally] gatt client deadline");
  g_source_attach (conn->deadline, conn->context);
  if (cancellable != NULL)
    conn->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), conn, NULL);

  g_info ("gatt client %s: looking for a payee on %s", address, adapter);
  g_dbus_connection_call (system_bus, BLUEZ, conn->adapter_path, PROPERTIES_IFACE, "Get",
                          g_variant_new ("(ss)", ADAPTER_IFACE, "Powered"), G_VARIANT_TYPE ("(v)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, adapter_done, conn);
}

TallyLink *
tally_gatt_connect_finish (GAsyncResult *result, TallyGattConnectInfo *info, GError **error)
{
  TallyGattConnectInfo *data;

  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, tally_gatt_connect_async), NULL);

  data = g_task_get_task_data (G_TASK (result));
  if (info != NULL) {
    if (data != NULL)
      *info = *data;
    else
      memset (info, 0, sizeof *info);
  }
  return g_task_propagate_pointer (G_TASK (result), error);
}
