/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The soft register backend: state in SQLite ("register.db", WAL,
 * synchronous=FULL), the Ed25519 key in a 0600 file ("register.key") and,
 * once loaded, in guarded memory that is inaccessible between signatures.
 */
#include "tally-register-backend.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "tally-hex.h"
#include "tally-keyfile.h"

#define DB_NAME  "register.db"
#define KEY_NAME "register.key"

/* A register belongs to one process; waiting longer only hides a second
 * writer that should not exist. */
#define BUSY_TIMEOUT_MS 1000

/* migrations[i] takes the schema from version i to i + 1.  Append only. */
static const char *const migrations[] = {
  /* 0 -> 1 */
  "CREATE TABLE register_state ("
  "  id INTEGER PRIMARY KEY CHECK (id = 1),"
  "  public_key BLOB NOT NULL CHECK (length (public_key) = 32),"
  "  issuer_key BLOB NOT NULL CHECK (length (issuer_key) = 32),"
  "  certificate BLOB,"
  "  balance INTEGER NOT NULL CHECK (balance BETWEEN 0 AND 9007199254740992),"
  "  counter INTEGER NOT NULL CHECK (counter >= 0),"
  "  chain_head BLOB NOT NULL CHECK (length (chain_head) = 32),"
  "  offline_payments INTEGER NOT NULL CHECK (offline_payments >= 0),"
  "  last_reconciliation INTEGER NOT NULL,"
  "  last_voucher_sequence INTEGER NOT NULL,"
  "  revocation_list BLOB,"
  "  revocation_serial INTEGER NOT NULL,"
  "  revocation_issued_at INTEGER NOT NULL,"
  "  last_result_at INTEGER NOT NULL,"
  "  closed INTEGER NOT NULL CHECK (closed IN (0, 1)),"
  "  revoked INTEGER NOT NULL CHECK (revoked IN (0, 1))"
  ") STRICT;"
  "CREATE TABLE spent ("
  "  counter INTEGER PRIMARY KEY CHECK (counter > 0),"
  "  kind TEXT NOT NULL CHECK (kind IN ('permission', 'defund')),"
  "  envelope BLOB NOT NULL,"
  "  payee_id BLOB CHECK (payee_id IS NULL OR length (payee_id) = 16),"
  "  payee_key BLOB CHECK (payee_key IS NULL OR length (payee_key) = 32),"
  "  amount INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740992),"
  "  created_at INTEGER NOT NULL,"
  "  receipt BLOB,"
  "  state TEXT NOT NULL CHECK (state IN ('pending', 'acknowledged', 'settled')),"
  "  CHECK ((kind = 'permission') = (payee_id IS NOT NULL AND payee_key IS NOT NULL))"
  ") STRICT;"
  "CREATE TABLE nonces ("
  "  nonce BLOB PRIMARY KEY CHECK (length (nonce) = 32),"
  "  amount INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740992),"
  "  currency TEXT NOT NULL,"
  "  memo TEXT NOT NULL,"
  "  created_at INTEGER NOT NULL,"
  "  consumed_at INTEGER"
  ") STRICT;"
  "CREATE TABLE received ("
  "  payer_id BLOB NOT NULL CHECK (length (payer_id) = 16),"
  "  payer_counter INTEGER NOT NULL,"
  "  permission BLOB NOT NULL,"
  "  payer_certificate BLOB NOT NULL,"
  "  receipt BLOB NOT NULL,"
  "  amount INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740992),"
  "  memo TEXT NOT NULL,"
  "  received_at INTEGER NOT NULL,"
  "  permission_hash BLOB NOT NULL UNIQUE CHECK (length (permission_hash) = 32),"
  "  nonce BLOB NOT NULL UNIQUE REFERENCES nonces (nonce),"
  "  state TEXT NOT NULL CHECK (state IN ('acknowledged', 'settled')),"
  "  PRIMARY KEY (payer_id, payer_counter)"
  ") STRICT;"
  "CREATE TABLE loads ("
  "  sequence INTEGER PRIMARY KEY,"
  "  envelope BLOB NOT NULL,"
  "  amount INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740992),"
  "  applied_at INTEGER NOT NULL,"
  "  state TEXT NOT NULL CHECK (state IN ('acknowledged', 'settled'))"
  ") STRICT;",
  /* 1 -> 2: certificate cache, so a returning payer sends only a hash. */
  "CREATE TABLE certificates ("
  "  hash BLOB PRIMARY KEY CHECK (length (hash) = 32),"
  "  envelope BLOB NOT NULL,"
  "  not_after INTEGER NOT NULL"
  ") STRICT;"
  "CREATE TABLE peers ("
  "  peer_id BLOB PRIMARY KEY CHECK (length (peer_id) = 16),"
  "  our_certificate BLOB NOT NULL CHECK (length (our_certificate) = 32)"
  ") STRICT;",
  /* 2 -> 3: expiring requests and permissions (protocol 4.4): the
   * horizon a payee reconciled past, request and permission expiry, and
   * spent entries the issuer gave back ('reclaimed'). */
  "ALTER TABLE register_state ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE nonces ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
  "CREATE TABLE spent_v3 ("
  "  counter INTEGER PRIMARY KEY CHECK (counter > 0),"
  "  kind TEXT NOT NULL CHECK (kind IN ('permission', 'defund')),"
  "  envelope BLOB NOT NULL,"
  "  payee_id BLOB CHECK (payee_id IS NULL OR length (payee_id) = 16),"
  "  payee_key BLOB CHECK (payee_key IS NULL OR length (payee_key) = 32),"
  "  amount INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740992),"
  "  created_at INTEGER NOT NULL,"
  "  receipt BLOB,"
  "  state TEXT NOT NULL"
  "    CHECK (state IN ('pending', 'acknowledged', 'settled', 'reclaimed')),"
  "  expires_at INTEGER NOT NULL DEFAULT 0,"
  "  CHECK ((kind = 'permission') = (payee_id IS NOT NULL AND payee_key IS NOT NULL))"
  ") STRICT;"
  "INSERT INTO spent_v3 (counter, kind, envelope, payee_id, payee_key, amount, created_at,"
  "                      receipt, state)"
  "  SELECT counter, kind, envelope, payee_id, payee_key, amount, created_at, receipt, state"
  "  FROM spent;"
  "DROP TABLE spent;"
  "ALTER TABLE spent_v3 RENAME TO spent;"
  "CREATE INDEX spent_by_payee ON spent (payee_id, state);",
  /* 3 -> 4: the certificate a permission travelled with, which is the one
   * its payee caches. */
  "ALTER TABLE spent ADD COLUMN certificate_hash BLOB"
  "  CHECK (certificate_hash IS NULL OR length (certificate_hash) = 32);",
};

#define SCHEMA_VERSION ((gint64) G_N_ELEMENTS (migrations))

typedef enum
{
  STMT_STATE_READ,
  STMT_STATE_INSERT,
  STMT_STATE_WRITE,
  STMT_SPENT_INSERT,
  STMT_SPENT_LOOKUP,
  STMT_SPENT_SET_RECEIPT,
  STMT_SPENT_SETTLE_THROUGH,
  STMT_SPENT_UNSETTLED,
  STMT_SPENT_SET_STATE,
  STMT_SPENT_PENDING,
  STMT_RECEIVED_INSERT,
  STMT_RECEIVED_FIND,
  STMT_RECEIVED_SETTLE,
  STMT_RECEIVED_UNSETTLED,
  STMT_RECEIVED_RECEIPT,
  STMT_NONCE_INSERT,
  STMT_NONCE_LOOKUP,
  STMT_NONCE_CONSUME,
  STMT_NONCE_LIST,
  STMT_LOAD_INSERT,
  STMT_LOADS_SETTLE,
  STMT_LOADS_UNSETTLED,
  STMT_HISTORY,
  STMT_CERTIFICATE_PUT,
  STMT_CERTIFICATE_GET,
  STMT_PEER_PUT,
  STMT_PEER_GET,
  N_STMTS
} StmtId;

#define STATE_COLUMNS                                                                              \
  "public_key, issuer_key, certificate, balance, counter, chain_head, offline_payments, "          \
  "last_reconciliation, last_voucher_sequence, revocation_list, revocation_serial, "              \
  "revocation_issued_at, last_result_at, closed, revoked, horizon"
#define SPENT_COLUMNS                                                                              \
  "counter, kind, envelope, payee_id, payee_key, amount, created_at, receipt, state, expires_at, " \
  "certificate_hash"
#define RECEIVED_COLUMNS                                                                           \
  "payer_id, payer_counter, permission, payer_certificate, receipt, amount, memo, received_at, "  \
  "permission_hash, nonce, state"
#define NONCE_COLUMNS "nonce, amount, currency, memo, created_at, consumed_at, expires_at"
#define LOAD_COLUMNS  "sequence, envelope, amount, applied_at, state"

static const char *const stmt_sql[N_STMTS] = {
  [STMT_STATE_READ] = "SELECT " STATE_COLUMNS " FROM register_state WHERE id = 1",
  [STMT_STATE_INSERT] = "INSERT INTO register_state (id, " STATE_COLUMNS ")"
                        " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  [STMT_STATE_WRITE] =
    "UPDATE register_state SET public_key = ?, issuer_key = ?, certificate = ?, balance = ?,"
    " counter = ?, chain_head = ?, offline_payments = ?, last_reconciliation = ?,"
    " last_voucher_sequence = ?, revocation_list = ?, revocation_serial = ?,"
    " revocation_issued_at = ?, last_result_at = ?, closed = ?, revoked = ?, horizon = ?"
    " WHERE id = 1",
  [STMT_SPENT_INSERT] = "INSERT INTO spent (" SPENT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  [STMT_SPENT_LOOKUP] = "SELECT " SPENT_COLUMNS " FROM spent WHERE counter = ?",
  [STMT_SPENT_SET_RECEIPT] = "UPDATE spent SET receipt = ?, state = ? WHERE counter = ?",
  /* A permission without a receipt is in flight until the issuer hands
   * back the payee's receipt or reclaims it: it stays unsettled. */
  [STMT_SPENT_SETTLE_THROUGH] =
    "UPDATE spent SET state = 'settled' WHERE counter <= ?"
    " AND state IN ('pending', 'acknowledged') AND (kind = 'defund' OR receipt IS NOT NULL)",
  [STMT_SPENT_UNSETTLED] = "SELECT " SPENT_COLUMNS " FROM spent"
                           " WHERE state IN ('pending', 'acknowledged') ORDER BY counter",
  [STMT_SPENT_SET_STATE] = "UPDATE spent SET state = ? WHERE counter = ?",
  [STMT_SPENT_PENDING] = "SELECT " SPENT_COLUMNS " FROM spent"
                         " WHERE payee_id = ? AND state = 'pending' AND kind = 'permission'"
                         " AND expires_at > ? ORDER BY counter LIMIT 1",
  [STMT_RECEIVED_INSERT] =
    "INSERT INTO received (" RECEIVED_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  [STMT_RECEIVED_FIND] = "SELECT permission_hash = ?3 FROM received"
                         " WHERE (payer_id = ?1 AND payer_counter = ?2) OR permission_hash = ?3",
  [STMT_RECEIVED_SETTLE] =
    "UPDATE received SET state = 'settled' WHERE permission_hash = ? AND state != 'settled'",
  [STMT_RECEIVED_UNSETTLED] =
    "SELECT " RECEIVED_COLUMNS " FROM received WHERE state != 'settled' ORDER BY rowid",
  [STMT_RECEIVED_RECEIPT] = "SELECT receipt FROM received WHERE permission_hash = ?",
  [STMT_NONCE_INSERT] = "INSERT INTO nonces (" NONCE_COLUMNS ") VALUES (?, ?, ?, ?, ?, NULL, ?)",
  [STMT_NONCE_LOOKUP] = "SELECT " NONCE_COLUMNS " FROM nonces WHERE nonce = ?",
  [STMT_NONCE_CONSUME] =
    "UPDATE nonces SET consumed_at = ? WHERE nonce = ? AND consumed_at IS NULL",
  [STMT_NONCE_LIST] = "SELECT " NONCE_COLUMNS " FROM nonces ORDER BY rowid",
  [STMT_LOAD_INSERT] = "INSERT INTO loads (" LOAD_COLUMNS ") VALUES (?, ?, ?, ?, ?)",
  [STMT_LOADS_SETTLE] = "UPDATE loads SET state = 'settled' WHERE state != 'settled' AND sequence <= ?",
  [STMT_LOADS_UNSETTLED] =
    "SELECT " LOAD_COLUMNS " FROM loads WHERE state != 'settled' ORDER BY sequence",
  [STMT_HISTORY] =
    "SELECT kind, state, amount, counter, sequence, time, peer, memo FROM ("
    "  SELECT 'load' AS kind, state, amount, 0 AS counter, sequence, applied_at AS time,"
    "         NULL AS peer, NULL AS memo, sequence AS tie FROM loads"
    "  UNION ALL"
    "  SELECT kind, state, amount, counter, 0, created_at, payee_id, NULL, counter FROM spent"
    "  UNION ALL"
    "  SELECT 'received', state, amount, payer_counter, 0, received_at, payer_id,"
    "         NULLIF (memo, ''), rowid FROM received)"
    " ORDER BY time DESC, tie DESC LIMIT ?",
  [STMT_CERTIFICATE_PUT] =
    "INSERT OR IGNORE INTO certificates (hash, envelope, not_after) VALUES (?, ?, ?)",
  [STMT_CERTIFICATE_GET] = "SELECT envelope FROM certificates WHERE hash = ?",
  [STMT_PEER_PUT] = "INSERT OR REPLACE INTO peers (peer_id, our_certificate) VALUES (?, ?)",
  [STMT_PEER_GET] = "SELECT our_certificate FROM peers WHERE peer_id = ?",
};

typedef struct
{
  char *dir;
  char *db_path;
  char *key_path;
  sqlite3 *db;
  sqlite3_stmt *stmt[N_STMTS];
  guint8 *secret_key; /* guarded, no access between uses; NULL until loaded */
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
} SoftStore;

static void
soft_store_free (SoftStore *s)
{
  if (s == NULL)
    return;
  for (guint i = 0; i < N_STMTS; i++)
    sqlite3_finalize (s->stmt[i]);
  if (s->db != NULL) {
    if (!sqlite3_get_autocommit (s->db))
      sqlite3_exec (s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2 (s->db);
  }
  if (s->secret_key != NULL) {
    sodium_mprotect_readwrite (s->secret_key);
    tally_secret_key_free (s->secret_key);
  }
  g_free (s->dir);
  g_free (s->db_path);
  g_free (s->key_path);
  g_free (s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SoftStore, soft_store_free)

static SoftStore *
soft_store_new (const char *dir)
{
  SoftStore *s = g_new0 (SoftStore, 1);
  s->dir = g_strdup (dir);
  s->db_path = g_build_filename (dir, DB_NAME, NULL);
  s->key_path = g_build_filename (dir, KEY_NAME, NULL);
  return s;
}

/* --- SQLite helpers --- */

static gboolean
db_fail (SoftStore *s, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s: %s", s->db_path, what,
               s->db ? sqlite3_errmsg (s->db) : "database not open");
  return FALSE;
}

static gboolean
corrupt (SoftStore *s, const char *what, GError **error)
{
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is corrupt: %s", s->db_path, what);
  return FALSE;
}

static gboolean
db_exec (SoftStore *s, const char *sql, GError **error)
{
  char *msg = NULL;
  if (sqlite3_exec (s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s", s->db_path,
                 msg ? msg : sqlite3_errmsg (s->db));
    sqlite3_free (msg);
    return FALSE;
  }
  return TRUE;
}

static sqlite3_stmt *
stmt_get (SoftStore *s, StmtId id)
{
  sqlite3_stmt *st = s->stmt[id];
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return st;
}

/* Steps a statement that returns no rows, then resets it. */
static gboolean
stmt_run (SoftStore *s, sqlite3_stmt *st, const char *what, GError **error)
{
  int rc = sqlite3_step (st);
  gboolean ok = rc == SQLITE_DONE || db_fail (s, what, error);
  sqlite3_reset (st);
  return ok;
}

static void
bind_blob (sqlite3_stmt *st, int col, const void *data, gsize len)
{
  sqlite3_bind_blob (st, col, data, (int) len, SQLITE_TRANSIENT);
}

static void
bind_bytes (sqlite3_stmt *st, int col, GBytes *bytes)
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
    bind_blob (st, col, data, len);
}

/* Unsigned protocol values keep their bits in SQLite's signed integers. */
static void
bind_u64 (sqlite3_stmt *st, int col, guint64 v)
{
  sqlite3_bind_int64 (st, col, (sqlite3_int64) v);
}

static void
bind_text (sqlite3_stmt *st, int col, const char *text)
{
  sqlite3_bind_text (st, col, text, -1, SQLITE_TRANSIENT);
}

static guint64
col_u64 (sqlite3_stmt *st, int col)
{
  return (guint64) sqlite3_column_int64 (st, col);
}

static GBytes *
col_bytes (sqlite3_stmt *st, int col)
{
  if (sqlite3_column_type (st, col) == SQLITE_NULL)
    return NULL;
  const void *data = sqlite3_column_blob (st, col);
  int len = sqlite3_column_bytes (st, col);
  return g_bytes_new (data, (gsize) len);
}

static gboolean
col_fixed (SoftStore *s, sqlite3_stmt *st, int col, guint8 *out, gsize len, GError **error)
{
  if (sqlite3_column_type (st, col) != SQLITE_BLOB ||
      (gsize) sqlite3_column_bytes (st, col) != len) {
    g_autofree char *what = g_strdup_printf ("column %s is not %zu bytes",
                                             sqlite3_column_name (st, col), len);
    return corrupt (s, what, error);
  }
  memcpy (out, sqlite3_column_blob (st, col), len);
  return TRUE;
}

static char *
col_text (sqlite3_stmt *st, int col)
{
  return g_strdup ((const char *) sqlite3_column_text (st, col));
}

/* Storage names of entry states, independent of any display string. */
static const char *
state_name (TallyEntryState state)
{
  switch (state) {
  case TALLY_ENTRY_STATE_PENDING: return "pending";
  case TALLY_ENTRY_STATE_ACKNOWLEDGED: return "acknowledged";
  case TALLY_ENTRY_STATE_SETTLED: return "settled";
  case TALLY_ENTRY_STATE_RECLAIMED: return "reclaimed";
  }
  g_return_val_if_reached ("pending");
}

static gboolean
col_state (SoftStore *s, sqlite3_stmt *st, int col, TallyEntryState *out, GError **error)
{
  const char *text = (const char *) sqlite3_column_text (st, col);
  static const TallyEntryState states[] = {
    TALLY_ENTRY_STATE_PENDING,
    TALLY_ENTRY_STATE_ACKNOWLEDGED,
    TALLY_ENTRY_STATE_SETTLED,
    TALLY_ENTRY_STATE_RECLAIMED,
  };
  for (guint i = 0; text != NULL && i < G_N_ELEMENTS (states); i++)
    if (strcmp (text, state_name (states[i])) == 0) {
      *out = states[i];
      return TRUE;
    }
  return corrupt (s, "unknown entry state", error);
}

static const char *
spent_kind_name (TallyEntryKind kind)
{
  switch (kind) {
  case TALLY_ENTRY_SPENT: return "permission";
  case TALLY_ENTRY_DEFUND: return "defund";
  case TALLY_ENTRY_LOAD:
  case TALLY_ENTRY_RECEIVED: break;
  }
  g_return_val_if_reached (NULL);
}

static gboolean
col_kind (SoftStore *s, sqlite3_stmt *st, int col, TallyEntryKind *out, GError **error)
{
  const char *text = (const char *) sqlite3_column_text (st, col);
  static const struct
  {
    const char *name;
    TallyEntryKind kind;
  } kinds[] = {
    { "load", TALLY_ENTRY_LOAD },
    { "permission", TALLY_ENTRY_SPENT },
    { "received", TALLY_ENTRY_RECEIVED },
    { "defund", TALLY_ENTRY_DEFUND },
  };
  for (guint i = 0; text != NULL && i < G_N_ELEMENTS (kinds); i++)
    if (strcmp (text, kinds[i].name) == 0) {
      *out = kinds[i].kind;
      return TRUE;
    }
  return corrupt (s, "unknown entry kind", error);
}

/* --- schema --- */

static gboolean
schema_migrate (SoftStore *s, gint64 from, GError **error)
{
  for (gint64 v = from; v < SCHEMA_VERSION; v++) {
    g_debug ("%s: schema version %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT, s->db_path, v, v + 1);
    if (!db_exec (s, migrations[v], error))
      return FALSE;
  }
  g_autofree char *sql =
    g_strdup_printf ("UPDATE schema_version SET version = %" G_GINT64_FORMAT, SCHEMA_VERSION);
  return db_exec (s, sql, error);
}

static gboolean
schema_version_read (SoftStore *s, gint64 *version, GError **error)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (s->db, "SELECT version FROM schema_version", -1, &st, NULL) !=
      SQLITE_OK) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is not a register database: %s",
                 s->db_path, sqlite3_errmsg (s->db));
    return FALSE;
  }
  int rc = sqlite3_step (st);
  gboolean ok = FALSE;
  if (rc == SQLITE_ROW) {
    *version = sqlite3_column_int64 (st, 0);
    ok = TRUE;
  } else if (rc == SQLITE_DONE) {
    ok = corrupt (s, "no schema version", error);
  } else {
    ok = db_fail (s, "reading the schema version", error);
  }
  sqlite3_finalize (st);
  return ok;
}

static gboolean
db_open (SoftStore *s, gboolean create, GError **error)
{
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2 (s->db_path, &s->db, flags, NULL) != SQLITE_OK)
    return db_fail (s, "cannot open", error);
  sqlite3_extended_result_codes (s->db, 1);
  sqlite3_busy_timeout (s->db, BUSY_TIMEOUT_MS);

  /* WAL: a crash leaves either the old or the new transaction, and
   * synchronous=FULL makes COMMIT durable before it returns. */
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2 (s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
    return db_fail (s, "journal mode", error);
  gboolean wal = sqlite3_step (st) == SQLITE_ROW &&
                 g_ascii_strcasecmp ((const char *) sqlite3_column_text (st, 0), "wal") == 0;
  sqlite3_finalize (st);
  if (!wal)
    return db_fail (s, "cannot enable write-ahead logging", error);

  return db_exec (s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", error);
}

static gboolean
db_prepare (SoftStore *s, GError **error)
{
  for (guint i = 0; i < N_STMTS; i++)
    if (sqlite3_prepare_v3 (s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) !=
        SQLITE_OK)
      return db_fail (s, "preparing statements", error);
  return TRUE;
}

/* --- state rows --- */

static void
bind_state (sqlite3_stmt *st, const TallyRegisterState *state)
{
  bind_blob (st, 1, state->public_key, TALLY_PUBLIC_KEY_BYTES);
  bind_blob (st, 2, state->issuer_key, TALLY_PUBLIC_KEY_BYTES);
  bind_bytes (st, 3, state->certificate);
  sqlite3_bind_int64 (st, 4, state->balance);
  bind_u64 (st, 5, state->counter);
  bind_blob (st, 6, state->chain_head, TALLY_HASH_BYTES);
  sqlite3_bind_int64 (st, 7, state->offline_payments);
  bind_u64 (st, 8, state->last_reconciliation);
  bind_u64 (st, 9, state->last_voucher_sequence);
  bind_bytes (st, 10, state->revocation_list);
  bind_u64 (st, 11, state->revocation_serial);
  bind_u64 (st, 12, state->revocation_issued_at);
  bind_u64 (st, 13, state->last_result_at);
  sqlite3_bind_int (st, 14, state->closed ? 1 : 0);
  sqlite3_bind_int (st, 15, state->revoked ? 1 : 0);
  bind_u64 (st, 16, state->horizon);
}

static gboolean
soft_state_read (gpointer store, TallyRegisterState *state, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_STATE_READ);
  int rc = sqlite3_step (st);
  if (rc != SQLITE_ROW) {
    gboolean ok = rc == SQLITE_DONE ? corrupt (s, "no register state", error)
                                    : db_fail (s, "reading the register state", error);
    sqlite3_reset (st);
    return ok;
  }

  TallyRegisterState out = { 0 };
  gboolean ok = col_fixed (s, st, 0, out.public_key, TALLY_PUBLIC_KEY_BYTES, error) &&
                col_fixed (s, st, 1, out.issuer_key, TALLY_PUBLIC_KEY_BYTES, error) &&
                col_fixed (s, st, 5, out.chain_head, TALLY_HASH_BYTES, error);
  if (ok) {
    out.certificate = col_bytes (st, 2);
    out.balance = sqlite3_column_int64 (st, 3);
    out.counter = col_u64 (st, 4);
    out.offline_payments = (guint32) sqlite3_column_int64 (st, 6);
    out.last_reconciliation = col_u64 (st, 7);
    out.last_voucher_sequence = col_u64 (st, 8);
    out.revocation_list = col_bytes (st, 9);
    out.revocation_serial = col_u64 (st, 10);
    out.revocation_issued_at = col_u64 (st, 11);
    out.last_result_at = col_u64 (st, 12);
    out.closed = sqlite3_column_int (st, 13) != 0;
    out.revoked = sqlite3_column_int (st, 14) != 0;
    out.horizon = col_u64 (st, 15);
    tally_register_state_clear (state);
    *state = out;
  }
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_state_write (gpointer store, const TallyRegisterState *state, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_STATE_WRITE);
  bind_state (st, state);
  if (!stmt_run (s, st, "writing the register state", error))
    return FALSE;
  if (sqlite3_changes (s->db) != 1)
    return corrupt (s, "no register state", error);
  return TRUE;
}

/* --- spent --- */

static gboolean
soft_spent_insert (gpointer store, const TallySpentRow *row, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_INSERT);
  bind_u64 (st, 1, row->counter);
  bind_text (st, 2, spent_kind_name (row->kind));
  bind_bytes (st, 3, row->envelope);
  if (row->has_payee) {
    bind_blob (st, 4, row->payee_id, TALLY_ID_BYTES);
    bind_blob (st, 5, row->payee_key, TALLY_PUBLIC_KEY_BYTES);
  }
  sqlite3_bind_int64 (st, 6, row->amount);
  bind_u64 (st, 7, row->created_at);
  bind_bytes (st, 8, row->receipt);
  bind_text (st, 9, state_name (row->state));
  bind_u64 (st, 10, row->expires_at);
  if (row->has_certificate_hash)
    bind_blob (st, 11, row->certificate_hash, TALLY_HASH_BYTES);
  return stmt_run (s, st, "storing a spent entry", error);
}

static gboolean
read_spent_row (SoftStore *s, sqlite3_stmt *st, TallySpentRow *row, GError **error)
{
  TallySpentRow out = { 0 };
  out.counter = col_u64 (st, 0);
  if (!col_kind (s, st, 1, &out.kind, error) || !col_state (s, st, 8, &out.state, error))
    return FALSE;
  if (out.kind != TALLY_ENTRY_SPENT && out.kind != TALLY_ENTRY_DEFUND)
    return corrupt (s, "spent entry of another kind", error);
  out.has_payee = sqlite3_column_type (st, 3) != SQLITE_NULL;
  if (out.has_payee &&
      (!col_fixed (s, st, 3, out.payee_id, TALLY_ID_BYTES, error) ||
       !col_fixed (s, st, 4, out.payee_key, TALLY_PUBLIC_KEY_BYTES, error)))
    return FALSE;
  out.envelope = col_bytes (st, 2);
  out.amount = sqlite3_column_int64 (st, 5);
  out.created_at = col_u64 (st, 6);
  out.receipt = col_bytes (st, 7);
  out.expires_at = col_u64 (st, 9);
  out.has_certificate_hash = sqlite3_column_type (st, 10) != SQLITE_NULL;
  if (out.has_certificate_hash &&
      !col_fixed (s, st, 10, out.certificate_hash, TALLY_HASH_BYTES, error)) {
    tally_spent_row_clear (&out);
    return FALSE;
  }
  *row = out;
  return TRUE;
}

static gboolean
soft_spent_lookup (gpointer store,
                   guint64 counter,
                   TallySpentRow *row,
                   gboolean *found,
                   GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_LOOKUP);
  bind_u64 (st, 1, counter);
  int rc = sqlite3_step (st);
  gboolean ok;
  *found = FALSE;
  if (rc == SQLITE_ROW)
    ok = *found = read_spent_row (s, st, row, error);
  else
    ok = rc == SQLITE_DONE || db_fail (s, "looking up a spent entry", error);
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_spent_set_receipt (gpointer store,
                        guint64 counter,
                        GBytes *receipt,
                        TallyEntryState state,
                        GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_SET_RECEIPT);
  bind_bytes (st, 1, receipt);
  bind_text (st, 2, state_name (state));
  bind_u64 (st, 3, counter);
  if (!stmt_run (s, st, "storing a receipt", error))
    return FALSE;
  if (sqlite3_changes (s->db) != 1)
    return corrupt (s, "spent entry vanished", error);
  return TRUE;
}

static gboolean
soft_spent_set_state (gpointer store, guint64 counter, TallyEntryState state, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_SET_STATE);
  bind_text (st, 1, state_name (state));
  bind_u64 (st, 2, counter);
  if (!stmt_run (s, st, "changing a spent entry", error))
    return FALSE;
  if (sqlite3_changes (s->db) != 1)
    return corrupt (s, "spent entry vanished", error);
  return TRUE;
}

static gboolean
soft_spent_find_pending (gpointer store,
                         const guint8 payee_id[TALLY_ID_BYTES],
                         guint64 now,
                         TallySpentRow *row,
                         gboolean *found,
                         GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_PENDING);
  bind_blob (st, 1, payee_id, TALLY_ID_BYTES);
  bind_u64 (st, 2, now);
  int rc = sqlite3_step (st);
  gboolean ok;
  *found = FALSE;
  if (rc == SQLITE_ROW)
    ok = *found = read_spent_row (s, st, row, error);
  else
    ok = rc == SQLITE_DONE || db_fail (s, "looking up a pending permission", error);
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_spent_settle_through (gpointer store, guint64 counter, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_SPENT_SETTLE_THROUGH);
  sqlite3_bind_int64 (st, 1, (sqlite3_int64) MIN (counter, (guint64) G_MAXINT64));
  return stmt_run (s, st, "settling spent entries", error);
}

typedef gboolean (*RowReader) (SoftStore *s, sqlite3_stmt *st, gpointer row, GError **error);

/* Collects every row of @id into a new array of @row_size structs. */
static GPtrArray *
list_rows (SoftStore *s,
           StmtId id,
           gsize row_size,
           RowReader read,
           GDestroyNotify free_row,
           const char *what,
           GError **error)
{
  sqlite3_stmt *st = stmt_get (s, id);
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func (free_row);
  int rc;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
    gpointer row = g_malloc0 (row_size);
    g_ptr_array_add (rows, row);
    if (!read (s, st, row, error)) {
      sqlite3_reset (st);
      return NULL;
    }
  }
  if (rc != SQLITE_DONE) {
    db_fail (s, what, error);
    sqlite3_reset (st);
    return NULL;
  }
  sqlite3_reset (st);
  return g_steal_pointer (&rows);
}

static GPtrArray *
soft_spent_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_SPENT_UNSETTLED, sizeof (TallySpentRow), (RowReader) read_spent_row,
                    (GDestroyNotify) tally_spent_row_free, "listing spent entries", error);
}

/* --- received --- */

static gboolean
soft_received_insert (gpointer store, const TallyReceivedRow *row, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_RECEIVED_INSERT);
  bind_blob (st, 1, row->payer_id, TALLY_ID_BYTES);
  bind_u64 (st, 2, row->payer_counter);
  bind_bytes (st, 3, row->permission);
  bind_bytes (st, 4, row->payer_certificate);
  bind_bytes (st, 5, row->receipt);
  sqlite3_bind_int64 (st, 6, row->amount);
  bind_text (st, 7, row->memo ? row->memo : "");
  bind_u64 (st, 8, row->received_at);
  bind_blob (st, 9, row->permission_hash, TALLY_HASH_BYTES);
  bind_blob (st, 10, row->nonce, TALLY_NONCE_BYTES);
  bind_text (st, 11, state_name (row->state));
  return stmt_run (s, st, "storing a received payment", error);
}

static gboolean
read_received_row (SoftStore *s, sqlite3_stmt *st, TallyReceivedRow *row, GError **error)
{
  if (!col_fixed (s, st, 0, row->payer_id, TALLY_ID_BYTES, error) ||
      !col_fixed (s, st, 8, row->permission_hash, TALLY_HASH_BYTES, error) ||
      !col_fixed (s, st, 9, row->nonce, TALLY_NONCE_BYTES, error) ||
      !col_state (s, st, 10, &row->state, error))
    return FALSE;
  row->payer_counter = col_u64 (st, 1);
  row->permission = col_bytes (st, 2);
  row->payer_certificate = col_bytes (st, 3);
  row->receipt = col_bytes (st, 4);
  row->amount = sqlite3_column_int64 (st, 5);
  row->memo = col_text (st, 6);
  row->received_at = col_u64 (st, 7);
  return TRUE;
}

static gboolean
soft_received_find (gpointer store,
                    const guint8 payer_id[TALLY_ID_BYTES],
                    guint64 payer_counter,
                    const guint8 permission_hash[TALLY_HASH_BYTES],
                    gboolean *same_permission,
                    gboolean *counter_used,
                    GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_RECEIVED_FIND);
  bind_blob (st, 1, payer_id, TALLY_ID_BYTES);
  bind_u64 (st, 2, payer_counter);
  bind_blob (st, 3, permission_hash, TALLY_HASH_BYTES);
  *same_permission = *counter_used = FALSE;
  int rc;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
    if (sqlite3_column_int (st, 0))
      *same_permission = TRUE;
    else
      *counter_used = TRUE;
  }
  gboolean ok = rc == SQLITE_DONE || db_fail (s, "looking up received payments", error);
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_received_settle (gpointer store,
                      const guint8 permission_hash[TALLY_HASH_BYTES],
                      GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_RECEIVED_SETTLE);
  bind_blob (st, 1, permission_hash, TALLY_HASH_BYTES);
  return stmt_run (s, st, "settling a received payment", error);
}

static GBytes *
soft_received_get_receipt (gpointer store,
                           const guint8 permission_hash[TALLY_HASH_BYTES],
                           GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_RECEIVED_RECEIPT);
  bind_blob (st, 1, permission_hash, TALLY_HASH_BYTES);
  int rc = sqlite3_step (st);
  GBytes *receipt = NULL;
  if (rc == SQLITE_ROW)
    receipt = col_bytes (st, 0);
  else if (rc == SQLITE_DONE)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no payment with that permission");
  else
    db_fail (s, "looking up a receipt", error);
  sqlite3_reset (st);
  return receipt;
}

static GPtrArray *
soft_received_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_RECEIVED_UNSETTLED, sizeof (TallyReceivedRow),
                    (RowReader) read_received_row, (GDestroyNotify) tally_received_row_free,
                    "listing received payments", error);
}

/* --- nonces --- */

static gboolean
soft_nonce_insert (gpointer store, const TallyNonceRow *row, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_NONCE_INSERT);
  bind_blob (st, 1, row->nonce, TALLY_NONCE_BYTES);
  sqlite3_bind_int64 (st, 2, row->amount);
  bind_text (st, 3, row->currency);
  bind_text (st, 4, row->memo ? row->memo : "");
  bind_u64 (st, 5, row->created_at);
  bind_u64 (st, 6, row->expires_at);
  return stmt_run (s, st, "storing a payment request", error);
}

static gboolean
read_nonce_row (SoftStore *s, sqlite3_stmt *st, TallyNonceRow *row, GError **error)
{
  if (!col_fixed (s, st, 0, row->nonce, TALLY_NONCE_BYTES, error))
    return FALSE;
  row->amount = sqlite3_column_int64 (st, 1);
  row->currency = col_text (st, 2);
  row->memo = col_text (st, 3);
  row->created_at = col_u64 (st, 4);
  row->consumed = sqlite3_column_type (st, 5) != SQLITE_NULL;
  row->consumed_at = row->consumed ? col_u64 (st, 5) : 0;
  row->expires_at = col_u64 (st, 6);
  return TRUE;
}

static gboolean
soft_nonce_lookup (gpointer store,
                   const guint8 nonce[TALLY_NONCE_BYTES],
                   TallyNonceRow *row,
                   gboolean *found,
                   GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_NONCE_LOOKUP);
  bind_blob (st, 1, nonce, TALLY_NONCE_BYTES);
  int rc = sqlite3_step (st);
  gboolean ok;
  *found = FALSE;
  if (rc == SQLITE_ROW)
    ok = *found = read_nonce_row (s, st, row, error);
  else
    ok = rc == SQLITE_DONE || db_fail (s, "looking up a payment request", error);
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_certificate_put (gpointer store,
                      const guint8 hash[TALLY_HASH_BYTES],
                      GBytes *envelope,
                      guint64 not_after,
                      GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_CERTIFICATE_PUT);
  bind_blob (st, 1, hash, TALLY_HASH_BYTES);
  bind_blob (st, 2, g_bytes_get_data (envelope, NULL), g_bytes_get_size (envelope));
  bind_u64 (st, 3, not_after);
  return stmt_run (s, st, "caching a certificate", error);
}

static GBytes *
soft_certificate_get (gpointer store, const guint8 hash[TALLY_HASH_BYTES], GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_CERTIFICATE_GET);
  bind_blob (st, 1, hash, TALLY_HASH_BYTES);
  int rc = sqlite3_step (st);
  GBytes *env = NULL;
  if (rc == SQLITE_ROW)
    env = col_bytes (st, 0);
  else if (rc == SQLITE_DONE)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "certificate not in the cache");
  else
    db_fail (s, "looking up a cached certificate", error);
  sqlite3_reset (st);
  return env;
}

static gboolean
soft_peer_put (gpointer store,
               const guint8 peer_id[TALLY_ID_BYTES],
               const guint8 our_certificate[TALLY_HASH_BYTES],
               GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_PEER_PUT);
  bind_blob (st, 1, peer_id, TALLY_ID_BYTES);
  bind_blob (st, 2, our_certificate, TALLY_HASH_BYTES);
  return stmt_run (s, st, "remembering a peer", error);
}

static gboolean
soft_peer_get (gpointer store,
               const guint8 peer_id[TALLY_ID_BYTES],
               guint8 our_certificate[TALLY_HASH_BYTES],
               gboolean *found,
               GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_PEER_GET);
  bind_blob (st, 1, peer_id, TALLY_ID_BYTES);
  int rc = sqlite3_step (st);
  gboolean ok;
  *found = FALSE;
  if (rc == SQLITE_ROW)
    ok = *found = col_fixed (s, st, 0, our_certificate, TALLY_HASH_BYTES, error);
  else
    ok = rc == SQLITE_DONE || db_fail (s, "looking up a peer", error);
  sqlite3_reset (st);
  return ok;
}

static gboolean
soft_nonce_consume (gpointer store,
                    const guint8 nonce[TALLY_NONCE_BYTES],
                    guint64 now,
                    GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_NONCE_CONSUME);
  bind_u64 (st, 1, now);
  bind_blob (st, 2, nonce, TALLY_NONCE_BYTES);
  if (!stmt_run (s, st, "consuming a nonce", error))
    return FALSE;
  if (sqlite3_changes (s->db) != 1)
    return corrupt (s, "nonce vanished or was consumed", error);
  return TRUE;
}

static GPtrArray *
soft_nonce_list (gpointer store, GError **error)
{
  return list_rows (store, STMT_NONCE_LIST, sizeof (TallyNonceRow), (RowReader) read_nonce_row,
                    (GDestroyNotify) tally_nonce_row_free, "listing payment requests", error);
}

/* --- loads --- */

static gboolean
soft_load_insert (gpointer store, const TallyLoadRow *row, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_LOAD_INSERT);
  bind_u64 (st, 1, row->sequence);
  bind_bytes (st, 2, row->envelope);
  sqlite3_bind_int64 (st, 3, row->amount);
  bind_u64 (st, 4, row->applied_at);
  bind_text (st, 5, state_name (row->state));
  return stmt_run (s, st, "storing a load", error);
}

static gboolean
read_load_row (SoftStore *s, sqlite3_stmt *st, TallyLoadRow *row, GError **error)
{
  if (!col_state (s, st, 4, &row->state, error))
    return FALSE;
  row->sequence = col_u64 (st, 0);
  row->envelope = col_bytes (st, 1);
  row->amount = sqlite3_column_int64 (st, 2);
  row->applied_at = col_u64 (st, 3);
  return TRUE;
}

static gboolean
soft_loads_settle_through (gpointer store, guint64 sequence, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_LOADS_SETTLE);
  sqlite3_bind_int64 (st, 1, (sqlite3_int64) sequence);
  return stmt_run (s, st, "settling loads", error);
}

static GPtrArray *
soft_loads_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_LOADS_UNSETTLED, sizeof (TallyLoadRow), (RowReader) read_load_row,
                    (GDestroyNotify) tally_load_row_free, "listing loads", error);
}

/* --- history --- */

static gboolean
read_history_entry (SoftStore *s, sqlite3_stmt *st, TallyHistoryEntry *entry, GError **error)
{
  if (!col_kind (s, st, 0, &entry->kind, error) || !col_state (s, st, 1, &entry->state, error))
    return FALSE;
  entry->amount = sqlite3_column_int64 (st, 2);
  entry->counter = col_u64 (st, 3);
  entry->sequence = col_u64 (st, 4);
  entry->time = col_u64 (st, 5);
  if (sqlite3_column_type (st, 6) != SQLITE_NULL) {
    guint8 peer[TALLY_ID_BYTES];
    if (!col_fixed (s, st, 6, peer, sizeof peer, error))
      return FALSE;
    entry->peer = tally_hex_encode (peer, sizeof peer);
  }
  entry->memo = col_text (st, 7);
  return TRUE;
}

static GPtrArray *
soft_history (gpointer store, guint limit, GError **error)
{
  SoftStore *s = store;
  sqlite3_stmt *st = stmt_get (s, STMT_HISTORY);
  sqlite3_bind_int64 (st, 1, limit == 0 ? -1 : (sqlite3_int64) limit);
  /* list_rows resets the bindings, so step here. */
  g_autoptr (GPtrArray) rows =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally_history_entry_free);
  int rc;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
    TallyHistoryEntry *entry = g_new0 (TallyHistoryEntry, 1);
    g_ptr_array_add (rows, entry);
    if (!read_history_entry (s, st, entry, error)) {
      sqlite3_reset (st);
      return NULL;
    }
  }
  gboolean ok = rc == SQLITE_DONE || db_fail (s, "reading the history", error);
  sqlite3_reset (st);
  return ok ? g_steal_pointer (&rows) : NULL;
}

/* --- transactions --- */

static gboolean
soft_begin (gpointer store, gboolean write, GError **error)
{
  SoftStore *s = store;
  return db_exec (s, write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED", error);
}

static gboolean
soft_commit (gpointer store, GError **error)
{
  SoftStore *s = store;
  return db_exec (s, "COMMIT", error);
}

static void
soft_rollback (gpointer store)
{
  SoftStore *s = store;
  /* A failed COMMIT may already have rolled back. */
  if (!sqlite3_get_autocommit (s->db)) {
    g_autoptr (GError) error = NULL;
    if (!db_exec (s, "ROLLBACK", &error))
      g_warning ("%s", error->message);
  }
}

/* --- key --- */

/* The 64-byte secret holds seed || public key; a file whose halves
 * disagree would sign with one key and claim another. */
static gboolean
secret_key_is_consistent (const guint8 secret_key[TALLY_SECRET_KEY_BYTES])
{
  guint8 pk[crypto_sign_PUBLICKEYBYTES];
  guint8 sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair (pk, sk, secret_key);
  gboolean ok = sodium_memcmp (sk, secret_key, sizeof sk) == 0;
  sodium_memzero (sk, sizeof sk);
  return ok;
}

static gboolean
soft_load_key (gpointer store, guint8 public_key[TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  SoftStore *s = store;
  if (s->secret_key == NULL) {
    guint8 *sk = tally_secret_key_new ();
    if (!tally_key_file_read (s->key_path, sk, error)) {
      tally_secret_key_free (sk);
      return FALSE;
    }
    if (!secret_key_is_consistent (sk)) {
      tally_secret_key_free (sk);
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "key file %s is corrupt",
                   s->key_path);
      return FALSE;
    }
    crypto_sign_ed25519_sk_to_pk (s->public_key, sk);
    sodium_mprotect_noaccess (sk);
    s->secret_key = sk;
  }
  memcpy (public_key, s->public_key, TALLY_PUBLIC_KEY_BYTES);
  return TRUE;
}

static GBytes *
soft_sign_envelope (gpointer store, Tally__SignatureContext ctx, const guint8 *body, gsize len)
{
  SoftStore *s = store;
  g_return_val_if_fail (s->secret_key != NULL, NULL);
  sodium_mprotect_readonly (s->secret_key);
  GBytes *env = tally_envelope_sign (ctx, body, len, s->secret_key);
  sodium_mprotect_noaccess (s->secret_key);
  return env;
}

static void
soft_sign_detached (gpointer store,
                    Tally__SignatureContext ctx,
                    const guint8 *data,
                    gsize len,
                    guint8 signature[TALLY_SIGNATURE_BYTES])
{
  SoftStore *s = store;
  g_return_if_fail (s->secret_key != NULL);
  sodium_mprotect_readonly (s->secret_key);
  tally_sign_detached (ctx, data, len, s->secret_key, signature);
  sodium_mprotect_noaccess (s->secret_key);
}

/* --- lifetime --- */

static void
remove_files (SoftStore *s)
{
  static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
  for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++) {
    g_autofree char *path = g_strconcat (s->db_path, suffixes[i], NULL);
    g_unlink (path);
  }
  g_unlink (s->key_path);
}

static gboolean
create_storage (SoftStore *s, const guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  /* Made here first so the database and its WAL inherit mode 0600; O_EXCL
   * refuses a concurrent creator. */
  int fd = g_open (s->db_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, e == EEXIST ? TALLY_ERROR_EXISTS : TALLY_ERROR_STORAGE,
                 "cannot create %s: %s", s->db_path, g_strerror (e));
    return FALSE;
  }
  close (fd);

  s->secret_key = tally_secret_key_new ();
  crypto_sign_keypair (s->public_key, s->secret_key);
  gboolean written = tally_key_file_write (s->key_path, s->secret_key, error);
  sodium_mprotect_noaccess (s->secret_key);
  if (!written)
    return FALSE;

  if (!db_open (s, TRUE, error) || !db_exec (s, "BEGIN IMMEDIATE", error))
    return FALSE;

  TallyRegisterState state = { 0 };
  tally_register_state_init (&state, s->public_key, issuer_key);
  gboolean ok = db_exec (s,
                         "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT;"
                         "INSERT INTO schema_version VALUES (0);",
                         error) &&
                schema_migrate (s, 0, error) && db_prepare (s, error);
  if (ok) {
    sqlite3_stmt *st = stmt_get (s, STMT_STATE_INSERT);
    bind_state (st, &state);
    ok = stmt_run (s, st, "storing the register state", error) && db_exec (s, "COMMIT", error);
  }
  tally_register_state_clear (&state);
  return ok;
}

static gpointer
soft_create (const char *dir, const guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);

  if (g_mkdir_with_parents (dir, 0700) != 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot create %s: %s", dir,
                 g_strerror (e));
    return NULL;
  }
  g_autoptr (SoftStore) s = soft_store_new (dir);
  if (g_file_test (s->key_path, G_FILE_TEST_EXISTS) ||
      g_file_test (s->db_path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "%s already holds a register", dir);
    return NULL;
  }
  g_autoptr (GError) local = NULL;
  if (!create_storage (s, issuer_key, &local)) {
    gboolean ours = !g_error_matches (local, TALLY_ERROR, TALLY_ERROR_EXISTS);
    for (guint i = 0; i < N_STMTS; i++)
      g_clear_pointer (&s->stmt[i], sqlite3_finalize);
    g_clear_pointer (&s->db, sqlite3_close_v2);
    if (ours)
      remove_files (s);
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }
  g_debug ("created soft register in %s", dir);
  return g_steal_pointer (&s);
}

static gpointer
soft_open (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);

  g_autoptr (SoftStore) s = soft_store_new (dir);
  if (!g_file_test (s->db_path, G_FILE_TEST_IS_REGULAR) ||
      !g_file_test (s->key_path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "%s holds no register", dir);
    return NULL;
  }
  gint64 version = 0;
  if (!db_open (s, FALSE, error) || !schema_version_read (s, &version, error))
    return NULL;
  if (version > SCHEMA_VERSION) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "%s has schema version %" G_GINT64_FORMAT ", this build knows %" G_GINT64_FORMAT,
                 s->db_path, version, SCHEMA_VERSION);
    return NULL;
  }
  if (version < SCHEMA_VERSION) {
    if (!db_exec (s, "BEGIN IMMEDIATE", error))
      return NULL;
    if (!schema_migrate (s, version, error) || !db_exec (s, "COMMIT", error)) {
      soft_rollback (s);
      return NULL;
    }
  }
  if (!db_prepare (s, error))
    return NULL;
  return g_steal_pointer (&s);
}

static void
soft_close (gpointer store)
{
  soft_store_free (store);
}

const TallyRegisterBackend tally_register_soft_backend = {
  .name = "soft",
  .create = soft_create,
  .open = soft_open,
  .close = soft_close,
  .load_key = soft_load_key,
  .sign_envelope = soft_sign_envelope,
  .sign_detached = soft_sign_detached,
  .begin = soft_begin,
  .commit = soft_commit,
  .rollback = soft_rollback,
  .state_read = soft_state_read,
  .state_write = soft_state_write,
  .spent_insert = soft_spent_insert,
  .spent_lookup = soft_spent_lookup,
  .spent_set_receipt = soft_spent_set_receipt,
  .spent_settle_through = soft_spent_settle_through,
  .spent_list_unsettled = soft_spent_list_unsettled,
  .spent_set_state = soft_spent_set_state,
  .spent_find_pending = soft_spent_find_pending,
  .received_insert = soft_received_insert,
  .received_find = soft_received_find,
  .received_settle = soft_received_settle,
  .received_list_unsettled = soft_received_list_unsettled,
  .received_get_receipt = soft_received_get_receipt,
  .nonce_insert = soft_nonce_insert,
  .nonce_lookup = soft_nonce_lookup,
  .nonce_consume = soft_nonce_consume,
  .nonce_list = soft_nonce_list,
  .load_insert = soft_load_insert,
  .loads_settle_through = soft_loads_settle_through,
  .loads_list_unsettled = soft_loads_list_unsettled,
  .certificate_put = soft_certificate_put,
  .certificate_get = soft_certificate_get,
  .peer_put = soft_peer_put,
  .peer_get = soft_peer_get,
  .history = soft_history,
};
