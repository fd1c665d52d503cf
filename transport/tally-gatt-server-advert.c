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
  GattAdvert *advert = user_data;
  TallyGattServer *server = advert->server;

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
    if (advert->tagged)
      g_variant_builder_add (
        &data, "{qv}", (guint16) TALLY_GATT_COMPANY_ID,
        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, advert->tag, TALLY_GATT_TAG_BYTES, 1));
    return g_variant_builder_end (&data);
  }
  /* Left out in per-device mode: the kernel's default slot. */
  if (strcmp (property_name, "Duration") == 0 && server->mode == TALLY_GATT_SERVER_EXCLUSIVE)
    return g_variant_new_uint16 (EXCLUSIVE_ADV_DURATION_S);
  g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS, "no property %s", property_name);
  return NULL;
}

static void
advert_enter_state (GattAdvert *advert, AdvState state)
{
  g_debug ("gatt server %s: advertisement %s %s -> %s", advert->server->adapter, advert->path,
           adv_state_to_string (advert->state), adv_state_to_string (state));
  advert->state = state;
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
  GattAdvert *advert = user_data;

  /* Release: BlueZ dropped the advertisement (adapter off, for one). */
  g_info ("gatt server %s: BlueZ released the advertisement %s", advert->server->adapter,
          advert->path);
  switch (advert->state) {
  case ADV_ACTIVE:
    advert_enter_state (advert, ADV_IDLE);
    advert->registered = FALSE;
    break;
  case ADV_IDLE:
  case ADV_REGISTERING:
  case ADV_UNREGISTERING: break;
  }
  g_dbus_method_invocation_return_value (invocation, NULL);
}

const GDBusInterfaceVTable gatt_server_adv_vtable = { adv_method_call,
                                                      adv_get_property,
                                                      NULL,
                                                      { 0 } };

GattAdvert *
gatt_server_advert_new (TallyGattServer *server, const char *path)
{
  GattAdvert *advert = g_new0 (GattAdvert, 1);

  advert->server = server;
  advert->path = g_strdup (path);
  advert->state = ADV_IDLE;
  return advert;
}

void
gatt_server_advert_free (GattAdvert *advert)
{
  if (advert->object_id != 0)
    g_dbus_connection_unregister_object (advert->server->bus, advert->object_id);
  g_free (advert->path);
  g_free (advert);
}

GattAdvert *
gatt_server_advert0 (TallyGattServer *server)
{
  return server->adverts->pdata[0];
}

gboolean
gatt_server_adv_wanted (TallyGattServer *server)
{
  for (guint i = 0; i < server->adverts->len; i++)
    if (((GattAdvert *) server->adverts->pdata[i])->wanted)
      return TRUE;
  return FALSE;
}

void
gatt_server_adv_forget_all (TallyGattServer *server)
{
  for (guint i = 0; i < server->adverts->len; i++) {
    GattAdvert *advert = server->adverts->pdata[i];
    advert_enter_state (advert, ADV_IDLE);
    advert->registered = FALSE;
  }
}

void
gatt_server_adv_unregister_all (TallyGattServer *server)
{
  for (guint i = 0; i < server->adverts->len; i++) {
    GattAdvert *advert = server->adverts->pdata[i];
    if (advert->registered)
      g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE,
                              "UnregisterAdvertisement", g_variant_new ("(o)", advert->path), NULL,
                              G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
  }
}

/* Our instances BlueZ holds now. */
static guint
adverts_registered (TallyGattServer *server)
{
  guint n = 0;
  for (guint i = 0; i < server->adverts->len; i++)
    n += ((GattAdvert *) server->adverts->pdata[i])->registered;
  return n;
}

void
gatt_server_adv_note_manager (TallyGattServer *server, GVariant *props)
{
  guint8 free_instances, active;

  if (g_variant_lookup (props, "SupportedInstances", "y", &free_instances)) {
    g_debug ("gatt server %s: %u advertising instance(s) free", server->adapter, free_instances);
    server->adv_free_instances = free_instances;
    server->adv_ours_when_noted = adverts_registered (server);
  }
  if (g_variant_lookup (props, "ActiveInstances", "y", &active)) {
    server->adv_active_instances = active;
    server->adv_ours_when_noted = adverts_registered (server);
  }
}

static void advert_reconcile (GattAdvert *advert);
static gboolean adv_matches_wanted (GattAdvert *advert);

/* An instance given up and let go by BlueZ goes; adv0 stays. */
static void
advert_drop_if_removed (GattAdvert *advert)
{
  if (advert->removed && advert->state == ADV_IDLE)
    g_ptr_array_remove (advert->server->adverts, advert);
}

/* @advert (idle) cannot go on the air: not again until asked for anew.
 * A further instance goes, and its owner hears of a tag off the air. */
static void
advert_give_up (GattAdvert *advert, const GError *error)
{
  TallyGattServer *server = advert->server;
  gboolean tagged = advert->tagged_wanted;
  guint8 tag[TALLY_GATT_TAG_BYTES];

  memcpy (tag, advert->tag_wanted, sizeof tag);
  advert->wanted = FALSE;
  if (advert != gatt_server_advert0 (server))
    advert->removed = TRUE;
  advert_drop_if_removed (advert); /* may free it */
  if (tagged && server->on_advert_failed != NULL)
    server->on_advert_failed (server, tag, error, server->user_data);
}

static void
adv_register_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  GattAdvert *advert = user_data;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (reply == NULL) {
    /* A warning unless the owner hears of it (and tells why it matters). */
    if (advert->server->on_advert_failed != NULL)
      g_message ("gatt server %s: cannot advertise %s: %s", advert->server->adapter, advert->path,
                 error->message);
    else
      g_warning ("gatt server %s: cannot advertise %s: %s", advert->server->adapter, advert->path,
                 error->message);
    advert_enter_state (advert, ADV_IDLE);
    /* Given up meanwhile: nobody waits for it. */
    if (!advert->wanted || advert->removed) {
      advert_drop_if_removed (advert);
      return;
    }
    /* Asked for another tag meanwhile: that one is tried afresh. */
    if (!adv_matches_wanted (advert)) {
      advert_reconcile (advert);
      return;
    }
    advert_give_up (advert, error);
    return;
  }
  g_info ("gatt server %s: advertising %s%s", advert->server->adapter, TALLY_GATT_SERVICE_UUID,
          advert->tagged ? " with a request tag" : "");
  advert->registered = TRUE;
  advert_enter_state (advert, ADV_ACTIVE);
  advert_reconcile (advert);
}

static void
adv_unregister_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  GattAdvert *advert = user_data;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (reply == NULL)
    g_debug ("gatt server %s: unregistering the advertisement: %s", advert->server->adapter,
             error->message);
  else
    g_info ("gatt server %s: advertising stopped", advert->server->adapter);
  advert->registered = FALSE;
  advert_enter_state (advert, ADV_IDLE);
  if (advert->removed) {
    advert_drop_if_removed (advert);
    return;
  }
  advert_reconcile (advert);
}

/* Advertising while every slot is taken only draws payers that must be
 * turned away (and a controller may take a second connection while one is
 * served). */
static gboolean
adv_effectively_wanted (GattAdvert *advert)
{
  TallyGattServer *server = advert->server;
  guint max = server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1;

  return advert->wanted && !advert->removed &&
         (server->devices == NULL || tally_gatt_devices_get_served_count (server->devices) < max);
}

static gboolean
adv_matches_wanted (GattAdvert *advert)
{
  return advert->tagged == advert->tagged_wanted &&
         (!advert->tagged || memcmp (advert->tag, advert->tag_wanted, TALLY_GATT_TAG_BYTES) == 0);
}

/* Brings BlueZ's view of @advert to what was asked for last, one call at
 * a time; every completion comes back here. */
static void
advert_reconcile (GattAdvert *advert)
{
  TallyGattServer *server = advert->server;

  switch (advert->state) {
  case ADV_REGISTERING:
  case ADV_UNREGISTERING: return;
  case ADV_ACTIVE:
    if (adv_effectively_wanted (advert) && adv_matches_wanted (advert))
      return;
    advert_enter_state (advert, ADV_UNREGISTERING);
    g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE,
                            "UnregisterAdvertisement", g_variant_new ("(o)", advert->path), NULL,
                            G_DBUS_CALL_FLAGS_NONE, -1, server->adv_cancel, adv_unregister_done,
                            advert);
    return;
  case ADV_IDLE: break;
  }

  if (!adv_effectively_wanted (advert) || server->state != SERVER_REGISTERED) {
    advert_drop_if_removed (advert);
    return;
  }

  TallyGattAdvertising layout;
  g_autoptr (GError) error = NULL;

  tally_gatt_advertising_init (&layout, advert->tagged_wanted);
  if (!tally_gatt_advertising_check (&layout, &error)) {
    g_warning ("gatt server %s: %s", server->adapter, error->message);
    advert_give_up (advert, error);
    return;
  }
  advert->tagged = advert->tagged_wanted;
  memcpy (advert->tag, advert->tag_wanted, TALLY_GATT_TAG_BYTES);
  advert_enter_state (advert, ADV_REGISTERING);
  g_dbus_connection_call (
    server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE, "RegisterAdvertisement",
    g_variant_new ("(o@a{sv})", advert->path,
                   g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
    NULL, G_DBUS_CALL_FLAGS_NONE, -1, server->adv_cancel, adv_register_done, advert);
}

void
gatt_server_adv_reconcile (TallyGattServer *server)
{
  /* A copy: reconciling may drop instances. */
  g_autoptr (GPtrArray) adverts = g_ptr_array_new ();
  for (guint i = 0; i < server->adverts->len; i++)
    g_ptr_array_add (adverts, server->adverts->pdata[i]);
  for (guint i = 0; i < adverts->len; i++)
    advert_reconcile (adverts->pdata[i]);
}

static void
advert_want (GattAdvert *advert, const guint8 *tag)
{
  advert->wanted = TRUE;
  advert->tagged_wanted = tag != NULL;
  if (tag != NULL)
    memcpy (advert->tag_wanted, tag, TALLY_GATT_TAG_BYTES);
  else
    memset (advert->tag_wanted, 0, TALLY_GATT_TAG_BYTES);
}

void
tally_gatt_server_advertise (TallyGattServer *server, const guint8 *tag)
{
  g_return_if_fail (server != NULL);

  /* Replaces every advertisement: the further instances go. */
  for (guint i = 1; i < server->adverts->len; i++)
    ((GattAdvert *) server->adverts->pdata[i])->removed = TRUE;
  advert_want (gatt_server_advert0 (server), tag);
  gatt_server_adv_reconcile (server);
}

/* The wanted instance advertising @tag, or NULL. */
static GattAdvert *
advert_with_tag (TallyGattServer *server, const guint8 *tag)
{
  for (guint i = 0; i < server->adverts->len; i++) {
    GattAdvert *advert = server->adverts->pdata[i];
    if (advert->wanted && !advert->removed && advert->tagged_wanted &&
        memcmp (advert->tag_wanted, tag, TALLY_GATT_TAG_BYTES) == 0)
      return advert;
  }
  return NULL;
}

/* Instances of ours that take one of the controller's: wanted, or held,
 * being registered or still being unregistered. */
static guint
adverts_in_use (TallyGattServer *server)
{
  guint n = 0;
  for (guint i = 0; i < server->adverts->len; i++) {
    GattAdvert *advert = server->adverts->pdata[i];
    n += (advert->wanted && !advert->removed) || advert->state != ADV_IDLE;
  }
  return n;
}

/* The instances the controller has for us: every one BlueZ reported
 * (active and free) but other advertisers' (the active ones that were not
 * ours then).  A count that changed since BlueZ said so changes nothing:
 * the total does not. */
static guint
adverts_capacity (TallyGattServer *server)
{
  /* Ours were active then, whether BlueZ said ActiveInstances or not. */
  guint total = MAX (server->adv_active_instances, server->adv_ours_when_noted) +
                (guint) server->adv_free_instances;
  guint foreign = server->adv_active_instances > server->adv_ours_when_noted
                    ? server->adv_active_instances - server->adv_ours_when_noted
                    : 0;
  return total > foreign ? total - foreign : 0;
}

gboolean
tally_gatt_server_add_advertisement (TallyGattServer *server, const guint8 *tag, GError **error)
{
  g_return_val_if_fail (server != NULL && tag != NULL, FALSE);

  if (advert_with_tag (server, tag) != NULL)
    return TRUE;
  if (server->adv_free_instances >= 0 && adverts_in_use (server) >= adverts_capacity (server)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "the Bluetooth controller of %s has no free advertising instance "
                 "(%u of %u in use by this register; LEAdvertisingManager1 said %u active, "
                 "%d free)",
                 server->adapter, adverts_in_use (server), adverts_capacity (server),
                 server->adv_active_instances, server->adv_free_instances);
    return FALSE;
  }
  GattAdvert *advert = gatt_server_advert0 (server);
  if (advert->wanted) {
    g_autofree char *path = g_strdup_printf ("%s/adv%u", server->app_path, ++server->last_advert);
    g_autoptr (GError) local = NULL;
    advert = gatt_server_advert_new (server, path);
    advert->object_id =
      g_dbus_connection_register_object (server->bus, path, gatt_server_adv_interface_info (),
                                         &gatt_server_adv_vtable, advert, NULL, &local);
    if (advert->object_id == 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "cannot export %s: %s", path,
                   local->message);
      gatt_server_advert_free (advert);
      return FALSE;
    }
    g_ptr_array_add (server->adverts, advert);
  }
  advert_want (advert, tag);
  gatt_server_adv_reconcile (server);
  return TRUE;
}

void
tally_gatt_server_set_advert_failed_func (TallyGattServer *server,
                                          TallyGattServerAdvertFailedFunc func)
{
  g_return_if_fail (server != NULL);

  server->on_advert_failed = func;
}

void
tally_gatt_server_remove_advertisement (TallyGattServer *server, const guint8 *tag)
{
  g_return_if_fail (server != NULL && tag != NULL);

  GattAdvert *advert = advert_with_tag (server, tag);
  if (advert == NULL)
    return;
  if (advert == gatt_server_advert0 (server))
    advert->wanted = FALSE;
  else
    advert->removed = TRUE;
  gatt_server_adv_reconcile (server);
}

void
tally_gatt_server_stop_advertising (TallyGattServer *server)
{
  g_return_if_fail (server != NULL);

  for (guint i = 0; i < server->adverts->len; i++) {
    GattAdvert *advert = server->adverts->pdata[i];
    advert->wanted = FALSE;
    if (i > 0)
      advert->removed = TRUE;
  }
  gatt_server_adv_reconcile (server);
}

gboolean
tally_gatt_server_is_advertising (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, FALSE);

  for (guint i = 0; i < server->adverts->len; i++)
    if (((GattAdvert *) server->adverts->pdata[i])->state == ADV_ACTIVE)
      return TRUE;
  return FALSE;
}
