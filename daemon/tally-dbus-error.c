/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-error.h"

#define TALLY_DBUS_ERROR_ENTRY(symbol, code, name)                                                 \
  { TALLY_ERROR_##symbol, TALLY_ERROR_NAME_PREFIX #name },

/* Built from TALLY_ERROR_LIST, the same list as tally_error_to_name (), so
 * both sides of the bus agree; indexed by code - 1. */
static const GDBusErrorEntry tally_dbus_errors[] = { TALLY_ERROR_LIST (TALLY_DBUS_ERROR_ENTRY) };

#undef TALLY_DBUS_ERROR_ENTRY

G_STATIC_ASSERT (G_N_ELEMENTS (tally_dbus_errors) == TALLY_ERROR_LAST);

void
tally_dbus_error_register (void)
{
  static gsize quark = 0;

  /* Registering under the quark name of TALLY_ERROR itself, so GErrors
   * keep their domain on both ends of the bus. */
  g_dbus_error_register_error_domain (g_quark_to_string (TALLY_ERROR), &quark, tally_dbus_errors,
                                      G_N_ELEMENTS (tally_dbus_errors));
  g_assert (quark == TALLY_ERROR);
}

const char *
tally_dbus_error_name (TallyError code)
{
  return tally_error_to_name (code);
}

const char *
tally_dbus_error_name_for (const GError *error)
{
  if (error == NULL || error->domain != TALLY_ERROR)
    return TALLY_DBUS_ERROR_FAILED;
  const char *name = tally_dbus_error_name ((TallyError) error->code);
  return name ? name : TALLY_DBUS_ERROR_FAILED;
}

void
tally_dbus_error_return (GDBusMethodInvocation *invocation, const GError *error)
{
  g_dbus_method_invocation_return_dbus_error (invocation, tally_dbus_error_name_for (error),
                                              error->message);
}

char *
tally_dbus_error_get_message (const GError *error)
{
  g_autoptr (GError) copy = g_error_copy (error);
  g_dbus_error_strip_remote_error (copy);
  return g_strdup (copy->message);
}
