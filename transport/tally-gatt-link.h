/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Tally over Bluetooth LE, through BlueZ's D-Bus API on the system bus.
 *
 * The payee is the GATT server (peripheral): one primary service with an
 * rx characteristic the payer writes and a tx characteristic the payee
 * notifies.  The payer is the GATT client (central).  Each fragment of
 * docs/framing.md travels as one ATT Write Command (the first of a link: a
 * Write Request) or one Handle Value Notification, so a TallyLink's MTU is
 * the ATT MTU less the 3 bytes of ATT header.  docs/ble.md has the whole
 * picture.
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

/* The usable payload for an ATT MTU: @att_mtu - 3, capped at
 * TALLY_FRAME_MAX_MTU; 0 when @att_mtu is below the ATT minimum of 23. */
gsize tally_gatt_payload_for_att_mtu (guint att_mtu);
/* The largest value a payee can notify: BlueZ's server sends Handle
 * Multiple Value Notifications (4 more bytes: handle and length) to a
 * client that supports them, and cuts longer values silently, so @att_mtu
 * - 5, capped at TALLY_FRAME_MAX_MTU.  Below ATT MTU 25 that is under the
 * framing's 20-byte floor, and 20 is returned: see docs/ble.md. */
gsize tally_gatt_notify_payload_for_att_mtu (guint att_mtu);

/* A link over GATT: each direction runs either over a socket BlueZ hands
 * out (AcquireWrite, AcquireNotify: SOCK_SEQPACKET, one fragment per
 * packet) or through the owner (WriteValue calls, Value notifications).
 * The owner is the GATT server or client that made the link. */

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

G_END_DECLS
