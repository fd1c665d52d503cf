/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-agent.h"

#include <string.h>

#include "tally-dbus-caller.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"

typedef struct
{
  TallyAgentManager *manager;
  char *owner;
  char *path;
  guint32 uid;         /* of the connection that registered it */
  gboolean is_default; /* RequestDefaultAgent: its uid's default */
  guint watch_id;
} Agent;

struct _TallyAgentManager
{
  GDBusConnection *connection;
  TallyDBusAgentManager1 *skeleton;
  GList *agents;             /* Agent *, most recent first */
  GCancellable *uid_lookups; /* RegisterAgent calls waiting for the caller's uid */
};

/* A RegisterAgent call while the bus tells us who made it. */
typedef struct
{
  TallyAgentManager *manager;
  GDBusMethodInvocation *invocation;
  char *path;
} PendingRegistration;

typedef struct
{
  char *owner;
  char *path;
  GCancellable *cancellable;
  gulong cancelled_id;
  GDBusConnection *connection;
} ConfirmCall;

static void
agent_free (Agent *agent)
{
  if (agent->watch_id != 0)
    g_bus_unwatch_name (agent->watch_id);
  g_free (agent->owner);
  g_free (agent->path);
  g_free (agent);
}

static Agent *
find_agent (TallyAgentManager *m, const char *owner, const char *path)
{
  for (GList *l = m->agents; l != NULL; l = l->next) {
    Agent *agent = l->data;
    if (g_strcmp0 (agent->owner, owner) == 0 && (path == NULL || strcmp (agent->path, path) == 0))
      return agent;
  }
  return NULL;
}

/* Agent1.Release: the agent is no longer registered (unregistered, or
 * tallyd exits); not sent to an agent whose owner left the bus. */
static void
release_agent (TallyAgentManager *m, Agent *agent)
{
  if (g_dbus_connection_is_closed (m->connection))
    return;
  g_dbus_connection_call (m->connection, agent->owner, agent->path, "org.tally.Agent1", "Release",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
}

static void
remove_agent (TallyAgentManager *m, Agent *agent)
{
  g_info ("agent %s%s of uid %u unregistered", agent->owner ? agent->owner : "", agent->path,
          agent->uid);
  m->agents = g_list_remove (m->agents, agent);
  agent_free (agent);
}

static void
on_owner_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  Agent *agent = user_data;
  TallyAgentManager *m = agent->manager;

  /* The watch may fire for an agent of a name that left before we saw it. */
  for (Agent *a; (a = find_agent (m, name, NULL)) != NULL;)
    remove_agent (m, a);
}

static void
pending_registration_free (PendingRegistration *pending)
{
  g_object_unref (pending->invocation);
  g_free (pending->path);
  g_free (pending);
}

static void
on_register_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PendingRegistration *pending = user_data;
  GDBusMethodInvocation *invocation = pending->invocation;
  g_autoptr (GError) error = NULL;
  guint32 uid;

  if (!tally_dbus_caller_get_uid_finish (result, &uid, &error)) {
    tally_dbus_error_return (invocation, error);
    pending_registration_free (pending);
    return;
  }
  TallyAgentManager *m = pending->manager;
  const char *owner = g_dbus_method_invocation_get_sender (invocation);
  /* The same path may have been registered while we asked. */
  if (find_agent (m, owner, pending->path) != NULL) {
    g_autoptr (GError) exists = g_error_new (TALLY_ERROR, TALLY_ERROR_EXISTS,
                                             "agent %s is already registered", pending->path);
    tally_dbus_error_return (invocation, exists);
    pending_registration_free (pending);
    return;
  }

  Agent *agent = g_new0 (Agent, 1);
  agent->manager = m;
  agent->owner = g_strdup (owner);
  agent->path = g_strdup (pending->path);
  agent->uid = uid;
  /* A peer-to-peer connection has no names to watch. */
  if (owner != NULL)
    agent->watch_id = g_bus_watch_name_on_connection (
      m->connection, owner, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL, on_owner_vanished, agent, NULL);
  m->agents = g_list_prepend (m->agents, agent);
  g_info ("agent %s%s of uid %u registered", owner ? owner : "", agent->path, uid);

  tally_dbus_agent_manager1_complete_register_agent (m->skeleton, invocation);
  pending_registration_free (pending);
}

static gboolean
handle_register_agent (TallyDBusAgentManager1 *skeleton,
                       GDBusMethodInvocation *invocation,
                       const char *path,
                       gpointer user_data)
{
  TallyAgentManager *m = user_data;
  const char *owner = g_dbus_method_invocation_get_sender (invocation);

  if (find_agent (m, owner, path) != NULL) {
    g_autoptr (GError) error =
      g_error_new (TALLY_ERROR, TALLY_ERROR_EXISTS, "agent %s is already registered", path);
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }

  PendingRegistration *pending = g_new0 (PendingRegistration, 1);
  pending->manager = m;
  pending->invocation = g_object_ref (invocation);
  pending->path = g_strdup (path);
  tally_dbus_caller_get_uid (invocation, m->uid_lookups, on_register_uid, pending);
  return TRUE;
}

/* The agent at @path registered by the caller; NULL after answering the
 * call with NotFound. */
static Agent *
find_callers_agent (TallyAgentManager *m, GDBusMethodInvocation *invocation, const char *path)
{
  Agent *agent = find_agent (m, g_dbus_method_invocation_get_sender (invocation), path);
  if (agent == NULL) {
    g_autoptr (GError) error =
      g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "no agent %s registered by you", path);
    tally_dbus_error_return (invocation, error);
  }
  return agent;
}

static gboolean
handle_request_default_agent (TallyDBusAgentManager1 *skeleton,
                              GDBusMethodInvocation *invocation,
                              const char *path,
                              gpointer user_data)
{
  TallyAgentManager *m = user_data;
  Agent *agent = find_callers_agent (m, invocation, path);

  if (agent == NULL)
    return TRUE;
  /* One default per uid: another user's default stays theirs. */
  for (GList *l = m->agents; l != NULL; l = l->next) {
    Agent *other = l->data;
    if (other->uid == agent->uid)
      other->is_default = other == agent;
  }
  g_info ("agent %s%s is the default of uid %u", agent->owner ? agent->owner : "", agent->path,
          agent->uid);
  tally_dbus_agent_manager1_complete_request_default_agent (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_unregister_agent (TallyDBusAgentManager1 *skeleton,
                         GDBusMethodInvocation *invocation,
                         const char *path,
                         gpointer user_data)
{
  TallyAgentManager *m = user_data;
  Agent *agent = find_callers_agent (m, invocation, path);

  if (agent == NULL)
    return TRUE;
  release_agent (m, agent);
  remove_agent (m, agent);
  tally_dbus_agent_manager1_complete_unregister_agent (skeleton, invocation);
  return TRUE;
}

TallyAgentManager *
tally_agent_manager_new (GDBusConnection *connection, TallyDBusAuth *auth, GError **error)
{
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection) && auth != NULL, NULL);

  TallyAgentManager *m = g_new0 (TallyAgentManager, 1);
  m->connection = g_object_ref (connection);
  m->skeleton = tally_dbus_auth_skeleton_new (auth, TALLY_DBUS_TYPE_AGENT_MANAGER1_SKELETON);
  m->uid_lookups = g_cancellable_new ();
  g_signal_connect (m->skeleton, "handle-register-agent", G_CALLBACK (handle_register_agent), m);
  g_signal_connect (m->skeleton, "handle-unregister-agent", G_CALLBACK (handle_unregister_agent),
                    m);
  g_signal_connect (m->skeleton, "handle-request-default-agent",
                    G_CALLBACK (handle_request_default_agent), m);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (m->skeleton), connection,
                                         TALLY_AGENT_MANAGER_PATH, error)) {
    tally_agent_manager_free (m);
    return NULL;
  }
  return m;
}

void
tally_agent_manager_free (TallyAgentManager *m)
{
  if (m == NULL)
    return;
  if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (m->skeleton)) != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (m->skeleton));
  g_signal_handlers_disconnect_by_data (m->skeleton, m);
  g_object_unref (m->skeleton);
  g_cancellable_cancel (m->uid_lookups);
  g_object_unref (m->uid_lookups);
  for (GList *l = m->agents; l != NULL; l = l->next)
    release_agent (m, l->data);
  if (m->agents != NULL && !g_dbus_connection_is_closed (m->connection))
    g_dbus_connection_flush_sync (m->connection, NULL, NULL);
  g_list_free_full (m->agents, (GDestroyNotify) agent_free);
  g_object_unref (m->connection);
  g_free (m);
}

guint
tally_agent_manager_get_count (TallyAgentManager *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return g_list_length (m->agents);
}

/* --- asking an agent --- */

static void
confirm_call_free (ConfirmCall *call)
{
  if (call->cancelled_id != 0)
    g_cancellable_disconnect (call->cancellable, call->cancelled_id);
  g_clear_object (&call->cancellable);
  g_clear_object (&call->connection);
  g_free (call->owner);
  g_free (call->path);
  g_free (call);
}

static void
on_cancelled (GCancellable *cancellable, gpointer user_data)
{
  ConfirmCall *call = user_data;

  /* Agent1.Cancel: the question is void; a reply to it is ignored. */
  g_dbus_connection_call (call->connection, call->owner, call->path, "org.tally.Agent1", "Cancel",
                          NULL, NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
}

static void
on_confirm_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ConfirmCall *call = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply != NULL) {
    g_task_return_boolean (task, TRUE);
    return;
  }
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
    g_task_return_error (task, g_steal_pointer (&error));
    return;
  }

  g_autofree char *remote = g_dbus_error_get_remote_error (error);
  g_autofree char *message = tally_dbus_error_get_message (error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
    on_cancelled (NULL, call);
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED,
                             "the agent did not answer in time");
  } else if (g_error_matches (error, TALLY_ERROR, TALLY_ERROR_REJECTED)) {
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED, "%s", message);
  } else {
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED, "agent failed: %s%s%s",
                             remote ? remote : "", remote ? ": " : "", message);
  }
}

/* The caller's own agent, else its uid's default, else the most recent
 * of its uid: never another user's, who could approve what is not theirs
 * to approve. */
static Agent *
choose_agent (TallyAgentManager *m, const char *sender, guint32 uid)
{
  Agent *agent = sender ? find_agent (m, sender, NULL) : NULL;
  if (agent != NULL && agent->uid == uid)
    return agent;
  Agent *latest = NULL;
  for (GList *l = m->agents; l != NULL; l = l->next) {
    Agent *a = l->data;
    if (a->uid != uid)
      continue;
    if (a->is_default)
      return a;
    if (latest == NULL)
      latest = a;
  }
  return latest;
}

void
tally_agent_manager_confirm (TallyAgentManager *m,
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
                             gpointer user_data)
{
  g_return_if_fail (m != NULL && payment_path != NULL);

  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, tally_agent_manager_confirm);

  Agent *agent = choose_agent (m, sender, uid);
  if (agent == NULL) {
    g_task_return_new_error (task, TALLY_ERROR, TALLY_ERROR_REJECTED,
                             "no agent registered by uid %u", uid);
    return;
  }

  ConfirmCall *call = g_new0 (ConfirmCall, 1);
  call->owner = g_strdup (agent->owner);
  call->path = g_strdup (agent->path);
  call->connection = g_object_ref (m->connection);
  g_task_set_task_data (task, call, (GDestroyNotify) confirm_call_free);
  if (cancellable != NULL) {
    call->cancellable = g_object_ref (cancellable);
    call->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), call, NULL);
  }

  g_debug ("asking agent %s%s of uid %u to confirm %s", call->owner ? call->owner : "", call->path,
           uid, payment_path);
  g_dbus_connection_call (m->connection, call->owner, call->path, "org.tally.Agent1",
                          "ConfirmPayment",
                          g_variant_new ("(oxssss)", payment_path, amount, currency, payee,
                                         comparison_code, payee_name),
                          G_VARIANT_TYPE_UNIT, G_DBUS_CALL_FLAGS_NO_AUTO_START, timeout_ms,
                          cancellable, on_confirm_reply, g_steal_pointer (&task));
}

gboolean
tally_agent_manager_confirm_finish (TallyAgentManager *m, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
