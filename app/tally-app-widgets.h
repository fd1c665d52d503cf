/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small builders the app's pages share, each labelled for screen readers. */

#include <adwaita.h>

G_BEGIN_DECLS

/* A label that screen readers (and tests/app) find by @description; its
 * text is the value it shows. */
GtkLabel *tally_app_value_label (const char *description, const char *css_class);
/* An entry whose accessible name is @label. */
GtkEntry *tally_app_labelled_entry (const char *label, const char *placeholder);
GtkWidget *tally_app_pill_button (const char *label, gboolean suggested);
GtkListBox *tally_app_boxed_list (void);
void tally_app_clear_list (GtkListBox *list);
/* Appends a row of @title and @subtitle, both plain text. */
void tally_app_add_row (GtkListBox *list, const char *title, const char *subtitle);

G_END_DECLS
