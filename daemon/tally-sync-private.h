/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the parts of TallySync share, and no other file: tally-sync.c (the
 * object, and when it syncs by itself), tally-sync-run.c (one sync),
 * tally-sync-http.c (the HTTP exchange with the issuer) and
 * tally-sync-account.c (enrolment and top-ups). */

#include <libsoup/soup.h>

#include "tally-sync.h"

G_BEGIN_DECLS

/* Seconds one read or write of a request may wait (libsoup's "timeout" is
 * per I/O operation: an answer that trickles in never reaches it); the
 * whole sync or account call is bounded by request_timeout. */
#define TALLY_SYNC_REQUEST_TIMEOUT 30
#define TALLY_SYNC_DEFAULT_DEADLINE 120
/* The longest answer we read: a result carries every receipt of a bundle. */
#define TALLY_SYNC_MAX_ANSWER_BYTES (4 * 1024 * 1024)

typedef struct _Run Run;

struct _TallySync
{
  gint ref;
  GMainContext *context;
  TallyRegister *reg; /* borrowed */
  char *url;          /* without the trailing '/' */
  SoupSession *session;
  TallySyncState state;
  guint64 last_sync;
  GError *last_error;
  char *keys_etag;
  char *revocations_etag;
  Run *run;        /* the sync in progress, or NULL */
  char *state_dir; /* the account file's folder */
  GList *calls;    /* AccountCall *: enrolments and top-ups in progress */
  guint request_timeout; /* seconds a run or an account call may take */

  const TallySyncCallbacks *callbacks;
  gpointer user_data;
  GDestroyNotify destroy;

  /* automatic */
  gboolean automatic;
  guint interval;
  guint failures; /* automatic syncs failed in a row */
  GSource *timer;
  GNetworkMonitor *monitor;
  gulong network_handler;
  gboolean network_up;
  guint32 due_at_payments; /* offline payments when a sync last fell due */
  guint64 revocations_max_age;    /* seconds; 0: the list's age decides nothing */
  guint64 revocations_checked_at; /* when a sync last fetched the list */
};

/* tally-sync-http.c: a failed request as a TALLY_ERROR: DISCONNECTED,
 * TIMEOUT, CANCELLED. */
GError *sync_transport_error (TallySync *sync, const char *what, const GError *error);
/* The TIMEOUT of a run or account call over sync->request_timeout. */
GError *sync_deadline_error (TallySync *sync, const char *what);
/* A source on @sync's context calling @func after request_timeout. */
GSource *sync_deadline_source (TallySync *sync, GSourceFunc func, gpointer data);
/* Whether the issuer refused for good: a 4xx (but 408 or 429) with a
 * Tally JSON error body, an answer only the issuer gives.  A proxy's page,
 * a throttle or a timeout proves nothing. */
gboolean sync_refusal_is_tally (guint status, GBytes *body);
/* An issuer's refusal: the Tally error its JSON body names. */
GError *sync_refusal_error (TallySync *sync, const char *what, guint status, GBytes *body);

/* Sends @msg and reads its answer, at most TALLY_SYNC_MAX_ANSWER_BYTES
 * (FRAME_OVERSIZE beyond, naming @what, a static string); the status is
 * @msg's. */
void sync_fetch_async (TallySync *sync,
                       SoupMessage *msg,
                       const char *what,
                       GCancellable *cancellable,
                       GAsyncReadyCallback callback,
                       gpointer user_data);
GBytes *sync_fetch_finish (GAsyncResult *result, GError **error);

/* tally-sync.c: with the automatic sync on, arms the timer for the next
 * sync (a run calls it when it ends). */
void sync_schedule_next (TallySync *sync);

/* tally-sync-run.c: the sync in progress learns that @sync is gone, and
 * its callers get CANCELLED. */
void sync_run_detach (TallySync *sync);

/* tally-sync-account.c: the account calls still going learn that @sync
 * is gone, and finish with CANCELLED. */
void sync_account_detach (TallySync *sync);

G_END_DECLS
