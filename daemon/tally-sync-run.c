/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One sync (tally-sync.h): a chain of requests on the object's context,
 * carried by a Run that outlives the object when it goes mid-way (its
 * callbacks then only finish their callers).  The sync state follows the
 * run: SYNCING while one goes, then IDLE or FAILED.  The requests go
 * through tally-sync-http.c.
 */
#include "tally-sync-private.h"

#include <string.h>

#include "tally-clock.h"

struct _Run
{
  TallySync *sync; /* NULL once the object is gone */
  GCancellable *cancellable;
  GPtrArray *waiters;  /* GTask * */
  GBytes *revocations; /* fetched, stored once the result is applied */
  char *revocations_etag;
  GBytes *bundle; /* uploaded, the same bytes for every attempt */
  guint attempt;
  GSource *retry;
  GSource *deadline;  /* request_timeout after the start */
  gboolean timed_out; /* the deadline cancelled it */
};

const char *
tally_sync_state_to_string (TallySyncState state)
{
  switch (state) {
  case TALLY_SYNC_STATE_IDLE: return "idle";
  case TALLY_SYNC_STATE_SYNCING: return "syncing";
  case TALLY_SYNC_STATE_FAILED: return "failed";
  }
  return NULL;
}

static void
enter_state (TallySync *sync, TallySyncState state)
{
  if (sync->state == state)
    return;
  g_info ("sync with %s: %s -> %s", sync->url, tally_sync_state_to_string (sync->state),
          tally_sync_state_to_string (state));
  sync->state = state;
}

/* Tells the owner; it may drop its reference. */
static void
emit_changed (TallySync *sync)
{
  if (sync->callbacks == NULL || sync->callbacks->changed == NULL)
    return;
  tally_sync_ref (sync);
  sync->callbacks->changed (sync, sync->user_data);
  tally_sync_unref (sync);
}

/* --- one run --- */

static void
run_free (Run *run)
{
  if (run->retry != NULL) {
    g_source_destroy (run->retry);
    g_source_unref (run->retry);
  }
  if (run->deadline != NULL) {
    g_source_destroy (run->deadline);
    g_source_unref (run->deadline);
  }
  g_object_unref (run->cancellable);
  g_ptr_array_unref (run->waiters);
  g_clear_pointer (&run->revocations, g_bytes_unref);
  g_clear_pointer (&run->bundle, g_bytes_unref);
  g_free (run->revocations_etag);
  g_free (run);
}

/* Ends @run with @error (taken; NULL: success) and tells its callers. */
static void
run_end (Run *run, GError *error)
{
  TallySync *sync = run->sync;
  g_autoptr (GPtrArray) waiters = g_ptr_array_ref (run->waiters);

  if (sync != NULL) {
    sync->run = NULL;
    g_clear_error (&sync->last_error);
    if (error == NULL) {
      sync->last_sync = tally_now ();
      /* Every sync that succeeds fetched the revocation list (step 5). */
      sync->revocations_checked_at = sync->last_sync;
      sync->failures = 0;
      g_message ("synced with %s", sync->url);
      enter_state (sync, TALLY_SYNC_STATE_IDLE);
    } else {
      sync->last_error = g_error_copy (error);
      sync->failures++;
      g_message ("sync with %s failed: %s", sync->url, error->message);
      enter_state (sync, TALLY_SYNC_STATE_FAILED);
    }
    tally_sync_ref (sync);
    sync_schedule_next (sync);
  }
  run_free (run);
  for (guint i = 0; i < waiters->len; i++) {
    GTask *task = waiters->pdata[i];
    if (error == NULL)
      g_task_return_boolean (task, TRUE);
    else
      g_task_return_error (task, g_error_copy (error));
  }
  g_clear_error (&error);
  if (sync != NULL) {
    emit_changed (sync);
    tally_sync_unref (sync);
  }
}

typedef void (*AnswerFunc) (Run *run, guint status, SoupMessage *msg, GBytes *body);

typedef struct
{
  Run *run;
  const char *what;
  AnswerFunc func;
  SoupMessage *msg;
} Request;

static void
on_answer (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Request *req = user_data;
  Run *run = req->run;
  g_autoptr (SoupMessage) msg = req->msg;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = sync_fetch_finish (result, &error);
  AnswerFunc func = req->func;
  const char *what = req->what;
  g_free (req);

  if (run->sync == NULL) {
    run_end (run, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "sync cancelled"));
    return;
  }
  if (body == NULL && run->timed_out) {
    run_end (run, sync_deadline_error (run->sync, "the sync"));
    return;
  }
  if (body == NULL && error->domain == TALLY_ERROR) {
    run_end (run, g_steal_pointer (&error));
    return;
  }
  if (body == NULL) {
    func (run, 0, msg, NULL);
    if (run->sync != NULL && run->retry == NULL)
      run_end (run, sync_transport_error (run->sync, what, error));
    return;
  }
  func (run, soup_message_get_status (msg), msg, body);
}

/* Sends a request; @func gets the answer, or status 0 and no body when
 * the connection failed (it may then retry; else the run ends with the
 * transport error). */
static void
run_send (Run *run,
          const char *method,
          const char *path,
          const char *etag,
          GBytes *body,
          const char *what,
          AnswerFunc func)
{
  TallySync *sync = run->sync;
  g_autofree char *url = g_strconcat (sync->url, path, NULL);
  Request *req = g_new0 (Request, 1);
  req->run = run;
  req->what = what;
  req->func = func;
  req->msg = soup_message_new (method, url);
  SoupMessageHeaders *headers = soup_message_get_request_headers (req->msg);
  soup_message_headers_replace (headers, "Accept", "application/x-protobuf");
  if (etag != NULL)
    soup_message_headers_replace (headers, "If-None-Match", etag);
  if (body != NULL)
    soup_message_set_request_body_from_bytes (req->msg, "application/x-protobuf", body);
  g_debug ("sync: %s %s", method, url);
  sync_fetch_async (sync, req->msg, what, run->cancellable, on_answer, req);
}

static gboolean
expect_protobuf (Run *run, guint status, SoupMessage *msg, GBytes *body, const char *what)
{
  if (status == SOUP_STATUS_OK)
    return TRUE;
  run_end (run, sync_refusal_error (run->sync, what, status, body));
  return FALSE;
}

static void on_uploaded (Run *run, guint status, SoupMessage *msg, GBytes *body);

static void
run_upload (Run *run)
{
  run->attempt++;
  run_send (run, "POST", "/v1/reconcile", NULL, run->bundle, "the bundle", on_uploaded);
}

static gboolean
on_retry (gpointer user_data)
{
  Run *run = user_data;
  g_clear_pointer (&run->retry, g_source_unref);
  run_upload (run);
  return G_SOURCE_REMOVE;
}

static void
on_uploaded (Run *run, guint status, SoupMessage *msg, GBytes *body)
{
  TallySync *sync = run->sync;
  g_autoptr (GError) error = NULL;

  if (status == 0) {
    /* The issuer may hold the bundle already; the same bytes again get
     * the same result, booked once. */
    if (run->attempt < TALLY_SYNC_UPLOAD_ATTEMPTS &&
        !g_cancellable_is_cancelled (run->cancellable)) {
      g_info ("sync with %s: upload %u failed, sending the same bundle again", sync->url,
              run->attempt);
      run->retry = g_timeout_source_new (250 * run->attempt);
      g_source_set_callback (run->retry, on_retry, run, NULL);
      g_source_set_static_name (run->retry, "[tally] sync upload retry");
      g_source_attach (run->retry, sync->context);
    }
    return;
  }
  if (!expect_protobuf (run, status, msg, body, "the bundle"))
    return;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  if (!tally_register_apply_result (sync->reg, data != NULL ? data : (const guint8 *) "", len,
                                    tally_now (), &error)) {
    g_prefix_error (&error, "the issuer's answer at %s: ", sync->url);
    run_end (run, g_steal_pointer (&error));
    return;
  }
  g_info ("sync with %s: result applied%s, balance %" G_GINT64_FORMAT, sync->url,
          g_strcmp0 (soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                   "X-Tally-Repeated"),
                     "yes") == 0
            ? " (the issuer had the bundle already)"
            : "",
          tally_register_get_balance (sync->reg));

  /* Newer than the result's, or the same: stored only if newer. */
  if (run->revocations != NULL) {
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (
      g_bytes_get_data (run->revocations, NULL), g_bytes_get_size (run->revocations), &error);
    if (env == NULL || !tally_register_update_revocation_list (sync->reg, env, &error)) {
      g_prefix_error (&error, "the issuer's revocation list at %s: ", sync->url);
      run_end (run, g_steal_pointer (&error));
      return;
    }
    g_free (sync->revocations_etag);
    sync->revocations_etag = g_steal_pointer (&run->revocations_etag);
  }
  run_end (run, NULL);
}

/* Step 2: the bundle, exported as Register1.ExportBundle does. */
static void
run_export (Run *run)
{
  g_autoptr (GError) error = NULL;
  run->bundle = tally_register_export_bundle (run->sync->reg, tally_now (), &error);
  if (run->bundle == NULL) {
    run_end (run, g_steal_pointer (&error));
    return;
  }
  run_upload (run);
}

static void
on_revocations (Run *run, guint status, SoupMessage *msg, GBytes *body)
{
  TallySync *sync = run->sync;
  g_autoptr (GError) error = NULL;

  if (status == 0)
    return;
  if (status == SOUP_STATUS_NOT_MODIFIED) {
    run_export (run);
    return;
  }
  if (!expect_protobuf (run, status, msg, body, "the revocation list"))
    return;
  /* Checked now, stored once the result is in: nothing changes before
   * the issuer has our bundle. */
  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (body, NULL), g_bytes_get_size (body), &error);
  g_autoptr (Tally__RevocationList) list =
    env ? tally_revocation_list_verify (env, tally_register_get_issuer_key (sync->reg), &error)
        : NULL;
  if (list == NULL) {
    g_prefix_error (&error, "the issuer's revocation list at %s: ", sync->url);
    run_end (run, g_steal_pointer (&error));
    return;
  }
  run->revocations = g_bytes_ref (body);
  run->revocations_etag =
    g_strdup (soup_message_headers_get_one (soup_message_get_response_headers (msg), "ETag"));
  run_export (run);
}

static void
on_keys (Run *run, guint status, SoupMessage *msg, GBytes *body)
{
  TallySync *sync = run->sync;
  g_autoptr (GError) error = NULL;

  if (status == 0)
    return;
  if (status != SOUP_STATUS_NOT_MODIFIED) {
    if (!expect_protobuf (run, status, msg, body, "the key set"))
      return;
    g_autoptr (Tally__SignedEnvelope) env =
      tally_envelope_decode (g_bytes_get_data (body, NULL), g_bytes_get_size (body), &error);
    g_autoptr (Tally__IssuerKeySet) ks = env ? tally_issuer_key_set_verify (env, &error) : NULL;
    if (ks == NULL) {
      g_prefix_error (&error, "the issuer's key set at %s: ", sync->url);
      run_end (run, g_steal_pointer (&error));
      return;
    }
    /* Anyone can sign a key set: its name is a stranger's text, quoted
     * only because tally_issuer_key_set_verify () unpacked it with
     * tally_text_check () (no control, bidi or invalid UTF-8). */
    if (memcmp (ks->public_key.data, tally_register_get_issuer_key (sync->reg),
                TALLY_PUBLIC_KEY_BYTES) != 0) {
      run_end (run, g_error_new (TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER,
                                 "%s is the issuer \"%s\", not the one this register trusts",
                                 sync->url, ks->name));
      return;
    }
    g_free (sync->keys_etag);
    sync->keys_etag =
      g_strdup (soup_message_headers_get_one (soup_message_get_response_headers (msg), "ETag"));
  }
  run_send (run, "GET", "/v1/revocations", sync->revocations_etag, NULL, "the revocation list",
            on_revocations);
}

/* The run took too long: its request is cancelled and ends it with
 * TIMEOUT; waiting for a retry, it ends now. */
static gboolean
on_run_deadline (gpointer user_data)
{
  Run *run = user_data;
  g_clear_pointer (&run->deadline, g_source_unref);
  run->timed_out = TRUE;
  if (run->retry != NULL && run->sync != NULL) {
    g_source_destroy (run->retry);
    g_clear_pointer (&run->retry, g_source_unref);
    run_end (run, sync_deadline_error (run->sync, "the sync"));
    return G_SOURCE_REMOVE;
  }
  g_cancellable_cancel (run->cancellable);
  return G_SOURCE_REMOVE;
}

static void
run_start (TallySync *sync)
{
  Run *run = g_new0 (Run, 1);
  run->sync = sync;
  run->cancellable = g_cancellable_new ();
  run->waiters = g_ptr_array_new_with_free_func (g_object_unref);
  sync->run = run;
  g_clear_error (&sync->last_error);
  enter_state (sync, TALLY_SYNC_STATE_SYNCING);

  if (!tally_register_has_issuer (sync->reg)) {
    run_end (run, g_error_new (TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                               "the register trusts no issuer yet (tallyctl issuer FILE)"));
    return;
  }
  run->deadline = sync_deadline_source (sync, on_run_deadline, run);
  run_send (run, "GET", "/v1/keys", sync->keys_etag, NULL, "the key set", on_keys);
  /* SyncState shows "syncing". */
  emit_changed (sync);
}

void
tally_sync_run_async (TallySync *sync, GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (sync != NULL);

  GTask *task = g_task_new (NULL, NULL, callback, user_data);
  g_task_set_source_tag (task, tally_sync_run_async);
  if (sync->run == NULL) {
    /* The run may end at once (no issuer). */
    run_start (sync);
    if (sync->run == NULL) {
      if (sync->last_error != NULL)
        g_task_return_error (task, g_error_copy (sync->last_error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  }
  g_ptr_array_add (sync->run->waiters, task);
}

gboolean
tally_sync_run_finish (TallySync *sync, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
sync_run_detach (TallySync *sync)
{
  if (sync->run != NULL) {
    /* Its request finishes with CANCELLED and frees it. */
    sync->run->sync = NULL;
    g_cancellable_cancel (sync->run->cancellable);
    if (sync->run->retry != NULL) {
      g_source_destroy (sync->run->retry);
      g_clear_pointer (&sync->run->retry, g_source_unref);
      run_end (sync->run, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "sync cancelled"));
    }
  }
}
