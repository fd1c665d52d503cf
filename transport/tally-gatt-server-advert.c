/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-server-private.h"

#include <string.h>

#include "tally-bluez-private.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-link.h"

/* The payee's LE advertisement (doc/org.bluez.LEAdvertisingManager.rst),
 * brought to what was asked for last one BlueZ call at a time. */

/* Rotation slot of our advertisement in exclusive mode (LEAdvertisement1
 * Duration).  A connection stops the controller's advertising, but Linux
 * schedules the instance again when its slot ends (2 s unless asked
 * otherwise), and until our UnregisterAdvertisement lands a second payer
 * may connect to a stall that serves one: seen in the VM, where D-Bus
 * takes seconds.  Other advertisers on the adapter get the air less often
 * while a request waits. */
#define EXCLUSIVE_ADV_DURATION_S 600

static const char *
adv_state_to_string (AdvState state)
{
  switch (state) {
  case ADV_IDLE: return "idle";
  case ADV_REGISTERING: return "registering";
  case ADV_ACTIVE: return "active";
  case ADV_UNREGISTERING: return "unregistering";
  }
  return "unknown";
}

static GVariant *
adv_get_property (GDBusConnection *connection,
                  const char *sender,
                  const char *object_path,
                  const char *interface_name,
                  const char *property_name,
                  GError **error,
                  gpointer user_data)
{
  TallyGattServer *server = user_data;

  if (strcmp (property_name, "Type") == 0)
    return g_variant_new_string ("peripheral");
  if (strcmp (property_name, "ServiceUUIDs") == 0) {
    const char *uuids[] = { TALLY_GATT_SERVICE_UUID, NULL };

    return g_variant_new_strv (uuids, -1);
  }
  if (strcmp (property_name, "Includes") == 0)
    return g_variant_new_strv (NULL, 0);
  if (strcmp (property_name, "ManufacturerData") == 0) {
    GVariantBuilder data;

    g_variant_builder_init (&data, G_VARIANT_TYPE ("a{qv}"));
    if (server->adv_tagged)
      g_variant_builder_add (&data, "{qv}", (guint16) TALLY_GATT_COMPANY_ID,
                             g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, server->adv_tag,
                                                        TALLY_GATT_TAG_BYTES, 1));
    return g_variant_builder_end (&data);
  }
  /* Left out in per-device mode: the kernel's default slot. */
  if (strcmp (property_name, "Duration") == 0 && server->mode == TALLY_GATT_SERVER_EXCLUSIVE)
    return g_variant_new_uint16 (EXCLUSIVE_ADV_DURATION_S);
  g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS, "no property %s", property_name);
  return NULL;
}

void
gatt_server_adv_enter_state (TallyGattServer *server, AdvState state)
{
  g_debug ("gatt server %s: advertisement %s -> %s", server->adapter,
           adv_state_to_string (server->adv_state), adv_state_to_string (state));
  server->adv_state = state;
}

static void
adv_method_call (GDBusConnection *connection,
                 const char *sender,
                 const char *object_path,
                 const char *interface_name,
                 const char *method_name,
                 GVariant *parameters,
                 GDBusMethodInvocation *invocation,
                 gpointer user_data)
{
  TallyGattServer *server = user_data;

  /* Release: BlueZ dropped the advertisement (adapter off, for one). */
  g_info ("gatt server %s: BlueZ released the advertisement", server->adapter);
  switch (server->adv_state) {
  case ADV_ACTIVE:
    gatt_server_adv_enter_state (server, ADV_IDLE);
    server->adv_registered = FALSE;
    break;
  case ADV_IDLE:
  case ADV_REGISTERING:
  case ADV_UNREGISTERING:
    break;
  }
  g_dbus_method_invocation_return_value (invocation, NULL);
}

const GDBusInterfaceVTable gatt_server_adv_vtable = { adv_method_call, adv_get_property, NULL,
                                                     { 0 } };

static void
adv_register_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  TallyGattServer *server = user_data;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (reply == NULL) {
    g_warning ("gatt server %s: cannot advertise: %s", server->adapter, error->message);
    gatt_server_adv_enter_state (server, ADV_IDLE);
    /* Not again until the next request asks for it. */
    server->adv_wanted = FALSE;
    return;
  }
  g_info ("gatt server %s: advertising %s%s", server->adapter, TALLY_GATT_SERVICE_UUID,
          server->adv_tagged ? " with a request tag" : "");
  server->adv_registered = TRUE;
  gatt_server_adv_enter_state (server, ADV_ACTIVE);
  gatt_server_adv_reconcile (server);
}

static void
adv_unregister_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  TallyGattServer *server = user_data;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (reply == NULL)
    g_debug ("gatt server %s: unregistering the advertisement: %s", server->adapter,
             error->message);
  else
    g_info ("gatt server %s: advertising stopped", server->adapter);
  server->adv_registered = FALSE;
  gatt_server_adv_enter_state (server, ADV_IDLE);
  gatt_server_adv_reconcile (server);
}

/* Advertising while every slot is taken only draws payers that must be
 * turned away (and a controller may take a second connection while one is
 * served). */
static gboolean
adv_effectively_wanted (TallyGattServer *server)
{
  guint max = server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1;

  return server->adv_wanted &&
         (server->devices == NULL || tally_gatt_devices_get_served_count (server->devices) < max);
}

static gboolean
adv_matches_wanted (TallyGattServer *server)
{
  return server->adv_tagged == server->adv_tagged_wanted &&
         (!server->adv_tagged ||
          memcmp (server->adv_tag, server->adv_tag_wanted, TALLY_GATT_TAG_BYTES) == 0);
}

/* Brings BlueZ's advertisement to what was asked for last, one call at a
 * time; every completion comes back here. */
void
gatt_server_adv_reconcile (TallyGattServer *server)
{
  switch (server->adv_state) {
  case ADV_REGISTERING:
  case ADV_UNREGISTERING:
    return;
  case ADV_ACTIVE:
    if (adv_effectively_wanted (server) && adv_matches_wanted (server))
      return;
    gatt_server_adv_enter_state (server, ADV_UNREGISTERING);
    g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE,
                            "UnregisterAdvertisement", g_variant_new ("(o)", server->adv_path),
                            NULL, G_DBUS_CALL_FLAGS_NONE, -1, server->adv_cancel,
                            adv_unregister_done, server);
    return;
  case ADV_IDLE:
    break;
  }

  if (!adv_effectively_wanted (server) || server->state != SERVER_REGISTERED)
    return;

  TallyGattAdvertising layout;
  g_autoptr (GError) error = NULL;

  tally_gatt_advertising_init (&layout, server->adv_tagged_wanted);
  if (!tally_gatt_advertising_check (&layout, &error)) {
    g_warning ("gatt server %s: %s", server->adapter, error->message);
    server->adv_wanted = FALSE;
    return;
  }
  server->adv_tagged = server->adv_tagged_wanted;
  memcpy (server->adv_tag, server->adv_tag_wanted, TALLY_GATT_TAG_BYTES);
  gatt_server_adv_enter_state (server, ADV_REGISTERING);
  g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE,
                          "RegisterAdvertisement",
                          g_variant_new ("(o@a{sv})", server->adv_path,
                                         g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, server->adv_cancel, adv_register_done,
                          server);
}

void
tally_gatt_server_advertise (TallyGattServer *server, const guint8 *tag)
{
  g_return_if_fail (server != NULL);

  server->adv_wanted = TRUE;
  server->adv_tagged_wanted = tag != NULL;
  if (tag != NULL)
    memcpy (server->adv_tag_wanted, tag, TALLY_GATT_TAG_BYTES);
  else
    memset (server->adv_tag_wanted, 0, TALLY_GATT_TAG_BYTES);
  gatt_server_adv_reconcile (server);
}

void
tally_gatt_server_stop_advertising (TallyGattServer *server)
{
  g_return_if_fail (server != NULL);

  server->adv_wanted = FALSE;
  gatt_server_adv_reconcile (server);
}

gboolean
tally_gatt_server_is_advertising (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, FALSE);

  return server->adv_state == ADV_ACTIVE;
}
