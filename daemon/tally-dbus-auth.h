/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Authorization of every D-Bus call to tallyd, in one place.
 *
 * Each exported object is a skeleton made by tally_dbus_auth_skeleton_new
 * (): a subclass of the generated skeleton whose vtable routes every
 * method call, property reads (Properties.Get and GetAll) included, through
 * one table that maps (interface, method) to a polkit action
 * (daemon/org.tally.Tally.policy).  The call reaches its handle-* handler
 * only once polkit said yes, asked asynchronously on the object's main
 * context; otherwise the caller gets org.tally.Error.NotAuthorized, or
 * org.freedesktop.DBus.Error.InteractiveAuthorizationRequired when polkit
 * would have asked for a password and the caller did not allow that.
 *
 * With TALLY_AUTHORIZATION_NONE the bus policy alone decides, except that
 * a payment may be cancelled only by the uid that made it or by root.
 */

#include <gio/gio.h>

#include "tally-config.h"

G_BEGIN_DECLS

#define TALLY_ACTION_READ            "org.tally.Tally.read"
#define TALLY_ACTION_REQUEST_PAYMENT "org.tally.Tally.request-payment"
#define TALLY_ACTION_PAY             "org.tally.Tally.pay"
#define TALLY_ACTION_LOAD_VOUCHER    "org.tally.Tally.load-voucher"
#define TALLY_ACTION_TOPUP           "org.tally.Tally.topup"
#define TALLY_ACTION_DEFUND          "org.tally.Tally.defund"
#define TALLY_ACTION_RECONCILE       "org.tally.Tally.reconcile"
#define TALLY_ACTION_ADMIN           "org.tally.Tally.admin"

typedef struct _TallyDBusAuth TallyDBusAuth;

/* With POLKIT, connects to polkit's authority on the system bus. */
TallyDBusAuth *tally_dbus_auth_new (TallyAuthorization mode, GError **error);
/* Calls still waiting for polkit fail with Cancelled.  Free after every
 * skeleton made with @auth is unexported. */
void tally_dbus_auth_free (TallyDBusAuth *auth);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDBusAuth, tally_dbus_auth_free)

TallyAuthorization tally_dbus_auth_get_mode (TallyDBusAuth *auth);

/* A new skeleton of @skeleton_type (a TALLY_DBUS_TYPE_*_SKELETON), whose
 * calls @auth authorizes; @auth must outlive its export. */
gpointer tally_dbus_auth_skeleton_new (TallyDBusAuth *auth, GType skeleton_type);

/* The action that authorizes @method of @interface, or property reads
 * when @method is NULL; NULL when the table has no row for it (the call
 * is then refused).  *@owner_property is the property naming the object's
 * owner uid, whose calls need no action, or NULL. */
const char *
tally_dbus_auth_lookup (const char *interface, const char *method, const char **owner_property);

G_END_DECLS
