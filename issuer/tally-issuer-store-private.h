/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Private to the issuer store's files.  A backend embeds TallyIssuerStore
 * as the first member of its own struct and fills a TallyIssuerStoreVTable;
 * tally-issuer-store.c checks the caller's transaction discipline once and
 * dispatches, so a backend implements storage only.
 *
 * Adding a call: declare it in tally-issuer-store.h, add a slot here, a
 * dispatcher in tally-issuer-store.c and an implementation in every backend
 * (tally-issuer-store-sqlite.c, tally-issuer-store-pg.c).  Every slot is
 * required: tally_issuer_store_init () refuses a table with a hole.
 */

#include "tally-issuer-store.h"
#include "tally-pg.h"
#include "tally-sqlite.h"

G_BEGIN_DECLS

typedef struct
{
  const char *name; /* "sqlite", "postgresql" */
  void (*free) (TallyIssuerStore *store);
  /* Opens the one transaction of a public issuer operation; for writing,
   * so that two issuer processes on one store serialize (docs/issuer.md). */
  gboolean (*begin) (TallyIssuerStore *store, GError **error);
  /* A failed commit leaves no transaction open. */
  gboolean (*commit) (TallyIssuerStore *store, GError **error);
  void (*rollback) (TallyIssuerStore *store);
  /* The data calls of tally-issuer-store.h, only ever inside a transaction
   * but for register_key. */
  gboolean (*meta_get) (TallyIssuerStore *store, const char *key, GBytes **value, GError **error);
  gboolean (*meta_set) (TallyIssuerStore *store, const char *key, GBytes *value, GError **error);
  gboolean (*meta_list) (TallyIssuerStore *store,
                         const char *prefix,
                         const char *after,
                         guint limit,
                         GPtrArray **keys,
                         GPtrArray **values,
                         GError **error);
  gboolean (*meta_delete) (TallyIssuerStore *store, const char *key, GError **error);
  gboolean (*account_insert) (TallyIssuerStore *store, const char *name, GError **error);
  gboolean (*account_get) (TallyIssuerStore *store,
                           const char *name,
                           gint64 *balance,
                           GError **error);
  gboolean (*account_put) (TallyIssuerStore *store,
                           const char *name,
                           gint64 balance,
                           GError **error);
  gboolean (*register_get) (TallyIssuerStore *store,
                            const guint8 *id,
                            TallyIssuerRegisterRow *row,
                            GError **error);
  gboolean (*register_put) (TallyIssuerStore *store,
                            const TallyIssuerRegisterRow *row,
                            GError **error);
  /* Also outside a transaction (tally_issuer_store_register_key ()). */
  gboolean (*register_key) (TallyIssuerStore *store, const guint8 *id, guint8 *key, GError **error);
  gboolean (*register_list_revoked) (TallyIssuerStore *store, GPtrArray **ids, GError **error);
  gboolean (*register_list_lost) (TallyIssuerStore *store, GPtrArray **ids, GError **error);
  gboolean (*register_list_flagged) (TallyIssuerStore *store, GPtrArray **rows, GError **error);
  gboolean (*voucher_next_sequence) (TallyIssuerStore *store,
                                     const guint8 *register_id,
                                     guint64 *sequence,
                                     GError **error);
  gboolean (*voucher_insert) (TallyIssuerStore *store,
                              const guint8 *register_id,
                              guint64 sequence,
                              gint64 amount,
                              guint64 issued_at,
                              GBytes *envelope,
                              GError **error);
  gboolean (*voucher_get) (TallyIssuerStore *store,
                           const guint8 *register_id,
                           guint64 sequence,
                           GBytes **envelope,
                           GError **error);
  gboolean (*entry_get_by_hash) (TallyIssuerStore *store,
                                 const guint8 *hash,
                                 TallyIssuerEntryRow *row,
                                 GError **error);
  gboolean (*entries_by_counter) (TallyIssuerStore *store,
                                  const guint8 *register_id,
                                  guint64 counter,
                                  GPtrArray **rows,
                                  GError **error);
  gboolean (*entry_insert) (TallyIssuerStore *store,
                            const TallyIssuerEntryRow *row,
                            GError **error);
  gboolean (*entry_update) (TallyIssuerStore *store,
                            const TallyIssuerEntryRow *row,
                            GError **error);
  gboolean (*entries_expired_in_flight) (TallyIssuerStore *store,
                                         const guint8 *payee_id,
                                         guint64 horizon,
                                         GPtrArray **rows,
                                         GError **error);
  gboolean (*horizon_bundle_get) (TallyIssuerStore *store,
                                  const guint8 *register_id,
                                  GBytes **envelope,
                                  GError **error);
  gboolean (*horizon_bundle_put) (TallyIssuerStore *store,
                                  const guint8 *register_id,
                                  GBytes *envelope,
                                  GError **error);
  gboolean (*fraud_proof_insert) (TallyIssuerStore *store,
                                  const TallyIssuerFraudRow *row,
                                  GError **error);
  gboolean (*fraud_proof_list) (TallyIssuerStore *store,
                                const guint8 *register_id,
                                GPtrArray **rows,
                                GError **error);
  gboolean (*revocation_list_put) (TallyIssuerStore *store,
                                   guint64 serial,
                                   guint64 issued_at,
                                   GBytes *envelope,
                                   GError **error);
  gboolean (*revocation_list_get_latest) (TallyIssuerStore *store,
                                          guint64 *serial,
                                          GBytes **envelope,
                                          GError **error);
  gboolean (*totals_get) (TallyIssuerStore *store, TallyIssuerTotals *totals, GError **error);
  gboolean (*totals_put) (TallyIssuerStore *store, const TallyIssuerTotals *totals, GError **error);
  gboolean (*register_evidence) (TallyIssuerStore *store,
                                 const guint8 *register_id,
                                 guint64 counter,
                                 TallyIssuerEvidence *evidence,
                                 GError **error);
  gboolean (*sums) (TallyIssuerStore *store, TallyIssuerSums *sums, GError **error);
} TallyIssuerStoreVTable;

struct _TallyIssuerStore
{
  const TallyIssuerStoreVTable *vtable;
  gboolean in_transaction;
};

/* Sets up the common part of a backend's new store. */
void tally_issuer_store_init (TallyIssuerStore *store, const TallyIssuerStoreVTable *vtable);

/* Inside one transaction: with @create, makes an empty database version 1,
 * refuses any other database without a schema_version table, then brings
 * it to the newest version. */
gboolean tally_issuer_store_schema_setup (TallySqlite *db, gboolean create, GError **error);

/* The same for a PostgreSQL store (tally-issuer-store-pg-schema.c), in
 * the connection's current schema. */
gboolean tally_issuer_store_pg_schema_setup (TallyPg *db, gboolean create, GError **error);

G_END_DECLS
