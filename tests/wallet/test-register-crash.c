/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash injection at every commit point.  A forked child opens the
 * register, runs one operation and is killed with SIGKILL at the point; the
 * parent reopens the directory and finds exactly the state before the
 * operation (before-commit) or exactly the state after it (after-commit),
 * and value neither created nor lost across payer and payee.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally-register-private.h"
#include "tally-register.h"
#include "wallet-fixture.h"

#define T      FIXTURE_NOW
#define LOADED 7000

typedef struct
{
  FixtureIssuer *issuer;
  char *root;
  char *dir_a; /* payer */
  char *dir_b; /* payee */
  gboolean has_b;
  /* Inputs of the operation, made by the scenario's prepare step. */
  GBytes *input;
  GBytes *cert_a;
  GBytes *cert_b;
  GBytes *request;
} Crash;

typedef struct
{
  const char *op;
  /* Builds the registers (closed afterwards) and the inputs. */
  void (*prepare) (Crash *c);
  /* Which register the operation runs on. */
  gboolean on_b;
  /* Runs the operation; returns only if no crash point interrupted it. */
  void (*run) (Crash *c, TallyRegister *reg);
} Scenario;

static TallyRegister *
open_dir (const char *dir)
{
  g_autoptr (GError) error = NULL;
  TallyRegister *reg = tally_register_open (dir, &error);
  g_assert_no_error (error);
  return reg;
}

static Tally__PaymentRequest *
request_from_bytes (GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  Tally__PaymentRequest *req =
    TALLY_UNPACK (Tally__PaymentRequest, tally__payment_request, data, len, "request", NULL);
  g_assert_nonnull (req);
  return req;
}

/* a: certified, loaded with LOADED.  b (when @with_b): certified, with an
 * open request for 1200 whose packed form is kept. */
static void
prepare_parties (Crash *c, gboolean with_b, gboolean fund)
{
  g_autoptr (TallyRegister) a = fixture_register_new (c->issuer, c->dir_a, NULL, T);
  if (fund)
    fixture_register_fund (c->issuer, a, 1, LOADED, T);
  c->cert_a = tally_register_get_certificate (a);
  if (!with_b)
    return;

  c->has_b = TRUE;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) b = fixture_register_new (c->issuer, c->dir_b, NULL, T);
  c->cert_b = tally_register_get_certificate (b);
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (b, 1200, "groceries", T + 1, &error);
  g_assert_no_error (error);
  c->request = tally_message_pack (&req->base);
}

static GBytes *
spend_request (Crash *c, TallyRegister *a)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req = request_from_bytes (c->request);
  g_autoptr (Tally__SignedEnvelope) cert_b = fixture_envelope (c->cert_b);
  GBytes *permission = tally_register_spend (a, cert_b, req, T + 10, &error);
  g_assert_no_error (error);
  return permission;
}

static GBytes *
receive_permission (Crash *c, TallyRegister *b, GBytes *permission)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) cert_a = fixture_envelope (c->cert_a);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (permission);
  GBytes *receipt = tally_register_receive (b, cert_a, env, NULL, NULL, T + 20, &error);
  g_assert_no_error (error);
  return receipt;
}

/* --- load --- */

static void
prepare_load (Crash *c)
{
  prepare_parties (c, FALSE, FALSE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  c->input = fixture_voucher (c->issuer, tally_register_get_id (a), 1, LOADED, NULL);
}

static void
run_load (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (c->input, &len);
  g_assert_true (tally_register_load (reg, data, len, T + 5, &error));
  g_assert_no_error (error);
}

/* --- request --- */

static void
prepare_request (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
}

static void
run_request (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req =
    tally_register_new_request (reg, 333, "second", T + 5, &error);
  g_assert_no_error (error);
}

/* --- spend --- */

static void
prepare_spend (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
}

static void
run_spend (Crash *c, TallyRegister *reg)
{
  g_autoptr (GBytes) permission = spend_request (c, reg);
}

/* --- receive --- */

static void
prepare_receive (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  c->input = spend_request (c, a);
}

static void
run_receive (Crash *c, TallyRegister *reg)
{
  g_autoptr (GBytes) receipt = receive_permission (c, reg, c->input);
}

/* --- acknowledge --- */

static void
prepare_acknowledge (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  g_autoptr (TallyRegister) b = open_dir (c->dir_b);
  g_autoptr (GBytes) permission = spend_request (c, a);
  c->input = receive_permission (c, b, permission);
}

static void
run_acknowledge (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (c->input);
  g_assert_true (tally_register_acknowledge (reg, env, &error));
  g_assert_no_error (error);
}

/* --- revocation --- */

static void
prepare_revocation (Crash *c)
{
  prepare_parties (c, FALSE, TRUE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  guint8 other[TALLY_ID_BYTES];
  memset (other, 0x5a, sizeof other);
  c->input =
    fixture_revocation_list (c->issuer, 4, T + 3, other, tally_register_get_id (a), NULL);
}

static void
run_revocation (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (c->input);
  g_assert_true (tally_register_update_revocation_list (reg, env, &error));
  g_assert_no_error (error);
}

/* --- certificate --- */

static void
prepare_certificate (Crash *c)
{
  prepare_parties (c, FALSE, TRUE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  c->input = fixture_certify (c->issuer, tally_register_get_public_key (a), NULL, T,
                              T + 2 * FIXTURE_YEAR, 2);
}

static void
run_certificate (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (c->input, &len);
  g_assert_true (tally_register_install_certificate (reg, data, len, T + 5, &error));
  g_assert_no_error (error);
}

/* --- issuer: an unbound register takes its issuer's key set --- */

static void
prepare_issuer (Crash *c)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) a = tally_register_create_unbound (c->dir_a, &error);
  g_assert_no_error (error);
  c->input = fixture_issuer_key_set (c->issuer);
}

static void
run_issuer (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (c->input, &len);
  g_assert_true (tally_register_set_issuer (reg, data, len, &error));
  g_assert_no_error (error);
}

/* --- apply --- */

static void
prepare_apply (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  g_autoptr (TallyRegister) b = open_dir (c->dir_b);
  g_autoptr (GBytes) permission = spend_request (c, a);
  g_autoptr (GBytes) receipt = receive_permission (c, b, permission);
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (receipt);
  g_assert_true (tally_register_acknowledge (a, env, &error));
  g_assert_no_error (error);

  g_autoptr (GBytes) list = fixture_revocation_list (c->issuer, 3, T + 90, NULL);
  g_autoptr (GBytes) renewed = fixture_certify (c->issuer, tally_register_get_public_key (a), NULL,
                                                T, T + 2 * FIXTURE_YEAR, 2);
  FixtureResult fr = {
    .register_id = tally_register_get_id (a),
    .settled_counter = 1,
    .revocation_list = list,
    .renewed_certificate = renewed,
    .reconciled_at = T + 100,
  };
  c->input = fixture_result (c->issuer, &fr);
}

static void
run_apply (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (c->input, &len);
  g_assert_true (tally_register_apply_result (reg, data, len, T + 101, &error));
  g_assert_no_error (error);
}

/* --- defund --- */

static void
prepare_defund (Crash *c)
{
  prepare_parties (c, FALSE, TRUE);
}

static void
run_defund (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) record = tally_register_defund (reg, T + 30, &error);
  g_assert_no_error (error);
}

/* --- export --- */

static void
prepare_export (Crash *c)
{
  prepare_parties (c, TRUE, TRUE);
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  g_autoptr (TallyRegister) b = open_dir (c->dir_b);
  g_autoptr (GBytes) permission = spend_request (c, a);
  g_autoptr (GBytes) receipt = receive_permission (c, b, permission);
}

/* The payee's bundle commits the horizon past which it refuses permissions. */
static void
run_export (Crash *c, TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bundle = tally_register_export_bundle (reg, T + 40, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (tally_register_get_horizon (reg), ==, T + 40);
}

static const Scenario scenarios[] = {
  { "load", prepare_load, FALSE, run_load },
  { "request", prepare_request, TRUE, run_request },
  { "spend", prepare_spend, FALSE, run_spend },
  { "receive", prepare_receive, TRUE, run_receive },
  { "acknowledge", prepare_acknowledge, FALSE, run_acknowledge },
  { "revocation", prepare_revocation, FALSE, run_revocation },
  { "certificate", prepare_certificate, FALSE, run_certificate },
  { "apply", prepare_apply, FALSE, run_apply },
  { "defund", prepare_defund, FALSE, run_defund },
  { "export", prepare_export, TRUE, run_export },
  { "issuer", prepare_issuer, FALSE, run_issuer },
};

static const Scenario *
scenario_for (const char *point)
{
  for (guint i = 0; i < G_N_ELEMENTS (scenarios); i++) {
    gsize n = strlen (scenarios[i].op);
    if (strncmp (point, scenarios[i].op, n) == 0 && point[n] == ':')
      return &scenarios[i];
  }
  return NULL;
}

/* --- observation --- */

static char *
dump_dir (const char *dir, gboolean with_nonce_bytes)
{
  g_autoptr (TallyRegister) reg = open_dir (dir);
  return fixture_register_dump (reg, with_nonce_bytes);
}

/* Value the payer signed away that the payee does not hold yet. */
static gint64
in_flight (TallyRegister *a, TallyRegister *b)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) spent = tally_register_get_history (a, 0, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) received = tally_register_get_history (b, 0, &error);
  g_assert_no_error (error);
  g_autofree char *a_hex = tally_register_get_id_hex (a);

  gint64 total = 0;
  for (guint i = 0; i < spent->len; i++) {
    TallyHistoryEntry *s = spent->pdata[i];
    if (s->kind != TALLY_ENTRY_SPENT)
      continue;
    gboolean arrived = FALSE;
    for (guint j = 0; j < received->len; j++) {
      TallyHistoryEntry *r = received->pdata[j];
      if (r->kind == TALLY_ENTRY_RECEIVED && g_strcmp0 (r->peer, a_hex) == 0 &&
          r->counter == s->counter) {
        g_assert_cmpint (r->amount, ==, s->amount);
        arrived = TRUE;
      }
    }
    if (!arrived)
      total += s->amount;
  }
  return total;
}

static void
assert_value_conserved (Crash *c)
{
  g_autoptr (TallyRegister) a = open_dir (c->dir_a);
  fixture_assert_conserved (a);
  if (!c->has_b) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GPtrArray) history = tally_register_get_history (a, 0, &error);
    g_assert_no_error (error);
    gint64 defunded = 0;
    for (guint i = 0; i < history->len; i++) {
      TallyHistoryEntry *e = history->pdata[i];
      if (e->kind == TALLY_ENTRY_DEFUND)
        defunded += e->amount;
    }
    g_assert_cmpint (tally_register_get_balance (a) + defunded, <=, LOADED);
    return;
  }
  g_autoptr (TallyRegister) b = open_dir (c->dir_b);
  fixture_assert_conserved (b);
  g_assert_cmpint (tally_register_get_balance (a) + tally_register_get_balance (b) +
                     in_flight (a, b),
                   ==, LOADED);
}

/* --- the crash --- */

static const char *crash_point;

static void
crash_hook (const char *point, gpointer user_data)
{
  /* As abrupt as power loss: no atexit handlers, no buffers flushed. */
  if (strcmp (point, crash_point) == 0)
    raise (SIGKILL);
}

static void
crash_at (Crash *c, const Scenario *s, const char *dir, const char *point)
{
  pid_t pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    crash_point = point;
    TallyRegister *reg = tally_register_open (dir, NULL);
    if (reg == NULL)
      _exit (2);
    tally_register_set_commit_hook (reg, crash_hook, NULL);
    s->run (c, reg);
    /* The operation finished without passing the point. */
    _exit (3);
  }
  int status = 0;
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  if (!WIFSIGNALED (status))
    g_error ("child at %s exited with %d instead of dying", point,
             WIFEXITED (status) ? WEXITSTATUS (status) : -1);
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
}

static void
test_crash (gconstpointer data)
{
  const char *point = data;
  const Scenario *s = scenario_for (point);
  g_assert_nonnull (s);
  gboolean after = g_str_has_suffix (point, ":after-commit");
  g_assert_true (after || g_str_has_suffix (point, ":before-commit"));

  Crash c = { 0 };
  c.issuer = fixture_issuer_new (NULL);
  c.root = fixture_tmpdir ();
  c.dir_a = g_build_filename (c.root, "a", NULL);
  c.dir_b = g_build_filename (c.root, "b", NULL);
  s->prepare (&c);
  assert_value_conserved (&c);

  const char *target = s->on_b ? c.dir_b : c.dir_a;
  /* A new request's nonce is random: compare requests without it. */
  gboolean nonce_bytes = strcmp (s->op, "request") != 0;
  g_autofree char *pre = dump_dir (target, nonce_bytes);

  /* The complete post-operation state, from an uninterrupted run on a copy. */
  g_autofree char *copy = g_build_filename (c.root, "expected", NULL);
  fixture_copy_dir (target, copy);
  {
    g_autoptr (TallyRegister) reg = open_dir (copy);
    s->run (&c, reg);
  }
  g_autofree char *post = dump_dir (copy, nonce_bytes);
  g_assert_cmpstr (pre, !=, post);

  crash_at (&c, s, target, point);

  g_autofree char *found = dump_dir (target, nonce_bytes);
  g_assert_cmpstr (found, ==, after ? post : pre);
  assert_value_conserved (&c);

  /* The register is usable after the crash: the interrupted operation
   * either runs now or was already done. */
  if (!after) {
    g_autoptr (TallyRegister) reg = open_dir (target);
    s->run (&c, reg);
    g_autofree char *redone = fixture_register_dump (reg, nonce_bytes);
    g_assert_cmpstr (redone, ==, post);
  }

  g_clear_pointer (&c.input, g_bytes_unref);
  g_clear_pointer (&c.cert_a, g_bytes_unref);
  g_clear_pointer (&c.cert_b, g_bytes_unref);
  g_clear_pointer (&c.request, g_bytes_unref);
  fixture_remove_tree (c.root);
  g_free (c.root);
  g_free (c.dir_a);
  g_free (c.dir_b);
  fixture_issuer_free (c.issuer);
}

static void
test_every_commit_point_has_a_scenario (void)
{
  const char *const *points = tally_register_commit_points ();
  guint n = 0;
  for (; points[n] != NULL; n++)
    g_assert_nonnull (scenario_for (points[n]));
  g_assert_cmpuint (n, ==, 2 * G_N_ELEMENTS (scenarios));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

  g_test_add_func ("/register/crash/every-commit-point-has-a-scenario",
                   test_every_commit_point_has_a_scenario);
  for (const char *const *p = tally_register_commit_points (); *p != NULL; p++) {
    g_autofree char *name = g_strdup (*p);
    *strchr (name, ':') = '/';
    g_autofree char *path = g_strconcat ("/register/crash/", name, NULL);
    g_test_add_data_func (path, *p, test_crash);
  }
  return g_test_run ();
}
