/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The online path under faults: real tallyd daemons (TallyDaemon on a
 * private bus, in this process) pay each other over the stream transport
 * and sync with a real tally-issuerd (a separate process, SQLite store)
 * through a proxy that breaks the exchange the way a network and a
 * crashing server do:
 *
 *   drop-request   the connection is closed before the request reaches
 *                  the issuer: nothing is booked, the daemon must retry;
 *   drop-response  the request reaches the issuer, which books it and
 *                  answers; the answer is lost;
 *   duplicate      the request reaches the issuer twice (one after the
 *                  other, or both at once), one answer goes back;
 *   restart        tally-issuerd is killed with SIGKILL between request
 *                  and answer (after it answered, or as soon as the request
 *                  is on its way, so wherever it was) and started again on
 *                  the same store; the answer is lost.
 *
 * Faults hit POST /v1/reconcile mostly, the key set and revocation list
 * fetches now and then.  After a quarter of the answers lost, the proxy
 * drops that sync's further tries: the sync fails and the owner's next one
 * sends a new bundle with entries the issuer booked.  The registers'
 * owners retry as a user does (Register1.Sync, or tallyctl sync) until a
 * sync succeeds; in half the scenarios they all sync at once before the
 * last round.
 *
 * After each scenario, read from the issuer (its operator audit over HTTP,
 * its store) and from every register: the audit balances, nothing was
 * issued or booked twice, every register's view at the issuer is what the
 * register holds and what the scenario paid, every payment is credited
 * once and settled.  docs/reliability.md.
 *
 * TALLY_ONLINE_FAULT_SEED and TALLY_ONLINE_FAULT_SCENARIOS (or --seed,
 * --scenarios, --only) choose the run; the seed is printed first.
 */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "faults-http.h"
#include "issuer-test-util.h"
#include "tally-clock.h"
#include "tally-config.h"
#include "tally-daemon.h"
#include "tally-dbus-error.h"
#include "tally-hex.h"
#include "tally-issuer-store.h"
#include "tally-issuer.h"
#include "tally-payment.h"

#define NODES             3
#define DEPOSIT           100000 /* each account, 1,000.00 */
#define LOADED            20000  /* each register, from its account */
#define ROUNDS            3
#define SYNC_TRIES        12 /* a user gives up after this many: a violation */
#define PAYMENT_TIMEOUT   30
#define DEFAULT_SEED      20261208
#define DEFAULT_SCENARIOS 12

typedef enum
{
  FAULT_NONE,
  FAULT_DROP_REQUEST,
  FAULT_DROP_RESPONSE,
  FAULT_DUPLICATE,
  FAULT_RESTART,
  FAULT_KINDS,
} FaultKind;

static const char *
fault_kind_to_string (FaultKind kind)
{
  switch (kind) {
  case FAULT_NONE: return "pass";
  case FAULT_DROP_REQUEST: return "drop-request";
  case FAULT_DROP_RESPONSE: return "drop-response";
  case FAULT_DUPLICATE: return "duplicate";
  case FAULT_RESTART: return "restart";
  case FAULT_KINDS: break;
  }
  return "?";
}

typedef struct
{
  char *name;
  char *dir;
  char *listen;
  TallyDaemon *daemon;
  GDBusConnection *connection;
  guint8 id[TALLY_ID_BYTES];
  gint64 expected; /* what the scenario paid it and it paid */
  guint paid;      /* payments it made */
  guint received;  /* payments it was paid */
} Node;

typedef struct
{
  guint index;
  char *dir;
  char *conf;
  char *port_file;
  char *operator_hex;
  GString *log;
  GRand *rand;       /* the main thread's choices */
  GRand *fault_rand; /* the proxy's, drawn under lock */

  /* Below, under lock: tally-issuerd (restarted by the main thread at
   * the proxy's request) and the proxy's faults and counts. */
  GMutex lock;
  GSubprocess *issuerd;
  guint16 issuerd_port;
  GCond restarted;
  guint restarts; /* done */
  guint faults_left;
  guint fault_percent; /* the chance that a reconciliation meets one */
  guint faults[FAULT_KINDS];
  guint outage_left; /* tries dropped after a lost answer, so the sync fails */
  guint outages;
  guint reconcile_posts; /* that reached the proxy */
  char *broken;          /* what the proxy saw go wrong */

  GThreadedSocketService *proxy;
  char *proxy_url;
  SoupSession *operator_session;
  GDBusConnection *client;
  Node nodes[NODES];
  guint payments;
  guint failed_syncs; /* the owner had to sync again */
} Scenario;

static guint32 run_seed;
static gboolean verbose;
static GTestDBus *test_bus;

/* --- reporting ---------------------------------------------------------------- */

static void scenario_log (Scenario *sc, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
scenario_log (Scenario *sc, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_mutex_lock (&sc->lock);
  g_string_append_vprintf (sc->log, format, ap);
  g_string_append_c (sc->log, '\n');
  g_mutex_unlock (&sc->lock);
  va_end (ap);
}

/* Prints what broke, the scenario's log and how to replay it; exits 1. */
static void G_GNUC_NORETURN violation (Scenario *sc, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
violation (Scenario *sc, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *what = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_printerr ("VIOLATION seed %u scenario %u: %s\n--- scenario log ---\n%s---\n"
              "replay: %s/tests/faults/test-faults-online --seed %u --only %u\n",
              run_seed, sc->index, what, sc->log->str, g_getenv ("TALLY_BUILD_ROOT"), run_seed,
              sc->index);
  fflush (stderr);
  exit (1);
}

/* --- tally-issuerd ---------------------------------------------------------------- */

/* A daemon outlives no test that aborts. */
static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static char *
build_path (const char *dir, const char *name)
{
  return g_build_filename (g_getenv ("TALLY_BUILD_ROOT"), dir, name, NULL);
}

/* Starts tally-issuerd on the scenario's store, from the main thread;
 * called with sc->lock held or before the proxy runs. */
static void
issuerd_start (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = build_path ("issuer", "tally-issuerd");
  g_unlink (sc->port_file);
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  sc->issuerd = g_subprocess_launcher_spawn (launcher, &error, path, "--config", sc->conf,
                                             "--port-file", sc->port_file, NULL);
  if (sc->issuerd == NULL)
    g_error ("tally-issuerd: %s", error->message);
  for (guint i = 0; i < 3000; i++) {
    g_autofree char *text = NULL;
    if (g_file_get_contents (sc->port_file, &text, NULL, NULL) && strchr (text, '\n') != NULL) {
      sc->issuerd_port = (guint16) g_ascii_strtoull (text, NULL, 10);
      return;
    }
    g_usleep (10 * 1000);
  }
  g_error ("tally-issuerd did not start");
}

/* SIGKILL, then the same store again. */
static void
issuerd_restart (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  g_subprocess_send_signal (sc->issuerd, SIGKILL);
  g_assert_true (g_subprocess_wait (sc->issuerd, NULL, &error));
  g_assert_true (g_subprocess_get_if_signaled (sc->issuerd));
  g_assert_cmpint (g_subprocess_get_term_sig (sc->issuerd), ==, SIGKILL);
  g_clear_object (&sc->issuerd);
  issuerd_start (sc);
}

/* In the main thread, which started the daemon: PR_SET_PDEATHSIG follows
 * the thread that forked it, and the proxy's threads come and go. */
static gboolean
issuerd_restart_idle (gpointer user_data)
{
  Scenario *sc = user_data;
  g_mutex_lock (&sc->lock);
  issuerd_restart (sc);
  sc->restarts++;
  g_cond_broadcast (&sc->restarted);
  g_mutex_unlock (&sc->lock);
  return G_SOURCE_REMOVE;
}

/* From the proxy's thread: waits until the main thread restarted it. */
static void
issuerd_restart_from_proxy (Scenario *sc)
{
  g_mutex_lock (&sc->lock);
  guint done = sc->restarts;
  g_idle_add (issuerd_restart_idle, sc);
  while (sc->restarts == done)
    g_cond_wait (&sc->restarted, &sc->lock);
  g_mutex_unlock (&sc->lock);
}

static void
issuerd_stop (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  g_subprocess_send_signal (sc->issuerd, SIGTERM);
  g_assert_true (g_subprocess_wait (sc->issuerd, NULL, &error));
  g_assert_true (g_subprocess_get_if_exited (sc->issuerd));
  g_assert_cmpint (g_subprocess_get_exit_status (sc->issuerd), ==, 0);
  g_clear_object (&sc->issuerd);
}

/* --- the proxy ---------------------------------------------------------------- */

static GSocketConnection *
upstream_connect (Scenario *sc)
{
  g_mutex_lock (&sc->lock);
  guint16 port = sc->issuerd_port;
  g_mutex_unlock (&sc->lock);
  return faults_http_connect (port);
}

static void
proxy_broken (Scenario *sc, const char *what)
{
  g_mutex_lock (&sc->lock);
  if (sc->broken == NULL)
    sc->broken = g_strdup (what);
  g_mutex_unlock (&sc->lock);
}

/* Two answers to one bundle: both 200, at most one that booked it, and
 * of two in turn the second a repeat. */
static void
duplicate_check (Scenario *sc, const FaultsHttp answers[2], gboolean at_once)
{
  guint first = faults_http_status (&answers[0]), second = faults_http_status (&answers[1]);
  gboolean rep0 = faults_http_repeated (&answers[0]), rep1 = faults_http_repeated (&answers[1]);
  scenario_log (sc, "  duplicate%s: HTTP %u repeated %s, HTTP %u repeated %s",
                at_once ? " at once" : "", first, rep0 ? "yes" : "no", second, rep1 ? "yes" : "no");
  if (first != SOUP_STATUS_OK || second != SOUP_STATUS_OK)
    proxy_broken (sc, "a bundle sent twice was refused once");
  else if (!rep0 && !rep1)
    proxy_broken (sc, "a bundle sent twice was booked twice (X-Tally-Repeated: no, twice)");
  else if (!rep1 && !at_once)
    proxy_broken (sc, "the second of two identical bundles was booked anew");
}

/* The request twice, one after the other or both at once; the answer
 * the device gets is either (@pick). */
static gboolean
proxy_duplicate (Scenario *sc,
                 GBytes *request,
                 guint variant,
                 gboolean reconcile,
                 FaultsHttp *answer)
{
  gboolean at_once = variant & 1;
  guint pick = variant >> 1 & 1;
  g_autoptr (GSocketConnection) a = upstream_connect (sc);
  g_autoptr (GSocketConnection) b = at_once ? upstream_connect (sc) : NULL;
  FaultsHttp answers[2] = { { 0 }, { 0 } };
  gboolean ok = faults_http_send (a, request) && (!at_once || faults_http_send (b, request)) &&
                faults_http_answer (a, &answers[0]);
  if (ok && !at_once) {
    b = upstream_connect (sc);
    ok = faults_http_send (b, request);
  }
  ok = ok && faults_http_answer (b, &answers[1]);
  if (ok && reconcile)
    duplicate_check (sc, answers, at_once);
  else if (ok && faults_http_status (&answers[0]) != faults_http_status (&answers[1]))
    proxy_broken (sc, "the same fetch sent twice got two statuses");
  if (ok) {
    *answer = answers[pick];
    answers[pick].bytes = NULL;
  }
  faults_http_clear (&answers[0]);
  faults_http_clear (&answers[1]);
  return ok;
}

/* Chooses the fault for one request while the scenario has some left:
 * on reconciliations at sc->fault_percent, on the key set and revocation
 * list fetches a quarter as often.  @outage: this one starts an outage. */
static FaultKind
proxy_choose (Scenario *sc, gboolean reconcile, guint *variant, gboolean *outage)
{
  guint percent = reconcile ? sc->fault_percent : sc->fault_percent / 4;
  FaultKind kind = FAULT_NONE;
  g_mutex_lock (&sc->lock);
  if (reconcile)
    sc->reconcile_posts++;
  if (reconcile && sc->outage_left > 0) {
    sc->outage_left--;
    kind = FAULT_DROP_REQUEST;
  } else if (sc->faults_left > 0 && (guint) g_rand_int_range (sc->fault_rand, 0, 100) < percent) {
    kind = (FaultKind) g_rand_int_range (sc->fault_rand, FAULT_DROP_REQUEST, FAULT_KINDS);
    sc->faults_left--;
    sc->faults[kind]++;
    /* A quarter of the answers lost stay lost for the sync's every try:
     * the owner syncs again, and the register sends a new bundle with
     * the entries the issuer booked already. */
    *outage = reconcile && (kind == FAULT_DROP_RESPONSE || kind == FAULT_RESTART) &&
              g_rand_int_range (sc->fault_rand, 0, 4) == 0;
    if (*outage) {
      sc->outage_left = TALLY_SYNC_UPLOAD_ATTEMPTS - 1;
      sc->outages++;
    }
  }
  *variant = g_rand_int_range (sc->fault_rand, 0, 4);
  g_mutex_unlock (&sc->lock);
  return kind;
}

/* Sends @req on and gets its answer, under @kind; FALSE when the device
 * gets none. */
static gboolean
proxy_forward (Scenario *sc,
               FaultKind kind,
               guint variant,
               gboolean reconcile,
               GBytes *request,
               FaultsHttp *answer)
{
  g_autoptr (GSocketConnection) up = NULL;
  switch (kind) {
  case FAULT_DROP_REQUEST: return FALSE;
  case FAULT_DUPLICATE: return proxy_duplicate (sc, request, variant, reconcile, answer);
  case FAULT_RESTART:
    up = upstream_connect (sc);
    /* Killed once it answered (it booked), or as soon as the request is
     * sent (it may be anywhere in it). */
    if (faults_http_send (up, request) && variant < 2 && faults_http_answer (up, answer))
      scenario_log (sc, "  issuer answered HTTP %u, repeated %s, then killed",
                    faults_http_status (answer), faults_http_repeated (answer) ? "yes" : "no");
    else
      scenario_log (sc, "  issuer killed with the request on its way");
    issuerd_restart_from_proxy (sc);
    return FALSE;
  case FAULT_DROP_RESPONSE:
  case FAULT_NONE:
    up = upstream_connect (sc);
    if (!faults_http_send (up, request) || !faults_http_answer (up, answer))
      return FALSE;
    if (kind == FAULT_DROP_RESPONSE)
      scenario_log (sc, "  issuer answered HTTP %u, repeated %s; answer dropped",
                    faults_http_status (answer), faults_http_repeated (answer) ? "yes" : "no");
    return kind == FAULT_NONE;
  case FAULT_KINDS: break;
  }
  g_assert_not_reached ();
}

/* One connection from a daemon: one request, its answer or a fault, closed. */
static gboolean
proxy_run (GThreadedSocketService *service,
           GSocketConnection *conn,
           GObject *source,
           gpointer user_data)
{
  Scenario *sc = user_data;
  g_auto (FaultsHttp) req = { 0 };
  g_auto (FaultsHttp) answer = { 0 };
  if (!faults_http_read (g_io_stream_get_input_stream (G_IO_STREAM (conn)), &req, FALSE)) {
    g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
    return TRUE;
  }
  guint variant = 0;
  gboolean outage = FALSE;
  gboolean reconcile = g_str_has_prefix ((const char *) req.bytes->data, "POST /v1/reconcile ");
  FaultKind kind = proxy_choose (sc, reconcile, &variant, &outage);
  g_autofree char *line =
    g_strndup ((const char *) req.bytes->data, strcspn ((const char *) req.bytes->data, "\r"));
  scenario_log (sc, " %s: %s%s", line, fault_kind_to_string (kind),
                outage ? " (the network stays down for this sync's other tries)" : "");
  g_autoptr (GBytes) request = faults_http_closing (&req);
  if (proxy_forward (sc, kind, variant, reconcile, request, &answer))
    g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)),
                               answer.bytes->data, answer.bytes->len, NULL, NULL, NULL);
  g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  return TRUE;
}

static void
proxy_start (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  sc->proxy = G_THREADED_SOCKET_SERVICE (g_threaded_socket_service_new (16));
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_socket_listener_add_address (G_SOCKET_LISTENER (sc->proxy), addr, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error);
  g_assert_no_error (error);
  g_signal_connect (sc->proxy, "run", G_CALLBACK (proxy_run), sc);
  g_socket_service_start (G_SOCKET_SERVICE (sc->proxy));
  sc->proxy_url = g_strdup_printf ("http://127.0.0.1:%u",
                                   g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
}

/* --- the scenario's world ------------------------------------------------------------ */

/* The issuer's store with an account and a certified register per node,
 * each loaded with a voucher bought from its account; made with the
 * library before tally-issuerd opens it. */
static void
world_create (Scenario *sc, guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES])
{
  g_autoptr (GError) error = NULL;
  g_autofree char *issuer_dir = g_build_filename (sc->dir, "issuer", NULL);
  guint64 now = tally_now ();
  g_autoptr (TallyIssuer) issuer =
    tally_issuer_create (issuer_dir, "Test Bank", "EUR", now, &error);
  g_assert_no_error (error);
  memcpy (issuer_key, tally_issuer_get_public_key (issuer), TALLY_PUBLIC_KEY_BYTES);
  Tally__Limits limits;
  tally__limits__init (&limits);
  limits.max_payment = 5000;
  limits.balance_cap = 500000;
  limits.max_offline_payments = 1000;
  limits.max_offline_seconds = 72 * 3600;
  for (guint i = 0; i < NODES; i++) {
    Node *n = &sc->nodes[i];
    n->name = g_strdup_printf ("r%u", i);
    n->dir = g_build_filename (sc->dir, n->name, NULL);
    n->listen = g_strdup_printf ("unix:%s/%s.sock", sc->dir, n->name);
    g_assert_true (tally_issuer_account_create (issuer, n->name, &error));
    g_assert_true (tally_issuer_deposit (issuer, n->name, DEPOSIT, &error));
    g_autoptr (TallyRegister) reg =
      tally_register_create (n->dir, tally_issuer_get_public_key (issuer), &error);
    g_assert_no_error (error);
    g_autoptr (GBytes) cert =
      tally_issuer_certify (issuer, tally_register_get_public_key (reg), n->name, NULL, &limits,
                            now - 60, now + 30 * 24 * 3600, &error);
    g_assert_no_error (error);
    g_assert_true (tally_register_install_certificate (reg, g_bytes_get_data (cert, NULL),
                                                       g_bytes_get_size (cert), now, &error));
    g_autoptr (GBytes) voucher =
      tally_issuer_sell_voucher (issuer, tally_register_get_id (reg), LOADED, now, &error);
    g_assert_no_error (error);
    g_assert_true (tally_register_load (reg, g_bytes_get_data (voucher, NULL),
                                        g_bytes_get_size (voucher), now, &error));
    g_assert_no_error (error);
    memcpy (n->id, tally_register_get_id (reg), TALLY_ID_BYTES);
    n->expected = LOADED;
  }
}

static GDBusConnection *
connect_bus (void)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *c = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

/* The node's tallyd: its register, its stream socket, the issuer through
 * the proxy, syncing only when its owner asks. */
static void
node_start (Scenario *sc, Node *n, const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES])
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_free (config->register_dir);
  config->register_dir = g_strdup (n->dir);
  config->has_issuer_key = TRUE;
  memcpy (config->issuer_key, issuer_key, TALLY_PUBLIC_KEY_BYTES);
  g_free (config->listen);
  config->listen = g_strdup (n->listen);
  config->timeout_seconds = PAYMENT_TIMEOUT;
  g_autofree char *text = g_strdup_printf (
    "[issuer]\nurl=%s\nsync_interval_seconds=0\nrequest_timeout_seconds=30\n", sc->proxy_url);
  g_assert_true (tally_config_load_data (config, text, &error));
  g_assert_no_error (error);
  n->daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  n->connection = connect_bus ();
  g_assert_true (tally_daemon_export (n->daemon, n->connection, &error));
  g_assert_no_error (error);
}

static void
node_stop (Node *n)
{
  g_clear_pointer (&n->daemon, tally_daemon_free);
  if (n->connection != NULL)
    g_dbus_connection_close_sync (n->connection, NULL, NULL);
  g_clear_object (&n->connection);
  g_clear_pointer (&n->name, g_free);
  g_clear_pointer (&n->dir, g_free);
  g_clear_pointer (&n->listen, g_free);
}

static TallyRegister *
node_register (Node *n)
{
  return tally_daemon_get_register (n->daemon);
}

static Scenario *
scenario_new (guint index)
{
  g_autoptr (GError) error = NULL;
  Scenario *sc = g_new0 (Scenario, 1);
  sc->index = index;
  g_mutex_init (&sc->lock);
  g_cond_init (&sc->restarted);
  sc->log = g_string_new (NULL);
  guint32 seeds[2] = { run_seed, index };
  sc->rand = g_rand_new_with_seed_array (seeds, 2);
  sc->fault_rand = g_rand_new_with_seed (g_rand_int (sc->rand));
  /* Now and then every try of one sync fails and the owner tries again. */
  sc->faults_left = (guint) g_rand_int_range (sc->rand, 2, 9);
  sc->fault_percent = 10 + 30 * (guint) g_rand_int_range (sc->rand, 1, 4);
  sc->dir = g_dir_make_tmp ("tally-faults-online-XXXXXX", &error);
  g_assert_no_error (error);
  guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES];
  world_create (sc, issuer_key);

  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  randombytes_buf (token, sizeof token);
  sc->operator_hex = tally_hex_encode (token, sizeof token);
  g_autofree char *token_file = g_build_filename (sc->dir, "operator-token", NULL);
  g_assert_true (g_file_set_contents (token_file, sc->operator_hex, -1, &error));
  g_assert_cmpint (g_chmod (token_file, 0600), ==, 0);
  sc->conf = g_build_filename (sc->dir, "issuerd.conf", NULL);
  sc->port_file = g_build_filename (sc->dir, "port", NULL);
  g_autofree char *conf = g_strdup_printf (
    "[issuer]\ndir=%s/issuer\n[http]\nlisten=127.0.0.1:0\noperator_token_file=%s\n", sc->dir,
    token_file);
  g_assert_true (g_file_set_contents (sc->conf, conf, -1, &error));
  issuerd_start (sc);
  proxy_start (sc);
  sc->operator_session = soup_session_new_with_options ("timeout", 30, NULL);
  sc->client = connect_bus ();

  for (guint i = 0; i < NODES; i++)
    node_start (sc, &sc->nodes[i], issuer_key);
  scenario_log (sc, "scenario %u: %u registers, %u faults to inject, each reconciliation %u %%",
                index, NODES, sc->faults_left, sc->fault_percent);
  return sc;
}

static void
scenario_free (Scenario *sc)
{
  for (guint i = 0; i < NODES; i++)
    node_stop (&sc->nodes[i]);
  g_dbus_connection_close_sync (sc->client, NULL, NULL);
  g_clear_object (&sc->client);
  g_socket_service_stop (G_SOCKET_SERVICE (sc->proxy));
  g_socket_listener_close (G_SOCKET_LISTENER (sc->proxy));
  g_clear_object (&sc->proxy);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  if (sc->issuerd != NULL)
    issuerd_stop (sc);
  g_clear_object (&sc->operator_session);
  test_remove_tree (sc->dir);
  g_free (sc->dir);
  g_free (sc->conf);
  g_free (sc->port_file);
  g_free (sc->operator_hex);
  g_free (sc->proxy_url);
  g_free (sc->broken);
  g_string_free (sc->log, TRUE);
  g_rand_free (sc->rand);
  g_rand_free (sc->fault_rand);
  g_mutex_clear (&sc->lock);
  g_cond_clear (&sc->restarted);
  g_free (sc);
}

/* --- payments over the stream transport ------------------------------------------- */

static void
on_confirm (TallyPayment *payment, gpointer user_data)
{
  g_assert_true (tally_payment_confirm (payment, NULL));
}

static const TallyPaymentCallbacks payer_callbacks = { .confirm = on_confirm };

/* @payee's tallyd makes a request; @payer's register pays it over the
 * stream socket, as a payer's tallyd does for Pay. */
static void
pay (Scenario *sc, Node *payer, Node *payee, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = tally_daemon_request_payment (
    payee->daemon, getuid (), amount, "online faults", PAYMENT_TIMEOUT, 1, &error);
  g_assert_no_error (error);
  static const TallyAcceptPolicy policy = { 0 };
  g_autoptr (TallyPayment) payment =
    tally_payment_new_payer (node_register (payer), &policy, PAYMENT_TIMEOUT);
  tally_payment_set_callbacks (payment, &payer_callbacks, NULL, NULL);
  tally_payment_connect (payment, payee->listen);
  gint64 give_up = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (!tally_payment_is_finished (payment) && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  if (tally_payment_get_state (payment) != TALLY_PAYMENT_STATE_DONE)
    violation (sc, "%s paying %s %" G_GINT64_FORMAT " ended %s: %s", payer->name, payee->name,
               amount, tally_payment_state_to_string (tally_payment_get_state (payment)),
               tally_payment_get_error (payment) ? tally_payment_get_error (payment)->message
                                                 : "no error");
  tally_payment_set_callbacks (payment, NULL, NULL, NULL);
  tally_daemon_register_changed (payer->daemon);
  payer->expected -= amount;
  payer->paid++;
  payee->expected += amount;
  payee->received++;
  sc->payments++;
  scenario_log (sc, "%s paid %s %" G_GINT64_FORMAT, payer->name, payee->name, amount);
}

/* --- syncing, as an owner does ------------------------------------------------------ */

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* Register1.Sync on @n's tallyd, the daemons answering from this thread. */
static gboolean
sync_dbus (Scenario *sc, Node *n, GError **error)
{
  GAsyncResult *result = NULL;
  g_dbus_connection_call (sc->client, g_dbus_connection_get_unique_name (n->connection),
                          "/org/tally/register", "org.tally.Register1", "Sync", NULL, NULL,
                          G_DBUS_CALL_FLAGS_NONE, 120 * 1000, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (sc->client, result, error);
  g_object_unref (result);
  return reply != NULL;
}

static void
leave_terminal (gpointer user_data)
{
  setsid ();
}

/* tallyctl sync against @n's tallyd: TRUE when it exits 0. */
static gboolean
sync_tallyctl (Scenario *sc, Node *n, GError **error)
{
  g_autofree char *tallyctl = build_path ("daemon", "tallyctl");
  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "LC_ALL", "C.UTF-8", TRUE);
  g_subprocess_launcher_set_child_setup (launcher, leave_terminal, NULL, NULL);
  g_autoptr (GSubprocess) proc =
    g_subprocess_launcher_spawn (launcher, error, tallyctl, "--bus", "session", "--name",
                                 g_dbus_connection_get_unique_name (n->connection), "sync", NULL);
  g_assert_nonnull (proc);
  GAsyncResult *result = NULL;
  g_subprocess_communicate_utf8_async (proc, NULL, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8_finish (proc, result, NULL, &err, error));
  g_object_unref (result);
  if (g_subprocess_get_if_exited (proc) && g_subprocess_get_exit_status (proc) == 0)
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "tallyctl sync: %s", g_strchomp (err));
  return FALSE;
}

/* Syncs @n until a sync succeeds, as its owner would; a sync that never
 * recovers is a violation. */
static void
sync_until_clean (Scenario *sc, Node *n)
{
  for (guint attempt = 1; attempt <= SYNC_TRIES; attempt++) {
    g_autoptr (GError) error = NULL;
    gboolean tallyctl = g_rand_int_range (sc->rand, 0, 4) == 0;
    scenario_log (sc, "%s: sync %u (%s)", n->name, attempt,
                  tallyctl ? "tallyctl sync" : "Register1.Sync");
    if (tallyctl ? sync_tallyctl (sc, n, &error) : sync_dbus (sc, n, &error))
      return;
    scenario_log (sc, "%s: sync %u failed: %s", n->name, attempt, error->message);
    sc->failed_syncs++;
  }
  violation (sc, "%s never synced in %u tries", n->name, SYNC_TRIES);
}

/* Every node at once, so that the issuer serves their bundles (and the
 * proxy their faults) side by side; one that fails syncs again alone. */
static void
sync_all_at_once (Scenario *sc)
{
  GAsyncResult *results[NODES] = { NULL };
  guint more = (guint) g_rand_int_range (sc->rand, 1, 4);
  g_mutex_lock (&sc->lock);
  sc->faults_left += more;
  g_mutex_unlock (&sc->lock);
  scenario_log (sc, "every register syncs at once, %u more faults to inject", more);
  for (guint i = 0; i < NODES; i++)
    g_dbus_connection_call (sc->client, g_dbus_connection_get_unique_name (sc->nodes[i].connection),
                            "/org/tally/register", "org.tally.Register1", "Sync", NULL, NULL,
                            G_DBUS_CALL_FLAGS_NONE, 120 * 1000, NULL, store_result, &results[i]);
  for (guint i = 0; i < NODES; i++)
    while (results[i] == NULL)
      g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < NODES; i++) {
    g_autoptr (GError) error = NULL;
    g_autoptr (GVariant) reply = g_dbus_connection_call_finish (sc->client, results[i], &error);
    g_object_unref (results[i]);
    if (reply != NULL)
      continue;
    scenario_log (sc, "%s: sync at once failed: %s", sc->nodes[i].name, error->message);
    sc->failed_syncs++;
    sync_until_clean (sc, &sc->nodes[i]);
  }
}

/* Every node once, in a random order. */
static void
sync_all (Scenario *sc)
{
  guint order[NODES];
  for (guint i = 0; i < NODES; i++)
    order[i] = i;
  for (guint i = NODES - 1; i > 0; i--) {
    guint j = (guint) g_rand_int_range (sc->rand, 0, (gint32) i + 1);
    guint t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (guint i = 0; i < NODES; i++)
    sync_until_clean (sc, &sc->nodes[order[i]]);
}

/* --- the checks ----------------------------------------------------------------- */

/* GET @path from tally-issuerd itself (not through the proxy) with the
 * operator's token: the JSON object. */
static JsonObject *
operator_get (Scenario *sc, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u%s", sc->issuerd_port, path);
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", url);
  g_autofree char *auth = g_strconcat ("Bearer ", sc->operator_hex, NULL);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
  g_autoptr (GBytes) body = soup_session_send_and_read (sc->operator_session, msg, NULL, &error);
  if (body == NULL || soup_message_get_status (msg) != SOUP_STATUS_OK)
    violation (sc, "GET %s: %s (HTTP %u)", path, error ? error->message : "refused",
               soup_message_get_status (msg));
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize len;
  const char *data = g_bytes_get_data (body, &len);
  if (!json_parser_load_from_data (parser, data, (gssize) len, &error) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    violation (sc, "GET %s: not a JSON object", path);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

static void
expect_figure (Scenario *sc, JsonObject *audit, const char *name, gint64 expected)
{
  gint64 got = json_object_get_int_member_with_default (audit, name, G_MININT64);
  if (got != expected)
    violation (sc, "the issuer's audit reports %s %" G_GINT64_FORMAT ", expected %" G_GINT64_FORMAT,
               name, got, expected);
}

/* The operator's audit: the identity holds and balances, exactly what was
 * deposited is issued, what the vouchers took is offline and nothing else
 * moved; no fraud, refusal or revocation from retries. */
static void
check_audit (Scenario *sc)
{
  g_autoptr (JsonObject) audit = operator_get (sc, "/v1/operator/audit");
  if (!json_object_get_boolean_member_with_default (audit, "identity", FALSE))
    violation (sc, "the issuer's audit identity fails");
  if (!json_object_get_boolean_member_with_default (audit, "balanced", FALSE))
    violation (sc, "the issuer's audit does not balance");
  expect_figure (sc, audit, "issued", NODES * DEPOSIT);
  expect_figure (sc, audit, "online", NODES * (DEPOSIT - LOADED));
  expect_figure (sc, audit, "offline", NODES * LOADED);
  expect_figure (sc, audit, "in_flight", 0);
  expect_figure (sc, audit, "fraud_exposure", 0);
  expect_figure (sc, audit, "awaiting", 0);
  expect_figure (sc, audit, "refused", 0);
  expect_figure (sc, audit, "reclaimed", 0);
  expect_figure (sc, audit, "registers", NODES);
  expect_figure (sc, audit, "revoked", 0);
  expect_figure (sc, audit, "fraud_proofs", 0);
  expect_figure (sc, audit, "views_unbacked", 0);
  for (guint i = 0; i < NODES; i++) {
    g_autofree char *path = g_strdup_printf ("/v1/operator/accounts/%s", sc->nodes[i].name);
    g_autoptr (JsonObject) account = operator_get (sc, path);
    gint64 balance = json_object_get_int_member_with_default (account, "balance", G_MININT64);
    if (balance != DEPOSIT - LOADED)
      violation (sc, "account %s holds %" G_GINT64_FORMAT ", expected %d", sc->nodes[i].name,
                 balance, DEPOSIT - LOADED);
  }
}

/* Each register holds what the scenario paid it and it paid, and the
 * issuer's view of it (its store, read once tally-issuerd stopped) is the
 * same. */
static void
check_views (Scenario *sc)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (sc->dir, "issuer", "issuer.db", NULL);
  g_autoptr (TallyIssuerStore) books = tally_issuer_store_sqlite_open (path, FALSE, &error);
  if (books == NULL)
    violation (sc, "the issuer's store does not open: %s", error->message);
  g_assert_true (tally_issuer_store_begin (books, &error));
  for (guint i = 0; i < NODES; i++) {
    Node *n = &sc->nodes[i];
    gint64 held = tally_register_get_balance (node_register (n));
    g_auto (TallyIssuerRegisterRow) row = { 0 };
    if (!tally_issuer_store_register_get (books, n->id, &row, &error))
      violation (sc, "the issuer's books for %s: %s", n->name, error->message);
    if (held != n->expected || row.view_balance != n->expected)
      violation (sc,
                 "%s holds %" G_GINT64_FORMAT ", the issuer's view is %" G_GINT64_FORMAT
                 ", the payments made %" G_GINT64_FORMAT,
                 n->name, held, row.view_balance, n->expected);
  }
  tally_issuer_store_rollback (books);
}

/* Every entry settled; every payment once on each side: each receipt id a
 * payee holds is spent by exactly one payer entry and received by no
 * other payee entry. */
static void
check_entries (Scenario *sc)
{
  g_autoptr (GHashTable) received = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) spent = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < NODES; i++) {
    Node *n = &sc->nodes[i];
    g_autoptr (GError) error = NULL;
    g_autoptr (GPtrArray) entries = tally_register_get_history (node_register (n), 0, &error);
    g_assert_no_error (error);
    guint counts[TALLY_ENTRY_DEFUND + 1] = { 0 };
    for (guint k = 0; k < entries->len; k++) {
      const TallyHistoryEntry *e = entries->pdata[k];
      counts[e->kind]++;
      if (e->state != TALLY_ENTRY_STATE_SETTLED)
        violation (sc, "%s's %s of %" G_GINT64_FORMAT " is %s after a clean sync", n->name,
                   tally_entry_kind_to_string (e->kind), e->amount,
                   tally_entry_state_to_string (e->state));
      GHashTable *set = e->kind == TALLY_ENTRY_RECEIVED ? received : spent;
      if (e->receipt_id != NULL && !g_hash_table_add (set, g_strdup (e->receipt_id)))
        violation (sc, "payment %s is %s twice", e->receipt_id,
                   tally_entry_kind_to_string (e->kind));
    }
    if (counts[TALLY_ENTRY_LOAD] != 1 || counts[TALLY_ENTRY_SPENT] != n->paid ||
        counts[TALLY_ENTRY_RECEIVED] != n->received || counts[TALLY_ENTRY_DEFUND] != 0)
      violation (sc, "%s's history holds %u loads, %u spent, %u received; %u and %u were made",
                 n->name, counts[TALLY_ENTRY_LOAD], counts[TALLY_ENTRY_SPENT],
                 counts[TALLY_ENTRY_RECEIVED], n->paid, n->received);
  }
  if (g_hash_table_size (received) != sc->payments || g_hash_table_size (spent) != sc->payments)
    violation (sc, "%u payments made, %u received, %u spent", sc->payments,
               g_hash_table_size (received), g_hash_table_size (spent));
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, received);
  while (g_hash_table_iter_next (&it, &key, NULL))
    if (!g_hash_table_contains (spent, key))
      violation (sc, "payment %s received but spent by no payer", (const char *) key);
}

/* --- a scenario ------------------------------------------------------------------ */

static void
scenario_run (Scenario *sc)
{
  for (guint round = 0; round < ROUNDS; round++) {
    guint payments = (guint) g_rand_int_range (sc->rand, 1, 4);
    for (guint p = 0; p < payments; p++) {
      guint from = (guint) g_rand_int_range (sc->rand, 0, NODES);
      guint to = (from + (guint) g_rand_int_range (sc->rand, 1, NODES)) % NODES;
      /* Unique within the scenario: 1.00 to 29.99 and the payment's number. */
      gint64 amount = g_rand_int_range (sc->rand, 1, 30) * 100 + sc->payments;
      pay (sc, &sc->nodes[from], &sc->nodes[to], amount);
    }
    /* Some owners sync between payments. */
    for (guint i = 0; i < NODES; i++)
      if (g_rand_boolean (sc->rand))
        sync_until_clean (sc, &sc->nodes[i]);
  }
  /* Every half booked, then every register told its entries settled. */
  if (g_rand_boolean (sc->rand))
    sync_all_at_once (sc);
  else
    sync_all (sc);
  sync_all (sc);

  g_mutex_lock (&sc->lock);
  g_autofree char *broken = g_strdup (sc->broken);
  g_mutex_unlock (&sc->lock);
  if (broken != NULL)
    violation (sc, "%s", broken);
  check_audit (sc);
  check_entries (sc);
  issuerd_stop (sc);
  check_views (sc);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  gint64 seed = g_getenv ("TALLY_ONLINE_FAULT_SEED")
                  ? (gint64) g_ascii_strtoull (g_getenv ("TALLY_ONLINE_FAULT_SEED"), NULL, 10)
                  : DEFAULT_SEED;
  gint scenarios = g_getenv ("TALLY_ONLINE_FAULT_SCENARIOS")
                     ? (gint) g_ascii_strtoull (g_getenv ("TALLY_ONLINE_FAULT_SCENARIOS"), NULL, 10)
                     : DEFAULT_SCENARIOS;
  gint only = -1;
  GOptionEntry entries[] = {
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "print each scenario's log", NULL },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "the run's seed", "N" },
    { "scenarios", 0, 0, G_OPTION_ARG_INT, &scenarios, "how many scenarios", "N" },
    { "only", 0, 0, G_OPTION_ARG_INT, &only, "run only scenario I of the seed", "I" },
    { NULL },
  };
  g_autoptr (GOptionContext) context =
    g_option_context_new ("- tallyd syncing with tally-issuerd through a faulty network");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  if (g_getenv ("TALLY_BUILD_ROOT") == NULL) {
    g_printerr ("TALLY_BUILD_ROOT must name the build directory (meson test sets it)\n");
    return 2;
  }
  g_assert_cmpint (sodium_init (), >=, 0);
  tally_dbus_error_register ();
  run_seed = (guint32) seed;
  g_print ("seed %u, %d scenarios (TALLY_ONLINE_FAULT_SEED, TALLY_ONLINE_FAULT_SCENARIOS)\n",
           run_seed, only >= 0 ? 1 : scenarios);

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  guint faults[FAULT_KINDS] = { 0 }, payments = 0, posts = 0, outages = 0, failed = 0;
  for (gint i = only >= 0 ? only : 0; i < (only >= 0 ? only + 1 : scenarios); i++) {
    Scenario *sc = scenario_new ((guint) i);
    scenario_run (sc);
    if (verbose)
      g_print ("%s", sc->log->str);
    for (guint k = 0; k < FAULT_KINDS; k++)
      faults[k] += sc->faults[k];
    payments += sc->payments;
    posts += sc->reconcile_posts;
    outages += sc->outages;
    failed += sc->failed_syncs;
    scenario_free (sc);
  }
  g_test_dbus_down (test_bus);
  g_clear_object (&test_bus);
  g_print ("payments %u, reconciliations sent %u; faults: drop-request %u, drop-response %u, "
           "duplicate %u, restart %u; answers lost for a whole sync %u; syncs failed and tried "
           "again %u; violations 0\n",
           payments, posts, faults[FAULT_DROP_REQUEST], faults[FAULT_DROP_RESPONSE],
           faults[FAULT_DUPLICATE], faults[FAULT_RESTART], outages, failed);
  /* A run that injected nothing proved nothing. */
  if (only < 0 && scenarios >= 8)
    for (guint k = FAULT_DROP_REQUEST; k < FAULT_KINDS; k++)
      if (faults[k] == 0) {
        g_printerr ("no %s fault was injected in %d scenarios\n", fault_kind_to_string (k),
                    scenarios);
        return 1;
      }
  return 0;
}
