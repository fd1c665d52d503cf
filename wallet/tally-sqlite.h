/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The SQLite plumbing shared by the register's soft backend and the
 * issuer's store: opening with the pragmas both rely on, prepared
 * statements, binding and reading columns, stepping, transactions and the
 * schema-version table with its ordered migrations.
 *
 * Rules every caller follows:
 * - A prepared statement is borrowed with tally_sqlite_stmt () into a
 *   g_autoptr (TallySqliteStmt); leaving the scope resets it and clears its
 *   bindings, so a statement is reset after every use, on every path.
 * - tally_sqlite_bind_bytes () binds a NULL GBytes as SQL NULL and a
 *   zero-length one as a zero-length blob, never as NULL;
 *   tally_sqlite_column_bytes () reads SQL NULL back as NULL.
 * - Storage faults are TALLY_ERROR_STORAGE and name the database file.
 */

#include <glib.h>
#include <sqlite3.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallySqlite TallySqlite;

/* Opens @path read-write (with @create, creating it) in WAL mode with
 * synchronous=FULL and foreign keys on. */
TallySqlite *
tally_sqlite_open (const char *path, gboolean create, int busy_timeout_ms, GError **error);
/* Finalizes the statements, rolls back an open transaction and closes. */
void tally_sqlite_free (TallySqlite *db);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySqlite, tally_sqlite_free)

const char *tally_sqlite_path (TallySqlite *db);

/* Set @error and return FALSE: "PATH is corrupt: WHAT". */
gboolean tally_sqlite_corrupt (TallySqlite *db, const char *what, GError **error);

/* Runs @sql, which may hold several statements; @what, when not NULL,
 * names the step in the error. */
gboolean tally_sqlite_exec (TallySqlite *db, const char *sql, const char *what, GError **error);

/* Prepares @n persistent statements; tally_sqlite_stmt () hands out
 * statement @id of @sql. */
gboolean tally_sqlite_prepare (TallySqlite *db, const char *const *sql, guint n, GError **error);

/* A prepared statement borrowed for one call. */
typedef sqlite3_stmt TallySqliteStmt;
void tally_sqlite_stmt_release (TallySqliteStmt *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallySqliteStmt, tally_sqlite_stmt_release)
TallySqliteStmt *tally_sqlite_stmt (TallySqlite *db, guint id);

/* --- binding and reading --- */

/* @data NULL binds SQL NULL. */
void tally_sqlite_bind_blob (sqlite3_stmt *st, int col, const void *data, gsize len);
void tally_sqlite_bind_bytes (sqlite3_stmt *st, int col, GBytes *bytes);
/* @text NULL binds SQL NULL. */
void tally_sqlite_bind_text (sqlite3_stmt *st, int col, const char *text);
/* Unsigned protocol values keep their bits in SQLite's signed integers. */
void tally_sqlite_bind_u64 (sqlite3_stmt *st, int col, guint64 v);

guint64 tally_sqlite_column_u64 (sqlite3_stmt *st, int col);
/* NULL for SQL NULL. */
GBytes *tally_sqlite_column_bytes (sqlite3_stmt *st, int col);
/* A copy of the text, NULL for SQL NULL. */
char *tally_sqlite_column_text (sqlite3_stmt *st, int col);
/* Copies a blob of exactly @len bytes; anything else is corruption. */
gboolean tally_sqlite_column_fixed (TallySqlite *db,
                                    sqlite3_stmt *st,
                                    int col,
                                    guint8 *out,
                                    gsize len,
                                    GError **error);

/* --- stepping --- */

/* Steps a statement that returns no row. */
gboolean
tally_sqlite_step_done (TallySqlite *db, sqlite3_stmt *st, const char *what, GError **error);
/* Steps an INSERT: FALSE with *@exists set and no error when a constraint
 * refused the row, so that the caller names what exists. */
gboolean tally_sqlite_step_insert (TallySqlite *db,
                                   sqlite3_stmt *st,
                                   gboolean *exists,
                                   const char *what,
                                   GError **error);
/* Steps an UPDATE of one row by its key: FALSE with *@missing set and no
 * error when it changed no row (or several), so that the caller names
 * what is missing. */
gboolean tally_sqlite_step_update (TallySqlite *db,
                                   sqlite3_stmt *st,
                                   gboolean *missing,
                                   const char *what,
                                   GError **error);
/* Steps once: TRUE with *@row telling whether a row came, FALSE on a
 * fault. */
gboolean tally_sqlite_step_next (TallySqlite *db,
                                 sqlite3_stmt *st,
                                 gboolean *row,
                                 const char *what,
                                 GError **error);
/* Steps a statement expected to return one row: TALLY_ERROR_NOT_FOUND
 * "WHAT not found" without one. */
gboolean
tally_sqlite_step_row (TallySqlite *db, sqlite3_stmt *st, const char *what, GError **error);

/* Fills the zeroed @row of @row_size bytes from the current row of @st. */
typedef gboolean (*TallySqliteRowReader) (gpointer store,
                                          sqlite3_stmt *st,
                                          gpointer row,
                                          GError **error);

/* Steps a lookup of at most one row: TRUE with *@found telling whether a
 * row came and @read took it into @row, FALSE on a fault. */
gboolean tally_sqlite_lookup (TallySqlite *db,
                              sqlite3_stmt *st,
                              TallySqliteRowReader read,
                              gpointer store,
                              gpointer row,
                              gboolean *found,
                              const char *what,
                              GError **error);

/* Every row of @st, each read by @read into a new zeroed struct; NULL on
 * a fault. */
GPtrArray *tally_sqlite_collect (TallySqlite *db,
                                 sqlite3_stmt *st,
                                 gsize row_size,
                                 TallySqliteRowReader read,
                                 gpointer store,
                                 GDestroyNotify free_row,
                                 const char *what,
                                 GError **error);

/* --- transactions --- */

/* BEGIN IMMEDIATE when @write, else BEGIN DEFERRED. */
gboolean tally_sqlite_begin (TallySqlite *db, gboolean write, GError **error);
/* A failed COMMIT never leaves the transaction open. */
gboolean tally_sqlite_commit (TallySqlite *db, GError **error);
/* Rolls back the open transaction, if any; a failure is only logged. */
void tally_sqlite_rollback (TallySqlite *db);

/* --- schema --- */

/* Reads the single row of table schema_version.  *@exists is FALSE (and
 * *@version 0) when there is no such table; a table without a row is
 * corruption. */
gboolean
tally_sqlite_schema_version (TallySqlite *db, gboolean *exists, gint64 *version, GError **error);

/* Inside the caller's transaction, brings a database at version @from up
 * to @first + @n: migrations[i] takes version @first + i to @first + i + 1;
 * then stores the new version in schema_version.  Refuses a version
 * outside @first..@first + @n. */
gboolean tally_sqlite_migrate (TallySqlite *db,
                               const char *const *migrations,
                               guint n,
                               gint64 first,
                               gint64 from,
                               GError **error);

G_END_DECLS
