/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Private to tally-issuer-http.c (the server, its limits, replies and
 * credentials) and tally-issuer-http-api.c (the endpoints).
 */

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "tally-issuer-http.h"

G_BEGIN_DECLS

#define TALLY_HTTP_TYPE_PROTOBUF "application/x-protobuf"
#define TALLY_HTTP_TYPE_JSON     "application/json"

/* JSON requests are a few short members: bodies and nesting are bounded
 * well below what json-glib or memory would mind. */
#define TALLY_ISSUER_HTTP_JSON_MAX_BODY  4096
#define TALLY_ISSUER_HTTP_JSON_MAX_DEPTH 16
/* Digits before any point: below 2^63, so json-glib reads them exactly. */
#define TALLY_ISSUER_HTTP_JSON_MAX_DIGITS 16

struct _TallyIssuerHttp
{
  gint ref_count;
  TallyIssuer *issuer; /* borrowed */
  SoupServer *server;
  GSocketService *service;   /* accepts, then hands each connection to server */
  GTlsCertificate *tls;      /* NULL: plain HTTP */
  GInetSocketAddress *bound; /* the first address listened on */
  GMainContext *context;
  gsize max_body;
  guint timeout_seconds;
  guint max_connections;
  guint *open;   /* connections open now; a GRcBox each connection also holds */
  gboolean full; /* max_connections was reached (logged once) */
  gboolean has_operator;
  guint8 operator_hash[TALLY_HASH_BYTES];
  Tally__Limits enrol_limits;
  guint64 enrol_validity;
  guint64 (*clock) (gpointer user_data);
  gpointer clock_data;
  GDestroyNotify clock_destroy;
  GSource *refund_source; /* the periodic lost-register refund, or NULL */
  char *worker;           /* X-Tally-Worker, or NULL */
  GSource *accept_source; /* accepts on a socket shared with other processes */
};

/* One request being answered: the path below "/v1/", split and unescaped. */
typedef struct
{
  TallyIssuerHttp *http;
  SoupServerMessage *msg;
  char **segments;
  guint n_segments;
} TallyHttpRequest;

G_GNUC_INTERNAL
guint64 tally_issuer_http_now (TallyIssuerHttp *http);

G_GNUC_INTERNAL
void tally_issuer_http_reply_error (SoupServerMessage *msg,
                                    guint status,
                                    TallyError code,
                                    const char *message);
/* The status comes from tally_issuer_http_status_for_error (). */
G_GNUC_INTERNAL
void tally_issuer_http_reply_gerror (SoupServerMessage *msg, const GError *error);
G_GNUC_INTERNAL
void tally_issuer_http_reply_bytes (SoupServerMessage *msg,
                                    guint status,
                                    const char *content_type,
                                    GBytes *bytes);
/* Takes @builder's root. */
G_GNUC_INTERNAL
void tally_issuer_http_reply_json (SoupServerMessage *msg, guint status, JsonBuilder *builder);

/* FALSE (and 415 sent) unless the request body is of @type. */
G_GNUC_INTERNAL
gboolean tally_issuer_http_require_type (TallyHttpRequest *req, const char *type);
/* The request body; NULL when empty. */
G_GNUC_INTERNAL
GBytes *tally_issuer_http_body (TallyHttpRequest *req);
/* The JSON object the body holds; NULL (and the reply sent) otherwise. */
G_GNUC_INTERNAL
JsonObject *tally_issuer_http_body_object (TallyHttpRequest *req);
/* FALSE (and 401 sent) unless the bearer token opens @account. */
G_GNUC_INTERNAL
gboolean tally_issuer_http_check_account (TallyHttpRequest *req, const char *account);
/* FALSE (and 401 or 403 sent) unless the bearer token is the operator's. */
G_GNUC_INTERNAL
gboolean tally_issuer_http_check_operator (TallyHttpRequest *req);

/* Answers @req (tally-issuer-http-api.c). */
G_GNUC_INTERNAL
void tally_issuer_http_route (TallyHttpRequest *req);

G_END_DECLS
