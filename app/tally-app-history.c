/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-history.h"

#include <glib/gi18n.h>
#include <string.h>

#include "tally-app-model.h"
#include "tally-app-receipt.h"
#include "tally-app-widgets.h"

#define HISTORY_LIMIT 100

struct _TallyAppHistory
{
  GtkListBox *list;
  GtkWindow *window;
  AdwToastOverlay *toasts;
  GCancellable *cancellable;
  GVariant *entries; /* the last GetHistory entries, for the export */
  char *currency;    /* the register's currency then */
  TallyAppFindPaymentFunc find_payment;
  gpointer find_data;
};

static void
toast (TallyAppHistory *self, const char *text)
{
  adw_toast_overlay_add_toast (self->toasts, adw_toast_new (text));
}

static const char *
entry_kind_text (const char *kind)
{
  if (g_strcmp0 (kind, "load") == 0)
    return _ ("Loaded");
  if (g_strcmp0 (kind, "spent") == 0)
    return _ ("Paid");
  if (g_strcmp0 (kind, "received") == 0)
    return _ ("Received");
  if (g_strcmp0 (kind, "defund") == 0)
    return _ ("Moved online");
  return kind;
}

static const char *
entry_state_text (const char *state)
{
  if (g_strcmp0 (state, "pending") == 0)
    return _ ("pending");
  if (g_strcmp0 (state, "acknowledged") == 0)
    return _ ("acknowledged");
  if (g_strcmp0 (state, "settled") == 0)
    return _ ("settled");
  if (g_strcmp0 (state, "reclaimed") == 0)
    return _ ("reclaimed");
  return state;
}

static char *
entry_time_text (guint64 time)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local ((gint64) time);
  return dt != NULL ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S") : g_strdup ("");
}

/* The details of entry @index of the last GetHistory. */
static void
show_details (TallyAppHistory *self, gsize index)
{
  g_autoptr (GVariant) entry = NULL;
  g_autoptr (GVariantDict) d = NULL;
  g_autoptr (TallyDBusPayment1) payment = NULL;
  const char *kind = "", *state = "", *peer = "", *peer_name = "", *memo = "", *receipt_id = "";
  gint64 amount = 0;
  guint64 time = 0, counter = 0, sequence = 0;
  g_autofree char *code = NULL;
  g_autofree char *hash = NULL;

  if (self->entries == NULL || index >= g_variant_n_children (self->entries))
    return;
  entry = g_variant_get_child_value (self->entries, index);
  d = g_variant_dict_new (entry);
  g_variant_dict_lookup (d, "Kind", "&s", &kind);
  g_variant_dict_lookup (d, "State", "&s", &state);
  g_variant_dict_lookup (d, "Amount", "x", &amount);
  g_variant_dict_lookup (d, "Time", "t", &time);
  g_variant_dict_lookup (d, "Counter", "t", &counter);
  g_variant_dict_lookup (d, "Sequence", "t", &sequence);
  g_variant_dict_lookup (d, "Peer", "&s", &peer);
  g_variant_dict_lookup (d, "PeerName", "&s", &peer_name);
  g_variant_dict_lookup (d, "Memo", "&s", &memo);
  g_variant_dict_lookup (d, "ReceiptId", "&s", &receipt_id);

  /* The comparison code and the signed receipt live on the payment's
   * object, not in the register: shown while tallyd keeps it. */
  if (self->find_payment != NULL && *peer != '\0' &&
      (g_strcmp0 (kind, "spent") == 0 || g_strcmp0 (kind, "received") == 0))
    payment = self->find_payment (g_strcmp0 (kind, "spent") == 0 ? "payer" : "payee", peer,
                                  counter, self->find_data);
  if (payment != NULL) {
    GVariant *receipt = tally_dbus_payment1_get_receipt (payment);
    gsize len = 0;
    const guint8 *bytes =
      receipt != NULL ? g_variant_get_fixed_array (receipt, &len, 1) : NULL;

    code = tally_app_code_format (tally_dbus_payment1_get_comparison_code (payment));
    if (len > 0)
      hash = g_compute_checksum_for_data (G_CHECKSUM_SHA256, bytes, len);
  }
  g_autofree char *value = tally_app_amount_format (amount, self->currency);
  /* The certified name and the short id people compare, both. */
  g_autofree char *short_id = g_strndup (peer, 8);
  g_autofree char *who = *peer == '\0'        ? g_strdup ("")
                         : *peer_name != '\0' ? g_strdup_printf ("%s (%s)", peer_name, short_id)
                                              : g_strdup (short_id);
  g_autofree char *when = entry_time_text (time);
  TallyAppReceipt receipt = {
    .kind = entry_kind_text (kind),
    .amount = value,
    .peer = who,
    .time = when,
    .state = entry_state_text (state),
    .counter = g_strcmp0 (kind, "load") == 0 ? sequence : counter,
    .memo = memo,
    .receipt_id = receipt_id,
    .code = code != NULL ? code : "",
    .receipt_hash = hash != NULL ? hash : "",
  };
  tally_app_receipt_show (self->window, &receipt);
}

static void
on_details_clicked (GtkButton *button, TallyAppHistory *self)
{
  show_details (self, GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (button), "tally-index")));
}

static void
add_entry (TallyAppHistory *self, GVariant *entry, const char *currency, gsize index)
{
  g_autoptr (GVariantDict) d = g_variant_dict_new (entry);
  const char *kind = "", *state = "", *peer = "", *peer_name = "", *memo = "";
  gint64 amount = 0;
  guint64 time = 0;
  g_variant_dict_lookup (d, "Kind", "&s", &kind);
  g_variant_dict_lookup (d, "State", "&s", &state);
  g_variant_dict_lookup (d, "Amount", "x", &amount);
  g_variant_dict_lookup (d, "Time", "t", &time);
  g_variant_dict_lookup (d, "Peer", "&s", &peer);
  g_variant_dict_lookup (d, "PeerName", "&s", &peer_name);
  g_variant_dict_lookup (d, "Memo", "&s", &memo);

  g_autofree char *value = tally_app_amount_format (amount, currency);
  g_autofree char *title = NULL;
  if (*peer != '\0') {
    g_autofree char *who = tally_app_peer_label (peer_name, peer);
    title = g_strdup_printf ("%s %s \u00b7 %s", entry_kind_text (kind), value, who);
  } else {
    title = g_strdup_printf ("%s %s", entry_kind_text (kind), value);
  }
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local ((gint64) time);
  g_autofree char *when = dt != NULL ? g_date_time_format (dt, "%Y-%m-%d %H:%M") : g_strdup ("");
  g_autofree char *subtitle =
    *memo != '\0' ? g_strdup_printf ("%s \u00b7 %s \u00b7 %s", when, entry_state_text (state), memo)
                  : g_strdup_printf ("%s \u00b7 %s", when, entry_state_text (state));
  tally_app_add_row (self->list, title, subtitle);

  /* Activating the row (or its button) opens the details. */
  GtkWidget *row = gtk_widget_get_last_child (GTK_WIDGET (self->list));
  GtkWidget *details = gtk_button_new_from_icon_name ("go-next-symbolic");
  gtk_widget_add_css_class (details, "flat");
  gtk_widget_set_valign (details, GTK_ALIGN_CENTER);
  gtk_widget_set_tooltip_text (details, _ ("Receipt details"));
  gtk_accessible_update_property (GTK_ACCESSIBLE (details), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("Receipt details"), -1);
  g_object_set_data (G_OBJECT (details), "tally-index", GSIZE_TO_POINTER (index));
  g_signal_connect (details, "clicked", G_CALLBACK (on_details_clicked), self);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), details);
  adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), details);
}

static void
on_history (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) entries = NULL;
  if (!tally_dbus_register1_call_get_history_finish (TALLY_DBUS_REGISTER1 (source), &entries,
                                                     result, &error)) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
  }
  TallyAppHistory *self = user_data;
  tally_app_clear_list (self->list);
  if (entries == NULL) {
    tally_app_add_row (self->list, _ ("History is not available"), error->message);
    return;
  }
  const char *currency = tally_dbus_register1_get_currency (TALLY_DBUS_REGISTER1 (source));
  g_clear_pointer (&self->entries, g_variant_unref);
  self->entries = g_variant_ref (entries);
  g_free (self->currency);
  self->currency = g_strdup (currency);
  gsize n = g_variant_n_children (entries);
  for (gsize i = 0; i < n; i++) {
    g_autoptr (GVariant) entry = g_variant_get_child_value (entries, i);
    add_entry (self, entry, currency, i);
  }
  if (n == 0)
    tally_app_add_row (self->list, _ ("Nothing yet"), _ ("Loads and payments appear here."));
}

static void
on_export_written (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  if (!g_file_replace_contents_finish (G_FILE (source), result, NULL, &error)) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    TallyAppHistory *self = user_data;
    g_autofree char *text = g_strdup_printf (_ ("Cannot export the history: %s"), error->message);
    toast (self, text);
    return;
  }
  TallyAppHistory *self = user_data;
  g_autofree char *name = g_file_get_basename (G_FILE (source));
  g_autofree char *text = g_strdup_printf (_ ("History exported to %s"), name);
  toast (self, text);
}

static void
on_export_response (GtkNativeDialog *dialog, int response, TallyAppHistory *self)
{
  g_autoptr (GFile) file =
    response == GTK_RESPONSE_ACCEPT ? gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog)) : NULL;
  if (file != NULL && self->entries != NULL) {
    char *csv = tally_app_history_csv (self->entries, self->currency);
    g_autoptr (GBytes) bytes = g_bytes_new_take (csv, strlen (csv));
    g_file_replace_contents_bytes_async (file, bytes, NULL, FALSE,
                                         G_FILE_CREATE_REPLACE_DESTINATION, self->cancellable,
                                         on_export_written, self);
  }
  g_object_unref (dialog);
}

/* Bookkeeping: the history as CSV, as tallyctl history --csv writes it. */
static void
on_export_clicked (GtkButton *button, TallyAppHistory *self)
{
  if (self->entries == NULL) {
    toast (self, _ ("The history has not been read yet."));
    return;
  }
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (
    _ ("Export the history"), self->window, GTK_FILE_CHOOSER_ACTION_SAVE, _ ("Export"), NULL);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (dialog), "tally-history.csv");
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (dialog), TRUE);
  g_signal_connect (dialog, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

void
tally_app_history_refresh (TallyAppHistory *self, TallyDBusRegister1 *reg)
{
  g_return_if_fail (self != NULL && reg != NULL);

  tally_dbus_register1_call_get_history (reg, HISTORY_LIMIT, self->cancellable, on_history, self);
}

TallyAppHistory *
tally_app_history_new (GtkBox *box,
                       GtkWindow *window,
                       AdwToastOverlay *toasts,
                       TallyAppFindPaymentFunc find_payment,
                       gpointer user_data)
{
  g_return_val_if_fail (GTK_IS_BOX (box) && GTK_IS_WINDOW (window), NULL);

  TallyAppHistory *self = g_new0 (TallyAppHistory, 1);
  self->find_payment = find_payment;
  self->find_data = user_data;
  self->window = window;
  self->toasts = toasts;
  self->cancellable = g_cancellable_new ();
  self->list = tally_app_boxed_list ();
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->list), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("History"), -1);
  gtk_box_append (box, GTK_WIDGET (self->list));
  GtkWidget *export = gtk_button_new_with_label (_ ("Export to CSV\u2026"));
  gtk_widget_add_css_class (export, "flat");
  gtk_widget_set_halign (export, GTK_ALIGN_CENTER);
  g_signal_connect (export, "clicked", G_CALLBACK (on_export_clicked), self);
  gtk_box_append (box, export);
  return self;
}

/* Call before the window goes: no reply reaches the page afterwards. */
void
tally_app_history_free (TallyAppHistory *self)
{
  if (self == NULL)
    return;
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->entries, g_variant_unref);
  g_free (self->currency);
  g_free (self);
}
