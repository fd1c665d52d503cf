/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The payer side: permissions, the receipts that acknowledge them, and
 * the defund that closes the register.  Each is an entry of the
 * register's hash chain.
 */
#include "tally-register.h"

#include <string.h>

#include "tally-peer.h"
#include "tally-register-backend.h"
#include "tally-register-private.h"

/* --- payer: spend --- */

/* Our own standing: open, not revoked, certified at @now. */
static gboolean
spend_check_register (TallyRegister *reg, guint64 now, GError **error)
{
  if (!tally_register_need_open (reg, error))
    return FALSE;
  if (reg->state.revoked) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "this register is revoked");
    return FALSE;
  }
  if (!tally_register_need_certificate (reg, error))
    return FALSE;
  if (now > reg->cert->not_after) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_EXPIRED,
                 "our certificate expired at %" G_GUINT64_FORMAT, reg->cert->not_after);
    return FALSE;
  }
  if (now < reg->cert->not_before) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_NOT_YET_VALID,
                 "our certificate is valid from %" G_GUINT64_FORMAT, reg->cert->not_before);
    return FALSE;
  }
  return TRUE;
}

/* The request is the certified payee's, in our currency, and open no
 * longer than a permission may be. */
static gboolean
spend_check_request (TallyRegister *reg,
                     const Tally__RegisterCertificate *payee,
                     const Tally__PaymentRequest *request,
                     guint64 now,
                     GError **error)
{
  if (!tally_id_equals (&request->payee_register_id, payee->register_id.data)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the request names another register than the payee certificate");
    return FALSE;
  }
  if (!tally_check_bytes (&request->nonce, TALLY_NONCE_BYTES, "request nonce", error) ||
      !tally_amount_check (request->amount, reg->cert->currency, error))
    return FALSE;
  /* The permission lives as long as the request: until then the payee may
   * still credit it, so the value stays in flight at most that long before
   * the issuer can give it back (protocol 4.4). */
  if (request->expires_at == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "the request has no expiry");
    return FALSE;
  }
  if (request->expires_at <= now) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the request expired at %" G_GUINT64_FORMAT, request->expires_at);
    return FALSE;
  }
  if (request->expires_at - now > TALLY_REQUEST_LIFETIME_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "the request stays open for %" G_GUINT64_FORMAT " s, more than %d s",
                 request->expires_at - now, TALLY_REQUEST_LIFETIME_MAX);
    return FALSE;
  }
  return TRUE;
}

/* The certified limits and the balance allow paying @amount at @now;
 * *balance is what remains. */
static gboolean
spend_check_limits (TallyRegister *reg,
                    gint64 amount,
                    guint64 now,
                    gint64 *balance,
                    GError **error)
{
  const Tally__Limits *limits = reg->cert->limits;
  const char *currency = reg->cert->currency;
  g_autofree char *asked = tally_amount_format (amount, currency);
  if (amount > limits->max_payment) {
    g_autofree char *limit = tally_amount_format (limits->max_payment, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT,
                 "%s is above the certified limit of %s per payment", asked, limit);
    return FALSE;
  }
  if ((guint64) reg->state.offline_payments + 1 > limits->max_offline_payments) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_COUNT,
                 "%u payments since the last reconciliation, the limit is %u",
                 reg->state.offline_payments, limits->max_offline_payments);
    return FALSE;
  }
  if (now > reg->state.last_reconciliation &&
      now - reg->state.last_reconciliation > limits->max_offline_seconds) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_TIME,
                 "last reconciliation at %" G_GUINT64_FORMAT " is more than %" G_GUINT64_FORMAT
                 " s ago",
                 reg->state.last_reconciliation, limits->max_offline_seconds);
    return FALSE;
  }
  if (reg->state.balance < amount) {
    g_autofree char *balance_text = tally_amount_format (reg->state.balance, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS,
                 "the balance of %s is below %s", balance_text, asked);
    return FALSE;
  }
  return tally_amount_add (reg->state.balance, -amount, balance, error);
}

/* The deposit permission: the next counter, bound to the chain head.
 * Returns it signed; @entry_hash names it for the chain. */
static GBytes *
spend_build_permission (TallyRegister *reg,
                        const Tally__RegisterCertificate *payee,
                        const Tally__PaymentRequest *request,
                        guint64 now,
                        guint8 entry_hash[static TALLY_HASH_BYTES])
{
  const char *memo = request->memo ? request->memo : "";
  guint8 memo_hash[TALLY_HASH_BYTES];
  tally_hash ("memo", memo, strlen (memo), memo_hash);
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = request->amount->value;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = reg->id;
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id = payee->register_id;
  p.payee_nonce = request->nonce;
  p.amount = &a;
  p.counter = reg->state.counter + 1;
  p.chain_prev.data = reg->state.chain_head;
  p.chain_prev.len = TALLY_HASH_BYTES;
  p.created_at = now;
  p.memo_hash.data = memo_hash;
  p.memo_hash.len = sizeof memo_hash;
  p.expires_at = request->expires_at;
  Tally__SignatureContext ctx = TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION;
  return tally_register_sign_message (reg, ctx, &p.base, entry_hash);
}

/* Appends @row, a permission or the defund, to the chain with the state
 * @next, durably: the signed entry leaves the register only after COMMIT. */
static gboolean
chain_entry_commit (TallyRegister *reg,
                    TallyRegisterOp op,
                    const TallySpentRow *row,
                    const TallyRegisterState *next,
                    GError **error)
{
  if (!tally_register_begin (reg, error))
    return FALSE;
  if (!reg->backend->spent_insert (reg->store, row, error) ||
      !reg->backend->state_write (reg->store, next, error))
    return tally_register_abort (reg);
  return tally_register_commit (reg, op, error);
}

GBytes *
tally_register_spend (TallyRegister *reg,
                      const Tally__SignedEnvelope *payee_certificate,
                      const Tally__PaymentRequest *request,
                      guint64 now,
                      GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (request != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!spend_check_register (reg, now, error))
    return NULL;
  g_autoptr (Tally__RegisterCertificate) payee =
    tally_register_check_peer (reg, payee_certificate, NULL, now, error);
  if (payee == NULL || !spend_check_request (reg, payee, request, now, error))
    return NULL;
  gint64 amount = request->amount->value;
  gint64 balance;
  if (!spend_check_limits (reg, amount, now, &balance, error))
    return NULL;

  guint64 counter = reg->state.counter + 1;
  guint8 entry_hash[TALLY_HASH_BYTES];
  g_autoptr (GBytes) env = spend_build_permission (reg, payee, request, now, entry_hash);

  TallySpentRow row = {
    .counter = counter,
    .kind = TALLY_ENTRY_SPENT,
    .envelope = env,
    .has_payee = TRUE,
    .amount = amount,
    .created_at = now,
    .state = TALLY_ENTRY_STATE_PENDING,
    .expires_at = request->expires_at,
    .has_certificate_hash = TRUE,
  };
  tally_envelope_body_hash (reg->cert_env, row.certificate_hash);
  /* Checked with the certificate; for the history's listings.  Borrowed:
   * @row is not cleared. */
  if (payee->display_name != NULL && *payee->display_name != '\0')
    row.payee_name = payee->display_name;
  memcpy (row.payee_id, payee->register_id.data, TALLY_ID_BYTES);
  memcpy (row.payee_key, payee->register_public_key.data, TALLY_PUBLIC_KEY_BYTES);

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.balance = balance;
  next.counter = counter;
  tally_chain_next (reg->state.chain_head, entry_hash, next.chain_head);
  next.offline_payments++;

  if (!chain_entry_commit (reg, TALLY_REGISTER_OP_SPEND, &row, &next, error))
    return NULL;
  g_debug ("spent %" G_GINT64_FORMAT " at counter %" G_GUINT64_FORMAT, amount, counter);
  tally_register_adopt (reg, TALLY_REGISTER_OP_SPEND, &next, NULL, NULL, NULL);
  return g_steal_pointer (&env);
}

/* --- payer: acknowledge --- */

/* Inside the transaction: the checks against the stored permission. */
gboolean
tally_register_acknowledge_locked (TallyRegister *reg,
                                   const Tally__SignedEnvelope *receipt,
                                   const Tally__Receipt *r,
                                   gboolean *changed,
                                   GError **error)
{
  g_auto (TallySpentRow) row = { 0 };
  gboolean found = FALSE;

  if (!reg->backend->spent_lookup (reg->store, r->payer_counter, &row, &found, error))
    return FALSE;
  if (!found || row.kind != TALLY_ENTRY_SPENT) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "no permission with counter %" G_GUINT64_FORMAT, r->payer_counter);
    return FALSE;
  }
  if (!tally_id_equals (&r->payer_register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the receipt is for another payer");
    return FALSE;
  }
  if (!tally_envelope_verify (receipt, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                              row.payee_key, error))
    return FALSE;
  if (!tally_id_equals (&r->payee_register_id, row.payee_id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the receipt names another payee than permission %" G_GUINT64_FORMAT,
                 r->payer_counter);
    return FALSE;
  }

  g_autoptr (Tally__SignedEnvelope) permission =
    tally_register_stored_envelope (row.envelope, "permission", error);
  if (permission == NULL)
    return FALSE;
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (permission, hash);
  if (r->permission_hash.len != TALLY_HASH_BYTES ||
      memcmp (r->permission_hash.data, hash, TALLY_HASH_BYTES) != 0 || r->amount == NULL ||
      r->amount->value != row.amount || r->permission_expires_at != row.expires_at ||
      reg->cert == NULL ||
      g_strcmp0 (r->amount->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "receipt does not match permission %" G_GUINT64_FORMAT, r->payer_counter);
    return FALSE;
  }

  /* The payee signs once per permission; a receipt already held stays. */
  if (row.receipt != NULL) {
    *changed = FALSE;
    return TRUE;
  }
  g_autoptr (GBytes) packed = tally_envelope_pack (receipt);
  TallyEntryState state =
    row.state == TALLY_ENTRY_STATE_PENDING ? TALLY_ENTRY_STATE_ACKNOWLEDGED : row.state;
  if (!reg->backend->spent_set_receipt (reg->store, row.counter, packed, state, error))
    return FALSE;
  /* The payee now caches the certificate the permission travelled with:
   * the one we held when we made it, which a reconciliation may have
   * renewed since (a receipt delivered again, or returned by the issuer). */
  if (row.has_certificate_hash &&
      !reg->backend->peer_put (reg->store, row.payee_id, row.certificate_hash, error))
    return FALSE;
  *changed = TRUE;
  return TRUE;
}

gboolean
tally_register_acknowledge (TallyRegister *reg,
                            const Tally__SignedEnvelope *receipt,
                            GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (receipt != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__Receipt) r = TALLY_UNPACK (Tally__Receipt, tally__receipt, receipt->body.data,
                                               receipt->body.len, "receipt", error);
  if (r == NULL)
    return FALSE;

  gboolean changed = FALSE;
  if (!tally_register_begin (reg, error))
    return FALSE;
  if (!tally_register_acknowledge_locked (reg, receipt, r, &changed, error))
    return tally_register_abort (reg);
  if (!changed) {
    tally_register_abort (reg);
    g_debug ("permission %" G_GUINT64_FORMAT " already acknowledged", r->payer_counter);
    return TRUE;
  }
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_ACKNOWLEDGE, error))
    return FALSE;
  g_debug ("permission %" G_GUINT64_FORMAT " acknowledged", r->payer_counter);
  tally_register_adopt (reg, TALLY_REGISTER_OP_ACKNOWLEDGE, NULL, NULL, NULL, NULL);
  return TRUE;
}

GBytes *
tally_register_get_pending (TallyRegister *reg,
                            const guint8 payee_id[static TALLY_ID_BYTES],
                            guint64 now,
                            GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (payee_id != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_auto (TallySpentRow) row = { 0 };
  gboolean found = FALSE;
  if (!reg->backend->begin (reg->store, FALSE, error))
    return NULL;
  gboolean ok = reg->backend->spent_find_pending (reg->store, payee_id, now, &row, &found, error);
  reg->backend->rollback (reg->store);
  if (!ok)
    return NULL;
  if (!found) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "no unacknowledged permission to that payee");
    return NULL;
  }
  return g_bytes_ref (row.envelope);
}

/* --- defund --- */

GBytes *
tally_register_defund (TallyRegister *reg, guint64 now, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!tally_register_need_certificate (reg, error) || !tally_register_need_open (reg, error))
    return NULL;
  if (reg->state.balance == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "nothing to defund");
    return NULL;
  }

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = reg->state.balance;
  Tally__DefundRecord d = TALLY__DEFUND_RECORD__INIT;
  d.register_id.data = reg->id;
  d.register_id.len = TALLY_ID_BYTES;
  d.amount = &a;
  d.counter = reg->state.counter + 1;
  d.chain_prev.data = reg->state.chain_head;
  d.chain_prev.len = TALLY_HASH_BYTES;
  d.created_at = now;
  guint8 entry_hash[TALLY_HASH_BYTES];
  g_autoptr (GBytes) env = tally_register_sign_message (
    reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &d.base, entry_hash);

  TallySpentRow row = {
    .counter = d.counter,
    .kind = TALLY_ENTRY_DEFUND,
    .envelope = env,
    .amount = a.value,
    .created_at = now,
    .state = TALLY_ENTRY_STATE_PENDING,
  };
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.balance = 0;
  next.closed = TRUE;
  next.counter = d.counter;
  tally_chain_next (reg->state.chain_head, entry_hash, next.chain_head);

  if (!chain_entry_commit (reg, TALLY_REGISTER_OP_DEFUND, &row, &next, error))
    return NULL;
  g_info ("defunded %" G_GINT64_FORMAT " at counter %" G_GUINT64_FORMAT, a.value, d.counter);
  tally_register_adopt (reg, TALLY_REGISTER_OP_DEFUND, &next, NULL, NULL, NULL);
  return g_steal_pointer (&env);
}
