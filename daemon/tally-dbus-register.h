/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.tally.Register1 at /org/tally/register: the register's state as
 * properties, its operations as methods.  Payments go through the daemon,
 * which owns the payment objects.
 */

#include <gio/gio.h>

#include "tally-daemon.h"

G_BEGIN_DECLS

#define TALLY_REGISTER_PATH "/org/tally/register"

typedef struct _TallyDBusRegister TallyDBusRegister;

TallyDBusRegister *tally_dbus_register_new (GDBusConnection *connection,
                                            TallyDaemon *daemon,
                                            GError **error);
/* Unexports. */
void tally_dbus_register_free (TallyDBusRegister *object);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDBusRegister, tally_dbus_register_free)

/* Re-reads the register; changed properties go out in one
 * PropertiesChanged. */
void tally_dbus_register_sync (TallyDBusRegister *object);

/* Its Register1 skeleton, for the ObjectManager (tally-dbus-objects.h). */
GDBusInterfaceSkeleton *tally_dbus_register_get_skeleton (TallyDBusRegister *object);

G_END_DECLS
