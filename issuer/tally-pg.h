/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The libpq plumbing of the issuer's PostgreSQL store
 * (tally-issuer-store-pg.c): connecting, prepared statements, binary
 * parameters and results, and errors.
 *
 * Rules every caller follows:
 * - Values travel only as parameters of prepared statements, in binary
 *   format; no SQL text is ever built from a value.
 * - Results come back in binary format; a column of the wrong type or
 *   length is corruption, never read as something else.
 * - Every failure is TALLY_ERROR_STORAGE and carries the server's message
 *   and SQLSTATE; connection settings, which may hold a password, never
 *   appear in an error.
 * - Unsigned protocol values keep their bits in int8, as in SQLite.
 */

#include <glib.h>
#include <libpq-fe.h>

#include "tally-core.h"

G_BEGIN_DECLS

typedef struct _TallyPg TallyPg;

/* Connects with the libpq connection string @conninfo. */
TallyPg *tally_pg_connect (const char *conninfo, GError **error);
void tally_pg_free (TallyPg *db);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyPg, tally_pg_free)

/* When the server dropped the connection (a restart, an administrator's
 * pg_terminate_backend ()), connects again with the same settings and
 * prepares the statements again; TRUE at once while connected.  Call it
 * only outside a transaction: what an open one did is lost with it. */
gboolean tally_pg_reconnect_if_lost (TallyPg *db, GError **error);
gboolean tally_pg_connected (TallyPg *db);

/* "PostgreSQL database NAME": what errors name. */
const char *tally_pg_name (TallyPg *db);

/* Set @error and return FALSE: "NAME is corrupt: WHAT". */
gboolean tally_pg_corrupt (TallyPg *db, const char *what, GError **error);

/* Runs @sql, which takes no parameter and may hold several statements;
 * @what names the step in the error. */
gboolean tally_pg_exec (TallyPg *db, const char *sql, const char *what, GError **error);

/* --- transactions --- */

/* BEGIN at READ COMMITTED. */
gboolean tally_pg_begin (TallyPg *db, GError **error);
/* COMMIT; a transaction the server had already aborted (COMMIT answered
 * with ROLLBACK) is a failure.  A failed COMMIT never leaves the
 * transaction open. */
gboolean tally_pg_commit (TallyPg *db, GError **error);
/* Rolls back the open transaction, if any; a failure is only logged. */
void tally_pg_rollback (TallyPg *db);

/* Runs @sql, which takes no parameter and returns at most one row of one
 * int8 column: *@found tells whether a row came.  For the schema setup,
 * before the statements can be prepared. */
gboolean tally_pg_query_int8 (TallyPg *db,
                              const char *sql,
                              const char *what,
                              gboolean *found,
                              gint64 *value,
                              GError **error);

/* Prepares @n statements named by their index; tally_pg_run () runs
 * statement @id of @sql. */
gboolean tally_pg_prepare (TallyPg *db, const char *const *sql, guint n, GError **error);

/* --- parameters --- */

#define TALLY_PG_MAX_PARAMS 24

typedef struct
{
  int n;
  const char *values[TALLY_PG_MAX_PARAMS];
  int lengths[TALLY_PG_MAX_PARAMS];
  int formats[TALLY_PG_MAX_PARAMS];
  guint8 scalars[TALLY_PG_MAX_PARAMS][8];
} TallyPgParams;

/* Each appends the next parameter ($1, $2, ...). */
void tally_pg_param_int8 (TallyPgParams *p, gint64 v);
void tally_pg_param_u64 (TallyPgParams *p, guint64 v);
void tally_pg_param_int4 (TallyPgParams *p, gint32 v);
void tally_pg_param_bool (TallyPgParams *p, gboolean v);
/* @data NULL is SQL NULL; the data must outlive the call. */
void tally_pg_param_blob (TallyPgParams *p, const void *data, gsize len);
/* NULL is SQL NULL, a zero-length GBytes a zero-length bytea. */
void tally_pg_param_bytes (TallyPgParams *p, GBytes *bytes);
/* NULL is SQL NULL. */
void tally_pg_param_text (TallyPgParams *p, const char *text);

/* --- running --- */

/* Runs prepared statement @id; NULL on a fault.  The result holds rows
 * (PGRES_TUPLES_OK) or none (PGRES_COMMAND_OK). */
PGresult *
tally_pg_run (TallyPg *db, guint id, const TallyPgParams *p, const char *what, GError **error);
/* Rows a statement changed (INSERT, UPDATE). */
guint64 tally_pg_changed (PGresult *r);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (PGresult, PQclear)

/* --- reading a binary result --- */

gboolean tally_pg_is_null (PGresult *r, int row, int col);
gboolean
tally_pg_get_int8 (TallyPg *db, PGresult *r, int row, int col, gint64 *out, GError **error);
gboolean
tally_pg_get_u64 (TallyPg *db, PGresult *r, int row, int col, guint64 *out, GError **error);
gboolean
tally_pg_get_int4 (TallyPg *db, PGresult *r, int row, int col, gint32 *out, GError **error);
gboolean
tally_pg_get_bool (TallyPg *db, PGresult *r, int row, int col, gboolean *out, GError **error);
/* Copies a bytea of exactly @len bytes. */
gboolean tally_pg_get_fixed (TallyPg *db,
                             PGresult *r,
                             int row,
                             int col,
                             guint8 *out,
                             gsize len,
                             GError **error);
/* A bytea, or text copied with a terminating NUL: *@out NULL for SQL
 * NULL when @nullable, corruption otherwise. */
gboolean tally_pg_get_bytes (TallyPg *db,
                             PGresult *r,
                             int row,
                             int col,
                             gboolean nullable,
                             GBytes **out,
                             GError **error);
gboolean tally_pg_get_text (TallyPg *db,
                            PGresult *r,
                            int row,
                            int col,
                            gboolean nullable,
                            char **out,
                            GError **error);

G_END_DECLS
