/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Secret key files: the 64 bytes of an Ed25519 secret key, mode 0600.
 */

#include <glib.h>

#include "tally-core.h"

G_BEGIN_DECLS

/* Writes a fresh key pair's secret key to @path with mode 0600, atomically. */
gboolean tally_key_file_write (const char *path,
                               const guint8 secret_key[static TALLY_SECRET_KEY_BYTES],
                               GError **error);
/* Reads it back; refuses a file that group or others can read, and one
 * whose public half is not the seed's (STORAGE, "corrupt"). */
gboolean tally_key_file_read (const char *path,
                              guint8 secret_key[static TALLY_SECRET_KEY_BYTES],
                              GError **error);

G_END_DECLS
