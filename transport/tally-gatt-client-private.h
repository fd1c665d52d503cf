/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The GATT client's parts (tally-gatt-client*.c) and what they share:
 * private to transport/. */

#include "tally-bluez-private.h"
#include "tally-gatt-address.h"
#include "tally-gatt-client.h"
#include "tally-gatt-scanner.h"

G_BEGIN_DECLS

#define MAX_ATTEMPTS          12
/* A payee that took another payer stops advertising: rather than wait on
 * a connection that may not come, look again. */
#define CONNECT_TIMEOUT_MS    10000
/* The first fragment's Write Request and the AcquireWrite after it:
 * bounded below BlueZ's 30 s ATT timeout, so a stall that never
 * answers costs the payer 10 s, not GDBus's default 25 s. */
#define FIRST_WRITE_TIMEOUT_MS 10000
#define RESOLVE_TIMEOUT_S     20
/* BlueZ busy: the same step again after ASK_AGAIN_MS, at most this often
 * in one attempt. */
#define ASK_AGAIN_MS          500
#define CONNECT_ASKS          4
#define NOTIFY_ASKS           6
/* Back-off before attempt n + 1: n * BASE plus up to JITTER. */
#define BACKOFF_BASE_MS       400
#define BACKOFF_JITTER_MS     600

typedef enum
{
  CONNECT_STARTING,
  CONNECT_DISCOVERING,
  CONNECT_CONNECTING,
  CONNECT_RESOLVING,
  CONNECT_SUBSCRIBING,
  CONNECT_OPENING,
  CONNECT_BACKING_OFF,
  CONNECT_READY,
  CONNECT_FAILED,
} ConnectState;

/* How the link's fragments leave, once the link is up.  BlueZ's GATT
 * server keeps a Write Command that arrives while it acquires the
 * payee's write socket as a pointer into the ATT receive buffer
 * (gatt-database.c, pending_write_new), so a second Write Command
 * arriving before AcquireWrite returns overwrites the first: both reach
 * the payee with the second's bytes.  A payee whose rx characteristic
 * has the "write" flag therefore gets the first fragment as a Write
 * Request, answered only after its bluetoothd acquired, and the rest as
 * Write Commands; the payer's own bluetoothd refuses WriteValue while a
 * write socket is acquired, so the payer's AcquireWrite waits for that
 * answer too. */
typedef enum
{
  WRITE_BY_COMMAND, /* every fragment a Write Command: socket or WriteValue */
  WRITE_FIRST_REQUEST, /* the next fragment leaves as a Write Request */
  WRITE_AWAITING_RESPONSE, /* the payee's answer to it; the rest queues */
  WRITE_ACQUIRING, /* our AcquireWrite; the rest queues */
} WriteState;

typedef struct _ClientConn ClientConn;

/* What the attempt does next when its timer fires. */
typedef void (*ConnStep) (ClientConn *conn);

struct _ClientConn
{
  ConnectState state;
  GDBusConnection *bus;
  char *adapter;
  char *adapter_path;
  char *address;
  TallyGattTarget target;
  GMainContext *context;

  GTask *task; /* while connecting */
  GCancellable *calls; /* our D-Bus calls; cancelled on failure */
  gulong cancel_id;
  GSource *deadline;
  GSource *timer; /* runs timer_step: back-off, asking again, resolve timeout */
  ConnStep timer_step;
  GSource *cancel_idle;
  TallyBluezWatch props_watch;
  TallyBluezWatch added_watch;

  TallyGattScanner *scanner; /* finds the payee, each attempt afresh */

  guint attempt;
  GError *last_error;
  char *device;
  char *peer;
  gboolean connected;
  char *rx_path;
  char *tx_path;
  gboolean rx_write_request; /* rx has the "write" flag */
  WriteState write_state;
  guint att_mtu;
  int notify_fd;
  int write_fd;
  gboolean notify_fallback;
  guint connect_asks;
  guint notify_asks;

  TallyLink *link; /* once ready, borrowed: the link owns us */
  TallyGattConnectInfo info;
};

/* tally-gatt-client.c: the attempt's lifetime, timers, retries */
const char *gatt_client_state_to_string (ConnectState state);
void gatt_client_enter_state (ClientConn *conn, ConnectState state);
void gatt_client_clear_source (GSource **source);
void gatt_client_free (ClientConn *conn);
void gatt_client_stop_discovery (ClientConn *conn);
void gatt_client_release_device (ClientConn *conn);
void gatt_client_fail (ClientConn *conn, GError *error);
gboolean gatt_client_is_cancelled (const GError *error);
char *gatt_client_bluez_error_name (const GError *error);
void gatt_client_schedule (ClientConn *conn, guint ms, ConnStep step);
gboolean gatt_client_ask_again (ClientConn *conn,
                                const char *remote,
                                const char *busy_name,
                                guint *asks,
                                guint max,
                                ConnStep step);
void gatt_client_retry (ClientConn *conn, GError *error);

/* tally-gatt-client-connect.c: AcquireWrite / AcquireNotify */
void gatt_client_acquire (ClientConn *conn,
                          const char *path,
                          const char *method,
                          GAsyncReadyCallback done);
gboolean gatt_client_take_acquired (ClientConn *conn,
                                    GObject *source,
                                    GAsyncResult *result,
                                    int *fd_out,
                                    GError **error);

/* tally-gatt-client-write.c: the link's fragments towards the payee */
const char *gatt_client_write_state_to_string (WriteState state);
void gatt_client_enter_write_state (ClientConn *conn, WriteState state);
gboolean gatt_client_link_send (gpointer owner,
                                TallyLink *link,
                                const guint8 *data,
                                gsize len,
                                GError **error);

/* tally-gatt-client-discover.c: finding the payee (the scanner), BlueZ's signals */
void gatt_client_watch_bluez (ClientConn *conn);
void gatt_client_start_discovery (ClientConn *conn);

/* tally-gatt-client-connect.c: connecting, resolving, subscribing, the link */
void gatt_client_connect (ClientConn *conn);
void gatt_client_find_service (ClientConn *conn);

G_END_DECLS
