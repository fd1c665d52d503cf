/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol core: wire messages, their signed envelopes, the labelled
 * hashes every layer uses, amounts, and verification of the objects the
 * issuer signs.  No I/O, no main loop, no D-Bus.
 */

#include <glib.h>
#include <sodium.h>

#include "tally-error.h"
#include "tally.pb-c.h"

G_BEGIN_DECLS

#define TALLY_PROTOCOL_VERSION 1

#define TALLY_PUBLIC_KEY_BYTES 32 /* Ed25519 */
#define TALLY_SECRET_KEY_BYTES 64 /* Ed25519, libsodium seed||public layout */
#define TALLY_SIGNATURE_BYTES  64
#define TALLY_ID_BYTES         16 /* register ids and issuer key ids */
#define TALLY_HASH_BYTES       32
#define TALLY_NONCE_BYTES      32

/* Upper bound for any amount or balance: keeps every sum of two in range. */
#define TALLY_AMOUNT_MAX ((gint64) 1 << 53)

/* --- protobuf-c ownership ------------------------------------------------ */

#define TALLY_DEFINE_MESSAGE_AUTOPTR(Type, prefix)                                                 \
  static inline void prefix##_free (Type *msg)                                                     \
  {                                                                                                \
    prefix##__free_unpacked (msg, NULL);                                                           \
  }                                                                                                \
  G_DEFINE_AUTOPTR_CLEANUP_FUNC (Type, prefix##_free)

TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__SignedEnvelope, tally__signed_envelope)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__Amount, tally__amount)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__IssuerKeySet, tally__issuer_key_set)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__RegisterCertificate, tally__register_certificate)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__LoadVoucher, tally__load_voucher)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__PaymentRequest, tally__payment_request)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__DepositPermission, tally__deposit_permission)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__Receipt, tally__receipt)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__RevocationList, tally__revocation_list)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__DefundRecord, tally__defund_record)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__ReconciliationBundle, tally__reconciliation_bundle)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__ReconciliationResult, tally__reconciliation_result)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__FraudProof, tally__fraud_proof)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__Hello, tally__hello)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__OfferBody, tally__offer_body)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__OfferSealed, tally__offer_sealed)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__PayBody, tally__pay_body)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__PaySealed, tally__pay_sealed)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__ReceiptSealed, tally__receipt_sealed)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__RevealSealed, tally__reveal_sealed)
TALLY_DEFINE_MESSAGE_AUTOPTR (Tally__SessionMessage, tally__session_message)

/* Packs any message into a new GBytes. */
GBytes *tally_message_pack (const ProtobufCMessage *msg);

/*
 * Text: every string field of every message that tally_message_unpack ()
 * returns passed tally_text_check () with TALLY_TEXT_MAX_BYTES, so it is
 * safe to log and to hand to GLib and D-Bus (protocol.md §1).
 */
#define TALLY_TEXT_MAX_BYTES 1024

/* @text is UTF-8 of at most @max_bytes bytes, with no control character
 * (Unicode Cc) and no bidirectional embedding, override or isolate
 * (U+202A..U+202E, U+2066..U+2069), else MALFORMED naming @what and the
 * byte at fault. */
gboolean tally_text_check (const char *text, gsize max_bytes, const char *what, GError **error);
/* A copy of @text that passes tally_text_check (): invalid bytes become
 * U+FFFD, refused characters a space, cut at a character to @max_bytes.
 * For the Error messages we send, whose text may quote anything. */
char *tally_text_sanitize (const char *text, gsize max_bytes);

/* Every string field of @msg, nested ones included, passes
 * tally_text_check (); else MALFORMED naming @what and the field. */
gboolean tally_message_check_text (const ProtobufCMessage *msg, const char *what, GError **error);

/* Unpacks @len bytes as @desc, with TALLY_ERROR_MALFORMED naming @what.
 * Every string field, nested ones included, is checked with
 * tally_text_check (). */
ProtobufCMessage *tally_message_unpack (const ProtobufCMessageDescriptor *desc,
                                        const guint8 *data,
                                        gsize len,
                                        const char *what,
                                        GError **error);

#define TALLY_UNPACK(Type, prefix, data, len, what, error)                                         \
  ((Type *) tally_message_unpack (&prefix##__descriptor, (data), (len), (what), (error)))

/* --- labelled hashing ----------------------------------------------------- */

/*
 * Every hash in Tally is BLAKE2b over "tally/v1/" || label || 0x00 || input,
 * with the output length the caller asks for (16..64 bytes).
 */
typedef struct
{
  crypto_generichash_state state;
  gsize out_len;
} TallyHash;

void tally_hash_init (TallyHash *h, const char *label, gsize out_len);
void tally_hash_update (TallyHash *h, const void *data, gsize len);
/* Big-endian u64. */
void tally_hash_update_u64 (TallyHash *h, guint64 v);
/* Big-endian u32 length, then the bytes: for variable-length inputs. */
void tally_hash_update_prefixed (TallyHash *h, const void *data, gsize len);
void tally_hash_final (TallyHash *h, guint8 *out);

void tally_hash (const char *label, const void *data, gsize len, guint8 out[static TALLY_HASH_BYTES]);

/* tally_hash16 ("register-id", public key) */
void tally_register_id_from_key (const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                                 guint8 id[static TALLY_ID_BYTES]);
/* tally_hash16 ("key-id", public key) */
void tally_key_id_from_key (const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                            guint8 id[static TALLY_ID_BYTES]);

/* Hash chain: genesis = H("chain-genesis", register id),
 * next = H("chain", prev || H(context-label, entry body)). */
void tally_chain_genesis (const guint8 register_id[static TALLY_ID_BYTES], guint8 out[static TALLY_HASH_BYTES]);
void tally_chain_next (const guint8 prev[static TALLY_HASH_BYTES],
                       const guint8 entry_hash[static TALLY_HASH_BYTES],
                       guint8 out[static TALLY_HASH_BYTES]);

/* --- signed envelopes ----------------------------------------------------- */

/* Label of a context, e.g. "deposit-permission"; NULL when unknown. */
const char *tally_context_label (Tally__SignatureContext ctx);

/* Signs @body under @ctx and returns the packed SignedEnvelope. */
GBytes *tally_envelope_sign (Tally__SignatureContext ctx,
                             const guint8 *body,
                             gsize body_len,
                             const guint8 secret_key[static TALLY_SECRET_KEY_BYTES]);

/* Packs @msg and signs it under @ctx: the packed SignedEnvelope. */
GBytes *tally_message_sign (Tally__SignatureContext ctx,
                            const ProtobufCMessage *msg,
                            const guint8 secret_key[static TALLY_SECRET_KEY_BYTES]);

/* Detached signature over ctx label || 0x00 || data (used for transcripts). */
void tally_sign_detached (Tally__SignatureContext ctx,
                          const guint8 *data,
                          gsize len,
                          const guint8 secret_key[static TALLY_SECRET_KEY_BYTES],
                          guint8 signature[static TALLY_SIGNATURE_BYTES]);
gboolean tally_verify_detached (Tally__SignatureContext ctx,
                                const guint8 *data,
                                gsize len,
                                const guint8 *signature,
                                gsize signature_len,
                                const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                                GError **error);

Tally__SignedEnvelope *tally_envelope_decode (const guint8 *data, gsize len, GError **error);

/* Checks context and signature.  Errors: WRONG_CONTEXT, BAD_SIGNATURE. */
gboolean tally_envelope_verify (const Tally__SignedEnvelope *env,
                                Tally__SignatureContext ctx,
                                const guint8 public_key[static TALLY_PUBLIC_KEY_BYTES],
                                GError **error);

/* H(context-label, body): names an entry (permission hash, bundle hash). */
void tally_envelope_body_hash (const Tally__SignedEnvelope *env, guint8 out[static TALLY_HASH_BYTES]);

/* Packs a decoded envelope again (protobuf-c output is deterministic). */
GBytes *tally_envelope_pack (const Tally__SignedEnvelope *env);
/* Deep copy through pack/unpack. */
Tally__SignedEnvelope *tally_envelope_copy (const Tally__SignedEnvelope *env);

/* --- amounts -------------------------------------------------------------- */

/* 3..8 ASCII upper-case letters. */
gboolean tally_currency_is_valid (const char *currency);

/* A payment amount: present, valid currency equal to @currency (when given),
 * 0 < value <= TALLY_AMOUNT_MAX.  INVALID_AMOUNT or CURRENCY_MISMATCH. */
gboolean tally_amount_check (const Tally__Amount *amount, const char *currency, GError **error);

/* a + b: OVERFLOW past TALLY_AMOUNT_MAX, INSUFFICIENT_FUNDS below zero. */
gboolean tally_amount_add (gint64 a, gint64 b, gint64 *out, GError **error);

/* Decimal digits of @currency's minor unit, as ISO 4217 lists it: 0 for
 * JPY, 3 for KWD, 4 for CLF; 2 for every other code and for NULL.  The wire
 * carries minor units; this only decides how people read and write them. */
guint tally_currency_exponent (const char *currency);
#define TALLY_CURRENCY_EXPONENT_MAX 4

/* "12.34 EUR", "1250 JPY", "1.250 KWD": the currency's exponent in digits,
 * then the code (none when @currency is NULL: 2 decimals). */
char *tally_amount_format (gint64 value, const char *currency);

/* The number alone, with @currency's exponent: "12.34", "1250". */
char *tally_amount_format_value (gint64 value, const char *currency);

/* Parses "12", "12.3", "12.34" (up to @currency's exponent in decimals)
 * into minor units; INVALID_AMOUNT for anything else, for more decimals than
 * the currency has, for 0 and past TALLY_AMOUNT_MAX. */
gboolean tally_amount_parse (const char *text, const char *currency, gint64 *out, GError **error);

/* Whether @text is an amount in some currency (up to
 * TALLY_CURRENCY_EXPONENT_MAX decimals), before the currency is known. */
gboolean tally_amount_parse_any (const char *text, GError **error);

/* Longest certified display name, in bytes of UTF-8. */
#define TALLY_DISPLAY_NAME_MAX 64

/*
 * A certificate's display name: NULL or "" (none), or 1..TALLY_DISPLAY_NAME_MAX
 * bytes of valid UTF-8 with no control character (C0, DEL, C1), no line or
 * paragraph separator and no bidirectional embedding, override or isolate,
 * so that it prints on one line and cannot reorder the text around it.
 * MALFORMED naming the fault otherwise.
 */
gboolean tally_display_name_check (const char *name, GError **error);

/* --- issuer-signed objects -------------------------------------------------- */

/*
 * Verifies a register certificate under the issuer key: context, signature,
 * issuer key id, register id derived from the key, currency, limits,
 * display name, and not_before <= now <= not_after.  Returns the decoded
 * certificate.
 */
Tally__RegisterCertificate *tally_certificate_verify (const Tally__SignedEnvelope *env,
                                                      const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                                      guint64 now,
                                                      GError **error);

/* Same checks without the validity window (reconciliation looks back). */
Tally__RegisterCertificate *tally_certificate_verify_any_time (
  const Tally__SignedEnvelope *env, const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES], GError **error);

/*
 * Verifies an issuer's self-signed key set (context "issuer-key-set"): a
 * 32-byte public key that signed it, the key id derived from that key, a
 * currency code, and text that passed tally_text_check ().  It names the
 * key, it does not vouch for it: whoever takes it decides to trust it.
 */
Tally__IssuerKeySet *tally_issuer_key_set_verify (const Tally__SignedEnvelope *env,
                                                  GError **error);

Tally__RevocationList *tally_revocation_list_verify (const Tally__SignedEnvelope *env,
                                                     const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                                     GError **error);
gboolean tally_revocation_list_contains (const Tally__RevocationList *list,
                                         const guint8 register_id[static TALLY_ID_BYTES]);

Tally__LoadVoucher *tally_voucher_verify (const Tally__SignedEnvelope *env,
                                          const guint8 issuer_key[static TALLY_PUBLIC_KEY_BYTES],
                                          GError **error);

/* A bytes field of exactly @len bytes, else MALFORMED naming @what. */
gboolean tally_check_bytes (const ProtobufCBinaryData *field,
                            gsize len,
                            const char *what,
                            GError **error);

/* --- keys ------------------------------------------------------------------ */

/* Secret key in guarded sodium memory; freed with sodium_free. */
guint8 *tally_secret_key_new (void);
void tally_secret_key_free (guint8 *sk);

G_END_DECLS
