/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Registers as the issuer sees them, built by hand: a key pair, a
 * certificate from tally_issuer_certify(), a counter and a hash chain, and
 * the signed objects a real register would put into its bundle.
 */

#include "tally-issuer.h"

G_BEGIN_DECLS

/* A fixed clock for every test. */
#define TEST_NOW ((guint64) 1700000000)
/* When test_permission()'s permissions expire: after the default bundle's
 * created_at (TEST_NOW), so only a test that moves a payee's horizon past it
 * sees a permission reclaimed. */
#define TEST_EXPIRES_AT (TEST_NOW + 600)

typedef struct
{
  guint8 *sk; /* guarded sodium memory */
  guint8 pk[TALLY_PUBLIC_KEY_BYTES];
  guint8 id[TALLY_ID_BYTES];
  guint64 counter;              /* last counter used; 0 before the first entry */
  guint8 head[TALLY_HASH_BYTES]; /* chain head after the last entry */
  GBytes *cert;                 /* packed certificate envelope, or NULL */
} TestRegister;

/* A key pair with no certificate. */
TestRegister *test_register_new_uncertified (void);
/* A key pair certified by @issuer for @account with the default limits
 * (max payment 50.00, cap 500.00, 100 payments, 72 h, valid 30 days). */
TestRegister *test_register_new (TallyIssuer *issuer, const char *account);
void test_register_free (TestRegister *reg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TestRegister, test_register_free)

void test_default_limits (Tally__Limits *limits);

/* @reg's proof of possession for enrolling with @account at @issuer: its
 * signature over tally_issuer_enrol_statement (). */
void test_enrol_proof (TallyIssuer *issuer,
                       const TestRegister *reg,
                       const char *account,
                       guint8 proof[TALLY_SIGNATURE_BYTES]);

/* A permission signed with @sk carrying exactly the given fields
 * (@expires_at 0: none). */
GBytes *test_sign_permission (const guint8 sk[TALLY_SECRET_KEY_BYTES],
                              const guint8 payer_id[TALLY_ID_BYTES],
                              const guint8 payee_id[TALLY_ID_BYTES],
                              const char *currency,
                              gint64 amount,
                              guint64 counter,
                              const guint8 chain_prev[TALLY_HASH_BYTES],
                              guint64 expires_at);

/* The payer's next permission to @payee: takes the next counter and
 * extends the chain, as a register does.  It expires at TEST_EXPIRES_AT. */
GBytes *test_permission (TestRegister *payer, const TestRegister *payee, gint64 amount);
/* The same, expiring at @expires_at (0: never). */
GBytes *test_permission_expiring (TestRegister *payer,
                                  const TestRegister *payee,
                                  gint64 amount,
                                  guint64 expires_at);

/* The payer's next defund record. */
GBytes *test_defund (TestRegister *reg, gint64 amount);

/* @payee's receipt for @permission (read from the permission itself). */
GBytes *test_receipt (const TestRegister *payee, GBytes *permission);
/* A receipt with every field given, signed with @sk. */
GBytes *test_sign_receipt (const guint8 sk[TALLY_SECRET_KEY_BYTES], GBytes *permission,
                           gint64 amount);

/* H(label, body) of a packed envelope: the permission hash. */
void test_entry_hash (GBytes *envelope, guint8 out[TALLY_HASH_BYTES]);
/* Chain head after @envelope when it extends @prev. */
void test_chain_after (const guint8 prev[TALLY_HASH_BYTES],
                       GBytes *envelope,
                       guint8 out[TALLY_HASH_BYTES]);

typedef struct _TestBundle TestBundle;

/* A bundle made at TEST_NOW. */
TestBundle *test_bundle_new (const TestRegister *reg);
/* A bundle made at @created_at: the register's horizon from then on. */
TestBundle *test_bundle_new_at (const TestRegister *reg, guint64 created_at);
void test_bundle_free (TestBundle *bundle);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TestBundle, test_bundle_free)

/* @receipt may be NULL. */
void test_bundle_add_spent (TestBundle *bundle, GBytes *permission, GBytes *receipt);
void test_bundle_add_received (TestBundle *bundle,
                               GBytes *payer_certificate,
                               GBytes *permission,
                               GBytes *receipt);
void test_bundle_add_voucher (TestBundle *bundle, GBytes *voucher);
/* Signed by the register the bundle was made for. */
GBytes *test_bundle_sign (TestBundle *bundle);
/* Signed by another key: a forgery. */
GBytes *test_bundle_sign_with (TestBundle *bundle, const guint8 sk[TALLY_SECRET_KEY_BYTES]);

/* Verifies a result envelope under the issuer key and unpacks it. */
Tally__ReconciliationResult *test_result_open (TallyIssuer *issuer, GBytes *result);

/* Runs tally_issuer_reconcile and asserts success. */
Tally__ReconciliationResult *test_reconcile (TallyIssuer *issuer,
                                             GBytes *bundle,
                                             TallyReconcileReport *report);

/* Decodes a packed envelope (asserting success). */
Tally__SignedEnvelope *test_envelope (GBytes *bytes);

/* --- the store under test ---
 *
 * tests/issuer/with-postgresql.sh starts a PostgreSQL server and sets
 * TALLY_TEST_PG_CONNINFO; the issuer tests then run on PostgreSQL, and on
 * SQLite without it. */

/* TALLY_TEST_PG_CONNINFO, or NULL when the tests run on SQLite. */
const char *test_pg_conninfo (void);
gboolean test_store_is_pg (void);
/* A store name for tally_issuer_store_open (): "sqlite", or a PostgreSQL
 * store in a new empty schema of the test server. */
char *test_store_spec_new (void);
/* The test server's connection string with @schema as search path. */
char *test_pg_schema_conninfo (const char *schema);
/* Runs @sql on the test server (aborting the test on an error); the first
 * column of every row, one a line, or NULL for no row. */
char *test_pg_run (const char *conninfo, const char *sql);
/* tally_issuer_create () on the store under test. */
TallyIssuer *test_issuer_create (const char *dir,
                                 const char *name,
                                 const char *currency,
                                 guint64 now,
                                 GError **error);

/* Removes @path and everything below it. */
void test_remove_tree (const char *path);

/* --- an issuer under test --- */

/* An issuer "Test Bank" (EUR, made at TEST_NOW) on the store under test,
 * in a new temporary directory: the fixture of most issuer tests. */
typedef struct
{
  char *tmp;  /* the temporary directory, removed with everything below it */
  char *dir;  /* the issuer's directory, below @tmp */
  char *spec; /* its store, for tally_issuer_store_open () */
  TallyIssuer *issuer;
} TestIssuerFixture;

/* @tmp_template: for g_dir_make_tmp (), "tally-issuer-test-XXXXXX". */
void test_issuer_fixture_setup (TestIssuerFixture *f, const char *tmp_template);
void test_issuer_fixture_teardown (TestIssuerFixture *f);

/* Opens the account @name with a deposit of @deposit (none when 0),
 * asserting success. */
void test_account_open (TallyIssuer *issuer, const char *name, gint64 deposit);
/* @name's balance, asserting success. */
gint64 test_balance (TallyIssuer *issuer, const char *name);
/* A voucher of @amount for @reg sold at TEST_NOW, asserting success. */
GBytes *test_sell_voucher (TallyIssuer *issuer, const TestRegister *reg, gint64 amount);
/* tally_issuer_audit (), asserting success. */
TallyAudit test_audit (TallyIssuer *issuer);

G_END_DECLS
