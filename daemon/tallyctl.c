/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tallyctl.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "tally-build-config.h"

/* tallyd's bus when --bus is not given: the system bus in an install
 * (-Ddefaults=system), the session bus in a development build. */
#if TALLY_DEFAULTS_SYSTEM
#define DEFAULT_BUS      G_BUS_TYPE_SYSTEM
#define DEFAULT_BUS_HELP "Bus of tallyd: system (default) or session"
#else
#define DEFAULT_BUS      G_BUS_TYPE_SESSION
#define DEFAULT_BUS_HELP "Bus of tallyd: session (default) or system"
#endif

/* parse_options () after --version printed it: exit 0 at once. */
#define EXIT_VERSION (-1)

/* --- main --- */

static const Command commands[] = {
  { "info", "", "Show every property of the register.", "tallyctl info", cmd_info,
    CTL_OUTPUT_TERSE | CTL_OUTPUT_FIELDS },
  { "balance", "", "Show the balance.", "tallyctl balance", cmd_balance, CTL_OUTPUT_TERSE },
  { "request", "AMOUNT",
    "Request a payment and wait for a payer (or --payers N) to pay it; prints the tally:// "
    "request URI, and with --qr, --qr-png or --qr-svg its QR code.",
    "tallyctl request 5.00 --memo 'coffee' --payers 3", cmd_request },
  { "pay", "ADDRESS",
    "Pay the request waiting at a payee's address: unix:PATH, tcp:HOST:PORT, ble (the first "
    "payee found over Bluetooth LE), ble:TAG (the payee advertising that request tag) or "
    "ble:AA:BB:CC:DD:EE:FF (that device), or the tally:// URI `tallyctl request` prints; "
    "a URI's amount, currency, payee name and expiry must match the payee's offer.",
    "tallyctl pay ble:0a1b2c3d", cmd_pay },
  { "scan", "",
    "List the stalls nearby that advertise a payment request over Bluetooth LE, as they come "
    "and go, for --timeout seconds or until Ctrl-C; pay one with tallyctl pay ble:TAG.",
    "tallyctl scan --timeout 0", cmd_scan },
  { "history", "", "List register entries, newest first.", "tallyctl history --limit 10",
    cmd_history, CTL_OUTPUT_TERSE | CTL_OUTPUT_FIELDS },
  { "load", "FILE", "Load value from an issuer voucher (FILE - reads standard input).",
    "tallyctl load voucher.bin", cmd_load },
  { "issuer", "FILE",
    "Trust the issuer whose signed key set FILE holds (tally-issuer key --out); once, on a "
    "register made without [register] issuer_key (FILE - reads standard input).",
    "tallyctl issuer issuer-keys.bin", cmd_issuer },
  { "certificate", "FILE",
    "Install the issuer's certificate for this register (FILE - reads standard input).",
    "tallyctl certificate register.cert", cmd_certificate },
  { "export", "FILE",
    "Write a reconciliation bundle for the issuer (FILE - writes standard output).",
    "tallyctl export - | ssh issuer 'cat > alice.bundle'", cmd_export },
  { "apply", "FILE", "Apply the issuer's reconciliation result (FILE - reads standard input).",
    "tallyctl apply result.bin", cmd_apply },
  { "sync", "",
    "Reconcile with the online issuer now ([issuer] url in tallyd.conf): export, upload, "
    "apply, and fetch the revocation list; safe to interrupt and run again.",
    "tallyctl sync", cmd_sync },
  { "enroll", "",
    "Enrol the register with an issuer account online ([issuer] url): proves it holds its key, "
    "installs the certificate, and keeps the account for topup.",
    "tallyctl enroll --account stall-42 --token-file stall-42.token", cmd_enroll },
  { "topup", "AMOUNT",
    "Buy a voucher of AMOUNT from the enrolled account online and load it; safe to run again "
    "after a dropped connection: the account pays once per voucher.",
    "tallyctl topup 25.00", cmd_topup },
  { "defund", "FILE",
    "Move the whole balance back online and close the register; FILE must not exist yet.",
    "tallyctl defund defund.bin", cmd_defund },
  { "key", "", "Print the register public key (hex) for certification.", "tallyctl key", cmd_key,
    CTL_OUTPUT_TERSE },
};

static char *
describe_commands (void)
{
  GString *s = g_string_new ("Commands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_autofree char *head = g_strdup_printf ("%s %s", commands[i].name, commands[i].args);
    g_string_append_printf (s, "  %-20s %s\n", head, commands[i].summary);
  }
  g_string_append (s, "\nExamples:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    g_string_append_printf (s, "  %s\n", commands[i].example);
  g_string_append (s,
                   "  tallyctl --name org.tally.Alice --json balance\n"
                   "\nRun tallyctl COMMAND --help for a command's options.\n\n" EXIT_STATUS_HELP);
  return g_string_free (s, FALSE);
}

static int
resolve_owner (Ctl *ctl)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
    ctl->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "GetNameOwner", g_variant_new ("(s)", ctl->name), G_VARIANT_TYPE ("(s)"),
    G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  if (reply == NULL) {
    /* What to do about it: the packaged service on the system bus, the
     * program itself on a session bus. */
    gboolean system = strcmp (ctl->bus_label, "system") == 0;
    gboolean named = strcmp (ctl->name, "org.tally.Tally") != 0;
    g_autofree char *as = named ? g_strdup_printf (" as %s", ctl->name) : g_strdup ("");
    g_autofree char *msg =
      g_strdup_printf ("tallyd is not running%s on the %s bus \u2014 %s", as, ctl->bus_label,
                       system ? "start it with `systemctl start tallyd`" : "run tallyd");
    return report_error (ctl, DBUS_ERROR_NAME_HAS_NO_OWNER, msg);
  }
  g_variant_get (reply, "(s)", &ctl->owner);
  return EXIT_OK;
}

GOptionEntry *
ctl_global_entries (CtlGlobals *g, const GOptionEntry *command_entries)
{
  const GOptionEntry entries[] = {
    { "bus", 'b', 0, G_OPTION_ARG_STRING, &g->bus, DEFAULT_BUS_HELP, "BUS" },
    { "name", 'n', 0, G_OPTION_ARG_STRING, &g->name,
      "Bus name of tallyd (default: org.tally.Tally)", "NAME" },
    { "json", 'j', 0, G_OPTION_ARG_NONE, &g->json, "Print one JSON object, for scripts", NULL },
    { "terse", 't', 0, G_OPTION_ARG_NONE, &g->terse,
      "Values only, for scripts: one per line, or a table's rows with fields split by ':'", NULL },
    { "fields", 'f', 0, G_OPTION_ARG_STRING, &g->fields,
      "Show only these comma-separated fields (info: property names; history: time, kind, "
      "state, amount, number, peer, memo)",
      "FIELDS" },
    { NULL },
  };
  GOptionEntry *copy = g_memdup2 (entries, sizeof entries);
  /* After the command, its own short options win (history -n, request -t). */
  for (GOptionEntry *e = copy; command_entries != NULL && e->long_name != NULL; e++)
    for (const GOptionEntry *c = command_entries; c->long_name != NULL; c++)
      if (c->short_name != 0 && c->short_name == e->short_name)
        e->short_name = 0;
  return copy;
}

/* The options before the command, and the command itself. */
static int
parse_options (Ctl *ctl, int *argc, char ***argv)
{
  gboolean version = FALSE;
  const GOptionEntry version_entries[] = {
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL },
  };
  g_autofree GOptionEntry *entries = ctl_global_entries (&ctl->globals, NULL);
  g_autoptr (GError) error = NULL;

  g_autoptr (GOptionContext) context = g_option_context_new ("COMMAND [ARGS…]");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_add_main_entries (context, version_entries, NULL);
  g_option_context_set_strict_posix (context, TRUE);
  g_option_context_set_summary (context, "Control tallyd, the Tally offline payment daemon.");
  g_autofree char *description = describe_commands ();
  g_option_context_set_description (context, description);
  if (!g_option_context_parse (context, argc, argv, &error))
    return usage_error (ctl, "%s", error->message);
  if (version) {
    printf ("tallyctl %s\n", TALLY_VERSION);
    return EXIT_VERSION;
  }
  if (*argc < 2)
    return usage_error (ctl, "no command given");

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp ((*argv)[1], commands[i].name) == 0)
      ctl->command = &commands[i];
  if (ctl->command == NULL)
    return usage_error (ctl, "unknown command \"%s\"", (*argv)[1]);
  return EXIT_OK;
}

/* Checks --name and --bus. */
static int
choose_bus (Ctl *ctl, const char *name, const char *bus, GBusType *bus_type)
{
  ctl->name = name ? name : "org.tally.Tally";
  if (!g_dbus_is_name (ctl->name))
    return usage_error (ctl, "\"%s\" is not a D-Bus name", ctl->name);
  if (bus == NULL) {
    *bus_type = DEFAULT_BUS;
    ctl->bus_label = DEFAULT_BUS == G_BUS_TYPE_SYSTEM ? "system" : "session";
  } else if (strcmp (bus, "session") == 0) {
    *bus_type = G_BUS_TYPE_SESSION;
    ctl->bus_label = "session";
  } else if (strcmp (bus, "system") == 0) {
    *bus_type = G_BUS_TYPE_SYSTEM;
    ctl->bus_label = "system";
  } else {
    return usage_error (ctl, "--bus must be session or system");
  }
  return EXIT_OK;
}

/* Connects to the bus, finds the tallyd to talk to and notices when it goes. */
static int
connect_tallyd (Ctl *ctl, GBusType bus_type)
{
  g_autoptr (GError) error = NULL;

  ctl->bus = g_bus_get_sync (bus_type, NULL, &error);
  if (ctl->bus == NULL) {
    g_autofree char *msg = g_strdup_printf ("cannot connect to the %s bus: %s", ctl->bus_label,
                                            error->message);
    /* No bus, no tallyd on it. */
    return report_error (ctl, "org.freedesktop.DBus.Error.NoServer", msg);
  }
  int rc = resolve_owner (ctl);
  if (rc != EXIT_OK) {
    g_clear_object (&ctl->bus);
    return rc;
  }
  ctl->loop = g_main_loop_new (NULL, FALSE);
  ctl->owner_watch = g_bus_watch_name_on_connection (ctl->bus, ctl->owner,
                                                     G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
                                                     on_owner_vanished, ctl, NULL);
  return EXIT_OK;
}

/* Answers a pending confirmation, leaves the bus and frees the run's state. */
static void
ctl_clear (Ctl *ctl)
{
  stop_prompt (ctl);
  if (ctl->pending_confirm != NULL)
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&ctl->pending_confirm),
                                                tally_error_to_name (TALLY_ERROR_REJECTED),
                                                "tallyctl is exiting");
  if (ctl->owner_watch != 0)
    g_bus_unwatch_name (ctl->owner_watch);
  if (ctl->props_subscription != 0)
    g_dbus_connection_signal_unsubscribe (ctl->bus, ctl->props_subscription);
  if (ctl->agent != NULL) {
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (ctl->agent));
    g_object_unref (ctl->agent);
  }
  if (ctl->bus != NULL)
    g_dbus_connection_flush_sync (ctl->bus, NULL, NULL);
  g_clear_pointer (&ctl->payment, g_variant_dict_unref);
  g_clear_pointer (&ctl->loop, g_main_loop_unref);
  g_clear_object (&ctl->bus);
  g_free (ctl->owner);
  g_free (ctl->payment_path);
  g_free (ctl->agent_path);
  g_free (ctl->globals.bus);
  g_free (ctl->globals.name);
  g_free (ctl->globals.fields);
  g_strfreev (ctl->fields);
}

/* --fields: names split at commas, none empty. */
static int
take_fields (Ctl *ctl)
{
  if (ctl->globals.fields == NULL)
    return EXIT_OK;
  ctl->fields = g_strsplit (ctl->globals.fields, ",", -1);
  for (char **f = ctl->fields; *f != NULL; f++)
    if (**f == '\0')
      return usage_error (ctl, "--fields: an empty field name in \"%s\"", ctl->globals.fields);
  return EXIT_OK;
}

/* Given after the command, an option replaces the one before it. */
static void
take_later (char **before, char **after)
{
  if (*after == NULL)
    return;
  g_free (*before);
  *before = g_steal_pointer (after);
}

int
ctl_start (Ctl *ctl, CtlGlobals *after)
{
  take_later (&ctl->globals.bus, &after->bus);
  take_later (&ctl->globals.name, &after->name);
  take_later (&ctl->globals.fields, &after->fields);
  ctl->globals.json |= after->json;
  ctl->globals.terse |= after->terse;
  ctl->json = ctl->globals.json;
  ctl->terse = ctl->globals.terse;
  if (ctl->json && ctl->terse)
    return usage_error (ctl, "--json and --terse: choose one");
  if (ctl->terse && !(ctl->command->output & CTL_OUTPUT_TERSE))
    return usage_error (ctl, "--terse applies to info, balance, key and history");
  if (ctl->globals.fields != NULL && !(ctl->command->output & CTL_OUTPUT_FIELDS))
    return usage_error (ctl, "--fields applies to info and history");
  int rc = take_fields (ctl);
  GBusType bus_type = DEFAULT_BUS;
  if (rc == EXIT_OK)
    rc = choose_bus (ctl, ctl->globals.name, ctl->globals.bus, &bus_type);
  if (rc == EXIT_OK)
    rc = connect_tallyd (ctl, bus_type);
  return rc;
}

int
main (int argc, char **argv)
{
  Ctl ctl = { .tty_fd = -1 };

  setlocale (LC_ALL, "");
  /* Scripts read "Waiting for payer" while we wait. */
  setvbuf (stdout, NULL, _IOLBF, 0);

  int rc = parse_options (&ctl, &argc, &argv);
  if (rc == EXIT_VERSION || rc != EXIT_OK) {
    ctl_clear (&ctl);
    return rc == EXIT_VERSION ? EXIT_OK : rc;
  }

  tally_dbus_error_register ();
  /* The command parses its options, then ctl_start () connects. */
  rc = ctl.command->run (&ctl, argc - 1, argv + 1);
  ctl_clear (&ctl);
  return rc;
}
