/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The soft register backend's SQL: the schema with its migrations and the
 * statements tally-register-soft.c prepares.
 */
#include "tally-register-soft.h"

/* migrations[i] takes the schema from version i to i + 1.  Append only. */
const char *const tally_register_soft_migrations[] = {
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
  /* 4 -> 5: the payee's certified name, for the history's listings (the
   * payee keeps the payer's whole certificate already). */
  "ALTER TABLE spent ADD COLUMN payee_name TEXT;",
};

const guint tally_register_soft_n_migrations = G_N_ELEMENTS (tally_register_soft_migrations);

#define STATE_COLUMNS                                                                              \
  "public_key, issuer_key, certificate, balance, counter, chain_head, offline_payments, "          \
  "last_reconciliation, last_voucher_sequence, revocation_list, revocation_serial, "              \
  "revocation_issued_at, last_result_at, closed, revoked, horizon"
#define SPENT_COLUMNS                                                                              \
  "counter, kind, envelope, payee_id, payee_key, amount, created_at, receipt, state, expires_at, " \
  "certificate_hash, payee_name"
#define RECEIVED_COLUMNS                                                                           \
  "payer_id, payer_counter, permission, payer_certificate, receipt, amount, memo, received_at, "  \
  "permission_hash, nonce, state"
#define NONCE_COLUMNS "nonce, amount, currency, memo, created_at, consumed_at, expires_at"
#define LOAD_COLUMNS  "sequence, envelope, amount, applied_at, state"

const char *const tally_register_soft_stmt_sql[N_STMTS] = {
  [STMT_STATE_READ] = "SELECT " STATE_COLUMNS " FROM register_state WHERE id = 1",
  [STMT_STATE_INSERT] = "INSERT INTO register_state (id, " STATE_COLUMNS ")"
                        " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  [STMT_STATE_WRITE] =
    "UPDATE register_state SET public_key = ?, issuer_key = ?, certificate = ?, balance = ?,"
    " counter = ?, chain_head = ?, offline_payments = ?, last_reconciliation = ?,"
    " last_voucher_sequence = ?, revocation_list = ?, revocation_serial = ?,"
    " revocation_issued_at = ?, last_result_at = ?, closed = ?, revoked = ?, horizon = ?"
    " WHERE id = 1",
  [STMT_SPENT_INSERT] =
    "INSERT INTO spent (" SPENT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
  [STMT_NONCE_PRUNE] = "DELETE FROM nonces WHERE consumed_at IS NULL AND expires_at <= ?"
                       " AND nonce NOT IN (SELECT nonce FROM received)",
  [STMT_LOAD_INSERT] = "INSERT INTO loads (" LOAD_COLUMNS ") VALUES (?, ?, ?, ?, ?)",
  [STMT_LOADS_SETTLE] = "UPDATE loads SET state = 'settled' WHERE state != 'settled' AND sequence <= ?",
  [STMT_LOADS_UNSETTLED] =
    "SELECT " LOAD_COLUMNS " FROM loads WHERE state != 'settled' ORDER BY sequence",
  [STMT_HISTORY] =
    "SELECT kind, state, amount, counter, sequence, time, peer, memo,"
    "       peer_certificate, permission_hash, permission, peer_name FROM ("
    "  SELECT 'load' AS kind, state, amount, 0 AS counter, sequence, applied_at AS time,"
    "         NULL AS peer, NULL AS memo, NULL AS peer_certificate, NULL AS permission_hash,"
    "         NULL AS permission, NULL AS peer_name, sequence AS tie FROM loads"
    "  UNION ALL"
    "  SELECT kind, state, amount, counter, 0, created_at, payee_id, NULL, NULL, NULL,"
    "         CASE WHEN kind = 'permission' THEN envelope END, payee_name, counter FROM spent"
    "  UNION ALL"
    "  SELECT 'received', state, amount, payer_counter, 0, received_at, payer_id,"
    "         NULLIF (memo, ''), payer_certificate, permission_hash, NULL, NULL, rowid"
    "  FROM received)"
    " ORDER BY time DESC, tie DESC LIMIT ?",
  [STMT_CERTIFICATE_PUT] =
    "INSERT OR IGNORE INTO certificates (hash, envelope, not_after) VALUES (?, ?, ?)",
  [STMT_CERTIFICATE_GET] = "SELECT envelope FROM certificates WHERE hash = ?",
  [STMT_PEER_PUT] = "INSERT OR REPLACE INTO peers (peer_id, our_certificate) VALUES (?, ?)",
  [STMT_PEER_GET] = "SELECT our_certificate FROM peers WHERE peer_id = ?",
};
