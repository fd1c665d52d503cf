/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-issuer-store.h"

#include <string.h>

struct _TallyIssuerStore
{
  const TallyIssuerStoreOps *ops;
  gpointer backend;
  gboolean in_transaction;
};

void
tally_issuer_register_row_clear (TallyIssuerRegisterRow *row)
{
  g_clear_pointer (&row->account, g_free);
  g_clear_pointer (&row->display_name, g_free);
  memset (row, 0, sizeof *row);
}

void
tally_issuer_register_row_free (TallyIssuerRegisterRow *row)
{
  if (row == NULL)
    return;
  tally_issuer_register_row_clear (row);
  g_free (row);
}

const char *
tally_issuer_entry_kind_to_string (TallyIssuerEntryKind kind)
{
  switch (kind) {
  case TALLY_ISSUER_ENTRY_PERMISSION: return "permission";
  case TALLY_ISSUER_ENTRY_DEFUND: return "defund";
  }
  return "unknown";
}

const char *
tally_issuer_entry_state_to_string (TallyIssuerEntryState state)
{
  switch (state) {
  case TALLY_ISSUER_ENTRY_IN_FLIGHT: return "in-flight";
  case TALLY_ISSUER_ENTRY_SETTLED: return "settled";
  case TALLY_ISSUER_ENTRY_RECLAIMED: return "reclaimed";
  }
  return "unknown";
}

void
tally_issuer_entry_row_clear (TallyIssuerEntryRow *row)
{
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
  memset (row, 0, sizeof *row);
}

void
tally_issuer_entry_row_free (TallyIssuerEntryRow *row)
{
  if (row == NULL)
    return;
  tally_issuer_entry_row_clear (row);
  g_free (row);
}

void
tally_issuer_fraud_row_free (TallyIssuerFraudRow *row)
{
  if (row == NULL)
    return;
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_free (row);
}

TallyIssuerStore *
tally_issuer_store_new (const TallyIssuerStoreOps *ops, gpointer backend)
{
  g_return_val_if_fail (ops != NULL, NULL);

  TallyIssuerStore *store = g_new0 (TallyIssuerStore, 1);
  store->ops = ops;
  store->backend = backend;
  return store;
}

void
tally_issuer_store_free (TallyIssuerStore *store)
{
  if (store == NULL)
    return;
  if (store->in_transaction)
    tally_issuer_store_rollback (store);
  store->ops->free (store->backend);
  g_free (store);
}

gboolean
tally_issuer_store_begin (TallyIssuerStore *store, GError **error)
{
  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (!store->in_transaction, FALSE);

  if (!store->ops->begin (store->backend, error))
    return FALSE;
  store->in_transaction = TRUE;
  return TRUE;
}

gboolean
tally_issuer_store_commit (TallyIssuerStore *store, GError **error)
{
  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (store->in_transaction, FALSE);

  if (!store->ops->commit (store->backend, error))
    return FALSE;
  store->in_transaction = FALSE;
  return TRUE;
}

void
tally_issuer_store_rollback (TallyIssuerStore *store)
{
  g_return_if_fail (store != NULL);

  if (!store->in_transaction)
    return;
  store->ops->rollback (store->backend);
  store->in_transaction = FALSE;
}

/* Every data operation belongs to the one transaction of a public call. */
#define CALL(store, op, ...)                                                                       \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_return_val_if_fail ((store) != NULL, FALSE);                                                 \
    g_return_val_if_fail ((store)->in_transaction, FALSE);                                         \
    return (store)->ops->op ((store)->backend, __VA_ARGS__);                                       \
  }                                                                                                \
  G_STMT_END

gboolean
tally_issuer_store_meta_get (TallyIssuerStore *store,
                             const char *key,
                             GBytes **value,
                             GError **error)
{
  CALL (store, meta_get, key, value, error);
}

gboolean
tally_issuer_store_meta_set (TallyIssuerStore *store,
                             const char *key,
                             GBytes *value,
                             GError **error)
{
  CALL (store, meta_set, key, value, error);
}

gboolean
tally_issuer_store_account_insert (TallyIssuerStore *store, const char *name, GError **error)
{
  CALL (store, account_insert, name, error);
}

gboolean
tally_issuer_store_account_get (TallyIssuerStore *store,
                                const char *name,
                                gint64 *balance,
                                GError **error)
{
  CALL (store, account_get, name, balance, error);
}

gboolean
tally_issuer_store_account_put (TallyIssuerStore *store,
                                const char *name,
                                gint64 balance,
                                GError **error)
{
  CALL (store, account_put, name, balance, error);
}

gboolean
tally_issuer_store_register_get (TallyIssuerStore *store,
                                 const guint8 id[TALLY_ID_BYTES],
                                 TallyIssuerRegisterRow *row,
                                 GError **error)
{
  CALL (store, register_get, id, row, error);
}

gboolean
tally_issuer_store_register_put (TallyIssuerStore *store,
                                 const TallyIssuerRegisterRow *row,
                                 GError **error)
{
  CALL (store, register_put, row, error);
}

gboolean
tally_issuer_store_register_list_revoked (TallyIssuerStore *store, GPtrArray **ids, GError **error)
{
  CALL (store, register_list_revoked, ids, error);
}

gboolean
tally_issuer_store_register_list_flagged (TallyIssuerStore *store, GPtrArray **rows, GError **error)
{
  CALL (store, register_list_flagged, rows, error);
}

gboolean
tally_issuer_store_voucher_next_sequence (TallyIssuerStore *store,
                                          const guint8 register_id[TALLY_ID_BYTES],
                                          guint64 *sequence,
                                          GError **error)
{
  CALL (store, voucher_next_sequence, register_id, sequence, error);
}

gboolean
tally_issuer_store_voucher_insert (TallyIssuerStore *store,
                                   const guint8 register_id[TALLY_ID_BYTES],
                                   guint64 sequence,
                                   gint64 amount,
                                   guint64 issued_at,
                                   GBytes *envelope,
                                   GError **error)
{
  CALL (store, voucher_insert, register_id, sequence, amount, issued_at, envelope, error);
}

gboolean
tally_issuer_store_voucher_get (TallyIssuerStore *store,
                                const guint8 register_id[TALLY_ID_BYTES],
                                guint64 sequence,
                                GBytes **envelope,
                                GError **error)
{
  CALL (store, voucher_get, register_id, sequence, envelope, error);
}

gboolean
tally_issuer_store_entry_get_by_hash (TallyIssuerStore *store,
                                      const guint8 hash[TALLY_HASH_BYTES],
                                      TallyIssuerEntryRow *row,
                                      GError **error)
{
  CALL (store, entry_get_by_hash, hash, row, error);
}

gboolean
tally_issuer_store_entries_by_counter (TallyIssuerStore *store,
                                       const guint8 register_id[TALLY_ID_BYTES],
                                       guint64 counter,
                                       GPtrArray **rows,
                                       GError **error)
{
  CALL (store, entries_by_counter, register_id, counter, rows, error);
}

gboolean
tally_issuer_store_entry_insert (TallyIssuerStore *store,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  CALL (store, entry_insert, row, error);
}

gboolean
tally_issuer_store_entry_update (TallyIssuerStore *store,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  CALL (store, entry_update, row, error);
}

gboolean
tally_issuer_store_entries_expired_in_flight (TallyIssuerStore *store,
                                              const guint8 payee_id[TALLY_ID_BYTES],
                                              guint64 horizon,
                                              GPtrArray **rows,
                                              GError **error)
{
  CALL (store, entries_expired_in_flight, payee_id, horizon, rows, error);
}

gboolean
tally_issuer_store_horizon_bundle_get (TallyIssuerStore *store,
                                       const guint8 register_id[TALLY_ID_BYTES],
                                       GBytes **envelope,
                                       GError **error)
{
  CALL (store, horizon_bundle_get, register_id, envelope, error);
}

gboolean
tally_issuer_store_horizon_bundle_put (TallyIssuerStore *store,
                                       const guint8 register_id[TALLY_ID_BYTES],
                                       GBytes *envelope,
                                       GError **error)
{
  CALL (store, horizon_bundle_put, register_id, envelope, error);
}

gboolean
tally_issuer_store_fraud_proof_insert (TallyIssuerStore *store,
                                       const TallyIssuerFraudRow *row,
                                       GError **error)
{
  CALL (store, fraud_proof_insert, row, error);
}

gboolean
tally_issuer_store_fraud_proof_list (TallyIssuerStore *store,
                                     const guint8 *register_id,
                                     GPtrArray **rows,
                                     GError **error)
{
  CALL (store, fraud_proof_list, register_id, rows, error);
}

gboolean
tally_issuer_store_revocation_list_put (TallyIssuerStore *store,
                                        guint64 serial,
                                        guint64 issued_at,
                                        GBytes *envelope,
                                        GError **error)
{
  CALL (store, revocation_list_put, serial, issued_at, envelope, error);
}

gboolean
tally_issuer_store_revocation_list_get_latest (TallyIssuerStore *store,
                                               guint64 *serial,
                                               GBytes **envelope,
                                               GError **error)
{
  CALL (store, revocation_list_get_latest, serial, envelope, error);
}

gboolean
tally_issuer_store_totals_get (TallyIssuerStore *store, TallyIssuerTotals *totals, GError **error)
{
  CALL (store, totals_get, totals, error);
}

gboolean
tally_issuer_store_totals_put (TallyIssuerStore *store,
                               const TallyIssuerTotals *totals,
                               GError **error)
{
  CALL (store, totals_put, totals, error);
}

gboolean
tally_issuer_store_register_evidence (TallyIssuerStore *store,
                                      const guint8 register_id[TALLY_ID_BYTES],
                                      guint64 counter,
                                      TallyIssuerEvidence *evidence,
                                      GError **error)
{
  CALL (store, register_evidence, register_id, counter, evidence, error);
}

gboolean
tally_issuer_store_sums (TallyIssuerStore *store, TallyIssuerSums *sums, GError **error)
{
  CALL (store, sums, sums, error);
}
