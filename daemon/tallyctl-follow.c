/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tallyctl.h"

#include <glib-unix.h>
#include <string.h>

/* --- following a payment --- */

static void
finish (Ctl *ctl, int exit_code)
{
  ctl->exit_code = exit_code;
  g_main_loop_quit (ctl->loop);
}

static void
payment_outcome (Ctl *ctl)
{
  GVariantDict *p = ctl->payment;
  const char *state = dict_str (p, "State");
  const char *role = dict_str (p, "Role");
  gboolean payer = strcmp (role, "payer") == 0;

  const char *code = dict_str (p, "ComparisonCode");
  if (*code && !ctl->code_printed) {
    ctl->code_printed = TRUE;
    if (!payer)
      progress (ctl, "Comparison code: %s", code);
  }

  gboolean done = strcmp (state, "done") == 0;
  gboolean failed = strcmp (state, "failed") == 0;
  if (!done && !failed)
    return;

  g_autofree char *amount = tally_amount_format (dict_x (p, "Amount"), dict_str (p, "Currency"));
  g_autofree char *peer = peer_label (p);
  if (ctl->json) {
    /* The Payment1 properties, plus its path. */
    g_autoptr (GVariant) all = g_variant_dict_end (p);
    g_variant_ref_sink (all);
    g_variant_dict_unref (ctl->payment);
    ctl->payment = g_variant_dict_new (all);
    GVariantDict dict;
    g_variant_dict_init (&dict, all);
    g_variant_dict_insert (&dict, "Payment", "s", ctl->payment_path);
    print_json_dict (&dict);
  } else if (done && payer && dict_b (p, "Redelivered")) {
    g_print ("Delivered again the earlier payment of %s to %s, counter %" G_GUINT64_FORMAT
             ", which had lost its receipt: it is paid now.  The new request is not paid yet; "
             "pay again.\n",
             g_strstrip (amount), peer, dict_t (p, "Counter"));
  } else if (done && payer) {
    g_print ("Paid %s to %s, counter %" G_GUINT64_FORMAT ".\n", g_strstrip (amount),
             peer, dict_t (p, "Counter"));
  } else if (done && dict_b (p, "Redelivered")) {
    /* A request's object finishes only with a credit of its own: this
     * permission was spent on it and its Pay lost (docs/dbus-api.md). */
    g_print ("Received %s from %s, counter %" G_GUINT64_FORMAT
             ", delivered again after its first delivery was lost.\n",
             g_strstrip (amount), peer, dict_t (p, "Counter"));
  } else if (done) {
    g_print ("Received %s from %s, counter %" G_GUINT64_FORMAT ".\n", g_strstrip (amount),
             peer, dict_t (p, "Counter"));
  } else {
    g_printerr ("Payment failed: %s: %s\n", dict_str (p, "Error"), dict_str (p, "ErrorMessage"));
  }
  finish (ctl, done ? EXIT_OK
                    : exit_code_for (dict_str (p, "Error"), dict_b (p, "ErrorFromPeer"), TRUE));
}

static void
merge_properties (GVariantDict *payment, GVariant *changed)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;
  g_variant_iter_init (&iter, changed);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    g_variant_dict_insert_value (payment, key, value);
}

/* The changed properties of a Payment1 in a PropertiesChanged signal's
 * @params; NULL for another interface or a malformed signal. */
static GVariant *
payment_changes (GVariant *params)
{
  const char *changed_iface;
  g_autoptr (GVariant) changed = NULL;
  g_autofree const char **invalidated = NULL;

  if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
    return NULL;
  g_variant_get (params, "(&s@a{sv}^a&s)", &changed_iface, &changed, &invalidated);
  if (strcmp (changed_iface, PAYMENT_IFACE) != 0)
    return NULL;
  return g_steal_pointer (&changed);
}

static void
on_properties_changed (GDBusConnection *bus,
                       const char *sender,
                       const char *path,
                       const char *iface,
                       const char *signal,
                       GVariant *params,
                       gpointer user_data)
{
  Ctl *ctl = user_data;

  if (ctl->payment == NULL)
    return;
  g_autoptr (GVariant) changed = payment_changes (params);
  if (changed == NULL)
    return;
  merge_properties (ctl->payment, changed);
  payment_outcome (ctl);
}

void
on_owner_vanished (GDBusConnection *bus, const char *name, gpointer user_data)
{
  Ctl *ctl = user_data;
  finish (ctl, report_error (ctl, DBUS_ERROR_NAME_HAS_NO_OWNER, "tallyd went away"));
}

static gboolean
on_interrupt (gpointer user_data)
{
  Ctl *ctl = user_data;
  if (ctl->payment_path == NULL || ctl->cancel_sent) {
    /* Interrupted twice: the user gave up on it. */
    finish (ctl, EXIT_DECLINED);
    return G_SOURCE_CONTINUE;
  }
  /* The failed state, with Cancelled, ends the wait. */
  ctl->cancel_sent = TRUE;
  g_dbus_connection_call (ctl->bus, ctl->owner, ctl->payment_path, PAYMENT_IFACE, "Cancel", NULL,
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
  return G_SOURCE_CONTINUE;
}

/* Follows the payment at @path until done or failed. */
int
follow_payment (Ctl *ctl, const char *path)
{
  ctl->payment_path = g_strdup (path);
  ctl->props_subscription = g_dbus_connection_signal_subscribe (
    ctl->bus, ctl->owner, PROPERTIES_IFACE, "PropertiesChanged", path, PAYMENT_IFACE,
    G_DBUS_SIGNAL_FLAGS_NONE, on_properties_changed, ctl, NULL);

  /* Read after subscribing: together they miss no change. */
  g_autoptr (GError) error = NULL;
  ctl->payment = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (ctl->payment == NULL)
    return report_gerror (ctl, error);

  ctl->exit_code = -1;
  payment_outcome (ctl);
  if (ctl->exit_code < 0) {
    guint sigint = g_unix_signal_add (SIGINT, on_interrupt, ctl);
    guint sigterm = g_unix_signal_add (SIGTERM, on_interrupt, ctl);
    g_main_loop_run (ctl->loop);
    g_source_remove (sigint);
    g_source_remove (sigterm);
  }
  return ctl->exit_code;
}

/* --- following a request for several payers --- */

static void
request_payment_outcome (Ctl *ctl, const char *path, GVariantDict *p, const char *old_state)
{
  const char *state = dict_str (p, "State");
  gboolean done = strcmp (state, "done") == 0;
  gboolean failed = strcmp (state, "failed") == 0;

  if (!done && !failed)
    return;
  if (old_state != NULL && (strcmp (old_state, "done") == 0 || strcmp (old_state, "failed") == 0))
    return;

  g_autofree char *amount = tally_amount_format (dict_x (p, "Amount"), dict_str (p, "Currency"));
  if (done) {
    ctl->payers_done++;
    g_autofree char *peer = peer_label (p);
    progress (ctl, "%s: received %s from %s, counter %" G_GUINT64_FORMAT " (comparison code %s).",
              path, g_strstrip (amount), peer, dict_t (p, "Counter"),
              dict_str (p, "ComparisonCode"));
  } else {
    ctl->payers_failed++;
    /* Nobody took it: the request waits for no one any more. */
    if (old_state != NULL && strcmp (old_state, "waiting") == 0)
      ctl->request_over = TRUE;
    progress (ctl, "%s: failed: %s: %s", path, dict_str (p, "Error"), dict_str (p, "ErrorMessage"));
    ctl->payers_exit = exit_code_for (dict_str (p, "Error"), dict_b (p, "ErrorFromPeer"), TRUE);
  }

  guint finished = ctl->payers_done + ctl->payers_failed;
  gboolean all_finished = TRUE;
  GHashTableIter iter;
  GVariantDict *other;
  g_hash_table_iter_init (&iter, ctl->request_payments);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &other)) {
    const char *s = dict_str (other, "State");
    if (strcmp (s, "done") != 0 && strcmp (s, "failed") != 0)
      all_finished = FALSE;
  }
  if (finished < ctl->payers && !(ctl->request_over && all_finished))
    return;

  if (ctl->json) {
    GVariantDict dict;
    g_variant_dict_init (&dict, NULL);
    g_variant_dict_insert (&dict, "Address", "s", ctl->request_address);
    g_variant_dict_insert (&dict, "Payers", "u", ctl->payers);
    g_variant_dict_insert (&dict, "Done", "u", ctl->payers_done);
    g_variant_dict_insert (&dict, "Failed", "u", ctl->payers_failed);
    print_json_dict (&dict);
  } else {
    g_print ("Received %u of %u payment(s).\n", ctl->payers_done, ctl->payers);
  }
  /* Short of payers: why the last one failed. */
  finish (ctl, ctl->payers_done == ctl->payers ? EXIT_OK : ctl->payers_exit);
}

/* Adopts @path when it is a payment of our request: same Address and
 * RequestUri (several requests may share a listen address; a permission
 * delivered again for an ended request shows on an object without a
 * RequestUri, and pays none of ours). */
static GVariantDict *
request_track (Ctl *ctl, const char *path)
{
  GVariantDict *p = g_hash_table_lookup (ctl->request_payments, path);
  if (p != NULL)
    return p;
  g_autoptr (GError) error = NULL;
  p = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (p == NULL)
    return NULL;
  if (strcmp (dict_str (p, "Address"), ctl->request_address) != 0 ||
      strcmp (dict_str (p, "RequestUri"), ctl->request_text) != 0 ||
      strcmp (dict_str (p, "Role"), "payee") != 0) {
    g_variant_dict_unref (p);
    return NULL;
  }
  g_hash_table_insert (ctl->request_payments, g_strdup (path), p);
  return p;
}

static void
on_request_properties_changed (GDBusConnection *bus,
                               const char *sender,
                               const char *path,
                               const char *iface,
                               const char *signal,
                               GVariant *params,
                               gpointer user_data)
{
  Ctl *ctl = user_data;

  if (!g_str_has_prefix (path, "/org/tally/payment/"))
    return;
  g_autoptr (GVariant) changed = payment_changes (params);
  if (changed == NULL)
    return;
  gboolean known = g_hash_table_contains (ctl->request_payments, path);
  GVariantDict *p = request_track (ctl, path);
  if (p == NULL)
    return;
  g_autofree char *old_state = g_strdup (dict_str (p, "State"));
  if (known) {
    merge_properties (p, changed);
  } else {
    /* Read whole just now; its state before this change is unknown. */
    g_clear_pointer (&old_state, g_free);
  }
  request_payment_outcome (ctl, path, p, old_state);
}

/* Follows every payment of a request for @payers payers, the first at
 * @path, until @payers are done or the request waits no more. */
static int
follow_request (Ctl *ctl, const char *path, guint payers)
{
  ctl->payers = payers;
  ctl->payers_exit = EXIT_FAIL;
  ctl->request_payments =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_dict_unref);
  ctl->props_subscription = g_dbus_connection_signal_subscribe (
    ctl->bus, ctl->owner, PROPERTIES_IFACE, "PropertiesChanged", NULL, PAYMENT_IFACE,
    G_DBUS_SIGNAL_FLAGS_NONE, on_request_properties_changed, ctl, NULL);

  g_autoptr (GError) error = NULL;
  g_autoptr (GVariantDict) first = get_all (ctl, path, PAYMENT_IFACE, &error);
  if (first == NULL)
    return report_gerror (ctl, error);
  ctl->request_address = g_strdup (dict_str (first, "Address"));
  ctl->request_text = g_strdup (dict_str (first, "RequestUri"));
  ctl->payment_path = g_strdup (path);
  if (request_track (ctl, path) == NULL)
    return report_error (ctl, TALLY_DBUS_ERROR_FAILED, "the request's payment vanished");

  ctl->exit_code = -1;
  guint sigint = g_unix_signal_add (SIGINT, on_interrupt, ctl);
  guint sigterm = g_unix_signal_add (SIGTERM, on_interrupt, ctl);
  g_main_loop_run (ctl->loop);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_clear_pointer (&ctl->request_payments, g_hash_table_unref);
  g_clear_pointer (&ctl->request_address, g_free);
  g_clear_pointer (&ctl->request_text, g_free);
  return ctl->exit_code;
}

/* Prints the request's tally:// URI (docs/protocol.md) and the QR codes
 * asked for. */
static gboolean
show_request_uri (Ctl *ctl,
                  const char *path,
                  gboolean qr,
                  const char *png,
                  const char *svg,
                  GError **error)
{
  g_autoptr (GVariant) reply =
    call (ctl, path, PROPERTIES_IFACE, "Get", g_variant_new ("(ss)", PAYMENT_IFACE, "RequestUri"),
          G_VARIANT_TYPE ("(v)"), error);
  if (reply == NULL)
    return FALSE;
  g_autoptr (GVariant) value = NULL;
  g_variant_get (reply, "(v)", &value);
  const char *uri =
    g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) ? g_variant_get_string (value, NULL) : "";
  if (*uri == '\0') {
    if (qr || png || svg) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "tallyd has no request URI for this address (see its log)");
      return FALSE;
    }
    return TRUE;
  }
  progress (ctl, "Request: %s", uri);
  if (qr) {
    g_autofree char *lines = qr_terminal (uri, error);
    if (lines == NULL)
      return FALSE;
    progress (ctl, "%s", lines);
  }
  if (png != NULL && !qr_write_png (uri, png, error))
    return FALSE;
  if (svg != NULL && !qr_write_svg (uri, svg, error))
    return FALSE;
  return TRUE;
}

int
cmd_request (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *memo = NULL, *qr_png = NULL, *qr_svg = NULL;
  gboolean qr = FALSE;
  int timeout = 0, payers = 1, rc;
  const GOptionEntry entries[] = {
    { "memo", 'm', 0, G_OPTION_ARG_STRING, &memo, "What the payment is for", "TEXT" },
    { "qr", 0, 0, G_OPTION_ARG_NONE, &qr, "Also draw the request URI as a QR code", NULL },
    { "qr-png", 0, 0, G_OPTION_ARG_FILENAME, &qr_png, "Write the QR code to FILE as PNG", "FILE" },
    { "qr-svg", 0, 0, G_OPTION_ARG_FILENAME, &qr_svg, "Write the QR code to FILE as SVG", "FILE" },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
      "Give up after SECONDS (default: tallyd's [payment] timeout_seconds)", "SECONDS" },
    { "payers", 'p', 0, G_OPTION_ARG_INT, &payers,
      "Let N payers pay this amount, each with its own payment (default: 1)", "N" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  if (payers < 1 || payers > 16)
    return usage_error (ctl, "--payers must be from 1 to 16");

  gint64 amount;
  g_autoptr (GError) error = NULL;
  /* No amount in any currency is a usage error before tallyd is asked;
   * then the register's currency says how many decimals it may have. */
  if (!tally_amount_parse_any (argv[1], &error))
    return usage_error (ctl, "%s", error->message);
  if (timeout < 0)
    return usage_error (ctl, "--timeout must be positive");
  g_autoptr (GVariant) currency_reply =
    call (ctl, REGISTER_PATH, PROPERTIES_IFACE, "Get",
          g_variant_new ("(ss)", REGISTER_IFACE, "Currency"), G_VARIANT_TYPE ("(v)"), &error);
  if (currency_reply == NULL)
    return report_gerror (ctl, error);
  g_autoptr (GVariant) currency = NULL;
  g_variant_get (currency_reply, "(v)", &currency);
  if (!tally_amount_parse (argv[1], g_variant_get_string (currency, NULL), &amount, &error))
    return usage_error (ctl, "%s", error->message);

  g_autoptr (GVariant) address_reply =
    call (ctl, REGISTER_PATH, PROPERTIES_IFACE, "Get",
          g_variant_new ("(ss)", REGISTER_IFACE, "ListenAddress"), G_VARIANT_TYPE ("(v)"), &error);
  if (address_reply == NULL)
    return report_gerror (ctl, error);
  g_autoptr (GVariant) address = NULL;
  g_variant_get (address_reply, "(v)", &address);

  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (timeout > 0)
    g_variant_builder_add (&options, "{sv}", "Timeout", g_variant_new_uint32 ((guint32) timeout));
  if (payers > 1)
    g_variant_builder_add (&options, "{sv}", "Payers", g_variant_new_uint32 ((guint32) payers));
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "RequestPayment",
          g_variant_new ("(tsa{sv})", (guint64) amount, memo ? memo : "", &options),
          G_VARIANT_TYPE ("(o)"), &error);
  if (reply == NULL)
    return report_gerror (ctl, error);
  const char *path;
  g_variant_get (reply, "(&o)", &path);

  /* The request's own address, "ble:TAG" when the payee advertises it. */
  g_autoptr (GVariant) own_reply =
    call (ctl, path, PROPERTIES_IFACE, "Get", g_variant_new ("(ss)", PAYMENT_IFACE, "Address"),
          G_VARIANT_TYPE ("(v)"), NULL);
  g_autoptr (GVariant) own = NULL;
  if (own_reply != NULL)
    g_variant_get (own_reply, "(v)", &own);
  const char *listen = g_variant_get_string (address, NULL);
  const char *request_address = own != NULL ? g_variant_get_string (own, NULL) : listen;
  if (!show_request_uri (ctl, path, qr, qr_png, qr_svg, &error)) {
    /* Nobody can pay a request whose code was not shown: withdraw it. */
    g_autoptr (GVariant) cancelled = call (ctl, path, PAYMENT_IFACE, "Cancel", NULL, NULL, NULL);
    return report_gerror (ctl, error);
  }
  /* Printed last, once the URI and every QR file are out: scripts take
   * this line to mean the request is shown in full. */
  if (strcmp (request_address, listen) != 0)
    progress (ctl, "Waiting for payer on %s and %s", listen, request_address);
  else
    progress (ctl, "Waiting for payer on %s", listen);
  if (payers > 1)
    return follow_request (ctl, path, (guint) payers);
  return follow_payment (ctl, path);
}
