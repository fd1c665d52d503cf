/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reconciliation with the issuer (protocol 4.4 and 5): the bundle a
 * register exports and the result it applies.
 */
#include "tally-register.h"

#include <string.h>

#include "tally-register-backend.h"
#include "tally-register-private.h"

/* --- reconciliation --- */

/* Decodes @bytes into an envelope owned by @owner (NULL for NULL). */
static Tally__SignedEnvelope *
own_envelope (GPtrArray *owner, GBytes *bytes, const char *what, GError **error)
{
  if (bytes == NULL)
    return NULL;
  Tally__SignedEnvelope *env = tally_register_stored_envelope (bytes, what, error);
  if (env != NULL)
    g_ptr_array_add (owner, env);
  return env;
}

static GBytes *
abort_bundle (TallyRegister *reg)
{
  tally_register_abort (reg);
  return NULL;
}

/* The bundle's entries for our unsettled permissions and defund, each
 * with its receipt where we hold one. */
static gboolean
bundle_fill_spent (GPtrArray *owner,
                   GPtrArray *spent,
                   Tally__SpentEntry *spent_entries,
                   Tally__SpentEntry **spent_ptrs,
                   GError **error)
{
  for (guint i = 0; i < spent->len; i++) {
    TallySpentRow *row = spent->pdata[i];
    tally__spent_entry__init (&spent_entries[i]);
    spent_entries[i].permission = own_envelope (owner, row->envelope, "spent entry", error);
    if (spent_entries[i].permission == NULL)
      return FALSE;
    if (row->receipt != NULL &&
        (spent_entries[i].receipt = own_envelope (owner, row->receipt, "receipt", error)) == NULL)
      return FALSE;
    spent_ptrs[i] = &spent_entries[i];
  }
  return TRUE;
}

/* The bundle's entries for the permissions we received and not yet
 * settled, with the payer's certificate and our receipt. */
static gboolean
bundle_fill_received (GPtrArray *owner,
                      GPtrArray *received,
                      Tally__ReceivedEntry *received_entries,
                      Tally__ReceivedEntry **received_ptrs,
                      GError **error)
{
  for (guint i = 0; i < received->len; i++) {
    TallyReceivedRow *row = received->pdata[i];
    Tally__ReceivedEntry *e = &received_entries[i];
    tally__received_entry__init (e);
    if ((e->payer_certificate = own_envelope (owner, row->payer_certificate, "payer certificate",
                                              error)) == NULL ||
        (e->permission = own_envelope (owner, row->permission, "permission", error)) == NULL ||
        (e->receipt = own_envelope (owner, row->receipt, "receipt", error)) == NULL)
      return FALSE;
    received_ptrs[i] = e;
  }
  return TRUE;
}

/* The vouchers of our unsettled loads. */
static gboolean
bundle_fill_vouchers (GPtrArray *owner,
                      GPtrArray *loads,
                      Tally__SignedEnvelope **vouchers,
                      GError **error)
{
  for (guint i = 0; i < loads->len; i++) {
    TallyLoadRow *row = loads->pdata[i];
    if ((vouchers[i] = own_envelope (owner, row->envelope, "voucher", error)) == NULL)
      return FALSE;
  }
  return TRUE;
}

GBytes *
tally_register_export_bundle (TallyRegister *reg, guint64 now, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!tally_register_need_certificate (reg, error))
    return NULL;

  /* One transaction: the rows, and the horizon the bundle reports.  Once
   * the issuer holds this bundle it may give back any permission to us
   * that expired by @now and is not listed, so from then on we refuse
   * those (protocol 4.4). */
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.horizon = MAX (reg->state.horizon, now);
  gboolean advance = next.horizon != reg->state.horizon;
  if (!reg->backend->begin (reg->store, advance, error))
    return NULL;
  g_autoptr (GPtrArray) spent = reg->backend->spent_list_unsettled (reg->store, error);
  g_autoptr (GPtrArray) received =
    spent ? reg->backend->received_list_unsettled (reg->store, error) : NULL;
  g_autoptr (GPtrArray) loads =
    received ? reg->backend->loads_list_unsettled (reg->store, error) : NULL;
  if (loads == NULL || (advance && !reg->backend->state_write (reg->store, &next, error))) {
    tally_register_abort (reg);
    return NULL;
  }

  g_autoptr (GPtrArray) owner =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);
  g_autofree Tally__SpentEntry *spent_entries = g_new0 (Tally__SpentEntry, spent->len);
  g_autofree Tally__SpentEntry **spent_ptrs = g_new0 (Tally__SpentEntry *, spent->len);
  g_autofree Tally__ReceivedEntry *received_entries = g_new0 (Tally__ReceivedEntry, received->len);
  g_autofree Tally__ReceivedEntry **received_ptrs = g_new0 (Tally__ReceivedEntry *, received->len);
  g_autofree Tally__SignedEnvelope **vouchers = g_new0 (Tally__SignedEnvelope *, loads->len);
  if (!bundle_fill_spent (owner, spent, spent_entries, spent_ptrs, error) ||
      !bundle_fill_received (owner, received, received_entries, received_ptrs, error) ||
      !bundle_fill_vouchers (owner, loads, vouchers, error))
    return abort_bundle (reg);

  Tally__ReconciliationBundle b = TALLY__RECONCILIATION_BUNDLE__INIT;
  b.register_id.data = reg->id;
  b.register_id.len = TALLY_ID_BYTES;
  b.certificate = reg->cert_env;
  b.counter = reg->state.counter;
  b.chain_head.data = reg->state.chain_head;
  b.chain_head.len = TALLY_HASH_BYTES;
  b.balance = reg->state.balance;
  b.n_spent = spent->len;
  b.spent = spent_ptrs;
  b.n_received = received->len;
  b.received = received_ptrs;
  b.n_vouchers = loads->len;
  b.vouchers = vouchers;
  b.created_at = now;
  b.revocation_serial = reg->state.revocation_serial;
  g_autoptr (GBytes) bundle = tally_register_sign_message (
    reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE, &b.base, NULL);
  g_debug ("bundle: %u spent, %u received, %u vouchers, horizon %" G_GUINT64_FORMAT, spent->len,
           received->len, loads->len, next.horizon);
  if (!advance) {
    tally_register_abort (reg);
    return g_steal_pointer (&bundle);
  }
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_EXPORT, error))
    return NULL;
  tally_register_adopt (reg, TALLY_REGISTER_OP_EXPORT, &next, NULL, NULL, NULL);
  return g_steal_pointer (&bundle);
}

/* Inside the transaction: marks our unacknowledged permissions that the
 * issuer gave back.  A hash we no longer hold pending was resolved by an
 * earlier result. */
static gboolean
reclaim_locked (TallyRegister *reg, const Tally__ReconciliationResult *r, GError **error)
{
  if (r->n_reclaimed == 0)
    return TRUE;
  g_autoptr (GPtrArray) spent = reg->backend->spent_list_unsettled (reg->store, error);
  if (spent == NULL)
    return FALSE;
  for (guint i = 0; i < spent->len; i++) {
    const TallySpentRow *row = spent->pdata[i];
    if (row->kind != TALLY_ENTRY_SPENT || row->receipt != NULL)
      continue;
    g_autoptr (Tally__SignedEnvelope) env =
      tally_register_stored_envelope (row->envelope, "permission", error);
    if (env == NULL)
      return FALSE;
    guint8 hash[TALLY_HASH_BYTES];
    tally_envelope_body_hash (env, hash);
    for (gsize j = 0; j < r->n_reclaimed; j++) {
      if (memcmp (r->reclaimed[j].data, hash, TALLY_HASH_BYTES) != 0)
        continue;
      if (!reg->backend->spent_set_state (reg->store, row->counter, TALLY_ENTRY_STATE_RECLAIMED,
                                          error))
        return FALSE;
      g_info ("permission %" G_GUINT64_FORMAT " expired unacknowledged: given back online",
              row->counter);
      break;
    }
  }
  return TRUE;
}

/* A result's renewed certificate: issued to this register's key, in its
 * currency.  Its validity window is not checked against the clock: the
 * register takes what the issuer renewed whenever the result arrives. */
static Tally__RegisterCertificate *
renewed_certificate_verify (TallyRegister *reg, const Tally__SignedEnvelope *env, GError **error)
{
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (env, reg->state.issuer_key, error);
  if (cert == NULL)
    return NULL;
  if (memcmp (cert->register_public_key.data, reg->state.public_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the renewed certificate is for another register's key");
    return NULL;
  }
  if (reg->cert != NULL && strcmp (cert->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "the renewed certificate changes the currency");
    return NULL;
  }
  return g_steal_pointer (&cert);
}

/* Whether @cert is newer than the certificate the register holds. */
static gboolean
renews_certificate (TallyRegister *reg, const Tally__RegisterCertificate *cert)
{
  return cert != NULL && (reg->cert == NULL || cert->serial > reg->cert->serial);
}

/*
 * Protocol 5, applying a result.  reconciled_at counts whole seconds, so
 * two reconciliations of one register can share it.  Within one second the
 * later result is told by what only grows: the issuer renews the
 * certificate of every register it has not revoked on every
 * reconciliation, each time with a greater serial, and a revocation is
 * final.  So a result of the same second as the last one applied is newer
 * when it revokes a register not yet revoked, or renews the certificate
 * with a serial above the one held; anything else is that result again, or
 * an older one.  Applying one twice would reset the offline count twice.
 */
static gboolean
result_is_newer (TallyRegister *reg,
                 const Tally__ReconciliationResult *r,
                 const Tally__RegisterCertificate *renewed)
{
  if (r->reconciled_at != reg->state.last_result_at)
    return r->reconciled_at > reg->state.last_result_at;
  if (reg->state.revoked)
    return FALSE;
  if (r->revoked)
    return TRUE;
  return renews_certificate (reg, renewed);
}

/* The result is the issuer's, for this register, and its hashes are
 * hashes. */
static Tally__ReconciliationResult *
result_check (TallyRegister *reg, const Tally__SignedEnvelope *env, GError **error)
{
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
                              reg->state.issuer_key, error))
    return NULL;
  g_autoptr (Tally__ReconciliationResult) r =
    TALLY_UNPACK (Tally__ReconciliationResult, tally__reconciliation_result, env->body.data,
                  env->body.len, "reconciliation result", error);
  if (r == NULL)
    return NULL;
  if (!tally_id_equals (&r->register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the result is for another register");
    return NULL;
  }
  for (gsize i = 0; i < r->n_settled_received; i++)
    if (!tally_check_bytes (&r->settled_received[i], TALLY_HASH_BYTES, "settled permission hash",
                            error))
      return NULL;
  for (gsize i = 0; i < r->n_reclaimed; i++)
    if (!tally_check_bytes (&r->reclaimed[i], TALLY_HASH_BYTES, "reclaimed permission hash",
                            error))
      return NULL;
  return g_steal_pointer (&r);
}

/* The bodies of the receipts the result returns, as Tally__Receipt *. */
static GPtrArray *
result_decode_receipts (const Tally__ReconciliationResult *r, GError **error)
{
  g_autoptr (GPtrArray) receipts =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__receipt_free);
  for (gsize i = 0; i < r->n_receipts; i++) {
    Tally__Receipt *rr = TALLY_UNPACK (Tally__Receipt, tally__receipt, r->receipts[i]->body.data,
                                       r->receipts[i]->body.len, "returned receipt", error);
    if (rr == NULL)
      return NULL;
    g_ptr_array_add (receipts, rr);
  }
  return g_steal_pointer (&receipts);
}

/* The state after a newer result, in @next, with the revocation list and
 * certificate it brings where they are newer than ours. */
static gboolean
result_build_state (TallyRegister *reg,
                    const Tally__ReconciliationResult *r,
                    TallyRegisterState *next,
                    Tally__RevocationList **rl_out,
                    Tally__SignedEnvelope **cert_env_out,
                    Tally__RegisterCertificate **cert_out,
                    GError **error)
{
  g_autoptr (Tally__RevocationList) rl = NULL;
  if (r->revocation_list != NULL) {
    rl = tally_revocation_list_verify (r->revocation_list, reg->state.issuer_key, error);
    if (rl == NULL)
      return FALSE;
    if (!tally_register_take_revocation_list (reg, next, r->revocation_list, rl))
      g_clear_pointer (&rl, tally__revocation_list_free);
  }

  g_autoptr (Tally__SignedEnvelope) cert_env = NULL;
  g_autoptr (Tally__RegisterCertificate) cert = NULL;
  if (r->renewed_certificate != NULL &&
      (cert = renewed_certificate_verify (reg, r->renewed_certificate, error)) == NULL)
    return FALSE;
  if (!result_is_newer (reg, r, cert)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "result of %" G_GUINT64_FORMAT
                 " is not newer than the last one applied (%" G_GUINT64_FORMAT ")",
                 r->reconciled_at, reg->state.last_result_at);
    return FALSE;
  }
  if (renews_certificate (reg, cert)) {
    cert_env = tally_envelope_copy (r->renewed_certificate);
    g_clear_pointer (&next->certificate, g_bytes_unref);
    next->certificate = tally_envelope_pack (r->renewed_certificate);
  } else {
    g_clear_pointer (&cert, tally__register_certificate_free);
  }

  if (r->revoked)
    next->revoked = TRUE;
  next->offline_payments = 0;
  next->last_reconciliation = r->reconciled_at;
  next->last_result_at = r->reconciled_at;
  *rl_out = g_steal_pointer (&rl);
  *cert_env_out = g_steal_pointer (&cert_env);
  *cert_out = g_steal_pointer (&cert);
  return TRUE;
}

/* Inside the transaction: receipts the payees gave the issuer first: paid.
 * Then permissions the issuer gave back: not paid.  Only then settle
 * (protocol 4.4), and write @next. */
static gboolean
result_write (TallyRegister *reg,
              const Tally__ReconciliationResult *r,
              GPtrArray *receipts,
              const TallyRegisterState *next,
              GError **error)
{
  gboolean ok = TRUE;
  for (gsize i = 0; ok && i < r->n_receipts; i++) {
    gboolean changed;
    ok =
      tally_register_acknowledge_locked (reg, r->receipts[i], receipts->pdata[i], &changed, error);
  }
  ok = ok && reclaim_locked (reg, r, error) &&
       reg->backend->spent_settle_through (reg->store, r->settled_counter, error);
  for (gsize i = 0; ok && i < r->n_settled_received; i++)
    ok = reg->backend->received_settle (reg->store, r->settled_received[i].data, error);
  ok = ok && reg->backend->loads_settle_through (reg->store, r->settled_voucher_sequence, error) &&
       reg->backend->state_write (reg->store, next, error);
  return ok;
}

gboolean
tally_register_apply_result (TallyRegister *reg,
                             const guint8 *result,
                             gsize len,
                             guint64 now,
                             GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (result != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!tally_register_need_issuer (reg, error))
    return FALSE;
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (result, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__ReconciliationResult) r = result_check (reg, env, error);
  if (r == NULL)
    return FALSE;
  g_autoptr (GPtrArray) receipts = result_decode_receipts (r, error);
  if (receipts == NULL)
    return FALSE;

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  g_autoptr (Tally__RevocationList) rl = NULL;
  g_autoptr (Tally__SignedEnvelope) cert_env = NULL;
  g_autoptr (Tally__RegisterCertificate) cert = NULL;
  if (!result_build_state (reg, r, &next, &rl, &cert_env, &cert, error))
    return FALSE;

  if (!tally_register_begin (reg, error))
    return FALSE;
  if (!result_write (reg, r, receipts, &next, error))
    return tally_register_abort (reg);
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_APPLY, error))
    return FALSE;
  g_info ("applied reconciliation of %" G_GUINT64_FORMAT ": settled through counter %"
          G_GUINT64_FORMAT ", %zu received, %zu receipts returned, %zu reclaimed",
          r->reconciled_at, r->settled_counter, r->n_settled_received, r->n_receipts,
          r->n_reclaimed);
  tally_register_adopt (reg, TALLY_REGISTER_OP_APPLY, &next, g_steal_pointer (&cert_env),
                        g_steal_pointer (&cert), g_steal_pointer (&rl));
  return TRUE;
}
