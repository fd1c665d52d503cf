/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer store's PostgreSQL schema and its migrations.
 *
 * The tables are those of the SQLite schema (tally-issuer-store-schema.c)
 * at its version 4, in PostgreSQL's types: bytea for ids, hashes and
 * envelopes, int8 for amounts, counters and times (unsigned protocol values
 * keep their bits, as in SQLite), bool for flags.  A PostgreSQL store
 * therefore starts at version 4, and a later change to the schema takes
 * the same version number in both backends.
 *
 * The tables are created in the connection's current schema (the first of
 * its search_path), so one database may hold several issuers, one per
 * schema.
 */
#include "tally-issuer-store-private.h"

#define PG_FIRST_VERSION 4

static const char schema_sql[] =
  "CREATE TABLE schema_version (version int8 NOT NULL);"
  "CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL);"
  /* The one row every operation locks first (tally-issuer-store-pg.c). */
  "CREATE TABLE totals ("
  "  id int4 PRIMARY KEY CHECK (id = 1),"
  "  issued int8 NOT NULL,"
  "  in_flight int8 NOT NULL,"
  "  reclaimed_count int8 NOT NULL,"
  "  reclaimed int8 NOT NULL);"
  "INSERT INTO totals (id, issued, in_flight, reclaimed_count, reclaimed) "
  "  VALUES (1, 0, 0, 0, 0);"
  "CREATE TABLE accounts ("
  "  name text PRIMARY KEY,"
  "  balance int8 NOT NULL CHECK (balance >= 0));"
  "CREATE TABLE registers ("
  "  id bytea PRIMARY KEY,"
  "  public_key bytea NOT NULL,"
  "  account text NOT NULL REFERENCES accounts (name),"
  "  max_payment int8 NOT NULL,"
  "  balance_cap int8 NOT NULL,"
  "  max_offline_payments int8 NOT NULL,"
  "  max_offline_seconds int8 NOT NULL,"
  "  validity int8 NOT NULL,"
  "  cert_serial int8 NOT NULL,"
  "  settled_counter int8 NOT NULL,"
  "  revoked bool NOT NULL,"
  "  view_balance int8 NOT NULL,"
  "  horizon int8 NOT NULL,"
  "  refused int8 NOT NULL,"
  "  deficit int8 NOT NULL,"
  "  max_payment_ever int8 NOT NULL,"
  "  display_name text);"
  "CREATE TABLE vouchers ("
  "  register_id bytea NOT NULL REFERENCES registers (id),"
  "  sequence int8 NOT NULL,"
  "  amount int8 NOT NULL,"
  "  issued_at int8 NOT NULL,"
  "  envelope bytea NOT NULL,"
  "  PRIMARY KEY (register_id, sequence));"
  /* booked orders the entries of one counter as SQLite's rowid does. */
  "CREATE TABLE entries ("
  "  booked int8 GENERATED ALWAYS AS IDENTITY UNIQUE,"
  "  hash bytea PRIMARY KEY,"
  "  register_id bytea NOT NULL,"
  "  counter int8 NOT NULL,"
  "  kind int4 NOT NULL,"
  "  payee_id bytea,"
  "  amount int8 NOT NULL,"
  "  state int4 NOT NULL,"
  "  payer_reported bool NOT NULL,"
  "  payee_reported bool NOT NULL,"
  "  chain_prev bytea NOT NULL,"
  "  chain_after bytea NOT NULL,"
  "  envelope bytea NOT NULL,"
  "  booked_at int8 NOT NULL,"
  "  expires_at int8 NOT NULL,"
  "  receipt bytea,"
  "  credited int8 NOT NULL,"
  "  tainted bool NOT NULL);"
  "CREATE INDEX entries_by_counter ON entries (register_id, counter);"
  "CREATE INDEX entries_in_flight_by_payee ON entries (payee_id, expires_at) WHERE state = 1;"
  "CREATE INDEX entries_by_payee ON entries (payee_id, state);"
  "CREATE TABLE horizon_bundles ("
  "  register_id bytea PRIMARY KEY REFERENCES registers (id),"
  "  envelope bytea NOT NULL);"
  "CREATE TABLE fraud_proofs ("
  "  id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
  "  register_id bytea NOT NULL,"
  "  kind int4 NOT NULL,"
  "  detected_at int8 NOT NULL,"
  "  envelope bytea NOT NULL);"
  "CREATE INDEX fraud_proofs_by_register ON fraud_proofs (register_id);"
  "CREATE TABLE revocation_lists ("
  "  serial int8 PRIMARY KEY,"
  "  issued_at int8 NOT NULL,"
  "  envelope bytea NOT NULL);";

/* migrations[i] takes a store from version PG_FIRST_VERSION + i to the
 * next; NULL ends the list.  The same steps as SQLite's from version 4. */
static const char *const migrations[] = {
  /* 5: the lost-register refund (tally-issuer-store-schema.c). */
  "ALTER TABLE registers ADD COLUMN lost_at int8 NOT NULL DEFAULT 0,"
  "  ADD COLUMN refunded_at int8 NOT NULL DEFAULT 0,"
  "  ADD COLUMN refunded int8 NOT NULL DEFAULT 0,"
  "  ADD COLUMN recovered int8 NOT NULL DEFAULT 0,"
  "  ADD COLUMN not_after_ever int8 NOT NULL DEFAULT 0;"
  /* As in SQLite: now on the issuer's clock (tally.migrated_at, set by
   * migrate ()), not the server's, plus the longest validity, at least a
   * year. */
  "UPDATE registers SET not_after_ever = current_setting('tally.migrated_at')::int8 + "
  "  GREATEST(COALESCE((SELECT max(validity) FROM registers), 0), 31622400);",
  NULL,
};

static gboolean
migrate (TallyPg *db, gint64 from, GError **error)
{
  guint n = 0;
  while (migrations[n] != NULL)
    n++;
  gint64 latest = PG_FIRST_VERSION + (gint64) n;
  if (from < PG_FIRST_VERSION || from > latest) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "%s has schema version %" G_GINT64_FORMAT
                 ", this build knows %d..%" G_GINT64_FORMAT,
                 tally_pg_name (db), from, PG_FIRST_VERSION, latest);
    return FALSE;
  }
  /* The issuer's clock for the migrations, for this transaction only. */
  g_autofree char *clock = g_strdup_printf ("SET LOCAL tally.migrated_at = '%" G_GINT64_FORMAT "'",
                                            g_get_real_time () / G_USEC_PER_SEC);
  if (from < latest && !tally_pg_exec (db, clock, "setting the migration's clock", error))
    return FALSE;
  for (gint64 v = from; v < latest; v++) {
    g_autofree char *what =
      g_strdup_printf ("migrating schema to version %" G_GINT64_FORMAT, v + 1);
    if (!tally_pg_exec (db, migrations[v - PG_FIRST_VERSION], what, error))
      return FALSE;
    g_info ("%s: schema migrated to version %" G_GINT64_FORMAT, tally_pg_name (db), v + 1);
  }
  if (from == latest)
    return TRUE;
  /* A constant of this build, not a value from outside. */
  g_autofree char *sql =
    g_strdup_printf ("UPDATE schema_version SET version = %" G_GINT64_FORMAT, latest);
  return tally_pg_exec (db, sql, "schema", error);
}

static gboolean
setup (TallyPg *db, gboolean create, GError **error)
{
  /* Two processes opening a new store at once: the second waits for the
   * first to create the tables, then finds them. */
  if (!tally_pg_exec (db, "SELECT pg_advisory_xact_lock(7459736575020291122)", "schema lock",
                      error))
    return FALSE;

  gboolean found;
  gint64 tables;
  if (!tally_pg_query_int8 (db,
                            "SELECT count(*) FROM pg_catalog.pg_tables "
                            "WHERE schemaname = current_schema() AND tablename = 'schema_version'",
                            "reading the schema", &found, &tables, error))
    return FALSE;
  if (tables == 0 && !create) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s is not an issuer database",
                 tally_pg_name (db));
    return FALSE;
  }
  if (tables == 0) {
    g_autofree char *sql = g_strdup_printf ("%s INSERT INTO schema_version (version) VALUES (%d);",
                                            schema_sql, PG_FIRST_VERSION);
    return tally_pg_exec (db, sql, "creating schema", error) &&
           migrate (db, PG_FIRST_VERSION, error);
  }

  gint64 version;
  if (!tally_pg_query_int8 (db, "SELECT version FROM schema_version", "reading the schema version",
                            &found, &version, error))
    return FALSE;
  if (!found)
    return tally_pg_corrupt (db, "no schema version", error);
  return migrate (db, version, error);
}

gboolean
tally_issuer_store_pg_schema_setup (TallyPg *db, gboolean create, GError **error)
{
  if (!tally_pg_begin (db, error))
    return FALSE;
  if (setup (db, create, error))
    return tally_pg_commit (db, error);
  tally_pg_rollback (db);
  return FALSE;
}
