/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-bluez-private.h"

#include <string.h>

#include "tally-core.h"

gboolean
tally_bluez_check_adapter_name (const char *adapter, GError **error)
{
  if (!g_dbus_is_member_name (adapter) || strchr (adapter, '/') != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\" is not an adapter name like hci0", adapter);
    return FALSE;
  }
  return TRUE;
}

char *
tally_bluez_adapter_path (const char *adapter)
{
  return g_strdup_printf ("/org/bluez/%s", adapter);
}

gboolean
tally_bluez_is_adapter_device (const char *adapter_path, const char *path)
{
  gsize len = strlen (adapter_path);

  return strncmp (path, adapter_path, len) == 0 && g_str_has_prefix (path + len, "/dev_") &&
         strchr (path + len + 1, '/') == NULL;
}

GVariant *
tally_bluez_call_finish (GObject *source, GAsyncResult *result, char **remote, GError **error)
{
  GError *local = NULL;
  GVariant *reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &local);

  *remote = NULL;
  if (reply == NULL) {
    *remote = g_dbus_error_get_remote_error (local);
    g_propagate_error (error, local);
  }
  return reply;
}

void
tally_bluez_get_flag (GDBusConnection *bus,
                      const char *path,
                      const char *iface,
                      const char *name,
                      GCancellable *cancellable,
                      GAsyncReadyCallback callback,
                      gpointer user_data)
{
  g_dbus_connection_call (bus, BLUEZ, path, PROPERTIES_IFACE, "Get",
                          g_variant_new ("(ss)", iface, name), G_VARIANT_TYPE ("(v)"),
                          G_DBUS_CALL_FLAGS_NONE, -1, cancellable, callback, user_data);
}

gboolean
tally_bluez_get_flag_finish (GObject *source, GAsyncResult *result, gboolean *flag, GError **error)
{
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, error);
  g_autoptr (GVariant) value = NULL;

  *flag = FALSE;
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(v)", &value);
  *flag = g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN) && g_variant_get_boolean (value);
  return TRUE;
}

static void
ignore_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree char *what = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL)
    g_debug ("%s: %s", what, error->message);
}

void
tally_bluez_call_ignoring (GDBusConnection *bus,
                           const char *path,
                           const char *iface,
                           const char *method,
                           char *what)
{
  g_dbus_connection_call (bus, BLUEZ, path, iface, method, NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1,
                          NULL, ignore_reply, what);
}

void
tally_bluez_set_error (GError **error, const GError *dbus_error, const char *what)
{
  g_autofree char *remote = g_dbus_error_get_remote_error (dbus_error);
  g_autoptr (GError) copy = g_error_copy (dbus_error);
  TallyError code = TALLY_ERROR_FAILED;

  g_dbus_error_strip_remote_error (copy);
  if (g_error_matches (dbus_error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    code = TALLY_ERROR_CANCELLED;
  else if (g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
           g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
           g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT) ||
           g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD) ||
           g_strcmp0 (remote, BLUEZ_ERROR_DOES_NOT_EXIST) == 0)
    code = TALLY_ERROR_NOT_FOUND;
  else if (g_strcmp0 (remote, BLUEZ_ERROR_ALREADY_EXISTS) == 0)
    code = TALLY_ERROR_EXISTS;
  g_set_error (error, TALLY_ERROR, code, "%s: %s", what, copy->message);
}

/* --- signals ------------------------------------------------------------------ */

static void
watch_signal (TallyBluezWatch *watch,
              GDBusConnection *bus,
              const char *iface,
              const char *member,
              const char *path,
              const char *arg0,
              GDBusSignalCallback trampoline,
              GCallback func,
              gpointer user_data,
              GDestroyNotify destroy)
{
  g_return_if_fail (watch->id == 0);

  watch->func = func;
  watch->user_data = user_data;
  watch->destroy = destroy;
  /* The watch is the owner's: GLib calls no trampoline once unsubscribed,
   * so it needs no free function of its own. */
  watch->id = g_dbus_connection_signal_subscribe (bus, BLUEZ, iface, member, path, arg0,
                                                  G_DBUS_SIGNAL_FLAGS_NONE, trampoline, watch,
                                                  NULL);
}

static void
on_properties_changed (GDBusConnection *connection,
                       const char *sender,
                       const char *path,
                       const char *interface_name,
                       const char *signal_name,
                       GVariant *parameters,
                       gpointer user_data)
{
  TallyBluezWatch *watch = user_data;
  const char *iface;
  g_autoptr (GVariant) changed = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (parameters, "(&s@a{sv}@as)", &iface, &changed, NULL);
  ((TallyBluezPropertiesFunc) watch->func) (path, iface, changed, watch->user_data);
}

void
tally_bluez_watch_properties (TallyBluezWatch *watch,
                              GDBusConnection *bus,
                              const char *arg0,
                              TallyBluezPropertiesFunc func,
                              gpointer user_data,
                              GDestroyNotify destroy)
{
  watch_signal (watch, bus, PROPERTIES_IFACE, "PropertiesChanged", NULL, arg0,
                on_properties_changed, G_CALLBACK (func), user_data, destroy);
}

static void
on_interfaces_added (GDBusConnection *connection,
                     const char *sender,
                     const char *path,
                     const char *interface_name,
                     const char *signal_name,
                     GVariant *parameters,
                     gpointer user_data)
{
  TallyBluezWatch *watch = user_data;
  const char *object;
  g_autoptr (GVariant) ifaces = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    return;
  g_variant_get (parameters, "(&o@a{sa{sv}})", &object, &ifaces);
  ((TallyBluezAddedFunc) watch->func) (object, ifaces, watch->user_data);
}

void
tally_bluez_watch_added (TallyBluezWatch *watch,
                         GDBusConnection *bus,
                         TallyBluezAddedFunc func,
                         gpointer user_data,
                         GDestroyNotify destroy)
{
  watch_signal (watch, bus, OBJECT_MANAGER_IFACE, "InterfacesAdded", "/", NULL,
                on_interfaces_added, G_CALLBACK (func), user_data, destroy);
}

static void
on_interfaces_removed (GDBusConnection *connection,
                       const char *sender,
                       const char *path,
                       const char *interface_name,
                       const char *signal_name,
                       GVariant *parameters,
                       gpointer user_data)
{
  TallyBluezWatch *watch = user_data;
  const char *object;
  g_autofree const char **ifaces = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oas)")))
    return;
  g_variant_get (parameters, "(&o^a&s)", &object, &ifaces);
  ((TallyBluezRemovedFunc) watch->func) (object, ifaces, watch->user_data);
}

void
tally_bluez_watch_removed (TallyBluezWatch *watch,
                           GDBusConnection *bus,
                           TallyBluezRemovedFunc func,
                           gpointer user_data,
                           GDestroyNotify destroy)
{
  watch_signal (watch, bus, OBJECT_MANAGER_IFACE, "InterfacesRemoved", "/", NULL,
                on_interfaces_removed, G_CALLBACK (func), user_data, destroy);
}

void
tally_bluez_unwatch (TallyBluezWatch *watch, GDBusConnection *bus)
{
  GDestroyNotify destroy = watch->destroy;
  gpointer user_data = watch->user_data;

  if (watch->id != 0)
    g_dbus_connection_signal_unsubscribe (bus, watch->id);
  memset (watch, 0, sizeof *watch);
  if (destroy != NULL)
    destroy (user_data);
}
