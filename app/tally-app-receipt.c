/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-receipt.h"

#include <glib/gi18n.h>

#include "tally-app-widgets.h"

/* One line: a caption people read, and the value, which screen readers
 * find by @description. */
static void
add_field (GtkBox *box, const char *caption, const char *description, const char *value)
{
  GtkWidget *title;
  GtkLabel *label;

  if (value == NULL || *value == '\0')
    return;
  title = gtk_label_new (caption);
  gtk_widget_add_css_class (title, "caption-heading");
  gtk_widget_set_halign (title, GTK_ALIGN_START);
  gtk_box_append (box, title);
  label = tally_app_value_label (description, NULL);
  gtk_label_set_text (label, value);
  gtk_label_set_selectable (label, TRUE);
  gtk_label_set_xalign (label, 0.0);
  gtk_label_set_justify (label, GTK_JUSTIFY_LEFT);
  gtk_widget_set_halign (GTK_WIDGET (label), GTK_ALIGN_START);
  gtk_box_append (box, GTK_WIDGET (label));
}

GtkWindow *
tally_app_receipt_show (GtkWindow *parent, const TallyAppReceipt *r)
{
  GtkWindow *window;
  GtkWidget *header, *content, *scrolled, *close;
  GtkBox *box;
  g_autofree char *counter =
    r->counter > 0 ? g_strdup_printf ("%" G_GUINT64_FORMAT, r->counter) : NULL;

  g_return_val_if_fail (r != NULL, NULL);

  window = GTK_WINDOW (adw_window_new ());
  gtk_window_set_title (window, _ ("Receipt details"));
  gtk_window_set_modal (window, TRUE);
  gtk_window_set_transient_for (window, parent);
  gtk_window_set_destroy_with_parent (window, TRUE);
  gtk_window_set_default_size (window, 360, 560);

  box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 4));
  gtk_widget_set_margin_start (GTK_WIDGET (box), 18);
  gtk_widget_set_margin_end (GTK_WIDGET (box), 18);
  gtk_widget_set_margin_top (GTK_WIDGET (box), 12);
  gtk_widget_set_margin_bottom (GTK_WIDGET (box), 18);
  add_field (box, r->kind, _ ("Receipt amount"), r->amount);
  add_field (box, _ ("Other side"), _ ("Receipt peer"), r->peer);
  add_field (box, _ ("Time"), _ ("Receipt time"), r->time);
  add_field (box, _ ("State"), _ ("Receipt state"), r->state);
  add_field (box, _ ("Counter"), _ ("Receipt counter"), counter);
  add_field (box, _ ("Memo"), _ ("Receipt memo"), r->memo);
  add_field (box, _ ("Comparison code"), _ ("Receipt comparison code"), r->code);
  add_field (box, _ ("Receipt id"), _ ("Receipt id"), r->receipt_id);
  add_field (box, _ ("Signed receipt (SHA-256)"), _ ("Receipt hash"), r->receipt_hash);
  if ((r->code == NULL || *r->code == '\0') && r->receipt_id != NULL && *r->receipt_id != '\0') {
    GtkLabel *note = tally_app_value_label (_ ("Receipt note"), "dim-label");

    gtk_label_set_text (note, _ ("The comparison code and the signed receipt are shown while "
                                 "tallyd keeps the payment, for a few minutes after it."));
    gtk_widget_set_margin_top (GTK_WIDGET (note), 12);
    gtk_box_append (box, GTK_WIDGET (note));
  }
  close = tally_app_pill_button (_ ("Close"), FALSE);
  gtk_widget_set_margin_top (close, 12);
  g_signal_connect_swapped (close, "clicked", G_CALLBACK (gtk_window_destroy), window);
  gtk_box_append (box, close);

  scrolled = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), GTK_WIDGET (box));
  gtk_widget_set_vexpand (scrolled, TRUE);
  header = adw_header_bar_new ();
  content = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  gtk_box_append (GTK_BOX (content), header);
  gtk_box_append (GTK_BOX (content), scrolled);
  adw_window_set_content (ADW_WINDOW (window), content);
  gtk_window_present (window);
  return window;
}
