/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Pay page's list of stalls nearby: Register1.StartDiscovery while the
 * page is shown, StopDiscovery when it is not, and one row per
 * org.tally.Stall1 object tallyd lists; activating a row pays that stall.
 * A tallyd without Bluetooth LE answers NotSupported, which the page says.
 */

#include <adwaita.h>

#include "tally-app-dbus.h"

G_BEGIN_DECLS

typedef struct _TallyAppNearby TallyAppNearby;

/* A row was activated: pay @address ("ble:TAG"). */
typedef void (*TallyAppNearbyPayFunc) (const char *address, gpointer user_data);

/* Adds the list to @box. */
TallyAppNearby *tally_app_nearby_new (GtkBox *box, TallyAppNearbyPayFunc pay, gpointer user_data);
/* Stops a discovery it started. */
void tally_app_nearby_free (TallyAppNearby *nearby);
/* tallyd came (@reg) or went (NULL). */
void tally_app_nearby_set_register (TallyAppNearby *nearby, TallyDBusRegister1 *reg);
/* The Pay page is shown (@active) or not: discovery follows. */
void tally_app_nearby_set_active (TallyAppNearby *nearby, gboolean active);
/* A stall appeared or changed, or left (@stall NULL). */
void
tally_app_nearby_stall_changed (TallyAppNearby *nearby, const char *path, TallyDBusStall1 *stall);

G_END_DECLS
