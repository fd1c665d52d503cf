/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd (path in argv[1]) killed with SIGKILL at every commit point
 * of a reconciliation and of a voucher sale (TALLY_ISSUER_CRASH_AT, a test
 * hook), restarted without the hook, and the same request retried: the
 * books end exactly as after an uninterrupted run, the audit identity
 * holds, nothing is booked twice and nothing is lost.  Runs on the store
 * under test (SQLite, or PostgreSQL through with-postgresql.sh).
 */
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include "issuerd-test-util.h"
#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-issuer-store.h"

#define DEPOSIT   10000
#define LOADED    5000
#define PAID      1500
#define DEFUNDED  1000
#define VOUCHER   2500
#define KILL_WAIT (20 * G_USEC_PER_SEC)

static const char *issuerd_path;

/* --- the daemon --- */

typedef struct
{
  char *tmp;
  char *conf;
  char *port_file;
  GSubprocess *proc;
  char *base;
  SoupSession *session;
} Daemon;

/* A daemon outlives no test that aborts: meson would wait for its output. */
static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
daemon_start (Daemon *d, const char *crash_at)
{
  g_autoptr (GError) error = NULL;
  g_unlink (d->port_file);
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  if (crash_at != NULL)
    g_subprocess_launcher_setenv (launcher, "TALLY_ISSUER_CRASH_AT", crash_at, TRUE);
  else
    g_subprocess_launcher_unsetenv (launcher, "TALLY_ISSUER_CRASH_AT");
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  d->proc = g_subprocess_launcher_spawn (launcher, &error, issuerd_path, "--config", d->conf,
                                         "--port-file", d->port_file, NULL);
  g_assert_no_error (error);
  for (guint i = 0; i < 400; i++) {
    g_autofree char *text = NULL;
    if (g_file_get_contents (d->port_file, &text, NULL, NULL) && strchr (text, '\n') != NULL) {
      d->base = g_strdup_printf ("http://127.0.0.1:%u", (guint) g_ascii_strtoull (text, NULL, 10));
      d->session = soup_session_new_with_options ("timeout", 30, NULL);
      return;
    }
    g_usleep (25 * 1000);
  }
  g_error ("tally-issuerd did not start");
}

static void
daemon_forget (Daemon *d)
{
  g_clear_object (&d->session);
  g_clear_object (&d->proc);
  g_clear_pointer (&d->base, g_free);
}

/* SIGTERM: a clean exit. */
static void
daemon_stop (Daemon *d)
{
  g_autoptr (GError) error = NULL;
  g_subprocess_send_signal (d->proc, SIGTERM);
  g_assert_true (g_subprocess_wait (d->proc, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (d->proc));
  g_assert_cmpint (g_subprocess_get_exit_status (d->proc), ==, 0);
  daemon_forget (d);
}

static void
wait_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
}

/* The hook fired: the process died of SIGKILL (its wait status says so),
 * and nothing else in it sends that signal.  A point never reached leaves
 * the process running, and the test fails here. */
static void
daemon_assert_killed (Daemon *d, const char *point)
{
  gboolean done = FALSE;
  g_subprocess_wait_async (d->proc, NULL, wait_done, &done);
  gint64 deadline = g_get_monotonic_time () + KILL_WAIT;
  while (!done && g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (10 * 1000);
  if (!done) {
    g_subprocess_force_exit (d->proc);
    g_error ("tally-issuerd was not killed at %s: the point was never reached", point);
  }
  g_assert_true (g_subprocess_get_if_signaled (d->proc));
  g_assert_cmpint (g_subprocess_get_term_sig (d->proc), ==, SIGKILL);
  daemon_forget (d);
}

typedef struct
{
  guint status; /* 0: no answer (the connection died) */
  GBytes *body;
  char *repeated;
} Answer;

static void
answer_clear (Answer *a)
{
  g_clear_pointer (&a->body, g_bytes_unref);
  g_clear_pointer (&a->repeated, g_free);
  a->status = 0;
}

static Answer
daemon_post (Daemon *d, const char *path, const char *token, const char *type, GBytes *body)
{
  g_autofree char *url = g_strconcat (d->base, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new ("POST", url);
  if (token != NULL) {
    g_autofree char *auth = g_strconcat ("Bearer ", token, NULL);
    soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
  }
  soup_message_set_request_body_from_bytes (msg, type, body);
  g_autoptr (GError) error = NULL;
  Answer a = { 0 };
  a.body = soup_session_send_and_read (d->session, msg, NULL, &error);
  if (a.body == NULL)
    return a;
  a.status = soup_message_get_status (msg);
  a.repeated = g_strdup (
    soup_message_headers_get_one (soup_message_get_response_headers (msg), "X-Tally-Repeated"));
  return a;
}

/* --- the books --- */

typedef struct
{
  char *tmp;
  char *dir;
  char *spec; /* the store under test */
  Daemon daemon;
  TestRegister *a; /* alice's: loaded, pays b, defunds */
  TestRegister *b; /* bob's: receives */
  GBytes *bundle_a;
  GBytes *bundle_b;
  char *alice_token; /* hex */
} Books;

static TestRegister *
register_new (TallyIssuer *issuer, const char *account, guint64 now)
{
  TestRegister *reg = test_register_new_uncertified ();
  Tally__Limits limits;
  test_default_limits (&limits);
  g_autoptr (GError) error = NULL;
  /* The daemon runs on the real clock: certified from now. */
  reg->cert =
    tally_issuer_certify (issuer, reg->pk, account, NULL, &limits, now, now + 30 * 86400, &error);
  g_assert_no_error (error);
  return reg;
}

static void
account_new (TallyIssuer *issuer, const char *name, char **token_hex)
{
  g_autoptr (GError) error = NULL;
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (tally_issuer_account_create_with_token (issuer, name, NULL, token, &error));
  g_assert_no_error (error);
  g_assert_true (tally_issuer_deposit (issuer, name, DEPOSIT, &error));
  g_assert_no_error (error);
  if (token_hex != NULL)
    *token_hex = tally_hex_encode (token, sizeof token);
}

/* An issuer on the store under test with alice and bob, a register each,
 * alice's loaded; a's bundle spends to b and defunds, b's receives. */
static void
books_setup (Books *k)
{
  g_autoptr (GError) error = NULL;
  k->tmp = g_dir_make_tmp ("tally-issuerd-kill-XXXXXX", &error);
  g_assert_no_error (error);
  k->dir = g_build_filename (k->tmp, "issuer", NULL);
  k->spec = test_store_spec_new ();
  g_autoptr (TallyIssuer) issuer =
    tally_issuer_create_with_store (k->dir, k->spec, "Test Bank", "EUR", TEST_NOW, &error);
  g_assert_no_error (error);
  guint64 now = tally_now ();
  account_new (issuer, "alice", &k->alice_token);
  account_new (issuer, "bob", NULL);
  k->a = register_new (issuer, "alice", now);
  k->b = register_new (issuer, "bob", now);

  g_autoptr (GBytes) voucher = tally_issuer_sell_voucher (issuer, k->a->id, LOADED, now, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) p = test_permission_expiring (k->a, k->b, PAID, now + 3600);
  g_autoptr (GBytes) r = test_receipt (k->b, p);
  g_autoptr (GBytes) defund = test_defund (k->a, DEFUNDED);
  g_autoptr (TestBundle) ba = test_bundle_new_at (k->a, now);
  test_bundle_add_voucher (ba, voucher);
  test_bundle_add_spent (ba, p, r);
  test_bundle_add_spent (ba, defund, NULL);
  k->bundle_a = test_bundle_sign (ba);
  g_autoptr (TestBundle) bb = test_bundle_new_at (k->b, now);
  test_bundle_add_received (bb, k->a->cert, p, r);
  k->bundle_b = test_bundle_sign (bb);

  Daemon *d = &k->daemon;
  d->conf = g_build_filename (k->tmp, "issuerd.conf", NULL);
  d->port_file = g_build_filename (k->tmp, "port", NULL);
  g_assert_true (g_file_set_contents (d->conf, "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n",
                                      -1, &error));
  g_assert_no_error (error);
}

static void
books_teardown (Books *k)
{
  test_remove_tree (k->tmp);
  g_free (k->tmp);
  g_free (k->dir);
  g_free (k->spec);
  g_free (k->daemon.conf);
  g_free (k->daemon.port_file);
  test_register_free (k->a);
  test_register_free (k->b);
  g_bytes_unref (k->bundle_a);
  g_bytes_unref (k->bundle_b);
  g_free (k->alice_token);
}

/* A result, without what differs between two issuers and two runs (ids,
 * keys, signatures, the clock). */
static void
describe_result (GString *out, TallyIssuer *issuer, const char *who, GBytes *result)
{
  g_autoptr (Tally__ReconciliationResult) res = test_result_open (issuer, result);
  g_string_append_printf (out,
                          "%s: settled %" G_GUINT64_FORMAT " voucher %" G_GUINT64_FORMAT
                          " received %zu reclaimed %zu receipts %zu proofs %zu revoked %d "
                          "renewed %d\n",
                          who, res->settled_counter, res->settled_voucher_sequence,
                          res->n_settled_received, res->n_reclaimed, res->n_receipts,
                          res->n_fraud_proofs, res->revoked, res->renewed_certificate != NULL);
}

/* Everything the books say after both bundles, from the store itself. */
static char *
describe_books (Books *k, GBytes *result_a, GBytes *result_b)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = tally_issuer_open (k->dir, &error);
  g_assert_no_error (error);
  TallyAudit audit;
  g_assert_true (tally_issuer_audit (issuer, &audit, &error));
  g_assert_no_error (error);
  g_assert_true (audit.identity);
  gint64 alice, bob;
  g_assert_true (tally_issuer_account_balance (issuer, "alice", &alice, &error));
  g_assert_true (tally_issuer_account_balance (issuer, "bob", &bob, &error));
  g_assert_no_error (error);

  GString *out = g_string_new (NULL);
  /* Each register's view: what the issuer holds it owns, its own spends
   * and loads and its payees' credits. */
  g_autofree char *db = g_build_filename (k->dir, "issuer.db", NULL);
  g_autoptr (TallyIssuerStore) store = tally_issuer_store_open (k->spec, db, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_store_begin (store, &error));
  const TestRegister *regs[] = { k->a, k->b };
  for (guint i = 0; i < G_N_ELEMENTS (regs); i++) {
    g_auto (TallyIssuerRegisterRow) row = { 0 };
    g_assert_true (tally_issuer_store_register_get (store, regs[i]->id, &row, &error));
    g_assert_no_error (error);
    g_string_append_printf (out, "view %c %" G_GINT64_FORMAT " serial %" G_GUINT64_FORMAT "\n",
                            "ab"[i], row.view_balance, (guint64) row.cert_serial);
  }
  tally_issuer_store_rollback (store);
  describe_result (out, issuer, "a", result_a);
  describe_result (out, issuer, "b", result_b);
  g_string_append_printf (
    out,
    "alice %" G_GINT64_FORMAT " bob %" G_GINT64_FORMAT " issued %" G_GINT64_FORMAT
    " online %" G_GINT64_FORMAT " offline %" G_GINT64_FORMAT " in_flight %" G_GINT64_FORMAT
    " exposure %" G_GINT64_FORMAT " awaiting %" G_GINT64_FORMAT " refused %" G_GINT64_FORMAT
    " registers %u revoked %u proofs %u\n",
    alice, bob, audit.issued, audit.online, audit.offline, audit.in_flight, audit.fraud_exposure,
    audit.awaiting, audit.refused, (guint) audit.registers, (guint) audit.revoked,
    (guint) audit.fraud_proofs);
  return g_string_free (out, FALSE);
}

/* --- reconciliation --- */

/* Posts @bundle to a daemon without the hook: answered, and a second
 * time from what was kept. */
static GBytes *
reconcile_and_repeat (Daemon *d, GBytes *bundle, const char *repeated)
{
  Answer first = daemon_post (d, "/v1/reconcile", NULL, "application/x-protobuf", bundle);
  g_assert_cmpuint (first.status, ==, SOUP_STATUS_OK);
  g_assert_cmpstr (first.repeated, ==, repeated);
  Answer again = daemon_post (d, "/v1/reconcile", NULL, "application/x-protobuf", bundle);
  g_assert_cmpuint (again.status, ==, SOUP_STATUS_OK);
  g_assert_cmpstr (again.repeated, ==, "yes");
  g_assert_true (g_bytes_equal (first.body, again.body));
  answer_clear (&again);
  g_free (first.repeated);
  return first.body;
}

/* Whether a kill at @point leaves the operation committed. */
static gboolean
committed_at (const char *point)
{
  return g_str_has_suffix (point, ":committed") || g_str_has_suffix (point, ":answered");
}

/* Both bundles through tally-issuerd; with @point, the process is killed
 * there during the reconciliation of a's bundle (@victim 'a': the payer's
 * half first) or of b's (@victim 'b': the half that completes the match),
 * then restarted and the same bundle sent again. */
static char *
run_reconcile (const char *point, char victim)
{
  Books k = { 0 };
  books_setup (&k);
  Daemon *d = &k.daemon;
  g_autoptr (GBytes) result_a = NULL;
  g_autoptr (GBytes) result_b = NULL;

  if (point != NULL && victim == 'b') {
    daemon_start (d, NULL);
    result_a = reconcile_and_repeat (d, k.bundle_a, "no");
    daemon_stop (d);
  }
  GBytes *target = victim == 'a' ? k.bundle_a : k.bundle_b;
  Answer before = { 0 };
  if (point != NULL) {
    daemon_start (d, point);
    before = daemon_post (d, "/v1/reconcile", NULL, "application/x-protobuf", target);
    daemon_assert_killed (d, point);
    /* Only a kill after the answer lets the answer through. */
    g_assert_cmpuint (before.status, ==,
                      g_str_has_suffix (point, ":answered") ? SOUP_STATUS_OK : 0);
  }

  daemon_start (d, NULL);
  const char *repeated = point != NULL && committed_at (point) ? "yes" : "no";
  if (result_a == NULL)
    result_a = reconcile_and_repeat (d, k.bundle_a, victim == 'a' ? repeated : "no");
  result_b = reconcile_and_repeat (d, k.bundle_b, victim == 'b' ? repeated : "no");
  if (before.body != NULL)
    g_assert_true (g_bytes_equal (before.body, victim == 'a' ? result_a : result_b));
  daemon_stop (d);
  answer_clear (&before);

  char *books = describe_books (&k, result_a, result_b);
  books_teardown (&k);
  return books;
}

static char *reference_books;

static const char *
reference (void)
{
  if (reference_books == NULL) {
    reference_books = run_reconcile (NULL, 0);
    g_test_message ("uninterrupted:\n%s", reference_books);
    /* The reference itself books the payment: b, the payee, is credited
     * once, and alice's account gets the defund back. */
    g_autofree char *view_b = g_strdup_printf ("view b %d ", PAID);
    g_autofree char *view_a = g_strdup_printf ("view a %d ", LOADED - PAID - DEFUNDED);
    g_autofree char *accounts =
      g_strdup_printf ("alice %d bob %d ", DEPOSIT - LOADED + DEFUNDED, DEPOSIT);
    g_assert_nonnull (strstr (reference_books, view_a));
    g_assert_nonnull (strstr (reference_books, view_b));
    g_assert_nonnull (strstr (reference_books, accounts));
  }
  return reference_books;
}

static void
test_reconcile_point (const char *point, char victim)
{
  const char *expected = reference ();
  g_autofree char *found = run_reconcile (point, victim);
  g_assert_cmpstr (found, ==, expected);
}

static void
test_kill_every_reconcile_point_books_once (gconstpointer data)
{
  const char *mode = data;
  guint n = 0;
  for (const char *const *p = tally_issuer_commit_points (); *p != NULL; p++) {
    if (!g_str_has_prefix (*p, "reconcile:"))
      continue;
    g_test_message ("killed at %s while reconciling %s's bundle", *p, mode);
    test_reconcile_point (*p, mode[0]);
    n++;
  }
  g_assert_cmpuint (n, ==, TALLY_ISSUER_POINT_RECONCILE_ANSWERED + 1);
}

/* --- voucher purchase --- */

static Answer
buy (Books *k, const guint8 request_id[TALLY_VOUCHER_REQUEST_ID_BYTES])
{
  g_autofree char *id = tally_hex_encode (k->a->id, TALLY_ID_BYTES);
  g_autofree char *path = g_strdup_printf ("/v1/accounts/alice/registers/%s/vouchers", id);
  g_autofree char *rid = tally_hex_encode (request_id, TALLY_VOUCHER_REQUEST_ID_BYTES);
  g_autofree char *json =
    g_strdup_printf ("{\"amount\": %d, \"request_id\": \"%s\"}", VOUCHER, rid);
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  return daemon_post (&k->daemon, path, k->alice_token, "application/json", body);
}

static void
test_voucher_point (const char *point)
{
  Books k = { 0 };
  books_setup (&k);
  Daemon *d = &k.daemon;
  guint8 request_id[TALLY_VOUCHER_REQUEST_ID_BYTES];
  randombytes_buf (request_id, sizeof request_id);

  daemon_start (d, point);
  Answer before = buy (&k, request_id);
  daemon_assert_killed (d, point);
  g_assert_cmpuint (before.status, ==,
                    g_str_has_suffix (point, ":answered") ? SOUP_STATUS_CREATED : 0);

  daemon_start (d, NULL);
  gboolean committed = committed_at (point);
  Answer retry = buy (&k, request_id);
  g_assert_cmpuint (retry.status, ==, committed ? SOUP_STATUS_OK : SOUP_STATUS_CREATED);
  g_assert_cmpstr (retry.repeated, ==, committed ? "yes" : "no");
  Answer again = buy (&k, request_id);
  g_assert_cmpuint (again.status, ==, SOUP_STATUS_OK);
  g_assert_cmpstr (again.repeated, ==, "yes");
  g_assert_true (g_bytes_equal (retry.body, again.body));
  if (before.body != NULL)
    g_assert_true (g_bytes_equal (before.body, retry.body));
  daemon_stop (d);

  /* One voucher, the first of a's after the one books_setup sold, and one
   * debit. */
  g_autoptr (Tally__SignedEnvelope) env = test_envelope (retry.body);
  g_autoptr (Tally__LoadVoucher) v = TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher,
                                                   env->body.data, env->body.len, "voucher", NULL);
  g_assert_nonnull (v);
  g_assert_cmpuint (v->sequence, ==, 2);
  g_assert_cmpint (v->amount->value, ==, VOUCHER);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = tally_issuer_open (k.dir, &error);
  g_assert_no_error (error);
  gint64 alice = -1;
  g_assert_true (tally_issuer_account_balance (issuer, "alice", &alice, &error));
  g_assert_cmpint (alice, ==, DEPOSIT - LOADED - VOUCHER);
  TallyAudit audit;
  g_assert_true (tally_issuer_audit (issuer, &audit, &error));
  g_assert_no_error (error);
  g_assert_true (audit.identity);
  g_clear_pointer (&issuer, tally_issuer_free);

  answer_clear (&before);
  answer_clear (&retry);
  answer_clear (&again);
  books_teardown (&k);
}

static void
test_kill_every_voucher_point_debits_once (void)
{
  guint n = 0;
  for (const char *const *p = tally_issuer_commit_points (); *p != NULL; p++) {
    if (!g_str_has_prefix (*p, "voucher:"))
      continue;
    g_test_message ("killed at %s while selling a voucher", *p);
    test_voucher_point (*p);
    n++;
  }
  g_assert_cmpuint (n, ==,
                    TALLY_ISSUER_POINT_VOUCHER_ANSWERED - TALLY_ISSUER_POINT_VOUCHER_BEGIN + 1);
}

/* Every point is one of the two operations', so the loops above cover all. */
static void
test_every_point_is_enumerated (void)
{
  guint n = 0;
  for (const char *const *p = tally_issuer_commit_points (); *p != NULL; p++, n++) {
    g_assert_true (g_str_has_prefix (*p, "reconcile:") || g_str_has_prefix (*p, "voucher:"));
    g_assert_cmpstr (tally_issuer_commit_point_to_string ((TallyIssuerCommitPoint) n), ==, *p);
  }
  g_assert_cmpuint (n, ==, TALLY_ISSUER_POINT_VOUCHER_ANSWERED + 1);
}

/* A name that is no point is refused at start, not silently never hit. */
static void
test_unknown_point_refused_at_start (void)
{
  Books k = { 0 };
  books_setup (&k);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "TALLY_ISSUER_CRASH_AT", "reconcile:nowhere", TRUE);
  g_autoptr (GSubprocess) proc =
    g_subprocess_launcher_spawn (launcher, &error, issuerd_path, "--config", k.daemon.conf, NULL);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 1);
  g_assert_nonnull (strstr (err, "TALLY_ISSUER_CRASH_AT=reconcile:nowhere: no such point"));
  books_teardown (&k);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_assert_cmpint (argc, ==, 2);
  issuerd_path = argv[1];

  g_test_add_func ("/issuerd/kill/every-point-is-enumerated", test_every_point_is_enumerated);
  g_test_add_func ("/issuerd/kill/unknown-point-refused-at-start",
                   test_unknown_point_refused_at_start);
  g_test_add_data_func ("/issuerd/kill/every-reconcile-commit-point-books-once/payer-half-first",
                        "a", test_kill_every_reconcile_point_books_once);
  g_test_add_data_func (
    "/issuerd/kill/every-reconcile-commit-point-books-once/payee-half-completes-match", "b",
    test_kill_every_reconcile_point_books_once);
  g_test_add_func ("/issuerd/kill/every-voucher-commit-point-debits-once",
                   test_kill_every_voucher_point_debits_once);
  int status = g_test_run ();
  g_free (reference_books);
  return status;
}
