/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

/*
 * The customer display: a window for a second monitor or a tablet on the
 * counter that shows the customer the request the stall's window made:
 * the stall's name, the amount, the QR code, the state and the comparison
 * code, all large.  It only shows; the stall's window drives it.
 */

typedef struct
{
  const char *name;   /* the stall's certified name */
  const char *amount; /* "12.50 EUR" */
  const char *uri;    /* the request URI: a QR code while waiting, else NULL */
  const char *state;  /* in words */
  const char *code;   /* "123 456" or "" */
} TallyAppDisplayContent;

GtkWindow *tally_app_display_new (GtkApplication *app);
void tally_app_display_update (GtkWindow *display, const TallyAppDisplayContent *content);

G_END_DECLS
