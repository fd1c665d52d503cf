/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The issuer's storage, behind narrow calls so that the bookkeeping in
 * tally-issuer.c never speaks SQL.  The calls dispatch to a backend
 * (tally-issuer-store-private.h): tally-issuer-store-sqlite.c keeps the
 * store in SQLite, with the schema in tally-issuer-store-schema.c.
 *
 * Every public issuer operation runs inside exactly one begin/commit pair and
 * rolls back on any error, so a failed operation leaves the store unchanged.
 * Lookups that find nothing fail with TALLY_ERROR_NOT_FOUND; storage faults
 * are TALLY_ERROR_STORAGE.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallyIssuerStore TallyIssuerStore;

/* --- rows ------------------------------------------------------------------ */

typedef struct
{
  guint8 id[TALLY_ID_BYTES];
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  char *account;
  char *display_name;      /* certified display name, NULL for none */
  gint64 max_payment;
  gint64 balance_cap;
  guint32 max_offline_payments;
  guint64 max_offline_seconds;
  guint64 validity;        /* not_after - not_before of the certificate */
  guint64 cert_serial;     /* serial of the newest certificate issued */
  guint64 settled_counter; /* every own counter 1..settled_counter is booked */
  gboolean revoked;
  gint64 view_balance;     /* the issuer's view; negative after double spending */
  /* created_at of the newest bundle reconciled: the register refuses every
   * permission expiring at or before it (docs/protocol.md 5). */
  guint64 horizon;
  gint64 refused; /* defunded value claimed beyond the evidence, never credited */
  gint64 deficit; /* largest deficit an OVERDRAWN fraud proof has shown */
  gint64 max_payment_ever; /* largest max_payment of any certificate issued */
  /* A register its owner reported lost (tally-issuer-refund.c): when it was
   * first reported (0: never), when its balance was refunded to the account
   * (0: not yet), all the refund ever paid out to the account, and what was
   * taken back from the account since for value that surfaced later. */
  guint64 lost_at;
  guint64 refunded_at;
  gint64 refunded;
  gint64 recovered;
  /* The latest not_after of any certificate the issuer ever issued to it,
   * raised at every certification and renewal in the transaction that
   * signs it: an older certificate may outlive the newest one. */
  guint64 not_after_ever;
} TallyIssuerRegisterRow;

void tally_issuer_register_row_clear (TallyIssuerRegisterRow *row);
/* For GPtrArrays of heap-allocated rows. */
void tally_issuer_register_row_free (TallyIssuerRegisterRow *row);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyIssuerRegisterRow, tally_issuer_register_row_clear)

typedef enum
{
  TALLY_ISSUER_ENTRY_PERMISSION = 1,
  TALLY_ISSUER_ENTRY_DEFUND = 2,
} TallyIssuerEntryKind;

const char *tally_issuer_entry_kind_to_string (TallyIssuerEntryKind kind);

/* A permission is IN_FLIGHT while only its payer has reported it, SETTLED
 * once the payee's half is known, and RECLAIMED when it expired before its
 * payee's horizon without that half: its value went back to the payer's
 * account.  A defund is SETTLED when booked. */
typedef enum
{
  TALLY_ISSUER_ENTRY_IN_FLIGHT = 1,
  TALLY_ISSUER_ENTRY_SETTLED = 2,
  TALLY_ISSUER_ENTRY_RECLAIMED = 3,
} TallyIssuerEntryState;

const char *tally_issuer_entry_state_to_string (TallyIssuerEntryState state);

typedef struct
{
  guint8 hash[TALLY_HASH_BYTES]; /* tally_envelope_body_hash of the entry */
  guint8 register_id[TALLY_ID_BYTES];
  guint64 counter;
  TallyIssuerEntryKind kind;
  gboolean has_payee;
  guint8 payee_id[TALLY_ID_BYTES];
  gint64 amount;
  TallyIssuerEntryState state;
  gboolean payer_reported;
  gboolean payee_reported;
  guint8 chain_prev[TALLY_HASH_BYTES];
  guint8 chain_after[TALLY_HASH_BYTES];
  GBytes *envelope; /* packed SignedEnvelope */
  guint64 booked_at;
  guint64 expires_at; /* the permission's; 0 for a defund or no expiry */
  GBytes *receipt;    /* the payee's packed receipt envelope, or NULL */
  gint64 credited;    /* a defund's, or a reclaimed permission's: what the payer's online
                       * account received; 0 otherwise */
  gboolean tainted;   /* a permission above its payer's limit that a payee accepted */
} TallyIssuerEntryRow;

void tally_issuer_entry_row_clear (TallyIssuerEntryRow *row);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyIssuerEntryRow, tally_issuer_entry_row_clear)
/* For GPtrArrays of heap-allocated rows. */
void tally_issuer_entry_row_free (TallyIssuerEntryRow *row);

typedef struct
{
  guint8 register_id[TALLY_ID_BYTES];
  Tally__FraudKind kind;
  guint64 detected_at;
  GBytes *envelope; /* packed SignedEnvelope, context "fraud-proof" */
} TallyIssuerFraudRow;

void tally_issuer_fraud_row_free (TallyIssuerFraudRow *row);

/* Running totals the store keeps; the sums over accounts and registers are
 * computed by tally_issuer_store_sums (). */
typedef struct
{
  gint64 issued;
  gint64 in_flight;
  guint64 reclaimed_count; /* permissions ever RECLAIMED */
  gint64 reclaimed;        /* their value, returned to online accounts */
} TallyIssuerTotals;

typedef struct
{
  gint64 online;
  gint64 offline;   /* views; a revoked register's counts only when positive */
  gint64 exposure;  /* revoked registers' negative views, as positive value */
  gint64 awaiting;  /* negative views of registers in good standing */
  gint64 refused;   /* defunded value never credited */
  gint64 in_flight; /* summed over the entries, not the running total */
  guint registers;
  guint revoked;
  guint fraud_proofs;
  guint views_unbacked; /* registers whose view differs from their evidence */
} TallyIssuerSums;

/* A register's evidence through one counter (docs/protocol.md 5.5): what
 * the issuer sold it, what it was paid and acknowledged, and the signed
 * amounts of all its own entries up to that counter. */
typedef struct
{
  gint64 vouchers;
  gint64 received;
  gint64 spent;
  gint64 late; /* refunded online for permissions to it whose receipt came late */
} TallyIssuerEvidence;

void tally_issuer_store_free (TallyIssuerStore *store);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyIssuerStore, tally_issuer_store_free)

/* Opens (with @create, creates) an SQLite store at @path. */
TallyIssuerStore *tally_issuer_store_sqlite_open (const char *path,
                                                  gboolean create,
                                                  GError **error);

/* Opens (with @create, creates) a PostgreSQL store through libpq's
 * connection string @conninfo ("host=/run/postgresql dbname=tally"), in
 * the connection's current schema.  Without @create, a database without
 * the issuer's tables is refused. */
TallyIssuerStore *
tally_issuer_store_pg_open (const char *conninfo, gboolean create, GError **error);

/* A store named by a string, as issuer.conf and tally-issuer init --store
 * name it: "sqlite" (the file @sqlite_path) or "postgresql:CONNINFO".
 * INVALID_ARGUMENT for any other name, which the message does not echo
 * past its kind (a connection string may hold a password). */
gboolean tally_issuer_store_spec_check (const char *spec, GError **error);
/* TRUE for the default, "sqlite" (or NULL). */
gboolean tally_issuer_store_spec_is_sqlite (const char *spec);
TallyIssuerStore *tally_issuer_store_open (const char *spec,
                                           const char *sqlite_path,
                                           gboolean create,
                                           GError **error);

/* --- calls ------------------------------------------------------------------ */

gboolean tally_issuer_store_begin (TallyIssuerStore *store, GError **error);
gboolean tally_issuer_store_commit (TallyIssuerStore *store, GError **error);
void tally_issuer_store_rollback (TallyIssuerStore *store);

gboolean tally_issuer_store_meta_get (TallyIssuerStore *store,
                                      const char *key,
                                      GBytes **value,
                                      GError **error);
gboolean tally_issuer_store_meta_set (TallyIssuerStore *store,
                                      const char *key,
                                      GBytes *value,
                                      GError **error);

/* The first @limit meta rows whose key starts with @prefix and sorts after
 * @after ("" for the first page), in key order: @keys holds the keys
 * (char *), @values the values (GBytes), index for index. */
gboolean tally_issuer_store_meta_list (TallyIssuerStore *store,
                                       const char *prefix,
                                       const char *after,
                                       guint limit,
                                       GPtrArray **keys,
                                       GPtrArray **values,
                                       GError **error);
/* Deleting a key that is not there is no error. */
gboolean tally_issuer_store_meta_delete (TallyIssuerStore *store, const char *key, GError **error);

/* EXISTS when the name is taken. */
gboolean tally_issuer_store_account_insert (TallyIssuerStore *store,
                                            const char *name,
                                            GError **error);
gboolean tally_issuer_store_account_get (TallyIssuerStore *store,
                                         const char *name,
                                         gint64 *balance,
                                         GError **error);
gboolean tally_issuer_store_account_put (TallyIssuerStore *store,
                                         const char *name,
                                         gint64 balance,
                                         GError **error);

gboolean tally_issuer_store_register_get (TallyIssuerStore *store,
                                          const guint8 id[static TALLY_ID_BYTES],
                                          TallyIssuerRegisterRow *row,
                                          GError **error);
/* Inserts the row with row->id, or replaces every column of it but its
 * public key, which never changes once the row exists. */
gboolean tally_issuer_store_register_put (TallyIssuerStore *store,
                                          const TallyIssuerRegisterRow *row,
                                          GError **error);
/* The public key of register @id; NOT_FOUND as register_get.  Alone of
 * the data calls it may run outside a transaction, and takes no lock: a
 * register's key never changes (its id is the key's hash, register_put
 * keeps the key of an existing row, and no call deletes a register), so a
 * reconciliation checks the signatures of a bundle against it before the
 * transaction that books the bundle (tally-issuer-reconcile.c). */
gboolean tally_issuer_store_register_key (TallyIssuerStore *store,
                                          const guint8 id[static TALLY_ID_BYTES],
                                          guint8 key[static TALLY_PUBLIC_KEY_BYTES],
                                          GError **error);
/* Ids of revoked registers in ascending byte order, as 16-byte GBytes. */
gboolean tally_issuer_store_register_list_revoked (TallyIssuerStore *store,
                                                   GPtrArray **ids,
                                                   GError **error);

/* Ids of registers reported lost whose refund is not paid yet, in
 * ascending byte order, as 16-byte GBytes. */
gboolean
tally_issuer_store_register_list_lost (TallyIssuerStore *store, GPtrArray **ids, GError **error);

/* Rows of registers that are revoked, were refused value or hold a
 * negative view, in ascending id order. */
gboolean tally_issuer_store_register_list_flagged (TallyIssuerStore *store,
                                                   GPtrArray **rows,
                                                   GError **error);
/* 1 for a register that has none yet. */
gboolean tally_issuer_store_voucher_next_sequence (TallyIssuerStore *store,
                                                   const guint8 register_id[static TALLY_ID_BYTES],
                                                   guint64 *sequence,
                                                   GError **error);
gboolean tally_issuer_store_voucher_insert (TallyIssuerStore *store,
                                            const guint8 register_id[static TALLY_ID_BYTES],
                                            guint64 sequence,
                                            gint64 amount,
                                            guint64 issued_at,
                                            GBytes *envelope,
                                            GError **error);
gboolean tally_issuer_store_voucher_get (TallyIssuerStore *store,
                                         const guint8 register_id[static TALLY_ID_BYTES],
                                         guint64 sequence,
                                         GBytes **envelope,
                                         GError **error);

gboolean tally_issuer_store_entry_get_by_hash (TallyIssuerStore *store,
                                               const guint8 hash[static TALLY_HASH_BYTES],
                                               TallyIssuerEntryRow *row,
                                               GError **error);
/* Every entry of @register_id at @counter (more than one after counter
 * reuse), oldest first; an empty array when there is none. */
gboolean tally_issuer_store_entries_by_counter (TallyIssuerStore *store,
                                                const guint8 register_id[static TALLY_ID_BYTES],
                                                guint64 counter,
                                                GPtrArray **rows,
                                                GError **error);
/* EXISTS when an entry with row->hash is there. */
gboolean tally_issuer_store_entry_insert (TallyIssuerStore *store,
                                          const TallyIssuerEntryRow *row,
                                          GError **error);
/* Updates state, the reported halves, the receipt and the taint of the
 * entry with row->hash. */
gboolean tally_issuer_store_entry_update (TallyIssuerStore *store,
                                          const TallyIssuerEntryRow *row,
                                          GError **error);
/* IN_FLIGHT permissions to @payee_id with 0 < expires_at <= @horizon,
 * oldest first, found through an index: reconciling a payee must not
 * scan every entry. */
gboolean tally_issuer_store_entries_expired_in_flight (TallyIssuerStore *store,
                                                       const guint8 payee_id[static TALLY_ID_BYTES],
                                                       guint64 horizon,
                                                       GPtrArray **rows,
                                                       GError **error);

/* The packed bundle envelope that set @register_id's horizon; one per
 * register, replaced when the horizon rises.  NOT_FOUND before any. */
gboolean tally_issuer_store_horizon_bundle_get (TallyIssuerStore *store,
                                                const guint8 register_id[static TALLY_ID_BYTES],
                                                GBytes **envelope,
                                                GError **error);
gboolean tally_issuer_store_horizon_bundle_put (TallyIssuerStore *store,
                                                const guint8 register_id[static TALLY_ID_BYTES],
                                                GBytes *envelope,
                                                GError **error);

gboolean tally_issuer_store_fraud_proof_insert (TallyIssuerStore *store,
                                                const TallyIssuerFraudRow *row,
                                                GError **error);
/* Oldest first; only those naming @register_id unless it is NULL. */
gboolean tally_issuer_store_fraud_proof_list (TallyIssuerStore *store,
                                              const guint8 *register_id,
                                              GPtrArray **rows,
                                              GError **error);

/* EXISTS for a serial already stored. */
gboolean tally_issuer_store_revocation_list_put (TallyIssuerStore *store,
                                                 guint64 serial,
                                                 guint64 issued_at,
                                                 GBytes *envelope,
                                                 GError **error);
gboolean tally_issuer_store_revocation_list_get_latest (TallyIssuerStore *store,
                                                        guint64 *serial,
                                                        GBytes **envelope,
                                                        GError **error);

gboolean tally_issuer_store_totals_get (TallyIssuerStore *store,
                                        TallyIssuerTotals *totals,
                                        GError **error);
gboolean tally_issuer_store_totals_put (TallyIssuerStore *store,
                                        const TallyIssuerTotals *totals,
                                        GError **error);
/* Sums of vouchers sold to @register_id, of permissions to it that are
 * SETTLED and not tainted, of its own entries with counter <= @counter, and of
 * permissions to it that were RECLAIMED before its receipt came. */
gboolean tally_issuer_store_register_evidence (TallyIssuerStore *store,
                                               const guint8 register_id[static TALLY_ID_BYTES],
                                               guint64 counter,
                                               TallyIssuerEvidence *evidence,
                                               GError **error);
gboolean tally_issuer_store_sums (TallyIssuerStore *store, TallyIssuerSums *sums, GError **error);

G_END_DECLS
