/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tallyctl.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>

#include "tally-clock.h"

/* --- the agent of pay --- */

void
stop_prompt (Ctl *ctl)
{
  g_clear_handle_id (&ctl->tty_watch, g_source_remove);
  if (ctl->tty_owned && ctl->tty_fd >= 0)
    close (ctl->tty_fd);
  ctl->tty_fd = -1;
  ctl->tty_owned = FALSE;
  if (ctl->tty_line != NULL)
    g_string_free (g_steal_pointer (&ctl->tty_line), TRUE);
}

static void
answer_confirm (Ctl *ctl, gboolean yes)
{
  GDBusMethodInvocation *inv = g_steal_pointer (&ctl->pending_confirm);
  stop_prompt (ctl);
  if (inv == NULL)
    return;
  if (yes) {
    tally_dbus_agent1_complete_confirm_payment (ctl->agent, inv);
  } else {
    progress (ctl, "Declined.");
    g_dbus_method_invocation_return_dbus_error (inv, tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "declined by the user");
  }
}

static gboolean
on_tty (int fd, GIOCondition condition, gpointer user_data)
{
  Ctl *ctl = user_data;
  char buf[256];
  ssize_t n = read (fd, buf, sizeof buf);

  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    /* End of input answers no. */
    ctl->tty_watch = 0;
    answer_confirm (ctl, FALSE);
    return G_SOURCE_REMOVE;
  }
  g_string_append_len (ctl->tty_line, buf, n);
  char *nl = strchr (ctl->tty_line->str, '\n');
  if (nl == NULL)
    return G_SOURCE_CONTINUE;
  *nl = '\0';
  g_strstrip (ctl->tty_line->str);
  gboolean yes = g_ascii_strcasecmp (ctl->tty_line->str, "y") == 0 ||
                 g_ascii_strcasecmp (ctl->tty_line->str, "yes") == 0;
  ctl->tty_watch = 0;
  answer_confirm (ctl, yes);
  return G_SOURCE_REMOVE;
}

static gboolean
handle_confirm_payment (TallyDBusAgent1 *agent,
                        GDBusMethodInvocation *invocation,
                        const char *payment,
                        gint64 amount,
                        const char *currency,
                        const char *payee,
                        const char *comparison_code,
                        const char *payee_name,
                        gpointer user_data)
{
  Ctl *ctl = user_data;

  if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), ctl->owner) != 0) {
    g_dbus_method_invocation_return_dbus_error (invocation,
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "not from our tallyd");
    return TRUE;
  }
  if (ctl->pending_confirm != NULL) {
    g_dbus_method_invocation_return_dbus_error (invocation,
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "already asking about another payment");
    return TRUE;
  }

  g_autoptr (GError) mismatch = NULL;
  if (ctl->request_uri != NULL &&
      !tally_request_uri_check_offer (ctl->request_uri, tally_now (), amount, currency, payee_name,
                                      &mismatch)) {
    /* The payee offers something other than its request said: no payment. */
    report_gerror (ctl, mismatch);
    g_dbus_method_invocation_return_dbus_error (invocation, tally_dbus_error_name_for (mismatch),
                                                mismatch->message);
    return TRUE;
  }

  g_autofree char *text = tally_amount_format (amount, currency);
  /* The payer checks the name and the code against the payee's screen
   * before saying yes; the code reads in two groups of three. */
  g_autofree char *code = strlen (comparison_code) == 6
                            ? g_strdup_printf ("%.3s %s", comparison_code, comparison_code + 3)
                            : g_strdup (comparison_code);
  g_autofree char *line =
    g_strdup_printf ("Pay %s to %s \u00b7 code %s", g_strstrip (text),
                     *payee_name != '\0' ? payee_name : payee, code);
  /* Ours now: answer_confirm () or Cancel () replies to it. */
  ctl->pending_confirm = invocation;
  if (ctl->yes) {
    progress (ctl, "%s", line);
    answer_confirm (ctl, TRUE);
    return TRUE;
  }

  ctl->tty_fd = open ("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  ctl->tty_owned = ctl->tty_fd >= 0;
  if (ctl->tty_fd < 0)
    ctl->tty_fd = STDIN_FILENO;
  g_autofree char *prompt = g_strdup_printf ("%s\nConfirm? [y/N] ", line);
  if (ctl->tty_owned) {
    if (write (ctl->tty_fd, prompt, strlen (prompt)) < 0)
      g_printerr ("%s", prompt);
  } else {
    g_printerr ("%s", prompt);
  }
  ctl->tty_line = g_string_new (NULL);
  ctl->tty_watch = g_unix_fd_add (ctl->tty_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_tty, ctl);
  return TRUE;
}

static gboolean
handle_agent_cancel (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  Ctl *ctl = user_data;
  if (ctl->pending_confirm != NULL) {
    progress (ctl, "\nConfirmation cancelled by tallyd.");
    stop_prompt (ctl);
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&ctl->pending_confirm),
                                                tally_error_to_name (TALLY_ERROR_CANCELLED),
                                                "cancelled by tallyd");
  }
  tally_dbus_agent1_complete_cancel (agent, invocation);
  return TRUE;
}

int
cmd_pay (Ctl *ctl, int argc, char **argv)
{
  int timeout = 0, rc;
  const GOptionEntry entries[] = {
    { "yes", 'y', 0, G_OPTION_ARG_NONE, &ctl->yes, "Confirm without asking", NULL },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
      "Give up after SECONDS (default: tallyd's [payment] timeout_seconds)", "SECONDS" },
    { NULL },
  };
  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 1, &rc))
    return rc;
  if (timeout < 0)
    return usage_error (ctl, "--timeout must be positive");

  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRequestUri) request_uri = NULL;
  const char *address = argv[1];
  if (tally_request_uri_is_uri (address)) {
    request_uri = tally_request_uri_parse (address, &error);
    /* Only the expiry can fail against the request's own terms. */
    if (request_uri == NULL ||
        !tally_request_uri_check_offer (request_uri, tally_now (), request_uri->amount,
                                        request_uri->currency, request_uri->display_name, &error))
      return report_gerror (ctl, error);
    address = request_uri->address;
    ctl->request_uri = request_uri;
  }
  ctl->agent_path = g_strdup_printf ("/org/tally/ctl/agent%ld", (long) getpid ());
  ctl->agent = tally_dbus_agent1_skeleton_new ();
  g_signal_connect (ctl->agent, "handle-confirm-payment", G_CALLBACK (handle_confirm_payment), ctl);
  g_signal_connect (ctl->agent, "handle-cancel", G_CALLBACK (handle_agent_cancel), ctl);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (ctl->agent), ctl->bus,
                                         ctl->agent_path, &error))
    return report_error (ctl, TALLY_DBUS_ERROR_FAILED, error->message);

  g_autoptr (GVariant) reg = call (ctl, AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "RegisterAgent",
                                   g_variant_new ("(o)", ctl->agent_path), NULL, &error);
  if (reg == NULL)
    return report_gerror (ctl, error);

  GVariantBuilder options;
  g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
  if (timeout > 0)
    g_variant_builder_add (&options, "{sv}", "Timeout", g_variant_new_uint32 ((guint32) timeout));
  /* The payee may have several requests open: the Hello names this one
   * (a "ble:TAG" address names it already). */
  if (request_uri != NULL && request_uri->tag[0] != '\0' &&
      request_uri->transport != TALLY_URI_TRANSPORT_BLE)
    g_variant_builder_add (&options, "{sv}", "Tag", g_variant_new_string (request_uri->tag));
  g_autoptr (GVariant) reply =
    call (ctl, REGISTER_PATH, REGISTER_IFACE, "Pay", g_variant_new ("(sa{sv})", address, &options),
          G_VARIANT_TYPE ("(o)"), &error);
  if (reply == NULL)
    rc = report_gerror (ctl, error);
  else {
    const char *path;
    g_variant_get (reply, "(&o)", &path);
    if (g_str_has_prefix (address, "ble"))
      progress (ctl, "Looking for the payee %s over Bluetooth LE", address);
    else
      progress (ctl, "Connecting to %s", address);
    rc = follow_payment (ctl, path);
  }
  ctl->request_uri = NULL;

  g_autoptr (GVariant) unreg = call (ctl, AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "UnregisterAgent",
                                     g_variant_new ("(o)", ctl->agent_path), NULL, NULL);
  return rc;
}
