/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tally-core.h"

#include <string.h>

#define LABEL_PREFIX "tally/v1/"

GBytes *
tally_message_pack (const ProtobufCMessage *msg)
{
  g_return_val_if_fail (msg != NULL, NULL);

  gsize len = protobuf_c_message_get_packed_size (msg);
  guint8 *buf = g_malloc (len ? len : 1);
  protobuf_c_message_pack (msg, buf);
  return g_bytes_new_take (buf, len);
}

/*
 * protobuf-c 1.4 accepts some encodings it cannot produce: an unknown field
 * numbered 0 behind a two-byte tag (0x80 0x00) is kept, packed again as the
 * single byte 0x00, and that it refuses.  Envelopes are packed again to be
 * stored and copied, and a register whose stored objects no longer decode
 * cannot be opened, so a message is accepted only if its own encoding
 * decodes.
 */
static gboolean
message_decodes_again (const ProtobufCMessage *msg)
{
  g_autoptr (GBytes) packed = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (packed, &len);
  ProtobufCMessage *again = protobuf_c_message_unpack (msg->descriptor, NULL, len, data);
  if (again == NULL)
    return FALSE;
  protobuf_c_message_free_unpacked (again, NULL);
  return TRUE;
}

/* Format characters that reorder what a screen shows: a memo could make
 * "12.00" read as "00.21" (CVE-2021-42574). */
static gboolean
is_refused_char (gunichar c)
{
  return g_unichar_type (c) == G_UNICODE_CONTROL || (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2066 && c <= 0x2069);
}

gboolean
tally_text_check (const char *text, gsize max_bytes, const char *what, GError **error)
{
  g_return_val_if_fail (text != NULL && what != NULL, FALSE);

  gsize len = strlen (text);
  const char *end = NULL;
  if (len > max_bytes) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "%s: longer than %" G_GSIZE_FORMAT " bytes", what, max_bytes);
    return FALSE;
  }
  if (!g_utf8_validate_len (text, len, &end)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "%s: not valid UTF-8 at byte %td", what,
                 end - text);
    return FALSE;
  }
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    if (is_refused_char (c)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "%s: character U+%04X at byte %td is not allowed", what, c, p - text);
      return FALSE;
    }
  }
  return TRUE;
}

char *
tally_text_sanitize (const char *text, gsize max_bytes)
{
  g_autofree char *valid = g_utf8_make_valid (text ? text : "", -1);
  GString *out = g_string_sized_new (MIN (strlen (valid), max_bytes));

  for (const char *p = valid; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    gsize n = is_refused_char (c) ? 1 : (gsize) (g_utf8_next_char (p) - p);
    if (out->len + n > max_bytes)
      break;
    if (is_refused_char (c))
      g_string_append_c (out, ' ');
    else
      g_string_append_len (out, p, (gssize) n);
  }
  return g_string_free (out, FALSE);
}


static gboolean
check_field_value (const ProtobufCFieldDescriptor *f,
                   const void *value,
                   const char *what,
                   GError **error)
{
  if (value == NULL)
    return TRUE;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE)
    return tally_message_check_text (value, what, error);
  g_autofree char *field = g_strdup_printf ("%s: %s", what, f->name);
  return tally_text_check (value, TALLY_TEXT_MAX_BYTES, field, error);
}

/* protobuf-c copies strings as they came; a peer's bytes must not reach
 * GLib or D-Bus unchecked.  Walks @msg's descriptor, nested messages
 * included (tally.proto has no recursive message). */
gboolean
tally_message_check_text (const ProtobufCMessage *msg, const char *what, GError **error)
{
  const ProtobufCMessageDescriptor *desc = msg->descriptor;

  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    const char *member = (const char *) msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *) ((const char *) msg + f->quantifier_offset);
      void *const *items = *(void *const *const *) member;
      for (size_t k = 0; k < n; k++)
        if (!check_field_value (f, items[k], what, error))
          return FALSE;
      continue;
    }
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
        *(const uint32_t *) ((const char *) msg + f->quantifier_offset) != f->id)
      continue;
    if (!check_field_value (f, *(void *const *) member, what, error))
      return FALSE;
  }
  return TRUE;
}

ProtobufCMessage *
tally_message_unpack (const ProtobufCMessageDescriptor *desc,
                      const guint8 *data,
                      gsize len,
                      const char *what,
                      GError **error)
{
  g_return_val_if_fail (desc != NULL, NULL);

  ProtobufCMessage *msg = protobuf_c_message_unpack (desc, NULL, len, data);
  if (msg != NULL && !message_decodes_again (msg)) {
    protobuf_c_message_free_unpacked (msg, NULL);
    msg = NULL;
  }
  if (msg == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "%s: not a valid %s message", what,
                 desc->short_name);
    return NULL;
  }
  if (!tally_message_check_text (msg, what, error)) {
    protobuf_c_message_free_unpacked (msg, NULL);
    return NULL;
  }
  return msg;
}

/* --- hashing --- */

void
tally_hash_init (TallyHash *h, const char *label, gsize out_len)
{
  g_return_if_fail (out_len >= crypto_generichash_BYTES_MIN &&
                    out_len <= crypto_generichash_BYTES_MAX);

  h->out_len = out_len;
  crypto_generichash_init (&h->state, NULL, 0, out_len);
  crypto_generichash_update (&h->state, (const guint8 *) LABEL_PREFIX, strlen (LABEL_PREFIX));
  crypto_generichash_update (&h->state, (const guint8 *) label, strlen (label) + 1);
}

void
tally_hash_update (TallyHash *h, const void *data, gsize len)
{
  if (len > 0)
    crypto_generichash_update (&h->state, data, len);
}

void
tally_hash_update_u64 (TallyHash *h, guint64 v)
{
  guint64 be = GUINT64_TO_BE (v);
  crypto_generichash_update (&h->state, (const guint8 *) &be, sizeof be);
}

void
tally_hash_update_prefixed (TallyHash *h, const void *data, gsize len)
{
  guint32 be = GUINT32_TO_BE ((guint32) len);
  crypto_generichash_update (&h->state, (const guint8 *) &be, sizeof be);
  tally_hash_update (h, data, len);
}

void
tally_hash_final (TallyHash *h, guint8 *out)
{
  crypto_generichash_final (&h->state, out, h->out_len);
  sodium_memzero (&h->state, sizeof h->state);
}

void
tally_hash (const char *label, const void *data, gsize len, guint8 out[static TALLY_HASH_BYTES])
{
  TallyHash h;
  tally_hash_init (&h, label, TALLY_HASH_BYTES);
  tally_hash_update (&h, data, len);
  tally_hash_final (&h, out);
}

static void
hash16 (const char *label, const guint8 *data, gsize len, guint8 out[static TALLY_ID_BYTES])
{
  TallyHash h;
  tally_hash_init (&h, label, TALLY_ID_BYTES);
  tally_hash_update (&h, data, len);
  tally_hash_final (&h, out);
}

void
tally_register_id_from_key (const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                            guint8 id[static TALLY_ID_BYTES])
{
  hash16 ("register-id", public_key, TALLY_PUBLIC_KEY_BYTES, id);
}

void
tally_key_id_from_key (const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES], guint8 id[static TALLY_ID_BYTES])
{
  hash16 ("key-id", public_key, TALLY_PUBLIC_KEY_BYTES, id);
}

void
tally_chain_genesis (const guint8 register_id[static TALLY_ID_BYTES], guint8 out[static TALLY_HASH_BYTES])
{
  tally_hash ("chain-genesis", register_id, TALLY_ID_BYTES, out);
}

void
tally_chain_next (const guint8 prev[static TALLY_HASH_BYTES],
                  const guint8 entry_hash[static TALLY_HASH_BYTES],
                  guint8 out[static TALLY_HASH_BYTES])
{
  TallyHash h;
  tally_hash_init (&h, "chain", TALLY_HASH_BYTES);
  tally_hash_update (&h, prev, TALLY_HASH_BYTES);
  tally_hash_update (&h, entry_hash, TALLY_HASH_BYTES);
  tally_hash_final (&h, out);
}

/* --- envelopes --- */

const char *
tally_context_label (Tally__SignatureContext ctx)
{
  switch (ctx) {
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_UNSPECIFIED: return NULL;
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET: return "issuer-key-set";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE:
    return "register-certificate";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER: return "load-voucher";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEPOSIT_PERMISSION: return "deposit-permission";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECEIPT: return "receipt";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST: return "revocation-list";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_BUNDLE:
    return "reconciliation-bundle";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_RECONCILIATION_RESULT:
    return "reconciliation-result";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_DEFUND: return "defund";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_FRAUD_PROOF: return "fraud-proof";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_OFFER: return "handshake-offer";
  case TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_HANDSHAKE_PAY: return "handshake-pay";
  case _TALLY__SIGNATURE_CONTEXT_IS_INT_SIZE: return NULL;
  }
  return NULL;
}

/* Builds "tally/v1/" || label || 0x00 || data: the exact bytes signed. */
static guint8 *
signed_message (Tally__SignatureContext ctx, const guint8 *data, gsize len, gsize *out_len)
{
  const char *label = tally_context_label (ctx);
  g_return_val_if_fail (label != NULL, NULL);

  gsize prefix = strlen (LABEL_PREFIX), label_len = strlen (label);
  *out_len = prefix + label_len + 1 + len;
  guint8 *m = g_malloc (*out_len);
  memcpy (m, LABEL_PREFIX, prefix);
  memcpy (m + prefix, label, label_len);
  m[prefix + label_len] = 0;
  if (len > 0)
    memcpy (m + prefix + label_len + 1, data, len);
  return m;
}

/*
 * Signatures that verified, by H(key || signature || signed message).  A
 * payment checks the same certificates and revocation lists at several
 * layers and again in every session; each hit saves an Ed25519 verify for
 * the price of a BLAKE2b over the same bytes.  Only successes are kept, so
 * a bad signature is always checked in full.
 */
#define VERIFIED_SLOTS 64

static GMutex verified_lock;
static guint8 verified[VERIFIED_SLOTS][TALLY_HASH_BYTES];
static gboolean verified_used[VERIFIED_SLOTS];
static guint verified_next;

static void
verified_key (const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
              const guint8 *signature,
              const guint8 *m,
              gsize mlen,
              guint8 key[static TALLY_HASH_BYTES])
{
  TallyHash h;
  tally_hash_init (&h, "verified-signature", TALLY_HASH_BYTES);
  tally_hash_update (&h, public_key, TALLY_PUBLIC_KEY_BYTES);
  tally_hash_update (&h, signature, TALLY_SIGNATURE_BYTES);
  tally_hash_update (&h, m, mlen);
  tally_hash_final (&h, key);
}

static gboolean
verified_lookup (const guint8 key[static TALLY_HASH_BYTES])
{
  gboolean found = FALSE;
  g_mutex_lock (&verified_lock);
  for (guint i = 0; i < VERIFIED_SLOTS && !found; i++)
    found = verified_used[i] && memcmp (verified[i], key, TALLY_HASH_BYTES) == 0;
  g_mutex_unlock (&verified_lock);
  return found;
}

static void
verified_insert (const guint8 key[static TALLY_HASH_BYTES])
{
  g_mutex_lock (&verified_lock);
  memcpy (verified[verified_next], key, TALLY_HASH_BYTES);
  verified_used[verified_next] = TRUE;
  verified_next = (verified_next + 1) % VERIFIED_SLOTS;
  g_mutex_unlock (&verified_lock);
}

void
tally_sign_detached (Tally__SignatureContext ctx,
                     const guint8 *data,
                     gsize len,
                     const guint8 secret_key[static TALLY_SECRET_KEY_BYTES],
                     guint8 signature[static TALLY_SIGNATURE_BYTES])
{
  gsize mlen;
  g_autofree guint8 *m = signed_message (ctx, data, len, &mlen);
  g_return_if_fail (m != NULL);
  crypto_sign_detached (signature, NULL, m, mlen, secret_key);
}

gboolean
tally_verify_detached (Tally__SignatureContext ctx,
                       const guint8 *data,
                       gsize len,
                       const guint8 *signature,
                       gsize signature_len,
                       const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                       GError **error)
{
  const char *label = tally_context_label (ctx);
  g_return_val_if_fail (label != NULL, FALSE);

  if (signature_len != TALLY_SIGNATURE_BYTES) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE,
                 "%s: signature is %zu bytes, expected %d", label, signature_len,
                 TALLY_SIGNATURE_BYTES);
    return FALSE;
  }
  gsize mlen;
  g_autofree guint8 *m = signed_message (ctx, data, len, &mlen);
  guint8 key[TALLY_HASH_BYTES];
  verified_key (public_key, signature, m, mlen, key);
  if (verified_lookup (key))
    return TRUE;
  if (crypto_sign_verify_detached (signature, m, mlen, public_key) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_BAD_SIGNATURE, "%s: signature does not verify",
                 label);
    return FALSE;
  }
  verified_insert (key);
  return TRUE;
}

GBytes *
tally_envelope_sign (Tally__SignatureContext ctx,
                     const guint8 *body,
                     gsize body_len,
                     const guint8 secret_key[static TALLY_SECRET_KEY_BYTES])
{
  guint8 sig[TALLY_SIGNATURE_BYTES];
  tally_sign_detached (ctx, body, body_len, secret_key, sig);

  Tally__SignedEnvelope env = TALLY__SIGNED_ENVELOPE__INIT;
  env.context = ctx;
  env.body.data = (guint8 *) body;
  env.body.len = body_len;
  env.signature.data = sig;
  env.signature.len = sizeof sig;
  return tally_message_pack (&env.base);
}

GBytes *
tally_message_sign (Tally__SignatureContext ctx,
                    const ProtobufCMessage *msg,
                    const guint8 secret_key[static TALLY_SECRET_KEY_BYTES])
{
  g_autoptr (GBytes) body = tally_message_pack (msg);
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  return tally_envelope_sign (ctx, data, len, secret_key);
}

Tally__SignedEnvelope *
tally_envelope_decode (const guint8 *data, gsize len, GError **error)
{
  return TALLY_UNPACK (Tally__SignedEnvelope, tally__signed_envelope, data, len, "envelope", error);
}

/* The envelope is there and signed in @ctx. */
static gboolean
check_context (const Tally__SignedEnvelope *env, Tally__SignatureContext ctx, GError **error)
{
  if (env == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "%s: envelope missing",
                 tally_context_label (ctx));
    return FALSE;
  }
  if (env->context != ctx) {
    const char *got = tally_context_label (env->context);
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_CONTEXT,
                 "envelope signed as \"%s\", expected \"%s\"", got ? got : "unknown",
                 tally_context_label (ctx));
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_envelope_verify (const Tally__SignedEnvelope *env,
                       Tally__SignatureContext ctx,
                       const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                       GError **error)
{
  if (!check_context (env, ctx, error))
    return FALSE;
  return tally_verify_detached (ctx, env->body.data, env->body.len, env->signature.data,
                                env->signature.len, public_key, error);
}

void
tally_envelope_body_hash (const Tally__SignedEnvelope *env, guint8 out[static TALLY_HASH_BYTES])
{
  const char *label = tally_context_label (env->context);
  tally_hash (label ? label : "unknown", env->body.data, env->body.len, out);
}

GBytes *
tally_envelope_pack (const Tally__SignedEnvelope *env)
{
  return tally_message_pack (&env->base);
}

Tally__SignedEnvelope *
tally_envelope_copy (const Tally__SignedEnvelope *env)
{
  g_autoptr (GBytes) b = tally_envelope_pack (env);
  gsize len;
  const guint8 *d = g_bytes_get_data (b, &len);
  return tally_envelope_decode (d, len, NULL);
}

/* --- amounts --- */

gboolean
tally_currency_is_valid (const char *currency)
{
  if (currency == NULL)
    return FALSE;
  gsize n = strlen (currency);
  if (n < 3 || n > 8)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (currency[i] < 'A' || currency[i] > 'Z')
      return FALSE;
  return TRUE;
}

/* Characters that would let a name break the one-line payment prompt or
 * reorder the amount and code printed next to it. */
static gboolean
display_name_char_is_allowed (gunichar c)
{
  if (g_unichar_iscntrl (c))
    return FALSE;
  if (c == 0x2028 || c == 0x2029)
    return FALSE;
  if ((c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069))
    return FALSE;
  return TRUE;
}

gboolean
tally_display_name_check (const char *name, GError **error)
{
  if (name == NULL || *name == '\0')
    return TRUE;
  gsize len = strlen (name);
  if (len > TALLY_DISPLAY_NAME_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "display name is %zu bytes, at most %d", len, TALLY_DISPLAY_NAME_MAX);
    return FALSE;
  }
  if (!g_utf8_validate (name, len, NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "display name is not valid UTF-8");
    return FALSE;
  }
  for (const char *p = name; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    if (!display_name_char_is_allowed (c)) {
      g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                   "display name holds U+%04X, a control or layout character", c);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
tally_amount_check (const Tally__Amount *amount, const char *currency, GError **error)
{
  if (amount == NULL) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "amount missing");
    return FALSE;
  }
  if (!tally_currency_is_valid (amount->currency)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "invalid currency code");
    return FALSE;
  }
  if (currency != NULL && strcmp (amount->currency, currency) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CURRENCY_MISMATCH,
                 "amount is in %s, expected %s", amount->currency, currency);
    return FALSE;
  }
  if (amount->value <= 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "amount %" G_GINT64_FORMAT " is not positive", amount->value);
    return FALSE;
  }
  if (amount->value > TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW,
                 "amount %" G_GINT64_FORMAT " exceeds the maximum", amount->value);
    return FALSE;
  }
  return TRUE;
}

gboolean
tally_amount_add (gint64 a, gint64 b, gint64 *out, GError **error)
{
  /* Inputs are bounded by TALLY_AMOUNT_MAX, so the sum cannot wrap. */
  if (a > TALLY_AMOUNT_MAX || a < -TALLY_AMOUNT_MAX || b > TALLY_AMOUNT_MAX ||
      b < -TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "amount out of range");
    return FALSE;
  }
  gint64 sum = a + b;
  if (sum > TALLY_AMOUNT_MAX) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_OVERFLOW, "sum exceeds the maximum amount");
    return FALSE;
  }
  if (sum < 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INSUFFICIENT_FUNDS, "balance would go negative");
    return FALSE;
  }
  *out = sum;
  return TRUE;
}

/* ISO 4217 currencies whose minor unit is not 1/100.  app/tally-app-model.c
 * keeps a twin of this table (the app may only talk D-Bus), and so do
 * scripts/scenario.sh (scn_exponent) and tests/app/app-driver.py: change
 * all. */
static const struct
{
  char code[4];
  guint8 exponent;
} currency_exponents[] = {
  { "BHD", 3 }, { "BIF", 0 }, { "CLF", 4 }, { "CLP", 0 }, { "DJF", 0 }, { "GNF", 0 }, { "IQD", 3 },
  { "ISK", 0 }, { "JOD", 3 }, { "JPY", 0 }, { "KMF", 0 }, { "KRW", 0 }, { "KWD", 3 }, { "LYD", 3 },
  { "OMR", 3 }, { "PYG", 0 }, { "RWF", 0 }, { "TND", 3 }, { "UGX", 0 }, { "UYI", 0 }, { "UYW", 4 },
  { "VND", 0 }, { "VUV", 0 }, { "XAF", 0 }, { "XOF", 0 }, { "XPF", 0 },
};

guint
tally_currency_exponent (const char *currency)
{
  if (currency == NULL)
    return 2;
  for (gsize i = 0; i < G_N_ELEMENTS (currency_exponents); i++)
    if (strcmp (currency, currency_exponents[i].code) == 0)
      return currency_exponents[i].exponent;
  return 2;
}

static guint64
pow10_u64 (guint exponent)
{
  guint64 v = 1;
  for (guint i = 0; i < exponent; i++)
    v *= 10;
  return v;
}

char *
tally_amount_format_value (gint64 value, const char *currency)
{
  guint exponent = tally_currency_exponent (currency);
  guint64 unit = pow10_u64 (exponent);
  const char *sign = value < 0 ? "-" : "";
  guint64 v = value < 0 ? (guint64) (-(value + 1)) + 1 : (guint64) value;
  if (exponent == 0)
    return g_strdup_printf ("%s%" G_GUINT64_FORMAT, sign, v);
  return g_strdup_printf ("%s%" G_GUINT64_FORMAT ".%0*" G_GUINT64_FORMAT, sign, v / unit,
                          (int) exponent, v % unit);
}

char *
tally_amount_format (gint64 value, const char *currency)
{
  g_autofree char *number = tally_amount_format_value (value, currency);
  if (currency == NULL)
    return g_steal_pointer (&number);
  return g_strdup_printf ("%s %s", number, currency);
}

static gboolean
amount_parse_error (const char *text, const char *currency, guint exponent, GError **error)
{
  const char *dot = text ? strchr (text, '.') : NULL;
  gboolean digits_only = dot != NULL && dot != text && dot[1] != '\0' &&
                         strspn (text, "0123456789") == (gsize) (dot - text) &&
                         strspn (dot + 1, "0123456789") == strlen (dot + 1);

  if (digits_only && exponent == 0)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "\"%s\": %s has no minor unit, write a whole number like 12", text, currency);
  else if (digits_only && strlen (dot + 1) > exponent)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT, "\"%s\" has %zu decimals, %s%s %u",
                 text, strlen (dot + 1), currency ? currency : "", currency ? " has" : "at most",
                 exponent);
  else if (exponent == 0)
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "\"%s\" is not a positive amount like 12", text ? text : "");
  else
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_INVALID_AMOUNT,
                 "\"%s\" is not a positive amount like 12 or 12.%.*s", text ? text : "",
                 (int) exponent, "5000");
  return FALSE;
}

static gboolean
amount_parse (const char *text, const char *currency, guint exponent, gint64 *out, GError **error)
{
  guint64 unit = pow10_u64 (exponent);
  if (text == NULL || *text == '\0')
    return amount_parse_error (text, currency, exponent, error);
  const char *p = text;
  guint64 whole = 0, frac = 0;
  guint frac_digits = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    whole = whole * 10 + (guint64) (*p - '0');
    if (whole > (guint64) TALLY_AMOUNT_MAX / unit)
      return amount_parse_error (text, currency, exponent, error);
  }
  if (p == text)
    return amount_parse_error (text, currency, exponent, error);
  if (*p == '.') {
    p++;
    for (; *p >= '0' && *p <= '9'; p++) {
      if (++frac_digits > exponent)
        return amount_parse_error (text, currency, exponent, error);
      frac = frac * 10 + (guint64) (*p - '0');
    }
    if (frac_digits == 0)
      return amount_parse_error (text, currency, exponent, error);
    frac *= pow10_u64 (exponent - frac_digits);
  }
  if (*p != '\0')
    return amount_parse_error (text, currency, exponent, error);
  /* whole <= TALLY_AMOUNT_MAX / unit still leaves room for up to unit - 1
   * minor units past the maximum. */
  guint64 value = whole * unit + frac;
  if (value == 0 || value > (guint64) TALLY_AMOUNT_MAX)
    return amount_parse_error (text, currency, exponent, error);
  *out = (gint64) value;
  return TRUE;
}

gboolean
tally_amount_parse (const char *text, const char *currency, gint64 *out, GError **error)
{
  g_return_val_if_fail (out != NULL, FALSE);
  return amount_parse (text, currency, tally_currency_exponent (currency), out, error);
}

gboolean
tally_amount_parse_any (const char *text, GError **error)
{
  gint64 unused;
  return amount_parse (text, NULL, TALLY_CURRENCY_EXPONENT_MAX, &unused, error);
}

/* --- issuer-signed objects --- */

gboolean
tally_check_bytes (const ProtobufCBinaryData *field, gsize len, const char *what, GError **error)
{
  if (field->len != len || (len > 0 && field->data == NULL)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "%s is %zu bytes, expected %zu", what,
                 field->len, len);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_issuer_key_id (const ProtobufCBinaryData *key_id,
                     const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                     const char *what,
                     GError **error)
{
  guint8 expect[TALLY_ID_BYTES];
  tally_key_id_from_key (issuer_key, expect);
  if (!tally_check_bytes (key_id, TALLY_ID_BYTES, what, error))
    return FALSE;
  if (sodium_memcmp (key_id->data, expect, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_WRONG_ISSUER, "%s names another issuer", what);
    return FALSE;
  }
  return TRUE;
}

Tally__RegisterCertificate *
tally_certificate_verify_any_time (const Tally__SignedEnvelope *env,
                                   const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                   GError **error)
{
  /* Check the issuer key id first: an object from another issuer should
   * say so rather than merely fail its signature.  The signature still
   * decides; the peek only picks the clearer error. */
  if (env != NULL && env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE) {
    g_autoptr (Tally__RegisterCertificate) peek = TALLY_UNPACK (
      Tally__RegisterCertificate, tally__register_certificate, env->body.data, env->body.len,
      "certificate", NULL);
    if (peek != NULL &&
        !check_issuer_key_id (&peek->issuer_key_id, issuer_key, "certificate", error))
      return NULL;
  }
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REGISTER_CERTIFICATE,
                              issuer_key, error))
    return NULL;

  g_autoptr (Tally__RegisterCertificate) cert = TALLY_UNPACK (
    Tally__RegisterCertificate, tally__register_certificate, env->body.data, env->body.len,
    "certificate", error);
  if (cert == NULL)
    return NULL;
  if (!check_issuer_key_id (&cert->issuer_key_id, issuer_key, "certificate", error) ||
      !tally_check_bytes (&cert->register_public_key, TALLY_PUBLIC_KEY_BYTES,
                          "certificate register key", error) ||
      !tally_check_bytes (&cert->register_id, TALLY_ID_BYTES, "certificate register id", error))
    return NULL;

  guint8 id[TALLY_ID_BYTES];
  tally_register_id_from_key (cert->register_public_key.data, id);
  if (memcmp (id, cert->register_id.data, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "certificate register id does not match its key");
    return NULL;
  }
  if (!tally_currency_is_valid (cert->currency)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "certificate currency is invalid");
    return NULL;
  }
  if (!tally_display_name_check (cert->display_name, error)) {
    g_prefix_error (error, "certificate: ");
    return NULL;
  }
  const Tally__Limits *l = cert->limits;
  if (l == NULL || l->max_payment <= 0 || l->max_payment > TALLY_AMOUNT_MAX ||
      l->balance_cap <= 0 || l->balance_cap > TALLY_AMOUNT_MAX || l->max_offline_payments == 0 ||
      l->max_offline_seconds == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "certificate limits are invalid");
    return NULL;
  }
  if (cert->not_before >= cert->not_after) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "certificate validity window is empty");
    return NULL;
  }
  return g_steal_pointer (&cert);
}

Tally__RegisterCertificate *
tally_certificate_verify (const Tally__SignedEnvelope *env,
                          const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                          guint64 now,
                          GError **error)
{
  g_autoptr (Tally__RegisterCertificate) cert =
    tally_certificate_verify_any_time (env, issuer_key, error);
  if (cert == NULL)
    return NULL;
  if (now < cert->not_before) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_NOT_YET_VALID,
                 "certificate is valid from %" G_GUINT64_FORMAT ", now is %" G_GUINT64_FORMAT,
                 cert->not_before, now);
    return NULL;
  }
  if (now > cert->not_after) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_CERT_EXPIRED,
                 "certificate expired at %" G_GUINT64_FORMAT ", now is %" G_GUINT64_FORMAT,
                 cert->not_after, now);
    return NULL;
  }
  return g_steal_pointer (&cert);
}

Tally__IssuerKeySet *
tally_issuer_key_set_verify (const Tally__SignedEnvelope *env, GError **error)
{
  /* Its own key signs it: read the key only from an envelope of the right
   * kind. */
  if (!check_context (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET, error))
    return NULL;
  g_autoptr (Tally__IssuerKeySet) ks = TALLY_UNPACK (
    Tally__IssuerKeySet, tally__issuer_key_set, env->body.data, env->body.len, "issuer key set",
    error);
  if (ks == NULL || !tally_check_bytes (&ks->public_key, TALLY_PUBLIC_KEY_BYTES,
                                        "issuer key set public key", error))
    return NULL;
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_ISSUER_KEY_SET,
                              ks->public_key.data, error))
    return NULL;
  guint8 expect[TALLY_ID_BYTES];
  tally_key_id_from_key (ks->public_key.data, expect);
  if (!tally_check_bytes (&ks->key_id, TALLY_ID_BYTES, "issuer key set key id", error))
    return NULL;
  if (sodium_memcmp (ks->key_id.data, expect, TALLY_ID_BYTES) != 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "issuer key set: key id is not its public key's");
    return NULL;
  }
  if (!tally_currency_is_valid (ks->currency)) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED,
                 "issuer key set: currency is not a 3-letter code");
    return NULL;
  }
  return g_steal_pointer (&ks);
}

Tally__RevocationList *
tally_revocation_list_verify (const Tally__SignedEnvelope *env,
                              const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                              GError **error)
{
  if (env != NULL && env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST) {
    g_autoptr (Tally__RevocationList) peek = TALLY_UNPACK (
      Tally__RevocationList, tally__revocation_list, env->body.data, env->body.len,
      "revocation list", NULL);
    if (peek != NULL &&
        !check_issuer_key_id (&peek->issuer_key_id, issuer_key, "revocation list", error))
      return NULL;
  }
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_REVOCATION_LIST,
                              issuer_key, error))
    return NULL;
  g_autoptr (Tally__RevocationList) list = TALLY_UNPACK (
    Tally__RevocationList, tally__revocation_list, env->body.data, env->body.len,
    "revocation list", error);
  if (list == NULL || !check_issuer_key_id (&list->issuer_key_id, issuer_key, "revocation list",
                                            error))
    return NULL;
  for (gsize i = 0; i < list->n_revoked_register_ids; i++)
    if (!tally_check_bytes (&list->revoked_register_ids[i], TALLY_ID_BYTES,
                            "revoked register id", error))
      return NULL;
  return g_steal_pointer (&list);
}

gboolean
tally_revocation_list_contains (const Tally__RevocationList *list,
                                const guint8 register_id[static TALLY_ID_BYTES])
{
  if (list == NULL)
    return FALSE;
  for (gsize i = 0; i < list->n_revoked_register_ids; i++)
    if (list->revoked_register_ids[i].len == TALLY_ID_BYTES &&
        memcmp (list->revoked_register_ids[i].data, register_id, TALLY_ID_BYTES) == 0)
      return TRUE;
  return FALSE;
}

Tally__LoadVoucher *
tally_voucher_verify (const Tally__SignedEnvelope *env,
                      const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                      GError **error)
{
  if (env != NULL && env->context == TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER) {
    g_autoptr (Tally__LoadVoucher) peek = TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher,
                                                        env->body.data, env->body.len, "voucher",
                                                        NULL);
    if (peek != NULL && !check_issuer_key_id (&peek->issuer_key_id, issuer_key, "voucher", error))
      return NULL;
  }
  if (!tally_envelope_verify (env, TALLY__SIGNATURE_CONTEXT__SIGNATURE_CONTEXT_LOAD_VOUCHER,
                              issuer_key, error))
    return NULL;
  g_autoptr (Tally__LoadVoucher) v = TALLY_UNPACK (Tally__LoadVoucher, tally__load_voucher,
                                                   env->body.data, env->body.len, "voucher", error);
  if (v == NULL ||
      !check_issuer_key_id (&v->issuer_key_id, issuer_key, "voucher", error) ||
      !tally_check_bytes (&v->register_id, TALLY_ID_BYTES, "voucher register id", error) ||
      !tally_amount_check (v->amount, NULL, error))
    return NULL;
  if (v->sequence == 0) {
    g_set_error (error, TALLY_ERROR, TALLY_ERROR_MALFORMED, "voucher sequence must start at 1");
    return NULL;
  }
  return g_steal_pointer (&v);
}

/* --- keys --- */

guint8 *
tally_secret_key_new (void)
{
  /* Idempotent and thread-safe; guarded memory needs it. */
  if (sodium_init () < 0)
    g_error ("libsodium failed to initialise");
  guint8 *sk = sodium_malloc (TALLY_SECRET_KEY_BYTES);
  g_assert (sk != NULL);
  return sk;
}

void
tally_secret_key_free (guint8 *sk)
{
  if (sk != NULL)
    sodium_free (sk); /* zeroes before unmapping */
}
