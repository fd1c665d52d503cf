/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes a btsnoop capture (Linux monitor format, as `btmon -w` writes it)
 * of Tally sessions over BLE, for tools/tally.lua and its tests:
 *
 *   make-btsnoop [--scenario default|all-errors|no-discovery|malformed|reordered] OUTPUT
 *
 * tests/tools/scenario.h describes the scenarios.
 */
#include <locale.h>
#include <stdlib.h>

#include "scenario.h"

int
main (int argc, char **argv)
{
  g_autofree char *scenario_name = NULL;
  const GOptionEntry entries[] = {
    { "scenario", 's', 0, G_OPTION_ARG_STRING, &scenario_name,
      "default (three connections, every message type, a lost fragment), all-errors "
      "(one Error per code), no-discovery (no GATT discovery in the capture), malformed "
      "(fragments and messages that break the rules) or reordered (fragments out of order "
      "over two ATT bearers)",
      "NAME" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  setlocale (LC_ALL, "");
  g_autoptr (GOptionContext) context = g_option_context_new ("OUTPUT - write a btsnoop capture of Tally over BLE");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("make-btsnoop: %s\n", error->message);
    return 2;
  }
  if (argc != 2) {
    g_printerr ("make-btsnoop: expected one OUTPUT file\nTry make-btsnoop --help.\n");
    return 2;
  }

  ScenarioKind kind = SCENARIO_DEFAULT;
  if (scenario_name != NULL && !scenario_kind_from_string (scenario_name, &kind)) {
    g_printerr ("make-btsnoop: unknown scenario '%s'\n", scenario_name);
    return 2;
  }

  g_autoptr (Scenario) scenario = scenario_new (kind);
  if (!scenario_write_btsnoop (scenario, argv[1], &error)) {
    g_printerr ("make-btsnoop: %s\n", error->message);
    return 1;
  }
  return 0;
}
