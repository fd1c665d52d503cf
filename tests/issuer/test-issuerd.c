/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd over real HTTP on 127.0.0.1: the server runs in this
 * process on an ephemeral port and a SoupSession drives it; the built
 * binary (path in argv[1]) is started, used and stopped as a daemon.  Every
 * refusal is checked for its status, its error name, and an unchanged audit.
 */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <signal.h>
#include <string.h>

#include "issuer-test-util.h"
#include "tally-hex.h"
#include "tally-issuer-http.h"

static const char *issuerd_path;

typedef struct
{
  char *tmp;
  char *dir;
  TallyIssuer *issuer;
  TallyIssuerHttp *http;
  SoupSession *session;
  char *base;
  guint8 operator_token[TALLY_ACCOUNT_TOKEN_BYTES];
  char *operator_hex;
  char *alice_token; /* hex */
  char *bob_token;
} Fixture;

typedef struct
{
  guint status;
  GBytes *body;
  SoupMessageHeaders *headers;
} Response;

static void
response_free (Response *r)
{
  g_clear_pointer (&r->body, g_bytes_unref);
  g_clear_pointer (&r->headers, soup_message_headers_unref);
  g_free (r);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Response, response_free)

static guint64
test_clock (gpointer user_data)
{
  return TEST_NOW + 60;
}

static void
sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GBytes **out = user_data;
  g_autoptr (GError) error = NULL;
  *out = soup_session_send_and_read_finish (SOUP_SESSION (source), result, &error);
  g_assert_no_error (error);
}

/* One request; the main context runs the server while the client waits. */
static Response *
request (Fixture *f,
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

  GBytes *out = NULL;
  soup_session_send_and_read_async (f->session, msg, G_PRIORITY_DEFAULT, NULL, sent, &out);
  while (out == NULL)
    g_main_context_iteration (NULL, TRUE);

  Response *r = g_new0 (Response, 1);
  r->status = soup_message_get_status (msg);
  r->body = out;
  r->headers = soup_message_headers_ref (soup_message_get_response_headers (msg));
  return r;
}

static Response *
post_json (Fixture *f, const char *path, const char *token, const char *json)
{
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  return request (f, "POST", path, token, "application/json", body, NULL);
}

static Response *
post_protobuf (Fixture *f, const char *path, GBytes *body)
{
  return request (f, "POST", path, NULL, "application/x-protobuf", body, NULL);
}

static JsonObject *
response_object (Response *r)
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
static void
assert_refused (Response *r, guint status, TallyError code)
{
  g_assert_cmpuint (r->status, ==, status);
  g_autoptr (JsonObject) obj = response_object (r);
  g_assert_cmpstr (json_object_get_string_member (obj, "error"), ==, tally_error_to_string (code));
  g_assert_cmpstr (json_object_get_string_member (obj, "name"), ==, tally_error_to_name (code));
  g_assert_cmpint (json_object_get_int_member (obj, "code"), ==, code);
  g_assert_cmpstr (soup_message_headers_get_one (r->headers, "X-Tally-Error"), ==,
                   tally_error_to_string (code));
  g_assert_true (strlen (json_object_get_string_member (obj, "message")) > 0);
}

static void
assert_protobuf (Response *r, guint status)
{
  g_assert_cmpuint (r->status, ==, status);
  g_assert_cmpstr (soup_message_headers_get_content_type (r->headers, NULL), ==,
                   "application/x-protobuf");
}

static TallyAudit
audit_of (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  TallyAudit a;
  g_assert_true (tally_issuer_audit (f->issuer, &a, &error));
  g_assert_no_error (error);
  return a;
}

static void
assert_audit_equal (const TallyAudit *a, const TallyAudit *b)
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

static gint64
balance_of (Fixture *f, const char *name)
{
  g_autoptr (GError) error = NULL;
  gint64 balance = -1;
  g_assert_true (tally_issuer_account_balance (f->issuer, name, &balance, &error));
  g_assert_no_error (error);
  return balance;
}

/* Creates @name through the operator endpoint; returns its token (hex). */
static char *
create_account (Fixture *f, const char *name, const char *display_name, gint64 deposit)
{
  g_autofree char *json =
    display_name
      ? g_strdup_printf ("{\"name\": \"%s\", \"display_name\": \"%s\"}", name, display_name)
      : g_strdup_printf ("{\"name\": \"%s\"}", name);
  g_autoptr (Response) r = post_json (f, "/v1/operator/accounts", f->operator_hex, json);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_CREATED);
  g_autoptr (JsonObject) obj = response_object (r);
  g_assert_cmpstr (json_object_get_string_member (obj, "account"), ==, name);
  char *token = g_strdup (json_object_get_string_member (obj, "token"));
  g_assert_cmpuint (strlen (token), ==, 2 * TALLY_ACCOUNT_TOKEN_BYTES);

  g_autofree char *path = g_strdup_printf ("/v1/operator/accounts/%s/deposit", name);
  g_autofree char *amount = g_strdup_printf ("{\"amount\": %" G_GINT64_FORMAT "}", deposit);
  g_autoptr (Response) d = post_json (f, path, f->operator_hex, amount);
  g_assert_cmpuint (d->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) dobj = response_object (d);
  g_assert_cmpint (json_object_get_int_member (dobj, "balance"), ==, deposit);
  return token;
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir = g_build_filename (f->tmp, "issuer", NULL);
  f->issuer = tally_issuer_create (f->dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);

  f->http = tally_issuer_http_new (f->issuer, NULL);
  tally_issuer_http_set_clock (f->http, test_clock, NULL, NULL);
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
  f->alice_token = create_account (f, "alice", "Alice's Bakery", 10000);
  f->bob_token = create_account (f, "bob", NULL, 10000);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->session);
  g_clear_pointer (&f->http, tally_issuer_http_unref);
  g_clear_pointer (&f->issuer, tally_issuer_free);
  test_remove_tree (f->tmp);
  g_free (f->dir);
  g_free (f->tmp);
  g_free (f->base);
  g_free (f->operator_hex);
  g_free (f->alice_token);
  g_free (f->bob_token);
}

/* --- keys and revocations --- */

static void
test_keys_with_etag_and_not_modified (Fixture *f, gconstpointer data)
{
  g_autoptr (Response) r = request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  assert_protobuf (r, SOUP_STATUS_OK);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (f->issuer);
  g_assert_true (g_bytes_equal (r->body, key_set));
  const char *etag = soup_message_headers_get_one (r->headers, "ETag");
  g_assert_nonnull (etag);

  g_autoptr (Response) again = request (f, "GET", "/v1/keys", NULL, NULL, NULL, etag);
  g_assert_cmpuint (again->status, ==, SOUP_STATUS_NOT_MODIFIED);
  g_assert_cmpuint (g_bytes_get_size (again->body), ==, 0);
  g_assert_cmpstr (soup_message_headers_get_one (again->headers, "ETag"), ==, etag);

  g_autoptr (Response) other = request (f, "GET", "/v1/keys", NULL, NULL, NULL, "\"other\"");
  assert_protobuf (other, SOUP_STATUS_OK);
  g_assert_true (g_bytes_equal (other->body, key_set));
}

static Tally__RevocationList *
open_revocation_list (Fixture *f, GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
  Tally__RevocationList *list =
    tally_revocation_list_verify (env, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  return list;
}

static void
test_revocations_etag_follows_the_list (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (Response) r = request (f, "GET", "/v1/revocations", NULL, NULL, NULL, NULL);
  assert_protobuf (r, SOUP_STATUS_OK);
  g_autoptr (Tally__RevocationList) list = open_revocation_list (f, r->body);
  g_assert_cmpuint (list->n_revoked_register_ids, ==, 0);
  g_autofree char *etag = g_strdup (soup_message_headers_get_one (r->headers, "ETag"));

  g_autoptr (Response) same = request (f, "GET", "/v1/revocations", NULL, NULL, NULL, etag);
  g_assert_cmpuint (same->status, ==, SOUP_STATUS_NOT_MODIFIED);

  g_autofree char *hex = tally_hex_encode (reg->id, sizeof reg->id);
  g_autofree char *json = g_strdup_printf ("{\"register_id\": \"%s\"}", hex);
  g_autoptr (Response) revoke = post_json (f, "/v1/operator/revocations", f->operator_hex, json);
  g_assert_cmpuint (revoke->status, ==, SOUP_STATUS_OK);

  g_autoptr (Response) changed = request (f, "GET", "/v1/revocations", NULL, NULL, NULL, etag);
  assert_protobuf (changed, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (changed->headers, "ETag"), !=, etag);
  g_autoptr (Tally__RevocationList) now = open_revocation_list (f, changed->body);
  g_assert_cmpuint (now->serial, ==, list->serial + 1);
  g_assert_true (tally_revocation_list_contains (now, reg->id));
}

/* --- enrolment --- */

static Response *
enrol (Fixture *f,
       const char *account,
       const char *token,
       const TestRegister *reg,
       const guint8 proof[TALLY_SIGNATURE_BYTES])
{
  g_autofree char *key = tally_hex_encode (reg->pk, sizeof reg->pk);
  g_autofree char *sig = tally_hex_encode (proof, TALLY_SIGNATURE_BYTES);
  g_autofree char *json = g_strdup_printf ("{\"public_key\": \"%s\", \"proof\": \"%s\"}", key, sig);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/%s/registers", account);
  return post_json (f, path, token, json);
}

static void
test_enrol_gives_certificate_with_display_name (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (Response) r = enrol (f, "alice", f->alice_token, reg, proof);
  assert_protobuf (r, SOUP_STATUS_CREATED);

  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (r->body);
  g_autoptr (Tally__RegisterCertificate) cert = tally_certificate_verify (
    env, tally_issuer_get_public_key (f->issuer), test_clock (NULL), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (cert->display_name, ==, "Alice's Bakery");
  g_assert_cmpmem (cert->register_public_key.data, cert->register_public_key.len, reg->pk,
                   sizeof reg->pk);
  g_assert_cmpuint (cert->not_before, ==, test_clock (NULL));
  g_assert_cmpuint (audit_of (f).registers, ==, 1);
}

static void
test_enrol_refuses_bad_proof (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  TallyAudit before = audit_of (f);
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, other, "alice", proof);
  g_autoptr (Response) r = enrol (f, "alice", f->alice_token, reg, proof);
  assert_refused (r, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);

  /* A proof made for bob's account does not enrol into alice's. */
  test_enrol_proof (f->issuer, reg, "bob", proof);
  g_autoptr (Response) moved = enrol (f, "alice", f->alice_token, reg, proof);
  assert_refused (moved, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (Response) bad_json =
    post_json (f, "/v1/accounts/alice/registers", f->alice_token, "{\"public_key\": \"00\"}");
  assert_refused (bad_json, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
}

static void
test_enrol_refuses_wrong_token (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  TallyAudit before = audit_of (f);

  /* bob's token used on alice's account, none, a malformed one, and the
   * operator's, which is no account credential. */
  const char *tokens[] = { f->bob_token, NULL, "abcd", f->operator_hex };
  for (gsize i = 0; i < G_N_ELEMENTS (tokens); i++) {
    g_autoptr (Response) r = enrol (f, "alice", tokens[i], reg, proof);
    assert_refused (r, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
    g_assert_nonnull (soup_message_headers_get_one (r->headers, "WWW-Authenticate"));
  }
  /* An account that does not exist answers as a wrong token does. */
  g_autoptr (Response) nobody = enrol (f, "nobody", f->alice_token, reg, proof);
  assert_refused (nobody, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
  g_assert_cmpuint (after.registers, ==, 0);
}

static void
test_enrol_refuses_replay (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (Response) first = enrol (f, "alice", f->alice_token, reg, proof);
  assert_protobuf (first, SOUP_STATUS_CREATED);
  TallyAudit before = audit_of (f);

  g_autoptr (Response) replay = enrol (f, "alice", f->alice_token, reg, proof);
  assert_refused (replay, SOUP_STATUS_CONFLICT, TALLY_ERROR_REPLAY);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
}

/* --- vouchers --- */

static Response *
buy (Fixture *f, const char *account, const char *token, const TestRegister *reg, gint64 amount)
{
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/%s/registers/%s/vouchers", account, id);
  g_autofree char *json = g_strdup_printf ("{\"amount\": %" G_GINT64_FORMAT "}", amount);
  return post_json (f, path, token, json);
}

static void
test_voucher_bought_against_balance (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (Response) r = buy (f, "alice", f->alice_token, reg, 2500);
  assert_protobuf (r, SOUP_STATUS_CREATED);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (r->body);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (env,
                                        TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER,
                                        tally_issuer_get_public_key (f->issuer), &error));
  g_assert_no_error (error);
  g_autoptr (Tally__LoadVoucher) v = TALLY_UNPACK (
    Tally__LoadVoucher, tally__load_voucher, env->body.data, env->body.len, "voucher", &error);
  g_assert_no_error (error);
  g_assert_cmpint (v->amount->value, ==, 2500);
  g_assert_cmpuint (v->issued_at, ==, test_clock (NULL));
  g_assert_cmpmem (v->register_id.data, v->register_id.len, reg->id, sizeof reg->id);
  g_assert_cmpint (balance_of (f, "alice"), ==, 10000 - 2500);

  g_autoptr (Response) mine =
    request (f, "GET", "/v1/accounts/alice", f->alice_token, NULL, NULL, NULL);
  g_assert_cmpuint (mine->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = response_object (mine);
  g_assert_cmpint (json_object_get_int_member (obj, "balance"), ==, 7500);
  g_assert_cmpstr (json_object_get_string_member (obj, "currency"), ==, "EUR");
}

static void
test_voucher_refusals_change_nothing (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) bobs = test_register_new (f->issuer, "bob");
  TallyAudit before = audit_of (f);

  /* More than the account holds (within the register's cap). */
  g_autoptr (Response) broke = buy (f, "alice", f->alice_token, reg, 10001);
  assert_refused (broke, SOUP_STATUS_CONFLICT, TALLY_ERROR_INSUFFICIENT_FUNDS);
  /* alice's token buying for bob's register, with bob's money. */
  g_autoptr (Response) theft = buy (f, "alice", f->alice_token, bobs, 100);
  assert_refused (theft, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  /* alice's token on bob's account path. */
  g_autoptr (Response) stolen = buy (f, "bob", f->alice_token, bobs, 100);
  assert_refused (stolen, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (Response) zero = buy (f, "alice", f->alice_token, reg, 0);
  assert_refused (zero, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  g_autoptr (Response) bad_id =
    post_json (f, "/v1/accounts/alice/registers/xyz/vouchers", f->alice_token, "{\"amount\": 100}");
  assert_refused (bad_id, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);

  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
  g_assert_cmpint (balance_of (f, "alice"), ==, 10000);
  g_assert_cmpint (balance_of (f, "bob"), ==, 10000);
}

/* --- reconciliation --- */

/* A real bundle: alice's register loaded, paid bob's and defunded. */
static GBytes *
busy_bundle (Fixture *f, TestRegister *payer, const TestRegister *payee)
{
  g_autoptr (Response) v = buy (f, "alice", f->alice_token, payer, 5000);
  assert_protobuf (v, SOUP_STATUS_CREATED);
  g_autoptr (GBytes) p = test_permission (payer, payee, 1500);
  g_autoptr (GBytes) r = test_receipt (payee, p);
  g_autoptr (GBytes) d = test_defund (payer, 1000);
  g_autoptr (TestBundle) b = test_bundle_new (payer);
  test_bundle_add_voucher (b, v->body);
  test_bundle_add_spent (b, p, r);
  test_bundle_add_spent (b, d, NULL);
  return test_bundle_sign (b);
}

static void
test_reconcile_twice_same_bytes_books_once (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);

  g_autoptr (Response) first = post_protobuf (f, "/v1/reconcile", bundle);
  assert_protobuf (first, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (first->headers, "X-Tally-Repeated"), ==, "no");
  g_autoptr (Tally__ReconciliationResult) res = test_result_open (f->issuer, first->body);
  g_assert_cmpuint (res->settled_counter, ==, 2);
  g_assert_nonnull (res->renewed_certificate);
  TallyAudit after_first = audit_of (f);
  g_assert_true (after_first.identity);
  g_assert_cmpint (balance_of (f, "alice"), ==, 10000 - 5000 + 1000);

  g_autoptr (Response) second = post_protobuf (f, "/v1/reconcile", bundle);
  assert_protobuf (second, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (second->headers, "X-Tally-Repeated"), ==, "yes");
  g_assert_true (g_bytes_equal (first->body, second->body));
  TallyAudit after_second = audit_of (f);
  assert_audit_equal (&after_first, &after_second);
  g_assert_cmpint (balance_of (f, "alice"), ==, 10000 - 5000 + 1000);
}

static void
test_reconcile_refuses_forged_bundle (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestBundle) tb = test_bundle_new (a);
  g_autoptr (GBytes) forged = test_bundle_sign_with (tb, b->sk);
  TallyAudit before = audit_of (f);
  g_autoptr (Response) r = post_protobuf (f, "/v1/reconcile", forged);
  assert_refused (r, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
}

/* --- hostile input --- */

static void
test_oversized_body_refused_unread (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  TallyAudit before = audit_of (f);
  g_autofree guint8 *junk = g_malloc0 (64 * 1024 + 1);
  g_autoptr (GBytes) body = g_bytes_new_take (g_steal_pointer (&junk), 64 * 1024 + 1);
  g_autoptr (Response) r = post_protobuf (f, "/v1/reconcile", body);
  assert_refused (r, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, TALLY_ERROR_FRAME_OVERSIZE);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);

  /* The server still answers afterwards. */
  g_autoptr (Response) keys = request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  assert_protobuf (keys, SOUP_STATUS_OK);
}

static void
test_wrong_content_type_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  TallyAudit before = audit_of (f);
  g_autoptr (Response) r =
    request (f, "POST", "/v1/reconcile", NULL, "application/json", bundle, NULL);
  assert_refused (r, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, TALLY_ERROR_INVALID_ARGUMENT);
  g_autoptr (Response) j = request (f, "POST", "/v1/accounts/alice/registers", f->alice_token,
                                    "application/x-protobuf", bundle, NULL);
  assert_refused (j, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
}

static void
test_truncated_protobuf_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  TallyAudit before = audit_of (f);
  g_autoptr (GBytes) cut = g_bytes_new_from_bytes (bundle, 0, g_bytes_get_size (bundle) - 7);
  g_autoptr (Response) r = post_protobuf (f, "/v1/reconcile", cut);
  assert_refused (r, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr (Response) e = post_protobuf (f, "/v1/reconcile", empty);
  assert_refused (e, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);
}

static void
test_unknown_paths_and_methods_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (Response) none = request (f, "GET", "/v1/nothing", NULL, NULL, NULL, NULL);
  assert_refused (none, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autoptr (Response) root = request (f, "GET", "/", NULL, NULL, NULL, NULL);
  assert_refused (root, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autoptr (Response) method = request (f, "DELETE", "/v1/keys", NULL, NULL, NULL, NULL);
  assert_refused (method, SOUP_STATUS_METHOD_NOT_ALLOWED, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (soup_message_headers_get_one (method->headers, "Allow"), ==, "GET");
  /* An escaped '/' cannot split an account name into a path of its own. */
  g_autoptr (Response) slash =
    request (f, "GET", "/v1/accounts/alice%2Fregisters", f->alice_token, NULL, NULL, NULL);
  assert_refused (slash, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
}

static void
test_operator_endpoints_need_operator_token (Fixture *f, gconstpointer data)
{
  TallyAudit before = audit_of (f);
  g_autoptr (Response) audit =
    request (f, "GET", "/v1/operator/audit", f->alice_token, NULL, NULL, NULL);
  assert_refused (audit, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (Response) deposit =
    post_json (f, "/v1/operator/accounts/alice/deposit", f->alice_token, "{\"amount\": 5}");
  assert_refused (deposit, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (Response) create =
    post_json (f, "/v1/operator/accounts", NULL, "{\"name\": \"mallory\"}");
  assert_refused (create, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  TallyAudit after = audit_of (f);
  assert_audit_equal (&before, &after);

  g_autoptr (Response) ok =
    request (f, "GET", "/v1/operator/audit", f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (ok->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = response_object (ok);
  g_assert_cmpint (json_object_get_int_member (obj, "issued"), ==, after.issued);
  g_assert_cmpint (json_object_get_int_member (obj, "online"), ==, after.online);
  g_assert_true (json_object_get_boolean_member (obj, "identity"));
}

static void
test_new_token_replaces_old (Fixture *f, gconstpointer data)
{
  g_autoptr (Response) r =
    request (f, "POST", "/v1/operator/accounts/alice/token", f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = response_object (r);
  const char *fresh = json_object_get_string_member (obj, "token");
  g_autoptr (Response) old =
    request (f, "GET", "/v1/accounts/alice", f->alice_token, NULL, NULL, NULL);
  assert_refused (old, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (Response) now = request (f, "GET", "/v1/accounts/alice", fresh, NULL, NULL, NULL);
  g_assert_cmpuint (now->status, ==, SOUP_STATUS_OK);
}

typedef struct
{
  gboolean done;
  gssize got;
} ReadState;

static void
read_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ReadState *st = user_data;
  st->got = g_input_stream_read_finish (G_INPUT_STREAM (source), result, NULL);
  st->done = TRUE;
}

static gboolean
guard_expired (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_slow_client_cut_off (Fixture *f, gconstpointer data)
{
  tally_issuer_http_set_request_timeout (f->http, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GUri) uri = g_uri_parse (f->base, G_URI_FLAGS_NONE, &error);
  g_assert_no_error (error);
  g_autoptr (GSocketConnection) conn = g_socket_client_connect_to_host (
    client, "127.0.0.1", (guint16) g_uri_get_port (uri), NULL, &error);
  g_assert_no_error (error);
  /* Headers announce a body that never comes. */
  const char partial[] = "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\nab";
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  g_assert_true (g_output_stream_write_all (out, partial, sizeof partial - 1, NULL, NULL, &error));
  g_assert_no_error (error);

  gint64 start = g_get_monotonic_time ();
  ReadState st = { 0 };
  gboolean expired = FALSE;
  guint8 buf[256];
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf, sizeof buf,
                             G_PRIORITY_DEFAULT, NULL, read_done, &st);
  guint guard = g_timeout_add_seconds (10, guard_expired, &expired);
  while (!st.done && !expired)
    g_main_context_iteration (NULL, TRUE);
  if (!expired)
    g_source_remove (guard);
  g_assert_true (st.done);
  /* Closed, not answered, and only after the deadline. */
  g_assert_cmpint (st.got, <=, 0);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC / 2);

  g_autoptr (Response) keys = request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  assert_protobuf (keys, SOUP_STATUS_OK);
}

static void
test_plain_http_only_on_loopback (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (issuer, NULL);
  g_autoptr (GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (any, 0);
  g_assert_false (tally_issuer_http_listen (http, addr, FALSE, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_assert_cmpuint (tally_issuer_http_get_port (http), ==, 0);
  g_clear_pointer (&http, tally_issuer_http_unref);
  g_clear_pointer (&issuer, tally_issuer_free);
  test_remove_tree (tmp);
}

static void
test_error_table_covers_every_code (void)
{
  for (guint code = 1; code <= TALLY_ERROR_LAST; code++) {
    guint status = tally_issuer_http_status_for_error ((TallyError) code);
    g_assert_cmpuint (status, >=, 400);
    g_assert_cmpuint (status, <, 600);
  }
  g_assert_cmpuint (tally_issuer_http_status_for_error (TALLY_ERROR_NOT_AUTHORIZED), ==, 401);
  g_assert_cmpuint (tally_issuer_http_status_for_error (TALLY_ERROR_STORAGE), ==, 500);
}

/* --- docs/issuer-api.md, replayed --- */

#define DOC_ACCOUNT "stall-42"

typedef struct
{
  Fixture *f;
  GHashTable *vars; /* name -> GBytes */
  TestRegister *reg;
} Replay;

static GBytes *
replay_var (Replay *rp, const char *name)
{
  GBytes *value = g_hash_table_lookup (rp->vars, name);
  if (value != NULL || strcmp (name, "BUNDLE") != 0)
    return value;
  /* Built once the register holds its certificate and its voucher. */
  GBytes *cert = g_hash_table_lookup (rp->vars, "CERTIFICATE");
  GBytes *voucher = g_hash_table_lookup (rp->vars, "VOUCHER");
  g_assert_nonnull (cert);
  g_assert_nonnull (voucher);
  rp->reg->cert = g_bytes_ref (cert);
  g_autoptr (TestBundle) b = test_bundle_new (rp->reg);
  test_bundle_add_voucher (b, voucher);
  g_hash_table_insert (rp->vars, g_strdup (name), test_bundle_sign (b));
  return g_hash_table_lookup (rp->vars, name);
}

static void
replay_set (Replay *rp, const char *name, const char *text)
{
  g_hash_table_insert (rp->vars, g_strdup (name), g_bytes_new (text, strlen (text)));
}

/* @text with every $NAME replaced by its value. */
static char *
replay_expand (Replay *rp, const char *text)
{
  g_autoptr (GString) out = g_string_new (NULL);
  for (const char *p = text; *p;) {
    if (*p != '$' || !g_ascii_isupper (p[1])) {
      g_string_append_c (out, *p++);
      continue;
    }
    const char *end = p + 1;
    while (g_ascii_isupper (*end) || *end == '_')
      end++;
    g_autofree char *name = g_strndup (p + 1, (gsize) (end - p - 1));
    GBytes *value = replay_var (rp, name);
    if (value == NULL)
      g_error ("docs/issuer-api.md uses $%s before any answer sets it", name);
    gsize len;
    const char *data = g_bytes_get_data (value, &len);
    g_string_append_len (out, data, (gssize) len);
    p = end;
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* "$NAME" alone: its name, else NULL. */
static const char *
replay_placeholder (const char *text)
{
  if (text[0] != '$' || text[1] == '\0')
    return NULL;
  for (const char *p = text + 1; *p; p++)
    if (!g_ascii_isupper (*p) && *p != '_')
      return NULL;
  return text + 1;
}

/* A value the example shows: a placeholder not yet known takes the actual
 * value; anything else must equal it. */
static void
replay_match (Replay *rp, const char *shown, GBytes *actual, const char *what)
{
  const char *name = replay_placeholder (shown);
  if (name != NULL && strcmp (name, "BYTES") == 0) {
    g_assert_cmpuint (g_bytes_get_size (actual), >, 0);
    return;
  }
  if (name != NULL && replay_var (rp, name) == NULL) {
    g_hash_table_insert (rp->vars, g_strdup (name), g_bytes_ref (actual));
    return;
  }
  /* A known value alone may be binary: compared as bytes. */
  if (name != NULL) {
    if (!g_bytes_equal (replay_var (rp, name), actual))
      g_error ("%s: the documented \"%s\" is not what the server sent", what, shown);
    return;
  }
  g_autofree char *want = replay_expand (rp, shown);
  g_autoptr (GBytes) want_bytes = g_bytes_new (want, strlen (want));
  if (!g_bytes_equal (want_bytes, actual))
    g_error ("%s: the documented \"%s\" is not what the server sent", what, shown);
}

static void
replay_json (Replay *rp, const char *shown, GBytes *actual)
{
  g_autoptr (JsonParser) want = json_parser_new ();
  g_autoptr (JsonParser) got = json_parser_new ();
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (actual, &len);
  g_assert_true (json_parser_load_from_data (want, shown, -1, &error));
  g_assert_true (json_parser_load_from_data (got, data, (gssize) len, &error));
  g_assert_no_error (error);
  JsonObject *w = json_node_get_object (json_parser_get_root (want));
  JsonObject *g = json_node_get_object (json_parser_get_root (got));
  g_autoptr (GList) members = json_object_get_members (w);
  for (GList *m = members; m != NULL; m = m->next) {
    JsonNode *wn = json_object_get_member (w, m->data);
    JsonNode *gn = json_object_get_member (g, m->data);
    if (gn == NULL)
      g_error ("the answer lacks the documented member \"%s\"", (const char *) m->data);
    if (json_node_get_value_type (wn) == G_TYPE_STRING) {
      g_assert_cmpint (json_node_get_value_type (gn), ==, G_TYPE_STRING);
      const char *s = json_node_get_string (gn);
      g_autoptr (GBytes) value = g_bytes_new (s, strlen (s));
      replay_match (rp, json_node_get_string (wn), value, m->data);
    } else if (!json_node_equal (wn, gn)) {
      g_error ("member \"%s\" differs from the documented value", (const char *) m->data);
    }
  }
}

/* One request block: "METHOD PATH", headers, a blank line, a body. */
static Response *
replay_request (Replay *rp, char **lines)
{
  g_auto (GStrv) first = g_strsplit (lines[0], " ", 2);
  g_autofree char *path = replay_expand (rp, first[1]);
  g_autofree char *url = g_strconcat (rp->f->base, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (first[0], url);
  g_assert_nonnull (msg);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  g_autofree char *type = NULL;
  guint i = 1;
  for (; lines[i] != NULL && *lines[i] != '\0'; i++) {
    g_auto (GStrv) kv = g_strsplit (lines[i], ": ", 2);
    g_autofree char *value = replay_expand (rp, kv[1]);
    if (g_ascii_strcasecmp (kv[0], "Content-Type") == 0)
      type = g_steal_pointer (&value);
    else
      soup_message_headers_replace (headers, kv[0], value);
  }
  if (lines[i] != NULL && lines[i + 1] != NULL) {
    g_autofree char *shown = g_strjoinv ("\n", lines + i + 1);
    const char *name = replay_placeholder (shown);
    g_autoptr (GBytes) body = NULL;
    if (name != NULL)
      body = g_bytes_ref (replay_var (rp, name));
    else {
      g_autofree char *text = replay_expand (rp, shown);
      body = g_bytes_new (text, strlen (text));
    }
    soup_message_set_request_body_from_bytes (msg, type, body);
  }
  GBytes *out = NULL;
  soup_session_send_and_read_async (rp->f->session, msg, G_PRIORITY_DEFAULT, NULL, sent, &out);
  while (out == NULL)
    g_main_context_iteration (NULL, TRUE);
  Response *r = g_new0 (Response, 1);
  r->status = soup_message_get_status (msg);
  r->body = out;
  r->headers = soup_message_headers_ref (soup_message_get_response_headers (msg));
  return r;
}

/* One answer block: "HTTP/1.1 STATUS REASON", headers, a blank line, a body. */
static void
replay_response (Replay *rp, char **lines, Response *r)
{
  g_auto (GStrv) first = g_strsplit (lines[0], " ", 3);
  g_assert_cmpuint (r->status, ==, (guint) g_ascii_strtoull (first[1], NULL, 10));
  guint i = 1;
  for (; lines[i] != NULL && *lines[i] != '\0'; i++) {
    g_auto (GStrv) kv = g_strsplit (lines[i], ": ", 2);
    const char *got = soup_message_headers_get_one (r->headers, kv[0]);
    if (got == NULL)
      g_error ("the answer lacks the documented header %s", kv[0]);
    g_autoptr (GBytes) value = g_bytes_new (got, strlen (got));
    replay_match (rp, kv[1], value, kv[0]);
  }
  if (lines[i] == NULL || lines[i + 1] == NULL) {
    g_assert_cmpuint (g_bytes_get_size (r->body), ==, 0);
    return;
  }
  g_autofree char *shown = g_strjoinv ("\n", lines + i + 1);
  if (shown[0] == '{')
    replay_json (rp, shown, r->body);
  else
    replay_match (rp, shown, r->body, "body");
}

/* The ```http blocks of the document, in order. */
static GPtrArray *
doc_http_blocks (void)
{
  const char *root = g_getenv ("TALLY_SOURCE_ROOT");
  g_assert_nonnull (root);
  g_autofree char *path = g_build_filename (root, "docs", "issuer-api.md", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_assert_no_error (error);
  GPtrArray *blocks = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    if (strcmp (lines[i], "```http") != 0)
      continue;
    g_autoptr (GStrvBuilder) block = g_strv_builder_new ();
    for (i++; lines[i] != NULL && strcmp (lines[i], "```") != 0; i++)
      g_strv_builder_add (block, lines[i]);
    g_assert_nonnull (lines[i]);
    g_ptr_array_add (blocks, g_strv_builder_end (block));
  }
  return blocks;
}

static void
test_doc_examples_replay (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  Replay rp = {
    .f = f,
    .vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_bytes_unref),
    .reg = reg,
  };
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, DOC_ACCOUNT, proof);
  g_autofree char *key = tally_hex_encode (reg->pk, sizeof reg->pk);
  g_autofree char *sig = tally_hex_encode (proof, sizeof proof);
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  replay_set (&rp, "OPERATOR_TOKEN", f->operator_hex);
  replay_set (&rp, "REGISTER_KEY", key);
  replay_set (&rp, "ENROL_PROOF", sig);
  replay_set (&rp, "REGISTER_ID", id);

  g_autoptr (GPtrArray) blocks = doc_http_blocks ();
  g_assert_cmpuint (blocks->len, >=, 2);
  g_assert_cmpuint (blocks->len % 2, ==, 0);
  for (guint i = 0; i < blocks->len; i += 2) {
    char **req = blocks->pdata[i];
    char **res = blocks->pdata[i + 1];
    g_test_message ("example %u: %s", i / 2 + 1, req[0]);
    g_assert_false (g_str_has_prefix (req[0], "HTTP/"));
    g_assert_true (g_str_has_prefix (res[0], "HTTP/1.1 "));
    g_autoptr (Response) r = replay_request (&rp, req);
    replay_response (&rp, res, r);
  }
  /* The examples left the books as they say. */
  TallyAudit a = audit_of (f);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.offline, ==, 2500);
  g_hash_table_unref (rp.vars);
}

/* --- the daemon --- */

static char *
wait_for_file (const char *path)
{
  for (guint i = 0; i < 200; i++) {
    char *text = NULL;
    if (g_file_get_contents (path, &text, NULL, NULL) && strchr (text, '\n') != NULL)
      return text;
    g_free (text);
    g_usleep (50 * 1000);
  }
  g_assert_not_reached ();
}

static void
test_daemon_serves_and_stops_on_sigterm (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (issuer);
  g_clear_pointer (&issuer, tally_issuer_free);

  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_autofree char *port_file = g_build_filename (tmp, "port", NULL);
  g_assert_true (g_file_set_contents (conf,
                                      "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                      "max_body_bytes=4096\n",
                                      -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, issuerd_path, "--config", conf,
                      "--port-file", port_file, NULL);
  g_assert_no_error (error);
  g_autofree char *port = wait_for_file (port_file);

  Fixture f = { 0 };
  f.base = g_strdup_printf ("http://127.0.0.1:%u", (guint) g_ascii_strtoull (port, NULL, 10));
  f.session = soup_session_new ();
  g_autoptr (Response) r = request (&f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  assert_protobuf (r, SOUP_STATUS_OK);
  g_assert_true (g_bytes_equal (r->body, key_set));
  /* No operator token is configured: the operator endpoints are off. */
  g_autoptr (Response) op = request (&f, "GET", "/v1/operator/audit", NULL, NULL, NULL, NULL);
  assert_refused (op, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_NOT_AUTHORIZED);
  g_clear_object (&f.session);
  g_free (f.base);

  g_subprocess_send_signal (proc, SIGTERM);
  g_assert_true (g_subprocess_wait (proc, NULL, &error));
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  test_remove_tree (tmp);
}

static void
test_daemon_refuses_plain_http_off_loopback (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("tally-issuerd-test-XXXXXX", &error);
  g_autofree char *dir = g_build_filename (tmp, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_create (dir, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autofree char *conf = g_build_filename (tmp, "issuerd.conf", NULL);
  g_assert_true (
    g_file_set_contents (conf, "[issuer]\ndir=issuer\n[http]\nlisten=0.0.0.0:0\n", -1, &error));
  g_autoptr (GSubprocess) proc =
    g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, issuerd_path, "--config", conf, NULL);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "plain HTTP"));
  test_remove_tree (tmp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_assert_cmpint (argc, ==, 2);
  issuerd_path = argv[1];
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuerd/keys/etag-and-not-modified", test_keys_with_etag_and_not_modified);
  ADD ("/issuerd/revocations/etag-follows-the-list", test_revocations_etag_follows_the_list);
  ADD ("/issuerd/enrol/certificate-with-accounts-display-name",
       test_enrol_gives_certificate_with_display_name);
  ADD ("/issuerd/enrol/bad-proof-refused", test_enrol_refuses_bad_proof);
  ADD ("/issuerd/enrol/wrong-token-refused", test_enrol_refuses_wrong_token);
  ADD ("/issuerd/enrol/replay-refused", test_enrol_refuses_replay);
  ADD ("/issuerd/voucher/bought-against-balance", test_voucher_bought_against_balance);
  ADD ("/issuerd/voucher/refusals-change-nothing", test_voucher_refusals_change_nothing);
  ADD ("/issuerd/reconcile/same-bundle-twice-same-bytes-books-once",
       test_reconcile_twice_same_bytes_books_once);
  ADD ("/issuerd/reconcile/forged-bundle-refused", test_reconcile_refuses_forged_bundle);
  ADD ("/issuerd/hostile/oversized-body-413", test_oversized_body_refused_unread);
  ADD ("/issuerd/hostile/wrong-content-type-415", test_wrong_content_type_refused);
  ADD ("/issuerd/hostile/truncated-protobuf-400", test_truncated_protobuf_refused);
  ADD ("/issuerd/hostile/unknown-path-or-method", test_unknown_paths_and_methods_refused);
  ADD ("/issuerd/hostile/slow-client-cut-off", test_slow_client_cut_off);
  ADD ("/issuerd/operator/needs-operator-token", test_operator_endpoints_need_operator_token);
  ADD ("/issuerd/operator/new-token-replaces-old", test_new_token_replaces_old);
  g_test_add ("/issuerd/docs/examples-replay", Fixture, "bare", fixture_setup,
              test_doc_examples_replay, fixture_teardown);
  g_test_add_func ("/issuerd/listen/plain-http-only-on-loopback", test_plain_http_only_on_loopback);
  g_test_add_func ("/issuerd/errors/every-code-has-a-status", test_error_table_covers_every_code);
  g_test_add_func ("/issuerd/daemon/serves-and-stops-on-sigterm",
                   test_daemon_serves_and_stops_on_sigterm);
  g_test_add_func ("/issuerd/daemon/refuses-plain-http-off-loopback",
                   test_daemon_refuses_plain_http_off_loopback);
  return g_test_run ();
}
