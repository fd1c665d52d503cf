/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-client-private.h"

#include <string.h>

#include "tally-bluez-private.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-link.h"

/* Finding the payee: a discovery filtered on our service, the devices
 * BlueZ reports during it, and what BlueZ's signals say on the way. */

/* --- discovery ------------------------------------------------------------------- */

static gboolean
device_matches (ClientConn *conn, GVariant *props)
{
  g_autofree const char **uuids = NULL;
  const char *address = NULL;
  g_autoptr (GVariant) mfr = NULL;
  gboolean has_service = FALSE;
  const guint8 *bytes;
  gsize len;

  if (g_variant_lookup (props, "UUIDs", "^a&s", &uuids))
    for (guint i = 0; uuids[i] != NULL; i++)
      if (g_ascii_strcasecmp (uuids[i], TALLY_GATT_SERVICE_UUID) == 0)
        has_service = TRUE;
  if (!has_service)
    return FALSE;

  switch (conn->target.kind) {
  case TALLY_GATT_TARGET_ANY:
    return TRUE;
  case TALLY_GATT_TARGET_ADDRESS:
    return g_variant_lookup (props, "Address", "&s", &address) &&
           g_ascii_strcasecmp (address, conn->target.address) == 0;
  case TALLY_GATT_TARGET_TAG:
    mfr = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
    if (mfr == NULL)
      return FALSE;
    {
      GVariantIter iter;
      guint16 company;
      GVariant *value;

      g_variant_iter_init (&iter, mfr);
      while (g_variant_iter_next (&iter, "{qv}", &company, &value)) {
        g_autoptr (GVariant) owned = value;

        if (company != TALLY_GATT_COMPANY_ID || !g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
          continue;
        bytes = g_variant_get_fixed_array (value, &len, 1);
        if (len == TALLY_GATT_TAG_BYTES && memcmp (bytes, conn->target.tag, len) == 0)
          return TRUE;
      }
    }
    return FALSE;
  }
  return FALSE;
}

static void
choose_device (ClientConn *conn, const char *device, GVariant *props)
{
  const char *address = NULL;

  g_free (conn->device);
  conn->device = g_strdup (device);
  g_variant_lookup (props, "Address", "&s", &address);
  g_free (conn->peer);
  conn->peer = g_strdup_printf ("ble:%s", address ? address : device);
  conn->info.discovered = g_get_monotonic_time ();
  g_info ("gatt client %s: found %s", conn->address, conn->peer);
  gatt_client_stop_discovery (conn);
  gatt_client_connect (conn);
}

typedef struct
{
  ClientConn *conn;
  char *device;
} Candidate;

static void
device_props_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Candidate *candidate = user_data;
  ClientConn *conn = candidate->conn;
  g_autofree char *device = candidate->device;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) props = NULL;

  g_free (candidate);
  /* Cancelled: @conn may be gone. */
  if (reply == NULL || conn->state != CONNECT_DISCOVERING)
    return;
  g_variant_get (reply, "(@a{sv})", &props);
  if (device_matches (conn, props))
    choose_device (conn, device, props);
}

/* Only what BlueZ reports during our discovery counts: a device object
 * can outlive the payee's advertising by a long time. */
static void
consider_device (ClientConn *conn, const char *device, GVariant *props)
{
  Candidate *candidate;

  if (props != NULL) {
    if (device_matches (conn, props))
      choose_device (conn, device, props);
    return;
  }
  candidate = g_new0 (Candidate, 1);
  candidate->conn = conn;
  candidate->device = g_strdup (device);
  g_dbus_connection_call (conn->bus, BLUEZ, device, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", DEVICE_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, device_props_done, candidate);
}

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
  case CONNECT_DISCOVERING:
    /* A report seen now: RSSI, advertising data or UUIDs updated. */
    {
      g_autoptr (GVariant) rssi = g_variant_lookup_value (changed, "RSSI", NULL);
      g_autoptr (GVariant) mfr = g_variant_lookup_value (changed, "ManufacturerData", NULL);
      g_autoptr (GVariant) uuids = g_variant_lookup_value (changed, "UUIDs", NULL);

      if (rssi != NULL || mfr != NULL || uuids != NULL)
        consider_device (conn, path, NULL);
    }
    return;
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_READY:
    break;
  case CONNECT_STARTING:
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

/* bluetoothd drops every discovery session when the adapter goes off, and
 * says nothing more to the session's owner: the Discovering property
 * going false is all there is. */
static void
on_adapter_changed (ClientConn *conn, GVariant *changed)
{
  gboolean discovering = TRUE, powered = TRUE;

  switch (conn->state) {
  case CONNECT_DISCOVERING:
    break;
  case CONNECT_STARTING:
  case CONNECT_CONNECTING:
  case CONNECT_RESOLVING:
  case CONNECT_SUBSCRIBING:
  case CONNECT_OPENING:
  case CONNECT_BACKING_OFF:
  case CONNECT_READY:
  case CONNECT_FAILED:
    return;
  }
  g_variant_lookup (changed, "Discovering", "b", &discovering);
  g_variant_lookup (changed, "Powered", "b", &powered);
  if (!conn->discovering || (discovering && powered))
    return;
  conn->discovering = FALSE;
  gatt_client_retry (conn,
                     g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "discovery on %s stopped%s",
                                  conn->adapter, powered ? "" : ": the adapter was switched off"));
}

static void
on_properties_changed (const char *path, const char *iface, GVariant *changed, gpointer user_data)
{
  ClientConn *conn = user_data;

  if (strcmp (iface, DEVICE_IFACE) == 0 && is_adapter_device (conn, path)) {
    on_device_changed (conn, path, changed);
    return;
  }
  if (strcmp (iface, ADAPTER_IFACE) == 0 && strcmp (path, conn->adapter_path) == 0) {
    on_adapter_changed (conn, changed);
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
  case CONNECT_DISCOVERING:
    if (is_adapter_device (conn, object)) {
      g_autoptr (GVariant) props = g_variant_lookup_value (ifaces, DEVICE_IFACE, NULL);

      if (props != NULL)
        consider_device (conn, object, props);
    }
    break;
  case CONNECT_RESOLVING:
    /* Our service's objects appearing after ServicesResolved. */
    if (conn->device != NULL && g_str_has_prefix (object, conn->device))
      gatt_client_find_service (conn);
    break;
  case CONNECT_STARTING:
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
  tally_bluez_watch_properties (&conn->props_watch, conn->bus, NULL, on_properties_changed, conn,
                                NULL);
  tally_bluez_watch_added (&conn->added_watch, conn->bus, on_interfaces_added, conn, NULL);
}

static void
start_discovery_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *remote = NULL;
  g_autoptr (GVariant) reply = tally_bluez_call_finish (source, result, &remote, &error);

  if (reply == NULL) {
    if (gatt_client_is_cancelled (error))
      return;
    /* InProgress: this client already discovers; it goes on. */
    if (g_strcmp0 (remote, BLUEZ_ERROR_IN_PROGRESS) != 0) {
      g_dbus_error_strip_remote_error (error);
      gatt_client_retry (conn,
                         g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                      "cannot discover on %s: %s", conn->adapter, error->message));
      return;
    }
  }
  conn->discovering = TRUE;
  g_info ("gatt client %s: scanning on %s", conn->address, conn->adapter);
}

static void
set_filter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ClientConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL) {
    if (gatt_client_is_cancelled (error))
      return;
    g_dbus_error_strip_remote_error (error);
    gatt_client_fail (conn, g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                                         "Bluetooth adapter %s: SetDiscoveryFilter: %s",
                                         conn->adapter, error->message));
    return;
  }
  g_dbus_connection_call (conn->bus, BLUEZ, conn->adapter_path, ADAPTER_IFACE, "StartDiscovery",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, conn->calls,
                          start_discovery_done, conn);
}

void
gatt_client_start_discovery (ClientConn *conn)
{
  GVariantBuilder filter;
  const char *uuids[] = { TALLY_GATT_SERVICE_UUID, NULL };

  conn->attempt++;
  gatt_client_enter_state (conn, CONNECT_DISCOVERING);
  g_variant_builder_init (&filter, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&filter, "{sv}", "UUIDs", g_variant_new_strv (uuids, -1));
  g_variant_builder_add (&filter, "{sv}", "Transport", g_variant_new_string ("le"));
  /* Every report, so a new request tag shows at once. */
  g_variant_builder_add (&filter, "{sv}", "DuplicateData", g_variant_new_boolean (TRUE));
  g_dbus_connection_call (conn->bus, BLUEZ, conn->adapter_path, ADAPTER_IFACE,
                          "SetDiscoveryFilter", g_variant_new ("(a{sv})", &filter), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, conn->calls, set_filter_done, conn);
}
