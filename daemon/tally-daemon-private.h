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
typedef struct _DaemonRequest DaemonRequest;

typedef struct
{
  TallyDaemon *daemon;
  DaemonRequest *request; /* whose payee session this is */
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
struct _DaemonRequest
{
  gint64 amount;
  char *memo;
  gint64 deadline; /* monotonic us: the request times out */
  guint32 uid;     /* who requested */
  guint payers;    /* credits the request may take */
  guint paid;      /* credits it took */
  char *address;   /* "ble:TAG" over BLE, else the listen address */
  char *uri;       /* tally://pay?... for @address, "" if it has none */
  gboolean ended;  /* daemon_end_request () is telling its handshakes */
  gboolean tagged; /* advertised over BLE under @tag */
  /* Fresh for every request: the name a payer's Hello gives it. */
  guint8 tag[TALLY_GATT_TAG_BYTES];
  DaemonPayment *object; /* the Payment1 of the payer to come */
  GPtrArray *handshakes; /* Handshake *, oldest first */
  GHashTable *nonces;    /* GBytes nonce a handshake offered -> NONCE_ISSUED or NONCE_CREDITED */
};

struct _TallyDaemon
{
  GMainContext *context; /* thread-default at creation: our sources' */
  TallyRegister *reg;
  TallyAcceptPolicy policy;
  char *max_amount; /* [policy] max_amount as written, NULL: none */
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
  TallyDBusNearby *nearby;   /* StartDiscovery: the stalls nearby */
  TallyAgentManager *agents;
  GQueue payments;    /* DaemonPayment *, oldest first */
  GPtrArray *requests; /* DaemonRequest *, open ones, oldest first */
  guint max_open_requests;
  GPtrArray *routers;  /* DaemonRouter *: links read for their Hello's tag */
  TallySync *sync;     /* [issuer] url set: reconciling online */
  guint sync_interval; /* automatic sync; 0: only when asked */

  /* Bluetooth LE */
  gboolean ble;
  char *adapter;
  GDBusConnection *system_bus;
  TallyGattServer *gatt;
  GCancellable *gatt_start;
};

/* tally-daemon.c */

/* The acceptance policy for a new payment: [policy] max_amount read in
 * the register's currency ("2500" for JPY).  FALSE when that text has more
 * decimals than the currency. */
gboolean daemon_policy (TallyDaemon *d, TallyAcceptPolicy *policy, GError **error);
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
/* No payer may connect to @r any more: the handshakes still going are
 * told @code, its advertising stops, and @r is freed. */
void daemon_end_request (TallyDaemon *d, DaemonRequest *r, TallyError code, const char *message);
/* Whether a payer is in a handshake with one of the open requests (an
 * open request alone, waiting for payers, is not). */
gboolean daemon_requests_in_handshake (TallyDaemon *d);
/* BlueZ refused the advertisement of @tag: the open request with that
 * tag ends with POLICY, its object failed. */
void daemon_request_not_advertised (TallyDaemon *d, const guint8 *tag, const GError *error);
/* The open request whose object @dp is, or NULL. */
DaemonRequest *daemon_request_of_object (TallyDaemon *d, DaemonPayment *dp);
/* A payer's link arrived, over the stream transport (@ble FALSE) or BLE:
 * with [payment] max_open_requests 1 it is the open request's, else its
 * Hello's tag picks one of those open when it arrives
 * (daemon_route_payer ()). */
void daemon_take_payer (TallyDaemon *d, TallyLink *link, gboolean ble);
/* Gives the payer on @link a handshake of @r.  With @channel (taken), the
 * payer was routed: @first is the Hello it already sent. */
void daemon_request_take_link (TallyDaemon *d,
                               DaemonRequest *r,
                               TallyLink *link,
                               TallyChannel *channel,
                               GBytes *first,
                               gboolean ble);

/* tally-daemon-route.c */

/* Reads @link's first message, a Hello naming one of the open requests
 * by its tag, and hands the link to that request; refuses it, in the
 * order of docs/protocol.md 4.2, with VERSION or MALFORMED (the Hello's
 * version, key, commitment or tag length), NOT_FOUND (no open request has
 * the tag) or REQUEST_UNNAMED (no tag while several are open), or with
 * TIMEOUT (no message in hello_timeout_seconds). */
void daemon_route_payer (TallyDaemon *d, TallyLink *link, gboolean ble);
/* Drops the links still being read for their Hello. */
void daemon_routers_free (TallyDaemon *d);

G_END_DECLS
