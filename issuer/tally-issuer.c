/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The issuer's keys, lifetime and online accounts, and the steps its other
 * files share.  Certificates and vouchers: tally-issuer-certify.c;
 * reconciliation: tally-issuer-reconcile.c, -intake.c, -book.c, -fraud.c;
 * the audit: tally-issuer-audit.c.
 */
#include "tally-issuer-private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

#include "tally-hex.h"
#include "tally-keyfile.h"

#define KEY_FILE "issuer.key"
#define DB_FILE  "issuer.db"
/* Names a store other than DB_FILE: "[issuer] store=postgresql:CONNINFO". */
#define CONF_FILE  "issuer.conf"
#define CONF_GROUP "issuer"
#define CONF_STORE "store"

#define META_KEY_SET "key-set"
/* The currency's exponent the store's amounts are counted in (decimal
 * text): amounts are integers of 10^-exponent units. */
#define META_KEY_EXPONENT "currency-exponent"

/* Account and issuer names: printable, bounded, stored as given. */
#define NAME_MAX_BYTES 256

/* The secret key is readable only while it signs, as the register's is. */
GBytes *
tally_issuer_sign (TallyIssuer *issuer, Tally__SignatureContext ctx, const ProtobufCMessage *msg)
{
  sodium_mprotect_readonly (issuer->secret_key);
  GBytes *env = tally_message_sign (ctx, msg, issuer->secret_key);
  sodium_mprotect_noaccess (issuer->secret_key);
  return env;
}

/* Ends the one transaction of a public call: commits when @ok, otherwise
 * (or when the commit fails) rolls back so the store is unchanged. */
gboolean
tally_issuer_finish (TallyIssuer *issuer, gboolean ok, GError **error)
{
  if (ok && tally_issuer_store_commit (issuer->store, error))
    return TRUE;
  tally_issuer_store_rollback (issuer->store);
  return FALSE;
}

/* In TallyIssuerCommitPoint order. */
static const char *const commit_points[] = {
  "reconcile:begin",
  "reconcile:verified",
  "reconcile:received-booked",
  "reconcile:spent-booked",
  "reconcile:horizon-raised",
  "reconcile:totals-written",
  "reconcile:register-written",
  "reconcile:result-kept",
  "reconcile:committed",
  "reconcile:answered",
  "voucher:begin",
  "voucher:sold",
  "voucher:request-kept",
  "voucher:committed",
  "voucher:answered",
  NULL,
};

G_STATIC_ASSERT (G_N_ELEMENTS (commit_points) == TALLY_ISSUER_POINT_VOUCHER_ANSWERED + 2);

const char *const *
tally_issuer_commit_points (void)
{
  return commit_points;
}

const char *
tally_issuer_commit_point_to_string (TallyIssuerCommitPoint point)
{
  switch (point) {
  case TALLY_ISSUER_POINT_RECONCILE_BEGIN:
  case TALLY_ISSUER_POINT_RECONCILE_VERIFIED:
  case TALLY_ISSUER_POINT_RECONCILE_RECEIVED_BOOKED:
  case TALLY_ISSUER_POINT_RECONCILE_SPENT_BOOKED:
  case TALLY_ISSUER_POINT_RECONCILE_HORIZON_RAISED:
  case TALLY_ISSUER_POINT_RECONCILE_TOTALS_WRITTEN:
  case TALLY_ISSUER_POINT_RECONCILE_REGISTER_WRITTEN:
  case TALLY_ISSUER_POINT_RECONCILE_RESULT_KEPT:
  case TALLY_ISSUER_POINT_RECONCILE_COMMITTED:
  case TALLY_ISSUER_POINT_RECONCILE_ANSWERED:
  case TALLY_ISSUER_POINT_VOUCHER_BEGIN:
  case TALLY_ISSUER_POINT_VOUCHER_SOLD:
  case TALLY_ISSUER_POINT_VOUCHER_REQUEST_KEPT:
  case TALLY_ISSUER_POINT_VOUCHER_COMMITTED:
  case TALLY_ISSUER_POINT_VOUCHER_ANSWERED: return commit_points[point];
  }
  return "unknown";
}

gboolean
tally_issuer_is_embedded (TallyIssuer *issuer)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  return issuer->embedded;
}

void
tally_issuer_set_commit_hook (TallyIssuer *issuer, TallyIssuerCommitHook hook, gpointer user_data)
{
  g_return_if_fail (issuer != NULL);
  issuer->hook = hook;
  issuer->hook_data = user_data;
}

void
tally_issuer_commit_point (TallyIssuer *issuer, TallyIssuerCommitPoint point)
{
  g_return_if_fail (issuer != NULL);
  if (issuer->hook != NULL)
    issuer->hook (tally_issuer_commit_point_to_string (point), issuer->hook_data);
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

gboolean
tally_issuer_check_amount (const char *currency, gint64 amount, GError **error)
{
  if (amount <= 0 || amount > TALLY_AMOUNT_MAX) {
    /* The amount as people write it: 0.01 EUR, 1 JPY. */
    g_autofree char *asked = tally_amount_format (amount, currency);
    g_autofree char *min = tally_amount_format (1, currency);
    g_autofree char *max = tally_amount_format (TALLY_AMOUNT_MAX, currency);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount %s is not between %s and %s", asked, min, max);
    return FALSE;
  }
  return TRUE;
}

/* Register views and running totals may go negative (a double spender's view
 * does), so they use a signed checked sum rather than tally_amount_add. */
gboolean
tally_issuer_add_signed (gint64 a, gint64 b, gint64 *out, GError **error)
{
  gint64 sum;
  if (__builtin_add_overflow (a, b, &sum)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "total out of range");
    return FALSE;
  }
  *out = sum;
  return TRUE;
}

gboolean
tally_issuer_is_not_found (const GError *error)
{
  return g_error_matches (error, TALLY_ERROR, TALLY_ERROR_NOT_FOUND);
}

char *
tally_issuer_short_hex (const guint8 *data)
{
  return tally_hex_encode (data, 8);
}

/* A repeated bytes field viewing each GBytes of @bytes, which must outlive it;
 * one element more, zeroed, so an empty list is not NULL. */
ProtobufCBinaryData *
tally_issuer_binary_from_bytes (GPtrArray *bytes)
{
  ProtobufCBinaryData *out = g_new0 (ProtobufCBinaryData, bytes->len + 1);
  for (guint i = 0; i < bytes->len; i++) {
    gsize len;
    out[i].data = (guint8 *) g_bytes_get_data (bytes->pdata[i], &len);
    out[i].len = len;
  }
  return out;
}

Tally__SignedEnvelope *
tally_issuer_decode_stored (GBytes *bytes, GError **error)
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
  if (issuer->secret_key != NULL) {
    sodium_mprotect_readwrite (issuer->secret_key);
    tally_secret_key_free (issuer->secret_key); /* zeroes it */
  }
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

/* The store DIR/issuer.conf names into *@spec; NULL, the SQLite file
 * DB_FILE, when there is no such file. */
static gboolean
read_store_spec (const char *conf_path, char **spec, GError **error)
{
  *spec = NULL;
  if (!g_file_test (conf_path, G_FILE_TEST_EXISTS))
    return TRUE;
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_autofree char *value = NULL;
  if (g_key_file_load_from_file (kf, conf_path, G_KEY_FILE_NONE, &local))
    value = g_key_file_get_string (kf, CONF_GROUP, CONF_STORE, &local);
  if (value == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s", conf_path, local->message);
    return FALSE;
  }
  g_strstrip (value);
  if (!tally_issuer_store_spec_check (value, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s: %s", conf_path, local->message);
    return FALSE;
  }
  *spec = g_steal_pointer (&value);
  return TRUE;
}

/* Only the owner reads it: a connection string may hold a password. */
static gboolean
write_store_spec (const char *conf_path, const char *spec, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_key_file_set_string (kf, CONF_GROUP, CONF_STORE, spec);
  gsize len;
  g_autofree char *data = g_key_file_to_data (kf, &len, NULL);
  g_autoptr (GError) local = NULL;
  if (g_file_set_contents_full (conf_path, data, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                &local))
    return TRUE;
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s", local->message);
  return FALSE;
}

/* A store another issuer already uses is refused: one store, one issuer. */
static gboolean
check_store_empty (TallyIssuer *issuer, GError **error)
{
  g_autoptr (GBytes) existing = NULL;
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_meta_get (issuer->store, META_KEY_SET, &existing, &local)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "the store already holds an issuer");
    return FALSE;
  }
  if (g_error_matches (local, TALLY_ERROR, TALLY_ERROR_NOT_FOUND))
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

static gboolean
record_exponent (TallyIssuer *issuer, GError **error)
{
  g_autofree char *text = g_strdup_printf ("%u", tally_currency_exponent (issuer->currency));
  g_autoptr (GBytes) value = g_bytes_new (text, strlen (text));
  return tally_issuer_store_meta_set (issuer->store, META_KEY_EXPONENT, value, error);
}

/*
 * A store counts amounts in its currency's minor unit.  Stores made before
 * the exponent was recorded counted every currency in hundredths: for a
 * currency whose ISO 4217 exponent is 2 nothing changes and the exponent
 * is recorded now; for any other, every stored amount would change meaning
 * (1000 JPY stored as 100000 would read 100000 JPY), so the store is
 * refused until the operator says how (docs/issuer-store.md).
 */
static gboolean
check_exponent (TallyIssuer *issuer, const char *db_path, GError **error)
{
  guint exponent = tally_currency_exponent (issuer->currency);
  g_autoptr (GBytes) stored = NULL;
  g_autoptr (GError) local = NULL;
  if (tally_issuer_store_meta_get (issuer->store, META_KEY_EXPONENT, &stored, &local)) {
    gsize len;
    const char *data = g_bytes_get_data (stored, &len);
    g_autofree char *text = g_strndup (data, len);
    guint64 recorded;
    if (!g_ascii_string_to_unsigned (text, 10, 0, 18, &recorded, NULL)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE,
                   "%s: the recorded currency exponent \"%s\" is not a number 0..18", db_path,
                   text);
      return FALSE;
    }
    if (recorded != exponent) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_VERSION,
                   "%s counts %s in 10^-%" G_GUINT64_FORMAT " units, this release in 10^-%u: "
                   "run the release that made it (docs/issuer-store.md, \"Currency exponent\")",
                   db_path, issuer->currency, recorded, exponent);
      return FALSE;
    }
    return TRUE;
  }
  if (!g_error_matches (local, TALLY_ERROR, TALLY_ERROR_NOT_FOUND)) {
    g_propagate_error (error, g_steal_pointer (&local));
    return FALSE;
  }
  if (exponent == 2)
    return record_exponent (issuer, error);
  g_set_error (error, TALLY_ERROR, TALLY_ERROR_VERSION,
               "%s predates recorded currency exponents: it may count %s in hundredths, which "
               "ISO 4217 gives %u decimal(s), and every stored amount would change meaning; "
               "refusing to open it (docs/issuer-store.md, \"Currency exponent\", says how to "
               "proceed)",
               db_path, issuer->currency, exponent);
  return FALSE;
}

/* The self-signed IssuerKeySet registers trust the issuer by. */
static GBytes *
sign_key_set (TallyIssuer *issuer, guint64 now)
{
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  ks.public_key.data = issuer->public_key;
  ks.public_key.len = TALLY_PUBLIC_KEY_BYTES;
  ks.key_id.data = issuer->key_id;
  ks.key_id.len = TALLY_ID_BYTES;
  ks.currency = issuer->currency;
  ks.name = issuer->name;
  ks.created_at = now;
  return tally_issuer_sign (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                            &ks.base);
}

TallyIssuer *
tally_issuer_create (const char *dir,
                     const char *name,
                     const char *currency,
                     guint64 now,
                     GError **error)
{
  return tally_issuer_create_with_store (dir, NULL, name, currency, now, error);
}

TallyIssuer *
tally_issuer_create_with_store (const char *dir,
                                const char *store,
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
  if (store != NULL && !tally_issuer_store_spec_check (store, error))
    return NULL;
  if (tally_issuer_store_spec_is_sqlite (store))
    store = NULL;

  g_autofree char *key_path = g_build_filename (dir, KEY_FILE, NULL);
  g_autofree char *db_path = g_build_filename (dir, DB_FILE, NULL);
  g_autofree char *conf_path = g_build_filename (dir, CONF_FILE, NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0) {
    int e = errno;
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "cannot create %s: %s", dir,
                 g_strerror (e));
    return NULL;
  }
  if (g_file_test (key_path, G_FILE_TEST_EXISTS) || g_file_test (db_path, G_FILE_TEST_EXISTS) ||
      g_file_test (conf_path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_EXISTS, "an issuer already exists in %s", dir);
    return NULL;
  }

  g_autoptr (TallyIssuer) issuer = issuer_new (dir);
  issuer->embedded = store == NULL;
  crypto_sign_keypair (issuer->public_key, issuer->secret_key);
  sodium_mprotect_noaccess (issuer->secret_key);
  tally_key_id_from_key (issuer->public_key, issuer->key_id);
  issuer->name = g_strdup (name);
  issuer->currency = g_strdup (currency);

  issuer->key_set = sign_key_set (issuer, now);

  sodium_mprotect_readonly (issuer->secret_key);
  gboolean written = tally_key_file_write (key_path, issuer->secret_key, error);
  sodium_mprotect_noaccess (issuer->secret_key);
  if (!written)
    return NULL;

  gboolean ok = store == NULL || write_store_spec (conf_path, store, error);
  if (ok) {
    issuer->store = tally_issuer_store_open (store, db_path, TRUE, error);
    ok = issuer->store != NULL && tally_issuer_store_begin (issuer->store, error);
  }
  if (ok) {
    ok = check_store_empty (issuer, error) &&
         tally_issuer_store_meta_set (issuer->store, META_KEY_SET, issuer->key_set, error) &&
         record_exponent (issuer, error) &&
         tally_issuer_publish_revocation_list (issuer, now, error);
    ok = tally_issuer_finish (issuer, ok, error);
  }
  if (!ok) {
    /* A PostgreSQL store is left as it was: its tables may be another's. */
    g_clear_pointer (&issuer->store, tally_issuer_store_free);
    if (store == NULL)
      remove_db_files (db_path);
    g_unlink (conf_path);
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
  g_autofree char *conf_path = g_build_filename (dir, CONF_FILE, NULL);
  g_autoptr (TallyIssuer) issuer = issuer_new (dir);

  if (!tally_key_file_read (key_path, issuer->secret_key, error))
    return NULL;
  g_autofree char *store = NULL;
  if (!read_store_spec (conf_path, &store, error))
    return NULL;
  crypto_sign_ed25519_sk_to_pk (issuer->public_key, issuer->secret_key);
  sodium_mprotect_noaccess (issuer->secret_key);
  tally_key_id_from_key (issuer->public_key, issuer->key_id);

  issuer->embedded = tally_issuer_store_spec_is_sqlite (store);
  issuer->store = tally_issuer_store_open (store, db_path, FALSE, error);
  if (issuer->store == NULL || !tally_issuer_store_begin (issuer->store, error))
    return NULL;
  gboolean ok =
    tally_issuer_store_meta_get (issuer->store, META_KEY_SET, &issuer->key_set, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return NULL;

  gsize len;
  const guint8 *data = g_bytes_get_data (issuer->key_set, &len);
  g_autoptr (Tally__SignedEnvelope) env = tally_envelope_decode (data, len, error);
  if (env == NULL)
    return NULL;
  /* The same check a register makes of the set, and it must name our key. */
  g_autoptr (GError) local = NULL;
  g_autoptr (Tally__IssuerKeySet) ks = tally_issuer_key_set_verify (env, &local);
  if (ks == NULL ||
      sodium_memcmp (ks->public_key.data, issuer->public_key, TALLY_PUBLIC_KEY_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_STORAGE, "%s does not belong to %s%s%s", key_path,
                 db_path, local ? ": " : "", local ? local->message : "");
    return NULL;
  }
  issuer->name = g_strdup (ks->name);
  issuer->currency = g_strdup (ks->currency);
  if (!tally_issuer_store_begin (issuer->store, error))
    return NULL;
  ok = check_exponent (issuer, store != NULL ? "the store" : db_path, error);
  if (!tally_issuer_finish (issuer, ok, error))
    return NULL;
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

gboolean
tally_issuer_account_create_locked (TallyIssuer *issuer, const char *name, GError **error)
{
  return check_name (name, "account name", error) &&
         tally_issuer_store_account_insert (issuer->store, name, error);
}

gboolean
tally_issuer_account_create (TallyIssuer *issuer, const char *name, GError **error)
{
  g_return_val_if_fail (issuer != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  if (!check_name (name, "account name", error) ||
      !tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  gboolean ok = tally_issuer_account_create_locked (issuer, name, error);
  return tally_issuer_finish (issuer, ok, error);
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

  if (!tally_issuer_check_amount (issuer->currency, amount, error) ||
      !tally_issuer_store_begin (issuer->store, error))
    return FALSE;
  return tally_issuer_finish (issuer, deposit_locked (issuer, account, amount, error), error);
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
  return tally_issuer_finish (issuer, ok, error);
}
