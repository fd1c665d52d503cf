/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The HTTP exchange with the issuer (tally-sync-private.h), shared by a
 * sync (tally-sync-run.c) and the account calls (tally-sync-account.c):
 * the issuer's URL, answers read up to a bound and never redirected, the
 * deadline of a whole call, and what a failed request or a refusal means
 * as a TALLY_ERROR.
 */
#include "tally-sync-private.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* Characters of an issuer's refusal message we repeat. */
#define MAX_MESSAGE_CHARS 200

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
