/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* BlueZ's D-Bus names, shared by the GATT server and client: private to
 * transport/. */

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

G_END_DECLS
