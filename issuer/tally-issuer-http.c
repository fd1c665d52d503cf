/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The online issuer's HTTP server: listening, the bounds on every request
 * (body size from the headers, time from the request's start), the
 * error table and replies, and bearer credentials.  The endpoints are in
 * tally-issuer-http-api.c.
 */
#include "tally-issuer-http-private.h"

#include <string.h>

#include "tally-clock.h"
#include "tally-hex.h"

#define OPERATOR_HASH_LABEL "operator-token"
#define DEADLINE_KEY        "tally-issuer-http-deadline"
#define CONNECTION_KEY      "tally-issuer-http-connection"
#define API_PREFIX          "/v1/"

guint
tally_issuer_http_status_for_error (TallyError code)
{
  switch (code) {
  case TALLY_ERROR_INVALID_ARGUMENT:
  case TALLY_ERROR_MALFORMED:
  case TALLY_ERROR_INVALID_AMOUNT:
  case TALLY_ERROR_FRAME_TRUNCATED:
  case TALLY_ERROR_FRAME_UNKNOWN:
  case TALLY_ERROR_DECRYPT:
  case TALLY_ERROR_TRANSCRIPT:
  case TALLY_ERROR_VERSION: return SOUP_STATUS_BAD_REQUEST;
  case TALLY_ERROR_NOT_AUTHORIZED: return SOUP_STATUS_UNAUTHORIZED;
  case TALLY_ERROR_BAD_SIGNATURE:
  case TALLY_ERROR_WRONG_REGISTER:
  case TALLY_ERROR_POLICY:
  case TALLY_ERROR_REJECTED: return SOUP_STATUS_FORBIDDEN;
  case TALLY_ERROR_NOT_FOUND: return SOUP_STATUS_NOT_FOUND;
  case TALLY_ERROR_NOT_SUPPORTED: return SOUP_STATUS_NOT_IMPLEMENTED;
  case TALLY_ERROR_FRAME_TIMEOUT:
  case TALLY_ERROR_TIMEOUT: return SOUP_STATUS_REQUEST_TIMEOUT;
  case TALLY_ERROR_REVOKED:
  case TALLY_ERROR_REPLAY:
  case TALLY_ERROR_COUNTER_REUSED:
  case TALLY_ERROR_CHAIN_FORK:
  case TALLY_ERROR_INSUFFICIENT_FUNDS:
  case TALLY_ERROR_VOUCHER_REPLAY:
  case TALLY_ERROR_WRONG_STATE:
  case TALLY_ERROR_STALE_REVOCATION_LIST:
  case TALLY_ERROR_NO_CERTIFICATE:
  case TALLY_ERROR_EXISTS:
  case TALLY_ERROR_ALREADY_PAID:
  case TALLY_ERROR_REQUEST_UNNAMED:
  case TALLY_ERROR_INCOMPLETE: return SOUP_STATUS_CONFLICT;
  case TALLY_ERROR_FRAME_OVERSIZE: return SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
  case TALLY_ERROR_WRONG_CONTEXT:
  case TALLY_ERROR_WRONG_ISSUER:
  case TALLY_ERROR_CERT_EXPIRED:
  case TALLY_ERROR_CERT_NOT_YET_VALID:
  case TALLY_ERROR_WRONG_PAYEE:
  case TALLY_ERROR_WRONG_NONCE:
  case TALLY_ERROR_AMOUNT_MISMATCH:
  case TALLY_ERROR_CURRENCY_MISMATCH:
  case TALLY_ERROR_OVERFLOW:
  case TALLY_ERROR_LIMIT_PAYMENT:
  case TALLY_ERROR_LIMIT_BALANCE:
  case TALLY_ERROR_LIMIT_COUNT:
  case TALLY_ERROR_LIMIT_TIME:
  case TALLY_ERROR_EXPIRED: return SOUP_STATUS_UNPROCESSABLE_ENTITY;
  case TALLY_ERROR_CANCELLED:
  case TALLY_ERROR_DISCONNECTED: return SOUP_STATUS_SERVICE_UNAVAILABLE;
  case TALLY_ERROR_FAILED:
  case TALLY_ERROR_STORAGE: return SOUP_STATUS_INTERNAL_SERVER_ERROR;
  }
  return SOUP_STATUS_INTERNAL_SERVER_ERROR;
}

/* --- replies --- */

/* @text with control characters and backslashes escaped as C does
 * (g_strescape), but UTF-8 and quotes kept: messages name accounts taken
 * from the path, where "%0a" is a newline a log must not start. */
static char *
escape_message (const char *text)
{
  char keep[130];
  keep[0] = '"';
  for (guint i = 0; i < 128; i++)
    keep[1 + i] = (char) (0x80 + i);
  keep[129] = '\0';
  return g_strescape (text, keep);
}

void
tally_issuer_http_reply_error (SoupServerMessage *msg,
                               guint status,
                               TallyError code,
                               const char *raw_message)
{
  g_autofree char *message = escape_message (raw_message);
  const char *name = tally_error_to_string (code);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_add_string_value (b, name ? name : "Failed");
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, tally_error_to_name (code) ? tally_error_to_name (code)
                                                               : TALLY_ERROR_NAME_PREFIX "Failed");
  json_builder_set_member_name (b, "code");
  json_builder_add_int_value (b, code);
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, message);
  json_builder_end_object (b);

  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
  soup_message_headers_replace (headers, "X-Tally-Error", name ? name : "Failed");
  if (status == SOUP_STATUS_UNAUTHORIZED)
    soup_message_headers_replace (headers, "WWW-Authenticate", "Bearer realm=\"tally\"");
  g_debug ("%s %s: %u %s: %s", soup_server_message_get_method (msg),
           g_uri_get_path (soup_server_message_get_uri (msg)), status, name, message);
  tally_issuer_http_reply_json (msg, status, b);
}

void
tally_issuer_http_reply_gerror (SoupServerMessage *msg, const GError *error)
{
  TallyError code = tally_error_code (error);
  tally_issuer_http_reply_error (msg, tally_issuer_http_status_for_error (code), code,
                                 error->message);
}

void
tally_issuer_http_reply_bytes (SoupServerMessage *msg,
                               guint status,
                               const char *content_type,
                               GBytes *bytes)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, content_type, SOUP_MEMORY_COPY, data, len);
}

void
tally_issuer_http_reply_json (SoupServerMessage *msg, guint status, JsonBuilder *builder)
{
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  gsize len;
  g_autofree char *text = json_generator_to_data (gen, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, TALLY_HTTP_TYPE_JSON, SOUP_MEMORY_TAKE,
                                    g_steal_pointer (&text), len);
}

/* --- request bodies and credentials --- */

gboolean
tally_issuer_http_require_type (TallyHttpRequest *req, const char *type)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (req->msg);
  const char *got = soup_message_headers_get_content_type (headers, NULL);
  if (got != NULL && g_ascii_strcasecmp (got, type) == 0)
    return TRUE;
  g_autofree char *message =
    g_strdup_printf ("this endpoint takes %s, not %s", type, got ? got : "no content type");
  tally_issuer_http_reply_error (req->msg, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE,
                                 TALLY_ERROR_INVALID_ARGUMENT, message);
  return FALSE;
}

GBytes *
tally_issuer_http_body (TallyHttpRequest *req)
{
  SoupMessageBody *body = soup_server_message_get_request_body (req->msg);
  g_autoptr (GBytes) bytes = soup_message_body_flatten (body);
  if (bytes == NULL || g_bytes_get_size (bytes) == 0) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED,
                                   "the request body is empty");
    return NULL;
  }
  return g_steal_pointer (&bytes);
}

/*
 * json-glib parses nesting by recursion without a limit (a body of 100000
 * '[' overflows the stack), and its scanner takes more than JSON: strings
 * in single quotes, comments, hex numbers.  So the body is checked first,
 * outside double-quoted strings, for plain JSON tokens only (a quote or a
 * slash there cannot hide a bracket from this count), and for nesting no
 * deeper than any request needs.
 */
/* One number at data[*i], as JSON has it:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, with at most 16 digits
 * before any point: json-glib wraps longer integers around (it reads
 * -18446744073709541616 as 10000), and no amount needs more.  *i is left
 * on the number's last byte. */
static gboolean
json_number_check (const char *data, gsize len, gsize *i, GError **error)
{
  gsize p = *i;
  if (data[p] == '-')
    p++;
  gsize digits = p;
  while (p < len && g_ascii_isdigit (data[p]))
    p++;
  digits = p - digits;
  gboolean ok = digits > 0 && !(digits > 1 && data[p - digits] == '0');
  if (ok && p < len && data[p] == '.') {
    gsize start = ++p;
    while (p < len && g_ascii_isdigit (data[p]))
      p++;
    ok = p > start;
  }
  if (ok && p < len && (data[p] == 'e' || data[p] == 'E')) {
    p++;
    if (p < len && (data[p] == '+' || data[p] == '-'))
      p++;
    gsize start = p;
    while (p < len && g_ascii_isdigit (data[p]))
      p++;
    ok = p > start;
  }
  if (!ok) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the body is not JSON: byte %zu starts no JSON number", *i);
    return FALSE;
  }
  if (digits > TALLY_ISSUER_HTTP_JSON_MAX_DIGITS) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "a number in the body has more than %u digits", TALLY_ISSUER_HTTP_JSON_MAX_DIGITS);
    return FALSE;
  }
  *i = p - 1;
  return TRUE;
}

static gboolean
json_body_check (const char *data, gsize len, GError **error)
{
  guint depth = 0;
  gboolean in_string = FALSE, escaped = FALSE;
  for (gsize i = 0; i < len; i++) {
    char ch = data[i];
    if (in_string) {
      if (escaped)
        escaped = FALSE;
      else if (ch == '\\')
        escaped = TRUE;
      else if (ch == '"')
        in_string = FALSE;
      continue;
    }
    if (ch == '"') {
      in_string = TRUE;
    } else if (ch == '-' || g_ascii_isdigit (ch)) {
      if (!json_number_check (data, len, &i, error))
        return FALSE;
    } else if (ch == '[' || ch == '{') {
      if (++depth > TALLY_ISSUER_HTTP_JSON_MAX_DEPTH) {
        g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                     "the JSON body nests deeper than %u", TALLY_ISSUER_HTTP_JSON_MAX_DEPTH);
        return FALSE;
      }
    } else if (ch == ']' || ch == '}') {
      depth = depth > 0 ? depth - 1 : 0;
    } else if (strchr (" \t\r\n,:aefilnrstu", ch) == NULL || ch == '\0') {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "the body is not JSON: byte %zu is not part of a JSON token", i);
      return FALSE;
    }
  }
  return TRUE;
}

JsonObject *
tally_issuer_http_body_object (TallyHttpRequest *req)
{
  if (!tally_issuer_http_require_type (req, TALLY_HTTP_TYPE_JSON))
    return NULL;
  g_autoptr (GBytes) bytes = tally_issuer_http_body (req);
  if (bytes == NULL)
    return NULL;
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) error = NULL;
  if (g_utf8_validate (data, (gssize) len, NULL) && !json_body_check (data, len, &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return NULL;
  }
  if (!g_utf8_validate (data, (gssize) len, NULL) ||
      !json_parser_load_from_data (parser, data, (gssize) len, &error) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED,
                                   error ? error->message : "the body is not a JSON object");
    return NULL;
  }
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* The 32 bytes of "Authorization: Bearer <64 hex digits>". */
static gboolean
bearer_token (TallyHttpRequest *req, guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES])
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (req->msg);
  const char *auth = soup_message_headers_get_one (headers, "Authorization");
  if (auth == NULL || g_ascii_strncasecmp (auth, "Bearer ", 7) != 0 ||
      !tally_hex_decode (auth + 7, token, TALLY_ACCOUNT_TOKEN_BYTES, NULL)) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED,
                                   "this endpoint needs \"Authorization: Bearer\" and a token of "
                                   "64 hex digits");
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_issuer_http_check_account (TallyHttpRequest *req, const char *account)
{
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  if (!bearer_token (req, token))
    return FALSE;
  g_autoptr (GError) error = NULL;
  gboolean ok =
    tally_issuer_account_token_check (req->http->issuer, account, token, sizeof token, &error);
  sodium_memzero (token, sizeof token);
  if (!ok)
    tally_issuer_http_reply_gerror (req->msg, error);
  return ok;
}

gboolean
tally_issuer_http_check_operator (TallyHttpRequest *req)
{
  if (!req->http->has_operator) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_NOT_AUTHORIZED,
                                   "operator endpoints are off: no operator token is configured");
    return FALSE;
  }
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  if (!bearer_token (req, token))
    return FALSE;
  guint8 hash[TALLY_HASH_BYTES];
  tally_hash (OPERATOR_HASH_LABEL, token, sizeof token, hash);
  sodium_memzero (token, sizeof token);
  if (sodium_memcmp (hash, req->http->operator_hash, sizeof hash) != 0) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED,
                                   "not the operator's token");
    return FALSE;
  }
  return TRUE;
}

guint64
tally_issuer_http_now (TallyIssuerHttp *http)
{
  return http->clock ? http->clock (http->clock_data) : tally_now ();
}

/* --- dispatch --- */

/* Splits the raw path below API_PREFIX into unescaped segments; FALSE for
 * an empty segment, an escaped '/' or NUL, or a segment that is not UTF-8. */
static gboolean
split_path (const char *path, TallyHttpRequest *req)
{
  if (!g_str_has_prefix (path, API_PREFIX))
    return FALSE;
  g_auto (GStrv) raw = g_strsplit (path + strlen (API_PREFIX), "/", 8);
  guint n = g_strv_length (raw);
  req->segments = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++) {
    if (*raw[i] == '\0' || strstr (raw[i], "%00") != NULL)
      return FALSE;
    req->segments[i] = g_uri_unescape_string (raw[i], "/");
    req->n_segments = i + 1;
    if (req->segments[i] == NULL || !g_utf8_validate (req->segments[i], -1, NULL))
      return FALSE;
  }
  return n > 0;
}

static void
handle_request (SoupServer *server,
                SoupServerMessage *msg,
                const char *path,
                GHashTable *query,
                gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  TallyHttpRequest req = { .http = http, .msg = msg };

  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Cache-Control",
                                "no-store");
  if (http->worker != NULL)
    soup_message_headers_replace (soup_server_message_get_response_headers (msg), "X-Tally-Worker",
                                  http->worker);
  if (!split_path (path, &req))
    tally_issuer_http_reply_error (msg, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND,
                                   "no such endpoint (see docs/issuer-api.md)");
  else
    tally_issuer_http_route (&req);
  g_strfreev (req.segments);
  g_info ("%s %s %s: %u", soup_server_message_get_remote_host (msg),
          soup_server_message_get_method (msg), path, soup_server_message_get_status (msg));
}

/* libsoup reads a request's body even after an early refusal (it answers
 * once the body is in, or at once to "Expect: 100-continue"): the body is
 * then dropped as it arrives instead of kept, the request's deadline bounds
 * how long that takes, and the connection closes after the answer. */
static void
refuse_unkept (SoupServerMessage *msg, guint status, const char *message)
{
  TallyError code = status == SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE ? TALLY_ERROR_FRAME_OVERSIZE
                                                                   : TALLY_ERROR_INVALID_ARGUMENT;
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection",
                                "close");
  tally_issuer_http_reply_error (msg, status, code, message);
}

/* Runs once the headers are in, before the body is read: a body that is
 * too large, or whose size is not announced, is refused and never kept. */
static void
handle_early (SoupServer *server,
              SoupServerMessage *msg,
              const char *path,
              GHashTable *query,
              gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  switch (soup_message_headers_get_encoding (headers)) {
  case SOUP_ENCODING_NONE: return;
  case SOUP_ENCODING_CONTENT_LENGTH: break;
  case SOUP_ENCODING_UNRECOGNIZED:
  case SOUP_ENCODING_EOF:
  case SOUP_ENCODING_CHUNKED:
  case SOUP_ENCODING_BYTERANGES:
    refuse_unkept (msg, SOUP_STATUS_LENGTH_REQUIRED, "a request body needs a Content-Length");
    return;
  }
  /* Every JSON request is small; only protobuf bundles may be large. */
  const char *type = soup_message_headers_get_content_type (headers, NULL);
  gsize max = type != NULL && g_ascii_strcasecmp (type, TALLY_HTTP_TYPE_JSON) == 0
                ? MIN (http->max_body, TALLY_ISSUER_HTTP_JSON_MAX_BODY)
                : http->max_body;
  goffset length = soup_message_headers_get_content_length (headers);
  if (length < 0 || (guint64) length > max) {
    g_autofree char *message =
      g_strdup_printf ("the body of %" G_GINT64_FORMAT " bytes is larger than %" G_GSIZE_FORMAT,
                       (gint64) length, max);
    refuse_unkept (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, message);
  }
}

/* What each accepted connection keeps, on its remote address object:
 * libsoup keeps that very object for the connection's life and hands it
 * back from soup_server_message_get_remote_address(), while
 * soup_server_message_get_socket() is NULL for a stream it was given. */
typedef struct
{
  GSocket *socket;
  guint *open; /* the server's count of open connections (a GRcBox) */
} TallyHttpConnection;

static void
connection_free (gpointer data)
{
  TallyHttpConnection *c = data;
  g_assert (*c->open > 0);
  (*c->open)--;
  g_rc_box_release (c->open);
  g_object_unref (c->socket);
  g_free (c);
}

static gboolean
deadline_passed (gpointer user_data)
{
  SoupServerMessage *msg = user_data;
  GSocketAddress *remote = soup_server_message_get_remote_address (msg);
  TallyHttpConnection *c = remote ? g_object_get_data (G_OBJECT (remote), CONNECTION_KEY) : NULL;
  g_message ("closing the connection of %s: its request took too long",
             soup_server_message_get_remote_host (msg));
  /* Shut down, not closed: libsoup's pending read wakes up to an end of
   * stream on a descriptor that is still valid, and drops the connection. */
  if (c != NULL)
    g_socket_shutdown (c->socket, TRUE, TRUE, NULL);
  return G_SOURCE_REMOVE;
}

static void
destroy_source (gpointer source)
{
  g_source_destroy (source);
  g_source_unref (source);
}

/* Every request gets a deadline from its start; the source dies with the
 * message, so it never sees a freed one. */
static void
request_started (SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  GSource *source = g_timeout_source_new_seconds (http->timeout_seconds);
  g_source_set_callback (source, deadline_passed, msg, NULL);
  g_source_attach (source, http->context);
  g_object_set_data_full (G_OBJECT (msg), DEADLINE_KEY, source, destroy_source);
}

static void
request_done (SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
  g_object_set_data (G_OBJECT (msg), DEADLINE_KEY, NULL);
}

/*
 * Connections are accepted here rather than by libsoup so that each socket
 * gets an inactivity timeout from its first moment: a connection that never
 * sends a byte never starts a request, so no request deadline would ever
 * close it.  Beyond [http] max_connections open at once, a new connection
 * is closed at once.  TLS is layered on here too; libsoup sees the plain
 * stream.
 */
static gboolean
incoming (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  GSocket *socket = g_socket_connection_get_socket (conn);
  g_autoptr (GError) error = NULL;

  if (*http->open >= http->max_connections) {
    if (!http->full)
      g_message ("refusing connections: %u are open ([http] max_connections)", *http->open);
    http->full = TRUE;
    g_socket_close (socket, NULL);
    return TRUE;
  }
  http->full = FALSE;

  g_autoptr (GSocketAddress) local = g_socket_get_local_address (socket, &error);
  g_autoptr (GSocketAddress) remote = local ? g_socket_get_remote_address (socket, &error) : NULL;
  g_autoptr (GIOStream) stream = NULL;

  g_socket_set_timeout (socket, http->timeout_seconds);
  if (remote != NULL)
    stream = http->tls
               ? G_IO_STREAM (g_tls_server_connection_new (G_IO_STREAM (conn), http->tls, &error))
               : g_object_ref (G_IO_STREAM (conn));
  if (stream == NULL) {
    g_message ("dropping a connection: %s", error->message);
    return TRUE;
  }
  TallyHttpConnection *c = g_new0 (TallyHttpConnection, 1);
  c->socket = g_object_ref (socket);
  c->open = g_rc_box_acquire (http->open);
  (*c->open)++;
  g_object_set_data_full (G_OBJECT (remote), CONNECTION_KEY, c, connection_free);
  if (!soup_server_accept_iostream (http->server, stream, local, remote, &error))
    g_message ("dropping a connection: %s", error->message);
  return TRUE;
}

/* --- object --- */

TallyIssuerHttp *
tally_issuer_http_new (TallyIssuer *issuer, GTlsCertificate *tls_certificate)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (tls_certificate == NULL || G_IS_TLS_CERTIFICATE (tls_certificate), NULL);

  TallyIssuerHttp *http = g_new0 (TallyIssuerHttp, 1);
  http->ref_count = 1;
  http->issuer = issuer;
  http->context = g_main_context_ref_thread_default ();
  http->max_body = TALLY_ISSUER_HTTP_MAX_BODY_DEFAULT;
  http->timeout_seconds = TALLY_ISSUER_HTTP_REQUEST_TIMEOUT_DEFAULT;
  http->max_connections = TALLY_ISSUER_HTTP_MAX_CONNECTIONS_DEFAULT;
  http->open = g_rc_box_new0 (guint);
  /* tally-issuer certify's defaults. */
  tally__limits__init (&http->enrol_limits);
  http->enrol_limits.max_payment = 5000;
  http->enrol_limits.balance_cap = 50000;
  http->enrol_limits.max_offline_payments = 100;
  http->enrol_limits.max_offline_seconds = 72 * 3600;
  http->enrol_validity = 7 * 86400;
  /* Path segments are unescaped one by one, so an escaped '/' in an
   * account name cannot make a path of its own. */
  http->server = soup_server_new ("raw-paths", TRUE, "server-header", "tally-issuerd", NULL);
  http->tls = tls_certificate ? g_object_ref (tls_certificate) : NULL;
  http->service = g_socket_service_new ();
  g_signal_connect (http->service, "incoming", G_CALLBACK (incoming), http);
  soup_server_add_early_handler (http->server, NULL, handle_early, http, NULL);
  soup_server_add_handler (http->server, NULL, handle_request, http, NULL);
  g_signal_connect (http->server, "request-started", G_CALLBACK (request_started), http);
  g_signal_connect (http->server, "request-finished", G_CALLBACK (request_done), http);
  g_signal_connect (http->server, "request-aborted", G_CALLBACK (request_done), http);
  return http;
}

TallyIssuerHttp *
tally_issuer_http_ref (TallyIssuerHttp *http)
{
  g_return_val_if_fail (http != NULL, NULL);
  g_atomic_int_inc (&http->ref_count);
  return http;
}

void
tally_issuer_http_unref (TallyIssuerHttp *http)
{
  if (http == NULL || !g_atomic_int_dec_and_test (&http->ref_count))
    return;
  g_socket_service_stop (http->service);
  g_socket_listener_close (G_SOCKET_LISTENER (http->service));
  g_signal_handlers_disconnect_by_data (http->service, http);
  g_clear_object (&http->service);
  soup_server_disconnect (http->server);
  g_signal_handlers_disconnect_by_data (http->server, http);
  g_clear_object (&http->server);
  g_clear_object (&http->tls);
  g_clear_object (&http->bound);
  if (http->clock_destroy != NULL)
    http->clock_destroy (http->clock_data);
  if (http->refund_source != NULL) {
    g_source_destroy (http->refund_source);
    g_source_unref (http->refund_source);
  }
  if (http->accept_source != NULL) {
    g_source_destroy (http->accept_source);
    g_source_unref (http->accept_source);
  }
  g_main_context_unref (http->context);
  g_rc_box_release (http->open);
  sodium_memzero (http->operator_hash, sizeof http->operator_hash);
  g_free (http->worker);
  g_free (http);
}

void
tally_issuer_http_set_max_body_bytes (TallyIssuerHttp *http, gsize max_body_bytes)
{
  g_return_if_fail (http != NULL);
  g_return_if_fail (max_body_bytes > 0);
  http->max_body = max_body_bytes;
}

void
tally_issuer_http_set_request_timeout (TallyIssuerHttp *http, guint seconds)
{
  g_return_if_fail (http != NULL);
  g_return_if_fail (seconds > 0);
  http->timeout_seconds = seconds;
}

void
tally_issuer_http_set_max_connections (TallyIssuerHttp *http, guint max_connections)
{
  g_return_if_fail (http != NULL);
  g_return_if_fail (max_connections > 0);
  http->max_connections = max_connections;
}

void
tally_issuer_http_set_operator_token (TallyIssuerHttp *http,
                                      const guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES])
{
  g_return_if_fail (http != NULL);
  g_return_if_fail (token != NULL);
  tally_hash (OPERATOR_HASH_LABEL, token, TALLY_ACCOUNT_TOKEN_BYTES, http->operator_hash);
  http->has_operator = TRUE;
}

void
tally_issuer_http_set_enrol_limits (TallyIssuerHttp *http,
                                    const Tally__Limits *limits,
                                    guint64 validity_seconds)
{
  g_return_if_fail (http != NULL);
  g_return_if_fail (limits != NULL);
  g_return_if_fail (validity_seconds > 0);
  tally__limits__init (&http->enrol_limits);
  http->enrol_limits.max_payment = limits->max_payment;
  http->enrol_limits.balance_cap = limits->balance_cap;
  http->enrol_limits.max_offline_payments = limits->max_offline_payments;
  http->enrol_limits.max_offline_seconds = limits->max_offline_seconds;
  http->enrol_validity = validity_seconds;
}

void
tally_issuer_http_set_clock (TallyIssuerHttp *http,
                             guint64 (*clock) (gpointer user_data),
                             gpointer user_data,
                             GDestroyNotify destroy)
{
  g_return_if_fail (http != NULL);
  if (http->clock_destroy != NULL)
    http->clock_destroy (http->clock_data);
  http->clock = clock;
  http->clock_data = user_data;
  http->clock_destroy = destroy;
}

static gboolean
refund_tick (gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  g_autoptr (GError) error = NULL;
  TallyRefundReport r;
  if (!tally_issuer_refund_lost (http->issuer, tally_issuer_http_now (http), &r, &error))
    g_warning ("refunding lost registers: %s", error->message);
  else if (r.refunded > 0 || r.failed > 0)
    g_message ("refunded %u lost register(s), %" G_GINT64_FORMAT " in all; %u failed", r.refunded,
               r.refunded_amount, r.failed);
  return G_SOURCE_CONTINUE;
}

void
tally_issuer_http_set_refund_interval (TallyIssuerHttp *http, guint seconds)
{
  g_return_if_fail (http != NULL);
  if (http->refund_source != NULL) {
    g_source_destroy (http->refund_source);
    g_clear_pointer (&http->refund_source, g_source_unref);
  }
  if (seconds == 0)
    return;
  /* The source holds no reference: unref destroys it first. */
  http->refund_source = g_timeout_source_new_seconds (seconds);
  g_source_set_callback (http->refund_source, refund_tick, http, NULL);
  g_source_set_name (http->refund_source, "tally-issuer lost-register refund");
  g_source_attach (http->refund_source, http->context);
}

/* A connection on a socket shared with other processes; the accept fails
 * with WOULD_BLOCK when another process took it first. */
static gboolean
shared_ready (GSocket *socket, GIOCondition condition, gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) client = g_socket_accept (socket, NULL, &error);
  if (client == NULL) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
      g_message ("cannot accept a connection: %s", error->message);
    return G_SOURCE_CONTINUE;
  }
  g_autoptr (GSocketConnection) conn = g_socket_connection_factory_create_connection (client);
  incoming (http->service, conn, NULL, http);
  return G_SOURCE_CONTINUE;
}

/* Without TLS, only a loopback address unless @allow_plain. */
static gboolean
check_plain (TallyIssuerHttp *http, GSocketAddress *address, gboolean allow_plain, GError **error)
{
  if (http->tls != NULL || allow_plain)
    return TRUE;
  gboolean loopback = G_IS_INET_SOCKET_ADDRESS (address) &&
                      g_inet_address_get_is_loopback (
                        g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
  if (!loopback)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "plain HTTP is served only on a loopback address; configure "
                 "tls_certificate and tls_key, or allow_plain_http=true");
  return loopback;
}

/*
 * Every answer closes its connection: libsoup keeps a connection for the
 * next request only while the server has a listener of its own
 * (soup-server.c, request_finished), and ours accepts connections itself
 * (incoming ()).  That is on purpose with libsoup 3.2: a kept connection
 * the client closes while idle is never released there (fixed in 3.3), so
 * it would stay counted against [http] max_connections for good, and a
 * few hundred such closes would lock every device out.  A sync pays one
 * TCP (and TLS) handshake per request instead (docs/bench.md).
 */
static void
listening (TallyIssuerHttp *http, GSocketAddress *bound)
{
  if (http->bound == NULL && G_IS_INET_SOCKET_ADDRESS (bound))
    http->bound = G_INET_SOCKET_ADDRESS (g_object_ref (bound));
  g_clear_object (&bound);
  g_socket_service_start (http->service);
  g_autofree char *url = tally_issuer_http_get_url (http);
  g_message ("listening on %s", url);
}

gboolean
tally_issuer_http_listen (TallyIssuerHttp *http,
                          GSocketAddress *address,
                          gboolean allow_plain,
                          GError **error)
{
  g_return_val_if_fail (http != NULL, FALSE);
  g_return_val_if_fail (G_IS_SOCKET_ADDRESS (address), FALSE);

  if (!check_plain (http, address, allow_plain, error))
    return FALSE;
  g_autoptr (GError) local = NULL;
  g_autoptr (GSocketAddress) bound = NULL;
  /* GIO's default backlog of 10 overflows when a few dozen devices sync at
   * once, and each dropped connect waits out the kernel's 1 s and 3 s SYN
   * retries (bench-sync); queue as many as may be open, as the shared
   * socket of [http] workers does. */
  g_socket_listener_set_backlog (G_SOCKET_LISTENER (http->service),
                                 (int) MIN (http->max_connections, 4096));
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (http->service), address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &bound,
                                      &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot listen: %s", local->message);
    return FALSE;
  }
  listening (http, g_steal_pointer (&bound));
  return TRUE;
}

gboolean
tally_issuer_http_listen_socket (TallyIssuerHttp *http,
                                 GSocket *socket,
                                 gboolean allow_plain,
                                 GError **error)
{
  g_return_val_if_fail (http != NULL, FALSE);
  g_return_val_if_fail (G_IS_SOCKET (socket), FALSE);

  g_return_val_if_fail (http->accept_source == NULL, FALSE);

  g_autoptr (GError) local = NULL;
  g_autoptr (GSocketAddress) address = g_socket_get_local_address (socket, &local);
  if (address == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot listen on the socket: %s",
                 local->message);
    return FALSE;
  }
  if (!check_plain (http, address, allow_plain, error))
    return FALSE;
  /* Every process serving the socket is woken for each connection, and
   * all but one find none to accept: the accept must not block then. */
  g_socket_set_blocking (socket, FALSE);
  http->accept_source = g_socket_create_source (socket, G_IO_IN, NULL);
  g_source_set_callback (http->accept_source, (GSourceFunc) (void (*) (void)) shared_ready, http,
                         NULL);
  g_source_attach (http->accept_source, http->context);
  listening (http, g_steal_pointer (&address));
  return TRUE;
}

void
tally_issuer_http_set_worker (TallyIssuerHttp *http, const char *name)
{
  g_return_if_fail (http != NULL);
  g_free (http->worker);
  http->worker = g_strdup (name);
}

guint16
tally_issuer_http_get_port (TallyIssuerHttp *http)
{
  g_return_val_if_fail (http != NULL, 0);
  return http->bound ? g_inet_socket_address_get_port (http->bound) : 0;
}

char *
tally_issuer_http_get_url (TallyIssuerHttp *http)
{
  g_return_val_if_fail (http != NULL, NULL);
  if (http->bound == NULL)
    return NULL;
  GInetAddress *ip = g_inet_socket_address_get_address (http->bound);
  g_autofree char *host = g_inet_address_to_string (ip);
  gboolean v6 = g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV6;
  return g_strdup_printf ("%s://%s%s%s:%u/", http->tls ? "https" : "http", v6 ? "[" : "", host,
                          v6 ? "]" : "", g_inet_socket_address_get_port (http->bound));
}
