/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stream listener at its limits, on a UNIX socket: the connection cap,
 * and running out of file descriptors (a low RLIMIT_NOFILE in this
 * process).  Clients connect without being accepted (the kernel's backlog
 * holds them), so this process spends descriptors only on what it
 * accepts.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include "tally-stream.h"

#define CLIENTS 8
/* Loops give up (and the test fails) after this long. */
#define WAIT_LIMIT_US (30 * G_USEC_PER_SEC)

typedef struct
{
  char *dir;
  char *path;
  TallyStreamListener *listener;
  GPtrArray *links; /* TallyLink *, held: each keeps its descriptor */
  GPtrArray *clients;
  guint accepted;
} Fixture;

/* Lines the listener logged about failing to accept. */
static guint accept_failure_lines;

static GLogWriterOutput
count_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0 && strstr (fields[i].value, "cannot accept") != NULL)
      accept_failure_lines++;
  return g_log_writer_default (level, fields, n_fields, user_data);
}

static void
on_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  Fixture *f = user_data;
  f->accepted++;
  g_ptr_array_add (f->links, tally_link_ref (link));
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("tally-test-listener-XXXXXX", &error);
  g_assert_no_error (error);
  f->path = g_build_filename (f->dir, "l.sock", NULL);
  g_autofree char *address = g_strdup_printf ("unix:%s", f->path);
  f->links = g_ptr_array_new_with_free_func ((GDestroyNotify) tally_link_unref);
  f->clients = g_ptr_array_new_with_free_func (g_object_unref);
  f->listener =
    tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, on_accept, f, NULL, &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_ptr_array_unref (f->links);
  g_ptr_array_unref (f->clients);
  tally_stream_listener_unref (f->listener);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_rmdir (f->dir);
  g_free (f->path);
  g_free (f->dir);
}

/* Connects CLIENTS sockets; they wait in the backlog until accepted. */
static void
connect_clients (Fixture *f)
{
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (f->path);
  for (guint i = 0; i < CLIENTS; i++) {
    g_autoptr (GError) error = NULL;
    GSocket *s =
      g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &error);
    g_assert_no_error (error);
    g_socket_set_blocking (s, FALSE);
    g_assert_true (g_socket_connect (s, addr, NULL, &error));
    g_assert_no_error (error);
    g_ptr_array_add (f->clients, s);
  }
}

/* Runs the main loop for about @ms. */
static void
run_for (guint ms)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;
  while (g_get_monotonic_time () < end)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

static void
wait_accepted (Fixture *f, guint n)
{
  gint64 give_up = g_get_monotonic_time () + WAIT_LIMIT_US;
  while (f->accepted < n) {
    g_assert_cmpint (g_get_monotonic_time (), <, give_up);
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
  }
}

/* The RLIMIT_NOFILE that leaves exactly @room descriptors free: the limit
 * bounds descriptor numbers, and a new one takes the lowest free number,
 * so count free numbers from 0 (gaps included; a checker's own
 * descriptors, such as valgrind's, are not ours and answer EBADF). */
static rlim_t
limit_leaving (guint room)
{
  int fd = 0;
  for (guint free_seen = 0;; fd++) {
    if (fcntl (fd, F_GETFD) == -1 && errno == EBADF && ++free_seen == room)
      break;
  }
  return (rlim_t) fd + 1;
}

/* At max_connections the listener accepts no more until one closes; the
 * rest wait and are taken as connections go. */
static void
test_cap_holds_until_a_connection_closes (Fixture *f, gconstpointer data)
{
  tally_stream_listener_set_max_connections (f->listener, 3);
  connect_clients (f);
  wait_accepted (f, 3);
  run_for (300);
  g_assert_cmpuint (f->accepted, ==, 3);
  g_assert_cmpuint (tally_stream_listener_get_connections (f->listener), ==, 3);

  /* One goes: one more comes in, and no more than that. */
  g_ptr_array_remove_index (f->links, 0);
  wait_accepted (f, 4);
  run_for (300);
  g_assert_cmpuint (f->accepted, ==, 4);
  g_assert_cmpuint (tally_stream_listener_get_connections (f->listener), ==, 3);

  g_ptr_array_set_size (f->links, 0);
  while (f->accepted < CLIENTS) {
    wait_accepted (f, f->accepted + 1);
    g_ptr_array_set_size (f->links, 0);
  }
  g_assert_cmpuint (f->accepted, ==, CLIENTS);
}

/* Out of descriptors, accepting pauses (no busy loop), says so once, and
 * goes on by itself when descriptors are free again. */
static void
test_out_of_descriptors_pauses_and_resumes (Fixture *f, gconstpointer data)
{
  struct rlimit saved, low;
  if (RUNNING_ON_VALGRIND) {
    /* Memcheck keeps its own RLIMIT_NOFILE: a connection the kernel
     * accepts above it is closed and lost, not left in the backlog. */
    g_test_skip ("valgrind emulates RLIMIT_NOFILE and drops what it accepts beyond it");
    return;
  }
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  connect_clients (f);
  /* Room for two accepted connections, then EMFILE. */
  low = saved;
  low.rlim_cur = limit_leaving (2);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &low), ==, 0);
  accept_failure_lines = 0;

  wait_accepted (f, 2);
  /* Several retry periods at the limit. */
  clock_t cpu = clock ();
  run_for (1500);
  g_test_message ("1.5 s out of descriptors: %u line(s) logged, %.2f s of CPU (the loop polls "
                  "every millisecond)",
                  accept_failure_lines, (double) (clock () - cpu) / CLOCKS_PER_SEC);
  g_assert_cmpuint (f->accepted, ==, 2);
  g_assert_cmpuint (accept_failure_lines, ==, 1);

  /* Descriptors come back: the rest are accepted without being asked. */
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  wait_accepted (f, CLIENTS);
  g_assert_cmpuint (f->accepted, ==, CLIENTS);
  g_assert_cmpuint (accept_failure_lines, ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_log_set_writer_func (count_writer, NULL, NULL);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/transport/listener/cap-holds-until-a-connection-closes",
       test_cap_holds_until_a_connection_closes);
  ADD ("/transport/listener/out-of-descriptors-pauses-and-resumes",
       test_out_of_descriptors_pauses_and_resumes);
#undef ADD
  return g_test_run ();
}
