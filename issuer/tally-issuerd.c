/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tally-issuerd: the online issuer, an HTTP(S) service over an issuer
 * directory made by "tally-issuer init" (docs/issuer-api.md).  Exit status
 * 0 after SIGTERM or SIGINT, 1 when it cannot start, 2 for usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tally-build-config.h"
#include "tally-hex.h"
#include "tally-issuer-http.h"
#include "tally-issuerd-workers.h"

#define EXIT_FAILED 1
#define EXIT_USAGE  2

#define DEFAULT_LISTEN "127.0.0.1:8470"
/* How often lost registers whose window has passed are refunded. */
#define DEFAULT_REFUND_INTERVAL 3600
#define MAX_WORKERS             64

typedef struct
{
  char *issuer_dir;
  char *listen;
  char *tls_certificate;
  char *tls_key;
  char *operator_token_file;
  gboolean allow_plain;
  guint64 max_body;
  guint64 request_timeout;
  guint64 max_connections;
  Tally__Limits limits;
  char *max_payment; /* [enrol] amounts as written: parsed once the currency is known */
  char *balance_cap;
  guint64 validity;
  guint64 refund_interval;
  guint64 workers;
} Config;

static void
config_clear (Config *c)
{
  g_free (c->issuer_dir);
  g_free (c->listen);
  g_free (c->tls_certificate);
  g_free (c->tls_key);
  g_free (c->operator_token_file);
  g_free (c->max_payment);
  g_free (c->balance_cap);
}

/* Every key tally-issuerd reads: any other is refused, so that a typo is
 * not silently a default.  data/tally-issuerd.conf.in and
 * tally-issuerd(8) show each (tests/install checks both). */
static const struct
{
  const char *group;
  const char *key;
} known_keys[] = {
  { "issuer", "dir" },
  { "issuer", "refund_interval" },
  { "http", "listen" },
  { "http", "tls_certificate" },
  { "http", "tls_key" },
  { "http", "allow_plain_http" },
  { "http", "operator_token_file" },
  { "http", "max_body_bytes" },
  { "http", "request_timeout" },
  { "http", "max_connections" },
  { "http", "workers" },
  { "enrol", "max_payment" },
  { "enrol", "balance_cap" },
  { "enrol", "max_payments" },
  { "enrol", "max_offline_hours" },
  { "enrol", "valid_days" },
};

static gboolean
config_check_keys (GKeyFile *kf, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
  for (gsize g = 0; groups[g] != NULL; g++) {
    g_auto (GStrv) keys = g_key_file_get_keys (kf, groups[g], NULL, NULL);
    for (gsize k = 0; keys != NULL && keys[k] != NULL; k++) {
      gboolean known = FALSE;
      for (gsize i = 0; i < G_N_ELEMENTS (known_keys) && !known; i++)
        known =
          strcmp (known_keys[i].group, groups[g]) == 0 && strcmp (known_keys[i].key, keys[k]) == 0;
      if (!known) {
        g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                     "[%s] %s: unknown key (see tally-issuerd --help)", groups[g], keys[k]);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* A relative path in the file is relative to the file's folder. */
static char *
config_path (GKeyFile *kf, const char *group, const char *key, const char *base, GError **error)
{
  g_autofree char *value = g_key_file_get_string (kf, group, key, error);
  if (value == NULL || g_path_is_absolute (value))
    return g_steal_pointer (&value);
  return g_build_filename (base, value, NULL);
}

/* An optional positive integer; @value keeps its default when absent. */
static gboolean
config_uint (GKeyFile *kf, const char *group, const char *key, guint64 *value, GError **error)
{
  if (!g_key_file_has_key (kf, group, key, NULL))
    return TRUE;
  g_autofree char *text = g_key_file_get_string (kf, group, key, error);
  if (text == NULL)
    return FALSE;
  guint64 v;
  if (!g_ascii_string_to_unsigned (g_strstrip (text), 10, 1, G_MAXINT32, &v, NULL)) {
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[%s] %s must be a positive integer, not \"%s\"", group, key, text);
    return FALSE;
  }
  *value = v;
  return TRUE;
}

/* [enrol] @key, written in @currency's units (no decimals for JPY, three
 * for KWD); @value keeps its default when the key is absent. */
static gboolean
config_amount (const char *text,
               const char *key,
               const char *currency,
               gint64 *value,
               GError **error)
{
  g_autoptr (GError) local = NULL;
  if (text == NULL)
    return TRUE;
  if (!tally_amount_parse (text, currency, value, &local)) {
    g_autofree char *example = tally_amount_format (2000, currency);
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[enrol] %s must be a positive amount such as %s: %s", key, example,
                 local->message);
    return FALSE;
  }
  return TRUE;
}

static gboolean
config_string (GKeyFile *kf, const char *group, const char *key, char **value, GError **error)
{
  if (!g_key_file_has_key (kf, group, key, NULL))
    return TRUE;
  *value = g_key_file_get_string (kf, group, key, error);
  if (*value == NULL)
    return FALSE;
  g_strstrip (*value);
  return TRUE;
}

static gboolean
config_load (Config *c, const char *path, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, error) ||
      !config_check_keys (kf, error))
    return FALSE;
  g_autofree char *base = g_path_get_dirname (path);
  guint64 max_payments = 100, offline_hours = 72, valid_days = 7;

  c->limits.max_payment = 5000;
  c->limits.balance_cap = 50000;
  c->max_body = TALLY_ISSUER_HTTP_MAX_BODY_DEFAULT;
  c->request_timeout = TALLY_ISSUER_HTTP_REQUEST_TIMEOUT_DEFAULT;
  c->max_connections = TALLY_ISSUER_HTTP_MAX_CONNECTIONS_DEFAULT;
  c->refund_interval = DEFAULT_REFUND_INTERVAL;
  c->workers = 1;
  if ((c->issuer_dir = config_path (kf, "issuer", "dir", base, error)) == NULL)
    return FALSE;
  c->listen = g_key_file_get_string (kf, "http", "listen", NULL);
  if (c->listen == NULL)
    c->listen = g_strdup (DEFAULT_LISTEN);
  if (g_key_file_has_key (kf, "http", "tls_certificate", NULL) &&
      ((c->tls_certificate = config_path (kf, "http", "tls_certificate", base, error)) == NULL ||
       (c->tls_key = config_path (kf, "http", "tls_key", base, error)) == NULL))
    return FALSE;
  if (g_key_file_has_key (kf, "http", "operator_token_file", NULL) &&
      (c->operator_token_file = config_path (kf, "http", "operator_token_file", base, error)) ==
        NULL)
    return FALSE;
  g_autoptr (GError) local = NULL;
  c->allow_plain = g_key_file_get_boolean (kf, "http", "allow_plain_http", &local);
  if (local != NULL && !g_error_matches (local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  if (!config_uint (kf, "http", "max_body_bytes", &c->max_body, error) ||
      !config_uint (kf, "http", "request_timeout", &c->request_timeout, error) ||
      !config_uint (kf, "http", "max_connections", &c->max_connections, error) ||
      !config_uint (kf, "http", "workers", &c->workers, error) ||
      !config_uint (kf, "issuer", "refund_interval", &c->refund_interval, error) ||
      !config_string (kf, "enrol", "max_payment", &c->max_payment, error) ||
      !config_string (kf, "enrol", "balance_cap", &c->balance_cap, error) ||
      !config_uint (kf, "enrol", "max_payments", &max_payments, error) ||
      !config_uint (kf, "enrol", "max_offline_hours", &offline_hours, error) ||
      !config_uint (kf, "enrol", "valid_days", &valid_days, error))
    return FALSE;
  if (c->workers > MAX_WORKERS) {
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[http] workers must be 1..%d, not %" G_GUINT64_FORMAT, MAX_WORKERS, c->workers);
    return FALSE;
  }
  c->limits.max_offline_payments = (guint32) max_payments;
  c->limits.max_offline_seconds = offline_hours * 3600;
  c->validity = valid_days * 86400;
  return TRUE;
}

/* "127.0.0.1:8470", "[::1]:8470": an IP address and a port (0: any). */
static GSocketAddress *
parse_listen (const char *text, GError **error)
{
  g_autoptr (GSocketConnectable) addr = g_network_address_parse (text, 0, NULL);
  g_autoptr (GInetAddress) ip = NULL;
  if (addr != NULL)
    ip = g_inet_address_new_from_string (g_network_address_get_hostname (G_NETWORK_ADDRESS (addr)));
  if (ip == NULL || strrchr (text, ':') == NULL) {
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[http] listen must be IP:PORT such as 127.0.0.1:8470 or [::1]:8470, not \"%s\"",
                 text);
    return NULL;
  }
  return g_inet_socket_address_new (ip, g_network_address_get_port (G_NETWORK_ADDRESS (addr)));
}

static gboolean
token_file_error (const char *path, int fd, int errsv, GError **error)
{
  if (fd >= 0)
    close (fd);
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errsv), "cannot read %s: %s", path,
               errsv == ELOOP ? "it is a symbolic link" : g_strerror (errsv));
  return FALSE;
}

/* The token opens every account's money: a file anyone may read, or that
 * is no regular file of its own (a symbolic link, a pipe), is refused.
 * The mode is checked on the very file read. */
static gboolean
read_operator_token (const char *path,
                     guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                     GError **error)
{
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat (fd, &st) != 0)
    return token_file_error (path, fd, errno, error);
  if (!S_ISREG (st.st_mode)) {
    close (fd);
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_PERM, "%s is not a regular file", path);
    return FALSE;
  }
  if ((st.st_mode & S_IRWXO) != 0) {
    close (fd);
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                 "%s is open to every user (mode %03o); make it 0600 or 0640", path,
                 (unsigned) (st.st_mode & 0777));
    return FALSE;
  }
  /* 64 hex digits and some white space; anything longer is no token. */
  char text[128];
  gsize len = 0;
  gssize n = 0;
  while (len < sizeof text - 1 &&
         ((n = read (fd, text + len, sizeof text - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
    len += n > 0 ? (gsize) n : 0;
  if (n < 0) {
    sodium_memzero (text, sizeof text);
    return token_file_error (path, fd, errno, error);
  }
  close (fd);
  text[len] = '\0';
  gboolean ok = len < sizeof text - 1 && memchr (text, '\0', len) == NULL &&
                tally_hex_decode (g_strstrip (text), token, TALLY_ACCOUNT_TOKEN_BYTES, NULL);
  sodium_memzero (text, sizeof text);
  if (!ok)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s must hold the operator token as 64 hex digits", path);
  return ok;
}

static gboolean
write_port_file (const char *path, guint16 port, GError **error)
{
  g_autofree char *text = g_strdup_printf ("%u\n", port);
  return g_file_set_contents (path, text, -1, error);
}

/* --- crash injection, a test hook (tests/issuer/test-issuerd-kill.c) --- */

#define CRASH_ENV "TALLY_ISSUER_CRASH_AT"

static void
crash_hook (const char *point, gpointer user_data)
{
  /* As abrupt as power loss: no atexit handlers, no buffers flushed. */
  if (strcmp (point, user_data) == 0) {
    g_message ("%s=%s: killing this process", CRASH_ENV, point);
    raise (SIGKILL);
  }
}

/* TALLY_ISSUER_CRASH_AT=POINT (a name of tally_issuer_commit_points ())
 * makes the process kill itself with SIGKILL there; read once, at start.
 * An unknown name is refused rather than never reached. */
static gboolean
crash_hook_install (TallyIssuer *issuer, GError **error)
{
  const char *point = g_getenv (CRASH_ENV);
  if (point == NULL || *point == '\0')
    return TRUE;
  const char *const *points = tally_issuer_commit_points ();
  for (gsize i = 0; points[i] != NULL; i++) {
    if (strcmp (points[i], point) == 0) {
      g_warning ("%s=%s: this process will kill itself there (a test hook)", CRASH_ENV, point);
      tally_issuer_set_commit_hook (issuer, crash_hook, (gpointer) points[i]);
      return TRUE;
    }
  }
  g_autofree char *all = g_strjoinv (", ", (char **) points);
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "%s=%s: no such point (one of %s)", CRASH_ENV, point, all);
  return FALSE;
}

static gboolean
quit_loop (gpointer user_data)
{
  g_info ("stopping");
  g_main_loop_quit (user_data);
  return G_SOURCE_CONTINUE;
}

/* @worker: the index of a worker process serving @socket (the parent's),
 * or -1 for the one process, which binds [http] listen itself. */
static TallyIssuerHttp *
start (Config *c,
       TallyIssuer *issuer,
       const char *port_file,
       int worker,
       GSocket *socket,
       GError **error)
{
  g_autoptr (GTlsCertificate) cert = NULL;
  if (c->tls_certificate != NULL &&
      (cert = g_tls_certificate_new_from_files (c->tls_certificate, c->tls_key, error)) == NULL)
    return NULL;
  g_autoptr (GSocketAddress) address = parse_listen (c->listen, error);
  if (address == NULL)
    return NULL;
  const char *currency = tally_issuer_get_currency (issuer);
  if (!config_amount (c->max_payment, "max_payment", currency, &c->limits.max_payment, error) ||
      !config_amount (c->balance_cap, "balance_cap", currency, &c->limits.balance_cap, error))
    return NULL;
  g_autoptr (TallyIssuerHttp) http = tally_issuer_http_new (issuer, cert);
  tally_issuer_http_set_max_body_bytes (http, c->max_body);
  tally_issuer_http_set_request_timeout (http, (guint) c->request_timeout);
  tally_issuer_http_set_max_connections (http, (guint) c->max_connections);
  tally_issuer_http_set_enrol_limits (http, &c->limits, c->validity);
  /* One refund at a time: with several workers, the first runs it. */
  if (worker <= 0)
    tally_issuer_http_set_refund_interval (http, (guint) c->refund_interval);
  if (worker >= 0) {
    g_autofree char *name = g_strdup_printf ("%d", (int) getpid ());
    tally_issuer_http_set_worker (http, name);
  }
  if (c->operator_token_file != NULL) {
    guint8 token[TALLY_ACCOUNT_TOKEN_BYTES];
    if (!read_operator_token (c->operator_token_file, token, error))
      return NULL;
    tally_issuer_http_set_operator_token (http, token);
    sodium_memzero (token, sizeof token);
  }
  if (socket != NULL ? !tally_issuer_http_listen_socket (http, socket, c->allow_plain, error)
                     : !tally_issuer_http_listen (http, address, c->allow_plain, error))
    return NULL;
  if (port_file != NULL && !write_port_file (port_file, tally_issuer_http_get_port (http), error))
    return NULL;
  return g_steal_pointer (&http);
}

/* One process serving: the only one (@worker -1), or worker @worker of
 * several, on the listening socket its parent passed it. */
static int
serve (Config *c, const char *port_file, int worker)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (TallyIssuer) issuer = NULL;
  g_autoptr (TallyIssuerHttp) http = NULL;
  if ((worker >= 0 && (socket = g_socket_new_from_fd (TALLY_ISSUERD_WORKER_FD, &error)) == NULL) ||
      (issuer = tally_issuer_open (c->issuer_dir, &error)) == NULL ||
      !crash_hook_install (issuer, &error) ||
      (http = start (c, issuer, port_file, worker, socket, &error)) == NULL) {
    fprintf (stderr, "tally-issuerd: %s\n", error->message);
    return EXIT_FAILED;
  }
  if (worker >= 0)
    g_message ("worker %d serving (pid %d)", worker, (int) getpid ());

  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  guint term = g_unix_signal_add (SIGTERM, quit_loop, loop);
  guint intr = g_unix_signal_add (SIGINT, quit_loop, loop);
  g_main_loop_run (loop);
  g_source_remove (term);
  g_source_remove (intr);
  return 0;
}

/* The listening socket the workers share, bound by the parent. */
static GSocket *
bind_shared (Config *c, GError **error)
{
  g_autoptr (GSocketAddress) address = parse_listen (c->listen, error);
  if (address == NULL)
    return NULL;
  GInetAddress *ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address));
  if (c->tls_certificate == NULL && !c->allow_plain && !g_inet_address_get_is_loopback (ip)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "plain HTTP is served only on a loopback address; configure "
                 "tls_certificate and tls_key, or allow_plain_http=true");
    return NULL;
  }
  g_autoptr (GSocket) socket = g_socket_new (g_inet_address_get_family (ip), G_SOCKET_TYPE_STREAM,
                                             G_SOCKET_PROTOCOL_TCP, error);
  if (socket == NULL)
    return NULL;
  g_socket_set_listen_backlog (socket, (gint) MIN (c->max_connections, 4096));
  g_autoptr (GError) local = NULL;
  if (!g_socket_bind (socket, address, TRUE, &local) || !g_socket_listen (socket, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "cannot listen: %s", local->message);
    return NULL;
  }
  return g_steal_pointer (&socket);
}

/* [http] workers > 1: several processes on one PostgreSQL store. */
static int
supervise (Config *c, const char *config_file, const char *port_file)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyIssuer) issuer = tally_issuer_open (c->issuer_dir, &error);
  if (issuer != NULL && tally_issuer_is_embedded (issuer))
    g_set_error (&error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[http] workers=%" G_GUINT64_FORMAT " needs a PostgreSQL store (tally-issuer init "
                 "--store postgresql:CONNINFO): the SQLite store lets one process write at a "
                 "time, so more workers would only queue on its lock; use workers=1",
                 c->workers);
  /* Each worker opens its own connection; the parent keeps none. */
  g_clear_pointer (&issuer, tally_issuer_free);
  g_autoptr (GSocket) socket = error == NULL ? bind_shared (c, &error) : NULL;
  g_autoptr (GSocketAddress) bound = socket ? g_socket_get_local_address (socket, &error) : NULL;
  g_autofree char *exe = bound ? g_file_read_link ("/proc/self/exe", &error) : NULL;
  if (exe != NULL && port_file != NULL &&
      !write_port_file (port_file, g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)),
                        &error))
    g_clear_pointer (&exe, g_free);
  if (exe == NULL) {
    fprintf (stderr, "tally-issuerd: %s\n", error->message);
    return EXIT_FAILED;
  }
  g_autofree char *where = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (bound));
  g_message ("listening on %s with %" G_GUINT64_FORMAT " workers", where, c->workers);
  return tally_issuerd_supervise (exe, config_file, socket, (guint) c->workers);
}

static const char description[] =
  "Configuration (a key file; relative paths are relative to it):\n"
  "  [issuer]\n"
  "  dir=PATH                  issuer directory made by \"tally-issuer init\"\n"
  "  refund_interval=SECONDS   how often lost registers past their window are\n"
  "                            refunded to their accounts (default 3600)\n"
  "  [http]\n"
  "  listen=IP:PORT            default " DEFAULT_LISTEN "; port 0 takes any free port\n"
  "  tls_certificate=PEM       serve HTTPS with this certificate chain...\n"
  "  tls_key=PEM               ...and this private key\n"
  "  allow_plain_http=false    plain HTTP on a non-loopback address\n"
  "  operator_token_file=PATH  64 hex digits, not readable by all users;\n"
  "                            enables the operator endpoints\n"
  "  max_body_bytes=N          largest request body (default 1048576)\n"
  "  request_timeout=SECONDS   longest request, and longest idle connection (default 30)\n"
  "  max_connections=N         connections open at once; more are closed (default 256)\n"
  "  workers=N                 worker processes serving the port (default 1);\n"
  "                            more than 1 needs a PostgreSQL store\n"
  "  [enrol]                   what an enrolled register is certified with\n"
  "  max_payment=AMT  balance_cap=AMT  max_payments=N  max_offline_hours=H  valid_days=D\n"
  "\n"
  "Endpoints: docs/issuer-api.md.  Stop with SIGTERM or SIGINT.\n"
  "Tests only: TALLY_ISSUER_CRASH_AT=POINT kills the process at that step of\n"
  "a reconciliation or voucher sale (docs/reliability.md).\n"
  "\n"
  "Example:\n"
  "  tally-issuer --dir /var/lib/tally-issuer init --name \"Town Bank\" --currency EUR\n"
  "  tally-issuerd --config /etc/tally/tally-issuerd.conf";

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  g_set_prgname ("tally-issuerd");

  g_autofree char *config_file = NULL;
  g_autofree char *port_file = NULL;
  gboolean version = FALSE;
  int worker_index = -1;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Read the configuration from FILE",
      "FILE" },
    { "port-file", 0, 0, G_OPTION_ARG_FILENAME, &port_file,
      "Write the bound port to FILE once listening", "FILE" },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    /* Given by the parent to its worker processes only. */
    { "worker-index", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &worker_index, NULL, NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- Tally online issuer (HTTP service)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, description);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc > 1) {
    fprintf (stderr, "tally-issuerd: %s\nTry \"tally-issuerd --help\".\n",
             error ? error->message : "unexpected argument");
    return EXIT_USAGE;
  }
  if (version) {
    printf ("tally-issuerd %s\n", TALLY_VERSION);
    return 0;
  }
  if (config_file == NULL) {
    fprintf (stderr, "tally-issuerd: --config FILE is required\nTry \"tally-issuerd --help\".\n");
    return EXIT_USAGE;
  }
  if (sodium_init () < 0) {
    fprintf (stderr, "tally-issuerd: libsodium cannot initialise\n");
    return EXIT_FAILED;
  }

  Config config = { 0 };
  int status;
  if (!config_load (&config, config_file, &error)) {
    fprintf (stderr, "tally-issuerd: %s\n", error->message);
    status = EXIT_FAILED;
  } else if (worker_index < 0 && config.workers > 1) {
    status = supervise (&config, config_file, port_file);
  } else {
    status = serve (&config, worker_index < 0 ? port_file : NULL, worker_index);
  }
  config_clear (&config);
  return status;
}
