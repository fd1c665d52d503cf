/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * TallyError codes as D-Bus error names ("org.tally.Error.<Name>", from
 * TALLY_ERROR_LIST in tally-error.h).  Registering them with
 * GDBus makes a TALLY_ERROR returned by the daemon arrive at a client as the
 * same domain and code, once the client called tally_dbus_error_register ().
 */

#include <gio/gio.h>

#include "tally-error.h"

G_BEGIN_DECLS

#define TALLY_DBUS_ERROR_PREFIX TALLY_ERROR_NAME_PREFIX
#define TALLY_DBUS_ERROR_FAILED TALLY_DBUS_ERROR_PREFIX "Failed"

/* Registers the table for the TALLY_ERROR domain; idempotent. */
void tally_dbus_error_register (void);

/* D-Bus name of @code; NULL outside 1..TALLY_ERROR_LAST. */
const char *tally_dbus_error_name (TallyError code);

/* D-Bus name for any error: its table entry when in TALLY_ERROR, else
 * org.tally.Error.Failed. */
const char *tally_dbus_error_name_for (const GError *error);

/* Replies to @invocation with @error under its org.tally.Error name. */
void tally_dbus_error_return (GDBusMethodInvocation *invocation, const GError *error);

/* The message of an error received over D-Bus, without the
 * "GDBus.Error:name: " prefix GDBus adds. */
char *tally_dbus_error_get_message (const GError *error);

G_END_DECLS
