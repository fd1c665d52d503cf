/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-issuer.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

#include "tally-hex.h"
#include "tally-issuer-store.h"
#include "tally-keyfile.h"

#define KEY_FILE "issuer.key"
#define DB_FILE  "issuer.db"

#define META_KEY_SET "key-set"

/* Account and issuer names: printable, bounded, stored as given. */
#define NAME_MAX_BYTES 256

struct _TallyIssuer
{
  char *dir;
  TallyIssuerStore *store;
  guint8 *secret_key; /* guarded sodium memory */
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 key_id[TALLY_ID_BYTES];
  char *name;
  char *currency;
  GBytes *key_set;
};

/* --- helpers --------------------------------------------------------------- */

static GBytes *
sign_message (TallyIssuer *issuer, Tally__SignatureContext ctx, const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (ctx, data, len, issuer->secret_key);
}

/* Ends the one transaction of a public call: commits when @ok, otherwise
 * (or when the commit fails) rolls back so the store is unchanged. */
static gboolean
finish (TallyIssuer *issuer, gboolean ok, GError **error)
{
  if (ok && tally_issuer_store_commit (issuer->store, error))
    return TRUE;
  tally_issuer_store_rollback (issuer->store);
  return FALSE;
}

static gboolean
check_name (const char *name, const char *what, GError **error)
{
  gsize len = strlen (name);
  if (len == 0 || len > NAME_MAX_BYTES || !g_utf8_validate (name, (gssize) len, NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "%s must be 1..%d bytes of UTF-8", what, NAME_MAX_BYTES);
    return FALSE;
  }
  for (const char *p = name; *p; p = g_utf8_next_char (p)) {
    if (g_unichar_iscntrl (g_utf8_get_char (p))) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                   "%s must not contain control characters", what);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
check_amount (gint64 amount, GError **error)
{
  if (amount <= 0 || amount > TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount %" G_GINT64_FORMAT " is not in 1..%" G_GINT64_FORMAT, amount,
                 TALLY_AMOUNT_MAX);
    return FALSE;
  }
  return TRUE;
}

/* Register views and running totals may go negative (a double spender's view
 * does), so they use a signed checked sum rather than tally_amount_add. */
static gboolean
add_signed (gint64 a, gint64 b, gint64 *out, GError **error)
{
  gint64 sum;
  if (__builtin_add_overflow (a, b, &sum)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "total out of range");
    return FALSE;
  }
  *out = sum;
  return TRUE;
}

static gboolean
is_not_found (const GError *error)
{
  return g_error_matches (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
}

static char *
short_hex (const guint8 *data)
{
  return tally_hex_encode (data, 8);
}

static Tally__SignedEnvelope *
decode_stored (GBytes *bytes, GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (GError) local = NULL;
  Tally__SignedEnvelope *env = tally_envelope_decode (data, len, &local);
  if (env == NULL)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "stored envelope is corrupt: %s",
                 local->message);
  return env;
}

/* --- revocation list ---------------------------------------------------------- */

static gboolean
latest_revocation_list (TallyIssuer *issuer, guint64 *serial, GBytes **env, GError **error)
{
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_revocation_list_get_latest (issuer->store, serial, env, &local))
    return TRUE;
  if (is_not_found (local)) {
    *serial = 0;
    *env = NULL;
    return TRUE;
  }
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/* Signs and stores the next revocation list naming every revoked register. */
static gboolean
publish_revocation_list (TallyIssuer *issuer, guint64 now, GError **error)
{
  guint64 serial;
  g_autoptr (GBytes) previous = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  if (!latest_revocation_list (issuer, &serial, &previous, error) ||
      !tally_issuer_store_register_list_revoked (issuer->store, &ids, error))
    return FALSE;

  g_autofree ProtobufCBinaryData *revoked = g_new0 (ProtobufCBinaryData, ids->len + 1);
  for (guint i = 0; i < ids->len; i++) {
    gsize len;
    revoked[i].data = (guint8 *) g_bytes_get_data (ids->pdata[i], &len);
    revoked[i].len = len;
  }

  Tally__RevocationList list = TALLY__REVOCATION_LIST__INIT;
  list.serial = serial + 1;
  list.issued_at = now;
  list.n_revoked_register_ids = ids->len;
  list.revoked_register_ids = revoked;
  list.issuer_key_id.data = issuer->key_id;
  list.issuer_key_id.len = TALLY_ID_BYTES;

  g_autoptr (GBytes) env =
    sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST, &list.base);
  if (!tally_issuer_store_revocation_list_put (issuer->store, list.serial, now, env, error))
    return FALSE;
  g_info ("revocation list %" G_GUINT64_FORMAT " published with %u revoked register(s)",
          list.serial, ids->len);
  return TRUE;
}

/* Marks @register_id revoked; TRUE in *changed when it was not before. */
static gboolean
mark_revoked (TallyIssuer *issuer,
              const guint8 register_id[TALLY_ID_BYTES],
              gboolean *changed,
              GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, register_id, &row, error))
    return FALSE;
  *changed = !row.revoked;
  if (row.revoked)
    return TRUE;
  row.revoked = TRUE;
  g_autofree char *hex = tally_hex_encode (register_id, TALLY_ID_BYTES);
  g_info ("register %s revoked", hex);
  return tally_issuer_store_register_put (issuer->store, &row, error);
}

/* --- lifetime ------------------------------------------------------------------- */

/* sodium_init () is idempotent; a library must not rely on its caller. */
static gboolean
sodium_ready (GError **error)
{
  if (sodium_init () < 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_FAILED, "libsodium cannot initialise");
    return FALSE;
  }
  return TRUE;
}

static TallyIssuer *
issuer_new (const char *dir)
{
  TallyIssuer *issuer = g_new0 (TallyIssuer, 1);
  issuer->dir = g_strdup (dir);
  issuer->secret_key = tally_secret_key_new ();
  return issuer;
}

void
tally_issuer_free (TallyIssuer *issuer)
{
  if (issuer == NULL)
    return;
  g_clear_pointer (&issuer->store, tally_issuer_store_free);
  tally_secret_key_free (issuer->secret_key);
  g_free (issuer->dir);
  g_free (issuer->name);
  g_free (issuer->currency);
  g_clear_pointer (&issuer->key_set, g_bytes_unref);
  g_free (issuer);
}

static void
remove_db_files (const char *db_path)
{
  g_autofree char *wal = g_strconcat (db_path, "-wal", NULL);
  g_autofree char *shm = g_strconcat (db_path, "-shm", NULL);
  g_unlink (db_path);
  g_unlink (wal);
  g_unlink (shm);
}

TallyIssuer *
tally_issuer_create (const char *dir,
                     const char *name,
                     const char *currency,
                     guint64 now,
                     GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (currency != NULL, NULL);

  if (!sodium_ready (error))
    return NULL;
  if (!tally_currency_is_valid (currency)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "currency \"%s\" is not 3..8 upper-case letters", currency);
    return NULL;
  }
  if (!check_name (name, "issuer name", error))
    return NULL;

  g_autofree char *key_path = g_build_filename (dir, KEY_FILE, NULL);
  g_autofree char *db_path = g_build_filename (dir, DB_FILE, NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot create %s: %s", dir,
                 g_strerror (e));
    return NULL;
  }
  if (g_file_test (key_path, G_FILE_TEST_EXISTS) || g_file_test (db_path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "an issuer already exists in %s", dir);
    return NULL;
  }

  g_autoptr (TallyIssuer) issuer = issuer_new (dir);
  crypto_sign_keypair (issuer->public_key, issuer->secret_key);
  tally_key_id_from_key (issuer->public_key, issuer->key_id);
  issuer->name = g_strdup (name);
  issuer->currency = g_strdup (currency);

  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  ks.public_key.data = issuer->public_key;
  ks.public_key.len = TALLY_PUBLIC_KEY_BYTES;
  ks.key_id.data = issuer->key_id;
  ks.key_id.len = TALLY_ID_BYTES;
  ks.currency = issuer->currency;
  ks.name = issuer->name;
  ks.created_at = now;
  issuer->key_set =
    sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, &ks.base);

  if (!tally_key_file_write (key_path, issuer->secret_key, error))
    return NULL;

  issuer->store = tally_issuer_store_sqlite_open (db_path, TRUE, error);
  gboolean ok = issuer->store != NULL && tally_issuer_store_begin (issuer->store, error);
  if (ok) {
    ok = tally_issuer_store_meta_set (issuer->store, META_KEY_SET, issuer->key_set, error) &&
         publish_revocation_list (issuer, now, error);
    ok = finish (issuer, ok, error);
  }
  if (!ok) {
    g_clear_pointer (&issuer->store, tally_issuer_store_free);
    remove_db_files (db_path);
    g_unlink (key_path);
    return NULL;
  }

  g_autofree char *kid = tally_hex_encode (issuer->key_id, TALLY_ID_BYTES);
  g_info ("issuer \"%s\" created in %s, key id %s, currency %s", name, dir, kid, currency);
  return g_steal_pointer (&issuer);
}

TallyIssuer *
tally_issuer_open (const char *dir, GError **error)
{
  g_return_val_if_fail (dir != NULL, NULL);

  if (!sodium_ready (error))
    return NULL;

  g_autofree char *key_path = g_build_filename (dir, KEY_FILE, NULL);
  g_autofree char *db_path = g_build_filename (dir, DB_FILE, NULL);
  g_autoptr (TallyIssuer) issuer = issuer_new (dir);

  if (!tally_key_file_read (key_path, issuer->secret_key, error))
    return NULL;
  crypto_sign_ed25519_sk_to_pk (issuer->public_key, issuer->secret_key);
  tally_key_id_from_key (issuer->public_key, issuer->key_id);

  issuer->store = tally_issuer_store_sqlite_open (db_path, FALSE, error);
  if (issuer->store == NULL || !tally_issuer_store_begin (issuer->store, error))
    return NULL;
  gboolean ok =
    tally_issuer_store_meta_get (issuer->store, META_KEY_SET, &issuer->key_set, error);
  if (!finish (issuer, ok, error))
    return NULL;

  gsize len;
  const guint8 *data = g_bytes_get_data (issuer->key_set, &len);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, error);
  if (env == NULL)
    return NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (Tally__IssuerKeySet) ks = NULL;
  if (tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                             issuer->public_key, &local))
    ks = TALLY_UNPACK (Tally__IssuerKeySet, tally__issuer_key_set, env->body.data, env->body.len,
                       "issuer key set", &local);
  if (ks == NULL || ks->public_key.len != TALLY_PUBLIC_KEY_BYTES ||
      memcmp (ks->public_key.data, issuer->public_key, TALLY_PUBLIC_KEY_BYTES) != 0 ||
      !tally_currency_is_valid (ks->currency)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s does not belong to %s%s%s", key_path,
                 db_path, local ? ": " : "", local ? local->message : "");
    return NULL;
  }
  issuer->name = g_strdup (ks->name);
  issuer->currency = g_strdup (ks->currency);
  return g_steal_pointer (&issuer);
}

const guint8 *
tally_issuer_get_public_key (TallyIssuer *issuer)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  return issuer->public_key;
}

const char *
tally_issuer_get_currency (TallyIssuer *issuer)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  return issuer->currency;
}

GBytes *
tally_issuer_get_key_set (TallyIssuer *issuer)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  return g_bytes_ref (issuer->key_set);
}

/* --- accounts ------------------------------------------------------------------ */

gboolean
tally_issuer_account_create (TallyIssuer *issuer, const char *name, GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  if (!check_name (name, "account name", error) ||
      !tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = tally_issuer_store_account_insert (issuer->store, name, error);
  return finish (issuer, ok, error);
}

static gboolean
deposit_locked (TallyIssuer *issuer, const char *account, gint64 amount, GError **error)
{
  gint64 balance;
  TallyIssuerTotals totals;
  if (!tally_issuer_store_account_get (issuer->store, account, &balance, error) ||
      !tally_issuer_store_totals_get (issuer->store, &totals, error) ||
      !tally_amount_add (balance, amount, &balance, error) ||
      !tally_amount_add (totals.issued, amount, &totals.issued, error))
    return FALSE;
  return tally_issuer_store_account_put (issuer->store, account, balance, error) &&
         tally_issuer_store_totals_put (issuer->store, &totals, error);
}

gboolean
tally_issuer_deposit (TallyIssuer *issuer, const char *account, gint64 amount, GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);

  if (!check_amount (amount, error) || !tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  return finish (issuer, deposit_locked (issuer, account, amount, error), error);
}

gboolean
tally_issuer_account_balance (TallyIssuer *issuer,
                              const char *account,
                              gint64 *balance,
                              GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (account != NULL, FALSE);
  g_return_val_if_fail (balance != NULL, FALSE);

  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = tally_issuer_store_account_get (issuer->store, account, balance, error);
  return finish (issuer, ok, error);
}

/* --- certificates ------------------------------------------------------------------ */

static GBytes *
sign_certificate (TallyIssuer *issuer,
                  const TallyIssuerRegisterRow *row,
                  guint64 not_before,
                  guint64 not_after)
{
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
  return sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                       &cert.base);
}

static gboolean
check_limits (const Tally__Limits *limits, guint64 not_before, guint64 not_after, GError **error)
{
  if (limits->max_payment <= 0 || limits->max_payment > TALLY_AMOUNT_MAX ||
      limits->balance_cap <= 0 || limits->balance_cap > TALLY_AMOUNT_MAX ||
      limits->max_offline_payments == 0 || limits->max_offline_seconds == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_ARGUMENT,
                 "limits must be positive and amounts at most %" G_GINT64_FORMAT,
                 TALLY_AMOUNT_MAX);
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

static GBytes *
certify_locked (TallyIssuer *issuer,
                const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
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
  } else if (is_not_found (local)) {
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

  if (!tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;
  return sign_certificate (issuer, &row, not_before, not_after);
}

GBytes *
tally_issuer_certify (TallyIssuer *issuer,
                      const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
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

  if (!check_limits (limits, not_before, not_after, error))
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
  g_autoptr (GBytes) cert =
    certify_locked (issuer, register_key, account, display_name, limits, not_before, not_after,
                    error);
  if (!finish (issuer, cert != NULL, error))
    return NULL;
  return g_steal_pointer (&cert);
}

/* --- vouchers ----------------------------------------------------------------------- */

static GBytes *
sell_voucher_locked (TallyIssuer *issuer,
                     const guint8 register_id[TALLY_ID_BYTES],
                     gint64 amount,
                     guint64 now,
                     GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 balance;
  guint64 sequence;
  if (!tally_issuer_store_register_get (issuer->store, register_id, &row, error))
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
  if (!add_signed (row.view_balance, amount, &row.view_balance, error) ||
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
    sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER, &v.base);

  if (!tally_issuer_store_voucher_insert (issuer->store, register_id, sequence, amount, now, env,
                                          error) ||
      !tally_issuer_store_account_put (issuer->store, row.account, balance - amount, error) ||
      !tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;
  return g_steal_pointer (&env);
}

GBytes *
tally_issuer_sell_voucher (TallyIssuer *issuer,
                           const guint8 register_id[TALLY_ID_BYTES],
                           gint64 amount,
                           guint64 now,
                           GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (register_id != NULL, NULL);

  if (!check_amount (amount, error) || !tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GBytes) env = sell_voucher_locked (issuer, register_id, amount, now, error);
  if (!finish (issuer, env != NULL, error))
    return NULL;
  return g_steal_pointer (&env);
}

/* --- reconciliation ------------------------------------------------------------------ */

typedef struct
{
  TallyIssuer *issuer;
  guint64 now;
  guint8 register_id[TALLY_ID_BYTES]; /* the register whose bundle this is */
  guint8 register_key[TALLY_PUBLIC_KEY_BYTES];
  TallyIssuerTotals totals;
  TallyReconcileReport report;
  gboolean revocations_changed;
  GPtrArray *new_proofs;       /* TallyIssuerFraudRow */
  GPtrArray *settled_received; /* GBytes, permission hashes */
  guint64 settled_voucher_sequence; /* highest voucher the bundle showed */
  GArray *spent;                    /* Booking, the bundle's own entries */
  GPtrArray *reclaimed;             /* GBytes, hashes of own permissions reclaimed */
  GPtrArray *receipts;              /* Tally__SignedEnvelope, payees' receipts to return */
} Reconcile;

/* One entry of a payer's chain as this bundle reports it. */
typedef struct
{
  const Tally__SignedEnvelope *env;
  TallyIssuerEntryKind kind;
  guint8 hash[TALLY_HASH_BYTES];
  guint8 payer[TALLY_ID_BYTES];
  gboolean has_payee;
  guint8 payee[TALLY_ID_BYTES];
  guint64 counter;
  guint8 chain_prev[TALLY_HASH_BYTES];
  guint8 chain_after[TALLY_HASH_BYTES];
  gint64 amount;
  guint64 expires_at;  /* 0: the permission never expires */
  gboolean payer_half; /* reported by the payer in its own bundle */
  gboolean payee_half; /* the payee's receipt is known */
  const Tally__SignedEnvelope *receipt; /* that receipt, when payee_half */
} Booking;

static void
entry_enter_state (TallyIssuerEntryRow *row, TallyIssuerEntryState state)
{
  g_autofree char *hex = short_hex (row->hash);
  g_debug ("entry %s (%s, counter %" G_GUINT64_FORMAT "): %s -> %s", hex,
           tally_issuer_entry_kind_to_string (row->kind), row->counter,
           tally_issuer_entry_state_to_string (row->state),
           tally_issuer_entry_state_to_string (state));
  row->state = state;
}

static gboolean
adjust_view (Reconcile *rc, const guint8 register_id[TALLY_ID_BYTES], gint64 delta, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         add_signed (row.view_balance, delta, &row.view_balance, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

static gboolean
credit_account_of (Reconcile *rc, const guint8 register_id[TALLY_ID_BYTES], gint64 amount,
                   GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 balance;
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         tally_issuer_store_account_get (rc->issuer->store, row.account, &balance, error) &&
         tally_amount_add (balance, amount, &balance, error) &&
         tally_issuer_store_account_put (rc->issuer->store, row.account, balance, error);
}

static void
count_new (Reconcile *rc, const Booking *b)
{
  switch (b->kind) {
  case TALLY_ISSUER_ENTRY_DEFUND:
    rc->report.defunds++;
    break;
  case TALLY_ISSUER_ENTRY_PERMISSION:
    if (b->payer_half)
      rc->report.spent_new++;
    else
      rc->report.received_new++;
    break;
  }
}

/* Signs and stores a proof that @register_id signed two incompatible
 * objects: two chain entries, or a receipt and a bundle that could not both
 * come from an honest register.  @second is NULL only for a first entry that
 * does not start at the genesis head: that entry proves the fork on its own,
 * because the genesis head is a function of the register id. */
static gboolean
record_fraud_deficit (Reconcile *rc,
                      const guint8 register_id[TALLY_ID_BYTES],
                      Tally__FraudKind kind,
                      const Tally__SignedEnvelope *first,
                      const Tally__SignedEnvelope *second,
                      gint64 deficit,
                      GError **error)
{
  Tally__FraudProof fp = TALLY__FRAUD_PROOF__INIT;
  fp.deficit = deficit;
  fp.register_id.data = (guint8 *) register_id;
  fp.register_id.len = TALLY_ID_BYTES;
  fp.kind = kind;
  fp.first = (Tally__SignedEnvelope *) first;
  fp.second = (Tally__SignedEnvelope *) second;
  fp.detected_at = rc->now;

  TallyIssuerFraudRow *row = g_new0 (TallyIssuerFraudRow, 1);
  memcpy (row->register_id, register_id, TALLY_ID_BYTES);
  row->kind = kind;
  row->detected_at = rc->now;
  row->envelope =
    sign_message (rc->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF, &fp.base);
  g_ptr_array_add (rc->new_proofs, row);
  if (!tally_issuer_store_fraud_proof_insert (rc->issuer->store, row, error))
    return FALSE;

  rc->report.fraud_proofs++;
  g_autofree char *hex = tally_hex_encode (register_id, TALLY_ID_BYTES);
  g_info ("fraud by register %s: %s", hex, tally_issuer_fraud_kind_to_string (kind));
  return TRUE;
}

static gboolean
record_fraud (Reconcile *rc,
              const guint8 register_id[TALLY_ID_BYTES],
              Tally__FraudKind kind,
              const Tally__SignedEnvelope *first,
              const Tally__SignedEnvelope *second,
              GError **error)
{
  return record_fraud_deficit (rc, register_id, kind, first, second, 0, error);
}

static gboolean
entries_at (Reconcile *rc,
            const guint8 register_id[TALLY_ID_BYTES],
            guint64 counter,
            GPtrArray **rows,
            GError **error)
{
  return tally_issuer_store_entries_by_counter (rc->issuer->store, register_id, counter, rows,
                                                error);
}

/*
 * Double-spending detection for an entry not booked before: another entry
 * at the same counter is counter reuse; an entry that does not extend the
 * head after any known entry at counter - 1 (or the genesis head at
 * counter 1), or that a known entry at counter + 1 does not extend, is a
 * fork.  Sets *fraud when either holds.
 */
static gboolean
detect_fraud (Reconcile *rc, const Booking *b, gboolean *fraud, GError **error)
{
  g_autoptr (GPtrArray) same = NULL;
  *fraud = FALSE;

  if (!entries_at (rc, b->payer, b->counter, &same, error))
    return FALSE;
  if (same->len > 0) {
    const TallyIssuerEntryRow *first = same->pdata[0];
    g_autoptr (Tally__SignedEnvelope) env = decode_stored (first->envelope, error);
    if (env == NULL ||
        !record_fraud (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED, env, b->env,
                       error))
      return FALSE;
    *fraud = TRUE;
  }

  if (b->counter == 1) {
    guint8 genesis[TALLY_HASH_BYTES];
    tally_chain_genesis (b->payer, genesis);
    if (memcmp (genesis, b->chain_prev, TALLY_HASH_BYTES) != 0) {
      if (!record_fraud (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, b->env, NULL,
                         error))
        return FALSE;
      *fraud = TRUE;
    }
  } else {
    g_autoptr (GPtrArray) prev = NULL;
    if (!entries_at (rc, b->payer, b->counter - 1, &prev, error))
      return FALSE;
    gboolean extends = prev->len == 0;
    for (guint i = 0; i < prev->len && !extends; i++) {
      const TallyIssuerEntryRow *p = prev->pdata[i];
      extends = memcmp (p->chain_after, b->chain_prev, TALLY_HASH_BYTES) == 0;
    }
    if (!extends) {
      const TallyIssuerEntryRow *p = prev->pdata[0];
      g_autoptr (Tally__SignedEnvelope) env = decode_stored (p->envelope, error);
      if (env == NULL ||
          !record_fraud (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, env, b->env,
                         error))
        return FALSE;
      *fraud = TRUE;
    }
  }

  /* Payees may reconcile before their payer: check the known successor. */
  if (same->len == 0 && b->counter < G_MAXUINT64) {
    g_autoptr (GPtrArray) next = NULL;
    if (!entries_at (rc, b->payer, b->counter + 1, &next, error))
      return FALSE;
    for (guint i = 0; i < next->len; i++) {
      const TallyIssuerEntryRow *n = next->pdata[i];
      if (memcmp (n->chain_prev, b->chain_after, TALLY_HASH_BYTES) == 0)
        continue;
      g_autoptr (Tally__SignedEnvelope) env = decode_stored (n->envelope, error);
      if (env == NULL ||
          !record_fraud (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK, b->env, env,
                         error))
        return FALSE;
      *fraud = TRUE;
      break;
    }
  }
  return TRUE;
}

static gboolean
is_expired_at (guint64 expires_at, guint64 horizon)
{
  return expires_at != 0 && expires_at <= horizon;
}

/* The payee's horizon; 0 for a payee this issuer never certified, which can
 * never prove that it did not credit a permission. */
static gboolean
payee_horizon (Reconcile *rc, const guint8 payee[TALLY_ID_BYTES], guint64 *horizon, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autoptr (GError) local = NULL;
  *horizon = 0;
  if (tally_issuer_store_register_get (rc->issuer->store, payee, &row, &local)) {
    *horizon = row.horizon;
    return TRUE;
  }
  if (is_not_found (local))
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/*
 * The register's evidence through @counter (protocol.md 5.5): vouchers sold
 * to it, plus payments to it that are settled, minus the signed amounts of
 * all its own entries booked with a counter up to @counter.  An honest
 * register's balance after its entry at @counter is never more than this,
 * because every payment it had received by then is booked once its bundle
 * is, and it has loaded no voucher the issuer did not sell.
 */
static gboolean
evidence_through (Reconcile *rc,
                  const guint8 register_id[TALLY_ID_BYTES],
                  guint64 counter,
                  gint64 *backed,
                  GError **error)
{
  TallyIssuerEvidence ev;
  return tally_issuer_store_register_evidence (rc->issuer->store, register_id, counter, &ev,
                                               error) &&
         add_signed (ev.vouchers, ev.received, backed, error) &&
         add_signed (*backed, -ev.spent, backed, error);
}

/* @amount of a reclaim the evidence does not back goes back to the
 * register's view and is counted as refused. */
static gboolean
refuse_to (Reconcile *rc, const guint8 register_id[TALLY_ID_BYTES], gint64 amount, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  g_autofree char *hex = short_hex (register_id);
  g_info ("register %s: %" G_GINT64_FORMAT " of a reclaim not backed by evidence is refused", hex,
          amount);
  rc->report.refused += amount;
  return tally_issuer_store_register_get (rc->issuer->store, register_id, &row, error) &&
         add_signed (row.view_balance, amount, &row.view_balance, error) &&
         add_signed (row.refused, amount, &row.refused, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

/*
 * Reclaim (protocol.md 5): the payee reconciled a bundle made at or after
 * the permission's expiry that did not list it, and an honest payee refuses
 * it from then on, so the value goes back to the payer's online account as
 * a defund's would.  Only IN_FLIGHT leaves for RECLAIMED, and nothing leaves
 * RECLAIMED, so the credit happens once however often the entry is listed.
 */
static gboolean
reclaim (Reconcile *rc, TallyIssuerEntryRow *row, GError **error)
{
  g_return_val_if_fail (row->state == TALLY_ISSUER_ENTRY_IN_FLIGHT, FALSE);
  g_return_val_if_fail (row->kind == TALLY_ISSUER_ENTRY_PERMISSION, FALSE);

  /* Like a defund (5.5): the refund goes online only as far as the payer's
   * evidence before this permission backs it; what it does not back stays
   * in the payer's view, where it came from, and is refused. */
  gint64 backed;
  if (!evidence_through (rc, row->register_id, row->counter, &backed, error) ||
      !add_signed (backed, row->amount, &backed, error))
    return FALSE;
  row->credited = CLAMP (backed, 0, row->amount);
  gint64 refused = row->amount - row->credited;

  TallyIssuerTotals *t = &rc->totals;
  if (!add_signed (t->in_flight, -row->amount, &t->in_flight, error) ||
      !add_signed (t->reclaimed, row->credited, &t->reclaimed, error) ||
      !credit_account_of (rc, row->register_id, row->credited, error) ||
      (refused > 0 && !refuse_to (rc, row->register_id, refused, error)))
    return FALSE;
  t->reclaimed_count++;
  entry_enter_state (row, TALLY_ISSUER_ENTRY_RECLAIMED);
  if (!tally_issuer_store_entry_update (rc->issuer->store, row, error))
    return FALSE;
  rc->report.reclaimed++;
  rc->report.reclaimed_amount += row->credited;
  return TRUE;
}

/*
 * A late receipt (protocol.md 5.3): @payee signed @receipt for a permission
 * that a bundle of its own, made at or after the expiry, did not list.  An
 * honest register cannot do both, so it was rolled back or cloned.  The
 * evidence is the bundle that set the payee's current horizon: horizons only
 * rise, and a bundle that had listed the permission would have booked the
 * payee's half when it was reconciled.
 */
static gboolean
prove_late_receipt (Reconcile *rc,
                    const guint8 payee[TALLY_ID_BYTES],
                    const Tally__SignedEnvelope *receipt,
                    GError **error)
{
  g_return_val_if_fail (receipt != NULL, FALSE);

  g_autoptr (GBytes) bundle_bytes = NULL;
  g_autoptr (GError) local = NULL;
  if (!tally_issuer_store_horizon_bundle_get (rc->issuer->store, payee, &bundle_bytes, &local)) {
    if (is_not_found (local))
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                   "payee has a horizon but no bundle that set it");
    else
      g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  g_autoptr (Tally__SignedEnvelope) bundle = decode_stored (bundle_bytes, error);
  gboolean changed;
  if (bundle == NULL || !mark_revoked (rc->issuer, payee, &changed, error) ||
      !record_fraud (rc, payee, TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT, receipt, bundle, error))
    return FALSE;
  rc->revocations_changed |= changed;
  rc->report.late_receipts++;
  return TRUE;
}

/*
 * A defund is credited only up to the register's evidence over every entry
 * of it booked so far, whatever the counter: whatever a rolled-back,
 * edited or cloned register claims beyond that is refused and never reaches
 * an account.  Bounding by the entries below the defund's counter only
 * would let a clone's defund at an old counter be credited against value a
 * later defund already took.  An honest register closes at its defund, so
 * nothing of its is ever booked above one.  Called before the defund's own
 * row is booked and after every permission the bundle lists (defunds are
 * booked last, and a bundle with a gap is refused whole).  A revoked
 * register may still defund what its evidence backs: the value is its
 * account holder's.
 */
static gboolean
defund_credit (Reconcile *rc, const Booking *b, gint64 *credited, GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  gint64 backed = 0;
  if (!tally_issuer_store_register_get (rc->issuer->store, b->payer, &row, error) ||
      !evidence_through (rc, b->payer, G_MAXINT64, &backed, error))
    return FALSE;
  *credited = CLAMP (backed, 0, b->amount);
  gint64 refused = b->amount - *credited;
  if (refused == 0)
    return TRUE;

  g_autofree char *hex = short_hex (b->payer);
  g_info ("register %s: defund at counter %" G_GUINT64_FORMAT " credited %" G_GINT64_FORMAT
          " of %" G_GINT64_FORMAT ": the rest is not backed by evidence",
          hex, b->counter, *credited, b->amount);
  rc->report.refused += refused;
  return add_signed (row.refused, refused, &row.refused, error) &&
         tally_issuer_store_register_put (rc->issuer->store, &row, error);
}

/* TRUE in *over when @amount is above every max_payment @payer was ever
 * certified with: no honest register signs it, no honest payee accepts it. */
static gboolean
over_limit (Reconcile *rc,
            const guint8 payer[TALLY_ID_BYTES],
            gint64 amount,
            gboolean *over,
            GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, payer, &row, error))
    return FALSE;
  *over = amount > row.max_payment_ever;
  return TRUE;
}

static gboolean
prove_and_revoke (Reconcile *rc,
                  const guint8 register_id[TALLY_ID_BYTES],
                  Tally__FraudKind kind,
                  const Tally__SignedEnvelope *first,
                  const Tally__SignedEnvelope *second,
                  GError **error)
{
  gboolean changed;
  if (!record_fraud (rc, register_id, kind, first, second, error) ||
      !mark_revoked (rc->issuer, register_id, &changed, error))
    return FALSE;
  rc->revocations_changed |= changed;
  return TRUE;
}

/*
 * The payee's half of a permission above its payer's limit (protocol.md
 * 5.5): the payee skipped a check every honest payee makes, so it is proven
 * and revoked, and the half is booked tainted: it moves the value to the
 * payee's view but is no evidence for it, so the payee cannot defund it.
 */
static gboolean
taint_payee_half (Reconcile *rc,
                  const Booking *b,
                  TallyIssuerEntryRow *row,
                  GError **error)
{
  row->tainted = TRUE;
  return prove_and_revoke (rc, b->payee, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT, b->receipt,
                           b->env, error);
}

static gboolean
book_new (Reconcile *rc, const Booking *b, GError **error)
{
  gboolean fraud, over;
  if (!detect_fraud (rc, b, &fraud, error))
    return FALSE;
  if (fraud) {
    /* The payee accepted in good faith: the entry is still booked below.
     * The payer is revoked; what it spent beyond its evidence shows as its
     * negative view, which the audit counts as exposure. */
    gboolean changed;
    if (!mark_revoked (rc->issuer, b->payer, &changed, error))
      return FALSE;
    rc->revocations_changed |= changed;
  }
  /* The payee's half of a permission not booked before but expired at or
   * before the payee's horizon: nothing was given back, so it books as
   * paid, but the payee register is proven rolled back (5.3). */
  if (b->payee_half) {
    guint64 horizon;
    if (!payee_horizon (rc, b->payee, &horizon, error))
      return FALSE;
    if (is_expired_at (b->expires_at, horizon) &&
        !prove_late_receipt (rc, b->payee, b->receipt, error))
      return FALSE;
  }

  g_auto (TallyIssuerEntryRow) row = { 0 };
  memcpy (row.hash, b->hash, TALLY_HASH_BYTES);
  memcpy (row.register_id, b->payer, TALLY_ID_BYTES);
  row.counter = b->counter;
  row.kind = b->kind;
  row.has_payee = b->has_payee;
  if (b->has_payee)
    memcpy (row.payee_id, b->payee, TALLY_ID_BYTES);
  row.amount = b->amount;
  row.payer_reported = b->payer_half;
  row.payee_reported = b->payee_half;
  memcpy (row.chain_prev, b->chain_prev, TALLY_HASH_BYTES);
  memcpy (row.chain_after, b->chain_after, TALLY_HASH_BYTES);
  row.envelope = tally_envelope_pack (b->env);
  row.booked_at = rc->now;
  row.expires_at = b->expires_at;
  if (b->payee_half)
    row.receipt = tally_envelope_pack (b->receipt);

  switch (b->kind) {
  case TALLY_ISSUER_ENTRY_DEFUND:
    if (!defund_credit (rc, b, &row.credited, error) ||
        !adjust_view (rc, b->payer, -row.credited, error) ||
        !credit_account_of (rc, b->payer, row.credited, error))
      return FALSE;
    row.state = TALLY_ISSUER_ENTRY_SETTLED;
    break;
  case TALLY_ISSUER_ENTRY_PERMISSION:
    if (!adjust_view (rc, b->payer, -b->amount, error) ||
        !over_limit (rc, b->payer, b->amount, &over, error) ||
        (over && !prove_and_revoke (rc, b->payer, TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT, b->env,
                                    b->payee_half ? b->receipt : NULL, error)) ||
        (over && b->payee_half && !taint_payee_half (rc, b, &row, error)))
      return FALSE;
    if (b->payee_half) {
      if (!adjust_view (rc, b->payee, b->amount, error))
        return FALSE;
      row.state = TALLY_ISSUER_ENTRY_SETTLED;
    } else {
      if (!add_signed (rc->totals.in_flight, b->amount, &rc->totals.in_flight, error))
        return FALSE;
      row.state = TALLY_ISSUER_ENTRY_IN_FLIGHT;
    }
    break;
  }

  g_autofree char *hex = short_hex (row.hash);
  g_debug ("entry %s (%s, counter %" G_GUINT64_FORMAT ") booked %s", hex,
           tally_issuer_entry_kind_to_string (row.kind), row.counter,
           tally_issuer_entry_state_to_string (row.state));
  if (!tally_issuer_store_entry_insert (rc->issuer->store, &row, error))
    return FALSE;
  count_new (rc, b);

  /* The payee may have reconciled past the expiry before the payer. */
  if (row.state == TALLY_ISSUER_ENTRY_IN_FLIGHT) {
    guint64 horizon;
    if (!payee_horizon (rc, b->payee, &horizon, error))
      return FALSE;
    if (is_expired_at (row.expires_at, horizon) && !reclaim (rc, &row, error))
      return FALSE;
  }
  return TRUE;
}

/* An entry booked before is a duplicate; it may still bring the half that
 * was missing, which settles an entry in flight. */
static gboolean
book_again (Reconcile *rc, const Booking *b, TallyIssuerEntryRow *row, GError **error)
{
  gboolean added = FALSE;

  rc->report.duplicates++;
  if (b->payer_half && !row->payer_reported) {
    row->payer_reported = TRUE;
    added = TRUE;
  }
  if (b->payee_half && !row->payee_reported) {
    gboolean over;
    row->payee_reported = TRUE;
    added = TRUE;
    if (!over_limit (rc, row->register_id, row->amount, &over, error) ||
        (over && !taint_payee_half (rc, b, row, error)))
      return FALSE;
    switch (row->state) {
    case TALLY_ISSUER_ENTRY_IN_FLIGHT:
      if (!add_signed (rc->totals.in_flight, -row->amount, &rc->totals.in_flight, error) ||
          !adjust_view (rc, row->payee_id, row->amount, error))
        return FALSE;
      entry_enter_state (row, TALLY_ISSUER_ENTRY_SETTLED);
      break;
    case TALLY_ISSUER_ENTRY_SETTLED:
      break;
    case TALLY_ISSUER_ENTRY_RECLAIMED:
      /* Not credited twice: the payer holds the value online already and
       * the payee's register holds it beyond the issuer's view.  Once the
       * payee spends it, its view goes negative: exposure (5.5). */
      if (!prove_late_receipt (rc, row->payee_id, b->receipt, error))
        return FALSE;
      break;
    }
  }
  /* Kept so that a payer listing the entry without one gets it back. */
  if (b->payee_half && row->receipt == NULL) {
    row->receipt = tally_envelope_pack (b->receipt);
    added = TRUE;
  }
  return !added || tally_issuer_store_entry_update (rc->issuer->store, row, error);
}

static gboolean
book (Reconcile *rc, const Booking *b, GError **error)
{
  g_auto (TallyIssuerEntryRow) row = { 0 };
  g_autoptr (GError) local = NULL;

  if (tally_issuer_store_entry_get_by_hash (rc->issuer->store, b->hash, &row, &local))
    return book_again (rc, b, &row, error);
  if (!is_not_found (local)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  return book_new (rc, b, error);
}

static gboolean
check_id (const ProtobufCBinaryData *field, const guint8 expect[TALLY_ID_BYTES])
{
  return field->len == TALLY_ID_BYTES && memcmp (field->data, expect, TALLY_ID_BYTES) == 0;
}

static gboolean
check_chain_fields (guint64 counter, const ProtobufCBinaryData *chain_prev, GError **error)
{
  if (counter == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "entry counter must start at 1");
    return FALSE;
  }
  /* The ledger compares counters as signed 64-bit integers. */
  if (counter > G_MAXINT64) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "entry counter %" G_GUINT64_FORMAT " is beyond 2^63 - 1", counter);
    return FALSE;
  }
  return tally_check_bytes (chain_prev, TALLY_HASH_BYTES, "entry chain head", error);
}

/* Decodes a permission whose signature has been checked. */
static gboolean
parse_permission (Reconcile *rc, const Tally__SignedEnvelope *env, Booking *b, GError **error)
{
  g_autoptr (Tally__DepositPermission) p =
    TALLY_UNPACK (Tally__DepositPermission, tally__deposit_permission, env->body.data,
                  env->body.len, "permission", error);
  if (p == NULL ||
      !tally_check_bytes (&p->payer_register_id, TALLY_ID_BYTES, "payer register id", error) ||
      !tally_check_bytes (&p->payee_register_id, TALLY_ID_BYTES, "payee register id", error) ||
      !tally_amount_check (p->amount, rc->issuer->currency, error) ||
      !check_chain_fields (p->counter, &p->chain_prev, error))
    return FALSE;
  /* No honest register pays itself (the peer check refuses it), and a
   * payment to oneself would count as received evidence at any counter
   * while it is spent at one: refused, so the evidence stays sound (5.5). */
  if (memcmp (p->payer_register_id.data, p->payee_register_id.data, TALLY_ID_BYTES) == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "permission pays the register that signed it");
    return FALSE;
  }

  *b = (Booking) { 0 };
  b->env = env;
  b->kind = TALLY_ISSUER_ENTRY_PERMISSION;
  tally_envelope_body_hash (env, b->hash);
  memcpy (b->payer, p->payer_register_id.data, TALLY_ID_BYTES);
  b->has_payee = TRUE;
  memcpy (b->payee, p->payee_register_id.data, TALLY_ID_BYTES);
  b->counter = p->counter;
  memcpy (b->chain_prev, p->chain_prev.data, TALLY_HASH_BYTES);
  tally_chain_next (b->chain_prev, b->hash, b->chain_after);
  b->amount = p->amount->value;
  b->expires_at = p->expires_at;
  return TRUE;
}

static gboolean
parse_defund (Reconcile *rc, const Tally__SignedEnvelope *env, Booking *b, GError **error)
{
  g_autoptr (Tally__DefundRecord) d = TALLY_UNPACK (
    Tally__DefundRecord, tally__defund_record, env->body.data, env->body.len, "defund", error);
  if (d == NULL ||
      !tally_check_bytes (&d->register_id, TALLY_ID_BYTES, "defund register id", error) ||
      !tally_amount_check (d->amount, rc->issuer->currency, error) ||
      !check_chain_fields (d->counter, &d->chain_prev, error))
    return FALSE;

  *b = (Booking) { 0 };
  b->env = env;
  b->kind = TALLY_ISSUER_ENTRY_DEFUND;
  tally_envelope_body_hash (env, b->hash);
  memcpy (b->payer, d->register_id.data, TALLY_ID_BYTES);
  b->counter = d->counter;
  memcpy (b->chain_prev, d->chain_prev.data, TALLY_HASH_BYTES);
  tally_chain_next (b->chain_prev, b->hash, b->chain_after);
  b->amount = d->amount->value;
  b->payer_half = TRUE;
  return TRUE;
}

/* The payee's receipt for the permission in @b, signed by @payee_key. */
static gboolean
check_receipt (Reconcile *rc,
               const Tally__SignedEnvelope *env,
               const guint8 payee_key[TALLY_PUBLIC_KEY_BYTES],
               const Booking *b,
               GError **error)
{
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT, payee_key,
                              error))
    return FALSE;
  g_autoptr (Tally__Receipt) r = TALLY_UNPACK (Tally__Receipt, tally__receipt, env->body.data,
                                               env->body.len, "receipt", error);
  if (r == NULL)
    return FALSE;
  if (!check_id (&r->payee_register_id, b->payee) || !check_id (&r->payer_register_id, b->payer) ||
      r->payer_counter != b->counter || r->permission_hash.len != TALLY_HASH_BYTES ||
      memcmp (r->permission_hash.data, b->hash, TALLY_HASH_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "receipt is for another permission");
    return FALSE;
  }
  if (!tally_amount_check (r->amount, rc->issuer->currency, error))
    return FALSE;
  if (r->amount->value != b->amount) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_AMOUNT_MISMATCH,
                 "receipt amount differs from the permission");
    return FALSE;
  }
  return TRUE;
}

/* A receipt carried by the payer counts as the payee's half when it verifies
 * under the payee's certified key; anything else is ignored, not fatal: the
 * payee's own bundle will settle the entry. */
static gboolean
payer_holds_receipt (Reconcile *rc,
                     const Tally__SignedEnvelope *receipt,
                     const Booking *b,
                     gboolean *counts,
                     GError **error)
{
  g_auto (TallyIssuerRegisterRow) payee = { 0 };
  g_autoptr (GError) local = NULL;
  *counts = FALSE;
  if (!tally_issuer_store_register_get (rc->issuer->store, b->payee, &payee, &local)) {
    if (!is_not_found (local)) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  } else {
    *counts = check_receipt (rc, receipt, payee.public_key, b, &local);
  }
  if (!*counts) {
    g_autofree char *hex = short_hex (b->hash);
    g_info ("receipt for entry %s not counted: %s", hex, local->message);
  }
  return TRUE;
}

static gboolean
parse_spent (Reconcile *rc, const Tally__SpentEntry *spent, Booking *b, GError **error)
{
  if (spent == NULL || spent->permission == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "spent entry without a permission");
    return FALSE;
  }
  const Tally__SignedEnvelope *env = spent->permission;
  if (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION) {
    if (!tally_envelope_verify (env, env->context, rc->register_key, error) ||
        !parse_permission (rc, env, b, error))
      return FALSE;
    b->payer_half = TRUE;
  } else if (env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND) {
    if (!tally_envelope_verify (env, env->context, rc->register_key, error) ||
        !parse_defund (rc, env, b, error))
      return FALSE;
  } else {
    const char *label = tally_context_label (env->context);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT,
                 "spent entry signed as \"%s\", expected a permission or defund",
                 label ? label : "unknown");
    return FALSE;
  }
  if (memcmp (b->payer, rc->register_id, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "spent entry names another register as its payer");
    return FALSE;
  }
  if (b->kind == TALLY_ISSUER_ENTRY_PERMISSION && spent->receipt != NULL) {
    if (!payer_holds_receipt (rc, spent->receipt, b, &b->payee_half, error))
      return FALSE;
    if (b->payee_half)
      b->receipt = spent->receipt;
  }
  return TRUE;
}

/* Permissions in counter order, then defunds in counter order: a defund is
 * judged against every other entry the bundle lists (an honest register
 * closes at its defund, so nothing of its follows one). */
static gint
compare_booking_counter (gconstpointer a, gconstpointer b)
{
  const Booking *x = a, *y = b;
  gboolean dx = x->kind == TALLY_ISSUER_ENTRY_DEFUND, dy = y->kind == TALLY_ISSUER_ENTRY_DEFUND;
  if (dx != dy)
    return dx ? 1 : -1;
  return x->counter < y->counter ? -1 : x->counter > y->counter ? 1 : 0;
}

static gboolean
book_spent (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  GArray *bookings = rc->spent;
  for (gsize i = 0; i < bundle->n_spent; i++) {
    Booking b;
    if (!parse_spent (rc, bundle->spent[i], &b, error)) {
      g_prefix_error (error, "spent entry %zu: ", i);
      return FALSE;
    }
    g_array_append_val (bookings, b);
  }
  /* In counter order, so each entry meets its predecessor's chain head
   * (an entry booked before its predecessor is checked by its successor
   * test in detect_fraud), defunds last. */
  g_array_sort (bookings, compare_booking_counter);
  for (guint i = 0; i < bookings->len; i++)
    if (!book (rc, &g_array_index (bookings, Booking, i), error))
      return FALSE;
  return TRUE;
}

/* Appends @hash to a list of 32-byte GBytes unless it is there. */
static gboolean
add_hash_once (GPtrArray *hashes, const guint8 hash[TALLY_HASH_BYTES])
{
  for (guint i = 0; i < hashes->len; i++)
    if (memcmp (g_bytes_get_data (hashes->pdata[i], NULL), hash, TALLY_HASH_BYTES) == 0)
      return FALSE;
  g_ptr_array_add (hashes, g_bytes_new (hash, TALLY_HASH_BYTES));
  return TRUE;
}

static gboolean
book_received_one (Reconcile *rc, const Tally__ReceivedEntry *r, GError **error)
{
  if (r == NULL || r->payer_certificate == NULL || r->permission == NULL || r->receipt == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "received entry needs a certificate, a permission and a receipt");
    return FALSE;
  }
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (r->payer_certificate, rc->issuer->public_key, error);
  if (cert == NULL)
    return FALSE;
  if (strcmp (cert->currency, rc->issuer->currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "payer certificate is for %s", cert->currency);
    return FALSE;
  }

  Booking b;
  if (!tally_envelope_verify (r->permission,
                              TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION,
                              cert->register_public_key.data, error) ||
      !parse_permission (rc, r->permission, &b, error))
    return FALSE;
  if (memcmp (b.payer, cert->register_id.data, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_REGISTER,
                 "permission names a payer other than its certificate");
    return FALSE;
  }
  if (memcmp (b.payee, rc->register_id, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_PAYEE,
                 "received permission pays another register");
    return FALSE;
  }
  g_auto (TallyIssuerRegisterRow) payer = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, b.payer, &payer, error)) {
    g_prefix_error (error, "payer: ");
    return FALSE;
  }
  if (!check_receipt (rc, r->receipt, rc->register_key, &b, error))
    return FALSE;
  b.payee_half = TRUE;
  b.receipt = r->receipt;

  if (!book (rc, &b, error))
    return FALSE;
  add_hash_once (rc->settled_received, b.hash);
  return TRUE;
}

static gboolean
book_received (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  for (gsize i = 0; i < bundle->n_received; i++) {
    if (!book_received_one (rc, bundle->received[i], error)) {
      g_prefix_error (error, "received entry %zu: ", i);
      return FALSE;
    }
  }
  return TRUE;
}

/* Vouchers move no value at reconciliation (it moved when sold), but each
 * must be one we issued to this register. */
static gboolean
check_voucher (Reconcile *rc, const Tally__SignedEnvelope *env, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (Tally__LoadVoucher) v = tally_voucher_verify (env, rc->issuer->public_key, &local);
  if (v == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "voucher not issued here: %s",
                 local->message);
    return FALSE;
  }
  if (!check_id (&v->register_id, rc->register_id)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " was issued to another register", v->sequence);
    return FALSE;
  }
  g_autoptr (GBytes) stored_bytes = NULL;
  if (!tally_issuer_store_voucher_get (rc->issuer->store, rc->register_id, v->sequence,
                                       &stored_bytes, &local)) {
    if (!is_not_found (local)) {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " was never sold", v->sequence);
    return FALSE;
  }
  g_autoptr (Tally__SignedEnvelope) stored = decode_stored (stored_bytes, error);
  if (stored == NULL)
    return FALSE;
  if (stored->body.len != env->body.len ||
      memcmp (stored->body.data, env->body.data, env->body.len) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "voucher %" G_GUINT64_FORMAT " differs from the one sold", v->sequence);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_vouchers (Reconcile *rc, const Tally__ReconciliationBundle *bundle, GError **error)
{
  for (gsize i = 0; i < bundle->n_vouchers; i++) {
    if (!check_voucher (rc, bundle->vouchers[i], error)) {
      g_prefix_error (error, "voucher %zu: ", i);
      return FALSE;
    }
    /* Checked above: the body decodes and is one we sold. */
    g_autoptr (Tally__LoadVoucher) v =
      TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher, bundle->vouchers[i]->body.data,
                    bundle->vouchers[i]->body.len, "voucher", NULL);
    if (v != NULL)
      rc->settled_voucher_sequence = MAX (rc->settled_voucher_sequence, v->sequence);
  }
  return TRUE;
}

/*
 * The bundle's created_at is the register's durable horizon: it refuses
 * every permission expiring at or before it.  Raising it reclaims the
 * register's expired incoming permissions still in flight.  Runs after the
 * bundle's received entries are booked, so none of those is reclaimed.
 */
static gboolean
raise_horizon (Reconcile *rc,
               const Tally__ReconciliationBundle *bundle,
               const Tally__SignedEnvelope *env,
               GError **error)
{
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error))
    return FALSE;
  if (bundle->created_at <= row.horizon)
    return TRUE;

  g_autofree char *hex = short_hex (rc->register_id);
  g_debug ("register %s: horizon %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT, hex, row.horizon,
           bundle->created_at);
  row.horizon = bundle->created_at;
  g_autoptr (GBytes) packed = tally_envelope_pack (env);
  g_autoptr (GPtrArray) expired = NULL;
  if (!tally_issuer_store_register_put (rc->issuer->store, &row, error) ||
      !tally_issuer_store_horizon_bundle_put (rc->issuer->store, rc->register_id, packed, error) ||
      !tally_issuer_store_entries_expired_in_flight (rc->issuer->store, rc->register_id,
                                                     row.horizon, &expired, error))
    return FALSE;
  for (guint i = 0; i < expired->len; i++)
    if (!reclaim (rc, expired->pdata[i], error))
      return FALSE;
  return TRUE;
}

/* What the register learns about its own permissions in this bundle: the
 * reclaimed ones, and the payee's receipt for each settled one the bundle
 * listed without a receipt of its own. */
static gboolean
collect_outcomes (Reconcile *rc, GError **error)
{
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < rc->spent->len; i++) {
    const Booking *b = &g_array_index (rc->spent, Booking, i);
    if (b->kind != TALLY_ISSUER_ENTRY_PERMISSION || !add_hash_once (seen, b->hash))
      continue;
    g_auto (TallyIssuerEntryRow) row = { 0 };
    if (!tally_issuer_store_entry_get_by_hash (rc->issuer->store, b->hash, &row, error))
      return FALSE;
    switch (row.state) {
    case TALLY_ISSUER_ENTRY_RECLAIMED:
      g_ptr_array_add (rc->reclaimed, g_bytes_new (b->hash, TALLY_HASH_BYTES));
      break;
    case TALLY_ISSUER_ENTRY_SETTLED:
      if (!b->payee_half && row.receipt != NULL) {
        Tally__SignedEnvelope *receipt = decode_stored (row.receipt, error);
        if (receipt == NULL)
          return FALSE;
        g_ptr_array_add (rc->receipts, receipt);
      }
      break;
    case TALLY_ISSUER_ENTRY_IN_FLIGHT: break;
    }
  }
  return TRUE;
}

/* The bundle's own entry with the highest counter; NULL when it lists none. */
static const Booking *
highest_listed (Reconcile *rc)
{
  const Booking *top = NULL;
  for (guint i = 0; i < rc->spent->len; i++) {
    const Booking *b = &g_array_index (rc->spent, Booking, i);
    if (top == NULL || b->counter > top->counter)
      top = b;
  }
  return top;
}

/* Highest c such that every counter 1..c of the register is booked. */
static gboolean
advance_settled_counter (Reconcile *rc, TallyIssuerRegisterRow *row, GError **error)
{
  while (row->settled_counter < G_MAXUINT64) {
    g_autoptr (GPtrArray) next = NULL;
    if (!entries_at (rc, row->id, row->settled_counter + 1, &next, error))
      return FALSE;
    if (next->len == 0)
      break;
    row->settled_counter++;
  }
  return TRUE;
}

/*
 * A bundle may leave no counter below its highest own entry unbooked
 * (protocol.md 5.5).  Otherwise a register could hide a payment, list a
 * later defund, and have it credited against value the hidden payment had
 * already spent.  An honest register lists every entry the issuer has not
 * settled, so this never refuses one.
 */
static gboolean
check_complete (Reconcile *rc, GError **error)
{
  const Booking *top = highest_listed (rc);
  if (top == NULL)
    return TRUE;
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error) ||
      !advance_settled_counter (rc, &row, error))
    return FALSE;
  if (row.settled_counter >= top->counter)
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_INCOMPLETE,
               "bundle lists counter %" G_GUINT64_FORMAT
               " but no entry at counter %" G_GUINT64_FORMAT " is known",
               top->counter, row.settled_counter + 1);
  return FALSE;
}

/*
 * Once the register's whole bundle is booked, its evidence through the
 * counter it reports must not be negative (protocol.md 5.5).  A deficit is
 * value the register spent that nothing backs: an edited balance, a key
 * used beyond the balance, a clone.  A new or larger deficit is proven with
 * an OVERDRAWN fraud proof and the register is revoked.
 */
static gboolean
check_overdrawn (Reconcile *rc,
                 const Tally__ReconciliationBundle *bundle,
                 const Tally__SignedEnvelope *env,
                 GError **error)
{
  const Booking *top = highest_listed (rc);
  guint64 through = MAX (bundle->counter, top ? top->counter : 0);
  gint64 backed;
  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (through == 0)
    return TRUE;
  if (!evidence_through (rc, rc->register_id, through, &backed, error) ||
      !tally_issuer_store_register_get (rc->issuer->store, rc->register_id, &row, error))
    return FALSE;
  if (backed >= 0 || -backed <= row.deficit)
    return TRUE;

  row.deficit = -backed;
  gboolean changed;
  if (!tally_issuer_store_register_put (rc->issuer->store, &row, error) ||
      !record_fraud_deficit (rc, rc->register_id, TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN, env,
                             top ? top->env : NULL, row.deficit, error) ||
      !mark_revoked (rc->issuer, rc->register_id, &changed, error))
    return FALSE;
  rc->revocations_changed |= changed;
  return TRUE;
}

static GBytes *
sign_result (Reconcile *rc,
             const Tally__SignedEnvelope *bundle_env,
             const TallyIssuerRegisterRow *row,
             GBytes *renewed,
             GError **error)
{
  guint64 serial;
  g_autoptr (GBytes) list_bytes = NULL;
  if (!latest_revocation_list (rc->issuer, &serial, &list_bytes, error))
    return NULL;
  g_autoptr (Tally__SignedEnvelope) list = decode_stored (list_bytes, error);
  if (list == NULL)
    return NULL;
  g_autoptr (Tally__SignedEnvelope) cert = NULL;
  if (renewed != NULL && (cert = decode_stored (renewed, error)) == NULL)
    return NULL;

  /* Proofs against this register, plus any this bundle exposed in others. */
  g_autoptr (GPtrArray) own_proofs = NULL;
  if (!tally_issuer_store_fraud_proof_list (rc->issuer->store, rc->register_id, &own_proofs, error))
    return NULL;
  g_autoptr (GPtrArray) proofs =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);
  for (guint i = 0; i < own_proofs->len + rc->new_proofs->len; i++) {
    const TallyIssuerFraudRow *f = i < own_proofs->len
                                     ? own_proofs->pdata[i]
                                     : rc->new_proofs->pdata[i - own_proofs->len];
    /* New proofs against this register are already among its own. */
    if (i >= own_proofs->len && memcmp (f->register_id, rc->register_id, TALLY_ID_BYTES) == 0)
      continue;
    Tally__SignedEnvelope *env = decode_stored (f->envelope, error);
    if (env == NULL)
      return NULL;
    g_ptr_array_add (proofs, env);
  }

  g_autofree ProtobufCBinaryData *received =
    g_new0 (ProtobufCBinaryData, rc->settled_received->len + 1);
  for (guint i = 0; i < rc->settled_received->len; i++) {
    gsize len;
    received[i].data = (guint8 *) g_bytes_get_data (rc->settled_received->pdata[i], &len);
    received[i].len = len;
  }

  g_autofree ProtobufCBinaryData *reclaimed = g_new0 (ProtobufCBinaryData, rc->reclaimed->len + 1);
  for (guint i = 0; i < rc->reclaimed->len; i++) {
    gsize len;
    reclaimed[i].data = (guint8 *) g_bytes_get_data (rc->reclaimed->pdata[i], &len);
    reclaimed[i].len = len;
  }

  guint8 bundle_hash[TALLY_HASH_BYTES];
  tally_envelope_body_hash (bundle_env, bundle_hash);

  Tally__ReconciliationResult result = TALLY__RECONCILIATION_RESULT__INIT;
  result.register_id.data = rc->register_id;
  result.register_id.len = TALLY_ID_BYTES;
  result.settled_counter = row->settled_counter;
  result.n_settled_received = rc->settled_received->len;
  result.settled_received = received;
  result.revocation_list = list;
  result.renewed_certificate = cert;
  result.reconciled_at = rc->now;
  result.revoked = row->revoked;
  result.n_fraud_proofs = proofs->len;
  result.fraud_proofs = (Tally__SignedEnvelope **) proofs->pdata;
  result.bundle_hash.data = bundle_hash;
  result.bundle_hash.len = TALLY_HASH_BYTES;
  result.settled_voucher_sequence = rc->settled_voucher_sequence;
  result.n_reclaimed = rc->reclaimed->len;
  result.reclaimed = reclaimed;
  result.n_receipts = rc->receipts->len;
  result.receipts = (Tally__SignedEnvelope **) rc->receipts->pdata;
  return sign_message (rc->issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT,
                       &result.base);
}

static GBytes *
reconcile_locked (Reconcile *rc,
                  const guint8 *data,
                  gsize len,
                  GError **error)
{
  TallyIssuer *issuer = rc->issuer;

  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, error);
  if (env == NULL)
    return NULL;
  g_autoptr (Tally__ReconciliationBundle) bundle =
    TALLY_UNPACK (Tally__ReconciliationBundle, tally__reconciliation_bundle, env->body.data,
                  env->body.len, "bundle", error);
  if (bundle == NULL ||
      !tally_check_bytes (&bundle->register_id, TALLY_ID_BYTES, "bundle register id", error))
    return NULL;
  if (bundle->counter > G_MAXINT64) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "bundle counter %" G_GUINT64_FORMAT " is beyond 2^63 - 1", bundle->counter);
    return NULL;
  }
  memcpy (rc->register_id, bundle->register_id.data, TALLY_ID_BYTES);

  g_auto (TallyIssuerRegisterRow) row = { 0 };
  if (!tally_issuer_store_register_get (issuer->store, rc->register_id, &row, error))
    return NULL;
  memcpy (rc->register_key, row.public_key, TALLY_PUBLIC_KEY_BYTES);
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE,
                              rc->register_key, error))
    return NULL;

  g_autofree char *hex = tally_hex_encode (rc->register_id, TALLY_ID_BYTES);
  g_info ("reconciling register %s: %zu spent, %zu received, %zu voucher(s)", hex,
          bundle->n_spent, bundle->n_received, bundle->n_vouchers);

  /* Received entries first: an honest register's evidence then includes
   * every payment it had received before it spent (5.5). */
  if (!tally_issuer_store_totals_get (issuer->store, &rc->totals, error) ||
      !check_vouchers (rc, bundle, error) || !book_received (rc, bundle, error) ||
      !book_spent (rc, bundle, error) || !check_complete (rc, error) ||
      !check_overdrawn (rc, bundle, env, error) || !raise_horizon (rc, bundle, env, error) ||
      !collect_outcomes (rc, error) ||
      !tally_issuer_store_totals_put (issuer->store, &rc->totals, error))
    return NULL;
  if (rc->revocations_changed && !publish_revocation_list (issuer, rc->now, error))
    return NULL;

  /* Re-read: booking may have changed the view and the revocation. */
  tally_issuer_register_row_clear (&row);
  if (!tally_issuer_store_register_get (issuer->store, rc->register_id, &row, error) ||
      !advance_settled_counter (rc, &row, error))
    return NULL;

  g_autoptr (GBytes) renewed = NULL;
  if (!row.revoked) {
    guint64 not_after;
    if (!g_uint64_checked_add (&not_after, rc->now, row.validity)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "certificate validity out of range");
      return NULL;
    }
    row.cert_serial++;
    renewed = sign_certificate (issuer, &row, rc->now, not_after);
  }
  if (!tally_issuer_store_register_put (issuer->store, &row, error))
    return NULL;

  rc->report.revoked = row.revoked;
  return sign_result (rc, env, &row, renewed, error);
}

GBytes *
tally_issuer_reconcile (TallyIssuer *issuer,
                        const guint8 *bundle,
                        gsize len,
                        guint64 now,
                        TallyReconcileReport *report,
                        GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);
  g_return_val_if_fail (bundle != NULL || len == 0, NULL);

  if (report != NULL)
    *report = (TallyReconcileReport) { 0 };

  Reconcile rc = {
    .issuer = issuer,
    .now = now,
    .new_proofs = g_ptr_array_new_with_free_func ((GDestroyNotify) tally_issuer_fraud_row_free),
    .settled_received = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref),
    .spent = g_array_new (FALSE, TRUE, sizeof (Booking)),
    .reclaimed = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref),
    .receipts = g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free),
  };
  g_autoptr (GBytes) result = NULL;
  if (tally_issuer_store_begin (issuer->store, error)) {
    result = reconcile_locked (&rc, bundle, len, error);
    if (!finish (issuer, result != NULL, error))
      g_clear_pointer (&result, g_bytes_unref);
  }
  g_ptr_array_unref (rc.new_proofs);
  g_ptr_array_unref (rc.settled_received);
  g_array_unref (rc.spent);
  g_ptr_array_unref (rc.reclaimed);
  g_ptr_array_unref (rc.receipts);

  if (result != NULL && report != NULL)
    *report = rc.report;
  return g_steal_pointer (&result);
}

/* --- revocation, fraud proofs, audit ------------------------------------------------ */

const char *
tally_issuer_fraud_kind_to_string (Tally__FraudKind kind)
{
  switch (kind) {
  case TALLY__FRAUD_KIND__FRAUD_KIND_COUNTER_REUSED: return "counter-reused";
  case TALLY__FRAUD_KIND__FRAUD_KIND_CHAIN_FORK: return "chain-fork";
  case TALLY__FRAUD_KIND__FRAUD_KIND_LATE_RECEIPT: return "late-receipt";
  case TALLY__FRAUD_KIND__FRAUD_KIND_OVERDRAWN: return "overdrawn";
  case TALLY__FRAUD_KIND__FRAUD_KIND_OVER_LIMIT: return "over-limit";
  case TALLY__FRAUD_KIND__FRAUD_KIND_UNSPECIFIED:
  case _TALLY__FRAUD_KIND_IS_INT_SIZE: break;
  }
  return "unknown";
}

gboolean
tally_issuer_revoke (TallyIssuer *issuer,
                     const guint8 register_id[TALLY_ID_BYTES],
                     guint64 now,
                     GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (register_id != NULL, FALSE);

  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean changed = FALSE;
  gboolean ok = mark_revoked (issuer, register_id, &changed, error) &&
                (!changed || publish_revocation_list (issuer, now, error));
  return finish (issuer, ok, error);
}

GBytes *
tally_issuer_get_revocation_list (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  guint64 serial;
  g_autoptr (GBytes) env = NULL;
  gboolean ok =
    tally_issuer_store_revocation_list_get_latest (issuer->store, &serial, &env, error);
  if (!finish (issuer, ok, error))
    return NULL;
  return g_steal_pointer (&env);
}

GPtrArray *
tally_issuer_get_fraud_proofs (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GPtrArray) rows = NULL;
  gboolean ok = tally_issuer_store_fraud_proof_list (issuer->store, NULL, &rows, error);
  if (!finish (issuer, ok, error))
    return NULL;

  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  for (guint i = 0; i < rows->len; i++) {
    TallyIssuerFraudRow *row = rows->pdata[i];
    g_ptr_array_add (out, g_bytes_ref (row->envelope));
  }
  return out;
}

gboolean
tally_issuer_audit (TallyIssuer *issuer, TallyAudit *audit, GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (audit != NULL, FALSE);

  TallyIssuerTotals totals;
  TallyIssuerSums sums;
  if (!tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = tally_issuer_store_totals_get (issuer->store, &totals, error) &&
                tally_issuer_store_sums (issuer->store, &sums, error);
  if (!finish (issuer, ok, error))
    return FALSE;

  *audit = (TallyAudit) {
    .issued = totals.issued,
    .online = sums.online,
    .offline = sums.offline,
    .in_flight = sums.in_flight,
    .fraud_exposure = sums.exposure,
    .awaiting = sums.awaiting,
    .refused = sums.refused,
    .reclaimed = totals.reclaimed,
    .reclaimed_count = totals.reclaimed_count,
    .registers = sums.registers,
    .revoked = sums.revoked,
    .fraud_proofs = sums.fraud_proofs,
    .views_unbacked = sums.views_unbacked,
  };
  /* issued + exposure = online + offline + in flight, every term summed
   * from the ledger itself; the running in-flight total must agree. */
  gint64 held, owed;
  audit->identity = !__builtin_add_overflow (sums.online, sums.offline, &held) &&
                    !__builtin_add_overflow (held, sums.in_flight, &held) &&
                    !__builtin_add_overflow (totals.issued, sums.exposure, &owed) && held == owed &&
                    totals.in_flight == sums.in_flight && sums.views_unbacked == 0;
  audit->balanced = audit->identity && sums.exposure == 0 && sums.awaiting == 0;
  return TRUE;
}

static gboolean
exposure_of (TallyIssuer *issuer,
             TallyIssuerRegisterRow *row,
             TallyAuditRegister *out,
             GError **error)
{
  g_autoptr (GPtrArray) proofs = NULL;
  if (!tally_issuer_store_fraud_proof_list (issuer->store, row->id, &proofs, error))
    return FALSE;
  TallyIssuerEvidence ev;
  if (!tally_issuer_store_register_evidence (issuer->store, row->id, 0, &ev, error))
    return FALSE;
  memcpy (out->register_id, row->id, TALLY_ID_BYTES);
  out->account = g_steal_pointer (&row->account);
  out->revoked = row->revoked;
  out->view = row->view_balance;
  /* As the audit sums it (tally-issuer-store-sqlite.c). */
  out->exposure = row->revoked ? MAX (MAX (ev.late, -row->view_balance), 0) : 0;
  out->awaiting = row->revoked ? 0 : MAX (-row->view_balance, 0);
  out->refused = row->refused;
  out->deficit = row->deficit;
  for (guint i = 0; i < proofs->len; i++) {
    const TallyIssuerFraudRow *f = proofs->pdata[i];
    if (f->kind > 0 && f->kind < 32)
      out->proof_kinds |= 1u << f->kind;
    out->proofs++;
  }
  return TRUE;
}

static void
audit_register_free (TallyAuditRegister *r)
{
  g_free (r->account);
  g_free (r);
}

GPtrArray *
tally_issuer_audit_registers (TallyIssuer *issuer, GError **error)
{
  g_return_val_if_fail (issuer != NULL, NULL);

  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) audit_register_free);
  gboolean ok = tally_issuer_store_register_list_flagged (issuer->store, &rows, error);
  for (guint i = 0; ok && i < rows->len; i++) {
    TallyAuditRegister *r = g_new0 (TallyAuditRegister, 1);
    g_ptr_array_add (out, r);
    ok = exposure_of (issuer, rows->pdata[i], r, error);
  }
  if (!finish (issuer, ok, error))
    return NULL;
  return g_steal_pointer (&out);
}
