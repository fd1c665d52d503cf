/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.tally.Payment1: one exported object per TallyPayment, mirroring its
 * properties.  Cancel () aborts the payment: the caller's own, or any with
 * the admin action.
 */

#include <gio/gio.h>

#include "tally-dbus-auth.h"
#include "tally-payment.h"

G_BEGIN_DECLS

#define TALLY_PAYMENT_PATH_PREFIX "/org/tally/payment/"

typedef struct _TallyDBusPayment TallyDBusPayment;

/* Exports @payment (borrowed; must outlive the object) at @path; @auth
 * authorizes its calls (Cancel of another uid's payment: admin). */
TallyDBusPayment *tally_dbus_payment_new (GDBusConnection *connection,
                                          TallyDBusAuth *auth,
                                          const char *path,
                                          TallyPayment *payment,
                                          GError **error);
/* Unexports. */
void tally_dbus_payment_free (TallyDBusPayment *object);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDBusPayment, tally_dbus_payment_free)

/* Copies the payment's properties; changed ones go out in one
 * PropertiesChanged. */
void tally_dbus_payment_sync (TallyDBusPayment *object);

const char *tally_dbus_payment_get_path (TallyDBusPayment *object);
/* Its Payment1 skeleton, for the ObjectManager (tally-dbus-objects.h). */
GDBusInterfaceSkeleton *tally_dbus_payment_get_skeleton (TallyDBusPayment *object);

/* Mirrors @payment (borrowed, as in tally_dbus_payment_new ()) from now
 * on: a payee request shows the handshake that leads it (tally-daemon.h). */
void tally_dbus_payment_set_payment (TallyDBusPayment *object, TallyPayment *payment);

/* The CallerUid property: who called Pay or RequestPayment. */
void tally_dbus_payment_set_caller_uid (TallyDBusPayment *object, guint32 uid);

/* The Address property: where payers reach this request (payee), or the
 * address being paid (payer). */
void tally_dbus_payment_set_address (TallyDBusPayment *object, const char *address);

/* The RequestUri property: the tally:// URI of a payee's request. */
void tally_dbus_payment_set_request_uri (TallyDBusPayment *object, const char *uri);

G_END_DECLS
