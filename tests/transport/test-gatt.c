/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tally-channel.h"
#include "tally-gatt-address.h"
#include "tally-gatt-advert.h"
#include "tally-gatt-devices.h"
#include "tally-gatt-link.h"
#include "tally-gatt-server.h"

/* Fails a test whose event never comes instead of hanging it. */
#define WATCHDOG_SECONDS 30

static gboolean
watchdog_cb (gpointer user_data)
{
  gboolean *fired = user_data;

  *fired = TRUE;
  return G_SOURCE_REMOVE;
}

#define RUN_UNTIL(cond)                                                                            \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gboolean fired_ = FALSE;                                                                       \
    GSource *watchdog_ = g_timeout_source_new_seconds (WATCHDOG_SECONDS);                          \
    g_source_set_callback (watchdog_, watchdog_cb, &fired_, NULL);                                 \
    g_source_attach (watchdog_, NULL);                                                             \
    while (!(cond) && !fired_)                                                                     \
      g_main_context_iteration (NULL, TRUE);                                                       \
    g_source_destroy (watchdog_);                                                                  \
    g_source_unref (watchdog_);                                                                    \
    if (!(cond))                                                                                   \
      g_error ("%s: %s did not happen", G_STRLOC, #cond);                                          \
  }                                                                                                \
  G_STMT_END

static void
drain_context (void)
{
  for (guint i = 0; i < 50; i++)
    while (g_main_context_iteration (NULL, FALSE))
      ;
}

/* --- addresses and MTU ---------------------------------------------------------- */

static void
test_address_parses_three_forms (void)
{
  TallyGattTarget target;
  g_autoptr (GError) error = NULL;
  const guint8 tag[TALLY_GATT_TAG_BYTES] = { 0x0a, 0x1b, 0x2c, 0x3d };
  g_autofree char *text = tally_gatt_tag_to_address (tag);

  g_assert_true (tally_gatt_address_parse ("ble", &target, &error));
  g_assert_no_error (error);
  g_assert_cmpint (target.kind, ==, TALLY_GATT_TARGET_ANY);

  g_assert_cmpstr (text, ==, "ble:0a1b2c3d");
  g_assert_true (tally_gatt_address_parse (text, &target, &error));
  g_assert_no_error (error);
  g_assert_cmpint (target.kind, ==, TALLY_GATT_TARGET_TAG);
  g_assert_cmpmem (target.tag, sizeof target.tag, tag, sizeof tag);

  g_assert_true (tally_gatt_address_parse ("ble:00:aa:01:01:00:0f", &target, &error));
  g_assert_no_error (error);
  g_assert_cmpint (target.kind, ==, TALLY_GATT_TARGET_ADDRESS);
  g_assert_cmpstr (target.address, ==, "00:AA:01:01:00:0F");

  g_assert_true (tally_gatt_is_address ("ble"));
  g_assert_true (tally_gatt_is_address ("ble:whatever"));
  g_assert_false (tally_gatt_is_address ("unix:/tmp/x"));
  g_assert_false (tally_gatt_is_address ("bleep"));
}

static void
test_address_refuses_malformed (void)
{
  const char *bad[] = {
    "ble:",        "ble:0a1b2c3",       "ble:0a1b2c3d4e",     "ble:zz1b2c3d",
    "bluetooth",   "ble:00:AA:01:01:00", "ble:00-AA-01-01-00-01", "ble:00:AA:01:01:00:0G",
    "BLE:0a1b2c3d", "ble:00:AA:01:01:00:01:",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    TallyGattTarget target;
    g_autoptr (GError) error = NULL;

    g_assert_false (tally_gatt_address_parse (bad[i], &target, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  }
}

static void
test_mtu_payload_is_att_mtu_less_header (void)
{
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (23), ==, 20);
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (185), ==, 182);
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (247), ==, 244);
  /* 517 - 3 = 514, above the framing's maximum. */
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (517), ==, TALLY_FRAME_MAX_MTU);
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (22), ==, 0);
  g_assert_cmpuint (tally_gatt_payload_for_att_mtu (0), ==, 0);
}

static void
test_mtu_notification_leaves_room_for_multiple_value_header (void)
{
  /* BlueZ 5.66 cut 45-byte values to 43 at ATT MTU 48 (seen in the VM). */
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (48), ==, 43);
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (517), ==, TALLY_FRAME_MAX_MTU);
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (25), ==, 20);
  /* The framing's floor is what ATT MTU 23 leaves a multiple-value
   * notification. */
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (24), ==, 19);
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (23), ==, 18);
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (23), ==, TALLY_FRAME_MIN_MTU);
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (22), ==, 0);
}

/* --- advertisement -------------------------------------------------------------- */

static void
test_advertising_tagged_fits_legacy_budget (void)
{
  TallyGattAdvertising adv;
  g_autoptr (GError) error = NULL;

  tally_gatt_advertising_init (&adv, FALSE);
  /* Flags 3 + 128-bit UUID list 18. */
  g_assert_cmpuint (tally_gatt_advertising_size (&adv), ==, 21);
  g_assert_true (tally_gatt_advertising_check (&adv, &error));
  g_assert_no_error (error);

  tally_gatt_advertising_init (&adv, TRUE);
  /* + manufacturer data: 2 header, 2 company, 4 tag. */
  g_assert_cmpuint (tally_gatt_advertising_size (&adv), ==, 29);
  g_assert_true (tally_gatt_advertising_check (&adv, &error));
  g_assert_no_error (error);
}

static void
test_advertising_service_data_tag_beside_uuid_list_exceeds_budget (void)
{
  TallyGattAdvertising adv;
  g_autoptr (GError) error = NULL;

  tally_gatt_advertising_init (&adv, FALSE);
  adv.service_data_uuid_bytes = 16;
  adv.service_data_bytes = TALLY_GATT_TAG_BYTES;
  /* 3 + 18 + (2 + 16 + 4) */
  g_assert_cmpuint (tally_gatt_advertising_size (&adv), ==, 43);
  g_assert_false (tally_gatt_advertising_check (&adv, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_advertising_refuses_a_local_name_beside_the_tag (void)
{
  TallyGattAdvertising adv;
  g_autoptr (GError) error = NULL;

  tally_gatt_advertising_init (&adv, TRUE);
  adv.local_name_bytes = strlen ("stall");
  g_assert_cmpuint (tally_gatt_advertising_size (&adv), ==, 36);
  g_assert_false (tally_gatt_advertising_check (&adv, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_advertising_refuses_odd_service_data_uuid (void)
{
  TallyGattAdvertising adv;
  g_autoptr (GError) error = NULL;

  memset (&adv, 0, sizeof adv);
  adv.service_data_uuid_bytes = 3;
  g_assert_false (tally_gatt_advertising_check (&adv, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

/* --- server mode ------------------------------------------------------------------ */

static void
test_server_mode_follows_bluez_version (void)
{
  /* Debian 12's BlueZ 5.66: one notify socket for every device. */
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("usb:v1D6Bp0246d0542"), ==,
                   TALLY_GATT_SERVER_EXCLUSIVE);
  /* 5.69 gives a socket per device but still fans notifications out. */
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("usb:v1D6Bp0246d0545"), ==,
                   TALLY_GATT_SERVER_EXCLUSIVE);
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("usb:v1D6Bp0246d054C"), ==,
                   TALLY_GATT_SERVER_PER_DEVICE);
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("usb:v1D6Bp0246d0601"), ==,
                   TALLY_GATT_SERVER_PER_DEVICE);
  /* A Device ID set in main.conf says nothing about BlueZ. */
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("usb:v1234p5678d0600"), ==,
                   TALLY_GATT_SERVER_EXCLUSIVE);
  g_assert_cmpint (tally_gatt_server_mode_from_modalias ("bluetooth:v1D6Bp0246d054C"), ==,
                   TALLY_GATT_SERVER_EXCLUSIVE);
  g_assert_cmpint (tally_gatt_server_mode_from_modalias (NULL), ==, TALLY_GATT_SERVER_EXCLUSIVE);
}

/* --- the link over sockets -------------------------------------------------------- */

typedef struct
{
  GPtrArray *fragments; /* GBytes */
  gboolean closed;
  GError *error;
  GPtrArray *owner_sent; /* GBytes */
  guint stopped;
  gboolean refuse_owner_send;
} Peer;

static void
peer_init (Peer *peer)
{
  memset (peer, 0, sizeof *peer);
  peer->fragments = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  peer->owner_sent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
}

static void
peer_clear (Peer *peer)
{
  g_ptr_array_unref (peer->fragments);
  g_ptr_array_unref (peer->owner_sent);
  g_clear_error (&peer->error);
}

static void
on_fragment (TallyLink *link, const guint8 *data, gsize len, gpointer user_data)
{
  Peer *peer = user_data;

  g_ptr_array_add (peer->fragments, g_bytes_new (data, len));
}

static void
on_closed (TallyLink *link, const GError *error, gpointer user_data)
{
  Peer *peer = user_data;

  peer->closed = TRUE;
  peer->error = error ? g_error_copy (error) : NULL;
}

static gboolean
owner_send (gpointer owner, TallyLink *link, const guint8 *data, gsize len, GError **error)
{
  Peer *peer = owner;

  if (peer->refuse_owner_send) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "owner refuses");
    return FALSE;
  }
  g_ptr_array_add (peer->owner_sent, g_bytes_new (data, len));
  return TRUE;
}

static void
owner_stopped (gpointer owner, TallyLink *link)
{
  Peer *peer = owner;

  peer->stopped++;
}

static const TallyGattLinkOwner test_owner = {
  .send = owner_send,
  .stopped = owner_stopped,
};

static void
make_pair (int fds[2])
{
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), ==,
                   0);
}

/* Reads one packet from the BlueZ end. */
static GBytes *
read_packet (int fd)
{
  guint8 buf[1024];
  ssize_t n;

  /* The link writes synchronously while the socket has room. */
  n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
  g_assert_cmpint (n, >=, 0);
  return g_bytes_new (buf, (gsize) n);
}

static void
test_link_socket_carries_one_fragment_per_packet (void)
{
  Peer peer;
  int tx[2], rx[2];
  const guint8 a[] = { 0x40, 0x00, 0x01, 0x61 };
  const guint8 b[20] = { 0x10, 0x00, 0x30 };
  g_autoptr (TallyLink) link = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) first = NULL;
  g_autoptr (GBytes) second = NULL;

  peer_init (&peer);
  make_pair (tx);
  make_pair (rx);
  link = tally_gatt_link_new (20, "ble:test", &test_owner, &peer);
  tally_gatt_link_take_tx_fd (link, tx[0]);
  tally_gatt_link_take_rx_fd (link, rx[0]);
  g_assert_true (tally_gatt_link_has_tx_fd (link));
  g_assert_true (tally_gatt_link_has_rx_fd (link));
  tally_link_set_handlers (link, on_fragment, on_closed, &peer, NULL);

  g_assert_true (tally_link_send (link, a, sizeof a, &error));
  g_assert_no_error (error);
  g_assert_true (tally_link_send (link, b, sizeof b, &error));
  g_assert_no_error (error);
  first = read_packet (tx[1]);
  second = read_packet (tx[1]);
  g_assert_cmpmem (g_bytes_get_data (first, NULL), g_bytes_get_size (first), a, sizeof a);
  g_assert_cmpmem (g_bytes_get_data (second, NULL), g_bytes_get_size (second), b, sizeof b);
  /* The sockets took everything: the owner's path was not used. */
  g_assert_cmpuint (peer.owner_sent->len, ==, 0);

  g_assert_cmpint (send (rx[1], b, sizeof b, 0), ==, sizeof b);
  g_assert_cmpint (send (rx[1], a, sizeof a, 0), ==, sizeof a);
  RUN_UNTIL (peer.fragments->len == 2);
  g_assert_cmpmem (g_bytes_get_data (peer.fragments->pdata[0], NULL),
                   g_bytes_get_size (peer.fragments->pdata[0]), b, sizeof b);
  g_assert_cmpmem (g_bytes_get_data (peer.fragments->pdata[1], NULL),
                   g_bytes_get_size (peer.fragments->pdata[1]), a, sizeof a);
  g_assert_false (peer.closed);

  tally_link_close (link);
  g_assert_cmpuint (peer.stopped, ==, 1);
  close (tx[1]);
  close (rx[1]);
  peer_clear (&peer);
}

static void
test_link_hangup_is_disconnected (void)
{
  Peer peer;
  int rx[2];
  g_autoptr (TallyLink) link = NULL;

  peer_init (&peer);
  make_pair (rx);
  link = tally_gatt_link_new (20, "ble:test", &test_owner, &peer);
  tally_gatt_link_take_rx_fd (link, rx[0]);
  tally_link_set_handlers (link, on_fragment, on_closed, &peer, NULL);

  /* BlueZ closes the socket when the device disconnects. */
  close (rx[1]);
  RUN_UNTIL (peer.closed);
  g_assert_error (peer.error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_cmpuint (peer.stopped, ==, 1);
  peer_clear (&peer);
}

static void
test_link_oversize_packet_is_frame_oversize (void)
{
  Peer peer;
  int rx[2];
  guint8 big[TALLY_FRAME_MAX_MTU + 1] = { 0x40 };
  g_autoptr (TallyLink) link = NULL;

  peer_init (&peer);
  make_pair (rx);
  link = tally_gatt_link_new (20, "ble:test", &test_owner, &peer);
  tally_gatt_link_take_rx_fd (link, rx[0]);
  tally_link_set_handlers (link, on_fragment, on_closed, &peer, NULL);

  g_assert_cmpint (send (rx[1], big, sizeof big, 0), ==, sizeof big);
  RUN_UNTIL (peer.closed);
  g_assert_error (peer.error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  g_assert_cmpuint (peer.fragments->len, ==, 0);
  close (rx[1]);
  peer_clear (&peer);
}

static void
test_link_without_socket_goes_through_owner (void)
{
  Peer peer;
  const guint8 a[] = { 0x40, 0x00, 0x01, 0x61 };
  g_autoptr (TallyLink) link = NULL;
  g_autoptr (GError) error = NULL;

  peer_init (&peer);
  link = tally_gatt_link_new (20, "ble:test", &test_owner, &peer);
  tally_link_set_handlers (link, on_fragment, on_closed, &peer, NULL);

  g_assert_true (tally_link_send (link, a, sizeof a, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (peer.owner_sent->len, ==, 1);

  tally_gatt_link_receive (link, a, sizeof a);
  g_assert_cmpuint (peer.fragments->len, ==, 1);

  /* An owner that cannot send fails the send with DISCONNECTED. */
  peer.refuse_owner_send = TRUE;
  g_assert_false (tally_link_send (link, a, sizeof a, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_false (peer.closed);

  tally_gatt_link_lost (link, "the device disconnected");
  g_assert_true (peer.closed);
  g_assert_error (peer.error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_cmpuint (peer.stopped, ==, 1);

  /* Nothing moves after the loss. */
  g_clear_error (&error);
  g_assert_false (tally_link_send (link, a, sizeof a, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  tally_gatt_link_receive (link, a, sizeof a);
  g_assert_cmpuint (peer.fragments->len, ==, 1);
  tally_link_close (link);
  g_assert_cmpuint (peer.stopped, ==, 1);
  peer_clear (&peer);
}

static void
test_link_paused_fragments_leave_in_order_on_resume (void)
{
  Peer peer;
  g_autoptr (TallyLink) link = NULL;
  g_autoptr (GError) error = NULL;

  peer_init (&peer);
  link = tally_gatt_link_new (20, "ble:test", &test_owner, &peer);
  tally_gatt_link_set_paused (link, TRUE);
  for (guint8 i = 0; i < 5; i++) {
    guint8 fragment[2] = { 0x40, i };

    g_assert_true (tally_link_send (link, fragment, sizeof fragment, &error));
    g_assert_no_error (error);
  }
  /* Held while another device could see them. */
  g_assert_cmpuint (peer.owner_sent->len, ==, 0);
  tally_gatt_link_set_paused (link, FALSE);
  g_assert_cmpuint (peer.owner_sent->len, ==, 5);
  for (guint8 i = 0; i < 5; i++)
    g_assert_cmpuint (((const guint8 *) g_bytes_get_data (peer.owner_sent->pdata[i], NULL))[1], ==,
                      i);
  tally_link_close (link);
  peer_clear (&peer);
}

/* A whole message at ATT MTU 23 over the sockets BlueZ hands out, through
 * channels on both ends: payload 20 for Write Commands, 18 for the payee's
 * multiple-value notifications. */
typedef struct
{
  GBytes *message;
  gboolean closed;
} ChannelPeer;

static void
channel_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  ChannelPeer *peer = user_data;

  peer->message = g_bytes_ref (message);
}

static void
channel_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  ChannelPeer *peer = user_data;

  peer->closed = TRUE;
}

static void
check_channel_carries_message (gsize mtu)
{
  Peer payer_owner, payee_owner;
  ChannelPeer payee = { 0 };
  int pair[2];
  guint8 msg[1000];
  g_autoptr (GBytes) message = NULL;
  g_autoptr (GError) error = NULL;
  TallyLink *payer_link, *payee_link;
  TallyChannel *payer, *receiver;

  for (guint i = 0; i < sizeof msg; i++)
    msg[i] = (guint8) (i * 7);
  message = g_bytes_new (msg, sizeof msg);
  peer_init (&payer_owner);
  peer_init (&payee_owner);
  /* One socket pair stands for BlueZ carrying Write Commands across. */
  make_pair (pair);
  payer_link = tally_gatt_link_new (mtu, "ble:payee", &test_owner, &payer_owner);
  payee_link = tally_gatt_link_new (mtu, "ble:payer", &test_owner, &payee_owner);
  tally_gatt_link_take_tx_fd (payer_link, pair[0]);
  tally_gatt_link_take_rx_fd (payee_link, pair[1]);

  payer = tally_channel_new (payer_link, 8192, 10000);
  receiver = tally_channel_new (payee_link, 8192, 10000);
  tally_channel_set_handlers (receiver, channel_message, channel_closed, &payee, NULL);
  g_assert_true (tally_channel_send (payer, message, &error));
  g_assert_no_error (error);
  RUN_UNTIL (payee.message != NULL);
  g_assert_true (g_bytes_equal (payee.message, message));
  g_assert_false (payee.closed);

  tally_channel_unref (payer);
  tally_channel_unref (receiver);
  tally_link_unref (payer_link);
  tally_link_unref (payee_link);
  drain_context ();
  g_bytes_unref (payee.message);
  peer_clear (&payer_owner);
  peer_clear (&payee_owner);
}

static void
test_link_channel_carries_message_at_att_mtu_23 (void)
{
  check_channel_carries_message (tally_gatt_payload_for_att_mtu (23));
}

static void
test_link_channel_carries_notifications_at_att_mtu_23 (void)
{
  g_assert_cmpuint (tally_gatt_notify_payload_for_att_mtu (23), ==, 18);
  check_channel_carries_message (tally_gatt_notify_payload_for_att_mtu (23));
}

/* --- the payee's device table ----------------------------------------------------- */

static TallyLink *
dummy_link (Peer *peer)
{
  return tally_gatt_link_new (20, "ble:dummy", &test_owner, peer);
}

static void
test_devices_exclusive_serves_one_at_a_time (void)
{
  g_autoptr (TallyGattDevices) devices = tally_gatt_devices_new (1);
  g_autoptr (GError) error = NULL;
  Peer peer;
  g_autoptr (TallyLink) a_link = NULL;
  g_autoptr (TallyLink) b_link = NULL;
  TallyLink *back;

  peer_init (&peer);
  a_link = dummy_link (&peer);
  b_link = dummy_link (&peer);

  g_assert_true (tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_A"));
  g_assert_false (tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_B"));
  g_assert_true (tally_gatt_devices_is_served (devices, "/org/bluez/hci0/dev_A"));
  g_assert_false (tally_gatt_devices_is_served (devices, "/org/bluez/hci0/dev_B"));
  g_assert_cmpuint (tally_gatt_devices_get_connected_count (devices), ==, 2);
  g_assert_cmpuint (tally_gatt_devices_get_served_count (devices), ==, 1);

  g_assert_true (tally_gatt_devices_set_link (devices, "/org/bluez/hci0/dev_A", a_link, &error));
  g_assert_no_error (error);
  /* A device turned away gets no session. */
  g_assert_false (tally_gatt_devices_set_link (devices, "/org/bluez/hci0/dev_B", b_link, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  g_clear_error (&error);
  /* One session per device. */
  g_assert_false (tally_gatt_devices_set_link (devices, "/org/bluez/hci0/dev_A", b_link, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_clear_error (&error);

  g_assert_true (tally_gatt_devices_lookup (devices, "/org/bluez/hci0/dev_A") == a_link);
  g_assert_cmpstr (tally_gatt_devices_find_link (devices, a_link), ==, "/org/bluez/hci0/dev_A");
  g_assert_null (tally_gatt_devices_find_link (devices, b_link));

  /* The turned-away device leaves, then the served one: the slot frees. */
  g_assert_null (tally_gatt_devices_disconnected (devices, "/org/bluez/hci0/dev_B"));
  back = tally_gatt_devices_disconnected (devices, "/org/bluez/hci0/dev_A");
  g_assert_true (back == a_link);
  tally_link_unref (back);
  g_assert_true (tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_B"));
  g_assert_true (tally_gatt_devices_set_link (devices, "/org/bluez/hci0/dev_B", b_link, &error));
  g_assert_no_error (error);

  tally_link_close (a_link);
  tally_link_close (b_link);
  peer_clear (&peer);
}

static void
test_devices_per_device_serves_up_to_the_maximum (void)
{
  g_autoptr (TallyGattDevices) devices = tally_gatt_devices_new (3);
  char path[64];

  for (guint i = 0; i < 3; i++) {
    g_snprintf (path, sizeof path, "/org/bluez/hci0/dev_%u", i);
    g_assert_true (tally_gatt_devices_connected (devices, path));
  }
  g_assert_false (tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_3"));
  g_assert_cmpuint (tally_gatt_devices_get_served_count (devices), ==, 3);
  /* Asking again about a served device does not take a second slot. */
  g_assert_true (tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_0"));
  g_assert_cmpuint (tally_gatt_devices_get_connected_count (devices), ==, 4);
}

static void
test_devices_broadcast_only_while_alone (void)
{
  g_autoptr (TallyGattDevices) devices = tally_gatt_devices_new (1);

  g_assert_false (tally_gatt_devices_may_broadcast (devices, "/org/bluez/hci0/dev_A"));
  tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_A");
  g_assert_true (tally_gatt_devices_may_broadcast (devices, "/org/bluez/hci0/dev_A"));
  /* Another device connected, even one turned away, could subscribe and
   * see a Value change meant for A. */
  tally_gatt_devices_connected (devices, "/org/bluez/hci0/dev_B");
  g_assert_false (tally_gatt_devices_may_broadcast (devices, "/org/bluez/hci0/dev_A"));
  g_assert_false (tally_gatt_devices_may_broadcast (devices, "/org/bluez/hci0/dev_B"));
  g_assert_null (tally_gatt_devices_disconnected (devices, "/org/bluez/hci0/dev_B"));
  g_assert_true (tally_gatt_devices_may_broadcast (devices, "/org/bluez/hci0/dev_A"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/gatt/address/parses-any-tag-and-device-address",
                   test_address_parses_three_forms);
  g_test_add_func ("/gatt/address/refuses-malformed", test_address_refuses_malformed);
  g_test_add_func ("/gatt/mtu/payload-is-att-mtu-less-3-byte-header",
                   test_mtu_payload_is_att_mtu_less_header);
  g_test_add_func ("/gatt/mtu/notification-leaves-room-for-multiple-value-header",
                   test_mtu_notification_leaves_room_for_multiple_value_header);
  g_test_add_func ("/gatt/advertising/tagged-fits-31-byte-legacy-budget",
                   test_advertising_tagged_fits_legacy_budget);
  g_test_add_func ("/gatt/advertising/service-data-tag-beside-uuid-list-exceeds-budget",
                   test_advertising_service_data_tag_beside_uuid_list_exceeds_budget);
  g_test_add_func ("/gatt/advertising/refuses-local-name-beside-tag",
                   test_advertising_refuses_a_local_name_beside_the_tag);
  g_test_add_func ("/gatt/advertising/refuses-odd-service-data-uuid-size",
                   test_advertising_refuses_odd_service_data_uuid);
  g_test_add_func ("/gatt/server/mode-follows-bluez-version", test_server_mode_follows_bluez_version);
  g_test_add_func ("/gatt/link/socket-carries-one-fragment-per-packet",
                   test_link_socket_carries_one_fragment_per_packet);
  g_test_add_func ("/gatt/link/socket-hangup-is-disconnected", test_link_hangup_is_disconnected);
  g_test_add_func ("/gatt/link/oversize-packet-is-frame-oversize",
                   test_link_oversize_packet_is_frame_oversize);
  g_test_add_func ("/gatt/link/without-socket-goes-through-owner",
                   test_link_without_socket_goes_through_owner);
  g_test_add_func ("/gatt/link/paused-fragments-leave-in-order-on-resume",
                   test_link_paused_fragments_leave_in_order_on_resume);
  g_test_add_func ("/gatt/link/channel-carries-message-at-att-mtu-23",
                   test_link_channel_carries_message_at_att_mtu_23);
  g_test_add_func ("/gatt/link/channel-carries-notifications-at-att-mtu-23",
                   test_link_channel_carries_notifications_at_att_mtu_23);
  g_test_add_func ("/gatt/devices/exclusive-serves-one-device-at-a-time",
                   test_devices_exclusive_serves_one_at_a_time);
  g_test_add_func ("/gatt/devices/per-device-serves-up-to-the-maximum",
                   test_devices_per_device_serves_up_to_the_maximum);
  g_test_add_func ("/gatt/devices/shared-notification-only-while-alone",
                   test_devices_broadcast_only_while_alone);
  return g_test_run ();
}
