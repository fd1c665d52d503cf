/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* BlueZ's D-Bus names and the small helpers the GATT server and client
 * share: private to transport/. */

#include <gio/gio.h>

G_BEGIN_DECLS

#define BLUEZ                     "org.bluez"
#define ADAPTER_IFACE             "org.bluez.Adapter1"
#define DEVICE_IFACE              "org.bluez.Device1"
#define GATT_MANAGER_IFACE        "org.bluez.GattManager1"
#define ADV_MANAGER_IFACE         "org.bluez.LEAdvertisingManager1"
#define GATT_SERVICE_IFACE        "org.bluez.GattService1"
#define GATT_CHRC_IFACE           "org.bluez.GattCharacteristic1"
#define ADV_IFACE                 "org.bluez.LEAdvertisement1"
#define OBJECT_MANAGER_IFACE      "org.freedesktop.DBus.ObjectManager"
#define PROPERTIES_IFACE          "org.freedesktop.DBus.Properties"

#define BLUEZ_ERROR_FAILED            "org.bluez.Error.Failed"
#define BLUEZ_ERROR_NOT_PERMITTED     "org.bluez.Error.NotPermitted"
#define BLUEZ_ERROR_IN_PROGRESS       "org.bluez.Error.InProgress"
#define BLUEZ_ERROR_ALREADY_CONNECTED "org.bluez.Error.AlreadyConnected"
#define BLUEZ_ERROR_ALREADY_EXISTS    "org.bluez.Error.AlreadyExists"
#define BLUEZ_ERROR_DOES_NOT_EXIST    "org.bluez.Error.DoesNotExist"

/* INVALID_ARGUMENT unless @adapter is a name like "hci0". */
gboolean tally_bluez_check_adapter_name (const char *adapter, GError **error);
/* "/org/bluez/hci0" */
char *tally_bluez_adapter_path (const char *adapter);
/* TRUE for a device object right under @adapter_path
 * ("/org/bluez/hci0/dev_00_AA_01_01_00_01"). */
gboolean tally_bluez_is_adapter_device (const char *adapter_path, const char *path);

/* Finishes a call to BlueZ: the reply, or NULL with @error set and
 * *remote the D-Bus error name BlueZ answered with (NULL when none). */
GVariant *
tally_bluez_call_finish (GObject *source, GAsyncResult *result, char **remote, GError **error);
/* Calls @method without arguments on @path and only logs a failure, at
 * debug level, as "@what: message"; takes @what. */
void tally_bluez_call_ignoring (GDBusConnection *bus,
                                const char *path,
                                const char *iface,
                                const char *method,
                                char *what);
/* Properties.Get of the boolean @name; @callback finishes it with
 * tally_bluez_get_flag_finish (). */
void tally_bluez_get_flag (GDBusConnection *bus,
                           const char *path,
                           const char *iface,
                           const char *name,
                           GCancellable *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer user_data);
/* FALSE with @error when the call failed; else *flag is TRUE when the
 * property is a boolean and true. */
gboolean tally_bluez_get_flag_finish (GObject *source,
                                      GAsyncResult *result,
                                      gboolean *flag,
                                      GError **error);
/* Maps a failed BlueZ call onto the TALLY_ERROR a caller acts on:
 * "@what: message". */
void tally_bluez_set_error (GError **error, const GError *dbus_error, const char *what);

/* BlueZ's signals, checked and unpacked.  A watch lives in its owner's
 * struct: each callback runs on the thread-default main context of the
 * subscriber, none after tally_bluez_unwatch (), which calls @destroy. */
typedef void (*TallyBluezPropertiesFunc) (const char *path,
                                          const char *iface,
                                          GVariant *changed,
                                          gpointer user_data);
typedef void (*TallyBluezAddedFunc) (const char *object, GVariant *ifaces, gpointer user_data);
typedef void (*TallyBluezRemovedFunc) (const char *object,
                                       const char *const *ifaces,
                                       gpointer user_data);

typedef struct
{
  guint id; /* 0: not subscribed */
  GCallback func;
  gpointer user_data;
  GDestroyNotify destroy;
} TallyBluezWatch;

/* PropertiesChanged of objects that have @arg0 (NULL: any interface). */
void tally_bluez_watch_properties (TallyBluezWatch *watch,
                                   GDBusConnection *bus,
                                   const char *arg0,
                                   TallyBluezPropertiesFunc func,
                                   gpointer user_data,
                                   GDestroyNotify destroy);
void tally_bluez_watch_added (TallyBluezWatch *watch,
                              GDBusConnection *bus,
                              TallyBluezAddedFunc func,
                              gpointer user_data,
                              GDestroyNotify destroy);
void tally_bluez_watch_removed (TallyBluezWatch *watch,
                                GDBusConnection *bus,
                                TallyBluezRemovedFunc func,
                                gpointer user_data,
                                GDestroyNotify destroy);
void tally_bluez_unwatch (TallyBluezWatch *watch, GDBusConnection *bus);

G_END_DECLS
