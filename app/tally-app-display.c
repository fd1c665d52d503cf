/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-display.h"

#include <glib/gi18n.h>

#include "tally-app-qr.h"

typedef struct
{
  GtkLabel *name;
  GtkLabel *amount;
  GtkWidget *qr;
  GtkLabel *state;
  GtkLabel *code;
} Display;

static GtkLabel *
big_label (const char *description, const char *css_class, double scale)
{
  GtkLabel *label = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_wrap (label, TRUE);
  gtk_label_set_justify (label, GTK_JUSTIFY_CENTER);
  gtk_widget_add_css_class (GTK_WIDGET (label), css_class);
  if (scale != 1.0) {
    PangoAttrList *attrs = pango_attr_list_new ();
    pango_attr_list_insert (attrs, pango_attr_scale_new (scale));
    gtk_label_set_attributes (label, attrs);
    pango_attr_list_unref (attrs);
  }
  gtk_accessible_update_property (GTK_ACCESSIBLE (label), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                  description, -1);
  return label;
}

static void
on_key (GtkEventControllerKey *controller,
        guint keyval,
        guint keycode,
        GdkModifierType state,
        GtkWindow *window)
{
  if (keyval == GDK_KEY_Escape)
    gtk_window_unfullscreen (window);
  else if (keyval == GDK_KEY_F11)
    gtk_window_fullscreen (window);
}

GtkWindow *
tally_app_display_new (GtkApplication *app)
{
  g_return_val_if_fail (GTK_IS_APPLICATION (app), NULL);

  GtkWindow *window = GTK_WINDOW (gtk_application_window_new (app));
  gtk_window_set_title (window, _ ("Tally customer display"));
  gtk_window_set_default_size (window, 800, 900);
  Display *d = g_new0 (Display, 1);
  g_object_set_data_full (G_OBJECT (window), "tally-display", d, g_free);

  GtkBox *box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 18));
  gtk_widget_set_valign (GTK_WIDGET (box), GTK_ALIGN_CENTER);
  g_object_set (box, "margin-top", 24, "margin-bottom", 24, "margin-start", 24, "margin-end", 24,
                NULL);
  d->name = big_label (_ ("Stall name shown to the customer"), "title-1", 1.0);
  d->amount = big_label (_ ("Amount to pay"), "title-1", 2.5);
  d->qr = tally_app_qr_new ();
  gtk_widget_set_size_request (d->qr, 320, 320);
  gtk_widget_set_halign (d->qr, GTK_ALIGN_CENTER);
  d->state = big_label (_ ("State shown to the customer"), "title-2", 1.0);
  d->code = big_label (_ ("Comparison code shown to the customer"), "title-1", 2.5);
  gtk_box_append (box, GTK_WIDGET (d->name));
  gtk_box_append (box, GTK_WIDGET (d->amount));
  gtk_box_append (box, d->qr);
  gtk_box_append (box, GTK_WIDGET (d->state));
  gtk_box_append (box, GTK_WIDGET (d->code));
  gtk_window_set_child (window, GTK_WIDGET (box));

  GtkEventController *keys = gtk_event_controller_key_new ();
  g_signal_connect (keys, "key-pressed", G_CALLBACK (on_key), window);
  gtk_widget_add_controller (GTK_WIDGET (window), keys);
  tally_app_display_update (window, &(TallyAppDisplayContent){ 0 });
  return window;
}

void
tally_app_display_update (GtkWindow *window, const TallyAppDisplayContent *content)
{
  g_return_if_fail (GTK_IS_WINDOW (window) && content != NULL);

  Display *d = g_object_get_data (G_OBJECT (window), "tally-display");
  g_return_if_fail (d != NULL);
  gtk_label_set_text (d->name, content->name != NULL ? content->name : "");
  gtk_label_set_text (d->amount, content->amount != NULL ? content->amount : "");
  tally_app_qr_set_text (d->qr, content->uri);
  gtk_label_set_text (d->state, content->state != NULL && *content->state != '\0' ? content->state
                                                                                  : _ ("Welcome"));
  gtk_label_set_text (d->code, content->code != NULL ? content->code : "");
  gtk_widget_set_visible (GTK_WIDGET (d->code), content->code != NULL && *content->code != '\0');
}
