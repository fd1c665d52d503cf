/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * tally-issuerd with [http] workers=N > 1: the parent process binds the
 * listening socket and runs N worker processes that serve it, each with its
 * own store connection.  Private to the tally-issuerd program.
 */

#include <gio/gio.h>

G_BEGIN_DECLS

/* The descriptor a worker finds the shared listening socket on. */
#define TALLY_ISSUERD_WORKER_FD 3

/* Runs @workers copies of @exe ("--config @config_file --worker-index I",
 * the listening @socket on TALLY_ISSUERD_WORKER_FD), starts a new one for
 * each that dies, and on SIGTERM or SIGINT passes the signal on and waits
 * for all.  Returns the program's exit status: 0 after a signal, 1 when a
 * worker could not start (its configuration or store is unusable). */
int
tally_issuerd_supervise (const char *exe, const char *config_file, GSocket *socket, guint workers);

G_END_DECLS
