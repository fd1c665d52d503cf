/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "issuerd-test-util.h"

#include <string.h>

#include "tally-hex.h"

void
issuerd_response_free (IssuerdResponse *r)
{
  g_clear_pointer (&r->body, g_bytes_unref);
  g_clear_pointer (&r->headers, soup_message_headers_unref);
  g_free (r);
}

guint64
issuerd_test_clock (gpointer user_data)
{
  return TEST_NOW + 60;
}

static void
issuerd_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GBytes **out = user_data;
  g_autoptr (GError) error = NULL;
  *out = soup_session_send_and_read_finish (SOUP_SESSION (source), result, &error);
  g_assert_no_error (error);
}

/* The main context runs the server while the client waits. */
IssuerdResponse *
issuerd_send (IssuerdFixture *f, SoupMessage *msg)
{
  GBytes *out = NULL;
  soup_session_send_and_read_async (f->session, msg, G_PRIORITY_DEFAULT, NULL, issuerd_sent, &out);
  while (out == NULL)
    g_main_context_iteration (NULL, TRUE);

  IssuerdResponse *r = g_new0 (IssuerdResponse, 1);
  r->status = soup_message_get_status (msg);
  r->body = out;
  r->headers = soup_message_headers_ref (soup_message_get_response_headers (msg));
  return r;
}

IssuerdResponse *
issuerd_request (IssuerdFixture *f,
                 const char *method,
                 const char *path,
                 const char *token,
                 const char *content_type,
                 GBytes *body,
                 const char *if_none_match)
{
  g_autofree char *url = g_strconcat (f->base, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (method, url);
  g_assert_nonnull (msg);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  if (token != NULL) {
    g_autofree char *auth = g_strconcat ("Bearer ", token, NULL);
    soup_message_headers_replace (headers, "Authorization", auth);
  }
  if (if_none_match != NULL)
    soup_message_headers_replace (headers, "If-None-Match", if_none_match);
  if (body != NULL)
    soup_message_set_request_body_from_bytes (msg, content_type, body);

  return issuerd_send (f, msg);
}

IssuerdResponse *
issuerd_post_json (IssuerdFixture *f, const char *path, const char *token, const char *json)
{
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  return issuerd_request (f, "POST", path, token, "application/json", body, NULL);
}

IssuerdResponse *
issuerd_post_protobuf (IssuerdFixture *f, const char *path, GBytes *body)
{
  return issuerd_request (f, "POST", path, NULL, "application/x-protobuf", body, NULL);
}

JsonObject *
issuerd_response_object (IssuerdResponse *r)
{
  g_assert_cmpstr (soup_message_headers_get_content_type (r->headers, NULL), ==,
                   "application/json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;
  const char *data = g_bytes_get_data (r->body, &len);
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_data (parser, data, (gssize) len, &error));
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* A refusal: the status, and the Tally error name in body and header. */
void
issuerd_assert_refused (IssuerdResponse *r, guint status, TallyError code)
{
  g_assert_cmpuint (r->status, ==, status);
  g_autoptr (JsonObject) obj = issuerd_response_object (r);
  g_assert_cmpstr (json_object_get_string_member (obj, "error"), ==, tally_error_to_string (code));
  g_assert_cmpstr (json_object_get_string_member (obj, "name"), ==, tally_error_to_name (code));
  g_assert_cmpint (json_object_get_int_member (obj, "code"), ==, code);
  g_assert_cmpstr (soup_message_headers_get_one (r->headers, "X-Tally-Error"), ==,
                   tally_error_to_string (code));
  g_assert_true (strlen (json_object_get_string_member (obj, "message")) > 0);
}

void
issuerd_assert_protobuf (IssuerdResponse *r, guint status)
{
  g_assert_cmpuint (r->status, ==, status);
  g_assert_cmpstr (soup_message_headers_get_content_type (r->headers, NULL), ==,
                   "application/x-protobuf");
}

TallyAudit
issuerd_audit (IssuerdFixture *f)
{
  g_autoptr (GError) error = NULL;
  TallyAudit a;
  g_assert_true (tally_issuer_audit (f->issuer, &a, &error));
  g_assert_no_error (error);
  return a;
}

void
issuerd_assert_audit_equal (const TallyAudit *a, const TallyAudit *b)
{
  g_assert_cmpint (a->issued, ==, b->issued);
  g_assert_cmpint (a->online, ==, b->online);
  g_assert_cmpint (a->offline, ==, b->offline);
  g_assert_cmpint (a->in_flight, ==, b->in_flight);
  g_assert_cmpint (a->fraud_exposure, ==, b->fraud_exposure);
  g_assert_cmpint (a->awaiting, ==, b->awaiting);
  g_assert_cmpint (a->refused, ==, b->refused);
  g_assert_cmpuint (a->registers, ==, b->registers);
  g_assert_cmpuint (a->revoked, ==, b->revoked);
  g_assert_cmpuint (a->fraud_proofs, ==, b->fraud_proofs);
  g_assert_cmpint (a->identity, ==, b->identity);
}

gint64
issuerd_balance (IssuerdFixture *f, const char *name)
{
  g_autoptr (GError) error = NULL;
  gint64 balance = -1;
  g_assert_true (tally_issuer_account_balance (f->issuer, name, &balance, &error));
  g_assert_no_error (error);
  return balance;
}

/* Creates @name through the operator endpoint; returns its token (hex). */
char *
issuerd_create_account (IssuerdFixture *f,
                        const char *name,
                        const char *display_name,
                        gint64 deposit)
{
  g_autofree char *json =
    display_name
      ? g_strdup_printf ("{\"name\": \"%s\", \"display_name\": \"%s\"}", name, display_name)
      : g_strdup_printf ("{\"name\": \"%s\"}", name);
  g_autoptr (IssuerdResponse) r =
    issuerd_post_json (f, "/v1/operator/accounts", f->operator_hex, json);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_CREATED);
  g_autoptr (JsonObject) obj = issuerd_response_object (r);
  g_assert_cmpstr (json_object_get_string_member (obj, "account"), ==, name);
  char *token = g_strdup (json_object_get_string_member (obj, "token"));
  g_assert_cmpuint (strlen (token), ==, 2 * TALLY_ACCOUNT_TOKEN_BYTES);

  g_autofree char *path = g_strdup_printf ("/v1/operator/accounts/%s/deposit", name);
  g_autofree char *amount = g_strdup_printf ("{\"amount\": %" G_GINT64_FORMAT "}", deposit);
  g_autoptr (IssuerdResponse) d = issuerd_post_json (f, path, f->operator_hex, amount);
  g_assert_cmpuint (d->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) dobj = issuerd_response_object (d);
  g_assert_cmpint (json_object_get_int_member (dobj, "balance"), ==, deposit);
  return token;
}

void
issuerd_fixture_setup (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir = g_build_filename (f->tmp, "issuer", NULL);
  f->issuer = test_issuer_create (f->dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);

  f->http = tally_issuer_http_new (f->issuer, NULL);
  tally_issuer_http_set_clock (f->http, issuerd_test_clock, NULL, NULL);
  tally_issuer_http_set_max_body_bytes (f->http, 64 * 1024);
  randombytes_buf (f->operator_token, sizeof f->operator_token);
  f->operator_hex = tally_hex_encode (f->operator_token, sizeof f->operator_token);
  tally_issuer_http_set_operator_token (f->http, f->operator_token);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (f->http, addr, FALSE, &error));
  g_assert_no_error (error);
  guint16 port = tally_issuer_http_get_port (f->http);
  g_assert_cmpuint (port, >, 0);
  f->base = g_strdup_printf ("http://127.0.0.1:%u", port);
  f->session = soup_session_new_with_options ("timeout", 10, NULL);

  /* The documented examples start from an issuer without accounts. */
  if (data != NULL)
    return;
  f->alice_token = issuerd_create_account (f, "alice", "Alice's Bakery", 10000);
  f->bob_token = issuerd_create_account (f, "bob", NULL, 10000);
}

void
issuerd_fixture_teardown (IssuerdFixture *f, gconstpointer data)
{
  g_clear_object (&f->session);
  g_clear_pointer (&f->http, tally_issuer_http_unref);
  /* Let the closed connections go before the next test. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_clear_pointer (&f->issuer, tally_issuer_free);
  test_remove_tree (f->tmp);
  g_free (f->dir);
  g_free (f->tmp);
  g_free (f->base);
  g_free (f->operator_hex);
  g_free (f->alice_token);
  g_free (f->bob_token);
}
