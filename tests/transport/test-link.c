/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include "tally-channel.h"
#include "tally-link.h"
#include "tally-memlink.h"
#include "tally-stream.h"

/* Protocol timeout for the slow-sender tests, not a wall-time assertion. */
#define SHORT_TIMEOUT_MS 200
/* Fails a test whose event never comes instead of hanging it. */
#define WATCHDOG_SECONDS 30

/* --- main loop helpers ---------------------------------------------------------- */

static gboolean
watchdog_cb (gpointer user_data)
{
  gboolean *fired = user_data;

  *fired = TRUE;
  return G_SOURCE_REMOVE;
}

#define RUN_UNTIL(cond)                                                                            \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gboolean fired_ = FALSE;                                                                       \
    GSource *watchdog_ = g_timeout_source_new_seconds (WATCHDOG_SECONDS);                          \
    g_source_set_callback (watchdog_, watchdog_cb, &fired_, NULL);                                 \
    g_source_attach (watchdog_, g_main_context_get_thread_default ());                             \
    while (!(cond) && !fired_)                                                                     \
      g_main_context_iteration (g_main_context_get_thread_default (), TRUE);                       \
    g_source_destroy (watchdog_);                                                                  \
    g_source_unref (watchdog_);                                                                    \
    if (!(cond))                                                                                   \
      g_error ("%s: %s did not happen", G_STRLOC, #cond);                                          \
  }                                                                                                \
  G_STMT_END

/* Runs everything already due, so late callbacks would show up. */
static void
drain_context (void)
{
  GMainContext *ctx = g_main_context_get_thread_default ();

  for (guint i = 0; i < 50; i++)
    while (g_main_context_iteration (ctx, FALSE))
      ;
}

typedef struct
{
  GMainContext *context;
  char *tmpdir;
} TestEnv;

static void
test_env_setup (TestEnv *env)
{
  g_autoptr (GError) error = NULL;

  env->context = g_main_context_new ();
  g_main_context_push_thread_default (env->context);
  env->tmpdir = g_dir_make_tmp ("tally-transport-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
test_env_teardown (TestEnv *env)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;

  drain_context ();
  g_main_context_pop_thread_default (env->context);
  g_main_context_unref (env->context);

  dir = g_dir_open (env->tmpdir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (env->tmpdir, name, NULL);

    g_unlink (path);
  }
  g_rmdir (env->tmpdir);
  g_free (env->tmpdir);
}

static char *
test_env_unix_address (TestEnv *env, const char *name)
{
  return g_strdup_printf ("unix:%s/%s", env->tmpdir, name);
}

/* --- endpoints ---------------------------------------------------------------- */

typedef struct _Endpoint
{
  TallyChannel *channel;
  GPtrArray *messages; /* GBytes */
  guint closed_count;
  GError *closed_error;
  gboolean free_on_message;
  gboolean free_on_closed;
  /* Freed too when this endpoint frees itself. */
  struct _Endpoint *also_free;
} Endpoint;

static void
endpoint_on_message (TallyChannel *channel, GBytes *message, gpointer user_data)
{
  Endpoint *ep = user_data;

  g_assert_true (channel == ep->channel);
  g_assert_cmpuint (ep->closed_count, ==, 0);
  g_ptr_array_add (ep->messages, g_bytes_ref (message));
  if (ep->free_on_message) {
    g_clear_pointer (&ep->channel, tally_channel_unref);
    if (ep->also_free != NULL)
      g_clear_pointer (&ep->also_free->channel, tally_channel_unref);
  }
}

static void
endpoint_on_closed (TallyChannel *channel, const GError *error, gpointer user_data)
{
  Endpoint *ep = user_data;

  g_assert_true (channel == ep->channel);
  ep->closed_count++;
  g_clear_error (&ep->closed_error);
  if (error != NULL)
    ep->closed_error = g_error_copy (error);
  if (ep->free_on_closed)
    g_clear_pointer (&ep->channel, tally_channel_unref);
}

static void
endpoint_init (Endpoint *ep, TallyLink *link, guint timeout_ms)
{
  memset (ep, 0, sizeof *ep);
  ep->messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  ep->channel = tally_channel_new (link, TALLY_FRAME_DEFAULT_MAX_MESSAGE, timeout_ms);
  tally_channel_set_handlers (ep->channel, endpoint_on_message, endpoint_on_closed, ep, NULL);
}

static void
endpoint_clear (Endpoint *ep)
{
  g_clear_pointer (&ep->channel, tally_channel_unref);
  g_clear_pointer (&ep->messages, g_ptr_array_unref);
  g_clear_error (&ep->closed_error);
}

static GBytes *
make_message (gsize len, guint seed)
{
  guint8 *data = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    data[i] = (guint8) (i * 7 + seed + (i >> 8));
  return g_bytes_new_take (data, len);
}

static void
assert_bytes_equal (GBytes *a, GBytes *b)
{
  g_assert_cmpmem (g_bytes_get_data (a, NULL), g_bytes_get_size (a), g_bytes_get_data (b, NULL),
                   g_bytes_get_size (b));
}

static void
send_message (Endpoint *ep, GBytes *message)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_channel_send (ep->channel, message, &error));
  g_assert_no_error (error);
}

/* --- memory pair -------------------------------------------------------------- */

static void
check_mem_pair_delivers (gsize mtu)
{
  static const gsize sizes[] = { 1, 16, 17, 18, 50, 241, 242, 500, 5000, 8192 };
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  Endpoint a;
  Endpoint b;

  test_env_setup (&env);
  tally_mem_link_pair (mtu, &a_link, &b_link);
  g_assert_cmpuint (tally_link_get_mtu (a_link), ==, mtu);
  endpoint_init (&a, a_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (a_link);
  tally_link_unref (b_link);

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autoptr (GBytes) to_b = make_message (sizes[i], i);
    g_autoptr (GBytes) to_a = make_message (sizes[i], i + 100);

    send_message (&a, to_b);
    send_message (&b, to_a);
  }
  RUN_UNTIL (a.messages->len == G_N_ELEMENTS (sizes) && b.messages->len == G_N_ELEMENTS (sizes));

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++) {
    g_autoptr (GBytes) to_b = make_message (sizes[i], i);
    g_autoptr (GBytes) to_a = make_message (sizes[i], i + 100);

    assert_bytes_equal (g_ptr_array_index (b.messages, i), to_b);
    assert_bytes_equal (g_ptr_array_index (a.messages, i), to_a);
  }
  g_assert_cmpuint (a.closed_count, ==, 0);
  g_assert_cmpuint (b.closed_count, ==, 0);

  endpoint_clear (&a);
  endpoint_clear (&b);
  test_env_teardown (&env);
}

static void
test_mem_delivers_messages_at_mtu_18 (void)
{
  check_mem_pair_delivers (18);
}

static void
test_mem_delivers_messages_at_mtu_20 (void)
{
  check_mem_pair_delivers (20);
}

static void
test_mem_delivers_messages_at_mtu_244 (void)
{
  check_mem_pair_delivers (244);
}

static void
test_mem_reports_peer_close_once (void)
{
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  Endpoint a;
  Endpoint b;
  g_autoptr (GBytes) last_words = make_message (300, 1);
  g_autoptr (GError) error = NULL;

  test_env_setup (&env);
  tally_mem_link_pair (20, &a_link, &b_link);
  endpoint_init (&a, a_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (a_link);
  tally_link_unref (b_link);

  /* What was sent before the close still arrives, then the close. */
  send_message (&a, last_words);
  tally_channel_close (a.channel);
  RUN_UNTIL (b.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (b.messages->len, ==, 1);
  assert_bytes_equal (g_ptr_array_index (b.messages, 0), last_words);
  g_assert_cmpuint (b.closed_count, ==, 1);
  g_assert_no_error (b.closed_error);
  /* The side that closed hears nothing. */
  g_assert_cmpuint (a.closed_count, ==, 0);

  g_assert_false (tally_channel_send (a.channel, last_words, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (tally_channel_send (b.channel, last_words, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);

  endpoint_clear (&a);
  endpoint_clear (&b);
  test_env_teardown (&env);
}

static void
test_mem_holds_fragments_until_handlers_set (void)
{
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  Endpoint a;
  Endpoint b;
  g_autoptr (GBytes) early = make_message (700, 5);

  test_env_setup (&env);
  tally_mem_link_pair (20, &a_link, &b_link);
  endpoint_init (&a, a_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (a_link);

  /* b's fragments and a's close arrive before anyone listens on b. */
  send_message (&a, early);
  tally_channel_close (a.channel);
  drain_context ();

  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (b_link);
  RUN_UNTIL (b.closed_count > 0);

  g_assert_cmpuint (b.messages->len, ==, 1);
  assert_bytes_equal (g_ptr_array_index (b.messages, 0), early);
  g_assert_no_error (b.closed_error);
  g_assert_cmpuint (b.closed_count, ==, 1);

  endpoint_clear (&a);
  endpoint_clear (&b);
  test_env_teardown (&env);
}

/* --- channel behaviour over the memory pair ------------------------------------ */

static void
send_raw (TallyLink *link, const guint8 *data, gsize len)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (tally_link_send (link, data, len, &error));
  g_assert_no_error (error);
}

typedef struct
{
  guint closed_count;
  GError *error;
} LinkWatch;

static void
link_watch_fragment (TallyLink *link, const guint8 *data, gsize len, gpointer user_data)
{
}

static void
link_watch_closed (TallyLink *link, const GError *error, gpointer user_data)
{
  LinkWatch *watch = user_data;

  watch->closed_count++;
  g_clear_error (&watch->error);
  if (error != NULL)
    watch->error = g_error_copy (error);
}

static void
test_channel_closes_on_reassembly_error (void)
{
  static const guint8 garbage[] = { 0x70, 0x01, 0x02 };
  TestEnv env;
  TallyLink *raw;
  TallyLink *b_link;
  Endpoint b;
  LinkWatch watch = { 0 };

  test_env_setup (&env);
  tally_mem_link_pair (20, &raw, &b_link);
  tally_link_set_handlers (raw, link_watch_fragment, link_watch_closed, &watch, NULL);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (b_link);

  send_raw (raw, garbage, sizeof garbage);
  send_raw (raw, garbage, sizeof garbage);
  RUN_UNTIL (b.closed_count > 0 && watch.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (b.closed_count, ==, 1);
  g_assert_error (b.closed_error, TALLY_ERROR, TALLY_ERROR_FRAME_UNKNOWN);
  /* The channel closed its link; the peer sees an orderly close. */
  g_assert_cmpuint (watch.closed_count, ==, 1);
  g_assert_no_error (watch.error);

  endpoint_clear (&b);
  tally_link_unref (raw);
  test_env_teardown (&env);
}

static void
count_destroy (gpointer user_data)
{
  (*(guint *) user_data)++;
}

/* Handlers' destroy notifies run when the handlers are replaced and when
 * the link or channel is freed. */
static void
test_handlers_destroy_on_replace_and_free (void)
{
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  TallyChannel *channel;
  guint link_destroyed = 0;
  guint channel_destroyed = 0;
  LinkWatch watch = { 0 };

  test_env_setup (&env);
  tally_mem_link_pair (20, &a_link, &b_link);
  tally_link_set_handlers (a_link, link_watch_fragment, link_watch_closed, &link_destroyed,
                           count_destroy);
  tally_link_set_handlers (a_link, link_watch_fragment, link_watch_closed, &watch, NULL);
  g_assert_cmpuint (link_destroyed, ==, 1);
  tally_link_set_handlers (a_link, link_watch_fragment, link_watch_closed, &link_destroyed,
                           count_destroy);
  tally_link_unref (a_link);
  g_assert_cmpuint (link_destroyed, ==, 2);

  channel = tally_channel_new (b_link, TALLY_FRAME_DEFAULT_MAX_MESSAGE,
                               TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (b_link);
  tally_channel_set_handlers (channel, NULL, NULL, &channel_destroyed, count_destroy);
  tally_channel_set_handlers (channel, NULL, NULL, &channel_destroyed, count_destroy);
  g_assert_cmpuint (channel_destroyed, ==, 1);
  tally_channel_unref (channel);
  g_assert_cmpuint (channel_destroyed, ==, 2);

  g_clear_error (&watch.error);
  test_env_teardown (&env);
}

static void
test_channel_times_out_partial_message (void)
{
  /* FIRST of a 100-byte message; the rest never comes. */
  guint8 first[20] = { 0x10, 0x00, 100 };
  TestEnv env;
  TallyLink *raw;
  TallyLink *b_link;
  Endpoint b;

  test_env_setup (&env);
  tally_mem_link_pair (20, &raw, &b_link);
  endpoint_init (&b, b_link, SHORT_TIMEOUT_MS);
  tally_link_unref (b_link);

  send_raw (raw, first, sizeof first);
  RUN_UNTIL (b.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (b.closed_count, ==, 1);
  g_assert_error (b.closed_error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  g_assert_cmpuint (b.messages->len, ==, 0);

  endpoint_clear (&b);
  tally_link_unref (raw);
  test_env_teardown (&env);
}

/* Fragments of one message overtaking each other, as on several Enhanced
 * ATT bearers: the channel delivers the message, then the next one. */
static void
test_channel_reassembles_reordered_fragments (void)
{
  static const guint order[] = { 2, 3, 1, 5, 0, 4 };
  TestEnv env;
  TallyLink *raw;
  TallyLink *b_link;
  Endpoint b;
  g_autoptr (GBytes) first = make_message (15 + 4 * 17 + 3, 1);
  g_autoptr (GBytes) second = make_message (60, 2);
  g_autoptr (GPtrArray) first_fragments = NULL;
  g_autoptr (GPtrArray) second_fragments = NULL;
  g_autoptr (GError) error = NULL;

  first_fragments = tally_frame_split (g_bytes_get_data (first, NULL), g_bytes_get_size (first), 18,
                                       TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  second_fragments = tally_frame_split (g_bytes_get_data (second, NULL), g_bytes_get_size (second),
                                        18, TALLY_FRAME_DEFAULT_MAX_MESSAGE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (first_fragments->len, ==, G_N_ELEMENTS (order));

  test_env_setup (&env);
  tally_mem_link_pair (18, &raw, &b_link);
  endpoint_init (&b, b_link, SHORT_TIMEOUT_MS);
  tally_link_unref (b_link);

  for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
    gsize len;
    const guint8 *data = g_bytes_get_data (first_fragments->pdata[order[i]], &len);

    send_raw (raw, data, len);
  }
  for (guint i = second_fragments->len; i > 0; i--) {
    gsize len;
    const guint8 *data = g_bytes_get_data (second_fragments->pdata[i - 1], &len);

    send_raw (raw, data, len);
  }
  RUN_UNTIL (b.messages->len == 2 || b.closed_count > 0);
  g_assert_cmpuint (b.closed_count, ==, 0);
  assert_bytes_equal (g_ptr_array_index (b.messages, 0), first);
  assert_bytes_equal (g_ptr_array_index (b.messages, 1), second);

  endpoint_clear (&b);
  tally_link_unref (raw);
  test_env_teardown (&env);
}

/* A fragment held for a FIRST that never comes arms the timeout too. */
static void
test_channel_times_out_fragments_held_before_first (void)
{
  static const guint8 middle[] = {
    0x21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17
  };
  TestEnv env;
  TallyLink *raw;
  TallyLink *b_link;
  Endpoint b;

  test_env_setup (&env);
  tally_mem_link_pair (18, &raw, &b_link);
  endpoint_init (&b, b_link, SHORT_TIMEOUT_MS);
  tally_link_unref (b_link);

  send_raw (raw, middle, sizeof middle);
  RUN_UNTIL (b.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (b.closed_count, ==, 1);
  g_assert_error (b.closed_error, TALLY_ERROR, TALLY_ERROR_FRAME_TIMEOUT);
  g_assert_cmpuint (b.messages->len, ==, 0);

  endpoint_clear (&b);
  tally_link_unref (raw);
  test_env_teardown (&env);
}

static void
test_channel_reports_close_inside_message (void)
{
  guint8 first[20] = { 0x10, 0x00, 100 };
  TestEnv env;
  TallyLink *raw;
  TallyLink *b_link;
  Endpoint b;

  test_env_setup (&env);
  tally_mem_link_pair (20, &raw, &b_link);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (b_link);

  send_raw (raw, first, sizeof first);
  tally_link_close (raw);
  RUN_UNTIL (b.closed_count > 0);

  g_assert_cmpuint (b.closed_count, ==, 1);
  g_assert_error (b.closed_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);

  endpoint_clear (&b);
  tally_link_unref (raw);
  test_env_teardown (&env);
}

static void
test_channel_may_be_freed_from_its_callbacks (void)
{
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  Endpoint a;
  Endpoint b;
  g_autoptr (GBytes) first = make_message (60, 1);
  g_autoptr (GBytes) second = make_message (60, 2);

  test_env_setup (&env);
  tally_mem_link_pair (20, &a_link, &b_link);
  endpoint_init (&a, a_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (a_link);
  tally_link_unref (b_link);

  /* b frees itself on the first message; the second must not reach it. */
  b.free_on_message = TRUE;
  a.free_on_closed = TRUE;
  send_message (&a, first);
  send_message (&a, second);
  RUN_UNTIL (b.channel == NULL && a.channel == NULL);
  drain_context ();

  g_assert_cmpuint (b.messages->len, ==, 1);
  assert_bytes_equal (g_ptr_array_index (b.messages, 0), first);
  g_assert_cmpuint (b.closed_count, ==, 0);
  /* a saw b go away and freed itself from on_closed. */
  g_assert_cmpuint (a.closed_count, ==, 1);
  g_assert_no_error (a.closed_error);

  endpoint_clear (&a);
  endpoint_clear (&b);
  test_env_teardown (&env);
}

static void
test_channel_and_peer_may_be_freed_from_a_callback (void)
{
  TestEnv env;
  TallyLink *a_link;
  TallyLink *b_link;
  Endpoint a;
  Endpoint b;
  g_autoptr (GBytes) first = make_message (60, 1);
  g_autoptr (GBytes) second = make_message (60, 2);

  test_env_setup (&env);
  tally_mem_link_pair (20, &a_link, &b_link);
  endpoint_init (&a, a_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  endpoint_init (&b, b_link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (a_link);
  tally_link_unref (b_link);

  /* Tearing down both ends of the pair while b's delivery is running. */
  b.free_on_message = TRUE;
  b.also_free = &a;
  send_message (&a, first);
  send_message (&a, second);
  RUN_UNTIL (b.channel == NULL);
  drain_context ();

  g_assert_null (a.channel);
  g_assert_cmpuint (b.messages->len, ==, 1);
  g_assert_cmpuint (a.closed_count, ==, 0);
  g_assert_cmpuint (b.closed_count, ==, 0);

  endpoint_clear (&a);
  endpoint_clear (&b);
  test_env_teardown (&env);
}

/* --- stream transport ------------------------------------------------------------- */

typedef struct
{
  Endpoint server;
  gboolean accepted;
  guint timeout_ms;
  GBytes *greeting; /* sent as soon as the connection is accepted */
} Server;

static void
server_on_accept (TallyStreamListener *listener, TallyLink *link, gpointer user_data)
{
  Server *server = user_data;

  g_assert_false (server->accepted);
  server->accepted = TRUE;
  endpoint_init (&server->server, link, server->timeout_ms);
  if (server->greeting != NULL)
    send_message (&server->server, server->greeting);
}

typedef struct
{
  TallyLink *link;
  GError *error;
  gboolean done;
} ConnectResult;

static void
connect_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ConnectResult *res = user_data;

  res->link = tally_stream_connect_finish (result, &res->error);
  res->done = TRUE;
}

static TallyLink *
connect_link (const char *address)
{
  ConnectResult res = { 0 };

  tally_stream_connect_async (address, TALLY_STREAM_DEFAULT_MTU, NULL, connect_done_cb, &res);
  RUN_UNTIL (res.done);
  g_assert_no_error (res.error);
  g_assert_nonnull (res.link);
  return res.link;
}

static void
check_stream_exchange (const char *bind_address, gboolean expect_tcp)
{
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) to_server = make_message (5000, 1);
  g_autoptr (GBytes) to_client = make_message (5000, 2);
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  Endpoint client;
  const char *address;
  TallyLink *link;

  listener = tally_stream_listener_new (bind_address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  address = tally_stream_listener_get_address (listener);
  if (expect_tcp) {
    g_assert_true (g_str_has_prefix (address, "tcp:127.0.0.1:"));
    g_assert_cmpstr (address, !=, "tcp:127.0.0.1:0");
  } else {
    g_assert_cmpstr (address, ==, bind_address);
  }

  link = connect_link (address);
  g_assert_cmpuint (tally_link_get_mtu (link), ==, TALLY_STREAM_DEFAULT_MTU);
  g_assert_cmpstr (tally_link_get_peer (link), ==, address);
  endpoint_init (&client, link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (link);

  send_message (&client, to_server);
  RUN_UNTIL (server.accepted && server.server.messages->len == 1);
  send_message (&server.server, to_client);
  RUN_UNTIL (client.messages->len == 1);

  assert_bytes_equal (g_ptr_array_index (server.server.messages, 0), to_server);
  assert_bytes_equal (g_ptr_array_index (client.messages, 0), to_client);
  g_assert_cmpuint (client.closed_count, ==, 0);
  g_assert_cmpuint (server.server.closed_count, ==, 0);

  endpoint_clear (&client);
  endpoint_clear (&server.server);
}

static void
test_stream_unix_exchanges_messages (void)
{
  TestEnv env;
  g_autofree char *address = NULL;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  check_stream_exchange (address, FALSE);
  test_env_teardown (&env);
}

static void
test_stream_tcp_exchanges_messages (void)
{
  TestEnv env;

  test_env_setup (&env);
  check_stream_exchange ("tcp:127.0.0.1:0", TRUE);
  test_env_teardown (&env);
}

static void
test_stream_unix_socket_is_private (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  GStatBuf st;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (address + strlen ("unix:"), &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);

  g_clear_pointer (&listener, tally_stream_listener_unref);
  g_assert_false (g_file_test (address + strlen ("unix:"), G_FILE_TEST_EXISTS));
  test_env_teardown (&env);
}

static void
test_stream_holds_data_until_handlers_set (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) greeting = make_message (3000, 4);
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS, .greeting = greeting };
  Endpoint client;
  TallyLink *link;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);

  /* The greeting reaches the client's socket before it has a channel. */
  link = connect_link (address);
  RUN_UNTIL (server.accepted);
  drain_context ();

  endpoint_init (&client, link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (link);
  RUN_UNTIL (client.messages->len == 1);
  assert_bytes_equal (g_ptr_array_index (client.messages, 0), greeting);

  endpoint_clear (&client);
  endpoint_clear (&server.server);
  g_clear_pointer (&listener, tally_stream_listener_unref);
  test_env_teardown (&env);
}

static void
test_stream_refuses_unbounded_send_queue (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) message = make_message (TALLY_FRAME_DEFAULT_MAX_MESSAGE, 6);
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  Endpoint client;
  TallyLink *link;
  guint sent = 0;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  link = connect_link (address);
  endpoint_init (&client, link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (link);

  /* Without the main loop running nothing drains: the queue must refuse. */
  while (tally_channel_send (client.channel, message, &error))
    g_assert_cmpuint (++sent, <, 1000);
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_assert_cmpuint (sent, >=, 100);

  endpoint_clear (&client);
  if (server.accepted)
    endpoint_clear (&server.server);
  g_clear_pointer (&listener, tally_stream_listener_unref);
  test_env_teardown (&env);
}

static void
check_stream_peer_close (const char *bind_address)
{
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) last_words = make_message (1000, 3);
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  Endpoint client;
  TallyLink *link;

  listener = tally_stream_listener_new (bind_address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  link = connect_link (tally_stream_listener_get_address (listener));
  endpoint_init (&client, link, TALLY_FRAME_DEFAULT_TIMEOUT_MS);
  tally_link_unref (link);

  /* Queued fragments leave before the stream closes. */
  send_message (&client, last_words);
  tally_channel_close (client.channel);
  RUN_UNTIL (server.accepted && server.server.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (server.server.messages->len, ==, 1);
  assert_bytes_equal (g_ptr_array_index (server.server.messages, 0), last_words);
  g_assert_cmpuint (server.server.closed_count, ==, 1);
  g_assert_no_error (server.server.closed_error);
  g_assert_cmpuint (client.closed_count, ==, 0);

  g_assert_false (tally_channel_send (server.server.channel, last_words, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);

  endpoint_clear (&client);
  endpoint_clear (&server.server);
}

static void
test_stream_unix_reports_peer_close_once (void)
{
  TestEnv env;
  g_autofree char *address = NULL;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  check_stream_peer_close (address);
  test_env_teardown (&env);
}

static void
test_stream_tcp_reports_peer_close_once (void)
{
  TestEnv env;

  test_env_setup (&env);
  check_stream_peer_close ("tcp:127.0.0.1:0");
  test_env_teardown (&env);
}

/* A raw client that writes bytes of its choosing to the listener. */
static GSocketConnection *
raw_connect (TallyStreamListener *listener)
{
  const char *address = tally_stream_listener_get_address (listener);
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GError) error = NULL;
  GSocketConnection *connection;

  g_assert_true (g_str_has_prefix (address, "unix:"));
  addr = g_unix_socket_address_new (address + strlen ("unix:"));
  connection = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, &error);
  g_assert_no_error (error);
  return connection;
}

static void
raw_write (GSocketConnection *connection, const guint8 *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (connection));

  g_assert_true (g_output_stream_write_all (out, data, len, NULL, NULL, &error));
  g_assert_no_error (error);
}

static void
check_raw_bytes_close_server (TestEnv *env,
                              const guint8 *bytes,
                              gsize len,
                              guint timeout_ms,
                              gint expected,
                              const char *expected_message)
{
  g_autofree char *address = test_env_unix_address (env, "tally.sock");
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GSocketConnection) raw = NULL;
  g_autoptr (GError) error = NULL;
  Server server = { .timeout_ms = timeout_ms };
  guint8 buf[16];
  gssize n;

  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);

  raw = raw_connect (listener);
  raw_write (raw, bytes, len);
  RUN_UNTIL (server.accepted && server.server.closed_count > 0);
  drain_context ();

  g_assert_cmpuint (server.server.closed_count, ==, 1);
  g_assert_error (server.server.closed_error, TALLY_ERROR, expected);
  if (strstr (server.server.closed_error->message, expected_message) == NULL)
    g_error ("\"%s\" lacks \"%s\"", server.server.closed_error->message, expected_message);
  g_assert_cmpuint (server.server.messages->len, ==, 0);

  /* The server really closed the connection. */
  g_assert_true (g_socket_condition_timed_wait (g_socket_connection_get_socket (raw), G_IO_IN,
                                                (gint64) WATCHDOG_SECONDS * G_USEC_PER_SEC, NULL,
                                                &error));
  g_assert_no_error (error);
  n = g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (raw)), buf, sizeof buf, NULL,
                           &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 0);

  endpoint_clear (&server.server);
}

static void
test_stream_times_out_slow_sender (void)
{
  /* Length prefix 20, then a FIRST announcing 300 bytes; nothing follows. */
  guint8 bytes[22] = { 0x00, 20, 0x10, 0x01, 0x2c };
  TestEnv env;

  test_env_setup (&env);
  check_raw_bytes_close_server (&env, bytes, sizeof bytes, SHORT_TIMEOUT_MS,
                                TALLY_ERROR_FRAME_TIMEOUT, "message of 300 bytes incomplete");
  test_env_teardown (&env);
}

static void
test_stream_closes_on_oversize_length_prefix (void)
{
  static const guint8 bytes[] = { 0xff, 0xff, 0x40, 0x00, 0x01, 'x' };
  TestEnv env;

  test_env_setup (&env);
  check_raw_bytes_close_server (&env, bytes, sizeof bytes, TALLY_FRAME_DEFAULT_TIMEOUT_MS,
                                TALLY_ERROR_FRAME_OVERSIZE, "fragment of 65535 bytes, MTU 244");
  test_env_teardown (&env);
}

static void
test_stream_closes_on_zero_length_prefix (void)
{
  static const guint8 bytes[] = { 0x00, 0x00, 0x40, 0x00, 0x01, 'x' };
  TestEnv env;

  test_env_setup (&env);
  check_raw_bytes_close_server (&env, bytes, sizeof bytes, TALLY_FRAME_DEFAULT_TIMEOUT_MS,
                                TALLY_ERROR_FRAME_TRUNCATED, "fragment length of 0");
  test_env_teardown (&env);
}

static void
test_stream_reports_eof_inside_fragment (void)
{
  static const guint8 bytes[] = { 0x00, 0x10, 0x40, 0x00 };
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GSocketConnection) raw = NULL;
  g_autoptr (GError) error = NULL;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  raw = raw_connect (listener);
  raw_write (raw, bytes, sizeof bytes);
  g_assert_true (g_io_stream_close (G_IO_STREAM (raw), NULL, &error));
  RUN_UNTIL (server.accepted && server.server.closed_count > 0);

  g_assert_cmpuint (server.server.closed_count, ==, 1);
  g_assert_error (server.server.closed_error, TALLY_ERROR, TALLY_ERROR_FRAME_TRUNCATED);

  endpoint_clear (&server.server);
  g_clear_pointer (&listener, tally_stream_listener_unref);
  test_env_teardown (&env);
}

static void
test_stream_refuses_bad_addresses (void)
{
  static const char *bad[] = {
    "",
    "/tmp/tally.sock",
    "unix:",
    "tcp:",
    "tcp:127.0.0.1",
    "tcp::7000",
    "tcp:127.0.0.1:",
    "tcp:127.0.0.1:http",
    "tcp:127.0.0.1:65536",
    "tcp:127.0.0.1:-1",
    "tcp:::1:7000",
    "tcp:[::1:7000",
    "udp:127.0.0.1:7000",
  };
  TestEnv env;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };

  test_env_setup (&env);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    ConnectResult res = { 0 };

    g_test_message ("address \"%s\"", bad[i]);
    g_assert_null (tally_stream_listener_new (bad[i], TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                              &server, NULL, &error));
    g_assert_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);

    tally_stream_connect_async (bad[i], TALLY_STREAM_DEFAULT_MTU, NULL, connect_done_cb, &res);
    RUN_UNTIL (res.done);
    g_assert_null (res.link);
    g_assert_error (res.error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_clear_error (&res.error);
  }

  /* Port 0 means "pick one" for a listener but names nothing to connect to. */
  {
    ConnectResult res = { 0 };

    tally_stream_connect_async ("tcp:127.0.0.1:0", TALLY_STREAM_DEFAULT_MTU, NULL,
                                connect_done_cb, &res);
    RUN_UNTIL (res.done);
    g_assert_error (res.error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (res.error->message, "port \"0\" is not a number in 1..65535"));
    g_clear_error (&res.error);
  }

  /* The message says what an address looks like. */
  {
    g_autoptr (GError) error = NULL;

    g_assert_null (tally_stream_listener_new ("udp:127.0.0.1:7000", TALLY_STREAM_DEFAULT_MTU,
                                              server_on_accept, &server, NULL, &error));
    g_assert_nonnull (strstr (error->message, "address must be unix:/path or tcp:host:port"));
  }
  g_assert_false (server.accepted);
  test_env_teardown (&env);
}

static void
test_stream_reports_connection_refused (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  ConnectResult res = { 0 };

  test_env_setup (&env);
  address = test_env_unix_address (&env, "nobody.sock");
  tally_stream_connect_async (address, TALLY_STREAM_DEFAULT_MTU, NULL, connect_done_cb, &res);
  RUN_UNTIL (res.done);
  g_assert_null (res.link);
  g_assert_error (res.error, TALLY_ERROR, TALLY_ERROR_DISCONNECTED);
  g_clear_error (&res.error);
  test_env_teardown (&env);
}

static void
test_stream_connect_reports_cancellation (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  ConnectResult res = { 0 };

  test_env_setup (&env);
  address = test_env_unix_address (&env, "nobody.sock");
  g_cancellable_cancel (cancellable);
  tally_stream_connect_async (address, TALLY_STREAM_DEFAULT_MTU, cancellable, connect_done_cb,
                              &res);
  RUN_UNTIL (res.done);
  g_assert_null (res.link);
  g_assert_error (res.error, TALLY_ERROR, TALLY_ERROR_CANCELLED);
  g_clear_error (&res.error);
  test_env_teardown (&env);
}

static void
test_stream_replaces_stale_socket (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (GSocket) stale = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (TallyStreamListener) listener = NULL;
  g_autoptr (GError) error = NULL;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  const char *path;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  path = address + strlen ("unix:");

  /* A socket file whose owner is gone. */
  stale = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                        &error);
  g_assert_no_error (error);
  addr = g_unix_socket_address_new (path);
  g_assert_true (g_socket_bind (stale, addr, FALSE, &error));
  g_assert_no_error (error);
  g_assert_true (g_socket_close (stale, &error));
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));

  listener = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                        &server, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (listener);

  g_clear_pointer (&listener, tally_stream_listener_unref);
  test_env_teardown (&env);
}

static void
test_stream_refuses_live_socket (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (TallyStreamListener) first = NULL;
  g_autoptr (GError) error = NULL;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };

  test_env_setup (&env);
  address = test_env_unix_address (&env, "tally.sock");
  first = tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept, &server, NULL,
                                     &error);
  g_assert_no_error (error);

  g_assert_null (tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                            &server, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_assert_true (g_file_test (address + strlen ("unix:"), G_FILE_TEST_EXISTS));

  g_clear_pointer (&first, tally_stream_listener_unref);
  test_env_teardown (&env);
}

static void
test_stream_refuses_non_socket_path (void)
{
  TestEnv env;
  g_autofree char *address = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *contents = NULL;
  Server server = { .timeout_ms = TALLY_FRAME_DEFAULT_TIMEOUT_MS };
  const char *path;

  test_env_setup (&env);
  address = test_env_unix_address (&env, "precious");
  path = address + strlen ("unix:");
  g_assert_true (g_file_set_contents (path, "keep me", -1, &error));

  g_assert_null (tally_stream_listener_new (address, TALLY_STREAM_DEFAULT_MTU, server_on_accept,
                                            &server, NULL, &error));
  g_assert_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_true (g_file_get_contents (path, &contents, NULL, &error));
  g_assert_cmpstr (contents, ==, "keep me");
  test_env_teardown (&env);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/link/mem/delivers-messages-at-mtu-18", test_mem_delivers_messages_at_mtu_18);
  g_test_add_func ("/link/mem/delivers-messages-at-mtu-20", test_mem_delivers_messages_at_mtu_20);
  g_test_add_func ("/link/mem/delivers-messages-at-mtu-244", test_mem_delivers_messages_at_mtu_244);
  g_test_add_func ("/link/mem/reports-peer-close-once", test_mem_reports_peer_close_once);
  g_test_add_func ("/link/mem/holds-fragments-until-handlers-set",
                   test_mem_holds_fragments_until_handlers_set);
  g_test_add_func ("/link/channel/closes-on-reassembly-error",
                   test_channel_closes_on_reassembly_error);
  g_test_add_func ("/link/handlers/destroy-on-replace-and-on-free",
                   test_handlers_destroy_on_replace_and_free);
  g_test_add_func ("/link/channel/times-out-partial-message",
                   test_channel_times_out_partial_message);
  g_test_add_func ("/link/channel/reassembles-reordered-fragments",
                   test_channel_reassembles_reordered_fragments);
  g_test_add_func ("/link/channel/times-out-fragments-held-before-first",
                   test_channel_times_out_fragments_held_before_first);
  g_test_add_func ("/link/channel/reports-close-inside-message",
                   test_channel_reports_close_inside_message);
  g_test_add_func ("/link/channel/may-be-freed-from-its-callbacks",
                   test_channel_may_be_freed_from_its_callbacks);
  g_test_add_func ("/link/channel/pair-may-be-freed-from-a-callback",
                   test_channel_and_peer_may_be_freed_from_a_callback);
  g_test_add_func ("/link/stream/unix/exchanges-5000-byte-messages",
                   test_stream_unix_exchanges_messages);
  g_test_add_func ("/link/stream/tcp/exchanges-5000-byte-messages",
                   test_stream_tcp_exchanges_messages);
  g_test_add_func ("/link/stream/unix/holds-data-until-handlers-set",
                   test_stream_holds_data_until_handlers_set);
  g_test_add_func ("/link/stream/refuses-unbounded-send-queue",
                   test_stream_refuses_unbounded_send_queue);
  g_test_add_func ("/link/stream/unix/socket-is-private", test_stream_unix_socket_is_private);
  g_test_add_func ("/link/stream/unix/reports-peer-close-once",
                   test_stream_unix_reports_peer_close_once);
  g_test_add_func ("/link/stream/tcp/reports-peer-close-once",
                   test_stream_tcp_reports_peer_close_once);
  g_test_add_func ("/link/stream/times-out-slow-sender", test_stream_times_out_slow_sender);
  g_test_add_func ("/link/stream/closes-on-oversize-length-prefix",
                   test_stream_closes_on_oversize_length_prefix);
  g_test_add_func ("/link/stream/closes-on-zero-length-prefix",
                   test_stream_closes_on_zero_length_prefix);
  g_test_add_func ("/link/stream/reports-eof-inside-fragment",
                   test_stream_reports_eof_inside_fragment);
  g_test_add_func ("/link/stream/refuses-bad-addresses", test_stream_refuses_bad_addresses);
  g_test_add_func ("/link/stream/reports-connection-refused",
                   test_stream_reports_connection_refused);
  g_test_add_func ("/link/stream/connect-reports-cancellation",
                   test_stream_connect_reports_cancellation);
  g_test_add_func ("/link/stream/unix/replaces-stale-socket", test_stream_replaces_stale_socket);
  g_test_add_func ("/link/stream/unix/refuses-live-socket", test_stream_refuses_live_socket);
  g_test_add_func ("/link/stream/unix/refuses-non-socket-path",
                   test_stream_refuses_non_socket_path);

  return g_test_run ();
}
