/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Registers syncing against one tally-issuerd.  A real tally-issuerd (its
 * own process, SQLite store, plain HTTP on 127.0.0.1) serves one account;
 * N registers in this process enrol with it and top up through TallySync
 * (daemon/tally-sync.c), the client each tallyd runs for Register1.Sync,
 * one TallySync and one HTTP session per register as N devices would
 * have.  Every round, each register pays the next one offline (a ring;
 * with N = 1 a spare register that syncs only at the end), so every
 * bundle carries a real payment and the receipt of another; then all N
 * sync at once.  Prints syncs per second, p50/p99/max latency from
 * tally_sync_run_async () to its callback, and the CPU per sync of
 * tally-issuerd and of this process, next to floors measured in the same
 * run: an empty GET /v1/keys round trip, and one sync alone.
 *
 * It asserts that every sync succeeds and that the issuer's audit
 * balances with every register's balance booked; it asserts no time.
 *
 * Usage: bench-sync [--registers N] [--rounds R]
 */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-issuer.h"
#include "tally-sync.h"
#include "wallet-fixture.h"

#define ACCOUNT     "bench"
#define AMOUNT      100   /* each payment, minor units */
#define TOPUP       20000 /* each register's load; the default balance cap is 50000 */
#define MAX_N       256   /* the issuer's default max_connections */
#define FLOOR_SYNCS 8     /* at least this many lone syncs for the floor */
#define KEYS_GETS   200
#define TIMEOUT_S   120

typedef struct
{
  TallyRegister *reg;
  TallySync *sync;
  gint64 started;
  gint64 took; /* µs; -1 while syncing */
} Device;

typedef struct
{
  char *dir;
  GSubprocess *issuerd;
  GPid pid;
  char *url;
  char *operator_hex;
  char *account_token;
  guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES];
  SoupSession *session;
  guint n;         /* registers measured */
  Device *devices; /* n, then the spare when n == 1 */
  guint n_devices;
} Bench;

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

static gint64
sum_us (GArray *v)
{
  gint64 sum = 0;
  for (guint i = 0; i < v->len; i++)
    sum += g_array_index (v, gint64, i);
  return sum;
}

/* CPU time of process @pid, every thread of it alive now, in µs (the
 * scheduler's nanoseconds, not clock ticks). */
static gint64
cpu_us (GPid pid)
{
  g_autofree char *tasks = g_strdup_printf ("/proc/%d/task", (int) pid);
  g_autoptr (GDir) dir = g_dir_open (tasks, 0, NULL);
  g_assert_nonnull (dir);
  guint64 ns = 0;
  const char *tid;
  while ((tid = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (tasks, tid, "schedstat", NULL);
    g_autofree char *stat = NULL;
    if (g_file_get_contents (path, &stat, NULL, NULL))
      ns += g_ascii_strtoull (stat, NULL, 10);
  }
  return (gint64) (ns / 1000);
}

/* The counter @name of the @table lines ("TcpExt", "Tcp") in @file
 * (/proc/net/netstat, /proc/net/snmp): the whole machine's. */
static gint64
net_counter (const char *file, const char *table, const char *name)
{
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (file, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", 0);
  g_autofree char *prefix = g_strconcat (table, ":", NULL);
  for (guint i = 0; lines[i] != NULL && lines[i + 1] != NULL; i++) {
    if (!g_str_has_prefix (lines[i], prefix) || !g_str_has_prefix (lines[i + 1], prefix))
      continue;
    g_auto (GStrv) names = g_strsplit (lines[i], " ", 0);
    g_auto (GStrv) values = g_strsplit (lines[i + 1], " ", 0);
    for (guint j = 1; names[j] != NULL && values[j] != NULL; j++)
      if (strcmp (names[j], name) == 0)
        return g_ascii_strtoll (values[j], NULL, 10);
  }
  g_error ("no %s %s in %s", table, name, file);
}

/* TallySync says "synced with" for every sync: only warnings and worse
 * are shown. */
static GLogWriterOutput
quiet_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG))
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_default (level, fields, n_fields, user_data);
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  gint64 give_up = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;
  while (*slot == NULL) {
    g_main_context_iteration (NULL, TRUE);
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
  }
  return *slot;
}

/* @method @path with @token, a JSON body @json (may be NULL); asserts
 * @status and returns the JSON answer, or NULL when @json_answer is
 * FALSE. */
static JsonObject *
http_call (Bench *b,
           const char *method,
           const char *path,
           const char *token,
           const char *json,
           guint status,
           gboolean json_answer)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *url = g_strconcat (b->url, path, NULL);
  g_autoptr (SoupMessage) msg = soup_message_new (method, url);
  if (token != NULL) {
    g_autofree char *auth = g_strconcat ("Bearer ", token, NULL);
    soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
  }
  if (json != NULL) {
    g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
    soup_message_set_request_body_from_bytes (msg, "application/json", body);
  }
  GAsyncResult *result = NULL;
  soup_session_send_and_read_async (b->session, msg, G_PRIORITY_DEFAULT, NULL, store_result,
                                    &result);
  g_autoptr (GBytes) answer =
    soup_session_send_and_read_finish (b->session, wait_result (&result), &error);
  g_object_unref (result);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, status);
  if (!json_answer)
    return NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;
  const char *data = g_bytes_get_data (answer, &len);
  g_assert_true (json_parser_load_from_data (parser, data, (gssize) len, &error));
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

static char *
wait_for_port (const char *path)
{
  for (guint i = 0; i < 400; i++) {
    char *text = NULL;
    if (g_file_get_contents (path, &text, NULL, NULL) && strchr (text, '\n') != NULL)
      return text;
    g_free (text);
    g_usleep (50 * 1000);
  }
  g_error ("tally-issuerd did not write %s; see its log in the bench directory", path);
}

/* A new issuer in @b->dir, served by tally-issuerd on 127.0.0.1, with an
 * operator token; the account ACCOUNT holding what every register loads. */
static void
issuerd_start (Bench *b)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *issuer_dir = g_build_filename (b->dir, "issuer", NULL);
  g_autoptr (TallyIssuer) issuer =
    tally_issuer_create (issuer_dir, "Bench Bank", "EUR", tally_now (), &error);
  g_assert_no_error (error);
  memcpy (b->issuer_key, tally_issuer_get_public_key (issuer), sizeof b->issuer_key);
  g_clear_pointer (&issuer, tally_issuer_free);

  guint8 token[32];
  randombytes_buf (token, sizeof token);
  b->operator_hex = tally_hex_encode (token, sizeof token);
  sodium_memzero (token, sizeof token);
  g_autofree char *token_file = g_build_filename (b->dir, "operator.token", NULL);
  g_assert_true (g_file_set_contents_full (token_file, b->operator_hex, -1,
                                           G_FILE_SET_CONTENTS_NONE, 0600, &error));
  g_autofree char *conf = g_build_filename (b->dir, "issuerd.conf", NULL);
  g_assert_true (g_file_set_contents (conf,
                                      "[issuer]\ndir=issuer\n[http]\nlisten=127.0.0.1:0\n"
                                      "operator_token_file=operator.token\n",
                                      -1, &error));
  const char *root = g_getenv ("TALLY_BUILD_ROOT");
  g_autofree char *exe =
    g_build_filename (root != NULL ? root : ".", "issuer", "tally-issuerd", NULL);
  g_autofree char *port_file = g_build_filename (b->dir, "port", NULL);
  g_autofree char *log = g_build_filename (b->dir, "issuerd.log", NULL);
  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_subprocess_launcher_unsetenv (launcher, "G_MESSAGES_DEBUG");
  g_subprocess_launcher_set_stderr_file_path (launcher, log);
  b->issuerd = g_subprocess_launcher_spawn (launcher, &error, exe, "--config", conf, "--port-file",
                                            port_file, NULL);
  g_assert_no_error (error);
  b->pid = (GPid) g_ascii_strtoll (g_subprocess_get_identifier (b->issuerd), NULL, 10);
  g_autofree char *port = wait_for_port (port_file);
  b->url = g_strdup_printf ("http://127.0.0.1:%u", (guint) g_ascii_strtoull (port, NULL, 10));

  g_autoptr (JsonObject) account = http_call (b, "POST", "/v1/operator/accounts", b->operator_hex,
                                              "{\"name\": \"" ACCOUNT "\"}", 201, TRUE);
  b->account_token = g_strdup (json_object_get_string_member (account, "token"));
  g_autofree char *deposit =
    g_strdup_printf ("{\"amount\": %" G_GINT64_FORMAT "}", (gint64) b->n_devices * TOPUP);
  g_autoptr (JsonObject) balance = http_call (
    b, "POST", "/v1/operator/accounts/" ACCOUNT "/deposit", b->operator_hex, deposit, 200, TRUE);
}

/* Register @i: created trusting the issuer, enrolled with the account
 * and loaded with TOPUP, all through its TallySync. */
static void
device_start (Bench *b, guint i)
{
  g_autoptr (GError) error = NULL;
  Device *d = &b->devices[i];
  g_autofree char *dir = g_strdup_printf ("%s/register%u", b->dir, i);
  d->reg = tally_register_create (dir, b->issuer_key, &error);
  g_assert_no_error (error);
  d->sync = tally_sync_new (d->reg, dir, b->url, NULL, FALSE, &error);
  g_assert_no_error (error);
  tally_sync_set_request_timeout (d->sync, TIMEOUT_S);

  GAsyncResult *result = NULL;
  tally_sync_enroll_async (d->sync, ACCOUNT, b->account_token, store_result, &result);
  g_assert_true (tally_sync_enroll_finish (d->sync, wait_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  tally_sync_topup_async (d->sync, TOPUP, store_result, &result);
  g_assert_true (tally_sync_topup_finish (d->sync, wait_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  g_assert_cmpint (tally_register_get_balance (d->reg), ==, TOPUP);
}

/* Each measured register pays the next one (the spare when alone). */
static void
pay_round (Bench *b)
{
  guint64 now = tally_now ();
  for (guint i = 0; i < b->n; i++) {
    TallyRegister *payee = b->devices[(i + 1) % b->n_devices].reg;
    g_autoptr (GBytes) permission =
      fixture_pay (b->devices[i].reg, payee, AMOUNT, "bench", now, NULL);
  }
}

static void
on_synced (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Device *d = user_data;
  g_autoptr (GError) error = NULL;
  gboolean ok = tally_sync_run_finish (d->sync, result, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  d->took = g_get_monotonic_time () - d->started;
}

static void
sync_start (Device *d)
{
  d->took = -1;
  d->started = g_get_monotonic_time ();
  tally_sync_run_async (d->sync, on_synced, d);
}

/* Waits for devices @from to @to - 1, appending their latencies. */
static void
sync_wait (Bench *b, guint from, guint to, GArray *latency)
{
  gint64 give_up = g_get_monotonic_time () + TIMEOUT_S * G_USEC_PER_SEC;
  for (guint i = from; i < to; i++) {
    while (b->devices[i].took < 0) {
      g_main_context_iteration (NULL, TRUE);
      g_assert_cmpint (g_get_monotonic_time (), <, give_up);
    }
    g_array_append_val (latency, b->devices[i].took);
  }
}

/* Floor: the p50 of KEYS_GETS GET /v1/keys, one after another from one
 * HTTP session; the smallest request a sync makes.  *@connects: TCP
 * connects per GET (1 when the server keeps no connection alive). */
static gint64
keys_floor (Bench *b, double *connects)
{
  g_autoptr (GArray) took = g_array_new (FALSE, FALSE, sizeof (gint64));
  gint64 opens = net_counter ("/proc/net/snmp", "Tcp", "ActiveOpens");
  for (guint i = 0; i < KEYS_GETS; i++) {
    gint64 t = g_get_monotonic_time ();
    http_call (b, "GET", "/v1/keys", NULL, NULL, 200, FALSE);
    t = g_get_monotonic_time () - t;
    g_array_append_val (took, t);
  }
  *connects = (double) (net_counter ("/proc/net/snmp", "Tcp", "ActiveOpens") - opens) / KEYS_GETS;
  return percentile (took, 50);
}

/* Floor: syncs alone, one register after another, after a round of
 * payments each; returns their latencies. */
static GArray *
lone_floor (Bench *b)
{
  GArray *took = g_array_new (FALSE, FALSE, sizeof (gint64));
  while (took->len < MAX (FLOOR_SYNCS, b->n)) {
    pay_round (b);
    for (guint i = 0; i < b->n; i++) {
      sync_start (&b->devices[i]);
      sync_wait (b, i, i + 1, took);
    }
  }
  return took;
}

typedef struct
{
  gint64 wall;        /* µs spent syncing */
  gint64 issuerd_cpu; /* µs */
  gint64 clients_cpu; /* µs, this process */
  gint64 connects;    /* TCP connects, the whole machine's */
  gint64 overflows;   /* listen queues found full, the whole machine's */
} Spent;

/* @rounds rounds: payments, then every measured register syncs at once. */
static void
rounds_run (Bench *b, guint rounds, GArray *latency, Spent *spent)
{
  for (guint r = 0; r < rounds; r++) {
    pay_round (b);
    gint64 cpu_d = cpu_us (b->pid), cpu_self = cpu_us (getpid ());
    gint64 connects = net_counter ("/proc/net/snmp", "Tcp", "ActiveOpens");
    gint64 overflows = net_counter ("/proc/net/netstat", "TcpExt", "ListenOverflows");
    gint64 start = g_get_monotonic_time ();
    for (guint i = 0; i < b->n; i++)
      sync_start (&b->devices[i]);
    sync_wait (b, 0, b->n, latency);
    spent->wall += g_get_monotonic_time () - start;
    spent->issuerd_cpu += cpu_us (b->pid) - cpu_d;
    spent->clients_cpu += cpu_us (getpid ()) - cpu_self;
    spent->connects += net_counter ("/proc/net/snmp", "Tcp", "ActiveOpens") - connects;
    spent->overflows += net_counter ("/proc/net/netstat", "TcpExt", "ListenOverflows") - overflows;
  }
}

/* Everything booked: the audit balances, nothing is in flight, and the
 * registers' balances add up to what the account loaded onto them. */
static void
audit_check (Bench *b)
{
  if (b->n_devices > b->n) {
    g_autoptr (GArray) spare = g_array_new (FALSE, FALSE, sizeof (gint64));
    sync_start (&b->devices[b->n]);
    sync_wait (b, b->n, b->n_devices, spare);
  }
  gint64 sum = 0;
  for (guint i = 0; i < b->n_devices; i++)
    sum += tally_register_get_balance (b->devices[i].reg);
  g_assert_cmpint (sum, ==, (gint64) b->n_devices * TOPUP);
  g_autoptr (JsonObject) audit =
    http_call (b, "GET", "/v1/operator/audit", b->operator_hex, NULL, 200, TRUE);
  g_assert_true (json_object_get_boolean_member (audit, "balanced"));
  g_assert_cmpint (json_object_get_int_member (audit, "in_flight"), ==, 0);
  g_assert_cmpint (json_object_get_int_member (audit, "offline"), ==, sum);
  g_assert_cmpint (json_object_get_int_member (audit, "registers"), ==, b->n_devices);
}

static void
report (Bench *b,
        guint rounds,
        gint64 keys_p50,
        double keys_connects,
        GArray *lone,
        GArray *latency,
        const Spent *s)
{
  guint syncs = latency->len;
  g_print ("machine: %u CPUs online; tally-issuerd: SQLite, plain HTTP on 127.0.0.1\n",
           g_get_num_processors ());
  g_print ("client: TallySync (daemon/tally-sync.c, what tallyd runs for Register1.Sync), "
           "%u in this process, one HTTP session each\n",
           b->n);
  g_print ("floor: GET /v1/keys alone p50 %" G_GINT64_FORMAT
           " us (%.2f TCP connects each); one sync alone p50 %" G_GINT64_FORMAT
           " us, max %" G_GINT64_FORMAT " us (%u syncs, %.0f syncs/s one after another)\n",
           keys_p50, keys_connects, percentile (lone, 50), percentile (lone, 100), lone->len,
           lone->len / ((double) sum_us (lone) / G_USEC_PER_SEC));
  g_print ("N=%-3u %u rounds, %u syncs: %.1f syncs/s, latency p50 %" G_GINT64_FORMAT
           " us, p99 %" G_GINT64_FORMAT " us, max %" G_GINT64_FORMAT " us\n",
           b->n, rounds, syncs, syncs / ((double) s->wall / G_USEC_PER_SEC),
           percentile (latency, 50), percentile (latency, 99), percentile (latency, 100));
  g_print ("CPU per sync: tally-issuerd %" G_GINT64_FORMAT
           " us, this process (the registers) %" G_GINT64_FORMAT " us\n",
           s->issuerd_cpu / syncs, s->clients_cpu / syncs);
  g_print (
    "while syncing (the whole machine's counters): %.1f TCP connects per sync, %" G_GINT64_FORMAT
    " times a listen queue was full\n",
    (double) s->connects / syncs, s->overflows);
}

int
main (int argc, char **argv)
{
  gint n = 16, rounds = 20;
  GOptionEntry entries[] = {
    { "registers", 'n', 0, G_OPTION_ARG_INT, &n, "registers syncing at once (default 16)", "N" },
    { "rounds", 'r', 0, G_OPTION_ARG_INT, &rounds, "rounds of payments and syncs (default 20)",
      "R" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx =
    g_option_context_new ("- N registers syncing at once against one tally-issuerd");
  g_option_context_set_description (
    ctx, "Each round every register pays the next one offline, then all N sync at once.\n"
         "Prints syncs/s and p50/p99/max latency next to floors from the same run.\n"
         "Finds tally-issuerd under $TALLY_BUILD_ROOT/issuer (default ./issuer).\n");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  /* Every round (and each of the floor's) moves AMOUNT from a lone
   * register to the spare: half its load leaves room for both. */
  if (n < 1 || n > MAX_N || rounds < 1 || (gint64) rounds * AMOUNT * 2 > TOPUP) {
    g_printerr ("--registers must be 1 to %d and --rounds 1 to %d\n", MAX_N, TOPUP / AMOUNT / 2);
    return 2;
  }

  g_log_set_writer_func (quiet_writer, NULL, NULL);
  Bench b = { 0 };
  b.n = (guint) n;
  b.n_devices = b.n == 1 ? 2 : b.n;
  b.devices = g_new0 (Device, b.n_devices);
  b.dir = fixture_tmpdir ();
  b.session = soup_session_new_with_options ("timeout", TIMEOUT_S, NULL);
  issuerd_start (&b);
  for (guint i = 0; i < b.n_devices; i++)
    device_start (&b, i);
  /* First syncs fetch the key set and revocation list whole; later ones
   * get 304 for both, as a device's regular syncs do. */
  g_autoptr (GArray) first = g_array_new (FALSE, FALSE, sizeof (gint64));
  for (guint i = 0; i < b.n_devices; i++) {
    sync_start (&b.devices[i]);
    sync_wait (&b, i, i + 1, first);
  }

  double keys_connects;
  gint64 keys_p50 = keys_floor (&b, &keys_connects);
  g_autoptr (GArray) lone = lone_floor (&b);
  g_autoptr (GArray) latency = g_array_new (FALSE, FALSE, sizeof (gint64));
  Spent spent = { 0 };
  rounds_run (&b, (guint) rounds, latency, &spent);
  audit_check (&b);
  report (&b, (guint) rounds, keys_p50, keys_connects, lone, latency, &spent);

  for (guint i = 0; i < b.n_devices; i++) {
    tally_sync_unref (b.devices[i].sync);
    tally_register_free (b.devices[i].reg);
  }
  g_free (b.devices);
  g_clear_object (&b.session);
  g_subprocess_send_signal (b.issuerd, SIGTERM);
  g_assert_true (g_subprocess_wait (b.issuerd, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_subprocess_get_exit_status (b.issuerd), ==, 0);
  g_clear_object (&b.issuerd);
  fixture_remove_tree (b.dir);
  g_free (b.dir);
  g_free (b.url);
  sodium_memzero (b.operator_hex, strlen (b.operator_hex));
  g_free (b.operator_hex);
  sodium_memzero (b.account_token, strlen (b.account_token));
  g_free (b.account_token);
  return 0;
}
