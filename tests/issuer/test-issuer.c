/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "issuer-test-util.h"
#include "tally-keyfile.h"

typedef TestIssuerFixture Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_setup (f, "tally-issuer-test-XXXXXX");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  test_issuer_fixture_teardown (f);
}

/* --- helpers --- */

static void
assert_audit_equal (const TallyAudit *a, const TallyAudit *b)
{
  g_assert_cmpint (a->issued, ==, b->issued);
  g_assert_cmpint (a->online, ==, b->online);
  g_assert_cmpint (a->offline, ==, b->offline);
  g_assert_cmpint (a->in_flight, ==, b->in_flight);
  g_assert_cmpint (a->fraud_exposure, ==, b->fraud_exposure);
  g_assert_cmpuint (a->registers, ==, b->registers);
  g_assert_cmpuint (a->revoked, ==, b->revoked);
  g_assert_cmpuint (a->fraud_proofs, ==, b->fraud_proofs);
  g_assert_cmpint (a->awaiting, ==, b->awaiting);
  g_assert_cmpint (a->refused, ==, b->refused);
  g_assert_cmpint (a->identity, ==, b->identity);
  g_assert_cmpint (a->balanced, ==, b->balanced);
}

static Tally__RevocationList *
revocation_list_of (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes = tally_issuer_get_revocation_list (f->issuer, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
  Tally__RevocationList *list =
    tally_revocation_list_verify (env, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  g_assert_nonnull (list);
  return list;
}

static void
assert_reconcile_fails (Fixture *f, GBytes *bundle, TallyError code)
{
  TallyAudit before = test_audit (f->issuer);
  g_autoptr (Tally__RevocationList) list_before = revocation_list_of (f);

  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  TallyReconcileReport report;
  g_autoptr (GBytes) result =
    tally_issuer_reconcile (f->issuer, data, len, TEST_NOW + 3600, &report, &error);
  g_assert_error (error, TALLY_ERROR, (gint) code);
  g_assert_null (result);

  /* Nothing of the refused bundle stays booked. */
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&before, &after);
  g_autoptr (Tally__RevocationList) list_after = revocation_list_of (f);
  g_assert_cmpuint (list_after->serial, ==, list_before->serial);
}

static gboolean
list_contains_hash (ProtobufCBinaryData *hashes, gsize n, GBytes *permission)
{
  guint8 hash[TALLY_HASH_BYTES];
  test_entry_hash (permission, hash);
  for (gsize i = 0; i < n; i++)
    if (hashes[i].len == TALLY_HASH_BYTES && memcmp (hashes[i].data, hash, TALLY_HASH_BYTES) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
envelopes_equal (const Tally__SignedEnvelope *env, GBytes *bytes)
{
  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  return g_bytes_equal (packed, bytes);
}

static Tally__FraudProof *
open_fraud_proof (Fixture *f, const Tally__SignedEnvelope *env)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF,
                                        tally_issuer_get_public_key (f->issuer), &error));
  g_assert_no_error (error);
  Tally__FraudProof *fp = TALLY_UNPACK (Tally__FraudProof, tally__fraud_proof, env->body.data,
                                        env->body.len, "fraud proof", &error);
  g_assert_no_error (error);
  return fp;
}

/* --- creation --- */

static void
test_create_writes_key_and_self_signed_key_set (Fixture *f, gconstpointer data)
{
  g_autofree char *key_path = g_build_filename (f->dir, "issuer.key", NULL);
  GStatBuf st;
  g_assert_cmpint (g_stat (key_path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, TALLY_SECRET_KEY_BYTES);

  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes = tally_issuer_get_key_set (f->issuer);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
  const guint8 *pk = tally_issuer_get_public_key (f->issuer);
  g_assert_true (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                                        pk, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__IssuerKeySet) ks = TALLY_UNPACK (
    Tally__IssuerKeySet, tally__issuer_key_set, env->body.data, env->body.len, "key set", &error);
  g_assert_no_error (error);
  guint8 key_id[TALLY_ID_BYTES];
  tally_key_id_from_key (pk, key_id);
  g_assert_cmpmem (ks->public_key.data, ks->public_key.len, pk, TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpmem (ks->key_id.data, ks->key_id.len, key_id, TALLY_ID_BYTES);
  g_assert_cmpstr (ks->currency, ==, "EUR");
  g_assert_cmpstr (ks->name, ==, "Test Bank");
  g_assert_cmpuint (ks->created_at, ==, TEST_NOW);
  g_assert_cmpstr (tally_issuer_get_currency (f->issuer), ==, "EUR");

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_cmpuint (list->serial, ==, 1);
  g_assert_cmpuint (list->issued_at, ==, TEST_NOW);
  g_assert_cmpuint (list->n_revoked_register_ids, ==, 0);

  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.issued, ==, 0);
  g_assert_true (a.balanced);
}

static void
test_create_refuses_existing_issuer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) again = test_issuer_create (f->dir, "Other", "EUR", TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_null (again);
}

static void
test_create_refuses_invalid_currency (Fixture *f, gconstpointer data)
{
  g_autofree char *dir = g_build_filename (f->tmp, "bad", NULL);
  const char *bad[] = { "eur", "EU", "EURO1", "ABCDEFGHI", "" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (TallyIssuer) issuer = test_issuer_create (dir, "Bad", bad[i], TEST_NOW, &error);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_null (issuer);
  }
  g_autofree char *key_path = g_build_filename (dir, "issuer.key", NULL);
  g_assert_false (g_file_test (key_path, G_FILE_TEST_EXISTS));
}

static void
test_open_restores_keys_and_books (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 12345);
  guint8 pk[TALLY_PUBLIC_KEY_BYTES];
  memcpy (pk, tally_issuer_get_public_key (f->issuer), sizeof pk);
  g_autoptr (GBytes) key_set = tally_issuer_get_key_set (f->issuer);
  g_clear_pointer (&f->issuer, tally_issuer_free);

  g_autoptr (GError) error = NULL;
  f->issuer = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (tally_issuer_get_public_key (f->issuer), TALLY_PUBLIC_KEY_BYTES, pk, sizeof pk);
  g_assert_cmpstr (tally_issuer_get_currency (f->issuer), ==, "EUR");
  g_autoptr (GBytes) key_set2 = tally_issuer_get_key_set (f->issuer);
  g_assert_true (g_bytes_equal (key_set, key_set2));
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 12345);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.issued, ==, 12345);
}

static void
test_open_refuses_missing_issuer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->tmp, "nothing-here", NULL);
  g_autoptr (TallyIssuer) issuer = tally_issuer_open (dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (issuer);
}

static void
test_open_refuses_key_of_another_issuer (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *other_dir = g_build_filename (f->tmp, "other", NULL);
  g_autoptr (TallyIssuer) other = test_issuer_create (other_dir, "Other", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_clear_pointer (&other, tally_issuer_free);
  g_clear_pointer (&f->issuer, tally_issuer_free);

  g_autofree char *ours = g_build_filename (f->dir, "issuer.key", NULL);
  g_autofree char *theirs = g_build_filename (other_dir, "issuer.key", NULL);
  g_assert_cmpint (g_rename (theirs, ours), ==, 0);

  g_autoptr (TallyIssuer) issuer = tally_issuer_open (f->dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_null (issuer);
}

/* seed || public key: an issuer.key whose public half is ours and whose
 * seed is another key's would claim our key and sign with the other. */
static void
test_open_refuses_key_file_with_mismatched_halves (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (f->dir, "issuer.key", NULL);
  g_clear_pointer (&f->issuer, tally_issuer_free);
  guint8 ours[TALLY_SECRET_KEY_BYTES], other_pk[TALLY_PUBLIC_KEY_BYTES];
  guint8 mixed[TALLY_SECRET_KEY_BYTES];
  g_assert_true (tally_key_file_read (path, ours, &error));
  g_assert_no_error (error);
  crypto_sign_keypair (other_pk, mixed);
  memcpy (mixed + crypto_sign_SEEDBYTES, ours + crypto_sign_SEEDBYTES, TALLY_PUBLIC_KEY_BYTES);
  g_assert_true (tally_key_file_write (path, mixed, &error));
  g_assert_no_error (error);
  sodium_memzero (ours, sizeof ours);
  sodium_memzero (mixed, sizeof mixed);

  g_autoptr (TallyIssuer) issuer = tally_issuer_open (f->dir, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "corrupt"));
  g_assert_null (issuer);
}

/* issuer.conf names the store; one it cannot read is an error, never a
 * silent fallback to another store. */
static void
test_open_refuses_unreadable_store_config (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->issuer, tally_issuer_free);
  g_autofree char *conf = g_build_filename (f->dir, "issuer.conf", NULL);
  const char *bad[] = {
    "not a key file",
    "[issuer]\n",
    "[issuer]\nstore=mysql:password=secret\n",
    "[issuer]\nstore=postgresql:\n",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_assert_true (g_file_set_contents (conf, bad[i], -1, &error));
    g_autoptr (TallyIssuer) issuer = tally_issuer_open (f->dir, &error);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
    g_assert_nonnull (strstr (error->message, "issuer.conf"));
    g_assert_null (strstr (error->message, "secret"));
    g_assert_null (issuer);
  }
}

/* A PostgreSQL store that cannot be reached fails init with the server's
 * (here: libpq's) reason and leaves no key or config behind. */
static void
test_create_leaves_nothing_when_store_unreachable (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->tmp, "unreachable", NULL);
  g_autofree char *socket_dir = g_build_filename (f->tmp, "no-server-here", NULL);
  g_autofree char *spec = g_strdup_printf ("postgresql:host=%s dbname=tally", socket_dir);
  g_autoptr (TallyIssuer) issuer =
    tally_issuer_create_with_store (dir, spec, "Bank", "EUR", TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE);
  g_assert_nonnull (strstr (error->message, "cannot connect to PostgreSQL"));
  g_assert_nonnull (strstr (error->message, "no-server-here"));
  g_assert_null (issuer);
  g_autofree char *key = g_build_filename (dir, "issuer.key", NULL);
  g_autofree char *conf = g_build_filename (dir, "issuer.conf", NULL);
  g_assert_false (g_file_test (key, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (conf, G_FILE_TEST_EXISTS));
}

/* One store, one issuer: a second issuer pointed at a PostgreSQL schema
 * that holds one is refused and leaves nothing behind. */
static void
test_create_refuses_store_holding_another_issuer (Fixture *f, gconstpointer data)
{
  g_autofree char *conf = g_build_filename (f->dir, "issuer.conf", NULL);
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (conf, &contents, NULL, NULL));
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_assert_true (g_key_file_load_from_data (kf, contents, -1, G_KEY_FILE_NONE, NULL));
  g_autofree char *spec = g_key_file_get_string (kf, "issuer", "store", NULL);
  g_assert_true (g_str_has_prefix (spec, "postgresql:"));

  g_autoptr (GError) error = NULL;
  g_autofree char *other_dir = g_build_filename (f->tmp, "other", NULL);
  g_autoptr (TallyIssuer) other =
    tally_issuer_create_with_store (other_dir, spec, "Other", "EUR", TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_null (other);
  g_autofree char *other_key = g_build_filename (other_dir, "issuer.key", NULL);
  g_autofree char *other_conf = g_build_filename (other_dir, "issuer.conf", NULL);
  g_assert_false (g_file_test (other_key, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (other_conf, G_FILE_TEST_EXISTS));

  /* The first issuer's books are untouched. */
  test_account_open (f->issuer, "alice", 500);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 500);
}

/* --- accounts --- */

static void
test_account_refuses_duplicate_name (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 100);
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_issuer_account_create (f->issuer, "alice", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 100);
}

static void
test_account_refuses_unknown_account (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gint64 balance;
  g_assert_false (tally_issuer_deposit (f->issuer, "bob", 100, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (tally_issuer_account_balance (f->issuer, "bob", &balance, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.issued, ==, 0);
}

static void
test_account_refuses_empty_name (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_assert_false (tally_issuer_account_create (f->issuer, "", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (tally_issuer_account_create (f->issuer, "a\nb", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
}

static void
test_deposit_refuses_non_positive_amount (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 500);
  const gint64 bad[] = { 0, -1, TALLY_AMOUNT_MAX + 1 };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_assert_false (tally_issuer_deposit (f->issuer, "alice", bad[i], &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  }
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 500);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.issued, ==, 500);
}

static void
test_deposit_counts_as_issued (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 1000);
  test_account_open (f->issuer, "bob", 250);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_deposit (f->issuer, "alice", 1, &error));
  g_assert_no_error (error);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 1001);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.issued, ==, 1251);
  g_assert_cmpint (a.online, ==, 1251);
  g_assert_cmpint (a.offline, ==, 0);
  g_assert_true (a.balanced);
}

/* --- certificates --- */

static void
test_certify_issues_verifiable_certificate (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 0);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (reg->cert);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify (env, tally_issuer_get_public_key (f->issuer), TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (cert->register_public_key.data, cert->register_public_key.len, reg->pk,
                   TALLY_PUBLIC_KEY_BYTES);
  g_assert_cmpmem (cert->register_id.data, cert->register_id.len, reg->id, TALLY_ID_BYTES);
  g_assert_cmpstr (cert->currency, ==, "EUR");
  g_assert_cmpint (cert->limits->max_payment, ==, 5000);
  g_assert_cmpint (cert->limits->balance_cap, ==, 50000);
  g_assert_cmpuint (cert->limits->max_offline_payments, ==, 100);
  g_assert_cmpuint (cert->limits->max_offline_seconds, ==, 72 * 3600);
  g_assert_cmpuint (cert->not_before, ==, TEST_NOW);
  g_assert_cmpuint (cert->not_after, ==, TEST_NOW + 30 * 86400);
  g_assert_cmpuint (cert->serial, ==, 1);

  /* Certifying the same key again issues the next serial. */
  Tally__Limits limits;
  test_default_limits (&limits);
  limits.max_payment = 1000;
  g_autoptr (GBytes) again =
    tally_issuer_certify (f->issuer, reg->pk, "alice", NULL, &limits, TEST_NOW, TEST_NOW + 10, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env2 = test_envelope (again);
  g_autoptr (Tally__RegisterCertificate) cert2 =
    tally_certificate_verify_any_time (env2, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (cert2->serial, ==, 2);
  g_assert_cmpint (cert2->limits->max_payment, ==, 1000);

  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpuint (a.registers, ==, 1);
}

static void
test_certify_refuses_invalid_limits (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 0);
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  for (int i = 0; i < 6; i++) {
    Tally__Limits limits;
    test_default_limits (&limits);
    guint64 not_before = TEST_NOW, not_after = TEST_NOW + 86400;
    switch (i) {
    case 0: limits.max_payment = 0; break;
    case 1: limits.balance_cap = -5; break;
    case 2: limits.balance_cap = TALLY_AMOUNT_MAX + 1; break;
    case 3: limits.max_offline_payments = 0; break;
    case 4: limits.max_offline_seconds = 0; break;
    case 5: not_after = not_before; break;
    }
    g_autoptr (GError) error = NULL;
    g_autoptr (GBytes) cert =
      tally_issuer_certify (f->issuer, reg->pk, "alice", NULL, &limits, not_before, not_after, &error);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_null (cert);
  }

  /* Neither an unknown account nor a key that is no curve point. */
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert =
    tally_issuer_certify (f->issuer, reg->pk, "nobody", NULL, &limits, TEST_NOW, TEST_NOW + 1, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_clear_error (&error);
  guint8 junk[TALLY_PUBLIC_KEY_BYTES] = { 0 };
  g_autoptr (GBytes) cert2 =
    tally_issuer_certify (f->issuer, junk, "alice", NULL, &limits, TEST_NOW, TEST_NOW + 1, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_null (cert2);

  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpuint (a.registers, ==, 0);
}

static void
test_certify_refuses_revoked_register (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 0);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_revoke (f->issuer, reg->id, TEST_NOW, &error));
  g_assert_no_error (error);

  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GBytes) cert =
    tally_issuer_certify (f->issuer, reg->pk, "alice", NULL, &limits, TEST_NOW, TEST_NOW + 1, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED);
  g_assert_null (cert);
}

static void
test_certify_refuses_moving_register_to_another_account (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 0);
  test_account_open (f->issuer, "mallory", 0);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert =
    tally_issuer_certify (f->issuer, reg->pk, "mallory", NULL, &limits, TEST_NOW, TEST_NOW + 1, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_null (cert);
}

static Tally__RegisterCertificate *
decode_certificate (Fixture *f, const Tally__SignedEnvelope *env)
{
  g_autoptr (GError) error = NULL;
  Tally__RegisterCertificate *cert =
    tally_certificate_verify_any_time (env, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  return cert;
}

static void
test_certify_keeps_display_name_across_renewals (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GError) error = NULL;
  reg->cert = tally_issuer_certify (f->issuer, reg->pk, "bob", "Caf\u00e9 Lumen", &limits, TEST_NOW,
                                    TEST_NOW + 30 * 86400, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (reg->cert);
  g_autoptr (Tally__RegisterCertificate) cert = decode_certificate (f, env);
  g_assert_cmpstr (cert->display_name, ==, "Caf\u00e9 Lumen");

  /* The issuer renews at reconciliation from the register row. */
  g_autoptr (TestBundle) bundle = test_bundle_new (reg);
  g_autoptr (GBytes) signed_bundle = test_bundle_sign (bundle);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, signed_bundle, &report);
  g_autoptr (Tally__RegisterCertificate) renewed =
    decode_certificate (f, res->renewed_certificate);
  g_assert_cmpuint (renewed->serial, ==, 2);
  g_assert_cmpstr (renewed->display_name, ==, "Caf\u00e9 Lumen");

  /* Certifying again states the name anew: none now. */
  g_autoptr (GBytes) again = tally_issuer_certify (f->issuer, reg->pk, "bob", NULL, &limits,
                                                   TEST_NOW, TEST_NOW + 86400, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) env3 = test_envelope (again);
  g_autoptr (Tally__RegisterCertificate) cert3 = decode_certificate (f, env3);
  g_assert_cmpstr (cert3->display_name, ==, "");
}

static void
test_certify_refuses_invalid_display_name (Fixture *f, gconstpointer data)
{
  static const char *const bad[] = {
    "0123456789012345678901234567890123456789012345678901234567890123X", /* 65 bytes */
    "Bob\xff Bakery",                                                    /* not UTF-8 */
    "Bob's\nBakery",                                                     /* C0 control */
    "Bob\x7f",                                                           /* DEL */
    "Bob\xc2\x85",                                                       /* C1 control */
    "Bob\u2028Bakery",                                                   /* line separator */
    "Bob \u202e yrekaB",                                                 /* bidi override */
  };
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  Tally__Limits limits;
  test_default_limits (&limits);
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GBytes) cert = tally_issuer_certify (f->issuer, reg->pk, "bob", bad[i], &limits,
                                                    TEST_NOW, TEST_NOW + 86400, &error);
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_null (cert);
  }
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpuint (a.registers, ==, 0);

  /* Exactly 64 bytes is the longest name. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) cert = tally_issuer_certify (
    f->issuer, reg->pk, "bob", "0123456789012345678901234567890123456789012345678901234567890123",
    &limits, TEST_NOW, TEST_NOW + 86400, &error);
  g_assert_no_error (error);
  g_assert_nonnull (cert);
}

/* --- vouchers --- */

static void
test_voucher_refuses_overdraft (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 1000);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = tally_issuer_sell_voucher (f->issuer, reg->id, 1001, TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS);
  g_assert_null (v);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 1000);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.offline, ==, 0);

  g_autoptr (GBytes) all = test_sell_voucher (f->issuer, reg, 1000);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 0);
}

static void
test_voucher_debits_account_with_increasing_sequence (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) other = test_register_new (f->issuer, "alice");
  const gint64 amounts[] = { 2000, 350, 1 };
  for (gsize i = 0; i < G_N_ELEMENTS (amounts); i++) {
    g_autoptr (GBytes) bytes = test_sell_voucher (f->issuer, reg, amounts[i]);
    g_autoptr (Tally__SignedEnvelope) env = test_envelope (bytes);
    g_autoptr (GError) error = NULL;
    g_autoptr (Tally__LoadVoucher) v =
      tally_voucher_verify (env, tally_issuer_get_public_key (f->issuer), &error);
    g_assert_no_error (error);
    g_assert_cmpmem (v->register_id.data, v->register_id.len, reg->id, TALLY_ID_BYTES);
    g_assert_cmpuint (v->sequence, ==, i + 1);
    g_assert_cmpint (v->amount->value, ==, amounts[i]);
    g_assert_cmpstr (v->amount->currency, ==, "EUR");
    g_assert_cmpuint (v->issued_at, ==, TEST_NOW);
  }
  /* Sequences are per register. */
  g_autoptr (GBytes) first_other = test_sell_voucher (f->issuer, other, 5);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (first_other);
  g_autoptr (Tally__LoadVoucher) v =
    tally_voucher_verify (env, tally_issuer_get_public_key (f->issuer), NULL);
  g_assert_cmpuint (v->sequence, ==, 1);

  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 - 2351 - 5);
  TallyAudit a = test_audit (f->issuer);
  g_assert_cmpint (a.offline, ==, 2356);
  g_assert_cmpint (a.online + a.offline, ==, a.issued);
  g_assert_true (a.balanced);
}

static void
test_voucher_refuses_unknown_or_revoked_register (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 1000);
  g_autoptr (TestRegister) stranger = test_register_new_uncertified ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = tally_issuer_sell_voucher (f->issuer, stranger->id, 10, TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
  g_assert_null (v);
  g_clear_error (&error);

  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_assert_true (tally_issuer_revoke (f->issuer, reg->id, TEST_NOW, &error));
  g_assert_no_error (error);
  g_autoptr (GBytes) v2 = tally_issuer_sell_voucher (f->issuer, reg->id, 10, TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED);
  g_assert_null (v2);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 1000);
}

static void
test_voucher_refuses_invalid_amount_and_cap (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 100000);
  g_autoptr (TestRegister) reg = test_register_new (f->issuer, "alice");
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = tally_issuer_sell_voucher (f->issuer, reg->id, 0, TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT);
  g_clear_error (&error);
  /* The register's certified cap is 500.00: a larger load could never be
   * applied. */
  g_autoptr (GBytes) v2 = tally_issuer_sell_voucher (f->issuer, reg->id, 50001, TEST_NOW, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_BALANCE);
  g_assert_null (v2);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 100000);
}

/* --- reconciliation --- */

static void
test_reconcile_matches_payer_and_payee_halves (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);

  g_autoptr (GBytes) perm = test_permission (a, b, 1250);
  g_autoptr (GBytes) receipt = test_receipt (b, perm);

  /* The payer reports first, without the receipt: value is in flight. */
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, perm, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 1);
  g_assert_cmpuint (report.received_new, ==, 0);
  g_assert_cmpuint (report.duplicates, ==, 0);
  g_assert_false (report.revoked);
  g_assert_cmpuint (ra->settled_counter, ==, 1);
  g_assert_cmpmem (ra->register_id.data, ra->register_id.len, a->id, TALLY_ID_BYTES);
  g_assert_cmpuint (ra->n_settled_received, ==, 0);
  g_assert_false (ra->revoked);

  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 1250);
  g_assert_cmpint (mid.offline, ==, 3000 - 1250);
  g_assert_true (mid.balanced);

  /* The payee's half settles it. */
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, perm, receipt);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  /* Booked before by the payer: a duplicate that brings the missing half. */
  g_assert_cmpuint (report.spent_new, ==, 0);
  g_assert_cmpuint (report.received_new, ==, 0);
  g_assert_cmpuint (report.duplicates, ==, 1);
  g_assert_cmpuint (rb->settled_counter, ==, 0);
  g_assert_cmpuint (rb->n_settled_received, ==, 1);
  g_assert_true (list_contains_hash (rb->settled_received, rb->n_settled_received, perm));

  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.offline, ==, 3000);
  g_assert_cmpint (end.online, ==, 7000);
  g_assert_true (end.balanced);
}

typedef struct
{
  TallyIssuer *issuer;
  GBytes *bundle;
  GMutex *lock;
  GCond *cond;
  guint *waiting;
  TallyReconcileReport report;
  GBytes *result;
  GError *error;
} Reconciler;

static gpointer
reconcile_when_both_ready (gpointer data)
{
  Reconciler *r = data;
  g_mutex_lock (r->lock);
  if (--*r->waiting == 0)
    g_cond_broadcast (r->cond);
  while (*r->waiting > 0)
    g_cond_wait (r->cond, r->lock);
  g_mutex_unlock (r->lock);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (r->bundle, &len);
  r->result = tally_issuer_reconcile (r->issuer, bytes, len, TEST_NOW, &r->report, &r->error);
  return NULL;
}

/* Two issuer processes (here: two issuers on one store, in two threads)
 * reconcile the payer's and the payee's half of one payment at the same
 * moment: it is booked once, settled once, and the books balance. */
static void
test_reconcile_books_payment_once_when_both_halves_race (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) perm = test_permission (a, b, 1250);
  g_autoptr (GBytes) receipt = test_receipt (b, perm);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, perm, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, perm, receipt);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);

  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) second = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  GMutex lock;
  GCond cond;
  g_mutex_init (&lock);
  g_cond_init (&cond);
  guint waiting = 2;
  Reconciler payer = { f->issuer, bundle_a, &lock, &cond, &waiting };
  Reconciler payee = { second, bundle_b, &lock, &cond, &waiting };
  GThread *t1 = g_thread_new ("payer", reconcile_when_both_ready, &payer);
  GThread *t2 = g_thread_new ("payee", reconcile_when_both_ready, &payee);
  g_thread_join (t1);
  g_thread_join (t2);
  g_mutex_clear (&lock);
  g_cond_clear (&cond);

  g_assert_no_error (payer.error);
  g_assert_no_error (payee.error);
  g_assert_nonnull (payer.result);
  g_assert_nonnull (payee.result);
  g_bytes_unref (payer.result);
  g_bytes_unref (payee.result);
  /* Whichever came first booked it; the other found it booked. */
  g_assert_cmpuint (payer.report.spent_new + payee.report.received_new, ==, 1);
  g_assert_cmpuint (payer.report.duplicates + payee.report.duplicates, ==, 1);

  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.offline, ==, 3000);
  g_assert_cmpint (end.online, ==, 7000);
  g_assert_cmpuint (end.views_unbacked, ==, 0);
  g_assert_true (end.balanced);
}

static void
test_reconcile_settles_payment_with_payers_receipt (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 4000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, r1);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 1);
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 0);
  g_assert_cmpint (mid.offline, ==, 4000);
  g_assert_true (mid.balanced);

  /* The payee's later report adds nothing but is still acknowledged. */
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, p1, r1);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.received_new, ==, 0);
  g_assert_cmpuint (report.duplicates, ==, 1);
  g_assert_true (list_contains_hash (rb->settled_received, rb->n_settled_received, p1));
  TallyAudit end = test_audit (f->issuer);
  assert_audit_equal (&mid, &end);
}

static void
test_reconcile_ignores_receipt_that_does_not_verify (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 4000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  /* The payer cannot vouch for the payee by signing the receipt itself. */
  g_autoptr (GBytes) forged = test_sign_receipt (a->sk, p1, 1000);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, forged);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 1);
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 1000);
  g_assert_cmpint (mid.offline, ==, 3000);
  g_assert_true (mid.balanced);
}

static void
test_reconcile_is_idempotent (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 5000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 700);
  g_autoptr (GBytes) p2 = test_permission (a, b, 300);
  g_autoptr (GBytes) r2 = test_receipt (b, p2);
  g_autoptr (GBytes) d3 = test_defund (a, 4000);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p1, NULL);
  test_bundle_add_spent (ba, p2, r2);
  test_bundle_add_spent (ba, d3, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);

  TallyReconcileReport first, second;
  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, bundle, &first);
  g_assert_cmpuint (first.spent_new, ==, 2);
  g_assert_cmpuint (first.defunds, ==, 1);
  g_assert_cmpuint (first.duplicates, ==, 0);
  TallyAudit after_first = test_audit (f->issuer);
  gint64 alice_after_first = test_balance (f->issuer, "alice");
  g_assert_cmpint (alice_after_first, ==, 5000 + 4000);

  g_autoptr (Tally__ReconciliationResult) r2res = test_reconcile (f->issuer, bundle, &second);
  g_assert_cmpuint (second.spent_new, ==, 0);
  g_assert_cmpuint (second.defunds, ==, 0);
  g_assert_cmpuint (second.received_new, ==, 0);
  g_assert_cmpuint (second.duplicates, ==, 3);
  g_assert_cmpuint (second.fraud_proofs, ==, 0);
  g_assert_cmpuint (r2res->settled_counter, ==, 3);
  TallyAudit after_second = test_audit (f->issuer);
  assert_audit_equal (&after_first, &after_second);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, alice_after_first);
  g_assert_true (after_second.balanced);
  g_assert_cmpint (after_second.in_flight, ==, 700);
}

static void
test_reconcile_accepts_entries_out_of_order (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 5000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 100);
  g_autoptr (GBytes) p2 = test_permission (a, b, 200);
  g_autoptr (GBytes) p3 = test_permission (a, b, 300);

  /* Reported out of order, the chain still links up: no fraud. */
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p3, NULL);
  test_bundle_add_spent (ba, p1, NULL);
  test_bundle_add_spent (ba, p2, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_cmpuint (report.spent_new, ==, 3);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_false (res->revoked);
  g_assert_cmpuint (res->settled_counter, ==, 3);
}

/* A bundle that hides an entry below its highest own counter could have a
 * later defund credited against value the hidden entry spent (5.5). */
static void
test_reconcile_refuses_bundle_with_gap_below_highest_entry (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 5000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 100);
  g_autoptr (GBytes) p2 = test_permission (a, b, 200);
  g_autoptr (GBytes) p3 = test_permission (a, b, 300);

  g_autoptr (TestBundle) gap = test_bundle_new (a);
  test_bundle_add_spent (gap, p1, NULL);
  test_bundle_add_spent (gap, p3, NULL);
  g_autoptr (GBytes) bundle_gap = test_bundle_sign (gap);
  assert_reconcile_fails (f, bundle_gap, TALLY_ERROR_INCOMPLETE);

  g_autoptr (TestBundle) first = test_bundle_new (a);
  test_bundle_add_spent (first, p1, NULL);
  g_autoptr (GBytes) bundle1 = test_bundle_sign (first);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, bundle1, &report);
  g_assert_cmpuint (r1->settled_counter, ==, 1);

  /* Entries the issuer already holds close the gap. */
  g_autoptr (TestBundle) second = test_bundle_new (a);
  test_bundle_add_spent (second, p3, NULL);
  test_bundle_add_spent (second, p2, NULL);
  g_autoptr (GBytes) bundle2 = test_bundle_sign (second);
  g_autoptr (Tally__ReconciliationResult) r2 = test_reconcile (f->issuer, bundle2, &report);
  g_assert_cmpuint (r2->settled_counter, ==, 3);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
}

static void
test_reconcile_detects_counter_reuse_and_revokes (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 2000);

  /* Alice's register restored from a backup spends counter 1 twice. */
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (a->id, genesis);
  g_autoptr (GBytes) to_bob =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 1500, 1, genesis, TEST_EXPIRES_AT);
  g_autoptr (GBytes) to_carol =
    test_sign_permission (a->sk, a->id, c->id, "EUR", 1500, 1, genesis, TEST_EXPIRES_AT);
  g_autoptr (GBytes) rb = test_receipt (b, to_bob);
  g_autoptr (GBytes) rc = test_receipt (c, to_carol);

  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, to_bob, rb);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res_b = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);

  g_autoptr (TestBundle) bc = test_bundle_new (c);
  test_bundle_add_received (bc, a->cert, to_carol, rc);
  g_autoptr (GBytes) bundle_c = test_bundle_sign (bc);
  g_autoptr (Tally__ReconciliationResult) res_c = test_reconcile (f->issuer, bundle_c, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_cmpuint (report.received_new, ==, 1);
  /* Carol accepted in good faith: she keeps her money and her register. */
  g_assert_false (report.revoked);
  g_assert_false (res_c->revoked);
  g_assert_nonnull (res_c->renewed_certificate);
  g_assert_true (list_contains_hash (res_c->settled_received, res_c->n_settled_received, to_carol));
  g_assert_cmpuint (res_c->n_fraud_proofs, ==, 1);

  g_autoptr (Tally__FraudProof) fp = open_fraud_proof (f, res_c->fraud_proofs[0]);
  g_assert_cmpmem (fp->register_id.data, fp->register_id.len, a->id, TALLY_ID_BYTES);
  g_assert_cmpint (fp->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED);
  g_assert_cmpuint (fp->detected_at, ==, TEST_NOW + 3600);
  g_assert_true (envelopes_equal (fp->first, to_bob));
  g_assert_true (envelopes_equal (fp->second, to_carol));
  /* Anyone can check both entries against Alice's key. */
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (
    fp->first, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, a->pk, &error));
  g_assert_true (tally_envelope_verify (
    fp->second, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, a->pk, &error));
  g_assert_no_error (error);

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_cmpuint (list->serial, ==, 2);
  g_assert_cmpuint (list->issued_at, ==, TEST_NOW + 3600);
  g_assert_true (tally_revocation_list_contains (list, a->id));
  g_assert_false (tally_revocation_list_contains (list, c->id));

  /* Alice held 20.00 and spent 30.00: 10.00 exists that nothing backs.
   * Bob and Carol keep 15.00 each; Alice's register holds nothing more. */
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.fraud_exposure, ==, 1000);
  g_assert_cmpuint (audit.revoked, ==, 1);
  g_assert_cmpuint (audit.fraud_proofs, ==, 1);
  g_assert_cmpint (audit.offline, ==, 3000);
  g_assert_true (audit.identity);
  g_assert_false (audit.balanced);

  g_autoptr (GPtrArray) proofs = tally_issuer_get_fraud_proofs (f->issuer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (proofs->len, ==, 1);

  /* Alice's own bundle is still booked, and told why she is revoked. */
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, to_bob, rb);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  g_autoptr (Tally__ReconciliationResult) res_a = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_true (report.revoked);
  g_assert_true (res_a->revoked);
  g_assert_null (res_a->renewed_certificate);
  g_assert_cmpuint (report.duplicates, ==, 1);
  /* Her whole bundle shows 30.00 spent against 20.00 of evidence. */
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_cmpuint (res_a->n_fraud_proofs, ==, 2);
  g_autoptr (Tally__FraudProof) over = open_fraud_proof (f, res_a->fraud_proofs[1]);
  g_assert_cmpint (over->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN);
  g_assert_cmpint (over->deficit, ==, 1000);
  g_assert_cmpmem (over->register_id.data, over->register_id.len, a->id, TALLY_ID_BYTES);
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpuint (end.fraud_proofs, ==, 2);
  end.fraud_proofs = audit.fraud_proofs;
  assert_audit_equal (&audit, &end);
}

static void
test_reconcile_detects_counter_reuse_within_one_bundle (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 2000);
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (a->id, genesis);
  g_autoptr (GBytes) p =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 900, 1, genesis, TEST_EXPIRES_AT);
  g_autoptr (GBytes) q =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 800, 1, genesis, TEST_EXPIRES_AT);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p, NULL);
  test_bundle_add_spent (ba, q, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_cmpuint (report.spent_new, ==, 2);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_true (report.revoked);
  g_assert_true (res->revoked);
  g_assert_null (res->renewed_certificate);
  g_assert_cmpuint (res->n_fraud_proofs, ==, 1);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.in_flight, ==, 1700);
  g_assert_cmpint (audit.offline, ==, 300);
  g_assert_true (audit.balanced);
}

static void
test_reconcile_detects_forked_chain (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);

  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  /* Counter 2 that does not extend entry 1: the chain was rewound. */
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (a->id, genesis);
  g_autoptr (GBytes) p2 =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 1000, 2, genesis, TEST_EXPIRES_AT);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, NULL);
  test_bundle_add_spent (ba, p2, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_cmpuint (report.spent_new, ==, 2);
  g_assert_true (res->revoked);
  g_assert_cmpuint (res->n_fraud_proofs, ==, 1);
  g_autoptr (Tally__FraudProof) fp = open_fraud_proof (f, res->fraud_proofs[0]);
  g_assert_cmpint (fp->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK);
  g_assert_cmpmem (fp->register_id.data, fp->register_id.len, a->id, TALLY_ID_BYTES);
  g_assert_true (envelopes_equal (fp->first, p1));
  g_assert_true (envelopes_equal (fp->second, p2));

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_true (tally_revocation_list_contains (list, a->id));
  /* The rewound register spent 20.00 of the 30.00 it was sold: proven and
   * revoked, but no value exists beyond the evidence. */
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_true (audit.balanced);
}

static void
test_reconcile_detects_chain_not_starting_at_genesis (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  guint8 wrong[TALLY_HASH_BYTES];
  memset (wrong, 0x5a, sizeof wrong);
  g_autoptr (GBytes) p1 =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 1000, 1, wrong, TEST_EXPIRES_AT);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_true (res->revoked);
  g_autoptr (Tally__FraudProof) fp = open_fraud_proof (f, res->fraud_proofs[0]);
  g_assert_cmpint (fp->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK);
  g_assert_true (envelopes_equal (fp->first, p1));
  g_assert_null (fp->second);
}

static void
test_reconcile_detects_fork_reported_by_payee_first (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);

  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  guint8 wrong[TALLY_HASH_BYTES];
  memset (wrong, 0x11, sizeof wrong);
  g_autoptr (GBytes) p2 =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 500, 2, wrong, TEST_EXPIRES_AT);
  g_autoptr (GBytes) r2 = test_receipt (b, p2);

  /* Bob reports counter 2 before anyone reports counter 1. */
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, p2, r2);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res_b = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  g_autoptr (Tally__ReconciliationResult) res_a = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_true (res_a->revoked);
  g_autoptr (Tally__FraudProof) fp = open_fraud_proof (f, res_a->fraud_proofs[0]);
  g_assert_cmpint (fp->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK);
  g_assert_true (envelopes_equal (fp->first, p1));
  g_assert_true (envelopes_equal (fp->second, p2));
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.balanced);
}

static void
test_reconcile_refuses_forged_bundle (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) mallory = test_register_new_uncertified ();
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);

  /* A bundle in Alice's name signed by someone else. */
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, NULL);
  g_autoptr (GBytes) forged = test_bundle_sign_with (ba, mallory->sk);
  assert_reconcile_fails (f, forged, TALLY_ERROR_BAD_SIGNATURE);

  /* Alice's genuine bundle with one body byte changed. */
  g_autoptr (GBytes) genuine = test_bundle_sign (ba);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (genuine);
  env->body.data[env->body.len - 1] ^= 0x01;
  g_autoptr (GBytes) tampered = tally_envelope_pack (env);
  assert_reconcile_fails (f, tampered, TALLY_ERROR_BAD_SIGNATURE);

  /* A permission signed by Bob passed off as Alice's spent entry. */
  g_autoptr (GBytes) fake =
    test_sign_permission (b->sk, a->id, b->id, "EUR", 10, 2, a->head, TEST_EXPIRES_AT);
  g_autoptr (TestBundle) bf = test_bundle_new (a);
  test_bundle_add_spent (bf, fake, NULL);
  g_autoptr (GBytes) bundle_fake = test_bundle_sign (bf);
  assert_reconcile_fails (f, bundle_fake, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_reconcile_refuses_unknown_register (Fixture *f, gconstpointer data)
{
  g_autoptr (TestRegister) stranger = test_register_new_uncertified ();
  g_autoptr (TestBundle) bs = test_bundle_new (stranger);
  g_autoptr (GBytes) bundle = test_bundle_sign (bs);
  assert_reconcile_fails (f, bundle, TALLY_ERROR_NOT_FOUND);
}

static void
test_reconcile_refuses_malformed_bundle (Fixture *f, gconstpointer data)
{
  const guint8 junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
  g_autoptr (GBytes) bytes = g_bytes_new (junk, sizeof junk);
  assert_reconcile_fails (f, bytes, TALLY_ERROR_MALFORMED);

  /* A valid envelope whose body is not a bundle. */
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autoptr (GBytes) not_bundle = tally_envelope_sign (
    TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE, junk, sizeof junk, reg->sk);
  assert_reconcile_fails (f, not_bundle, TALLY_ERROR_MALFORMED);
}

static void
test_reconcile_refuses_received_entry_from_another_issuer (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");

  g_autoptr (GError) error = NULL;
  g_autofree char *other_dir = g_build_filename (f->tmp, "other-issuer", NULL);
  g_autoptr (TallyIssuer) other = test_issuer_create (other_dir, "Other", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_account_create (other, "xavier", &error));
  g_autoptr (TestRegister) x = test_register_new (other, "xavier");

  g_autoptr (GBytes) p = test_permission (x, b, 1000);
  g_autoptr (GBytes) r = test_receipt (b, p);
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, x->cert, p, r);
  g_autoptr (GBytes) bundle = test_bundle_sign (bb);
  assert_reconcile_fails (f, bundle, TALLY_ERROR_WRONG_ISSUER);
}

static void
test_reconcile_refuses_received_entry_with_forged_parts (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);

  /* A permission paying Carol cannot be cashed in by Bob. */
  g_autoptr (GBytes) to_carol = test_permission (a, c, 1000);
  g_autoptr (GBytes) r_bob = test_sign_receipt (b->sk, to_carol, 1000);
  g_autoptr (TestBundle) b1 = test_bundle_new (b);
  test_bundle_add_received (b1, a->cert, to_carol, r_bob);
  g_autoptr (GBytes) bundle1 = test_bundle_sign (b1);
  assert_reconcile_fails (f, bundle1, TALLY_ERROR_WRONG_PAYEE);

  /* A permission Alice never signed, under Alice's certificate. */
  g_autoptr (GBytes) fake =
    test_sign_permission (b->sk, a->id, b->id, "EUR", 1000, 2, a->head, TEST_EXPIRES_AT);
  g_autoptr (GBytes) r_fake = test_receipt (b, fake);
  g_autoptr (TestBundle) b2 = test_bundle_new (b);
  test_bundle_add_received (b2, a->cert, fake, r_fake);
  g_autoptr (GBytes) bundle2 = test_bundle_sign (b2);
  assert_reconcile_fails (f, bundle2, TALLY_ERROR_BAD_SIGNATURE);

  /* Bob's receipt must be his own and match the amount. */
  g_autoptr (GBytes) to_bob = test_permission (a, b, 500);
  g_autoptr (GBytes) r_by_carol = test_receipt (c, to_bob);
  g_autoptr (TestBundle) b3 = test_bundle_new (b);
  test_bundle_add_received (b3, a->cert, to_bob, r_by_carol);
  g_autoptr (GBytes) bundle3 = test_bundle_sign (b3);
  assert_reconcile_fails (f, bundle3, TALLY_ERROR_BAD_SIGNATURE);

  g_autoptr (GBytes) r_wrong_amount = test_sign_receipt (b->sk, to_bob, 499);
  g_autoptr (TestBundle) b4 = test_bundle_new (b);
  test_bundle_add_received (b4, a->cert, to_bob, r_wrong_amount);
  g_autoptr (GBytes) bundle4 = test_bundle_sign (b4);
  assert_reconcile_fails (f, bundle4, TALLY_ERROR_AMOUNT_MISMATCH);

  /* The payer certificate must be the payer's. */
  g_autoptr (GBytes) r_ok = test_receipt (b, to_bob);
  g_autoptr (TestBundle) b5 = test_bundle_new (b);
  test_bundle_add_received (b5, c->cert, to_bob, r_ok);
  g_autoptr (GBytes) bundle5 = test_bundle_sign (b5);
  assert_reconcile_fails (f, bundle5, TALLY_ERROR_BAD_SIGNATURE);
}

static void
test_reconcile_refused_bundle_books_nothing (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) good = test_permission (a, b, 1000);
  /* Signed by Alice's key but naming Bob as the payer. */
  g_autoptr (GBytes) bad =
    test_sign_permission (a->sk, b->id, a->id, "EUR", 1000, 1, a->head, TEST_EXPIRES_AT);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, good, NULL);
  test_bundle_add_spent (ba, bad, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  assert_reconcile_fails (f, bundle, TALLY_ERROR_WRONG_REGISTER);

  /* Received entries are booked after spent ones: a bad one at the end
   * undoes the good spent entry already booked in the same transaction. */
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) more = test_sell_voucher (f->issuer, a, 1000);
  g_autoptr (GBytes) b_to_c = test_permission (b, c, 100);
  g_autoptr (GBytes) c_receipt = test_receipt (c, b_to_c);
  g_autoptr (TestBundle) bad_tail = test_bundle_new (a);
  test_bundle_add_spent (bad_tail, good, NULL);
  test_bundle_add_received (bad_tail, b->cert, b_to_c, c_receipt);
  g_autoptr (GBytes) bundle_bad_tail = test_bundle_sign (bad_tail);
  assert_reconcile_fails (f, bundle_bad_tail, TALLY_ERROR_WRONG_PAYEE);

  /* The good entry was rolled back with the rest: it books as new now. */
  g_autoptr (TestBundle) ok = test_bundle_new (a);
  test_bundle_add_spent (ok, good, NULL);
  g_autoptr (GBytes) bundle_ok = test_bundle_sign (ok);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle_ok, &report);
  g_assert_cmpuint (report.spent_new, ==, 1);
  g_assert_cmpuint (report.duplicates, ==, 0);
}

static void
test_reconcile_refuses_entry_in_another_currency (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) p =
    test_sign_permission (a->sk, a->id, b->id, "USD", 100, 1, a->head, TEST_EXPIRES_AT);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  assert_reconcile_fails (f, bundle, TALLY_ERROR_CURRENCY_MISMATCH);
}

static void
test_reconcile_refuses_entry_of_wrong_kind (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) p = test_permission (a, b, 100);
  /* A receipt is not something a payer spends. */
  g_autoptr (GBytes) r = test_receipt (a, p);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, r, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  assert_reconcile_fails (f, bundle, TALLY_ERROR_WRONG_CONTEXT);
}

static void
test_reconcile_refuses_foreign_voucher (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 10000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) bobs = test_sell_voucher (f->issuer, b, 100);

  g_autoptr (TestBundle) b1 = test_bundle_new (a);
  test_bundle_add_voucher (b1, bobs);
  g_autoptr (GBytes) bundle1 = test_bundle_sign (b1);
  assert_reconcile_fails (f, bundle1, TALLY_ERROR_MALFORMED);

  /* A voucher from another issuer. */
  g_autoptr (GError) error = NULL;
  g_autofree char *other_dir = g_build_filename (f->tmp, "other-issuer", NULL);
  g_autoptr (TallyIssuer) other = test_issuer_create (other_dir, "Other", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_account_create (other, "alice", &error));
  g_assert_true (tally_issuer_deposit (other, "alice", 1000, &error));
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GBytes) cert =
    tally_issuer_certify (other, a->pk, "alice", NULL, &limits, TEST_NOW, TEST_NOW + 100, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) theirs = tally_issuer_sell_voucher (other, a->id, 100, TEST_NOW, &error);
  g_assert_no_error (error);
  g_autoptr (TestBundle) b2 = test_bundle_new (a);
  test_bundle_add_voucher (b2, theirs);
  g_autoptr (GBytes) bundle2 = test_bundle_sign (b2);
  assert_reconcile_fails (f, bundle2, TALLY_ERROR_MALFORMED);
}

static void
test_reconcile_renews_certificate (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_nonnull (res->renewed_certificate);
  g_assert_nonnull (res->revocation_list);
  g_assert_cmpuint (res->reconciled_at, ==, TEST_NOW + 3600);
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (bundle);
  guint8 bundle_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, bundle_hash);
  g_assert_cmpmem (res->bundle_hash.data, res->bundle_hash.len, bundle_hash, sizeof bundle_hash);

  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__RegisterCertificate) cert = tally_certificate_verify (
    res->renewed_certificate, tally_issuer_get_public_key (f->issuer), TEST_NOW + 3600, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (cert->serial, ==, 2);
  g_assert_cmpuint (cert->not_before, ==, TEST_NOW + 3600);
  g_assert_cmpuint (cert->not_after, ==, TEST_NOW + 3600 + 30 * 86400);
  g_assert_cmpint (cert->limits->max_payment, ==, 5000);
  g_assert_cmpint (cert->limits->balance_cap, ==, 50000);
  g_assert_cmpmem (cert->register_id.data, cert->register_id.len, a->id, TALLY_ID_BYTES);

  g_autoptr (Tally__RevocationList) list = tally_revocation_list_verify (
    res->revocation_list, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->serial, ==, 1);

  /* Each reconciliation renews with the next serial. */
  g_autoptr (Tally__ReconciliationResult) res2 = test_reconcile (f->issuer, bundle, &report);
  g_autoptr (Tally__RegisterCertificate) cert2 = tally_certificate_verify_any_time (
    res2->renewed_certificate, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (cert2->serial, ==, 3);
}

static void
test_reconcile_books_revoked_register_without_renewal (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (GBytes) d2 = test_defund (a, 2000);

  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_revoke (f->issuer, a->id, TEST_NOW, &error));
  g_assert_no_error (error);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p1, r1);
  test_bundle_add_spent (ba, d2, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_true (report.revoked);
  g_assert_cmpuint (report.spent_new, ==, 1);
  g_assert_cmpuint (report.defunds, ==, 1);
  g_assert_true (res->revoked);
  g_assert_null (res->renewed_certificate);
  g_assert_cmpuint (res->settled_counter, ==, 2);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000 + 2000);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.offline, ==, 1000);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_true (audit.balanced);
}

/* --- audit --- */

static void
test_audit_balances_after_payments_and_defund (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 20000);
  test_account_open (f->issuer, "bob", 5000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 10000);
  g_autoptr (GBytes) vb = test_sell_voucher (f->issuer, b, 2000);

  TallyAudit start = test_audit (f->issuer);
  g_assert_cmpint (start.issued, ==, 25000);
  g_assert_cmpint (start.online, ==, 13000);
  g_assert_cmpint (start.offline, ==, 12000);
  g_assert_true (start.balanced);

  /* Alice pays Bob twice, Bob pays Alice once; then Alice defunds. */
  g_autoptr (GBytes) a1 = test_permission (a, b, 2500);
  g_autoptr (GBytes) a1r = test_receipt (b, a1);
  g_autoptr (GBytes) a2 = test_permission (a, b, 1500);
  g_autoptr (GBytes) a2r = test_receipt (b, a2);
  g_autoptr (GBytes) b1 = test_permission (b, a, 700);
  g_autoptr (GBytes) b1r = test_receipt (a, b1);
  g_autoptr (GBytes) ad = test_defund (a, 10000 - 2500 - 1500 + 700);

  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, va);
  test_bundle_add_spent (ba, a1, a1r);
  test_bundle_add_spent (ba, a2, NULL);
  test_bundle_add_spent (ba, ad, NULL);
  test_bundle_add_received (ba, b->cert, b1, b1r);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 2);
  g_assert_cmpuint (report.received_new, ==, 1);
  g_assert_cmpuint (report.defunds, ==, 1);
  g_assert_cmpuint (ra->settled_counter, ==, 3);

  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 1500);
  g_assert_cmpint (mid.online, ==, 13000 + 6700);
  g_assert_true (mid.balanced);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 10000 + 6700);

  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_voucher (bb, vb);
  test_bundle_add_spent (bb, b1, b1r);
  test_bundle_add_received (bb, a->cert, a1, a1r);
  test_bundle_add_received (bb, a->cert, a2, a2r);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.spent_new, ==, 0);
  g_assert_cmpuint (report.received_new, ==, 0);
  g_assert_cmpuint (report.duplicates, ==, 3);
  g_assert_cmpuint (rb->n_settled_received, ==, 2);

  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.issued, ==, 25000);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.online, ==, 19700);
  /* Alice's register is empty; Bob holds 20.00 + 40.00 - 7.00. */
  g_assert_cmpint (end.offline, ==, 5300);
  g_assert_cmpint (end.fraud_exposure, ==, 0);
  g_assert_cmpuint (end.registers, ==, 2);
  g_assert_true (end.balanced);
}

/* --- revocation --- */

static void
test_revoke_publishes_newer_list (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "alice");
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_issuer_revoke (f->issuer, a->id, TEST_NOW + 10, &error));
  g_assert_no_error (error);
  g_autoptr (Tally__RevocationList) l2 = revocation_list_of (f);
  g_assert_cmpuint (l2->serial, ==, 2);
  g_assert_cmpuint (l2->issued_at, ==, TEST_NOW + 10);
  g_assert_cmpuint (l2->n_revoked_register_ids, ==, 1);
  g_assert_true (tally_revocation_list_contains (l2, a->id));

  g_assert_true (tally_issuer_revoke (f->issuer, b->id, TEST_NOW + 20, &error));
  g_autoptr (Tally__RevocationList) l3 = revocation_list_of (f);
  g_assert_cmpuint (l3->serial, ==, 3);
  g_assert_cmpuint (l3->n_revoked_register_ids, ==, 2);
  g_assert_true (tally_revocation_list_contains (l3, a->id));
  g_assert_true (tally_revocation_list_contains (l3, b->id));

  /* Revoking again changes nothing. */
  g_assert_true (tally_issuer_revoke (f->issuer, a->id, TEST_NOW + 30, &error));
  g_autoptr (Tally__RevocationList) again = revocation_list_of (f);
  g_assert_cmpuint (again->serial, ==, 3);

  g_autoptr (TestRegister) stranger = test_register_new_uncertified ();
  g_assert_false (tally_issuer_revoke (f->issuer, stranger->id, TEST_NOW, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpuint (audit.revoked, ==, 2);
}

/* --- the issuer credits only what signed evidence backs (5.5) --- */

static Tally__FraudProof *
only_proof_of_kind (Fixture *f, const Tally__ReconciliationResult *res, Tally__FraudKind kind)
{
  Tally__FraudProof *found = NULL;
  for (gsize i = 0; i < res->n_fraud_proofs; i++) {
    Tally__FraudProof *fp = open_fraud_proof (f, res->fraud_proofs[i]);
    if (fp->kind == kind && found == NULL)
      found = fp;
    else
      tally__fraud_proof__free_unpacked (fp, NULL);
  }
  g_assert_nonnull (found);
  return found;
}

static const TallyAuditRegister *
audit_row_of (GPtrArray *rows, const TestRegister *reg)
{
  for (guint i = 0; i < rows->len; i++) {
    const TallyAuditRegister *r = rows->pdata[i];
    if (memcmp (r->register_id, reg->id, TALLY_ID_BYTES) == 0)
      return r;
  }
  g_assert_not_reached ();
}

/* The owner edits the stored balance (or signs with the key) and defunds
 * far more than the issuer ever sold it. */
static void
test_evidence_defund_beyond_evidence_is_refused_and_proven (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "bob", 5000);
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, b, 750);
  g_autoptr (GBytes) d = test_defund (b, 100000000);

  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_voucher (bb, voucher);
  test_bundle_add_spent (bb, d, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (bb);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);

  /* Only the 7.50 the evidence backs reaches the account. */
  g_assert_cmpint (test_balance (f->issuer, "bob"), ==, 5000 - 750 + 750);
  g_assert_cmpint (report.refused, ==, 100000000 - 750);
  g_assert_true (report.revoked);
  g_assert_true (res->revoked);
  g_assert_null (res->renewed_certificate);
  g_autoptr (Tally__FraudProof) fp =
    only_proof_of_kind (f, res, TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN);
  g_assert_cmpmem (fp->register_id.data, fp->register_id.len, b->id, TALLY_ID_BYTES);
  g_assert_cmpint (fp->deficit, ==, 100000000 - 750);
  g_assert_true (envelopes_equal (fp->first, bundle));
  g_assert_true (envelopes_equal (fp->second, d));
  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_true (tally_revocation_list_contains (list, b->id));

  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.online, ==, 5000);
  g_assert_cmpint (audit.offline, ==, 0);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_cmpint (audit.refused, ==, 100000000 - 750);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = tally_issuer_audit_registers (f->issuer, &error);
  g_assert_no_error (error);
  const TallyAuditRegister *row = audit_row_of (rows, b);
  g_assert_true (row->revoked);
  g_assert_cmpint (row->refused, ==, 100000000 - 750);
  g_assert_cmpint (row->deficit, ==, 100000000 - 750);
  g_assert_cmpuint (row->proof_kinds, ==, 1u << TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN);

  /* The same bundle again changes nothing and proves nothing new. */
  g_autoptr (Tally__ReconciliationResult) again = test_reconcile (f->issuer, bundle, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_cmpint (report.refused, ==, 0);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&audit, &after);
}

/* The key signs payments beyond the balance to the owner's other register:
 * the colluder is paid (it holds a signed permission), and the payer's
 * deficit is exposure traced to an OVERDRAWN proof. */
static void
test_evidence_key_overspend_to_accomplice_is_exposure (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "mallory", 1000);
  test_account_open (f->issuer, "accomplice", 0);
  g_autoptr (TestRegister) m = test_register_new (f->issuer, "mallory");
  g_autoptr (TestRegister) x = test_register_new (f->issuer, "accomplice");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, m, 1000);
  g_autoptr (GBytes) p1 = test_permission (m, x, 900);
  g_autoptr (GBytes) p2 = test_permission (m, x, 900);
  g_autoptr (GBytes) r1 = test_receipt (x, p1);
  g_autoptr (GBytes) r2 = test_receipt (x, p2);

  g_autoptr (TestBundle) bx = test_bundle_new (x);
  test_bundle_add_received (bx, m->cert, p1, r1);
  test_bundle_add_received (bx, m->cert, p2, r2);
  g_autoptr (GBytes) bundle_x = test_bundle_sign (bx);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rx = test_reconcile (f->issuer, bundle_x, &report);
  g_assert_false (report.revoked);
  /* Until Mallory's own bundle is in, her 8.00 short may yet be backed by
   * payments she has not reported: awaiting, not exposure. */
  TallyAudit waiting = test_audit (f->issuer);
  g_assert_true (waiting.identity);
  g_assert_cmpint (waiting.awaiting, ==, 800);
  g_assert_cmpint (waiting.fraud_exposure, ==, 0);
  g_assert_false (waiting.balanced);

  g_autoptr (TestBundle) bm = test_bundle_new (m);
  test_bundle_add_voucher (bm, voucher);
  test_bundle_add_spent (bm, p1, r1);
  test_bundle_add_spent (bm, p2, r2);
  g_autoptr (GBytes) bundle_m = test_bundle_sign (bm);
  g_autoptr (Tally__ReconciliationResult) rm = test_reconcile (f->issuer, bundle_m, &report);
  g_assert_true (rm->revoked);
  g_autoptr (Tally__FraudProof) fp =
    only_proof_of_kind (f, rm, TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN);
  g_assert_cmpint (fp->deficit, ==, 800);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.fraud_exposure, ==, 800);
  g_assert_cmpint (audit.awaiting, ==, 0);
  g_assert_false (audit.balanced);
  g_assert_cmpint (audit.online + audit.offline + audit.in_flight, ==,
                   audit.issued + audit.fraud_exposure);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = tally_issuer_audit_registers (f->issuer, &error);
  g_assert_no_error (error);
  const TallyAuditRegister *row = audit_row_of (rows, m);
  g_assert_cmpint (row->exposure, ==, 800);
  g_assert_true (row->proof_kinds & (1u << TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN));
}

/* k clones of one register each defund the whole balance at the same
 * counter: the issuer pays it out once. */
static void
test_evidence_clones_cash_out_once (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 2000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 2000);
  guint64 counter = a->counter;
  guint8 head[TALLY_HASH_BYTES];
  memcpy (head, a->head, sizeof head);

  gint64 refused = 0;
  for (guint k = 0; k < 3; k++) {
    a->counter = counter;
    memcpy (a->head, head, sizeof head);
    g_autoptr (GBytes) d = test_defund (a, 2000 - k); /* each clone's own entry */
    g_autoptr (TestBundle) ba = test_bundle_new (a);
    test_bundle_add_voucher (ba, voucher);
    test_bundle_add_spent (ba, d, NULL);
    g_autoptr (GBytes) bundle = test_bundle_sign (ba);
    TallyReconcileReport report;
    g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
    refused += report.refused;
    g_assert_cmpint (res->revoked, ==, k > 0);
  }
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 2000);
  g_assert_cmpint (refused, ==, 1999 + 1998);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_cmpint (audit.online, ==, audit.issued);
}

/* A payee that spends a payment before either side reported it looks short
 * until its own bundle books the payment: never proven, never revoked. */
static void
test_evidence_honest_onward_spend_is_not_fraud (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 1000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 1000);
  g_autoptr (GBytes) ab = test_permission (a, b, 600);
  g_autoptr (GBytes) rab = test_receipt (b, ab);
  g_autoptr (GBytes) bc = test_permission (b, c, 600);
  g_autoptr (GBytes) rbc = test_receipt (c, bc);
  g_autoptr (GBytes) bd = test_defund (b, 0 + 1);

  g_autoptr (TestBundle) bcarol = test_bundle_new (c);
  test_bundle_add_received (bcarol, b->cert, bc, rbc);
  g_autoptr (GBytes) bundle_c = test_bundle_sign (bcarol);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.awaiting, ==, 600);
  g_assert_false (mid.balanced);

  /* Bob's bundle lists the payment he received before he spent it, and a
   * defund of 0.01 beyond what he holds: refused, and proven. */
  g_autoptr (TestBundle) bbob = test_bundle_new (b);
  test_bundle_add_received (bbob, a->cert, ab, rab);
  test_bundle_add_spent (bbob, bc, rbc);
  test_bundle_add_spent (bbob, bd, NULL);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bbob);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpint (report.refused, ==, 1);
  g_assert_true (rb->revoked);

  /* Without the stray defund the same history is clean. */
  test_account_open (f->issuer, "dave", 0);
  test_account_open (f->issuer, "erin", 0);
  g_autoptr (TestRegister) d = test_register_new (f->issuer, "dave");
  g_autoptr (TestRegister) e = test_register_new (f->issuer, "erin");
  g_autoptr (GBytes) ad = test_permission (a, d, 300);
  g_autoptr (GBytes) rad = test_receipt (d, ad);
  g_autoptr (GBytes) de = test_permission (d, e, 300);
  g_autoptr (GBytes) rde = test_receipt (e, de);
  g_autoptr (TestBundle) berin = test_bundle_new (e);
  test_bundle_add_received (berin, d->cert, de, rde);
  g_autoptr (GBytes) bundle_e = test_bundle_sign (berin);
  g_autoptr (Tally__ReconciliationResult) re = test_reconcile (f->issuer, bundle_e, &report);
  g_autoptr (TestBundle) bdave = test_bundle_new (d);
  test_bundle_add_spent (bdave, de, rde);
  test_bundle_add_received (bdave, a->cert, ad, rad);
  g_autoptr (GBytes) bundle_d = test_bundle_sign (bdave);
  g_autoptr (Tally__ReconciliationResult) rd = test_reconcile (f->issuer, bundle_d, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_false (rd->revoked);
  g_assert_nonnull (rd->renewed_certificate);
  g_assert_cmpint (report.refused, ==, 0);
}

/* A bundle made before the register spent value it received afterwards
 * must not be judged against those later entries. */
static void
test_evidence_bundle_judged_through_its_own_counter (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 1000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 1000);
  g_autoptr (GBytes) ab = test_permission (a, b, 400);
  g_autoptr (GBytes) rab = test_receipt (b, ab);
  /* Bob's bundle is made now, at counter 0, listing only Alice's 4.00. */
  g_autoptr (TestBundle) early = test_bundle_new (b);
  test_bundle_add_received (early, a->cert, ab, rab);
  g_autoptr (GBytes) bundle_early = test_bundle_sign (early);
  /* Then Alice pays him 5.00 more and he pays Carol 9.00. */
  g_autoptr (GBytes) ab2 = test_permission (a, b, 500);
  g_autoptr (GBytes) rab2 = test_receipt (b, ab2);
  g_autoptr (GBytes) bc = test_permission (b, c, 900);
  g_autoptr (GBytes) rbc = test_receipt (c, bc);
  g_autoptr (TestBundle) bcarol = test_bundle_new (c);
  test_bundle_add_received (bcarol, b->cert, bc, rbc);
  g_autoptr (GBytes) bundle_c = test_bundle_sign (bcarol);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);

  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, bundle_early, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_false (r1->revoked);

  g_autoptr (TestBundle) later = test_bundle_new (b);
  test_bundle_add_received (later, a->cert, ab2, rab2);
  test_bundle_add_spent (later, bc, rbc);
  g_autoptr (GBytes) bundle_later = test_bundle_sign (later);
  g_autoptr (Tally__ReconciliationResult) r2 = test_reconcile (f->issuer, bundle_later, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_false (r2->revoked);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.awaiting, ==, 0);
}

/* The key signs a payment above the payer's certified limit and a colluding
 * payee accepts it: both are proven and revoked, and the payee cannot
 * defund what no honest payee would have accepted. */
static void
test_evidence_payment_over_limit_proves_payer_and_payee (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "mallory", 20000);
  test_account_open (f->issuer, "accomplice", 0);
  g_autoptr (TestRegister) m = test_register_new (f->issuer, "mallory");
  g_autoptr (TestRegister) x = test_register_new (f->issuer, "accomplice");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, m, 20000);
  /* Certified for at most 50.00 a payment. */
  g_autoptr (GBytes) big = test_permission (m, x, 5001);
  g_autoptr (GBytes) receipt = test_receipt (x, big);
  g_autoptr (GBytes) d = test_defund (x, 5001);

  g_autoptr (TestBundle) bx = test_bundle_new (x);
  test_bundle_add_received (bx, m->cert, big, receipt);
  test_bundle_add_spent (bx, d, NULL);
  g_autoptr (GBytes) bundle = test_bundle_sign (bx);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundle, &report);
  g_assert_true (res->revoked);
  g_assert_cmpint (report.refused, ==, 5001);
  g_assert_cmpint (test_balance (f->issuer, "accomplice"), ==, 0);

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_true (tally_revocation_list_contains (list, m->id));
  g_assert_true (tally_revocation_list_contains (list, x->id));
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = tally_issuer_audit_registers (f->issuer, &error);
  g_assert_no_error (error);
  guint32 over = 1u << TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT;
  g_assert_true (audit_row_of (rows, m)->proof_kinds & over);
  g_assert_true (audit_row_of (rows, x)->proof_kinds & over);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);

  /* Mallory's own bundle, the same payment again: no second proof. */
  g_autoptr (TestBundle) bm = test_bundle_new (m);
  test_bundle_add_voucher (bm, voucher);
  test_bundle_add_spent (bm, big, receipt);
  g_autoptr (GBytes) bundle_m = test_bundle_sign (bm);
  g_autoptr (Tally__ReconciliationResult) rm = test_reconcile (f->issuer, bundle_m, &report);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
}

/* A payee's half that arrives after the payer's is judged the same way. */
static void
test_evidence_payment_over_limit_reported_by_payer_first (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "mallory", 20000);
  test_account_open (f->issuer, "accomplice", 0);
  g_autoptr (TestRegister) m = test_register_new (f->issuer, "mallory");
  g_autoptr (TestRegister) x = test_register_new (f->issuer, "accomplice");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, m, 20000);
  g_autoptr (GBytes) big = test_permission (m, x, 6000);
  g_autoptr (GBytes) receipt = test_receipt (x, big);

  g_autoptr (TestBundle) bm = test_bundle_new (m);
  test_bundle_add_voucher (bm, voucher);
  test_bundle_add_spent (bm, big, NULL);
  g_autoptr (GBytes) bundle_m = test_bundle_sign (bm);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rm = test_reconcile (f->issuer, bundle_m, &report);
  g_assert_true (rm->revoked);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);

  g_autoptr (TestBundle) bx = test_bundle_new (x);
  test_bundle_add_received (bx, m->cert, big, receipt);
  g_autoptr (GBytes) bundle_x = test_bundle_sign (bx);
  g_autoptr (Tally__ReconciliationResult) rx = test_reconcile (f->issuer, bundle_x, &report);
  g_assert_true (rx->revoked);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_autoptr (Tally__FraudProof) fp =
    only_proof_of_kind (f, rx, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT);
  g_assert_cmpmem (fp->register_id.data, fp->register_id.len, x->id, TALLY_ID_BYTES);
  g_assert_true (envelopes_equal (fp->first, receipt));
  g_assert_true (envelopes_equal (fp->second, big));
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.in_flight, ==, 0);
}

/* Found by the model of the issuer's booking (docs/reliability.md): a copy
 * defunds at a counter below a defund already credited.  Judged only
 * against the entries below its own counter it would be paid again. */
static void
test_evidence_clone_defund_below_a_later_defund_is_refused (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 2000);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 2000);
  guint8 genesis[TALLY_HASH_BYTES];
  memcpy (genesis, a->head, sizeof genesis);
  g_autoptr (GBytes) d1 = test_defund (a, 1000);
  g_autoptr (GBytes) d2 = test_defund (a, 1000);
  a->counter = 0;
  memcpy (a->head, genesis, sizeof genesis);
  g_autoptr (GBytes) copy = test_defund (a, 999);

  g_autoptr (TestBundle) first = test_bundle_new (a);
  test_bundle_add_voucher (first, voucher);
  test_bundle_add_spent (first, d1, NULL);
  test_bundle_add_spent (first, d2, NULL);
  g_autoptr (GBytes) bundle1 = test_bundle_sign (first);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, bundle1, &report);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 2000);

  g_autoptr (TestBundle) second = test_bundle_new (a);
  test_bundle_add_spent (second, copy, NULL);
  g_autoptr (GBytes) bundle2 = test_bundle_sign (second);
  g_autoptr (Tally__ReconciliationResult) r2 = test_reconcile (f->issuer, bundle2, &report);
  g_assert_true (r2->revoked);
  g_assert_cmpint (report.refused, ==, 999);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 2000);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.online, ==, audit.issued);
}

/* A register that pays itself: refused whole, as no honest register can
 * make one, and nothing is booked. */
static void
test_evidence_payment_to_oneself_is_refused (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "mallory", 2000);
  g_autoptr (TestRegister) m = test_register_new (f->issuer, "mallory");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, m, 2000);
  g_autoptr (GBytes) self = test_permission (m, m, 1000);
  g_autoptr (GBytes) receipt = test_receipt (m, self);

  g_autoptr (TestBundle) spent = test_bundle_new (m);
  test_bundle_add_spent (spent, self, receipt);
  g_autoptr (GBytes) bundle_spent = test_bundle_sign (spent);
  assert_reconcile_fails (f, bundle_spent, TALLY_ERROR_WRONG_REGISTER);

  g_autoptr (TestBundle) received = test_bundle_new (m);
  test_bundle_add_received (received, m->cert, self, receipt);
  g_autoptr (GBytes) bundle_received = test_bundle_sign (received);
  assert_reconcile_fails (f, bundle_received, TALLY_ERROR_WRONG_REGISTER);
}

/* --- reclaim --- */

/* The identity always holds; "balanced" also needs no exposure. */
static void
assert_balanced (Fixture *f)
{
  TallyAudit a = test_audit (f->issuer);
  g_assert_true (a.identity);
  g_assert_cmpint (a.online + a.offline + a.in_flight, ==, a.issued + a.fraud_exposure);
  g_assert_cmpint (a.balanced, ==, a.fraud_exposure == 0 && a.awaiting == 0);
}

/* A bundle of @reg made at @created_at listing @spent without receipts. */
static GBytes *
spent_bundle_at (const TestRegister *reg, guint64 created_at, GBytes *const *spent, gsize n)
{
  g_autoptr (TestBundle) bundle = test_bundle_new_at (reg, created_at);
  for (gsize i = 0; i < n; i++)
    test_bundle_add_spent (bundle, spent[i], NULL);
  return test_bundle_sign (bundle);
}

/* An empty bundle of @reg made at @created_at: raises its horizon only. */
static GBytes *
empty_bundle_at (const TestRegister *reg, guint64 created_at)
{
  return spent_bundle_at (reg, created_at, NULL, 0);
}

/* A register with nothing behind it signs a payment it never delivers and
 * waits for the refund: the issuer pays back only what its evidence backs. */
static void
test_evidence_reclaim_beyond_evidence_is_refused (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "mallory", 0);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) m = test_register_new (f->issuer, "mallory");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) p = test_permission_expiring (m, b, 4000, TEST_NOW + 100);

  g_autoptr (GBytes) bundle_m = spent_bundle_at (m, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rm = test_reconcile (f->issuer, bundle_m, &report);
  g_assert_true (rm->revoked); /* 40.00 spent from nothing: overdrawn */

  g_autoptr (GBytes) past = empty_bundle_at (b, TEST_NOW + 200);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, past, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 0);
  g_assert_cmpint (report.refused, ==, 4000);
  g_assert_cmpint (test_balance (f->issuer, "mallory"), ==, 0);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_true (audit.identity);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_cmpint (audit.in_flight, ==, 0);
  g_assert_cmpint (audit.refused, ==, 4000);
}

static void
reopen_issuer (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&f->issuer, tally_issuer_free);
  f->issuer = tally_issuer_open (f->dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->issuer);
}

static void
test_reclaim_returns_expired_permission_after_payee_reconciles (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 1200, TEST_NOW + 100);

  /* Pay sent, lost: Alice reports a permission Bob never credited. */
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 1);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_assert_cmpuint (ra->n_reclaimed, ==, 0);
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 1200);
  g_assert_cmpint (mid.reclaimed, ==, 0);
  g_assert_true (mid.balanced);

  /* Bob's bundle made exactly at the expiry does not list it: from then on
   * Bob's register refuses it, so Alice gets the value back. */
  g_autoptr (GBytes) bundle_b = empty_bundle_at (b, TEST_NOW + 100);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 1200);
  g_assert_cmpuint (report.late_receipts, ==, 0);
  /* Not Bob's own permission: nothing to tell him. */
  g_assert_cmpuint (rb->n_reclaimed, ==, 0);
  g_assert_false (rb->revoked);

  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000 + 1200);
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.online, ==, 8200);
  g_assert_cmpint (end.offline, ==, 1800);
  g_assert_cmpint (end.reclaimed, ==, 1200);
  g_assert_cmpuint (end.reclaimed_count, ==, 1);
  g_assert_cmpint (end.fraud_exposure, ==, 0);
  g_assert_true (end.balanced);

  /* Alice keeps listing it until she learns the outcome. */
  g_autoptr (GBytes) again = spent_bundle_at (a, TEST_NOW + 4000, &p, 1);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, again, &report);
  g_assert_cmpuint (report.duplicates, ==, 1);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_assert_cmpuint (ra2->settled_counter, ==, 1);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 1);
  g_assert_true (list_contains_hash (ra2->reclaimed, ra2->n_reclaimed, p));
  g_assert_cmpuint (ra2->n_receipts, ==, 0);
  TallyAudit after = test_audit (f->issuer);
  assert_audit_equal (&end, &after);
}

static void
test_reclaim_waits_while_payee_has_not_reconciled_past_expiry (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 500, TEST_NOW + 100);
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);

  /* Bob reconciled one second before the expiry: he may still credit it. */
  g_autoptr (GBytes) early = empty_bundle_at (b, TEST_NOW + 99);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, early, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000);
  TallyAudit waiting = test_audit (f->issuer);
  g_assert_cmpint (waiting.in_flight, ==, 500);
  g_assert_cmpint (waiting.reclaimed, ==, 0);
  g_assert_true (waiting.balanced);

  /* Alice's own horizon says nothing about Bob's. */
  g_autoptr (GBytes) late_a = spent_bundle_at (a, TEST_NOW + 100000, &p, 1);
  g_autoptr (Tally__ReconciliationResult) ra3 = test_reconcile (f->issuer, late_a, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_assert_cmpuint (ra3->n_reclaimed, ==, 0);
  TallyAudit still = test_audit (f->issuer);
  assert_audit_equal (&waiting, &still);

  /* A refused bundle of Bob's does not move his horizon. */
  g_autoptr (GBytes) forged = test_sign_receipt (a->sk, p, 500);
  g_autoptr (TestBundle) bad = test_bundle_new_at (b, TEST_NOW + 5000);
  test_bundle_add_received (bad, a->cert, p, forged);
  g_autoptr (GBytes) bad_bundle = test_bundle_sign (bad);
  assert_reconcile_fails (f, bad_bundle, TALLY_ERROR_BAD_SIGNATURE);
  g_autoptr (GBytes) same_again = empty_bundle_at (b, TEST_NOW + 99);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, same_again, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);

  g_autoptr (GBytes) past = empty_bundle_at (b, TEST_NOW + 100);
  g_autoptr (Tally__ReconciliationResult) rb3 = test_reconcile (f->issuer, past, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7500);
  assert_balanced (f);
}

static void
test_reclaim_never_returns_permission_without_expiry (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 700, 0);

  g_autoptr (GBytes) first_b = empty_bundle_at (b, TEST_NOW + 1000);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, first_b, &report);
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_autoptr (GBytes) later_b = empty_bundle_at (b, G_MAXUINT64);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, later_b, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 0);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.in_flight, ==, 700);
  g_assert_cmpint (audit.reclaimed, ==, 0);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000);
  g_assert_true (audit.balanced);
}

static void
test_reclaim_is_idempotent_when_payer_lists_entry_again (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 900, TEST_NOW + 100);
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_autoptr (GBytes) bundle_b = empty_bundle_at (b, TEST_NOW + 200);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);

  TallyAudit reclaimed = test_audit (f->issuer);
  g_assert_cmpint (reclaimed.reclaimed, ==, 900);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7900);

  /* The same bundle again, a newer one listing it, Bob again and later,
   * and all of it after a restart: the credit happened once. */
  for (guint round = 0; round < 2; round++) {
    GBytes *bundles[] = {
      bundle_a,
      spent_bundle_at (a, TEST_NOW + 300 + round, &p, 1),
      bundle_b,
      empty_bundle_at (b, TEST_NOW + 900 + round),
    };
    for (gsize i = 0; i < G_N_ELEMENTS (bundles); i++) {
      g_autoptr (Tally__ReconciliationResult) res = test_reconcile (f->issuer, bundles[i], &report);
      g_assert_cmpuint (report.reclaimed, ==, 0);
      g_assert_cmpuint (report.spent_new, ==, 0);
      g_assert_cmpuint (report.late_receipts, ==, 0);
      if (i < 2) {
        g_assert_cmpuint (report.duplicates, ==, 1);
        g_assert_cmpuint (res->n_reclaimed, ==, 1);
        g_assert_true (list_contains_hash (res->reclaimed, res->n_reclaimed, p));
        g_assert_cmpuint (res->settled_counter, ==, 1);
      }
    }
    g_bytes_unref (bundles[1]);
    g_bytes_unref (bundles[3]);
    TallyAudit now = test_audit (f->issuer);
    assert_audit_equal (&reclaimed, &now);
    g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7900);
    reopen_issuer (f);
  }
}

static void
test_reclaim_books_when_payee_reconciled_first (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) expired = test_permission_expiring (a, b, 400, TEST_NOW + 100);
  g_autoptr (GBytes) open = test_permission_expiring (a, b, 600, TEST_NOW + 5000);

  g_autoptr (GBytes) bundle_b = empty_bundle_at (b, TEST_NOW + 200);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  /* The horizon is durable. */
  reopen_issuer (f);

  GBytes *spent[] = { expired, open };
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW + 300, spent, G_N_ELEMENTS (spent));
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.spent_new, ==, 2);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 400);
  g_assert_cmpuint (ra->settled_counter, ==, 2);
  g_assert_cmpuint (ra->n_reclaimed, ==, 1);
  g_assert_true (list_contains_hash (ra->reclaimed, ra->n_reclaimed, expired));
  g_assert_false (list_contains_hash (ra->reclaimed, ra->n_reclaimed, open));

  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000 + 400);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.in_flight, ==, 600);
  g_assert_cmpint (audit.offline, ==, 2000);
  g_assert_cmpint (audit.reclaimed, ==, 400);
  g_assert_cmpuint (audit.reclaimed_count, ==, 1);
  g_assert_true (audit.balanced);
}

static void
test_reclaim_returns_only_the_reconciling_payees_permissions (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) to_bob = test_permission_expiring (a, b, 100, TEST_NOW + 100);
  g_autoptr (GBytes) to_carol = test_permission_expiring (a, c, 200, TEST_NOW + 100);
  GBytes *spent[] = { to_bob, to_carol };
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, spent, G_N_ELEMENTS (spent));
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);

  g_autoptr (GBytes) bundle_b = empty_bundle_at (b, TEST_NOW + 200);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 100);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 1);
  g_assert_true (list_contains_hash (ra2->reclaimed, ra2->n_reclaimed, to_bob));
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 200);
  g_assert_true (mid.balanced);

  g_autoptr (GBytes) bundle_c = empty_bundle_at (c, TEST_NOW + 200);
  g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 200);
  g_autoptr (Tally__ReconciliationResult) ra3 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (ra3->n_reclaimed, ==, 2);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7300);
  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.in_flight, ==, 0);
  g_assert_cmpint (end.reclaimed, ==, 300);
  g_assert_true (end.balanced);
}

/* --- receipts --- */

static void
test_receipts_returns_payee_receipt_to_payer_without_one (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p1 = test_permission (a, b, 300);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (GBytes) p2 = test_permission (a, b, 200);
  g_autoptr (GBytes) r2 = test_receipt (b, p2);
  g_autoptr (GBytes) p3 = test_permission (a, b, 100);

  /* Receipt lost: Alice reports p1 alone, then Bob reports p1 and p2. */
  g_autoptr (GBytes) first_a = spent_bundle_at (a, TEST_NOW, &p1, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, first_a, &report);
  g_assert_cmpuint (ra->n_receipts, ==, 0);
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, p1, r1);
  test_bundle_add_received (bb, a->cert, p2, r2);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (rb->n_receipts, ==, 0);

  /* Alice lists all three without receipts: she gets Bob's two back, for
   * p2 too although Bob reported it before she did; p3 is still in flight. */
  GBytes *spent[] = { p1, p2, p3 };
  g_autoptr (GBytes) second_a = spent_bundle_at (a, TEST_NOW, spent, G_N_ELEMENTS (spent));
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, second_a, &report);
  g_assert_cmpuint (ra2->settled_counter, ==, 3);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 0);
  g_assert_cmpuint (ra2->n_receipts, ==, 2);
  g_assert_true (envelopes_equal (ra2->receipts[0], r1));
  g_assert_true (envelopes_equal (ra2->receipts[1], r2));
  g_autoptr (GError) error = NULL;
  for (gsize i = 0; i < ra2->n_receipts; i++)
    g_assert_true (tally_envelope_verify (
      ra2->receipts[i], TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, b->pk, &error));
  g_assert_no_error (error);

  /* A payer that holds the receipt is not sent it again. */
  g_autoptr (TestBundle) with = test_bundle_new (a);
  test_bundle_add_spent (with, p1, r1);
  test_bundle_add_spent (with, p2, r2);
  g_autoptr (GBytes) third_a = test_bundle_sign (with);
  g_autoptr (Tally__ReconciliationResult) ra3 = test_reconcile (f->issuer, third_a, &report);
  g_assert_cmpuint (ra3->n_receipts, ==, 0);

  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.in_flight, ==, 100);
  g_assert_cmpint (audit.offline, ==, 2900);
  g_assert_true (audit.balanced);
}

static void
test_receipts_returns_receipt_another_payer_bundle_carried (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) voucher = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission (a, b, 300);
  g_autoptr (GBytes) r = test_receipt (b, p);

  /* The payer's register, restored from a backup taken after the payment
   * but before the receipt came, lists the entry without it. */
  g_autoptr (TestBundle) with = test_bundle_new (a);
  test_bundle_add_spent (with, p, r);
  g_autoptr (GBytes) bundle_with = test_bundle_sign (with);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, bundle_with, &report);
  g_assert_cmpuint (r1->n_receipts, ==, 0);
  g_autoptr (GBytes) without = spent_bundle_at (a, TEST_NOW, &p, 1);
  g_autoptr (Tally__ReconciliationResult) r2 = test_reconcile (f->issuer, without, &report);
  g_assert_cmpuint (r2->n_receipts, ==, 1);
  g_assert_true (envelopes_equal (r2->receipts[0], r));
  assert_balanced (f);
}

/* --- late receipts --- */

/* Checks a late-receipt proof: signed by the issuer, naming @payee, holding
 * @receipt and @bundle, both signed by the payee, the bundle made at or
 * after @permission expired and not listing it. */
static void
assert_late_receipt_proof (Fixture *f,
                           const Tally__SignedEnvelope *env,
                           const TestRegister *payee,
                           GBytes *permission,
                           GBytes *receipt,
                           GBytes *bundle)
{
  g_autoptr (Tally__FraudProof) fp = open_fraud_proof (f, env);
  g_assert_cmpint (fp->kind, ==, TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT);
  g_assert_cmpmem (fp->register_id.data, fp->register_id.len, payee->id, TALLY_ID_BYTES);
  g_assert_cmpuint (fp->detected_at, ==, TEST_NOW + 3600);
  g_assert_nonnull (fp->first);
  g_assert_nonnull (fp->second);
  g_assert_true (envelopes_equal (fp->first, receipt));
  g_assert_true (envelopes_equal (fp->second, bundle));

  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (
    fp->first, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, payee->pk, &error));
  g_assert_no_error (error);
  g_assert_true (tally_envelope_verify (
    fp->second, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE, payee->pk,
    &error));
  g_assert_no_error (error);

  /* What the proof shows on its own: the receipt is for the permission,
   * which expired by the time the bundle was made, and the bundle does not
   * list it. */
  g_autoptr (Tally__Receipt) r = TALLY_UNPACK (Tally__Receipt, tally__receipt, fp->first->body.data,
                                               fp->first->body.len, "receipt", &error);
  g_assert_no_error (error);
  guint8 hash[TALLY_HASH_BYTES];
  test_entry_hash (permission, hash);
  g_assert_cmpmem (r->permission_hash.data, r->permission_hash.len, hash, sizeof hash);
  g_autoptr (Tally__SignedEnvelope) p_env = test_envelope (permission);
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, p_env->body.data,
                  p_env->body.len, "permission", &error);
  g_assert_no_error (error);
  g_autoptr (Tally__ReconciliationBundle) bun =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, fp->second->body.data,
                  fp->second->body.len, "bundle", &error);
  g_assert_no_error (error);
  g_assert_cmpmem (bun->register_id.data, bun->register_id.len, payee->id, TALLY_ID_BYTES);
  g_assert_cmpuint (p->expires_at, >, 0);
  g_assert_cmpuint (p->expires_at, <=, bun->created_at);
  for (gsize i = 0; i < bun->n_received; i++) {
    guint8 listed[TALLY_HASH_BYTES];
    tally_envelope_body_hash (bun->received[i]->permission, listed);
    g_assert_true (memcmp (listed, hash, sizeof hash) != 0);
  }
}

static void
test_fraud_late_receipt_after_reclaim_revokes_payee (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 1000, TEST_NOW + 100);
  /* Bob credited p, then restored his register from a copy made before. */
  g_autoptr (GBytes) r = test_receipt (b, p);
  /* An honest payment Bob received meanwhile, to show it stays his. */
  g_autoptr (GBytes) honest = test_permission (a, b, 250);
  g_autoptr (GBytes) honest_r = test_receipt (b, honest);

  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);

  /* The restored copy reconciles past the expiry without p. */
  g_autoptr (TestBundle) restored = test_bundle_new_at (b, TEST_NOW + 200);
  test_bundle_add_received (restored, a->cert, honest, honest_r);
  g_autoptr (GBytes) evidence = test_bundle_sign (restored);
  g_autoptr (Tally__ReconciliationResult) rb1 = test_reconcile (f->issuer, evidence, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7000 + 1000);
  TallyAudit reclaimed = test_audit (f->issuer);
  g_assert_cmpint (reclaimed.offline, ==, 2000);
  g_assert_cmpint (reclaimed.in_flight, ==, 0);
  g_assert_true (reclaimed.balanced);

  /* The copy that credited p turns up with it. */
  g_autoptr (TestBundle) cloned = test_bundle_new_at (b, TEST_NOW + 300);
  test_bundle_add_received (cloned, a->cert, p, r);
  g_autoptr (GBytes) late = test_bundle_sign (cloned);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, late, &report);
  g_assert_cmpuint (report.late_receipts, ==, 1);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  g_assert_cmpuint (report.received_new, ==, 0);
  g_assert_cmpuint (report.duplicates, ==, 1);
  g_assert_true (report.revoked);
  g_assert_true (rb2->revoked);
  g_assert_null (rb2->renewed_certificate);
  g_assert_true (list_contains_hash (rb2->settled_received, rb2->n_settled_received, p));
  g_assert_cmpuint (rb2->n_fraud_proofs, ==, 1);
  assert_late_receipt_proof (f, rb2->fraud_proofs[0], b, p, r, evidence);

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_cmpuint (list->serial, ==, 2);
  g_assert_cmpuint (list->issued_at, ==, TEST_NOW + 3600);
  g_assert_true (tally_revocation_list_contains (list, b->id));
  g_assert_false (tally_revocation_list_contains (list, a->id));

  /* Not credited twice: Alice keeps the refund, Bob's view stays at what
   * the issuer knows he holds honestly, and the 10.00 he holds beyond it
   * is exposure. */
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 8000);
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.offline, ==, reclaimed.offline + 1000);
  g_assert_cmpint (audit.online, ==, reclaimed.online);
  g_assert_cmpint (audit.in_flight, ==, 0);
  g_assert_cmpint (audit.fraud_exposure, ==, 1000);
  g_assert_cmpint (audit.reclaimed, ==, 1000);
  g_assert_cmpuint (audit.revoked, ==, 1);
  g_assert_cmpuint (audit.fraud_proofs, ==, 1);
  g_assert_true (audit.identity);
  g_assert_false (audit.balanced);

  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) proofs = tally_issuer_get_fraud_proofs (f->issuer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (proofs->len, ==, 1);

  /* Bob listing it again, and Alice listing it: no second proof, nothing
   * moves; Alice still learns it was reclaimed. */
  g_autoptr (Tally__ReconciliationResult) rb3 = test_reconcile (f->issuer, late, &report);
  g_assert_cmpuint (report.late_receipts, ==, 0);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.late_receipts, ==, 0);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 1);
  g_assert_cmpuint (ra2->n_receipts, ==, 0);
  g_assert_false (ra2->revoked);
  TallyAudit end = test_audit (f->issuer);
  assert_audit_equal (&audit, &end);

  /* Carol, who has nothing to do with it, is not told. */
  g_autoptr (GBytes) bundle_c = empty_bundle_at (c, TEST_NOW);
  g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);
  g_assert_cmpuint (rc->n_fraud_proofs, ==, 0);
}

static void
test_fraud_late_receipt_carried_by_payer_revokes_payee (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 800, TEST_NOW + 100);
  g_autoptr (GBytes) r = test_receipt (b, p);

  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_autoptr (GBytes) evidence = empty_bundle_at (b, TEST_NOW + 100);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, evidence, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);

  /* The receipt reaches Alice after all and she reports it. */
  g_autoptr (TestBundle) with = test_bundle_new_at (a, TEST_NOW + 500);
  test_bundle_add_spent (with, p, r);
  g_autoptr (GBytes) bundle_with = test_bundle_sign (with);
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_with, &report);
  g_assert_cmpuint (report.late_receipts, ==, 1);
  g_assert_cmpuint (report.fraud_proofs, ==, 1);
  /* Alice did nothing wrong and is told what the issuer did. */
  g_assert_false (report.revoked);
  g_assert_false (ra2->revoked);
  g_assert_nonnull (ra2->renewed_certificate);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 1);
  g_assert_true (list_contains_hash (ra2->reclaimed, ra2->n_reclaimed, p));
  g_assert_cmpuint (ra2->n_fraud_proofs, ==, 1);
  assert_late_receipt_proof (f, ra2->fraud_proofs[0], b, p, r, evidence);

  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_true (tally_revocation_list_contains (list, b->id));
  g_assert_false (tally_revocation_list_contains (list, a->id));
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 7800);
  /* Bob's register holds the 8.00 beyond the issuer's view: exposure. */
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.fraud_exposure, ==, 800);
  g_assert_cmpint (audit.offline, ==, 3000);
  g_assert_cmpint (audit.in_flight, ==, 0);
  g_assert_true (audit.identity);
  g_assert_false (audit.balanced);

  /* Bob's own report later is the same half again. */
  g_autoptr (TestBundle) bb = test_bundle_new_at (b, TEST_NOW + 600);
  test_bundle_add_received (bb, a->cert, p, r);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, bundle_b, &report);
  g_assert_cmpuint (report.late_receipts, ==, 0);
  g_assert_cmpuint (report.fraud_proofs, ==, 0);
  g_assert_true (rb2->revoked);
  g_assert_cmpuint (rb2->n_fraud_proofs, ==, 1);
  TallyAudit end = test_audit (f->issuer);
  assert_audit_equal (&audit, &end);
}

static void
test_fraud_late_receipt_proof_holds_bundle_that_set_horizon (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 500, TEST_NOW + 100);
  g_autoptr (GBytes) r = test_receipt (b, p);
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW, &p, 1);
  TallyReconcileReport report;
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);

  g_autoptr (GBytes) reclaiming = empty_bundle_at (b, TEST_NOW + 200);
  g_autoptr (GBytes) newest = empty_bundle_at (b, TEST_NOW + 900);
  g_autoptr (GBytes) older = empty_bundle_at (b, TEST_NOW + 150);
  g_autoptr (Tally__ReconciliationResult) r1 = test_reconcile (f->issuer, reclaiming, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_autoptr (Tally__ReconciliationResult) r2 = test_reconcile (f->issuer, newest, &report);
  /* A replayed older bundle neither lowers the horizon nor replaces it. */
  g_autoptr (Tally__ReconciliationResult) r3 = test_reconcile (f->issuer, older, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  reopen_issuer (f);

  g_autoptr (TestBundle) cloned = test_bundle_new_at (b, TEST_NOW + 1000);
  test_bundle_add_received (cloned, a->cert, p, r);
  g_autoptr (GBytes) late = test_bundle_sign (cloned);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, late, &report);
  g_assert_cmpuint (report.late_receipts, ==, 1);
  g_assert_cmpuint (rb->n_fraud_proofs, ==, 1);
  assert_late_receipt_proof (f, rb->fraud_proofs[0], b, p, r, newest);
  assert_balanced (f);
}

static void
test_fraud_late_receipt_for_permission_never_booked_revokes_payee (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 10000);
  test_account_open (f->issuer, "bob", 0);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 3000);
  g_autoptr (GBytes) to_carol = test_permission_expiring (a, c, 400, TEST_NOW + 100);
  g_autoptr (GBytes) to_carol_r = test_receipt (c, to_carol);
  g_autoptr (GBytes) to_bob = test_permission_expiring (a, b, 600, TEST_NOW + 100);
  g_autoptr (GBytes) to_bob_r = test_receipt (b, to_bob);
  TallyReconcileReport report;

  /* Honest: Carol's first bundle, made after the expiry, lists the credit
   * (and again, as if the result had been lost). */
  g_autoptr (TestBundle) bc = test_bundle_new_at (c, TEST_NOW + 500);
  test_bundle_add_received (bc, a->cert, to_carol, to_carol_r);
  g_autoptr (GBytes) bundle_c = test_bundle_sign (bc);
  for (int i = 0; i < 2; i++) {
    g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);
    g_assert_cmpuint (report.late_receipts, ==, 0);
    g_assert_cmpuint (report.fraud_proofs, ==, 0);
    g_assert_false (rc->revoked);
  }

  /* Bob's restored copy reconciles past the expiry without the credit,
   * before Alice reports the payment; then the copy that credited it. */
  g_autoptr (GBytes) evidence = empty_bundle_at (b, TEST_NOW + 200);
  g_autoptr (Tally__ReconciliationResult) rb1 = test_reconcile (f->issuer, evidence, &report);
  g_assert_cmpuint (report.reclaimed, ==, 0);
  g_autoptr (TestBundle) cloned = test_bundle_new_at (b, TEST_NOW + 300);
  test_bundle_add_received (cloned, a->cert, to_bob, to_bob_r);
  g_autoptr (GBytes) late = test_bundle_sign (cloned);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, late, &report);
  g_assert_cmpuint (report.received_new, ==, 1);
  g_assert_cmpuint (report.late_receipts, ==, 1);
  g_assert_true (report.revoked);
  g_assert_cmpuint (rb2->n_fraud_proofs, ==, 1);
  assert_late_receipt_proof (f, rb2->fraud_proofs[0], b, to_bob, to_bob_r, evidence);
  g_autoptr (Tally__RevocationList) list = revocation_list_of (f);
  g_assert_true (tally_revocation_list_contains (list, b->id));
  g_assert_false (tally_revocation_list_contains (list, c->id));

  /* Nothing was given back, so the payment books as paid: no exposure. */
  TallyAudit audit = test_audit (f->issuer);
  g_assert_cmpint (audit.offline, ==, 3000);
  g_assert_cmpint (audit.in_flight, ==, 0);
  g_assert_cmpint (audit.reclaimed, ==, 0);
  g_assert_cmpint (audit.fraud_exposure, ==, 0);
  g_assert_cmpuint (audit.fraud_proofs, ==, 1);
  g_assert_true (audit.balanced);

  /* Alice, listing both without receipts, learns they were paid. */
  GBytes *spent[] = { to_carol, to_bob };
  g_autoptr (GBytes) bundle_a = spent_bundle_at (a, TEST_NOW + 600, spent, G_N_ELEMENTS (spent));
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (report.late_receipts, ==, 0);
  g_assert_cmpuint (ra->n_reclaimed, ==, 0);
  g_assert_cmpuint (ra->n_receipts, ==, 2);
  g_assert_true (envelopes_equal (ra->receipts[0], to_carol_r));
  g_assert_true (envelopes_equal (ra->receipts[1], to_bob_r));
  TallyAudit end = test_audit (f->issuer);
  assert_audit_equal (&audit, &end);
}

/* --- audit with reclaims --- */

static void
test_audit_balances_after_reclaim (Fixture *f, gconstpointer data)
{
  test_account_open (f->issuer, "alice", 20000);
  test_account_open (f->issuer, "bob", 5000);
  test_account_open (f->issuer, "carol", 0);
  g_autoptr (TestRegister) a = test_register_new (f->issuer, "alice");
  g_autoptr (TestRegister) b = test_register_new (f->issuer, "bob");
  g_autoptr (TestRegister) c = test_register_new (f->issuer, "carol");
  g_autoptr (GBytes) va = test_sell_voucher (f->issuer, a, 10000);
  g_autoptr (GBytes) vb = test_sell_voucher (f->issuer, b, 2000);

  /* Alice pays Bob (acknowledged), pays Carol twice (both lost; one will
   * expire before Carol reconciles, one not), Bob pays Carol (acknowledged
   * late), and Alice defunds the rest. */
  g_autoptr (GBytes) a_b = test_permission_expiring (a, b, 1500, TEST_NOW + 100);
  g_autoptr (GBytes) a_b_r = test_receipt (b, a_b);
  g_autoptr (GBytes) a_c1 = test_permission_expiring (a, c, 2500, TEST_NOW + 100);
  g_autoptr (GBytes) a_c2 = test_permission_expiring (a, c, 700, TEST_NOW + 10000);
  g_autoptr (GBytes) b_c = test_permission_expiring (b, c, 300, TEST_NOW + 100);
  g_autoptr (GBytes) b_c_r = test_receipt (c, b_c);
  g_autoptr (GBytes) a_d = test_defund (a, 10000 - 1500 - 2500 - 700);

  TallyReconcileReport report;
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, va);
  test_bundle_add_spent (ba, a_b, a_b_r);
  test_bundle_add_spent (ba, a_c1, NULL);
  test_bundle_add_spent (ba, a_c2, NULL);
  test_bundle_add_spent (ba, a_d, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  g_autoptr (Tally__ReconciliationResult) ra = test_reconcile (f->issuer, bundle_a, &report);
  assert_balanced (f);

  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_voucher (bb, vb);
  test_bundle_add_spent (bb, b_c, NULL);
  test_bundle_add_received (bb, a->cert, a_b, a_b_r);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  g_autoptr (Tally__ReconciliationResult) rb = test_reconcile (f->issuer, bundle_b, &report);
  TallyAudit mid = test_audit (f->issuer);
  g_assert_cmpint (mid.in_flight, ==, 2500 + 700 + 300);
  g_assert_true (mid.balanced);

  /* Carol reconciles past the first expiry, listing Bob's payment. */
  g_autoptr (TestBundle) bc = test_bundle_new_at (c, TEST_NOW + 500);
  test_bundle_add_received (bc, b->cert, b_c, b_c_r);
  g_autoptr (GBytes) bundle_c = test_bundle_sign (bc);
  g_autoptr (Tally__ReconciliationResult) rc = test_reconcile (f->issuer, bundle_c, &report);
  g_assert_cmpuint (report.reclaimed, ==, 1);
  g_assert_cmpint (report.reclaimed_amount, ==, 2500);
  g_assert_true (list_contains_hash (rc->settled_received, rc->n_settled_received, b_c));

  TallyAudit end = test_audit (f->issuer);
  g_assert_cmpint (end.issued, ==, 25000);
  /* Alice's account: 10000 left + 5300 defund + 2500 reclaimed. */
  g_assert_cmpint (test_balance (f->issuer, "alice"), ==, 17800);
  g_assert_cmpint (end.online, ==, 17800 + 3000);
  /* Bob 2000 + 1500 - 300, Carol 300, Alice nothing. */
  g_assert_cmpint (end.offline, ==, 3200 + 300);
  g_assert_cmpint (end.in_flight, ==, 700);
  g_assert_cmpint (end.reclaimed, ==, 2500);
  g_assert_cmpuint (end.reclaimed_count, ==, 1);
  g_assert_cmpint (end.fraud_exposure, ==, 0);
  g_assert_true (end.balanced);

  /* Bob learns Carol's receipt; Alice learns which of hers came back. */
  g_autoptr (GBytes) bundle_b2 = spent_bundle_at (b, TEST_NOW + 600, &b_c, 1);
  g_autoptr (Tally__ReconciliationResult) rb2 = test_reconcile (f->issuer, bundle_b2, &report);
  g_assert_cmpuint (rb2->n_receipts, ==, 1);
  g_assert_true (envelopes_equal (rb2->receipts[0], b_c_r));
  g_autoptr (Tally__ReconciliationResult) ra2 = test_reconcile (f->issuer, bundle_a, &report);
  g_assert_cmpuint (ra2->n_reclaimed, ==, 1);
  g_assert_true (list_contains_hash (ra2->reclaimed, ra2->n_reclaimed, a_c1));
  TallyAudit again = test_audit (f->issuer);
  assert_audit_equal (&end, &again);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/create/writes-private-key-and-self-signed-key-set",
       test_create_writes_key_and_self_signed_key_set);
  ADD ("/issuer/create/refuses-existing-issuer", test_create_refuses_existing_issuer);
  ADD ("/issuer/create/refuses-invalid-currency", test_create_refuses_invalid_currency);
  ADD ("/issuer/open/restores-keys-and-books", test_open_restores_keys_and_books);
  ADD ("/issuer/open/refuses-missing-issuer", test_open_refuses_missing_issuer);
  ADD ("/issuer/open/refuses-key-of-another-issuer", test_open_refuses_key_of_another_issuer);
  ADD ("/issuer/open/refuses-key-file-with-mismatched-halves",
       test_open_refuses_key_file_with_mismatched_halves);
  ADD ("/issuer/open/refuses-unreadable-store-config", test_open_refuses_unreadable_store_config);
  ADD ("/issuer/create/leaves-nothing-when-store-unreachable",
       test_create_leaves_nothing_when_store_unreachable);
  if (test_store_is_pg ())
    ADD ("/issuer/create/refuses-store-holding-another-issuer",
         test_create_refuses_store_holding_another_issuer);
  ADD ("/issuer/account/refuses-duplicate-name", test_account_refuses_duplicate_name);
  ADD ("/issuer/account/refuses-unknown-account", test_account_refuses_unknown_account);
  ADD ("/issuer/account/refuses-empty-or-control-name", test_account_refuses_empty_name);
  ADD ("/issuer/deposit/refuses-non-positive-amount", test_deposit_refuses_non_positive_amount);
  ADD ("/issuer/deposit/counts-as-issued", test_deposit_counts_as_issued);
  ADD ("/issuer/certify/issues-verifiable-certificate-with-next-serial",
       test_certify_issues_verifiable_certificate);
  ADD ("/issuer/certify/refuses-invalid-limits-window-account-or-key",
       test_certify_refuses_invalid_limits);
  ADD ("/issuer/certify/refuses-revoked-register", test_certify_refuses_revoked_register);
  ADD ("/issuer/certify/keeps-display-name-across-renewals",
       test_certify_keeps_display_name_across_renewals);
  ADD ("/issuer/certify/refuses-invalid-display-name", test_certify_refuses_invalid_display_name);
  ADD ("/issuer/certify/refuses-moving-register-to-another-account",
       test_certify_refuses_moving_register_to_another_account);
  ADD ("/issuer/voucher/refuses-overdraft", test_voucher_refuses_overdraft);
  ADD ("/issuer/voucher/debits-account-with-increasing-sequence",
       test_voucher_debits_account_with_increasing_sequence);
  ADD ("/issuer/voucher/refuses-unknown-or-revoked-register",
       test_voucher_refuses_unknown_or_revoked_register);
  ADD ("/issuer/voucher/refuses-invalid-amount-or-amount-over-cap",
       test_voucher_refuses_invalid_amount_and_cap);
  ADD ("/issuer/reconcile/books-payment-once-when-both-halves-race",
       test_reconcile_books_payment_once_when_both_halves_race);
  ADD ("/issuer/reconcile/matches-payer-and-payee-halves",
       test_reconcile_matches_payer_and_payee_halves);
  ADD ("/issuer/reconcile/settles-payment-with-payers-receipt",
       test_reconcile_settles_payment_with_payers_receipt);
  ADD ("/issuer/reconcile/ignores-receipt-that-does-not-verify",
       test_reconcile_ignores_receipt_that_does_not_verify);
  ADD ("/issuer/reconcile/is-idempotent", test_reconcile_is_idempotent);
  ADD ("/issuer/reconcile/accepts-entries-reported-out-of-order",
       test_reconcile_accepts_entries_out_of_order);
  ADD ("/issuer/reconcile/refuses-bundle-with-gap-below-highest-entry",
       test_reconcile_refuses_bundle_with_gap_below_highest_entry);
  ADD ("/issuer/reconcile/detects-counter-reuse-and-revokes",
       test_reconcile_detects_counter_reuse_and_revokes);
  ADD ("/issuer/reconcile/detects-counter-reuse-within-one-bundle",
       test_reconcile_detects_counter_reuse_within_one_bundle);
  ADD ("/issuer/reconcile/detects-forked-chain", test_reconcile_detects_forked_chain);
  ADD ("/issuer/reconcile/detects-chain-not-starting-at-genesis",
       test_reconcile_detects_chain_not_starting_at_genesis);
  ADD ("/issuer/reconcile/detects-fork-reported-by-payee-first",
       test_reconcile_detects_fork_reported_by_payee_first);
  ADD ("/issuer/reconcile/refuses-forged-bundle", test_reconcile_refuses_forged_bundle);
  ADD ("/issuer/reconcile/refuses-unknown-register", test_reconcile_refuses_unknown_register);
  ADD ("/issuer/reconcile/refuses-malformed-bundle", test_reconcile_refuses_malformed_bundle);
  ADD ("/issuer/reconcile/refuses-received-entry-certified-by-another-issuer",
       test_reconcile_refuses_received_entry_from_another_issuer);
  ADD ("/issuer/reconcile/refuses-received-entry-with-forged-parts",
       test_reconcile_refuses_received_entry_with_forged_parts);
  ADD ("/issuer/reconcile/refused-bundle-books-nothing",
       test_reconcile_refused_bundle_books_nothing);
  ADD ("/issuer/reconcile/refuses-entry-in-another-currency",
       test_reconcile_refuses_entry_in_another_currency);
  ADD ("/issuer/reconcile/refuses-spent-entry-of-wrong-kind",
       test_reconcile_refuses_entry_of_wrong_kind);
  ADD ("/issuer/reconcile/refuses-foreign-voucher", test_reconcile_refuses_foreign_voucher);
  ADD ("/issuer/reconcile/renews-certificate", test_reconcile_renews_certificate);
  ADD ("/issuer/reconcile/books-revoked-register-without-renewal",
       test_reconcile_books_revoked_register_without_renewal);
  ADD ("/issuer/audit/balances-after-payments-and-defund",
       test_audit_balances_after_payments_and_defund);
  ADD ("/issuer/revoke/publishes-newer-list", test_revoke_publishes_newer_list);
  ADD ("/issuer/reclaim/returns-expired-permission-after-payee-reconciles",
       test_reclaim_returns_expired_permission_after_payee_reconciles);
  ADD ("/issuer/reclaim/waits-while-payee-has-not-reconciled-past-expiry",
       test_reclaim_waits_while_payee_has_not_reconciled_past_expiry);
  ADD ("/issuer/reclaim/never-returns-permission-without-expiry",
       test_reclaim_never_returns_permission_without_expiry);
  ADD ("/issuer/reclaim/is-idempotent-when-payer-lists-entry-again",
       test_reclaim_is_idempotent_when_payer_lists_entry_again);
  ADD ("/issuer/reclaim/books-when-payee-reconciled-first",
       test_reclaim_books_when_payee_reconciled_first);
  ADD ("/issuer/reclaim/returns-only-the-reconciling-payees-permissions",
       test_reclaim_returns_only_the_reconciling_payees_permissions);
  ADD ("/issuer/receipts/returns-payee-receipt-to-payer-without-one",
       test_receipts_returns_payee_receipt_to_payer_without_one);
  ADD ("/issuer/receipts/returns-receipt-an-earlier-payer-bundle-carried",
       test_receipts_returns_receipt_another_payer_bundle_carried);
  ADD ("/issuer/fraud/late-receipt-after-reclaim-revokes-payee",
       test_fraud_late_receipt_after_reclaim_revokes_payee);
  ADD ("/issuer/fraud/late-receipt-carried-by-payer-revokes-payee",
       test_fraud_late_receipt_carried_by_payer_revokes_payee);
  ADD ("/issuer/fraud/late-receipt-proof-holds-bundle-that-set-horizon",
       test_fraud_late_receipt_proof_holds_bundle_that_set_horizon);
  ADD ("/issuer/fraud/late-receipt-for-permission-never-booked-revokes-payee",
       test_fraud_late_receipt_for_permission_never_booked_revokes_payee);
  ADD ("/issuer/audit/balances-after-reclaim", test_audit_balances_after_reclaim);
  ADD ("/issuer/evidence/defund-beyond-evidence-is-refused-and-proven",
       test_evidence_defund_beyond_evidence_is_refused_and_proven);
  ADD ("/issuer/evidence/key-overspend-to-accomplice-is-exposure",
       test_evidence_key_overspend_to_accomplice_is_exposure);
  ADD ("/issuer/evidence/clones-cash-out-once", test_evidence_clones_cash_out_once);
  ADD ("/issuer/evidence/payment-to-oneself-is-refused", test_evidence_payment_to_oneself_is_refused);
  ADD ("/issuer/evidence/clone-defund-below-a-later-defund-is-refused",
       test_evidence_clone_defund_below_a_later_defund_is_refused);
  ADD ("/issuer/evidence/honest-onward-spend-is-not-fraud",
       test_evidence_honest_onward_spend_is_not_fraud);
  ADD ("/issuer/evidence/bundle-judged-through-its-own-counter",
       test_evidence_bundle_judged_through_its_own_counter);
  ADD ("/issuer/evidence/payment-over-limit-proves-payer-and-payee",
       test_evidence_payment_over_limit_proves_payer_and_payee);
  ADD ("/issuer/evidence/payment-over-limit-reported-by-payer-first",
       test_evidence_payment_over_limit_reported_by_payer_first);
  ADD ("/issuer/evidence/reclaim-beyond-evidence-is-refused",
       test_evidence_reclaim_beyond_evidence_is_refused);
#undef ADD

  return g_test_run ();
}
