/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-mgmt.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tally-core.h"

/* From the kernel's include/net/bluetooth/{bluetooth,hci,mgmt}.h; BlueZ's
 * headers are not a build dependency. */
#ifndef AF_BLUETOOTH
#define AF_BLUETOOTH 31
#endif
#define BTPROTO_HCI          1
#define HCI_DEV_NONE         0xffff
#define HCI_CHANNEL_CONTROL  3
#define MGMT_OP_READ_INFO    0x0004
#define MGMT_EV_CMD_COMPLETE 0x0001
#define MGMT_EV_CMD_STATUS   0x0002
#define MGMT_HDR_SIZE        6
#define MGMT_STATUS_INVALID_INDEX     0x11
#define MGMT_STATUS_PERMISSION_DENIED 0x14

struct sockaddr_hci
{
  sa_family_t hci_family;
  unsigned short hci_dev;
  unsigned short hci_channel;
};

/* How long the kernel may take to answer READ_INFO. */
#define MGMT_REPLY_TIMEOUT_MS 1000

const char *
tally_privacy_policy_to_string (TallyPrivacyPolicy policy)
{
  switch (policy) {
  case TALLY_PRIVACY_POLICY_OFF:
    return "off";
  case TALLY_PRIVACY_POLICY_WARN:
    return "warn";
  case TALLY_PRIVACY_POLICY_REQUIRE:
    return "require";
  }
  return "invalid";
}

gboolean
tally_privacy_policy_from_string (const char *text, TallyPrivacyPolicy *policy)
{
  g_return_val_if_fail (text != NULL && policy != NULL, FALSE);
  static const TallyPrivacyPolicy all[] = { TALLY_PRIVACY_POLICY_OFF, TALLY_PRIVACY_POLICY_WARN,
                                            TALLY_PRIVACY_POLICY_REQUIRE };
  for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
    if (strcmp (text, tally_privacy_policy_to_string (all[i])) == 0) {
      *policy = all[i];
      return TRUE;
    }
  return FALSE;
}

const char *
tally_privacy_state_to_string (TallyPrivacyState state)
{
  switch (state) {
  case TALLY_PRIVACY_STATE_ON:
    return "on";
  case TALLY_PRIVACY_STATE_OFF:
    return "off";
  case TALLY_PRIVACY_STATE_UNKNOWN:
    return "unknown";
  }
  return "invalid";
}

TallyPrivacyVerdict
tally_privacy_decide (TallyPrivacyPolicy policy, TallyPrivacyState state)
{
  if (state == TALLY_PRIVACY_STATE_ON)
    return TALLY_PRIVACY_VERDICT_OK;
  switch (policy) {
  case TALLY_PRIVACY_POLICY_OFF:
    return TALLY_PRIVACY_VERDICT_OK;
  case TALLY_PRIVACY_POLICY_WARN:
    return TALLY_PRIVACY_VERDICT_WARN;
  case TALLY_PRIVACY_POLICY_REQUIRE:
    return TALLY_PRIVACY_VERDICT_REFUSE;
  }
  return TALLY_PRIVACY_VERDICT_REFUSE;
}

static guint32
le32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static guint16
le16 (const guint8 *p)
{
  return (guint16) (p[0] | p[1] << 8);
}

gboolean
tally_mgmt_info_decode (const guint8 *data, gsize len, TallyMgmtInfo *info, GError **error)
{
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  g_return_val_if_fail (info != NULL, FALSE);

  /* bdaddr[6] version[1] manufacturer[2] supported[4] current[4]
   * class[3] name[249] short_name[11] */
  if (len < TALLY_MGMT_READ_INFO_SIZE) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "controller information is %" G_GSIZE_FORMAT " bytes, expected %d", len,
                 TALLY_MGMT_READ_INFO_SIZE);
    return FALSE;
  }
  memcpy (info->address, data, 6);
  info->supported_settings = le32 (data + 9);
  info->current_settings = le32 (data + 13);
  return TRUE;
}

static int
mgmt_open (GError **error)
{
  int fd = socket (AF_BLUETOOTH, SOCK_RAW | SOCK_CLOEXEC, BTPROTO_HCI);
  if (fd < 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_SUPPORTED,
                 "cannot open a Bluetooth management socket: %s%s", g_strerror (e),
                 e == EAFNOSUPPORT || e == EPERM || e == EACCES
                     ? " (no AF_BLUETOOTH: kernel without Bluetooth, or a sandbox such as "
                       "RestrictAddressFamilies= without AF_BLUETOOTH)"
                     : "");
    return -1;
  }
  struct sockaddr_hci addr = { .hci_family = AF_BLUETOOTH,
                               .hci_dev = HCI_DEV_NONE,
                               .hci_channel = HCI_CHANNEL_CONTROL };
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) < 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_SUPPORTED,
                 "cannot bind the Bluetooth management channel: %s", g_strerror (e));
    close (fd);
    return -1;
  }
  return fd;
}

/* Reads events until the answer to READ_INFO for @index; returns the
 * number of parameter bytes in @buf (after opcode and status), or -1. */
static gssize
mgmt_await_info (int fd, guint16 index, guint8 *buf, gsize size, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + MGMT_REPLY_TIMEOUT_MS * 1000;
  for (;;) {
    gint64 left = (deadline - g_get_monotonic_time ()) / 1000;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int n = left > 0 ? poll (&p, 1, (int) left) : 0;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                   "the Bluetooth management channel did not answer in %d ms",
                   MGMT_REPLY_TIMEOUT_MS);
      return -1;
    }
    gssize got = recv (fd, buf, size, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                   "reading the Bluetooth management channel: %s", g_strerror (errno));
      return -1;
    }
    if (got < MGMT_HDR_SIZE + 3)
      continue;
    guint16 event = le16 (buf), ev_index = le16 (buf + 2), opcode = le16 (buf + 6);
    guint8 status = buf[8];
    if (ev_index != index || opcode != MGMT_OP_READ_INFO ||
        (event != MGMT_EV_CMD_COMPLETE && event != MGMT_EV_CMD_STATUS))
      continue; /* other events on the control channel */
    if (status == MGMT_STATUS_INVALID_INDEX) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "the kernel has no adapter hci%u",
                   index);
      return -1;
    }
    if (status != 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                   "the kernel refused to read hci%u's settings (management status 0x%02x%s)",
                   index, status,
                   status == MGMT_STATUS_PERMISSION_DENIED ? ", permission denied" : "");
      return -1;
    }
    memmove (buf, buf + MGMT_HDR_SIZE + 3, (gsize) got - MGMT_HDR_SIZE - 3);
    return got - MGMT_HDR_SIZE - 3;
  }
}

TallyPrivacyState
tally_mgmt_read_privacy (const char *adapter, TallyMgmtInfo *info, GError **error)
{
  g_return_val_if_fail (adapter != NULL && info != NULL, TALLY_PRIVACY_STATE_UNKNOWN);

  guint64 index;
  if (!g_str_has_prefix (adapter, "hci") ||
      !g_ascii_string_to_unsigned (adapter + 3, 10, 0, HCI_DEV_NONE - 1, &index, NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\" is not an adapter name like hci0", adapter);
    return TALLY_PRIVACY_STATE_UNKNOWN;
  }
  int fd = mgmt_open (error);
  if (fd < 0)
    return TALLY_PRIVACY_STATE_UNKNOWN;

  guint8 cmd[MGMT_HDR_SIZE] = { MGMT_OP_READ_INFO, 0, (guint8) index, (guint8) (index >> 8), 0,
                                0 };
  if (send (fd, cmd, sizeof cmd, 0) != (gssize) sizeof cmd) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                 "writing to the Bluetooth management channel: %s", g_strerror (errno));
    close (fd);
    return TALLY_PRIVACY_STATE_UNKNOWN;
  }
  guint8 buf[1024];
  gssize len = mgmt_await_info (fd, (guint16) index, buf, sizeof buf, error);
  close (fd);
  if (len < 0 || !tally_mgmt_info_decode (buf, (gsize) len, info, error))
    return TALLY_PRIVACY_STATE_UNKNOWN;
  return (info->current_settings & TALLY_MGMT_SETTING_PRIVACY) != 0 ? TALLY_PRIVACY_STATE_ON
                                                                     : TALLY_PRIVACY_STATE_OFF;
}
