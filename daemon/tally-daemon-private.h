/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What tally-daemon.c and tally-daemon-request.c share: the daemon, its
 * payment objects, and the open request with its handshakes.  Not for
 * other files.
 */

#include "tally-daemon.h"
#include "tally-dbus-agent.h"
#include "tally-dbus-auth.h"
#include "tally-dbus-objects.h"
#include "tally-dbus-payment.h"
#include "tally-dbus-register.h"
#include "tally-gatt-address.h"
#include "tally-gatt-server.h"
#include "tally-link.h"
#include "tally-payment.h"
#include "tally-stream.h"
#include "tally-sync.h"

G_BEGIN_DECLS

typedef struct
{
  TallyDaemon *daemon;
  TallyPayment *payment;
  TallyDBusPayment *object;
  char *path;
  char *sender;    /* Pay () caller, whose agent confirms */
  guint32 uid;     /* of the caller of Pay () or RequestPayment () */
  GSource *linger; /* finished: removal from the bus */
  GCancellable *agent_call;
  GCancellable *ble_connect; /* payer: BLE discovery and connection */
  gboolean ble;              /* its link is BLE */
  gint64 ble_started;        /* monotonic us: discovery began (payer) or link made (payee) */
  gint64 ble_connected;      /* monotonic us: connected (payer) */
} DaemonPayment;

/* One payee session of a request: a payer's link in its handshake, or the
 * placeholder the request shows while no payer is connected. */
typedef struct
{
  TallyDaemon *daemon;
  TallyPayment *payment;
  GSource *step_deadline;           /* until the payer's next message, up to its Pay */
  TallyPaymentState deadline_state; /* the state @step_deadline is for */
  gboolean ble;
  gint64 started; /* monotonic us: link taken */
} Handshake;

/* One RequestPayment.  Every payer that connects gets its own handshake
 * (payee session and nonce); the request belongs to the first valid Pay,
 * up to @payers of them.  Payment1 objects: @object shows one handshake,
 * the oldest in progress, or the placeholder while none is; it finishes
 * with the handshake whose Pay is credited (docs/dbus-api.md). */
typedef struct
{
  gint64 amount;
  char *memo;
  gint64 deadline; /* monotonic us: the request times out */
  guint32 uid;     /* who requested */
  guint payers;    /* credits the request may take */
  guint paid;      /* credits it took */
  char *address;   /* "ble:TAG" over BLE, else the listen address */
  char *uri;       /* tally://pay?... for @address, "" if it has none */
  gboolean tagged;
  guint8 tag[TALLY_GATT_TAG_BYTES];
  DaemonPayment *object; /* the Payment1 of the payer to come */
  GPtrArray *handshakes; /* Handshake *, oldest first */
  GHashTable *nonces;    /* GBytes nonce a handshake offered -> NONCE_ISSUED or NONCE_CREDITED */
} DaemonRequest;

struct _TallyDaemon
{
  GMainContext *context; /* thread-default at creation: our sources' */
  TallyRegister *reg;
  TallyAcceptPolicy policy;
  guint timeout_seconds;
  guint keep_finished_seconds;
  TallyPayTargets targets;
  guint hello_timeout_seconds;
  guint last_object; /* object paths: /org/tally/payment/N */
  TallyStreamListener *listener;
  GDBusConnection *connection;
  TallyAuthorization authorization;
  TallyDBusAuth *auth; /* decides every method call; outlives the objects */
  TallyDBusRegister *register_object;
  TallyDBusObjects *objects; /* ObjectManager at /: the register and the payments */
  TallyAgentManager *agents;
  GQueue payments;        /* DaemonPayment *, oldest first */
  DaemonRequest *request; /* the open request payers connect to */
  TallySync *sync;        /* [issuer] url set: reconciling online */
  guint sync_interval;    /* automatic sync; 0: only when asked */

  /* Bluetooth LE */
  gboolean ble;
  char *adapter;
  GDBusConnection *system_bus;
  TallyGattServer *gatt;
  GCancellable *gatt_start;
};

/* tally-daemon.c */

/* Exports @payment (taken) and starts tracking it.  A payer's payment
 * reports to its DaemonPayment; a payee's to its handshake. */
DaemonPayment *daemon_add_payment (TallyDaemon *d,
                                   TallyPayment *payment,
                                   const char *sender,
                                   guint32 uid,
                                   GError **error);
/* Shows what @dp's payment is now; once it finished, it stays on the bus
 * for keep_finished_seconds. */
void daemon_payment_update (DaemonPayment *dp);

/* tally-daemon-request.c */

void daemon_request_free (DaemonRequest *request);
/* No payer may connect any more: the handshakes still going are told
 * @code, and advertising stops. */
void daemon_end_request (TallyDaemon *d, TallyError code, const char *message);
/* A payer's link arrived, over the stream transport (@ble FALSE) or BLE. */
void daemon_take_payer (TallyDaemon *d, TallyLink *link, gboolean ble);

G_END_DECLS
