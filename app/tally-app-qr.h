/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

/* A widget that draws @text as a QR code (byte mode, error correction M,
 * a quiet zone of four modules), as large as it is given room for, in
 * whole pixels per module so that every module stays sharp. */
GtkWidget *tally_app_qr_new (void);
/* Shows @text, or nothing for NULL or "". */
void tally_app_qr_set_text (GtkWidget *qr, const char *text);

G_END_DECLS
