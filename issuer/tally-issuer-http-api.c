/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The endpoints of tally-issuerd (docs/issuer-api.md).  Device endpoints
 * answer with the protocol's own packed envelopes; account and operator
 * endpoints speak JSON, with amounts as integers in minor units.
 */
#include "tally-issuer-http-private.h"

#include <string.h>

#include "tally-hex.h"

typedef void (*Handler) (TallyHttpRequest *req);

typedef struct
{
  const char *method;
  const char *pattern; /* segments below /v1/; "*" matches any one */
  Handler handler;
} Route;

/* --- helpers --- */

/* A strong ETag for @bytes: the same bytes, the same tag. */
static char *
etag_of (GBytes *bytes)
{
  guint8 hash[TALLY_HASH_BYTES];
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  tally_hash ("http-etag", data, len, hash);
  g_autofree char *hex = tally_hex_encode (hash, 16);
  return g_strdup_printf ("\"%s\"", hex);
}

static gboolean
etag_matches (const char *if_none_match, const char *etag)
{
  if (if_none_match == NULL)
    return FALSE;
  g_auto (GStrv) tags = g_strsplit (if_none_match, ",", -1);
  for (guint i = 0; tags[i] != NULL; i++) {
    const char *tag = g_strstrip (tags[i]);
    if (g_str_has_prefix (tag, "W/"))
      tag += 2;
    if (strcmp (tag, "*") == 0 || strcmp (tag, etag) == 0)
      return TRUE;
  }
  return FALSE;
}

/* Signed, public, changing rarely: clients revalidate with If-None-Match. */
static void
reply_cacheable (TallyHttpRequest *req, GBytes *bytes)
{
  g_autofree char *etag = etag_of (bytes);
  SoupMessageHeaders *in = soup_server_message_get_request_headers (req->msg);
  SoupMessageHeaders *out = soup_server_message_get_response_headers (req->msg);
  soup_message_headers_replace (out, "ETag", etag);
  soup_message_headers_replace (out, "Cache-Control", "no-cache");
  if (etag_matches (soup_message_headers_get_one (in, "If-None-Match"), etag)) {
    soup_server_message_set_status (req->msg, SOUP_STATUS_NOT_MODIFIED, NULL);
    return;
  }
  tally_issuer_http_reply_bytes (req->msg, SOUP_STATUS_OK, TALLY_HTTP_TYPE_PROTOBUF, bytes);
}

static void
reply_bad_member (TallyHttpRequest *req, const char *member, const char *what)
{
  g_autofree char *message = g_strdup_printf ("\"%s\" must be %s", member, what);
  tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT,
                                 message);
}

/* The string member @name; NULL (and 400 sent) when it is missing or not a
 * string, unless @optional, when NULL means absent. */
static const char *
string_member (TallyHttpRequest *req, JsonObject *obj, const char *name, gboolean optional)
{
  JsonNode *node = json_object_get_member (obj, name);
  if (node == NULL && optional)
    return NULL;
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING) {
    reply_bad_member (req, name, "a string");
    return NULL;
  }
  return json_node_get_string (node);
}

static gboolean
hex_member (TallyHttpRequest *req, JsonObject *obj, const char *name, guint8 *out, gsize len)
{
  const char *hex = string_member (req, obj, name, FALSE);
  if (hex == NULL)
    return FALSE;
  if (!tally_hex_decode (hex, out, len, NULL)) {
    g_autofree char *what = g_strdup_printf ("%zu hex digits", len * 2);
    reply_bad_member (req, name, what);
    return FALSE;
  }
  return TRUE;
}

/* "amount": a positive integer in minor units, at most TALLY_AMOUNT_MAX.
 * Its literal has at most 16 digits (tally_issuer_http_body_object), so
 * json-glib has read it without wrapping around. */
static gboolean
amount_member (TallyHttpRequest *req, JsonObject *obj, gint64 *amount)
{
  JsonNode *node = json_object_get_member (obj, "amount");
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64 || json_node_get_int (node) <= 0 ||
      json_node_get_int (node) > TALLY_AMOUNT_MAX) {
    reply_bad_member (req, "amount", "a positive integer in minor units, at most 2^53");
    return FALSE;
  }
  *amount = json_node_get_int (node);
  return TRUE;
}

static void
reply_token (TallyHttpRequest *req, guint status, const char *account, guint8 *token)
{
  g_autofree char *hex = tally_hex_encode (token, TALLY_ACCOUNT_TOKEN_BYTES);
  sodium_memzero (token, TALLY_ACCOUNT_TOKEN_BYTES);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "account");
  json_builder_add_string_value (b, account);
  json_builder_set_member_name (b, "token");
  json_builder_add_string_value (b, hex);
  json_builder_end_object (b);
  tally_issuer_http_reply_json (req->msg, status, b);
  sodium_memzero (hex, strlen (hex));
}

static void
reply_balance (TallyHttpRequest *req, const char *account)
{
  TallyIssuer *issuer = req->http->issuer;
  g_autoptr (GError) error = NULL;
  gint64 balance;
  if (!tally_issuer_account_balance (issuer, account, &balance, &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "account");
  json_builder_add_string_value (b, account);
  json_builder_set_member_name (b, "currency");
  json_builder_add_string_value (b, tally_issuer_get_currency (issuer));
  json_builder_set_member_name (b, "balance");
  json_builder_add_int_value (b, balance);
  json_builder_end_object (b);
  tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

/* --- device endpoints --- */

static void
get_keys (TallyHttpRequest *req)
{
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (req->http->issuer);
  reply_cacheable (req, key_set);
}

static void
get_revocations (TallyHttpRequest *req)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) list = tally_issuer_get_revocation_list (req->http->issuer, &error);
  if (list == NULL)
    tally_issuer_http_reply_gerror (req->msg, error);
  else
    reply_cacheable (req, list);
}

/* Crash injection (tally_issuer_set_commit_hook ()): the answer is sent. */
static void
reconcile_answered (SoupServerMessage *msg, gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  tally_issuer_commit_point (http->issuer, TALLY_ISSUER_POINT_RECONCILE_ANSWERED);
}

static void
voucher_answered (SoupServerMessage *msg, gpointer user_data)
{
  TallyIssuerHttp *http = user_data;
  tally_issuer_commit_point (http->issuer, TALLY_ISSUER_POINT_VOUCHER_ANSWERED);
}

static void
on_answered (TallyHttpRequest *req, GCallback callback)
{
  g_signal_connect_data (req->msg, "finished", callback, tally_issuer_http_ref (req->http),
                         (GClosureNotify) (void (*) (void)) tally_issuer_http_unref, 0);
}

/* The register's signature on the bundle is the credential. */
static void
post_reconcile (TallyHttpRequest *req)
{
  if (!tally_issuer_http_require_type (req, TALLY_HTTP_TYPE_PROTOBUF))
    return;
  g_autoptr (GBytes) bundle = tally_issuer_http_body (req);
  if (bundle == NULL)
    return;
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  g_autoptr (GError) error = NULL;
  gboolean repeated = FALSE;
  g_autoptr (GBytes) result = tally_issuer_reconcile_once (
    req->http->issuer, data, len, tally_issuer_http_now (req->http), &repeated, &error);
  if (result == NULL) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  soup_message_headers_replace (soup_server_message_get_response_headers (req->msg),
                                "X-Tally-Repeated", repeated ? "yes" : "no");
  tally_issuer_http_reply_bytes (req->msg, SOUP_STATUS_OK, TALLY_HTTP_TYPE_PROTOBUF, result);
  on_answered (req, G_CALLBACK (reconcile_answered));
}

/* --- account endpoints (the account's bearer token) --- */

static void
get_account (TallyHttpRequest *req)
{
  const char *account = req->segments[1];
  if (tally_issuer_http_check_account (req, account))
    reply_balance (req, account);
}

static void
post_enrol (TallyHttpRequest *req)
{
  const char *account = req->segments[1];
  if (!tally_issuer_http_check_account (req, account))
    return;
  g_autoptr (JsonObject) obj = tally_issuer_http_body_object (req);
  guint8 key[TALLY_PUBLIC_KEY_BYTES], proof[TALLY_SIGNATURE_BYTES];
  if (obj == NULL || !hex_member (req, obj, "public_key", key, sizeof key) ||
      !hex_member (req, obj, "proof", proof, sizeof proof))
    return;

  TallyIssuerHttp *http = req->http;
  guint64 now = tally_issuer_http_now (http);
  guint64 not_after;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert = NULL;
  gboolean renewed = FALSE;
  if (!g_uint64_checked_add (&not_after, now, http->enrol_validity))
    g_set_error (&error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "certificate validity out of range");
  else
    cert = tally_issuer_enrol (http->issuer, account, key, proof, &http->enrol_limits, now,
                               not_after, &renewed, &error);
  if (cert == NULL)
    tally_issuer_http_reply_gerror (req->msg, error);
  else
    tally_issuer_http_reply_bytes (req->msg, renewed ? SOUP_STATUS_OK : SOUP_STATUS_CREATED,
                                   TALLY_HTTP_TYPE_PROTOBUF, cert);
}

static void
post_voucher (TallyHttpRequest *req)
{
  const char *account = req->segments[1];
  if (!tally_issuer_http_check_account (req, account))
    return;
  guint8 id[TALLY_ID_BYTES];
  if (!tally_hex_decode (req->segments[3], id, sizeof id, NULL)) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT,
                                   "the register id in the path must be 32 hex digits");
    return;
  }
  g_autoptr (JsonObject) obj = tally_issuer_http_body_object (req);
  gint64 amount;
  guint8 request_id[TALLY_VOUCHER_REQUEST_ID_BYTES];
  if (obj == NULL || !amount_member (req, obj, &amount) ||
      !hex_member (req, obj, "request_id", request_id, sizeof request_id))
    return;
  g_autoptr (GError) error = NULL;
  gboolean repeated = FALSE;
  g_autoptr (GBytes) voucher =
    tally_issuer_sell_voucher_to_account (req->http->issuer, account, id, amount, request_id,
                                          tally_issuer_http_now (req->http), &repeated, &error);
  if (voucher == NULL) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  soup_message_headers_replace (soup_server_message_get_response_headers (req->msg),
                                "X-Tally-Repeated", repeated ? "yes" : "no");
  tally_issuer_http_reply_bytes (req->msg, repeated ? SOUP_STATUS_OK : SOUP_STATUS_CREATED,
                                 TALLY_HTTP_TYPE_PROTOBUF, voucher);
  on_answered (req, G_CALLBACK (voucher_answered));
}

static void
post_lost (TallyHttpRequest *req)
{
  const char *account = req->segments[1];
  if (!tally_issuer_http_check_account (req, account))
    return;
  guint8 id[TALLY_ID_BYTES];
  if (!tally_hex_decode (req->segments[3], id, sizeof id, NULL)) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT,
                                   "the register id in the path must be 32 hex digits");
    return;
  }
  g_autoptr (GError) error = NULL;
  if (!tally_issuer_report_lost (req->http->issuer, account, id, tally_issuer_http_now (req->http),
                                 &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  g_autofree char *hex = tally_hex_encode (id, sizeof id);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "register_id");
  json_builder_add_string_value (b, hex);
  json_builder_set_member_name (b, "revoked");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_end_object (b);
  tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

/* --- operator endpoints (the operator's bearer token) --- */

static void
post_account (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  g_autoptr (JsonObject) obj = tally_issuer_http_body_object (req);
  if (obj == NULL)
    return;
  const char *name = string_member (req, obj, "name", FALSE);
  if (name == NULL)
    return;
  const char *display_name = NULL;
  if (json_object_has_member (obj, "display_name") &&
      (display_name = string_member (req, obj, "display_name", FALSE)) == NULL)
    return;

  TallyIssuer *issuer = req->http->issuer;
  g_autoptr (GError) error = NULL;
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  g_autoptr (GError) name_error = NULL;
  if (display_name != NULL && !tally_display_name_check (display_name, &name_error)) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_BAD_REQUEST, TALLY_ERROR_INVALID_ARGUMENT,
                                   name_error->message);
    return;
  }
  if (!tally_issuer_account_create_with_token (issuer, name, display_name, token, &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  reply_token (req, SOUP_STATUS_CREATED, name, token);
}

static void
get_operator_account (TallyHttpRequest *req)
{
  if (tally_issuer_http_check_operator (req))
    reply_balance (req, req->segments[2]);
}

static void
post_token (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  const char *account = req->segments[2];
  g_autoptr (GError) error = NULL;
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  if (!tally_issuer_account_token_new (req->http->issuer, account, token, &error))
    tally_issuer_http_reply_gerror (req->msg, error);
  else
    reply_token (req, SOUP_STATUS_OK, account, token);
}

static void
post_deposit (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  g_autoptr (JsonObject) obj = tally_issuer_http_body_object (req);
  gint64 amount;
  if (obj == NULL || !amount_member (req, obj, &amount))
    return;
  g_autoptr (GError) error = NULL;
  if (!tally_issuer_deposit (req->http->issuer, req->segments[2], amount, &error))
    tally_issuer_http_reply_gerror (req->msg, error);
  else
    reply_balance (req, req->segments[2]);
}

static void
add_int (JsonBuilder *b, const char *name, gint64 value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, value);
}

static void
add_string (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, value);
}

/* The registers the audit names (TallyAuditRegister), as tally-issuer
 * audit --json lists them. */
static void
add_flagged (JsonBuilder *b, GPtrArray *rows)
{
  json_builder_begin_array (b);
  for (guint i = 0; i < rows->len; i++) {
    const TallyAuditRegister *r = rows->pdata[i];
    g_autofree char *id = tally_hex_encode (r->register_id, TALLY_ID_BYTES);
    json_builder_begin_object (b);
    add_string (b, "register_id", id);
    add_string (b, "account", r->account);
    json_builder_set_member_name (b, "revoked");
    json_builder_add_boolean_value (b, r->revoked);
    add_int (b, "view", r->view);
    add_int (b, "exposure", r->exposure);
    add_int (b, "awaiting", r->awaiting);
    add_int (b, "refused", r->refused);
    add_int (b, "deficit", r->deficit);
    add_int (b, "lost_at", (gint64) r->lost_at);
    add_int (b, "refund_due", (gint64) r->refund_due);
    add_int (b, "refunded_at", (gint64) r->refunded_at);
    add_int (b, "refunded", r->refunded);
    add_int (b, "recovered", r->recovered);
    add_int (b, "fraud_proofs", r->proofs);
    json_builder_set_member_name (b, "proof_kinds");
    json_builder_begin_array (b);
    for (guint k = 1; k < 32; k++)
      if (r->proof_kinds & (1u << k))
        json_builder_add_string_value (b, tally_issuer_fraud_kind_to_string ((Tally__FraudKind) k));
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
}

static void
get_audit (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  TallyIssuer *issuer = req->http->issuer;
  g_autoptr (GError) error = NULL;
  TallyAudit a;
  g_autoptr (GPtrArray) rows = NULL;
  if (!tally_issuer_audit (issuer, &a, &error) ||
      (rows = tally_issuer_audit_registers (issuer, &error)) == NULL) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "currency");
  json_builder_add_string_value (b, tally_issuer_get_currency (issuer));
  add_int (b, "issued", a.issued);
  add_int (b, "online", a.online);
  add_int (b, "offline", a.offline);
  add_int (b, "in_flight", a.in_flight);
  add_int (b, "fraud_exposure", a.fraud_exposure);
  add_int (b, "awaiting", a.awaiting);
  add_int (b, "refused", a.refused);
  add_int (b, "reclaimed", a.reclaimed);
  add_int (b, "reclaimed_permissions", (gint64) a.reclaimed_count);
  add_int (b, "registers", a.registers);
  add_int (b, "revoked", a.revoked);
  add_int (b, "fraud_proofs", a.fraud_proofs);
  add_int (b, "views_unbacked", a.views_unbacked);
  json_builder_set_member_name (b, "identity");
  json_builder_add_boolean_value (b, a.identity);
  json_builder_set_member_name (b, "balanced");
  json_builder_add_boolean_value (b, a.balanced);
  json_builder_set_member_name (b, "flagged");
  add_flagged (b, rows);
  json_builder_end_object (b);
  tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

static void
get_fraud_proofs (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) proofs = tally_issuer_get_fraud_proofs (req->http->issuer, &error);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "fraud_proofs");
  json_builder_begin_array (b);
  for (guint i = 0; proofs != NULL && i < proofs->len; i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (proofs->pdata[i], &len);
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, &error);
    g_autoptr (Tally__FraudProof) fp = NULL;
    if (env != NULL)
      fp = TALLY_UNPACK (Tally__FraudProof, tally__fraud_proof, env->body.data, env->body.len,
                         "fraud proof", &error);
    if (fp == NULL)
      break;
    g_autofree char *id = tally_hex_encode (fp->register_id.data, fp->register_id.len);
    g_autofree char *proof = tally_hex_encode (data, len);
    json_builder_begin_object (b);
    add_string (b, "register_id", id);
    add_string (b, "kind", tally_issuer_fraud_kind_to_string (fp->kind));
    add_int (b, "detected_at", (gint64) fp->detected_at);
    add_string (b, "proof", proof);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  if (error != NULL)
    tally_issuer_http_reply_gerror (req->msg, error);
  else
    tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

static void
post_revocation (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  g_autoptr (JsonObject) obj = tally_issuer_http_body_object (req);
  guint8 id[TALLY_ID_BYTES];
  if (obj == NULL || !hex_member (req, obj, "register_id", id, sizeof id))
    return;
  g_autoptr (GError) error = NULL;
  if (!tally_issuer_revoke (req->http->issuer, id, tally_issuer_http_now (req->http), &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "register_id");
  json_builder_add_string_value (b, string_member (req, obj, "register_id", FALSE));
  json_builder_set_member_name (b, "revoked");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_end_object (b);
  tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

static void
refund_report_json (JsonBuilder *b, const TallyRefundReport *r)
{
  json_builder_begin_object (b);
  add_int (b, "refunded", r->refunded);
  add_int (b, "refunded_amount", r->refunded_amount);
  add_int (b, "waiting", r->waiting);
  add_int (b, "next_due", (gint64) MIN (r->next_due, (guint64) G_MAXINT64));
  add_int (b, "failed", r->failed);
  json_builder_end_object (b);
}

/* The lost-register refund now, rather than at the next periodic run. */
static void
post_refund_lost (TallyHttpRequest *req)
{
  if (!tally_issuer_http_check_operator (req))
    return;
  g_autoptr (GError) error = NULL;
  TallyRefundReport r;
  if (!tally_issuer_refund_lost (req->http->issuer, tally_issuer_http_now (req->http), &r,
                                 &error)) {
    tally_issuer_http_reply_gerror (req->msg, error);
    return;
  }
  g_autoptr (JsonBuilder) b = json_builder_new ();
  refund_report_json (b, &r);
  tally_issuer_http_reply_json (req->msg, SOUP_STATUS_OK, b);
}

/* --- routing --- */

static const Route routes[] = {
  { "GET", "keys", get_keys },
  { "GET", "revocations", get_revocations },
  { "POST", "reconcile", post_reconcile },
  { "GET", "accounts/*", get_account },
  { "POST", "accounts/*/registers", post_enrol },
  { "POST", "accounts/*/registers/*/vouchers", post_voucher },
  { "POST", "accounts/*/registers/*/lost", post_lost },
  { "POST", "operator/accounts", post_account },
  { "GET", "operator/accounts/*", get_operator_account },
  { "POST", "operator/accounts/*/token", post_token },
  { "POST", "operator/accounts/*/deposit", post_deposit },
  { "GET", "operator/audit", get_audit },
  { "GET", "operator/fraud-proofs", get_fraud_proofs },
  { "POST", "operator/revocations", post_revocation },
  { "POST", "operator/refund-lost", post_refund_lost },
};

static gboolean
route_matches (const Route *route, TallyHttpRequest *req)
{
  g_auto (GStrv) parts = g_strsplit (route->pattern, "/", -1);
  if (g_strv_length (parts) != req->n_segments)
    return FALSE;
  for (guint i = 0; i < req->n_segments; i++)
    if (strcmp (parts[i], "*") != 0 && strcmp (parts[i], req->segments[i]) != 0)
      return FALSE;
  return TRUE;
}

void
tally_issuer_http_route (TallyHttpRequest *req)
{
  const char *method = soup_server_message_get_method (req->msg);
  g_autoptr (GString) allow = g_string_new (NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++) {
    if (!route_matches (&routes[i], req))
      continue;
    if (strcmp (method, routes[i].method) == 0) {
      routes[i].handler (req);
      return;
    }
    g_string_append_printf (allow, "%s%s", allow->len ? ", " : "", routes[i].method);
  }
  if (allow->len == 0) {
    tally_issuer_http_reply_error (req->msg, SOUP_STATUS_NOT_FOUND, TALLY_ERROR_NOT_FOUND,
                                   "no such endpoint (see docs/issuer-api.md)");
    return;
  }
  soup_message_headers_replace (soup_server_message_get_response_headers (req->msg), "Allow",
                                allow->str);
  g_autofree char *message = g_strdup_printf ("this endpoint takes %s", allow->str);
  tally_issuer_http_reply_error (req->msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
                                 TALLY_ERROR_INVALID_ARGUMENT, message);
}
