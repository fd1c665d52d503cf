/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reconciling online (tally-sync.h): the object, and when it syncs by
 * itself.  One sync is tally-sync-run.c, its HTTP exchange with the
 * issuer tally-sync-http.c, the account calls tally-sync-account.c.
 */
#include "tally-sync-private.h"

#include <string.h>

#include "tally-clock.h"

/* --- automatic sync --- */

guint64
tally_sync_deadline (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  const Tally__RegisterCertificate *cert = tally_register_get_certificate_info (reg);
  if (cert == NULL)
    return 0;
  guint64 deadline = cert->not_after;
  if (cert->limits != NULL && cert->limits->max_offline_seconds > 0) {
    guint64 last = tally_register_get_last_reconciliation (reg);
    guint64 window = cert->limits->max_offline_seconds;
    guint64 end = last > G_MAXUINT64 - window ? G_MAXUINT64 : last + window;
    /* Never reconciled: the window runs from the certificate's start. */
    if (last == 0)
      end = cert->not_before > G_MAXUINT64 - window ? G_MAXUINT64 : cert->not_before + window;
    deadline = MIN (deadline, end);
  }
  return deadline;
}

static void
clear_timer (TallySync *sync)
{
  if (sync->timer != NULL) {
    g_source_destroy (sync->timer);
    g_clear_pointer (&sync->timer, g_source_unref);
  }
}

static gboolean on_timer (gpointer user_data);

static void
arm_timer (TallySync *sync, guint seconds)
{
  clear_timer (sync);
  g_debug ("sync with %s: next in %u s", sync->url, seconds);
  sync->timer = seconds == 0 ? g_idle_source_new () : g_timeout_source_new_seconds (seconds);
  g_source_set_callback (sync->timer, on_timer, sync, NULL);
  g_source_set_static_name (sync->timer, "[tally] sync timer");
  g_source_attach (sync->timer, sync->context);
}

/* Seconds until the revocation list is stale (0: it is), or G_MAXUINT64
 * when its age decides nothing. */
static guint64
revocations_fresh_for (TallySync *sync, guint64 now)
{
  if (sync->revocations_max_age == 0)
    return G_MAXUINT64;
  guint64 since =
    MAX (tally_register_get_revocation_issued_at (sync->reg), sync->revocations_checked_at);
  guint64 stale_at = since > G_MAXUINT64 - sync->revocations_max_age
                       ? G_MAXUINT64
                       : since + sync->revocations_max_age;
  return stale_at > now ? stale_at - now : 0;
}

/* Seconds until the next automatic sync: the interval, sooner when the
 * deadline comes first or the revocation list grows stale; after failures
 * a back-off that doubles, with jitter so that a crowd of registers does
 * not return at once. */
static guint
next_delay (TallySync *sync)
{
  if (sync->failures > 0) {
    guint shift = MIN (sync->failures - 1, 16u);
    guint64 backoff = MIN ((guint64) TALLY_SYNC_BACKOFF_FIRST << shift, (guint64) sync->interval);
    return (guint) (backoff / 2 + g_random_int_range (0, (gint32) (backoff / 2) + 1));
  }
  guint delay = sync->interval;
  guint64 deadline = tally_sync_deadline (sync->reg);
  guint64 now = tally_now ();
  if (deadline != 0) {
    guint64 due = deadline > TALLY_SYNC_DEADLINE_MARGIN ? deadline - TALLY_SYNC_DEADLINE_MARGIN : 0;
    guint64 until = due > now ? due - now : 0;
    if (until < delay)
      delay = (guint) MAX (until, (guint64) TALLY_SYNC_DEADLINE_FLOOR);
  }
  /* A sync that succeeds makes the list fresh again, so this comes round
   * once per max age at most; failures back off above. */
  guint64 fresh = revocations_fresh_for (sync, now);
  if (fresh < delay) {
    g_debug ("sync with %s: the revocation list is stale in %" G_GUINT64_FORMAT " s", sync->url,
             fresh);
    delay = (guint) MAX (fresh, 1);
  }
  return delay;
}

void
sync_schedule_next (TallySync *sync)
{
  if (!sync->automatic)
    return;
  arm_timer (sync, next_delay (sync));
}

static void
on_auto_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  /* run_end () logged it and scheduled the next. */
  tally_sync_run_finish (NULL, result, NULL);
}

static gboolean
on_timer (gpointer user_data)
{
  TallySync *sync = user_data;
  g_clear_pointer (&sync->timer, g_source_unref);
  if (sync->run != NULL)
    return G_SOURCE_REMOVE;
  /* A payment waits the sync, unless the sync deadline is near: then
   * payments would stop for good, so the sync goes first. */
  guint64 deadline = tally_sync_deadline (sync->reg);
  gboolean due = deadline != 0 && tally_now () + TALLY_SYNC_DEADLINE_MARGIN >= deadline;
  if (!due && sync->callbacks != NULL && sync->callbacks->busy != NULL &&
      sync->callbacks->busy (sync, sync->user_data)) {
    g_debug ("sync with %s: a payment is in progress, later", sync->url);
    arm_timer (sync, TALLY_SYNC_BACKOFF_FIRST);
    return G_SOURCE_REMOVE;
  }
  if (sync->monitor != NULL && !sync->network_up) {
    g_debug ("sync with %s: no network, waiting for it", sync->url);
    return G_SOURCE_REMOVE;
  }
  tally_sync_run_async (sync, on_auto_done, NULL);
  return G_SOURCE_REMOVE;
}

static void
on_network_changed (GNetworkMonitor *monitor, gboolean available, gpointer user_data)
{
  TallySync *sync = user_data;
  gboolean was = sync->network_up;
  sync->network_up = available;
  if (!available || was)
    return;
  g_info ("sync with %s: the network is back", sync->url);
  /* Whatever the back-off said: now is the time to try. */
  sync->failures = 0;
  if (sync->run == NULL)
    arm_timer (sync, 0);
}

void
tally_sync_register_changed (TallySync *sync)
{
  g_return_if_fail (sync != NULL);
  const Tally__RegisterCertificate *cert = tally_register_get_certificate_info (sync->reg);
  guint32 made = tally_register_get_offline_payments (sync->reg);
  guint32 allowed = cert && cert->limits ? cert->limits->max_offline_payments : 0;
  guint32 due = (guint32) MAX (1, ((guint64) allowed * TALLY_SYNC_DUE_PERCENT) / 100);

  if (made < sync->due_at_payments)
    sync->due_at_payments = 0; /* reconciled since */
  if (!sync->automatic || allowed == 0 || made < due || made <= sync->due_at_payments)
    return;
  sync->due_at_payments = made;
  if (sync->run != NULL || sync->failures > 0)
    return; /* running, or backing off: that decides */
  g_info ("sync with %s: due, %u of %u offline payments made", sync->url, made, allowed);
  arm_timer (sync, 0);
}

void
tally_sync_set_revocations_max_age (TallySync *sync, guint64 seconds)
{
  g_return_if_fail (sync != NULL);
  sync->revocations_max_age = seconds;
}

void
tally_sync_start_automatic (TallySync *sync, guint interval_seconds)
{
  g_return_if_fail (sync != NULL && interval_seconds > 0);
  sync->interval = interval_seconds;
  if (sync->automatic)
    return;
  sync->automatic = TRUE;
  sync->monitor = g_object_ref (g_network_monitor_get_default ());
  sync->network_up = g_network_monitor_get_network_available (sync->monitor);
  sync->network_handler =
    g_signal_connect (sync->monitor, "network-changed", G_CALLBACK (on_network_changed), sync);
  g_message ("syncing with %s every %u s%s", sync->url, interval_seconds,
             sync->network_up ? "" : ", once the network is up");
  if (sync->run == NULL)
    arm_timer (sync, 0);
}

/* --- lifetime --- */

TallySync *
tally_sync_new (TallyRegister *reg,
                const char *state_dir,
                const char *url,
                const char *ca_file,
                gboolean allow_plain_http,
                GError **error)
{
  g_return_val_if_fail (reg != NULL && state_dir != NULL && url != NULL, NULL);

  if (!tally_sync_check_url (url, allow_plain_http, error))
    return NULL;
  g_autoptr (GTlsDatabase) database = NULL;
  if (ca_file != NULL) {
    g_autoptr (GError) local = NULL;
    database = g_tls_file_database_new (ca_file, &local);
    if (database == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "[issuer] ca_file: %s",
                   local->message);
      return NULL;
    }
  }

  TallySync *sync = g_new0 (TallySync, 1);
  sync->ref = 1;
  sync->context = g_main_context_ref_thread_default ();
  sync->reg = reg;
  sync->url = g_strdup (url);
  sync->state_dir = g_strdup (state_dir);
  sync->revocations_max_age = TALLY_SYNC_REVOCATIONS_MAX_AGE_DEFAULT;
  gsize len = strlen (sync->url);
  while (len > 0 && sync->url[len - 1] == '/')
    sync->url[--len] = '\0';
  sync->session = soup_session_new_with_options ("timeout", TALLY_SYNC_REQUEST_TIMEOUT,
                                                 "idle-timeout", 60, "user-agent", "tallyd ", NULL);
  if (database != NULL)
    soup_session_set_tls_database (sync->session, database);
  sync->state = TALLY_SYNC_STATE_IDLE;
  sync->request_timeout = TALLY_SYNC_DEFAULT_DEADLINE;
  return sync;
}

void
tally_sync_set_request_timeout (TallySync *sync, guint seconds)
{
  g_return_if_fail (sync != NULL && seconds > 0);
  sync->request_timeout = seconds;
}

TallySync *
tally_sync_ref (TallySync *sync)
{
  g_return_val_if_fail (sync != NULL, NULL);
  g_atomic_int_inc (&sync->ref);
  return sync;
}

void
tally_sync_unref (TallySync *sync)
{
  if (sync == NULL || !g_atomic_int_dec_and_test (&sync->ref))
    return;
  sync_run_detach (sync);
  sync_account_detach (sync);
  clear_timer (sync);
  if (sync->monitor != NULL) {
    g_signal_handler_disconnect (sync->monitor, sync->network_handler);
    g_object_unref (sync->monitor);
  }
  if (sync->destroy != NULL)
    sync->destroy (sync->user_data);
  soup_session_abort (sync->session);
  g_object_unref (sync->session);
  g_clear_error (&sync->last_error);
  g_free (sync->keys_etag);
  g_free (sync->revocations_etag);
  g_free (sync->url);
  g_free (sync->state_dir);
  g_main_context_unref (sync->context);
  g_free (sync);
}

void
tally_sync_set_callbacks (TallySync *sync,
                          const TallySyncCallbacks *callbacks,
                          gpointer user_data,
                          GDestroyNotify destroy)
{
  g_return_if_fail (sync != NULL);
  if (sync->destroy != NULL)
    sync->destroy (sync->user_data);
  sync->callbacks = callbacks;
  sync->user_data = user_data;
  sync->destroy = destroy;
}

TallySyncState
tally_sync_get_state (TallySync *sync)
{
  g_return_val_if_fail (sync != NULL, TALLY_SYNC_STATE_IDLE);
  return sync->state;
}

guint64
tally_sync_get_last_sync (TallySync *sync)
{
  g_return_val_if_fail (sync != NULL, 0);
  return sync->last_sync;
}

const GError *
tally_sync_get_last_error (TallySync *sync)
{
  g_return_val_if_fail (sync != NULL, NULL);
  return sync->last_error;
}

const char *
tally_sync_get_url (TallySync *sync)
{
  g_return_val_if_fail (sync != NULL, NULL);
  return sync->url;
}
