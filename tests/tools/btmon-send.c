/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sends log lines to the kernel's HCI logging channel through
 * daemon/tally-btmon.c, for btmon-log-vm.sh:
 *
 *   btmon-send [--priority N] IDENT MESSAGE...
 *
 * One line per MESSAGE.  Exit status: 0 every line was taken, 1 a line was
 * dropped, 3 the channel cannot be opened (prints "NAME: message" with the
 * TallyError name), 2 usage.
 */
#include <stdlib.h>

#include "tally-btmon.h"
#include "tally-error.h"

int
main (int argc, char **argv)
{
  gint priority = 6;
  const GOptionEntry entries[] = {
    { "priority", 'p', 0, G_OPTION_ARG_INT, &priority, "syslog priority, 0..7 (default 6)", "N" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  g_autoptr (GOptionContext) context = g_option_context_new ("IDENT MESSAGE...");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("btmon-send: %s\n", error->message);
    return 2;
  }
  if (argc < 3) {
    g_printerr ("usage: btmon-send [--priority N] IDENT MESSAGE...\n");
    return 2;
  }

  g_autoptr (TallyBtmon) m = tally_btmon_open (&error);
  if (m == NULL) {
    g_print ("%s: %s\n", tally_error_to_string (tally_error_code (error)), error->message);
    return 3;
  }
  for (int i = 2; i < argc; i++)
    tally_btmon_log (m, priority, argv[1], argv[i]);
  guint dropped = tally_btmon_get_dropped (m);
  if (dropped > 0) {
    g_print ("dropped %u of %d lines\n", dropped, argc - 2);
    return 1;
  }
  g_print ("sent %d lines\n", argc - 2);
  return 0;
}
