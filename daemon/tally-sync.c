/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reconciling online (tally-sync.h): one sync is a chain of requests on
 * the object's context, carried by a Run that outlives the object when it
 * goes mid-way (its callbacks then only finish their callers).
 */
#include "tally-sync-private.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "tally-clock.h"

/* Characters of an issuer's refusal message we repeat. */
#define MAX_MESSAGE_CHARS 200

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

/* --- URLs and answers --- */

gboolean
tally_sync_check_url (const char *url, gboolean allow_plain_http, GError **error)
{
  g_return_val_if_fail (url != NULL, FALSE);

  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  if (uri == NULL || g_uri_get_host (uri) == NULL || *g_uri_get_host (uri) == '\0') {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\" is not an http:// or https:// URL with a host", url);
    return FALSE;
  }
  const char *scheme = g_uri_get_scheme (uri);
  if (strcmp (scheme, "https") != 0 && strcmp (scheme, "http") != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\": the issuer is reached over https:// (or http://)", url);
    return FALSE;
  }
  if (g_uri_get_userinfo (uri) != NULL || g_uri_get_query (uri) != NULL ||
      g_uri_get_fragment (uri) != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "\"%s\": no user, query or fragment in the issuer URL", url);
    return FALSE;
  }
  if (strcmp (scheme, "http") == 0 && !allow_plain_http) {
    const char *host = g_uri_get_host (uri);
    g_autoptr (GInetAddress) address = g_inet_address_new_from_string (host);
    gboolean loopback = g_ascii_strcasecmp (host, "localhost") == 0 ||
                        (address != NULL && g_inet_address_get_is_loopback (address));
    if (!loopback) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                   "\"%s\": plain http only to a loopback address; use https:// or set "
                   "[issuer] allow_plain_http=true",
                   url);
      return FALSE;
    }
  }
  return TRUE;
}

/* What a failed request means to the register's owner. */
GError *
sync_transport_error (TallySync *sync, const char *what, const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "sync cancelled");
  if (error->domain == G_TLS_ERROR)
    return g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                        "TLS with the issuer at %s failed (%s): %s", sync->url, what,
                        error->message);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    return g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                        "the issuer at %s sent nothing on %s for %u seconds", sync->url, what,
                        TALLY_SYNC_REQUEST_TIMEOUT);
  return g_error_new (TALLY_ERROR, TALLY_ERROR_DISCONNECTED, "issuer unreachable at %s (%s): %s",
                      sync->url, what, error->message);
}

GError *
sync_deadline_error (TallySync *sync, const char *what)
{
  return g_error_new (TALLY_ERROR, TALLY_ERROR_TIMEOUT,
                      "the issuer at %s did not complete %s within %u seconds "
                      "([issuer] request_timeout_seconds)",
                      sync->url, what, sync->request_timeout);
}

GSource *
sync_deadline_source (TallySync *sync, GSourceFunc func, gpointer data)
{
  GSource *source = g_timeout_source_new_seconds (sync->request_timeout);
  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, "[tally] issuer deadline");
  g_source_attach (source, sync->context);
  return source;
}

/* An issuer's JSON error body (docs/issuer-api.md, Errors): whether it
 * names a Tally error "code"; @code and @message (cut short and escaped;
 * NULL: none) as far as it says. */
static gboolean
refusal_parse (GBytes *body, TallyError *code, char **message)
{
  gboolean tally = FALSE;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len = 0;
  const char *data = body ? g_bytes_get_data (body, &len) : NULL;

  *code = TALLY_ERROR_FAILED;
  *message = NULL;
  if (data != NULL && len > 0 && len <= 64 * 1024 &&
      json_parser_load_from_data (parser, data, (gssize) len, NULL) &&
      JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    JsonObject *o = json_node_get_object (json_parser_get_root (parser));
    JsonNode *c = json_object_get_member (o, "code");
    JsonNode *m = json_object_get_member (o, "message");
    if (c != NULL && JSON_NODE_HOLDS_VALUE (c) && json_node_get_value_type (c) == G_TYPE_INT64) {
      gint64 v = json_node_get_int (c);
      tally = v > 0 && v <= G_MAXUINT32;
      *code = tally ? tally_error_from_wire ((guint32) v) : TALLY_ERROR_FAILED;
    }
    if (m != NULL && JSON_NODE_HOLDS_VALUE (m) && json_node_get_value_type (m) == G_TYPE_STRING) {
      g_autofree char *cut = g_utf8_make_valid (json_node_get_string (m), -1);
      if (g_utf8_strlen (cut, -1) > MAX_MESSAGE_CHARS)
        *g_utf8_offset_to_pointer (cut, MAX_MESSAGE_CHARS) = '\0';
      *message = g_strescape (cut, NULL);
    }
  }
  return tally;
}

gboolean
sync_refusal_is_tally (guint status, GBytes *body)
{
  TallyError code;
  g_autofree char *message = NULL;
  return status >= 400 && status < 500 && status != SOUP_STATUS_REQUEST_TIMEOUT &&
         status != 429 /* Too Many Requests */ && refusal_parse (body, &code, &message);
}

/* The Tally error of an issuer's refusal: its JSON body's "code" and
 * "message", cut short and escaped. */
GError *
sync_refusal_error (TallySync *sync, const char *what, guint status, GBytes *body)
{
  TallyError code;
  g_autofree char *message = NULL;
  refusal_parse (body, &code, &message);
  return g_error_new (TALLY_ERROR, code, "the issuer at %s refused %s: HTTP %u %s%s%s", sync->url,
                      what, status, tally_error_to_string (code), message ? ": " : "",
                      message ? message : "");
}

/* --- bounded answers --- */

typedef struct
{
  GInputStream *stream;
  GByteArray *data;
  const char *what;
  char *url; /* the issuer's */
} Fetch;

static void
fetch_free (Fetch *fetch)
{
  g_clear_object (&fetch->stream);
  g_byte_array_unref (fetch->data);
  g_free (fetch->url);
  g_free (fetch);
}

static GError *
oversize_error (const char *what)
{
  return g_error_new (TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE,
                      "the issuer's answer to %s is over %u bytes", what,
                      TALLY_SYNC_MAX_ANSWER_BYTES);
}

/* A redirect is never followed: the request carries the account's token,
 * and the issuer is the URL configured, not one an answer names.  A 304
 * answers only our If-None-Match: without one it would skip a check. */
static GError *
redirect_error (Fetch *fetch, SoupMessage *msg, guint status)
{
  const char *location =
    soup_message_headers_get_one (soup_message_get_response_headers (msg), "Location");
  g_autofree char *clean = tally_text_sanitize (location ? location : "", MAX_MESSAGE_CHARS);
  g_autofree char *escaped = g_strescape (clean, NULL);
  if (status == SOUP_STATUS_NOT_MODIFIED)
    return g_error_new (TALLY_ERROR, TALLY_ERROR_POLICY,
                        "the issuer at %s answered %s \"not modified\" (HTTP 304) when "
                        "nothing was asked with If-None-Match",
                        fetch->url, fetch->what);
  return g_error_new (TALLY_ERROR, TALLY_ERROR_POLICY,
                      "the issuer at %s redirected %s to \"%s\" (HTTP %u); redirects are not "
                      "followed",
                      fetch->url, fetch->what, escaped, status);
}

static void
on_fetch_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Fetch *fetch = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GBytes) chunk =
    g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result, &error);

  if (chunk == NULL) {
    g_task_return_error (task, error);
    return;
  }
  if (g_bytes_get_size (chunk) == 0) {
    g_task_return_pointer (task, g_byte_array_free_to_bytes (g_byte_array_ref (fetch->data)),
                           (GDestroyNotify) g_bytes_unref);
    return;
  }
  if (fetch->data->len + g_bytes_get_size (chunk) > TALLY_SYNC_MAX_ANSWER_BYTES) {
    g_task_return_error (task, oversize_error (fetch->what));
    return;
  }
  g_byte_array_append (fetch->data, g_bytes_get_data (chunk, NULL),
                       (guint) g_bytes_get_size (chunk));
  g_input_stream_read_bytes_async (fetch->stream, 64 * 1024, G_PRIORITY_DEFAULT,
                                   g_task_get_cancellable (task), on_fetch_read,
                                   g_object_ref (task));
}

static void
on_fetch_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Fetch *fetch = g_task_get_task_data (task);
  GError *error = NULL;
  SoupMessage *msg = soup_session_get_async_result_message (SOUP_SESSION (source), result);
  fetch->stream = soup_session_send_finish (SOUP_SESSION (source), result, &error);

  if (fetch->stream == NULL) {
    g_task_return_error (task, error);
    return;
  }
  guint status = soup_message_get_status (msg);
  if (SOUP_STATUS_IS_REDIRECTION (status) &&
      !(status == SOUP_STATUS_NOT_MODIFIED &&
        soup_message_headers_get_one (soup_message_get_request_headers (msg), "If-None-Match") !=
          NULL)) {
    g_task_return_error (task, redirect_error (fetch, msg, status));
    return;
  }
  goffset length =
    soup_message_headers_get_content_length (soup_message_get_response_headers (msg));
  if (length > TALLY_SYNC_MAX_ANSWER_BYTES) {
    g_task_return_error (task, oversize_error (fetch->what));
    return;
  }
  g_input_stream_read_bytes_async (fetch->stream, 64 * 1024, G_PRIORITY_DEFAULT,
                                   g_task_get_cancellable (task), on_fetch_read,
                                   g_object_ref (task));
}

void
sync_fetch_async (TallySync *sync,
                  SoupMessage *msg,
                  const char *what,
                  GCancellable *cancellable,
                  GAsyncReadyCallback callback,
                  gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Fetch *fetch = g_new0 (Fetch, 1);
  fetch->data = g_byte_array_new ();
  fetch->what = what;
  fetch->url = g_strdup (sync->url);
  g_task_set_task_data (task, fetch, (GDestroyNotify) fetch_free);
  soup_message_add_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
  soup_session_send_async (sync->session, msg, G_PRIORITY_DEFAULT, cancellable, on_fetch_sent,
                           task);
}

GBytes *
sync_fetch_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
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

static void schedule_next (TallySync *sync);

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
    schedule_next (sync);
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

static void
schedule_next (TallySync *sync)
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
