/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-server-private.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <gio/gunixfdlist.h>

#include "tally-bluez-private.h"
#include "tally-gatt-link.h"

/* The GATT application's objects, their properties and the methods BlueZ
 * calls on them (layout in tally-gatt-server.c); the advertisement's are in
 * tally-gatt-server-advert.c. */

static const char introspection_xml[] =
  "<node>"
  "  <interface name='" OBJECT_MANAGER_IFACE "'>"
  "    <method name='GetManagedObjects'>"
  "      <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
  "    </method>"
  "  </interface>"
  "  <interface name='" GATT_SERVICE_IFACE "'>"
  "    <property name='UUID' type='s' access='read'/>"
  "    <property name='Primary' type='b' access='read'/>"
  "  </interface>"
  "  <interface name='" GATT_CHRC_IFACE "'>"
  "    <method name='ReadValue'>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "      <arg name='value' type='ay' direction='out'/>"
  "    </method>"
  "    <method name='WriteValue'>"
  "      <arg name='value' type='ay' direction='in'/>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "    </method>"
  "    <method name='AcquireWrite'>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "      <arg name='fd' type='h' direction='out'/>"
  "      <arg name='mtu' type='q' direction='out'/>"
  "    </method>"
  "    <method name='AcquireNotify'>"
  "      <arg name='options' type='a{sv}' direction='in'/>"
  "      <arg name='fd' type='h' direction='out'/>"
  "      <arg name='mtu' type='q' direction='out'/>"
  "    </method>"
  "    <method name='StartNotify'/>"
  "    <method name='StopNotify'/>"
  "    <property name='UUID' type='s' access='read'/>"
  "    <property name='Service' type='o' access='read'/>"
  "    <property name='Flags' type='as' access='read'/>"
  "    <property name='WriteAcquired' type='b' access='read'/>"
  "    <property name='NotifyAcquired' type='b' access='read'/>"
  "    <property name='Notifying' type='b' access='read'/>"
  "  </interface>"
  "  <interface name='" ADV_IFACE "'>"
  "    <method name='Release'/>"
  "    <property name='Type' type='s' access='read'/>"
  "    <property name='ServiceUUIDs' type='as' access='read'/>"
  "    <property name='ManufacturerData' type='a{qv}' access='read'/>"
  "    <property name='Includes' type='as' access='read'/>"
  "    <property name='Duration' type='q' access='read'/>"
  "  </interface>"
  "</node>";

static GDBusNodeInfo *
server_introspection (void)
{
  static GDBusNodeInfo *info;

  if (g_once_init_enter (&info)) {
    GDBusNodeInfo *parsed = g_dbus_node_info_new_for_xml (introspection_xml, NULL);

    g_assert (parsed != NULL);
    g_once_init_leave (&info, parsed);
  }
  return info;
}

static GDBusInterfaceInfo *
interface_info (const char *name)
{
  return g_dbus_node_info_lookup_interface (server_introspection (), name);
}

typedef enum
{
  CHRC_RX,
  CHRC_TX,
} ChrcKind;

static void
return_error (GDBusMethodInvocation *invocation, const char *name, const GError *error)
{
  g_dbus_method_invocation_return_dbus_error (invocation, name, error->message);
}

/* AcquireWrite / AcquireNotify: one end for BlueZ, one for the link. */
static void
handle_acquire (TallyGattServer *server,
                ChrcKind kind,
                GVariant *parameters,
                GDBusMethodInvocation *invocation)
{
  g_autoptr (GVariant) options = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GUnixFDList) fds = NULL;
  gboolean created;
  guint16 att_mtu = TALLY_GATT_ATT_MIN_MTU;
  int pair[2];
  TallyLink *link;
  g_autoptr (TallyLink) ref = NULL;

  g_variant_get (parameters, "(@a{sv})", &options);
  link = gatt_server_link_for_options (server, options, &created, &error);
  if (link == NULL) {
    return_error (invocation, BLUEZ_ERROR_FAILED, error);
    return;
  }
  /* Taking a socket may close the link, and the table drops it then. */
  ref = tally_link_ref (link);
  g_variant_lookup (options, "mtu", "q", &att_mtu);

  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    g_autofree char *why = g_strdup_printf ("socketpair: %s", g_strerror (errno));

    g_dbus_method_invocation_return_dbus_error (invocation, BLUEZ_ERROR_FAILED, why);
    if (created)
      tally_gatt_link_lost (link, why);
    return;
  }
  fds = g_unix_fd_list_new_from_array (&pair[1], 1);
  switch (kind) {
  case CHRC_RX:
    tally_gatt_link_take_rx_fd (link, pair[0]);
    break;
  case CHRC_TX:
    tally_gatt_link_take_tx_fd (link, pair[0]);
    break;
  }
  g_dbus_method_invocation_return_value_with_unix_fd_list (
    invocation, g_variant_new ("(hq)", 0, att_mtu), fds);
  g_debug ("gatt server %s: %s acquired by %s, ATT MTU %u", server->adapter,
           kind == CHRC_RX ? "rx (write)" : "tx (notify)", tally_link_get_peer (link), att_mtu);
  if (created)
    gatt_server_announce_link (server, link);
  else
    gatt_server_update_pause (server);
}

static void
handle_write_value (TallyGattServer *server,
                    GVariant *parameters,
                    GDBusMethodInvocation *invocation)
{
  g_autoptr (GVariant) value = NULL;
  g_autoptr (GVariant) options = NULL;
  g_autoptr (GError) error = NULL;
  gboolean created;
  gsize len;
  const guint8 *data;
  TallyLink *link;

  g_variant_get (parameters, "(@ay@a{sv})", &value, &options);
  link = gatt_server_link_for_options (server, options, &created, &error);
  if (link == NULL) {
    return_error (invocation, BLUEZ_ERROR_NOT_PERMITTED, error);
    return;
  }
  g_autoptr (TallyLink) ref = tally_link_ref (link);
  g_dbus_method_invocation_return_value (invocation, NULL);
  if (created)
    gatt_server_announce_link (server, link);
  data = g_variant_get_fixed_array (value, &len, 1);
  if (len > 0)
    tally_gatt_link_receive (link, data, len);
}

static void
chrc_method_call (GDBusConnection *connection,
                  const char *sender,
                  const char *object_path,
                  const char *interface_name,
                  const char *method_name,
                  GVariant *parameters,
                  GDBusMethodInvocation *invocation,
                  gpointer user_data)
{
  TallyGattServer *server = user_data;
  ChrcKind kind = strcmp (object_path, server->rx_path) == 0 ? CHRC_RX : CHRC_TX;
  /* Held across on_link and the link's reports, whose users may drop the
   * server. */
  g_autoptr (TallyGattServer) ref = tally_gatt_server_ref (server);

  /* Only bluetoothd drives a GATT application: anyone else could pose as
   * any device. */
  if (server->bluez_owner == NULL || g_strcmp0 (sender, server->bluez_owner) != 0) {
    g_dbus_method_invocation_return_dbus_error (invocation, BLUEZ_ERROR_NOT_PERMITTED,
                                                "only bluetoothd may call this");
    return;
  }

  if (strcmp (method_name, "WriteValue") == 0 && kind == CHRC_RX) {
    handle_write_value (server, parameters, invocation);
  } else if (strcmp (method_name, "AcquireWrite") == 0 && kind == CHRC_RX &&
             server->mode == TALLY_GATT_SERVER_PER_DEVICE) {
    handle_acquire (server, CHRC_RX, parameters, invocation);
  } else if (strcmp (method_name, "AcquireNotify") == 0 && kind == CHRC_TX) {
    handle_acquire (server, CHRC_TX, parameters, invocation);
  } else if (strcmp (method_name, "StartNotify") == 0 && kind == CHRC_TX) {
    server->notify_sessions++;
    g_debug ("gatt server %s: StartNotify, %u subscriber(s)", server->adapter,
             server->notify_sessions);
    g_dbus_method_invocation_return_value (invocation, NULL);
  } else if (strcmp (method_name, "StopNotify") == 0 && kind == CHRC_TX) {
    if (server->notify_sessions > 0)
      server->notify_sessions--;
    g_dbus_method_invocation_return_value (invocation, NULL);
  } else {
    g_dbus_method_invocation_return_dbus_error (invocation, BLUEZ_ERROR_NOT_PERMITTED,
                                                "not supported by this characteristic");
  }
}

static GVariant *
chrc_property (TallyGattServer *server, ChrcKind kind, const char *name)
{
  if (strcmp (name, "UUID") == 0)
    return g_variant_new_string (kind == CHRC_RX ? TALLY_GATT_RX_UUID : TALLY_GATT_TX_UUID);
  if (strcmp (name, "Service") == 0)
    return g_variant_new_object_path (server->service_path);
  if (strcmp (name, "Flags") == 0) {
    /* No encrypt-, secure- or authorize flags: the handshake is the
     * security, and a phone must never be asked to pair.  "write" lets
     * a payer send its first fragment as a Write Request, which our
     * bluetoothd answers only once it acquired our write socket: two
     * Write Commands during that AcquireWrite would both reach us with
     * the second's bytes (see tally-gatt-client-private.h). */
    const char *rx_flags[] = { "write", "write-without-response", NULL };
    const char *tx_flags[] = { "notify", NULL };

    return g_variant_new_strv (kind == CHRC_RX ? rx_flags : tx_flags, -1);
  }
  /* Their presence tells BlueZ that we take AcquireWrite / AcquireNotify. */
  if (strcmp (name, "WriteAcquired") == 0 && kind == CHRC_RX &&
      server->mode == TALLY_GATT_SERVER_PER_DEVICE)
    return g_variant_new_boolean (FALSE);
  if (strcmp (name, "NotifyAcquired") == 0 && kind == CHRC_TX)
    return g_variant_new_boolean (FALSE);
  if (strcmp (name, "Notifying") == 0 && kind == CHRC_TX)
    return g_variant_new_boolean (server->notify_sessions > 0);
  return NULL;
}

static GVariant *
chrc_get_property (GDBusConnection *connection,
                   const char *sender,
                   const char *object_path,
                   const char *interface_name,
                   const char *property_name,
                   GError **error,
                   gpointer user_data)
{
  TallyGattServer *server = user_data;
  GVariant *value =
    chrc_property (server, strcmp (object_path, server->rx_path) == 0 ? CHRC_RX : CHRC_TX,
                   property_name);

  if (value == NULL)
    g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS, "no property %s", property_name);
  return value;
}

static GVariant *
chrc_properties (TallyGattServer *server, ChrcKind kind)
{
  const char *names[] = { "UUID", "Service", "Flags", "WriteAcquired", "NotifyAcquired",
                          "Notifying" };
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    GVariant *value = chrc_property (server, kind, names[i]);

    if (value != NULL)
      g_variant_builder_add (&builder, "{sv}", names[i], value);
  }
  return g_variant_builder_end (&builder);
}

static GVariant *
service_get_property (GDBusConnection *connection,
                      const char *sender,
                      const char *object_path,
                      const char *interface_name,
                      const char *property_name,
                      GError **error,
                      gpointer user_data)
{
  if (strcmp (property_name, "UUID") == 0)
    return g_variant_new_string (TALLY_GATT_SERVICE_UUID);
  if (strcmp (property_name, "Primary") == 0)
    return g_variant_new_boolean (TRUE);
  g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS, "no property %s", property_name);
  return NULL;
}

static void
app_method_call (GDBusConnection *connection,
                 const char *sender,
                 const char *object_path,
                 const char *interface_name,
                 const char *method_name,
                 GVariant *parameters,
                 GDBusMethodInvocation *invocation,
                 gpointer user_data)
{
  TallyGattServer *server = user_data;
  GVariantBuilder objects;
  GVariantBuilder ifaces;

  g_variant_builder_init (&objects, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));

  g_variant_builder_init (&ifaces, G_VARIANT_TYPE ("a{sa{sv}}"));
  g_variant_builder_add (&ifaces, "{s@a{sv}}", GATT_SERVICE_IFACE,
                         g_variant_new_parsed ("{'UUID': <%s>, 'Primary': <true>}",
                                               TALLY_GATT_SERVICE_UUID));
  g_variant_builder_add (&objects, "{oa{sa{sv}}}", server->service_path, &ifaces);

  g_variant_builder_init (&ifaces, G_VARIANT_TYPE ("a{sa{sv}}"));
  g_variant_builder_add (&ifaces, "{s@a{sv}}", GATT_CHRC_IFACE, chrc_properties (server, CHRC_RX));
  g_variant_builder_add (&objects, "{oa{sa{sv}}}", server->rx_path, &ifaces);

  g_variant_builder_init (&ifaces, G_VARIANT_TYPE ("a{sa{sv}}"));
  g_variant_builder_add (&ifaces, "{s@a{sv}}", GATT_CHRC_IFACE, chrc_properties (server, CHRC_TX));
  g_variant_builder_add (&objects, "{oa{sa{sv}}}", server->tx_path, &ifaces);

  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{oa{sa{sv}}})", &objects));
}

GDBusInterfaceInfo *
gatt_server_adv_interface_info (void)
{
  return interface_info (ADV_IFACE);
}

static const GDBusInterfaceVTable app_vtable = { app_method_call, NULL, NULL, { 0 } };
static const GDBusInterfaceVTable service_vtable = { NULL, service_get_property, NULL, { 0 } };
static const GDBusInterfaceVTable chrc_vtable = { chrc_method_call, chrc_get_property, NULL, { 0 } };

gboolean
gatt_server_export_objects (TallyGattServer *server, GError **error)
{
  const struct
  {
    const char *path;
    const char *iface;
    const GDBusInterfaceVTable *vtable;
  } objects[] = {
    { server->app_path, OBJECT_MANAGER_IFACE, &app_vtable },
    { server->service_path, GATT_SERVICE_IFACE, &service_vtable },
    { server->rx_path, GATT_CHRC_IFACE, &chrc_vtable },
    { server->tx_path, GATT_CHRC_IFACE, &chrc_vtable },
    { server->adv_path, ADV_IFACE, &gatt_server_adv_vtable },
  };
  G_STATIC_ASSERT (G_N_ELEMENTS (objects) == G_N_ELEMENTS (server->object_ids));

  for (guint i = 0; i < G_N_ELEMENTS (objects); i++) {
    g_autoptr (GError) local = NULL;

    server->object_ids[i] =
      g_dbus_connection_register_object (server->bus, objects[i].path,
                                         interface_info (objects[i].iface), objects[i].vtable,
                                         objects[i].vtable == &gatt_server_adv_vtable
                                           ? (gpointer) gatt_server_advert0 (server)
                                           : (gpointer) server,
                                         NULL, &local);
    if (server->object_ids[i] == 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "cannot export %s: %s",
                   objects[i].path, local->message);
      return FALSE;
    }
  }
  return TRUE;
}
