/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-daemon.h"

#include <string.h>

#include "tally-dbus-agent.h"
#include "tally-dbus-error.h"
#include "tally-dbus-payment.h"
#include "tally-dbus-register.h"
#include "tally-link.h"
#include "tally-payment.h"

typedef struct
{
  TallyDaemon *daemon;
  TallyPayment *payment;
  TallyDBusPayment *object;
  char *path;
  char *sender;            /* Pay () caller, whose agent confirms */
  GCancellable *agent_call;
} DaemonPayment;

struct _TallyDaemon
{
  TallyRegister *reg;
  TallyAcceptPolicy policy;
  guint timeout_seconds;
  TallyStreamListener *listener;
  GDBusConnection *connection;
  TallyDBusRegister *register_object;
  TallyAgentManager *agents;
  GQueue payments;          /* DaemonPayment *, oldest first */
  DaemonPayment *waiting;   /* the payee request a connecting payer gets */
};

/* --- payments --- */

static void
daemon_payment_free (DaemonPayment *dp)
{
  if (dp->agent_call != NULL) {
    g_cancellable_cancel (dp->agent_call);
    g_clear_object (&dp->agent_call);
  }
  if (dp->daemon->waiting == dp)
    dp->daemon->waiting = NULL;
  tally_dbus_payment_free (dp->object);
  tally_payment_set_callbacks (dp->payment, NULL, NULL);
  tally_payment_free (dp->payment);
  g_free (dp->path);
  g_free (dp->sender);
  g_free (dp);
}

static void
on_payment_changed (TallyPayment *payment, gpointer user_data)
{
  DaemonPayment *dp = user_data;
  TallyDaemon *d = dp->daemon;
  TallyPaymentState state = tally_payment_get_state (payment);

  if (state != TALLY_PAYMENT_STATE_CONFIRMING && dp->agent_call != NULL) {
    /* The question is moot: time out, peer gone, or cancelled. */
    g_cancellable_cancel (dp->agent_call);
    g_clear_object (&dp->agent_call);
  }
  if (state != TALLY_PAYMENT_STATE_WAITING && d->waiting == dp)
    d->waiting = NULL;

  if (tally_payment_is_finished (payment)) {
    const GError *error = tally_payment_get_error (payment);
    if (error != NULL)
      g_message ("%s failed: %s", dp->path, error->message);
    else
      g_message ("%s done: %" G_GINT64_FORMAT " %s %s %s, counter %" G_GUINT64_FORMAT, dp->path,
                 tally_payment_get_amount (payment), tally_payment_get_currency (payment),
                 tally_payment_get_role (payment) == TALLY_SESSION_ROLE_PAYER ? "to" : "from",
                 tally_payment_get_peer (payment), tally_payment_get_counter (payment));
  }

  tally_dbus_payment_sync (dp->object);
  /* Spends, receipts and receives all commit to the register. */
  tally_daemon_register_changed (d);
}

static void
on_agent_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  gboolean yes = tally_agent_manager_confirm_finish (NULL, result, &error);

  /* Cancelled means the payment moved on or is gone: @user_data may be
   * freed. */
  if (!yes && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  DaemonPayment *dp = user_data;
  g_clear_object (&dp->agent_call);
  if (yes) {
    g_info ("%s confirmed by the agent", dp->path);
    g_autoptr (GError) confirm_error = NULL;
    if (!tally_payment_confirm (dp->payment, &confirm_error))
      g_debug ("%s: %s", dp->path, confirm_error->message);
    return;
  }
  g_info ("%s: %s", dp->path, error->message);
  tally_payment_reject (dp->payment, TALLY_ERROR_REJECTED, error->message, NULL);
}

static void
on_payment_confirm (TallyPayment *payment, gpointer user_data)
{
  DaemonPayment *dp = user_data;
  TallyDaemon *d = dp->daemon;

  g_return_if_fail (dp->agent_call == NULL);
  if (d->agents == NULL) {
    tally_payment_reject (payment, TALLY_ERROR_REJECTED, "no agent registered", NULL);
    return;
  }
  dp->agent_call = g_cancellable_new ();
  tally_agent_manager_confirm (d->agents, dp->sender, dp->path, tally_payment_get_amount (payment),
                               tally_payment_get_currency (payment), tally_payment_get_peer (payment),
                               tally_payment_get_comparison_code (payment),
                               (int) MIN (d->timeout_seconds * 1000u, (guint) G_MAXINT),
                               dp->agent_call, on_agent_reply, dp);
}

static const TallyPaymentCallbacks payment_callbacks = {
  .changed = on_payment_changed,
  .confirm = on_payment_confirm,
};

/* Drops the oldest finished payments beyond TALLY_DAEMON_MAX_PAYMENTS. */
static void
prune_payments (TallyDaemon *d)
{
  GList *l = d->payments.head;
  while (d->payments.length > TALLY_DAEMON_MAX_PAYMENTS && l != NULL) {
    GList *next = l->next;
    DaemonPayment *dp = l->data;
    if (tally_payment_is_finished (dp->payment)) {
      g_debug ("dropping %s", dp->path);
      g_queue_delete_link (&d->payments, l);
      daemon_payment_free (dp);
    }
    l = next;
  }
}

/* Exports @payment (taken) and starts tracking it. */
static DaemonPayment *
add_payment (TallyDaemon *d, TallyPayment *payment, const char *sender, GError **error)
{
  g_autofree char *path =
    g_strdup_printf (TALLY_PAYMENT_PATH_PREFIX "%u", tally_payment_get_id (payment));
  TallyDBusPayment *object = tally_dbus_payment_new (d->connection, path, payment, error);
  if (object == NULL) {
    tally_payment_free (payment);
    return NULL;
  }

  DaemonPayment *dp = g_new0 (DaemonPayment, 1);
  dp->daemon = d;
  dp->payment = payment;
  dp->object = object;
  dp->path = g_steal_pointer (&path);
  dp->sender = g_strdup (sender);
  tally_payment_set_callbacks (payment, &payment_callbacks, dp);
  g_queue_push_tail (&d->payments, dp);
  prune_payments (d);
  return dp;
}

char *
tally_daemon_request_payment (TallyDaemon *d,
                              gint64 amount,
                              const char *memo,
                              guint timeout_seconds,
                              GError **error)
{
  g_return_val_if_fail (d != NULL && d->connection != NULL, NULL);

  /* One payee request at a time: a connecting payer must know whom it pays. */
  if (d->waiting != NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                 "payment request %s is still waiting for a payer", d->waiting->path);
    return NULL;
  }

  TallyPayment *payment =
    tally_payment_new_payee (d->reg, amount, memo, &d->policy, timeout_seconds, error);
  if (payment == NULL)
    return NULL;
  DaemonPayment *dp = add_payment (d, payment, NULL, error);
  if (dp == NULL)
    return NULL;
  d->waiting = dp;
  g_message ("%s: requesting %" G_GINT64_FORMAT " %s, waiting for a payer on %s", dp->path, amount,
             tally_payment_get_currency (payment), tally_daemon_get_listen_address (d));
  tally_daemon_register_changed (d);
  return g_strdup (dp->path);
}

char *
tally_daemon_pay (TallyDaemon *d,
                  const char *address,
                  const char *sender,
                  guint timeout_seconds,
                  GError **error)
{
  g_return_val_if_fail (d != NULL && d->connection != NULL && address != NULL, NULL);

  if (!g_str_has_prefix (address, "unix:") && !g_str_has_prefix (address, "tcp:")) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "address \"%s\" is not unix:PATH or tcp:HOST:PORT", address);
    return NULL;
  }

  TallyPayment *payment = tally_payment_new_payer (d->reg, &d->policy, timeout_seconds);
  DaemonPayment *dp = add_payment (d, payment, sender, error);
  if (dp == NULL)
    return NULL;
  g_message ("%s: paying %s", dp->path, address);
  tally_payment_connect (payment, address);
  return g_strdup (dp->path);
}

/* --- the payee listener --- */

static void
on_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  TallyDaemon *d = user_data;
  const char *peer = tally_link_get_peer (link) ? tally_link_get_peer (link) : "a payer";

  if (d->waiting == NULL) {
    g_message ("refusing %s: no payment requested", peer);
    tally_payment_refuse_link (link, TALLY_ERROR_NOT_FOUND, "no payment requested");
    return;
  }

  DaemonPayment *dp = d->waiting;
  d->waiting = NULL;
  g_autoptr (GError) error = NULL;
  if (!tally_payment_attach (dp->payment, link, &error)) {
    g_warning ("%s: cannot take %s: %s", dp->path, peer, error->message);
    tally_payment_refuse_link (link, tally_error_code (error), error->message);
  }
}

/* --- lifetime --- */

static TallyRegister *
open_register (const TallyConfig *config, GError **error)
{
  g_autoptr (GError) local = NULL;
  TallyRegister *reg = tally_register_open (config->register_dir, &local);

  if (reg == NULL && g_error_matches (local, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
    if (!config->has_issuer_key) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "[register] issuer_key: required to create a register in %s",
                   config->register_dir);
      return NULL;
    }
    reg = tally_register_create (config->register_dir, config->issuer_key, error);
    if (reg == NULL)
      return NULL;
    g_autofree char *id = tally_register_get_id_hex (reg);
    g_message ("created register %s in %s", id, config->register_dir);
    return reg;
  }
  if (reg == NULL) {
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }

  if (config->has_issuer_key &&
      memcmp (tally_register_get_issuer_key (reg), config->issuer_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER,
                 "[register] issuer_key: the register in %s belongs to another issuer",
                 config->register_dir);
    tally_register_free (reg);
    return NULL;
  }
  return reg;
}

TallyDaemon *
tally_daemon_new (const TallyConfig *config, GError **error)
{
  g_return_val_if_fail (config != NULL, NULL);

  g_autoptr (TallyRegister) reg = open_register (config, error);
  if (reg == NULL)
    return NULL;

  TallyDaemon *d = g_new0 (TallyDaemon, 1);
  g_queue_init (&d->payments);
  d->reg = g_steal_pointer (&reg);
  d->policy = config->policy;
  d->timeout_seconds = config->timeout_seconds;
  d->listener = tally_stream_listener_new (config->listen, TALLY_STREAM_DEFAULT_MTU, on_accept, d,
                                           error);
  if (d->listener == NULL) {
    g_prefix_error (error, "[transport] listen: ");
    tally_daemon_free (d);
    return NULL;
  }

  g_autofree char *id = tally_register_get_id_hex (d->reg);
  g_message ("register %s, listening for payers on %s", id,
             tally_stream_listener_get_address (d->listener));
  return d;
}

void
tally_daemon_free (TallyDaemon *d)
{
  if (d == NULL)
    return;
  DaemonPayment *dp;
  while ((dp = g_queue_pop_head (&d->payments)) != NULL)
    daemon_payment_free (dp);
  tally_dbus_register_free (d->register_object);
  tally_agent_manager_free (d->agents);
  g_clear_object (&d->connection);
  tally_stream_listener_free (d->listener);
  tally_register_free (d->reg);
  g_free (d);
}

gboolean
tally_daemon_export (TallyDaemon *d, GDBusConnection *connection, GError **error)
{
  g_return_val_if_fail (d != NULL && G_IS_DBUS_CONNECTION (connection), FALSE);
  g_return_val_if_fail (d->connection == NULL, FALSE);

  /* Agent replies come back as TALLY_ERROR codes only with the table. */
  tally_dbus_error_register ();
  d->connection = g_object_ref (connection);
  d->agents = tally_agent_manager_new (connection, error);
  if (d->agents == NULL)
    return FALSE;
  d->register_object = tally_dbus_register_new (connection, d, error);
  return d->register_object != NULL;
}

TallyRegister *
tally_daemon_get_register (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return d->reg;
}

const char *
tally_daemon_get_listen_address (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return tally_stream_listener_get_address (d->listener);
}

guint
tally_daemon_get_timeout (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, 0);
  return d->timeout_seconds;
}

guint
tally_daemon_get_payment_count (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, 0);
  return d->payments.length;
}

void
tally_daemon_register_changed (TallyDaemon *d)
{
  g_return_if_fail (d != NULL);
  if (d->register_object != NULL)
    tally_dbus_register_sync (d->register_object);
}
