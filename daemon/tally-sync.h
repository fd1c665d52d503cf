/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Reconciling online: the register reaches the issuer's HTTP API
 * (docs/issuer-api.md) by itself, through a libsoup 3 session on the
 * context it was made on.
 *
 * One sync, in this order, so that a failure before the upload changes
 * nothing in the register:
 *   1. GET /v1/keys (ETag): the issuer must be the one the register trusts
 *      (WRONG_ISSUER otherwise);
 *   2. the bundle, exported as Register1.ExportBundle does (which commits
 *      the horizon: from then on the issuer may hold it);
 *   3. POST /v1/reconcile, the same bytes again when the connection drops
 *      (the issuer answers a bundle it saw with the same result and books
 *      nothing twice);
 *   4. the result, checked and applied as Register1.ApplyResult does;
 *   5. GET /v1/revocations (ETag), stored when newer.
 *
 * Failures are TALLY_ERRORs: DISCONNECTED when the issuer cannot be
 * reached (or TLS fails: the message says which), TIMEOUT, the Tally
 * error the issuer's refusal names, BAD_SIGNATURE and friends for an
 * answer the register refuses.
 *
 * Automatic sync (tally_sync_start_automatic ()): at once, then every
 * interval, before the certificate's sync deadline, once most of its
 * offline payments are made (tally_sync_register_changed ()), and when its
 * revocation list grows stale (tally_sync_set_revocations_max_age ()); after a failure
 * with exponential back-off and jitter; at once when GNetworkMonitor says
 * the network came back.  Not while the busy callback says a payment is
 * in progress, unless the sync deadline is TALLY_SYNC_DEADLINE_MARGIN away
 * or less: then the sync goes first, or payments would stop for good.
 */

#include <gio/gio.h>

#include "tally-register.h"

G_BEGIN_DECLS

typedef enum
{
  TALLY_SYNC_STATE_IDLE,
  TALLY_SYNC_STATE_SYNCING,
  TALLY_SYNC_STATE_FAILED,
} TallySyncState;

const char *tally_sync_state_to_string (TallySyncState state);

/* Connection attempts one upload of a bundle gets. */
#define TALLY_SYNC_UPLOAD_ATTEMPTS 4
/* First back-off after a failed automatic sync, in seconds; it doubles. */
#define TALLY_SYNC_BACKOFF_FIRST 5
/* An automatic sync falls due this long before the sync deadline. */
#define TALLY_SYNC_DEADLINE_MARGIN 600
/* But not more often than this, in seconds, when the deadline is near or
 * past and the issuer renews nothing. */
#define TALLY_SYNC_DEADLINE_FLOOR 60

typedef struct _TallySync TallySync;

typedef struct
{
  /* The sync state, last sync or the register changed. */
  void (*changed) (TallySync *sync, gpointer user_data);
  /* TRUE while a payment is in progress: an automatic sync waits. */
  gboolean (*busy) (TallySync *sync, gpointer user_data);
} TallySyncCallbacks;

/* Checks an issuer URL: http or https, a host, no user, query or
 * fragment; plain http only to a loopback host unless @allow_plain_http.
 * INVALID_ARGUMENT or POLICY. */
gboolean tally_sync_check_url (const char *url, gboolean allow_plain_http, GError **error);

/* @reg is borrowed and must outlive the object; @state_dir keeps the
 * account of tally_sync_enroll_async () (TALLY_SYNC_ACCOUNT_FILE, 0600).
 * @ca_file (may be NULL): PEM certificates trusted for https instead of
 * the system's. */
TallySync *tally_sync_new (TallyRegister *reg,
                           const char *state_dir,
                           const char *url,
                           const char *ca_file,
                           gboolean allow_plain_http,
                           GError **error);
/* The longest a sync, an enrolment or a top-up may take, every request
 * and retry included ([issuer] request_timeout_seconds); then it is
 * cancelled and ends with TIMEOUT.  Default: 120. */
void tally_sync_set_request_timeout (TallySync *sync, guint seconds);
TallySync *tally_sync_ref (TallySync *sync);
/* The last unref cancels a sync in progress (its callers get CANCELLED). */
void tally_sync_unref (TallySync *sync);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySync, tally_sync_unref)

void tally_sync_set_callbacks (TallySync *sync,
                               const TallySyncCallbacks *callbacks,
                               gpointer user_data,
                               GDestroyNotify destroy);

/* Syncs now; a call while a sync is in progress gets that sync's outcome. */
void tally_sync_run_async (TallySync *sync, GAsyncReadyCallback callback, gpointer user_data);
gboolean tally_sync_run_finish (TallySync *sync, GAsyncResult *result, GError **error);

/* Syncs at once, then every @interval_seconds (and before the sync
 * deadline), backs off after failures, and syncs when the network comes
 * back. */
void tally_sync_start_automatic (TallySync *sync, guint interval_seconds);

/* With the automatic sync on, a sync falls due when the revocation list is
 * @seconds old: since the newer of its issued_at and the last sync that
 * fetched it (the issuer signs a new list only when it changes, so a sync
 * that finds the same list makes it fresh again).  0: never for this
 * reason.  Takes effect from the next scheduling. */
#define TALLY_SYNC_REVOCATIONS_MAX_AGE_DEFAULT (24 * 3600)
void tally_sync_set_revocations_max_age (TallySync *sync, guint64 seconds);

/* --- the account (docs/issuer-api.md) --- */

/* In the state directory: the account enrolled with and its token. */
#define TALLY_SYNC_ACCOUNT_FILE "issuer-account"

/* Enrols the register with @account: its proof of possession
 * (tally_register_sign_enrolment ()) and @token (the account's bearer
 * token, 64 hex digits) to POST /v1/accounts/NAME/registers, and installs
 * the certificate that comes back.  Then keeps @account and @token in
 * TALLY_SYNC_ACCOUNT_FILE for tally_sync_topup_async ().  The token's
 * copies are zeroed once used; the caller zeroes its own. */
void tally_sync_enroll_async (TallySync *sync,
                              const char *account,
                              const char *token,
                              GAsyncReadyCallback callback,
                              gpointer user_data);
gboolean tally_sync_enroll_finish (TallySync *sync, GAsyncResult *result, GError **error);

/* Buys a voucher of @amount (minor units) from the enrolled account and
 * loads it.  The purchase carries a random request id, the same for every
 * retry after a dropped connection: the account pays once.  WRONG_STATE
 * before an enrolment. */
void tally_sync_topup_async (TallySync *sync,
                             gint64 amount,
                             GAsyncReadyCallback callback,
                             gpointer user_data);
gboolean tally_sync_topup_finish (TallySync *sync, GAsyncResult *result, GError **error);

/* The register changed (a payment): with the automatic sync on, a sync
 * falls due at once when the register has made TALLY_SYNC_DUE_PERCENT of
 * the offline payments its certificate allows (each further payment makes
 * it due again while it has not synced). */
#define TALLY_SYNC_DUE_PERCENT 75
void tally_sync_register_changed (TallySync *sync);

TallySyncState tally_sync_get_state (TallySync *sync);
/* Seconds since the epoch of the last sync that succeeded; 0: none yet. */
guint64 tally_sync_get_last_sync (TallySync *sync);
/* Why the last sync failed; NULL after a success. */
const GError *tally_sync_get_last_error (TallySync *sync);
const char *tally_sync_get_url (TallySync *sync);

/* When @reg must reconcile by: the end of its certificate's offline window
 * (last reconciliation + max_offline_seconds), or the certificate's
 * expiry if sooner; 0 without a certificate. */
guint64 tally_sync_deadline (TallyRegister *reg);

G_END_DECLS
