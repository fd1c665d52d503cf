/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib-unix.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tally-btmon.h"
#include "tally-build-config.h"
#include "tally-config.h"
#include "tally-daemon.h"
#include "tally-dbus-error.h"

typedef struct
{
  GMainLoop *loop;
  TallyDaemon *daemon;
  const TallyConfig *config;
  int exit_code;
  gboolean exported;
} Tallyd;

static gboolean opt_verbose;

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if ((level & G_LOG_LEVEL_DEBUG) && !opt_verbose)
    return G_LOG_WRITER_HANDLED;
  /* Inline in btmon when we may write to the monitor's logging channel. */
  tally_btmon_log_fields (user_data, "tallyd", level, fields, n_fields);
  if (g_log_writer_is_journald (fileno (stderr)) &&
      g_log_writer_journald (level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_standard_streams (level, fields, n_fields, user_data);
}

static void
on_bus_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  Tallyd *t = user_data;
  g_autoptr (GError) error = NULL;

  if (!tally_daemon_export (t->daemon, connection, &error)) {
    g_critical ("cannot export the D-Bus objects: %s", error->message);
    t->exit_code = 1;
    g_main_loop_quit (t->loop);
    return;
  }
  t->exported = TRUE;
}

static void
on_name_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  g_message ("serving %s on the %s bus", name,
             ((Tallyd *) user_data)->config->bus_type == G_BUS_TYPE_SYSTEM ? "system" : "session");
}

static void
on_name_lost (GDBusConnection *connection, const char *name, gpointer user_data)
{
  Tallyd *t = user_data;

  if (connection == NULL)
    g_printerr ("tallyd: cannot connect to the %s bus\n",
                t->config->bus_type == G_BUS_TYPE_SYSTEM ? "system" : "session");
  else
    g_printerr ("tallyd: the name %s is taken or not allowed by the bus policy\n", name);
  t->exit_code = 1;
  g_main_loop_quit (t->loop);
}

static gboolean
on_signal (gpointer user_data)
{
  Tallyd *t = user_data;
  g_message ("terminating");
  g_main_loop_quit (t->loop);
  return G_SOURCE_CONTINUE;
}

/* Each payer's connection is a file descriptor: take all the kernel
 * allows us, and say how many that is. */
static void
raise_fd_limit (void)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0) {
    g_warning ("cannot read the file descriptor limit: %s", g_strerror (errno));
    return;
  }
  rlim_t was = limit.rlim_cur;
  if (limit.rlim_cur != limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit (RLIMIT_NOFILE, &limit) != 0) {
      g_warning ("cannot raise the file descriptor limit from %llu to %llu: %s",
                 (unsigned long long) was, (unsigned long long) limit.rlim_max, g_strerror (errno));
      return;
    }
  }
  g_message ("file descriptor limit %llu (was %llu)", (unsigned long long) limit.rlim_cur,
             (unsigned long long) was);
}

int
main (int argc, char **argv)
{
  g_autofree char *config_path = NULL;
  gboolean foreground = TRUE;
  gboolean version = FALSE;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
#if TALLY_DEFAULTS_SYSTEM
      "Read the configuration from FILE (keys below; default: " TALLY_SYSTEM_CONFIG_FILE
      " when it exists)",
#else
      "Read the configuration from FILE (keys below)",
#endif
      "FILE" },
    { "foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
      "Stay in the foreground (always; for service managers)", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Log debug messages too", NULL },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  setlocale (LC_ALL, "");
  g_autoptr (GOptionContext) context = g_option_context_new ("- Tally offline payment daemon");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_summary (context,
                                "Holds one balance register and serves it as org.tally.Register1 "
                                "on D-Bus.\nPayers connect to the [transport] listen address, "
                                "and with [transport] ble=true\nover Bluetooth LE (BlueZ on the "
                                "system bus): the payee advertises while a\nrequest waits, and "
                                "Pay takes ble, ble:TAG and ble:AA:BB:CC:DD:EE:FF.");
  g_option_context_set_description (context, TALLY_DEFAULTS_SYSTEM ? tally_config_describe_system ()
                                                                   : tally_config_describe ());
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("tallyd: %s\nTry tallyd --help.\n", error->message);
    return 2;
  }
  if (argc > 1) {
    g_printerr ("tallyd: unexpected argument %s\nTry tallyd --help.\n", argv[1]);
    return 2;
  }
  if (version) {
    printf ("tallyd %s\n", TALLY_VERSION);
    return 0;
  }

  /* Without Bluetooth or CAP_NET_ADMIN this is NULL and logs go only to
   * the usual places. */
  g_log_set_writer_func (log_writer, tally_btmon_open (NULL), (GDestroyNotify) tally_btmon_free);
  if (sodium_init () < 0) {
    g_printerr ("tallyd: libsodium failed to initialise\n");
    return 1;
  }
  tally_dbus_error_register ();
  raise_fd_limit ();

  g_autoptr (TallyConfig) config =
    TALLY_DEFAULTS_SYSTEM ? tally_config_new_system () : tally_config_new ();
  if (config_path != NULL && !tally_config_load_file (config, config_path, &error)) {
    g_printerr ("tallyd: invalid configuration: %s\n", error->message);
    return 1;
  }
#if TALLY_DEFAULTS_SYSTEM
  /* An installed tallyd reads the installed file, like bluetoothd its
   * main.conf; without the file the built-in defaults hold. */
  if (config_path == NULL && !tally_config_load_file (config, TALLY_SYSTEM_CONFIG_FILE, &error) &&
      !g_error_matches (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
    g_printerr ("tallyd: invalid configuration: %s\n", error->message);
    return 1;
  }
  g_clear_error (&error);
#endif

  g_autoptr (TallyDaemon) daemon = tally_daemon_new (config, &error);
  if (daemon == NULL) {
    g_printerr ("tallyd: %s\n", error->message);
    return 1;
  }

  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  Tallyd t = { .loop = loop, .daemon = daemon, .config = config };
  guint owner_id = g_bus_own_name (config->bus_type, config->bus_name,
                                   G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE, on_bus_acquired,
                                   on_name_acquired, on_name_lost, &t, NULL);
  guint sigint = g_unix_signal_add (SIGINT, on_signal, &t);
  guint sigterm = g_unix_signal_add (SIGTERM, on_signal, &t);

  g_main_loop_run (loop);

  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_bus_unown_name (owner_id);
  return t.exit_code;
}
