/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd over real HTTP on 127.0.0.1: the server runs in this
 * process on an ephemeral port and a SoupSession drives every endpoint and
 * every hostile input.  Every refusal is checked for its status, its error
 * name, and an unchanged audit.  test-issuerd-daemon.c runs the binary.
 */
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "issuerd-test-util.h"
#include "tally-hex.h"

/* --- keys and revocations --- */

static void
test_keys_with_etag_and_not_modified (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (IssuerdResponse) r = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (r, SOUP_STATUS_OK);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (f->issuer);
  g_assert_true (g_bytes_equal (r->body, key_set));
  const char *etag = soup_message_headers_get_one (r->headers, "ETag");
  g_assert_nonnull (etag);

  g_autoptr (IssuerdResponse) again =
    issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, etag);
  g_assert_cmpuint (again->status, ==, SOUP_STATUS_NOT_MODIFIED);
  g_assert_cmpuint (g_bytes_get_size (again->body), ==, 0);
  g_assert_cmpstr (soup_message_headers_get_one (again->headers, "ETag"), ==, etag);

  g_autoptr (IssuerdResponse) other =
    issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, "\"other\"");
  issuerd_assert_protobuf (other, SOUP_STATUS_OK);
  g_assert_true (g_bytes_equal (other->body, key_set));
}

static Tally__RevocationList *
open_revocation_list (IssuerdFixture *f, GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
  Tally__RevocationList *list =
    tally_revocation_list_verify (env, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  return list;
}

static void
test_revocations_etag_follows_the_list (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "GET", "/v1/revocations", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (r, SOUP_STATUS_OK);
  g_autoptr (Tally__RevocationList) list = open_revocation_list (f, r->body);
  g_assert_cmpuint (list->n_revoked_register_ids, ==, 0);
  g_autofree char *etag = g_strdup (soup_message_headers_get_one (r->headers, "ETag"));

  g_autoptr (IssuerdResponse) same =
    issuerd_request (f, "GET", "/v1/revocations", NULL, NULL, NULL, etag);
  g_assert_cmpuint (same->status, ==, SOUP_STATUS_NOT_MODIFIED);

  g_autofree char *hex = tally_hex_encode (reg->id, sizeof reg->id);
  g_autofree char *json = g_strdup_printf ("{\"register_id\": \"%s\"}", hex);
  g_autoptr (IssuerdResponse) revoke =
    issuerd_post_json (f, "/v1/operator/revocations", f->operator_hex, json);
  g_assert_cmpuint (revoke->status, ==, SOUP_STATUS_OK);

  g_autoptr (IssuerdResponse) changed =
    issuerd_request (f, "GET", "/v1/revocations", NULL, NULL, NULL, etag);
  issuerd_assert_protobuf (changed, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (changed->headers, "ETag"), !=, etag);
  g_autoptr (Tally__RevocationList) now = open_revocation_list (f, changed->body);
  g_assert_cmpuint (now->serial, ==, list->serial + 1);
  g_assert_true (tally_revocation_list_contains (now, reg->id));
}

/* --- enrolment --- */

static IssuerdResponse *
enrol (IssuerdFixture *f,
       const char *account,
       const char *token,
       const TestRegister *reg,
       const guint8 proof[TALLY_SIGNATURE_BYTES])
{
  g_autofree char *key = tally_hex_encode (reg->pk, sizeof reg->pk);
  g_autofree char *sig = tally_hex_encode (proof, TALLY_SIGNATURE_BYTES);
  g_autofree char *json = g_strdup_printf ("{\"public_key\": \"%s\", \"proof\": \"%s\"}", key, sig);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/%s/registers", account);
  return issuerd_post_json (f, path, token, json);
}

static void
test_enrol_gives_certificate_with_display_name (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (IssuerdResponse) r = enrol (f, "alice", f->alice_token, reg, proof);
  issuerd_assert_protobuf (r, SOUP_STATUS_CREATED);

  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (r->body);
  g_autoptr (Tally__RegisterCertificate) cert = tally_certificate_verify (
    env, tally_issuer_get_public_key (f->issuer), issuerd_test_clock (NULL), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (cert->display_name, ==, "Alice's Bakery");
  g_assert_cmpmem (cert->register_public_key.data, cert->register_public_key.len, reg->pk,
                   sizeof reg->pk);
  g_assert_cmpuint (cert->not_before, ==, issuerd_test_clock (NULL));
  g_assert_cmpuint (issuerd_audit (f).registers, ==, 1);

  /* Had that answer been lost, an empty bundle renews the certificate. */
  g_autoptr (TestBundle) tb = test_bundle_new (reg);
  g_autoptr (GBytes) empty = test_bundle_sign (tb);
  g_autoptr (IssuerdResponse) res = issuerd_post_protobuf (f, "/v1/reconcile", empty);
  issuerd_assert_protobuf (res, SOUP_STATUS_OK);
  g_autoptr (Tally__ReconciliationResult) result = test_result_open (f->issuer, res->body);
  g_assert_nonnull (result->renewed_certificate);
  g_autoptr (Tally__RegisterCertificate) renewed =
    tally_certificate_verify (result->renewed_certificate, tally_issuer_get_public_key (f->issuer),
                              issuerd_test_clock (NULL), &error);
  g_assert_no_error (error);
  g_assert_cmpmem (renewed->register_id.data, renewed->register_id.len, reg->id, sizeof reg->id);
  g_assert_cmpstr (renewed->display_name, ==, "Alice's Bakery");
}

static void
test_enrol_refuses_bad_proof (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  TallyAudit before = issuerd_audit (f);
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, other, "alice", proof);
  g_autoptr (IssuerdResponse) r = enrol (f, "alice", f->alice_token, reg, proof);
  issuerd_assert_refused (r, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);

  /* A proof made for bob's account does not enrol into alice's. */
  test_enrol_proof (f->issuer, reg, "bob", proof);
  g_autoptr (IssuerdResponse) moved = enrol (f, "alice", f->alice_token, reg, proof);
  issuerd_assert_refused (moved, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (IssuerdResponse) bad_json = issuerd_post_json (
    f, "/v1/accounts/alice/registers", f->alice_token, "{\"public_key\": \"00\"}");
  issuerd_assert_refused (bad_json, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
}

static void
test_enrol_refuses_wrong_token (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  TallyAudit before = issuerd_audit (f);

  /* bob's token used on alice's account, none, a malformed one, and the
   * operator's, which is no account credential. */
  const char *tokens[] = { f->bob_token, NULL, "abcd", f->operator_hex };
  for (gsize i = 0; i < G_N_ELEMENTS (tokens); i++) {
    g_autoptr (IssuerdResponse) r = enrol (f, "alice", tokens[i], reg, proof);
    issuerd_assert_refused (r, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
    g_assert_nonnull (soup_message_headers_get_one (r->headers, "WWW-Authenticate"));
  }
  /* An account that does not exist answers as a wrong token does. */
  g_autoptr (IssuerdResponse) nobody = enrol (f, "nobody", f->alice_token, reg, proof);
  issuerd_assert_refused (nobody, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_assert_cmpuint (after.registers, ==, 0);
}

/* The same enrolment again (its answer was lost) gets 200 and a current
 * certificate for the same register; the key for another account, even
 * with that account's token and a valid proof, stays 409 Replay. */
static void
test_enrol_again_renews_and_another_account_is_refused (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 proof[TALLY_SIGNATURE_BYTES];
  test_enrol_proof (f->issuer, reg, "alice", proof);
  g_autoptr (IssuerdResponse) first = enrol (f, "alice", f->alice_token, reg, proof);
  issuerd_assert_protobuf (first, SOUP_STATUS_CREATED);
  TallyAudit before = issuerd_audit (f);

  g_autoptr (IssuerdResponse) again = enrol (f, "alice", f->alice_token, reg, proof);
  issuerd_assert_protobuf (again, SOUP_STATUS_OK);
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (again->body);
  g_autoptr (Tally__RegisterCertificate) cert = tally_certificate_verify (
    env, tally_issuer_get_public_key (f->issuer), issuerd_test_clock (NULL), &error);
  g_assert_no_error (error);
  g_assert_cmpmem (cert->register_id.data, cert->register_id.len, reg->id, sizeof reg->id);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_assert_cmpuint (after.registers, ==, 1);

  test_enrol_proof (f->issuer, reg, "bob", proof);
  g_autoptr (IssuerdResponse) other = enrol (f, "bob", f->bob_token, reg, proof);
  issuerd_assert_refused (other, SOUP_STATUS_CONFLICT, TALLY_ERROR_REPLAY);
  TallyAudit last = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &last);
}

/* --- vouchers --- */

static IssuerdResponse *
buy_as (IssuerdFixture *f,
        const char *account,
        const char *token,
        const TestRegister *reg,
        gint64 amount,
        const char *request_id)
{
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/%s/registers/%s/vouchers", account, id);
  g_autofree char *json = g_strdup_printf (
    "{\"amount\": %" G_GINT64_FORMAT ", \"request_id\": \"%s\"}", amount, request_id);
  return issuerd_post_json (f, path, token, json);
}

/* A purchase under a fresh request id. */
static IssuerdResponse *
buy (IssuerdFixture *f,
     const char *account,
     const char *token,
     const TestRegister *reg,
     gint64 amount)
{
  guint8 request[TALLY_VOUCHER_REQUEST_ID_BYTES];
  randombytes_buf (request, sizeof request);
  g_autofree char *hex = tally_hex_encode (request, sizeof request);
  return buy_as (f, account, token, reg, amount, hex);
}

static void
test_voucher_retry_gets_same_voucher (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  const char *request = "00112233445566778899aabbccddeeff";
  g_autoptr (IssuerdResponse) first = buy_as (f, "alice", f->alice_token, reg, 2500, request);
  issuerd_assert_protobuf (first, SOUP_STATUS_CREATED);
  g_assert_cmpstr (soup_message_headers_get_one (first->headers, "X-Tally-Repeated"), ==, "no");
  TallyAudit after_first = issuerd_audit (f);

  g_autoptr (IssuerdResponse) again = buy_as (f, "alice", f->alice_token, reg, 2500, request);
  issuerd_assert_protobuf (again, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (again->headers, "X-Tally-Repeated"), ==, "yes");
  g_assert_true (g_bytes_equal (first->body, again->body));

  g_autoptr (IssuerdResponse) other = buy_as (f, "alice", f->alice_token, reg, 100, request);
  issuerd_assert_refused (other, SOUP_STATUS_CONFLICT, TALLY_ERROR_REPLAY);
  g_autoptr (IssuerdResponse) none =
    issuerd_post_json (f, "/v1/accounts/alice/registers/00000000000000000000000000000000/vouchers",
                       f->alice_token, "{\"amount\": 100}");
  issuerd_assert_refused (none, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&after_first, &after);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000 - 2500);
}

static void
test_voucher_bought_against_balance (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (IssuerdResponse) r = buy (f, "alice", f->alice_token, reg, 2500);
  issuerd_assert_protobuf (r, SOUP_STATUS_CREATED);
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
  g_assert_cmpuint (v->issued_at, ==, issuerd_test_clock (NULL));
  g_assert_cmpmem (v->register_id.data, v->register_id.len, reg->id, sizeof reg->id);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000 - 2500);

  g_autoptr (IssuerdResponse) mine =
    issuerd_request (f, "GET", "/v1/accounts/alice", f->alice_token, NULL, NULL, NULL);
  g_assert_cmpuint (mine->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = issuerd_response_object (mine);
  g_assert_cmpint (json_object_get_int_member (obj, "balance"), ==, 7500);
  g_assert_cmpstr (json_object_get_string_member (obj, "currency"), ==, "EUR");
}

static void
test_voucher_refusals_change_nothing (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) bobs = test_register_new (f->issuer, "bob");
  TallyAudit before = issuerd_audit (f);

  /* More than the account holds (within the register's cap). */
  g_autoptr (IssuerdResponse) broke = buy (f, "alice", f->alice_token, reg, 10001);
  issuerd_assert_refused (broke, SOUP_STATUS_CONFLICT, TALLY_ERROR_INSUFFICIENT_FUNDS);
  /* alice's token buying for bob's register, with bob's money: to alice,
   * bob's register is as unknown as one that does not exist. */
  g_autoptr (IssuerdResponse) theft = buy (f, "alice", f->alice_token, bobs, 100);
  issuerd_assert_refused (theft, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autoptr (TestRegister) nobodys = test_register_new_uncertified ();
  g_autoptr (IssuerdResponse) unknown = buy (f, "alice", f->alice_token, nobodys, 100);
  issuerd_assert_refused (unknown, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_assert_true (g_bytes_equal (theft->body, unknown->body));
  /* alice's token on bob's account path. */
  g_autoptr (IssuerdResponse) stolen = buy (f, "bob", f->alice_token, bobs, 100);
  issuerd_assert_refused (stolen, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (IssuerdResponse) zero = buy (f, "alice", f->alice_token, reg, 0);
  issuerd_assert_refused (zero, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  g_autoptr (IssuerdResponse) bad_id =
    issuerd_post_json (f, "/v1/accounts/alice/registers/xyz/vouchers", f->alice_token,
                       "{\"amount\": 100, \"request_id\": \"00112233445566778899aabbccddeeff\"}");
  issuerd_assert_refused (bad_id, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);

  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000);
  g_assert_cmpint (issuerd_balance (f, "bob"), ==, 10000);
}

static void
test_owner_reports_register_lost (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) bobs = test_register_new (f->issuer, "bob");
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  g_autofree char *bob_id = tally_hex_encode (bobs->id, sizeof bobs->id);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/alice/registers/%s/lost", id);
  g_autofree char *theirs = g_strdup_printf ("/v1/accounts/alice/registers/%s/lost", bob_id);
  g_autofree char *via_bob = g_strdup_printf ("/v1/accounts/bob/registers/%s/lost", id);
  TallyAudit before = issuerd_audit (f);

  /* Nobody reports another account's register lost. */
  g_autoptr (IssuerdResponse) r1 =
    issuerd_request (f, "POST", theirs, f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (r1, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  /* The very answer a register that does not exist gets. */
  g_autoptr (IssuerdResponse) r0 = issuerd_request (
    f, "POST", "/v1/accounts/alice/registers/00000000000000000000000000000000/lost", f->alice_token,
    NULL, NULL, NULL);
  issuerd_assert_refused (r0, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_assert_true (g_bytes_equal (r0->body, r1->body));
  g_autoptr (IssuerdResponse) r2 =
    issuerd_request (f, "POST", via_bob, f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (r2, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (IssuerdResponse) r3 =
    issuerd_request (f, "POST", via_bob, f->bob_token, NULL, NULL, NULL);
  issuerd_assert_refused (r3, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  TallyAudit after_refusals = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after_refusals);

  g_autoptr (IssuerdResponse) ok =
    issuerd_request (f, "POST", path, f->alice_token, NULL, NULL, NULL);
  g_assert_cmpuint (ok->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = issuerd_response_object (ok);
  g_assert_cmpstr (json_object_get_string_member (obj, "register_id"), ==, id);
  g_assert_true (json_object_get_boolean_member (obj, "revoked"));

  /* Revoked at once: the list devices fetch carries it, and it buys nothing. */
  g_autoptr (IssuerdResponse) list =
    issuerd_request (f, "GET", "/v1/revocations", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (list, SOUP_STATUS_OK);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (list->body);
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__RevocationList) rl =
    tally_revocation_list_verify (env, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  g_assert_true (tally_revocation_list_contains (rl, reg->id));
  g_assert_false (tally_revocation_list_contains (rl, bobs->id));
  g_autoptr (IssuerdResponse) v = buy (f, "alice", f->alice_token, reg, 100);
  issuerd_assert_refused (v, SOUP_STATUS_CONFLICT, TALLY_ERROR_REVOKED);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000);
}

static guint64
variable_clock (gpointer user_data)
{
  return *(guint64 *) user_data;
}

/* The lost register's audit row, from GET /v1/operator/audit. */
static gint64
audit_refunded (IssuerdFixture *f, const char *id)
{
  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "GET", "/v1/operator/audit", f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) audit = issuerd_response_object (r);
  g_assert_true (json_object_get_boolean_member (audit, "identity"));
  JsonArray *rows = json_object_get_array_member (audit, "flagged");
  for (guint i = 0; i < json_array_get_length (rows); i++) {
    JsonObject *row = json_array_get_object_element (rows, i);
    if (g_strcmp0 (json_object_get_string_member (row, "register_id"), id) == 0)
      return json_object_get_int_member (row, "refunded");
  }
  g_assert_not_reached ();
}

static JsonObject *
refund_now (IssuerdFixture *f, const char *token, guint status)
{
  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "POST", "/v1/operator/refund-lost", token, NULL, NULL, NULL);
  g_assert_cmpuint (r->status, ==, status);
  return status == SOUP_STATUS_OK ? issuerd_response_object (r) : NULL;
}

static void
test_lost_register_refunded_after_window (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  g_autoptr (GBytes) voucher =
    tally_issuer_sell_voucher (f->issuer, reg->id, 3000, TEST_NOW, &error);
  g_assert_no_error (error);
  guint64 now = TEST_NOW + 60;
  tally_issuer_http_set_clock (f->http, variable_clock, &now, NULL);

  g_autofree char *path = g_strdup_printf ("/v1/accounts/alice/registers/%s/lost", id);
  g_autoptr (IssuerdResponse) lost =
    issuerd_request (f, "POST", path, f->alice_token, NULL, NULL, NULL);
  g_assert_cmpuint (lost->status, ==, SOUP_STATUS_OK);
  /* Certified for 30 days (test_register_new ()). */
  guint64 due = tally_issuer_lost_refund_due (now, TEST_NOW + 30 * 86400);

  /* An account token does not run it. */
  g_assert_null (refund_now (f, f->alice_token, SOUP_STATUS_UNAUTHORIZED));
  now = due - 1;
  g_autoptr (JsonObject) early = refund_now (f, f->operator_hex, SOUP_STATUS_OK);
  g_assert_cmpint (json_object_get_int_member (early, "refunded"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (early, "waiting"), ==, 1);
  g_assert_cmpint (json_object_get_int_member (early, "next_due"), ==, (gint64) due);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000 - 3000);

  now = due;
  g_autoptr (JsonObject) paid = refund_now (f, f->operator_hex, SOUP_STATUS_OK);
  g_assert_cmpint (json_object_get_int_member (paid, "refunded"), ==, 1);
  g_assert_cmpint (json_object_get_int_member (paid, "refunded_amount"), ==, 3000);
  g_autoptr (JsonObject) again = refund_now (f, f->operator_hex, SOUP_STATUS_OK);
  g_assert_cmpint (json_object_get_int_member (again, "refunded"), ==, 0);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000);
  g_assert_cmpint (audit_refunded (f, id), ==, 3000);

  /* The periodic run does the same without anyone asking. */
  g_autoptr (TestRegister) bobs = test_register_new (f->issuer, "bob");
  g_autofree char *bob_id = tally_hex_encode (bobs->id, sizeof bobs->id);
  g_autoptr (GBytes) v2 = tally_issuer_sell_voucher (f->issuer, bobs->id, 700, now, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_report_lost (f->issuer, "bob", bobs->id, now, &error));
  g_assert_no_error (error);
  now = tally_issuer_lost_refund_due (now, TEST_NOW + 30 * 86400);
  tally_issuer_http_set_refund_interval (f->http, 1);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (issuerd_balance (f, "bob") != 10000 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (issuerd_balance (f, "bob"), ==, 10000);
  g_assert_cmpint (audit_refunded (f, bob_id), ==, 700);

  tally_issuer_http_set_refund_interval (f->http, 0);
  tally_issuer_http_set_clock (f->http, issuerd_test_clock, NULL, NULL);
}

/* --- reconciliation --- */

/* A real bundle: alice's register loaded, paid bob's and defunded. */
static GBytes *
busy_bundle (IssuerdFixture *f, TestRegister *payer, const TestRegister *payee)
{
  g_autoptr (IssuerdResponse) v = buy (f, "alice", f->alice_token, payer, 5000);
  issuerd_assert_protobuf (v, SOUP_STATUS_CREATED);
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
test_reconcile_twice_same_bytes_books_once (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);

  g_autoptr (IssuerdResponse) first = issuerd_post_protobuf (f, "/v1/reconcile", bundle);
  issuerd_assert_protobuf (first, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (first->headers, "X-Tally-Repeated"), ==, "no");
  g_autoptr (Tally__ReconciliationResult) res = test_result_open (f->issuer, first->body);
  g_assert_cmpuint (res->settled_counter, ==, 2);
  g_assert_nonnull (res->renewed_certificate);
  TallyAudit after_first = issuerd_audit (f);
  g_assert_true (after_first.identity);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000 - 5000 + 1000);

  g_autoptr (IssuerdResponse) second = issuerd_post_protobuf (f, "/v1/reconcile", bundle);
  issuerd_assert_protobuf (second, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (second->headers, "X-Tally-Repeated"), ==, "yes");
  g_assert_true (g_bytes_equal (first->body, second->body));
  TallyAudit after_second = issuerd_audit (f);
  issuerd_assert_audit_equal (&after_first, &after_second);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000 - 5000 + 1000);
}

static void
test_reconcile_rewrapped_bundle_gets_kept_result (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  g_autoptr (IssuerdResponse) first = issuerd_post_protobuf (f, "/v1/reconcile", bundle);
  issuerd_assert_protobuf (first, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (first->headers, "X-Tally-Repeated"), ==, "no");
  TallyAudit after_first = issuerd_audit (f);

  /* The same envelope with an unknown field (15, varint 1) after it. */
  g_autoptr (GByteArray) wrapped = g_byte_array_new ();
  g_byte_array_append (wrapped, g_bytes_get_data (bundle, NULL), g_bytes_get_size (bundle));
  g_byte_array_append (wrapped, (const guint8 *) "\x78\x01", 2);
  g_autoptr (GBytes) rewrapped = g_byte_array_free_to_bytes (g_steal_pointer (&wrapped));
  g_assert_false (g_bytes_equal (rewrapped, bundle));
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (rewrapped);
  g_assert_nonnull (env);

  g_autoptr (IssuerdResponse) second = issuerd_post_protobuf (f, "/v1/reconcile", rewrapped);
  issuerd_assert_protobuf (second, SOUP_STATUS_OK);
  g_assert_cmpstr (soup_message_headers_get_one (second->headers, "X-Tally-Repeated"), ==, "yes");
  /* The same bytes: the same renewed certificate, no new serial (a second
   * reconciliation would have signed one with the next serial). */
  g_assert_true (g_bytes_equal (first->body, second->body));
  TallyAudit after_second = issuerd_audit (f);
  issuerd_assert_audit_equal (&after_first, &after_second);

  /* A kept result is no answer to a signature that does not check. */
  env->signature.data[0] ^= 1;
  g_autoptr (GBytes) forged = tally_envelope_pack (env);
  g_autoptr (IssuerdResponse) third = issuerd_post_protobuf (f, "/v1/reconcile", forged);
  issuerd_assert_refused (third, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_reconcile_refuses_forged_bundle (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestBundle) tb = test_bundle_new (a);
  g_autoptr (GBytes) forged = test_bundle_sign_with (tb, b->sk);
  TallyAudit before = issuerd_audit (f);
  g_autoptr (IssuerdResponse) r = issuerd_post_protobuf (f, "/v1/reconcile", forged);
  issuerd_assert_refused (r, SOUP_STATUS_FORBIDDEN, TALLY_ERROR_BAD_SIGNATURE);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
}

/* --- hostile input --- */

static void
test_oversized_body_refused_unkept (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  TallyAudit before = issuerd_audit (f);
  g_autofree guint8 *junk = g_malloc0 (64 * 1024 + 1);
  g_autoptr (GBytes) body = g_bytes_new_take (g_steal_pointer (&junk), 64 * 1024 + 1);
  g_autoptr (IssuerdResponse) r = issuerd_post_protobuf (f, "/v1/reconcile", body);
  issuerd_assert_refused (r, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, TALLY_ERROR_FRAME_OVERSIZE);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);

  /* The server still answers afterwards. */
  g_autoptr (IssuerdResponse) keys = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (keys, SOUP_STATUS_OK);
}

static IssuerdResponse *
post_json_len (IssuerdFixture *f, const char *path, const char *token, GString *json)
{
  g_autoptr (GBytes) body = g_bytes_new (json->str, json->len);
  return issuerd_request (f, "POST", path, token, "application/json", body, NULL);
}

static void
test_deeply_nested_json_refused_daemon_alive (IssuerdFixture *f, gconstpointer data)
{
  TallyAudit before = issuerd_audit (f);
  /* 100000 '[' are over the JSON body cap, and refused before they are in. */
  g_autoptr (GString) huge = g_string_new (NULL);
  for (guint i = 0; i < 100000; i++)
    g_string_append_c (huge, '[');
  g_autoptr (IssuerdResponse) r =
    post_json_len (f, "/v1/accounts/alice/registers", f->alice_token, huge);
  issuerd_assert_refused (r, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, TALLY_ERROR_FRAME_OVERSIZE);

  /* Within the cap: nesting deeper than 16 is never parsed, however it
   * hides behind what json-glib takes beyond JSON (strings in single
   * quotes, comments). */
  static const char *const prefixes[] = { "", "{\"a\": ", "['\"', ", "[// \"\n", "[/* \" */ " };
  for (gsize p = 0; p < G_N_ELEMENTS (prefixes); p++) {
    g_autoptr (GString) deep = g_string_new (prefixes[p]);
    for (guint i = 0; i < 4000; i++)
      g_string_append_c (deep, '[');
    g_test_message ("%s then 4000 '['", prefixes[p]);
    g_autoptr (IssuerdResponse) d =
      post_json_len (f, "/v1/accounts/alice/registers", f->alice_token, deep);
    issuerd_assert_refused (d, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  }
  /* 17 levels are refused; a '[' inside a string is no level. */
  g_autoptr (GString) seventeen = g_string_new ("{\"name\": ");
  for (guint i = 0; i < 16; i++)
    g_string_append_c (seventeen, '[');
  g_autoptr (IssuerdResponse) s17 =
    post_json_len (f, "/v1/operator/accounts", f->operator_hex, seventeen);
  issuerd_assert_refused (s17, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  g_autofree char *brackets = g_strnfill (40, '[');
  g_autofree char *named =
    g_strdup_printf ("{\"name\": \"carol\", \"display_name\": \"%s\\\"\"}", brackets);
  g_autoptr (IssuerdResponse) ok =
    issuerd_post_json (f, "/v1/operator/accounts", f->operator_hex, named);
  g_assert_cmpuint (ok->status, ==, SOUP_STATUS_CREATED);

  /* Alive, and nothing moved. */
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_autoptr (IssuerdResponse) keys = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (keys, SOUP_STATUS_OK);
}

static void
test_wrong_content_type_refused (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  TallyAudit before = issuerd_audit (f);
  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "POST", "/v1/reconcile", NULL, "application/json", bundle, NULL);
  issuerd_assert_refused (r, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, TALLY_ERROR_INVALID_ARGUMENT);
  g_autoptr (IssuerdResponse) j =
    issuerd_request (f, "POST", "/v1/accounts/alice/registers", f->alice_token,
                     "application/x-protobuf", bundle, NULL);
  issuerd_assert_refused (j, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
}

static void
test_truncated_protobuf_refused (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bundle = busy_bundle (f, a, b);
  TallyAudit before = issuerd_audit (f);
  g_autoptr (GBytes) cut = g_bytes_new_from_bytes (bundle, 0, g_bytes_get_size (bundle) - 7);
  g_autoptr (IssuerdResponse) r = issuerd_post_protobuf (f, "/v1/reconcile", cut);
  issuerd_assert_refused (r, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr (IssuerdResponse) e = issuerd_post_protobuf (f, "/v1/reconcile", empty);
  issuerd_assert_refused (e, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_MALFORMED);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
}

static void
test_unknown_paths_and_methods_refused (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (IssuerdResponse) none =
    issuerd_request (f, "GET", "/v1/nothing", NULL, NULL, NULL, NULL);
  issuerd_assert_refused (none, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autoptr (IssuerdResponse) root = issuerd_request (f, "GET", "/", NULL, NULL, NULL, NULL);
  issuerd_assert_refused (root, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autoptr (IssuerdResponse) method =
    issuerd_request (f, "DELETE", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_refused (method, SOUP_STATUS_METHOD_NOT_ALLOWED, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (soup_message_headers_get_one (method->headers, "Allow"), ==, "GET");
  /* An escaped '/' cannot split an account name into a path of its own. */
  g_autoptr (IssuerdResponse) slash =
    issuerd_request (f, "GET", "/v1/accounts/alice%2Fregisters", f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (slash, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
}

static void
test_operator_endpoints_need_operator_token (IssuerdFixture *f, gconstpointer data)
{
  TallyAudit before = issuerd_audit (f);
  g_autoptr (IssuerdResponse) audit =
    issuerd_request (f, "GET", "/v1/operator/audit", f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (audit, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (IssuerdResponse) deposit =
    issuerd_post_json (f, "/v1/operator/accounts/alice/deposit", f->alice_token, "{\"amount\": 5}");
  issuerd_assert_refused (deposit, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (IssuerdResponse) create =
    issuerd_post_json (f, "/v1/operator/accounts", NULL, "{\"name\": \"mallory\"}");
  issuerd_assert_refused (create, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);

  g_autoptr (IssuerdResponse) ok =
    issuerd_request (f, "GET", "/v1/operator/audit", f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (ok->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = issuerd_response_object (ok);
  g_assert_cmpint (json_object_get_int_member (obj, "issued"), ==, after.issued);
  g_assert_cmpint (json_object_get_int_member (obj, "online"), ==, after.online);
  g_assert_true (json_object_get_boolean_member (obj, "identity"));
}

/* A register restored from a backup spends counter 1 twice; the payees'
 * bundles expose it, and the operator sees the proof and the register. */
static void
test_operator_sees_fraud_proofs_and_flagged (IssuerdFixture *f, gconstpointer data)
{
  g_autofree char *carol_token = issuerd_create_account (f, "carol", NULL, 1);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (a->id, genesis);
  const TestRegister *payees[] = { b, c };
  for (gsize i = 0; i < G_N_ELEMENTS (payees); i++) {
    g_autoptr (GBytes) p =
      test_sign_permission (a->sk, a->id, payees[i]->id, "EUR", 1500, 1, genesis, TEST_EXPIRES_AT);
    g_autoptr (GBytes) r = test_receipt (payees[i], p);
    g_autoptr (TestBundle) tb = test_bundle_new (payees[i]);
    test_bundle_add_received (tb, a->cert, p, r);
    g_autoptr (GBytes) bundle = test_bundle_sign (tb);
    g_autoptr (IssuerdResponse) res = issuerd_post_protobuf (f, "/v1/reconcile", bundle);
    issuerd_assert_protobuf (res, SOUP_STATUS_OK);
  }

  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "GET", "/v1/operator/fraud-proofs", f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = issuerd_response_object (r);
  JsonArray *proofs = json_object_get_array_member (obj, "fraud_proofs");
  g_assert_cmpuint (json_array_get_length (proofs), ==, 1);
  JsonObject *fp = json_array_get_object_element (proofs, 0);
  g_autofree char *a_id = tally_hex_encode (a->id, sizeof a->id);
  g_assert_cmpstr (json_object_get_string_member (fp, "register_id"), ==, a_id);
  g_assert_cmpstr (json_object_get_string_member (fp, "kind"), ==, "counter-reused");
  g_autoptr (GPtrArray) stored = tally_issuer_get_fraud_proofs (f->issuer, NULL);
  g_autofree char *stored_hex = tally_hex_encode (g_bytes_get_data (stored->pdata[0], NULL),
                                                  g_bytes_get_size (stored->pdata[0]));
  g_assert_cmpstr (json_object_get_string_member (fp, "proof"), ==, stored_hex);

  g_autoptr (IssuerdResponse) audit =
    issuerd_request (f, "GET", "/v1/operator/audit", f->operator_hex, NULL, NULL, NULL);
  g_autoptr (JsonObject) aobj = issuerd_response_object (audit);
  g_assert_cmpint (json_object_get_int_member (aobj, "fraud_proofs"), ==, 1);
  JsonArray *flagged = json_object_get_array_member (aobj, "flagged");
  g_assert_cmpuint (json_array_get_length (flagged), ==, 1);
  JsonObject *row = json_array_get_object_element (flagged, 0);
  g_assert_cmpstr (json_object_get_string_member (row, "register_id"), ==, a_id);
  g_assert_true (json_object_get_boolean_member (row, "revoked"));
  JsonArray *kinds = json_object_get_array_member (row, "proof_kinds");
  g_assert_cmpstr (json_array_get_string_element (kinds, 0), ==, "counter-reused");

  g_autoptr (IssuerdResponse) theirs =
    issuerd_request (f, "GET", "/v1/operator/fraud-proofs", carol_token, NULL, NULL, NULL);
  issuerd_assert_refused (theirs, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
}

static void
test_new_token_replaces_old (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (IssuerdResponse) r = issuerd_request (f, "POST", "/v1/operator/accounts/alice/token",
                                                   f->operator_hex, NULL, NULL, NULL);
  g_assert_cmpuint (r->status, ==, SOUP_STATUS_OK);
  g_autoptr (JsonObject) obj = issuerd_response_object (r);
  const char *fresh = json_object_get_string_member (obj, "token");
  g_autoptr (IssuerdResponse) old =
    issuerd_request (f, "GET", "/v1/accounts/alice", f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (old, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (IssuerdResponse) now =
    issuerd_request (f, "GET", "/v1/accounts/alice", fresh, NULL, NULL, NULL);
  g_assert_cmpuint (now->status, ==, SOUP_STATUS_OK);
}

/* One bad request: who sends it, what, and the refusal it must get. */
typedef enum
{
  AS_NOBODY,
  AS_ALICE,
  AS_OPERATOR,
} Caller;

typedef struct
{
  const char *method;
  const char *path; /* "%s" is alice's register id */
  Caller caller;
  const char *content_type;
  const char *body;
  guint status;
  TallyError error;
} BadRequest;

static const BadRequest bad_requests[] = {
  /* JSON that is not what the endpoint takes */
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "[1, 2]", 400,
    TALLY_ERROR_MALFORMED },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "{\"name\": ", 400,
    TALLY_ERROR_MALFORMED },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "{\"name\": 7}", 400,
    TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "{\"name\": \"\"}", 400,
    TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json",
    "{\"name\": \"carol\", \"display_name\": \"bad\\u0007name\"}", 400,
    TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "{\"name\": \"alice\"}", 409,
    TALLY_ERROR_EXISTS },
  { "POST", "/v1/operator/accounts", AS_OPERATOR, "application/json", "\xff\xfe{}", 400,
    TALLY_ERROR_MALFORMED },
  { "POST", "/v1/operator/accounts/alice/deposit", AS_OPERATOR, "application/json",
    "{\"amount\": -5}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts/alice/deposit", AS_OPERATOR, "application/json",
    "{\"amount\": \"5\"}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts/alice/deposit", AS_OPERATOR, "application/json",
    "{\"amount\": 1.5}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts/alice/deposit", AS_OPERATOR, "application/json",
    "{\"amount\": 99999999999999999999}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/operator/accounts/nobody/deposit", AS_OPERATOR, "application/json",
    "{\"amount\": 5}", 404, TALLY_ERROR_NOT_FOUND },
  { "POST", "/v1/operator/accounts/nobody/token", AS_OPERATOR, NULL, NULL, 404,
    TALLY_ERROR_NOT_FOUND },
  { "POST", "/v1/operator/revocations", AS_OPERATOR, "application/json",
    "{\"register_id\": \"00000000000000000000000000000000\"}", 404, TALLY_ERROR_NOT_FOUND },
  { "POST", "/v1/operator/revocations", AS_OPERATOR, "application/json",
    "{\"register_id\": \"zz\"}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  /* enrolment with a key that is no Ed25519 point, or bad hex */
  { "POST", "/v1/accounts/alice/registers", AS_ALICE, "application/json",
    "{\"public_key\": \"0000000000000000000000000000000000000000000000000000000000000000\","
    " \"proof\": \"00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000\"}",
    400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/accounts/alice/registers", AS_ALICE, "application/json",
    "{\"public_key\": [], \"proof\": \"\"}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  /* vouchers: no request id, over the register's cap */
  { "POST", "/v1/accounts/alice/registers/%s/vouchers", AS_ALICE, "application/json",
    "{\"amount\": 100}", 400, TALLY_ERROR_INVALID_ARGUMENT },
  { "POST", "/v1/accounts/alice/registers/%s/vouchers", AS_ALICE, "application/json",
    "{\"amount\": 9000000, \"request_id\": \"00112233445566778899aabbccddeeff\"}", 422,
    TALLY_ERROR_LIMIT_BALANCE },
  /* paths */
  { "GET", "/v1/accounts/al%00ice", AS_ALICE, NULL, NULL, 404, TALLY_ERROR_NOT_FOUND },
  { "GET", "/v1/accounts/%ff", AS_ALICE, NULL, NULL, 404, TALLY_ERROR_NOT_FOUND },
  { "GET", "/v1//keys", AS_NOBODY, NULL, NULL, 404, TALLY_ERROR_NOT_FOUND },
  { "GET", "/v1/keys/", AS_NOBODY, NULL, NULL, 404, TALLY_ERROR_NOT_FOUND },
  { "GET", "/v2/keys", AS_NOBODY, NULL, NULL, 404, TALLY_ERROR_NOT_FOUND },
  { "POST", "/v1/keys", AS_NOBODY, "application/x-protobuf", "x", 405,
    TALLY_ERROR_INVALID_ARGUMENT },
};

static void
test_bad_requests_refused_specifically (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  TallyAudit before = issuerd_audit (f);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_requests); i++) {
    const BadRequest *b = &bad_requests[i];
    g_autofree char *path =
      strstr (b->path, "%s") ? g_strdup_printf (b->path, id) : g_strdup (b->path);
    const char *token = b->caller == AS_ALICE      ? f->alice_token
                        : b->caller == AS_OPERATOR ? f->operator_hex
                                                   : NULL;
    g_autoptr (GBytes) body = b->body ? g_bytes_new (b->body, strlen (b->body)) : NULL;
    g_autofree char *shown = g_strescape (b->body ? b->body : "", NULL);
    g_test_message ("%s %s %s", b->method, path, shown);
    g_autoptr (IssuerdResponse) r =
      issuerd_request (f, b->method, path, token, b->content_type, body, NULL);
    issuerd_assert_refused (r, b->status, b->error);
  }
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000);
  /* A refused creation made no account (an empty one moves no total). */
  g_autoptr (IssuerdResponse) carol =
    issuerd_request (f, "GET", "/v1/operator/accounts/carol", f->operator_hex, NULL, NULL, NULL);
  issuerd_assert_refused (carol, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
}

static int
first_column (void *user_data, int n, char **values, char **names)
{
  char **out = user_data;
  if (*out == NULL && n > 0)
    *out = g_strdup (values[0] ? values[0] : "");
  return 0;
}

/* Runs @sqlite or @pg on the fixture's own store; the first column of the
 * first row, or NULL. */
static char *
store_sql (IssuerdFixture *f, const char *sqlite, const char *pg)
{
  if (test_store_is_pg ()) {
    /* The fixture's schema is the newest this process made. */
    g_autofree char *find = g_strdup_printf ("SELECT nspname FROM pg_namespace WHERE nspname "
                                             "LIKE 't%d\\_%%' ORDER BY oid DESC LIMIT 1",
                                             (int) getpid ());
    g_autofree char *schema = test_pg_run (test_pg_conninfo (), find);
    g_assert_nonnull (schema);
    g_autofree char *conninfo = test_pg_schema_conninfo (schema);
    return test_pg_run (conninfo, pg);
  }
  g_autofree char *path = g_build_filename (f->dir, "issuer.db", NULL);
  sqlite3 *db = NULL;
  char *out = NULL;
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, sqlite, first_column, &out, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
  return out;
}

static void
test_account_created_whole_or_not_at_all (IssuerdFixture *f, gconstpointer data)
{
  /* The token is the last thing stored: make storing it fail. */
  g_free (store_sql (
    f,
    "CREATE TRIGGER fail_token BEFORE INSERT ON meta WHEN NEW.key LIKE 'account-token:%' "
    "BEGIN SELECT RAISE(ABORT, 'injected'); END",
    "CREATE FUNCTION fail_token() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'injected'; END $$; "
    "CREATE TRIGGER fail_token BEFORE INSERT ON meta FOR EACH ROW "
    "WHEN (NEW.key LIKE 'account-token:%') EXECUTE FUNCTION fail_token()"));
  TallyAudit before = issuerd_audit (f);
  g_autoptr (IssuerdResponse) r =
    issuerd_post_json (f, "/v1/operator/accounts", f->operator_hex,
                       "{\"name\": \"carol\", \"display_name\": \"Carol\"}");
  issuerd_assert_refused (r, SOUP_STATUS_INTERNAL_SERVER_ERROR, TALLY_ERROR_STORAGE);

  /* No account, no display name: the name is free to create again. */
  g_autoptr (IssuerdResponse) get =
    issuerd_request (f, "GET", "/v1/operator/accounts/carol", f->operator_hex, NULL, NULL, NULL);
  issuerd_assert_refused (get, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND);
  g_autofree char *rows = store_sql (f, "SELECT count(*) FROM meta WHERE key LIKE '%:carol'",
                                     "SELECT count(*) FROM meta WHERE key LIKE '%:carol'");
  g_assert_cmpstr (rows, ==, "0");
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);

  g_free (store_sql (f, "DROP TRIGGER fail_token", "DROP TRIGGER fail_token ON meta"));
  g_autoptr (IssuerdResponse) again =
    issuerd_post_json (f, "/v1/operator/accounts", f->operator_hex,
                       "{\"name\": \"carol\", \"display_name\": \"Carol\"}");
  g_assert_cmpuint (again->status, ==, SOUP_STATUS_CREATED);
}

/* Each amount json-glib would misread, or that is no amount, is refused
 * and credits nothing. */
static void
test_amounts_read_strictly (IssuerdFixture *f, gconstpointer data)
{
  static const struct
  {
    const char *amount;
    TallyError error;
  } bad[] = {
    { "-18446744073709541616", TALLY_ERROR_INVALID_ARGUMENT }, /* wraps to +10000 */
    { "18446744073709551716", TALLY_ERROR_INVALID_ARGUMENT },  /* wraps to 100 */
    { "-1", TALLY_ERROR_INVALID_ARGUMENT },
    { "0", TALLY_ERROR_INVALID_ARGUMENT },
    { "-0", TALLY_ERROR_INVALID_ARGUMENT },
    { "100.0", TALLY_ERROR_INVALID_ARGUMENT },
    { "1e4", TALLY_ERROR_INVALID_ARGUMENT },
    { "9007199254740993", TALLY_ERROR_INVALID_ARGUMENT },  /* TALLY_AMOUNT_MAX + 1 */
    { "12345678901234567", TALLY_ERROR_INVALID_ARGUMENT }, /* 17 digits */
    { "0100", TALLY_ERROR_MALFORMED },                     /* octal to json-glib */
    { "0x64", TALLY_ERROR_MALFORMED },
    { "$64", TALLY_ERROR_MALFORMED },
    { "+100", TALLY_ERROR_MALFORMED },
    { "-", TALLY_ERROR_MALFORMED },
    { "1.", TALLY_ERROR_MALFORMED },
  };
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autofree char *id = tally_hex_encode (reg->id, sizeof reg->id);
  TallyAudit before = issuerd_audit (f);
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *json = g_strdup_printf ("{\"amount\": %s}", bad[i].amount);
    g_test_message ("%s", json);
    g_autoptr (IssuerdResponse) r =
      issuerd_post_json (f, "/v1/operator/accounts/alice/deposit", f->operator_hex, json);
    issuerd_assert_refused (r, SOUP_STATUS_BAD_REQUEST, bad[i].error);
  }
  g_autofree char *path = g_strdup_printf ("/v1/accounts/alice/registers/%s/vouchers", id);
  g_autoptr (IssuerdResponse) v = issuerd_post_json (
    f, path, f->alice_token,
    "{\"amount\": -18446744073709541616, \"request_id\": \"00112233445566778899aabbccddeeff\"}");
  issuerd_assert_refused (v, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT);
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
  g_assert_cmpint (issuerd_balance (f, "alice"), ==, 10000);

  /* The largest amount has 16 digits, and is taken. */
  g_autoptr (IssuerdResponse) ok = issuerd_post_json (
    f, "/v1/operator/accounts/bob/deposit", f->operator_hex, "{\"amount\": 1000000000000000}");
  g_assert_cmpuint (ok->status, ==, SOUP_STATUS_OK);
  g_assert_cmpint (issuerd_balance (f, "bob"), ==, 10000 + 1000000000000000);
}

static void
test_names_from_path_escaped_in_messages (IssuerdFixture *f, gconstpointer data)
{
  g_autoptr (IssuerdResponse) r =
    issuerd_request (f, "GET", "/v1/accounts/evil%0a%1b[2Jname", f->alice_token, NULL, NULL, NULL);
  issuerd_assert_refused (r, SOUP_STATUS_UNAUTHORIZED, TALLY_ERROR_NOT_AUTHORIZED);
  g_autoptr (JsonObject) obj = issuerd_response_object (r);
  const char *message = json_object_get_string_member (obj, "message");
  g_test_message ("%s", message);
  /* The name's newline and escape arrive as "\n" and "\033", never raw. */
  g_assert_nonnull (strstr (message, "evil\\n\\033[2Jname"));
  for (const char *p = message; *p != '\0'; p++)
    g_assert_cmpint ((guchar) *p, >=, 0x20);
  /* UTF-8 in a name stays as it is. */
  g_autoptr (IssuerdResponse) u =
    issuerd_request (f, "GET", "/v1/accounts/caf%c3%a9", f->alice_token, NULL, NULL, NULL);
  g_autoptr (JsonObject) uobj = issuerd_response_object (u);
  g_assert_nonnull (strstr (json_object_get_string_member (uobj, "message"), "caf\u00e9"));
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

/* Writes @text on a new connection and reads what comes back until the
 * server closes it or, with @head_only, the answer's headers are in. */
static GString *
raw_exchange (IssuerdFixture *f, const char *text, gboolean head_only)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GUri) uri = g_uri_parse (f->base, G_URI_FLAGS_NONE, &error);
  g_assert_no_error (error);
  g_autoptr (GSocketConnection) conn = g_socket_client_connect_to_host (
    client, "127.0.0.1", (guint16) g_uri_get_port (uri), NULL, &error);
  g_assert_no_error (error);
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  g_assert_true (g_output_stream_write_all (out, text, strlen (text), NULL, NULL, &error));
  g_assert_no_error (error);

  GString *reply = g_string_new (NULL);
  gboolean expired = FALSE;
  guint guard = g_timeout_add_seconds (10, guard_expired, &expired);
  for (;;) {
    ReadState st = { 0 };
    char buf[512];
    g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf, sizeof buf,
                               G_PRIORITY_DEFAULT, NULL, read_done, &st);
    while (!st.done && !expired)
      g_main_context_iteration (NULL, TRUE);
    g_assert_false (expired);
    if (st.got <= 0)
      break;
    g_string_append_len (reply, buf, st.got);
    if (head_only && strstr (reply->str, "\r\n\r\n") != NULL)
      break;
  }
  g_source_remove (guard);
  return reply;
}

static void
test_slow_client_cut_off (IssuerdFixture *f, gconstpointer data)
{
  tally_issuer_http_set_request_timeout (f->http, 1);
  gint64 start = g_get_monotonic_time ();
  /* Headers announce a body that never comes. */
  g_autoptr (GString) reply =
    raw_exchange (f,
                  "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\nab",
                  FALSE);
  /* Closed, not answered, and only after the deadline. */
  g_assert_cmpuint (reply->len, ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC / 2);

  g_autoptr (IssuerdResponse) keys = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (keys, SOUP_STATUS_OK);
}

static GSocketConnection *
raw_connect (IssuerdFixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GUri) uri = g_uri_parse (f->base, G_URI_FLAGS_NONE, &error);
  g_assert_no_error (error);
  GSocketConnection *conn = g_socket_client_connect_to_host (
    client, "127.0.0.1", (guint16) g_uri_get_port (uri), NULL, &error);
  g_assert_no_error (error);
  return conn;
}

/* Runs the main context for @ms milliseconds. */
static void
spin (guint ms)
{
  gboolean expired = FALSE;
  g_timeout_add (ms, guard_expired, &expired);
  while (!expired)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct
{
  GSocket *socket;
  const char *bytes;
  gsize sent;
} Trickle;

static gboolean
trickle_byte (gpointer user_data)
{
  Trickle *t = user_data;
  if (t->bytes[t->sent] == '\0' ||
      g_socket_send (t->socket, t->bytes + t->sent, 1, NULL, NULL) != 1)
    return G_SOURCE_REMOVE;
  t->sent++;
  return G_SOURCE_CONTINUE;
}

/* Sends @head, then one byte of @trickle every 300 ms (well within the
 * idle timeout of 1 s), and returns how long the server let it go on;
 * fails when the connection is still open after 8 s. */
static gint64
trickle_until_closed (IssuerdFixture *f, const char *head, const char *trickle)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) conn = raw_connect (f);
  GSocket *socket = g_socket_connection_get_socket (conn);
  gint64 start = g_get_monotonic_time ();
  g_assert_cmpint (g_socket_send (socket, head, strlen (head), NULL, &error), ==, strlen (head));
  Trickle t = { .socket = socket, .bytes = trickle };
  GSource *writer = g_timeout_source_new (300);
  g_source_set_callback (writer, trickle_byte, &t, NULL);
  g_source_attach (writer, NULL);

  gboolean expired = FALSE;
  guint guard = g_timeout_add_seconds (8, guard_expired, &expired);
  ReadState st = { 0 };
  char buf[512];
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf, sizeof buf,
                             G_PRIORITY_DEFAULT, NULL, read_done, &st);
  while (!st.done && !expired)
    g_main_context_iteration (NULL, TRUE);
  gint64 took = g_get_monotonic_time () - start;
  g_assert_false (expired);
  g_source_remove (guard);
  g_source_destroy (writer);
  g_source_unref (writer);
  /* Closed without an answer, while bytes were still coming. */
  g_assert_cmpint (st.got, <=, 0);
  g_assert_cmpuint (t.sent, >=, 2);
  g_assert_cmpuint (t.bytes[t.sent], !=, '\0');
  return took;
}

static void
test_trickling_client_cut_off_by_request_deadline (IssuerdFixture *f, gconstpointer data)
{
  tally_issuer_http_set_request_timeout (f->http, 1);
  /* Headers that never end, a byte at a time. */
  gint64 took = trickle_until_closed (f, "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n",
                                      "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  g_assert_cmpint (took, >=, G_USEC_PER_SEC / 2);
  /* A body announced in full, topped up a byte at a time. */
  took = trickle_until_closed (f,
                               "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/x-protobuf\r\nContent-Length: 100\r\n"
                               "\r\n",
                               "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
  g_assert_cmpint (took, >=, G_USEC_PER_SEC / 2);

  g_autoptr (IssuerdResponse) keys = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (keys, SOUP_STATUS_OK);
}

static gboolean
still_open (GSocketConnection *conn)
{
  return g_socket_condition_check (g_socket_connection_get_socket (conn), G_IO_IN | G_IO_HUP) == 0;
}

static void
test_connections_beyond_the_cap_closed (IssuerdFixture *f, gconstpointer data)
{
  tally_issuer_http_set_max_connections (f->http, 3);
  /* The session's kept-alive connections would count too. */
  soup_session_abort (f->session);
  spin (200);
  GSocketConnection *held[3];
  for (guint i = 0; i < G_N_ELEMENTS (held); i++)
    held[i] = raw_connect (f);
  spin (200);

  /* The fourth is closed at once, long before any timeout (30 s). */
  gint64 start = g_get_monotonic_time ();
  g_autoptr (GString) reply = raw_exchange (f, "GET /v1/keys HTTP/1.1\r\nHost: x\r\n\r\n", FALSE);
  g_assert_cmpuint (reply->len, ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  for (guint i = 0; i < G_N_ELEMENTS (held); i++)
    g_assert_true (still_open (held[i]));

  /* Once they go, connections are served again. */
  for (guint i = 0; i < G_N_ELEMENTS (held); i++)
    g_object_unref (held[i]);
  spin (200);
  g_autoptr (IssuerdResponse) keys = issuerd_request (f, "GET", "/v1/keys", NULL, NULL, NULL, NULL);
  issuerd_assert_protobuf (keys, SOUP_STATUS_OK);
}

static void
test_idle_connection_closed (IssuerdFixture *f, gconstpointer data)
{
  tally_issuer_http_set_request_timeout (f->http, 1);
  gint64 start = g_get_monotonic_time ();
  /* Connected, and never a byte: no request ever starts. */
  g_autoptr (GString) reply = raw_exchange (f, "", FALSE);
  g_assert_cmpuint (reply->len, ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC / 2);
}

static void
test_body_without_length_refused (IssuerdFixture *f, gconstpointer data)
{
  TallyAudit before = issuerd_audit (f);
  g_autoptr (GString) reply =
    raw_exchange (f,
                  "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "2\r\nab\r\n0\r\n\r\n",
                  TRUE);
  g_assert_true (g_str_has_prefix (reply->str, "HTTP/1.1 411 "));
  g_assert_nonnull (strstr (reply->str, "X-Tally-Error: InvalidArgument\r\n"));
  g_assert_nonnull (strstr (reply->str, "Connection: close\r\n"));

  /* A client that asks first is told at once, before it sends 100 MB. */
  g_autoptr (GString) big =
    raw_exchange (f,
                  "POST /v1/reconcile HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/x-protobuf\r\nContent-Length: 100000000\r\n"
                  "Expect: 100-continue\r\n\r\n",
                  TRUE);
  g_assert_true (g_str_has_prefix (big->str, "HTTP/1.1 413 "));
  g_assert_nonnull (strstr (big->str, "X-Tally-Error: FrameOversize\r\n"));
  TallyAudit after = issuerd_audit (f);
  issuerd_assert_audit_equal (&before, &after);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
#define ADD(path, fn)                                                                              \
  g_test_add (path, IssuerdFixture, NULL, issuerd_fixture_setup, fn, issuerd_fixture_teardown)
  ADD ("/issuerd/keys/etag-and-not-modified", test_keys_with_etag_and_not_modified);
  ADD ("/issuerd/revocations/etag-follows-the-list", test_revocations_etag_follows_the_list);
  ADD ("/issuerd/enrol/certificate-with-accounts-display-name",
       test_enrol_gives_certificate_with_display_name);
  ADD ("/issuerd/enrol/bad-proof-refused", test_enrol_refuses_bad_proof);
  ADD ("/issuerd/enrol/wrong-token-refused", test_enrol_refuses_wrong_token);
  ADD ("/issuerd/enrol/again-renews-and-another-account-is-refused",
       test_enrol_again_renews_and_another_account_is_refused);
  ADD ("/issuerd/voucher/bought-against-balance", test_voucher_bought_against_balance);
  ADD ("/issuerd/voucher/retry-gets-same-voucher", test_voucher_retry_gets_same_voucher);
  ADD ("/issuerd/voucher/refusals-change-nothing", test_voucher_refusals_change_nothing);
  ADD ("/issuerd/voucher/owner-reports-register-lost", test_owner_reports_register_lost);
  ADD ("/issuerd/voucher/lost-register-refunded-after-window",
       test_lost_register_refunded_after_window);
  ADD ("/issuerd/reconcile/same-bundle-twice-same-bytes-books-once",
       test_reconcile_twice_same_bytes_books_once);
  ADD ("/issuerd/reconcile/forged-bundle-refused", test_reconcile_refuses_forged_bundle);
  ADD ("/issuerd/reconcile/rewrapped-bundle-gets-kept-result-no-new-serial",
       test_reconcile_rewrapped_bundle_gets_kept_result);
  ADD ("/issuerd/hostile/oversized-body-413", test_oversized_body_refused_unkept);
  ADD ("/issuerd/hostile/wrong-content-type-415", test_wrong_content_type_refused);
  ADD ("/issuerd/hostile/deeply-nested-json-refused-daemon-alive",
       test_deeply_nested_json_refused_daemon_alive);
  ADD ("/issuerd/hostile/truncated-protobuf-400", test_truncated_protobuf_refused);
  ADD ("/issuerd/hostile/unknown-path-or-method", test_unknown_paths_and_methods_refused);
  ADD ("/issuerd/hostile/names-from-path-escaped-in-messages",
       test_names_from_path_escaped_in_messages);
  ADD ("/issuerd/hostile/bad-requests-refused-specifically",
       test_bad_requests_refused_specifically);
  ADD ("/issuerd/hostile/unannounced-or-huge-body-refused-unkept",
       test_body_without_length_refused);
  ADD ("/issuerd/hostile/idle-connection-closed", test_idle_connection_closed);
  ADD ("/issuerd/hostile/slow-client-cut-off", test_slow_client_cut_off);
  ADD ("/issuerd/hostile/trickling-client-cut-off-by-request-deadline",
       test_trickling_client_cut_off_by_request_deadline);
  ADD ("/issuerd/hostile/connections-beyond-the-cap-closed",
       test_connections_beyond_the_cap_closed);
  ADD ("/issuerd/operator/needs-operator-token", test_operator_endpoints_need_operator_token);
  ADD ("/issuerd/operator/sees-fraud-proofs-and-flagged-registers",
       test_operator_sees_fraud_proofs_and_flagged);
  ADD ("/issuerd/operator/new-token-replaces-old", test_new_token_replaces_old);
  ADD ("/issuerd/operator/amounts-read-strictly", test_amounts_read_strictly);
  ADD ("/issuerd/operator/account-created-whole-or-not-at-all",
       test_account_created_whole_or_not_at_all);
  return g_test_run ();
}
