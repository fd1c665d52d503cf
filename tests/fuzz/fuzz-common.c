/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fuzz-common.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const guint8 key_seed_bytes[FUZZ_KEY_COUNT] = {
  [FUZZ_KEY_ISSUER] = 0x11,
  [FUZZ_KEY_OTHER_ISSUER] = 0x12,
  [FUZZ_KEY_PAYER] = 0x21,
  [FUZZ_KEY_REVOKED_PAYER] = 0x22,
  [FUZZ_KEY_STRANGER] = 0x23,
};

/* Test keys, published in this file: nothing about them is secret. */
static guint8 key_public[FUZZ_KEY_COUNT][TALLY_PUBLIC_KEY_BYTES];
static guint8 key_secret[FUZZ_KEY_COUNT][TALLY_SECRET_KEY_BYTES];
static gboolean initialised;
static char *state_root;

/*
 * libFuzzer reports aborts, so a warning or a critical (a g_return_if_fail
 * reached from wire bytes) becomes a finding with its reproducer.  Debug
 * and info messages are dropped unless TALLY_FUZZ_VERBOSE is set.
 */
static GLogWriterOutput
fuzz_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  gboolean verbose = GPOINTER_TO_INT (user_data);

  if ((level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) != 0) {
    g_log_writer_standard_streams (level, fields, n_fields, NULL);
    fprintf (stderr, "tally-fuzz: fatal log message (an error, critical or warning)\n");
    abort ();
  }
  if (verbose)
    return g_log_writer_standard_streams (level, fields, n_fields, NULL);
  return G_LOG_WRITER_HANDLED;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        g_unlink (child);
    }
    g_dir_close (dir);
  }
  g_rmdir (path);
}

static void
remove_state_root (void)
{
  if (state_root != NULL)
    remove_tree (state_root);
  g_clear_pointer (&state_root, g_free);
}

void
fuzz_init (void)
{
  if (initialised)
    return;
  if (sodium_init () < 0)
    abort ();
  for (int k = 0; k < FUZZ_KEY_COUNT; k++) {
    guint8 seed[crypto_sign_SEEDBYTES];
    memset (seed, key_seed_bytes[k], sizeof seed);
    crypto_sign_seed_keypair (key_public[k], key_secret[k], seed);
  }
  g_log_set_writer_func (fuzz_log_writer,
                         GINT_TO_POINTER (g_getenv ("TALLY_FUZZ_VERBOSE") != NULL), NULL);
  initialised = TRUE;
}

const guint8 *
fuzz_key_public (FuzzKey key)
{
  g_assert (initialised && key < FUZZ_KEY_COUNT);
  return key_public[key];
}

const guint8 *
fuzz_key_secret (FuzzKey key)
{
  g_assert (initialised && key < FUZZ_KEY_COUNT);
  return key_secret[key];
}

void
fuzz_key_register_id (FuzzKey key, guint8 id[TALLY_ID_BYTES])
{
  tally_register_id_from_key (fuzz_key_public (key), id);
}

void
fuzz_key_key_id (FuzzKey key, guint8 id[TALLY_ID_BYTES])
{
  tally_key_id_from_key (fuzz_key_public (key), id);
}

GBytes *
fuzz_sign (FuzzKey key, Tally__SignatureContext ctx, const guint8 *body, gsize len)
{
  return tally_envelope_sign (ctx, body, len, fuzz_key_secret (key));
}

GBytes *
fuzz_sign_message (FuzzKey key, Tally__SignatureContext ctx, const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return fuzz_sign (key, ctx, data, len);
}

Tally__Limits
fuzz_limits (void)
{
  Tally__Limits l = TALLY__LIMITS__INIT;
  l.max_payment = 1000000;
  l.balance_cap = TALLY_AMOUNT_MAX;
  l.max_offline_payments = G_MAXUINT32;
  l.max_offline_seconds = 10 * FUZZ_YEAR;
  return l;
}

GBytes *
fuzz_certify (const guint8 subject[TALLY_PUBLIC_KEY_BYTES],
              const Tally__Limits *limits,
              guint64 not_before,
              guint64 not_after,
              guint64 serial)
{
  Tally__Limits defaults = fuzz_limits ();
  guint8 id[TALLY_ID_BYTES], issuer_id[TALLY_ID_BYTES];
  tally_register_id_from_key (subject, id);
  fuzz_key_key_id (FUZZ_KEY_ISSUER, issuer_id);

  Tally__RegisterCertificate c = TALLY__REGISTER_CERTIFICATE__INIT;
  c.register_public_key.data = (guint8 *) subject;
  c.register_public_key.len = TALLY_PUBLIC_KEY_BYTES;
  c.register_id.data = id;
  c.register_id.len = sizeof id;
  c.currency = (char *) FUZZ_CURRENCY;
  c.limits = (Tally__Limits *) (limits != NULL ? limits : &defaults);
  c.not_before = not_before;
  c.not_after = not_after;
  c.issuer_key_id.data = issuer_id;
  c.issuer_key_id.len = sizeof issuer_id;
  c.serial = serial;
  return fuzz_sign_message (
    FUZZ_KEY_ISSUER, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE, &c.base);
}

GBytes *
fuzz_voucher (const guint8 register_id[TALLY_ID_BYTES], guint64 sequence, gint64 amount)
{
  guint8 issuer_id[TALLY_ID_BYTES];
  fuzz_key_key_id (FUZZ_KEY_ISSUER, issuer_id);

  Tally__Amount a = TALLY__AMOUNT__INIT;
  a.currency = (char *) FUZZ_CURRENCY;
  a.value = amount;
  Tally__LoadVoucher v = TALLY__LOAD_VOUCHER__INIT;
  v.register_id.data = (guint8 *) register_id;
  v.register_id.len = TALLY_ID_BYTES;
  v.sequence = sequence;
  v.amount = &a;
  v.issued_at = FUZZ_NOW;
  v.issuer_key_id.data = issuer_id;
  v.issuer_key_id.len = sizeof issuer_id;
  return fuzz_sign_message (FUZZ_KEY_ISSUER,
                            TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER, &v.base);
}

GBytes *
fuzz_revocation_list (guint64 serial, guint64 issued_at, const guint8 *ids, gsize n_ids)
{
  guint8 issuer_id[TALLY_ID_BYTES];
  fuzz_key_key_id (FUZZ_KEY_ISSUER, issuer_id);
  g_autofree ProtobufCBinaryData *revoked = g_new0 (ProtobufCBinaryData, n_ids + 1);
  for (gsize i = 0; i < n_ids; i++) {
    revoked[i].data = (guint8 *) ids + i * TALLY_ID_BYTES;
    revoked[i].len = TALLY_ID_BYTES;
  }

  Tally__RevocationList l = TALLY__REVOCATION_LIST__INIT;
  l.serial = serial;
  l.issued_at = issued_at;
  l.n_revoked_register_ids = n_ids;
  l.revoked_register_ids = revoked;
  l.issuer_key_id.data = issuer_id;
  l.issuer_key_id.len = sizeof issuer_id;
  return fuzz_sign_message (FUZZ_KEY_ISSUER,
                            TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST, &l.base);
}

Tally__SignedEnvelope *
fuzz_envelope (GBytes *packed)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  Tally__SignedEnvelope *env = tally_envelope_decode (data, len, &error);
  g_assert_no_error (error);
  return env;
}

/* --- registers ------------------------------------------------------------- */

/* A register's database grows by tens of MB before the harnesses make it
 * anew; a container's 64 MB /dev/shm would fill up. */
#define SHM_MIN_FREE ((guint64) 1 << 30)

static gboolean
shm_usable (void)
{
  struct statvfs st;
  return access ("/dev/shm", W_OK | X_OK) == 0 && statvfs ("/dev/shm", &st) == 0 &&
         (guint64) st.f_bavail * st.f_frsize >= SHM_MIN_FREE;
}

static const char *
state_dir (void)
{
  if (state_root != NULL)
    return state_root;

  const char *base = g_getenv ("TALLY_FUZZ_STATE_DIR");
  if (base == NULL || *base == '\0')
    base = shm_usable () ? "/dev/shm" : g_get_tmp_dir ();
  state_root = g_build_filename (base, "tally-fuzz-XXXXXX", NULL);
  if (g_mkdtemp_full (state_root, 0700) == NULL) {
    fprintf (stderr, "tally-fuzz: cannot create a state directory in %s\n", base);
    abort ();
  }
  atexit (remove_state_root);
  return state_root;
}

TallyRegister *
fuzz_register_new (const char *name, const Tally__Limits *limits)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (state_dir (), name, NULL);
  remove_tree (dir);

  g_autoptr (TallyRegister) reg =
    tally_register_create (dir, fuzz_key_public (FUZZ_KEY_ISSUER), &error);
  g_assert_no_error (error);
  g_autoptr (GBytes) cert = fuzz_certify (tally_register_get_public_key (reg), limits,
                                          FUZZ_NOW - FUZZ_BEFORE, FUZZ_NOW + FUZZ_YEAR, 1);
  gsize len;
  const guint8 *data = g_bytes_get_data (cert, &len);
  g_assert_true (tally_register_install_certificate (reg, data, len, FUZZ_NOW, &error));
  g_assert_no_error (error);
  return g_steal_pointer (&reg);
}

void
fuzz_register_fund (TallyRegister *reg, guint64 sequence, gint64 amount)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = fuzz_voucher (tally_register_get_id (reg), sequence, amount);
  gsize len;
  const guint8 *data = g_bytes_get_data (v, &len);
  g_assert_true (tally_register_load (reg, data, len, FUZZ_NOW, &error));
  g_assert_no_error (error);
}

/* --- input ------------------------------------------------------------------ */

gboolean
fuzz_input_done (const FuzzInput *in)
{
  return in->len == 0;
}

guint8
fuzz_input_u8 (FuzzInput *in)
{
  if (in->len == 0)
    return 0;
  guint8 v = in->data[0];
  in->data++;
  in->len--;
  return v;
}

guint16
fuzz_input_u16 (FuzzInput *in)
{
  guint16 hi = fuzz_input_u8 (in);
  return (guint16) ((hi << 8) | fuzz_input_u8 (in));
}

guint32
fuzz_input_u32 (FuzzInput *in)
{
  guint32 hi = fuzz_input_u16 (in);
  return (hi << 16) | fuzz_input_u16 (in);
}

guint64
fuzz_input_u64 (FuzzInput *in)
{
  guint64 hi = fuzz_input_u32 (in);
  return (hi << 32) | fuzz_input_u32 (in);
}

gsize
fuzz_input_fill (FuzzInput *in, guint8 *out, gsize n)
{
  gsize got = MIN (n, in->len);
  if (got > 0)
    memcpy (out, in->data, got);
  if (n > got)
    memset (out + got, 0, n - got);
  in->data += got;
  in->len -= got;
  return got;
}

const guint8 *
fuzz_input_chunk (FuzzInput *in, gsize *len)
{
  gsize want = fuzz_input_u16 (in);
  const guint8 *p = in->data;
  *len = MIN (want, in->len);
  in->data += *len;
  in->len -= *len;
  return p;
}

void
fuzz_append_chunk (GByteArray *out, const guint8 *data, gsize len)
{
  g_assert (len <= G_MAXUINT16);
  guint8 prefix[2] = { (guint8) (len >> 8), (guint8) (len & 0xff) };
  g_byte_array_append (out, prefix, sizeof prefix);
  if (len > 0)
    g_byte_array_append (out, data, (guint) len);
}
