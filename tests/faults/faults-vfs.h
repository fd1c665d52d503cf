/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A disk that fills up: an SQLite VFS wrapping the default one, installed
 * as the new default, whose writes fail with SQLITE_FULL once armed.
 * Arming names a directory (only files below it fail) and how many writes
 * still succeed first, so the failure lands anywhere inside a commit.
 */

#include <glib.h>

G_BEGIN_DECLS

/* Registers the shim as the default VFS; idempotent. */
void faults_vfs_install (void);

/* Writes to files under @dir fail with SQLITE_FULL after @writes_left more
 * succeed (0: the next one fails).  Replaces an earlier arming. */
void faults_vfs_arm (const char *dir, guint writes_left);
void faults_vfs_disarm (void);

/* Writes refused since the last arming. */
guint faults_vfs_refused (void);

G_END_DECLS
