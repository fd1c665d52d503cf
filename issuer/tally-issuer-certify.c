/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Issuing: register certificates and the load vouchers sold against accounts. */
#include "tally-issuer-private.h"

gboolean
tally_issuer_account_register_get (TallyIssuer *issuer,
                                   const char *account,
                                   const guint8 register_id[static TALLY_ID_BYTES],
                                   TallyIssuerRegisterRow *row,
                                   GError **error)
{
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_register_get (issuer->store, register_id, row, &local) &&
      strcmp (row->account, account) == 0)
    return TRUE;
  if (local != NULL && !tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  tally_issuer_register_row_clear (row);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND, "account \"%s\" has no such register",
               account);
  return FALSE;
}

#include <string.h>

#include "tally-hex.h"

GBytes *
tally_issuer_sign_certificate (TallyIssuer *issuer,
                               TallyIssuerRegisterRow *row,
                               guint64 not_before,
                               guint64 not_after)
{
  /* Whatever certificate it was given before may outlive this one. */
  row->not_after_ever = MAX (row->not_after_ever, not_after);
  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = row->max_payment;
  limits.balance_cap = row->balance_cap;
  limits.max_offline_payments = row->max_offline_payments;
  limits.max_offline_seconds = row->max_offline_seconds;

  Tally__RegisterCertificate cert = TALLY__REGISTER_CERTIFICATE__INIT;
  cert.register_public_key.data = (guint8 *) row->public_key;
  cert.register_public_key.len = TALLY_PUBLIC_KEY_BYTES;
  cert.register_id.data = (guint8 *) row->id;
  cert.register_id.len = TALLY_ID_BYTES;
  cert.currency = issuer->currency;
  cert.limits = &limits;
  cert.not_before = not_before;
  cert.not_after = not_after;
  cert.issuer_key_id.data = issuer->key_id;
  cert.issuer_key_id.len = TALLY_ID_BYTES;
  cert.serial = row->cert_serial;
  if (row->display_name != NULL)
    cert.display_name = row->display_name;

  g_autofree char *hex = tally_hex_encode (row->id, TALLY_ID_BYTES);
  g_info ("certificate %" G_GUINT64_FORMAT " for register %s valid %" G_GUINT64_FORMAT
          "..%" G_GUINT64_FORMAT,
          cert.serial, hex, not_before, not_after);
  return tally_issuer_sign (
    issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE, &cert.base);
}

gboolean
tally_issuer_check_limits (const char *currency,
                           const Tally__Limits *limits,
                           guint64 not_before,
                           guint64 not_after,
                           GError **error)
{
  if (limits->max_payment <= 0 || limits->max_payment > TALLY_AMOUNT_MAX ||
      limits->balance_cap <= 0 || limits->balance_cap > TALLY_AMOUNT_MAX ||
      limits->max_offline_payments == 0 || limits->max_offline_seconds == 0) {
    g_autofree char *max = tally_amount_format (TALLY_AMOUNT_MAX, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "limits must be positive and amounts at most %s", max);
    return FALSE;
  }
  if (not_before >= not_after) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "validity window %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT " is empty",
                 not_before, not_after);
    return FALSE;
  }
  return TRUE;
}

GBytes *
tally_issuer_certify_locked (TallyIssuer *issuer,
                             const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                             const char *account,
                             const char *display_name,
                             const Tally__Limits *limits,
                             guint64 not_before,
                             guint64 not_after,
                             GError **error)
{
  gint64 balance;
  if (!tally_issuer_store_account_get (issuer->store, account, &balance, error))
    return NULL;

  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (register_key, id);

  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_register_get (issuer->store, id, &row, &local)) {
    /* Re-certification: same register, same account, next serial. */
    if (row.revoked) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "register is revoked");
      return NULL;
    }
    if (strcmp (row.account, account) != 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS,
                   "register is already certified for account \"%s\"", row.account);
      return NULL;
    }
    row.cert_serial++;
  } else if (tally_issuer_is_not_found (local)) {
    memcpy (row.id, id, TALLY_ID_BYTES);
    memcpy (row.public_key, register_key, TALLY_PUBLIC_KEY_BYTES);
    row.account = g_strdup (account);
    row.cert_serial = 1;
  } else {
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }
  row.max_payment = limits->max_payment;
  row.max_payment_ever = MAX (row.max_payment_ever, limits->max_payment);
  row.balance_cap = limits->balance_cap;
  row.max_offline_payments = limits->max_offline_payments;
  row.max_offline_seconds = limits->max_offline_seconds;
  row.validity = not_after - not_before;
  g_free (row.display_name);
  row.display_name = display_name != NULL && *display_name != '\0' ? g_strdup (display_name) : NULL;

  /* Signed first: the row it is put with holds its not_after. */
  g_autoptr (GBytes) cert = tally_issuer_sign_certificate (issuer, &row, not_before, not_after);
  if (!tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;
  return g_steal_pointer (&cert);
}

GBytes *
tally_issuer_certify (TallyIssuer *issuer,
                      const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                      const char *account,
                      const char *display_name,
                      const Tally__Limits *limits,
                      guint64 not_before,
                      guint64 not_after,
                      GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (register_key != NULL, NULL);
  g_return_val_if_fail (account != NULL, NULL);
  g_return_val_if_fail (limits != NULL, NULL);

  if (!tally_issuer_check_limits (issuer->currency, limits, not_before, not_after, error))
    return NULL;
  /* The same rule every register applies to the certificate it receives. */
  g_autoptr (GError) name_error = NULL;
  if (!tally_display_name_check (display_name, &name_error)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "%s", name_error->message);
    return NULL;
  }
  if (crypto_core_ed25519_is_valid_point (register_key) != 1) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "register key is not a valid Ed25519 public key");
    return NULL;
  }
  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GBytes) cert = tally_issuer_certify_locked (
    issuer, register_key, account, display_name, limits, not_before, not_after, error);
  if (!tally_issuer_finish (issuer, cert != NULL, error))
    return NULL;
  return g_steal_pointer (&cert);
}

static GBytes *
sell_voucher_locked (TallyIssuer *issuer,
                     const char *account,
                     const guint8 register_id[static TALLY_ID_BYTES],
                     gint64 amount,
                     guint64 now,
                     GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 balance;
  guint64 sequence;
  /* An account's credential buys only for that account's registers. */
  if (account != NULL
        ? !tally_issuer_account_register_get (issuer, account, register_id, &row, error)
        : !tally_issuer_store_register_get (issuer->store, register_id, &row, error))
    return NULL;
  if (row.revoked) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "register is revoked");
    return NULL;
  }
  /* The register refuses a load past its cap; selling one would strand
   * the value. */
  if (amount > row.balance_cap) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_LIMIT_BALANCE,
                 "amount exceeds the register's balance cap");
    return NULL;
  }
  if (!tally_issuer_store_account_get (issuer->store, row.account, &balance, error))
    return NULL;
  if (balance < amount) {
    g_autofree char *have = tally_amount_format (balance, issuer->currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS,
                 "account \"%s\" holds only %s", row.account, have);
    return NULL;
  }
  if (!tally_issuer_add_signed (row.view_balance, amount, &row.view_balance, error) ||
      !tally_issuer_store_voucher_next_sequence (issuer->store, register_id, &sequence, error))
    return NULL;

  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = issuer->currency;
  value.value = amount;
  Tally__LoadVoucher v = TALLY__LOAD_VOUCHER__INIT;
  v.register_id.data = (guint8 *) register_id;
  v.register_id.len = TALLY_ID_BYTES;
  v.sequence = sequence;
  v.amount = &value;
  v.issued_at = now;
  v.issuer_key_id.data = issuer->key_id;
  v.issuer_key_id.len = TALLY_ID_BYTES;
  g_autoptr (GBytes) env =
    tally_issuer_sign (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER, &v.base);

  if (!tally_issuer_store_voucher_insert (issuer->store, register_id, sequence, amount, now, env,
                                          error) ||
      !tally_issuer_store_account_put (issuer->store, row.account, balance - amount, error) ||
      !tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;
  return g_steal_pointer (&env);
}

GBytes *
tally_issuer_sell_voucher (TallyIssuer *issuer,
                           const guint8 register_id[static TALLY_ID_BYTES],
                           gint64 amount,
                           guint64 now,
                           GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (register_id != NULL, NULL);

  if (!tally_issuer_check_amount (issuer->currency, amount, error) ||
      !tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GBytes) env = sell_voucher_locked (issuer, NULL, register_id, amount, now, error);
  if (!tally_issuer_finish (issuer, env != NULL, error))
    return NULL;
  return g_steal_pointer (&env);
}

/* The meta key of @account's voucher request @request_id. */
static char *
voucher_request_key (const char *account,
                     const guint8 request_id[static TALLY_VOUCHER_REQUEST_ID_BYTES])
{
  TallyHash h;
  guint8 hash[TALLY_HASH_BYTES];
  tally_hash_init (&h, "voucher-request", sizeof hash);
  tally_hash_update_prefixed (&h, account, strlen (account));
  tally_hash_update (&h, request_id, TALLY_VOUCHER_REQUEST_ID_BYTES);
  tally_hash_final (&h, hash);
  g_autofree char *hex = tally_hex_encode (hash, sizeof hash);
  return g_strconcat (TALLY_ISSUER_KEPT_VOUCHER_PREFIX, hex, NULL);
}

/* The voucher kept for a request, when it is for the same register and
 * amount; REPLAY otherwise. */
static GBytes *
voucher_again (GBytes *stored,
               const guint8 register_id[static TALLY_ID_BYTES],
               gint64 amount,
               GError **error)
{
  g_autoptr (Tally__SignedEnvelope) env = tally_issuer_decode_stored (stored, error);
  if (env == NULL)
    return NULL;
  g_autoptr (Tally__LoadVoucher) v = TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher,
                                                   env->body.data, env->body.len, "voucher", error);
  if (v == NULL)
    return NULL;
  if (v->register_id.len != TALLY_ID_BYTES ||
      memcmp (v->register_id.data, register_id, TALLY_ID_BYTES) != 0 || v->amount == NULL ||
      v->amount->value != amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                 "this request id bought another voucher already");
    return NULL;
  }
  return g_bytes_ref (stored);
}

GBytes *
tally_issuer_sell_voucher_to_account (
  TallyIssuer *issuer,
  const char *account,
  const guint8 register_id[static TALLY_ID_BYTES],
  gint64 amount,
  const guint8 request_id[static TALLY_VOUCHER_REQUEST_ID_BYTES],
  guint64 now,
  gboolean *repeated,
  GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (account != NULL, NULL);
  g_return_val_if_fail (register_id != NULL, NULL);
  g_return_val_if_fail (request_id != NULL, NULL);

  gboolean dummy;
  if (repeated == NULL)
    repeated = &dummy;
  *repeated = FALSE;
  if (!tally_issuer_check_amount (issuer->currency, amount, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_VOUCHER_BEGIN);
  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autofree char *key = voucher_request_key (account, request_id);
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GBytes) env = NULL;
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_meta_get (issuer->store, key, &stored, &local)) {
    env = voucher_again (stored, register_id, amount, error);
    *repeated = env != NULL;
  } else if (!tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
  } else {
    env = sell_voucher_locked (issuer, account, register_id, amount, now, error);
    if (env != NULL)
      tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_VOUCHER_SOLD);
    if (env != NULL && !tally_issuer_store_meta_set (issuer->store, key, env, error))
      g_clear_pointer (&env, g_bytes_unref);
    if (env != NULL)
      tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_VOUCHER_REQUEST_KEPT);
  }
  if (!tally_issuer_finish (issuer, env != NULL, error))
    return NULL;
  tally_issuer_commit_point (issuer, TALLY_ISSUER_POINT_VOUCHER_COMMITTED);
  return g_steal_pointer (&env);
}
