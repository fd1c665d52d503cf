/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-dbus-register.h"

#include <string.h>

#include "tally-clock.h"
#include "tally-dbus-caller.h"
#include "tally-dbus-error.h"
#include "tally-dbus-generated.h"
#include "tally-hex.h"

struct _TallyDBusRegister
{
  TallyDBusRegister1 *skeleton;
  TallyDaemon *daemon;
  GCancellable *uid_lookups; /* calls waiting for their caller's uid */
};

/* RequestPayment or Pay, its arguments checked, while the bus tells us
 * who called. */
typedef struct
{
  TallyDBusRegister *object;
  GDBusMethodInvocation *invocation;
  char *address; /* Pay; NULL for RequestPayment */
  char *tag;     /* Pay's "Tag" option, or NULL */
  gint64 amount;
  char *memo;
  guint timeout;
  guint payers;
} PendingCall;

static void
pending_call_free (PendingCall *call)
{
  g_object_unref (call->invocation);
  g_free (call->address);
  g_free (call->tag);
  g_free (call->memo);
  g_free (call);
}

static const guint8 *
bytes_arg (GVariant *value, gsize *len)
{
  const guint8 *data = g_variant_get_fixed_array (value, len, 1);
  /* An empty array may come back as NULL; the register wants a pointer. */
  return data != NULL ? data : (const guint8 *) "";
}

static GVariant *
bytes_value (GBytes *bytes)
{
  return g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE);
}

/* Options of RequestPayment and Pay: "Timeout" (u, seconds); RequestPayment
 * also "Payers" (u, how many payers may pay the request, each with its own
 * payment; @payers NULL for Pay); Pay also "Tag" (s, the request tag the
 * Hello names; @tag NULL for RequestPayment). */
static gboolean
parse_options (TallyDBusRegister *object,
               GVariant *options,
               guint *timeout,
               guint *payers,
               char **tag,
               GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  *timeout = tally_daemon_get_timeout (object->daemon);
  if (payers != NULL)
    *payers = 1;
  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value)) {
    if (strcmp (key, "Timeout") == 0 && g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32) &&
        g_variant_get_uint32 (value) > TALLY_DAEMON_MAX_TIMEOUT) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "Timeout %u is more than %u seconds", g_variant_get_uint32 (value),
                   TALLY_DAEMON_MAX_TIMEOUT);
      g_variant_unref (value);
      return FALSE;
    } else if (strcmp (key, "Timeout") == 0 &&
               g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32) &&
               g_variant_get_uint32 (value) > 0) {
      *timeout = g_variant_get_uint32 (value);
    } else if (payers != NULL && strcmp (key, "Payers") == 0 &&
               g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32) &&
               g_variant_get_uint32 (value) >= 1 &&
               g_variant_get_uint32 (value) <= TALLY_DAEMON_MAX_PAYERS) {
      *payers = g_variant_get_uint32 (value);
    } else if (tag != NULL && *tag == NULL && strcmp (key, "Tag") == 0 &&
               g_variant_is_of_type (value, G_VARIANT_TYPE_STRING)) {
      *tag = g_variant_dup_string (value, NULL);
    } else {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "unknown option %s or wrong type %s", key, g_variant_get_type_string (value));
      g_variant_unref (value);
      return FALSE;
    }
  }
  return TRUE;
}

static void
on_caller_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PendingCall *call = user_data;
  GDBusMethodInvocation *invocation = call->invocation;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  guint32 uid;

  /* Failing here may mean the object is gone: touch only the call. */
  if (!tally_dbus_caller_get_uid_finish (result, &uid, &error))
    goto fail;
  TallyDBusRegister *object = call->object;
  if (call->address != NULL)
    path = tally_daemon_pay (object->daemon, call->address, call->tag,
                             g_dbus_method_invocation_get_sender (invocation), uid, call->timeout,
                             &error);
  else
    path = tally_daemon_request_payment (object->daemon, uid, call->amount, call->memo,
                                         call->timeout, call->payers, &error);
  if (path == NULL)
    goto fail;
  g_dbus_method_invocation_return_value (invocation, g_variant_new ("(o)", path));
  pending_call_free (call);
  return;

fail:
  tally_dbus_error_return (invocation, error);
  pending_call_free (call);
}

static gboolean
handle_request_payment (TallyDBusRegister1 *skeleton,
                        GDBusMethodInvocation *invocation,
                        guint64 amount,
                        const char *memo,
                        GVariant *options,
                        gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  g_autoptr (GError) error = NULL;
  guint timeout, payers;

  if (!parse_options (object, options, &timeout, &payers, NULL, &error))
    goto fail;
  /* A payer refuses a memo that would not pass its text check. */
  if (!tally_text_check (memo, TALLY_TEXT_MAX_BYTES, "memo", &error)) {
    error->code = TALLY_ERROR_INVALID_ARGUMENT;
    goto fail;
  }
  if (amount == 0 || amount > (guint64) TALLY_AMOUNT_MAX) {
    g_set_error (&error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount %" G_GUINT64_FORMAT " is out of range", amount);
    goto fail;
  }
  PendingCall *call = g_new0 (PendingCall, 1);
  call->object = object;
  call->invocation = g_object_ref (invocation);
  call->amount = (gint64) amount;
  call->memo = g_strdup (memo);
  call->timeout = timeout;
  call->payers = payers;
  tally_dbus_caller_get_uid (invocation, object->uid_lookups, on_caller_uid, call);
  return TRUE;

fail:
  tally_dbus_error_return (invocation, error);
  return TRUE;
}

static gboolean
handle_pay (TallyDBusRegister1 *skeleton,
            GDBusMethodInvocation *invocation,
            const char *address,
            GVariant *options,
            gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  g_autoptr (GError) error = NULL;
  guint timeout;
  g_autofree char *tag = NULL;

  if (!parse_options (object, options, &timeout, NULL, &tag, &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  PendingCall *call = g_new0 (PendingCall, 1);
  call->object = object;
  call->invocation = g_object_ref (invocation);
  call->address = g_strdup (address);
  call->tag = g_steal_pointer (&tag);
  call->timeout = timeout;
  tally_dbus_caller_get_uid (invocation, object->uid_lookups, on_caller_uid, call);
  return TRUE;
}

static gboolean
handle_load_voucher (TallyDBusRegister1 *skeleton,
                     GDBusMethodInvocation *invocation,
                     GVariant *voucher,
                     gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = bytes_arg (voucher, &len);

  if (!tally_register_load (reg, data, len, tally_now (), &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  g_info ("voucher loaded, balance %" G_GINT64_FORMAT, tally_register_get_balance (reg));
  tally_daemon_register_changed (object->daemon);
  tally_dbus_register1_complete_load_voucher (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_set_issuer (TallyDBusRegister1 *skeleton,
                   GDBusMethodInvocation *invocation,
                   GVariant *key_set,
                   gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = bytes_arg (key_set, &len);

  if (!tally_register_set_issuer (reg, data, len, &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_daemon_register_changed (object->daemon);
  tally_dbus_register1_complete_set_issuer (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_install_certificate (TallyDBusRegister1 *skeleton,
                            GDBusMethodInvocation *invocation,
                            GVariant *certificate,
                            gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = bytes_arg (certificate, &len);

  if (!tally_register_install_certificate (reg, data, len, tally_now (), &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  g_info ("certificate installed");
  tally_daemon_register_changed (object->daemon);
  tally_dbus_register1_complete_install_certificate (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_export_bundle (TallyDBusRegister1 *skeleton,
                      GDBusMethodInvocation *invocation,
                      gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bundle = tally_register_export_bundle (reg, tally_now (), &error);

  if (bundle == NULL) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_dbus_register1_complete_export_bundle (skeleton, invocation, bytes_value (bundle));
  return TRUE;
}

static gboolean
handle_apply_result (TallyDBusRegister1 *skeleton,
                     GDBusMethodInvocation *invocation,
                     GVariant *result,
                     gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = bytes_arg (result, &len);

  if (!tally_register_apply_result (reg, data, len, tally_now (), &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  g_info ("reconciliation result applied");
  tally_daemon_register_changed (object->daemon);
  tally_dbus_register1_complete_apply_result (skeleton, invocation);
  return TRUE;
}

static void
on_synced (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GDBusMethodInvocation) invocation = user_data;
  g_autoptr (GError) error = NULL;

  if (!tally_sync_run_finish (NULL, result, &error)) {
    tally_dbus_error_return (invocation, error);
    return;
  }
  g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_sync (TallyDBusRegister1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallySync *sync = tally_daemon_get_sync (object->daemon);

  if (sync == NULL) {
    g_autoptr (GError) error =
      g_error_new_literal (TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                           "no online issuer: set [issuer] url in tallyd.conf, or carry the "
                           "bundle by hand (tallyctl export, tallyctl apply)");
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  /* The object may go before the answer: the callback holds only the call. */
  tally_sync_run_async (sync, on_synced, g_object_ref (invocation));
  return TRUE;
}

/* Enroll and Topup: the call and the daemon, alive as long as the
 * daemon's sync, which finishes its calls when it goes. */
typedef struct
{
  GDBusMethodInvocation *invocation;
  TallyDBusRegister *object;
} AccountReply;

static void
on_account_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AccountReply *reply = user_data;
  g_autoptr (GError) error = NULL;
  gboolean ok = g_task_get_source_tag (G_TASK (result)) == tally_sync_enroll_async
                  ? tally_sync_enroll_finish (NULL, result, &error)
                  : tally_sync_topup_finish (NULL, result, &error);

  /* CANCELLED: the daemon is going, @reply->object with it. */
  if (!(error != NULL && g_error_matches (error, TALLY_ERROR, TALLY_ERROR_CANCELLED)))
    tally_daemon_register_changed (reply->object->daemon);
  if (ok)
    g_dbus_method_invocation_return_value (reply->invocation, NULL);
  else
    tally_dbus_error_return (reply->invocation, error);
  g_object_unref (reply->invocation);
  g_free (reply);
}

static AccountReply *
account_reply_new (TallyDBusRegister *object, GDBusMethodInvocation *invocation)
{
  AccountReply *reply = g_new0 (AccountReply, 1);
  reply->invocation = g_object_ref (invocation);
  reply->object = object;
  return reply;
}

static gboolean
handle_enroll (TallyDBusRegister1 *skeleton,
               GDBusMethodInvocation *invocation,
               const char *account,
               const char *token,
               gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallySync *sync = tally_daemon_get_sync (object->daemon);

  if (sync == NULL) {
    g_autoptr (GError) error = g_error_new_literal (
      TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
      "no online issuer: set [issuer] url in tallyd.conf, or install a certificate by hand "
      "(tallyctl certificate)");
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_sync_enroll_async (sync, account, token, on_account_done,
                           account_reply_new (object, invocation));
  return TRUE;
}

static gboolean
handle_topup (TallyDBusRegister1 *skeleton,
              GDBusMethodInvocation *invocation,
              guint64 amount,
              gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallySync *sync = tally_daemon_get_sync (object->daemon);
  g_autoptr (GError) error = NULL;

  if (sync == NULL) {
    error = g_error_new_literal (TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                                 "no online issuer: set [issuer] url in tallyd.conf, or load a "
                                 "voucher by hand (tallyctl load)");
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  if (amount == 0 || amount > (guint64) TALLY_AMOUNT_MAX) {
    error = g_error_new (TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                         "amount %" G_GUINT64_FORMAT " is out of range", amount);
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_sync_topup_async (sync, (gint64) amount, on_account_done,
                          account_reply_new (object, invocation));
  return TRUE;
}

static gboolean
handle_defund (TallyDBusRegister1 *skeleton, GDBusMethodInvocation *invocation, gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) record = tally_register_defund (reg, tally_now (), &error);

  if (record == NULL) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  g_info ("register defunded and closed");
  tally_daemon_register_changed (object->daemon);
  tally_dbus_register1_complete_defund (skeleton, invocation, bytes_value (record));
  return TRUE;
}

static GVariant *
history_entry_to_variant (const TallyHistoryEntry *e)
{
  GVariantDict dict;
  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "Kind", "s", tally_entry_kind_to_string (e->kind));
  g_variant_dict_insert (&dict, "State", "s", tally_entry_state_to_string (e->state));
  g_variant_dict_insert (&dict, "Amount", "x", e->amount);
  g_variant_dict_insert (&dict, "Counter", "t", e->counter);
  g_variant_dict_insert (&dict, "Sequence", "t", e->sequence);
  g_variant_dict_insert (&dict, "Time", "t", e->time);
  if (e->peer != NULL)
    g_variant_dict_insert (&dict, "Peer", "s", e->peer);
  if (e->memo != NULL)
    g_variant_dict_insert (&dict, "Memo", "s", e->memo);
  if (e->peer_name != NULL)
    g_variant_dict_insert (&dict, "PeerName", "s", e->peer_name);
  if (e->receipt_id != NULL)
    g_variant_dict_insert (&dict, "ReceiptId", "s", e->receipt_id);
  return g_variant_dict_end (&dict);
}

static gboolean
handle_get_history (TallyDBusRegister1 *skeleton,
                    GDBusMethodInvocation *invocation,
                    guint limit,
                    gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) entries = tally_register_get_history (reg, limit, &error);

  if (entries == NULL) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  GVariantBuilder builder;
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < entries->len; i++)
    g_variant_builder_add_value (&builder, history_entry_to_variant (entries->pdata[i]));
  tally_dbus_register1_complete_get_history (skeleton, invocation,
                                             g_variant_builder_end (&builder));
  return TRUE;
}

static void
on_discovery_caller_uid (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PendingCall *call = user_data;
  GDBusMethodInvocation *invocation = call->invocation;
  g_autoptr (GError) error = NULL;
  guint32 uid;

  /* Failing here may mean the object is gone: touch only the call. */
  if (!tally_dbus_caller_get_uid_finish (result, &uid, &error) ||
      !tally_daemon_start_discovery (call->object->daemon,
                                     g_dbus_method_invocation_get_sender (invocation), uid, &error))
    tally_dbus_error_return (invocation, error);
  else
    tally_dbus_register1_complete_start_discovery (call->object->skeleton, invocation);
  pending_call_free (call);
}

/* BlueZ's Adapter1.StartDiscovery/StopDiscovery: the session is the
 * caller's (tally-dbus-nearby.h), counted per UNIX user. */
static gboolean
handle_start_discovery (TallyDBusRegister1 *skeleton,
                        GDBusMethodInvocation *invocation,
                        gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  PendingCall *call = g_new0 (PendingCall, 1);

  call->object = object;
  call->invocation = g_object_ref (invocation);
  tally_dbus_caller_get_uid (invocation, object->uid_lookups, on_discovery_caller_uid, call);
  return TRUE;
}

static gboolean
handle_stop_discovery (TallyDBusRegister1 *skeleton,
                       GDBusMethodInvocation *invocation,
                       gpointer user_data)
{
  TallyDBusRegister *object = user_data;
  g_autoptr (GError) error = NULL;

  if (!tally_daemon_stop_discovery (object->daemon, g_dbus_method_invocation_get_sender (invocation),
                                    &error)) {
    tally_dbus_error_return (invocation, error);
    return TRUE;
  }
  tally_dbus_register1_complete_stop_discovery (skeleton, invocation);
  return TRUE;
}

void
tally_dbus_register_sync (TallyDBusRegister *object)
{
  g_return_if_fail (object != NULL);

  TallyRegister *reg = tally_daemon_get_register (object->daemon);
  TallyDBusRegister1 *s = object->skeleton;
  const Tally__RegisterCertificate *cert = tally_register_get_certificate_info (reg);
  const Tally__Limits *limits = cert ? cert->limits : NULL;
  const char *currency = tally_register_get_currency (reg);
  g_autofree char *id = tally_register_get_id_hex (reg);
  g_autofree char *key = tally_hex_encode (tally_register_get_public_key (reg), TALLY_PUBLIC_KEY_BYTES);

  g_object_freeze_notify (G_OBJECT (s));
  tally_dbus_register1_set_register_id (s, id);
  tally_dbus_register1_set_public_key (s, key);
  g_autofree char *issuer =
    tally_register_has_issuer (reg)
      ? tally_hex_encode (tally_register_get_issuer_key (reg), TALLY_PUBLIC_KEY_BYTES)
      : g_strdup ("");
  tally_dbus_register1_set_issuer_key (s, issuer);
  tally_dbus_register1_set_balance (s, tally_register_get_balance (reg));
  tally_dbus_register1_set_currency (s, currency ? currency : "");
  tally_dbus_register1_set_max_payment (s, limits ? limits->max_payment : 0);
  tally_dbus_register1_set_balance_cap (s, limits ? limits->balance_cap : 0);
  tally_dbus_register1_set_max_offline_payments (s, limits ? limits->max_offline_payments : 0);
  tally_dbus_register1_set_max_offline_seconds (s, limits ? limits->max_offline_seconds : 0);
  tally_dbus_register1_set_offline_payments (s, tally_register_get_offline_payments (reg));
  tally_dbus_register1_set_certificate_expiry (s, cert ? cert->not_after : 0);
  tally_dbus_register1_set_last_reconciliation (s, tally_register_get_last_reconciliation (reg));
  tally_dbus_register1_set_revocation_serial (s, tally_register_get_revocation_serial (reg));
  tally_dbus_register1_set_closed (s, tally_register_is_closed (reg));
  tally_dbus_register1_set_revoked (s, tally_register_is_revoked (reg));
  tally_dbus_register1_set_listen_address (s, tally_daemon_get_listen_address (object->daemon));
  tally_dbus_register1_set_display_name (s, cert && cert->display_name ? cert->display_name : "");
  tally_dbus_register1_set_discovering (s, tally_daemon_is_discovering (object->daemon));
  TallySync *sync = tally_daemon_get_sync (object->daemon);
  const GError *sync_error = sync ? tally_sync_get_last_error (sync) : NULL;
  tally_dbus_register1_set_issuer_url (s, sync ? tally_sync_get_url (sync) : "");
  tally_dbus_register1_set_sync_state (
    s, sync ? tally_sync_state_to_string (tally_sync_get_state (sync)) : "off");
  tally_dbus_register1_set_last_sync (s, sync ? tally_sync_get_last_sync (sync) : 0);
  g_autofree char *sync_error_text =
    sync_error
      ? g_strdup_printf ("%s: %s", tally_dbus_error_name_for (sync_error), sync_error->message)
      : g_strdup ("");
  tally_dbus_register1_set_last_sync_error (s, sync_error_text);
  tally_dbus_register1_set_sync_deadline (s, tally_sync_deadline (reg));
  g_object_thaw_notify (G_OBJECT (s));
}

TallyDBusRegister *
tally_dbus_register_new (GDBusConnection *connection, TallyDaemon *daemon, GError **error)
{
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection) && daemon != NULL, NULL);
  g_return_val_if_fail (tally_daemon_get_auth (daemon) != NULL, NULL);

  TallyDBusRegister *object = g_new0 (TallyDBusRegister, 1);
  object->daemon = daemon;
  object->skeleton = tally_dbus_auth_skeleton_new (tally_daemon_get_auth (daemon),
                                                   TALLY_DBUS_TYPE_REGISTER1_SKELETON);
  object->uid_lookups = g_cancellable_new ();
  tally_dbus_register_sync (object);

  g_signal_connect (object->skeleton, "handle-request-payment", G_CALLBACK (handle_request_payment),
                    object);
  g_signal_connect (object->skeleton, "handle-pay", G_CALLBACK (handle_pay), object);
  g_signal_connect (object->skeleton, "handle-load-voucher", G_CALLBACK (handle_load_voucher),
                    object);
  g_signal_connect (object->skeleton, "handle-set-issuer", G_CALLBACK (handle_set_issuer), object);
  g_signal_connect (object->skeleton, "handle-install-certificate",
                    G_CALLBACK (handle_install_certificate), object);
  g_signal_connect (object->skeleton, "handle-export-bundle", G_CALLBACK (handle_export_bundle),
                    object);
  g_signal_connect (object->skeleton, "handle-apply-result", G_CALLBACK (handle_apply_result),
                    object);
  g_signal_connect (object->skeleton, "handle-defund", G_CALLBACK (handle_defund), object);
  g_signal_connect (object->skeleton, "handle-sync", G_CALLBACK (handle_sync), object);
  g_signal_connect (object->skeleton, "handle-enroll", G_CALLBACK (handle_enroll), object);
  g_signal_connect (object->skeleton, "handle-topup", G_CALLBACK (handle_topup), object);
  g_signal_connect (object->skeleton, "handle-get-history", G_CALLBACK (handle_get_history), object);
  g_signal_connect (object->skeleton, "handle-start-discovery", G_CALLBACK (handle_start_discovery),
                    object);
  g_signal_connect (object->skeleton, "handle-stop-discovery", G_CALLBACK (handle_stop_discovery),
                    object);

  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (object->skeleton), connection,
                                         TALLY_REGISTER_PATH, error)) {
    tally_dbus_register_free (object);
    return NULL;
  }
  return object;
}

void
tally_dbus_register_free (TallyDBusRegister *object)
{
  if (object == NULL)
    return;
  if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (object->skeleton)) !=
      NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (object->skeleton));
  g_signal_handlers_disconnect_by_data (object->skeleton, object);
  g_object_unref (object->skeleton);
  g_cancellable_cancel (object->uid_lookups);
  g_object_unref (object->uid_lookups);
  g_free (object);
}

GDBusInterfaceSkeleton *
tally_dbus_register_get_skeleton (TallyDBusRegister *object)
{
  g_return_val_if_fail (object != NULL, NULL);
  return G_DBUS_INTERFACE_SKELETON (object->skeleton);
}
