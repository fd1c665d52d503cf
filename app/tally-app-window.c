/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-window.h"

#include <glib/gi18n.h>
#include <string.h>

#include "tally-app-client.h"
#include "tally-app-display.h"
#include "tally-app-history.h"
#include "tally-app-model.h"
#include "tally-app-nearby.h"
#include "tally-app-qr.h"
#include "tally-app-widgets.h"

#define RECENT_LIMIT 5

struct _TallyAppWindow
{
  AdwApplicationWindow parent;

  TallyAppClient *client;
  AdwToastOverlay *toasts;
  AdwViewStack *stack;

  /* Home */
  GtkLabel *name_label;
  GtkLabel *balance_label;
  GtkLabel *status_label;
  GtkLabel *sync_label;
  GtkLabel *online_label;
  GtkListBox *recent_list;

  /* Receive */
  GtkStack *receive_stack;
  GtkEntry *amount_entry;
  GtkEntry *memo_entry;
  GtkLabel *receive_error;
  GtkLabel *request_amount;
  GtkLabel *request_name;
  GtkWidget *request_qr;
  GtkLabel *request_uri;
  GtkLabel *receive_state;
  GtkLabel *receive_code;
  GtkWidget *receive_cancel;
  GtkWidget *receive_again;
  char *receive_path;
  GtkWindow *display; /* the customer display, while open */

  /* Pay */
  GtkEntry *pay_entry;
  GtkWidget *pay_button;
  GtkSpinner *pay_spinner;
  GtkLabel *pay_state;
  GtkLabel *pay_code;
  char *pay_path;
  TallyAppRequest *pay_request; /* what the offer must match when paying a URI */
  char *pay_refusal;            /* why this app declined the offer, if it did */
  gboolean pay_busy;

  /* Confirmation */
  AdwMessageDialog *confirm_dialog;
  char *confirm_path;

  /* History */
  TallyAppHistory *history;
  TallyAppNearby *nearby; /* the Pay page's stalls nearby */
  GCancellable *cancellable;

  GHashTable *notified; /* payment paths announced by a notification */
};

G_DEFINE_TYPE (TallyAppWindow, tally_app_window, ADW_TYPE_APPLICATION_WINDOW)

/* --- small builders --- */

static GtkBox *
page_box (AdwViewStack *stack, const char *name, const char *title, const char *icon)
{
  GtkBox *box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 12));
  g_object_set (box, "margin-top", 24, "margin-bottom", 24, "margin-start", 12, "margin-end", 12,
                NULL);
  GtkWidget *clamp = adw_clamp_new ();
  adw_clamp_set_maximum_size (ADW_CLAMP (clamp), 560);
  adw_clamp_set_child (ADW_CLAMP (clamp), GTK_WIDGET (box));
  GtkWidget *scrolled = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), clamp);
  adw_view_stack_add_titled_with_icon (stack, scrolled, name, title, icon);
  return box;
}

static void
toast (TallyAppWindow *self, const char *text)
{
  adw_toast_overlay_add_toast (self->toasts, adw_toast_new (text));
}

/* --- home and history --- */

static char *
payment_title (TallyDBusPayment1 *payment)
{
  gboolean payer = g_strcmp0 (tally_dbus_payment1_get_role (payment), "payer") == 0;
  g_autofree char *amount = tally_app_amount_format (tally_dbus_payment1_get_amount (payment),
                                                     tally_dbus_payment1_get_currency (payment));
  g_autofree char *peer = tally_app_peer_label (tally_dbus_payment1_get_peer_name (payment),
                                                tally_dbus_payment1_get_peer (payment));
  if (*tally_dbus_payment1_get_peer (payment) == '\0')
    return payer ? g_strdup_printf (_ ("Payment of %s"), amount)
                 : g_strdup_printf (_ ("Request for %s"), amount);
  return payer ? g_strdup_printf (_ ("Paid %s to %s"), amount, peer)
               : g_strdup_printf (_ ("Received %s from %s"), amount, peer);
}

static void
refresh_recent (TallyAppWindow *self)
{
  tally_app_clear_list (self->recent_list);
  GList *payments = self->client != NULL ? tally_app_client_list_payments (self->client) : NULL;
  guint n = 0;
  for (GList *l = payments; l != NULL && n < RECENT_LIMIT; l = l->next, n++) {
    TallyDBusPayment1 *p = l->data;
    g_autofree char *title = payment_title (p);
    const char *state = tally_app_state_describe (tally_dbus_payment1_get_role (p),
                                                  tally_dbus_payment1_get_state (p));
    tally_app_add_row (self->recent_list, title, state);
  }
  if (n == 0)
    tally_app_add_row (self->recent_list, _ ("No payments yet"),
                       _ ("Payments appear here as they happen."));
  g_list_free_full (payments, g_object_unref);
}

static void
refresh_history (TallyAppWindow *self)
{
  TallyDBusRegister1 *reg = tally_app_client_get_register (self->client);
  if (reg != NULL)
    tally_app_history_refresh (self->history, reg);
}

static void
on_register_changed (TallyDBusRegister1 *reg, gpointer user_data)
{
  TallyAppWindow *self = user_data;

  tally_app_nearby_set_register (self->nearby, reg);
  if (reg == NULL) {
    gtk_label_set_text (self->name_label, "");
    gtk_label_set_text (self->balance_label, "");
    gtk_label_set_text (self->status_label, _ ("tallyd is not running."));
    gtk_label_set_text (self->sync_label, "");
    gtk_label_set_text (self->online_label, "");
    return;
  }
  const char *currency = tally_dbus_register1_get_currency (reg);
  const char *name = tally_dbus_register1_get_display_name (reg);
  g_autofree char *id = g_strndup (tally_dbus_register1_get_register_id (reg), 8);
  g_autofree char *balance =
    tally_app_amount_format (tally_dbus_register1_get_balance (reg), currency);
  gtk_label_set_text (self->name_label, name != NULL && *name != '\0' ? name : id);
  gtk_label_set_text (self->balance_label, balance);
  if (*currency == '\0')
    gtk_label_set_text (self->status_label, _ ("This register has no certificate yet."));
  else if (tally_dbus_register1_get_closed (reg))
    gtk_label_set_text (self->status_label, _ ("This register is closed."));
  else if (tally_dbus_register1_get_revoked (reg))
    gtk_label_set_text (self->status_label,
                        _ ("The issuer has revoked this register: payees refuse it."));
  else
    gtk_label_set_text (self->status_label, "");
  g_autofree char *sync = tally_app_sync_describe (
    tally_dbus_register1_get_offline_payments (reg),
    tally_dbus_register1_get_max_offline_payments (reg),
    tally_dbus_register1_get_last_reconciliation (reg),
    tally_dbus_register1_get_max_offline_seconds (reg),
    tally_dbus_register1_get_certificate_expiry (reg), g_get_real_time () / G_USEC_PER_SEC);
  gtk_label_set_text (self->sync_label, sync);
  g_autofree char *online = tally_app_online_describe (
    tally_dbus_register1_get_sync_state (reg), tally_dbus_register1_get_last_sync (reg),
    tally_dbus_register1_get_last_sync_error (reg));
  gtk_label_set_text (self->online_label, online);
  refresh_history (self);
}

/* --- calls that may need a password --- */

/* On the system bus polkit decides every call, and for Pay it asks for the
 * user's password (docs/dbus-api.md): the call allows it to ask, and waits
 * for as long as the person takes. */
static void
call_interactive (TallyDBusRegister1 *reg,
                  const char *method,
                  GVariant *args,
                  GCancellable *cancellable,
                  GAsyncReadyCallback callback,
                  gpointer user_data)
{
  g_dbus_proxy_call (G_DBUS_PROXY (reg), method, args,
                     G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION, G_MAXINT, cancellable,
                     callback, user_data);
}

/* The object path a RequestPayment or Pay call returned. */
static char *
call_finish (GObject *source, GAsyncResult *result, GError **error)
{
  g_autoptr (GVariant) reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), result, error);
  if (reply == NULL)
    return NULL;
  if (!g_variant_is_of_type (reply, G_VARIANT_TYPE ("(o)"))) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _ ("tallyd replied with %s, not (o)"),
                 g_variant_get_type_string (reply));
    return NULL;
  }
  char *path = NULL;
  g_variant_get (reply, "(o)", &path);
  return path;
}

/* --- receive --- */

/* The customer display shows what the Receive page shows. */
static void
update_display (TallyAppWindow *self)
{
  if (self->display == NULL)
    return;
  gboolean shown =
    g_strcmp0 (gtk_stack_get_visible_child_name (self->receive_stack), "request") == 0;
  TallyAppDisplayContent content = { 0 };
  if (shown) {
    content.name = gtk_label_get_text (self->request_name);
    content.amount = gtk_label_get_text (self->request_amount);
    content.uri =
      gtk_widget_get_visible (self->request_qr) ? gtk_label_get_text (self->request_uri) : NULL;
    content.state = gtk_label_get_text (self->receive_state);
    content.code = gtk_label_get_text (self->receive_code);
  }
  tally_app_display_update (self->display, &content);
}

static void
on_display_clicked (GtkButton *button, TallyAppWindow *self)
{
  if (self->display == NULL) {
    self->display = tally_app_display_new (gtk_window_get_application (GTK_WINDOW (self)));
    /* Not full screen yet: first it moves to the screen facing the payer. */
    g_object_add_weak_pointer (G_OBJECT (self->display), (gpointer *) &self->display);
  }
  update_display (self);
  gtk_window_present (self->display);
}

static void
show_receive_payment (TallyAppWindow *self, TallyDBusPayment1 *payment)
{
  const char *state = tally_dbus_payment1_get_state (payment);
  gboolean final = tally_app_state_is_final (state);
  g_autofree char *code = tally_app_code_format (tally_dbus_payment1_get_comparison_code (payment));

  tally_app_qr_set_text (self->request_qr, g_strcmp0 (state, "waiting") == 0
                                             ? tally_dbus_payment1_get_request_uri (payment)
                                             : NULL);
  gtk_label_set_text (self->request_uri, tally_dbus_payment1_get_request_uri (payment));
  gtk_widget_set_visible (GTK_WIDGET (self->request_uri), g_strcmp0 (state, "waiting") == 0);
  if (g_strcmp0 (state, "failed") == 0) {
    g_autofree char *why = tally_app_error_describe (
      tally_dbus_payment1_get_error (payment), tally_dbus_payment1_get_error_message (payment));
    gtk_label_set_text (self->receive_state, why);
  } else {
    gtk_label_set_text (self->receive_state, tally_app_state_describe ("payee", state));
  }
  gtk_label_set_text (self->receive_code, code);
  gtk_widget_set_visible (GTK_WIDGET (self->receive_code), *code != '\0');
  gtk_widget_set_visible (self->receive_cancel, !final);
  gtk_widget_set_visible (self->receive_again, final);
  update_display (self);
}

static void
on_request_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  if ((path = call_finish (source, result, &error)) == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    TallyAppWindow *self = user_data;
    g_autofree char *remote = g_dbus_error_get_remote_error (error);
    g_dbus_error_strip_remote_error (error);
    g_autofree char *why = tally_app_error_describe (remote, error->message);
    gtk_label_set_text (self->receive_error, why);
    return;
  }
  TallyAppWindow *self = user_data;
  g_free (self->receive_path);
  self->receive_path = g_steal_pointer (&path);
  gtk_stack_set_visible_child_name (self->receive_stack, "request");
  TallyDBusPayment1 *payment = tally_app_client_get_payment (self->client, self->receive_path);
  if (payment != NULL)
    show_receive_payment (self, payment);
}

static void
on_request_clicked (GtkButton *button, TallyAppWindow *self)
{
  gint64 amount = 0;
  TallyDBusRegister1 *reg = tally_app_client_get_register (self->client);

  const char *currency = reg != NULL ? tally_dbus_register1_get_currency (reg) : NULL;
  if (!tally_app_amount_parse (gtk_editable_get_text (GTK_EDITABLE (self->amount_entry)), currency,
                               &amount)) {
    guint exponent = tally_app_currency_exponent (currency);
    g_autofree char *hint = NULL;
    if (exponent == 0)
      hint =
        g_strdup_printf (_ ("Enter a whole amount such as 1250: %s has no decimals."), currency);
    else if (exponent == 2)
      hint = g_strdup (_ ("Enter an amount such as 12.50: digits, at most two decimals."));
    else
      hint = g_strdup_printf (_ ("Enter an amount such as 12.%.*s: digits, at most %u decimals."),
                              (int) exponent, "5000", exponent);
    gtk_label_set_text (self->receive_error, hint);
    gtk_widget_grab_focus (GTK_WIDGET (self->amount_entry));
    return;
  }
  if (reg == NULL) {
    gtk_label_set_text (self->receive_error, _ ("tallyd is not running."));
    return;
  }
  gtk_label_set_text (self->receive_error, "");
  const char *name = tally_dbus_register1_get_display_name (reg);
  g_autofree char *text = tally_app_amount_format (amount, tally_dbus_register1_get_currency (reg));
  gtk_label_set_text (self->request_amount, text);
  gtk_label_set_text (self->request_name, name);
  gtk_label_set_text (self->receive_state, "");
  gtk_label_set_text (self->receive_code, "");
  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  call_interactive (reg, "RequestPayment",
                    g_variant_new ("(tsa{sv})", (guint64) amount,
                                   gtk_editable_get_text (GTK_EDITABLE (self->memo_entry)),
                                   &options),
                    self->cancellable, on_request_done, self);
}

static void
on_payment_cancel_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  if (!tally_dbus_payment1_call_cancel_finish (TALLY_DBUS_PAYMENT1 (source), result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_message ("Cancel: %s", error->message);
}

static void
on_receive_cancel_clicked (GtkButton *button, TallyAppWindow *self)
{
  TallyDBusPayment1 *payment =
    self->receive_path ? tally_app_client_get_payment (self->client, self->receive_path) : NULL;
  if (payment != NULL)
    tally_dbus_payment1_call_cancel (payment, self->cancellable, on_payment_cancel_done, self);
  else
    gtk_stack_set_visible_child_name (self->receive_stack, "form");
}

static void
on_receive_again_clicked (GtkButton *button, TallyAppWindow *self)
{
  g_clear_pointer (&self->receive_path, g_free);
  gtk_editable_set_text (GTK_EDITABLE (self->amount_entry), "");
  gtk_editable_set_text (GTK_EDITABLE (self->memo_entry), "");
  gtk_stack_set_visible_child_name (self->receive_stack, "form");
  gtk_widget_grab_focus (GTK_WIDGET (self->amount_entry));
  update_display (self);
}

/* --- pay --- */

static void
set_pay_busy (TallyAppWindow *self, gboolean busy)
{
  self->pay_busy = busy;
  gtk_spinner_set_spinning (self->pay_spinner, busy);
  gtk_widget_set_visible (GTK_WIDGET (self->pay_spinner), busy);
  gtk_widget_set_sensitive (self->pay_button, !busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->pay_entry), !busy);
}

static void
close_confirm_dialog (TallyAppWindow *self)
{
  if (self->confirm_dialog != NULL)
    gtk_window_destroy (GTK_WINDOW (g_steal_pointer (&self->confirm_dialog)));
  g_clear_pointer (&self->confirm_path, g_free);
}

static void
show_pay_payment (TallyAppWindow *self, TallyDBusPayment1 *payment)
{
  const char *state = tally_dbus_payment1_get_state (payment);
  g_autofree char *code = tally_app_code_format (tally_dbus_payment1_get_comparison_code (payment));

  if (g_strcmp0 (state, "failed") == 0) {
    g_autofree char *why = tally_app_error_describe (
      tally_dbus_payment1_get_error (payment), tally_dbus_payment1_get_error_message (payment));
    /* Declined because the offer was not the request: say that. */
    gtk_label_set_text (self->pay_state, self->pay_refusal != NULL ? self->pay_refusal : why);
  } else if (g_strcmp0 (state, "done") == 0) {
    g_autofree char *title = payment_title (payment);
    gtk_label_set_text (self->pay_state, title);
  } else {
    gtk_label_set_text (self->pay_state, tally_app_state_describe ("payer", state));
  }
  gtk_label_set_text (self->pay_code, code);
  gtk_widget_set_visible (GTK_WIDGET (self->pay_code), *code != '\0');
  if (tally_app_state_is_final (state)) {
    set_pay_busy (self, FALSE);
    if (self->confirm_path != NULL && g_strcmp0 (self->confirm_path, self->pay_path) == 0)
      close_confirm_dialog (self);
  }
}

static void
on_pay_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  if ((path = call_finish (source, result, &error)) == NULL) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    TallyAppWindow *self = user_data;
    g_autofree char *remote = g_dbus_error_get_remote_error (error);
    g_dbus_error_strip_remote_error (error);
    g_autofree char *why = tally_app_error_describe (remote, error->message);
    gtk_label_set_text (self->pay_state, why);
    set_pay_busy (self, FALSE);
    return;
  }
  TallyAppWindow *self = user_data;
  g_free (self->pay_path);
  self->pay_path = g_steal_pointer (&path);
  TallyDBusPayment1 *payment = tally_app_client_get_payment (self->client, self->pay_path);
  if (payment != NULL)
    show_pay_payment (self, payment);
}

static void
on_pay_clicked (GtkWidget *widget, TallyAppWindow *self)
{
  g_autofree char *text =
    g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->pay_entry))));
  TallyDBusRegister1 *reg = tally_app_client_get_register (self->client);
  g_autoptr (GError) error = NULL;
  const char *address = text;

  if (self->pay_busy)
    return;
  g_clear_pointer (&self->pay_request, tally_app_request_free);
  g_clear_pointer (&self->pay_refusal, g_free);
  g_clear_pointer (&self->pay_path, g_free);
  gtk_label_set_text (self->pay_code, "");
  gtk_widget_set_visible (GTK_WIDGET (self->pay_code), FALSE);
  if (*text == '\0') {
    gtk_label_set_text (self->pay_state, _ ("Paste a payment request (tally://…) or an address."));
    return;
  }
  if (tally_app_request_is_uri (text)) {
    self->pay_request = tally_app_request_parse (text, &error);
    if (self->pay_request == NULL) {
      gtk_label_set_text (self->pay_state, error->message);
      return;
    }
    if (g_get_real_time () / G_USEC_PER_SEC >= self->pay_request->expires) {
      gtk_label_set_text (self->pay_state, _ ("The payment request has expired."));
      g_clear_pointer (&self->pay_request, tally_app_request_free);
      return;
    }
    address = self->pay_request->address;
  }
  if (reg == NULL) {
    gtk_label_set_text (self->pay_state, _ ("tallyd is not running."));
    return;
  }
  set_pay_busy (self, TRUE);
  gtk_label_set_text (self->pay_state, _ ("Connecting to the payee"));
  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  call_interactive (reg, "Pay", g_variant_new ("(sa{sv})", address, &options), self->cancellable,
                    on_pay_done, self);
}

/* --- confirmation (Agent1.ConfirmPayment) --- */

static void
on_confirm_response (AdwMessageDialog *dialog, const char *response, TallyAppWindow *self)
{
  gboolean approve = g_strcmp0 (response, "approve") == 0;
  if (self->confirm_dialog != dialog)
    return;
  self->confirm_dialog = NULL;
  g_clear_pointer (&self->confirm_path, g_free);
  tally_app_client_answer_confirm (self->client, approve, "declined by the user");
  if (!approve)
    toast (self, _ ("Payment declined. Nothing was spent."));
}

static GtkWidget *
confirm_details (const char *code, const char *payee)
{
  GtkBox *box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 6));
  GtkLabel *hint = GTK_LABEL (gtk_label_new (_ ("The payee's screen must show the same code:")));
  gtk_label_set_wrap (hint, TRUE);
  gtk_box_append (box, GTK_WIDGET (hint));
  GtkLabel *code_label = tally_app_value_label (_ ("Comparison code"), "title-1");
  g_autofree char *grouped = tally_app_code_format (code);
  gtk_label_set_text (code_label, grouped);
  gtk_label_set_selectable (code_label, TRUE);
  gtk_box_append (box, GTK_WIDGET (code_label));
  GtkLabel *id_label = tally_app_value_label (_ ("Payee id"), "dim-label");
  g_autofree char *short_id = g_strndup (payee, 8);
  g_autofree char *id_text = g_strdup_printf (_ ("Register %s"), short_id);
  gtk_label_set_text (id_label, id_text);
  gtk_box_append (box, GTK_WIDGET (id_label));
  return GTK_WIDGET (box);
}

static void
on_confirm (const char *path,
            gint64 amount,
            const char *currency,
            const char *payee,
            const char *code,
            const char *payee_name,
            gpointer user_data)
{
  TallyAppWindow *self = user_data;
  g_autofree char *reason = NULL;

  /* Paying a request URI: an offer other than the request is refused
   * before anyone is asked (docs/protocol.md section 8).  Our payment,
   * also when the question comes before Pay's reply. */
  gboolean ours =
    g_strcmp0 (path, self->pay_path) == 0 || (self->pay_busy && self->pay_path == NULL);
  if (self->pay_request != NULL && ours &&
      !tally_app_request_check_offer (self->pay_request, g_get_real_time () / G_USEC_PER_SEC,
                                      amount, currency, payee_name, &reason)) {
    tally_app_client_answer_confirm (self->client, FALSE, reason);
    gtk_label_set_text (self->pay_state, reason);
    g_free (self->pay_refusal);
    self->pay_refusal = g_steal_pointer (&reason);
    return;
  }
  close_confirm_dialog (self);
  g_autofree char *value = tally_app_amount_format (amount, currency);
  g_autofree char *who = tally_app_peer_label (payee_name, payee);
  g_autofree char *body = g_strdup_printf (_ ("Pay %s to %s?"), value, who);
  AdwMessageDialog *dialog =
    ADW_MESSAGE_DIALOG (adw_message_dialog_new (GTK_WINDOW (self), _ ("Confirm payment"), body));
  adw_message_dialog_set_extra_child (dialog, confirm_details (code, payee));
  adw_message_dialog_add_responses (dialog, "decline", _ ("Decline"), "approve", _ ("Approve"),
                                    NULL);
  adw_message_dialog_set_response_appearance (dialog, "approve", ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (dialog, "decline");
  adw_message_dialog_set_close_response (dialog, "decline");
  g_signal_connect (dialog, "response", G_CALLBACK (on_confirm_response), self);
  self->confirm_dialog = dialog;
  self->confirm_path = g_strdup (path);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
on_confirm_cancelled (gpointer user_data)
{
  TallyAppWindow *self = user_data;
  if (self->confirm_dialog == NULL)
    return;
  close_confirm_dialog (self);
  toast (self, _ ("The payment was not confirmed in time. Nothing was spent."));
}

/* --- tallyd's signals --- */

/* A payment that arrives while nobody looks at the window. */
static void
notify_received (TallyAppWindow *self, const char *path, TallyDBusPayment1 *payment)
{
  if (g_strcmp0 (tally_dbus_payment1_get_role (payment), "payee") != 0 ||
      g_strcmp0 (tally_dbus_payment1_get_state (payment), "done") != 0 ||
      g_hash_table_contains (self->notified, path))
    return;
  g_hash_table_add (self->notified, g_strdup (path));
  if (gtk_window_is_active (GTK_WINDOW (self)) && gtk_widget_get_visible (GTK_WIDGET (self)))
    return;
  g_autofree char *title = payment_title (payment);
  g_autoptr (GNotification) notification = g_notification_new (title);
  g_notification_set_body (notification, tally_dbus_payment1_get_memo (payment));
  GApplication *app = G_APPLICATION (gtk_window_get_application (GTK_WINDOW (self)));
  if (app != NULL)
    g_application_send_notification (app, path, notification);
}

static void
on_payment_changed (const char *path, TallyDBusPayment1 *payment, gpointer user_data)
{
  TallyAppWindow *self = user_data;

  if (payment != NULL && g_strcmp0 (path, self->receive_path) == 0)
    show_receive_payment (self, payment);
  if (payment != NULL && g_strcmp0 (path, self->pay_path) == 0)
    show_pay_payment (self, payment);
  if (payment != NULL)
    notify_received (self, path, payment);
  if (payment != NULL && g_strcmp0 (path, self->confirm_path) == 0 &&
      tally_app_state_is_final (tally_dbus_payment1_get_state (payment)))
    close_confirm_dialog (self);
  refresh_recent (self);
}

static void
on_client_failed (const char *message, gpointer user_data)
{
  TallyAppWindow *self = user_data;
  g_autofree char *text = g_strdup_printf (_ ("Cannot reach tallyd: %s"), message);
  gtk_label_set_text (self->status_label, text);
}

static void
on_stall_changed (const char *path, TallyDBusStall1 *stall, gpointer user_data)
{
  TallyAppWindow *self = user_data;

  tally_app_nearby_stall_changed (self->nearby, path, stall);
}

static const TallyAppClientCallbacks client_callbacks = {
  .register_changed = on_register_changed,
  .payment_changed = on_payment_changed,
  .stall_changed = on_stall_changed,
  .confirm = on_confirm,
  .confirm_cancelled = on_confirm_cancelled,
  .failed = on_client_failed,
};

/* --- the pages --- */

static void
build_home (TallyAppWindow *self)
{
  GtkBox *box = page_box (self->stack, "home", _ ("Home"), "go-home-symbolic");
  self->name_label = tally_app_value_label (_ ("Register name"), "title-2");
  self->balance_label = tally_app_value_label (_ ("Balance"), "title-1");
  self->status_label = tally_app_value_label (_ ("Status"), "dim-label");
  gtk_box_append (box, GTK_WIDGET (self->name_label));
  gtk_box_append (box, GTK_WIDGET (self->balance_label));
  gtk_box_append (box, GTK_WIDGET (self->status_label));
  self->sync_label = tally_app_value_label (_ ("Reconciliation"), "caption");
  gtk_box_append (box, GTK_WIDGET (self->sync_label));
  self->online_label = tally_app_value_label (_ ("Online issuer"), "caption");
  gtk_box_append (box, GTK_WIDGET (self->online_label));

  /* One above the other: side by side they would not fit a phone. */
  GtkWidget *buttons = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  gtk_box_set_homogeneous (GTK_BOX (buttons), TRUE);
  gtk_widget_set_halign (buttons, GTK_ALIGN_CENTER);
  GtkWidget *receive = tally_app_pill_button (_ ("Receive a payment"), TRUE);
  gtk_actionable_set_detailed_action_name (GTK_ACTIONABLE (receive), "win.page::receive");
  GtkWidget *pay = tally_app_pill_button (_ ("Pay a stall"), FALSE);
  gtk_actionable_set_detailed_action_name (GTK_ACTIONABLE (pay), "win.page::pay");
  gtk_widget_set_halign (receive, GTK_ALIGN_FILL);
  gtk_widget_set_halign (pay, GTK_ALIGN_FILL);
  gtk_box_append (GTK_BOX (buttons), receive);
  gtk_box_append (GTK_BOX (buttons), pay);
  gtk_box_append (box, buttons);

  GtkWidget *heading = gtk_label_new (_ ("Recent payments"));
  gtk_widget_add_css_class (heading, "heading");
  gtk_widget_set_halign (heading, GTK_ALIGN_START);
  gtk_box_append (box, heading);
  self->recent_list = tally_app_boxed_list ();
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->recent_list), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("Recent payments"), -1);
  gtk_box_append (box, GTK_WIDGET (self->recent_list));
}

static GtkWidget *
build_receive_form (TallyAppWindow *self)
{
  GtkBox *form = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 12));
  GtkWidget *title = gtk_label_new (_ ("Ask for a payment"));
  gtk_widget_add_css_class (title, "title-2");
  gtk_box_append (form, title);
  self->amount_entry = tally_app_labelled_entry (_ ("Amount"), _ ("Amount, e.g. 12.50"));
  gtk_entry_set_input_purpose (self->amount_entry, GTK_INPUT_PURPOSE_NUMBER);
  self->memo_entry = tally_app_labelled_entry (_ ("Memo"), _ ("Memo (optional)"));
  gtk_box_append (form, GTK_WIDGET (self->amount_entry));
  gtk_box_append (form, GTK_WIDGET (self->memo_entry));
  self->receive_error = tally_app_value_label (_ ("Request error"), "error");
  gtk_box_append (form, GTK_WIDGET (self->receive_error));
  GtkWidget *request = tally_app_pill_button (_ ("Request payment"), TRUE);
  g_signal_connect (request, "clicked", G_CALLBACK (on_request_clicked), self);
  g_signal_connect_swapped (self->amount_entry, "activate", G_CALLBACK (gtk_widget_grab_focus),
                            self->memo_entry);
  g_signal_connect_swapped (self->memo_entry, "activate", G_CALLBACK (gtk_widget_activate),
                            request);
  gtk_box_append (form, request);
  return GTK_WIDGET (form);
}

static GtkWidget *
build_receive_request (TallyAppWindow *self)
{
  GtkBox *shown = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 12));
  self->request_amount = tally_app_value_label (_ ("Requested amount"), "title-1");
  self->request_name = tally_app_value_label (_ ("Stall name"), "title-3");
  self->request_qr = tally_app_qr_new ();
  gtk_widget_set_halign (self->request_qr, GTK_ALIGN_CENTER);
  self->request_uri = tally_app_value_label (_ ("Request URI"), "caption");
  gtk_label_set_selectable (self->request_uri, TRUE);
  self->receive_state = tally_app_value_label (_ ("Request state"), "title-4");
  self->receive_code = tally_app_value_label (_ ("Comparison code to show the payer"), "title-1");
  self->receive_cancel = tally_app_pill_button (_ ("Cancel"), FALSE);
  gtk_widget_add_css_class (self->receive_cancel, "destructive-action");
  g_signal_connect (self->receive_cancel, "clicked", G_CALLBACK (on_receive_cancel_clicked), self);
  self->receive_again = tally_app_pill_button (_ ("New request"), TRUE);
  g_signal_connect (self->receive_again, "clicked", G_CALLBACK (on_receive_again_clicked), self);
  gtk_box_append (shown, GTK_WIDGET (self->request_amount));
  gtk_box_append (shown, GTK_WIDGET (self->request_name));
  gtk_box_append (shown, self->request_qr);
  gtk_box_append (shown, GTK_WIDGET (self->request_uri));
  gtk_box_append (shown, GTK_WIDGET (self->receive_state));
  gtk_box_append (shown, GTK_WIDGET (self->receive_code));
  gtk_box_append (shown, self->receive_cancel);
  gtk_box_append (shown, self->receive_again);
  return GTK_WIDGET (shown);
}

static void
build_receive (TallyAppWindow *self)
{
  GtkBox *box = page_box (self->stack, "receive", _ ("Receive"), "go-down-symbolic");
  self->receive_stack = GTK_STACK (gtk_stack_new ());
  gtk_stack_add_named (self->receive_stack, build_receive_form (self), "form");
  gtk_stack_add_named (self->receive_stack, build_receive_request (self), "request");
  gtk_box_append (box, GTK_WIDGET (self->receive_stack));
  GtkWidget *display = gtk_button_new_with_label (_ ("Customer display"));
  gtk_widget_add_css_class (display, "flat");
  gtk_widget_set_halign (display, GTK_ALIGN_CENTER);
  gtk_widget_set_tooltip_text (display, _ ("Show the request in a window for a screen facing "
                                           "the payer (F11: full screen, Escape: back)"));
  g_signal_connect (display, "clicked", G_CALLBACK (on_display_clicked), self);
  gtk_box_append (box, display);
}

/* A stall nearby was tapped: pay its address as if typed. */
static void
on_nearby_pay (const char *address, gpointer user_data)
{
  TallyAppWindow *self = user_data;

  if (self->pay_busy)
    return;
  gtk_editable_set_text (GTK_EDITABLE (self->pay_entry), address);
  on_pay_clicked (self->pay_button, self);
}

static void
build_pay (TallyAppWindow *self)
{
  GtkBox *box = page_box (self->stack, "pay", _ ("Pay"), "go-up-symbolic");
  GtkWidget *title = gtk_label_new (_ ("Pay a stall"));
  gtk_widget_add_css_class (title, "title-2");
  gtk_box_append (box, title);
  self->pay_entry =
    tally_app_labelled_entry (_ ("Payment request or address"), _ ("tally://pay?… or an address"));
  gtk_box_append (box, GTK_WIDGET (self->pay_entry));
  self->pay_button = tally_app_pill_button (_ ("Pay"), TRUE);
  g_signal_connect (self->pay_button, "clicked", G_CALLBACK (on_pay_clicked), self);
  g_signal_connect (self->pay_entry, "activate", G_CALLBACK (on_pay_clicked), self);
  gtk_box_append (box, self->pay_button);
  self->pay_spinner = GTK_SPINNER (gtk_spinner_new ());
  gtk_widget_set_visible (GTK_WIDGET (self->pay_spinner), FALSE);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->pay_spinner), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _ ("Payment in progress"), -1);
  gtk_box_append (box, GTK_WIDGET (self->pay_spinner));
  self->pay_state = tally_app_value_label (_ ("Payment state"), "title-4");
  self->pay_code = tally_app_value_label (_ ("Comparison code of the payment"), "title-1");
  gtk_widget_set_visible (GTK_WIDGET (self->pay_code), FALSE);
  gtk_box_append (box, GTK_WIDGET (self->pay_state));
  gtk_box_append (box, GTK_WIDGET (self->pay_code));
  self->nearby = tally_app_nearby_new (box, on_nearby_pay, self);
}

static TallyDBusPayment1 *
find_payment (const char *role, const char *peer, guint64 counter, gpointer user_data)
{
  TallyAppWindow *self = user_data;
  GList *payments = self->client != NULL ? tally_app_client_list_payments (self->client) : NULL;
  TallyDBusPayment1 *found = NULL;

  for (GList *l = payments; l != NULL && found == NULL; l = l->next) {
    TallyDBusPayment1 *p = l->data;
    if (g_strcmp0 (tally_dbus_payment1_get_role (p), role) == 0 &&
        g_strcmp0 (tally_dbus_payment1_get_state (p), "done") == 0 &&
        g_ascii_strcasecmp (tally_dbus_payment1_get_peer (p), peer) == 0 &&
        tally_dbus_payment1_get_counter (p) == counter)
      found = g_object_ref (p);
  }
  g_list_free_full (payments, g_object_unref);
  return found;
}

static void
build_history (TallyAppWindow *self)
{
  GtkBox *box = page_box (self->stack, "history", _ ("History"), "document-open-recent-symbolic");
  self->history = tally_app_history_new (box, GTK_WINDOW (self), self->toasts, find_payment, self);
}

static void
page_activated (GSimpleAction *action, GVariant *parameter, gpointer user_data)
{
  TallyAppWindow *self = user_data;
  const char *name = g_variant_get_string (parameter, NULL);
  if (adw_view_stack_get_child_by_name (self->stack, name) != NULL)
    adw_view_stack_set_visible_child_name (self->stack, name);
}

static void
on_page_changed (AdwViewStack *stack, GParamSpec *pspec, TallyAppWindow *self)
{
  const char *page = adw_view_stack_get_visible_child_name (stack);

  if (g_strcmp0 (page, "history") == 0)
    refresh_history (self);
  /* Scanning costs the radio: only while the Pay page is shown. */
  tally_app_nearby_set_active (self->nearby, g_strcmp0 (page, "pay") == 0);
}

static void
tally_app_window_init (TallyAppWindow *self)
{
  self->cancellable = g_cancellable_new ();
  self->notified = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gtk_window_set_title (GTK_WINDOW (self), _ ("Tally"));
  gtk_window_set_default_size (GTK_WINDOW (self), 420, 720);

  self->toasts = ADW_TOAST_OVERLAY (adw_toast_overlay_new ());
  self->stack = ADW_VIEW_STACK (adw_view_stack_new ());
  build_home (self);
  build_receive (self);
  build_pay (self);
  build_history (self);
  g_signal_connect (self->stack, "notify::visible-child", G_CALLBACK (on_page_changed), self);

  GtkWidget *header = adw_header_bar_new ();
  GtkWidget *title = adw_view_switcher_title_new ();
  adw_view_switcher_title_set_stack (ADW_VIEW_SWITCHER_TITLE (title), self->stack);
  adw_view_switcher_title_set_title (ADW_VIEW_SWITCHER_TITLE (title), _ ("Tally"));
  adw_header_bar_set_title_widget (ADW_HEADER_BAR (header), title);
  GtkWidget *bar = adw_view_switcher_bar_new ();
  adw_view_switcher_bar_set_stack (ADW_VIEW_SWITCHER_BAR (bar), self->stack);
  /* Narrow (a phone): the switcher moves from the title to the bottom. */
  g_object_bind_property (title, "title-visible", bar, "reveal", G_BINDING_SYNC_CREATE);

  gtk_widget_set_vexpand (GTK_WIDGET (self->stack), TRUE);
  adw_toast_overlay_set_child (self->toasts, GTK_WIDGET (self->stack));
  GtkWidget *content = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  gtk_box_append (GTK_BOX (content), header);
  gtk_box_append (GTK_BOX (content), GTK_WIDGET (self->toasts));
  gtk_box_append (GTK_BOX (content), bar);
  adw_application_window_set_content (ADW_APPLICATION_WINDOW (self), content);

  static const GActionEntry actions[] = {
    { "page", page_activated, "s", NULL, NULL },
  };
  g_action_map_add_action_entries (G_ACTION_MAP (self), actions, G_N_ELEMENTS (actions), self);
  refresh_recent (self);
}

static void
tally_app_window_dispose (GObject *object)
{
  TallyAppWindow *self = TALLY_APP_WINDOW (object);

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  close_confirm_dialog (self);
  /* Before the client: it may still tell tallyd to stop discovering. */
  g_clear_pointer (&self->nearby, tally_app_nearby_free);
  g_clear_pointer (&self->client, tally_app_client_free);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->receive_path, g_free);
  g_clear_pointer (&self->pay_path, g_free);
  g_clear_pointer (&self->pay_request, tally_app_request_free);
  g_clear_pointer (&self->pay_refusal, g_free);
  g_clear_pointer (&self->notified, g_hash_table_unref);
  g_clear_pointer (&self->history, tally_app_history_free);
  g_clear_pointer (&self->nearby, tally_app_nearby_free);
  if (self->display != NULL) {
    g_object_remove_weak_pointer (G_OBJECT (self->display), (gpointer *) &self->display);
    gtk_window_destroy (g_steal_pointer (&self->display));
  }
  G_OBJECT_CLASS (tally_app_window_parent_class)->dispose (object);
}

static void
tally_app_window_class_init (TallyAppWindowClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = tally_app_window_dispose;
}

TallyAppWindow *
tally_app_window_new (AdwApplication *app, gboolean system_bus, const char *bus_name)
{
  g_return_val_if_fail (ADW_IS_APPLICATION (app) && bus_name != NULL, NULL);

  TallyAppWindow *self = g_object_new (TALLY_APP_TYPE_WINDOW, "application", app, NULL);
  gtk_label_set_text (self->status_label, _ ("Connecting to tallyd…"));
  self->client = tally_app_client_new (system_bus, bus_name, &client_callbacks, self);
  return self;
}

void
tally_app_window_show_pay (TallyAppWindow *self, const char *text)
{
  g_return_if_fail (TALLY_APP_IS_WINDOW (self));

  adw_view_stack_set_visible_child_name (self->stack, "pay");
  if (text != NULL && !self->pay_busy)
    gtk_editable_set_text (GTK_EDITABLE (self->pay_entry), text);
}
