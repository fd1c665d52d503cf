/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The payer's side of Bluetooth LE: a GATT client that finds a payee and
 * hands out a TallyLink to it (tally-gatt-link.h). */

#include <gio/gio.h>

#include "tally-link.h"

G_BEGIN_DECLS

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
