/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client-private.h"

#include <string.h>

#include <gio/gunixfdlist.h>

#include "tally-bluez-private.h"
#include "tally-gatt-link.h"

/* From a device found to a link: Connect, ServicesResolved and our
 * service's objects, AcquireNotify (or StartNotify), AcquireWrite (or
 * WriteValue), and the link the attempt ends with. */

/* --- the link, once ready ------------------------------------------------------- */

static void
client_link_stopped (gpointer owner, TallyLink *link)
{
  ClientConn *conn = owner;

  g_info ("gatt client %s: link closed, disconnecting %s", conn->address,
          conn->device ? conn->device : "");
  conn->link = NULL;
  /* Writes still queued in BlueZ leave before the disconnection. */
  gatt_client_release_device (conn);
  gatt_client_free (conn);
}

static const TallyGattLinkOwner client_link_owner = {
  .send = gatt_client_link_send,
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
  gatt_client_clear_source (&conn->deadline);
  gatt_client_clear_source (&conn->timer);
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
  gatt_client_enter_state (conn, CONNECT_READY);
  gatt_client_enter_write_state (conn, conn->rx_write_request ? WRITE_FIRST_REQUEST
                                                              : WRITE_BY_COMMAND);
  g_info ("gatt client %s: ready on %s after %u attempt(s): ATT MTU %u, notify via %s, write via "
          "%s",
          conn->address, conn->peer, conn->attempt, conn->att_mtu,
          conn->info.notify_fd ? "socket" : "Value changes",
          conn->rx_write_request ? "a Write Request first"
          : conn->info.write_fd  ? "socket"
                                 : "WriteValue");

  info = g_new (TallyGattConnectInfo, 1);
  *info = conn->info;
  g_task_set_task_data (task, info, g_free);
  g_task_return_pointer (task, conn->link, (GDestroyNotify) tally_link_unref);
}

/* --- write, notify ---------------------------------------------------------------- */

gboolean
gatt_client_take_acquired (ClientConn *conn,
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

/* AcquireWrite or AcquireNotify on @path: a socket and the ATT MTU. */
void
gatt_client_acquire (ClientConn *conn,
                     const char *path,
                     const char *method,
                     GAsyncReadyCallback done)
{
  g_dbus_connection_call_with_unix_fd_list (
    conn->bus, BLUEZ, path, GATT_CHRC_IFACE, method,
    g_variant_new ("(@a{sv})", g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
    G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, conn->calls, done, conn);
}

static void
acquire_write_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;

  if (!gatt_client_take_acquired (conn, source, result, &conn->write_fd, &error)) {
    if (gatt_client_is_cancelled (error))
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
  gatt_client_enter_state (conn, CONNECT_OPENING);
  /* A payee taking a Write Request first: the socket only after its
   * answer (see WriteState). */
  if (conn->rx_write_request) {
    conn_ready (conn);
    return;
  }
  gatt_client_acquire (conn, conn->rx_path, "AcquireWrite", acquire_write_done);
}

static void
start_notify_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *remote = NULL;
  g_autoptr (GVariant) reply = tally_bluez_call_finish (source, result, &remote, &error);

  if (reply == NULL) {
    if (gatt_client_is_cancelled (error))
      return;
    g_dbus_error_strip_remote_error (error);
    gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
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

  if (!gatt_client_take_acquired (conn, source, result, &conn->notify_fd, &error)) {
    g_autofree char *remote = NULL;

    if (gatt_client_is_cancelled (error))
      return;
    remote = gatt_client_bluez_error_name (error);
    /* Our socket of an attempt before, which BlueZ has not let go yet. */
    if (gatt_client_ask_again (conn, remote, BLUEZ_ERROR_NOT_PERMITTED, &conn->notify_asks,
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
  gatt_client_enter_state (conn, CONNECT_SUBSCRIBING);
  /* Notifications first: the payee answers our first write at once. */
  gatt_client_acquire (conn, conn->tx_path, "AcquireNotify", acquire_notify_done);
}

/* --- services -------------------------------------------------------------------- */

static void
resolve_timed_out (ClientConn *conn)
{
  gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
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

  if (reply == NULL && gatt_client_is_cancelled (error))
    return;
  /* Several lookups may be in flight; the first to find the service wins. */
  if (conn->state != CONNECT_RESOLVING)
    return;
  if (reply == NULL) {
    gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
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
        g_autofree const char **flags = NULL;

        g_free (conn->rx_path);
        conn->rx_path = g_strdup (path);
        /* An older payee offers Write Commands only. */
        conn->rx_write_request = g_variant_lookup (props, "Flags", "^a&s", &flags) &&
                                 g_strv_contains (flags, "write");
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
  gatt_client_clear_source (&conn->timer);
  conn->info.resolved = g_get_monotonic_time ();
  g_info ("gatt client %s: service resolved on %s", conn->address, conn->peer);
  subscribe (conn);
}

void
gatt_client_find_service (ClientConn *conn)
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
  gboolean resolved;

  if (!tally_bluez_get_flag_finish (source, result, &resolved, &error)) {
    if (gatt_client_is_cancelled (error))
      return;
    gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "%s: %s",
                                          conn->peer, error->message));
    return;
  }
  if (conn->state == CONNECT_RESOLVING && resolved)
    gatt_client_find_service (conn);
}

/* --- connect --------------------------------------------------------------------- */

static void
connect_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *remote = NULL;
  g_autoptr (GVariant) reply = tally_bluez_call_finish (source, result, &remote, &error);

  if (reply == NULL) {
    if (gatt_client_is_cancelled (error))
      return;
    /* Another connect to it is under way (ours or another client's); 5.66
     * also says so as Failed "Operation already in progress". */
    if (g_strcmp0 (remote, BLUEZ_ERROR_FAILED) == 0 &&
        strstr (error->message, "already in progress") != NULL) {
      g_free (remote);
      remote = g_strdup (BLUEZ_ERROR_IN_PROGRESS);
    }
    if (gatt_client_ask_again (conn, remote, BLUEZ_ERROR_IN_PROGRESS, &conn->connect_asks,
                               CONNECT_ASKS, gatt_client_connect))
      return;
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
      /* Busy with another payer (it stopped advertising), or gone. */
      gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                            "%s accepted no connection within %d s", conn->peer,
                                            CONNECT_TIMEOUT_MS / 1000));
      return;
    }
    if (g_strcmp0 (remote, BLUEZ_ERROR_ALREADY_CONNECTED) != 0) {
      g_dbus_error_strip_remote_error (error);
      gatt_client_retry (
        conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "cannot connect to %s: %s (%s)",
                           conn->peer, error->message, remote ? remote : "no BlueZ error name"));
      return;
    }
  }
  conn->connected = TRUE;
  conn->info.connected = g_get_monotonic_time ();
  g_info ("gatt client %s: connected to %s", conn->address, conn->peer);
  gatt_client_enter_state (conn, CONNECT_RESOLVING);
  gatt_client_schedule (conn, RESOLVE_TIMEOUT_S * 1000, resolve_timed_out);
  tally_bluez_get_flag (conn->bus, conn->device, DEVICE_IFACE, "ServicesResolved", conn->calls,
                        resolved_prop_done, conn);
}

void
gatt_client_connect (ClientConn *conn)
{
  gatt_client_enter_state (conn, CONNECT_CONNECTING);
  g_dbus_connection_call (conn->bus, BLUEZ, conn->device, DEVICE_IFACE, "Connect", NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, CONNECT_TIMEOUT_MS, conn->calls, connect_done,
                          conn);
}
