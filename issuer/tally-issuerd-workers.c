/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The parent of tally-issuerd's worker processes.  Each worker is the same
 * program started afresh (fork and exec), not a bare fork: the parent's
 * GLib threads, signal handlers and store connection must not be
 * inherited half-alive.  A worker dies with its parent (PR_SET_PDEATHSIG).
 */
#include "tally-issuerd-workers.h"

#include <errno.h>
#include <glib-unix.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#define EXIT_FAILED 1
/* A worker that dies sooner than this after its start is started again
 * only after this long, so that a crash at start cannot spin. */
#define RESTART_DELAY_MS 1000

typedef struct _Supervisor Supervisor;

typedef struct
{
  Supervisor *sv;
  guint index;
  GSubprocess *proc; /* NULL while none runs */
  gint64 started;    /* monotonic */
} Worker;

struct _Supervisor
{
  const char *exe;
  const char *config_file;
  GSocket *socket;
  Worker *workers;
  guint n_workers;
  guint running;
  gboolean stopping;
  int status;
  GMainLoop *loop;
};

static void worker_exited (GObject *source, GAsyncResult *result, gpointer user_data);

static void
child_setup (gpointer user_data)
{
  /* The worker must not outlive the parent that would restart it. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static gboolean
worker_start (Worker *w)
{
  Supervisor *sv = w->sv;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  int fd = dup (g_socket_get_fd (sv->socket));
  if (fd < 0) {
    g_warning ("cannot start worker %u: %s", w->index, g_strerror (errno));
    return FALSE;
  }
  g_subprocess_launcher_take_fd (launcher, fd, TALLY_ISSUERD_WORKER_FD);
  g_subprocess_launcher_set_child_setup (launcher, child_setup, NULL, NULL);
  g_autofree char *index = g_strdup_printf ("%u", w->index);
  w->proc = g_subprocess_launcher_spawn (launcher, &error, sv->exe, "--config", sv->config_file,
                                         "--worker-index", index, NULL);
  if (w->proc == NULL) {
    g_warning ("cannot start worker %u: %s", w->index, error->message);
    return FALSE;
  }
  w->started = g_get_monotonic_time ();
  sv->running++;
  g_message ("worker %u started (pid %s)", w->index, g_subprocess_get_identifier (w->proc));
  g_subprocess_wait_async (w->proc, NULL, worker_exited, w);
  return TRUE;
}

static gboolean
worker_restart (gpointer user_data)
{
  Worker *w = user_data;
  if (!w->sv->stopping && !worker_start (w))
    g_timeout_add (RESTART_DELAY_MS, worker_restart, w);
  return G_SOURCE_REMOVE;
}

static char *
describe_exit (GSubprocess *proc)
{
  if (g_subprocess_get_if_signaled (proc))
    return g_strdup_printf ("killed by signal %d (%s)", g_subprocess_get_term_sig (proc),
                            g_strsignal (g_subprocess_get_term_sig (proc)));
  return g_strdup_printf ("exited with status %d", g_subprocess_get_exit_status (proc));
}

static void
supervisor_stop (Supervisor *sv, int signum)
{
  sv->stopping = TRUE;
  for (guint i = 0; i < sv->n_workers; i++)
    if (sv->workers[i].proc != NULL)
      g_subprocess_send_signal (sv->workers[i].proc, signum);
  if (sv->running == 0)
    g_main_loop_quit (sv->loop);
}

static void
worker_exited (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Worker *w = user_data;
  Supervisor *sv = w->sv;
  g_autoptr (GSubprocess) proc = g_steal_pointer (&w->proc);
  g_subprocess_wait_finish (proc, result, NULL);
  sv->running--;
  g_autofree char *how = describe_exit (proc);
  const char *pid = g_subprocess_get_identifier (proc);

  if (sv->stopping) {
    g_info ("worker %u (pid %s) %s", w->index, pid ? pid : "?", how);
    if (sv->running == 0)
      g_main_loop_quit (sv->loop);
    return;
  }
  if (g_subprocess_get_if_exited (proc) && g_subprocess_get_exit_status (proc) == EXIT_FAILED) {
    g_critical ("worker %u could not start (%s); stopping", w->index, how);
    sv->status = EXIT_FAILED;
    supervisor_stop (sv, SIGTERM);
    return;
  }
  g_warning ("worker %u %s; starting another", w->index, how);
  if (g_get_monotonic_time () - w->started < RESTART_DELAY_MS * 1000)
    g_timeout_add (RESTART_DELAY_MS, worker_restart, w);
  else
    worker_restart (w);
}

static gboolean
on_signal (gpointer user_data, int signum)
{
  Supervisor *sv = user_data;
  g_info ("stopping %u worker(s)", sv->running);
  supervisor_stop (sv, signum);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_term (gpointer user_data)
{
  return on_signal (user_data, SIGTERM);
}

static gboolean
on_int (gpointer user_data)
{
  return on_signal (user_data, SIGINT);
}

int
tally_issuerd_supervise (const char *exe, const char *config_file, GSocket *socket, guint workers)
{
  g_return_val_if_fail (exe != NULL && config_file != NULL, EXIT_FAILED);
  g_return_val_if_fail (G_IS_SOCKET (socket) && workers > 0, EXIT_FAILED);

  Supervisor sv = {
    .exe = exe,
    .config_file = config_file,
    .socket = socket,
    .workers = g_new0 (Worker, workers),
    .n_workers = workers,
    .loop = g_main_loop_new (NULL, FALSE),
  };
  guint term = g_unix_signal_add (SIGTERM, on_term, &sv);
  guint intr = g_unix_signal_add (SIGINT, on_int, &sv);
  for (guint i = 0; i < workers; i++) {
    sv.workers[i] = (Worker){ .sv = &sv, .index = i };
    if (!worker_start (&sv.workers[i])) {
      sv.status = EXIT_FAILED;
      supervisor_stop (&sv, SIGTERM);
      break;
    }
  }
  if (sv.running > 0)
    g_main_loop_run (sv.loop);
  g_source_remove (term);
  g_source_remove (intr);
  /* A restart may still be pending: its source holds a worker. */
  for (guint i = 0; i < workers; i++)
    while (g_source_remove_by_user_data (&sv.workers[i]))
      ;
  g_main_loop_unref (sv.loop);
  g_free (sv.workers);
  return sv.status;
}
