/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The online issuer's HTTP(S) service (docs/issuer-api.md) on libsoup 3.
 * Devices speak the protocol's own protobuf envelopes to it, so signatures
 * cover the exact bytes; operators and account holders speak JSON.  Every
 * request is bounded in body size and time, and every refusal carries an
 * HTTP status from one table (tally_issuer_http_status_for_error ()) and a
 * JSON body naming the Tally error.
 *
 * The service borrows its TallyIssuer, which must outlive it, and runs on
 * the thread-default main context it was made on.
 */

#include <gio/gio.h>

#include "tally-issuer.h"

G_BEGIN_DECLS

typedef struct _TallyIssuerHttp TallyIssuerHttp;

#define TALLY_ISSUER_HTTP_MAX_BODY_DEFAULT        (1024 * 1024)
#define TALLY_ISSUER_HTTP_REQUEST_TIMEOUT_DEFAULT 30
#define TALLY_ISSUER_HTTP_MAX_CONNECTIONS_DEFAULT 256

/* @tls_certificate (may be NULL: plain HTTP) must carry its private key. */
TallyIssuerHttp *tally_issuer_http_new (TallyIssuer *issuer, GTlsCertificate *tls_certificate);
TallyIssuerHttp *tally_issuer_http_ref (TallyIssuerHttp *http);
/* The last unref stops listening and drops every connection. */
void tally_issuer_http_unref (TallyIssuerHttp *http);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyIssuerHttp, tally_issuer_http_unref)

/* Larger bodies are refused with 413 and dropped as they arrive. */
void tally_issuer_http_set_max_body_bytes (TallyIssuerHttp *http, gsize max_body_bytes);
/* A request not answered within @seconds of its start has its connection
 * closed, and so has a connection idle that long, even before its first
 * request (a slow client holds nothing for longer).  Applies to
 * connections accepted from then on. */
void tally_issuer_http_set_request_timeout (TallyIssuerHttp *http, guint seconds);
/* At most @max_connections connections open at once (default
 * TALLY_ISSUER_HTTP_MAX_CONNECTIONS_DEFAULT); one more is closed as soon as
 * it is accepted. */
void tally_issuer_http_set_max_connections (TallyIssuerHttp *http, guint max_connections);
/* The operator's bearer token (only its hash is kept); without one the
 * operator endpoints refuse every request. */
void tally_issuer_http_set_operator_token (TallyIssuerHttp *http,
                                           const guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES]);
/* What an enrolled register is certified with, and for how long. */
void tally_issuer_http_set_enrol_limits (TallyIssuerHttp *http,
                                         const Tally__Limits *limits,
                                         guint64 validity_seconds);
/* The clock (seconds since the epoch) every operation is given;
 * tally_now () unless set. */
void tally_issuer_http_set_clock (TallyIssuerHttp *http,
                                  guint64 (*clock) (gpointer user_data),
                                  gpointer user_data,
                                  GDestroyNotify destroy);

/* Runs tally_issuer_refund_lost () every @seconds on the server's main
 * context (0 stops it), at the server's clock; a failure is logged and
 * retried at the next run. */
void tally_issuer_http_set_refund_interval (TallyIssuerHttp *http, guint seconds);

/* Listens on @address (port 0: any free port).  Without a TLS certificate
 * only a loopback address is accepted unless @allow_plain is set. */
gboolean tally_issuer_http_listen (TallyIssuerHttp *http,
                                   GSocketAddress *address,
                                   gboolean allow_plain,
                                   GError **error);
/* The first bound port, 0 before listening. */
/* The same on @socket, already bound and listening (a worker process of
 * tally-issuerd serves the socket its parent bound). */
gboolean tally_issuer_http_listen_socket (TallyIssuerHttp *http,
                                          GSocket *socket,
                                          gboolean allow_plain,
                                          GError **error);
/* Every answer carries "X-Tally-Worker: @name" (NULL: none, the default). */
void tally_issuer_http_set_worker (TallyIssuerHttp *http, const char *name);
guint16 tally_issuer_http_get_port (TallyIssuerHttp *http);
/* "http://127.0.0.1:PORT/" or "https://…" of the first listener; NULL before. */
char *tally_issuer_http_get_url (TallyIssuerHttp *http);

/* The one table from Tally errors to HTTP statuses (docs/issuer-api.md). */
guint tally_issuer_http_status_for_error (TallyError code);

G_END_DECLS
