/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-btmon.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "tally-error.h"

/*
 * The few kernel ABI values needed here, so that libbluetooth-dev is no
 * build dependency.  AF_BLUETOOTH itself comes from <sys/socket.h>.
 */
/* include/net/bluetooth/bluetooth.h */
#define TALLY_BTPROTO_HCI 1
/* include/net/bluetooth/hci_sock.h */
#define TALLY_HCI_DEV_NONE        0xffff
#define TALLY_HCI_CHANNEL_LOGGING 4

/* struct sockaddr_hci, include/net/bluetooth/hci_sock.h */
struct tally_sockaddr_hci
{
  sa_family_t hci_family;
  unsigned short hci_dev;
  unsigned short hci_channel;
};

/* The opcode a process sends; the kernel rewrites it to
 * HCI_MON_USER_LOGGING before the monitor sees it. */
#define TALLY_BTMON_OPCODE_LOG 0x0000

struct _TallyBtmon
{
  int fd;
  gint dropped; /* atomic: GLib may log from any thread */
};

static void
put_le16 (guint8 *p, guint16 v)
{
  p[0] = v & 0xff;
  p[1] = v >> 8;
}

/* The longest prefix of @s (@len bytes) of at most @max bytes that does
 * not end inside a UTF-8 sequence. */
static gsize
utf8_cut (const char *s, gsize len, gsize max)
{
  if (len <= max)
    return len;
  gsize n = max;
  while (n > 0 && ((guchar) s[n] & 0xc0) == 0x80)
    n--;
  return n;
}

gsize
tally_btmon_frame_encode (guint8 frame[static TALLY_BTMON_FRAME_MAX],
                          guint16 index,
                          int priority,
                          const char *ident,
                          const char *message)
{
  g_return_val_if_fail (frame != NULL, 0);

  if (ident == NULL)
    ident = "";
  if (message == NULL)
    message = "";

  gsize ident_len = utf8_cut (ident, strlen (ident), TALLY_BTMON_IDENT_MAX);
  gsize message_len = strlen (message);
  while (message_len > 0 && (message[message_len - 1] == '\n' || message[message_len - 1] == '\r'))
    message_len--;
  /* header, priority, ident_len, ident and its NUL, the message's NUL */
  gsize room = TALLY_BTMON_FRAME_MAX - TALLY_BTMON_HEADER_SIZE - 2 - (ident_len + 1) - 1;
  message_len = utf8_cut (message, message_len, room);

  gsize payload = 2 + ident_len + 1 + message_len + 1;
  put_le16 (frame, TALLY_BTMON_OPCODE_LOG);
  put_le16 (frame + 2, index);
  put_le16 (frame + 4, (guint16) payload);

  guint8 *p = frame + TALLY_BTMON_HEADER_SIZE;
  *p++ = (guint8) CLAMP (priority, LOG_EMERG, LOG_DEBUG);
  *p++ = (guint8) (ident_len + 1);
  memcpy (p, ident, ident_len);
  p += ident_len;
  *p++ = '\0';
  memcpy (p, message, message_len);
  p += message_len;
  *p++ = '\0';

  return (gsize) (p - frame);
}

int
tally_btmon_priority_from_log_level (GLogLevelFlags level)
{
  if (level & G_LOG_LEVEL_ERROR)
    return LOG_ERR;
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    return LOG_WARNING;
  if (level & G_LOG_LEVEL_MESSAGE)
    return LOG_NOTICE;
  if (level & G_LOG_LEVEL_INFO)
    return LOG_INFO;
  if (level & G_LOG_LEVEL_DEBUG)
    return LOG_DEBUG;
  return LOG_NOTICE;
}

TallyBtmon *
tally_btmon_open (GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  int fd = socket (AF_BLUETOOTH, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, TALLY_BTPROTO_HCI);
  if (fd < 0) {
    int saved = errno;
    if (saved == EAFNOSUPPORT || saved == EPROTONOSUPPORT)
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                   "no Bluetooth in this kernel or network namespace "
                   "(socket (AF_BLUETOOTH, BTPROTO_HCI): %s)",
                   g_strerror (saved));
    else
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                   "cannot open an HCI socket: %s", g_strerror (saved));
    return NULL;
  }

  struct tally_sockaddr_hci addr = {
    .hci_family = AF_BLUETOOTH,
    .hci_dev = TALLY_HCI_DEV_NONE,
    .hci_channel = TALLY_HCI_CHANNEL_LOGGING,
  };
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) < 0) {
    int saved = errno;
    close (fd);
    switch (saved) {
    case EPERM:
    case EACCES:
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                   "the HCI logging channel needs CAP_NET_ADMIN: %s", g_strerror (saved));
      break;
    case EINVAL:
      /* Kernels before the logging channel refuse the channel number. */
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                   "this kernel has no HCI logging channel: %s", g_strerror (saved));
      break;
    default:
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED,
                   "cannot bind the HCI logging channel: %s", g_strerror (saved));
      break;
    }
    return NULL;
  }

  TallyBtmon *m = g_new0 (TallyBtmon, 1);
  m->fd = fd;
  return m;
}

TallyBtmon *
tally_btmon_new_for_fd (int fd)
{
  g_return_val_if_fail (fd >= 0, NULL);

  /* A log line must never stall the daemon. */
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  TallyBtmon *m = g_new0 (TallyBtmon, 1);
  m->fd = fd;
  return m;
}

void
tally_btmon_free (TallyBtmon *m)
{
  if (m == NULL)
    return;
  close (m->fd);
  g_free (m);
}

void
tally_btmon_log (TallyBtmon *m, int priority, const char *ident, const char *message)
{
  if (m == NULL)
    return;

  /* Called from log writers: the caller's errno survives. */
  int saved = errno;
  guint8 frame[TALLY_BTMON_FRAME_MAX];
  gsize len = tally_btmon_frame_encode (frame, TALLY_BTMON_INDEX_NONE, priority, ident, message);
  ssize_t n;
  do
    n = send (m->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0 || (gsize) n != len)
    g_atomic_int_inc (&m->dropped);
  errno = saved;
}

/* A GLogField value as a string of its own. */
static char *
field_dup (const GLogField *field)
{
  if (field->length < 0)
    return g_strdup (field->value);
  return g_strndup (field->value, (gsize) field->length);
}

void
tally_btmon_log_fields (TallyBtmon *m,
                        const char *ident,
                        GLogLevelFlags level,
                        const GLogField *fields,
                        gsize n_fields)
{
  if (m == NULL)
    return;

  g_autofree char *message = NULL;
  g_autofree char *domain = NULL;
  for (gsize i = 0; i < n_fields; i++) {
    if (message == NULL && g_strcmp0 (fields[i].key, "MESSAGE") == 0)
      message = field_dup (&fields[i]);
    else if (domain == NULL && g_strcmp0 (fields[i].key, "GLIB_DOMAIN") == 0)
      domain = field_dup (&fields[i]);
  }
  if (message == NULL)
    return;

  int priority = tally_btmon_priority_from_log_level (level);
  if (domain != NULL && g_strcmp0 (domain, ident) != 0) {
    g_autofree char *line = g_strconcat (domain, ": ", message, NULL);
    tally_btmon_log (m, priority, ident, line);
  } else {
    tally_btmon_log (m, priority, ident, message);
  }
}

guint
tally_btmon_get_dropped (TallyBtmon *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return (guint) g_atomic_int_get (&m->dropped);
}
