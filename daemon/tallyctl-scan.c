/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib-unix.h>
#include <string.h>

#include "tallyctl.h"

/*
 * tallyctl scan: Register1.StartDiscovery, then the org.tally.Stall1
 * objects tallyd adds and removes at / until the time is up or Ctrl-C;
 * StopDiscovery at the end (tallyd also stops when we leave the bus).
 */

#define STALL_IFACE "org.tally.Stall1"

typedef struct
{
  Ctl *ctl;
  GHashTable *stalls; /* path -> GVariant a{sv} of Stall1 */
  gboolean stopped;   /* by a signal */
} Scan;

static void
print_stall (Scan *scan, char sign, GVariant *props)
{
  const char *address = "", *device = "";
  gint16 rssi = 0;
  gboolean has_rssi;

  if (scan->ctl->json)
    return;
  g_variant_lookup (props, "Address", "&s", &address);
  g_variant_lookup (props, "DeviceAddress", "&s", &device);
  has_rssi = g_variant_lookup (props, "RSSI", "n", &rssi) && rssi != 0;
  if (has_rssi)
    g_print ("%c %s  %d dBm  %s\n", sign, address, rssi, device);
  else
    g_print ("%c %s  %s\n", sign, address, device);
}

static void
stall_added (Scan *scan, const char *path, GVariant *ifaces)
{
  GVariant *props = g_variant_lookup_value (ifaces, STALL_IFACE, G_VARIANT_TYPE_VARDICT);

  if (props == NULL)
    return;
  if (!g_hash_table_contains (scan->stalls, path))
    print_stall (scan, '+', props);
  g_hash_table_insert (scan->stalls, g_strdup (path), props);
}

static void
on_manager_signal (GDBusConnection *connection,
                   const char *sender,
                   const char *path,
                   const char *iface,
                   const char *signal,
                   GVariant *params,
                   gpointer user_data)
{
  Scan *scan = user_data;
  const char *object = NULL;

  if (strcmp (signal, "InterfacesAdded") == 0) {
    g_autoptr (GVariant) ifaces = NULL;

    g_variant_get (params, "(&o@a{sa{sv}})", &object, &ifaces);
    stall_added (scan, object, ifaces);
  } else if (strcmp (signal, "InterfacesRemoved") == 0) {
    g_autofree const char **names = NULL;
    GVariant *props;

    g_variant_get (params, "(&o^a&s)", &object, &names);
    if (!g_strv_contains (names, STALL_IFACE))
      return;
    props = g_hash_table_lookup (scan->stalls, object);
    if (props == NULL)
      return;
    print_stall (scan, '-', props);
    g_hash_table_remove (scan->stalls, object);
  }
}

static gboolean
on_stop (gpointer user_data)
{
  Scan *scan = user_data;

  scan->stopped = TRUE;
  g_main_loop_quit (scan->ctl->loop);
  return G_SOURCE_CONTINUE;
}

/* The stalls tallyd lists already (another client may be discovering). */
static gboolean
list_existing (Scan *scan, GError **error)
{
  g_autoptr (GVariant) reply = call (scan->ctl, "/", "org.freedesktop.DBus.ObjectManager",
                                     "GetManagedObjects", NULL,
                                     G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), error);
  g_autoptr (GVariant) objects = NULL;
  GVariantIter iter;
  const char *path;
  GVariant *ifaces;

  if (reply == NULL)
    return FALSE;
  objects = g_variant_get_child_value (reply, 0);
  g_variant_iter_init (&iter, objects);
  while (g_variant_iter_loop (&iter, "{&o@a{sa{sv}}}", &path, &ifaces))
    stall_added (scan, path, ifaces);
  return TRUE;
}

static void
print_json (Scan *scan)
{
  g_autoptr (GString) out = g_string_new ("[");
  GHashTableIter iter;
  gpointer value;
  gboolean first = TRUE;

  g_hash_table_iter_init (&iter, scan->stalls);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    if (!first)
      g_string_append_c (out, ',');
    first = FALSE;
    json_value (out, value);
  }
  g_string_append (out, "]\n");
  g_print ("%s", out->str);
}

int
cmd_scan (Ctl *ctl, int argc, char **argv)
{
  int seconds = 10, rc;
  const GOptionEntry entries[] = {
    { "timeout", 't', 0, G_OPTION_ARG_INT, &seconds,
      "Scan for SECONDS, then print what is left (default 10; 0: until Ctrl-C)", "SECONDS" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  Scan scan = { .ctl = ctl };
  guint subscription, timer = 0, sigint, sigterm;

  if (!parse_command (ctl, entries, &argc, &argv, &rc) || !expect_args (ctl, argc, 0, &rc))
    return rc;
  if (seconds < 0)
    return usage_error (ctl, "--timeout must be 0 or more");

  scan.stalls = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify) g_variant_unref);
  /* ctl_start () watches tallyd: its leaving ends the loop. */
  ctl->exit_code = EXIT_OK;
  /* Subscribe first, then list: no stall falls between the two. */
  subscription = g_dbus_connection_signal_subscribe (
    ctl->bus, ctl->owner, "org.freedesktop.DBus.ObjectManager", NULL, "/", NULL,
    G_DBUS_SIGNAL_FLAGS_NONE, on_manager_signal, &scan, NULL);
  reply = call (ctl, REGISTER_PATH, REGISTER_IFACE, "StartDiscovery", NULL, NULL, &error);
  if (reply == NULL || !list_existing (&scan, &error)) {
    rc = report_gerror (ctl, error);
    g_dbus_connection_signal_unsubscribe (ctl->bus, subscription);
    g_hash_table_unref (scan.stalls);
    return rc;
  }
  progress (ctl, "Scanning for stalls nearby%s...", seconds > 0 ? "" : " (Ctrl-C stops)");

  if (seconds > 0)
    timer = g_timeout_add_seconds (seconds, on_stop, &scan);
  sigint = g_unix_signal_add (SIGINT, on_stop, &scan);
  sigterm = g_unix_signal_add (SIGTERM, on_stop, &scan);
  g_main_loop_run (ctl->loop);
  if (timer != 0)
    g_source_remove (timer);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_dbus_connection_signal_unsubscribe (ctl->bus, subscription);

  if (scan.stopped) {
    g_autoptr (GVariant) stop =
      call (ctl, REGISTER_PATH, REGISTER_IFACE, "StopDiscovery", NULL, NULL, &error);

    if (stop == NULL)
      ctl->exit_code = report_gerror (ctl, error);
    else if (ctl->json)
      print_json (&scan);
    else
      progress (ctl, "%u stall(s) nearby.", g_hash_table_size (scan.stalls));
  }
  g_hash_table_unref (scan.stalls);
  return ctl->exit_code;
}
