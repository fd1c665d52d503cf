/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define TALLY_APP_TYPE_WINDOW (tally_app_window_get_type ())
G_DECLARE_FINAL_TYPE (TallyAppWindow, tally_app_window, TALLY_APP, WINDOW, AdwApplicationWindow)

/* A window on the tallyd that owns @bus_name on the system or session bus. */
TallyAppWindow *
tally_app_window_new (AdwApplication *app, gboolean system_bus, const char *bus_name);
/* Opens the Pay page with @text (a tally:// URI or an address) filled in. */
void tally_app_window_show_pay (TallyAppWindow *window, const char *text);

G_END_DECLS
