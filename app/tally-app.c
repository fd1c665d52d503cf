/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-app: the GTK 4 / libadwaita face of a Tally register.  A D-Bus
 * client of tallyd only (docs/dbus-api.md): it shows the balance and the
 * payments, asks for payments (stall mode), pays a tally:// request, and
 * confirms payments as tallyd's Agent1.
 */
#include <adwaita.h>
#include <glib/gi18n.h>
#include <locale.h>

#include "tally-app-window.h"
#include "tally-build-config.h"

#define DEFAULT_BUS_NAME "org.tally.Tally"

typedef struct
{
  gboolean system_bus;
  char *bus_name;
  int width, height; /* 0: the window's own default */
} Options;

static TallyAppWindow *
window_for (AdwApplication *app, Options *options)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));
  if (window == NULL) {
    window = GTK_WINDOW (tally_app_window_new (app, options->system_bus, options->bus_name));
    if (options->width > 0)
      gtk_window_set_default_size (window, options->width, options->height);
  }
  gtk_window_present (window);
  return TALLY_APP_WINDOW (window);
}

static void
on_activate (AdwApplication *app, Options *options)
{
  window_for (app, options);
}

/* tally://pay?... opened from a browser, a QR scanner or the command line. */
static void
on_open (AdwApplication *app, GFile **files, int n_files, const char *hint, Options *options)
{
  TallyAppWindow *window = window_for (app, options);
  if (n_files > 0) {
    g_autofree char *uri = g_file_get_uri (files[n_files - 1]);
    tally_app_window_show_pay (window, uri);
  }
}

/* "360x720": each side 200 to 10000 pixels. */
static gboolean
parse_geometry (const char *text, int *width, int *height)
{
  g_auto (GStrv) sides = g_strsplit (text, "x", -1);
  guint64 w = 0, h = 0;
  if (g_strv_length (sides) != 2 ||
      !g_ascii_string_to_unsigned (sides[0], 10, 200, 10000, &w, NULL) ||
      !g_ascii_string_to_unsigned (sides[1], 10, 200, 10000, &h, NULL))
    return FALSE;
  *width = (int) w;
  *height = (int) h;
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *bus_name = NULL;
  g_autofree char *geometry = NULL;
  gboolean session = FALSE, system = FALSE, version = FALSE;
  const GOptionEntry entries[] = {
    { "bus-name", 'n', 0, G_OPTION_ARG_STRING, &bus_name,
      N_ ("The bus name of tallyd (default: " DEFAULT_BUS_NAME ")"), N_ ("NAME") },
    { "session", 0, 0, G_OPTION_ARG_NONE, &session, N_ ("Talk to tallyd on the session bus"),
      NULL },
    { "system", 0, 0, G_OPTION_ARG_NONE, &system, N_ ("Talk to tallyd on the system bus"), NULL },
    { "geometry", 0, 0, G_OPTION_ARG_STRING, &geometry,
      N_ ("The window's size, e.g. 360x720 (a phone) or 1280x800"), N_ ("WIDTHxHEIGHT") },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, N_ ("Print the version and exit"), NULL },
    { NULL },
  };

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  g_autoptr (GOptionContext) context = g_option_context_new (_ ("[tally://pay?…]"));
  g_option_context_set_summary (context,
                                _ ("Pay and get paid with a Tally register: a client of tallyd."));
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("tally-app: %s\n", error->message);
    return 2;
  }
  if (version) {
    g_print ("tally-app %s\n", TALLY_VERSION);
    return 0;
  }
  if (session && system) {
    g_printerr ("tally-app: %s\n", _ ("--session and --system exclude each other"));
    return 2;
  }
  Options options = {
    .system_bus = system || (!session && TALLY_DEFAULTS_SYSTEM),
    .bus_name = bus_name != NULL ? bus_name : (char *) DEFAULT_BUS_NAME,
  };
  if (geometry != NULL && !parse_geometry (geometry, &options.width, &options.height)) {
    g_printerr ("tally-app: %s\n", _ ("--geometry needs WIDTHxHEIGHT, e.g. 360x720"));
    return 2;
  }
  if (!g_dbus_is_name (options.bus_name) || g_dbus_is_unique_name (options.bus_name)) {
    g_printerr ("tally-app: %s\n",
                _ ("--bus-name needs a well-known bus name, e.g. org.tally.Tally"));
    return 2;
  }

  /* One window per tallyd: another register's app (--bus-name) is an
   * instance of its own. */
  GApplicationFlags flags = G_APPLICATION_HANDLES_OPEN;
  if (bus_name != NULL || session || system)
    flags |= G_APPLICATION_NON_UNIQUE;
  g_autoptr (AdwApplication) app = adw_application_new ("org.tally.App", flags);
  g_signal_connect (app, "activate", G_CALLBACK (on_activate), &options);
  g_signal_connect (app, "open", G_CALLBACK (on_open), &options);
  return g_application_run (G_APPLICATION (app), argc, argv);
}
