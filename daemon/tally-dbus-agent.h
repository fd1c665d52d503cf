/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.tally.AgentManager1 at /org/tally, and calls to the org.tally.Agent1
 * objects clients register there.  As in BlueZ, an agent is its owner's
 * unique name plus an object path, and goes away with its owner; it is
 * also bound to its owner's uid.  Agent1.Release is sent to an agent that
 * is unregistered, and to every agent when the manager is freed.
 */

#include <gio/gio.h>

#include "tally-dbus-auth.h"

G_BEGIN_DECLS

#define TALLY_AGENT_MANAGER_PATH "/org/tally"

typedef struct _TallyAgentManager TallyAgentManager;

/* @auth authorizes the calls to org.tally.AgentManager1. */
TallyAgentManager *
tally_agent_manager_new (GDBusConnection *connection, TallyDBusAuth *auth, GError **error);
void tally_agent_manager_free (TallyAgentManager *manager);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAgentManager, tally_agent_manager_free)

guint tally_agent_manager_get_count (TallyAgentManager *manager);

/*
 * Asks an agent to confirm a payment of the caller @sender, of user @uid,
 * to @payee (hex id), shown to people as @payee_name
 * (tally_payment_get_peer_name): the agent @sender registered, else the
 * default agent of @uid (RequestDefaultAgent), else the most recent agent
 * of @uid.  An agent of another uid is never asked.  Cancelling
 * @cancellable sends the agent Cancel ().  The result fails with REJECTED
 * when no agent of @uid is registered or the agent refused or did not answer
 * within @timeout_ms.
 */
void tally_agent_manager_confirm (TallyAgentManager *manager,
                                  const char *sender,
                                  guint32 uid,
                                  const char *payment_path,
                                  gint64 amount,
                                  const char *currency,
                                  const char *payee,
                                  const char *comparison_code,
                                  const char *payee_name,
                                  int timeout_ms,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data);
gboolean tally_agent_manager_confirm_finish (TallyAgentManager *manager,
                                             GAsyncResult *result,
                                             GError **error);

G_END_DECLS
