/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer store's schema: version 1 and the migrations that follow it.
 */
#include "tally-issuer-store-private.h"

/* Every database starts as version 1 and is brought up to date by the
 * migrations below, in order, inside one transaction: a new database and an
 * old one that was migrated have the same schema. */
static const char schema_v1_sql[] =
  "CREATE TABLE schema_version (version INTEGER NOT NULL);"
  "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
  "CREATE TABLE totals ("
  "  id INTEGER PRIMARY KEY CHECK (id = 1),"
  "  issued INTEGER NOT NULL,"
  "  in_flight INTEGER NOT NULL,"
  "  fraud_exposure INTEGER NOT NULL);"
  "INSERT INTO totals (id, issued, in_flight, fraud_exposure) VALUES (1, 0, 0, 0);"
  "CREATE TABLE accounts ("
  "  name TEXT PRIMARY KEY,"
  "  balance INTEGER NOT NULL CHECK (balance >= 0));"
  "CREATE TABLE registers ("
  "  id BLOB PRIMARY KEY,"
  "  public_key BLOB NOT NULL,"
  "  account TEXT NOT NULL REFERENCES accounts (name),"
  "  max_payment INTEGER NOT NULL,"
  "  balance_cap INTEGER NOT NULL,"
  "  max_offline_payments INTEGER NOT NULL,"
  "  max_offline_seconds INTEGER NOT NULL,"
  "  validity INTEGER NOT NULL,"
  "  cert_serial INTEGER NOT NULL,"
  "  settled_counter INTEGER NOT NULL,"
  "  revoked INTEGER NOT NULL,"
  "  view_balance INTEGER NOT NULL);"
  "CREATE TABLE vouchers ("
  "  register_id BLOB NOT NULL REFERENCES registers (id),"
  "  sequence INTEGER NOT NULL,"
  "  amount INTEGER NOT NULL,"
  "  issued_at INTEGER NOT NULL,"
  "  envelope BLOB NOT NULL,"
  "  PRIMARY KEY (register_id, sequence));"
  "CREATE TABLE entries ("
  "  hash BLOB PRIMARY KEY,"
  "  register_id BLOB NOT NULL,"
  "  counter INTEGER NOT NULL,"
  "  kind INTEGER NOT NULL,"
  "  payee_id BLOB,"
  "  amount INTEGER NOT NULL,"
  "  state INTEGER NOT NULL,"
  "  payer_reported INTEGER NOT NULL,"
  "  payee_reported INTEGER NOT NULL,"
  "  chain_prev BLOB NOT NULL,"
  "  chain_after BLOB NOT NULL,"
  "  envelope BLOB NOT NULL,"
  "  booked_at INTEGER NOT NULL);"
  "CREATE INDEX entries_by_counter ON entries (register_id, counter);"
  "CREATE TABLE fraud_proofs ("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  register_id BLOB NOT NULL,"
  "  kind INTEGER NOT NULL,"
  "  detected_at INTEGER NOT NULL,"
  "  envelope BLOB NOT NULL);"
  "CREATE INDEX fraud_proofs_by_register ON fraud_proofs (register_id);"
  "CREATE TABLE revocation_lists ("
  "  serial INTEGER PRIMARY KEY,"
  "  issued_at INTEGER NOT NULL,"
  "  envelope BLOB NOT NULL);";

/* migrations[i] takes a database from version i + 1 to i + 2. */
static const char *const migrations[] = {
  /* 2: expiring permissions (docs/protocol.md 5).  Entries booked before
   * carry expires_at 0 and are never reclaimed; the partial index finds a
   * payee's expired permissions in flight without scanning the table. */
  "ALTER TABLE registers ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE entries ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE entries ADD COLUMN receipt BLOB;"
  "ALTER TABLE totals ADD COLUMN reclaimed_count INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE totals ADD COLUMN reclaimed INTEGER NOT NULL DEFAULT 0;"
  "CREATE TABLE horizon_bundles ("
  "  register_id BLOB PRIMARY KEY REFERENCES registers (id),"
  "  envelope BLOB NOT NULL);"
  "CREATE INDEX entries_in_flight_by_payee ON entries (payee_id, expires_at) WHERE state = 1;",
  /* 3: certified display names (docs/protocol.md 2.1).  Registers certified
   * before have none (NULL) and keep having none when renewed. */
  "ALTER TABLE registers ADD COLUMN display_name TEXT;",
  /* 4: the issuer credits only what signed evidence backs (docs/protocol.md
   * 5.5).  A defund records what it was credited, which may be less than
   * it claimed; a register records what it was refused and the deficit a
   * fraud proof has shown, and the largest max_payment it was ever
   * certified with; a payment above it is tainted: its payee accepted what
   * no honest payee would, and it is no evidence for that payee.  Defunds
   * booked before were credited in full.
   * totals.fraud_exposure is no longer kept: the audit derives exposure
   * from the registers' views. */
  "ALTER TABLE entries ADD COLUMN credited INTEGER NOT NULL DEFAULT 0;"
  "UPDATE entries SET credited = amount WHERE kind = 2 OR state = 3;"
  "ALTER TABLE registers ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE registers ADD COLUMN deficit INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE registers ADD COLUMN max_payment_ever INTEGER NOT NULL DEFAULT 0;"
  "UPDATE registers SET max_payment_ever = max_payment;"
  "ALTER TABLE entries ADD COLUMN tainted INTEGER NOT NULL DEFAULT 0;"
  "CREATE INDEX entries_by_payee ON entries (payee_id, state);",
  /* 5: the lost-register refund (docs/threat-model.md, "A lost or stolen
   * device").  A register's view is its evidence less the refund paid out
   * to its account, net of what was taken back. */
  "ALTER TABLE registers ADD COLUMN lost_at INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE registers ADD COLUMN refunded_at INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE registers ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE registers ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;"
  /* The latest not_after of any certificate issued to the register, which
   * bounds the refund window.  The store keeps no certificate, so a
   * register certified before holds, conservatively, the latest the
   * issuer's policy could have given it: every certificate was issued by
   * now, on the issuer's clock, and for no longer than the longest
   * validity any register holds now, or a year (366 days) if that is
   * longer: a register renewed with a shorter certificate held a longer
   * one before, whose length no row keeps (docs/issuer-store.md). */
  "ALTER TABLE registers ADD COLUMN not_after_ever INTEGER NOT NULL DEFAULT 0;"
  "UPDATE registers SET not_after_ever = CAST(strftime('%s', 'now') AS INTEGER) + "
  "  MAX(COALESCE((SELECT MAX(validity) FROM registers), 0), 31622400);",
};

/* Creates an empty database at version 1, or refuses one that is no issuer
 * database; then migrates it to the newest version, all in one transaction. */
gboolean
tally_issuer_store_schema_setup (TallySqlite *db, gboolean create, GError **error)
{
  if (!tally_sqlite_begin (db, TRUE, error))
    return FALSE;

  gboolean exists;
  gint64 version;
  if (!tally_sqlite_schema_version (db, &exists, &version, error))
    goto fail;
  if (!exists && create) {
    g_autofree char *sql =
      g_strconcat (schema_v1_sql, " INSERT INTO schema_version (version) VALUES (1);", NULL);
    if (!tally_sqlite_exec (db, sql, "creating schema", error))
      goto fail;
    version = 1;
  } else if (!exists) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is not an issuer database",
                 tally_sqlite_path (db));
    goto fail;
  }
  if (!tally_sqlite_migrate (db, migrations, G_N_ELEMENTS (migrations), 1, version, error))
    goto fail;
  return tally_sqlite_commit (db, error);

fail:
  tally_sqlite_rollback (db);
  return FALSE;
}
