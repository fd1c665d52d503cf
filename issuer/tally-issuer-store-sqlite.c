/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-issuer-store-private.h"

typedef enum
{
  STMT_META_GET,
  STMT_META_SET,
  STMT_ACCOUNT_INSERT,
  STMT_ACCOUNT_GET,
  STMT_ACCOUNT_PUT,
  STMT_REGISTER_GET,
  STMT_REGISTER_KEY,
  STMT_REGISTER_PUT,
  STMT_REGISTER_LIST_REVOKED,
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
  STMT_COUNT_FRAUD,
  STMT_SUM_IN_FLIGHT,
  STMT_COUNT_VIEW_MISMATCH,
  STMT_EVIDENCE_VOUCHERS,
  STMT_EVIDENCE_RECEIVED,
  STMT_EVIDENCE_SPENT,
  STMT_EVIDENCE_LATE,
  STMT_REGISTER_LIST_FLAGGED,
  STMT_REGISTER_LIST_LOST,
  STMT_META_LIST,
  STMT_META_DELETE,
  N_STMTS
} StmtId;

#define ENTRY_COLUMNS                                                                              \
  "hash, register_id, counter, kind, payee_id, amount, state, payer_reported, payee_reported, "    \
  "chain_prev, chain_after, envelope, booked_at, expires_at, receipt, credited, tainted"

/* Value the payers of permissions already reclaimed got back online, for
 * which a register's receipt came late: it exists twice. */
#define LATE_SQL                                                                                   \
  "(SELECT COALESCE(SUM(credited), 0) FROM entries e WHERE e.payee_id = registers.id "             \
  "AND e.state = 3 AND e.payee_reported != 0)"

#define REGISTER_COLUMNS                                                                           \
  "id, public_key, account, max_payment, balance_cap, max_offline_payments, "                      \
  "max_offline_seconds, validity, cert_serial, settled_counter, revoked, view_balance, horizon, "  \
  "refused, deficit, max_payment_ever, display_name, lost_at, refunded_at, refunded, recovered, "  \
  "not_after_ever"

static const char *const stmt_sql[N_STMTS] = {
  [STMT_META_GET] = "SELECT value FROM meta WHERE key = ?1",
  [STMT_META_SET] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
  [STMT_META_LIST] = "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 "
                     "AND key > ?2 ORDER BY key LIMIT ?3",
  [STMT_META_DELETE] = "DELETE FROM meta WHERE key = ?1",
  [STMT_ACCOUNT_INSERT] = "INSERT INTO accounts (name, balance) VALUES (?1, 0)",
  [STMT_ACCOUNT_GET] = "SELECT balance FROM accounts WHERE name = ?1",
  [STMT_ACCOUNT_PUT] = "UPDATE accounts SET balance = ?2 WHERE name = ?1",
  [STMT_REGISTER_GET] = "SELECT " REGISTER_COLUMNS " FROM registers WHERE id = ?1",
  [STMT_REGISTER_KEY] = "SELECT public_key FROM registers WHERE id = ?1",
  /* An upsert, not REPLACE: replacing would delete a row vouchers refer to.
   * It never updates public_key: a register's key never changes
   * (tally_issuer_store_register_key ()); a put with another key changes
   * no row and is refused (sqlite_register_put). */
  [STMT_REGISTER_PUT] =
    "INSERT INTO registers (" REGISTER_COLUMNS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
    "?18, ?19, ?20, ?21, ?22) ON CONFLICT (id) DO UPDATE SET account = ?3, "
    "max_payment = ?4, balance_cap = ?5, max_offline_payments = ?6, "
    "max_offline_seconds = ?7, validity = ?8, cert_serial = ?9, "
    "settled_counter = ?10, revoked = ?11, view_balance = ?12, horizon = ?13, "
    "refused = ?14, deficit = ?15, max_payment_ever = ?16, display_name = ?17, "
    "lost_at = ?18, refunded_at = ?19, refunded = ?20, recovered = ?21, "
    "not_after_ever = ?22 WHERE registers.public_key = excluded.public_key",
  [STMT_REGISTER_LIST_REVOKED] = "SELECT id FROM registers WHERE revoked != 0 ORDER BY id",
  [STMT_REGISTER_LIST_LOST] = "SELECT id FROM registers WHERE lost_at > 0 AND refunded_at = 0 "
                              "ORDER BY id",
  [STMT_VOUCHER_NEXT] =
    "SELECT COALESCE(MAX(sequence), 0) + 1 FROM vouchers WHERE register_id = ?1",
  [STMT_VOUCHER_INSERT] =
    "INSERT INTO vouchers (register_id, sequence, amount, issued_at, envelope) "
    "VALUES (?1, ?2, ?3, ?4, ?5)",
  [STMT_VOUCHER_GET] = "SELECT envelope FROM vouchers WHERE register_id = ?1 AND sequence = ?2",
  [STMT_ENTRY_GET] = "SELECT " ENTRY_COLUMNS " FROM entries WHERE hash = ?1",
  [STMT_ENTRIES_BY_COUNTER] = "SELECT " ENTRY_COLUMNS " FROM entries "
                              "WHERE register_id = ?1 AND counter = ?2 ORDER BY rowid",
  [STMT_ENTRY_INSERT] =
    "INSERT INTO entries (" ENTRY_COLUMNS ") "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
  [STMT_ENTRY_UPDATE] = "UPDATE entries SET state = ?2, payer_reported = ?3, payee_reported = ?4, "
                        "receipt = ?5, tainted = ?6, credited = ?7 WHERE hash = ?1",
  /* "state = 1" spelled out so that the partial index applies. */
  [STMT_ENTRIES_EXPIRED_IN_FLIGHT] = "SELECT " ENTRY_COLUMNS " FROM entries "
                                     "WHERE payee_id = ?1 AND state = 1 AND expires_at > 0 "
                                     "AND expires_at <= ?2 ORDER BY expires_at, rowid",
  [STMT_HORIZON_BUNDLE_GET] = "SELECT envelope FROM horizon_bundles WHERE register_id = ?1",
  [STMT_HORIZON_BUNDLE_PUT] = "INSERT INTO horizon_bundles (register_id, envelope) "
                              "VALUES (?1, ?2) ON CONFLICT (register_id) DO UPDATE "
                              "SET envelope = ?2",
  [STMT_FRAUD_INSERT] = "INSERT INTO fraud_proofs (register_id, kind, detected_at, envelope) "
                        "VALUES (?1, ?2, ?3, ?4)",
  [STMT_FRAUD_LIST_ALL] = "SELECT register_id, kind, detected_at, envelope FROM fraud_proofs "
                          "ORDER BY id",
  [STMT_FRAUD_LIST_REGISTER] = "SELECT register_id, kind, detected_at, envelope FROM fraud_proofs "
                               "WHERE register_id = ?1 ORDER BY id",
  [STMT_REVOCATION_PUT] = "INSERT INTO revocation_lists (serial, issued_at, envelope) "
                          "VALUES (?1, ?2, ?3)",
  [STMT_REVOCATION_LATEST] = "SELECT serial, envelope FROM revocation_lists "
                             "ORDER BY serial DESC LIMIT 1",
  [STMT_TOTALS_GET] = "SELECT issued, in_flight, reclaimed_count, reclaimed "
                      "FROM totals WHERE id = 1",
  [STMT_TOTALS_PUT] = "UPDATE totals SET issued = ?1, in_flight = ?2, "
                      "reclaimed_count = ?3, reclaimed = ?4 WHERE id = 1",
  [STMT_SUM_ACCOUNTS] = "SELECT COALESCE(SUM(balance), 0) FROM accounts",
  /* A revoked register's exposure is the larger of what it spent beyond its
   * evidence (its negative view) and what it was paid late, after the
   * payer had the value back (docs/protocol.md 5.5): that value is in its
   * register or, once spent, in others'.  Its offline value is its view plus
   * its exposure.  A register in good standing may be negative only until
   * its own bundle books what it received (awaiting). */
  [STMT_SUM_REGISTERS] =
    "WITH r AS (SELECT revoked, view_balance AS v, refused, " LATE_SQL " AS late FROM registers), "
    "x AS (SELECT revoked, v, refused, "
    "      CASE WHEN revoked != 0 THEN MAX(late, -v, 0) ELSE 0 END AS exposure FROM r) "
    "SELECT COALESCE(SUM(v + exposure), 0), COUNT(*), COALESCE(SUM(revoked != 0), 0), "
    "COALESCE(SUM(exposure), 0), "
    "COALESCE(SUM(CASE WHEN revoked = 0 THEN MAX(-v, 0) ELSE 0 END), 0), "
    "COALESCE(SUM(refused), 0) FROM x",
  [STMT_SUM_IN_FLIGHT] = "SELECT COALESCE(SUM(amount), 0) FROM entries WHERE state = 1",
  /* Each view recomputed from the evidence itself: vouchers sold, payments
   * received and settled, own permissions, and what defunds were credited. */
  [STMT_COUNT_VIEW_MISMATCH] =
    "SELECT COUNT(*) FROM registers r WHERE r.view_balance != "
    "(SELECT COALESCE(SUM(amount), 0) FROM vouchers v WHERE v.register_id = r.id) + "
    "(SELECT COALESCE(SUM(amount), 0) FROM entries e WHERE e.payee_id = r.id AND e.state = 2) - "
    "(SELECT COALESCE(SUM(CASE WHEN kind = 2 OR state = 3 THEN credited ELSE amount END), 0) "
    " FROM entries e WHERE e.register_id = r.id) - (r.refunded - r.recovered)",
  [STMT_REGISTER_LIST_FLAGGED] = "SELECT " REGISTER_COLUMNS " FROM registers "
                                 "WHERE revoked != 0 OR refused != 0 OR view_balance < 0 OR "
                                 "deficit != 0 "
                                 "ORDER BY id",
  [STMT_EVIDENCE_VOUCHERS] = "SELECT COALESCE(SUM(amount), 0) FROM vouchers WHERE register_id = ?1",
  [STMT_EVIDENCE_RECEIVED] = "SELECT COALESCE(SUM(amount), 0) FROM entries "
                             "WHERE payee_id = ?1 AND state = 2 AND tainted = 0",
  [STMT_EVIDENCE_LATE] = "SELECT COALESCE(SUM(credited), 0) FROM entries "
                         "WHERE payee_id = ?1 AND state = 3 AND payee_reported != 0",
  [STMT_EVIDENCE_SPENT] = "SELECT COALESCE(SUM(amount), 0) FROM entries "
                          "WHERE register_id = ?1 AND counter <= ?2",
  [STMT_COUNT_FRAUD] = "SELECT COUNT(*) FROM fraud_proofs",
};

typedef struct
{
  TallyIssuerStore parent;
  TallySqlite *db;
} SqliteStore;

#define DB(store) (((SqliteStore *) (store))->db)

/* Collects every row of @st into *@rows. */
static gboolean
collect (TallyIssuerStore *s,
         sqlite3_stmt *st,
         gsize row_size,
         TallySqliteRowReader read,
         GDestroyNotify free_row,
         const char *what,
         GPtrArray **rows,
         GError **error)
{
  GPtrArray *out = tally_sqlite_collect (DB (s), st, row_size, read, s, free_row, what, error);
  if (out == NULL)
    return FALSE;
  *rows = out;
  return TRUE;
}

/* Steps @st for its one row and reads the integer in its first column. */
static gboolean
step_int64 (TallyIssuerStore *s, sqlite3_stmt *st, const char *what, gint64 *out, GError **error)
{
  if (!tally_sqlite_step_row (DB (s), st, what, error))
    return FALSE;
  *out = sqlite3_column_int64 (st, 0);
  return TRUE;
}

/* Steps @st for its one row and takes the blob in its first column. */
static gboolean
step_bytes (TallyIssuerStore *s, sqlite3_stmt *st, const char *what, GBytes **out, GError **error)
{
  if (!tally_sqlite_step_row (DB (s), st, what, error))
    return FALSE;
  *out = tally_sqlite_column_bytes (st, 0);
  return TRUE;
}

/* The one integer statement @id, which takes no parameter, returns. */
static gboolean
query_int64 (TallyIssuerStore *s, StmtId id, const char *what, gint64 *out, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), id);
  return step_int64 (s, st, what, out, error);
}

/* --- transactions --- */

/* Writers serialize on SQLite's one write lock (BEGIN IMMEDIATE), so two
 * issuer processes on one file never book the same thing twice. */
static gboolean
sqlite_begin (TallyIssuerStore *store, GError **error)
{
  return tally_sqlite_begin (DB (store), TRUE, error);
}

static gboolean
sqlite_commit (TallyIssuerStore *store, GError **error)
{
  return tally_sqlite_commit (DB (store), error);
}

static void
sqlite_rollback (TallyIssuerStore *store)
{
  tally_sqlite_rollback (DB (store));
}

/* --- meta --- */

static gboolean
sqlite_meta_get (TallyIssuerStore *s, const char *key, GBytes **value, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_META_GET);
  tally_sqlite_bind_text (st, 1, key);
  return step_bytes (s, st, key, value, error);
}

static gboolean
sqlite_meta_set (TallyIssuerStore *s, const char *key, GBytes *value, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_META_SET);
  tally_sqlite_bind_text (st, 1, key);
  tally_sqlite_bind_bytes (st, 2, value);
  return tally_sqlite_step_done (DB (s), st, "meta", error);
}

static gboolean
sqlite_meta_list (TallyIssuerStore *s,
                  const char *prefix,
                  const char *after,
                  guint limit,
                  GPtrArray **keys,
                  GPtrArray **values,
                  GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_META_LIST);
  tally_sqlite_bind_text (st, 1, prefix);
  tally_sqlite_bind_text (st, 2, after);
  sqlite3_bind_int64 (st, 3, limit);
  g_autoptr (GPtrArray) k = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) v = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  gboolean have;
  while (tally_sqlite_step_next (DB (s), st, &have, "meta", error)) {
    if (!have) {
      *keys = g_steal_pointer (&k);
      *values = g_steal_pointer (&v);
      return TRUE;
    }
    GBytes *value = tally_sqlite_column_bytes (st, 1);
    g_ptr_array_add (k, g_strdup ((const char *) sqlite3_column_text (st, 0)));
    g_ptr_array_add (v, value != NULL ? value : g_bytes_new (NULL, 0));
  }
  return FALSE;
}

static gboolean
sqlite_meta_delete (TallyIssuerStore *s, const char *key, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_META_DELETE);
  tally_sqlite_bind_text (st, 1, key);
  return tally_sqlite_step_done (DB (s), st, "meta", error);
}

/* --- accounts --- */

static gboolean
sqlite_account_insert (TallyIssuerStore *s, const char *name, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ACCOUNT_INSERT);
  tally_sqlite_bind_text (st, 1, name);
  gboolean exists;
  if (tally_sqlite_step_insert (DB (s), st, &exists, "account", error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "account \"%s\" already exists", name);
  return FALSE;
}

static gboolean
sqlite_account_get (TallyIssuerStore *s,
                                const char *name,
                                gint64 *balance,
                                GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ACCOUNT_GET);
  tally_sqlite_bind_text (st, 1, name);
  gboolean have;
  if (!tally_sqlite_step_next (DB (s), st, &have, "account", error))
    return FALSE;
  if (!have) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no account \"%s\"", name);
    return FALSE;
  }
  *balance = sqlite3_column_int64 (st, 0);
  return TRUE;
}

static gboolean
sqlite_account_put (TallyIssuerStore *s,
                                const char *name,
                                gint64 balance,
                                GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ACCOUNT_PUT);
  tally_sqlite_bind_text (st, 1, name);
  sqlite3_bind_int64 (st, 2, balance);
  gboolean missing;
  if (tally_sqlite_step_update (DB (s), st, &missing, "account", error))
    return TRUE;
  if (missing)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no account \"%s\"", name);
  return FALSE;
}

/* --- registers --- */

static gboolean
read_register (TallyIssuerStore *s, sqlite3_stmt *st, TallyIssuerRegisterRow *row, GError **error)
{
  TallyIssuerRegisterRow r = { 0 };
  if (!tally_sqlite_column_fixed (DB (s), st, 0, r.id, TALLY_ID_BYTES, error) ||
      !tally_sqlite_column_fixed (DB (s), st, 1, r.public_key, TALLY_PUBLIC_KEY_BYTES, error))
    return FALSE;
  r.account = g_strdup ((const char *) sqlite3_column_text (st, 2));
  r.max_payment = sqlite3_column_int64 (st, 3);
  r.balance_cap = sqlite3_column_int64 (st, 4);
  r.max_offline_payments = (guint32) sqlite3_column_int64 (st, 5);
  r.max_offline_seconds = tally_sqlite_column_u64 (st, 6);
  r.validity = tally_sqlite_column_u64 (st, 7);
  r.cert_serial = tally_sqlite_column_u64 (st, 8);
  r.settled_counter = tally_sqlite_column_u64 (st, 9);
  r.revoked = sqlite3_column_int (st, 10) != 0;
  r.view_balance = sqlite3_column_int64 (st, 11);
  r.horizon = tally_sqlite_column_u64 (st, 12);
  r.refused = sqlite3_column_int64 (st, 13);
  r.deficit = sqlite3_column_int64 (st, 14);
  r.max_payment_ever = sqlite3_column_int64 (st, 15);
  const char *name = (const char *) sqlite3_column_text (st, 16);
  r.display_name = name != NULL && *name != '\0' ? g_strdup (name) : NULL;
  r.lost_at = tally_sqlite_column_u64 (st, 17);
  r.refunded_at = tally_sqlite_column_u64 (st, 18);
  r.refunded = sqlite3_column_int64 (st, 19);
  r.recovered = sqlite3_column_int64 (st, 20);
  r.not_after_ever = tally_sqlite_column_u64 (st, 21);
  *row = r;
  return TRUE;
}

static gboolean
sqlite_register_get (TallyIssuerStore *s,
                                 const guint8 *id,
                                 TallyIssuerRegisterRow *row,
                                 GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REGISTER_GET);
  tally_sqlite_bind_blob (st, 1, id, TALLY_ID_BYTES);
  gboolean found;
  if (!tally_sqlite_lookup (DB (s), st, (TallySqliteRowReader) read_register, s, row, &found,
                            "register", error))
    return FALSE;
  if (!found)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "register not certified by this issuer");
  return found;
}

static gboolean
read_key (TallyIssuerStore *s, sqlite3_stmt *st, guint8 *key, GError **error)
{
  return tally_sqlite_column_fixed (DB (s), st, 0, key, TALLY_PUBLIC_KEY_BYTES, error);
}

/* Outside a transaction SQLite reads in a transaction of its own, which
 * waits for no writer (WAL). */
static gboolean
sqlite_register_key (TallyIssuerStore *s, const guint8 *id, guint8 *key, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REGISTER_KEY);
  tally_sqlite_bind_blob (st, 1, id, TALLY_ID_BYTES);
  gboolean found;
  if (!tally_sqlite_lookup (DB (s), st, (TallySqliteRowReader) read_key, s, key, &found,
                            "register key", error))
    return FALSE;
  if (!found)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "register not certified by this issuer");
  return found;
}

static gboolean
sqlite_register_put (TallyIssuerStore *s,
                                 const TallyIssuerRegisterRow *row,
                                 GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REGISTER_PUT);
  tally_sqlite_bind_blob (st, 1, row->id, TALLY_ID_BYTES);
  tally_sqlite_bind_blob (st, 2, row->public_key, TALLY_PUBLIC_KEY_BYTES);
  tally_sqlite_bind_text (st, 3, row->account);
  sqlite3_bind_int64 (st, 4, row->max_payment);
  sqlite3_bind_int64 (st, 5, row->balance_cap);
  sqlite3_bind_int64 (st, 6, row->max_offline_payments);
  tally_sqlite_bind_u64 (st, 7, row->max_offline_seconds);
  tally_sqlite_bind_u64 (st, 8, row->validity);
  tally_sqlite_bind_u64 (st, 9, row->cert_serial);
  tally_sqlite_bind_u64 (st, 10, row->settled_counter);
  sqlite3_bind_int (st, 11, row->revoked ? 1 : 0);
  sqlite3_bind_int64 (st, 12, row->view_balance);
  tally_sqlite_bind_u64 (st, 13, row->horizon);
  sqlite3_bind_int64 (st, 14, row->refused);
  sqlite3_bind_int64 (st, 15, row->deficit);
  sqlite3_bind_int64 (st, 16, row->max_payment_ever);
  tally_sqlite_bind_text (st, 17, row->display_name);
  tally_sqlite_bind_u64 (st, 18, row->lost_at);
  tally_sqlite_bind_u64 (st, 19, row->refunded_at);
  sqlite3_bind_int64 (st, 20, row->refunded);
  sqlite3_bind_int64 (st, 21, row->recovered);
  tally_sqlite_bind_u64 (st, 22, row->not_after_ever);
  gboolean missing;
  if (tally_sqlite_step_update (DB (s), st, &missing, "register", error))
    return TRUE;
  if (!missing)
    return FALSE;
  /* No row changed: the stored row has another key. */
  return tally_sqlite_corrupt (DB (s), "a register put with a key other than its stored one",
                               error);
}

/* The ids the one-column statement @stmt selects. */
static gboolean
list_ids (TallyIssuerStore *s, StmtId stmt, const char *what, GPtrArray **ids, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), stmt);
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  gboolean have;
  while (tally_sqlite_step_next (DB (s), st, &have, what, error)) {
    if (!have) {
      *ids = g_steal_pointer (&out);
      return TRUE;
    }
    guint8 id[TALLY_ID_BYTES];
    if (!tally_sqlite_column_fixed (DB (s), st, 0, id, sizeof id, error))
      return FALSE;
    g_ptr_array_add (out, g_bytes_new (id, sizeof id));
  }
  return FALSE;
}

static gboolean
sqlite_register_list_revoked (TallyIssuerStore *s, GPtrArray **ids, GError **error)
{
  return list_ids (s, STMT_REGISTER_LIST_REVOKED, "revoked registers", ids, error);
}

static gboolean
sqlite_register_list_lost (TallyIssuerStore *s, GPtrArray **ids, GError **error)
{
  return list_ids (s, STMT_REGISTER_LIST_LOST, "lost registers", ids, error);
}

static gboolean
sqlite_register_list_flagged (TallyIssuerStore *s, GPtrArray **rows, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REGISTER_LIST_FLAGGED);
  return collect (s, st, sizeof (TallyIssuerRegisterRow), (TallySqliteRowReader) read_register,
                  (GDestroyNotify) tally_issuer_register_row_free, "flagged registers", rows,
                  error);
}

/* --- vouchers --- */

static gboolean
sqlite_voucher_next_sequence (TallyIssuerStore *s,
                                          const guint8 *register_id,
                                          guint64 *sequence,
                                          GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_VOUCHER_NEXT);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  if (!tally_sqlite_step_row (DB (s), st, "voucher sequence", error))
    return FALSE;
  *sequence = tally_sqlite_column_u64 (st, 0);
  return TRUE;
}

static gboolean
sqlite_voucher_insert (TallyIssuerStore *s,
                                   const guint8 *register_id,
                                   guint64 sequence,
                                   gint64 amount,
                                   guint64 issued_at,
                                   GBytes *envelope,
                                   GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_VOUCHER_INSERT);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, sequence);
  sqlite3_bind_int64 (st, 3, amount);
  tally_sqlite_bind_u64 (st, 4, issued_at);
  tally_sqlite_bind_bytes (st, 5, envelope);
  gboolean exists;
  if (tally_sqlite_step_insert (DB (s), st, &exists, "voucher", error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "voucher %" G_GUINT64_FORMAT " exists",
                 sequence);
  return FALSE;
}

static gboolean
sqlite_voucher_get (TallyIssuerStore *s,
                                const guint8 *register_id,
                                guint64 sequence,
                                GBytes **envelope,
                                GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_VOUCHER_GET);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, sequence);
  return step_bytes (s, st, "voucher", envelope, error);
}

/* --- entries --- */

static gboolean
read_entry (TallyIssuerStore *s, sqlite3_stmt *st, TallyIssuerEntryRow *row, GError **error)
{
  TallyIssuerEntryRow r = { 0 };
  if (!tally_sqlite_column_fixed (DB (s), st, 0, r.hash, TALLY_HASH_BYTES, error) ||
      !tally_sqlite_column_fixed (DB (s), st, 1, r.register_id, TALLY_ID_BYTES, error))
    return FALSE;
  r.counter = tally_sqlite_column_u64 (st, 2);
  r.kind = (TallyIssuerEntryKind) sqlite3_column_int (st, 3);
  r.has_payee = sqlite3_column_type (st, 4) != SQLITE_NULL;
  if (r.has_payee && !tally_sqlite_column_fixed (DB (s), st, 4, r.payee_id, TALLY_ID_BYTES, error))
    return FALSE;
  r.amount = sqlite3_column_int64 (st, 5);
  r.state = (TallyIssuerEntryState) sqlite3_column_int (st, 6);
  r.payer_reported = sqlite3_column_int (st, 7) != 0;
  r.payee_reported = sqlite3_column_int (st, 8) != 0;
  if (!tally_sqlite_column_fixed (DB (s), st, 9, r.chain_prev, TALLY_HASH_BYTES, error) ||
      !tally_sqlite_column_fixed (DB (s), st, 10, r.chain_after, TALLY_HASH_BYTES, error))
    return FALSE;
  r.envelope = tally_sqlite_column_bytes (st, 11);
  r.booked_at = tally_sqlite_column_u64 (st, 12);
  r.expires_at = tally_sqlite_column_u64 (st, 13);
  if (sqlite3_column_type (st, 14) != SQLITE_NULL)
    r.receipt = tally_sqlite_column_bytes (st, 14);
  r.credited = sqlite3_column_int64 (st, 15);
  r.tainted = sqlite3_column_int (st, 16) != 0;
  *row = r;
  return TRUE;
}

static gboolean
read_entries (TallyIssuerStore *s, sqlite3_stmt *st, GPtrArray **rows, GError **error)
{
  return collect (s, st, sizeof (TallyIssuerEntryRow), (TallySqliteRowReader) read_entry,
                  (GDestroyNotify) tally_issuer_entry_row_free, "entries", rows, error);
}

static gboolean
sqlite_entry_get_by_hash (TallyIssuerStore *s,
                                      const guint8 *hash,
                                      TallyIssuerEntryRow *row,
                                      GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ENTRY_GET);
  tally_sqlite_bind_blob (st, 1, hash, TALLY_HASH_BYTES);
  if (!tally_sqlite_step_row (DB (s), st, "entry", error))
    return FALSE;
  return read_entry (s, st, row, error);
}

static gboolean
sqlite_entries_by_counter (TallyIssuerStore *s,
                                       const guint8 *register_id,
                                       guint64 counter,
                                       GPtrArray **rows,
                                       GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ENTRIES_BY_COUNTER);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, counter);
  return read_entries (s, st, rows, error);
}

static gboolean
sqlite_entry_insert (TallyIssuerStore *s,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ENTRY_INSERT);
  tally_sqlite_bind_blob (st, 1, row->hash, TALLY_HASH_BYTES);
  tally_sqlite_bind_blob (st, 2, row->register_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 3, row->counter);
  sqlite3_bind_int (st, 4, (int) row->kind);
  if (row->has_payee)
    tally_sqlite_bind_blob (st, 5, row->payee_id, TALLY_ID_BYTES);
  else
    sqlite3_bind_null (st, 5);
  sqlite3_bind_int64 (st, 6, row->amount);
  sqlite3_bind_int (st, 7, (int) row->state);
  sqlite3_bind_int (st, 8, row->payer_reported ? 1 : 0);
  sqlite3_bind_int (st, 9, row->payee_reported ? 1 : 0);
  tally_sqlite_bind_blob (st, 10, row->chain_prev, TALLY_HASH_BYTES);
  tally_sqlite_bind_blob (st, 11, row->chain_after, TALLY_HASH_BYTES);
  tally_sqlite_bind_bytes (st, 12, row->envelope);
  tally_sqlite_bind_u64 (st, 13, row->booked_at);
  tally_sqlite_bind_u64 (st, 14, row->expires_at);
  tally_sqlite_bind_bytes (st, 15, row->receipt);
  sqlite3_bind_int64 (st, 16, row->credited);
  sqlite3_bind_int (st, 17, row->tainted ? 1 : 0);
  gboolean exists;
  if (tally_sqlite_step_insert (DB (s), st, &exists, "entry", error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "entry already booked");
  return FALSE;
}

static gboolean
sqlite_entry_update (TallyIssuerStore *s,
                                 const TallyIssuerEntryRow *row,
                                 GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ENTRY_UPDATE);
  tally_sqlite_bind_blob (st, 1, row->hash, TALLY_HASH_BYTES);
  sqlite3_bind_int (st, 2, (int) row->state);
  sqlite3_bind_int (st, 3, row->payer_reported ? 1 : 0);
  sqlite3_bind_int (st, 4, row->payee_reported ? 1 : 0);
  tally_sqlite_bind_bytes (st, 5, row->receipt);
  sqlite3_bind_int (st, 6, row->tainted ? 1 : 0);
  sqlite3_bind_int64 (st, 7, row->credited);
  gboolean missing;
  if (tally_sqlite_step_update (DB (s), st, &missing, "entry", error))
    return TRUE;
  if (missing)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "entry not found");
  return FALSE;
}

static gboolean
sqlite_entries_expired_in_flight (TallyIssuerStore *s,
                                              const guint8 *payee_id,
                                              guint64 horizon,
                                              GPtrArray **rows,
                                              GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_ENTRIES_EXPIRED_IN_FLIGHT);
  tally_sqlite_bind_blob (st, 1, payee_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, horizon);
  return read_entries (s, st, rows, error);
}

/* --- horizon bundles --- */

static gboolean
sqlite_horizon_bundle_get (TallyIssuerStore *s,
                                       const guint8 *register_id,
                                       GBytes **envelope,
                                       GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_HORIZON_BUNDLE_GET);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  return step_bytes (s, st, "horizon bundle", envelope, error);
}

static gboolean
sqlite_horizon_bundle_put (TallyIssuerStore *s,
                                       const guint8 *register_id,
                                       GBytes *envelope,
                                       GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_HORIZON_BUNDLE_PUT);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  tally_sqlite_bind_bytes (st, 2, envelope);
  return tally_sqlite_step_done (DB (s), st, "horizon bundle", error);
}

/* --- fraud proofs --- */

static gboolean
sqlite_fraud_proof_insert (TallyIssuerStore *s,
                                       const TallyIssuerFraudRow *row,
                                       GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_FRAUD_INSERT);
  tally_sqlite_bind_blob (st, 1, row->register_id, TALLY_ID_BYTES);
  sqlite3_bind_int (st, 2, (int) row->kind);
  tally_sqlite_bind_u64 (st, 3, row->detected_at);
  tally_sqlite_bind_bytes (st, 4, row->envelope);
  return tally_sqlite_step_done (DB (s), st, "fraud proof", error);
}

static gboolean
read_fraud_proof (TallyIssuerStore *s, sqlite3_stmt *st, TallyIssuerFraudRow *row, GError **error)
{
  if (!tally_sqlite_column_fixed (DB (s), st, 0, row->register_id, TALLY_ID_BYTES, error))
    return FALSE;
  row->kind = (Tally__FraudKind) sqlite3_column_int (st, 1);
  row->detected_at = tally_sqlite_column_u64 (st, 2);
  row->envelope = tally_sqlite_column_bytes (st, 3);
  return TRUE;
}

static gboolean
sqlite_fraud_proof_list (TallyIssuerStore *s,
                                     const guint8 *register_id,
                                     GPtrArray **rows,
                                     GError **error)
{
  g_autoptr (TallySqliteStmt) st =
    tally_sqlite_stmt (DB (s), register_id ? STMT_FRAUD_LIST_REGISTER : STMT_FRAUD_LIST_ALL);
  if (register_id != NULL)
    tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  return collect (s, st, sizeof (TallyIssuerFraudRow), (TallySqliteRowReader) read_fraud_proof,
                  (GDestroyNotify) tally_issuer_fraud_row_free, "fraud proofs", rows, error);
}

/* --- revocation lists --- */

static gboolean
sqlite_revocation_list_put (TallyIssuerStore *s,
                                        guint64 serial,
                                        guint64 issued_at,
                                        GBytes *envelope,
                                        GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REVOCATION_PUT);
  tally_sqlite_bind_u64 (st, 1, serial);
  tally_sqlite_bind_u64 (st, 2, issued_at);
  tally_sqlite_bind_bytes (st, 3, envelope);
  gboolean exists;
  if (tally_sqlite_step_insert (DB (s), st, &exists, "revocation list", error))
    return TRUE;
  if (exists)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                 "revocation list %" G_GUINT64_FORMAT " exists", serial);
  return FALSE;
}

static gboolean
sqlite_revocation_list_get_latest (TallyIssuerStore *s,
                                               guint64 *serial,
                                               GBytes **envelope,
                                               GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_REVOCATION_LATEST);
  if (!tally_sqlite_step_row (DB (s), st, "revocation list", error))
    return FALSE;
  *serial = tally_sqlite_column_u64 (st, 0);
  *envelope = tally_sqlite_column_bytes (st, 1);
  return TRUE;
}

/* --- totals --- */

static gboolean
sqlite_totals_get (TallyIssuerStore *s, TallyIssuerTotals *totals, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_TOTALS_GET);
  if (!tally_sqlite_step_row (DB (s), st, "totals", error))
    return FALSE;
  totals->issued = sqlite3_column_int64 (st, 0);
  totals->in_flight = sqlite3_column_int64 (st, 1);
  totals->reclaimed_count = tally_sqlite_column_u64 (st, 2);
  totals->reclaimed = sqlite3_column_int64 (st, 3);
  return TRUE;
}

static gboolean
sqlite_totals_put (TallyIssuerStore *s, const TallyIssuerTotals *totals, GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_TOTALS_PUT);
  sqlite3_bind_int64 (st, 1, totals->issued);
  sqlite3_bind_int64 (st, 2, totals->in_flight);
  tally_sqlite_bind_u64 (st, 3, totals->reclaimed_count);
  sqlite3_bind_int64 (st, 4, totals->reclaimed);
  return tally_sqlite_step_done (DB (s), st, "totals", error);
}

static gboolean
sqlite_sums (TallyIssuerStore *s, TallyIssuerSums *sums, GError **error)
{
  if (!query_int64 (s, STMT_SUM_ACCOUNTS, "account sum", &sums->online, error))
    return FALSE;
  {
    g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), STMT_SUM_REGISTERS);
    if (!tally_sqlite_step_row (DB (s), st, "register sum", error))
      return FALSE;
    sums->offline = sqlite3_column_int64 (st, 0);
    sums->registers = (guint) sqlite3_column_int64 (st, 1);
    sums->revoked = (guint) sqlite3_column_int64 (st, 2);
    sums->exposure = sqlite3_column_int64 (st, 3);
    sums->awaiting = sqlite3_column_int64 (st, 4);
    sums->refused = sqlite3_column_int64 (st, 5);
  }
  gint64 count;
  if (!query_int64 (s, STMT_SUM_IN_FLIGHT, "in-flight sum", &sums->in_flight, error) ||
      !query_int64 (s, STMT_COUNT_VIEW_MISMATCH, "view check", &count, error))
    return FALSE;
  sums->views_unbacked = (guint) count;
  if (!query_int64 (s, STMT_COUNT_FRAUD, "fraud proof count", &count, error))
    return FALSE;
  sums->fraud_proofs = (guint) count;
  return TRUE;
}

/* One SUM over @register_id (and @counter, when the statement takes it). */
static gboolean
sum_for (TallyIssuerStore *s,
         StmtId id,
         const guint8 *register_id,
         guint64 counter,
         gint64 *out,
         GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (DB (s), id);
  tally_sqlite_bind_blob (st, 1, register_id, TALLY_ID_BYTES);
  if (sqlite3_bind_parameter_count (st) > 1)
    tally_sqlite_bind_u64 (st, 2, counter);
  return step_int64 (s, st, "evidence", out, error);
}

static gboolean
sqlite_register_evidence (TallyIssuerStore *s,
                                      const guint8 *register_id,
                                      guint64 counter,
                                      TallyIssuerEvidence *evidence,
                                      GError **error)
{
  return sum_for (s, STMT_EVIDENCE_VOUCHERS, register_id, 0, &evidence->vouchers, error) &&
         sum_for (s, STMT_EVIDENCE_RECEIVED, register_id, 0, &evidence->received, error) &&
         sum_for (s, STMT_EVIDENCE_SPENT, register_id, counter, &evidence->spent, error) &&
         sum_for (s, STMT_EVIDENCE_LATE, register_id, 0, &evidence->late, error);
}

/* --- lifetime --- */

static void
sqlite_free (TallyIssuerStore *store)
{
  tally_sqlite_free (DB (store));
  g_free (store);
}

static const TallyIssuerStoreVTable sqlite_vtable = {
  .name = "sqlite",
  .free = sqlite_free,
  .begin = sqlite_begin,
  .commit = sqlite_commit,
  .rollback = sqlite_rollback,
  .meta_get = sqlite_meta_get,
  .meta_set = sqlite_meta_set,
  .meta_list = sqlite_meta_list,
  .meta_delete = sqlite_meta_delete,
  .account_insert = sqlite_account_insert,
  .account_get = sqlite_account_get,
  .account_put = sqlite_account_put,
  .register_get = sqlite_register_get,
  .register_put = sqlite_register_put,
  .register_key = sqlite_register_key,
  .register_list_revoked = sqlite_register_list_revoked,
  .register_list_lost = sqlite_register_list_lost,
  .register_list_flagged = sqlite_register_list_flagged,
  .voucher_next_sequence = sqlite_voucher_next_sequence,
  .voucher_insert = sqlite_voucher_insert,
  .voucher_get = sqlite_voucher_get,
  .entry_get_by_hash = sqlite_entry_get_by_hash,
  .entries_by_counter = sqlite_entries_by_counter,
  .entry_insert = sqlite_entry_insert,
  .entry_update = sqlite_entry_update,
  .entries_expired_in_flight = sqlite_entries_expired_in_flight,
  .horizon_bundle_get = sqlite_horizon_bundle_get,
  .horizon_bundle_put = sqlite_horizon_bundle_put,
  .fraud_proof_insert = sqlite_fraud_proof_insert,
  .fraud_proof_list = sqlite_fraud_proof_list,
  .revocation_list_put = sqlite_revocation_list_put,
  .revocation_list_get_latest = sqlite_revocation_list_get_latest,
  .totals_get = sqlite_totals_get,
  .totals_put = sqlite_totals_put,
  .register_evidence = sqlite_register_evidence,
  .sums = sqlite_sums,
};

TallyIssuerStore *
tally_issuer_store_sqlite_open (const char *path, gboolean create, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);

  if (!create && !g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no issuer database at %s", path);
    return NULL;
  }

  SqliteStore *s = g_new0 (SqliteStore, 1);
  tally_issuer_store_init (&s->parent, &sqlite_vtable);
  s->db = tally_sqlite_open (path, create, 5000, error);
  if (s->db == NULL || !tally_issuer_store_schema_setup (s->db, create, error) ||
      !tally_sqlite_prepare (s->db, stmt_sql, N_STMTS, error)) {
    tally_issuer_store_free (&s->parent);
    return NULL;
  }
  return &s->parent;
}
