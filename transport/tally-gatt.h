/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Tally over Bluetooth LE, through BlueZ's D-Bus API on the system bus.
 *
 * The payee is the GATT server (peripheral): one primary service with an
 * rx characteristic the payer writes without response and a tx
 * characteristic the payee notifies.  The payer is the GATT client
 * (central).  Each fragment of docs/framing.md travels as one ATT Write
 * Command or one Handle Value Notification, so a TallyLink's MTU is the ATT
 * MTU less the 3 bytes of ATT header.  docs/ble.md has the whole picture.
 *
 * Nothing here asks for encryption or pairing: the handshake secures the
 * session, and a phone must never see a pairing prompt.
 */

#include <gio/gio.h>

#include "tally-link.h"

G_BEGIN_DECLS

#define TALLY_GATT_SERVICE_UUID "3e9bc08b-8b49-4fc8-ae66-5864293b3bbd"
#define TALLY_GATT_RX_UUID      "3e9bc08b-8b49-4fc8-ae66-5864293b3bbe"
#define TALLY_GATT_TX_UUID      "3e9bc08b-8b49-4fc8-ae66-5864293b3bbf"

/* ATT opcode and attribute handle in front of every Write Command and
 * Notification; BlueZ reports the ATT MTU, which includes them. */
#define TALLY_GATT_ATT_HEADER   3
#define TALLY_GATT_ATT_MIN_MTU  23
#define TALLY_GATT_DEFAULT_ADAPTER "hci0"

/* The per-request tag a payee advertises so that a payer can pick the
 * right stall: fresh random bytes for every request, never a static
 * identifier. */
#define TALLY_GATT_TAG_BYTES 4
/* Manufacturer data carries the tag: the Bluetooth SIG's company
 * identifier for products that have none assigned yet.  Service data keyed
 * by our 128-bit UUID would not fit the legacy budget next to the UUID
 * list (tally_gatt_advertising_size ()). */
#define TALLY_GATT_COMPANY_ID 0xffff
#define TALLY_GATT_LEGACY_ADV_BYTES 31

/* The usable payload for an ATT MTU: @att_mtu - 3, capped at
 * TALLY_FRAME_MAX_MTU; 0 when @att_mtu is below the ATT minimum of 23. */
gsize tally_gatt_payload_for_att_mtu (guint att_mtu);
/* The largest value a payee can notify: BlueZ's server sends Handle
 * Multiple Value Notifications (4 more bytes: handle and length) to a
 * client that supports them, and cuts longer values silently, so @att_mtu
 * - 5, capped at TALLY_FRAME_MAX_MTU.  Below ATT MTU 25 that is under the
 * framing's 20-byte floor, and 20 is returned: see docs/ble.md. */
gsize tally_gatt_notify_payload_for_att_mtu (guint att_mtu);

/* --- addresses --------------------------------------------------------------
 *
 *   "ble"                    the first payee found
 *   "ble:0a1b2c3d"           the payee advertising this request tag (hex)
 *   "ble:AA:BB:CC:DD:EE:FF"  the payee with this device address
 */

typedef enum
{
  TALLY_GATT_TARGET_ANY,
  TALLY_GATT_TARGET_TAG,
  TALLY_GATT_TARGET_ADDRESS,
} TallyGattTargetKind;

typedef struct
{
  TallyGattTargetKind kind;
  guint8 tag[TALLY_GATT_TAG_BYTES];
  char address[18]; /* upper case, colon separated */
} TallyGattTarget;

/* TRUE for "ble" and "ble:..." (whether or not the rest is valid). */
gboolean tally_gatt_is_address (const char *address);
/* INVALID_ARGUMENT naming what is wrong. */
gboolean tally_gatt_address_parse (const char *address, TallyGattTarget *target, GError **error);
/* "ble:0a1b2c3d" */
char *tally_gatt_tag_to_address (const guint8 tag[TALLY_GATT_TAG_BYTES]);
const char *tally_gatt_target_kind_to_string (TallyGattTargetKind kind);

/* --- advertisement ------------------------------------------------------------
 *
 * Legacy advertising data is at most 31 bytes, and the kernel adds a 3-byte
 * Flags structure on an LE-only controller.  Every other structure costs 2
 * bytes (length, type) plus its data.
 */

typedef struct
{
  guint n_uuid128;              /* complete list of 128-bit service UUIDs */
  gsize service_data_uuid_bytes; /* 0: no service data; else 2, 4 or 16 */
  gsize service_data_bytes;
  gboolean manufacturer_data;    /* with its 2-byte company identifier */
  gsize manufacturer_data_bytes; /* after the company identifier */
  gsize local_name_bytes;        /* 0: no name */
} TallyGattAdvertising;

/* Ours: the service UUID, and the tag as manufacturer data when @tagged. */
void tally_gatt_advertising_init (TallyGattAdvertising *adv, gboolean tagged);
/* Bytes on air, Flags included. */
gsize tally_gatt_advertising_size (const TallyGattAdvertising *adv);
/* INVALID_ARGUMENT when the data exceeds TALLY_GATT_LEGACY_ADV_BYTES. */
gboolean tally_gatt_advertising_check (const TallyGattAdvertising *adv, GError **error);

/* --- a link over GATT -------------------------------------------------------
 *
 * Each direction runs either over a socket BlueZ hands out (AcquireWrite,
 * AcquireNotify: SOCK_SEQPACKET, one fragment per packet) or through the
 * owner (WriteValue calls, Value notifications).  The owner is the GATT
 * server or client that made the link.
 */

typedef struct
{
  /* Sends one fragment the owner's way; FALSE with DISCONNECTED when it
   * cannot. */
  gboolean (*send) (gpointer owner, TallyLink *link, const guint8 *data, gsize len, GError **error);
  /* The link stopped I/O (closed by its user, by the peer, or on an
   * error); runs once. */
  void (*stopped) (gpointer owner, TallyLink *link);
} TallyGattLinkOwner;

TallyLink *tally_gatt_link_new (gsize mtu,
                                const char *peer,
                                const TallyGattLinkOwner *owner,
                                gpointer owner_data);
/* Takes @fd: fragments towards the peer go there from now on. */
void tally_gatt_link_take_tx_fd (TallyLink *link, int fd);
/* Takes @fd: fragments from the peer come from there from now on. */
void tally_gatt_link_take_rx_fd (TallyLink *link, int fd);
gboolean tally_gatt_link_has_tx_fd (TallyLink *link);
gboolean tally_gatt_link_has_rx_fd (TallyLink *link);
/* A fragment the owner received (WriteValue, a Value notification). */
void tally_gatt_link_receive (TallyLink *link, const guint8 *data, gsize len);
/* While paused, fragments queue instead of leaving. */
void tally_gatt_link_set_paused (TallyLink *link, gboolean paused);
/* The device went away: DISCONNECTED with @why. */
void tally_gatt_link_lost (TallyLink *link, const char *why);
/* The owner is going away: no callback into it afterwards. */
void tally_gatt_link_detach (TallyLink *link);

/* --- the payee's device table ---------------------------------------------
 *
 * One session per connected device.  A notification sent the shared way
 * (a Value property change, or BlueZ's single notify socket before 5.76)
 * reaches every subscribed device, so it may leave only while its device
 * is the only one connected; in exclusive mode the table admits one device
 * at a time so that this holds.
 */

typedef struct _TallyGattDevices TallyGattDevices;

TallyGattDevices *tally_gatt_devices_new (guint max_served);
void tally_gatt_devices_free (TallyGattDevices *devices);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyGattDevices, tally_gatt_devices_free)

/* A device connected.  TRUE when it is served (now or already); FALSE when
 * every slot is taken and it must be disconnected. */
gboolean tally_gatt_devices_connected (TallyGattDevices *devices, const char *device);
/* The device disconnected; its link, if any, is returned (owned by the
 * caller) and removed. */
TallyLink *tally_gatt_devices_disconnected (TallyGattDevices *devices, const char *device);
gboolean tally_gatt_devices_is_served (TallyGattDevices *devices, const char *device);
guint tally_gatt_devices_get_connected_count (TallyGattDevices *devices);
guint tally_gatt_devices_get_served_count (TallyGattDevices *devices);

/* The link of a served device, or NULL. */
TallyLink *tally_gatt_devices_lookup (TallyGattDevices *devices, const char *device);
/* Stores @link (a reference is taken) for @device.  WRONG_STATE when the
 * device is not served, EXISTS when it has a link. */
gboolean tally_gatt_devices_set_link (TallyGattDevices *devices,
                                      const char *device,
                                      TallyLink *link,
                                      GError **error);
/* Forgets the link of @device (it stays served while connected); the
 * caller gets the reference back, or NULL. */
TallyLink *tally_gatt_devices_take_link (TallyGattDevices *devices, const char *device);
/* The served device whose link is @link, or NULL. */
const char *tally_gatt_devices_find_link (TallyGattDevices *devices, TallyLink *link);
/* TRUE when a notification every subscriber sees may go to @device: it is
 * served and no other device is connected. */
gboolean tally_gatt_devices_may_broadcast (TallyGattDevices *devices, const char *device);
/* The connected devices, served or not. */
GPtrArray *tally_gatt_devices_list_connected (TallyGattDevices *devices);

/* --- the payee: GATT server and advertisement --------------------------------- */

typedef struct _TallyGattServer TallyGattServer;

/* A payer's device has a link.  The callback borrows it: it takes a
 * reference to keep it, and the link closes when it does not. */
typedef void (*TallyGattServerLinkFunc) (TallyGattServer *server,
                                         TallyLink *link,
                                         gpointer user_data);

typedef enum
{
  /* BlueZ before 5.76 (one notify socket for all devices, and before 5.69
   * one write socket too) or of unknown version: one device at a time,
   * writes through WriteValue so every fragment names its device. */
  TALLY_GATT_SERVER_EXCLUSIVE,
  /* BlueZ 5.76 or later: one write and one notify socket per device,
   * several devices at once. */
  TALLY_GATT_SERVER_PER_DEVICE,
} TallyGattServerMode;

const char *tally_gatt_server_mode_to_string (TallyGattServerMode mode);
/* From Adapter1.Modalias ("usb:v1D6Bp0246d054C" is BlueZ 5.76);
 * EXCLUSIVE unless it names BlueZ 5.76 or later. */
TallyGattServerMode tally_gatt_server_mode_from_modalias (const char *modalias);

/* Exports the application on @system_bus and registers it with
 * GattManager1 of @adapter ("hci0").  @max_devices bounds the devices
 * served at once in PER_DEVICE mode. */
void tally_gatt_server_new_async (GDBusConnection *system_bus,
                                  const char *adapter,
                                  guint max_devices,
                                  TallyGattServerLinkFunc on_link,
                                  gpointer user_data,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer callback_data);
TallyGattServer *tally_gatt_server_new_finish (GAsyncResult *result, GError **error);
/* Unregisters and unexports; every link reports DISCONNECTED. */
void tally_gatt_server_free (TallyGattServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyGattServer, tally_gatt_server_free)

TallyGattServerMode tally_gatt_server_get_mode (TallyGattServer *server);
const char *tally_gatt_server_get_adapter (TallyGattServer *server);

/* Advertises the service with @tag (NULL: no tag) until stopped; a new
 * call replaces the advertisement.  Registration finishes in the
 * background; failures are logged and reported by
 * tally_gatt_server_is_advertising (). */
void tally_gatt_server_advertise (TallyGattServer *server, const guint8 *tag);
void tally_gatt_server_stop_advertising (TallyGattServer *server);
gboolean tally_gatt_server_is_advertising (TallyGattServer *server);

/* --- the payer: GATT client ------------------------------------------------------- */

typedef struct
{
  /* monotonic microseconds */
  gint64 started;
  gint64 discovered;
  gint64 connected;
  gint64 resolved;
  gint64 ready;
  guint attempts;
  guint att_mtu;
  gboolean notify_fd;
  gboolean write_fd;
} TallyGattConnectInfo;

/* Discovers the payee @address ("ble", "ble:TAG", "ble:AA:...") on
 * @adapter, connects, resolves our service and sets up notifications and
 * writes.  A failed attempt (a disconnect while connecting: a payee serving
 * another payer disconnects newcomers at once; no connection within 10 s:
 * a busy payee does not advertise; a failed Connect; the adapter switched
 * off while scanning) starts over from a fresh discovery after a back-off
 * with jitter, a bounded number of times; BlueZ's "busy" answers
 * (InProgress, NotPermitted for notifications still held) ask the same
 * step again.  docs/ble.md has the numbers.  Errors: INVALID_ARGUMENT
 * (address), NOT_FOUND (no such adapter, payee or service), DISCONNECTED,
 * TIMEOUT, CANCELLED. */
void tally_gatt_connect_async (GDBusConnection *system_bus,
                               const char *adapter,
                               const char *address,
                               guint timeout_seconds,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data);
/* The link disconnects the device when it closes. */
TallyLink *tally_gatt_connect_finish (GAsyncResult *result,
                                      TallyGattConnectInfo *info,
                                      GError **error);

G_END_DECLS
