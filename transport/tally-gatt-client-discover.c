/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client-private.h"

#include <string.h>

#include "tally-bluez-private.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-link.h"

/* Finding the payee: the scanner's reports (tally-gatt-scanner.h) checked
 * against the address, and what BlueZ's signals say on the way. */

/* --- discovery ------------------------------------------------------------------- */

static gboolean
sighting_matches (ClientConn *conn, const TallyGattSighting *sighting)
{
  switch (conn->target.kind) {
  case TALLY_GATT_TARGET_ANY:
    return TRUE;
  case TALLY_GATT_TARGET_ADDRESS:
    return sighting->address != NULL &&
           g_ascii_strcasecmp (sighting->address, conn->target.address) == 0;
  case TALLY_GATT_TARGET_TAG:
    return sighting->tagged && memcmp (sighting->tag, conn->target.tag, TALLY_GATT_TAG_BYTES) == 0;
  }
  return FALSE;
}

/* Only what BlueZ reports during our discovery counts (the scanner's
 * rule): a device object can outlive the payee's advertising by a long
 * time. */
static void
on_seen (TallyGattScanner *scanner, const TallyGattSighting *sighting, gpointer user_data)
{
  ClientConn *conn = user_data;

  if (conn->state != CONNECT_DISCOVERING || !sighting_matches (conn, sighting))
    return;
  g_free (conn->device);
  conn->device = g_strdup (sighting->device);
  g_free (conn->peer);
  conn->peer =
    g_strdup_printf ("ble:%s", sighting->address ? sighting->address : sighting->device);
  conn->info.discovered = g_get_monotonic_time ();
  g_info ("gatt client %s: found %s", conn->address, conn->peer);
  gatt_client_stop_discovery (conn);
  gatt_client_connect (conn);
}

static void
on_scan_ended (TallyGattScanner *scanner,
               TallyGattScanEnd end,
               const GError *error,
               gpointer user_data)
{
  ClientConn *conn = user_data;

  if (conn->state != CONNECT_DISCOVERING)
    return;
  switch (end) {
  case TALLY_GATT_SCAN_FILTER_REFUSED:
    gatt_client_fail (conn, g_error_copy (error));
    return;
  case TALLY_GATT_SCAN_START_REFUSED:
  case TALLY_GATT_SCAN_ADAPTER_STOPPED:
    gatt_client_retry (conn, g_error_copy (error));
    return;
  }
}

static const TallyGattScannerHandlers scan_handlers = {
  .seen = on_seen,
  .lost = NULL,
  .ended = on_scan_ended,
};

static gboolean
is_adapter_device (ClientConn *conn, const char *path)
{
  return tally_bluez_is_adapter_device (conn->adapter_path, path);
}

static void
on_device_changed (ClientConn *conn, const char *path, GVariant *changed)
{
  gboolean flag;

  switch (conn->state) {
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_READY:
    break;
  case CONNECT_STARTING:
  case CONNECT_DISCOVERING: /* the scanner's business */
  case CONNECT_BACKING_OFF:
  case CONNECT_FAILED:
    return;
  }
  if (conn->device == NULL || strcmp (path, conn->device) != 0)
    return;

  if (g_variant_lookup (changed, "Connected", "b", &flag) && !flag) {
    switch (conn->state) {
    case CONNECT_READY:
      tally_gatt_link_lost (conn->link, "the payee disconnected");
      return;
    case CONNECT_CONNECTING:
      /* Connect's own reply says how it failed. */
      return;
    case CONNECT_RESOLVING:
    case CONNECT_SUBSCRIBING:
    case CONNECT_OPENING:
      /* A payee busy with another payer turns newcomers away like this. */
      gatt_client_retry (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                                            "%s disconnected while %s", conn->peer,
                                            gatt_client_state_to_string (conn->state)));
      return;
    case CONNECT_STARTING:
    case CONNECT_DISCOVERING:
    case CONNECT_BACKING_OFF:
    case CONNECT_FAILED:
      return;
    }
  }
  if (conn->state == CONNECT_RESOLVING && g_variant_lookup (changed, "ServicesResolved", "b", &flag) &&
      flag)
    gatt_client_find_service (conn);
}

static void
on_properties_changed (const char *path, const char *iface, GVariant *changed, gpointer user_data)
{
  ClientConn *conn = user_data;

  if (strcmp (iface, DEVICE_IFACE) == 0 && is_adapter_device (conn, path)) {
    on_device_changed (conn, path, changed);
    return;
  }
  /* Notifications without AcquireNotify: each Value change is one. */
  if (strcmp (iface, GATT_CHRC_IFACE) == 0 && conn->state == CONNECT_READY &&
      conn->notify_fallback && conn->tx_path != NULL && strcmp (path, conn->tx_path) == 0) {
    g_autoptr (GVariant) value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
    gsize len;
    const guint8 *data;

    if (value == NULL)
      return;
    data = g_variant_get_fixed_array (value, &len, 1);
    if (len > 0)
      tally_gatt_link_receive (conn->link, data, len);
  }
}

static void
on_interfaces_added (const char *object, GVariant *ifaces, gpointer user_data)
{
  ClientConn *conn = user_data;

  switch (conn->state) {
  case CONNECT_RESOLVING:
    /* Our service's objects appearing after ServicesResolved. */
    if (conn->device != NULL && g_str_has_prefix (object, conn->device))
      gatt_client_find_service (conn);
    break;
  case CONNECT_STARTING:
  case CONNECT_DISCOVERING: /* the scanner's business */
  case CONNECT_CONNECTING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_BACKING_OFF:
  case CONNECT_READY:
  case CONNECT_FAILED:
    break;
  }
}

void
gatt_client_watch_bluez (ClientConn *conn)
{
  conn->scanner = tally_gatt_scanner_new (conn->bus, conn->adapter);
  tally_gatt_scanner_set_handlers (conn->scanner, &scan_handlers, conn, NULL);
  tally_bluez_watch_properties (&conn->props_watch, conn->bus, NULL, on_properties_changed, conn,
                                NULL);
  tally_bluez_watch_added (&conn->added_watch, conn->bus, on_interfaces_added, conn, NULL);
}

void
gatt_client_start_discovery (ClientConn *conn)
{
  conn->attempt++;
  gatt_client_enter_state (conn, CONNECT_DISCOVERING);
  tally_gatt_scanner_start (conn->scanner);
}
