/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-issuer-store-private.h"

#include <string.h>

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

/* --- choosing a backend --- */

#define SPEC_SQLITE     "sqlite"
#define SPEC_POSTGRESQL "postgresql:"

gboolean
tally_issuer_store_spec_is_sqlite (const char *spec)
{
  return spec == NULL || g_str_equal (spec, SPEC_SQLITE);
}

gboolean
tally_issuer_store_spec_check (const char *spec, GError **error)
{
  g_return_val_if_fail (spec != NULL, FALSE);

  if (tally_issuer_store_spec_is_sqlite (spec))
    return TRUE;
  if (g_str_has_prefix (spec, SPEC_POSTGRESQL) && spec[strlen (SPEC_POSTGRESQL)] != '\0')
    return TRUE;
  g_autofree char *kind = g_strndup (spec, strcspn (spec, ":"));
  if (g_str_has_prefix (spec, SPEC_POSTGRESQL))
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "store \"postgresql:\" needs a connection string, e.g. "
                 "\"postgresql:host=/run/postgresql dbname=tally\"");
  else
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "unknown store \"%s\": use \"sqlite\" or \"postgresql:CONNINFO\"", kind);
  return FALSE;
}

TallyIssuerStore *
tally_issuer_store_open (const char *spec, const char *sqlite_path, gboolean create, GError **error)
{
  g_return_val_if_fail (sqlite_path != NULL, NULL);

  if (tally_issuer_store_spec_is_sqlite (spec))
    return tally_issuer_store_sqlite_open (sqlite_path, create, error);
  if (!tally_issuer_store_spec_check (spec, error))
    return NULL;
  return tally_issuer_store_pg_open (spec + strlen (SPEC_POSTGRESQL), create, error);
}

/* --- dispatch --- */

void
tally_issuer_store_init (TallyIssuerStore *store, const TallyIssuerStoreVTable *vtable)
{
  /* Every slot from free on is a function pointer, and none may be
   * missing: a backend that forgot one fails here, not in the middle of a
   * booking. */
  typedef void (*Slot) (void);
  const guint8 *p = (const guint8 *) vtable + G_STRUCT_OFFSET (TallyIssuerStoreVTable, free);
  for (; p < (const guint8 *) (vtable + 1); p += sizeof (Slot)) {
    Slot slot;
    memcpy (&slot, p, sizeof slot);
    g_assert (slot != NULL);
  }
  store->vtable = vtable;
  store->in_transaction = FALSE;
}

void
tally_issuer_store_free (TallyIssuerStore *store)
{
  if (store == NULL)
    return;
  if (store->in_transaction)
    tally_issuer_store_rollback (store);
  store->vtable->free (store);
}

gboolean
tally_issuer_store_begin (TallyIssuerStore *store, GError **error)
{
  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (!store->in_transaction, FALSE);

  if (!store->vtable->begin (store, error))
    return FALSE;
  store->in_transaction = TRUE;
  return TRUE;
}

gboolean
tally_issuer_store_commit (TallyIssuerStore *store, GError **error)
{
  g_return_val_if_fail (store != NULL, FALSE);
  g_return_val_if_fail (store->in_transaction, FALSE);

  /* A failed commit rolls back too: the transaction is over either way. */
  store->in_transaction = FALSE;
  return store->vtable->commit (store, error);
}

void
tally_issuer_store_rollback (TallyIssuerStore *store)
{
  g_return_if_fail (store != NULL);

  if (!store->in_transaction)
    return;
  store->vtable->rollback (store);
  store->in_transaction = FALSE;
}

/* Every data call belongs to the one transaction of a public call. */
#define CHECK_IN_TRANSACTION(store)                                                                \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_return_val_if_fail ((store) != NULL, FALSE);                                                 \
    g_return_val_if_fail ((store)->in_transaction, FALSE);                                         \
  }                                                                                                \
  G_STMT_END

gboolean
tally_issuer_store_meta_get (TallyIssuerStore *store,
                             const char *key,
                             GBytes **value,
                             GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->meta_get (store, key, value, error);
}

gboolean
tally_issuer_store_meta_list (TallyIssuerStore *store,
                              const char *prefix,
                              const char *after,
                              guint limit,
                              GPtrArray **keys,
                              GPtrArray **values,
                              GError **error)
{
  CHECK_IN_TRANSACTION (store);
  g_return_val_if_fail (prefix != NULL && after != NULL && limit > 0, FALSE);
  g_return_val_if_fail (keys != NULL && values != NULL, FALSE);
  return store->vtable->meta_list (store, prefix, after, limit, keys, values, error);
}

gboolean
tally_issuer_store_meta_delete (TallyIssuerStore *store, const char *key, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->meta_delete (store, key, error);
}

gboolean
tally_issuer_store_meta_set (TallyIssuerStore *store,
                             const char *key,
                             GBytes *value,
                             GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->meta_set (store, key, value, error);
}

gboolean
tally_issuer_store_account_insert (TallyIssuerStore *store, const char *name, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->account_insert (store, name, error);
}

gboolean
tally_issuer_store_account_get (TallyIssuerStore *store,
                                const char *name,
                                gint64 *balance,
                                GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->account_get (store, name, balance, error);
}

gboolean
tally_issuer_store_account_put (TallyIssuerStore *store,
                                const char *name,
                                gint64 balance,
                                GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->account_put (store, name, balance, error);
}

gboolean
tally_issuer_store_register_get (TallyIssuerStore *store,
                                 const guint8 id[static TALLY_ID_BYTES],
                                 TallyIssuerRegisterRow *row,
                                 GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_get (store, id, row, error);
}

gboolean
tally_issuer_store_register_put (TallyIssuerStore *store,
                                 const TallyIssuerRegisterRow *row,
                                 GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_put (store, row, error);
}

/* The one data call a transaction may not surround: what it reads never
 * changes (tally-issuer-store.h). */
gboolean
tally_issuer_store_register_key (TallyIssuerStore *store,
                                 const guint8 id[static TALLY_ID_BYTES],
                                 guint8 key[static TALLY_PUBLIC_KEY_BYTES],
                                 GError **error)
{
  g_return_val_if_fail (store != NULL, FALSE);
  return store->vtable->register_key (store, id, key, error);
}

gboolean
tally_issuer_store_register_list_revoked (TallyIssuerStore *store, GPtrArray **ids, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_list_revoked (store, ids, error);
}

gboolean
tally_issuer_store_register_list_lost (TallyIssuerStore *store, GPtrArray **ids, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_list_lost (store, ids, error);
}

gboolean
tally_issuer_store_register_list_flagged (TallyIssuerStore *store, GPtrArray **rows, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_list_flagged (store, rows, error);
}

gboolean
tally_issuer_store_voucher_next_sequence (TallyIssuerStore *store,
                                          const guint8 register_id[static TALLY_ID_BYTES],
                                          guint64 *sequence,
                                          GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->voucher_next_sequence (store, register_id, sequence, error);
}

gboolean
tally_issuer_store_voucher_insert (TallyIssuerStore *store,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   guint64 sequence,
                                   gint64 amount,
                                   guint64 issued_at,
                                   GBytes *envelope,
                                   GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->voucher_insert (store, register_id, sequence, amount, issued_at, envelope,
                                        error);
}

gboolean
tally_issuer_store_voucher_get (TallyIssuerStore *store,
                                const guint8 register_id[static TALLY_ID_BYTES],
                                guint64 sequence,
                                GBytes **envelope,
                                GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->voucher_get (store, register_id, sequence, envelope, error);
}

gboolean
tally_issuer_store_entry_get_by_hash (TallyIssuerStore *store,
                                      const guint8 hash[static TALLY_HASH_BYTES],
                                      TallyIssuerEntryRow *row,
                                      GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->entry_get_by_hash (store, hash, row, error);
}

gboolean
tally_issuer_store_entries_by_counter (TallyIssuerStore *store,
                                       const guint8 register_id[static TALLY_ID_BYTES],
                                       guint64 counter,
                                       GPtrArray **rows,
                                       GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->entries_by_counter (store, register_id, counter, rows, error);
}

gboolean
tally_issuer_store_entry_insert (TallyIssuerStore *store,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->entry_insert (store, row, error);
}

gboolean
tally_issuer_store_entry_update (TallyIssuerStore *store,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->entry_update (store, row, error);
}

gboolean
tally_issuer_store_entries_expired_in_flight (TallyIssuerStore *store,
                                              const guint8 payee_id[static TALLY_ID_BYTES],
                                              guint64 horizon,
                                              GPtrArray **rows,
                                              GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->entries_expired_in_flight (store, payee_id, horizon, rows, error);
}

gboolean
tally_issuer_store_horizon_bundle_get (TallyIssuerStore *store,
                                       const guint8 register_id[static TALLY_ID_BYTES],
                                       GBytes **envelope,
                                       GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->horizon_bundle_get (store, register_id, envelope, error);
}

gboolean
tally_issuer_store_horizon_bundle_put (TallyIssuerStore *store,
                                       const guint8 register_id[static TALLY_ID_BYTES],
                                       GBytes *envelope,
                                       GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->horizon_bundle_put (store, register_id, envelope, error);
}

gboolean
tally_issuer_store_fraud_proof_insert (TallyIssuerStore *store,
                                       const TallyIssuerFraudRow *row,
                                       GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->fraud_proof_insert (store, row, error);
}

gboolean
tally_issuer_store_fraud_proof_list (TallyIssuerStore *store,
                                     const guint8 *register_id,
                                     GPtrArray **rows,
                                     GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->fraud_proof_list (store, register_id, rows, error);
}

gboolean
tally_issuer_store_revocation_list_put (TallyIssuerStore *store,
                                        guint64 serial,
                                        guint64 issued_at,
                                        GBytes *envelope,
                                        GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->revocation_list_put (store, serial, issued_at, envelope, error);
}

gboolean
tally_issuer_store_revocation_list_get_latest (TallyIssuerStore *store,
                                               guint64 *serial,
                                               GBytes **envelope,
                                               GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->revocation_list_get_latest (store, serial, envelope, error);
}

gboolean
tally_issuer_store_totals_get (TallyIssuerStore *store, TallyIssuerTotals *totals, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->totals_get (store, totals, error);
}

gboolean
tally_issuer_store_totals_put (TallyIssuerStore *store,
                               const TallyIssuerTotals *totals,
                               GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->totals_put (store, totals, error);
}

gboolean
tally_issuer_store_register_evidence (TallyIssuerStore *store,
                                      const guint8 register_id[static TALLY_ID_BYTES],
                                      guint64 counter,
                                      TallyIssuerEvidence *evidence,
                                      GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->register_evidence (store, register_id, counter, evidence, error);
}

gboolean
tally_issuer_store_sums (TallyIssuerStore *store, TallyIssuerSums *sums, GError **error)
{
  CHECK_IN_TRANSACTION (store);
  return store->vtable->sums (store, sums, error);
}
