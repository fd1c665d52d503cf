/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-gatt-server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "tally-bluez-private.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-devices.h"
#include "tally-gatt-link.h"

/*
 * The payee's side: a GATT application and an LE advertisement exported on
 * the system bus and registered with BlueZ (doc/org.bluez.GattManager.rst,
 * org.bluez.LEAdvertisingManager.rst).  The object layout follows BlueZ's
 * test/example-gatt-server:
 *
 *   APP              org.freedesktop.DBus.ObjectManager
 *   APP/service0     org.bluez.GattService1
 *   APP/service0/rx  org.bluez.GattCharacteristic1  write-without-response
 *   APP/service0/tx  org.bluez.GattCharacteristic1  notify
 *   APP/adv0         org.bluez.LEAdvertisement1
 *
 * Each payer's device gets its own TallyLink, keyed by the "device" option
 * BlueZ passes with WriteValue, AcquireWrite and AcquireNotify.
 */

/* A device that connects but starts no session within this time gives its
 * slot back. */
#define IDLE_DEVICE_SECONDS 15
/* BlueZ 5.76 is the first to keep one notify socket per device and send
 * what is written to it to that device only. */
#define PER_DEVICE_BLUEZ_MAJOR 5
#define PER_DEVICE_BLUEZ_MINOR 76
/* Rotation slot of our advertisement in exclusive mode (LEAdvertisement1
 * Duration).  A connection stops the controller's advertising, but Linux
 * schedules the instance again when its slot ends (2 s unless asked
 * otherwise), and until our UnregisterAdvertisement lands a second payer
 * may connect to a stall that serves one: seen in the VM, where D-Bus
 * takes seconds.  Other advertisers on the adapter get the air less often
 * while a request waits. */
#define EXCLUSIVE_ADV_DURATION_S 600

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
  ADV_IDLE,
  ADV_REGISTERING,
  ADV_ACTIVE,
  ADV_UNREGISTERING,
} AdvState;

typedef enum
{
  CHRC_RX,
  CHRC_TX,
} ChrcKind;

typedef enum
{
  SERVER_STARTING,
  SERVER_REGISTERED,
  SERVER_STOPPED,
} ServerState;

struct _TallyGattServer
{
  ServerState state;
  GDBusConnection *bus;
  char *adapter;
  char *adapter_path;
  char *app_path;
  char *service_path;
  char *rx_path;
  char *tx_path;
  char *adv_path;
  TallyGattServerMode mode;
  guint max_devices;
  TallyGattDevices *devices;
  GHashTable *paired;      /* device path -> GINT_TO_POINTER (paired or trusted) */
  GHashTable *idle_timers; /* device path -> GSource */
  TallyGattServerLinkFunc on_link;
  gpointer user_data;
  GMainContext *context;

  guint object_ids[5];
  guint props_subscription;
  guint added_subscription;
  guint removed_subscription;
  guint name_watch;
  char *bluez_owner; /* unique name of bluetoothd */
  guint notify_sessions; /* StartNotify minus StopNotify */

  AdvState adv_state;
  gboolean adv_wanted;
  gboolean adv_tagged_wanted;
  guint8 adv_tag_wanted[TALLY_GATT_TAG_BYTES];
  gboolean adv_tagged; /* what the exported advertisement says */
  guint8 adv_tag[TALLY_GATT_TAG_BYTES];
  GCancellable *adv_cancel;
  gboolean adv_registered;
};

const char *
tally_gatt_server_mode_to_string (TallyGattServerMode mode)
{
  switch (mode) {
  case TALLY_GATT_SERVER_EXCLUSIVE: return "exclusive";
  case TALLY_GATT_SERVER_PER_DEVICE: return "per-device";
  }
  return "unknown";
}

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

static const char *
server_state_to_string (ServerState state)
{
  switch (state) {
  case SERVER_STARTING: return "starting";
  case SERVER_REGISTERED: return "registered";
  case SERVER_STOPPED: return "stopped";
  }
  return "unknown";
}

static void
server_enter_state (TallyGattServer *server, ServerState state)
{
  g_info ("gatt server %s: %s -> %s", server->adapter, server_state_to_string (server->state),
          server_state_to_string (state));
  server->state = state;
}

TallyGattServerMode
tally_gatt_server_mode_from_modalias (const char *modalias)
{
  unsigned int vendor, product, version;
  char tail;

  if (modalias == NULL)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  /* BlueZ's own Device ID unless main.conf overrides it: the version is
   * major in the high byte, minor in the low byte. */
  if (sscanf (modalias, "usb:v%4xp%4xd%4x%c", &vendor, &product, &version, &tail) != 3)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  if (vendor != 0x1d6b || product != 0x0246)
    return TALLY_GATT_SERVER_EXCLUSIVE;
  if ((version >> 8) > PER_DEVICE_BLUEZ_MAJOR ||
      ((version >> 8) == PER_DEVICE_BLUEZ_MAJOR && (version & 0xff) >= PER_DEVICE_BLUEZ_MINOR))
    return TALLY_GATT_SERVER_PER_DEVICE;
  return TALLY_GATT_SERVER_EXCLUSIVE;
}

/* "/org/bluez/hci0/dev_00_AA_01_01_00_01" -> "ble:00:AA:01:01:00:01" */
static char *
device_peer_name (const char *device)
{
  const char *base = strrchr (device, '/');
  g_autofree char *address = NULL;

  if (base == NULL || !g_str_has_prefix (base + 1, "dev_"))
    return g_strdup (device);
  address = g_strdup (base + 1 + strlen ("dev_"));
  g_strdelimit (address, "_", ':');
  return g_strdup_printf ("ble:%s", address);
}

static gboolean
is_our_device (TallyGattServer *server, const char *path)
{
  gsize len = strlen (server->adapter_path);

  return strncmp (path, server->adapter_path, len) == 0 && g_str_has_prefix (path + len, "/dev_") &&
         strchr (path + len + 1, '/') == NULL;
}

static void adv_reconcile (TallyGattServer *server);

/* --- devices and their links ------------------------------------------------- */

static void
disconnect_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree char *device = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply == NULL)
    g_debug ("disconnecting %s: %s", device, error->message);
}

static void
disconnect_device (TallyGattServer *server, const char *device)
{
  g_dbus_connection_call (server->bus, BLUEZ, device, DEVICE_IFACE, "Disconnect", NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, disconnect_done, g_strdup (device));
}

/* A notification the shared way may leave only while its device is the
 * only one connected; a per-device socket (BlueZ 5.76 on) reaches its
 * device alone. */
static void
update_pause (TallyGattServer *server)
{
  g_autoptr (GPtrArray) connected = tally_gatt_devices_list_connected (server->devices);

  for (guint i = 0; i < connected->len; i++) {
    const char *device = connected->pdata[i];
    TallyLink *link = tally_gatt_devices_lookup (server->devices, device);
    gboolean isolated;

    if (link == NULL)
      continue;
    isolated = server->mode == TALLY_GATT_SERVER_PER_DEVICE && tally_gatt_link_has_tx_fd (link);
    tally_gatt_link_set_paused (link,
                                !isolated && !tally_gatt_devices_may_broadcast (server->devices, device));
  }
}

static void
cancel_idle_timer (TallyGattServer *server, const char *device)
{
  GSource *source = g_hash_table_lookup (server->idle_timers, device);

  if (source != NULL) {
    g_source_destroy (source);
    g_hash_table_remove (server->idle_timers, device);
  }
}

typedef struct
{
  TallyGattServer *server;
  char *device;
} IdleTimer;

static void
idle_timer_free (IdleTimer *timer)
{
  g_free (timer->device);
  g_free (timer);
}

static gboolean
idle_timer_cb (gpointer user_data)
{
  IdleTimer *timer = user_data;
  TallyGattServer *server = timer->server;
  g_autofree char *device = g_strdup (timer->device);

  /* Removing the entry destroys this source and @timer with it. */
  g_hash_table_remove (server->idle_timers, device);
  if (tally_gatt_devices_is_served (server->devices, device) &&
      tally_gatt_devices_lookup (server->devices, device) == NULL) {
    g_info ("gatt server %s: %s started no session within %d s, disconnecting it",
            server->adapter, device, IDLE_DEVICE_SECONDS);
    disconnect_device (server, device);
  }
  return G_SOURCE_REMOVE;
}

static void
start_idle_timer (TallyGattServer *server, const char *device)
{
  IdleTimer *timer = g_new0 (IdleTimer, 1);
  GSource *source = g_timeout_source_new_seconds (IDLE_DEVICE_SECONDS);

  cancel_idle_timer (server, device);
  timer->server = server;
  timer->device = g_strdup (device);
  g_source_set_callback (source, idle_timer_cb, timer, (GDestroyNotify) idle_timer_free);
  g_source_set_static_name (source, "[tally] gatt idle device");
  g_source_attach (source, server->context);
  g_hash_table_insert (server->idle_timers, g_strdup (device), source);
}

/* A device connected, or acted on our characteristics before we heard of
 * its connection.  FALSE when it is not served. */
static gboolean
device_connected (TallyGattServer *server, const char *device)
{
  gboolean known = tally_gatt_devices_is_served (server->devices, device);
  gboolean served;

  if (known)
    return TRUE;
  served = tally_gatt_devices_connected (server->devices, device);
  if (!served) {
    g_info ("gatt server %s: refusing %s: serving %u device(s), the most in %s mode",
            server->adapter, device, tally_gatt_devices_get_served_count (server->devices),
            tally_gatt_server_mode_to_string (server->mode));
    disconnect_device (server, device);
  } else {
    g_info ("gatt server %s: serving %s", server->adapter, device);
    start_idle_timer (server, device);
  }
  update_pause (server);
  adv_reconcile (server);
  return served;
}

static gboolean
unref_link_idle (gpointer link)
{
  tally_link_unref (link);
  return G_SOURCE_REMOVE;
}

static void
device_disconnected (TallyGattServer *server, const char *device)
{
  TallyLink *link;

  if (!tally_gatt_devices_is_served (server->devices, device) &&
      tally_gatt_devices_get_connected_count (server->devices) == 0)
    return;
  cancel_idle_timer (server, device);
  link = tally_gatt_devices_disconnected (server->devices, device);
  if (link != NULL) {
    tally_gatt_link_lost (link, "the device disconnected");
    g_idle_add (unref_link_idle, link);
  }
  update_pause (server);
  /* A slot is free again. */
  adv_reconcile (server);
}

static gboolean
server_link_send (gpointer owner, TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  TallyGattServer *server = owner;
  g_autoptr (GError) local = NULL;
  GVariantBuilder changed;
  const char *device = tally_gatt_devices_find_link (server->devices, link);

  if (device == NULL || !tally_gatt_devices_may_broadcast (server->devices, device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                 "%s: a notification now would reach other devices too",
                 tally_link_get_peer (link));
    return FALSE;
  }

  g_variant_builder_init (&changed, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&changed, "{sv}", "Value",
                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1));
  if (!g_dbus_connection_emit_signal (server->bus, NULL, server->tx_path, PROPERTIES_IFACE,
                                      "PropertiesChanged",
                                      g_variant_new ("(sa{sv}as)", GATT_CHRC_IFACE, &changed, NULL),
                                      &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "notifying %s: %s",
                 tally_link_get_peer (link), local->message);
    return FALSE;
  }
  return TRUE;
}

static void
server_link_stopped (gpointer owner, TallyLink *link)
{
  TallyGattServer *server = owner;
  const char *device = tally_gatt_devices_find_link (server->devices, link);
  TallyLink *taken;

  if (device == NULL)
    return;
  g_info ("gatt server %s: session with %s over", server->adapter, device);
  /* The slot frees once BlueZ reports the disconnection. */
  disconnect_device (server, device);
  taken = tally_gatt_devices_take_link (server->devices, device);
  /* We may be inside the link's own close. */
  if (taken != NULL)
    g_idle_add (unref_link_idle, taken);
}

static const TallyGattLinkOwner server_link_owner = {
  .send = server_link_send,
  .stopped = server_link_stopped,
};

/* The link of the device named in @options; *created tells whether it is
 * new, in which case the caller announces it once its sockets are set. */
static TallyLink *
link_for_options (TallyGattServer *server, GVariant *options, gboolean *created, GError **error)
{
  const char *device = NULL;
  guint16 att_mtu = 0;
  gsize mtu;
  TallyLink *link;
  g_autofree char *peer = NULL;

  *created = FALSE;
  if (!g_variant_lookup (options, "device", "&o", &device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "BlueZ named no device");
    return NULL;
  }
  if (!g_variant_lookup (options, "mtu", "q", &att_mtu))
    att_mtu = TALLY_GATT_ATT_MIN_MTU;
  /* The payee only notifies: what BlueZ can notify whole is the limit. */
  mtu = MAX (tally_gatt_notify_payload_for_att_mtu (att_mtu), (gsize) TALLY_FRAME_MIN_MTU);

  if (!device_connected (server, device)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE, "%s is not served", device);
    return NULL;
  }

  link = tally_gatt_devices_lookup (server->devices, device);
  if (link != NULL) {
    if (mtu > tally_link_get_mtu (link))
      tally_link_set_mtu (link, mtu);
    return link;
  }

  peer = device_peer_name (device);
  link = tally_gatt_link_new (mtu, peer, &server_link_owner, server);
  if (!tally_gatt_devices_set_link (server->devices, device, link, error)) {
    tally_gatt_link_detach (link);
    tally_link_unref (link);
    return NULL;
  }
  /* The table holds the reference now. */
  tally_link_unref (link);
  cancel_idle_timer (server, device);
  g_info ("gatt server %s: session with %s, ATT MTU %u, %s mode", server->adapter, peer, att_mtu,
          tally_gatt_server_mode_to_string (server->mode));
  *created = TRUE;
  return link;
}

static void
announce_link (TallyGattServer *server, TallyLink *link)
{
  g_autoptr (TallyLink) ref = tally_link_ref (link);

  update_pause (server);
  server->on_link (server, link, server->user_data);
}

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

  g_variant_get (parameters, "(@a{sv})", &options);
  link = link_for_options (server, options, &created, &error);
  if (link == NULL) {
    return_error (invocation, BLUEZ_ERROR_FAILED, error);
    return;
  }
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
    announce_link (server, link);
  else
    update_pause (server);
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
  link = link_for_options (server, options, &created, &error);
  if (link == NULL) {
    return_error (invocation, BLUEZ_ERROR_NOT_PERMITTED, error);
    return;
  }
  g_autoptr (TallyLink) ref = tally_link_ref (link);
  g_dbus_method_invocation_return_value (invocation, NULL);
  if (created)
    announce_link (server, link);
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
     * security, and a phone must never be asked to pair. */
    const char *rx_flags[] = { "write-without-response", NULL };
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

/* --- the advertisement --------------------------------------------------------- */

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

static void
adv_enter_state (TallyGattServer *server, AdvState state)
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
    adv_enter_state (server, ADV_IDLE);
    server->adv_registered = FALSE;
    break;
  case ADV_IDLE:
  case ADV_REGISTERING:
  case ADV_UNREGISTERING:
    break;
  }
  g_dbus_method_invocation_return_value (invocation, NULL);
}

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
    g_autofree char *remote = g_dbus_error_get_remote_error (error);

    g_warning ("gatt server %s: cannot advertise: %s", server->adapter, error->message);
    adv_enter_state (server, ADV_IDLE);
    /* Not again until the next request asks for it. */
    server->adv_wanted = FALSE;
    return;
  }
  g_info ("gatt server %s: advertising %s%s", server->adapter, TALLY_GATT_SERVICE_UUID,
          server->adv_tagged ? " with a request tag" : "");
  server->adv_registered = TRUE;
  adv_enter_state (server, ADV_ACTIVE);
  adv_reconcile (server);
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
  adv_enter_state (server, ADV_IDLE);
  adv_reconcile (server);
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
static void
adv_reconcile (TallyGattServer *server)
{
  switch (server->adv_state) {
  case ADV_REGISTERING:
  case ADV_UNREGISTERING:
    return;
  case ADV_ACTIVE:
    if (adv_effectively_wanted (server) && adv_matches_wanted (server))
      return;
    adv_enter_state (server, ADV_UNREGISTERING);
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
  adv_enter_state (server, ADV_REGISTERING);
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
  adv_reconcile (server);
}

void
tally_gatt_server_stop_advertising (TallyGattServer *server)
{
  g_return_if_fail (server != NULL);

  server->adv_wanted = FALSE;
  adv_reconcile (server);
}

gboolean
tally_gatt_server_is_advertising (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, FALSE);

  return server->adv_state == ADV_ACTIVE;
}

/* --- BlueZ's devices ------------------------------------------------------------- */

/* Devices that are paired or trusted belong to the user (a keyboard, a
 * watch): the payee neither counts nor disconnects them.  Payers never
 * pair. */
static void
note_device_properties (TallyGattServer *server, const char *device, GVariant *props)
{
  gboolean paired = FALSE, trusted = FALSE, connected = FALSE;
  gboolean has_paired = g_variant_lookup (props, "Paired", "b", &paired);
  gboolean has_trusted = g_variant_lookup (props, "Trusted", "b", &trusted);
  gpointer old = NULL;
  gboolean known = g_hash_table_lookup_extended (server->paired, device, NULL, &old);
  gboolean personal = (has_paired && paired) || (has_trusted && trusted) ||
                      (known && !has_paired && !has_trusted && GPOINTER_TO_INT (old));

  g_hash_table_insert (server->paired, g_strdup (device), GINT_TO_POINTER (personal));

  if (!g_variant_lookup (props, "Connected", "b", &connected) || personal)
    return;
  if (connected) {
    /* Only while we serve: the daemon's own outgoing connections on this
     * adapter are none of the payee's business otherwise. */
    if (server->adv_wanted || tally_gatt_devices_get_served_count (server->devices) > 0)
      device_connected (server, device);
  } else {
    device_disconnected (server, device);
  }
}

static void
on_device_properties_changed (GDBusConnection *connection,
                              const char *sender,
                              const char *path,
                              const char *interface_name,
                              const char *signal_name,
                              GVariant *parameters,
                              gpointer user_data)
{
  TallyGattServer *server = user_data;
  const char *iface;
  g_autoptr (GVariant) changed = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")) ||
      !is_our_device (server, path))
    return;
  g_variant_get (parameters, "(&s@a{sv}@as)", &iface, &changed, NULL);
  if (strcmp (iface, DEVICE_IFACE) == 0)
    note_device_properties (server, path, changed);
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
  TallyGattServer *server = user_data;
  const char *object;
  g_autoptr (GVariant) ifaces = NULL;
  g_autoptr (GVariant) props = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    return;
  g_variant_get (parameters, "(&o@a{sa{sv}})", &object, &ifaces);
  if (!is_our_device (server, object))
    return;
  props = g_variant_lookup_value (ifaces, DEVICE_IFACE, G_VARIANT_TYPE_VARDICT);
  if (props != NULL)
    note_device_properties (server, object, props);
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
  TallyGattServer *server = user_data;
  const char *object;
  g_autofree const char **ifaces = NULL;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(oas)")))
    return;
  g_variant_get (parameters, "(&o^a&s)", &object, &ifaces);
  if (!is_our_device (server, object) || !g_strv_contains (ifaces, DEVICE_IFACE))
    return;
  device_disconnected (server, object);
  g_hash_table_remove (server->paired, object);
}

static void
drop_all_links (TallyGattServer *server, const char *why)
{
  g_autoptr (GPtrArray) connected = tally_gatt_devices_list_connected (server->devices);

  for (guint i = 0; i < connected->len; i++) {
    TallyLink *link = tally_gatt_devices_disconnected (server->devices, connected->pdata[i]);

    if (link != NULL) {
      tally_gatt_link_detach (link);
      tally_gatt_link_lost (link, why);
      tally_link_unref (link);
    }
  }
}

static void
on_bluez_appeared (GDBusConnection *connection,
                   const char *name,
                   const char *owner,
                   gpointer user_data)
{
  TallyGattServer *server = user_data;

  g_free (server->bluez_owner);
  server->bluez_owner = g_strdup (owner);
}

static void
on_bluez_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  TallyGattServer *server = user_data;

  g_clear_pointer (&server->bluez_owner, g_free);

  switch (server->state) {
  case SERVER_REGISTERED:
    break;
  case SERVER_STARTING:
  case SERVER_STOPPED:
    return;
  }
  g_warning ("gatt server %s: bluetoothd went away; BLE payments stop until tallyd restarts",
             server->adapter);
  drop_all_links (server, "bluetoothd went away");
  adv_enter_state (server, ADV_IDLE);
  server->adv_registered = FALSE;
  server_enter_state (server, SERVER_STOPPED);
}

/* --- lifetime ------------------------------------------------------------------ */

static const GDBusInterfaceVTable app_vtable = { app_method_call, NULL, NULL, { 0 } };
static const GDBusInterfaceVTable service_vtable = { NULL, service_get_property, NULL, { 0 } };
static const GDBusInterfaceVTable chrc_vtable = { chrc_method_call, chrc_get_property, NULL, { 0 } };
static const GDBusInterfaceVTable adv_vtable = { adv_method_call, adv_get_property, NULL, { 0 } };

static gboolean
export_objects (TallyGattServer *server, GError **error)
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
    { server->adv_path, ADV_IFACE, &adv_vtable },
  };
  G_STATIC_ASSERT (G_N_ELEMENTS (objects) == G_N_ELEMENTS (server->object_ids));

  for (guint i = 0; i < G_N_ELEMENTS (objects); i++) {
    g_autoptr (GError) local = NULL;

    server->object_ids[i] =
      g_dbus_connection_register_object (server->bus, objects[i].path,
                                         interface_info (objects[i].iface), objects[i].vtable,
                                         server, NULL, &local);
    if (server->object_ids[i] == 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "cannot export %s: %s",
                   objects[i].path, local->message);
      return FALSE;
    }
  }
  return TRUE;
}

static void
server_free_internal (TallyGattServer *server)
{
  if (server == NULL)
    return;
  if (server->devices != NULL)
    drop_all_links (server, "the payee stopped serving Bluetooth LE");
  if (server->adv_cancel != NULL)
    g_cancellable_cancel (server->adv_cancel);
  for (guint i = 0; i < G_N_ELEMENTS (server->object_ids); i++)
    if (server->object_ids[i] != 0)
      g_dbus_connection_unregister_object (server->bus, server->object_ids[i]);
  if (server->props_subscription != 0)
    g_dbus_connection_signal_unsubscribe (server->bus, server->props_subscription);
  if (server->added_subscription != 0)
    g_dbus_connection_signal_unsubscribe (server->bus, server->added_subscription);
  if (server->removed_subscription != 0)
    g_dbus_connection_signal_unsubscribe (server->bus, server->removed_subscription);
  if (server->name_watch != 0)
    g_bus_unwatch_name (server->name_watch);
  if (server->idle_timers != NULL) {
    GHashTableIter iter;
    GSource *source;

    g_hash_table_iter_init (&iter, server->idle_timers);
    while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &source))
      g_source_destroy (source);
    g_hash_table_destroy (server->idle_timers);
  }
  g_clear_pointer (&server->paired, g_hash_table_destroy);
  tally_gatt_devices_free (server->devices);
  g_clear_object (&server->adv_cancel);
  g_clear_object (&server->bus);
  g_main_context_unref (server->context);
  g_free (server->adapter);
  g_free (server->adapter_path);
  g_free (server->app_path);
  g_free (server->service_path);
  g_free (server->rx_path);
  g_free (server->tx_path);
  g_free (server->adv_path);
  g_free (server->bluez_owner);
  g_free (server);
}

void
tally_gatt_server_free (TallyGattServer *server)
{
  if (server == NULL)
    return;

  /* Fire and forget: BlueZ also cleans up when our connection goes. */
  if (server->adv_registered)
    g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, ADV_MANAGER_IFACE,
                            "UnregisterAdvertisement", g_variant_new ("(o)", server->adv_path),
                            NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
  switch (server->state) {
  case SERVER_REGISTERED:
    g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, GATT_MANAGER_IFACE,
                            "UnregisterApplication", g_variant_new ("(o)", server->app_path),
                            NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
    server_enter_state (server, SERVER_STOPPED);
    break;
  case SERVER_STARTING:
  case SERVER_STOPPED:
    break;
  }
  server_free_internal (server);
}

/* Maps a failed BlueZ call onto the TALLY_ERROR a caller acts on. */
static void
set_bluez_error (GError **error, const GError *dbus_error, const char *what)
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
           g_strcmp0 (remote, "org.bluez.Error.DoesNotExist") == 0)
    code = TALLY_ERROR_NOT_FOUND;
  else if (g_strcmp0 (remote, "org.bluez.Error.AlreadyExists") == 0)
    code = TALLY_ERROR_EXISTS;
  g_set_error (error, TALLY_ERROR, code, "%s: %s", what, copy->message);
}

/* Owns the server until the start succeeds. */
typedef struct
{
  TallyGattServer *server;
} StartData;

static void
start_data_free (StartData *data)
{
  server_free_internal (data->server);
  g_free (data);
}

static void
register_application_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = ((StartData *) g_task_get_task_data (task))->server;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  GError *tally_error = NULL;

  if (reply == NULL) {
    g_autofree char *what =
      g_strdup_printf ("registering the GATT application on %s", server->adapter);

    set_bluez_error (&tally_error, error, what);
    g_task_return_error (task, tally_error);
    return;
  }
  server_enter_state (server, SERVER_REGISTERED);
  g_info ("gatt server %s: service %s registered, %s mode (up to %u device(s) at once)",
          server->adapter, TALLY_GATT_SERVICE_UUID, tally_gatt_server_mode_to_string (server->mode),
          server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1);
  /* Ours to free no more once returned. */
  ((StartData *) g_task_get_task_data (task))->server = NULL;
  g_task_return_pointer (task, server, (GDestroyNotify) tally_gatt_server_free);
}

static void
bluez_objects_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = ((StartData *) g_task_get_task_data (task))->server;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply != NULL) {
    g_autoptr (GVariant) objects = g_variant_get_child_value (reply, 0);
    GVariantIter iter;
    const char *path;
    GVariant *ifaces;

    g_variant_iter_init (&iter, objects);
    while (g_variant_iter_loop (&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
      g_autoptr (GVariant) props = NULL;
      gboolean paired = FALSE, trusted = FALSE;

      if (!is_our_device (server, path))
        continue;
      props = g_variant_lookup_value (ifaces, DEVICE_IFACE, G_VARIANT_TYPE_VARDICT);
      if (props == NULL)
        continue;
      g_variant_lookup (props, "Paired", "b", &paired);
      g_variant_lookup (props, "Trusted", "b", &trusted);
      g_hash_table_insert (server->paired, g_strdup (path), GINT_TO_POINTER (paired || trusted));
    }
  } else {
    g_debug ("gatt server %s: listing BlueZ's objects: %s", server->adapter, error->message);
  }

  g_dbus_connection_call (server->bus, BLUEZ, server->adapter_path, GATT_MANAGER_IFACE,
                          "RegisterApplication",
                          g_variant_new ("(o@a{sv})", server->app_path,
                                         g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
                          NULL, G_DBUS_CALL_FLAGS_NONE, -1, g_task_get_cancellable (task),
                          register_application_done, g_object_ref (task));
}

static void
adapter_props_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  TallyGattServer *server = ((StartData *) g_task_get_task_data (task))->server;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) props = NULL;
  const char *modalias = NULL;
  gboolean powered = FALSE;
  GError *tally_error = NULL;

  if (reply == NULL) {
    g_autofree char *what = g_strdup_printf ("Bluetooth adapter %s", server->adapter);

    set_bluez_error (&tally_error, error, what);
    g_task_return_error (task, tally_error);
    return;
  }
  g_variant_get (reply, "(@a{sv})", &props);
  g_variant_lookup (props, "Modalias", "&s", &modalias);
  g_variant_lookup (props, "Powered", "b", &powered);
  server->mode = tally_gatt_server_mode_from_modalias (modalias);
  server->devices = tally_gatt_devices_new (
    server->mode == TALLY_GATT_SERVER_PER_DEVICE ? server->max_devices : 1);
  g_info ("gatt server %s: BlueZ %s, %s mode%s", server->adapter, modalias ? modalias : "(no Modalias)",
          tally_gatt_server_mode_to_string (server->mode), powered ? "" : ", adapter powered off");

  if (!export_objects (server, &tally_error)) {
    g_task_return_error (task, tally_error);
    return;
  }
  server->props_subscription = g_dbus_connection_signal_subscribe (
    server->bus, BLUEZ, PROPERTIES_IFACE, "PropertiesChanged", NULL, DEVICE_IFACE,
    G_DBUS_SIGNAL_FLAGS_NONE, on_device_properties_changed, server, NULL);
  server->added_subscription = g_dbus_connection_signal_subscribe (
    server->bus, BLUEZ, OBJECT_MANAGER_IFACE, "InterfacesAdded", "/", NULL,
    G_DBUS_SIGNAL_FLAGS_NONE, on_interfaces_added, server, NULL);
  server->removed_subscription = g_dbus_connection_signal_subscribe (
    server->bus, BLUEZ, OBJECT_MANAGER_IFACE, "InterfacesRemoved", "/", NULL,
    G_DBUS_SIGNAL_FLAGS_NONE, on_interfaces_removed, server, NULL);
  server->name_watch = g_bus_watch_name_on_connection (
    server->bus, BLUEZ, G_BUS_NAME_WATCHER_FLAGS_NONE, on_bluez_appeared, on_bluez_vanished, server,
    NULL);

  g_dbus_connection_call (server->bus, BLUEZ, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects", NULL,
                          G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, -1,
                          g_task_get_cancellable (task), bluez_objects_done, g_object_ref (task));
}

void
tally_gatt_server_new_async (GDBusConnection *system_bus,
                             const char *adapter,
                             guint max_devices,
                             TallyGattServerLinkFunc on_link,
                             gpointer user_data,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer callback_data)
{
  g_autoptr (GTask) task = NULL;
  TallyGattServer *server;

  g_return_if_fail (G_IS_DBUS_CONNECTION (system_bus));
  g_return_if_fail (adapter != NULL && on_link != NULL && max_devices > 0);

  task = g_task_new (NULL, cancellable, callback, callback_data);
  g_task_set_source_tag (task, tally_gatt_server_new_async);

  if (!g_dbus_is_member_name (adapter) || strchr (adapter, '/') != NULL) {
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                             "\"%s\" is not an adapter name like hci0", adapter);
    return;
  }

  server = g_new0 (TallyGattServer, 1);
  server->state = SERVER_STARTING;
  server->bus = g_object_ref (system_bus);
  server->adapter = g_strdup (adapter);
  server->adapter_path = g_strdup_printf ("/org/bluez/%s", adapter);
  server->app_path = g_strdup_printf ("/org/tally/gatt/%s", adapter);
  server->service_path = g_strdup_printf ("%s/service0", server->app_path);
  server->rx_path = g_strdup_printf ("%s/rx", server->service_path);
  server->tx_path = g_strdup_printf ("%s/tx", server->service_path);
  server->adv_path = g_strdup_printf ("%s/adv0", server->app_path);
  server->max_devices = max_devices;
  server->on_link = on_link;
  server->user_data = user_data;
  server->context = g_main_context_ref_thread_default ();
  server->paired = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  server->idle_timers =
    g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_source_unref);
  server->adv_cancel = g_cancellable_new ();
  StartData *data = g_new0 (StartData, 1);
  data->server = server;
  g_task_set_task_data (task, data, (GDestroyNotify) start_data_free);

  g_dbus_connection_call (system_bus, BLUEZ, server->adapter_path, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", ADAPTER_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, -1, cancellable, adapter_props_done,
                          g_steal_pointer (&task));
}

TallyGattServer *
tally_gatt_server_new_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, tally_gatt_server_new_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

TallyGattServerMode
tally_gatt_server_get_mode (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, TALLY_GATT_SERVER_EXCLUSIVE);

  return server->mode;
}

const char *
tally_gatt_server_get_adapter (TallyGattServer *server)
{
  g_return_val_if_fail (server != NULL, NULL);

  return server->adapter;
}
