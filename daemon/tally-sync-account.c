/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The account side of the online issuer (tally-sync.h): enrolling the
 * register with an account's token, and buying vouchers from it later.
 * The account and its token are kept in TALLY_SYNC_ACCOUNT_FILE (0600) in
 * the register's directory; every copy of the token we make is zeroed.
 */
#include "tally-sync-private.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "tally-clock.h"
#include "tally-hex.h"

#define TOKEN_HEX_CHARS (2 * 32)
/* The issuer takes amounts up to 2^53 (docs/issuer-api.md). */
#define MAX_JSON_AMOUNT ((gint64) 1 << 53)

typedef enum
{
  CALL_ENROL,
  CALL_TOPUP,
} CallKind;

typedef struct
{
  TallySync *sync; /* NULL once the object is gone */
  CallKind kind;
  GTask *task;
  GCancellable *cancellable;
  char *path;
  char *authorization; /* "Bearer <token>": a secret */
  GBytes *body;        /* the JSON request, the same for every attempt */
  char *account;       /* enrolment: kept with the token once certified */
  char *token;         /* enrolment: a secret */
  guint attempt;
  GSource *retry;
  SoupMessage *msg;   /* the request in flight */
  GSource *deadline;  /* request_timeout after the start */
  gboolean timed_out; /* the deadline cancelled it */
} AccountCall;

static void
secret_free (char *secret)
{
  if (secret == NULL)
    return;
  sodium_memzero (secret, strlen (secret));
  g_free (secret);
}

static void
call_free (AccountCall *c)
{
  if (c->retry != NULL) {
    g_source_destroy (c->retry);
    g_source_unref (c->retry);
  }
  if (c->deadline != NULL) {
    g_source_destroy (c->deadline);
    g_source_unref (c->deadline);
  }
  g_object_unref (c->cancellable);
  g_clear_object (&c->msg);
  g_free (c->path);
  secret_free (c->authorization);
  secret_free (c->token);
  g_free (c->account);
  g_bytes_unref (c->body);
  g_free (c);
}

/* Ends @c with @error (taken; NULL: success). */
static void
call_end (AccountCall *c, GError *error)
{
  GTask *task = g_steal_pointer (&c->task);
  if (c->sync != NULL)
    c->sync->calls = g_list_remove (c->sync->calls, c);
  call_free (c);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

void
sync_account_detach (TallySync *sync)
{
  GList *calls = g_steal_pointer (&sync->calls);
  for (GList *l = calls; l != NULL; l = l->next) {
    AccountCall *c = l->data;
    c->sync = NULL;
    g_cancellable_cancel (c->cancellable);
    /* Waiting for a retry, no request runs to end it: end it now. */
    if (c->retry != NULL)
      call_end (c, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "cancelled"));
  }
  g_list_free (calls);
}

/* --- the account file --- */

static char *
account_path (TallySync *sync)
{
  return g_build_filename (sync->state_dir, TALLY_SYNC_ACCOUNT_FILE, NULL);
}

static gboolean
token_check (const char *token, GError **error)
{
  guint8 raw[TOKEN_HEX_CHARS / 2];
  gboolean ok =
    strlen (token) == TOKEN_HEX_CHARS && tally_hex_decode (token, raw, sizeof raw, NULL);
  sodium_memzero (raw, sizeof raw);
  if (!ok)
    g_set_error_literal (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                         "an account token is 64 hex digits");
  return ok;
}

/* A purchase sent but not loaded yet: its request id and amount.  The
 * next top-up of that amount asks for it again under the same id. */
typedef struct
{
  char *request_id; /* NULL: none */
  gint64 amount;
} Pending;

/* fsync () of @dir: the rename into it is on disk. */
static gboolean
sync_dir (const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync (fd) != 0) {
    int saved = errno;
    if (fd >= 0)
      close (fd);
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "%s: %s", dir,
                 g_strerror (saved));
    return FALSE;
  }
  close (fd);
  return TRUE;
}

static gboolean
account_save (TallySync *sync,
              const char *account,
              const char *token,
              const Pending *pending,
              GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_key_file_set_string (kf, "account", "name", account);
  g_key_file_set_string (kf, "account", "token", token);
  if (pending != NULL && pending->request_id != NULL) {
    g_key_file_set_string (kf, "pending", "request_id", pending->request_id);
    g_key_file_set_int64 (kf, "pending", "amount", pending->amount);
  }
  gsize len = 0;
  char *data = g_key_file_to_data (kf, &len, NULL);
  g_autofree char *path = account_path (sync);
  g_autoptr (GError) local = NULL;
  /* Durable, the folder too: a pending purchase must outlive a power cut
   * between its save and its POST, or the next one pays again. */
  gboolean ok = g_file_set_contents_full (
                  path, data, (gssize) len,
                  G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600, &local) &&
                sync_dir (sync->state_dir, &local);
  secret_free (data);
  /* The key file keeps its own copy of the token. */
  g_key_file_set_string (kf, "account", "token", "");
  if (!ok)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot keep the account in %s: %s", path,
                 local->message);
  return ok;
}

/* The account and token of the enrolment; WRONG_STATE before one. */
static gboolean
account_load (TallySync *sync, char **account, char **token, Pending *pending, GError **error)
{
  g_autofree char *path = account_path (sync);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, &local)) {
    gboolean missing = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    g_set_error (error, TALLY_ERROR, missing ? TALLY_ERROR_WRONG_STATE : TALLY_ERROR_STORAGE,
                 missing ? "no account to top up from: enrol first (tallyctl enroll)" : "%s: %s",
                 path, local ? local->message : "");
    return FALSE;
  }
  g_autofree char *name = g_key_file_get_string (kf, "account", "name", NULL);
  char *secret = g_key_file_get_string (kf, "account", "token", NULL);
  g_key_file_set_string (kf, "account", "token", "");
  if (name == NULL || *name == '\0' || secret == NULL || !token_check (secret, NULL)) {
    secret_free (secret);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: no account name and token", path);
    return FALSE;
  }
  g_autofree char *id = g_key_file_get_string (kf, "pending", "request_id", NULL);
  gint64 amount = g_key_file_get_int64 (kf, "pending", "amount", NULL);
  guint8 raw[16];
  if (id != NULL &&
      (strlen (id) != 2 * sizeof raw || !tally_hex_decode (id, raw, sizeof raw, NULL) ||
       amount <= 0 || amount > MAX_JSON_AMOUNT)) {
    secret_free (secret);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: a broken [pending] purchase", path);
    return FALSE;
  }
  pending->request_id = g_steal_pointer (&id);
  pending->amount = amount;
  *account = g_steal_pointer (&name);
  *token = secret;
  return TRUE;
}

/* --- requests --- */

static void call_send (AccountCall *c);

static gboolean
on_call_retry (gpointer user_data)
{
  AccountCall *c = user_data;
  g_clear_pointer (&c->retry, g_source_unref);
  call_send (c);
  return G_SOURCE_REMOVE;
}

/* Whether the register loaded exactly @voucher before: a load entry of
 * its sequence. */
static gboolean
voucher_was_loaded (TallyRegister *reg, const guint8 *data, gsize len)
{
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, NULL);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__LoadVoucher) v = TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher,
                                                   env->body.data, env->body.len, "voucher", NULL);
  g_autoptr (GPtrArray) entries = v ? tally_register_get_history (reg, 0, NULL) : NULL;
  for (guint i = 0; entries != NULL && i < entries->len; i++) {
    const TallyHistoryEntry *e = entries->pdata[i];
    if (e->kind == TALLY_ENTRY_LOAD && e->sequence == v->sequence)
      return TRUE;
  }
  return FALSE;
}

/* The voucher loaded, or refused by the issuer: the purchase is no longer
 * pending.  Kept pending when it may still have been sold: a 5xx, a 408
 * or 429, any answer without the issuer's Tally error body. */
static void
topup_answered (AccountCall *c, guint status, GBytes *body, const guint8 *data, gsize len)
{
  TallySync *sync = c->sync;
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) save_error = NULL;

  if (status != SOUP_STATUS_CREATED && status != SOUP_STATUS_OK) {
    if (sync_refusal_is_tally (status, body) &&
        !account_save (sync, c->account, c->token, NULL, &save_error))
      g_warning ("%s", save_error->message);
    call_end (c, sync_refusal_error (sync, "the voucher", status, body));
    return;
  }
  if (!tally_register_load (sync->reg, data, len, tally_now (), &error) &&
      !(g_error_matches (error, TALLY_ERROR, TALLY_ERROR_VOUCHER_REPLAY) &&
        voucher_was_loaded (sync->reg, data, len))) {
    /* Not loadable now: kept pending, asked for again next time. */
    g_prefix_error (&error, "the issuer's voucher at %s: ", sync->url);
    call_end (c, g_steal_pointer (&error));
    return;
  }
  /* VOUCHER_REPLAY: loaded by a top-up that ended before it forgot it. */
  g_message ("voucher from %s %s, balance %" G_GINT64_FORMAT, sync->url,
             error != NULL ? "was loaded already" : "loaded",
             tally_register_get_balance (sync->reg));
  if (!account_save (sync, c->account, c->token, NULL, &save_error))
    g_warning ("%s", save_error->message);
  call_end (c, NULL);
}

/* The issuer's certificate or voucher, installed or loaded. */
static void
call_answered (AccountCall *c, guint status, GBytes *body)
{
  TallySync *sync = c->sync;
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  data = data != NULL ? data : (const guint8 *) "";

  switch (c->kind) {
  case CALL_ENROL:
    /* 200: the issuer had enrolled this key for this account already (an
     * answer lost before) and certified it anew. */
    if (status != SOUP_STATUS_CREATED && status != SOUP_STATUS_OK) {
      call_end (c, sync_refusal_error (sync, "the enrolment", status, body));
      return;
    }
    if (!tally_register_install_certificate (sync->reg, data, len, tally_now (), &error)) {
      g_prefix_error (&error, "the issuer's certificate at %s: ", sync->url);
      call_end (c, g_steal_pointer (&error));
      return;
    }
    g_message ("enrolled with account \"%s\" at %s", c->account, sync->url);
    if (!account_save (sync, c->account, c->token, NULL, &error))
      g_prefix_error (&error, "enrolled, but not kept for top-ups: ");
    call_end (c, g_steal_pointer (&error));
    return;
  case CALL_TOPUP: topup_answered (c, status, body, data, len); return;
  }
}

static const char *
call_what (AccountCall *c)
{
  switch (c->kind) {
  case CALL_ENROL: return "the enrolment";
  case CALL_TOPUP: return "the voucher";
  }
  return NULL;
}

/* The call took too long: its request is cancelled and ends it with
 * TIMEOUT; waiting for a retry, it ends now. */
static gboolean
on_call_deadline (gpointer user_data)
{
  AccountCall *c = user_data;
  g_clear_pointer (&c->deadline, g_source_unref);
  c->timed_out = TRUE;
  if (c->retry != NULL && c->sync != NULL) {
    call_end (c, sync_deadline_error (c->sync, call_what (c)));
    return G_SOURCE_REMOVE;
  }
  g_cancellable_cancel (c->cancellable);
  return G_SOURCE_REMOVE;
}

static void
on_call_answer (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AccountCall *c = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (SoupMessage) msg = g_steal_pointer (&c->msg);
  g_autoptr (GBytes) body = sync_fetch_finish (result, &error);

  if (c->sync == NULL) {
    call_end (c, g_error_new (TALLY_ERROR, TALLY_ERROR_CANCELLED, "cancelled"));
    return;
  }
  if (body == NULL && c->timed_out) {
    call_end (c, sync_deadline_error (c->sync, call_what (c)));
    return;
  }
  if (body == NULL && error->domain == TALLY_ERROR) {
    call_end (c, g_steal_pointer (&error));
    return;
  }
  if (body == NULL) {
    /* A purchase is kept under its request id: the same request again
     * gets the same voucher and pays nothing twice.  The same enrolment
     * again gets the same register a current certificate: sent twice at
     * most. */
    guint attempts = c->kind == CALL_TOPUP ? TALLY_SYNC_UPLOAD_ATTEMPTS : 2;
    if (c->attempt < attempts && !g_cancellable_is_cancelled (c->cancellable)) {
      g_info ("%s at %s: attempt %u failed (%s), asking again",
              c->kind == CALL_TOPUP ? "top-up" : "enrolment", c->sync->url, c->attempt,
              error->message);
      c->retry = g_timeout_source_new (250 * c->attempt);
      g_source_set_callback (c->retry, on_call_retry, c, NULL);
      g_source_set_static_name (c->retry, "[tally] account call retry");
      g_source_attach (c->retry, c->sync->context);
      return;
    }
    call_end (c, sync_transport_error (
                   c->sync, c->kind == CALL_ENROL ? "the enrolment" : "the voucher", error));
    return;
  }
  call_answered (c, soup_message_get_status (msg), body);
}

static void
call_send (AccountCall *c)
{
  g_autofree char *url = g_strconcat (c->sync->url, c->path, NULL);
  c->msg = soup_message_new ("POST", url);
  SoupMessageHeaders *headers = soup_message_get_request_headers (c->msg);
  soup_message_headers_replace (headers, "Authorization", c->authorization);
  soup_message_headers_replace (headers, "Accept", "application/x-protobuf");
  soup_message_set_request_body_from_bytes (c->msg, "application/json", c->body);
  c->attempt++;
  g_debug ("account: POST %s (attempt %u)", url, c->attempt);
  sync_fetch_async (c->sync, c->msg, c->kind == CALL_ENROL ? "the enrolment" : "the voucher",
                    c->cancellable, on_call_answer, c);
}

static AccountCall *
call_new (TallySync *sync, CallKind kind, GAsyncReadyCallback callback, gpointer user_data)
{
  AccountCall *c = g_new0 (AccountCall, 1);
  c->sync = sync;
  c->kind = kind;
  c->task = g_task_new (NULL, NULL, callback, user_data);
  c->cancellable = g_cancellable_new ();
  c->deadline = sync_deadline_source (sync, on_call_deadline, c);
  sync->calls = g_list_prepend (sync->calls, c);
  return c;
}

/* --- enrolment and top-up --- */

void
tally_sync_enroll_async (TallySync *sync,
                         const char *account,
                         const char *token,
                         GAsyncReadyCallback callback,
                         gpointer user_data)
{
  g_return_if_fail (sync != NULL && account != NULL && token != NULL);

  AccountCall *c = call_new (sync, CALL_ENROL, callback, user_data);
  g_task_set_source_tag (c->task, tally_sync_enroll_async);
  g_autoptr (GError) error = NULL;
  guint8 proof[TALLY_SIGNATURE_BYTES];
  if (!token_check (token, &error) ||
      !tally_register_sign_enrolment (sync->reg, account, proof, &error)) {
    call_end (c, g_steal_pointer (&error));
    return;
  }
  g_autofree char *key =
    tally_hex_encode (tally_register_get_public_key (sync->reg), TALLY_PUBLIC_KEY_BYTES);
  g_autofree char *proof_hex = tally_hex_encode (proof, sizeof proof);
  g_autofree char *escaped = g_uri_escape_string (account, NULL, FALSE);
  c->path = g_strdup_printf ("/v1/accounts/%s/registers", escaped);
  c->account = g_strdup (account);
  c->token = g_strdup (token);
  c->authorization = g_strconcat ("Bearer ", token, NULL);
  char *json = g_strdup_printf ("{\"public_key\": \"%s\", \"proof\": \"%s\"}", key, proof_hex);
  c->body = g_bytes_new_take (json, strlen (json));
  call_send (c);
}

gboolean
tally_sync_enroll_finish (TallySync *sync, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
tally_sync_topup_async (TallySync *sync,
                        gint64 amount,
                        GAsyncReadyCallback callback,
                        gpointer user_data)
{
  g_return_if_fail (sync != NULL);

  AccountCall *c = call_new (sync, CALL_TOPUP, callback, user_data);
  g_task_set_source_tag (c->task, tally_sync_topup_async);
  g_autoptr (GError) error = NULL;
  if (amount <= 0 || amount > MAX_JSON_AMOUNT) {
    call_end (c, g_error_new (TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                              "amount %" G_GINT64_FORMAT " is out of range", amount));
    return;
  }
  g_autofree char *account = NULL;
  char *token = NULL;
  Pending pending = { 0 };
  if (tally_register_get_certificate_info (sync->reg) == NULL) {
    call_end (c, g_error_new (TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE,
                              "the register has no certificate: enrol first (tallyctl enroll)"));
    return;
  }
  if (!account_load (sync, &account, &token, &pending, &error)) {
    call_end (c, g_steal_pointer (&error));
    return;
  }
  g_autofree char *id_hex = g_steal_pointer (&pending.request_id);
  c->account = g_strdup (account);
  c->token = token;
  if (id_hex != NULL && pending.amount != amount) {
    g_autofree char *text =
      tally_amount_format (pending.amount, tally_register_get_currency (sync->reg));
    call_end (c, g_error_new (TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                              "an earlier top-up of %s got no answer: top up %s again to "
                              "complete it (the account pays once)",
                              g_strstrip (text), text));
    return;
  }
  if (id_hex == NULL) {
    /* Kept before it is sent: if tallyd stops before the voucher is
     * loaded, the next top-up asks for the same one. */
    guint8 request_id[16];
    randombytes_buf (request_id, sizeof request_id);
    id_hex = tally_hex_encode (request_id, sizeof request_id);
    Pending next = { .request_id = id_hex, .amount = amount };
    if (!account_save (sync, account, token, &next, &error)) {
      call_end (c, g_steal_pointer (&error));
      return;
    }
  }
  g_autofree char *register_id = tally_register_get_id_hex (sync->reg);
  g_autofree char *escaped = g_uri_escape_string (account, NULL, FALSE);
  c->path = g_strdup_printf ("/v1/accounts/%s/registers/%s/vouchers", escaped, register_id);
  c->authorization = g_strconcat ("Bearer ", token, NULL);
  char *json =
    g_strdup_printf ("{\"amount\": %" G_GINT64_FORMAT ", \"request_id\": \"%s\"}", amount, id_hex);
  c->body = g_bytes_new_take (json, strlen (json));
  g_info ("buying a voucher of %" G_GINT64_FORMAT " from account \"%s\", request %s", amount,
          account, id_hex);
  call_send (c);
}

gboolean
tally_sync_topup_finish (TallySync *sync, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
