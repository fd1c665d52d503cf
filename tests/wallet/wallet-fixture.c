/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wallet-fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tally-hex.h"
#include "tally-register-private.h"

struct _FixtureIssuer
{
  guint8 *secret_key;
  guint8 public_key[TALLY_PUBLIC_KEY_BYTES];
  guint8 key_id[TALLY_ID_BYTES];
  char *currency;
};

FixtureIssuer *
fixture_issuer_new (const char *currency)
{
  FixtureIssuer *issuer = g_new0 (FixtureIssuer, 1);
  issuer->secret_key = tally_secret_key_new ();
  crypto_sign_keypair (issuer->public_key, issuer->secret_key);
  tally_key_id_from_key (issuer->public_key, issuer->key_id);
  issuer->currency = g_strdup (currency ? currency : FIXTURE_CURRENCY);
  return issuer;
}

void
fixture_issuer_free (FixtureIssuer *issuer)
{
  if (issuer == NULL)
    return;
  tally_secret_key_free (issuer->secret_key);
  g_free (issuer->currency);
  g_free (issuer);
}

const guint8 *
fixture_issuer_public_key (FixtureIssuer *issuer)
{
  return issuer->public_key;
}

const char *
fixture_issuer_currency (FixtureIssuer *issuer)
{
  return issuer->currency;
}

Tally__Limits
fixture_limits (void)
{
  Tally__Limits l = TALLY__LIMITS__INIT;
  l.max_payment = FIXTURE_MAX_PAYMENT;
  l.balance_cap = FIXTURE_BALANCE_CAP;
  l.max_offline_payments = FIXTURE_MAX_OFFLINE_PAYMENTS;
  l.max_offline_seconds = FIXTURE_MAX_OFFLINE_SECONDS;
  return l;
}

GBytes *
fixture_issuer_sign (FixtureIssuer *issuer, Tally__SignatureContext ctx, GBytes *body)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (ctx, data, len, issuer->secret_key);
}

static GBytes *
issuer_sign_message (FixtureIssuer *issuer, Tally__SignatureContext ctx, const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  return fixture_issuer_sign (issuer, ctx, body);
}

GBytes *
fixture_issuer_key_set (FixtureIssuer *issuer)
{
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  ks.public_key.data = issuer->public_key;
  ks.public_key.len = TALLY_PUBLIC_KEY_BYTES;
  ks.key_id.data = issuer->key_id;
  ks.key_id.len = TALLY_ID_BYTES;
  ks.currency = issuer->currency;
  ks.name = "Fixture Issuer";
  ks.created_at = 1;
  return issuer_sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                              &ks.base);
}

static GBytes *
certify (FixtureIssuer *issuer,
         const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
         const char *currency,
         const char *display_name,
         const Tally__Limits *limits,
         guint64 not_before,
         guint64 not_after,
         guint64 serial)
{
  guint8 id[TALLY_ID_BYTES];
  Tally__Limits defaults = fixture_limits ();
  Tally__RegisterCertificate c = TALLY__REGISTER_CERTIFICATE__INIT;

  tally_register_id_from_key (register_key, id);
  c.register_public_key.data = (guint8 *) register_key;
  c.register_public_key.len = TALLY_PUBLIC_KEY_BYTES;
  c.register_id.data = id;
  c.register_id.len = sizeof id;
  c.currency = (char *) currency;
  c.limits = (Tally__Limits *) (limits ? limits : &defaults);
  c.not_before = not_before;
  c.not_after = not_after;
  c.issuer_key_id.data = issuer->key_id;
  c.issuer_key_id.len = TALLY_ID_BYTES;
  c.serial = serial;
  if (display_name != NULL)
    c.display_name = (char *) display_name;
  return issuer_sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                              &c.base);
}

GBytes *
fixture_certify_currency (FixtureIssuer *issuer,
                          const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                          const char *currency,
                          const Tally__Limits *limits,
                          guint64 not_before,
                          guint64 not_after,
                          guint64 serial)
{
  return certify (issuer, register_key, currency, NULL, limits, not_before, not_after, serial);
}

GBytes *
fixture_certify_named (FixtureIssuer *issuer,
                       const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                       const char *display_name,
                       const Tally__Limits *limits,
                       guint64 not_before,
                       guint64 not_after,
                       guint64 serial)
{
  return certify (issuer, register_key, issuer->currency, display_name, limits, not_before,
                  not_after, serial);
}

GBytes *
fixture_certify (FixtureIssuer *issuer,
                 const guint8 register_key[TALLY_PUBLIC_KEY_BYTES],
                 const Tally__Limits *limits,
                 guint64 not_before,
                 guint64 not_after,
                 guint64 serial)
{
  return fixture_certify_currency (issuer, register_key, issuer->currency, limits, not_before,
                                   not_after, serial);
}

GBytes *
fixture_voucher (FixtureIssuer *issuer,
                 const guint8 register_id[TALLY_ID_BYTES],
                 guint64 sequence,
                 gint64 amount,
                 const char *currency)
{
  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) (currency ? currency : issuer->currency);
  a.value = amount;
  Tally__LoadVoucher v = TALLY__LOAD_VOUCHER__INIT;
  v.register_id.data = (guint8 *) register_id;
  v.register_id.len = TALLY_ID_BYTES;
  v.sequence = sequence;
  v.amount = &a;
  v.issued_at = FIXTURE_NOW;
  v.issuer_key_id.data = issuer->key_id;
  v.issuer_key_id.len = TALLY_ID_BYTES;
  return issuer_sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER,
                              &v.base);
}

GBytes *
fixture_revocation_list (FixtureIssuer *issuer, guint64 serial, guint64 issued_at, ...)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, TRUE, sizeof (ProtobufCBinaryData));
  va_list ap;
  va_start (ap, issued_at);
  for (const guint8 *id = va_arg (ap, const guint8 *); id != NULL;
       id = va_arg (ap, const guint8 *)) {
    ProtobufCBinaryData b = { TALLY_ID_BYTES, (guint8 *) id };
    g_array_append_val (ids, b);
  }
  va_end (ap);

  Tally__RevocationList l = TALLY__REVOCATION_LIST__INIT;
  l.serial = serial;
  l.issued_at = issued_at;
  l.n_revoked_register_ids = ids->len;
  l.revoked_register_ids = (ProtobufCBinaryData *) ids->data;
  l.issuer_key_id.data = issuer->key_id;
  l.issuer_key_id.len = TALLY_ID_BYTES;
  return issuer_sign_message (issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST,
                              &l.base);
}

GBytes *
fixture_result (FixtureIssuer *issuer, const FixtureResult *result)
{
  g_autoptr (Tally__SignedEnvelope) list = NULL;
  g_autoptr (Tally__SignedEnvelope) cert = NULL;
  g_autofree ProtobufCBinaryData *settled =
    g_new0 (ProtobufCBinaryData, result->n_settled_received + 1);

  for (gsize i = 0; i < result->n_settled_received; i++) {
    settled[i].data = (guint8 *) result->settled_received[i];
    settled[i].len = TALLY_HASH_BYTES;
  }
  Tally__ReconciliationResult r = TALLY__RECONCILIATION_RESULT__INIT;
  r.register_id.data = (guint8 *) result->register_id;
  r.register_id.len = TALLY_ID_BYTES;
  r.settled_counter = result->settled_counter;
  r.n_settled_received = result->n_settled_received;
  r.settled_received = settled;
  if (result->revocation_list != NULL)
    r.revocation_list = list = fixture_envelope (result->revocation_list);
  if (result->renewed_certificate != NULL)
    r.renewed_certificate = cert = fixture_envelope (result->renewed_certificate);
  r.reconciled_at = result->reconciled_at;
  r.settled_voucher_sequence = result->settled_voucher_sequence;
  r.revoked = result->revoked;
  g_autofree ProtobufCBinaryData *reclaimed = g_new0 (ProtobufCBinaryData, result->n_reclaimed + 1);
  for (gsize i = 0; i < result->n_reclaimed; i++) {
    reclaimed[i].data = (guint8 *) result->reclaimed[i];
    reclaimed[i].len = TALLY_HASH_BYTES;
  }
  r.n_reclaimed = result->n_reclaimed;
  r.reclaimed = reclaimed;
  g_autoptr (GPtrArray) receipts =
    g_ptr_array_new_with_free_func ((GDestroyNotify) tally__signed_envelope_free);
  for (gsize i = 0; i < result->n_receipts; i++)
    g_ptr_array_add (receipts, fixture_envelope (result->receipts[i]));
  r.n_receipts = receipts->len;
  r.receipts = (Tally__SignedEnvelope **) receipts->pdata;
  return issuer_sign_message (
    issuer, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT, &r.base);
}

GBytes *
fixture_register_sign (TallyRegister *reg, Tally__SignatureContext ctx, GBytes *body)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  guint8 sig[TALLY_SIGNATURE_BYTES];
  tally_register_sign_any (reg, ctx, data, len, sig);

  Tally__SignedEnvelope env = TALLY__SIGNED_ENVELOPE__INIT;
  env.context = ctx;
  env.body.data = (guint8 *) data;
  env.body.len = len;
  env.signature.data = sig;
  env.signature.len = sizeof sig;
  return tally_envelope_pack (&env);
}

GBytes *
fixture_register_sign_message (TallyRegister *reg,
                               Tally__SignatureContext ctx,
                               const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  return fixture_register_sign (reg, ctx, body);
}

Tally__SignedEnvelope *
fixture_envelope (GBytes *packed)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  Tally__SignedEnvelope *env = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  g_assert_nonnull (env);
  return env;
}

void
fixture_body_hash (GBytes *packed, guint8 out[TALLY_HASH_BYTES])
{
  g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (packed);
  tally_envelope_body_hash (env, out);
}

/* --- directories --- */

char *
fixture_tmpdir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("tally-wallet-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

void
fixture_remove_tree (const char *path)
{
  if (path == NULL)
    return;
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        fixture_remove_tree (child);
      else
        g_unlink (child);
    }
    g_dir_close (dir);
  }
  g_rmdir (path);
}

void
fixture_copy_dir (const char *from, const char *to)
{
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (g_mkdir_with_parents (to, 0700), ==, 0);
  g_autoptr (GDir) dir = g_dir_open (from, 0, &error);
  g_assert_no_error (error);
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *src = g_build_filename (from, name, NULL);
    g_autofree char *dst = g_build_filename (to, name, NULL);
    GStatBuf st;
    g_assert_cmpint (g_stat (src, &st), ==, 0);
    if (!S_ISREG (st.st_mode))
      continue;
    g_autofree char *contents = NULL;
    gsize len;
    g_file_get_contents (src, &contents, &len, &error);
    g_assert_no_error (error);
    int fd = g_open (dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    g_assert_cmpint (fd, >=, 0);
    g_assert_cmpint (write (fd, contents, len), ==, (gssize) len);
    g_assert_cmpint (close (fd), ==, 0);
  }
}

/* --- registers --- */

TallyRegister *
fixture_register_new (FixtureIssuer *issuer,
                      const char *dir,
                      const Tally__Limits *limits,
                      guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) reg = tally_register_create (dir, issuer->public_key, &error);
  g_assert_no_error (error);

  g_autoptr (GBytes) cert = fixture_certify (issuer, tally_register_get_public_key (reg), limits,
                                             now - 1000, now + FIXTURE_YEAR, 1);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (reg, data, len, now, &error));
  g_assert_no_error (error);
  return g_steal_pointer (&reg);
}

int
fixture_peer_fault_code (FixturePeerFault fault)
{
  switch (fault) {
  case FIXTURE_PEER_REVOKED:
    return TALLY_ERROR_REVOKED;
  case FIXTURE_PEER_OTHER_CURRENCY:
    return TALLY_ERROR_CURRENCY_MISMATCH;
  case FIXTURE_PEER_EXPIRED:
    return TALLY_ERROR_CERT_EXPIRED;
  case FIXTURE_PEER_NOT_YET_VALID:
    return TALLY_ERROR_CERT_NOT_YET_VALID;
  case FIXTURE_PEER_WRONG_ISSUER:
    return TALLY_ERROR_WRONG_ISSUER;
  case FIXTURE_PEER_ITSELF:
    return TALLY_ERROR_WRONG_REGISTER;
  case FIXTURE_PEER_BAD_DISPLAY_NAME:
    return TALLY_ERROR_MALFORMED;
  }
  g_assert_not_reached ();
}

GBytes *
fixture_peer_certificate (FixtureIssuer *issuer,
                          TallyRegister *subject,
                          TallyRegister *holder,
                          FixturePeerFault fault,
                          guint64 now)
{
  const guint8 *key = tally_register_get_public_key (subject);
  g_autoptr (GError) error = NULL;

  switch (fault) {
  case FIXTURE_PEER_REVOKED: {
    g_autoptr (GBytes) list = fixture_revocation_list (
      issuer, tally_register_get_revocation_serial (holder) + 1, now, tally_register_get_id (subject),
      NULL);
    g_autoptr (Tally__SignedEnvelope) env = fixture_envelope (list);
    g_assert_true (tally_register_update_revocation_list (holder, env, &error));
    g_assert_no_error (error);
    return tally_register_get_certificate (subject);
  }
  case FIXTURE_PEER_OTHER_CURRENCY:
    return fixture_certify_currency (issuer, key, "USD", NULL, now - 10, now + FIXTURE_YEAR, 2);
  case FIXTURE_PEER_EXPIRED:
    return fixture_certify (issuer, key, NULL, now - 100, now - 1, 2);
  case FIXTURE_PEER_NOT_YET_VALID:
    return fixture_certify (issuer, key, NULL, now + 1, now + FIXTURE_YEAR, 2);
  case FIXTURE_PEER_WRONG_ISSUER: {
    g_autoptr (FixtureIssuer) rogue = fixture_issuer_new (issuer->currency);
    return fixture_certify (rogue, key, NULL, now - 10, now + FIXTURE_YEAR, 2);
  }
  case FIXTURE_PEER_ITSELF:
    return tally_register_get_certificate (holder);
  case FIXTURE_PEER_BAD_DISPLAY_NAME:
    /* An issuer's bug or a forged-looking name must not reach a prompt. */
    return fixture_certify_named (issuer, key, "Bob's\nBakery", NULL, now - 10, now + FIXTURE_YEAR,
                                  2);
  }
  g_assert_not_reached ();
}

void
fixture_register_fund (FixtureIssuer *issuer,
                       TallyRegister *reg,
                       guint64 sequence,
                       gint64 amount,
                       guint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v =
    fixture_voucher (issuer, tally_register_get_id (reg), sequence, amount, NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (v, &len);
  g_assert_true (tally_register_load (reg, data, len, now, &error));
  g_assert_no_error (error);
}

GBytes *
fixture_pay (TallyRegister *payer,
             TallyRegister *payee,
             gint64 amount,
             const char *memo,
             guint64 now,
             GBytes **receipt_out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (Tally__PaymentRequest) req = tally_register_new_request (payee, amount, memo, now,
                                                                       &error);
  g_assert_no_error (error);

  g_autoptr (GBytes) payee_cert = tally_register_get_certificate (payee);
  g_autoptr (GBytes) payer_cert = tally_register_get_certificate (payer);
  g_autoptr (Tally__SignedEnvelope) payee_cert_env = fixture_envelope (payee_cert);
  g_autoptr (Tally__SignedEnvelope) payer_cert_env = fixture_envelope (payer_cert);

  g_autoptr (GBytes) permission = tally_register_spend (payer, payee_cert_env, req, now, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) permission_env = fixture_envelope (permission);

  g_autoptr (GBytes) receipt =
    tally_register_receive (payee, payer_cert_env, permission_env, NULL, NULL, now, &error);
  g_assert_no_error (error);
  g_autoptr (Tally__SignedEnvelope) receipt_env = fixture_envelope (receipt);

  g_assert_true (tally_register_acknowledge (payer, receipt_env, &error));
  g_assert_no_error (error);

  if (receipt_out != NULL)
    *receipt_out = g_steal_pointer (&receipt);
  return g_steal_pointer (&permission);
}

/* --- observation --- */

static char *
bytes_digest (GBytes *bytes)
{
  if (bytes == NULL)
    return g_strdup ("none");
  guint8 h[TALLY_HASH_BYTES];
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  tally_hash ("test-digest", data, len, h);
  return tally_hex_encode (h, sizeof h);
}

char *
fixture_register_dump (TallyRegister *reg, gboolean with_nonce_bytes)
{
  g_autoptr (GError) error = NULL;
  GString *s = g_string_new (NULL);
  g_autofree char *id = tally_register_get_id_hex (reg);
  g_autofree char *chain = tally_hex_encode (tally_register_get_chain_head (reg), TALLY_HASH_BYTES);
  g_autoptr (GBytes) cert = tally_register_get_certificate (reg);
  g_autoptr (GBytes) list = tally_register_get_revocation_list (reg);
  g_autofree char *cert_digest = bytes_digest (cert);
  g_autofree char *list_digest = bytes_digest (list);

  g_autofree char *issuer = tally_hex_encode (tally_register_get_issuer_key (reg), TALLY_PUBLIC_KEY_BYTES);
  g_string_append_printf (s, "id %s\n", id);
  g_string_append_printf (s, "issuer %s\n", issuer);
  g_string_append_printf (s, "balance %" G_GINT64_FORMAT "\n", tally_register_get_balance (reg));
  g_string_append_printf (s, "counter %" G_GUINT64_FORMAT "\n", tally_register_get_counter (reg));
  g_string_append_printf (s, "chain %s\n", chain);
  g_string_append_printf (s, "offline payments %u\n", tally_register_get_offline_payments (reg));
  g_string_append_printf (s, "last reconciliation %" G_GUINT64_FORMAT "\n",
                          tally_register_get_last_reconciliation (reg));
  g_string_append_printf (s, "horizon %" G_GUINT64_FORMAT "\n", tally_register_get_horizon (reg));
  g_string_append_printf (s, "closed %d\n", tally_register_is_closed (reg));
  g_string_append_printf (s, "certificate %s\n", cert_digest);
  g_string_append_printf (s, "revocation serial %" G_GUINT64_FORMAT " issued %" G_GUINT64_FORMAT
                          " list %s\n",
                          tally_register_get_revocation_serial (reg),
                          tally_register_get_revocation_issued_at (reg), list_digest);

  if (cert != NULL) {
    /* The bundle covers every unsettled row with its envelopes. */
    g_autoptr (GBytes) bundle = tally_register_export_bundle (reg, 0, &error);
    g_assert_no_error (error);
    g_autofree char *bundle_digest = bytes_digest (bundle);
    g_string_append_printf (s, "bundle %s\n", bundle_digest);
  }

  g_autoptr (GPtrArray) history = tally_register_get_history (reg, 0, &error);
  g_assert_no_error (error);
  g_string_append_printf (s, "history %u\n", history->len);
  for (guint i = 0; i < history->len; i++) {
    TallyHistoryEntry *e = history->pdata[i];
    g_string_append_printf (s,
                            "  %s %s %" G_GINT64_FORMAT " counter %" G_GUINT64_FORMAT
                            " sequence %" G_GUINT64_FORMAT " time %" G_GUINT64_FORMAT
                            " peer %s memo %s\n",
                            tally_entry_kind_to_string (e->kind),
                            tally_entry_state_to_string (e->state), e->amount, e->counter,
                            e->sequence, e->time, e->peer ? e->peer : "-",
                            e->memo ? e->memo : "-");
  }

  g_autoptr (GPtrArray) nonces = tally_register_list_nonces (reg, &error);
  g_assert_no_error (error);
  g_string_append_printf (s, "requests %u\n", nonces->len);
  for (guint i = 0; i < nonces->len; i++) {
    TallyNonceRow *n = nonces->pdata[i];
    g_autofree char *hex = with_nonce_bytes ? tally_hex_encode (n->nonce, TALLY_NONCE_BYTES)
                                            : g_strdup ("*");
    g_string_append_printf (s,
                            "  %s %" G_GINT64_FORMAT " %s \"%s\" created %" G_GUINT64_FORMAT
                            " consumed %s %" G_GUINT64_FORMAT "\n",
                            hex, n->amount, n->currency, n->memo, n->created_at,
                            n->consumed ? "yes" : "no", n->consumed_at);
  }
  return g_string_free (s, FALSE);
}

void
fixture_assert_conserved (TallyRegister *reg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) history = tally_register_get_history (reg, 0, &error);
  g_assert_no_error (error);

  gint64 in = 0, out = 0;
  for (guint i = 0; i < history->len; i++) {
    TallyHistoryEntry *e = history->pdata[i];
    switch (e->kind) {
    case TALLY_ENTRY_LOAD:
    case TALLY_ENTRY_RECEIVED: in += e->amount; break;
    case TALLY_ENTRY_SPENT:
    case TALLY_ENTRY_DEFUND: out += e->amount; break;
    }
  }
  g_assert_cmpint (in, ==, tally_register_get_balance (reg) + out);
}
