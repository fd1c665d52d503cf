/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payee side: payment requests, and the permissions that answer
 * them, each credited against its request once.
 */
#include "tally-register.h"

#include <string.h>

#include "tally-peer.h"
#include "tally-register-backend.h"
#include "tally-register-private.h"

#define MEMO_MAX_BYTES 256

/* --- payee: request --- */

void
tally_register_set_request_lifetime (TallyRegister *reg, guint64 seconds)
{
  g_return_if_fail (reg != NULL);
  g_return_if_fail (seconds > 0 && seconds <= TALLY_REQUEST_LIFETIME_MAX);

  reg->request_lifetime = seconds;
}

guint64
tally_register_get_horizon (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);

  return reg->state.horizon;
}

Tally__PaymentRequest *
tally_register_prepare_request (TallyRegister *reg,
                                gint64 amount,
                                const char *memo,
                                guint64 now,
                                GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!tally_register_need_certificate (reg, error) || !tally_register_need_open (reg, error))
    return NULL;
  if (amount <= 0 || amount > TALLY_AMOUNT_MAX) {
    g_autofree char *asked = tally_amount_format (amount, reg->cert->currency);
    g_autofree char *max = tally_amount_format (TALLY_AMOUNT_MAX, reg->cert->currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "%s is not between 0.01 and %s",
                 asked, max);
    return NULL;
  }
  if (memo == NULL)
    memo = "";
  if (strlen (memo) > MEMO_MAX_BYTES || !g_utf8_validate (memo, -1, NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "the memo must be UTF-8 of at most %d bytes", MEMO_MAX_BYTES);
    return NULL;
  }

  guint64 expires_at;
  if (!g_uint64_checked_add (&expires_at, now, reg->request_lifetime)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "request expiry out of range");
    return NULL;
  }
  guint8 nonce[TALLY_NONCE_BYTES];
  randombytes_buf (nonce, sizeof nonce);

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = amount;
  Tally__PaymentRequest req = TALLY__PAYMENT_REQUEST__INIT;
  req.payee_register_id.data = reg->id;
  req.payee_register_id.len = TALLY_ID_BYTES;
  req.amount = &a;
  req.nonce.data = nonce;
  req.nonce.len = sizeof nonce;
  req.memo = (char *) memo;
  req.created_at = now;
  req.expires_at = expires_at;
  /* A copy through the wire format owns all its fields. */
  g_autoptr (GBytes) packed = tally_message_pack (&req.base);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  return TALLY_UNPACK (Tally__PaymentRequest, tally__payment_request, data, len, "request", error);
}

gboolean
tally_register_store_request (TallyRegister *reg,
                              const Tally__PaymentRequest *request,
                              GError **error)
{
  g_return_val_if_fail (reg != NULL && request != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (request->nonce.len == TALLY_NONCE_BYTES && request->amount != NULL &&
                          request->payee_register_id.len == TALLY_ID_BYTES &&
                          memcmp (request->payee_register_id.data, reg->id, TALLY_ID_BYTES) == 0,
                        FALSE);

  if (!tally_register_need_open (reg, error))
    return FALSE;
  g_auto (TallyNonceRow) row = {
    .amount = request->amount->value,
    .currency = g_strdup (request->amount->currency),
    .memo = g_strdup (request->memo ? request->memo : ""),
    .created_at = request->created_at,
    .expires_at = request->expires_at,
  };
  memcpy (row.nonce, request->nonce.data, TALLY_NONCE_BYTES);

  if (!tally_register_begin (reg, error))
    return FALSE;
  /* In the same commit: requests that expired uncredited can take no
   * permission any more (receive refuses it once expired), so storing
   * requests does not grow the register for ever. */
  if (!reg->backend->nonces_prune (reg->store, request->created_at, error) ||
      !reg->backend->nonce_insert (reg->store, &row, error)) {
    tally_register_abort (reg);
    return FALSE;
  }
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_REQUEST, error))
    return FALSE;
  g_debug ("payment request for %" G_GINT64_FORMAT " stored", row.amount);
  tally_register_adopt (reg, TALLY_REGISTER_OP_REQUEST, NULL, NULL, NULL, NULL);
  return TRUE;
}

Tally__PaymentRequest *
tally_register_new_request (TallyRegister *reg,
                            gint64 amount,
                            const char *memo,
                            guint64 now,
                            GError **error)
{
  g_autoptr (Tally__PaymentRequest) request =
    tally_register_prepare_request (reg, amount, memo, now, error);
  if (request == NULL || !tally_register_store_request (reg, request, error))
    return NULL;
  return g_steal_pointer (&request);
}

/* --- payee: receive --- */

typedef struct
{
  const Tally__SignedEnvelope *payer_certificate;
  const Tally__SignedEnvelope *permission;
  const TallyAcceptPolicy *policy;
  guint64 now;
  const guint8 *request_nonce; /* the request it must answer, or NULL */
  gboolean again;
  Tally__RegisterCertificate *payer;
  Tally__DepositPermission *p;
  guint8 permission_hash[TALLY_HASH_BYTES];
  gboolean unchanged; /* set when a delivery again found the receipt */
} ReceiveContext;

/* Inside the transaction: the permission was not received before, and its
 * counter was not used for another.  A delivery again of one received
 * sets c->unchanged instead. */
static gboolean
receive_check_new (TallyRegister *reg, ReceiveContext *c, GError **error)
{
  const Tally__DepositPermission *p = c->p;
  gboolean same_permission = FALSE, counter_used = FALSE;

  if (!reg->backend->received_find (reg->store, p->payer_register_id.data, p->counter,
                                    c->permission_hash, &same_permission, &counter_used, error))
    return FALSE;
  if (same_permission && c->again) {
    c->unchanged = TRUE;
    return TRUE;
  }
  if (same_permission) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "permission %" G_GUINT64_FORMAT " of this payer was already received",
                 p->counter);
    return FALSE;
  }
  /* The payer signed two different entries with one counter: a double
   * spend the issuer will prove from both. */
  if (counter_used) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_COUNTER_REUSED,
                 "the payer already used counter %" G_GUINT64_FORMAT " for another permission",
                 p->counter);
    return FALSE;
  }
  if (p->counter == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "permission counter is 0");
    return FALSE;
  }
  return tally_check_bytes (&p->chain_prev, TALLY_HASH_BYTES, "permission chain_prev", error) &&
         tally_check_bytes (&p->memo_hash, TALLY_HASH_BYTES, "permission memo_hash", error);
}

/* Inside the transaction: the permission answers an unpaid request of
 * ours, read into @request, that may still be credited. */
static gboolean
receive_check_request (TallyRegister *reg,
                       const ReceiveContext *c,
                       TallyNonceRow *request,
                       GError **error)
{
  const Tally__DepositPermission *p = c->p;
  gboolean found = FALSE;

  if (c->request_nonce != NULL &&
      (p->payee_nonce.len != TALLY_NONCE_BYTES ||
       memcmp (p->payee_nonce.data, c->request_nonce, TALLY_NONCE_BYTES) != 0)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_NONCE,
                 "the permission answers another request than the one offered");
    return FALSE;
  }
  if (p->payee_nonce.len == TALLY_NONCE_BYTES &&
      !reg->backend->nonce_lookup (reg->store, p->payee_nonce.data, request, &found, error))
    return FALSE;
  /* An expired request that was never paid may be gone already
   * (tally_register_store_request): say what matters, that it expired. */
  if (!found && c->now >= p->expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the permission expired at %" G_GUINT64_FORMAT, p->expires_at);
    return FALSE;
  }
  if (!found) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_NONCE,
                 "the permission answers no request of ours");
    return FALSE;
  }
  if (request->consumed) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY, "the request was already paid");
    return FALSE;
  }
  if (p->expires_at != request->expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the permission's expiry differs from the request's");
    return FALSE;
  }
  if (c->now >= p->expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the permission expired at %" G_GUINT64_FORMAT, p->expires_at);
    return FALSE;
  }
  /* A bundle made at the horizon told the issuer we never received it; the
   * issuer may already have given it back to the payer. */
  if (p->expires_at <= reg->state.horizon) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the permission expired at %" G_GUINT64_FORMAT
                 ", before our reconciliation at %" G_GUINT64_FORMAT,
                 p->expires_at, reg->state.horizon);
    return FALSE;
  }
  return TRUE;
}

/* The permission pays the amount @request asks, in our currency, under
 * its memo. */
static gboolean
receive_check_terms (TallyRegister *reg,
                     const ReceiveContext *c,
                     const TallyNonceRow *request,
                     GError **error)
{
  const Tally__DepositPermission *p = c->p;

  if (!tally_amount_check (p->amount, reg->cert->currency, error))
    return FALSE;
  gint64 amount = p->amount->value;
  if (amount != request->amount) {
    g_autofree char *paid = tally_amount_format (amount, reg->cert->currency);
    g_autofree char *asked = tally_amount_format (request->amount, reg->cert->currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH,
                 "the permission is for %s, the request for %s", g_strstrip (paid),
                 g_strstrip (asked));
    return FALSE;
  }
  guint8 memo_hash[TALLY_HASH_BYTES];
  tally_hash ("memo", request->memo, strlen (request->memo), memo_hash);
  if (memcmp (memo_hash, p->memo_hash.data, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the permission's memo hash does not match the request");
    return FALSE;
  }
  return TRUE;
}

/* The payer's certified limit, our policy and our balance cap allow the
 * credit; *balance is the balance after it. */
static gboolean
receive_check_limits (TallyRegister *reg, const ReceiveContext *c, gint64 *balance, GError **error)
{
  gint64 amount = c->p->amount->value;

  const char *currency = reg->cert->currency;
  g_autofree char *paid = tally_amount_format (amount, currency);

  if (amount > c->payer->limits->max_payment) {
    g_autofree char *limit = tally_amount_format (c->payer->limits->max_payment, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT,
                 "%s is above the payer's certified limit of %s per payment", paid, limit);
    return FALSE;
  }
  if (c->policy->max_amount > 0 && amount > c->policy->max_amount) {
    g_autofree char *limit = tally_amount_format (c->policy->max_amount, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY, "%s is above our limit of %s per payment",
                 paid, limit);
    return FALSE;
  }
  return tally_register_check_credit (reg, amount, balance, error);
}

/* The receipt for the permission, signed. */
static GBytes *
receive_build_receipt (TallyRegister *reg, ReceiveContext *c)
{
  const Tally__DepositPermission *p = c->p;

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = p->amount->value;
  Tally__Receipt r = TALLY__RECEIPT__INIT;
  r.payee_register_id.data = reg->id;
  r.payee_register_id.len = TALLY_ID_BYTES;
  r.payer_register_id = p->payer_register_id;
  r.payer_counter = p->counter;
  r.permission_hash.data = c->permission_hash;
  r.permission_hash.len = TALLY_HASH_BYTES;
  r.amount = &a;
  r.received_at = c->now;
  r.permission_expires_at = p->expires_at;
  return tally_register_sign_message (reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                                      &r.base, NULL);
}

/* Inside the transaction: pays @request, stores the permission with its
 * receipt and the payer's certificate, and writes @next. */
static gboolean
receive_write (TallyRegister *reg,
               const ReceiveContext *c,
               const TallyNonceRow *request,
               GBytes *receipt,
               const TallyRegisterState *next,
               GError **error)
{
  const Tally__DepositPermission *p = c->p;

  g_autoptr (GBytes) permission = tally_envelope_pack (c->permission);
  g_autoptr (GBytes) certificate = tally_envelope_pack (c->payer_certificate);
  TallyReceivedRow row = {
    .payer_counter = p->counter,
    .permission = permission,
    .payer_certificate = certificate,
    .receipt = receipt,
    .amount = p->amount->value,
    .memo = request->memo,
    .received_at = c->now,
    .state = TALLY_ENTRY_STATE_ACKNOWLEDGED,
  };
  memcpy (row.payer_id, p->payer_register_id.data, TALLY_ID_BYTES);
  memcpy (row.permission_hash, c->permission_hash, TALLY_HASH_BYTES);
  memcpy (row.nonce, request->nonce, TALLY_NONCE_BYTES);

  guint8 cert_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (c->payer_certificate, cert_hash);
  g_autoptr (GBytes) cert_packed = tally_envelope_pack (c->payer_certificate);
  return reg->backend->nonce_consume (reg->store, request->nonce, c->now, error) &&
         reg->backend->received_insert (reg->store, &row, error) &&
         reg->backend->certificate_put (reg->store, cert_hash, cert_packed, c->payer->not_after,
                                        error) &&
         reg->backend->state_write (reg->store, next, error);
}

/* Inside the transaction: the checks that need stored rows, then the
 * writes.  Returns the receipt and the state to adopt. */
static GBytes *
receive_locked (TallyRegister *reg, ReceiveContext *c, TallyRegisterState *next, GError **error)
{
  if (!receive_check_new (reg, c, error))
    return NULL;
  /* Delivered again after the receipt was lost: the same receipt, and
   * nothing changes. */
  if (c->unchanged)
    return reg->backend->received_get_receipt (reg->store, c->permission_hash, error);

  g_auto (TallyNonceRow) request = { 0 };
  gint64 balance;
  if (!receive_check_request (reg, c, &request, error) ||
      !receive_check_terms (reg, c, &request, error) ||
      !receive_check_limits (reg, c, &balance, error))
    return NULL;

  g_autoptr (GBytes) receipt = receive_build_receipt (reg, c);
  next->balance = balance;
  if (!receive_write (reg, c, &request, receipt, next, error))
    return NULL;
  return g_steal_pointer (&receipt);
}

static GBytes *
receive (TallyRegister *reg,
         const Tally__SignedEnvelope *payer_certificate,
         const Tally__SignedEnvelope *permission,
         const guint8 *request_nonce,
         const TallyAcceptPolicy *policy,
         gboolean again,
         guint64 now,
         GError **error)
{
  static const TallyAcceptPolicy no_policy = { 0 };

  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (policy == NULL)
    policy = &no_policy;
  if (!tally_register_need_open (reg, error) || !tally_register_need_certificate (reg, error))
    return NULL;

  /* issuer -> payer certificate (the peer check) -> permission, all offline. */
  g_autoptr (Tally__RegisterCertificate) payer =
    tally_register_check_peer (reg, payer_certificate, policy, now, error);
  if (payer == NULL)
    return NULL;
  if (!tally_envelope_verify (permission,
                              TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
                              payer->register_public_key.data, error))
    return NULL;
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, permission->body.data,
                  permission->body.len, "permission", error);
  if (p == NULL)
    return NULL;
  if (!tally_id_equals (&p->payer_register_id, payer->register_id.data)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the permission names another payer than its certificate");
    return NULL;
  }
  if (!tally_id_equals (&p->payee_register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the permission is for another payee");
    return NULL;
  }

  ReceiveContext c = {
    .payer_certificate = payer_certificate,
    .permission = permission,
    .policy = policy,
    .now = now,
    .request_nonce = request_nonce,
    .again = again,
    .payer = payer,
    .p = p,
  };
  tally_envelope_body_hash (permission, c.permission_hash);
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);

  if (!tally_register_begin (reg, error))
    return NULL;
  g_autoptr (GBytes) receipt = receive_locked (reg, &c, &next, error);
  if (receipt == NULL || c.unchanged) {
    tally_register_abort (reg);
    if (receipt != NULL)
      g_debug ("permission %" G_GUINT64_FORMAT " delivered again: same receipt", p->counter);
    return g_steal_pointer (&receipt);
  }
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_RECEIVE, error))
    return NULL;
  g_debug ("received %" G_GINT64_FORMAT " (payer counter %" G_GUINT64_FORMAT ")",
           p->amount->value, p->counter);
  tally_register_adopt (reg, TALLY_REGISTER_OP_RECEIVE, &next, NULL, NULL, NULL);
  return g_steal_pointer (&receipt);
}

GBytes *
tally_register_receive (TallyRegister *reg,
                        const Tally__SignedEnvelope *payer_certificate,
                        const Tally__SignedEnvelope *permission,
                        const guint8 request_nonce[TALLY_NONCE_BYTES],
                        const TallyAcceptPolicy *policy,
                        guint64 now,
                        GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (reg, payer_certificate, permission, request_nonce, policy, FALSE, now, error);
}

GBytes *
tally_register_receive_again (TallyRegister *reg,
                              const Tally__SignedEnvelope *payer_certificate,
                              const Tally__SignedEnvelope *permission,
                              const TallyAcceptPolicy *policy,
                              guint64 now,
                              GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (reg, payer_certificate, permission, NULL, policy, TRUE, now, error);
}
