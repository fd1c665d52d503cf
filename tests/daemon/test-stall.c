/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stall under a crowd, over the stream transport on a UNIX socket: a
 * stall daemon exported on a private bus, honest payers driven as payments
 * in this process (each with its own register), and hostile connections
 * made by hand: silent, dripping a byte at a time, or sending junk
 * (stall-fixture.c).  The flood test runs tallyd itself under a low
 * RLIMIT_NOFILE.  test-stall-handshake.c holds payers that stop or come
 * back mid-handshake.
 *
 * Nothing here measures time against a limit: the hello deadline of the
 * tests that hold a silent connection is longer than the whole test, so a
 * payment that completes did so beside the silent connection, not after
 * it was closed.  Loops only wait, with a deadline against hanging.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>

#include "stall-fixture.h"

#include "tally-gatt-server.h"
#include "tally-hex.h"

/* --- tests --- */

/* A silent connection arrives first and holds its link for longer than
 * the test lasts (hello deadline 60 s): the honest payer who comes next
 * pays at once, and the request's object finishes with it. */
static void
test_silent_connection_does_not_block_honest_payer (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer payer = { 0 };
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);

  Hostile silent = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  /* The silent link took the request's placeholder. */
  wait_object_state (f, request, "wait-hello");

  gint64 start = g_get_monotonic_time ();
  payer_start (f, &payer);
  wait_until (payer_finished, &payer);
  g_test_message ("honest payer done %" G_GINT64_FORMAT " ms after connecting, beside a silent "
                  "connection",
                  (g_get_monotonic_time () - start) / 1000);

  g_assert_null (tally_payment_get_error (payer.payment));
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_nonnull (tally_payment_get_receipt (payer.payment));
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  g_assert_cmpint (tally_register_get_balance (payer.reg), ==, PAYER_BALANCE - AMOUNT);
  /* The request is over: the silent link is told so and closed. */
  wait_until (hostile_closed, &silent);

  hostile_clear (&silent);
  payer_clear (&payer);
}

/* A connection without a valid Hello by the deadline is closed, and the
 * request's object waits again instead of failing. */
static void
test_no_hello_by_deadline_is_closed (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  Payer payer = { 0 };
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);

  Hostile silent = { 0 }, drip = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  hostile_open (f, &drip, HOSTILE_DRIP);
  wait_until (hostile_closed, &silent);
  wait_until (hostile_closed, &drip);
  wait_object_state (f, request, "waiting");
  g_assert_cmpint (stall_balance (f), ==, 0);

  payer_start (f, &payer);
  wait_until (payer_finished, &payer);
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  hostile_clear (&silent);
  hostile_clear (&drip);
  payer_clear (&payer);
}

/* Two payers in their handshakes with one Payers=1 request: the first Pay
 * takes it, the other is told AlreadyPaid before it spent anything. */
static void
test_two_payers_race_one_credit (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer a = { .hold = TRUE }, b = { .hold = TRUE };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  g_autofree char *request = stall_request (f, 1);

  payer_start (f, &a);
  payer_start (f, &b);
  wait_until (payer_confirming, &a);
  wait_until (payer_confirming, &b);
  /* Both saw the offer; a pays. */
  g_assert_true (tally_payment_confirm (a.payment, NULL));
  wait_until (payer_finished, &a);
  wait_until (payer_finished, &b);

  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_FAILED);
  g_assert_error (tally_payment_get_error (b.payment), TALLY_ERROR, TALLY_ERROR_ALREADY_PAID);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  g_assert_cmpint (tally_register_get_balance (a.reg), ==, PAYER_BALANCE - AMOUNT);
  g_assert_cmpint (tally_register_get_balance (b.reg), ==, PAYER_BALANCE);
  wait_object_state (f, request, "done");
  /* b's confirmation comes too late and changes nothing. */
  g_assert_false (tally_payment_confirm (b.payment, NULL));
  g_assert_cmpint (tally_register_get_balance (b.reg), ==, PAYER_BALANCE);

  payer_clear (&a);
  payer_clear (&b);
}

/* The silent link that led the request's object is closed at its Hello
 * deadline while a payer is in its handshake: the object shows that
 * payer's handshake, not a failure, and finishes with it. */
static void
test_object_follows_next_handshake_when_lead_drops (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  Payer payer = { .hold = TRUE };
  payer_init (f, &payer, "payer");
  g_autofree char *request = stall_request (f, 1);

  Hostile silent = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  wait_object_state (f, request, "wait-hello");
  payer_start (f, &payer);
  wait_until (payer_confirming, &payer);
  wait_until (hostile_closed, &silent);
  wait_object_state (f, request, "wait-pay");

  g_assert_true (tally_payment_confirm (payer.payment, NULL));
  wait_until (payer_finished, &payer);
  g_assert_cmpint (tally_payment_get_state (payer.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  hostile_clear (&silent);
  payer_clear (&payer);
}

/* A payer that saw the offer and refused does not end the request while
 * another payer is in its handshake: that one still pays. */
static void
test_refusal_leaves_request_to_other_payer (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer a = { .hold = TRUE }, b = { .hold = TRUE };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  g_autofree char *request = stall_request (f, 1);

  payer_start (f, &a);
  wait_until (payer_confirming, &a);
  payer_start (f, &b);
  wait_until (payer_confirming, &b);
  g_assert_true (tally_payment_reject (a.payment, TALLY_ERROR_REJECTED, "not mine", NULL));
  wait_until (payer_finished, &a);
  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_FAILED);
  /* The object shows b's handshake now. */
  wait_object_state (f, request, "wait-pay");

  g_assert_true (tally_payment_confirm (b.payment, NULL));
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  wait_object_state (f, request, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  g_assert_cmpint (tally_register_get_balance (a.reg), ==, PAYER_BALANCE);
  g_assert_cmpint (tally_register_get_balance (b.reg), ==, PAYER_BALANCE - AMOUNT);

  payer_clear (&a);
  payer_clear (&b);
}

/* Cancel on the request's object ends the request: it fails Cancelled,
 * and every payer still in its handshake is told so and spends nothing. */
static void
test_cancel_tells_every_handshake (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer a = { .hold = TRUE }, b = { .hold = TRUE };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  g_autofree char *request = stall_request (f, 1);
  Hostile silent = { 0 };
  hostile_open (f, &silent, HOSTILE_SILENT);
  payer_start (f, &a);
  payer_start (f, &b);
  wait_until (payer_confirming, &a);
  wait_until (payer_confirming, &b);

  g_autoptr (GVariant) reply =
    stall_call (f, request, "org.tally.Payment1", "Cancel", NULL, G_VARIANT_TYPE_UNIT);
  wait_until (payer_finished, &a);
  wait_until (payer_finished, &b);
  wait_until (hostile_closed, &silent);
  g_assert_error (tally_payment_get_error (a.payment), TALLY_ERROR, TALLY_ERROR_CANCELLED);
  g_assert_error (tally_payment_get_error (b.payment), TALLY_ERROR, TALLY_ERROR_CANCELLED);
  wait_object_state (f, request, "failed");
  g_assert_cmpint (stall_balance (f), ==, 0);
  g_assert_cmpint (tally_register_get_balance (a.reg), ==, PAYER_BALANCE);
  g_assert_cmpint (tally_register_get_balance (b.reg), ==, PAYER_BALANCE);

  hostile_clear (&silent);
  payer_clear (&a);
  payer_clear (&b);
}

/* Both payers confirm at once: one Pay is credited, the other arrives at
 * a request already paid.  Its payer spent and holds the permission as
 * pending; the next time it pays this stall the permission goes again and
 * is credited, so nothing is lost, and the request it then pays is paid
 * on top. */
static void
test_late_pay_is_delivered_again_next_time (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer a = { .hold = TRUE }, b = { .hold = TRUE };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  g_autofree char *first = stall_request (f, 1);

  payer_start (f, &a);
  payer_start (f, &b);
  wait_until (payer_confirming, &a);
  wait_until (payer_confirming, &b);
  g_assert_true (tally_payment_confirm (a.payment, NULL));
  g_assert_true (tally_payment_confirm (b.payment, NULL));
  wait_until (payer_finished, &a);
  wait_until (payer_finished, &b);
  wait_object_state (f, first, "done");
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);

  Payer *won = tally_payment_get_state (a.payment) == TALLY_PAYMENT_STATE_DONE ? &a : &b;
  Payer *lost = won == &a ? &b : &a;
  g_assert_cmpint (tally_payment_get_state (won->payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (tally_payment_get_state (lost->payment), ==, TALLY_PAYMENT_STATE_FAILED);
  g_test_message ("the late payer was told: %s", tally_payment_get_error (lost->payment)->message);
  /* Spent, not credited: pending. */
  g_assert_cmpint (tally_register_get_balance (lost->reg), ==, PAYER_BALANCE - AMOUNT);

  /* Next request: the pending permission goes first and is credited; the
   * request stays open for the payment itself. */
  g_autofree char *second = stall_request (f, 1);
  tally_payment_set_callbacks (lost->payment, NULL, NULL, NULL);
  g_clear_pointer (&lost->payment, tally_payment_unref);
  lost->hold = FALSE;
  payer_start (f, lost);
  wait_until (payer_finished, lost);
  g_assert_cmpint (tally_payment_get_state (lost->payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_true (tally_payment_is_redelivery (lost->payment));
  g_assert_cmpint (stall_balance (f), ==, 2 * AMOUNT);
  g_assert_cmpint (tally_register_get_balance (lost->reg), ==, PAYER_BALANCE - AMOUNT);

  tally_payment_set_callbacks (lost->payment, NULL, NULL, NULL);
  g_clear_pointer (&lost->payment, tally_payment_unref);
  lost->confirming = FALSE;
  payer_start (f, lost);
  wait_until (payer_finished, lost);
  g_assert_cmpint (tally_payment_get_state (lost->payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_false (tally_payment_is_redelivery (lost->payment));
  g_assert_cmpint (stall_balance (f), ==, 3 * AMOUNT);
  g_assert_cmpint (tally_register_get_balance (lost->reg), ==, PAYER_BALANCE - 2 * AMOUNT);
  g_assert_cmpint (stall_balance (f) + tally_register_get_balance (a.reg) +
                     tally_register_get_balance (b.reg),
                   ==, 2 * PAYER_BALANCE);

  payer_clear (&a);
  payer_clear (&b);
}

#define CROWD   5
#define HOSTILE 6

/* Five honest payers at once with a Payers=5 request, among silent,
 * dripping and junk connections: every payer holds its receipt, the
 * stall's balance is their sum, and no money appears or vanishes. */
static void
test_crowd_among_hostile_connections_loses_nothing (Fixture *f, gconstpointer data)
{
  stall_start (f, 2);
  Payer payers[CROWD] = { 0 };
  Hostile hostile[HOSTILE] = { 0 };
  for (guint i = 0; i < CROWD; i++) {
    g_autofree char *name = g_strdup_printf ("payer%u", i);
    payer_init (f, &payers[i], name);
  }
  g_autofree char *request = stall_request (f, CROWD);

  for (guint i = 0; i < HOSTILE; i++)
    hostile_open (f, &hostile[i], (HostileKind) (i % 3));
  for (guint i = 0; i < CROWD; i++)
    payer_start (f, &payers[i]);
  for (guint i = 0; i < CROWD; i++)
    wait_until (payer_finished, &payers[i]);

  gint64 total = stall_balance (f);
  guint receipts = 0;
  for (guint i = 0; i < CROWD; i++) {
    g_assert_null (tally_payment_get_error (payers[i].payment));
    g_assert_cmpint (tally_payment_get_state (payers[i].payment), ==, TALLY_PAYMENT_STATE_DONE);
    receipts += tally_payment_get_receipt (payers[i].payment) != NULL;
    g_assert_cmpint (tally_register_get_balance (payers[i].reg), ==, PAYER_BALANCE - AMOUNT);
    total += tally_register_get_balance (payers[i].reg);
  }
  g_assert_cmpuint (receipts, ==, CROWD);
  g_assert_cmpint (stall_balance (f), ==, CROWD * AMOUNT);
  g_assert_cmpint (total, ==, CROWD * PAYER_BALANCE);
  wait_object_state (f, request, "done");
  /* The request is over; every hostile link is closed. */
  for (guint i = 0; i < HOSTILE; i++) {
    wait_until (hostile_closed, &hostile[i]);
    hostile_clear (&hostile[i]);
  }
  for (guint i = 0; i < CROWD; i++)
    payer_clear (&payers[i]);
}

/* The payments queue is full of finished payments and the request's own
 * object is the oldest of them when its first payer is credited: making
 * the object for the next payer prunes the old one, and the request stays
 * open (no use after free under ASan) and takes its second payer. */
static void
test_pruning_finished_payments_keeps_the_request (Fixture *f, gconstpointer data)
{
  stall_start (f, 60);
  Payer a = { 0 }, b = { 0 };
  payer_init (f, &a, "a");
  payer_init (f, &b, "b");
  g_autofree char *request = stall_request (f, 2);

  /* 63 failed Pay () calls after the request's object: 64 in the queue. */
  g_autoptr (GPtrArray) failed = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < TALLY_DAEMON_MAX_PAYMENTS - 1; i++) {
    g_autoptr (GError) error = NULL;
    char *path = tally_daemon_pay (f->stall, "tcp:127.0.0.1:1", NULL, ":1.0", 5000 + i, 30, &error);
    g_assert_no_error (error);
    g_ptr_array_add (failed, path);
  }
  for (guint i = 0; i < failed->len; i++)
    wait_object_state (f, failed->pdata[i], "failed");
  g_assert_cmpuint (tally_daemon_get_payment_count (f->stall), ==, TALLY_DAEMON_MAX_PAYMENTS);

  payer_start (f, &a);
  wait_until (payer_finished, &a);
  g_assert_cmpint (tally_payment_get_state (a.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (stall_balance (f), ==, AMOUNT);
  g_assert_cmpuint (tally_daemon_get_payment_count (f->stall), <=, TALLY_DAEMON_MAX_PAYMENTS);

  /* Still open for the second payer: a new request is refused. */
  g_autoptr (GError) error = NULL;
  g_autofree char *other =
    tally_daemon_request_payment (f->stall, getuid (), AMOUNT, "x", TIMEOUT_SECONDS, 1, &error);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_null (other);

  payer_start (f, &b);
  wait_until (payer_finished, &b);
  g_assert_cmpint (tally_payment_get_state (b.payment), ==, TALLY_PAYMENT_STATE_DONE);
  g_assert_cmpint (stall_balance (f), ==, 2 * AMOUNT);
  g_assert_cmpint (tally_register_get_balance (a.reg) + tally_register_get_balance (b.reg), ==,
                   2 * PAYER_BALANCE - 2 * AMOUNT);

  payer_clear (&a);
  payer_clear (&b);
}

/* --- a flood against tallyd under a low file descriptor limit --- */

#define FLOOD_FD_LIMIT 64
#define FLOOD_SOCKETS  300

static guint
count_fds (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/fd", (int) pid);
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  guint n = 0;
  if (dir == NULL)
    return 0;
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static guint
count_lines (const char *log, const char *needle)
{
  guint n = 0;
  for (const char *p = log; (p = strstr (p, needle)) != NULL; p += strlen (needle))
    n++;
  return n;
}

typedef struct
{
  Fixture *f;
  GDBusConnection *client;
  char *request;
} FloodCall;

/* RequestPayment to tallyd once it owns its name. */
static gboolean
flood_requested (gpointer data)
{
  FloodCall *c = data;
  Call call = { 0 };
  g_autoptr (GError) error = NULL;
  g_dbus_connection_call (
    c->client, "org.tally.TestStall", "/org/tally/register", "org.tally.Register1",
    "RequestPayment", g_variant_new ("(tsa{sv})", (guint64) AMOUNT, "flood", NULL),
    G_VARIANT_TYPE ("(o)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, store_result, &call);
  wait_until (call_done, &call);
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (c->client, call.result, &error);
  g_object_unref (call.result);
  if (reply == NULL) {
    g_usleep (50 * 1000);
    return FALSE;
  }
  g_variant_get (reply, "(o)", &c->request);
  return TRUE;
}

typedef struct
{
  GPid pid;
  guint baseline;
} FdWait;

static gboolean
fds_back_to_baseline (gpointer data)
{
  FdWait *w = data;
  if (count_fds (w->pid) <= w->baseline)
    return TRUE;
  g_usleep (20 * 1000);
  return FALSE;
}

/* tallyd under RLIMIT_NOFILE 64 (soft and hard), flooded with silent
 * connections: it holds no more connections than leave it descriptors of
 * its own, logs about it a bounded number of lines, an honest payer gets
 * through while the flood's sockets are held, and once they close
 * tallyd's descriptors are back to what they were before. */
static void
test_flood_to_fd_limit_keeps_serving (Fixture *f, gconstpointer data)
{
  const char *root = g_getenv ("TALLY_BUILD_ROOT");
  if (root == NULL) {
    g_test_skip ("TALLY_BUILD_ROOT is not set");
    return;
  }
  g_autoptr (GError) error = NULL;
  g_autofree char *tallyd = g_build_filename (root, "daemon", "tallyd", NULL);
  g_autofree char *reg_dir = g_build_filename (f->dir, "stall", NULL);
  tally_register_free (test_register_new (&f->issuer, reg_dir, 5000, 0));
  g_autofree char *key = tally_hex_encode (f->issuer.public_key, TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *conf =
    g_strdup_printf ("[register]\ndir=%s\nissuer_key=%s\n"
                     "[dbus]\nbus=session\nname=org.tally.TestStall\nauthorization=none\n"
                     "[transport]\nlisten=%s\nhello_timeout_seconds=3\nmax_connections=4096\n"
                     "[payment]\ntimeout_seconds=60\n",
                     reg_dir, key, f->listen);
  g_autofree char *conf_path = g_build_filename (f->dir, "tallyd.conf", NULL);
  g_autofree char *log_path = g_build_filename (f->dir, "tallyd.log", NULL);
  g_assert_true (g_file_set_contents (conf_path, conf, -1, &error));

  /* Our own sockets must not run out before tallyd's. */
  struct rlimit own;
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &own), ==, 0);
  own.rlim_cur = own.rlim_max;
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &own), ==, 0);

  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_setenv (launcher, "DBUS_SESSION_BUS_ADDRESS",
                                g_test_dbus_get_bus_address (stall_test_bus), TRUE);
  g_subprocess_launcher_unsetenv (launcher, "G_MESSAGES_DEBUG");
  g_subprocess_launcher_set_stderr_file_path (launcher, log_path);
  /* prlimit, not setrlimit in a child setup: under valgrind that would
   * set only valgrind's own notion of the limit.  prlimit execs tallyd,
   * which keeps its pid. */
  g_autofree char *nofile = g_strdup_printf ("--nofile=%d:%d", FLOOD_FD_LIMIT, FLOOD_FD_LIMIT);
  g_autoptr (GSubprocess) daemon = g_subprocess_launcher_spawn (
    launcher, &error, "prlimit", nofile, "--", tallyd, "--config", conf_path, NULL);
  g_assert_no_error (error);
  GPid pid = (GPid) g_ascii_strtoll (g_subprocess_get_identifier (daemon), NULL, 10);

  FloodCall c = { .f = f };
  c.client = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (stall_test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  wait_until (flood_requested, &c);
  guint baseline = count_fds (pid);
  g_assert_cmpuint (baseline, >, 0);

  /* The flood: for a second (less than the hello deadline), silent
   * sockets, as many as connect while tallyd accepts them and then while
   * its backlog has room, all held open. */
  GPtrArray *flood = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (f->socket_path);
  guint peak = 0;
  gint64 flood_end = g_get_monotonic_time () + G_USEC_PER_SEC;
  while (flood->len < FLOOD_SOCKETS && g_get_monotonic_time () < flood_end) {
    GSocket *s =
      g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &error);
    g_assert_no_error (error);
    g_socket_set_blocking (s, FALSE);
    if (g_socket_connect (s, addr, NULL, NULL)) {
      g_ptr_array_add (flood, s);
    } else {
      g_object_unref (s);
      g_usleep (5 * 1000);
    }
    peak = MAX (peak, count_fds (pid));
  }
  guint held = flood->len;

  /* An honest payer: while the backlog is full its connect fails, and it
   * tries again, as a payer's app would. */
  Payer payer = { 0 };
  payer_init (f, &payer, "payer");
  guint attempts = 0;
  gint64 start = g_get_monotonic_time ();
  for (;;) {
    attempts++;
    payer_start (f, &payer);
    wait_until (payer_finished, &payer);
    peak = MAX (peak, count_fds (pid));
    if (tally_payment_get_state (payer.payment) == TALLY_PAYMENT_STATE_DONE)
      break;
    /* Turned away, as a payer's app would be, until the flood's handshakes
     * reach their deadline: the backlog was full (Disconnected), or every
     * handshake slot taken ("too many payers at once; try again"). */
    const GError *turned_away = tally_payment_get_error (payer.payment);
    if (!g_error_matches (turned_away, TALLY_ERROR, TALLY_ERROR_POLICY))
      g_assert_error (turned_away, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
    g_assert_cmpint (g_get_monotonic_time () - start, <, WAIT_LIMIT_US);
    tally_payment_set_callbacks (payer.payment, NULL, NULL, NULL);
    g_clear_pointer (&payer.payment, tally_payment_unref);
    g_usleep (100 * 1000);
  }
  g_test_message ("flood: %u sockets held, tallyd peaked at %u descriptors of %d (baseline %u); "
                  "honest payer done after %u attempt(s), %" G_GINT64_FORMAT " ms",
                  held, peak, FLOOD_FD_LIMIT, baseline, attempts,
                  (g_get_monotonic_time () - start) / 1000);
  g_assert_cmpuint (peak, <=, FLOOD_FD_LIMIT);
  g_assert_cmpint (tally_register_get_balance (payer.reg), ==, PAYER_BALANCE - AMOUNT);

  /* The flood lets go; tallyd's descriptors come back. */
  g_ptr_array_unref (flood);
  FdWait w = { pid, baseline };
  wait_until (fds_back_to_baseline, &w);

  kill (pid, SIGTERM);
  g_subprocess_wait (daemon, NULL, &error);
  g_assert_no_error (error);
  /* A clean exit (under ASan, no leak either). */
  g_assert_true (g_subprocess_get_if_exited (daemon));
  g_assert_cmpint (g_subprocess_get_exit_status (daemon), ==, 0);
  g_autofree char *log = NULL;
  g_assert_true (g_file_get_contents (log_path, &log, NULL, &error));
  guint lines = count_lines (log, "\n");
  guint cap_lines = count_lines (log, "the most allowed");
  guint accept_lines = count_lines (log, "cannot accept");
  g_test_message ("tallyd logged %u lines: %u about the connection cap, %u about failed accepts",
                  lines, cap_lines, accept_lines);
  g_assert_nonnull (strstr (log, "file descriptor limit 64"));
  g_assert_nonnull (strstr (log, "max_connections=4096 lowered to"));
  /* The flood reached the cap; one line per 10 s at most about it. */
  g_assert_cmpuint (cap_lines, >=, 1);
  g_assert_cmpuint (cap_lines + accept_lines, <=, 2 + WAIT_LIMIT_US / G_USEC_PER_SEC / 10);
  g_assert_cmpuint (lines, <, 100);

  payer_clear (&payer);
  g_dbus_connection_close_sync (c.client, NULL, NULL);
  g_object_unref (c.client);
  g_free (c.request);
}

/* A BLE central's first deadline runs from its connection, before GATT
 * discovery and notification setup: never shorter than the transport's
 * default 15 s, however short hello_timeout_seconds is. */
static void
test_ble_silent_central_deadline_leaves_time_for_gatt_setup (Fixture *f, gconstpointer data)
{
  stall_start (f, 1);
  g_assert_cmpuint (tally_daemon_get_ble_idle_seconds (f->stall), ==,
                    TALLY_GATT_SERVER_DEFAULT_IDLE_SECONDS);
}

static void
test_ble_silent_central_deadline_follows_a_longer_hello_timeout (Fixture *f, gconstpointer data)
{
  stall_start (f, 40);
  g_assert_cmpuint (tally_daemon_get_ble_idle_seconds (f->stall), ==, 40);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  stall_test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (stall_test_bus);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/stall/silent-connection-does-not-block-honest-payer",
       test_silent_connection_does_not_block_honest_payer);
  ADD ("/daemon/stall/no-hello-by-deadline-is-closed", test_no_hello_by_deadline_is_closed);
  ADD ("/daemon/stall/ble-silent-central-deadline-leaves-time-for-gatt-setup",
       test_ble_silent_central_deadline_leaves_time_for_gatt_setup);
  ADD ("/daemon/stall/ble-silent-central-deadline-follows-a-longer-hello-timeout",
       test_ble_silent_central_deadline_follows_a_longer_hello_timeout);
  ADD ("/daemon/stall/two-payers-race-one-credit", test_two_payers_race_one_credit);
  ADD ("/daemon/stall/object-follows-next-handshake-when-lead-drops",
       test_object_follows_next_handshake_when_lead_drops);
  ADD ("/daemon/stall/refusal-leaves-request-to-other-payer",
       test_refusal_leaves_request_to_other_payer);
  ADD ("/daemon/stall/cancel-tells-every-handshake", test_cancel_tells_every_handshake);
  ADD ("/daemon/stall/late-pay-is-delivered-again-next-time",
       test_late_pay_is_delivered_again_next_time);
  ADD ("/daemon/stall/crowd-among-hostile-connections-loses-nothing",
       test_crowd_among_hostile_connections_loses_nothing);
  ADD ("/daemon/stall/flood-to-fd-limit-keeps-serving", test_flood_to_fd_limit_keeps_serving);
  ADD ("/daemon/stall/pruning-finished-payments-keeps-the-request",
       test_pruning_finished_payments_keeps_the_request);
#undef ADD

  int status = g_test_run ();
  g_test_dbus_down (stall_test_bus);
  g_object_unref (stall_test_bus);
  return status;
}
