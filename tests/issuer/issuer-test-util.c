/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "issuer-test-util.h"

#include <glib/gstdio.h>
#include <libpq-fe.h>
#include <string.h>
#include <unistd.h>

#define TEST_CURRENCY "EUR"

struct _TestBundle
{
  guint8 *sk; /* borrowed from the register */
  guint64 created_at;
  guint8 register_id[TALLY_ID_BYTES];
  guint64 counter;
  guint8 head[TALLY_HASH_BYTES];
  GBytes *cert;
  GPtrArray *spent;    /* GBytes pairs: permission, receipt or NULL */
  GPtrArray *received; /* GBytes triples: certificate, permission, receipt */
  GPtrArray *vouchers; /* GBytes */
};

Tally__SignedEnvelope *
test_envelope (GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  Tally__SignedEnvelope *env = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (env);
  return env;
}

void
test_default_limits (Tally__Limits *limits)
{
  tally__limits__init (limits);
  limits->max_payment = 5000;
  limits->balance_cap = 50000;
  limits->max_offline_payments = 100;
  limits->max_offline_seconds = 72 * 3600;
}

TestRegister *
test_register_new_uncertified (void)
{
  g_assert_cmpint (sodium_init (), >=, 0);
  TestRegister *reg = g_new0 (TestRegister, 1);
  reg->sk = tally_secret_key_new ();
  crypto_sign_keypair (reg->pk, reg->sk);
  tally_register_id_from_key (reg->pk, reg->id);
  tally_chain_genesis (reg->id, reg->head);
  return reg;
}

TestRegister *
test_register_new (TallyIssuer *issuer, const char *account)
{
  TestRegister *reg = test_register_new_uncertified ();
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GError) error = NULL;
  reg->cert = tally_issuer_certify (issuer, reg->pk, account, NULL, &limits, TEST_NOW,
                                    TEST_NOW + 30 * 86400, &error);
  g_assert_no_error (error);
  g_assert_nonnull (reg->cert);
  return reg;
}

void
test_enrol_proof (TallyIssuer *issuer,
                  const TestRegister *reg,
                  const char *account,
                  guint8 proof[TALLY_SIGNATURE_BYTES])
{
  g_autoptr (GBytes) statement = tally_issuer_enrol_statement (issuer, reg->pk, account);
  gsize len;
  const guint8 *data = g_bytes_get_data (statement, &len);
  g_assert_cmpint (crypto_sign_detached (proof, NULL, data, len, reg->sk), ==, 0);
}

void
test_register_free (TestRegister *reg)
{
  if (reg == NULL)
    return;
  tally_secret_key_free (reg->sk);
  g_clear_pointer (&reg->cert, g_bytes_unref);
  g_free (reg);
}

GBytes *
test_sign_permission (const guint8 sk[TALLY_SECRET_KEY_BYTES],
                      const guint8 payer_id[TALLY_ID_BYTES],
                      const guint8 payee_id[TALLY_ID_BYTES],
                      const char *currency,
                      gint64 amount,
                      guint64 counter,
                      const guint8 chain_prev[TALLY_HASH_BYTES],
                      guint64 expires_at)
{
  guint8 nonce[TALLY_NONCE_BYTES];
  guint8 memo_hash[TALLY_HASH_BYTES];
  randombytes_buf (nonce, sizeof nonce);
  tally_hash ("memo", "", 0, memo_hash);

  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = (char *) currency;
  value.value = amount;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = (guint8 *) payer_id;
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id.data = (guint8 *) payee_id;
  p.payee_register_id.len = TALLY_ID_BYTES;
  p.payee_nonce.data = nonce;
  p.payee_nonce.len = sizeof nonce;
  p.amount = &value;
  p.counter = counter;
  p.chain_prev.data = (guint8 *) chain_prev;
  p.chain_prev.len = TALLY_HASH_BYTES;
  p.created_at = TEST_NOW;
  p.memo_hash.data = memo_hash;
  p.memo_hash.len = sizeof memo_hash;
  p.expires_at = expires_at;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p.base,
                             sk);
}

void
test_entry_hash (GBytes *envelope, guint8 out[TALLY_HASH_BYTES])
{
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (envelope);
  tally_envelope_body_hash (env, out);
}

void
test_chain_after (const guint8 prev[TALLY_HASH_BYTES], GBytes *envelope, guint8 out[TALLY_HASH_BYTES])
{
  guint8 hash[TALLY_HASH_BYTES];
  test_entry_hash (envelope, hash);
  tally_chain_next (prev, hash, out);
}

GBytes *
test_permission_expiring (TestRegister *payer,
                          const TestRegister *payee,
                          gint64 amount,
                          guint64 expires_at)
{
  GBytes *env = test_sign_permission (payer->sk, payer->id, payee->id, TEST_CURRENCY, amount,
                                      payer->counter + 1, payer->head, expires_at);
  payer->counter++;
  test_chain_after (payer->head, env, payer->head);
  return env;
}

GBytes *
test_permission (TestRegister *payer, const TestRegister *payee, gint64 amount)
{
  return test_permission_expiring (payer, payee, amount, TEST_EXPIRES_AT);
}

GBytes *
test_defund (TestRegister *reg, gint64 amount)
{
  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = (char *) TEST_CURRENCY;
  value.value = amount;
  Tally__DefundRecord d = TALLY__DEFUND_RECORD__INIT;
  d.register_id.data = reg->id;
  d.register_id.len = TALLY_ID_BYTES;
  d.amount = &value;
  d.counter = reg->counter + 1;
  d.chain_prev.data = reg->head;
  d.chain_prev.len = TALLY_HASH_BYTES;
  d.created_at = TEST_NOW;
  GBytes *env =
    tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &d.base, reg->sk);
  reg->counter++;
  test_chain_after (reg->head, env, reg->head);
  return env;
}

GBytes *
test_sign_receipt (const guint8 sk[TALLY_SECRET_KEY_BYTES], GBytes *permission, gint64 amount)
{
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (permission);
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                  env->body.len, "permission", NULL);
  g_assert_nonnull (p);
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (env, hash);

  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = p->amount->currency;
  value.value = amount;
  Tally__Receipt r = TALLY__RECEIPT__INIT;
  r.payee_register_id = p->payee_register_id;
  r.payer_register_id = p->payer_register_id;
  r.payer_counter = p->counter;
  r.permission_hash.data = hash;
  r.permission_hash.len = sizeof hash;
  r.amount = &value;
  r.received_at = TEST_NOW;
  r.permission_expires_at = p->expires_at;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r.base, sk);
}

GBytes *
test_receipt (const TestRegister *payee, GBytes *permission)
{
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (permission);
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                  env->body.len, "permission", NULL);
  g_assert_nonnull (p);
  return test_sign_receipt (payee->sk, permission, p->amount->value);
}

/* --- bundles --- */

TestBundle *
test_bundle_new_at (const TestRegister *reg, guint64 created_at)
{
  TestBundle *b = g_new0 (TestBundle, 1);
  b->sk = reg->sk;
  b->created_at = created_at;
  memcpy (b->register_id, reg->id, TALLY_ID_BYTES);
  b->counter = reg->counter;
  memcpy (b->head, reg->head, TALLY_HASH_BYTES);
  b->cert = reg->cert ? g_bytes_ref (reg->cert) : NULL;
  GDestroyNotify unref = (GDestroyNotify) g_bytes_unref;
  b->spent = g_ptr_array_new_with_free_func (unref);
  b->received = g_ptr_array_new_with_free_func (unref);
  b->vouchers = g_ptr_array_new_with_free_func (unref);
  return b;
}

TestBundle *
test_bundle_new (const TestRegister *reg)
{
  return test_bundle_new_at (reg, TEST_NOW);
}

void
test_bundle_free (TestBundle *b)
{
  if (b == NULL)
    return;
  g_clear_pointer (&b->cert, g_bytes_unref);
  g_ptr_array_unref (b->spent);
  g_ptr_array_unref (b->received);
  g_ptr_array_unref (b->vouchers);
  g_free (b);
}

static GBytes *
ref_or_null (GBytes *bytes)
{
  return bytes ? g_bytes_ref (bytes) : NULL;
}

void
test_bundle_add_spent (TestBundle *b, GBytes *permission, GBytes *receipt)
{
  g_ptr_array_add (b->spent, g_bytes_ref (permission));
  g_ptr_array_add (b->spent, ref_or_null (receipt));
}

void
test_bundle_add_received (TestBundle *b, GBytes *payer_certificate, GBytes *permission,
                          GBytes *receipt)
{
  g_ptr_array_add (b->received, g_bytes_ref (payer_certificate));
  g_ptr_array_add (b->received, g_bytes_ref (permission));
  g_ptr_array_add (b->received, g_bytes_ref (receipt));
}

void
test_bundle_add_voucher (TestBundle *b, GBytes *voucher)
{
  g_ptr_array_add (b->vouchers, g_bytes_ref (voucher));
}

static Tally__SignedEnvelope *
keep (GPtrArray *owned, GBytes *bytes)
{
  if (bytes == NULL)
    return NULL;
  Tally__SignedEnvelope *env = test_envelope (bytes);
  g_ptr_array_add (owned, env);
  return env;
}

GBytes *
test_bundle_sign_with (TestBundle *b, const guint8 sk[TALLY_SECRET_KEY_BYTES])
{
  g_autoptr (GPtrArray) owned =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);

  guint n_spent = b->spent->len / 2, n_received = b->received->len / 3;
  g_autofree Tally__SpentEntry *spent = g_new0 (Tally__SpentEntry, n_spent + 1);
  g_autofree Tally__SpentEntry **spent_ptrs = g_new0 (Tally__SpentEntry *, n_spent + 1);
  for (guint i = 0; i < n_spent; i++) {
    tally__spent_entry__init (&spent[i]);
    spent[i].permission = keep (owned, b->spent->pdata[2 * i]);
    spent[i].receipt = keep (owned, b->spent->pdata[2 * i + 1]);
    spent_ptrs[i] = &spent[i];
  }
  g_autofree Tally__ReceivedEntry *received = g_new0 (Tally__ReceivedEntry, n_received + 1);
  g_autofree Tally__ReceivedEntry **received_ptrs = g_new0 (Tally__ReceivedEntry *, n_received + 1);
  for (guint i = 0; i < n_received; i++) {
    tally__received_entry__init (&received[i]);
    received[i].payer_certificate = keep (owned, b->received->pdata[3 * i]);
    received[i].permission = keep (owned, b->received->pdata[3 * i + 1]);
    received[i].receipt = keep (owned, b->received->pdata[3 * i + 2]);
    received_ptrs[i] = &received[i];
  }
  g_autofree Tally__SignedEnvelope **vouchers = g_new0 (Tally__SignedEnvelope *, b->vouchers->len + 1);
  for (guint i = 0; i < b->vouchers->len; i++)
    vouchers[i] = keep (owned, b->vouchers->pdata[i]);

  Tally__ReconciliationBundle msg = TALLY__RECONCILIATION_BUNDLE__INIT;
  msg.register_id.data = b->register_id;
  msg.register_id.len = TALLY_ID_BYTES;
  msg.certificate = keep (owned, b->cert);
  msg.counter = b->counter;
  msg.chain_head.data = b->head;
  msg.chain_head.len = TALLY_HASH_BYTES;
  msg.n_spent = n_spent;
  msg.spent = spent_ptrs;
  msg.n_received = n_received;
  msg.received = received_ptrs;
  msg.n_vouchers = b->vouchers->len;
  msg.vouchers = vouchers;
  msg.created_at = b->created_at;
  msg.revocation_serial = 1;
  return tally_message_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
                             &msg.base, sk);
}

GBytes *
test_bundle_sign (TestBundle *b)
{
  return test_bundle_sign_with (b, b->sk);
}

Tally__ReconciliationResult *
test_result_open (TallyIssuer *issuer, GBytes *result)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (result);
  g_assert_true (tally_envelope_verify (
    env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
    tally_issuer_get_public_key (issuer), &error));
  g_assert_no_error (error);
  Tally__ReconciliationResult *res =
    TALLY_UNPACK (Tally__ReconciliationResult, tally__reconciliation_result, env->body.data,
                  env->body.len, "result", &error);
  g_assert_no_error (error);
  return res;
}

Tally__ReconciliationResult *
test_reconcile (TallyIssuer *issuer, GBytes *bundle, TallyReconcileReport *report)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bundle, &len);
  g_autoptr (GBytes) result = tally_issuer_reconcile (issuer, data, len, TEST_NOW + 3600, report,
                                                      &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  return test_result_open (issuer, result);
}

void
test_remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      test_remove_tree (child);
    }
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}

/* --- the store under test --- */

#define PG_CONNINFO_ENV "TALLY_TEST_PG_CONNINFO"

const char *
test_pg_conninfo (void)
{
  const char *conninfo = g_getenv (PG_CONNINFO_ENV);
  return conninfo != NULL && *conninfo != '\0' ? conninfo : NULL;
}

gboolean
test_store_is_pg (void)
{
  return test_pg_conninfo () != NULL;
}

char *
test_pg_run (const char *conninfo, const char *sql)
{
  PGconn *conn = PQconnectdb (conninfo);
  if (PQstatus (conn) != CONNECTION_OK)
    g_error ("cannot connect to the test server (%s): %s", conninfo, PQerrorMessage (conn));
  PGresult *r = PQexec (conn, sql);
  ExecStatusType status = PQresultStatus (r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    g_error ("%s: %s", sql, PQresultErrorMessage (r));
  char *value = NULL;
  if (status == PGRES_TUPLES_OK && PQntuples (r) > 0) {
    GString *rows = g_string_new (NULL);
    for (int i = 0; i < PQntuples (r); i++)
      g_string_append_printf (rows, "%s%s", i > 0 ? "\n" : "", PQgetvalue (r, i, 0));
    value = g_string_free (rows, FALSE);
  }
  PQclear (r);
  PQfinish (conn);
  return value;
}

char *
test_pg_schema_conninfo (const char *schema)
{
  const char *base = test_pg_conninfo ();
  g_assert_nonnull (base);
  return g_strdup_printf ("%s options='-c search_path=%s'", base, schema);
}

char *
test_store_spec_new (void)
{
  const char *base = test_pg_conninfo ();
  if (base == NULL)
    return g_strdup ("sqlite");
  /* A schema of its own for every store: the tests share one server but
   * never each other's tables.  The name is ours, never an input. */
  static gint counter;
  g_autofree char *schema =
    g_strdup_printf ("t%d_%d", (int) getpid (), g_atomic_int_add (&counter, 1));
  g_autofree char *sql = g_strdup_printf ("CREATE SCHEMA %s", schema);
  g_free (test_pg_run (base, sql));
  g_autofree char *conninfo = test_pg_schema_conninfo (schema);
  return g_strconcat ("postgresql:", conninfo, NULL);
}

TallyIssuer *
test_issuer_create (const char *dir,
                    const char *name,
                    const char *currency,
                    guint64 now,
                    GError **error)
{
  g_autofree char *spec = test_store_spec_new ();
  return tally_issuer_create_with_store (dir, spec, name, currency, now, error);
}

/* --- an issuer under test --- */

void
test_issuer_fixture_setup (TestIssuerFixture *f, const char *tmp_template)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp (tmp_template, &error);
  g_assert_no_error (error);
  f->dir = g_build_filename (f->tmp, "issuer", NULL);
  f->spec = test_store_spec_new ();
  f->issuer =
    tally_issuer_create_with_store (f->dir, f->spec, "Test Bank", TEST_CURRENCY, TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->issuer);
}

void
test_issuer_fixture_teardown (TestIssuerFixture *f)
{
  g_clear_pointer (&f->issuer, tally_issuer_free);
  test_remove_tree (f->tmp);
  g_free (f->spec);
  g_free (f->dir);
  g_free (f->tmp);
}

void
test_account_open (TallyIssuer *issuer, const char *name, gint64 deposit)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_issuer_account_create (issuer, name, &error));
  g_assert_no_error (error);
  if (deposit > 0) {
    g_assert_true (tally_issuer_deposit (issuer, name, deposit, &error));
    g_assert_no_error (error);
  }
}

gint64
test_balance (TallyIssuer *issuer, const char *name)
{
  g_autoptr (GError) error = NULL;
  gint64 balance = -1;
  g_assert_true (tally_issuer_account_balance (issuer, name, &balance, &error));
  g_assert_no_error (error);
  return balance;
}

GBytes *
test_sell_voucher (TallyIssuer *issuer, const TestRegister *reg, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  GBytes *v = tally_issuer_sell_voucher (issuer, reg->id, amount, TEST_NOW, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
  return v;
}

TallyAudit
test_audit (TallyIssuer *issuer)
{
  g_autoptr (GError) error = NULL;
  TallyAudit a;
  g_assert_true (tally_issuer_audit (issuer, &a, &error));
  g_assert_no_error (error);
  return a;
}
