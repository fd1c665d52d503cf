/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Wall clock in whole seconds. */
guint64 tally_now (void);

G_END_DECLS
