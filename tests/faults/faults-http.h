/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * HTTP/1.1 at the byte level for the online fault driver's proxy
 * (test-faults-online.c): a request or an answer read whole from a
 * stream, the request sent on with Connection: close, and the two things
 * the driver reads from an answer.  Blocking I/O, for the proxy's threads.
 */
#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  GByteArray *bytes;
  gsize head; /* length of the head, "\r\n\r\n" included */
} FaultsHttp;

void faults_http_clear (FaultsHttp *h);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (FaultsHttp, faults_http_clear)

/* Reads a request (up to its Content-Length body), or with @to_eof
 * everything to the end of the stream (an answer to a request sent with
 * Connection: close).  FALSE when the stream ends or fails first. */
gboolean faults_http_read (GInputStream *in, FaultsHttp *h, gboolean to_eof);
/* @req again, with Connection: close instead of its own. */
GBytes *faults_http_closing (const FaultsHttp *req);
/* A connection to 127.0.0.1:@port, or NULL. */
GSocketConnection *faults_http_connect (guint16 port);
/* Both FALSE for a NULL @up. */
gboolean faults_http_send (GSocketConnection *up, GBytes *request);
gboolean faults_http_answer (GSocketConnection *up, FaultsHttp *answer);
/* An answer's status code (0: none), and whether it says
 * X-Tally-Repeated: yes. */
guint faults_http_status (const FaultsHttp *a);
gboolean faults_http_repeated (const FaultsHttp *a);

G_END_DECLS
