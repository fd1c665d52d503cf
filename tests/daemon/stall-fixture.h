/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the stall tests share (test-stall.c, test-stall-handshake.c): a
 * stall daemon on a UNIX socket exported on a private bus, honest payers
 * driven as payments in this process (each with its own register), and
 * hostile connections made by hand.
 */
#include <gio/gio.h>

#include "tally-daemon.h"
#include "tally-payment.h"
#include "test-util.h"

G_BEGIN_DECLS

#define AMOUNT          1250
#define PAYER_BALANCE   10000
#define TIMEOUT_SECONDS 30
/* Loops give up (and the test fails) after this long. */
#define WAIT_LIMIT_US (60 * G_USEC_PER_SEC)

/* The private bus, up for the whole test program (its main ()). */
extern GTestDBus *stall_test_bus;

typedef struct
{
  TallyRegister *reg;
  TallyPayment *payment;
  gboolean hold;       /* do not confirm until told */
  gboolean confirming; /* reached CONFIRMING */
  gboolean tagged;     /* its Hello names the request @tag */
  guint8 tag[TALLY_REQUEST_TAG_BYTES];
} Payer;

typedef struct
{
  TestIssuer issuer;
  char *dir;
  char *listen;
  char *socket_path;
  GDBusConnection *connection;
  TallyDaemon *stall;
  guint max_open_requests; /* [payment] max_open_requests; 0: the default */
} Fixture;

typedef struct
{
  GAsyncResult *result;
} Call;

typedef enum
{
  HOSTILE_SILENT, /* connects and sends nothing */
  HOSTILE_DRIP,   /* a byte now and then, never a whole Hello */
  HOSTILE_JUNK,   /* a length prefix and bytes that are no message */
} HostileKind;

typedef struct
{
  HostileKind kind;
  GSocket *socket;
  guint drip;
} Hostile;

/* Iterates the default main context until @done (@data), failing the test
 * after WAIT_LIMIT_US. */
void wait_until (gboolean (*done) (gpointer), gpointer data);

/* The stall: a register with no money and a certificate, a TallyDaemon
 * listening on @f->listen, exported on the private bus. */
void stall_start (Fixture *f, guint hello_timeout_seconds);
void fixture_set_up (Fixture *f, gconstpointer data);
void fixture_tear_down (Fixture *f, gconstpointer data);
gint64 stall_balance (Fixture *f);
/* Payment requests the stall's register stored (nonce rows). */
guint stall_nonces (Fixture *f);
/* RequestPayment of AMOUNT for @payers payers; its object path. */
char *stall_request (Fixture *f, guint payers);

/* A Call is done once its result came (store_result ()). */
gboolean call_done (gpointer data);
void store_result (GObject *source, GAsyncResult *result, gpointer user_data);
/* Calls the stall over the bus from a client connection of its own, the
 * stall serving meanwhile. */
GVariant *stall_call (Fixture *f,
                      const char *path,
                      const char *iface,
                      const char *method,
                      GVariant *params,
                      const GVariantType *reply_type);
/* A string property of the stall's Payment1 object at @path. */
char *object_string (Fixture *f, const char *path, const char *property);
char *object_state (Fixture *f, const char *path);
void wait_object_state (Fixture *f, const char *path, const char *state);

/* An honest payer with PAYER_BALANCE in a register of its own, named
 * @name; payer_start () pays the stall, confirming unless @p->hold. */
void payer_init (Fixture *f, Payer *p, const char *name);
void payer_start (Fixture *f, Payer *p);
void payer_clear (Payer *p);
gboolean payer_finished (gpointer data);
gboolean payer_confirming (gpointer data);
gboolean payer_confirming_or_finished (gpointer data);

/* A hostile connection to the stall, of @kind. */
void hostile_open (Fixture *f, Hostile *h, HostileKind kind);
/* TRUE once the stall closed @h's connection (EOF or reset). */
gboolean hostile_closed (gpointer data);
void hostile_clear (Hostile *h);

G_END_DECLS
