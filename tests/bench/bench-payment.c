/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Payment benchmark.  Prints, each next to a floor measured in the same run:
 *
 *  1. CPU time per payment for the payer and the payee (in-process sessions
 *     over durable registers), and the bare libsodium calls a payment needs;
 *  2. payments per second between two processes over the local stream
 *     transport with full durability, and the rate of bare durable SQLite
 *     commits (a payment has four on its critical path);
 *  3. bytes per payment on the wire, per message and framed at MTU 20 and
 *     244, with a cold and a warm certificate cache (a payee that has seen
 *     the payer before keeps its certificate; a 32-byte hash stands in).
 *
 * Usage: bench-payment [--payments N] [--dir DIR]
 */

#include <glib/gstdio.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tally-clock.h"
#include "tally-frame.h"
#include "tally-link.h"
#include "tally-stream.h"
#include "tally-payment.h"
#include "tally-session.h"
#include "wallet-fixture.h"

static gint64
thread_cpu_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (gint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static Tally__Limits
bench_limits (void)
{
  Tally__Limits l = fixture_limits ();
  l.max_payment = 1000;
  l.balance_cap = TALLY_AMOUNT_MAX;
  l.max_offline_payments = 1000000;
  l.max_offline_seconds = 10 * FIXTURE_YEAR;
  return l;
}

typedef struct
{
  gsize size[5]; /* hello, offer, pay, receipt, reveal */
  gint64 payer_ns;
  gint64 payee_ns;
} PaymentCost;

/* One payment between two in-process sessions; CPU time split by side. */
static void
pay_once (TallyRegister *payer_reg, TallyRegister *payee_reg, guint64 now, PaymentCost *cost)
{
  g_autoptr (GError) error = NULL;
  gint64 t;

  t = thread_cpu_ns ();
  g_autoptr (TallySession) payee = tally_session_new_payee (payee_reg, 1, "", NULL, now, &error);
  g_assert_no_error (error);
  cost->payee_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_autoptr (TallySession) payer = tally_session_new_payer (payer_reg, NULL);
  g_autoptr (GBytes) hello = tally_session_start (payer, &error);
  g_assert_no_error (error);
  cost->payer_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_autoptr (GBytes) offer = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (hello, NULL),
                                       g_bytes_get_size (hello), now, &offer, &error));
  cost->payee_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_autoptr (GBytes) reveal = NULL;
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (offer, NULL),
                                       g_bytes_get_size (offer), now, &reveal, &error));
  g_autoptr (GBytes) pay = tally_session_confirm (payer, now, &error);
  g_assert_no_error (error);
  cost->payer_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_autoptr (GBytes) none = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (reveal, NULL),
                                       g_bytes_get_size (reveal), now, &none, &error));
  g_assert_no_error (error);
  cost->payee_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_autoptr (GBytes) receipt = NULL;
  g_assert_true (tally_session_handle (payee, g_bytes_get_data (pay, NULL), g_bytes_get_size (pay),
                                       now, &receipt, &error));
  cost->payee_ns += thread_cpu_ns () - t;

  t = thread_cpu_ns ();
  g_assert_true (tally_session_handle (payer, g_bytes_get_data (receipt, NULL),
                                       g_bytes_get_size (receipt), now, &none, &error));
  g_assert_cmpint (tally_session_get_state (payer), ==, TALLY_SESSION_STATE_DONE);
  cost->payer_ns += thread_cpu_ns () - t;

  cost->size[0] = g_bytes_get_size (hello);
  cost->size[1] = g_bytes_get_size (offer);
  cost->size[2] = g_bytes_get_size (pay);
  cost->size[3] = g_bytes_get_size (receipt);
  cost->size[4] = g_bytes_get_size (reveal);
}

/*
 * The bare libsodium work of one payment, per side, with the message sizes
 * just measured: what no implementation of this protocol can avoid.
 */
static void
crypto_floor (const PaymentCost *c, guint n, double *payer_us, double *payee_us)
{
  guint8 sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
  guint8 sig[crypto_sign_BYTES], msg[TALLY_HASH_BYTES] = { 1 };
  guint8 cert_body[160] = { 2 }, perm_body[200] = { 3 }, receipt_body[150] = { 4 };
  guint8 e_pk[crypto_kx_PUBLICKEYBYTES], e_sk[crypto_kx_SECRETKEYBYTES];
  guint8 p_pk[crypto_kx_PUBLICKEYBYTES], p_sk[crypto_kx_SECRETKEYBYTES];
  guint8 rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
  guint8 nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES] = { 0 };
  gsize big = MAX (MAX (c->size[1], c->size[2]), c->size[3]) + 64;
  g_autofree guint8 *plain = g_malloc0 (big);
  g_autofree guint8 *ct = g_malloc0 (big + crypto_aead_chacha20poly1305_IETF_ABYTES);
  unsigned long long len;

  crypto_sign_keypair (pk, sk);
  crypto_kx_keypair (p_pk, p_sk);

  /* Valid signatures to check, so every verify does its whole job. */
  guint8 sig_cert[crypto_sign_BYTES], sig_msg[crypto_sign_BYTES];
  guint8 sig_perm[crypto_sign_BYTES], sig_receipt[crypto_sign_BYTES];
  crypto_sign_detached (sig_cert, NULL, cert_body, sizeof cert_body, sk);
  crypto_sign_detached (sig_msg, NULL, msg, sizeof msg, sk);
  crypto_sign_detached (sig_perm, NULL, perm_body, sizeof perm_body, sk);
  crypto_sign_detached (sig_receipt, NULL, receipt_body, sizeof receipt_body, sk);
  guint failures = 0;

  /* Payer: ephemeral + kx; open offer; verify payee certificate and offer
   * signature; sign permission and transcript; seal pay; open receipt and
   * verify it. */
  gint64 t = thread_cpu_ns ();
  for (guint i = 0; i < n; i++) {
    crypto_kx_keypair (e_pk, e_sk);
    failures += crypto_kx_client_session_keys (rx, tx, e_pk, e_sk, p_pk) != 0;
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[1], msg, 32, NULL, nonce,
                                               rx);
    failures += crypto_aead_chacha20poly1305_ietf_decrypt (plain, &len, NULL, ct, len, msg, 32,
                                                           nonce, rx) != 0;
    failures += crypto_sign_verify_detached (sig_cert, cert_body, sizeof cert_body, pk) != 0;
    failures += crypto_sign_verify_detached (sig_msg, msg, sizeof msg, pk) != 0;
    crypto_sign_detached (sig, NULL, perm_body, sizeof perm_body, sk);
    crypto_sign_detached (sig, NULL, msg, sizeof msg, sk);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[2], msg, 32, NULL, nonce,
                                               tx);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[3], msg, 32, NULL, nonce,
                                               rx);
    failures += crypto_aead_chacha20poly1305_ietf_decrypt (plain, &len, NULL, ct, len, msg, 32,
                                                           nonce, rx) != 0;
    failures += crypto_sign_verify_detached (sig_receipt, receipt_body, sizeof receipt_body, pk) != 0;
  }
  gint64 payer_ns = thread_cpu_ns () - t;
  /* The encrypts before each decrypt only make its input; time them
   * alone and take them off. */
  t = thread_cpu_ns ();
  for (guint i = 0; i < n; i++) {
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[1], msg, 32, NULL, nonce,
                                               rx);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[3], msg, 32, NULL, nonce,
                                               rx);
  }
  payer_ns -= thread_cpu_ns () - t;

  /* Payee: ephemeral + kx; sign and seal offer; open pay; verify payer
   * certificate, transcript signature and permission; sign and seal the
   * receipt. */
  t = thread_cpu_ns ();
  for (guint i = 0; i < n; i++) {
    crypto_kx_keypair (e_pk, e_sk);
    failures += crypto_kx_server_session_keys (rx, tx, e_pk, e_sk, p_pk) != 0;
    crypto_sign_detached (sig, NULL, msg, sizeof msg, sk);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[1], msg, 32, NULL, nonce,
                                               tx);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[2], msg, 32, NULL, nonce,
                                               rx);
    failures += crypto_aead_chacha20poly1305_ietf_decrypt (plain, &len, NULL, ct, len, msg, 32,
                                                           nonce, rx) != 0;
    failures += crypto_sign_verify_detached (sig_cert, cert_body, sizeof cert_body, pk) != 0;
    failures += crypto_sign_verify_detached (sig_msg, msg, sizeof msg, pk) != 0;
    failures += crypto_sign_verify_detached (sig_perm, perm_body, sizeof perm_body, pk) != 0;
    crypto_sign_detached (sig, NULL, receipt_body, sizeof receipt_body, sk);
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[3], msg, 32, NULL, nonce,
                                               tx);
  }
  gint64 payee_ns = thread_cpu_ns () - t;
  t = thread_cpu_ns ();
  for (guint i = 0; i < n; i++)
    crypto_aead_chacha20poly1305_ietf_encrypt (ct, &len, plain, c->size[2], msg, 32, NULL, nonce,
                                               rx);
  payee_ns -= thread_cpu_ns () - t;

  g_assert_cmpuint (failures, ==, 0);
  sodium_memzero (sk, sizeof sk);
  sodium_memzero (e_sk, sizeof e_sk);
  sodium_memzero (p_sk, sizeof p_sk);
  sodium_memzero (rx, sizeof rx);
  sodium_memzero (tx, sizeof tx);
  *payer_us = (double) payer_ns / n / 1000.0;
  *payee_us = (double) payee_ns / n / 1000.0;
}

/* Bare durable commits: the soft register's settings, one small row each. */
static double
commit_floor (const char *dir, guint n)
{
  g_autofree char *path = g_build_filename (dir, "floor.db", NULL);
  sqlite3 *db = NULL;
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                 "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
                                 NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_stmt *st = NULL;
  sqlite3_prepare_v2 (db, "INSERT INTO t (v) VALUES (?)", -1, &st, NULL);
  guint8 blob[200] = { 0 };
  gint64 t = g_get_monotonic_time ();
  for (guint i = 0; i < n; i++) {
    sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    sqlite3_bind_blob (st, 1, blob, sizeof blob, SQLITE_STATIC);
    g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
    sqlite3_reset (st);
    g_assert_cmpint (sqlite3_exec (db, "COMMIT", NULL, NULL, NULL), ==, SQLITE_OK);
  }
  gint64 us = g_get_monotonic_time () - t;
  sqlite3_finalize (st);
  sqlite3_close (db);
  return n / ((double) us / G_USEC_PER_SEC);
}

/* --- two processes over the local stream ------------------------------------ */

typedef struct
{
  TallyRegister *reg;
  GMainLoop *loop;
  TallyPayment *current;
  guint done;
  guint target;
  gboolean failed;
} Side;

static void
payee_changed (TallyPayment *p, gpointer user_data)
{
  Side *side = user_data;
  if (!tally_payment_is_finished (p))
    return;
  if (tally_payment_get_state (p) == TALLY_PAYMENT_STATE_FAILED) {
    g_printerr ("payee: %s\n", tally_payment_get_error (p)->message);
    side->failed = TRUE;
  }
  side->done++;
}

static void
on_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  Side *side = user_data;
  g_autoptr (GError) error = NULL;
  g_clear_pointer (&side->current, tally_payment_unref);
  side->current = tally_payment_new_payee (side->reg, 1, "", NULL, 30, &error);
  g_assert_no_error (error);
  static const TallyPaymentCallbacks cb = { .changed = payee_changed };
  tally_payment_set_callbacks (side->current, &cb, side, NULL);
  g_assert_true (tally_payment_attach (side->current, link, &error));
}

static G_NORETURN void
run_payee_process (const char *dir, const char *address, int ready_fd)
{
  g_autoptr (GError) error = NULL;
  Side side = { 0 };
  side.reg = tally_register_open (dir, &error);
  g_assert_no_error (error);
  side.loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (TallyStreamListener) l =
    tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, on_accept, &side, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (write (ready_fd, "r", 1), ==, 1);
  close (ready_fd);
  g_main_loop_run (side.loop); /* until SIGTERM */
  _exit (0);
}

static void
payer_changed (TallyPayment *p, gpointer user_data)
{
  Side *side = user_data;
  if (!tally_payment_is_finished (p))
    return;
  if (tally_payment_get_state (p) == TALLY_PAYMENT_STATE_FAILED) {
    g_printerr ("payer: %s\n", tally_payment_get_error (p)->message);
    side->failed = TRUE;
  }
  side->done++;
  g_main_loop_quit (side->loop);
}

static void
payer_confirm (TallyPayment *p, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (tally_payment_confirm (p, &error));
}

static double
stream_rate (TallyRegister *payer_reg, const char *payee_dir, const char *address, guint n)
{
  int pipefd[2];
  g_assert_cmpint (pipe (pipefd), ==, 0);
  pid_t child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0) {
    close (pipefd[0]);
    run_payee_process (payee_dir, address, pipefd[1]);
  }
  close (pipefd[1]);
  char c;
  g_assert_cmpint (read (pipefd[0], &c, 1), ==, 1);
  close (pipefd[0]);

  Side side = { .reg = payer_reg, .loop = g_main_loop_new (NULL, FALSE) };
  static const TallyPaymentCallbacks cb = { .changed = payer_changed, .confirm = payer_confirm };
  gint64 t = g_get_monotonic_time ();
  for (guint i = 0; i < n && !side.failed; i++) {
    g_autoptr (TallyPayment) p = tally_payment_new_payer (payer_reg, NULL, 30);
    tally_payment_set_callbacks (p, &cb, &side, NULL);
    tally_payment_connect (p, address);
    g_main_loop_run (side.loop);
  }
  gint64 us = g_get_monotonic_time () - t;
  kill (child, SIGTERM);
  waitpid (child, NULL, 0);
  g_main_loop_unref (side.loop);
  g_assert_false (side.failed);
  g_assert_cmpuint (side.done, ==, n);
  return n / ((double) us / G_USEC_PER_SEC);
}

/* --- bytes ------------------------------------------------------------------- */

static gsize
framed (gsize len, gsize mtu, guint *fragments)
{
  g_autoptr (GByteArray) junk = g_byte_array_sized_new (len);
  g_byte_array_set_size (junk, len);
  memset (junk->data, 0, len);
  g_autoptr (GPtrArray) f =
    tally_frame_split (junk->data, len, mtu, TALLY_FRAME_DEFAULT_MAX_MESSAGE, NULL);
  gsize total = 0;
  for (guint i = 0; i < f->len; i++)
    total += g_bytes_get_size (f->pdata[i]);
  *fragments += f->len;
  return total;
}

static void
print_bytes (const char *label, const PaymentCost *c)
{
  gsize raw = c->size[0] + c->size[1] + c->size[2] + c->size[3] + c->size[4];
  guint frags20 = 0, frags244 = 0;
  gsize at20 = 0, at244 = 0;
  for (int i = 0; i < 5; i++) {
    at20 += framed (c->size[i], 20, &frags20);
    at244 += framed (c->size[i], 244, &frags244);
  }
  g_print ("  %-5s hello %zu, offer %zu, reveal %zu, pay %zu, receipt %zu = %zu bytes; "
           "framed at MTU 20: %zu bytes in %u fragments; at MTU 244: %zu bytes in %u fragments\n",
           label, c->size[0], c->size[1], c->size[4], c->size[2], c->size[3], raw, at20, frags20,
           at244, frags244);
}

int
main (int argc, char **argv)
{
  guint n = 200;
  g_autofree char *dir_opt = NULL;
  GOptionEntry entries[] = {
    { "payments", 'n', 0, G_OPTION_ARG_INT, &n, "Payments per measurement (default 200)", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir_opt,
      "Directory for the registers (default: a new one under $TMPDIR)", "DIR" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- measure Tally payments");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("bench-payment: %s\n", error->message);
    return 2;
  }
  if (n == 0)
    n = 1;
  if (sodium_init () < 0)
    return 1;

  g_autofree char *root = dir_opt ? g_strdup (dir_opt) : g_dir_make_tmp ("tally-bench-XXXXXX", NULL);
  g_autoptr (FixtureIssuer) issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  Tally__Limits limits = bench_limits ();
  guint64 now = tally_now ();
  g_autofree char *payer_dir = g_build_filename (root, "payer", NULL);
  g_autofree char *payee_dir = g_build_filename (root, "payee", NULL);
  g_autoptr (TallyRegister) payer = fixture_register_new (issuer, payer_dir, &limits, now);
  g_autoptr (TallyRegister) payee = fixture_register_new (issuer, payee_dir, &limits, now);
  fixture_register_fund (issuer, payer, 1, 1000000, now);

  g_print ("Tally payment benchmark: %u payments per figure, registers in %s\n", n, root);

  /* 1. CPU per payment.  The first payment between the pair is the cold
   * one: the payee has not yet cached the payer's certificate. */
  PaymentCost cold = { 0 }, warm = { 0 };
  pay_once (payer, payee, now, &cold);
  for (guint i = 0; i < n; i++)
    pay_once (payer, payee, now, &warm);
  double payer_us = (double) warm.payer_ns / n / 1000.0;
  double payee_us = (double) warm.payee_ns / n / 1000.0;
  double floor_payer, floor_payee;
  crypto_floor (&warm, n, &floor_payer, &floor_payee);
  g_print ("\nCPU time per payment (thread CPU, durable SQLite registers, warm cache):\n");
  g_print ("  payer %8.1f us   libsodium floor %6.1f us   (%.1fx)\n", payer_us, floor_payer,
           payer_us / floor_payer);
  g_print ("  payee %8.1f us   libsodium floor %6.1f us   (%.1fx)\n", payee_us, floor_payee,
           payee_us / floor_payee);

  /* 2. Two processes over the local stream. */
  g_autofree char *sock = g_build_filename (root, "payee.sock", NULL);
  g_autofree char *address = g_strconcat ("unix:", sock, NULL);
  g_clear_pointer (&payee, tally_register_free); /* the child process owns it now */
  double rate = stream_rate (payer, payee_dir, address, n);
  double commits = commit_floor (root, n * 2);
  g_print ("\nPayments per second, two processes over %s, synchronous=FULL:\n", "a UNIX socket");
  g_print ("  %8.1f payments/s   durable commit floor %.1f commits/s = %.1f payments/s "
           "(4 commits on the critical path)\n",
           rate, commits, commits / 4);

  /* 3. Bytes. */
  g_print ("\nBytes per payment:\n");
  print_bytes ("cold", &cold);
  print_bytes ("warm", &warm);

  g_autoptr (GError) rm_error = NULL;
  if (dir_opt == NULL)
    fixture_remove_tree (root);
  return 0;
}
