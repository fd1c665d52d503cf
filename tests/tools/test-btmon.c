/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/tally-btmon.c: the frames tallyd sends to the kernel's HCI logging
 * channel.  The socket itself needs a kernel with Bluetooth; btmon-log-vm.sh
 * checks it in the BLE VM.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "tally-btmon.h"
#include "tally-error.h"

/*
 * The checks hci_logging_frame() (net/bluetooth/hci_sock.c) applies before
 * it forwards a frame to the monitor, and the datagram size limit of
 * hci_sock_sendmsg ().
 */
static void
assert_kernel_accepts (const guint8 *frame, gsize len)
{
  g_assert_cmpuint (len, >=, 4);
  g_assert_cmpuint (len, <=, TALLY_BTMON_FRAME_MAX);
  g_assert_cmpuint (len, >=, TALLY_BTMON_HEADER_SIZE + 3);
  guint16 opcode = frame[0] | frame[1] << 8;
  guint16 hdr_len = frame[4] | frame[5] << 8;
  g_assert_cmpuint (opcode, ==, 0x0000);
  g_assert_cmpuint (hdr_len, ==, len - TALLY_BTMON_HEADER_SIZE);
  guint8 priority = frame[6];
  guint8 ident_len = frame[7];
  g_assert_cmpuint (priority, <=, 7);
  g_assert_cmpuint (frame[len - 1], ==, 0x00);
  g_assert_cmpuint (ident_len, <=, len - TALLY_BTMON_HEADER_SIZE - 3);
  g_assert_cmpuint (frame[TALLY_BTMON_HEADER_SIZE + ident_len + 1], ==, 0x00);
}

/* The ident and message a monitor shows for @frame. */
static void
frame_strings (const guint8 *frame, gsize len, const char **ident, const char **message)
{
  guint8 ident_len = frame[7];
  *ident = (const char *) frame + 8;
  *message = (const char *) frame + 8 + ident_len;
  g_assert_cmpuint (8 + ident_len + strlen (*message) + 1, ==, len);
}

static void
test_frame_layout (void)
{
  static const guint8 expected[] = {
    0x00, 0x00,                               /* opcode */
    0xff, 0xff,                               /* index: none */
    0x13, 0x00,                               /* 19 bytes follow */
    0x06,                                     /* LOG_INFO */
    0x07,                                     /* "tallyd" and its NUL */
    't', 'a', 'l', 'l', 'y', 'd', 0x00,
    'p', 'a', 'y', 'e', 'r', ' ', 'u', 'p', 'x', 0x00,
  };
  guint8 frame[TALLY_BTMON_FRAME_MAX];

  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_INFO, "tallyd",
                                        "payer upx");
  g_assert_cmpmem (frame, len, expected, sizeof expected);
  assert_kernel_accepts (frame, len);

  /* A controller index travels little-endian. */
  len = tally_btmon_frame_encode (frame, 0x0102, LOG_INFO, "tallyd", "x");
  g_assert_cmpuint (frame[2], ==, 0x02);
  g_assert_cmpuint (frame[3], ==, 0x01);
  assert_kernel_accepts (frame, len);
}

static void
test_frame_edge_cases (void)
{
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  const char *ident;
  const char *message;

  /* Empty and missing strings still give the NULs the kernel checks. */
  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_DEBUG, "", "");
  assert_kernel_accepts (frame, len);
  g_assert_cmpuint (len, ==, TALLY_BTMON_HEADER_SIZE + 4);
  len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_DEBUG, NULL, NULL);
  assert_kernel_accepts (frame, len);
  frame_strings (frame, len, &ident, &message);
  g_assert_cmpstr (ident, ==, "");
  g_assert_cmpstr (message, ==, "");

  /* Priorities outside syslog's 0..7 are clamped, not refused. */
  len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, 12, "tallyd", "high");
  assert_kernel_accepts (frame, len);
  g_assert_cmpuint (frame[6], ==, LOG_DEBUG);
  len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, -4, "tallyd", "low");
  assert_kernel_accepts (frame, len);
  g_assert_cmpuint (frame[6], ==, LOG_EMERG);
}

static void
test_frame_strips_newlines (void)
{
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  const char *ident;
  const char *message;

  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_INFO, "tallyd",
                                        "line one\nline two\r\n\n");
  assert_kernel_accepts (frame, len);
  frame_strings (frame, len, &ident, &message);
  g_assert_cmpstr (message, ==, "line one\nline two");
}

static void
test_frame_cuts_long_message (void)
{
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  const char *ident;
  const char *message;
  g_autoptr (GString) text = g_string_new (NULL);

  /* Two-byte characters, so that the limit falls inside one. */
  for (int i = 0; i < 2000; i++)
    g_string_append (text, "\xc3\xa9");
  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_INFO, "tallyd",
                                        text->str);
  assert_kernel_accepts (frame, len);
  frame_strings (frame, len, &ident, &message);
  g_assert_cmpstr (ident, ==, "tallyd");
  g_assert_true (g_utf8_validate (message, -1, NULL));
  g_assert_true (g_str_has_prefix (text->str, message));
  /* As long as the frame allows, short of the one character that does
   * not fit whole. */
  g_assert_cmpuint (len, >=, TALLY_BTMON_FRAME_MAX - 1);
}

static void
test_frame_cuts_long_ident (void)
{
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  const char *ident;
  const char *message;
  g_autoptr (GString) name = g_string_new (NULL);

  for (int i = 0; i < 200; i++)
    g_string_append (name, "\xc3\xa9");
  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, LOG_INFO, name->str, "m");
  assert_kernel_accepts (frame, len);
  frame_strings (frame, len, &ident, &message);
  g_assert_cmpuint (strlen (ident), <=, TALLY_BTMON_IDENT_MAX);
  g_assert_cmpuint (strlen (ident), >=, TALLY_BTMON_IDENT_MAX - 1);
  g_assert_true (g_utf8_validate (ident, -1, NULL));
  g_assert_true (g_str_has_prefix (name->str, ident));
  g_assert_cmpstr (message, ==, "m");
}

static void
test_priority_from_log_level (void)
{
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_ERROR), ==, LOG_ERR);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_CRITICAL), ==, LOG_WARNING);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_WARNING), ==, LOG_WARNING);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_MESSAGE), ==, LOG_NOTICE);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_INFO), ==, LOG_INFO);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_DEBUG), ==, LOG_DEBUG);
  g_assert_cmpint (tally_btmon_priority_from_log_level (G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL),
                   ==, LOG_WARNING);
}

/* A monitor stand-in: the sending end wrapped in a TallyBtmon, the
 * receiving end returned in *peer. */
static TallyBtmon *
btmon_pair (int *peer)
{
  int sv[2];
  g_assert_no_errno (socketpair (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv));
  *peer = sv[1];
  return tally_btmon_new_for_fd (sv[0]);
}

static gsize
receive (int fd, guint8 *buf, gsize size)
{
  ssize_t n = recv (fd, buf, size, MSG_DONTWAIT);
  g_assert_cmpint (n, >, 0);
  return (gsize) n;
}

static void
test_log_sends_one_datagram (void)
{
  int peer;
  g_autoptr (TallyBtmon) m = btmon_pair (&peer);
  guint8 expected[TALLY_BTMON_FRAME_MAX];
  guint8 got[TALLY_BTMON_FRAME_MAX + 16];

  tally_btmon_log (m, LOG_NOTICE, "tallyd", "serving org.tally on the system bus\n");
  gsize expected_len = tally_btmon_frame_encode (expected, TALLY_BTMON_INDEX_NONE, LOG_NOTICE,
                                                 "tallyd", "serving org.tally on the system bus");
  gsize got_len = receive (peer, got, sizeof got);
  g_assert_cmpmem (got, got_len, expected, expected_len);
  g_assert_cmpuint (tally_btmon_get_dropped (m), ==, 0);

  /* Nothing else was sent. */
  g_assert_cmpint (recv (peer, got, sizeof got, MSG_DONTWAIT), ==, -1);
  g_assert_cmpint (errno, ==, EAGAIN);
  close (peer);
}

static void
test_log_fields_prefixes_foreign_domain (void)
{
  int peer;
  g_autoptr (TallyBtmon) m = btmon_pair (&peer);
  guint8 got[TALLY_BTMON_FRAME_MAX + 16];
  const char *ident;
  const char *message;

  const GLogField transport[] = {
    { "GLIB_DOMAIN", "tally-transport", -1 },
    { "MESSAGE", "gatt: link up, ATT MTU 23xx", 25 },
    { "PRIORITY", "6", -1 },
  };
  tally_btmon_log_fields (m, "tallyd", G_LOG_LEVEL_INFO, transport, G_N_ELEMENTS (transport));
  gsize len = receive (peer, got, sizeof got);
  assert_kernel_accepts (got, len);
  frame_strings (got, len, &ident, &message);
  g_assert_cmpstr (ident, ==, "tallyd");
  g_assert_cmpstr (message, ==, "tally-transport: gatt: link up, ATT MTU 23");
  g_assert_cmpuint (got[6], ==, LOG_INFO);

  const GLogField own[] = {
    { "MESSAGE", "payment failed: Revoked", -1 },
    { "GLIB_DOMAIN", "tallyd", -1 },
  };
  tally_btmon_log_fields (m, "tallyd", G_LOG_LEVEL_WARNING, own, G_N_ELEMENTS (own));
  len = receive (peer, got, sizeof got);
  frame_strings (got, len, &ident, &message);
  g_assert_cmpstr (message, ==, "payment failed: Revoked");
  g_assert_cmpuint (got[6], ==, LOG_WARNING);

  /* A record without a message sends nothing. */
  const GLogField none[] = { { "GLIB_DOMAIN", "tallyd", -1 } };
  tally_btmon_log_fields (m, "tallyd", G_LOG_LEVEL_INFO, none, G_N_ELEMENTS (none));
  g_assert_cmpint (recv (peer, got, sizeof got, MSG_DONTWAIT), ==, -1);
  g_assert_cmpint (errno, ==, EAGAIN);

  /* Without a monitor, writers call in anyway. */
  tally_btmon_log (NULL, LOG_INFO, "tallyd", "dropped");
  tally_btmon_log_fields (NULL, "tallyd", G_LOG_LEVEL_INFO, own, G_N_ELEMENTS (own));
  close (peer);
}

static void
test_log_drops_instead_of_blocking (void)
{
  int peer;
  g_autoptr (TallyBtmon) m = btmon_pair (&peer);
  guint sent = 0;

  /* Nobody reads: the socket fills up, and every further line must be
   * dropped at once rather than wait for room. */
  while (tally_btmon_get_dropped (m) == 0 && sent < 1000000) {
    tally_btmon_log (m, LOG_DEBUG, "tallyd", "filling the monitor's queue");
    sent++;
  }
  g_assert_cmpuint (tally_btmon_get_dropped (m), ==, 1);
  g_assert_cmpuint (sent, >, 1);

  tally_btmon_log (m, LOG_DEBUG, "tallyd", "one more");
  g_assert_cmpuint (tally_btmon_get_dropped (m), ==, 2);
  close (peer);
}

static void
test_log_keeps_errno (void)
{
  int peer;
  g_autoptr (TallyBtmon) m = btmon_pair (&peer);

  close (peer);
  errno = ENOENT;
  /* The peer is gone: the send fails with ECONNREFUSED or similar. */
  tally_btmon_log (m, LOG_INFO, "tallyd", "nobody listens");
  g_assert_cmpint (errno, ==, ENOENT);
  g_assert_cmpuint (tally_btmon_get_dropped (m), ==, 1);
}

static void
test_open_without_bluetooth (void)
{
  g_autoptr (GError) error = NULL;

  int probe = socket (AF_BLUETOOTH, SOCK_RAW | SOCK_CLOEXEC, 1);
  if (probe >= 0) {
    close (probe);
    g_test_skip ("this kernel has Bluetooth; btmon-log-vm.sh covers opening the channel");
    return;
  }
  if (errno != EAFNOSUPPORT) {
    g_test_skip_printf ("socket (AF_BLUETOOTH) fails with %s here", g_strerror (errno));
    return;
  }

  g_autoptr (TallyBtmon) m = tally_btmon_open (&error);
  g_assert_null (m);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "no Bluetooth"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/btmon/frame/matches-kernel-layout", test_frame_layout);
  g_test_add_func ("/btmon/frame/passes-kernel-checks-at-the-edges", test_frame_edge_cases);
  g_test_add_func ("/btmon/frame/drops-trailing-newlines", test_frame_strips_newlines);
  g_test_add_func ("/btmon/frame/cuts-long-message-at-character-boundary",
                   test_frame_cuts_long_message);
  g_test_add_func ("/btmon/frame/cuts-long-ident-at-character-boundary",
                   test_frame_cuts_long_ident);
  g_test_add_func ("/btmon/priority/follows-glib-journald-mapping", test_priority_from_log_level);
  g_test_add_func ("/btmon/log/sends-one-datagram-per-line", test_log_sends_one_datagram);
  g_test_add_func ("/btmon/log/prefixes-foreign-log-domain",
                   test_log_fields_prefixes_foreign_domain);
  g_test_add_func ("/btmon/log/drops-lines-instead-of-blocking",
                   test_log_drops_instead_of_blocking);
  g_test_add_func ("/btmon/log/keeps-callers-errno", test_log_keeps_errno);
  g_test_add_func ("/btmon/open/reports-kernel-without-bluetooth-as-not-found",
                   test_open_without_bluetooth);

  return g_test_run ();
}
