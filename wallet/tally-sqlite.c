/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-sqlite.h"

#include <string.h>

struct _TallySqlite
{
  sqlite3 *db;
  char *path;
  sqlite3_stmt **stmts;
  guint n_stmts;
};

/* Set @error and return FALSE: "PATH: WHAT: sqlite message". */
static gboolean
tally_sqlite_fail (TallySqlite *db, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s: %s", db->path, what,
               db->db ? sqlite3_errmsg (db->db) : "database not open");
  return FALSE;
}

gboolean
tally_sqlite_corrupt (TallySqlite *db, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is corrupt: %s", db->path, what);
  return FALSE;
}

gboolean
tally_sqlite_exec (TallySqlite *db, const char *sql, const char *what, GError **error)
{
  char *msg = NULL;
  if (sqlite3_exec (db->db, sql, NULL, NULL, &msg) == SQLITE_OK)
    return TRUE;
  const char *why = msg ? msg : sqlite3_errmsg (db->db);
  if (what != NULL)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s: %s", db->path, what, why);
  else
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s", db->path, why);
  sqlite3_free (msg);
  return FALSE;
}

/* WAL: a crash leaves either the old or the new transaction, and
 * synchronous=FULL makes COMMIT durable before it returns. */
static gboolean
set_pragmas (TallySqlite *db, GError **error)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (db->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
    return tally_sqlite_fail (db, "journal mode", error);
  gboolean wal = sqlite3_step (st) == SQLITE_ROW &&
                 g_ascii_strcasecmp ((const char *) sqlite3_column_text (st, 0), "wal") == 0;
  sqlite3_finalize (st);
  if (!wal)
    return tally_sqlite_fail (db, "cannot enable write-ahead logging", error);

  return tally_sqlite_exec (db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", NULL,
                            error);
}

TallySqlite *
tally_sqlite_open (const char *path, gboolean create, int busy_timeout_ms, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);

  g_autoptr (TallySqlite) db = g_new0 (TallySqlite, 1);
  db->path = g_strdup (path);
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2 (path, &db->db, flags, NULL) != SQLITE_OK) {
    tally_sqlite_fail (db, "cannot open", error);
    return NULL;
  }
  sqlite3_extended_result_codes (db->db, 1);
  sqlite3_busy_timeout (db->db, busy_timeout_ms);
  if (!set_pragmas (db, error))
    return NULL;
  return g_steal_pointer (&db);
}

void
tally_sqlite_free (TallySqlite *db)
{
  if (db == NULL)
    return;
  for (guint i = 0; i < db->n_stmts; i++)
    sqlite3_finalize (db->stmts[i]);
  g_free (db->stmts);
  if (db->db != NULL) {
    if (!sqlite3_get_autocommit (db->db))
      sqlite3_exec (db->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2 (db->db);
  }
  g_free (db->path);
  g_free (db);
}

const char *
tally_sqlite_path (TallySqlite *db)
{
  return db->path;
}

gboolean
tally_sqlite_prepare (TallySqlite *db, const char *const *sql, guint n, GError **error)
{
  g_return_val_if_fail (db->stmts == NULL, FALSE);

  db->stmts = g_new0 (sqlite3_stmt *, n);
  db->n_stmts = n;
  for (guint i = 0; i < n; i++)
    if (sqlite3_prepare_v3 (db->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->stmts[i], NULL) !=
        SQLITE_OK)
      return tally_sqlite_fail (db, "preparing statements", error);
  return TRUE;
}

void
tally_sqlite_stmt_release (TallySqliteStmt *st)
{
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
}

TallySqliteStmt *
tally_sqlite_stmt (TallySqlite *db, guint id)
{
  g_return_val_if_fail (id < db->n_stmts, NULL);
  return db->stmts[id];
}

/* --- binding and reading --- */

void
tally_sqlite_bind_blob (sqlite3_stmt *st, int col, const void *data, gsize len)
{
  sqlite3_bind_blob (st, col, data, (int) len, SQLITE_TRANSIENT);
}

void
tally_sqlite_bind_bytes (sqlite3_stmt *st, int col, GBytes *bytes)
{
  if (bytes == NULL) {
    sqlite3_bind_null (st, col);
    return;
  }
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  /* A zero-length blob must stay a blob, not become NULL. */
  if (len == 0)
    sqlite3_bind_zeroblob (st, col, 0);
  else
    tally_sqlite_bind_blob (st, col, data, len);
}

void
tally_sqlite_bind_text (sqlite3_stmt *st, int col, const char *text)
{
  sqlite3_bind_text (st, col, text, -1, SQLITE_TRANSIENT);
}

void
tally_sqlite_bind_u64 (sqlite3_stmt *st, int col, guint64 v)
{
  sqlite3_bind_int64 (st, col, (sqlite3_int64) v);
}

guint64
tally_sqlite_column_u64 (sqlite3_stmt *st, int col)
{
  return (guint64) sqlite3_column_int64 (st, col);
}

GBytes *
tally_sqlite_column_bytes (sqlite3_stmt *st, int col)
{
  if (sqlite3_column_type (st, col) == SQLITE_NULL)
    return NULL;
  const void *data = sqlite3_column_blob (st, col);
  int len = sqlite3_column_bytes (st, col);
  return g_bytes_new (data, (gsize) len);
}

char *
tally_sqlite_column_text (sqlite3_stmt *st, int col)
{
  return g_strdup ((const char *) sqlite3_column_text (st, col));
}

gboolean
tally_sqlite_column_fixed (TallySqlite *db,
                           sqlite3_stmt *st,
                           int col,
                           guint8 *out,
                           gsize len,
                           GError **error)
{
  if (sqlite3_column_type (st, col) != SQLITE_BLOB ||
      (gsize) sqlite3_column_bytes (st, col) != len) {
    g_autofree char *what =
      g_strdup_printf ("column %s is not %zu bytes", sqlite3_column_name (st, col), len);
    return tally_sqlite_corrupt (db, what, error);
  }
  memcpy (out, sqlite3_column_blob (st, col), len);
  return TRUE;
}

/* --- stepping --- */

gboolean
tally_sqlite_step_done (TallySqlite *db, sqlite3_stmt *st, const char *what, GError **error)
{
  return sqlite3_step (st) == SQLITE_DONE || tally_sqlite_fail (db, what, error);
}

gboolean
tally_sqlite_step_insert (TallySqlite *db,
                          sqlite3_stmt *st,
                          gboolean *exists,
                          const char *what,
                          GError **error)
{
  *exists = FALSE;
  if (sqlite3_step (st) == SQLITE_DONE)
    return TRUE;
  if ((sqlite3_extended_errcode (db->db) & 0xff) == SQLITE_CONSTRAINT) {
    *exists = TRUE;
    return FALSE;
  }
  return tally_sqlite_fail (db, what, error);
}

gboolean
tally_sqlite_step_update (TallySqlite *db,
                          sqlite3_stmt *st,
                          gboolean *missing,
                          const char *what,
                          GError **error)
{
  *missing = FALSE;
  if (!tally_sqlite_step_done (db, st, what, error))
    return FALSE;
  *missing = sqlite3_changes (db->db) != 1;
  return !*missing;
}

gboolean
tally_sqlite_step_next (TallySqlite *db,
                        sqlite3_stmt *st,
                        gboolean *row,
                        const char *what,
                        GError **error)
{
  int rc = sqlite3_step (st);
  *row = rc == SQLITE_ROW;
  return rc == SQLITE_ROW || rc == SQLITE_DONE || tally_sqlite_fail (db, what, error);
}

gboolean
tally_sqlite_step_row (TallySqlite *db, sqlite3_stmt *st, const char *what, GError **error)
{
  gboolean row;
  if (!tally_sqlite_step_next (db, st, &row, what, error))
    return FALSE;
  if (!row)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "%s not found", what);
  return row;
}

gboolean
tally_sqlite_lookup (TallySqlite *db,
                     sqlite3_stmt *st,
                     TallySqliteRowReader read,
                     gpointer store,
                     gpointer row,
                     gboolean *found,
                     const char *what,
                     GError **error)
{
  gboolean have;
  *found = FALSE;
  if (!tally_sqlite_step_next (db, st, &have, what, error))
    return FALSE;
  return !have || (*found = read (store, st, row, error));
}

GPtrArray *
tally_sqlite_collect (TallySqlite *db,
                      sqlite3_stmt *st,
                      gsize row_size,
                      TallySqliteRowReader read,
                      gpointer store,
                      GDestroyNotify free_row,
                      const char *what,
                      GError **error)
{
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func (free_row);
  int rc;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
    gpointer row = g_malloc0 (row_size);
    g_ptr_array_add (rows, row);
    if (!read (store, st, row, error))
      return NULL;
  }
  if (rc != SQLITE_DONE) {
    tally_sqlite_fail (db, what, error);
    return NULL;
  }
  return g_steal_pointer (&rows);
}

/* --- transactions --- */

gboolean
tally_sqlite_begin (TallySqlite *db, gboolean write, GError **error)
{
  return tally_sqlite_exec (db, write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED", "begin", error);
}

gboolean
tally_sqlite_commit (TallySqlite *db, GError **error)
{
  if (tally_sqlite_exec (db, "COMMIT", "commit", error))
    return TRUE;
  /* A failed COMMIT may leave the transaction open; never leave it so. */
  tally_sqlite_rollback (db);
  return FALSE;
}

void
tally_sqlite_rollback (TallySqlite *db)
{
  /* A failed COMMIT may already have rolled back. */
  if (sqlite3_get_autocommit (db->db))
    return;
  g_autoptr (GError) error = NULL;
  if (!tally_sqlite_exec (db, "ROLLBACK", "rollback failed", &error))
    g_warning ("%s", error->message);
}

/* --- schema --- */

/* Runs the one-column query @sql once: *@row tells whether a row came. */
static gboolean
query_int64 (TallySqlite *db,
             const char *sql,
             gboolean *row,
             gint64 *value,
             const char *what,
             GError **error)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (db->db, sql, -1, &st, NULL) != SQLITE_OK)
    return tally_sqlite_fail (db, what, error);
  gboolean ok = tally_sqlite_step_next (db, st, row, what, error);
  if (ok && *row)
    *value = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return ok;
}

gboolean
tally_sqlite_schema_version (TallySqlite *db, gboolean *exists, gint64 *version, GError **error)
{
  gboolean row = FALSE;
  gint64 tables = 0;
  *exists = FALSE;
  *version = 0;
  if (!query_int64 (db,
                    "SELECT COUNT(*) FROM sqlite_master "
                    "WHERE type = 'table' AND name = 'schema_version'",
                    &row, &tables, "schema", error))
    return FALSE;
  *exists = row && tables > 0;
  if (!*exists)
    return TRUE;
  if (!query_int64 (db, "SELECT version FROM schema_version", &row, version,
                    "reading the schema version", error))
    return FALSE;
  return row || tally_sqlite_corrupt (db, "no schema version", error);
}

gboolean
tally_sqlite_migrate (TallySqlite *db,
                      const char *const *migrations,
                      guint n,
                      gint64 first,
                      gint64 from,
                      GError **error)
{
  gint64 latest = first + (gint64) n;
  if (from < first || from > latest) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "%s has schema version %" G_GINT64_FORMAT ", this build knows %" G_GINT64_FORMAT
                 "..%" G_GINT64_FORMAT,
                 db->path, from, first, latest);
    return FALSE;
  }
  for (gint64 v = from; v < latest; v++) {
    g_autofree char *what =
      g_strdup_printf ("migrating schema to version %" G_GINT64_FORMAT, v + 1);
    if (!tally_sqlite_exec (db, migrations[v - first], what, error))
      return FALSE;
    g_info ("%s: schema migrated to version %" G_GINT64_FORMAT, db->path, v + 1);
  }
  if (from == latest)
    return TRUE;
  g_autofree char *sql =
    g_strdup_printf ("UPDATE schema_version SET version = %" G_GINT64_FORMAT, latest);
  return tally_sqlite_exec (db, sql, "schema", error);
}
