/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An in-memory pair of links, for tests: what one side sends, the other
 * receives from an idle callback on the thread-default main context the
 * pair was created on.
 */

#include "tally-link.h"

G_BEGIN_DECLS

void tally_mem_link_pair (gsize mtu, TallyLink **a, TallyLink **b);

G_END_DECLS
