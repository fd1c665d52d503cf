/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Register protocol logic: what is checked, in which order, what gets
 * signed and what one operation changes.  Storage and the key sit behind
 * TallyRegisterBackend.
 *
 * Every operation that changes state works on a copy of the cached state,
 * writes it inside one backend transaction and adopts the copy only after
 * COMMIT succeeded, so a failure leaves object and disk alike.
 */
#include "tally-register.h"

#include <string.h>

#include "tally-hex.h"
#include "tally-peer.h"
#include "tally-register-backend.h"
#include "tally-register-private.h"

#define MEMO_MAX_BYTES 256

struct _TallyRegister
{
  const TallyRegisterBackend *backend;
  gpointer store;
  TallyRegisterState state;
  guint8 id[TALLY_ID_BYTES];
  /* Decoded views of state.certificate and state.revocation_list. */
  Tally__SignedEnvelope *cert_env;
  Tally__RegisterCertificate *cert;
  Tally__RevocationList *revocation;
  TallyCommitHook hook;
  gpointer hook_data;
  guint64 request_lifetime;
};

typedef enum
{
  OP_LOAD,
  OP_REQUEST,
  OP_SPEND,
  OP_ACKNOWLEDGE,
  OP_RECEIVE,
  OP_REVOCATION,
  OP_CERTIFICATE,
  OP_APPLY,
  OP_DEFUND,
  OP_EXPORT,
} RegisterOp;

/* Two points per RegisterOp, in enum order. */
static const char *const commit_points[] = {
  "load:before-commit",        "load:after-commit",
  "request:before-commit",     "request:after-commit",
  "spend:before-commit",       "spend:after-commit",
  "acknowledge:before-commit", "acknowledge:after-commit",
  "receive:before-commit",     "receive:after-commit",
  "revocation:before-commit",  "revocation:after-commit",
  "certificate:before-commit", "certificate:after-commit",
  "apply:before-commit",       "apply:after-commit",
  "defund:before-commit",      "defund:after-commit",
  "export:before-commit",      "export:after-commit",
  NULL,
};

G_STATIC_ASSERT (G_N_ELEMENTS (commit_points) == 2 * (OP_EXPORT + 1) + 1);

const char *const *
tally_register_commit_points (void)
{
  return commit_points;
}

const char *
tally_entry_kind_to_string (TallyEntryKind kind)
{
  switch (kind) {
  case TALLY_ENTRY_LOAD: return "load";
  case TALLY_ENTRY_SPENT: return "spent";
  case TALLY_ENTRY_RECEIVED: return "received";
  case TALLY_ENTRY_DEFUND: return "defund";
  }
  return "unknown";
}

const char *
tally_entry_state_to_string (TallyEntryState state)
{
  switch (state) {
  case TALLY_ENTRY_STATE_PENDING: return "pending";
  case TALLY_ENTRY_STATE_ACKNOWLEDGED: return "acknowledged";
  case TALLY_ENTRY_STATE_SETTLED: return "settled";
  case TALLY_ENTRY_STATE_RECLAIMED: return "reclaimed";
  }
  return "unknown";
}

void
tally_history_entry_free (TallyHistoryEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->peer);
  g_free (entry->memo);
  g_free (entry);
}

/* --- rows and state (shared with the backends) --- */

void
tally_register_state_init (TallyRegisterState *state,
                           const guint8 public_key[TALLY_PUBLIC_KEY_BYTES],
                           const guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES])
{
  guint8 id[TALLY_ID_BYTES];

  memset (state, 0, sizeof *state);
  memcpy (state->public_key, public_key, TALLY_PUBLIC_KEY_BYTES);
  memcpy (state->issuer_key, issuer_key, TALLY_PUBLIC_KEY_BYTES);
  tally_register_id_from_key (public_key, id);
  tally_chain_genesis (id, state->chain_head);
}

void
tally_register_state_copy (TallyRegisterState *dst, const TallyRegisterState *src)
{
  *dst = *src;
  if (dst->certificate != NULL)
    g_bytes_ref (dst->certificate);
  if (dst->revocation_list != NULL)
    g_bytes_ref (dst->revocation_list);
}

void
tally_register_state_clear (TallyRegisterState *state)
{
  g_clear_pointer (&state->certificate, g_bytes_unref);
  g_clear_pointer (&state->revocation_list, g_bytes_unref);
  memset (state, 0, sizeof *state);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyRegisterState, tally_register_state_clear)

void
tally_spent_row_clear (TallySpentRow *row)
{
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
}

void
tally_spent_row_free (TallySpentRow *row)
{
  if (row == NULL)
    return;
  tally_spent_row_clear (row);
  g_free (row);
}

void
tally_received_row_free (TallyReceivedRow *row)
{
  if (row == NULL)
    return;
  g_clear_pointer (&row->permission, g_bytes_unref);
  g_clear_pointer (&row->payer_certificate, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
  g_free (row->memo);
  g_free (row);
}

void
tally_nonce_row_clear (TallyNonceRow *row)
{
  g_clear_pointer (&row->currency, g_free);
  g_clear_pointer (&row->memo, g_free);
}

void
tally_nonce_row_free (TallyNonceRow *row)
{
  if (row == NULL)
    return;
  tally_nonce_row_clear (row);
  g_free (row);
}

void
tally_load_row_free (TallyLoadRow *row)
{
  if (row == NULL)
    return;
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_free (row);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallySpentRow, tally_spent_row_clear)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TallyNonceRow, tally_nonce_row_clear)

/* --- helpers --- */

static gboolean
id_equals (const ProtobufCBinaryData *field, const guint8 id[TALLY_ID_BYTES])
{
  return field->len == TALLY_ID_BYTES && field->data != NULL &&
         memcmp (field->data, id, TALLY_ID_BYTES) == 0;
}

static char *
id_hex (const ProtobufCBinaryData *field)
{
  return tally_hex_encode (field->data, field->len);
}

static Tally__SignedEnvelope *
envelope_from_bytes (GBytes *bytes)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  return tally_envelope_decode (data, len, NULL);
}

static Tally__SignedEnvelope *
stored_envelope (GBytes *bytes, const char *what, GError **error)
{
  Tally__SignedEnvelope *env = envelope_from_bytes (bytes);
  if (env == NULL)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "stored %s is not an envelope", what);
  return env;
}

static gboolean
need_certificate (TallyRegister *reg, GError **error)
{
  if (reg->cert == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE,
                 "the register has no certificate yet");
    return FALSE;
  }
  return TRUE;
}

static gboolean
need_open (TallyRegister *reg, GError **error)
{
  if (reg->state.closed) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "the register is closed after its defund");
    return FALSE;
  }
  return TRUE;
}

/* Packs @msg, signs it under @ctx with the register key and, when
 * @entry_hash is given, names the entry for the hash chain. */
static GBytes *
sign_message (TallyRegister *reg,
              Tally__SignatureContext ctx,
              const ProtobufCMessage *msg,
              guint8 entry_hash[TALLY_HASH_BYTES])
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);

  if (entry_hash != NULL) {
    Tally__SignedEnvelope env = TALLY__SIGNED_ENVELOPE__INIT;
    env.context = ctx;
    env.body.data = (guint8 *) data;
    env.body.len = len;
    tally_envelope_body_hash (&env, entry_hash);
  }
  return reg->backend->sign_envelope (reg->store, ctx, data, len);
}

static void
call_hook (TallyRegister *reg, RegisterOp op, gboolean after)
{
  const char *point = commit_points[2 * op + (after ? 1 : 0)];
  g_debug ("register commit point %s", point);
  if (reg->hook != NULL)
    reg->hook (point, reg->hook_data);
}

static gboolean
begin (TallyRegister *reg, GError **error)
{
  return reg->backend->begin (reg->store, TRUE, error);
}

static gboolean
abort_transaction (TallyRegister *reg)
{
  reg->backend->rollback (reg->store);
  return FALSE;
}

/* The durable end of an operation: everything is written, COMMIT makes it
 * final.  Rolls back on failure. */
static gboolean
commit (TallyRegister *reg, RegisterOp op, GError **error)
{
  call_hook (reg, op, FALSE);
  if (!reg->backend->commit (reg->store, error))
    return abort_transaction (reg);
  return TRUE;
}

/* Makes @next the cached state after COMMIT; takes the non-NULL decoded
 * objects that replace the cached ones. */
static void
adopt (TallyRegister *reg,
       RegisterOp op,
       TallyRegisterState *next,
       Tally__SignedEnvelope *cert_env,
       Tally__RegisterCertificate *cert,
       Tally__RevocationList *revocation)
{
  if (next != NULL) {
    if (next->closed && !reg->state.closed)
      g_info ("register closed");
    if (next->revoked && !reg->state.revoked)
      g_info ("register revoked by the issuer");
    tally_register_state_clear (&reg->state);
    reg->state = *next;
    memset (next, 0, sizeof *next);
  }
  if (cert_env != NULL) {
    g_clear_pointer (&reg->cert_env, tally__signed_envelope_free);
    g_clear_pointer (&reg->cert, tally__register_certificate_free);
    reg->cert_env = cert_env;
    reg->cert = cert;
  }
  if (revocation != NULL) {
    g_clear_pointer (&reg->revocation, tally__revocation_list_free);
    reg->revocation = revocation;
  }
  call_hook (reg, op, TRUE);
}

/* Loads the decoded views of the stored certificate and revocation list,
 * checking them again under the issuer key. */
static gboolean
load_cached_objects (TallyRegister *reg, GError **error)
{
  g_autoptr (GError) local = NULL;

  if (reg->state.certificate != NULL) {
    g_autoptr (Tally__SignedEnvelope) env = stored_envelope (reg->state.certificate,
                                                             "certificate", error);
    if (env == NULL)
      return FALSE;
    g_autoptr (Tally__RegisterCertificate) cert =
      tally_certificate_verify_any_time (env, reg->state.issuer_key, &local);
    if (cert == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "stored certificate: %s",
                   local->message);
      return FALSE;
    }
    reg->cert_env = g_steal_pointer (&env);
    reg->cert = g_steal_pointer (&cert);
  }
  if (reg->state.revocation_list != NULL) {
    g_autoptr (Tally__SignedEnvelope) env = stored_envelope (reg->state.revocation_list,
                                                             "revocation list", error);
    if (env == NULL)
      return FALSE;
    reg->revocation = tally_revocation_list_verify (env, reg->state.issuer_key, &local);
    if (reg->revocation == NULL) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "stored revocation list: %s",
                   local->message);
      return FALSE;
    }
  }
  return TRUE;
}

/* --- lifetime --- */

static TallyRegister *
register_new (const TallyRegisterBackend *backend, gpointer store, GError **error)
{
  g_autoptr (TallyRegister) reg = g_new0 (TallyRegister, 1);
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];

  reg->backend = backend;
  reg->store = store;
  reg->request_lifetime = TALLY_REQUEST_LIFETIME_DEFAULT;
  if (!backend->load_key (store, public_key, error) ||
      !backend->state_read (store, &reg->state, error))
    return NULL;
  if (memcmp (public_key, reg->state.public_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                 "the key file belongs to another register");
    return NULL;
  }
  tally_register_id_from_key (public_key, reg->id);
  if (!load_cached_objects (reg, error))
    return NULL;
  return g_steal_pointer (&reg);
}

TallyRegister *
tally_register_create (const char *dir,
                       const guint8 issuer_key[TALLY_PUBLIC_KEY_BYTES],
                       GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (issuer_key != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  const TallyRegisterBackend *backend = &tally_register_soft_backend;
  gpointer store = backend->create (dir, issuer_key, error);
  if (store == NULL)
    return NULL;
  return register_new (backend, store, error);
}

TallyRegister *
tally_register_open (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  const TallyRegisterBackend *backend = &tally_register_soft_backend;
  gpointer store = backend->open (dir, error);
  if (store == NULL)
    return NULL;
  return register_new (backend, store, error);
}

void
tally_register_free (TallyRegister *reg)
{
  if (reg == NULL)
    return;
  if (reg->store != NULL)
    reg->backend->close (reg->store);
  tally_register_state_clear (&reg->state);
  g_clear_pointer (&reg->cert_env, tally__signed_envelope_free);
  g_clear_pointer (&reg->cert, tally__register_certificate_free);
  g_clear_pointer (&reg->revocation, tally__revocation_list_free);
  g_free (reg);
}

void
tally_register_set_commit_hook (TallyRegister *reg, TallyCommitHook hook, gpointer user_data)
{
  g_return_if_fail (reg != NULL);
  reg->hook = hook;
  reg->hook_data = user_data;
}

/* --- identity and state --- */

const guint8 *
tally_register_get_public_key (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->state.public_key;
}

const guint8 *
tally_register_get_id (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->id;
}

const guint8 *
tally_register_get_issuer_key (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->state.issuer_key;
}

char *
tally_register_get_id_hex (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return tally_hex_encode (reg->id, TALLY_ID_BYTES);
}

const guint8 *
tally_register_get_chain_head (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->state.chain_head;
}

GPtrArray *
tally_register_list_nonces (TallyRegister *reg, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->backend->nonce_list (reg->store, error);
}

GBytes *
tally_register_get_certificate (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->state.certificate ? g_bytes_ref (reg->state.certificate) : NULL;
}

const Tally__RegisterCertificate *
tally_register_get_certificate_info (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->cert;
}

gint64
tally_register_get_balance (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.balance;
}

const char *
tally_register_get_currency (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->cert ? reg->cert->currency : NULL;
}

guint64
tally_register_get_counter (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.counter;
}

guint32
tally_register_get_offline_payments (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.offline_payments;
}

guint64
tally_register_get_last_reconciliation (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.last_reconciliation;
}

gboolean
tally_register_is_closed (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  return reg->state.closed;
}

guint64
tally_register_get_revocation_serial (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.revocation_serial;
}

guint64
tally_register_get_revocation_issued_at (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);
  return reg->state.revocation_issued_at;
}

GBytes *
tally_register_get_revocation_list (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, NULL);
  return reg->state.revocation_list ? g_bytes_ref (reg->state.revocation_list) : NULL;
}

/* --- certificate --- */

gboolean
tally_register_install_certificate (TallyRegister *reg,
                                   const guint8 *cert,
                                   gsize len,
                                   guint64 now,
                                   GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (cert != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (cert, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__RegisterCertificate) c =
    tally_certificate_verify (env, reg->state.issuer_key, now, error);
  if (c == NULL)
    return FALSE;
  if (memcmp (c->register_public_key.data, reg->state.public_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the certificate is for another register's key");
    return FALSE;
  }
  if (reg->cert != NULL && c->serial <= reg->cert->serial) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "certificate serial %" G_GUINT64_FORMAT " is not newer than %" G_GUINT64_FORMAT,
                 c->serial, reg->cert->serial);
    return FALSE;
  }
  if (reg->cert != NULL && strcmp (c->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "the register holds %s, the certificate is for %s", reg->cert->currency,
                 c->currency);
    return FALSE;
  }

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  g_clear_pointer (&next.certificate, g_bytes_unref);
  next.certificate = tally_envelope_pack (env);
  /* The offline time limit runs from the first certification. */
  if (reg->cert == NULL)
    next.last_reconciliation = now;

  if (!begin (reg, error))
    return FALSE;
  if (!reg->backend->state_write (reg->store, &next, error))
    return abort_transaction (reg);
  if (!commit (reg, OP_CERTIFICATE, error))
    return FALSE;
  g_info ("installed certificate serial %" G_GUINT64_FORMAT, c->serial);
  adopt (reg, OP_CERTIFICATE, &next, g_steal_pointer (&env), g_steal_pointer (&c), NULL);
  return TRUE;
}

/* --- revocation list --- */

/* Puts @list (verified) into @next when it is newer. Returns whether. */
static gboolean
take_revocation_list (TallyRegister *reg,
                      TallyRegisterState *next,
                      const Tally__SignedEnvelope *env,
                      const Tally__RevocationList *list)
{
  if (list->serial <= next->revocation_serial)
    return FALSE;
  g_clear_pointer (&next->revocation_list, g_bytes_unref);
  next->revocation_list = tally_envelope_pack (env);
  next->revocation_serial = list->serial;
  next->revocation_issued_at = list->issued_at;
  if (tally_revocation_list_contains (list, reg->id))
    next->revoked = TRUE;
  return TRUE;
}

gboolean
tally_register_update_revocation_list (TallyRegister *reg,
                                       const Tally__SignedEnvelope *list,
                                       GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (list != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__RevocationList) rl =
    tally_revocation_list_verify (list, reg->state.issuer_key, error);
  if (rl == NULL)
    return FALSE;

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  if (!take_revocation_list (reg, &next, list, rl)) {
    g_debug ("revocation list serial %" G_GUINT64_FORMAT " is not newer than %" G_GUINT64_FORMAT,
             rl->serial, reg->state.revocation_serial);
    return TRUE;
  }

  if (!begin (reg, error))
    return FALSE;
  if (!reg->backend->state_write (reg->store, &next, error))
    return abort_transaction (reg);
  if (!commit (reg, OP_REVOCATION, error))
    return FALSE;
  g_debug ("revocation list serial %" G_GUINT64_FORMAT " stored", rl->serial);
  adopt (reg, OP_REVOCATION, &next, NULL, NULL, g_steal_pointer (&rl));
  return TRUE;
}

/* --- load --- */

gboolean
tally_register_load (TallyRegister *reg,
                     const guint8 *voucher,
                     gsize len,
                     guint64 now,
                     GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (voucher != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (voucher, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, reg->state.issuer_key, error);
  if (v == NULL || !need_certificate (reg, error) || !need_open (reg, error))
    return FALSE;
  if (!id_equals (&v->register_id, reg->id)) {
    g_autofree char *other = id_hex (&v->register_id);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the voucher is for register %s", other);
    return FALSE;
  }
  if (strcmp (v->amount->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "the voucher is in %s, the register holds %s", v->amount->currency,
                 reg->cert->currency);
    return FALSE;
  }
  if (v->sequence <= reg->state.last_voucher_sequence) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_VOUCHER_REPLAY,
                 "voucher sequence %" G_GUINT64_FORMAT " is not after %" G_GUINT64_FORMAT,
                 v->sequence, reg->state.last_voucher_sequence);
    return FALSE;
  }
  gint64 balance;
  if (!tally_amount_add (reg->state.balance, v->amount->value, &balance, error))
    return FALSE;
  if (balance > reg->cert->limits->balance_cap) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_BALANCE,
                 "the balance would be %" G_GINT64_FORMAT ", above the cap of %" G_GINT64_FORMAT,
                 balance, reg->cert->limits->balance_cap);
    return FALSE;
  }

  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  TallyLoadRow row = {
    .sequence = v->sequence,
    .envelope = packed,
    .amount = v->amount->value,
    .applied_at = now,
    .state = TALLY_ENTRY_STATE_ACKNOWLEDGED,
  };
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.balance = balance;
  next.last_voucher_sequence = v->sequence;

  if (!begin (reg, error))
    return FALSE;
  if (!reg->backend->load_insert (reg->store, &row, error) ||
      !reg->backend->state_write (reg->store, &next, error))
    return abort_transaction (reg);
  if (!commit (reg, OP_LOAD, error))
    return FALSE;
  g_debug ("loaded voucher %" G_GUINT64_FORMAT ": %" G_GINT64_FORMAT, v->sequence,
           v->amount->value);
  adopt (reg, OP_LOAD, &next, NULL, NULL, NULL);
  return TRUE;
}

/* --- payee: request --- */

void
tally_register_set_request_lifetime (TallyRegister *reg, guint64 seconds)
{
  g_return_if_fail (reg != NULL);
  g_return_if_fail (seconds > 0 && seconds <= TALLY_REQUEST_LIFETIME_MAX);

  reg->request_lifetime = seconds;
}

guint64
tally_register_get_horizon (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, 0);

  return reg->state.horizon;
}

Tally__PaymentRequest *
tally_register_new_request (TallyRegister *reg,
                            gint64 amount,
                            const char *memo,
                            guint64 now,
                            GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!need_certificate (reg, error) || !need_open (reg, error))
    return NULL;
  if (amount <= 0 || amount > TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount %" G_GINT64_FORMAT " is not between 1 and %" G_GINT64_FORMAT, amount,
                 TALLY_AMOUNT_MAX);
    return NULL;
  }
  if (memo == NULL)
    memo = "";
  if (strlen (memo) > MEMO_MAX_BYTES || !g_utf8_validate (memo, -1, NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "the memo must be UTF-8 of at most %d bytes", MEMO_MAX_BYTES);
    return NULL;
  }

  guint64 expires_at;
  if (!g_uint64_checked_add (&expires_at, now, reg->request_lifetime)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "request expiry out of range");
    return NULL;
  }
  g_auto (TallyNonceRow) row = {
    .amount = amount,
    .currency = g_strdup (reg->cert->currency),
    .memo = g_strdup (memo),
    .created_at = now,
    .expires_at = expires_at,
  };
  randombytes_buf (row.nonce, sizeof row.nonce);

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = amount;
  Tally__PaymentRequest req = TALLY__PAYMENT_REQUEST__INIT;
  req.payee_register_id.data = reg->id;
  req.payee_register_id.len = TALLY_ID_BYTES;
  req.amount = &a;
  req.nonce.data = row.nonce;
  req.nonce.len = sizeof row.nonce;
  req.memo = (char *) memo;
  req.created_at = now;
  req.expires_at = expires_at;
  /* A copy through the wire format owns all its fields. */
  g_autoptr (GBytes) packed = tally_message_pack (&req.base);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  g_autoptr (Tally__PaymentRequest) out =
    TALLY_UNPACK (Tally__PaymentRequest, tally__payment_request, data, len, "request", error);
  if (out == NULL)
    return NULL;

  if (!begin (reg, error))
    return NULL;
  if (!reg->backend->nonce_insert (reg->store, &row, error)) {
    abort_transaction (reg);
    return NULL;
  }
  if (!commit (reg, OP_REQUEST, error))
    return NULL;
  g_debug ("payment request for %" G_GINT64_FORMAT " stored", amount);
  adopt (reg, OP_REQUEST, NULL, NULL, NULL, NULL);
  return g_steal_pointer (&out);
}

/* --- payer: spend --- */

GBytes *
tally_register_spend (TallyRegister *reg,
                      const Tally__SignedEnvelope *payee_certificate,
                      const Tally__PaymentRequest *request,
                      guint64 now,
                      GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (request != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!need_open (reg, error))
    return NULL;
  if (reg->state.revoked) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "this register is revoked");
    return NULL;
  }
  if (!need_certificate (reg, error))
    return NULL;
  if (now > reg->cert->not_after) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_EXPIRED,
                 "our certificate expired at %" G_GUINT64_FORMAT, reg->cert->not_after);
    return NULL;
  }
  if (now < reg->cert->not_before) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_NOT_YET_VALID,
                 "our certificate is valid from %" G_GUINT64_FORMAT, reg->cert->not_before);
    return NULL;
  }
  g_autoptr (Tally__RegisterCertificate) payee =
    tally_register_check_peer (reg, payee_certificate, NULL, now, error);
  if (payee == NULL)
    return NULL;
  if (!id_equals (&request->payee_register_id, payee->register_id.data)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the request names another register than the payee certificate");
    return NULL;
  }
  if (!tally_check_bytes (&request->nonce, TALLY_NONCE_BYTES, "request nonce", error) ||
      !tally_amount_check (request->amount, reg->cert->currency, error))
    return NULL;
  /* The permission lives as long as the request: until then the payee may
   * still credit it, so the value stays in flight at most that long before
   * the issuer can give it back (protocol 4.4). */
  if (request->expires_at == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "the request has no expiry");
    return NULL;
  }
  if (request->expires_at <= now) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the request expired at %" G_GUINT64_FORMAT, request->expires_at);
    return NULL;
  }
  if (request->expires_at - now > TALLY_REQUEST_LIFETIME_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "the request stays open for %" G_GUINT64_FORMAT " s, more than %d s",
                 request->expires_at - now, TALLY_REQUEST_LIFETIME_MAX);
    return NULL;
  }

  const Tally__Limits *limits = reg->cert->limits;
  gint64 amount = request->amount->value;
  if (amount > limits->max_payment) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT,
                 "%" G_GINT64_FORMAT " is above the certified limit of %" G_GINT64_FORMAT
                 " per payment",
                 amount, limits->max_payment);
    return NULL;
  }
  if ((guint64) reg->state.offline_payments + 1 > limits->max_offline_payments) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_COUNT,
                 "%u payments since the last reconciliation, the limit is %u",
                 reg->state.offline_payments, limits->max_offline_payments);
    return NULL;
  }
  if (now > reg->state.last_reconciliation &&
      now - reg->state.last_reconciliation > limits->max_offline_seconds) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_TIME,
                 "last reconciliation at %" G_GUINT64_FORMAT " is more than %" G_GUINT64_FORMAT
                 " s ago",
                 reg->state.last_reconciliation, limits->max_offline_seconds);
    return NULL;
  }
  if (reg->state.balance < amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS,
                 "balance %" G_GINT64_FORMAT " is below %" G_GINT64_FORMAT, reg->state.balance,
                 amount);
    return NULL;
  }
  gint64 balance;
  if (!tally_amount_add (reg->state.balance, -amount, &balance, error))
    return NULL;

  /* The deposit permission: the next counter, bound to the chain head. */
  const char *memo = request->memo ? request->memo : "";
  guint8 memo_hash[TALLY_HASH_BYTES];
  tally_hash ("memo", memo, strlen (memo), memo_hash);
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = amount;
  Tally__DepositPermission p = TALLY__DEPOSIT_PERMISSION__INIT;
  p.payer_register_id.data = reg->id;
  p.payer_register_id.len = TALLY_ID_BYTES;
  p.payee_register_id = payee->register_id;
  p.payee_nonce = request->nonce;
  p.amount = &a;
  p.counter = reg->state.counter + 1;
  p.chain_prev.data = reg->state.chain_head;
  p.chain_prev.len = TALLY_HASH_BYTES;
  p.created_at = now;
  p.memo_hash.data = memo_hash;
  p.memo_hash.len = sizeof memo_hash;
  p.expires_at = request->expires_at;
  guint8 entry_hash[TALLY_HASH_BYTES];
  g_autoptr (GBytes) env =
    sign_message (reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION, &p.base,
                  entry_hash);

  TallySpentRow row = {
    .counter = p.counter,
    .kind = TALLY_ENTRY_SPENT,
    .envelope = env,
    .has_payee = TRUE,
    .amount = amount,
    .created_at = now,
    .state = TALLY_ENTRY_STATE_PENDING,
    .expires_at = p.expires_at,
    .has_certificate_hash = TRUE,
  };
  tally_envelope_body_hash (reg->cert_env, row.certificate_hash);
  memcpy (row.payee_id, payee->register_id.data, TALLY_ID_BYTES);
  memcpy (row.payee_key, payee->register_public_key.data, TALLY_PUBLIC_KEY_BYTES);

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.balance = balance;
  next.counter = p.counter;
  tally_chain_next (reg->state.chain_head, entry_hash, next.chain_head);
  next.offline_payments++;

  if (!begin (reg, error))
    return NULL;
  if (!reg->backend->spent_insert (reg->store, &row, error) ||
      !reg->backend->state_write (reg->store, &next, error)) {
    abort_transaction (reg);
    return NULL;
  }
  if (!commit (reg, OP_SPEND, error))
    return NULL;
  g_debug ("spent %" G_GINT64_FORMAT " at counter %" G_GUINT64_FORMAT, amount, p.counter);
  adopt (reg, OP_SPEND, &next, NULL, NULL, NULL);
  return g_steal_pointer (&env);
}

/* --- payer: acknowledge --- */

/* Inside the transaction: the checks against the stored permission. */
static gboolean
acknowledge_locked (TallyRegister *reg,
                    const Tally__SignedEnvelope *receipt,
                    const Tally__Receipt *r,
                    gboolean *changed,
                    GError **error)
{
  g_auto (TallySpentRow) row = { 0 };
  gboolean found = FALSE;

  if (!reg->backend->spent_lookup (reg->store, r->payer_counter, &row, &found, error))
    return FALSE;
  if (!found || row.kind != TALLY_ENTRY_SPENT) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "no permission with counter %" G_GUINT64_FORMAT, r->payer_counter);
    return FALSE;
  }
  if (!id_equals (&r->payer_register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the receipt is for another payer");
    return FALSE;
  }
  if (!tally_envelope_verify (receipt, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT,
                              row.payee_key, error))
    return FALSE;
  if (!id_equals (&r->payee_register_id, row.payee_id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the receipt names another payee than permission %" G_GUINT64_FORMAT,
                 r->payer_counter);
    return FALSE;
  }

  g_autoptr (Tally__SignedEnvelope) permission = stored_envelope (row.envelope, "permission",
                                                                  error);
  if (permission == NULL)
    return FALSE;
  guint8 hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (permission, hash);
  if (r->permission_hash.len != TALLY_HASH_BYTES ||
      memcmp (r->permission_hash.data, hash, TALLY_HASH_BYTES) != 0 || r->amount == NULL ||
      r->amount->value != row.amount || r->permission_expires_at != row.expires_at ||
      reg->cert == NULL ||
      g_strcmp0 (r->amount->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "receipt does not match permission %" G_GUINT64_FORMAT, r->payer_counter);
    return FALSE;
  }

  /* The payee signs once per permission; a receipt already held stays. */
  if (row.receipt != NULL) {
    *changed = FALSE;
    return TRUE;
  }
  g_autoptr (GBytes) packed = tally_envelope_pack (receipt);
  TallyEntryState state =
    row.state == TALLY_ENTRY_STATE_PENDING ? TALLY_ENTRY_STATE_ACKNOWLEDGED : row.state;
  if (!reg->backend->spent_set_receipt (reg->store, row.counter, packed, state, error))
    return FALSE;
  /* The payee now caches the certificate the permission travelled with:
   * the one we held when we made it, which a reconciliation may have
   * renewed since (a receipt delivered again, or returned by the issuer). */
  if (row.has_certificate_hash &&
      !reg->backend->peer_put (reg->store, row.payee_id, row.certificate_hash, error))
    return FALSE;
  *changed = TRUE;
  return TRUE;
}

gboolean
tally_register_acknowledge (TallyRegister *reg,
                            const Tally__SignedEnvelope *receipt,
                            GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (receipt != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__Receipt) r = TALLY_UNPACK (Tally__Receipt, tally__receipt, receipt->body.data,
                                               receipt->body.len, "receipt", error);
  if (r == NULL)
    return FALSE;

  gboolean changed = FALSE;
  if (!begin (reg, error))
    return FALSE;
  if (!acknowledge_locked (reg, receipt, r, &changed, error))
    return abort_transaction (reg);
  if (!changed) {
    abort_transaction (reg);
    g_debug ("permission %" G_GUINT64_FORMAT " already acknowledged", r->payer_counter);
    return TRUE;
  }
  if (!commit (reg, OP_ACKNOWLEDGE, error))
    return FALSE;
  g_debug ("permission %" G_GUINT64_FORMAT " acknowledged", r->payer_counter);
  adopt (reg, OP_ACKNOWLEDGE, NULL, NULL, NULL, NULL);
  return TRUE;
}

/* --- payee: receive --- */

typedef struct
{
  const Tally__SignedEnvelope *payer_certificate;
  const Tally__SignedEnvelope *permission;
  const TallyAcceptPolicy *policy;
  guint64 now;
  const guint8 *request_nonce; /* the request it must answer, or NULL */
  gboolean again;
  Tally__RegisterCertificate *payer;
  Tally__DepositPermission *p;
  guint8 permission_hash[TALLY_HASH_BYTES];
  gboolean unchanged; /* set when a delivery again found the receipt */
} ReceiveContext;

/* Inside the transaction: the checks that need stored rows, then the
 * writes.  Returns the receipt and the state to adopt. */
static GBytes *
receive_locked (TallyRegister *reg, ReceiveContext *c, TallyRegisterState *next, GError **error)
{
  const Tally__DepositPermission *p = c->p;
  gboolean same_permission = FALSE, counter_used = FALSE;

  if (!reg->backend->received_find (reg->store, p->payer_register_id.data, p->counter,
                                    c->permission_hash, &same_permission, &counter_used, error))
    return NULL;
  /* Delivered again after the receipt was lost: the same receipt, and
   * nothing changes. */
  if (same_permission && c->again) {
    c->unchanged = TRUE;
    return reg->backend->received_get_receipt (reg->store, c->permission_hash, error);
  }
  if (same_permission) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "permission %" G_GUINT64_FORMAT " of this payer was already received",
                 p->counter);
    return NULL;
  }
  /* The payer signed two different entries with one counter: a double
   * spend the issuer will prove from both. */
  if (counter_used) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_COUNTER_REUSED,
                 "the payer already used counter %" G_GUINT64_FORMAT " for another permission",
                 p->counter);
    return NULL;
  }
  if (p->counter == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "permission counter is 0");
    return NULL;
  }
  if (!tally_check_bytes (&p->chain_prev, TALLY_HASH_BYTES, "permission chain_prev", error) ||
      !tally_check_bytes (&p->memo_hash, TALLY_HASH_BYTES, "permission memo_hash", error))
    return NULL;

  if (c->request_nonce != NULL &&
      (p->payee_nonce.len != TALLY_NONCE_BYTES ||
       memcmp (p->payee_nonce.data, c->request_nonce, TALLY_NONCE_BYTES) != 0)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_NONCE,
                 "the permission answers another request than the one offered");
    return NULL;
  }
  g_auto (TallyNonceRow) request = { 0 };
  gboolean found = FALSE;
  if (p->payee_nonce.len == TALLY_NONCE_BYTES &&
      !reg->backend->nonce_lookup (reg->store, p->payee_nonce.data, &request, &found, error))
    return NULL;
  if (!found) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_NONCE,
                 "the permission answers no request of ours");
    return NULL;
  }
  if (request.consumed) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY, "the request was already paid");
    return NULL;
  }
  if (p->expires_at != request.expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the permission's expiry differs from the request's");
    return NULL;
  }
  if (c->now >= p->expires_at) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the permission expired at %" G_GUINT64_FORMAT, p->expires_at);
    return NULL;
  }
  /* A bundle made at the horizon told the issuer we never received it; the
   * issuer may already have given it back to the payer. */
  if (p->expires_at <= reg->state.horizon) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXPIRED,
                 "the permission expired at %" G_GUINT64_FORMAT
                 ", before our reconciliation at %" G_GUINT64_FORMAT,
                 p->expires_at, reg->state.horizon);
    return NULL;
  }
  if (!tally_amount_check (p->amount, reg->cert->currency, error))
    return NULL;
  gint64 amount = p->amount->value;
  if (amount != request.amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH,
                 "the permission is for %" G_GINT64_FORMAT ", the request for %" G_GINT64_FORMAT,
                 amount, request.amount);
    return NULL;
  }
  guint8 memo_hash[TALLY_HASH_BYTES];
  tally_hash ("memo", request.memo, strlen (request.memo), memo_hash);
  if (memcmp (memo_hash, p->memo_hash.data, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "the permission's memo hash does not match the request");
    return NULL;
  }
  if (amount > c->payer->limits->max_payment) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_PAYMENT,
                 "%" G_GINT64_FORMAT " is above the payer's certified limit of %" G_GINT64_FORMAT,
                 amount, c->payer->limits->max_payment);
    return NULL;
  }
  if (c->policy->max_amount > 0 && amount > c->policy->max_amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_POLICY,
                 "%" G_GINT64_FORMAT " is above our limit of %" G_GINT64_FORMAT, amount,
                 c->policy->max_amount);
    return NULL;
  }
  gint64 balance;
  if (!tally_amount_add (reg->state.balance, amount, &balance, error))
    return NULL;
  if (balance > reg->cert->limits->balance_cap) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_BALANCE,
                 "the balance would be %" G_GINT64_FORMAT ", above the cap of %" G_GINT64_FORMAT,
                 balance, reg->cert->limits->balance_cap);
    return NULL;
  }

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = amount;
  Tally__Receipt r = TALLY__RECEIPT__INIT;
  r.payee_register_id.data = reg->id;
  r.payee_register_id.len = TALLY_ID_BYTES;
  r.payer_register_id = p->payer_register_id;
  r.payer_counter = p->counter;
  r.permission_hash.data = c->permission_hash;
  r.permission_hash.len = TALLY_HASH_BYTES;
  r.amount = &a;
  r.received_at = c->now;
  r.permission_expires_at = p->expires_at;
  g_autoptr (GBytes) receipt =
    sign_message (reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, &r.base, NULL);

  g_autoptr (GBytes) permission = tally_envelope_pack (c->permission);
  g_autoptr (GBytes) certificate = tally_envelope_pack (c->payer_certificate);
  TallyReceivedRow row = {
    .payer_counter = p->counter,
    .permission = permission,
    .payer_certificate = certificate,
    .receipt = receipt,
    .amount = amount,
    .memo = request.memo,
    .received_at = c->now,
    .state = TALLY_ENTRY_STATE_ACKNOWLEDGED,
  };
  memcpy (row.payer_id, p->payer_register_id.data, TALLY_ID_BYTES);
  memcpy (row.permission_hash, c->permission_hash, TALLY_HASH_BYTES);
  memcpy (row.nonce, request.nonce, TALLY_NONCE_BYTES);

  next->balance = balance;
  guint8 cert_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (c->payer_certificate, cert_hash);
  g_autoptr (GBytes) cert_packed = tally_envelope_pack (c->payer_certificate);
  if (!reg->backend->nonce_consume (reg->store, request.nonce, c->now, error) ||
      !reg->backend->received_insert (reg->store, &row, error) ||
      !reg->backend->certificate_put (reg->store, cert_hash, cert_packed, c->payer->not_after,
                                      error) ||
      !reg->backend->state_write (reg->store, next, error))
    return NULL;
  return g_steal_pointer (&receipt);
}

static GBytes *
receive (TallyRegister *reg,
         const Tally__SignedEnvelope *payer_certificate,
         const Tally__SignedEnvelope *permission,
         const guint8 *request_nonce,
         const TallyAcceptPolicy *policy,
         gboolean again,
         guint64 now,
         GError **error)
{
  static const TallyAcceptPolicy no_policy = { 0 };

  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (policy == NULL)
    policy = &no_policy;
  if (!need_open (reg, error) || !need_certificate (reg, error))
    return NULL;

  /* issuer -> payer certificate (the peer check) -> permission, all offline. */
  g_autoptr (Tally__RegisterCertificate) payer =
    tally_register_check_peer (reg, payer_certificate, policy, now, error);
  if (payer == NULL)
    return NULL;
  if (!tally_envelope_verify (permission,
                              TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
                              payer->register_public_key.data, error))
    return NULL;
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, permission->body.data,
                  permission->body.len, "permission", error);
  if (p == NULL)
    return NULL;
  if (!id_equals (&p->payer_register_id, payer->register_id.data)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the permission names another payer than its certificate");
    return NULL;
  }
  if (!id_equals (&p->payee_register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "the permission is for another payee");
    return NULL;
  }

  ReceiveContext c = {
    .payer_certificate = payer_certificate,
    .permission = permission,
    .policy = policy,
    .now = now,
    .request_nonce = request_nonce,
    .again = again,
    .payer = payer,
    .p = p,
  };
  tally_envelope_body_hash (permission, c.permission_hash);
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);

  if (!begin (reg, error))
    return NULL;
  g_autoptr (GBytes) receipt = receive_locked (reg, &c, &next, error);
  if (receipt == NULL || c.unchanged) {
    abort_transaction (reg);
    if (receipt != NULL)
      g_debug ("permission %" G_GUINT64_FORMAT " delivered again: same receipt", p->counter);
    return g_steal_pointer (&receipt);
  }
  if (!commit (reg, OP_RECEIVE, error))
    return NULL;
  g_debug ("received %" G_GINT64_FORMAT " (payer counter %" G_GUINT64_FORMAT ")",
           p->amount->value, p->counter);
  adopt (reg, OP_RECEIVE, &next, NULL, NULL, NULL);
  return g_steal_pointer (&receipt);
}

GBytes *
tally_register_receive (TallyRegister *reg,
                        const Tally__SignedEnvelope *payer_certificate,
                        const Tally__SignedEnvelope *permission,
                        const guint8 request_nonce[TALLY_NONCE_BYTES],
                        const TallyAcceptPolicy *policy,
                        guint64 now,
                        GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (reg, payer_certificate, permission, request_nonce, policy, FALSE, now, error);
}

GBytes *
tally_register_receive_again (TallyRegister *reg,
                              const Tally__SignedEnvelope *payer_certificate,
                              const Tally__SignedEnvelope *permission,
                              const TallyAcceptPolicy *policy,
                              guint64 now,
                              GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return receive (reg, payer_certificate, permission, NULL, policy, TRUE, now, error);
}

GBytes *
tally_register_get_pending (TallyRegister *reg,
                            const guint8 payee_id[TALLY_ID_BYTES],
                            guint64 now,
                            GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (payee_id != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_auto (TallySpentRow) row = { 0 };
  gboolean found = FALSE;
  if (!reg->backend->begin (reg->store, FALSE, error))
    return NULL;
  gboolean ok = reg->backend->spent_find_pending (reg->store, payee_id, now, &row, &found, error);
  reg->backend->rollback (reg->store);
  if (!ok)
    return NULL;
  if (!found) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND,
                 "no unacknowledged permission to that payee");
    return NULL;
  }
  return g_bytes_ref (row.envelope);
}

gboolean
tally_register_revokes (TallyRegister *reg, const guint8 register_id[TALLY_ID_BYTES])
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (register_id != NULL, FALSE);

  /* The decoded list was verified when it was stored. */
  return tally_revocation_list_contains (reg->revocation, register_id);
}

gboolean
tally_register_peer_has_certificate (TallyRegister *reg, const guint8 peer_id[TALLY_ID_BYTES])
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (peer_id != NULL, FALSE);

  if (reg->cert_env == NULL)
    return FALSE;
  guint8 known[TALLY_HASH_BYTES], ours[TALLY_HASH_BYTES];
  gboolean found = FALSE;
  g_autoptr (GError) error = NULL;
  if (!reg->backend->peer_get (reg->store, peer_id, known, &found, &error)) {
    /* Only an optimisation: sending the whole certificate is always right. */
    g_warning ("peer cache: %s", error->message);
    return FALSE;
  }
  tally_envelope_body_hash (reg->cert_env, ours);
  return found && sodium_memcmp (known, ours, TALLY_HASH_BYTES) == 0;
}

Tally__SignedEnvelope *
tally_register_lookup_certificate (TallyRegister *reg,
                                   const guint8 hash[TALLY_HASH_BYTES],
                                   GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (hash != NULL, NULL);

  g_autoptr (GBytes) packed = reg->backend->certificate_get (reg->store, hash, error);
  if (packed == NULL)
    return NULL;
  return stored_envelope (packed, "cached certificate", error);
}

/* Every other object the register signs, it signs inside the operation
 * that commits it; a free signing oracle would let whoever holds the
 * register mint permissions without a debit. */
void
tally_register_sign (TallyRegister *reg,
                     Tally__SignatureContext ctx,
                     const guint8 *data,
                     gsize len,
                     guint8 signature[TALLY_SIGNATURE_BYTES])
{
  g_return_if_fail (reg != NULL);
  g_return_if_fail (data != NULL || len == 0);
  g_return_if_fail (ctx == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER ||
                    ctx == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY);

  reg->backend->sign_detached (reg->store, ctx, data, len, signature);
}

void
tally_register_sign_any (TallyRegister *reg,
                         Tally__SignatureContext ctx,
                         const guint8 *data,
                         gsize len,
                         guint8 signature[TALLY_SIGNATURE_BYTES])
{
  g_return_if_fail (reg != NULL);
  g_return_if_fail (data != NULL || len == 0);
  g_return_if_fail (tally_context_label (ctx) != NULL);

  reg->backend->sign_detached (reg->store, ctx, data, len, signature);
}

/* --- reconciliation --- */

/* Decodes @bytes into an envelope owned by @owner (NULL for NULL). */
static Tally__SignedEnvelope *
own_envelope (GPtrArray *owner, GBytes *bytes, const char *what, GError **error)
{
  if (bytes == NULL)
    return NULL;
  Tally__SignedEnvelope *env = stored_envelope (bytes, what, error);
  if (env != NULL)
    g_ptr_array_add (owner, env);
  return env;
}

static GBytes *
abort_bundle (TallyRegister *reg)
{
  abort_transaction (reg);
  return NULL;
}

GBytes *
tally_register_export_bundle (TallyRegister *reg, guint64 now, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!need_certificate (reg, error))
    return NULL;

  /* One transaction: the rows, and the horizon the bundle reports.  Once
   * the issuer holds this bundle it may give back any permission to us
   * that expired by @now and is not listed, so from then on we refuse
   * those (protocol 4.4). */
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.horizon = MAX (reg->state.horizon, now);
  gboolean advance = next.horizon != reg->state.horizon;
  if (!reg->backend->begin (reg->store, advance, error))
    return NULL;
  g_autoptr (GPtrArray) spent = reg->backend->spent_list_unsettled (reg->store, error);
  g_autoptr (GPtrArray) received =
    spent ? reg->backend->received_list_unsettled (reg->store, error) : NULL;
  g_autoptr (GPtrArray) loads =
    received ? reg->backend->loads_list_unsettled (reg->store, error) : NULL;
  if (loads == NULL || (advance && !reg->backend->state_write (reg->store, &next, error))) {
    abort_transaction (reg);
    return NULL;
  }

  g_autoptr (GPtrArray) owner =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);
  g_autofree Tally__SpentEntry *spent_entries = g_new0 (Tally__SpentEntry, spent->len);
  g_autofree Tally__SpentEntry **spent_ptrs = g_new0 (Tally__SpentEntry *, spent->len);
  for (guint i = 0; i < spent->len; i++) {
    TallySpentRow *row = spent->pdata[i];
    tally__spent_entry__init (&spent_entries[i]);
    spent_entries[i].permission = own_envelope (owner, row->envelope, "spent entry", error);
    if (spent_entries[i].permission == NULL)
      return abort_bundle (reg);
    if (row->receipt != NULL &&
        (spent_entries[i].receipt = own_envelope (owner, row->receipt, "receipt", error)) == NULL)
      return abort_bundle (reg);
    spent_ptrs[i] = &spent_entries[i];
  }
  g_autofree Tally__ReceivedEntry *received_entries = g_new0 (Tally__ReceivedEntry, received->len);
  g_autofree Tally__ReceivedEntry **received_ptrs = g_new0 (Tally__ReceivedEntry *, received->len);
  for (guint i = 0; i < received->len; i++) {
    TallyReceivedRow *row = received->pdata[i];
    Tally__ReceivedEntry *e = &received_entries[i];
    tally__received_entry__init (e);
    if ((e->payer_certificate = own_envelope (owner, row->payer_certificate, "payer certificate",
                                              error)) == NULL ||
        (e->permission = own_envelope (owner, row->permission, "permission", error)) == NULL ||
        (e->receipt = own_envelope (owner, row->receipt, "receipt", error)) == NULL)
      return abort_bundle (reg);
    received_ptrs[i] = e;
  }
  g_autofree Tally__SignedEnvelope **vouchers = g_new0 (Tally__SignedEnvelope *, loads->len);
  for (guint i = 0; i < loads->len; i++) {
    TallyLoadRow *row = loads->pdata[i];
    if ((vouchers[i] = own_envelope (owner, row->envelope, "voucher", error)) == NULL)
      return abort_bundle (reg);
  }

  Tally__ReconciliationBundle b = TALLY__RECONCILIATION_BUNDLE__INIT;
  b.register_id.data = reg->id;
  b.register_id.len = TALLY_ID_BYTES;
  b.certificate = reg->cert_env;
  b.counter = reg->state.counter;
  b.chain_head.data = reg->state.chain_head;
  b.chain_head.len = TALLY_HASH_BYTES;
  b.balance = reg->state.balance;
  b.n_spent = spent->len;
  b.spent = spent_ptrs;
  b.n_received = received->len;
  b.received = received_ptrs;
  b.n_vouchers = loads->len;
  b.vouchers = vouchers;
  b.created_at = now;
  b.revocation_serial = reg->state.revocation_serial;
  g_autoptr (GBytes) bundle =
    sign_message (reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE, &b.base,
                  NULL);
  g_debug ("bundle: %u spent, %u received, %u vouchers, horizon %" G_GUINT64_FORMAT, spent->len,
           received->len, loads->len, next.horizon);
  if (!advance) {
    abort_transaction (reg);
    return g_steal_pointer (&bundle);
  }
  if (!commit (reg, OP_EXPORT, error))
    return NULL;
  adopt (reg, OP_EXPORT, &next, NULL, NULL, NULL);
  return g_steal_pointer (&bundle);
}

/* Inside the transaction: marks our unacknowledged permissions that the
 * issuer gave back.  A hash we no longer hold pending was resolved by an
 * earlier result. */
static gboolean
reclaim_locked (TallyRegister *reg, const Tally__ReconciliationResult *r, GError **error)
{
  if (r->n_reclaimed == 0)
    return TRUE;
  g_autoptr (GPtrArray) spent = reg->backend->spent_list_unsettled (reg->store, error);
  if (spent == NULL)
    return FALSE;
  for (guint i = 0; i < spent->len; i++) {
    const TallySpentRow *row = spent->pdata[i];
    if (row->kind != TALLY_ENTRY_SPENT || row->receipt != NULL)
      continue;
    g_autoptr (Tally__SignedEnvelope) env = stored_envelope (row->envelope, "permission", error);
    if (env == NULL)
      return FALSE;
    guint8 hash[TALLY_HASH_BYTES];
    tally_envelope_body_hash (env, hash);
    for (gsize j = 0; j < r->n_reclaimed; j++) {
      if (memcmp (r->reclaimed[j].data, hash, TALLY_HASH_BYTES) != 0)
        continue;
      if (!reg->backend->spent_set_state (reg->store, row->counter, TALLY_ENTRY_STATE_RECLAIMED,
                                          error))
        return FALSE;
      g_info ("permission %" G_GUINT64_FORMAT " expired unacknowledged: given back online",
              row->counter);
      break;
    }
  }
  return TRUE;
}

/* A result's renewed certificate: issued to this register's key, in its
 * currency.  Its validity window is not checked against the clock: the
 * register takes what the issuer renewed whenever the result arrives. */
static Tally__RegisterCertificate *
renewed_certificate_verify (TallyRegister *reg, const Tally__SignedEnvelope *env, GError **error)
{
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (env, reg->state.issuer_key, error);
  if (cert == NULL)
    return NULL;
  if (memcmp (cert->register_public_key.data, reg->state.public_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the renewed certificate is for another register's key");
    return NULL;
  }
  if (reg->cert != NULL && strcmp (cert->currency, reg->cert->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "the renewed certificate changes the currency");
    return NULL;
  }
  return g_steal_pointer (&cert);
}

/* Whether @cert is newer than the certificate the register holds. */
static gboolean
renews_certificate (TallyRegister *reg, const Tally__RegisterCertificate *cert)
{
  return cert != NULL && (reg->cert == NULL || cert->serial > reg->cert->serial);
}

/*
 * Protocol 5, applying a result.  reconciled_at counts whole seconds, so
 * two reconciliations of one register can share it.  Within one second the
 * later result is told by what only grows: the issuer renews the
 * certificate of every register it has not revoked on every
 * reconciliation, each time with a greater serial, and a revocation is
 * final.  So a result of the same second as the last one applied is newer
 * when it revokes a register not yet revoked, or renews the certificate
 * with a serial above the one held; anything else is that result again, or
 * an older one.  Applying one twice would reset the offline count twice.
 */
static gboolean
result_is_newer (TallyRegister *reg,
                 const Tally__ReconciliationResult *r,
                 const Tally__RegisterCertificate *renewed)
{
  if (r->reconciled_at != reg->state.last_result_at)
    return r->reconciled_at > reg->state.last_result_at;
  if (reg->state.revoked)
    return FALSE;
  if (r->revoked)
    return TRUE;
  return renews_certificate (reg, renewed);
}

gboolean
tally_register_apply_result (TallyRegister *reg,
                             const guint8 *result,
                             gsize len,
                             guint64 now,
                             GError **error)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (result != NULL || len == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (result, len, error);
  if (env == NULL ||
      !tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
                              reg->state.issuer_key, error))
    return FALSE;
  g_autoptr (Tally__ReconciliationResult) r =
    TALLY_UNPACK (Tally__ReconciliationResult, tally__reconciliation_result, env->body.data,
                  env->body.len, "reconciliation result", error);
  if (r == NULL)
    return FALSE;
  if (!id_equals (&r->register_id, reg->id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "the result is for another register");
    return FALSE;
  }
  for (gsize i = 0; i < r->n_settled_received; i++)
    if (!tally_check_bytes (&r->settled_received[i], TALLY_HASH_BYTES, "settled permission hash",
                            error))
      return FALSE;
  for (gsize i = 0; i < r->n_reclaimed; i++)
    if (!tally_check_bytes (&r->reclaimed[i], TALLY_HASH_BYTES, "reclaimed permission hash",
                            error))
      return FALSE;
  g_autoptr (GPtrArray) receipts =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__receipt_free);
  for (gsize i = 0; i < r->n_receipts; i++) {
    Tally__Receipt *rr = TALLY_UNPACK (Tally__Receipt, tally__receipt, r->receipts[i]->body.data,
                                       r->receipts[i]->body.len, "returned receipt", error);
    if (rr == NULL)
      return FALSE;
    g_ptr_array_add (receipts, rr);
  }

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);

  g_autoptr (Tally__RevocationList) rl = NULL;
  if (r->revocation_list != NULL) {
    rl = tally_revocation_list_verify (r->revocation_list, reg->state.issuer_key, error);
    if (rl == NULL)
      return FALSE;
    if (!take_revocation_list (reg, &next, r->revocation_list, rl))
      g_clear_pointer (&rl, tally__revocation_list_free);
  }

  g_autoptr (Tally__SignedEnvelope) cert_env = NULL;
  g_autoptr (Tally__RegisterCertificate) cert = NULL;
  if (r->renewed_certificate != NULL &&
      (cert = renewed_certificate_verify (reg, r->renewed_certificate, error)) == NULL)
    return FALSE;
  if (!result_is_newer (reg, r, cert)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "result of %" G_GUINT64_FORMAT
                 " is not newer than the last one applied (%" G_GUINT64_FORMAT ")",
                 r->reconciled_at, reg->state.last_result_at);
    return FALSE;
  }
  if (renews_certificate (reg, cert)) {
    cert_env = tally_envelope_copy (r->renewed_certificate);
    g_clear_pointer (&next.certificate, g_bytes_unref);
    next.certificate = tally_envelope_pack (r->renewed_certificate);
  } else {
    g_clear_pointer (&cert, tally__register_certificate_free);
  }

  if (r->revoked)
    next.revoked = TRUE;
  next.offline_payments = 0;
  next.last_reconciliation = r->reconciled_at;
  next.last_result_at = r->reconciled_at;

  if (!begin (reg, error))
    return FALSE;
  /* Receipts the payees gave the issuer first: paid.  Then permissions the
   * issuer gave back: not paid.  Only then settle (protocol 4.4). */
  gboolean ok = TRUE;
  for (gsize i = 0; ok && i < r->n_receipts; i++) {
    gboolean changed;
    ok = acknowledge_locked (reg, r->receipts[i], receipts->pdata[i], &changed, error);
  }
  ok = ok && reclaim_locked (reg, r, error) &&
       reg->backend->spent_settle_through (reg->store, r->settled_counter, error);
  for (gsize i = 0; ok && i < r->n_settled_received; i++)
    ok = reg->backend->received_settle (reg->store, r->settled_received[i].data, error);
  ok = ok && reg->backend->loads_settle_through (reg->store, r->settled_voucher_sequence, error) &&
       reg->backend->state_write (reg->store, &next, error);
  if (!ok)
    return abort_transaction (reg);
  if (!commit (reg, OP_APPLY, error))
    return FALSE;
  g_info ("applied reconciliation of %" G_GUINT64_FORMAT ": settled through counter %"
          G_GUINT64_FORMAT ", %zu received, %zu receipts returned, %zu reclaimed",
          r->reconciled_at, r->settled_counter, r->n_settled_received, r->n_receipts,
          r->n_reclaimed);
  adopt (reg, OP_APPLY, &next, g_steal_pointer (&cert_env), g_steal_pointer (&cert),
         g_steal_pointer (&rl));
  return TRUE;
}

/* --- defund --- */

GBytes *
tally_register_defund (TallyRegister *reg, guint64 now, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!need_certificate (reg, error) || !need_open (reg, error))
    return NULL;
  if (reg->state.balance == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "nothing to defund");
    return NULL;
  }

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = reg->cert->currency;
  a.value = reg->state.balance;
  Tally__DefundRecord d = TALLY__DEFUND_RECORD__INIT;
  d.register_id.data = reg->id;
  d.register_id.len = TALLY_ID_BYTES;
  d.amount = &a;
  d.counter = reg->state.counter + 1;
  d.chain_prev.data = reg->state.chain_head;
  d.chain_prev.len = TALLY_HASH_BYTES;
  d.created_at = now;
  guint8 entry_hash[TALLY_HASH_BYTES];
  g_autoptr (GBytes) env =
    sign_message (reg, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND, &d.base, entry_hash);

  TallySpentRow row = {
    .counter = d.counter,
    .kind = TALLY_ENTRY_DEFUND,
    .envelope = env,
    .amount = a.value,
    .created_at = now,
    .state = TALLY_ENTRY_STATE_PENDING,
  };
  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  next.balance = 0;
  next.closed = TRUE;
  next.counter = d.counter;
  tally_chain_next (reg->state.chain_head, entry_hash, next.chain_head);

  if (!begin (reg, error))
    return NULL;
  if (!reg->backend->spent_insert (reg->store, &row, error) ||
      !reg->backend->state_write (reg->store, &next, error)) {
    abort_transaction (reg);
    return NULL;
  }
  if (!commit (reg, OP_DEFUND, error))
    return NULL;
  g_info ("defunded %" G_GINT64_FORMAT " at counter %" G_GUINT64_FORMAT, a.value, d.counter);
  adopt (reg, OP_DEFUND, &next, NULL, NULL, NULL);
  return g_steal_pointer (&env);
}

GPtrArray *
tally_register_get_history (TallyRegister *reg, guint limit, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return reg->backend->history (reg->store, limit, error);
}
