/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-payment.h"

#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"

struct _TallyDBusPayment
{
  TallyDBusPayment1 *skeleton;
  TallyPayment *payment;
  char *path;
};

static gboolean
handle_cancel (TallyDBusPayment1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  TallyDBusPayment *object = user_data;
  g_autoptr (GError) error = NULL;

  if (!tally_payment_cancel (object->payment, &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_dbus_payment1_complete_cancel (skeleton, invocation);
  return TRUE;
}

void
tally_dbus_payment_sync (TallyDBusPayment *object)
{
  g_return_if_fail (object != NULL);

  TallyPayment *p = object->payment;
  TallyDBusPayment1 *s = object->skeleton;
  const GError *error = tally_payment_get_error (p);
  GBytes *receipt = tally_payment_get_receipt (p);

  g_object_freeze_notify (G_OBJECT (s));
  tally_dbus_payment1_set_role (s, tally_session_role_to_string (tally_payment_get_role (p)));
  tally_dbus_payment1_set_state (s, tally_payment_state_to_string (tally_payment_get_state (p)));
  tally_dbus_payment1_set_amount (s, tally_payment_get_amount (p));
  tally_dbus_payment1_set_currency (s, tally_payment_get_currency (p));
  tally_dbus_payment1_set_memo (s, tally_payment_get_memo (p));
  tally_dbus_payment1_set_peer (s, tally_payment_get_peer (p));
  tally_dbus_payment1_set_peer_name (s, tally_payment_get_peer_name (p));
  tally_dbus_payment1_set_comparison_code (s, tally_payment_get_comparison_code (p));
  tally_dbus_payment1_set_counter (s, tally_payment_get_counter (p));
  tally_dbus_payment1_set_redelivered (s, tally_payment_is_redelivery (p));
  if (receipt != NULL)
    tally_dbus_payment1_set_receipt (
      s, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, receipt, TRUE));
  tally_dbus_payment1_set_error (s, error ? tally_dbus_error_name_for (error) : "");
  tally_dbus_payment1_set_error_message (s, error ? error->message : "");
  tally_dbus_payment1_set_error_from_peer (s, tally_payment_is_refused_by_peer (p));
  g_object_thaw_notify (G_OBJECT (s));
}

TallyDBusPayment *
tally_dbus_payment_new (GDBusConnection *connection,
                        TallyDBusAuth *auth,
                        const char *path,
                        TallyPayment *payment,
                        GError **error)
{
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection) && auth != NULL, NULL);
  g_return_val_if_fail (g_variant_is_object_path (path) && payment != NULL, NULL);

  TallyDBusPayment *object = g_new0 (TallyDBusPayment, 1);
  object->payment = payment;
  object->path = g_strdup (path);
  object->skeleton = tally_dbus_auth_skeleton_new (auth, TALLY_DBUS_TYPE_PAYMENT1_SKELETON);
  tally_dbus_payment1_set_receipt (
    object->skeleton, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, NULL, 0, 1));
  tally_dbus_payment_sync (object);
  g_signal_connect (object->skeleton, "handle-cancel", G_CALLBACK (handle_cancel), object);

  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (object->skeleton), connection,
                                         path, error)) {
    tally_dbus_payment_free (object);
    return NULL;
  }
  return object;
}

void
tally_dbus_payment_free (TallyDBusPayment *object)
{
  if (object == NULL)
    return;
  if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (object->skeleton)) != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (object->skeleton));
  g_signal_handlers_disconnect_by_data (object->skeleton, object);
  g_object_unref (object->skeleton);
  g_free (object->path);
  g_free (object);
}

void
tally_dbus_payment_set_payment (TallyDBusPayment *object, TallyPayment *payment)
{
  g_return_if_fail (object != NULL && payment != NULL);
  object->payment = payment;
  tally_dbus_payment_sync (object);
}

void
tally_dbus_payment_set_address (TallyDBusPayment *object, const char *address)
{
  g_return_if_fail (object != NULL && address != NULL);
  tally_dbus_payment1_set_address (object->skeleton, address);
}

void
tally_dbus_payment_set_request_uri (TallyDBusPayment *object, const char *uri)
{
  g_return_if_fail (object != NULL && uri != NULL);
  tally_dbus_payment1_set_request_uri (object->skeleton, uri);
}

const char *
tally_dbus_payment_get_path (TallyDBusPayment *object)
{
  g_return_val_if_fail (object != NULL, NULL);
  return object->path;
}

void
tally_dbus_payment_set_caller_uid (TallyDBusPayment *object, guint32 uid)
{
  g_return_if_fail (object != NULL);
  tally_dbus_payment1_set_caller_uid (object->skeleton, uid);
}

GDBusInterfaceSkeleton *
tally_dbus_payment_get_skeleton (TallyDBusPayment *object)
{
  g_return_val_if_fail (object != NULL, NULL);
  return G_DBUS_INTERFACE_SKELETON (object->skeleton);
}
