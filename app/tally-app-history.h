/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The History page: Register1.GetHistory's entries with kind, amount,
 * peer, time and state, each with its details (tally-app-receipt.h), and
 * their export to CSV (the columns of tallyctl history --csv).
 */

#include <adwaita.h>

#include "tally-app-dbus.h"

G_BEGIN_DECLS

typedef struct _TallyAppHistory TallyAppHistory;

/* The Payment1 of a spent (@role "payer") or received ("payee") entry
 * with @peer and @counter while tallyd still shows it, else NULL; a new
 * reference. */
typedef TallyDBusPayment1 *(*TallyAppFindPaymentFunc) (const char *role,
                                                      const char *peer,
                                                      guint64 counter,
                                                      gpointer user_data);

/* Adds the page to @box; file and details dialogs belong to @window,
 * messages go to @toasts; @find_payment completes a receipt's details. */
TallyAppHistory *tally_app_history_new (GtkBox *box,
                                        GtkWindow *window,
                                        AdwToastOverlay *toasts,
                                        TallyAppFindPaymentFunc find_payment,
                                        gpointer user_data);
void tally_app_history_free (TallyAppHistory *history);
/* Reads the history of @reg again (asynchronously). */
void tally_app_history_refresh (TallyAppHistory *history, TallyDBusRegister1 *reg);

G_END_DECLS
