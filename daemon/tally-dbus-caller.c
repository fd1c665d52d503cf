/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-caller.h"

#include "tally-error.h"

static void
on_unix_user (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED,
                             "cannot tell who the caller is: %s", error->message);
    return;
  }
  guint32 uid;
  g_variant_get (reply, "(u)", &uid);
  g_task_return_int (task, uid);
}

void
tally_dbus_caller_get_uid (GDBusMethodInvocation *invocation,
                           GCancellable *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer user_data)
{
  g_return_if_fail (G_IS_DBUS_METHOD_INVOCATION (invocation));

  GDBusConnection *connection = g_dbus_method_invocation_get_connection (invocation);
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, tally_dbus_caller_get_uid);

  if (sender == NULL) {
    /* Peer to peer: the other end of this very socket. */
    GCredentials *credentials = g_dbus_connection_get_peer_credentials (connection);
    g_autoptr (GError) error = NULL;
    uid_t uid = credentials ? g_credentials_get_unix_user (credentials, &error) : (uid_t) -1;
    if (uid == (uid_t) -1)
      g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED,
                               "cannot tell who the caller is on this connection");
    else
      g_task_return_int (task, (gssize) uid);
    return;
  }
  g_dbus_connection_call (
    connection, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "GetConnectionUnixUser", g_variant_new ("(s)", sender), G_VARIANT_TYPE ("(u)"),
    G_DBUS_CALL_FLAGS_NONE, -1, cancellable, on_unix_user, g_steal_pointer (&task));
}

gboolean
tally_dbus_caller_get_uid_finish (GAsyncResult *result, guint32 *uid, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL) && uid != NULL, FALSE);

  g_autoptr (GError) local = NULL;
  gssize value = g_task_propagate_int (G_TASK (result), &local);
  if (local != NULL) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  *uid = (guint32) value;
  return TRUE;
}
