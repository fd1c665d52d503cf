/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sqlite3.h>
#include <string.h>

#include "issuer-test-util.h"
#include "tally-issuer-store.h"

typedef struct
{
  char *tmp;
  char *path;
  TallyIssuerStore *store;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuer-store-XXXXXX", &error);
  g_assert_no_error (error);
  f->path = g_build_filename (f->tmp, "issuer.db", NULL);
  f->store = tally_issuer_store_sqlite_open (f->path, TRUE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->store);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->store, tally_issuer_store_free);
  test_remove_tree (f->tmp);
  g_free (f->path);
  g_free (f->tmp);
}

static void
reopen (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&f->store, tally_issuer_store_free);
  f->store = tally_issuer_store_sqlite_open (f->path, FALSE, &error);
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
  g_assert_cmpint (sums.offline, ==, -80);
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

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/store/rolls-back-uncommitted-changes", test_store_rolls_back_uncommitted_changes);
  ADD ("/issuer/store/keeps-committed-changes-across-reopen",
       test_store_keeps_committed_changes_across_reopen);
  ADD ("/issuer/store/refuses-duplicate-account-and-entry",
       test_store_refuses_duplicate_account_and_entry);
  ADD ("/issuer/store/lists-entries-by-counter-in-booking-order",
       test_store_lists_entries_by_counter_in_booking_order);
  ADD ("/issuer/store/refuses-database-of-unknown-schema",
       test_store_refuses_database_of_unknown_schema);
  ADD ("/issuer/store/refuses-missing-database", test_store_refuses_missing_database);
  ADD ("/issuer/store/uses-write-ahead-log", test_store_uses_write_ahead_log);
#undef ADD

  return g_test_run ();
}
