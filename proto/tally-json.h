/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Appends @s as a JSON string literal, quoted and escaped, for the
 * command-line tools' --json output. */
void tally_json_append_string (GString *out, const char *s);

G_END_DECLS
