/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "issuer-test-util.h"
#include "tally-issuer-store.h"

typedef struct
{
  char *tmp;
  char *path; /* of the SQLite store */
  char *spec; /* the store under test (test_store_spec_new ()) */
  TallyIssuerStore *store;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuer-store-XXXXXX", &error);
  g_assert_no_error (error);
  f->path = g_build_filename (f->tmp, "issuer.db", NULL);
  f->spec = test_store_spec_new ();
  f->store = tally_issuer_store_open (f->spec, f->path, TRUE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->store);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  test_remove_tree (f->tmp);
  g_free (f->path);
  g_free (f->spec);
  g_free (f->tmp);
}

static void
reopen (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&f->store, tally_issuer_store_free);
  f->store = tally_issuer_store_open (f->spec, f->path, FALSE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->store);
}

static void
begin (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_store_begin (f->store, &error));
  g_assert_no_error (error);
}

static void
commit (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_store_commit (f->store, &error));
  g_assert_no_error (error);
}

static void
test_store_rolls_back_uncommitted_changes (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_true (tally_issuer_store_account_put (f->store, "alice", 500, &error));
  TallyIssuerTotals totals = { .issued = 500 };
  g_assert_true (tally_issuer_store_totals_put (f->store, &totals, &error));
  g_assert_no_error (error);
  tally_issuer_store_rollback (f->store);

  begin (f);
  gint64 balance;
  g_assert_false (tally_issuer_store_account_get (f->store, "alice", &balance, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_true (tally_issuer_store_totals_get (f->store, &totals, &error));
  g_assert_cmpint (totals.issued, ==, 0);
  commit (f);
}

static void
test_store_keeps_committed_changes_across_reopen (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();

  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_true (tally_issuer_store_account_put (f->store, "alice", 700, &error));
  TallyIssuerRegisterRow row = {
    .account = (char *) "alice",
    .display_name = (char *) "Caf\u00e9 Lumen",
    .max_payment = 10,
    .balance_cap = 20,
    .max_offline_payments = 3,
    .max_offline_seconds = 40,
    .validity = 50,
    .cert_serial = 6,
    .settled_counter = 7,
    .revoked = TRUE,
    .view_balance = -80,
  };
  memcpy (row.id, reg->id, TALLY_ID_BYTES);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_autoptr (GBytes) value = g_bytes_new_static ("v", 1);
  g_assert_true (tally_issuer_store_meta_set (f->store, "key", value, &error));
  g_assert_no_error (error);
  commit (f);

  reopen (f);
  begin (f);
  gint64 balance;
  g_assert_true (tally_issuer_store_account_get (f->store, "alice", &balance, &error));
  g_assert_cmpint (balance, ==, 700);
  g_auto (TallyIssuerRegisterRow) got = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &got, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (got.public_key, sizeof got.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpstr (got.account, ==, "alice");
  g_assert_cmpstr (got.display_name, ==, "Caf\u00e9 Lumen");
  g_assert_cmpint (got.max_payment, ==, 10);
  g_assert_cmpint (got.balance_cap, ==, 20);
  g_assert_cmpuint (got.max_offline_payments, ==, 3);
  g_assert_cmpuint (got.max_offline_seconds, ==, 40);
  g_assert_cmpuint (got.validity, ==, 50);
  g_assert_cmpuint (got.cert_serial, ==, 6);
  g_assert_cmpuint (got.settled_counter, ==, 7);
  g_assert_true (got.revoked);
  g_assert_cmpint (got.view_balance, ==, -80);
  g_autoptr (GBytes) got_value = NULL;
  g_assert_true (tally_issuer_store_meta_get (f->store, "key", &got_value, &error));
  g_assert_true (g_bytes_equal (got_value, value));

  g_autoptr (GPtrArray) revoked = NULL;
  g_assert_true (tally_issuer_store_register_list_revoked (f->store, &revoked, &error));
  g_assert_cmpuint (revoked->len, ==, 1);
  TallyIssuerSums sums;
  g_assert_true (tally_issuer_store_sums (f->store, &sums, &error));
  g_assert_cmpint (sums.online, ==, 700);
  /* A revoked register's negative view is exposure, not offline value. */
  g_assert_cmpint (sums.offline, ==, 0);
  g_assert_cmpint (sums.exposure, ==, 80);
  g_assert_cmpuint (sums.registers, ==, 1);
  g_assert_cmpuint (sums.revoked, ==, 1);
  commit (f);
}

static void
test_store_refuses_duplicate_account_and_entry (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_false (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_clear_error (&error);

  TallyIssuerEntryRow row = {
    .counter = 1,
    .kind = TALLY_ISSUER_ENTRY_PERMISSION,
    .amount = 5,
    .state = TALLY_ISSUER_ENTRY_IN_FLIGHT,
    .envelope = g_bytes_new_static ("e", 1),
  };
  memset (row.hash, 1, sizeof row.hash);
  g_assert_true (tally_issuer_store_entry_insert (f->store, &row, &error));
  g_assert_no_error (error);
  g_assert_false (tally_issuer_store_entry_insert (f->store, &row, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_bytes_unref (row.envelope);
  commit (f);
}

static void
test_store_lists_entries_by_counter_in_booking_order (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 reg[TALLY_ID_BYTES], other[TALLY_ID_BYTES];
  memset (reg, 0xaa, sizeof reg);
  memset (other, 0xbb, sizeof other);

  begin (f);
  for (guint i = 0; i < 4; i++) {
    TallyIssuerEntryRow row = {
      .counter = i < 3 ? 5 : 6,
      .kind = TALLY_ISSUER_ENTRY_PERMISSION,
      .has_payee = TRUE,
      .amount = 100 + i,
      .state = TALLY_ISSUER_ENTRY_IN_FLIGHT,
      .payer_reported = TRUE,
      .envelope = g_bytes_new (&i, sizeof i),
      .booked_at = 42,
    };
    memset (row.hash, 10 - i, sizeof row.hash); /* hashes sort against booking order */
    memcpy (row.register_id, i == 2 ? other : reg, TALLY_ID_BYTES);
    memset (row.payee_id, 0xcc, sizeof row.payee_id);
    memset (row.chain_prev, i, sizeof row.chain_prev);
    memset (row.chain_after, i + 1, sizeof row.chain_after);
    g_assert_true (tally_issuer_store_entry_insert (f->store, &row, &error));
    g_assert_no_error (error);
    g_bytes_unref (row.envelope);
  }

  g_autoptr (GPtrArray) at5 = NULL;
  g_assert_true (tally_issuer_store_entries_by_counter (f->store, reg, 5, &at5, &error));
  g_assert_cmpuint (at5->len, ==, 2);
  const TallyIssuerEntryRow *first = at5->pdata[0], *second = at5->pdata[1];
  g_assert_cmpint (first->amount, ==, 100);
  g_assert_cmpint (second->amount, ==, 101);
  g_assert_true (first->has_payee);
  g_assert_true (first->payer_reported);
  g_assert_false (first->payee_reported);
  g_assert_cmpuint (first->booked_at, ==, 42);
  g_assert_cmpuint (first->chain_after[0], ==, 1);

  g_autoptr (GPtrArray) none = NULL;
  g_assert_true (tally_issuer_store_entries_by_counter (f->store, reg, 7, &none, &error));
  g_assert_cmpuint (none->len, ==, 0);

  /* An update moves state and halves only. */
  TallyIssuerEntryRow *upd = at5->pdata[1];
  upd->state = TALLY_ISSUER_ENTRY_SETTLED;
  upd->payee_reported = TRUE;
  upd->amount = 999;
  g_assert_true (tally_issuer_store_entry_update (f->store, upd, &error));
  g_auto (TallyIssuerEntryRow) again = { 0 };
  g_assert_true (tally_issuer_store_entry_get_by_hash (f->store, upd->hash, &again, &error));
  g_assert_no_error (error);
  g_assert_cmpint (again.state, ==, TALLY_ISSUER_ENTRY_SETTLED);
  g_assert_true (again.payee_reported);
  g_assert_cmpint (again.amount, ==, 101);
  commit (f);
}

static void
test_store_refuses_database_of_unknown_schema (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_close (db);

  g_autoptr (GError) error = NULL;
  f->store = tally_issuer_store_sqlite_open (f->path, FALSE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_null (f->store);
}

static void
test_store_refuses_missing_database (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (f->tmp, "absent.db", NULL);
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_sqlite_open (path, FALSE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (store);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

static void
test_store_uses_write_ahead_log (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA journal_mode", -1, &st, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpstr ((const char *) sqlite3_column_text (st, 0), ==, "wal");
  sqlite3_finalize (st);
  sqlite3_close (db);
}

static void
test_store_keeps_horizon_receipt_and_reclaim_totals (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (GBytes) receipt = g_bytes_new_static ("receipt", 7);
  g_autoptr (GBytes) bundle1 = g_bytes_new_static ("bundle-1", 8);
  g_autoptr (GBytes) bundle2 = g_bytes_new_static ("bundle-2", 8);

  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  TallyIssuerRegisterRow row = { .account = (char *) "alice", .horizon = G_MAXUINT64 - 1 };
  memcpy (row.id, reg->id, TALLY_ID_BYTES);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_autoptr (GBytes) none = NULL;
  g_assert_false (tally_issuer_store_horizon_bundle_get (f->store, reg->id, &none, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_true (tally_issuer_store_horizon_bundle_put (f->store, reg->id, bundle1, &error));
  g_assert_true (tally_issuer_store_horizon_bundle_put (f->store, reg->id, bundle2, &error));

  TallyIssuerEntryRow entry = {
    .counter = 1,
    .kind = TALLY_ISSUER_ENTRY_PERMISSION,
    .has_payee = TRUE,
    .amount = 5,
    .state = TALLY_ISSUER_ENTRY_IN_FLIGHT,
    .envelope = g_bytes_new_static ("e", 1),
    .expires_at = G_MAXUINT64,
  };
  memset (entry.hash, 7, sizeof entry.hash);
  memcpy (entry.payee_id, reg->id, TALLY_ID_BYTES);
  g_assert_true (tally_issuer_store_entry_insert (f->store, &entry, &error));
  entry.state = TALLY_ISSUER_ENTRY_RECLAIMED;
  entry.payee_reported = TRUE;
  entry.receipt = receipt;
  g_assert_true (tally_issuer_store_entry_update (f->store, &entry, &error));
  g_bytes_unref (entry.envelope);

  TallyIssuerTotals totals;
  g_assert_true (tally_issuer_store_totals_get (f->store, &totals, &error));
  g_assert_cmpuint (totals.reclaimed_count, ==, 0);
  g_assert_cmpint (totals.reclaimed, ==, 0);
  totals.reclaimed_count = 3;
  totals.reclaimed = 12345;
  g_assert_true (tally_issuer_store_totals_put (f->store, &totals, &error));
  g_assert_no_error (error);
  commit (f);

  reopen (f);
  begin (f);
  g_auto (TallyIssuerRegisterRow) got = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &got, &error));
  g_assert_cmpuint (got.horizon, ==, G_MAXUINT64 - 1);
  g_assert_null (got.display_name);
  g_autoptr (GBytes) stored = NULL;
  g_assert_true (tally_issuer_store_horizon_bundle_get (f->store, reg->id, &stored, &error));
  g_assert_true (g_bytes_equal (stored, bundle2));
  g_auto (TallyIssuerEntryRow) e = { 0 };
  g_assert_true (tally_issuer_store_entry_get_by_hash (f->store, entry.hash, &e, &error));
  g_assert_no_error (error);
  g_assert_cmpint (e.state, ==, TALLY_ISSUER_ENTRY_RECLAIMED);
  g_assert_cmpuint (e.expires_at, ==, G_MAXUINT64);
  g_assert_nonnull (e.receipt);
  g_assert_true (g_bytes_equal (e.receipt, receipt));
  g_assert_true (tally_issuer_store_totals_get (f->store, &totals, &error));
  g_assert_cmpuint (totals.reclaimed_count, ==, 3);
  g_assert_cmpint (totals.reclaimed, ==, 12345);
  commit (f);
}

static void
test_store_finds_expired_in_flight_entries_of_one_payee (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint8 payer[TALLY_ID_BYTES], payee[TALLY_ID_BYTES], other[TALLY_ID_BYTES];
  memset (payer, 0xaa, sizeof payer);
  memset (payee, 0xbb, sizeof payee);
  memset (other, 0xcc, sizeof other);
  /* amount doubles as an id; inserted out of expiry order. */
  const struct
  {
    const guint8 *payee;
    TallyIssuerEntryState state;
    guint64 expires_at;
    gboolean found;
  } rows[] = {
    { payee, TALLY_ISSUER_ENTRY_IN_FLIGHT, 300, TRUE },
    { payee, TALLY_ISSUER_ENTRY_IN_FLIGHT, 100, TRUE },
    { payee, TALLY_ISSUER_ENTRY_IN_FLIGHT, 0, FALSE },   /* never expires */
    { payee, TALLY_ISSUER_ENTRY_IN_FLIGHT, 301, FALSE }, /* after the horizon */
    { payee, TALLY_ISSUER_ENTRY_SETTLED, 100, FALSE },
    { payee, TALLY_ISSUER_ENTRY_RECLAIMED, 100, FALSE },
    { other, TALLY_ISSUER_ENTRY_IN_FLIGHT, 100, FALSE },
    { payee, TALLY_ISSUER_ENTRY_IN_FLIGHT, 200, TRUE },
  };

  begin (f);
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++) {
    TallyIssuerEntryRow row = {
      .counter = i + 1,
      .kind = TALLY_ISSUER_ENTRY_PERMISSION,
      .has_payee = TRUE,
      .amount = i,
      .state = rows[i].state,
      .envelope = g_bytes_new_static ("e", 1),
      .expires_at = rows[i].expires_at,
    };
    memset (row.hash, (int) i + 1, sizeof row.hash);
    memcpy (row.register_id, payer, TALLY_ID_BYTES);
    memcpy (row.payee_id, rows[i].payee, TALLY_ID_BYTES);
    g_assert_true (tally_issuer_store_entry_insert (f->store, &row, &error));
    g_assert_no_error (error);
    g_bytes_unref (row.envelope);
  }
  g_autoptr (GPtrArray) found = NULL;
  g_assert_true (
    tally_issuer_store_entries_expired_in_flight (f->store, payee, 300, &found, &error));
  g_assert_no_error (error);
  /* Earliest expiry first. */
  const gint64 expect[] = { 1, 7, 0 };
  g_assert_cmpuint (found->len, ==, G_N_ELEMENTS (expect));
  for (guint i = 0; i < found->len; i++) {
    const TallyIssuerEntryRow *row = found->pdata[i];
    g_assert_cmpint (row->amount, ==, expect[i]);
    g_assert_true (rows[row->amount].found);
  }
  g_autoptr (GPtrArray) nothing = NULL;
  g_assert_true (
    tally_issuer_store_entries_expired_in_flight (f->store, payee, 99, &nothing, &error));
  g_assert_cmpuint (nothing->len, ==, 0);
  commit (f);
}

/* The query of STMT_ENTRIES_EXPIRED_IN_FLIGHT: reconciling a payee must
 * find its expired permissions through the partial index, not by scanning
 * every entry. */
static void
test_store_indexes_expired_in_flight_lookup (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "EXPLAIN QUERY PLAN SELECT * FROM entries "
                                       "WHERE payee_id = ?1 AND state = 1 AND expires_at > 0 "
                                       "AND expires_at <= ?2 ORDER BY expires_at, rowid",
                                       -1, &st, NULL),
                   ==, SQLITE_OK);
  g_autoptr (GString) plan = g_string_new (NULL);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_string_append_printf (plan, "%s\n", (const char *) sqlite3_column_text (st, 3));
  sqlite3_finalize (st);
  sqlite3_close (db);
  g_test_message ("plan: %s", plan->str);
  g_assert_nonnull (strstr (plan->str, "USING INDEX entries_in_flight_by_payee"));
  g_assert_null (strstr (plan->str, "SCAN"));
  g_assert_null (strstr (plan->str, "TEMP B-TREE"));
}

/* The schema every issuer database had before permissions expired. */
static const char schema_v1[] =
  "CREATE TABLE schema_version (version INTEGER NOT NULL);"
  "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
  "CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), issued INTEGER NOT NULL,"
  "  in_flight INTEGER NOT NULL, fraud_exposure INTEGER NOT NULL);"
  "INSERT INTO totals (id, issued, in_flight, fraud_exposure) VALUES (1, 0, 0, 0);"
  "CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));"
  "CREATE TABLE registers (id BLOB PRIMARY KEY, public_key BLOB NOT NULL,"
  "  account TEXT NOT NULL REFERENCES accounts (name), max_payment INTEGER NOT NULL,"
  "  balance_cap INTEGER NOT NULL, max_offline_payments INTEGER NOT NULL,"
  "  max_offline_seconds INTEGER NOT NULL, validity INTEGER NOT NULL,"
  "  cert_serial INTEGER NOT NULL, settled_counter INTEGER NOT NULL, revoked INTEGER NOT NULL,"
  "  view_balance INTEGER NOT NULL);"
  "CREATE TABLE vouchers (register_id BLOB NOT NULL REFERENCES registers (id),"
  "  sequence INTEGER NOT NULL, amount INTEGER NOT NULL, issued_at INTEGER NOT NULL,"
  "  envelope BLOB NOT NULL, PRIMARY KEY (register_id, sequence));"
  "CREATE TABLE entries (hash BLOB PRIMARY KEY, register_id BLOB NOT NULL,"
  "  counter INTEGER NOT NULL, kind INTEGER NOT NULL, payee_id BLOB, amount INTEGER NOT NULL,"
  "  state INTEGER NOT NULL, payer_reported INTEGER NOT NULL, payee_reported INTEGER NOT NULL,"
  "  chain_prev BLOB NOT NULL, chain_after BLOB NOT NULL, envelope BLOB NOT NULL,"
  "  booked_at INTEGER NOT NULL);"
  "CREATE INDEX entries_by_counter ON entries (register_id, counter);"
  "CREATE TABLE fraud_proofs (id INTEGER PRIMARY KEY AUTOINCREMENT, register_id BLOB NOT NULL,"
  "  kind INTEGER NOT NULL, detected_at INTEGER NOT NULL, envelope BLOB NOT NULL);"
  "CREATE INDEX fraud_proofs_by_register ON fraud_proofs (register_id);"
  "CREATE TABLE revocation_lists (serial INTEGER PRIMARY KEY, issued_at INTEGER NOT NULL,"
  "  envelope BLOB NOT NULL);"
  "INSERT INTO schema_version (version) VALUES (1);";

/* The version 5 migration's ceiling on a certificate it cannot see. */
#define LEGACY_VALIDITY (366 * 86400)

/* @f's store taken back to version 4: without the refund's columns. */
static void
downgrade_to_version_4 (Fixture *f)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  if (test_store_is_pg ()) {
    g_free (test_pg_run (f->spec + strlen ("postgresql:"),
                         "ALTER TABLE registers DROP COLUMN lost_at, DROP COLUMN refunded_at, "
                         "DROP COLUMN refunded, DROP COLUMN recovered, "
                         "DROP COLUMN not_after_ever; UPDATE schema_version SET version = 4"));
    return;
  }
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "ALTER TABLE registers DROP COLUMN lost_at;"
                                 "ALTER TABLE registers DROP COLUMN refunded_at;"
                                 "ALTER TABLE registers DROP COLUMN refunded;"
                                 "ALTER TABLE registers DROP COLUMN recovered;"
                                 "ALTER TABLE registers DROP COLUMN not_after_ever;"
                                 "UPDATE schema_version SET version = 4",
                                 NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_close (db);
}

static guint64
migrated_not_after_ever (Fixture *f, const guint8 *id, guint64 *before, guint64 *after)
{
  g_autoptr (GError) error = NULL;
  *before = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  f->store = tally_issuer_store_open (f->spec, f->path, FALSE, &error);
  *after = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  g_assert_no_error (error);
  begin (f);
  g_auto (TallyIssuerRegisterRow) got = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, id, &got, &error));
  g_assert_no_error (error);
  commit (f);
  return got.not_after_ever;
}

/* A reconciliation checks a bundle's signatures against the key it reads
 * before its transaction, and trusts that key inside it: no put may change
 * the key of an existing register, and the key is read without a
 * transaction. */
static void
test_store_register_key_never_changes (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  guint8 key[TALLY_PUBLIC_KEY_BYTES];

  g_assert_false (tally_issuer_store_register_key (f->store, reg->id, key, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);

  TallyIssuerRegisterRow row = { .account = (char *) "alice", .cert_serial = 1 };
  memcpy (row.id, reg->id, TALLY_ID_BYTES);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_assert_no_error (error);
  commit (f);

  /* The same id put again with another key is refused and changes
   * nothing; with its own key, every other column changes. */
  memcpy (row.public_key, other->pk, TALLY_PUBLIC_KEY_BYTES);
  row.cert_serial = 3;
  begin (f);
  g_assert_false (tally_issuer_store_register_put (f->store, &row, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "a register put with a key other than its stored one"));
  g_clear_error (&error);
  g_auto (TallyIssuerRegisterRow) kept = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &kept, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (kept.cert_serial, ==, 1);
  tally_issuer_store_rollback (f->store);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  row.cert_serial = 2;
  begin (f);
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_assert_no_error (error);
  commit (f);

  g_assert_true (tally_issuer_store_register_key (f->store, reg->id, key, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (key, sizeof key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  begin (f);
  g_auto (TallyIssuerRegisterRow) got = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &got, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (got.public_key, sizeof got.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpuint (got.cert_serial, ==, 2);
  /* Inside a transaction too. */
  memset (key, 0, sizeof key);
  g_assert_true (tally_issuer_store_register_key (f->store, reg->id, key, &error));
  g_assert_cmpmem (key, sizeof key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  commit (f);
}

/* Registers certified before version 5 hold only their latest validity: a
 * register renewed with a week's certificate may still hold an older one
 * of months, so the migration's window opens no earlier than a year after
 * it, or the longest validity any register holds if that is longer. */
static void
test_store_legacy_refund_window_is_at_least_a_year (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  TallyIssuerRegisterRow row = { 0 };
  memcpy (row.id, reg->id, TALLY_ID_BYTES);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  row.account = (char *) "alice";
  row.validity = 7 * 86400;
  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_assert_no_error (error);
  commit (f);
  downgrade_to_version_4 (f);
  guint64 before, after;
  guint64 got = migrated_not_after_ever (f, reg->id, &before, &after);
  g_assert_cmpuint (got, >=, before + LEGACY_VALIDITY);
  g_assert_cmpuint (got, <=, after + LEGACY_VALIDITY);

  /* A register holding a longer validity than a year sets the ceiling. */
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  TallyIssuerRegisterRow longer = row;
  memcpy (longer.id, other->id, TALLY_ID_BYTES);
  memcpy (longer.public_key, other->pk, TALLY_PUBLIC_KEY_BYTES);
  longer.validity = 400 * 86400;
  begin (f);
  g_assert_true (tally_issuer_store_register_put (f->store, &longer, &error));
  g_assert_no_error (error);
  commit (f);
  downgrade_to_version_4 (f);
  got = migrated_not_after_ever (f, reg->id, &before, &after);
  g_assert_cmpuint (got, >=, before + 400 * 86400);
  g_assert_cmpuint (got, <=, after + 400 * 86400);
}

static gint64
stored_schema_version (const char *path)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT version FROM schema_version", -1, &st, NULL), ==,
                   SQLITE_OK);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  gint64 version = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  sqlite3_close (db);
  return version;
}

static void
test_store_migrates_version_1_database (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  g_autofree char *path = g_build_filename (f->tmp, "v1.db", NULL);
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  guint8 hash[TALLY_HASH_BYTES], chain[TALLY_HASH_BYTES];
  guint8 defund_hash[TALLY_HASH_BYTES];
  memset (hash, 0x42, sizeof hash);
  memset (defund_hash, 0x43, sizeof defund_hash);
  memset (chain, 0x17, sizeof chain);

  /* A version 1 issuer: an account, a register and one permission of it in
   * flight to itself. */
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, schema_v1, NULL, NULL, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "INSERT INTO accounts VALUES ('alice', 700);"
                                 "UPDATE totals SET issued = 1000, in_flight = 100;",
                                 NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "INSERT INTO registers VALUES (?1, ?2, 'alice', 10, 20, 3, "
                                       "40, 50, 6, 1, 0, 200)",
                                       -1, &st, NULL),
                   ==, SQLITE_OK);
  sqlite3_bind_blob (st, 1, reg->id, TALLY_ID_BYTES, SQLITE_STATIC);
  sqlite3_bind_blob (st, 2, reg->pk, TALLY_PUBLIC_KEY_BYTES, SQLITE_STATIC);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  sqlite3_finalize (st);
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "INSERT INTO entries VALUES (?1, ?2, 1, 1, ?2, 100, 1, 1, "
                                       "0, ?3, ?3, x'00', 99)",
                                       -1, &st, NULL),
                   ==, SQLITE_OK);
  sqlite3_bind_blob (st, 1, hash, sizeof hash, SQLITE_STATIC);
  sqlite3_bind_blob (st, 2, reg->id, TALLY_ID_BYTES, SQLITE_STATIC);
  sqlite3_bind_blob (st, 3, chain, sizeof chain, SQLITE_STATIC);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  sqlite3_finalize (st);
  /* And a defund, credited in full as every defund was before version 3. */
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "INSERT INTO entries VALUES (?1, ?2, 2, 2, NULL, 50, 2, 1, "
                                       "0, ?3, ?3, x'00', 99)",
                                       -1, &st, NULL),
                   ==, SQLITE_OK);
  sqlite3_bind_blob (st, 1, defund_hash, sizeof defund_hash, SQLITE_STATIC);
  sqlite3_bind_blob (st, 2, reg->id, TALLY_ID_BYTES, SQLITE_STATIC);
  sqlite3_bind_blob (st, 3, chain, sizeof chain, SQLITE_STATIC);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  sqlite3_finalize (st);
  sqlite3_close (db);

  g_autoptr (GError) error = NULL;
  guint64 before = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  f->store = tally_issuer_store_sqlite_open (path, FALSE, &error);
  guint64 after = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  g_assert_no_error (error);
  g_assert_nonnull (f->store);
  g_assert_cmpint (stored_schema_version (path), ==, 5);

  begin (f);
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &row, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (row.account, ==, "alice");
  g_assert_cmpint (row.view_balance, ==, 200);
  g_assert_cmpuint (row.settled_counter, ==, 1);
  g_assert_cmpuint (row.horizon, ==, 0);
  g_assert_cmpint (row.refused, ==, 0);
  g_assert_cmpint (row.deficit, ==, 0);
  g_assert_cmpint (row.max_payment_ever, ==, 10);
  g_assert_null (row.display_name); /* certified before names existed */
  /* Version 5: never reported lost, nothing refunded. */
  g_assert_cmpuint (row.lost_at, ==, 0);
  g_assert_cmpuint (row.refunded_at, ==, 0);
  g_assert_cmpint (row.refunded, ==, 0);
  g_assert_cmpint (row.recovered, ==, 0);
  /* No certificate is stored: every one it was given was issued by the
   * migration, none longer than the longest validity any register holds
   * (its own, 50) or a year (LEGACY_VALIDITY). */
  g_assert_cmpuint (row.not_after_ever, >=, before + LEGACY_VALIDITY);
  g_assert_cmpuint (row.not_after_ever, <=, after + LEGACY_VALIDITY);
  g_auto (TallyIssuerEntryRow) entry = { 0 };
  g_assert_true (tally_issuer_store_entry_get_by_hash (f->store, hash, &entry, &error));
  g_assert_no_error (error);
  g_assert_cmpint (entry.state, ==, TALLY_ISSUER_ENTRY_IN_FLIGHT);
  g_assert_cmpint (entry.amount, ==, 100);
  g_assert_cmpuint (entry.booked_at, ==, 99);
  g_assert_cmpuint (entry.expires_at, ==, 0);
  g_assert_null (entry.receipt);
  g_assert_cmpint (entry.credited, ==, 0);
  g_auto (TallyIssuerEntryRow) defund = { 0 };
  g_assert_true (tally_issuer_store_entry_get_by_hash (f->store, defund_hash, &defund, &error));
  g_assert_no_error (error);
  g_assert_cmpint (defund.credited, ==, 50);
  TallyIssuerTotals totals;
  g_assert_true (tally_issuer_store_totals_get (f->store, &totals, &error));
  g_assert_cmpint (totals.issued, ==, 1000);
  g_assert_cmpint (totals.in_flight, ==, 100);
  g_assert_cmpuint (totals.reclaimed_count, ==, 0);
  g_assert_cmpint (totals.reclaimed, ==, 0);
  /* An entry from before has no expiry: no horizon reclaims it. */
  g_autoptr (GPtrArray) expired = NULL;
  g_assert_true (tally_issuer_store_entries_expired_in_flight (f->store, reg->id, G_MAXUINT64,
                                                               &expired, &error));
  g_assert_cmpuint (expired->len, ==, 0);
  g_autoptr (GBytes) bundle = g_bytes_new_static ("b", 1);
  g_assert_true (tally_issuer_store_horizon_bundle_put (f->store, reg->id, bundle, &error));
  g_assert_no_error (error);
  commit (f);

  /* Opening it again migrates nothing twice. */
  g_clear_pointer (&f->store, tally_issuer_store_free);
  f->store = tally_issuer_store_sqlite_open (path, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (stored_schema_version (path), ==, 5);
  begin (f);
  g_autoptr (GBytes) got = NULL;
  g_assert_true (tally_issuer_store_horizon_bundle_get (f->store, reg->id, &got, &error));
  g_assert_true (g_bytes_equal (got, bundle));
  commit (f);
}

static void
test_store_creates_database_at_current_version (Fixture *f, gconstpointer data)
{
  g_assert_cmpint (stored_schema_version (f->path), ==, 5);
}

/* --- PostgreSQL only --- */

/* The connection string of the fixture's store. */
static const char *
pg_conninfo (Fixture *f)
{
  g_assert_true (g_str_has_prefix (f->spec, "postgresql:"));
  return f->spec + strlen ("postgresql:");
}

static void
test_store_pg_creates_schema_at_current_version (Fixture *f, gconstpointer data)
{
  g_autofree char *version = test_pg_run (pg_conninfo (f), "SELECT version FROM schema_version");
  g_assert_cmpstr (version, ==, "5");
  /* Amounts are int8, blobs bytea: never text or numeric. */
  g_autofree char *amount = test_pg_run (
    pg_conninfo (f), "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                     "current_schema() AND table_name = 'entries' AND column_name = 'amount'");
  g_assert_cmpstr (amount, ==, "bigint");
  g_autofree char *envelope = test_pg_run (
    pg_conninfo (f), "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                     "current_schema() AND table_name = 'entries' AND column_name = 'envelope'");
  g_assert_cmpstr (envelope, ==, "bytea");
}

static void
test_store_pg_refuses_database_of_unknown_schema (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  g_free (test_pg_run (pg_conninfo (f), "UPDATE schema_version SET version = 99"));

  g_autoptr (GError) error = NULL;
  f->store = tally_issuer_store_open (f->spec, f->path, FALSE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "schema version 99"));
  g_assert_null (f->store);
}

/* A store made before the lost-register refund (version 4) gains its
 * columns when opened, and keeps its registers. */
static void
test_store_pg_migrates_version_4_store (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  TallyIssuerRegisterRow row = { 0 };
  memcpy (row.id, reg->id, TALLY_ID_BYTES);
  memcpy (row.public_key, reg->pk, TALLY_PUBLIC_KEY_BYTES);
  row.account = (char *) "alice";
  row.view_balance = 700;
  row.validity = 7 * 86400;
  /* Another register, certified with a longer validity. */
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  TallyIssuerRegisterRow longer = row;
  memcpy (longer.id, other->id, TALLY_ID_BYTES);
  memcpy (longer.public_key, other->pk, TALLY_PUBLIC_KEY_BYTES);
  longer.validity = 30 * 86400;
  begin (f);
  g_assert_true (tally_issuer_store_account_insert (f->store, "alice", &error));
  g_assert_true (tally_issuer_store_register_put (f->store, &row, &error));
  g_assert_true (tally_issuer_store_register_put (f->store, &longer, &error));
  g_assert_no_error (error);
  commit (f);
  g_clear_pointer (&f->store, tally_issuer_store_free);
  g_free (test_pg_run (pg_conninfo (f),
                       "ALTER TABLE registers DROP COLUMN lost_at, DROP COLUMN refunded_at, "
                       "DROP COLUMN refunded, DROP COLUMN recovered, DROP COLUMN not_after_ever; "
                       "UPDATE schema_version SET version = 4"));

  guint64 before = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  f->store = tally_issuer_store_open (f->spec, f->path, FALSE, &error);
  guint64 after = (guint64) (g_get_real_time () / G_USEC_PER_SEC);
  g_assert_no_error (error);
  g_autofree char *version = test_pg_run (pg_conninfo (f), "SELECT version FROM schema_version");
  g_assert_cmpstr (version, ==, "5");
  begin (f);
  g_auto (TallyIssuerRegisterRow) got = { 0 };
  g_assert_true (tally_issuer_store_register_get (f->store, reg->id, &got, &error));
  g_assert_no_error (error);
  g_assert_cmpint (got.view_balance, ==, 700);
  g_assert_cmpuint (got.lost_at, ==, 0);
  g_assert_cmpuint (got.refunded_at, ==, 0);
  /* No certificate is stored: every one it was given was issued by the
   * migration, none longer than the longest validity any register holds
   * or a year. */
  g_assert_cmpuint (got.not_after_ever, >=, before + LEGACY_VALIDITY);
  g_assert_cmpuint (got.not_after_ever, <=, after + LEGACY_VALIDITY);
  commit (f);
}

static void
test_store_pg_refuses_database_without_issuer_tables (Fixture *f, gconstpointer data)
{
  g_autofree char *spec = test_store_spec_new (); /* an empty schema */
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (spec, f->path, FALSE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "is not an issuer database"));
  g_assert_null (store);
}

static void
test_store_pg_reports_server_message (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *spec =
    g_strdup_printf ("postgresql:%s dbname=no_such_database", test_pg_conninfo ());
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (spec, f->path, TRUE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "\"no_such_database\" does not exist"));
  g_assert_null (store);
  g_clear_error (&error);

  /* A store whose table the server refuses to read names the statement
   * and carries the server's message and SQLSTATE. */
  g_free (test_pg_run (pg_conninfo (f), "ALTER TABLE accounts RENAME TO accounts_gone"));
  begin (f);
  gint64 balance;
  g_assert_false (tally_issuer_store_account_get (f->store, "alice", &balance, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "account: "));
  g_assert_nonnull (strstr (error->message, "SQLSTATE"));
  tally_issuer_store_rollback (f->store);
}

static void
test_store_pg_refuses_malformed_connection_string (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (
    "postgresql:host='unterminated password=secret", f->path, TRUE, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_null (strstr (error->message, "secret"));
  g_assert_null (store);
}

/* A server restart or an administrator ending the session costs the
 * operation under way at most; the next one connects again. */
static void
test_store_pg_reconnects_after_server_drops_connection (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *name = g_strdup_printf ("tally_victim_%d", (int) getpid ());
  g_autofree char *spec = g_strdup_printf ("%s application_name=%s", f->spec, name);
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (spec, f->path, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_store_begin (store, &error));
  g_assert_true (tally_issuer_store_account_insert (store, "alice", &error));
  g_assert_true (tally_issuer_store_commit (store, &error));

  g_autofree char *sql = g_strdup_printf (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '%s'",
    name);
  g_autofree char *ended = test_pg_run (test_pg_conninfo (), sql);
  g_assert_cmpstr (ended, ==, "1");

  gint64 balance = -1;
  g_assert_true (tally_issuer_store_begin (store, &error));
  g_assert_no_error (error);
  g_assert_true (tally_issuer_store_account_get (store, "alice", &balance, &error));
  g_assert_no_error (error);
  g_assert_cmpint (balance, ==, 0);
  g_assert_true (tally_issuer_store_commit (store, &error));
}

/* The query of STMT_ENTRIES_EXPIRED_IN_FLIGHT can use the partial index:
 * with sequential scans discouraged, the plan names it. */
static void
test_store_pg_indexes_expired_in_flight_lookup (Fixture *f, gconstpointer data)
{
  g_autofree char *plan = test_pg_run (
    pg_conninfo (f), "SET enable_seqscan = off; EXPLAIN SELECT * FROM entries "
                     "WHERE payee_id = '\\x00'::bytea AND state = 1 AND expires_at > 0 "
                     "AND expires_at <= 5 ORDER BY expires_at, booked");
  g_test_message ("plan: %s", plan);
  g_assert_nonnull (strstr (plan, "entries_in_flight_by_payee"));
}

/* --- both stores: concurrency --- */

typedef struct
{
  Fixture *f;
  const TallyIssuerEntryRow *row;
  GMutex lock;
  GCond cond;
  guint waiting;
} Race;

typedef struct
{
  Race *race;
  gboolean booked; /* this connection booked the entry */
  gboolean found;  /* it found the entry booked by the other */
  GError *error;
} Booker;

/* What the issuer does with each half of a payment: look the entry up,
 * book it when it is not there, and add it to the running totals. */
static gpointer
book_once (gpointer data)
{
  Booker *b = data;
  Race *race = b->race;
  g_autoptr (TallyIssuerStore) store =
    tally_issuer_store_open (race->f->spec, race->f->path, FALSE, &b->error);
  if (store == NULL)
    return NULL;

  g_mutex_lock (&race->lock);
  if (--race->waiting == 0)
    g_cond_broadcast (&race->cond);
  while (race->waiting > 0)
    g_cond_wait (&race->cond, &race->lock);
  g_mutex_unlock (&race->lock);

  if (!tally_issuer_store_begin (store, &b->error))
    return NULL;
  g_auto (TallyIssuerEntryRow) existing = { 0 };
  g_autoptr (GError) lookup = NULL;
  TallyIssuerTotals totals;
  gboolean ok;
  if (tally_issuer_store_entry_get_by_hash (store, race->row->hash, &existing, &lookup)) {
    b->found = TRUE;
    ok = TRUE;
  } else {
    g_assert_error (lookup, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
    /* Widen the window in which the other connection could look too. */
    g_usleep (100 * 1000);
    ok = tally_issuer_store_entry_insert (store, race->row, &b->error) &&
         tally_issuer_store_totals_get (store, &totals, &b->error);
    if (ok) {
      totals.in_flight += race->row->amount;
      ok = tally_issuer_store_totals_put (store, &totals, &b->error);
    }
    b->booked = ok;
  }
  if (ok && tally_issuer_store_commit (store, &b->error))
    return NULL;
  b->booked = FALSE;
  tally_issuer_store_rollback (store);
  return NULL;
}

static void
test_store_books_entry_once_from_two_connections (Fixture *f, gconstpointer data)
{
  TallyIssuerEntryRow row = {
    .counter = 1,
    .kind = TALLY_ISSUER_ENTRY_PERMISSION,
    .amount = 700,
    .state = TALLY_ISSUER_ENTRY_IN_FLIGHT,
    .payer_reported = TRUE,
    .envelope = g_bytes_new_static ("e", 1),
  };
  memset (row.hash, 7, sizeof row.hash);
  memset (row.register_id, 3, sizeof row.register_id);
  Race race = { .f = f, .row = &row, .waiting = 2 };
  g_mutex_init (&race.lock);
  g_cond_init (&race.cond);
  Booker bookers[2] = { { .race = &race }, { .race = &race } };

  GThread *threads[2];
  for (guint i = 0; i < 2; i++)
    threads[i] = g_thread_new ("booker", book_once, &bookers[i]);
  for (guint i = 0; i < 2; i++)
    g_thread_join (threads[i]);
  g_mutex_clear (&race.lock);
  g_cond_clear (&race.cond);

  for (guint i = 0; i < 2; i++) {
    g_assert_no_error (bookers[i].error);
  }
  g_assert_cmpint (bookers[0].booked + bookers[1].booked, ==, 1);
  g_assert_cmpint (bookers[0].found + bookers[1].found, ==, 1);

  g_autoptr (GError) error = NULL;
  begin (f);
  g_autoptr (GPtrArray) rows = NULL;
  g_assert_true (
    tally_issuer_store_entries_by_counter (f->store, row.register_id, 1, &rows, &error));
  g_assert_cmpuint (rows->len, ==, 1);
  TallyIssuerTotals totals;
  g_assert_true (tally_issuer_store_totals_get (f->store, &totals, &error));
  g_assert_cmpint (totals.in_flight, ==, 700);
  commit (f);
  g_bytes_unref (row.envelope);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  /* Every store. */
  ADD ("/issuer/store/rolls-back-uncommitted-changes", test_store_rolls_back_uncommitted_changes);
  ADD ("/issuer/store/keeps-committed-changes-across-reopen",
       test_store_keeps_committed_changes_across_reopen);
  ADD ("/issuer/store/refuses-duplicate-account-and-entry",
       test_store_refuses_duplicate_account_and_entry);
  ADD ("/issuer/store/lists-entries-by-counter-in-booking-order",
       test_store_lists_entries_by_counter_in_booking_order);
  ADD ("/issuer/store/keeps-horizon-receipt-and-reclaim-totals",
       test_store_keeps_horizon_receipt_and_reclaim_totals);
  ADD ("/issuer/store/finds-expired-in-flight-entries-of-one-payee",
       test_store_finds_expired_in_flight_entries_of_one_payee);
  ADD ("/issuer/store/legacy-refund-window-is-at-least-a-year",
       test_store_legacy_refund_window_is_at_least_a_year);
  ADD ("/issuer/store/register-key-never-changes", test_store_register_key_never_changes);
  ADD ("/issuer/store/books-entry-once-from-two-connections",
       test_store_books_entry_once_from_two_connections);

  if (test_store_is_pg ()) {
    ADD ("/issuer/store/pg/creates-schema-at-current-version",
         test_store_pg_creates_schema_at_current_version);
    ADD ("/issuer/store/pg/migrates-version-4-store", test_store_pg_migrates_version_4_store);
    ADD ("/issuer/store/pg/refuses-database-of-unknown-schema",
         test_store_pg_refuses_database_of_unknown_schema);
    ADD ("/issuer/store/pg/refuses-database-without-issuer-tables",
         test_store_pg_refuses_database_without_issuer_tables);
    ADD ("/issuer/store/pg/reports-server-message", test_store_pg_reports_server_message);
    ADD ("/issuer/store/pg/refuses-malformed-connection-string",
         test_store_pg_refuses_malformed_connection_string);
    ADD ("/issuer/store/pg/reconnects-after-server-drops-connection",
         test_store_pg_reconnects_after_server_drops_connection);
    ADD ("/issuer/store/pg/indexes-expired-in-flight-lookup",
         test_store_pg_indexes_expired_in_flight_lookup);
  } else {
    ADD ("/issuer/store/refuses-database-of-unknown-schema",
         test_store_refuses_database_of_unknown_schema);
    ADD ("/issuer/store/refuses-missing-database", test_store_refuses_missing_database);
    ADD ("/issuer/store/uses-write-ahead-log", test_store_uses_write_ahead_log);
    ADD ("/issuer/store/indexes-expired-in-flight-lookup",
         test_store_indexes_expired_in_flight_lookup);
    ADD ("/issuer/store/migrates-version-1-database", test_store_migrates_version_1_database);
    ADD ("/issuer/store/creates-database-at-current-version",
         test_store_creates_database_at_current_version);
  }
#undef ADD

  return g_test_run ();
}
