/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "test-util.h"

#include <glib/gstdio.h>

#include "tally-clock.h"

void
test_issuer_init (TestIssuer *issuer)
{
  g_assert_cmpint (sodium_init (), >=, 0);
  issuer->secret_key = tally_secret_key_new ();
  crypto_sign_keypair (issuer->public_key, issuer->secret_key);
  issuer->currency = TEST_CURRENCY;
}

void
test_issuer_clear (TestIssuer *issuer)
{
  g_clear_pointer (&issuer->secret_key, tally_secret_key_free);
}

GBytes *
test_issuer_certify (TestIssuer *issuer, TallyRegister *reg, gint64 max_payment, guint64 serial)
{
  return test_issuer_certify_named (issuer, reg, max_payment, serial, NULL);
}

GBytes *
test_issuer_certify_named (TestIssuer *issuer,
                           TallyRegister *reg,
                           gint64 max_payment,
                           guint64 serial,
                           const char *display_name)
{
  guint64 now = tally_now ();
  guint8 key_id[TALLY_ID_BYTES];
  tally_key_id_from_key (issuer->public_key, key_id);

  Tally__Limits limits = TALLY__LIMITS__INIT;
  limits.max_payment = max_payment;
  limits.balance_cap = 100000;
  limits.max_offline_payments = 100;
  limits.max_offline_seconds = 72 * 3600;

  Tally__RegisterCertificate cert = TALLY__REGISTER_CERTIFICATE__INIT;
  cert.register_public_key.data = (guint8 *) tally_register_get_public_key (reg);
  cert.register_public_key.len = TALLY_PUBLIC_KEY_BYTES;
  cert.register_id.data = (guint8 *) tally_register_get_id (reg);
  cert.register_id.len = TALLY_ID_BYTES;
  cert.currency = (char *) issuer->currency;
  cert.limits = &limits;
  cert.not_before = now - 3600;
  cert.not_after = now + 30 * 24 * 3600;
  cert.issuer_key_id.data = key_id;
  cert.issuer_key_id.len = TALLY_ID_BYTES;
  cert.serial = serial;
  if (display_name != NULL)
    cert.display_name = (char *) display_name;

  g_autoptr (GBytes) body = tally_message_pack (&cert.base);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE, data,
                              len, issuer->secret_key);
}

GBytes *
test_issuer_key_set (TestIssuer *issuer)
{
  guint8 key_id[TALLY_ID_BYTES];
  tally_key_id_from_key (issuer->public_key, key_id);
  Tally__IssuerKeySet ks = TALLY__ISSUER_KEY_SET__INIT;
  ks.public_key.data = issuer->public_key;
  ks.public_key.len = TALLY_PUBLIC_KEY_BYTES;
  ks.key_id.data = key_id;
  ks.key_id.len = TALLY_ID_BYTES;
  ks.currency = (char *) issuer->currency;
  ks.name = "Test Issuer";
  ks.created_at = tally_now ();

  g_autoptr (GBytes) body = tally_message_pack (&ks.base);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, data, len,
                              issuer->secret_key);
}

GBytes *
test_issuer_voucher (TestIssuer *issuer, TallyRegister *reg, guint64 sequence, gint64 amount)
{
  guint8 key_id[TALLY_ID_BYTES];
  tally_key_id_from_key (issuer->public_key, key_id);

  Tally__Amount value = TALLY__AMOUNT__INIT;
  value.currency = (char *) issuer->currency;
  value.value = amount;

  Tally__LoadVoucher voucher = TALLY__LOAD_VOUCHER__INIT;
  voucher.register_id.data = (guint8 *) tally_register_get_id (reg);
  voucher.register_id.len = TALLY_ID_BYTES;
  voucher.sequence = sequence;
  voucher.amount = &value;
  voucher.issued_at = tally_now ();
  voucher.issuer_key_id.data = key_id;
  voucher.issuer_key_id.len = TALLY_ID_BYTES;

  g_autoptr (GBytes) body = tally_message_pack (&voucher.base);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER, data, len,
                              issuer->secret_key);
}

TallyRegister *
test_register_new (TestIssuer *issuer, const char *dir, gint64 max_payment, gint64 balance)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (TallyRegister) reg = tally_register_create (dir, issuer->public_key, &error);
  g_assert_no_error (error);

  g_autoptr (GBytes) cert = test_issuer_certify (issuer, reg, max_payment, 1);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  tally_register_install_certificate (reg, data, len, tally_now (), &error);
  g_assert_no_error (error);

  if (balance > 0) {
    g_autoptr (GBytes) voucher = test_issuer_voucher (issuer, reg, 1, balance);
    data = g_bytes_get_data (voucher, &len);
    tally_register_load (reg, data, len, tally_now (), &error);
    g_assert_no_error (error);
  }
  g_assert_cmpint (tally_register_get_balance (reg), ==, balance);
  return g_steal_pointer (&reg);
}

void
test_rm_rf (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        test_rm_rf (child);
      else
        g_unlink (child);
    }
  }
  g_rmdir (path);
}
