/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An agent for tests/daemon/test-system-bus.sh: connects to the system
 * bus, registers org.tally.Agent1 at /test/agent with tallyd (and makes it
 * its uid's default), accepts every ConfirmPayment, and prints one line per
 * call: "registered", "confirm PAYMENT", "release".  Runs until killed.
 *
 *   test-agent-helper [NAME]
 */
#include <stdio.h>

#include "tally-dbus-generated.h"

static void
say (const char *line)
{
  printf ("%s\n", line);
  fflush (stdout);
}

static gboolean
on_confirm (TallyDBusAgent1 *agent,
            GDBusMethodInvocation *invocation,
            const char *payment,
            gint64 amount,
            const char *currency,
            const char *payee,
            const char *code,
            gpointer user_data)
{
  g_autofree char *line = g_strdup_printf ("confirm %s", payment);
  say (line);
  tally_dbus_agent1_complete_confirm_payment (agent, invocation);
  return TRUE;
}

static gboolean
on_release (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  say ("release");
  tally_dbus_agent1_complete_release (agent, invocation);
  return TRUE;
}

static gboolean
call_manager (GDBusConnection *bus, const char *name, const char *method, GError **error)
{
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_sync (bus, name, "/org/tally", "org.tally.AgentManager1", method,
                                 g_variant_new ("(o)", "/test/agent"), G_VARIANT_TYPE_UNIT,
                                 G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
  return reply != NULL;
}

int
main (int argc, char **argv)
{
  const char *name = argc > 1 ? argv[1] : "org.tally.Tally";
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
  if (bus == NULL) {
    g_printerr ("test-agent-helper: %s\n", error->message);
    return 1;
  }
  g_autoptr (TallyDBusAgent1) agent = tally_dbus_agent1_skeleton_new ();
  g_signal_connect (agent, "handle-confirm-payment", G_CALLBACK (on_confirm), NULL);
  g_signal_connect (agent, "handle-release", G_CALLBACK (on_release), NULL);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (agent), bus, "/test/agent",
                                         &error) ||
      !call_manager (bus, name, "RegisterAgent", &error) ||
      !call_manager (bus, name, "RequestDefaultAgent", &error)) {
    g_printerr ("test-agent-helper: %s\n", error->message);
    return 1;
  }
  say ("registered");
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_main_loop_run (loop);
  return 0;
}
