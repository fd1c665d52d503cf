/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The online fault driver's HTTP/1.1 at the byte level: faults-http.h. */
#include "faults-http.h"

#include <string.h>

void
faults_http_clear (FaultsHttp *h)
{
  g_clear_pointer (&h->bytes, g_byte_array_unref);
}

static gsize
content_length (const FaultsHttp *h)
{
  g_autofree char *head = g_strndup ((const char *) h->bytes->data, h->head);
  g_auto (GStrv) lines = g_strsplit (head, "\r\n", -1);
  for (guint i = 1; lines[i] != NULL; i++)
    if (g_ascii_strncasecmp (lines[i], "Content-Length:", 15) == 0)
      return g_ascii_strtoull (lines[i] + 15, NULL, 10);
  return 0;
}

/* Reads a request (its Content-Length body), or with @to_eof everything up
 * to the end of the stream (an answer, sent with Connection: close). */
gboolean
faults_http_read (GInputStream *in, FaultsHttp *h, gboolean to_eof)
{
  h->bytes = g_byte_array_new ();
  guint8 buf[4096];
  for (;;) {
    gssize n = g_input_stream_read (in, buf, sizeof buf, NULL, NULL);
    if (n < 0)
      return FALSE;
    if (n == 0)
      return to_eof && h->head > 0;
    g_byte_array_append (h->bytes, buf, (guint) n);
    if (h->head == 0) {
      const char *end = g_strstr_len ((const char *) h->bytes->data, h->bytes->len, "\r\n\r\n");
      if (end != NULL)
        h->head = (gsize) (end - (const char *) h->bytes->data) + 4;
      else if (h->bytes->len > 64 * 1024)
        return FALSE;
    }
    if (!to_eof && h->head > 0 && h->bytes->len >= h->head + content_length (h))
      return TRUE;
  }
}

/* The request again, asking the issuer to close the connection after it. */
GBytes *
faults_http_closing (const FaultsHttp *req)
{
  g_autofree char *head = g_strndup ((const char *) req->bytes->data, req->head - 4);
  g_auto (GStrv) lines = g_strsplit (head, "\r\n", -1);
  GString *out = g_string_new (lines[0]);
  g_string_append (out, "\r\nConnection: close\r\n");
  for (guint i = 1; lines[i] != NULL; i++)
    if (g_ascii_strncasecmp (lines[i], "Connection:", 11) != 0 &&
        g_ascii_strncasecmp (lines[i], "Keep-Alive:", 11) != 0)
      g_string_append_printf (out, "%s\r\n", lines[i]);
  g_string_append (out, "\r\n");
  g_string_append_len (out, (const char *) req->bytes->data + req->head,
                       (gssize) (req->bytes->len - req->head));
  return g_string_free_to_bytes (out);
}

GSocketConnection *
faults_http_connect (guint16 port)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_socket_client_set_timeout (client, 20);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, port);
  return g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, NULL);
}

gboolean
faults_http_send (GSocketConnection *up, GBytes *request)
{
  if (up == NULL)
    return FALSE;
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (up));
  return g_output_stream_write_all (out, g_bytes_get_data (request, NULL),
                                    g_bytes_get_size (request), NULL, NULL, NULL);
}

gboolean
faults_http_answer (GSocketConnection *up, FaultsHttp *answer)
{
  return up != NULL &&
         faults_http_read (g_io_stream_get_input_stream (G_IO_STREAM (up)), answer, TRUE);
}

guint
faults_http_status (const FaultsHttp *a)
{
  const char *head = (const char *) a->bytes->data;
  return a->head > 12 ? (guint) g_ascii_strtoull (head + 9, NULL, 10) : 0;
}

gboolean
faults_http_repeated (const FaultsHttp *a)
{
  g_autofree char *head = g_ascii_strdown ((const char *) a->bytes->data, (gssize) a->head);
  return strstr (head, "\r\nx-tally-repeated: yes\r\n") != NULL;
}
