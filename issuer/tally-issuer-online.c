/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the online issuer (tally-issuerd) needs beyond the file-based
 * operations: per-account bearer tokens, the display name an account's
 * registers may carry, and enrolment by proof of possession.
 *
 * Tokens and display names live in the store's meta table under
 * "account-token:NAME" and "account-display-name:NAME", so every store
 * backend keeps them without a table of their own.
 */
#include "tally-issuer-private.h"

#include <string.h>

#define TOKEN_KEY_PREFIX        "account-token:"
#define DISPLAY_NAME_KEY_PREFIX "account-display-name:"
#define TOKEN_HASH_LABEL        "account-token"

static gboolean
account_exists (TallyIssuer *issuer, const char *account, GError **error)
{
  gint64 balance;
  return tally_issuer_store_account_get (issuer->store, account, &balance, error);
}

/* Stores the hash of a new random token for @account in @token. */
static gboolean
token_new_locked (TallyIssuer *issuer,
                  const char *account,
                  guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                  GError **error)
{
  guint8 hash[TALLY_HASH_BYTES];
  randombytes_buf (token, TALLY_ACCOUNT_TOKEN_BYTES);
  tally_hash (TOKEN_HASH_LABEL, token, TALLY_ACCOUNT_TOKEN_BYTES, hash);
  g_autoptr (GBytes) value = g_bytes_new (hash, sizeof hash);
  g_autofree char *key = g_strconcat (TOKEN_KEY_PREFIX, account, NULL);
  return account_exists (issuer, account, error) &&
         tally_issuer_store_meta_set (issuer->store, key, value, error);
}

gboolean
tally_issuer_account_token_new (TallyIssuer *issuer,
                                const char *account,
                                guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                                GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);
  g_return_val_if_fail (token != NULL, FALSE);

  gboolean ok = tally_issuer_store_begin (issuer->store, error);
  if (ok) {
    ok = token_new_locked (issuer, account, token, error);
    ok = tally_issuer_finish (issuer, ok, error);
  }
  if (!ok)
    sodium_memzero (token, TALLY_ACCOUNT_TOKEN_BYTES);
  return ok;
}

gboolean
tally_issuer_account_token_check (TallyIssuer *issuer,
                                  const char *account,
                                  const guint8 *token,
                                  gsize len,
                                  GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);
  g_return_val_if_fail (token != NULL || len == 0, FALSE);

  guint8 hash[TALLY_HASH_BYTES];
  tally_hash (TOKEN_HASH_LABEL, token, len, hash);
  g_autofree char *key = g_strconcat (TOKEN_KEY_PREFIX, account, NULL);
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GError) local = NULL;

  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean found = tally_issuer_store_meta_get (issuer->store, key, &stored, &local);
  if (!tally_issuer_finish (issuer, TRUE, error))
    return FALSE;
  if (!found && !tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  gsize stored_len = 0;
  const guint8 *want = found ? g_bytes_get_data (stored, &stored_len) : NULL;
  /* One answer for an unknown account, an account without a token and a
   * wrong token: the caller learns nothing but "no". */
  if (len != TALLY_ACCOUNT_TOKEN_BYTES || stored_len != sizeof hash ||
      sodium_memcmp (want, hash, sizeof hash) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_NOT_AUTHORIZED,
                 "no valid token for account \"%s\"", account);
    return FALSE;
  }
  return TRUE;
}

/* NULL or "" for none; INVALID_ARGUMENT for a name no certificate may carry. */
static gboolean
display_name_check (const char *display_name, GError **error)
{
  g_autoptr (GError) name_error = NULL;
  if (display_name != NULL && *display_name != '\0' &&
      !tally_display_name_check (display_name, &name_error)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT, "%s", name_error->message);
    return FALSE;
  }
  return TRUE;
}

static gboolean
set_display_name_locked (TallyIssuer *issuer,
                         const char *account,
                         const char *display_name,
                         GError **error)
{
  if (display_name != NULL && *display_name == '\0')
    display_name = NULL;
  g_autofree char *key = g_strconcat (DISPLAY_NAME_KEY_PREFIX, account, NULL);
  /* An empty value stands for "none": meta has no delete. */
  g_autoptr (GBytes) value =
    g_bytes_new (display_name ? display_name : "", display_name ? strlen (display_name) : 0);
  return account_exists (issuer, account, error) &&
         tally_issuer_store_meta_set (issuer->store, key, value, error);
}

gboolean
tally_issuer_account_set_display_name (TallyIssuer *issuer,
                                       const char *account,
                                       const char *display_name,
                                       GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);

  if (!display_name_check (display_name, error) || !tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = set_display_name_locked (issuer, account, display_name, error);
  return tally_issuer_finish (issuer, ok, error);
}

gboolean
tally_issuer_account_create_with_token (TallyIssuer *issuer,
                                        const char *name,
                                        const char *display_name,
                                        guint8 token[static TALLY_ACCOUNT_TOKEN_BYTES],
                                        GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (token != NULL, FALSE);

  gboolean ok =
    display_name_check (display_name, error) && tally_issuer_store_begin (issuer->store, error);
  if (ok) {
    ok = tally_issuer_account_create_locked (issuer, name, error) &&
         set_display_name_locked (issuer, name, display_name, error) &&
         token_new_locked (issuer, name, token, error);
    ok = tally_issuer_finish (issuer, ok, error);
  }
  if (!ok)
    sodium_memzero (token, TALLY_ACCOUNT_TOKEN_BYTES);
  return ok;
}

/* The account's display name (NULL for none), inside a transaction. */
static gboolean
display_name_locked (TallyIssuer *issuer, const char *account, char **out, GError **error)
{
  g_autofree char *key = g_strconcat (DISPLAY_NAME_KEY_PREFIX, account, NULL);
  g_autoptr (GBytes) value = NULL;
  g_autoptr (GError) local = NULL;
  *out = NULL;
  if (!tally_issuer_store_meta_get (issuer->store, key, &value, &local)) {
    if (tally_issuer_is_not_found (local))
      return TRUE;
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  gsize len;
  const char *data = g_bytes_get_data (value, &len);
  if (len > 0)
    *out = g_strndup (data, len);
  return TRUE;
}

GBytes *
tally_issuer_enrol_statement (TallyIssuer *issuer,
                              const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                              const char *account)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (register_key != NULL, NULL);
  g_return_val_if_fail (account != NULL, NULL);

  GByteArray *s = g_byte_array_new ();
  g_byte_array_append (s, (const guint8 *) TALLY_ENROL_DOMAIN, sizeof TALLY_ENROL_DOMAIN);
  g_byte_array_append (s, issuer->public_key, TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (s, register_key, TALLY_PUBLIC_KEY_BYTES);
  g_byte_array_append (s, (const guint8 *) account, (guint) strlen (account));
  return g_byte_array_free_to_bytes (s);
}

static GBytes *
enrol_locked (TallyIssuer *issuer,
              const char *account,
              const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
              const Tally__Limits *limits,
              guint64 now,
              guint64 not_after,
              gboolean *renewed,
              GError **error)
{
  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (register_key, id);
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_register_get (issuer->store, id, &row, &local)) {
    /* The same enrolment again: its answer was lost.  The same register
     * gets a current certificate; never a second one, never another
     * account's. */
    if (strcmp (row.account, account) != 0) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_REPLAY,
                   "register key is enrolled already, for another account");
      return NULL;
    }
    if (row.revoked) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_REVOKED, "register is revoked");
      return NULL;
    }
    *renewed = TRUE;
  } else if (!tally_issuer_is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return NULL;
  }
  g_autofree char *display_name = NULL;
  if (!account_exists (issuer, account, error) ||
      !display_name_locked (issuer, account, &display_name, error))
    return NULL;
  return tally_issuer_certify_locked (issuer, register_key, account, display_name, limits, now,
                                      not_after, error);
}

GBytes *
tally_issuer_enrol (TallyIssuer *issuer,
                    const char *account,
                    const guint8 register_key[static TALLY_PUBLIC_KEY_BYTES],
                    const guint8 proof[static TALLY_SIGNATURE_BYTES],
                    const Tally__Limits *limits,
                    guint64 now,
                    guint64 not_after,
                    gboolean *renewed,
                    GError **error)
{
  gboolean again = FALSE;
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (account != NULL, NULL);
  g_return_val_if_fail (register_key != NULL, NULL);
  g_return_val_if_fail (proof != NULL, NULL);
  g_return_val_if_fail (limits != NULL, NULL);

  if (!tally_issuer_check_limits (issuer->currency, limits, now, not_after, error))
    return NULL;
  if (crypto_core_ed25519_is_valid_point (register_key) != 1) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "register key is not a valid Ed25519 public key");
    return NULL;
  }
  g_autoptr (GBytes) statement = tally_issuer_enrol_statement (issuer, register_key, account);
  gsize len;
  const guint8 *data = g_bytes_get_data (statement, &len);
  if (crypto_sign_verify_detached (proof, data, len, register_key) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE,
                 "proof of possession does not verify under the register key");
    return NULL;
  }
  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GBytes) cert =
    enrol_locked (issuer, account, register_key, limits, now, not_after, &again, error);
  if (!tally_issuer_finish (issuer, cert != NULL, error))
    return NULL;
  if (renewed != NULL)
    *renewed = again;
  return g_steal_pointer (&cert);
}
