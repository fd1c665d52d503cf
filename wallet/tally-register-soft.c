/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The soft register backend: state in SQLite ("register.db", WAL,
 * synchronous=FULL), the Ed25519 key in a 0600 file ("register.key") and,
 * once loaded, in guarded memory that is inaccessible between signatures.
 */
#include "tally-register-backend.h"
#include "tally-register-soft.h"
#include "tally-sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "tally-hex.h"
#include "tally-keyfile.h"

#define DB_NAME  "register.db"
#define KEY_NAME "register.key"

/* A register belongs to one process; waiting longer only hides a second
 * writer that should not exist. */
#define BUSY_TIMEOUT_MS 1000

#define SCHEMA_VERSION ((gint64) tally_register_soft_n_migrations)

typedef struct
{
  char *dir;
  char *db_path;
  char *key_path;
  TallySqlite *db;
  guint8 *secret_key; /* guarded, no access between uses; NULL until loaded */
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
} SoftStore;

static void
soft_store_free (SoftStore *s)
{
  if (s == NULL)
    return;
  tally_sqlite_free (s->db);
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
  return tally_sqlite_corrupt (s->db, "unknown entry state", error);
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
  return tally_sqlite_corrupt (s->db, "unknown entry kind", error);
}

/* The blob in the first column of the one row of @st; NOT_FOUND
 * @not_found without one. */
static GBytes *
get_blob (SoftStore *s, sqlite3_stmt *st, const char *not_found, const char *what, GError **error)
{
  gboolean have;
  if (!tally_sqlite_step_next (s->db, st, &have, what, error))
    return NULL;
  if (!have) {
    g_set_error_literal (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, not_found);
    return NULL;
  }
  return tally_sqlite_column_bytes (st, 0);
}

/* --- schema --- */

static gboolean
schema_migrate (SoftStore *s, gint64 from, GError **error)
{
  return tally_sqlite_migrate (s->db, tally_register_soft_migrations,
                               tally_register_soft_n_migrations, 0, from, error);
}

static gboolean
schema_version_read (SoftStore *s, gint64 *version, GError **error)
{
  gboolean exists;
  if (!tally_sqlite_schema_version (s->db, &exists, version, error))
    return FALSE;
  if (!exists) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is not a register database",
                 s->db_path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
db_open (SoftStore *s, gboolean create, GError **error)
{
  s->db = tally_sqlite_open (s->db_path, create, BUSY_TIMEOUT_MS, error);
  return s->db != NULL;
}

/* --- state rows --- */

static void
bind_state (sqlite3_stmt *st, const TallyRegisterState *state)
{
  tally_sqlite_bind_blob (st, 1, state->public_key, TALLY_PUBLIC_KEY_BYTES);
  tally_sqlite_bind_blob (st, 2, state->issuer_key, TALLY_PUBLIC_KEY_BYTES);
  tally_sqlite_bind_bytes (st, 3, state->certificate);
  sqlite3_bind_int64 (st, 4, state->balance);
  tally_sqlite_bind_u64 (st, 5, state->counter);
  tally_sqlite_bind_blob (st, 6, state->chain_head, TALLY_HASH_BYTES);
  sqlite3_bind_int64 (st, 7, state->offline_payments);
  tally_sqlite_bind_u64 (st, 8, state->last_reconciliation);
  tally_sqlite_bind_u64 (st, 9, state->last_voucher_sequence);
  tally_sqlite_bind_bytes (st, 10, state->revocation_list);
  tally_sqlite_bind_u64 (st, 11, state->revocation_serial);
  tally_sqlite_bind_u64 (st, 12, state->revocation_issued_at);
  tally_sqlite_bind_u64 (st, 13, state->last_result_at);
  sqlite3_bind_int (st, 14, state->closed ? 1 : 0);
  sqlite3_bind_int (st, 15, state->revoked ? 1 : 0);
  tally_sqlite_bind_u64 (st, 16, state->horizon);
}

static gboolean
soft_state_read (gpointer store, TallyRegisterState *state, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_STATE_READ);
  gboolean have;
  if (!tally_sqlite_step_next (s->db, st, &have, "reading the register state", error))
    return FALSE;
  if (!have)
    return tally_sqlite_corrupt (s->db, "no register state", error);

  TallyRegisterState out = { 0 };
  gboolean ok =
    tally_sqlite_column_fixed (s->db, st, 0, out.public_key, TALLY_PUBLIC_KEY_BYTES, error) &&
    tally_sqlite_column_fixed (s->db, st, 1, out.issuer_key, TALLY_PUBLIC_KEY_BYTES, error) &&
    tally_sqlite_column_fixed (s->db, st, 5, out.chain_head, TALLY_HASH_BYTES, error);
  if (ok) {
    out.certificate = tally_sqlite_column_bytes (st, 2);
    out.balance = sqlite3_column_int64 (st, 3);
    out.counter = tally_sqlite_column_u64 (st, 4);
    out.offline_payments = (guint32) sqlite3_column_int64 (st, 6);
    out.last_reconciliation = tally_sqlite_column_u64 (st, 7);
    out.last_voucher_sequence = tally_sqlite_column_u64 (st, 8);
    out.revocation_list = tally_sqlite_column_bytes (st, 9);
    out.revocation_serial = tally_sqlite_column_u64 (st, 10);
    out.revocation_issued_at = tally_sqlite_column_u64 (st, 11);
    out.last_result_at = tally_sqlite_column_u64 (st, 12);
    out.closed = sqlite3_column_int (st, 13) != 0;
    out.revoked = sqlite3_column_int (st, 14) != 0;
    out.horizon = tally_sqlite_column_u64 (st, 15);
    tally_register_state_clear (state);
    *state = out;
  }
  return ok;
}

static gboolean
soft_state_write (gpointer store, const TallyRegisterState *state, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_STATE_WRITE);
  bind_state (st, state);
  gboolean missing;
  if (tally_sqlite_step_update (s->db, st, &missing, "writing the register state", error))
    return TRUE;
  return missing ? tally_sqlite_corrupt (s->db, "no register state", error) : FALSE;
}

/* --- spent --- */

static gboolean
soft_spent_insert (gpointer store, const TallySpentRow *row, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_INSERT);
  tally_sqlite_bind_u64 (st, 1, row->counter);
  tally_sqlite_bind_text (st, 2, spent_kind_name (row->kind));
  tally_sqlite_bind_bytes (st, 3, row->envelope);
  if (row->has_payee) {
    tally_sqlite_bind_blob (st, 4, row->payee_id, TALLY_ID_BYTES);
    tally_sqlite_bind_blob (st, 5, row->payee_key, TALLY_PUBLIC_KEY_BYTES);
  }
  sqlite3_bind_int64 (st, 6, row->amount);
  tally_sqlite_bind_u64 (st, 7, row->created_at);
  tally_sqlite_bind_bytes (st, 8, row->receipt);
  tally_sqlite_bind_text (st, 9, state_name (row->state));
  tally_sqlite_bind_u64 (st, 10, row->expires_at);
  if (row->has_certificate_hash)
    tally_sqlite_bind_blob (st, 11, row->certificate_hash, TALLY_HASH_BYTES);
  if (row->payee_name != NULL)
    tally_sqlite_bind_text (st, 12, row->payee_name);
  return tally_sqlite_step_done (s->db, st, "storing a spent entry", error);
}

static gboolean
read_spent_row (SoftStore *s, sqlite3_stmt *st, TallySpentRow *row, GError **error)
{
  TallySpentRow out = { 0 };
  out.counter = tally_sqlite_column_u64 (st, 0);
  if (!col_kind (s, st, 1, &out.kind, error) || !col_state (s, st, 8, &out.state, error))
    return FALSE;
  if (out.kind != TALLY_ENTRY_SPENT && out.kind != TALLY_ENTRY_DEFUND)
    return tally_sqlite_corrupt (s->db, "spent entry of another kind", error);
  out.has_payee = sqlite3_column_type (st, 3) != SQLITE_NULL;
  if (out.has_payee &&
      (!tally_sqlite_column_fixed (s->db, st, 3, out.payee_id, TALLY_ID_BYTES, error) ||
       !tally_sqlite_column_fixed (s->db, st, 4, out.payee_key, TALLY_PUBLIC_KEY_BYTES, error)))
    return FALSE;
  out.envelope = tally_sqlite_column_bytes (st, 2);
  out.amount = sqlite3_column_int64 (st, 5);
  out.created_at = tally_sqlite_column_u64 (st, 6);
  out.receipt = tally_sqlite_column_bytes (st, 7);
  out.expires_at = tally_sqlite_column_u64 (st, 9);
  out.has_certificate_hash = sqlite3_column_type (st, 10) != SQLITE_NULL;
  if (out.has_certificate_hash &&
      !tally_sqlite_column_fixed (s->db, st, 10, out.certificate_hash, TALLY_HASH_BYTES, error)) {
    tally_spent_row_clear (&out);
    return FALSE;
  }
  out.payee_name = tally_sqlite_column_text (st, 11);
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
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_LOOKUP);
  tally_sqlite_bind_u64 (st, 1, counter);
  return tally_sqlite_lookup (s->db, st, (TallySqliteRowReader) read_spent_row, s, row, found,
                              "looking up a spent entry", error);
}

static gboolean
soft_spent_set_receipt (gpointer store,
                        guint64 counter,
                        GBytes *receipt,
                        TallyEntryState state,
                        GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_SET_RECEIPT);
  tally_sqlite_bind_bytes (st, 1, receipt);
  tally_sqlite_bind_text (st, 2, state_name (state));
  tally_sqlite_bind_u64 (st, 3, counter);
  gboolean missing;
  if (tally_sqlite_step_update (s->db, st, &missing, "storing a receipt", error))
    return TRUE;
  return missing ? tally_sqlite_corrupt (s->db, "spent entry vanished", error) : FALSE;
}

static gboolean
soft_spent_set_state (gpointer store, guint64 counter, TallyEntryState state, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_SET_STATE);
  tally_sqlite_bind_text (st, 1, state_name (state));
  tally_sqlite_bind_u64 (st, 2, counter);
  gboolean missing;
  if (tally_sqlite_step_update (s->db, st, &missing, "changing a spent entry", error))
    return TRUE;
  return missing ? tally_sqlite_corrupt (s->db, "spent entry vanished", error) : FALSE;
}

static gboolean
soft_spent_find_pending (gpointer store,
                         const guint8 payee_id[static TALLY_ID_BYTES],
                         guint64 now,
                         TallySpentRow *row,
                         gboolean *found,
                         GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_PENDING);
  tally_sqlite_bind_blob (st, 1, payee_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, now);
  return tally_sqlite_lookup (s->db, st, (TallySqliteRowReader) read_spent_row, s, row, found,
                              "looking up a pending permission", error);
}

static gboolean
soft_spent_settle_through (gpointer store, guint64 counter, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_SPENT_SETTLE_THROUGH);
  sqlite3_bind_int64 (st, 1, (sqlite3_int64) MIN (counter, (guint64) G_MAXINT64));
  return tally_sqlite_step_done (s->db, st, "settling spent entries", error);
}

/* Collects every row of @id into a new array of @row_size structs. */
static GPtrArray *
list_rows (SoftStore *s,
           StmtId id,
           gsize row_size,
           TallySqliteRowReader read,
           GDestroyNotify free_row,
           const char *what,
           GError **error)
{
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, id);
  return tally_sqlite_collect (s->db, st, row_size, read, s, free_row, what, error);
}

static GPtrArray *
soft_spent_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_SPENT_UNSETTLED, sizeof (TallySpentRow),
                    (TallySqliteRowReader) read_spent_row, (GDestroyNotify) tally_spent_row_free,
                    "listing spent entries", error);
}

/* --- received --- */

static gboolean
soft_received_insert (gpointer store, const TallyReceivedRow *row, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_RECEIVED_INSERT);
  tally_sqlite_bind_blob (st, 1, row->payer_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, row->payer_counter);
  tally_sqlite_bind_bytes (st, 3, row->permission);
  tally_sqlite_bind_bytes (st, 4, row->payer_certificate);
  tally_sqlite_bind_bytes (st, 5, row->receipt);
  sqlite3_bind_int64 (st, 6, row->amount);
  tally_sqlite_bind_text (st, 7, row->memo ? row->memo : "");
  tally_sqlite_bind_u64 (st, 8, row->received_at);
  tally_sqlite_bind_blob (st, 9, row->permission_hash, TALLY_HASH_BYTES);
  tally_sqlite_bind_blob (st, 10, row->nonce, TALLY_NONCE_BYTES);
  tally_sqlite_bind_text (st, 11, state_name (row->state));
  return tally_sqlite_step_done (s->db, st, "storing a received payment", error);
}

static gboolean
read_received_row (SoftStore *s, sqlite3_stmt *st, TallyReceivedRow *row, GError **error)
{
  if (!tally_sqlite_column_fixed (s->db, st, 0, row->payer_id, TALLY_ID_BYTES, error) ||
      !tally_sqlite_column_fixed (s->db, st, 8, row->permission_hash, TALLY_HASH_BYTES, error) ||
      !tally_sqlite_column_fixed (s->db, st, 9, row->nonce, TALLY_NONCE_BYTES, error) ||
      !col_state (s, st, 10, &row->state, error))
    return FALSE;
  row->payer_counter = tally_sqlite_column_u64 (st, 1);
  row->permission = tally_sqlite_column_bytes (st, 2);
  row->payer_certificate = tally_sqlite_column_bytes (st, 3);
  row->receipt = tally_sqlite_column_bytes (st, 4);
  row->amount = sqlite3_column_int64 (st, 5);
  row->memo = tally_sqlite_column_text (st, 6);
  row->received_at = tally_sqlite_column_u64 (st, 7);
  return TRUE;
}

static gboolean
soft_received_find (gpointer store,
                    const guint8 payer_id[static TALLY_ID_BYTES],
                    guint64 payer_counter,
                    const guint8 permission_hash[static TALLY_HASH_BYTES],
                    gboolean *same_permission,
                    gboolean *counter_used,
                    GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_RECEIVED_FIND);
  tally_sqlite_bind_blob (st, 1, payer_id, TALLY_ID_BYTES);
  tally_sqlite_bind_u64 (st, 2, payer_counter);
  tally_sqlite_bind_blob (st, 3, permission_hash, TALLY_HASH_BYTES);
  *same_permission = *counter_used = FALSE;
  gboolean have;
  while (tally_sqlite_step_next (s->db, st, &have, "looking up received payments", error)) {
    if (!have)
      return TRUE;
    if (sqlite3_column_int (st, 0))
      *same_permission = TRUE;
    else
      *counter_used = TRUE;
  }
  return FALSE;
}

static gboolean
soft_received_settle (gpointer store,
                      const guint8 permission_hash[static TALLY_HASH_BYTES],
                      GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_RECEIVED_SETTLE);
  tally_sqlite_bind_blob (st, 1, permission_hash, TALLY_HASH_BYTES);
  return tally_sqlite_step_done (s->db, st, "settling a received payment", error);
}

static GBytes *
soft_received_get_receipt (gpointer store,
                           const guint8 permission_hash[static TALLY_HASH_BYTES],
                           GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_RECEIVED_RECEIPT);
  tally_sqlite_bind_blob (st, 1, permission_hash, TALLY_HASH_BYTES);
  return get_blob (s, st, "no payment with that permission", "looking up a receipt", error);
}

static GPtrArray *
soft_received_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_RECEIVED_UNSETTLED, sizeof (TallyReceivedRow),
                    (TallySqliteRowReader) read_received_row,
                    (GDestroyNotify) tally_received_row_free, "listing received payments", error);
}

/* --- nonces --- */

static gboolean
soft_nonce_insert (gpointer store, const TallyNonceRow *row, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_NONCE_INSERT);
  tally_sqlite_bind_blob (st, 1, row->nonce, TALLY_NONCE_BYTES);
  sqlite3_bind_int64 (st, 2, row->amount);
  tally_sqlite_bind_text (st, 3, row->currency);
  tally_sqlite_bind_text (st, 4, row->memo ? row->memo : "");
  tally_sqlite_bind_u64 (st, 5, row->created_at);
  tally_sqlite_bind_u64 (st, 6, row->expires_at);
  return tally_sqlite_step_done (s->db, st, "storing a payment request", error);
}

static gboolean
read_nonce_row (SoftStore *s, sqlite3_stmt *st, TallyNonceRow *row, GError **error)
{
  if (!tally_sqlite_column_fixed (s->db, st, 0, row->nonce, TALLY_NONCE_BYTES, error))
    return FALSE;
  row->amount = sqlite3_column_int64 (st, 1);
  row->currency = tally_sqlite_column_text (st, 2);
  row->memo = tally_sqlite_column_text (st, 3);
  row->created_at = tally_sqlite_column_u64 (st, 4);
  row->consumed = sqlite3_column_type (st, 5) != SQLITE_NULL;
  row->consumed_at = row->consumed ? tally_sqlite_column_u64 (st, 5) : 0;
  row->expires_at = tally_sqlite_column_u64 (st, 6);
  return TRUE;
}

static gboolean
soft_nonce_lookup (gpointer store,
                   const guint8 nonce[static TALLY_NONCE_BYTES],
                   TallyNonceRow *row,
                   gboolean *found,
                   GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_NONCE_LOOKUP);
  tally_sqlite_bind_blob (st, 1, nonce, TALLY_NONCE_BYTES);
  return tally_sqlite_lookup (s->db, st, (TallySqliteRowReader) read_nonce_row, s, row, found,
                              "looking up a payment request", error);
}

static gboolean
soft_certificate_put (gpointer store,
                      const guint8 hash[static TALLY_HASH_BYTES],
                      GBytes *envelope,
                      guint64 not_after,
                      GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_CERTIFICATE_PUT);
  tally_sqlite_bind_blob (st, 1, hash, TALLY_HASH_BYTES);
  tally_sqlite_bind_blob (st, 2, g_bytes_get_data (envelope, NULL), g_bytes_get_size (envelope));
  tally_sqlite_bind_u64 (st, 3, not_after);
  return tally_sqlite_step_done (s->db, st, "caching a certificate", error);
}

static GBytes *
soft_certificate_get (gpointer store, const guint8 hash[static TALLY_HASH_BYTES], GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_CERTIFICATE_GET);
  tally_sqlite_bind_blob (st, 1, hash, TALLY_HASH_BYTES);
  return get_blob (s, st, "certificate not in the cache", "looking up a cached certificate", error);
}

static gboolean
soft_peer_put (gpointer store,
               const guint8 peer_id[static TALLY_ID_BYTES],
               const guint8 our_certificate[static TALLY_HASH_BYTES],
               GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_PEER_PUT);
  tally_sqlite_bind_blob (st, 1, peer_id, TALLY_ID_BYTES);
  tally_sqlite_bind_blob (st, 2, our_certificate, TALLY_HASH_BYTES);
  return tally_sqlite_step_done (s->db, st, "remembering a peer", error);
}

static gboolean
soft_peer_get (gpointer store,
               const guint8 peer_id[static TALLY_ID_BYTES],
               guint8 our_certificate[static TALLY_HASH_BYTES],
               gboolean *found,
               GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_PEER_GET);
  tally_sqlite_bind_blob (st, 1, peer_id, TALLY_ID_BYTES);
  *found = FALSE;
  gboolean have;
  if (!tally_sqlite_step_next (s->db, st, &have, "looking up a peer", error))
    return FALSE;
  return !have || (*found = tally_sqlite_column_fixed (s->db, st, 0, our_certificate,
                                                       TALLY_HASH_BYTES, error));
}

static gboolean
soft_nonce_consume (gpointer store,
                    const guint8 nonce[static TALLY_NONCE_BYTES],
                    guint64 now,
                    GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_NONCE_CONSUME);
  tally_sqlite_bind_u64 (st, 1, now);
  tally_sqlite_bind_blob (st, 2, nonce, TALLY_NONCE_BYTES);
  gboolean missing;
  if (tally_sqlite_step_update (s->db, st, &missing, "consuming a nonce", error))
    return TRUE;
  return missing ? tally_sqlite_corrupt (s->db, "nonce vanished or was consumed", error) : FALSE;
}

static gboolean
soft_nonces_prune (gpointer store, guint64 now, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_NONCE_PRUNE);
  tally_sqlite_bind_u64 (st, 1, now);
  return tally_sqlite_step_done (s->db, st, "dropping expired payment requests", error);
}

static GPtrArray *
soft_nonce_list (gpointer store, GError **error)
{
  return list_rows (store, STMT_NONCE_LIST, sizeof (TallyNonceRow),
                    (TallySqliteRowReader) read_nonce_row, (GDestroyNotify) tally_nonce_row_free,
                    "listing payment requests", error);
}

/* --- loads --- */

static gboolean
soft_load_insert (gpointer store, const TallyLoadRow *row, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_LOAD_INSERT);
  tally_sqlite_bind_u64 (st, 1, row->sequence);
  tally_sqlite_bind_bytes (st, 2, row->envelope);
  sqlite3_bind_int64 (st, 3, row->amount);
  tally_sqlite_bind_u64 (st, 4, row->applied_at);
  tally_sqlite_bind_text (st, 5, state_name (row->state));
  return tally_sqlite_step_done (s->db, st, "storing a load", error);
}

static gboolean
read_load_row (SoftStore *s, sqlite3_stmt *st, TallyLoadRow *row, GError **error)
{
  if (!col_state (s, st, 4, &row->state, error))
    return FALSE;
  row->sequence = tally_sqlite_column_u64 (st, 0);
  row->envelope = tally_sqlite_column_bytes (st, 1);
  row->amount = sqlite3_column_int64 (st, 2);
  row->applied_at = tally_sqlite_column_u64 (st, 3);
  return TRUE;
}

static gboolean
soft_loads_settle_through (gpointer store, guint64 sequence, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_LOADS_SETTLE);
  sqlite3_bind_int64 (st, 1, (sqlite3_int64) sequence);
  return tally_sqlite_step_done (s->db, st, "settling loads", error);
}

static GPtrArray *
soft_loads_list_unsettled (gpointer store, GError **error)
{
  return list_rows (store, STMT_LOADS_UNSETTLED, sizeof (TallyLoadRow),
                    (TallySqliteRowReader) read_load_row, (GDestroyNotify) tally_load_row_free,
                    "listing loads", error);
}

/* --- history --- */

/* The payer's certified name from the certificate it paid with (verified
 * when it paid), and the receipt id: the permission hash the payee stored,
 * or the payer's own permission hashed again. */
static gboolean
read_history_extra (SoftStore *s, sqlite3_stmt *st, TallyHistoryEntry *entry, GError **error)
{
  g_autoptr (GBytes) certificate = tally_sqlite_column_bytes (st, 8);
  if (certificate != NULL) {
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (
      g_bytes_get_data (certificate, NULL), g_bytes_get_size (certificate), error);
    if (env == NULL)
      return FALSE;
    g_autoptr (Tally__RegisterCertificate) cert =
      tally__register_certificate__unpack (NULL, env->body.len, env->body.data);
    if (cert == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                   "a stored payer certificate is corrupt");
      return FALSE;
    }
    if (cert->display_name != NULL && *cert->display_name != '\0')
      entry->peer_name = g_strdup (cert->display_name);
  }
  guint8 hash[TALLY_HASH_BYTES];
  if (sqlite3_column_type (st, 9) != SQLITE_NULL) {
    if (!tally_sqlite_column_fixed (s->db, st, 9, hash, sizeof hash, error))
      return FALSE;
    entry->receipt_id = tally_hex_encode (hash, sizeof hash);
  }
  g_autoptr (GBytes) permission = tally_sqlite_column_bytes (st, 10);
  if (permission != NULL) {
    g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (
      g_bytes_get_data (permission, NULL), g_bytes_get_size (permission), error);
    if (env == NULL)
      return FALSE;
    tally_envelope_body_hash (env, hash);
    entry->receipt_id = tally_hex_encode (hash, sizeof hash);
  }
  if (entry->peer_name == NULL)
    entry->peer_name = tally_sqlite_column_text (st, 11);
  return TRUE;
}

static gboolean
read_history_entry (SoftStore *s, sqlite3_stmt *st, TallyHistoryEntry *entry, GError **error)
{
  if (!col_kind (s, st, 0, &entry->kind, error) || !col_state (s, st, 1, &entry->state, error))
    return FALSE;
  entry->amount = sqlite3_column_int64 (st, 2);
  entry->counter = tally_sqlite_column_u64 (st, 3);
  entry->sequence = tally_sqlite_column_u64 (st, 4);
  entry->time = tally_sqlite_column_u64 (st, 5);
  if (sqlite3_column_type (st, 6) != SQLITE_NULL) {
    guint8 peer[TALLY_ID_BYTES];
    if (!tally_sqlite_column_fixed (s->db, st, 6, peer, sizeof peer, error))
      return FALSE;
    entry->peer = tally_hex_encode (peer, sizeof peer);
  }
  entry->memo = tally_sqlite_column_text (st, 7);
  return read_history_extra (s, st, entry, error);
}

static GPtrArray *
soft_history (gpointer store, guint limit, GError **error)
{
  SoftStore *s = store;
  g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_HISTORY);
  sqlite3_bind_int64 (st, 1, limit == 0 ? -1 : (sqlite3_int64) limit);
  return tally_sqlite_collect (
    s->db, st, sizeof (TallyHistoryEntry), (TallySqliteRowReader) read_history_entry, s,
    (GDestroyNotify) tally_history_entry_free, "reading the history", error);
}

/* --- transactions --- */

static gboolean
soft_begin (gpointer store, gboolean write, GError **error)
{
  SoftStore *s = store;
  return tally_sqlite_begin (s->db, write, error);
}

static gboolean
soft_commit (gpointer store, GError **error)
{
  SoftStore *s = store;
  return tally_sqlite_commit (s->db, error);
}

static void
soft_rollback (gpointer store)
{
  SoftStore *s = store;
  tally_sqlite_rollback (s->db);
}

/* --- key --- */

static gboolean
soft_load_key (gpointer store, guint8 public_key[static TALLY_PUBLIC_KEY_BYTES], GError **error)
{
  SoftStore *s = store;
  if (s->secret_key == NULL) {
    guint8 *sk = tally_secret_key_new ();
    if (!tally_key_file_read (s->key_path, sk, error)) {
      tally_secret_key_free (sk);
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
                    guint8 signature[static TALLY_SIGNATURE_BYTES])
{
  SoftStore *s = store;
  g_return_if_fail (s->secret_key != NULL);
  sodium_mprotect_readonly (s->secret_key);
  tally_sign_detached (ctx, data, len, s->secret_key, signature);
  sodium_mprotect_noaccess (s->secret_key);
}

static void
soft_sign_enrolment (gpointer store,
                     const guint8 *statement,
                     gsize len,
                     guint8 signature[static TALLY_SIGNATURE_BYTES])
{
  SoftStore *s = store;
  g_return_if_fail (s->secret_key != NULL);
  sodium_mprotect_readonly (s->secret_key);
  crypto_sign_detached (signature, NULL, statement, len, s->secret_key);
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
create_storage (SoftStore *s, const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES], GError **error)
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

  if (!db_open (s, TRUE, error) || !tally_sqlite_begin (s->db, TRUE, error))
    return FALSE;

  TallyRegisterState state = { 0 };
  tally_register_state_init (&state, s->public_key, issuer_key);
  gboolean ok = tally_sqlite_exec (s->db,
                                   "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT;"
                                   "INSERT INTO schema_version VALUES (0);",
                                   NULL, error) &&
                schema_migrate (s, 0, error) &&
                tally_sqlite_prepare (s->db, tally_register_soft_stmt_sql, N_STMTS, error);
  if (ok) {
    g_autoptr (TallySqliteStmt) st = tally_sqlite_stmt (s->db, STMT_STATE_INSERT);
    bind_state (st, &state);
    ok = tally_sqlite_step_done (s->db, st, "storing the register state", error);
  }
  ok = ok && tally_sqlite_commit (s->db, error);
  tally_register_state_clear (&state);
  return ok;
}

static gpointer
soft_create (const char *dir, const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES], GError **error)
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
    g_clear_pointer (&s->db, tally_sqlite_free);
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
  if (version != SCHEMA_VERSION) {
    if (!tally_sqlite_begin (s->db, TRUE, error))
      return NULL;
    /* Read again under the write lock: another process opening the same
     * register may have migrated it since the read above. */
    if (!schema_version_read (s, &version, error) || !schema_migrate (s, version, error) ||
        !tally_sqlite_commit (s->db, error)) {
      soft_rollback (s);
      return NULL;
    }
  }
  if (!tally_sqlite_prepare (s->db, tally_register_soft_stmt_sql, N_STMTS, error))
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
  .sign_enrolment = soft_sign_enrolment,
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
  .nonces_prune = soft_nonces_prune,
  .load_insert = soft_load_insert,
  .loads_settle_through = soft_loads_settle_through,
  .loads_list_unsettled = soft_loads_list_unsettled,
  .certificate_put = soft_certificate_put,
  .certificate_get = soft_certificate_get,
  .peer_put = soft_peer_put,
  .peer_get = soft_peer_get,
  .history = soft_history,
};
