/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stall under a crowd.  A real tallyd (its own process, a private D-Bus)
 * is asked for requests of K payers each (RequestPayment, "Payers": K);
 * K payers in this process, each with its own register, pay every
 * request at once over the stream transport on a UNIX socket.  Prints,
 * for K = 1, 4 and 16:
 *
 *  - payments per second, and p50/p99 latency from a payer's connect to
 *    its receipt, next to a floor measured in the same run: one whole
 *    payment between two registers in one process (the same protocol and
 *    durable commits, no transport, no daemon, no D-Bus);
 *  - tallyd's RSS after 100 payments and after --payments, a leak check.
 *
 * It asserts that every payment completed with a receipt and that the
 * stall's balance is their sum; it asserts no time.
 *
 * Usage: bench-stall [--payments N] [--per-k M]
 */
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-payment.h"
#include "wallet-fixture.h"

#define AMOUNT    100
#define MAX_K     16
#define FUNDS     1000000
#define RSS_EARLY 100
#define TIMEOUT_S 60

typedef struct
{
  TallyRegister *reg;
  TallyPayment *payment;
  gint64 started;
} BenchPayer;

typedef struct
{
  char *dir;
  char *listen;
  GPid pid;
  GSubprocess *daemon;
  GDBusConnection *bus;
  BenchPayer payers[MAX_K];
  guint total;   /* payments completed */
  guint retries; /* connects refused (listen backlog full), tried again */
  guint64 rss_early;
} Bench;

static guint64
rss_kib (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) pid);
  g_autofree char *status = NULL;
  g_assert_true (g_file_get_contents (path, &status, NULL, NULL));
  const char *line = strstr (status, "VmRSS:");
  g_assert_nonnull (line);
  return g_ascii_strtoull (line + strlen ("VmRSS:"), NULL, 10);
}

static int
cmp_gint64 (gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return (x > y) - (x < y);
}

/* The @pct percentile of @v (sorted here), in µs. */
static gint64
percentile (GArray *v, guint pct)
{
  g_array_sort (v, cmp_gint64);
  guint i = (guint) ((v->len - 1) * pct / 100);
  return g_array_index (v, gint64, i);
}

static void
on_confirm (TallyPayment *payment, gpointer user_data)
{
  g_assert_true (tally_payment_confirm (payment, NULL));
}

static const TallyPaymentCallbacks payer_callbacks = {
  .confirm = on_confirm,
};

static void
tallyd_start (Bench *b, FixtureIssuer *issuer, const Tally__Limits *limits)
{
  g_autoptr (GError) error = NULL;
  const char *root = g_getenv ("TALLY_BUILD_ROOT");
  g_autofree char *tallyd = g_build_filename (root != NULL ? root : ".", "daemon", "tallyd", NULL);
  g_autofree char *reg_dir = g_build_filename (b->dir, "stall", NULL);
  TallyRegister *stall = fixture_register_new (issuer, reg_dir, limits, tally_now ());
  tally_register_free (stall);
  g_autofree char *key =
    tally_hex_encode (fixture_issuer_public_key (issuer), TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *conf =
    g_strdup_printf ("[register]\ndir=%s\nissuer_key=%s\n"
                     "[dbus]\nbus=session\nname=org.tally.BenchStall\nauthorization=none\n"
                     "[transport]\nlisten=%s\n[payment]\ntimeout_seconds=%d\n",
                     reg_dir, key, b->listen, TIMEOUT_S);
  g_autofree char *conf_path = g_build_filename (b->dir, "tallyd.conf", NULL);
  g_autofree char *log_path = g_build_filename (b->dir, "tallyd.log", NULL);
  g_assert_true (g_file_set_contents (conf_path, conf, -1, &error));
  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_subprocess_launcher_unsetenv (launcher, "G_MESSAGES_DEBUG");
  g_subprocess_launcher_set_stderr_file_path (launcher, log_path);
  b->daemon = g_subprocess_launcher_spawn (launcher, &error, tallyd, "--config", conf_path, NULL);
  g_assert_no_error (error);
  b->pid = (GPid) g_ascii_strtoll (g_subprocess_get_identifier (b->daemon), NULL, 10);
}

/* RequestPayment of AMOUNT for @k payers; retries while tallyd is not
 * on the bus yet or the last request has not ended. */
static void
request (Bench *b, guint k)
{
  gint64 give_up = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;
  for (;;) {
    g_autoptr (GError) error = NULL;
    GVariantBuilder options;
    g_variant_builder_init (&options, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add (&options, "{sv}", "Payers", g_variant_new_uint32 (k));
    g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      b->bus, "org.tally.BenchStall", "/org/tally/register", "org.tally.Register1",
      "RequestPayment", g_variant_new ("(tsa{sv})", (guint64) AMOUNT, "bench", &options),
      G_VARIANT_TYPE ("(o)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
    if (reply != NULL)
      return;
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
    g_usleep (1000);
  }
}

static gint64
stall_balance (Bench *b)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
    b->bus, "org.tally.BenchStall", "/org/tally/register", "org.freedesktop.DBus.Properties", "Get",
    g_variant_new ("(ss)", "org.tally.Register1", "Balance"), G_VARIANT_TYPE ("(v)"),
    G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (GVariant) v = NULL;
  g_variant_get (reply, "(v)", &v);
  return g_variant_get_int64 (v);
}

static void
payer_connect (Bench *b, BenchPayer *p)
{
  static const TallyAcceptPolicy policy = { 0 };
  p->payment = tally_payment_new_payer (p->reg, &policy, TIMEOUT_S);
  tally_payment_set_callbacks (p->payment, &payer_callbacks, p, NULL);
  tally_payment_connect (p->payment, b->listen);
}

/* One request, paid by @k payers at once; their latencies in µs. */
static void
round_pay (Bench *b, guint k, GArray *latency)
{
  request (b, k);
  for (guint i = 0; i < k; i++) {
    BenchPayer *p = &b->payers[i];
    p->started = g_get_monotonic_time ();
    payer_connect (b, p);
  }
  guint left = k;
  gint64 give_up = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;
  while (left > 0) {
    g_main_context_iteration (NULL, TRUE);
    for (guint i = 0; i < k; i++) {
      BenchPayer *p = &b->payers[i];
      if (p->payment == NULL || !tally_payment_is_finished (p->payment))
        continue;
      gint64 took = g_get_monotonic_time () - p->started;
      if (tally_payment_get_state (p->payment) != TALLY_PAYMENT_STATE_DONE) {
        /* Only a connect the full listen backlog refused is tried again,
         * as a payer's app would; latency counts from the first try. */
        const GError *e = tally_payment_get_error (p->payment);
        g_assert_error (e, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
        g_assert_nonnull (strstr (e->message, "cannot connect"));
        b->retries++;
        tally_payment_set_callbacks (p->payment, NULL, NULL, NULL);
        g_clear_pointer (&p->payment, tally_payment_unref);
        g_usleep (1000);
        payer_connect (b, p);
        continue;
      }
      g_assert_nonnull (tally_payment_get_receipt (p->payment));
      g_array_append_val (latency, took);
      tally_payment_set_callbacks (p->payment, NULL, NULL, NULL);
      g_clear_pointer (&p->payment, tally_payment_unref);
      left--;
      if (++b->total == RSS_EARLY)
        b->rss_early = rss_kib (b->pid);
    }
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
  }
}

/* @count payments by @k payers at once; prints rate and latency. */
static void
phase (Bench *b, guint k, guint count, double floor_rate, gint64 floor_p50)
{
  g_autoptr (GArray) latency = g_array_new (FALSE, FALSE, sizeof (gint64));
  guint retries = b->retries;
  gint64 start = g_get_monotonic_time ();
  while (latency->len < count)
    round_pay (b, k, latency);
  double secs = (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  g_print (
    "K=%-2u %5u payments: %6.0f payments/s (floor %.0f), connect to receipt p50 %" G_GINT64_FORMAT
    " us, p99 %" G_GINT64_FORMAT " us (floor p50 %" G_GINT64_FORMAT
    " us); %u connect(s) refused by the full backlog and tried again\n",
    k, latency->len, latency->len / secs, floor_rate, percentile (latency, 50),
    percentile (latency, 99), floor_p50, b->retries - retries);
}

/* The floor: whole payments between two registers in this process, on
 * the same disk: the protocol's crypto and durable commits alone. */
static void
floor_measure (FixtureIssuer *issuer,
               const char *dir,
               const Tally__Limits *limits,
               double *rate,
               gint64 *p50)
{
  guint64 now = tally_now ();
  g_autofree char *a_dir = g_build_filename (dir, "floor-payer", NULL);
  g_autofree char *b_dir = g_build_filename (dir, "floor-payee", NULL);
  TallyRegister *a = fixture_register_new (issuer, a_dir, limits, now);
  TallyRegister *b = fixture_register_new (issuer, b_dir, limits, now);
  fixture_register_fund (issuer, a, 1, FUNDS, now);
  g_autoptr (GArray) took = g_array_new (FALSE, FALSE, sizeof (gint64));
  gint64 start = g_get_monotonic_time ();
  for (guint i = 0; i < 200; i++) {
    gint64 t = g_get_monotonic_time ();
    g_autoptr (GBytes) permission = fixture_pay (a, b, AMOUNT, "floor", now, NULL);
    t = g_get_monotonic_time () - t;
    g_array_append_val (took, t);
  }
  *rate = took->len / ((double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC);
  *p50 = percentile (took, 50);
  tally_register_free (a);
  tally_register_free (b);
}

int
main (int argc, char **argv)
{
  gint payments = 10000, per_k = 400;
  GOptionEntry entries[] = {
    { "payments", 0, 0, G_OPTION_ARG_INT, &payments, "payments in all, for the RSS check", "N" },
    { "per-k", 0, 0, G_OPTION_ARG_INT, &per_k, "payments measured at each K", "M" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- a stall under K concurrent payers");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  if (payments < 3 * per_k || payments < RSS_EARLY || per_k < 1) {
    g_printerr ("--payments must be at least 3 × --per-k and %d\n", RSS_EARLY);
    return 2;
  }

  Bench b = { 0 };
  b.dir = fixture_tmpdir ();
  b.listen = g_strdup_printf ("unix:%s/stall.sock", b.dir);
  g_autoptr (GTestDBus) bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (bus);
  b.bus = g_dbus_connection_new_for_address_sync (g_test_dbus_get_bus_address (bus),
                                                  G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                    G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                  NULL, NULL, &error);
  g_assert_no_error (error);

  g_autoptr (FixtureIssuer) issuer = fixture_issuer_new (FIXTURE_CURRENCY);
  Tally__Limits limits = fixture_limits ();
  limits.max_payment = 1000;
  limits.balance_cap = TALLY_AMOUNT_MAX;
  limits.max_offline_payments = 1000000;
  limits.max_offline_seconds = 10 * FIXTURE_YEAR;

  double floor_rate;
  gint64 floor_p50;
  floor_measure (issuer, b.dir, &limits, &floor_rate, &floor_p50);
  for (guint i = 0; i < MAX_K; i++) {
    g_autofree char *dir = g_strdup_printf ("%s/payer%u", b.dir, i);
    b.payers[i].reg = fixture_register_new (issuer, dir, &limits, tally_now ());
    fixture_register_fund (issuer, b.payers[i].reg, 1, FUNDS, tally_now ());
  }
  tallyd_start (&b, issuer, &limits);

  g_print ("floor: one whole payment in one process: %.0f payments/s, p50 %" G_GINT64_FORMAT
           " us\n",
           floor_rate, floor_p50);
  const guint ks[] = { 1, 4, 16 };
  for (guint i = 0; i < G_N_ELEMENTS (ks); i++)
    phase (&b, ks[i], (guint) per_k, floor_rate, floor_p50);
  /* The rest at K=16, for the RSS check. */
  g_autoptr (GArray) rest = g_array_new (FALSE, FALSE, sizeof (gint64));
  while (b.total < (guint) payments)
    round_pay (&b, MAX_K, rest);
  guint64 rss_end = rss_kib (b.pid);
  /* The floor again, with tallyd idle: the machine's load moves both. */
  double floor_rate_after;
  gint64 floor_p50_after;
  g_autofree char *floor_dir = g_build_filename (b.dir, "floor-after", NULL);
  g_assert_cmpint (g_mkdir (floor_dir, 0700), ==, 0);
  floor_measure (issuer, floor_dir, &limits, &floor_rate_after, &floor_p50_after);
  g_print ("floor again at the end: %.0f payments/s, p50 %" G_GINT64_FORMAT " us\n",
           floor_rate_after, floor_p50_after);
  g_assert_cmpint (stall_balance (&b), ==, (gint64) b.total * AMOUNT);
  g_print ("tallyd RSS: %" G_GUINT64_FORMAT " KiB after %d payments, %" G_GUINT64_FORMAT
           " KiB after %u (%+" G_GINT64_FORMAT " KiB)\n",
           b.rss_early, RSS_EARLY, rss_end, b.total, (gint64) rss_end - (gint64) b.rss_early);

  kill (b.pid, SIGTERM);
  g_subprocess_wait (b.daemon, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&b.daemon);
  for (guint i = 0; i < MAX_K; i++)
    tally_register_free (b.payers[i].reg);
  g_dbus_connection_close_sync (b.bus, NULL, NULL);
  g_object_unref (b.bus);
  g_test_dbus_down (bus);
  fixture_remove_tree (b.dir);
  g_free (b.dir);
  g_free (b.listen);
  return 0;
}
