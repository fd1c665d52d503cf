/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-qr.h"

#include <glib/gi18n.h>
#include <qrencode.h>

#define QUIET_ZONE 4

static void
qr_free (gpointer data)
{
  QRcode_free (data);
}

static void
draw_qr (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer user_data)
{
  QRcode *code = g_object_get_data (G_OBJECT (area), "tally-qr");
  if (code == NULL)
    return;
  int modules = code->width + 2 * QUIET_ZONE;
  int scale = MIN (width, height) / modules;
  if (scale < 1)
    scale = 1;
  int x0 = (width - modules * scale) / 2, y0 = (height - modules * scale) / 2;

  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_rectangle (cr, x0, y0, modules * scale, modules * scale);
  cairo_fill (cr);
  cairo_set_source_rgb (cr, 0, 0, 0);
  for (int y = 0; y < code->width; y++)
    for (int x = 0; x < code->width; x++)
      if (code->data[y * code->width + x] & 1)
        cairo_rectangle (cr, x0 + (x + QUIET_ZONE) * scale, y0 + (y + QUIET_ZONE) * scale, scale,
                         scale);
  cairo_fill (cr);
}

GtkWidget *
tally_app_qr_new (void)
{
  GtkWidget *area =
    g_object_new (GTK_TYPE_DRAWING_AREA, "accessible-role", GTK_ACCESSIBLE_ROLE_IMG, NULL);
  gtk_drawing_area_set_content_width (GTK_DRAWING_AREA (area), 240);
  gtk_drawing_area_set_content_height (GTK_DRAWING_AREA (area), 240);
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (area), draw_qr, NULL, NULL);
  gtk_accessible_update_property (GTK_ACCESSIBLE (area), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("QR code of the payment request"), -1);
  return area;
}

void
tally_app_qr_set_text (GtkWidget *qr, const char *text)
{
  g_return_if_fail (GTK_IS_DRAWING_AREA (qr));

  QRcode *code = NULL;
  if (text != NULL && *text != '\0')
    code = QRcode_encodeString8bit (text, 0, QR_ECLEVEL_M);
  g_object_set_data_full (G_OBJECT (qr), "tally-qr", code, qr_free);
  gtk_widget_set_visible (qr, code != NULL);
  gtk_widget_queue_draw (qr);
}
