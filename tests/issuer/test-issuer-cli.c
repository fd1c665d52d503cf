/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs the built tally-issuer binary (path in argv[1]) through its commands.
 */
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "issuer-test-util.h"
#include "tally-hex.h"

static char *cli_path;

typedef struct
{
  char *tmp;
  char *dir;
  char *spec; /* the store init_issuer () chose */
} Fixture;

typedef struct
{
  int status;
  char *out;
  char *err;
} Run;

static void
run_clear (Run *r)
{
  g_free (r->out);
  g_free (r->err);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Run, run_clear)

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->tmp = g_dir_make_tmp ("tally-issuer-cli-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir = g_build_filename (f->tmp, "issuer", NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  test_remove_tree (f->tmp);
  g_free (f->spec);
  g_free (f->dir);
  g_free (f->tmp);
}

/* Runs the CLI with TALLY_ISSUER_DIR pointing at the fixture's issuer. */
static Run
run_argv (Fixture *f, const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path);
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);

  g_auto (GStrv) envp = g_get_environ ();
  envp = g_environ_setenv (envp, "TALLY_ISSUER_DIR", f->dir, TRUE);

  Run r = { 0 };
  int wait_status = 0;
  g_autoptr (GError) error = NULL;
  g_spawn_sync (f->tmp, (char **) argv->pdata, envp, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err,
                &wait_status, &error);
  g_assert_no_error (error);
  g_assert_true (WIFEXITED (wait_status));
  r.status = WEXITSTATUS (wait_status);
  if (g_test_verbose ())
    g_test_message ("exit %d\nstdout: %s\nstderr: %s", r.status, r.out, r.err);
  return r;
}

#define RUN(f, ...) run_argv ((f), (const char *const[]) { __VA_ARGS__, NULL })

static void
expect_ok (const Run *r)
{
  if (r->status != 0)
    g_test_message ("stderr: %s", r->err);
  g_assert_cmpint (r->status, ==, 0);
}

static void
expect_failure (const Run *r, int status, const char *message_part)
{
  g_assert_cmpint (r->status, ==, status);
  g_assert_true (g_str_has_prefix (r->err, "tally-issuer: "));
  if (message_part != NULL)
    g_assert_nonnull (strstr (r->err, message_part));
}

static GBytes *
read_file (Fixture *f, const char *name)
{
  g_autofree char *path = g_build_filename (f->tmp, name, NULL);
  g_autoptr (GError) error = NULL;
  char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (path, &data, &len, &error));
  g_assert_no_error (error);
  return g_bytes_new_take (data, len);
}

static void
write_file (Fixture *f, const char *name, GBytes *bytes)
{
  g_autofree char *path = g_build_filename (f->tmp, name, NULL);
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  g_assert_true (g_file_set_contents (path, data, (gssize) len, &error));
  g_assert_no_error (error);
}

static void
issuer_key (Fixture *f, guint8 pk[TALLY_PUBLIC_KEY_BYTES])
{
  g_auto (Run) r = RUN (f, "key");
  expect_ok (&r);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_hex_decode (g_strstrip (r.out), pk, TALLY_PUBLIC_KEY_BYTES, &error));
  g_assert_no_error (error);
}

/* On the store under test: --store on PostgreSQL, the default on SQLite. */
static void
init_issuer (Fixture *f)
{
  f->spec = test_store_spec_new ();
  g_auto (Run) r =
    test_store_is_pg ()
      ? RUN (f, "init", "--name", "CLI \"Test\" Bank", "--currency", "EUR", "--store", f->spec)
      : RUN (f, "init", "--name", "CLI \"Test\" Bank", "--currency", "EUR");
  expect_ok (&r);
  g_assert_nonnull (strstr (r.out, "public key "));
}

/* Certifies a fresh key pair through the CLI and reads the certificate back. */
static TestRegister *
certify_register (Fixture *f, const char *account, const char *cert_name)
{
  TestRegister *reg = test_register_new_uncertified ();
  g_autofree char *hex = tally_hex_encode (reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_auto (Run) r = RUN (f, "certify", "--account", account, "--key", hex, "--max-payment",
                        "20.00", "--valid-days", "7", "--out", cert_name);
  expect_ok (&r);
  g_autofree char *id_hex = tally_hex_encode (reg->id, TALLY_ID_BYTES);
  g_assert_nonnull (strstr (r.out, id_hex));
  reg->cert = read_file (f, cert_name);
  return reg;
}

static void
test_cli_certifies_display_name (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) account = RUN (f, "account-create", "bob");
  expect_ok (&account);
  guint8 issuer_pk[TALLY_PUBLIC_KEY_BYTES];
  issuer_key (f, issuer_pk);

  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autofree char *hex = tally_hex_encode (reg->pk, TALLY_PUBLIC_KEY_BYTES);
  /* Refused names leave no register behind: a usage error, exit 2. */
  static const char *const bad[] = { "", "Bob's\nBakery",
                                     "0123456789012345678901234567890123456789012345678901234567890123X" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_auto (Run) r = RUN (f, "certify", "--account", "bob", "--key", hex, "--display-name", bad[i],
                          "--out", "bad.cert");
    expect_failure (&r, 2, "--display-name");
  }

  g_auto (Run) r = RUN (f, "certify", "--account", "bob", "--key", hex, "--display-name",
                        "Bob's Bakery", "--out", "bob.cert");
  expect_ok (&r);
  g_assert_nonnull (strstr (r.out, "\"Bob's Bakery\""));
  g_autoptr (GBytes) cert = read_file (f, "bob.cert");
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (cert, NULL), g_bytes_get_size (cert), &error);
  g_assert_no_error (error);
  g_autoptr (Tally__RegisterCertificate) c =
    tally_certificate_verify_any_time (env, issuer_pk, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (c->display_name, ==, "Bob's Bakery");
  g_assert_cmpuint (c->serial, ==, 1);
}

/* "lost" revokes at once; "refund-lost" pays nothing before the window
 * (its payment after the window: tests/issuer/test-issuer-refund.c). */
static void
test_cli_lost_register_waits_for_refund_window (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) account = RUN (f, "account-create", "alice");
  expect_ok (&account);
  g_auto (Run) account_b = RUN (f, "account-create", "bob");
  expect_ok (&account_b);
  g_auto (Run) dep = RUN (f, "deposit", "alice", "100.00");
  expect_ok (&dep);
  g_autoptr (TestRegister) reg = test_register_new_uncertified ();
  g_autofree char *key = tally_hex_encode (reg->pk, TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *id = tally_hex_encode (reg->id, TALLY_ID_BYTES);
  g_auto (Run) cert = RUN (f, "certify", "--account", "alice", "--key", key, "--out", "a.cert");
  expect_ok (&cert);
  g_auto (Run) v = RUN (f, "voucher", "--register", id, "--amount", "20.00", "--out", "v.bin");
  expect_ok (&v);

  g_auto (Run) wrong = RUN (f, "lost", "bob", id);
  expect_failure (&wrong, 1, NULL);
  g_auto (Run) bad = RUN (f, "lost", "alice", "xyz");
  expect_failure (&bad, 2, "register id");
  g_auto (Run) lost = RUN (f, "lost", "alice", id);
  expect_ok (&lost);
  g_assert_nonnull (strstr (lost.out, "reported lost and revoked"));

  g_auto (Run) refund = RUN (f, "refund-lost");
  expect_ok (&refund);
  g_assert_nonnull (strstr (refund.out, "0 lost register(s) refunded, 0.00 EUR in all; "
                                        "1 waiting for their window, the next due at "));
  g_auto (Run) bal = RUN (f, "balance", "alice");
  g_assert_cmpstr (bal.out, ==, "80.00 EUR\n");
  g_auto (Run) audit = RUN (f, "audit", "--json");
  expect_ok (&audit);
  g_assert_null (strstr (audit.out, "\"lost_at\": 0,"));
  g_assert_nonnull (strstr (audit.out, "\"refunded_at\": 0, \"refunded\": 0, \"recovered\": 0"));
}

static void
test_cli_prune_keeps_young_answers (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) r = RUN (f, "prune");
  expect_ok (&r);
  g_assert_cmpstr (r.out, ==, "0 kept answer(s) older than 90 day(s) pruned, 0 kept\n");
  g_auto (Run) bad = RUN (f, "prune", "--keep-days", "0");
  expect_failure (&bad, 2, "--keep-days");
}

static void
test_cli_help_lists_every_command (Fixture *f, gconstpointer data)
{
  const char *commands[] = { "init",      "key",         "account-create", "deposit",
                             "balance",   "certify",     "voucher",        "reconcile",
                             "revoke",    "revocations", "fraud-proofs",   "audit" };
  g_auto (Run) r = RUN (f, "--help");
  expect_ok (&r);
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_autofree char *line = g_strdup_printf ("\n  %s ", commands[i]);
    g_assert_nonnull (strstr (r.out, line));
    g_autofree char *example = g_strdup_printf ("tally-issuer %s", commands[i]);
    g_assert_nonnull (strstr (r.out, example));

    g_auto (Run) sub = RUN (f, commands[i], "--help");
    expect_ok (&sub);
    g_autofree char *usage = g_strdup_printf ("tally-issuer %s [OPTION", commands[i]);
    g_assert_nonnull (strstr (sub.out, usage));
    g_assert_nonnull (strstr (sub.out, "--dir"));
  }
}

/* A yen issuer takes and prints whole yen (ISO 4217: no minor unit);
 * "12.5" is a usage error that changes nothing. */
static void
test_cli_jpy_amounts_have_no_decimals (Fixture *f, gconstpointer data)
{
  f->spec = test_store_spec_new ();
  g_auto (Run) init =
    test_store_is_pg ()
      ? RUN (f, "init", "--name", "Yen Bank", "--currency", "JPY", "--store", f->spec)
      : RUN (f, "init", "--name", "Yen Bank", "--currency", "JPY");
  expect_ok (&init);
  g_auto (Run) create = RUN (f, "account-create", "alice");
  expect_ok (&create);
  g_auto (Run) bad = RUN (f, "deposit", "alice", "12.5");
  expect_failure (&bad, 2, "\"12.5\": JPY has no minor unit");
  g_auto (Run) deposit = RUN (f, "deposit", "alice", "1250");
  expect_ok (&deposit);
  g_assert_nonnull (strstr (deposit.out, "deposited 1250 JPY into \"alice\", balance 1250 JPY"));
  g_auto (Run) balance = RUN (f, "balance", "alice");
  expect_ok (&balance);
  g_assert_cmpstr (balance.out, ==, "1250 JPY\n");
}

static void
test_cli_usage_errors_exit_2 (Fixture *f, gconstpointer data)
{
  g_auto (Run) none = RUN (f, "--dir", f->dir);
  expect_failure (&none, 2, "missing command");
  g_auto (Run) unknown = RUN (f, "frobnicate");
  expect_failure (&unknown, 2, "unknown command");
  g_auto (Run) bad_option = RUN (f, "audit", "--no-such-option");
  expect_failure (&bad_option, 2, NULL);
  g_auto (Run) missing = RUN (f, "init", "--name", "x");
  expect_failure (&missing, 2, "--currency");
  g_auto (Run) bad_amount = RUN (f, "deposit", "alice", "1.234");
  expect_failure (&bad_amount, 2, "1.234");
  g_auto (Run) extra = RUN (f, "balance", "alice", "bob");
  expect_failure (&extra, 2, NULL);
  g_auto (Run) both_keys = RUN (f, "certify", "--account", "a", "--key", "00", "--key-file",
                                "k", "--out", "c");
  expect_failure (&both_keys, 2, "exactly one");
  /* None of these created an issuer. */
  g_assert_false (g_file_test (f->dir, G_FILE_TEST_EXISTS));
}

static void
test_cli_runs_accounts_certificates_and_vouchers (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) again = RUN (f, "init", "--name", "x", "--currency", "EUR");
  expect_failure (&again, 1, "already exists");

  guint8 pk[TALLY_PUBLIC_KEY_BYTES];
  issuer_key (f, pk);
  g_auto (Run) key_out = RUN (f, "key", "--out", "keys.bin");
  expect_ok (&key_out);
  g_autoptr (GBytes) key_set = read_file (f, "keys.bin");
  g_autoptr (Tally__SignedEnvelope) ks_env = test_envelope (key_set);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (
    ks_env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, pk, &error));
  g_assert_no_error (error);

  g_auto (Run) acct = RUN (f, "account-create", "alice");
  expect_ok (&acct);
  g_auto (Run) dup = RUN (f, "account-create", "alice");
  expect_failure (&dup, 1, "already exists");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "100");
  expect_ok (&dep);
  g_auto (Run) bal = RUN (f, "balance", "alice");
  expect_ok (&bal);
  g_assert_cmpstr (bal.out, ==, "100.00 EUR\n");
  g_auto (Run) nobody = RUN (f, "deposit", "bob", "1");
  expect_failure (&nobody, 1, "bob");

  g_autoptr (TestRegister) reg = certify_register (f, "alice", "alice.cert");
  g_autoptr (Tally__SignedEnvelope) cert_env = test_envelope (reg->cert);
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (cert_env, pk, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cert->limits->max_payment, ==, 2000);
  g_assert_cmpint (cert->limits->balance_cap, ==, 50000);
  g_assert_cmpuint (cert->limits->max_offline_payments, ==, 100);
  g_assert_cmpuint (cert->limits->max_offline_seconds, ==, 72 * 3600);
  g_assert_cmpuint (cert->not_after - cert->not_before, ==, 7 * 86400);

  /* The key may come from a file, as hex or raw bytes. */
  g_autoptr (TestRegister) other = test_register_new_uncertified ();
  g_autoptr (GBytes) raw = g_bytes_new (other->pk, TALLY_PUBLIC_KEY_BYTES);
  write_file (f, "other.pub", raw);
  g_auto (Run) by_file = RUN (f, "certify", "--account", "alice", "--key-file", "other.pub",
                              "--out", "other.cert");
  expect_ok (&by_file);

  g_autofree char *id_hex = tally_hex_encode (reg->id, TALLY_ID_BYTES);
  g_auto (Run) v = RUN (f, "voucher", "--register", id_hex, "--amount", "25.50", "--out", "v.bin");
  expect_ok (&v);
  g_autoptr (GBytes) voucher = read_file (f, "v.bin");
  g_autoptr (Tally__SignedEnvelope) v_env = test_envelope (voucher);
  g_autoptr (Tally__LoadVoucher) lv = tally_voucher_verify (v_env, pk, &error);
  g_assert_no_error (error);
  g_assert_cmpint (lv->amount->value, ==, 2550);
  g_assert_cmpuint (lv->sequence, ==, 1);
  g_assert_cmpmem (lv->register_id.data, lv->register_id.len, reg->id, TALLY_ID_BYTES);

  g_auto (Run) overdraft =
    RUN (f, "voucher", "--register", id_hex, "--amount", "80.00", "--out", "v2.bin");
  expect_failure (&overdraft, 1, "alice");
  g_auto (Run) bal2 = RUN (f, "balance", "alice");
  g_assert_cmpstr (bal2.out, ==, "74.50 EUR\n");

  g_auto (Run) audit = RUN (f, "audit", "--json");
  expect_ok (&audit);
  g_assert_nonnull (strstr (audit.out, "\"currency\": \"EUR\""));
  g_assert_nonnull (strstr (audit.out, "\"issued\": 10000,"));
  g_assert_nonnull (strstr (audit.out, "\"online\": 7450,"));
  g_assert_nonnull (strstr (audit.out, "\"offline\": 2550,"));
  g_assert_nonnull (strstr (audit.out, "\"registers\": 2,"));
  g_assert_nonnull (strstr (audit.out, "\"balanced\": true"));

  g_auto (Run) text = RUN (f, "audit");
  expect_ok (&text);
  g_assert_nonnull (strstr (text.out, "100.00 EUR"));
}

static void
test_cli_reconciles_and_reports_fraud (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  guint8 pk[TALLY_PUBLIC_KEY_BYTES];
  issuer_key (f, pk);
  g_auto (Run) a1 = RUN (f, "account-create", "alice");
  g_auto (Run) a2 = RUN (f, "account-create", "bob");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "50.00");
  expect_ok (&dep);
  g_autoptr (TestRegister) a = certify_register (f, "alice", "a.cert");
  g_autoptr (TestRegister) b = certify_register (f, "bob", "b.cert");
  g_autofree char *a_hex = tally_hex_encode (a->id, TALLY_ID_BYTES);
  g_auto (Run) v = RUN (f, "voucher", "--register", a_hex, "--amount", "30", "--out", "va.bin");
  expect_ok (&v);
  g_autoptr (GBytes) voucher = read_file (f, "va.bin");

  /* Alice pays Bob 10.00, then defunds the remaining 20.00. */
  g_autoptr (GBytes) p1 = test_permission (a, b, 1000);
  g_autoptr (GBytes) r1 = test_receipt (b, p1);
  g_autoptr (GBytes) d2 = test_defund (a, 2000);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p1, r1);
  test_bundle_add_spent (ba, d2, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  write_file (f, "bundle-a.bin", bundle_a);

  g_auto (Run) rec = RUN (f, "reconcile", "bundle-a.bin", "--out", "result-a.bin");
  expect_ok (&rec);
  g_assert_nonnull (strstr (rec.out, a_hex));
  g_assert_nonnull (strstr (rec.out, "spent 1 new"));
  g_assert_nonnull (strstr (rec.out, "defunds 1"));
  g_autoptr (GBytes) result = read_file (f, "result-a.bin");
  g_autoptr (Tally__SignedEnvelope) res_env = test_envelope (result);
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_envelope_verify (
    res_env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT, pk, &error));
  g_assert_no_error (error);

  g_auto (Run) bal = RUN (f, "balance", "alice");
  g_assert_cmpstr (bal.out, ==, "40.00 EUR\n");

  /* Bob reports a second permission Alice signed with counter 1 again. */
  guint8 genesis[TALLY_HASH_BYTES];
  tally_chain_genesis (a->id, genesis);
  g_autoptr (GBytes) again =
    test_sign_permission (a->sk, a->id, b->id, "EUR", 500, 1, genesis, TEST_EXPIRES_AT);
  g_autoptr (GBytes) r_again = test_receipt (b, again);
  g_autoptr (TestBundle) bb = test_bundle_new (b);
  test_bundle_add_received (bb, a->cert, p1, r1);
  test_bundle_add_received (bb, a->cert, again, r_again);
  g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
  write_file (f, "bundle-b.bin", bundle_b);
  g_auto (Run) rec_b = RUN (f, "reconcile", "bundle-b.bin", "--out", "result-b.bin");
  expect_ok (&rec_b);
  g_assert_nonnull (strstr (rec_b.out, "fraud proofs 1"));

  g_auto (Run) proofs = RUN (f, "fraud-proofs", "--json");
  expect_ok (&proofs);
  g_autofree char *expect_id = g_strdup_printf ("\"register_id\": \"%s\"", a_hex);
  g_assert_true (g_str_has_prefix (proofs.out, "[\n  {"));
  g_assert_nonnull (strstr (proofs.out, expect_id));
  g_assert_nonnull (strstr (proofs.out, "\"kind\": \"counter-reused\""));
  g_assert_nonnull (strstr (proofs.out, "\"proof\": \""));

  /* Alice spent 5.00 she did not have: exposure, so the audit fails,
   * and names her register with the proof behind the figure. */
  g_auto (Run) audit = RUN (f, "audit", "--json");
  g_assert_cmpint (audit.status, ==, 1);
  g_assert_nonnull (strstr (audit.out, "\"fraud_exposure\": 500,"));
  g_assert_nonnull (strstr (audit.out, "\"revoked\": 1,"));
  g_assert_nonnull (strstr (audit.out, "\"identity\": true"));
  g_assert_nonnull (strstr (audit.out, "\"balanced\": false"));
  g_autofree char *flagged =
    g_strdup_printf ("{\"register_id\": \"%s\", \"account\": \"alice\", \"revoked\": true, "
                     "\"view\": -500, \"exposure\": 500,",
                     a_hex);
  g_assert_nonnull (strstr (audit.out, flagged));
  g_assert_nonnull (strstr (audit.out, "\"proof_kinds\": [\"counter-reused\"]}"));
  g_auto (Run) audit_text = RUN (f, "audit");
  g_assert_cmpint (audit_text.status, ==, 1);
  g_assert_nonnull (strstr (audit_text.out, "fraud exposure  5.00 EUR\n"));
  g_assert_nonnull (strstr (audit_text.out, "identity        holds"));
  g_assert_nonnull (strstr (audit_text.out, "balanced        NO"));
  g_assert_nonnull (strstr (audit_text.out, "(alice) revoked: exposure 5.00 EUR"));

  g_auto (Run) list = RUN (f, "revocations", "--out", "revoked.bin");
  expect_ok (&list);
  g_autoptr (GBytes) list_bytes = read_file (f, "revoked.bin");
  g_autoptr (Tally__SignedEnvelope) list_env = test_envelope (list_bytes);
  g_autoptr (Tally__RevocationList) rl = tally_revocation_list_verify (list_env, pk, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rl->serial, ==, 2);
  g_assert_true (tally_revocation_list_contains (rl, a->id));

  g_autofree char *b_hex = tally_hex_encode (b->id, TALLY_ID_BYTES);
  g_auto (Run) rev = RUN (f, "revoke", b_hex);
  expect_ok (&rev);
  g_auto (Run) list2 = RUN (f, "revocations", "--out", "revoked2.bin");
  expect_ok (&list2);
  g_assert_nonnull (strstr (list2.out, "revocation list 3 with 2 revoked"));
}

/* Starts the CLI on the fixture's issuer without waiting for it. */
static GPid
spawn_cli (Fixture *f, const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) cli_path);
  for (; *args; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  g_auto (GStrv) envp = g_environ_setenv (g_get_environ (), "TALLY_ISSUER_DIR", f->dir, TRUE);
  GPid pid = 0;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_spawn_async (f->tmp, (char **) argv->pdata, envp,
                                G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                                &pid, &error));
  g_assert_no_error (error);
  return pid;
}

static void
expect_exit_0 (GPid pid)
{
  int wait_status = 0;
  g_assert_cmpint (waitpid (pid, &wait_status, 0), ==, pid);
  g_assert_true (WIFEXITED (wait_status));
  g_assert_cmpint (WEXITSTATUS (wait_status), ==, 0);
  g_spawn_close_pid (pid);
}

/* Two tally-issuer processes started together on one store, one with the
 * payer's and one with the payee's half of each payment: every payment is
 * booked once and the books balance, whichever process wins each race. */
static void
test_cli_two_processes_book_each_payment_once (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) a1 = RUN (f, "account-create", "alice");
  g_auto (Run) a2 = RUN (f, "account-create", "bob");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "50.00");
  expect_ok (&dep);
  g_autoptr (TestRegister) a = certify_register (f, "alice", "a.cert");
  g_autoptr (TestRegister) b = certify_register (f, "bob", "b.cert");
  g_autofree char *a_hex = tally_hex_encode (a->id, TALLY_ID_BYTES);
  g_auto (Run) v = RUN (f, "voucher", "--register", a_hex, "--amount", "30", "--out", "va.bin");
  expect_ok (&v);
  g_autoptr (GBytes) voucher = read_file (f, "va.bin");

  enum
  {
    ROUNDS = 4
  };
  for (guint i = 0; i < ROUNDS; i++) {
    g_autoptr (GBytes) perm = test_permission (a, b, 100);
    g_autoptr (GBytes) receipt = test_receipt (b, perm);
    g_autoptr (TestBundle) ba = test_bundle_new (a);
    if (i == 0)
      test_bundle_add_voucher (ba, voucher);
    test_bundle_add_spent (ba, perm, NULL);
    g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
    write_file (f, "race-a.bin", bundle_a);
    g_autoptr (TestBundle) bb = test_bundle_new (b);
    test_bundle_add_received (bb, a->cert, perm, receipt);
    g_autoptr (GBytes) bundle_b = test_bundle_sign (bb);
    write_file (f, "race-b.bin", bundle_b);

    GPid payer = spawn_cli (
      f, (const char *const[]){ "reconcile", "race-a.bin", "--out", "result-a.bin", NULL });
    GPid payee = spawn_cli (
      f, (const char *const[]){ "reconcile", "race-b.bin", "--out", "result-b.bin", NULL });
    expect_exit_0 (payer);
    expect_exit_0 (payee);
  }

  g_auto (Run) audit = RUN (f, "audit", "--json");
  expect_ok (&audit);
  g_assert_nonnull (strstr (audit.out, "\"in_flight\": 0,"));
  g_assert_nonnull (strstr (audit.out, "\"offline\": 3000,"));
  g_assert_nonnull (strstr (audit.out, "\"views_unbacked\": 0,"));
  g_assert_nonnull (strstr (audit.out, "\"balanced\": true"));
  g_auto (Run) bal = RUN (f, "balance", "alice");
  g_assert_cmpstr (bal.out, ==, "20.00 EUR\n");
}

/* Runs @sql on the issuer's store behind the issuer's back. */
static void
tamper (Fixture *f, const char *sql)
{
  if (test_store_is_pg ()) {
    g_free (test_pg_run (f->spec + strlen ("postgresql:"), sql));
    return;
  }
  g_autofree char *db_path = g_build_filename (f->dir, "issuer.db", NULL);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (db_path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
}

/* The currency exponent the store records, or NULL without one. */
static char *
stored_exponent (Fixture *f)
{
  if (test_store_is_pg ()) {
    char *out =
      test_pg_run (f->spec + strlen ("postgresql:"), "SELECT convert_from(value, 'UTF8') FROM meta "
                                                     "WHERE key = 'currency-exponent'");
    return out != NULL ? g_strstrip (out) : NULL;
  }
  g_autofree char *db_path = g_build_filename (f->dir, "issuer.db", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  g_assert_cmpint (sqlite3_open (db_path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "SELECT CAST(value AS TEXT) FROM meta "
                                       "WHERE key = 'currency-exponent'",
                                       -1, &st, NULL),
                   ==, SQLITE_OK);
  char *out = NULL;
  if (sqlite3_step (st) == SQLITE_ROW)
    out = g_strdup ((const char *) sqlite3_column_text (st, 0));
  sqlite3_finalize (st);
  sqlite3_close (db);
  return out;
}

static void
init_issuer_in (Fixture *f, const char *currency)
{
  f->spec = test_store_spec_new ();
  g_auto (Run) r = test_store_is_pg ()
                     ? RUN (f, "init", "--name", "Bank", "--currency", currency, "--store", f->spec)
                     : RUN (f, "init", "--name", "Bank", "--currency", currency);
  expect_ok (&r);
}

/* A store made before exponents were recorded counted every currency in
 * hundredths: for JPY (exponent 0) every amount would change meaning, so
 * it is refused with a way forward, and nothing in it changes. */
static void
test_cli_refuses_store_without_exponent_of_non_cent_currency (Fixture *f, gconstpointer data)
{
  init_issuer_in (f, "JPY");
  g_autofree char *recorded = stored_exponent (f);
  g_assert_cmpstr (recorded, ==, "0");
  g_auto (Run) a1 = RUN (f, "account-create", "alice");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "1000");
  expect_ok (&dep);

  tamper (f, "DELETE FROM meta WHERE key = 'currency-exponent'");
  g_auto (Run) bal = RUN (f, "balance", "alice");
  expect_failure (&bal, 1, "predates recorded currency exponents");
  g_assert_nonnull (strstr (bal.err, "docs/issuer-store.md"));
  g_autofree char *after = stored_exponent (f);
  g_assert_null (after);

  /* Recorded by hand, once the operator knows the amounts are in yen. */
  tamper (f, test_store_is_pg ()
               ? "INSERT INTO meta (key, value) VALUES ('currency-exponent', '\\x30')"
               : "INSERT INTO meta (key, value) VALUES ('currency-exponent', CAST('0' AS BLOB))");
  g_auto (Run) again = RUN (f, "balance", "alice");
  expect_ok (&again);
  g_assert_cmpstr (again.out, ==, "1000 JPY\n");

  /* An exponent the currency does not have is refused too. */
  tamper (f, test_store_is_pg ()
               ? "UPDATE meta SET value = '\\x32' WHERE key = 'currency-exponent'"
               : "UPDATE meta SET value = CAST('2' AS BLOB) WHERE key = 'currency-exponent'");
  g_auto (Run) wrong = RUN (f, "balance", "alice");
  expect_failure (&wrong, 1, "counts JPY in 10^-2 units");
}

/* For a currency counted in hundredths nothing changes: the store opens
 * and the exponent is recorded. */
static void
test_cli_records_exponent_of_cent_currency_store (Fixture *f, gconstpointer data)
{
  init_issuer_in (f, "EUR");
  g_auto (Run) a1 = RUN (f, "account-create", "alice");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "10.00");
  expect_ok (&dep);
  tamper (f, "DELETE FROM meta WHERE key = 'currency-exponent'");
  g_autofree char *none = stored_exponent (f);
  g_assert_null (none);
  g_auto (Run) bal = RUN (f, "balance", "alice");
  expect_ok (&bal);
  g_assert_cmpstr (bal.out, ==, "10.00 EUR\n");
  g_autofree char *recorded = stored_exponent (f);
  g_assert_cmpstr (recorded, ==, "2");
}

static void
test_cli_audit_fails_when_books_do_not_balance (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) acct = RUN (f, "account-create", "alice");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "10");
  expect_ok (&dep);

  /* Money appearing behind the issuer's back must show. */
  tamper (f, "UPDATE accounts SET balance = balance + 1");

  g_auto (Run) audit = RUN (f, "audit", "--json");
  g_assert_cmpint (audit.status, ==, 1);
  g_assert_nonnull (strstr (audit.out, "\"balanced\": false"));
  g_auto (Run) text = RUN (f, "audit");
  g_assert_cmpint (text.status, ==, 1);
  g_assert_nonnull (strstr (text.out, "NO"));
}

static void
test_cli_reports_reclaim_and_late_receipt (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_auto (Run) help = RUN (f, "--help");
  expect_ok (&help);
  g_assert_nonnull (strstr (help.out, "late-receipt"));
  g_assert_nonnull (strstr (help.out, "reclaim"));

  g_auto (Run) a1 = RUN (f, "account-create", "alice");
  g_auto (Run) a2 = RUN (f, "account-create", "bob");
  g_auto (Run) dep = RUN (f, "deposit", "alice", "50.00");
  expect_ok (&dep);
  g_autoptr (TestRegister) a = certify_register (f, "alice", "a.cert");
  g_autoptr (TestRegister) b = certify_register (f, "bob", "b.cert");
  g_autofree char *a_hex = tally_hex_encode (a->id, TALLY_ID_BYTES);
  g_autofree char *b_hex = tally_hex_encode (b->id, TALLY_ID_BYTES);
  g_auto (Run) v = RUN (f, "voucher", "--register", a_hex, "--amount", "30", "--out", "va.bin");
  expect_ok (&v);

  /* Alice's payment to Bob is lost and expires; Bob's register, restored
   * from a copy, reconciles without it; the copy that credited it shows up. */
  g_autoptr (GBytes) p = test_permission_expiring (a, b, 1000, TEST_NOW + 100);
  g_autoptr (GBytes) r = test_receipt (b, p);
  g_autoptr (TestBundle) ba = test_bundle_new (a);
  test_bundle_add_spent (ba, p, NULL);
  g_autoptr (GBytes) bundle_a = test_bundle_sign (ba);
  write_file (f, "bundle-a.bin", bundle_a);
  g_autoptr (TestBundle) restored = test_bundle_new_at (b, TEST_NOW + 200);
  g_autoptr (GBytes) bundle_b1 = test_bundle_sign (restored);
  write_file (f, "bundle-b1.bin", bundle_b1);
  g_autoptr (TestBundle) cloned = test_bundle_new_at (b, TEST_NOW + 300);
  test_bundle_add_received (cloned, a->cert, p, r);
  g_autoptr (GBytes) bundle_b2 = test_bundle_sign (cloned);
  write_file (f, "bundle-b2.bin", bundle_b2);

  g_auto (Run) rec_a = RUN (f, "reconcile", "bundle-a.bin", "--out", "result-a.bin");
  expect_ok (&rec_a);
  g_assert_nonnull (strstr (rec_a.out, "reclaimed 0 expired permission(s) in flight (0.00 EUR)"));

  g_auto (Run) rec_b1 = RUN (f, "reconcile", "bundle-b1.bin", "--out", "result-b1.bin");
  expect_ok (&rec_b1);
  g_assert_nonnull (strstr (rec_b1.out, "reclaimed 1 expired permission(s) in flight (10.00 EUR)"));
  g_assert_nonnull (strstr (rec_b1.out, "late receipts 0"));
  g_auto (Run) bal = RUN (f, "balance", "alice");
  g_assert_cmpstr (bal.out, ==, "30.00 EUR\n");

  g_auto (Run) rec_a2 = RUN (f, "reconcile", "bundle-a.bin", "--out", "result-a2.bin");
  expect_ok (&rec_a2);
  g_assert_nonnull (strstr (rec_a2.out, "result: 1 own permission(s) reclaimed"));

  g_auto (Run) rec_b2 = RUN (f, "reconcile", "bundle-b2.bin", "--out", "result-b2.bin");
  expect_ok (&rec_b2);
  g_assert_nonnull (strstr (rec_b2.out, b_hex));
  g_assert_nonnull (strstr (rec_b2.out, "late receipts 1"));
  g_assert_nonnull (strstr (rec_b2.out, "fraud proofs 1"));
  g_assert_nonnull (strstr (rec_b2.out, "REVOKED"));

  g_auto (Run) proofs = RUN (f, "fraud-proofs", "--json");
  expect_ok (&proofs);
  g_autofree char *expect_id = g_strdup_printf ("\"register_id\": \"%s\"", b_hex);
  g_assert_nonnull (strstr (proofs.out, expect_id));
  g_assert_nonnull (strstr (proofs.out, "\"kind\": \"late-receipt\""));
  g_auto (Run) proofs_text = RUN (f, "fraud-proofs");
  expect_ok (&proofs_text);
  g_assert_nonnull (strstr (proofs_text.out, "late-receipt"));

  /* Bob's register holds the 10.00 Alice had back: exposure, and the
   * offline value his register holds beyond the issuer's view. */
  g_auto (Run) audit = RUN (f, "audit", "--json");
  g_assert_cmpint (audit.status, ==, 1);
  g_assert_nonnull (strstr (audit.out, "\"online\": 3000,"));
  g_assert_nonnull (strstr (audit.out, "\"offline\": 3000,"));
  g_assert_nonnull (strstr (audit.out, "\"in_flight\": 0,"));
  g_assert_nonnull (strstr (audit.out, "\"fraud_exposure\": 1000,"));
  g_assert_nonnull (strstr (audit.out, "\"reclaimed\": 1000,"));
  g_assert_nonnull (strstr (audit.out, "\"reclaimed_permissions\": 1,"));
  g_assert_nonnull (strstr (audit.out, "\"revoked\": 1,"));
  g_assert_nonnull (strstr (audit.out, "\"identity\": true"));
  g_assert_nonnull (strstr (audit.out, "\"balanced\": false"));
  g_assert_nonnull (strstr (audit.out, "\"proof_kinds\": [\"late-receipt\"]}"));
  g_auto (Run) text = RUN (f, "audit");
  g_assert_cmpint (text.status, ==, 1);
  g_assert_nonnull (strstr (text.out, "reclaimed       10.00 EUR in 1 expired permission(s)"));
}

static void
test_cli_init_refuses_unknown_store (Fixture *f, gconstpointer data)
{
  g_auto (Run) unknown =
    RUN (f, "init", "--name", "x", "--currency", "EUR", "--store", "mysql:password=secret");
  expect_failure (&unknown, 2, "unknown store \"mysql\"");
  g_assert_null (strstr (unknown.err, "secret"));
  g_auto (Run) empty =
    RUN (f, "init", "--name", "x", "--currency", "EUR", "--store", "postgresql:");
  expect_failure (&empty, 2, "needs a connection string");
  g_assert_false (g_file_test (f->dir, G_FILE_TEST_EXISTS));
}

/* The store chosen at init is recorded in the directory, readable by its
 * owner only, and every later command uses it. */
static void
test_cli_init_records_store_for_later_commands (Fixture *f, gconstpointer data)
{
  init_issuer (f);
  g_autofree char *conf = g_build_filename (f->dir, "issuer.conf", NULL);
  g_autofree char *db = g_build_filename (f->dir, "issuer.db", NULL);
  if (test_store_is_pg ()) {
    struct stat st;
    g_assert_cmpint (g_stat (conf, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
    g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
  } else {
    g_assert_false (g_file_test (conf, G_FILE_TEST_EXISTS));
    g_assert_true (g_file_test (db, G_FILE_TEST_EXISTS));
  }
  g_auto (Run) account = RUN (f, "account-create", "carol");
  expect_ok (&account);
  g_auto (Run) deposit = RUN (f, "deposit", "carol", "12.50");
  expect_ok (&deposit);
  g_auto (Run) balance = RUN (f, "balance", "carol");
  expect_ok (&balance);
  g_assert_nonnull (strstr (balance.out, "12.50"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  if (argc < 2) {
    g_printerr ("usage: %s PATH-TO-TALLY-ISSUER\n", argv[0]);
    return 2;
  }
  /* Children run in a scratch directory: resolve against ours now. */
  cli_path = g_canonicalize_filename (argv[1], NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/issuer/cli/help-lists-every-command-with-examples", test_cli_help_lists_every_command);
  ADD ("/issuer/cli/usage-errors-exit-2", test_cli_usage_errors_exit_2);
  ADD ("/issuer/cli/jpy-amounts-have-no-decimals", test_cli_jpy_amounts_have_no_decimals);
  ADD ("/issuer/cli/init-refuses-unknown-store", test_cli_init_refuses_unknown_store);
  ADD ("/issuer/cli/init-records-store-for-later-commands",
       test_cli_init_records_store_for_later_commands);
  ADD ("/issuer/cli/certifies-display-name", test_cli_certifies_display_name);
  ADD ("/issuer/cli/lost-register-waits-for-refund-window",
       test_cli_lost_register_waits_for_refund_window);
  ADD ("/issuer/cli/prune-keeps-young-answers", test_cli_prune_keeps_young_answers);
  ADD ("/issuer/cli/runs-accounts-certificates-and-vouchers",
       test_cli_runs_accounts_certificates_and_vouchers);
  ADD ("/issuer/cli/reconciles-and-reports-fraud", test_cli_reconciles_and_reports_fraud);
  ADD ("/issuer/cli/refuses-store-without-exponent-of-non-cent-currency",
       test_cli_refuses_store_without_exponent_of_non_cent_currency);
  ADD ("/issuer/cli/records-exponent-of-cent-currency-store",
       test_cli_records_exponent_of_cent_currency_store);
  ADD ("/issuer/cli/audit-fails-when-books-do-not-balance",
       test_cli_audit_fails_when_books_do_not_balance);
  ADD ("/issuer/cli/reports-reclaim-and-late-receipt", test_cli_reports_reclaim_and_late_receipt);
  ADD ("/issuer/cli/two-processes-book-each-payment-once",
       test_cli_two_processes_book_each_payment_once);
#undef ADD

  int status = g_test_run ();
  g_free (cli_path);
  return status;
}
