/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Register protocol logic: what is checked, in which order, what gets
 * signed and what one operation changes.  Storage and the key sit behind
 * TallyRegisterBackend.
 *
 * Every operation that changes state works on a copy of the cached state,
 * writes it inside one backend transaction and adopts the copy only after
 * COMMIT succeeded, so a failure leaves object and disk alike.
 *
 * This file holds the register's lifetime, state, certificate, revocation
 * list, loads and the plumbing every operation shares; the payer side,
 * the payee side and reconciliation sit in tally-register-spend.c,
 * tally-register-receive.c and tally-register-reconcile.c.
 */
#include "tally-register.h"

#include <string.h>

#include "tally-hex.h"
#include "tally-peer.h"
#include "tally-register-backend.h"
#include "tally-register-private.h"

/* Two points per TallyRegisterOp, in enum order. */
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
  "issuer:before-commit",      "issuer:after-commit",
  NULL,
};

G_STATIC_ASSERT (G_N_ELEMENTS (commit_points) == 2 * (TALLY_REGISTER_OP_ISSUER + 1) + 1);

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
  g_free (entry->peer_name);
  g_free (entry->receipt_id);
  g_free (entry);
}

/* --- rows and state (shared with the backends) --- */

void
tally_register_state_init (TallyRegisterState *state,
                           const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                           const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES])
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

/* Frees a row on the heap once @clear has emptied it. */
static void
row_free (gpointer row, GDestroyNotify clear)
{
  if (row == NULL)
    return;
  clear (row);
  g_free (row);
}

void
tally_spent_row_clear (TallySpentRow *row)
{
  g_clear_pointer (&row->envelope, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
  g_clear_pointer (&row->payee_name, g_free);
}

void
tally_spent_row_free (TallySpentRow *row)
{
  row_free (row, (GDestroyNotify) tally_spent_row_clear);
}

static void
received_row_clear (TallyReceivedRow *row)
{
  g_clear_pointer (&row->permission, g_bytes_unref);
  g_clear_pointer (&row->payer_certificate, g_bytes_unref);
  g_clear_pointer (&row->receipt, g_bytes_unref);
  g_clear_pointer (&row->memo, g_free);
}

void
tally_received_row_free (TallyReceivedRow *row)
{
  row_free (row, (GDestroyNotify) received_row_clear);
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
  row_free (row, (GDestroyNotify) tally_nonce_row_clear);
}

static void
load_row_clear (TallyLoadRow *row)
{
  g_clear_pointer (&row->envelope, g_bytes_unref);
}

void
tally_load_row_free (TallyLoadRow *row)
{
  row_free (row, (GDestroyNotify) load_row_clear);
}

/* --- helpers --- */

gboolean
tally_id_equals (const ProtobufCBinaryData *field, const guint8 id[static TALLY_ID_BYTES])
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

Tally__SignedEnvelope *
tally_register_stored_envelope (GBytes *bytes, const char *what, GError **error)
{
  Tally__SignedEnvelope *env = envelope_from_bytes (bytes);
  if (env == NULL)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "stored %s is not an envelope", what);
  return env;
}

gboolean
tally_register_need_certificate (TallyRegister *reg, GError **error)
{
  if (reg->cert == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NO_CERTIFICATE,
                 "the register has no certificate yet");
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_register_need_open (TallyRegister *reg, GError **error)
{
  if (reg->state.closed) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_STATE,
                 "the register is closed after its defund");
    return FALSE;
  }
  return TRUE;
}

/* Crediting @amount keeps the balance within the certified cap;
 * *balance is the balance after it. */
gboolean
tally_register_check_credit (TallyRegister *reg, gint64 amount, gint64 *balance, GError **error)
{
  if (!tally_amount_add (reg->state.balance, amount, balance, error))
    return FALSE;
  if (*balance > reg->cert->limits->balance_cap) {
    g_autofree char *would = tally_amount_format (*balance, reg->cert->currency);
    g_autofree char *cap =
      tally_amount_format (reg->cert->limits->balance_cap, reg->cert->currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_BALANCE,
                 "the balance would be %s, above the certified cap of %s", would, cap);
    return FALSE;
  }
  return TRUE;
}

/* Packs @msg, signs it under @ctx with the register key and, when
 * @entry_hash is given, names the entry for the hash chain. */
GBytes *
tally_register_sign_message (TallyRegister *reg,
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
call_hook (TallyRegister *reg, TallyRegisterOp op, gboolean after)
{
  const char *point = commit_points[2 * op + (after ? 1 : 0)];
  g_debug ("register commit point %s", point);
  if (reg->hook != NULL)
    reg->hook (point, reg->hook_data);
}

gboolean
tally_register_begin (TallyRegister *reg, GError **error)
{
  return reg->backend->begin (reg->store, TRUE, error);
}

gboolean
tally_register_abort (TallyRegister *reg)
{
  reg->backend->rollback (reg->store);
  return FALSE;
}

/* The durable end of an operation: everything is written, COMMIT makes it
 * final.  Rolls back on failure. */
gboolean
tally_register_commit (TallyRegister *reg, TallyRegisterOp op, GError **error)
{
  call_hook (reg, op, FALSE);
  if (!reg->backend->commit (reg->store, error))
    return tally_register_abort (reg);
  return TRUE;
}

gboolean
tally_register_state_commit (TallyRegister *reg,
                             TallyRegisterOp op,
                             const TallyRegisterState *next,
                             GError **error)
{
  if (!tally_register_begin (reg, error))
    return FALSE;
  if (!reg->backend->state_write (reg->store, next, error))
    return tally_register_abort (reg);
  return tally_register_commit (reg, op, error);
}

/* Makes @next the cached state after COMMIT; takes the non-NULL decoded
 * objects that replace the cached ones. */
void
tally_register_adopt (TallyRegister *reg,
                      TallyRegisterOp op,
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
    g_autoptr (Tally__SignedEnvelope) env =
      tally_register_stored_envelope (reg->state.certificate, "certificate", error);
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
    g_autoptr (Tally__SignedEnvelope) env =
      tally_register_stored_envelope (reg->state.revocation_list, "revocation list", error);
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
                       const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
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
tally_register_create_unbound (const char *dir, GError **error)
{
  /* No issuer signs under the all-zero key: nothing verifies until
   * tally_register_set_issuer () names a real one. */
  static const guint8 no_issuer[TALLY_PUBLIC_KEY_BYTES] = { 0 };
  return tally_register_create (dir, no_issuer, error);
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

gboolean
tally_register_is_revoked (TallyRegister *reg)
{
  g_return_val_if_fail (reg != NULL, FALSE);
  return reg->state.revoked;
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

  if (!tally_register_need_issuer (reg, error))
    return FALSE;
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

  if (!tally_register_state_commit (reg, TALLY_REGISTER_OP_CERTIFICATE, &next, error))
    return FALSE;
  g_info ("installed certificate serial %" G_GUINT64_FORMAT, c->serial);
  tally_register_adopt (reg, TALLY_REGISTER_OP_CERTIFICATE, &next, g_steal_pointer (&env),
                        g_steal_pointer (&c), NULL);
  return TRUE;
}

/* --- revocation list --- */

/* Puts @list (verified) into @next when it is newer. Returns whether. */
gboolean
tally_register_take_revocation_list (TallyRegister *reg,
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

  if (!tally_register_need_issuer (reg, error))
    return FALSE;
  g_autoptr (Tally__RevocationList) rl =
    tally_revocation_list_verify (list, reg->state.issuer_key, error);
  if (rl == NULL)
    return FALSE;

  g_auto (TallyRegisterState) next = { 0 };
  tally_register_state_copy (&next, &reg->state);
  if (!tally_register_take_revocation_list (reg, &next, list, rl)) {
    g_debug ("revocation list serial %" G_GUINT64_FORMAT " is not newer than %" G_GUINT64_FORMAT,
             rl->serial, reg->state.revocation_serial);
    return TRUE;
  }

  if (!tally_register_state_commit (reg, TALLY_REGISTER_OP_REVOCATION, &next, error))
    return FALSE;
  g_debug ("revocation list serial %" G_GUINT64_FORMAT " stored", rl->serial);
  tally_register_adopt (reg, TALLY_REGISTER_OP_REVOCATION, &next, NULL, NULL,
                        g_steal_pointer (&rl));
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

  if (!tally_register_need_issuer (reg, error))
    return FALSE;
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (voucher, len, error);
  if (env == NULL)
    return FALSE;
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, reg->state.issuer_key, error);
  if (v == NULL || !tally_register_need_certificate (reg, error) ||
      !tally_register_need_open (reg, error))
    return FALSE;
  if (!tally_id_equals (&v->register_id, reg->id)) {
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
  if (v->sequence == reg->state.last_voucher_sequence) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_VOUCHER_REPLAY,
                 "voucher %" G_GUINT64_FORMAT " was already loaded", v->sequence);
    return FALSE;
  }
  if (v->sequence < reg->state.last_voucher_sequence) {
    /* Vouchers load in order: one older than the last was loaded or skipped. */
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_VOUCHER_REPLAY,
                 "voucher %" G_GUINT64_FORMAT " is older than voucher %" G_GUINT64_FORMAT
                 ", the last one loaded",
                 v->sequence, reg->state.last_voucher_sequence);
    return FALSE;
  }
  gint64 balance;
  if (!tally_register_check_credit (reg, v->amount->value, &balance, error))
    return FALSE;

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

  if (!tally_register_begin (reg, error))
    return FALSE;
  if (!reg->backend->load_insert (reg->store, &row, error) ||
      !reg->backend->state_write (reg->store, &next, error))
    return tally_register_abort (reg);
  if (!tally_register_commit (reg, TALLY_REGISTER_OP_LOAD, error))
    return FALSE;
  g_debug ("loaded voucher %" G_GUINT64_FORMAT ": %" G_GINT64_FORMAT, v->sequence,
           v->amount->value);
  tally_register_adopt (reg, TALLY_REGISTER_OP_LOAD, &next, NULL, NULL, NULL);
  return TRUE;
}

gboolean
tally_register_revokes (TallyRegister *reg, const guint8 register_id[static TALLY_ID_BYTES])
{
  g_return_val_if_fail (reg != NULL, FALSE);
  g_return_val_if_fail (register_id != NULL, FALSE);

  /* The decoded list was verified when it was stored. */
  return tally_revocation_list_contains (reg->revocation, register_id);
}

gboolean
tally_register_peer_has_certificate (TallyRegister *reg, const guint8 peer_id[static TALLY_ID_BYTES])
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
                                   const guint8 hash[static TALLY_HASH_BYTES],
                                   GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (hash != NULL, NULL);

  g_autoptr (GBytes) packed = reg->backend->certificate_get (reg->store, hash, error);
  if (packed == NULL)
    return NULL;
  return tally_register_stored_envelope (packed, "cached certificate", error);
}

/* Every other object the register signs, it signs inside the operation
 * that commits it; a free signing oracle would let whoever holds the
 * register mint permissions without a debit. */
void
tally_register_sign (TallyRegister *reg,
                     Tally__SignatureContext ctx,
                     const guint8 *data,
                     gsize len,
                     guint8 signature[static TALLY_SIGNATURE_BYTES])
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
                         guint8 signature[static TALLY_SIGNATURE_BYTES])
{
  g_return_if_fail (reg != NULL);
  g_return_if_fail (data != NULL || len == 0);
  g_return_if_fail (tally_context_label (ctx) != NULL);

  reg->backend->sign_detached (reg->store, ctx, data, len, signature);
}

GPtrArray *
tally_register_get_history (TallyRegister *reg, guint limit, GError **error)
{
  g_return_val_if_fail (reg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return reg->backend->history (reg->store, limit, error);
}
