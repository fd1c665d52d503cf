/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Register1.StartDiscovery/StopDiscovery, as BlueZ's Adapter1 has them:
 * while a client discovers, every stall nearby advertising a payment
 * request over Bluetooth LE is an org.tally.Stall1 object at
 * /org/tally/nearby/tag_TAG, announced and withdrawn through the
 * ObjectManager's InterfacesAdded/InterfacesRemoved.  Each client that
 * started discovery holds a session; discovery runs while any does, and a
 * session ends with StopDiscovery from the same client or when the client
 * leaves the bus (BlueZ's discovery owners).  A stall not heard from for
 * TALLY_NEARBY_STALE_SECONDS, or whose device BlueZ removed, goes.
 */

#include <gio/gio.h>

#include "tally-dbus-auth.h"
#include "tally-dbus-objects.h"

G_BEGIN_DECLS

#define TALLY_NEARBY_PATH_PREFIX "/org/tally/nearby/tag_"
/* BlueZ's own TemporaryTimeout for devices seen in discovery. */
#define TALLY_NEARBY_STALE_SECONDS 30
/* Stalls listed at once: a new tag beyond them replaces the stall heard
 * least recently (a radio rotating addresses and tags cannot keep real
 * stalls out). */
#define TALLY_NEARBY_MAX_STALLS 64
/* Clients discovering at once, in all and of one UNIX user (one user
 * cannot take every session). */
#define TALLY_NEARBY_MAX_SESSIONS         16
#define TALLY_NEARBY_MAX_SESSIONS_PER_UID 4

typedef struct _TallyDBusNearby TallyDBusNearby;

/* Discovering turned on or off. */
typedef void (*TallyDBusNearbyChangedFunc) (gboolean discovering, gpointer user_data);

/* Stalls are exported on @connection and listed by @objects; discovery
 * goes through bluetoothd on @system_bus, or is NOT_SUPPORTED when it is
 * NULL (no [transport] ble). */
TallyDBusNearby *tally_dbus_nearby_new (GDBusConnection *connection,
                                        TallyDBusAuth *auth,
                                        TallyDBusObjects *objects,
                                        GDBusConnection *system_bus,
                                        const char *adapter,
                                        TallyDBusNearbyChangedFunc changed,
                                        gpointer user_data);
void tally_dbus_nearby_free (TallyDBusNearby *nearby);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyDBusNearby, tally_dbus_nearby_free)

/* A session for @sender, of the UNIX user @uid.  NOT_SUPPORTED without
 * Bluetooth LE, EXISTS when @sender has one, POLICY beyond
 * TALLY_NEARBY_MAX_SESSIONS_PER_UID of @uid or TALLY_NEARBY_MAX_SESSIONS. */
gboolean
tally_dbus_nearby_start (TallyDBusNearby *nearby, const char *sender, guint32 uid, GError **error);
/* Ends @sender's session.  NOT_SUPPORTED without Bluetooth LE, NOT_FOUND
 * when @sender started none. */
gboolean tally_dbus_nearby_stop (TallyDBusNearby *nearby, const char *sender, GError **error);
gboolean tally_dbus_nearby_is_discovering (TallyDBusNearby *nearby);
guint tally_dbus_nearby_get_stall_count (TallyDBusNearby *nearby);
/* For tests: how long a silent stall stays listed. */
void tally_dbus_nearby_set_stale_ms (TallyDBusNearby *nearby, guint ms);

G_END_DECLS
