/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reconciliation of one register bundle: intake and booking in order, the
 * completeness and evidence rules, the horizon, and the signed result.
 */
#include "tally-issuer-private.h"

#include <string.h>

#include "tally-hex.h"

/* Appends @hash to a list of 32-byte GBytes unless it is there. */
gboolean
tally_issuer_add_hash_once (GPtrArray *hashes, const guint8 hash[static TALLY_HASH_BYTES])
{
  for (guint i = 0; i < hashes->len; i++)
    if (memcmp (g_bytes_get_data (hashes->pdata[i], NULL), hash, TALLY_HASH_BYTES) == 0)
      return FALSE;
  g_ptr_array_add (hashes, g_bytes_new (hash, TALLY_HASH_BYTES));
  return TRUE;
}

/*
 * The bundle's created_at is the register's durable horizon: it refuses
 * every permission expiring at or before it.  Raising it reclaims the
 * register's expired incoming permissions still in flight.  Runs after the
 * bundle's received entries are booked, so none of those is reclaimed.
 */
static gboolean
raise_horizon (Reconcile *rc,
               const Tally__ReconciliationBundle *bundle,
               const Tally__SignedEnvelope *env,
               GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error))
    return FALSE;
  if (bundle->created_at <= row.horizon)
    return TRUE;

  g_autofree char *hex = tally_issuer_short_hex (rc->register_id);
  g_debug ("register %s: horizon %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT, hex, row.horizon,
           bundle->created_at);
  row.horizon = bundle->created_at;
  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  g_autoptr (GPtrArray) expired = NULL;
  if (!tally_issuer_store_register_put (rc->issuer->store, &row, error) ||
      !tally_issuer_store_horizon_bundle_put (rc->issuer->store, rc->register_id, packed, error) ||
      !tally_issuer_store_entries_expired_in_flight (rc->issuer->store, rc->register_id,
                                                     row.horizon, &expired, error))
    return FALSE;
  for (guint i = 0; i < expired->len; i++)
    if (!tally_issuer_reclaim (rc, expired->pdata[i], error))
      return FALSE;
  return TRUE;
}

/* What the register learns about its own permissions in this bundle: the
 * reclaimed ones, and the payee's receipt for each settled one the bundle
 * listed without a receipt of its own. */
static gboolean
collect_outcomes (Reconcile *rc, GError **error)
{
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < rc->spent->len; i++) {
    const Booking *b = &g_array_index (rc->spent, Booking, i);
    if (b->kind != TALLY_ISSUER_ENTRY_PERMISSION || !tally_issuer_add_hash_once (seen, b->hash))
      continue;
    g_auto (TallyIssuerEntryRow) row = { 0 };
    if (!tally_issuer_store_entry_get_by_hash (rc->issuer->store, b->hash, &row, error))
      return FALSE;
    switch (row.state) {
    case TALLY_ISSUER_ENTRY_RECLAIMED:
      g_ptr_array_add (rc->reclaimed, g_bytes_new (b->hash, TALLY_HASH_BYTES));
      break;
    case TALLY_ISSUER_ENTRY_SETTLED:
      if (!b->payee_half && row.receipt != NULL) {
        Tally__SignedEnvelope *receipt = tally_issuer_decode_stored (row.receipt, error);
        if (receipt == NULL)
          return FALSE;
        g_ptr_array_add (rc->receipts, receipt);
      }
      break;
    case TALLY_ISSUER_ENTRY_IN_FLIGHT: break;
    }
  }
  return TRUE;
}

/* The bundle's own entry with the highest counter; NULL when it lists none. */
static const Booking *
highest_listed (Reconcile *rc)
{
  const Booking *top = NULL;
  for (guint i = 0; i < rc->spent->len; i++) {
    const Booking *b = &g_array_index (rc->spent, Booking, i);
    if (top == NULL || b->counter > top->counter)
      top = b;
  }
  return top;
}

/* Highest c such that every counter 1..c of the register is booked. */
static gboolean
advance_settled_counter (Reconcile *rc, TallyIssuerRegisterRow *row, GError **error)
{
  while (row->settled_counter < G_MAXUINT64) {
    g_autoptr (GPtrArray) next = NULL;
    if (!tally_issuer_entries_at (rc, row->id, row->settled_counter + 1, &next, error))
      return FALSE;
    if (next->len == 0)
      break;
    row->settled_counter++;
  }
  return TRUE;
}

/*
 * A bundle may leave no counter below its highest own entry unbooked
 * (protocol.md 5.5).  Otherwise a register could hide a payment, list a
 * later defund, and have it credited against value the hidden payment had
 * already spent.  An honest register lists every entry the issuer has not
 * settled, so this never refuses one.
 */
static gboolean
check_complete (Reconcile *rc, GError **error)
{
  const Booking *top = highest_listed (rc);
  if (top == NULL)
    return TRUE;
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error) ||
      !advance_settled_counter (rc, &row, error))
    return FALSE;
  if (row.settled_counter >= top->counter)
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INCOMPLETE,
               "bundle lists counter %" G_GUINT64_FORMAT
               " but no entry at counter %" G_GUINT64_FORMAT " is known",
               top->counter, row.settled_counter + 1);
  return FALSE;
}

/*
 * Once the register's whole bundle is booked, its evidence through the
 * counter it reports must not be negative (protocol.md 5.5).  A deficit is
 * value the register spent that nothing backs: an edited balance, a key
 * used beyond the balance, a clone.  A new or larger deficit is proven with
 * an OVERDRAWN fraud proof and the register is revoked.  Only the
 * register's own evidence counts here, never the lost-register refund: what
 * the refund paid its account and could not take back is the issuer's act,
 * exposure in the audit, and no proof against the register.
 */
static gboolean
check_overdrawn (Reconcile *rc,
                 const Tally__ReconciliationBundle *bundle,
                 const Tally__SignedEnvelope *env,
                 GError **error)
{
  const Booking *top = highest_listed (rc);
  guint64 through = MAX (bundle->counter, top ? top->counter : 0);
  gint64 backed;
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (through == 0)
    return TRUE;
  if (!tally_issuer_own_evidence_through (rc, rc->register_id, through, &backed, error) ||
      !tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error))
    return FALSE;
  if (backed >= 0 || -backed <= row.deficit)
    return TRUE;

  row.deficit = -backed;
  return tally_issuer_store_register_put (rc->issuer->store, &row, error) &&
         tally_issuer_record_fraud_deficit (rc, rc->register_id,
                                            TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN, env,
                                            top ? top->env : NULL, row.deficit, error) &&
         tally_issuer_revoke_proven (rc, rc->register_id, error);
}

/* Proofs against this register, plus any this bundle exposed in others. */
static GPtrArray *
result_proofs (Reconcile *rc, GError **error)
{
  g_autoptr (GPtrArray) own_proofs = NULL;
  if (!tally_issuer_store_fraud_proof_list (rc->issuer->store, rc->register_id, &own_proofs, error))
    return NULL;
  g_autoptr (GPtrArray) proofs =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);
  for (guint i = 0; i < own_proofs->len + rc->new_proofs->len; i++) {
    const TallyIssuerFraudRow *f = i < own_proofs->len
                                     ? own_proofs->pdata[i]
                                     : rc->new_proofs->pdata[i - own_proofs->len];
    /* New proofs against this register are already among its own. */
    if (i >= own_proofs->len && memcmp (f->register_id, rc->register_id, TALLY_ID_BYTES) == 0)
      continue;
    Tally__SignedEnvelope *env = tally_issuer_decode_stored (f->envelope, error);
    if (env == NULL)
      return NULL;
    g_ptr_array_add (proofs, env);
  }
  return g_steal_pointer (&proofs);
}

static GBytes *
sign_result (Reconcile *rc,
             const Tally__SignedEnvelope *bundle_env,
             const TallyIssuerRegisterRow *row,
             GBytes *renewed,
             GError **error)
{
  guint64 serial;
  g_autoptr (GBytes) list_bytes = NULL;
  if (!tally_issuer_latest_revocation_list (rc->issuer, &serial, &list_bytes, error))
    return NULL;
  g_autoptr (Tally__SignedEnvelope) list = tally_issuer_decode_stored (list_bytes, error);
  if (list == NULL)
    return NULL;
  g_autoptr (Tally__SignedEnvelope) cert = NULL;
  if (renewed != NULL && (cert = tally_issuer_decode_stored (renewed, error)) == NULL)
    return NULL;

  g_autoptr (GPtrArray) proofs = result_proofs (rc, error);
  if (proofs == NULL)
    return NULL;

  g_autofree ProtobufCBinaryData *received = tally_issuer_binary_from_bytes (rc->settled_received);
  g_autofree ProtobufCBinaryData *reclaimed = tally_issuer_binary_from_bytes (rc->reclaimed);

  guint8 bundle_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (bundle_env, bundle_hash);

  Tally__ReconciliationResult result = TALLY__RECONCILIATION_RESULT__INIT;
  result.register_id.data = rc->register_id;
  result.register_id.len = TALLY_ID_BYTES;
  result.settled_counter = row->settled_counter;
  result.n_settled_received = rc->settled_received->len;
  result.settled_received = received;
  result.revocation_list = list;
  result.renewed_certificate = cert;
  result.reconciled_at = rc->now;
  result.revoked = row->revoked;
  result.n_fraud_proofs = proofs->len;
  result.fraud_proofs = (Tally__SignedEnvelope **) proofs->pdata;
  result.bundle_hash.data = bundle_hash;
  result.bundle_hash.len = TALLY_HASH_BYTES;
  result.settled_voucher_sequence = rc->settled_voucher_sequence;
  result.n_reclaimed = rc->reclaimed->len;
  result.reclaimed = reclaimed;
  result.n_receipts = rc->receipts->len;
  result.receipts = (Tally__SignedEnvelope **) rc->receipts->pdata;
  return tally_issuer_sign (
    rc->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT, &result.base);
}

/* Decodes the bundle and checks that the register it names, as certified
 * here, signed it, under the key its row holds: before the transaction,
 * since that key never changes.  Sets rc's register id and key. */
static gboolean
open_bundle (Reconcile *rc,
             const guint8 *data,
             gsize len,
             Tally__SignedEnvelope **env_out,
             Tally__ReconciliationBundle **bundle_out,
             GError **error)
{
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__ReconciliationBundle) bundle =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, env->body.data,
                  env->body.len, "bundle", error);
  if (bundle == NULL ||
      !tally_check_bytes (&bundle->register_id, TALLY_ID_BYTES, "bundle register id", error))
    return FALSE;
  if (bundle->counter > G_MAXINT64) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "bundle counter %" G_GUINT64_FORMAT " is beyond 2^63 - 1", bundle->counter);
    return FALSE;
  }
  memcpy (rc->register_id, bundle->register_id.data, TALLY_ID_BYTES);

  if (!tally_issuer_store_register_key (rc->issuer->store, rc->register_id, rc->register_key,
                                        error))
    return FALSE;
  if (!tally_envelope_verify (env,
                              TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
                              rc->register_key, error))
    return FALSE;
  *env_out = g_steal_pointer (&env);
  *bundle_out = g_steal_pointer (&bundle);
  return TRUE;
}

/* The meta key under which the result for a bundle is kept: the hash of
 * its signed body, not of the request's bytes, which the envelope's
 * decoder would take in other wrappings (unknown fields, longer varints).
 * Not of the signature either: whoever holds the register's key can sign
 * the same body again differently, and the same body gets the same
 * result. */
static char *
result_key (const Tally__SignedEnvelope *env)
{
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, hash);
  g_autofree char *hex = tally_hex_encode (hash, sizeof hash);
  return g_strconcat (TALLY_ISSUER_KEPT_RESULT_PREFIX, hex, NULL);
}

/* With @key, the result kept for it: TRUE and *@result set, TRUE and
 * *@result NULL when none is kept, FALSE on a store error. */
static gboolean
kept_result (TallyIssuer *issuer, const char *key, GBytes **result, GError **error)
{
  g_autoptr (GError) local = NULL;
  *result = NULL;
  if (key == NULL || tally_issuer_store_meta_get (issuer->store, key, result, &local))
    return TRUE;
  if (tally_issuer_is_not_found (local))
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/* Books a bundle whose every signature verified (open_bundle,
 * tally_issuer_verify_entries), inside the transaction: from here on
 * everything read may have changed since, and is read again. */
static GBytes *
reconcile_locked (Reconcile *rc,
                  const Tally__SignedEnvelope *env,
                  const Tally__ReconciliationBundle *bundle,
                  gboolean once,
                  gboolean *repeated,
                  GError **error)
{
  TallyIssuer *issuer = rc->issuer;

  g_autofree char *key = once ? result_key (env) : NULL;
  GBytes *kept;
  if (!kept_result (issuer, key, &kept, error))
    return NULL;
  if (kept != NULL) {
    *repeated = TRUE;
    return kept;
  }

  g_autofree char *hex = tally_hex_encode (rc->register_id, TALLY_ID_BYTES);
  g_info ("reconciling register %s: %zu spent, %zu received, %zu voucher(s)", hex,
          bundle->n_spent, bundle->n_received, bundle->n_vouchers);

  /* Received entries first: an honest register's evidence then includes
   * every payment it had received before it spent (5.5). */
  if (!tally_issuer_store_totals_get (issuer->store, &rc->totals, error) ||
      !tally_issuer_check_vouchers (rc, bundle, error) || !tally_issuer_book_received (rc, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_RECEIVED_BOOKED);
  if (!tally_issuer_book_spent (rc, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_SPENT_BOOKED);
  if (!check_complete (rc, error) || !check_overdrawn (rc, bundle, env, error) ||
      !raise_horizon (rc, bundle, env, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_HORIZON_RAISED);
  if (!collect_outcomes (rc, error) ||
      !tally_issuer_store_totals_put (issuer->store, &rc->totals, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_TOTALS_WRITTEN);
  if (rc->revocations_changed && !tally_issuer_publish_revocation_list (issuer, rc->now, error))
    return NULL;

  /* Read now: booking may have changed the view and the revocation. */
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, rc->register_id, &row, error) ||
      !advance_settled_counter (rc, &row, error))
    return NULL;

  g_autoptr (GBytes) renewed = NULL;
  if (!row.revoked) {
    guint64 not_after;
    if (!g_uint64_checked_add (&not_after, rc->now, row.validity)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "certificate validity out of range");
      return NULL;
    }
    row.cert_serial++;
    renewed = tally_issuer_sign_certificate (issuer, &row, rc->now, not_after);
  }
  if (!tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_REGISTER_WRITTEN);

  rc->report.revoked = row.revoked;
  GBytes *result = sign_result (rc, env, &row, renewed, error);
  if (result != NULL && key != NULL &&
      !tally_issuer_store_meta_set (issuer->store, key, result, error))
    g_clear_pointer (&result, g_bytes_unref);
  if (result != NULL)
    tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_RESULT_KEPT);
  return result;
}

/* With @once, answers a bundle seen before from the stored result, and
 * keeps a new result in the same transaction that booked its bundle.
 * Every signature is checked before that transaction (docs/scale.md):
 * workers verify side by side, and only the booking waits for the lock. */
static GBytes *
reconcile (TallyIssuer *issuer,
           const guint8 *data,
           gsize len,
           guint64 now,
           gboolean once,
           gboolean *repeated,
           TallyReconcileReport *report,
           GError **error)
{
  Reconcile rc = {
    .issuer = issuer,
    .now = now,
    .new_proofs = g_ptr_array_new_with_free_func ((GDestroyNotify) tally_issuer_fraud_row_free),
    .settled_received = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref),
    .vouchers = g_array_new (FALSE, FALSE, sizeof (guint64)),
    .received = g_array_new (FALSE, TRUE, sizeof (Booking)),
    .spent = g_array_new (FALSE, TRUE, sizeof (Booking)),
    .reclaimed = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref),
    .receipts = g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free),
  };
  g_autoptr (Tally__SignedEnvelope) env = NULL;
  g_autoptr (Tally__ReconciliationBundle) bundle = NULL;
  g_autoptr (GBytes) result = NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_BEGIN);
  if (open_bundle (&rc, data, len, &env, &bundle, error) &&
      tally_issuer_verify_entries (&rc, bundle, error)) {
    tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_VERIFIED);
    if (tally_issuer_store_begin (issuer->store, error)) {
      result = reconcile_locked (&rc, env, bundle, once, repeated, error);
      if (!tally_issuer_finish (issuer, result != NULL, error))
        g_clear_pointer (&result, g_bytes_unref);
      else
        tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_RECONCILE_COMMITTED);
    }
  }
  g_ptr_array_unref (rc.new_proofs);
  g_ptr_array_unref (rc.settled_received);
  g_array_unref (rc.vouchers);
  g_array_unref (rc.received);
  g_array_unref (rc.spent);
  g_ptr_array_unref (rc.reclaimed);
  g_ptr_array_unref (rc.receipts);

  if (result != NULL && report != NULL)
    *report = rc.report;
  return g_steal_pointer (&result);
}

GBytes *
tally_issuer_reconcile (TallyIssuer *issuer,
                        const guint8 *bundle,
                        gsize len,
                        guint64 now,
                        TallyReconcileReport *report,
                        GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (bundle != NULL || len == 0, NULL);

  if (report != NULL)
    *report = (TallyReconcileReport){ 0 };
  return reconcile (issuer, bundle, len, now, FALSE, NULL, report, error);
}

GBytes *
tally_issuer_reconcile_once (TallyIssuer *issuer,
                             const guint8 *bundle,
                             gsize len,
                             guint64 now,
                             gboolean *repeated,
                             GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (bundle != NULL || len == 0, NULL);

  gboolean dummy;
  if (repeated == NULL)
    repeated = &dummy;
  *repeated = FALSE;
  return reconcile (issuer, bundle, len, now, TRUE, repeated, NULL, error);
}
