/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who is calling: the UNIX user of a method call's sender, asked of the
 * bus (org.freedesktop.DBus.GetConnectionUnixUser), or of the peer's
 * credentials on a peer-to-peer connection.  Agents, payments and limits
 * are keyed on it.
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* Not a uid: a caller whose user is unknown (no such uid exists). */
#define TALLY_CALLER_UID_UNKNOWN G_MAXUINT32

void tally_dbus_caller_get_uid (GDBusMethodInvocation *invocation,
                                GCancellable *cancellable,
                                GAsyncReadyCallback callback,
                                gpointer user_data);
/* FALSE with an error when the bus does not know the sender (it left). */
gboolean tally_dbus_caller_get_uid_finish (GAsyncResult *result, guint32 *uid, GError **error);

G_END_DECLS
