/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-app-client.h"

#include <string.h>
#include <unistd.h>

#define REGISTER_PATH      "/org/tally/register"
#define AGENT_MANAGER_PATH "/org/tally"
#define REJECTED           "org.tally.Error.Rejected"
#define CANCELLED          "org.tally.Error.Cancelled"

struct _TallyAppClient
{
  TallyAppClientCallbacks callbacks;
  gpointer user_data;
  gboolean system_bus;
  char *name;
  GCancellable *cancellable;
  GDBusConnection *bus;
  GDBusObjectManager *manager;
  TallyDBusAgent1 *agent;
  char *agent_path;
  char *agent_owner; /* the tallyd our agent is registered with */
  GDBusMethodInvocation *pending_confirm;
};

TallyDBusRegister1 *
tally_app_client_get_register (TallyAppClient *client)
{
  g_return_val_if_fail (client != NULL, NULL);

  if (client->manager == NULL)
    return NULL;
  g_autoptr (GDBusObject) object =
    g_dbus_object_manager_get_object (client->manager, REGISTER_PATH);
  if (object == NULL)
    return NULL;
  g_autoptr (TallyDBusRegister1) reg = tally_dbus_object_get_register1 (TALLY_DBUS_OBJECT (object));
  /* The object manager keeps it alive. */
  return reg;
}

TallyDBusPayment1 *
tally_app_client_get_payment (TallyAppClient *client, const char *path)
{
  g_return_val_if_fail (client != NULL && path != NULL, NULL);

  if (client->manager == NULL)
    return NULL;
  g_autoptr (GDBusObject) object = g_dbus_object_manager_get_object (client->manager, path);
  if (object == NULL)
    return NULL;
  g_autoptr (TallyDBusPayment1) payment =
    tally_dbus_object_get_payment1 (TALLY_DBUS_OBJECT (object));
  return payment;
}

/* /org/tally/payment/N: the larger N, the newer. */
static gint
compare_newest_first (gconstpointer a, gconstpointer b)
{
  const char *pa = g_dbus_proxy_get_object_path (G_DBUS_PROXY (a));
  const char *pb = g_dbus_proxy_get_object_path (G_DBUS_PROXY (b));
  const char *na = strrchr (pa, '/'), *nb = strrchr (pb, '/');
  guint64 ia = g_ascii_strtoull (na + 1, NULL, 10), ib = g_ascii_strtoull (nb + 1, NULL, 10);
  return ia < ib ? 1 : ia > ib ? -1 : 0;
}

GList *
tally_app_client_list_payments (TallyAppClient *client)
{
  g_return_val_if_fail (client != NULL, NULL);

  if (client->manager == NULL)
    return NULL;
  GList *out = NULL;
  GList *objects = g_dbus_object_manager_get_objects (client->manager);
  for (GList *l = objects; l != NULL; l = l->next) {
    TallyDBusPayment1 *payment = tally_dbus_object_get_payment1 (TALLY_DBUS_OBJECT (l->data));
    if (payment != NULL)
      out = g_list_prepend (out, payment);
  }
  g_list_free_full (objects, g_object_unref);
  return g_list_sort (out, compare_newest_first);
}

gboolean
tally_app_client_confirm_pending (TallyAppClient *client)
{
  g_return_val_if_fail (client != NULL, FALSE);
  return client->pending_confirm != NULL;
}

void
tally_app_client_answer_confirm (TallyAppClient *client, gboolean accept, const char *reason)
{
  g_return_if_fail (client != NULL);

  GDBusMethodInvocation *inv = g_steal_pointer (&client->pending_confirm);
  if (inv == NULL)
    return;
  if (accept)
    tally_dbus_agent1_complete_confirm_payment (client->agent, inv);
  else
    g_dbus_method_invocation_return_dbus_error (inv, REJECTED,
                                                reason != NULL ? reason : "declined by the user");
}

/* Only the tallyd we talk to may ask; anyone else on the bus is refused. */
static gboolean
from_our_tallyd (TallyAppClient *client, GDBusMethodInvocation *invocation)
{
  return client->agent_owner != NULL &&
         g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), client->agent_owner) == 0;
}

static gboolean
handle_confirm_payment (TallyDBusAgent1 *agent,
                        GDBusMethodInvocation *invocation,
                        const char *payment,
                        gint64 amount,
                        const char *currency,
                        const char *payee,
                        const char *comparison_code,
                        const char *payee_name,
                        gpointer user_data)
{
  TallyAppClient *client = user_data;

  if (!from_our_tallyd (client, invocation)) {
    g_dbus_method_invocation_return_dbus_error (invocation, REJECTED, "not from our tallyd");
    return TRUE;
  }
  if (client->pending_confirm != NULL) {
    g_dbus_method_invocation_return_dbus_error (invocation, REJECTED,
                                                "already asking about another payment");
    return TRUE;
  }
  client->pending_confirm = invocation;
  client->callbacks.confirm (payment, amount, currency, payee, comparison_code, payee_name,
                             client->user_data);
  return TRUE;
}

static gboolean
handle_agent_cancel (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  TallyAppClient *client = user_data;

  if (!from_our_tallyd (client, invocation)) {
    g_dbus_method_invocation_return_dbus_error (invocation, REJECTED, "not from our tallyd");
    return TRUE;
  }
  if (client->pending_confirm != NULL) {
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&client->pending_confirm),
                                                CANCELLED, "cancelled by tallyd");
    client->callbacks.confirm_cancelled (client->user_data);
  }
  tally_dbus_agent1_complete_cancel (agent, invocation);
  return TRUE;
}

static gboolean
handle_agent_release (TallyDBusAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
  TallyAppClient *client = user_data;

  if (from_our_tallyd (client, invocation))
    g_clear_pointer (&client->agent_owner, g_free);
  tally_dbus_agent1_complete_release (agent, invocation);
  return TRUE;
}

static void
on_default_agent_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_warning ("Cannot become tallyd's default agent: %s", error->message);
}

static void
on_register_agent_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  if (reply == NULL) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      g_warning ("Cannot register the agent with tallyd: %s", error->message);
    return;
  }
  /* Registered: the call was not cancelled, so the client is still here.
   * Also confirm our uid's command-line payments (tallyctl pay). */
  TallyAppClient *client = user_data;
  g_dbus_connection_call (client->bus, client->name, AGENT_MANAGER_PATH, "org.tally.AgentManager1",
                          "RequestDefaultAgent", g_variant_new ("(o)", client->agent_path), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, client->cancellable, on_default_agent_done,
                          NULL);
}

/* A tallyd (again) owns the name: our agent confirms the payments this
 * app's Pay calls make. */
static void
register_agent (TallyAppClient *client)
{
  g_autofree char *owner =
    g_dbus_object_manager_client_get_name_owner (G_DBUS_OBJECT_MANAGER_CLIENT (client->manager));

  if (client->pending_confirm != NULL) {
    g_dbus_method_invocation_return_dbus_error (g_steal_pointer (&client->pending_confirm),
                                                CANCELLED, "tallyd went away");
    client->callbacks.confirm_cancelled (client->user_data);
  }
  g_free (client->agent_owner);
  client->agent_owner = g_steal_pointer (&owner);
  if (client->agent_owner == NULL)
    return;
  g_dbus_connection_call (client->bus, client->name, AGENT_MANAGER_PATH, "org.tally.AgentManager1",
                          "RegisterAgent", g_variant_new ("(o)", client->agent_path), NULL,
                          G_DBUS_CALL_FLAGS_NONE, -1, client->cancellable, on_register_agent_done,
                          client);
}

static void
on_name_owner (GObject *manager, GParamSpec *pspec, gpointer user_data)
{
  TallyAppClient *client = user_data;

  register_agent (client);
  client->callbacks.register_changed (tally_app_client_get_register (client), client->user_data);
}

static void
on_interface_changed (TallyAppClient *client, GDBusInterface *interface, gboolean removed)
{
  if (TALLY_DBUS_IS_REGISTER1 (interface)) {
    client->callbacks.register_changed (removed ? NULL : TALLY_DBUS_REGISTER1 (interface),
                                        client->user_data);
  } else if (TALLY_DBUS_IS_PAYMENT1 (interface)) {
    const char *path = g_dbus_proxy_get_object_path (G_DBUS_PROXY (interface));
    client->callbacks.payment_changed (path, removed ? NULL : TALLY_DBUS_PAYMENT1 (interface),
                                       client->user_data);
  } else if (TALLY_DBUS_IS_STALL1 (interface)) {
    const char *path = g_dbus_proxy_get_object_path (G_DBUS_PROXY (interface));
    client->callbacks.stall_changed (path, removed ? NULL : TALLY_DBUS_STALL1 (interface),
                                     client->user_data);
  }
}

static void
on_interface_added (GDBusObjectManager *manager,
                    GDBusObject *object,
                    GDBusInterface *interface,
                    gpointer user_data)
{
  on_interface_changed (user_data, interface, FALSE);
}

static void
on_interface_removed (GDBusObjectManager *manager,
                      GDBusObject *object,
                      GDBusInterface *interface,
                      gpointer user_data)
{
  on_interface_changed (user_data, interface, TRUE);
}

static void
on_object_added (GDBusObjectManager *manager, GDBusObject *object, gpointer user_data)
{
  GList *interfaces = g_dbus_object_get_interfaces (object);
  for (GList *l = interfaces; l != NULL; l = l->next)
    on_interface_changed (user_data, l->data, FALSE);
  g_list_free_full (interfaces, g_object_unref);
}

static void
on_object_removed (GDBusObjectManager *manager, GDBusObject *object, gpointer user_data)
{
  GList *interfaces = g_dbus_object_get_interfaces (object);
  for (GList *l = interfaces; l != NULL; l = l->next)
    on_interface_changed (user_data, l->data, TRUE);
  g_list_free_full (interfaces, g_object_unref);
}

static void
on_properties_changed (GDBusObjectManagerClient *manager,
                       GDBusObjectProxy *object,
                       GDBusProxy *interface,
                       GVariant *changed,
                       GStrv invalidated,
                       gpointer user_data)
{
  on_interface_changed (user_data, G_DBUS_INTERFACE (interface), FALSE);
}

static void
on_manager_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  GDBusObjectManager *manager = tally_dbus_object_manager_client_new_finish (result, &error);
  if (manager == NULL) {
    /* Cancelled: the client is gone, do not touch it. */
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
      TallyAppClient *client = user_data;
      client->callbacks.failed (error->message, client->user_data);
    }
    return;
  }
  TallyAppClient *client = user_data;
  client->manager = manager;
  g_signal_connect (manager, "notify::name-owner", G_CALLBACK (on_name_owner), client);
  g_signal_connect (manager, "object-added", G_CALLBACK (on_object_added), client);
  g_signal_connect (manager, "object-removed", G_CALLBACK (on_object_removed), client);
  g_signal_connect (manager, "interface-added", G_CALLBACK (on_interface_added), client);
  g_signal_connect (manager, "interface-removed", G_CALLBACK (on_interface_removed), client);
  g_signal_connect (manager, "interface-proxy-properties-changed",
                    G_CALLBACK (on_properties_changed), client);
  on_name_owner (G_OBJECT (manager), NULL, client);
  GList *payments = tally_app_client_list_payments (client);
  for (GList *l = payments; l != NULL; l = l->next)
    on_interface_changed (client, l->data, FALSE);
  g_list_free_full (payments, g_object_unref);
  /* Stalls another client's discovery listed already. */
  GList *objects = g_dbus_object_manager_get_objects (manager);
  for (GList *l = objects; l != NULL; l = l->next) {
    g_autoptr (TallyDBusStall1) stall = tally_dbus_object_get_stall1 (TALLY_DBUS_OBJECT (l->data));
    if (stall != NULL)
      on_interface_changed (client, G_DBUS_INTERFACE (stall), FALSE);
  }
  g_list_free_full (objects, g_object_unref);
}

static void
on_bus_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *bus = g_bus_get_finish (result, &error);
  if (bus == NULL) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
      TallyAppClient *client = user_data;
      client->callbacks.failed (error->message, client->user_data);
    }
    return;
  }
  TallyAppClient *client = user_data;
  client->bus = bus;

  client->agent = tally_dbus_agent1_skeleton_new ();
  g_signal_connect (client->agent, "handle-confirm-payment", G_CALLBACK (handle_confirm_payment),
                    client);
  g_signal_connect (client->agent, "handle-cancel", G_CALLBACK (handle_agent_cancel), client);
  g_signal_connect (client->agent, "handle-release", G_CALLBACK (handle_agent_release), client);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (client->agent), bus,
                                         client->agent_path, &error)) {
    client->callbacks.failed (error->message, client->user_data);
    return;
  }
  tally_dbus_object_manager_client_new (bus, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_DO_NOT_AUTO_START,
                                        client->name, "/", client->cancellable, on_manager_ready,
                                        client);
}

TallyAppClient *
tally_app_client_new (gboolean system_bus,
                      const char *name,
                      const TallyAppClientCallbacks *callbacks,
                      gpointer user_data)
{
  g_return_val_if_fail (name != NULL && callbacks != NULL, NULL);

  TallyAppClient *client = g_new0 (TallyAppClient, 1);
  client->callbacks = *callbacks;
  client->user_data = user_data;
  client->system_bus = system_bus;
  client->name = g_strdup (name);
  client->cancellable = g_cancellable_new ();
  client->agent_path = g_strdup_printf ("/org/tally/app/agent%ld", (long) getpid ());
  g_bus_get (system_bus ? G_BUS_TYPE_SYSTEM : G_BUS_TYPE_SESSION, client->cancellable, on_bus_ready,
             client);
  return client;
}

void
tally_app_client_free (TallyAppClient *client)
{
  if (client == NULL)
    return;
  g_cancellable_cancel (client->cancellable);
  tally_app_client_answer_confirm (client, FALSE, "the app is closing");
  if (client->agent != NULL) {
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (client->agent));
    g_object_unref (client->agent);
  }
  if (client->manager != NULL) {
    g_signal_handlers_disconnect_by_data (client->manager, client);
    g_object_unref (client->manager);
  }
  g_clear_object (&client->bus);
  g_clear_object (&client->cancellable);
  g_free (client->agent_owner);
  g_free (client->agent_path);
  g_free (client->name);
  g_free (client);
}
