/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-clock.h"

guint64
tally_now (void)
{
  return (guint64) (g_get_real_time () / G_USEC_PER_SEC);
}
