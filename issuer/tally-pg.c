/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-pg.h"

#include <string.h>

/* Type OIDs of the columns read (src/include/catalog/pg_type.dat). */
enum
{
  OID_BOOL = 16,
  OID_BYTEA = 17,
  OID_INT8 = 20,
  OID_INT4 = 23,
  OID_TEXT = 25,
};

struct _TallyPg
{
  PGconn *conn;
  char *name;
  const char *const *sql; /* the prepared statements, to prepare again */
  guint n_stmts;
};

const char *
tally_pg_name (TallyPg *db)
{
  return db->name;
}

gboolean
tally_pg_corrupt (TallyPg *db, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is corrupt: %s", db->name, what);
  return FALSE;
}

/* libpq's messages end in a newline; errors here do not. */
static char *
chomp (const char *message)
{
  char *s = g_strdup (message != NULL && *message != '\0' ? message : "unknown error");
  return g_strchomp (s);
}

/* "NAME: WHAT: server message (SQLSTATE XXXXX)" from a failed result, or
 * from the connection when there is no result. */
static gboolean
fail (TallyPg *db, PGresult *r, const char *what, GError **error)
{
  const char *primary = r != NULL ? PQresultErrorField (r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *state = r != NULL ? PQresultErrorField (r, PG_DIAG_SQLSTATE) : NULL;
  g_autofree char *message = chomp (primary != NULL ? primary : PQerrorMessage (db->conn));
  if (state != NULL)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s: %s (SQLSTATE %s)", db->name,
                 what, message, state);
  else
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s: %s", db->name, what, message);
  return FALSE;
}

static gboolean
session_setup (TallyPg *db, GError **error)
{
  /* Amounts are exact integers and times are seconds: nothing depends on
   * the session's locale or time zone.  Notices are for the server log,
   * not our stderr. */
  return tally_pg_exec (db, "SET client_min_messages = error", "session setup", error);
}

TallyPg *
tally_pg_connect (const char *conninfo, GError **error)
{
  g_return_val_if_fail (conninfo != NULL, NULL);

  /* Parse first: a malformed string is refused without echoing it, since
   * it may hold a password. */
  char *parse_error = NULL;
  PQconninfoOption *options = PQconninfoParse (conninfo, &parse_error);
  if (options == NULL) {
    g_autofree char *message = chomp (parse_error);
    PQfreemem (parse_error);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "invalid PostgreSQL connection string: %s", message);
    return NULL;
  }
  PQconninfoFree (options);

  g_autoptr (TallyPg) db = g_new0 (TallyPg, 1);
  db->conn = PQconnectdb (conninfo);
  if (db->conn == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "cannot connect to PostgreSQL: out of memory");
    return NULL;
  }
  if (PQstatus (db->conn) != CONNECTION_OK) {
    g_autofree char *message = chomp (PQerrorMessage (db->conn));
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot connect to PostgreSQL: %s",
                 message);
    return NULL;
  }
  db->name = g_strdup_printf ("PostgreSQL database \"%s\"", PQdb (db->conn));
  return session_setup (db, error) ? g_steal_pointer (&db) : NULL;
}

void
tally_pg_free (TallyPg *db)
{
  if (db == NULL)
    return;
  if (db->conn != NULL)
    PQfinish (db->conn); /* an open transaction is rolled back by the server */
  g_free (db->name);
  g_free (db);
}

gboolean
tally_pg_exec (TallyPg *db, const char *sql, const char *what, GError **error)
{
  g_autoptr (PGresult) r = PQexec (db->conn, sql);
  ExecStatusType status = r != NULL ? PQresultStatus (r) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return TRUE;
  return fail (db, r, what, error);
}

gboolean
tally_pg_begin (TallyPg *db, GError **error)
{
  return tally_pg_exec (db, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin", error);
}

gboolean
tally_pg_commit (TallyPg *db, GError **error)
{
  g_autoptr (PGresult) r = PQexec (db->conn, "COMMIT");
  if (r != NULL && PQresultStatus (r) == PGRES_COMMAND_OK &&
      g_str_equal (PQcmdStatus (r), "COMMIT"))
    return TRUE;
  if (r != NULL && PQresultStatus (r) == PGRES_COMMAND_OK)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "%s: commit: the server had aborted the transaction", db->name);
  else
    fail (db, r, "commit", error);
  tally_pg_rollback (db);
  return FALSE;
}

void
tally_pg_rollback (TallyPg *db)
{
  if (PQtransactionStatus (db->conn) == PQTRANS_IDLE)
    return;
  g_autoptr (GError) error = NULL;
  if (!tally_pg_exec (db, "ROLLBACK", "rollback", &error))
    g_warning ("%s", error->message);
}

gboolean
tally_pg_query_int8 (TallyPg *db,
                     const char *sql,
                     const char *what,
                     gboolean *found,
                     gint64 *value,
                     GError **error)
{
  g_autoptr (PGresult) r = PQexecParams (db->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
  if (r == NULL || PQresultStatus (r) != PGRES_TUPLES_OK)
    return fail (db, r, what, error);
  if (PQntuples (r) > 1 || PQnfields (r) != 1)
    return tally_pg_corrupt (db, what, error);
  *found = PQntuples (r) == 1;
  *value = 0;
  return !*found || tally_pg_get_int8 (db, r, 0, 0, value, error);
}

gboolean
tally_pg_connected (TallyPg *db)
{
  return PQstatus (db->conn) == CONNECTION_OK;
}

gboolean
tally_pg_reconnect_if_lost (TallyPg *db, GError **error)
{
  if (tally_pg_connected (db))
    return TRUE;
  g_message ("%s: the server closed the connection; connecting again", db->name);
  PQreset (db->conn);
  if (!tally_pg_connected (db)) {
    g_autofree char *message = chomp (PQerrorMessage (db->conn));
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: cannot connect again: %s", db->name,
                 message);
    return FALSE;
  }
  return session_setup (db, error) && tally_pg_prepare (db, db->sql, db->n_stmts, error);
}

gboolean
tally_pg_prepare (TallyPg *db, const char *const *sql, guint n, GError **error)
{
  for (guint i = 0; i < n; i++) {
    char name[16];
    g_snprintf (name, sizeof name, "s%u", i);
    g_autoptr (PGresult) r = PQprepare (db->conn, name, sql[i], 0, NULL);
    if (r == NULL || PQresultStatus (r) != PGRES_COMMAND_OK) {
      g_autofree char *what = g_strdup_printf ("preparing statement %u", i);
      return fail (db, r, what, error);
    }
  }
  db->sql = sql;
  db->n_stmts = n;
  return TRUE;
}

/* --- parameters --- */

static void
param_scalar (TallyPgParams *p, guint64 be, int len)
{
  g_return_if_fail (p->n < TALLY_PG_MAX_PARAMS);
  memcpy (p->scalars[p->n], (const guint8 *) &be + (8 - len), (gsize) len);
  p->values[p->n] = (const char *) p->scalars[p->n];
  p->lengths[p->n] = len;
  p->formats[p->n] = 1;
  p->n++;
}

void
tally_pg_param_int8 (TallyPgParams *p, gint64 v)
{
  param_scalar (p, GUINT64_TO_BE ((guint64) v), 8);
}

void
tally_pg_param_u64 (TallyPgParams *p, guint64 v)
{
  param_scalar (p, GUINT64_TO_BE (v), 8);
}

void
tally_pg_param_int4 (TallyPgParams *p, gint32 v)
{
  /* The low four bytes of the big-endian eight are the int4. */
  param_scalar (p, GUINT64_TO_BE ((guint64) (guint32) v), 4);
}

void
tally_pg_param_bool (TallyPgParams *p, gboolean v)
{
  param_scalar (p, GUINT64_TO_BE (v ? 1 : 0), 1);
}

void
tally_pg_param_blob (TallyPgParams *p, const void *data, gsize len)
{
  g_return_if_fail (p->n < TALLY_PG_MAX_PARAMS);
  g_return_if_fail (len <= G_MAXINT);
  /* A zero-length value is not NULL: point at something. */
  p->values[p->n] = data != NULL ? (len > 0 ? data : "") : NULL;
  p->lengths[p->n] = (int) len;
  p->formats[p->n] = 1;
  p->n++;
}

void
tally_pg_param_bytes (TallyPgParams *p, GBytes *bytes)
{
  if (bytes == NULL) {
    tally_pg_param_blob (p, NULL, 0);
    return;
  }
  gsize len;
  const void *data = g_bytes_get_data (bytes, &len);
  tally_pg_param_blob (p, data != NULL ? data : "", len);
}

void
tally_pg_param_text (TallyPgParams *p, const char *text)
{
  tally_pg_param_blob (p, text, text != NULL ? strlen (text) : 0);
}

/* --- running --- */

PGresult *
tally_pg_run (TallyPg *db, guint id, const TallyPgParams *p, const char *what, GError **error)
{
  g_return_val_if_fail (id < db->n_stmts, NULL);

  char name[16];
  g_snprintf (name, sizeof name, "s%u", id);
  PGresult *r = PQexecPrepared (db->conn, name, p != NULL ? p->n : 0, p != NULL ? p->values : NULL,
                                p != NULL ? p->lengths : NULL, p != NULL ? p->formats : NULL,
                                1 /* binary results */);
  ExecStatusType status = r != NULL ? PQresultStatus (r) : PGRES_FATAL_ERROR;
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
    return r;
  fail (db, r, what, error);
  PQclear (r);
  return NULL;
}

guint64
tally_pg_changed (PGresult *r)
{
  return g_ascii_strtoull (PQcmdTuples (r), NULL, 10);
}

/* --- reading --- */

gboolean
tally_pg_is_null (PGresult *r, int row, int col)
{
  return PQgetisnull (r, row, col) != 0;
}

/* The value at (@row, @col) when it is a non-NULL @type of @len bytes
 * (@len < 0: any length); corruption otherwise. */
static const guint8 *
value_of (TallyPg *db, PGresult *r, int row, int col, Oid type, int len, GError **error)
{
  if (col >= PQnfields (r) || PQftype (r, col) != type || PQfformat (r, col) != 1) {
    g_autofree char *what = g_strdup_printf ("column %d has an unexpected type", col);
    tally_pg_corrupt (db, what, error);
    return NULL;
  }
  if (PQgetisnull (r, row, col) || (len >= 0 && PQgetlength (r, row, col) != len)) {
    g_autofree char *what = g_strdup_printf ("column %d is NULL or of a wrong length", col);
    tally_pg_corrupt (db, what, error);
    return NULL;
  }
  return (const guint8 *) PQgetvalue (r, row, col);
}

gboolean
tally_pg_get_int8 (TallyPg *db, PGresult *r, int row, int col, gint64 *out, GError **error)
{
  guint64 v;
  if (!tally_pg_get_u64 (db, r, row, col, &v, error))
    return FALSE;
  *out = (gint64) v;
  return TRUE;
}

gboolean
tally_pg_get_u64 (TallyPg *db, PGresult *r, int row, int col, guint64 *out, GError **error)
{
  const guint8 *v = value_of (db, r, row, col, OID_INT8, 8, error);
  if (v == NULL)
    return FALSE;
  guint64 be;
  memcpy (&be, v, sizeof be);
  *out = GUINT64_FROM_BE (be);
  return TRUE;
}

gboolean
tally_pg_get_int4 (TallyPg *db, PGresult *r, int row, int col, gint32 *out, GError **error)
{
  const guint8 *v = value_of (db, r, row, col, OID_INT4, 4, error);
  if (v == NULL)
    return FALSE;
  guint32 be;
  memcpy (&be, v, sizeof be);
  *out = (gint32) GUINT32_FROM_BE (be);
  return TRUE;
}

gboolean
tally_pg_get_bool (TallyPg *db, PGresult *r, int row, int col, gboolean *out, GError **error)
{
  const guint8 *v = value_of (db, r, row, col, OID_BOOL, 1, error);
  if (v == NULL)
    return FALSE;
  *out = v[0] != 0;
  return TRUE;
}

gboolean
tally_pg_get_fixed (TallyPg *db,
                    PGresult *r,
                    int row,
                    int col,
                    guint8 *out,
                    gsize len,
                    GError **error)
{
  const guint8 *v = value_of (db, r, row, col, OID_BYTEA, (int) len, error);
  if (v == NULL)
    return FALSE;
  memcpy (out, v, len);
  return TRUE;
}

/* A variable-length value of @type at (@row, @col) into *@value and
 * *@len; *@value NULL for an SQL NULL that @nullable allows. */
static gboolean
varlena_of (TallyPg *db,
            PGresult *r,
            int row,
            int col,
            Oid type,
            gboolean nullable,
            const char **value,
            gsize *len,
            GError **error)
{
  *value = NULL;
  *len = 0;
  if (PQgetisnull (r, row, col) && nullable && col < PQnfields (r) && PQftype (r, col) == type)
    return TRUE;
  const guint8 *v = value_of (db, r, row, col, type, -1, error);
  if (v == NULL)
    return FALSE;
  *value = (const char *) v;
  *len = (gsize) PQgetlength (r, row, col);
  return TRUE;
}

gboolean
tally_pg_get_bytes (TallyPg *db,
                    PGresult *r,
                    int row,
                    int col,
                    gboolean nullable,
                    GBytes **out,
                    GError **error)
{
  const char *value;
  gsize len;
  if (!varlena_of (db, r, row, col, OID_BYTEA, nullable, &value, &len, error))
    return FALSE;
  *out = value != NULL ? g_bytes_new (value, len) : NULL;
  return TRUE;
}

gboolean
tally_pg_get_text (TallyPg *db,
                   PGresult *r,
                   int row,
                   int col,
                   gboolean nullable,
                   char **out,
                   GError **error)
{
  const char *value;
  gsize len;
  if (!varlena_of (db, r, row, col, OID_TEXT, nullable, &value, &len, error))
    return FALSE;
  if (value != NULL && memchr (value, '\0', len) != NULL)
    return tally_pg_corrupt (db, "text with a NUL byte", error);
  *out = value != NULL ? g_strndup (value, len) : NULL;
  return TRUE;
}
