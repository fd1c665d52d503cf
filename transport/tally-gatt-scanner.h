/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Scanning for payees over Bluetooth LE through bluetoothd: a discovery
 * filtered on our service (Adapter1.SetDiscoveryFilter, StartDiscovery),
 * and every device BlueZ reports during it that lists the service, with
 * the request tag its manufacturer data carries.  The payer's client
 * (tally-gatt-client.h) scans with it to find the payee it was given;
 * tallyd's Register1.StartDiscovery to list the stalls nearby.
 *
 * bluetoothd keeps one discovery session per D-Bus client: the scanners of
 * one process on one connection and adapter share it.  The first to scan
 * starts it, the last to stop stops it, so a payment that finds its payee
 * does not end the discovery of a list shown beside it.
 */

#include <gio/gio.h>

#include "tally-gatt-address.h"

G_BEGIN_DECLS

typedef struct _TallyGattScanner TallyGattScanner;

/* The devices a scan follows at once (BlueZ's objects, which it drops
 * some time after their last report): each is read with at most one
 * GetAll, the first time a change names it, and only again when its UUIDs
 * change to list our service.  Beyond them, changes are ignored. */
#define TALLY_GATT_SCANNER_MAX_DEVICES 256

/* A device BlueZ reported during the discovery, listing our service. */
typedef struct
{
  const char *device;  /* BlueZ object path */
  const char *address; /* "AA:BB:...", NULL when BlueZ gave none */
  gboolean tagged;     /* manufacturer data with a request tag */
  guint8 tag[TALLY_GATT_TAG_BYTES];
  gboolean has_rssi;
  gint16 rssi; /* dBm */
} TallyGattSighting;

typedef enum
{
  TALLY_GATT_SCAN_FILTER_REFUSED,  /* SetDiscoveryFilter failed: no such adapter */
  TALLY_GATT_SCAN_START_REFUSED,   /* StartDiscovery failed */
  TALLY_GATT_SCAN_ADAPTER_STOPPED, /* Discovering or Powered turned false */
} TallyGattScanEnd;

const char *tally_gatt_scan_end_to_string (TallyGattScanEnd end);

typedef struct
{
  /* A report of a device with our service; may repeat for one device. */
  void (*seen) (TallyGattScanner *scanner, const TallyGattSighting *sighting, gpointer user_data);
  /* BlueZ removed the device object @device (NULL: not wanted). */
  void (*lost) (TallyGattScanner *scanner, const char *device, gpointer user_data);
  /* The scan ended without tally_gatt_scanner_stop (): @error is
   * NOT_FOUND, saying why. */
  void (*ended) (TallyGattScanner *scanner,
                 TallyGattScanEnd end,
                 const GError *error,
                 gpointer user_data);
} TallyGattScannerHandlers;

/* On @adapter ("hci0", checked by the caller) through @system_bus. */
TallyGattScanner *tally_gatt_scanner_new (GDBusConnection *system_bus, const char *adapter);
TallyGattScanner *tally_gatt_scanner_ref (TallyGattScanner *scanner);
/* The last reference stops the scan. */
void tally_gatt_scanner_unref (TallyGattScanner *scanner);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyGattScanner, tally_gatt_scanner_unref)

void tally_gatt_scanner_set_handlers (TallyGattScanner *scanner,
                                      const TallyGattScannerHandlers *handlers,
                                      gpointer user_data,
                                      GDestroyNotify destroy);

/* Starts a scan (a fresh one when one runs); reports come on the
 * thread-default main context of tally_gatt_scanner_new (). */
void tally_gatt_scanner_start (TallyGattScanner *scanner);
/* Stops reporting; bluetoothd's discovery stops when no other scanner of
 * this connection and adapter runs. */
void tally_gatt_scanner_stop (TallyGattScanner *scanner);
gboolean tally_gatt_scanner_is_running (TallyGattScanner *scanner);

G_END_DECLS
