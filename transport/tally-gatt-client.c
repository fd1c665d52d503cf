/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client-private.h"

#include <string.h>
#include <unistd.h>

#include "tally-bluez-private.h"

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

const char *
gatt_client_state_to_string (ConnectState state)
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

void
gatt_client_enter_state (ClientConn *conn, ConnectState state)
{
  g_debug ("gatt client %s (%s): %s -> %s", conn->address, conn->adapter,
           gatt_client_state_to_string (conn->state), gatt_client_state_to_string (state));
  conn->state = state;
}

void
gatt_client_clear_source (GSource **source)
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

void
gatt_client_free (ClientConn *conn)
{
  gatt_client_clear_source (&conn->deadline);
  gatt_client_clear_source (&conn->timer);
  gatt_client_clear_source (&conn->cancel_idle);
  if (conn->calls != NULL)
    g_cancellable_cancel (conn->calls);
  tally_bluez_unwatch (&conn->props_watch, conn->bus);
  tally_bluez_unwatch (&conn->added_watch, conn->bus);
  if (conn->scanner != NULL)
    tally_gatt_scanner_set_handlers (conn->scanner, NULL, NULL, NULL);
  g_clear_pointer (&conn->scanner, tally_gatt_scanner_unref);
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
call_ignoring (ClientConn *conn, const char *path, const char *iface, const char *method)
{
  tally_bluez_call_ignoring (conn->bus, path, iface, method,
                             g_strdup_printf ("gatt client: %s %s", method, path));
}

void
gatt_client_stop_discovery (ClientConn *conn)
{
  if (conn->scanner != NULL)
    tally_gatt_scanner_stop (conn->scanner);
}

/* Undoes what the current attempt set up on the device. */
void
gatt_client_release_device (ClientConn *conn)
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

void
gatt_client_fail (ClientConn *conn, GError *error)
{
  g_autoptr (GTask) task = g_steal_pointer (&conn->task);

  g_info ("gatt client %s: %s", conn->address, error->message);
  gatt_client_enter_state (conn, CONNECT_FAILED);
  g_cancellable_cancel (conn->calls);
  gatt_client_stop_discovery (conn);
  gatt_client_release_device (conn);
  if (conn->cancel_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), conn->cancel_id);
  conn->cancel_id = 0;
  g_task_return_error (task, error);
  gatt_client_free (conn);
}

gboolean
gatt_client_is_cancelled (const GError *error)
{
  return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

char *
gatt_client_bluez_error_name (const GError *error)
{
  return g_dbus_error_get_remote_error (error);
}


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
void
gatt_client_schedule (ClientConn *conn, guint ms, ConnStep step)
{
  gatt_client_clear_source (&conn->timer);
  conn->timer_step = step;
  conn->timer = g_timeout_source_new (ms);
  g_source_set_callback (conn->timer, timer_cb, conn, NULL);
  g_source_set_static_name (conn->timer, "[tally] gatt client timer");
  g_source_attach (conn->timer, conn->context);
}

/* BlueZ answered @remote, a "busy" that ends by itself: @step again after
 * ASK_AGAIN_MS.  FALSE when @remote is no such answer or @asks reached
 * @max in this attempt. */
gboolean
gatt_client_ask_again (ClientConn *conn,
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
           gatt_client_state_to_string (conn->state), *asks, max);
  gatt_client_schedule (conn, ASK_AGAIN_MS, step);
  return TRUE;
}

/* Starts over from discovery, or fails once the attempts are used up.
 * @error (taken) says what went wrong this time. */
void
gatt_client_retry (ClientConn *conn, GError *error)
{
  g_cancellable_cancel (conn->calls);
  g_clear_object (&conn->calls);
  conn->calls = g_cancellable_new ();
  gatt_client_stop_discovery (conn);
  gatt_client_release_device (conn);
  g_clear_error (&conn->last_error);
  conn->last_error = error;

  if (conn->attempt >= MAX_ATTEMPTS) {
    gatt_client_fail (conn, g_error_new (TALLY_ERROR, conn->last_error->code,
                                         "gave up after %u attempts: %s", conn->attempt,
                                         conn->last_error->message));
    return;
  }
  g_info ("gatt client %s: attempt %u failed (%s), trying again", conn->address, conn->attempt,
          error->message);
  gatt_client_enter_state (conn, CONNECT_BACKING_OFF);
  gatt_client_schedule (conn,
                        BACKOFF_BASE_MS * conn->attempt + g_random_int_range (0, BACKOFF_JITTER_MS),
                        gatt_client_start_discovery);
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
      gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                           "no payee at %s within the timeout; last attempt: %s",
                                           conn->address, conn->last_error->message));
    else
      gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                           "no payee at %s found on %s within the timeout",
                                           conn->address, conn->adapter));
    break;
  case CONNECT_STARTING:
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
    gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                                         "connecting to %s timed out while %s", conn->address,
                                         gatt_client_state_to_string (conn->state)));
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
  gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED,
                                       "connecting to %s cancelled", conn->address));
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

static void
adapter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  gboolean powered;

  if (!tally_bluez_get_flag_finish (source, result, &powered, &error)) {
    if (gatt_client_is_cancelled (error))
      return;
    g_dbus_error_strip_remote_error (error);
    gatt_client_fail (conn,
                      g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                   "no Bluetooth adapter %s: %s", conn->adapter, error->message));
    return;
  }
  if (!powered) {
    gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                         "Bluetooth adapter %s is powered off", conn->adapter));
    return;
  }
  gatt_client_start_discovery (conn);
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
  if (!tally_bluez_check_adapter_name (adapter, &error)) {
    g_free (conn);
    g_task_return_error (task, error);
    return;
  }

  conn->state = CONNECT_STARTING;
  conn->bus = g_object_ref (system_bus);
  conn->adapter = g_strdup (adapter);
  conn->adapter_path = tally_bluez_adapter_path (adapter);
  conn->address = g_strdup (address);
  conn->context = g_main_context_ref_thread_default ();
  conn->calls = g_cancellable_new ();
  conn->notify_fd = -1;
  conn->write_fd = -1;
  conn->info.started = g_get_monotonic_time ();
  conn->task = g_steal_pointer (&task);

  gatt_client_watch_bluez (conn);

  conn->deadline = g_timeout_source_new_seconds (timeout_seconds);
  g_source_set_callback (conn->deadline, deadline_cb, conn, NULL);
  g_source_set_static_name (conn->deadline, "[tally] gatt client deadline");
  g_source_attach (conn->deadline, conn->context);
  if (cancellable != NULL)
    conn->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), conn, NULL);

  g_info ("gatt client %s: looking for a payee on %s", address, adapter);
  tally_bluez_get_flag (system_bus, conn->adapter_path, ADAPTER_IFACE, "Powered", conn->calls,
                        adapter_done, conn);
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
