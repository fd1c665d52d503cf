/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tallyd reconciling online: the real tally-issuerd service (TallyIssuerHttp
 * on loopback, SQLite store) and real daemons on a private bus, all in this
 * process.  The registers pay each other through the wallet before their
 * daemons start; then the daemons reach the issuer by themselves.
 *
 * Between a daemon and the issuer a relay (a SoupServer forwarding to the
 * issuer) can drop the issuer's answer or re-sign it with another key: what
 * a broken network or an impostor does.
 */
#include <string.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "issuer-test-util.h"
#include <glib/gstdio.h>

#include "tally-clock.h"
#include "tally-hex.h"
#include "tally-daemon.h"
#include "tally-dbus-error.h"
#include "tally-issuer-http.h"

#define ALICE_DEPOSIT 10000
#define BOB_DEPOSIT   5000
#define LOADED        2000
#define PAID          750

/* One private bus for the whole program (see test-dbus.c). */
static GTestDBus *test_bus;

typedef enum
{
  RELAY_PASS,
  RELAY_DROP_FIRST_RESULT,  /* the issuer books the bundle, its answer is lost */
  RELAY_FORGE_RESULT,       /* the result re-signed by another key */
  RELAY_DROP_FIRST_VOUCHER, /* the issuer sells the voucher, its answer is lost */
  RELAY_HUGE_KEYS,          /* the key set answered with 5 MiB */
  RELAY_DROP_ALL_VOUCHERS,  /* every voucher sold, no answer ever arrives */
  RELAY_REDIRECT,           /* every request answered 307 to the trap */
  RELAY_NOT_MODIFIED,       /* every GET answered 304, asked or not */
  RELAY_TRICKLE,            /* every answer a byte every half second, for 10 s */
  RELAY_FORGE_KEYS,         /* the key set of another key, named f->forged_name */
  RELAY_DROP_FIRST_ENROL,   /* the issuer enrols the register, its answer is lost */
  RELAY_THROTTLE_VOUCHERS,  /* a proxy answers every purchase 429, not the issuer */
} RelayMode;

typedef struct
{
  TallyDaemon *daemon;
  GDBusConnection *connection;
} Node;

typedef struct
{
  char *dir;
  TallyIssuer *issuer;
  TallyIssuerHttp *http;
  char *issuer_url;

  SoupServer *relay;
  GSocketService *relay_service;
  SoupSession *relay_session;
  char *relay_url;
  RelayMode mode;
  guint reconcile_posts;  /* POST /v1/reconcile the relay forwarded */
  guint repeated_answers; /* of them, answered X-Tally-Repeated: yes */
  guint voucher_posts;    /* POST .../vouchers the relay forwarded */
  guint enrol_posts;      /* POST .../registers the relay forwarded */
  guint repeated_vouchers;
  GSocketService *trap; /* where RELAY_REDIRECT points: must be reached by nobody */
  char *trap_url;
  guint trap_requests;
  GPtrArray *trickles; /* GSource *: answers still trickling */
  const char *forged_name;

  GDBusConnection *client;
  Node alice;
  Node bob;
} Fixture;

/* --- the relay --- */

typedef struct
{
  Fixture *f;
  SoupServerMessage *msg;
  SoupMessage *out;
  gboolean reconcile;
  gboolean voucher;
  gboolean keys;
  gboolean enrol;
} RelayCall;

static GBytes *
forge_result (GBytes *result)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__SignedEnvelope) env =
    tally_envelope_decode (g_bytes_get_data (result, NULL), g_bytes_get_size (result), &error);
  g_assert_no_error (error);
  guint8 pk[TALLY_PUBLIC_KEY_BYTES], sk[TALLY_SECRET_KEY_BYTES];
  crypto_sign_keypair (pk, sk);
  GBytes *forged =
    tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
                         env->body.data, env->body.len, sk);
  sodium_memzero (sk, sizeof sk);
  return forged;
}

/* A key set signed by its own new key, as anyone can make one. */
static GBytes *
forge_keys (const char *name)
{
  guint8 pk[TALLY_PUBLIC_KEY_BYTES], sk[TALLY_SECRET_KEY_BYTES], id[TALLY_ID_BYTES];
  crypto_sign_keypair (pk, sk);
  tally_key_id_from_key (pk, id);
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  ks.public_key = (ProtobufCBinaryData){ sizeof pk, pk };
  ks.key_id = (ProtobufCBinaryData){ sizeof id, id };
  ks.currency = (char *) "EUR";
  ks.name = (char *) name;
  ks.created_at = tally_now ();
  g_autoptr (GBytes) body = tally_message_pack (&ks.base);
  GBytes *forged = tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                                        g_bytes_get_data (body, NULL), g_bytes_get_size (body), sk);
  sodium_memzero (sk, sizeof sk);
  return forged;
}

static void
relay_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RelayCall *c = user_data;
  Fixture *f = c->f;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body =
    soup_session_send_and_read_finish (SOUP_SESSION (source), result, &error);
  g_assert_no_error (error);
  guint status = soup_message_get_status (c->out);
  SoupMessageHeaders *in = soup_message_get_response_headers (c->out);

  if (c->reconcile) {
    f->reconcile_posts++;
    if (g_strcmp0 (soup_message_headers_get_one (in, "X-Tally-Repeated"), "yes") == 0)
      f->repeated_answers++;
  }
  if (c->enrol)
    f->enrol_posts++;
  if (c->voucher) {
    f->voucher_posts++;
    if (g_strcmp0 (soup_message_headers_get_one (in, "X-Tally-Repeated"), "yes") == 0)
      f->repeated_vouchers++;
  }
  if ((c->reconcile && f->mode == RELAY_DROP_FIRST_RESULT && f->reconcile_posts == 1) ||
      (c->voucher && f->mode == RELAY_DROP_FIRST_VOUCHER && f->voucher_posts == 1) ||
      (c->voucher && f->mode == RELAY_DROP_ALL_VOUCHERS) ||
      (c->enrol && f->mode == RELAY_DROP_FIRST_ENROL && f->enrol_posts == 1)) {
    /* Booked by the issuer; the device never hears of it. */
    g_autoptr (GIOStream) stream = soup_server_message_steal_connection (c->msg);
    g_io_stream_close (stream, NULL, NULL);
  } else {
    if (c->keys && f->mode == RELAY_FORGE_KEYS) {
      g_bytes_unref (body);
      body = forge_keys (f->forged_name);
    }
    if (c->keys && f->mode == RELAY_HUGE_KEYS) {
      g_bytes_unref (body);
      body = g_bytes_new_take (g_malloc0 (5 * 1024 * 1024), 5 * 1024 * 1024);
    }
    if (c->reconcile && f->mode == RELAY_FORGE_RESULT && status == SOUP_STATUS_OK) {
      GBytes *forged = forge_result (body);
      g_bytes_unref (body);
      body = forged;
    }
    SoupMessageHeaders *out = soup_server_message_get_response_headers (c->msg);
    const char *names[] = { "ETag", "X-Tally-Repeated", "X-Tally-Error" };
    for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
      if (soup_message_headers_get_one (in, names[i]) != NULL)
        soup_message_headers_replace (out, names[i], soup_message_headers_get_one (in, names[i]));
    soup_server_message_set_status (c->msg, status, NULL);
    const char *type = soup_message_headers_get_content_type (in, NULL);
    if (g_bytes_get_size (body) > 0)
      soup_server_message_set_response (c->msg, type ? type : "application/octet-stream",
                                        SOUP_MEMORY_COPY, g_bytes_get_data (body, NULL),
                                        g_bytes_get_size (body));
    soup_server_message_unpause (c->msg);
  }
  g_object_unref (c->msg);
  g_object_unref (c->out);
  g_free (c);
}

/* An answer that never stalls long enough for a per-read timeout. */
typedef struct
{
  SoupServerMessage *msg;
  guint left;
  gboolean finished;
} Trickle;

static void
trickle_free (Trickle *t)
{
  g_signal_handlers_disconnect_by_data (t->msg, t);
  g_object_unref (t->msg);
  g_free (t);
}

static void
trickle_finished (SoupServerMessage *msg, gpointer user_data)
{
  ((Trickle *) user_data)->finished = TRUE;
}

static gboolean
trickle_tick (gpointer user_data)
{
  Trickle *t = user_data;
  if (t->finished)
    return G_SOURCE_REMOVE;
  SoupMessageBody *body = soup_server_message_get_response_body (t->msg);
  if (t->left-- == 0)
    soup_message_body_complete (body);
  else
    soup_message_body_append (body, SOUP_MEMORY_STATIC, "x", 1);
  soup_server_message_unpause (t->msg);
  return t->left == G_MAXUINT ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void
trickle_start (Fixture *f, SoupServerMessage *msg)
{
  Trickle *t = g_new0 (Trickle, 1);
  t->msg = g_object_ref (msg);
  t->left = 20;
  g_signal_connect (msg, "finished", G_CALLBACK (trickle_finished), t);
  g_signal_connect (msg, "disconnected", G_CALLBACK (trickle_finished), t);
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_message_headers_set_encoding (soup_server_message_get_response_headers (msg),
                                     SOUP_ENCODING_CHUNKED);
  soup_server_message_pause (msg);
  GSource *source = g_timeout_source_new (500);
  g_source_set_callback (source, trickle_tick, t, (GDestroyNotify) trickle_free);
  g_source_attach (source, NULL);
  if (f->trickles == NULL)
    f->trickles = g_ptr_array_new_with_free_func ((GDestroyNotify) g_source_unref);
  g_ptr_array_add (f->trickles, source);
}

static void
relay_handler (SoupServer *server,
               SoupServerMessage *msg,
               const char *path,
               GHashTable *query,
               gpointer user_data)
{
  Fixture *f = user_data;
  if (f->mode == RELAY_REDIRECT) {
    g_autofree char *to = g_strconcat (f->trap_url, path, NULL);
    soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Location", to);
    soup_server_message_set_status (msg, SOUP_STATUS_TEMPORARY_REDIRECT, NULL);
    return;
  }
  if (f->mode == RELAY_THROTTLE_VOUCHERS && g_str_has_suffix (path, "/vouchers")) {
    soup_server_message_set_status (msg, SOUP_STATUS_BAD_REQUEST + 29, NULL);
    soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_STATIC, "slow down\n", 10);
    return;
  }
  if (f->mode == RELAY_TRICKLE) {
    trickle_start (f, msg);
    return;
  }
  if (f->mode == RELAY_NOT_MODIFIED && strcmp (soup_server_message_get_method (msg), "GET") == 0) {
    soup_server_message_set_status (msg, SOUP_STATUS_NOT_MODIFIED, NULL);
    return;
  }
  g_autofree char *url = g_strconcat (f->issuer_url, path, NULL);
  RelayCall *c = g_new0 (RelayCall, 1);
  c->f = f;
  c->msg = g_object_ref (msg);
  c->out = soup_message_new (soup_server_message_get_method (msg), url);
  c->reconcile = strcmp (path, "/v1/reconcile") == 0;
  c->voucher = g_str_has_suffix (path, "/vouchers");
  c->keys = strcmp (path, "/v1/keys") == 0;
  c->enrol = g_str_has_suffix (path, "/registers");
  SoupMessageHeaders *in = soup_server_message_get_request_headers (msg);
  const char *authorization = soup_message_headers_get_one (in, "Authorization");
  if (authorization != NULL)
    soup_message_headers_replace (soup_message_get_request_headers (c->out), "Authorization",
                                  authorization);
  const char *etag = soup_message_headers_get_one (in, "If-None-Match");
  if (etag != NULL)
    soup_message_headers_replace (soup_message_get_request_headers (c->out), "If-None-Match", etag);
  SoupMessageBody *body = soup_server_message_get_request_body (msg);
  if (body->length > 0) {
    g_autoptr (GBytes) bytes = soup_message_body_flatten (body);
    soup_message_set_request_body_from_bytes (
      c->out, soup_message_headers_get_content_type (in, NULL), bytes);
  }
  soup_server_message_pause (msg);
  soup_session_send_and_read_async (f->relay_session, c->out, G_PRIORITY_DEFAULT, NULL,
                                    relay_answered, c);
}

/* Any connection at all to the trap counts: a followed redirect would
 * have to make one. */
static gboolean
trap_incoming (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer user_data)
{
  Fixture *f = user_data;
  f->trap_requests++;
  return TRUE;
}

static void
trap_start (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any_port = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  f->trap = g_socket_service_new ();
  g_assert_true (g_socket_listener_add_address (G_SOCKET_LISTENER (f->trap), any_port,
                                                G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                                &bound, &error));
  g_assert_no_error (error);
  g_signal_connect (f->trap, "incoming", G_CALLBACK (trap_incoming), f);
  g_socket_service_start (f->trap);
  f->trap_url = g_strdup_printf ("http://127.0.0.1:%u",
                                 g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
}

/* Connections are accepted here and handed to the SoupServer, as
 * tally-issuerd does. */
static gboolean
relay_incoming (GSocketService *service,
                GSocketConnection *conn,
                GObject *source,
                gpointer user_data)
{
  Fixture *f = user_data;
  GSocket *socket = g_socket_connection_get_socket (conn);
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (socket, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_get_remote_address (socket, NULL);
  g_autoptr (GError) error = NULL;
  if (local != NULL && remote != NULL)
    soup_server_accept_iostream (f->relay, G_IO_STREAM (conn), local, remote, &error);
  g_assert_no_error (error);
  return TRUE;
}

static void
relay_start (Fixture *f, RelayMode mode)
{
  g_autoptr (GError) error = NULL;
  f->mode = mode;
  f->relay = soup_server_new (NULL, NULL);
  f->relay_session = soup_session_new ();
  soup_server_add_handler (f->relay, NULL, relay_handler, f, NULL);
  f->relay_service = g_socket_service_new ();
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_socket_listener_add_address (G_SOCKET_LISTENER (f->relay_service), addr, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error);
  g_assert_no_error (error);
  g_signal_connect (f->relay_service, "incoming", G_CALLBACK (relay_incoming), f);
  g_socket_service_start (f->relay_service);
  f->relay_url = g_strdup_printf ("http://127.0.0.1:%u",
                                  g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
}

/* --- registers, before their daemons --- */

static TallyRegister *
register_open (Fixture *f, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->dir, name, NULL);
  TallyRegister *reg = tally_register_open (dir, &error);
  g_assert_no_error (error);
  return reg;
}

/* A register for the account @account, certified by the issuer for
 * @max_offline_payments (0: the default limits), loaded with @load. */
static void
register_make_with (Fixture *f,
                    const char *name,
                    const char *account,
                    gint64 load,
                    guint32 max_offline_payments)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->dir, name, NULL);
  guint64 now = tally_now ();
  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  Tally__Limits limits;
  test_default_limits (&limits);
  if (max_offline_payments != 0)
    limits.max_offline_payments = max_offline_payments;
  g_autoptr (GBytes) cert =
    tally_issuer_certify (f->issuer, tally_register_get_public_key (reg), account, NULL, &limits,
                          now - 60, now + 30 * 24 * 3600, &error);
  g_assert_no_error (error);
  tally_register_install_certificate (reg, g_bytes_get_data (cert, NULL), g_bytes_get_size (cert),
                                      now, &error);
  g_assert_no_error (error);
  if (load > 0) {
    g_autoptr (GBytes) voucher =
      tally_issuer_sell_voucher (f->issuer, tally_register_get_id (reg), load, now, &error);
    g_assert_no_error (error);
    tally_register_load (reg, g_bytes_get_data (voucher, NULL), g_bytes_get_size (voucher), now,
                         &error);
    g_assert_no_error (error);
  }
}

static void
register_make (Fixture *f, const char *name, gint64 load)
{
  register_make_with (f, name, name, load, 0);
}

static Tally__SignedEnvelope *
envelope (GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  Tally__SignedEnvelope *env =
    tally_envelope_decode (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), &error);
  g_assert_no_error (error);
  return env;
}

/* @payer pays @payee @amount offline, receipt and all. */
static void
registers_pay (TallyRegister *payer, TallyRegister *payee, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  guint64 now = tally_now ();
  g_autoptr (Tally__PaymentRequest) request =
    tally_register_new_request (payee, amount, "bread", now, &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) payee_cert = tally_register_get_certificate (payee);
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (payer);
  g_autoptr (Tally__SignedEnvelope) payee_env = envelope (payee_cert);
  g_autoptr (Tally__SignedEnvelope) payer_env = envelope (payer_cert);
  g_autoptr (GBytes) permission = tally_register_spend (payer, payee_env, request, now, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) permission_env = envelope (permission);
  TallyAcceptPolicy policy = { 0 };
  g_autoptr (GBytes) receipt = tally_register_receive (payee, payer_env, permission_env,
                                                       request->nonce.data, &policy, now, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) receipt_env = envelope (receipt);
  tally_register_acknowledge (payer, receipt_env, &error);
  g_assert_no_error (error);
}

static void
register_pay (Fixture *f, const char *payer_name, const char *payee_name, gint64 amount)
{
  g_autoptr (TallyRegister) payer = register_open (f, payer_name);
  g_autoptr (TallyRegister) payee = register_open (f, payee_name);
  registers_pay (payer, payee, amount);
}

/* --- daemons --- */

static GDBusConnection *
connect_bus (void)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *c = g_dbus_connection_new_for_address_sync (
    g_test_dbus_get_bus_address (test_bus),
    G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
    NULL, NULL, &error);
  g_assert_no_error (error);
  return c;
}

/* Starts @name's daemon with [issuer] @extra (key=value lines). */
static void
node_start_with (Fixture *f, Node *node, const char *name, const char *extra)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_free (config->register_dir);
  config->register_dir = g_build_filename (f->dir, name, NULL);
  config->has_issuer_key = TRUE;
  memcpy (config->issuer_key, tally_issuer_get_public_key (f->issuer), TALLY_PUBLIC_KEY_BYTES);
  g_free (config->listen);
  config->listen = g_strdup_printf ("unix:%s/%s.sock", f->dir, name);
  g_autofree char *text = g_strdup_printf ("[issuer]\n%s", extra);
  tally_config_load_data (config, text, &error);
  g_assert_no_error (error);

  node->daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  node->connection = connect_bus ();
  g_assert_true (tally_daemon_export (node->daemon, node->connection, &error));
  g_assert_no_error (error);
}

/* Starts @name's daemon syncing with @url (NULL: the issuer itself), only
 * when asked unless @interval. */
static void
node_start (Fixture *f, Node *node, const char *name, const char *url, guint interval)
{
  g_autofree char *extra =
    g_strdup_printf ("url=%s\nsync_interval_seconds=%u\n", url ? url : f->issuer_url, interval);
  node_start_with (f, node, name, extra);
}

static void
node_stop (Node *node)
{
  if (node->daemon == NULL)
    return;
  g_clear_pointer (&node->daemon, tally_daemon_free);
  g_dbus_connection_close_sync (node->connection, NULL, NULL);
  g_clear_object (&node->connection);
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* Calls @method on @node's register from the client, the daemons and the
 * issuer answering from this thread's main context. */
static GVariant *
node_call (Fixture *f,
           Node *node,
           const char *iface,
           const char *method,
           GVariant *args,
           GError **error)
{
  GAsyncResult *result = NULL;
  g_dbus_connection_call (f->client, g_dbus_connection_get_unique_name (node->connection),
                          "/org/tally/register", iface, method, args, NULL, G_DBUS_CALL_FLAGS_NONE,
                          120 * 1000, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  GVariant *reply = g_dbus_connection_call_finish (f->client, result, error);
  g_object_unref (result);
  return reply;
}

static gboolean
node_sync (Fixture *f, Node *node, GError **error)
{
  g_autoptr (GVariant) reply = node_call (f, node, "org.tally.Register1", "Sync", NULL, error);
  return reply != NULL;
}

static GVariant *
node_property (Fixture *f, Node *node, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    node_call (f, node, "org.freedesktop.DBus.Properties", "Get",
               g_variant_new ("(ss)", "org.tally.Register1", name), &error);
  g_assert_no_error (error);
  GVariant *value = NULL;
  g_variant_get (reply, "(v)", &value);
  return value;
}

static char *
node_string (Fixture *f, Node *node, const char *name)
{
  g_autoptr (GVariant) v = node_property (f, node, name);
  return g_variant_dup_string (v, NULL);
}

static guint64
node_u64 (Fixture *f, Node *node, const char *name)
{
  g_autoptr (GVariant) v = node_property (f, node, name);
  return g_variant_get_uint64 (v);
}

/* Every entry of @node's register is in @state. */
static void
assert_entries (Node *node, TallyEntryState state, guint count)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) entries =
    tally_register_get_history (tally_daemon_get_register (node->daemon), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (entries->len, ==, count);
  for (guint i = 0; i < entries->len; i++) {
    const TallyHistoryEntry *e = entries->pdata[i];
    g_assert_cmpstr (tally_entry_state_to_string (e->state), ==,
                     tally_entry_state_to_string (state));
  }
}

static TallyAudit
audit (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  TallyAudit a;
  g_assert_true (tally_issuer_audit (f->issuer, &a, &error));
  g_assert_no_error (error);
  return a;
}

/* --- fixture --- */

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  tally_dbus_error_register ();
  f->dir = g_dir_make_tmp ("tally-test-sync-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *issuer_dir = g_build_filename (f->dir, "issuer", NULL);
  f->issuer = test_issuer_create (issuer_dir, "Test Bank", "EUR", tally_now (), &error);
  g_assert_no_error (error);
  g_assert_true (tally_issuer_account_create (f->issuer, "alice", &error));
  g_assert_true (tally_issuer_deposit (f->issuer, "alice", ALICE_DEPOSIT, &error));
  g_assert_true (tally_issuer_account_create (f->issuer, "bob", &error));
  g_assert_true (tally_issuer_deposit (f->issuer, "bob", BOB_DEPOSIT, &error));
  g_assert_no_error (error);

  f->http = tally_issuer_http_new (f->issuer, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (f->http, addr, FALSE, &error));
  g_assert_no_error (error);
  f->issuer_url = g_strdup_printf ("http://127.0.0.1:%u", tally_issuer_http_get_port (f->http));
  f->client = connect_bus ();

  register_make (f, "alice", LOADED);
  register_make (f, "bob", 0);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  node_stop (&f->alice);
  node_stop (&f->bob);
  g_dbus_connection_close_sync (f->client, NULL, NULL);
  g_object_unref (f->client);
  for (guint i = 0; f->trickles != NULL && i < f->trickles->len; i++)
    g_source_destroy (f->trickles->pdata[i]);
  g_clear_pointer (&f->trickles, g_ptr_array_unref);
  if (f->relay != NULL) {
    g_socket_service_stop (f->relay_service);
    g_socket_listener_close (G_SOCKET_LISTENER (f->relay_service));
    g_object_unref (f->relay_service);
    soup_server_disconnect (f->relay);
    g_object_unref (f->relay);
    g_object_unref (f->relay_session);
  }
  if (f->trap != NULL) {
    g_socket_service_stop (f->trap);
    g_socket_listener_close (G_SOCKET_LISTENER (f->trap));
    g_object_unref (f->trap);
  }
  g_clear_pointer (&f->http, tally_issuer_http_unref);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_clear_pointer (&f->issuer, tally_issuer_free);
  test_remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->issuer_url);
  g_free (f->relay_url);
  g_free (f->trap_url);
}

/* --- tests --- */

/* Two registers pay each other offline; both sync over HTTP, nothing
 * carried by hand: the payee's credit is settled, both views are the
 * issuer's, and the audit balances. */
static void
test_payments_reconcile_online_without_files (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->alice, "alice", NULL, 0);
  node_start (f, &f->bob, "bob", NULL, 0);

  g_autofree char *before = node_string (f, &f->bob, "SyncState");
  g_assert_cmpstr (before, ==, "idle");
  g_assert_cmpuint (node_u64 (f, &f->bob, "LastSync"), ==, 0);

  guint64 start = tally_now ();
  g_assert_true (node_sync (f, &f->bob, &error));
  g_assert_no_error (error);
  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);

  /* The payee's value is the issuer's now: its receipt entry settled. */
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);
  assert_entries (&f->alice, TALLY_ENTRY_STATE_SETTLED, 2);
  TallyAudit a = audit (f);
  g_assert_true (a.identity);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.issued, ==, ALICE_DEPOSIT + BOB_DEPOSIT);
  g_assert_cmpint (a.online, ==, ALICE_DEPOSIT + BOB_DEPOSIT - LOADED);
  g_assert_cmpint (a.offline, ==, LOADED);
  g_assert_cmpint (a.in_flight, ==, 0);

  Node *nodes[] = { &f->alice, &f->bob };
  for (gsize i = 0; i < G_N_ELEMENTS (nodes); i++) {
    g_autofree char *state = node_string (f, nodes[i], "SyncState");
    g_autofree char *last_error = node_string (f, nodes[i], "LastSyncError");
    g_assert_cmpstr (state, ==, "idle");
    g_assert_cmpstr (last_error, ==, "");
    g_assert_cmpuint (node_u64 (f, nodes[i], "LastSync"), >=, start);
    /* The offline window starts again at the issuer's reconciliation. */
    guint64 reconciled = node_u64 (f, nodes[i], "LastReconciliation");
    g_assert_cmpuint (reconciled, >=, start - 1);
    g_assert_cmpuint (node_u64 (f, nodes[i], "SyncDeadline"), ==, reconciled + 72 * 3600);
  }
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->bob.daemon)), ==,
                   PAID);
}

/* The issuer books the bundle and its answer is lost: the daemon sends the
 * same bundle again, the issuer answers it as a repeat, and nothing is
 * booked twice. */
static void
test_sync_retried_after_a_dropped_answer_books_once (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  relay_start (f, RELAY_DROP_FIRST_RESULT);
  node_start (f, &f->alice, "alice", f->relay_url, 0);

  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->reconcile_posts, ==, 2);
  g_assert_cmpuint (f->repeated_answers, ==, 1);
  assert_entries (&f->alice, TALLY_ENTRY_STATE_SETTLED, 2);

  /* The voucher and the payment booked once: the loaded value is all
   * that is offline or in flight. */
  TallyAudit a = audit (f);
  g_assert_true (a.identity);
  g_assert_cmpint (a.issued, ==, ALICE_DEPOSIT + BOB_DEPOSIT);
  g_assert_cmpint (a.online, ==, ALICE_DEPOSIT + BOB_DEPOSIT - LOADED);
  g_assert_cmpint (a.offline + a.in_flight, ==, LOADED);

  /* Bob's half through the same relay, now passing answers: balanced. */
  f->mode = RELAY_PASS;
  node_start (f, &f->bob, "bob", f->relay_url, 0);
  g_assert_true (node_sync (f, &f->bob, &error));
  g_assert_no_error (error);
  a = audit (f);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.in_flight, ==, 0);
}

/* What the register holds, to show a failed sync changed none of it. */
typedef struct
{
  guint64 horizon;
  guint64 last_reconciliation;
  gint64 balance;
  guint64 revocation_serial;
  guint entries;
} Snapshot;

static Snapshot
snapshot (Node *node)
{
  TallyRegister *reg = tally_daemon_get_register (node->daemon);
  g_autoptr (GPtrArray) entries = tally_register_get_history (reg, 0, NULL);
  return (Snapshot){
    .horizon = tally_register_get_horizon (reg),
    .last_reconciliation = tally_register_get_last_reconciliation (reg),
    .balance = tally_register_get_balance (reg),
    .revocation_serial = tally_register_get_revocation_serial (reg),
    .entries = entries->len,
  };
}

static void
assert_unchanged (const Snapshot *a, const Snapshot *b)
{
  g_assert_cmpuint (a->horizon, ==, b->horizon);
  g_assert_cmpuint (a->last_reconciliation, ==, b->last_reconciliation);
  g_assert_cmpint (a->balance, ==, b->balance);
  g_assert_cmpuint (a->revocation_serial, ==, b->revocation_serial);
  g_assert_cmpuint (a->entries, ==, b->entries);
}

/* A port nobody listens on. */
static char *
dead_url (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketListener) listener = g_socket_listener_new ();
  guint16 port = g_socket_listener_add_any_inet_port (listener, NULL, &error);
  g_assert_no_error (error);
  g_socket_listener_close (listener);
  return g_strdup_printf ("http://127.0.0.1:%u", port);
}

static void
test_issuer_down_gives_disconnected_and_changes_nothing (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *url = dead_url ();
  node_start (f, &f->alice, "alice", url, 0);
  Snapshot before = snapshot (&f->alice);

  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "issuer unreachable at"));

  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);
  g_autofree char *state = node_string (f, &f->alice, "SyncState");
  g_autofree char *last_error = node_string (f, &f->alice, "LastSyncError");
  g_assert_cmpstr (state, ==, "failed");
  g_assert_true (g_str_has_prefix (last_error, "org.tally.Error.Disconnected: issuer unreachable"));
  g_assert_cmpuint (node_u64 (f, &f->alice, "LastSync"), ==, 0);
}

/* An impostor between the register and the issuer re-signs the result:
 * the register refuses it and keeps its entries as they were. */
static void
test_a_result_signed_by_another_key_is_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  relay_start (f, RELAY_FORGE_RESULT);
  node_start (f, &f->alice, "alice", f->relay_url, 0);
  Snapshot before = snapshot (&f->alice);

  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE);
  g_assert_cmpuint (f->reconcile_posts, ==, 1);

  Snapshot after = snapshot (&f->alice);
  /* The bundle left: its horizon is committed (protocol 4.4); nothing else. */
  g_assert_cmpuint (after.horizon, >=, before.horizon);
  before.horizon = after.horizon;
  assert_unchanged (&before, &after);
  g_autofree char *last_error = node_string (f, &f->alice, "LastSyncError");
  g_assert_true (g_str_has_prefix (last_error, "org.tally.Error.BadSignature: "));

  /* The real answer, asked again, is taken. */
  f->mode = RELAY_PASS;
  g_clear_error (&error);
  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);
  assert_entries (&f->alice, TALLY_ENTRY_STATE_SETTLED, 2);
}

/* An answer larger than any the issuer sends is not read to its end, and
 * changes nothing. */
static void
test_an_oversized_answer_is_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  relay_start (f, RELAY_HUGE_KEYS);
  node_start (f, &f->alice, "alice", f->relay_url, 0);
  Snapshot before = snapshot (&f->alice);
  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FRAME_OVERSIZE);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);
  g_assert_cmpuint (f->reconcile_posts, ==, 0);
}

/* An issuer with another key than the one the register trusts is refused
 * before the register exports anything. */
static void
test_another_issuer_is_refused_before_export (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *other_dir = g_build_filename (f->dir, "other", NULL);
  g_autoptr (TallyIssuer) other =
    test_issuer_create (other_dir, "Other Bank", "EUR", tally_now (), &error);
  g_assert_no_error (error);
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (other, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (http, addr, FALSE, &error));
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u", tally_issuer_http_get_port (http));
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->alice, "alice", url, 0);
  Snapshot before = snapshot (&f->alice);

  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);
  node_stop (&f->alice);
  g_clear_pointer (&http, tally_issuer_http_unref);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
test_sync_without_an_issuer_url_says_how_to_set_one (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_free (config->register_dir);
  config->register_dir = g_build_filename (f->dir, "alice", NULL);
  g_free (config->listen);
  config->listen = g_strdup_printf ("unix:%s/alice.sock", f->dir);
  f->alice.daemon = tally_daemon_new (config, &error);
  g_assert_no_error (error);
  f->alice.connection = connect_bus ();
  g_assert_true (tally_daemon_export (f->alice.daemon, f->alice.connection, &error));

  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "[issuer] url"));
  g_autofree char *state = node_string (f, &f->alice, "SyncState");
  g_assert_cmpstr (state, ==, "off");
}

/* With sync_interval_seconds set, tallyd syncs at start by itself. */
static void
test_automatic_sync_at_start_settles_without_a_call (Fixture *f, gconstpointer data)
{
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->bob, "bob", NULL, 3600);
  TallySync *sync = tally_daemon_get_sync (f->bob.daemon);
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, 0);
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);
}

/* The issuer is down when the automatic sync starts: it backs off and
 * syncs once the issuer is back, without a call. */
static void
test_automatic_sync_backs_off_until_the_issuer_is_back (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  g_autoptr (GSocketListener) listener = g_socket_listener_new ();
  guint16 port = g_socket_listener_add_any_inet_port (listener, NULL, &error);
  g_assert_no_error (error);
  g_socket_listener_close (listener);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u", port);
  node_start (f, &f->bob, "bob", url, 3600);
  TallySync *sync = tally_daemon_get_sync (f->bob.daemon);

  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_state (sync) != TALLY_SYNC_STATE_FAILED &&
         g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (tally_sync_get_state (sync), ==, TALLY_SYNC_STATE_FAILED);
  g_assert_error ((GError *) tally_sync_get_last_error (sync), TALLY_ERROR,
                  TALLY_ERROR_DISCONNECTED);

  /* The issuer comes up where the daemon looks for it. */
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (f->issuer, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, port);
  g_assert_true (tally_issuer_http_listen (http, addr, FALSE, &error));
  g_assert_no_error (error);
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, 0);
  g_assert_cmpint (tally_sync_get_state (sync), ==, TALLY_SYNC_STATE_IDLE);
  g_assert_null (tally_sync_get_last_error (sync));
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);
  node_stop (&f->bob);
  g_clear_pointer (&http, tally_issuer_http_unref);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* Iterates the main context for @seconds. */
static void
run_for (guint seconds)
{
  gint64 until = g_get_monotonic_time () + seconds * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < until)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (10000);
}

/* A register certified for 4 offline payments: after the third, a sync
 * falls due at once, hours before the interval. */
static void
test_automatic_sync_falls_due_after_most_offline_payments (Fixture *f, gconstpointer data)
{
  register_make_with (f, "erin", "alice", LOADED, 4);
  node_start (f, &f->alice, "erin", NULL, 3600);
  TallySync *sync = tally_daemon_get_sync (f->alice.daemon);
  TallyRegister *erin = tally_daemon_get_register (f->alice.daemon);
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, 0);

  g_autoptr (TallyRegister) bob = register_open (f, "bob");
  for (guint i = 1; i <= 2; i++) {
    registers_pay (erin, bob, 100);
    tally_daemon_register_changed (f->alice.daemon);
  }
  run_for (1);
  g_assert_cmpuint (tally_register_get_offline_payments (erin), ==, 2);

  registers_pay (erin, bob, 100);
  tally_daemon_register_changed (f->alice.daemon);
  while (tally_register_get_offline_payments (erin) != 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_register_get_offline_payments (erin), ==, 0);
  g_assert_cmpint (tally_sync_get_state (sync), ==, TALLY_SYNC_STATE_IDLE);
}

/* The revocation list goes stale long before the hour's interval: a sync
 * falls due when it does, and each sync that fetched the list makes it
 * fresh again, so they come round once per max age. */
static void
test_automatic_sync_falls_due_when_the_revocation_list_is_stale (Fixture *f, gconstpointer data)
{
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->bob, "bob", NULL, 3600);
  TallySync *sync = tally_daemon_get_sync (f->bob.daemon);
  /* Before the main loop runs the sync at start. */
  tally_sync_set_revocations_max_age (sync, 2);
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  guint64 first = tally_sync_get_last_sync (sync);
  g_assert_cmpuint (first, >, 0);
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);

  while (tally_sync_get_last_sync (sync) < first + 2 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >=, first + 2);
  g_assert_cmpint (tally_sync_get_state (sync), ==, TALLY_SYNC_STATE_IDLE);
}

/* The control: with the list's age switched off, the same register syncs at
 * start and then waits for the hour's interval. */
static void
test_automatic_sync_waits_for_the_interval_with_the_list_age_off (Fixture *f, gconstpointer data)
{
  register_pay (f, "alice", "bob", PAID);
  g_autofree char *extra = g_strdup_printf (
    "url=%s\nsync_interval_seconds=3600\nrevocations_max_age_seconds=0\n", f->issuer_url);
  node_start_with (f, &f->bob, "bob", extra);
  TallySync *sync = tally_daemon_get_sync (f->bob.daemon);
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  guint64 first = tally_sync_get_last_sync (sync);
  g_assert_cmpuint (first, >, 0);
  run_for (4);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), ==, first);
}

static gint64 account_balance (Fixture *f, const char *name);

/* A defund is evidence like any other: the next sync takes the record to
 * the issuer, which pays the register's balance into its online account,
 * once, however often the register syncs again. */
static void
test_defund_reaches_the_online_account (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->bob, "bob", NULL, 0);
  gint64 before = account_balance (f, "bob");

  g_autoptr (GVariant) record =
    node_call (f, &f->bob, "org.tally.Register1", "Defund", NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (record);
  TallyRegister *reg = tally_daemon_get_register (f->bob.daemon);
  g_assert_cmpint (tally_register_get_balance (reg), ==, 0);
  g_assert_cmpint (account_balance (f, "bob"), ==, before);

  g_assert_true (node_sync (f, &f->bob, &error));
  g_assert_no_error (error);
  g_assert_cmpint (account_balance (f, "bob"), ==, before + PAID);
  TallyAudit a = audit (f);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.refused, ==, 0);
  g_assert_cmpint (a.in_flight, ==, 0);

  g_assert_true (node_sync (f, &f->bob, &error));
  g_assert_no_error (error);
  g_assert_cmpint (account_balance (f, "bob"), ==, before + PAID);
  g_assert_true (audit (f).balanced);
}

static gboolean
busy_flag (TallySync *sync, gpointer user_data)
{
  return *(gboolean *) user_data;
}

/* While the owner says a payment is in progress the automatic sync waits,
 * and it syncs once the payment is over. */
static void
test_automatic_sync_waits_while_a_payment_is_in_progress (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  g_autoptr (TallyRegister) reg = register_open (f, "bob");
  g_autofree char *dir = g_build_filename (f->dir, "bob", NULL);
  g_autoptr (TallySync) sync = tally_sync_new (reg, dir, f->issuer_url, NULL, FALSE, &error);
  g_assert_no_error (error);
  static const TallySyncCallbacks callbacks = { .busy = busy_flag };
  gboolean busy = TRUE;
  tally_sync_set_callbacks (sync, &callbacks, &busy, NULL);
  tally_sync_start_automatic (sync, 3600);

  run_for (2);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), ==, 0);
  g_assert_cmpint (tally_sync_get_state (sync), ==, TALLY_SYNC_STATE_IDLE);

  busy = FALSE;
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, 0);
  g_autoptr (GPtrArray) entries = tally_register_get_history (reg, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (entries->len, ==, 1);
  g_assert_cmpint (((TallyHistoryEntry *) entries->pdata[0])->state, ==, TALLY_ENTRY_STATE_SETTLED);
  g_clear_pointer (&sync, tally_sync_unref);
}

/* A payment in progress never holds off the sync past its deadline's
 * margin: once the register is that close to stopping, it syncs. */
static void
test_automatic_sync_near_the_deadline_goes_before_a_payment (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->dir, "dave", NULL);
  guint64 now = tally_now ();
  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  Tally__Limits limits;
  test_default_limits (&limits);
  /* The certificate ends in five minutes: inside the ten-minute margin. */
  g_autoptr (GBytes) cert =
    tally_issuer_certify (f->issuer, tally_register_get_public_key (reg), "bob", NULL, &limits,
                          now - 60, now + 300, &error);
  g_assert_no_error (error);
  g_assert_true (tally_register_install_certificate (reg, g_bytes_get_data (cert, NULL),
                                                     g_bytes_get_size (cert), now, &error));
  g_assert_no_error (error);
  g_autoptr (TallySync) sync = tally_sync_new (reg, dir, f->issuer_url, NULL, FALSE, &error);
  g_assert_no_error (error);
  static const TallySyncCallbacks callbacks = { .busy = busy_flag };
  gboolean busy = TRUE;
  tally_sync_set_callbacks (sync, &callbacks, &busy, NULL);
  tally_sync_start_automatic (sync, 3600);

  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, 0);
  g_assert_null (tally_sync_get_last_error (sync));
  g_clear_pointer (&sync, tally_sync_unref);
}

/* A payment request open for payers, none of them in a handshake, does
 * not hold the automatic sync off: it may stay open for hours. */
static void
test_automatic_sync_is_not_held_off_by_an_open_request (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  node_start (f, &f->bob, "bob", NULL, TALLY_CONFIG_MIN_SYNC_INTERVAL);
  TallySync *sync = tally_daemon_get_sync (f->bob.daemon);
  gint64 give_up = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == 0 && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  guint64 first = tally_sync_get_last_sync (sync);
  g_assert_cmpuint (first, >, 0);

  g_autoptr (GVariant) reply =
    node_call (f, &f->bob, "org.tally.Register1", "RequestPayment",
               g_variant_new ("(tsa{sv})", (guint64) 500, "coffee", NULL), &error);
  g_assert_no_error (error);
  give_up = g_get_monotonic_time () + (TALLY_CONFIG_MIN_SYNC_INTERVAL + 15) * G_USEC_PER_SEC;
  while (tally_sync_get_last_sync (sync) == first && g_get_monotonic_time () < give_up)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (tally_sync_get_last_sync (sync), >, first);
}

static char *
tls_file (const char *name)
{
  return g_build_filename (g_getenv ("TALLY_SOURCE_ROOT"), "tests", "issuer", "data", name, NULL);
}

/* Over HTTPS the daemon trusts the issuer's certificate through
 * [issuer] ca_file; without it the same issuer is refused as TLS. */
static void
test_https_needs_the_configured_ca (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *pem = tls_file ("tls-localhost.pem");
  g_autofree char *key = tls_file ("tls-localhost.key");
  g_autoptr (GTlsCertificate) cert = g_tls_certificate_new_from_files (pem, key, &error);
  g_assert_no_error (error);
  g_autoptr (TallyIssuerHttp) https = tally_issuer_http_new (f->issuer, cert);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (tally_issuer_http_listen (https, addr, FALSE, &error));
  g_assert_no_error (error);
  guint16 port = tally_issuer_http_get_port (https);
  register_pay (f, "alice", "bob", PAID);

  g_autofree char *untrusted =
    g_strdup_printf ("url=https://127.0.0.1:%u\nsync_interval_seconds=0\n", port);
  node_start_with (f, &f->alice, "alice", untrusted);
  Snapshot before = snapshot (&f->alice);
  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "TLS with the issuer"));
  g_clear_error (&error);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);

  g_autofree char *trusted =
    g_strdup_printf ("url=https://127.0.0.1:%u\nca_file=%s\nsync_interval_seconds=0\n", port, pem);
  node_start_with (f, &f->bob, "bob", trusted);
  g_assert_true (node_sync (f, &f->bob, &error));
  g_assert_no_error (error);
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);
  node_stop (&f->alice);
  node_stop (&f->bob);
  g_clear_pointer (&https, tally_issuer_http_unref);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* Plain http to an issuer that is not on loopback is refused in the
 * configuration, unless allowed. */
static void
test_plain_http_only_to_loopback (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyConfig) config = tally_config_new ();
  g_assert_false (tally_config_load_data (config, "[issuer]\nurl=http://192.0.2.7:8470\n", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "allow_plain_http"));
  g_clear_error (&error);
  g_assert_false (tally_config_load_data (config, "[issuer]\nurl=ftp://127.0.0.1/\n", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (tally_config_load_data (
    config, "[issuer]\nallow_plain_http=true\nurl=http://192.0.2.7:8470\n", &error));
  g_assert_no_error (error);
  g_assert_cmpstr (config->issuer_url, ==, "http://192.0.2.7:8470");
  g_assert_true (
    tally_config_load_data (config, "[issuer]\nurl=https://issuer.example.org/\n", &error));
  g_assert_no_error (error);
}

static void
leave_terminal (gpointer user_data)
{
  setsid ();
}

/* tallyctl sync: the whole round trip from the command line. */
/* Runs "tallyctl sync" against @node's daemon; its exit status, and its
 * output in @out and @err. */
static int
tallyctl_sync (Fixture *f, Node *node, char **out, char **err)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tallyctl =
    g_build_filename (g_getenv ("TALLY_BUILD_ROOT"), "daemon", "tallyctl", NULL);
  g_autoptr (GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "DBUS_SYSTEM_BUS_ADDRESS",
                                g_test_dbus_get_bus_address (test_bus), TRUE);
  g_subprocess_launcher_setenv (launcher, "LC_ALL", "C.UTF-8", TRUE);
  g_subprocess_launcher_set_child_setup (launcher, leave_terminal, NULL, NULL);
  g_autoptr (GSubprocess) proc = g_subprocess_launcher_spawn (
    launcher, &error, tallyctl, "--bus", "session", "--name",
    g_dbus_connection_get_unique_name (node->connection), "sync", NULL);
  g_assert_no_error (error);
  GAsyncResult *result = NULL;
  g_subprocess_communicate_utf8_async (proc, NULL, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_subprocess_communicate_utf8_finish (proc, result, out, err, &error);
  g_object_unref (result);
  g_assert_no_error (error);
  return g_subprocess_get_exit_status (proc);
}

static void
test_tallyctl_sync_reconciles (Fixture *f, gconstpointer data)
{
  register_pay (f, "alice", "bob", PAID);
  node_start (f, &f->bob, "bob", NULL, 0);
  g_autofree char *out = NULL, *err = NULL;
  g_assert_cmpint (tallyctl_sync (f, &f->bob, &out, &err), ==, 0);
  g_assert_cmpstr (err, ==, "");
  g_assert_nonnull (strstr (out, "Synced with the issuer."));
  g_assert_nonnull (strstr (out, "7.50"));
  assert_entries (&f->bob, TALLY_ENTRY_STATE_SETTLED, 1);
}

/* A sync that brings the news of the register's own revocation goes
 * through, but tells its owner and fails, so no script takes a register
 * payees now refuse for a working one. */
static void
test_tallyctl_sync_tells_the_owner_of_a_revocation (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  {
    g_autoptr (TallyRegister) bob = register_open (f, "bob");
    g_assert_true (tally_issuer_revoke (f->issuer, tally_register_get_id (bob), tally_now (),
                                        &error));
    g_assert_no_error (error);
  }
  node_start (f, &f->bob, "bob", NULL, 0);
  g_autoptr (GVariant) before = node_property (f, &f->bob, "Revoked");
  g_assert_false (g_variant_get_boolean (before));

  g_autofree char *out = NULL, *err = NULL;
  g_assert_cmpint (tallyctl_sync (f, &f->bob, &out, &err), ==, 1);
  g_assert_nonnull (strstr (out, "Synced with the issuer."));
  g_assert_nonnull (strstr (err, "the issuer has revoked this register"));
  g_autoptr (GVariant) after = node_property (f, &f->bob, "Revoked");
  g_assert_true (g_variant_get_boolean (after));
}

/* --- enrolment and top-up --- */

#define CAROL_DEPOSIT 8000
#define TOPUP         2500

/* The account "carol" and its token (hex), and a register for it that
 * trusts the issuer and has no certificate yet. */
static char *
carol_setup (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (
    tally_issuer_account_create_with_token (f->issuer, "carol", "Carol's Cafe", token, &error));
  g_assert_true (tally_issuer_deposit (f->issuer, "carol", CAROL_DEPOSIT, &error));
  g_assert_no_error (error);
  g_autofree char *dir = g_build_filename (f->dir, "carol", NULL);
  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, tally_issuer_get_public_key (f->issuer), &error);
  g_assert_no_error (error);
  return tally_hex_encode (token, sizeof token);
}

static gint64
account_balance (Fixture *f, const char *name)
{
  g_autoptr (GError) error = NULL;
  gint64 balance = 0;
  g_assert_true (tally_issuer_account_balance (f->issuer, name, &balance, &error));
  g_assert_no_error (error);
  return balance;
}

static gboolean
node_enroll (Fixture *f, Node *node, const char *account, const char *token, GError **error)
{
  g_autoptr (GVariant) reply = node_call (f, node, "org.tally.Register1", "Enroll",
                                          g_variant_new ("(ss)", account, token), error);
  return reply != NULL;
}

static gboolean
node_topup (Fixture *f, Node *node, gint64 amount, GError **error)
{
  g_autoptr (GVariant) reply = node_call (f, node, "org.tally.Register1", "Topup",
                                          g_variant_new ("(t)", (guint64) amount), error);
  return reply != NULL;
}

/* A fresh register enrols with its account's token and buys a voucher,
 * nothing carried by hand; the account pays for it once. */
static void
test_enroll_then_topup_over_http (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  node_start (f, &f->alice, "carol", NULL, 0);

  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);
  g_autofree char *name = node_string (f, &f->alice, "DisplayName");
  g_assert_cmpstr (name, ==, "Carol's Cafe");
  g_assert_cmpuint (node_u64 (f, &f->alice, "CertificateExpiry"), >, tally_now ());

  /* The account is kept for top-ups, readable by the daemon's user only. */
  g_autofree char *file = g_build_filename (f->dir, "carol", "issuer-account", NULL);
  GStatBuf st;
  g_assert_cmpint (g_stat (file, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);

  g_assert_true (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  /* Enrolling the same key again renews its certificate: the same
   * register, nothing paid, the balance as it was. */
  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  /* And the value syncs like any other. */
  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);
  TallyAudit a = audit (f);
  g_assert_true (a.balanced);
  g_assert_cmpint (a.offline, ==, LOADED + TOPUP);
}

/* The issuer sells the voucher and its answer is lost: the daemon asks
 * again with the same request id, gets the same voucher, and the account
 * pays once. */
static void
test_topup_retried_after_a_dropped_answer_pays_once (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  relay_start (f, RELAY_DROP_FIRST_VOUCHER);
  node_start (f, &f->alice, "carol", f->relay_url, 0);
  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);

  g_assert_true (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->voucher_posts, ==, 2);
  g_assert_cmpuint (f->repeated_vouchers, ==, 1);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);
}

/* No answer to a purchase at all, even after the retries: the purchase
 * stays pending across a restart, another amount is refused until it is
 * done, and the next top-up of its amount gets the voucher sold then. */
static void
test_topup_without_an_answer_is_completed_by_the_next_paying_once (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  relay_start (f, RELAY_DROP_ALL_VOUCHERS);
  node_start (f, &f->alice, "carol", f->relay_url, 0);
  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);

  g_assert_false (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_cmpuint (f->voucher_posts, ==, 4);
  g_assert_cmpuint (f->repeated_vouchers, ==, 3);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==, 0);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  node_stop (&f->alice);
  f->mode = RELAY_PASS;
  node_start (f, &f->alice, "carol", f->relay_url, 0);
  g_assert_false (node_topup (f, &f->alice, 3000, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE);
  g_clear_error (&error);
  g_assert_cmpuint (f->voucher_posts, ==, 4);

  g_assert_true (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->repeated_vouchers, ==, 4);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  /* Done: the next one is a new purchase. */
  g_assert_true (node_topup (f, &f->alice, 1000, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP + 1000);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP - 1000);
}

/* A purchase without an answer stays pending through refusals that are
 * not the issuer's (a proxy's 429 with no Tally error body proves nothing
 * about the sale): the next top-up still completes it, paying once. */
static void
test_topup_pending_survives_a_refusal_that_is_not_the_issuers (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  relay_start (f, RELAY_DROP_ALL_VOUCHERS);
  node_start (f, &f->alice, "carol", f->relay_url, 0);
  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);
  g_assert_false (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  f->mode = RELAY_THROTTLE_VOUCHERS;
  g_assert_false (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_FAILED);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "HTTP 429"));
  g_clear_error (&error);

  f->mode = RELAY_PASS;
  g_assert_true (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_no_error (error);
  g_assert_cmpint (tally_register_get_balance (tally_daemon_get_register (f->alice.daemon)), ==,
                   TOPUP);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);
}

/* Another account's token: refused, no certificate, nothing kept. */
static void
test_enroll_with_a_wrong_token_is_refused_and_keeps_nothing (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  guint8 other[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (tally_issuer_account_token_new (f->issuer, "bob", other, &error));
  g_autofree char *bob_token = tally_hex_encode (other, sizeof other);
  node_start (f, &f->alice, "carol", NULL, 0);

  g_assert_false (node_enroll (f, &f->alice, "carol", bob_token, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NOT_AUTHORIZED);
  g_clear_error (&error);
  g_assert_null (tally_register_get_certificate_info (tally_daemon_get_register (f->alice.daemon)));
  g_autofree char *file = g_build_filename (f->dir, "carol", "issuer-account", NULL);
  g_assert_false (g_file_test (file, G_FILE_TEST_EXISTS));

  g_assert_false (node_enroll (f, &f->alice, "carol", "not a token", &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Before an enrolment there is no account to buy from. */
  g_assert_false (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT);
}

/* An answer that sends the register elsewhere is refused: the account's
 * token and the bundle go only to the issuer configured, never to the
 * place a redirect names, and nothing changes. */
static void
test_a_redirect_is_refused_and_nothing_follows_it (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  trap_start (f);
  relay_start (f, RELAY_PASS);
  node_start (f, &f->alice, "carol", f->relay_url, 0);
  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);

  f->mode = RELAY_REDIRECT;
  Snapshot before = snapshot (&f->alice);
  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "redirected the key set to"));
  g_assert_nonnull (strstr (message, f->trap_url));
  g_clear_error (&error);

  g_assert_false (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);
  g_assert_false (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_clear_error (&error);

  g_assert_cmpuint (f->trap_requests, ==, 0);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT);
}

/* "Not modified" answers only an If-None-Match: sent without one, it
 * would skip the key set's check, and the sync ends before the upload. */
static void
test_not_modified_is_taken_only_after_if_none_match (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  register_pay (f, "alice", "bob", PAID);
  relay_start (f, RELAY_NOT_MODIFIED);
  node_start (f, &f->alice, "alice", f->relay_url, 0);
  Snapshot before = snapshot (&f->alice);

  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_POLICY);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "HTTP 304"));
  g_assert_cmpuint (f->reconcile_posts, ==, 0);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);

  /* After a real key set, with its ETag sent back, a 304 is taken. */
  f->mode = RELAY_PASS;
  g_clear_error (&error);
  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);
  f->mode = RELAY_NOT_MODIFIED;
  g_assert_true (node_sync (f, &f->alice, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->reconcile_posts, ==, 2);
}

/* An issuer whose answers keep coming, a byte at a time, never stalls a
 * read long enough for a per-read timeout; the whole enrolment or sync is
 * bounded by [issuer] request_timeout_seconds and ends with Timeout,
 * changing nothing. */
static void
test_a_trickling_answer_ends_with_timeout_at_the_deadline (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  relay_start (f, RELAY_TRICKLE);
  g_autofree char *extra =
    g_strdup_printf ("url=%s\nsync_interval_seconds=0\nrequest_timeout_seconds=2\n", f->relay_url);
  node_start_with (f, &f->alice, "carol", extra);

  gint64 start = g_get_monotonic_time ();
  g_assert_false (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "within 2 seconds"));
  g_clear_error (&error);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 6 * G_USEC_PER_SEC);
  g_assert_null (tally_register_get_certificate_info (tally_daemon_get_register (f->alice.daemon)));

  start = g_get_monotonic_time ();
  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_TIMEOUT);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 6 * G_USEC_PER_SEC);
  g_autofree char *state = node_string (f, &f->alice, "SyncState");
  g_assert_cmpstr (state, ==, "failed");
}

/* The key set's name is the only text a stranger's key set brings to the
 * register's error and log: with a control character, a terminal escape,
 * a bidirectional override or bytes that are not UTF-8 the key set is
 * refused as malformed, and what reaches D-Bus is clean text. */
static void
test_a_key_set_name_that_is_not_clean_text_never_reaches_dbus (Fixture *f, gconstpointer data)
{
  static const char *const names[] = {
    "Bank\x1b]0;owned\x07",
    "Bank\n[info] synced",
    "Bank \xe2\x80\xae"
    "knaB",
    "Bank\xff\xfe",
  };
  relay_start (f, RELAY_FORGE_KEYS);
  node_start (f, &f->alice, "alice", f->relay_url, 0);
  Snapshot before = snapshot (&f->alice);
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autoptr (GError) error = NULL;
    f->forged_name = names[i];
    g_assert_false (node_sync (f, &f->alice, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED);
    g_autofree char *message = tally_dbus_error_get_message (error);
    g_autofree char *last_error = node_string (f, &f->alice, "LastSyncError");
    const char *texts[] = { message, last_error };
    for (gsize j = 0; j < G_N_ELEMENTS (texts); j++) {
      g_assert_true (g_utf8_validate (texts[j], -1, NULL));
      g_assert_true (tally_text_check (texts[j], 4096, "error", NULL));
      g_assert_null (strstr (texts[j], "Bank"));
    }
  }
  /* A clean name of another key is quoted, as the issuer it is not. */
  g_autoptr (GError) error = NULL;
  f->forged_name = "Other Bank";
  g_assert_false (node_sync (f, &f->alice, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER);
  g_autofree char *message = tally_dbus_error_get_message (error);
  g_assert_nonnull (strstr (message, "\"Other Bank\""));
  g_assert_cmpuint (f->reconcile_posts, ==, 0);
  Snapshot after = snapshot (&f->alice);
  assert_unchanged (&before, &after);
}

/* The issuer enrols the register and its answer is lost: tallyd sends the
 * same enrolment once more and gets a current certificate for the same
 * register; the account is kept for top-ups. */
static void
test_enroll_retried_after_a_dropped_answer_gets_the_certificate (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *token = carol_setup (f);
  relay_start (f, RELAY_DROP_FIRST_ENROL);
  node_start (f, &f->alice, "carol", f->relay_url, 0);

  g_assert_true (node_enroll (f, &f->alice, "carol", token, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->enrol_posts, ==, 2);
  g_assert_cmpuint (node_u64 (f, &f->alice, "CertificateExpiry"), >, tally_now ());
  g_autofree char *name = node_string (f, &f->alice, "DisplayName");
  g_assert_cmpstr (name, ==, "Carol's Cafe");

  /* Enrolled once, for carol: a top-up is bought from her account. */
  g_assert_true (node_topup (f, &f->alice, TOPUP, &error));
  g_assert_no_error (error);
  g_assert_cmpint (account_balance (f, "carol"), ==, CAROL_DEPOSIT - TOPUP);

  /* The same key for another account stays refused. */
  guint8 other[TALLY_ACCOUNT_TOKEN_BYTES];
  g_assert_true (tally_issuer_account_token_new (f->issuer, "bob", other, &error));
  g_autofree char *bob_token = tally_hex_encode (other, sizeof other);
  g_assert_false (node_enroll (f, &f->alice, "bob", bob_token, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY);
  g_assert_cmpint (account_balance (f, "bob"), ==, BOB_DEPOSIT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
  ADD ("/daemon/sync/payments-reconcile-online-without-files",
       test_payments_reconcile_online_without_files);
  ADD ("/daemon/sync/sync-retried-after-a-dropped-answer-books-once",
       test_sync_retried_after_a_dropped_answer_books_once);
  ADD ("/daemon/sync/issuer-down-gives-Disconnected-and-changes-nothing",
       test_issuer_down_gives_disconnected_and_changes_nothing);
  ADD ("/daemon/sync/a-result-signed-by-another-key-is-refused",
       test_a_result_signed_by_another_key_is_refused);
  ADD ("/daemon/sync/an-oversized-answer-is-refused", test_an_oversized_answer_is_refused);
  ADD ("/daemon/sync/another-issuer-is-refused-before-export",
       test_another_issuer_is_refused_before_export);
  ADD ("/daemon/sync/without-an-issuer-url-says-how-to-set-one",
       test_sync_without_an_issuer_url_says_how_to_set_one);
  ADD ("/daemon/sync/automatic-sync-at-start-settles-without-a-call",
       test_automatic_sync_at_start_settles_without_a_call);
  ADD ("/daemon/sync/tallyctl-sync-reconciles", test_tallyctl_sync_reconciles);
  ADD ("/daemon/sync/tallyctl-sync-tells-the-owner-of-a-revocation",
       test_tallyctl_sync_tells_the_owner_of_a_revocation);
  ADD ("/daemon/sync/automatic-sync-backs-off-until-the-issuer-is-back",
       test_automatic_sync_backs_off_until_the_issuer_is_back);
  ADD ("/daemon/sync/automatic-sync-falls-due-after-most-offline-payments",
       test_automatic_sync_falls_due_after_most_offline_payments);
  ADD ("/daemon/sync/automatic-sync-waits-while-a-payment-is-in-progress",
       test_automatic_sync_waits_while_a_payment_is_in_progress);
  ADD ("/daemon/sync/automatic-sync-falls-due-when-the-revocation-list-is-stale",
       test_automatic_sync_falls_due_when_the_revocation_list_is_stale);
  ADD ("/daemon/sync/automatic-sync-waits-for-the-interval-with-the-list-age-off",
       test_automatic_sync_waits_for_the_interval_with_the_list_age_off);
  ADD ("/daemon/sync/defund-reaches-the-online-account", test_defund_reaches_the_online_account);
  ADD ("/daemon/sync/https-needs-the-configured-ca", test_https_needs_the_configured_ca);
  ADD ("/daemon/sync/plain-http-only-to-loopback", test_plain_http_only_to_loopback);
  ADD ("/daemon/sync/enroll-then-topup-over-http", test_enroll_then_topup_over_http);
  ADD ("/daemon/sync/topup-retried-after-a-dropped-answer-pays-once",
       test_topup_retried_after_a_dropped_answer_pays_once);
  ADD ("/daemon/sync/topup-without-an-answer-is-completed-by-the-next-paying-once",
       test_topup_without_an_answer_is_completed_by_the_next_paying_once);
  ADD ("/daemon/sync/enroll-with-a-wrong-token-is-refused-and-keeps-nothing",
       test_enroll_with_a_wrong_token_is_refused_and_keeps_nothing);
  ADD ("/daemon/sync/a-redirect-is-refused-and-nothing-follows-it",
       test_a_redirect_is_refused_and_nothing_follows_it);
  ADD ("/daemon/sync/not-modified-is-taken-only-after-if-none-match",
       test_not_modified_is_taken_only_after_if_none_match);
  ADD ("/daemon/sync/a-trickling-answer-ends-with-timeout-at-the-deadline",
       test_a_trickling_answer_ends_with_timeout_at_the_deadline);
  ADD ("/daemon/sync/a-key-set-name-that-is-not-clean-text-never-reaches-dbus",
       test_a_key_set_name_that_is_not_clean_text_never_reaches_dbus);
  ADD ("/daemon/sync/enroll-retried-after-a-dropped-answer-gets-the-certificate",
       test_enroll_retried_after_a_dropped_answer_gets_the_certificate);
  ADD ("/daemon/sync/automatic-sync-near-the-deadline-goes-before-a-payment",
       test_automatic_sync_near_the_deadline_goes_before_a_payment);
  ADD ("/daemon/sync/automatic-sync-is-not-held-off-by-an-open-request",
       test_automatic_sync_is_not_held_off_by_an_open_request);
  ADD ("/daemon/sync/topup-pending-survives-a-refusal-that-is-not-the-issuers",
       test_topup_pending_survives_a_refusal_that_is_not_the_issuers);
#undef ADD

  test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (test_bus);
  int rc = g_test_run ();
  g_test_dbus_down (test_bus);
  g_object_unref (test_bus);
  return rc;
}
