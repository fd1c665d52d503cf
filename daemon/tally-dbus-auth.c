/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-auth.h"

#include <polkit/polkit.h>
#include <string.h>

#include "tally-dbus-caller.h"
#include "tally-dbus-error.h"
#include "tally-error.h"

#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"
#define INTERACTIVE_AUTHORIZATION_REQUIRED                                                         \
  "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

/* Every method of daemon/org.tally.xml that tallyd serves, and property
 * reads (method NULL).  A call without a row is refused; tests/daemon
 * checks that the table covers the introspection data. */
typedef struct
{
  const char *interface;
  const char *method;
  const char *action;
  /* The owner of the object may call without @action. */
  const char *owner_property;
} AuthRule;

static const AuthRule auth_rules[] = {
  { "org.tally.Register1", NULL, TALLY_ACTION_READ, NULL },
  { "org.tally.Register1", "GetHistory", TALLY_ACTION_READ, NULL },
  /* Listing the stalls nearby reads what their adverts say, no more. */
  { "org.tally.Register1", "StartDiscovery", TALLY_ACTION_READ, NULL },
  { "org.tally.Register1", "StopDiscovery", TALLY_ACTION_READ, NULL },
  { "org.tally.Stall1", NULL, TALLY_ACTION_READ, NULL },
  { "org.tally.Register1", "RequestPayment", TALLY_ACTION_REQUEST_PAYMENT, NULL },
  { "org.tally.Register1", "Pay", TALLY_ACTION_PAY, NULL },
  { "org.tally.Register1", "LoadVoucher", TALLY_ACTION_LOAD_VOUCHER, NULL },
  { "org.tally.Register1", "Defund", TALLY_ACTION_DEFUND, NULL },
  { "org.tally.Register1", "InstallCertificate", TALLY_ACTION_RECONCILE, NULL },
  /* Whom the register trusts: decided once, by an administrator. */
  { "org.tally.Register1", "SetIssuer", TALLY_ACTION_ADMIN, NULL },
  { "org.tally.Register1", "ExportBundle", TALLY_ACTION_RECONCILE, NULL },
  { "org.tally.Register1", "ApplyResult", TALLY_ACTION_RECONCILE, NULL },
  /* ExportBundle, the upload and ApplyResult in one. */
  { "org.tally.Register1", "Sync", TALLY_ACTION_RECONCILE, NULL },
  /* Which account the register belongs to, as SetIssuer whom it trusts. */
  { "org.tally.Register1", "Enroll", TALLY_ACTION_ADMIN, NULL },
  /* Buying a voucher from the enrolled account, then LoadVoucher. */
  { "org.tally.Register1", "Topup", TALLY_ACTION_TOPUP, NULL },
  { "org.tally.Payment1", NULL, TALLY_ACTION_READ, NULL },
  /* Its own payment, anybody may cancel; another uid's only an admin. */
  { "org.tally.Payment1", "Cancel", TALLY_ACTION_ADMIN, "caller-uid" },
  /* An agent confirms only its own uid's payments (tally-dbus-agent.c):
   * whoever may read may run one. */
  { "org.tally.AgentManager1", "RegisterAgent", TALLY_ACTION_READ, NULL },
  { "org.tally.AgentManager1", "UnregisterAgent", TALLY_ACTION_READ, NULL },
  { "org.tally.AgentManager1", "RequestDefaultAgent", TALLY_ACTION_READ, NULL },
  /* At /: GetManagedObjects returns every property of the register and
   * the payments, so it is a read like Properties.GetAll. */
  { "org.freedesktop.DBus.ObjectManager", NULL, TALLY_ACTION_READ, NULL },
  { "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", TALLY_ACTION_READ, NULL },
};

struct _TallyDBusAuth
{
  TallyAuthorization mode;
  PolkitAuthority *authority; /* POLKIT */
  GCancellable *cancellable;  /* calls waiting for the bus or polkit */
};

/* One call on its way to its handler. */
typedef struct
{
  TallyDBusAuth *auth; /* not to be touched once @cancellable is cancelled */
  GCancellable *cancellable;
  GDBusInterfaceSkeleton *skeleton;
  GDBusMethodInvocation *invocation; /* owned until returned or dispatched */
  const char *action;
  const char *owner_property;
} AuthCall;

static GQuark
auth_quark (void)
{
  static GQuark quark;
  if (quark == 0)
    quark = g_quark_from_static_string ("tally-dbus-auth");
  return quark;
}

const char *
tally_dbus_auth_lookup (const char *interface, const char *method, const char **owner_property)
{
  g_return_val_if_fail (interface != NULL, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (auth_rules); i++) {
    const AuthRule *rule = &auth_rules[i];
    if (strcmp (rule->interface, interface) == 0 && g_strcmp0 (rule->method, method) == 0) {
      if (owner_property != NULL)
        *owner_property = rule->owner_property;
      return rule->action;
    }
  }
  return NULL;
}

static void
auth_call_free (AuthCall *call)
{
  g_clear_object (&call->invocation);
  g_object_unref (call->skeleton);
  g_object_unref (call->cancellable);
  g_free (call);
}

/* Returns @error to the caller and frees @call. */
static void auth_call_fail (AuthCall *call, TallyError code, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

static void
auth_call_fail (AuthCall *call, TallyError code, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *message = g_strdup_vprintf (format, args);
  va_end (args);

  g_autoptr (GError) error = g_error_new_literal (TALLY_ERROR, code, message);
  tally_dbus_error_return (g_steal_pointer (&call->invocation), error);
  auth_call_free (call);
}

static GDBusInterfaceVTable *
generated_vtable (GDBusInterfaceSkeleton *skeleton)
{
  GDBusInterfaceSkeletonClass *parent = g_type_class_peek_parent (G_OBJECT_GET_CLASS (skeleton));
  return parent->get_vtable (skeleton);
}

/* Authorized: on to the generated skeleton, whose handle-* signal runs the
 * handler; property reads are answered here. */
static void
dispatch (AuthCall *call)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&call->invocation);
  g_autoptr (GDBusInterfaceSkeleton) skeleton = g_object_ref (call->skeleton);
  GDBusConnection *connection = g_dbus_method_invocation_get_connection (invocation);
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  const char *path = g_dbus_method_invocation_get_object_path (invocation);
  const char *method = g_dbus_method_invocation_get_method_name (invocation);
  const char *interface = g_dbus_interface_skeleton_get_info (skeleton)->name;
  GDBusInterfaceVTable *vtable = generated_vtable (skeleton);
  g_autoptr (GError) error = NULL;

  auth_call_free (call);
  /* A payment may have left the bus while polkit thought. */
  if (!g_dbus_interface_skeleton_has_connection (skeleton, connection)) {
    error = g_error_new (TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "%s is gone", path);
    tally_dbus_error_return (invocation, error);
    return;
  }
  const char *called = g_dbus_method_invocation_get_interface_name (invocation);
  if (strcmp (called, PROPERTIES_INTERFACE) != 0) {
    /* Takes @invocation. */
    vtable->method_call (connection, sender, path, interface, method,
                         g_dbus_method_invocation_get_parameters (invocation), invocation,
                         skeleton);
    return;
  }
  if (strcmp (method, "GetAll") == 0) {
    g_autoptr (GVariant) all = g_dbus_interface_skeleton_get_properties (skeleton);
    g_dbus_method_invocation_return_value (invocation, g_variant_new ("(@a{sv})", all));
    return;
  }
  /* Get: GDBus has checked that the property exists and is readable; it
   * refuses Set of these read-only properties itself. */
  const GDBusPropertyInfo *property = g_dbus_method_invocation_get_property_info (invocation);
  g_autoptr (GVariant) value = NULL;
  if (strcmp (method, "Get") == 0 && property != NULL)
    value =
      vtable->get_property (connection, sender, path, interface, property->name, &error, skeleton);
  else
    error =
      g_error_new (G_DBUS_ERROR, G_DBUS_ERROR_PROPERTY_READ_ONLY, "%s is read-only", interface);
  if (value == NULL) {
    g_dbus_method_invocation_return_gerror (invocation, error);
    return;
  }
  /* Full reference, floating or not (as GDBus takes it). */
  g_variant_take_ref (value);
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(v)", value));
}

static void
on_checked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AuthCall *call = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (PolkitAuthorizationResult) answer =
    polkit_authority_check_authorization_finish (POLKIT_AUTHORITY (source), result, &error);
  const char *sender = g_dbus_method_invocation_get_sender (call->invocation);

  if (g_cancellable_is_cancelled (call->cancellable)) {
    auth_call_fail (call, TALLY_ERROR_CANCELLED, "tallyd is shutting down");
  } else if (answer == NULL) {
    g_warning ("cannot ask polkit about %s for %s: %s", call->action, sender, error->message);
    auth_call_fail (call, TALLY_ERROR_NOT_AUTHORIZED, "cannot check authorization for %s: %s",
                    call->action, error->message);
  } else if (polkit_authorization_result_get_is_authorized (answer)) {
    dispatch (call);
  } else if (polkit_authorization_result_get_is_challenge (answer)) {
    /* Only without ALLOW_INTERACTIVE_AUTHORIZATION: the caller may ask
     * again with it and be asked for a password. */
    g_info ("%s: %s needs interactive authorization", sender, call->action);
    g_dbus_method_invocation_return_dbus_error (
      g_steal_pointer (&call->invocation), INTERACTIVE_AUTHORIZATION_REQUIRED,
      "authentication is required for this; allow interactive authorization");
    auth_call_free (call);
  } else {
    g_message ("%s is not authorized for %s (%s)", sender, call->action,
               g_dbus_method_invocation_get_method_name (call->invocation));
    auth_call_fail (call, TALLY_ERROR_NOT_AUTHORIZED, "not authorized for %s", call->action);
  }
}

static void
check_action (AuthCall *call)
{
  GDBusMethodInvocation *invocation = call->invocation;
  const char *sender = g_dbus_method_invocation_get_sender (invocation);

  if (call->auth->mode == TALLY_AUTHORIZATION_NONE) {
    dispatch (call);
    return;
  }
  /* tallyd owns a name on a bus; a peer-to-peer caller has no name for
   * polkit to look up. */
  if (sender == NULL) {
    auth_call_fail (call, TALLY_ERROR_NOT_AUTHORIZED, "a peer-to-peer caller cannot be authorized");
    return;
  }
  g_autoptr (PolkitSubject) subject = polkit_system_bus_name_new (sender);
  GDBusMessageFlags message_flags =
    g_dbus_message_get_flags (g_dbus_method_invocation_get_message (invocation));
  PolkitCheckAuthorizationFlags flags =
    (message_flags & G_DBUS_MESSAGE_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION)
      ? POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION
      : POLKIT_CHECK_AUTHORIZATION_FLAGS_NONE;
  polkit_authority_check_authorization (call->auth->authority, subject, call->action, NULL, flags,
                                        call->cancellable, on_checked, call);
}

static void
on_caller_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AuthCall *call = user_data;
  g_autoptr (GError) error = NULL;
  guint32 uid, owner = TALLY_CALLER_UID_UNKNOWN;

  if (g_cancellable_is_cancelled (call->cancellable)) {
    auth_call_fail (call, TALLY_ERROR_CANCELLED, "tallyd is shutting down");
    return;
  }
  if (!tally_dbus_caller_get_uid_finish (result, &uid, &error)) {
    auth_call_fail (call, tally_error_code (error), "%s", error->message);
    return;
  }
  g_object_get (call->skeleton, call->owner_property, &owner, NULL);
  if (uid == owner) {
    dispatch (call);
    return;
  }
  /* Somebody else's: the admin action (call->action), or root when polkit
   * is not asked. */
  if (call->auth->mode == TALLY_AUTHORIZATION_NONE && uid != 0) {
    g_message ("uid %u may not call %s on %s of uid %u", uid,
               g_dbus_method_invocation_get_method_name (call->invocation),
               g_dbus_method_invocation_get_object_path (call->invocation), owner);
    auth_call_fail (call, TALLY_ERROR_NOT_AUTHORIZED, "%s belongs to uid %u",
                    g_dbus_method_invocation_get_object_path (call->invocation), owner);
    return;
  }
  check_action (call);
}

/* The vtable of every authorized skeleton: with no get_property, GDBus
 * sends Properties.Get and GetAll here as method calls too. */
static void
auth_method_call (GDBusConnection *connection,
                  const char *sender,
                  const char *object_path,
                  const char *interface_name,
                  const char *method_name,
                  GVariant *parameters,
                  GDBusMethodInvocation *invocation,
                  gpointer user_data)
{
  GDBusInterfaceSkeleton *skeleton = user_data;
  TallyDBusAuth *auth = g_object_get_qdata (G_OBJECT (skeleton), auth_quark ());
  const char *interface = g_dbus_interface_skeleton_get_info (skeleton)->name;
  gboolean properties = strcmp (interface_name, PROPERTIES_INTERFACE) == 0;
  const char *owner_property = NULL;
  const char *action =
    tally_dbus_auth_lookup (interface, properties ? NULL : method_name, &owner_property);

  AuthCall *call = g_new0 (AuthCall, 1);
  call->auth = auth;
  call->cancellable = g_object_ref (auth->cancellable);
  call->skeleton = g_object_ref (skeleton);
  call->invocation = invocation;
  call->action = action;
  call->owner_property = owner_property;
  if (action == NULL) {
    g_warning ("no authorization rule for %s.%s", interface, method_name);
    auth_call_fail (call, TALLY_ERROR_NOT_AUTHORIZED, "no authorization rule for %s.%s", interface,
                    method_name);
  } else if (owner_property != NULL) {
    tally_dbus_caller_get_uid (invocation, call->cancellable, on_caller_uid, call);
  } else {
    check_action (call);
  }
}

static GDBusInterfaceVTable auth_vtable = {
  .method_call = auth_method_call,
  .get_property = NULL,
  .set_property = NULL,
};

static GDBusInterfaceVTable *
auth_get_vtable (GDBusInterfaceSkeleton *skeleton)
{
  return &auth_vtable;
}

static void
auth_skeleton_class_init (gpointer klass, gpointer class_data)
{
  GDBusInterfaceSkeletonClass *skeleton_class = klass;
  skeleton_class->get_vtable = auth_get_vtable;
}

/* "TallyAuth" + the generated skeleton's type name: the same object, but
 * for its vtable. */
static GType
auth_skeleton_type (GType parent)
{
  g_autofree char *name = g_strconcat ("TallyAuth", g_type_name (parent), NULL);
  GType type = g_type_from_name (name);

  if (type != 0)
    return type;
  GTypeQuery query;
  g_type_query (parent, &query);
  g_return_val_if_fail (query.type != 0, G_TYPE_INVALID);
  return g_type_register_static_simple (parent, g_intern_string (name), query.class_size,
                                        auth_skeleton_class_init, query.instance_size, NULL, 0);
}

gpointer
tally_dbus_auth_skeleton_new (TallyDBusAuth *auth, GType skeleton_type)
{
  g_return_val_if_fail (auth != NULL, NULL);
  g_return_val_if_fail (g_type_is_a (skeleton_type, G_TYPE_DBUS_INTERFACE_SKELETON), NULL);

  GObject *skeleton = g_object_new (auth_skeleton_type (skeleton_type), NULL);
  g_object_set_qdata (skeleton, auth_quark (), auth);
  return skeleton;
}

TallyDBusAuth *
tally_dbus_auth_new (TallyAuthorization mode, GError **error)
{
  g_autoptr (PolkitAuthority) authority = NULL;

  if (mode == TALLY_AUTHORIZATION_POLKIT) {
    g_autoptr (GError) local = NULL;
    authority = polkit_authority_get_sync (NULL, &local);
    if (authority == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                   "[dbus] authorization=polkit: cannot reach polkit: %s", local->message);
      return NULL;
    }
  }
  TallyDBusAuth *auth = g_new0 (TallyDBusAuth, 1);
  auth->mode = mode;
  auth->authority = g_steal_pointer (&authority);
  auth->cancellable = g_cancellable_new ();
  return auth;
}

void
tally_dbus_auth_free (TallyDBusAuth *auth)
{
  if (auth == NULL)
    return;
  g_cancellable_cancel (auth->cancellable);
  g_object_unref (auth->cancellable);
  g_clear_object (&auth->authority);
  g_free (auth);
}

TallyAuthorization
tally_dbus_auth_get_mode (TallyDBusAuth *auth)
{
  g_return_val_if_fail (auth != NULL, TALLY_AUTHORIZATION_POLKIT);
  return auth->mode;
}
