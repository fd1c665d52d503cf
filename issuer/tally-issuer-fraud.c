/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fraud proofs and revocation: the signed revocation list, the proofs a
 * reconciliation records (protocol.md 5.3, 5.5), and the public calls that
 * revoke and list them.
 */
#include "tally-issuer-private.h"

#include <string.h>

#include "tally-hex.h"

gboolean
tally_issuer_latest_revocation_list (TallyIssuer *issuer,
                                     guint64 *serial,
                                     GBytes **env,
                                     GError **error)
{
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_revocation_list_get_latest (issuer->store, serial, env, &local))
    return TRUE;
  if (tally_issuer_is_not_found (local)) {
    *serial = 0;
    *env = NULL;
    return TRUE;
  }
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/* Signs and stores the next revocation list naming every revoked register. */
gboolean
tally_issuer_publish_revocation_list (TallyIssuer *issuer, guint64 now, GError **error)
{
  guint64 serial;
  g_autoptr (GBytes) previous = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  if (!tally_issuer_latest_revocation_list (issuer, &serial, &previous, error) ||
      !tally_issuer_store_register_list_revoked (issuer->store, &ids, error))
    return FALSE;

  g_autofree ProtobufCBinaryData *revoked = tally_issuer_binary_from_bytes (ids);

  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  list.serial = serial + 1;
  list.issued_at = now;
  list.n_revoked_register_ids = ids->len;
  list.revoked_register_ids = revoked;
  list.issuer_key_id.data = issuer->key_id;
  list.issuer_key_id.len = TALLY_ID_BYTES;

  g_autoptr (GBytes) env = tally_issuer_sign (
    issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST, &list.base);
  if (!tally_issuer_store_revocation_list_put (issuer->store, list.serial, now, env, error))
    return FALSE;
  g_info ("revocation list %" G_GUINT64_FORMAT " published with %u revoked register(s)",
          list.serial, ids->len);
  return TRUE;
}

/* Marks @register_id revoked; TRUE in *changed when it was not before. */
static gboolean
mark_revoked (TallyIssuer *issuer,
              const guint8 register_id[static TALLY_ID_BYTES],
              gboolean *changed,
              GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, register_id, &row, error))
    return FALSE;
  *changed = !row.revoked;
  if (row.revoked)
    return TRUE;
  row.revoked = TRUE;
  g_autofree char *hex = tally_hex_encode (register_id, TALLY_ID_BYTES);
  g_info ("register %s revoked", hex);
  return tally_issuer_store_register_put (issuer->store, &row, error);
}

/* Revokes @register_id during a reconciliation; the revocation list is
 * published once, after the bundle is booked, when this changed it. */
gboolean
tally_issuer_revoke_proven (Reconcile *rc, const guint8 register_id[static TALLY_ID_BYTES], GError **error)
{
  gboolean changed;
  if (!mark_revoked (rc->issuer, register_id, &changed, error))
    return FALSE;
  rc->revocations_changed |= changed;
  return TRUE;
}

/* Signs and stores a proof that @register_id signed two incompatible
 * objects: two chain entries, or a receipt and a bundle that could not both
 * come from an honest register.  @second is NULL only for a first entry that
 * does not start at the genesis head: that entry proves the fork on its own,
 * because the genesis head is a function of the register id. */
gboolean
tally_issuer_record_fraud_deficit (Reconcile *rc,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   Tally__FraudKind kind,
                                   const Tally__SignedEnvelope *first,
                                   const Tally__SignedEnvelope *second,
                                   gint64 deficit,
                                   GError **error)
{
  Tally__FraudProof fp = TALLY__FRAUD_PROOF__INIT;
  fp.deficit = deficit;
  fp.register_id.data = (guint8 *) register_id;
  fp.register_id.len = TALLY_ID_BYTES;
  fp.kind = kind;
  fp.first = (Tally__SignedEnvelope *) first;
  fp.second = (Tally__SignedEnvelope *) second;
  fp.detected_at = rc->now;

  TallyIssuerFraudRow *row = g_new0 (TallyIssuerFraudRow, 1);
  memcpy (row->register_id, register_id, TALLY_ID_BYTES);
  row->kind = kind;
  row->detected_at = rc->now;
  row->envelope = tally_issuer_sign (
    rc->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, &fp.base);
  g_ptr_array_add (rc->new_proofs, row);
  if (!tally_issuer_store_fraud_proof_insert (rc->issuer->store, row, error))
    return FALSE;

  rc->report.fraud_proofs++;
  g_autofree char *hex = tally_hex_encode (register_id, TALLY_ID_BYTES);
  g_info ("fraud by register %s: %s", hex, tally_issuer_fraud_kind_to_string (kind));
  return TRUE;
}

gboolean
tally_issuer_record_fraud (Reconcile *rc,
                           const guint8 register_id[static TALLY_ID_BYTES],
                           Tally__FraudKind kind,
                           const Tally__SignedEnvelope *first,
                           const Tally__SignedEnvelope *second,
                           GError **error)
{
  return tally_issuer_record_fraud_deficit (rc, register_id, kind, first, second, 0, error);
}

gboolean
tally_issuer_entries_at (Reconcile *rc,
                         const guint8 register_id[static TALLY_ID_BYTES],
                         guint64 counter,
                         GPtrArray **rows,
                         GError **error)
{
  return tally_issuer_store_entries_by_counter (rc->issuer->store, register_id, counter, rows,
                                                error);
}

/* Records @kind against @b's payer with the stored entry @stored as the
 * other half of the proof: first when @stored_first, else second. */
static gboolean
prove_against_stored (Reconcile *rc,
                      const Booking *b,
                      Tally__FraudKind kind,
                      GBytes *stored,
                      gboolean stored_first,
                      GError **error)
{
  g_autoptr (Tally__SignedEnvelope) env = tally_issuer_decode_stored (stored, error);
  return env != NULL && tally_issuer_record_fraud (rc, b->payer, kind, stored_first ? env : b->env,
                                                   stored_first ? b->env : env, error);
}

/* Counter reuse: another entry is known at @b's counter (in *same). */
static gboolean
check_counter_unused (Reconcile *rc,
                      const Booking *b,
                      GPtrArray **same,
                      gboolean *fraud,
                      GError **error)
{
  if (!tally_issuer_entries_at (rc, b->payer, b->counter, same, error))
    return FALSE;
  if ((*same)->len > 0) {
    const TallyIssuerEntryRow *first = (*same)->pdata[0];
    if (!prove_against_stored (rc, b, TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED,
                               first->envelope, TRUE, error))
      return FALSE;
    *fraud = TRUE;
  }
  return TRUE;
}

/* A fork: @b does not extend the genesis head (counter 1) or the head after
 * any known entry at counter - 1. */
static gboolean
check_extends_predecessor (Reconcile *rc, const Booking *b, gboolean *fraud, GError **error)
{
  if (b->counter == 1) {
    guint8 genesis[TALLY_HASH_BYTES];
    tally_chain_genesis (b->payer, genesis);
    if (memcmp (genesis, b->chain_prev, TALLY_HASH_BYTES) != 0) {
      if (!tally_issuer_record_fraud (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK,
                                      b->env, NULL, error))
        return FALSE;
      *fraud = TRUE;
    }
  } else {
    g_autoptr (GPtrArray) prev = NULL;
    if (!tally_issuer_entries_at (rc, b->payer, b->counter - 1, &prev, error))
      return FALSE;
    gboolean extends = prev->len == 0;
    for (guint i = 0; i < prev->len && !extends; i++) {
      const TallyIssuerEntryRow *p = prev->pdata[i];
      extends = memcmp (p->chain_after, b->chain_prev, TALLY_HASH_BYTES) == 0;
    }
    if (!extends) {
      const TallyIssuerEntryRow *p = prev->pdata[0];
      if (!prove_against_stored (rc, b, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, p->envelope,
                                 TRUE, error))
        return FALSE;
      *fraud = TRUE;
    }
  }
  return TRUE;
}

/* A fork: a known entry at counter + 1 does not extend @b.  Payees may
 * reconcile before their payer, so the successor may be booked first. */
static gboolean
check_successor_extends (Reconcile *rc, const Booking *b, gboolean *fraud, GError **error)
{
  if (b->counter == G_MAXUINT64)
    return TRUE;
  g_autoptr (GPtrArray) next = NULL;
  if (!tally_issuer_entries_at (rc, b->payer, b->counter + 1, &next, error))
    return FALSE;
  for (guint i = 0; i < next->len; i++) {
    const TallyIssuerEntryRow *n = next->pdata[i];
    if (memcmp (n->chain_prev, b->chain_after, TALLY_HASH_BYTES) == 0)
      continue;
    if (!prove_against_stored (rc, b, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, n->envelope,
                               FALSE, error))
      return FALSE;
    *fraud = TRUE;
    break;
  }
  return TRUE;
}

/*
 * Double-spending detection for an entry not booked before: another entry
 * at the same counter is counter reuse; an entry that does not extend the
 * head after any known entry at counter - 1 (or the genesis head at
 * counter 1), or that a known entry at counter + 1 does not extend, is a
 * fork.  Sets *fraud when either holds.
 */
gboolean
tally_issuer_detect_fraud (Reconcile *rc, const Booking *b, gboolean *fraud, GError **error)
{
  g_autoptr (GPtrArray) same = NULL;
  *fraud = FALSE;

  return check_counter_unused (rc, b, &same, fraud, error) &&
         check_extends_predecessor (rc, b, fraud, error) &&
         (same->len > 0 || check_successor_extends (rc, b, fraud, error));
}

/*
 * A late receipt (protocol.md 5.3): @payee signed @receipt for a permission
 * that a bundle of its own, made at or after the expiry, did not list.  An
 * honest register cannot do both, so it was rolled back or cloned.  The
 * evidence is the bundle that set the payee's current horizon: horizons only
 * rise, and a bundle that had listed the permission would have booked the
 * payee's half when it was reconciled.
 */
gboolean
tally_issuer_prove_late_receipt (Reconcile *rc,
                                 const guint8 payee[static TALLY_ID_BYTES],
                                 const Tally__SignedEnvelope *receipt,
                                 GError **error)
{
  g_return_val_if_fail (receipt != NULL, FALSE);

  g_autoptr (GBytes) bundle_bytes = NULL;
  g_autoptr (GError) local = NULL;
  if (!tally_issuer_store_horizon_bundle_get (rc->issuer->store, payee, &bundle_bytes, &local)) {
    if (tally_issuer_is_not_found (local))
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                   "payee has a horizon but no bundle that set it");
    else
      g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  g_autoptr (Tally__SignedEnvelope) bundle = tally_issuer_decode_stored (bundle_bytes, error);
  if (bundle == NULL || !tally_issuer_revoke_proven (rc, payee, error) ||
      !tally_issuer_record_fraud (rc, payee, TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT, receipt,
                                  bundle, error))
    return FALSE;
  rc->report.late_receipts++;
  return TRUE;
}

/* TRUE in *over when @amount is above every max_payment @payer was ever
 * certified with: no honest register signs it, no honest payee accepts it. */
gboolean
tally_issuer_over_limit (Reconcile *rc,
                         const guint8 payer[static TALLY_ID_BYTES],
                         gint64 amount,
                         gboolean *over,
                         GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, payer, &row, error))
    return FALSE;
  *over = amount > row.max_payment_ever;
  return TRUE;
}

gboolean
tally_issuer_prove_and_revoke (Reconcile *rc,
                               const guint8 register_id[static TALLY_ID_BYTES],
                               Tally__FraudKind kind,
                               const Tally__SignedEnvelope *first,
                               const Tally__SignedEnvelope *second,
                               GError **error)
{
  return tally_issuer_record_fraud (rc, register_id, kind, first, second, error) &&
         tally_issuer_revoke_proven (rc, register_id, error);
}

/*
 * The payee's half of a permission above its payer's limit (protocol.md
 * 5.5): the payee skipped a check every honest payee makes, so it is proven
 * and revoked, and the half is booked tainted: it moves the value to the
 * payee's view but is no evidence for it, so the payee cannot defund it.
 */
gboolean
tally_issuer_taint_payee_half (Reconcile *rc,
                               const Booking *b,
                               TallyIssuerEntryRow *row,
                               GError **error)
{
  row->tainted = TRUE;
  return tally_issuer_prove_and_revoke (rc, b->payee, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT,
                                        b->receipt, b->env, error);
}

const char *
tally_issuer_fraud_kind_to_string (Tally__FraudKind kind)
{
  switch (kind) {
  case TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED: return "counter-reused";
  case TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK: return "chain-fork";
  case TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT: return "late-receipt";
  case TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN: return "overdrawn";
  case TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT: return "over-limit";
  case TALLY__FRAUD_KIND__FRAUD_KIND_UNSPECIFIED:
  case _TALLY__FRAUD_KIND_IS_INT_SIZE: break;
  }
  return "unknown";
}

gboolean
tally_issuer_revoke (TallyIssuer *issuer,
                     const guint8 register_id[static TALLY_ID_BYTES],
                     guint64 now,
                     GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (register_id != NULL, FALSE);

  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean changed = FALSE;
  gboolean ok = mark_revoked (issuer, register_id, &changed, error) &&
                (!changed || tally_issuer_publish_revocation_list (issuer, now, error));
  return tally_issuer_finish (issuer, ok, error);
}

/* Revokes @register_id when @account owns it; NOT_FOUND otherwise. */
static gboolean
report_lost_locked (TallyIssuer *issuer,
                    const char *account,
                    const guint8 register_id[static TALLY_ID_BYTES],
                    guint64 now,
                    GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_account_register_get (issuer, account, register_id, &row, error))
    return FALSE;
  gboolean changed = FALSE;
  return mark_revoked (issuer, register_id, &changed, error) &&
         tally_issuer_mark_lost (issuer, register_id, now, error) &&
         (!changed || tally_issuer_publish_revocation_list (issuer, now, error));
}

gboolean
tally_issuer_report_lost (TallyIssuer *issuer,
                          const char *account,
                          const guint8 register_id[static TALLY_ID_BYTES],
                          guint64 now,
                          GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);
  g_return_val_if_fail (register_id != NULL, FALSE);

  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  return tally_issuer_finish (issuer, report_lost_locked (issuer, account, register_id, now, error),
                              error);
}

GBytes *
tally_issuer_get_revocation_list (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  guint64 serial;
  g_autoptr (GBytes) env = NULL;
  gboolean ok =
    tally_issuer_store_revocation_list_get_latest (issuer->store, &serial, &env, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return NULL;
  return g_steal_pointer (&env);
}

GPtrArray *
tally_issuer_get_fraud_proofs (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GPtrArray) rows = NULL;
  gboolean ok = tally_issuer_store_fraud_proof_list (issuer->store, NULL, &rows, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return NULL;

  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < rows->len; i++) {
    TallyIssuerFraudRow *row = rows->pdata[i];
    g_ptr_array_add (out, g_bytes_ref (row->envelope));
  }
  return out;
}
