/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The History page: Register1.GetHistory's entries with kind, amount,
 * peer, time and state, and their export to CSV (the columns of tallyctl
 * history --csv).
 */

#include <adwaita.h>

#include "tally-app-dbus.h"

G_BEGIN_DECLS

typedef struct _TallyAppHistory TallyAppHistory;

/* Adds the page to @box; file dialogs belong to @window, messages go to
 * @toasts. */
TallyAppHistory *tally_app_history_new (GtkBox *box, GtkWindow *window, AdwToastOverlay *toasts);
void tally_app_history_free (TallyAppHistory *history);
/* Reads the history of @reg again (asynchronously). */
void tally_app_history_refresh (TallyAppHistory *history, TallyDBusRegister1 *reg);

G_END_DECLS
