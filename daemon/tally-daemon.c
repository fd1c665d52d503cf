/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-daemon-private.h"

#include <string.h>
#include <sys/resource.h>

#include "tally-dbus-error.h"
#include "tally-gatt-client.h"
#include "tally-hex.h"

/* Devices a payee serves at once over BLE, where BlueZ keeps them apart
 * (5.76 on); older BlueZ serves one at a time. */
#define BLE_MAX_DEVICES 8

/* --- payments --- */

static void
daemon_payment_free (DaemonPayment *dp)
{
  if (dp->agent_call != NULL) {
    g_cancellable_cancel (dp->agent_call);
    g_clear_object (&dp->agent_call);
  }
  if (dp->ble_connect != NULL) {
    g_cancellable_cancel (dp->ble_connect);
    g_clear_object (&dp->ble_connect);
  }
  DaemonRequest *r = daemon_request_of_object (dp->daemon, dp);
  if (r != NULL) {
    r->object = NULL;
    daemon_end_request (dp->daemon, r, TALLY_ERROR_CANCELLED, "payment request withdrawn");
  }
  if (dp->linger != NULL) {
    g_source_destroy (dp->linger);
    g_source_unref (dp->linger);
  }
  /* Pruned or shut down: InterfacesRemoved tells clients it is gone. */
  tally_dbus_objects_remove (dp->daemon->objects, tally_dbus_payment_get_skeleton (dp->object));
  tally_dbus_payment_free (dp->object);
  /* A payee's callbacks are its handshake's, gone with the request. */
  if (tally_payment_get_role (dp->payment) == TALLY_SESSION_ROLE_PAYER)
    tally_payment_set_callbacks (dp->payment, NULL, NULL, NULL);
  tally_payment_unref (dp->payment);
  g_free (dp->path);
  g_free (dp->sender);
  g_free (dp);
}

static gboolean
on_linger_over (gpointer user_data)
{
  DaemonPayment *dp = user_data;
  TallyDaemon *d = dp->daemon;

  g_clear_pointer (&dp->linger, g_source_unref);
  g_debug ("dropping %s, finished %u s ago", dp->path, d->keep_finished_seconds);
  g_queue_remove (&d->payments, dp);
  daemon_payment_free (dp);
  return G_SOURCE_REMOVE;
}

static void
log_finished (DaemonPayment *dp)
{
  TallyPayment *payment = dp->payment;
  const GError *error = tally_payment_get_error (payment);
  if (error != NULL)
    g_message ("%s (uid %u) failed: %s", dp->path, dp->uid, error->message);
  else
    g_message ("%s (uid %u) done: %" G_GINT64_FORMAT " %s %s %s, counter %" G_GUINT64_FORMAT,
               dp->path, dp->uid, tally_payment_get_amount (payment),
               tally_payment_get_currency (payment),
               tally_payment_get_role (payment) == TALLY_SESSION_ROLE_PAYER ? "to" : "from",
               tally_payment_get_peer (payment), tally_payment_get_counter (payment));
  if (error == NULL && dp->ble) {
    gint64 now = g_get_monotonic_time ();
    /* Measured for docs/ble.md and the VM tests. */
    if (dp->ble_connected != 0)
      g_message ("%s ble timing: discovery to receipt %" G_GINT64_FORMAT
                 " ms, connected to receipt %" G_GINT64_FORMAT " ms",
                 dp->path, (now - dp->ble_started) / 1000, (now - dp->ble_connected) / 1000);
    else
      g_message ("%s ble timing: link to receipt %" G_GINT64_FORMAT " ms", dp->path,
                 (now - dp->ble_started) / 1000);
  }
}

void
daemon_payment_update (DaemonPayment *dp)
{
  TallyDaemon *d = dp->daemon;

  if (tally_payment_is_finished (dp->payment) && dp->linger == NULL) {
    log_finished (dp);
    /* Bounded: a finished payment does not stay on the bus for ever. */
    dp->linger = g_timeout_source_new_seconds (dp->daemon->keep_finished_seconds);
    g_source_set_callback (dp->linger, on_linger_over, dp, NULL);
    g_source_set_static_name (dp->linger, "[tally] finished payment");
    g_source_attach (dp->linger, d->context);
  }

  tally_dbus_payment_sync (dp->object);
  /* Spends, receipts and receives all commit to the register. */
  tally_daemon_register_changed (d);
}

/* A payer's payment changed. */
static void
on_payment_changed (TallyPayment *payment, gpointer user_data)
{
  DaemonPayment *dp = user_data;
  TallyPaymentState state = tally_payment_get_state (payment);

  if (state != TALLY_PAYMENT_STATE_CONFIRMING && dp->agent_call != NULL) {
    /* The question is moot: time out, peer gone, or cancelled. */
    g_cancellable_cancel (dp->agent_call);
    g_clear_object (&dp->agent_call);
  }
  if (tally_payment_is_finished (payment) && dp->ble_connect != NULL) {
    g_cancellable_cancel (dp->ble_connect);
    g_clear_object (&dp->ble_connect);
  }
  daemon_payment_update (dp);
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
  tally_agent_manager_confirm (
    d->agents, dp->sender, dp->uid, dp->path, tally_payment_get_amount (payment),
    tally_payment_get_currency (payment), tally_payment_get_peer (payment),
    tally_payment_get_comparison_code (payment), tally_payment_get_peer_name (payment),
    (int) MIN (d->timeout_seconds * 1000u, (guint) G_MAXINT), dp->agent_call, on_agent_reply, dp);
}

static const TallyPaymentCallbacks payment_callbacks = {
  .changed = on_payment_changed,
  .confirm = on_payment_confirm,
};

/* Drops the oldest finished payments beyond TALLY_DAEMON_MAX_PAYMENTS;
 * never the open request's object, whose removal would end the request. */
static void
prune_payments (TallyDaemon *d)
{
  GList *l = d->payments.head;
  while (d->payments.length > TALLY_DAEMON_MAX_PAYMENTS && l != NULL) {
    GList *next = l->next;
    DaemonPayment *dp = l->data;
    gboolean request_object = daemon_request_of_object (d, dp) != NULL;
    if (tally_payment_is_finished (dp->payment) && !request_object) {
      g_debug ("dropping %s", dp->path);
      g_queue_delete_link (&d->payments, l);
      daemon_payment_free (dp);
    }
    l = next;
  }
}

DaemonPayment *
daemon_add_payment (TallyDaemon *d, TallyPayment *payment, const char *sender, guint32 uid, GError **error)
{
  g_autofree char *path = g_strdup_printf (TALLY_PAYMENT_PATH_PREFIX "%u", ++d->last_object);
  TallyDBusPayment *object = tally_dbus_payment_new (d->connection, d->auth, path, payment, error);
  if (object == NULL) {
    tally_payment_unref (payment);
    return NULL;
  }

  DaemonPayment *dp = g_new0 (DaemonPayment, 1);
  dp->daemon = d;
  dp->payment = payment;
  dp->object = object;
  dp->path = g_steal_pointer (&path);
  dp->sender = g_strdup (sender);
  dp->uid = uid;
  tally_dbus_payment_set_caller_uid (object, uid);
  if (tally_payment_get_role (payment) == TALLY_SESSION_ROLE_PAYER)
    tally_payment_set_callbacks (payment, &payment_callbacks, dp, NULL);
  tally_dbus_objects_add (d->objects, tally_dbus_payment_get_skeleton (object));
  g_queue_push_tail (&d->payments, dp);
  prune_payments (d);
  return dp;
}

static void
on_ble_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  TallyGattConnectInfo info;
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyLink) link = tally_gatt_connect_finish (result, &info, &error);

  /* Cancelled: the payment ended or is gone, and @user_data with it. */
  if (link == NULL && g_error_matches (error, TALLY_ERROR, TALLY_ERROR_CANCELLED))
    return;

  DaemonPayment *dp = user_data;
  g_clear_object (&dp->ble_connect);
  if (link == NULL) {
    g_autoptr (GError) state_error = NULL;
    if (!tally_payment_fail_connect (dp->payment, error, &state_error))
      g_debug ("%s: %s", dp->path, state_error->message);
    return;
  }
  dp->ble_started = info.started;
  dp->ble_connected = info.connected;
  g_message ("%s: BLE payee %s: found after %" G_GINT64_FORMAT " ms, connected after %" G_GINT64_FORMAT
             " ms, ready after %" G_GINT64_FORMAT " ms (%u attempt(s), ATT MTU %u, notify %s, write %s)",
             dp->path, tally_link_get_peer (link), (info.discovered - info.started) / 1000,
             (info.connected - info.started) / 1000, (info.ready - info.started) / 1000,
             info.attempts, info.att_mtu, info.notify_fd ? "socket" : "Value changes",
             info.write_fd ? "socket" : "WriteValue");
  g_autoptr (GError) attach_error = NULL;
  if (!tally_payment_attach (dp->payment, link, &attach_error)) {
    g_debug ("%s: %s", dp->path, attach_error->message);
    tally_link_close (link);
  }
}

/* Pay () calls of @uid that have not finished. */
static guint
pays_in_progress (TallyDaemon *d, guint32 uid)
{
  guint n = 0;
  for (GList *l = d->payments.head; l != NULL; l = l->next) {
    DaemonPayment *dp = l->data;
    if (dp->uid == uid && tally_payment_get_role (dp->payment) == TALLY_SESSION_ROLE_PAYER &&
        !tally_payment_is_finished (dp->payment))
      n++;
  }
  return n;
}

/* Pay's "Tag": 8 lower-case hex digits, as the URI and "ble:TAG" write it. */
static gboolean
pay_tag_parse (const char *tag, guint8 out[static TALLY_REQUEST_TAG_BYTES], GError **error)
{
  gboolean ok = strlen (tag) == 2 * TALLY_REQUEST_TAG_BYTES;
  for (const char *p = tag; ok && *p != '\0'; p++)
    ok = g_ascii_isdigit (*p) || (*p >= 'a' && *p <= 'f');
  if (!ok || !tally_hex_decode (tag, out, TALLY_REQUEST_TAG_BYTES, NULL)) {
    g_autofree char *shown = g_strescape (tag, NULL);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "Tag \"%s\" is not 8 lower-case hex digits", shown);
    return FALSE;
  }
  return TRUE;
}

char *
tally_daemon_pay (TallyDaemon *d,
                  const char *address,
                  const char *tag,
                  const char *sender,
                  guint32 uid,
                  guint timeout_seconds,
                  GError **error)
{
  g_return_val_if_fail (d != NULL && d->connection != NULL && address != NULL, NULL);

  if (!tally_pay_targets_allow (&d->targets, address, error))
    return NULL;
  if (pays_in_progress (d, uid) >= TALLY_DAEMON_MAX_PAYS_PER_UID) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "uid %u already has %u payments in progress", uid, TALLY_DAEMON_MAX_PAYS_PER_UID);
    return NULL;
  }

  guint8 tag_bytes[TALLY_REQUEST_TAG_BYTES];
  gboolean has_tag = tag != NULL;
  if (has_tag && !pay_tag_parse (tag, tag_bytes, error))
    return NULL;

  gboolean ble = tally_gatt_is_address (address);
  g_autofree char *ble_tagged = NULL;
  if (ble) {
    TallyGattTarget target;
    if (!tally_gatt_address_parse (address, &target, error))
      return NULL;
    /* "ble" with a Tag looks for that request's advertisement, as
     * "ble:TAG" does: not for any stall nearby. */
    if (target.kind == TALLY_GATT_TARGET_ANY && has_tag) {
      ble_tagged = tally_gatt_tag_to_address (tag_bytes);
      address = ble_tagged;
    }
    if (target.kind == TALLY_GATT_TARGET_TAG) {
      if (has_tag && memcmp (tag_bytes, target.tag, sizeof tag_bytes) != 0) {
        g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                     "Tag %s differs from the tag in \"%s\"", tag, address);
        return NULL;
      }
      memcpy (tag_bytes, target.tag, sizeof tag_bytes);
      has_tag = TRUE;
    }
    if (d->system_bus == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "\"%s\": Bluetooth LE is off; set [transport] ble=true", address);
      return NULL;
    }
    /* Our own advertising payee would take our own connection for a payer. */
    if (d->requests->len > 0 && d->gatt != NULL) {
      DaemonRequest *r = d->requests->pdata[0];
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                   "%s serves payment request %s over Bluetooth LE; pay once it is over",
                   d->adapter, r->object ? r->object->path : r->address);
      return NULL;
    }
  } else if (!g_str_has_prefix (address, "unix:") && !g_str_has_prefix (address, "tcp:")) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "address \"%s\" is not unix:PATH, tcp:HOST:PORT, ble, ble:TAG or "
                 "ble:AA:BB:CC:DD:EE:FF",
                 address);
    return NULL;
  }

  TallyAcceptPolicy policy;
  if (!daemon_policy (d, &policy, error))
    return NULL;
  TallyPayment *payment = tally_payment_new_payer (d->reg, &policy, timeout_seconds);
  if (has_tag)
    tally_payment_set_request_tag (payment, tag_bytes);
  DaemonPayment *dp = daemon_add_payment (d, payment, sender, uid, error);
  if (dp == NULL)
    return NULL;
  tally_dbus_payment_set_address (dp->object, address);
  g_message ("%s (uid %u): paying %s", dp->path, uid, address);
  if (ble) {
    dp->ble = TRUE;
    dp->ble_connect = g_cancellable_new ();
    tally_gatt_connect_async (d->system_bus, d->adapter, address, timeout_seconds, dp->ble_connect,
                              on_ble_connected, dp);
  } else {
    tally_payment_connect (payment, address);
  }
  return g_strdup (dp->path);
}

/* --- payers arriving --- */

static void
on_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  daemon_take_payer (user_data, link, FALSE);
}

static void
on_gatt_link (TallyGattServer *server, TallyLink *link, gpointer user_data)
{
  daemon_take_payer (user_data, link, TRUE);
}

static void
on_gatt_advert_failed (TallyGattServer *server,
                       const guint8 *tag,
                       const GError *error,
                       gpointer user_data)
{
  daemon_request_not_advertised (user_data, tag, error);
}

static void
on_gatt_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  TallyGattServer *server = tally_gatt_server_new_finish (result, &error);

  if (server == NULL) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      g_warning ("Bluetooth LE payee unavailable: %s", error->message);
    return;
  }
  TallyDaemon *d = user_data;
  g_clear_object (&d->gatt_start);
  d->gatt = server;
  /* A central that connects and never writes goes, but not before a
   * phone could have discovered the service and set up notifications. */
  tally_gatt_server_set_idle_timeout (server, tally_daemon_get_ble_idle_seconds (d));
  tally_gatt_server_set_advert_failed_func (server, on_gatt_advert_failed);
  g_message ("Bluetooth LE payee on %s (%s mode)", d->adapter,
             tally_gatt_server_mode_to_string (tally_gatt_server_get_mode (server)));
  /* Requests made before the server was up stay on the stream
   * transport: their URI names the listen address, and no payer could
   * learn a BLE tag for them. */
}

/* --- reconciling online --- */

static void
on_sync_changed (TallySync *sync, gpointer user_data)
{
  tally_daemon_register_changed (user_data);
}

/* A payment in progress: an automatic sync waits until it is over.  A
 * request open for payers that has none yet is not one: it may stay open
 * for long, and the sync does not disturb it. */
static gboolean
on_sync_busy (TallySync *sync, gpointer user_data)
{
  TallyDaemon *d = user_data;
  if (daemon_requests_in_handshake (d))
    return TRUE;
  /* Pay, and finishing payments; an open request's object is counted
   * above, by its handshakes. */
  for (GList *l = d->payments.head; l != NULL; l = l->next) {
    DaemonPayment *dp = l->data;
    if (!tally_payment_is_finished (dp->payment) && daemon_request_of_object (d, dp) == NULL)
      return TRUE;
  }
  return FALSE;
}

static const TallySyncCallbacks sync_callbacks = {
  .changed = on_sync_changed,
  .busy = on_sync_busy,
};

/* --- lifetime --- */

/* File descriptors kept free beyond those open at start-up and the
 * connections: the register's journal, D-Bus, BlueZ's sockets. */
#define FD_RESERVE 32

static guint
count_open_fds (void)
{
  g_autoptr (GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;
  if (dir == NULL)
    return 0;
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

/* [transport] max_connections, lowered so that a crowd of connections
 * cannot take the descriptors the register and the bus need. */
static guint
connection_cap (guint configured)
{
  struct rlimit limit;
  if (getrlimit (RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
    return configured;
  guint in_use = count_open_fds () + FD_RESERVE;
  guint cap = limit.rlim_cur > in_use ? (guint) MIN (limit.rlim_cur - in_use, G_MAXUINT) : 1;
  if (cap >= configured)
    return configured;
  g_message ("[transport] max_connections=%u lowered to %u: file descriptor limit %llu, %u kept "
             "for the register and the bus",
             configured, cap, (unsigned long long) limit.rlim_cur, in_use);
  return cap;
}

static TallyRegister *
open_register (const TallyConfig *config, GError **error)
{
  g_autoptr (GError) local = NULL;
  TallyRegister *reg = tally_register_open (config->register_dir, &local);

  if (reg == NULL && g_error_matches (local, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
    /* Without issuer_key (a fresh install), the owner gives the issuer's
     * key set later: Register1.SetIssuer. */
    reg = config->has_issuer_key
            ? tally_register_create (config->register_dir, config->issuer_key, error)
            : tally_register_create_unbound (config->register_dir, error);
    if (reg == NULL)
      return NULL;
    g_autofree char *id = tally_register_get_id_hex (reg);
    g_message ("created register %s in %s%s", id, config->register_dir,
               config->has_issuer_key ? "" : ", trusting no issuer yet (tallyctl issuer FILE)");
    return reg;
  }
  if (reg == NULL) {
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }

  if (config->has_issuer_key && !tally_register_has_issuer (reg) &&
      !tally_register_set_issuer_key (reg, config->issuer_key, error)) {
    tally_register_free (reg);
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

gboolean
daemon_policy (TallyDaemon *d, TallyAcceptPolicy *policy, GError **error)
{
  const char *currency = tally_register_get_currency (d->reg);
  *policy = d->policy;
  if (d->max_amount == NULL || currency == NULL)
    return TRUE;
  if (!tally_amount_parse (d->max_amount, currency, &policy->max_amount, error)) {
    g_prefix_error (error, "[policy] max_amount: ");
    return FALSE;
  }
  return TRUE;
}

/* LE Privacy ([transport] ble_privacy): with it off, the adapter
 * advertises every request, and connects to every stall, from its public
 * address, and anyone with a scanner can follow it. */
static gboolean
check_privacy (const char *adapter, TallyPrivacyPolicy policy, GError **error)
{
  if (policy == TALLY_PRIVACY_POLICY_OFF)
    return TRUE;
  g_autoptr (GError) why = NULL;
  TallyMgmtInfo info;
  TallyPrivacyState state = tally_mgmt_read_privacy (adapter, &info, &why);
  const char *fix = "set Privacy = device under [General] in /etc/bluetooth/main.conf and "
                    "restart bluetoothd";
  g_autofree char *what = NULL;
  if (state == TALLY_PRIVACY_STATE_UNKNOWN)
    what = g_strdup_printf ("cannot tell whether %s has LE Privacy on (%s)", adapter, why->message);
  else
    what = g_strdup_printf ("%s has LE Privacy off: it advertises and connects from its public "
                            "address %02X:%02X:%02X:%02X:%02X:%02X",
                            adapter, info.address[5], info.address[4], info.address[3],
                            info.address[2], info.address[1], info.address[0]);

  switch (tally_privacy_decide (policy, state)) {
  case TALLY_PRIVACY_VERDICT_OK:
    g_message ("%s: LE Privacy on, resolvable private addresses on the air", adapter);
    return TRUE;
  case TALLY_PRIVACY_VERDICT_WARN:
    g_warning ("privacy: %s; %s", what, fix);
    return TRUE;
  case TALLY_PRIVACY_VERDICT_REFUSE:
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "[transport] ble_privacy=require: %s; %s", what, fix);
    return FALSE;
  }
  return FALSE;
}

TallyDaemon *
tally_daemon_new (const TallyConfig *config, GError **error)
{
  g_return_val_if_fail (config != NULL, NULL);

  /* Before anything is created: a refused start leaves no register. */
  if (config->ble && !check_privacy (config->adapter, config->ble_privacy, error))
    return NULL;
  g_autoptr (TallyRegister) reg = open_register (config, error);
  if (reg == NULL)
    return NULL;

  TallyDaemon *d = g_new0 (TallyDaemon, 1);
  d->context = g_main_context_ref_thread_default ();
  g_queue_init (&d->payments);
  d->requests = g_ptr_array_new_with_free_func ((GDestroyNotify) daemon_request_free);
  d->routers = g_ptr_array_new ();
  d->max_open_requests = config->max_open_requests;
  d->reg = g_steal_pointer (&reg);
  d->policy = config->policy;
  d->max_amount = g_strdup (config->max_amount);
  d->timeout_seconds = config->timeout_seconds;
  d->authorization = config->authorization;
  d->keep_finished_seconds = config->keep_finished_seconds;
  d->hello_timeout_seconds = config->hello_timeout_seconds;
  d->targets = config->targets;
  d->targets.unix_dirs = g_strdupv (config->targets.unix_dirs);
  d->listener = tally_stream_listener_new (config->listen, TALLY_STREAM_DEFAULT_MTU, on_accept, d,
                                           NULL, error);
  if (d->listener == NULL) {
    g_prefix_error (error, "[transport] listen: ");
    tally_daemon_free (d);
    return NULL;
  }
  tally_stream_listener_set_max_connections (d->listener, connection_cap (config->max_connections));

  d->ble = config->ble;
  d->adapter = g_strdup (config->adapter);
  if (config->ble) {
    /* BlueZ is on the system bus, whatever bus our own API is on. */
    g_autoptr (GError) bus_error = NULL;
    d->system_bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &bus_error);
    if (d->system_bus == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED,
                   "[transport] ble: cannot reach the system bus: %s", bus_error->message);
      tally_daemon_free (d);
      return NULL;
    }
    d->gatt_start = g_cancellable_new ();
    tally_gatt_server_new_async (d->system_bus, d->adapter, BLE_MAX_DEVICES, on_gatt_link, d,
                                 NULL, d->gatt_start, on_gatt_started, d);
  }

  if (config->issuer_url != NULL) {
    d->sync = tally_sync_new (d->reg, config->register_dir, config->issuer_url,
                              config->issuer_ca_file, config->allow_plain_http, error);
    if (d->sync == NULL) {
      tally_daemon_free (d);
      return NULL;
    }
    tally_sync_set_callbacks (d->sync, &sync_callbacks, d, NULL);
    tally_sync_set_request_timeout (d->sync, config->request_timeout_seconds);
    d->sync_interval = config->sync_interval_seconds;
    tally_sync_set_revocations_max_age (d->sync, config->revocations_max_age_seconds);
  }

  TallyAcceptPolicy policy;
  if (!daemon_policy (d, &policy, error)) {
    tally_daemon_free (d);
    return NULL;
  }
  g_autofree char *id = tally_register_get_id_hex (d->reg);
  g_message ("register %s, listening for payers on %s%s%s", id,
             tally_stream_listener_get_address (d->listener), d->ble ? " and Bluetooth LE " : "",
             d->ble ? d->adapter : "");
  return d;
}

void
tally_daemon_free (TallyDaemon *d)
{
  if (d == NULL)
    return;
  if (d->gatt_start != NULL) {
    g_cancellable_cancel (d->gatt_start);
    g_clear_object (&d->gatt_start);
  }
  if (d->sync != NULL) {
    tally_sync_set_callbacks (d->sync, NULL, NULL, NULL);
    g_clear_pointer (&d->sync, tally_sync_unref);
  }
  DaemonPayment *dp;
  while ((dp = g_queue_pop_head (&d->payments)) != NULL)
    daemon_payment_free (dp);
  daemon_routers_free (d);
  g_clear_pointer (&d->requests, g_ptr_array_unref);
  tally_dbus_nearby_free (d->nearby);
  tally_gatt_server_free (d->gatt);
  g_clear_object (&d->system_bus);
  g_free (d->adapter);
  g_free (d->max_amount);
  g_strfreev (d->targets.unix_dirs);
  if (d->objects != NULL && d->register_object != NULL)
    tally_dbus_objects_remove (d->objects, tally_dbus_register_get_skeleton (d->register_object));
  tally_dbus_objects_free (d->objects);
  tally_dbus_register_free (d->register_object);
  tally_agent_manager_free (d->agents);
  tally_dbus_auth_free (d->auth);
  g_clear_object (&d->connection);
  tally_stream_listener_unref (d->listener);
  tally_register_free (d->reg);
  g_main_context_unref (d->context);
  g_free (d);
}

static void
on_nearby_changed (gboolean discovering, gpointer user_data)
{
  tally_daemon_register_changed (user_data);
}

gboolean
tally_daemon_export (TallyDaemon *d, GDBusConnection *connection, GError **error)
{
  g_return_val_if_fail (d != NULL && G_IS_DBUS_CONNECTION (connection), FALSE);
  g_return_val_if_fail (d->connection == NULL, FALSE);

  /* Agent replies come back as TALLY_ERROR codes only with the table. */
  tally_dbus_error_register ();
  d->auth = tally_dbus_auth_new (d->authorization, error);
  if (d->auth == NULL)
    return FALSE;
  g_message ("D-Bus calls authorized by %s",
             d->authorization == TALLY_AUTHORIZATION_POLKIT
               ? "polkit"
               : "the bus policy alone ([dbus] authorization=none)");
  d->connection = g_object_ref (connection);
  d->agents = tally_agent_manager_new (connection, d->auth, error);
  if (d->agents == NULL)
    return FALSE;
  d->objects = tally_dbus_objects_new (connection, d->auth, error);
  if (d->objects == NULL)
    return FALSE;
  d->nearby = tally_dbus_nearby_new (connection, d->auth, d->objects, d->system_bus, d->adapter,
                                     on_nearby_changed, d);
  d->register_object = tally_dbus_register_new (connection, d, error);
  if (d->register_object == NULL)
    return FALSE;
  tally_dbus_objects_add (d->objects, tally_dbus_register_get_skeleton (d->register_object));
  if (d->sync != NULL && d->sync_interval > 0)
    tally_sync_start_automatic (d->sync, d->sync_interval);
  return TRUE;
}

TallyDBusAuth *
tally_daemon_get_auth (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return d->auth;
}

TallyRegister *
tally_daemon_get_register (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return d->reg;
}

TallySync *
tally_daemon_get_sync (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return d->sync;
}

guint
tally_daemon_get_ble_idle_seconds (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, 0);
  return MAX (d->hello_timeout_seconds, TALLY_GATT_SERVER_DEFAULT_IDLE_SECONDS);
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
  /* A payment may have made a sync due. */
  if (d->sync != NULL)
    tally_sync_register_changed (d->sync);
}

gboolean
tally_daemon_start_discovery (TallyDaemon *d, const char *sender, guint32 uid, GError **error)
{
  g_return_val_if_fail (d != NULL && d->nearby != NULL, FALSE);
  return tally_dbus_nearby_start (d->nearby, sender, uid, error);
}

gboolean
tally_daemon_stop_discovery (TallyDaemon *d, const char *sender, GError **error)
{
  g_return_val_if_fail (d != NULL && d->nearby != NULL, FALSE);
  return tally_dbus_nearby_stop (d->nearby, sender, error);
}

gboolean
tally_daemon_is_discovering (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, FALSE);
  return d->nearby != NULL && tally_dbus_nearby_is_discovering (d->nearby);
}

TallyDBusNearby *
tally_daemon_get_nearby (TallyDaemon *d)
{
  g_return_val_if_fail (d != NULL, NULL);
  return d->nearby;
}
