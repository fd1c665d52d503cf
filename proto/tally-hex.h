/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Lower-case hex of @len bytes. */
char *tally_hex_encode (const guint8 *data, gsize len);
/* Exactly @len bytes of hex, else INVALID_ARGUMENT. */
gboolean tally_hex_decode (const char *hex, guint8 *out, gsize len, GError **error);

G_END_DECLS
