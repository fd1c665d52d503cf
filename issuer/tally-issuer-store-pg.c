/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer store in PostgreSQL, through libpq (tally-pg.c), with the
 * schema in tally-issuer-store-pg-schema.c.
 *
 * Concurrency: every transaction runs at READ COMMITTED and begins by
 * locking the one row of table totals (SELECT ... FOR UPDATE).  Issuer
 * operations on one store therefore run one at a time, whichever process
 * or connection issues them, and each statement after the lock sees
 * everything the previous holder committed: two processes reconciling the
 * two halves of one payment at once book it exactly once, as with SQLite's
 * BEGIN IMMEDIATE.  SERIALIZABLE would give the same safety but abort an
 * operation at any statement with a serialization failure, to be retried
 * as a whole by tally-issuer.c; every reconciliation writes the totals row
 * anyway, so it would buy no parallelism today.
 */
#include "tally-issuer-store-private.h"

typedef enum
{
  STMT_LOCK,
  STMT_META_GET,
  STMT_META_SET,
  STMT_ACCOUNT_INSERT,
  STMT_ACCOUNT_GET,
  STMT_ACCOUNT_PUT,
  STMT_REGISTER_GET,
  STMT_REGISTER_KEY,
  STMT_REGISTER_PUT,
  STMT_REGISTER_LIST_REVOKED,
  STMT_REGISTER_LIST_FLAGGED,
  STMT_REGISTER_LIST_LOST,
  STMT_META_LIST,
  STMT_META_DELETE,
  STMT_VOUCHER_NEXT,
  STMT_VOUCHER_INSERT,
  STMT_VOUCHER_GET,
  STMT_ENTRY_GET,
  STMT_ENTRIES_BY_COUNTER,
  STMT_ENTRY_INSERT,
  STMT_ENTRY_UPDATE,
  STMT_ENTRIES_EXPIRED_IN_FLIGHT,
  STMT_HORIZON_BUNDLE_GET,
  STMT_HORIZON_BUNDLE_PUT,
  STMT_FRAUD_INSERT,
  STMT_FRAUD_LIST_ALL,
  STMT_FRAUD_LIST_REGISTER,
  STMT_REVOCATION_PUT,
  STMT_REVOCATION_LATEST,
  STMT_TOTALS_GET,
  STMT_TOTALS_PUT,
  STMT_SUM_ACCOUNTS,
  STMT_SUM_REGISTERS,
  STMT_SUM_IN_FLIGHT,
  STMT_COUNT_VIEW_MISMATCH,
  STMT_COUNT_FRAUD,
  STMT_EVIDENCE_VOUCHERS,
  STMT_EVIDENCE_RECEIVED,
  STMT_EVIDENCE_SPENT,
  STMT_EVIDENCE_LATE,
  N_STMTS
} StmtId;

#define ENTRY_COLUMNS                                                                              \
  "hash, register_id, counter, kind, payee_id, amount, state, payer_reported, payee_reported, "    \
  "chain_prev, chain_after, envelope, booked_at, expires_at, receipt, credited, tainted"

#define REGISTER_COLUMNS                                                                           \
  "id, public_key, account, max_payment, balance_cap, max_offline_payments, "                      \
  "max_offline_seconds, validity, cert_serial, settled_counter, revoked, view_balance, horizon, "  \
  "refused, deficit, max_payment_ever, display_name, lost_at, refunded_at, refunded, recovered, "  \
  "not_after_ever"

/* Every SUM is cast back to int8: PostgreSQL sums int8 as numeric, and a
 * sum beyond int8 is an error rather than a wrapped value. */
#define LATE_SQL                                                                                   \
  "(SELECT COALESCE(SUM(credited), 0) FROM entries e WHERE e.payee_id = registers.id "             \
  "AND e.state = 3 AND e.payee_reported)"

/* The statements of tally-issuer-store-sqlite.c, in PostgreSQL's dialect;
 * an INSERT that may meet an existing key says ON CONFLICT DO NOTHING, so
 * that the duplicate is reported without aborting the transaction. */
static const char *const stmt_sql[N_STMTS] = {
  [STMT_LOCK] = "SELECT id FROM totals WHERE id = 1 FOR UPDATE",
  [STMT_META_GET] = "SELECT value FROM meta WHERE key = $1",
  [STMT_META_SET] = "INSERT INTO meta (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
  [STMT_META_LIST] = "SELECT key, value FROM meta WHERE starts_with(key, $1) AND key > $2 "
                     "ORDER BY key LIMIT $3",
  [STMT_META_DELETE] = "DELETE FROM meta WHERE key = $1",
  [STMT_ACCOUNT_INSERT] = "INSERT INTO accounts (name, balance) VALUES ($1, 0) "
                          "ON CONFLICT DO NOTHING",
  [STMT_ACCOUNT_GET] = "SELECT balance FROM accounts WHERE name = $1",
  [STMT_ACCOUNT_PUT] = "UPDATE accounts SET balance = $2 WHERE name = $1",
  [STMT_REGISTER_GET] = "SELECT " REGISTER_COLUMNS " FROM registers WHERE id = $1",
  [STMT_REGISTER_KEY] = "SELECT public_key FROM registers WHERE id = $1",
  /* It never updates public_key: a register's key never changes
   * (tally_issuer_store_register_key ()); a put with another key changes
   * no row and is refused (pg_register_put). */
  [STMT_REGISTER_PUT] =
    "INSERT INTO registers (" REGISTER_COLUMNS ") "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21, $22) ON CONFLICT (id) DO UPDATE SET account = $3, "
    "max_payment = $4, balance_cap = $5, max_offline_payments = $6, max_offline_seconds = $7, "
    "validity = $8, "
    "cert_serial = $9, settled_counter = $10, revoked = $11, view_balance = $12, horizon = $13, "
    "refused = $14, deficit = $15, max_payment_ever = $16, display_name = $17, lost_at = $18, "
    "refunded_at = $19, refunded = $20, recovered = $21, not_after_ever = $22 "
    "WHERE registers.public_key = EXCLUDED.public_key",
  [STMT_REGISTER_LIST_REVOKED] = "SELECT id FROM registers WHERE revoked ORDER BY id",
  [STMT_REGISTER_LIST_LOST] = "SELECT id FROM registers WHERE lost_at > 0 AND refunded_at = 0 "
                              "ORDER BY id",
  [STMT_REGISTER_LIST_FLAGGED] = "SELECT " REGISTER_COLUMNS " FROM registers "
                                 "WHERE revoked OR refused != 0 OR view_balance < 0 "
                                 "OR deficit != 0 ORDER BY id",
  [STMT_VOUCHER_NEXT] = "SELECT COALESCE(MAX(sequence), 0) + 1 FROM vouchers "
                        "WHERE register_id = $1",
  [STMT_VOUCHER_INSERT] = "INSERT INTO vouchers (register_id, sequence, amount, issued_at, "
                          "envelope) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
  [STMT_VOUCHER_GET] = "SELECT envelope FROM vouchers WHERE register_id = $1 AND sequence = $2",
  [STMT_ENTRY_GET] = "SELECT " ENTRY_COLUMNS " FROM entries WHERE hash = $1",
  [STMT_ENTRIES_BY_COUNTER] = "SELECT " ENTRY_COLUMNS " FROM entries "
                              "WHERE register_id = $1 AND counter = $2 ORDER BY booked",
  [STMT_ENTRY_INSERT] =
    "INSERT INTO entries (" ENTRY_COLUMNS ") "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
    "ON CONFLICT DO NOTHING",
  [STMT_ENTRY_UPDATE] = "UPDATE entries SET state = $2, payer_reported = $3, payee_reported = $4, "
                        "receipt = $5, tainted = $6, credited = $7 WHERE hash = $1",
  /* "state = 1" spelled out so that the partial index applies. */
  [STMT_ENTRIES_EXPIRED_IN_FLIGHT] = "SELECT " ENTRY_COLUMNS " FROM entries "
                                     "WHERE payee_id = $1 AND state = 1 AND expires_at > 0 "
                                     "AND expires_at <= $2 ORDER BY expires_at, booked",
  [STMT_HORIZON_BUNDLE_GET] = "SELECT envelope FROM horizon_bundles WHERE register_id = $1",
  [STMT_HORIZON_BUNDLE_PUT] = "INSERT INTO horizon_bundles (register_id, envelope) "
                              "VALUES ($1, $2) ON CONFLICT (register_id) DO UPDATE "
                              "SET envelope = EXCLUDED.envelope",
  [STMT_FRAUD_INSERT] = "INSERT INTO fraud_proofs (register_id, kind, detected_at, envelope) "
                        "VALUES ($1, $2, $3, $4)",
  [STMT_FRAUD_LIST_ALL] = "SELECT register_id, kind, detected_at, envelope FROM fraud_proofs "
                          "ORDER BY id",
  [STMT_FRAUD_LIST_REGISTER] = "SELECT register_id, kind, detected_at, envelope FROM fraud_proofs "
                               "WHERE register_id = $1 ORDER BY id",
  [STMT_REVOCATION_PUT] = "INSERT INTO revocation_lists (serial, issued_at, envelope) "
                          "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
  [STMT_REVOCATION_LATEST] = "SELECT serial, envelope FROM revocation_lists "
                             "ORDER BY serial DESC LIMIT 1",
  [STMT_TOTALS_GET] = "SELECT issued, in_flight, reclaimed_count, reclaimed "
                      "FROM totals WHERE id = 1",
  [STMT_TOTALS_PUT] = "UPDATE totals SET issued = $1, in_flight = $2, "
                      "reclaimed_count = $3, reclaimed = $4 WHERE id = 1",
  [STMT_SUM_ACCOUNTS] = "SELECT COALESCE(SUM(balance), 0)::int8 FROM accounts",
  /* As in tally-issuer-store-sqlite.c: a revoked register's exposure is
   * the larger of its negative view and what it was paid late. */
  [STMT_SUM_REGISTERS] =
    "WITH r AS (SELECT revoked, view_balance AS v, refused, " LATE_SQL " AS late FROM registers), "
    "x AS (SELECT revoked, v, refused, "
    "      CASE WHEN revoked THEN GREATEST(late, -v, 0) ELSE 0 END AS exposure FROM r) "
    "SELECT COALESCE(SUM(v + exposure), 0)::int8, COUNT(*), COUNT(*) FILTER (WHERE revoked), "
    "COALESCE(SUM(exposure), 0)::int8, "
    "COALESCE(SUM(CASE WHEN NOT revoked THEN GREATEST(-v, 0) ELSE 0 END), 0)::int8, "
    "COALESCE(SUM(refused), 0)::int8 FROM x",
  [STMT_SUM_IN_FLIGHT] = "SELECT COALESCE(SUM(amount), 0)::int8 FROM entries WHERE state = 1",
  [STMT_COUNT_VIEW_MISMATCH] =
    "SELECT COUNT(*) FROM registers r WHERE r.view_balance != "
    "(SELECT COALESCE(SUM(amount), 0) FROM vouchers v WHERE v.register_id = r.id) + "
    "(SELECT COALESCE(SUM(amount), 0) FROM entries e WHERE e.payee_id = r.id AND e.state = 2) - "
    "(SELECT COALESCE(SUM(CASE WHEN kind = 2 OR state = 3 THEN credited ELSE amount END), 0) "
    " FROM entries e WHERE e.register_id = r.id) - (r.refunded - r.recovered)",
  [STMT_COUNT_FRAUD] = "SELECT COUNT(*) FROM fraud_proofs",
  [STMT_EVIDENCE_VOUCHERS] = "SELECT COALESCE(SUM(amount), 0)::int8 FROM vouchers "
                             "WHERE register_id = $1",
  [STMT_EVIDENCE_RECEIVED] = "SELECT COALESCE(SUM(amount), 0)::int8 FROM entries "
                             "WHERE payee_id = $1 AND state = 2 AND NOT tainted",
  [STMT_EVIDENCE_SPENT] = "SELECT COALESCE(SUM(amount), 0)::int8 FROM entries "
                          "WHERE register_id = $1 AND counter <= $2",
  [STMT_EVIDENCE_LATE] = "SELECT COALESCE(SUM(credited), 0)::int8 FROM entries "
                         "WHERE payee_id = $1 AND state = 3 AND payee_reported",
};

typedef struct
{
  TallyIssuerStore parent;
  TallyPg *db;
} PgStore;

#define DB(store) (((PgStore *) (store))->db)

/* --- running statements --- */

/* Runs @id expecting one row: NOT_FOUND "WHAT not found" without one. */
static PGresult *
run_row (TallyIssuerStore *s, StmtId id, const TallyPgParams *p, const char *what, GError **error)
{
  PGresult *r = tally_pg_run (DB (s), id, p, what, error);
  if (r == NULL || PQntuples (r) > 0)
    return r;
  PQclear (r);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "%s not found", what);
  return NULL;
}

static gboolean
run_done (TallyIssuerStore *s, StmtId id, const TallyPgParams *p, const char *what, GError **error)
{
  g_autoptr (PGresult) r = tally_pg_run (DB (s), id, p, what, error);
  return r != NULL;
}

/* An INSERT ... ON CONFLICT DO NOTHING: FALSE with *@exists set and no
 * error when the key was taken. */
static gboolean
run_insert (TallyIssuerStore *s,
            StmtId id,
            const TallyPgParams *p,
            const char *what,
            gboolean *exists,
            GError **error)
{
  *exists = FALSE;
  g_autoptr (PGresult) r = tally_pg_run (DB (s), id, p, what, error);
  if (r == NULL)
    return FALSE;
  *exists = tally_pg_changed (r) == 0;
  return !*exists;
}

/* An UPDATE of one row by its key: FALSE with *@missing set and no error
 * when it changed no row. */
static gboolean
run_update (TallyIssuerStore *s,
            StmtId id,
            const TallyPgParams *p,
            const char *what,
            gboolean *missing,
            GError **error)
{
  *missing = FALSE;
  g_autoptr (PGresult) r = tally_pg_run (DB (s), id, p, what, error);
  if (r == NULL)
    return FALSE;
  *missing = tally_pg_changed (r) != 1;
  return !*missing;
}

static gboolean
run_int8 (TallyIssuerStore *s,
          StmtId id,
          const TallyPgParams *p,
          const char *what,
          gint64 *out,
          GError **error)
{
  g_autoptr (PGresult) r = run_row (s, id, p, what, error);
  return r != NULL && tally_pg_get_int8 (DB (s), r, 0, 0, out, error);
}

static gboolean
run_bytes (TallyIssuerStore *s,
           StmtId id,
           const TallyPgParams *p,
           const char *what,
           GBytes **out,
           GError **error)
{
  g_autoptr (PGresult) r = run_row (s, id, p, what, error);
  return r != NULL && tally_pg_get_bytes (DB (s), r, 0, 0, FALSE, out, error);
}

/* Fills the zeroed @row from row @i of @r. */
typedef gboolean (*RowReader) (TallyPg *db, PGresult *r, int i, gpointer row, GError **error);

/* Every row of @id, each read by @read into a new zeroed struct. */
static gboolean
collect (TallyIssuerStore *s,
         StmtId id,
         const TallyPgParams *p,
         gsize row_size,
         RowReader read,
         GDestroyNotify free_row,
         const char *what,
         GPtrArray **rows,
         GError **error)
{
  g_autoptr (PGresult) r = tally_pg_run (DB (s), id, p, what, error);
  if (r == NULL)
    return FALSE;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (free_row);
  for (int i = 0; i < PQntuples (r); i++) {
    gpointer row = g_malloc0 (row_size);
    g_ptr_array_add (out, row);
    if (!read (DB (s), r, i, row, error))
      return FALSE;
  }
  *rows = g_steal_pointer (&out);
  return TRUE;
}

/* --- transactions --- */

/* A connection the server dropped since the last operation is made again
 * here, where nothing is lost: no transaction is open.  BEGIN is tried a
 * second time when it is what found the connection gone. */
static gboolean
pg_begin (TallyIssuerStore *s, GError **error)
{
  for (guint attempt = 0;; attempt++) {
    g_autoptr (GError) local = NULL;
    if (!tally_pg_reconnect_if_lost (DB (s), error))
      return FALSE;
    if (tally_pg_begin (DB (s), &local))
      break;
    if (attempt > 0 || tally_pg_connected (DB (s))) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  }
  g_autoptr (PGresult) r = run_row (s, STMT_LOCK, NULL, "store lock", error);
  if (r != NULL)
    return TRUE;
  tally_pg_rollback (DB (s));
  return FALSE;
}

static gboolean
pg_commit (TallyIssuerStore *s, GError **error)
{
  return tally_pg_commit (DB (s), error);
}

static void
pg_rollback (TallyIssuerStore *s)
{
  tally_pg_rollback (DB (s));
}

/* --- meta --- */

static gboolean
pg_meta_get (TallyIssuerStore *s, const char *key, GBytes **value, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, key);
  return run_bytes (s, STMT_META_GET, &p, key, value, error);
}

static gboolean
pg_meta_set (TallyIssuerStore *s, const char *key, GBytes *value, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, key);
  tally_pg_param_bytes (&p, value);
  return run_done (s, STMT_META_SET, &p, "meta", error);
}

static gboolean
pg_meta_list (TallyIssuerStore *s,
              const char *prefix,
              const char *after,
              guint limit,
              GPtrArray **keys,
              GPtrArray **values,
              GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, prefix);
  tally_pg_param_text (&p, after);
  tally_pg_param_int8 (&p, limit);
  g_autoptr (PGresult) r = tally_pg_run (DB (s), STMT_META_LIST, &p, "meta", error);
  if (r == NULL)
    return FALSE;
  g_autoptr (GPtrArray) k = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) v = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (int i = 0; i < PQntuples (r); i++) {
    char *key = NULL;
    GBytes *value = NULL;
    if (!tally_pg_get_text (DB (s), r, i, 0, FALSE, &key, error))
      return FALSE;
    g_ptr_array_add (k, key);
    if (!tally_pg_get_bytes (DB (s), r, i, 1, FALSE, &value, error))
      return FALSE;
    g_ptr_array_add (v, value);
  }
  *keys = g_steal_pointer (&k);
  *values = g_steal_pointer (&v);
  return TRUE;
}

static gboolean
pg_meta_delete (TallyIssuerStore *s, const char *key, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, key);
  return run_done (s, STMT_META_DELETE, &p, "meta", error);
}

/* --- accounts --- */

static gboolean
pg_account_insert (TallyIssuerStore *s, const char *name, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, name);
  gboolean exists;
  if (run_insert (s, STMT_ACCOUNT_INSERT, &p, "account", &exists, error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "account \"%s\" already exists", name);
  return FALSE;
}

static gboolean
pg_account_get (TallyIssuerStore *s, const char *name, gint64 *balance, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, name);
  g_autoptr (PGresult) r = tally_pg_run (DB (s), STMT_ACCOUNT_GET, &p, "account", error);
  if (r == NULL)
    return FALSE;
  if (PQntuples (r) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no account \"%s\"", name);
    return FALSE;
  }
  return tally_pg_get_int8 (DB (s), r, 0, 0, balance, error);
}

static gboolean
pg_account_put (TallyIssuerStore *s, const char *name, gint64 balance, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_text (&p, name);
  tally_pg_param_int8 (&p, balance);
  gboolean missing;
  if (run_update (s, STMT_ACCOUNT_PUT, &p, "account", &missing, error))
    return TRUE;
  if (missing)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no account \"%s\"", name);
  return FALSE;
}

/* --- registers --- */

static gboolean
read_register (TallyPg *db, PGresult *res, int i, TallyIssuerRegisterRow *row, GError **error)
{
  TallyIssuerRegisterRow r = { 0 };
  gint64 max_offline_payments;
  if (!tally_pg_get_fixed (db, res, i, 0, r.id, TALLY_ID_BYTES, error) ||
      !tally_pg_get_fixed (db, res, i, 1, r.public_key, TALLY_PUBLIC_KEY_BYTES, error) ||
      !tally_pg_get_int8 (db, res, i, 3, &r.max_payment, error) ||
      !tally_pg_get_int8 (db, res, i, 4, &r.balance_cap, error) ||
      !tally_pg_get_int8 (db, res, i, 5, &max_offline_payments, error) ||
      !tally_pg_get_u64 (db, res, i, 6, &r.max_offline_seconds, error) ||
      !tally_pg_get_u64 (db, res, i, 7, &r.validity, error) ||
      !tally_pg_get_u64 (db, res, i, 8, &r.cert_serial, error) ||
      !tally_pg_get_u64 (db, res, i, 9, &r.settled_counter, error) ||
      !tally_pg_get_bool (db, res, i, 10, &r.revoked, error) ||
      !tally_pg_get_int8 (db, res, i, 11, &r.view_balance, error) ||
      !tally_pg_get_u64 (db, res, i, 12, &r.horizon, error) ||
      !tally_pg_get_int8 (db, res, i, 13, &r.refused, error) ||
      !tally_pg_get_int8 (db, res, i, 14, &r.deficit, error) ||
      !tally_pg_get_int8 (db, res, i, 15, &r.max_payment_ever, error) ||
      !tally_pg_get_u64 (db, res, i, 17, &r.lost_at, error) ||
      !tally_pg_get_u64 (db, res, i, 18, &r.refunded_at, error) ||
      !tally_pg_get_int8 (db, res, i, 19, &r.refunded, error) ||
      !tally_pg_get_int8 (db, res, i, 20, &r.recovered, error) ||
      !tally_pg_get_u64 (db, res, i, 21, &r.not_after_ever, error))
    return FALSE;
  r.max_offline_payments = (guint32) max_offline_payments;
  if (!tally_pg_get_text (db, res, i, 2, FALSE, &r.account, error) ||
      !tally_pg_get_text (db, res, i, 16, TRUE, &r.display_name, error)) {
    tally_issuer_register_row_clear (&r);
    return FALSE;
  }
  if (r.display_name != NULL && *r.display_name == '\0')
    g_clear_pointer (&r.display_name, g_free);
  *row = r;
  return TRUE;
}

static gboolean
pg_register_get (TallyIssuerStore *s, const guint8 *id, TallyIssuerRegisterRow *row, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, id, TALLY_ID_BYTES);
  g_autoptr (PGresult) r = tally_pg_run (DB (s), STMT_REGISTER_GET, &p, "register", error);
  if (r == NULL)
    return FALSE;
  if (PQntuples (r) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "register not certified by this issuer");
    return FALSE;
  }
  return read_register (DB (s), r, 0, row, error);
}

/* Outside a transaction, a statement of its own (autocommit) that takes no
 * lock; a connection the server dropped is taken up again, as pg_begin
 * does, since no transaction is lost with it. */
static gboolean
pg_register_key (TallyIssuerStore *s, const guint8 *id, guint8 *key, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, id, TALLY_ID_BYTES);
  g_autoptr (PGresult) r = NULL;
  for (guint attempt = 0; r == NULL; attempt++) {
    g_autoptr (GError) local = NULL;
    if (!s->in_transaction && !tally_pg_reconnect_if_lost (DB (s), error))
      return FALSE;
    r = tally_pg_run (DB (s), STMT_REGISTER_KEY, &p, "register key", &local);
    if (r == NULL && (s->in_transaction || attempt > 0 || tally_pg_connected (DB (s)))) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  }
  if (PQntuples (r) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "register not certified by this issuer");
    return FALSE;
  }
  return tally_pg_get_fixed (DB (s), r, 0, 0, key, TALLY_PUBLIC_KEY_BYTES, error);
}

static gboolean
pg_register_put (TallyIssuerStore *s, const TallyIssuerRegisterRow *row, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, row->id, TALLY_ID_BYTES);
  tally_pg_param_blob (&p, row->public_key, TALLY_PUBLIC_KEY_BYTES);
  tally_pg_param_text (&p, row->account);
  tally_pg_param_int8 (&p, row->max_payment);
  tally_pg_param_int8 (&p, row->balance_cap);
  tally_pg_param_int8 (&p, row->max_offline_payments);
  tally_pg_param_u64 (&p, row->max_offline_seconds);
  tally_pg_param_u64 (&p, row->validity);
  tally_pg_param_u64 (&p, row->cert_serial);
  tally_pg_param_u64 (&p, row->settled_counter);
  tally_pg_param_bool (&p, row->revoked);
  tally_pg_param_int8 (&p, row->view_balance);
  tally_pg_param_u64 (&p, row->horizon);
  tally_pg_param_int8 (&p, row->refused);
  tally_pg_param_int8 (&p, row->deficit);
  tally_pg_param_int8 (&p, row->max_payment_ever);
  tally_pg_param_text (&p, row->display_name);
  tally_pg_param_u64 (&p, row->lost_at);
  tally_pg_param_u64 (&p, row->refunded_at);
  tally_pg_param_int8 (&p, row->refunded);
  tally_pg_param_int8 (&p, row->recovered);
  tally_pg_param_u64 (&p, row->not_after_ever);
  gboolean missing;
  if (run_update (s, STMT_REGISTER_PUT, &p, "register", &missing, error))
    return TRUE;
  if (!missing)
    return FALSE;
  /* No row changed: the stored row has another key. */
  return tally_pg_corrupt (DB (s), "a register put with a key other than its stored one", error);
}

/* The ids the one-column statement @stmt selects. */
static gboolean
list_ids (TallyIssuerStore *s, StmtId stmt, const char *what, GPtrArray **ids, GError **error)
{
  g_autoptr (PGresult) r = tally_pg_run (DB (s), stmt, NULL, what, error);
  if (r == NULL)
    return FALSE;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (int i = 0; i < PQntuples (r); i++) {
    guint8 id[TALLY_ID_BYTES];
    if (!tally_pg_get_fixed (DB (s), r, i, 0, id, sizeof id, error))
      return FALSE;
    g_ptr_array_add (out, g_bytes_new (id, sizeof id));
  }
  *ids = g_steal_pointer (&out);
  return TRUE;
}

static gboolean
pg_register_list_revoked (TallyIssuerStore *s, GPtrArray **ids, GError **error)
{
  return list_ids (s, STMT_REGISTER_LIST_REVOKED, "revoked registers", ids, error);
}

static gboolean
pg_register_list_lost (TallyIssuerStore *s, GPtrArray **ids, GError **error)
{
  return list_ids (s, STMT_REGISTER_LIST_LOST, "lost registers", ids, error);
}

static gboolean
pg_register_list_flagged (TallyIssuerStore *s, GPtrArray **rows, GError **error)
{
  return collect (s, STMT_REGISTER_LIST_FLAGGED, NULL, sizeof (TallyIssuerRegisterRow),
                  (RowReader) read_register, (GDestroyNotify) tally_issuer_register_row_free,
                  "flagged registers", rows, error);
}

/* --- vouchers --- */

static gboolean
pg_voucher_next_sequence (TallyIssuerStore *s,
                          const guint8 *register_id,
                          guint64 *sequence,
                          GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  gint64 next;
  if (!run_int8 (s, STMT_VOUCHER_NEXT, &p, "voucher sequence", &next, error))
    return FALSE;
  *sequence = (guint64) next;
  return TRUE;
}

static gboolean
pg_voucher_insert (TallyIssuerStore *s,
                   const guint8 *register_id,
                   guint64 sequence,
                   gint64 amount,
                   guint64 issued_at,
                   GBytes *envelope,
                   GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&p, sequence);
  tally_pg_param_int8 (&p, amount);
  tally_pg_param_u64 (&p, issued_at);
  tally_pg_param_bytes (&p, envelope);
  gboolean exists;
  if (run_insert (s, STMT_VOUCHER_INSERT, &p, "voucher", &exists, error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "voucher %" G_GUINT64_FORMAT " exists",
                 sequence);
  return FALSE;
}

static gboolean
pg_voucher_get (TallyIssuerStore *s,
                const guint8 *register_id,
                guint64 sequence,
                GBytes **envelope,
                GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&p, sequence);
  return run_bytes (s, STMT_VOUCHER_GET, &p, "voucher", envelope, error);
}

/* --- entries --- */

static gboolean
read_entry (TallyPg *db, PGresult *res, int i, TallyIssuerEntryRow *row, GError **error)
{
  TallyIssuerEntryRow r = { 0 };
  gint32 kind, state;
  r.has_payee = !tally_pg_is_null (res, i, 4);
  if (!tally_pg_get_fixed (db, res, i, 0, r.hash, TALLY_HASH_BYTES, error) ||
      !tally_pg_get_fixed (db, res, i, 1, r.register_id, TALLY_ID_BYTES, error) ||
      !tally_pg_get_u64 (db, res, i, 2, &r.counter, error) ||
      !tally_pg_get_int4 (db, res, i, 3, &kind, error) ||
      (r.has_payee && !tally_pg_get_fixed (db, res, i, 4, r.payee_id, TALLY_ID_BYTES, error)) ||
      !tally_pg_get_int8 (db, res, i, 5, &r.amount, error) ||
      !tally_pg_get_int4 (db, res, i, 6, &state, error) ||
      !tally_pg_get_bool (db, res, i, 7, &r.payer_reported, error) ||
      !tally_pg_get_bool (db, res, i, 8, &r.payee_reported, error) ||
      !tally_pg_get_fixed (db, res, i, 9, r.chain_prev, TALLY_HASH_BYTES, error) ||
      !tally_pg_get_fixed (db, res, i, 10, r.chain_after, TALLY_HASH_BYTES, error) ||
      !tally_pg_get_u64 (db, res, i, 12, &r.booked_at, error) ||
      !tally_pg_get_u64 (db, res, i, 13, &r.expires_at, error) ||
      !tally_pg_get_int8 (db, res, i, 15, &r.credited, error) ||
      !tally_pg_get_bool (db, res, i, 16, &r.tainted, error))
    return FALSE;
  if (!tally_pg_get_bytes (db, res, i, 11, FALSE, &r.envelope, error) ||
      !tally_pg_get_bytes (db, res, i, 14, TRUE, &r.receipt, error)) {
    tally_issuer_entry_row_clear (&r);
    return FALSE;
  }
  r.kind = (TallyIssuerEntryKind) kind;
  r.state = (TallyIssuerEntryState) state;
  *row = r;
  return TRUE;
}

static gboolean
read_entries (TallyIssuerStore *s,
              StmtId id,
              const TallyPgParams *p,
              GPtrArray **rows,
              GError **error)
{
  return collect (s, id, p, sizeof (TallyIssuerEntryRow), (RowReader) read_entry,
                  (GDestroyNotify) tally_issuer_entry_row_free, "entries", rows, error);
}

static gboolean
pg_entry_get_by_hash (TallyIssuerStore *s,
                      const guint8 *hash,
                      TallyIssuerEntryRow *row,
                      GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, hash, TALLY_HASH_BYTES);
  g_autoptr (PGresult) r = run_row (s, STMT_ENTRY_GET, &p, "entry", error);
  return r != NULL && read_entry (DB (s), r, 0, row, error);
}

static gboolean
pg_entries_by_counter (TallyIssuerStore *s,
                       const guint8 *register_id,
                       guint64 counter,
                       GPtrArray **rows,
                       GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&p, counter);
  return read_entries (s, STMT_ENTRIES_BY_COUNTER, &p, rows, error);
}

static gboolean
pg_entry_insert (TallyIssuerStore *s, const TallyIssuerEntryRow *row, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, row->hash, TALLY_HASH_BYTES);
  tally_pg_param_blob (&p, row->register_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&p, row->counter);
  tally_pg_param_int4 (&p, (gint32) row->kind);
  tally_pg_param_blob (&p, row->has_payee ? row->payee_id : NULL, TALLY_ID_BYTES);
  tally_pg_param_int8 (&p, row->amount);
  tally_pg_param_int4 (&p, (gint32) row->state);
  tally_pg_param_bool (&p, row->payer_reported);
  tally_pg_param_bool (&p, row->payee_reported);
  tally_pg_param_blob (&p, row->chain_prev, TALLY_HASH_BYTES);
  tally_pg_param_blob (&p, row->chain_after, TALLY_HASH_BYTES);
  tally_pg_param_bytes (&p, row->envelope);
  tally_pg_param_u64 (&p, row->booked_at);
  tally_pg_param_u64 (&p, row->expires_at);
  tally_pg_param_bytes (&p, row->receipt);
  tally_pg_param_int8 (&p, row->credited);
  tally_pg_param_bool (&p, row->tainted);
  gboolean exists;
  if (run_insert (s, STMT_ENTRY_INSERT, &p, "entry", &exists, error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "entry already booked");
  return FALSE;
}

static gboolean
pg_entry_update (TallyIssuerStore *s, const TallyIssuerEntryRow *row, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, row->hash, TALLY_HASH_BYTES);
  tally_pg_param_int4 (&p, (gint32) row->state);
  tally_pg_param_bool (&p, row->payer_reported);
  tally_pg_param_bool (&p, row->payee_reported);
  tally_pg_param_bytes (&p, row->receipt);
  tally_pg_param_bool (&p, row->tainted);
  tally_pg_param_int8 (&p, row->credited);
  gboolean missing;
  if (run_update (s, STMT_ENTRY_UPDATE, &p, "entry", &missing, error))
    return TRUE;
  if (missing)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "entry not found");
  return FALSE;
}

static gboolean
pg_entries_expired_in_flight (TallyIssuerStore *s,
                              const guint8 *payee_id,
                              guint64 horizon,
                              GPtrArray **rows,
                              GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, payee_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&p, horizon);
  return read_entries (s, STMT_ENTRIES_EXPIRED_IN_FLIGHT, &p, rows, error);
}

/* --- horizon bundles --- */

static gboolean
pg_horizon_bundle_get (TallyIssuerStore *s,
                       const guint8 *register_id,
                       GBytes **envelope,
                       GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  return run_bytes (s, STMT_HORIZON_BUNDLE_GET, &p, "horizon bundle", envelope, error);
}

static gboolean
pg_horizon_bundle_put (TallyIssuerStore *s,
                       const guint8 *register_id,
                       GBytes *envelope,
                       GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  tally_pg_param_bytes (&p, envelope);
  return run_done (s, STMT_HORIZON_BUNDLE_PUT, &p, "horizon bundle", error);
}

/* --- fraud proofs --- */

static gboolean
pg_fraud_proof_insert (TallyIssuerStore *s, const TallyIssuerFraudRow *row, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_blob (&p, row->register_id, TALLY_ID_BYTES);
  tally_pg_param_int4 (&p, (gint32) row->kind);
  tally_pg_param_u64 (&p, row->detected_at);
  tally_pg_param_bytes (&p, row->envelope);
  return run_done (s, STMT_FRAUD_INSERT, &p, "fraud proof", error);
}

static gboolean
read_fraud_proof (TallyPg *db, PGresult *r, int i, TallyIssuerFraudRow *row, GError **error)
{
  gint32 kind;
  if (!tally_pg_get_fixed (db, r, i, 0, row->register_id, TALLY_ID_BYTES, error) ||
      !tally_pg_get_int4 (db, r, i, 1, &kind, error) ||
      !tally_pg_get_u64 (db, r, i, 2, &row->detected_at, error))
    return FALSE;
  row->kind = (Tally__FraudKind) kind;
  return tally_pg_get_bytes (db, r, i, 3, FALSE, &row->envelope, error);
}

static gboolean
pg_fraud_proof_list (TallyIssuerStore *s,
                     const guint8 *register_id,
                     GPtrArray **rows,
                     GError **error)
{
  TallyPgParams p = { 0 };
  if (register_id != NULL)
    tally_pg_param_blob (&p, register_id, TALLY_ID_BYTES);
  return collect (s, register_id != NULL ? STMT_FRAUD_LIST_REGISTER : STMT_FRAUD_LIST_ALL, &p,
                  sizeof (TallyIssuerFraudRow), (RowReader) read_fraud_proof,
                  (GDestroyNotify) tally_issuer_fraud_row_free, "fraud proofs", rows, error);
}

/* --- revocation lists --- */

static gboolean
pg_revocation_list_put (TallyIssuerStore *s,
                        guint64 serial,
                        guint64 issued_at,
                        GBytes *envelope,
                        GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_u64 (&p, serial);
  tally_pg_param_u64 (&p, issued_at);
  tally_pg_param_bytes (&p, envelope);
  gboolean exists;
  if (run_insert (s, STMT_REVOCATION_PUT, &p, "revocation list", &exists, error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                 "revocation list %" G_GUINT64_FORMAT " exists", serial);
  return FALSE;
}

static gboolean
pg_revocation_list_get_latest (TallyIssuerStore *s,
                               guint64 *serial,
                               GBytes **envelope,
                               GError **error)
{
  g_autoptr (PGresult) r = run_row (s, STMT_REVOCATION_LATEST, NULL, "revocation list", error);
  if (r == NULL || !tally_pg_get_u64 (DB (s), r, 0, 0, serial, error))
    return FALSE;
  return tally_pg_get_bytes (DB (s), r, 0, 1, FALSE, envelope, error);
}

/* --- totals and sums --- */

static gboolean
pg_totals_get (TallyIssuerStore *s, TallyIssuerTotals *totals, GError **error)
{
  g_autoptr (PGresult) r = run_row (s, STMT_TOTALS_GET, NULL, "totals", error);
  return r != NULL && tally_pg_get_int8 (DB (s), r, 0, 0, &totals->issued, error) &&
         tally_pg_get_int8 (DB (s), r, 0, 1, &totals->in_flight, error) &&
         tally_pg_get_u64 (DB (s), r, 0, 2, &totals->reclaimed_count, error) &&
         tally_pg_get_int8 (DB (s), r, 0, 3, &totals->reclaimed, error);
}

static gboolean
pg_totals_put (TallyIssuerStore *s, const TallyIssuerTotals *totals, GError **error)
{
  TallyPgParams p = { 0 };
  tally_pg_param_int8 (&p, totals->issued);
  tally_pg_param_int8 (&p, totals->in_flight);
  tally_pg_param_u64 (&p, totals->reclaimed_count);
  tally_pg_param_int8 (&p, totals->reclaimed);
  return run_done (s, STMT_TOTALS_PUT, &p, "totals", error);
}

static gboolean
pg_sums (TallyIssuerStore *s, TallyIssuerSums *sums, GError **error)
{
  gint64 registers, revoked, in_flight, unbacked, proofs;
  {
    g_autoptr (PGresult) r = run_row (s, STMT_SUM_REGISTERS, NULL, "register sum", error);
    if (r == NULL || !tally_pg_get_int8 (DB (s), r, 0, 0, &sums->offline, error) ||
        !tally_pg_get_int8 (DB (s), r, 0, 1, &registers, error) ||
        !tally_pg_get_int8 (DB (s), r, 0, 2, &revoked, error) ||
        !tally_pg_get_int8 (DB (s), r, 0, 3, &sums->exposure, error) ||
        !tally_pg_get_int8 (DB (s), r, 0, 4, &sums->awaiting, error) ||
        !tally_pg_get_int8 (DB (s), r, 0, 5, &sums->refused, error))
      return FALSE;
  }
  if (!run_int8 (s, STMT_SUM_ACCOUNTS, NULL, "account sum", &sums->online, error) ||
      !run_int8 (s, STMT_SUM_IN_FLIGHT, NULL, "in-flight sum", &in_flight, error) ||
      !run_int8 (s, STMT_COUNT_VIEW_MISMATCH, NULL, "view check", &unbacked, error) ||
      !run_int8 (s, STMT_COUNT_FRAUD, NULL, "fraud proof count", &proofs, error))
    return FALSE;
  sums->in_flight = in_flight;
  sums->registers = (guint) registers;
  sums->revoked = (guint) revoked;
  sums->views_unbacked = (guint) unbacked;
  sums->fraud_proofs = (guint) proofs;
  return TRUE;
}

static gboolean
pg_register_evidence (TallyIssuerStore *s,
                      const guint8 *register_id,
                      guint64 counter,
                      TallyIssuerEvidence *evidence,
                      GError **error)
{
  TallyPgParams by_id = { 0 };
  tally_pg_param_blob (&by_id, register_id, TALLY_ID_BYTES);
  TallyPgParams by_counter = { 0 };
  tally_pg_param_blob (&by_counter, register_id, TALLY_ID_BYTES);
  tally_pg_param_u64 (&by_counter, counter);
  return run_int8 (s, STMT_EVIDENCE_VOUCHERS, &by_id, "evidence", &evidence->vouchers, error) &&
         run_int8 (s, STMT_EVIDENCE_RECEIVED, &by_id, "evidence", &evidence->received, error) &&
         run_int8 (s, STMT_EVIDENCE_SPENT, &by_counter, "evidence", &evidence->spent, error) &&
         run_int8 (s, STMT_EVIDENCE_LATE, &by_id, "evidence", &evidence->late, error);
}

/* --- lifetime --- */

static void
pg_free (TallyIssuerStore *s)
{
  tally_pg_free (DB (s));
  g_free (s);
}

static const TallyIssuerStoreVTable pg_vtable = {
  .name = "postgresql",
  .free = pg_free,
  .begin = pg_begin,
  .commit = pg_commit,
  .rollback = pg_rollback,
  .meta_get = pg_meta_get,
  .meta_set = pg_meta_set,
  .meta_list = pg_meta_list,
  .meta_delete = pg_meta_delete,
  .account_insert = pg_account_insert,
  .account_get = pg_account_get,
  .account_put = pg_account_put,
  .register_get = pg_register_get,
  .register_put = pg_register_put,
  .register_key = pg_register_key,
  .register_list_revoked = pg_register_list_revoked,
  .register_list_lost = pg_register_list_lost,
  .register_list_flagged = pg_register_list_flagged,
  .voucher_next_sequence = pg_voucher_next_sequence,
  .voucher_insert = pg_voucher_insert,
  .voucher_get = pg_voucher_get,
  .entry_get_by_hash = pg_entry_get_by_hash,
  .entries_by_counter = pg_entries_by_counter,
  .entry_insert = pg_entry_insert,
  .entry_update = pg_entry_update,
  .entries_expired_in_flight = pg_entries_expired_in_flight,
  .horizon_bundle_get = pg_horizon_bundle_get,
  .horizon_bundle_put = pg_horizon_bundle_put,
  .fraud_proof_insert = pg_fraud_proof_insert,
  .fraud_proof_list = pg_fraud_proof_list,
  .revocation_list_put = pg_revocation_list_put,
  .revocation_list_get_latest = pg_revocation_list_get_latest,
  .totals_get = pg_totals_get,
  .totals_put = pg_totals_put,
  .register_evidence = pg_register_evidence,
  .sums = pg_sums,
};

TallyIssuerStore *
tally_issuer_store_pg_open (const char *conninfo, gboolean create, GError **error)
{
  g_return_val_if_fail (conninfo != NULL, NULL);

  g_autoptr (TallyPg) db = tally_pg_connect (conninfo, error);
  if (db == NULL || !tally_issuer_store_pg_schema_setup (db, create, error) ||
      !tally_pg_prepare (db, stmt_sql, N_STMTS, error))
    return NULL;
  PgStore *s = g_new0 (PgStore, 1);
  tally_issuer_store_init (&s->parent, &pg_vtable);
  s->db = g_steal_pointer (&db);
  return &s->parent;
}
