/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.freedesktop.DBus.ObjectManager at /, as BlueZ has it: GetManagedObjects
 * lists the register and every payment with their properties, and
 * InterfacesAdded/InterfacesRemoved follow payments as they appear and as
 * they are pruned, so a client need not poll.
 *
 * Not GDBusObjectManagerServer: its GetManagedObjects reads every property
 * without asking anyone.  Here GetManagedObjects is an authorized call like
 * Properties.GetAll (tally-dbus-auth.c: the read action).
 */

#include <gio/gio.h>

#include "tally-dbus-auth.h"

G_BEGIN_DECLS

#define TALLY_OBJECT_MANAGER_PATH      "/"
#define TALLY_OBJECT_MANAGER_INTERFACE "org.freedesktop.DBus.ObjectManager"

typedef struct _TallyDBusObjects TallyDBusObjects;

/* Exports the manager at / on @connection; @auth authorizes its calls. */
TallyDBusObjects *
tally_dbus_objects_new (GDBusConnection *connection, TallyDBusAuth *auth, GError **error);
/* Unexports. */
void tally_dbus_objects_free (TallyDBusObjects *objects);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDBusObjects, tally_dbus_objects_free)

/* @skeleton, exported on the manager's connection, joins the managed
 * objects (a reference is kept): InterfacesAdded with its properties. */
void tally_dbus_objects_add (TallyDBusObjects *objects, GDBusInterfaceSkeleton *skeleton);
/* @skeleton leaves: InterfacesRemoved.  Does nothing for one not added. */
void tally_dbus_objects_remove (TallyDBusObjects *objects, GDBusInterfaceSkeleton *skeleton);

G_END_DECLS
