/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client-private.h"

#include "tally-bluez-private.h"
#include "tally-gatt-link.h"

/* The payer's fragments towards the payee, once the link is up: the first
 * one as an acknowledged Write Request where the payee takes it, then
 * Write Commands through the socket of AcquireWrite or through WriteValue
 * (WriteState says why). */

const char *
gatt_client_write_state_to_string (WriteState state)
{
  switch (state) {
  case WRITE_BY_COMMAND: return "by-command";
  case WRITE_FIRST_REQUEST: return "first-request";
  case WRITE_AWAITING_RESPONSE: return "awaiting-response";
  case WRITE_ACQUIRING: return "acquiring";
  }
  return "unknown";
}

static void acquire_write_done (GObject *source, GAsyncResult *result, gpointer user_data);

/* The last thing a caller does: leaving the queue may close the link,
 * which frees @conn. */
void
gatt_client_enter_write_state (ClientConn *conn, WriteState state)
{
  g_debug ("gatt client %s: writes %s -> %s", conn->address,
           gatt_client_write_state_to_string (conn->write_state),
           gatt_client_write_state_to_string (state));
  conn->write_state = state;

  switch (state) {
  case WRITE_BY_COMMAND:
    if (conn->link != NULL)
      tally_gatt_link_set_paused (conn->link, FALSE);
    break;
  case WRITE_FIRST_REQUEST: break;
  case WRITE_AWAITING_RESPONSE: tally_gatt_link_set_paused (conn->link, TRUE); break;
  case WRITE_ACQUIRING:
    gatt_client_acquire (conn, conn->rx_path, "AcquireWrite", acquire_write_done);
    break;
  }
}

/* WriteValue on rx with option type @type ("request" or "command"). */
static void
write_value (ClientConn *conn,
             const guint8 *data,
             gsize len,
             const char *type,
             GAsyncReadyCallback done,
             gpointer user_data)
{
  GVariantBuilder options;

  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&options, "{sv}", "type", g_variant_new_string (type));
  g_dbus_connection_call (
    conn->bus, BLUEZ, conn->rx_path, GATT_CHRC_IFACE, "WriteValue",
    g_variant_new ("(@aya{sv})", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1),
                   &options),
    NULL, G_DBUS_CALL_FLAGS_NONE, FIRST_WRITE_TIMEOUT_MS, conn->calls, done, user_data);
}

static void
acquire_write_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  int fd = -1;

  if (!gatt_client_take_acquired (conn, source, result, &fd, &error)) {
    if (gatt_client_is_cancelled (error))
      return;
    g_info ("gatt client %s: AcquireWrite: %s; writing through WriteValue", conn->address,
            error->message);
  } else {
    tally_gatt_link_take_tx_fd (conn->link, fd);
  }
  gatt_client_enter_write_state (conn, WRITE_BY_COMMAND);
}

static void
write_request_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autofree char *why = NULL;

  if (reply != NULL) {
    gatt_client_enter_write_state (conn, WRITE_ACQUIRING);
    return;
  }
  if (gatt_client_is_cancelled (error))
    return;
  /* Our own bluetoothd may refuse too ("Not connected", a timeout): the
   * D-Bus error names which. */
  g_autofree char *name = g_dbus_error_get_remote_error (error);
  g_dbus_error_strip_remote_error (error);
  why = g_strdup_printf ("the first fragment (Write Request) failed: %s%s%s", error->message,
                         name ? ": " : "", name ? name : "");
  tally_gatt_link_lost (conn->link, why);
}

static void
write_command_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (TallyLink) link = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL && !gatt_client_is_cancelled (error)) {
    g_autofree char *why = NULL;

    g_dbus_error_strip_remote_error (error);
    why = g_strdup_printf ("WriteValue failed: %s", error->message);
    tally_gatt_link_lost (link, why);
  }
}

/* The link's way out while it has no socket: the first fragment of a
 * Write Request payee, or every fragment when AcquireWrite was refused. */
gboolean
gatt_client_link_send (gpointer owner,
                       TallyLink *link,
                       const guint8 *data,
                       gsize len,
                       GError **error)
{
  ClientConn *conn = owner;

  switch (conn->write_state) {
  case WRITE_FIRST_REQUEST:
    write_value (conn, data, len, "request", write_request_done, conn);
    gatt_client_enter_write_state (conn, WRITE_AWAITING_RESPONSE);
    return TRUE;
  case WRITE_AWAITING_RESPONSE:
  case WRITE_ACQUIRING:
    /* The link holds its queue until the state moves on. */
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                 "link to %s sent while its first write is unanswered", conn->peer);
    return FALSE;
  case WRITE_BY_COMMAND: break;
  }
  /* Write Command: the same ATT procedure a socket from AcquireWrite uses. */
  write_value (conn, data, len, "command", write_command_done, tally_link_ref (link));
  return TRUE;
}
